//! RFC 6595 exchanges between our client and server, in memory, with an IdP built from
//! saml-core and IdPs resolved from metadata; every malformed message and every outcome, one
//! test per fault, through the two-party harness in `harness/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{ACS, IDP, Idp, RP, SSO, Scenario, config, idp, idp_answer, now, started};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use saml_core::protocol::{Attribute, MemoryReplayCache, openssl_random};
use saml_metadata::builder::{IdpBuilder, RoleBuilder as _};
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};
use sasl_saml20::client::{Client, RedirectPolicy};
use sasl_saml20::gs2::{InitialResponse, escape_saslname, idp_identifier, unescape_saslname};
use sasl_saml20::resolver::{
    IdpResolver, MetadataResolver, ResolvedIdp, ResolverOptions, StaticResolver,
};
use sasl_saml20::server::{IdentityPolicy, Server, ServerConfig};
use sasl_saml20::{Error, ErrorKind};

#[test]
fn full_exchange_with_the_initial_response() {
    let i = idp();
    let o = Scenario::new(&i).run().unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "alice"));
    assert_eq!(o.identity, o.subject);
    assert_eq!(
        o.identity.scoped_name(),
        None,
        "an unscoped name needs its IdP"
    );
}

#[test]
fn full_exchange_after_an_empty_challenge() {
    // Servers that cannot send an initial challenge: the empty-challenge start.
    let i = idp();
    assert!(Scenario::new(&i).empty_challenge_first().run().is_ok());
}

#[test]
fn an_authzid_equal_to_the_subject_is_allowed_by_default() {
    let i = idp();
    assert_eq!(
        Scenario::new(&i)
            .authzid("alice")
            .run()
            .unwrap()
            .identity
            .qualified(),
        (IDP, "alice")
    );
}

#[test]
fn another_authzid_is_refused_as_invalid_authzid() {
    let i = idp();
    let e = Scenario::new(&i).authzid("admin").run().unwrap_err();
    assert!(
        matches!(&e, Error::AuthzidRefused { subject, authzid }
            if subject.qualified() == (IDP, "alice") && authzid == "admin"),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "invalid-authzid");
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[test]
fn the_authorization_policy_may_allow_another_authzid() {
    let i = idp();
    let cfg = (*config(&i)).clone().with_authorize(Arc::new(|n, a| {
        n.qualified() == (IDP, "alice") && a == "room-admin"
    }));
    let o = Scenario::new(&i)
        .config(Arc::new(cfg))
        .authzid("room-admin")
        .run()
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "room-admin"));
    assert_eq!(o.subject.qualified(), (IDP, "alice"));
}

#[test]
fn the_initial_response_is_byte_identical_to_rfc_6595() {
    // RFC 6595 §5 example: "n,,example.org" (base64 biwsZXhhbXBsZS5vcmc=).
    let mut c = Client::new(None, "example.org").unwrap();
    assert_eq!(c.initial_response().unwrap(), b"n,,example.org");
    let mut c = Client::new(Some("me,=you"), "Bücher.Example").unwrap();
    assert_eq!(
        c.initial_response().unwrap(),
        b"n,a=me=2C=3Dyou,xn--bcher-kva.example"
    );
    assert_eq!(
        InitialResponse::parse(b"n,a=me=2C=3Dyou,xn--bcher-kva.example")
            .unwrap()
            .authzid
            .as_deref(),
        Some("me,=you")
    );
    assert_eq!(
        unescape_saslname(&escape_saslname("a=b,c")).unwrap(),
        "a=b,c"
    );
}

#[test]
fn malformed_initial_responses() {
    for (bad, why) in [
        (&b"y,,example.org"[..], "'y'"),
        (b"p=tls-unique,,example.org", "channel binding"),
        (b"F,n,,example.org", "nonstd"),
        (b"n,example.org", "gs2 header"),
        (b"n,,", "empty"),
        (b"n,,https://idp.example.org/", "not a domain"),
        (b"n,,example", "not a domain"),
        (b"n,,exa mple.org", "not a domain"),
        (b"n,,user@example.org", "not a domain"),
        (b"n,,-bad-.example.org", "domain"),
        (b"n,,10.0.0.1", "not a domain"),
        (b"n,a=,example.org", "empty authzid"),
        (b"n,a=x=2Cy=41,example.org", "escape"),
        (b"n,a=x=,example.org", "escape"),
        (b"n,b=x,example.org", "authzid field"),
        (b"n,,example.org\0", "NUL"),
        (b"n,,\xff.org", "UTF-8"),
    ] {
        let e = InitialResponse::parse(bad).unwrap_err();
        assert!(matches!(e, Error::Malformed(_)), "{bad:?}");
        assert!(e.to_string().contains(why), "{bad:?}: {e}");
        assert_eq!(e.xmpp_condition(), "malformed-request");
        // The server fails the session on it.
        let i = idp();
        let mut s = Server::new(config(&i));
        assert!(s.start(Some(bad), now(), &mut openssl_random).is_err());
        assert!(s.handle_response(b"=", now(), &mut openssl_random).is_err());
    }
    assert_eq!(idp_identifier("Example.ORG.").unwrap(), "example.org");
}

#[test]
fn an_unknown_idp_domain_is_not_authorized() {
    let i = idp();
    let mut s = Server::new(config(&i));
    let e = s
        .start(Some(b"n,,other.example"), now(), &mut openssl_random)
        .unwrap_err();
    assert!(matches!(&e, Error::UnknownIdp { domain } if domain == "other.example"));
    assert_eq!(e.xmpp_condition(), "not-authorized");
}

