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
    inner: OpenPgpPolicy,
    legacy: bool,
}

/// Largest RSA modulus, or DSA and ElGamal prime, of a key this crate uses, in bits.
pub const MAX_KEY_BITS: usize = 8192;

/// sequoia's `StandardPolicy` (as configured by [`Policy`]) with bounds on what a key costs to
/// use (review K1): an RSA public exponent of at most 32 bits, a modulus or a DSA or ElGamal
/// prime of at most [`MAX_KEY_BITS`], a DSA subgroup order of at most 256 bits. OpenSSL bounds
/// an RSA exponent only above 3072 bits: a contact's 3072-bit key with a 3070-bit exponent
/// cost some 7 ms a verification, 170 times a usual key. A key over them is not valid under
/// the policy, so sequoia never verifies or encrypts with it.
#[derive(Clone, Debug)]
pub struct OpenPgpPolicy {
    standard: StandardPolicy<'static>,
}

impl OpenPgpPolicy {
    /// The standard policy this one bounds.
    pub fn standard(&self) -> &StandardPolicy<'static> {
        &self.standard
    }
}

impl sequoia_openpgp::policy::Policy for OpenPgpPolicy {
    fn signature(
        &self,
        sig: &sequoia_openpgp::packet::Signature,
        sec: sequoia_openpgp::policy::HashAlgoSecurity,
    ) -> sequoia_openpgp::Result<()> {
        self.standard.signature(sig, sec)
    }

    fn key(
        &self,
        ka: &sequoia_openpgp::cert::amalgamation::key::ValidErasedKeyAmalgamation<
            '_,
            sequoia_openpgp::packet::key::PublicParts,
        >,
    ) -> sequoia_openpgp::Result<()> {
        use sequoia_openpgp::crypto::mpi::PublicKey as Mpis;
        let costly = match ka.key().mpis() {
            Mpis::RSA { e, n } => e.bits() > 32 || n.bits() > MAX_KEY_BITS,
            Mpis::DSA { p, q, .. } => p.bits() > MAX_KEY_BITS || q.bits() > 256,
            Mpis::ElGamal { p, .. } => p.bits() > MAX_KEY_BITS,
            _ => false,
        };
        if costly {
            return Err(sequoia_openpgp::Error::PolicyViolation(
                format!(
                    "a {:?} key over this crate's size bounds (exponent at most 32 bits, \
                     modulus or prime at most {MAX_KEY_BITS} bits)",
                    ka.key().pk_algo()
                ),
                None,
            )
            .into());
        }
        self.standard.key(ka)
    }

    fn symmetric_algorithm(
        &self,
        algo: sequoia_openpgp::types::SymmetricAlgorithm,
    ) -> sequoia_openpgp::Result<()> {
        self.standard.symmetric_algorithm(algo)
    }

    fn aead_algorithm(
        &self,
        algo: sequoia_openpgp::types::AEADAlgorithm,
    ) -> sequoia_openpgp::Result<()> {
        self.standard.aead_algorithm(algo)
    }

    fn packet(&self, packet: &sequoia_openpgp::Packet) -> sequoia_openpgp::Result<()> {
        self.standard.packet(packet)
    }
}

impl Policy {
    /// sequoia's standard policy (the default).
    pub fn standard() -> Policy {
        let mut p = StandardPolicy::new();
        p.good_critical_notations(GOOD_CRITICAL_NOTATIONS);
        Policy {
            inner: OpenPgpPolicy { standard: p },
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
            inner: OpenPgpPolicy { standard: p },
            legacy: true,
        }
    }

    /// Whether this is the legacy policy.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The sequoia policy, for users who call sequoia directly: the standard policy with
    /// this crate's key bounds ([`OpenPgpPolicy`]).
    pub fn openpgp(&self) -> &OpenPgpPolicy {
        &self.inner
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::standard()
    }
}
