//! Metadata interop with independent Python implementations, installed by `scripts/setup.sh` in
//! `.venv` (pysaml2 7.5.5 and pyFF 3.0.0 from PyPI; both check signatures through xmlsec1):
//! - pysaml2's `make_metadata` writes SP and IdP metadata (a signed aggregate through the same
//!   library calls, since its `-s` option crashes in 7.5.5; and unsigned single entities with
//!   the command itself): we verify, load and round-trip it;
//! - pysaml2's MetadataStore loads what we wrote and signed, and refuses it once tampered;
//! - pyFF loads our signed aggregate (checking our signature), re-publishes it signed with its own
//!   key: we verify that and get the same entities back; pyFF refuses our document once
//!   tampered, and we refuse pyFF's once tampered.
//!
//! A missing venv fails these tests with the command that installs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use openssl::x509::X509;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys, VerifyOptions};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load::{self, Policy, parse_unverified};
use saml_metadata::model::*;

fn venv(tool: &str) -> PathBuf {
    let root = std::env::var_os("FEDERATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let bin = root.join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: the pysaml2/pyFF interop peers are installed by `bash scripts/setup.sh`",
        bin.display()
    );
    bin
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/interop")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An RSA-2048 key and self-signed certificate written as PEM files in `dir`.
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf, SigningKey, TrustedKeys) {
    let (key_pem, cert_pem) = saml_examples::signer::rsa2048_self_signed(name).unwrap();
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::write(&cert, &cert_pem).unwrap();
    let signer = SigningKey::from_pem(&key_pem, Some(&cert_pem)).unwrap();
    let trusted = TrustedKeys::from_pem(&cert_pem).unwrap();
    (key, cert, signer, trusted)
}

