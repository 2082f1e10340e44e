//! Web SSO with a real Shibboleth SP 3.4 (Debian `libapache2-mod-shib`: Apache 2.4 + mod_shib +
//! shibd, installed by `scripts/setup.sh`) in front of our IdP built on saml-core, everything on
//! loopback and started by the test with its own configuration in a temporary directory (no
//! file under /etc is written, no system service is used; the packages' `protocols.xml`,
//! `attribute-policy.xml` and error templates under /etc/shibboleth are read).
//!
//! - The launcher (`common::shibboleth_sp`, shared with dame-server's `peers` test): shibd runs
//!   in the foreground (`shibd -F -f -c <dir>/shibboleth2.xml`) with a private
//!   `TCPListener` port; Apache in the foreground (`apache2 -DFOREGROUND -f <dir>/apache.conf`)
//!   loads mod_shib with `ShibConfig <dir>/shibboleth2.xml` and protects `/secure/` (a CGI
//!   shell script printing its environment) with `AuthType shibboleth`,
//!   `ShibRequestSetting requireSession true` and `Require valid-user`.
//! - Shibboleth's metadata provider reads our IdP's metadata written by saml-metadata (with a
//!   `shibmd:Scope`, checked by the package's attribute filter policy); our IdP reads the SP's
//!   metadata from Shibboleth's own `MetadataGenerator` handler (`/Shibboleth.sso/Metadata`)
//!   with `saml_metadata::load::parse_unverified`, and encrypts to the key found there.
//! - Our IdP is a loopback HTTP server: it decodes Shibboleth's HTTP-Redirect AuthnRequest,
//!   checks it, and answers with saml-core's auto-post form carrying a signed Response with a
//!   signed, encrypted (AES-256-GCM, RSA-OAEP) assertion with eduPerson attributes by OID.
//! - A scripted browser (hand-written HTTP/1.0 client with a cookie jar) follows the
//!   redirects and submits the form; the protected page shows REMOTE_USER (from eppn) and the
//!   mapped attributes.
//! - Shibboleth also accepts: only the assertion signed, only the Response signed, the assertion
//!   in clear (the SP has no setting that requires encryption), AES-128-CBC, an ECDSA P-256
//!   signature (the IdP's second key); an affiliation value outside the IdP's `shibmd:Scope`
//!   is dropped by the attribute filter, the others kept.
//! - Shibboleth refuses (no session cookie, the protected page redirects to the IdP again;
//!   shibd's log line is checked): the same Response posted again (replay), another audience,
//!   an expired assertion, an unsigned Response and assertion, a Response (or only the
//!   assertion) signed by a key not in the IdP's metadata, a signed Response whose eppn was
//!   changed afterwards. Its ACS answers 500 each time.
//!
//! The security policy is the package's default (`/etc/shibboleth/security-policy.xml`) except
//! MessageFlow `expires="600"` instead of 60, so that the expired-assertion case is refused for
//! the assertion's NotOnOrAfter and not for the Response's IssueInstant.
//!
//! Run time: shibd and Apache are up in about 1 s; the whole test takes 3-4 s (debug build,
//! 2 cores shared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use common::shibboleth_sp::Sp;
use common::{Browser, Case, Idp, Reply, form_action, form_field};
use saml_core::bindings::{post, url_encode};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata};
use saml_metadata::sso;

const SP_ENTITY: &str = "https://sp.interop.test/shibboleth";
const IDP_ENTITY: &str = "https://idp.rust.test/idp";

