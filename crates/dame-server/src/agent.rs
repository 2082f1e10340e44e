//! `dame-agent`: [`dame_protocol::agent::Agent`] over HTTP.
//!
//! ```text
//! GET <sync_path>?<trigger>   the broker's trigger -> 200 integrated | 202 accepted-pending |
//!                             403 refused | 500 error (form body status=..&reason=..)
//! GET /health                 200 ok
//! GET /mdq/entities/<id>      the integrated peers, as an MDQ responder (draft-young-md-query):
//!                             the broker-signed document the directory holds, 404 otherwise
//! ```
//! The MDQ route lets a product that reads its peers one at a time find them there (SimpleSAMLphp's
//! `mdq` metadata source with `validateFingerprint` set to the broker certificate's): each
//! request then reads the one peer it needs, where `xml` sources over the directory parse every
//! integrated peer on every request (conversion review M8: a hundred self-registered SPs made
//! each request parse megabytes).
//! A trigger's fetch runs in its own task: when it ends within `answer_within_ms` its result is
//! the answer; otherwise the trigger is answered `accepted-pending` and the signed status report
//! goes to the broker when the fetch ends. The agent core sits behind a mutex that is never held
//! across an `.await`.
//!
//! At start, what a crash interrupted in the directory is finished
//! ([`LocalDynamicDir::open`]: an integration that never completed is removed, a removal is
//! completed), the nonces of triggers accepted before the restart are read back from
//! `<directory>/.dame-trigger-nonces` (so a trigger URL read from a proxy's log cannot be
//! replayed after a restart: agent review L2), the listener opens, and every entity of the
//! directory's `.xml.loc` files is fetched again from the broker in the background,
//! [`REINIT_CONCURRENCY`] at a time (a broker that does not answer no longer keeps the agent
//! deaf to triggers for `fetch_timeout_ms` per entity: agent review L3). A trigger about an
//! entity being re-fetched joins that fetch, and a rollback cancels it.
//!
//! Every `refresh_every_ms` (a minute), the integrated entities whose copies have passed half of their
//! validity are fetched again the same way ([`Agent::refresh_due`], conversion review M6: an
//! established pair is never triggered again, so without this every integrated document
//! expired at its `validUntil`, 7 days after the broker signed it).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dame_protocol::agent::{Agent, FetchOutcome, Side, TriggerStep};
use dame_protocol::integration::LocalDynamicDir;
use dame_protocol::mdi::{MdiResponse, MdiStatus};
use mdq_client::client::FetchRequest;
use mdq_client::response::HttpResponse;
use saml_core::protocol::openssl_random;
use tokio::sync::oneshot;

use crate::config::{AgentConfig, SideName};
use crate::error::Error;
use crate::log;

/// Re-fetches at start (and scheduled refreshes) that run at once.
pub const REINIT_CONCURRENCY: usize = 8;

/// The file, in the agent's directory, that keeps accepted trigger nonces across restarts:
/// one `<nonce> <until, Unix seconds>` per line.
pub const NONCE_FILE: &str = ".dame-trigger-nonces";

/// Largest nonce file read at start (10,000 live nonces take about 450 KB).
const MAX_NONCE_FILE: u64 = 4 << 20;

/// The nonce file's lines for `nonces`: `<nonce> <until, Unix seconds, rounded up>`.
fn nonce_lines(nonces: &[(String, SystemTime)]) -> String {
    let mut text = String::new();
    for (nonce, until) in nonces {
        let secs = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() + 1);
        text.push_str(&format!("{nonce} {secs}\n"));
    }
    text
}

/// The running agent's shared state.
pub struct AgentService {
    core: Mutex<Agent<LocalDynamicDir>>,
    /// The broker's pinned keys, for what the agent checks outside the core (rules answers).
    broker_keys: saml_core::dsig::TrustedKeys,
    http: reqwest::Client,
    cfg: AgentConfig,
    /// Lines appended to the nonce file since it was last rewritten; held while writing it.
    nonce_log: Mutex<usize>,
    /// Held while writing or withdrawing an SP's conversion rules, so that rules fetched for
    /// an SP a rollback removes meanwhile are either withdrawn after it or not written.
    rules_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("entity_id", &self.cfg.entity_id)
            .finish_non_exhaustive()
    }
}

fn ms(since: Instant) -> String {
    format!("{:.1}", since.elapsed().as_secs_f64() * 1e3)
}

