//! `jabber:x:signed` (XEP-0027 §3 presence, §4 messages): a detached OpenPGP signature over the
//! exact UTF-8 bytes of the `<status/>` text (presence) or the `<body/>` text (message), the
//! empty string when there is none.
//!
//! Unlike XEP-0027 as deployed, [`verify`] only accepts a signature by a certificate bound to
//! the stanza's sender (its bare `from` JID, see [`crate::keys`]). The signature covers only
//! the text: for the sender, recipient, stanza id and time, add a signed
//! [`crate::envelope`].

use std::time::SystemTime;

use crate::armor;
use crate::error::UnknownSigner;
use crate::keys::{CertLookup, Identity};
use crate::ns;
use crate::openpgp::{self, SigMode, Verified};
use crate::policy::Policy;
use crate::stanza::{Element, Kind, Stanza, sender};
use crate::{Error, Result};

/// The text XEP-0027 signs in this stanza: the status (presence) or body (message) text, the
/// empty string when absent. A stanza with several (one per language) is refused
/// ([`crate::Error::Stanza`]), by [`sign`] and [`verify`] alike: the others would travel
/// unsigned next to a good signature (review session 26, X9).
pub fn signed_text(stanza: &Stanza) -> Result<String> {
    let t = match stanza.kind() {
        Kind::Presence => stanza.only_status()?,
        Kind::Message => stanza.only_body()?,
    };
    Ok(t.unwrap_or_default())
}

/// Signs the stanza's text (binary signature, made at `now`) and puts the stripped armor in
/// `<x xmlns='jabber:x:signed'/>`, replacing any earlier one.
pub fn sign(stanza: &mut Stanza, me: &Identity, policy: &Policy, now: SystemTime) -> Result<()> {
    sign_with(stanza, me, SigMode::Binary, policy, now)
}

/// [`sign`] with a chosen signature mode. Text starting with
/// `urn:xmpp-federation:xep0027:` (how this crate's own signed data starts) is refused
/// ([`Error::Stanza`]; review session 26, X1).
pub fn sign_with(
    stanza: &mut Stanza,
    me: &Identity,
    mode: SigMode,
    policy: &Policy,
    now: SystemTime,
) -> Result<()> {
    let text = signed_text(stanza)?;
    refuse_label_prefix(&text)?;
    let sig = openpgp::sign_detached(me.signer(policy, now)?, text.as_bytes(), mode, now)?;
    let el = stanza.element_mut();
    el.remove_children("x", ns::SIGNED);
    el.push(Element::new("x", ns::SIGNED).with_text(&armor::encode(&sig)));
    Ok(())
}

/// Refuses to sign, as XEP-0027 text, text that starts like this crate's own signed byte
/// strings ([`ns::LABEL_PREFIX`]): a module made to sign such a text (an echo, an error
/// quoting its input) would otherwise hand out a signature over bytes of another purpose
/// (review session 26, X1, defence in depth; the envelope's purpose notation is the fix).
pub(crate) fn refuse_label_prefix(text: &str) -> Result<()> {
    if text.starts_with(ns::LABEL_PREFIX) {
        return Err(Error::Stanza(format!(
            "text starting with {:?} is not signed: it could pass for this crate's own \
             signed data",
            ns::LABEL_PREFIX
        )));
    }
    Ok(())
}

/// Verifies the stanza's `jabber:x:signed` signature with the certificates bound to its
/// sender, as of `now`.
pub fn verify(
    stanza: &Stanza,
    certs: &dyn CertLookup,
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified> {
    let x = stanza
        .element()
        .required_child("x", ns::SIGNED, "<x xmlns='jabber:x:signed'/>")?;
    let sig = armor::decode(&x.text())?;
    let from = sender(stanza)?;
    let signers = certs.by_jid(from.bare());
    if signers.is_empty() {
        return Err(Error::UnknownSigner(UnknownSigner::Jid(from.to_string())));
    }
    let text = signed_text(stanza)?;
    openpgp::verify_detached(&sig, text.as_bytes(), &signers, policy, now)
}
