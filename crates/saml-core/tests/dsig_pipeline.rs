//! The two-thread digest pipeline used for large documents gives exactly the verdicts and
//! canonical lengths of the single-thread path (forced on small documents here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use saml_core::dsig::{self, SignOptions, TrustedKeys, VerifyOptions};
use saml_core::{Error, SignatureError};
use testkit::metadata::small_aggregate as aggregate;
use testkit::metadata::{VERIFIABLE, data, pinned_signer};
use testkit::signer::TestKey;

fn both(
    doc: &[u8],
    keys: &TrustedKeys,
    base: VerifyOptions,
) -> (Result<u64, String>, Result<u64, String>) {
    let run = |parallel| {
        let opts = {
            let mut o = base.clone();
            o.parallel_min_size = parallel;
            o
        };
        dsig::verify(doc, keys, &opts)
            .map(|v| v.canonical_len())
            .map_err(|e| e.to_string())
    };
    (run(None), run(Some(0)))
}

#[test]
fn piped_and_inline_agree() {
    let key = TestKey::rsa("k");
    for prefixes in [None, Some("md mdui #default"), Some("shibmd")] {
        let opts = {
            let mut o = SignOptions::default();
            o.inclusive_prefixes = prefixes.map(str::to_owned);
            o
        };
        let signed = dsig::sign(aggregate().as_bytes(), &key.signing(), &opts).expect("sign");
        let (inline, piped) = both(&signed, &key.trusted(), VerifyOptions::metadata());
        assert!(inline.is_ok(), "{inline:?}");
        assert_eq!(inline, piped, "{prefixes:?}");
        let tampered = String::from_utf8(signed)
            .unwrap()
            .replace("example.org</shibmd:Scope>", "evil.example</shibmd:Scope>");
        let (inline, piped) = both(
            tampered.as_bytes(),
            &key.trusted(),
            VerifyOptions::metadata(),
        );
        assert_eq!(
            inline,
            Err(Error::from(SignatureError::DigestMismatch).to_string())
        );
        assert_eq!(inline, piped);
    }
    for case in VERIFIABLE {
        let doc = data(case.file);
        let keys = pinned_signer(&doc, case.sha256);
        let (inline, piped) = both(&doc, &keys, VerifyOptions::metadata().legacy());
        assert!(inline.is_ok(), "{}: {inline:?}", case.file);
        assert_eq!(inline, piped, "{}", case.file);
    }
}

#[test]
fn pipeline_with_many_batches() {
    // Thousands of entities (about 56,000 events), so the pipeline passes many full batches
    // of 4096 events and recycles them.
    let key = TestKey::rsa("k");
    let entity = r#"<md:EntityDescriptor entityID="https://sp.example.net/N"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.net/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#;
    let mut body = String::new();
    for i in 0..8000 {
        body.push_str(&entity.replace("/N", &format!("/{i}")));
        body.push('\n');
    }
    let doc = aggregate().replace(
        "</md:EntitiesDescriptor>",
        &format!("{body}</md:EntitiesDescriptor>"),
    );
    let signed = dsig::sign(doc.as_bytes(), &key.signing(), &SignOptions::default()).expect("sign");
    let (inline, piped) = both(&signed, &key.trusted(), VerifyOptions::metadata());
    assert!(inline.as_ref().is_ok_and(|n| *n > 1_000_000), "{inline:?}");
    assert_eq!(inline, piped);
    let late = String::from_utf8(signed)
        .unwrap()
        .replace("https://sp.example.net/7999", "https://sp.example.net/x");
    let (inline, piped) = both(late.as_bytes(), &key.trusted(), VerifyOptions::metadata());
    assert!(inline.is_err());
    assert_eq!(inline, piped);
}

#[test]
fn document_checks_agree_in_both_modes() {
    let key = TestKey::rsa("k");
    let signed = String::from_utf8(
        dsig::sign(
            aggregate().as_bytes(),
            &key.signing(),
            &SignOptions::default(),
        )
        .unwrap(),
    )
    .unwrap();
    let control = signed.replacen(
        "example.org</shibmd:Scope>",
        "example.org\u{1}</shibmd:Scope>",
        1,
    );
    let mut not_utf8 = signed.clone().into_bytes();
    let at = signed.find("Université").unwrap() + 7;
    not_utf8[at] = 0xFF;
    // A control character late in a document whose reading fails early: the whole-document
    // character check (on a helper thread while a large document is read) still decides the
    // error, as when it ran before the reading.
    let early_error = signed
        .replacen(
            "<md:EntityDescriptor",
            "<md:EntityDescriptor x=\"1\" x=\"2\"",
            1,
        )
        .replacen(
            "</md:EntitiesDescriptor>",
            "\u{1}</md:EntitiesDescriptor>",
            1,
        );
    let (inline, piped) = both(
        early_error.as_bytes(),
        &key.trusted(),
        VerifyOptions::metadata(),
    );
    let at = early_error.find('\u{1}').unwrap();
    assert_eq!(
        inline,
        Err(format!(
            "malformed XML at byte {at}: character U+0001 is not allowed in XML"
        ))
    );
    assert_eq!(inline, piped);
    for doc in [
        control.as_bytes(),
        &not_utf8[..],
        "\u{feff}\u{feff}<r/>".as_bytes(),
    ] {
        let (inline, piped) = both(doc, &key.trusted(), VerifyOptions::metadata());
        assert!(
            inline
                .as_ref()
                .is_err_and(|e| e.starts_with("malformed XML at byte")),
            "{inline:?}"
        );
        assert_eq!(inline, piped);
    }
}
