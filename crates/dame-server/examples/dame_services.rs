//! `dame_services`: the DAME services on loopback, with real processes: a walk through a first
//! and a second use (the demo's DAME step), or a bounded load run.
//!
//! ```text
//! cargo build --release -p dame-server --bins --examples
//! target/release/examples/dame_services walk [--postgres]
//! target/release/examples/dame_services load [--postgres] [--sps 10] [--idps 5] [--seconds 5] [--clients 8]
//! ```
//!
//! Both start `dame-broker` (SQLite, or a private PostgreSQL server with `--postgres`) and one
//! `dame-agent` per provider, and register them all. `walk` (one SP, one IdP) prints each step
//! of a first use (discovery, AuthnRequest1, Response2, the exchange, the replay, the login) and
//! of a second use (plain SSO from the files the agents wrote, the broker not asked) with its
//! time. `load` (`--sps` SPs and `--idps` IdPs) runs:
//!
//! 1. every SP-IdP pair's first use at once (`sps × idps` concurrent flows: AuthnRequest1 ->
//!    AuthnRequest2 -> Response2 -> triggers to both agents -> MDQ fetches -> integration ->
//!    AuthnRequest1 replayed), each timed from AuthnRequest1 to the replay redirect;
//! 2. `--clients` concurrent clients on the discovery page for `--seconds`;
//! 3. the same on the MDQ service (`/mdq/entities/<entityID>`, signed per entity);
//! 4. pyFF (`pyffd` from the `.venv` of `scripts/setup.sh`) serving the same entities through
//!    its MDQ pipeline (signed on the way out), with the same clients, in the same run.
//!
//! With `DAME_SERVICES_KEEP=1` the directory with every process's log is kept. Prints flows/s, p50/p99 latency, errors and peak memory (VmHWM) of the broker and of pyFF.
//! The SPs' and IdPs' own software is played in-process (the IdP answers AuthnRequest2 without
//! checking its signature: that cost is the IdP's, not the broker's). Rate limits and the
//! per-address caps (unauthenticated flows, connections) are raised for the run (every client
//! is 127.0.0.1); the tests check them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dame_protocol::authenticate::AuthenticateRequest;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_TRANSIENT, NameId, OutstandingRequests, new_id,
    openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata, SpSso};
use testkit::signer::TestKey;

const TOKEN: &str = "0123456789abcdef0123456789abcdef-operator";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(bin: &Path, args: &[&str], log: &Path, cwd: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display())),
    )
}

