//! SAML20 as an rsasl 2.3 mechanism (feature `rsasl`; rsasl's custom-mechanism API is outside
//! its semver promise, so the dependency is pinned to the 2.3 line).
//!
//! Register [`SAML20`] (`Registry::with_mechanisms(&[SAML20])`), then:
//! - client callbacks answer [`IdpIdentifier`] (and optionally rsasl's `AuthzId`,
//!   [`IdpHosts`], the IdP's single sign-on hosts, and [`ExpectedServer`], the server's SAML
//!   entityID, which together refuse a redirect relayed from another server; the second
//!   without the first refuses every redirect) and handle the action [`RedirectUrl`] (open it
//!   in the browser);
//! - server callbacks answer [`Config`] (an `Arc<ServerConfig>`) and [`SamlResponse`] (the XML
//!   the IdP posted to the ACS for the session whose [`RequestId`] is in the callback's
//!   context), and validate with the [`Authenticated`] outcome in the context.
//!
//! The [`SamlResponse`] callback may block until the Response arrives. After a Response that
//! anyone could have posted was refused, it is asked again, for the next one posted for that
//! request, up to [`crate::server::MAX_REFUSED_RESPONSES`] times. Answering nothing (e.g. at the
//! session's deadline) ends the session with the last refusal; so does answering the bytes of a
//! Response already refused (e.g. the latest one posted, when no other came since): the
//! callback has nothing new, and the repeat is not validated again
//! ([`crate::Error::RepeatedResponse`]; sasl review I4).
//!
//! Time and randomness come from the system here (an IO adapter; the sans-IO [`crate::server`]
//! takes them as inputs).

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use rsasl::mechanism::{
    Authentication, EmptyProvider, MechanismData, MechanismError, MechanismErrorKind, State,
    ThisProvider,
};
use rsasl::mechname::Mechname;
use rsasl::prelude::{Mechanism, MessageSent, SessionError};
use rsasl::property::{AuthzId, SizedProperty};
use rsasl::registry::{Matches, Named, Side};
use saml_core::protocol::{MemoryReplayCache, openssl_random};

use crate::client::{Client, RedirectPolicy, Step};
use crate::server::{Outcome, Server, ServerConfig};

/// Client property: the IdP identifier (a domain), `str`.
#[derive(Debug)]
pub struct IdpIdentifier;
impl rsasl::prelude::Property<'_> for IdpIdentifier {
    type Value = str;
}

/// Optional client property: the server's SAML entityID, `str`. When the callback answers
/// it, a redirect whose AuthnRequest another relying party issued is refused
/// ([`crate::client::RedirectPolicy::expected_sp`]).
#[derive(Debug)]
pub struct ExpectedServer;
impl rsasl::prelude::Property<'_> for ExpectedServer {
    type Value = str;
}

/// Optional client property: the hosts a redirect may go to (the IdP's single sign-on hosts,
/// `host` or `host:port`), separated by white space or commas, `str`
/// ([`crate::client::RedirectPolicy::idp_hosts`]). [`ExpectedServer`] protects only with it.
#[derive(Debug)]
pub struct IdpHosts;
impl rsasl::prelude::Property<'_> for IdpHosts {
    type Value = str;
}

/// Client action: the redirect URL to open, `str`.
#[derive(Debug)]
pub struct RedirectUrl;
impl rsasl::prelude::Property<'_> for RedirectUrl {
    type Value = str;
}

/// Server property: the relying party configuration.
#[derive(Debug)]
pub struct Config;
impl SizedProperty<'_> for Config {
    type Value = Arc<ServerConfig>;
}

/// Server context: the AuthnRequest ID of the session (InResponseTo of its SAML Response), `str`.
#[derive(Debug)]
pub struct RequestId;
impl rsasl::prelude::Property<'_> for RequestId {
    type Value = str;
}

/// Server property: the SAML Response XML from the ACS, `[u8]`.
#[derive(Debug)]
pub struct SamlResponse;
impl rsasl::prelude::Property<'_> for SamlResponse {
    type Value = [u8];
}

/// Server validation context: the successful outcome.
#[derive(Debug)]
pub struct Authenticated;
impl SizedProperty<'_> for Authenticated {
    type Value = Outcome;
}

/// A SAML20 error as an rsasl mechanism error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Saml20Error(#[from] pub crate::Error);

impl MechanismError for Saml20Error {
    fn kind(&self) -> MechanismErrorKind {
        match self.0.kind() {
            crate::ErrorKind::Malformed => MechanismErrorKind::Parse,
            crate::ErrorKind::Misuse | crate::ErrorKind::Crypto => MechanismErrorKind::Protocol,
            _ => MechanismErrorKind::Outcome,
        }
    }
}

fn err(e: crate::Error) -> SessionError {
    Saml20Error(e).into()
}

/// The rsasl client side.
#[derive(Debug, Default)]
pub struct ClientSide {
    client: Option<Client>,
}