/// Review S8 (session 28): nothing binds the browser that completes the login to the SASL
/// client; `force_authn` makes the IdP prompt the user again (`ForceAuthn="true"` in the
/// AuthnRequest the challenge carries), and the default asks for nothing.
#[test]
fn force_authn_is_asked_for_when_configured() {
    let i = idp();
    for force in [false, true] {
        let cfg = Arc::new(ServerConfig::clone(&config(&i)).with_force_authn(force));
        let mut s = Server::new(cfg);
        let challenge = s
            .start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap();
        let url = String::from_utf8(challenge).unwrap();
        let m = saml_core::bindings::redirect::decode(
            &url[url.find('?').unwrap()..],
            saml_core::bindings::redirect::DEFAULT_MAX_INFLATED,
        )
        .unwrap();
        let req = saml_core::protocol::AuthnRequest::parse(&m.xml).unwrap();
        assert_eq!(
            req.force_authn,
            force.then_some(true),
            "force_authn {force}"
        );
    }
}

/// Review G7 (session 28): an IdP that does not honour ForceAuthn answers from its session,
/// without a prompt. With `force_authn`, an assertion whose AuthnInstant is earlier than the
/// request (less the clock skew) fails the session; one made after the request completes it.
#[test]
fn force_authn_refuses_an_earlier_authentication() {
    let i = idp();
    let cfg = Arc::new(ServerConfig::clone(&config(&i)).with_force_authn(true));
    for (ago, ok) in [(Duration::from_secs(3600), false), (Duration::ZERO, true)] {
        let mut x = Scenario::new(&i).config(cfg.clone()).begin().unwrap();
        x.send_equals().unwrap();
        // An IdP that does not honour it: it answers as if not asked.
        let mut req = harness::request_in(&x.url);
        assert_eq!(req.force_authn, Some(true));
        req.force_authn = None;
        let mut b = saml_core::protocol::idp::ResponseBuilder::for_request(
            &req,
            IDP,
            ACS,
            saml_core::protocol::NameId::new("alice", saml_core::protocol::NAMEID_PERSISTENT),
        );
        b.authn_instant = Some(now() - ago);
        let xml = b.build(&i.key, now(), &mut openssl_random).unwrap();
        let r = x.deliver(&xml, now());
        assert_eq!(r.is_ok(), ok, "{ago:?}: {r:?}");
        assert!(!x.server.awaits_saml_response(), "{ago:?}: final");
    }
}

/// The XMPP condition is decided by variant: an unknown IdP whose domain mentions "authzid" is
/// not an authzid refusal (it was, when the condition was found by searching the message).
#[test]
fn an_unknown_idp_named_authzid_is_not_an_authzid_refusal() {
    let i = idp();
    let mut s = Server::new(config(&i));
    let e = s
        .start(Some(b"n,,authzid.example"), now(), &mut openssl_random)
        .unwrap_err();
    assert!(matches!(e, Error::UnknownIdp { .. }));
    assert_eq!(e.xmpp_condition(), "not-authorized");
}

