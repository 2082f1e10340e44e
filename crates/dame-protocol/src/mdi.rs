//! The answer to a trigger (MDI response, draft-poehn-dame-06 §4: "the HTTP status code is the
//! result") and the asynchronous status report an entity sends when integration finishes
//! later (the draft names only `action=add&status=`; the format is defined here).
//!
//! ```text
//! MDI response: HTTP status + body (application/x-www-form-urlencoded)
//!   200 status=integrated            the peer's metadata is in use
//!   202 status=accepted-pending      integration continues; a status report follows
//!   403 status=refused&reason=...    policy refused the peer (allow/deny list, ...)
//!   500 status=error&reason=...      fetching or integrating failed
//!
//! Status report (entity -> broker), signed by the entity's metadata signing key:
//! GET <broker>/DAME?action=status&entityID=<reporter>&peer=<peer>&status=<status>
//!     &reason=<text, may be empty>&issueInstant=<xs:dateTime>&nonce=<32 hex>&SigAlg=..&Signature=..
//! ```

use std::time::{Duration, SystemTime};

use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::time::{format_datetime, parse_datetime};

use crate::error::Error;
use crate::query::{Query, append, write};
use crate::signed::{
    self, DEFAULT_CLOCK_SKEW, DEFAULT_MAX_AGE, NonceCache, check_time, is_nonce, new_nonce,
};

/// Longest `reason` kept (bytes); longer ones are refused.
pub const MAX_REASON_LEN: usize = 512;

/// The result of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MdiStatus {
    /// The peer's metadata is integrated and in use.
    Integrated,
    /// Accepted; integration finishes later and a status report follows.
    AcceptedPending,
    /// Refused by the entity's policy.
    Refused,
    /// Fetching or integrating failed.
    Error,
}

impl MdiStatus {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MdiStatus::Integrated => "integrated",
            MdiStatus::AcceptedPending => "accepted-pending",
            MdiStatus::Refused => "refused",
            MdiStatus::Error => "error",
        }
    }

    /// The HTTP status code of an MDI response with this status.
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            MdiStatus::Integrated => 200,
            MdiStatus::AcceptedPending => 202,
            MdiStatus::Refused => 403,
            MdiStatus::Error => 500,
        }
    }

    fn parse(what: &'static str, s: &str) -> Result<Self, Error> {
        Ok(match s {
            "integrated" => MdiStatus::Integrated,
            "accepted-pending" => MdiStatus::AcceptedPending,
            "refused" => MdiStatus::Refused,
            "error" => MdiStatus::Error,
            other => return Err(Error::malformed(what, format!("unknown status {other:?}"))),
        })
    }

    /// Whether the exchange can go on (integrated now).
    #[must_use]
    pub fn is_final_success(self) -> bool {
        self == MdiStatus::Integrated
    }
}

