//! The initial response: a GS2 header (RFC 5801 §4) and the IdP identifier (RFC 6595 §3.1).
//!
//! ```text
//! initial-response = gs2-header IdP-Identifier
//! gs2-header       = [gs2-nonstd-flag ","] gs2-cb-flag "," [gs2-authzid] ","
//! gs2-authzid      = "a=" saslname        ; "," as "=2C", "=" as "=3D"
//! ```
//! For SAML20 the nonstd flag `F` must not appear and the channel-binding flag must be `n`
//! (there is no SAML20-PLUS): `y` and `p=` are refused.

use crate::error::Error;

fn malformed(m: impl Into<String>) -> Error {
    Error::Malformed(m.into())
}

/// Escapes an authzid as a saslname (RFC 5801 §4: `,` -> `=2C`, `=` -> `=3D`).
pub fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Reverses [`escape_saslname`]; any other `=` sequence is malformed.
pub fn unescape_saslname(s: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed(format!("bad '=' escape in saslname {s:?}"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Longest IdP identifier taken, in bytes, before IDNA (review K4).
pub const MAX_IDP_IDENTIFIER: usize = 1024;

/// Longest initial response taken, in bytes: the gs2 header, an authzid (a bare JID is at most
/// 2,047 bytes) and an IdP identifier (review K4: the whole message reached IDNA).
pub const MAX_INITIAL_RESPONSE: usize = 4096;

/// Normalizes an IdP identifier: a DNS domain name, U-labels converted to A-labels (IDNA, UTS
/// #46), lower case, no trailing dot. URLs, addresses, single labels and empty values are
/// refused (RFC 6595 §3.1: "a domain name").
pub fn idp_identifier(s: &str) -> Result<String, Error> {
    if s.is_empty() {
        return Err(malformed("empty IdP identifier"));
    }
    // A domain name is at most 253 octets as A-labels, so far fewer than this as U-labels;
    // IDNA's mapping and Punycode run over the whole input before its length is known
    // (review K4).
    if s.len() > MAX_IDP_IDENTIFIER {
        return Err(malformed(format!(
            "IdP identifier of {} bytes (at most {MAX_IDP_IDENTIFIER})",
            s.len()
        )));
    }
    if s.contains(['/', ':', '@', '?', '#', ' ', '\t', '[', ']']) {
        return Err(malformed(format!(
            "IdP identifier {s:?} is not a domain name"
        )));
    }
    let ascii = idna::domain_to_ascii_strict(s.trim_end_matches('.'))
        .map_err(|_| malformed(format!("IdP identifier {s:?} is not a valid domain name")))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| {
            l.is_empty()
                || l.len() > 63
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        || ascii.len() > 253
        || labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(malformed(format!(
            "IdP identifier {s:?} is not a domain name"
        )));
    }
    Ok(ascii)
}

/// A parsed initial response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialResponse {
    /// The authorization identity, unescaped.
    pub authzid: Option<String>,
    /// The IdP identifier, normalized (A-labels, lower case).
    pub idp: String,
}

impl InitialResponse {
    /// The wire form: `n,,example.org` or `n,a=<escaped authzid>,example.org`.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from("n,");
        if let Some(a) = &self.authzid {
            s.push_str("a=");
            s.push_str(&escape_saslname(a));
        }
        s.push(',');
        s.push_str(&self.idp);
        s.into_bytes()
    }

    /// Parses strictly: `n`, optional `a=` authzid (non-empty, valid escapes), a domain name.
    pub fn parse(msg: &[u8]) -> Result<InitialResponse, Error> {
        if msg.len() > MAX_INITIAL_RESPONSE {
            return Err(malformed(format!(
                "initial response of {} bytes (at most {MAX_INITIAL_RESPONSE})",
                msg.len()
            )));
        }
        let s = std::str::from_utf8(msg).map_err(|_| malformed("initial response is not UTF-8"))?;
        if s.contains('\0') {
            return Err(malformed("NUL in the initial response"));
        }
        let mut parts = s.splitn(3, ',');
        let (flag, authz, idp) = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(a), Some(i)) => (f, a, i),
            _ => {
                return Err(malformed(
                    "the initial response needs a gs2 header: \"n,,\" or \"n,a=...,\"",
                ));
            }
        };
        match flag {
            "n" => {}
            "F" => {
                return Err(malformed(
                    "the gs2 nonstd flag F must not be used with SAML20",
                ));
            }
            "y" => {
                return Err(malformed(
                    "channel binding flag 'y' is not valid for SAML20",
                ));
            }
            f if f.starts_with("p=") => {
                return Err(malformed(
                    "channel binding is not supported (there is no SAML20-PLUS)",
                ));
            }
            f => return Err(malformed(format!("bad gs2 channel-binding flag {f:?}"))),
        }
        let authzid = match authz {
            "" => None,
            a => {
                let name = a
                    .strip_prefix("a=")
                    .ok_or_else(|| malformed(format!("bad gs2 authzid field {a:?}")))?;
                if name.is_empty() {
                    return Err(malformed("empty authzid"));
                }
                Some(unescape_saslname(name)?)
            }
        };
        Ok(InitialResponse {
            authzid,
            idp: idp_identifier(idp)?,
        })
    }
}
