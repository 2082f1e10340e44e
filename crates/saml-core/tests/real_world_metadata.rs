//! Real-world signed metadata (testdata/metadata at the repository root, see PROVENANCE.md there): federation
//! aggregates and vendor entity documents verify with the signer certificate, pinned by the
//! SHA-256 fingerprint the provenance notes give; the tampered twin fails; documents outside
//! our profile are refused with the precise reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use saml_core::dsig::{self, VerifyOptions};
use saml_core::{Error, SignatureError};
use testkit::metadata::{VERIFIABLE, data, pinned_signer};

fn options(legacy: bool) -> VerifyOptions {
    if legacy {
        VerifyOptions::metadata().legacy()
    } else {
        VerifyOptions::metadata()
    }
}

#[test]
fn real_world_signed_metadata_verifies() {
    for case in VERIFIABLE {
        let doc = data(case.file);
        let keys = pinned_signer(&doc, case.sha256);
        let v = dsig::verify(&doc, &keys, &options(case.legacy))
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        assert_eq!(v.key_index(), 0, "{}", case.file);
        assert!(v.canonical_len() > 1000, "{}", case.file);
    }
}

#[test]
fn sha1_documents_need_the_legacy_opt_in() {
    for case in VERIFIABLE.iter().filter(|c| c.legacy) {
        let doc = data(case.file);
        let keys = pinned_signer(&doc, case.sha256);
        match dsig::verify(&doc, &keys, &VerifyOptions::metadata()) {
            Err(Error::Signature(SignatureError::Algorithm(m))) => {
                assert!(m.contains("SHA-1"), "{m}")
            }
            other => panic!("{}: {other:?}", case.file),
        }
    }
}

#[test]
fn modified_after_signing_fails() {
    // Byte-identical to switch-aaitest-2008-signed.xml but validUntil changed after signing.
    let doc = data("switch-aaitest-2008-signed.invalid.xml");
    let keys = pinned_signer(&doc, VERIFIABLE[5].sha256);
    assert!(matches!(
        dsig::verify(&doc, &keys, &options(true)),
        Err(Error::Signature(SignatureError::DigestMismatch))
    ));
    // And the genuine one fails with a key that did not sign it.
    let doc = data("wayf-edugain-2019-signed.xml");
    let other = pinned_signer(&data("adfs-v2-signed.xml"), VERIFIABLE[1].sha256);
    assert!(matches!(
        dsig::verify(&doc, &other, &options(false)),
        Err(Error::Signature(SignatureError::NotTrusted))
    ));
}

#[test]
fn inclusive_c14n_signed_info_is_outside_the_profile() {
    // SWAMID 2009 canonicalizes SignedInfo with inclusive C14N 1.0, which rule 3 excludes.
    let doc = data("swamid-1.0-2009-signed.xml");
    let keys = pinned_signer(
        &doc,
        "F3:C7:45:EB:A8:2C:00:B6:C2:EE:E5:6C:23:D3:FD:D7:03:8E:F7:56:09:04:81:63:54:CB:AA:7C:AA:A7:E8:BE",
    );
    match dsig::verify(&doc, &keys, &options(true)) {
        Err(Error::Signature(SignatureError::Algorithm(m))) => {
            assert!(m.contains("REC-xml-c14n"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rsa_1024_needs_the_legacy_minimum() {
    // SWITCHaai 2008 is signed with a 1024-bit RSA key: SHA-1 alone is not enough.
    let doc = data("switch-aaitest-2008-signed.xml");
    let keys = pinned_signer(&doc, VERIFIABLE[5].sha256);
    let sha1_only = {
        let mut o = VerifyOptions::metadata();
        o.allow_sha1 = true;
        o
    };
    assert!(matches!(
        dsig::verify(&doc, &keys, &sha1_only),
        Err(Error::Signature(SignatureError::NotTrusted))
    ));
    dsig::verify(&doc, &keys, &VerifyOptions::metadata().legacy()).expect("legacy verifies");
}
