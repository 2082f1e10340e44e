//! The SAML20 client (RFC 6595 §3), sans-IO.
//!
//! ```text
//!            initial_response()                handle_challenge(url)           outcome(ok)
//!   Start ─────────────────────► Sent ─────────────────────────► Redirected ─────────────► Done
//!     │   handle_challenge("")     ▲    Step::OpenUrl { url, respond: "=" }      { url }   { url }
//!     └──────── (server cannot carry an initial response) ────┘
//! ```
//! The application opens the URL in the user's browser (or an authentication agent), which runs
//! the SAML flow with the IdP; the server learns the result from its ACS and reports success or
//! failure through the application protocol.
//!
//! ## Call order
//!
//! 1. [`Client::new`] (and optionally [`Client::with_policy`]).
//! 2. If the application protocol carries an initial response (XMPP, IMAP with SASL-IR), send
//!    [`Client::initial_response`]. Otherwise wait for the server's empty challenge and pass it
//!    to [`Client::handle_challenge`], which returns [`Step::Send`] with the initial response.
//! 3. Pass the server's next challenge (the redirect URI) to [`Client::handle_challenge`]: it
//!    returns [`Step::OpenUrl`]; open `url` in the user's browser or agent and send `respond`.
//! 4. When the application protocol reports success or failure, call [`Client::outcome`]; then
//!    [`Client::is_authenticated`] says whether the server accepted the client.
//!
//! Any error leaves the session failed (except [`Error::State`] for a call out of order, which
//! changes nothing); a failed session does not recover: start a new [`Client`].

use saml_core::bindings::redirect;
use saml_core::protocol::AuthnRequest;
use url::Url;

use crate::error::Error;
use crate::gs2::{InitialResponse, idp_identifier};

/// What the client checks in the server's redirect URI. Build it from
/// [`RedirectPolicy::default`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedirectPolicy {
    /// Refuse anything but `https` (RFC 6595 §6: the client must authenticate the server it is
    /// sent to). Default true; tests and loopback demos may allow `http`.
    pub require_https: bool,
    /// Largest URI accepted (default 16 KiB).
    pub max_len: usize,
    /// The SAML entityID of the server the client is talking to (its relying party, say
    /// `xmpp:chat.example.com`): when set, the AuthnRequest in the redirect must be issued by
    /// it. RFC 6595 binds nothing of the SASL session to the SAML exchange (the cb-flag is `n`,
    /// §3; §6 only asks the client to authenticate the server over TLS): a malicious
    /// server D can hand the client an AuthnRequest of another server E, whose ACS then
    /// receives the user's assertion and lets D in as the user. A client that knows its
    /// server's entityID refuses that redirect. Default: unset (not checked).
    pub expected_sp: Option<String>,
    /// Hosts the redirect may send the client's browser or agent to (the IdP's single sign-on
    /// hosts, compared without case; `host:port` for a port other than the scheme's): any
    /// other is refused, so that a server cannot point an automated agent at an arbitrary,
    /// perhaps internal, https URL. Default: empty (any host).
    ///
    /// [`RedirectPolicy::expected_sp`] protects only together with these: without them a
    /// server sends the client to a host of its own with a request it issued, and bounces the
    /// browser from there to another server's request (sasl review C1). A policy with
    /// `expected_sp` and no hosts refuses every redirect ([`Error::State`]).
    pub idp_hosts: Vec<String>,
}

/// The HTTP-Redirect binding's parameters (SAML Bindings §3.4.4.1).
const BINDING_PARAMETERS: [&str; 5] = [
    "SAMLRequest",
    "SAMLResponse",
    "RelayState",
    "SigAlg",
    "Signature",
];

/// Whether a raw `name=value` piece names a binding parameter, in any case.
fn is_binding_parameter(piece: &str) -> bool {
    let name = piece.split_once('=').map_or(piece, |(n, _)| n);
    BINDING_PARAMETERS
        .iter()
        .any(|b| b.eq_ignore_ascii_case(name))
}

/// `host` or `host:port` (`[v6]` or `[v6]:port`).
fn split_host_port(h: &str) -> (&str, Option<&str>) {
    if let Some(i) = h.rfind("]:") {
        (&h[..=i], Some(&h[i + 2..]))
    } else if h.starts_with('[') {
        (h, None)
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (h, None),
        }
    }
}

/// Largest AuthnRequest inflated from a redirect when [`RedirectPolicy::expected_sp`] is
/// checked.
const MAX_REQUEST_XML: usize = 64 << 10;

