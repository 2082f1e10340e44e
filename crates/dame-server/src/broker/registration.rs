//! Self-service registration with proof of ownership ([`dame_protocol::registration`], the
//! GÉANT-TrustBroker design) and entity tokens:
//!
//! ```text
//! POST /register?operation=register|update  body: one EntityDescriptor -> the challenge (JSON,
//!                                    with the requester's `secret`)
//! POST /register?operation=delete&entityID=..                           -> the challenge (JSON)
//! POST /register/verify?entityID=..  Authorization: Bearer <secret>; body: the same
//!                                    EntityDescriptor again (register, update)
//!                                    the broker fetches the proof       -> done (JSON) with the
//!                                    entity token (registration, update: a new one replaces
//!                                    the entity's earlier tokens), shown once
//! PUT  /admin/policy?entityID=..     body: the entity's policy (JSON: allow/deny lists, modes);
//!                                    the operator's token or the entity's own token
//! ```
//!
//! Only the requester that began a proof can complete it (the secret): anyone can ask the
//! broker to fetch a published proof, and whoever completes a registration receives the entity
//! token. A pending proof keeps the SHA-256 of the upload rather than the upload, so the
//! metadata is sent again with the secret; at most eight proofs are pending per requester (an
//! IPv4 address or an IPv6 /64).
//!
//! The proof is fetched only from `https://<entityID host>/.well-known/dame-ownership/<name>`:
//! the host is resolved once, every address it resolves to must be global (unless
//! `[registration] allow_private`), and the connection is pinned to the checked address (no
//! second resolution between check and use); no redirect is followed, 10 s at most, 1 KiB read.
//! Pending challenges live on the instance that issued them (route `/register*` to one
//! instance); what a completed proof changes goes to the store, which every instance reloads.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dame_protocol::Refusal;
use dame_protocol::registration::{MAX_BODY, Operation, OwnershipChallenge, WELL_KNOWN_PATH};
use dame_protocol::registry::EntityPolicy;
use saml_core::protocol::openssl_random;

use super::{
    BrokerService, Svc, error_response, guard, html_escape, page, query_param, refused, step_error,
    store_error, unix,
};
use crate::error::Error;
use crate::log;
use crate::store::{FlowSelect, Origin, Store, StoredEntity};

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn challenge_json<S: Store>(
    svc: &BrokerService<S>,
    c: &OwnershipChallenge,
    op: Operation,
) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "entityID": c.entity_id,
            "operation": format!("{op:?}").to_lowercase(),
            "url": fetch_url(svc, c),
            "content": c.content,
            "expires": unix(c.expires),
            "attempts": c.attempts_left,
            "secret": c.secret,
        }),
    )
}

fn fetch_url<S: Store>(svc: &BrokerService<S>, c: &OwnershipChallenge) -> String {
    match svc.cfg.registration.port {
        443 => c.fetch_plan(),
        port => format!("https://{}:{port}{WELL_KNOWN_PATH}{}", c.host, c.name),
    }
}

