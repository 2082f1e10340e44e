//! Issue 13 item 1: namespace handling in the reader and in exclusive c14n (with and without an
//! InclusiveNamespaces PrefixList) does work linear in the input, on the worst-case shapes the
//! review built: 61 nested elements with 64 `xmlns:pNNNN` declarations each, then 200 empty
//! leaves, as a Response (signature on an ID'd element, PrefixList chosen by the signer) and as
//! metadata (`VerifyOptions::metadata()`), inline and on the two-thread pipeline. The work is
//! COUNTED (`saml_core::xml::work`: bindings visited and hash probes on this thread, the
//! pipeline's second thread included), never timed. With the default limits such documents are
//! refused outright (`Limits::max_namespace_declarations`).
//! Work is counted only in builds with debug assertions (`saml_core::xml::work::ENABLED`), so
//! these tests are compiled there only (plain `cargo test`, as scripts/test.sh runs).
#![cfg(debug_assertions)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use saml_core::dsig::{self, Placement, SignOptions, Target, VerifyOptions};
use saml_core::xml::{Limits, Reader, work};
use saml_core::{Error, LimitExceeded, SignatureError, c14n};
use testkit::signer::TestKey;

const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

/// Limits that let the worst case through, so that the work it causes can be counted.
fn open_limits() -> Limits {
    {
        let mut o = Limits::default();
        o.max_namespace_declarations = 1 << 20;
        o
    }
}

/// `nest` nested elements, each declaring `decls` prefixes `pNNNN` (new URIs at every level),
/// then `leaves` empty leaves. `leaf` is the leaves' markup.
fn body(nest: usize, decls: usize, leaves: usize, leaf: &str) -> String {
    let mut s = String::new();
    for i in 0..nest {
        s.push_str("<p0000:e");
        for j in 0..decls {
            s.push_str(&format!(" xmlns:p{j:04}=\"urn:x:{i}:{j}\""));
        }
        s.push('>');
    }
    for _ in 0..leaves {
        s.push_str(leaf);
    }
    for _ in 0..nest {
        s.push_str("</p0000:e>");
    }
    s
}

