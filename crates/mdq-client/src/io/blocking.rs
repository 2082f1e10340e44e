//! A blocking adapter over ureq 3 (TLS through OpenSSL via native-tls): connect and read
//! timeouts, retries with backoff for transport errors and 5xx, no redirects (a redirect to
//! another host would bypass the configured base URL), gzip decoded by the core, lookups of one
//! entity from several threads coalesced into one request.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use saml_metadata::model::EntityDescriptor;

use crate::client::{Client, Config, FetchRequest, Lookup};
use crate::error::Error;
use crate::response::HttpResponse;
use crate::url::Identifier;

pub use crate::io::options::Options;

/// A thread-safe blocking MDQ client.
#[derive(Debug)]
pub struct BlockingClient {
    core: Mutex<Client>,
    done: Condvar,
    agent: ureq::Agent,
    opts: Options,
    skipped: Vec<(std::path::PathBuf, Error)>,
}

impl BlockingClient {
    /// A client for `cfg` with `opts`; entries in `opts.cache_dir` are verified and restored
    /// (those that are not are listed by `skipped_cache_files`).
    pub fn new(cfg: Config, opts: Options) -> Self {
        let mut core = Client::new(cfg);
        // A malformed file or a document that no longer verifies (key rollover, expiry) is not
        // restored; see `skipped_cache_files`.
        let skipped = match &opts.cache_dir {
            Some(dir) => crate::io::persist::restore_into(&mut core, dir, SystemTime::now()),
            None => Vec::new(),
        };
        // TLS through OpenSSL (native-tls), chosen explicitly: ureq's default provider is
        // rustls, which is not built in, and ureq panics on an `https://` request with it.
        let roots = match &opts.root_certificates {
            Some(certs) => ureq::tls::RootCerts::Specific(std::sync::Arc::new(
                certs
                    .iter()
                    .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                    .collect(),
            )),
            None => ureq::tls::RootCerts::PlatformVerifier,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .new_agent();
        BlockingClient {
            core: Mutex::new(core),
            done: Condvar::new(),
            agent,
            opts,
            skipped,
        }
    }

    /// The persistent cache files passed over at construction, and why (malformed `.meta`,
    /// unreadable, or a document that no longer verifies).
    pub fn skipped_cache_files(&self) -> &[(std::path::PathBuf, Error)] {
        &self.skipped
    }

    /// The core. A panic while it was held (a bug) leaves it poisoned; its state is still
    /// consistent between calls (a fetch in flight is ended before anything else changes), so
    /// it is taken back rather than every later lookup failing for ever (MDQ review L7).
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Client>, Error> {
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
    /// cached entry is due for its early refresh, that fetch runs first and the cached entity is returned whatever it
    /// gives. Each attempt has the whole-request timeout: the wait is at most
    /// `(retries + 1) * timeout` plus the backoffs between attempts.
    pub fn get(&self, id: &Identifier) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        loop {
            let mut core = self.lock()?;
            match core.lookup(id, SystemTime::now()) {
                Lookup::Hit { entity, refresh } => {
                    drop(core);
                    if let Some(r) = refresh {
                        // Early refresh inline: the cached entity is returned whatever happens,
                        // unless the refresh brought a newer one (a key rollover: mdq review L3).
                        if let Ok(Some(newer)) = self.fetch(r) {
                            return Ok(Some(newer));
                        }
                    }
                    return Ok(Some(entity));
                }
                Lookup::NotFound => return Ok(None),
                Lookup::Unavailable { failures, until } => {
                    return Err(crate::io::core_unavailable(failures, until));
                }
                Lookup::Fetch(r) => {
                    drop(core);
                    return self.fetch(r);
                }
                Lookup::Pending(_) => {
                    // Another thread fetches it: wait for it, then look again.
                    let waited = self.done.wait_timeout(
                        core,
                        self.opts.timeout.saturating_add(Duration::from_secs(1)),
                    );
                    if waited.is_err() {
                        self.core.clear_poison();
                    }
                }
            }
        }
    }

    /// All entities (`base + "entities"`), verified; `None` when the server has none (404).
    /// Not cached: use it to seed or audit, per-entity lookups for everyday use. Verified under
    /// the client's policy; the body is bounded by [`Config::max_aggregate_body`](crate::Config).
    pub fn all(&self) -> Result<Option<saml_metadata::load::Aggregate>, Error> {
        let (url, policy, max) = {
            let core = self.lock()?;
            // The client's own policy (legacy, validUntil rules) and the aggregate's own bound
            // (MDQ review L5: a hand-built policy dropped `legacy`, and the bound could not be
            // set below 256 MiB).
            (
                core.config().base.all(),
                core.policy(SystemTime::now()),
                core.config().max_aggregate_body,
            )
        };
        let r = FetchRequest {
            token: crate::client::Token::detached(),
            id: Identifier::sha1_of(&url),
            url,
            headers: vec![
                ("Accept".into(), crate::client::SAML_METADATA_TYPE.into()),
                ("Accept-Encoding".into(), "gzip".into()),
            ],
        };
        let (status, headers, body) = self.transfer_limited(&r, max).map_err(Error::Transport)?;
        crate::response::handle_all(
            &HttpResponse {
                status,
                headers: &headers,
                body: &body,
            },
            &policy,
            max,
        )
    }

    fn fetch(&self, r: FetchRequest) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        // A transfer that panics: the core hears of a failure, the waiting lookups wake.
        let guard = crate::io::Abandoned::arm(&self.core, r.token, || self.done.notify_all());
        let result = match self.transfer(&r) {
            Ok(answer) => {
                let verifier = self.lock()?.verifier(r.token, SystemTime::now())?;
                #[cfg(test)]
                tests::CORE_FREE_WHILE_VERIFYING.set(Some(self.core.try_lock().is_ok()));
                Ok(crate::io::verify(&verifier, &answer))
            }
            Err(e) => Err(e),
        };
        guard.disarm();
        let mut core = self.lock()?;
        let (out, persist) =
            crate::io::complete(&mut core, &r, result, self.opts.cache_dir.is_some());
        drop(core);
        persist.apply(self.opts.cache_dir.as_deref());
        self.done.notify_all();
        out
    }

