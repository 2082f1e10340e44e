//! SAML protocol: AuthnRequest round trips and signatures; an IdP-built Response validated by the
//! SP under every signing and encryption arrangement; one test per rejection rule (issuer,
//! audience, time, destination, InResponseTo, replay, status, keys), no state change on
//! failure; XSW1-8 and comment injection against our own signed Responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::Error;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::authn_request::{NameIdPolicy, RequestedAuthnContext};
use saml_core::protocol::idp::{Encryption, ResponseBuilder, check_request};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    Attribute, AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, OutstandingRequests,
    ProtocolError, ResponseValidator, Status, StatusCode, new_id,
};

const IDP: &str = "https://idp.example.org/idp/shibboleth";
const SP: &str = "https://sp.example.com/shibboleth";
const ACS: &str = "https://sp.example.com/Shibboleth.sso/SAML2/POST";
const SSO: &str = "https://idp.example.org/idp/profile/SAML2/Redirect/SSO";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A deterministic random source for IDs (tests only).
fn counter() -> impl FnMut(&mut [u8]) {
    let mut n = 0u8;
    move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(7);
            *x = n;
        }
    }
}

fn rsa_key() -> SigningKey {
    SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap()
}

fn trusted(k: &SigningKey) -> TrustedKeys {
    let mut t = TrustedKeys::new();
    t.add_public_key(k.public_key().unwrap(), "idp").unwrap();
    t
}

struct World {
    idp_key: SigningKey,
    sp_enc: PKey<openssl::pkey::Private>,
    request: AuthnRequest,
    requests: OutstandingRequests,
    replay: MemoryReplayCache,
}

fn world() -> World {
    let mut rnd = openssl_rng();
    let mut request = AuthnRequest::new(new_id(&mut rnd), SP, now());
    request.destination = Some(SSO.into());
    request.acs_url = Some(ACS.into());
    request.protocol_binding = Some(saml_core::protocol::BINDING_HTTP_POST.into());
    let mut requests = OutstandingRequests::new();
    requests.insert(&request.id, now() + Duration::from_secs(600), now());
    World {
        idp_key: rsa_key(),
        sp_enc: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        request,
        requests,
        replay: MemoryReplayCache::new(),
    }
}

fn openssl_rng() -> impl FnMut(&mut [u8]) {
    saml_core::protocol::openssl_random
}

fn builder(w: &World) -> ResponseBuilder {
    let mut b = ResponseBuilder::for_request(
        &w.request,
        IDP,
        ACS,
        NameId::new("alice-7f3a", NAMEID_PERSISTENT),
    );
    b.attributes = vec![
        Attribute::uri(
            "urn:oid:0.9.2342.19200300.100.1.3",
            Some("mail"),
            &["alice@example.org"],
        ),
        Attribute::uri(
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",
            Some("eduPersonScopedAffiliation"),
            &["member@example.org", "staff@example.org"],
        ),
    ];
    b
}

fn validator(w: &World) -> ResponseValidator {
    let mut v = ResponseValidator::new(SP, ACS, IDP, trusted(&w.idp_key));
    v.decryption_keys = vec![w.sp_enc.clone()];
    v
}

fn build(w: &World, b: &ResponseBuilder) -> Vec<u8> {
    b.build(&w.idp_key, now(), &mut openssl_rng()).unwrap()
}

fn validate(
    w: &mut World,
    v: &ResponseValidator,
    xml: &[u8],
) -> Result<saml_core::protocol::ValidatedResponse, Error> {
    v.validate(xml, now(), &mut w.requests, &mut w.replay)
}

