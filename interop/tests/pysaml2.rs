//! Web SSO interop with pysaml2 7.5.5 (PyPI, in `.venv` from `scripts/setup.sh`; it signs,
//! verifies and encrypts through the xmlsec1 CLI), both directions, metadata written by
//! saml-metadata:
//! - our SP -> pysaml2 IdP: pysaml2 accepts our signed AuthnRequests (HTTP-Redirect query
//!   signature and HTTP-POST enveloped signature) and refuses a tampered one; we accept its
//!   signed, assertion-signed and encrypted Responses and refuse them tampered, expired, for
//!   another audience or another request; its default TripleDES encryption only with the legacy
//!   option;
//! - pysaml2 SP -> our IdP: we verify pysaml2's signed Redirect request and answer; pysaml2
//!   accepts our signed (and encrypted) Response and refuses it tampered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use openssl::pkey::PKey;
use openssl::x509::X509;
use saml_core::bindings::{MessageKind, post, redirect, url_decode};
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::{Encryption, ResponseBuilder, check_request};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    Attribute, AuthnRequest, BINDING_HTTP_POST, MemoryReplayCache, NAMEID_PERSISTENT, NameId,
    OutstandingRequests, ProtocolError, ResponseValidator, new_id, openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, SpSso};

const PY_IDP: &str = "https://idp.pysaml2.test/idp";
const PY_SSO: &str = "https://idp.pysaml2.test/sso";
const PY_SP: &str = "https://sp.pysaml2.test/sp";
const PY_ACS: &str = "https://sp.pysaml2.test/acs";
const OUR_SP: &str = "https://sp.rust.test/sp";
const OUR_ACS: &str = "https://sp.rust.test/acs";
const OUR_IDP: &str = "https://idp.rust.test/idp";
const OUR_SSO: &str = "https://idp.rust.test/sso";

fn peer(args: &[&str]) -> Output {
    Command::new(testkit::peers::python())
        .arg(testkit::peers::interop_script("pysaml2_peer.py"))
        .args(args)
        .output()
        .expect("run pysaml2_peer.py")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Keys {
    key: SigningKey,
    pkey: PKey<openssl::pkey::Private>,
    der: Vec<u8>,
    trusted: TrustedKeys,
}

/// An RSA key pair written as `<name>.key` / `<name>.crt` in `dir`.
fn keys(dir: &Path, name: &str) -> Keys {
    let k = testkit::signer::TestKey::rsa(name);
    k.write_pem(dir, name);
    Keys {
        key: k.signing(),
        pkey: k.pkey.clone(),
        der: k.cert_der(),
        trusted: k.trusted(),
    }
}

fn dir_str(d: &Path) -> &str {
    d.to_str().unwrap()
}

struct OurSp {
    dir: tempfile::TempDir,
    sp: Keys,
    idp: Keys,
    md: PathBuf,
}

fn our_sp() -> OurSp {
    let dir = tempfile::tempdir().unwrap();
    let sp = keys(dir.path(), "sp");
    let idp = keys(dir.path(), "idp");
    let md = EntityDescriptor::builder(OUR_SP)
        .sp(SpSso::builder()
            .signing_certificate(sp.der.clone())
            .encryption_certificate(sp.der.clone())
            .authn_requests_signed(true)
            .acs(Binding::HttpPost, OUR_ACS))
        .build()
        .unwrap()
        .to_xml()
        .unwrap();
    let path = dir.path().join("sp-metadata.xml");
    std::fs::write(&path, md).unwrap();
    OurSp {
        dir,
        sp,
        idp,
        md: path,
    }
}

fn request() -> AuthnRequest {
    let mut r = AuthnRequest::new(new_id(&mut openssl_random), OUR_SP, SystemTime::now());
    r.destination = Some(PY_SSO.into());
    r.acs_url = Some(OUR_ACS.into());
    r.protocol_binding = Some(BINDING_HTTP_POST.into());
    r
}

/// Sends `req` to the pysaml2 IdP with the Redirect binding, signed; returns the Response XML.
fn via_redirect(w: &OurSp, req: &AuthnRequest, extra: &[&str]) -> Result<Vec<u8>, String> {
    via_redirect_signed_by(w, &w.sp.key, req, extra)
}

fn via_redirect_signed_by(
    w: &OurSp,
    key: &SigningKey,
    req: &AuthnRequest,
    extra: &[&str],
) -> Result<Vec<u8>, String> {
    // No space in RelayState: pysaml2 re-encodes the query with quote_plus ('+' for a space)
    // before checking the signature, instead of using the octets received.
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        Some("token-123"),
        Some(key),
        None,
    )
    .unwrap();
    let get = |name: &str| -> String {
        q.split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|v| url_decode(v).unwrap())
            .unwrap()
    };
    let (msg, rs, alg, sig) = (
        get("SAMLRequest"),
        get("RelayState"),
        get("SigAlg"),
        get("Signature"),
    );
    let mut args = vec![
        "idp-respond",
        dir_str(w.dir.path()),
        w.md.to_str().unwrap(),
        "redirect",
        &msg,
        &rs,
        &alg,
        &sig,
    ];
    args.extend_from_slice(extra);
    respond(&args)
}

