//! The entity's last step: the peer's metadata, as fetched from the broker, is accepted only
//! when the broker signed it and it is the entity asked for, then written in the
//! LocalDynamic layout; rollback removes it; a restart finds every source again.
#![cfg(feature = "fs")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use dame_protocol::integration::{
    IntegrationTarget, LocalDynamicDir, MemoryTarget, accept_peer, loc_file, metadata_file,
};
use dame_protocol::{ErrorKind, Refusal};
use saml_core::dsig::SignOptions;
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};
use testkit::signer::TestKey;

const SP: &str = "https://sp.example.org/shibboleth";

fn signed_sp(broker: &TestKey, entity_id: &str) -> Vec<u8> {
    let e = EntityDescriptor::builder(entity_id)
        .valid_until(SystemTime::now() + Duration::from_secs(86400))
        .sp(SpSso::builder().acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .build()
        .unwrap();
    e.sign(&broker.signing(), &SignOptions::default()).unwrap()
}

#[test]
fn only_the_brokers_signed_document_for_the_asked_entity_is_accepted() {
    let broker = TestKey::rsa("broker");
    let now = SystemTime::now();
    let xml = signed_sp(&broker, SP);
    let e = accept_peer(&xml, SP, &broker.trusted(), now).unwrap();
    assert_eq!(e.entity_id, SP);
    // Another entity's (validly signed) document for the one asked.
    let other = signed_sp(&broker, "https://other.example/sp");
    assert_eq!(
        accept_peer(&other, SP, &broker.trusted(), now)
            .unwrap_err()
            .refusal(),
        Some(Refusal::UnknownEntity)
    );
    // Signed by someone else, or tampered.
    let evil = TestKey::rsa("evil");
    let forged = signed_sp(&evil, SP);
    assert_eq!(
        accept_peer(&forged, SP, &broker.trusted(), now)
            .unwrap_err()
            .kind(),
        ErrorKind::Rejected
    );
    let tampered = String::from_utf8(xml.clone())
        .unwrap()
        .replace("https://sp.example.org/acs", "https://evil.example/acs");
    assert!(accept_peer(tampered.as_bytes(), SP, &broker.trusted(), now).is_err());
}

#[test]
fn memory_and_directory_targets_share_the_layout() {
    let xml = b"<md:EntityDescriptor/>".to_vec();
    let source = "https://broker.example/entities/https%3A%2F%2Fsp.example.org%2Fshibboleth";
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryTarget::default();
    let mut fs = LocalDynamicDir::open(dir.path().join("md")).unwrap();
    for t in [&mut mem as &mut dyn IntegrationTarget, &mut fs] {
        t.integrate(SP, &xml, source).unwrap();
        let sources = t.sources().unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(
            sources.get(metadata_file(SP).trim_end_matches(".xml")),
            Some(&source.to_owned())
        );
        assert!(t.integrate(SP, &xml, "http://plain.example/").is_err());
        // One entry at the cost of one: held, and its document up to a size.
        let stem = metadata_file(SP).replace(".xml", "");
        assert!(t.holds(&stem).unwrap());
        assert_eq!(t.document(&stem, xml.len()).unwrap(), Some(xml.clone()));
        assert_eq!(t.document(&stem, xml.len() - 1).unwrap(), None);
        assert!(t.remove(SP).unwrap());
        assert!(!t.holds(&stem).unwrap());
        assert_eq!(t.document(&stem, xml.len()).unwrap(), None);
        assert!(!t.remove(SP).unwrap());
        assert!(t.sources().unwrap().is_empty());
        t.integrate(SP, &xml, source).unwrap();
    }
    // What Shibboleth's LocalDynamic provider reads: <sha1>.xml, lower-case hex.
    let name = metadata_file(SP);
    assert_eq!(name.len(), 44);
    assert!(
        name.bytes()
            .take(40)
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(std::fs::read(fs.path().join(&name)).unwrap(), xml);
    assert_eq!(
        std::fs::read_to_string(fs.path().join(loc_file(SP))).unwrap(),
        format!("{source}\n")
    );
    assert_eq!(mem.files.get(&name), Some(&xml));
    // A restart: a new handle on the same directory finds the source again.
    let again = LocalDynamicDir::open(fs.path()).unwrap();
    assert_eq!(again.sources().unwrap().len(), 1);
}

#[test]
fn an_operators_own_file_is_neither_replaced_nor_removed() {
    // Agent review M4: a `<sha1>.xml` without DAME's `.xml.loc` marker is the operator's
    // hand-vetted LocalDynamic entry.
    let source = "https://broker.example/entities/https%3A%2F%2Fsp.example.org%2Fshibboleth";
    let operators = b"<md:EntityDescriptor entityID='operator'/>".to_vec();
    let dir = tempfile::tempdir().unwrap();
    let mut mem = MemoryTarget::default();
    mem.files.insert(metadata_file(SP), operators.clone());
    let mut fs = LocalDynamicDir::open(dir.path().join("md")).unwrap();
    std::fs::write(fs.path().join(metadata_file(SP)), &operators).unwrap();
    for t in [&mut mem as &mut dyn IntegrationTarget, &mut fs] {
        assert!(!t.remove(SP).unwrap());
        assert_eq!(
            t.integrate(SP, b"<md:EntityDescriptor/>", source)
                .unwrap_err()
                .refusal(),
            Some(Refusal::StaticallyConfigured)
        );
        assert!(t.sources().unwrap().is_empty());
        // Not DAME's: neither held nor handed out (it is never removed for an expiry).
        let stem = metadata_file(SP).replace(".xml", "");
        assert!(!t.holds(&stem).unwrap());
        assert_eq!(t.document(&stem, 1 << 20).unwrap(), None);
    }
    assert_eq!(mem.files.get(&metadata_file(SP)), Some(&operators));
    assert_eq!(mem.files.len(), 1);
    assert_eq!(
        std::fs::read(fs.path().join(metadata_file(SP))).unwrap(),
        operators
    );
    assert!(!fs.path().join(loc_file(SP)).exists());
}

/// Agent review L1: a new peer's `.xml.loc` was written before its `.xml`, and a removal
/// deleted the `.xml` before the `.xml.loc`, so a crash or a failed write between the two left
/// a `.xml.loc` the next start re-fetched and integrated: a peer whose exchange never
/// completed, or one the broker had rolled back. Temporary files of failed writes piled up.
/// Now a new entry is marked pending until its `.xml` is in place, a removal leaves a
/// tombstone first, and opening the directory finishes what was interrupted.
#[test]
fn what_a_crash_interrupted_is_finished_not_integrated_at_the_next_start() {
    const IDP: &str = "https://idp.example.net/idp";
    const KEPT: &str = "https://kept.example.net/idp";
    let source = |e: &str| format!("https://broker.example/entities/{}", e.len());
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    let mut fs = LocalDynamicDir::open(&md).unwrap();
    fs.integrate(KEPT, b"<md:EntityDescriptor/>", &source(KEPT))
        .unwrap();
    fs.integrate(SP, b"<md:EntityDescriptor/>", &source(SP))
        .unwrap();
    let stem = |e: &str| metadata_file(e).trim_end_matches(".xml").to_owned();
    // The states a crash leaves: a new peer's marker written, its `.xml` not (or only its
    // temporary file); a removal whose marker became a tombstone, its `.xml` not yet deleted;
    // a temporary file of a write that failed.
    std::fs::write(
        md.join(loc_file(IDP)),
        format!("{}\npending\n", source(IDP)),
    )
    .unwrap();
    std::fs::write(
        md.join(format!(".{}.tmp77-0", metadata_file(IDP))),
        b"<half",
    )
    .unwrap();
    std::fs::rename(
        md.join(loc_file(SP)),
        md.join(format!("{}.removing", loc_file(SP))),
    )
    .unwrap();
    std::fs::write(md.join(format!(".{}.tmp77-1", loc_file(KEPT))), b"x").unwrap();
    // An operator's unrelated dot file stays.
    std::fs::write(md.join(".keep.tmp"), b"mine").unwrap();

    let again = LocalDynamicDir::open(&md).unwrap();
    let sources = again.sources().unwrap();
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        vec![&stem(KEPT)],
        "only the committed entry is re-fetched"
    );
    assert_eq!(sources[&stem(KEPT)], source(KEPT));
    let mut left: Vec<String> = std::fs::read_dir(&md)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec![metadata_file(KEPT), loc_file(KEPT), ".keep.tmp".to_owned()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(again.recovered().len(), 4, "{:?}", again.recovered());
    // A write that fails leaves nothing: the `.xml`'s place is taken by a directory here, so
    // only the replacement of an entry DAME already holds can be tried; it fails, and the
    // entry stays as it was, committed.
    std::fs::remove_file(md.join(metadata_file(KEPT))).unwrap();
    std::fs::create_dir(md.join(metadata_file(KEPT))).unwrap();
    std::fs::write(md.join(metadata_file(KEPT)).join("x"), b"").unwrap();
    let mut again = again;
    assert!(
        again
            .integrate(KEPT, b"<md:EntityDescriptor/>", &source(KEPT))
            .is_err()
    );
    let stray: Vec<String> = std::fs::read_dir(&md)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") && n != ".keep.tmp")
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    assert_eq!(again.sources().unwrap().len(), 1);
}
