//! A whole DAME broker flow driven by fuzzed input (dame-protocol's `Broker`): the input is a
//! sequence of operations, each an opcode byte, an index byte and a text up to the next 0xff
//! byte: discovery, IdP chosen, authenticate, Response2 (fuzzed, or a genuine one the target
//! signs for the flow's AuthnRequest2 so that the exchange states are reached), trigger answers
//! and failures, status reports, user-agent polls, time passing. Errors are fine, panics are
//! not; invariants: the flow table never exceeds its cap, a refused message leaves the phase of
//! the flow it named unchanged, and every trigger goes to a registered entity's sync location.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dame_protocol::broker::{Broker, BrokerPolicy, FlowId, UaReply};
use dame_protocol::discovery::DiscoveryRequest;
use dame_protocol::registry::EntityPolicy;
use libfuzzer_sys::fuzz_target;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder};
use saml_core::bindings::{post, redirect, url_encode};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{AuthnRequest, NAMEID_TRANSIENT, NameId};
use saml_fuzz::{KEY_PEM, signing_key};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, SpSso};

const SP: &str = "https://sp.example.org/shibboleth";
const IDP: &str = "https://idp.example.net/idp/shibboleth";
const SYNCS: [&str; 2] = [
    "https://sp.example.org/dame",
    "https://idp.example.net/dame",
];

fn now0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[allow(clippy::expect_used)]
fn cert() -> Vec<u8> {
    let pkey = PKey::private_key_from_pem(KEY_PEM).expect("key");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "fuzz").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("x509");
    b.set_version(2).expect("v");
    b.set_subject_name(&name).expect("s");
    b.set_issuer_name(&name).expect("i");
    b.set_pubkey(&pkey).expect("p");
    b.set_not_before(&Asn1Time::from_unix(1_700_000_000).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::from_unix(1_900_000_000).expect("t"))
        .expect("na");
    b.sign(&pkey, MessageDigest::sha256()).expect("sign");
    b.build().to_der().expect("der")
}

/// The broker with the SP and the IdP registered (the SP in the unmodified mode and admitting
/// unsigned AuthnRequest1, so that fuzzed input reaches every state), cloned per input.
#[allow(clippy::expect_used)]
fn template() -> &'static Broker {
    static B: OnceLock<Broker> = OnceLock::new();
    B.get_or_init(|| {
        let der = cert();
        let key = signing_key().expect("key");
        let broker_md = EntityDescriptor::builder("https://broker.example.com/sp")
            .sp(SpSso::builder()
                .signing_certificate(der.clone())
                .acs(Binding::HttpPost, "https://broker.example.com/acs"))
            .build()
            .expect("broker");
        let sp = EntityDescriptor::builder(SP)
            .sp(SpSso::builder()
                .signing_certificate(der.clone())
                .acs(Binding::HttpPost, "https://sp.example.org/acs")
                .discovery_response("https://sp.example.org/Shibboleth.sso/Login"))
            .dame_sync_location(SYNCS[0])
            .build()
            .expect("sp");
        let idp = EntityDescriptor::builder(IDP)
            .idp(
                IdpSso::builder()
                    .signing_certificate(der)
                    .sso(Binding::HttpRedirect, "https://idp.example.net/sso"),
            )
            .dame_sync_location(SYNCS[1])
            .build()
            .expect("idp");
        let mut b =
            Broker::new(broker_md, key, BrokerPolicy::default().with_max_flows(8)).expect("broker");
        b.registry
            .insert(
                sp,
                EntityPolicy::default()
                    .with_unmodified_sp(true)
                    .with_unsigned_authn_request(true),
                now0(),
                false,
            )
            .expect("register sp");
        b.registry
            .insert(idp, EntityPolicy::default(), now0(), false)
            .expect("register idp");
        b
    })
}

/// A genuine Response2 for the AuthnRequest2 in `url`, signed by the IdP.
fn genuine_response2(url: &str, now: SystemTime, rng: &mut dyn FnMut(&mut [u8])) -> Option<String> {
    let q = url.split_once('?')?.1;
    let m = redirect::decode(q, 1 << 16).ok()?;
    let req = AuthnRequest::parse(&m.xml).ok()?;
    let key = signing_key().ok()?;
    let xml = ResponseBuilder::for_request(
        &req,
        IDP,
        "https://broker.example.com/acs",
        NameId::new("fuzz", NAMEID_TRANSIENT),
    )
    .build(&key, now, rng)
    .ok()?;
    Some(format!("SAMLResponse={}", url_encode(&post::encode(&xml))))
}

