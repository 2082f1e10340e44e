//! Where certificates and secret keys come from.
//!
//! [`CertLookup`] finds the certificates of a signer, by key handle (what an OpenPGP signature
//! names) and by bare JID (who the stanza says sent it: verification only uses certificates
//! bound to the sender's JID, so a valid signature by someone else's key is refused, which
//! XEP-0027 itself never checks). [`Keyring`] implements it in memory, loaded from
//! certificates or from an OpenPGP keyring file (binary or armored, e.g. `gpg --export`);
//! an LDAP directory or a PKI's key publisher plugs in by implementing the trait.
//!
//! A certificate is bound to a JID by pinning: [`Keyring::bind`] or [`Keyring::insert_pinned`]
//! with the fingerprint the user, the administrator or the PKI vouches for (the default, and
//! the only way for a GnuPG key whose User ID is a name and e-mail address). Binding from the
//! certificate's own `xmpp:juliet@example.org` User IDs (XEP-0373 §4.1) is an explicit choice,
//! [`Keyring::insert_binding_user_ids`]: only User IDs with a valid self-signature under the
//! policy, not revoked, on a certificate that is neither revoked nor expired, bind, and even
//! then anyone can make a certificate naming any JID, so it is trust on first use, for
//! keyrings whose certificates come from a source that already vouches for them. Such bindings
//! are judged again whenever an update of the certificate is merged in (any `insert`), as of
//! the later of the first judgement and the update's newest signature: a User ID revoked since
//! (a retired JID) stops binding; pins stay. A plain [`Keyring::insert`] binds nothing new.
//! A JID with a pin is spoken for by its pinned certificates only: a certificate whose User ID
//! names a pinned JID does not speak for it (review of the eighth round, I4; it was added to
//! the pins).
//!
//! [`SecretKeyStore`] hands out decryption keys; [`Identity`] is one's own JID and certificate
//! with its secret keys, used to sign and decrypt.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use openpgp::cert::prelude::*;
use openpgp::crypto::KeyPair;
use openpgp::packet::Key;
use openpgp::packet::key::{SecretParts, UnspecifiedRole};
use openpgp::parse::Parse;
use openpgp::types::KeyFlags;
use openpgp::{Cert, Fingerprint, KeyHandle, KeyID};
use sequoia_openpgp as openpgp;

use crate::error::pgp_msg;
use crate::jid::Jid;
use crate::policy::Policy;
use crate::{Error, Result};

/// Finds certificates for verification and encryption.
pub trait CertLookup {
    /// Certificates containing a key with this handle (fingerprint or key ID).
    fn by_handle(&self, handle: &KeyHandle) -> Vec<Cert>;
    /// Certificates bound to this bare JID.
    fn by_jid(&self, bare_jid: &str) -> Vec<Cert>;
}

/// Hands out secret keys for decryption.
pub trait SecretKeyStore {
    /// Unencrypted secret keys that may decrypt a session key addressed to `recipient`
    /// (`None`: an anonymous recipient, so every decryption key is a candidate), with the
    /// fingerprint of the certificate each belongs to. Only keys whose binding is valid under
    /// `policy` at `now` and whose key flags allow encryption (transport or storage): a
    /// signing-only or certification-only key must never decrypt. Expired keys may be
    /// returned (messages encrypted before the expiry still decrypt).
    fn decryption_keys(
        &self,
        recipient: Option<&KeyHandle>,
        policy: &Policy,
        now: SystemTime,
    ) -> Vec<(Fingerprint, Key<SecretParts, UnspecifiedRole>)>;
}

/// An in-memory set of certificates (with or without secret keys), indexed by key and JID.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    certs: HashMap<Fingerprint, Cert>,
    by_keyid: HashMap<KeyID, Vec<Fingerprint>>,
    /// Pinned: [`Keyring::bind`], [`Keyring::insert_pinned`].
    by_jid: HashMap<String, Vec<Fingerprint>>,
    /// From `xmpp:` User IDs, per certificate: judged again whenever the certificate changes.
    user_id_bindings: HashMap<Fingerprint, UserIdBinding>,
    /// The same, by JID.
    by_user_id: HashMap<String, Vec<Fingerprint>>,
}

/// How a certificate's User IDs were judged to bind ([`xmpp_user_ids`]), and what they bound.
#[derive(Clone, Debug)]
struct UserIdBinding {
    policy: Policy,
    at: SystemTime,
    jids: Vec<String>,
}

