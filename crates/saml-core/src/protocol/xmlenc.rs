//! `saml:EncryptedAssertion` (SAML Core §2.3.4) with XML Encryption 1.1: RSA-OAEP key transport
//! (`xmlenc#rsa-oaep-mgf1p`, `xmlenc11#rsa-oaep` with its DigestMethod and MGF) of a content key
//! for AES-GCM (`xmlenc11#aes128-gcm`, `aes192-gcm`, `aes256-gcm`) or AES-CBC (`xmlenc#aes128-cbc`,
//! `aes192-cbc`, `aes256-cbc`); TripleDES-CBC only as an opt-in (`allow_tripledes`). RSA
//! PKCS#1 v1.5 key transport (`xmlenc#rsa-1_5`) is always refused (Bleichenbacher's attack).
//!
//! ## CBC and the padding oracle
//!
//! CBC (AES-CBC, TripleDES-CBC) carries no integrity of its own: without a verified signature
//! around the ciphertext it is open to the padding and format oracle attacks on XML Encryption
//! (Jager and Somorovsky, CCS 2011): whoever can submit modified ciphertexts and tell failures
//! apart recovers the plaintext. So:
//!
//! - AES-GCM is always accepted. CBC is accepted by default only inside a Response whose
//!   signature was verified before decryption (the ciphertext cannot be modified).
//! - TripleDES is a separate opt-in ([`DecryptOptions::allow_tripledes`], pysaml2's default
//!   algorithm): it admits the algorithm, not unauthenticated use.
//! - [`DecryptOptions::allow_unauthenticated_cbc`] admits CBC without such a signature. **This
//!   mode is a decryption oracle by design.** Every failure after the key unwrap (padding, UTF-8,
//!   XML, the assertion's shape, its signature) is reported as the one opaque
//!   [`OPAQUE_FAILURE`] error, which removes the error-message oracle, but response timing still
//!   differs between failures and is not hidden. Use it only for peers that can do nothing else.
//!
//! ## Work before authentication
//!
//! Unwrapping a content key is an RSA private-key operation, done before anything is
//! authenticated. An EncryptedAssertion may carry at most [`MAX_ENCRYPTED_KEYS`] EncryptedKeys
//! (more is refused while reading), and at most two private-key operations per configured key
//! ([`MAX_KEY_ATTEMPTS`] in all) are made per message. EncryptedKeys whose `ds:KeyInfo` carries an `X509Certificate` of one of our
//! keys are tried first, with that key only; one naming another certificate is not tried; then
//! those whose `Recipient` is our entityID, then the others.

use base64::Engine as _;
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode, decrypt_aead, encrypt_aead};

use crate::dsig::DSIG_NS;
use crate::error::Error;
use crate::error::ProtocolError;
use crate::xml::cursor::{Cursor, Elem};

pub use crate::ns::{XENC_NS, XENC11_NS};
/// `xmlenc#rsa-oaep-mgf1p` (MGF1 with SHA-1; OAEP digest from DigestMethod, SHA-1 by default).
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
/// `xmlenc11#rsa-oaep` (OAEP digest from DigestMethod, MGF from `xenc11:MGF`).
pub const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
/// `xmlenc#rsa-1_5`, refused.
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// Most `xenc:EncryptedKey` elements read for one EncryptedAssertion (inside its KeyInfo and as
/// siblings together); more is refused.
pub const MAX_ENCRYPTED_KEYS: usize = 16;

/// Most RSA private-key operations (key unwrap attempts) per EncryptedAssertion; fewer with
/// fewer configured keys: two per configured decryption key (an EncryptedKey for us and one
/// more, per key in a rollover), whatever the message carries.
pub const MAX_KEY_ATTEMPTS: usize = 8;

/// The private-key operations allowed for `keys` configured keys: two each, at most
/// [`MAX_KEY_ATTEMPTS`]. An unauthenticated message with 16 keyless EncryptedKeys cost eight
/// RSA operations with one configured key (SAML review F7).
fn attempt_cap(keys: usize) -> usize {
    keys.saturating_mul(2).min(MAX_KEY_ATTEMPTS)
}

/// Most `ds:X509Certificate`s looked at in one EncryptedKey's KeyInfo.
const MAX_KEYINFO_CERTIFICATES: usize = 4;

/// The one error text for every failure after the key unwrap when unauthenticated CBC is read
/// (see the module docs).
pub const OPAQUE_FAILURE: &str = "the encrypted assertion could not be decrypted";

/// Content encryption algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataAlgorithm {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-192-GCM.
    Aes192Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// AES-128-CBC.
    Aes128Cbc,
    /// AES-192-CBC.
    Aes192Cbc,
    /// AES-256-CBC.
    Aes256Cbc,
    /// TripleDES-CBC (only with `DecryptOptions::allow_tripledes`; pysaml2's default).
    TripleDesCbc,
}

