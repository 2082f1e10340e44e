//! Web SSO driven by metadata: keys and endpoints from EntityDescriptors built here, a full
//! SP -> IdP -> SP exchange through saml-core, and refusals when metadata lacks what is needed or
//! a request names an ACS the SP's metadata does not list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use saml_core::bindings::{MessageKind, redirect};
use saml_core::dsig::SigningKey;
use saml_core::protocol::idp::{Encryption, ResponseBuilder};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_TRANSIENT, NameId, OutstandingRequests, openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, SpSso};
use saml_metadata::sso;

fn cert(pkey: &PKey<openssl::pkey::Private>) -> X509 {
    let public = PKey::public_key_from_der(&pkey.public_key_to_der().unwrap()).unwrap();
    cert_of(&public, pkey)
}

#[test]
fn full_exchange_from_metadata() {
    let idp_pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let sp_pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let (idp_cert, sp_cert) = (cert(&idp_pkey), cert(&sp_pkey));
    let idp = EntityDescriptor::builder("https://idp.example.org/idp")
        .idp(
            IdpSso::builder()
                .signing_certificate(idp_cert.to_der().unwrap())
                .sso(
                    Binding::HttpRedirect,
                    "https://idp.example.org/sso/redirect",
                )
                .sso(Binding::HttpPost, "https://idp.example.org/sso/post"),
        )
        .build()
        .unwrap();
    let sp = EntityDescriptor::builder("https://sp.example.org/sp")
        .sp(SpSso::builder()
            .signing_certificate(sp_cert.to_der().unwrap())
            .encryption_certificate(sp_cert.to_der().unwrap())
            .want_assertions_signed(true)
            .acs(Binding::HttpPost, "https://sp.example.org/acs")
            .acs(Binding::HttpPost, "https://sp.example.org/acs2")
            .acs(Binding::HttpArtifact, "https://sp.example.org/artifact"))
        .build()
        .unwrap();
    let now = SystemTime::now();

    // SP: request to the IdP's Redirect endpoint, signed on the query string.
    let (req, sso_url) =
        sso::authn_request(&sp, &idp, Binding::HttpRedirect, "_r1".into(), now).unwrap();
    assert_eq!(sso_url, "https://idp.example.org/sso/redirect");
    assert_eq!(req.acs_url.as_deref(), Some("https://sp.example.org/acs"));
    let sp_key = SigningKey::new(sp_pkey.clone(), Some(sp_cert.clone())).unwrap();
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        None,
        Some(&sp_key),
        None,
    )
    .unwrap();
    let mut requests = OutstandingRequests::new();
    requests.insert(
        &req.id,
        &idp.entity_id,
        now + std::time::Duration::from_secs(300),
        now,
    );

    // IdP: verify with the SP's metadata keys, answer to the ACS its metadata lists, encrypt
    // to its metadata encryption key.
    let m = redirect::decode(&q, redirect::DEFAULT_MAX_INFLATED).unwrap();
    m.verify(&sso::sp_signing_keys(&sp).unwrap(), false)
        .unwrap();
    let got = AuthnRequest::parse(&m.xml).unwrap();
    let acs = sso::acs_for(&sp, &got).unwrap();
    let mut b = ResponseBuilder::for_request(
        &got,
        &idp.entity_id,
        &acs,
        NameId::new("t-1", NAMEID_TRANSIENT),
    );
    b.encryption = Some(Encryption {
        recipient: sso::sp_encryption_key(&sp).unwrap().unwrap(),
        algorithm: DataAlgorithm::Aes256Gcm,
        transport: KeyTransport::RsaOaepSha256,
    });
    let idp_key = SigningKey::new(idp_pkey, Some(idp_cert)).unwrap();
    let xml = b.build(&idp_key, now, &mut openssl_random).unwrap();

    // SP: validator from metadata (WantAssertionsSigned -> the assertion must be signed).
    let mut v = sso::response_validator(&sp, &idp).unwrap();
    assert!(v.require_signed_assertion);
    assert_eq!(v.acs_urls.len(), 2);
    v.decryption_keys = vec![sp_pkey];
    let ok = v
        .validate(&xml, now, &mut requests, &mut MemoryReplayCache::new())
        .unwrap();
    assert!(ok.encrypted && ok.assertion_signed);
    assert_eq!(ok.name_id().unwrap().value, "t-1");

    // A request naming an ACS the metadata does not list gets no Response.
    let mut evil = got.clone();
    evil.acs_url = Some("https://evil.example/acs".into());
    assert!(sso::acs_for(&sp, &evil).is_err());
    let mut by_index = got.clone();
    by_index.acs_url = None;
    by_index.acs_index = Some(1);
    assert_eq!(
        sso::acs_for(&sp, &by_index).unwrap(),
        "https://sp.example.org/acs2"
    );
    // An index naming an Artifact endpoint: a Response is POSTed, never sent there.
    by_index.acs_index = Some(2);
    assert!(sso::acs_for(&sp, &by_index).is_err());
    // Missing pieces of metadata are clear errors.
    assert!(
        sso::sso_location(&idp, &Binding::HttpArtifact)
            .unwrap_err()
            .to_string()
            .contains("SingleSignOnService")
    );
    assert!(sso::idp_signing_keys(&sp).is_err());
    let bare = EntityDescriptor::builder("https://idp2.example.org")
        .idp(IdpSso::builder().sso(Binding::HttpPost, "https://idp2.example.org/sso"))
        .build()
        .unwrap();
    assert!(
        sso::idp_signing_keys(&bare)
            .unwrap_err()
            .to_string()
            .contains("no signing certificate")
    );
}

