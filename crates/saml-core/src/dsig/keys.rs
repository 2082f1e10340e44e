//! Keys: the trusted verification keys a caller configures (XMLDSIG.md rule 4: trust never
//! comes from the document's KeyInfo) and signing keys loaded from PEM.

use openssl::bn::BigNum;
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;

use super::algorithms::SignatureAlgorithm;
use crate::error::{Error, SignatureError};

/// One trusted key, from a certificate or a bare public key.
#[derive(Clone)]
pub struct TrustedKey {
    pkey: PKey<Public>,
    cert_der: Option<Vec<u8>>,
    name: String,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("name", &self.name)
            .finish()
    }
}

impl TrustedKey {
    /// A human-readable name: the certificate subject, or "public key".
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 fingerprint of the certificate (lower-case hex), if the key came from one.
    #[must_use]
    pub fn certificate_sha256(&self) -> Option<String> {
        let der = self.cert_der.as_ref()?;
        hash(MessageDigest::sha256(), der).ok().map(|d| hex(&d))
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> &PKey<Public> {
        &self.pkey
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The set of keys a verification trusts; several for key rollover.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// An empty set (verification with it always fails with a usage error).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `CERTIFICATE`, `PUBLIC KEY` and `RSA PUBLIC KEY` block in `pem` (text before,
    /// between and after blocks is ignored, as in OpenSSL's own tools).
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        let mut keys = Self::new();
        keys.add_pem(pem)?;
        Ok(keys)
    }

    /// Adds every key block of `pem`; fails if there is none.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), Error> {
        let text = std::str::from_utf8(pem).map_err(|_| Error::Key("PEM is not text".into()))?;
        let before = self.keys.len();
        let mut rest = text;
        while let Some(begin) = rest.find("-----BEGIN ") {
            let block = &rest[begin..];
            let label_end = block[11..]
                .find("-----")
                .ok_or_else(|| Error::Key("malformed PEM header".into()))?;
            let label = &block[11..11 + label_end];
            let end_marker = format!("-----END {label}-----");
            let end = block
                .find(&end_marker)
                .ok_or_else(|| Error::Key(format!("PEM block {label} is not terminated")))?;
            let one = &block[..end + end_marker.len()];
            match label {
                "CERTIFICATE" => {
                    let cert = X509::from_pem(one.as_bytes())
                        .map_err(|e| Error::Key(format!("bad certificate: {e}")))?;
                    self.add_certificate(&cert)?;
                }
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    let pkey = if label == "PUBLIC KEY" {
                        PKey::public_key_from_pem(one.as_bytes())
                    } else {
                        openssl::rsa::Rsa::public_key_from_pem_pkcs1(one.as_bytes())
                            .and_then(PKey::from_rsa)
                    }
                    .map_err(|e| Error::Key(format!("bad public key: {e}")))?;
                    self.add_public_key(pkey, "public key")?;
                }
                _ => {}
            }
            rest = &block[end + end_marker.len()..];
        }
        if self.keys.len() == before {
            return Err(Error::Key("no certificate or public key in PEM".into()));
        }
        Ok(())
    }

    /// Trusts the key of `cert`. The certificate's validity dates are not checked: in SAML
    /// metadata, certificates are key carriers.
    pub fn add_certificate(&mut self, cert: &X509) -> Result<(), Error> {
        let pkey = cert.public_key()?;
        check_public_key(&pkey)?;
        let name = cert
            .subject_name()
            .entries()
            .filter_map(|e| e.data().to_string().ok())
            .collect::<Vec<_>>()
            .join(", ");
        self.keys.push(TrustedKey {
            pkey,
            cert_der: Some(cert.to_der()?),
            name,
        });
        Ok(())
    }

    /// Trusts a bare public key.
    pub fn add_public_key(&mut self, pkey: PKey<Public>, name: &str) -> Result<(), Error> {
        check_public_key(&pkey)?;
        self.keys.push(TrustedKey {
            pkey,
            cert_der: None,
            name: name.to_owned(),
        });
        Ok(())
    }

    /// The keys, in the order they were added (the index is what [`super::Verified::key_index`]
    /// reports).
    #[must_use]
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a signature over octets that are not XML (see [`SigningKey::sign_octets`]) with
    /// any configured key; returns the index of the key that verified it. RSA keys shorter than
    /// `min_rsa_bits` are refused.
    pub fn verify_octets(
        &self,
        alg: SignatureAlgorithm,
        min_rsa_bits: u32,
        data: &[u8],
        sig: &[u8],
    ) -> Result<usize, Error> {
        self.verify(alg, min_rsa_bits, data, sig, &[])
    }

    /// Verifies `sig` over `data` with the first key that can: keys whose certificate equals one
    /// of `hint_certs` (from KeyInfo, DER) are tried first, but every configured key is tried.
    /// KeyInfo never grants trust, but it can refuse: when it carries certificates and none of
    /// them holds the public key that verified (a renewed certificate of the same key does),
    /// the signature is refused ([`SignatureError::KeyInfoMismatch`]), as Shibboleth SP does.
    pub(crate) fn verify(
        &self,
        alg: SignatureAlgorithm,
        min_rsa_bits: u32,
        data: &[u8],
        sig: &[u8],
        hint_certs: &[Vec<u8>],
    ) -> Result<usize, Error> {
        if self.keys.is_empty() {
            return Err(Error::Usage("no trusted keys configured".into()));
        }
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        order.sort_by_key(|&i| {
            let hinted = self.keys[i]
                .cert_der
                .as_ref()
                .is_some_and(|d| hint_certs.iter().any(|h| h == d));
            !hinted
        });
        for i in order {
            let key = &self.keys[i].pkey;
            if verify_with(key, alg, min_rsa_bits, data, sig)? {
                if !key_info_allows(hint_certs, key) {
                    return Err(SignatureError::KeyInfoMismatch.into());
                }
                return Ok(i);
            }
        }
        Err(SignatureError::NotTrusted.into())
    }
}

