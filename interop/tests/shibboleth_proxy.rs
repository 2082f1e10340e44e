//! The recipe `examples/shibboleth-reverse-proxy/` run as written: Apache 2.4 with mod_shib and
//! mod_proxy as a Shibboleth reverse proxy in front of a loopback backend, the backend receiving
//! the user's attributes as request headers.
//!
//! - The recipe's `shib-proxy.conf`, `shibboleth2.xml` and `attribute-map.xml` are rendered
//!   into a temporary directory (every `@PLACEHOLDER@` filled, none left) and run by shibd and
//!   Apache on loopback ([`common::ShibSp`], as in `shibboleth_sso`), with
//!   `Define SHIB_PROXY_PLAIN_HTTP` (plain http instead of the recipe's TLS).
//! - The backend is a thread of this test on a loopback port: it records the head of each
//!   request it receives and echoes it.
//! - Our in-test IdP ([`common::Idp`]) logs the user in through the scripted browser, which also
//!   forges on every request the headers the proxy sets (`eppn`, `X-Remote-User`, their `_`
//!   spellings, `Shib-Identity-Provider`...).
//!
//! Checked: a request without a session never reaches the backend (302 to the IdP); after the
//! login the backend receives the page first asked for with `eppn`, `affiliation`,
//! `X-Remote-User`, `Shib-Identity-Provider` from the session and none of the forged values; the
//! `/Shibboleth.sso` handler (`Metadata`, `Session`) is answered by Shibboleth, never proxied.
//! The negative control runs the recipe without its `RequestHeader unset ... early` lines:
//! mod_shib answers 500 to its own headers forged, and a forged `X_Remote_User` reaches the
//! backend. The production (TLS) branch of `shib-proxy.conf` passes `apache2 -t`.
//!
//! Run time: about 2 s (debug build, 2 cores shared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{Browser, Idp, Reply, ShibSp, form_action, form_field, free_port};
use saml_core::bindings::url_encode;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata};
use testkit::signer::TestKey;

const SP_ENTITY: &str = "https://app.interop.test/shibboleth";
const IDP_ENTITY: &str = "https://idp.rust.test/idp";
const RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/shibboleth-reverse-proxy"
);

/// What a browser forges: each header the proxy sets for the backend, and the `_` spellings
/// that CGI-style frameworks read as the same variable.
const FORGED: &[(&str, &str)] = &[
    ("eppn", "mallory@evil.example"),
    ("affiliation", "admin@evil.example"),
    ("X-Remote-User", "mallory@evil.example"),
    ("X_Remote_User", "mallory@evil.example"),
    ("REMOTE_USER", "mallory@evil.example"),
    ("Shib-Identity-Provider", "https://evil.example/idp"),
    ("Shib_Identity_Provider", "https://evil.example/idp"),
    ("persistent_id", "evil.example!x!mallory"),
    ("X-Forwarded-Proto", "https-evil"),
];

/// The recipe's file `name` with each `@KEY@` replaced; fails if a placeholder is left.
fn render(name: &str, vars: &[(&str, &str)]) -> String {
    let path = Path::new(RECIPE).join(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (k, v) in vars {
        let key = format!("@{k}@");
        assert!(text.contains(&key), "{name} has no {key}");
        text = text.replace(&key, v);
    }
    let left: Vec<&str> = text
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(left.is_empty(), "{name}: placeholders left: {left:?}");
    text
}

/// The head of one request the backend received.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        let mut all = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let first = all.next().map(|(_, v)| v.as_str());
        assert!(all.next().is_none(), "{name} twice: {:?}", self.headers);
        first
    }
}

/// The backend: a loopback HTTP server that records each request's head and echoes it.
fn backend() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap_or(0);
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0u64);
            let _ = r.by_ref().take(length).read_to_end(&mut Vec::new());
            let target = line.split(' ').nth(1).unwrap_or("").to_owned();
            let mut echo = format!("backend saw {target}\n");
            for (k, v) in &headers {
                echo.push_str(&format!("{k}: {v}\n"));
            }
            log.lock().unwrap().push(Seen { target, headers });
            let _ = s.write_all(&testkit::http::http(
                "200 OK",
                &[("Content-Type", "text/plain")],
                echo.as_bytes(),
            ));
        }
    });
    (addr, seen)
}

