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
        assert!(t.remove(SP).unwrap());
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
    }
    assert_eq!(mem.files.get(&metadata_file(SP)), Some(&operators));
    assert_eq!(mem.files.len(), 1);
    assert_eq!(
        std::fs::read(fs.path().join(metadata_file(SP))).unwrap(),
        operators
    );
    assert!(!fs.path().join(loc_file(SP)).exists());
}
