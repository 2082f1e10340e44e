//! The SAML20 server (RFC 6595 §3), sans-IO: a SAML relying party behind a SASL mechanism.
//!
//! ```text
//!  start(None) ──► "" ──► AwaitInitial ──handle_response(initial)──┐
//!  start(Some(initial)) ───────────────────────────────────────────┴─► challenge: redirect URI
//!      AwaitEquals { session } ──handle_response("=")──► AwaitSaml { session }
//!      AwaitSaml { session } ──handle_saml_response(xml from the ACS)──► Done { session } + Outcome
//!                                                                      | Failed + Error
//!                                 (a Response anyone could have posted) └► AwaitSaml + Error
//!  session = { initial response, resolved IdP, request_id, deadline }
//! ```
//! Each state holds exactly what it knows: there is no "session state lost" path.
//!
//! ## Call order
//!
//! 1. [`Server::new`] with the shared [`ServerConfig`].
//! 2. [`Server::start`] with the client's initial response if the application protocol carried
//!    one (it returns the challenge: the redirect URI), else with `None` (it returns the empty
//!    challenge; then pass the client's next message, the initial response, to
//!    [`Server::handle_response`], which returns the redirect URI).
//! 3. Send the challenge; remember [`Server::request_id`] to route the SAML Response from the
//!    ACS to this session.
//! 4. Pass the client's last message to [`Server::handle_response`]: it must be exactly `=`, and
//!    the answer is `None` (no further challenge).
//! 5. While waiting, arm a timer for [`Server::deadline`] and call [`Server::handle_timeout`]
//!    when it fires.
//! 6. When the IdP posts the Response to the ACS, decode it from its binding and pass it to
//!    [`Server::handle_saml_response`]: an [`Outcome`] means report success. After an error,
//!    ask [`Server::awaits_saml_response`]: if the session still waits, the refused Response
//!    may have come from anyone (see below) and the genuine one can still complete the login;
//!    otherwise report failure ([`Error::xmpp_condition`] for XMPP).
//!
//! Any other error except [`Error::State`] (a call out of order, which changes nothing) fails
//! the session for good.
//!
//! ## Who may end a session
//! The ACS is public and routes by the Response's unsigned `InResponseTo`, and the request ID
//! travels in the redirect URL (browser history, proxies, IdP logs): whoever learnt it can post
//! a Response for this session. A Response refused before it proved to be the IdP's answer to
//! this request (malformed, unsigned or badly signed, a replay, another request's, an error
//! status the IdP did not sign) therefore leaves the session waiting; only a Response the IdP
//! signed for this request (an error status it signed, or an assertion refused by the identity
//! or authzid policy), the deadline, or the [`MAX_REFUSED_RESPONSES`]th refused Response ends
//! it. A genuine answer refused for a reason of its own (an expired or mis-addressed
//! assertion) ends the session at its deadline.
//! A Response identical (by SHA-256) to one the session already refused is refused again as
//! [`Error::RepeatedResponse`] before it is parsed, and the session still waits (sasl review
//! I4): it is not validated again, but counts like any refused Response, so that a caller
//! looping while the session waits on a source that repeats itself still ends. Validated
//! again, the same bytes would be refused for the same reason, unless time lifts it: a
//! Response refused as not valid yet (`ProtocolError::NotYetValid`, the IdP's clock ahead
//! beyond the skew) is not remembered, and is validated again when posted again.
//!
//! Nothing in RFC 6595's flow binds the browser that completes the login at the IdP to the
//! SASL client that started it: a client that gets someone with a session at their IdP to open
//! its redirect URL (a link in a chat message) is authenticated as them, the IdP answering
//! without a prompt (review S8 of session 28). [`ServerConfig::force_authn`] makes the IdP ask
//! for credentials again, so that the user at least sees a login naming the server; an ACS
//! that shows a page naming the client (its address or JID) and asks for a click before it
//! hands the Response to the session closes the rest.
//!
//! The AuthnRequest ID ties the SASL session to the SAML Response that the IdP posts to the
//! server's AssertionConsumerService, possibly much later and over another connection: the
//! application routes a Response to the session whose [`Server::request_id`] equals its
//! InResponseTo. Time and randomness are inputs.
//!
//! ## Identity guarantee
//!
//! A server typically trusts several IdPs (a federation), and any of them can sign any name.
//! RFC 6595 §6 leaves it to the server to decide which identities an IdP may assert; this
//! server decides with [`ServerConfig::identity_policy`], whose default,
//! [`IdentityPolicy::Scoped`], is the federation rule of Shibboleth's `shibmd:Scope`
//! (namespace `urn:mace:shibboleth:metadata:1.0`, as Shibboleth SPs apply it to scoped
//! attributes): a *scoped* name (`user@domain`: the NameID
//! value or the requested authzid) is accepted only when `domain` is exactly one of the
//! asserting IdP's [`ResolvedIdp::scopes`]; anything else is [`Error::OutOfScope`]. The domain
//! the client named in its initial response counts only when the resolver lists it among the
//! IdP's scopes ([`crate::resolver::StaticResolver`] does for the domain an entry is inserted
//! under; [`crate::resolver::MetadataResolver`] only for a literal `shibmd:Scope`, never for a
//! `mdui:DomainHint`).
//!
//! The same rule applies to the values of scoped attributes ([`ServerConfig::scoped_attributes`],
//! default [`SCOPED_ATTRIBUTES`] and [`SCOPED_FRIENDLY_NAMES`]: eduPersonPrincipalName,
//! eduPersonScopedAffiliation, eduPersonUniqueId, eduPersonPrincipalNamePrior, subject-id,
//! pairwise-id, by their SAML names or friendly names, matched against an attribute's `Name`
//! and its `FriendlyName`): a value outside the IdP's scopes is dropped
//! from [`Outcome::attributes`], whatever the identity policy. A scope must be written as it
//! is normalized (ASCII A-labels, no trailing dot), and a name is never empty.
//!
//! A successful [`Outcome`] gives no bare name: its [`Identity`] values carry the asserting
//! IdP's entityID with the name, and only a name whose scope was checked is available alone
//! ([`Identity::scoped_name`]). Key accounts on [`Identity::qualified`] (IdP, name) otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openssl::pkey::{PKey, Private};
use saml_core::bindings::{MessageKind, redirect};
use saml_core::dsig::SigningKey;
use saml_core::protocol::{
    Attribute, AuthnRequest, BINDING_HTTP_POST, NameId, ProtocolError, ReplayCache, RequestTracker,
    ResponseValidator, ValidatedResponse, new_id,
};

