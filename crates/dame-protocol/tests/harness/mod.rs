//! A three-party world in memory: a user agent, a DAME-capable SP with its agent, an IdP with
//! its agent, and the broker. Real saml-core messages, real signatures (RSA-2048), metadata
//! written by saml-metadata, the broker's MDQ service answering mdq-client's requests. Nothing
//! is mocked but the network: each hop is a function call with the URL or form that would
//! travel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dame_protocol::agent::{Agent, FetchOutcome, Side, TriggerStep};
use dame_protocol::broker::{Broker, BrokerPolicy, FlowId, Transmit, UaReply};
use dame_protocol::discovery::DiscoveryRequest;
use dame_protocol::integration::{IntegrationTarget, MemoryTarget, metadata_file};
use dame_protocol::mdi::MdiResponse;
use dame_protocol::mdq_service::{MdqRequest, MdqService};
use dame_protocol::registry::EntityPolicy;
use dame_protocol::trigger::TriggerAction;
use dame_protocol::{Error, Refusal};
use mdq_client::response::HttpResponse;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::protocol::idp::{ResponseBuilder, check_signed_request};
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_TRANSIENT, NameId, OutstandingRequests, openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata, SpSso};
use testkit::signer::TestKey;

pub const SP: &str = "https://sp.example.org/shibboleth";
pub const SP_ACS: &str = "https://sp.example.org/Shibboleth.sso/SAML2/POST";
pub const SP_DS: &str = "https://sp.example.org/Shibboleth.sso/Login";
pub const SP_SYNC: &str = "https://sp.example.org/dame";
pub const IDP: &str = "https://idp.example.net/idp/shibboleth";
pub const IDP_SSO: &str = "https://idp.example.net/idp/profile/SAML2/Redirect/SSO";
pub const IDP_SYNC: &str = "https://idp.example.net/dame";
pub const IDP2: &str = "https://idp.other.example/idp";
pub const BROKER: &str = "https://broker.example.com/sp";
pub const BROKER_ACS: &str = "https://broker.example.com/dame/acs";
pub const BROKER_DAME: &str = "https://broker.example.com/dame";
pub const BROKER_MDQ: &str = "https://broker.example.com/mdq/";
pub const UA_ADDR: &str = "198.51.100.20";
pub const BROKER_ADDR: &str = "203.0.113.5";

pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn rng() -> impl FnMut(&mut [u8]) {
    openssl_random
}

pub fn refusal<T: std::fmt::Debug>(r: Result<T, Error>) -> Refusal {
    match r {
        Err(e) => e
            .refusal()
            .unwrap_or_else(|| panic!("not a refusal: {e} ({e:?})")),
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

pub fn query_of(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, q)| q)
}

pub fn redirect_of(r: UaReply) -> String {
    match r {
        UaReply::Redirect(u) => u,
        other => panic!("not a redirect: {other:?}"),
    }
}

pub fn sp_entity(key: &TestKey, id: &str, sync: Option<&str>) -> EntityDescriptor {
    let host = id.split('/').nth(2).unwrap();
    let mut b = EntityDescriptor::builder(id).sp(SpSso::builder()
        .signing_certificate(key.cert_der())
        .acs(
            Binding::HttpPost,
            &format!("https://{host}/Shibboleth.sso/SAML2/POST"),
        )
        .discovery_response(&format!("https://{host}/Shibboleth.sso/Login"))
        .requested_attribute(
            "en",
            "Example SP",
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
            Some("eduPersonPrincipalName"),
            true,
        ));
    if let Some(s) = sync {
        b = b.dame_sync_location(s);
    }
    b.build().unwrap()
}

pub fn idp_entity(key: &TestKey, id: &str, sync: Option<&str>) -> EntityDescriptor {
    let host = id.split('/').nth(2).unwrap();
    let mut b = EntityDescriptor::builder(id).idp(
        IdpSso::builder().signing_certificate(key.cert_der()).sso(
            Binding::HttpRedirect,
            &format!("https://{host}/idp/profile/SAML2/Redirect/SSO"),
        ),
    );
    if let Some(s) = sync {
        b = b.dame_sync_location(s);
    }
    b.build().unwrap()
}