/// What the broker answered a fetch with.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl AgentService {
    /// The service for `cfg`: keys read, directory opened (created when missing).
    pub fn new(cfg: AgentConfig) -> Result<Arc<Self>, Error> {
        let (broker_keys, key) = cfg.keys()?;
        let dir = LocalDynamicDir::open(&cfg.directory)
            .map_err(|e| Error::config("directory", e.to_string()))?;
        for what in dir.recovered() {
            log(&[("event", "recovered".into()), ("entry", what.clone())]);
        }
        let side = match cfg.side {
            SideName::Idp => Side::Idp,
            SideName::Sp => Side::Sp,
        };
        let core = Agent::new(
            &cfg.entity_id,
            side,
            broker_keys.clone(),
            &cfg.broker_mdq,
            &cfg.broker_endpoint,
            key,
            dir,
        )
        .map_err(|e| Error::config("broker_mdq", e.to_string()))?
        // The body this service downloads in full is the body the core accepts (agent review
        // M3: with the core's own 4 MiB default, a larger document was refused after download).
        .with_max_body(cfg.max_body_bytes)
        .with_refresh_retry(Duration::from_millis(cfg.refresh_retry_ms));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.fetch_timeout_ms));
        let http = crate::tls::trust(http, "broker_ca", cfg.broker_ca.as_deref())?
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        let svc = Arc::new(AgentService {
            core: Mutex::new(core),
            broker_keys,
            http,
            cfg,
            nonce_log: Mutex::new(0),
            rules_lock: Arc::new(Mutex::new(())),
        });
        let restored = svc.restore_nonces()?;
        log(&[
            ("event", "trigger-nonces-restored".into()),
            ("nonces", restored.to_string()),
        ]);
        Ok(svc)
    }

    fn nonce_file(&self) -> std::path::PathBuf {
        self.cfg.directory.join(NONCE_FILE)
    }

    /// Reads back the nonces of triggers accepted before a restart, then rewrites the file with
    /// the live ones only. Returns how many were restored.
    fn restore_nonces(&self) -> Result<usize, Error> {
        use std::io::Read as _;
        let path = self.nonce_file();
        let mut text = String::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                // Invalid UTF-8 or an oversized file: what could be read counts, no more.
                let mut bytes = Vec::new();
                f.take(MAX_NONCE_FILE)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::config("directory", format!("{}: {e}", path.display())))?;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::config(
                    "directory",
                    format!("{}: {e}", path.display()),
                ));
            }
        }
        let now = SystemTime::now();
        let mut restored = 0;
        {
            let mut core = self.core();
            for line in text.lines() {
                let Some((nonce, until)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(secs) = until.trim().parse::<u64>() else {
                    continue;
                };
                let until = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                if core.restore_trigger_nonce(nonce, until, now) {
                    restored += 1;
                }
            }
        }
        let mut appended = self.nonce_log.lock().unwrap_or_else(|p| p.into_inner());
        self.rewrite_nonces(now)
            .map_err(|e| Error::config("directory", format!("{}: {e}", path.display())))?;
        *appended = 0;
        Ok(restored)
    }

    /// Rewrites the nonce file with the nonces live at `now` (written aside, then renamed).
    fn rewrite_nonces(&self, now: SystemTime) -> std::io::Result<()> {
        use std::io::Write as _;
        let text = nonce_lines(&self.core().live_trigger_nonces(now));
        let path = self.nonce_file();
        let tmp = self
            .cfg
            .directory
            .join(format!("{NONCE_FILE}.tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.cfg.directory)?.sync_all()
    }

    /// Keeps the nonces of the triggers just accepted (appended to the nonce file and synced;
    /// the file is rewritten without the expired ones every 10,000 lines).
    fn keep_nonces(&self) {
        use std::io::Write as _;
        let mut fresh = Vec::new();
        {
            let mut core = self.core();
            while let Some(n) = core.poll_accepted_nonce() {
                fresh.push(n);
            }
        }
        if fresh.is_empty() {
            return;
        }
        let mut appended = self.nonce_log.lock().unwrap_or_else(|p| p.into_inner());
        let text = nonce_lines(&fresh);
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.nonce_file())
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_data()));
        *appended += fresh.len();
        let result = match written {
            Ok(()) if *appended < 10_000 => Ok(()),
            Ok(()) => self
                .rewrite_nonces(SystemTime::now())
                .map(|()| *appended = 0),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // The trigger was accepted and acted on; only its protection across a restart
            // is lost.
            log(&[
                ("event", "trigger-nonces".into()),
                ("result", format!("error: {e}")),
            ]);
        }
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Agent<LocalDynamicDir>> {
        // A poisoned lock means a panic elsewhere; the agent's state is still consistent (every
        // core call is atomic), so keep serving.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET `req` from the broker, the body bounded.
    async fn fetch(&self, req: &FetchRequest) -> Result<Fetched, String> {
        let mut get = self.http.get(&req.url);
        for (k, v) in &req.headers {
            get = get.header(k, v);
        }
        let mut resp = get.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > self.cfg.max_body_bytes {
                return Err(format!(
                    "body larger than {} bytes",
                    self.cfg.max_body_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }

    /// Performs `req` and completes it in the core.
    async fn complete(
        self: &Arc<Self>,
        req: FetchRequest,
    ) -> Result<FetchOutcome, dame_protocol::Error> {
        let t = Instant::now();
        let result = self.fetch(&req).await;
        let fetch_ms = ms(t);
        let now = SystemTime::now();
        let mut rng = openssl_random;
        let out = match result {
            Ok(f) => {
                // The parse and signature checks run with the core free (they held every
                // trigger, report and fetch of the agent behind one document), on the blocking
                // pool (not on a runtime thread); only the state change takes the core.
                let verifier = self.core().verifier(req.token, now);
                match verifier {
                    Ok(v) => {
                        let verified = tokio::task::spawn_blocking(move || {
                            v.verify(&HttpResponse {
                                status: f.status,
                                headers: &f.headers,
                                body: &f.body,
                            })
                        })
                        .await;
                        match verified {
                            Ok(verified) => self
                                .core()
                                .handle_verified(req.token, &req.url, verified, now, &mut rng),
                            Err(e) => self.core().handle_fetch_failure(
                                req.token,
                                &format!("the verification did not finish: {e}"),
                                now,
                                &mut rng,
                            ),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => self
                .core()
                .handle_fetch_failure(req.token, &e, now, &mut rng),
        };
        let integrated = match &out {
            Ok(FetchOutcome::Answer(a)) => a.status == MdiStatus::Integrated,
            Ok(FetchOutcome::Report(url)) => url.contains("status=integrated"),
            Err(_) => false,
        };
        if integrated
            && self.cfg.rules.is_some()
            && let Some(sp) = req.id.as_entity_id()
        {
            // In the background: the trigger's answer does not wait for advisory rules.
            let (svc, sp) = (self.clone(), sp.to_owned());
            tokio::spawn(async move { svc.retrieve_rules(&sp).await });
        }
        log(&[
            ("event", "fetch".into()),
            ("url", req.url.clone()),
            (
                "result",
                match &out {
                    Ok(FetchOutcome::Answer(a)) => a.status.as_str().to_owned(),
                    Ok(FetchOutcome::Report(_)) => "report".into(),
                    Err(e) => format!("error: {e}"),
                },
            ),
            ("fetch_ms", fetch_ms),
        ]);
        // A peer the broker no longer publishes whose copy expired was removed: what was
        // derived from it goes too.
        self.withdraw_rules().await;
        // The queued status reports go in the background: the outcome reaches the waiting
        // trigger now, not after each report's round trip to the broker (agent review L6).
        let svc = self.clone();
        tokio::spawn(async move { svc.send_reports().await });
        out
    }

    /// An IdP's agent after integrating `sp`: the conversion rules for what the SP requests
    /// and this IdP lacks, from the broker (`action=rules`), written for the operator under
    /// `<directory>/rules/` (JSON, and the product's form). Advisory: a failure is logged, the
    /// integration stands.
    async fn retrieve_rules(&self, sp: &str) {
        let Some(cfg) = &self.cfg.rules else { return };
        let t = Instant::now();
        let result = self.rules_for(sp, cfg).await;
        log(&[
            ("event", "rules".into()),
            ("sp", sp.to_owned()),
            (
                "result",
                match &result {
                    Ok(0) => "none needed".into(),
                    Ok(n) => format!("{n} rules written"),
                    Err(e) => format!("error: {e}"),
                },
            ),
            ("ms", ms(t)),
        ]);
    }

    async fn rules_for(&self, sp: &str, cfg: &crate::config::RulesConfig) -> Result<usize, String> {
        use dame_protocol::conversion::RulesQuery;
        let q = RulesQuery {
            sp: sp.to_owned(),
            have: cfg.have.iter().cloned().collect(),
        };
        let query = q.to_query();
        let url = format!("{}?{query}", self.cfg.broker_endpoint);
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("the broker answered {}", resp.status()));
        }
        let signature = resp
            .headers()
            .get(dame_protocol::conversion::ANSWER_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > 256 << 10 {
                return Err("rules larger than 256 KiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        // Signed by the broker key this agent pins, over its own question and the answer
        // (conversion review L1: TLS with the system's roots was all that vouched for it).
        dame_protocol::conversion::verify_answer(
            &query,
            &body,
            signature.as_deref(),
            &self.broker_keys,
            SystemTime::now(),
        )
        .map_err(|e| format!("the rules answer: {e}"))?;
        // Parsing (every pattern checked and compiled) and generating run on the blocking
        // pool, not on a runtime worker (conversion review L5).
        let cfg = cfg.clone();
        let stem = stem_of(sp);
        self.under_rules_lock(move |directory| {
            write_rules_if_integrated(&body, &cfg, directory, &stem)
        })
        .await
        .map_err(|e| format!("writing the rules failed: {e}"))?
    }

    /// Runs `f` with the agent's directory on the blocking pool, holding the rules lock (rules
    /// are written, withdrawn and reconciled one at a time).
    async fn under_rules_lock<T: Send + 'static>(
        &self,
        f: impl FnOnce(&std::path::Path) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let (directory, lock) = (self.cfg.directory.clone(), self.rules_lock.clone());
        tokio::task::spawn_blocking(move || {
            let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
            f(&directory)
        })
        .await
    }

    /// An IdP's agent after rollbacks: the conversion rules written for each rolled-back SP
    /// are withdrawn ([`withdraw_rules_of`]). They stayed in force (still open after the sixth
    /// round). Called after every trigger and fetch; whichever call drains the core's queue
    /// first withdraws (usually the rollback's own trigger, before it is answered), and
    /// [`reconcile_rules`] at start catches what a crash left.
    async fn withdraw_rules(&self) {
        let peers: Vec<String> = {
            let mut core = self.core();
            std::iter::from_fn(|| core.poll_rolled_back()).collect()
        };
        let Some(cfg) = &self.cfg.rules else { return };
        for sp in peers {
            let (cfg, stem) = (cfg.clone(), stem_of(&sp));
            let result = self
                .under_rules_lock(move |directory| withdraw_rules_of(&cfg, directory, &stem))
                .await;
            let result = match result {
                Ok(Ok(false)) => continue,
                Ok(Ok(true)) => "withdrawn".to_owned(),
                Ok(Err(e)) => format!("error: {e}"),
                Err(e) => format!("error: {e}"),
            };
            log(&[
                ("event", "rules-withdrawn".into()),
                ("sp", sp),
                ("result", result),
            ]);
        }
    }

    /// At start, an IdP's agent withdraws the rules of SPs no longer integrated
    /// ([`reconcile_rules`]), and logs each.
    async fn reconcile_rules(&self) {
        let Some(cfg) = self.cfg.rules.clone() else {
            return;
        };
        let done = self
            .under_rules_lock(move |directory| reconcile_rules(&cfg, directory))
            .await
            .unwrap_or_default();
        for (stem, result) in done {
            log(&[
                ("event", "rules-withdrawn".into()),
                ("sp-sha1", stem),
                (
                    "result",
                    match result {
                        Ok(_) => "withdrawn, the SP no longer integrated".to_owned(),
                        Err(e) => format!("error: {e}"),
                    },
                ),
            ]);
        }
    }

    /// Sends the queued status reports (triggers that joined a fetch).
    async fn send_reports(&self) {
        loop {
            let next = self.core().poll_report();
            let Some(url) = next else { break };
            self.report(&url).await;
        }
    }

    async fn report(&self, url: &str) {
        let r = self.http.get(url).send().await;
        log(&[
            ("event", "status-report".into()),
            (
                "result",
                match r {
                    Ok(resp) => resp.status().as_u16().to_string(),
                    Err(e) => format!("error: {e}"),
                },
            ),
        ]);
    }

    /// Re-fetches every integrated entity (start-up), [`REINIT_CONCURRENCY`] at a time, in
    /// the background; returns how many, once the fetches are queued. Logs `reinitialised`
    /// when the last ends.
    pub fn reinitialise(self: &Arc<Self>) -> Result<usize, Error> {
        let reqs = self.core().reinitialise()?;
        Ok(self.run_fetches(reqs, "reinitialised"))
    }

    /// Re-fetches the integrated entities due for a refresh at `now` (review M6), like
    /// [`Self::reinitialise`]; returns how many. Logs `refreshed` when the last ends. The
    /// directory is listed without holding the core (10,000 peers: about 100 ms), so call it
    /// off the runtime's workers (`spawn_blocking`), as [`run`] does.
    pub fn refresh(self: &Arc<Self>, now: SystemTime) -> Result<usize, Error> {
        let listed = dame_protocol::integration::committed_sources(&self.cfg.directory)?
            .into_keys()
            .collect();
        let reqs = self.core().refresh_due_listed(&listed, now)?;
        if reqs.is_empty() {
            return Ok(0);
        }
        Ok(self.run_fetches(reqs, "refreshed"))
    }

    /// Runs `reqs` in the background, [`REINIT_CONCURRENCY`] at a time; logs `event` with
    /// their number when the last ends. Returns their number.
    fn run_fetches(self: &Arc<Self>, reqs: Vec<FetchRequest>, event: &'static str) -> usize {
        let n = reqs.len();
        let svc = self.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let mut reqs = reqs.into_iter();
            let mut running = tokio::task::JoinSet::new();
            loop {
                while running.len() < REINIT_CONCURRENCY
                    && let Some(req) = reqs.next()
                {
                    let svc = svc.clone();
                    running.spawn(async move {
                        let _ = svc.complete(req).await;
                    });
                }
                if running.join_next().await.is_none() {
                    break;
                }
            }
            log(&[
                ("event", event.into()),
                ("entities", n.to_string()),
                ("ms", ms(t)),
            ]);
        });
        n
    }

    /// Handles one trigger query from `remote`.
    async fn trigger(self: Arc<Self>, query: String, remote: SocketAddr) -> MdiResponse {
        let t = Instant::now();
        let step = self
            .core()
            .handle_trigger(&query, &remote.ip().to_string(), SystemTime::now());
        self.keep_nonces();
        self.withdraw_rules().await;
        let answer = match step {
            Err(e) => Agent::<LocalDynamicDir>::answer_for(&e),
            Ok(TriggerStep::Answer(a)) => a,
            Ok(TriggerStep::Fetch(req)) => {
                let token = req.token;
                let (tx, rx) = oneshot::channel();
                let svc = self.clone();
                tokio::spawn(async move {
                    match svc.complete(req).await {
                        Ok(FetchOutcome::Answer(a)) => {
                            let _ = tx.send(a);
                        }
                        Ok(FetchOutcome::Report(url)) => svc.report(&url).await,
                        Err(e) => {
                            let _ = tx.send(Agent::<LocalDynamicDir>::answer_for(&e));
                        }
                    }
                });
                let within = Duration::from_millis(self.cfg.answer_within_ms);
                let mut rx = rx;
                match tokio::time::timeout(within, &mut rx).await {
                    Ok(Ok(a)) => a,
                    Ok(Err(_)) => MdiResponse {
                        status: MdiStatus::Error,
                        reason: Some("the fetch task ended without an answer".into()),
                    },
                    Err(_) => {
                        // Either the core takes the deferral (a status report follows), or the
                        // fetch completed in between and its answer is in the channel.
                        let deferred = self.core().defer(token);
                        match deferred {
                            Ok(a) => a,
                            Err(_) => rx.await.unwrap_or(MdiResponse {
                                status: MdiStatus::Error,
                                reason: Some("the fetch task ended without an answer".into()),
                            }),
                        }
                    }
                }
            }
        };
        log(&[
            ("event", "trigger".into()),
            ("remote", remote.ip().to_string()),
            ("status", answer.status.as_str().into()),
            ("reason", answer.reason.clone().unwrap_or_default()),
            ("ms", ms(t)),
        ]);
        answer
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(&self.cfg.sync_path, get(trigger_route))
            .route("/health", get(|| async { "ok" }))
            .route("/mdq/entities/{*id}", get(mdq_route))
            .route("/mdq/entities", get(mdq_route))
            .with_state(self.clone())
    }
}

fn mdi(answer: &MdiResponse) -> Response {
    let (code, body) = answer
        .to_http()
        .unwrap_or_else(|_| (500, "status=error&reason=unwritable%20reason".to_owned()));
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    r
}

async fn trigger_route(
    State(svc): State<Arc<AgentService>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let limit = Duration::from_millis(svc.cfg.answer_within_ms + svc.cfg.fetch_timeout_ms + 5_000);
    match tokio::time::timeout(limit, svc.trigger(query.unwrap_or_default(), remote)).await {
        Ok(a) => mdi(&a),
        Err(_) => mdi(&MdiResponse {
            status: MdiStatus::Error,
            reason: Some("timed out".into()),
        }),
    }
}

/// The agent's directory as the source of its MDQ route: `<sha1>.xml` of a committed DAME
/// entry (its `.xml.loc` written by the agent and not pending: an operator's own file, an
/// entry being written or removed is not served), the document the broker signed and the
/// agent verified and integrated; a regular file, opened and checked to be the file looked at
/// (a link swapped in meanwhile is not followed), read to at most `max_body_bytes`, the bound
/// it was fetched under.
struct Directory<'a> {
    dir: &'a std::path::Path,
    max: usize,
}

impl dame_protocol::mdq_service::DocumentSource for Directory<'_> {
    fn by_sha1(&self, sha1_hex: &str) -> Option<dame_protocol::mdq_service::SignedDocument> {
        if sha1_hex.len() != 40 || !sha1_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        if !dame_protocol::integration::is_committed(self.dir, sha1_hex) {
            return None;
        }
        let path = self.dir.join(format!("{sha1_hex}.xml"));
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > self.max as u64 {
            return None;
        }
        let file = std::fs::File::open(&path).ok()?;
        let opened = file.metadata().ok()?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return None;
        }
        let mut xml = Vec::new();
        file.take(self.max as u64 + 1).read_to_end(&mut xml).ok()?;
        if xml.len() > self.max {
            return None;
        }
        let digest = openssl::sha::sha256(&xml);
        let etag = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Some(dame_protocol::mdq_service::SignedDocument {
            xml: xml.into(),
            etag,
        })
    }
}

async fn mdq_route(State(svc): State<Arc<AgentService>>, uri: Uri, headers: HeaderMap) -> Response {
    use dame_protocol::mdq_service::{MdqRequest, MdqService};
    let h = |n: header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (accept, if_none_match) = (h(header::ACCEPT), h(header::IF_NONE_MATCH));
    let path = uri.path().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        MdqService::new("/mdq/").answer(
            &MdqRequest {
                method: "GET",
                path: &path,
                accept: accept.as_deref(),
                if_none_match: if_none_match.as_deref(),
            },
            &Directory {
                dir: &svc.cfg.directory,
                max: svc.cfg.max_body_bytes,
            },
        )
    })
    .await;
    let Ok(a) = answer else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut r = (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::body::Bytes::from_owner(a.body),
    )
        .into_response();
    for (k, v) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// Runs the agent for `cfg` until `shutdown` resolves (in-flight requests finish first).
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listen = cfg.listen;
    let svc = AgentService::new(cfg)?;
    let n = svc.reinitialise()?;
    log(&[
        ("event", "reinitialising".into()),
        ("entities", n.to_string()),
    ]);
    svc.reconcile_rules().await;
    // Review M6: integrated copies are fetched again before they expire, without a trigger.
    let refresher = svc.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(refresher.cfg.refresh_every_ms));
        // The first tick is immediate: the start's re-initialisation is in flight then.
        tick.tick().await;
        loop {
            tick.tick().await;
            let svc = refresher.clone();
            let result = tokio::task::spawn_blocking(move || svc.refresh(SystemTime::now())).await;
            let error = match result {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            log(&[("event", "refresh-error".into()), ("error", error)]);
        }
    });
    let tls = crate::tls::configured(
        svc.cfg.tls_certificate.as_deref(),
        svc.cfg.tls_key.as_deref(),
    )?;
    log(&[
        ("event", "listening".into()),
        ("address", listen.to_string()),
        ("tls", tls.is_some().to_string()),
        ("sync_path", svc.cfg.sync_path.clone()),
    ]);
    crate::tls::serve(listen, tls, &svc.cfg.http, svc.router(), shutdown).await
}

