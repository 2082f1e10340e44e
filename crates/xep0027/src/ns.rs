//! Every XML namespace (and signing label) this crate reads or writes, in one place.
//!
//! This module depends on nothing, so every other module may use it: the namespaces of the
//! session and room extensions are here rather than in [`crate::session`] and
//! [`crate::room`], which lets [`crate::envelope`] recognise their payloads without
//! depending on the modules that use the envelope.

/// The stanza namespace of client streams (RFC 6120 §4.8.3).
pub const CLIENT: &str = "jabber:client";
/// The stanza namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// The stanza namespace of XEP-0114 component streams.
pub const COMPONENT: &str = "jabber:component:accept";
/// The namespace bound to the `xml` prefix (XML Namespaces §3).
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// XEP-0027 signatures (`<x xmlns='jabber:x:signed'/>`).
pub const SIGNED: &str = "jabber:x:signed";
/// XEP-0027 encrypted messages (`<x xmlns='jabber:x:encrypted'/>`).
pub const ENCRYPTED: &str = "jabber:x:encrypted";
/// XHTML-IM bodies (XEP-0071, `<html xmlns='http://jabber.org/protocol/xhtml-im'/>`): a
/// formatted copy of the `<body/>`, which sealing refuses to leave in clear.
pub const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";
/// This crate's signed envelope ([`crate::envelope`]).
pub const ENVELOPE: &str = "urn:xmpp-federation:xep0027:envelope:0";
/// This crate's session keys and sealed messages ([`crate::session`]).
pub const SESSION: &str = "urn:xmpp-federation:xep0027:session:0";
/// This crate's room keys and sealed room messages ([`crate::room`]).
pub const ROOM: &str = "urn:xmpp-federation:xep0027:room:0";

/// The OpenPGP notation that marks an envelope signature (review session 26, X1): a
/// hashed, critical Notation Data subpacket (RFC 9580 §5.2.3.24) `PURPOSE` = `ENVELOPE`.
/// The labels below separate this crate's signed byte strings from each other, but not
/// from XEP-0027 signatures, which cover any text a sender may be made to sign; the
/// notation does.
pub(crate) mod notation {
    /// The notation's name.
    pub(crate) const PURPOSE: &str = "purpose@xmpp-federation.invalid";
    /// Its value on an envelope signature.
    pub(crate) const ENVELOPE: &str = "urn:xmpp-federation:xep0027:envelope:0";
    /// Its value on the signature inside a key record (a session key offer, a room key):
    /// review session 26, X1's rest.
    pub(crate) const RECORD: &str = "urn:xmpp-federation:xep0027:record:0";
}

/// The prefix of every label below: text that starts with it is never signed as XEP-0027
/// text (`jabber:x:signed`, or inside `jabber:x:encrypted`), as it could pass for one of
/// this crate's signed byte strings (review session 26, X1, defence in depth).
pub(crate) const LABEL_PREFIX: &str = "urn:xmpp-federation:xep0027:";

/// The labels that start the byte strings this crate signs or authenticates (see
/// `canonical`); each names what the bytes are, so that no signature or tag made for one
/// of this crate's purposes is valid for another of them. They do not separate an
/// envelope signature from a XEP-0027 signature over text equal to its bytes: the
/// envelope's OpenPGP notation ([`notation`]) does.
pub(crate) mod label {
    /// An envelope's signed bytes.
    pub(crate) const ENVELOPE: &str = "urn:xmpp-federation:xep0027:envelope:0";
    /// A session key offer's record.
    pub(crate) const SESSION_KEY: &str = "urn:xmpp-federation:xep0027:session-key:0";
    /// A sealed session message's associated data.
    pub(crate) const SESSION_MESSAGE: &str = "urn:xmpp-federation:xep0027:session-message:0";
    /// A room key distribution's record.
    pub(crate) const ROOM_KEY: &str = "urn:xmpp-federation:xep0027:room-key:0";
    /// A sealed room message's associated data.
    pub(crate) const ROOM_MESSAGE: &str = "urn:xmpp-federation:xep0027:room-message:0";
}
