//! DAME with unmodified peers: a stock Shibboleth SP 3.4 (Apache + mod_shib + shibd) and a stock
//! SimpleSAMLphp 1.19 IdP (`exampleauth:UserPass`, PHP's built-in server) exchange metadata on
//! first use through `dame-broker` (SQLite) and two `dame-agent`s, all on loopback, started by
//! the test from private configurations in a temporary directory (the launchers are shared
//! with the interop suite: `interop/tests/common`). Neither product is patched or extended:
//!
//! - Shibboleth's `<SSO discoveryProtocol="SAMLDS" discoveryURL="<broker>/ds">` sends the user
//!   to the broker's discovery service; its `<MetadataProvider type="LocalDynamic">` reads the
//!   directory the SP's agent writes (`<sha1 of entityID>.xml`), each document checked by a
//!   `Signature` metadata filter with the broker's certificate (the agent writes what the
//!   broker's MDQ service signed).
//! - SimpleSAMLphp reads its SP metadata from the broker's own metadata (an `xml` source,
//!   `GET /metadata`, so it answers AuthnRequest2) and from its agent's MDQ route (an `mdq`
//!   source, `server` = `http://<agent>/mdq`, `validateFingerprint` = the broker certificate's
//!   SHA-1): the IdP knows exactly the SPs its agent integrated, when it integrated them, and
//!   reads only the one a request needs (conversion review M8: an `xml` source per integrated
//!   file, globbed in `config.php`, parsed every SP on every request). The broker's MDQ
//!   service would answer for every registered SP, exchanged or not, so the agent's is used.
//! - The operator imports both providers (metadata built with saml-metadata from each product's
//!   key and endpoints, with the DAME `MetadataSyncLocation` of its agent), the SP with
//!   `unmodified_sp=true`.
//!
//! First user: protected page -> broker `/ds` -> the IdP chosen -> AuthnRequest2 to
//! SimpleSAMLphp -> alice's login -> Response2 at the broker's `/acs` -> `/wait` (the exchange:
//! both agents pull their peer and write it) -> the discovery answer back to Shibboleth ->
//! Shibboleth's own AuthnRequest to SimpleSAMLphp (which knows it now; alice's session there is
//! reused) -> Shibboleth's ACS -> the protected page shows REMOTE_USER. Second user: straight
//! through, no trigger sent. A deny-listed IdP chosen at `/ds`: refused by the broker, nothing
//! written for Shibboleth. A document dropped into Shibboleth's directory by hand, not signed
//! by the broker, is refused by its Signature filter. Rollback: the SP's policy denies the
//! IdP's domain; both agents delete their copy, SimpleSAMLphp refuses Shibboleth's next
//! AuthnRequest at once, and Shibboleth stops starting logins at the IdP once the copy it held
//! is past its cache time and its cleanup ran (without `cleanupInterval`/`cleanupTimeout` it
//! kept using the copy: 90 s and counting in this test, 30 to 60 minutes with its defaults).
//!
//! Run time (debug build, 2 cores shared): the five processes are up in about 1 s, the first
//! use takes about 0.5 s (the exchange about 0.2 s of it), the second user 0.4 s; the rollback
//! reaches Shibboleth 30 s after its last look at the file (the least `minCacheDuration` it
//! accepts); about 35 s in all. Needs the peers of `scripts/setup.sh` (libapache2-mod-shib, simplesamlphp).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../interop/tests/common/mod.rs"]
mod common;
mod services;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::shibboleth_sp::Sp;
use common::simplesamlphp::{Ssp, ssp_login};
use common::{Browser, EPPN, Reply, form_action, form_field, free_port, set_mode};
use dame_protocol::integration::metadata_file;
use saml_core::bindings::url_encode;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, SpSso};
use services::spawn;
use testkit::signer::TestKey;

const SP: &str = "https://sp.dame.test/shibboleth";
const IDP: &str = "https://idp.dame.test/simplesaml";
const DENIED_IDP: &str = "https://idp.denied.test/idp";
const UNSIGNED_IDP: &str = "https://idp.unsigned.test/idp";
const BROKER: &str = "https://broker.dame.test/sp";
const TOKEN: &str = "0123456789abcdef0123456789abcdef-operator";
/// How long Shibboleth uses a document before it looks at the directory again: the provider's
/// `maxCacheDuration`, here the shortest Shibboleth SP 3 accepts (its `minCacheDuration` is at
/// least 30 s); in production the broker's `cacheDuration`, 10 minutes, does it.
const SHIB_CACHE: Duration = Duration::from_secs(30);