fn respond(args: &[&str]) -> Result<Vec<u8>, String> {
    let o = peer(args);
    if !o.status.success() {
        return Err(text(&o.stderr));
    }
    Ok(post::decode(text(&o.stdout).trim(), post::DEFAULT_MAX_MESSAGE).unwrap())
}

fn validator(w: &OurSp) -> ResponseValidator {
    let mut v = ResponseValidator::new(OUR_SP, OUR_ACS, PY_IDP, w.idp.trusted.clone());
    v.decryption_keys = vec![w.sp.pkey.clone()];
    v
}

/// Validates `xml` now, as the answer to `req`, with a fresh replay cache.
fn check(
    v: &ResponseValidator,
    xml: &[u8],
    req: &AuthnRequest,
) -> Result<saml_core::protocol::ValidatedResponse, saml_core::Error> {
    v.validate(
        xml,
        SystemTime::now(),
        &mut outstanding(req),
        &mut MemoryReplayCache::new(),
    )
}

fn outstanding(req: &AuthnRequest) -> OutstandingRequests {
    let mut o = OutstandingRequests::new();
    o.insert(
        &req.id,
        PY_IDP,
        SystemTime::now() + Duration::from_secs(600),
        SystemTime::now(),
    );
    o
}

#[test]
fn our_sp_with_the_pysaml2_idp() {
    let w = our_sp();
    let v = validator(&w);

    // Redirect binding, Response and Assertion signed by pysaml2.
    let req = request();
    let xml = via_redirect(&w, &req, &[]).unwrap_or_else(|e| panic!("{e}"));
    let ok = check(&v, &xml, &req).unwrap_or_else(|e| panic!("{e}\n{}", text(&xml)));
    assert!(ok.response_signed && ok.assertion_signed);
    assert_eq!(ok.issuer, PY_IDP);
    assert_eq!(ok.name_id().unwrap().value, "alice-pysaml2");
    assert_eq!(
        ok.assertion
            .attribute("urn:oid:0.9.2342.19200300.100.1.3")
            .unwrap()
            .values,
        ["alice@example.org"]
    );

    // The same Response refused: tampered, expired, another audience, another request.
    let tampered = text(&xml).replace("alice-pysaml2", "admin-pysaml2");
    assert!(check(&v, tampered.as_bytes(), &req).is_err());
    let later = SystemTime::now() + Duration::from_secs(3600);
    let mut o = OutstandingRequests::new();
    o.insert(&req.id, PY_IDP, later + Duration::from_secs(600), later);
    assert!(matches!(
        v.validate(&xml, later, &mut o, &mut MemoryReplayCache::new()),
        Err(saml_core::Error::Protocol(ProtocolError::Expired { .. }))
    ));
    let mut other = v.clone();
    other.sp_entity_id = "https://other-sp.rust.test/sp".into();
    assert!(matches!(
        check(&other, &xml, &req),
        Err(saml_core::Error::Protocol(
            ProtocolError::AudienceMismatch { .. }
        ))
    ));
    assert!(matches!(
        check(&v, &xml, &request()),
        Err(saml_core::Error::Protocol(ProtocolError::UnknownRequest(_)))
    ));

    // Only the assertion signed.
    let req = request();
    let xml = via_redirect(&w, &req, &["--no-sign-response"]).unwrap();
    let ok = check(&v, &xml, &req).unwrap();
    assert!(!ok.response_signed && ok.assertion_signed);

    // HTTP-POST binding: an enveloped signature on the request.
    let req = request();
    let signed = req.sign(&w.sp.key).unwrap();
    let xml = respond(&[
        "idp-respond",
        dir_str(w.dir.path()),
        w.md.to_str().unwrap(),
        "post",
        &post::encode(&signed),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(check(&v, &xml, &req).is_ok());

    // pysaml2 refuses our request once tampered (POST: signed content changed; Redirect:
    // signature from another key).
    let bad = text(&signed).replace(OUR_ACS, "https://evil.example/acs");
    assert!(
        respond(&[
            "idp-respond",
            dir_str(w.dir.path()),
            w.md.to_str().unwrap(),
            "post",
            &post::encode(bad.as_bytes())
        ])
        .is_err()
    );
    let other = keys(w.dir.path(), "other");
    let r = via_redirect_signed_by(&w, &other.key, &request(), &[]);
    assert!(
        r.is_err(),
        "pysaml2 accepted a request signed by a key not in the SP's metadata"
    );
}

#[test]
fn encrypted_responses_from_pysaml2() {
    let w = our_sp();
    let v = validator(&w);
    // pysaml2's only built-in choice is TripleDES-CBC: refused by default, accepted with
    // allow_tripledes inside pysaml2's signed Response.
    let req = request();
    let xml = via_redirect(&w, &req, &["--encrypt", "3des"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&xml).contains("EncryptedAssertion"));
    let err = check(&v, &xml, &req).unwrap_err();
    assert!(err.to_string().contains("TripleDES"), "{err}");
    let mut legacy = v.clone();
    legacy.allow_tripledes = true;
    let ok = check(&legacy, &xml, &req).unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.encrypted && ok.assertion_signed);
    assert_eq!(ok.name_id().unwrap().value, "alice-pysaml2");
    // TripleDES with no Response signature around it is unauthenticated CBC: allow_tripledes
    // alone does not admit it, the separate allow_unauthenticated_cbc opt-in does.
    let req = request();
    let xml = via_redirect(&w, &req, &["--encrypt", "3des", "--no-sign-response"]).unwrap();
    assert!(matches!(
        check(&legacy, &xml, &req),
        Err(saml_core::Error::Protocol(ProtocolError::Decryption(_)))
    ));
    let mut oracle = legacy.clone();
    oracle.allow_unauthenticated_cbc = true;
    let ok = check(&oracle, &xml, &req).unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.encrypted && ok.assertion_signed && !ok.response_signed);

    // AES-256-GCM (pysaml2 patched to ask xmlsec1 for it), the Response unsigned around it.
    let req = request();
    let xml = via_redirect(&w, &req, &["--encrypt", "aes256-gcm", "--no-sign-response"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&xml).contains("aes256-gcm"));
    let ok = check(&v, &xml, &req).unwrap_or_else(|e| panic!("{e}"));
    assert!(ok.encrypted && ok.assertion_signed && !ok.response_signed);

    // AES-128-CBC inside a signed Response is fine; unsigned around it, refused (padding oracle).
    let req = request();
    let xml = via_redirect(&w, &req, &["--encrypt", "aes128-cbc"]).unwrap();
    assert!(check(&v, &xml, &req).is_ok());
    let req = request();
    let xml = via_redirect(&w, &req, &["--encrypt", "aes128-cbc", "--no-sign-response"]).unwrap();
    assert!(matches!(
        check(&v, &xml, &req),
        Err(saml_core::Error::Protocol(ProtocolError::Decryption(_)))
    ));
}