impl Authentication for ClientSide {
    fn step(
        &mut self,
        session: &mut MechanismData<'_, '_>,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        match self.client.as_mut() {
            None => {
                let authzid = session
                    .maybe_need_with::<AuthzId, _, _>(&EmptyProvider, |a| Ok(a.to_owned()))?;
                let expected =
                    session.maybe_need_with::<ExpectedServer, _, _>(&EmptyProvider, |s| {
                        Ok(s.to_owned())
                    })?;
                let hosts = session.maybe_need_with::<IdpHosts, _, _>(&EmptyProvider, |h| {
                    Ok(h.split([' ', '\t', '\n', ','])
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>())
                })?;
                let mut client =
                    session.need_with::<IdpIdentifier, _, _>(&EmptyProvider, |idp| {
                        Client::new(authzid.as_deref().filter(|a| !a.is_empty()), idp).map_err(err)
                    })?;
                let mut policy = RedirectPolicy::default();
                if let Some(sp) = expected {
                    policy = policy.with_expected_sp(&sp);
                }
                if let Some(hosts) = hosts {
                    policy = policy.with_idp_hosts(hosts);
                }
                client = client.with_policy(policy);
                let step = match input {
                    // rsasl hands an empty challenge when the server spoke first.
                    Some(i) => client.handle_challenge(i).map_err(err)?,
                    None => Step::Send(client.initial_response().map_err(err)?),
                };
                let Step::Send(bytes) = step else {
                    return Err(err(crate::Error::Malformed(
                        "unexpected first challenge".into(),
                    )));
                };
                writer.write_all(&bytes)?;
                self.client = Some(client);
                Ok(State::Running)
            }
            Some(client) => {
                let challenge = input.ok_or(SessionError::InputDataRequired)?;
                let Step::OpenUrl { url, respond } =
                    client.handle_challenge(challenge).map_err(err)?
                else {
                    return Err(err(crate::Error::Malformed("unexpected challenge".into())));
                };
                session.action::<RedirectUrl>(&EmptyProvider, url.as_str())?;
                writer.write_all(&respond)?;
                Ok(State::Finished(MessageSent::Yes))
            }
        }
    }
}

/// The rsasl server side.
#[derive(Debug, Default)]
pub struct ServerSide {
    server: Option<Server>,
}

impl Authentication for ServerSide {
    fn step(
        &mut self,
        session: &mut MechanismData<'_, '_>,
        input: Option<&[u8]>,
        writer: &mut dyn Write,
    ) -> Result<State, SessionError> {
        let now = SystemTime::now();
        let mut random = openssl_random;
        match self.server.as_mut() {
            None => {
                let cfg = session.need_with::<Config, _, _>(&EmptyProvider, |c| Ok(c.clone()))?;
                let mut server = Server::new(cfg);
                let out = server.start(input, now, &mut random).map_err(err)?;
                writer.write_all(&out)?;
                self.server = Some(server);
                Ok(State::Running)
            }
            Some(server) => {
                let msg = input.ok_or(SessionError::InputDataRequired)?;
                if let Some(challenge) =
                    server.handle_response(msg, now, &mut random).map_err(err)?
                {
                    writer.write_all(&challenge)?;
                    return Ok(State::Running);
                }
                let id = server.request_id().unwrap_or_default().to_owned();
                // A fresh replay cache per session is enough here: the Response must answer this
                // session's own request, which completes with it.
                let mut replay = MemoryReplayCache::new();
                let mut refused = None;
                loop {
                    let xml = match session.need_with::<SamlResponse, _, _>(
                        &ThisProvider::<RequestId>::with(&id),
                        |xml| Ok(xml.to_vec()),
                    ) {
                        Ok(xml) => xml,
                        // No further Response: the session ends with why the last was refused.
                        Err(e) => return Err(refused.map_or(e, err)),
                    };
                    match server.handle_saml_response(&xml, SystemTime::now(), &mut replay) {
                        Ok(outcome) => {
                            session.validate(&ThisProvider::<Authenticated>::with(&outcome))?;
                            return Ok(State::Finished(MessageSent::No));
                        }
                        // The bytes of a Response already refused (not validated again): the
                        // callback has nothing new, as when it answers nothing (sasl review I4).
                        Err(crate::Error::RepeatedResponse) => {
                            return Err(err(refused.unwrap_or(crate::Error::RepeatedResponse)));
                        }
                        // A Response anyone could have posted: the callback is asked for the
                        // next one posted for this request (server module docs, "Who may end a
                        // session").
                        Err(e) if server.awaits_saml_response() => refused = Some(e),
                        Err(e) => return Err(err(e)),
                    }
                }
            }
        }
    }
}

struct Select;
impl Named for Select {
    fn mech() -> &'static Mechanism {
        &SAML20
    }
}

/// The SAML20 mechanism for rsasl's registry (the client goes first; offered only when the
/// server has a callback).
pub static SAML20: Mechanism = Mechanism::build(
    Mechname::const_new_unchecked(b"SAML20"),
    500,
    Some(|| Ok(Box::new(ClientSide::default()))),
    Some(|_| Ok(Box::new(ServerSide::default()))),
    Side::Client,
    |_| Some(Matches::<Select>::name()),
    |_| true,
);