/// `POST /register`: a challenge for a registration, an update or a deletion.
pub(super) async fn begin<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    guard(async move {
        if !svc.cfg.registration.enabled {
            return page(StatusCode::NOT_FOUND, "registration is closed");
        }
        if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
            return r;
        }
        let q = q.unwrap_or_default();
        let op = match query_param(&q, "operation").as_deref() {
            Some("register") => Operation::Register,
            Some("update") => Operation::Update,
            Some("delete") => Operation::Delete,
            _ => return page(StatusCode::BAD_REQUEST, "operation=register|update|delete"),
        };
        // Review K2: refused before it is parsed (the protocol refuses it too).
        let most = svc.cfg.registration.max_upload_bytes as usize;
        if body.len() > most {
            return page(
                StatusCode::BAD_REQUEST,
                &format!(
                    "metadata of {} bytes is larger than the self-registration limit of {most} bytes",
                    body.len()
                ),
            );
        }
        let now = SystemTime::now();
        // Who asks, for the per-requester bound on pending proofs.
        let requester = crate::source_key(remote.ip());
        // Parsed outside the locks (the protocol parses it again to validate it).
        let policy_of = (op != Operation::Delete).then(|| entity_id_of(&body));
        let r = {
            let core = svc.core();
            let mut regs = svc.registrations();
            let r = match policy_of {
                None => match query_param(&q, "entityID") {
                    Some(id) => {
                        regs.begin_delete(&id, &core.registry, &requester, now, &mut openssl_random)
                    }
                    None => return page(StatusCode::BAD_REQUEST, "entityID missing"),
                },
                Some(id) => {
                    let policy = core
                        .registry
                        .get(&id)
                        .map(|r| r.policy.clone())
                        .unwrap_or_default();
                    regs.begin(
                        op,
                        &body,
                        policy,
                        &core.registry,
                        &requester,
                        now,
                        &mut openssl_random,
                    )
                }
            };
            drain(&mut regs);
            r
        };
        match r {
            Ok(c) => challenge_json(&svc, &c, op),
            Err(e) => error_response(&e),
        }
    })
    .await
}

/// The entityID of an upload, if it parses (for keeping the registered policy on update).
fn entity_id_of(xml: &[u8]) -> String {
    match saml_metadata::load::parse_unverified(xml) {
        Ok(saml_metadata::model::Metadata::Entity(e)) => e.entity_id,
        _ => String::new(),
    }
}

/// Registration events go to the log (and, with the outcome, to the store's audit).
fn drain(regs: &mut dame_protocol::registration::Registrations) {
    while let Some(e) = regs.poll_event() {
        log(&[("event", format!("{e:?}"))]);
    }
}

/// Fetches the proof: resolved once, every address checked, the connection pinned.
async fn fetch<S: Store>(
    svc: &BrokerService<S>,
    c: &OwnershipChallenge,
) -> Result<(u16, Vec<u8>), String> {
    let reg = &svc.cfg.registration;
    let addrs: Vec<IpAddr> = match reg.hosts.get(&c.host) {
        Some(ip) => vec![*ip],
        None => tokio::net::lookup_host((c.host.as_str(), reg.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", c.host))?
            .map(|a| a.ip())
            .collect(),
    };
    let Some(first) = addrs.first() else {
        return Err(format!("{} has no address", c.host));
    };
    for ip in &addrs {
        c.check_address(*ip, reg.allow_private)
            .map_err(|_| format!("{} resolves to {ip}, not a public address", c.host))?;
    }
    // No proxy from the environment: the connection goes to the address checked above.
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .https_only(true)
        .resolve(&c.host, SocketAddr::new(*first, reg.port));
    if let Some(ca) = &reg.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("registration.ca: {e}"))?;
        for cert in openssl::x509::X509::stack_from_pem(&pem)
            .map_err(|e| format!("registration.ca: {e}"))?
        {
            let pem = cert.to_pem().map_err(|e| e.to_string())?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
            b = b.add_root_certificate(cert);
        }
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let mut resp = client
        .get(fetch_url(svc, c))
        .send()
        .await
        .map_err(|e| format!("fetching the proof: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            break;
        }
    }
    Ok((status, body))
}

/// `POST /register/verify`: the broker fetches the proof and, when it holds, carries out the
/// operation.
pub(super) async fn verify<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    guard(async move {
        if !svc.cfg.registration.enabled {
            return page(StatusCode::NOT_FOUND, "registration is closed");
        }
        if let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await) {
            return r;
        }
        let Some(id) = query_param(&q.unwrap_or_default(), "entityID") else {
            return page(StatusCode::BAD_REQUEST, "entityID missing");
        };
        let secret = super::bearer(&headers).unwrap_or_default();
        // The metadata comes again with a registration or an update; a deletion has none.
        let upload = (!body.is_empty()).then_some(&body[..]);
        let challenge = match svc.registrations().challenge(&id, secret, upload) {
            Ok(c) => c.clone(),
            Err(e) if e.refusal() == Some(Refusal::UnknownEntity) => {
                return page(
                    StatusCode::NOT_FOUND,
                    "no challenge of yours pending for this entityID \
                     (Authorization: Bearer <the secret /register returned>)",
                );
            }
            Err(e) => return error_response(&e),
        };
        // A failed fetch uses an attempt like a wrong answer.
        let (status, proof) = match fetch(&svc, &challenge).await {
            Ok(a) => a,
            Err(why) => {
                log(&[
                    ("event", "ownership-fetch-failed".into()),
                    ("entity", id.clone()),
                    ("error", why.clone()),
                ]);
                (599, Vec::new())
            }
        };
        let now = SystemTime::now();
        let done = {
            let mut core = svc.core();
            let mut regs = svc.registrations();
            let r = regs.complete(&id, secret, upload, status, &proof, &mut core.registry, now);
            drain(&mut regs);
            r.map(|op| {
                let r = core.registry.get(&id);
                (
                    op,
                    r.and_then(|r| r.entity.to_xml().ok()),
                    r.map(|r| r.policy.clone()),
                )
            })
        };
        match done {
            Ok(result) => match finish(&svc, &id, result).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => {
                    // The core has the change, the store may not: the store decides.
                    svc.resync(&id).await;
                    step_error(&e)
                }
            },
            Err(e) => error_response(&e),
        }
    })
    .await
}

