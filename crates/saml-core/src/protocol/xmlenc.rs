//! `saml:EncryptedAssertion` (SAML Core §2.3.4) with XML Encryption 1.1: RSA-OAEP key transport
//! (`xmlenc#rsa-oaep-mgf1p`, `xmlenc11#rsa-oaep` with its DigestMethod and MGF) of a content key
//! for AES-GCM (`xmlenc11#aes128-gcm`, `aes192-gcm`, `aes256-gcm`) or AES-CBC (`xmlenc#aes128-cbc`,
//! `aes192-cbc`, `aes256-cbc`); TripleDES-CBC only as a legacy opt-in. RSA PKCS#1 v1.5 key
//! transport (`xmlenc#rsa-1_5`) is always refused (Bleichenbacher's attack).
//!
//! AES-CBC carries no integrity of its own: without a verified signature around the
//! ciphertext it is open to the padding-oracle attack on XML Encryption (Jager and Somorovsky,
//! CCS 2011). [`decrypt`] therefore accepts CBC only when the Response around it was verified,
//! unless the caller opts in to legacy encryption. Every failure to decrypt content reports the
//! same error, so no padding or parsing oracle is exposed.

use base64::Engine as _;
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode, decrypt_aead, encrypt_aead};

use super::ProtocolError;
use super::read::{Cursor, Elem};
use crate::dsig::DSIG_NS;
use crate::error::Error;

/// `http://www.w3.org/2001/04/xmlenc#`
pub const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
/// `http://www.w3.org/2009/xmlenc11#`
pub const XENC11_NS: &str = "http://www.w3.org/2009/xmlenc11#";
/// `xmlenc#rsa-oaep-mgf1p` (MGF1 with SHA-1; OAEP digest from DigestMethod, SHA-1 by default).
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
/// `xmlenc11#rsa-oaep` (OAEP digest from DigestMethod, MGF from `xenc11:MGF`).
pub const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
/// `xmlenc#rsa-1_5`, refused.
pub const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

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
    /// TripleDES-CBC (legacy only; pysaml2's default).
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
    pub fn uri(self) -> &'static str {
        DATA_ALGORITHMS
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, u)| *u)
            .unwrap_or_default()
    }

    /// Maps a URI.
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
    let t: String = c.text(e)?.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(t.as_bytes())
        .map_err(|err| e.invalid(format!("bad base64: {err}")))
}

fn cipher_data(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Vec<u8>, Error> {
    let mut out = None;
    while let Some(ch) = c.next_child("CipherData")? {
        if ch.is(XENC_NS, "CipherValue") {
            out = Some(b64(c, &ch)?);
        } else {
            // CipherReference would need retrieval: refused.
            return Err(ch.invalid("only xenc:CipherValue is supported"));
        }
    }
    out.ok_or_else(|| e.invalid("missing xenc:CipherValue"))
}

fn encrypted_key(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<EncryptedKey, Error> {
    let mut k = EncryptedKey {
        algorithm: String::new(),
        digest: None,
        mgf: None,
        oaep_params: None,
        cipher: Vec::new(),
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
            _ => c.skip(&ch)?, // KeyInfo (which key: we try ours), ReferenceList, CarriedKeyName
        }
    }
    if k.algorithm.is_empty() || k.cipher.is_empty() {
        return Err(e.invalid("EncryptedKey needs EncryptionMethod and CipherValue"));
    }
    Ok(k)
}

/// Reads the `saml:EncryptedAssertion` whose start tag `e` was just returned.
pub(crate) fn read_encrypted(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<EncryptedData, Error> {
    let mut data: Option<EncryptedData> = None;
    let mut sibling_keys = Vec::new();
    while let Some(ch) = c.next_child("EncryptedAssertion")? {
        match (ch.ns, ch.local) {
            (XENC_NS, "EncryptedData") => {
                if data.is_some() {
                    return Err(ch.invalid("more than one xenc:EncryptedData"));
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
                                    d.keys.push(encrypted_key(c, &k)?);
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
                    return Err(ch.invalid("missing xenc:EncryptionMethod"));
                }
                data = Some(d);
            }
            (XENC_NS, "EncryptedKey") => sibling_keys.push(encrypted_key(c, &ch)?),
            _ => return Err(ch.invalid("unexpected element in saml:EncryptedAssertion")),
        }
    }
    let mut d = data.ok_or_else(|| e.invalid("missing xenc:EncryptedData"))?;
    d.keys.extend(sibling_keys);
    if d.keys.is_empty() {
        return Err(e.invalid("no xenc:EncryptedKey"));
    }
    Ok(d)
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
    match d.decrypt(&k.cipher, &mut out) {
        Ok(n) => {
            out.truncate(n);
            Ok(Some(out))
        }
        Err(_) => Ok(None),
    }
}

/// Decrypts `data` with the first of `keys` that unwraps one of its EncryptedKeys. CBC and
/// TripleDES follow the rules in the module docs (`legacy`, `authenticated`: whether a verified
/// signature covers the ciphertext).
pub fn decrypt(
    data: &EncryptedData,
    keys: &[PKey<Private>],
    legacy: bool,
    authenticated: bool,
) -> Result<Vec<u8>, Error> {
    let alg = DataAlgorithm::from_uri(&data.algorithm).ok_or_else(|| {
        ProtocolError::Decryption(format!("unsupported content algorithm {}", data.algorithm))
    })?;
    if alg == DataAlgorithm::TripleDesCbc && !legacy {
        return Err(ProtocolError::Decryption(
            "TripleDES content encryption needs the legacy option".into(),
        )
        .into());
    }
    if !alg.is_gcm() && !authenticated && !legacy {
        return Err(ProtocolError::Decryption(format!(
            "{} without a verified Response signature around it is refused (padding oracle); \
             use AES-GCM, sign the Response, or opt in to legacy encryption",
            alg.uri()
        ))
        .into());
    }
    if keys.is_empty() {
        return Err(ProtocolError::Decryption("no decryption key configured".into()).into());
    }
    let cipher = alg.cipher();
    for k in &data.keys {
        for key in keys {
            let Some(cek) = unwrap_key(k, key)? else {
                continue;
            };
            if cek.len() != cipher.key_len() {
                continue;
            }
            return content(alg, cipher, &cek, &data.cipher).ok_or_else(|| {
                ProtocolError::Decryption("content decryption failed".into()).into()
            });
        }
    }
    Err(ProtocolError::Decryption("no configured key unwraps the content key".into()).into())
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
