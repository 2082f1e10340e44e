//! Step 8: Web SSO between an SP and an IdP described by metadata.

use std::path::Path;
use std::time::Instant;

use saml_core::dsig::SigningKey;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, SpSso};

use crate::{Res, self_signed, step};

/// Step 8: SP and IdP metadata written with saml-metadata, a signed HTTP-Redirect AuthnRequest,
/// an encrypted and signed Response over HTTP-POST, validated by the SP; then a replay, a
/// wrapped assertion and a tampered Response refused.
pub(crate) fn run(out: &Path) -> Res<bool> {
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
