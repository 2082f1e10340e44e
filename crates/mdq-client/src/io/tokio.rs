//! An async adapter over reqwest (TLS through OpenSSL via native-tls) for tokio: the same
//! behaviour as [`crate::io::blocking`] (timeouts, retries with backoff for transport errors and
//! 5xx, no redirects, a body size limit, coalesced lookups, the persistent cache directory).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use saml_metadata::model::EntityDescriptor;
use tokio::sync::Notify;

use crate::client::{Client, Config, FetchRequest, Lookup};
use crate::error::Error;
use crate::io::options::Options;
use crate::url::Identifier;

/// A shareable async MDQ client (wrap it in an `Arc` for several tasks).
#[derive(Debug)]
pub struct AsyncClient {
    core: Mutex<Client>,
    done: Notify,
    http: reqwest::Client,
    opts: Options,
    skipped: Vec<(std::path::PathBuf, Error)>,
}

impl AsyncClient {
    /// A client for `cfg` with `opts`; entries in `opts.cache_dir` are verified and restored
    /// (those that are not are listed by `skipped_cache_files`).
    pub fn new(cfg: Config, opts: Options) -> Result<Self, Error> {
        let mut core = Client::new(cfg);
        // A malformed file or a document that no longer verifies (key rollover, expiry) is not
        // restored; see `skipped_cache_files`.
        let skipped = match &opts.cache_dir {
            Some(dir) => crate::io::persist::restore_into(&mut core, dir, SystemTime::now()),
            None => Vec::new(),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(certs) = &opts.root_certificates {
            http = http.tls_built_in_root_certs(false);
            for der in certs {
                let c = reqwest::Certificate::from_der(der)
                    .map_err(|e| Error::Transport(format!("a root certificate: {e}")))?;
                http = http.add_root_certificate(c);
            }
        }
        let http = http
            .build()
            .map_err(|e| Error::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(AsyncClient {
            core: Mutex::new(core),
            done: Notify::new(),
            http,
            opts,
            skipped,
        })
    }

    /// The persistent cache files passed over at construction, and why (malformed `.meta`,
    /// unreadable, or a document that no longer verifies).
    pub fn skipped_cache_files(&self) -> &[(std::path::PathBuf, Error)] {
        &self.skipped
    }

    /// The core. A panic while it was held (a bug) leaves it poisoned; its state is still
    /// consistent between calls (a fetch in flight is ended before anything else changes), so
    /// it is taken back rather than every later lookup failing for ever (MDQ review L7).
    fn lock(&self) -> Result<MutexGuard<'_, Client>, Error> {
        Ok(self.core.lock().unwrap_or_else(|poisoned| {
            self.core.clear_poison();
            poisoned.into_inner()
        }))
    }

    /// Number of cached entries.
    pub fn cached(&self) -> usize {
        self.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The entity `id` (`None`: it does not exist), from the cache or the server. When the
    /// cached entry is due for its early refresh, that fetch runs first and the cached entity
    /// is returned whatever it gives. Each attempt has the whole-request timeout: the wait is
    /// at most `(retries + 1) * timeout` plus the backoffs between attempts. Dropping the
    /// future mid-transfer is safe: the fetch counts as failed and the next `get` fetches again.
    pub async fn get(&self, id: &Identifier) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        loop {
            // Registered before the lookup, so that a fetch finishing in between still wakes us.
            let notified = self.done.notified();
            let lookup = self.lock()?.lookup(id, SystemTime::now());
            match lookup {
                Lookup::Hit { entity, refresh } => {
                    if let Some(r) = refresh {
                        // The refresh's entity when it brought one (mdq review L3).
                        if let Ok(Some(newer)) = self.fetch(r).await {
                            return Ok(Some(newer));
                        }
                    }
                    return Ok(Some(entity));
                }
                Lookup::NotFound => return Ok(None),
                Lookup::Unavailable { failures, until } => {
                    return Err(crate::io::core_unavailable(failures, until));
                }
                Lookup::Fetch(r) => return self.fetch(r).await,
                Lookup::Pending(_) => {
                    let _ = tokio::time::timeout(
                        self.opts.timeout.saturating_add(Duration::from_secs(1)),
                        notified,
                    )
                    .await;
                }
            }
        }
    }

    async fn fetch(&self, r: FetchRequest) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        // Dropped before the transfer ends (the caller gave up): the core hears of a failure.
        let guard = crate::io::Abandoned::arm(&self.core, r.token, || self.done.notify_waiters());
        let result = match self.transfer(&r).await {
            Ok(answer) => {
                // Verified off the executor and without the core (MDQ review M5): a costly
                // document neither stalls other tasks nor holds other lookups.
                let verifier = self.lock()?.verifier(r.token, SystemTime::now())?;
                tokio::task::spawn_blocking(move || crate::io::verify(&verifier, &answer))
                    .await
                    .map_err(|e| format!("the verification did not finish: {e}"))
            }
            Err(e) => Err(e),
        };
        guard.disarm();
        let (out, persist) = {
            let mut core = self.lock()?;
            crate::io::complete(&mut core, &r, result, self.opts.cache_dir.is_some())
        };
        self.done.notify_waiters();
        persist.apply(self.opts.cache_dir.as_deref());
        out
    }

    async fn transfer(&self, r: &FetchRequest) -> crate::io::Transfer {
        let limit = self.lock().map(|c| c.config().max_body).unwrap_or(4 << 20);
        let mut wait = self.opts.backoff;
        let mut last = String::new();
        for attempt in 0..=self.opts.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let mut req = self.http.get(&r.url);
            for (k, v) in &r.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match req.send().await {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let headers: Vec<(String, String)> = resp
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let mut body = Vec::new();
                    let mut failed = None;
                    loop {
                        match resp.chunk().await {
                            Ok(Some(c)) => {
                                body.extend_from_slice(&c);
                                if body.len() > limit {
                                    break; // the core reports the size
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(format!("reading the body: {e}"));
                                break;
                            }
                        }
                    }
                    match failed {
                        Some(e) => last = e,
                        None if (500..600).contains(&status) => last = format!("HTTP {status}"),
                        None => return Ok((status, headers, body)),
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}
