//! SAML 2.0 HTTP bindings (SAML Bindings 2.0 §3.4 HTTP-Redirect, §3.5 HTTP-POST): encoding and
//! decoding of `SAMLRequest` / `SAMLResponse` with `RelayState`, and the Redirect binding's
//! query-string signature. Sans-IO: these functions take and return strings and bytes; the web
//! framework moves them.

pub mod post;
pub mod redirect;

use crate::error::Error;
use crate::protocol::ProtocolError;

/// SAML Bindings §3.4.3 / §3.5.3: RelayState MUST NOT exceed 80 bytes.
pub const MAX_RELAY_STATE: usize = 80;

/// Which message a binding carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `SAMLRequest`
    Request,
    /// `SAMLResponse`
    Response,
}

impl MessageKind {
    /// The form or query parameter name.
    pub fn param(self) -> &'static str {
        match self {
            MessageKind::Request => "SAMLRequest",
            MessageKind::Response => "SAMLResponse",
        }
    }
}

fn binding(msg: impl Into<String>) -> Error {
    ProtocolError::Binding(msg.into()).into()
}

pub(crate) fn check_relay_state(rs: Option<&str>) -> Result<(), Error> {
    match rs {
        Some(r) if r.len() > MAX_RELAY_STATE => Err(binding(format!(
            "RelayState of {} bytes exceeds {MAX_RELAY_STATE} (SAML Bindings §3.4.3)",
            r.len()
        ))),
        _ => Ok(()),
    }
}

/// Percent-encodes a query or form value: unreserved characters (RFC 3986 §2.3) stay, every
/// other octet becomes `%XX` (upper-case hex), so `+`, `/` and `=` of base64 are encoded.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a query or form value (`application/x-www-form-urlencoded`: `+` is a space).
pub fn url_decode(s: &str) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| binding(format!("bad percent-escape at {i}")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| binding("a parameter is not UTF-8"))
}

/// Splits `a=1&b=2` into raw (still encoded) pairs, in order.
pub(crate) fn raw_pairs(query: &str) -> Vec<(&str, &str)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// Base64 of a SAML message with white space removed and `+` restored (form decoding of an
/// unencoded `+` gives a space).
pub(crate) fn base64_decode(v: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine as _;
    let clean: String = v
        .chars()
        .map(|c| if c == ' ' { '+' } else { c })
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| binding(format!("bad base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_coding() {
        assert_eq!(url_encode("a+b/c= d~"), "a%2Bb%2Fc%3D%20d~");
        assert_eq!(url_decode("a%2Bb%2fc%3D+d").expect("ok"), "a+b/c= d");
        assert!(url_decode("%zz").is_err());
        assert!(url_decode("%4").is_err());
        assert!(url_decode("%FF").is_err());
        assert_eq!(raw_pairs("?a=1&b=&c"), [("a", "1"), ("b", ""), ("c", "")]);
        assert_eq!(base64_decode("YWJj\r\nZA==").expect("ok"), b"abcd");
        assert_eq!(
            base64_decode("+/8=").expect("ok"),
            base64_decode(" /8=").expect("ok")
        );
    }
}
