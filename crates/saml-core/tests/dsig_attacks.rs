//! One test per attack class of XMLDSIG.md, each document built here with our own keys, each
//! rejected with a specific error. Plus the positive paths: RSA/ECDSA round trips, key
//! rollover, protocol-message placement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use saml_core::dsig::{self, DSIG_NS, Placement, SignOptions, Target, TrustedKeys, VerifyOptions};
use saml_core::xml::Event;
use saml_core::{Error, LimitExceeded, SignatureError, XmlError};
use testkit::metadata::small_aggregate as aggregate;
use testkit::signer::TestKey;

fn sign(doc: &str, key: &TestKey) -> String {
    let out = dsig::sign(doc.as_bytes(), &key.signing(), &SignOptions::default()).expect("sign");
    String::from_utf8(out).expect("utf-8")
}

fn verify_md(doc: &str, keys: &TrustedKeys) -> Result<(), Error> {
    dsig::verify(doc.as_bytes(), keys, &VerifyOptions::metadata()).map(|_| ())
}

fn sig_err(doc: &str, keys: &TrustedKeys) -> SignatureError {
    match verify_md(doc, keys) {
        Err(Error::Signature(e)) => e,
        other => panic!("expected a signature rejection, got {other:?}"),
    }
}

fn xml_err(doc: &str, keys: &TrustedKeys) -> XmlError {
    match verify_md(doc, keys) {
        Err(Error::Xml { kind, .. }) => kind,
        other => panic!("expected an XML rejection, got {other:?}"),
    }
}

/// Splits a signed document around its ds:Signature: (before, signature, after).
fn split_signature(doc: &str) -> (&str, &str, &str) {
    let start = doc.find("<ds:Signature").expect("signature start");
    let end = doc.find("</ds:Signature>").expect("signature end") + "</ds:Signature>".len();
    (&doc[..start], &doc[start..end], &doc[end..])
}

const EVIL: &str = r#"<md:EntityDescriptor entityID="https://evil.example/idp" ID="_evil"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://evil.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;

#[test]
fn round_trip_rsa_and_ecdsa() {
    for key in [
        TestKey::rsa("rsa"),
        TestKey::ec(Nid::X9_62_PRIME256V1, "p256"),
        TestKey::ec(Nid::SECP384R1, "p384"),
        TestKey::ec(Nid::SECP521R1, "p521"),
    ] {
        let signed = sign(&aggregate(), &key);
        let v = dsig::verify(
            signed.as_bytes(),
            &key.trusted(),
            &VerifyOptions::metadata(),
        )
        .expect("verify");
        assert_eq!(v.key_index(), 0);
        assert!(v.signed_xml().starts_with("<md:EntitiesDescriptor"));
        assert!(v.canonical_len() > 1000);
    }
}

#[test]
fn all_signature_algorithms_round_trip() {
    use dsig::{DigestAlgorithm as D, SignatureAlgorithm as S};
    let rsa = TestKey::rsa("rsa");
    let ec = TestKey::ec(Nid::X9_62_PRIME256V1, "ec");
    for (key, alg) in [
        (&rsa, S::RsaSha256),
        (&rsa, S::RsaSha384),
        (&rsa, S::RsaSha512),
        (&ec, S::EcdsaSha256),
        (&ec, S::EcdsaSha384),
        (&ec, S::EcdsaSha512),
    ] {
        for digest in [D::Sha256, D::Sha384, D::Sha512] {
            let opts = {
                let mut o = SignOptions::default();
                o.algorithm = Some(alg);
                o.digest = digest;
                o
            };
            let signed = dsig::sign(aggregate().as_bytes(), &key.signing(), &opts).expect("sign");
            let v =
                dsig::verify(&signed, &key.trusted(), &VerifyOptions::metadata()).expect("verify");
            assert_eq!((v.algorithm(), v.digest_algorithm()), (alg, digest));
        }
    }
}

#[test]
fn key_rollover_reports_which_key_verified() {
    let old = TestKey::rsa("old");
    let new = TestKey::ec(Nid::X9_62_PRIME256V1, "new");
    let mut keys = TrustedKeys::new();
    keys.add_certificate(&old.cert).expect("old");
    keys.add_certificate(&new.cert).expect("new");
    let signed = sign(&aggregate(), &new);
    let v = dsig::verify(signed.as_bytes(), &keys, &VerifyOptions::metadata()).expect("verify");
    assert_eq!(v.key_index(), 1);
    assert_eq!(keys.keys()[1].name(), "new");
    // PEM with several blocks, text around them.
    let mut pem = b"rollover set\n".to_vec();
    pem.extend(old.cert_pem());
    pem.extend(new.cert_pem());
    assert_eq!(TrustedKeys::from_pem(&pem).expect("pem").len(), 2);
}

