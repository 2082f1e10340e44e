//! The SAML20 client (RFC 6595 §3), sans-IO.
//!
//! ```text
//!            initial_response()                handle_challenge(url)           outcome(ok)
//!   Start ─────────────────────► Sent ─────────────────────────► Redirected ─────────────► Done
//!     │   handle_challenge("")     ▲    Step::OpenUrl { url, respond: "=" }
//!     └──────── (server cannot carry an initial response) ────┘
//! ```
//! The application opens the URL in the user's browser (or an authentication agent), which runs
//! the SAML flow with the IdP; the server learns the result from its ACS and reports success or
//! failure through the application protocol.

use url::Url;

use crate::error::Error;
use crate::gs2::{InitialResponse, idp_identifier};

/// What the client checks in the server's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// Refuse anything but `https` (RFC 6595 §6: the client must authenticate the server it is
    /// sent to). Default true; tests and loopback demos may allow `http`.
    pub require_https: bool,
    /// Largest URI accepted (default 16 KiB).
    pub max_len: usize,
}

impl Default for RedirectPolicy {
    fn default() -> Self {
        RedirectPolicy {
            require_https: true,
            max_len: 16 << 10,
        }
    }
}

/// What the application does next.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Start,
    Sent,
    Redirected,
    Done,
    Failed,
}

/// A client session.
#[derive(Debug, Clone)]
pub struct Client {
    initial: InitialResponse,
    policy: RedirectPolicy,
    state: State,
    url: Option<String>,
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
            url: None,
        })
    }

    /// Changes what redirects are accepted.
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
                    self.state = State::Failed;
                    return Err(Error::Malformed(
                        "the first challenge must be empty when no initial response was sent"
                            .into(),
                    ));
                }
                Ok(Step::Send(self.initial_response()?))
            }
            State::Sent => match self.check_redirect(challenge) {
                Ok(url) => {
                    self.state = State::Redirected;
                    self.url = Some(url.clone());
                    Ok(Step::OpenUrl {
                        url,
                        respond: b"=".to_vec(),
                    })
                }
                Err(e) => {
                    self.state = State::Failed;
                    Err(e)
                }
            },
            State::Redirected | State::Done | State::Failed => {
                self.state = State::Failed;
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
                return Err(Error::Policy(format!(
                    "redirect URI scheme {other:?} refused (https required)"
                )));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Malformed("the redirect URI has no host".into()));
        }
        if !url
            .query_pairs()
            .any(|(k, v)| k == "SAMLRequest" && !v.is_empty())
        {
            return Err(Error::Malformed(
                "the redirect URI carries no SAMLRequest (SAML HTTP-Redirect binding)".into(),
            ));
        }
        // Hand out the URL as parsed and checked (a lenient form such as `https:/host` becomes
        // `https://host/`), never the raw text (found by fuzzing).
        Ok(url.into())
    }

    /// The URL handed out by the last step, if any.
    pub fn redirect_url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Records the outcome the application protocol reported (`<success/>` or `<failure/>`).
    pub fn outcome(&mut self, success: bool) -> Result<(), Error> {
        if self.state != State::Redirected {
            return Err(Error::State(
                "an outcome before the exchange completed".into(),
            ));
        }
        self.state = if success { State::Done } else { State::Failed };
        Ok(())
    }

    /// Whether the server reported success.
    pub fn is_authenticated(&self) -> bool {
        self.state == State::Done
    }
}
