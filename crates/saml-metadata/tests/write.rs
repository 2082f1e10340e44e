//! Writing metadata: parse(write(x)) == x on every real-world document and on documents built
//! here with every element and extension; unknown extensions keep their exclusive canonical form;
//! written documents sign and load; what the parser would refuse is refused on write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use saml_core::c14n;
use saml_core::dsig::{SignOptions, SigningKey, TrustedKeys};
use saml_metadata::Error;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::ext::RawXml;
use saml_metadata::load::{self, Policy, parse_unverified};
use saml_metadata::model::*;

fn data(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../testdata/metadata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn round_trip(md: &Metadata) -> String {
    let xml = md.to_xml().unwrap();
    let again = parse_unverified(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    if &again != md {
        let (a, b) = (format!("{again:#?}"), format!("{md:#?}"));
        let diff: Vec<String> = a
            .lines()
            .zip(b.lines())
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .take(5)
            .map(|(i, (x, y))| format!("line {i}: written {x:?} / original {y:?}"))
            .collect();
        panic!("round trip differs:\n{}", diff.join("\n"));
    }
    // Writing is stable: the second write is the same text.
    assert_eq!(again.to_xml().unwrap(), xml);
    xml
}

fn raws(md: &Metadata) -> Vec<RawXml> {
    let mut out = Vec::new();
    let mut ents: Vec<&EntityDescriptor> = Vec::new();
    match md {
        Metadata::Entity(e) => ents.push(e),
        Metadata::Entities(g) => {
            out.extend(g.extensions.unknown.iter().cloned());
            ents = g.entities();
        }
    }
    for e in ents {
        out.extend(e.extensions.unknown.iter().cloned());
        for r in &e.roles {
            match r {
                Role::Other(raw) => out.push(raw.clone()),
                Role::Idp(i) => out.extend(i.common.extensions.unknown.iter().cloned()),
                Role::Sp(s) => out.extend(s.common.extensions.unknown.iter().cloned()),
                _ => {}
            }
        }
    }
    out
}

/// Exclusive c14n of the `nth` element named `{ns}local` in `doc`.
fn canonical(doc: &[u8], name: &(String, String), nth: usize) -> Vec<u8> {
    let mut seen = 0;
    c14n::canonicalize_element(
        doc,
        c14n::Options::default(),
        |s| {
            if s.is(&name.0, &name.1) {
                seen += 1;
                seen == nth + 1
            } else {
                false
            }
        },
        |_| false,
    )
    .unwrap()
}

#[test]
fn every_real_world_document_round_trips() {
    let dir = format!("{}/../../testdata/metadata", env!("CARGO_MANIFEST_DIR"));
    let mut done = 0;
    let mut raw_count = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".xml") {
            continue;
        }
        let Ok(md) = parse_unverified(&data(&name)) else {
            continue; // the documented schema defects (real_world.rs checks which)
        };
        round_trip(&md);
        // Unknown extensions and foreign roles are self-contained: each one alone has the same
        // exclusive canonical form as where it was read.
        let doc = data(&name);
        let mut nth = std::collections::HashMap::new();
        for r in raws(&md) {
            let n = nth.entry(r.name.clone()).or_insert(0);
            assert_eq!(
                canonical(r.xml.as_bytes(), &r.name, 0),
                canonical(&doc, &r.name, *n),
                "{name}: {:?}",
                r.name
            );
            *n += 1;
            raw_count += 1;
        }
        done += 1;
    }
    assert!(done >= 20, "only {done} documents round-tripped");
    assert!(raw_count > 0, "no unknown extension seen");
}

