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

use crate::error::{Mismatch, UnknownSigner, pgp_msg};
use crate::keys::SecretKeyStore;
use crate::ns;
use crate::policy::Policy;
use crate::{Error, Result};

/// The longest plaintext [`decrypt`] returns (4 MiB, the largest armor this crate reads):
/// compressed messages cannot expand past it.
pub const MAX_PLAINTEXT_LEN: usize = crate::armor::MAX_ARMOR_LEN;

/// A good signature: who made it and when. Only this crate makes one, after verifying.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a verified signature says who signed: check the signer"]
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

/// What a signature is made for, at the OpenPGP level (review session 26, X1). The label at
/// the start of the signed bytes separates this crate's purposes only from each other:
/// XEP-0027 signs text that anyone may choose (a `<body/>`, a `<status/>`), with the same
/// key and signature type, so that text could be an envelope's signed bytes. Envelope
/// signatures therefore carry a hashed, critical notation ([`ns::notation::PURPOSE`] =
/// [`ns::notation::ENVELOPE`]) that an envelope requires and that every other signature
/// this crate checks must not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A XEP-0027 signature (`jabber:x:signed`, inside `jabber:x:encrypted`): without the
    /// notation.
    Xep0027,
    /// A signed envelope's: with the notation, valued [`ns::notation::ENVELOPE`].
    Envelope,
    /// The signature inside a key record (a session key offer, a room key): with the
    /// notation, valued [`ns::notation::RECORD`]. Without it, a XEP-0027 signature over text
    /// equal to a record's bytes (made by another client with the same key), re-wrapped in
    /// an encryption to the victim, gave a key record from the signer (X1's rest).
    Record,
}

impl Purpose {
    /// The notation value this purpose's signatures carry, if any.
    fn notation(self) -> Option<&'static str> {
        match self {
            Purpose::Xep0027 => None,
            Purpose::Envelope => Some(ns::notation::ENVELOPE),
            Purpose::Record => Some(ns::notation::RECORD),
        }
    }

    /// Whether the good signature `sig` is one made for this purpose: it carries exactly this
    /// purpose's notation value, or none for a XEP-0027 signature.
    fn check(self, sig: &openpgp::packet::Signature) -> std::result::Result<(), String> {
        let values: Vec<&[u8]> = sig.notation(ns::notation::PURPOSE).collect();
        let exact = |want: &str| values.len() == 1 && values.first() == Some(&want.as_bytes());
        match self {
            Purpose::Xep0027 if !values.is_empty() => Err("it is an envelope signature or a \
                 key record's (purpose notation), not a signature over XEP-0027 text"
                .into()),
            Purpose::Envelope if !exact(ns::notation::ENVELOPE) => Err("it is not an envelope \
                 signature (no envelope purpose notation): a signature made for other data"
                .into()),
            Purpose::Record if !exact(ns::notation::RECORD) => Err("it is not a key record's \
                 signature (no record purpose notation): a signature made for other data"
                .into()),
            _ => Ok(()),
        }
    }

    /// `template` with this purpose's notation (hashed and critical), if it has one.
    fn mark(self, template: SignatureBuilder) -> Result<SignatureBuilder> {
        use openpgp::packet::signature::subpacket::NotationDataFlags;
        match self.notation() {
            None => Ok(template),
            Some(value) => template
                .add_notation(
                    ns::notation::PURPOSE,
                    value,
                    NotationDataFlags::empty().set_human_readable(),
                    true,
                )
                .map_err(|e| Error::Key(pgp_msg(&e))),
        }
    }
}

/// Signs `data` at `now`: a detached signature, binary packets.
pub fn sign_detached(
    signer: KeyPair,
    data: &[u8],
    mode: SigMode,
    now: SystemTime,
) -> Result<Vec<u8>> {
    sign_detached_for(signer, data, mode, now, Purpose::Xep0027)
}

/// [`sign_detached`] for a purpose: an envelope signature carries the purpose notation.
pub(crate) fn sign_detached_for(
    signer: KeyPair,
    data: &[u8],
    mode: SigMode,
    now: SystemTime,
    purpose: Purpose,
) -> Result<Vec<u8>> {
    let mut sink = Vec::new();
    let typ = match mode {
        SigMode::Binary => SignatureType::Binary,
        SigMode::Text => SignatureType::Text,
    };
    let template = purpose.mark(SignatureBuilder::new(typ))?;
    let message = Message::new(&mut sink);
    let mut w = Signer::with_template(message, signer, template)
        .map(|s| s.detached().creation_time(now))
        .and_then(|s| s.build())
        .map_err(|e| Error::Key(pgp_msg(&e)))?;
    w.write_all(data)?;
    w.finalize().map_err(|e| Error::Key(pgp_msg(&e)))?;
    Ok(sink)
}

/// How a good signature is judged ([`record_layer`]): under `policy`, made no later than `at`
/// (sequoia's verification time: `now` plus the clock skew allowed), its signer's key valid
/// at the later of `now` and the signature's creation time ([`signer_valid_at`]), made for
/// `purpose`.
type Judging<'a> = (&'a Policy, SystemTime, SystemTime, Purpose);

struct VHelper<'a> {
    certs: &'a [Cert],
    /// The policy and the time a signer's key must be valid at (see [`signer_valid_at`]).
    policy: &'a Policy,
    at: SystemTime,
    /// The signer's key is judged no earlier than this (see [`Judging`]).
    now: SystemTime,
    purpose: Purpose,
    good: Option<Verified>,
    errors: Vec<Error>,
}

impl VerificationHelper for VHelper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        usable_certs(self.certs)
    }

    fn check(&mut self, structure: MessageStructure<'_>) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            record_layer(
                layer,
                None,
                (self.policy, self.at, self.now, self.purpose),
                &mut self.good,
                &mut self.errors,
            );
        }
        Ok(())
    }
}

/// Whether the key that made the good signature `g` is valid at `at` (the verification time,
/// or the signature's creation time if later: [`record_layer`]), not only when the signature
/// says it was made: its certificate valid under `policy`, alive
/// and not revoked, and the key itself bound for signing, alive and not revoked at `at`.
/// sequoia judges the key as of the signature's creation time, which whoever holds the secret
/// key chooses: an expired, or a superseded or retired (soft-revoked), key whose secret leaked
/// later could sign anything by backdating (XEP-0027 review F1).
fn signer_valid_at(
    g: &openpgp::parse::stream::GoodChecksum<'_>,
    policy: &Policy,
    at: SystemTime,
) -> std::result::Result<(), String> {
    use openpgp::types::RevocationStatus;
    let vc =
        g.ka.cert()
            .with_policy(policy.openpgp(), at)
            .map_err(|e| pgp_msg(&e))?;
    vc.alive()
        .map_err(|e| format!("the certificate is not alive: {}", pgp_msg(&e)))?;
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Err("the certificate is revoked".into());
    }
    let fpr = g.ka.key().fingerprint();
    vc.keys()
        .key_handle(fpr)
        .for_signing()
        .alive()
        .revoked(false)
        .next()
        .map(|_| ())
        .ok_or_else(|| "the signing key is expired, revoked or no longer bound for signing".into())
}

/// The certificates sequoia may use to check a signature: those within this crate's bounds
/// ([`crate::policy::check_cert`]), checked before sequoia verifies any self-signature with
/// their keys (review of the twelfth round, F1). When every one is refused, the first reason.
fn usable_certs(certs: &[Cert]) -> openpgp::Result<Vec<Cert>> {
    let mut first = None;
    let usable: Vec<Cert> = certs
        .iter()
        .filter(|c| match crate::policy::check_cert(c) {
            Ok(()) => true,
            Err(e) => {
                first.get_or_insert(e);
                false
            }
        })
        .cloned()
        .collect();
    match first {
        Some(e) if usable.is_empty() => Err(openpgp::Error::InvalidArgument(e.to_string()).into()),
        _ => Ok(usable),
    }
}