fn protocol_err(r: Result<saml_core::protocol::ValidatedResponse, Error>) -> ProtocolError {
    match r {
        Err(Error::Protocol(p)) => p,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn authn_request_round_trip_sign_and_parse() {
    let mut req = AuthnRequest::new(new_id(&mut counter()), SP, now());
    req.destination = Some(SSO.into());
    req.acs_url = Some(ACS.into());
    req.protocol_binding = Some(saml_core::protocol::BINDING_HTTP_POST.into());
    req.force_authn = Some(true);
    req.is_passive = Some(false);
    req.name_id_policy = Some(NameIdPolicy {
        format: Some(NAMEID_PERSISTENT.into()),
        sp_name_qualifier: None,
        allow_create: Some(true),
    });
    req.requested_authn_context = Some(RequestedAuthnContext {
        comparison: Some("minimum".into()),
        class_refs: vec!["https://refeds.org/profile/mfa".into()],
    });
    req.scoping = Some(saml_core::protocol::authn_request::Scoping {
        proxy_count: Some(1),
        idp_list: vec![IDP.into()],
        requester_ids: vec!["https://requester.example".into()],
    });
    assert!(req.id.starts_with('_') && req.id.len() == 41);
    assert_eq!(AuthnRequest::parse(req.to_xml().as_bytes()).unwrap(), req);

    let key = rsa_key();
    let signed = req.sign(&key).unwrap();
    let (parsed, k) = AuthnRequest::verify_and_parse(&signed, &trusted(&key), false).unwrap();
    assert_eq!((parsed, k), (req.clone(), 0));
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace(ACS, "https://evil.example/acs");
    assert!(AuthnRequest::verify_and_parse(tampered.as_bytes(), &trusted(&key), false).is_err());
    assert!(AuthnRequest::verify_and_parse(&signed, &trusted(&rsa_key()), false).is_err());

    check_request(
        &req,
        &[SSO],
        now(),
        Duration::from_secs(300),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        check_request(
            &req,
            &["https://other/sso"],
            now(),
            Duration::from_secs(300),
            Duration::from_secs(60)
        )
        .is_err()
    );
    assert!(
        check_request(
            &req,
            &[SSO],
            now() + Duration::from_secs(3600),
            Duration::from_secs(300),
            Duration::from_secs(60)
        )
        .is_err()
    );

    for (bad, what) in [
        (
            req.to_xml().replace("Version=\"2.0\"", "Version=\"1.1\""),
            "version",
        ),
        (
            req.to_xml().replace(
                "<saml:Issuer>https://sp.example.com/shibboleth</saml:Issuer>",
                "",
            ),
            "Issuer",
        ),
        (
            req.to_xml().replace(
                " IssueInstant=\"2027-01-15T08:00:00Z\"",
                " IssueInstant=\"yesterday\"",
            ),
            "dateTime",
        ),
        (
            req.to_xml()
                .replace("ForceAuthn=\"true\"", "ForceAuthn=\"yes\""),
            "boolean",
        ),
        (
            req.to_xml()
                .replace("samlp:AuthnRequest", "samlp:LogoutRequest"),
            "not samlp:AuthnRequest",
        ),
    ] {
        let err = AuthnRequest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
}

#[test]
fn signed_response_and_assertion_validate() {
    let mut w = world();
    let v = validator(&w);
    let xml = build(&w, &builder(&w));
    let ok = validate(&mut w, &v, &xml).unwrap();
    assert!(ok.response_signed && ok.assertion_signed && !ok.encrypted);
    assert_eq!(ok.issuer, IDP);
    assert_eq!(ok.in_response_to.as_deref(), Some(w.request.id.as_str()));
    assert_eq!(ok.name_id().unwrap().value, "alice-7f3a");
    assert_eq!(
        ok.name_id().unwrap().format.as_deref(),
        Some(NAMEID_PERSISTENT)
    );
    assert_eq!(
        ok.assertion
            .attribute("eduPersonScopedAffiliation")
            .unwrap()
            .values,
        ["member@example.org", "staff@example.org"]
    );
    assert_eq!(
        ok.assertion
            .attribute("urn:oid:0.9.2342.19200300.100.1.3")
            .unwrap()
            .values,
        ["alice@example.org"]
    );
    assert!(ok.session_index().is_some());
    // The request is completed and the assertion remembered.
    assert!(w.requests.is_empty());
    assert_eq!(w.replay.len(), 1);
}

#[test]
fn every_signing_arrangement() {
    for (sign_response, sign_assertion, ok) in [
        (true, false, true),
        (false, true, true),
        (false, false, false),
    ] {
        let mut w = world();
        let v = validator(&w);
        let mut b = builder(&w);
        b.sign_response = sign_response;
        b.sign_assertion = sign_assertion;
        let xml = build(&w, &b);
        let r = validate(&mut w, &v, &xml);
        if ok {
            let r = r.unwrap();
            assert_eq!(
                (r.response_signed, r.assertion_signed),
                (sign_response, sign_assertion)
            );
        } else {
            assert!(matches!(protocol_err(r), ProtocolError::Unsigned(_)));
        }
    }
    // require_signed_assertion refuses a Response signed only around the assertion.
    let mut w = world();
    let mut v = validator(&w);
    v.require_signed_assertion = true;
    let mut b = builder(&w);
    b.sign_assertion = false;
    let xml = build(&w, &b);
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::Unsigned(_)
    ));
}

#[test]
fn encrypted_assertions() {
    for (alg, transport, sign_response, legacy, ok) in [
        (
            DataAlgorithm::Aes256Gcm,
            KeyTransport::RsaOaepMgf1p,
            false,
            false,
            true,
        ),
        (
            DataAlgorithm::Aes128Gcm,
            KeyTransport::RsaOaepSha256,
            true,
            false,
            true,
        ),
        (
            DataAlgorithm::Aes256Cbc,
            KeyTransport::RsaOaepMgf1p,
            true,
            false,
            true,
        ),
        // CBC with no verified signature around the ciphertext: refused (padding oracle) ...
        (
            DataAlgorithm::Aes128Cbc,
            KeyTransport::RsaOaepMgf1p,
            false,
            false,
            false,
        ),
        // ... unless the caller opts in.
        (
            DataAlgorithm::Aes128Cbc,
            KeyTransport::RsaOaepMgf1p,
            false,
            true,
            true,
        ),
    ] {
        let mut w = world();
        let mut v = validator(&w);
        v.legacy_encryption = legacy;
        let mut b = builder(&w);
        b.sign_response = sign_response;
        b.encryption = Some(Encryption {
            recipient: PKey::public_key_from_der(&w.sp_enc.public_key_to_der().unwrap()).unwrap(),
            algorithm: alg,
            transport,
        });
        let xml = build(&w, &b);
        assert!(String::from_utf8_lossy(&xml).contains("EncryptedAssertion"));
        assert!(!String::from_utf8_lossy(&xml).contains("alice-7f3a"));
        let r = validate(&mut w, &v, &xml);
        if ok {
            let r = r.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert!(r.encrypted && r.assertion_signed);
            assert_eq!(r.name_id().unwrap().value, "alice-7f3a");
        } else {
            assert!(
                matches!(protocol_err(r), ProtocolError::Decryption(_)),
                "{alg:?}"
            );
        }
    }
    // The wrong decryption key, and no key at all.
    let mut w = world();
    let mut v = validator(&w);
    let mut b = builder(&w);
    b.sign_response = false;
    b.encryption = Some(Encryption {
        recipient: PKey::public_key_from_der(&w.sp_enc.public_key_to_der().unwrap()).unwrap(),
        algorithm: DataAlgorithm::Aes256Gcm,
        transport: KeyTransport::RsaOaepMgf1p,
    });
    let xml = build(&w, &b);
    v.decryption_keys = vec![PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()];
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::Decryption(_)
    ));
    v.decryption_keys.clear();
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::Decryption(_)
    ));
    // A flipped ciphertext byte (GCM tag fails).
    let s = String::from_utf8(xml).unwrap();
    let i = s.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 30;
    let mut bytes = s.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    v.decryption_keys = vec![w.sp_enc.clone()];
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &bytes)),
        ProtocolError::Decryption(_)
    ));
    // require_encrypted refuses a plain assertion.
    let mut w = world();
    let mut v = validator(&w);
    v.require_encrypted = true;
    let xml = build(&w, &builder(&w));
    assert!(validate(&mut w, &v, &xml).is_err());
}

