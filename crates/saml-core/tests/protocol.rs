//! SAML protocol: AuthnRequest round trips and signatures; an IdP-built Response validated by the
//! SP under every signing and encryption arrangement; one test per rejection rule (issuer,
//! audience, time, destination, InResponseTo, replay, status, keys), no state change on
//! failure; XSW1-8 and comment injection against our own signed Responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::Error;
use saml_core::dsig::{self, SigningKey, TrustedKeys, VerifyOptions};
use saml_core::protocol::authn_request::{NameIdPolicy, RequestedAuthnContext};
use saml_core::protocol::idp::{Encryption, ResponseBuilder, check_request};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    Attribute, AuthnRequest, MAX_NAME_ID, MemoryReplayCache, NAMEID_PERSISTENT, NAMEID_TRANSIENT,
    NameId, OutstandingRequests, ProtocolError, ResponseValidator, Status, StatusCode, new_id,
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
    requests.insert(&request.id, IDP, now() + Duration::from_secs(600), now());
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

/// An AuthnRequest's children come at most once each, in the schema's order (SAML Core §3.2.1,
/// §3.4.1; sasl review C2): with two Issuers, a client that checks the issuer (keeping the
/// last) and an IdP that answers it (keeping the first, as SimpleSAMLphp's saml2 library
/// does) would read two different relying parties from one request. Two IDPLists are refused
/// too, not merged.
/// SAML Core §3.4.1: an AuthnRequest's `saml:Subject` names the principal the assertion must be
/// about. It was skipped when parsed (and dropped when written), so an IdP built on
/// `ResponseBuilder::for_request` asserted whoever logged in for a request about someone else.
/// It is read (one NameID; SubjectConfirmation passed over; BaseID and EncryptedID refused),
/// written back, and `build` refuses a successful Response about another principal.
#[test]
fn an_authn_requests_subject_is_honoured() {
    let w = world();
    let mut req = w.request.clone();
    req.subject = Some(NameId::new("alice-7f3a", NAMEID_PERSISTENT));
    let xml = req.to_xml();
    let parsed = AuthnRequest::parse(xml.as_bytes()).unwrap();
    assert_eq!(parsed.subject, req.subject);
    // The same principal: a Response.
    let mut b = ResponseBuilder::for_request(
        &parsed,
        IDP,
        ACS,
        NameId::new("alice-7f3a", NAMEID_PERSISTENT),
    );
    assert!(b.build(&w.idp_key, now(), &mut openssl_rng()).is_ok());
    // Another one (or the same value in another format): refused.
    for other in [
        NameId::new("mallory-0000", NAMEID_PERSISTENT),
        NameId::new(
            "alice-7f3a",
            "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
        ),
    ] {
        b.name_id = other;
        let e = b.build(&w.idp_key, now(), &mut openssl_rng()).unwrap_err();
        assert!(
            matches!(e, Error::Protocol(ProtocolError::SubjectMismatch { .. })),
            "{e}"
        );
    }
    // An error status carries no assertion: allowed.
    b.status = Status {
        code: StatusCode::Responder,
        second: None,
        message: None,
    };
    assert!(b.build(&w.idp_key, now(), &mut openssl_rng()).is_ok());
    // A SubjectConfirmation beside the NameID is passed over; other identifiers are refused.
    let subject_at = xml.find("<saml:Subject>").unwrap() + "<saml:Subject>".len();
    let confirmed = format!(
        "{}<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"/>{}",
        &xml[..xml.find("</saml:Subject>").unwrap()],
        &xml[xml.find("</saml:Subject>").unwrap()..]
    );
    assert_eq!(
        AuthnRequest::parse(confirmed.as_bytes()).unwrap().subject,
        req.subject
    );
    let name_end = xml.find("</saml:NameID>").unwrap() + "</saml:NameID>".len();
    for bad in [
        "<saml:EncryptedID><xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"/></saml:EncryptedID>".to_owned(),
        "<saml:BaseID NameQualifier=\"x\"/>".to_owned(),
        xml[subject_at..name_end].to_owned() + &xml[subject_at..name_end],
    ] {
        let doc = format!("{}{bad}{}", &xml[..subject_at], &xml[name_end..]);
        assert!(AuthnRequest::parse(doc.as_bytes()).is_err(), "{bad}");
    }
}

