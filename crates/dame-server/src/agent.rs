//! `dame-agent`: [`dame_protocol::agent::Agent`] over HTTP.
//!
//! ```text
//! GET <sync_path>?<trigger>   the broker's trigger -> 200 integrated | 202 accepted-pending |
//!                             403 refused | 500 error (form body status=..&reason=..)
//! GET /health                 200 ok
//! ```
//! A trigger's fetch runs in its own task: when it ends within `answer_within_ms` its result is
//! the answer; otherwise the trigger is answered `accepted-pending` and the signed status report
//! goes to the broker when the fetch ends. The agent core sits behind a mutex that is never held
//! across an `.await`. At start every entity of the directory's `.xml.loc` files is fetched again
//! from the broker before the listener opens.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
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

/// The running agent's shared state.
pub struct AgentService {
    core: Mutex<Agent<LocalDynamicDir>>,
    http: reqwest::Client,
    cfg: AgentConfig,
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
        let side = match cfg.side {
            SideName::Idp => Side::Idp,
            SideName::Sp => Side::Sp,
        };
        let core = Agent::new(
            &cfg.entity_id,
            side,
            broker_keys,
            &cfg.broker_mdq,
            &cfg.broker_endpoint,
            key,
            dir,
        )
        .map_err(|e| Error::config("broker_mdq", e.to_string()))?
        // The body this service downloads in full is the body the core accepts (agent review
        // M3: with the core's own 4 MiB default, a larger document was refused after download).
        .with_max_body(cfg.max_body_bytes);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.fetch_timeout_ms));
        let http = crate::tls::trust(http, "broker_ca", cfg.broker_ca.as_deref())?
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Arc::new(AgentService {
            core: Mutex::new(core),
            http,
            cfg,
        }))
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
        let out = {
            let mut core = self.core();
            match &result {
                Ok(f) => core.handle_fetched(
                    req.token,
                    &req.url,
                    &HttpResponse {
                        status: f.status,
                        headers: &f.headers,
                        body: &f.body,
                    },
                    now,
                    &mut rng,
                ),
                Err(e) => core.handle_fetch_failure(req.token, e, now, &mut rng),
            }
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
        self.send_reports().await;
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
        use dame_protocol::conversion::{RuleSet, RulesQuery, shibboleth, simplesamlphp};
        let q = RulesQuery {
            sp: sp.to_owned(),
            have: cfg.have.iter().cloned().collect(),
        };
        let url = format!("{}?{}", self.cfg.broker_endpoint, q.to_query());
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("the broker answered {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > 256 << 10 {
                return Err("rules larger than 256 KiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        let rules = RuleSet::from_json(&body).map_err(|e| e.to_string())?;
        if rules.rules.is_empty() {
            return Ok(0);
        }
        let refs: Vec<&dame_protocol::conversion::Rule> = rules.rules.iter().collect();
        let dir = self.cfg.directory.join("rules");
        let stem = dame_protocol::integration::metadata_file(sp);
        let stem = stem.trim_end_matches(".xml");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: String, text: &str| {
            // Written aside, then renamed: a reader never sees half a file.
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, dir.join(&name)).map_err(|e| format!("{name}: {e}"))
        };
        // The rules as data, always; the product's form when it can express them.
        write(
            format!("{stem}.json"),
            &rules.to_json().map_err(|e| e.to_string())?,
        )?;
        let product = match cfg.format.as_str() {
            "simplesamlphp" => Some((
                "authproc.php",
                simplesamlphp::authproc(&refs, &cfg.names, cfg.first_priority),
            )),
            "shibboleth" => Some(("resolver.xml", shibboleth::resolver(&refs, &cfg.names))),
            _ => None,
        };
        match product {
            Some((ext, Ok(text))) => write(format!("{stem}.{ext}"), &text)?,
            Some((_, Err(e))) => return Err(format!("written as JSON only: {e}")),
            None => {}
        }
        Ok(rules.rules.len())
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

    /// Re-fetches every integrated entity (start-up).
    pub async fn reinitialise(self: &Arc<Self>) -> Result<usize, Error> {
        let reqs = self.core().reinitialise()?;
        let n = reqs.len();
        for req in reqs {
            let _ = self.complete(req).await;
        }
        Ok(n)
    }

    /// Handles one trigger query from `remote`.
    async fn trigger(self: Arc<Self>, query: String, remote: SocketAddr) -> MdiResponse {
        let t = Instant::now();
        let step = self
            .core()
            .handle_trigger(&query, &remote.ip().to_string(), SystemTime::now());
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

/// Runs the agent for `cfg` until `shutdown` resolves (in-flight requests finish first).
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listen = cfg.listen;
    let svc = AgentService::new(cfg)?;
    let t = Instant::now();
    let n = svc.reinitialise().await?;
    log(&[
        ("event", "reinitialised".into()),
        ("entities", n.to_string()),
        ("ms", ms(t)),
    ]);
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
