//! `dame-agent` as a real process on loopback, against a broker side served by this test with
//! dame-protocol's own MDQ service core over a registry (real signatures, real HTTP): a trigger
//! integrates the peer into the LocalDynamic directory; replayed, forged, unsigned and stale
//! triggers are refused and write nothing; rollback removes (only what the agent wrote: an
//! operator's own file is neither replaced nor removed); a slow broker gets accepted-pending
//! and a signed status report; a dead broker gets an error answer; a restart re-initialises
//! from the `.xml.loc` files; malformed queries get 4xx; bad configurations name their key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod services;

use services::free_port;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use dame_protocol::integration::{loc_file, metadata_file};
use dame_protocol::mdi::{MdiStatus, StatusReports};
use dame_protocol::mdq_service::{MdqRequest, MdqService};
use dame_protocol::registry::{EntityPolicy, Registry};
use dame_protocol::trigger::{Trigger, TriggerAction};
use saml_core::protocol::openssl_random;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};
use testkit::signer::TestKey;

const SP: &str = "https://sp.example.org/shibboleth";
const IDP: &str = "https://idp.example.net/idp/shibboleth";

struct Broker {
    registry: Mutex<Registry>,
    delay_ms: AtomicU64,
    mdq_requests: AtomicUsize,
    reports: Mutex<Vec<String>>,
}

async fn mdq(State(b): State<Arc<Broker>>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    b.mdq_requests.fetch_add(1, Ordering::SeqCst);
    let delay = b.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let a = MdqService::new("/mdq/").answer(
        &MdqRequest {
            method: "GET",
            path: uri.path(),
            accept: h("accept"),
            if_none_match: h("if-none-match"),
        },
        &*b.registry.lock().unwrap(),
    );
    let mut r = (StatusCode::from_u16(a.status).unwrap(), a.body.to_vec()).into_response();
    for (k, v) in a.headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

async fn report(State(b): State<Arc<Broker>>, RawQuery(q): RawQuery) -> &'static str {
    b.reports.lock().unwrap().push(q.unwrap_or_default());
    "ok"
}

struct Agent {
    child: Child,
    port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(
    dir: &Path,
    broker: SocketAddr,
    port: u16,
    keys: &Keys,
    answer_within_ms: u64,
) -> PathBuf {
    config_with(dir, broker, port, keys, answer_within_ms, "")
}

/// [`config`] with `extra` lines appended.
fn config_with(
    dir: &Path,
    broker: SocketAddr,
    port: u16,
    keys: &Keys,
    answer_within_ms: u64,
    extra: &str,
) -> PathBuf {
    let cfg = format!(
        r#"entity_id = "{SP}"
side = "sp"
listen = "127.0.0.1:{port}"
broker_mdq = "http://{broker}/mdq/"
broker_endpoint = "http://{broker}/DAME"
broker_certificate = "{bc}"
key = "{k}"
certificate = "{c}"
directory = "{d}"
answer_within_ms = {answer_within_ms}
fetch_timeout_ms = 3000
allow_http = true
{extra}"#,
        bc = keys.broker_cert.display(),
        k = keys.sp_key.display(),
        c = keys.sp_cert.display(),
        d = dir.join("metadata").display(),
    );
    let p = dir.join(format!("agent-{port}.toml"));
    std::fs::write(&p, cfg).unwrap();
    p
}

async fn start(cfg: &Path, port: u16) -> Agent {
    let log = std::fs::File::create(cfg.with_extension("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_dame-agent"))
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent = Agent { child, port };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            && r.status() == 200
        {
            return agent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "dame-agent did not come up: {}",
        std::fs::read_to_string(cfg.with_extension("log")).unwrap_or_default()
    );
}

struct Keys {
    broker: TestKey,
    broker_cert: PathBuf,
    sp: TestKey,
    sp_key: PathBuf,
    sp_cert: PathBuf,
}

async fn trigger(_agent: &Agent, url: &str) -> (u16, String) {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.text().await.unwrap())
}

fn trigger_url(agent: &Agent, action: TriggerAction, key: &TestKey, at: SystemTime) -> String {
    Trigger::new(action, IDP, SP, at, &mut openssl_random)
        .url(
            &format!("http://127.0.0.1:{}/dame", agent.port),
            &key.signing(),
        )
        .unwrap()
}

