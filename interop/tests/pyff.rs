//! Interop with pyFF 3.0.0 (PyPI, in `.venv` from `scripts/setup.sh`). As a real MDQ server on
//! loopback, serving a directory of entities signed on the way out with its own key
//! (`../shared/specs/MDQ.md`'s pipeline): lookups by entityID and by `{sha1}`, pyFF's "not found"
//! (200 with an empty EntitiesDescriptor), its unquoted ETag and Expires-only lifetime, and the
//! signature check with the wrong key.
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
    testkit::peers::venv_bin("pyffd")
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

fn start(dir: &Path, entities: usize) -> (Pyff, u16) {
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
    while !get(port, "/api/status").contains(&format!("\"store\": {{\"size\": {entities}}}")) {
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
    // Three plain entityIDs, and three pyFF's server cannot read back from their path segment
    // (mdq review M5: a `.xml` it strips, a `//` and a `..` segment Pyramid folds; they go by
    // their {sha1} form) beside one it can (a trailing `/` it restores).
    let odd = [
        "https://sp4.example.org/metadata.xml",
        "https://sp5.example.org//double",
        "https://sp6.example.org/a/../b",
        "https://sp7.example.org/trailing/",
    ];
    let ids: Vec<String> = (1..=3)
        .map(|n| format!("https://sp{n}.example.org/shibboleth"))
        .chain(odd.iter().map(|s| (*s).to_owned()))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("entities/sp{}.xml", n + 1)),
            format!("<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{id}\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"https://sp{}.example.org/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>", n + 1),
        )
        .unwrap();
    }
    let (key, cert) = testkit::signer::rsa2048_self_signed("pyFF MDQ signer").unwrap();
    std::fs::write(dir.path().join("sign.key"), key).unwrap();
    std::fs::write(dir.path().join("sign.crt"), &cert).unwrap();
    let (_pyff, port) = start(dir.path(), ids.len());
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
    for id in odd {
        let e = client
            .get(&Identifier::entity_id(id).unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("{id} not found"));
        assert_eq!(e.entity_id, id);
    }
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
    let (_, other) = testkit::signer::rsa2048_self_signed("pyFF MDQ signer").unwrap();
    let strict = BlockingClient::new(
        Config::new(base, TrustedKeys::from_pem(&other).unwrap()),
        Options::default(),
    );
    assert!(matches!(
        strict.get(&Identifier::entity_id("https://sp3.example.org/shibboleth").unwrap()),
        Err(Error::Metadata(_))
    ));
}

