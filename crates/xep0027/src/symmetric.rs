//! The symmetric layer of session keys and room keys: AES-256-GCM (NIST SP 800-38D) through
//! OpenSSL, a random 96-bit nonce per message (from the caller's [`Random`]), the metadata
//! authenticated as associated data. Randomness is an input: [`OsRandom`] is OpenSSL's CSPRNG.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

use crate::{Error, Result};

/// A source of cryptographically secure random bytes.
pub trait Random {
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// OpenSSL's CSPRNG (`RAND_bytes`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        openssl::rand::rand_bytes(buf)?;
        Ok(())
    }
}

/// 256-bit key material, wiped on drop by sequoia's `Protected`.
#[derive(Clone)]
pub(crate) struct KeyBytes(sequoia_openpgp::crypto::mem::Protected);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

impl KeyBytes {
    pub(crate) fn random(rng: &mut dyn Random) -> Result<KeyBytes> {
        let mut k = [0u8; 32];
        rng.fill(&mut k)?;
        let kb = KeyBytes(k.to_vec().into());
        k.fill(0);
        Ok(kb)
    }

    pub(crate) fn from_slice(b: &[u8]) -> Result<KeyBytes> {
        if b.len() != 32 {
            return Err(Error::OpenPgp(
                "a key record with a key that is not 256 bits".into(),
            ));
        }
        Ok(KeyBytes(b.to_vec().into()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A random identifier: `n` random bytes, hex.
pub(crate) fn random_id(rng: &mut dyn Random, n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    rng.fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const NONCE: usize = 12;
const TAG: usize = 16;

/// Encrypts: base64 of nonce ‖ ciphertext ‖ tag.
pub(crate) fn seal(
    key: &KeyBytes,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut dyn Random,
) -> Result<String> {
    let mut nonce = [0u8; NONCE];
    rng.fill(&mut nonce)?;
    let mut tag = [0u8; TAG];
    let ct = encrypt_aead(
        Cipher::aes_256_gcm(),
        key.as_bytes(),
        Some(&nonce),
        aad,
        plaintext,
        &mut tag,
    )?;
    let mut out = Vec::with_capacity(NONCE + ct.len() + TAG);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    Ok(STANDARD.encode(out))
}

/// Decrypts what [`seal`] made; every failure is [`Error::Decrypt`].
pub(crate) fn open(key: &KeyBytes, aad: &[u8], text: &str) -> Result<Vec<u8>> {
    let compact: String = text.split_ascii_whitespace().collect();
    let data = STANDARD.decode(compact).map_err(|_| Error::Decrypt)?;
    if data.len() < NONCE + TAG {
        return Err(Error::Decrypt);
    }
    let (nonce, rest) = data.split_at(NONCE);
    let (ct, tag) = rest.split_at(rest.len() - TAG);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key.as_bytes(),
        Some(nonce),
        aad,
        ct,
        tag,
    )
    .map_err(|_| Error::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open() {
        let mut r = OsRandom;
        let k = KeyBytes::random(&mut r).unwrap();
        let s = seal(&k, b"aad", b"hello", &mut r).unwrap();
        assert_eq!(open(&k, b"aad", &s).unwrap(), b"hello");
        assert!(matches!(open(&k, b"aae", &s), Err(Error::Decrypt)));
        let k2 = KeyBytes::random(&mut r).unwrap();
        assert!(matches!(open(&k2, b"aad", &s), Err(Error::Decrypt)));
        assert!(matches!(open(&k, b"aad", "AAAA"), Err(Error::Decrypt)));
        assert!(matches!(open(&k, b"aad", "!!"), Err(Error::Decrypt)));
    }
}