use crate::error::Error;
use crate::gs2::InitialResponse;
use crate::resolver::{IdpResolver, ResolvedIdp};

/// Decides whether the authenticated subject (an [`Identity`] that already passed the
/// [`IdentityPolicy`]) may act as the requested authzid. The authzid then passes the identity
/// policy too, as a name asserted by the same IdP.
pub type AuthzPolicy = Arc<dyn Fn(&Identity, &str) -> bool + Send + Sync>;

/// Which names an IdP may assert (the NameID value, and the authzid it authorizes). See the
/// [module docs](self) for the rule and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdentityPolicy {
    /// The default. A scoped name (`local@domain`, split at the last `@`) must have `domain`
    /// (IDNA-normalized) equal to one of the asserting IdP's [`ResolvedIdp::scopes`]; a name
    /// that looks scoped but whose domain is not a domain name is refused too. An unscoped
    /// name (a persistent or transient NameID such as `3f7b…`) is accepted, and is only
    /// meaningful together with its IdP ([`Identity::qualified`]; [`Identity::scoped_name`] is
    /// `None`).
    #[default]
    Scoped,
    /// Like [`IdentityPolicy::Scoped`], and unscoped names are refused: every accepted identity
    /// has a checked scope. For deployments that key accounts on scoped names alone.
    RequireScoped,
    /// No check: any trusted IdP may assert any name. Only for a server that trusts a single
    /// IdP, or that keys everything on [`Identity::qualified`]; [`Identity::scoped_name`] is
    /// then always `None`.
    AnyName,
}