/// Review A8 (SAML Metadata §2.2.3): without an index or URL in the request, the default ACS
/// is the first marked `isDefault="true"`, else the first without `isDefault`, else the first;
/// an endpoint the SP marked `isDefault="false"` came first before. Review A7: an `errorURL`
/// that is not an absolute URI is left out (it refused the whole aggregate in `load`), and a
/// URI attribute's surrounding white space (xs:anyURI collapses it) is not part of it.
#[test]
fn the_default_acs_and_lenient_informational_uris() {
    let md = |acs: &str| {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example.org/sp"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" errorURL="www.example.org/help">{acs}</md:SPSSODescriptor></md:EntityDescriptor>"#
        )
    };
    let post = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
    let doc = md(&format!(
        r#"<md:AssertionConsumerService index="0" isDefault="false" Binding="{post}" Location="https://sp.example.org/legacy"/><md:AssertionConsumerService index="1" Binding="{post}" Location=" https://sp.example.org/acs "/>"#
    ));
    let saml_metadata::model::Metadata::Entity(sp) =
        saml_metadata::load::parse_unverified(doc.as_bytes()).unwrap()
    else {
        panic!("an entity")
    };
    assert!(sp.sp().unwrap().common.error_url.is_none());
    let req = AuthnRequest::new(
        "_r".into(),
        "https://idp.example.org/idp",
        SystemTime::now(),
    );
    assert_eq!(
        sso::acs_for(&sp, &req).unwrap(),
        "https://sp.example.org/acs"
    );
}

