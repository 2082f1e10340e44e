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

fn python() -> PathBuf {
    let root = std::env::var_os("FEDERATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let bin = root.join("bin/python");
    assert!(
        bin.exists(),
        "{} is missing: pysaml2 is installed by `bash scripts/setup.sh`",
        bin.display()
    );
    bin
}

fn peer(args: &[&str]) -> Output {
    Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/pysaml2_peer.py"))
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
    let (key_pem, cert_pem) = saml_examples::signer::rsa2048_self_signed(name).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), &key_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), &cert_pem).unwrap();
    Keys {
        key: SigningKey::from_pem(&key_pem, Some(&cert_pem)).unwrap(),
        pkey: PKey::private_key_from_pem(&key_pem).unwrap(),
        der: X509::from_pem(&cert_pem).unwrap().to_der().unwrap(),
        trusted: TrustedKeys::from_pem(&cert_pem).unwrap(),
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