/// An authenticated (or authorized) identity: a name together with the IdP that asserted it.
///
/// There is deliberately no accessor for the name alone unless its scope was checked: two IdPs
/// may each assert `alice`, and only the pair tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    idp: String,
    name: String,
    scope: Option<String>,
}

impl Identity {
    /// The asserting IdP's entityID.
    pub fn idp(&self) -> &str {
        &self.idp
    }

    /// The (IdP entityID, name) pair: the key to store an account under.
    pub fn qualified(&self) -> (&str, &str) {
        (&self.idp, &self.name)
    }

    /// The name, when it is scoped and its scope was checked against the IdP's scopes: a name
    /// that no other IdP of the federation could have asserted unless it shares the scope.
    pub fn scoped_name(&self) -> Option<&str> {
        self.scope.is_some().then_some(self.name.as_str())
    }

    /// The checked scope (normalized domain) of the name, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Applies `policy` to `name` asserted by `idp`. `authzid` only says which one failed.
    fn check(
        policy: IdentityPolicy,
        idp: &ResolvedIdp,
        name: &str,
        authzid: bool,
    ) -> Result<Identity, Error> {
        let refuse = |reason: &str| Error::OutOfScope {
            idp: idp.entity_id.clone(),
            name: name.to_owned(),
            authzid,
            reason: reason.to_owned(),
        };
        // An empty (or white-space) name would make every such user one account.
        if name.trim().is_empty() {
            return Err(refuse("an empty name"));
        }
        let scope = match (policy, name.rsplit_once('@')) {
            (IdentityPolicy::AnyName, _) => None,
            (IdentityPolicy::RequireScoped, None) => {
                return Err(refuse("the policy requires a scoped name (user@domain)"));
            }
            (_, None) => None,
            // user@domain with one '@' and a user part (eduPersonPrincipalName): with more, a
            // reader splitting at the first '@' would take another domain for the scope.
            (_, Some((user, _))) if user.is_empty() || user.contains('@') => {
                return Err(refuse("a scoped name is user@domain with one @"));
            }
            (_, Some((_, domain))) => Some(checked_scope(idp, domain).map_err(refuse)?),
        };
        Ok(Identity {
            idp: idp.entity_id.clone(),
            name: name.to_owned(),
            scope,
        })
    }
}

/// The normalized scope of `domain` (the part after the `@` of a scoped name) if it is one of
/// `idp`'s scopes and written in that form already (ASCII, A-labels, no trailing dot; ASCII
/// case ignored). A name kept as written that normalizes to the IdP's scope (`faß.de` to
/// `xn--fa-hia.de`) could read as another organisation's domain to a consumer normalizing
/// otherwise (IDNA2003 or transitional processing maps it to `fass.de`).
fn checked_scope(idp: &ResolvedIdp, domain: &str) -> Result<String, &'static str> {
    let d = crate::gs2::idp_identifier(domain).map_err(|_| "the scope is not a domain name")?;
    if !idp.has_scope(&d) {
        return Err("the scope is not one of the IdP's scopes");
    }
    if !domain.eq_ignore_ascii_case(&d) {
        return Err("the scope is not written in its canonical form (ASCII A-labels)");
    }
    Ok(d)
}

/// Whether `value` of a scoped attribute (`user@scope`) is one `idp` may assert: exactly one
/// `@`, a user part, and a scope of the IdP written canonically ([`checked_scope`]).
fn scoped_value_allowed(idp: &ResolvedIdp, value: &str) -> bool {
    match value.split_once('@') {
        Some((user, domain)) if !user.is_empty() && !domain.contains('@') => {
            checked_scope(idp, domain).is_ok()
        }
        _ => false,
    }
}

/// Responses a session refuses while it waits (each is validated: signature, decryption; but a
/// repeat of one already refused is not, [`Error::RepeatedResponse`]) before it fails for good:
/// a bound on the work one session does for posts that may come from anyone.
pub const MAX_REFUSED_RESPONSES: u32 = 8;

