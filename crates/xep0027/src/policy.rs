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

/// Most User IDs, and most subkeys, a certificate may have to be used.
pub const MAX_CERT_COMPONENTS: usize = 64;

/// Most self-signatures one component (the primary key, a User ID, a subkey) may carry.
pub const MAX_SELF_SIGNATURES: usize = 32;

/// Whether a public key's parameters are within this crate's bounds (see [`OpenPgpPolicy`]):
/// an RSA public exponent odd, from 3 and of at most 32 bits (e = 1 would let anyone forge
/// its signatures), a modulus or a DSA or ElGamal prime of at most [`MAX_KEY_BITS`], a DSA
/// subgroup order of at most 256 bits.
fn key_within_bounds(mpis: &sequoia_openpgp::crypto::mpi::PublicKey) -> bool {
    use sequoia_openpgp::crypto::mpi::PublicKey as Mpis;
    match mpis {
        Mpis::RSA { e, n } => {
            let odd = e.value().last().is_some_and(|b| b & 1 == 1);
            e.bits() <= 32 && e.bits() >= 2 && odd && n.bits() <= MAX_KEY_BITS
        }
        Mpis::DSA { p, q, .. } => p.bits() <= MAX_KEY_BITS && q.bits() <= 256,
        Mpis::ElGamal { p, .. } => p.bits() <= MAX_KEY_BITS,
        _ => true,
    }
}

/// Checks a certificate before sequoia is given it: every key within the size bounds, at most
/// [`MAX_CERT_COMPONENTS`] User IDs and subkeys, at most [`MAX_SELF_SIGNATURES`] self-signatures
/// on each. sequoia verifies a component's self-signatures with the key before it asks the
/// policy about the key ([`OpenPgpPolicy`]), for every User ID, on every copy of the
/// certificate: a pinned contact's certificate with a 3070-bit exponent and 500 User IDs cost
/// seconds per stanza (review of the twelfth round, F1). Nothing is verified here.
pub fn check_cert(cert: &sequoia_openpgp::Cert) -> crate::error::Result<()> {
    let refused = |why: String| {
        Err(crate::error::Error::Key(format!(
            "certificate {} refused before use: {why}",
            cert.fingerprint()
        )))
    };
    if let Some(k) = cert
        .keys()
        .map(|ka| ka.key().mpis())
        .find(|m| !key_within_bounds(m))
    {
        return refused(format!(
            "a {:?} key over the size bounds (an odd RSA exponent from 3 and of at most 32 \
             bits, a modulus or prime of at most {MAX_KEY_BITS} bits)",
            k.algo()
        ));
    }
    let (uids, subkeys) = (cert.userids().count(), cert.keys().subkeys().count());
    if uids > MAX_CERT_COMPONENTS || subkeys > MAX_CERT_COMPONENTS {
        return refused(format!(
            "{uids} User IDs and {subkeys} subkeys (at most {MAX_CERT_COMPONENTS} of each)"
        ));
    }
    let most = cert
        .userids()
        .map(|u| u.self_signatures().count())
        .chain(cert.keys().map(|k| k.self_signatures().count()))
        .max()
        .unwrap_or(0);
    if most > MAX_SELF_SIGNATURES {
        return refused(format!(
            "a component with {most} self-signatures (at most {MAX_SELF_SIGNATURES})"
        ));
    }
    Ok(())
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
        if !key_within_bounds(ka.key().mpis()) {
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
