//! Web SSO with a real SimpleSAMLphp 1.19 (Debian `simplesamlphp`, PHP 8.2 with php-xml,
//! php-mbstring and php-curl, installed by `scripts/setup.sh`), both ways, everything on
//! loopback and started by the test: PHP's built-in server (`php -S 127.0.0.1:PORT -t
//! /usr/share/simplesamlphp/www`, no router script needed: it runs `module.php` with the rest
//! of the path as PATH_INFO) with `SIMPLESAMLPHP_CONFIG_DIR` pointing at a private
//! configuration in a temporary directory (config.php, authsources.php, metadata, keys, logs,
//! PHP sessions; nothing under /etc is read or written except the package's attribute maps;
//! the launcher is `common::simplesamlphp`, shared with dame-server's `peers` test).
//!
//! - SimpleSAMLphp as IdP (`exampleauth:UserPass`, user alice) with our SP (saml-metadata
//!   `sso::authn_request` / `sso::response_validator`, saml-core): our SP's metadata, written
//!   by saml-metadata with `AuthnRequestsSigned`, is read by SimpleSAMLphp's XML metadata
//!   source, so it verifies our signed HTTP-Redirect AuthnRequest; the scripted browser fills
//!   the login form and carries the auto-post form back; our SP validates the signed Response
//!   against the IdP metadata SimpleSAMLphp publishes (`/saml2/idp/metadata.php`). A second SP
//!   entity (flat-file `saml20-sp-remote.php` with `assertion.encryption`) gets the assertion
//!   encrypted (AES-128-CBC inside the signed Response, RSA-OAEP) and our validator decrypts
//!   it. Refused by us: a Response for another audience (our SP registered a second time under
//!   another entityID), the same Response twice (its request is no longer outstanding), a
//!   Response changed after signing. Refused by
//!   SimpleSAMLphp: an AuthnRequest with its query signature stripped, or signed by another key.
//! - SimpleSAMLphp as SP (`saml:SP` auth source `default-sp`, page
//!   `/module.php/core/authenticate.php?as=default-sp`) with our IdP (`common::Idp`): it reads
//!   our IdP's metadata (saml-metadata, `WantAuthnRequestsSigned`) from its XML source and
//!   signs its AuthnRequest, which our IdP verifies with the SP metadata SimpleSAMLphp publishes
//!   (`/module.php/saml/sp/metadata.php/default-sp`); the attributes page shows what we sent.
//!   Accepted: the encrypted assertion (AES-256-GCM, AES-128-CBC), in clear, only the assertion
//!   or only the Response signed, ECDSA P-256. Refused: a key not in the metadata, unsigned,
//!   changed after signing, another audience, expired.
//! - SimpleSAMLphp's MDQ metadata source (`type => mdq`, entityID form) resolves our IdP from
//!   our loopback MDQ responder (`testkit::mdq_server`, the entity signed by saml-metadata,
//!   checked by SimpleSAMLphp with `validateFingerprint`) and completes a login, signing its
//!   AuthnRequest as the MDQ answer asked. Refused: another fingerprint pinned, the document
//!   changed after signing (no valid signature left: "Fingerprint was [...] not one of []").
//! - SimpleSAMLphp's metarefresh, from its command line (`modules/metarefresh/bin/
//!   metarefresh.php`, what its cron job runs; no web server), reads an aggregate signed by
//!   saml-metadata (the test kit's ten entities) with `--certificate` or
//!   `--validate-fingerprint`: the IdPs and SPs are written to its flat files
//!   (`saml20-idp-remote.php`, `saml20-sp-remote.php`, read back by PHP). Refused in both
//!   modes, every entity skipped and nothing written: the aggregate changed after signing,
//!   signed by another key with the same subject name, unsigned.
//!
//! Run time (debug build, 2 cores shared, the three tests in parallel): PHP's server listens
//! within 0.1 s, most of the start-up is generating RSA keys; the IdP test takes about 1.2 s,
//! the SP test 1.5 s, the MDQ test (three SimpleSAMLphp instances) 2.8 s, the metarefresh test
//! (eight runs of the script, 0.2 s each) 1.7 s; 2-3 s in all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use common::simplesamlphp::{Ssp, ssp_login};
use common::{Browser, Case, EPPN, Idp, form_action, form_field};
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::dsig::SignOptions;
use saml_core::protocol::{MemoryReplayCache, OutstandingRequests, new_id, openssl_random};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{
    Binding, EntitiesDescriptor, EntityDescriptor, IdpSso, Metadata, SpSso,
};
use saml_metadata::sso;
use testkit::metadata::built_entities;
use testkit::signer::TestKey;