#[test]
fn signed_content_is_reached_only_through_the_result_and_without_the_signature() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let v = dsig::verify(
        signed.as_bytes(),
        &key.trusted(),
        &VerifyOptions::metadata(),
    )
    .expect("verify");
    let mut events = v.events().expect("events");
    let mut entity_ids = Vec::new();
    let mut saw_signature = false;
    while let Some(ev) = events.next().expect("event") {
        if let Event::Start(s) = ev {
            saw_signature |= s.namespace == DSIG_NS;
            if s.name.local == "EntityDescriptor" {
                entity_ids.push(
                    s.attribute("entityID")
                        .expect("entityID")
                        .value()
                        .into_owned(),
                );
            }
        }
    }
    assert!(!saw_signature);
    assert_eq!(
        entity_ids,
        [
            "https://idp.example.org/idp",
            "https://sp.example.net/shibboleth"
        ]
    );
}

// --- XSW analogues for metadata -------------------------------------------------------------

#[test]
fn xsw_evil_root_wrapping_the_signed_aggregate() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let body = signed.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let wrapped = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{EVIL}{body}</md:EntitiesDescriptor>"#
    );
    assert_eq!(sig_err(&wrapped, &key.trusted()), SignatureError::Missing);
    // Even placing a copy of the genuine Signature first in the evil root fails.
    let (_, sig, _) = split_signature(&signed);
    let wrapped2 = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="_agg1">{sig}{EVIL}{body}</md:EntitiesDescriptor>"#
    );
    assert!(matches!(
        sig_err(&wrapped2, &key.trusted()),
        SignatureError::DuplicateId(_) | SignatureError::DigestMismatch
    ));
}

#[test]
fn xsw_evil_entity_inside_signature_object() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let evil = signed.replace(
        "</ds:KeyInfo></ds:Signature>",
        &format!("</ds:KeyInfo><ds:Object>{EVIL}</ds:Object></ds:Signature>"),
    );
    assert!(
        matches!(sig_err(&evil, &key.trusted()), SignatureError::Structure(m) if m.contains("Object"))
    );
}

#[test]
fn xsw_evil_entity_in_extensions_or_appended_after_signing() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let in_ext = signed.replace("<shibmd:Scope", &format!("{EVIL}<shibmd:Scope"));
    assert_eq!(
        sig_err(&in_ext, &key.trusted()),
        SignatureError::DigestMismatch
    );
    let appended = signed.replace(
        "</md:EntitiesDescriptor>",
        &format!("{EVIL}</md:EntitiesDescriptor>"),
    );
    assert_eq!(
        sig_err(&appended, &key.trusted()),
        SignatureError::DigestMismatch
    );
    let before = signed.replace(
        "  <md:EntityDescriptor entityID=\"https://idp",
        &format!(
            "{}  <md:EntityDescriptor entityID=\"https://idp",
            EVIL.replace("https://evil.example/idp", "https://idp.example.org/idp")
        ),
    );
    assert_eq!(
        sig_err(&before, &key.trusted()),
        SignatureError::DigestMismatch
    );
}

#[test]
fn xsw_duplicate_ids_are_rejected() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let dup = signed.replace("ID=\"_e2\"", "ID=\"_e1\"");
    assert_eq!(
        sig_err(&dup, &key.trusted()),
        SignatureError::DuplicateId("_e1".into())
    );
}

#[test]
fn xsw_reference_to_a_nested_element() {
    let key = TestKey::rsa("k");
    // The signer signed entity _e1 only, the verifier asks for the root.
    let nested = {
        let mut o = SignOptions::default();
        o.target = Target::Id("_e1".into());
        o
    };
    let signed = String::from_utf8(
        dsig::sign(aggregate().as_bytes(), &key.signing(), &nested).expect("sign"),
    )
    .expect("utf8");
    assert_eq!(sig_err(&signed, &key.trusted()), SignatureError::Missing);
    // Moving that signature up to the root keeps it pointing at _e1.
    let (before, sig, after) = split_signature(&signed);
    let moved = format!("{before}{after}").replacen(
        "<md:Extensions><mdrpi",
        &format!("{sig}<md:Extensions><mdrpi"),
        1,
    );
    assert_eq!(
        sig_err(&moved, &key.trusted()),
        SignatureError::ReferenceUri("#_e1".into())
    );
}

// --- SignedInfo structure -------------------------------------------------------------------

#[test]
fn multiple_or_wrapped_signed_info() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let (_, sig, _) = split_signature(&signed);
    let si_start = sig.find("<ds:SignedInfo>").expect("si");
    let si_end = sig.find("</ds:SignedInfo>").expect("si") + "</ds:SignedInfo>".len();
    let si = &sig[si_start..si_end];
    let twice = signed.replacen(si, &format!("{si}{si}"), 1);
    assert!(matches!(
        sig_err(&twice, &key.trusted()),
        SignatureError::Structure(_)
    ));
    let wrapped = signed.replacen(si, &format!("<ds:SignedInfo>{si}</ds:SignedInfo>"), 1);
    assert!(matches!(
        sig_err(&wrapped, &key.trusted()),
        SignatureError::Structure(_)
    ));
    let two_refs_start = si.find("<ds:Reference").expect("ref");
    let two_refs_end = si.find("</ds:Reference>").expect("ref") + "</ds:Reference>".len();
    let reference = &si[two_refs_start..two_refs_end];
    let two = signed.replacen(reference, &format!("{reference}{reference}"), 1);
    assert!(
        matches!(sig_err(&two, &key.trusted()), SignatureError::Structure(m) if m.contains("Reference"))
    );
}