impl Default for RedirectPolicy {
    fn default() -> Self {
        RedirectPolicy {
            require_https: true,
            max_len: 16 << 10,
            expected_sp: None,
            idp_hosts: Vec::new(),
        }
    }
}

impl RedirectPolicy {
    /// Whether only `https` redirects are accepted (`false` admits `http`, for tests and
    /// loopback demos only).
    #[must_use]
    pub fn with_require_https(mut self, require_https: bool) -> Self {
        self.require_https = require_https;
        self
    }

    /// The largest redirect URI accepted, in bytes.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// Accepts only a redirect whose AuthnRequest is issued by `entity_id`, the server's SAML
    /// entityID (see [`RedirectPolicy::expected_sp`]).
    #[must_use]
    pub fn with_expected_sp(mut self, entity_id: &str) -> Self {
        self.expected_sp = Some(entity_id.to_owned());
        self
    }

    /// Accepts only redirects to these hosts (see [`RedirectPolicy::idp_hosts`]).
    #[must_use]
    pub fn with_idp_hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.idp_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }
}

/// What the application does next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a step says what to send or open next"]
pub enum Step {
    /// Send these bytes to the server (the initial response, after an empty challenge).
    Send(Vec<u8>),
    /// Open `url` in the user's browser or agent, and send `respond` (the single byte `=`).
    OpenUrl {
        /// The IdP redirect (SAML HTTP-Redirect binding with a SAMLRequest).
        url: String,
        /// The client's last message, `=`.
        respond: Vec<u8>,
    },
}

/// Where the session is; each state holds what it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Start,
    /// The initial response was sent; the redirect URI is expected.
    Sent,
    /// The redirect URI was handed out; the outcome is expected.
    Redirected { url: String },
    /// The server reported success.
    Done { url: String },
    /// Failed (by the peer, a refusal, or the server's report), with the URL if one was handed
    /// out.
    Failed { url: Option<String> },
}

/// A client session. See the [module docs](self) for the call order.
#[derive(Debug, Clone)]
pub struct Client {
    initial: InitialResponse,
    policy: RedirectPolicy,
    state: State,
}

impl Client {
    /// A client asking `idp` (a domain name; U-labels become A-labels) to authenticate it,
    /// optionally acting as `authzid`.
    pub fn new(authzid: Option<&str>, idp: &str) -> Result<Client, Error> {
        if authzid == Some("") {
            return Err(Error::State("an empty authzid: pass None".into()));
        }
        Ok(Client {
            initial: InitialResponse {
                authzid: authzid.map(str::to_owned),
                idp: idp_identifier(idp).map_err(|e| Error::State(e.to_string()))?,
            },
            policy: RedirectPolicy::default(),
            state: State::Start,
        })
    }