/// The file stem (the SHA-1 hex of the entityID) of `sp`'s entries.
fn stem_of(sp: &str) -> String {
    saml_metadata::model::sha1_hex(sp)
}

/// [`write_rules`] under `<directory>/rules/` only while the SP whose entityID has SHA-1
/// `stem` is integrated in `directory` (a committed entry): a rollback that removed it while
/// the rules were on their way has withdrawn its rules already, or withdraws them after this
/// (the caller holds the service's rules lock).
fn write_rules_if_integrated(
    body: &[u8],
    cfg: &crate::config::RulesConfig,
    directory: &std::path::Path,
    stem: &str,
) -> Result<usize, String> {
    if !dame_protocol::integration::is_committed(directory, stem) {
        return Err("the SP is no longer integrated: no rules written".into());
    }
    write_rules(body, cfg, &directory.join("rules"), stem)
}

/// Withdraws the conversion rules written under `<directory>/rules/` for the SP whose
/// entityID has SHA-1 `stem`, unless it is integrated (again) in `directory`: its files are
/// rewritten empty, never deleted (the operator `require`s them). Whether anything was
/// withdrawn (not when there were no files or no rules in them). The caller holds the
/// service's rules lock.
fn withdraw_rules_of(
    cfg: &crate::config::RulesConfig,
    directory: &std::path::Path,
    stem: &str,
) -> Result<bool, String> {
    // Integrated again since (the fetch that did it asks for its rules anew): its rules stand
    // (second review of the eighth round, F3).
    if dame_protocol::integration::is_committed(directory, stem) {
        return Ok(false);
    }
    let dir = directory.join("rules");
    let Ok(json) = std::fs::read(dir.join(format!("{stem}.json"))) else {
        return Ok(false);
    };
    // Nothing in force: the JSON names no rule and the product file, if any, is the empty
    // one (both are looked at: a crash between their writes leaves them apart; second review
    // of the eighth round, N2).
    let json_empty =
        dame_protocol::conversion::RuleSet::from_json(&json).is_ok_and(|r| r.rules.is_empty());
    let product_empty = match render_product(&[], cfg, stem)? {
        None => true,
        Some(p) => std::fs::read_to_string(dir.join(format!("{stem}.{}", p.ext)))
            .map_or(true, |t| t == p.text),
    };
    if json_empty && product_empty {
        return Ok(false);
    }
    write_rules(br#"{"rules": []}"#, cfg, &dir, stem).map(|_| true)
}

/// At start: withdraws the rules of every SP with rules under `<directory>/rules/` that is
/// no longer integrated ([`withdraw_rules_of`]): left by rollbacks before rules were withdrawn,
/// or by a crash between a rollback and its withdrawal (second review of the eighth round,
/// F2). Returns the stems withdrawn and the errors.
fn reconcile_rules(
    cfg: &crate::config::RulesConfig,
    directory: &std::path::Path,
) -> Vec<(String, Result<bool, String>)> {
    let Ok(entries) = std::fs::read_dir(directory.join("rules")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.len() != 40 || !stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            continue;
        }
        match withdraw_rules_of(cfg, directory, stem) {
            Ok(false) => {}
            r => out.push((stem.to_owned(), r)),
        }
    }
    out
}