/// A trigger the broker signs now.
fn now_from_broker(agent: &Agent, action: TriggerAction, keys: &Keys) -> String {
    trigger_url(agent, action, &keys.broker, SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_integrates_refuses_rolls_back_defers_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, sp) = (TestKey::rsa("broker"), TestKey::rsa("sp"));
    let (_, broker_cert) = broker.write_pem(tmp.path(), "broker");
    let (sp_key, sp_cert) = sp.write_pem(tmp.path(), "sp");
    let keys = Keys {
        broker,
        broker_cert,
        sp,
        sp_key,
        sp_cert,
    };
    let mut registry = Registry::new(keys.broker.signing());
    let idp = EntityDescriptor::builder(IDP)
        .idp(
            IdpSso::builder()
                .signing_certificate(TestKey::rsa("idp").cert_der())
                .sso(Binding::HttpRedirect, "https://idp.example.net/sso"),
        )
        .dame_sync_location("https://idp.example.net/dame")
        .build()
        .unwrap();
    let _ = registry
        .insert(idp, EntityPolicy::default(), SystemTime::now(), false)
        .unwrap();
    let state = Arc::new(Broker {
        registry: Mutex::new(registry),
        delay_ms: AtomicU64::new(0),
        mdq_requests: AtomicUsize::new(0),
        reports: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/mdq/entities/{*rest}", get(mdq))
        .route("/DAME", get(report))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let port = free_port();
    let cfg = config(tmp.path(), broker_addr, port, &keys, 500);
    let agent = start(&cfg, port).await;
    let dir = tmp.path().join("metadata");
    let xml = dir.join(metadata_file(IDP));
    let loc = dir.join(loc_file(IDP));

    // (a) A signed trigger: integrated, both files written.
    let now = SystemTime::now();
    let url = trigger_url(&agent, TriggerAction::FetchMetadata, &keys.broker, now);
    assert_eq!(
        trigger(&agent, &url).await,
        (200, "status=integrated".into())
    );
    assert!(std::fs::read(&xml).unwrap().starts_with(b"<?xml"));
    assert!(
        std::fs::read_to_string(&loc)
            .unwrap()
            .starts_with(&format!("http://{broker_addr}/mdq/entities/"))
    );
    // (b) Replayed, forged, unsigned, stale: refused (403), nothing written.
    std::fs::remove_file(&xml).unwrap();
    assert_eq!(trigger(&agent, &url).await.0, 403);
    let forged = trigger_url(&agent, TriggerAction::FetchMetadata, &keys.sp, now);
    assert_eq!(trigger(&agent, &forged).await.0, 403);
    let unsigned = format!(
        "http://127.0.0.1:{port}/dame?action=fetchmetadata&entityID={}",
        saml_core::bindings::url_encode(IDP)
    );
    assert_eq!(trigger(&agent, &unsigned).await.0, 403);
    let stale = trigger_url(
        &agent,
        TriggerAction::FetchMetadata,
        &keys.broker,
        now - Duration::from_secs(3600),
    );
    assert_eq!(trigger(&agent, &stale).await.0, 403);
    assert!(!xml.exists());
    // Malformed and oversized queries: 4xx, the agent stays up.
    let long = format!("http://127.0.0.1:{port}/dame?x={}", "a".repeat(20_000));
    assert!((400..500).contains(&trigger(&agent, &long).await.0));
    let junk = format!("http://127.0.0.1:{port}/dame?%ff%fe=&&==");
    assert!((400..500).contains(&trigger(&agent, &junk).await.0));
    // Integrate again, then (c) roll back.
    let again = now_from_broker(&agent, TriggerAction::FetchMetadata, &keys);
    assert_eq!(trigger(&agent, &again).await.0, 200);
    assert!(xml.exists() && loc.exists());
    let rb = now_from_broker(&agent, TriggerAction::Rollback, &keys);
    assert_eq!(trigger(&agent, &rb).await.0, 200);
    assert!(!xml.exists() && !loc.exists());
    // (c2) The operator's own <sha1>.xml (no .xml.loc, agent review M4): a fetch trigger is
    // refused as statically configured and a rollback leaves it.
    let hand = b"<!-- the operator's hand-vetted entry -->".to_vec();
    std::fs::write(&xml, &hand).unwrap();
    let over = now_from_broker(&agent, TriggerAction::FetchMetadata, &keys);
    let (code, body) = trigger(&agent, &over).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.starts_with("status=refused"), "{body}");
    assert!(body.contains("statically%20configured"), "{body}");
    let rb = now_from_broker(&agent, TriggerAction::Rollback, &keys);
    assert_eq!(trigger(&agent, &rb).await.0, 200);
    assert_eq!(std::fs::read(&xml).unwrap(), hand);
    assert!(!loc.exists());
    std::fs::remove_file(&xml).unwrap();
    // (d) A slow broker: accepted-pending, then a status report signed by the SP's key.
    state.delay_ms.store(1_500, Ordering::SeqCst);
    let slow = now_from_broker(&agent, TriggerAction::FetchMetadata, &keys);
    let (code, body) = trigger(&agent, &slow).await;
    assert_eq!((code, body.as_str()), (202, "status=accepted-pending"));
    let mut report = None;
    for _ in 0..60 {
        if let Some(r) = state.reports.lock().unwrap().pop() {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report.expect("a status report");
    let accepted = StatusReports::default()
        .accept(&report, &keys.sp.trusted(), SystemTime::now())
        .unwrap();
    assert_eq!(
        (accepted.status, accepted.peer.as_str()),
        (MdiStatus::Integrated, IDP)
    );
    assert!(xml.exists());
    state.delay_ms.store(0, Ordering::SeqCst);
    // (f) Restart: every integrated entity is fetched again at start, in the background
    // (agent review L3): with a broker that holds every request longer than the fetch timeout,
    // the agent listens at once, where it used to wait 3 s per entity before it listened (the
    // helper gives it 5 s). Two more entities DAME integrated earlier.
    drop(agent);
    for other in [
        "https://idp2.example.net/idp",
        "https://idp3.example.net/idp",
    ] {
        std::fs::write(dir.join(metadata_file(other)), b"<old/>").unwrap();
        std::fs::write(
            dir.join(loc_file(other)),
            format!("http://{broker_addr}/mdq/entities/x\n"),
        )
        .unwrap();
    }
    state.delay_ms.store(60_000, Ordering::SeqCst);
    let before = state.mdq_requests.load(Ordering::SeqCst);
    let port2 = free_port();
    let cfg2 = config(tmp.path(), broker_addr, port2, &keys, 500);
    let agent = start(&cfg2, port2).await;
    // (f2) A trigger accepted before the restart is refused after it (agent review L2: the
    // nonces lived in memory only, and whoever read a trigger URL, a proxy's access log,
    // replayed it within its six minutes after a restart). `rb` rolled back IDP before.
    let replayed = rb.replace(&format!(":{port}/"), &format!(":{port2}/"));
    let (code, body) = trigger(&agent, &replayed).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("replay"), "{body}");
    assert!(
        xml.exists() && loc.exists(),
        "the replayed rollback removed nothing"
    );
    let mut fetched = 0;
    for _ in 0..100 {
        fetched = state.mdq_requests.load(Ordering::SeqCst) - before;
        if fetched == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetched, 3, "each integrated entity is fetched once");
    // The fetches time out; what was integrated stays.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    state.delay_ms.store(0, Ordering::SeqCst);
    assert!(xml.exists() && loc.exists());
    // (e) The broker down: the trigger is answered with an error.
    server.abort();
    let _ = server.await;
    let down = now_from_broker(&agent, TriggerAction::FetchMetadata, &keys);
    let (code, body) = trigger(&agent, &down).await;
    assert_eq!(code, 500, "{body}");
    assert!(body.starts_with("status=error"), "{body}");
    assert!(xml.exists(), "a failed fetch leaves what was integrated");
}

#[test]
fn configuration_errors_name_their_key() {
    // The documented examples are valid as shipped.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    dame_server::config::AgentConfig::load(&root.join("agent.example.toml")).unwrap();
    dame_server::config::BrokerConfig::load(&root.join("broker.example.toml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let p = tmp.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dame-agent"))
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let base = r#"entity_id = "https://sp.example.org/sp"
side = "sp"
listen = "127.0.0.1:0"
broker_mdq = "https://broker.example.com/mdq/"
broker_endpoint = "https://broker.example.com/DAME"
broker_certificate = "/nonexistent/broker.crt"
key = "/nonexistent/sp.key"
certificate = "/nonexistent/sp.crt"
directory = "/nonexistent/dir"
"#;
    assert!(run(&format!("{base}colour = \"blue\"\n")).contains("colour"));
    assert!(run(base).contains("broker_certificate"));
    assert!(
        run(&base.replace("https://broker.example.com/mdq/", "ftp://x/")).contains("broker_mdq")
    );
    assert!(run(&base.replace("side = \"sp\"", "side = \"both\"")).contains("side"));
    // The listener's [http] limits.
    assert!(run(&format!("{base}[http]\nmax_connections = 0\n")).contains("http.max_connections"));
    assert!(run(&format!("{base}[http]\nslow = 1\n")).contains("slow"));
    assert!(
        run(&format!(
            "{base}answer_within_ms = 30000\n[http]\nrequest_timeout_s = 30\n"
        ))
        .contains("answer_within_ms")
    );
    // Broker review L7: a duration too long to add to a time panicked at the first request;
    // durations are bounded when the file is read.
    let example = std::fs::read_to_string(root.join("broker.example.toml")).unwrap();
    for (key, value) in [
        ("flow_lifetime_s", "86401"),
        ("exchange_deadline_s", "86401"),
        ("trigger_timeout_ms", "600001"),
    ] {
        let p = tmp.path().join("broker-bad.toml");
        let text: String = example
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")) && !l.starts_with(&format!("{key}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        // Top-level keys go before the first table.
        let text = match text.find("\n[") {
            Some(i) => format!("{}\n{key} = {value}{}", &text[..i], &text[i..]),
            None => format!("{text}{key} = {value}\n"),
        };
        std::fs::write(&p, text).unwrap();
        let e = dame_server::config::BrokerConfig::load(&p).unwrap_err();
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_dame-agent"))
        .args(["--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let help = Command::new(env!("CARGO_BIN_EXE_dame-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("broker_certificate"));
}

/// Broker review L7: a signing key, TLS key or admin token that other users can read or change
/// is refused when the service starts, naming the file and how to fix it; mode 0600 and 0640
/// (a group of readers) are taken. A configuration holding a database password is a secret
/// too, and a TOML error does not quote the line it found (which may be that password).
#[test]
fn secrets_others_can_read_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let (k, c) = TestKey::rsa("broker").write_pem(d, "broker");
    let token = d.join("admin.token");
    testkit::signer::write_secret(&token, b"0123456789abcdef0123456789abcdef-operator");
    let cfg = d.join("broker.toml");
    let write = |database: &str, extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "entity_id = \"https://broker.example.com/sp\"\n\
                 public_url = \"https://broker.example.com\"\nlisten = \"127.0.0.1:0\"\n\
                 key = \"{}\"\ncertificate = \"{}\"\ndatabase = \"{database}\"\n\
                 admin_token_file = \"{}\"\n{extra}",
                k.display(),
                c.display(),
                token.display()
            ),
        )
        .unwrap();
    };
    write("/var/lib/dame/broker.db", "");
    let broker = dame_server::config::BrokerConfig::load(&cfg).unwrap();
    broker.secrets().unwrap();
    for (file, name) in [(&k, "key"), (&token, "admin_token_file")] {
        for mode in [0o644, 0o604, 0o660, 0o666] {
            chmod(file, mode);
            let e = broker.secrets().unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("chmod 600"), "{mode:o}: {e}");
        }
        chmod(file, 0o640);
        broker.secrets().unwrap();
        chmod(file, 0o600);
    }
    // The agent's key.
    let agent = d.join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            "entity_id = \"https://sp.example.org/sp\"\nside = \"sp\"\nlisten = \"127.0.0.1:0\"\n\
             broker_mdq = \"https://broker.example.com/mdq/\"\n\
             broker_endpoint = \"https://broker.example.com/DAME\"\n\
             broker_certificate = \"{c}\"\nkey = \"{k}\"\ncertificate = \"{c}\"\n\
             directory = \"{d}\"\n",
            c = c.display(),
            k = k.display(),
            d = d.display()
        ),
    )
    .unwrap();
    let agent = dame_server::config::AgentConfig::load(&agent).unwrap();
    agent.keys().unwrap();
    chmod(&k, 0o644);
    assert!(agent.keys().unwrap_err().to_string().contains("chmod 600"));
    chmod(&k, 0o600);
    // A configuration with a database password.
    write("postgres://dame:s3cret@db.example.org/dame", "");
    chmod(&cfg, 0o644);
    let e = dame_server::config::BrokerConfig::load(&cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("database") && e.contains("chmod 600"), "{e}");
    chmod(&cfg, 0o600);
    dame_server::config::BrokerConfig::load(&cfg).unwrap();
    // A syntax error names the line and its key, not the text of the line (the unterminated
    // string here).
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("/dame\"\n", "/dame\n")).unwrap();
    let e = dame_server::config::BrokerConfig::load(&cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 6, database") && !e.contains("s3cret"),
        "{e}"
    );
}

