//! Signature verification of untrusted documents under `VerifyOptions::metadata()`, against a
//! trusted P-256 key.
//!
//! Two paths per input: the input as a whole document, and (when it is UTF-8) the input spliced
//! raw into the entityID of a document signed once at start-up, which gets past parsing and
//! signature structure checks into the digest. Errors are fine, panics are not. Whenever
//! verification succeeds the verified content must be what the key signed (same fingerprint as
//! the signed fixture): the key signs nothing else, so anything different is a forgery or a
//! wrapping bug.
//!
//! Every document is verified twice: inline, and through the two-stage pipeline that real
//! documents only take from `parallel_min_size` (4 MiB) on, forced here with a threshold of 0.
//! Both must agree on the outcome and, on success, on what was verified.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use saml_core::dsig::{self, SignOptions, TrustedKeys, VerifyOptions};
use saml_fuzz::{DOC, ENTITY_ID, fingerprint, signing_key, trusted_keys};

struct Fixture {
    keys: TrustedKeys,
    /// `VerifyOptions::metadata()` with everything on the calling thread.
    opts: VerifyOptions,
    /// The same with the two-stage pipeline for every document size.
    parallel: VerifyOptions,
    /// The signed document split around its entityID value.
    before: String,
    after: String,
    /// Fingerprint of the signed content.
    expected: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = signing_key().expect("test key");
        let keys = trusted_keys(&key).expect("trusted keys");
        let opts = {
            let mut o = VerifyOptions::metadata();
            o.parallel_min_size = None;
            o
        };
        let parallel = {
            let mut o = VerifyOptions::metadata();
            o.parallel_min_size = Some(0);
            o
        };
        let signed = dsig::sign(DOC.as_bytes(), &key, &SignOptions::default()).expect("sign");
        let signed = String::from_utf8(signed).expect("signed document is UTF-8");
        let verified = dsig::verify(signed.as_bytes(), &keys, &opts).expect("fixture verifies");
        dsig::verify(signed.as_bytes(), &keys, &parallel).expect("fixture verifies (pipeline)");
        let expected =
            fingerprint(&mut verified.events().expect("events")).expect("fixture events");
        let needle = format!("entityID=\"{ENTITY_ID}\"");
        let at = signed
            .find(&needle)
            .expect("entityID in the signed document")
            + "entityID=\"".len();
        Fixture {
            keys,
            opts,
            parallel,
            before: signed[..at].to_owned(),
            after: signed[at + ENTITY_ID.len()..].to_owned(),
            expected,
        }
    })
}

fn check(f: &Fixture, doc: &[u8]) {
    let inline = dsig::verify(doc, &f.keys, &f.opts);
    let piped = dsig::verify(doc, &f.keys, &f.parallel);
    let verified = match (inline, piped) {
        (Err(e), Err(_)) => {
            let _ = e.to_string();
            return;
        }
        (Ok(a), Ok(b)) => {
            assert_eq!(
                a.signed_range(),
                b.signed_range(),
                "inline and pipeline disagree"
            );
            assert_eq!(
                a.signature_range(),
                b.signature_range(),
                "inline and pipeline disagree"
            );
            assert_eq!(
                a.canonical_len(),
                b.canonical_len(),
                "inline and pipeline disagree"
            );
            a
        }
        (a, b) => panic!(
            "inline and pipelined verification disagree: inline {:?}, pipeline {:?}",
            a.map(|v| v.signed_range()).map_err(|e| e.to_string()),
            b.map(|v| v.signed_range()).map_err(|e| e.to_string()),
        ),
    };
    // The accessors must be consistent with the document.
    let signed = verified.signed_range();
    let sig = verified.signature_range();
    assert!(
        signed.end <= doc.len(),
        "signed range {signed:?} outside the document"
    );
    assert!(
        signed.start < sig.start && sig.end <= signed.end,
        "signature {sig:?} not inside the signed element {signed:?}"
    );
    assert_eq!(verified.signed_xml().len(), signed.len());
    assert_eq!(verified.key_index(), 0);
    let mut events = verified.events().expect("events of a verified document");
    let got = fingerprint(&mut events).expect("verified content reads");
    assert!(
        got == f.expected,
        "verification succeeded but the content is not what was signed\n got: {got:#?}\nwant: {:#?}",
        f.expected
    );
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    check(f, data);
    if let Ok(s) = std::str::from_utf8(data) {
        let doc = format!("{}{s}{}", f.before, f.after);
        check(f, doc.as_bytes());
    }
});
