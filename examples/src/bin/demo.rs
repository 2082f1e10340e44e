//! End-to-end demo (the README's main job): generate a key pair, sign a realistic SAML
//! metadata aggregate with saml-core, verify it, cross-check with the xmlsec1 CLI, show a
//! signature-wrapping attempt, a tampered document, a forged KeyInfo and a DOCTYPE trick being
//! rejected, then generate, sign, load (saml-metadata), filter and look up a 2,000-entity
//! aggregate, and publish a selection plus a hand-built entity as a new aggregate signed on
//! write by a second key (checked by xmlsec1); then a Web SSO exchange between an SP and an IdP
//! described by that metadata (signed Redirect request, encrypted and signed POST Response),
//! with a replay, a wrapped assertion and a tampered Response refused; SAML20 SASL between XMPP
//! servers; MDQ lookups from a loopback responder; and XEP-0027 between cloud modules (signed
//! presence checked by GnuPG too, an encrypted message, a refused replay, a session key, an
//! encrypted room with rotation on removal).
//!
//! Usage: `demo [OUTDIR]` (default `target/demo`). Exit status 0 when every step behaved as
//! expected, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys, VerifyOptions};
use saml_core::xml::Event;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::filter::{ENTITY_CATEGORY_SUPPORT, Filter, RoleKind};
use saml_metadata::model::{Binding, EntitiesDescriptor, EntityDescriptor, Metadata, SpSso};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A fresh RSA-2048 key and self-signed certificate (shared with the benches).
fn self_signed(cn: &str) -> Res<(PKey<Private>, X509)> {
    let (key_pem, cert_pem) = saml_examples::signer::rsa2048_self_signed(cn)?;
    Ok((
        PKey::private_key_from_pem(&key_pem)?,
        X509::from_pem(&cert_pem)?,
    ))
}

/// A small but realistic federation aggregate: an IdP and an SP with the extensions
/// federations publish (mdrpi, mdattr entity categories, mdui, shibmd:Scope).
fn aggregate(cert_b64: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:mdrpi="urn:oasis:names:tc:SAML:metadata:rpi" xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:shibmd="urn:mace:shibboleth:metadata:1.0" ID="_demo-aggregate" Name="https://federation.example.org/metadata" validUntil="2027-01-01T00:00:00Z" cacheDuration="PT6H">
  <md:Extensions>
    <mdrpi:PublicationInfo publisher="https://federation.example.org" creationInstant="2026-11-22T00:00:00Z"/>
  </md:Extensions>
  <md:EntityDescriptor entityID="https://idp.example.org/idp/shibboleth">
    <md:Extensions>
      <mdrpi:RegistrationInfo registrationAuthority="https://federation.example.org" registrationInstant="2020-05-04T10:00:00Z"><mdrpi:RegistrationPolicy xml:lang="en">https://federation.example.org/policy</mdrpi:RegistrationPolicy></mdrpi:RegistrationInfo>
      <mdattr:EntityAttributes><saml:Attribute Name="http://macedir.org/entity-category-support" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"><saml:AttributeValue>http://refeds.org/category/research-and-scholarship</saml:AttributeValue></saml:Attribute></mdattr:EntityAttributes>
    </md:Extensions>
    <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:Extensions>
        <shibmd:Scope regexp="false">example.org</shibmd:Scope>
        <mdui:UIInfo><mdui:DisplayName xml:lang="en">Example University</mdui:DisplayName><mdui:DisplayName xml:lang="sv">Exempeluniversitetet i Göteborg</mdui:DisplayName></mdui:UIInfo>
      </md:Extensions>
      <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
      <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
      <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.org/idp/profile/SAML2/Redirect/SSO"/>
      <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.org/idp/profile/SAML2/POST/SSO"/>
    </md:IDPSSODescriptor>
    <md:Organization><md:OrganizationName xml:lang="en">Example University</md:OrganizationName><md:OrganizationDisplayName xml:lang="en">Example University</md:OrganizationDisplayName><md:OrganizationURL xml:lang="en">https://www.example.org/</md:OrganizationURL></md:Organization>
    <md:ContactPerson contactType="technical"><md:GivenName>Ada</md:GivenName><md:EmailAddress>mailto:it@example.org</md:EmailAddress></md:ContactPerson>
  </md:EntityDescriptor>
  <md:EntityDescriptor entityID="https://sp.example.net/shibboleth">
    <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
      <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.net/Shibboleth.sso/SAML2/POST" index="1" isDefault="true"/>
      <md:AttributeConsumingService index="1"><md:ServiceName xml:lang="en">Journal access</md:ServiceName><md:RequestedAttribute FriendlyName="eduPersonPrincipalName" Name="urn:oid:1.3.6.1.4.1.5923.1.1.1.6" isRequired="true"/></md:AttributeConsumingService>
    </md:SPSSODescriptor>
  </md:EntityDescriptor>
</md:EntitiesDescriptor>
"#
    )
}