/// The recipe rendered into a temporary directory and started in front of `backend`; with
/// `strip_unsets`, without its `RequestHeader unset ... early` lines.
fn start_proxy(idp_md: &[u8], backend: &str, strip_unsets: bool) -> ShibSp {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (shib_port, web_port) = (free_port(), free_port());
    ShibSp::write_loggers(d);
    let sp_key = TestKey::rsa("app.interop.test");
    std::fs::write(d.join("sp-key.pem"), sp_key.key_pem()).unwrap();
    std::fs::write(d.join("sp-cert.pem"), sp_key.cert_pem()).unwrap();
    std::fs::write(d.join("idp-metadata.xml"), idp_md).unwrap();
    let (config_dir, shib_port_s, web_port_s) = (
        d.display().to_string(),
        shib_port.to_string(),
        web_port.to_string(),
    );
    let vars = [
        ("CONFIG_DIR", config_dir.as_str()),
        ("SHIBD_PORT", shib_port_s.as_str()),
        ("SP_ENTITY_ID", SP_ENTITY),
        ("IDP_ENTITY_ID", IDP_ENTITY),
        ("HANDLER_SSL", "false"),
        ("COOKIE_PROPS", "http"),
    ];
    std::fs::write(d.join("shibboleth2.xml"), render("shibboleth2.xml", &vars)).unwrap();
    std::fs::write(
        d.join("attribute-map.xml"),
        render("attribute-map.xml", &[]),
    )
    .unwrap();
    let site = render(
        "shib-proxy.conf",
        &[
            ("PORT", web_port_s.as_str()),
            ("SERVER_NAME", "127.0.0.1"),
            ("BACKEND", backend),
        ],
    );
    let site = if strip_unsets {
        let kept: Vec<&str> = site
            .lines()
            .filter(|l| !l.trim_start().starts_with("RequestHeader unset"))
            .collect();
        assert!(kept.len() + 20 < site.lines().count());
        kept.join("\n")
    } else {
        site
    };
    std::fs::write(d.join("shib-proxy.conf"), site).unwrap();
    let mut conf = common::apache_preamble(
        d,
        web_port,
        &[
            ("proxy", "proxy_module"),
            ("proxy_http", "proxy_http_module"),
            ("headers", "headers_module"),
        ],
    );
    conf.push_str(&format!(
        "Define SHIB_PROXY_PLAIN_HTTP\nInclude {}/shib-proxy.conf\n",
        d.display()
    ));
    std::fs::write(d.join("apache.conf"), conf).unwrap();
    ShibSp::start(dir, shib_port, web_port)
}

/// Our IdP, the backend and the proxy in front of it, the SP's metadata given to our IdP.
fn setup(strip_unsets: bool) -> (Arc<Idp>, ShibSp, Arc<Mutex<Vec<Seen>>>) {
    let idp = Idp::start(IDP_ENTITY, |sso_url, key, _| {
        EntityDescriptor::builder(IDP_ENTITY)
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .scope("example.org", false)
                    .sso(Binding::HttpRedirect, sso_url),
            )
            .build()
            .unwrap()
    });
    let (backend_addr, seen) = backend();
    let sp = start_proxy(
        idp.md.to_xml().unwrap().as_bytes(),
        &backend_addr,
        strip_unsets,
    );
    // The SP's metadata comes from Shibboleth's handler, not from the backend: what one
    // registers with the IdP (here: our IdP reads it).
    let mut b = Browser::default();
    let got = b.get(&format!("{}/Shibboleth.sso/Metadata", sp.base));
    assert_eq!(got.status, 200, "{}\n{}", got.body, sp.logs());
    let Metadata::Entity(sp_md) = load::parse_unverified(got.body.as_bytes()).unwrap() else {
        panic!("not an EntityDescriptor: {}", got.body)
    };
    assert_eq!(sp_md.entity_id, SP_ENTITY);
    idp.trust_sp(*sp_md).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 0, "the handler was proxied");
    (idp, sp, seen)
}

/// A browser forging the proxy's headers on every request.
fn forging_browser() -> Browser {
    Browser {
        extra_headers: FORGED
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Browser::default()
    }
}