/// The creation time of the newest self-signature or self-revocation on a certificate (of its
/// primary key, User IDs and subkeys): when its holder last said something about it.
/// Third-party certifications and revocations do not count: sequoia keeps them unverified
/// (anyone can append one dated 2106 to a copy of the certificate, which moved the judgement
/// of its User IDs past its expiry for good: review of the eighth round, K2).
fn newest_signature(cert: &Cert) -> Option<SystemTime> {
    let primary = cert.primary_key().bundle();
    primary
        .self_signatures()
        .chain(primary.self_revocations())
        .chain(cert.userids().flat_map(|u| {
            let b = u.bundle();
            b.self_signatures().chain(b.self_revocations())
        }))
        .chain(cert.keys().subkeys().flat_map(|k| {
            let b = k.bundle();
            b.self_signatures().chain(b.self_revocations())
        }))
        .filter_map(|s| s.signature_creation_time())
        .max()
}

/// The bare JIDs named by a certificate's `xmpp:` User IDs (XEP-0373 §4.1) that are valid
/// under `policy` at `now`: a User ID with a valid self-signature, not revoked, on a
/// certificate that is itself valid, alive and not revoked. User ID packets without a
/// self-signature (anyone can append one to a copy of a certificate) name nobody.
pub fn xmpp_user_ids(cert: &Cert, policy: &Policy, now: SystemTime) -> Vec<Jid> {
    use openpgp::types::RevocationStatus;
    let Ok(vc) = cert.with_policy(policy.openpgp(), Some(now)) else {
        return Vec::new();
    };
    if vc.alive().is_err() || matches!(vc.revocation_status(), RevocationStatus::Revoked(_)) {
        return Vec::new();
    }
    let mut out: Vec<Jid> = Vec::new();
    // A set beside the list: a list search per User ID was quadratic in them (review C5).
    let mut seen = std::collections::HashSet::new();
    for u in vc.userids().revoked(false) {
        let Some(j) = std::str::from_utf8(u.userid().value())
            .ok()
            .and_then(|v| v.strip_prefix("xmpp:"))
            .and_then(|v| Jid::new(v).ok())
            .map(|j| j.to_bare())
        else {
            continue;
        };
        if seen.insert(j.bare().to_owned()) {
            out.push(j);
        }
    }
    out
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Reads every certificate of an OpenPGP keyring (binary or armored, several
    /// certificates concatenated, as `gpg --export` writes it). No JID is bound: pin them
    /// with [`Keyring::bind`].
    pub fn from_bytes(data: &[u8]) -> Result<Keyring> {
        let mut k = Keyring::new();
        for c in CertParser::from_bytes(data).map_err(|e| Error::OpenPgp(pgp_msg(&e)))? {
            k.insert(c.map_err(|e| Error::OpenPgp(pgp_msg(&e)))?);
        }
        Ok(k)
    }

    /// Reads a keyring file (see [`Keyring::from_bytes`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Keyring> {
        Keyring::from_bytes(&std::fs::read(path)?)
    }

    /// Adds a certificate (merged with what is known under its fingerprint). It is bound to
    /// no JID: pin it with [`Keyring::bind`], or use [`Keyring::insert_pinned`] or
    /// [`Keyring::insert_binding_user_ids`].
    pub fn insert(&mut self, cert: Cert) {
        self.insert_merged(cert);
    }

    /// Adds a certificate and pins it to `jid` (the caller vouches that this fingerprint is
    /// this JID's key: out of band, from an administrator, from a PKI).
    pub fn insert_pinned(&mut self, jid: &Jid, cert: Cert) {
        let fpr = self.insert_merged(cert);
        self.bind_fpr(jid.bare(), &fpr);
    }

    /// Adds a certificate and binds it to the JIDs of its `xmpp:` User IDs that are valid
    /// under `policy` at `now` ([`xmpp_user_ids`]); returns them. Anyone can make a
    /// certificate with any User ID: use this only for certificates from a source that already
    /// vouches for them (a directory, a PKI's key publisher), never for a key a peer sent.
    ///
    /// What binds is what `cert` itself names (the source's word), judged on the certificate
    /// merged with what the keyring held (a revocation merged in earlier still counts): a
    /// User ID that only an earlier plain [`Keyring::insert`] brought in does not bind when
    /// the directory's copy is inserted again (second review of the eighth round, N1).
    pub fn insert_binding_user_ids(
        &mut self,
        cert: Cert,
        policy: &Policy,
        now: SystemTime,
    ) -> Vec<Jid> {
        let at = newest_signature(&cert).map_or(now, |t| t.max(now));
        // A certificate over the bounds vouches for nothing (review of the twelfth round, F1).
        let vouched: Vec<String> = if crate::policy::check_cert(&cert).is_ok() {
            xmpp_user_ids(&cert, policy, at)
                .iter()
                .map(|j| j.bare().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        let fpr = self.insert_merged(cert);
        self.bind_from_user_ids(&fpr, policy, now, Some(&vouched))
    }

    /// (Re)judges the User IDs of the certificate `fpr` under `policy` at `now` (or at its
    /// newest signature, if later: a User ID revoked since is revoked now), replacing what
    /// they bound before; returns the JIDs bound. With `within`, only those JIDs may stay
    /// bound: a re-judgement after a merge removes, it never adds (a plain insert binds
    /// nothing new).
    fn bind_from_user_ids(
        &mut self,
        fpr: &Fingerprint,
        policy: &Policy,
        now: SystemTime,
        within: Option<&[String]>,
    ) -> Vec<Jid> {
        let Some(cert) = self.certs.get(fpr) else {
            return Vec::new();
        };
        let at = newest_signature(cert).map_or(now, |t| t.max(now));
        // A certificate over the bounds binds nothing: its User IDs' self-signatures are not
        // verified with its key (review of the twelfth round, F1).
        let mut jids = if crate::policy::check_cert(cert).is_ok() {
            xmpp_user_ids(cert, policy, at)
        } else {
            Vec::new()
        };
        if let Some(keep) = within {
            jids.retain(|j| keep.iter().any(|k| k == j.bare()));
        }
        if let Some(old) = self.user_id_bindings.remove(fpr) {
            for j in old.jids {
                if let Some(v) = self.by_user_id.get_mut(&j) {
                    v.retain(|f| f != fpr);
                    if v.is_empty() {
                        self.by_user_id.remove(&j);
                    }
                }
            }
        }
        for j in &jids {
            let v = self.by_user_id.entry(j.bare().to_owned()).or_default();
            if !v.contains(fpr) {
                v.push(fpr.clone());
            }
        }
        self.user_id_bindings.insert(
            fpr.clone(),
            UserIdBinding {
                policy: policy.clone(),
                at,
                jids: jids.iter().map(|j| j.bare().to_owned()).collect(),
            },
        );
        jids
    }

    /// Binds every certificate of the keyring to the JIDs of its valid `xmpp:` User IDs (see
    /// [`Keyring::insert_binding_user_ids`], whose warning applies to the whole keyring);
    /// returns the bindings made.
    pub fn bind_user_ids(&mut self, policy: &Policy, now: SystemTime) -> Vec<(Jid, Fingerprint)> {
        let fprs: Vec<Fingerprint> = self.certs.keys().cloned().collect();
        let mut found = Vec::new();
        for fpr in fprs {
            for j in self.bind_from_user_ids(&fpr, policy, now, None) {
                found.push((j, fpr.clone()));
            }
        }
        found
    }

    fn insert_merged(&mut self, cert: Cert) -> Fingerprint {
        let fpr = cert.fingerprint();
        let cert = match self.certs.remove(&fpr) {
            Some(old) => old.merge_public_and_secret(cert.clone()).unwrap_or(cert),
            None => cert,
        };
        for ka in cert.keys() {
            let ids = self.by_keyid.entry(ka.key().keyid()).or_default();
            if !ids.contains(&fpr) {
                ids.push(fpr.clone());
            }
        }
        self.certs.insert(fpr.clone(), cert);
        // What its User IDs bound is judged again on the merged certificate (a User ID
        // revoked in the update no longer binds; xep0027 review F7), and only that: a User ID
        // added by the update binds through an explicit `insert_binding_user_ids` or
        // `bind_user_ids` only (review of the eighth round, K1: the holder of a bound
        // certificate self-signed `xmpp:ceo@...` and a plain insert bound it).
        if let Some(b) = self.user_id_bindings.get(&fpr).cloned() {
            self.bind_from_user_ids(&fpr, &b.policy, b.at, Some(&b.jids));
        }
        fpr
    }

    /// Binds a known certificate to a JID (the PKI or the administrator says this key is this
    /// JID's). Fails when the fingerprint is unknown.
    pub fn bind(&mut self, jid: &Jid, fingerprint: &Fingerprint) -> Result<()> {
        if !self.certs.contains_key(fingerprint) {
            return Err(Error::Key(format!(
                "no certificate {fingerprint} in the keyring"
            )));
        }
        self.bind_fpr(jid.bare(), fingerprint);
        Ok(())
    }

    fn bind_fpr(&mut self, bare: &str, fpr: &Fingerprint) {
        let v = self.by_jid.entry(bare.to_owned()).or_default();
        if !v.contains(fpr) {
            v.push(fpr.clone());
        }
    }

    /// A certificate by fingerprint.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&Cert> {
        self.certs.get(fingerprint)
    }

    /// How many certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

impl CertLookup for Keyring {
    fn by_handle(&self, handle: &KeyHandle) -> Vec<Cert> {
        let id = KeyID::from(handle);
        self.by_keyid
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|f| self.certs.get(f))
            .filter(|c| c.keys().any(|k| k.key().key_handle().aliases(handle)))
            .cloned()
            .collect()
    }

    fn by_jid(&self, bare_jid: &str) -> Vec<Cert> {
        // The pins when there are any: what the user or administrator vouches for is not
        // joined by certificates that merely name the JID.
        let bound = match self.by_jid.get(bare_jid) {
            Some(pinned) if !pinned.is_empty() => pinned,
            _ => match self.by_user_id.get(bare_jid) {
                Some(named) => named,
                None => return Vec::new(),
            },
        };
        bound
            .iter()
            .filter_map(|f| self.certs.get(f))
            .cloned()
            .collect()
    }
}

fn secret_keys_of(
    cert: &Cert,
    recipient: Option<&KeyHandle>,
    policy: &Policy,
    now: SystemTime,
) -> Vec<(Fingerprint, Key<SecretParts, UnspecifiedRole>)> {
    cert.keys()
        .with_policy(policy.openpgp(), Some(now))
        .supported()
        .key_flags(
            KeyFlags::empty()
                .set_transport_encryption()
                .set_storage_encryption(),
        )
        .secret()
        .filter(|k| recipient.is_none_or(|r| k.key().key_handle().aliases(r)))
        .filter(|k| !k.key().secret().is_encrypted())
        .map(|k| {
            (
                cert.fingerprint(),
                k.key()
                    .clone()
                    .parts_into_secret()
                    .map(|k| k.role_into_unspecified()),
            )
        })
        .filter_map(|(f, k)| k.ok().map(|k| (f, k)))
        .collect()
}

impl SecretKeyStore for Keyring {
    fn decryption_keys(
        &self,
        recipient: Option<&KeyHandle>,
        policy: &Policy,
        now: SystemTime,
    ) -> Vec<(Fingerprint, Key<SecretParts, UnspecifiedRole>)> {
        match recipient {
            Some(r) => self
                .by_handle(r)
                .iter()
                .flat_map(|c| secret_keys_of(c, Some(r), policy, now))
                .collect(),
            None => self
                .certs
                .values()
                .flat_map(|c| secret_keys_of(c, None, policy, now))
                .collect(),
        }
    }
}

/// Parses one certificate (binary or armored, with or without secret keys).
pub fn cert_from_bytes(data: &[u8]) -> Result<Cert> {
    Cert::from_bytes(data).map_err(|e| Error::OpenPgp(pgp_msg(&e)))
}

/// Serializes a certificate's public parts (binary), as `gpg --export` writes them.
pub fn cert_to_bytes(cert: &Cert) -> Result<Vec<u8>> {
    use openpgp::serialize::SerializeInto as _;
    cert.to_vec().map_err(|e| Error::OpenPgp(pgp_msg(&e)))
}

/// One's own JID and certificate with its (unencrypted) secret keys.
#[derive(Clone, Debug)]
pub struct Identity {
    jid: Jid,
    cert: Cert,
}

/// Which key algorithms [`Identity::generate`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Suite {
    /// Ed25519 signing, Curve25519 (ECDH) encryption: small and fast (the default).
    Cv25519,
    /// NIST P-256 (ECDSA signing, ECDH encryption): for PKIs that require NIST curves.
    P256,
    /// RSA-3072 (for PKIs that require RSA).
    Rsa3k,
    /// RSA-2048.
    Rsa2k,
}

