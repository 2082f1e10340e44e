//! The OpenPGP operations XEP-0027 needs, on bytes: detached signatures (§3, §4) and
//! encrypted messages (§5), optionally signed inside, through sequoia-openpgp with its OpenSSL
//! backend. Time is an input: signatures are made at the `now` given and verified as of it.
//!
//! Verification follows the spec notes' recipe: the exact bytes first; a signature of type
//! Text (what clearsign-based clients make) is retried with trailing whitespace removed from
//! each line, and the result says so ([`Verified::normalized`]).

use std::io::{Read, Write};
use std::time::SystemTime;

use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationError, VerificationHelper,
};
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::{KeyFlags, SignatureType, SymmetricAlgorithm};
use openpgp::{Cert, Fingerprint, KeyHandle};
use sequoia_openpgp as openpgp;

use crate::error::pgp_msg;
use crate::keys::SecretKeyStore;
use crate::policy::Policy;
use crate::{Error, Result};

/// A good signature: who made it and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The fingerprint of the signer's certificate.
    pub signer: Fingerprint,
    /// The fingerprint of the (sub)key that made the signature.
    pub key: Fingerprint,
    /// The signature's creation time.
    pub created: SystemTime,
    /// The signature was a Text signature that verified only after trailing whitespace was
    /// removed from each line (a clearsign-style signer).
    pub normalized: bool,
}

/// Whether to make a binary or a text signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigMode {
    /// Binary signature over the exact bytes (what Gajim and gpg --detach-sign do; default).
    #[default]
    Binary,
    /// Text signature (line endings canonicalized to CRLF before hashing).
    Text,
}

/// Signs `data` at `now`: a detached signature, binary packets.
pub fn sign_detached(
    signer: KeyPair,
    data: &[u8],
    mode: SigMode,
    now: SystemTime,
) -> Result<Vec<u8>> {
    let mut sink = Vec::new();
    let typ = match mode {
        SigMode::Binary => SignatureType::Binary,
        SigMode::Text => SignatureType::Text,
    };
    let message = Message::new(&mut sink);
    let mut w = Signer::with_template(message, signer, SignatureBuilder::new(typ))
        .map(|s| s.detached().creation_time(now))
        .and_then(|s| s.build())
        .map_err(|e| Error::Key(pgp_msg(&e)))?;
    w.write_all(data)?;
    w.finalize().map_err(|e| Error::Key(pgp_msg(&e)))?;
    Ok(sink)
}

struct VHelper<'a> {
    certs: &'a [Cert],
    good: Option<Verified>,
    errors: Vec<Error>,
    sig_type: Option<SignatureType>,
}

impl VerificationHelper for VHelper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure<'_>) -> openpgp::Result<()> {
        record_signatures(
            structure,
            &mut self.good,
            &mut self.errors,
            &mut self.sig_type,
        );
        Ok(())
    }
}

fn record_signatures(
    structure: MessageStructure<'_>,
    good: &mut Option<Verified>,
    errors: &mut Vec<Error>,
    sig_type: &mut Option<SignatureType>,
) {
    for layer in structure.into_iter() {
        record_layer(layer, good, errors, sig_type);
    }
}

fn record_layer(
    layer: MessageLayer<'_>,
    good: &mut Option<Verified>,
    errors: &mut Vec<Error>,
    sig_type: &mut Option<SignatureType>,
) {
    if let MessageLayer::SignatureGroup { results } = layer {
        for r in results {
            match r {
                Ok(g) => {
                    if good.is_none() {
                        *good = Some(Verified {
                            signer: g.ka.cert().fingerprint(),
                            key: g.ka.key().fingerprint(),
                            created: g
                                .sig
                                .signature_creation_time()
                                .unwrap_or(SystemTime::UNIX_EPOCH),
                            normalized: false,
                        });
                    }
                    *sig_type = Some(g.sig.typ());
                }
                Err(e) => {
                    if let Some(s) = verification_error_sig(&e) {
                        sig_type.get_or_insert(s);
                    }
                    errors.push(verification_error(e));
                }
            }
        }
    }
}