#[test]
fn signature_position_and_count() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let (before, sig, after) = split_signature(&signed);
    let unsigned = format!("{before}{after}");
    let late = unsigned.replace(
        "</md:EntitiesDescriptor>",
        &format!("{sig}</md:EntitiesDescriptor>"),
    );
    // Metadata requires the signature as first child: a first child that is anything else
    // is where the document is refused (a later signature is not looked for).
    assert_eq!(sig_err(&late, &key.trusted()), SignatureError::Missing);
    let twice = signed.replacen(sig, &format!("{sig}{sig}"), 1);
    assert_eq!(sig_err(&twice, &key.trusted()), SignatureError::Multiple);
}

/// Finding: refusing a document no trusted key signed costs its head, but an unsigned one
/// (simpler to send) was read to its end, its IDs hashed, before it was refused: an MDQ
/// client or `samlmd` paid a whole pass over up to `max_size` bytes. With the signature
/// required as first child, the first child element decides, as does a first child that does
/// not start within `max_signature_size` bytes (a long comment before the signature).
#[test]
fn an_unsigned_document_is_refused_at_its_first_child() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let (before, sig, after) = split_signature(&signed);
    // What follows the first child is not read: neither a syntax error nor a duplicate ID
    // further on is what refuses it.
    for tail in ["<<<not xml", "<md:EntityDescriptor ID=\"_e1\"/>"] {
        let unsigned = format!(
            "{before}{}{tail}",
            after.replacen("</md:EntitiesDescriptor>", "", 1)
        );
        assert_eq!(
            sig_err(&unsigned, &key.trusted()),
            SignatureError::Missing,
            "{tail}"
        );
    }
    // A first child that starts more than max_signature_size (64 KiB) into the root.
    let comment = format!("<!--{}-->", "x".repeat(64 << 10));
    let late = format!("{before}{comment}{sig}{after}");
    assert_eq!(sig_err(&late, &key.trusted()), SignatureError::Missing);
    // A short comment there is fine (comments are not canonicalized).
    let fine = format!("{before}<!-- federation -->{sig}{after}");
    verify_md(&fine, &key.trusted()).expect("a short comment before the signature");
}

#[test]
fn comment_inside_digest_value_or_anywhere_in_signature() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let (_, sig, _) = split_signature(&signed);
    let dv = sig.find("<ds:DigestValue>").expect("dv") + "<ds:DigestValue>".len();
    let with_comment = signed.replacen(&sig[..dv], &format!("{}<!-- x -->", &sig[..dv]), 1);
    assert_eq!(
        sig_err(&with_comment, &key.trusted()),
        SignatureError::CommentInSignature
    );
}

#[test]
fn comment_injection_does_not_split_a_signed_value() {
    // The signer signed "admin@example.org.evil.example"; an attacker inserts a comment so a
    // naive reader would see "admin@example.org". The digest is unchanged (comments are not
    // signed), so verification passes, and the value read from the verified content is whole.
    let key = TestKey::rsa("k");
    let doc = aggregate().replace(
        "<md:OrganizationDisplayName xml:lang=\"en\">Example",
        "<md:OrganizationDisplayName xml:lang=\"en\">admin@example.org.evil.example",
    );
    let signed = sign(&doc, &key);
    let injected = signed.replace(
        "admin@example.org.evil.example",
        "admin@example.org<!---->.evil.example",
    );
    let v = dsig::verify(
        injected.as_bytes(),
        &key.trusted(),
        &VerifyOptions::metadata(),
    )
    .expect("verify");
    let mut events = v.events().expect("events");
    let mut value = None;
    while let Some(ev) = events.next().expect("event") {
        if let Event::Start(s) = ev
            && s.name.local == "OrganizationDisplayName"
        {
            value = Some(saml_core::xml::read_text(&mut events).expect("text"));
        }
    }
    assert_eq!(value.as_deref(), Some("admin@example.org.evil.example"));
}

// --- Parser differentials -------------------------------------------------------------------