/// The `validUntil` of the document in `xml` (unverified: an expired one shows as such).
fn file_valid_until(xml: &Path) -> SystemTime {
    match saml_metadata::load::parse_unverified(&std::fs::read(xml).unwrap()).unwrap() {
        saml_metadata::model::Metadata::Entity(e) => e.valid_until.unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Conversion review M6, at the service: with no trigger after the first, the agent fetches
/// an integrated peer again before its copy expires, and the broker's re-signed document
/// replaces it. The broker here publishes for 6 s and re-signs at half of that (its
/// `Registry::refresh_documents` on a timer, as `dame-broker`'s ticker does); the agent looks
/// every 300 ms and refreshes a peer at most once a second. Past the first document's
/// validUntil the file holds a later one that has not expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refreshes_an_integrated_peer_before_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, sp) = (TestKey::rsa("broker"), TestKey::rsa("sp"));
    let (_, broker_cert) = broker.write_pem(tmp.path(), "broker");
    let (sp_key, sp_cert) = sp.write_pem(tmp.path(), "sp");
    let keys = Keys {
        broker,
        broker_cert,
        sp,
        sp_key,
        sp_cert,
    };
    let mut registry = Registry::new(keys.broker.signing());
    registry.validity = Duration::from_secs(6);
    let idp = EntityDescriptor::builder(IDP)
        .idp(
            IdpSso::builder()
                .signing_certificate(TestKey::rsa("idp").cert_der())
                .sso(Binding::HttpRedirect, "https://idp.example.net/sso"),
        )
        .dame_sync_location("https://idp.example.net/dame")
        .build()
        .unwrap();
    let _ = registry
        .insert(idp, EntityPolicy::default(), SystemTime::now(), false)
        .unwrap();
    let state = Arc::new(Broker {
        registry: Mutex::new(registry),
        delay_ms: AtomicU64::new(0),
        mdq_requests: AtomicUsize::new(0),
        reports: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/mdq/entities/{*rest}", get(mdq))
        .route("/DAME", get(report))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let resigning = state.clone();
    let resigner = tokio::spawn(async move {
        loop {
            let _ = resigning
                .registry
                .lock()
                .unwrap()
                .refresh_documents(SystemTime::now(), usize::MAX);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let port = free_port();
    let cfg = config_with(
        tmp.path(),
        broker_addr,
        port,
        &keys,
        2000,
        "refresh_every_ms = 300\nrefresh_retry_ms = 1000\n",
    );
    let agent = start(&cfg, port).await;
    let xml = tmp.path().join("metadata").join(metadata_file(IDP));
    let url = now_from_broker(&agent, TriggerAction::FetchMetadata, &keys);
    assert_eq!(
        trigger(&agent, &url).await,
        (200, "status=integrated".into())
    );
    let first = file_valid_until(&xml);
    // Until well past the first document's validUntil, the file never holds an expired one.
    let end = first + Duration::from_secs(4);
    let mut renewed = false;
    while SystemTime::now() < end {
        let until = file_valid_until(&xml);
        assert!(
            until > SystemTime::now(),
            "the integrated copy expired: {}",
            std::fs::read_to_string(cfg.with_extension("log")).unwrap_or_default()
        );
        renewed |= until > first;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(renewed);
    assert!(state.mdq_requests.load(Ordering::SeqCst) >= 2);
    resigner.abort();
    server.abort();
}
