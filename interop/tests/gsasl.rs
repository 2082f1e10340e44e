//! Interop with GNU SASL 2.2 (Debian `gsasl`, `libgsasl18`, installed by `scripts/setup.sh`):
//! - the `gsasl` CLI client against our server: its initial response is byte-identical to RFC
//!   6595's example (`biwsZXhhbXBsZS5vcmc=`) and ours, it follows our challenge and sends `PQ==`,
//!   and the exchange completes with a SAML Response from an IdP built with saml-core;
//! - our client against the libgsasl server (driven through Python ctypes by
//!   `scripts/interop/libgsasl_server.py`): it reads our IdP identifier and authzid, sends the
//!   redirect, accepts our `=` and reports success or failure; it refuses malformed initial
//!   responses, and our client refuses its redirect when it is not https or carries no
//!   SAMLRequest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::bindings::{MessageKind, redirect};
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, openssl_random,
};
use sasl_saml20::client::{Client, Step};
use sasl_saml20::resolver::{ResolvedIdp, StaticResolver};
use sasl_saml20::server::{Server, ServerConfig};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn gsasl_client(input: &str, authzid: Option<&str>) -> String {
    let mut cmd = Command::new("gsasl");
    cmd.args(["--client", "--mechanism=SAML20", "--application-data"]);
    if let Some(a) = authzid {
        cmd.args(["-z", a]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gsasl CLI is required (scripts/setup.sh installs Debian's gsasl)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gsasl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gsasl_cli_client_against_our_server() {
    let idp_key =
        SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(idp_key.public_key().unwrap(), "idp")
        .unwrap();
    let mut resolver = StaticResolver::new();
    resolver
        .insert(
            "example.org",
            ResolvedIdp {
                entity_id: "https://idp.example.org/idp".into(),
                sso_url: "https://idp.example.org/sso".into(),
                keys,
                scopes: Vec::new(),
                wants_signed_requests: false,
            },
        )
        .unwrap();
    let cfg = Arc::new(ServerConfig::new(
        "xmpp:example.com",
        "https://example.com/acs",
        Arc::new(resolver),
    ));
    for authzid in [None, Some("alice")] {
        let now = SystemTime::now();
        let mut server = Server::new(cfg.clone());
        // What our server answers to the RFC's initial response (with the authzid escaped).
        let expected_initial = match authzid {
            None => b"n,,example.org".to_vec(),
            Some(a) => format!("n,a={a},example.org").into_bytes(),
        };
        let challenge = server
            .start(Some(&expected_initial), now, &mut openssl_random)
            .unwrap();
        let out = gsasl_client(
            &format!("example.org\n{}\n\n", B64.encode(&challenge)),
            authzid,
        );
        let lines: Vec<&str> = out.lines().collect();
        let initial = lines
            .iter()
            .find_map(|l| l.rsplit_once("): ").map(|(_, b)| b))
            .unwrap_or_else(|| panic!("no initial response in {out}"));
        if authzid.is_none() {
            assert_eq!(initial, "biwsZXhhbXBsZS5vcmc=", "RFC 6595 §5 example");
        }
        assert_eq!(
            B64.decode(initial).unwrap(),
            expected_initial,
            "gsasl's initial response"
        );
        // gsasl shows our redirect and answers "=" (PQ==).
        let url = String::from_utf8(challenge.clone()).unwrap();
        assert!(lines.contains(&url.as_str()), "{out}");
        let last = B64.decode(lines.last().unwrap().trim()).unwrap();
        assert_eq!(last, b"=");
        assert!(
            server
                .handle_response(&last, now, &mut openssl_random)
                .unwrap()
                .is_none()
        );
        // The IdP answers, the server decides.
        let m = redirect::decode(
            &url[url.find('?').unwrap()..],
            redirect::DEFAULT_MAX_INFLATED,
        )
        .unwrap();
        let req = AuthnRequest::parse(&m.xml).unwrap();
        let resp = ResponseBuilder::for_request(
            &req,
            "https://idp.example.org/idp",
            "https://example.com/acs",
            NameId::new("alice", NAMEID_PERSISTENT),
        )
        .build(&idp_key, now, &mut openssl_random)
        .unwrap();
        let o = server
            .handle_saml_response(&resp, now, &mut MemoryReplayCache::new())
            .unwrap();
        assert_eq!(
            (o.subject.qualified().1, Some(o.identity.qualified().1)),
            ("alice", Some(authzid.unwrap_or("alice")))
        );
    }
}

struct LibGsasl {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl LibGsasl {
    fn start(url: &str, reject: bool) -> Self {
        let mut cmd = Command::new(testkit::peers::python());
        cmd.arg(testkit::peers::interop_script("libgsasl_server.py"))
            .arg(url);
        if reject {
            cmd.arg("reject");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = BufReader::new(child.stdout.take().unwrap());
        LibGsasl { child, out }
    }

    fn step(&mut self, msg: &[u8]) -> (i32, Vec<u8>) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", B64.encode(msg)).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let rest = line
            .trim_end()
            .strip_prefix("STEP ")
            .unwrap_or_else(|| panic!("libgsasl: {line:?} (is libgsasl18 installed?)"));
        let (rc, b64) = rest.split_once(' ').unwrap_or((rest, ""));
        (rc.parse().unwrap(), B64.decode(b64).unwrap())
    }

    fn finish(mut self) -> (String, String) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        for l in (&mut self.out).lines() {
            rest.push_str(&l.unwrap());
            rest.push('\n');
        }
        self.child.wait().unwrap();
        let get = |k: &str| {
            rest.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .to_owned()
        };
        (get("IDP "), get("AUTHZID "))
    }
}

fn real_redirect() -> String {
    let req = AuthnRequest::new("_gsasl1".into(), "xmpp:example.com", SystemTime::now());
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        None,
        None,
    )
    .unwrap();
    redirect::url("https://idp.example.org/sso", &q)
}

#[test]
fn our_client_against_the_libgsasl_server() {
    let url = real_redirect();
    for (authzid, reject) in [(None, false), (Some("room,admin=1"), false), (None, true)] {
        let mut server = LibGsasl::start(&url, reject);
        let mut client = Client::new(authzid, "Bücher.example").unwrap();
        let (rc, challenge) = server.step(&client.initial_response().unwrap());
        assert_eq!(rc, 1, "GSASL_NEEDS_MORE");
        let Step::OpenUrl { url: got, respond } = client.handle_challenge(&challenge).unwrap()
        else {
            panic!()
        };
        assert_eq!(got, url);
        let (rc, _) = server.step(&respond);
        client.outcome(rc == 0).unwrap();
        assert_eq!(client.is_authenticated(), !reject, "rc {rc}");
        let (idp, authz) = server.finish();
        assert_eq!(
            idp, "xn--bcher-kva.example",
            "libgsasl read our A-label IdP identifier"
        );
        assert_eq!(
            authz,
            authzid.unwrap_or("-"),
            "libgsasl unescaped our authzid"
        );
    }
}

#[test]
fn each_side_refuses_the_others_malformed_input() {
    // libgsasl refuses malformed initial responses.
    for bad in [
        &b"y,,example.org"[..],
        b"F,n,,example.org",
        b"p=tls-unique,,example.org",
        b"n,a=x=2,example.org",
    ] {
        let mut s = LibGsasl::start(&real_redirect(), false);
        let (rc, _) = s.step(bad);
        assert!(
            rc != 0 && rc != 1,
            "libgsasl accepted {:?}",
            String::from_utf8_lossy(bad)
        );
        s.finish();
    }
    // libgsasl's server passes on whatever redirect its application gives it: our client
    // refuses one that is not https or carries no SAMLRequest.
    for bad_url in [
        "http://idp.example.org/sso?SAMLRequest=abc",
        "https://idp.example.org/sso",
        "not a url",
    ] {
        let mut s = LibGsasl::start(bad_url, false);
        let mut client = Client::new(None, "example.org").unwrap();
        let (rc, challenge) = s.step(&client.initial_response().unwrap());
        assert_eq!(rc, 1);
        assert!(client.handle_challenge(&challenge).is_err(), "{bad_url}");
        s.finish();
    }
}