fn check_reason(what: &'static str, reason: &str) -> Result<(), Error> {
    if reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control) {
        return Err(Error::malformed(
            what,
            format!("reason must be at most {MAX_REASON_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// An MDI response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MdiResponse {
    /// The result.
    pub status: MdiStatus,
    /// Why, for `refused` and `error` (shown to operators, never to decide on).
    pub reason: Option<String>,
}

impl MdiResponse {
    /// The HTTP status code and body to send.
    pub fn to_http(&self) -> Result<(u16, String), Error> {
        let mut pairs = vec![("status", self.status.as_str())];
        if let Some(r) = &self.reason {
            check_reason("MDI response", r)?;
            pairs.push(("reason", r));
        }
        Ok((self.status.http_status(), write(&pairs)))
    }

    /// Reads the answer the broker received: the body must agree with the status code. A body
    /// larger than 4 KiB, an unknown status or a disagreement is malformed.
    pub fn from_http(code: u16, body: &str) -> Result<Self, Error> {
        const WHAT: &str = "MDI response";
        if body.len() > 4096 {
            return Err(Error::malformed(WHAT, "body larger than 4 KiB"));
        }
        let q = Query::parse(WHAT, body.trim_end_matches(['\r', '\n']))?;
        let status = MdiStatus::parse(WHAT, &q.required(WHAT, "status")?)?;
        if status.http_status() != code {
            return Err(Error::malformed(
                WHAT,
                format!("HTTP {code} with status {}", status.as_str()),
            ));
        }
        let reason = q.get(WHAT, "reason")?;
        if let Some(r) = &reason {
            check_reason(WHAT, r)?;
        }
        Ok(MdiResponse { status, reason })
    }
}

/// A status report: an entity tells the broker how an integration it accepted as pending
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct StatusReport {
    /// The reporting entity (`entityID`).
    pub reporter: String,
    /// The peer whose metadata it integrated (or failed to).
    pub peer: String,
    /// The final status (`integrated`, `refused` or `error`).
    pub status: MdiStatus,
    /// Why, possibly empty.
    pub reason: String,
    /// When it was issued.
    pub issue_instant: SystemTime,
    /// Its nonce.
    pub nonce: String,
}

const REPORT_NAMES: [&str; 7] = [
    "action",
    "entityID",
    "peer",
    "status",
    "reason",
    "issueInstant",
    "nonce",
];

impl StatusReport {
    /// A report issued at `now`.
    pub fn new(
        reporter: &str,
        peer: &str,
        status: MdiStatus,
        reason: &str,
        now: SystemTime,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Self {
        StatusReport {
            reporter: reporter.to_owned(),
            peer: peer.to_owned(),
            status,
            reason: reason.to_owned(),
            issue_instant: now,
            nonce: new_nonce(rng),
        }
    }

    /// The URL to GET at the broker's status endpoint, signed with the reporter's metadata key.
    pub fn url(&self, broker_endpoint: &str, key: &SigningKey) -> Result<String, Error> {
        if self.status == MdiStatus::AcceptedPending {
            return Err(Error::malformed(
                "status report",
                "a report carries a final status",
            ));
        }
        check_reason("status report", &self.reason)?;
        let instant = format_datetime(self.issue_instant);
        let q = signed::sign(
            &[
                ("action", "status"),
                ("entityID", &self.reporter),
                ("peer", &self.peer),
                ("status", self.status.as_str()),
                ("reason", &self.reason),
                ("issueInstant", &instant),
                ("nonce", &self.nonce),
            ],
            key,
        )?;
        Ok(append(broker_endpoint, &q))
    }

    /// The reporter's entityID in a report query, unverified: to look up its registered keys
    /// before [`StatusReports::accept`].
    pub fn reporter_of(query: &str) -> Result<String, Error> {
        Query::parse("status report", query)?.required("status report", "entityID")
    }
}

/// The broker side of status reports: each verified with the reporter's registered metadata
/// keys, fresh, nonce not replayed.
#[derive(Debug, Clone)]
pub struct StatusReports {
    /// How old a report may be (default 5 minutes).
    pub max_age: Duration,
    /// Clock skew allowed (default 60 s).
    pub clock_skew: Duration,
    nonces: NonceCache,
}

impl Default for StatusReports {
    fn default() -> Self {
        StatusReports {
            max_age: DEFAULT_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            nonces: NonceCache::new(10_000),
        }
    }
}

impl StatusReports {
    /// Checks a report: `reporter_keys` are the signing keys of the entity named in it (from
    /// its registered metadata; find the name with [`StatusReport::reporter_of`]).
    pub fn accept(
        &mut self,
        query: &str,
        reporter_keys: &TrustedKeys,
        now: SystemTime,
    ) -> Result<StatusReport, Error> {
        const WHAT: &str = "status report";
        let v = signed::verify(WHAT, query, &REPORT_NAMES, reporter_keys)?;
        let [action, reporter, peer, status, reason, instant, nonce] =
            <[String; 7]>::try_from(v).map_err(|_| Error::malformed(WHAT, "parameters"))?;
        if reporter.is_empty() || peer.is_empty() {
            return Err(Error::malformed(
                WHAT,
                "entityID and peer must not be empty",
            ));
        }
        if action != "status" {
            return Err(Error::malformed(WHAT, format!("action {action:?}")));
        }
        let status = MdiStatus::parse(WHAT, &status)?;
        if status == MdiStatus::AcceptedPending {
            return Err(Error::malformed(WHAT, "a report carries a final status"));
        }
        check_reason(WHAT, &reason)?;
        let issue_instant = parse_datetime(&instant)
            .ok_or_else(|| Error::malformed(WHAT, "issueInstant is not xs:dateTime"))?;
        if !is_nonce(&nonce) {
            return Err(Error::malformed(
                WHAT,
                "nonce must be 32 lowercase hex digits",
            ));
        }
        check_time(issue_instant, now, self.max_age, self.clock_skew)?;
        let key = format!("{reporter}\u{0}{nonce}");
        self.nonces.check(&key, now)?;
        self.nonces.remember(
            &key,
            issue_instant
                .checked_add(
                    self.max_age
                        .saturating_add(self.clock_skew.saturating_mul(2)),
                )
                .unwrap_or(issue_instant),
        );
        Ok(StatusReport {
            reporter,
            peer,
            status,
            reason,
            issue_instant,
            nonce,
        })
    }
}
