//! A two-party harness for the SAML20 state machines: our client and server stepped in memory,
//! with an IdP built from saml-core's Response builder, at a fixed clock. A [`Scenario`] says who
//! asks what; [`Scenario::run`] steps it to completion, and [`Exchange`] exposes each step for
//! the tests that inject one fault.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::bindings::redirect;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{
    Attribute, AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, openssl_random,
};
use sasl_saml20::Error;
use sasl_saml20::client::{Client, Step};
use sasl_saml20::resolver::{ResolvedIdp, StaticResolver};
use sasl_saml20::server::{Outcome, Server, ServerConfig};

pub const IDP: &str = "https://idp.example.org/idp";
pub const SSO: &str = "https://idp.example.org/sso";
pub const RP: &str = "xmpp:muc.example.com";
pub const ACS: &str = "https://muc.example.com/saml/acs";

/// The harness clock.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// An in-memory IdP: its signing key and the trusted keys for it.
pub struct Idp {
    pub key: SigningKey,
    pub keys: TrustedKeys,
}

pub fn idp() -> Idp {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "idp")
        .unwrap();
    Idp { key, keys }
}

/// A server trusting `i` as [`IDP`] for `example.org`.
pub fn config(i: &Idp) -> Arc<ServerConfig> {
    config_as(i, RP, ACS)
}

/// [`config`] for the relying party `rp` with its ACS `acs`.
pub fn config_as(i: &Idp, rp: &str, acs: &str) -> Arc<ServerConfig> {
    let mut r = StaticResolver::new();
    r.insert(
        "example.org",
        ResolvedIdp {
            entity_id: IDP.into(),
            sso_url: SSO.into(),
            keys: i.keys.clone(),
            scopes: Vec::new(),
            wants_signed_requests: false,
        },
    )
    .unwrap();
    Arc::new(ServerConfig::new(rp, acs, Arc::new(r)))
}

/// The AuthnRequest inside the redirect `url`.
pub fn request_in(url: &str) -> AuthnRequest {
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    AuthnRequest::parse(&m.xml).unwrap()
}

/// The IdP `issuer` (signing with `i`) answering the AuthnRequest inside `url` for `user`.
pub fn answer_as(i: &Idp, issuer: &str, url: &str, user: &str) -> Vec<u8> {
    answer_with(i, issuer, url, user, &[])
}

/// [`answer_as`] releasing `attributes`.
pub fn answer_with(
    i: &Idp,
    issuer: &str,
    url: &str,
    user: &str,
    attributes: &[Attribute],
) -> Vec<u8> {
    let req = request_in(url);
    let mut b =
        ResponseBuilder::for_request(&req, issuer, ACS, NameId::new(user, NAMEID_PERSISTENT));
    b.attributes = attributes.to_vec();
    b.build(&i.key, now(), &mut openssl_random).unwrap()
}

/// [`IDP`] answering the AuthnRequest inside `url` for `user` (with the checks on the request).
pub fn idp_answer(i: &Idp, url: &str, user: &str) -> Vec<u8> {
    assert!(url.starts_with(SSO));
    let req = request_in(url);
    assert_eq!(req.issuer, RP);
    assert_eq!(req.acs_url.as_deref(), Some(ACS));
    answer_as(i, IDP, url, user)
}

/// Who asks what, and who answers.
pub struct Scenario<'a> {
    cfg: Arc<ServerConfig>,
    domain: String,
    authzid: Option<String>,
    idp: &'a Idp,
    issuer: String,
    user: String,
    initial_in_first: bool,
    attributes: Vec<Attribute>,
}

impl<'a> Scenario<'a> {
    /// The client names `example.org`; [`IDP`] (signing with `i`) asserts `alice`; the
    /// initial response travels with the start.
    pub fn new(i: &'a Idp) -> Self {
        Scenario {
            cfg: config(i),
            domain: "example.org".into(),
            authzid: None,
            idp: i,
            issuer: IDP.into(),
            user: "alice".into(),
            initial_in_first: true,
            attributes: Vec::new(),
        }
    }

    /// The IdP releases `a` too.
    pub fn attribute(mut self, a: Attribute) -> Self {
        self.attributes.push(a);
        self
    }

    pub fn config(mut self, cfg: Arc<ServerConfig>) -> Self {
        self.cfg = cfg;
        self
    }

    pub fn domain(mut self, d: &str) -> Self {
        self.domain = d.into();
        self
    }

    pub fn authzid(mut self, a: &str) -> Self {
        self.authzid = Some(a.into());
        self
    }

    /// The IdP that signs, and the entityID it issues as.
    pub fn signed_by(mut self, i: &'a Idp, issuer: &str) -> Self {
        self.idp = i;
        self.issuer = issuer.into();
        self
    }

    pub fn user(mut self, u: &str) -> Self {
        self.user = u.into();
        self
    }

    /// The server speaks first (an empty challenge), as for protocols without an initial
    /// response.
    pub fn empty_challenge_first(mut self) -> Self {
        self.initial_in_first = false;
        self
    }

    /// Steps the client and the server up to the redirect (the server waits for `=`).
    pub fn begin(&self) -> Result<Exchange, Error> {
        let mut client = Client::new(self.authzid.as_deref(), &self.domain).unwrap();
        let mut server = Server::new(self.cfg.clone());
        let challenge = if self.initial_in_first {
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
        Ok(Exchange {
            client,
            server,
            url,
            respond,
        })
    }

    /// The whole exchange: client, server, IdP and the ACS, with both sides' outcomes checked
    /// against each other.
    pub fn run(&self) -> Result<Outcome, Error> {
        let mut x = self.begin()?;
        x.send_equals()?;
        assert!(x.server.request_id().is_some());
        let xml = answer_with(self.idp, &self.issuer, &x.url, &self.user, &self.attributes);
        let r = x.deliver(&xml, now());
        x.client.outcome(r.is_ok()).unwrap();
        assert_eq!(x.client.is_authenticated(), r.is_ok());
        assert_eq!(x.server.is_authenticated(), r.is_ok());
        r
    }
}

/// An exchange in progress.
pub struct Exchange {
    pub client: Client,
    pub server: Server,
    /// The redirect the client opens.
    pub url: String,
    /// The client's last message (`=`).
    pub respond: Vec<u8>,
}

impl Exchange {
    /// Sends the client's `=`.
    pub fn send_equals(&mut self) -> Result<(), Error> {
        assert!(
            self.server
                .handle_response(&self.respond, now(), &mut openssl_random)?
                .is_none()
        );
        Ok(())
    }

    /// Delivers a SAML Response to the server's ACS at `at`.
    pub fn deliver(&mut self, xml: &[u8], at: SystemTime) -> Result<Outcome, Error> {
        self.server
            .handle_saml_response(xml, at, &mut MemoryReplayCache::new())
    }
}

/// A server session started with the client's initial response for `example.org`; returns the
/// redirect URI.
pub fn started(cfg: Arc<ServerConfig>) -> (Server, String) {
    let mut s = Server::new(cfg);
    let url = String::from_utf8(
        s.start(Some(b"n,,example.org"), now(), &mut openssl_random)
            .unwrap(),
    )
    .unwrap();
    (s, url)
}