fn prefix_list(n: usize) -> String {
    (0..n)
        .map(|j| format!("p{j:04}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn response(leaves: usize) -> String {
    format!(
        "<samlp:Response xmlns:samlp=\"{SAMLP}\" xmlns:saml=\"{SAML}\" ID=\"_r1\" Version=\"2.0\" \
         IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>https://idp.example.org</saml:Issuer>{}\
         </samlp:Response>",
        body(61, 64, leaves, "<p0000:l/>")
    )
}

fn metadata(leaves: usize) -> String {
    format!(
        "<md:EntitiesDescriptor xmlns:md=\"{MD}\" Name=\"urn:x\">{}</md:EntitiesDescriptor>",
        body(61, 64, leaves, "<p0000:l/>")
    )
}

fn sign(doc: &str, key: &TestKey, target: Target, placement: Placement, pl: &str) -> Vec<u8> {
    let opts = {
        let mut o = SignOptions::default();
        o.target = target;
        o.placement = placement;
        o.inclusive_prefixes = Some(pl.to_owned());
        o.limits = open_limits();
        o
    };
    dsig::sign(doc.as_bytes(), &key.signing(), &opts).expect("sign")
}

/// Runs `f` and returns the namespace work it did on this thread (and on the pipeline thread).
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let _ = work::take();
    let r = f();
    (r, work::take())
}

/// Changes the last level's binding of p0000 (used by every element name, so it is in the
/// canonical form), so the digest no longer matches: the unauthenticated case, where the whole
/// document is still canonicalized before the mismatch is found.
fn tamper(signed: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(signed.to_vec()).unwrap();
    assert!(s.contains("\"urn:x:60:0\""));
    s.replace("\"urn:x:60:0\"", "\"urn:y:60:0\"").into_bytes()
}

/// Work allowed per input byte. The fixed reader and canonicalizer do a small constant number of
/// units per declaration, attribute and element; the old ones rebuilt the whole effective scope
/// at every start tag (millions of units per byte here).
const UNITS_PER_BYTE: u64 = 1;

fn assert_linear(what: &str, doc_len: usize, work: u64) {
    eprintln!("{what}: {work} units of namespace work for {doc_len} bytes");
    assert!(
        work <= UNITS_PER_BYTE * doc_len as u64,
        "{what}: {work} units of namespace work for {doc_len} bytes"
    );
}

fn verify_all(doc: &[u8], key: &TestKey, base: &VerifyOptions) -> Vec<(Result<u64, Error>, u64)> {
    [None, Some(0)]
        .into_iter()
        .map(|parallel| {
            let opts = {
                let mut o = base.clone();
                o.parallel_min_size = parallel;
                o.limits = open_limits();
                o
            };
            counted(|| dsig::verify(doc, &key.trusted(), &opts).map(|v| v.canonical_len()))
        })
        .collect()
}

#[test]
fn response_with_prefix_list_verifies_with_linear_work() {
    let key = TestKey::rsa("idp");
    for pl in [prefix_list(1), prefix_list(8), prefix_list(64)] {
        let doc = response(200);
        let signed = sign(
            &doc,
            &key,
            Target::Id("_r1".into()),
            Placement::AfterIssuer,
            &pl,
        );
        for (r, w) in verify_all(&signed, &key, &VerifyOptions::protocol("_r1")) {
            assert!(r.is_ok(), "{r:?}");
            assert_linear("signed Response", signed.len(), w);
        }
        let bad = tamper(&signed);
        for (r, w) in verify_all(&bad, &key, &VerifyOptions::protocol("_r1")) {
            assert!(
                matches!(r, Err(Error::Signature(SignatureError::DigestMismatch))),
                "{r:?}"
            );
            assert_linear("tampered Response", bad.len(), w);
        }
    }
}

#[test]
fn metadata_with_prefix_list_verifies_with_linear_work() {
    let key = TestKey::rsa("fed");
    let doc = metadata(200);
    let signed = sign(
        &doc,
        &key,
        Target::Root,
        Placement::FirstChild,
        &prefix_list(8),
    );
    for (r, w) in verify_all(&signed, &key, &VerifyOptions::metadata()) {
        assert!(r.is_ok(), "{r:?}");
        assert_linear("signed metadata", signed.len(), w);
    }
    let bad = tamper(&signed);
    for (r, w) in verify_all(&bad, &key, &VerifyOptions::metadata()) {
        assert!(
            matches!(r, Err(Error::Signature(SignatureError::DigestMismatch))),
            "{r:?}"
        );
        assert_linear("tampered metadata", bad.len(), w);
    }
}

#[test]
fn work_per_byte_does_not_grow_with_the_scope() {
    // 61 levels of 16, 32 and 64 declarations (so 976, 1952 and 3904 bindings in scope at the
    // leaves): the bytes grow in proportion, and so may the work, no faster. The old code
    // rebuilt the effective scope at each start tag, so its work per byte grew with the scope.
    let key = TestKey::rsa("idp");
    let mut points = Vec::new();
    for decls in [16usize, 32, 64] {
        let doc = format!(
            "<samlp:Response xmlns:samlp=\"{SAMLP}\" xmlns:saml=\"{SAML}\" ID=\"_r1\" \
             Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>https://idp.example.org\
             </saml:Issuer>{}</samlp:Response>",
            body(61, decls, 200, "<p0000:l/>")
        );
        let signed = sign(
            &doc,
            &key,
            Target::Id("_r1".into()),
            Placement::AfterIssuer,
            &prefix_list(8),
        );
        for (r, w) in verify_all(&signed, &key, &VerifyOptions::protocol("_r1")) {
            assert!(r.is_ok(), "{r:?}");
            points.push((decls, signed.len() as u64, w));
        }
    }
    for (a, b) in points.iter().zip(points.iter().skip(2)) {
        let ((d0, l0, w0), (d1, l1, w1)) = (*a, *b);
        // w1 / l1 <= 1.1 * w0 / l0
        assert!(
            w1 * l0 * 10 <= w0 * l1 * 11,
            "work per byte grew: {w0}/{l0} ({d0} decls) -> {w1}/{l1} ({d1} decls)"
        );
    }
}

#[test]
fn lookups_without_a_prefix_list_do_not_scan_the_scope() {
    // A prefix bound at the root and used by every leaf, under 61 x 64 other bindings: each
    // lookup used to walk all of them (reader and canonicalizer alike).
    let doc = format!(
        "<a:r xmlns:a=\"urn:a\">{}</a:r>",
        body(61, 64, 2_000, "<a:l a:x=\"1\"/>")
    );
    let ((), w) = counted(|| {
        let mut r = Reader::new(doc.as_bytes(), open_limits()).expect("reader");
        while r.next().expect("event").is_some() {}
    });
    assert_linear("reader", doc.len(), w);
    let mut r = Reader::new(doc.as_bytes(), open_limits()).expect("reader");
    let (out, w) = counted(|| {
        c14n::canonicalize(&mut r, c14n::Options::default(), Vec::new(), |_| false).expect("c14n")
    });
    assert!(out.1 > 0);
    assert_linear("reader + c14n", doc.len(), w);
}

#[test]
fn the_worst_case_is_refused_with_default_limits() {
    for doc in [response(200), metadata(200)] {
        let mut r = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
        let err = loop {
            match r.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("accepted"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                err,
                Error::Limit {
                    limit: LimitExceeded::NamespaceDeclarations(_),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // And through verify (the limit is hit while reading, before any crypto).
    let key = TestKey::rsa("idp");
    let signed = sign(
        &response(200),
        &key,
        Target::Id("_r1".into()),
        Placement::AfterIssuer,
        &prefix_list(8),
    );
    let err = dsig::verify(&signed, &key.trusted(), &VerifyOptions::protocol("_r1")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                limit: LimitExceeded::NamespaceDeclarations(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_oversized_prefix_list_is_refused() {
    let key = TestKey::rsa("idp");
    let doc = format!(
        "<samlp:Response xmlns:samlp=\"{SAMLP}\" xmlns:saml=\"{SAML}\" ID=\"_r1\" Version=\"2.0\" \
         IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer>https://idp.example.org</saml:Issuer>\
         <saml:x/></samlp:Response>"
    );
    let pl = prefix_list(c14n::MAX_INCLUSIVE_PREFIXES + 1);
    let opts = {
        let mut o = SignOptions::default();
        o.target = Target::Id("_r1".into());
        o.placement = Placement::AfterIssuer;
        o.inclusive_prefixes = Some(pl);
        o
    };
    // The signer refuses to make one, and the verifier refuses one made by hand.
    assert!(dsig::sign(doc.as_bytes(), &key.signing(), &opts).is_err());
    let ok = sign(
        &doc,
        &key,
        Target::Id("_r1".into()),
        Placement::AfterIssuer,
        "p0000",
    );
    let long = String::from_utf8(ok).unwrap().replace(
        "PrefixList=\"p0000\"",
        &format!(
            "PrefixList=\"{}\"",
            prefix_list(c14n::MAX_INCLUSIVE_PREFIXES + 1)
        ),
    );
    let err = dsig::verify(
        long.as_bytes(),
        &key.trusted(),
        &VerifyOptions::protocol("_r1"),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Signature(SignatureError::Transforms(_))),
        "{err:?}"
    );
}

#[test]
fn crossing_the_index_threshold_costs_constant_work_per_element() {
    // Bindings on the root, then leaves whose own declarations take the scope past 16 (the most
    // that lookups scan) and back: the reader keeps a prefix index only above that size, and
    // no leaf may make it rebuild the index for the bindings already in scope. 16 on the root
    // and one on each leaf, and 8 and 9 (down to where the index is given up). The work per
    // byte must not grow with the number of leaves, reader and canonicalizer alike.
    for (on_root, on_leaf) in [(16usize, 1usize), (8, 9)] {
        let root: String = (0..on_root)
            .map(|j| format!(" xmlns:p{j:02}=\"urn:x:{j}\""))
            .collect();
        let leaf: String = (0..on_leaf)
            .map(|j| format!(" xmlns:z{j:02}=\"urn:z:{j}\""))
            .collect();
        let mut per_byte = Vec::new();
        for leaves in [2_000usize, 8_000] {
            let doc = format!(
                "<p00:r{root}>{}</p00:r>",
                format!("<p00:l{leaf} z00:a=\"1\"/>").repeat(leaves)
            );
            let ((), w) = counted(|| {
                let mut r = Reader::new(doc.as_bytes(), open_limits()).expect("reader");
                while r.next().expect("event").is_some() {}
            });
            assert_linear("reader", doc.len(), w);
            let mut r = Reader::new(doc.as_bytes(), open_limits()).expect("reader");
            let (out, wc) = counted(|| {
                c14n::canonicalize(&mut r, c14n::Options::default(), Vec::new(), |_| false)
                    .expect("c14n")
            });
            assert!(out.1 > 0);
            assert_linear("reader + c14n", doc.len(), wc);
            per_byte.push((w + wc) as f64 / doc.len() as f64);
        }
        assert!(
            per_byte[1] <= per_byte[0] * 1.05,
            "{on_root}+{on_leaf}: work per byte grew with the leaves: {per_byte:?}"
        );
    }
}
