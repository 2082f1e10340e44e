//! Byte-for-byte agreement of our exclusive c14n with the W3C / xmlsec / santuario vectors
//! (tests/data/xmldsig, see PROVENANCE.md and DERIVED.md there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use saml_core::c14n::{Options, canonicalize_element};
use saml_core::dsig::DSIG_NS;
use saml_core::xml::StartElement;

fn data(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/data/xmldsig/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn c14n(
    doc: &[u8],
    opts: Options,
    select: impl FnMut(&StartElement<'_, '_>) -> bool,
    omit: impl FnMut(&StartElement<'_, '_>) -> bool,
) -> String {
    let out = canonicalize_element(doc, opts, select, omit).expect("canonicalize");
    String::from_utf8(out).expect("utf-8")
}

fn assert_same(ours: &str, expected: &[u8], what: &str) {
    let expected = std::str::from_utf8(expected).expect("utf-8");
    assert_eq!(ours, expected, "{what}");
}

fn by_id(id: &'static str) -> impl FnMut(&StartElement<'_, '_>) -> bool {
    move |s| s.attribute("Id").is_some_and(|a| a.raw_value == id)
}

fn named(ns: &'static str, local: &'static str) -> impl FnMut(&StartElement<'_, '_>) -> bool {
    move |s| s.is(ns, local)
}

fn nothing(_: &StartElement<'_, '_>) -> bool {
    false
}

fn signature(s: &StartElement<'_, '_>) -> bool {
    s.is(DSIG_NS, "Signature")
}

#[test]
fn merlin_exc_c14n_one_all_four_variants_and_signed_info() {
    let doc = data("merlin-exc-c14n-one/exc-signature.xml");
    let with = |c: bool, list: &str| {
        {
            let mut o = Options::default();
            o.with_comments = c;
            o
        }
        .with_prefix_list(list)
    };
    // References 0-3 select the dsig:Object with xpointer(id(...)), i.e. with comments in the
    // node-set; the c14n variant decides whether they are output.
    let cases = [
        (with(false, ""), "c14n-0.txt"),
        (with(false, "bar #default"), "c14n-1.txt"),
        (with(true, ""), "c14n-2.txt"),
        (with(true, "bar #default"), "c14n-3.txt"),
    ];
    for (opts, expected) in cases {
        let ours = c14n(&doc, opts, by_id("to-be-signed"), nothing);
        assert_same(
            &ours,
            &data(&format!("merlin-exc-c14n-one/{expected}")),
            expected,
        );
    }
    let si = c14n(
        &doc,
        Options::default(),
        named(DSIG_NS, "SignedInfo"),
        nothing,
    );
    assert_same(&si, &data("merlin-exc-c14n-one/c14n-4.txt"), "SignedInfo");
}

#[test]
fn aleksey_enveloped_ecdsa_predigest_without_signature() {
    for name in [
        "sha256-ecdsa-sha256",
        "sha384-ecdsa-sha384",
        "sha512-ecdsa-sha512",
    ] {
        let doc = data(&format!("aleksey-xmldsig-01/enveloped-{name}.xml"));
        let ours = c14n(&doc, Options::default(), |s| s.depth == 1, signature);
        let expected = data(&format!(
            "aleksey-xmldsig-01/derived-xmlsec1/enveloped-{name}.ref0-predigest.txt"
        ));
        assert_same(&ours, &expected, name);
    }
}

#[test]
fn microsoft_xmldsig11_signed_info_and_predigest() {
    let names = [
        "rsa2048_sha256",
        "rsa2048_sha384",
        "rsa2048_sha512",
        "ecc_p256_sha256",
        "ecc_p256_sha384",
        "ecc_p256_sha512",
        "ecc_p384_sha256",
        "ecc_p384_sha384",
        "ecc_p384_sha512",
        "ecc_p521_sha256",
        "ecc_p521_sha384",
        "ecc_p521_sha512",
    ];
    for name in names {
        let doc = data(&format!(
            "w3c-xmldsig11-interop-microsoft/{name}_exc-c14n.xml"
        ));
        let si = c14n(
            &doc,
            Options::default(),
            named(DSIG_NS, "SignedInfo"),
            nothing,
        );
        let expected = data(&format!(
            "w3c-xmldsig11-interop-microsoft/derived-xmlsec1/{name}_exc-c14n.signedinfo-c14n.txt"
        ));
        assert_same(&si, &expected, name);
        let body = c14n(&doc, Options::default(), |s| s.depth == 1, signature);
        let expected = data(&format!(
            "w3c-xmldsig11-interop-microsoft/derived-xmlsec1/{name}_exc-c14n.ref0-predigest.txt"
        ));
        assert_same(&body, &expected, name);
    }
}

#[test]
fn santuario_exclusive_examples() {
    const NET: &str = "http://example.net";
    let with_comments = {
        let mut o = Options::default();
        o.with_comments = true;
        o
    };
    // Example 2.2: the exclusive output does not depend on the context (both inputs, CRLF).
    for input in ["example2_2_1.xml", "example2_2_2.xml"] {
        let doc = data(&format!("santuario-inExcl/{input}"));
        let ours = c14n(&doc, with_comments.clone(), named(NET, "elem2"), nothing);
        assert_same(
            &ours,
            &data("santuario-inExcl/example2_2_c14nized_exclusive.xml"),
            input,
        );
    }
    let doc = data("santuario-inExcl/derived/example2_2_3-nopi.xml");
    let ours = c14n(&doc, with_comments.clone(), named("", "p"), nothing);
    assert_same(
        &ours,
        &data("santuario-inExcl/example2_2_3_c14nized_exclusive.xml"),
        "2.2.3",
    );

    let doc = data("santuario-inExcl/example2_4.xml");
    let ours = c14n(&doc, with_comments.clone(), named(NET, "elem2"), nothing);
    assert_same(
        &ours,
        &data("santuario-inExcl/example2_4_c14nized.xml"),
        "2.4",
    );

    let doc = data("santuario-inExcl/plain-soap-1.1.xml");
    for opts in [Options::default(), with_comments] {
        let ours = c14n(
            &doc,
            opts,
            named("http://schemas.xmlsoap.org/soap/envelope/", "Body"),
            nothing,
        );
        assert_same(
            &ours,
            &data("santuario-inExcl/plain-soap-c14nized.xml"),
            "plain-soap",
        );
    }
}

#[test]
fn joseph_exclusive_with_and_without_prefix_list() {
    let doc = data("exc-c14n-interop-joseph/derived/signature-joseph-exc-nodtd.xml");
    let ours = c14n(&doc, Options::default(), named("", "e6"), nothing);
    assert_same(
        &ours,
        &data("exc-c14n-interop-joseph/c14n-1.txt"),
        "no PrefixList",
    );
    let ours = c14n(
        &doc,
        Options::default().with_prefix_list("a"),
        named("", "e6"),
        nothing,
    );
    assert_same(
        &ours,
        &data("exc-c14n-interop-joseph/c14n-2.txt"),
        "PrefixList a",
    );
}
