//! `jabber:x:encrypted` (XEP-0027 §5): the message body as an OpenPGP message encrypted to
//! the recipients and to oneself, the `<body/>` replaced by a plaintext fallback.
//!
//! [`encrypt`] signs inside the encryption by default (one signed-and-encrypted OpenPGP
//! message, with the recipients as intended recipients): plain XEP-0027 readers decrypt it as
//! usual, and it gives what XEP-0027 cannot, a message both signed and encrypted. [`decrypt`]
//! checks that inner signature against the sender's certificates.

use std::time::SystemTime;

use sequoia_openpgp::Cert;

use crate::armor;
use crate::keys::{CertLookup, Identity, SecretKeyStore};
use crate::ns;
use crate::openpgp::{self, Recipients, Verified};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza, sender};
use crate::{Error, Result};

/// The `<body/>` that replaces an encrypted one (XEP-0027 §5 suggests such a text).
pub const FALLBACK_BODY: &str = "This message is encrypted.";

/// Encrypts the `<body/>` of a message to `recipients` and to `me`, signed by `me` inside
/// when `sign` is set. A message with a `jabber:x:signed` signature or an XHTML-IM body is
/// refused, see [`encrypt_to`].
pub fn encrypt(
    stanza: &mut Stanza,
    me: &Identity,
    recipients: &[&Cert],
    sign: bool,
    policy: &Policy,
    now: SystemTime,
) -> Result<()> {
    let own = me.public_cert();
    let mut to: Vec<&Cert> = recipients.to_vec();
    if !to.iter().any(|c| c.fingerprint() == own.fingerprint()) {
        to.push(&own);
    }
    let prepared = Recipients::new(&to, policy, now)?;
    encrypt_to(stanza, me, &prepared, sign, policy, now)
}

/// Refuses to encrypt or seal a stanza that carries the plaintext in another form next to
/// the ciphertext (review session 26, X3): a `jabber:x:signed` signature over the `<body/>`
/// (anyone with the sender's public key could confirm a guessed plaintext with it, and it
/// no longer verifies against the fallback body) or an XHTML-IM copy of the body. Sign
/// after encrypting, or sign inside ([`encrypt`] with `sign`), instead.
pub(crate) fn refuse_plaintext_copies(stanza: &Stanza) -> Result<()> {
    let el = stanza.element();
    if el.children_named("x", ns::SIGNED).next().is_some() {
        return Err(Error::State(
            "the message carries a jabber:x:signed signature over its body, which would \
             reveal the plaintext next to the ciphertext: encrypt an unsigned message"
                .into(),
        ));
    }
    if el.children_named("html", ns::XHTML_IM).next().is_some() {
        return Err(Error::State(
            "the message carries an XHTML-IM copy of its body, which would reveal the \
             plaintext next to the ciphertext: remove it first"
                .into(),
        ));
    }
    Ok(())
}

/// [`encrypt`] to a prepared recipient set (checked once, reused for many messages); it
/// should include `me`'s own certificate, as XEP-0027 §5 asks.
///
/// A message that carries a `jabber:x:signed` signature or an XHTML-IM body is refused
/// ([`Error::State`]): either would leave the plaintext readable, or checkable, next to the
/// ciphertext (review session 26, X3).
pub fn encrypt_to(
    stanza: &mut Stanza,
    me: &Identity,
    recipients: &Recipients,
    sign: bool,
    policy: &Policy,
    now: SystemTime,
) -> Result<()> {
    if stanza.kind() != Kind::Message {
        return Err(Error::State("only messages are encrypted".into()));
    }
    refuse_plaintext_copies(stanza)?;
    let body = stanza
        .only_body()?
        .ok_or_else(|| Error::Stanza("no <body/> to encrypt".into()))?;
    let signer = if sign {
        crate::signed::refuse_label_prefix(&body)?;
        Some(me.signer(policy, now)?)
    } else {
        None
    };
    let ct = openpgp::encrypt_to(body.as_bytes(), recipients, signer, now)?;
    let el = stanza.element_mut();
    el.remove_children("x", ns::ENCRYPTED);
    el.push(Element::new("x", ns::ENCRYPTED).with_text(&armor::encode(&ct)));
    stanza.set_body(FALLBACK_BODY);
    Ok(())
}

/// A decrypted message.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use = "the body, and whether it was signed: check `signature`"]
pub struct Decrypted {
    /// The body text.
    pub body: String,
    /// The signature inside, verified against the sender's certificates; `None` when the
    /// message was not signed.
    pub signature: Option<Verified>,
}

/// The encrypted payload of a message (binary OpenPGP), if it has one.
pub fn payload(stanza: &Stanza) -> Result<Option<Vec<u8>>> {
    match stanza.element().only_child("x", ns::ENCRYPTED)? {
        Some(x) => Ok(Some(armor::decode(&x.text())?)),
        None => Ok(None),
    }
}

/// Decrypts a message's `jabber:x:encrypted` with `keys`; a signature inside must verify with
/// the certificates of the stanza's sender (bare `from`). The resource bounds of
/// [`openpgp::decrypt`] apply before anything is authenticated.
pub fn decrypt(
    stanza: &Stanza,
    keys: &dyn SecretKeyStore,
    certs: &dyn CertLookup,
    policy: &Policy,
    now: SystemTime,
) -> Result<Decrypted> {
    let ct = payload(stanza)?
        .ok_or_else(|| Error::Stanza("no <x xmlns='jabber:x:encrypted'/>".into()))?;
    let signers = match sender(stanza) {
        Ok(j) => certs.by_jid(j.bare()),
        Err(_) => Vec::new(),
    };
    let d = openpgp::decrypt(&ct, keys, &signers, policy, now)?;
    let body = String::from_utf8(d.plaintext)
        .map_err(|_| Error::Stanza("decrypted body is not UTF-8".into()))?;
    Ok(Decrypted {
        body,
        signature: d.signature,
    })
}