fn verification_error_sig(e: &VerificationError<'_>) -> Option<SignatureType> {
    match e {
        VerificationError::MissingKey { sig } => Some(sig.typ()),
        VerificationError::BadSignature { sig, .. } => Some(sig.typ()),
        VerificationError::UnboundKey { sig, .. } => Some(sig.typ()),
        VerificationError::BadKey { sig, .. } => Some(sig.typ()),
        _ => None,
    }
}

fn verification_error(e: VerificationError<'_>) -> Error {
    match e {
        VerificationError::MissingKey { sig } => {
            let who = sig
                .issuers()
                .next()
                .map(|h| h.to_string())
                .unwrap_or_else(|| "an unnamed key".into());
            Error::UnknownSigner(format!("key {who} (not among the sender's certificates)"))
        }
        VerificationError::BadSignature { error, .. } => Error::BadSignature(pgp_msg(&error)),
        VerificationError::BadKey { error, .. } | VerificationError::UnboundKey { error, .. } => {
            Error::BadSignature(format!(
                "key not valid under the policy: {}",
                pgp_msg(&error)
            ))
        }
        VerificationError::MalformedSignature { error, .. } => {
            Error::OpenPgp(format!("malformed signature: {}", pgp_msg(&error)))
        }
        VerificationError::UnknownSignature { sig, .. } => {
            Error::OpenPgp(format!("unsupported signature: {}", sig.error()))
        }
        other => Error::BadSignature(other.to_string()),
    }
}

/// Verifies a detached signature (binary packets) over `data` with the given certificates, as
/// of `now`. The first good signature is reported; without one, the most telling error.
pub fn verify_detached(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified> {
    match verify_once(sig, data, certs, policy, now) {
        Ok(v) => Ok(v),
        Err((err, Some(SignatureType::Text))) => {
            let trimmed = trim_trailing_whitespace(data);
            if trimmed.as_slice() == data {
                return Err(err);
            }
            verify_once(sig, &trimmed, certs, policy, now)
                .map(|v| Verified {
                    normalized: true,
                    ..v
                })
                .map_err(|_| err)
        }
        Err((err, _)) => Err(err),
    }
}

fn verify_once(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    policy: &Policy,
    now: SystemTime,
) -> std::result::Result<Verified, (Error, Option<SignatureType>)> {
    let helper = VHelper {
        certs,
        good: None,
        errors: Vec::new(),
        sig_type: None,
    };
    let builder = DetachedVerifierBuilder::from_bytes(sig)
        .map_err(|e| (Error::OpenPgp(pgp_msg(&e)), None))?;
    let mut v = builder
        .with_policy(policy.openpgp(), Some(now), helper)
        .map_err(|e| (Error::OpenPgp(pgp_msg(&e)), None))?;
    let res = v.verify_bytes(data);
    let h = v.into_helper();
    if let Err(e) = res {
        return Err((Error::OpenPgp(pgp_msg(&e)), h.sig_type));
    }
    match h.good {
        Some(g) => Ok(g),
        None => {
            let err = h
                .errors
                .into_iter()
                .next()
                .unwrap_or_else(|| Error::OpenPgp("no signature".into()));
            Err((err, h.sig_type))
        }
    }
}

fn trim_trailing_whitespace(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            .map_or(0, |p| p + 1);
        out.extend_from_slice(&line[..end]);
    }
    out
}

/// The encryption-capable keys (transport or storage) of `cert` valid under `policy` at `now`.
fn encryption_keys<'c>(
    cert: &'c Cert,
    policy: &'c Policy,
    now: SystemTime,
) -> Result<Vec<Recipient<'c>>> {
    let keys: Vec<Recipient<'c>> = cert
        .keys()
        .with_policy(policy.openpgp(), Some(now))
        .supported()
        .alive()
        .revoked(false)
        .key_flags(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
        )
        .map(Recipient::from)
        .collect();
    if keys.is_empty() {
        return Err(Error::Key(format!(
            "certificate {} has no usable encryption key at this time",
            cert.fingerprint()
        )));
    }
    Ok(keys)
}