    /// GET with retries; 5xx and transport errors are retried, everything else is returned.
    #[allow(clippy::type_complexity)]
    fn transfer(&self, r: &FetchRequest) -> crate::io::Transfer {
        let limit = self.lock().map(|c| c.config().max_body).unwrap_or(4 << 20);
        self.transfer_limited(r, limit)
    }

    /// GET with retries, the body read up to `limit` + 1 bytes.
    #[allow(clippy::type_complexity)]
    fn transfer_limited(
        &self,
        r: &FetchRequest,
        limit: usize,
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> {
        let mut wait = self.opts.backoff;
        let mut last = String::new();
        for attempt in 0..=self.opts.retries {
            if attempt > 0 {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
            let mut req = self.agent.get(&r.url);
            for (k, v) in &r.headers {
                req = req.header(k, v);
            }
            match req.call() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let headers: Vec<(String, String)> = resp
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    // At most one byte past the limit: a larger body reaches the core, which
                    // refuses it as too large (not a transport failure to retry).
                    let mut body = Vec::new();
                    let read = std::io::Read::read_to_end(
                        &mut std::io::Read::take(resp.body_mut().as_reader(), limit as u64 + 1),
                        &mut body,
                    )
                    .map(|_| body);
                    match read {
                        Ok(body) if (500..600).contains(&status) => {
                            last = format!("HTTP {status}");
                            let _ = body;
                        }
                        Ok(body) => return Ok((status, headers, body)),
                        Err(e) => last = format!("reading the body: {e}"),
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::{BaseUrl, Config};
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
    use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
    use testkit::http::{Act, http, server};

    thread_local! {
        /// Whether the core was free when the fetch's answer began to be verified.
        pub(super) static CORE_FREE_WHILE_VERIFYING: std::cell::Cell<Option<bool>> =
            const { std::cell::Cell::new(None) };
    }

    /// A client of a server that answers one lookup of the returned entityID, signed with a
    /// key the client trusts.
    fn served_once() -> (BlockingClient, &'static str) {
        let key =
            SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
        let mut keys = TrustedKeys::new();
        keys.add_public_key(key.public_key().unwrap(), "mdq")
            .unwrap();
        let sp = "https://sp.example.org/sp";
        let doc = EntityDescriptor::builder(sp)
            .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
            .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
            .build()
            .unwrap()
            .sign(&key, &SignOptions::default())
            .unwrap();
        let (base, _) = server(vec![Act::Send(http(
            "200 OK",
            &[("Content-Type", "application/samlmetadata+xml")],
            &doc,
        ))]);
        let c = BlockingClient::new(
            Config::new(BaseUrl::parse(&base).unwrap(), keys),
            Options::default().with_retries(0),
        );
        (c, sp)
    }

    /// MDQ review L7: a panic while the core was held (a bug in a dependency reached from a
    /// server's answer) poisoned the lock, and from then on every lookup failed with
    /// `Error::State`, cached entities included. The core is taken back.
    #[test]
    fn a_poisoned_core_keeps_serving_the_cache() {
        let (c, sp) = served_once();
        let id = Identifier::entity_id(sp).unwrap();
        assert!(c.get(&id).unwrap().is_some());
        let poisoner = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = c.core.lock().unwrap();
                panic!("a bug while the core is held");
            })
            .join()
        });
        assert!(poisoner.is_err());
        assert!(c.core.is_poisoned());
        // Served from the cache (the server has nothing more to send).
        assert!(c.get(&id).unwrap().is_some());
        assert_eq!(c.cached(), 1);
    }

    /// MDQ review M5: the answer was parsed and verified with the core locked, so one costly
    /// document (several MiB, many signatures) held every other lookup, cache hits included.
    /// The verification runs with the core free; the state change alone takes the lock.
    #[test]
    fn answers_are_verified_without_holding_the_core() {
        let (c, sp) = served_once();
        CORE_FREE_WHILE_VERIFYING.set(None);
        assert!(
            c.get(&Identifier::entity_id(sp).unwrap())
                .unwrap()
                .is_some()
        );
        assert_eq!(CORE_FREE_WHILE_VERIFYING.get(), Some(true));
    }
}
