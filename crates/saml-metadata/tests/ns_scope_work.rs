//! Issue 13 item 1 through saml-metadata: `load`, `load_lazy` and `split` verify with
//! `saml_core::dsig`, so they share its namespace handling. The review's shape (61 nested
//! elements of 64 `xmlns:pNNNN` each, then 200 empty leaves, here inside the aggregate's
//! md:Extensions, signed with an InclusiveNamespaces PrefixList) is refused with the default
//! limits, and under limits raised to admit it every entry point does namespace work linear in
//! the input (counted by `saml_core::xml::work`, never timed).
//! Work is counted only in builds with debug assertions (`saml_core::xml::work::ENABLED`), so
//! these tests are compiled there only (plain `cargo test`, as scripts/test.sh runs).
#![cfg(debug_assertions)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, UNIX_EPOCH};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys};
use saml_core::xml::{Limits, work};
use saml_core::{LimitExceeded, SignatureError};
use saml_metadata::Error;
use saml_metadata::load::{self, Policy};
use saml_metadata::{lazy, split};

const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

fn open_limits() -> Limits {
    {
        let mut o = Limits::default();
        o.max_namespace_declarations = 1 << 20;
        o
    }
}

fn doc(leaves: usize) -> String {
    let mut s = format!(
        "<md:EntitiesDescriptor xmlns:md=\"{MD}\" Name=\"urn:x\" validUntil=\"2030-01-01T00:00:00Z\"><md:Extensions>"
    );
    for i in 0..61 {
        s.push_str("<p0000:e");
        for j in 0..64 {
            s.push_str(&format!(" xmlns:p{j:04}=\"urn:x:{i}:{j}\""));
        }
        s.push('>');
    }
    for _ in 0..leaves {
        s.push_str("<p0000:l/>");
    }
    for _ in 0..61 {
        s.push_str("</p0000:e>");
    }
    s.push_str("</md:Extensions>");
    for n in 0..20 {
        s.push_str(&format!(
            "<md:EntityDescriptor entityID=\"https://sp{n}.example.org\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"https://sp{n}.example.org/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"
        ));
    }
    s.push_str("</md:EntitiesDescriptor>");
    s
}

fn signed(leaves: usize) -> (Vec<u8>, TrustedKeys) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let pkey = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let key = SigningKey::new(pkey.clone(), None).unwrap();
    let opts = {
        let mut o = SignOptions::default();
        o.inclusive_prefixes = Some("p0000 p0001 p0002 p0003 p0004 p0005 p0006 p0007".into());
        o.limits = open_limits();
        o
    };
    let out = dsig::sign(doc(leaves).as_bytes(), &key, &opts).expect("sign");
    let mut keys = TrustedKeys::new();
    let public = PKey::public_key_from_der(&pkey.public_key_to_der().unwrap()).unwrap();
    keys.add_public_key(public, "fed").expect("key");
    (out, keys)
}

fn policy(keys: TrustedKeys, limits: Limits) -> Policy {
    let mut p = Policy::new(keys, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    p.verify.limits = limits;
    p
}

/// `doc` signed by a fresh key, and a policy trusting it with the default limits.
fn signed_with_default_limits(doc: &str) -> (Vec<u8>, Policy) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let pkey = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let key = SigningKey::new(pkey.clone(), None).unwrap();
    let signed = dsig::sign(doc.as_bytes(), &key, &SignOptions::default()).expect("sign");
    let mut keys = TrustedKeys::new();
    let public = PKey::public_key_from_der(&pkey.public_key_to_der().unwrap()).unwrap();
    keys.add_public_key(public, "fed").expect("key");
    (signed, policy(keys, Limits::default()))
}

/// The start tags of four nested EntitiesDescriptors of 60 declarations each (241 bindings in
/// scope below them, within the default limits).
fn four_groups_of_60_declarations() -> String {
    let mut s = String::new();
    for level in 0..4 {
        s.push_str(&format!("<md:EntitiesDescriptor xmlns:md=\"{MD}\""));
        for j in 0..60 {
            s.push_str(&format!(" xmlns:p{j:04}=\"urn:x:{level}:{j}\""));
        }
        s.push('>');
    }
    s
}

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let _ = work::take();
    let r = f();
    (r, work::take())
}