const SSP_IDP: &str = "https://ssp-idp.interop.test/idp";
const SP_ENTITY: &str = "https://sp.rust.test/sp";
const SP_ENC_ENTITY: &str = "https://sp-enc.rust.test/sp";
const IDP_ENTITY: &str = "https://idp.rust.test/idp";
const SSP_SP: &str = "https://ssp-sp.interop.test/sp";
/// Our SP's ACS: never contacted, the test reads the auto-post form itself.
const ACS: &str = "http://127.0.0.1:9/acs";

/// The PEM body of a certificate, for SimpleSAMLphp's `certData`.
fn cert_data(key: &TestKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.cert_der())
}

/// Our SP's metadata as `entity_id` (ACS [`ACS`], signing and encryption key `key`).
fn our_sp(entity_id: &str, key: &TestKey) -> EntityDescriptor {
    EntityDescriptor::builder(entity_id)
        .sp(SpSso::builder()
            .signing_certificate(key.cert_der())
            .encryption_certificate(key.cert_der())
            .authn_requests_signed(true)
            .want_assertions_signed(true)
            .acs(Binding::HttpPost, ACS))
        .build()
        .unwrap()
}

/// The SAMLResponse (decoded) and RelayState of an auto-post form page.
fn posted(page: &str) -> (Vec<u8>, Option<String>) {
    let r = form_field(page, "SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse: {page}"));
    (
        post::decode(&r, post::DEFAULT_MAX_MESSAGE).unwrap(),
        form_field(page, "RelayState"),
    )
}

