//! Interop with the real xmlsec1 CLI (Debian `xmlsec1`), both directions: documents we sign
//! verify with `xmlsec1 --verify`; documents xmlsec1 signs (RSA and ECDSA) verify with us;
//! tampered documents fail in both. Needs xmlsec1 on PATH (the README's test command installs
//! it); a missing xmlsec1 fails these tests loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use openssl::nid::Nid;
use saml_core::dsig::{self, SignOptions, VerifyOptions};
use saml_core::{Error, SignatureError};
use testkit::metadata::small_aggregate as aggregate;
use testkit::signer::TestKey;

const ID_ATTR: &str = "--id-attr:ID";
const ROOT: &str = "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor";

fn xmlsec1(args: &[&str]) -> std::process::Output {
    Command::new("xmlsec1").args(args).output().unwrap_or_else(|e| {
        panic!("xmlsec1 is required for the interop tests and could not be run ({e}); run scripts/setup.sh")
    })
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p.to_string_lossy().into_owned()
}

fn xmlsec1_verifies(dir: &Path, cert_pem: &[u8], doc: &[u8]) -> bool {
    let cert = write(dir, "cert.pem", cert_pem);
    let file = write(dir, "doc.xml", doc);
    let out = xmlsec1(&["--verify", ID_ATTR, ROOT, "--pubkey-cert-pem", &cert, &file]);
    out.status.success()
}

#[test]
fn xmlsec1_verifies_what_we_sign() {
    let dir = tempfile::tempdir().expect("tmp");
    for key in [
        TestKey::rsa("rsa"),
        TestKey::ec(Nid::X9_62_PRIME256V1, "p256"),
        TestKey::ec(Nid::SECP384R1, "p384"),
    ] {
        for prefixes in [None, Some("md mdui")] {
            let opts = {
                let mut o = SignOptions::default();
                o.inclusive_prefixes = prefixes.map(str::to_owned);
                o
            };
            let signed = dsig::sign(aggregate().as_bytes(), &key.signing(), &opts).expect("sign");
            assert!(
                xmlsec1_verifies(dir.path(), &key.cert_pem(), &signed),
                "xmlsec1 rejected our signature ({prefixes:?})"
            );
            let tampered = String::from_utf8(signed)
                .expect("utf8")
                .replace("https://idp.example.org/sso", "https://evil.example/sso");
            assert!(
                !xmlsec1_verifies(dir.path(), &key.cert_pem(), tampered.as_bytes()),
                "xmlsec1 accepted a tampered document"
            );
        }
    }
}

/// The aggregate with an xmlsec signing template as the root's first child.
fn template(signature_method: &str) -> String {
    let tmpl = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{signature_method}"/><ds:Reference URI="#_agg1"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"##
    );
    aggregate().replacen(
        "\n  <md:Extensions>",
        &format!("{tmpl}\n  <md:Extensions>"),
        1,
    )
}

#[test]
fn we_verify_what_xmlsec1_signs() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            TestKey::rsa("rsa"),
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        ),
        (
            TestKey::ec(Nid::X9_62_PRIME256V1, "p256"),
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        ),
        (
            TestKey::ec(Nid::SECP384R1, "p384"),
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        ),
    ];
    for (key, method) in cases {
        let key_file = write(dir.path(), "key.pem", &key.key_pem());
        let cert_file = write(dir.path(), "signer.pem", &key.cert_pem());
        let tmpl = write(dir.path(), "tmpl.xml", template(method).as_bytes());
        let out_file = dir.path().join("signed.xml").to_string_lossy().into_owned();
        let keyspec = format!("{key_file},{cert_file}");
        let out = xmlsec1(&[
            "--sign",
            ID_ATTR,
            ROOT,
            "--privkey-pem",
            &keyspec,
            "--output",
            &out_file,
            &tmpl,
        ]);
        assert!(
            out.status.success(),
            "xmlsec1 --sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signed = std::fs::read(&out_file).expect("signed");
        let v = dsig::verify(&signed, &key.trusted(), &VerifyOptions::metadata())
            .unwrap_or_else(|e| panic!("we rejected xmlsec1's {method} signature: {e}"));
        assert_eq!(v.key_index(), 0);
        // A byte changed inside signed content fails for both.
        let tampered = String::from_utf8(signed)
            .expect("utf8")
            .replace("Example Université", "Example Universitee");
        assert!(matches!(
            dsig::verify(
                tampered.as_bytes(),
                &key.trusted(),
                &VerifyOptions::metadata()
            ),
            Err(Error::Signature(SignatureError::DigestMismatch))
        ));
        assert!(!xmlsec1_verifies(
            dir.path(),
            &key.cert_pem(),
            tampered.as_bytes()
        ));
        // Another key fails for us.
        let other = TestKey::rsa("other");
        assert!(matches!(
            dsig::verify(
                tampered.as_bytes(),
                &other.trusted(),
                &VerifyOptions::metadata()
            ),
            Err(Error::Signature(_))
        ));
    }
}

