//! Exclusive c14n of the document root, with and without comments, with an InclusiveNamespaces
//! PrefixList picked by the first input byte (the rest is the document). Errors are fine, panics
//! are not. Canonical output must be UTF-8 and c14n must be idempotent on its own output.
//!
//! The root's content is also signed in pieces (`dsig::StreamingSigner`, one piece per child
//! element and per run of text between them) and whole (`dsig::sign`), with the same
//! PrefixList: whenever `sign` signs, the streamed signature must be made and its digest must be
//! the same (the signature values differ: the fuzz key is ECDSA).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use saml_core::c14n::{Options, canonicalize_element};
use saml_core::dsig::{self, SignOptions, SigningKey, StreamingSigner};
use saml_core::xml::{Event, Limits, Reader};

fn key() -> &'static SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| saml_fuzz::signing_key().expect("test key"))
}

/// The text of the first `<ds:DigestValue>`.
fn digest_value(signed: &str) -> Option<&str> {
    let from = signed.find("<ds:DigestValue>")? + "<ds:DigestValue>".len();
    let to = signed[from..].find('<')? + from;
    Some(&signed[from..to])
}

/// `doc` signed whole and in pieces: the same digest.
fn streamed_matches_whole(doc: &[u8], prefixes: &str) {
    let mut opts = SignOptions::default();
    if !prefixes.is_empty() {
        opts.inclusive_prefixes = Some(prefixes.to_owned());
    }
    let Ok(whole) = dsig::sign(doc, key(), &opts) else {
        return;
    };
    let whole = String::from_utf8(whole).expect("signed output is UTF-8");
    // The root's start tag, its content cut at its children, where its end tag starts.
    let Ok(mut reader) = Reader::new(doc, Limits::default()) else {
        return;
    };
    let (mut start_tag, mut cuts, mut end) = (None, Vec::new(), None);
    while let Ok(Some(ev)) = reader.next() {
        match ev {
            Event::Start(s) if s.depth == 1 => start_tag = Some(s.span.clone()),
            Event::Start(s) if s.depth == 2 => cuts.push(s.span.start),
            Event::End(e) if e.depth == 2 => cuts.push(e.span.end),
            Event::End(e) if e.depth == 1 => end = Some(e.span.start),
            _ => {}
        }
    }
    let (Some(start_tag), Some(end)) = (start_tag, end) else {
        panic!("sign signed a document without a root");
    };
    let text = std::str::from_utf8(doc).expect("a signed document is UTF-8");
    let mut signer = StreamingSigner::new(&text[start_tag.clone()], key(), &opts)
        .unwrap_or_else(|e| panic!("sign took this start tag, the streaming signer not: {e}"));
    let mut at = start_tag.end;
    for cut in cuts.into_iter().chain([end]) {
        if cut > at {
            signer
                .content(&doc[at..cut])
                .unwrap_or_else(|e| panic!("piece {:?} refused: {e}", &text[at..cut]));
            at = cut;
        }
    }
    let streamed = signer.finish().expect("finish");
    assert_eq!(
        digest_value(&streamed),
        digest_value(&whole),
        "streamed and whole digests differ"
    );
}

/// PrefixLists to pick from; `#default` is the default namespace.
const PREFIX_LISTS: &[&str] = &[
    "",
    "#default",
    "md",
    "ds saml",
    "#default md ds",
    "xs xsi",
    "a b c",
    "xml",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, doc)) = data.split_first() else {
        return;
    };
    let prefixes = PREFIX_LISTS[usize::from(selector) % PREFIX_LISTS.len()];
    // Bit 3 omits the root's first-level children named `Signature` (as enveloped-signature
    // does), to exercise the subtree skipping.
    let omit_signature = selector & 0x08 != 0;
    streamed_matches_whole(doc, prefixes);
    for with_comments in [false, true] {
        let opts = {
            let mut o = Options::default();
            o.with_comments = with_comments;
            o
        }
        .with_prefix_list(prefixes);
        let out = canonicalize_element(
            doc,
            opts.clone(),
            |s| s.depth == 1,
            |s| omit_signature && s.depth == 2 && s.name.local == "Signature",
        );
        let Ok(out) = out else { continue };
        assert!(
            std::str::from_utf8(&out).is_ok(),
            "canonical form is not UTF-8"
        );
        // The canonical form is a well-formed element. Canonicalizing it again must not fail
        // for a reason other than limits, and must give the same bytes.
        if !omit_signature {
            match canonicalize_element(&out, opts, |s| s.depth == 1, |_| false) {
                Ok(again) => assert!(
                    again == out,
                    "c14n not idempotent:\n first: {:?}\nsecond: {:?}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&again)
                ),
                Err(e) => panic!(
                    "canonical output rejected by the reader: {e}\noutput: {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
    }
});