#[test]
fn the_last_client_message_must_be_exactly_equals() {
    let i = idp();
    for bad in [&b""[..], b"==", b"= ", b"x"] {
        let (mut s, _) = started(config(&i));
        assert!(
            matches!(
                s.handle_response(bad, now(), &mut openssl_random),
                Err(Error::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_saml_response_before_equals_is_misuse() {
    let i = idp();
    let (mut s, url) = started(config(&i));
    let xml = idp_answer(&i, &url, "alice");
    let e = s
        .handle_saml_response(&xml, now(), &mut MemoryReplayCache::new())
        .unwrap_err();
    assert!(matches!(e, Error::State(_)));
    assert_eq!(e.kind(), ErrorKind::Misuse);
    // Misuse changes nothing: the session goes on.
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    assert!(
        s.handle_saml_response(&xml, now(), &mut MemoryReplayCache::new())
            .is_ok()
    );
}

#[test]
fn a_saml_response_after_the_deadline_times_out() {
    let i = idp();
    let (mut s, url) = started(config(&i));
    let xml = idp_answer(&i, &url, "alice");
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    assert_eq!(s.deadline(), Some(now() + Duration::from_secs(300)));
    let late = now() + Duration::from_secs(301);
    assert!(matches!(
        s.handle_saml_response(&xml, late, &mut MemoryReplayCache::new()),
        Err(Error::Timeout)
    ));
}

#[test]
fn another_sessions_response_fails_saml_validation() {
    // InResponseTo mismatch.
    let i = idp();
    let (mut a, url_a) = started(config(&i));
    let (mut b, _) = started(config(&i));
    a.handle_response(b"=", now(), &mut openssl_random).unwrap();
    b.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let for_a = idp_answer(&i, &url_a, "alice");
    let e = b
        .handle_saml_response(&for_a, now(), &mut MemoryReplayCache::new())
        .unwrap_err();
    assert!(matches!(e, Error::Saml(_)) && e.xmpp_condition() == "not-authorized");
    assert!(
        a.handle_saml_response(&for_a, now(), &mut MemoryReplayCache::new())
            .is_ok()
    );
}

#[test]
fn a_response_signed_by_another_key_fails() {
    let i = idp();
    let mut x = Scenario::new(&i).begin().unwrap();
    x.send_equals().unwrap();
    let forged = idp_answer(&idp(), &x.url, "alice");
    assert!(matches!(x.deliver(&forged, now()), Err(Error::Saml(_))));
    assert!(!x.server.is_authenticated());
    // The failed session still names its request.
    assert!(x.server.request_id().is_some());
}

fn check_redirect(challenge: &[u8], policy: RedirectPolicy) -> Result<(), Error> {
    let mut c = Client::new(None, "example.org")
        .unwrap()
        .with_policy(policy);
    c.initial_response().unwrap();
    c.handle_challenge(challenge).map(drop)
}

const GOOD: &str = "https://idp.example.org/sso?SAMLRequest=abc";

#[test]
fn the_client_opens_an_https_redirect() {
    assert!(check_redirect(GOOD.as_bytes(), RedirectPolicy::default()).is_ok());
}

#[test]
fn the_client_refuses_an_http_redirect_by_default() {
    let e = check_redirect(
        b"http://idp.example.org/sso?SAMLRequest=abc",
        RedirectPolicy::default(),
    )
    .unwrap_err();
    assert!(matches!(&e, Error::InsecureRedirect { scheme } if scheme == "http"));
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[test]
fn the_client_opens_an_http_redirect_when_its_policy_allows() {
    assert!(
        check_redirect(
            b"http://127.0.0.1:8080/sso?SAMLRequest=abc",
            RedirectPolicy::default().with_require_https(false)
        )
        .is_ok()
    );
}

#[test]
fn the_client_refuses_malformed_redirects() {
    for bad in [
        &b"not a url"[..],
        b"https://idp.example.org/sso",
        b"https://idp.example.org/sso?RelayState=x",
        b"javascript:alert(1)",
        b"\xff",
    ] {
        assert!(
            check_redirect(bad, RedirectPolicy::default()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn the_client_refuses_an_oversized_redirect() {
    assert!(
        check_redirect(
            format!("{GOOD}&x={}", "a".repeat(20_000)).as_bytes(),
            RedirectPolicy::default()
        )
        .is_err()
    );
}

#[test]
fn the_client_refuses_a_non_empty_first_challenge_without_an_initial_response() {
    let mut c = Client::new(None, "example.org").unwrap();
    assert!(
        c.handle_challenge(b"https://x.example/?SAMLRequest=a")
            .is_err()
    );
}

#[test]
fn the_client_refuses_a_second_challenge() {
    let mut c = Client::new(None, "example.org").unwrap();
    c.initial_response().unwrap();
    let _ = c.handle_challenge(GOOD.as_bytes()).unwrap();
    assert!(c.handle_challenge(GOOD.as_bytes()).is_err());
    // The URL handed out is still known.
    assert_eq!(
        c.redirect_url(),
        Some("https://idp.example.org/sso?SAMLRequest=abc")
    );
}

#[test]
fn the_client_refuses_a_url_as_idp_and_an_empty_authzid() {
    let e = Client::new(None, "https://idp.example.org").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse);
    assert!(Client::new(Some(""), "example.org").is_err());
}

fn cert(pkey: &PKey<openssl::pkey::Private>) -> Vec<u8> {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "idp").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(pkey).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(pkey, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let c: X509 = b.build();
    c.to_der().unwrap()
}

#[test]
fn metadata_resolver() {
    let k = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let der = cert(&k);
    let a = EntityDescriptor::builder("https://idp.uni-a.example/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(der.clone())
                .scope("uni-a.example", false)
                .scope("^.*\\.a\\.example$", true)
                .sso(Binding::HttpRedirect, "https://idp.uni-a.example/sso"),
        )
        .build()
        .unwrap();
    let b = EntityDescriptor::builder("https://idp.uni-b.example/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(der.clone())
                .domain_hint("uni-b.example")
                .sso(Binding::HttpRedirect, "https://idp.uni-b.example/sso"),
        )
        .build()
        .unwrap();
    // No Redirect endpoint: not usable. Same scope as a: ambiguity.
    let c = EntityDescriptor::builder("https://idp.c.example/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(der.clone())
                .scope("c.example", false)
                .sso(Binding::HttpPost, "https://idp.c.example/sso"),
        )
        .build()
        .unwrap();
    let d = EntityDescriptor::builder("https://idp.d.example/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(der)
                .scope("shared.example", false)
                .scope("uni-b.example", false)
                .sso(Binding::HttpRedirect, "https://idp.d.example/sso"),
        )
        .build()
        .unwrap();
    let e = EntityDescriptor::builder("https://idp.e.example/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(cert(&k))
                .scope("shared.example", false)
                .sso(Binding::HttpRedirect, "https://idp.e.example/sso"),
        )
        .build()
        .unwrap();
    let r = MetadataResolver::new([&a, &b, &c, &d, &e]);
    assert_eq!(r.len(), 4);
    assert_eq!(
        r.resolve("uni-a.example").unwrap().entity_id,
        "https://idp.uni-a.example/idp"
    );
    assert_eq!(
        r.resolve("uni-a.example").unwrap().sso_url,
        "https://idp.uni-a.example/sso"
    );
    // d's Scope and b's hint claim the same domain: ambiguous (a Scope no longer beats another
    // IdP's hint); matches are exact (no subdomains by default).
    assert!(r.resolve("uni-b.example").is_none());
    assert!(r.resolve("physics.uni-b.example").is_none());
    assert!(r.resolve("physics.uni-a.example").is_none());
    // Only literal Scopes are the IdP's scopes for the identity policy.
    assert_eq!(
        r.resolve("uni-a.example").unwrap().scopes,
        ["uni-a.example"]
    );
    assert!(r.resolve("c.example").is_none());
    assert!(r.resolve("shared.example").is_none(), "two IdPs claim it");
    assert!(
        r.resolve("x.a.example").is_none(),
        "regexp scopes are not used"
    );
}

/// Two trusted IdPs, each with its own scope, for the identity-policy tests.
struct Federation {
    a: Idp,
    b: Idp,
}

const IDP_A: &str = "https://idp.uni-a.example/idp";
const IDP_B: &str = "https://idp.uni-b.example/idp";

fn federation_config(f: &Federation, policy: IdentityPolicy) -> Arc<ServerConfig> {
    let mut r = StaticResolver::new();
    for (domain, entity, i) in [
        ("uni-a.example", IDP_A, &f.a),
        ("uni-b.example", IDP_B, &f.b),
    ] {
        r.insert(
            domain,
            ResolvedIdp {
                entity_id: entity.into(),
                sso_url: SSO.into(),
                keys: i.keys.clone(),
                scopes: Vec::new(),
                wants_signed_requests: false,
            },
        )
        .unwrap();
    }
    // Any subject may act as any authzid here: only the identity policy decides.
    Arc::new(
        ServerConfig::new(RP, ACS, Arc::new(r))
            .with_identity_policy(policy)
            .with_authorize(Arc::new(|_, _| true)),
    )
}

fn federation() -> Federation {
    Federation { a: idp(), b: idp() }
}

/// The client names uni-b; uni-b's IdP asserts `user` (for `authzid`).
fn at_uni_b<'a>(f: &'a Federation, policy: IdentityPolicy, user: &str) -> Scenario<'a> {
    Scenario::new(&f.b)
        .config(federation_config(f, policy))
        .domain("uni-b.example")
        .signed_by(&f.b, IDP_B)
        .user(user)
}

/// The client names uni-a; uni-a's IdP asserts `user`.
fn at_uni_a<'a>(f: &'a Federation, policy: IdentityPolicy, user: &str) -> Scenario<'a> {
    Scenario::new(&f.a)
        .config(federation_config(f, policy))
        .domain("uni-a.example")
        .signed_by(&f.a, IDP_A)
        .user(user)
}

// Item 8 (issue 12): with several trusted IdPs, one IdP asserting a name in another
// organisation's scope was accepted (as the subject, and as an authzid).

#[test]
fn an_idp_may_not_assert_a_subject_in_another_scope() {
    let f = federation();
    // uni-b's IdP asserts alice@uni-a.example: refused, typed.
    let e = at_uni_b(&f, IdentityPolicy::default(), "alice@uni-a.example")
        .run()
        .unwrap_err();
    assert!(
        matches!(&e, Error::OutOfScope { idp, name, authzid: false, .. }
            if idp == IDP_B && name == "alice@uni-a.example"),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "not-authorized");
}

#[test]
fn an_idp_may_not_authorize_an_authzid_in_another_scope() {
    let f = federation();
    let e = at_uni_b(&f, IdentityPolicy::default(), "bob@uni-b.example")
        .authzid("alice@uni-a.example")
        .run()
        .unwrap_err();
    assert!(
        matches!(&e, Error::OutOfScope { authzid: true, .. }),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "invalid-authzid");
}

#[test]
fn scopes_match_exactly() {
    // A subdomain, an empty or a bad domain is refused.
    let f = federation();
    for user in [
        "alice@cs.uni-a.example",
        "alice@",
        "alice@uni-a.example@evil",
        "alice@ex ample",
        // In its own scope, but with another domain before it (read at the first '@', the
        // scope would be evil.example's), or no user at all.
        "alice@evil.example@uni-a.example",
        "alice@uni-a.example@uni-a.example",
        "@uni-a.example",
    ] {
        assert!(
            matches!(
                at_uni_a(&f, IdentityPolicy::default(), user).run(),
                Err(Error::OutOfScope { .. })
            ),
            "{user}"
        );
    }
}

/// Finding (SAML review F1): the scope rule was applied to the NameID and the authzid only;
/// the attributes came back as the IdP sent them, so uni-b's IdP could release
/// `admin@uni-a.example` as eduPersonPrincipalName (and uni-a's staff affiliation) to an
/// application keying accounts or rights on them. Values outside the asserting IdP's scopes are
/// now dropped, whatever the identity policy; other attributes are untouched.
#[test]
fn scoped_attribute_values_outside_the_idps_scopes_are_dropped() {
    const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
    const AFFILIATION: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9";
    const MAIL: &str = "urn:oid:0.9.2342.19200300.100.1.3";
    const LEGACY_EPPN: &str = "urn:mace:dir:attribute-def:eduPersonPrincipalName";
    let f = federation();
    for policy in [IdentityPolicy::default(), IdentityPolicy::AnyName] {
        let o = at_uni_b(&f, policy, "bob@uni-b.example")
            .attribute(Attribute::uri(
                EPPN,
                Some("eduPersonPrincipalName"),
                &[
                    "admin@uni-a.example",
                    "bob@uni-b.example",
                    "bob@faß.example",
                ],
            ))
            .attribute(Attribute::uri(
                AFFILIATION,
                None,
                &["staff@uni-a.example", "staff@uni-b.example@uni-a.example"],
            ))
            .attribute(Attribute::uri(MAIL, None, &["admin@uni-a.example"]))
            // The same attributes under their SAML 1 names and in capitals (sasl review S1).
            .attribute(Attribute::uri(
                LEGACY_EPPN,
                None,
                &["admin@uni-a.example", "bob@uni-b.example"],
            ))
            .attribute(Attribute::uri(
                "urn:mace:dir:attribute-def:eduPersonScopedAffiliation",
                None,
                &["staff@uni-a.example"],
            ))
            .attribute(Attribute::uri(
                &EPPN.to_uppercase(),
                None,
                &["admin@uni-a.example"],
            ))
            .run()
            .unwrap();
        let values = |name: &str| -> Option<Vec<String>> {
            o.attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.values.clone())
        };
        assert_eq!(values(EPPN), Some(vec!["bob@uni-b.example".to_owned()]));
        assert_eq!(values(AFFILIATION), None, "no value left: left out");
        assert_eq!(values(MAIL), Some(vec!["admin@uni-a.example".to_owned()]));
        assert_eq!(
            values(LEGACY_EPPN),
            Some(vec!["bob@uni-b.example".to_owned()])
        );
        assert_eq!(
            values("urn:mace:dir:attribute-def:eduPersonScopedAffiliation"),
            None
        );
        assert_eq!(values(&EPPN.to_uppercase()), None);
    }
}

/// Review S1 (session 28): the check knew seven names; eduPersonPrincipalNamePrior (which SPs
/// use to link accounts), the basic names a SimpleSAMLphp IdP sends by default and any
/// `FriendlyName` went through, so uni-b's IdP could assert `admin@uni-a.example` under them.
/// One list now (saml-core's, the DAME conversion rules' too), matched by `Name` or
/// `FriendlyName`.
#[test]
fn scoped_attributes_are_checked_by_every_name_they_go_by() {
    const PRIOR: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.12";
    const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
    let basic = |name: &str, friendly: Option<&str>, values: &[&str]| Attribute {
        name: name.to_owned(),
        name_format: Some("urn:oasis:names:tc:SAML:2.0:attrname-format:basic".to_owned()),
        friendly_name: friendly.map(str::to_owned),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let f = federation();
    let o = at_uni_b(&f, IdentityPolicy::default(), "bob@uni-b.example")
        .attribute(Attribute::uri(PRIOR, None, &["alice@uni-a.example"]))
        .attribute(basic(
            "eduPersonPrincipalName",
            None,
            &["admin@uni-a.example"],
        ))
        .attribute(basic(
            "urn:x:custom",
            Some(" eppn "),
            &["admin@uni-a.example"],
        ))
        .attribute(Attribute::uri(EPPN, None, &["bob@uni-b.example"]))
        .attribute(basic("mail", None, &["admin@uni-a.example"]))
        .run()
        .unwrap();
    let names: Vec<&str> = o.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, [EPPN, "mail"]);
}

/// Finding (SAML review F3): a scope was compared after IDNA normalization but the name was
/// kept as written, so `admin@faß.de` asserted by the IdP of `xn--fa-hia.de` came back as a
/// checked scoped name that IDNA2003 consumers read as `admin@fass.de`. A scope must now be
/// written as it normalizes; an empty name is never an identity (finding F8).
#[test]
fn a_scope_is_written_canonically_and_a_name_is_never_empty() {
    let f = federation();
    let mut r = StaticResolver::new();
    r.insert(
        "xn--fa-hia.example",
        ResolvedIdp {
            entity_id: IDP_B.into(),
            sso_url: SSO.into(),
            keys: f.b.keys.clone(),
            scopes: Vec::new(),
            wants_signed_requests: false,
        },
    )
    .unwrap();
    let cfg = Arc::new(ServerConfig::new(RP, ACS, Arc::new(r)));
    let scenario = |user: &str| {
        Scenario::new(&f.b)
            .config(cfg.clone())
            .domain("xn--fa-hia.example")
            .signed_by(&f.b, IDP_B)
            .user(user)
    };
    for user in ["admin@faß.example", "admin@xn--fa-hia.example.", " ", ""] {
        assert!(
            matches!(scenario(user).run(), Err(Error::OutOfScope { .. })),
            "{user:?}"
        );
    }
    let o = scenario("admin@xn--fa-hia.example").run().unwrap();
    assert_eq!(o.identity.scoped_name(), Some("admin@xn--fa-hia.example"));
}

/// A session timeout whose sum does not fit saturates (SAML review F11: it panicked).
#[test]
fn a_huge_session_timeout_does_not_panic() {
    let i = idp();
    let cfg = (*config(&i)).clone().with_session_timeout(Duration::MAX);
    let (_, url) = started(Arc::new(cfg));
    assert!(url.starts_with(SSO), "{url}");
}

#[test]
fn the_idps_own_scope_in_any_case_is_checked_and_kept() {
    let f = federation();
    let o = at_uni_a(&f, IdentityPolicy::default(), "alice@Uni-A.example")
        .run()
        .unwrap();
    assert_eq!(o.identity.idp(), IDP_A);
    assert_eq!(o.identity.scope(), Some("uni-a.example"));
    assert_eq!(o.identity.scoped_name(), Some("alice@Uni-A.example"));
}

#[test]
fn an_unscoped_name_is_only_usable_with_its_idp() {
    let f = federation();
    let o = at_uni_b(&f, IdentityPolicy::default(), "alice")
        .run()
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP_B, "alice"));
    assert_eq!(o.identity.scoped_name(), None);
    assert_eq!(
        o.identity.to_string(),
        format!("alice (asserted by {IDP_B})")
    );
}

#[test]
fn require_scoped_refuses_unscoped_names() {
    let f = federation();
    assert!(matches!(
        at_uni_b(&f, IdentityPolicy::RequireScoped, "alice").run(),
        Err(Error::OutOfScope { .. })
    ));
}

#[test]
fn any_name_checks_nothing_and_never_vouches_for_a_name_alone() {
    // AnyName (single-IdP deployments).
    let f = federation();
    let o = at_uni_b(&f, IdentityPolicy::AnyName, "alice@uni-a.example")
        .run()
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP_B, "alice@uni-a.example"));
    assert_eq!(o.identity.scoped_name(), None);
}