#[test]
fn xmlsec1_accepts_wrapping_that_we_reject() {
    // XMLDSIG.md: libxmlsec1 reports VALID for an evil root wrapping the signed aggregate.
    // This documents why xmlsec1 is never our only check.
    let dir = tempfile::tempdir().expect("tmp");
    let key = TestKey::rsa("rsa");
    let signed = String::from_utf8(
        dsig::sign(
            aggregate().as_bytes(),
            &key.signing(),
            &SignOptions::default(),
        )
        .expect("sign"),
    )
    .expect("utf8");
    let body = signed.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let wrapped = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"><md:EntityDescriptor entityID="https://evil.example/idp"/>{body}</md:EntitiesDescriptor>"#
    );
    assert!(
        xmlsec1_verifies(dir.path(), &key.cert_pem(), wrapped.as_bytes()),
        "xmlsec1 behaviour changed"
    );
    assert!(matches!(
        dsig::verify(
            wrapped.as_bytes(),
            &key.trusted(),
            &VerifyOptions::metadata()
        ),
        Err(Error::Signature(SignatureError::Missing))
    ));
}

/// Issue 13 item 1 changed how exclusive c14n finds the PrefixList bindings (only at the apex
/// and where an element redeclares a listed prefix). xmlsec1 is the oracle here: listed prefixes
/// declared at the apex and redeclared deeper with another or the same URI, `#default` declared
/// and undeclared, a listed prefix first declared below the apex, and one never declared.
#[test]
fn xmlsec1_agrees_on_prefix_list_scoping() {
    let dir = tempfile::tempdir().expect("tmp");
    let doc = r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:p="urn:p:1" xmlns="urn:d:1" ID="_agg1" Name="x"><md:Extensions><a p:x="1"><b xmlns:p="urn:p:2"><c xmlns:p="urn:p:2" xmlns:q="urn:q:1"><d xmlns=""><e xmlns="urn:d:2"/><md:f xmlns:p="urn:p:1"/></d></c></b><g xmlns:q="urn:q:2"><h xmlns:q="urn:q:2" xmlns:r="urn:r:1"/></g></a></md:Extensions><md:EntityDescriptor entityID="https://x.example"/></md:EntitiesDescriptor>"#;
    let key = TestKey::rsa("rsa");
    for prefixes in ["p q #default", "q", "#default", "r", "zz p"] {
        let opts = {
            let mut o = SignOptions::default();
            o.inclusive_prefixes = Some(prefixes.to_owned());
            o
        };
        let signed = dsig::sign(doc.as_bytes(), &key.signing(), &opts).expect("sign");
        assert!(
            xmlsec1_verifies(dir.path(), &key.cert_pem(), &signed),
            "xmlsec1 rejected our signature with PrefixList {prefixes:?}"
        );
        for parallel in [None, Some(0)] {
            let v = {
                let mut o = VerifyOptions::metadata();
                o.parallel_min_size = parallel;
                o
            };
            dsig::verify(&signed, &key.trusted(), &v)
                .unwrap_or_else(|e| panic!("{prefixes:?} {parallel:?}: {e}"));
        }
        // Changing a listed prefix's binding where it is only declared (not used) changes the
        // canonical form for both.
        let tampered = String::from_utf8(signed.clone())
            .unwrap()
            .replace("xmlns:q=\"urn:q:2\"><h", "xmlns:q=\"urn:q:3\"><h");
        if prefixes.contains('q') {
            assert!(!xmlsec1_verifies(
                dir.path(),
                &key.cert_pem(),
                tampered.as_bytes()
            ));
            assert!(
                dsig::verify(
                    tampered.as_bytes(),
                    &key.trusted(),
                    &VerifyOptions::metadata()
                )
                .is_err()
            );
        }
    }
}