#[test]
fn doctype_tricks_are_refused_before_any_signature_work() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let body = signed.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    // ruby-saml CVE-2025-25291: a quote inside the SYSTEM literal.
    let quote = format!("<!DOCTYPE x SYSTEM \"a'\" [<!-- '>]>{body}");
    assert_eq!(xml_err(&quote, &key.trusted()), XmlError::DocType);
    // CVE-2025-25292: ATTLIST #FIXED xmlns on an unprefixed Signature.
    let fixed = format!(
        "<!DOCTYPE md:EntitiesDescriptor [<!ATTLIST Signature xmlns CDATA #FIXED \"http://www.w3.org/2000/09/xmldsig#\">]>{body}"
    );
    assert_eq!(xml_err(&fixed, &key.trusted()), XmlError::DocType);
    // ID declared through an ATTLIST (makes xmlsec1 accept without --id-attr).
    let attlist = format!("<!DOCTYPE x [<!ATTLIST md:EntityDescriptor ID ID #IMPLIED>]>{body}");
    assert_eq!(xml_err(&attlist, &key.trusted()), XmlError::DocType);
}

#[test]
fn void_canonicalization_through_an_invalid_namespace_uri() {
    // CVE-2025-66568: a relative namespace URI made a c14n library return empty output whose
    // digest (SHA-256 of "") the attacker put in DigestValue.
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let empty_digest = base64::engine::general_purpose::STANDARD
        .encode(hash(MessageDigest::sha256(), b"").expect("hash"));
    let (_, sig, _) = split_signature(&signed);
    let dv_start = sig.find("<ds:DigestValue>").expect("dv") + 16;
    let dv_end = sig.find("</ds:DigestValue>").expect("dv");
    let evil = signed
        .replacen(&sig[dv_start..dv_end], &empty_digest, 1)
        .replacen(
            "xmlns:shibmd=\"urn:mace:shibboleth:metadata:1.0\"",
            "xmlns:shibmd=\"not a uri\"",
            1,
        );
    assert!(matches!(
        xml_err(&evil, &key.trusted()),
        XmlError::BadNamespaceDeclaration(_)
    ));
    // Canonicalization of any element is never empty.
    let mut c = saml_core::c14n::Canonicalizer::new(Vec::new(), Default::default());
    assert!(
        c.event(&Event::Comment(saml_core::xml::Text {
            raw: "",
            cdata: false,
            span: 0..0
        }))
        .is_err()
    );
    assert!(
        saml_core::c14n::Canonicalizer::new(Vec::<u8>::new(), Default::default())
            .finish()
            .is_err()
    );
}

#[test]
fn go_style_round_trip_names() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let colons = signed
        .replacen("<md:Extensions>", "<md::Extensions>", 1)
        .replacen("</md:Extensions>", "</md::Extensions>", 1);
    assert!(matches!(
        xml_err(&colons, &key.trusted()),
        XmlError::InvalidName(_)
    ));
    let eq = signed.replacen("<md:Extensions>", "<md:Extensions x:=\"\">", 1);
    assert!(matches!(
        xml_err(&eq, &key.trusted()),
        XmlError::InvalidName(_)
    ));
}

// --- Key confusion --------------------------------------------------------------------------

#[test]
fn attacker_key_in_key_info_is_not_trusted() {
    let trusted = TestKey::rsa("federation");
    let attacker = TestKey::rsa("attacker");
    // Signed by the attacker with the attacker's certificate in KeyInfo.
    let forged = sign(&aggregate(), &attacker);
    assert_eq!(
        sig_err(&forged, &trusted.trusted()),
        SignatureError::NotTrusted
    );
    // Signed by the attacker, KeyInfo claiming the federation's certificate.
    let b64 = base64::engine::general_purpose::STANDARD;
    let claimed = forged.replace(
        &b64.encode(attacker.cert.to_der().expect("der")),
        &b64.encode(trusted.cert.to_der().expect("der")),
    );
    assert_eq!(
        sig_err(&claimed, &trusted.trusted()),
        SignatureError::NotTrusted
    );
    // Signed by the federation, KeyInfo carrying the attacker's certificate: KeyInfo never
    // grants trust, but a signer claiming another identity is refused (issue 18: Shibboleth
    // SP refuses it, and what it refuses we refuse).
    let signed = sign(&aggregate(), &trusted);
    let trusted_b64 = b64.encode(trusted.cert.to_der().expect("der"));
    let other_cert = signed.replace(
        &trusted_b64,
        &b64.encode(attacker.cert.to_der().expect("der")),
    );
    assert_eq!(
        sig_err(&other_cert, &trusted.trusted()),
        SignatureError::KeyInfoMismatch
    );
    // A renewed certificate of the same key in KeyInfo, or a chain holding the signer's
    // certificate next to another one, is the signer: accepted.
    let renewed = signed.replace(
        &trusted_b64,
        &b64.encode(
            trusted
                .reissued("federation 2027")
                .cert
                .to_der()
                .expect("der"),
        ),
    );
    verify_md(&renewed, &trusted.trusted()).expect("renewed certificate of the same key");
    let chain = signed.replace(
        &format!("<ds:X509Certificate>{trusted_b64}</ds:X509Certificate>"),
        &format!(
            "<ds:X509Certificate>{}</ds:X509Certificate><ds:X509Certificate>{trusted_b64}</ds:X509Certificate>",
            b64.encode(attacker.cert.to_der().expect("der"))
        ),
    );
    assert_ne!(chain, signed);
    verify_md(&chain, &trusted.trusted()).expect("a chain holding the signer's certificate");
    // No KeyInfo at all: the configured key decides alone.
    let s = signed.find("<ds:KeyInfo").expect("KeyInfo");
    let e = signed.find("</ds:KeyInfo>").expect("KeyInfo end") + "</ds:KeyInfo>".len();
    let bare = format!("{}{}", &signed[..s], &signed[e..]);
    verify_md(&bare, &trusted.trusted()).expect("no KeyInfo");
}