/// The attributes whose values are scoped (`user@scope`) and checked against the asserting
/// IdP's `shibmd:Scope`s by default ([`ServerConfig::scoped_attributes`], with
/// [`SCOPED_FRIENDLY_NAMES`]), as Shibboleth SP's attribute map declares them: saml-core's one
/// list (review S1: eduPersonPrincipalNamePrior, and the friendly names a SimpleSAMLphp IdP
/// sends, went through unchecked).
pub use saml_core::protocol::scoped::{SCOPED_ATTRIBUTES, SCOPED_FRIENDLY_NAMES};

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (asserted by {})", self.name, self.idp)
    }
}

/// Server configuration, shared by its sessions. Build it with [`ServerConfig::new`], then set
/// fields or use the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// This relying party's entityID.
    pub sp_entity_id: String,
    /// Its AssertionConsumerService URL (HTTP-POST).
    pub acs_url: String,
    /// Which IdP serves a domain.
    pub resolver: Arc<dyn IdpResolver>,
    /// Signs the Redirect query when set (for IdPs with WantAuthnRequestsSigned).
    pub signing_key: Option<SigningKey>,
    /// Decryption keys for encrypted assertions.
    pub decryption_keys: Vec<PKey<Private>>,
    /// How long a session waits for the SAML Response after the challenge (default 5 minutes).
    pub session_timeout: Duration,
    /// Clock skew allowed in SAML validation (default 3 minutes).
    pub clock_skew: Duration,
    /// Whether an authzid is allowed for a subject. Without a policy an authzid other than the
    /// subject's NameID value is refused.
    pub authorize: Option<AuthzPolicy>,
    /// Which names the asserting IdP may assert (default [`IdentityPolicy::Scoped`]).
    pub identity_policy: IdentityPolicy,
    /// Attributes (by `Name` or `FriendlyName`, without ASCII case) whose values are scoped: a
    /// value whose scope is not one of the asserting IdP's `shibmd:Scope`s (or that is not
    /// `user@scope`) is dropped from [`Outcome::attributes`], as Shibboleth SP does (default
    /// [`SCOPED_ATTRIBUTES`] and [`SCOPED_FRIENDLY_NAMES`];
    /// whatever [`ServerConfig::identity_policy`] says). Without it any IdP of the federation
    /// could assert `admin@uni-a.example` as eduPersonPrincipalName.
    pub scoped_attributes: Vec<String>,
    /// Whether the AuthnRequest asks the IdP to authenticate the user again (`ForceAuthn`,
    /// SAML Core §3.4.1), even with a session there: the user then sees a login prompt before
    /// the SASL client is authenticated as them (see "Who may end a session"). An assertion
    /// whose `AuthnInstant` is earlier than the request (less the clock skew), from an IdP that
    /// does not honour it, then fails the session. Default false.
    pub force_authn: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("sp_entity_id", &self.sp_entity_id)
            .field("acs_url", &self.acs_url)
            .field("session_timeout", &self.session_timeout)
            .field("identity_policy", &self.identity_policy)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// A configuration for the relying party `sp_entity_id` receiving at `acs_url`.
    pub fn new(sp_entity_id: &str, acs_url: &str, resolver: Arc<dyn IdpResolver>) -> Self {
        ServerConfig {
            sp_entity_id: sp_entity_id.to_owned(),
            acs_url: acs_url.to_owned(),
            resolver,
            signing_key: None,
            decryption_keys: Vec::new(),
            session_timeout: Duration::from_secs(300),
            clock_skew: Duration::from_secs(180),
            authorize: None,
            identity_policy: IdentityPolicy::Scoped,
            scoped_attributes: SCOPED_ATTRIBUTES
                .iter()
                .chain(SCOPED_FRIENDLY_NAMES.iter())
                .map(|&a| a.to_owned())
                .collect(),
            force_authn: false,
        }
    }

    /// Asks the IdP to authenticate the user again ([`ServerConfig::force_authn`]).
    #[must_use]
    pub fn with_force_authn(mut self, force: bool) -> Self {
        self.force_authn = force;
        self
    }

    /// Which attributes' values are scoped and checked (see
    /// [`ServerConfig::scoped_attributes`]; an empty list checks none).
    #[must_use]
    pub fn with_scoped_attributes(mut self, names: &[&str]) -> Self {
        self.scoped_attributes = names.iter().map(|&a| a.to_owned()).collect();
        self
    }

    /// Signs the Redirect query with `key` (for IdPs with WantAuthnRequestsSigned).
    #[must_use]
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// How long a session waits for the SAML Response after the challenge.
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Whether an authzid is allowed for a subject.
    #[must_use]
    pub fn with_authorize(mut self, policy: AuthzPolicy) -> Self {
        self.authorize = Some(policy);
        self
    }

    /// Which names the asserting IdP may assert.
    #[must_use]
    pub fn with_identity_policy(mut self, policy: IdentityPolicy) -> Self {
        self.identity_policy = policy;
        self
    }
}