fn record_layer(
    layer: MessageLayer<'_>,
    recipient: Option<&Fingerprint>,
    (policy, _at, now, purpose): Judging<'_>,
    good: &mut Option<Verified>,
    errors: &mut Vec<Error>,
) {
    if let MessageLayer::SignatureGroup { results } = layer {
        for r in results {
            match r {
                Ok(g) => {
                    // Judged when the signature was made, or now if later: never in the
                    // future (review session 26, X6: judged at `now` plus the skew, a key was
                    // refused during the last skew before it expired), never before now
                    // (XEP-0027 review F1: a backdated signature does not help).
                    let created = g.sig.signature_creation_time().unwrap_or(now);
                    if let Err(why) = signer_valid_at(&g, policy, now.max(created)) {
                        errors.push(Error::BadSignature(format!(
                            "the signing key of {} is not valid now: {why}",
                            g.ka.cert().fingerprint().to_hex()
                        )));
                        continue;
                    }
                    if let Err(why) = purpose.check(g.sig) {
                        errors.push(Error::BadSignature(format!(
                            "the signature of {} is refused: {why}",
                            g.ka.cert().fingerprint().to_hex()
                        )));
                        continue;
                    }
                    // RFC 9580 §5.2.3.36: a signature that names its intended recipients
                    // must name the one reading it (else it was signed for someone else and
                    // re-encrypted).
                    let mut intended = g.sig.intended_recipients().peekable();
                    if let Some(me) = recipient
                        && intended.peek().is_some()
                        && !intended.any(|f| f == me)
                    {
                        errors.push(Error::Binding(Mismatch::IntendedRecipient {
                            signer: g.ka.cert().fingerprint().to_hex(),
                        }));
                        continue;
                    }
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
                }
                Err(e) => errors.push(verification_error(e)),
            }
        }
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
            Error::UnknownSigner(UnknownSigner::Key(who))
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

/// The most signatures one detached signature block may carry, and the most inside one
/// encrypted message ([`decrypt`]): each costs a public-key operation and a hash pass over the
/// data, so more is refused before any is checked.
pub const MAX_SIGNATURES: usize = 8;

/// Verifies a detached signature (binary packets) over `data` with the given certificates, as
/// of `now`, accepting signatures made up to [`crate::time::CLOCK_SKEW`] after `now` (the
/// signer's clock may be ahead). The first good signature is reported; without one, the first
/// signature's error.
///
/// Each signature is checked on its own: over the exact bytes, and, only when that signature
/// is of type Text (what clearsign-based clients make), once more with trailing whitespace
/// removed from each line ([`Verified::normalized`]). A block of more than
/// [`MAX_SIGNATURES`] signatures, or with anything but signatures, is refused. At most
/// [`MAX_SIGNATURES`] verification passes over `data` are made in all, the whitespace retries
/// included: signatures after the budget is spent are not checked (a block needs only one
/// good signature; an honest one has one or two).
///
/// `sig` is binary (decode armor first, [`crate::armor::decode`]). Each packet is refused by
/// its type before it is read, and packets over 64 KiB are refused unread, so a compressed
/// packet is never inflated (review session 26, X2).
pub fn verify_detached(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified> {
    verify_detached_counted(
        sig,
        data,
        certs,
        (policy, now + crate::time::CLOCK_SKEW, now, Purpose::Xep0027),
        &mut 0,
    )
}

/// [`verify_detached`] as of `at` exactly (signatures made later refused, the signer's key
/// judged at `at`), for signatures made for `purpose` only.
pub(crate) fn verify_detached_at(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    policy: &Policy,
    at: SystemTime,
    purpose: Purpose,
) -> Result<Verified> {
    verify_detached_counted(sig, data, certs, (policy, at, at, purpose), &mut 0)
}

/// [`verify_detached_at`], counting the verification passes over the data in `passes`.
fn verify_detached_counted(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    how: Judging<'_>,
    passes: &mut usize,
) -> Result<Verified> {
    let mut first_err = None;
    // Trailing whitespace removed, computed once, if a Text signature needs it.
    let mut trimmed: Option<Vec<u8>> = None;
    for (typ, one) in split_signatures(sig)? {
        if *passes >= MAX_SIGNATURES {
            break;
        }
        *passes += 1;
        let err = match verify_once(&one, data, certs, how) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        first_err.get_or_insert(err);
        if typ == SignatureType::Text && *passes < MAX_SIGNATURES {
            let trimmed = trimmed.get_or_insert_with(|| trim_trailing_whitespace(data));
            if trimmed.as_slice() != data {
                *passes += 1;
                if let Ok(v) = verify_once(&one, trimmed, certs, how) {
                    return Ok(Verified {
                        normalized: true,
                        ..v
                    });
                }
            }
        }
    }
    Err(first_err.unwrap_or_else(|| Error::OpenPgp("no signature".into())))
}

/// The largest packet [`split_signatures`] parses (64 KiB): far above any real signature (an
/// RSA-16384 signature with every subpacket is under 10 KiB). A larger packet parses as
/// `Unknown` and is refused as not a signature, without being read.
const MAX_SIGNATURE_PACKET_LEN: u32 = 64 * 1024;

/// The signatures of a detached signature block, each serialized alone, with its type.
///
/// Each packet's type is checked before the parser moves past it: moving past a packet reads
/// its body to the end, and for a compressed-data packet that means inflating all of it
/// (about 1000 bytes per byte of input) only to refuse it afterwards (review session 26, X2).
fn split_signatures(sig: &[u8]) -> Result<Vec<(SignatureType, Vec<u8>)>> {
    use openpgp::Packet;
    use openpgp::parse::{PacketParserBuilder, PacketParserResult};
    use openpgp::serialize::SerializeInto as _;
    let mut out = Vec::new();
    let mut ppr = PacketParserBuilder::from_bytes(sig)
        .and_then(|b| {
            b.dearmor(openpgp::parse::Dearmor::Disabled)
                .max_packet_size(MAX_SIGNATURE_PACKET_LEN)
                .build()
        })
        .map_err(|e| Error::OpenPgp(pgp_msg(&e)))?;
    while let PacketParserResult::Some(pp) = ppr {
        if !matches!(pp.packet, Packet::Signature(_)) {
            return Err(Error::OpenPgp(format!(
                "a {} packet where a detached signature is expected",
                pp.packet.tag()
            )));
        }
        let (packet, next) = pp.next().map_err(|e| Error::OpenPgp(pgp_msg(&e)))?;
        ppr = next;
        match packet {
            Packet::Signature(s) => {
                if out.len() == MAX_SIGNATURES {
                    return Err(Error::OpenPgp(format!(
                        "more than {MAX_SIGNATURES} signatures in one detached signature"
                    )));
                }
                let typ = s.typ();
                let bytes = Packet::from(s)
                    .to_vec()
                    .map_err(|e| Error::OpenPgp(pgp_msg(&e)))?;
                out.push((typ, bytes));
            }
            other => {
                return Err(Error::OpenPgp(format!(
                    "a {} packet where a detached signature is expected",
                    other.tag()
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::OpenPgp("no signature".into()));
    }
    Ok(out)
}

fn verify_once(
    sig: &[u8],
    data: &[u8],
    certs: &[Cert],
    (policy, at, now, purpose): Judging<'_>,
) -> Result<Verified> {
    let helper = VHelper {
        certs,
        policy,
        at,
        now,
        purpose,
        good: None,
        errors: Vec::new(),
    };
    let builder =
        DetachedVerifierBuilder::from_bytes(sig).map_err(|e| Error::OpenPgp(pgp_msg(&e)))?;
    let mut v = builder
        .with_policy(policy.openpgp(), Some(at), helper)
        .map_err(|e| Error::OpenPgp(pgp_msg(&e)))?;
    let res = v.verify_bytes(data);
    let h = v.into_helper();
    match (h.good, res) {
        (Some(g), _) => Ok(g),
        (None, Err(e)) => Err(h
            .errors
            .into_iter()
            .next()
            .unwrap_or_else(|| Error::OpenPgp(pgp_msg(&e)))),
        (None, Ok(())) => Err(h
            .errors
            .into_iter()
            .next()
            .unwrap_or_else(|| Error::OpenPgp("no signature".into()))),
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
            crate::policy::check_cert(cert)?;
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
    encrypt_for(plaintext, recipients, signer, now, Purpose::Xep0027)
}

/// [`encrypt_to`], the signature inside made for `purpose` (a key record's carries its
/// notation).
pub(crate) fn encrypt_for(
    plaintext: &[u8],
    recipients: &Recipients,
    signer: Option<KeyPair>,
    now: SystemTime,
    purpose: Purpose,
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
            let template = purpose.mark(SignatureBuilder::new(SignatureType::Binary))?;
            let mut s = Signer::with_template(message, kp, template)
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
#[non_exhaustive]
#[must_use = "the plaintext and whether it was signed"]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The good signature inside, if the message was signed by one of the given certificates.
    pub signature: Option<Verified>,
    /// The certificate whose key decrypted the message.
    pub recipient: Option<Fingerprint>,
}

/// The most public-key encrypted session key packets (PKESKs) one message may carry. A
/// XEP-0027 message is encrypted to its recipients and the sender; a larger list is refused
/// before any private-key operation.
pub const MAX_PKESKS: usize = 64;

/// The most private-key operations [`decrypt`] spends on one message, over all its PKESKs
/// (anonymous ones are tried with every encryption key held): 25 ms each with RSA-3072, so the
/// key search costs at most about 0.2 s of CPU however the stanza is built. Checking the
/// signatures inside adds at most [`MAX_SIGNATURES`] hash passes over the plaintext and as many
/// public-key operations (see [`decrypt`]'s resource bounds).
pub const MAX_DECRYPTION_ATTEMPTS: usize = 8;

/// The most OpenPGP packets one encrypted message may have, at every depth together.
pub const MAX_PACKETS: usize = 256;

/// The most decrypted and decompressed bytes [`decrypt`] produces for one message, at every
/// packet depth together (packet headers, signatures and the literal data): the plaintext
/// limit plus room for the packets around it.
pub const MAX_DECRYPTED_LEN: usize = MAX_PLAINTEXT_LEN + 256 * 1024;

/// The largest non-data packet (a signature, a one-pass signature...) inside an encrypted
/// message.
const MAX_PACKET_LEN: u32 = 64 * 1024;

/// Why the first pass refused a message (internal: the public error is [`Error::Decrypt`] for
/// every reason found after a session key was tried, so that it is no oracle, except too many
/// signatures in a container that proved intact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Not an encrypted message this crate reads, or malformed.
    Malformed,
    /// More than [`MAX_PKESKS`] PKESKs.
    TooManyPkesks,
    /// No key held decrypts it within [`MAX_DECRYPTION_ATTEMPTS`].
    NoKey,
    /// More than [`MAX_DECRYPTED_LEN`] bytes inside (a compression bomb), or more than
    /// [`MAX_PACKETS`] packets.
    TooLarge,
    /// More than [`MAX_SIGNATURES`] one-pass signatures or signatures inside the encryption
    /// container, which authenticated.
    TooManySignatures,
}

/// The session key found by the first pass.
struct Unlocked {
    algo: Option<SymmetricAlgorithm>,
    key: SessionKey,
    recipient: Fingerprint,
}

/// What the first pass did, for the tests.
#[derive(Debug, Default)]
struct Cost {
    /// Private-key operations.
    attempts: usize,
    /// Bytes produced inside the encryption container.
    inner_bytes: usize,
}

/// The first pass over an encrypted message (RFC 9580 §10.3): finds the session key with at
/// most [`MAX_DECRYPTION_ATTEMPTS`] private-key operations, using only keys whose flags allow
/// encryption under the policy, then streams every packet inside the encryption container,
/// at every depth of compression, in small chunks, counting the bytes produced and refusing
/// the message as soon as they pass [`MAX_DECRYPTED_LEN`]. Memory stays at a few chunk
/// buffers whatever the message expands to; only then does the second pass (sequoia's
/// `Decryptor`, which buffers the literal data to check signatures) run on the same bytes,
/// whose expansion is now known to be bounded.
fn unlock(
    ciphertext: &[u8],
    keys: &dyn SecretKeyStore,
    policy: &Policy,
    now: SystemTime,
    cost: &mut Cost,
) -> std::result::Result<Unlocked, Refusal> {
    use openpgp::Packet;
    use openpgp::packet::SEIP;
    use openpgp::parse::{PacketParserBuilder, PacketParserResult};

    let mut ppr = PacketParserBuilder::from_bytes(ciphertext)
        .map_err(|_| Refusal::Malformed)?
        .max_packet_size(MAX_PACKET_LEN)
        .automatic_hashing(false)
        .build()
        .map_err(|_| Refusal::Malformed)?;
    let mut pkesks: Vec<PKESK> = Vec::new();
    let mut unlocked: Option<Unlocked> = None;
    let mut skipped = 0usize;
    let mut packets = 0usize;
    // One-pass signatures and signatures inside the container (each counted), and whether the container is
    // a SEIPD v1 one (integrity only known from its MDC, at the end) and its MDC was good.
    let (mut one_pass, mut signatures) = (0usize, 0usize);
    let mut seip_v1 = false;
    let mut mdc_ok = false;
    let mut chunk = vec![0u8; 16 * 1024];
    while let PacketParserResult::Some(mut pp) = ppr {
        packets += 1;
        if packets > MAX_PACKETS {
            return Err(Refusal::TooLarge);
        }
        let depth = pp.recursion_depth();
        if depth > 0 {
            // Inside the encryption container: count what the parser produced.
            // A packet header is at most 6 bytes (RFC 9580 §4.2).
            cost.inner_bytes += 6;
            if let openpgp::packet::header::BodyLength::Full(n) = pp.header().length()
                && !matches!(
                    pp.packet,
                    Packet::Literal(_) | Packet::CompressedData(_) | Packet::SEIP(_)
                )
            {
                cost.inner_bytes += *n as usize;
            }
        }
        if depth > 0 {
            // By tag: a one-pass signature or signature over MAX_PACKET_LEN comes out of this
            // parser as `Unknown`, yet the second pass (its own larger limit) parses it as
            // what it is and keeps a hash context for it (xep0027 review F3).
            match &pp.packet {
                Packet::OnePassSig(_) => one_pass += 1,
                Packet::Signature(_) => signatures += 1,
                Packet::Unknown(u) if u.tag() == openpgp::packet::Tag::OnePassSig => one_pass += 1,
                Packet::Unknown(u) if u.tag() == openpgp::packet::Tag::Signature => signatures += 1,
                _ => {}
            }
        }
        match &pp.packet {
            Packet::OnePassSig(_) | Packet::Signature(_) if depth > 0 => {}
            // SEIPD v1 is deprecated (RFC 9580 §5.13.1) but what GnuPG writes: its MDC says
            // whether the container is intact.
            #[allow(deprecated)]
            Packet::MDC(mdc) if depth > 0 => mdc_ok = mdc.valid(),
            Packet::PKESK(p) if depth == 0 && unlocked.is_none() => {
                pkesks.push(p.clone());
                if pkesks.len() + skipped > MAX_PKESKS {
                    return Err(Refusal::TooManyPkesks);
                }
            }
            // Password-encrypted session keys (not used here), Marker packets (to be
            // ignored, RFC 9580 §5.8), and PKESKs of algorithms sequoia does not know (another
            // recipient's key): skipped, counted with the PKESKs.
            Packet::SKESK(_) | Packet::Marker(_) | Packet::Unknown(_)
                if depth == 0 && unlocked.is_none() =>
            {
                skipped += 1;
                if pkesks.len() + skipped > MAX_PKESKS {
                    return Err(Refusal::TooManyPkesks);
                }
            }
            Packet::SEIP(seip) if depth == 0 && unlocked.is_none() => {
                let hint = match seip {
                    SEIP::V2(s) => Some(s.symmetric_algo()),
                    _ => None,
                };
                seip_v1 = hint.is_none();
                unlocked = Some(try_keys(&mut pp, &pkesks, keys, hint, policy, now, cost)?);
            }
            // Another encryption container, or key packets after (or inside) the one
            // decrypted: not a message of RFC 9580 §10.3's grammar.
            Packet::SEIP(_) | Packet::PKESK(_) | Packet::SKESK(_) => {
                return Err(Refusal::Malformed);
            }
            Packet::CompressedData(_) if depth > 0 => {}
            _ if depth == 0 => return Err(Refusal::Malformed),
            _ => {
                // Whatever the parser left unread (the literal data, an over-long packet)
                // streams through one chunk buffer, counted.
                loop {
                    let n = pp.read(&mut chunk).map_err(|_| Refusal::Malformed)?;
                    if n == 0 {
                        break;
                    }
                    cost.inner_bytes += n;
                    if cost.inner_bytes > MAX_DECRYPTED_LEN {
                        return Err(Refusal::TooLarge);
                    }
                }
            }
        }
        if cost.inner_bytes > MAX_DECRYPTED_LEN {
            return Err(Refusal::TooLarge);
        }
        ppr = match pp.recurse() {
            Ok((_, next)) => next,
            Err(_) => return Err(Refusal::Malformed),
        };
    }
    if let PacketParserResult::EOF(eof) = &ppr
        && eof.is_message().is_err()
    {
        return Err(Refusal::Malformed);
    }
    // Each signature (with its one-pass signature, or alone before the data) is one hash
    // context the second pass keeps over the whole literal data: at most MAX_SIGNATURES.
    if one_pass > MAX_SIGNATURES || signatures > MAX_SIGNATURES {
        // Said as such only once the container proved intact (SEIPD v2 chunks are
        // authenticated as they are read; v1 only by its MDC): a tampered message stays the
        // one Error::Decrypt, no oracle on what its plaintext parses to.
        return Err(if !seip_v1 || mdc_ok {
            Refusal::TooManySignatures
        } else {
            Refusal::Malformed
        });
    }
    unlocked.ok_or(Refusal::NoKey)
}

/// Tries the keys of `keys` on the PKESKs, at most [`MAX_DECRYPTION_ATTEMPTS`] private-key
/// operations in all.
fn try_keys(
    pp: &mut openpgp::parse::PacketParser<'_>,
    pkesks: &[PKESK],
    keys: &dyn SecretKeyStore,
    hint: Option<SymmetricAlgorithm>,
    policy: &Policy,
    now: SystemTime,
    cost: &mut Cost,
) -> std::result::Result<Unlocked, Refusal> {
    // Addressed PKESKs first: an anonymous one costs a try with every key.
    let (addressed, anonymous): (Vec<&PKESK>, Vec<&PKESK>) = pkesks
        .iter()
        .partition(|p| p.recipient().is_some_and(|r| !is_wildcard(&r)));
    for pkesk in addressed.into_iter().chain(anonymous) {
        let recipient = pkesk.recipient().filter(|r| !is_wildcard(r));
        for (fpr, key) in keys.decryption_keys(recipient.as_ref(), policy, now) {
            if cost.attempts >= MAX_DECRYPTION_ATTEMPTS {
                return Err(Refusal::NoKey);
            }
            let Ok(mut kp) = key.into_keypair() else {
                continue;
            };
            cost.attempts += 1;
            if let Some((algo, sk)) = pkesk.decrypt(&mut kp, hint) {
                let algo = hint.or(algo);
                if pp.decrypt(algo, &sk).is_ok() {
                    return Ok(Unlocked {
                        algo,
                        key: sk,
                        recipient: fpr,
                    });
                }
            }
        }
    }
    Err(Refusal::NoKey)
}

fn is_wildcard(h: &KeyHandle) -> bool {
    match h {
        KeyHandle::KeyID(id) => id.is_wildcard(),
        KeyHandle::Fingerprint(_) => false,
    }
}

struct DHelper<'a> {
    certs: &'a [Cert],
    /// The policy and the time a signer's key must be valid at (see [`signer_valid_at`]).
    policy: &'a Policy,
    at: SystemTime,
    /// The signer's key is judged no earlier than this (see [`Judging`]).
    now: SystemTime,
    unlocked: &'a Unlocked,
    /// What the signature inside must have been made for.
    purpose: Purpose,
    good: Option<Verified>,
    errors: Vec<Error>,
    structure_ok: bool,
    decrypted: bool,
}

impl VerificationHelper for DHelper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        usable_certs(self.certs)
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
            record_layer(
                layer,
                Some(&self.unlocked.recipient),
                (self.policy, self.at, self.now, self.purpose),
                &mut self.good,
                &mut self.errors,
            );
        }
        self.structure_ok = matches!(shape.as_str(), "e" | "ec" | "es" | "ecs");
        Ok(())
    }
}

impl DecryptionHelper for DHelper<'_> {
    fn decrypt(
        &mut self,
        _pkesks: &[PKESK],
        _skesks: &[SKESK],
        _sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        // The first pass found the session key: no private-key operation here.
        if decrypt(self.unlocked.algo, &self.unlocked.key) {
            self.decrypted = true;
            return Ok(None);
        }
        Err(openpgp::anyhow::anyhow!("no key decrypts the message"))
    }
}

/// Decrypts an OpenPGP message (binary packets) with the keys of `keys`, and checks any
/// signature inside against `signers` (the sender's certificates) as of `now`, accepting
/// signatures made up to [`crate::time::CLOCK_SKEW`] after `now` (the sender's clock may be
/// ahead).
///
/// Every failure to decrypt (no matching key, wrong key, tampered ciphertext, a message that
/// is not encrypted, one that expands past the limits) is the one [`Error::Decrypt`], so that
/// the error is no oracle. Once decrypted, a signature that is present but does not verify
/// with `signers` is an error too ([`Error::UnknownSigner`] or [`Error::BadSignature`]): a
/// message is never returned with a signature silently ignored. A signature that names
/// intended recipients (RFC 9580 §5.2.3.36) must name the certificate that decrypted the
/// message ([`Error::Binding`] otherwise: a message signed for someone else and re-encrypted
/// to us). An unsigned message gives `signature: None`.
///
/// # Resource bounds
///
/// Whatever the message, before anything in it is authenticated: at most [`MAX_PKESKS`]
/// PKESKs (more is [`Error::OpenPgp`], before any key is used), at most
/// [`MAX_DECRYPTION_ATTEMPTS`] private-key operations, and only with keys whose flags allow
/// encryption under `policy` (a message encrypted to a signing or certification key is not
/// decrypted), at most [`MAX_PACKETS`] packets and [`MAX_DECRYPTED_LEN`] decrypted and
/// decompressed bytes at every depth together, streamed through fixed buffers: a compression
/// bomb is refused after producing that much, with memory in the tens of megabytes at most.
/// Inside the encryption at most [`MAX_SIGNATURES`] one-pass signatures and at most
/// [`MAX_SIGNATURES`] signatures, at any depth, counted by the first pass: more is
/// [`Error::OpenPgp`] before the second pass hashes anything (each signature is one hash
/// context over the whole plaintext, and a Text one hashes line by line: 125 of them over
/// 4 MiB of newlines cost tens of CPU-seconds; 8 Text ones, the worst case allowed, about
/// 0.4 s in an unoptimized test build). A tampered container is still [`Error::Decrypt`].
pub fn decrypt(
    ciphertext: &[u8],
    keys: &dyn SecretKeyStore,
    signers: &[Cert],
    policy: &Policy,
    now: SystemTime,
) -> Result<Decrypted> {
    decrypt_for(ciphertext, keys, signers, policy, now, Purpose::Xep0027)
}

/// [`decrypt`], the signature inside required to be made for `purpose` (a key record's
/// carries its notation; any other one carries none).
pub(crate) fn decrypt_for(
    ciphertext: &[u8],
    keys: &dyn SecretKeyStore,
    signers: &[Cert],
    policy: &Policy,
    now: SystemTime,
    purpose: Purpose,
) -> Result<Decrypted> {
    let mut cost = Cost::default();
    decrypt_counted(ciphertext, keys, signers, policy, now, &mut cost, purpose)
}

fn decrypt_counted(
    ciphertext: &[u8],
    keys: &dyn SecretKeyStore,
    signers: &[Cert],
    policy: &Policy,
    now: SystemTime,
    cost: &mut Cost,
    purpose: Purpose,
) -> Result<Decrypted> {
    let unlocked = unlock(ciphertext, keys, policy, now, cost).map_err(|r| match r {
        Refusal::TooManyPkesks => Error::OpenPgp(format!(
            "more than {MAX_PKESKS} encrypted session keys in one message"
        )),
        Refusal::TooManySignatures => Error::OpenPgp(format!(
            "more than {MAX_SIGNATURES} signatures (or one-pass signatures) in one encrypted message"
        )),
        _ => Error::Decrypt,
    })?;
    let at = now + crate::time::CLOCK_SKEW;
    let helper = DHelper {
        certs: signers,
        policy,
        at,
        now,
        unlocked: &unlocked,
        purpose,
        good: None,
        errors: Vec::new(),
        structure_ok: false,
        decrypted: false,
    };
    // sequoia buffers up to `buffer_size` bytes to check signatures before releasing data, and
    // allocates that much up front (25 MiB by default, for every message). Stanza-sized
    // messages fit in 64 KiB; a larger one is read to its end (at most MAX_DECRYPTED_LEN
    // bytes, as the first pass proved) and checked before anything is returned here.
    let builder = DecryptorBuilder::from_bytes(ciphertext)
        .map_err(|_| Error::Decrypt)?
        .buffer_size(64 * 1024);
    let d = builder
        .with_policy(policy.openpgp(), Some(at), helper)
        .map_err(|_| Error::Decrypt)?;
    let mut plaintext = Vec::new();
    let mut limited = d.take(MAX_PLAINTEXT_LEN as u64 + 1);
    let read = limited.read_to_end(&mut plaintext);
    let d = limited.into_inner();
    let processed = d.message_processed();
    let h = d.into_helper();
    if read.is_err()
        || plaintext.len() > MAX_PLAINTEXT_LEN
        || !processed
        || !h.structure_ok
        || !h.decrypted
    {
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
        recipient: Some(unlocked.recipient.clone()),
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

/// Issue 12 items 1, 2 and 6: what one message may cost before anything in it is
/// authenticated, and which keys and signatures count.
#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::jid::Jid;
    use crate::keys::{Identity, Suite};
    use openpgp::serialize::stream::Compressor;
    use openpgp::types::{CompressionAlgorithm, CompressionLevel};
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_000_000)
    }

    fn id(name: &str, suite: Suite) -> Identity {
        Identity::generate(
            &Jid::new(&format!("{name}@example.org")).unwrap(),
            suite,
            now(),
            None,
        )
        .unwrap()
    }

    fn encryption_key(c: &Cert) -> Key<PublicParts, UnspecifiedRole> {
        c.keys()
            .with_policy(Policy::standard().openpgp(), Some(now()))
            .for_transport_encryption()
            .next()
            .unwrap()
            .key()
            .clone()
            .role_into_unspecified()
    }

    /// An encrypted message to `to` whose literal data is `size` zero bytes under `levels`
    /// nested compression layers: what a compression bomb looks like.
    fn bomb(to: &Cert, levels: usize, size: usize) -> Vec<u8> {
        let key = encryption_key(to);
        let mut sink = Vec::new();
        let mut m = Encryptor::for_recipients(
            Message::new(&mut sink),
            [Recipient::new(None, key.key_handle(), &key)],
        )
        .build()
        .unwrap();
        for _ in 0..levels {
            m = Compressor::new(m)
                .algo(CompressionAlgorithm::Zip)
                .level(CompressionLevel::best())
                .build()
                .unwrap();
        }
        let mut w = LiteralWriter::new(m).build().unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len());
            w.write_all(&zeros[..n]).unwrap();
            left -= n;
        }
        w.finalize().unwrap();
        sink
    }

    #[test]
    fn compression_bombs_stop_at_the_limit_at_any_depth() {
        let bob = id("bob", Suite::Cv25519);
        let p = Policy::standard();
        for levels in [1, 2, 3] {
            let ct = bomb(&bob.public_cert(), levels, 128 << 20);
            assert!(ct.len() < 1 << 20, "{levels}: {} bytes", ct.len());
            let mut cost = Cost::default();
            let r = unlock(&ct, &bob, &p, now(), &mut cost);
            assert_eq!(r.err(), Some(Refusal::TooLarge), "{levels} levels");
            // Refused as soon as the output passed the limit: one chunk past it at most.
            assert!(cost.inner_bytes > MAX_DECRYPTED_LEN, "{cost:?}");
            assert!(
                cost.inner_bytes <= MAX_DECRYPTED_LEN + 16 * 1024,
                "{cost:?}"
            );
            assert_eq!(cost.attempts, 1);
            assert!(matches!(
                decrypt(&ct, &bob, &[], &p, now()),
                Err(Error::Decrypt)
            ));
        }
        // Compressed plaintext at the limit is an ordinary message (nested compression is
        // not: RFC 9580 §10.3 allows it, but no XEP-0027 client makes it).
        let ct = bomb(&bob.public_cert(), 1, MAX_PLAINTEXT_LEN);
        let d = decrypt(&ct, &bob, &[], &p, now()).unwrap();
        assert_eq!(d.plaintext.len(), MAX_PLAINTEXT_LEN);
        let ct = bomb(&bob.public_cert(), 1, MAX_PLAINTEXT_LEN + 1);
        assert!(matches!(
            decrypt(&ct, &bob, &[], &p, now()),
            Err(Error::Decrypt)
        ));
    }

    /// Runs in a child process (see the next test): decrypts the bomb named by the
    /// environment and prints the peak resident set size. Without the environment it is not
    /// the child and does nothing.
    #[test]
    fn compression_bomb_child_process() {
        let (Ok(bomb), Ok(key)) = (
            std::env::var("XEP0027_BOMB_FILE"),
            std::env::var("XEP0027_BOMB_KEY"),
        ) else {
            return;
        };
        let bob = Identity::from_bytes(
            &Jid::new("bob@example.org").unwrap(),
            &std::fs::read(key).unwrap(),
        )
        .unwrap();
        let ct = std::fs::read(bomb).unwrap();
        let before = peak_rss_kib();
        let r = decrypt(&ct, &bob, &[], &Policy::standard(), now());
        println!(
            "BOMB result={} before_kib={before} peak_kib={}",
            matches!(r, Err(Error::Decrypt)),
            peak_rss_kib()
        );
    }

    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn a_128_mib_compression_bomb_peaks_far_under_100_mb() {
        let dir = tempfile::tempdir().unwrap();
        let bob = id("bob", Suite::Cv25519);
        let (bomb_file, key_file) = (dir.path().join("bomb.pgp"), dir.path().join("bob.tsk"));
        std::fs::write(&bomb_file, bomb(&bob.public_cert(), 1, 128 << 20)).unwrap();
        std::fs::write(&key_file, bob.to_secret_bytes().unwrap()).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "openpgp::bound_tests::compression_bomb_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("XEP0027_BOMB_FILE", &bomb_file)
            .env("XEP0027_BOMB_KEY", &key_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("BOMB ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("the child printed no result: {out:?}"));
        let field = |k: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(k))
                .unwrap()
                .to_owned()
        };
        assert_eq!(field("result="), "true", "{line}");
        let peak_mib = field("peak_kib=").parse::<u64>().unwrap() / 1024;
        // The whole test process, sequoia and OpenSSL included: before the fix it grew by
        // the bomb's full 128 MiB (1.9 GB for the review's 700 KB stanza).
        assert!(peak_mib < 48, "peak RSS {peak_mib} MiB: {line}");
    }

    /// `n` anonymous PKESKs to `decoy` (nobody here holds its key), then one anonymous PKESK
    /// to `to`.
    fn anonymous_to(decoy: &Cert, n: usize, to: &Cert) -> Vec<u8> {
        let (dk, tk) = (encryption_key(decoy), encryption_key(to));
        let mut recipients: Vec<Recipient<'_>> =
            (0..n).map(|_| Recipient::new(None, None, &dk)).collect();
        recipients.push(Recipient::new(None, None, &tk));
        let mut sink = Vec::new();
        let m = Encryptor::for_recipients(Message::new(&mut sink), recipients)
            .build()
            .unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(b"hello").unwrap();
        w.finalize().unwrap();
        sink
    }

    #[test]
    fn pkesks_and_private_key_operations_are_capped() {
        let p = Policy::standard();
        let (bob, carol) = (id("bob", Suite::Cv25519), id("carol", Suite::Cv25519));
        // Anonymous and last: found within the cap when few come before it.
        let ct = anonymous_to(&carol.public_cert(), 3, &bob.public_cert());
        let mut cost = Cost::default();
        let d = decrypt_counted(&ct, &bob, &[], &p, now(), &mut cost, Purpose::Xep0027).unwrap();
        assert_eq!(d.plaintext, b"hello");
        assert_eq!(cost.attempts, 4);
        // 60 anonymous decoys: at most MAX_DECRYPTION_ATTEMPTS private-key operations.
        let ct = anonymous_to(&carol.public_cert(), 60, &bob.public_cert());
        let mut cost = Cost::default();
        let r = decrypt_counted(&ct, &bob, &[], &p, now(), &mut cost, Purpose::Xep0027);
        assert!(matches!(r, Err(Error::Decrypt)), "{r:?}");
        assert_eq!(cost.attempts, MAX_DECRYPTION_ATTEMPTS);
        // 400 (the review's 11 s with RSA-3072): refused before any key is used.
        let ct = anonymous_to(&carol.public_cert(), 400, &bob.public_cert());
        let mut cost = Cost::default();
        let r = decrypt_counted(&ct, &bob, &[], &p, now(), &mut cost, Purpose::Xep0027);
        assert!(matches!(r, Err(Error::OpenPgp(_))), "{r:?}");
        assert_eq!(cost.attempts, 0);
    }

    #[test]
    fn signing_and_certification_keys_never_decrypt() {
        let p = Policy::standard();
        // RSA: every key could decrypt as far as the algorithm goes; only the flags say no.
        let alice = id("alice", Suite::Rsa2k);
        let cert = alice.public_cert();
        let vc = cert.with_policy(p.openpgp(), Some(now())).unwrap();
        let signing = vc.keys().for_signing().next().unwrap().key().clone();
        let primary = vc.primary_key().key().clone();
        for key in [
            signing.role_into_unspecified(),
            primary.role_into_unspecified(),
        ] {
            let mut sink = Vec::new();
            let m = Encryptor::for_recipients(
                Message::new(&mut sink),
                [Recipient::new(None, key.key_handle(), &key)],
            )
            .build()
            .unwrap();
            let mut w = LiteralWriter::new(m).build().unwrap();
            w.write_all(b"to the wrong key").unwrap();
            w.finalize().unwrap();
            let r = decrypt(&sink, &alice, &[], &p, now());
            assert!(matches!(r, Err(Error::Decrypt)), "{r:?}");
        }
        // The encryption subkey does.
        let ct = encrypt(b"right", &[&cert], None, &p, now()).unwrap();
        assert_eq!(
            decrypt(&ct, &alice, &[], &p, now()).unwrap().plaintext,
            b"right"
        );
    }

    #[test]
    fn a_signature_for_other_intended_recipients_is_refused() {
        let p = Policy::standard();
        let (alice, bob, carol) = (
            id("alice", Suite::Cv25519),
            id("bob", Suite::Cv25519),
            id("carol", Suite::Cv25519),
        );
        let signed_for = |intended: &Cert| {
            let key = encryption_key(&carol.public_cert());
            let mut sink = Vec::new();
            let m = Encryptor::for_recipients(
                Message::new(&mut sink),
                [Recipient::new(None, key.key_handle(), &key)],
            )
            .build()
            .unwrap();
            let m = Signer::new(m, alice.signer(&p, now()).unwrap())
                .unwrap()
                .creation_time(now())
                .add_intended_recipient(intended)
                .build()
                .unwrap();
            let mut w = LiteralWriter::new(m).build().unwrap();
            w.write_all(b"for bob only").unwrap();
            w.finalize().unwrap();
            sink
        };
        // Signed for bob, re-encrypted to carol: carol must not take it as said to her.
        let ct = signed_for(&bob.public_cert());
        let r = decrypt(&ct, &carol, &[alice.public_cert()], &p, now());
        assert!(matches!(r, Err(Error::Binding(_))), "{r:?}");
        let ct = signed_for(&carol.public_cert());
        let d = decrypt(&ct, &carol, &[alice.public_cert()], &p, now()).unwrap();
        assert_eq!(d.signature.unwrap().signer, alice.fingerprint());
    }

    #[test]
    fn the_whitespace_retry_is_decided_per_signature() {
        let p = Policy::standard();
        let alice = id("alice", Suite::Cv25519);
        let sign = |data: &[u8], mode| {
            sign_detached(alice.signer(&p, now()).unwrap(), data, mode, now()).unwrap()
        };
        // A binary signature over the trimmed text, behind a text signature over anything:
        // the binary one must not be retried with trailing whitespace removed.
        let mut block = sign(b"unrelated", SigMode::Text);
        block.extend(sign(b"Online\nBusy", SigMode::Binary));
        let r = verify_detached(
            &block,
            b"Online  \nBusy\t",
            &[alice.public_cert()],
            &p,
            now(),
        );
        assert!(matches!(r, Err(Error::BadSignature(_))), "{r:?}");
        // The same binary signature verifies the exact text, whatever precedes it.
        let v =
            verify_detached(&block, b"Online\nBusy", &[alice.public_cert()], &p, now()).unwrap();
        assert!(!v.normalized);
        // A text signature is retried, on its own account.
        let mut block = sign(b"unrelated", SigMode::Binary);
        block.extend(sign(b"Online\nBusy", SigMode::Text));
        let v = verify_detached(
            &block,
            b"Online  \nBusy\t",
            &[alice.public_cert()],
            &p,
            now(),
        )
        .unwrap();
        assert!(v.normalized);
        // At most MAX_SIGNATURES signatures are looked at.
        let mut many = Vec::new();
        for _ in 0..=MAX_SIGNATURES {
            many.extend(sign(b"x", SigMode::Binary));
        }
        assert!(matches!(
            verify_detached(&many, b"x", &[alice.public_cert()], &p, now()),
            Err(Error::OpenPgp(_))
        ));
    }

    /// An encrypted message to `to` signed inside by every one of `signers` (one-pass
    /// signatures, `typ` each), optionally under a compression layer, whose literal data is
    /// `body`.
    fn signed_by_many(
        to: &Cert,
        signers: &[Identity],
        typ: SignatureType,
        compress: bool,
        body: &[u8],
    ) -> Vec<u8> {
        let p = Policy::standard();
        let key = encryption_key(to);
        let mut sink = Vec::new();
        let mut m = Encryptor::for_recipients(
            Message::new(&mut sink),
            [Recipient::new(None, key.key_handle(), &key)],
        )
        .build()
        .unwrap();
        if compress {
            m = Compressor::new(m)
                .algo(CompressionAlgorithm::Zip)
                .build()
                .unwrap();
        }
        let mut s = Signer::with_template(
            m,
            signers[0].signer(&p, now()).unwrap(),
            SignatureBuilder::new(typ),
        )
        .unwrap()
        .creation_time(now());
        for more in &signers[1..] {
            s = s.add_signer(more.signer(&p, now()).unwrap()).unwrap();
        }
        let m = s.build().unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(body).unwrap();
        w.finalize().unwrap();
        sink
    }

    /// Review session 26, X1: a signature inside an encrypted message that carries the
    /// envelope purpose notation (an envelope signature's, re-wrapped) is refused, and the
    /// same message signed without it decrypts.
    #[test]
    fn an_envelope_signature_inside_an_encrypted_message_is_refused() {
        use openpgp::packet::signature::subpacket::NotationDataFlags;
        let p = Policy::standard();
        let (alice, bob) = (id("alice", Suite::Cv25519), id("bob", Suite::Cv25519));
        let make = |marked: bool| {
            let key = encryption_key(&bob.public_cert());
            let mut sink = Vec::new();
            let m = Encryptor::for_recipients(
                Message::new(&mut sink),
                [Recipient::new(None, key.key_handle(), &key)],
            )
            .build()
            .unwrap();
            let mut template = SignatureBuilder::new(SignatureType::Binary);
            if marked {
                template = template
                    .add_notation(
                        ns::notation::PURPOSE,
                        ns::notation::ENVELOPE,
                        NotationDataFlags::empty().set_human_readable(),
                        true,
                    )
                    .unwrap();
            }
            let m = Signer::with_template(m, alice.signer(&p, now()).unwrap(), template)
                .unwrap()
                .creation_time(now())
                .build()
                .unwrap();
            let mut w = LiteralWriter::new(m).build().unwrap();
            w.write_all(b"hello").unwrap();
            w.finalize().unwrap();
            sink
        };
        let d = decrypt(&make(false), &bob, &[alice.public_cert()], &p, now()).unwrap();
        assert_eq!(
            d.signature.unwrap().signer,
            alice.public_cert().fingerprint()
        );
        let r = decrypt(&make(true), &bob, &[alice.public_cert()], &p, now());
        assert!(
            matches!(r, Err(Error::BadSignature(ref m)) if m.contains("is an envelope signature")),
            "{r:?}"
        );
    }

    /// Finding 1 of the xep-audit review: one-pass signatures inside an encrypted message are
    /// hash contexts the second pass keeps over the whole literal data (a Text one hashes per
    /// line): more than [`MAX_SIGNATURES`] of them, or of signatures, are refused by the
    /// first pass, at any depth, before sequoia's Decryptor runs.
    #[test]
    fn more_than_max_signatures_inside_a_message_are_refused() {
        let p = Policy::standard();
        let bob = id("bob", Suite::Cv25519);
        let signers: Vec<Identity> = (0..=MAX_SIGNATURES)
            .map(|i| id(&format!("s{i}"), Suite::Cv25519))
            .collect();
        let certs: Vec<Cert> = signers.iter().map(Identity::public_cert).collect();
        for compress in [false, true] {
            for typ in [SignatureType::Binary, SignatureType::Text] {
                let ct = signed_by_many(&bob.public_cert(), &signers, typ, compress, b"hi\n");
                let mut cost = Cost::default();
                let r = unlock(&ct, &bob, &p, now(), &mut cost);
                assert_eq!(
                    r.err(),
                    Some(Refusal::TooManySignatures),
                    "{compress} {typ}"
                );
                let r = decrypt(&ct, &bob, &certs, &p, now());
                assert!(
                    matches!(&r, Err(Error::OpenPgp(m)) if m.contains("signatures")),
                    "{compress} {typ}: {r:?}"
                );
                // Tampered (the MDC of this SEIPD v1 message): the one Error::Decrypt, no
                // oracle on the plaintext's structure.
                let mut bad = ct.clone();
                let n = bad.len() - 1;
                bad[n] ^= 1;
                let r = decrypt(&bad, &bob, &certs, &p, now());
                assert!(matches!(r, Err(Error::Decrypt)), "{r:?}");
                // Exactly MAX_SIGNATURES, and one: ordinary messages.
                for n in [MAX_SIGNATURES, 1] {
                    let ct =
                        signed_by_many(&bob.public_cert(), &signers[..n], typ, compress, b"hi\n");
                    let d = decrypt(&ct, &bob, &certs, &p, now()).unwrap();
                    assert_eq!(d.plaintext, b"hi\n");
                    assert!(d.signature.is_some());
                }
            }
        }
    }

    /// Finding F3 of the xep0027 review: one-pass signatures and signatures over the first
    /// pass's packet limit came out of its parser as `Unknown` and were not counted, while the
    /// second pass (a larger limit) kept a hash context for each over the literal data.
    #[test]
    fn oversized_one_pass_signatures_are_counted() {
        let p = Policy::standard();
        let bob = id("bob", Suite::Cv25519);
        let key = encryption_key(&bob.public_cert());
        // A packet in the new format with a five-octet length (RFC 9580 §4.2.1.1).
        let packet = |tag: u8, body: &[u8]| {
            let mut v = vec![0xC0 | tag, 0xFF];
            v.extend_from_slice(&(body.len() as u32).to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        let n = MAX_SIGNATURES + 1;
        let mut sink = Vec::new();
        let mut m = Encryptor::for_recipients(
            Message::new(&mut sink),
            [Recipient::new(None, key.key_handle(), &key)],
        )
        .build()
        .unwrap();
        for _ in 0..n {
            // Version 3, Text, SHA-256, EdDSA, an issuer, last: then padding.
            let mut body = vec![3, 0x01, 8, 22, 1, 2, 3, 4, 5, 6, 7, 8, 1];
            body.resize(body.len() + MAX_PACKET_LEN as usize, 0);
            m.write_all(&packet(4, &body)).unwrap();
        }
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(&b"\n".repeat(1 << 20)).unwrap();
        let mut m = w.finalize_one().unwrap().unwrap();
        for _ in 0..n {
            let mut body = vec![4, 0x01, 22, 8, 0, 0, 0, 0, 0, 0];
            body.resize(MAX_PACKET_LEN as usize + 64, 0);
            m.write_all(&packet(2, &body)).unwrap();
        }
        m.finalize().unwrap();
        let mut cost = Cost::default();
        let r = unlock(&sink, &bob, &p, now(), &mut cost);
        assert_eq!(r.err(), Some(Refusal::TooManySignatures));
    }

    /// Finding 1 of the xep-audit review, detached side: a block of Text signatures over a
    /// text with trailing whitespace costs at most [`MAX_SIGNATURES`] verification passes
    /// over the data in all, the whitespace retries included (before: two per signature).
    #[test]
    fn a_detached_block_costs_at_most_max_signatures_passes() {
        let p = Policy::standard();
        let alice = id("alice", Suite::Cv25519);
        let sign = |data: &[u8]| {
            sign_detached(alice.signer(&p, now()).unwrap(), data, SigMode::Text, now()).unwrap()
        };
        let data = b"Online \n".repeat(1000);
        let mut block = Vec::new();
        for _ in 0..MAX_SIGNATURES {
            block.extend(sign(b"something else"));
        }
        let mut passes = 0;
        let r = verify_detached_counted(
            &block,
            &data,
            &[alice.public_cert()],
            (&p, now(), now(), Purpose::Xep0027),
            &mut passes,
        );
        assert!(matches!(r, Err(Error::BadSignature(_))), "{r:?}");
        assert!(passes <= MAX_SIGNATURES, "{passes} passes");
        // A good Text signature behind a bad one still verifies, whitespace-normalized.
        let mut block = sign(b"something else");
        block.extend(sign(&b"Online\n".repeat(1000)));
        let mut passes = 0;
        let v = verify_detached_counted(
            &block,
            &data,
            &[alice.public_cert()],
            (&p, now(), now(), Purpose::Xep0027),
            &mut passes,
        )
        .unwrap();
        assert!(v.normalized);
        assert!(passes <= MAX_SIGNATURES, "{passes} passes");
    }

    /// Review session 26, X2: a compressed-data packet in a detached signature block is
    /// refused by its type, before any of it is inflated. Its stream is corrupted at the end,
    /// so inflating it (the old behaviour) fails with a decompression error, not this one.
    #[test]
    fn a_compressed_packet_in_a_detached_block_is_refused_uninflated() {
        let p = Policy::standard();
        let alice = id("alice", Suite::Cv25519);
        let mut block = Vec::new();
        let m = Compressor::new(Message::new(&mut block))
            .algo(CompressionAlgorithm::Zip)
            .level(CompressionLevel::best())
            .build()
            .unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            w.write_all(&zeros).unwrap();
        }
        w.finalize().unwrap();
        assert!(block.len() < 1 << 20, "{} bytes", block.len());
        let n = block.len();
        for b in &mut block[n - 8..] {
            *b ^= 0x55;
        }
        let started = std::time::Instant::now();
        let r = verify_detached(&block, b"x", &[alice.public_cert()], &p, now());
        let took = started.elapsed();
        match r {
            Err(Error::OpenPgp(m)) => {
                assert!(m.contains("where a detached signature is expected"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    /// Review session 26, X2: a signature packet larger than [`MAX_SIGNATURE_PACKET_LEN`] is
    /// refused without being parsed, even a good one (padded in its unhashed area).
    #[test]
    fn an_oversized_signature_packet_is_refused() {
        use openpgp::Packet;
        use openpgp::packet::signature::subpacket::{
            NotationData, NotationDataFlags, Subpacket, SubpacketValue,
        };
        use openpgp::serialize::SerializeInto as _;
        let p = Policy::standard();
        let alice = id("alice", Suite::Cv25519);
        let sig = sign_detached(
            alice.signer(&p, now()).unwrap(),
            b"x",
            SigMode::Binary,
            now(),
        )
        .unwrap();
        let Ok(Packet::Signature(mut s)) = Packet::from_bytes(&sig) else {
            panic!("not a signature");
        };
        s.unhashed_area_mut()
            .add(
                Subpacket::new(
                    SubpacketValue::NotationData(NotationData::new(
                        "pad@example.org",
                        vec![0u8; 65_400],
                        NotationDataFlags::empty(),
                    )),
                    false,
                )
                .unwrap(),
            )
            .unwrap();
        let big = Packet::from(s).to_vec().unwrap();
        assert!(
            big.len() > MAX_SIGNATURE_PACKET_LEN as usize,
            "{}",
            big.len()
        );
        let r = verify_detached(&big, b"x", &[alice.public_cert()], &p, now());
        match r {
            Err(Error::OpenPgp(m)) => {
                assert!(m.contains("where a detached signature is expected"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // The same signature unpadded is good.
        let v = verify_detached(&sig, b"x", &[alice.public_cert()], &p, now()).unwrap();
        assert_eq!(v.signer, alice.public_cert().fingerprint());
    }

    /// Review session 26, X6: a signer's key was judged at `now` plus the skew, so every
    /// signature was refused during the last five minutes of the key's validity (detached,
    /// and inside encrypted messages) while the sender could still sign. Judged at the
    /// signature's creation time or `now`, whichever is later, it verifies until the key
    /// expires, and not after.
    #[test]
    fn a_key_is_good_until_it_expires_not_five_minutes_before() {
        let p = Policy::standard();
        let day = Duration::from_secs(86_400);
        let alice = Identity::generate(
            &Jid::new("alice@example.org").unwrap(),
            Suite::Cv25519,
            now(),
            Some(day),
        )
        .unwrap();
        let bob = id("bob", Suite::Cv25519);
        // Created a minute before `now()` (see `Identity::generate`).
        let expiry = now() + day - Duration::from_secs(60);
        let signed_at = expiry - Duration::from_secs(120);
        let sig = sign_detached(
            alice.signer(&p, signed_at).unwrap(),
            b"x",
            SigMode::Binary,
            signed_at,
        )
        .unwrap();
        let ct = encrypt(
            b"x",
            &[&bob.public_cert()],
            Some(alice.signer(&p, signed_at).unwrap()),
            &p,
            signed_at,
        )
        .unwrap();
        let check = expiry - Duration::from_secs(60);
        let v = verify_detached(&sig, b"x", &[alice.public_cert()], &p, check).unwrap();
        assert_eq!(v.signer, alice.public_cert().fingerprint());
        let d = decrypt(&ct, &bob, &[alice.public_cert()], &p, check).unwrap();
        assert_eq!(
            d.signature.unwrap().signer,
            alice.public_cert().fingerprint()
        );
        // After the expiry: refused.
        let late = expiry + Duration::from_secs(60);
        let r = verify_detached(&sig, b"x", &[alice.public_cert()], &p, late);
        assert!(matches!(r, Err(Error::BadSignature(_))), "{r:?}");
        assert!(decrypt(&ct, &bob, &[alice.public_cert()], &p, late).is_err());
    }

    #[test]
    fn signatures_from_a_clock_ahead_are_accepted_within_the_skew() {
        let p = Policy::standard();
        let alice = id("alice", Suite::Cv25519);
        for (ahead, ok) in [(2, true), (290, true), (400, false)] {
            let t = now() + Duration::from_secs(ahead);
            let sig =
                sign_detached(alice.signer(&p, t).unwrap(), b"x", SigMode::Binary, t).unwrap();
            let r = verify_detached(&sig, b"x", &[alice.public_cert()], &p, now());
            assert_eq!(r.is_ok(), ok, "{ahead} s ahead: {r:?}");
        }
    }
}
