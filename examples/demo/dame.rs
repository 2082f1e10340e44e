//! Step 12: DAME through a broker, in memory with real messages and signatures: the first use
//! of an IdP-SP pair (discovery, AuthnRequest1 verified and stored, the user authenticated at the
//! IdP for the broker, signed triggers, both agents pulling and integrating the peer from the
//! broker's MDQ service, AuthnRequest1 replayed at once), the second use without the broker,
//! the mode for unmodified SPs, and a faked broker's trigger refused. The SP's integrated
//! metadata is written in Shibboleth's LocalDynamic layout under OUTDIR/dame-sp-localdynamic.

#[path = "../../crates/dame-protocol/tests/harness/mod.rs"]
mod harness;

use std::path::Path;
use std::time::Instant;

use dame_protocol::integration::{IntegrationTarget, LocalDynamicDir};
use dame_protocol::registry::EntityPolicy;
use dame_protocol::trigger::{Trigger, TriggerAction};
use harness::{IDP, IDP_SYNC, SP, World};

use crate::{Res, step};

pub(crate) fn run(out: &Path) -> Res<bool> {
    println!("-- DAME: on-demand metadata exchange through a broker (draft-poehn-dame-06)");
    let mut all = true;
    let mut w = World::new();
    let t = Instant::now();
    let (_, who) = w.first_use();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    all &= step(
        who == "alice" && w.broker.relationships.contains(IDP, SP),
        &format!(
            "first use: IdP then SP integrated each other, AuthnRequest1 replayed, the SP logged in {who} \
             ({ms:.0} ms for the whole exchange, every signature real; GÉANT-TrustBroker: < 2 s + a fixed 10 s wait)"
        ),
    );
    let dir = out.join("dame-sp-localdynamic");
    let _ = std::fs::remove_dir_all(&dir);
    let mut local = LocalDynamicDir::open(&dir)?;
    let target = w.sp.agent.target().clone();
    for (stem, url) in target.sources()? {
        if let Some(xml) = target.files.get(&format!("{stem}.xml")) {
            local.integrate(IDP, xml, &url)?;
        }
    }
    all &= step(
        local.sources()?.len() == 1,
        &format!(
            "the SP's copy of the IdP written as {} (+ .loc with its MDQ URL), as Shibboleth's LocalDynamic reads it",
            dir.join(dame_protocol::integration::metadata_file(IDP))
                .display()
        ),
    );
    let url = w.sp_direct_login(IDP);
    let second = w
        .idp_sso(IDP, &url)
        .and_then(|(form, _)| w.sp_acs(IDP, &form));
    all &= step(
        matches!(second.as_deref(), Ok("alice")) && w.broker.flow_count() == 0,
        "second use: plain SSO between the SP and the IdP, the broker not involved",
    );
    let fake = testkit::signer::TestKey::rsa("fake-broker");
    let forged = Trigger::new(TriggerAction::Rollback, SP, IDP, w.now, &mut harness::rng())
        .url(IDP_SYNC, &fake.signing())?;
    let refused = w
        .idp
        .agent
        .handle_trigger(harness::query_of(&forged), "203.0.113.66", w.now)
        .err()
        .and_then(|e| e.refusal());
    all &= step(
        refused == Some(dame_protocol::Refusal::BadSignature) && w.integrated(IDP, SP).is_some(),
        "a rollback trigger signed by a faked broker is refused; the IdP keeps the SP",
    );
    let mut u = World::with(
        EntityPolicy::default().with_unmodified_sp(true),
        dame_protocol::broker::BrokerPolicy::default(),
    );
    all &= step(
        unmodified(&mut u).unwrap_or(false),
        "unmodified-SP mode (per-SP policy): discovery answered only after the exchange; the stock SP's own AuthnRequest goes to the IdP",
    );
    Ok(all)
}

fn unmodified(w: &mut World) -> Res<bool> {
    use dame_protocol::broker::UaReply;
    let mut r = harness::rng();
    let now = w.now;
    let UaReply::ChooseIdp { flow, .. } =
        w.broker
            .handle_discovery(&w.sp_discovery(), harness::UA_ADDR, now, &mut r)?
    else {
        return Ok(false);
    };
    let UaReply::Redirect(to_idp) = w.broker.handle_idp_chosen(&flow, IDP, now, &mut r)? else {
        return Ok(false);
    };
    let (form, _) = w.idp_sso(IDP, &to_idp)?;
    let _ = w.broker.handle_response2(&flow, &form, now, &mut r)?;
    w.settle();
    let UaReply::Redirect(back) = w.broker.handle_user_agent(&flow, now)? else {
        return Ok(false);
    };
    let url = w.sp_direct_login(IDP);
    let (form, _) = w.idp_sso(IDP, &url)?;
    Ok(back.starts_with(harness::SP_DS) && w.sp_acs(IDP, &form)? == "alice")
}