/// Writes the broker's rules `body` for the SP whose entityID has SHA-1 `stem` under `dir`:
/// `<stem>.json` and the product's
/// form (`.authproc.php` or `.resolver.xml`), always both, the product empty when no rule can
/// be written in it (a file the operator `require`s must not vanish: the second review of the
/// conversion fixes). Keeps only rules that make an attribute this IdP does not have, by SAML
/// name or by its local name (conversion review L1: a rule targeting an attribute the IdP
/// releases already would overwrite it), from attributes it has. A rule the product cannot
/// express, or that adds a scope not the IdP's, is left out of the product (and kept in the
/// JSON); the error names them. Returns how many rules the product holds.
fn write_rules(
    body: &[u8],
    cfg: &crate::config::RulesConfig,
    dir: &std::path::Path,
    stem: &str,
) -> Result<usize, String> {
    use dame_protocol::conversion::RuleSet;
    let mut rules = RuleSet::from_json(body).map_err(|e| e.to_string())?;
    let local = |n: &str| {
        cfg.names
            .get(n)
            .map_or(n, String::as_str)
            .to_ascii_lowercase()
    };
    let taken: std::collections::HashSet<String> = cfg
        .have
        .iter()
        .flat_map(|h| [h.to_ascii_lowercase(), local(h)])
        .collect();
    rules.rules.retain(|r| {
        !taken.contains(&r.target.name.to_ascii_lowercase())
            && !taken.contains(&local(&r.target.name))
            && r.sources.iter().all(|s| cfg.have.contains(s))
    });
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: String, text: &str| {
        // Written aside, then renamed: a reader never sees half a file (agent review L6:
        // a temporary name of its own, created new).
        dame_protocol::integration::write_new_then_rename(dir, &name, text.as_bytes(), false)
            .map_err(|e| format!("{name}: {e}"))
    };
    // The rules as data, always (an empty set too: what the broker withdrew goes), written
    // after the product file (a withdrawal compares both with what no rule gives).
    let json = rules.to_json().map_err(|e| e.to_string())?;
    let Some(product) = render_product(&rules.rules, cfg, stem)? else {
        write(format!("{stem}.json"), &json)?;
        return Ok(0);
    };
    write(format!("{stem}.{}", product.ext), &product.text)?;
    write(format!("{stem}.json"), &json)?;
    if product.left_out.is_empty() {
        Ok(product.written)
    } else {
        Err(format!(
            "{} of {} rules written, the rest as JSON only: {}",
            product.written,
            rules.rules.len(),
            product.left_out.join("; ")
        ))
    }
}