/// Encrypts `plaintext` to every certificate in `recipients` (include your own to read it
/// later, as XEP-0027 §5 says), optionally signed inside by `signer` with the recipients as
/// intended recipients (RFC 9580 §5.2.3.36): one OpenPGP message that plain XEP-0027 readers
/// decrypt and that carries a signature over the plaintext.
pub fn encrypt(
    plaintext: &[u8],
    recipients: &[&Cert],
    signer: Option<KeyPair>,
    policy: &Policy,
    now: SystemTime,
) -> Result<Vec<u8>> {
    if recipients.is_empty() {
        return Err(Error::State("no recipients".into()));
    }
    let mut keys = Vec::new();
    for c in recipients {
        keys.extend(encryption_keys(c, policy, now)?);
    }
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Encryptor::for_recipients(message, keys)
        .symmetric_algo(SymmetricAlgorithm::AES256)
        .build()
        .map_err(|e| Error::Key(pgp_msg(&e)))?;
    let message = match signer {
        Some(kp) => {
            let mut s = Signer::new(message, kp)
                .map_err(|e| Error::Key(pgp_msg(&e)))?
                .creation_time(now);
            for c in recipients {
                s = s.add_intended_recipient(c);
            }
            s.build().map_err(|e| Error::Key(pgp_msg(&e)))?
        }
        None => message,
    };
    let mut w = LiteralWriter::new(message)
        .date(now)
        .and_then(|w| w.build())
        .map_err(|e| Error::Key(pgp_msg(&e)))?;
    w.write_all(plaintext)?;
    w.finalize().map_err(|e| Error::Key(pgp_msg(&e)))?;
    Ok(sink)
}

/// What [`decrypt`] found.
#[derive(Clone, Debug)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The good signature inside, if the message was signed by one of the given certificates.
    pub signature: Option<Verified>,
    /// The certificate whose key decrypted the message.
    pub recipient: Option<Fingerprint>,
}

struct DHelper<'a> {
    keys: &'a dyn SecretKeyStore,
    certs: &'a [Cert],
    good: Option<Verified>,
    errors: Vec<Error>,
    sig_type: Option<SignatureType>,
    structure_ok: bool,
    recipient: Option<Fingerprint>,
}

impl VerificationHelper for DHelper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure<'_>) -> openpgp::Result<()> {
        // An encrypted message: the encryption layer first, then optional compression, then
        // at most one signature group (RFC 9580 §10.3).
        let mut shape = String::new();
        for layer in structure.into_iter() {
            shape.push(match layer {
                MessageLayer::Encryption { .. } => 'e',
                MessageLayer::Compression { .. } => 'c',
                MessageLayer::SignatureGroup { .. } => 's',
            });
            record_layer(layer, &mut self.good, &mut self.errors, &mut self.sig_type);
        }
        self.structure_ok = matches!(shape.as_str(), "e" | "ec" | "es" | "ecs");
        Ok(())
    }
}

impl DecryptionHelper for DHelper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            for (fpr, key) in self.keys.decryption_keys(pkesk.recipient().as_ref()) {
                let Ok(mut kp) = key.into_keypair() else {
                    continue;
                };
                if let Some((algo, sk)) = pkesk.decrypt(&mut kp, sym_algo)
                    && decrypt(algo, &sk)
                {
                    self.recipient = Some(fpr);
                    return Ok(None);
                }
            }
        }
        Err(openpgp::anyhow::anyhow!("no key decrypts the message"))
    }
}