/// Whether a signature made by `key` may stand with these KeyInfo certificates (DER): no
/// certificate, or one that holds `key` (an unreadable certificate holds none).
pub(crate) fn key_info_allows(certs: &[Vec<u8>], key: &PKey<Public>) -> bool {
    certs.is_empty() || certs.iter().any(|der| holds(der, key))
}

/// Whether the DER certificate `der` holds the public key `key`.
fn holds(der: &[u8], key: &PKey<Public>) -> bool {
    X509::from_der(der)
        .and_then(|c| c.public_key())
        .is_ok_and(|k| k.public_eq(key))
}

/// Largest RSA modulus taken, in bits: every federation profile in use signs with 2048 to
/// 4096 bits.
pub const MAX_RSA_BITS: u32 = 8192;

/// Checks a public key before it is trusted. RSA: a modulus of at most [`MAX_RSA_BITS`] and
/// an odd public exponent from 3 to 2^32 - 1. OpenSSL bounds the exponent only above 3072 bits
/// (to 64 bits): a 3072-bit key with a 3070-bit exponent costs some 7 ms a verification, 170
/// times a usual key's, and every configured key is tried on each signature, so one
/// certificate repeated in metadata bought seconds of work per message (review K1).
pub fn check_key(pkey: &PKey<Public>) -> Result<(), Error> {
    check_public_key(pkey)
}

fn check_public_key(pkey: &PKey<Public>) -> Result<(), Error> {
    match pkey.id() {
        Id::RSA => {
            let rsa = pkey.rsa()?;
            let bits = rsa.n().num_bits();
            if bits > MAX_RSA_BITS as i32 {
                return Err(Error::Key(format!(
                    "an RSA key of {bits} bits (at most {MAX_RSA_BITS})"
                )));
            }
            let e = rsa.e();
            if e.num_bits() > 32 || !e.is_bit_set(0) || e.num_bits() < 2 {
                return Err(Error::Key(format!(
                    "an RSA public exponent of {} bits, or even, or under 3 \
                     (an odd number from 3 to 2^32 - 1 is taken)",
                    e.num_bits()
                )));
            }
            Ok(())
        }
        Id::EC => {
            let ec = pkey.ec_key()?;
            curve_len(ec.group().curve_name()).map(|_| ())
        }
        other => Err(Error::Key(format!("unsupported key type {other:?}"))),
    }
}

/// Field size in bytes of the supported curves (P-256, P-384, P-521).
fn curve_len(nid: Option<Nid>) -> Result<usize, Error> {
    match nid {
        Some(Nid::X9_62_PRIME256V1) => Ok(32),
        Some(Nid::SECP384R1) => Ok(48),
        Some(Nid::SECP521R1) => Ok(66),
        other => Err(Error::Key(format!("unsupported EC curve {other:?}"))),
    }
}

fn verify_with(
    key: &PKey<Public>,
    alg: SignatureAlgorithm,
    min_rsa_bits: u32,
    data: &[u8],
    sig: &[u8],
) -> Result<bool, Error> {
    let md = alg.message_digest();
    if alg.is_ecdsa() {
        if key.id() != Id::EC {
            return Ok(false);
        }
        let ec = key.ec_key()?;
        let n = curve_len(ec.group().curve_name())?;
        if sig.len() != 2 * n {
            return Ok(false);
        }
        let r = BigNum::from_slice(&sig[..n])?;
        let s = BigNum::from_slice(&sig[n..])?;
        let der = EcdsaSig::from_private_components(r, s)?.to_der()?;
        let mut v = Verifier::new(md, key)?;
        v.update(data)?;
        Ok(v.verify(&der).unwrap_or(false))
    } else {
        if key.id() != Id::RSA || key.bits() < min_rsa_bits {
            return Ok(false);
        }
        let mut v = Verifier::new(md, key)?;
        v.update(data)?;
        Ok(v.verify(sig).unwrap_or(false))
    }
}