impl Identity {
    /// One's identity from a certificate with secret keys (the JID need not be in a User ID:
    /// a PKI may bind it). Secret keys must be unprotected: this crate asks for no
    /// passphrase, so a certificate whose secret keys are all passphrase-protected (as
    /// `gpg --export-secret-keys` of an ordinary key gives), or GnuPG stubs, is refused with
    /// an [`Error::Key`] that says so (review session 26, X8: it was accepted, then signing
    /// and decryption failed with unrelated errors).
    pub fn new(jid: Jid, cert: Cert) -> Result<Identity> {
        crate::policy::check_cert(&cert)?;
        if !cert.is_tsk() {
            return Err(Error::Key(format!(
                "certificate {} has no secret keys",
                cert.fingerprint()
            )));
        }
        if cert
            .keys()
            .secret()
            .all(|k| k.key().secret().is_encrypted())
        {
            return Err(Error::Key(format!(
                "the secret keys of {} are passphrase-protected (or GnuPG stubs): remove the \
                 passphrase or export an unprotected copy (this crate asks for no passphrase)",
                cert.fingerprint()
            )));
        }
        // An unprotected primary with protected subkeys (review X8's rest) was accepted, then
        // signing or decryption failed when first used. A role (signing, encryption) whose
        // keys usable now, under the most permissive policy this crate has, are all
        // passphrase-protected is refused; GnuPG stubs (a key kept offline on purpose, as
        // `gpg --export-secret-subkeys` writes) are not a reason, nor expired or revoked keys
        // (review H3: they made an old unprotected subkey hide a new protected one).
        let legacy = Policy::legacy_sha1_era();
        let signing = KeyFlags::empty().set_signing();
        let encryption = KeyFlags::empty()
            .set_transport_encryption()
            .set_storage_encryption();
        for (what, flags) in [("signing", signing), ("encryption", encryption)] {
            let (mut usable, mut protected) = (false, false);
            for k in cert
                .keys()
                .with_policy(legacy.openpgp(), None)
                .supported()
                .alive()
                .revoked(false)
                .key_flags(flags)
                .secret()
            {
                match k.key().secret() {
                    openpgp::packet::key::SecretKeyMaterial::Encrypted(e) => {
                        protected |=
                            !matches!(e.s2k(), openpgp::crypto::S2K::Private { tag: 101, .. });
                    }
                    openpgp::packet::key::SecretKeyMaterial::Unencrypted(_) => usable = true,
                }
            }
            if protected && !usable {
                return Err(Error::Key(format!(
                    "the {what} secret keys of {} are passphrase-protected: remove the \
                     passphrase or export an unprotected copy (this crate asks for no \
                     passphrase)",
                    cert.fingerprint()
                )));
            }
        }
        Ok(Identity {
            jid: jid.to_bare(),
            cert,
        })
    }