/// Asks for `page` without a session (a redirect to our IdP, the backend not asked, also for a
/// POST), logs in through our IdP's auto-post form to Shibboleth's ACS, and follows the ACS's
/// redirect back to `page`: returns what the backend answered.
fn login(sp: &ShibSp, idp: &Idp, seen: &Mutex<Vec<Seen>>, b: &mut Browser, page: &str) -> Reply {
    let count = || seen.lock().unwrap().len();
    let before = count();
    let first = b.get(page);
    assert_eq!(first.status, 302, "{}\n{}", first.body, sp.logs());
    let to_idp = first.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", idp.sso_url)),
        "{to_idp}"
    );
    let post = b.request("POST", page, Some("x=1"));
    assert_eq!(post.status, 302, "{}", post.body);
    assert_eq!(count(), before, "reached the backend without a session");

    let form = b.get(&to_idp);
    assert_eq!(form.status, 200, "our IdP refused: {}", form.body);
    let action = form_action(&form.body);
    assert_eq!(action, format!("{}/Shibboleth.sso/SAML2/POST", sp.base));
    let body = format!(
        "SAMLResponse={}&RelayState={}",
        url_encode(&form_field(&form.body, "SAMLResponse").unwrap()),
        url_encode(&form_field(&form.body, "RelayState").unwrap())
    );
    let acs = b.request("POST", &action, Some(&body));
    assert_eq!(acs.status, 302, "ACS refused: {}\n{}", acs.body, sp.logs());
    assert!(b.has_cookie("_shibsession_"), "{:?}", b.cookies);
    assert_eq!(acs.header("Location"), Some(page));
    assert_eq!(count(), before, "the ACS was proxied");
    let shown = b.get(page);
    assert_eq!(shown.status, 200, "{}\n{}", shown.body, sp.logs());
    assert_eq!(count(), before + 1);
    shown
}

#[test]
fn shibboleth_reverse_proxy_recipe() {
    let t0 = Instant::now();
    let (idp, sp, seen) = setup(false);
    let started = t0.elapsed();
    let count = || seen.lock().unwrap().len();

    let mut b = forging_browser();
    let page = format!("{}/app/report?id=7", sp.base);
    let shown = login(&sp, &idp, &seen, &mut b, &page);
    assert!(shown.body.starts_with("backend saw /app/report?id=7\n"));

    // What the backend received: the session's attributes, none of the forged values.
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    assert_eq!(req.target, "/app/report?id=7");
    let h = |name: &str| req.header(name).map(str::to_owned);
    assert_eq!(h("eppn").as_deref(), Some("alice@example.org"), "{req:?}");
    assert_eq!(
        h("affiliation").as_deref(),
        Some("member@example.org;staff@example.org"),
        "{req:?}"
    );
    assert_eq!(h("X-Remote-User").as_deref(), Some("alice@example.org"));
    assert_eq!(h("Shib-Identity-Provider").as_deref(), Some(IDP_ENTITY));
    assert!(h("Shib-Session-ID").is_some_and(|v| !v.is_empty()));
    assert_eq!(h("X-Forwarded-Proto").as_deref(), Some("http"));
    assert_eq!(h("X-Forwarded-For").as_deref(), Some("127.0.0.1"));
    // ProxyPreserveHost: the public host name.
    assert_eq!(h("Host"), Some(sp.base["http://".len()..].to_owned()));
    // mod_shib sets REMOTE_USER too (ShibUseHeaders), and an empty header for each attribute
    // id of the map that the IdP did not release.
    assert_eq!(h("REMOTE_USER").as_deref(), Some("alice@example.org"));
    assert_eq!(h("persistent-id").as_deref(), Some(""), "{req:?}");
    for (k, v) in &req.headers {
        assert!(
            !v.contains("evil") && (!k.contains('_') || k == "REMOTE_USER"),
            "forged header reached the backend: {k}: {v}\n{req:?}"
        );
    }

    // Shibboleth's session handler answers for itself, with the session's attributes.
    let session = b.get(&format!("{}/Shibboleth.sso/Session", sp.base));
    assert_eq!(session.status, 200, "{}", session.body);
    assert!(
        session.body.contains("Miscellaneous") && session.body.contains(IDP_ENTITY),
        "{}",
        session.body
    );
    assert!(!session.body.contains("backend saw"), "{}", session.body);
    assert_eq!(count(), 1, "the session handler was proxied");

    // Another browser with the session cookie but nothing else forged: the same user.
    let mut plain = Browser {
        cookies: b.cookies.clone(),
        ..Browser::default()
    };
    let again = plain.get(&format!("{}/other", sp.base));
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(
        again.body.contains("eppn: alice@example.org\n"),
        "{}",
        again.body
    );
    eprintln!(
        "Shibboleth reverse proxy up in {started:?}; all done at {:?}\nbackend saw:\n{}",
        t0.elapsed(),
        shown.body
    );
}

