//! # dame-protocol
//!
//! DAME, Dynamic Automated Metadata Exchange (draft-poehn-dame-06, the GÉANT-TrustBroker
//! design): an IdP and an SP that do not know each other exchange metadata on demand through a
//! trusted third party (the broker), after the user has authenticated at the IdP. Sans-IO:
//! time and randomness are inputs, no sockets or files.
//!
//! ```text
//!  UA -> SP -> broker      discovery request          (discovery::DiscoveryRequest)
//!  broker -> SP            discovery answer, `return` checked against the SP's metadata
//!  SP -> broker            action=authenticate + AuthnRequest1 (authenticate::AuthenticateRequest)
//!  broker -> IdP -> broker AuthnRequest2 / Response2 (saml-core, the broker as SP)
//!  broker -> IdP, SP       signed MDI triggers         (trigger::Trigger, TriggerVerifier)
//!  IdP, SP -> broker       MDI responses, status reports (mdi::MdiResponse, StatusReport)
//!  broker -> IdP           AuthnRequest1 replayed as soon as both integrations are confirmed
//! ```
//!
//! What the crate has:
//! - every message of the draft that crosses the wire, parsed strictly and written
//!   ([`discovery`], [`authenticate`], [`trigger`], [`mdi`]);
//! - the trigger and status-report authentication the draft leaves open, defined here as a
//!   wire spec: a query signature over the exact octets with `issueInstant`, `nonce` and the
//!   addressee ([`trigger`], [`mdi`], [`signed`]), with replay windows of bounded memory;
//! - the broker's per-user flow state machine, in the draft's mode and in the mode for
//!   unmodified SPs ([`broker`], with its diagram), and the provider extension's state machine
//!   beside an IdP or an SP ([`agent`]: trigger -> MDQ fetch with mdq-client's core ->
//!   integrate -> answer, or a later status report);
//! - integration targets ([`integration`]: the GÉANT-TrustBroker / Shibboleth `LocalDynamic`
//!   layout `<sha1>.xml` + `<sha1>.xml.loc`, in memory or, with feature `fs`, a directory);
//! - the broker's register of providers ([`registry`]), registration with proof of ownership
//!   ([`registration`]), relationships with re-download triggers and virtual federations
//!   ([`relationships`]), policies ([`policy`]: allow/deny lists by DNS domain, token-bucket
//!   rate limits), the metadata service core ([`mdq_service`]);
//! - attribute conversion rules ([`conversion`]: an implementation-neutral, bounded, data-only
//!   format, its evaluator and repository query, generators for SimpleSAMLphp `authproc` filters
//!   and Shibboleth IdP resolver definitions).
//!
//! ## A first-use exchange, end to end in memory
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use dame_protocol::agent::{Agent, FetchOutcome, Side, TriggerStep};
//! use dame_protocol::authenticate::AuthenticateRequest;
//! use dame_protocol::broker::{Broker, BrokerPolicy, UaReply};
//! use dame_protocol::discovery::DiscoveryRequest;
//! use dame_protocol::integration::MemoryTarget;
//! use dame_protocol::mdq_service::{MEDIA_TYPE, MdqRequest, MdqService};
//! use dame_protocol::registry::EntityPolicy;
//! use mdq_client::response::HttpResponse;
//! use saml_core::bindings::{post, redirect, url_encode};
//! use saml_core::protocol::idp::ResponseBuilder;
//! use saml_core::protocol::{AuthnRequest, NAMEID_TRANSIENT, NameId, new_id, openssl_random};
//! use saml_metadata::builder::RoleBuilder as _;
//! use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, SpSso};
//! use testkit::signer::TestKey;
//!
//! const SP: &str = "https://sp.example.org/sp";
//! const IDP: &str = "https://idp.example.net/idp";
//! const BROKER: &str = "https://broker.example.com";
//! let q = |url: &str| url.split_once('?').map_or("", |(_, q)| q).to_owned();
//! let (now, mut rng) = (std::time::SystemTime::now(), openssl_random);
//! let (bk, sk, ik) = (TestKey::rsa("broker"), TestKey::rsa("sp"), TestKey::rsa("idp"));
//!
//! // Metadata: the SP and the IdP with their DAME sync locations; the broker as an SP.
//! let sp = EntityDescriptor::builder(SP)
//!     .sp(SpSso::builder()
//!         .signing_certificate(sk.cert_der())
//!         .acs(Binding::HttpPost, "https://sp.example.org/acs")
//!         .discovery_response("https://sp.example.org/ds"))
//!     .dame_sync_location("https://sp.example.org/dame")
//!     .build()?;
//! let idp = EntityDescriptor::builder(IDP)
//!     .idp(IdpSso::builder()
//!         .signing_certificate(ik.cert_der())
//!         .sso(Binding::HttpRedirect, "https://idp.example.net/sso"))
//!     .dame_sync_location("https://idp.example.net/dame")
//!     .build()?;
//! let me = EntityDescriptor::builder(&format!("{BROKER}/sp"))
//!     .sp(SpSso::builder()
//!         .signing_certificate(bk.cert_der())
//!         .acs(Binding::HttpPost, &format!("{BROKER}/acs")))
//!     .build()?;
//! let mut broker = Broker::new(me, bk.signing(), BrokerPolicy::default())?;
//! let _ = broker.registry.insert(sp, EntityPolicy::default(), now, false)?;
//! let _ = broker.registry.insert(idp, EntityPolicy::default(), now, false)?;
//! let agent = |me: &str, side, key: &TestKey| {
//!     let (mdq, dame) = (format!("{BROKER}/mdq/"), format!("{BROKER}/dame"));
//!     Agent::new(me, side, bk.trusted(), &mdq, &dame, key.signing(), MemoryTarget::default())
//! };
//! let (mut sp_agent, mut idp_agent) = (agent(SP, Side::Sp, &sk)?, agent(IDP, Side::Idp, &ik)?);
//!
//! // 1. Discovery at the broker; the user picks the IdP.
//! let d = DiscoveryRequest::new(SP, None).to_query();
//! let UaReply::ChooseIdp { flow, .. } = broker.handle_discovery(&d, "198.51.100.7", now, &mut rng)?
//! else { unreachable!() };
//! let _back_to_the_sp = broker.handle_idp_chosen(&flow, IDP, now, &mut rng)?;
//! // 2. The SP does not know the IdP: its signed AuthnRequest1 goes to the broker, addressed
//! //    to the IdP's SSO endpoint (from the IdP's metadata at the broker's MDQ service).
//! let mut a1 = AuthnRequest::new(new_id(&mut rng), SP, now);
//! a1.acs_url = Some("https://sp.example.org/acs".into());
//! let sso = "https://idp.example.net/sso";
//! let url = AuthenticateRequest::url(&format!("{BROKER}/dame"), IDP, sso, &a1, None, &sk.signing())?;
//! let (_, UaReply::Redirect(to_idp)) =
//!     broker.handle_authenticate(Some(&flow), &q(&url), "198.51.100.7", now, &mut rng)?
//! else { unreachable!() };
//! // 3. The IdP authenticates the user for the broker (AuthnRequest2 -> Response2).
//! let req2 = AuthnRequest::parse(&redirect::decode(&q(&to_idp), 1 << 16)?.xml)?;
//! let alice = NameId::new("alice", NAMEID_TRANSIENT);
//! let xml = ResponseBuilder::for_request(&req2, IDP, &format!("{BROKER}/acs"), alice)
//!     .build(&ik.signing(), now, &mut rng)?;
//! let form = format!("SAMLResponse={}", url_encode(&post::encode(&xml)));
//! let _wait = broker.handle_response2(&flow, &form, now, &mut rng)?;
//! // 4. Signed triggers, IdP first; each agent pulls its peer from the broker's MDQ service.
//! while let Some(t) = broker.poll_transmit() {
//!     let agent = if t.to == IDP { &mut idp_agent } else { &mut sp_agent };
//!     let TriggerStep::Fetch(req) = agent.handle_trigger(&q(&t.url), "203.0.113.5", now)?
//!     else { unreachable!() };
//!     let path = req.url.strip_prefix(BROKER).unwrap_or_default();
//!     let get = MdqRequest { method: "GET", path, accept: Some(MEDIA_TYPE), if_none_match: None };
//!     let a = MdqService::new("/mdq/").answer(&get, &broker.registry);
//!     let headers: Vec<(String, String)> =
//!         a.headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
//!     let resp = HttpResponse { status: a.status, headers: &headers, body: &a.body };
//!     let FetchOutcome::Answer(answer) =
//!         agent.handle_fetched(req.token, &req.url, &resp, now, &mut rng)?
//!     else { unreachable!() };
//!     let (code, body) = answer.to_http()?;
//!     broker.handle_trigger_answer(&flow, &t.to, code, &body, now, &mut rng)?;
//! }
//! // 5. Both integrated: AuthnRequest1 is replayed to the IdP at once, signature intact.
//! let UaReply::Redirect(replay) = broker.handle_user_agent(&flow, now)? else { unreachable!() };
//! assert!(replay.starts_with("https://idp.example.net/sso?SAMLRequest="));
//! // Signed, and addressed to that endpoint (SAML Bindings §3.4.5.2).
//! let replayed = AuthnRequest::parse(&redirect::decode(&q(&replay), 1 << 16)?.xml)?;
//! assert_eq!(replayed.destination.as_deref(), Some(sso));
//! assert!(broker.relationships.contains(IDP, SP));
//! assert_eq!(sp_agent.target().files.len(), 2); // <sha1>.xml and <sha1>.xml.loc
//! # Ok(()) }
//! ```
//!
//! Errors: one [`Error`] with [`Error::kind`]; refusals are typed ([`Refusal`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::must_use_candidate, clippy::return_self_not_must_use)]

pub mod agent;
pub mod authenticate;
pub mod broker;
pub mod conversion;
pub mod discovery;
mod error;
pub mod integration;
pub mod mdi;
pub mod mdq_service;
pub mod policy;
mod query;
pub mod registration;
pub mod registry;
pub mod relationships;
pub mod signed;
pub mod trigger;

pub use error::{Error, ErrorKind, Refusal};
pub use query::{MAX_PARAMS, MAX_QUERY_LEN};