/// saml-metadata's writer on the generated eduGAIN-shaped aggregate (every extension the
/// generator knows): the written document reads back to the same model, and once signed by the
/// xmlsec1 CLI (an independent signer) it loads through the verified path to the same model.
mod metadata_writer {
    use std::process::Command;
    use std::time::SystemTime;

    use saml_core::dsig::TrustedKeys;
    use saml_metadata::load::{self, Policy, parse_unverified};

    const TEMPLATE: &str = r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_edugain-bench-aggregate"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"##;

    #[test]
    fn generated_aggregate_round_trips_and_loads_once_xmlsec1_signed_it() {
        let md = parse_unverified(testkit::aggregate::generate(300, 3).as_bytes()).unwrap();
        let xml = md.to_xml().unwrap();
        assert_eq!(parse_unverified(xml.as_bytes()).unwrap(), md);

        let dir = tempfile::tempdir().unwrap();
        let (key_pem, cert_pem) = testkit::signer::rsa2048_self_signed("xmlsec1 signer").unwrap();
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
}

/// What the `samlmd` tool writes (`split --key`: one signed document per entity; `select`: a
/// re-signed aggregate) verifies with xmlsec1. The tool runs in process (`samlmd::run`, what
/// its binary calls).
mod samlmd_output {
    use std::path::Path;
    use std::process::Command;

    use testkit::signer::TestKey;

    fn samlmd(args: &[&Path]) {
        let args: Vec<String> = args.iter().map(|a| a.display().to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = samlmd::run(&args, &mut out, &mut err);
        assert_eq!(
            code,
            0,
            "samlmd {args:?}: {}",
            String::from_utf8_lossy(&err)
        );
    }

    fn xmlsec1_verifies(node: &str, cert: &Path, file: &Path) {
        let x = Command::new(testkit::peers::xmlsec1())
            .args(["--verify", "--id-attr:ID", node, "--pubkey-cert-pem"])
            .arg(cert)
            .arg(file)
            .output()
            .expect("xmlsec1 is required (scripts/setup.sh installs it)");
        assert!(
            x.status.success(),
            "xmlsec1 rejected {}: {}",
            file.display(),
            String::from_utf8_lossy(&x.stderr)
        );
    }

    #[test]
    fn split_entities_and_selections_verify_with_xmlsec1() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (key, cert) = TestKey::rsa("samlmd federation").write_pem(d, "fed");
        let (key2, cert2) = TestKey::rsa("samlmd republisher").write_pem(d, "rep");
        let (agg, signed) = (d.join("agg.xml"), d.join("signed.xml"));
        samlmd(&[Path::new("gen"), Path::new("40"), &agg]);
        let opt = |s: &'static str| Path::new(s);
        samlmd(&[
            opt("sign"),
            opt("--key"),
            &key,
            opt("--cert"),
            &cert,
            &agg,
            &signed,
        ]);

        let out = d.join("split");
        samlmd(&[
            opt("split"),
            opt("--cert"),
            &cert,
            opt("--key"),
            &key,
            opt("--sign-cert"),
            &cert,
            &signed,
            &out,
        ]);
        // The entity files, less the split's manifest (`.samlmd-split-*.list`).
        let mut files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 40);
        for f in files.iter().take(3) {
            xmlsec1_verifies(
                "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor",
                &cert,
                f,
            );
        }

        let idps = d.join("idps.xml");
        samlmd(&[
            opt("select"),
            opt("--cert"),
            &cert,
            opt("--role"),
            opt("idp"),
            opt("--key"),
            &key2,
            opt("--sign-cert"),
            &cert2,
            &signed,
            &idps,
        ]);
        xmlsec1_verifies(
            "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor",
            &cert2,
            &idps,
        );
    }
}
