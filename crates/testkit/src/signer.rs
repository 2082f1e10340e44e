//! Throw-away signing keys with self-signed certificates: [`TestKey`] (RSA-2048 or EC) for
//! tests, [`rsa2048_self_signed`] as PEM for programs and files.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use saml_core::dsig::{SigningKey, TrustedKeys};

/// A fresh RSA-2048 key and a self-signed certificate for it (common name `cn`, valid for
/// ten years): `(private key PKCS#8 PEM, certificate PEM)`.
pub fn rsa2048_self_signed(cn: &str) -> Result<(Vec<u8>, Vec<u8>), ErrorStack> {
    let k = TestKey::rsa(cn);
    Ok((k.key_pem(), k.cert_pem()))
}

/// An RSA public key with a 3072-bit modulus of all ones and an odd 3000-bit public exponent:
/// what a verification with it would cost is some 170 times a usual key's (review K1). No
/// private key exists; nothing made with it verifies.
pub fn slow_exponent_key() -> PKey<openssl::pkey::Public> {
    let mut e = BigNum::from_slice(&[0xffu8; 375]).expect("bn");
    e.set_bit(0).expect("bit");
    let n = BigNum::from_slice(&[0xffu8; 384]).expect("bn");
    PKey::from_rsa(Rsa::from_public_components(n, e).expect("rsa")).expect("pkey")
}

/// A certificate for [`slow_exponent_key`], signed by a fresh RSA-2048 key.
pub fn slow_exponent_certificate() -> X509 {
    let signer = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "slow").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&slow_exponent_key()).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("na");
    b.sign(&signer, MessageDigest::sha256()).expect("sign");
    b.build()
}

/// A key pair and a self-signed certificate (ten years) made on the spot.
pub struct TestKey {
    /// The private key.
    pub pkey: PKey<Private>,
    /// Its self-signed certificate.
    pub cert: X509,
}

impl TestKey {
    /// RSA-2048.
    pub fn rsa(cn: &str) -> Self {
        Self::new(
            PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey"),
            cn,
        )
    }

    /// An EC key on the curve `nid`.
    pub fn ec(nid: Nid, cn: &str) -> Self {
        let group = EcGroup::from_curve_name(nid).expect("group");
        Self::new(
            PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey"),
            cn,
        )
    }

    /// The same key with a new self-signed certificate (a renewal) for `cn`.
    pub fn reissued(&self, cn: &str) -> Self {
        Self::new(self.pkey.clone(), cn)
    }

    fn new(pkey: PKey<Private>, cn: &str) -> Self {
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", cn).expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("version");
        b.set_serial_number(
            &BigNum::from_u32(1)
                .expect("bn")
                .to_asn1_integer()
                .expect("serial"),
        )
        .expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&pkey).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(3650).expect("time"))
            .expect("na");
        b.sign(&pkey, MessageDigest::sha256()).expect("sign");
        TestKey {
            pkey,
            cert: b.build(),
        }
    }

    /// As a [`SigningKey`] carrying its certificate.
    pub fn signing(&self) -> SigningKey {
        SigningKey::new(self.pkey.clone(), Some(self.cert.clone())).expect("signing key")
    }

    /// Its certificate as the only trusted key.
    pub fn trusted(&self) -> TrustedKeys {
        let mut t = TrustedKeys::new();
        t.add_certificate(&self.cert).expect("cert");
        t
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> Vec<u8> {
        self.pkey.private_key_to_pem_pkcs8().expect("pem")
    }

    /// Writes `<name>.key` (PKCS#8 PEM, readable by its owner only) and `<name>.crt` (PEM) in
    /// `dir`; returns their paths.
    pub fn write_pem(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        write_secret(&key, &self.key_pem());
        std::fs::write(&cert, self.cert_pem()).expect("write certificate");
        (key, cert)
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().expect("der")
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("pem")
    }
}

/// A fresh RSA-2048 [`SigningKey`] without a certificate.
pub fn rsa_signing_key() -> SigningKey {
    SigningKey::new(
        PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey"),
        None,
    )
    .expect("signing key")
}

/// Writes `bytes` to `path` readable and writable by its owner only (mode 0600 on Unix), as
/// services that refuse secrets others can read want their keys and tokens.
pub fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod secret");
    }
}