#[test]
fn every_entry_point_refuses_the_worst_case_by_default() {
    let (doc, keys) = signed(200);
    let p = policy(keys, Limits::default());
    let is_limit = |e: &Error| {
        matches!(
            e,
            Error::Core(saml_core::Error::Limit {
                limit: LimitExceeded::NamespaceDeclarations(_),
                ..
            })
        )
    };
    let e = load::load(&doc, &p).unwrap_err();
    assert!(is_limit(&e), "load: {e:?}");
    let e = lazy::load_lazy(&doc, &p).unwrap_err();
    assert!(is_limit(&e), "load_lazy: {e:?}");
    let e = split::split(&doc, &p).unwrap_err();
    assert!(is_limit(&e), "split: {e:?}");
}

#[test]
fn every_entry_point_does_linear_namespace_work() {
    let (doc, keys) = signed(200);
    let p = policy(keys, open_limits());
    let bound = doc.len() as u64; // one unit per input byte
    let (r, w) = counted(|| load::load(&doc, &p).map(|a| a.len()));
    assert_eq!(r.unwrap(), 20);
    assert!(w <= bound, "load: {w} units for {} bytes", doc.len());
    let (r, w) = counted(|| lazy::load_lazy(&doc, &p).map(|a| a.len()));
    assert_eq!(r.unwrap(), 20);
    assert!(w <= bound, "load_lazy: {w} units for {} bytes", doc.len());
    let (r, w) = counted(|| split::split(&doc, &p).map(|v| v.len()));
    assert_eq!(r.unwrap(), 20);
    assert!(w <= bound, "split: {w} units for {} bytes", doc.len());
    // Unauthenticated: the same document modified after signing fails at the digest, after
    // the same linear work.
    let bad = String::from_utf8(doc.clone())
        .unwrap()
        .replace("\"urn:x:60:0\"", "\"urn:y:60:0\"");
    let (r, w) = counted(|| load::load(bad.as_bytes(), &p).map(|a| a.len()));
    assert!(
        matches!(
            r,
            Err(Error::Core(saml_core::Error::Signature(
                SignatureError::DigestMismatch
            )))
        ),
        "{r:?}"
    );
    assert!(
        w <= bound,
        "tampered load: {w} units for {} bytes",
        bad.len()
    );
}

/// `load_lazy` indexes entities while verification streams, before the signature is known to
/// be good: the inherited scope it records is shared by sibling entities instead of being
/// rebuilt for each (which cost the number of bindings in scope per entity: here 241 under
/// four nested EntitiesDescriptors of 60 declarations, within the default limits).
#[test]
fn load_lazy_work_per_entity_does_not_depend_on_the_scope() {
    let mut s = four_groups_of_60_declarations();
    for n in 0..2000 {
        s.push_str(&format!(
            "<md:EntityDescriptor entityID=\"https://e{n}.example\"/>"
        ));
    }
    for _ in 0..4 {
        s.push_str("</md:EntitiesDescriptor>");
    }
    let (doc, p) = signed_with_default_limits(&s);
    let (r, w) = counted(|| lazy::load_lazy(&doc, &p).map(|a| a.len()));
    assert_eq!(r.unwrap(), 2000);
    assert!(
        w <= doc.len() as u64 / 4,
        "load_lazy: {w} units for {} bytes",
        doc.len()
    );
}

/// The same with each entity in a group of its own, the groups alternating one declaration
/// (the review's shape): sibling entities shared one recorded scope, but every new parent
/// recorded (and compared) the whole effective scope again, about 240 bindings per entity
/// here, before the signature is known to be good. Now each group records only its own
/// declarations, and an entity's scope is resolved when it is built.
#[test]
fn load_lazy_work_per_group_does_not_depend_on_the_scope() {
    let mut s = four_groups_of_60_declarations();
    for n in 0..2000 {
        s.push_str(&format!(
            "<md:EntitiesDescriptor xmlns:z=\"urn:{}\"><md:EntityDescriptor entityID=\"https://e{n}.example\"/></md:EntitiesDescriptor>",
            n % 2
        ));
    }
    for _ in 0..4 {
        s.push_str("</md:EntitiesDescriptor>");
    }
    let (doc, p) = signed_with_default_limits(&s);
    let (r, w) = counted(|| lazy::load_lazy(&doc, &p).map(|a| a.len()));
    let agg_len = r.unwrap();
    assert_eq!(agg_len, 2000);
    assert!(
        w <= doc.len() as u64 / 4,
        "load_lazy: {w} units for {} bytes",
        doc.len()
    );
    // Each entity still builds under the scope it inherited.
    let agg = lazy::load_lazy(&doc, &p).unwrap();
    let e = agg.entity_document("https://e7.example").unwrap().unwrap();
    assert!(e.xml.contains("xmlns:md="), "{}", e.xml);
}