#[test]
fn hmac_md5_sha1_and_unknown_algorithms_are_refused() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let alg = |from: &str, to: &str| sig_err(&signed.replacen(from, to, 1), &key.trusted());
    let rsa256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    let sha256 = "http://www.w3.org/2001/04/xmlenc#sha256";
    assert!(matches!(
        alg(rsa256, "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"),
        SignatureError::Algorithm(_)
    ));
    assert!(
        matches!(alg(rsa256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1"), SignatureError::Algorithm(m) if m.contains("SHA-1"))
    );
    assert!(matches!(
        alg(rsa256, "http://www.w3.org/2000/09/xmldsig#dsa-sha1"),
        SignatureError::Algorithm(_)
    ));
    assert!(matches!(
        alg(sha256, "http://www.w3.org/2001/04/xmldsig-more#md5"),
        SignatureError::Algorithm(_)
    ));
    assert!(matches!(
        alg(sha256, "http://www.w3.org/2000/09/xmldsig#sha1"),
        SignatureError::Algorithm(_)
    ));
    assert!(matches!(
        alg(
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/TR/2001/REC-xml-c14n-20010315\""
        ),
        SignatureError::Algorithm(_)
    ));
}

#[test]
fn transforms_must_be_enveloped_then_exc_c14n() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let env = "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>";
    let exc = "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>";
    assert!(signed.contains(exc), "signer output changed");
    let only_env = signed.replacen(exc, "", 1);
    assert!(matches!(
        sig_err(&only_env, &key.trusted()),
        SignatureError::Transforms(_)
    ));
    let reversed = signed.replacen(&format!("{env}{exc}"), &format!("{exc}{env}"), 1);
    assert!(matches!(
        sig_err(&reversed, &key.trusted()),
        SignatureError::Transforms(_)
    ));
    let xpath = signed.replacen(exc, "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"><ds:XPath>1</ds:XPath></ds:Transform>", 1);
    assert!(matches!(
        sig_err(&xpath, &key.trusted()),
        SignatureError::Transforms(_)
    ));
    let remote = signed.replacen("URI=\"#_agg1\"", "URI=\"file:///etc/passwd\"", 1);
    assert_eq!(
        sig_err(&remote, &key.trusted()),
        SignatureError::ReferenceUri("file:///etc/passwd".into())
    );
}

// --- Fail-open ------------------------------------------------------------------------------

#[test]
fn fail_closed_without_signature_or_reference() {
    let key = TestKey::rsa("k");
    assert_eq!(
        sig_err(&aggregate(), &key.trusted()),
        SignatureError::Missing
    );
    let signed = sign(&aggregate(), &key);
    let start = signed.find("<ds:Reference").expect("ref");
    let end = signed.find("</ds:Reference>").expect("ref") + "</ds:Reference>".len();
    let no_ref = format!("{}{}", &signed[..start], &signed[end..]);
    assert!(matches!(
        sig_err(&no_ref, &key.trusted()),
        SignatureError::Structure(_)
    ));
    assert!(matches!(
        verify_md(&signed, &TrustedKeys::new()),
        Err(Error::Usage(_))
    ));
    let tampered_sig = {
        let at = signed.find("<ds:SignatureValue>").expect("sv") + 19;
        let mut b = signed.clone().into_bytes();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("utf8")
    };
    assert_eq!(
        sig_err(&tampered_sig, &key.trusted()),
        SignatureError::NotTrusted
    );
}

// --- Resource exhaustion --------------------------------------------------------------------

#[test]
fn resource_exhaustion_is_bounded() {
    let key = TestKey::rsa("k");
    // Inside what would be the signature: an unsigned first child is refused before depth.
    let deep = format!(
        "<r><Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">{}{}</Signature></r>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    assert!(matches!(
        verify_md(&deep, &key.trusted()),
        Err(Error::Limit {
            limit: LimitExceeded::Depth(64),
            ..
        })
    ));
    let huge = format!("<r a=\"{}\"/>", "x".repeat(100_000));
    assert!(matches!(
        verify_md(&huge, &key.trusted()),
        Err(Error::Limit {
            limit: LimitExceeded::AttributeLength(_),
            ..
        })
    ));
    let signed = sign(&aggregate(), &key);
    let fat = signed.replacen(
        "</ds:X509Certificate>",
        &format!(
            "</ds:X509Certificate><ds:X509SubjectName>{}</ds:X509SubjectName>",
            "x".repeat(70_000)
        ),
        1,
    );
    assert!(matches!(
        verify_md(&fat, &key.trusted()),
        Err(Error::Limit {
            limit: LimitExceeded::SignatureSize(_),
            ..
        })
    ));
}

// --- Protocol messages ----------------------------------------------------------------------

#[test]
fn protocol_message_signature_after_issuer() {
    let key = TestKey::ec(Nid::X9_62_PRIME256V1, "idp");
    let response = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion ID="_a1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#;
    let opts = {
        let mut o = SignOptions::default();
        o.target = Target::Id("_a1".into());
        o.placement = Placement::AfterIssuer;
        o
    };
    let signed =
        String::from_utf8(dsig::sign(response.as_bytes(), &key.signing(), &opts).expect("sign"))
            .expect("utf8");
    assert!(signed.contains("https://idp.example.org</saml:Issuer><ds:Signature"));
    let v = dsig::verify(
        signed.as_bytes(),
        &key.trusted(),
        &VerifyOptions::protocol("_a1"),
    )
    .expect("verify");
    assert!(v.signed_xml().starts_with("<saml:Assertion"));
    // The assertion content is read with its inherited namespaces.
    let mut ev = v.events().expect("events");
    let mut names = Vec::new();
    while let Some(e) = ev.next().expect("event") {
        if let Event::Start(s) = e {
            names.push(format!("{{{}}}{}", s.namespace, s.name.local));
        }
    }
    assert_eq!(names[0], "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion");
    assert!(!names.iter().any(|n| n.contains(DSIG_NS)));
    // The signed Response root is not the assertion.
    assert_eq!(
        dsig::verify(
            signed.as_bytes(),
            &key.trusted(),
            &VerifyOptions::protocol("_r1")
        )
        .map(|_| ())
        .unwrap_err()
        .signature_error(),
        Some(&SignatureError::Missing)
    );
    // XSW-style: a second assertion copying the ID is rejected.
    let dup = signed.replacen(
        "<samlp:Status>",
        "<saml:Assertion ID=\"_a1\"/><samlp:Status>",
        1,
    );
    assert_eq!(
        dsig::verify(
            dup.as_bytes(),
            &key.trusted(),
            &VerifyOptions::protocol("_a1")
        )
        .map(|_| ())
        .unwrap_err()
        .signature_error(),
        Some(&SignatureError::DuplicateId("_a1".into()))
    );
}

#[test]
fn fragments_and_observers_stay_inside_the_signed_content() {
    let key = TestKey::rsa("k");
    let signed = sign(&aggregate(), &key);
    let mut starts = Vec::new();
    let v = dsig::verify_observed(
        signed.as_bytes(),
        &key.trusted(),
        &VerifyOptions::metadata(),
        &mut |ev| {
            if let Event::Start(s) = ev
                && s.name.local == "EntityDescriptor"
            {
                starts.push(s.span.start);
            }
        },
    )
    .expect("verify");
    assert_eq!(starts.len(), 2);
    let e1 = starts[0]
        ..signed.find("</md:EntityDescriptor>").expect("end") + "</md:EntityDescriptor>".len();
    let scope = [saml_core::xml::NsDecl {
        prefix: "md",
        uri: "urn:oasis:names:tc:SAML:2.0:metadata",
    }];
    let mut r = v.fragment(e1.clone(), &scope).expect("inside");
    let Some(Event::Start(s)) = r.next().expect("event") else {
        panic!()
    };
    assert_eq!(s.namespace, "urn:oasis:names:tc:SAML:2.0:metadata");
    // The root itself, the Signature, or a range reaching past the signed element are refused.
    assert!(v.fragment(v.signed_range(), &[]).is_err());
    assert!(v.fragment(v.signature_range(), &scope).is_err());
    assert!(v.fragment(e1.start..signed.len() + 10, &scope).is_err());
    let before_sig = v.signed_range().start + 1..v.signature_range().start + 5;
    assert!(v.fragment(before_sig, &scope).is_err());
}

/// Dsig review L2: `Verified::fragment` took any range inside the signed element. Comments are
/// not digested, so anyone can add one holding an element to a signed document, and markup
/// inside a CDATA section was signed as text: a range pointing into either read those bytes as
/// verified elements. A fragment must now begin with a start tag the verification read; the
/// genuine elements around the inserted comment still read.
#[test]
fn fragments_cannot_begin_inside_comments_or_cdata() {
    let key = TestKey::rsa("k");
    let doc = aggregate().replace(
        "</md:EntitiesDescriptor>",
        "<md:Extensions><![CDATA[<md:EntityDescriptor entityID=\"https://cdata.example\"/>]]></md:Extensions></md:EntitiesDescriptor>",
    );
    let signed = sign(&doc, &key);
    // Added after signing, inside the signed element: the signature still verifies.
    let (before, sig, after) = split_signature(&signed);
    let tampered = format!("{before}{sig}<!--{EVIL}-->{after}");
    let mut starts = Vec::new();
    let v = dsig::verify_observed(
        tampered.as_bytes(),
        &key.trusted(),
        &VerifyOptions::metadata(),
        &mut |ev| {
            if let Event::Start(s) = ev
                && s.name.local == "EntityDescriptor"
            {
                starts.push(s.span.start);
            }
        },
    )
    .expect("comments are not digested");
    assert_eq!(starts.len(), 2, "the verification read two entities");
    let scope = [saml_core::xml::NsDecl {
        prefix: "md",
        uri: "urn:oasis:names:tc:SAML:2.0:metadata",
    }];
    let evil = tampered.find(EVIL).expect("inserted");
    let in_comment = evil..evil + EVIL.len();
    let e = v.fragment(in_comment, &scope).map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e}");
    let cdata = tampered
        .find("<md:EntityDescriptor entityID=\"https://cdata")
        .expect("cdata");
    let in_cdata = cdata..cdata + tampered[cdata..].find("/>").expect("end") + 2;
    assert!(v.fragment(in_cdata, &scope).is_err(), "inside CDATA");
    // An end tag, or a comment, is not an element either.
    let end_tag = tampered.find("</md:EntityDescriptor>").expect("end tag");
    assert!(
        v.fragment(end_tag..end_tag + 22, &scope).is_err(),
        "an end tag"
    );
    let comment = tampered.find("<!--").expect("comment");
    assert!(
        v.fragment(comment..comment + 4 + EVIL.len() + 3, &scope)
            .is_err(),
        "a comment"
    );
    // The genuine entities still read.
    for &start in &starts {
        let end = start
            + tampered[start..]
                .find("</md:EntityDescriptor>")
                .expect("end")
            + "</md:EntityDescriptor>".len();
        let mut r = v.fragment(start..end, &scope).expect("a genuine entity");
        let Some(Event::Start(s)) = r.next().expect("event") else {
            panic!("a start tag")
        };
        assert_eq!(s.name.local, "EntityDescriptor");
    }
}

/// Issue 13 item 6: an ID written with a character reference (`&#95;a1` is `_a1`) or with white
/// space reads differently raw and normalized. Before, the verifier compared raw values (so
/// `ID="&#95;a1"` and `ID="_a1"` were not duplicates, and the signed element was not found by
/// its normalized ID) while `sign` compared normalized ones. Now both refuse such IDs.
#[test]
fn ids_written_with_references_or_white_space_are_refused() {
    let key = TestKey::ec(Nid::X9_62_PRIME256V1, "idp");
    let response = |assertion_id: &str, extra: &str| {
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r1" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer>{extra}<saml:Assertion ID="{assertion_id}" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp.example.org</saml:Issuer><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#
        )
    };
    let opts = {
        let mut o = SignOptions::default();
        o.target = Target::Id("_a1".into());
        o.placement = Placement::AfterIssuer;
        o
    };
    let invalid = |e: Error| match e {
        Error::Signature(SignatureError::InvalidId(id)) => id,
        other => panic!("expected InvalidId, got {other:?}"),
    };
    // sign and verify agree: neither takes `&#95;a1` for `_a1`.
    for written in ["&#95;a1", "&#x5F;a1"] {
        let doc = response(written, "");
        let err = dsig::sign(doc.as_bytes(), &key.signing(), &opts).unwrap_err();
        assert_eq!(invalid(err), written);
    }
    // (White space normalizes to a different value, so there is nothing to find.)
    for written in ["_a1&#9;", "_a1 ", "\t_a1"] {
        let doc = response(written, "");
        assert!(dsig::sign(doc.as_bytes(), &key.signing(), &opts).is_err());
    }
    // A plainly written element signed, then a duplicate written with a reference added.
    let signed = String::from_utf8(
        dsig::sign(response("_a1", "").as_bytes(), &key.signing(), &opts).expect("sign"),
    )
    .expect("utf8");
    dsig::verify(
        signed.as_bytes(),
        &key.trusted(),
        &VerifyOptions::protocol("_a1"),
    )
    .expect("verify");
    for dup in ["&#95;a1", "_&#97;1", "_a1&#32;"] {
        let doc = signed.replacen(
            "<saml:Assertion ",
            &format!("<saml:Assertion ID=\"{dup}\"/><saml:Assertion "),
            1,
        );
        let err = dsig::verify(
            doc.as_bytes(),
            &key.trusted(),
            &VerifyOptions::protocol("_a1"),
        )
        .unwrap_err();
        assert_eq!(invalid(err), dup);
    }
    // The signed element itself written with a reference (same canonical form, so the same
    // digest): refused, not "not found".
    let doc = signed.replacen("ID=\"_a1\"", "ID=\"&#95;a1\"", 1);
    let err = dsig::verify(
        doc.as_bytes(),
        &key.trusted(),
        &VerifyOptions::protocol("_a1"),
    )
    .unwrap_err();
    assert_eq!(invalid(err), "&#95;a1");
    // Metadata: an entity ID written with a reference next to the same plain ID.
    let k = TestKey::rsa("k");
    let md = sign(&aggregate(), &k);
    let dup = md.replace("ID=\"_e2\"", "ID=\"&#95;e1\"");
    assert_eq!(
        sig_err(&dup, &k.trusted()),
        SignatureError::InvalidId("&#95;e1".into())
    );
}