#[test]
fn unknown_extension_keeps_its_meaning_and_canonical_form() {
    let doc = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:x="urn:example:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:example:types" xmlns:unused="urn:example:unused" entityID="https://sp.example.org"><md:Extensions><x:Thing xsi:type="t:Special" x:flag="1"><x:Child>a &amp; b</x:Child><y:Other xmlns:y="urn:example:y"/></x:Thing></md:Extensions><fed:ApplicationServiceType xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706" protocolSupportEnumeration="http://docs.oasis-open.org/wsfed/federation/200706"><x:Inner/></fed:ApplicationServiceType><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor><md:Organization><md:Extensions><x:OrgNote>kept</x:OrgNote></md:Extensions><md:OrganizationName xml:lang="en">X</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">X</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">https://x.example</md:OrganizationURL></md:Organization><md:ContactPerson contactType="technical"><md:Extensions><x:ContactNote>also kept</x:ContactNote></md:Extensions><md:EmailAddress>mailto:a@x.example</md:EmailAddress></md:ContactPerson></md:EntityDescriptor>"#;
    let md = parse_unverified(doc.as_bytes()).unwrap();
    let Metadata::Entity(e) = &md else { panic!() };
    let thing = &e.extensions.unknown[0];
    assert_eq!(thing.name, ("urn:example:x".to_owned(), "Thing".to_owned()));
    // The bindings it uses are on its start tag; the unused one is not.
    assert!(thing.xml.starts_with(r#"<x:Thing xmlns:x="urn:example:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:t="urn:example:types" xsi:type"#), "{}", thing.xml);
    assert!(!thing.xml.contains("unused"));
    let Role::Other(fed) = &e.roles[0] else {
        panic!()
    };
    assert!(fed.xml.contains(r#"xmlns:x="urn:example:x""#));
    assert!(
        e.organization
            .as_ref()
            .unwrap()
            .extensions
            .as_ref()
            .unwrap()
            .unknown[0]
            .xml
            .contains("kept")
    );
    assert!(
        e.contacts[0].extensions.as_ref().unwrap().unknown[0]
            .xml
            .contains("also kept")
    );
    let xml = round_trip(&md);
    assert!(xml.contains("a &amp; b"));
    assert!(
        xml.contains("<x:OrgNote xmlns:x=\"urn:example:x\">kept</x:OrgNote>"),
        "{xml}"
    );
    assert!(!xml.contains("unused"));
    // Exclusive c14n of the extension is the same in the original and in the rewritten document.
    assert_eq!(
        canonical(doc.as_bytes(), &thing.name, 0),
        canonical(xml.as_bytes(), &thing.name, 0)
    );
}

fn cert() -> Vec<u8> {
    let (_, cert) = saml_metadata_test_cert();
    cert
}

/// A real certificate's DER (self-signed P-256), so KeyDescriptors carry plausible content.
fn saml_metadata_test_cert() -> (PKey<openssl::pkey::Private>, Vec<u8>) {
    use openssl::x509::{X509Builder, X509NameBuilder};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "metadata signer").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    (key, b.build().to_der().unwrap())
}

fn built_idp() -> EntityDescriptor {
    EntityDescriptor::builder("https://idp.example.org/idp/shibboleth")
        .valid_until(UNIX_EPOCH + Duration::from_secs(1_900_000_000))
        .cache_duration(Duration::from_secs(6 * 3600))
        .registration(
            "https://federation.example.org",
            Some(UNIX_EPOCH + Duration::from_secs(1_500_000_000)),
        )
        .entity_category("http://refeds.org/category/research-and-scholarship")
        .entity_attribute(
            "urn:oasis:names:tc:SAML:attribute:assurance-certification",
            "https://refeds.org/sirtfi2",
        )
        .idp(
            IdpSso::builder()
                .signing_certificate(cert())
                .encryption_certificate(cert())
                .scope("example.org", false)
                .display_name("en", "Example University")
                .display_name("sv", "Exempeluniversitetet")
                .domain_hint("example.org")
                .logo("https://idp.example.org/logo.png", 80, 60)
                .sso(
                    Binding::HttpRedirect,
                    "https://idp.example.org/sso/redirect",
                )
                .sso(Binding::HttpPost, "https://idp.example.org/sso/post")
                .slo(Binding::HttpRedirect, "https://idp.example.org/slo")
                .name_id_format("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
        )
        .organization("en", "Example University", "https://www.example.org/")
        .contact(ContactType::Technical, "mailto:it@example.org")
        .security_contact("mailto:cert@example.org")
        .build()
        .unwrap()
}

fn built_sp() -> EntityDescriptor {
    EntityDescriptor::builder("https://sp.example.com/shibboleth")
        .dame_sync_location("https://sp.example.com/dame")
        .sp(SpSso::builder()
            .signing_certificate(cert())
            .acs(Binding::HttpPost, "https://sp.example.com/acs/post")
            .acs(Binding::HttpArtifact, "https://sp.example.com/acs/artifact")
            .requested_attribute(
                "en",
                "Example service",
                "urn:oid:0.9.2342.19200300.100.1.3",
                Some("mail"),
                true,
            )
            .requested_attribute(
                "en",
                "Example service",
                "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
                Some("eduPersonPrincipalName"),
                false,
            )
            .display_name("en", "Example <Service> & Co"))
        .contact(ContactType::Support, "mailto:help@example.com")
        .build()
        .unwrap()
}

#[test]
fn builders_make_entities_that_round_trip() {
    let idp = built_idp();
    let x = round_trip(&Metadata::Entity(Box::new(idp.clone())));
    assert!(x.contains("xmlns:mdui=") && x.contains("xmlns:shibmd=") && x.contains("xmlns:remd="));
    assert!(
        !x.contains("xmlns:dame="),
        "only used prefixes are declared"
    );
    let i = idp.idp().unwrap();
    assert_eq!(i.single_sign_on.len(), 2);
    assert_eq!(i.common.keys[0].key_use, KeyUse::Signing);
    assert_eq!(
        idp.extensions
            .entity_attribute("http://macedir.org/entity-category")
            .collect::<Vec<_>>(),
        ["http://refeds.org/category/research-and-scholarship"]
    );
    let sp = built_sp();
    let x = round_trip(&Metadata::Entity(Box::new(sp.clone())));
    assert!(x.contains("Example &lt;Service&gt; &amp; Co"));
    let s = sp.sp().unwrap();
    assert_eq!(
        s.assertion_consumer
            .iter()
            .map(|a| a.index)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(s.default_acs().unwrap().endpoint.binding, Binding::HttpPost);
    assert_eq!(s.attribute_consuming[0].requested.len(), 2);
    assert!(s.attribute_consuming[0].requested[0].is_required);
}

#[test]
fn builders_refuse_bad_values() {
    assert!(matches!(
        SpSso::builder().acs(Binding::HttpPost, "not a url").build(),
        Err(Error::Unwritable { .. })
    ));
    assert!(matches!(
        EntityDescriptor::builder("https://x.example.org").build(),
        Err(Error::Unwritable { .. })
    ));
    assert!(matches!(
        EntityDescriptor::builder("").idp(IdpSso::builder()).build(),
        Err(Error::Unwritable { .. })
    ));
    // Review W13: a value holding a character XML does not allow was written raw, and the
    // document did not read back.
    for bad in ["a\u{1}b", "a\u{fffe}", "\u{1b}[31m"] {
        let mut e = built_sp();
        e.entity_id = format!("https://x.example.org/{bad}");
        let err = e.to_xml().unwrap_err();
        assert!(matches!(err, Error::Unwritable { .. }), "{bad:?}: {err}");
    }
    let mut e = built_sp();
    e.entity_id = "https://x.example.org/\ttab".into();
    assert!(e.to_xml().is_ok());
    // The writer refuses what the parser would refuse, naming the element.
    let mut e = built_sp();
    e.organization = Some(Organization::default());
    let err = e.to_xml().unwrap_err();
    assert!(err.to_string().contains("<Organization>"), "{err}");
    let mut e = built_sp();
    if let Role::Sp(s) = &mut e.roles[0] {
        s.common.protocols.clear();
    }
    assert!(
        e.to_xml()
            .unwrap_err()
            .to_string()
            .contains("protocolSupportEnumeration")
    );
    assert!(matches!(
        EntitiesDescriptor::default().to_xml(),
        Err(Error::Unwritable { .. })
    ));
}

#[test]
fn combine_signs_an_aggregate_that_loads() {
    let (key, der) = saml_metadata_test_cert();
    let signer = SigningKey::new(key, Some(openssl::x509::X509::from_der(&der).unwrap())).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let agg = EntitiesDescriptor::combine(
        "urn:example:federation",
        [built_idp(), built_sp()],
        Some(now + Duration::from_secs(14 * 86400)),
    )
    .unwrap();
    let signed = agg.sign(&signer, &SignOptions::default()).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_certificate(&openssl::x509::X509::from_der(&der).unwrap())
        .unwrap();
    let loaded = load::load(&signed, &Policy::new(keys, now)).unwrap();
    assert_eq!(loaded.len(), 2);
    let root_id = agg.id.clone().unwrap();
    assert_eq!(loaded.metadata(), &Metadata::Entities(Box::new(agg)));
    assert!(loaded.get("https://sp.example.com/shibboleth").is_some());
    // Duplicate entityIDs are refused when combining.
    assert!(matches!(
        EntitiesDescriptor::combine("x", [built_sp(), built_sp()], None),
        Err(Error::DuplicateEntityId(_))
    ));
    // Review W3: the entities' own IDs are left out, so one repeating another's (or the
    // aggregate's) no longer makes a signed aggregate that fails every verification.
    let (mut a, mut b) = (built_idp(), built_sp());
    a.id = Some("_same".into());
    b.id = Some(root_id.clone());
    let mut c = built_sp();
    c.entity_id = "https://other.example.com/sp".into();
    c.id = Some("_same".into());
    let clash = EntitiesDescriptor::combine(
        "urn:example:federation",
        [a, b, c],
        Some(now + Duration::from_secs(14 * 86400)),
    )
    .unwrap();
    let signed = clash.sign(&signer, &SignOptions::default()).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_certificate(&openssl::x509::X509::from_der(&der).unwrap())
        .unwrap();
    assert_eq!(
        load::load(&signed, &Policy::new(keys, now)).unwrap().len(),
        3
    );
    // A single entity signs on write too.
    let one = built_idp().sign(&signer, &SignOptions::default()).unwrap();
    let mut keys = TrustedKeys::new();
    keys.add_certificate(&openssl::x509::X509::from_der(&der).unwrap())
        .unwrap();
    assert_eq!(load::load(&one, &Policy::new(keys, now)).unwrap().len(), 1);
}

#[cfg(feature = "serde")]
#[test]
fn serde_round_trip() {
    let md = Metadata::Entity(Box::new(built_idp()));
    let json = serde_json::to_string(&md).unwrap();
    let back: Metadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back, md);
}

/// Issue 13 item 9 (found by the `metadata` fuzz target): an unknown extension whose inherited
/// namespace URI holds a TAB was accepted, written back with `&#9;` and then refused. A literal
/// TAB, LF or CR in a namespace URI attribute-normalizes to a space (XML 1.0 §3.3.3), so what
/// was compared and what was canonicalized differed; a `"` can only be written back as
/// `&quot;`. The reader now refuses all four, so `parse(write(x)) == x` holds for every document
/// `parse` accepts; a space (which writes back as itself) still round-trips.
#[test]
fn namespace_uris_that_cannot_be_written_back_are_refused() {
    let doc = |uri: &str, q: char| {
        format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:x={q}{uri}{q} entityID=\"https://sp.example.org\"><md:Extensions><x:Thing>v</x:Thing></md:Extensions><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"https://sp.example.org/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"
        )
    };
    for (uri, q) in [
        ("urn:a\tb", '"'),
        ("urn:a\nb", '"'),
        ("urn:a\rb", '"'),
        ("urn:a\"b", '\''),
    ] {
        let d = doc(uri, q);
        // Whatever parse accepts must round-trip; these are refused at parse.
        if let Ok(md) = parse_unverified(d.as_bytes()) {
            round_trip(&md);
            panic!("{uri:?} accepted");
        }
    }
    for (uri, q) in [("urn:a b", '"'), ("urn:a'b", '"'), ("urn:ab", '\'')] {
        let md =
            parse_unverified(doc(uri, q).as_bytes()).unwrap_or_else(|e| panic!("{uri:?}: {e}"));
        round_trip(&md);
    }
    // A RawXml built by hand is written only if it reads back as the element it names.
    let md = parse_unverified(doc("urn:ab", '"').as_bytes()).unwrap();
    let Metadata::Entity(mut e) = md else {
        panic!()
    };
    for (xml, ns) in [
        ("<x:T xmlns:x=\"urn:a&#9;b\"/>", "urn:a\tb"),
        ("<x:T xmlns:x=\"urn:a\tb\"/>", "urn:a\tb"),
        ("<x:T xmlns:x=\"urn:ab\"/>", "urn:other"),
        ("<x:T xmlns:x=\"urn:ab\">", "urn:ab"),
    ] {
        e.extensions.unknown = vec![RawXml {
            name: (ns.to_owned(), "T".to_owned()),
            xml: xml.to_owned(),
        }];
        let err = Metadata::Entity(e.clone()).to_xml().unwrap_err();
        assert!(matches!(err, Error::Unwritable { .. }), "{xml}: {err:?}");
    }
    e.extensions.unknown = vec![RawXml {
        name: ("urn:ab".to_owned(), "T".to_owned()),
        xml: "<x:T xmlns:x=\"urn:ab\"/>".to_owned(),
    }];
    round_trip(&Metadata::Entity(e));
}

/// Review W2: the model kept a key's certificates and names only and an EncryptionMethod's
/// Algorithm only, and `to_xml`/`sign` (what the DAME registry publishes) wrote a key given as
/// `ds:KeyValue` as an empty `<ds:KeyInfo/>` and an RSA-OAEP method without its digest and
/// mask function (peers then encrypt with OAEP's SHA-1 defaults). Both are kept as written
/// and written back; a KeyDescriptor without any key is refused on write.
#[test]
fn key_info_and_encryption_method_content_are_written_back() {
    let sp = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://sp.example.org/sp"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:KeyValue><ds:RSAKeyValue><ds:Modulus>AQAB</ds:Modulus><ds:Exponent>AQAB</ds:Exponent></ds:RSAKeyValue></ds:KeyValue></ds:KeyInfo><md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/></md:EncryptionMethod></md:KeyDescriptor><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.org/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#;
    let md = parse_unverified(sp.as_bytes()).unwrap();
    let xml = round_trip(&md);
    assert!(xml.contains("RSAKeyValue"), "{xml}");
    assert!(xml.contains("<ds:Modulus>AQAB</ds:Modulus>"), "{xml}");
    assert!(xml.contains("xmlenc#sha256"), "{xml}");
    assert!(xml.contains("mgf1sha256"), "{xml}");
    let Metadata::Entity(e) = &md else {
        panic!("an entity")
    };
    let k = &e.sp().unwrap().common.keys[0];
    assert_eq!(k.other_key_info.len(), 1);
    assert_eq!(k.encryption_methods[0].content.len(), 2);
    // A KeyDescriptor without a key: refused on write, not written as `<ds:KeyInfo/>`.
    let mut keyless = e.clone();
    if let Some(Role::Sp(sp)) = keyless.roles.first_mut() {
        sp.common.keys[0].other_key_info.clear();
    }
    assert!(matches!(
        Metadata::Entity(keyless).to_xml(),
        Err(Error::Unwritable { .. })
    ));
}