#[test]
fn each_rule_rejects_and_leaves_no_state() {
    type Tweak = fn(&mut World, &mut ResponseBuilder, &mut ResponseValidator) -> SystemTime;
    type Expect = fn(&ProtocolError) -> bool;
    let cases: Vec<(&str, Tweak, Expect)> = vec![
        (
            "issuer",
            |_, b, _| {
                b.idp_entity_id = "https://evil.example/idp".into();
                now()
            },
            |e| matches!(e, ProtocolError::IssuerMismatch { .. }),
        ),
        (
            "audience",
            |_, b, _| {
                b.sp_entity_id = "https://other-sp.example".into();
                now()
            },
            |e| matches!(e, ProtocolError::AudienceMismatch { .. }),
        ),
        (
            "destination",
            |_, b, _| {
                b.acs_url = "https://evil.example/acs".into();
                now()
            },
            |e| matches!(e, ProtocolError::DestinationMismatch { .. }),
        ),
        (
            "expired",
            |_, _, _| now() + Duration::from_secs(500),
            |e| matches!(e, ProtocolError::Expired { .. }),
        ),
        (
            "not yet valid",
            |_, _, _| now() - Duration::from_secs(600),
            |e| matches!(e, ProtocolError::NotYetValid { .. }),
        ),
        (
            "unknown request",
            |_, b, _| {
                b.in_response_to = Some("_not-ours".into());
                now()
            },
            |e| matches!(e, ProtocolError::UnknownRequest(_)),
        ),
        (
            "unsolicited",
            |_, b, _| {
                b.in_response_to = None;
                now()
            },
            |e| matches!(e, ProtocolError::Unsolicited),
        ),
        (
            "status",
            |_, b, _| {
                b.status = Status {
                    code: StatusCode::Responder,
                    second: Some(StatusCode::AuthnFailed),
                    message: Some("wrong password".into()),
                };
                now()
            },
            |e| {
                matches!(
                    e,
                    ProtocolError::Status {
                        code: StatusCode::Responder,
                        second: Some(StatusCode::AuthnFailed),
                        ..
                    }
                )
            },
        ),
    ];
    for (name, tweak, expect) in cases {
        let mut w = world();
        let mut v = validator(&w);
        let mut b = builder(&w);
        let at = tweak(&mut w, &mut b, &mut v);
        let xml = build(&w, &b);
        let r = v.validate(&xml, at, &mut w.requests, &mut w.replay);
        let e = protocol_err(r);
        assert!(expect(&e), "{name}: {e}");
        assert_eq!(
            w.requests.len(),
            1,
            "{name}: the request must stay outstanding"
        );
        assert!(w.replay.is_empty(), "{name}: nothing remembered");
    }
    // Another IdP's key: the signature is rejected.
    let mut w = world();
    let mut v = validator(&w);
    v.idp_keys = trusted(&rsa_key());
    let xml = build(&w, &builder(&w));
    assert!(matches!(
        validate(&mut w, &v, &xml),
        Err(Error::Signature(_))
    ));
    assert_eq!(w.requests.len(), 1);
    // Unsolicited is fine when allowed.
    let mut w = world();
    let mut v = validator(&w);
    v.allow_unsolicited = true;
    let mut b = builder(&w);
    b.in_response_to = None;
    let xml = build(&w, &b);
    assert!(validate(&mut w, &v, &xml).unwrap().in_response_to.is_none());
}

