//! RFC 6595 exchanges between our client and server, in memory, with an IdP built from
//! saml-core and IdPs resolved from metadata; every malformed message and every outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use saml_core::bindings::redirect;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, openssl_random,
};
use saml_metadata::builder::{IdpBuilder, RoleBuilder as _};
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};
use sasl_saml20::Error;
use sasl_saml20::client::{Client, RedirectPolicy, Step};
use sasl_saml20::gs2::{InitialResponse, escape_saslname, idp_identifier, unescape_saslname};
use sasl_saml20::resolver::{
    IdpResolver, MetadataResolver, ResolvedIdp, ResolverOptions, StaticResolver,
};
use sasl_saml20::server::{IdentityPolicy, Outcome, Server, ServerConfig};

const IDP: &str = "https://idp.example.org/idp";
const SSO: &str = "https://idp.example.org/sso";
const RP: &str = "xmpp:muc.example.com";
const ACS: &str = "https://muc.example.com/saml/acs";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Idp {
    key: SigningKey,
    keys: TrustedKeys,
}

fn idp() -> Idp {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "idp")
        .unwrap();
    Idp { key, keys }
}

fn config(i: &Idp) -> Arc<ServerConfig> {
    let mut r = StaticResolver::new();
    r.insert(
        "example.org",
        ResolvedIdp {
            entity_id: IDP.into(),
            sso_url: SSO.into(),
            keys: i.keys.clone(),
            scopes: Vec::new(),
        },
    )
    .unwrap();
    Arc::new(ServerConfig::new(RP, ACS, Arc::new(r)))
}

/// The IdP answering the AuthnRequest inside `url` for `user`.
fn idp_answer(i: &Idp, url: &str, user: &str) -> Vec<u8> {
    assert!(url.starts_with(SSO));
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    assert_eq!(req.issuer, RP);
    assert_eq!(req.acs_url.as_deref(), Some(ACS));
    ResponseBuilder::for_request(&req, IDP, ACS, NameId::new(user, NAMEID_PERSISTENT))
        .build(&i.key, now(), &mut openssl_random)
        .unwrap()
}

fn run(
    i: &Idp,
    cfg: Arc<ServerConfig>,
    authzid: Option<&str>,
    user: &str,
    initial_in_first: bool,
) -> Result<Outcome, Error> {
    let mut client = Client::new(authzid, "example.org").unwrap();
    let mut server = Server::new(cfg);
    let challenge = if initial_in_first {
        server.start(
            Some(&client.initial_response().unwrap()),
            now(),
            &mut openssl_random,
        )?
    } else {
        let empty = server.start(None, now(), &mut openssl_random)?;
        assert!(empty.is_empty());
        let Step::Send(init) = client.handle_challenge(&empty).unwrap() else {
            panic!()
        };
        server
            .handle_response(&init, now(), &mut openssl_random)?
            .unwrap()
    };
    let Step::OpenUrl { url, respond } = client.handle_challenge(&challenge).unwrap() else {
        panic!()
    };
    assert_eq!(respond, b"=");
    assert!(
        server
            .handle_response(&respond, now(), &mut openssl_random)?
            .is_none()
    );
    assert!(server.request_id().is_some());
    let xml = idp_answer(i, &url, user);
    let r = server.handle_saml_response(&xml, now(), &mut MemoryReplayCache::new());
    client.outcome(r.is_ok()).unwrap();
    assert_eq!(client.is_authenticated(), r.is_ok());
    assert_eq!(server.is_authenticated(), r.is_ok());
    r
}

