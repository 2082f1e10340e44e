//! Interop with pyFF 3.0.0 (PyPI, in `.venv` from `scripts/setup.sh`) as a real MDQ server on
//! loopback, serving a directory of entities signed on the way out with its own key
//! (`../shared/specs/MDQ.md`'s pipeline): lookups by entityID and by `{sha1}`, pyFF's "not found"
//! (200 with an empty EntitiesDescriptor), its unquoted ETag and Expires-only lifetime, and the
//! signature check with the wrong key.
#![cfg(feature = "blocking")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mdq_client::io::blocking::{BlockingClient, Options};
use mdq_client::{BaseUrl, Config, Error, Identifier};
use saml_core::dsig::TrustedKeys;

struct Pyff(Child);

impl Drop for Pyff {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pyffd() -> PathBuf {
    let root = std::env::var_os("FEDERATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let bin = root.join("bin/pyffd");
    assert!(
        bin.exists(),
        "{} is missing: pyFF is installed by `bash scripts/setup.sh`",
        bin.display()
    );
    bin
}

fn get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn start(dir: &Path) -> (Pyff, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pipeline = format!(
        "- when update:\n    - load:\n        - {d}/entities/\n- when request:\n    - select:\n    - pipe:\n        - when accept application/samlmetadata+xml application/xml:\n            - first\n            - finalize:\n                cacheDuration: PT12H\n                validUntil: P10D\n            - sign:\n                key: {d}/sign.key\n                cert: {d}/sign.crt\n            - emit application/samlmetadata+xml\n            - break\n",
        d = dir.display()
    );
    std::fs::write(dir.join("mdq.yaml"), pipeline).unwrap();
    let child = Command::new(pyffd())
        .current_dir(dir)
        .args(["-f", "-H", "127.0.0.1", "-P", &port.to_string()])
        .arg(format!("--pid_file={}", dir.join("pyffd.pid").display()))
        .args(["-C", "mdq.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pyffd");
    let guard = Pyff(child);
    let t = Instant::now();
    while !get(port, "/api/status").contains("\"store\": {\"size\": 3}") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "pyFF did not load its store"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    (guard, port)
}

#[test]
fn lookups_against_pyff() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("entities")).unwrap();
    for n in 1..=3 {
        std::fs::write(
            dir.path().join(format!("entities/sp{n}.xml")),
            format!("<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"https://sp{n}.example.org/shibboleth\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"https://sp{n}.example.org/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"),
        )
        .unwrap();
    }
    let (key, cert) = saml_examples_like_key();
    std::fs::write(dir.path().join("sign.key"), key).unwrap();
    std::fs::write(dir.path().join("sign.crt"), &cert).unwrap();
    let (_pyff, port) = start(dir.path());
    let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let client = BlockingClient::new(
        Config::new(base.clone(), TrustedKeys::from_pem(&cert).unwrap()),
        Options::default(),
    );

    let by_id = client
        .get(&Identifier::entity_id("https://sp1.example.org/shibboleth").unwrap())
        .unwrap()
        .expect("found");
    assert_eq!(
        by_id.sp().unwrap().assertion_consumer[0]
            .endpoint
            .location
            .as_str(),
        "https://sp1.example.org/acs"
    );
    let by_sha1 = client
        .get(&Identifier::sha1_of("https://sp2.example.org/shibboleth"))
        .unwrap()
        .expect("found");
    assert_eq!(by_sha1.entity_id, "https://sp2.example.org/shibboleth");
    // pyFF's "not found": 200 and an empty EntitiesDescriptor.
    assert!(
        client
            .get(&Identifier::entity_id("https://nobody.example.org/sp").unwrap())
            .unwrap()
            .is_none()
    );
    // A second lookup is a cache hit (pyFF is not asked: no new request needed to answer).
    assert!(
        client
            .get(&Identifier::entity_id("https://sp1.example.org/shibboleth").unwrap())
            .unwrap()
            .is_some()
    );

    // The wrong key: every answer is refused.
    let (_, other) = saml_examples_like_key();
    let strict = BlockingClient::new(
        Config::new(base, TrustedKeys::from_pem(&other).unwrap()),
        Options::default(),
    );
    assert!(matches!(
        strict.get(&Identifier::entity_id("https://sp3.example.org/shibboleth").unwrap()),
        Err(Error::Metadata(_))
    ));
}

/// An RSA-2048 key and self-signed certificate (PEM) made with the openssl crate.
fn saml_examples_like_key() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509, X509NameBuilder};
    let pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "pyFF MDQ signer").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&pkey).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&pkey, MessageDigest::sha256()).unwrap();
    (
        pkey.private_key_to_pem_pkcs8().unwrap(),
        b.build().to_pem().unwrap(),
    )
}