#[test]
fn replay_is_refused() {
    let mut w = world();
    let mut v = validator(&w);
    v.allow_unsolicited = true;
    let mut b = builder(&w);
    b.in_response_to = None;
    let xml = build(&w, &b);
    validate(&mut w, &v, &xml).unwrap();
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::Replayed(_)
    ));
    // A solicited Response replayed: its request is already completed.
    let mut w = world();
    let v = validator(&w);
    let xml = build(&w, &builder(&w));
    validate(&mut w, &v, &xml).unwrap();
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::UnknownRequest(_)
    ));
}

/// The one `<saml:Assertion ...>...</saml:Assertion>` of a Response.
fn assertion_of(xml: &str) -> (usize, usize) {
    let s = xml.find("<saml:Assertion").unwrap();
    let e = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    (s, e)
}

/// An evil copy of the assertion: a new ID and another subject, its signature left in place.
fn evil(assertion: &str) -> String {
    let id_at = assertion.find("ID=\"").unwrap() + 4;
    let id_end = id_at + assertion[id_at..].find('"').unwrap();
    let mut e = assertion.to_owned();
    e.replace_range(id_at..id_end, "_evil");
    e.replace("alice-7f3a", "admin")
}

/// XSW1/XSW2 on a Response signed at the Response level.
fn xsw_response(good: &str, inside: bool) -> String {
    let root_id_at = good.find(" ID=\"").unwrap() + 5;
    let root_id_end = root_id_at + good[root_id_at..].find('"').unwrap();
    let mut ev = good.to_owned();
    ev.replace_range(root_id_at..root_id_end, "_evil-response");
    let ev = ev.replace("alice-7f3a", "admin");
    let body = good.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    if inside {
        ev.replacen(
            "</ds:Signature>",
            &format!("<ds:Object>{body}</ds:Object></ds:Signature>"),
            1,
        )
    } else {
        ev.replacen("</ds:Signature>", &format!("</ds:Signature>{body}"), 1)
    }
}