#[test]
fn full_exchanges() {
    let i = idp();
    let o = run(&i, config(&i), None, "alice", true).unwrap();
    assert_eq!(o.identity.qualified(), (IDP, "alice"));
    assert_eq!(o.identity, o.subject);
    assert_eq!(
        o.identity.scoped_name(),
        None,
        "an unscoped name needs its IdP"
    );
    // Servers that cannot send an initial challenge: the empty-challenge start.
    assert!(run(&i, config(&i), None, "alice", false).is_ok());
    // An authzid equal to the subject is allowed by default; another one is not...
    assert_eq!(
        run(&i, config(&i), Some("alice"), "alice", true)
            .unwrap()
            .identity
            .qualified(),
        (IDP, "alice")
    );
    let e = run(&i, config(&i), Some("admin"), "alice", true).unwrap_err();
    assert!(matches!(e, Error::Policy(_)));
    assert_eq!(e.xmpp_condition(), "invalid-authzid");
    // ... unless the authorization policy says so.
    let mut cfg = (*config(&i)).clone();
    cfg.authorize = Some(Arc::new(|n, a| {
        n.qualified() == (IDP, "alice") && a == "room-admin"
    }));
    let o = run(&i, Arc::new(cfg), Some("room-admin"), "alice", true).unwrap();
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
fn server_refusals_and_outcomes() {
    let i = idp();
    // Unknown IdP domain: policy.
    let mut s = Server::new(config(&i));
    let e = s
        .start(Some(b"n,,other.example"), now(), &mut openssl_random)
        .unwrap_err();
    assert!(matches!(e, Error::Policy(_)) && e.xmpp_condition() == "not-authorized");
    // The last client message must be exactly "=".
    for bad in [&b""[..], b"==", b"= ", b"x"] {
        let mut s = Server::new(config(&i));
        s.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap();
        assert!(
            matches!(
                s.handle_response(bad, now(), &mut openssl_random),
                Err(Error::Malformed(_))
            ),
            "{bad:?}"
        );
    }
    // A SAML Response before "=" is misuse; after a timeout the session fails.
    let mut s = Server::new(config(&i));
    let url = String::from_utf8(
        s.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap(),
    )
    .unwrap();
    let xml = idp_answer(&i, &url, "alice");
    assert!(matches!(
        s.handle_saml_response(&xml, now(), &mut MemoryReplayCache::new()),
        Err(Error::State(_))
    ));
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    assert_eq!(s.deadline(), Some(now() + Duration::from_secs(300)));
    let late = now() + Duration::from_secs(301);
    assert!(matches!(
        s.handle_saml_response(&xml, late, &mut MemoryReplayCache::new()),
        Err(Error::Timeout)
    ));
    // Another session's Response (InResponseTo mismatch) fails SAML validation.
    let mut a = Server::new(config(&i));
    let mut b = Server::new(config(&i));
    let url_a = String::from_utf8(
        a.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap(),
    )
    .unwrap();
    b.start(Some(b"n,,example.org"), now(), &mut openssl_random)
        .unwrap();
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
    // A Response signed by another key.
    let mut s = Server::new(config(&i));
    let url = String::from_utf8(
        s.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap(),
    )
    .unwrap();
    s.handle_response(b"=", now(), &mut openssl_random).unwrap();
    let forged = idp_answer(&idp(), &url, "alice");
    assert!(matches!(
        s.handle_saml_response(&forged, now(), &mut MemoryReplayCache::new()),
        Err(Error::Saml(_))
    ));
}

#[test]
fn client_refusals() {
    let check = |challenge: &[u8], policy: RedirectPolicy| {
        let mut c = Client::new(None, "example.org")
            .unwrap()
            .with_policy(policy);
        c.initial_response().unwrap();
        c.handle_challenge(challenge)
    };
    let good = "https://idp.example.org/sso?SAMLRequest=abc";
    assert!(check(good.as_bytes(), RedirectPolicy::default()).is_ok());
    assert!(matches!(
        check(
            b"http://idp.example.org/sso?SAMLRequest=abc",
            RedirectPolicy::default()
        ),
        Err(Error::Policy(_))
    ));
    assert!(
        check(
            b"http://127.0.0.1:8080/sso?SAMLRequest=abc",
            RedirectPolicy {
                require_https: false,
                ..Default::default()
            }
        )
        .is_ok()
    );
    for bad in [
        &b"not a url"[..],
        b"https://idp.example.org/sso",
        b"https://idp.example.org/sso?RelayState=x",
        b"javascript:alert(1)",
        b"\xff",
    ] {
        assert!(check(bad, RedirectPolicy::default()).is_err(), "{bad:?}");
    }
    assert!(
        check(
            format!("{good}&x={}", "a".repeat(20_000)).as_bytes(),
            RedirectPolicy::default()
        )
        .is_err()
    );
    // A non-empty first challenge without an initial response; a second challenge.
    let mut c = Client::new(None, "example.org").unwrap();
    assert!(
        c.handle_challenge(b"https://x.example/?SAMLRequest=a")
            .is_err()
    );
    let mut c = Client::new(None, "example.org").unwrap();
    c.initial_response().unwrap();
    c.handle_challenge(good.as_bytes()).unwrap();
    assert!(c.handle_challenge(good.as_bytes()).is_err());
    assert!(Client::new(None, "https://idp.example.org").is_err());
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

fn federation_config(f: &Federation, policy: IdentityPolicy) -> ServerConfig {
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
            },
        )
        .unwrap();
    }
    let mut cfg = ServerConfig::new(RP, ACS, Arc::new(r));
    cfg.identity_policy = policy;
    // Any subject may act as any authzid here: only the identity policy decides.
    cfg.authorize = Some(Arc::new(|_, _| true));
    cfg
}

