//! MDQ response handling on untrusted input: the first byte picks the status and encoding, the
//! rest is the body, handed to the client core for a lookup it asked for. Errors are fine,
//! panics are not; the test key signs nothing here, so nothing may be cached as an entity, and a
//! refused answer must leave the cache empty.
//!
//! With bit 7 of the first byte set, the input is instead a persistent-cache entry: the text of
//! a `.meta` file, then (after the first NUL byte, if any) the persisted document, read through
//! `persist::parse_meta` and `Client::restore`. Bad files are errors, never panics, and a
//! restored entry never outlives `max_ttl` (issue 12 item 13; seeds `meta_*.bin`).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mdq_client::client::{Client, Config, Lookup};
use mdq_client::io::persist;
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Identifier};
use saml_core::dsig::TrustedKeys;
use saml_fuzz::{signing_key, trusted_keys};

#[allow(clippy::expect_used)]
fn keys() -> &'static TrustedKeys {
    static K: OnceLock<TrustedKeys> = OnceLock::new();
    K.get_or_init(|| trusted_keys(&signing_key().expect("key")).expect("trusted"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let Ok(base) = BaseUrl::parse("https://mdq.example.org/") else {
        return;
    };
    let mut c = Client::new(Config::new(base, keys().clone()));
    if sel & 0x80 != 0 {
        let (meta, document) = match body.iter().position(|b| *b == 0) {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, &[][..]),
        };
        let Ok(snapshot) = persist::parse_meta(&String::from_utf8_lossy(meta), document.to_vec())
        else {
            return;
        };
        let Ok(id) = Identifier::entity_id(&snapshot.entity_id) else {
            return;
        };
        if c.restore(&snapshot, now).is_ok() {
            let max = now + c.config().max_ttl;
            assert!(
                c.entry_times(&id)
                    .is_some_and(|(_, expires)| expires <= max),
                "restored lifetime not clamped"
            );
            let _ = c.lookup(&id, now);
        } else {
            assert!(c.is_empty(), "a refused snapshot was restored");
        }
        return;
    }
    let id = Identifier::sha1_of("https://sp.example.org");
    let Lookup::Fetch(r) = c.lookup(&id, now) else {
        return;
    };
    let status = [200u16, 304, 404, 500][usize::from(sel & 3)];
    let mut headers = vec![(
        "Content-Type".to_owned(),
        "application/samlmetadata+xml".to_owned(),
    )];
    if sel & 4 != 0 {
        headers.push(("Content-Encoding".to_owned(), "gzip".to_owned()));
    }
    if sel & 8 != 0 {
        headers.push((
            "Cache-Control".to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(24)]).into_owned(),
        ));
    }
    if sel & 16 != 0 {
        headers.push((
            "Expires".to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned(),
        ));
    }
    let resp = HttpResponse {
        status,
        headers: &headers,
        body,
    };
    match c.handle_response(r.token, &resp, now) {
        Ok(Some(e)) => {
            // Only the signed fixture entity could ever pass, and it is another entityID.
            assert_eq!(
                e.entity_id, "https://sp.example.org",
                "forged entity cached"
            );
        }
        Ok(None) => assert!(c.len() <= 1),
        Err(_) => assert!(c.is_empty(), "a refused answer was cached"),
    }
});