#[test]
fn signature_wrapping_xsw1_to_xsw8_is_rejected() {
    let mut w = world();
    let v = validator(&w);
    // Only the assertion signed (the usual XSW target); the response itself is unsigned.
    let mut b = builder(&w);
    b.sign_response = false;
    let good = String::from_utf8(build(&w, &b)).unwrap();
    let mut b2 = builder(&w);
    b2.sign_assertion = false;
    let good_rs = String::from_utf8(build(&w, &b2)).unwrap();
    let (s, e) = assertion_of(&good);
    let orig = &good[s..e];
    let ev = evil(orig);
    let no_sig = |a: &str| {
        let ss = a.find("<ds:Signature").unwrap();
        let se = a.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        format!("{}{}", &a[..ss], &a[se..])
    };
    let with_in_sig = |a: &str, inner: &str| {
        a.replacen(
            "</ds:Signature>",
            &format!("<ds:Object>{inner}</ds:Object></ds:Signature>"),
            1,
        )
    };
    let ev_nosig = no_sig(&ev);
    let cases: Vec<(&str, String)> = vec![
        // XSW1: an evil Response (new ID, evil assertion) carrying the original Response's
        // signature, with the original signed Response inside that signature.
        ("XSW1", xsw_response(&good_rs, true)),
        // XSW2: the same with the original Response detached, after the signature.
        ("XSW2", xsw_response(&good_rs, false)),
        // XSW3: evil assertion before the signed one.
        ("XSW3", good.replacen(orig, &format!("{ev_nosig}{orig}"), 1)),
        // XSW4: the signed assertion inside the evil one.
        (
            "XSW4",
            good.replacen(
                orig,
                &ev_nosig.replacen("</saml:Assertion>", &format!("{orig}</saml:Assertion>"), 1),
                1,
            ),
        ),
        // XSW5: evil assertion carrying the original signature; the original appended.
        (
            "XSW5",
            good.replacen(orig, &format!("{ev}{}", no_sig(orig)), 1),
        ),
        // XSW6: evil assertion with the signature, the original inside that signature.
        ("XSW6", good.replacen(orig, &with_in_sig(&ev, orig), 1)),
        // XSW7: the original inside an Extensions element, evil assertion as the child.
        (
            "XSW7",
            good.replacen(
                orig,
                &format!("<samlp:Extensions>{orig}</samlp:Extensions>{ev_nosig}"),
                1,
            ),
        ),
        // XSW8: evil assertion whose signature holds the original (without its signature) in an Object.
        (
            "XSW8",
            good.replacen(orig, &with_in_sig(&ev, &no_sig(orig)), 1),
        ),
    ];
    for (name, doc) in cases {
        let r = validate(&mut w, &v, doc.as_bytes());
        assert!(r.is_err(), "{name} accepted:\n{doc}");
        assert_eq!(w.requests.len(), 1, "{name}");
    }
    // The untouched document is accepted.
    validate(&mut w, &v, good.as_bytes()).unwrap();
}

#[test]
fn comment_injection_does_not_truncate_the_name_id() {
    // The 2018 class (CVE-2017-11427 and friends): a comment inside a signed text value. c14n
    // without comments leaves the signature valid; the value must still be the whole text.
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    b.name_id = NameId::new("user@example.org.evil.com", NAMEID_PERSISTENT);
    let xml = String::from_utf8(build(&w, &b)).unwrap();
    let injected = xml.replace(
        "user@example.org.evil.com",
        "user@example.org<!---->.evil.com",
    );
    assert_ne!(xml, injected);
    let ok = validate(&mut w, &v, injected.as_bytes()).unwrap();
    assert_eq!(ok.name_id().unwrap().value, "user@example.org.evil.com");
}

#[test]
fn malformed_responses_name_the_problem() {
    let mut w = world();
    let v = validator(&w);
    let good = String::from_utf8(build(&w, &builder(&w))).unwrap();
    for (bad, what) in [
        (
            good.replace("samlp:Response", "samlp:ArtifactResponse"),
            "not samlp:Response",
        ),
        (
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>".to_owned(),
            "Version",
        ),
        (
            good.replacen("Version=\"2.0\"", "Version=\"3.0\"", 1),
            "version",
        ),
        ("<!DOCTYPE x [<!ENTITY e \"x\">]><x/>".to_owned(), "DOCTYPE"),
        ("not xml".to_owned(), "malformed"),
    ] {
        let err = validate(&mut w, &v, bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.to_lowercase().contains(&what.to_lowercase()),
            "{what}: {err}"
        );
    }
}