/// The client names `domain`; the IdP `issuer` (signing with `i`) asserts `user`.
fn federated(
    cfg: &ServerConfig,
    domain: &str,
    authzid: Option<&str>,
    i: &Idp,
    issuer: &str,
    user: &str,
) -> Result<Outcome, Error> {
    let mut client = Client::new(authzid, domain).unwrap();
    let mut server = Server::new(Arc::new(cfg.clone()));
    let ch = server.start(
        Some(&client.initial_response().unwrap()),
        now(),
        &mut openssl_random,
    )?;
    let Step::OpenUrl { url, respond } = client.handle_challenge(&ch).unwrap() else {
        panic!()
    };
    server.handle_response(&respond, now(), &mut openssl_random)?;
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    let xml = ResponseBuilder::for_request(&req, issuer, ACS, NameId::new(user, NAMEID_PERSISTENT))
        .build(&i.key, now(), &mut openssl_random)
        .unwrap();
    let r = server.handle_saml_response(&xml, now(), &mut MemoryReplayCache::new());
    assert_eq!(server.is_authenticated(), r.is_ok());
    r
}

/// Item 8 (issue 12): with several trusted IdPs, one IdP asserting a name in another
/// organisation's scope was accepted (as the subject, and as an authzid).
#[test]
fn an_idp_may_only_assert_names_in_its_own_scope() {
    let f = Federation { a: idp(), b: idp() };
    let cfg = federation_config(&f, IdentityPolicy::default());
    // uni-b's IdP asserts alice@uni-a.example: refused, typed.
    let e = federated(
        &cfg,
        "uni-b.example",
        None,
        &f.b,
        IDP_B,
        "alice@uni-a.example",
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::OutOfScope { idp, name, authzid: false, .. }
            if idp == IDP_B && name == "alice@uni-a.example"),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "not-authorized");
    // ... and as an authzid for its own user: refused too.
    let e = federated(
        &cfg,
        "uni-b.example",
        Some("alice@uni-a.example"),
        &f.b,
        IDP_B,
        "bob@uni-b.example",
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::OutOfScope { authzid: true, .. }),
        "{e:?}"
    );
    assert_eq!(e.xmpp_condition(), "invalid-authzid");
    // Scopes match exactly: a subdomain, an empty or a bad domain is refused.
    for user in [
        "alice@cs.uni-a.example",
        "alice@",
        "alice@uni-a.example@evil",
        "alice@ex ample",
    ] {
        assert!(
            matches!(
                federated(&cfg, "uni-a.example", None, &f.a, IDP_A, user),
                Err(Error::OutOfScope { .. })
            ),
            "{user}"
        );
    }
    // The IdP's own scope (any case): the identity carries the IdP and the checked scope.
    let o = federated(
        &cfg,
        "uni-a.example",
        None,
        &f.a,
        IDP_A,
        "alice@Uni-A.example",
    )
    .unwrap();
    assert_eq!(o.identity.idp(), IDP_A);
    assert_eq!(o.identity.scope(), Some("uni-a.example"));
    assert_eq!(o.identity.scoped_name(), Some("alice@Uni-A.example"));
    // An unscoped name is accepted, but only usable with its IdP.
    let o = federated(&cfg, "uni-b.example", None, &f.b, IDP_B, "alice").unwrap();
    assert_eq!(o.identity.qualified(), (IDP_B, "alice"));
    assert_eq!(o.identity.scoped_name(), None);
    assert_eq!(
        o.identity.to_string(),
        format!("alice (asserted by {IDP_B})")
    );
    // RequireScoped refuses unscoped names; AnyName (single-IdP deployments) checks nothing
    // and so never vouches for a name alone.
    let strict = federation_config(&f, IdentityPolicy::RequireScoped);
    assert!(matches!(
        federated(&strict, "uni-b.example", None, &f.b, IDP_B, "alice"),
        Err(Error::OutOfScope { .. })
    ));
    let any = federation_config(&f, IdentityPolicy::AnyName);
    let o = federated(
        &any,
        "uni-b.example",
        None,
        &f.b,
        IDP_B,
        "alice@uni-a.example",
    )
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
    let f = Federation { a: idp(), b: idp() };
    let cfg = Arc::new(federation_config(&f, IdentityPolicy::default()));
    let mut client = Client::new(None, "uni-a.example").unwrap();
    let mut server = Server::new(cfg);
    let ch = server
        .start(
            Some(&client.initial_response().unwrap()),
            now(),
            &mut openssl_random,
        )
        .unwrap();
    let Step::OpenUrl { url, respond } = client.handle_challenge(&ch).unwrap() else {
        panic!()
    };
    server
        .handle_response(&respond, now(), &mut openssl_random)
        .unwrap();
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    let xml = ResponseBuilder::for_request(
        &req,
        IDP_A,
        ACS,
        NameId::new("alice@uni-a.example", NAMEID_PERSISTENT),
    )
    .build(&f.a.key, now(), &mut openssl_random)
    .unwrap();
    server
        .handle_saml_response(&xml, now(), &mut MemoryReplayCache::new())
        .unwrap();
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