/// W3C XML Signature Best Practices, Best Practice 1 (the expensive steps only once the
/// signature is authenticated): the signature over SignedInfo is checked where the
/// `ds:Signature` ends, before the signed content is canonicalized and digested. A document no
/// configured key signed costs its head, not a pass over the rest: nothing after the Signature
/// is observed, digested or examined (a duplicate ID there is not what refuses it).
#[test]
fn a_signature_by_an_untrusted_key_is_refused_before_the_content_is_digested() {
    let signer = TestKey::rsa("signer");
    let other = TestKey::rsa("other");
    let md = sign(&aggregate(), &signer);
    // Inline, and with the hashing thread however small the document.
    let mut piped = VerifyOptions::metadata();
    piped.parallel_min_size = Some(0);
    for opts in [VerifyOptions::metadata().single_threaded(), piped] {
        let mut seen = 0usize;
        let err = dsig::verify_observed(md.as_bytes(), &other.trusted(), &opts, &mut |_| {
            seen += 1;
        })
        .unwrap_err();
        assert!(
            matches!(err, Error::Signature(SignatureError::NotTrusted)),
            "{err:?}"
        );
        assert_eq!(seen, 0, "events after the Signature observed");
        let mut seen = 0usize;
        dsig::verify_observed(md.as_bytes(), &signer.trusted(), &opts, &mut |_| seen += 1)
            .expect("the signer's key");
        assert!(seen > 10, "{seen} events");
    }
    let dup = md.replace("ID=\"_e2\"", "ID=\"_e1\"");
    assert_eq!(sig_err(&dup, &other.trusted()), SignatureError::NotTrusted);
    assert_eq!(
        sig_err(&dup, &signer.trusted()),
        SignatureError::DuplicateId("_e1".into())
    );
}

