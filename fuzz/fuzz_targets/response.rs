//! SP-side Response validation on untrusted input, with the fuzz P-256 key as the IdP's key and an
//! RSA decryption key. Two paths per input: the input as a whole Response, and (when UTF-8) the
//! input spliced raw into the NameID of a Response signed once at start-up (Response and
//! Assertion signed), which gets past parsing and signature structure into the digests.
//! Errors are fine, panics are not. Whenever validation succeeds the subject must be the one the
//! key signed: it signs nothing else, so anything else is a forgery or a wrapping bug. A failed
//! validation must leave the request outstanding and the replay cache empty.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, OutstandingRequests,
    ResponseValidator,
};
use saml_fuzz::{signing_key, trusted_keys};

const NAME: &str = "fuzz-subject";
const REQ: &str = "_fuzz-request";

struct Fixture {
    validator: ResponseValidator,
    before: String,
    after: String,
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[allow(clippy::expect_used)]
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = signing_key().expect("key");
        let mut v = ResponseValidator::new(
            "https://sp.example.org",
            "https://sp.example.org/acs",
            "https://idp.example.org",
            trusted_keys(&key).expect("trusted"),
        );
        v.decryption_keys = vec![PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")];
        let req = AuthnRequest::new(REQ.into(), "https://sp.example.org", now());
        let b = ResponseBuilder::for_request(
            &req,
            "https://idp.example.org",
            "https://sp.example.org/acs",
            NameId::new(NAME, NAMEID_PERSISTENT),
        );
        let mut n = 0u8;
        let mut rnd = |buf: &mut [u8]| {
            for x in buf.iter_mut() {
                n = n.wrapping_add(97);
                *x = n;
            }
        };
        let signed =
            String::from_utf8(b.build(&key, now(), &mut rnd).expect("build")).expect("utf8");
        let (before, after) = signed.split_once(NAME).expect("name in the document");
        Fixture {
            validator: v,
            before: before.to_owned(),
            after: after.to_owned(),
        }
    })
}

fn check(doc: &[u8]) {
    let f = fixture();
    let mut requests = OutstandingRequests::new();
    requests.insert(
        REQ,
        "https://idp.example.org",
        now() + Duration::from_secs(600),
        now(),
    );
    let mut replay = MemoryReplayCache::new();
    match f.validator.validate(doc, now(), &mut requests, &mut replay) {
        Ok(ok) => {
            assert_eq!(
                ok.name_id().map(|n| n.value.as_str()),
                Some(NAME),
                "forged subject"
            );
            assert!(requests.is_empty() && replay.len() == 1);
        }
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(requests.len(), 1, "state changed on failure");
            assert!(replay.is_empty(), "state changed on failure");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let f = fixture();
        check(format!("{}{s}{}", f.before, f.after).as_bytes());
    }
});
