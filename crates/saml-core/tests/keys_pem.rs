//! Signing keys from PEM in every form users have (PKCS#8, PKCS#1, SEC1), certificates and
//! bare public keys as trust anchors, and clear errors for unusable keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::Error;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys, VerifyOptions};
use testkit::metadata::small_aggregate as aggregate;

fn keys(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/xmldsig/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key file")
}

fn sign_and_verify(key: &SigningKey, trusted: &TrustedKeys) {
    let signed = dsig::sign(aggregate().as_bytes(), key, &SignOptions::default()).expect("sign");
    dsig::verify(&signed, trusted, &VerifyOptions::metadata()).expect("verify");
}

#[test]
fn pkcs8_keys_with_certificates_from_the_xmlsec_test_set() {
    for (key, cert) in [
        ("rsa-2048-key.pem", "rsa-2048-cert.pem"),
        ("ec-prime256v1-key.pem", "ec-prime256v1-cert.pem"),
        ("ec-prime521v1-key.pem", "ec-prime521v1-cert.pem"),
    ] {
        let signing = SigningKey::from_pem(&keys(key), Some(&keys(cert))).expect(key);
        // cacert-style files carry a text dump before the PEM block.
        sign_and_verify(&signing, &TrustedKeys::from_pem(&keys(cert)).expect(cert));
    }
    // A bare public key as trust anchor.
    let signing = SigningKey::from_pem(&keys("rsa-2048-key.pem"), None).expect("key");
    sign_and_verify(
        &signing,
        &TrustedKeys::from_pem(&keys("rsa-2048-pubkey.pem")).expect("pubkey"),
    );
    assert!(TrustedKeys::from_pem(&keys("cacert.pem")).is_ok());
}

#[test]
fn pkcs1_and_sec1_private_keys() {
    let rsa = Rsa::generate(2048).unwrap();
    let pkcs1 = rsa.private_key_to_pem().unwrap();
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
    let signing = SigningKey::from_pem(&pkcs1, None).expect("PKCS#1");
    let mut trusted = TrustedKeys::new();
    trusted
        .add_public_key(signing.public_key().unwrap(), "rsa")
        .unwrap();
    sign_and_verify(&signing, &trusted);
    // PKCS#1 public key too.
    let pub_pkcs1 = rsa.public_key_to_pem_pkcs1().unwrap();
    sign_and_verify(
        &signing,
        &TrustedKeys::from_pem(&pub_pkcs1).expect("RSA PUBLIC KEY"),
    );

    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let sec1 = ec.private_key_to_pem().unwrap();
    assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
    let signing = SigningKey::from_pem(&sec1, None).expect("SEC1");
    let mut trusted = TrustedKeys::new();
    trusted
        .add_public_key(signing.public_key().unwrap(), "ec")
        .unwrap();
    sign_and_verify(&signing, &trusted);
}

#[test]
fn unusable_keys_are_refused_with_a_reason() {
    let small = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    assert!(matches!(SigningKey::new(small, None), Err(Error::Key(m)) if m.contains("1024")));
    let k1 = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
    assert!(
        matches!(SigningKey::from_pem(&k1, Some(&keys("rsa-2048-cert.pem"))), Err(Error::Key(m)) if m.contains("does not match"))
    );
    let k256k1 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP256K1).unwrap()).unwrap();
    assert!(matches!(
        SigningKey::new(PKey::from_ec_key(k256k1).unwrap(), None),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        SigningKey::from_pem(b"not a key", None),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        TrustedKeys::from_pem(b"no pem here"),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        TrustedKeys::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        Err(Error::Key(_))
    ));
    let dsa = keys("dsa-1024-cert.pem");
    assert!(matches!(TrustedKeys::from_pem(&dsa), Err(Error::Key(m)) if m.contains("unsupported")));
    // SHA-1 is never used to sign.
    let signing = SigningKey::from_pem(&keys("rsa-2048-key.pem"), None).unwrap();
    let sha1 = {
        let mut o = SignOptions::default();
        o.digest = dsig::DigestAlgorithm::Sha1;
        o
    };
    assert!(matches!(
        dsig::sign(aggregate().as_bytes(), &signing, &sha1),
        Err(Error::Usage(_))
    ));
}

/// Review K1: an RSA key with a huge public exponent (OpenSSL bounds it only above 3072 bits)
/// or modulus was trusted; each verification with a 3072-bit key and a 3070-bit exponent costs
/// some 7 ms, and every configured key is tried. Such keys are refused when added, from a bare
/// key and from a certificate's; usual keys and e = 3 still are taken.
#[test]
fn rsa_keys_with_huge_exponents_or_moduli_are_refused() {
    use openssl::bn::BigNum;
    let key = |n_bytes: usize, e: BigNum| {
        let n = BigNum::from_slice(&vec![0xffu8; n_bytes]).unwrap();
        PKey::from_rsa(Rsa::from_public_components(n, e).unwrap()).unwrap()
    };
    let mut huge_e = BigNum::from_slice(&[0xffu8; 375]).unwrap();
    huge_e.set_bit(0).unwrap();
    let refused = [
        ("3070-bit exponent", key(384, huge_e)),
        (
            "33-bit exponent",
            key(256, BigNum::from_dec_str("8589934593").unwrap()),
        ),
        ("even exponent", key(256, BigNum::from_u32(65536).unwrap())),
        ("exponent 1", key(256, BigNum::from_u32(1).unwrap())),
        (
            "16384-bit modulus",
            key(2048, BigNum::from_u32(65537).unwrap()),
        ),
    ];
    for (what, pkey) in refused {
        let e = TrustedKeys::new()
            .add_public_key(pkey, "x")
            .expect_err(what)
            .to_string();
        assert!(e.contains("RSA"), "{what}: {e}");
    }
    for (n_bytes, e) in [(256, 65537), (512, 65537), (1024, 65537), (256, 3)] {
        TrustedKeys::new()
            .add_public_key(key(n_bytes, BigNum::from_u32(e).unwrap()), "x")
            .unwrap_or_else(|err| panic!("{n_bytes} bytes, e = {e}: {err}"));
    }
    // A certificate carrying such a key is refused too.
    let cert = testkit::signer::slow_exponent_certificate();
    assert!(TrustedKeys::new().add_certificate(&cert).is_err());
    assert!(TrustedKeys::new().add_pem(&cert.to_pem().unwrap()).is_err());
}
