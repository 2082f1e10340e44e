//! `load` of a large aggregate builds its entities on several threads (issue 15); the model,
//! and the error for a bad document, must be exactly those of the one-thread path. Documents
//! here are small, so the threads are forced with `parallel_min_size = Some(0)`. `load_owned`
//! (the model built last entity first, the document given back as it goes) is held to the
//! same results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{key, policy};

use saml_core::dsig::{self, SignOptions, SigningKey};
use saml_metadata::load::{self, Aggregate, Policy};
use saml_metadata::model::Metadata;

const PROTO: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

fn idp(i: usize) -> String {
    format!(
        r#"<md:EntityDescriptor entityID="https://idp{i}.example.org/idp"><md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang="en">IdP {i} &amp; co</mdui:DisplayName></mdui:UIInfo></md:Extensions><md:IDPSSODescriptor protocolSupportEnumeration="{PROTO}"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp{i}.example.org/sso"/></md:IDPSSODescriptor><md:Organization><md:OrganizationName xml:lang="en">Org {i}</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">Org {i}</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">https://org{i}.example.org/</md:OrganizationURL></md:Organization></md:EntityDescriptor>"#
    )
}

/// An SP in the default namespace, declaring it itself (as many real aggregates do).
fn sp(i: usize) -> String {
    format!(
        r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp{i}.example.net/sp" validUntil="2030-01-01T00:00:00Z"><SPSSODescriptor protocolSupportEnumeration="{PROTO}"><AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp{i}.example.net/acs" index="{i}"/></SPSSODescriptor></EntityDescriptor>"#
    )
}

/// `n` entities (IdPs with the root's prefixes, SPs in the default namespace), root
/// Extensions, a nested group in the middle; `sep` between the root's children.
fn aggregate(n: usize, sep: &str, bad: &[usize]) -> String {
    let mut kids = vec![
        r#"<md:Extensions><mdrpi:PublicationInfo publisher="https://fed.example.org" creationInstant="2026-01-01T00:00:00Z"/></md:Extensions>"#.to_owned(),
    ];
    for i in 0..n {
        let mut e = if i % 3 == 0 { sp(i) } else { idp(i) };
        if bad.contains(&i) {
            // A bad validUntil: the model refuses it, naming this entity's offset.
            e = e.replacen("entityID=", "validUntil=\"yesterday\" entityID=", 1);
        }
        kids.push(e);
        if i == n / 2 {
            kids.push(format!(
                r#"<md:EntitiesDescriptor Name="inner">{}{sep}{}</md:EntitiesDescriptor>"#,
                sp(n + 1),
                idp(n + 2)
            ));
        }
    }
    format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" Name="urn:fed" ID="_agg" validUntil="2030-01-01T00:00:00Z">{sep}{}{sep}</md:EntitiesDescriptor>"#,
        kids.join(sep)
    )
}

fn signed(doc: &str, k: &SigningKey) -> Vec<u8> {
    dsig::sign(doc.as_bytes(), k, &SignOptions::default()).unwrap()
}

/// (one thread, forced threads): both results.
/// (one thread, forced threads): both results. `load_owned`, on one thread and on several,
/// must give exactly what `load` on one thread gives (model or error): checked here for every
/// document the tests below load.
fn both(doc: &[u8], p: &Policy) -> (Result<Aggregate, String>, Result<Aggregate, String>) {
    let mut one = p.clone();
    one.verify = one.verify.single_threaded();
    let mut many = p.clone();
    many.verify.parallel_min_size = Some(0);
    let reference = load::load(doc, &one).map_err(|e| e.to_string());
    for policy in [&one, &many] {
        let owned = load::load_owned(doc.to_vec(), policy).map_err(|e| e.to_string());
        match (&reference, &owned) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.metadata(), b.metadata(), "load_owned's model");
                assert_eq!(a.len(), b.len());
                assert_eq!(a.refused_entities(), b.refused_entities());
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "load_owned's error"),
            (a, b) => panic!("load: {:?}, load_owned: {:?}", a.is_ok(), b.is_ok()),
        }
    }
    (reference, load::load(doc, &many).map_err(|e| e.to_string()))
}

