//! Which OpenPGP algorithms and keys are acceptable: explicit, never implicit.
//!
//! [`Policy::standard`] is sequoia's `StandardPolicy` (RFC 9580 guidance: SHA-1 data
//! signatures made after 2013-02-01 are refused, SHA-1 key bindings after 2023, RSA and DSA
//! keys under 2048 bits refused). [`Policy::legacy_sha1_era`] is the named, explicit opt-in for
//! keys and signatures from the SHA-1 era that real XEP-0027 deployments still have: it accepts
//! SHA-1 in every context and 1024-bit RSA, DSA and ElGamal keys. Choose it per peer, knowingly.
//! Both accept one critical notation, the envelope signature's purpose (review session 26, X1).

use sequoia_openpgp::policy::AsymmetricAlgorithm;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::types::HashAlgorithm;

/// The critical notations this crate understands: the envelope signature's purpose
/// (review session 26, X1), critical so that other OpenPGP implementations (RFC 9580
/// §5.2.3.7: an unknown critical subpacket or notation invalidates the signature) refuse an
/// envelope signature passed off as a XEP-0027 one.
const GOOD_CRITICAL_NOTATIONS: &[&str] = &[crate::ns::notation::PURPOSE];

/// An OpenPGP acceptance policy.
#[derive(Clone, Debug)]
pub struct Policy {
    inner: StandardPolicy<'static>,
    legacy: bool,
}

impl Policy {
    /// sequoia's standard policy (the default).
    pub fn standard() -> Policy {
        let mut p = StandardPolicy::new();
        p.good_critical_notations(GOOD_CRITICAL_NOTATIONS);
        Policy {
            inner: p,
            legacy: false,
        }
    }

    /// The standard policy plus SHA-1 everywhere and 1024-bit RSA/DSA/ElGamal keys: for legacy
    /// SHA-1-era keys only, chosen explicitly.
    pub fn legacy_sha1_era() -> Policy {
        let mut p = StandardPolicy::new();
        p.good_critical_notations(GOOD_CRITICAL_NOTATIONS);
        p.accept_hash(HashAlgorithm::SHA1);
        for a in [
            AsymmetricAlgorithm::RSA1024,
            AsymmetricAlgorithm::DSA1024,
            AsymmetricAlgorithm::ElGamal1024,
        ] {
            p.accept_asymmetric_algo(a);
        }
        Policy {
            inner: p,
            legacy: true,
        }
    }

    /// Whether this is the legacy policy.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The sequoia policy, for users who call sequoia directly.
    pub fn openpgp(&self) -> &StandardPolicy<'static> {
        &self.inner
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::standard()
    }
}
