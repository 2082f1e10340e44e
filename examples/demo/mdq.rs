//! Step 10: the Metadata Query Protocol against a loopback responder.

use std::time::Instant;

use saml_core::dsig::{self, SignOptions, TrustedKeys};

use crate::{Res, self_signed, step};

/// Step 10: an MDQ responder serving the aggregate's entities split and re-signed, and
/// mdq-client's blocking adapter looking them up (verified, cached).
pub(crate) fn run(p: &crate::metadata::Published) -> Res<bool> {
    let (aggregate, policy, key, trusted) = (&p.aggregate[..], &p.policy, &p.key, &p.trusted);
    use mdq_client::io::blocking::{BlockingClient, Options};
    use mdq_client::{BaseUrl, Config, Identifier};

    println!("== 10. Metadata Query Protocol (mdq-client against a loopback MDQ responder)");
    let mut all = true;
    let t = Instant::now();
    // Cut from the verified aggregate and re-signed as an MDQ responder does, each valid for
    // at most a week from now (`samlmd split --key`'s default): the client requires a
    // validUntil no more than 28 days ahead.
    let agg = saml_metadata::lazy::load_lazy(aggregate, policy)?;
    let week = policy.now + std::time::Duration::from_secs(7 * 86_400);
    let mut parts = Vec::new();
    for id in agg.entity_ids().take(200) {
        if let Some(d) = agg.entity_document_until(id, Some(week))? {
            parts.push(d);
        }
    }
    let mut docs = std::collections::HashMap::new();
    for p in &parts {
        docs.insert(
            saml_metadata::model::sha1_hex(&p.entity_id),
            dsig::sign(p.xml.as_bytes(), key, &SignOptions::default())?,
        );
    }
    let server = testkit::mdq_server::serve(docs)?;
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