fn entity_count(a: &Aggregate) -> usize {
    match a.metadata() {
        Metadata::Entities(g) => g.entities().len(),
        Metadata::Entity(_) => 1,
    }
}

#[test]
fn the_threaded_model_is_the_one_thread_model() {
    let k = key();
    let p = policy(&k);
    for sep in ["", "\n  ", "\r\n\t"] {
        let doc = signed(&aggregate(301, sep, &[]), &k);
        let (one, many) = both(&doc, &p);
        let (one, many) = (one.unwrap(), many.unwrap());
        assert_eq!(many.metadata(), one.metadata(), "separator {sep:?}");
        assert_eq!(entity_count(&many), 303);
        assert_eq!(many.len(), one.len());
        let Metadata::Entities(g) = many.metadata() else {
            panic!("aggregate")
        };
        assert!(g.extensions.publication.is_some(), "root Extensions kept");
        assert_eq!(g.name.as_deref(), Some("urn:fed"));
        for e in one.entities() {
            assert_eq!(many.get(&e.entity_id), Some(e));
        }
    }
}

#[test]
fn a_comment_or_text_between_entities_reads_as_on_one_thread() {
    let k = key();
    let p = policy(&k);
    // A comment between children: the one-thread path reads it (and passes it over).
    let doc = signed(&aggregate(40, "<!-- x -->", &[]), &k);
    let (one, many) = both(&doc, &p);
    assert_eq!(many.unwrap().metadata(), one.unwrap().metadata());
    // Text between children: both refuse it the same way.
    let doc = signed(&aggregate(40, "text", &[]), &k);
    let (one, many) = both(&doc, &p);
    let one = one.expect_err("text in element-only content is refused");
    assert_eq!(many.err(), Some(one));
}

#[test]
fn the_first_error_in_document_order_is_reported() {
    let k = key();
    let p = policy(&k);
    for bad in [&[250][..], &[7, 250], &[299], &[1]] {
        // Without an entityID to name it by, an invalid entity refuses the document.
        let doc = aggregate(301, "\n", bad).replace(
            "validUntil=\"yesterday\" entityID=",
            "validUntil=\"yesterday\" entityName=",
        );
        let doc = signed(&doc, &k);
        let (one, many) = both(&doc, &p);
        let one = one.expect_err("an entity without entityID is refused");
        assert!(one.contains("entityID"), "{one}");
        assert_eq!(many.err(), Some(one), "bad entities {bad:?}");
    }
}

/// An entity whose model is invalid (here a bad validUntil) is left out and named, on every
/// path the same, in document order.
#[test]
fn invalid_entities_are_refused_alike_on_every_path() {
    let k = key();
    let p = policy(&k);
    for bad in [&[250][..], &[7, 250], &[299], &[1]] {
        let doc = signed(&aggregate(301, "\n", bad), &k);
        let (one, many) = both(&doc, &p);
        let (one, many) = (one.unwrap(), many.unwrap());
        assert_eq!(many.metadata(), one.metadata());
        assert_eq!(many.refused_entities(), one.refused_entities());
        let refused: Vec<&str> = one
            .refused_entities()
            .iter()
            .map(|r| r.entity_id.as_str())
            .collect();
        let expected: Vec<String> = bad
            .iter()
            .map(|&i| {
                if i % 3 == 0 {
                    format!("https://sp{i}.example.net/sp")
                } else {
                    format!("https://idp{i}.example.org/idp")
                }
            })
            .collect();
        assert_eq!(refused, expected, "bad entities {bad:?}");
        assert!(one.refused_entities()[0].reason.contains("validUntil"));
        assert_eq!(one.len(), 303 - bad.len());
    }
}