/// Item 9 (issue 12): a DomainHint for `ac.example` captured `cs.uni-a.ac.example`, and one
/// IdP's Scope beat another IdP's own DomainHint.
#[test]
fn resolver_matches_exactly_and_refuses_ambiguity() {
    let k = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let der = cert(&k);
    let idp = |entity: &str, build: &dyn Fn(IdpBuilder) -> IdpBuilder| {
        EntityDescriptor::builder(entity)
            .idp(build(
                IdpSso::builder()
                    .signing_certificate(der.clone())
                    .sso(Binding::HttpRedirect, "https://idp.example/sso"),
            ))
            .build()
            .unwrap()
    };
    // x hints a whole second-level domain; y is uni-a's own IdP.
    let x = idp("https://x.example/idp", &|b| {
        b.scope("x.example", false).domain_hint("ac.example")
    });
    let y = idp("https://idp.uni-a.ac.example/idp", &|b| {
        b.scope("uni-a.ac.example", false)
    });
    // z hints a domain that w holds as a Scope.
    let z = idp("https://z.example/idp", &|b| b.domain_hint("uni-w.example"));
    let w = idp("https://idp.uni-w.example/idp", &|b| {
        b.scope("uni-w.example", false)
    });
    for opts in [ResolverOptions::exact(), ResolverOptions::with_subdomains()] {
        let r = MetadataResolver::with_options([&x, &y, &z, &w], opts);
        let who = |d: &str| r.resolve(d).map(|i| i.entity_id);
        // A hint is exact: it never captures a subdomain, let alone another IdP's.
        assert_eq!(who("ac.example").as_deref(), Some("https://x.example/idp"));
        assert_ne!(
            who("cs.uni-a.ac.example").as_deref(),
            Some("https://x.example/idp")
        );
        assert_eq!(who("other.ac.example"), None);
        // Scope of one IdP and hint of another: ambiguous, refused.
        assert_eq!(who("uni-w.example"), None);
        assert_eq!(
            who("uni-a.ac.example").as_deref(),
            Some("https://idp.uni-a.ac.example/idp")
        );
    }
    // Subdomains only on request, and only below an IdP's own literal Scope.
    let exact = MetadataResolver::new([&x, &y, &z, &w]);
    assert!(exact.resolve("cs.uni-a.ac.example").is_none());
    let sub = MetadataResolver::with_options([&x, &y, &z, &w], ResolverOptions::with_subdomains());
    assert_eq!(
        sub.resolve("cs.uni-a.ac.example").unwrap().entity_id,
        "https://idp.uni-a.ac.example/idp"
    );
    assert!(sub.resolve("a.b.uni-w.example").is_some());
}

