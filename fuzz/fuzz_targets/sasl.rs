//! Both sides of SAML20 on untrusted input. Server: the input as the initial response (split at
//! the first newline: the rest as the client's next message), through a static resolver; a
//! session either fails or reaches the challenge, and only exactly `=` moves it on. Client: the
//! input as the server's challenge after an initial response. Errors are fine, panics are not.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use saml_fuzz::{signing_key, trusted_keys};
use sasl_saml20::client::{Client, Step};
use sasl_saml20::gs2::InitialResponse;
use sasl_saml20::resolver::{ResolvedIdp, StaticResolver};
use sasl_saml20::server::{Server, ServerConfig};

#[allow(clippy::expect_used)]
fn config() -> Arc<ServerConfig> {
    static C: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let keys = trusted_keys(&signing_key().expect("key")).expect("trusted");
        let mut r = StaticResolver::new();
        r.insert(
            "example.org",
            ResolvedIdp {
                entity_id: "https://idp.example.org".into(),
                sso_url: "https://idp.example.org/sso".into(),
                keys,
                scopes: Vec::new(),
                wants_signed_requests: false,
            },
        )
        .expect("domain");
        Arc::new(ServerConfig::new(
            "xmpp:example.com",
            "https://example.com/acs",
            Arc::new(r),
        ))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut n = 0u8;
    let mut rnd = |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_add(101);
            *x = n;
        }
    };
    let (first, second) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if let Ok(init) = InitialResponse::parse(first) {
        // What parses encodes back to a message that parses to the same thing.
        assert_eq!(InitialResponse::parse(&init.encode()).ok(), Some(init));
    }
    let mut server = Server::new(config());
    if server.start(Some(first), now, &mut rnd).is_ok() {
        assert!(server.request_id().is_some());
        if let Some(msg) = second {
            let r = server.handle_response(msg, now, &mut rnd);
            assert_eq!(r.is_ok(), msg == b"=");
        }
    }
    let mut client = match Client::new(None, "example.org") {
        Ok(c) => c,
        Err(_) => return,
    };
    if client.initial_response().is_ok()
        && let Ok(Step::OpenUrl { url, respond }) = client.handle_challenge(data)
    {
        assert!(url.starts_with("https://"));
        assert_eq!(respond, b"=");
    }
});
