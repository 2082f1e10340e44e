//! A scenario builder for the sans-IO MDQ core: a scripted server (one reply per fetch, in
//! order) and a clock the test moves. [`Scenario::get`] plays the adapter's part of the call
//! order: lookup, perform the fetch against the script, complete it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdq_client::client::{Client, Config, FetchRequest, Lookup};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Error, Identifier};
use saml_core::dsig::TrustedKeys;
use saml_metadata::model::EntityDescriptor;

/// The scenario's epoch.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with status, header fields and body.
    Http(u16, Vec<(String, String)>, Vec<u8>),
    /// The transport fails (after the adapter's retries).
    Fail(String),
}

impl Reply {
    /// 200 with the SAML metadata Content-Type and `headers`.
    pub fn ok(body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        h.push(("Content-Type".into(), "application/samlmetadata+xml".into()));
        Reply::Http(200, h, body.to_vec())
    }

    /// A bare status.
    pub fn status(code: u16) -> Reply {
        Reply::Http(code, Vec::new(), Vec::new())
    }
}

/// The core, a script and a clock.
pub struct Scenario {
    pub client: Client,
    now: SystemTime,
    script: VecDeque<Reply>,
    /// Every request the core asked for, in order.
    pub requests: Vec<FetchRequest>,
}

impl Scenario {
    /// A client for `https://mdq.example.org/` trusting `keys`, at [`epoch`].
    pub fn new(keys: &TrustedKeys) -> Self {
        Self::with_config(keys, |_| {})
    }

    /// Like [`Scenario::new`], with the configuration changed by `f`.
    pub fn with_config(keys: &TrustedKeys, f: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::new(
            BaseUrl::parse("https://mdq.example.org/").unwrap(),
            keys.clone(),
        );
        f(&mut cfg);
        Scenario {
            client: Client::new(cfg),
            now: epoch(),
            script: VecDeque::new(),
            requests: Vec::new(),
        }
    }

    /// Queues the server's reply to the next fetch.
    pub fn then(&mut self, r: Reply) -> &mut Self {
        self.script.push_back(r);
        self
    }

    /// The clock.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Moves the clock to `epoch() + secs`.
    pub fn at(&mut self, secs: u64) -> &mut Self {
        self.now = epoch() + Duration::from_secs(secs);
        self
    }

    /// Performs `r` against the script and completes it at the current time.
    pub fn perform(&mut self, r: FetchRequest) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        let reply = self
            .script
            .pop_front()
            .unwrap_or_else(|| panic!("unscripted fetch of {}", r.url));
        self.requests.push(r.clone());
        match reply {
            Reply::Http(status, headers, body) => self.client.handle_response(
                r.token,
                &HttpResponse {
                    status,
                    headers: &headers,
                    body: &body,
                },
                self.now,
            ),
            Reply::Fail(e) => self.client.handle_failure(r.token, &e, self.now),
        }
    }

    /// A lookup as an adapter does it: a hit is served (an early refresh it asks for is
    /// performed too), a fetch is performed against the script.
    pub fn get(&mut self, id: &Identifier) -> Result<Option<Arc<EntityDescriptor>>, Error> {
        match self.client.lookup(id, self.now) {
            Lookup::Hit { entity, refresh } => {
                if let Some(r) = refresh {
                    self.perform(r)?;
                }
                Ok(Some(entity))
            }
            Lookup::NotFound => Ok(None),
            Lookup::Fetch(r) => self.perform(r),
            Lookup::Pending(t) => panic!("pending on {t:?} in a single-caller scenario"),
            Lookup::Unavailable { failures, until } => Err(Error::Unavailable {
                failures,
                until: format!("{until:?}"),
            }),
        }
    }

    /// The lookup's answer, without performing anything.
    pub fn lookup(&mut self, id: &Identifier) -> Lookup {
        self.client.lookup(id, self.now)
    }

    /// Whether every scripted reply was used.
    pub fn script_done(&self) -> bool {
        self.script.is_empty()
    }
}