/// The negative control: the recipe without its `RequestHeader unset ... early` lines. mod_shib's
/// own spoof check answers 500 to a request carrying a header it sets itself (attribute ids,
/// `Shib-*`, also in their `_` spelling): a forging client is refused rather than believed. But
/// a header of the proxy's own, which mod_shib does not know, in the spelling that `RequestHeader
/// set` does not replace (`X_Remote_User`), goes through to the backend, where CGI-style
/// frameworks read it as `X-Remote-User`.
#[test]
fn without_the_unset_lines_forged_spellings_reach_the_backend() {
    let (idp, sp, seen) = setup(true);
    let page = format!("{}/app/report?id=7", sp.base);
    let mut known = Browser {
        extra_headers: vec![("eppn".into(), "mallory@evil.example".into())],
        ..Browser::default()
    };
    let refused = known.get(&page);
    assert_eq!(refused.status, 500, "{}", refused.body);
    let log = std::fs::read_to_string(sp.dir.path().join("apache-error.log")).unwrap();
    assert!(log.contains("Attempt to spoof header (eppn)"), "{log}");

    let mut b = Browser {
        extra_headers: vec![("X_Remote_User".into(), "mallory@evil.example".into())],
        ..Browser::default()
    };
    login(&sp, &idp, &seen, &mut b, &page);
    let got = seen.lock().unwrap().clone();
    let req = &got[0];
    let h = |name: &str| req.header(name).map(str::to_owned);
    assert_eq!(h("X-Remote-User").as_deref(), Some("alice@example.org"));
    assert_eq!(h("X_Remote_User").as_deref(), Some("mallory@evil.example"));

    // mod_shib knows its own headers in both spellings.
    for forged in ["Shib_Identity_Provider", "Shib-Identity-Provider", "EPPN"] {
        let mut b = Browser {
            extra_headers: vec![(forged.into(), "https://evil.example/idp".into())],
            cookies: b.cookies.clone(),
        };
        let refused = b.get(&page);
        assert_eq!(refused.status, 500, "{forged}: {}", refused.body);
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// The production branch of `shib-proxy.conf` (TLS, no `SHIB_PROXY_PLAIN_HTTP`) passes
/// `apache2 -t` with mod_ssl loaded and a throw-away certificate at the recipe's paths (moved into
/// the temporary directory).
#[test]
fn recipe_tls_branch_passes_apache_config_test() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tls = TestKey::rsa("app.example.org");
    let (key, cert) = tls.write_pem(d, "tls");
    let site = render(
        "shib-proxy.conf",
        &[
            ("PORT", "443"),
            ("SERVER_NAME", "app.example.org"),
            ("BACKEND", "127.0.0.1:8080"),
        ],
    );
    for path in [
        "/etc/ssl/certs/app.example.org.crt",
        "/etc/ssl/private/app.example.org.key",
    ] {
        assert!(site.contains(path), "{site}");
    }
    let site = site
        .replace(
            "/etc/ssl/certs/app.example.org.crt",
            &cert.display().to_string(),
        )
        .replace(
            "/etc/ssl/private/app.example.org.key",
            &key.display().to_string(),
        );
    std::fs::write(d.join("shib-proxy.conf"), site).unwrap();
    std::fs::create_dir(d.join("run")).unwrap();
    let mut conf = common::apache_preamble(
        d,
        free_port(),
        &[
            ("ssl", "ssl_module"),
            ("proxy", "proxy_module"),
            ("proxy_http", "proxy_http_module"),
            ("headers", "headers_module"),
        ],
    );
    conf.push_str(&format!("Include {}/shib-proxy.conf\n", d.display()));
    std::fs::write(d.join("apache.conf"), conf).unwrap();
    let out = std::process::Command::new(testkit::peers::program("apache2"))
        .arg("-t")
        .arg("-f")
        .arg(d.join("apache.conf"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("Syntax OK"), "{said}");
}