fn cert_der(pem: &Path) -> Vec<u8> {
    X509::from_pem(&std::fs::read(pem).unwrap())
        .unwrap()
        .to_der()
        .unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

const SP_CONF: &str = r#"
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_HTTP_ARTIFACT
CONFIG = {
    "entityid": "https://sp.pysaml2.example.org/metadata",
    "name": "pysaml2 test SP",
    "key_file": "KEY",
    "cert_file": "CERT",
    "xmlsec_binary": "/usr/bin/xmlsec1",
    "entity_category": ["http://refeds.org/category/research-and-scholarship"],
    "service": {
        "sp": {
            "endpoints": {
                "assertion_consumer_service": [
                    ("https://sp.pysaml2.example.org/acs/post", BINDING_HTTP_POST),
                    ("https://sp.pysaml2.example.org/acs/artifact", BINDING_HTTP_ARTIFACT),
                ],
                "single_logout_service": [
                    ("https://sp.pysaml2.example.org/slo", BINDING_HTTP_REDIRECT),
                ],
                "discovery_response": [
                    ("https://sp.pysaml2.example.org/disco", BINDING_HTTP_REDIRECT),
                ],
            },
            "required_attributes": ["mail"],
            "optional_attributes": ["title"],
            "want_assertions_signed": True,
            "authn_requests_signed": True,
            "ui_info": {
                "display_name": [{"text": "pysaml2 SP", "lang": "en"}],
                "description": [{"text": "A test service", "lang": "en"}],
                "information_url": [{"text": "https://sp.pysaml2.example.org/about", "lang": "en"}],
                "privacy_statement_url": [{"text": "https://sp.pysaml2.example.org/privacy", "lang": "en"}],
                "logo": {"text": "https://sp.pysaml2.example.org/logo.png", "width": "100", "height": "80"},
            },
        }
    },
    "organization": {
        "name": [("Example SP Org", "en")],
        "display_name": [("Example SP Org", "en")],
        "url": [("https://sp.pysaml2.example.org/", "en")],
    },
    "contact_person": [
        {"given_name": "Ops", "sur_name": "Team", "email_address": ["mailto:ops@sp.pysaml2.example.org"], "contact_type": "technical"},
    ],
}
"#;

const IDP_CONF: &str = r#"
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, BINDING_SOAP
CONFIG = {
    "entityid": "https://idp.pysaml2.example.org/metadata",
    "key_file": "KEY",
    "cert_file": "CERT",
    "xmlsec_binary": "/usr/bin/xmlsec1",
    "service": {
        "idp": {
            "endpoints": {
                "single_sign_on_service": [
                    ("https://idp.pysaml2.example.org/sso/redirect", BINDING_HTTP_REDIRECT),
                    ("https://idp.pysaml2.example.org/sso/post", BINDING_HTTP_POST),
                ],
                "single_logout_service": [
                    ("https://idp.pysaml2.example.org/slo", BINDING_SOAP),
                ],
            },
            "scope": ["pysaml2.example.org"],
            "name_id_format": ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"],
        }
    },
}
"#;

fn write_conf(dir: &Path, name: &str, body: &str, key: &Path, cert: &Path) -> PathBuf {
    let p = dir.join(format!("{name}.py"));
    let body = body
        .replace("\"KEY\"", &format!("{:?}", key.to_str().unwrap()))
        .replace("\"CERT\"", &format!("{:?}", cert.to_str().unwrap()));
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn pysaml2_make_metadata_verifies_loads_and_round_trips_with_us() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, _, trusted) = keypair(dir.path(), "pysaml2");
    let sp = write_conf(dir.path(), "sp_conf", SP_CONF, &key, &cert);
    let idp = write_conf(dir.path(), "idp_conf", IDP_CONF, &key, &cert);

    // A signed aggregate, made and signed (through xmlsec1) by pysaml2's make_metadata code.
    let make = |alg: &str| {
        let o = run(Command::new(venv("python"))
            .current_dir(dir.path())
            .arg(script("pysaml2_make_metadata.py"))
            .arg(&key)
            .arg(&cert)
            .args(["_pysaml2fed", "urn:example:pysaml2", "10", alg])
            .arg(&sp)
            .arg(&idp));
        assert!(o.status.success(), "make_metadata: {}", text(&o.stderr));
        o.stdout
    };
    // pysaml2 signs with RSA-SHA1 by default: refused unless the legacy option is chosen.
    let sha1 = make("default");
    let err = load::load(&sha1, &Policy::new(trusted.clone(), now())).unwrap_err();
    assert!(err.to_string().contains("rsa-sha1"), "{err}");
    let mut legacy = Policy::new(trusted.clone(), now());
    legacy.verify = VerifyOptions::metadata().legacy();
    assert_eq!(load::load(&sha1, &legacy).unwrap().len(), 2);

    let doc = make("rsa-sha256");
    let agg = load::load(&doc, &Policy::new(trusted.clone(), now()))
        .unwrap_or_else(|e| panic!("{e}\n{}", text(&doc)));
    assert_eq!(agg.len(), 2);

    let sp = agg.get("https://sp.pysaml2.example.org/metadata").unwrap();
    let s = sp.sp().unwrap();
    assert_eq!(s.want_assertions_signed, Some(true));
    assert_eq!(s.authn_requests_signed, Some(true));
    assert_eq!(
        s.assertion_consumer
            .iter()
            .map(|a| (a.endpoint.binding.clone(), a.endpoint.location.as_str()))
            .collect::<Vec<_>>(),
        [
            (Binding::HttpPost, "https://sp.pysaml2.example.org/acs/post"),
            (
                Binding::HttpArtifact,
                "https://sp.pysaml2.example.org/acs/artifact"
            )
        ]
    );
    assert_eq!(
        s.common.single_logout[0].location.as_str(),
        "https://sp.pysaml2.example.org/slo"
    );
    assert_eq!(
        s.common.keys[0].certificates[0],
        cert_der(&cert),
        "the SP's certificate"
    );
    let acs = &s.attribute_consuming[0];
    let req: Vec<(&str, bool)> = acs
        .requested
        .iter()
        .map(|r| {
            (
                r.attribute.friendly_name.as_deref().unwrap_or(""),
                r.is_required,
            )
        })
        .collect();
    assert!(
        req.contains(&("mail", true)) && req.contains(&("title", false)),
        "{req:?}"
    );
    let ui = s.common.extensions.ui_info.as_ref().unwrap();
    assert_eq!(ui.display_names[0].value, "pysaml2 SP");
    assert_eq!(ui.logos[0].width, 100);
    assert_eq!(
        s.common.extensions.discovery_responses[0]
            .endpoint
            .location
            .as_str(),
        "https://sp.pysaml2.example.org/disco"
    );
    assert_eq!(
        sp.extensions
            .entity_attribute("http://macedir.org/entity-category")
            .collect::<Vec<_>>(),
        ["http://refeds.org/category/research-and-scholarship"]
    );
    assert_eq!(
        sp.organization.as_ref().unwrap().display_names[0].value,
        "Example SP Org"
    );
    assert_eq!(sp.contacts[0].emails, ["mailto:ops@sp.pysaml2.example.org"]);

    let idp = agg.get("https://idp.pysaml2.example.org/metadata").unwrap();
    let i = idp.idp().unwrap();
    assert_eq!(i.single_sign_on.len(), 2);
    assert_eq!(i.common.extensions.scopes[0].value, "pysaml2.example.org");
    assert_eq!(
        i.common.name_id_formats,
        ["urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"]
    );
    // pysaml2 writes alg:SigningMethod / DigestMethod from its xmlsec1's algorithm list.
    assert!(!idp.extensions.signing_methods.is_empty());

    // What pysaml2 wrote round-trips through our writer, and our re-signed copy loads.
    let md = agg.metadata().clone();
    let xml = md.to_xml().unwrap();
    assert_eq!(parse_unverified(xml.as_bytes()).unwrap(), md);

    // A tampered copy is refused.
    let bad = text(&doc).replace("acs/post", "acs/p0st");
    assert!(load::load(bad.as_bytes(), &Policy::new(trusted, now())).is_err());

    // Unsigned single entities (make_metadata without -i prints one EntityDescriptor).
    let sp_only = dir.path().join("sp_conf.py");
    let o = run(Command::new(venv("make_metadata"))
        .current_dir(dir.path())
        .arg(&sp_only));
    assert!(o.status.success(), "make_metadata: {}", text(&o.stderr));
    let Metadata::Entity(e) = parse_unverified(&o.stdout).unwrap() else {
        panic!("not an EntityDescriptor")
    };
    assert_eq!(e.entity_id, "https://sp.pysaml2.example.org/metadata");
    assert_eq!(e.sp().unwrap().assertion_consumer.len(), 2);
}

