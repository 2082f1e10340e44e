//! End to end on loopback with real processes: `dame-broker` (SQLite store) and two
//! `dame-agent`s (beside an SP and an IdP), driven by a scripted user agent (an HTTP client that
//! keeps the broker's cookie and follows redirects by hand). The SP and the IdP software are
//! played by this test with saml-core and saml-metadata, reading their peers only from what their
//! agents wrote (the LocalDynamic directories). First use (exchange, then login), second use
//! (plain SSO), a broker restart (state from SQLite), and an SP whose agent is down (the flow
//! fails, the IdP's agent is told to roll back). Then the same on PostgreSQL (a private server
//! started here: initdb in a temporary directory, a free loopback port) with two broker
//! instances behind a small load balancer: one flow alternating between them, a replay across
//! instances refused, one instance killed mid-flow, a read-only store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod services;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dame_protocol::authenticate::AuthenticateRequest;
use dame_protocol::discovery::DiscoveryRequest;
use dame_protocol::integration::metadata_file;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::protocol::idp::{ResponseBuilder, check_signed_request};
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_TRANSIENT, NameId, OutstandingRequests, new_id,
    openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata, SpSso};
use services::{free_port, spawn};
use testkit::postgres::Postgres;
use testkit::signer::TestKey;

const SP: &str = "https://sp.example.org/shibboleth";
const SP2: &str = "https://sp2.example.org/shibboleth";
const IDP: &str = "https://idp.example.net/idp/shibboleth";
const IDP_SSO: &str = "https://idp.example.net/sso";
const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
const UID: &str = "urn:oid:0.9.2342.19200300.100.1.1";
const TOKEN: &str = "0123456789abcdef0123456789abcdef-operator";

async fn healthy(port: u16, cfg: &Path) {
    healthy_at(
        &reqwest::Client::new(),
        &format!("http://127.0.0.1:{port}"),
        cfg,
    )
    .await;
}

async fn healthy_at(c: &reqwest::Client, base: &str, cfg: &Path) {
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} did not come up: {}",
        cfg.display(),
        std::fs::read_to_string(cfg.with_extension("log")).unwrap_or_default()
    );
}

struct World {
    dir: PathBuf,
    broker_port: u16,
    broker_key: TestKey,
    sp_key: TestKey,
    idp_key: TestKey,
    http: reqwest::Client,
    cookie: Option<String>,
    sp_requests: OutstandingRequests,
    sp_replay: MemoryReplayCache,
    /// `https` when every service listens with TLS (see `tls_on_every_hop`).
    scheme: &'static str,
}

impl World {
    fn new(dir: &Path) -> Self {
        World {
            dir: dir.to_owned(),
            broker_port: free_port(),
            broker_key: TestKey::rsa("broker"),
            sp_key: TestKey::rsa("sp"),
            idp_key: TestKey::rsa("idp"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            sp_requests: OutstandingRequests::new(),
            sp_replay: MemoryReplayCache::new(),
            scheme: "http",
        }
    }

    fn idp_entity(&self, sync_port: u16) -> EntityDescriptor {
        EntityDescriptor::builder(IDP)
            .idp(
                IdpSso::builder()
                    .signing_certificate(self.idp_key.cert_der())
                    .sso(Binding::HttpRedirect, IDP_SSO),
            )
            .dame_sync_location(&format!("{}://127.0.0.1:{sync_port}/dame", self.scheme))
            .build()
            .unwrap()
    }

    fn broker(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.broker_port)
    }

    fn broker_config(&self) -> PathBuf {
        let db = self.dir.join("broker.db").display().to_string();
        self.instance_config("broker", self.broker_port, &db)
    }

    /// One broker instance's configuration: public at `broker_port` (the load balancer, or
    /// the instance itself), listening on `listen`, its store `database`.
    fn instance_config(&self, name: &str, listen: u16, database: &str) -> PathBuf {
        let (k, c) = self.broker_key.write_pem(&self.dir, "broker");
        let token = self.dir.join("admin.token");
        testkit::signer::write_secret(&token, TOKEN.as_bytes());
        let cfg = format!(
            r#"entity_id = "https://broker.example.com/sp"
public_url = "{scheme}://127.0.0.1:{p}"
listen = "127.0.0.1:{listen}"
key = "{k}"
certificate = "{c}"
database = "{database}"
admin_token_file = "{t}"
allow_loopback_http = true
exchange_deadline_s = 5
trigger_timeout_ms = 2000
"#,
            p = self.broker_port,
            scheme = self.scheme,
            k = k.display(),
            c = c.display(),
            t = token.display(),
        );
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(&p, cfg).unwrap();
        p
    }

    fn agent_config(
        &self,
        name: &str,
        entity: &str,
        side: &str,
        port: u16,
        key: &TestKey,
    ) -> PathBuf {
        let (_, bc) = self.broker_key.write_pem(&self.dir, "broker");
        let (k, c) = key.write_pem(&self.dir, name);
        let cfg = format!(
            r#"entity_id = "{entity}"
side = "{side}"
listen = "127.0.0.1:{port}"
broker_mdq = "{mdq}"
broker_endpoint = "{dame}"
broker_certificate = "{bc}"
key = "{k}"
certificate = "{c}"
directory = "{d}"
allow_http = true
"#,
            mdq = self.broker("/mdq/"),
            dame = self.broker("/DAME"),
            bc = bc.display(),
            k = k.display(),
            c = c.display(),
            d = self.dir.join(name).display(),
        );
        let p = self.dir.join(format!("{name}.toml"));
        std::fs::write(&p, cfg).unwrap();
        p
    }

    /// A GET or POST as the user agent: the broker's cookie kept, no redirect followed.
    async fn ua(&mut self, url: &str, form: Option<String>) -> (u16, Option<String>, String) {
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
        if let Some(set) = r.headers().get("set-cookie") {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, r.text().await.unwrap())
    }

    /// What an entity's software knows of a peer: its agent's file, verified with the
    /// broker's key.
    fn known(&self, agent_dir: &str, peer: &str) -> Option<EntityDescriptor> {
        let xml = std::fs::read(self.dir.join(agent_dir).join(metadata_file(peer))).ok()?;
        let agg = load::load(
            &xml,
            &Policy::new(self.broker_key.trusted(), SystemTime::now()),
        )
        .ok()?;
        match agg.metadata() {
            Metadata::Entity(e) => Some((**e).clone()),
            _ => None,
        }
    }

