//! SAML 2.0 HTTP bindings (SAML Bindings 2.0 §3.4 HTTP-Redirect, §3.5 HTTP-POST): encoding and
//! decoding of `SAMLRequest` / `SAMLResponse` with `RelayState`, and the Redirect binding's
//! query-string signature. Sans-IO: these functions take and return strings and bytes; the web
//! framework moves them.

pub mod post;
pub mod redirect;

use crate::error::Error;
use crate::error::ProtocolError;

/// SAML Bindings §3.4.3 / §3.5.3: RelayState MUST NOT exceed 80 bytes. What a caller of this
/// crate makes up as RelayState should stay within it.
pub const MAX_RELAY_STATE: usize = 80;

/// Longest RelayState taken and echoed (4 KiB): real SPs send more than §3.4.3's 80 bytes
/// (SimpleSAMLphp its return URL, ADFS `RPID=...&RelayState=...`, Google and Salesforce long
/// URLs), Shibboleth and SimpleSAMLphp IdPs take them, and an IdP echoes what it got (review
/// of the twelfth round, F10: such SPs were refused).
pub const MAX_RELAY_STATE_TAKEN: usize = 4096;

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
    #[must_use]
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
        Some(r) if r.len() > MAX_RELAY_STATE_TAKEN => Err(binding(format!(
            "RelayState of {} bytes exceeds {MAX_RELAY_STATE_TAKEN} (SAML Bindings §3.4.3 \
             allows {MAX_RELAY_STATE}; longer ones real SPs send are taken up to \
             {MAX_RELAY_STATE_TAKEN})",
            r.len()
        ))),
        _ => Ok(()),
    }
}

/// Percent-encodes a query or form value: unreserved characters (RFC 3986 §2.3) stay, every
/// other octet becomes `%XX` (upper-case hex), so `+`, `/` and `=` of base64 are encoded.
#[must_use]
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

/// Decodes a query or form value (`application/x-www-form-urlencoded`: `+` is a space). A `%`
/// must be followed by exactly two hexadecimal digits (RFC 3986 §2.1): `%+1`, `%4` and `%zz`
/// are errors.
pub fn url_decode(s: &str) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                        hex_value(h) << 4 | hex_value(l)
                    }
                    _ => return Err(binding(format!("bad percent-escape at {i}"))),
                };
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

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Splits `a=1&b=2` into pairs of a decoded name and a raw (still encoded) value, in order.
/// Names are percent-decoded like values, so `SAML%52equest` is `SAMLRequest`: a parameter
/// cannot hide from these checks (duplicates, SigAlg without Signature) while a framework that
/// decodes names sees it.
///
/// At most [`MAX_PARAMETERS`] are read: a form of a million empty parameters (`a&a&...`) would
/// otherwise cost some 36 times its size in small allocations before any field is looked at
/// (sasl review B1).
pub(crate) fn raw_pairs(query: &str) -> Result<Vec<(String, &str)>, Error> {
    let mut out = Vec::new();
    for p in query
        .strip_prefix('?')
        .unwrap_or(query)
        .split('&')
        .filter(|p| !p.is_empty())
    {
        if out.len() == MAX_PARAMETERS {
            return Err(binding(format!("more than {MAX_PARAMETERS} parameters")));
        }
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        out.push((url_decode(k)?, v));
    }
    Ok(out)
}

/// Most parameters a Redirect query or POST form may have: the bindings use at most four
/// (SAML Bindings §3.4.4.1, §3.5.4), frameworks add a few.
pub const MAX_PARAMETERS: usize = 64;

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

    /// Issue 13 item 8: `u8::from_str_radix` took a sign, so `%+1` decoded to 0x01.
    #[test]
    fn percent_escapes_are_two_hex_digits() {
        for bad in ["%+1", "%-1", "%+F", "a%+10", "% 1", "%1"] {
            assert!(url_decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(url_decode("%41%4a%4A").expect("ok"), "AJJ");
        assert_eq!(
            raw_pairs("SAML%52equest=x&Sig%41lg=y").expect("ok"),
            [("SAMLRequest".to_owned(), "x"), ("SigAlg".to_owned(), "y")]
        );
        assert!(raw_pairs("a%+1=x").is_err());
    }

    /// Sasl review B1: a form of a million empty parameters was split into a million
    /// decoded names before any field was looked at; it is refused at the 65th, and both
    /// bindings say so.
    #[test]
    fn parameters_are_counted_before_they_are_kept() {
        let many = "a&".repeat(1 << 20);
        let e = raw_pairs(&many).unwrap_err().to_string();
        assert!(e.contains("more than 64 parameters"), "{e}");
        let at_most = "a=1&".repeat(MAX_PARAMETERS);
        assert_eq!(raw_pairs(&at_most).expect("ok").len(), MAX_PARAMETERS);
        let e = super::post::decode_form(&many, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 64 parameters"), "{e}");
        let e = super::redirect::decode(&many, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 64 parameters"), "{e}");
    }

    #[test]
    fn url_coding() {
        assert_eq!(url_encode("a+b/c= d~"), "a%2Bb%2Fc%3D%20d~");
        assert_eq!(url_decode("a%2Bb%2fc%3D+d").expect("ok"), "a+b/c= d");
        assert!(url_decode("%zz").is_err());
        assert!(url_decode("%4").is_err());
        assert!(url_decode("%FF").is_err());
        assert_eq!(
            raw_pairs("?a=1&b=&c").expect("ok"),
            [
                ("a".to_owned(), "1"),
                ("b".to_owned(), ""),
                ("c".to_owned(), "")
            ]
        );
        assert_eq!(base64_decode("YWJj\r\nZA==").expect("ok"), b"abcd");
        assert_eq!(
            base64_decode("+/8=").expect("ok"),
            base64_decode(" /8=").expect("ok")
        );
    }
}