/// Review B5: `ResponseBuilder::for_request` honoured the request's Subject only. A
/// NameIDPolicy (Format, SPNameQualifier), a RequestedAuthnContext and ForceAuthn (parsed from
/// the request as the SP wrote it) are now honoured too: a successful Response that does not
/// meet them is refused, and the error names the status to answer with instead (SAML Core
/// §3.4.1, §3.4.1.1, §3.3.2.2.1). The second review of the fix (B5-1 to B5-4): `minimum`,
/// `maximum` and `better` fail closed (the ordering of classes is the IdP's), declaration
/// references are read and never met here, a Comparison outside the schema's is refused, the
/// `encrypted` format is never met (nor a NameID's format), and ForceAuthn's instant is one
/// the IdP can set from its own clock.
#[test]
fn an_authn_requests_name_id_policy_authn_context_and_force_authn_are_honoured() {
    use saml_core::protocol::{NAMEID_ENCRYPTED, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED};
    const MFA: &str = "https://refeds.org/profile/mfa";
    let w = world();
    let request = |format: &str, comparison: &str, force: bool| {
        let mut req = w.request.clone();
        req.name_id_policy = Some(NameIdPolicy {
            format: Some(format.into()),
            sp_name_qualifier: Some(SP.into()),
            allow_create: Some(true),
        });
        req.requested_authn_context = Some(RequestedAuthnContext {
            comparison: Some(comparison.into()),
            class_refs: vec![MFA.into()],
            decl_refs: Vec::new(),
        });
        req.force_authn = Some(force);
        AuthnRequest::parse(req.to_xml().as_bytes()).unwrap()
    };
    let status = |e: Error| match e {
        Error::Protocol(p) => p.answer_status().map(|s| s.second),
        other => panic!("{other}"),
    };
    let builder = |req: &AuthnRequest, class: &str| {
        let mut b =
            ResponseBuilder::for_request(req, IDP, ACS, NameId::new("t-1", NAMEID_TRANSIENT));
        b.authn_context_class = class.into();
        b
    };
    let build = |b: &ResponseBuilder| b.build(&w.idp_key, now(), &mut openssl_rng());
    let exact = request(NAMEID_TRANSIENT, "exact", true);
    assert!(build(&builder(&exact, MFA)).is_ok());
    // Another NameID format, or another SPNameQualifier: InvalidNameIDPolicy.
    let mut b = builder(&exact, MFA);
    b.name_id = NameId::new("alice-7f3a", NAMEID_PERSISTENT);
    assert_eq!(
        status(build(&b).unwrap_err()),
        Some(Some(StatusCode::InvalidNameIdPolicy))
    );
    let mut b = builder(&exact, MFA);
    b.name_id.sp_name_qualifier = Some("https://other-sp.example".into());
    assert_eq!(
        status(build(&b).unwrap_err()),
        Some(Some(StatusCode::InvalidNameIdPolicy))
    );
    // The encrypted format (an EncryptedID) is not made: asked for, InvalidNameIDPolicy; as a
    // NameID's own format, a misuse.
    let mut b = builder(&request(NAMEID_ENCRYPTED, "exact", false), MFA);
    b.name_id = NameId::new("t-1", NAMEID_ENCRYPTED);
    assert!(matches!(build(&b).unwrap_err(), Error::Usage(_)));
    b.name_id = NameId::new("t-1", NAMEID_TRANSIENT);
    assert_eq!(
        status(build(&b).unwrap_err()),
        Some(Some(StatusCode::InvalidNameIdPolicy))
    );
    // Another authentication context: NoAuthnContext, whatever the comparison, unless listed
    // (exact, minimum, maximum); `better` is never met here.
    let ppt = saml_core::protocol::AC_PASSWORD_PROTECTED_TRANSPORT;
    for cmp in ["exact", "minimum", "maximum", "better"] {
        let req = request(NAMEID_TRANSIENT, cmp, false);
        assert_eq!(
            status(build(&builder(&req, ppt)).unwrap_err()),
            Some(Some(StatusCode::NoAuthnContext)),
            "{cmp}"
        );
        assert_eq!(build(&builder(&req, MFA)).is_ok(), cmp != "better", "{cmp}");
    }
    // Declaration references are read, and never met by a class.
    let mut decl = w.request.clone();
    decl.requested_authn_context = Some(RequestedAuthnContext {
        comparison: None,
        class_refs: Vec::new(),
        decl_refs: vec!["urn:example:decl:mfa".into()],
    });
    let decl = AuthnRequest::parse(decl.to_xml().as_bytes()).unwrap();
    assert_eq!(
        decl.requested_authn_context.as_ref().unwrap().decl_refs,
        ["urn:example:decl:mfa"]
    );
    assert_eq!(
        status(build(&builder(&decl, MFA)).unwrap_err()),
        Some(Some(StatusCode::NoAuthnContext))
    );
    // A Comparison outside the schema's, or a RequestedAuthnContext naming nothing: refused.
    for bad in [
        exact
            .to_xml()
            .replace("Comparison=\"exact\"", "Comparison=\"Exact\""),
        exact.to_xml().replace(
            &format!("<saml:AuthnContextClassRef>{MFA}</saml:AuthnContextClassRef>"),
            "",
        ),
    ] {
        assert!(AuthnRequest::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    // ForceAuthn: an authentication from a session older than the request is AuthnFailed; one
    // made for it (the default, now) is fine. The IdP sets when it received the request.
    let mut b = builder(&exact, MFA);
    b.authn_instant = Some(exact.issue_instant - Duration::from_secs(3600));
    assert_eq!(
        status(build(&b).unwrap_err()),
        Some(Some(StatusCode::AuthnFailed))
    );
    b.authn_instant = Some(exact.issue_instant - Duration::from_secs(30));
    assert!(build(&b).is_ok(), "within the SP's clock's allowance");
    b.fresh_authn_since = Some(exact.issue_instant);
    assert_eq!(
        status(build(&b).unwrap_err()),
        Some(Some(StatusCode::AuthnFailed)),
        "before the IdP received the request"
    );
    // An error status carries no assertion: allowed whatever it would have asserted.
    let mut b = builder(&exact, ppt);
    b.name_id = NameId::new("alice-7f3a", NAMEID_PERSISTENT);
    b.status = Status {
        code: StatusCode::Responder,
        second: Some(StatusCode::InvalidNameIdPolicy),
        message: None,
    };
    assert!(build(&b).is_ok());
    // What asks for nothing: an unspecified Format, no RequestedAuthnContext, no ForceAuthn.
    let mut loose = w.request.clone();
    loose.name_id_policy = Some(NameIdPolicy {
        format: Some(NAMEID_UNSPECIFIED.into()),
        sp_name_qualifier: None,
        allow_create: None,
    });
    let mut b = ResponseBuilder::for_request(
        &AuthnRequest::parse(loose.to_xml().as_bytes()).unwrap(),
        IDP,
        ACS,
        NameId::new("alice-7f3a", NAMEID_PERSISTENT),
    );
    b.authn_instant = Some(now() - Duration::from_secs(3600));
    assert!(build(&b).is_ok());
}

#[test]
fn authn_request_children_are_single_and_in_schema_order() {
    let mut req = AuthnRequest::new(new_id(&mut counter()), SP, now());
    req.name_id_policy = Some(NameIdPolicy {
        format: Some(NAMEID_PERSISTENT.into()),
        sp_name_qualifier: None,
        allow_create: Some(true),
    });
    req.scoping = Some(saml_core::protocol::authn_request::Scoping {
        proxy_count: None,
        idp_list: vec![IDP.into()],
        requester_ids: vec!["https://requester.example".into()],
    });
    let xml = req.to_xml();
    AuthnRequest::parse(xml.as_bytes()).unwrap();
    let issuer = format!("<saml:Issuer>{SP}</saml:Issuer>");
    let other = "<saml:Issuer>https://other.example/sp</saml:Issuer>";
    let policy_at = xml.find("<samlp:NameIDPolicy").unwrap();
    let policy_end = policy_at + xml[policy_at..].find("/>").unwrap() + 2;
    let list = xml[xml.find("<samlp:IDPList").unwrap()..]
        .split_inclusive("</samlp:IDPList>")
        .next()
        .unwrap()
        .to_owned();
    for bad in [
        // A second Issuer, after the first or after another child.
        xml.replacen(&issuer, &format!("{other}{issuer}"), 1),
        xml.replacen(&issuer, &format!("{issuer}{other}"), 1),
        format!("{}{other}{}", &xml[..policy_at], &xml[policy_at..]),
        // The Issuer after NameIDPolicy.
        format!("{}{issuer}{}", &xml[..policy_end], &xml[policy_end..]).replacen(&issuer, "", 1),
        // A second NameIDPolicy.
        xml.replacen(
            "<samlp:NameIDPolicy",
            "<samlp:NameIDPolicy Format=\"urn:x\"/><samlp:NameIDPolicy",
            1,
        ),
        // A second IDPList.
        xml.replacen(&list, &format!("{list}{list}"), 1),
    ] {
        assert_ne!(bad, xml);
        let e = AuthnRequest::parse(bad.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e:?}: {bad}");
    }
}

/// Review B1: an AuthnRequest's ID was bounded only by the 64 KiB attribute limit, and a
/// Redirect query's DEFLATE made a 63,000-byte ID cost 846 bytes to send; receivers that
/// remember request IDs (the DAME broker's replay table) kept them. At most
/// `MAX_ID_LEN` bytes, written plainly.
#[test]
fn an_authn_request_id_is_bounded() {
    use saml_core::protocol::MAX_ID_LEN;
    let ok = AuthnRequest::new(format!("_{}", "a".repeat(MAX_ID_LEN - 1)), SP, now());
    assert!(AuthnRequest::parse(ok.to_xml().as_bytes()).is_ok());
    // Review B7: an Issuer in another format than the entity format names no SP.
    let xml = ok.to_xml().replacen(
        "<saml:Issuer>",
        "<saml:Issuer Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">",
        1,
    );
    assert_ne!(xml, ok.to_xml());
    assert!(AuthnRequest::parse(xml.as_bytes()).is_err());
    for id in [
        format!("_{}", "a".repeat(MAX_ID_LEN)),
        "_a b".to_owned(),
        String::new(),
    ] {
        let bad = AuthnRequest::new(id.clone(), SP, now());
        assert!(
            AuthnRequest::parse(bad.to_xml().as_bytes()).is_err(),
            "{} bytes",
            id.len()
        );
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
        decl_refs: Vec::new(),
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
    // Review B4: a signed request must name its Destination; without one it passed for any
    // IdP's SSO URL.
    let five = Duration::from_secs(300);
    let minute = Duration::from_secs(60);
    saml_core::protocol::idp::check_signed_request(&req, &[SSO], now(), five, minute).unwrap();
    let mut bare = req.clone();
    bare.destination = None;
    assert!(check_request(&bare, &["https://other/sso"], now(), five, minute).is_ok());
    assert!(
        saml_core::protocol::idp::check_signed_request(&bare, &[SSO], now(), five, minute).is_err()
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
            .attribute_by_friendly_name("eduPersonScopedAffiliation")
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

/// A signed Response with a signed Assertion is read once shallowly (to find what is signed),
/// once per signature verification, and once into the model from the verified events. Before
/// issue 14 it was also parsed whole without verification and rebuilt per signature, a fifth
/// and sixth read.
/// Reads are counted only in builds with debug assertions (plain `cargo test`).
#[cfg(debug_assertions)]
#[test]
fn a_signed_response_is_read_once_per_signature_and_built_once() {
    use saml_core::xml::work::take_start_tags;
    let mut w = world();
    let v = validator(&w);
    let xml = build(&w, &builder(&w));
    let _ = take_start_tags();
    let ok = validate(&mut w, &v, &xml).unwrap();
    assert!(ok.response_signed && ok.assertion_signed);
    let reads = take_start_tags();

    // What each part costs on its own: one plain read, and each signature's verification.
    let mut r = saml_core::xml::Reader::new(&xml, saml_core::xml::Limits::default()).unwrap();
    while r.next().unwrap().is_some() {}
    let once = take_start_tags();
    let keys = trusted(&w.idp_key);
    let verify = |id: &str| {
        let _ = dsig::verify(&xml, &keys, &VerifyOptions::protocol(id)).unwrap();
        take_start_tags()
    };
    let (response, assertion) = (verify(&ok.response_id), verify(&ok.assertion.id));
    let bound = once + response + assertion + once;
    assert!(
        reads <= bound,
        "{reads} start tags read; a shallow read, two verifications ({response}, {assertion}) \
         and one model build need at most {bound}"
    );
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
        v.allow_unauthenticated_cbc = legacy;
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
    // Review of the eighth round, I2: replayed at the last instant the IssueInstant check
    // admits (max_issue_age + skew after it), with the assertion still valid: the cache's
    // entry must not have expired at that instant.
    let mut w = world();
    let mut v = validator(&w);
    v.allow_unsolicited = true;
    v.max_issue_age = Duration::from_secs(2 * 3600);
    let mut b = builder(&w);
    b.in_response_to = None;
    b.lifetime = Duration::from_secs(3 * 3600);
    let xml = build(&w, &b);
    validate(&mut w, &v, &xml).unwrap();
    let last = now() + v.max_issue_age + v.clock_skew;
    assert!(matches!(
        protocol_err(v.validate(&xml, last, &mut w.requests, &mut w.replay)),
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

// ---- Issue 13 (items 3, 5, 7, 8): regression tests ----

/// The Response built for `w`, unsigned, with `edit` applied, then signed (Response only).
fn edited_and_signed(w: &World, b: &ResponseBuilder, edit: impl Fn(String) -> String) -> Vec<u8> {
    let mut b = b.clone();
    b.sign_assertion = false;
    b.sign_response = false;
    let xml = edit(String::from_utf8(build(w, &b)).unwrap());
    let start = xml.find("<samlp:Response").unwrap();
    let id_at = start + xml[start..].find(" ID=\"").unwrap() + 5;
    let id = xml[id_at..id_at + xml[id_at..].find('"').unwrap()].to_owned();
    saml_core::dsig::sign(xml.as_bytes(), &w.idp_key, &{
        let mut o = saml_core::dsig::SignOptions::default();
        o.target = saml_core::dsig::Target::Id(id);
        o.placement = saml_core::dsig::Placement::AfterIssuer;
        o
    })
    .unwrap()
}

/// Finding (SAML review F10): an element the schema allows once (NameID, Subject, Conditions,
/// Issuer, SubjectConfirmationData) was read "last wins", so another processor of the same
/// signed assertion reading the first disagreed on the subject or the audience; and
/// `attribute(name)` returned an attribute only labelled so by its FriendlyName (SAML Core
/// §2.7.3.1). Now a second occurrence is refused and attributes are found by Name.
#[test]
fn elements_allowed_once_are_refused_twice_and_attributes_go_by_name() {
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    b.attributes = vec![Attribute::uri(
        "urn:oid:2.16.840.1.113730.3.1.241",
        Some("eduPersonPrincipalName"),
        &["admin@example.org"],
    )];
    let xml = edited_and_signed(&w, &b, |x| x);
    let ok = validate(&mut w, &v, &xml).unwrap();
    assert!(ok.assertion.attribute("eduPersonPrincipalName").is_none());
    assert!(
        ok.assertion
            .attribute_by_friendly_name("eduPersonPrincipalName")
            .is_some()
    );
    let twice = |x: &str, open: &str, close: &str| -> String {
        let s = x.find(open).unwrap_or_else(|| panic!("{open} in {x}"));
        let e = s + x[s..].find(close).unwrap() + close.len();
        format!("{}{}{}", &x[..e], &x[s..e], &x[e..])
    };
    for (open, close) in [
        ("<saml:NameID", "</saml:NameID>"),
        ("<saml:Subject>", "</saml:Subject>"),
        ("<saml:Conditions", "</saml:Conditions>"),
        ("<saml:SubjectConfirmationData", "/>"),
        // The Response's own Issuer and Status (review of the eighth round, I1: the last won).
        ("<saml:Issuer", "</saml:Issuer>"),
        ("<samlp:Status>", "</samlp:Status>"),
    ] {
        let mut w = world();
        let v = validator(&w);
        let b = builder(&w);
        let xml = edited_and_signed(&w, &b, |x| twice(&x, open, close));
        let e = validate(&mut w, &v, &xml).unwrap_err().to_string();
        assert!(e.contains("once") || e.contains("second"), "{open}: {e}");
    }
}

/// Finding (SAML review F9): a persistent NameID whose NameQualifier named another IdP (or
/// whose SPNameQualifier named another SP) was accepted, and handed out as is: a consumer
/// keying on (NameQualifier, SPNameQualifier, value) filed IdP A's user under B's namespace. An
/// Issuer in another format than entity was accepted too (SAML Profiles §4.1.4.2).
#[test]
fn name_qualifiers_and_issuer_formats_name_the_parties() {
    let run = |nq: Option<&str>, spnq: Option<&str>, affiliation: Option<&str>| {
        let mut w = world();
        let mut v = validator(&w);
        v.sp_name_qualifiers.extend(affiliation.map(str::to_owned));
        let mut b = builder(&w);
        b.name_id.name_qualifier = nq.map(str::to_owned);
        b.name_id.sp_name_qualifier = spnq.map(str::to_owned);
        let xml = build(&w, &b);
        validate(&mut w, &v, &xml)
    };
    run(Some(IDP), Some(SP), None).unwrap();
    run(None, None, None).unwrap();
    run(
        None,
        Some("https://affiliation.example.com"),
        Some("https://affiliation.example.com"),
    )
    .unwrap();
    for (nq, spnq) in [
        (Some("https://idp.other.example/idp"), None),
        (None, Some("https://sp.other.example/sp")),
    ] {
        assert!(
            matches!(
                protocol_err(run(nq, spnq, None)),
                ProtocolError::NameQualifierMismatch { .. }
            ),
            "{nq:?} {spnq:?}"
        );
    }
    // Review of the eighth round, S1: the check ran only for the exact persistent and
    // transient Format strings; a padded one (xs:anyURI collapses white space) with another
    // IdP's NameQualifier passed. Other formats' qualifiers are the IdP's to choose (SAML
    // Core §8.3; second review N3: the first fix refused documented IdP settings).
    let other = "https://idp.other.example/idp";
    for (format, refused) in [
        (
            Some(" urn:oasis:names:tc:SAML:2.0:nameid-format:persistent "),
            true,
        ),
        (
            Some("\turn:oasis:names:tc:SAML:2.0:nameid-format:transient\n"),
            true,
        ),
        (None, false),
        (
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"),
            false,
        ),
        (
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"),
            false,
        ),
        (
            Some("urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"),
            false,
        ),
    ] {
        let mut w = world();
        let v = validator(&w);
        let mut b = builder(&w);
        b.name_id.format = format.map(str::to_owned);
        b.name_id.name_qualifier = Some(other.to_owned());
        let xml = build(&w, &b);
        let r = validate(&mut w, &v, &xml);
        if refused {
            assert!(
                matches!(protocol_err(r), ProtocolError::NameQualifierMismatch { .. }),
                "{format:?}"
            );
        } else {
            r.unwrap();
        }
    }
    let mut w = world();
    let v = validator(&w);
    let b = builder(&w);
    let xml = edited_and_signed(&w, &b, |x| {
        x.replacen(
            "<saml:Issuer>",
            "<saml:Issuer Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">",
            1,
        )
    });
    let e = validate(&mut w, &v, &xml).unwrap_err().to_string();
    assert!(e.contains("entity format"), "{e}");
}

/// Finding (SAML review F6, second part): a validator read documents of up to 256 MiB (the
/// metadata limits) before any signature was checked; it now starts with 1 MiB, what the POST
/// binding admits.
#[test]
fn a_response_is_bounded_like_the_post_binding() {
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    b.attributes = vec![Attribute::uri(
        "urn:oid:2.5.4.3",
        None,
        &[&"x".repeat(2 << 20)],
    )];
    let xml = build(&w, &b);
    assert!(matches!(
        validate(&mut w, &v, &xml),
        Err(Error::Limit { .. })
    ));
}

/// Finding (SAML review F6): a Response was read whole, unverified, before "more than one
/// assertion" was checked: each EncryptedAssertion held a copy of its namespace scope and its
/// decoded ciphertexts (about 11x the input). Reading now stops at the second assertion.
#[test]
fn reading_stops_at_the_second_assertion() {
    let mut w = world();
    let v = validator(&w);
    let xml = String::from_utf8(build(&w, &builder(&w))).unwrap();
    let (s, e) = assertion_of(&xml);
    let many = format!("{}{}{}", &xml[..e], xml[s..e].repeat(50), &xml[e..]);
    assert!(matches!(
        protocol_err(validate(&mut w, &v, many.as_bytes())),
        ProtocolError::AssertionCount(2)
    ));
}

#[test]
fn unicode_spaces_are_not_trimmed_from_signed_values() {
    // U+00A0 NO-BREAK SPACE, U+3000 IDEOGRAPHIC SPACE, U+2028 LINE SEPARATOR, U+0085 NEXT LINE:
    // Unicode White_Space, not XML white space. `admin` + one of them is another identity.
    for ch in ['\u{a0}', '\u{3000}', '\u{2028}', '\u{85}'] {
        let mut w = world();
        let v = validator(&w);
        let mut b = builder(&w);
        b.name_id = NameId::new(&format!("admin{ch}"), NAMEID_PERSISTENT);
        b.attributes = vec![Attribute::uri(
            "urn:oid:2.5.4.3",
            None,
            &[&format!("{ch}root")],
        )];
        b.authn_context_class = format!("urn:x:ac{ch}");
        let xml = edited_and_signed(&w, &b, |x| x);
        let ok = validate(&mut w, &v, &xml).unwrap_or_else(|e| panic!("{ch:?}: {e}"));
        assert_eq!(ok.name_id().unwrap().value, format!("admin{ch}"), "{ch:?}");
        assert_eq!(
            ok.assertion.attribute("urn:oid:2.5.4.3").unwrap().values,
            [format!("{ch}root")],
            "{ch:?}"
        );
        assert_eq!(
            ok.assertion.authn_statements[0].class_ref.as_deref(),
            Some(format!("urn:x:ac{ch}").as_str())
        );
        // The audience and the issuers are compared as written: with the character added they
        // name someone else.
        let aud = format!("<saml:Audience>{SP}{ch}</saml:Audience>");
        let xml = edited_and_signed(&w, &b, |x| {
            x.replace(&format!("<saml:Audience>{SP}</saml:Audience>"), &aud)
        });
        let mut w2 = world();
        assert!(
            matches!(
                protocol_err(validate(&mut w2, &validator(&w), &xml)),
                ProtocolError::AudienceMismatch { .. } | ProtocolError::UnknownRequest(_)
            ),
            "{ch:?}"
        );
        let mut w = world();
        let v = validator(&w);
        let b = builder(&w);
        let xml = edited_and_signed(&w, &b, |x| {
            x.replace(
                &format!("<saml:Audience>{SP}</saml:Audience>"),
                &format!("<saml:Audience>{ch}{SP}</saml:Audience>"),
            )
        });
        assert!(
            matches!(
                protocol_err(validate(&mut w, &v, &xml)),
                ProtocolError::AudienceMismatch { .. }
            ),
            "{ch:?}"
        );
        let mut w = world();
        let v = validator(&w);
        let b = builder(&w);
        let xml = edited_and_signed(&w, &b, |x| {
            x.replace(
                &format!("<saml:Issuer>{IDP}</saml:Issuer>"),
                &format!("<saml:Issuer>{IDP}{ch}</saml:Issuer>"),
            )
        });
        assert!(
            matches!(
                protocol_err(validate(&mut w, &v, &xml)),
                ProtocolError::IssuerMismatch { .. }
            ),
            "{ch:?}"
        );
    }
    // XML white space around an anyURI value is collapsed by its schema type: still accepted.
    let mut w = world();
    let v = validator(&w);
    let xml = edited_and_signed(&w, &builder(&w), |x| {
        x.replace(
            &format!("<saml:Audience>{SP}</saml:Audience>"),
            &format!("<saml:Audience>\n  {SP}\t\n</saml:Audience>"),
        )
    });
    validate(&mut w, &v, &xml).unwrap();
}

#[test]
fn audience_restriction_is_required() {
    let aud = format!(
        "<saml:AudienceRestriction><saml:Audience>{SP}</saml:Audience></saml:AudienceRestriction>"
    );
    // Conditions without AudienceRestriction, and no Conditions at all.
    let cases: [&dyn Fn(String) -> String; 2] = [&|x: String| x.replace(&aud, ""), &|x: String| {
        let s = x.find("<saml:Conditions").unwrap();
        let e = x.find("</saml:Conditions>").unwrap() + "</saml:Conditions>".len();
        format!("{}{}", &x[..s], &x[e..])
    }];
    for edit in cases {
        let mut w = world();
        let v = validator(&w);
        let xml = edited_and_signed(&w, &builder(&w), edit);
        assert!(!String::from_utf8_lossy(&xml).contains("AudienceRestriction"));
        assert!(matches!(
            protocol_err(validate(&mut w, &v, &xml)),
            ProtocolError::NoAudienceRestriction
        ));
        assert_eq!(w.requests.len(), 1);
    }
    // Two restrictions: each must name the SP (SAML Core §2.5.1.4).
    let mut w = world();
    let v = validator(&w);
    let xml = edited_and_signed(&w, &builder(&w), |x| {
        x.replace(
            &aud,
            &format!("{aud}{}", aud.replace(SP, "https://other.example")),
        )
    });
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::AudienceMismatch { .. }
    ));
}

/// The signed assertion of a Response built for `w`, with `edit` applied to its XML (white
/// space inside the start tag: the signature stays valid), encrypted for the SP, in a Response
/// that is not signed.
fn encrypted_with(w: &World, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut b = builder(w);
    b.sign_response = false;
    let xml = String::from_utf8(build(w, &b)).unwrap();
    let s = xml.find("<saml:Assertion").unwrap();
    let e = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let assertion = edit(&xml[s..e]);
    let recipient = PKey::public_key_from_der(&w.sp_enc.public_key_to_der().unwrap()).unwrap();
    let enc = saml_core::protocol::xmlenc::encrypt(
        assertion.as_bytes(),
        &recipient,
        DataAlgorithm::Aes256Gcm,
        KeyTransport::RsaOaepMgf1p,
        &mut openssl_rng(),
    )
    .unwrap();
    format!("{}{enc}{}", &xml[..s], &xml[e..]).into_bytes()
}

#[test]
fn pretty_printed_decrypted_assertion_is_accepted() {
    for sep in ["\n    ", "\t", "\r\n", "  \n\t "] {
        let mut w = world();
        let v = validator(&w);
        let xml = encrypted_with(&w, |a| {
            a.replacen(
                "<saml:Assertion xmlns:saml=",
                &format!("<saml:Assertion{sep}xmlns:saml="),
                1,
            )
            .replacen(" ID=", &format!("{sep}ID="), 1)
        });
        let ok = validate(&mut w, &v, &xml).unwrap_or_else(|e| panic!("{sep:?}: {e}"));
        assert!(ok.encrypted && ok.assertion_signed);
        assert_eq!(ok.name_id().unwrap().value, "alice-7f3a");
    }
    // `xmlns:saml = "..."` (white space around `=`) and a declaration in single quotes.
    let mut w = world();
    let v = validator(&w);
    let xml = encrypted_with(&w, |a| {
        a.replacen(
            &format!(
                "<saml:Assertion xmlns:saml=\"{}\"",
                saml_core::protocol::SAML_NS
            ),
            &format!(
                "<saml:Assertion\n xmlns:saml = '{}'",
                saml_core::protocol::SAML_NS
            ),
            1,
        )
    });
    validate(&mut w, &v, &xml).unwrap();
}

#[test]
fn issue_instant_is_checked() {
    let t = saml_core::time::format_datetime_exact(now());
    let moved = |which: usize, to: SystemTime| {
        let at = saml_core::time::format_datetime_exact(to);
        let t = t.clone();
        move |x: String| {
            let needle = format!("IssueInstant=\"{t}\"");
            let i = x.match_indices(&needle).nth(which).unwrap().0;
            format!("{}IssueInstant=\"{at}\"{}", &x[..i], &x[i + needle.len()..])
        }
    };
    // 0: the Response's IssueInstant, 1: the Assertion's.
    for which in [0, 1] {
        for (to, future) in [
            (now() + Duration::from_secs(600), true),
            (now() - Duration::from_secs(3600), false),
        ] {
            let mut w = world();
            let v = validator(&w);
            let xml = edited_and_signed(&w, &builder(&w), moved(which, to));
            let e = protocol_err(validate(&mut w, &v, &xml));
            assert!(
                if future {
                    matches!(e, ProtocolError::NotYetValid { what, .. } if what.contains("IssueInstant"))
                } else {
                    matches!(e, ProtocolError::Expired { what, .. } if what.contains("IssueInstant"))
                },
                "{which} {future}: {e}"
            );
        }
    }
    // Within the skew, and within max_issue_age: accepted.
    let mut w = world();
    let v = validator(&w);
    let xml = edited_and_signed(&w, &builder(&w), moved(1, now() - Duration::from_secs(400)));
    validate(&mut w, &v, &xml).unwrap();
    // SAML review I2: an AuthnInstant after now (beyond the skew) was accepted.
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    b.authn_instant = Some(now() + Duration::from_secs(600));
    let xml = build(&w, &b);
    let e = protocol_err(validate(&mut w, &v, &xml));
    assert!(
        matches!(e, ProtocolError::NotYetValid { what, .. } if what.contains("AuthnInstant")),
        "{e}"
    );
    b.authn_instant = Some(now() + Duration::from_secs(60));
    let xml = build(&w, &b);
    validate(&mut w, &v, &xml).unwrap();
}

#[test]
fn a_huge_clock_skew_does_not_panic() {
    for skew in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let mut w = world();
        let mut v = validator(&w);
        v.clock_skew = skew;
        let xml = build(&w, &builder(&w));
        validate(&mut w, &v, &xml).unwrap();
        // Far in the future: still no panic (everything is within an unbounded skew).
        let mut w = world();
        let xml = build(&w, &builder(&w));
        let later = now() + Duration::from_secs(86400 * 365);
        let _ = v.validate(&xml, later, &mut w.requests, &mut w.replay);
        // The IdP side too.
        let _ = check_request(&w.request, &[SSO], now(), skew, skew);
        let _ = check_request(&w.request, &[SSO], now(), Duration::from_secs(60), skew);
        // An assertion lifetime whose sum does not fit (SAML review F11: it panicked).
        let mut b = builder(&w);
        b.lifetime = skew;
        let _ = build(&w, &b);
    }
}

#[test]
fn an_answer_from_another_idp_to_our_request_is_refused() {
    // The request went to IdP A; the same SP also trusts IdP B (this validator). B answers the
    // request sent to A: refused, and A's request stays outstanding.
    let mut w = world();
    let v = validator(&w);
    w.requests = OutstandingRequests::new();
    w.requests.insert(
        &w.request.id.clone(),
        "https://idp-a.example.org/idp",
        now() + Duration::from_secs(600),
        now(),
    );
    let xml = build(&w, &builder(&w));
    assert!(matches!(
        protocol_err(validate(&mut w, &v, &xml)),
        ProtocolError::UnknownRequest(_)
    ));
    assert_eq!(w.requests.len(), 1);
    // Recorded for this IdP: accepted.
    let mut w = world();
    let v = validator(&w);
    let xml = build(&w, &builder(&w));
    validate(&mut w, &v, &xml).unwrap();
}

/// A Response (not signed) carrying the assertion encrypted with `alg`, and the byte range of
/// the EncryptedData's CipherValue text.
fn cbc_response(w: &World, alg: DataAlgorithm, sign_response: bool) -> (String, usize, usize) {
    let mut b = builder(w);
    b.sign_response = sign_response;
    b.encryption = Some(Encryption {
        recipient: PKey::public_key_from_der(&w.sp_enc.public_key_to_der().unwrap()).unwrap(),
        algorithm: alg,
        transport: KeyTransport::RsaOaepMgf1p,
    });
    let xml = String::from_utf8(build(w, &b)).unwrap();
    let s = xml.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len();
    let e = s + xml[s..].find("</xenc:CipherValue>").unwrap();
    (xml, s, e)
}

fn with_cipher(xml: &str, s: usize, e: usize, edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut c = b64.decode(&xml[s..e]).unwrap();
    edit(&mut c);
    format!("{}{}{}", &xml[..s], b64.encode(&c), &xml[e..]).into_bytes()
}

#[test]
fn unauthenticated_cbc_failures_are_one_opaque_error() {
    // Issue 13 item 2: the attacker changes the last byte of the second-to-last block (the
    // plaintext's pad length byte) and the first block (the start tag): before, bad padding,
    // "not UTF-8", "not an element" and XML errors were told apart.
    let mut w = world();
    let mut v = validator(&w);
    v.allow_unauthenticated_cbc = true;
    let (xml, s, e) = cbc_response(&w, DataAlgorithm::Aes128Cbc, false);
    validate(&mut w, &v, xml.as_bytes()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut w = world();
    for delta in 1..=255u8 {
        for at in [None, Some(0usize), Some(3), Some(16)] {
            let doc = with_cipher(&xml, s, e, |c| {
                let i = at.unwrap_or(c.len() - 17);
                c[i] ^= delta;
            });
            let err = validate(&mut w, &v, &doc).unwrap_err();
            seen.insert(err.to_string());
        }
    }
    // Ciphertext too short or not a whole number of blocks: the same error.
    for cut in [1usize, 16, 17] {
        let doc = with_cipher(&xml, s, e, |c| c.truncate(c.len() - cut));
        seen.insert(validate(&mut w, &v, &doc).unwrap_err().to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [format!(
            "cannot decrypt: {}",
            saml_core::protocol::xmlenc::OPAQUE_FAILURE
        )]
    );
    assert_eq!(w.requests.len(), 1);

    // Inside a signed Response the ciphertext cannot be changed: the signature fails first.
    let mut w = world();
    let v = validator(&w);
    let (xml, s, e) = cbc_response(&w, DataAlgorithm::Aes128Cbc, true);
    validate(&mut w, &v, xml.as_bytes()).unwrap();
    let doc = with_cipher(&xml, s, e, |c| {
        let n = c.len();
        c[n - 17] ^= 1;
    });
    let mut w = world();
    assert!(matches!(
        validate(&mut w, &v, &doc),
        Err(Error::Signature(_))
    ));
}

#[test]
fn many_encrypted_keys_are_refused_before_any_private_key_operation() {
    // Issue 13 item 4: 1,943 EncryptedKeys in a 1 MiB unsigned Response cost one RSA operation
    // each. The count of private-key operations is bounded in the xmlenc unit test
    // (private_key_operations_are_bounded); here the many-key shape is refused while reading.
    let w = world();
    let (xml, _, _) = cbc_response(&w, DataAlgorithm::Aes256Gcm, false);
    let ks = xml.find("<xenc:EncryptedKey>").unwrap();
    let ke = xml.find("</xenc:EncryptedKey>").unwrap() + "</xenc:EncryptedKey>".len();
    let key = xml[ks..ke].replace(
        "<xenc:EncryptedKey>",
        &format!(
            "<xenc:EncryptedKey xmlns:xenc=\"{}\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">",
            saml_core::protocol::xmlenc::XENC_NS
        ),
    );
    let at = xml.find("</saml:EncryptedAssertion>").unwrap();
    // (1,943 keys no longer fit the validator's 1 MiB document limit: 1,000 do.)
    for n in [saml_core::protocol::xmlenc::MAX_ENCRYPTED_KEYS, 1000] {
        let doc = format!("{}{}{}", &xml[..at], key.repeat(n), &xml[at..]);
        let mut w2 = World {
            idp_key: w.idp_key.clone(),
            sp_enc: w.sp_enc.clone(),
            request: w.request.clone(),
            requests: {
                let mut r = OutstandingRequests::new();
                r.insert(&w.request.id, IDP, now() + Duration::from_secs(600), now());
                r
            },
            replay: MemoryReplayCache::new(),
        };
        let v = validator(&w2);
        let err = validate(&mut w2, &v, doc.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(ProtocolError::Malformed { message, .. }) if message.contains("EncryptedKey")),
            "{n}: {err}"
        );
    }
}

/// A store two SP nodes share (SAML review F4): each handle waits in its early-exit read until
/// both nodes have read, so both validations pass every check before either writes.
#[derive(Clone)]
struct Shared {
    replay: std::sync::Arc<std::sync::Mutex<MemoryReplayCache>>,
    requests: std::sync::Arc<std::sync::Mutex<OutstandingRequests>>,
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Shared {
    fn new(requests: OutstandingRequests) -> Self {
        Shared {
            replay: Default::default(),
            requests: std::sync::Arc::new(std::sync::Mutex::new(requests)),
            arrived: Default::default(),
        }
    }

    /// Both nodes read before either goes on (a bounded wait, so a failing test cannot hang).
    fn rendezvous(&self) {
        use std::sync::atomic::Ordering;
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.arrived.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl saml_core::protocol::ReplayCache for Shared {
    fn seen(&self, issuer: &str, id: &str, now: SystemTime) -> bool {
        let seen = self.replay.lock().unwrap().seen(issuer, id, now);
        self.rendezvous();
        seen
    }
    fn insert_if_absent(
        &mut self,
        issuer: &str,
        id: &str,
        until: SystemTime,
        now: SystemTime,
    ) -> bool {
        self.replay
            .lock()
            .unwrap()
            .insert_if_absent(issuer, id, until, now)
    }
}

impl saml_core::protocol::RequestTracker for Shared {
    fn is_outstanding(&self, id: &str, idp: &str, now: SystemTime) -> bool {
        self.requests.lock().unwrap().is_outstanding(id, idp, now)
    }
    fn consume(&mut self, id: &str, idp: &str, now: SystemTime) -> bool {
        self.requests.lock().unwrap().consume(id, idp, now)
    }
}

/// Validates each Response on its own thread, as two nodes sharing `store` would.
fn on_two_nodes(
    v: &ResponseValidator,
    store: &Shared,
    xml: [&[u8]; 2],
) -> Vec<Result<saml_core::protocol::ValidatedResponse, Error>> {
    std::thread::scope(|s| {
        let nodes: Vec<_> = xml
            .into_iter()
            .map(|x| {
                let (mut requests, mut replay) = (store.clone(), store.clone());
                s.spawn(move || v.validate(x, now(), &mut requests, &mut replay))
            })
            .collect();
        nodes.into_iter().map(|n| n.join().unwrap()).collect()
    })
}

fn outcomes(results: &[Result<saml_core::protocol::ValidatedResponse, Error>]) -> String {
    let each: Vec<_> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .map_or_else(ToString::to_string, |_| "accepted".into())
        })
        .collect();
    each.join("; ")
}

/// Finding (SAML review F4): the replay cache and the request tracker were read in the checks
/// and written after them, each write saying nothing of whether it came first. Two SP nodes
/// sharing one store, given one bearer Response at the same moment (a captured Response, or a
/// double submit), both read "not seen" and "outstanding", and both accepted it: the assertion
/// was used twice (SAML Profiles §4.1.4.5). The writes are now atomic steps that report whether
/// they were first, and the second node refuses.
#[test]
fn two_nodes_sharing_a_store_accept_a_bearer_assertion_once() {
    // One unsolicited Response posted to both nodes: the replay cache decides.
    let w = world();
    let mut v = validator(&w);
    v.allow_unsolicited = true;
    let mut b = builder(&w);
    b.in_response_to = None;
    let xml = build(&w, &b);
    let store = Shared::new(OutstandingRequests::new());
    let results = on_two_nodes(&v, &store, [&xml, &xml]);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{}",
        outcomes(&results)
    );
    let refused = results.into_iter().find(|r| r.is_err()).unwrap();
    assert!(matches!(protocol_err(refused), ProtocolError::Replayed(_)));
    // Two Responses (two assertions) answering one request, one on each node: the request
    // tracker decides.
    let w = world();
    let v = validator(&w);
    let (a, b) = (build(&w, &builder(&w)), build(&w, &builder(&w)));
    let store = Shared::new(w.requests.clone());
    let results = on_two_nodes(&v, &store, [&a, &b]);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{}",
        outcomes(&results)
    );
    let refused = results.into_iter().find(|r| r.is_err()).unwrap();
    assert!(matches!(
        protocol_err(refused),
        ProtocolError::UnknownRequest(_)
    ));
}

/// Finding (SAML review F5, the core's part): an error status was reported the same whether
/// the IdP signed it for our request or anyone posted it, so a caller could not tell a forged
/// failure (anyone who learnt a request ID) from the IdP's refusal. `authentic` tells them
/// apart.
#[test]
fn an_error_status_says_whether_the_idp_answered_our_request() {
    let status = |b: &mut ResponseBuilder| {
        b.status = Status {
            code: StatusCode::Responder,
            second: Some(StatusCode::AuthnFailed),
            message: Some("wrong password".into()),
        };
    };
    let authentic = |w: &mut World, v: &ResponseValidator, xml: &[u8]| {
        let before = w.requests.len();
        let r = protocol_err(validate(w, v, xml));
        assert_eq!(w.requests.len(), before, "a status changes no state");
        match r {
            ProtocolError::Status { authentic, .. } => authentic,
            other => panic!("expected a status error, got {other:?}"),
        }
    };
    // Signed by the IdP, answering our outstanding request: the IdP's refusal.
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    status(&mut b);
    let xml = build(&w, &b);
    assert!(authentic(&mut w, &v, &xml));
    // Unsigned: anyone could have posted it.
    let mut b = builder(&w);
    status(&mut b);
    b.sign_response = false;
    let xml = build(&w, &b);
    assert!(!authentic(&mut w, &v, &xml));
    // Signed, but answering a request we do not have (another SP's, or an old one).
    let mut b = builder(&w);
    status(&mut b);
    b.in_response_to = Some("_not-ours".into());
    let xml = build(&w, &b);
    assert!(!authentic(&mut w, &v, &xml));
    // Signed by a key we do not trust for this IdP: refused as a signature error.
    let mut other = world();
    other.request = w.request.clone();
    let mut b = builder(&other);
    status(&mut b);
    let xml = build(&other, &b);
    assert!(matches!(
        validate(&mut w, &v, &xml),
        Err(Error::Signature(_))
    ));
}

/// Review S5 (session 28): an unsigned Response's StatusMessage (up to the reader's text
/// limit) was shown whole and raw in the error, before any signature was checked: an ACS
/// logging refusals wrote forged log lines of a megabyte. At most 256 characters, escaped,
/// are shown; the field keeps the whole message. Review S7: a second top-level StatusCode
/// replaced the first (Requester then Success read as Success); it is refused.
#[test]
fn an_unauthenticated_status_is_shown_bounded_and_read_once() {
    let mut w = world();
    let v = validator(&w);
    // An unsigned Response with status Requester and `message`.
    let unsigned = |w: &World, message: &str| {
        let mut b = builder(w);
        b.status = Status {
            code: StatusCode::Requester,
            second: None,
            message: Some(message.into()),
        };
        b.sign_response = false;
        build(w, &b)
    };
    let forged = format!(
        "{}\n2026-12-07 INFO admin logged in\n{}",
        "x".repeat(100),
        "y".repeat(100_000)
    );
    let xml = unsigned(&w, &forged);
    let e = validate(&mut w, &v, &xml).unwrap_err();
    let shown = e.to_string();
    assert!(shown.len() < 1024, "{} bytes shown", shown.len());
    assert!(!shown.contains('\n'), "{shown}");
    match protocol_err(Err(e)) {
        ProtocolError::Status { message, .. } => {
            assert_eq!(message.as_deref(), Some(forged.as_str()))
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    // A short message with a bidirectional override or a line separator is escaped (G4).
    for odd in ["ok \u{202E}nimda", "ok\u{2028}INFO admin logged in"] {
        let xml = unsigned(&w, odd);
        let shown = validate(&mut w, &v, &xml).unwrap_err().to_string();
        assert!(!shown.contains(['\u{202E}', '\u{2028}']), "{shown:?}");
    }
    // A short plain message is shown as written.
    let mut b = builder(&w);
    b.status = Status {
        code: StatusCode::Responder,
        second: Some(StatusCode::AuthnFailed),
        message: Some("wrong password".into()),
    };
    let xml = build(&w, &b);
    assert!(
        validate(&mut w, &v, &xml)
            .unwrap_err()
            .to_string()
            .ends_with("AuthnFailed: wrong password")
    );

    // Two top-level codes, Requester then Success (the Response unsigned, its assertion
    // signed): read as Success before, refused as malformed now.
    let mut w = world();
    let v = validator(&w);
    let mut b = builder(&w);
    b.sign_response = false;
    b.sign_assertion = true;
    let xml = String::from_utf8(build(&w, &b)).unwrap();
    let at = xml.find("<samlp:StatusCode").unwrap();
    let twice = format!(
        "{}<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Requester\"/>{}",
        &xml[..at],
        &xml[at..]
    );
    let r = protocol_err(validate(&mut w, &v, twice.as_bytes()));
    assert!(matches!(r, ProtocolError::Malformed { .. }), "{r:?}");
    assert!(validate(&mut w, &v, xml.as_bytes()).is_ok(), "one code");
}

/// Review S3 (session 28): a Response's and an Assertion's `ID` were bounded only by the
/// reader's attribute limit (64 KiB), and the assertion's is kept in the replay cache for an
/// hour or more: a Response ID and an Assertion ID are held to `MAX_ID_LEN` (256 bytes) and
/// plain characters, as an AuthnRequest's are.
#[test]
fn response_and_assertion_ids_are_bounded() {
    for element in ["saml:Assertion", "samlp:Response"] {
        let mut w = world();
        let v = validator(&w);
        let b = builder(&w);
        let xml = String::from_utf8(build(&w, &b)).unwrap();
        // The element's ID, everywhere it is written (its signature's Reference too: the
        // signature value then fails, which is not what refuses it).
        let at = xml.find(&format!("<{element} ")).unwrap();
        let id_at = at + xml[at..].find(" ID=\"").unwrap() + 5;
        let id = &xml[id_at..id_at + xml[id_at..].find('"').unwrap()];
        let xml = xml
            .replace(id, &format!("_{}", "a".repeat(300)))
            .into_bytes();
        let name = element;
        let r = protocol_err(validate(&mut w, &v, &xml));
        assert!(
            matches!(r, ProtocolError::Malformed { .. }),
            "{name}: {r:?}"
        );
        assert!(w.replay.is_empty(), "{name}: nothing remembered");
    }
}

/// Review G6 (session 28): a NameID value was bounded only by the reader's text limit (1 MiB),
/// and callers key sessions, rate limits and logs on it. At most `MAX_NAME_ID` (4 KiB) is
/// taken.
#[test]
fn a_name_id_is_bounded() {
    for (len, ok) in [(MAX_NAME_ID, true), (MAX_NAME_ID + 1, false)] {
        let mut w = world();
        let v = validator(&w);
        let mut b = builder(&w);
        b.name_id = NameId::new(&"n".repeat(len), NAMEID_TRANSIENT);
        let xml = build(&w, &b);
        let r = validate(&mut w, &v, &xml);
        if ok {
            assert_eq!(r.unwrap().name_id().unwrap().value.len(), len);
        } else {
            let e = protocol_err(r);
            assert!(matches!(e, ProtocolError::Malformed { .. }), "{e:?}");
        }
    }
}
