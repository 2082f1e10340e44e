//! saml-metadata's writer on the generated eduGAIN-shaped aggregate (every extension the
//! generator knows): the written document reads back to the same model, and once signed by the
//! xmlsec1 CLI (an independent signer) it loads through the verified path to the same model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::SystemTime;

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::{self, Policy, parse_unverified};

const TEMPLATE: &str = r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_edugain-bench-aggregate"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"##;

#[test]
fn generated_aggregate_round_trips_and_loads_once_xmlsec1_signed_it() {
    let md = parse_unverified(saml_examples::aggregate::generate(300, 3).as_bytes()).unwrap();
    let xml = md.to_xml().unwrap();
    assert_eq!(parse_unverified(xml.as_bytes()).unwrap(), md);

    let dir = tempfile::tempdir().unwrap();
    let (key_pem, cert_pem) = saml_examples::signer::rsa2048_self_signed("xmlsec1 signer").unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::write(&cert, &cert_pem).unwrap();
    // The template goes first in the root (after its start tag), where metadata wants it.
    let root_end = xml.find("<md:EntitiesDescriptor").unwrap();
    let tag_end = root_end + xml[root_end..].find('>').unwrap() + 1;
    let tmpl = format!("{}{TEMPLATE}{}", &xml[..tag_end], &xml[tag_end..]);
    let tmpl_file = dir.path().join("tmpl.xml");
    std::fs::write(&tmpl_file, tmpl).unwrap();
    let signed_file = dir.path().join("signed.xml");
    let out = Command::new("xmlsec1")
        .args([
            "--sign",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor",
            "--privkey-pem",
        ])
        .arg(format!("{},{}", key.display(), cert.display()))
        .arg("--output")
        .arg(&signed_file)
        .arg(&tmpl_file)
        .output()
        .expect("xmlsec1 is required (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read(&signed_file).unwrap();
    let keys = TrustedKeys::from_pem(&cert_pem).unwrap();
    let loaded = load::load(&signed, &Policy::new(keys, SystemTime::now())).unwrap();
    assert_eq!(loaded.metadata(), &md);
    assert_eq!(loaded.len(), 300);
}