/// Item 10 (issue 12): a client message after success turned the session into Failed.
#[test]
fn a_message_after_success_is_refused_and_the_session_stays_authenticated() {
    let f = federation();
    let scenario = at_uni_a(&f, IdentityPolicy::default(), "alice@uni-a.example");
    let mut x = scenario.begin().unwrap();
    x.send_equals().unwrap();
    let xml = harness::answer_as(&f.a, IDP_A, &x.url, "alice@uni-a.example");
    let server = &mut x.server;
    let o = server
        .handle_saml_response(&xml, now(), &mut MemoryReplayCache::new())
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP_A, "alice@uni-a.example"));
    assert!(server.is_authenticated());
    for msg in [&b"="[..], b"", b"n,,uni-a.example"] {
        let e = server
            .handle_response(msg, now(), &mut openssl_random)
            .unwrap_err();
        assert!(matches!(e, Error::Malformed(_)), "{e:?}");
        assert!(
            server.is_authenticated(),
            "a late message undid the success"
        );
    }
    // Nor does a replayed SAML Response or a timeout check.
    assert!(
        server
            .handle_saml_response(&xml, now(), &mut MemoryReplayCache::new())
            .is_err()
    );
    server
        .handle_timeout(now() + Duration::from_secs(3600))
        .unwrap();
    assert!(server.is_authenticated());
}