/// A completed proof: stored, peers told (update), a token issued (registration).
async fn finish<S: Store>(
    svc: &Arc<BrokerService<S>>,
    id: &str,
    (op, xml, policy): (Operation, Option<String>, Option<EntityPolicy>),
) -> Result<serde_json::Value, Error> {
    let at = unix(SystemTime::now());
    let mut out = serde_json::json!({
        "entityID": id,
        "operation": format!("{op:?}").to_lowercase(),
    });
    match (op, xml, policy) {
        (Operation::Delete, _, _) => {
            // Gone from the store (entity, relationships, tokens) and from this instance's
            // core in one step: its peers are told to roll back what they integrated for it,
            // and those rollbacks are owed in the deletion's own commit (review D6).
            let n = svc
                .step_deleting(id, |core, now| {
                    core.remove_entity(id, now, &mut openssl_random)
                })
                .await?;
            out["peers_told"] = n.into();
        }
        (op, Some(xml), Some(policy)) => {
            let policy_json =
                serde_json::to_string(&policy).map_err(|e| Error::Store(e.to_string()))?;
            // A new entity gets `policy`; an update keeps the policy stored (L2).
            svc.store
                .put_metadata(&StoredEntity {
                    entity_id: id.to_owned(),
                    xml: xml.clone(),
                    policy: policy_json,
                    origin: Some(Origin::Owner),
                })
                .await?;
            if op == Operation::Update {
                // Established peers re-fetch the new metadata.
                let entity = match saml_metadata::load::parse_unverified(xml.as_bytes()) {
                    Ok(saml_metadata::model::Metadata::Entity(e)) => *e,
                    _ => return Err(Error::Store(format!("entity {id} does not parse"))),
                };
                let n = svc
                    .step(FlowSelect::None, |core, now| {
                        core.update_entity(entity, policy, now, &mut openssl_random)
                    })
                    .await??;
                out["peers_told"] = n.into();
            }
            // A new token for the proven owner; it replaces the entity's earlier tokens, so an
            // update proof also takes back a token that leaked.
            let mut raw = [0u8; 32];
            openssl_random(&mut raw);
            let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            svc.store.put_token(&token_hash(&token), id).await?;
            out["token"] = token.into();
        }
        _ => return Err(Error::Store("the registered entity vanished".into())),
    }
    svc.store
        .audit(at, &format!("registration {op:?} of {id} done"))
        .await?;
    Ok(out)
}

