//! HTTP-POST binding (SAML Bindings §3.5): the message is base64-encoded into a form field
//! `SAMLRequest` or `SAMLResponse` of an auto-submitting HTML form; a signature, if any, is
//! enveloped in the XML.

use base64::Engine as _;

use super::{MessageKind, base64_decode, binding, check_relay_state, raw_pairs, url_decode};
use crate::error::Error;

/// Default limit on a decoded POST message (1 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Escapes for HTML attribute values and text.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The base64 form value of `xml`.
#[must_use]
pub fn encode(xml: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// An HTML page whose form posts `xml` to `action` (and submits itself when scripts run; a
/// button otherwise), every value escaped. `action` must be an absolute `https` or `http` URL:
/// a `javascript:` or `data:` action taken from a request would run in the page's origin
/// (sasl review I1).
pub fn form(
    action: &str,
    kind: MessageKind,
    xml: &[u8],
    relay_state: Option<&str>,
) -> Result<String, Error> {
    let scheme = action.split_once("://").map(|(s, _)| s);
    if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"))
        || action.chars().any(char::is_control)
    {
        return Err(binding(format!(
            "the form's action is not an absolute http(s) URL: {:?}",
            action.chars().take(64).collect::<String>()
        )));
    }
    check_relay_state(relay_state)?;
    let rs = relay_state
        .map(|r| {
            format!(
                "<input type=\"hidden\" name=\"RelayState\" value=\"{}\"/>",
                html(r)
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SAML POST</title></head><body onload=\"document.forms[0].submit()\"><noscript><p>Press the button to continue.</p></noscript><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"{}\" value=\"{}\"/>{rs}<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>\n",
        html(action),
        kind.param(),
        encode(xml)
    ))
}

/// Decodes a form value (already form-decoded) into the message, at most `max` bytes.
pub fn decode(value: &str, max: usize) -> Result<Vec<u8>, Error> {
    // The base64 of `max` bytes, with room for a line break (CR LF) every 64 characters: senders
    // wrap at 64 or 76 columns, and a wrapped message of up to `max` bytes was refused before
    // it was decoded (review B8).
    let b64 = max.saturating_mul(4) / 3 + 8;
    if value.len() > b64.saturating_add(b64 / 64 * 2) {
        return Err(binding(format!("message larger than {max} bytes")));
    }
    let xml = base64_decode(value)?;
    if xml.len() > max {
        return Err(binding(format!("message larger than {max} bytes")));
    }
    Ok(xml)
}

/// A decoded POST-binding form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostMessage {
    /// Request or response.
    pub kind: MessageKind,
    /// The XML.
    pub xml: Vec<u8>,
    /// `RelayState`.
    pub relay_state: Option<String>,
}

/// Decodes an `application/x-www-form-urlencoded` body with exactly one `SAMLRequest` or
/// `SAMLResponse` and at most one `RelayState` (at most [`super::MAX_RELAY_STATE_TAKEN`]
/// bytes).
pub fn decode_form(body: &str, max: usize) -> Result<PostMessage, Error> {
    let pairs = raw_pairs(body)?;
    let mut kind = None;
    let mut msg = None;
    let mut relay_state = None;
    for (k, v) in pairs {
        let (slot, this) = match k.as_str() {
            "SAMLRequest" => (&mut msg, Some(MessageKind::Request)),
            "SAMLResponse" => (&mut msg, Some(MessageKind::Response)),
            "RelayState" => (&mut relay_state, None),
            _ => continue,
        };
        if slot.is_some() {
            return Err(binding(format!(
                "{k} given twice, or both SAMLRequest and SAMLResponse"
            )));
        }
        *slot = Some(url_decode(v)?);
        if this.is_some() {
            kind = this;
        }
    }
    let (Some(kind), Some(msg)) = (kind, msg) else {
        return Err(binding("no SAMLRequest or SAMLResponse field"));
    };
    check_relay_state(relay_state.as_deref())?;
    Ok(PostMessage {
        kind,
        xml: decode(&msg, max)?,
        relay_state,
    })
}