/// Decrypts an OpenPGP message (binary packets) with the keys of `keys`, and checks any
/// signature inside against `signers` (the sender's certificates) as of `now`.
///
/// Every failure to decrypt (no matching key, wrong key, tampered ciphertext, a message that
/// is not encrypted) is the one [`Error::Decrypt`], so that the error is no oracle. Once
/// decrypted, a signature that is present but does not verify with `signers` is an error
/// too ([`Error::UnknownSigner`] or [`Error::BadSignature`]): a message is never returned with
/// a signature silently ignored. An unsigned message gives `signature: None`.
pub fn decrypt(
    ciphertext: &[u8],
    keys: &dyn SecretKeyStore,
    signers: &[Cert],
    policy: &Policy,
    now: SystemTime,
) -> Result<Decrypted> {
    let helper = DHelper {
        keys,
        certs: signers,
        good: None,
        errors: Vec::new(),
        sig_type: None,
        structure_ok: false,
        recipient: None,
    };
    let builder = DecryptorBuilder::from_bytes(ciphertext).map_err(|_| Error::Decrypt)?;
    let mut d = builder
        .with_policy(policy.openpgp(), Some(now), helper)
        .map_err(|_| Error::Decrypt)?;
    let mut plaintext = Vec::new();
    let read = d.read_to_end(&mut plaintext);
    let processed = d.message_processed();
    let h = d.into_helper();
    if read.is_err() || !processed || !h.structure_ok || h.recipient.is_none() {
        return Err(Error::Decrypt);
    }
    if h.good.is_none()
        && let Some(e) = h.errors.into_iter().next()
    {
        return Err(e);
    }
    Ok(Decrypted {
        plaintext,
        signature: h.good,
        recipient: h.recipient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::Jid;
    use crate::keys::{Identity, Suite};
    use std::time::Duration;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
    }

    #[test]
    fn sign_verify_encrypt_decrypt() {
        let p = Policy::standard();
        let a = Identity::generate(
            &Jid::new("a@example.org").unwrap(),
            Suite::Cv25519,
            now(),
            None,
        )
        .unwrap();
        let b = Identity::generate(
            &Jid::new("b@example.org").unwrap(),
            Suite::Cv25519,
            now(),
            None,
        )
        .unwrap();
        let sig = sign_detached(
            a.signer(&p, now()).unwrap(),
            b"Online",
            SigMode::Binary,
            now(),
        )
        .unwrap();
        let v = verify_detached(&sig, b"Online", &[a.public_cert()], &p, now()).unwrap();
        assert_eq!(v.signer, a.fingerprint());
        assert_eq!(v.created, now());
        assert!(matches!(
            verify_detached(&sig, b"Online\n", &[a.public_cert()], &p, now()),
            Err(Error::BadSignature(_))
        ));
        assert!(matches!(
            verify_detached(&sig, b"Online", &[b.public_cert()], &p, now()),
            Err(Error::UnknownSigner(_))
        ));
        let text = sign_detached(
            a.signer(&p, now()).unwrap(),
            b"line one\nline two",
            SigMode::Text,
            now(),
        )
        .unwrap();
        let v = verify_detached(
            &text,
            b"line one  \nline two\t",
            &[a.public_cert()],
            &p,
            now(),
        )
        .unwrap();
        assert!(v.normalized);

        let bc = b.public_cert();
        let ac = a.public_cert();
        let ct = encrypt(
            b"secret",
            &[&bc, &ac],
            Some(a.signer(&p, now()).unwrap()),
            &p,
            now(),
        )
        .unwrap();
        let d = decrypt(&ct, &b, std::slice::from_ref(&ac), &p, now()).unwrap();
        assert_eq!(d.plaintext, b"secret");
        assert_eq!(d.signature.unwrap().signer, a.fingerprint());
        let d = decrypt(&ct, &a, std::slice::from_ref(&ac), &p, now()).unwrap();
        assert_eq!(d.plaintext, b"secret");
        let c = Identity::generate(
            &Jid::new("c@example.org").unwrap(),
            Suite::Cv25519,
            now(),
            None,
        )
        .unwrap();
        assert!(matches!(
            decrypt(&ct, &c, std::slice::from_ref(&ac), &p, now()),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            decrypt(&ct, &b, &[c.public_cert()], &p, now()),
            Err(Error::UnknownSigner(_))
        ));
        let mut bad = ct.clone();
        let n = bad.len() - 3;
        bad[n] ^= 1;
        assert!(matches!(
            decrypt(&bad, &b, std::slice::from_ref(&ac), &p, now()),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            decrypt(&sig, &b, &[ac], &p, now()),
            Err(Error::Decrypt)
        ));
    }
}