pub fn broker_entity(key: &TestKey) -> EntityDescriptor {
    EntityDescriptor::builder(BROKER)
        .sp(SpSso::builder()
            .signing_certificate(key.cert_der())
            .acs(Binding::HttpPost, BROKER_ACS)
            .authn_requests_signed(true))
        .build()
        .unwrap()
}

/// A provider: its metadata, key and DAME agent.
pub struct Party {
    pub entity: EntityDescriptor,
    pub key: TestKey,
    pub agent: Agent<MemoryTarget>,
}

pub struct SpState {
    pub requests: OutstandingRequests,
    pub replay: MemoryReplayCache,
}

pub struct World {
    pub now: SystemTime,
    pub broker_key: TestKey,
    pub broker: Broker,
    pub sp: Party,
    pub idp: Party,
    pub idp2: Party,
    pub sp_state: SpState,
    /// Entities whose agent's fetch from the broker fails in transport.
    pub fetch_fails_for: Vec<String>,
    /// Entities whose agent answers triggers with `accepted-pending` and reports later.
    pub defer_for: Vec<String>,
    /// Status reports sent by deferring agents, not yet delivered.
    pub reports: Vec<String>,
    /// Triggers delivered, in order: (to, action).
    pub delivered: Vec<(String, TriggerAction)>,
    /// The NameID value the IdPs assert (`alice`).
    pub user: String,
}

/// The four RSA-2048 keys (broker, SP, IdP, second IdP), made once per process.
fn keys() -> [TestKey; 4] {
    static KEYS: std::sync::OnceLock<Vec<TestKey>> = std::sync::OnceLock::new();
    let k = KEYS.get_or_init(|| {
        ["broker", "sp", "idp", "idp2"]
            .into_iter()
            .map(TestKey::rsa)
            .collect()
    });
    let copy = |t: &TestKey| TestKey {
        pkey: t.pkey.clone(),
        cert: t.cert.clone(),
    };
    [copy(&k[0]), copy(&k[1]), copy(&k[2]), copy(&k[3])]
}

fn agent(me: &str, side: Side, key: &TestKey, broker: &TestKey) -> Agent<MemoryTarget> {
    Agent::new(
        me,
        side,
        broker.trusted(),
        BROKER_MDQ,
        BROKER_DAME,
        key.signing(),
        MemoryTarget::default(),
    )
    .unwrap()
}

impl World {
    pub fn new() -> World {
        World::with(EntityPolicy::default(), BrokerPolicy::default())
    }