#[test]
fn simplesamlphp_idp_with_our_sp() {
    let t0 = Instant::now();
    let idp_key = TestKey::rsa("ssp-idp.interop.test");
    let sp_key = TestKey::rsa("sp.rust.test");
    let sp_md = our_sp(SP_ENTITY, &sp_key);
    let enc_md = our_sp(SP_ENC_ENTITY, &sp_key);
    let other_md = our_sp(common::OTHER_SP, &sp_key);
    let cert = cert_data(&sp_key);
    // Our SP again under two more entityIDs: one with encrypted assertions, one as another
    // audience; both in SimpleSAMLphp's own flat-file format.
    let remote = format!(
        r#"<?php
$metadata['{SP_ENC_ENTITY}'] = [
  'AssertionConsumerService' => [['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', 'Location' => '{ACS}']],
  'certData' => '{cert}',
  'validate.authnrequest' => true,
  'assertion.encryption' => true,
];
$metadata['{other}'] = [
  'AssertionConsumerService' => [['Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', 'Location' => '{ACS}']],
  'certData' => '{cert}',
  'validate.authnrequest' => true,
];
"#,
        other = common::OTHER_SP
    );
    let hosted = format!(
        r#"<?php
$metadata['{SSP_IDP}'] = [
  'host' => '__DEFAULT__',
  'privatekey' => 'idp.key',
  'certificate' => 'idp.crt',
  'auth' => 'example-userpass',
];
"#
    );
    let ssp = Ssp::start(
        true,
        "",
        "['type' => 'flatfile'], ['type' => 'xml', 'file' => '{dir}/metadata/our-sp.xml']",
        &[
            ("cert/idp.key", idp_key.key_pem()),
            ("cert/idp.crt", idp_key.cert_pem()),
            ("metadata/our-sp.xml", sp_md.to_xml().unwrap().into_bytes()),
            ("metadata/saml20-idp-hosted.php", hosted.into_bytes()),
            ("metadata/saml20-sp-remote.php", remote.into_bytes()),
        ],
    );
    let started = t0.elapsed();

    // The IdP's metadata as SimpleSAMLphp publishes it, read by saml-metadata.
    let mut b = Browser::default();
    let got = b.get(&format!("{}/saml2/idp/metadata.php", ssp.base));
    assert_eq!(got.status, 200, "{}\n{}", got.body, ssp.logs());
    let Metadata::Entity(idp_md) = load::parse_unverified(got.body.as_bytes()).unwrap() else {
        panic!("not an EntityDescriptor: {}", got.body)
    };
    assert_eq!(idp_md.entity_id, SSP_IDP);
    let sso_url = sso::sso_location(&idp_md, &Binding::HttpRedirect).unwrap();
    assert_eq!(sso_url, format!("{}/saml2/idp/SSOService.php", ssp.base));

    let sp_signing = sp_key.signing();
    let mut requests = OutstandingRequests::new();
    let mut replay = MemoryReplayCache::new();
    // A signed AuthnRequest from `md` (Redirect) through alice's login; the form page.
    let login = |md: &EntityDescriptor,
                 requests: &mut OutstandingRequests,
                 sign: Option<&saml_core::dsig::SigningKey>| {
        let now = SystemTime::now();
        let (req, url) = sso::authn_request(
            md,
            &idp_md,
            Binding::HttpRedirect,
            new_id(&mut openssl_random),
            now,
        )
        .unwrap();
        assert_eq!(url, sso_url);
        let q = redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            Some("page-42"),
            sign,
            None,
        )
        .unwrap();
        requests.insert(&req.id, SSP_IDP, now + Duration::from_secs(300), now);
        let mut b = Browser::default();
        ssp_login(&ssp, &mut b, &sso_url, &q)
    };

    // 1. Our SP from its saml-metadata XML: signed Response and assertion, in clear.
    let page = login(&sp_md, &mut requests, Some(&sp_signing));
    assert_eq!(page.status, 200, "{}\n{}", page.body, ssp.logs());
    assert_eq!(form_action(&page.body), ACS);
    let (xml, relay) = posted(&page.body);
    assert_eq!(relay.as_deref(), Some("page-42"));
    let v = sso::response_validator(&sp_md, &idp_md).unwrap();
    let ok = v
        .validate(&xml, SystemTime::now(), &mut requests, &mut replay)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&xml)));
    assert!(ok.response_signed && ok.assertion_signed && !ok.encrypted);
    assert_eq!(ok.issuer, SSP_IDP);
    let eppn = ok
        .assertion
        .attribute("eduPersonPrincipalName")
        .expect("eduPersonPrincipalName");
    assert_eq!(eppn.values, ["alice@example.org"]);
    let affiliation = ok.assertion.attribute("eduPersonAffiliation").unwrap();
    assert_eq!(affiliation.values, ["member", "staff"]);
    assert!(ok.name_id().is_some());
    // The same Response again: a replay.
    let again = v.validate(&xml, SystemTime::now(), &mut requests, &mut replay);
    assert!(again.is_err(), "replay accepted");
    eprintln!("replay: {}", again.unwrap_err());
    let first = t0.elapsed();

    // 2. The encrypted assertion (flat-file entry with assertion.encryption), decrypted by us.
    let page = login(&enc_md, &mut requests, Some(&sp_signing));
    assert_eq!(page.status, 200, "{}\n{}", page.body, ssp.logs());
    let (xml, _) = posted(&page.body);
    let text = String::from_utf8_lossy(&xml).into_owned();
    assert!(text.contains("EncryptedAssertion") && !text.contains("<saml:Assertion"));
    // SimpleSAMLphp's (xmlseclibs') defaults: AES-128-CBC content, RSA-OAEP key transport; CBC
    // is admitted by our validator because the Response signature around it verifies.
    assert!(
        text.contains("http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
        "{text}"
    );
    assert!(
        text.contains("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"),
        "{text}"
    );
    let mut v = sso::response_validator(&enc_md, &idp_md).unwrap();
    v.decryption_keys = vec![sp_key.pkey.clone()];
    v.require_encrypted = true;
    let ok = v
        .validate(&xml, SystemTime::now(), &mut requests, &mut replay)
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(ok.encrypted && ok.response_signed && ok.assertion_signed);
    assert_eq!(
        ok.assertion
            .attribute("eduPersonPrincipalName")
            .unwrap()
            .values,
        ["alice@example.org"]
    );

    // 3. Another audience: SimpleSAMLphp answers our SP registered as OTHER_SP; our SP refuses.
    let page = login(&other_md, &mut requests, Some(&sp_signing));
    assert_eq!(page.status, 200, "{}\n{}", page.body, ssp.logs());
    let (xml, _) = posted(&page.body);
    let v = sso::response_validator(&sp_md, &idp_md).unwrap();
    let err = v
        .validate(&xml, SystemTime::now(), &mut requests, &mut replay)
        .expect_err("wrong audience accepted");
    assert!(err.to_string().to_lowercase().contains("audience"), "{err}");
    eprintln!("wrong audience: {err}");

    // 4. A signed Response changed after signing.
    let page = login(&sp_md, &mut requests, Some(&sp_signing));
    let (xml, _) = posted(&page.body);
    let tampered = String::from_utf8(xml)
        .unwrap()
        .replace("alice@example.org", "mallory@example.org");
    let err = v
        .validate(
            tampered.as_bytes(),
            SystemTime::now(),
            &mut requests,
            &mut replay,
        )
        .expect_err("tampered Response accepted");
    eprintln!("tampered: {err}");

    // 5. SimpleSAMLphp refuses AuthnRequests without the signature its metadata asks for, or
    // signed by another key.
    let other_key = TestKey::rsa("sp.rust.test");
    for (what, key) in [
        ("unsigned", None),
        ("another key", Some(other_key.signing())),
    ] {
        let before = ssp.log().len();
        let now = SystemTime::now();
        let (req, _) = sso::authn_request(
            &sp_md,
            &idp_md,
            Binding::HttpRedirect,
            new_id(&mut openssl_random),
            now,
        )
        .unwrap();
        let q = redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            None,
            key.as_ref(),
            None,
        )
        .unwrap();
        let r = Browser::default().follow(&redirect::url(&sso_url, &q));
        let log = ssp.log()[before..].to_owned();
        // Its error page (HTTP 200 from SimpleSAMLphp 1.19), no login form.
        assert!(
            !r.body.contains("name=\"AuthState\""),
            "{what}: login form shown\n{log}"
        );
        let reason = log
            .lines()
            .find(|l| l.contains("Caused by"))
            .unwrap_or_else(|| panic!("{what}: no error in the log: {log}"));
        eprintln!("AuthnRequest {what}: HTTP {} ({reason})", r.status);
    }
    eprintln!(
        "SimpleSAMLphp IdP up in {started:?}; first login done at {first:?}; all at {:?}",
        t0.elapsed()
    );
}