/// Whether the xmlsec1 CLI verifies the signature on the root of `file` with `cert`.
fn xmlsec1_verifies(cert: &Path, file: &Path, what: &str) -> bool {
    match Command::new("xmlsec1")
        .args([
            "--verify",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor",
            "--pubkey-cert-pem",
        ])
        .arg(cert)
        .arg(file)
        .output()
    {
        Ok(o) => step(o.status.success(), what),
        Err(e) => step(
            false,
            &format!("xmlsec1 not runnable ({e}); run scripts/setup.sh"),
        ),
    }
}

fn step(ok: bool, what: &str) -> bool {
    println!("{} {what}", if ok { "[ok]  " } else { "[FAIL]" });
    ok
}

fn run(out: &Path) -> Res<bool> {
    std::fs::create_dir_all(out)?;
    let mut all = true;

    println!("== 1. Key pair");
    let (pkey, cert) = self_signed("Demo Federation Metadata Signer")?;
    let fp: Vec<String> = cert
        .digest(MessageDigest::sha256())?
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    println!(
        "   RSA-2048, self-signed certificate, SHA-256 {}",
        fp.join(":")
    );
    std::fs::write(out.join("signer.key.pem"), pkey.private_key_to_pem_pkcs8()?)?;
    std::fs::write(out.join("signer.crt.pem"), cert.to_pem()?)?;

    println!("== 2. Sign a metadata aggregate");
    let cert_b64 = base64::engine::general_purpose::STANDARD.encode(cert.to_der()?);
    let doc = aggregate(&cert_b64);
    let key = SigningKey::new(pkey, Some(cert.clone()))?;
    let signed = dsig::sign(doc.as_bytes(), &key, &SignOptions::default())?;
    let signed_path = out.join("aggregate-signed.xml");
    std::fs::write(&signed_path, &signed)?;
    println!(
        "   {} bytes -> {} (enveloped RSA-SHA256, exc-c14n)",
        signed.len(),
        signed_path.display()
    );

    println!("== 3. Verify with the configured certificate only");
    let mut trusted = TrustedKeys::new();
    trusted.add_certificate(&cert)?;
    let t = Instant::now();
    let verified = dsig::verify(&signed, &trusted, &VerifyOptions::metadata())?;
    let took = t.elapsed();
    let mut entities = Vec::new();
    let mut events = verified.events()?;
    while let Some(ev) = events.next()? {
        if let Event::Start(s) = ev
            && s.name.local == "EntityDescriptor"
            && let Some(a) = s.attribute("entityID")
        {
            entities.push(a.value().into_owned());
        }
    }
    all &= step(
        entities.len() == 2,
        &format!(
            "verified in {took:?} by key #{} ({}), {} canonical bytes digested; entities read from the signed content: {entities:?}",
            verified.key_index(),
            trusted.keys()[verified.key_index()].name(),
            verified.canonical_len(),
        ),
    );

    println!("== 4. Cross-check with xmlsec1 (an independent implementation)");
    all &= xmlsec1_verifies(
        &out.join("signer.crt.pem"),
        &signed_path,
        "xmlsec1 --verify accepts our signature",
    );

    println!("== 5. Attacks");
    let signed_text = String::from_utf8(signed.clone())?;
    let body = signed_text.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let evil = r#"<md:EntityDescriptor entityID="https://idp.evil.example/idp"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.evil.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;
    let wrapped = format!(
        r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{evil}{body}</md:EntitiesDescriptor>"#
    );
    std::fs::write(out.join("attack-wrapped.xml"), &wrapped)?;
    match dsig::verify(wrapped.as_bytes(), &trusted, &VerifyOptions::metadata()) {
        Err(e) => {
            all &= step(
                true,
                &format!(
                    "signature wrapping (evil root around the signed aggregate) rejected: {e}"
                ),
            )
        }
        Ok(_) => all &= step(false, "signature wrapping was accepted"),
    }
    let xmlsec_says = Command::new("xmlsec1")
        .args([
            "--verify",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor",
            "--pubkey-cert-pem",
        ])
        .arg(out.join("signer.crt.pem"))
        .arg(out.join("attack-wrapped.xml"))
        .output()
        .map(|o| if o.status.success() { "OK (!)" } else { "FAIL" })
        .unwrap_or("not run");
    println!(
        "         for comparison, xmlsec1 --verify on the wrapped document says: {xmlsec_says}"
    );
    let tampered = signed_text.replace(
        "https://idp.example.org/idp/profile/SAML2/Redirect/SSO",
        "https://idp.evil.example/sso",
    );
    match dsig::verify(tampered.as_bytes(), &trusted, &VerifyOptions::metadata()) {
        Err(e) => {
            all &= step(
                true,
                &format!("endpoint changed after signing rejected: {e}"),
            )
        }
        Ok(_) => all &= step(false, "tampered document was accepted"),
    }
    let (attacker, attacker_cert) = self_signed("Demo Federation Metadata Signer")?;
    let forged = dsig::sign(
        doc.as_bytes(),
        &SigningKey::new(attacker, Some(attacker_cert))?,
        &SignOptions::default(),
    )?;
    match dsig::verify(&forged, &trusted, &VerifyOptions::metadata()) {
        Err(e) => {
            all &= step(
                true,
                &format!(
                    "re-signed by an attacker with a look-alike certificate in KeyInfo rejected: {e}"
                ),
            )
        }
        Ok(_) => all &= step(false, "attacker signature accepted"),
    }
    let doctype = format!(
        "<!DOCTYPE md:EntitiesDescriptor [<!ATTLIST md:EntityDescriptor ID ID #IMPLIED>]>{body}"
    );
    match dsig::verify(doctype.as_bytes(), &trusted, &VerifyOptions::metadata()) {
        Err(e) => all &= step(true, &format!("DOCTYPE parser trick rejected: {e}")),
        Ok(_) => all &= step(false, "DOCTYPE accepted"),
    }

    println!("== 6. A federation-sized aggregate with saml-metadata");
    let t = Instant::now();
    let big = saml_examples::aggregate::generate(2000, 7);
    let big_signed = dsig::sign(big.as_bytes(), &key, &SignOptions::default())?;
    std::fs::write(out.join("aggregate-2000-signed.xml"), &big_signed)?;
    println!(
        "   generated and signed 2,000 entities ({} bytes) in {:?}",
        big_signed.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let policy = saml_metadata::load::Policy::new(trusted.clone(), std::time::SystemTime::now());
    let agg = saml_metadata::load::load(&big_signed, &policy)?;
    let took = t.elapsed();
    let (idps, sps) = (agg.idps().count(), agg.sps().count());
    all &= step(
        agg.len() == 2000,
        &format!("loaded (verify + model + index) in {took:?}: {idps} IdPs, {sps} SPs"),
    );
    let rs = "http://refeds.org/category/research-and-scholarship";
    let rands_filter =
        Filter::entity_attribute(ENTITY_CATEGORY_SUPPORT, rs).and(Filter::role(RoleKind::Idp));
    let rands = agg.select(&rands_filter).count();
    println!("         filter: {rands} IdPs support the REFEDS R&S entity category");
    if let Some(sp) = agg.sps().next() {
        let id = sp.entity_id.clone();
        let t = Instant::now();
        let by_sha1 = agg
            .get_by_sha1(&format!("{{sha1}}{}", sp.sha1_id()))
            .map(|e| e.entity_id.as_str());
        let acs = agg
            .get(&id)
            .and_then(|e| e.sp())
            .and_then(|s| s.default_acs())
            .map(|a| a.endpoint.location.to_string());
        all &= step(
            by_sha1 == Some(id.as_str()) && acs.is_some(),
            &format!(
                "lookup of {id} by entityID and by {{sha1}} in {:?}: default ACS {}",
                t.elapsed(),
                acs.unwrap_or_default()
            ),
        );
    }

    println!("== 7. Publish: a hand-built entity and a selection, re-signed by a second key");
    let (republisher, republisher_cert) = self_signed("Demo Republisher")?;
    std::fs::write(out.join("republisher.crt.pem"), republisher_cert.to_pem()?)?;
    let repub_key = SigningKey::new(republisher, Some(republisher_cert.clone()))?;
    let now = std::time::SystemTime::now();
    let own = EntityDescriptor::builder("https://wiki.example.org/shibboleth")
        .entity_category(rs)
        .sp(SpSso::builder()
            .signing_certificate(cert.to_der()?)
            .acs(
                Binding::HttpPost,
                "https://wiki.example.org/Shibboleth.sso/SAML2/POST",
            )
            .display_name("en", "Example Wiki")
            .requested_attribute(
                "en",
                "Example Wiki",
                "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
                Some("eduPersonPrincipalName"),
                true,
            ))
        .organization("en", "Example Org", "https://www.example.org/")
        .security_contact("mailto:cert@example.org")
        .build()?;
    let published = EntitiesDescriptor::combine(
        "https://republisher.example.org/rands-idps",
        agg.select(&rands_filter)
            .cloned()
            .chain(std::iter::once(own)),
        Some(now + std::time::Duration::from_secs(7 * 86400)),
    )?;
    let pub_signed = published.sign(&repub_key, &SignOptions::default())?;
    let pub_path = out.join("republished-signed.xml");
    std::fs::write(&pub_path, &pub_signed)?;
    let mut repub_trust = TrustedKeys::new();
    repub_trust.add_certificate(&republisher_cert)?;
    let back = saml_metadata::load::load(
        &pub_signed,
        &saml_metadata::load::Policy::new(repub_trust, now),
    )?;
    all &= step(
        back.len() == rands + 1 && back.metadata() == &Metadata::Entities(Box::new(published)),
        &format!(
            "wrote {} entities ({} bytes), signed on write; reloaded, the model is unchanged",
            back.len(),
            pub_signed.len()
        ),
    );
    all &= xmlsec1_verifies(
        &out.join("republisher.crt.pem"),
        &pub_path,
        "xmlsec1 --verify accepts the republished aggregate",
    );
    all &= step(
        saml_metadata::load::load(&pub_signed, &policy).is_err(),
        "the federation's key alone does not verify the republished aggregate",
    );
    all &= web_sso(out)?;
    all &= xmpp_sso()?;
    all &= mdq(&big_signed, &policy, &key, &trusted)?;
    all &= xep0027_modules()?;
    Ok(all)
}

/// Step 11: cloud modules over XMPP with XEP-0027 (saml_examples::modules).
fn xep0027_modules() -> Res<bool> {
    println!(
        "== 11. XEP-0027 between cloud modules (signed presence, encrypted messages, replay, session key, encrypted room)"
    );
    let gpg = saml_examples::gnupg::Gpg::new()?;
    let mut all = true;
    for (ok, what) in saml_examples::modules::run(&gpg)? {
        all &= step(ok, &what);
    }
    Ok(all)
}

/// Step 10: an MDQ responder serving the aggregate's entities split and re-signed, and
/// mdq-client's blocking adapter looking them up (verified, cached).
fn mdq(
    aggregate: &[u8],
    policy: &saml_metadata::load::Policy,
    key: &SigningKey,
    trusted: &TrustedKeys,
) -> Res<bool> {
    use mdq_client::io::blocking::{BlockingClient, Options};
    use mdq_client::{BaseUrl, Config, Identifier};

    println!("== 10. Metadata Query Protocol (mdq-client against a loopback MDQ responder)");
    let mut all = true;
    let t = Instant::now();
    let parts = saml_metadata::split::split(aggregate, policy)?;
    let mut docs = std::collections::HashMap::new();
    for p in parts.iter().take(200) {
        docs.insert(
            saml_metadata::model::sha1_hex(&p.entity_id),
            dsig::sign(p.xml.as_bytes(), key, &SignOptions::default())?,
        );
    }
    let server = saml_examples::mdq_server::serve(docs)?;
    println!(
        "   split the aggregate and re-signed 200 entities in {:?}; serving at {}",
        t.elapsed(),
        server.base
    );
    let client = BlockingClient::new(
        Config::new(BaseUrl::parse(&server.base)?, trusted.clone()),
        Options::default(),
    );
    let first = &parts[0].entity_id;
    let t = Instant::now();
    let e = client.get(&Identifier::entity_id(first)?)?;
    all &= step(
        e.is_some(),
        &format!("fetched and verified {first} in {:?}", t.elapsed()),
    );
    let t = Instant::now();
    let again = client.get(&Identifier::sha1_of(first))?;
    all &= step(
        again.is_some() && server.requests.load(std::sync::atomic::Ordering::Relaxed) == 1,
        &format!(
            "the same entity by {{sha1}} from the cache in {:?} (no request)",
            t.elapsed()
        ),
    );
    let nobody = client.get(&Identifier::entity_id("https://nobody.example.org/idp")?)?;
    all &= step(
        nobody.is_none(),
        "an unknown entity: 404, remembered as not found",
    );
    // A client trusting another key refuses every answer.
    let (other, _) = self_signed("Not the MDQ signer")?;
    let mut wrong = TrustedKeys::new();
    wrong.add_public_key(
        openssl::pkey::PKey::public_key_from_der(&other.public_key_to_der()?)?,
        "other",
    )?;
    let strict = BlockingClient::new(
        Config::new(BaseUrl::parse(&server.base)?, wrong),
        Options::default(),
    );
    match strict.get(&Identifier::entity_id(&parts[1].entity_id)?) {
        Err(e) => {
            all &= step(
                true,
                &format!("with the wrong signer key the answer is refused: {e}"),
            )
        }
        Ok(_) => all &= step(false, "an answer signed by an untrusted key was accepted"),
    }
    Ok(all)
}

/// Step 9: RFC 6595 between XMPP servers on loopback (saml_examples::xmpp_s2s).
fn xmpp_sso() -> Res<bool> {
    println!(
        "== 9. SAML20 SASL between XMPP servers (source -> d1, d2; one IdP; loopback TCP and HTTP)"
    );
    let reports = saml_examples::xmpp_s2s::run().map_err(|e| e.to_string())?;
    let mut all = true;
    for r in &reports {
        let ok = r.outcome.is_ok() && r.source_saw.starts_with("<success");
        all &= step(
            ok,
            &format!(
                "{}: {} authenticated as {}; source saw {}; {}",
                r.destination,
                "source.example",
                r.outcome
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|e| format!("(failed: {e})")),
                r.source_saw,
                if r.idp_login {
                    "the IdP logged the agent in"
                } else {
                    "no new login: single sign-on from the IdP session"
                }
            ),
        );
    }
    all &= step(
        reports.len() == 2 && reports[0].idp_login && !reports[1].idp_login,
        "one login at the IdP served both destinations",
    );
    Ok(all)
}