    pub fn with(sp_policy: EntityPolicy, policy: BrokerPolicy) -> World {
        let broker_key = TestKey::rsa("broker");
        let (sk, ik, ik2) = (
            TestKey::rsa("sp"),
            TestKey::rsa("idp"),
            TestKey::rsa("idp2"),
        );
        let sp = sp_entity(&sk, SP, Some(SP_SYNC));
        let idp = idp_entity(&ik, IDP, Some(IDP_SYNC));
        let idp2 = idp_entity(&ik2, IDP2, Some("https://idp.other.example/dame"));
        let mut broker =
            Broker::new(broker_entity(&broker_key), broker_key.signing(), policy).unwrap();
        let now = t0();
        broker
            .registry
            .insert(sp.clone(), sp_policy, now, false)
            .unwrap();
        broker
            .registry
            .insert(idp.clone(), EntityPolicy::default(), now, false)
            .unwrap();
        broker
            .registry
            .insert(idp2.clone(), EntityPolicy::default(), now, false)
            .unwrap();
        World {
            now,
            sp: Party {
                agent: agent(SP, Side::Sp, &sk, &broker_key),
                entity: sp,
                key: sk,
            },
            idp: Party {
                agent: agent(IDP, Side::Idp, &ik, &broker_key),
                entity: idp,
                key: ik,
            },
            idp2: Party {
                agent: agent(IDP2, Side::Idp, &ik2, &broker_key),
                entity: idp2,
                key: ik2,
            },
            broker_key,
            broker,
            sp_state: SpState {
                requests: OutstandingRequests::new(),
                replay: MemoryReplayCache::new(),
            },
            fetch_fails_for: Vec::new(),
            defer_for: Vec::new(),
            reports: Vec::new(),
            delivered: Vec::new(),
            user: "alice".to_owned(),
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn party(&mut self, id: &str) -> &mut Party {
        match id {
            SP => &mut self.sp,
            IDP => &mut self.idp,
            IDP2 => &mut self.idp2,
            other => panic!("no party {other}"),
        }
    }

    /// What an entity's software knows of a peer: what its agent integrated (the broker's
    /// signed document, verified with the broker's key as a LocalDynamic source would).
    pub fn integrated(&self, who: &str, peer: &str) -> Option<EntityDescriptor> {
        let p = match who {
            SP => &self.sp,
            IDP => &self.idp,
            IDP2 => &self.idp2,
            _ => return None,
        };
        let xml = p.agent.target().files.get(&metadata_file(peer))?;
        let agg = load::load(xml, &Policy::new(self.broker_key.trusted(), self.now)).unwrap();
        match agg.metadata() {
            Metadata::Entity(e) => Some((**e).clone()),
            _ => None,
        }
    }

    /// The `validUntil` of what `who`'s agent integrated for `peer` (read without checking it,
    /// so that an expired copy shows as one).
    pub fn integrated_valid_until(&self, who: &str, peer: &str) -> Option<SystemTime> {
        let p = match who {
            SP => &self.sp,
            IDP => &self.idp,
            IDP2 => &self.idp2,
            _ => return None,
        };
        let xml = p.agent.target().files.get(&metadata_file(peer))?;
        match load::parse_unverified(xml).unwrap() {
            Metadata::Entity(e) => e.valid_until,
            _ => None,
        }
    }

    /// `who`'s agent's scheduled refresh at `now` (review M6): the fetches
    /// [`Agent::refresh_due`] asks for, answered by the broker's MDQ service (or failing in
    /// transport for the entities in `fetch_fails_for`); the outcomes.
    pub fn refresh_agent(&mut self, who: &str) -> Vec<FetchOutcome> {
        let now = self.now;
        let mut r = rng();
        let fails = self.fetch_fails_for.iter().any(|f| f == who);
        let reqs = self.party(who).agent.refresh_due(now).unwrap();
        let mut out = Vec::new();
        for req in reqs {
            let outcome = if fails {
                self.party(who).agent.handle_fetch_failure(
                    req.token,
                    "connection refused",
                    now,
                    &mut r,
                )
            } else {
                let (status, headers, body) = self.mdq(&req.url, &req.headers);
                self.party(who).agent.handle_fetched(
                    req.token,
                    &req.url,
                    &HttpResponse {
                        status,
                        headers: &headers,
                        body: &body,
                    },
                    now,
                    &mut r,
                )
            };
            out.push(outcome.unwrap());
        }
        out
    }

    /// `agent`'s fetch `req` (one not driven through a party of this world, e.g. a restarted
    /// agent's) answered by the broker's MDQ service at `now`.
    pub fn answer_fetch(
        &self,
        agent: &mut Agent<MemoryTarget>,
        req: &mdq_client::client::FetchRequest,
        rng: &mut dyn FnMut(&mut [u8]),
    ) -> Result<FetchOutcome, Error> {
        let (status, headers, body) = self.mdq(&req.url, &req.headers);
        agent.handle_fetched(
            req.token,
            &req.url,
            &HttpResponse {
                status,
                headers: &headers,
                body: &body,
            },
            self.now,
            rng,
        )
    }

    /// [`World::refresh_agent`] for every agent; how many fetches ran.
    pub fn refresh_agents(&mut self) -> usize {
        [SP, IDP, IDP2]
            .into_iter()
            .map(|who| self.refresh_agent(who).len())
            .sum()
    }

    /// The broker's MDQ service answering a fetch.
    pub fn mdq(
        &self,
        url: &str,
        headers: &[(String, String)],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let path = url.strip_prefix("https://broker.example.com").unwrap();
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let a = MdqService::new("/mdq/").answer(
            &MdqRequest {
                method: "GET",
                path,
                accept: h("Accept"),
                if_none_match: h("If-None-Match"),
            },
            &self.broker.registry,
        );
        (
            a.status,
            a.headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            a.body.to_vec(),
        )
    }

    /// One trigger to its agent and the answer back to the broker.
    pub fn deliver(&mut self, t: Transmit) {
        self.delivered.push((t.to.clone(), t.action));
        let now = self.now;
        let mut r = rng();
        let to = t.to.clone();
        let fails = self.fetch_fails_for.contains(&to);
        let defer = self.defer_for.contains(&to);
        let step = self
            .party(&to)
            .agent
            .handle_trigger(query_of(&t.url), BROKER_ADDR, now);
        let answer: MdiResponse = match step {
            Err(e) => Agent::<MemoryTarget>::answer_for(&e),
            Ok(TriggerStep::Answer(a)) => a,
            Ok(TriggerStep::Fetch(req)) => {
                let deferred = defer.then(|| self.party(&to).agent.defer(req.token).unwrap());
                let outcome = if fails {
                    self.party(&to)
                        .agent
                        .handle_fetch_failure(req.token, "connection refused", now, &mut r)
                        .unwrap()
                } else {
                    let (status, headers, body) = self.mdq(&req.url, &req.headers);
                    self.party(&to)
                        .agent
                        .handle_fetched(
                            req.token,
                            &req.url,
                            &HttpResponse {
                                status,
                                headers: &headers,
                                body: &body,
                            },
                            now,
                            &mut r,
                        )
                        .unwrap()
                };
                match (outcome, deferred) {
                    (FetchOutcome::Answer(a), None) => a,
                    (FetchOutcome::Report(url), Some(pending)) => {
                        self.reports.push(url);
                        pending
                    }
                    (o, d) => panic!("outcome {o:?} with deferral {d:?}"),
                }
            }
        };
        let (code, body) = answer.to_http().unwrap();
        if let Some(flow) = &t.flow {
            let res = self
                .broker
                .handle_trigger_answer(flow, &to, code, &body, now, &mut r);
            if t.action == TriggerAction::FetchMetadata {
                res.unwrap();
            }
        }
    }

    /// Delivers every queued trigger (and those they cause) until none is left.
    pub fn run_triggers(&mut self) -> usize {
        let mut n = 0;
        while let Some(t) = self.broker.poll_transmit() {
            self.deliver(t);
            n += 1;
        }
        n
    }

    /// Triggers and status reports until nothing is in flight.
    pub fn settle(&mut self) {
        loop {
            let n = self.run_triggers();
            if n == 0 && self.reports.is_empty() {
                break;
            }
            self.deliver_reports();
        }
    }

    pub fn deliver_reports(&mut self) {
        let now = self.now;
        for url in std::mem::take(&mut self.reports) {
            let _ = self
                .broker
                .handle_status_report(query_of(&url), now, &mut rng())
                .unwrap();
        }
    }

    // ---- the SP's software (DAME-capable) ----

    /// The SP sends the user to the broker's discovery service.
    pub fn sp_discovery(&self) -> String {
        DiscoveryRequest::new(SP, Some(SP_DS)).to_query()
    }

    /// The SP's AuthnRequest1 for `idp` to the broker (it does not know the IdP): signed with
    /// the SP's key, no Destination. Returns the authenticate URL.
    pub fn sp_authn_request1(&mut self, idp: &str) -> String {
        self.sp_authn_request1_with(idp, |_| {})
    }

    /// [`World::sp_authn_request1`] with `edit` applied to the request before it is signed.
    pub fn sp_authn_request1_with(
        &mut self,
        idp: &str,
        edit: impl FnOnce(&mut AuthnRequest),
    ) -> String {
        let mut req = AuthnRequest::new(saml_core::protocol::new_id(&mut rng()), SP, self.now);
        req.acs_url = Some(SP_ACS.to_owned());
        req.protocol_binding = Some(saml_core::protocol::BINDING_HTTP_POST.into());
        edit(&mut req);
        self.sp_state
            .requests
            .insert(&req.id, idp, self.now + Duration::from_secs(600), self.now);
        // The IdP's HTTP-Redirect SSO endpoint, as the broker's MDQ service publishes it.
        let sso = self
            .broker
            .registry
            .get(idp)
            .and_then(|r| {
                saml_metadata::sso::sso_location(
                    &r.entity,
                    &saml_metadata::model::Binding::HttpRedirect,
                )
                .ok()
            })
            .unwrap_or_else(|| IDP_SSO.to_owned());
        dame_protocol::authenticate::AuthenticateRequest::url(
            BROKER_DAME,
            idp,
            &sso,
            &req,
            Some("target-42"),
            &self.sp.key.signing(),
        )
        .unwrap()
    }

    /// The SP's plain AuthnRequest straight to an IdP it knows (second use, or the
    /// unmodified SP after discovery). Panics if the SP does not know the IdP.
    pub fn sp_direct_login(&mut self, idp: &str) -> String {
        let idp_md = self.integrated(SP, idp).expect("the SP knows the IdP");
        let (req, sso) = saml_metadata::sso::authn_request(
            &self.sp.entity,
            &idp_md,
            Binding::HttpRedirect,
            saml_core::protocol::new_id(&mut rng()),
            self.now,
        )
        .unwrap();
        self.sp_state
            .requests
            .insert(&req.id, idp, self.now + Duration::from_secs(600), self.now);
        let q = redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            None,
            Some(&self.sp.key.signing()),
            None,
        )
        .unwrap();
        redirect::url(&sso, &q)
    }

    /// The SP's ACS: validates Response1 with the IdP's integrated metadata.
    pub fn sp_acs(&mut self, idp: &str, form: &str) -> Result<String, String> {
        let msg = post::decode_form(form, 1 << 20).map_err(|e| e.to_string())?;
        let idp = self
            .integrated(SP, idp)
            .ok_or("the SP does not know the IdP")?;
        let v = saml_metadata::sso::response_validator(&self.sp.entity, &idp)
            .map_err(|e| e.to_string())?;
        let r = v
            .validate(
                &msg.xml,
                self.now,
                &mut self.sp_state.requests,
                &mut self.sp_state.replay,
            )
            .map_err(|e| e.to_string())?;
        Ok(r.name_id().map(|n| n.value.clone()).unwrap_or_default())
    }

    // ---- the IdP's software ----

    /// The IdP's SSO endpoint: the request must come from an SP it knows (the broker,
    /// configured; or one its agent integrated), signed by that SP; answers with the form
    /// body posted to the SP's ACS and that ACS URL.
    pub fn idp_sso(&mut self, which: &str, url: &str) -> Result<(String, String), String> {
        self.idp_sso_edited(which, url, |xml| xml)
    }

    /// [`World::idp_sso`] with the IdP's Response XML, before it is signed, passed through
    /// `edit` (what the builder cannot write, such as an `EncryptedID`); its assertion and
    /// the Response are then signed as the builder signs them.
    pub fn idp_sso_edited(
        &mut self,
        which: &str,
        url: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Result<(String, String), String> {
        let query = query_of(url);
        let m = redirect::decode(query, 1 << 16).map_err(|e| e.to_string())?;
        let req = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let sp_md = if req.issuer == BROKER {
            broker_entity(&self.broker_key)
        } else {
            self.integrated(which, &req.issuer)
                .ok_or_else(|| format!("unknown SP {}", req.issuer))?
        };
        let keys = saml_metadata::sso::sp_signing_keys(&sp_md).map_err(|e| e.to_string())?;
        m.verify(&keys, false).map_err(|e| e.to_string())?;
        let (party, sso) = match which {
            IDP => (&self.idp, IDP_SSO.to_owned()),
            _ => (
                &self.idp2,
                "https://idp.other.example/idp/profile/SAML2/Redirect/SSO".to_owned(),
            ),
        };
        check_signed_request(
            &req,
            &[sso.as_str()],
            self.now,
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
        let acs = saml_metadata::sso::acs_for(&sp_md, &req).map_err(|e| e.to_string())?;
        let mut b = ResponseBuilder::for_request(
            &req,
            &party.entity.entity_id,
            &acs,
            NameId::new(&self.user, NAMEID_TRANSIENT),
        );
        b.attributes.push(saml_core::protocol::Attribute::uri(
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
            Some("eduPersonPrincipalName"),
            &["alice@example.net"],
        ));
        b.sign_assertion = false;
        b.sign_response = false;
        let xml = b
            .build(&party.key.signing(), self.now, &mut rng())
            .map_err(|e| e.to_string())?;
        let xml = edit(String::from_utf8(xml).map_err(|e| e.to_string())?);
        let mut xml = xml.into_bytes();
        // The assertion's and the Response's IDs, in document order: signed innermost first.
        let ids: Vec<String> = ["<saml:Assertion", "<samlp:Response"]
            .iter()
            .filter_map(|tag| {
                let s = String::from_utf8_lossy(&xml).into_owned();
                let at = s.find(tag)?;
                let rest = &s[at..];
                let id = rest.split_once(" ID=\"")?.1.split_once('"')?.0;
                Some(id.to_owned())
            })
            .collect();
        for id in ids {
            let mut opts = saml_core::dsig::SignOptions::default();
            opts.target = saml_core::dsig::Target::Id(id);
            opts.placement = saml_core::dsig::Placement::AfterIssuer;
            xml = saml_core::dsig::sign(&xml, &party.key.signing(), &opts)
                .map_err(|e| e.to_string())?;
        }
        let mut form = format!("SAMLResponse={}", url_encode(&post::encode(&xml)));
        if let Some(rs) = &m.relay_state {
            form.push_str(&format!("&RelayState={}", url_encode(rs)));
        }
        Ok((form, acs))
    }

    // ---- whole journeys ----

    /// Draft mode, first use: discovery, AuthnRequest1, Response2, exchange, replay, SSO.
    /// Returns the flow and the NameID the SP saw.
    pub fn first_use(&mut self) -> (FlowId, String) {
        let mut r = rng();
        let now = self.now;
        let flow = match self
            .broker
            .handle_discovery(&self.sp_discovery(), UA_ADDR, now, &mut r)
            .unwrap()
        {
            UaReply::ChooseIdp { flow, sp } => {
                assert_eq!(sp, SP);
                flow
            }
            other => panic!("{other:?}"),
        };
        let back = redirect_of(
            self.broker
                .handle_idp_chosen(&flow, IDP, now, &mut r)
                .unwrap(),
        );
        assert_eq!(back, format!("{SP_DS}?entityID={}", url_encode(IDP)));
        // The SP does not know the IdP: AuthnRequest1 to the broker.
        assert!(self.integrated(SP, IDP).is_none());
        let a1 = self.sp_authn_request1(IDP);
        let (same, reply) = self
            .broker
            .handle_authenticate(Some(&flow), query_of(&a1), UA_ADDR, now, &mut r)
            .unwrap();
        assert_eq!(same, flow);
        let to_idp = redirect_of(reply);
        let (form, acs) = self.idp_sso(IDP, &to_idp).unwrap();
        assert_eq!(acs, BROKER_ACS);
        let wait = self
            .broker
            .handle_response2(&flow, &form, now, &mut r)
            .unwrap();
        assert!(matches!(wait, UaReply::Wait { .. }), "{wait:?}");
        self.settle();
        let replay = redirect_of(self.broker.handle_user_agent(&flow, now).unwrap());
        assert!(replay.starts_with(IDP_SSO), "{replay}");
        assert_eq!(
            query_of(&replay),
            query_of(&a1)
                .split_once("&SAMLRequest")
                .map(|(_, q)| format!("SAMLRequest{q}"))
                .unwrap()
        );
        let (form, acs) = self.idp_sso(IDP, &replay).unwrap();
        assert_eq!(acs, SP_ACS);
        let who = self.sp_acs(IDP, &form).unwrap();
        (flow, who)
    }

    /// A snapshot of everything a refusal must leave alone.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            flows: self.broker.flow_count(),
            relationships: self.broker.relationships.len(),
            registered: self.broker.registry.len(),
            sp_files: self.sp.agent.target().files.clone(),
            idp_files: self.idp.agent.target().files.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub flows: usize,
    pub relationships: usize,
    pub registered: usize,
    pub sp_files: std::collections::BTreeMap<String, Vec<u8>>,
    pub idp_files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// The sources recorded for what the SP's agent integrated.
pub fn sources(t: &MemoryTarget) -> Vec<String> {
    t.sources().unwrap().into_values().collect()
}
