//! Metadata documents for tests: a small two-entity aggregate, and the real-world documents of
//! `testdata/metadata` (see PROVENANCE.md there) with their pinned signers.

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use saml_core::dsig::{DSIG_NS, TrustedKeys};
use saml_core::xml::{Event, Limits, Reader, read_text};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, ContactType, EntityDescriptor, IdpSso, SpSso};

/// A document of `testdata/metadata`.
pub fn data(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/testdata/metadata/{name}",
        crate::peers::workspace_root().display()
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The first X509Certificate inside the root's ds:Signature, checked against a pinned
/// fingerprint: the pin is the trust decision, the document only carries the bytes.
pub fn pinned_signer(doc: &[u8], sha256: &str) -> TrustedKeys {
    let mut r = Reader::new(doc, Limits::default()).expect("reader");
    let mut in_sig = false;
    while let Some(ev) = r.next().expect("event") {
        match ev {
            Event::Start(s) if s.depth == 2 && s.is(DSIG_NS, "Signature") => in_sig = true,
            Event::Start(s) if in_sig && s.is(DSIG_NS, "X509Certificate") => {
                let text = read_text(&mut r).expect("text");
                let clean: String = text.split_whitespace().collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .expect("base64");
                let cert = X509::from_der(&der).expect("cert");
                let fp = cert.digest(MessageDigest::sha256()).expect("digest");
                let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
                assert_eq!(
                    hex.join(":"),
                    sha256,
                    "signer certificate is not the pinned one"
                );
                let mut keys = TrustedKeys::new();
                keys.add_certificate(&cert).expect("key");
                return keys;
            }
            _ => {}
        }
    }
    panic!("no signer certificate");
}

/// A real-world document whose signature verifies.
pub struct Case {
    /// File name in `testdata/metadata`.
    pub file: &'static str,
    /// SHA-256 fingerprint of the pinned signer certificate.
    pub sha256: &'static str,
    /// Needs the legacy algorithms (SHA-1).
    pub legacy: bool,
}

/// The verifiable real-world documents.
pub const VERIFIABLE: &[Case] = &[
    Case {
        file: "wayf-edugain-2019-signed.xml",
        sha256: "9F:B4:49:52:7F:69:0B:54:81:23:85:B0:F1:67:4A:C6:61:C5:D9:3E:93:F2:97:60:AF:12:5E:FD:C7:A6:2E:13",
        legacy: false,
    },
    Case {
        file: "adfs-v2-signed.xml",
        sha256: "78:6C:EC:26:40:FD:3F:18:8B:B5:08:14:51:7E:11:40:30:55:00:B8:25:57:34:5F:41:BB:E4:9C:21:E8:A5:F9",
        legacy: false,
    },
    Case {
        file: "adfs-v4-signed.xml",
        sha256: "A8:A9:86:37:D4:51:36:76:8C:F8:12:76:CB:CC:CD:58:DB:BF:FB:2E:8C:75:77:1F:01:CB:16:DC:4D:2E:42:35",
        legacy: false,
    },
    Case {
        file: "microsoftonline-sp-signed.xml",
        sha256: "9E:F2:66:00:24:7A:85:28:8D:6A:4E:EF:BC:0E:23:A8:33:6A:4F:87:1B:44:66:12:D4:C5:65:E6:4E:FD:FC:68",
        legacy: true,
    },
    Case {
        file: "ukfederation-2006-signed.xml",
        sha256: "CD:16:6D:A1:19:E4:B6:76:F1:91:C1:C5:23:98:DA:B1:91:D0:8D:4F:5A:60:F1:05:61:17:3B:8A:63:FE:3E:0F",
        legacy: true,
    },
    Case {
        file: "switch-aaitest-2008-signed.xml",
        sha256: "D4:87:9F:9D:ED:21:44:5D:66:9B:FA:7D:79:94:F3:7D:AA:28:D4:D9:2D:EB:90:D4:1D:49:65:3D:90:F6:C3:A9",
        legacy: true,
    },
    Case {
        file: "switch-aaitest-2014-signed.xml",
        sha256: "D1:11:97:EE:9E:6C:68:81:6A:69:76:56:6B:19:F7:60:99:C2:2A:A8:3A:B6:8F:E3:5D:42:0D:0F:13:39:89:68",
        legacy: true,
    },
];

/// The SAML metadata namespace.
pub const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

/// A small federation aggregate: two entities, extensions, an ID on the root.
pub fn small_aggregate() -> String {
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

/// Ten entities (five IdPs, five SPs) built with saml-metadata's builders around the certificate
/// `der`, with the extensions federations publish.
pub fn built_entities(der: &[u8]) -> Vec<EntityDescriptor> {
    let mut out = Vec::new();
    for n in 0..5 {
        out.push(
            EntityDescriptor::builder(&format!("https://idp{n}.example.edu/idp/shibboleth"))
                .registration("https://federation.example.org", None)
                .entity_category("http://refeds.org/category/hide-from-discovery")
                .idp(
                    IdpSso::builder()
                        .signing_certificate(der.to_vec())
                        .scope(&format!("idp{n}.example.edu"), false)
                        .display_name("en", &format!("Example University {n}"))
                        .sso(
                            Binding::HttpRedirect,
                            &format!("https://idp{n}.example.edu/sso"),
                        ),
                )
                .organization(
                    "en",
                    &format!("Example University {n}"),
                    "https://example.edu/",
                )
                .contact(ContactType::Technical, "mailto:ops@example.edu")
                .security_contact("mailto:cert@example.edu")
                .build()
                .unwrap(),
        );
        out.push(
            EntityDescriptor::builder(&format!("https://sp{n}.example.com/shibboleth"))
                .sp(SpSso::builder()
                    .encryption_certificate(der.to_vec())
                    .acs(Binding::HttpPost, &format!("https://sp{n}.example.com/acs"))
                    .requested_attribute(
                        "en",
                        "Example service",
                        "urn:oid:0.9.2342.19200300.100.1.3",
                        Some("mail"),
                        true,
                    ))
                .build()
                .unwrap(),
        );
    }
    out
}