/// RFC 6595 binds nothing of the SASL session to the SAML exchange: a malicious server can hand
/// the client another server's AuthnRequest (whose ACS then gets the user's assertion) or send
/// an automated agent anywhere. A client that knows its server's entityID, and its IdP's hosts,
/// refuses such a redirect; the genuine one passes.
#[test]
fn a_client_refuses_a_redirect_relayed_from_another_server_or_to_another_host() {
    let i = idp();
    let redirect = |policy: RedirectPolicy, cfg: Arc<ServerConfig>| {
        let mut client = Client::new(None, "example.org")
            .unwrap()
            .with_policy(policy);
        let mut server = Server::new(cfg);
        let challenge = server
            .start(
                Some(&client.initial_response().unwrap()),
                now(),
                &mut openssl_random,
            )
            .unwrap();
        client.handle_challenge(&challenge)
    };
    // The genuine server, expected by its entityID and the IdP's host.
    let ok = RedirectPolicy::default()
        .with_expected_sp(RP)
        .with_idp_hosts(["IdP.example.org"]);
    assert!(redirect(ok.clone(), config(&i)).is_ok());
    // Another relying party's request, relayed by the server the client talks to.
    let other = harness::config_as(
        &i,
        "xmpp:other.example.net",
        "https://other.example.net/acs",
    );
    let e = redirect(ok.clone(), other).unwrap_err();
    assert!(
        matches!(&e, Error::RedirectRefused(m) if m.contains("other.example.net")),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "not-authorized");
    // A host that is not the IdP's.
    let e = redirect(
        RedirectPolicy::default().with_idp_hosts(["sso.example.org"]),
        config(&i),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::RedirectRefused(m) if m.contains("idp.example.org")),
        "{e:?}"
    );
    // Unset, neither is checked (the default).
    assert!(redirect(RedirectPolicy::default(), config(&i)).is_ok());
}

