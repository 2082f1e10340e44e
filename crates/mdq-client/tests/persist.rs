//! The persistent cache directory: a restarted client serves a known entity without the
//! network, revalidates an expired one with If-None-Match, and does not restore a document that
//! no longer verifies.
#![cfg(feature = "blocking")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mdq_client::io::blocking::{BlockingClient, Options};
use mdq_client::{BaseUrl, Config, Identifier};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
use testkit::http::{Act, http, server};

const SP: &str = "https://sp.example.org/shibboleth";
const XML: (&str, &str) = ("Content-Type", "application/samlmetadata+xml");

/// The federation's keys, the SP's signed document, a cache directory and options using it.
fn fixture() -> (TrustedKeys, Vec<u8>, tempfile::TempDir, Options) {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    let doc = EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
        .build()
        .unwrap()
        .sign(&key, &SignOptions::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_cache_dir(dir.path())
        .with_retries(0)
        .with_timeout(Duration::from_secs(2));
    (keys, doc, dir, opts)
}

/// Rewrites the saved `.meta` of `SP` in `dir` as long expired.
fn expire_saved_entry(dir: &std::path::Path) {
    let meta = dir.join(format!("{}.meta", saml_metadata::model::sha1_hex(SP)));
    let text = std::fs::read_to_string(&meta).unwrap();
    let expired: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("expires=") {
                "expires=1700000000".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&meta, expired.join("\n")).unwrap();
}

#[test]
fn restart_from_the_cache_directory() {
    let (keys, doc, dir, opts) = fixture();
    let id = Identifier::entity_id(SP).unwrap();

    // First run: fetched once (lifetime 1 h), persisted.
    let (base, _) = server(vec![Act::Send(http(
        "200 OK",
        &[XML, ("ETag", "\"e1\""), ("Cache-Control", "max-age=3600")],
        &doc,
    ))]);
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts.clone(),
    );
    assert!(c.get(&id).unwrap().is_some());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "{{sha1}}.xml and .meta"
    );

    // Restart with the server gone: served from the restored cache.
    let dead = "http://127.0.0.1:9/"; // discard port: nothing listens
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse(dead).unwrap(), keys.clone()),
        opts.clone(),
    );
    assert_eq!(c.cached(), 1);
    assert_eq!(c.get(&id).unwrap().unwrap().entity_id, SP);

    // Restart with the entry expired: revalidated with If-None-Match, 304 keeps it.
    expire_saved_entry(dir.path());
    let (base, seen) = server(vec![Act::Send(http("304 Not Modified", &[], b""))]);
    let mut cfg = Config::new(BaseUrl::parse(&base).unwrap(), keys);
    cfg.max_stale = Duration::from_secs(10 * 365 * 86400);
    let c = BlockingClient::new(cfg, opts.clone());
    assert!(c.get(&id).unwrap().is_some());
    assert!(
        seen.lock().unwrap()[0]
            .to_ascii_lowercase()
            .contains("if-none-match: \"e1\"")
    );

    // Another federation key: nothing is restored.
    let other =
        SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut other_keys = TrustedKeys::new();
    other_keys
        .add_public_key(other.public_key().unwrap(), "other")
        .unwrap();
    let c = BlockingClient::new(Config::new(BaseUrl::parse(dead).unwrap(), other_keys), opts);
    assert_eq!(c.cached(), 0);
    assert_eq!(
        c.skipped_cache_files().len(),
        1,
        "the entry that no longer verifies"
    );
}

/// Issue 12 item 13: `expires=18446744073709551615` in a `.meta` file panicked
/// `BlockingClient::new`; it is now skipped and reported, and the good entry next to it is
/// restored with a clamped lifetime.
#[test]
fn a_bad_meta_file_is_skipped_and_reported() {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    let doc = EntityDescriptor::builder(SP)
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
        .build()
        .unwrap()
        .sign(&key, &SignOptions::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = saml_metadata::model::sha1_hex(SP);
    std::fs::write(dir.path().join(format!("{good}.xml")), &doc).unwrap();
    // Far in the future, but representable: clamped to max_ttl on restore.
    std::fs::write(
        dir.path().join(format!("{good}.meta")),
        format!("entity_id={SP}\nexpires=99999999999\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("huge.xml"), &doc).unwrap();
    std::fs::write(
        dir.path().join("huge.meta"),
        format!("entity_id={SP}\nexpires=18446744073709551615\n"),
    )
    .unwrap();
    let opts = Options::default()
        .with_cache_dir(dir.path())
        .with_retries(0);
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse("http://127.0.0.1:9/").unwrap(), keys),
        opts,
    );
    assert_eq!(c.cached(), 1);
    let skipped = c.skipped_cache_files();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].0.ends_with("huge.meta"));
    assert!(matches!(skipped[0].1, mdq_client::Error::Cache(_)));
}

