//! SAML20 through rsasl 2.3's public API on both sides: a client session and a server session
//! built from `SASLConfig`s whose registries hold our mechanism, callbacks answering our property
//! types, the IdP (saml-core) answering the redirect the client callback was given, and the
//! server's validation handing the NameID back to the application.
#![cfg(feature = "rsasl")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechname::Mechname;
use rsasl::prelude::{
    MessageSent, Registry, SASLClient, SASLConfig, SASLServer, SessionError, State, Validation,
};
use rsasl::property::AuthzId;
use rsasl::validate::{Validate, ValidationError};
use saml_core::bindings::redirect;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{AuthnRequest, NAMEID_PERSISTENT, NameId, openssl_random};
use sasl_saml20::resolver::{ResolvedIdp, StaticResolver};
use sasl_saml20::rsasl_mechanism::{
    Authenticated, Config, ExpectedServer, IdpHosts, IdpIdentifier, RedirectUrl, RequestId, SAML20,
    SamlResponse,
};
use sasl_saml20::server::ServerConfig;

static MECHS: [rsasl::prelude::Mechanism; 1] = [SAML20];

struct ClientCb {
    authzid: Option<&'static str>,
    /// The server's entityID, when the client checks it.
    /// The server's entityID and the IdP's hosts the client expects.
    expected: Option<(&'static str, &'static str)>,
    opened: Arc<Mutex<Vec<String>>>,
}

impl SessionCallback for ClientCb {
    fn callback(
        &self,
        _: &SessionData,
        _: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        if let Some(url) = request.get_action::<RedirectUrl>() {
            self.opened.lock().unwrap().push(url.to_owned());
            return Ok(());
        }
        if let Some(a) = self.authzid {
            request.satisfy::<AuthzId>(a)?;
        }
        if let Some((sp, hosts)) = self.expected {
            request.satisfy::<ExpectedServer>(sp)?;
            request.satisfy::<IdpHosts>(hosts)?;
        }
        request.satisfy::<IdpIdentifier>("example.org")?;
        Ok(())
    }
}

/// The application's ACS inbox: the SAML Responses posted for each InResponseTo, in order.
type Inbox = Arc<Mutex<HashMap<String, std::collections::VecDeque<Vec<u8>>>>>;

struct ServerCb {
    cfg: Arc<ServerConfig>,
    inbox: Inbox,
    /// Answers the latest Response posted for the request (leaving it in the inbox) instead of
    /// taking the oldest out.
    latest: bool,
    /// How many times it was asked for a [`SamlResponse`].
    asked: Arc<AtomicU32>,
}

struct Subject;
impl Validation for Subject {
    type Value = Option<(String, String, String)>;
}

impl SessionCallback for ServerCb {
    fn callback(
        &self,
        _: &SessionData,
        context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        request.satisfy::<Config>(&self.cfg)?;
        let Some(id) = context.get_ref::<RequestId>() else {
            return Ok(());
        };
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mut inbox = self.inbox.lock().unwrap();
        let xml = match (inbox.get_mut(id), self.latest) {
            (Some(posted), false) => posted.pop_front(),
            (Some(posted), true) => posted.back().cloned(),
            (None, _) => None,
        };
        if let Some(xml) = xml {
            request.satisfy::<SamlResponse>(&xml)?;
        }
        Ok(())
    }

    fn validate(
        &self,
        _: &SessionData,
        context: &Context<'_>,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        validate.with::<Subject, _>(|| {
            Ok(context.get_ref::<Authenticated>().map(|o| {
                // (IdP, subject, identity): the name never travels without its IdP.
                let (idp, subject) = o.subject.qualified();
                (
                    idp.to_owned(),
                    subject.to_owned(),
                    o.identity.qualified().1.to_owned(),
                )
            }))
        })?;
        Ok(())
    }
}

/// Who posts to the ACS for the session's request.
#[derive(Clone, Copy, PartialEq)]
enum Posts {
    /// The IdP.
    Genuine,
    /// Someone signing with another key.
    Forged,
    /// Someone with another key, and nothing since: the callback answers that latest Response
    /// each time it is asked.
    ForgedLatest,
    /// Someone with another key, then the IdP.
    ForgedThenGenuine,
}

fn exchange(
    authzid: Option<&'static str>,
    user: &str,
    posts: Posts,
    // The server's entityID and the IdP's hosts the client expects.
    expected: Option<(&'static str, &'static str)>,
) -> Result<Option<(String, String, String)>, SessionError> {
    exchange_counting(authzid, user, posts, expected, &Arc::default())
}

