//! The OpenPGP operations XEP-0027 needs, on bytes: detached signatures (§3, §4) and
//! encrypted messages (§5), optionally signed inside, through sequoia-openpgp with its OpenSSL
//! backend. Time is an input: signatures are made at the `now` given and verified as of it.
//!
//! Verification follows the spec notes' recipe: the exact bytes first; a signature of type
//! Text (what clearsign-based clients make) is retried with trailing whitespace removed from
//! each line, and the result says so ([`Verified::normalized`]).

use std::io::{Read, Write};
use std::time::SystemTime;

use openpgp::cert::Preferences as _;
use openpgp::cert::amalgamation::ValidAmalgamation as _;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::Key;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::signature::SignatureBuilder;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, DetachedVerifierBuilder, MessageLayer, MessageStructure,
    VerificationError, VerificationHelper,
};
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::{Features, KeyFlags, SignatureType, SymmetricAlgorithm};
use openpgp::{Cert, Fingerprint, KeyHandle};
use sequoia_openpgp as openpgp;

use crate::error::pgp_msg;
use crate::keys::SecretKeyStore;
use crate::policy::Policy;
use crate::{Error, Result};

/// The longest plaintext [`decrypt`] returns (4 MiB, the largest armor this crate reads):
/// compressed messages cannot expand past it.
pub const MAX_PLAINTEXT_LEN: usize = crate::armor::MAX_ARMOR_LEN;

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

/// The encryption keys of a set of certificates, checked once under a policy: what
/// [`encrypt_to`] encrypts to. Checking a certificate (binding signatures, flags, expiry,
/// revocation) costs about as much as a tenth of an encryption, so a module that writes to the
/// same peers again and again prepares them once; the set refuses to be used after the first
/// of its keys expires ([`Recipients::valid_until`]).
#[derive(Clone, Debug)]
pub struct Recipients {
    keys: Vec<(Features, KeyHandle, Key<PublicParts, UnspecifiedRole>)>,
    certs: Vec<Cert>,
    checked: SystemTime,
    valid_until: Option<SystemTime>,
}

impl Recipients {
    /// The encryption-capable keys (transport or storage) of each certificate valid under
    /// `policy` at `now`; every certificate must have one.
    pub fn new(certs: &[&Cert], policy: &Policy, now: SystemTime) -> Result<Recipients> {
        if certs.is_empty() {
            return Err(Error::State("no recipients".into()));
        }
        let mut keys = Vec::new();
        let mut valid_until: Option<SystemTime> = None;
        for cert in certs {
            let before = keys.len();
            for ka in cert
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
            {
                if let Some(exp) = ka.key_expiration_time() {
                    valid_until = Some(valid_until.map_or(exp, |v| v.min(exp)));
                }
                let features = ka.valid_cert().features().unwrap_or_else(Features::empty);
                let handle: KeyHandle = if features.supports_seipdv2() {
                    ka.key().fingerprint().into()
                } else {
                    ka.key().keyid().into()
                };
                keys.push((
                    features,
                    handle,
                    ka.key().clone().parts_into_public().role_into_unspecified(),
                ));
            }
            if keys.len() == before {
                return Err(Error::Key(format!(
                    "certificate {} has no usable encryption key at this time",
                    cert.fingerprint()
                )));
            }
        }
        Ok(Recipients {
            keys,
            certs: certs.iter().map(|c| (*c).clone()).collect(),
            checked: now,
            valid_until,
        })
    }

    /// When the first of the keys expires (`None`: none expires).
    pub fn valid_until(&self) -> Option<SystemTime> {
        self.valid_until
    }

    /// The certificates.
    pub fn certs(&self) -> &[Cert] {
        &self.certs
    }

    fn check_time(&self, now: SystemTime) -> Result<()> {
        if now < self.checked || self.valid_until.is_some_and(|v| now >= v) {
            return Err(Error::Key(
                "the recipient set was checked for another time: prepare it again".into(),
            ));
        }
        Ok(())
    }
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
    let prepared = Recipients::new(recipients, policy, now)?;
    encrypt_to(plaintext, &prepared, signer, now)
}

/// [`encrypt`] to a prepared [`Recipients`] set.
pub fn encrypt_to(
    plaintext: &[u8],
    recipients: &Recipients,
    signer: Option<KeyPair>,
    now: SystemTime,
) -> Result<Vec<u8>> {
    recipients.check_time(now)?;
    let keys: Vec<Recipient<'_>> = recipients
        .keys
        .iter()
        .map(|(f, h, k)| Recipient::new(f.clone(), h.clone(), k))
        .collect();
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    // The session key from OpenSSL's CSPRNG directly: sequoia's default instantiates a new
    // DRBG per session key, about 6 % of a whole encryption.
    let mut sk = vec![0u8; 32];
    openssl::rand::rand_bytes(&mut sk)?;
    let session_key = SessionKey::from(sk);
    let message = Encryptor::with_session_key(message, SymmetricAlgorithm::AES256, session_key)
        .map(|e| e.add_recipients(keys))
        .and_then(|e| e.build())
        .map_err(|e| Error::Key(pgp_msg(&e)))?;
    let message = match signer {
        Some(kp) => {
            let mut s = Signer::new(message, kp)
                .map_err(|e| Error::Key(pgp_msg(&e)))?
                .creation_time(now);
            for c in &recipients.certs {
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
    // sequoia buffers up to `buffer_size` bytes to check signatures before releasing data, and
    // allocates that much up front (25 MiB by default, for every message). Stanza-sized
    // messages fit in 64 KiB; a larger one is read to its end and checked all the same before
    // anything is returned here.
    let builder = DecryptorBuilder::from_bytes(ciphertext)
        .map_err(|_| Error::Decrypt)?
        .buffer_size(64 * 1024);
    let d = builder
        .with_policy(policy.openpgp(), Some(now), helper)
        .map_err(|_| Error::Decrypt)?;
    let mut plaintext = Vec::new();
    // A compressed message can expand enormously: read at most MAX_PLAINTEXT_LEN bytes.
    let mut limited = d.take(MAX_PLAINTEXT_LEN as u64 + 1);
    let read = limited.read_to_end(&mut plaintext);
    let d = limited.into_inner();
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::OpenPgp(format!(
            "plaintext longer than {MAX_PLAINTEXT_LEN} bytes (a compression bomb?)"
        )));
    }
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

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::jid::Jid;
    use crate::keys::{Identity, Suite};
    use std::time::Duration;

    #[test]
    fn expired_certificates_are_not_recipients() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let p = Policy::standard();
        let a = Identity::generate(
            &Jid::new("a@example.org").unwrap(),
            Suite::Cv25519,
            now,
            Some(Duration::from_secs(86_400)),
        )
        .unwrap();
        let c = a.public_cert();
        assert!(Recipients::new(&[&c], &p, now).is_ok());
        let later = now + Duration::from_secs(2 * 86_400);
        let r = Recipients::new(&[&c], &p, later);
        assert!(matches!(r, Err(Error::Key(_))), "{r:?}");
    }
}
