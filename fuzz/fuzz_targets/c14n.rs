//! Exclusive c14n of the document root, with and without comments, with an InclusiveNamespaces
//! PrefixList picked by the first input byte (the rest is the document). Errors are fine, panics
//! are not. Canonical output must be UTF-8 and c14n must be idempotent on its own output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saml_core::c14n::{Options, canonicalize_element};

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
