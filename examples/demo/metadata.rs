//! Steps 1-7: a key pair, a signed aggregate verified by us and by xmlsec1, attacks refused, a
//! federation-sized aggregate loaded, filtered and looked up, a selection republished.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use base64::Engine as _;
use openssl::hash::MessageDigest;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys, VerifyOptions};
use saml_core::xml::Event;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::filter::{ENTITY_CATEGORY_SUPPORT, Filter, RoleKind};
use saml_metadata::model::{Binding, EntitiesDescriptor, EntityDescriptor, Metadata, SpSso};

use crate::{Res, self_signed, step, xmlsec1_verifies};

/// What the later steps use: the signed 2,000-entity aggregate and how to trust it.
pub(crate) struct Published {
    /// The signed aggregate.
    pub(crate) aggregate: Vec<u8>,
    /// The policy that loads it.
    pub(crate) policy: saml_metadata::load::Policy,
    /// The federation's signing key.
    pub(crate) key: SigningKey,
    /// The federation's certificate as the trusted key.
    pub(crate) trusted: TrustedKeys,
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

pub(crate) fn run(out: &Path) -> Res<(bool, Published)> {
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
    let big = testkit::aggregate::generate(2000, 7);
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
    Ok((
        all,
        Published {
            aggregate: big_signed,
            policy,
            key,
            trusted,
        },
    ))
}
