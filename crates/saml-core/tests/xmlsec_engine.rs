//! Differential test of the two engines (feature `xmlsec`): on the same corpus, our engine and
//! libxmlsec1 reach the same verdict wherever our structural rules let a document through, and
//! both refuse what the rules refuse. Raw libxmlsec1 is also shown accepting a wrapping attack,
//! which is why it is never the only check.
#![cfg(feature = "xmlsec")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use openssl::nid::Nid;
use saml_core::dsig::{self, SignOptions, TrustedKeys, VerifyOptions, verify_with_xmlsec};
use saml_core::{Error, SignatureError};
use testkit::metadata::small_aggregate as aggregate;
use testkit::metadata::{VERIFIABLE, data, pinned_signer};
use testkit::signer::TestKey;

fn crypto_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Signature(SignatureError::DigestMismatch | SignatureError::NotTrusted)
    )
}

fn same_verdict(what: &str, doc: &[u8], keys: &TrustedKeys, opts: &VerifyOptions) -> bool {
    let ours = dsig::verify(doc, keys, opts);
    let theirs = verify_with_xmlsec(doc, keys, opts);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.key_index(), b.key_index(), "{what}");
            assert_eq!(a.signed_range(), b.signed_range(), "{what}");
            true
        }
        // libxmlsec1 does not say whether the digest or the signature value failed.
        (Err(a), Err(b)) if crypto_failure(a) && crypto_failure(b) => false,
        (Err(a), Err(b)) => {
            assert_eq!(
                a.to_string(),
                b.to_string(),
                "{what}: structural rejections differ"
            );
            false
        }
        _ => panic!("{what}: engines disagree: ours {ours:?}, libxmlsec1 {theirs:?}"),
    }
}

#[test]
fn engines_agree_on_real_world_metadata() {
    for case in VERIFIABLE {
        let doc = data(case.file);
        let keys = pinned_signer(&doc, case.sha256);
        let opts = if case.legacy {
            VerifyOptions::metadata().legacy()
        } else {
            VerifyOptions::metadata()
        };
        assert!(
            same_verdict(case.file, &doc, &keys, &opts),
            "{} should verify",
            case.file
        );
    }
    let invalid = data("switch-aaitest-2008-signed.invalid.xml");
    let keys = pinned_signer(&invalid, VERIFIABLE[5].sha256);
    assert!(!same_verdict(
        "invalid twin",
        &invalid,
        &keys,
        &VerifyOptions::metadata().legacy()
    ));
}

#[test]
fn engines_agree_on_our_signatures_tampering_and_attacks() {
    let rsa = TestKey::rsa("rsa");
    let ec = TestKey::ec(Nid::X9_62_PRIME256V1, "ec");
    let mut both = TrustedKeys::new();
    both.add_certificate(&rsa.cert).expect("rsa");
    both.add_certificate(&ec.cert).expect("ec");
    let opts = VerifyOptions::metadata();
    for key in [&rsa, &ec] {
        let signed = String::from_utf8(
            dsig::sign(
                aggregate().as_bytes(),
                &key.signing(),
                &SignOptions::default(),
            )
            .expect("sign"),
        )
        .expect("utf8");
        assert!(same_verdict("signed", signed.as_bytes(), &both, &opts));
        let cases = [
            (
                "tampered text",
                signed.replace("Example Université", "Example University"),
            ),
            (
                "tampered attribute",
                signed.replace("https://sp.example.net/acs", "https://evil.example/acs"),
            ),
            (
                "appended entity",
                signed.replace(
                    "</md:EntitiesDescriptor>",
                    "<md:EntityDescriptor entityID=\"x:y\"/></md:EntitiesDescriptor>",
                ),
            ),
            (
                "object",
                signed.replace(
                    "</ds:KeyInfo></ds:Signature>",
                    "</ds:KeyInfo><ds:Object/></ds:Signature>",
                ),
            ),
            (
                "wrapped",
                format!(
                    "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\">{}</md:EntitiesDescriptor>",
                    signed.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                ),
            ),
            ("duplicate id", signed.replace("ID=\"_e2\"", "ID=\"_e1\"")),
            (
                "comment in digest",
                signed.replacen("<ds:DigestValue>", "<ds:DigestValue><!---->", 1),
            ),
        ];
        for (what, doc) in cases {
            assert!(
                !same_verdict(what, doc.as_bytes(), &both, &opts),
                "{what} must not verify"
            );
        }
        let other = TestKey::rsa("other");
        assert!(!same_verdict(
            "other key",
            signed.as_bytes(),
            &other.trusted(),
            &opts
        ));
        // A genuine signature whose KeyInfo carries another certificate: both engines refuse
        // it the same way (KeyInfoMismatch, a structural verdict, compared by message).
        let b64 = |k: &TestKey| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(k.cert.to_der().expect("der"))
        };
        let claimed = signed.replace(&b64(key), &b64(&other));
        assert_ne!(claimed, signed);
        assert!(!same_verdict(
            "KeyInfo names another certificate",
            claimed.as_bytes(),
            &both,
            &opts
        ));
        assert!(matches!(
            verify_with_xmlsec(claimed.as_bytes(), &both, &opts),
            Err(Error::Signature(SignatureError::KeyInfoMismatch))
        ));
    }
}

#[test]
fn raw_libxmlsec1_accepts_a_wrapped_aggregate() {
    use xmlsec::{XmlSecDocumentExt, XmlSecKey, XmlSecKeyFormat, XmlSecSignatureContext};
    let key = TestKey::rsa("rsa");
    let signed = String::from_utf8(
        dsig::sign(
            aggregate().as_bytes(),
            &key.signing(),
            &SignOptions::default(),
        )
        .expect("sign"),
    )
    .expect("utf8");
    let wrapped = format!(
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"><md:EntityDescriptor entityID=\"https://evil.example\"/>{}</md:EntitiesDescriptor>",
        signed.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
    );
    let doc = libxml::parser::Parser::default()
        .parse_string(&wrapped)
        .expect("libxml");
    doc.specify_idattr("//*[@ID]", "ID", None).expect("ids");
    let mut ctx = XmlSecSignatureContext::new();
    ctx.insert_key(
        XmlSecKey::from_memory(&key.cert_pem(), XmlSecKeyFormat::CertPem, None).expect("key"),
    );
    assert!(
        ctx.verify_document(&doc).expect("verify"),
        "libxmlsec1 behaviour changed"
    );
    assert!(matches!(
        verify_with_xmlsec(
            wrapped.as_bytes(),
            &key.trusted(),
            &VerifyOptions::metadata()
        ),
        Err(Error::Signature(SignatureError::Missing))
    ));
}