/// A private key for signing (RSA of 2048 bits or more, or ECDSA on P-256/P-384/P-521), with
/// the certificate placed in KeyInfo.
#[derive(Clone)]
pub struct SigningKey {
    pkey: PKey<Private>,
    cert: Option<X509>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("type", &self.pkey.id())
            .field("bits", &self.pkey.bits())
            .finish()
    }
}

impl SigningKey {
    /// Loads a private key from PEM (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)
    /// and optionally its certificate (which must carry the same public key).
    pub fn from_pem(key_pem: &[u8], cert_pem: Option<&[u8]>) -> Result<Self, Error> {
        let pkey = PKey::private_key_from_pem(key_pem)
            .map_err(|e| Error::Key(format!("bad private key: {e}")))?;
        let cert = cert_pem
            .map(|c| X509::from_pem(c).map_err(|e| Error::Key(format!("bad certificate: {e}"))))
            .transpose()?;
        Self::new(pkey, cert)
    }

    /// Wraps an OpenSSL key and optional certificate.
    pub fn new(pkey: PKey<Private>, cert: Option<X509>) -> Result<Self, Error> {
        match pkey.id() {
            Id::RSA if (2048..=MAX_RSA_BITS).contains(&pkey.bits()) => {}
            Id::RSA => {
                // Above MAX_RSA_BITS, every peer of this code base refuses what it signs
                // (review of the twelfth round, F8): said at start, not at the peers.
                return Err(Error::Key(format!(
                    "RSA key of {} bits (2048 to {MAX_RSA_BITS})",
                    pkey.bits()
                )));
            }
            Id::EC => {
                curve_len(pkey.ec_key()?.group().curve_name())?;
            }
            other => return Err(Error::Key(format!("unsupported key type {other:?}"))),
        }
        if let Some(c) = &cert
            && !c.public_key()?.public_eq(&pkey)
        {
            return Err(Error::Key(
                "the certificate does not match the private key".into(),
            ));
        }
        Ok(SigningKey { pkey, cert })
    }

    /// The natural algorithm for this key: RSA-SHA256, or ECDSA with the curve's hash size.
    #[must_use]
    pub fn default_algorithm(&self) -> SignatureAlgorithm {
        match self.pkey.ec_key().ok().and_then(|e| e.group().curve_name()) {
            Some(Nid::SECP384R1) => SignatureAlgorithm::EcdsaSha384,
            Some(Nid::SECP521R1) => SignatureAlgorithm::EcdsaSha512,
            Some(_) => SignatureAlgorithm::EcdsaSha256,
            None => SignatureAlgorithm::RsaSha256,
        }
    }

    /// The certificate, if any.
    #[must_use]
    pub fn certificate(&self) -> Option<&X509> {
        self.cert.as_ref()
    }

    /// The public half, e.g. to build [`TrustedKeys`] in tests.
    pub fn public_key(&self) -> Result<PKey<Public>, Error> {
        Ok(PKey::public_key_from_der(&self.pkey.public_key_to_der()?)?)
    }

    /// Signs octets that are not XML: a query string signed the way the HTTP-Redirect binding
    /// signs (SAML Bindings §3.4.4.1), or a protocol built like it (DAME triggers). SHA-1
    /// algorithms are refused for new signatures. For ECDSA the result is the raw `r||s`.
    pub fn sign_octets(&self, alg: SignatureAlgorithm, data: &[u8]) -> Result<Vec<u8>, Error> {
        if matches!(
            alg,
            SignatureAlgorithm::RsaSha1 | SignatureAlgorithm::EcdsaSha1
        ) {
            return Err(Error::Usage("SHA-1 is not used for new signatures".into()));
        }
        self.sign(alg, data)
    }

    /// Signs `data`; for ECDSA the result is the raw `r||s` of XML-DSig 1.1.
    pub(crate) fn sign(&self, alg: SignatureAlgorithm, data: &[u8]) -> Result<Vec<u8>, Error> {
        let is_ec = self.pkey.id() == Id::EC;
        if alg.is_ecdsa() != is_ec {
            return Err(Error::Usage(format!("{} does not fit this key", alg.uri())));
        }
        let mut signer = Signer::new(alg.message_digest(), &self.pkey)?;
        signer.update(data)?;
        let sig = signer.sign_to_vec()?;
        if !is_ec {
            return Ok(sig);
        }
        let ec: EcKey<Private> = self.pkey.ec_key()?;
        let n = curve_len(ec.group().curve_name())?;
        let parsed = EcdsaSig::from_der(&sig)?;
        let mut out = parsed.r().to_vec_padded(n as i32)?;
        out.extend(parsed.s().to_vec_padded(n as i32)?);
        Ok(out)
    }
}