/// One login through the browser: protected page -> Shibboleth's redirect to our IdP -> our
/// form -> POST to Shibboleth's ACS. Returns the ACS's reply, the form body posted and the
/// Response it carried.
fn login(sp: &Sp, idp: &Idp, browser: &mut Browser) -> (Reply, String, Vec<u8>) {
    let first = browser.get(&format!("{}/secure/env", sp.base));
    assert_eq!(
        first.status, 302,
        "protected page without a session: {}",
        first.body
    );
    let to_idp = first.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", idp.sso_url)),
        "{to_idp}"
    );
    let page = browser.get(&to_idp);
    assert_eq!(page.status, 200, "our IdP refused: {}", page.body);
    let action = form_action(&page.body);
    assert_eq!(action, format!("{}/Shibboleth.sso/SAML2/POST", sp.base));
    let response = form_field(&page.body, "SAMLResponse").expect("SAMLResponse");
    let relay = form_field(&page.body, "RelayState").expect("RelayState");
    let body = format!(
        "SAMLResponse={}&RelayState={}",
        url_encode(&response),
        url_encode(&relay)
    );
    let xml = post::decode(&response, post::DEFAULT_MAX_MESSAGE).unwrap();
    (browser.request("POST", &action, Some(&body)), body, xml)
}