    /// A new certificate for `jid` with the User ID `xmpp:<bare JID>`, a certification-only
    /// primary key, and signing and encryption subkeys, created one minute before `now` (so
    /// that it is valid for signatures made at `now` despite clock skew), valid for `validity`.
    /// Key material comes from sequoia's OpenSSL backend.
    pub fn generate(
        jid: &Jid,
        suite: Suite,
        now: SystemTime,
        validity: Option<Duration>,
    ) -> Result<Identity> {
        let cs = match suite {
            Suite::Cv25519 => CipherSuite::Cv25519,
            Suite::P256 => CipherSuite::P256,
            Suite::Rsa3k => CipherSuite::RSA3k,
            Suite::Rsa2k => CipherSuite::RSA2k,
        };
        let (cert, _rev) = CertBuilder::new()
            .set_cipher_suite(cs)
            .set_creation_time(now - Duration::from_secs(60))
            .set_validity_period(validity)
            .add_userid(format!("xmpp:{}", jid.bare()))
            .add_signing_subkey()
            .add_subkey(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
                None,
                None,
            )
            .generate()
            .map_err(|e| Error::Key(pgp_msg(&e)))?;
        Identity::new(jid.clone(), cert)
    }

    /// One's identity from a transferable secret key (binary or armored, e.g. `gpg
    /// --export-secret-keys`).
    pub fn from_bytes(jid: &Jid, tsk: &[u8]) -> Result<Identity> {
        Identity::new(jid.clone(), cert_from_bytes(tsk)?)
    }