/// A successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "the outcome names who authenticated"]
pub struct Outcome {
    /// Who the session acts as: the authorized authzid when the client asked for one, else the
    /// subject. Checked against [`ServerConfig::identity_policy`].
    pub identity: Identity,
    /// The authenticated subject (the NameID value), checked likewise.
    pub subject: Identity,
    /// The attributes released, values of [`ServerConfig::scoped_attributes`] outside the
    /// asserting IdP's scopes dropped (an attribute left without values is left out).
    pub attributes: Vec<Attribute>,
    /// The IdP session index.
    pub session_index: Option<String>,
    /// The subject's NameID as asserted, for SAML Single Logout (SAML Core §3.7) only: its
    /// value is not an identity without the IdP (use [`Outcome::identity`]).
    pub logout_name_id: NameId,
}

/// What a session knows once it has read the initial response and sent the challenge.
#[derive(Debug)]
struct Session {
    initial: InitialResponse,
    idp: ResolvedIdp,
    request_id: String,
    /// When the AuthnRequest was issued (its IssueInstant).
    issued: SystemTime,
    deadline: SystemTime,
    /// Responses refused while waiting (see [`MAX_REFUSED_RESPONSES`]).
    refused: u32,
    /// The SHA-256 of each Response validated and refused while waiting (at most
    /// [`MAX_REFUSED_RESPONSES`]): a repeat of one is refused without validation
    /// ([`Error::RepeatedResponse`]).
    refused_digests: Vec<[u8; 32]>,
}

/// Where the session is; each state holds what it knows.
#[derive(Debug)]
enum State {
    /// [`Server::start`] not called yet.
    Start,
    /// The empty challenge was sent; the initial response is expected.
    AwaitInitial,
    /// The redirect URI was sent; the client's `=` is expected.
    AwaitEquals(Session),
    /// The SAML Response from the ACS is expected.
    AwaitSaml(Session),
    /// Authenticated.
    Done(Session),
    /// Failed for good, with what the session knew when it failed, if anything.
    Failed(Option<Session>),
}

impl State {
    fn session(&self) -> Option<&Session> {
        match self {
            State::AwaitEquals(s) | State::AwaitSaml(s) | State::Done(s) => Some(s),
            State::Failed(s) => s.as_ref(),
            State::Start | State::AwaitInitial => None,
        }
    }

    /// The session, leaving `Failed` (with the session) behind.
    fn take(&mut self) -> Option<Session> {
        match std::mem::replace(self, State::Failed(None)) {
            State::AwaitEquals(s) | State::AwaitSaml(s) | State::Done(s) => Some(s),
            State::Failed(s) => s,
            State::Start | State::AwaitInitial => None,
        }
    }
}

/// One server session. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Server {
    cfg: Arc<ServerConfig>,
    state: State,
}

/// How a refused Response leaves the session.
enum Decision {
    /// It ends the session: the IdP's own answer to this request was refused, or the deadline
    /// passed.
    Final(Error),
    /// It may have come from anyone: the session still waits.
    Refused(Error),
    /// It is identical to a Response this session already refused: not validated again.
    Repeated,
}

/// A [`RequestTracker`] holding this session's one request.
struct One<'a> {
    id: &'a str,
    deadline: SystemTime,
}

