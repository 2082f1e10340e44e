//! Signatures on elements inside a signed aggregate (SAML Metadata §3; issue 18: what
//! Shibboleth SP's Signature filter refuses we refuse too). Before this, `load`, `load_lazy`
//! and `split` verified the root signature only and kept an entity whose own signature was
//! made by another key or broken; Shibboleth drops such an entity, and so do we now, in the
//! three paths alike, naming it in `refused_entities`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{key, outcome, policy};

use saml_core::dsig::{self, SignOptions, SigningKey, Target};
use saml_core::{Error as CoreError, LimitExceeded};
use saml_metadata::Error;
use saml_metadata::lazy::load_lazy;
use saml_metadata::load;
use saml_metadata::split::split_report;

const IDP: &str = "https://idp.example.org/idp";
const SP: &str = "https://sp.example.net/sp";
const INNER: &str = "https://inner.example.com/sp";

fn sp(entity_id: &str, id: &str, role_id: &str) -> String {
    format!(
        r#"<md:EntityDescriptor entityID="{entity_id}" ID="{id}"><md:SPSSODescriptor ID="{role_id}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// An aggregate: an IdP (`_e1`), an SP (`_e2`, role `_r2`) and a nested group `_g` holding one
/// more SP (`_e3`).
fn aggregate() -> String {
    format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="_agg" validUntil="2030-01-01T00:00:00Z"><md:EntityDescriptor entityID="{IDP}" ID="_e1"><md:IDPSSODescriptor ID="_r1" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.org/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>{}<md:EntitiesDescriptor ID="_g" Name="inner">{}</md:EntitiesDescriptor></md:EntitiesDescriptor>"#,
        sp(SP, "_e2", "_r2"),
        sp(INNER, "_e3", "_r3"),
    )
}

fn sign_id(doc: &str, k: &SigningKey, id: &str) -> String {
    let mut o = SignOptions::default();
    o.target = Target::Id(id.into());
    String::from_utf8(dsig::sign(doc.as_bytes(), k, &o).unwrap()).unwrap()
}

fn sign_root(doc: &str, k: &SigningKey) -> Vec<u8> {
    dsig::sign(doc.as_bytes(), k, &SignOptions::default()).unwrap()
}

fn all() -> Vec<String> {
    let mut v = vec![IDP.to_owned(), SP.to_owned(), INNER.to_owned()];
    v.sort();
    v
}

fn without(gone: &[&str]) -> Vec<String> {
    all()
        .into_iter()
        .filter(|e| !gone.contains(&e.as_str()))
        .collect()
}

#[test]
fn entity_signed_by_the_federation_inside_its_aggregate_loads() {
    let fed = key();
    let doc = sign_root(&sign_id(&aggregate(), &fed, "_e1"), &fed);
    assert_eq!(outcome(&doc, &policy(&fed)), (all(), vec![]));
    // Several levels signed by the federation (group, entity, role) all verify.
    let doc = sign_id(&sign_id(&aggregate(), &fed, "_r3"), &fed, "_e3");
    let doc = sign_root(&sign_id(&doc, &fed, "_g"), &fed);
    assert_eq!(outcome(&doc, &policy(&fed)), (all(), vec![]));
}

#[test]
fn entity_signed_by_another_key_is_dropped_and_named() {
    let (fed, attacker) = (key(), key());
    let doc = sign_root(&sign_id(&aggregate(), &attacker, "_e1"), &fed);
    assert_eq!(
        outcome(&doc, &policy(&fed)),
        (without(&[IDP]), vec![IDP.to_owned()])
    );
    let agg = load::load(&doc, &policy(&fed)).unwrap();
    assert!(agg.get(IDP).is_none());
    let r = &agg.refused_entities()[0];
    assert!(r.reason.contains("key"), "{}", r.reason);
    assert_eq!(
        r.offset,
        std::str::from_utf8(&doc)
            .unwrap()
            .find("<md:EntityDescriptor")
            .unwrap()
    );
}

#[test]
fn entity_changed_after_its_own_signature_is_dropped() {
    let fed = key();
    let inner = sign_id(&aggregate(), &fed, "_e2")
        .replace(&format!("{SP}/acs"), "https://evil.example.com/acs");
    let doc = sign_root(&inner, &fed);
    let (ids, refused) = outcome(&doc, &policy(&fed));
    assert_eq!((ids, refused), (without(&[SP]), vec![SP.to_owned()]));
    let agg = load::load(&doc, &policy(&fed)).unwrap();
    assert!(
        agg.refused_entities()[0].reason.contains("digest"),
        "{}",
        agg.refused_entities()[0].reason
    );
}

#[test]
fn a_role_signed_by_another_key_drops_its_entity() {
    let (fed, attacker) = (key(), key());
    let doc = sign_root(&sign_id(&aggregate(), &attacker, "_r2"), &fed);
    assert_eq!(
        outcome(&doc, &policy(&fed)),
        (without(&[SP]), vec![SP.to_owned()])
    );
}

#[test]
fn a_group_signed_by_another_key_drops_every_entity_in_it() {
    let (fed, attacker) = (key(), key());
    let doc = sign_root(&sign_id(&aggregate(), &attacker, "_g"), &fed);
    assert_eq!(
        outcome(&doc, &policy(&fed)),
        (without(&[INNER]), vec![INNER.to_owned()])
    );
}

/// A nested signature whose Reference is `""` names the whole document, not its element
/// (XML-DSig §4.4.3.2): refused even though its digest is the element's.
#[test]
fn a_nested_signature_with_an_empty_reference_is_refused() {
    let fed = key();
    // The SP signed as a document of its own (Reference ""), then put into the aggregate.
    let standalone = sp(SP, "_e2", "_r2").replace(
        "<md:EntityDescriptor ",
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#,
    );
    let mut o = SignOptions::default();
    o.id_attribute = "NoSuchAttribute".into();
    let signed_sp =
        String::from_utf8(dsig::sign(standalone.as_bytes(), &fed, &o).unwrap()).unwrap();
    assert!(signed_sp.contains(r#"URI="""#), "{signed_sp}");
    // On its own it verifies.
    assert!(load::load(signed_sp.as_bytes(), &policy(&fed)).is_ok());
    let agg = aggregate().replace(&sp(SP, "_e2", "_r2"), &signed_sp);
    let doc = sign_root(&agg, &fed);
    assert_eq!(
        outcome(&doc, &policy(&fed)),
        (without(&[SP]), vec![SP.to_owned()])
    );
}

#[test]
fn a_single_entity_with_a_bad_role_signature_is_refused() {
    let (fed, attacker) = (key(), key());
    let entity = sp(SP, "_e2", "_r2").replace(
        "<md:EntityDescriptor ",
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#,
    );
    let good = sign_root(&sign_id(&entity, &fed, "_r2"), &fed);
    assert!(load::load(&good, &policy(&fed)).is_ok());
    assert!(load_lazy(&good, &policy(&fed)).is_ok());
    let bad = sign_root(&sign_id(&entity, &attacker, "_r2"), &fed);
    for e in [
        load::load(&bad, &policy(&fed)).unwrap_err(),
        load_lazy(&bad, &policy(&fed)).unwrap_err(),
        split_report(&bad, &policy(&fed)).unwrap_err(),
    ] {
        assert!(
            e.to_string().contains("does not verify"),
            "{e}: the document is refused, naming the failed signature"
        );
    }
}

/// Review A6: every element with a `ds:Signature` child was verified as a metadata signature
/// with the federation's keys, so a signature its issuer made on extension content (an
/// attribute authority's `saml:Assertion` in `mdattr:EntityAttributes`, which MDAttr allows;
/// anything in an `md:Extensions`) refused the entity, or at the root the whole aggregate.
/// Only signatures on metadata elements (SAML Metadata §3: groups, entities, roles,
/// affiliations) are checked, as Shibboleth's Signature filter does; the rest is its issuer's,
/// covered by the root's signature like any content.
#[test]
fn a_signature_on_extension_content_is_its_issuers() {
    let (fed, authority) = (key(), key());
    let with_ext = aggregate().replace(
        r#"validUntil="2030-01-01T00:00:00Z">"#,
        r#"validUntil="2030-01-01T00:00:00Z"><md:Extensions ID="_x"><x:y xmlns:x="urn:x"/></md:Extensions>"#,
    );
    for signer in [&fed, &authority] {
        let doc = sign_root(&sign_id(&with_ext, signer, "_x"), &fed);
        assert_eq!(outcome(&doc, &policy(&fed)), (all(), vec![]));
        assert!(split_report(&doc, &policy(&fed)).is_ok());
    }
    // An assertion signed by an attribute authority in the SP's EntityAttributes.
    let assertion = r#"<md:Extensions><mdattr:EntityAttributes xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_a" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://aa.example.org</saml:Issuer><saml:AttributeStatement><saml:Attribute Name="http://macedir.org/entity-category"><saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion></mdattr:EntityAttributes></md:Extensions>"#;
    let with_assertion = aggregate().replacen(
        r#"ID="_e2"><md:SPSSODescriptor"#,
        &format!(r#"ID="_e2">{assertion}<md:SPSSODescriptor"#),
        1,
    );
    assert_ne!(with_assertion, aggregate());
    let mut o = SignOptions::default();
    o.target = Target::Id("_a".into());
    o.placement = saml_core::dsig::Placement::AfterIssuer;
    let signed =
        String::from_utf8(dsig::sign(with_assertion.as_bytes(), &authority, &o).unwrap()).unwrap();
    let doc = sign_root(&signed, &fed);
    assert_eq!(outcome(&doc, &policy(&fed)), (all(), vec![]));
    // A metadata element's signature by another key is still refused (the entity dropped).
    let doc = sign_root(&sign_id(&signed, &authority, "_e2"), &fed);
    assert_eq!(
        outcome(&doc, &policy(&fed)),
        (without(&[SP]), vec![SP.to_owned()])
    );
}

/// Nested signed groups make each byte digested once per level: bounded at
/// `MAX_NESTED_WORK` times the document, past which the document is refused before any
/// nested digest runs.
#[test]
fn nested_signature_work_is_bounded() {
    let fed = key();
    let levels = 3 * saml_metadata::nested_signatures::MAX_NESTED_WORK;
    let mut body = sp(SP, "_e2", "_r2");
    for i in 0..levels {
        body = format!(r#"<md:EntitiesDescriptor ID="_g{i}">{body}</md:EntitiesDescriptor>"#);
    }
    let mut doc = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="_agg">{body}</md:EntitiesDescriptor>"#
    );
    for i in 0..levels {
        doc = sign_id(&doc, &fed, &format!("_g{i}"));
    }
    let doc = sign_root(&doc, &fed);
    for e in [
        load::load(&doc, &policy(&fed)).unwrap_err(),
        load_lazy(&doc, &policy(&fed)).unwrap_err(),
        split_report(&doc, &policy(&fed)).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                Error::Core(CoreError::Limit {
                    limit: LimitExceeded::NestedSignatureWork(_),
                    ..
                })
            ),
            "{e:?}"
        );
    }
    // Two levels stay within the bound and verify.
    let mut doc = aggregate();
    doc = sign_id(&sign_id(&doc, &fed, "_e3"), &fed, "_g");
    assert_eq!(
        outcome(&sign_root(&doc, &fed), &policy(&fed)),
        (all(), vec![])
    );
}

/// Before the root signature is known to be good, only offsets of signed elements are kept, at
/// most one per `MIN_SIGNATURE_BYTES` of the document (no genuine signature is smaller): a
/// document packed with empty `ds:Signature` children under many namespace declarations is
/// refused by that bound, not recorded element by element with its scope.
#[test]
fn packed_nested_signatures_are_bounded_before_any_is_checked() {
    let fed = key();
    let decls: String = (0..40)
        .map(|i| format!(r#" xmlns:p{i}="urn:p{i}""#))
        .collect();
    let packed: String = (0..4000)
        .map(|i| {
            format!(
                r#"<md:EntityDescriptor n="{i}"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/></md:EntityDescriptor>"#
            )
        })
        .collect();
    let doc = aggregate().replace(
        r#"validUntil="2030-01-01T00:00:00Z">"#,
        &format!(
            r#"validUntil="2030-01-01T00:00:00Z"{decls}><md:Extensions>{packed}</md:Extensions>"#
        ),
    );
    let signed = sign_root(&doc, &fed);
    assert!(
        4000 > signed.len() / saml_metadata::nested_signatures::MIN_SIGNATURE_BYTES,
        "the test must pack more signatures than the bound"
    );
    for e in [
        load::load(&signed, &policy(&fed)).unwrap_err(),
        load_lazy(&signed, &policy(&fed)).unwrap_err(),
        split_report(&signed, &policy(&fed)).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                Error::Core(CoreError::Limit {
                    limit: LimitExceeded::NestedSignatureWork(_),
                    ..
                })
            ),
            "{e:?}"
        );
    }
}