/// Dsig review M2: exclusive c14n renders an inherited binding again on every element that
/// uses it without an output ancestor having rendered it. With a genuine signature replayed
/// (a federation's aggregate signature is public) onto a root that declares one 60,000-byte
/// binding it does not use, each appended `<p:e/>` of six bytes canonicalized to 60 KB,
/// 1.2 GB here, hashed before the digest was found wrong. The namespace work is now bounded
/// by twice the content plus `c14n::NAMESPACE_ALLOWANCE`: the document is refused as a
/// canonicalization error long before, on one thread and on several, under a prefixed
/// element's binding and under a default namespace alike. A document that uses such a
/// binding once, as real ones do, still verifies.
#[test]
fn inherited_namespaces_are_not_re_rendered_without_bound() {
    let key = TestKey::rsa("federation");
    let signed = sign(&aggregate(), &key);
    let (before, signature, _) = split_signature(&signed);
    let long = format!("urn:x:{}", "a".repeat(60_000));
    let root = before.find("<md:EntitiesDescriptor").expect("root");
    let root_end = root + before[root..].find('>').expect("root start tag");
    for (decl, body) in [
        (format!(" xmlns:p=\"{long}\""), "<p:e/>".repeat(20_000)),
        (
            String::new(),
            format!(
                "<md:Extensions xmlns=\"{long}\">{}</md:Extensions>",
                "<e/>".repeat(20_000)
            ),
        ),
    ] {
        let forged = format!(
            "{}{decl}{}{signature}{body}</md:EntitiesDescriptor>",
            &before[..root_end],
            &before[root_end..]
        );
        for opts in [VerifyOptions::metadata().single_threaded(), {
            let mut o = VerifyOptions::metadata();
            o.parallel_min_size = Some(0);
            o
        }] {
            let e = dsig::verify(forged.as_bytes(), &key.trusted(), &opts).unwrap_err();
            assert!(
                matches!(&e, Error::C14n(m) if m.contains("namespace")),
                "{e:?}"
            );
        }
    }
    // One long binding used once: signed and verified as usual.
    let doc = aggregate().replacen(
        "<md:Extensions>",
        &format!("<md:Extensions><p:e xmlns:p=\"{long}\"/>"),
        1,
    );
    let signed = sign(&doc, &key);
    verify_md(&signed, &key.trusted()).unwrap();
}
