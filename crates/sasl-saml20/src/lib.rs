//! # sasl-saml20
//!
//! The SAML20 SASL mechanism (RFC 6595, formerly draft-wierenga-ietf-sasl-saml): SAML 2.0 Web
//! SSO for non-HTTP protocols such as XMPP server-to-server federation, IMAP and SMTP. The
//! client names its IdP by domain; the server (a SAML relying party) answers with an
//! HTTP-Redirect URI carrying a signed AuthnRequest; the client opens it in a browser or agent
//! and sends `=`; the IdP posts the Response to the server's ACS, whose validation decides the
//! SASL outcome.
//!
//! In scope: [`gs2`] (the initial response: GS2 header, saslname escapes, IdP identifier with
//! IDNA), [`client`] and [`server`] (sans-IO state machines; time and randomness are inputs),
//! [`resolver`] (domain to IdP: a static table, or SAML metadata through shibmd:Scope and
//! mdui:DomainHint), [`gssapi`] (RFC 6595 §4 token framing), [`Error`] with XMPP condition
//! mapping, and with feature `rsasl` the mechanism for rsasl 2.3 (`rsasl_mechanism`). Out of
//! scope: security layers (SAML20 has none), channel binding (there is no SAML20-PLUS).
//!
//! Guarantees: a successful outcome names an [`server::Identity`], the name together with the
//! IdP that asserted it, and by default a scoped name (`user@domain`) is accepted only from an
//! IdP whose `shibmd:Scope` is that domain ([`server::IdentityPolicy`]); the resolver matches
//! domains exactly and refuses a domain that two IdPs claim ([`resolver`] documents the
//! order); a message after success is refused without undoing the success.
//!
//! A whole exchange, in memory, with an IdP built from saml-core:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::SystemTime;
//! use openssl::{pkey::PKey, rsa::Rsa};
//! use saml_core::bindings::redirect;
//! use saml_core::dsig::{SigningKey, TrustedKeys};
//! use saml_core::protocol::{idp::ResponseBuilder, AuthnRequest, MemoryReplayCache, NameId, NAMEID_PERSISTENT, openssl_random};
//! use sasl_saml20::{client::{Client, Step}, server::{Server, ServerConfig}, resolver::{ResolvedIdp, StaticResolver}};
//!
//! let idp_key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048)?)?, None)?;
//! let mut keys = TrustedKeys::new();
//! keys.add_public_key(idp_key.public_key()?, "idp")?;
//! let mut resolver = StaticResolver::new();
//! resolver.insert("example.org", ResolvedIdp { entity_id: "https://idp.example.org".into(), sso_url: "https://idp.example.org/sso".into(), keys, scopes: vec![], wants_signed_requests: false })?;
//! let cfg = Arc::new(ServerConfig::new("xmpp:chat.example.com", "https://chat.example.com/acs", Arc::new(resolver)));
//! let now = SystemTime::now();
//!
//! let mut client = Client::new(None, "example.org")?;
//! let mut server = Server::new(cfg);
//! let challenge = server.start(Some(&client.initial_response()?), now, &mut openssl_random)?;
//! let Step::OpenUrl { url, respond } = client.handle_challenge(&challenge)? else { unreachable!() };
//! assert_eq!(server.handle_response(&respond, now, &mut openssl_random)?, None);
//!
//! // The user's browser takes `url` to the IdP, which answers to the server's ACS:
//! let m = redirect::decode(&url[url.find('?').unwrap()..], redirect::DEFAULT_MAX_INFLATED)?;
//! let req = AuthnRequest::parse(&m.xml)?;
//! let resp = ResponseBuilder::for_request(&req, "https://idp.example.org", "https://chat.example.com/acs", NameId::new("alice", NAMEID_PERSISTENT))
//!     .build(&idp_key, now, &mut openssl_random)?;
//! let outcome = server.handle_saml_response(&resp, now, &mut MemoryReplayCache::new())?;
//! // The identity is the name together with the IdP that asserted it.
//! assert_eq!(outcome.identity.qualified(), ("https://idp.example.org", "alice"));
//! client.outcome(true)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod error;
pub mod gs2;
pub mod gssapi;
pub mod resolver;
#[cfg(feature = "rsasl")]
pub mod rsasl_mechanism;
pub mod server;

pub use error::{Error, ErrorKind};

/// The mechanism name.
pub const MECHANISM: &str = "SAML20";