    /// The IdP's SSO endpoint: the request's issuer must be known (the broker, configured; or
    /// an SP its agent integrated) and its signature valid. Returns the form and the ACS.
    async fn idp_sso(&mut self, url: &str) -> Result<(String, String), String> {
        let q = url.split_once('?').map_or("", |(_, q)| q);
        let m = redirect::decode(q, 1 << 16).map_err(|e| e.to_string())?;
        let req = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let sp = if req.issuer == "https://broker.example.com/sp" {
            let xml = self
                .http
                .get(self.broker("/metadata"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            match load::load(
                &xml,
                &Policy::new(self.broker_key.trusted(), SystemTime::now()),
            )
            .unwrap()
            .metadata()
            {
                Metadata::Entity(e) => (**e).clone(),
                _ => panic!("broker metadata"),
            }
        } else {
            self.known("idp-agent", &req.issuer)
                .ok_or_else(|| format!("the IdP does not know {}", req.issuer))?
        };
        let keys = saml_metadata::sso::sp_signing_keys(&sp).map_err(|e| e.to_string())?;
        m.verify(&keys, false).map_err(|e| e.to_string())?;
        check_signed_request(
            &req,
            &[IDP_SSO],
            SystemTime::now(),
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
        let acs = saml_metadata::sso::acs_for(&sp, &req).map_err(|e| e.to_string())?;
        let xml =
            ResponseBuilder::for_request(&req, IDP, &acs, NameId::new("alice", NAMEID_TRANSIENT))
                .build(
                    &self.idp_key.signing(),
                    SystemTime::now(),
                    &mut openssl_random,
                )
                .map_err(|e| e.to_string())?;
        let mut form = format!("SAMLResponse={}", url_encode(&post::encode(&xml)));
        if let Some(rs) = &m.relay_state {
            form.push_str(&format!("&RelayState={}", url_encode(rs)));
        }
        Ok((form, acs))
    }

    fn sp_entity(&self, id: &str, sync_port: u16) -> EntityDescriptor {
        let host = id.split('/').nth(2).unwrap();
        EntityDescriptor::builder(id)
            .sp(SpSso::builder()
                .signing_certificate(self.sp_key.cert_der())
                .acs(
                    Binding::HttpPost,
                    &format!("https://{host}/Shibboleth.sso/SAML2/POST"),
                )
                .discovery_response(&format!("https://{host}/Shibboleth.sso/Login"))
                .requested_attribute(
                    "en",
                    "Example SP",
                    EPPN,
                    Some("eduPersonPrincipalName"),
                    true,
                ))
            .dame_sync_location(&format!("{}://127.0.0.1:{sync_port}/dame", self.scheme))
            .build()
            .unwrap()
    }

    async fn import(&self, e: &EntityDescriptor) {
        let r = self
            .http
            .post(self.broker("/admin/entities"))
            .bearer_auth(TOKEN)
            .body(e.to_xml().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// The SP's signed AuthnRequest1 for the IdP (it does not know it), to the broker.
    fn authn_request1(&mut self, sp: &str) -> String {
        let host = sp.split('/').nth(2).unwrap();
        let mut req = AuthnRequest::new(new_id(&mut openssl_random), sp, SystemTime::now());
        req.acs_url = Some(format!("https://{host}/Shibboleth.sso/SAML2/POST"));
        self.sp_requests.insert(
            &req.id,
            IDP,
            SystemTime::now() + Duration::from_secs(600),
            SystemTime::now(),
        );
        AuthenticateRequest::url(
            &self.broker("/DAME"),
            IDP,
            IDP_SSO,
            &req,
            Some("resource-7"),
            &self.sp_key.signing(),
        )
        .unwrap()
    }

    fn sp_acs(&mut self, form: &str) -> Result<String, String> {
        let msg = post::decode_form(form, 1 << 20).map_err(|e| e.to_string())?;
        let idp = self
            .known("sp-agent", IDP)
            .ok_or("the SP does not know the IdP")?;
        let sp = EntityDescriptor::builder(SP)
            .sp(SpSso::builder()
                .signing_certificate(self.sp_key.cert_der())
                .acs(
                    Binding::HttpPost,
                    "https://sp.example.org/Shibboleth.sso/SAML2/POST",
                ))
            .build()
            .unwrap();
        let v = saml_metadata::sso::response_validator(&sp, &idp).map_err(|e| e.to_string())?;
        let r = v
            .validate(
                &msg.xml,
                SystemTime::now(),
                &mut self.sp_requests,
                &mut self.sp_replay,
            )
            .map_err(|e| e.to_string())?;
        Ok(r.name_id().map(|n| n.value.clone()).unwrap_or_default())
    }

    /// Polls the waiting page until it redirects (or fails).
    async fn wait(&mut self) -> (u16, Option<String>, String) {
        for _ in 0..100 {
            let r = self.ua(&self.broker("/wait"), None).await;
            if r.0 != 200 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the flow did not finish");
    }
}

/// A first use of (SP, IDP) through the broker, as the user agent, the SP and the IdP see it.
async fn first_use(w: &mut World) -> Duration {
    let t0 = std::time::Instant::now();
    let ds =
        DiscoveryRequest::new(SP, Some("https://sp.example.org/Shibboleth.sso/Login")).to_query();
    let (status, _, body) = w.ua(&w.broker(&format!("/ds?{ds}")), None).await;
    assert_eq!(status, 200);
    assert!(body.contains(&url_encode(IDP)), "{body}");
    let (status, loc, _) = w
        .ua(
            &w.broker(&format!("/ds/choose?idp={}", url_encode(IDP))),
            None,
        )
        .await;
    assert_eq!(status, 302);
    assert_eq!(
        loc.unwrap(),
        format!(
            "https://sp.example.org/Shibboleth.sso/Login?entityID={}",
            url_encode(IDP)
        )
    );
    assert!(w.known("sp-agent", IDP).is_none());
    let a1 = w.authn_request1(SP);
    let (status, loc, body) = w.ua(&a1, None).await;
    assert_eq!(status, 302, "{body}");
    let (form, acs) = w.idp_sso(&loc.unwrap()).await.unwrap();
    assert_eq!(acs, w.broker("/acs"));
    let (status, loc, body) = w.ua(&w.broker("/acs"), Some(form)).await;
    assert_eq!((status, loc.as_deref()), (303, Some("/wait")), "{body}");
    // The waiting page is held open until the exchange ends: one request, no refresh period.
    let (status, loc, body) = w.ua(&w.broker("/wait"), None).await;
    assert_eq!(status, 302, "{body}");
    let replay = loc.unwrap();
    assert!(replay.starts_with(IDP_SSO), "{replay}");
    let (form, acs) = w.idp_sso(&replay).await.unwrap();
    assert_eq!(acs, "https://sp.example.org/Shibboleth.sso/SAML2/POST");
    assert_eq!(w.sp_acs(&form).unwrap(), "alice");
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_second_use_restart_and_a_failing_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let (sp_agent_port, idp_agent_port) = (free_port(), free_port());
    let mut w = World::new(tmp.path());
    let broker_cfg = w.broker_config();
    let mut broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &broker_cfg);
    healthy(w.broker_port, &broker_cfg).await;
    let sp_cfg = w.agent_config("sp-agent", SP, "sp", sp_agent_port, &w.sp_key);
    let idp_cfg = w.agent_config("idp-agent", IDP, "idp", idp_agent_port, &w.idp_key);
    // The IdP has uid, not eduPersonPrincipalName (which the SP requests): its agent asks
    // the broker for conversion rules after integrating the SP.
    let mut text = std::fs::read_to_string(&idp_cfg).unwrap();
    text.push_str(&format!(
        "[rules]\nhave = [\"{UID}\"]\nformat = \"simplesamlphp\"\nscopes = [\"example.net\"]\nnames = {{ \"{UID}\" = \"uid\", \"{EPPN}\" = \"eduPersonPrincipalName\" }}\n"
    ));
    std::fs::write(&idp_cfg, text).unwrap();
    let _sp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &sp_cfg);
    let _idp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &idp_cfg);
    healthy(sp_agent_port, &sp_cfg).await;
    healthy(idp_agent_port, &idp_cfg).await;
    let r = w
        .http
        .put(w.broker("/admin/rules"))
        .bearer_auth(TOKEN)
        .body(format!(
            r#"{{"rules": [{{"id": "eppn-from-uid", "target": {{"name": "{EPPN}"}}, "sources": ["{UID}"], "ops": [{{"op": "scope_add", "scope": "example.net"}}]}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The operator imports both providers.
    let idp = w.idp_entity(idp_agent_port);
    w.import(&w.sp_entity(SP, sp_agent_port)).await;
    w.import(&idp).await;
    // An import without the token is refused.
    let r = w
        .http
        .post(w.broker("/admin/entities"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // First use: discovery, the IdP chosen, AuthnRequest1, Response2, exchange, replay, login.
    let t = first_use(&mut w).await;
    eprintln!("first use end to end on loopback: {t:?}");
    // The IdP's agent wrote the rule for its operator, as JSON and as SimpleSAMLphp authproc.
    let stem = dame_protocol::integration::metadata_file(SP).replace(".xml", "");
    let rules = tmp.path().join("idp-agent").join("rules");
    let php = rules.join(format!("{stem}.authproc.php"));
    for _ in 0..100 {
        if php.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let php = std::fs::read_to_string(&php).unwrap_or_else(|e| {
        panic!(
            "authproc not written ({e}): {}",
            std::fs::read_to_string(idp_cfg.with_extension("log")).unwrap_or_default()
        )
    });
    assert!(php.contains("eppn-from-uid"), "{php}");
    assert!(
        php.contains("'uid'") && php.contains("eduPersonPrincipalName"),
        "{php}"
    );
    assert!(rules.join(format!("{stem}.json")).exists());

    // Second use: plain SSO, the broker not involved.
    let idp_md = w.known("sp-agent", IDP).unwrap();
    let (req, sso) = saml_metadata::sso::authn_request(
        &w.sp_entity(SP, sp_agent_port),
        &idp_md,
        Binding::HttpRedirect,
        new_id(&mut openssl_random),
        SystemTime::now(),
    )
    .unwrap();
    w.sp_requests.insert(
        &req.id,
        IDP,
        SystemTime::now() + Duration::from_secs(600),
        SystemTime::now(),
    );
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        Some(&w.sp_key.signing()),
        None,
    )
    .unwrap();
    let (form, _) = w.idp_sso(&redirect::url(&sso, &q)).await.unwrap();
    assert_eq!(w.sp_acs(&form).unwrap(), "alice");
    let metrics = w
        .http
        .get(w.broker("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dame_flows_done_total 1"), "{metrics}");
    assert!(metrics.contains("dame_relationships 1"), "{metrics}");

    // Restart: entities and relationships come back from SQLite.
    drop(broker);
    broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &broker_cfg);
    healthy(w.broker_port, &broker_cfg).await;
    let metrics = w
        .http
        .get(w.broker("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dame_entities 2"), "{metrics}");
    assert!(metrics.contains("dame_relationships 1"), "{metrics}");

    // The discovery page's search (plain HTML): by name, keyword or entityID.
    let found = w
        .ua(&w.broker("/ds/search?sp=x&q=idp.example"), None)
        .await
        .2;
    assert!(found.contains(&url_encode(IDP)), "{found}");
    let nothing = w.ua(&w.broker("/ds/search?sp=x&q=zzz+nope"), None).await.2;
    assert!(
        nothing.contains("No identity provider matches"),
        "{nothing}"
    );

    // An SP whose agent is down: the IdP integrated it, the SP's trigger fails, the flow fails
    // and the IdP's agent removes what it integrated.
    let dead = free_port();
    w.import(&w.sp_entity(SP2, dead)).await;
    w.cookie = None;
    let a1 = w.authn_request1(SP2);
    let (status, loc, body) = w.ua(&a1, None).await;
    assert_eq!(status, 302, "{body}");
    let (form, _) = w.idp_sso(&loc.unwrap()).await.unwrap();
    let (status, _, _) = w.ua(&w.broker("/acs"), Some(form)).await;
    assert_eq!(status, 303);
    let (status, _, body) = w.wait().await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("could not be reached"), "{body}");
    let mut gone = false;
    for _ in 0..40 {
        if w.known("idp-agent", SP2).is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the IdP's agent rolled back the SP it had integrated");
    assert!(
        w.known("idp-agent", SP).is_some(),
        "the established pair is untouched"
    );

    // A refused pair: the SP's policy now denies the IdP's domain; the broker refuses the
    // choice even for the pair it knows, and both agents let go of the pair (rolled back).
    let (http, policy_url) = (
        w.http.clone(),
        w.broker(&format!("/admin/policy?entityID={}", url_encode(SP))),
    );
    let policy = |deny: &str| {
        http.put(&policy_url)
            .bearer_auth(TOKEN)
            .body(format!(r#"{{"peers": {{"allow": [], "deny": [{deny}]}}}}"#))
    };
    assert_eq!(
        policy("\".example.net\"").send().await.unwrap().status(),
        200
    );
    w.cookie = None;
    let ds =
        DiscoveryRequest::new(SP, Some("https://sp.example.org/Shibboleth.sso/Login")).to_query();
    let (status, _, _) = w.ua(&w.broker(&format!("/ds?{ds}")), None).await;
    assert_eq!(status, 200);
    let (status, _, body) = w
        .ua(
            &w.broker(&format!("/ds/choose?idp={}", url_encode(IDP))),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let mut let_go = false;
    for _ in 0..100 {
        if w.known("idp-agent", SP).is_none() && w.known("sp-agent", IDP).is_none() {
            let_go = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(let_go, "both agents rolled the denied pair back");
    // The IdP's agent withdrew the conversion rules it wrote for the SP (they stayed in force:
    // still open after the sixth round); the files stay, loadable and empty.
    let php_of = || std::fs::read_to_string(rules.join(format!("{stem}.authproc.php"))).unwrap();
    let json_of = || std::fs::read_to_string(rules.join(format!("{stem}.json"))).unwrap();
    // Both files: the agent writes the product file first and the JSON after it, so the test
    // waits for the second as well (reading the JSON once the product file was withdrawn
    // raced its rewrite).
    let mut withdrawn = false;
    for _ in 0..100 {
        if !php_of().contains("eppn-from-uid") && !json_of().contains("eppn-from-uid") {
            withdrawn = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        withdrawn,
        "rules of the rolled-back SP withdrawn: {}\n{}",
        php_of(),
        json_of()
    );
    // Allowed again: both agents integrate the pair again.
    assert_eq!(policy("").send().await.unwrap().status(), 200);
    let mut back = false;
    for _ in 0..100 {
        if w.known("idp-agent", SP).is_some() && w.known("sp-agent", IDP).is_some() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "both agents integrated the allowed pair again");
    // And the IdP's agent asked for the SP's rules again.
    let mut again = false;
    for _ in 0..100 {
        if php_of().contains("eppn-from-uid") {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again, "rules written again: {}", php_of());
    drop(broker);
}

/// Bad input on every route: a typed 4xx, never a 5xx or a crash, and the broker stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx_on_every_route() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let cfg = w.broker_config();
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    let big = "A".repeat(300 << 10);
    let cases: Vec<(&str, &str, Option<&str>, Option<String>)> = vec![
        ("GET", "/ds", None, None),
        ("GET", "/ds?entityID=%ZZ", None, None),
        (
            "GET",
            "/ds?entityID=https%3A%2F%2Fnobody.example%2Fsp",
            None,
            None,
        ),
        ("GET", "/ds/choose?idp=x", None, None),
        ("GET", "/ds/choose?idp=x", Some("dame_flow=0123"), None),
        ("GET", "/DAME", None, None),
        ("GET", "/DAME?action=zzz", None, None),
        (
            "GET",
            "/DAME?action=authenticate&idpEntityID=x&SAMLRequest=%%%",
            None,
            None,
        ),
        ("GET", "/DAME?action=status&entityID=x", None, None),
        ("GET", "/DAME?action=rules&sp=x", None, None),
        ("POST", "/acs", None, Some("SAMLResponse=x".into())),
        (
            "POST",
            "/acs",
            Some("dame_flow=0123"),
            Some("SAMLResponse=%%%".into()),
        ),
        ("POST", "/acs", Some("dame_flow=0123"), Some(big.clone())),
        ("GET", "/wait", None, None),
        ("GET", "/wait", Some("dame_flow=nope"), None),
        (
            "GET",
            "/mdq/entities/https%3A%2F%2Fnobody.example",
            None,
            None,
        ),
        ("GET", "/mdq/entities/a/b", None, None),
        ("POST", "/admin/entities", None, Some("<x/>".into())),
        ("PUT", "/admin/rules", None, Some("{}".into())),
    ];
    for (method, path, cookie, body) in cases {
        let url = w.broker(path);
        let mut req = match method {
            "POST" => w.http.post(&url),
            "PUT" => w.http.put(&url),
            _ => w.http.get(&url),
        };
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!((400..500).contains(&status), "{method} {path}: {status}");
    }
    // With the operator's token, garbage is still a 4xx.
    for (path, body) in [
        ("/admin/entities", "<EntityDescriptor"),
        ("/admin/rules", "{\"rules\": 5}"),
    ] {
        let r = if path.ends_with("rules") {
            w.http.put(w.broker(path))
        } else {
            w.http.post(w.broker(path))
        };
        let status = r
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let ok = w.http.get(w.broker("/health")).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    // The default rate limit (120 discovery/authenticate requests per address and minute):
    // a flood from one address is answered 429 once it is used up, never 5xx. The limit counts
    // per clock minute: the flood and the search after it are started early in one, so that a
    // minute boundary in the middle cannot start a fresh count (a CI run met one).
    let second = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second >= 40 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let mut limited = 0;
    for _ in 0..130 {
        let status = w
            .http
            .get(w.broker("/ds?entityID=https%3A%2F%2Fnobody.example%2Fsp"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!((400..500).contains(&status), "{status}");
        limited += usize::from(status == 429);
    }
    assert!(
        limited >= 10,
        "the flood was rate limited ({limited} of 130)"
    );
    // The search, which walks the registry, counts against the same limit.
    let search = w
        .http
        .get(w.broker("/ds/search?sp=x&q=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 429);
    // So do Response2 attempts at the ACS (each one a store transaction and a signature check
    // for whoever holds a flow cookie); they were not limited before.
    let acs = w
        .http
        .post(w.broker("/acs"))
        .header("cookie", "dame_flow=0123456789abcdef")
        .body("SAMLResponse=PHg%2B")
        .send()
        .await
        .unwrap();
    assert_eq!(acs.status(), 429);
    let ok = w.http.get(w.broker("/health")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

/// The load balancer in front of the instances: each connection goes to the next backend
/// that accepts it (a killed instance is skipped).
async fn balancer(port: u16, backends: Vec<u16>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let mut next = 0usize;
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let order: Vec<u16> = (0..backends.len())
                .map(|i| backends[(next + i) % backends.len()])
                .collect();
            next += 1;
            tokio::spawn(async move {
                for b in order {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", b)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        return;
                    }
                }
            });
        }
    });
}

async fn metric(w: &World, base: &str, name: &str) -> String {
    let text = w
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_default()
        .to_owned()
}

/// Two broker instances on one private PostgreSQL server behind a load balancer: entities
/// imported on one are served by the other, the user agent alternates between them inside one
/// flow, an AuthnRequest1 used on one is refused as replayed on the other, and after one
/// instance is killed mid-flow the flow finishes on the survivor; then the second use is plain
/// SSO and a fresh instance started on the same database sees the relationship.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_share_a_flow_and_survive_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Postgres::start(tmp.path());
    let mut w = World::new(tmp.path());
    let (port_a, port_b) = (free_port(), free_port());
    balancer(w.broker_port, vec![port_a, port_b]).await;
    let a_cfg = w.instance_config("broker-a", port_a, &pg.url());
    let b_cfg = w.instance_config("broker-b", port_b, &pg.url());
    let mut a = spawn(env!("CARGO_BIN_EXE_dame-broker"), &a_cfg);
    let _b = spawn(env!("CARGO_BIN_EXE_dame-broker"), &b_cfg);
    healthy(port_a, &a_cfg).await;
    healthy(port_b, &b_cfg).await;
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let (sp_agent_port, idp_agent_port) = (free_port(), free_port());
    let sp_cfg = w.agent_config("sp-agent", SP, "sp", sp_agent_port, &w.sp_key);
    let idp_cfg = w.agent_config("idp-agent", IDP, "idp", idp_agent_port, &w.idp_key);
    let _sp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &sp_cfg);
    let _idp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &idp_cfg);
    healthy(sp_agent_port, &sp_cfg).await;
    healthy(idp_agent_port, &idp_cfg).await;

    // Imported on A (both through the balancer's instance A directly).
    for e in [w.sp_entity(SP, sp_agent_port), w.idp_entity(idp_agent_port)] {
        let r = w
            .http
            .post(format!("{base_a}/admin/entities"))
            .bearer_auth(TOKEN)
            .body(e.to_xml().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // B reloads what A stored (its ticker, every second).
    let mut seen = false;
    for _ in 0..60 {
        if metric(&w, &base_b, "dame_entities").await == "2" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "instance B sees the entities imported on A");
    let mdq = w
        .http
        .get(format!("{base_b}/mdq/entities/{}", url_encode(IDP)))
        .send()
        .await
        .unwrap();
    assert_eq!(mdq.status(), 200, "B's MDQ service serves A's import");

    // One flow, alternating: discovery on A, the choice on B, AuthnRequest1 on A.
    let ds =
        DiscoveryRequest::new(SP, Some("https://sp.example.org/Shibboleth.sso/Login")).to_query();
    let (status, _, body) = w.ua(&format!("{base_a}/ds?{ds}"), None).await;
    assert_eq!(
        status,
        200,
        "{body} {}",
        std::fs::read_to_string(a_cfg.with_extension("log")).unwrap_or_default()
    );
    let (status, _, body) = w
        .ua(&format!("{base_b}/ds/choose?idp={}", url_encode(IDP)), None)
        .await;
    assert_eq!(status, 302, "B continues A's flow: {body}");
    let a1 = w.authn_request1(SP);
    let query = a1.split_once('?').unwrap().1.to_owned();
    let (status, loc, body) = w.ua(&format!("{base_a}/DAME?{query}"), None).await;
    assert_eq!(status, 302, "{body}");
    let to_idp = loc.unwrap();
    // The same AuthnRequest1 on B, without the flow: already used (on A), refused.
    let cookie = w.cookie.take();
    let (status, _, body) = w.ua(&format!("{base_b}/DAME?{query}"), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("replayed"), "{body}");
    w.cookie = cookie;

    // A dies mid-flow (SIGKILL: nothing flushed, nothing said); the IdP answers, Response2
    // goes to B, the triggers go out from B, the agents fetch through the balancer.
    drop(a);
    let (form, acs) = w.idp_sso(&to_idp).await.unwrap();
    assert_eq!(acs, w.broker("/acs"));
    let (status, loc, body) = w.ua(&format!("{base_b}/acs"), Some(form)).await;
    assert_eq!((status, loc.as_deref()), (303, Some("/wait")), "{body}");
    let mut done = None;
    for _ in 0..100 {
        let r = w.ua(&format!("{base_b}/wait"), None).await;
        if r.0 != 200 {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, loc, body) = done.expect("the flow finished on B");
    assert_eq!(status, 302, "{body}");
    let (form, _) = w.idp_sso(&loc.unwrap()).await.unwrap();
    assert_eq!(w.sp_acs(&form).unwrap(), "alice");
    assert!(w.known("idp-agent", SP).is_some());

    // The store turns read-only (as a full disk or a failed-over replica would): the broker
    // answers 503 naming the store, stays up, and the flow caught in it continues unharmed
    // once the store is writable again (the pair is known by now: the choice ends the flow
    // with the discovery answer; without the flow it would be a 404).
    let admin = sqlx::postgres::PgPool::connect(&pg.url()).await.unwrap();
    let read_only = |on: bool| {
        let admin = admin.clone();
        async move {
            sqlx::query("SET default_transaction_read_only = off")
                .execute(&admin)
                .await
                .unwrap();
            sqlx::query(if on {
                "ALTER SYSTEM SET default_transaction_read_only = on"
            } else {
                "ALTER SYSTEM RESET default_transaction_read_only"
            })
            .execute(&admin)
            .await
            .unwrap();
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&admin)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    w.cookie = None;
    let (status, _, body) = w.ua(&format!("{base_b}/ds?{ds}"), None).await;
    assert_eq!(status, 200, "{body}");
    read_only(true).await;
    let choose = format!("{base_b}/ds/choose?idp={}", url_encode(IDP));
    let (status, _, body) = w.ua(&choose, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store is unavailable"), "{body}");
    let health = w.http.get(format!("{base_b}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    read_only(false).await;
    let (status, _, body) = w.ua(&choose, None).await;
    assert_eq!(status, 302, "the flow survived the read-only store: {body}");

    // A fresh instance on the same database: the relationship and the entities are there.
    a = spawn(env!("CARGO_BIN_EXE_dame-broker"), &a_cfg);
    healthy(port_a, &a_cfg).await;
    assert_eq!(metric(&w, &base_a, "dame_relationships").await, "1");
    assert_eq!(metric(&w, &base_a, "dame_entities").await, "2");
    assert_eq!(metric(&w, &base_a, "dame_flows").await, "0");
    drop(a);
}

/// The SP as its registrant uploads it (https endpoints, a DAME sync location), its signing
/// certificate `key`'s.
fn registrable_sp(key: &TestKey) -> saml_metadata::builder::EntityBuilder {
    EntityDescriptor::builder(SP)
        .sp(SpSso::builder().signing_certificate(key.cert_der()).acs(
            Binding::HttpPost,
            "https://sp.example.org/Shibboleth.sso/SAML2/POST",
        ))
        .dame_sync_location("https://sp.example.org/dame")
}

/// A self-signed TLS certificate for `dns` names and `ips` (two days), written as
/// `<stem>.crt` and `<stem>.key` under `dir`: (certificate file, key file, key, certificate).
fn tls_cert(
    dir: &Path,
    stem: &str,
    dns: &[&str],
    ips: &[&str],
) -> (
    PathBuf,
    PathBuf,
    openssl::pkey::PKey<openssl::pkey::Private>,
    openssl::x509::X509,
) {
    use openssl::x509::extension::SubjectAlternativeName;
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", dns.first().or(ips.first()).unwrap())
        .unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for d in dns {
        san.dns(d);
    }
    for i in ips {
        san.ip(i);
    }
    let san = san.build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let cert = b.build();
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.to_pem().unwrap()).unwrap();
    testkit::signer::write_secret(&k, &key.private_key_to_pem_pkcs8().unwrap());
    (c, k, key, cert)
}

/// A one-host HTTPS server for proofs of ownership: a self-signed certificate for
/// `sp.example.org`, answers from `files` (path -> body), 404 otherwise; counts requests.
fn proof_server(
    dir: &Path,
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (u16, PathBuf) {
    use openssl::ssl::{SslAcceptor, SslMethod};
    use std::io::{Read as _, Write as _};
    let (ca, _, key, cert) = tls_cert(dir, "proof", &["sp.example.org"], &[]);
    let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acc.set_private_key(&key).unwrap();
    acc.set_certificate(&cert).unwrap();
    let acc = std::sync::Arc::new(acc.build());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(mut tls) = acc.accept(stream) else {
                continue;
            };
            let mut buf = [0u8; 4096];
            let n = tls.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
            let answer = files.lock().unwrap().get(&path).cloned();
            let resp = match answer {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned(),
            };
            let _ = tls.write_all(resp.as_bytes());
            let _ = tls.shutdown();
        }
    });
    (port, ca)
}

/// Appends the `[registration]` table of the tests to the broker configuration `cfg`: proofs
/// fetched from the proof server at `proof_port` (trusting `ca`), `sp.example.org` pinned to
/// loopback, private addresses allowed or not.
fn add_registration(cfg: &Path, proof_port: u16, ca: &Path, allow_private: bool) {
    let mut text = std::fs::read_to_string(cfg).unwrap();
    if allow_private {
        text.push_str("[registration]\nallow_private = true\n");
    } else {
        text.push_str("[registration]\n");
    }
    text.push_str(&format!(
        "port = {proof_port}\nca = \"{}\"\nhosts = {{ \"sp.example.org\" = \"127.0.0.1\" }}\n",
        ca.display()
    ));
    std::fs::write(cfg, text).unwrap();
}

/// Publishes a challenge (`c`, the answer of `/register`) where the proof server serves it.
fn publish(
    files: &std::sync::Mutex<std::collections::HashMap<String, String>>,
    proof_port: u16,
    c: &serde_json::Value,
) {
    let url = c["url"].as_str().unwrap();
    let path = url.split_once(&format!(":{proof_port}")).unwrap().1;
    files
        .lock()
        .unwrap()
        .insert(path.to_owned(), c["content"].as_str().unwrap().to_owned());
}

/// Self-service registration over HTTP: a challenge, a failed proof (nothing published), the
/// proof published and fetched over TLS from the entityID's host, the entity registered and
/// served, its token managing its own policy and metadata and nothing else, a deletion proven
/// the same way; and with private addresses not allowed (the default), a host resolving to
/// loopback is refused without being contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_with_proof_of_ownership_and_entity_tokens() {
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let files = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (proof_port, ca) = proof_server(tmp.path(), files.clone(), hits.clone());
    let cfg = w.broker_config();
    add_registration(&cfg, proof_port, &ca, true);
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;

    // The SP's registrant uploads its metadata (https endpoints, a DAME sync location).
    let sp = registrable_sp(&w.sp_key).build().unwrap();
    let post = |path: String, body: Option<String>| {
        let r = w.http.post(w.broker(&path));
        match body {
            Some(b) => r.body(b),
            None => r,
        }
    };
    let r = post(
        "/register?operation=register".into(),
        Some(sp.to_xml().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let url = c["url"].as_str().unwrap().to_owned();
    let path = url
        .split_once(&format!(":{proof_port}"))
        .unwrap()
        .1
        .to_owned();
    assert!(path.starts_with("/.well-known/dame-ownership/"), "{url}");
    let secret = c["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let verify = format!("/register/verify?entityID={}", url_encode(SP));
    // The verify step: the requester's secret, and the metadata again (none for a deletion).
    let verify_with = |secret: &str, body: Option<String>| {
        let r = w.http.post(w.broker(&verify)).bearer_auth(secret);
        match body {
            Some(b) => r.body(b),
            None => r,
        }
    };
    let md = sp.to_xml().unwrap();
    // Nothing published yet: refused, an attempt used.
    let r = verify_with(&secret, Some(md.clone())).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let mdq = format!("/mdq/entities/{}", url_encode(SP));
    let status = w.http.get(w.broker(&mdq)).send().await.unwrap().status();
    assert_eq!(status, 404, "not registered before the proof");
    // Published. Audit of 2026-12-05, finding 1: somebody else calling the verify step now
    // (the entityID is public) got the registration, and its token; without the secret the
    // broker does not even fetch.
    files
        .lock()
        .unwrap()
        .insert(path.clone(), c["content"].as_str().unwrap().to_owned());
    for (who, body) in [
        ("", None),
        ("", Some(md.clone())),
        (&"ab".repeat(32)[..], Some(md.clone())),
    ] {
        let r = verify_with(who, body).send().await.unwrap();
        assert_eq!(r.status(), 404, "{who:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no fetch for a stranger");
    // The requester's secret with other metadata than was uploaded: refused before the fetch.
    let other = md.replace("Shibboleth.sso/SAML2/POST", "Shibboleth.sso/SAML2/POST2");
    let r = verify_with(&secret, Some(other)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The requester: registered, served, a token issued once.
    let r = verify_with(&secret, Some(md.clone())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let token = done["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    let status = w.http.get(w.broker(&mdq)).send().await.unwrap().status();
    assert_eq!(status, 200);
    // The challenge is used up; a second registration of the same entityID is refused.
    let r = verify_with(&secret, Some(md.clone())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post(
        "/register?operation=register".into(),
        Some(sp.to_xml().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    // The token manages its own entity, nothing else.
    w.import(&w.idp_entity(free_port())).await;
    let policy = r#"{"peers": {"allow": [], "deny": ["evil.example"]}}"#;
    let put = |id: &str, bearer: Option<&str>| {
        let r = w
            .http
            .put(w.broker(&format!("/admin/policy?entityID={}", url_encode(id))))
            .body(policy);
        match bearer {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    assert_eq!(put(SP, Some(&token)).send().await.unwrap().status(), 200);
    assert_eq!(put(IDP, Some(&token)).send().await.unwrap().status(), 403);
    assert_eq!(put(SP, Some("forged")).send().await.unwrap().status(), 403);
    assert_eq!(put(SP, None).send().await.unwrap().status(), 403);
    assert_eq!(put(IDP, Some(TOKEN)).send().await.unwrap().status(), 200);
    let upload = |e: &EntityDescriptor| {
        w.http
            .post(w.broker("/admin/entities"))
            .bearer_auth(&token)
            .body(e.to_xml().unwrap())
    };
    assert_eq!(upload(&sp).send().await.unwrap().status(), 200);
    assert_eq!(
        upload(&w.idp_entity(free_port()))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );

    // An update proven the same way gives the owner a new token and takes back the earlier
    // one (a token that leaked is recovered with a proof, not only by deleting the entity).
    let r = post("/register?operation=update".into(), Some(md.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    publish(&files, proof_port, &c);
    let r = verify_with(c["secret"].as_str().unwrap(), Some(md.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let old_token = token;
    let token = done["token"].as_str().unwrap().to_owned();
    assert_ne!(token, old_token);
    assert_eq!(
        put(SP, Some(&old_token)).send().await.unwrap().status(),
        403
    );
    assert_eq!(put(SP, Some(&token)).send().await.unwrap().status(), 200);

    // Deletion, proven the same way: gone, and its token with it.
    let r = post(
        format!("/register?operation=delete&entityID={}", url_encode(SP)),
        None,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    publish(&files, proof_port, &c);
    let r = verify_with(c["secret"].as_str().unwrap(), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = w.http.get(w.broker(&mdq)).send().await.unwrap().status();
    assert_eq!(status, 404);
    assert_eq!(put(SP, Some(&token)).send().await.unwrap().status(), 403);

    // The default: private addresses refused. A broker whose registration host resolves to
    // loopback does not even connect.
    drop(_broker);
    let cfg2 = w.instance_config(
        "broker2",
        w.broker_port,
        &tmp.path().join("b2.db").display().to_string(),
    );
    add_registration(&cfg2, proof_port, &ca, false);
    let _broker2 = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg2);
    healthy(w.broker_port, &cfg2).await;
    let r = post(
        "/register?operation=register".into(),
        Some(sp.to_xml().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let before = hits.load(Ordering::SeqCst);
    let r = verify_with(c["secret"].as_str().unwrap(), Some(md))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "no connection to a private address"
    );
}

/// A broker with self-service registration (and `extra` top-level configuration) where the
/// SP registered itself with proof of ownership. Returns the broker process, the SP's
/// metadata and its entity token.
async fn self_registered_sp(
    w: &World,
    tmp: &Path,
    extra: &str,
) -> (services::Proc, EntityDescriptor, String) {
    let files = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (proof_port, ca) = proof_server(tmp, files.clone(), hits);
    let cfg = w.broker_config();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{extra}{text}")).unwrap();
    add_registration(&cfg, proof_port, &ca, true);
    let broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    let sp = registrable_sp(&w.sp_key).build().unwrap();
    let md = sp.to_xml().unwrap();
    let r = w
        .http
        .post(w.broker("/register?operation=register"))
        .body(md.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    publish(&files, proof_port, &c);
    let r = w
        .http
        .post(w.broker(&format!("/register/verify?entityID={}", url_encode(SP))))
        .bearer_auth(c["secret"].as_str().unwrap())
        .body(md)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    (broker, sp, done["token"].as_str().unwrap().to_owned())
}

/// Audit finding (HIGH): an entity's own token uploads metadata to /admin/entities without a
/// proof; what it carries beyond its host (here an entity category, which only an operator
/// vouches for) is refused as at registration, while the operator's import keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_token_upload_cannot_vouch_for_more_than_its_host() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let (_broker, _sp, token) = self_registered_sp(&w, tmp.path(), "").await;
    let claimed = registrable_sp(&w.sp_key)
        .entity_attribute(
            "http://macedir.org/entity-category",
            "http://refeds.org/category/research-and-scholarship",
        )
        .build()
        .unwrap();
    let upload = |bearer: &str| {
        w.http
            .post(w.broker("/admin/entities"))
            .bearer_auth(bearer)
            .body(claimed.to_xml().unwrap())
    };
    let r = upload(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("EntityAttributes"));
    assert_eq!(upload(TOKEN).send().await.unwrap().status(), 200);
}

/// Audit finding (MEDIUM): the entity-token endpoints had no rate limit, and each call bumps
/// the store generation (every instance reloads) and an upload triggers every peer. One
/// token from one address now meets the per-address limit (12 a minute here; 40 calls span
/// at most two minute windows, so one of them passes it), for policy changes and uploads
/// alike; the operator is not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_token_calls_are_rate_limited_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let (_broker, sp, token) =
        self_registered_sp(&w, tmp.path(), "rate_per_source_per_minute = 12\n").await;
    let put = |bearer: &str| {
        w.http
            .put(w.broker(&format!("/admin/policy?entityID={}", url_encode(SP))))
            .bearer_auth(bearer)
            .body(r#"{"peers": {"allow": [], "deny": ["evil.example"]}}"#)
    };
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(put(&token).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    // An upload with the token from the same address, once the budget is spent.
    let mut upload_statuses = Vec::new();
    for _ in 0..13 {
        let r = w
            .http
            .post(w.broker("/admin/entities"))
            .bearer_auth(&token)
            .body(sp.to_xml().unwrap())
            .send()
            .await
            .unwrap();
        upload_statuses.push(r.status().as_u16());
    }
    assert!(upload_statuses.contains(&429), "{upload_statuses:?}");
    // The operator is not limited.
    for _ in 0..3 {
        assert_eq!(put(TOKEN).send().await.unwrap().status(), 200);
    }
}

/// TLS terminated by the services themselves on every hop: the user agent and the IdP to the
/// broker, the broker's triggers to the agents, the agents' MDQ pulls and reports to the
/// broker, each side trusting only the test's certificate; a first use completes, and a plain
/// HTTP request to the TLS port gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_every_hop() {
    let tmp = tempfile::tempdir().unwrap();
    let (crt, key, _, cert) = tls_cert(tmp.path(), "tls", &["localhost"], &["127.0.0.1"]);
    let mut w = World::new(tmp.path());
    w.scheme = "https";
    w.http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&cert.to_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let tls = format!(
        "tls_certificate = \"{}\"\ntls_key = \"{}\"\n",
        crt.display(),
        key.display()
    );
    let append = |p: &Path, extra: &str| {
        let mut t = std::fs::read_to_string(p).unwrap();
        t.push_str(extra);
        std::fs::write(p, t).unwrap();
    };
    let broker_cfg = w.broker_config();
    append(
        &broker_cfg,
        &format!("{tls}agent_ca = \"{}\"\nmax_flows = 1\n", crt.display()),
    );
    let (sp_port, idp_port) = (free_port(), free_port());
    let sp_cfg = w.agent_config("sp-agent", SP, "sp", sp_port, &w.sp_key);
    let idp_cfg = w.agent_config("idp-agent", IDP, "idp", idp_port, &w.idp_key);
    for c in [&sp_cfg, &idp_cfg] {
        append(c, &format!("{tls}broker_ca = \"{}\"\n", crt.display()));
    }
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &broker_cfg);
    let _sp = spawn(env!("CARGO_BIN_EXE_dame-agent"), &sp_cfg);
    let _idp = spawn(env!("CARGO_BIN_EXE_dame-agent"), &idp_cfg);
    healthy_at(&w.http, &w.broker(""), &broker_cfg).await;
    healthy_at(&w.http, &format!("https://127.0.0.1:{sp_port}"), &sp_cfg).await;
    healthy_at(&w.http, &format!("https://127.0.0.1:{idp_port}"), &idp_cfg).await;
    w.import(&w.sp_entity(SP, sp_port)).await;
    w.import(&w.idp_entity(idp_port)).await;
    let t = first_use(&mut w).await;
    eprintln!("first use with TLS on every hop: {t:?}");
    // max_flows = 1: one login in progress is held, a second is refused until it ends.
    let ds =
        DiscoveryRequest::new(SP, Some("https://sp.example.org/Shibboleth.sso/Login")).to_query();
    w.cookie = None;
    assert_eq!(w.ua(&w.broker(&format!("/ds?{ds}")), None).await.0, 200);
    w.cookie = None;
    let (status, _, body) = w.ua(&w.broker(&format!("/ds?{ds}")), None).await;
    assert_eq!(status, 503, "{body}");
    // Plain HTTP to the TLS listener: no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", w.broker_port))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

/// Audit of 2026-12-05, finding 6: deleting an entity removed its relationships from the store
/// but not from the running broker (reloading only added pairs), so after somebody else
/// registered the entityID again, its first update sent the new owner's metadata to the old
/// peers. Now the store's relationships replace the broker's, and a proven deletion tells each
/// established peer to roll back what it integrated for the entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entity_leaves_no_relationship_and_its_peers_roll_back() {
    use dame_server::store::{Changes, FlowSelect, SqliteStore, Store as _};
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let files = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (proof_port, ca) = proof_server(tmp.path(), files.clone(), hits);
    // The IdP's agent: records the triggers it receives.
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let agent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent_port = agent.local_addr().unwrap().port();
    {
        let got = got.clone();
        std::thread::spawn(move || {
            for mut s in agent.incoming().flatten() {
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]);
                got.lock()
                    .unwrap()
                    .push(line.lines().next().unwrap_or("").to_owned());
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\nstatus=integrated",
                );
            }
        });
    }
    let cfg = w.broker_config();
    add_registration(&cfg, proof_port, &ca, true);
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    w.import(&w.idp_entity(agent_port)).await;
    let sp = w.sp_entity(SP, free_port());
    w.import(&sp).await;
    // An exchange established (IdP, SP) earlier: the row the broker writes when one ends.
    let db = SqliteStore::open(&tmp.path().join("broker.db"))
        .await
        .unwrap();
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    db.transact(FlowSelect::None, now, |_| {
        let c = Changes {
            relationships: vec![(IDP.into(), SP.into(), now)],
            ..Changes::default()
        };
        (c, ())
    })
    .await
    .unwrap();
    let pairs = || async {
        let m = w
            .http
            .get(w.broker("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("dame_relationships "))
            .unwrap()
            .to_owned()
    };
    let mut waited = 0;
    while pairs().await != "1" && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(pairs().await, "1", "the broker saw the stored relationship");
    // The SP's owner deletes it, with proof.
    let verify = |c: &serde_json::Value, body: Option<String>| {
        let r = w
            .http
            .post(w.broker(&format!("/register/verify?entityID={}", url_encode(SP))))
            .bearer_auth(c["secret"].as_str().unwrap());
        match body {
            Some(b) => r.body(b),
            None => r,
        }
    };
    let r = w
        .http
        .post(w.broker(&format!(
            "/register?operation=delete&entityID={}",
            url_encode(SP)
        )))
        .send()
        .await
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    publish(&files, proof_port, &c);
    let r = verify(&c, None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(done["peers_told"], 1);
    assert_eq!(db.relationships().await.unwrap().len(), 0);
    assert_eq!(pairs().await, "0", "gone from the running broker too");
    // The IdP's agent was told to roll back what it integrated for the SP.
    let mut waited = 0;
    while got.lock().unwrap().is_empty() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let triggers = got.lock().unwrap().clone();
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    assert!(triggers[0].contains("action=rollback"), "{triggers:?}");
    // Somebody registers the entityID again (another key), then updates it: the old peer is
    // not told to fetch anything.
    let other = TestKey::rsa("new-owner");
    let again = registrable_sp(&other).build().unwrap().to_xml().unwrap();
    for op in ["register", "update"] {
        let r = w
            .http
            .post(w.broker(&format!("/register?operation={op}")))
            .body(again.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{op}");
        let c: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        publish(&files, proof_port, &c);
        let r = verify(&c, Some(again.clone())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{op}");
        if op == "update" {
            let done: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(done["peers_told"], 0);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "{:?}", got.lock().unwrap());
}

/// Broker review M3: an operator import of a registered entity reset its policy to the
/// default (allow all, modes off), so a re-import (a certificate rollover, or the upgrade note's
/// "import it again") undid a deny list nobody had lifted and told the denied peers to fetch
/// the entity again. The policy stays; only the modes the query names change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reimport_keeps_the_entitys_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = World::new(tmp.path());
    let cfg = w.broker_config();
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    let (sp_port, idp_port) = (free_port(), free_port());
    w.import(&w.sp_entity(SP, sp_port)).await;
    w.import(&w.idp_entity(idp_port)).await;
    let r = w
        .http
        .put(w.broker(&format!("/admin/policy?entityID={}", url_encode(SP))))
        .bearer_auth(TOKEN)
        .body(r#"{"peers": {"allow": [], "deny": [".example.net"]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a1 = w.authn_request1(SP);
    let (status, _, body) = w.ua(&a1, None).await;
    assert_eq!(status, 403, "{body}");
    // Imported again: the deny list stands.
    w.import(&w.sp_entity(SP, sp_port)).await;
    w.cookie = None;
    let a1 = w.authn_request1(SP);
    let (status, _, body) = w.ua(&a1, None).await;
    assert_eq!(status, 403, "{body}");
}

/// Broker review L1: an entity's own token could switch on the modes that lower what a login
/// proves (unsigned AuthnRequest1, the unmodified-SP mode), which the documentation presents
/// as the operator's. With the token only the peer lists change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_token_cannot_lower_its_assurance() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let (_broker, _sp, token) = self_registered_sp(&w, tmp.path(), "").await;
    let put = |bearer: &str, body: &'static str| {
        w.http
            .put(w.broker(&format!("/admin/policy?entityID={}", url_encode(SP))))
            .bearer_auth(bearer)
            .body(body)
    };
    for body in [
        r#"{"allow_unsigned_authn_request": true}"#,
        r#"{"unmodified_sp": true, "peers": {"allow": [], "deny": []}}"#,
    ] {
        let r = put(&token, body).send().await.unwrap();
        assert_eq!(r.status(), 403, "{body}");
    }
    // Its peer lists it may set; the operator may set the modes.
    let peers = r#"{"peers": {"allow": [], "deny": ["evil.example"]}}"#;
    assert_eq!(put(&token, peers).send().await.unwrap().status(), 200);
    let r = put(TOKEN, r#"{"allow_unsigned_authn_request": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Then the entity's peer-list change keeps the operator's mode.
    assert_eq!(put(&token, peers).send().await.unwrap().status(), 200);
    let r = put(&token, r#"{"allow_unsigned_authn_request": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Broker review M4: `action=rules` had no rate limit (and its work, quadratic then, ran under
/// the core's lock). One address now meets the per-address limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_queries_are_rate_limited_per_address() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let cfg = w.broker_config();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("rate_per_source_per_minute = 12\n{text}")).unwrap();
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    w.import(&w.sp_entity(SP, free_port())).await;
    let q = format!("/DAME?action=rules&sp={}&have=mail", url_encode(SP));
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(
            w.http
                .get(w.broker(&q))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// Still open after the seventh round: the published documents' validity and cacheDuration
/// had no configuration key (7 days and 10 minutes, whatever the federation's practice). They
/// are `document_validity_hours` and `document_cache_duration_s`, checked at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_documents_follow_the_configured_validity_and_cache_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let cfg = w.broker_config();
    let base = std::fs::read_to_string(&cfg).unwrap();
    // Out of range, or a cacheDuration not shorter than the validity: the broker does not start.
    for (extra, key) in [
        ("document_validity_hours = 1\n", "document_validity_hours"),
        // Too short to re-sign 100,000 documents (the default max_entities) in time.
        ("document_validity_hours = 8\n", "at least 12"),
        (
            "document_validity_hours = 9000\n",
            "document_validity_hours",
        ),
        (
            "document_cache_duration_s = 10\n",
            "document_cache_duration_s",
        ),
        (
            "max_entities = 1000\ndocument_validity_hours = 2\ndocument_cache_duration_s = 7200\n",
            "document_cache_duration_s",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dame-broker"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{extra}: {err}");
    }
    std::fs::write(
        &cfg,
        format!(
            "{base}max_entities = 1000\ndocument_validity_hours = 2\ndocument_cache_duration_s = 120\n"
        ),
    )
    .unwrap();
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &cfg);
    healthy(w.broker_port, &cfg).await;
    w.import(&w.sp_entity(SP, free_port())).await;
    let before = SystemTime::now();
    let r = w
        .http
        .get(w.broker(&format!("/mdq/entities/{}", url_encode(SP))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    let attr = |name: &str| {
        let start = xml.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        xml[start..start + xml[start..].find('"').unwrap()].to_owned()
    };
    assert_eq!(attr("cacheDuration"), "PT2M", "{xml}");
    let until = saml_core::time::parse_datetime(&attr("validUntil")).unwrap();
    let two_hours = Duration::from_secs(7200);
    assert!(
        until > before + two_hours - Duration::from_secs(120) && until <= before + two_hours,
        "{}",
        attr("validUntil")
    );
}