impl RequestTracker for One<'_> {
    // The validator is built for this session's one IdP, so the IdP needs no second check.
    fn is_outstanding(&self, id: &str, _idp: &str, now: SystemTime) -> bool {
        id == self.id && now < self.deadline
    }
    fn consume(&mut self, id: &str, idp: &str, now: SystemTime) -> bool {
        self.is_outstanding(id, idp, now)
    }
}

impl Server {
    /// A new session.
    pub fn new(cfg: Arc<ServerConfig>) -> Self {
        Server {
            cfg,
            state: State::Start,
        }
    }

    /// Fails the session (keeping what it knew) with `e`.
    fn fail<T>(&mut self, e: Error) -> Result<T, Error> {
        let session = self.state.take();
        self.state = State::Failed(session);
        Err(e)
    }

    /// Starts the exchange. With the client's initial response, returns the challenge (the
    /// redirect URI); without (the protocol could not carry it), returns the empty challenge.
    pub fn start(
        &mut self,
        initial: Option<&[u8]>,
        now: SystemTime,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, Error> {
        if !matches!(self.state, State::Start) {
            return Err(Error::State("the session was already started".into()));
        }
        match initial {
            None => {
                self.state = State::AwaitInitial;
                Ok(Vec::new())
            }
            Some(m) => self.initial(m, now, random),
        }
    }

    /// Handles a client response: the initial response (after an empty challenge), returning
    /// the challenge; or the final `=`, returning `None` (wait for the SAML Response). A message
    /// after success is refused ([`Error::Malformed`]) and the session stays authenticated.
    pub fn handle_response(
        &mut self,
        msg: &[u8],
        now: SystemTime,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Option<Vec<u8>>, Error> {
        match &self.state {
            State::AwaitInitial => self.initial(msg, now, random).map(Some),
            State::AwaitEquals(session) => {
                if now >= session.deadline {
                    return self.fail(Error::Timeout);
                }
                if msg != b"=" {
                    return self.fail(Error::Malformed(
                        "the client's last message must be exactly \"=\" (RFC 6595 §3.3)".into(),
                    ));
                }
                if let Some(session) = self.state.take() {
                    self.state = State::AwaitSaml(session);
                }
                Ok(None)
            }
            State::Start => Err(Error::State("call start first".into())),
            // RFC 6595 §3.3: "=" is the client's last message. After success, a further message
            // is refused, but it cannot undo an authentication the server already reported.
            State::Done(_) => Err(Error::Malformed(
                "no client message is expected after success".into(),
            )),
            State::AwaitSaml(_) | State::Failed(_) => {
                self.fail(Error::Malformed("no client message expected now".into()))
            }
        }
    }

    fn initial(
        &mut self,
        msg: &[u8],
        now: SystemTime,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, Error> {
        let init = match InitialResponse::parse(msg) {
            Ok(i) => i,
            Err(e) => return self.fail(e),
        };
        let Some(idp) = self.cfg.resolver.resolve(&init.idp) else {
            let e = Error::UnknownIdp {
                domain: init.idp.clone(),
            };
            return self.fail(e);
        };
        if idp.wants_signed_requests && self.cfg.signing_key.is_none() {
            let e = Error::SigningKeyNeeded {
                idp: idp.entity_id.clone(),
            };
            return self.fail(e);
        }
        let id = new_id(random);
        let mut req = AuthnRequest::new(id.clone(), &self.cfg.sp_entity_id, now);
        req.destination = Some(idp.sso_url.clone());
        req.acs_url = Some(self.cfg.acs_url.clone());
        req.protocol_binding = Some(BINDING_HTTP_POST.into());
        if self.cfg.force_authn {
            req.force_authn = Some(true);
        }
        let query = match redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            None,
            self.cfg.signing_key.as_ref(),
            None,
        ) {
            Ok(q) => q,
            Err(e) => return self.fail(Error::Temporary(format!("cannot build the request: {e}"))),
        };
        let url = redirect::url(&idp.sso_url, &query);
        self.state = State::AwaitEquals(Session {
            initial: init,
            idp,
            request_id: id,
            issued: now,
            refused: 0,
            refused_digests: Vec::new(),
            // A timeout whose sum does not fit saturates (a configuration value; never a panic).
            deadline: now
                .checked_add(self.cfg.session_timeout)
                .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
                .unwrap_or(now),
        });
        Ok(url.into_bytes())
    }

    /// The AuthnRequest ID of this session (the InResponseTo its SAML Response must carry),
    /// once the challenge was built.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        self.state.session().map(|s| s.request_id.as_str())
    }

    /// The client's requested authzid and IdP identifier, once the initial response was read.
    #[must_use]
    pub fn initial_response(&self) -> Option<&InitialResponse> {
        self.state.session().map(|s| &s.initial)
    }

    /// When the session expires (`poll_timeout`-style), while it waits for `=` or the SAML
    /// Response.
    #[must_use]
    pub fn deadline(&self) -> Option<SystemTime> {
        match &self.state {
            State::AwaitEquals(s) | State::AwaitSaml(s) => Some(s.deadline),
            _ => None,
        }
    }

    /// Fails the session if `now` is past its deadline.
    pub fn handle_timeout(&mut self, now: SystemTime) -> Result<(), Error> {
        if self.deadline().is_some_and(|d| now >= d) {
            return self.fail(Error::Timeout);
        }
        Ok(())
    }

    /// Decides the outcome from the SAML Response posted to the ACS for this session (decoded
    /// from its binding). On success the session is done. On an error it has failed, unless
    /// the Response may have come from anyone ([module docs](self#who-may-end-a-session)):
    /// then the session still waits ([`Server::awaits_saml_response`]) for the genuine one.
    /// The bytes of a Response this session already refused are refused again, unvalidated,
    /// as [`Error::RepeatedResponse`] (nothing new arrived; the session still waits unless
    /// this was the [`MAX_REFUSED_RESPONSES`]th refused Response).
    pub fn handle_saml_response(
        &mut self,
        xml: &[u8],
        now: SystemTime,
        replay: &mut dyn ReplayCache,
    ) -> Result<Outcome, Error> {
        let State::AwaitSaml(session) = &self.state else {
            return Err(Error::State(
                "no SAML Response expected in this state (the client has not sent \"=\")".into(),
            ));
        };
        let digest = openssl::sha::sha256(xml);
        match self.decide(session, xml, &digest, now, replay) {
            Ok(outcome) => {
                if let Some(session) = self.state.take() {
                    self.state = State::Done(session);
                }
                Ok(outcome)
            }
            Err(Decision::Final(e)) => self.fail(e),
            // One refused only because it is not valid yet (the IdP's clock ahead beyond the
            // skew) may pass later: not remembered (review of the eighth round, F7).
            Err(Decision::Refused(e)) => {
                let later = matches!(
                    e,
                    Error::Saml(saml_core::Error::Protocol(
                        ProtocolError::NotYetValid { .. }
                    ))
                );
                self.refuse(e, (!later).then_some(digest))
            }
            // Nothing new: not validated again, counted all the same (sasl review I4).
            Err(Decision::Repeated) => self.refuse(Error::RepeatedResponse, None),
        }
    }

    /// Counts a refused Response (remembering the `digest` of one that was validated), and
    /// fails the session at the [`MAX_REFUSED_RESPONSES`]th.
    fn refuse<T>(&mut self, e: Error, digest: Option<[u8; 32]>) -> Result<T, Error> {
        let State::AwaitSaml(session) = &mut self.state else {
            return self.fail(e);
        };
        session.refused_digests.extend(digest);
        session.refused += 1;
        if session.refused >= MAX_REFUSED_RESPONSES {
            return self.fail(e);
        }
        Err(e)
    }

    /// Whether the session waits for the SAML Response (the client sent `=`, and no Response
    /// ended it yet): after an error from [`Server::handle_saml_response`], whether the
    /// genuine Response can still complete the login.
    #[must_use]
    pub fn awaits_saml_response(&self) -> bool {
        matches!(self.state, State::AwaitSaml(_))
    }

    /// Validates `xml` (whose SHA-256 is `digest`) for `session`, and applies the identity and
    /// authzid policies.
    fn decide(
        &self,
        session: &Session,
        xml: &[u8],
        digest: &[u8; 32],
        now: SystemTime,
        replay: &mut dyn ReplayCache,
    ) -> Result<Outcome, Decision> {
        let Session {
            initial,
            idp,
            request_id,
            issued,
            deadline,
            refused_digests,
            ..
        } = session;
        if now >= *deadline {
            return Err(Decision::Final(Error::Timeout));
        }
        // Before any parsing: a repeat would be refused for the same reason (sasl review I4).
        if refused_digests.contains(digest) {
            return Err(Decision::Repeated);
        }
        let mut v = ResponseValidator::new(
            &self.cfg.sp_entity_id,
            &self.cfg.acs_url,
            &idp.entity_id,
            idp.keys.clone(),
        );
        v.decryption_keys = self.cfg.decryption_keys.clone();
        v.clock_skew = self.cfg.clock_skew;
        let mut tracker = One {
            id: request_id,
            deadline: *deadline,
        };
        let ok = v
            .validate(xml, now, &mut tracker, replay)
            .map_err(|e| match e {
                // The IdP's own refusal of this request.
                saml_core::Error::Protocol(ProtocolError::Status {
                    authentic: true, ..
                }) => Decision::Final(e.into()),
                // Not shown to be the IdP's answer to this request: anyone's post.
                e => Decision::Refused(e.into()),
            })?;
        // With ForceAuthn, the user authenticated after the request was issued: an IdP that
        // does not honour it (Okta with "Honor Force Authentication" off, some SimpleSAMLphp
        // sources) answers from its session without a prompt, which force_authn exists to
        // prevent (review G7). The IdP's own answer to this request: final.
        if self.cfg.force_authn {
            let earliest = issued.checked_sub(self.cfg.clock_skew).unwrap_or(*issued);
            if let Some(s) = ok
                .assertion
                .authn_statements
                .iter()
                .find(|s| s.authn_instant < earliest)
            {
                return Err(Decision::Final(
                    saml_core::Error::Protocol(ProtocolError::StaleAuthentication {
                        requested: saml_core::time::format_datetime(*issued),
                        authenticated: saml_core::time::format_datetime(s.authn_instant),
                    })
                    .into(),
                ));
            }
        }
        self.settle(idp, initial, ok).map_err(Decision::Final)
    }

    /// The outcome of the IdP's validated answer to this session's request: the identity and
    /// authzid policies, the scoped attributes.
    fn settle(
        &self,
        idp: &ResolvedIdp,
        initial: &InitialResponse,
        ok: ValidatedResponse,
    ) -> Result<Outcome, Error> {
        let Some(name_id) = ok.name_id().cloned() else {
            return Err(Error::NoNameId);
        };
        let policy = self.cfg.identity_policy;
        let subject = Identity::check(policy, idp, &name_id.value, false)?;
        let identity = match &initial.authzid {
            None => subject.clone(),
            Some(a) => {
                let allowed = match &self.cfg.authorize {
                    Some(f) => f(&subject, a),
                    None => *a == name_id.value,
                };
                if !allowed {
                    return Err(Error::AuthzidRefused {
                        subject,
                        authzid: a.clone(),
                    });
                }
                Identity::check(policy, idp, a, true)?
            }
        };
        let session_index = ok.session_index().map(str::to_owned);
        let mut attributes = ok.assertion.attributes;
        attributes.retain_mut(|a| {
            // By its Name or its FriendlyName: an application that reads an attribute by the
            // friendly name its IdPs send must not get one no scope check saw.
            let names = std::iter::once(a.name.as_str()).chain(a.friendly_name.as_deref());
            let scoped = names.map(saml_core::xml::cursor::xml_trim).any(|name| {
                self.cfg
                    .scoped_attributes
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
            });
            if !scoped {
                return true;
            }
            a.values.retain(|v| scoped_value_allowed(idp, v));
            !a.values.is_empty()
        });
        Ok(Outcome {
            identity,
            subject,
            session_index,
            logout_name_id: name_id,
            attributes,
        })
    }

    /// Whether the session ended in success.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Done(_))
    }
}