    /// Changes what redirects are accepted.
    #[must_use]
    pub fn with_policy(mut self, policy: RedirectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The initial response, for protocols that carry one (XMPP, IMAP with SASL-IR).
    pub fn initial_response(&mut self) -> Result<Vec<u8>, Error> {
        if self.state != State::Start {
            return Err(Error::State("the initial response was already sent".into()));
        }
        self.state = State::Sent;
        Ok(self.initial.encode())
    }

    /// Handles a server challenge: an empty one at the start (the protocol could not carry an
    /// initial response), then the redirect URI.
    pub fn handle_challenge(&mut self, challenge: &[u8]) -> Result<Step, Error> {
        match self.state {
            State::Start => {
                if !challenge.is_empty() {
                    self.state = State::Failed { url: None };
                    return Err(Error::Malformed(
                        "the first challenge must be empty when no initial response was sent"
                            .into(),
                    ));
                }
                Ok(Step::Send(self.initial_response()?))
            }
            State::Sent => match self.check_redirect(challenge) {
                Ok(url) => {
                    self.state = State::Redirected { url: url.clone() };
                    Ok(Step::OpenUrl {
                        url,
                        respond: b"=".to_vec(),
                    })
                }
                Err(e) => {
                    self.state = State::Failed { url: None };
                    Err(e)
                }
            },
            State::Redirected { .. } | State::Done { .. } | State::Failed { .. } => {
                let url = self.redirect_url().map(str::to_owned);
                self.state = State::Failed { url };
                Err(Error::Malformed(
                    "no further challenge is expected after the redirect".into(),
                ))
            }
        }
    }

    fn check_redirect(&self, challenge: &[u8]) -> Result<String, Error> {
        if challenge.len() > self.policy.max_len {
            return Err(Error::Malformed("the redirect URI is too long".into()));
        }
        let s = std::str::from_utf8(challenge)
            .map_err(|_| Error::Malformed("the redirect URI is not UTF-8".into()))?;
        let url = Url::parse(s).map_err(|e| Error::Malformed(format!("bad redirect URI: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if !self.policy.require_https => {}
            other => {
                return Err(Error::InsecureRedirect {
                    scheme: other.to_owned(),
                });
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Malformed("the redirect URI has no host".into()));
        }
        // Credentials in the URL would log an agent that honours them into the IdP as someone
        // else (sasl review C3).
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::RedirectRefused(
                "the redirect URI carries user credentials".into(),
            ));
        }
        // `;` is a parameter separator to some IdP stacks: a binding parameter hidden behind
        // one would be read there and not here (sasl review C2). So would a binding
        // parameter's name in another case.
        for piece in url.query().unwrap_or_default().split('&') {
            let hidden = piece.split(';').skip(1).any(is_binding_parameter);
            let name = piece.split_once('=').map_or(piece, |(n, _)| n);
            let recased = is_binding_parameter(piece) && !BINDING_PARAMETERS.contains(&name);
            if hidden || recased {
                return Err(Error::RedirectRefused(format!(
                    "the redirect's query has a binding parameter other parsers may read \
                     differently: {:?}",
                    piece.chars().take(64).collect::<String>()
                )));
            }
        }
        if self.policy.expected_sp.is_some() && self.policy.idp_hosts.is_empty() {
            return Err(Error::State(
                "the redirect policy names the expected server but no IdP hosts: a server \
                 could bounce the redirect through a host of its own (set idp_hosts)"
                    .into(),
            ));
        }
        if !url
            .query_pairs()
            .any(|(k, v)| k == "SAMLRequest" && !v.is_empty())
        {
            return Err(Error::Malformed(
                "the redirect URI carries no SAMLRequest (SAML HTTP-Redirect binding)".into(),
            ));
        }
        if !self.policy.idp_hosts.is_empty() {
            let host = url.host_str().unwrap_or_default();
            // `host` admits the scheme's own port only; `host:port` that port.
            let port = url.port();
            let allowed = |h: &String| {
                let (name, p) = split_host_port(h);
                name.eq_ignore_ascii_case(host)
                    && match p {
                        Some(p) => p.parse::<u16>().ok() == url.port_or_known_default(),
                        None => port.is_none(),
                    }
            };
            if !self.policy.idp_hosts.iter().any(allowed) {
                let shown = match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                };
                return Err(Error::RedirectRefused(format!(
                    "the redirect goes to {shown:?}, not to one of the IdP's hosts"
                )));
            }
        }
        if let Some(sp) = &self.policy.expected_sp {
            let msg = redirect::decode(url.query().unwrap_or_default(), MAX_REQUEST_XML)
                .map_err(|e| Error::Malformed(format!("the redirect's SAMLRequest: {e}")))?;
            let request = AuthnRequest::parse(&msg.xml)
                .map_err(|e| Error::Malformed(format!("the redirect's AuthnRequest: {e}")))?;
            if request.issuer != *sp {
                return Err(Error::RedirectRefused(format!(
                    "the AuthnRequest is issued by {:?}, not by this server ({sp:?}): \
                     relayed from another relying party?",
                    request.issuer
                )));
            }
        }
        // Hand out the URL as parsed and checked (a lenient form such as `https:/host` becomes
        // `https://host/`), never the raw text (found by fuzzing).
        Ok(url.into())
    }

    /// The URL handed out by the last step, if any.
    #[must_use]
    pub fn redirect_url(&self) -> Option<&str> {
        match &self.state {
            State::Redirected { url } | State::Done { url } => Some(url),
            State::Failed { url } => url.as_deref(),
            State::Start | State::Sent => None,
        }
    }

    /// Records the outcome the application protocol reported (`<success/>` or `<failure/>`).
    pub fn outcome(&mut self, success: bool) -> Result<(), Error> {
        let State::Redirected { url } = &mut self.state else {
            return Err(Error::State(
                "an outcome before the exchange completed".into(),
            ));
        };
        let url = std::mem::take(url);
        self.state = if success {
            State::Done { url }
        } else {
            State::Failed { url: Some(url) }
        };
        Ok(())
    }

    /// Whether the server reported success.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }
}
