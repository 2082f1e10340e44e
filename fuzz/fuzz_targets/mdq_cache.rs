//! The MDQ client core as a state machine (mdq review L11): a sequence of operations on three
//! identifiers with an advancing clock: lookups, completions of the fetches they asked for (a
//! signed document of the entity, one of another entity, a 304, a 404, a 503, a transport
//! failure), background refreshes, forced fetches, `forget`, the clock moving on. The
//! documents are signed once by the fuzz key (each entity's validUntil and cacheDuration
//! known). Invariants after every step: no panic; no entity is served for an identifier it does
//! not answer; none is served at or after its validUntil; the cache holds at most
//! `max_entries`.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mdq_client::client::{Client, Config, FetchNow, FetchRequest, Lookup};
use mdq_client::response::HttpResponse;
use mdq_client::{BaseUrl, Identifier};
use saml_core::dsig::{SignOptions, TrustedKeys};
use saml_fuzz::{signing_key, trusted_keys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

const IDS: [&str; 3] = [
    "https://a.example.org/sp",
    "https://b.example.org/sp",
    "https://c.example.org/sp",
];

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Each entity's validUntil: a in 2 h, b in 1 day, c none.
fn valid_until(i: usize) -> Option<SystemTime> {
    match i {
        0 => Some(start() + Duration::from_secs(7200)),
        1 => Some(start() + Duration::from_secs(86_400)),
        _ => None,
    }
}

struct Fixture {
    keys: TrustedKeys,
    docs: Vec<Vec<u8>>,
}

#[allow(clippy::expect_used)]
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = signing_key().expect("key");
        let docs = IDS
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut b = EntityDescriptor::builder(id)
                    .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
                    .cache_duration(Duration::from_secs(600 * (i as u64 + 1)));
                if let Some(v) = valid_until(i) {
                    b = b.valid_until(v);
                }
                b.build()
                    .expect("entity")
                    .sign(&key, &SignOptions::default())
                    .expect("signed")
            })
            .collect();
        Fixture {
            keys: trusted_keys(&key).expect("trusted"),
            docs,
        }
    })
}

fn id_of(b: u8) -> (usize, Identifier) {
    let i = usize::from(b % 3);
    let id = if b & 4 == 0 {
        Identifier::entity_id(IDS[i]).ok()
    } else {
        None
    };
    (i, id.unwrap_or_else(|| Identifier::sha1_of(IDS[i])))
}

fn check_served(e: &EntityDescriptor, i: usize, now: SystemTime) {
    assert_eq!(e.entity_id, IDS[i], "another entity served");
    if let Some(v) = valid_until(i) {
        assert!(now < v, "served at or after its validUntil");
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(base) = BaseUrl::parse("https://mdq.example.org/") else {
        return;
    };
    let mut cfg = Config::new(base, f.keys.clone());
    cfg.max_entries = 2;
    let mut c = Client::new(cfg);
    let mut now = start();
    let mut pending: Vec<(usize, FetchRequest)> = Vec::new();
    for op in data.chunks(2).take(64) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        match code % 8 {
            0 => {
                let (i, id) = id_of(arg);
                match c.lookup(&id, now) {
                    Lookup::Hit { entity, refresh } => {
                        check_served(&entity, i, now);
                        if let Some(r) = refresh {
                            pending.push((i, r));
                        }
                    }
                    Lookup::Fetch(r) => pending.push((i, r)),
                    _ => {}
                }
            }
            1 | 2 if !pending.is_empty() => {
                let (i, r) = pending.swap_remove(usize::from(arg) % pending.len());
                let other = (i + 1 + usize::from(arg >> 6) % 2) % 3;
                let ct = vec![(
                    "Content-Type".to_owned(),
                    "application/samlmetadata+xml".to_owned(),
                )];
                let (status, body): (u16, &[u8]) = match (arg >> 2) % 6 {
                    0 | 1 => (200, &f.docs[i]),
                    2 => (200, &f.docs[other]),
                    3 => (304, b""),
                    4 => (404, b""),
                    _ => (503, b""),
                };
                let resp = HttpResponse {
                    status,
                    headers: &ct,
                    body,
                };
                let out = if code % 8 == 1 {
                    c.handle_response(r.token, &resp, now)
                } else {
                    c.handle_failure(r.token, "down", now)
                };
                if let Ok(Some(e)) = out {
                    check_served(&e, i, now);
                }
            }
            3 => now += Duration::from_secs(u64::from(arg) * 60),
            4 => c.forget(&id_of(arg).1),
            5 => {
                while let Some(r) = c.poll_refresh(now) {
                    let i = IDS
                        .iter()
                        .position(|s| Identifier::entity_id(s).is_ok_and(|x| x.key() == r.id.key()))
                        .unwrap_or(0);
                    pending.push((i, r));
                }
            }
            6 => {
                let (i, id) = id_of(arg);
                if let FetchNow::Fetch(r) = c.fetch_now(&id) {
                    pending.push((i, r));
                }
            }
            _ => {}
        }
        assert!(c.len() <= 2, "more entries than max_entries");
    }
});
