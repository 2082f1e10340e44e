//! What a contact's key may cost to use (review K1): sequoia's standard policy takes any RSA
//! key of 2048 bits or more, and OpenSSL bounds the public exponent only above 3072 bits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use openpgp::cert::Cert;
use openpgp::packet::key::{Key4, PrimaryRole, SecretParts};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::types::{KeyFlags, SignatureType};
use openssl::bn::{BigNum, BigNumContext};
use sequoia_openpgp as openpgp;
use xep0027::policy::Policy;

/// A certificate whose primary key is RSA with two `half`-bit primes and a public exponent of
/// about `e_bits` bits (65537 when `e_bits` is 17).
fn rsa_cert(half: i32, e_bits: i32) -> Cert {
    let ctime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut ctx = BigNumContext::new().unwrap();
    let prime = || {
        let mut p = BigNum::new().unwrap();
        p.generate_prime(half, false, None, None).unwrap();
        p
    };
    let (p, q) = (prime(), prime());
    let one = BigNum::from_u32(1).unwrap();
    let mut phi = BigNum::new().unwrap();
    phi.checked_mul(&(&p - &one), &(&q - &one), &mut ctx)
        .unwrap();
    let d = loop {
        let e = if e_bits == 17 {
            BigNum::from_u32(65537).unwrap()
        } else if e_bits == 1 {
            BigNum::from_u32(1).unwrap()
        } else {
            let mut e = BigNum::new().unwrap();
            e.rand(e_bits, openssl::bn::MsbOption::MAYBE_ZERO, true)
                .unwrap();
            e
        };
        let mut d = BigNum::new().unwrap();
        if d.mod_inverse(&e, &phi, &mut ctx).is_ok() {
            break d;
        }
    };
    let key: Key4<SecretParts, PrimaryRole> =
        Key4::import_secret_rsa(&d.to_vec(), &p.to_vec(), &q.to_vec(), ctime).unwrap();
    let key: openpgp::packet::Key<SecretParts, PrimaryRole> = key.into();
    let mut signer = key.clone().into_keypair().unwrap();
    let sig = SignatureBuilder::new(SignatureType::DirectKey)
        .set_signature_creation_time(ctime)
        .unwrap()
        .set_key_flags(KeyFlags::empty().set_signing())
        .unwrap()
        .sign_direct_key(&mut signer, key.parts_as_public())
        .unwrap();
    Cert::try_from(vec![openpgp::Packet::from(key), sig.into()]).unwrap()
}

/// Review K1: a contact's RSA-3072 key with a 3070-bit public exponent was valid under the
/// policy, and each verification with it cost some 7 ms (up to eight per stanza). It is not
/// valid under either policy; a usual key of the same size is.
#[test]
fn rsa_keys_with_huge_exponents_are_not_valid_under_the_policy() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let slow = rsa_cert(1536, 3070);
    let usual = rsa_cert(1536, 17);
    for policy in [Policy::standard(), Policy::legacy_sha1_era()] {
        let Err(e) = slow.with_policy(policy.openpgp(), now) else {
            panic!("the key with a 3070-bit exponent is valid under the policy");
        };
        assert!(e.to_string().contains("size bounds"), "{e}");
        assert!(usual.with_policy(policy.openpgp(), now).is_ok());
    }
}

/// Review of the twelfth round, F1: sequoia verifies a component's self-signatures with the
/// key before it asks the policy about the key, on every copy of the certificate, for every
/// User ID: the policy's bound came after the cost. Certificates are checked before sequoia is
/// given them (verification, encryption, User ID binding, one's own identity): over the key
/// bounds (an exponent of 3070 bits, or of 1), or with more than 64 User IDs, refused first.
#[test]
fn certificates_over_the_bounds_are_refused_before_sequoia_uses_them() {
    use xep0027::openpgp::{self as pgp, SigMode};
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let policy = Policy::standard();
    for cert in [rsa_cert(1536, 3070), rsa_cert(1024, 1)] {
        let signer = cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        let sig = pgp::sign_detached(signer, b"data", SigMode::Binary, now).unwrap();
        let e = pgp::verify_detached(&sig, b"data", std::slice::from_ref(&cert), &policy, now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused before use"), "{e}");
        let e = pgp::encrypt(b"x", &[&cert], None, &policy, now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused before use"), "{e}");
        assert!(xep0027::policy::check_cert(&cert).is_err());
    }
    // A usual key is taken.
    assert!(xep0027::policy::check_cert(&rsa_cert(1536, 17)).is_ok());
    // More than 64 User IDs.
    let mut b = openpgp::cert::CertBuilder::new()
        .set_creation_time(now - Duration::from_secs(60))
        .set_cipher_suite(openpgp::cert::CipherSuite::Cv25519);
    for i in 0..65 {
        b = b.add_userid(format!("xmpp:u{i}@example.org"));
    }
    let (many, _) = b.generate().unwrap();
    let e = xep0027::policy::check_cert(&many).unwrap_err().to_string();
    assert!(e.contains("65 User IDs"), "{e}");
}
