//! Keys and policies shared by the integration tests that sign their own documents.
#![allow(clippy::unwrap_used, clippy::panic, dead_code)]

use std::time::{Duration, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_metadata::load::Policy;

/// A fresh ECDSA P-256 signing key without a certificate.
pub(crate) fn key() -> SigningKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    SigningKey::new(
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
        None,
    )
    .unwrap()
}

/// `k`'s public key as the only trusted key.
pub(crate) fn trusted(k: &SigningKey) -> TrustedKeys {
    let mut keys = TrustedKeys::new();
    keys.add_public_key(k.public_key().unwrap(), "fed").unwrap();
    keys
}

/// A policy trusting `fed` at a fixed "now" (2027-01-15).
pub(crate) fn policy(fed: &SigningKey) -> Policy {
    Policy::new(
        trusted(fed),
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    )
}

/// What each of the paths (`load`, `load_lazy`, `split_report`, a selection of every entity)
/// makes of `doc`: (indexed entityIDs, refused entityIDs), the
/// three required to agree.
pub(crate) fn outcome(doc: &[u8], p: &Policy) -> (Vec<String>, Vec<String>) {
    use saml_metadata::filter::Filter;
    use saml_metadata::lazy::load_lazy;
    use saml_metadata::load;
    use saml_metadata::selection::{SelectOptions, write_selection};
    use saml_metadata::split::split_report;

    let eager = load::load(doc, p).unwrap();
    let mut ids: Vec<String> = eager.entities().map(|e| e.entity_id.clone()).collect();
    let mut refused: Vec<String> = eager
        .refused_entities()
        .iter()
        .map(|r| r.entity_id.clone())
        .collect();
    ids.sort();
    refused.sort();
    let lazy = load_lazy(doc, p).unwrap();
    let mut lazy_ids: Vec<String> = lazy.entity_ids().map(str::to_owned).collect();
    let mut lazy_refused: Vec<String> = lazy
        .refused_entities()
        .iter()
        .map(|r| r.entity_id.clone())
        .collect();
    lazy_ids.sort();
    lazy_refused.sort();
    assert_eq!((&ids, &refused), (&lazy_ids, &lazy_refused), "load_lazy");
    let split = split_report(doc, p).unwrap();
    let mut split_ids: Vec<String> = split
        .documents
        .iter()
        .map(|d| d.entity_id.clone())
        .collect();
    let mut split_refused: Vec<String> =
        split.refused.iter().map(|r| r.entity_id.clone()).collect();
    split_ids.sort();
    split_refused.sort();
    assert_eq!((&ids, &refused), (&split_ids, &split_refused), "split");
    // Each split entity, re-signed by another key (an MDQ server's), loads under that key
    // alone: no signature of the original (entity, role, below) is carried over.
    let mdq = key();
    for d in &split.documents {
        assert!(!d.xml.contains("</ds:Signature>"), "{}", d.xml);
        assert_eq!(
            lazy.entity_document(&d.entity_id).unwrap().as_ref(),
            Some(d)
        );
        let signed = saml_core::dsig::sign(d.xml.as_bytes(), &mdq, &Default::default()).unwrap();
        let e = load::load(&signed, &policy(&mdq)).unwrap_or_else(|e| panic!("{e}: {}", d.xml));
        assert!(e.get(&d.entity_id).is_some());
    }
    // A selection of every entity, re-signed: the same entities, none of their own
    // signatures carried over.
    if !ids.is_empty() {
        let resigner = key();
        let mut out = Vec::new();
        let mut sel_ids = write_selection(
            &lazy,
            &Filter::predicate(|_| true),
            &resigner,
            &SelectOptions::new("urn:test:all", None),
            &mut out,
        )
        .unwrap();
        sel_ids.sort();
        assert_eq!(sel_ids, ids, "selection");
        let back = load::load(&out, &policy(&resigner)).unwrap();
        let mut back_ids: Vec<String> = back.entities().map(|e| e.entity_id.clone()).collect();
        back_ids.sort();
        assert_eq!(back_ids, ids, "selection read back");
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .matches("</ds:Signature>")
                .count(),
            1
        );
    }
    (ids, refused)
}