/// Step 8: SP and IdP metadata written with saml-metadata, a signed HTTP-Redirect AuthnRequest,
/// an encrypted and signed Response over HTTP-POST, validated by the SP; then a replay, a
/// wrapped assertion and a tampered Response refused.
fn web_sso(out: &Path) -> Res<bool> {
    use saml_core::bindings::{MessageKind, post, redirect};
    use saml_core::protocol::idp::{Encryption, ResponseBuilder};
    use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
    use saml_core::protocol::{
        Attribute, AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, OutstandingRequests,
        new_id, openssl_random,
    };
    use saml_metadata::model::IdpSso;
    use saml_metadata::sso;

    println!("== 8. Web SSO (saml-core protocol and bindings, peers from saml-metadata)");
    let mut all = true;
    let (idp_pkey, idp_cert) = self_signed("Demo IdP")?;
    let (sp_pkey, sp_cert) = self_signed("Demo SP")?;
    let idp_md = EntityDescriptor::builder("https://idp.example.org/idp/shibboleth")
        .idp(
            IdpSso::builder()
                .signing_certificate(idp_cert.to_der()?)
                .sso(
                    Binding::HttpRedirect,
                    "https://idp.example.org/idp/profile/SAML2/Redirect/SSO",
                ),
        )
        .build()?;
    let sp_md = EntityDescriptor::builder("https://wiki.example.org/shibboleth")
        .sp(SpSso::builder()
            .signing_certificate(sp_cert.to_der()?)
            .encryption_certificate(sp_cert.to_der()?)
            .want_assertions_signed(true)
            .acs(
                Binding::HttpPost,
                "https://wiki.example.org/Shibboleth.sso/SAML2/POST",
            ))
        .build()?;
    std::fs::write(out.join("sso-idp-metadata.xml"), idp_md.to_xml()?)?;
    std::fs::write(out.join("sso-sp-metadata.xml"), sp_md.to_xml()?)?;
    let now = std::time::SystemTime::now();

    let (req, sso_url) = sso::authn_request(
        &sp_md,
        &idp_md,
        Binding::HttpRedirect,
        new_id(&mut openssl_random),
        now,
    )?;
    let sp_key = SigningKey::new(sp_pkey.clone(), Some(sp_cert))?;
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        Some("page-42"),
        Some(&sp_key),
        None,
    )?;
    let mut requests = OutstandingRequests::new();
    requests.insert(
        &req.id,
        &idp_md.entity_id,
        now + std::time::Duration::from_secs(300),
        now,
    );
    println!(
        "   SP -> {}?SAMLRequest=…&RelayState=page-42&SigAlg=…&Signature=… ({} bytes)",
        sso_url,
        q.len()
    );

    let m = redirect::decode(&q, redirect::DEFAULT_MAX_INFLATED)?;
    m.verify(&sso::sp_signing_keys(&sp_md)?, false)?;
    let got = AuthnRequest::parse(&m.xml)?;
    let acs = sso::acs_for(&sp_md, &got)?;
    all &= step(
        true,
        &format!("IdP verified the query signature with the SP's metadata key; answers to {acs}"),
    );
    let mut b = ResponseBuilder::for_request(
        &got,
        &idp_md.entity_id,
        &acs,
        NameId::new("u-5e1f9c", NAMEID_PERSISTENT),
    );
    b.attributes = vec![Attribute::uri(
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
        Some("eduPersonPrincipalName"),
        &["ada@example.org"],
    )];
    b.encryption = sso::sp_encryption_key(&sp_md)?.map(|recipient| Encryption {
        recipient,
        algorithm: DataAlgorithm::Aes256Gcm,
        transport: KeyTransport::RsaOaepMgf1p,
    });
    let idp_key = SigningKey::new(idp_pkey, Some(idp_cert))?;
    let response = b.build(&idp_key, now, &mut openssl_random)?;
    let form = post::form(
        &acs,
        MessageKind::Response,
        &response,
        m.relay_state.as_deref(),
    )?;
    std::fs::write(out.join("sso-response-form.html"), &form)?;

    let body = format!(
        "SAMLResponse={}&RelayState=page-42",
        saml_core::bindings::url_encode(&post::encode(&response))
    );
    let posted = post::decode_form(&body, post::DEFAULT_MAX_MESSAGE)?;
    let mut v = sso::response_validator(&sp_md, &idp_md)?;
    v.decryption_keys = vec![sp_pkey];
    let mut replay = MemoryReplayCache::new();
    let t = Instant::now();
    match v.validate(&posted.xml, now, &mut requests, &mut replay) {
        Ok(ok) => {
            all &= step(
                ok.encrypted && ok.assertion_signed && ok.response_signed,
                &format!(
                    "SP validated the encrypted, signed Response in {:?}: NameID {}, eduPersonPrincipalName {:?}, RelayState {:?}",
                    t.elapsed(),
                    ok.name_id().map(|n| n.value.as_str()).unwrap_or_default(),
                    ok.assertion
                        .attribute("eduPersonPrincipalName")
                        .map(|a| a.values.clone())
                        .unwrap_or_default(),
                    posted.relay_state.as_deref().unwrap_or_default()
                ),
            )
        }
        Err(e) => all &= step(false, &format!("SP refused the Response: {e}")),
    }
    match v.validate(&posted.xml, now, &mut requests, &mut replay) {
        Err(e) => all &= step(true, &format!("the same Response again is refused: {e}")),
        Ok(_) => all &= step(false, "a replayed Response was accepted"),
    }
    // Signature wrapping: an evil assertion beside the signed one (assertion-only signature).
    let mut requests = OutstandingRequests::new();
    requests.insert(
        &req.id,
        &idp_md.entity_id,
        now + std::time::Duration::from_secs(300),
        now,
    );
    b.encryption = None;
    b.sign_response = false;
    let plain = String::from_utf8(b.build(&idp_key, now, &mut openssl_random)?)?;
    let (s, e) = (
        plain.find("<saml:Assertion").unwrap_or(0),
        plain.find("</saml:Assertion>").map(|i| i + 17).unwrap_or(0),
    );
    let evil = plain[s..e]
        .replacen(" ID=\"", " ID=\"_evil", 1)
        .replace("u-5e1f9c", "admin");
    let wrapped = format!("{}{evil}{}", &plain[..s], &plain[s..]);
    match v.validate(
        wrapped.as_bytes(),
        now,
        &mut requests,
        &mut MemoryReplayCache::new(),
    ) {
        Err(e) => {
            all &= step(
                true,
                &format!("signature wrapping (evil assertion beside the signed one) refused: {e}"),
            )
        }
        Ok(_) => all &= step(false, "a wrapped Response was accepted"),
    }
    let tampered = plain.replace("u-5e1f9c", "admin");
    match v.validate(
        tampered.as_bytes(),
        now,
        &mut requests,
        &mut MemoryReplayCache::new(),
    ) {
        Err(e) => {
            all &= step(
                true,
                &format!("a Response whose NameID was changed refused: {e}"),
            )
        }
        Ok(_) => all &= step(false, "a tampered Response was accepted"),
    }
    Ok(all)
}

fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/demo"));
    match run(&out) {
        Ok(true) => {
            println!(
                "\nDemo finished: every step behaved as expected. Files in {}",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("\nDemo finished with failures.");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