async fn wait_for(http: &reqwest::Client, url: &str, what: &str, until: impl Fn(&str) -> bool) {
    for _ in 0..600 {
        if let Ok(r) = http.get(url).send().await
            && let Ok(t) = r.text().await
            && until(&t)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not come up ({url})");
}

/// Peak resident memory of a process, from /proc (kB).
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Args {
    walk: bool,
    postgres: bool,
    sps: usize,
    idps: usize,
    seconds: u64,
    clients: usize,
}

fn args() -> Args {
    let mut a = Args {
        walk: false,
        postgres: false,
        sps: 10,
        idps: 5,
        seconds: 5,
        clients: 8,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    match v.first().map(String::as_str) {
        Some("walk") => {
            a.walk = true;
            a.sps = 1;
            a.idps = 1;
        }
        Some("load") => {}
        _ => panic!("usage: dame_services walk|load [options] (see the file's docs)"),
    }
    let mut i = 1;
    while i < v.len() {
        let num = |i: usize| -> u64 {
            v.get(i + 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", v[i]))
        };
        match v[i].as_str() {
            "--postgres" => a.postgres = true,
            "--sps" => a.sps = num(i) as usize,
            "--idps" => a.idps = num(i) as usize,
            "--seconds" => a.seconds = num(i),
            "--clients" => a.clients = num(i) as usize,
            other => panic!(
                "unknown argument {other}: dame_services walk [--postgres] | load [--postgres] [--sps N] [--idps N] [--seconds S] [--clients C]"
            ),
        }
        i += if v[i] == "--postgres" { 1 } else { 2 };
    }
    a
}

fn sp_id(i: usize) -> String {
    format!("https://sp{i}.example.org/shibboleth")
}
fn idp_id(j: usize) -> String {
    format!("https://idp{j}.example.net/idp/shibboleth")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The IdP's answer to `req`: a Response for `user`, signed with `key`, as the HTTP-POST form
/// for `acs` (with the request's RelayState).
fn idp_answer(
    req: &AuthnRequest,
    idp: &str,
    acs: &str,
    user: &str,
    key: &TestKey,
    relay_state: Option<&str>,
) -> Result<String, String> {
    let xml = ResponseBuilder::for_request(req, idp, acs, NameId::new(user, NAMEID_TRANSIENT))
        .build(&key.signing(), SystemTime::now(), &mut openssl_random)
        .map_err(|e| e.to_string())?;
    let mut form = format!("SAMLResponse={}", url_encode(&post::encode(&xml)));
    if let Some(rs) = relay_state {
        form.push_str(&format!("&RelayState={}", url_encode(rs)));
    }
    Ok(form)
}

struct Run {
    base: String,
    http: reqwest::Client,
    sp_key: TestKey,
    idp_key: TestKey,
}

impl Run {
    /// One first use of the pair (sp, idp): the time from AuthnRequest1 to the replay.
    async fn first_use(&self, sp: &str, idp: &str, user: &str) -> Result<Duration, String> {
        let t = Instant::now();
        let host = sp.split('/').nth(2).unwrap_or_default();
        let mut req = AuthnRequest::new(new_id(&mut openssl_random), sp, SystemTime::now());
        req.acs_url = Some(format!("https://{host}/Shibboleth.sso/SAML2/POST"));
        let idp_host = idp.split('/').nth(2).unwrap_or_default();
        let url = AuthenticateRequest::url(
            &format!("{}/DAME", self.base),
            idp,
            &format!("https://{idp_host}/sso"),
            &req,
            Some("load"),
            &self.sp_key.signing(),
        )
        .map_err(|e| e.to_string())?;
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 302 {
            return Err(format!("authenticate: {}", r.status()));
        }
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .ok_or("no flow cookie")?
            .to_owned();
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("no location")?
            .to_owned();
        // The IdP: AuthnRequest2 in, Response2 out to the broker's ACS.
        let q = loc.split_once('?').map_or("", |(_, q)| q);
        let m = redirect::decode(q, 1 << 16).map_err(|e| e.to_string())?;
        let req2 = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let acs = format!("{}/acs", self.base);
        let form = idp_answer(
            &req2,
            idp,
            &acs,
            user,
            &self.idp_key,
            m.relay_state.as_deref(),
        )?;
        let r = self
            .http
            .post(&acs)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 303 {
            return Err(format!(
                "acs: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        for _ in 0..3000 {
            let r = self
                .http
                .get(format!("{}/wait", self.base))
                .header("cookie", &cookie)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => tokio::time::sleep(Duration::from_millis(5)).await,
                302 => return Ok(t.elapsed()),
                s => return Err(format!("wait: {s} {}", r.text().await.unwrap_or_default())),
            }
        }
        Err("the flow did not finish".into())
    }
}

/// `clients` concurrent clients GET `urls` round-robin for `seconds`: latencies and errors.
async fn hammer(
    http: &reqwest::Client,
    urls: Arc<Vec<String>>,
    clients: usize,
    seconds: u64,
) -> (Vec<Duration>, usize, Duration) {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut n) = (Vec::new(), 0usize, c);
            while Instant::now() < end {
                let t = Instant::now();
                let ok = match http.get(&urls[n % urls.len()]).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                errors += usize::from(!ok);
                n += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    (all, errors, start.elapsed())
}

fn say(d: Duration, what: &str) {
    println!("  [{:>8.1} ms] {what}", d.as_secs_f64() * 1e3);
}

/// The walk: one SP and one IdP, their software played here from the files their agents wrote.
struct Walk {
    base: String,
    http: reqwest::Client,
    dir: std::path::PathBuf,
    broker_key: TestKey,
    sp_key: TestKey,
    idp_key: TestKey,
    sp: EntityDescriptor,
    cookie: Option<String>,
    requests: OutstandingRequests,
    replay: MemoryReplayCache,
}

impl Walk {
    /// A user-agent request (the broker's cookie kept): status, Location, body.
    async fn ua(&mut self, url: &str, form: Option<String>) -> (u16, String, String) {
        let mut req = match form {
            Some(f) => self
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(f),
            None => self.http.get(url),
        };
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        if let Some(c) = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = c.split(';').next().map(str::to_owned);
        }
        let status = r.status().as_u16();
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, loc, r.text().await.unwrap_or_default())
    }

    /// A peer as its provider's software knows it: the agent's LocalDynamic file, verified
    /// with the broker's key.
    fn known(&self, agent: &str, peer: &str) -> Option<EntityDescriptor> {
        let path = self
            .dir
            .join(agent)
            .join(dame_protocol::integration::metadata_file(peer));
        let xml = std::fs::read(path).ok()?;
        let policy = load::Policy::new(self.broker_key.trusted(), SystemTime::now());
        match load::load(&xml, &policy).ok()?.metadata() {
            Metadata::Entity(e) => Some((**e).clone()),
            _ => None,
        }
    }

    /// The IdP's SSO service: the requester must be known (the broker from its published
    /// metadata, an SP from the IdP agent's file) and its signature valid; the answer is the
    /// Response form for the requester's ACS.
    async fn idp(&self, url: &str, user: &str) -> Result<(String, String), String> {
        let q = url.split_once('?').map_or("", |(_, q)| q);
        let m = redirect::decode(q, 1 << 16).map_err(|e| e.to_string())?;
        let req = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let requester = if req.issuer == "https://broker.example.com/sp" {
            let xml = self
                .http
                .get(format!("{}/metadata", self.base))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            let policy = load::Policy::new(self.broker_key.trusted(), SystemTime::now());
            match load::load(&xml, &policy)
                .map_err(|e| e.to_string())?
                .metadata()
            {
                Metadata::Entity(e) => (**e).clone(),
                _ => return Err("the broker's metadata is not one entity".into()),
            }
        } else {
            self.known("agent1", &req.issuer)
                .ok_or_else(|| format!("the IdP does not know {}", req.issuer))?
        };
        let keys = saml_metadata::sso::sp_signing_keys(&requester).map_err(|e| e.to_string())?;
        m.verify(&keys, false).map_err(|e| e.to_string())?;
        let acs = saml_metadata::sso::acs_for(&requester, &req).map_err(|e| e.to_string())?;
        let form = idp_answer(
            &req,
            &idp_id(0),
            &acs,
            user,
            &self.idp_key,
            m.relay_state.as_deref(),
        )?;
        Ok((form, acs))
    }

    /// The SP's ACS: the Response validated with the IdP's metadata from the SP agent's file.
    fn sp_acs(&mut self, form: &str) -> Result<String, String> {
        let msg = post::decode_form(form, 1 << 20).map_err(|e| e.to_string())?;
        let idp = self
            .known("agent0", &idp_id(0))
            .ok_or("the SP does not know the IdP")?;
        let v =
            saml_metadata::sso::response_validator(&self.sp, &idp).map_err(|e| e.to_string())?;
        let r = v
            .validate(
                &msg.xml,
                SystemTime::now(),
                &mut self.requests,
                &mut self.replay,
            )
            .map_err(|e| e.to_string())?;
        Ok(r.name_id().map(|n| n.value.clone()).unwrap_or_default())
    }

    async fn requests_total(&self) -> String {
        let m = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("dame_requests_total "))
            .unwrap_or_default()
            .to_owned()
    }

    async fn run(mut self) -> bool {
        let (sp, idp) = (sp_id(0), idp_id(0));
        let back = "https://sp0.example.org/Shibboleth.sso/Login";
        let base = self.base.clone();
        println!(" first use of the pair (neither knows the other):");
        let first = Instant::now();
        let t = Instant::now();
        let (status, _, body) = self
            .ua(
                &format!(
                    "{base}/ds?entityID={}&return={}",
                    url_encode(&sp),
                    url_encode(back)
                ),
                None,
            )
            .await;
        if status != 200 || !body.contains(&url_encode(&idp)) {
            println!("  FAILED discovery: {status} {body}");
            return false;
        }
        say(
            t.elapsed(),
            "discovery: the broker's page lists the IdP for the SP",
        );
        let t = Instant::now();
        let (status, loc, _) = self
            .ua(&format!("{base}/ds/choose?idp={}", url_encode(&idp)), None)
            .await;
        if status != 302 || !loc.starts_with(back) {
            println!("  FAILED choice: {status} {loc}");
            return false;
        }
        say(
            t.elapsed(),
            "the user chooses the IdP: back to the SP's discovery return",
        );
        let t = Instant::now();
        let mut req = AuthnRequest::new(new_id(&mut openssl_random), &sp, SystemTime::now());
        req.acs_url = Some("https://sp0.example.org/Shibboleth.sso/SAML2/POST".into());
        self.requests.insert(
            &req.id,
            &idp,
            SystemTime::now() + Duration::from_secs(600),
            SystemTime::now(),
        );
        let idp_host = idp.split('/').nth(2).unwrap_or_default();
        let a1 = AuthenticateRequest::url(
            &format!("{base}/DAME"),
            &idp,
            &format!("https://{idp_host}/sso"),
            &req,
            Some("resource-7"),
            &self.sp_key.signing(),
        )
        .unwrap();
        let (status, to_idp, body) = self.ua(&a1, None).await;
        if status != 302 {
            println!("  FAILED AuthnRequest1: {status} {body}");
            return false;
        }
        say(
            t.elapsed(),
            "the SP's signed AuthnRequest1 to /DAME: stored; 302 to the IdP with the broker's AuthnRequest2",
        );
        let t = Instant::now();
        let (form, acs) = match self.idp(&to_idp, "alice").await {
            Ok(f) => f,
            Err(e) => {
                println!("  FAILED at the IdP: {e}");
                return false;
            }
        };
        let (status, _, body) = self.ua(&acs, Some(form)).await;
        if status != 303 {
            println!("  FAILED Response2: {status} {body}");
            return false;
        }
        say(
            t.elapsed(),
            "the IdP authenticates alice for the broker: Response2 validated at /acs, triggers out",
        );
        let t = Instant::now();
        let (status, replay, body) = self.ua(&format!("{base}/wait"), None).await;
        if status != 302
            || self.known("agent0", &idp).is_none()
            || self.known("agent1", &sp).is_none()
        {
            println!("  FAILED exchange: {status} {body}");
            return false;
        }
        say(
            t.elapsed(),
            "waiting page: both agents pulled and integrated the peer (LocalDynamic files); 302 AuthnRequest1 replayed",
        );
        let t = Instant::now();
        let user = match self.idp(&replay, "alice").await {
            Ok((form, _)) => self.sp_acs(&form),
            Err(e) => Err(e),
        };
        match user {
            Ok(u) if u == "alice" => say(
                t.elapsed(),
                "the IdP verifies the replayed AuthnRequest1 with the SP's new metadata; the SP logs alice in",
            ),
            other => {
                println!("  FAILED login: {other:?}");
                return false;
            }
        }
        say(first.elapsed(), "first use, end to end (no fixed wait)");
        println!(" second use (another user, the pair known):");
        let before = self.requests_total().await;
        let t = Instant::now();
        let idp_md = self
            .known("agent0", &idp)
            .unwrap_or_else(|| panic!("integrated"));
        let (req, sso) = saml_metadata::sso::authn_request(
            &self.sp,
            &idp_md,
            Binding::HttpRedirect,
            new_id(&mut openssl_random),
            SystemTime::now(),
        )
        .unwrap();
        self.requests.insert(
            &req.id,
            &idp,
            SystemTime::now() + Duration::from_secs(600),
            SystemTime::now(),
        );
        let q = redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            None,
            Some(&self.sp_key.signing()),
            None,
        )
        .unwrap();
        let user = match self.idp(&redirect::url(&sso, &q), "bob").await {
            Ok((form, _)) => self.sp_acs(&form),
            Err(e) => Err(e),
        };
        let after = self.requests_total().await;
        match user {
            Ok(u) if u == "bob" && before == after => say(
                t.elapsed(),
                "plain SSO from the agents' files: the SP logs bob in; the broker saw no request",
            ),
            other => {
                println!("  FAILED second use: {other:?} (broker requests {before} -> {after})");
                return false;
            }
        }
        true
    }
}

fn row(what: &str, lat: &[Duration], errors: usize, wall: Duration) {
    println!(
        "| {what} | {} | {:.0}/s | {} | {} | {errors} |",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        ms(percentile(lat, 0.5)),
        ms(percentile(lat, 0.99)),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let started = Instant::now();
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned();
    let broker_bin = bin_dir.join("dame-broker");
    let agent_bin = bin_dir.join("dame-agent");
    if !broker_bin.exists() || !agent_bin.exists() {
        eprintln!(
            "dame_services: {} or dame-agent missing: cargo build --release -p dame-server --bins --examples",
            broker_bin.display()
        );
        std::process::exit(2);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    if std::env::var_os("DAME_SERVICES_KEEP").is_some() {
        eprintln!("dame_services: logs and files in {}", dir.display());
    }
    let pg = a.postgres.then(|| testkit::postgres::Postgres::start(dir));
    let database = pg.as_ref().map_or_else(
        || dir.join("broker.db").display().to_string(),
        testkit::postgres::Postgres::url,
    );
    let broker_key = TestKey::rsa("broker");
    let (sp_key, idp_key) = (TestKey::rsa("sp"), TestKey::rsa("idp"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (bk, bc) = broker_key.write_pem(dir, "broker");
    testkit::signer::write_secret(&dir.join("admin.token"), TOKEN.as_bytes());
    std::fs::write(
        dir.join("broker.toml"),
        format!(
            "entity_id = \"https://broker.example.com/sp\"\npublic_url = \"{base}\"\nlisten = \"127.0.0.1:{port}\"\nkey = \"{}\"\ncertificate = \"{}\"\ndatabase = \"{database}\"\nadmin_token_file = \"{}\"\nallow_loopback_http = true\nexchange_deadline_s = 60\ntrigger_timeout_ms = 10000\nrate_per_source_per_minute = 100000000\nmax_pending_flows_per_address = 100000\n[http]\nmax_connections_per_address = 512\n",
            bk.display(),
            bc.display(),
            dir.join("admin.token").display()
        ),
    )
    .unwrap();
    let broker = spawn(
        &broker_bin,
        &["--config", &dir.join("broker.toml").display().to_string()],
        &dir.join("broker.log"),
        dir,
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    wait_for(&http, &format!("{base}/health"), "dame-broker", |t| {
        t == "ok"
    })
    .await;

    // One agent per provider, each registered with its sync location.
    let mut agents = Vec::new();
    let mut entities = Vec::new();
    let mut descriptors = Vec::new();
    let providers: Vec<(String, &str, &TestKey)> = (0..a.sps)
        .map(|i| (sp_id(i), "sp", &sp_key))
        .chain((0..a.idps).map(|j| (idp_id(j), "idp", &idp_key)))
        .collect();
    for (n, (id, side, key)) in providers.iter().enumerate() {
        let ap = free_port();
        let name = format!("agent{n}");
        let (k, c) = key.write_pem(dir, &name);
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "entity_id = \"{id}\"\nside = \"{side}\"\nlisten = \"127.0.0.1:{ap}\"\nbroker_mdq = \"{base}/mdq/\"\nbroker_endpoint = \"{base}/DAME\"\nbroker_certificate = \"{}\"\nkey = \"{}\"\ncertificate = \"{}\"\ndirectory = \"{}\"\nallow_http = true\n[http]\nmax_connections_per_address = 512\n",
                bc.display(),
                k.display(),
                c.display(),
                dir.join(&name).display()
            ),
        )
        .unwrap();
        agents.push(spawn(
            &agent_bin,
            &["--config", &cfg.display().to_string()],
            &dir.join(format!("{name}.log")),
            dir,
        ));
        let host = id.split('/').nth(2).unwrap();
        let sync = format!("http://127.0.0.1:{ap}/dame");
        let e = if *side == "sp" {
            EntityDescriptor::builder(id)
                .sp(SpSso::builder()
                    .signing_certificate(key.cert_der())
                    .acs(
                        Binding::HttpPost,
                        &format!("https://{host}/Shibboleth.sso/SAML2/POST"),
                    )
                    .discovery_response(&format!("https://{host}/Shibboleth.sso/Login")))
                .dame_sync_location(&sync)
                .build()
                .unwrap()
        } else {
            EntityDescriptor::builder(id)
                .idp(
                    IdpSso::builder()
                        .signing_certificate(key.cert_der())
                        .sso(Binding::HttpRedirect, &format!("https://{host}/sso")),
                )
                .dame_sync_location(&sync)
                .build()
                .unwrap()
        };
        entities.push((id.clone(), e.to_xml().unwrap()));
        descriptors.push(e);
        wait_for(
            &http,
            &format!("http://127.0.0.1:{ap}/health"),
            "dame-agent",
            |t| t == "ok",
        )
        .await;
    }
    for (id, xml) in &entities {
        let r = http
            .post(format!("{base}/admin/entities"))
            .bearer_auth(TOKEN)
            .body(xml.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "import {id}");
    }
    let store = if a.postgres { "PostgreSQL" } else { "SQLite" };
    if a.walk {
        println!(
            "-- DAME services on loopback: dame-broker ({store}) and two dame-agents as processes"
        );
        say(
            started.elapsed(),
            "broker and agents started, the SP and the IdP registered by the operator",
        );
        let w = Walk {
            base: base.clone(),
            http: http.clone(),
            dir: dir.to_owned(),
            broker_key,
            sp_key,
            idp_key,
            sp: descriptors[0].clone(),
            cookie: None,
            requests: OutstandingRequests::new(),
            replay: MemoryReplayCache::new(),
        };
        let ok = w.run().await;
        drop(agents);
        drop(broker);
        drop(pg);
        if !ok {
            std::process::exit(1);
        }
        return;
    }
    println!(
        "dame_services: store {store}, {} SPs x {} IdPs, {} clients, {} s per phase",
        a.sps, a.idps, a.clients, a.seconds
    );
    println!(
        "\n| phase | requests | rate | p50 | p99 | errors |\n| --- | --- | --- | --- | --- | --- |"
    );

    // 1. Every pair's first use at once.
    let run = Arc::new(Run {
        base: base.clone(),
        http: http.clone(),
        sp_key,
        idp_key,
    });
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.sps {
        for j in 0..a.idps {
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                run.first_use(&sp_id(i), &idp_id(j), &format!("user-{i}-{j}"))
                    .await
            }));
        }
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(d) => lat.push(d),
            Err(e) => {
                eprintln!("flow failed: {e}");
                errors += 1;
            }
        }
    }
    let wall = t.elapsed();
    lat.sort();
    row(
        &format!("first-use flows ({} concurrent)", a.sps * a.idps),
        &lat,
        errors,
        wall,
    );

    // 2. Discovery.
    let ds: Vec<String> = (0..a.sps)
        .map(|i| {
            format!(
                "{base}/ds?entityID={}&return={}",
                url_encode(&sp_id(i)),
                url_encode(&format!("https://sp{i}.example.org/Shibboleth.sso/Login"))
            )
        })
        .collect();
    let (lat, errors, wall) = hammer(&http, Arc::new(ds), a.clients, a.seconds).await;
    row("discovery page", &lat, errors, wall);

    // 3. The broker's MDQ service.
    let ids: Vec<String> = entities.iter().map(|(id, _)| id.clone()).collect();
    let mdq: Vec<String> = ids
        .iter()
        .map(|id| format!("{base}/mdq/entities/{}", url_encode(id)))
        .collect();
    let (lat, errors, wall) = hammer(&http, Arc::new(mdq), a.clients, a.seconds).await;
    row("MDQ (dame-broker)", &lat, errors, wall);
    let broker_kb = vm_hwm(broker.0.id());
    let agents_kb: u64 = agents.iter().map(|p| vm_hwm(p.0.id())).sum();

    // 4. pyFF serving the same entities.
    let pdir = dir.join("pyff");
    std::fs::create_dir_all(pdir.join("entities")).unwrap();
    for (n, (_, xml)) in entities.iter().enumerate() {
        std::fs::write(pdir.join(format!("entities/{n}.xml")), xml).unwrap();
    }
    let (pk, pc) = testkit::signer::rsa2048_self_signed("pyFF MDQ signer").unwrap();
    std::fs::write(pdir.join("sign.key"), pk).unwrap();
    std::fs::write(pdir.join("sign.crt"), pc).unwrap();
    std::fs::write(
        pdir.join("mdq.yaml"),
        format!(
            "- when update:\n    - load:\n        - {d}/entities/\n- when request:\n    - select:\n    - pipe:\n        - when accept application/samlmetadata+xml application/xml:\n            - first\n            - finalize:\n                cacheDuration: PT12H\n                validUntil: P10D\n            - sign:\n                key: {d}/sign.key\n                cert: {d}/sign.crt\n            - emit application/samlmetadata+xml\n            - break\n",
            d = pdir.display()
        ),
    )
    .unwrap();
    let pport = free_port();
    let pyffd = testkit::peers::venv_bin("pyffd");
    let pyff = spawn(
        &pyffd,
        &[
            "-f",
            "-H",
            "127.0.0.1",
            "-P",
            &pport.to_string(),
            &format!("--pid_file={}", pdir.join("pyffd.pid").display()),
            "-C",
            "mdq.yaml",
        ],
        &pdir.join("pyffd.log"),
        &pdir,
    );
    let n = entities.len();
    wait_for(
        &http,
        &format!("http://127.0.0.1:{pport}/api/status"),
        "pyFF",
        |t| t.contains(&format!("\"size\": {n}")),
    )
    .await;
    let purls: Vec<String> = ids
        .iter()
        .map(|id| format!("http://127.0.0.1:{pport}/entities/{}", url_encode(id)))
        .collect();
    let (lat, errors, wall) = hammer(&http, Arc::new(purls), a.clients, a.seconds).await;
    row("MDQ (pyFF 3.0, same entities)", &lat, errors, wall);
    let pyff_kb = vm_hwm(pyff.0.id());
    println!(
        "\npeak memory (VmHWM): dame-broker {:.1} MB; {} dame-agents {:.1} MB together; pyFF {:.1} MB",
        broker_kb as f64 / 1024.0,
        agents.len(),
        agents_kb as f64 / 1024.0,
        pyff_kb as f64 / 1024.0
    );
    drop(pyff);
    drop(agents);
    drop(broker);
    drop(pg);
    if std::env::var_os("DAME_SERVICES_KEEP").is_some() {
        let _ = tmp.keep();
    }
}
