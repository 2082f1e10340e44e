//! Shared fixture of the `verify` fuzz target and the `make_seed` example: the test signing key
//! and the SAML metadata document it signs.

use saml_core::Error;
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::xml::{Event, Reader};

/// A P-256 test key, generated once with
/// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve`.
/// Fixed rather than generated per run so that the signed seeds in `seeds/verify` verify in every
/// fuzzing process and crashes reproduce. Test material only: it signs nothing but fuzz inputs.
pub const KEY_PEM: &[u8] = include_bytes!("../keys/p256-test-key.pem");

/// The entityID of [`DOC`]; the `verify` target splices its input in place of it.
pub const ENTITY_ID: &str = "https://sp.example.org";

/// The document that is signed (and the only content the test key ever signs).
pub const DOC: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" entityID="https://sp.example.org" ID="_e1">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="en">Example SP &amp; Co</mdui:DisplayName></mdui:UIInfo></md:Extensions>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#;

/// The signing key from [`KEY_PEM`].
pub fn signing_key() -> Result<SigningKey, Error> {
    SigningKey::from_pem(KEY_PEM, None)
}

/// Trusted keys holding the public half of `key`.
pub fn trusted_keys(key: &SigningKey) -> Result<TrustedKeys, Error> {
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key()?, "fuzz test key")?;
    Ok(keys)
}

/// What a consumer of the verified content sees, independent of how it was written: element
/// names by namespace, attributes sorted with normalized values, text runs (comments neither
/// kept nor splitting text). Two documents whose signed elements have the same exclusive
/// canonical form (without comments) have the same fingerprint.
pub fn fingerprint(reader: &mut Reader<'_>) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut text = String::new();
    while let Some(ev) = reader.next()? {
        match ev {
            Event::Text(t) => text.push_str(&t.value()),
            Event::Comment(_) => {}
            other => {
                if !text.is_empty() {
                    out.push(format!("text {text:?}"));
                    text.clear();
                }
                match other {
                    Event::Start(s) => {
                        let mut attrs: Vec<String> = s
                            .attributes
                            .iter()
                            .map(|a| format!("{{{}}}{}={:?}", a.namespace, a.name.local, a.value()))
                            .collect();
                        attrs.sort();
                        out.push(format!(
                            "start {{{}}}{} {attrs:?}",
                            s.namespace, s.name.local
                        ));
                    }
                    Event::End(e) => out.push(format!("end {}", e.name.local)),
                    Event::Text(_) | Event::Comment(_) => {}
                }
            }
        }
    }
    if !text.is_empty() {
        out.push(format!("text {text:?}"));
    }
    Ok(out)
}

/// The only AuthnRequest the test key signs (seeds of the `redirect` target, with RelayState
/// `state`).
pub fn fuzz_request() -> saml_core::protocol::AuthnRequest {
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let mut req = saml_core::protocol::AuthnRequest::new(
        "_fuzz-request".into(),
        "https://sp.example.org",
        now,
    );
    req.acs_url = Some("https://sp.example.org/acs".into());
    req
}

/// The fixture of the `xep0027_stanza` target and the `make_xep0027_seeds` example: two test
/// identities with fixed keys (so that signed seeds verify in every fuzzing process), a room,
/// and the fixed time everything is signed and checked at.
pub mod xep0027_fixture {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use xep0027::jid::Jid;
    use xep0027::keys::{Identity, Keyring};

    /// alice@example.org's transferable secret key (Cv25519, test material only).
    pub const ALICE: &[u8] = include_bytes!("../keys/xep0027-alice.asc");
    /// bob@example.org's transferable secret key (Cv25519, test material only).
    pub const BOB: &[u8] = include_bytes!("../keys/xep0027-bob.asc");
    /// The room of the room-key seeds.
    pub const ROOM: &str = "ops@rooms.example.org";

    /// 2026-12-01T00:00:00Z: when the seeds were made and when the target checks them.
    pub fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_083_200)
    }

    /// alice, bob, and a keyring with both public certificates.
    pub fn world() -> Result<(Identity, Identity, Keyring), xep0027::Error> {
        let alice = Identity::from_bytes(&Jid::new("alice@example.org")?, ALICE)?;
        let bob = Identity::from_bytes(&Jid::new("bob@example.org")?, BOB)?;
        let mut k = Keyring::new();
        k.insert_pinned(alice.jid(), alice.public_cert());
        k.insert_pinned(bob.jid(), bob.public_cert());
        Ok((alice, bob, k))
    }
}