fuzz_target!(|data: &[u8]| {
    let mut broker = template().clone();
    let mut now = now0();
    let mut counter = 0u64;
    let mut rng = move |b: &mut [u8]| {
        for x in b.iter_mut() {
            counter = counter
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *x = (counter >> 56) as u8;
        }
    };
    let mut flows: Vec<FlowId> = Vec::new();
    let mut last_idp_url: Option<String> = None;
    for op in data.split(|b| *b == 0xff).take(64) {
        let (code, idx, text) = match op {
            [c, i, rest @ ..] => (
                *c,
                usize::from(*i),
                String::from_utf8_lossy(rest).into_owned(),
            ),
            [c] => (*c, 0, String::new()),
            [] => continue,
        };
        let flow = flows.get(idx % flows.len().max(1)).cloned();
        let phase_before = flow.as_ref().and_then(|f| broker.phase(f));
        let entity = if idx % 2 == 0 { SP } else { IDP };
        let res: Result<(), dame_protocol::Error> = match code % 11 {
            0 => {
                let q = if text.is_empty() {
                    DiscoveryRequest::new(SP, Some("https://sp.example.org/Shibboleth.sso/Login"))
                        .to_query()
                } else {
                    text.clone()
                };
                broker
                    .handle_discovery(&q, "192.0.2.1", now, &mut rng)
                    .map(|r| {
                        if let UaReply::ChooseIdp { flow, .. } = r {
                            flows.push(flow);
                        }
                    })
            }
            1 => match &flow {
                Some(f) => broker
                    .handle_idp_chosen(f, if text.is_empty() { IDP } else { &text }, now, &mut rng)
                    .map(|r| {
                        if let UaReply::Redirect(u) = r {
                            last_idp_url = Some(u);
                        }
                    }),
                None => Ok(()),
            },
            2 => broker
                .handle_authenticate(
                    flow.as_ref().filter(|_| idx % 3 != 0),
                    &text,
                    "192.0.2.2",
                    now,
                    &mut rng,
                )
                .map(|(f, r)| {
                    flows.push(f);
                    if let UaReply::Redirect(u) = r {
                        last_idp_url = Some(u);
                    }
                }),
            3 => match &flow {
                Some(f) => broker.handle_response2(f, &text, now, &mut rng).map(|_| ()),
                None => Ok(()),
            },
            4 => match (&flow, &last_idp_url) {
                (Some(f), Some(u)) => match genuine_response2(u, now, &mut rng) {
                    Some(form) => broker.handle_response2(f, &form, now, &mut rng).map(|_| ()),
                    None => Ok(()),
                },
                _ => Ok(()),
            },
            5 => match &flow {
                Some(f) => {
                    let status = [200u16, 202, 403, 500, 404][idx % 5];
                    broker.handle_trigger_answer(f, entity, status, &text, now, &mut rng)
                }
                None => Ok(()),
            },
            6 => match &flow {
                Some(f) => broker.handle_trigger_failure(f, entity, &text, now, &mut rng),
                None => Ok(()),
            },
            7 => broker
                .handle_status_report(&text, now, &mut rng)
                .map(|_| ()),
            8 => match &flow {
                Some(f) => broker.handle_user_agent(f, now).map(|_| ()),
                None => Ok(()),
            },
            9 => {
                now += Duration::from_secs(idx as u64 * 4);
                broker.handle_timeout(now, &mut rng);
                Ok(())
            }
            _ => {
                // An integration confirmed by both sides, when the flow is exchanging.
                if let Some(f) = &flow {
                    for e in [IDP, SP] {
                        let _ = broker.handle_trigger_answer(
                            f,
                            e,
                            200,
                            "status=integrated",
                            now,
                            &mut rng,
                        );
                    }
                }
                Ok(())
            }
        };
        if res.is_err() {
            if let Some(f) = &flow {
                // A refusal changes nothing in the flow it named (time alone may expire it).
                let after = broker.phase(f);
                assert!(
                    after == phase_before || after.is_none(),
                    "{phase_before:?} -> {after:?}"
                );
            }
        }
        assert!(broker.flow_count() <= 8);
        while let Some(t) = broker.poll_transmit() {
            assert!(
                SYNCS.iter().any(|s| t.url.starts_with(&format!("{s}?"))),
                "trigger to {}",
                t.url
            );
        }
        while broker.poll_event().is_some() {}
    }
});