/// pyFF as a metadata aggregator: it loads our signed aggregate (checking our signature) and
/// re-publishes it signed with its own key: we verify that and get the same entities back; pyFF
/// refuses our document once tampered, and we refuse pyFF's once tampered.
mod republish {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, SystemTime};

    use openssl::x509::X509;
    use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};

    use saml_metadata::load::{self, Policy, parse_unverified};
    use saml_metadata::model::*;
    use testkit::metadata::built_entities;
    use testkit::peers::venv_bin as venv;
    use testkit::signer::TestKey;

    fn run(cmd: &mut Command) -> Output {
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// An RSA-2048 key and self-signed certificate written as PEM files in `dir`.
    fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf, SigningKey, TrustedKeys) {
        let k = TestKey::rsa(name);
        let (key, cert) = k.write_pem(dir, name);
        (key, cert, k.signing(), k.trusted())
    }

    fn cert_der(pem: &Path) -> Vec<u8> {
        X509::from_pem(&std::fs::read(pem).unwrap())
            .unwrap()
            .to_der()
            .unwrap()
    }

    fn our_entities(cert: &Path) -> Vec<EntityDescriptor> {
        built_entities(&cert_der(cert))
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn pyff(
        dir: &Path,
        input: &Path,
        verify: &Path,
        key: &Path,
        cert: &Path,
        out: &Path,
    ) -> Output {
        let pipeline = format!(
            "- load:\n  - {} verify {}\n- select\n- finalize:\n    Name: urn:example:pyff-republished\n    cacheDuration: PT6H\n    validUntil: P10D\n- sign:\n    key: {}\n    cert: {}\n- publish: {}\n",
            input.display(),
            verify.display(),
            key.display(),
            cert.display(),
            out.display()
        );
        let yaml = dir.join("pipeline.yaml");
        std::fs::write(&yaml, pipeline).unwrap();
        run(Command::new(venv("pyff"))
            .current_dir(dir)
            .arg("--loglevel=ERROR")
            .arg(&yaml))
    }

    #[test]
    fn pyff_republishes_our_signed_aggregate_and_we_verify_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (_, our_cert, signer, _) = keypair(dir.path(), "ours");
        let (pyff_key, pyff_cert, _, pyff_trusted) = keypair(dir.path(), "pyff");
        // Ours: built entities plus a generated eduGAIN-shaped part (every extension federations use).
        let generated = parse_unverified(testkit::aggregate::generate(40, 7).as_bytes()).unwrap();
        let Metadata::Entities(g) = generated else {
            panic!()
        };
        let mut entities = our_entities(&our_cert);
        entities.extend(g.entities().into_iter().cloned());
        let agg = EntitiesDescriptor::combine(
            "urn:example:ours",
            entities,
            Some(now() + Duration::from_secs(7 * 86400)),
        )
        .unwrap();
        let signed = agg.sign(&signer, &SignOptions::default()).unwrap();
        let input = dir.path().join("ours.xml");
        std::fs::write(&input, &signed).unwrap();

        let out = dir.path().join("pyff-out.xml");
        let o = pyff(dir.path(), &input, &our_cert, &pyff_key, &pyff_cert, &out);
        assert!(
            o.status.success() && out.exists(),
            "pyff: {}",
            text(&o.stderr)
        );
        let published = std::fs::read(&out).unwrap();
        let theirs = load::load(&published, &Policy::new(pyff_trusted.clone(), now()))
            .unwrap_or_else(|e| panic!("pyFF's output: {e}"));
        assert_eq!(theirs.len(), 50);
        let Metadata::Entities(root) = theirs.metadata() else {
            panic!()
        };
        assert_eq!(root.name.as_deref(), Some("urn:example:pyff-republished"));
        assert_eq!(root.cache_duration, Some(Duration::from_secs(6 * 3600)));
        // Every entity comes back as we wrote it.
        for e in agg.entities() {
            assert_eq!(theirs.get(&e.entity_id), Some(e), "{}", e.entity_id);
        }
        // Lazy loading of pyFF's output gives the same entities.
        let lazy =
            saml_metadata::lazy::load_lazy(&published, &Policy::new(pyff_trusted.clone(), now()))
                .unwrap();
        assert_eq!(
            lazy.get("https://sp1.example.com/shibboleth").unwrap(),
            theirs.get("https://sp1.example.com/shibboleth")
        );

        // pyFF's document, tampered, is refused by us.
        let bad =
            text(&published).replace("https://sp3.example.com/acs", "https://evil.example/acs");
        assert!(load::load(bad.as_bytes(), &Policy::new(pyff_trusted, now())).is_err());

        // Ours, tampered, is refused by pyFF (its signature check fails, nothing is published).
        let tampered_in = dir.path().join("tampered.xml");
        std::fs::write(
            &tampered_in,
            text(&signed).replace("https://sp3.example.com/acs", "https://evil.example/acs"),
        )
        .unwrap();
        let out2 = dir.path().join("pyff-tampered.xml");
        let o = pyff(
            dir.path(),
            &tampered_in,
            &our_cert,
            &pyff_key,
            &pyff_cert,
            &out2,
        );
        assert!(
            !out2.exists() || !o.status.success(),
            "pyFF published a tampered document"
        );
    }
}