/// Review A5: `sso` took the first IdP role whatever its `protocolSupportEnumeration`, so an
/// entity listing a SAML 1.1 role first had that role's endpoints (and keys) used for SAML 2.0.
/// The first role supporting SAML 2.0 is used; none is an error.
#[test]
fn the_saml2_role_is_the_one_used() {
    let redirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
    let md = |first_protocols: &str| {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.org/idp"><md:IDPSSODescriptor protocolSupportEnumeration="{first_protocols}"><md:SingleSignOnService Binding="{redirect}" Location="https://old.example.org/shibboleth-sso"/></md:IDPSSODescriptor><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="{redirect}" Location="https://idp.example.org/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    };
    let entity = |doc: String| {
        let saml_metadata::model::Metadata::Entity(e) =
            saml_metadata::load::parse_unverified(doc.as_bytes()).unwrap()
        else {
            panic!("an entity")
        };
        e
    };
    let idp = entity(md(
        "urn:oasis:names:tc:SAML:1.1:protocol urn:mace:shibboleth:1.0",
    ));
    assert_eq!(
        sso::sso_location(&idp, &Binding::HttpRedirect).unwrap(),
        "https://idp.example.org/sso"
    );
    // Both SAML 2.0: the first, as before.
    let idp = entity(md("urn:oasis:names:tc:SAML:2.0:protocol"));
    assert_eq!(
        sso::sso_location(&idp, &Binding::HttpRedirect).unwrap(),
        "https://old.example.org/shibboleth-sso"
    );
    // SAML 1.1 only: not an IdP for SAML 2.0.
    let only_old = md("urn:oasis:names:tc:SAML:1.1:protocol").replace(
        r#"<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.org/sso"/></md:IDPSSODescriptor>"#,
        "",
    );
    assert!(sso::sso_location(&entity(only_old), &Binding::HttpRedirect).is_err());
}

/// Review B10: `sp_encryption_key` took the SP's first key usable for encryption, one
/// without a use as well as one marked `use="encryption"`; an SP listing its
/// signing-and-encryption key before the key it marks for encryption (a rollover) had
/// assertions encrypted for the key it did not ask for. The marked key is preferred; without
/// one, the first key without a use is taken.
#[test]
fn the_sp_key_marked_for_encryption_is_preferred() {
    use saml_metadata::model::{KeyDescriptor, KeyUse};
    let both_pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let enc_pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let both = KeyDescriptor {
        key_use: KeyUse::Both,
        certificates: vec![cert(&both_pkey).to_der().unwrap()],
        key_names: Vec::new(),
        other_key_info: Vec::new(),
        encryption_methods: Vec::new(),
    };
    let sp = |with_marked: bool| {
        let mut b = SpSso::builder()
            .key(both.clone())
            .acs(Binding::HttpPost, "https://sp.example.org/acs");
        if with_marked {
            b = b.encryption_certificate(cert(&enc_pkey).to_der().unwrap());
        }
        EntityDescriptor::builder("https://sp.example.org/sp")
            .sp(b)
            .build()
            .unwrap()
    };
    let got = sso::sp_encryption_key(&sp(true)).unwrap().unwrap();
    assert!(got.public_eq(&enc_pkey));
    let got = sso::sp_encryption_key(&sp(false)).unwrap().unwrap();
    assert!(got.public_eq(&both_pkey));
}

/// A certificate (30 days) for the public key `public`, signed by `signer`.
fn cert_of(public: &PKey<openssl::pkey::Public>, signer: &PKey<openssl::pkey::Private>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "test").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(public).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(signer, openssl::hash::MessageDigest::sha256())
        .unwrap();
    b.build()
}

/// Review of the twelfth round, F8: one certificate over saml-core's key bounds made every
/// signing key of the entity unusable (no login with it at all), and an SP's encryption key
/// was taken whatever its exponent (one slow public-key operation per assertion). A usable
/// key is kept beside a refused one; an encryption key over the bounds is refused.
#[test]
fn keys_over_the_bounds_are_skipped_or_refused() {
    use openssl::bn::BigNum;
    let usual = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut e = BigNum::from_slice(&[0xffu8; 375]).unwrap();
    e.set_bit(0).unwrap();
    let slow_rsa =
        Rsa::from_public_components(BigNum::from_slice(&[0xffu8; 384]).unwrap(), e).unwrap();
    let slow = cert_of(&PKey::from_rsa(slow_rsa).unwrap(), &usual);
    let idp = |certs: &[&X509]| {
        let mut b = IdpSso::builder().sso(Binding::HttpRedirect, "https://idp.example.org/sso");
        for c in certs {
            b = b.signing_certificate(c.to_der().unwrap());
        }
        EntityDescriptor::builder("https://idp.example.org/idp")
            .idp(b)
            .build()
            .unwrap()
    };
    let good = cert(&usual);
    assert_eq!(
        sso::idp_signing_keys(&idp(&[&slow, &good]))
            .unwrap()
            .keys()
            .len(),
        1
    );
    assert!(sso::idp_signing_keys(&idp(&[&slow])).is_err());
    let sp = EntityDescriptor::builder("https://sp.example.org/sp")
        .sp(SpSso::builder()
            .signing_certificate(good.to_der().unwrap())
            .encryption_certificate(slow.to_der().unwrap())
            .acs(Binding::HttpPost, "https://sp.example.org/acs"))
        .build()
        .unwrap();
    assert!(sso::sp_encryption_key(&sp).is_err());
}