/// Review of 2026-12-06: an answer with `Cache-Control: no-store` was not saved, but the copy
/// an earlier answer had saved stayed on disk, to be restored after a restart and served until
/// its expiry plus `max_stale`. It is removed.
#[test]
fn a_no_store_answer_removes_what_an_earlier_answer_saved() {
    let (keys, doc, dir, opts) = fixture();
    let id = Identifier::entity_id(SP).unwrap();
    let (base, _) = server(vec![Act::Send(http(
        "200 OK",
        &[XML, ("Cache-Control", "max-age=3600")],
        &doc,
    ))]);
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts.clone(),
    );
    assert!(c.get(&id).unwrap().is_some());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // Restarted with the saved entry expired: fetched again, and this answer says no-store
    // (on a field line of its own).
    expire_saved_entry(dir.path());
    let (base, _) = server(vec![Act::Send(http(
        "200 OK",
        &[
            XML,
            ("Cache-Control", "max-age=3600"),
            ("Cache-Control", "no-store"),
        ],
        &doc,
    ))]);
    let mut cfg = Config::new(BaseUrl::parse(&base).unwrap(), keys);
    cfg.max_stale = Duration::from_secs(10 * 365 * 86400);
    let c = BlockingClient::new(cfg, opts);
    assert_eq!(c.cached(), 1, "restored, expired");
    assert!(c.get(&id).unwrap().is_some());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the copy saved before is gone"
    );
}

/// mdq review M4: the cache directory was read whole into memory at start, and never pruned:
/// every entity ever looked up stayed, an entity the server no longer has came back after a
/// restart, and a copy that no longer verified stayed for good. Entries are restored the
/// latest expiry first, up to `max_entries`; the rest, and those that do not restore, are
/// deleted; a "not found" removes what an earlier answer saved.
#[test]
fn the_cache_directory_is_pruned() {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key().unwrap(), "mdq")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = [
        "https://a.example.org/sp",
        "https://b.example.org/sp",
        "https://c.example.org/sp",
    ];
    for (n, id) in ids.iter().enumerate() {
        let doc = EntityDescriptor::builder(id)
            .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
            .valid_until(std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400))
            .build()
            .unwrap()
            .sign(&key, &SignOptions::default())
            .unwrap();
        let k = saml_metadata::model::sha1_hex(id);
        std::fs::write(dir.path().join(format!("{k}.xml")), &doc).unwrap();
        // a expires first, c last.
        std::fs::write(
            dir.path().join(format!("{k}.meta")),
            format!("entity_id={id}\nexpires={}\n", 4_000_000_000u64 + n as u64),
        )
        .unwrap();
    }
    let opts = Options::default()
        .with_cache_dir(dir.path())
        .with_retries(0);
    let dead = "http://127.0.0.1:9/";
    let mut cfg = Config::new(BaseUrl::parse(dead).unwrap(), keys.clone());
    cfg.max_entries = 2;
    let c = BlockingClient::new(cfg, opts.clone());
    assert_eq!(c.cached(), 2);
    let left = |dir: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let a = saml_metadata::model::sha1_hex(ids[0]);
    assert!(
        !left(dir.path()).iter().any(|f| f.starts_with(&a)),
        "a went"
    );
    assert_eq!(left(dir.path()).len(), 4);
    // Another federation key: nothing restores, and nothing stays.
    let other =
        SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut other_keys = TrustedKeys::new();
    other_keys
        .add_public_key(other.public_key().unwrap(), "other")
        .unwrap();
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse(dead).unwrap(), other_keys),
        opts.clone(),
    );
    assert_eq!(c.cached(), 0);
    assert_eq!(c.skipped_cache_files().len(), 2);
    assert!(left(dir.path()).is_empty(), "{:?}", left(dir.path()));
}

/// mdq review M4: a "not found" left the copy an earlier answer had saved, restored after a
/// restart (and served stale when the server failed). It is removed.
#[test]
fn a_not_found_answer_removes_what_an_earlier_answer_saved() {
    let (keys, doc, dir, opts) = fixture();
    let id = Identifier::entity_id(SP).unwrap();
    let (base, _) = server(vec![Act::Send(http(
        "200 OK",
        &[XML, ("Cache-Control", "max-age=3600")],
        &doc,
    ))]);
    let c = BlockingClient::new(
        Config::new(BaseUrl::parse(&base).unwrap(), keys.clone()),
        opts.clone(),
    );
    assert!(c.get(&id).unwrap().is_some());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // Restarted with the saved entry expired past max_stale: fetched again, and gone.
    expire_saved_entry(dir.path());
    let (base, _) = server(vec![Act::Send(http("404 Not Found", &[], b""))]);
    let mut cfg = Config::new(BaseUrl::parse(&base).unwrap(), keys);
    cfg.max_stale = Duration::from_secs(10 * 365 * 86400);
    let c = BlockingClient::new(cfg, opts);
    assert!(c.get(&id).unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the copy saved before is gone"
    );
}
