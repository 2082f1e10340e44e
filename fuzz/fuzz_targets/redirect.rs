//! HTTP bindings on untrusted input: the bytes as a Redirect query string and as a POST form
//! body, and the bytes as the DEFLATE payload of a SAMLRequest (so inflation, size limits and
//! truncation are reached), then the decoded XML into the AuthnRequest parser. Errors are fine,
//! panics are not; a signature can only verify over what the test key signed: the fixture
//! request with RelayState `state` (the seed), so anything else verifying is a forgery.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use saml_core::bindings::{post, redirect, url_encode};
use saml_core::dsig::TrustedKeys;
use saml_core::protocol::AuthnRequest;
use saml_fuzz::{fuzz_request, signing_key, trusted_keys};

fn keys() -> &'static TrustedKeys {
    static K: OnceLock<TrustedKeys> = OnceLock::new();
    #[allow(clippy::expect_used)]
    K.get_or_init(|| trusted_keys(&signing_key().expect("key")).expect("trusted"))
}

const MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = redirect::decode(&text, MAX) {
        assert!(m.xml.len() <= MAX);
        assert!(
            m.relay_state
                .as_ref()
                .is_none_or(|r| r.len() <= saml_core::bindings::MAX_RELAY_STATE_TAKEN)
        );
        if m.is_signed() && m.verify(keys(), true).is_ok() {
            assert_eq!(
                m.xml,
                fuzz_request().to_xml().into_bytes(),
                "forged message"
            );
            assert_eq!(m.relay_state.as_deref(), Some("state"), "forged RelayState");
        }
        let _ = AuthnRequest::parse(&m.xml);
    }
    if let Ok(m) = post::decode_form(&text, MAX) {
        assert!(m.xml.len() <= MAX);
        let _ = AuthnRequest::parse(&m.xml);
    }
    let q = format!(
        "SAMLRequest={}&RelayState=x",
        url_encode(&base64::engine::general_purpose::STANDARD.encode(data))
    );
    if let Ok(m) = redirect::decode(&q, MAX) {
        assert!(m.xml.len() <= MAX);
        if let Ok(req) = AuthnRequest::parse(&m.xml) {
            // What parses writes back and parses to the same request.
            assert_eq!(AuthnRequest::parse(req.to_xml().as_bytes()).ok(), Some(req));
        }
    }
});