    /// The transferable secret key (binary), as `gpg --import` reads it.
    pub fn to_secret_bytes(&self) -> Result<Vec<u8>> {
        use openpgp::serialize::SerializeInto as _;
        self.cert
            .as_tsk()
            .to_vec()
            .map_err(|e| Error::OpenPgp(pgp_msg(&e)))
    }

    /// The bare JID.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The certificate with secret keys.
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The certificate without secret keys: what to publish.
    pub fn public_cert(&self) -> Cert {
        self.cert.clone().strip_secret_key_material()
    }

    /// The fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// A signing key pair valid under `policy` at `now`.
    pub fn signer(&self, policy: &Policy, now: SystemTime) -> Result<KeyPair> {
        let ka = self
            .cert
            .keys()
            .with_policy(policy.openpgp(), Some(now))
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .secret()
            .find(|k| !k.key().secret().is_encrypted())
            .ok_or_else(|| {
                Error::Key(format!(
                    "no usable unencrypted signing key in {} at this time",
                    self.cert.fingerprint()
                ))
            })?;
        ka.key()
            .clone()
            .into_keypair()
            .map_err(|e| Error::Key(pgp_msg(&e)))
    }
}

impl SecretKeyStore for Identity {
    fn decryption_keys(
        &self,
        recipient: Option<&KeyHandle>,
        policy: &Policy,
        now: SystemTime,
    ) -> Vec<(Fingerprint, Key<SecretParts, UnspecifiedRole>)> {
        secret_keys_of(&self.cert, recipient, policy, now)
    }
}

