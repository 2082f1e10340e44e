//! Which `md:EntityDescriptor` elements are a document's entities, and which validUntil
//! applies to them (SAML Metadata §2.3.1). An EntityDescriptor written inside an
//! `md:Extensions` is extension content: before this, `load_lazy`, `split` and therefore
//! `samlmd lookup`/`split`/`select` indexed it as a verified entity (an entity owner could
//! have the federation's signature cover another entityID with their own keys, and `split`
//! re-sign it) while `load` did not. And a nested group's validUntil was ignored by all of
//! them and by the MDQ client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{key, outcome, policy};

use saml_core::dsig::{self, SignOptions};
use saml_metadata::lazy::load_lazy;
use saml_metadata::load;
use saml_metadata::split::split_report;

const OWNER: &str = "https://sp.example.org/sp";
const VICTIM: &str = "https://idp.victim.example/idp";

fn sp(entity_id: &str, valid_until: &str, extensions: &str) -> String {
    format!(
        r#"<md:EntityDescriptor entityID="{entity_id}"{valid_until}><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">{extensions}<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// The victim's entityID with the owner's endpoints, as extension content.
fn injected() -> String {
    format!(
        r#"<md:Extensions>{}</md:Extensions>"#,
        sp(VICTIM, "", "").replace(
            "<md:EntityDescriptor ",
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" "
        )
    )
}

fn sign(doc: &str, k: &saml_core::dsig::SigningKey) -> Vec<u8> {
    dsig::sign(doc.as_bytes(), k, &SignOptions::default()).unwrap()
}

const MD: &str = r#"xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata""#;

#[test]
fn an_entity_descriptor_inside_extensions_is_not_an_entity() {
    let fed = key();
    let p = policy(&fed);
    // A single entity (what an MDQ server or a per-entity file serves) with the victim in its
    // role's Extensions.
    let single = sp(OWNER, "", &injected()).replacen(
        "<md:EntityDescriptor ",
        &format!("<md:EntityDescriptor {MD} "),
        1,
    );
    let doc = sign(&single, &fed);
    let lazy = load_lazy(&doc, &p).unwrap();
    assert_eq!(lazy.entity_ids().collect::<Vec<_>>(), [OWNER]);
    assert!(lazy.get(VICTIM).unwrap().is_none());
    let split = split_report(&doc, &p).unwrap();
    assert_eq!(split.documents.len(), 1);
    assert_eq!(split.documents[0].entity_id, OWNER);
    // In an aggregate: in the root's Extensions, in an entity's, and in a nested group's.
    let agg = format!(
        r#"<md:EntitiesDescriptor {MD} validUntil="2030-01-01T00:00:00Z">{ext}{owner}<md:EntitiesDescriptor>{ext}{other}</md:EntitiesDescriptor></md:EntitiesDescriptor>"#,
        ext = injected(),
        owner = sp(OWNER, "", &injected()),
        other = sp("https://other.example.org/sp", "", ""),
    );
    let doc = sign(&agg, &fed);
    let (ids, refused) = outcome(&doc, &p);
    assert_eq!(ids, ["https://other.example.org/sp", OWNER]);
    assert!(refused.is_empty());
    // The victim's real entry beside the injected one is not a duplicate.
    let agg = format!(
        r#"<md:EntitiesDescriptor {MD}>{owner}{victim}</md:EntitiesDescriptor>"#,
        owner = sp(OWNER, "", &injected()),
        victim = sp(VICTIM, "", ""),
    );
    let doc = sign(&agg, &fed);
    let (ids, _) = outcome(&doc, &p);
    assert_eq!(ids.len(), 2);
}

#[test]
fn a_nested_groups_valid_until_applies_to_its_entities() {
    let fed = key();
    let p = policy(&fed); // now: 2027-01-15
    let agg = format!(
        r#"<md:EntitiesDescriptor {MD} validUntil="2030-01-01T00:00:00Z">{fresh}<md:EntitiesDescriptor validUntil="2020-01-01T00:00:00Z">{stale}<md:EntitiesDescriptor validUntil="2031-01-01T00:00:00Z">{deeper}</md:EntitiesDescriptor></md:EntitiesDescriptor><md:EntitiesDescriptor validUntil="2028-01-01T00:00:00Z">{bounded}</md:EntitiesDescriptor></md:EntitiesDescriptor>"#,
        fresh = sp("https://fresh.example.org/sp", "", ""),
        stale = sp("https://stale.example.org/sp", "", ""),
        deeper = sp("https://deeper.example.org/sp", "", ""),
        bounded = sp(
            "https://bounded.example.org/sp",
            r#" validUntil="2029-01-01T00:00:00Z""#,
            ""
        ),
    );
    let doc = sign(&agg, &fed);
    let (ids, _) = outcome(&doc, &p);
    assert_eq!(
        ids,
        [
            "https://bounded.example.org/sp",
            "https://fresh.example.org/sp"
        ]
    );
    let expired = [
        "https://stale.example.org/sp",
        "https://deeper.example.org/sp",
    ];
    assert_eq!(load::load(&doc, &p).unwrap().expired_entities(), expired);
    assert_eq!(load_lazy(&doc, &p).unwrap().expired_entities(), expired);
    assert_eq!(split_report(&doc, &p).unwrap().expired, expired);
    // The validUntil that applies: the group's 2028, before the entity's own 2029.
    let agg = load::load(&doc, &p).unwrap();
    let bounded = agg.valid_until("https://bounded.example.org/sp").unwrap();
    assert_eq!(
        saml_metadata::time::format_datetime(bounded),
        "2028-01-01T00:00:00Z"
    );
    // A group's validUntil that is no xs:dateTime refuses the document in every path.
    let bad = sign(
        &format!(
            r#"<md:EntitiesDescriptor {MD}><md:EntitiesDescriptor validUntil="soon">{}</md:EntitiesDescriptor></md:EntitiesDescriptor>"#,
            sp(OWNER, "", "")
        ),
        &fed,
    );
    assert!(load::load(&bad, &p).is_err());
    assert!(load_lazy(&bad, &p).is_err());
    assert!(split_report(&bad, &p).is_err());
}

/// `split` checks what `load` checks: the root's validUntil, unique entityIDs.
#[test]
fn split_refuses_what_load_refuses() {
    let fed = key();
    let p = policy(&fed);
    let expired = sign(
        &format!(
            r#"<md:EntitiesDescriptor {MD} validUntil="2020-01-01T00:00:00Z">{}</md:EntitiesDescriptor>"#,
            sp(OWNER, "", "")
        ),
        &fed,
    );
    assert!(load::load(&expired, &p).is_err());
    assert!(split_report(&expired, &p).is_err());
    let twice = sign(
        &format!(
            r#"<md:EntitiesDescriptor {MD}>{}{}</md:EntitiesDescriptor>"#,
            sp(OWNER, "", ""),
            sp(OWNER, "", "")
        ),
        &fed,
    );
    assert!(matches!(
        load::load(&twice, &p),
        Err(saml_metadata::Error::DuplicateEntityId(_))
    ));
    assert!(matches!(
        split_report(&twice, &p),
        Err(saml_metadata::Error::DuplicateEntityId(_))
    ));
}

/// Metadata is verified with the signature as the first child (SAML Metadata §3): another
/// placement let signatures before the root's go unverified, and made a cut with one of them
/// inside panic. It is refused as a usage error in every path.
#[test]
fn metadata_is_verified_with_the_signature_first() {
    let fed = key();
    let doc = format!(
        r#"<md:EntityDescriptor {MD} entityID="{OWNER}"><md:Extensions><x:e xmlns:x="urn:x"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/></x:e></md:Extensions><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{OWNER}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    );
    let signed = sign(&doc, &fed);
    let mut p = policy(&fed);
    p.verify.placement = saml_core::dsig::Placement::Anywhere;
    let usage = |e: saml_metadata::Error| {
        matches!(e, saml_metadata::Error::Core(saml_core::Error::Usage(_)))
    };
    assert!(usage(load::load(&signed, &p).unwrap_err()));
    assert!(usage(load_lazy(&signed, &p).unwrap_err()));
    assert!(usage(split_report(&signed, &p).unwrap_err()));
}

/// Metadata review M1: a cut entity (split, an MDQ answer, a selection) kept only its own
/// validUntil: the root's and its groups' were lost, so a per-entity document of an aggregate
/// valid for days, re-signed by the operator, never expired. It carries the validUntil that
/// applied to it (the earliest), in place of its own when that is later.
#[test]
fn cut_entities_carry_the_validity_that_applied() {
    let fed = key();
    let p = policy(&fed);
    let group = |inner: &str| {
        format!(
            "<md:EntitiesDescriptor {MD} ID=\"_root\" validUntil=\"2030-01-01T00:00:00Z\">\
             <md:EntitiesDescriptor validUntil=\"2029-02-01T00:00:00Z\">{inner}\
             </md:EntitiesDescriptor></md:EntitiesDescriptor>"
        )
    };
    let later = " validUntil=\"2035-01-01T00:00:00Z\"";
    let earlier = " validUntil=\"2028-03-01T00:00:00Z\"";
    for (own, expected) in [
        ("", "2029-02-01T00:00:00Z"),
        (later, "2029-02-01T00:00:00Z"),
        (earlier, "2028-03-01T00:00:00Z"),
    ] {
        let doc = sign(&group(&sp(OWNER, own, "")), &fed);
        let lazy = load_lazy(&doc, &p).unwrap();
        let mdq = lazy.entity_document(OWNER).unwrap().unwrap().xml;
        let split = split_report(&doc, &p).unwrap().documents.remove(0).xml;
        for cut in [mdq, split] {
            let saml_metadata::model::Metadata::Entity(e) =
                load::parse_unverified(cut.as_bytes()).unwrap()
            else {
                panic!("{cut}");
            };
            assert_eq!(
                e.valid_until,
                saml_metadata::time::parse_datetime(expected),
                "{own}: {cut}"
            );
            assert_eq!(cut.matches("validUntil=").count(), 1, "{cut}");
        }
    }
}