/// SimpleSAMLphp as SP with our IdP: `sources` for its metadata of our IdP.
fn ssp_sp(idp: &Idp, sources: &str, files: &[(&str, Vec<u8>)]) -> Ssp {
    let sp_key = TestKey::rsa("ssp-sp.interop.test");
    let mut files = files.to_vec();
    files.push(("cert/sp.key", sp_key.key_pem()));
    files.push(("cert/sp.crt", sp_key.cert_pem()));
    let ssp = Ssp::start(
        false,
        &format!(
            "  'default-sp' => ['saml:SP', 'entityID' => '{SSP_SP}', 'idp' => '{IDP_ENTITY}', \
             'privatekey' => 'sp.key', 'certificate' => 'sp.crt'],\n"
        ),
        sources,
        &files,
    );
    // Its SP metadata as it publishes it, read by saml-metadata: ACS, signing and encryption key.
    let got = Browser::default().get(&format!(
        "{}/module.php/saml/sp/metadata.php/default-sp",
        ssp.base
    ));
    assert_eq!(got.status, 200, "{}\n{}", got.body, ssp.logs());
    let Metadata::Entity(sp_md) = load::parse_unverified(got.body.as_bytes()).unwrap() else {
        panic!("not an EntityDescriptor: {}", got.body)
    };
    assert_eq!(sp_md.entity_id, SSP_SP);
    assert!(sso::sp_encryption_key(&sp_md).unwrap().is_some());
    idp.trust_sp(*sp_md).unwrap();
    ssp
}