/// One blocking HTTP call to the broker or an agent (admin calls, health, metrics).
fn call(
    rt: &tokio::runtime::Runtime,
    method: &str,
    url: &str,
    body: Option<String>,
) -> (u16, String) {
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut r = match method {
            "POST" => c.post(url),
            "PUT" => c.put(url),
            _ => c.get(url),
        };
        if method != "GET" {
            r = r.bearer_auth(TOKEN);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        match r.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
}

fn healthy(rt: &tokio::runtime::Runtime, port: u16, cfg: &Path) {
    for _ in 0..200 {
        if call(rt, "GET", &format!("http://127.0.0.1:{port}/health"), None).0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{} did not come up: {}",
        cfg.display(),
        std::fs::read_to_string(cfg.with_extension("log")).unwrap_or_default()
    );
}

fn metric(rt: &tokio::runtime::Runtime, broker: &str, name: &str) -> String {
    let (_, text) = call(rt, "GET", &format!("{broker}/metrics"), None);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_default()
        .to_owned()
}

/// An agent's configuration beside `entity` (`side` "sp" or "idp"), writing into `directory`.
fn agent_config(
    dir: &Path,
    name: &str,
    (entity, side, port): (&str, &str, u16),
    broker: &str,
    broker_cert: &Path,
    key: &TestKey,
    directory: &Path,
) -> PathBuf {
    let (k, c) = key.write_pem(dir, name);
    let cfg = format!(
        r#"entity_id = "{entity}"
side = "{side}"
listen = "127.0.0.1:{port}"
broker_mdq = "{broker}/mdq/"
broker_endpoint = "{broker}/DAME"
broker_certificate = "{bc}"
key = "{k}"
certificate = "{c}"
directory = "{d}"
allow_http = true
"#,
        bc = broker_cert.display(),
        k = k.display(),
        c = c.display(),
        d = directory.display(),
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, cfg).unwrap();
    p
}

/// Follows a redirect whose `Location` may be path-only, relative to `from`.
fn absolute(from: &str, location: &str) -> String {
    if location.starts_with('/') {
        let host_end = from[7..].find('/').map_or(from.len(), |i| i + 7);
        format!("{}{location}", &from[..host_end])
    } else {
        location.to_owned()
    }
}

/// Posts an auto-post form page (SAMLResponse, RelayState) to its action.
fn submit(b: &mut Browser, page: &Reply) -> (String, Reply) {
    let action = form_action(&page.body);
    let mut form = format!(
        "SAMLResponse={}",
        url_encode(
            &form_field(&page.body, "SAMLResponse")
                .unwrap_or_else(|| panic!("no SAMLResponse: {}", page.body))
        )
    );
    if let Some(rs) = form_field(&page.body, "RelayState") {
        form.push_str(&format!("&RelayState={}", url_encode(&rs)));
    }
    let r = b.request("POST", &action, Some(&form));
    (action, r)
}

/// At SimpleSAMLphp's SSO endpoint (`url` with the request): alice's login form filled when
/// she has no session there yet; the auto-post form page it answers with, and whether she had
/// to log in.
fn at_idp(ssp: &Ssp, b: &mut Browser, url: &str) -> (Reply, bool) {
    let (sso, query) = url.split_once('?').unwrap();
    let first = b.follow(url);
    let (r, logged_in) = if first.body.contains("name=\"SAMLResponse\"") {
        (first, false)
    } else {
        (ssp_login(ssp, b, sso, query), true)
    };
    assert!(
        r.status == 200 && r.body.contains("name=\"SAMLResponse\""),
        "{}: {}\n{}",
        r.status,
        r.body,
        ssp.logs()
    );
    (r, logged_in)
}

/// Shibboleth's protected page after its ACS accepted the Response.
fn protected_page(sp: &Sp, b: &mut Browser, acs: &Reply) -> String {
    assert_eq!(acs.status, 302, "ACS refused: {}\n{}", acs.body, sp.logs());
    let page = b.get(&absolute(&sp.base, acs.header("Location").unwrap()));
    assert_eq!(page.status, 200, "{}\n{}", page.body, sp.logs());
    page.body
}

/// The protected page without a session: Shibboleth's redirect to the broker's `/ds`, and the
/// broker's IdP list.
fn discovery(sp: &Sp, b: &mut Browser, broker: &str) -> Reply {
    let first = b.get(&format!("{}/secure/env", sp.base));
    assert_eq!(first.status, 302, "{}\n{}", first.body, sp.logs());
    let ds = first.header("Location").unwrap().to_owned();
    assert!(ds.starts_with(&format!("{broker}/ds?")), "{ds}");
    assert!(ds.contains(&format!("entityID={}", url_encode(SP))), "{ds}");
    let list = b.get(&ds);
    assert_eq!(list.status, 200, "{}", list.body);
    list
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn shibboleth_sp_and_simplesamlphp_idp_exchange_on_first_use() {
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // shibd reads the LocalDynamic directory under it.
    set_mode(d, 0o755);
    let (broker_port, sp_agent_port, idp_agent_port) = (free_port(), free_port(), free_port());
    let broker = format!("http://127.0.0.1:{broker_port}");
    let sp_dir = d.join("sp-agent");
    let idp_dir = d.join("idp-agent");
    std::fs::create_dir(&sp_dir).unwrap();
    std::fs::create_dir(&idp_dir).unwrap();
    set_mode(&sp_dir, 0o755);

    // The broker.
    let broker_key = TestKey::rsa("broker.dame.test");
    let (bk, bc) = broker_key.write_pem(d, "broker");
    testkit::signer::write_secret(&d.join("admin.token"), TOKEN.as_bytes());
    let broker_cfg = d.join("broker.toml");
    std::fs::write(
        &broker_cfg,
        format!(
            r#"entity_id = "{BROKER}"
public_url = "{broker}"
listen = "127.0.0.1:{broker_port}"
key = "{bk}"
certificate = "{bc}"
database = "{db}"
admin_token_file = "{t}"
allow_loopback_http = true
exchange_deadline_s = 10
trigger_timeout_ms = 3000
"#,
            bk = bk.display(),
            bc = bc.display(),
            db = d.join("broker.db").display(),
            t = d.join("admin.token").display(),
        ),
    )
    .unwrap();
    let _broker = spawn(env!("CARGO_BIN_EXE_dame-broker"), &broker_cfg);
    healthy(&rt, broker_port, &broker_cfg);
    let (status, broker_md) = call(&rt, "GET", &format!("{broker}/metadata"), None);
    assert_eq!(status, 200, "{broker_md}");

    // SimpleSAMLphp as IdP: the broker's metadata, and whatever its agent wrote, read one SP
    // at a time from the agent's MDQ route (each document checked against the broker
    // certificate's fingerprint).
    let idp_key = TestKey::rsa("idp.dame.test");
    let broker_fingerprint: String = openssl::sha::sha1(&broker_key.cert_der())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hosted = format!(
        r#"<?php
$metadata['{IDP}'] = [
  'host' => '__DEFAULT__',
  'privatekey' => 'idp.key',
  'certificate' => 'idp.crt',
  'auth' => 'example-userpass',
  'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
  'authproc' => [50 => ['class' => 'core:AttributeMap', 'eduPersonPrincipalName' => '{EPPN}']],
];
"#
    );
    let ssp = Ssp::start(
        true,
        "",
        &format!(
            "['type' => 'flatfile'], ['type' => 'xml', 'file' => '{{dir}}/metadata/broker.xml'], \
             ['type' => 'mdq', 'server' => 'http://127.0.0.1:{idp_agent_port}/mdq', \
              'validateFingerprint' => '{broker_fingerprint}']"
        ),
        &[
            ("cert/idp.key", idp_key.key_pem()),
            ("cert/idp.crt", idp_key.cert_pem()),
            ("metadata/saml20-idp-hosted.php", hosted.into_bytes()),
            ("metadata/broker.xml", broker_md.into_bytes()),
        ],
    );
    let idp_sso = format!("{}/saml2/idp/SSOService.php", ssp.base);

    // Shibboleth SP: discovery at the broker, its IdPs from the agent's directory.
    let sp = Sp::start(
        SP,
        &format!(r#"<SSO discoveryProtocol="SAMLDS" discoveryURL="{broker}/ds">SAML2</SSO>"#),
        &format!(
            r#"<MetadataProvider type="LocalDynamic" sourceDirectory="{src}"
        minCacheDuration="{cache}" maxCacheDuration="{cache}" cleanupInterval="1" cleanupTimeout="0">
      <MetadataFilter type="Signature" certificate="{{dir}}/broker.crt"/>
    </MetadataProvider>"#,
            src = sp_dir.display(),
            cache = SHIB_CACHE.as_secs()
        ),
        &[("broker.crt", broker_key.cert_pem())],
    );
    let started = t0.elapsed();

    // The agents beside them.
    let sp_cfg = agent_config(
        d,
        "sp-agent",
        (SP, "sp", sp_agent_port),
        &broker,
        &bc,
        &sp.key,
        &sp_dir,
    );
    let idp_cfg = agent_config(
        d,
        "idp-agent",
        (IDP, "idp", idp_agent_port),
        &broker,
        &bc,
        &idp_key,
        &idp_dir,
    );
    let _sp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &sp_cfg);
    let _idp_agent = spawn(env!("CARGO_BIN_EXE_dame-agent"), &idp_cfg);
    healthy(&rt, sp_agent_port, &sp_cfg);
    healthy(&rt, idp_agent_port, &idp_cfg);

    // The operator imports both (the SP in the unmodified-SP mode) and a third, denied IdP.
    let sp_md = EntityDescriptor::builder(SP)
        .sp(SpSso::builder()
            .signing_certificate(sp.key.cert_der())
            .encryption_certificate(sp.key.cert_der())
            .acs(
                Binding::HttpPost,
                &format!("{}/Shibboleth.sso/SAML2/POST", sp.base),
            )
            .discovery_response(&format!("{}/Shibboleth.sso/Login", sp.base)))
        .dame_sync_location(&format!("http://127.0.0.1:{sp_agent_port}/dame"))
        .build()
        .unwrap();
    let idp_md = |id: &str, key: &TestKey, sso: &str, sync: u16| {
        EntityDescriptor::builder(id)
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .scope("example.org", false)
                    .sso(Binding::HttpRedirect, sso),
            )
            .dame_sync_location(&format!("http://127.0.0.1:{sync}/dame"))
            .build()
            .unwrap()
    };
    for (md, query) in [
        (sp_md, "?unmodified_sp=true"),
        (idp_md(IDP, &idp_key, &idp_sso, idp_agent_port), ""),
        (
            idp_md(
                DENIED_IDP,
                &TestKey::rsa("idp.denied.test"),
                "http://127.0.0.1:9/sso",
                free_port(),
            ),
            "",
        ),
    ] {
        let (status, body) = call(
            &rt,
            "POST",
            &format!("{broker}/admin/entities{query}"),
            Some(md.to_xml().unwrap()),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = call(
        &rt,
        "PUT",
        &format!("{broker}/admin/policy?entityID={}", url_encode(SP)),
        Some(
            r#"{"peers": {"allow": [], "deny": ["idp.denied.test"]}, "unmodified_sp": true}"#
                .into(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let ready = t0.elapsed();

    // First user: discovery at the broker, the IdP chosen; the SP does not know it yet.
    let t1 = Instant::now();
    let shib_file = sp_dir.join(metadata_file(IDP));
    let ssp_file = idp_dir.join(metadata_file(SP));
    let mut b = Browser::default();
    let list = discovery(&sp, &mut b, &broker);
    assert!(list.body.contains(&url_encode(IDP)), "{}", list.body);
    let choose = b.get(&format!("{broker}/ds/choose?idp={}", url_encode(IDP)));
    assert_eq!(choose.status, 302, "{}", choose.body);
    let to_idp = choose.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{idp_sso}?SAMLRequest=")),
        "{to_idp}"
    );
    // AuthnRequest2 (the broker as SP) at SimpleSAMLphp: alice logs in.
    let (form, logged_in) = at_idp(&ssp, &mut b, &to_idp);
    assert!(logged_in);
    assert!(
        !shib_file.exists() && !ssp_file.exists(),
        "before the exchange"
    );
    let (action, acs) = submit(&mut b, &form);
    assert_eq!(action, format!("{broker}/acs"));
    assert_eq!(acs.status, 303, "{}\n{}", acs.body, ssp.logs());
    let wait = absolute(&broker, acs.header("Location").unwrap());
    let mut answer = b.get(&wait);
    for _ in 0..100 {
        if answer.status != 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        answer = b.get(&wait);
    }
    assert_eq!(
        answer.status,
        302,
        "{}\n--- broker\n{}\n--- sp-agent\n{}\n--- idp-agent\n{}",
        answer.body,
        std::fs::read_to_string(broker_cfg.with_extension("log")).unwrap_or_default(),
        std::fs::read_to_string(sp_cfg.with_extension("log")).unwrap_or_default(),
        std::fs::read_to_string(idp_cfg.with_extension("log")).unwrap_or_default(),
    );
    // The exchange is done: both agents wrote their peer.
    assert!(shib_file.exists(), "{:?}", files(&sp_dir));
    assert!(ssp_file.exists(), "{:?}", files(&idp_dir));
    let exchange = t1.elapsed();
    // The discovery answer, back at Shibboleth: its own AuthnRequest to SimpleSAMLphp.
    let back = answer.header("Location").unwrap().to_owned();
    assert!(
        back.starts_with(&format!("{}/Shibboleth.sso/Login?", sp.base))
            && back.ends_with(&format!("entityID={}", url_encode(IDP))),
        "{back}"
    );
    let login = b.get(&back);
    assert_eq!(login.status, 302, "{}\n{}", login.body, sp.logs());
    let to_idp = login.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{idp_sso}?SAMLRequest=")),
        "{to_idp}"
    );
    let (form, logged_in) = at_idp(&ssp, &mut b, &to_idp);
    assert!(!logged_in, "alice's session at SimpleSAMLphp is reused");
    let (action, acs) = submit(&mut b, &form);
    assert_eq!(action, format!("{}/Shibboleth.sso/SAML2/POST", sp.base));
    let page = protected_page(&sp, &mut b, &acs);
    assert!(page.contains("REMOTE_USER=alice@example.org\n"), "{page}");
    assert!(page.contains("eppn=alice@example.org\n"), "{page}");
    assert!(
        page.contains(&format!("Shib-Identity-Provider={IDP}\n")),
        "{page}"
    );
    let first = t1.elapsed();
    let triggers = metric(&rt, &broker, "dame_triggers_sent_total");
    assert!(triggers.parse::<u32>().unwrap() >= 2, "{triggers}");

    // Second user, a new browser: the broker answers the discovery request at once.
    let t2 = Instant::now();
    let mut b = Browser::default();
    discovery(&sp, &mut b, &broker);
    let choose = b.get(&format!("{broker}/ds/choose?idp={}", url_encode(IDP)));
    assert_eq!(choose.status, 302, "{}", choose.body);
    let back = choose.header("Location").unwrap().to_owned();
    assert!(
        back.starts_with(&format!("{}/Shibboleth.sso/Login?", sp.base)),
        "{back}"
    );
    let login = b.get(&back);
    assert_eq!(login.status, 302, "{}\n{}", login.body, sp.logs());
    let (form, logged_in) = at_idp(&ssp, &mut b, login.header("Location").unwrap());
    assert!(logged_in);
    let (_, acs) = submit(&mut b, &form);
    let page = protected_page(&sp, &mut b, &acs);
    assert!(page.contains("REMOTE_USER=alice@example.org\n"), "{page}");
    assert_eq!(
        metric(&rt, &broker, "dame_triggers_sent_total"),
        triggers,
        "no second exchange"
    );
    let second = t2.elapsed();

    // A deny-listed IdP: refused at the broker, nothing written for Shibboleth.
    let before = files(&sp_dir);
    let mut b = Browser::default();
    discovery(&sp, &mut b, &broker);
    let choose = b.get(&format!(
        "{broker}/ds/choose?idp={}",
        url_encode(DENIED_IDP)
    ));
    assert!(
        (400..500).contains(&choose.status),
        "{}: {}",
        choose.status,
        choose.body
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(files(&sp_dir), before);
    assert!(!sp_dir.join(metadata_file(DENIED_IDP)).exists());
    assert_eq!(metric(&rt, &broker, "dame_triggers_sent_total"), triggers);

    // The Signature filter is what lets Shibboleth trust the directory: a document not signed
    // by the broker, dropped there by hand, is not used.
    let unsigned = idp_md(UNSIGNED_IDP, &idp_key, &idp_sso, free_port());
    std::fs::write(
        sp_dir.join(metadata_file(UNSIGNED_IDP)),
        unsigned.to_xml().unwrap(),
    )
    .unwrap();
    let before = sp.shibd_log().len();
    let mut b = Browser::default();
    let r = b.get(&format!(
        "{}/Shibboleth.sso/Login?entityID={}&target={}",
        sp.base,
        url_encode(UNSIGNED_IDP),
        url_encode(&format!("{}/secure/env", sp.base))
    ));
    let log = sp.shibd_log()[before..].to_owned();
    assert_ne!(r.status, 302, "{}\n{log}", r.body);
    let refused_status = r.status;
    assert!(
        log.contains("unable to verify signature") && log.contains("unable to locate metadata"),
        "{log}"
    );
    let why = log
        .lines()
        .find(|l| l.starts_with("ERROR"))
        .unwrap_or_default()
        .to_owned();

    // Rollback: the SP's policy now denies the IdP's domain. The broker rolls the pair back,
    // both agents remove what they integrated, and both products let go of the peer:
    // SimpleSAMLphp at once (its `mdq` source asks the agent per request), Shibboleth once
    // the copy it holds is past its cache time (the document's `cacheDuration`) and its cleanup
    // ran (`cleanupInterval`, `cleanupTimeout`): a dynamic provider whose file is gone keeps
    // answering with the copy it holds until the cleanup drops it.
    let shib_request = login.header("Location").unwrap().to_owned();
    let t3 = Instant::now();
    let (status, body) = call(
        &rt,
        "PUT",
        &format!("{broker}/admin/policy?entityID={}", url_encode(SP)),
        Some(
            r#"{"peers": {"allow": [], "deny": ["idp.denied.test", "idp.dame.test"]}, "unmodified_sp": true}"#
                .into(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let mut removed = false;
    for _ in 0..200 {
        if !shib_file.exists() && !ssp_file.exists() {
            removed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        removed,
        "both agents rolled the pair back: {:?} {:?}",
        files(&sp_dir),
        files(&idp_dir)
    );
    let rolled_back = t3.elapsed();
    // SimpleSAMLphp no longer knows the SP: the AuthnRequest it answered before is refused.
    let mut b = Browser::default();
    let r = b.get(&shib_request);
    // (SimpleSAMLphp's error page answers 200.)
    assert!(
        r.body.contains("Unable to locate metadata for") && !r.body.contains("password"),
        "{}: {}",
        r.status,
        r.body
    );
    // Shibboleth lets go of the IdP: a login to it no longer starts.
    let login_url = format!(
        "{}/Shibboleth.sso/Login?entityID={}&target={}",
        sp.base,
        url_encode(IDP),
        url_encode(&format!("{}/secure/env", sp.base))
    );
    let mut dropped = None;
    while t3.elapsed() < SHIB_CACHE * 3 {
        let before = sp.shibd_log().len();
        let r = Browser::default().get(&login_url);
        if r.status != 302 {
            let log = sp.shibd_log()[before..].to_owned();
            assert!(log.contains("unable to locate metadata"), "{log}");
            dropped = Some(t3.elapsed());
            break;
        }
        assert!(
            r.header("Location")
                .is_some_and(|l| l.starts_with(&format!("{idp_sso}?SAMLRequest="))),
            "{:?}",
            r.header("Location")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let dropped = dropped.unwrap_or_else(|| {
        panic!(
            "Shibboleth still starts logins at the rolled-back IdP {:?} after the rollback\n{}",
            t3.elapsed(),
            sp.shibd_log()
        )
    });
    assert!(dropped >= rolled_back);
    eprintln!(
        "peers up in {started:?}, everything registered at {ready:?}; first use {first:?} \
         (exchange done {exchange:?} in, {triggers} triggers); second user {second:?}; denied \
         pair refused ({}); unsigned document refused by Shibboleth ({}: {why}); rolled back \
         in {rolled_back:?}, Shibboleth let go of the IdP {dropped:?} after the policy change; \
         all {:?}",
        choose.status,
        refused_status,
        t0.elapsed()
    );
}