const DATA_ALGORITHMS: [(DataAlgorithm, &str); 7] = [
    (
        DataAlgorithm::Aes128Gcm,
        "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    ),
    (
        DataAlgorithm::Aes192Gcm,
        "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    ),
    (
        DataAlgorithm::Aes256Gcm,
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    ),
    (
        DataAlgorithm::Aes128Cbc,
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    ),
    (
        DataAlgorithm::Aes192Cbc,
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    ),
    (
        DataAlgorithm::Aes256Cbc,
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    ),
    (
        DataAlgorithm::TripleDesCbc,
        "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
    ),
];

impl DataAlgorithm {
    /// The algorithm URI.
    #[must_use]
    pub fn uri(self) -> &'static str {
        DATA_ALGORITHMS
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, u)| *u)
            .unwrap_or_default()
    }

    /// Maps a URI.
    #[must_use]
    pub fn from_uri(uri: &str) -> Option<Self> {
        DATA_ALGORITHMS
            .iter()
            .find(|(_, u)| *u == uri)
            .map(|(a, _)| *a)
    }

    fn cipher(self) -> Cipher {
        match self {
            Self::Aes128Gcm => Cipher::aes_128_gcm(),
            Self::Aes192Gcm => Cipher::aes_192_gcm(),
            Self::Aes256Gcm => Cipher::aes_256_gcm(),
            Self::Aes128Cbc => Cipher::aes_128_cbc(),
            Self::Aes192Cbc => Cipher::aes_192_cbc(),
            Self::Aes256Cbc => Cipher::aes_256_cbc(),
            Self::TripleDesCbc => Cipher::des_ede3_cbc(),
        }
    }

    fn is_gcm(self) -> bool {
        matches!(self, Self::Aes128Gcm | Self::Aes192Gcm | Self::Aes256Gcm)
    }

    /// IV length on the wire.
    fn iv_len(self) -> usize {
        match self {
            Self::TripleDesCbc => 8,
            a if a.is_gcm() => 12,
            _ => 16,
        }
    }
}

/// An `xenc:EncryptedKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedKey {
    /// Key transport algorithm URI.
    pub algorithm: String,
    /// `ds:DigestMethod` (OAEP digest).
    pub digest: Option<String>,
    /// `xenc11:MGF` algorithm.
    pub mgf: Option<String>,
    /// `xenc:OAEPparams` (the OAEP label).
    pub oaep_params: Option<Vec<u8>>,
    /// The wrapped key.
    pub cipher: Vec<u8>,
    /// The `Recipient` attribute (a hint: the entityID the key is for).
    pub recipient: Option<String>,
    /// DER of the `ds:X509Certificate`s in its `ds:KeyInfo` (at most four): the certificate
    /// whose key wrapped it.
    pub certificates: Vec<Vec<u8>>,
}

/// An `xenc:EncryptedData` with the EncryptedKeys found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedData {
    /// Content algorithm URI.
    pub algorithm: String,
    /// IV, ciphertext (and GCM tag).
    pub cipher: Vec<u8>,
    /// Candidate wrapped keys (inside KeyInfo, and siblings in the EncryptedAssertion).
    pub keys: Vec<EncryptedKey>,
}