/// Issue 12 item 4: which User IDs bind a key to a JID.
#[cfg(test)]
mod binding_tests {
    use super::*;
    use openpgp::Packet;
    use openpgp::cert::UserIDRevocationBuilder;
    use openpgp::packet::UserID;
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::types::{ReasonForRevocation, SignatureType};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
    }

    fn id(name: &str) -> Identity {
        Identity::generate(
            &Jid::new(&format!("{name}@example.org")).unwrap(),
            Suite::Cv25519,
            now(),
            None,
        )
        .unwrap()
    }

    fn primary_signer(i: &Identity) -> KeyPair {
        i.cert()
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap()
    }

    fn jids(ring: &Keyring, jid: &str) -> Vec<Fingerprint> {
        ring.by_jid(jid).iter().map(|c| c.fingerprint()).collect()
    }

    /// `cert` with the secret of its one subkey alive now with `flags` passphrase-protected.
    fn protect_subkey(cert: Cert, flags: KeyFlags) -> Cert {
        let pw = openpgp::crypto::Password::from("correct horse");
        let standard = openpgp::policy::StandardPolicy::new();
        let protected: Vec<Packet> = cert
            .keys()
            .subkeys()
            .with_policy(&standard, None)
            .alive()
            .key_flags(flags)
            .secret()
            .map(|k| {
                k.key()
                    .clone()
                    .encrypt_secret(&pw)
                    .unwrap()
                    .role_into_subordinate()
                    .into()
            })
            .collect();
        assert_eq!(protected.len(), 1);
        cert.insert_packets(protected).unwrap().0
    }

    /// Review X8's rest: a certificate whose primary secret is unprotected and whose signing
    /// or encryption subkey's secret is passphrase-protected was accepted, then failed when
    /// first used ("no usable unencrypted signing key", "decryption failed"). It is refused
    /// up front, saying which keys and why.
    #[test]
    fn protected_subkeys_behind_an_unprotected_primary_are_refused() {
        for (which, flags) in [
            ("signing", KeyFlags::empty().set_signing()),
            ("encryption", KeyFlags::empty().set_transport_encryption()),
        ] {
            let cert = protect_subkey(id("alice").cert().clone(), flags);
            assert!(
                cert.keys()
                    .secret()
                    .any(|k| k.key().fingerprint() == cert.fingerprint()
                        && !k.key().secret().is_encrypted())
            );
            let Err(e) = Identity::new(Jid::new("alice@example.org").unwrap(), cert) else {
                panic!("{which}: accepted");
            };
            assert!(
                e.to_string()
                    .contains(&format!("the {which} secret keys of")),
                "{e}"
            );
        }
        // Unprotected throughout: accepted.
        let cert = id("alice").cert().clone();
        assert!(Identity::new(Jid::new("alice@example.org").unwrap(), cert).is_ok());

        // Review H3: an expired unprotected signing subkey beside the current protected one
        // hid it (accepted, then "no usable unencrypted signing key").
        let created = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let (cert, _) = CertBuilder::new()
            .set_creation_time(created)
            .add_userid("xmpp:alice@example.org")
            .add_subkey(
                KeyFlags::empty().set_signing(),
                Some(Duration::from_secs(86_400)),
                None,
            )
            .add_signing_subkey()
            .generate()
            .unwrap();
        let cert = protect_subkey(cert, KeyFlags::empty().set_signing());
        let Err(e) = Identity::new(Jid::new("alice@example.org").unwrap(), cert) else {
            panic!("an expired unprotected subkey hid the protected one");
        };
        assert!(e.to_string().contains("the signing secret keys of"), "{e}");
    }

    #[test]
    fn insert_binds_nothing_and_pinning_binds_what_it_says() {
        let (alice, mallory) = (id("alice"), id("mallory"));
        // mallory's own certificate, self-signed, naming alice's JID: a look-alike.
        let (lookalike, _) = CertBuilder::new()
            .set_creation_time(now() - Duration::from_secs(60))
            .add_userid("xmpp:alice@example.org")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let mut ring = Keyring::new();
        ring.insert(alice.public_cert());
        ring.insert(lookalike.clone());
        ring.insert(mallory.public_cert());
        assert!(jids(&ring, "alice@example.org").is_empty());
        ring.bind(alice.jid(), &alice.fingerprint()).unwrap();
        assert_eq!(jids(&ring, "alice@example.org"), vec![alice.fingerprint()]);
        let mut pinned = Keyring::new();
        pinned.insert_pinned(alice.jid(), alice.public_cert());
        pinned.insert(lookalike);
        assert_eq!(
            jids(&pinned, "alice@example.org"),
            vec![alice.fingerprint()]
        );
    }

    #[test]
    fn only_valid_self_signed_user_ids_bind() {
        let p = Policy::standard();
        let (alice, mallory) = (id("alice"), id("mallory"));
        let cert = alice.public_cert();
        // A bare User ID packet appended to alice's certificate (no signature at all), and
        // one certified by mallory only (a third-party certification, not a self-signature).
        let bare = UserID::from("xmpp:bare@example.org");
        let third = UserID::from("xmpp:third@example.org");
        let cert_sig = SignatureBuilder::new(SignatureType::GenericCertification)
            .set_signature_creation_time(now())
            .unwrap()
            .sign_userid_binding(
                &mut primary_signer(&mallory),
                cert.primary_key().key(),
                &third,
            )
            .unwrap();
        let (cert, _) = cert
            .insert_packets(vec![
                Packet::from(bare),
                Packet::from(third),
                Packet::from(cert_sig),
            ])
            .unwrap();
        assert_eq!(cert.userids().count(), 3);
        let bound: Vec<String> = xmpp_user_ids(&cert, &p, now())
            .iter()
            .map(|j| j.bare().to_owned())
            .collect();
        assert_eq!(bound, vec!["alice@example.org".to_owned()]);
        let mut ring = Keyring::new();
        ring.insert_binding_user_ids(cert, &p, now());
        assert!(jids(&ring, "bare@example.org").is_empty());
        assert!(jids(&ring, "third@example.org").is_empty());
        assert_eq!(jids(&ring, "alice@example.org"), vec![alice.fingerprint()]);
    }

    #[test]
    fn revoked_user_ids_and_certificates_do_not_bind() {
        let p = Policy::standard();
        let (cert, revocation) = CertBuilder::new()
            .set_creation_time(now() - Duration::from_secs(60))
            .add_userid("xmpp:kept@example.org")
            .add_userid("xmpp:retired@example.org")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let i = Identity::new(Jid::new("kept@example.org").unwrap(), cert.clone()).unwrap();
        let retired = cert
            .userids()
            .find(|u| u.userid().value() == b"xmpp:retired@example.org")
            .unwrap()
            .userid()
            .clone();
        let rev = UserIDRevocationBuilder::new()
            .set_signature_creation_time(now())
            .unwrap()
            .set_reason_for_revocation(ReasonForRevocation::UIDRetired, b"moved")
            .unwrap()
            .build(&mut primary_signer(&i), &cert, &retired, None)
            .unwrap();
        let (cert, _) = cert.insert_packets(rev).unwrap();
        let bound: Vec<String> = xmpp_user_ids(&cert, &p, now() + Duration::from_secs(1))
            .iter()
            .map(|j| j.bare().to_owned())
            .collect();
        assert_eq!(bound, vec!["kept@example.org".to_owned()]);
        // The whole certificate revoked: nothing binds.
        let (revoked, _) = cert.insert_packets(revocation).unwrap();
        assert!(xmpp_user_ids(&revoked, &p, now() + Duration::from_secs(1)).is_empty());
    }

    /// Finding F7 of the xep0027 review: bindings from User IDs were made once; a later
    /// update of the certificate revoking a User ID (a retired, reassigned JID) left the old
    /// key speaking for it. They are judged again on every merge; pins stay.
    #[test]
    fn a_user_id_revoked_later_unbinds() {
        let p = Policy::standard();
        let (cert, _) = CertBuilder::new()
            .set_creation_time(now() - Duration::from_secs(60))
            .add_userid("xmpp:kept@example.org")
            .add_userid("xmpp:retired@example.org")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let mut ring = Keyring::new();
        let bound = ring.insert_binding_user_ids(cert.clone(), &p, now());
        assert_eq!(bound.len(), 2);
        let fpr = cert.fingerprint();
        ring.bind(&Jid::new("pinned@example.org").unwrap(), &fpr)
            .unwrap();
        assert_eq!(jids(&ring, "retired@example.org"), vec![fpr.clone()]);
        let i = Identity::new(Jid::new("kept@example.org").unwrap(), cert.clone()).unwrap();
        let retired = cert
            .userids()
            .find(|u| u.userid().value() == b"xmpp:retired@example.org")
            .unwrap()
            .userid()
            .clone();
        let rev = UserIDRevocationBuilder::new()
            .set_signature_creation_time(now() + Duration::from_secs(3600))
            .unwrap()
            .set_reason_for_revocation(ReasonForRevocation::UIDRetired, b"moved")
            .unwrap()
            .build(&mut primary_signer(&i), &cert, &retired, None)
            .unwrap();
        let (update, _) = cert
            .strip_secret_key_material()
            .insert_packets(rev)
            .unwrap();
        ring.insert(update);
        assert!(jids(&ring, "retired@example.org").is_empty());
        assert_eq!(jids(&ring, "kept@example.org"), vec![fpr.clone()]);
        assert_eq!(jids(&ring, "pinned@example.org"), vec![fpr]);
    }

    /// Review of the eighth round, I4: a certificate whose User ID names a pinned JID was
    /// returned with the pinned one, so it spoke for that JID too.
    #[test]
    fn a_pinned_jid_is_spoken_for_by_its_pins_only() {
        let p = Policy::standard();
        let alice = id("alice");
        let (lookalike, _) = CertBuilder::new()
            .set_creation_time(now() - Duration::from_secs(60))
            .add_userid("xmpp:alice@example.org")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let mut ring = Keyring::new();
        ring.insert_pinned(alice.jid(), alice.public_cert());
        ring.insert_binding_user_ids(lookalike.clone(), &p, now());
        assert_eq!(jids(&ring, "alice@example.org"), vec![alice.fingerprint()]);
        // Without a pin, the User-ID binding speaks for it.
        let mut open = Keyring::new();
        open.insert_binding_user_ids(lookalike.clone(), &p, now());
        assert_eq!(
            jids(&open, "alice@example.org"),
            vec![lookalike.fingerprint()]
        );
    }

    /// Review of the eighth round, K1: the re-judgement on merge also added bindings, so the
    /// holder of a certificate bound through its User IDs self-signed a new `xmpp:` User ID
    /// and a plain `insert` of that update bound it (in a room, her messages then opened as
    /// sent by that JID). A merge now only removes; the new User ID binds when the caller
    /// asks for User-ID bindings again.
    #[test]
    fn a_plain_insert_binds_no_new_user_id() {
        let p = Policy::standard();
        let mallory = id("mallory");
        let mut ring = Keyring::new();
        ring.insert_binding_user_ids(mallory.public_cert(), &p, now());
        assert_eq!(
            jids(&ring, "mallory@example.org"),
            vec![mallory.fingerprint()]
        );
        let ceo = UserID::from("xmpp:ceo@example.org");
        let cert = mallory.public_cert();
        let sig = ceo
            .bind(
                &mut primary_signer(&mallory),
                &cert,
                SignatureBuilder::new(SignatureType::PositiveCertification)
                    .set_signature_creation_time(now() + Duration::from_secs(60))
                    .unwrap(),
            )
            .unwrap();
        let (update, _) = cert
            .insert_packets(vec![Packet::from(ceo), Packet::from(sig)])
            .unwrap();
        ring.insert(update.clone());
        assert!(jids(&ring, "ceo@example.org").is_empty());
        assert_eq!(
            jids(&ring, "mallory@example.org"),
            vec![mallory.fingerprint()]
        );
        // The directory's copy (without the new User ID) inserted again: the User ID the
        // plain insert brought in still binds nothing (second review, N1).
        ring.insert_binding_user_ids(mallory.public_cert(), &p, now() + Duration::from_secs(120));
        assert!(jids(&ring, "ceo@example.org").is_empty());
        assert_eq!(
            jids(&ring, "mallory@example.org"),
            vec![mallory.fingerprint()]
        );
        // The directory's copy naming it: it binds.
        ring.insert_binding_user_ids(update, &p, now() + Duration::from_secs(120));
        assert_eq!(jids(&ring, "ceo@example.org"), vec![mallory.fingerprint()]);
    }

    /// Review of the eighth round, K2: a third-party certification dated far ahead (anyone can
    /// append one; sequoia keeps it unverified) moved the time the User IDs were judged at past
    /// the certificate's expiry, and every binding went for good.
    #[test]
    fn a_third_party_signature_does_not_move_the_judgement() {
        let p = Policy::standard();
        let (cert, _) = CertBuilder::new()
            .set_creation_time(now() - Duration::from_secs(60))
            .set_validity_period(Duration::from_secs(365 * 86_400))
            .add_userid("xmpp:alice@example.org")
            .add_signing_subkey()
            .generate()
            .unwrap();
        let mut ring = Keyring::new();
        ring.insert_binding_user_ids(cert.clone(), &p, now());
        let fpr = cert.fingerprint();
        assert_eq!(jids(&ring, "alice@example.org"), vec![fpr.clone()]);
        let mallory = id("mallory");
        let uid = cert.userids().next().unwrap().userid().clone();
        let far = SignatureBuilder::new(SignatureType::GenericCertification)
            .set_signature_creation_time(now() + Duration::from_secs(50 * 365 * 86_400))
            .unwrap()
            .sign_userid_binding(
                &mut primary_signer(&mallory),
                cert.primary_key().key(),
                &uid,
            )
            .unwrap();
        let (update, _) = cert
            .strip_secret_key_material()
            .insert_packets(vec![Packet::from(far)])
            .unwrap();
        ring.insert(update);
        assert_eq!(jids(&ring, "alice@example.org"), vec![fpr]);
    }
}