/// After an accepted login: follows the ACS's redirect back to the protected page and returns
/// what the page printed.
fn protected_page(sp: &Sp, b: &mut Browser, acs: &Reply) -> String {
    assert_eq!(acs.status, 302, "ACS refused: {}\n{}", acs.body, sp.logs());
    assert!(b.has_cookie("_shibsession_"), "{:?}", b.cookies);
    let back = acs.header("Location").unwrap().to_owned();
    assert_eq!(back, format!("{}/secure/env", sp.base));
    let page = b.get(&back);
    assert_eq!(page.status, 200, "{}\n{}", page.body, sp.logs());
    assert!(
        page.body.contains("REMOTE_USER=alice@example.org\n"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("eppn=alice@example.org\n"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("Shib-Identity-Provider={IDP_ENTITY}\n")),
        "{}",
        page.body
    );
    page.body
}

#[test]
fn shibboleth_sp_web_sso_with_our_idp() {
    let t0 = Instant::now();
    let idp = Idp::start(IDP_ENTITY, |sso_url, key, ec_key| {
        EntityDescriptor::builder(IDP_ENTITY)
            .idp(
                IdpSso::builder()
                    .signing_certificate(key.cert_der())
                    .signing_certificate(ec_key.cert_der())
                    .scope("example.org", false)
                    .sso(Binding::HttpRedirect, sso_url),
            )
            .build()
            .unwrap()
    });
    let sp = Sp::start(
        SP_ENTITY,
        &format!(r#"<SSO entityID="{IDP_ENTITY}">SAML2</SSO>"#),
        r#"<MetadataProvider type="XML" validate="true" path="{dir}/idp-metadata.xml"/>"#,
        &[("idp-metadata.xml", idp.md.to_xml().unwrap().into_bytes())],
    );
    let started = t0.elapsed();

    // Shibboleth's generated SP metadata, read by saml-metadata: the ACS and the encryption key.
    let mut b = Browser::default();
    // Apache listens before mod_shib has its first answer from shibd: a 5xx here during the
    // first second is start-up, so ask again (once failed under load, not reproduced).
    let mut got = b.get(&format!("{}/Shibboleth.sso/Metadata", sp.base));
    for _ in 0..20 {
        if got.status == 200 {
            break;
        }
        eprintln!("Shibboleth.sso/Metadata: {} {}", got.status, got.body);
        std::thread::sleep(std::time::Duration::from_millis(250));
        got = b.get(&format!("{}/Shibboleth.sso/Metadata", sp.base));
    }
    assert_eq!(got.status, 200, "{}\n{}", got.body, sp.logs());
    let Metadata::Entity(sp_md) = load::parse_unverified(got.body.as_bytes()).unwrap() else {
        panic!("not an EntityDescriptor: {}", got.body)
    };
    assert_eq!(sp_md.entity_id, SP_ENTITY);
    assert!(sso::sp_encryption_key(&sp_md).unwrap().is_some());
    idp.trust_sp(*sp_md).unwrap();

    // The good case: the Response carried an EncryptedAssertion only.
    let mut b = Browser::default();
    let (acs, posted, xml) = login(&sp, &idp, &mut b);
    let xml = String::from_utf8(xml).unwrap();
    assert!(xml.contains("EncryptedAssertion") && !xml.contains("<saml:Assertion"));
    let page = protected_page(&sp, &mut b, &acs);
    assert!(
        page.contains("affiliation=member@example.org;staff@example.org\n"),
        "{page}"
    );
    // The request Shibboleth sent: its own entityID, the ACS of its metadata.
    let req = idp.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req.issuer, SP_ENTITY);
    assert_eq!(
        req.acs_url.as_deref(),
        Some(format!("{}/Shibboleth.sso/SAML2/POST", sp.base).as_str())
    );

    // The same Response posted again, from another browser: refused as a replay.
    let before = sp.shibd_log().len();
    let mut thief = Browser::default();
    let again = thief.request(
        "POST",
        &format!("{}/Shibboleth.sso/SAML2/POST", sp.base),
        Some(&posted),
    );
    let log = sp.shibd_log()[before..].to_owned();
    assert_ne!(again.status, 302, "replay accepted: {}\n{log}", again.body);
    assert!(!thief.has_cookie("_shibsession_"));
    assert!(log.to_lowercase().contains("replay"), "{log}");

    // Accepted variants, with the affiliation values Shibboleth kept.
    for (case, affiliation) in [
        (
            Case::AssertionOnlySigned,
            "member@example.org;staff@example.org",
        ),
        (
            Case::ResponseOnlySigned,
            "member@example.org;staff@example.org",
        ),
        (Case::NotEncrypted, "member@example.org;staff@example.org"),
        (Case::Aes128Cbc, "member@example.org;staff@example.org"),
        (Case::Ecdsa, "member@example.org;staff@example.org"),
        // The package's attribute filter policy drops the value outside the IdP's Scope.
        (Case::ForeignScope, "member@example.org"),
    ] {
        *idp.case.lock().unwrap() = case;
        let mut b = Browser::default();
        let (acs, _, _) = login(&sp, &idp, &mut b);
        let page = protected_page(&sp, &mut b, &acs);
        assert!(
            page.contains(&format!("affiliation={affiliation}\n")),
            "{case:?}: {page}"
        );
    }
    let good = t0.elapsed();

    // Each refused: no session, the protected page is not shown (another redirect to the IdP).
    let cases = [
        (Case::WrongAudience, "audience"),
        (Case::Expired, "no longer valid"),
        (Case::Unsigned, "unable to establish security"),
        (Case::WrongKey, "signature"),
        (Case::WrongKeyAssertion, "signature"),
        (Case::Tampered, "signature"),
    ];
    let mut seen = Vec::new();
    for (case, word) in cases {
        *idp.case.lock().unwrap() = case;
        let before = sp.shibd_log().len();
        let mut b = Browser::default();
        let (acs, _, _) = login(&sp, &idp, &mut b);
        let log = sp.shibd_log()[before..].to_owned();
        assert_ne!(acs.status, 302, "{case:?} accepted: {}\n{log}", acs.body);
        assert!(!b.has_cookie("_shibsession_"), "{case:?}: {:?}", b.cookies);
        let again = b.get(&format!("{}/secure/env", sp.base));
        assert_eq!(
            again.status, 302,
            "{case:?}: protected page shown: {}",
            again.body
        );
        assert!(
            log.to_lowercase().contains(word),
            "{case:?}: shibd did not say {word:?}: {log}"
        );
        let reason = log
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("WARN"))
            .collect::<Vec<_>>()
            .join(" | ");
        seen.push(format!("{case:?}: HTTP {} ({reason})", acs.status));
    }
    eprintln!(
        "Shibboleth SP up in {started:?}; good login, replay and accepted variants done at {good:?}; all at {:?}\n{}",
        t0.elapsed(),
        seen.join("\n")
    );
}