/// What a redirect must not carry past the client's checks (sasl review C1-C3): with the
/// expected server set but no IdP hosts, a server bounces the client through a host of its own
/// (every redirect is refused, the policy is incomplete); credentials or another port on the
/// IdP's host; and a binding parameter that an IdP splitting on `;`, or reading names without
/// case, would take in place of the one checked here.
#[test]
fn a_client_refuses_redirects_that_other_parsers_read_differently() {
    let i = idp();
    let hosts = RedirectPolicy::default()
        .with_expected_sp(RP)
        .with_idp_hosts(["idp.example.org", "idp.example.org:8443"]);
    let redirect = |policy: RedirectPolicy, rewrite: &dyn Fn(&str) -> String| {
        let mut client = Client::new(None, "example.org")
            .unwrap()
            .with_policy(policy);
        let mut server = Server::new(config(&i));
        let challenge = server
            .start(
                Some(&client.initial_response().unwrap()),
                now(),
                &mut openssl_random,
            )
            .unwrap();
        let url = rewrite(std::str::from_utf8(&challenge).unwrap());
        client.handle_challenge(url.as_bytes())
    };
    let same = |u: &str| u.to_owned();
    assert!(redirect(hosts.clone(), &same).is_ok());
    // The server's own request, re-hosted on a host of the server's (C1): refused only when
    // the IdP's hosts are known; without them the policy refuses every redirect.
    let bounced = |u: &str| u.replacen("idp.example.org", "d.example.net", 1);
    assert!(matches!(
        redirect(hosts.clone(), &bounced),
        Err(Error::RedirectRefused(_))
    ));
    let e = redirect(RedirectPolicy::default().with_expected_sp(RP), &same).unwrap_err();
    assert!(
        matches!(&e, Error::State(m) if m.contains("idp_hosts")),
        "{e:?}"
    );
    // Credentials, and a port not listed (C3); a listed one passes.
    for rewrite in [
        &(|u: &str| u.replacen("https://", "https://mallory:pw@", 1)) as &dyn Fn(&str) -> String,
        &|u: &str| u.replacen("https://", "https://mallory@", 1),
        &|u: &str| u.replacen("idp.example.org", "idp.example.org:9443", 1),
    ] {
        let e = redirect(hosts.clone(), rewrite).unwrap_err();
        assert!(matches!(e, Error::RedirectRefused(_)), "{e:?}");
    }
    assert!(
        redirect(hosts.clone(), &|u: &str| u.replacen(
            "idp.example.org",
            "idp.example.org:8443",
            1
        ))
        .is_ok()
    );
    // A SAMLRequest behind `;`, or named in another case (C2).
    for rewrite in [
        &(|u: &str| {
            u.replacen("?", "?x=1;SAMLRequest=fZBBT8MwDIX/SuV7m6RbNxS1nSp24wASA8TRZKFEapMqThf490Qbk+DCwQfLfp/fc7v/nKfirAMZ7zoQFYdCO+VPxo0dPB6O5Q3s+5ZwnvgiuyV+uAe9LJpikYWO5HXSwRqc9EiGpMNZk4xKPnZ3t7KuuJTXHwsviG/KIi&", 1)
        }) as &dyn Fn(&str) -> String,
        &|u: &str| format!("{u}&samlrequest=AAAA"),
        &|u: &str| format!("{u}&x=1;Signature=AAAA"),
    ] {
        let e = redirect(hosts.clone(), rewrite).unwrap_err();
        assert!(matches!(e, Error::RedirectRefused(_)), "{e:?}");
    }
}

/// The IdP's answer to the session's request, with an error status; signed or not.
fn error_status(i: &Idp, url: &str, signed: bool) -> Vec<u8> {
    use saml_core::protocol::idp::ResponseBuilder;
    use saml_core::protocol::{NAMEID_PERSISTENT, NameId, Status, StatusCode};
    let req = harness::request_in(url);
    let mut b = ResponseBuilder::for_request(&req, IDP, ACS, NameId::new("x", NAMEID_PERSISTENT));
    b.status = Status {
        code: StatusCode::Requester,
        second: None,
        message: Some("say this to the user".into()),
    };
    b.sign_response = signed;
    b.build(&i.key, now(), &mut openssl_random).unwrap()
}

/// Finding (SAML review F5): any refused Response ended the session for good, although the ACS
/// is public and routes by the unsigned InResponseTo, and the request ID travels in the
/// redirect URL. Whoever learnt it posted an unsigned error status (or anything) and the
/// genuine Response a second later met `Error::State`. A Response refused before it proved to
/// be the IdP's answer to this request now leaves the session waiting.
#[test]
fn a_forged_response_does_not_end_the_session() {
    let i = idp();
    let (mut s, url) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let mut replay = MemoryReplayCache::new();
    let forged = [
        error_status(&i, &url, false),
        b"<".to_vec(),
        idp_answer(&idp(), &url, "mallory"),
    ];
    for xml in &forged {
        let e = s.handle_saml_response(xml, now(), &mut replay).unwrap_err();
        assert!(matches!(e, Error::Saml(_)), "{e}");
        assert!(s.awaits_saml_response(), "refused by {e}, yet ended");
    }
    let o = s
        .handle_saml_response(&idp_answer(&i, &url, "alice"), now(), &mut replay)
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "alice"));
    assert!(s.is_authenticated() && !s.awaits_saml_response());
}

/// What does end it: the IdP's own signed refusal of this request, and a bounded number of
/// refused posts (each costs a validation).
#[test]
fn the_idps_signed_refusal_and_many_forgeries_end_the_session() {
    let i = idp();
    let (mut s, url) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let e = s
        .handle_saml_response(
            &error_status(&i, &url, true),
            now(),
            &mut MemoryReplayCache::new(),
        )
        .unwrap_err();
    assert_eq!(e.xmpp_condition(), "not-authorized");
    assert!(!s.awaits_saml_response());
    let genuine = idp_answer(&i, &url, "alice");
    assert!(matches!(
        s.handle_saml_response(&genuine, now(), &mut MemoryReplayCache::new()),
        Err(Error::State(_))
    ));

    let (mut s, url) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    for n in 1..=sasl_saml20::server::MAX_REFUSED_RESPONSES {
        assert!(s.awaits_saml_response(), "ended after {} posts", n - 1);
        // Each post other bytes, each validated (an identical repeat is not: sasl review I4).
        let r = s.handle_saml_response(
            format!("<{n}").as_bytes(),
            now(),
            &mut MemoryReplayCache::new(),
        );
        assert!(matches!(r, Err(Error::Saml(_))));
    }
    assert!(!s.awaits_saml_response());
    let genuine = idp_answer(&i, &url, "alice");
    assert!(matches!(
        s.handle_saml_response(&genuine, now(), &mut MemoryReplayCache::new()),
        Err(Error::State(_))
    ));
}

