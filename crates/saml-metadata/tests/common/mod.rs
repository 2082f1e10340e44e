//! Keys and policies shared by the integration tests that sign their own documents.
#![allow(clippy::unwrap_used, dead_code)]

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