/// [`exchange`], counting in `asked` how many times the server's callback was asked for a
/// SAML Response.
fn exchange_counting(
    authzid: Option<&'static str>,
    user: &str,
    posts: Posts,
    expected: Option<(&'static str, &'static str)>,
    asked: &Arc<AtomicU32>,
) -> Result<Option<(String, String, String)>, SessionError> {
    let idp_key =
        SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(idp_key.public_key().unwrap(), "idp")
        .unwrap();
    let mut r = StaticResolver::new();
    r.insert(
        "example.org",
        ResolvedIdp {
            entity_id: "https://idp.example.org".into(),
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
        Arc::new(r),
    ));
    let inbox: Inbox = Arc::default();
    let opened = Arc::new(Mutex::new(Vec::new()));

    let client_cfg = SASLConfig::builder()
        .with_registry(Registry::with_mechanisms(&MECHS))
        .with_callback(ClientCb {
            authzid,
            expected,
            opened: opened.clone(),
        })
        .unwrap();
    let server_cfg = SASLConfig::builder()
        .with_registry(Registry::with_mechanisms(&MECHS))
        .with_callback(ServerCb {
            cfg,
            inbox: inbox.clone(),
            latest: posts == Posts::ForgedLatest,
            asked: asked.clone(),
        })
        .unwrap();
    let name = Mechname::parse(b"SAML20").unwrap();
    let mut client = SASLClient::new(client_cfg)
        .start_suggested(&[name])
        .unwrap();
    let mut server = SASLServer::<Subject>::new(server_cfg)
        .start_suggested(name)
        .unwrap();
    assert_eq!(client.get_mechname().as_str(), "SAML20");

    let mut out = Cursor::new(Vec::new());
    assert_eq!(client.step(None, &mut out)?, State::Running);
    let initial = out.into_inner();
    let mut out = Cursor::new(Vec::new());
    assert_eq!(server.step(Some(&initial), &mut out)?, State::Running);
    let challenge = out.into_inner();
    let mut out = Cursor::new(Vec::new());
    assert_eq!(
        client.step(Some(&challenge), &mut out)?,
        State::Finished(MessageSent::Yes)
    );
    assert_eq!(out.get_ref().as_slice(), b"=");
    // The client's callback was told to open the redirect; the browser reaches the IdP, which
    // posts to the server's ACS (here: the inbox, keyed by InResponseTo).
    let url = opened
        .lock()
        .unwrap()
        .pop()
        .expect("the client opened the redirect");
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    let req = AuthnRequest::parse(&m.xml).unwrap();
    let answer = |signer: &SigningKey| {
        ResponseBuilder::for_request(
            &req,
            "https://idp.example.org",
            "https://example.com/acs",
            NameId::new(user, NAMEID_PERSISTENT),
        )
        .build(signer, SystemTime::now(), &mut openssl_random)
        .unwrap()
    };
    let other =
        SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let posted = match posts {
        Posts::Genuine => vec![answer(&idp_key)],
        Posts::Forged | Posts::ForgedLatest => vec![answer(&other)],
        Posts::ForgedThenGenuine => vec![answer(&other), answer(&idp_key)],
    };
    inbox.lock().unwrap().insert(req.id.clone(), posted.into());
    let mut out = Cursor::new(Vec::new());
    assert_eq!(
        server.step(Some(b"="), &mut out)?,
        State::Finished(MessageSent::No)
    );
    Ok(server.validation().flatten())
}

#[test]
fn rsasl_client_and_server() {
    assert_eq!(
        exchange(
            None,
            "alice",
            Posts::Genuine,
            Some(("xmpp:example.com", "sso.example.org, IdP.example.org"))
        )
        .unwrap(),
        Some((
            "https://idp.example.org".into(),
            "alice".into(),
            "alice".into()
        ))
    );
    assert_eq!(
        exchange(Some("alice"), "alice", Posts::Genuine, None).unwrap(),
        Some((
            "https://idp.example.org".into(),
            "alice".into(),
            "alice".into()
        ))
    );
    // A Response signed by another key, and nothing else: the server session fails with our
    // mechanism error.
    let e = exchange(None, "alice", Posts::Forged, None).unwrap_err();
    assert!(e.is_mechanism_error(), "{e:?}");
    assert!(
        e.to_string().contains("SAML") || format!("{e:?}").contains("Saml"),
        "{e:?}"
    );
    // The same forgery posted before the IdP's answer does not end the session (SAML review
    // F5): the callback is asked again and the genuine Response completes it.
    assert_eq!(
        exchange(None, "alice", Posts::ForgedThenGenuine, None).unwrap(),
        Some((
            "https://idp.example.org".into(),
            "alice".into(),
            "alice".into()
        ))
    );
    // An authzid the subject may not use.
    assert!(exchange(Some("admin"), "alice", Posts::Genuine, None).is_err());
    // A client expecting another server refuses this one's redirect.
    let e = exchange(
        None,
        "alice",
        Posts::Genuine,
        Some(("xmpp:other.example.net", "idp.example.org")),
    )
    .unwrap_err();
    assert!(format!("{e}").contains("other.example.net"), "{e}");
    // So does one whose IdP is elsewhere (sasl review C1: the expected server protects only
    // with the IdP's hosts)...
    let e = exchange(
        None,
        "alice",
        Posts::Genuine,
        Some(("xmpp:example.com", "sso.example.org")),
    )
    .unwrap_err();
    assert!(format!("{e}").contains("idp.example.org"), "{e}");
    // ...and one that names the server but no hosts, whose check a server could bounce.
    let e = exchange(
        None,
        "alice",
        Posts::Genuine,
        Some(("xmpp:example.com", "")),
    )
    .unwrap_err();
    assert!(format!("{e}").contains("idp_hosts"), "{e}");
}

/// Finding (sasl review I4): a callback answering the latest Response posted for the request
/// answered the same refused Response each time it was asked, and each was validated again
/// (XML parse, signature verification) up to `MAX_REFUSED_RESPONSES` times. The identical
/// repeat is not validated again: the session ends with the refusal of the first, after the
/// callback was asked twice, as when it answers nothing the second time.
#[test]
fn rsasl_server_ends_on_a_repeat_of_a_refused_response() {
    for posts in [Posts::ForgedLatest, Posts::Forged] {
        let asked = Arc::new(AtomicU32::new(0));
        let e = exchange_counting(None, "alice", posts, None, &asked).unwrap_err();
        assert!(e.is_mechanism_error(), "{e:?}");
        // The refusal of the first (the forged signature), not the repeat's.
        assert!(format!("{e:?}").contains("Saml("), "{e:?}");
        let asked = asked.load(Ordering::SeqCst);
        assert_eq!(asked, 2, "the callback was asked {asked} times; {e}");
    }
}