/// Finding (sasl review I4): the bytes of a Response the session had already refused were
/// parsed and their signature verified again each time they were delivered (an application
/// handing over "the latest Response posted for this request" hands the same one again). A
/// repeat is now refused before it is parsed, as `Error::RepeatedResponse`; the session still
/// waits for the genuine one, and the repeat counts towards `MAX_REFUSED_RESPONSES` (a caller
/// looping on a source that repeats itself still ends).
#[test]
fn an_identical_repeat_is_refused_without_validation() {
    use sasl_saml20::server::MAX_REFUSED_RESPONSES;
    let i = idp();
    let (mut s, url) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let mut replay = MemoryReplayCache::new();
    let forged = idp_answer(&idp(), &url, "mallory");
    let e = s
        .handle_saml_response(&forged, now(), &mut replay)
        .unwrap_err();
    assert!(matches!(e, Error::Saml(_)), "validated first: {e}");
    for _ in 2..MAX_REFUSED_RESPONSES {
        let e = s
            .handle_saml_response(&forged, now(), &mut replay)
            .unwrap_err();
        assert!(matches!(e, Error::RepeatedResponse), "validated again: {e}");
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert_eq!(e.xmpp_condition(), "not-authorized");
        assert!(s.awaits_saml_response(), "a repeat ended the session");
    }
    let o = s
        .handle_saml_response(&idp_answer(&i, &url, "alice"), now(), &mut replay)
        .unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "alice"));

    // Repeats count: the MAX_REFUSED_RESPONSES-th refused post ends the session, repeat or not.
    let (mut s, _) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    for n in 1..=MAX_REFUSED_RESPONSES {
        assert!(s.awaits_saml_response(), "ended after {} posts", n - 1);
        let r = s.handle_saml_response(b"<", now(), &mut replay);
        if n == 1 {
            assert!(matches!(r, Err(Error::Saml(_))), "{r:?}");
        } else {
            assert!(matches!(r, Err(Error::RepeatedResponse)), "{r:?}");
        }
    }
    assert!(!s.awaits_saml_response());

    // The deadline comes first: a repeat after it ends the session as a timeout.
    let (mut s, _) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    assert!(s.handle_saml_response(b"<", now(), &mut replay).is_err());
    let late = now() + Duration::from_secs(3600);
    let r = s.handle_saml_response(b"<", late, &mut replay);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(!s.awaits_saml_response());
}

/// Review of the eighth round, F7: a genuine Response refused only because it is not valid yet
/// (the IdP's clock ahead of the server's beyond the skew) is not remembered as refused: the
/// same bytes posted again once valid complete the login instead of being refused as a repeat.
#[test]
fn a_response_not_yet_valid_is_validated_again_later() {
    let i = idp();
    let (mut s, url) = started(config(&i));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let mut replay = MemoryReplayCache::new();
    let answer = idp_answer(&i, &url, "alice");
    let early = now() - Duration::from_secs(600);
    let e = s
        .handle_saml_response(&answer, early, &mut replay)
        .unwrap_err();
    assert!(matches!(e, Error::Saml(_)), "{e}");
    assert!(s.awaits_saml_response());
    let o = s.handle_saml_response(&answer, now(), &mut replay).unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "alice"));
}

/// Review B6, the SASL side: the server sent an unsigned AuthnRequest to an IdP whose metadata
/// says `WantAuthnRequestsSigned="true"`, which refuses it after the user was sent there.
/// The resolver reads the flag; a server without a signing key refuses to start such an
/// exchange (`SigningKeyNeeded`, a configuration error, `temporary-auth-failure` in XMPP), and
/// one with a key signs the Redirect query.
#[test]
fn an_idp_that_wants_signed_requests_gets_them_or_none() {
    let k = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let idp_md = |signed: bool| {
        EntityDescriptor::builder(IDP)
            .idp(
                IdpSso::builder()
                    .signing_certificate(cert(&k))
                    .scope("example.org", false)
                    .want_authn_requests_signed(signed)
                    .sso(Binding::HttpRedirect, SSO),
            )
            .build()
            .unwrap()
    };
    let wanting = idp_md(true);
    let r = Arc::new(MetadataResolver::new([&wanting]));
    assert!(r.resolve("example.org").unwrap().wants_signed_requests);
    let plain = idp_md(false);
    assert!(
        !MetadataResolver::new([&plain])
            .resolve("example.org")
            .unwrap()
            .wants_signed_requests
    );
    // No signing key: refused before any request is made.
    let mut s = Server::new(Arc::new(ServerConfig::new(RP, ACS, r.clone())));
    let e = s
        .start(Some(b"n,,example.org"), now(), &mut openssl_random)
        .unwrap_err();
    assert!(
        matches!(&e, Error::SigningKeyNeeded { idp } if idp == IDP),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Misuse);
    assert_eq!(e.xmpp_condition(), "temporary-auth-failure");
    // With one: the Redirect query is signed.
    let key = saml_core::dsig::SigningKey::new(
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        None,
    )
    .unwrap();
    let mut s = Server::new(Arc::new(
        ServerConfig::new(RP, ACS, r).with_signing_key(key),
    ));
    let url = String::from_utf8(
        s.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap(),
    )
    .unwrap();
    assert!(
        url.contains("&Signature=") && url.contains("&SigAlg="),
        "{url}"
    );
}

/// Review K4: an initial response of any length reached IDNA (UTS #46 mapping, then Punycode
/// over every label, quadratic per label up to 1,000 characters) before the 253-byte check of
/// a domain name: about 0.5 µs per byte, unauthenticated. It is refused by its length first;
/// a bare JID of 2,000 bytes as authzid still passes.
#[test]
fn a_long_initial_response_is_refused_before_idna() {
    let label: String = (0..300u32)
        .map(|i| char::from_u32(0x4e00 + i).unwrap())
        .collect();
    let domain = [label.as_str(); 70].join(".");
    let msg = format!("n,,{domain}.example");
    let e = InitialResponse::parse(msg.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("initial response of"), "{e}");
    let e = idp_identifier(&[label.as_str(); 3].join(".")).unwrap_err();
    assert!(e.to_string().contains("IdP identifier of"), "{e}");
    let jid = format!("{}@example.org", "u".repeat(1988));
    let ok = InitialResponse::parse(format!("n,a={jid},example.org").as_bytes()).unwrap();
    assert_eq!(ok.authzid.as_deref(), Some(jid.as_str()));
}
