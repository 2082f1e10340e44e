//! What a model copies beyond the document: an element kept as written (an unknown extension)
//! carries the namespace declarations it inherited and uses, copied onto its start tag. Each
//! such element copied every inherited URI (up to 64 KiB each, 256 in scope), so a few KB of
//! small elements under long declarations made gigabytes of model, also on the helper threads
//! of a `load` whose signature was then refused. Now only the bindings used are copied, and
//! what a model copies beyond the document is bounded by the document (`Cursor::charge_copy`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{key, policy};

use saml_core::LimitExceeded;
use saml_core::dsig::{self, SignOptions};
use saml_metadata::Error;
use saml_metadata::load::{self, parse_unverified};
use saml_metadata::model::Metadata;

const MD: &str = r#"xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata""#;

/// An entity declaring `bindings` namespaces of `uri_len` bytes, with `n` unknown extension
/// elements each using all of them.
fn entity(bindings: usize, uri_len: usize, n: usize) -> String {
    let decls: String = (0..bindings)
        .map(|i| format!(r#" xmlns:p{i}="urn:{i}:{}""#, "a".repeat(uri_len)))
        .collect();
    let attrs: String = (1..bindings).map(|i| format!(r#" p{i}:b="""#)).collect();
    let leaves = format!("<p0:a{attrs}/>").repeat(n);
    format!(
        r#"<md:EntityDescriptor {MD}{decls} entityID="https://sp.example.org/sp"><md:Extensions>{leaves}</md:Extensions><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    )
}

fn is_copy_limit(e: &Error) -> bool {
    matches!(
        e,
        Error::Core(saml_core::Error::Limit {
            limit: LimitExceeded::ModelCopies(_),
            ..
        })
    )
}

#[test]
fn elements_kept_as_written_copy_no_more_than_the_document_allows() {
    // 8 bindings of 8 KiB, 1,000 elements using them: 64 MB of declarations from 140 KB.
    let doc = entity(8, 8 << 10, 1000);
    let e = parse_unverified(doc.as_bytes()).unwrap_err();
    assert!(is_copy_limit(&e), "{e}");
    // Signed and loaded: the same refusal (on one thread and on several). Ten elements: a
    // thousand would re-render 64 MB of namespace nodes in the signature's canonical form,
    // which the canonicalizer refuses before it hashes them (dsig review M2).
    let fed = key();
    assert!(dsig::sign(doc.as_bytes(), &fed, &SignOptions::default()).is_err());
    let doc = entity(8, 8 << 10, 10);
    assert!(is_copy_limit(
        &parse_unverified(doc.as_bytes()).unwrap_err()
    ));
    let signed = dsig::sign(doc.as_bytes(), &fed, &SignOptions::default()).unwrap();
    let e = load::load(&signed, &policy(&fed)).unwrap_err();
    assert!(is_copy_limit(&e), "{e}");
    let mut p = policy(&fed);
    p.verify.parallel_min_size = Some(0);
    assert!(load::load(&signed, &p).is_err());
    // Only the bindings an element uses are copied: 59 declarations of 8 KiB in scope, and
    // 1,000 elements using one short binding each, is a small model.
    let doc = entity(1, 8, 1000).replacen(
        "<md:EntityDescriptor ",
        &format!(
            "<md:EntityDescriptor {}",
            (1..60)
                .map(|i| format!(r#"xmlns:q{i}="urn:{i}:{}" "#, "b".repeat(8 << 10)))
                .collect::<String>()
        ),
        1,
    );
    let Metadata::Entity(e) = parse_unverified(doc.as_bytes()).unwrap() else {
        panic!("not an entity")
    };
    let kept: usize = e.extensions.unknown.iter().map(|r| r.xml.len()).sum();
    assert_eq!(e.extensions.unknown.len(), 1000);
    assert!(kept < 2 * doc.len(), "{kept} bytes kept from {}", doc.len());
    assert!(
        e.extensions.unknown[0]
            .xml
            .contains(r#"xmlns:p0="urn:0:aaaaaaaa""#)
    );
}

/// Dsig review L3: each entity read from the lazy index, and each root child `load` models on
/// helper threads while the signature is checked, had its own 1 KiB beyond twice its bytes, so
/// 1,000 small entities each copying one 1 KB binding held seven times the document in copies
/// where `load` on one thread refused the document. A part may now copy twice its bytes, the
/// 1 KiB being the document's; when a child on a helper thread needs more, `load` asks the
/// one-thread reading, so both give the same answer. `load_owned`, which models after
/// verification, gave every child 1 KiB too; its children now share the document's allowance.
#[test]
fn entities_read_from_the_lazy_index_copy_no_more_than_the_whole_document() {
    let long = format!("urn:{}", "a".repeat(1000));
    let children: String = (0..1000)
        .map(|i| {
            format!(
                "<md:EntityDescriptor entityID=\"https://e.example/{i:0100}\"><p:k/></md:EntityDescriptor>\n"
            )
        })
        .collect();
    let doc = format!(
        "<md:EntitiesDescriptor {MD} xmlns:p=\"{long}\" ID=\"_a\">\n{children}</md:EntitiesDescriptor>"
    );
    let fed = key();
    let signed = dsig::sign(doc.as_bytes(), &fed, &SignOptions::default()).unwrap();
    let mut one = policy(&fed);
    one.verify.parallel_min_size = Some(usize::MAX);
    let e = load::load(&signed, &one).unwrap_err();
    assert!(is_copy_limit(&e), "{e}");
    let mut several = policy(&fed);
    several.verify.parallel_min_size = Some(0);
    let e2 = load::load(&signed, &several).unwrap_err();
    assert_eq!(e2.to_string(), e.to_string(), "several threads");
    let lazy = saml_metadata::lazy::load_lazy(&signed, &policy(&fed)).unwrap();
    let id = format!("https://e.example/{:0100}", 7);
    let e = lazy.get(&id).unwrap_err();
    assert!(is_copy_limit(&e), "lazy: {e}");
    for (name, p) in [("one thread", &one), ("several threads", &several)] {
        let Err(e) = load::load_owned(signed.clone(), p) else {
            panic!("load_owned, {name}: accepted");
        };
        assert!(is_copy_limit(&e), "load_owned, {name}: {e}");
    }
}

/// Review A1: each `mdui:Keywords` word and `protocolSupportEnumeration` token became a
/// `String` (24 bytes and a heap block for a two-byte word): a Keywords text of one-letter
/// words made a model 28 times the document, on the parallel path before the signature was
/// known to be good. The tokens are charged against the copy allowance: such a document is
/// refused, while keywords as real metadata writes them load.
#[test]
fn keyword_and_protocol_tokens_are_charged() {
    let sp = |ui: &str, protocols: &str| {
        format!(
            r#"<md:EntityDescriptor {MD} entityID="https://sp.example.org/sp"><md:SPSSODescriptor protocolSupportEnumeration="{protocols}"><md:Extensions><mdui:UIInfo xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui">{ui}</mdui:UIInfo></md:Extensions><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
        )
    };
    let saml2 = "urn:oasis:names:tc:SAML:2.0:protocol";
    let words = "a ".repeat(100_000);
    for doc in [
        sp(
            &format!(r#"<mdui:Keywords xml:lang="en">{words}</mdui:Keywords>"#),
            saml2,
        ),
        // (An attribute value is at most 64 KiB.)
        sp("", &format!("{saml2} {}", "a ".repeat(30_000))),
    ] {
        let e = parse_unverified(doc.as_bytes()).unwrap_err();
        assert!(is_copy_limit(&e), "{e}");
    }
    let real = sp(
        r#"<mdui:Keywords xml:lang="en">library catalogue research university</mdui:Keywords>"#,
        saml2,
    );
    let Metadata::Entity(e) = parse_unverified(real.as_bytes()).unwrap() else {
        panic!("an entity")
    };
    let ui = e.sp().unwrap().common.extensions.ui_info.as_ref().unwrap();
    assert_eq!(ui.keywords[0].value.len(), 4);
}

/// Review A1's rest: the model's fixed sizes were not charged. A 48-byte `md:PDPDescriptor` is
/// a 616-byte role, so that a document of such
/// elements made a model about 13 times its size, on `load`'s helper threads before the
/// signature was known to be good. Every value kept in a list or a box is now charged its
/// size: such a document is refused on every path, while an aggregate of minimal entities
/// (an SP with one endpoint, no key: about four times its bytes in model) loads.
#[test]
fn fixed_sizes_of_kept_values_are_charged() {
    let roles = r#"<md:PDPDescriptor protocolSupportEnumeration="a"/>"#.repeat(200);
    let children: String = (0..50)
        .map(|i| {
            format!(
                "<md:EntityDescriptor entityID=\"https://e{i}/\">{roles}</md:EntityDescriptor>\n"
            )
        })
        .collect();
    let doc = format!("<md:EntitiesDescriptor {MD} ID=\"_a\">\n{children}</md:EntitiesDescriptor>");
    let e = parse_unverified(doc.as_bytes()).unwrap_err();
    assert!(is_copy_limit(&e), "{e}");
    let fed = key();
    let signed = dsig::sign(doc.as_bytes(), &fed, &SignOptions::default()).unwrap();
    let mut one = policy(&fed);
    one.verify.parallel_min_size = Some(usize::MAX);
    let mut several = policy(&fed);
    several.verify.parallel_min_size = Some(0);
    for (name, p) in [("one thread", &one), ("several threads", &several)] {
        let e = load::load(&signed, p).unwrap_err();
        assert!(is_copy_limit(&e), "load, {name}: {e}");
        let Err(e) = load::load_owned(signed.clone(), p) else {
            panic!("load_owned, {name}: accepted");
        };
        assert!(is_copy_limit(&e), "load_owned, {name}: {e}");
    }
    let lazy = saml_metadata::lazy::load_lazy(&signed, &policy(&fed)).unwrap();
    let e = lazy.get("https://e7/").unwrap_err();
    assert!(is_copy_limit(&e), "lazy: {e}");

    // Minimal entities, short names, no prefix: they load, on every path.
    let minimal: String = (0..2000)
        .map(|i| format!(r#"<EntityDescriptor entityID="https://sp{i}.example/"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp{i}.example/acs" index="0"/></SPSSODescriptor></EntityDescriptor>"#) + "\n")
        .collect();
    let doc = format!(
        "<EntitiesDescriptor xmlns=\"urn:oasis:names:tc:SAML:2.0:metadata\">\n{minimal}</EntitiesDescriptor>"
    );
    let signed = dsig::sign(doc.as_bytes(), &fed, &SignOptions::default()).unwrap();
    for (name, p) in [("one thread", &one), ("several threads", &several)] {
        assert_eq!(load::load(&signed, p).unwrap().len(), 2000, "{name}");
        assert_eq!(
            load::load_owned(signed.clone(), p).unwrap().len(),
            2000,
            "{name}"
        );
    }
}

/// Review G2: a list was charged one slot per value while a `Vec` grows by doubling, so while
/// one large entity was read its lists held up to twice what was charged: 1,025 roles of 115
/// bytes each (charged just under the allowance, one slot each) were a 2,048-slot list, about
/// 11 times the document, on `load`'s helper threads before the signature was known good.
/// Lists are charged what they grow by (1, 2, 4, ... slots): 1,024 such roles still load, the
/// 1,025th's doubling is refused.
#[test]
fn list_growth_is_charged() {
    let doc = |n: usize| {
        let pdp = format!(
            r#"<md:PDPDescriptor protocolSupportEnumeration="a"{}/>"#,
            " ".repeat(115 - 50)
        );
        assert_eq!(pdp.len(), 115);
        format!(
            "<md:EntityDescriptor {MD} entityID=\"https://e.example/\">{}</md:EntityDescriptor>",
            pdp.repeat(n)
        )
    };
    let fed = key();
    let mut one = policy(&fed);
    one.verify.parallel_min_size = Some(usize::MAX);
    let Metadata::Entity(e) = parse_unverified(doc(1024).as_bytes()).unwrap() else {
        panic!("an entity");
    };
    assert_eq!(e.roles.len(), 1024);
    let Err(e) = parse_unverified(doc(1025).as_bytes()) else {
        panic!("1,025 roles: accepted");
    };
    assert!(is_copy_limit(&e), "{e}");
    let signed = dsig::sign(doc(1025).as_bytes(), &fed, &SignOptions::default()).unwrap();
    let Err(e) = load::load(&signed, &one) else {
        panic!("1,025 roles, load: accepted");
    };
    assert!(is_copy_limit(&e), "{e}");
}