/// How an entity token is kept: its SHA-256, hex.
pub(super) fn token_hash(token: &str) -> String {
    openssl::sha::sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the request's bearer may manage `entity_id`: the operator, or that entity's token.
pub(super) async fn may_manage<S: Store>(
    svc: &BrokerService<S>,
    headers: &HeaderMap,
    entity_id: &str,
) -> Result<bool, Error> {
    if super::authorized(svc, headers) {
        return Ok(true);
    }
    let Some(token) = super::bearer(headers) else {
        return Ok(false);
    };
    Ok(svc.store.token_entity(&token_hash(token)).await?.as_deref() == Some(entity_id))
}

/// `PUT /admin/policy?entityID=..`: the entity's policy (JSON), by the operator or the entity.
pub(super) async fn policy<S: Store>(
    State(svc): Svc<S>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    guard(async move {
        // An entity's token (or a guess at one) is limited per address like every other
        // client: each change bumps the store's generation and every instance reloads.
        if !super::authorized(&svc, &headers)
            && let Some(r) = refused(svc.within_rate(&crate::source_key(remote.ip())).await)
        {
            return r;
        }
        let Some(id) = query_param(&q.unwrap_or_default(), "entityID") else {
            return page(StatusCode::BAD_REQUEST, "entityID missing");
        };
        match may_manage(&svc, &headers, &id).await {
            Ok(true) => {}
            Ok(false) => return page(StatusCode::FORBIDDEN, "not your entity"),
            Err(e) => return store_error(&e),
        }
        let mut policy: EntityPolicy = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => return page(StatusCode::BAD_REQUEST, &html_escape(&e.to_string())),
        };
        if !super::authorized(&svc, &headers) {
            // An entity's own token sets its peer lists; the modes that lower what a login
            // proves (unsigned AuthnRequest1, the unmodified-SP mode) are the operator's
            // (broker review L1). Named with another value than they have: refused.
            let Some(current) = svc.core().registry.get(&id).map(|r| r.policy.clone()) else {
                return page(StatusCode::FORBIDDEN, "not registered");
            };
            let named: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let changes = |key: &str, now: bool| {
                named
                    .get(key)
                    .and_then(serde_json::Value::as_bool)
                    .is_some_and(|v| v != now)
            };
            if changes(
                "allow_unsigned_authn_request",
                current.allow_unsigned_authn_request,
            ) || changes("unmodified_sp", current.unmodified_sp)
            {
                return page(
                    StatusCode::FORBIDDEN,
                    "allow_unsigned_authn_request and unmodified_sp are set by the operator",
                );
            }
            policy = policy
                .with_unsigned_authn_request(current.allow_unsigned_authn_request)
                .with_unmodified_sp(current.unmodified_sp);
        }
        // The core first: the policy set and rollbacks planned to the pairs it now refuses
        // (sent once the step is recorded); then the store, the record, whose failure puts the
        // core back to what it holds (the rollbacks stay done: the pairs re-exchange at their
        // next login if the old policy allowed them).
        let n = match svc
            .step(FlowSelect::None, |core, now| {
                core.change_policy(&id, policy.clone(), now, &mut openssl_random)
            })
            .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return error_response(&e),
            Err(e) => {
                svc.resync(&id).await;
                return step_error(&e);
            }
        };
        let Ok(policy_json) = serde_json::to_string(&policy) else {
            return page(StatusCode::INTERNAL_SERVER_ERROR, "policy");
        };
        // The policy column only: the metadata stored stays (this instance's copy may be a
        // second old, and writing it back undid another instance's update, a key rotation
        // among them: broker review L2).
        if let Err(e) = svc.store.put_policy(&id, &policy_json).await {
            // The core has the new policy, the store the old one: the store decides.
            svc.resync(&id).await;
            return store_error(&e);
        }
        log(&[("event", "policy-set".into()), ("entity", id)]);
        page(
            StatusCode::OK,
            &format!("policy set; {n} pairs rolled back, the others told to fetch again"),
        )
    })
    .await
}
