//! Test helpers: keys and certificates made by the tests themselves, and a metadata document.
#![allow(dead_code, missing_docs)]

pub(crate) mod metadata;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use saml_core::dsig::{SigningKey, TrustedKeys};

pub(crate) struct TestKey {
    pub(crate) pkey: PKey<Private>,
    pub(crate) cert: X509,
}

impl TestKey {
    pub(crate) fn rsa(cn: &str) -> Self {
        Self::new(
            PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey"),
            cn,
        )
    }

    pub(crate) fn ec(nid: Nid, cn: &str) -> Self {
        let group = EcGroup::from_curve_name(nid).expect("group");
        Self::new(
            PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey"),
            cn,
        )
    }

    fn new(pkey: PKey<Private>, cn: &str) -> Self {
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", cn).expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("version");
        b.set_serial_number(
            &BigNum::from_u32(1)
                .expect("bn")
                .to_asn1_integer()
                .expect("serial"),
        )
        .expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&pkey).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(3650).expect("time"))
            .expect("na");
        b.sign(&pkey, MessageDigest::sha256()).expect("sign");
        TestKey {
            pkey,
            cert: b.build(),
        }
    }

    pub(crate) fn signing(&self) -> SigningKey {
        SigningKey::new(self.pkey.clone(), Some(self.cert.clone())).expect("signing key")
    }

    pub(crate) fn trusted(&self) -> TrustedKeys {
        let mut t = TrustedKeys::new();
        t.add_certificate(&self.cert).expect("cert");
        t
    }

    pub(crate) fn key_pem(&self) -> Vec<u8> {
        self.pkey.private_key_to_pem_pkcs8().expect("pem")
    }

    pub(crate) fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("pem")
    }
}

pub(crate) const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

/// A small federation aggregate: two entities, extensions, an ID on the root.
pub(crate) fn aggregate() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:shibmd="urn:mace:shibboleth:metadata:1.0" ID="_agg1" Name="https://federation.example.org" validUntil="2030-01-01T00:00:00Z">
  <md:Extensions><mdrpi:PublicationInfo xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" publisher="https://federation.example.org"/></md:Extensions>
  <md:EntityDescriptor entityID="https://idp.example.org/idp" ID="_e1">
    <md:Extensions><shibmd:Scope regexp="false">example.org</shibmd:Scope></md:Extensions>
    <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.org/sso"/>
    </md:IDPSSODescriptor>
    <md:Organization><md:OrganizationName xml:lang="en">Example Université</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">Example</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">https://example.org/</md:OrganizationURL></md:Organization>
  </md:EntityDescriptor>
  <md:EntityDescriptor entityID="https://sp.example.net/shibboleth" ID="_e2">
    <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.net/acs" index="0" isDefault="true"/>
    </md:SPSSODescriptor>
  </md:EntityDescriptor>
</md:EntitiesDescriptor>
"#
    .to_owned()
}