#[test]
fn pysaml2_sp_with_our_idp() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_str(dir.path()).to_owned();
    let idp = keys(dir.path(), "idp");
    let sp = keys(dir.path(), "sp");
    let md = EntityDescriptor::builder(OUR_IDP)
        .idp(
            IdpSso::builder()
                .signing_certificate(idp.der.clone())
                .want_authn_requests_signed(true)
                .sso(Binding::HttpRedirect, OUR_SSO),
        )
        .build()
        .unwrap()
        .to_xml()
        .unwrap();
    let md_path = dir.path().join("idp-metadata.xml");
    std::fs::write(&md_path, md).unwrap();

    for encrypt in [false, true] {
        let o = peer(&["sp-request", &d, md_path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        let req_id = out
            .lines()
            .find_map(|l| l.strip_prefix("ID "))
            .unwrap()
            .to_owned();
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("URL "))
            .unwrap()
            .to_owned();
        assert!(url.starts_with(OUR_SSO));
        // We verify pysaml2's query signature with the SP's certificate, then parse.
        let m = redirect::decode(
            &url[url.find('?').unwrap()..],
            redirect::DEFAULT_MAX_INFLATED,
        )
        .unwrap();
        assert_eq!(m.verify(&sp.trusted, false).unwrap(), 0);
        assert!(m.verify(&idp.trusted, false).is_err());
        let req = AuthnRequest::parse(&m.xml).unwrap();
        assert_eq!(
            (req.id.as_str(), req.issuer.as_str()),
            (req_id.as_str(), PY_SP)
        );
        check_request(
            &req,
            &[OUR_SSO],
            SystemTime::now(),
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .unwrap();
        let acs = req.acs_url.clone().unwrap_or_else(|| PY_ACS.to_owned());
        let mut b = ResponseBuilder::for_request(
            &req,
            OUR_IDP,
            &acs,
            NameId::new("bob-rust", NAMEID_PERSISTENT),
        );
        b.attributes = vec![Attribute::uri(
            "urn:oid:0.9.2342.19200300.100.1.3",
            Some("mail"),
            &["bob@example.org"],
        )];
        if encrypt {
            b.encryption = Some(Encryption {
                recipient: PKey::public_key_from_der(
                    &X509::from_der(&sp.der)
                        .unwrap()
                        .public_key()
                        .unwrap()
                        .public_key_to_der()
                        .unwrap(),
                )
                .unwrap(),
                algorithm: DataAlgorithm::Aes256Gcm,
                transport: KeyTransport::RsaOaepMgf1p,
            });
        }
        let xml = b
            .build(&idp.key, SystemTime::now(), &mut openssl_random)
            .unwrap();
        let o = peer(&[
            "sp-validate",
            &d,
            md_path.to_str().unwrap(),
            &req_id,
            &post::encode(&xml),
        ]);
        assert!(
            o.status.success(),
            "pysaml2 SP refused our Response (encrypt={encrypt}): {}\n{}",
            text(&o.stderr),
            text(&xml)
        );
        let out = text(&o.stdout);
        assert!(out.contains("NAMEID bob-rust"), "{out}");
        assert!(out.contains("ATTR mail bob@example.org"), "{out}");
        // Tampered: refused by pysaml2.
        if !encrypt {
            let bad = text(&xml).replace("bob-rust", "admin");
            let o = peer(&[
                "sp-validate",
                &d,
                md_path.to_str().unwrap(),
                &req_id,
                &post::encode(bad.as_bytes()),
            ]);
            assert!(!o.status.success(), "pysaml2 accepted a tampered Response");
        }
    }
}

/// Metadata both ways: pysaml2's `make_metadata` writes SP and IdP metadata (a signed aggregate
/// through the same library calls, since its `-s` option crashes in 7.5.5; and unsigned single
/// entities with the command itself): we verify, load and round-trip it; pysaml2's
/// MetadataStore loads what we wrote and signed, and refuses it once tampered.
mod metadata {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, SystemTime};

    use openssl::x509::X509;
    use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys, VerifyOptions};

    use saml_metadata::load::{self, Policy, parse_unverified};
    use saml_metadata::model::*;
    use testkit::metadata::built_entities;
    use testkit::peers::{interop_script as script, venv_bin as venv};
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

        let tampered =
            text(&signed).replace("https://sp2.example.com/acs", "https://evil.example/acs");
        std::fs::write(&file, tampered).unwrap();
        let o = run(Command::new(venv("python"))
            .arg(script("pysaml2_load.py"))
            .arg(&file)
            .arg(&cert));
        assert!(!o.status.success(), "pysaml2 accepted a tampered document");
        assert!(text(&o.stderr).contains("refused"), "{}", text(&o.stderr));
    }
}