fn b64(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Vec<u8>, Error> {
    let t: String = c.text()?.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(t.as_bytes())
        .map_err(|err| e.invalid(format!("bad base64: {err}")).into())
}

fn cipher_data(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Vec<u8>, Error> {
    let mut out = None;
    while let Some(ch) = c.next_child("CipherData")? {
        if ch.is(XENC_NS, "CipherValue") {
            out = Some(b64(c, &ch)?);
        } else {
            // CipherReference would need retrieval: refused.
            return Err(ch.invalid("only xenc:CipherValue is supported").into());
        }
    }
    Ok(out.ok_or_else(|| e.invalid("missing xenc:CipherValue"))?)
}

fn encrypted_key(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<EncryptedKey, Error> {
    let mut k = EncryptedKey {
        algorithm: String::new(),
        digest: None,
        mgf: None,
        oaep_params: None,
        cipher: Vec::new(),
        recipient: e.string("Recipient"),
        certificates: Vec::new(),
    };
    while let Some(ch) = c.next_child("EncryptedKey")? {
        match (ch.ns, ch.local) {
            (XENC_NS, "EncryptionMethod") => {
                k.algorithm = ch.required("Algorithm")?.to_owned();
                while let Some(x) = c.next_child("EncryptionMethod")? {
                    match (x.ns, x.local) {
                        (DSIG_NS, "DigestMethod") => {
                            k.digest = Some(x.required("Algorithm")?.to_owned());
                            c.skip(&x)?;
                        }
                        (XENC11_NS, "MGF") => {
                            k.mgf = Some(x.required("Algorithm")?.to_owned());
                            c.skip(&x)?;
                        }
                        (XENC_NS, "OAEPparams") => k.oaep_params = Some(b64(c, &x)?),
                        _ => c.skip(&x)?,
                    }
                }
            }
            (XENC_NS, "CipherData") => k.cipher = cipher_data(c, &ch)?,
            (DSIG_NS, "KeyInfo") => {
                while let Some(x) = c.next_child("KeyInfo")? {
                    if !x.is(DSIG_NS, "X509Data") {
                        c.skip(&x)?; // KeyName, KeyValue, RetrievalMethod: not used to choose
                        continue;
                    }
                    while let Some(cert) = c.next_child("X509Data")? {
                        if cert.is(DSIG_NS, "X509Certificate")
                            && k.certificates.len() < MAX_KEYINFO_CERTIFICATES
                        {
                            k.certificates.push(b64(c, &cert)?);
                        } else {
                            c.skip(&cert)?;
                        }
                    }
                }
            }
            _ => c.skip(&ch)?, // ReferenceList, CarriedKeyName
        }
    }
    if k.algorithm.is_empty() || k.cipher.is_empty() {
        return Err(e
            .invalid("EncryptedKey needs EncryptionMethod and CipherValue")
            .into());
    }
    Ok(k)
}

/// Reads the `saml:EncryptedAssertion` whose start tag `e` was just returned.
pub(crate) fn read_encrypted(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<EncryptedData, Error> {
    let mut data: Option<EncryptedData> = None;
    let mut sibling_keys = Vec::new();
    let mut total = 0usize;
    while let Some(ch) = c.next_child("EncryptedAssertion")? {
        match (ch.ns, ch.local) {
            (XENC_NS, "EncryptedData") => {
                if data.is_some() {
                    return Err(ch.invalid("more than one xenc:EncryptedData").into());
                }
                let mut d = EncryptedData {
                    algorithm: String::new(),
                    cipher: Vec::new(),
                    keys: Vec::new(),
                };
                while let Some(x) = c.next_child("EncryptedData")? {
                    match (x.ns, x.local) {
                        (XENC_NS, "EncryptionMethod") => {
                            d.algorithm = x.required("Algorithm")?.to_owned();
                            c.skip(&x)?;
                        }
                        (DSIG_NS, "KeyInfo") => {
                            while let Some(k) = c.next_child("KeyInfo")? {
                                if k.is(XENC_NS, "EncryptedKey") {
                                    push_key(&mut d.keys, &mut total, c, &k)?;
                                } else {
                                    c.skip(&k)?; // RetrievalMethod: the sibling keys are tried
                                }
                            }
                        }
                        (XENC_NS, "CipherData") => d.cipher = cipher_data(c, &x)?,
                        _ => c.skip(&x)?,
                    }
                }
                if d.algorithm.is_empty() {
                    return Err(ch.invalid("missing xenc:EncryptionMethod").into());
                }
                data = Some(d);
            }
            (XENC_NS, "EncryptedKey") => push_key(&mut sibling_keys, &mut total, c, &ch)?,
            _ => {
                return Err(ch
                    .invalid("unexpected element in saml:EncryptedAssertion")
                    .into());
            }
        }
    }
    let mut d = data.ok_or_else(|| e.invalid("missing xenc:EncryptedData"))?;
    d.keys.extend(sibling_keys);
    if d.keys.is_empty() {
        return Err(e.invalid("no xenc:EncryptedKey").into());
    }
    Ok(d)
}

/// Counts EncryptedKeys as they are read and refuses more than [`MAX_ENCRYPTED_KEYS`].
fn push_key(
    keys: &mut Vec<EncryptedKey>,
    total: &mut usize,
    c: &mut Cursor<'_>,
    k: &Elem<'_>,
) -> Result<(), Error> {
    *total += 1;
    if *total > MAX_ENCRYPTED_KEYS {
        return Err(k
            .invalid(format!(
                "more than {MAX_ENCRYPTED_KEYS} xenc:EncryptedKey elements"
            ))
            .into());
    }
    keys.push(encrypted_key(c, k)?);
    Ok(())
}

fn digest(uri: Option<&str>) -> Result<MessageDigest, Error> {
    match uri {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => Ok(MessageDigest::sha1()),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => Ok(MessageDigest::sha256()),
        Some("http://www.w3.org/2001/04/xmldsig-more#sha384") => Ok(MessageDigest::sha384()),
        Some("http://www.w3.org/2001/04/xmlenc#sha512") => Ok(MessageDigest::sha512()),
        Some(other) => {
            Err(ProtocolError::Decryption(format!("unsupported OAEP digest {other}")).into())
        }
    }
}

fn mgf(uri: Option<&str>) -> Result<MessageDigest, Error> {
    match uri {
        None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => Ok(MessageDigest::sha1()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha224") => Ok(MessageDigest::sha224()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => Ok(MessageDigest::sha256()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha384") => Ok(MessageDigest::sha384()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => Ok(MessageDigest::sha512()),
        Some(other) => Err(ProtocolError::Decryption(format!("unsupported MGF {other}")).into()),
    }
}

#[cfg(test)]
thread_local! {
    /// RSA private-key operations made by this thread (tests count them).
    static PRIVATE_KEY_OPERATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// KeyInfo certificates parsed by this thread (tests count them).
    static CERTIFICATES_PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn unwrap_key(k: &EncryptedKey, key: &PKey<Private>) -> Result<Option<Vec<u8>>, Error> {
    let (md, mgf_md) = match k.algorithm.as_str() {
        RSA_OAEP_MGF1P => (digest(k.digest.as_deref())?, MessageDigest::sha1()),
        RSA_OAEP => (digest(k.digest.as_deref())?, mgf(k.mgf.as_deref())?),
        RSA_1_5 => {
            return Err(ProtocolError::Decryption(
                "RSA PKCS#1 v1.5 key transport (rsa-1_5) is refused".into(),
            )
            .into());
        }
        other => {
            return Err(
                ProtocolError::Decryption(format!("unsupported key transport {other}")).into(),
            );
        }
    };
    let mut d = Decrypter::new(key)?;
    d.set_rsa_padding(Padding::PKCS1_OAEP)?;
    d.set_rsa_oaep_md(md)?;
    d.set_rsa_mgf1_md(mgf_md)?;
    if let Some(label) = &k.oaep_params {
        d.set_rsa_oaep_label(label)?;
    }
    let mut out = vec![0u8; d.decrypt_len(&k.cipher)?];
    #[cfg(test)]
    PRIVATE_KEY_OPERATIONS.with(|n| n.set(n.get() + 1));
    match d.decrypt(&k.cipher, &mut out) {
        Ok(n) => {
            out.truncate(n);
            Ok(Some(out))
        }
        Err(_) => Ok(None),
    }
}

/// What [`content_key`] and [`decrypt`] admit beyond AES-GCM (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecryptOptions {
    /// Admit TripleDES-CBC content (pysaml2's default). Like AES-CBC it is then read inside a
    /// verified Response signature, or without one only if `allow_unauthenticated_cbc` is set
    /// too. Default false.
    pub allow_tripledes: bool,
    /// Admit CBC content that no verified signature covers: a decryption oracle by design
    /// (module docs); every failure after the key unwrap is then [`OPAQUE_FAILURE`]. Default
    /// false.
    pub allow_unauthenticated_cbc: bool,
    /// Our entityID: EncryptedKeys whose `Recipient` names it are tried before others.
    pub recipient: Option<String>,
}

/// An unwrapped content key, ready for [`ContentKey::decrypt`].
pub struct ContentKey {
    alg: DataAlgorithm,
    key: Vec<u8>,
    unauthenticated: bool,
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentKey")
            .field("alg", &self.alg)
            .field("unauthenticated", &self.unauthenticated)
            .finish_non_exhaustive()
    }
}

impl ContentKey {
    /// The content algorithm.
    #[must_use]
    pub fn algorithm(&self) -> DataAlgorithm {
        self.alg
    }

    /// Whether this is CBC content that no verified signature covers: every failure from here
    /// on must be reported as [`OPAQUE_FAILURE`] (the caller's parsing of the plaintext
    /// included).
    #[must_use]
    pub fn is_unauthenticated_cbc(&self) -> bool {
        self.unauthenticated
    }

    /// Decrypts the content of `data` (the EncryptedData this key was unwrapped for). Every
    /// failure is the same error.
    pub fn decrypt(&self, data: &EncryptedData) -> Result<Vec<u8>, Error> {
        let failed = || {
            let msg = if self.unauthenticated {
                OPAQUE_FAILURE
            } else {
                "content decryption failed"
            };
            Error::from(ProtocolError::Decryption(msg.into()))
        };
        content(self.alg, self.alg.cipher(), &self.key, &data.cipher).ok_or_else(failed)
    }
}

/// The (EncryptedKey, our key) pairs to try, best first, at most two per configured key and
/// [`MAX_KEY_ATTEMPTS`] in all:
/// a KeyInfo certificate of one of our keys pairs with that key only, any other certificate
/// excludes the EncryptedKey; then `Recipient` = us, no Recipient, another Recipient.
///
/// A certificate is parsed only when its DER holds one of our keys' SubjectPublicKeyInfo (a
/// certificate of that key does, verbatim), and then confirmed: the up to
/// [`MAX_ENCRYPTED_KEYS`] x 4 certificates of an unauthenticated message are searched, not
/// each parsed by OpenSSL (review of the eighth round, I5, the rest of saml review F7). So a
/// certificate that does not parse excludes its EncryptedKey too (before, it was passed over).
fn attempts<'a>(
    data: &'a EncryptedData,
    keys: &'a [PKey<Private>],
    recipient: Option<&str>,
) -> Vec<(&'a EncryptedKey, &'a PKey<Private>)> {
    let spkis: Vec<Option<Vec<u8>>> = keys.iter().map(|k| k.public_key_to_der().ok()).collect();
    // The public key of a certificate holding one of our keys' SubjectPublicKeyInfo, parsed
    // once whatever the number of our keys (the bytes are public: anyone can make a blob
    // holding them, so this bounds the parses to the certificates, not times our keys).
    let named = |der: &[u8]| -> Option<PKey<Public>> {
        let candidate = spkis
            .iter()
            .flatten()
            .any(|spki| memchr::memmem::find(der, spki).is_some());
        if !candidate {
            return None;
        }
        #[cfg(test)]
        CERTIFICATES_PARSED.with(|n| n.set(n.get() + 1));
        openssl::x509::X509::from_der(der)
            .ok()
            .and_then(|c| c.public_key().ok())
    };
    let mut ranked: Vec<(u8, &EncryptedKey, &PKey<Private>)> = Vec::new();
    for k in &data.keys {
        if !k.certificates.is_empty() {
            let public: Vec<PKey<Public>> =
                k.certificates.iter().filter_map(|der| named(der)).collect();
            for key in keys {
                if public.iter().any(|p| p.public_eq(key)) {
                    ranked.push((0, k, key));
                }
            }
            continue;
        }
        let rank = match (k.recipient.as_deref(), recipient) {
            (Some(r), Some(us)) if r == us => 1,
            (None, _) => 2,
            _ => 3,
        };
        ranked.extend(keys.iter().map(|key| (rank, k, key)));
    }
    ranked.sort_by_key(|(rank, _, _)| *rank); // stable: document and configuration order
    ranked
        .into_iter()
        .take(attempt_cap(keys.len()))
        .map(|(_, k, key)| (k, key))
        .collect()
}

/// Unwraps the content key of `data` with one of `keys` (this SP's decryption keys), under
/// `opts`; `authenticated` says whether a verified signature covers the ciphertext (the
/// Response's). Errors here do not depend on the content ciphertext; see the module docs for
/// the CBC rules and the bound on private-key operations.
pub fn content_key(
    data: &EncryptedData,
    keys: &[PKey<Private>],
    opts: &DecryptOptions,
    authenticated: bool,
) -> Result<ContentKey, Error> {
    let alg = DataAlgorithm::from_uri(&data.algorithm).ok_or_else(|| {
        ProtocolError::Decryption(format!("unsupported content algorithm {}", data.algorithm))
    })?;
    if alg == DataAlgorithm::TripleDesCbc && !opts.allow_tripledes {
        return Err(ProtocolError::Decryption(
            "TripleDES content encryption needs the allow_tripledes option".into(),
        )
        .into());
    }
    let unauthenticated = !alg.is_gcm() && !authenticated;
    if unauthenticated && !opts.allow_unauthenticated_cbc {
        return Err(ProtocolError::Decryption(format!(
            "{} without a verified Response signature around it is refused (padding oracle); \
             use AES-GCM, sign the Response, or opt in to allow_unauthenticated_cbc",
            alg.uri()
        ))
        .into());
    }
    if keys.is_empty() {
        return Err(ProtocolError::Decryption("no decryption key configured".into()).into());
    }
    let key_len = alg.cipher().key_len();
    for (k, key) in attempts(data, keys, opts.recipient.as_deref()) {
        let Some(cek) = unwrap_key(k, key)? else {
            continue;
        };
        if cek.len() != key_len {
            continue;
        }
        return Ok(ContentKey {
            alg,
            key: cek,
            unauthenticated,
        });
    }
    Err(ProtocolError::Decryption(format!(
        "no configured key unwraps the content key (at most {} tried)",
        attempt_cap(keys.len())
    ))
    .into())
}

/// Decrypts `data`: [`content_key`], then [`ContentKey::decrypt`].
pub fn decrypt(
    data: &EncryptedData,
    keys: &[PKey<Private>],
    opts: &DecryptOptions,
    authenticated: bool,
) -> Result<Vec<u8>, Error> {
    content_key(data, keys, opts, authenticated)?.decrypt(data)
}

fn content(alg: DataAlgorithm, cipher: Cipher, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let iv_len = alg.iv_len();
    if alg.is_gcm() {
        if data.len() < iv_len + 16 {
            return None;
        }
        let (iv, rest) = data.split_at(iv_len);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        return decrypt_aead(cipher, key, Some(iv), &[], ct, tag).ok();
    }
    let block = cipher.block_size();
    if data.len() < iv_len + block || !(data.len() - iv_len).is_multiple_of(block) {
        return None;
    }
    let (iv, ct) = data.split_at(iv_len);
    let mut c = Crypter::new(cipher, Mode::Decrypt, key, Some(iv)).ok()?;
    c.pad(false);
    let mut out = vec![0u8; ct.len() + block];
    let mut n = c.update(ct, &mut out).ok()?;
    n += c.finalize(&mut out[n..]).ok()?;
    out.truncate(n);
    // XML Encryption §5.2 padding: the last octet is the pad length (1..=block), other pad
    // octets are arbitrary.
    let pad = usize::from(*out.last()?);
    if pad == 0 || pad > block || pad > out.len() {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

/// Key transport for [`encrypt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    /// `xmlenc#rsa-oaep-mgf1p` with SHA-1 OAEP digest (the most widely implemented).
    RsaOaepMgf1p,
    /// `xmlenc11#rsa-oaep` with SHA-256 digest and MGF1-SHA-256.
    RsaOaepSha256,
}

/// Encrypts `element` (the XML of one element, e.g. a signed `saml:Assertion`) for `recipient`
/// (an RSA public key, from the SP's encryption certificate) and returns the
/// `saml:EncryptedAssertion` element. `random` supplies the content key and IV.
pub fn encrypt(
    element: &[u8],
    recipient: &PKey<Public>,
    alg: DataAlgorithm,
    transport: KeyTransport,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<String, Error> {
    if alg == DataAlgorithm::TripleDesCbc {
        return Err(Error::Usage(
            "TripleDES is not used for new encryption".into(),
        ));
    }
    let cipher = alg.cipher();
    let mut key = vec![0u8; cipher.key_len()];
    random(&mut key);
    let mut iv = vec![0u8; alg.iv_len()];
    random(&mut iv);
    let mut data = iv.clone();
    if alg.is_gcm() {
        let mut tag = [0u8; 16];
        let ct = encrypt_aead(cipher, &key, Some(&iv), &[], element, &mut tag)?;
        data.extend(ct);
        data.extend(tag);
    } else {
        let block = cipher.block_size();
        let pad = block - element.len() % block;
        let mut padded = element.to_vec();
        let mut filler = vec![0u8; pad - 1];
        random(&mut filler);
        padded.extend(filler);
        padded.push(pad as u8);
        let mut c = Crypter::new(cipher, Mode::Encrypt, &key, Some(&iv))?;
        c.pad(false);
        let mut out = vec![0u8; padded.len() + block];
        let mut n = c.update(&padded, &mut out)?;
        n += c.finalize(&mut out[n..])?;
        out.truncate(n);
        data.extend(out);
    }
    let mut e = Encrypter::new(recipient)?;
    e.set_rsa_padding(Padding::PKCS1_OAEP)?;
    let method = match transport {
        KeyTransport::RsaOaepMgf1p => {
            e.set_rsa_oaep_md(MessageDigest::sha1())?;
            e.set_rsa_mgf1_md(MessageDigest::sha1())?;
            format!(
                "<xenc:EncryptionMethod Algorithm=\"{RSA_OAEP_MGF1P}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/></xenc:EncryptionMethod>"
            )
        }
        KeyTransport::RsaOaepSha256 => {
            e.set_rsa_oaep_md(MessageDigest::sha256())?;
            e.set_rsa_mgf1_md(MessageDigest::sha256())?;
            format!(
                "<xenc:EncryptionMethod Algorithm=\"{RSA_OAEP}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><xenc11:MGF xmlns:xenc11=\"{XENC11_NS}\" Algorithm=\"http://www.w3.org/2009/xmlenc11#mgf1sha256\"/></xenc:EncryptionMethod>"
            )
        }
    };
    let mut wrapped = vec![0u8; e.encrypt_len(&key)?];
    let n = e.encrypt(&key, &mut wrapped)?;
    wrapped.truncate(n);
    let enc = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "<saml:EncryptedAssertion xmlns:saml=\"{}\"><xenc:EncryptedData xmlns:xenc=\"{XENC_NS}\" Type=\"http://www.w3.org/2001/04/xmlenc#Element\"><xenc:EncryptionMethod Algorithm=\"{}\"/><ds:KeyInfo xmlns:ds=\"{DSIG_NS}\"><xenc:EncryptedKey>{method}<xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>",
        super::SAML_NS,
        alg.uri(),
        enc.encode(&wrapped),
        enc.encode(&data)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    fn rsa() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn public(k: &PKey<Private>) -> PKey<Public> {
        PKey::public_key_from_der(&k.public_key_to_der().unwrap()).unwrap()
    }

    fn ops() -> usize {
        PRIVATE_KEY_OPERATIONS.with(|n| n.get())
    }

    fn wrapped(cek: &[u8], to: &PKey<Public>) -> EncryptedKey {
        let mut e = Encrypter::new(to).unwrap();
        e.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        let mut out = vec![0u8; e.encrypt_len(cek).unwrap()];
        let n = e.encrypt(cek, &mut out).unwrap();
        out.truncate(n);
        EncryptedKey {
            algorithm: RSA_OAEP_MGF1P.into(),
            digest: None,
            mgf: None,
            oaep_params: None,
            cipher: out,
            recipient: None,
            certificates: Vec::new(),
        }
    }

    /// `plain` under `alg` (CBC, XML Encryption padding) with its key wrapped for `to`.
    fn sealed(alg: DataAlgorithm, plain: &[u8], to: &PKey<Public>) -> EncryptedData {
        let cipher = alg.cipher();
        let cek = vec![7u8; cipher.key_len()];
        let iv = vec![9u8; alg.iv_len()];
        let block = cipher.block_size();
        let pad = block - plain.len() % block;
        let mut padded = plain.to_vec();
        padded.extend(std::iter::repeat_n(0u8, pad - 1));
        padded.push(pad as u8);
        let mut c = Crypter::new(cipher, Mode::Encrypt, &cek, Some(&iv)).unwrap();
        c.pad(false);
        let mut out = vec![0u8; padded.len() + block];
        let n = c.update(&padded, &mut out).unwrap();
        out.truncate(n);
        EncryptedData {
            algorithm: alg.uri().into(),
            cipher: [iv, out].concat(),
            keys: vec![wrapped(&cek, to)],
        }
    }

    fn opts(tripledes: bool, unauthenticated_cbc: bool) -> DecryptOptions {
        DecryptOptions {
            allow_tripledes: tripledes,
            allow_unauthenticated_cbc: unauthenticated_cbc,
            recipient: None,
        }
    }

    /// Issue 13 item 2: one flag no longer admits both TripleDES and unauthenticated CBC.
    #[test]
    fn tripledes_and_unauthenticated_cbc_are_separate_choices() {
        let sp = rsa();
        let d = sealed(DataAlgorithm::TripleDesCbc, b"<a/>", &public(&sp));
        let keys = [sp];
        // (allow_tripledes, allow_unauthenticated_cbc, signed around) -> accepted
        for (t, u, signed, ok) in [
            (false, false, true, false),
            (false, true, false, false),
            (true, false, true, true),
            (true, false, false, false),
            (true, true, false, true),
        ] {
            let r = decrypt(&d, &keys, &opts(t, u), signed);
            assert_eq!(r.is_ok(), ok, "{t} {u} {signed}: {r:?}");
            if ok {
                assert_eq!(r.unwrap(), b"<a/>");
            }
        }
        let d = sealed(DataAlgorithm::Aes128Cbc, b"<a/>", &public(&keys[0]));
        assert!(decrypt(&d, &keys, &opts(true, false), false).is_err());
        assert!(decrypt(&d, &keys, &opts(false, false), true).is_ok());
        let k = content_key(&d, &keys, &opts(false, true), false).unwrap();
        assert!(k.is_unauthenticated_cbc());
        assert!(
            !content_key(&d, &keys, &opts(false, true), true)
                .unwrap()
                .is_unauthenticated_cbc()
        );
    }

    /// Issue 13 item 2: under unauthenticated CBC a bad padding is the opaque error.
    #[test]
    fn bad_padding_is_opaque_under_unauthenticated_cbc() {
        let sp = rsa();
        let mut d = sealed(DataAlgorithm::Aes128Cbc, b"<a/>", &public(&sp));
        let n = d.cipher.len();
        d.cipher[n - 17] ^= 0x55; // last byte of the IV: the pad length byte changes
        let keys = [sp];
        let e = decrypt(&d, &keys, &opts(false, true), false).unwrap_err();
        assert_eq!(e.to_string(), format!("cannot decrypt: {OPAQUE_FAILURE}"));
    }

    /// Issue 13 item 4: RSA private-key operations per message are bounded, and the
    /// EncryptedKey that names our certificate is tried first.
    #[test]
    fn private_key_operations_are_bounded() {
        let ours: Vec<PKey<Private>> = (0..3).map(|_| rsa()).collect();
        let other = rsa();
        let mut d = sealed(DataAlgorithm::Aes256Gcm, b"", &public(&ours[2]));
        // GCM is built by `sealed` as CBC-shaped bytes: only the key unwrap matters here.
        let real = d.keys.remove(0);
        let bogus = wrapped(&[1u8; 32], &public(&other));
        d.keys = vec![bogus.clone(); MAX_ENCRYPTED_KEYS - 1];
        d.keys.push(real.clone());
        let before = ops();
        let r = content_key(&d, &ours, &DecryptOptions::default(), true);
        let spent = ops() - before;
        assert!(r.is_err(), "the real key is past the cap");
        assert_eq!(spent, 2 * ours.len(), "{spent} private-key operations");

        // SAML review F7: one configured key and 16 keyless EncryptedKeys cost 8 operations
        // before anything was authenticated; two per configured key now.
        let one = [rsa()];
        let mut junk = sealed(DataAlgorithm::Aes256Gcm, b"", &public(&other));
        junk.keys = vec![bogus.clone(); MAX_ENCRYPTED_KEYS];
        let before = ops();
        assert!(content_key(&junk, &one, &DecryptOptions::default(), false).is_err());
        assert_eq!(ops() - before, 2);
        let five: Vec<PKey<Private>> = (0..5).map(|_| rsa()).collect();
        let before = ops();
        assert!(content_key(&junk, &five, &DecryptOptions::default(), false).is_err());
        assert_eq!(ops() - before, MAX_KEY_ATTEMPTS);

        // The real key's KeyInfo names our certificate: one operation, whatever comes first.
        let cert_of = |k: &PKey<Private>| {
            let mut b = openssl::x509::X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            let t = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
            b.set_not_before(&t).unwrap();
            b.set_not_after(&t).unwrap();
            b.set_pubkey(k).unwrap();
            b.sign(k, MessageDigest::sha256()).unwrap();
            b.build().to_der().unwrap()
        };
        let cert = cert_of(&ours[2]);
        let mut named = real.clone();
        named.certificates = vec![cert];
        // Another EncryptedKey naming someone else's certificate is not tried at all.
        let mut elsewhere = bogus.clone();
        elsewhere.certificates = vec![cert_of(&other)];
        d.keys = vec![bogus.clone(); MAX_ENCRYPTED_KEYS - 2];
        d.keys.push(elsewhere);
        d.keys.push(named);
        let before = ops();
        let parsed = CERTIFICATES_PARSED.with(std::cell::Cell::get);
        let k = content_key(&d, &ours, &DecryptOptions::default(), true).unwrap();
        assert_eq!(ops() - before, 1);
        assert_eq!(k.key, vec![7u8; 32]);
        // Review of the eighth round, I5: only our own certificate was parsed (the other
        // key's certificate is searched for our keys, not parsed).
        assert_eq!(CERTIFICATES_PARSED.with(std::cell::Cell::get) - parsed, 1);
        // Up to four certificates of someone else on every EncryptedKey: none parsed.
        let mut crowded = d.clone();
        for k in &mut crowded.keys {
            k.certificates = vec![cert_of(&other); 4];
        }
        let parsed = CERTIFICATES_PARSED.with(std::cell::Cell::get);
        assert!(content_key(&crowded, &ours, &DecryptOptions::default(), false).is_err());
        assert_eq!(CERTIFICATES_PARSED.with(std::cell::Cell::get) - parsed, 0);
        // Blobs holding every one of our public keys (public bytes): each parsed once, not
        // once per configured key (second review of the eighth round, N5).
        let blob: Vec<u8> = ours
            .iter()
            .flat_map(|k| k.public_key_to_der().unwrap())
            .collect();
        for k in &mut crowded.keys {
            k.certificates = vec![blob.clone(); 4];
        }
        let parsed = CERTIFICATES_PARSED.with(std::cell::Cell::get);
        assert!(content_key(&crowded, &ours, &DecryptOptions::default(), false).is_err());
        assert_eq!(
            CERTIFICATES_PARSED.with(std::cell::Cell::get) - parsed,
            4 * crowded.keys.len()
        );

        // Recipient = our entityID goes before the others.
        let mut to_us = real;
        to_us.recipient = Some("https://sp.example".into());
        let o = DecryptOptions {
            recipient: Some("https://sp.example".into()),
            ..Default::default()
        };
        d.keys = vec![bogus; MAX_ENCRYPTED_KEYS - 1];
        d.keys.push(to_us);
        let before = ops();
        content_key(&d, &ours, &o, true).unwrap();
        assert!(ops() - before <= ours.len());
    }
}