/// One login at SimpleSAMLphp's SP with our IdP: the protected page, the redirect to our IdP,
/// our form posted to its ACS. Returns the ACS's answer.
fn ssp_sp_login(ssp: &Ssp, idp: &Idp, b: &mut Browser) -> common::Reply {
    let page = format!(
        "{}/module.php/core/authenticate.php?as=default-sp",
        ssp.base
    );
    let first = b.get(&page);
    assert_eq!(first.status, 302, "{}\n{}", first.body, ssp.logs());
    let to_idp = first.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", idp.sso_url)),
        "{to_idp}"
    );
    let form = b.get(&to_idp);
    assert_eq!(form.status, 200, "our IdP refused: {}", form.body);
    let action = form_action(&form.body);
    assert_eq!(
        action,
        format!("{}/module.php/saml/sp/saml2-acs.php/default-sp", ssp.base)
    );
    let response = form_field(&form.body, "SAMLResponse").unwrap();
    let relay = form_field(&form.body, "RelayState").unwrap();
    b.request(
        "POST",
        &action,
        Some(&format!(
            "SAMLResponse={}&RelayState={}",
            url_encode(&response),
            url_encode(&relay)
        )),
    )
}

/// After an accepted login: the attributes page SimpleSAMLphp shows.
fn ssp_sp_attributes(ssp: &Ssp, b: &mut Browser, acs: &common::Reply) -> String {
    assert!(
        matches!(acs.status, 302 | 303),
        "ACS refused: {}\n{}",
        acs.body,
        ssp.logs()
    );
    let page = b.follow(acs.header("Location").unwrap());
    assert_eq!(page.status, 200, "{}\n{}", page.body, ssp.logs());
    assert!(page.body.contains("alice@example.org"), "{}", page.body);
    assert!(page.body.contains(EPPN), "{}", page.body);
    page.body
}

fn our_idp_metadata(sso_url: &str, key: &TestKey, ec_key: &TestKey) -> EntityDescriptor {
    EntityDescriptor::builder(IDP_ENTITY)
        .idp(
            IdpSso::builder()
                .signing_certificate(key.cert_der())
                .signing_certificate(ec_key.cert_der())
                .want_authn_requests_signed(true)
                .sso(Binding::HttpRedirect, sso_url),
        )
        .build()
        .unwrap()
}

#[test]
fn simplesamlphp_sp_with_our_idp() {
    let t0 = Instant::now();
    let idp = Idp::start(IDP_ENTITY, our_idp_metadata);
    let ssp = ssp_sp(
        &idp,
        "['type' => 'xml', 'file' => '{dir}/metadata/our-idp.xml']",
        &[(
            "metadata/our-idp.xml",
            idp.md.to_xml().unwrap().into_bytes(),
        )],
    );
    let started = t0.elapsed();

    let mut b = Browser::default();
    let acs = ssp_sp_login(&ssp, &idp, &mut b);
    let page = ssp_sp_attributes(&ssp, &mut b, &acs);
    assert!(page.contains("staff@example.org"), "{page}");
    assert_eq!(idp.signed_requests.load(Ordering::Relaxed), 1);
    let req = idp.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req.issuer, SSP_SP);
    let first = t0.elapsed();

    for case in [
        Case::NotEncrypted,
        Case::Aes128Cbc,
        Case::AssertionOnlySigned,
        Case::ResponseOnlySigned,
    ] {
        *idp.case.lock().unwrap() = case;
        let mut b = Browser::default();
        let acs = ssp_sp_login(&ssp, &idp, &mut b);
        ssp_sp_attributes(&ssp, &mut b, &acs);
    }

    let mut seen = Vec::new();
    for (case, word) in [
        // SimpleSAMLphp 1.19 (xmlseclibs 3.1) has no ECDSA: "Unsupported signing algorithm".
        (Case::Ecdsa, "unsupported signing algorithm"),
        (Case::WrongKey, "unable to validate signature"),
        (
            Case::Unsigned,
            "neither the assertion nor the response was signed",
        ),
        (Case::Tampered, "reference validation failed"),
        (Case::WrongAudience, "audience"),
        (Case::Expired, "assertion that has expired"),
    ] {
        *idp.case.lock().unwrap() = case;
        let before = ssp.log().len();
        let mut b = Browser::default();
        let acs = ssp_sp_login(&ssp, &idp, &mut b);
        let log = ssp.log()[before..].to_owned();
        assert!(!matches!(acs.status, 302 | 303), "{case:?} accepted\n{log}");
        assert!(!acs.body.contains("alice@example.org"), "{case:?}");
        let again = b.get(&format!(
            "{}/module.php/core/authenticate.php?as=default-sp",
            ssp.base
        ));
        assert_eq!(again.status, 302, "{case:?}: attributes shown");
        let reason = log
            .lines()
            .filter(|l| l.contains("Caused by"))
            .collect::<Vec<_>>()
            .join(" | ");
        assert!(
            log.to_lowercase().contains(word),
            "{case:?}: SimpleSAMLphp did not say {word:?}: {log}"
        );
        seen.push(format!("{case:?}: HTTP {} ({reason})", acs.status));
    }
    eprintln!(
        "SimpleSAMLphp SP up in {started:?}; first login at {first:?}; all at {:?}\n{}",
        t0.elapsed(),
        seen.join("\n")
    );
}