/// Entities built with our builders, with real certificates.
fn our_entities(cert: &Path) -> Vec<EntityDescriptor> {
    let der = cert_der(cert);
    let mut out = Vec::new();
    for n in 0..5 {
        out.push(
            EntityDescriptor::builder(&format!("https://idp{n}.example.edu/idp/shibboleth"))
                .registration("https://federation.example.org", None)
                .entity_category("http://refeds.org/category/hide-from-discovery")
                .idp(
                    IdpSso::builder()
                        .signing_certificate(der.clone())
                        .scope(&format!("idp{n}.example.edu"), false)
                        .display_name("en", &format!("Example University {n}"))
                        .sso(
                            Binding::HttpRedirect,
                            &format!("https://idp{n}.example.edu/sso"),
                        ),
                )
                .organization(
                    "en",
                    &format!("Example University {n}"),
                    "https://example.edu/",
                )
                .contact(ContactType::Technical, "mailto:ops@example.edu")
                .security_contact("mailto:cert@example.edu")
                .build()
                .unwrap(),
        );
        out.push(
            EntityDescriptor::builder(&format!("https://sp{n}.example.com/shibboleth"))
                .sp(SpSso::builder()
                    .encryption_certificate(der.clone())
                    .acs(Binding::HttpPost, &format!("https://sp{n}.example.com/acs"))
                    .requested_attribute(
                        "en",
                        "Example service",
                        "urn:oid:0.9.2342.19200300.100.1.3",
                        Some("mail"),
                        true,
                    ))
                .build()
                .unwrap(),
        );
    }
    out
}

#[test]
fn pysaml2_loads_what_we_sign_and_refuses_it_tampered() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, signer, _) = keypair(dir.path(), "ours");
    let agg = EntitiesDescriptor::combine(
        "urn:example:ours",
        our_entities(&cert),
        Some(now() + Duration::from_secs(7 * 86400)),
    )
    .unwrap();
    let signed = agg.sign(&signer, &SignOptions::default()).unwrap();
    let file = dir.path().join("ours.xml");
    std::fs::write(&file, &signed).unwrap();

    let o = run(Command::new(venv("python"))
        .arg(script("pysaml2_load.py"))
        .arg(&file)
        .arg(&cert));
    let out = text(&o.stdout);
    assert!(o.status.success(), "pysaml2: {}{}", out, text(&o.stderr));
    assert_eq!(out.lines().last(), Some("OK 10"));
    assert!(out.contains("ENTITY https://idp3.example.edu/idp/shibboleth idp"));
    assert!(out.contains("ENTITY https://sp4.example.com/shibboleth sp"));

    let tampered = text(&signed).replace("https://sp2.example.com/acs", "https://evil.example/acs");
    std::fs::write(&file, tampered).unwrap();
    let o = run(Command::new(venv("python"))
        .arg(script("pysaml2_load.py"))
        .arg(&file)
        .arg(&cert));
    assert!(!o.status.success(), "pysaml2 accepted a tampered document");
    assert!(text(&o.stderr).contains("refused"), "{}", text(&o.stderr));
}

fn pyff(dir: &Path, input: &Path, verify: &Path, key: &Path, cert: &Path, out: &Path) -> Output {
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
    let generated = parse_unverified(saml_examples::aggregate::generate(40, 7).as_bytes()).unwrap();
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
    let bad = text(&published).replace("https://sp3.example.com/acs", "https://evil.example/acs");
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