/// The product form of conversion rules ([`render_product`]).
struct Product {
    /// The file's extension (`authproc.php`, `resolver.xml`).
    ext: &'static str,
    /// Its text.
    text: String,
    /// How many rules it holds.
    written: usize,
    /// Why the others are not in it.
    left_out: Vec<String>,
}

/// The product file (`.authproc.php` or `.resolver.xml`, by `cfg.format`) for `rules` of the SP
/// whose entityID has SHA-1 `stem`; `None` for a format without one. A rule the product cannot
/// express, or that adds a scope not the IdP's, is left out (with why); with no rule the text
/// says so and stays loadable.
fn render_product(
    rules: &[dame_protocol::conversion::Rule],
    cfg: &crate::config::RulesConfig,
    stem: &str,
) -> Result<Option<Product>, String> {
    use dame_protocol::conversion::{Output, Rule, shibboleth, simplesamlphp};
    // Each SP's resolver file names its definitions apart from the others' (conversion
    // review M3: the same rule in two files gave two definitions of one id), by the whole
    // SHA-1 (eight digits could be ground to collide).
    let prefix = format!("dame-{stem}");
    let scopes = cfg.scopes.clone();
    let output = Output::new(&cfg.names, &scopes)
        .priorities(cfg.priorities())
        .id_prefix(&prefix);
    type Generate = fn(&[&Rule], &Output<'_>) -> Result<String, dame_protocol::Error>;
    let (ext, generate): (&str, Generate) = match cfg.format.as_str() {
        "simplesamlphp" => ("authproc.php", simplesamlphp::authproc),
        "shibboleth" => ("resolver.xml", shibboleth::resolver),
        _ => return Ok(None),
    };
    let mut left_out = Vec::new();
    let mut refs: Vec<&Rule> = Vec::new();
    for r in rules {
        match generate(&[r], &output) {
            Ok(_) => refs.push(r),
            Err(e) => left_out.push(e.to_string()),
        }
    }
    let text = match generate(&refs, &output) {
        Ok(t) => t,
        Err(e) => {
            // Together they need more than the priorities allow: none is written.
            left_out.push(e.to_string());
            refs.clear();
            generate(&[], &output).map_err(|e| e.to_string())?
        }
    };
    let text = if text.is_empty() {
        "<!-- DAME conversion rules: none -->\n".to_owned()
    } else {
        text
    };
    Ok(Some(Product {
        ext,
        text,
        written: refs.len(),
        left_out,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::{
        Directory, reconcile_rules, stem_of, withdraw_rules_of, write_rules,
        write_rules_if_integrated,
    };
    use dame_protocol::mdq_service::{MdqRequest, MdqService};

    const UID: &str = "urn:oid:0.9.2342.19200300.100.1.1";
    const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
    const SP: &str = "https://sp.example.org/shibboleth";

    fn rule(id: &str, target: &str, ops: &str) -> String {
        format!(
            r#"{{"id": "{id}", "target": {{"name": "{target}"}}, "sources": ["{UID}"], "ops": {ops}}}"#
        )
    }

    /// Conversion review L1, L2: a rule for an attribute the IdP has already is not written
    /// (it would overwrite it); product files the rules can no longer be written as, and every
    /// file once the broker has no rules, are removed.
    #[test]
    fn rules_files_follow_the_answer() {
        let cfg: crate::config::RulesConfig = toml::from_str(&format!(
            "have = [\"{UID}\"]\nformat = \"simplesamlphp\"\nscopes = [\"example.org\"]\n"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stem = dame_protocol::integration::metadata_file(SP).replace(".xml", "");
        let file = |ext: &str| dir.path().join(format!("{stem}.{ext}"));
        let eppn = rule(
            "eppn",
            EPPN,
            r#"[{"op": "scope_add", "scope": "example.org"}]"#,
        );
        let overwrite = rule("uid", UID, r#"[{"op": "lowercase"}]"#);
        let body = format!(r#"{{"rules": [{eppn}, {overwrite}]}}"#);
        assert_eq!(write_rules(body.as_bytes(), &cfg, dir.path(), &stem), Ok(1));
        let json = std::fs::read_to_string(file("json")).unwrap();
        assert!(
            json.contains("\"eppn\"") && !json.contains("\"uid\""),
            "{json}"
        );
        assert!(file("authproc.php").exists());
        // The local name of an attribute the IdP has is that attribute too.
        let by_local = rule("u", "uid", r#"[{"op": "lowercase"}]"#);
        let mut named = cfg.clone();
        named.names.insert(UID.into(), "uid".into());
        let body = format!(r#"{{"rules": [{by_local}]}}"#);
        assert_eq!(
            write_rules(body.as_bytes(), &named, dir.path(), &stem),
            Ok(0)
        );
        // A rule SimpleSAMLphp has no filter for: JSON only; the product file stays, without
        // it (a file the operator requires must not vanish), and the other rules are in it.
        let lower = rule("cn", "urn:oid:2.5.4.3", r#"[{"op": "lowercase"}]"#);
        let body = format!(r#"{{"rules": [{lower}, {eppn}]}}"#);
        let e = write_rules(body.as_bytes(), &cfg, dir.path(), &stem).unwrap_err();
        assert!(e.contains("1 of 2 rules written"), "{e}");
        let php = std::fs::read_to_string(file("authproc.php")).unwrap();
        assert!(
            php.contains("rule eppn") && !php.contains("rule cn"),
            "{php}"
        );
        // No rules any more: the files say so, and stay loadable.
        assert_eq!(
            write_rules(br#"{"rules": []}"#, &cfg, dir.path(), &stem),
            Ok(0)
        );
        let php = std::fs::read_to_string(file("authproc.php")).unwrap();
        assert!(php.starts_with("<?php") && !php.contains("=>"), "{php}");
        assert!(
            std::fs::read_to_string(file("json"))
                .unwrap()
                .contains("[]")
        );
    }

    /// Rules are written only for an SP integrated in the agent's directory; a withdrawal
    /// leaves an SP integrated (again) alone (second review of the eighth round, F3), and the
    /// start's reconciliation withdraws the rules of an SP no longer integrated (F2: left by
    /// a rollback before withdrawals existed, or by a crash between the two), once.
    #[test]
    fn rules_follow_the_integration() {
        use dame_protocol::integration::{IntegrationTarget as _, LocalDynamicDir};
        let cfg: crate::config::RulesConfig = toml::from_str(&format!(
            "have = [\"{UID}\"]\nformat = \"simplesamlphp\"\nscopes = [\"example.org\"]\n"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stem = stem_of(SP);
        let php = || {
            std::fs::read_to_string(
                dir.path()
                    .join("rules")
                    .join(format!("{stem}.authproc.php")),
            )
            .unwrap_or_default()
        };
        let eppn = rule(
            "eppn",
            EPPN,
            r#"[{"op": "scope_add", "scope": "example.org"}]"#,
        );
        let body = format!(r#"{{"rules": [{eppn}]}}"#);
        assert!(write_rules_if_integrated(body.as_bytes(), &cfg, dir.path(), &stem).is_err());
        assert!(!dir.path().join("rules").exists(), "nothing written");
        let mut target = LocalDynamicDir::open(dir.path()).unwrap();
        target
            .integrate(
                SP,
                b"<md:EntityDescriptor/>",
                "https://broker.example/mdq/x",
            )
            .unwrap();
        assert_eq!(
            write_rules_if_integrated(body.as_bytes(), &cfg, dir.path(), &stem),
            Ok(1)
        );
        assert_eq!(withdraw_rules_of(&cfg, dir.path(), &stem), Ok(false));
        assert!(reconcile_rules(&cfg, dir.path()).is_empty());
        assert!(php().contains("rule eppn"), "{}", php());
        // Removed without the withdrawal (a crash, or an agent before this change).
        assert!(target.remove(SP).unwrap());
        assert!(php().contains("rule eppn"));
        assert_eq!(
            reconcile_rules(&cfg, dir.path()),
            vec![(stem.clone(), Ok(true))]
        );
        assert!(
            php().starts_with("<?php") && !php().contains("rule eppn"),
            "{}",
            php()
        );
        assert!(reconcile_rules(&cfg, dir.path()).is_empty(), "once");
        assert_eq!(withdraw_rules_of(&cfg, dir.path(), &stem), Ok(false));
        // A crash between the two files' writes left an empty JSON beside a product holding
        // rules: withdrawn too (second review of the eighth round, N2).
        target
            .integrate(
                SP,
                b"<md:EntityDescriptor/>",
                "https://broker.example/mdq/x",
            )
            .unwrap();
        write_rules_if_integrated(body.as_bytes(), &cfg, dir.path(), &stem).unwrap();
        std::fs::write(
            dir.path().join("rules").join(format!("{stem}.json")),
            br#"{"rules": []}"#,
        )
        .unwrap();
        assert!(target.remove(SP).unwrap());
        assert_eq!(
            reconcile_rules(&cfg, dir.path()),
            vec![(stem.clone(), Ok(true))]
        );
        assert!(!php().contains("rule eppn"), "{}", php());
    }

    /// The MDQ route serves what the directory holds for the entity asked for, by entityID or
    /// `{sha1}`, and nothing else: no other entity, no link, nothing over the size bound
    /// (conversion review M8: SimpleSAMLphp reads its SPs one at a time from here).
    #[test]
    fn the_mdq_route_serves_the_integrated_documents() {
        let dir = tempfile::tempdir().unwrap();
        let sha1 = saml_metadata::model::sha1_hex(SP);
        std::fs::write(
            dir.path().join(format!("{sha1}.xml")),
            b"<EntityDescriptor/>",
        )
        .unwrap();
        let loc = dir.path().join(format!("{sha1}.xml.loc"));
        std::fs::write(
            &loc,
            b"https://broker.example.com/mdq/entities/x\npending\n",
        )
        .unwrap();
        let other = saml_metadata::model::sha1_hex("https://other.example.org/sp");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(format!("{other}.xml"))).unwrap();
        // A committed entry whose .xml is a link: not followed.
        std::fs::write(
            dir.path().join(format!("{other}.xml.loc")),
            b"https://broker.example.com/mdq/entities/y\n",
        )
        .unwrap();
        let get = |id: &str, max: usize| {
            let path = format!("/mdq/entities/{}", saml_core::bindings::url_encode(id));
            MdqService::new("/mdq/").answer(
                &MdqRequest {
                    method: "GET",
                    path: &path,
                    accept: None,
                    if_none_match: None,
                },
                &Directory {
                    dir: dir.path(),
                    max,
                },
            )
        };
        // Pending (or without its .xml.loc, an operator's file): not served.
        assert_eq!(get(SP, 1 << 20).status, 404);
        std::fs::write(&loc, b"https://broker.example.com/mdq/entities/x\n").unwrap();
        let a = get(SP, 1 << 20);
        assert_eq!((a.status, &a.body[..]), (200, &b"<EntityDescriptor/>"[..]));
        assert_eq!(get(&format!("{{sha1}}{sha1}"), 1 << 20).status, 200);
        assert_eq!(get("https://other.example.org/sp", 1 << 20).status, 404);
        assert_eq!(get("https://nobody.example.org/sp", 1 << 20).status, 404);
        assert_eq!(get(SP, 8).status, 404);
    }
}