#[test]
fn simplesamlphp_mdq_source_with_our_responder() {
    let t0 = Instant::now();
    let idp = Idp::start(IDP_ENTITY, our_idp_metadata);
    let signer = TestKey::rsa("mdq.rust.test");
    let signed = idp
        .md
        .sign(&signer.signing(), &saml_core::dsig::SignOptions::default())
        .unwrap();
    let signed = String::from_utf8(signed).unwrap();
    assert!(signed.contains("WantAuthnRequestsSigned=\"true\""));
    let fingerprint = {
        let d =
            openssl::hash::hash(openssl::hash::MessageDigest::sha1(), &signer.cert_der()).unwrap();
        d.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    // SimpleSAMLphp as SP with an MDQ source serving `doc` for our IdP and pinning `fp`.
    let start = |doc: &str, fp: &str| {
        let mut docs = HashMap::new();
        docs.insert(
            saml_metadata::model::sha1_hex(IDP_ENTITY),
            doc.as_bytes().to_vec(),
        );
        let mdq = testkit::mdq_server::serve(docs).unwrap();
        let ssp = ssp_sp(
            &idp,
            &format!(
                "['type' => 'mdq', 'server' => '{}', 'validateFingerprint' => '{fp}', \
                 'cachedir' => '{{dir}}/tmp', 'cachelength' => 60]",
                mdq.base.trim_end_matches('/')
            ),
            &[],
        );
        (ssp, mdq)
    };

    let (ssp, mdq) = start(&signed, &fingerprint);
    let mut b = Browser::default();
    let acs = ssp_sp_login(&ssp, &idp, &mut b);
    ssp_sp_attributes(&ssp, &mut b, &acs);
    assert!(mdq.requests.load(Ordering::Relaxed) >= 1);
    // WantAuthnRequestsSigned came through MDQ: SimpleSAMLphp signed its request.
    assert_eq!(idp.signed_requests.load(Ordering::Relaxed), 1);
    let good = t0.elapsed();
    let requests = mdq.requests.load(Ordering::Relaxed);
    drop(ssp);

    // Refused: another signer's fingerprint pinned; the signed document changed afterwards.
    let tampered = signed.replace(
        "WantAuthnRequestsSigned=\"true\"",
        "WantAuthnRequestsSigned=\"false\"",
    );
    let wrong_fp = "00:".repeat(19) + "00";
    for (what, doc, fp, word) in [
        (
            "another fingerprint",
            &signed,
            wrong_fp.as_str(),
            "fingerprint",
        ),
        ("tampered", &tampered, fingerprint.as_str(), "fingerprint"),
    ] {
        let (ssp, mdq) = start(doc, fp);
        let r = Browser::default().get(&format!(
            "{}/module.php/core/authenticate.php?as=default-sp",
            ssp.base
        ));
        let log = ssp.log();
        assert!(
            mdq.requests.load(Ordering::Relaxed) >= 1,
            "{what}: no MDQ request"
        );
        // An exception state back to the page, not a redirect to our IdP.
        let to = r.header("Location").unwrap_or("");
        assert!(
            r.status == 302 && to.contains("State_exceptionId") && !to.starts_with(&idp.sso_url),
            "{what}: SimpleSAMLphp used metadata it should have refused: {} {to}\n{log}",
            r.status
        );
        assert!(
            log.to_lowercase().contains(word),
            "{what}: SimpleSAMLphp did not say {word:?}: {log}"
        );
        let reason = log
            .lines()
            .find(|l| l.to_lowercase().contains(word))
            .unwrap_or("");
        eprintln!("MDQ {what}: refused ({reason})");
    }
    eprintln!(
        "SimpleSAMLphp SP with its MDQ source: login done in {good:?} ({requests} MDQ requests); all at {:?}",
        t0.elapsed()
    );
}

/// What one run of SimpleSAMLphp's `metarefresh.php` wrote and logged.
struct Refreshed {
    /// The entityIDs of each flat file written (`saml20-idp-remote`, `saml20-sp-remote`, ...),
    /// read back by PHP itself (the file included, `$metadata`'s keys listed).
    written: BTreeMap<String, Vec<String>>,
    /// The ACS of `https://sp1.example.com/shibboleth`, as SimpleSAMLphp will use it.
    sp1_acs: Option<String>,
    /// Its stdout and stderr (the log, at DEBUG, goes to stderr).
    log: String,
}

/// Runs metarefresh's command line (`modules/metarefresh/bin/metarefresh.php`, SimpleSAMLphp's
/// cron job in a shell) on `doc` with a private `SIMPLESAMLPHP_CONFIG_DIR`, `check` being its
/// signature options; `{dir}` in them stands for the run's directory, which holds `cert/`
/// (`files` are written there first). The flat files go to `<dir>/out`.
fn metarefresh(doc: &[u8], check: &str, files: &[(&str, Vec<u8>)]) -> Refreshed {
    let script = Path::new("/usr/share/simplesamlphp/modules/metarefresh/bin/metarefresh.php");
    assert!(
        script.exists(),
        "SimpleSAMLphp's metarefresh module ({}) is missing: it is installed by `bash scripts/setup.sh` (simplesamlphp)",
        script.display()
    );
    let php = testkit::peers::program("php");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["config", "cert", "log", "data", "tmp", "metadata"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    for (name, content) in files {
        std::fs::write(d.join(name), content).unwrap();
    }
    let d_s = d.display().to_string();
    std::fs::write(
        d.join("config/config.php"),
        format!(
            r#"<?php
$config = [
  'baseurlpath' => 'http://127.0.0.1:9/',
  'certdir' => '{d_s}/cert/',
  'loggingdir' => '{d_s}/log/',
  'datadir' => '{d_s}/data/',
  'tempdir' => '{d_s}/tmp',
  'metadatadir' => '{d_s}/metadata/',
  'secretsalt' => 'interop-test-salt-metarefresh',
  'auth.adminpassword' => 'interop-admin-metarefresh',
  'technicalcontact_email' => 'root@localhost',
  'module.enable' => ['metarefresh' => true, 'core' => true, 'saml' => true],
  'logging.handler' => 'stderr',
  'logging.level' => SimpleSAML\Logger::DEBUG,
];
"#
        ),
    )
    .unwrap();
    let input = d.join("aggregate.xml");
    std::fs::write(&input, doc).unwrap();
    let mut cmd = Command::new(&php);
    cmd.env("SIMPLESAMLPHP_CONFIG_DIR", d.join("config"))
        .arg(script)
        .arg(format!("--out-dir={d_s}/out"));
    for a in check.split_whitespace() {
        cmd.arg(a.replace("{dir}", &d_s));
    }
    let out = cmd.arg(&input).output().expect("run metarefresh.php");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It exits 0 also when it skipped every entity: what it wrote is what counts.
    assert!(out.status.success(), "metarefresh failed: {log}");
    let mut written = BTreeMap::new();
    let mut sp1_acs = None;
    for f in std::fs::read_dir(d.join("out")).unwrap() {
        let f = f.unwrap().path();
        let set = f.file_stem().unwrap().to_string_lossy().into_owned();
        let read = Command::new(&php)
            .arg("-r")
            .arg(
                r#"$metadata = []; include $argv[1];
                foreach ($metadata as $id => $m) { echo "entity $id\n"; }
                $sp1 = $metadata['https://sp1.example.com/shibboleth'] ?? null;
                if ($sp1) { echo "acs ", $sp1['AssertionConsumerService'][0]['Location'], "\n"; }"#,
            )
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&read.stdout).into_owned();
        assert!(read.status.success(), "{}: {text}", f.display());
        let ids = text
            .lines()
            .filter_map(|l| l.strip_prefix("entity "))
            .map(str::to_owned)
            .collect();
        if let Some(acs) = text.lines().find_map(|l| l.strip_prefix("acs ")) {
            sp1_acs = Some(acs.to_owned());
        }
        written.insert(set, ids);
    }
    Refreshed {
        written,
        sp1_acs,
        log,
    }
}

/// SimpleSAMLphp's metarefresh (the command line of its cron job) reads an aggregate signed by
/// saml-metadata (ten entities from the test kit's generator, RSA-SHA256), checking the
/// signature with the signer's certificate file (`--certificate`) or its SHA-1 fingerprint
/// (`--validate-fingerprint`): the IdPs and the SPs are written to their flat files. Refused in
/// both modes (nothing written, each entity's skip logged): the aggregate changed after
/// signing, signed by another key (same subject name), not signed at all.
#[test]
fn simplesamlphp_metarefresh_reads_our_signed_aggregate() {
    let t0 = Instant::now();
    let key = TestKey::rsa("interop signer");
    let other = TestKey::rsa("interop signer");
    let now = SystemTime::now();
    let agg = EntitiesDescriptor::combine(
        "urn:example:interop:simplesamlphp",
        built_entities(&key.cert_der()),
        Some(now + Duration::from_secs(7 * 86400)),
    )
    .unwrap();
    let signed = agg.sign(&key.signing(), &SignOptions::default()).unwrap();
    // Our own verifier accepts it (the baseline the peer is compared with).
    load::load(&signed, &Policy::new(key.trusted(), now)).unwrap();
    let ids = |idp: bool| -> Vec<String> {
        let mut v: Vec<String> = agg
            .entities()
            .into_iter()
            .filter(|e| e.idp().is_some() == idp)
            .map(|e| e.entity_id.clone())
            .collect();
        v.sort();
        v
    };
    let (idps, sps) = (ids(true), ids(false));
    assert_eq!((idps.len(), sps.len()), (5, 5));
    let fingerprint = openssl::hash::hash(openssl::hash::MessageDigest::sha1(), &key.cert_der())
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let files = [("cert/signer.crt", key.cert_pem())];
    let modes = [
        (
            "certificate",
            "--certificate={dir}/cert/signer.crt".to_owned(),
        ),
        (
            "fingerprint",
            format!("--validate-fingerprint={fingerprint}"),
        ),
    ];

    for (mode, check) in &modes {
        let r = metarefresh(&signed, check, &files);
        let mut got_idps = r
            .written
            .get("saml20-idp-remote")
            .cloned()
            .unwrap_or_default();
        let mut got_sps = r
            .written
            .get("saml20-sp-remote")
            .cloned()
            .unwrap_or_default();
        got_idps.sort();
        got_sps.sort();
        assert_eq!(got_idps, idps, "{mode}: {:?}\n{}", r.written, r.log);
        assert_eq!(got_sps, sps, "{mode}: {:?}\n{}", r.written, r.log);
        assert_eq!(
            r.sp1_acs.as_deref(),
            Some("https://sp1.example.com/acs"),
            "{mode}"
        );
        assert!(!r.log.contains("Skipping"), "{mode}: {}", r.log);
    }
    let accepted = t0.elapsed();

    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("https://sp3.example.com/acs", "https://evil.example/acs");
    assert!(load::load(tampered.as_bytes(), &Policy::new(key.trusted(), now)).is_err());
    let by_other = agg.sign(&other.signing(), &SignOptions::default()).unwrap();
    let unsigned = agg.to_xml().unwrap();
    let mut seen = Vec::new();
    for (what, doc) in [
        ("tampered", tampered.as_bytes()),
        ("another signer", &by_other[..]),
        ("unsigned", unsigned.as_bytes()),
    ] {
        for (mode, check) in &modes {
            let r = metarefresh(doc, check, &files);
            let written: Vec<&String> = r.written.values().flatten().collect();
            assert!(
                written.is_empty(),
                "{what}, {mode}: written {written:?}\n{}",
                r.log
            );
            assert!(r.sp1_acs.is_none(), "{what}, {mode}");
            // Each of the ten entities skipped, for the signature.
            for id in idps.iter().chain(&sps) {
                let line = format!("Skipping \"{id}\" - could not verify signature using {mode}.");
                assert!(
                    r.log.contains(&line),
                    "{what}, {mode}: no {line:?}\n{}",
                    r.log
                );
            }
            seen.push(format!(
                "{what}, {mode}: {} entities skipped",
                r.log.matches("Skipping \"").count()
            ));
        }
    }
    eprintln!(
        "metarefresh: accepted in both modes at {accepted:?}; all at {:?}\n{}",
        t0.elapsed(),
        seen.join("\n")
    );
}
