//! The broker's store, behind one trait: registered entities with their policies,
//! relationships, flows, one-time values already used, rate-limit windows, the shared
//! conversion rules, the triggers owed to agents and the audit log. Two implementations, the same tables (sqlx migrations in
//! `crates/dame-server/migrations/{sqlite,postgres}`, run at start), parameterised queries only:
//!
//! - [`SqliteStore`], the embedded default: one file, created and migrated at start; one
//!   broker instance.
//! - [`PgStore`], PostgreSQL: several broker instances behind a load balancer share it.
//!
//! The store is the truth for flows: every request that touches a flow runs in one
//! [`Store::transact`] call, which locks the flow's row (PostgreSQL `SELECT .. FOR UPDATE`;
//! SQLite `BEGIN IMMEDIATE`), hands the record to the broker core, and writes back in the same
//! transaction what the core changed, the one-time values it accepted (a value another instance
//! already used makes the whole call fail with [`Error::Replayed`], nothing written), the
//! relationships it established and its audit events. So a user's flow continues on any
//! instance, two instances never advance one flow at the same time, and a killed instance
//! loses nothing it answered.
//!
//! Flows whose user is not yet authenticated (anyone can start one with a discovery request)
//! carry their client address key, so that [`Store::admit_pending`] caps them per address and
//! in all across every instance; audit events are deleted after the configured retention and
//! beyond the configured number of rows ([`Store::prune_audit`]).

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::Error;

/// A stored entity: its metadata as registered (XML), its policy (JSON) and who vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    /// The entityID.
    pub entity_id: String,
    /// The metadata as registered.
    pub xml: String,
    /// The policy, as JSON.
    pub policy: String,
    /// Who vouched for the metadata. Read: `None` for an entity stored before the broker
    /// recorded it (a store written before 2026-12-06), held to what an owner may claim.
    /// Written: `None` keeps what is stored (a policy change).
    pub origin: Option<Origin>,
}

/// Who vouched for a stored entity's metadata: what the broker checks when it loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The broker's operator (`/admin/entities` with the operator token): trusted as written.
    Operator,
    /// The entity itself (a registration by proof of ownership, or an upload with its entity
    /// token): held to what the proof backs
    /// ([`dame_protocol::registry::validate_self_registered`]), also when loaded.
    Owner,
}

impl Origin {
    /// The stored form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Operator => "operator",
            Origin::Owner => "owner",
        }
    }

    /// The stored form read back (`None` for anything else: checked like the owner's).
    #[must_use]
    pub fn parse(s: &str) -> Option<Origin> {
        match s {
            "operator" => Some(Origin::Operator),
            "owner" => Some(Origin::Owner),
            _ => None,
        }
    }
}

/// A row's `origin` column read back.
fn origin_of(v: Option<String>) -> Option<Origin> {
    v.as_deref().and_then(Origin::parse)
}

/// Which flows a [`Store::transact`] call locks and hands over.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FlowSelect<'a> {
    /// None (a call that may only create flows).
    None,
    /// The flow with this id, if stored and not expired.
    One(&'a str),
    /// The exchanging flows of the pair of these two entities, in either role (a status
    /// report from one about the other).
    Pair(&'a str, &'a str),
    /// Flows due at or before this time (Unix seconds): at most 100, skipping the ones another
    /// instance holds.
    Due(i64),
}

/// A flow as written back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowData {
    /// The record (JSON).
    pub record: String,
    /// When it expires (Unix seconds).
    pub expires: i64,
    /// When it is next due (Unix seconds).
    pub due: i64,
    /// The IdP and the SP while exchanging.
    pub pair: Option<(String, String)>,
    /// Whether the flow's user is not yet authenticated (before Response2): such flows are
    /// counted per client address and in all ([`Store::admit_pending`]).
    pub pending: bool,
    /// The client address key of a new unauthenticated flow (kept while it stays
    /// unauthenticated; ignored for a flow already stored).
    pub source: Option<String>,
}

/// The caps [`Store::admit_pending`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCaps {
    /// Most flows in all.
    pub flows: u32,
    /// Most unauthenticated flows in all.
    pub pending: u32,
    /// Most unauthenticated flows per client address.
    pub pending_per_source: u32,
}

/// What [`Store::admit_pending`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// There is room, after deleting this many unauthenticated flows: the address's oldest
    /// when it was at its cap, or the oldest of the address holding the most when all of
    /// them were.
    Room {
        /// Flows deleted to make it.
        evicted: u32,
    },
    /// No room: the flows are at their cap, or the unauthenticated ones are and this address
    /// holds as many as any other.
    Full,
}

/// What one [`Store::transact`] call writes, all or nothing.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Flows written (`Some`) or deleted (`None`).
    pub flows: Vec<(String, Option<FlowData>)>,
    /// One-time values used, with the time (Unix seconds) until which they are remembered.
    pub consumed: Vec<(String, i64)>,
    /// New relationships: IdP, SP, since (Unix seconds).
    pub relationships: Vec<(String, String, i64)>,
    /// Audit events: when (Unix seconds), what.
    pub audit: Vec<(i64, String)>,
    /// Triggers owed from this commit on, each with when it is due and the table's cap, as
    /// [`Store::owe`] records them at the time of the transaction: a trigger the step queued
    /// is owed before it is sent, so a broker that stops before sending it leaves it to be
    /// planned again (review D6).
    pub owed: Vec<(OwedTrigger, i64, usize)>,
    /// Entities deleted, with their relationships and tokens, as [`Store::delete_entity`]
    /// deletes them: a deletion and the rollbacks it queues are committed together.
    pub deleted: Vec<String>,
}

/// How far the registry and the relationships have changed (see [`Store::generation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    /// Bumped by every entity or rules change.
    pub registry: i64,
    /// Bumped by every new relationship.
    pub relationships: i64,
}

/// What the broker keeps across restarts and shares between instances.
pub trait Store: Send + Sync + 'static {
    /// Whether several broker instances may share this store (then a change can come from
    /// another process, and waiting pages look at the store more often).
    fn shared(&self) -> bool;
    /// Every registered entity.
    fn entities(&self) -> impl Future<Output = Result<Vec<StoredEntity>, Error>> + Send;
    /// One registered entity, if stored.
    fn entity(
        &self,
        entity_id: &str,
    ) -> impl Future<Output = Result<Option<StoredEntity>, Error>> + Send;
    /// Registers or replaces an entity (and bumps the registry generation).
    fn put_entity(&self, e: &StoredEntity) -> impl Future<Output = Result<(), Error>> + Send;
    /// Registers an entity with `e.policy`, or replaces the metadata of a registered one and
    /// keeps the policy stored (another instance may have changed it since this one read it:
    /// broker review L2). Bumps the registry generation.
    fn put_metadata(&self, e: &StoredEntity) -> impl Future<Output = Result<(), Error>> + Send;
    /// Sets the policy (JSON) of a registered entity, its metadata as stored; whether it was
    /// registered. Bumps the registry generation.
    fn put_policy(
        &self,
        entity_id: &str,
        policy: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Removes an entity, its relationships and its tokens (and bumps both generations).
    fn delete_entity(&self, entity_id: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// Records an entity token (its SHA-256, hex) for `entity_id`, replacing the entity's
    /// earlier tokens.
    fn put_token(
        &self,
        hash: &str,
        entity_id: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// The entity an entity token (its SHA-256, hex) belongs to.
    fn token_entity(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Every relationship: (IdP, SP, since as Unix seconds).
    fn relationships(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, Error>> + Send;
    /// The conversion rules (JSON), if any were stored.
    fn rules(&self) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Replaces the conversion rules (and bumps the registry generation).
    fn put_rules(&self, json: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// The change counters: an instance reloads its registry or relationships when they moved.
    fn generation(&self) -> impl Future<Output = Result<Generation, Error>> + Send;
    /// Appends an audit event (JSON) at `at` (Unix seconds).
    fn audit(&self, at: i64, event: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// Flows stored and not expired at `now`.
    fn flow_count(&self, now: i64) -> impl Future<Output = Result<i64, Error>> + Send;
    /// Whether the flow `id` is stored and not expired at `now`.
    fn flow_live(&self, id: &str, now: i64) -> impl Future<Output = Result<bool, Error>> + Send;
    /// One transaction: the flows `select` names (not expired at `now`) are locked and handed
    /// to `f` as records; what `f` returns in [`Changes`] is written, all or nothing. Fails
    /// with [`Error::Replayed`] (nothing written) when a consumed value was already recorded.
    fn transact<R: Send, F>(
        &self,
        select: FlowSelect<'_>,
        now: i64,
        f: F,
    ) -> impl Future<Output = Result<R, Error>> + Send
    where
        F: FnOnce(Vec<String>) -> (Changes, R) + Send;
    /// One hit on the shared rate-limit counter `key` in window `window`: whether it stays
    /// within `limit`.
    fn hit(
        &self,
        key: &str,
        window: i64,
        limit: u32,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Forgets one-time values, rate windows and flows (an hour past their lifetime: the
    /// periodic step forgets them before) that can no longer matter at `now`, and triggers owed
    /// longer than [`OWED_TRIGGER_MAX_AGE`].
    fn sweep(&self, now: i64) -> impl Future<Output = Result<(), Error>> + Send;
    /// Makes room, within `caps`, for one more unauthenticated flow from the client address
    /// key `source` at `now` (one transaction): when the address holds its share, its oldest
    /// unauthenticated flow is deleted; when every unauthenticated slot is taken, the oldest
    /// of the address holding the most is deleted if that address holds more than `source`
    /// (else [`Admission::Full`]). So a few addresses cannot crowd out the users of others,
    /// whatever their request rate.
    fn admit_pending(
        &self,
        source: &str,
        now: i64,
        caps: FlowCaps,
    ) -> impl Future<Output = Result<Admission, Error>> + Send;
    /// Deletes the audit events recorded before `before` (Unix seconds), and the oldest beyond
    /// the newest `keep` (anyone can start flows, so age alone does not bound the table);
    /// returns how many.
    fn prune_audit(
        &self,
        before: i64,
        keep: u32,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
    /// Records at `now` (Unix seconds) that `owed` is owed until acknowledged, to be planned
    /// again once `due` has passed (a lease: the instance retrying it owes it again at each
    /// attempt). It replaces the pair's trigger issued earlier, never one issued later. A new
    /// pair is recorded while fewer than `max` are owed in all (several instances recording at
    /// once may pass it by as many), or in place of one trigger of the recipient owed the most
    /// when that one is owed at least two more than this recipient (its re-downloads first,
    /// then its oldest; audited); returns whether it was recorded.
    fn owe(
        &self,
        owed: &OwedTrigger,
        now: i64,
        due: i64,
        max: usize,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Forgets `owed` if it is still the pair's owed trigger (same action and issue instant):
    /// acknowledged, or no longer wanted.
    fn settle(&self, owed: &OwedTrigger) -> impl Future<Output = Result<(), Error>> + Send;
    /// Takes at most `limit` owed triggers due at `now`, earliest first, skipping those
    /// another instance is taking, and makes each due again at `again` (so that one taken by
    /// an instance that then stops is taken again later).
    fn take_owed(
        &self,
        now: i64,
        limit: usize,
        again: i64,
    ) -> impl Future<Output = Result<Vec<OwedTrigger>, Error>> + Send;
    /// How many triggers are owed.
    fn owed_count(&self) -> impl Future<Output = Result<i64, Error>> + Send;
}

/// A trigger the broker owes an agent ([`Store::owe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedTrigger {
    /// The addressed entity.
    pub recipient: String,
    /// The peer the trigger is about.
    pub about: String,
    /// `fetchmetadata` or `rollback` (`TriggerAction::as_str`).
    pub action: String,
    /// The trigger's issue instant, Unix milliseconds.
    pub issued: i64,
}

/// How long a pair stays owed without an acknowledgement (an agent that never answers)
/// before [`Store::sweep`] drops it: 30 days.
pub const OWED_TRIGGER_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

fn db(what: &str, e: sqlx::Error) -> Error {
    Error::Store(format!("{what}: {e}"))
}

/// An entity written whole: metadata, policy and (when given) origin.
const ENTITY_ROW: &str = "INSERT INTO entities (entity_id, xml, policy, origin) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (entity_id) DO UPDATE SET xml = excluded.xml, \
     policy = excluded.policy, \
     origin = COALESCE(excluded.origin, entities.origin)";

/// An entity's metadata written, its stored policy kept (the policy given is for a new one).
const ENTITY_METADATA: &str = "INSERT INTO entities (entity_id, xml, policy, origin) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (entity_id) DO UPDATE SET xml = excluded.xml, \
     origin = COALESCE(excluded.origin, entities.origin)";

/// The parts of the two stores that differ: how a flow transaction begins and locks.
macro_rules! store_impl {
    ($store:ty, $db:ty, $begin:expr, $lock:literal, $skip:literal, $shared:literal) => {
        impl $store {
            /// `e` written with `upsert` (`ENTITY_ROW` or `ENTITY_METADATA`), and the registry
            /// generation bumped, in one transaction.
            async fn upsert_entity(
                &self,
                e: &StoredEntity,
                upsert: &'static str,
                what: &'static str,
            ) -> Result<(), Error> {
                let w = |e| db(what, e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                sqlx::query(upsert)
                    .bind(&e.entity_id)
                    .bind(&e.xml)
                    .bind(&e.policy)
                    .bind(e.origin.map(Origin::as_str))
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                sqlx::query("UPDATE generation SET n = n + 1 WHERE name = 'registry'")
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                tx.commit().await.map_err(w)
            }

            /// [`Store::delete_entity`] inside the transaction `tx`.
            async fn delete_entity_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                entity_id: &str,
            ) -> Result<(), Error> {
                let w = |e| db("delete entity", e);
                for q in [
                    "DELETE FROM entities WHERE entity_id = $1",
                    "DELETE FROM relationships WHERE idp = $1 OR sp = $1",
                    "DELETE FROM tokens WHERE entity_id = $1",
                ] {
                    sqlx::query(q)
                        .bind(entity_id)
                        .execute(&mut **tx)
                        .await
                        .map_err(w)?;
                }
                sqlx::query("UPDATE generation SET n = n + 1")
                    .execute(&mut **tx)
                    .await
                    .map_err(w)?;
                Ok(())
            }

            /// [`Store::owe`] inside the transaction `tx`. When the table is full, a new pair
            /// takes the place of one trigger of the recipient owed the most, if that one is
            /// owed more than this recipient would be with it (its re-downloads first, then
            /// its oldest), and the eviction is audited: an entity whose agent never answers
            /// (a self-registered one, say) cannot keep other recipients' rollbacks out
            /// (review D5).
            async fn owe_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                owed: &OwedTrigger,
                now: i64,
                due: i64,
                max: usize,
            ) -> Result<bool, Error> {
                let w = |e| db("owed trigger", e);
                let max = i64::try_from(max).unwrap_or(i64::MAX);
                // A held pair is updated whatever the count (an upsert, so that two instances
                // owing one new pair do not collide), a new one inserted while there is room;
                // a trigger issued earlier than the one held changes nothing.
                let upsert = || {
                    sqlx::query(
                        "INSERT INTO owed_triggers (recipient, about, action, due, issued, since) \
                         SELECT $1, $2, $3, $4, $5, $6 \
                         WHERE (SELECT COUNT(*) FROM owed_triggers) < $7 OR EXISTS \
                         (SELECT 1 FROM owed_triggers WHERE recipient = $1 AND about = $2) \
                         ON CONFLICT (recipient, about) DO UPDATE SET action = excluded.action, \
                         due = excluded.due, issued = excluded.issued \
                         WHERE excluded.issued >= owed_triggers.issued",
                    )
                    .bind(&owed.recipient)
                    .bind(&owed.about)
                    .bind(&owed.action)
                    .bind(due)
                    .bind(owed.issued)
                    .bind(now)
                    .bind(max)
                };
                if upsert().execute(&mut **tx).await.map_err(w)?.rows_affected() > 0 {
                    return Ok(true);
                }
                let held = sqlx::query(
                    "SELECT 1 FROM owed_triggers WHERE recipient = $1 AND about = $2",
                )
                .bind(&owed.recipient)
                .bind(&owed.about)
                .fetch_optional(&mut **tx)
                .await
                .map_err(w)?;
                if held.is_some() {
                    // The pair's trigger held was issued later.
                    return Ok(false);
                }
                // Full: the recipient owed the most, and how much this one is owed.
                let top = sqlx::query(
                    "SELECT recipient, COUNT(*) FROM owed_triggers \
                     GROUP BY recipient ORDER BY COUNT(*) DESC, recipient LIMIT 1",
                )
                .fetch_optional(&mut **tx)
                .await
                .map_err(w)?;
                let Some(top) = top else { return Ok(false) };
                let (victim, most): (String, i64) =
                    (top.try_get(0).map_err(w)?, top.try_get(1).map_err(w)?);
                let mine: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM owed_triggers WHERE recipient = $1")
                        .bind(&owed.recipient)
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(w)?;
                if most <= mine + 1 {
                    return Ok(false);
                }
                let evicted = sqlx::query(
                    "DELETE FROM owed_triggers WHERE recipient = $1 AND about = \
                     (SELECT about FROM owed_triggers WHERE recipient = $1 \
                     ORDER BY CASE action WHEN 'rollback' THEN 1 ELSE 0 END, issued, about \
                     LIMIT 1) RETURNING about, action",
                )
                .bind(&victim)
                .fetch_optional(&mut **tx)
                .await
                .map_err(w)?;
                let Some(evicted) = evicted else { return Ok(false) };
                let (about, action): (String, String) =
                    (evicted.try_get(0).map_err(w)?, evicted.try_get(1).map_err(w)?);
                sqlx::query("INSERT INTO audit (at, event) VALUES ($1, $2)")
                    .bind(now)
                    .bind(format!(
                        "owed trigger evicted: {action} to {victim} about {about} \
                         (owed {most}), for {} to {} about {}",
                        owed.action, owed.recipient, owed.about
                    ))
                    .execute(&mut **tx)
                    .await
                    .map_err(w)?;
                Ok(upsert().execute(&mut **tx).await.map_err(w)?.rows_affected() > 0)
            }
        }

        impl Store for $store {
            fn shared(&self) -> bool {
                $shared
            }

            async fn entities(&self) -> Result<Vec<StoredEntity>, Error> {
                let rows = sqlx::query(
                    "SELECT entity_id, xml, policy, origin FROM entities ORDER BY entity_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db("entities", e))?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredEntity {
                            entity_id: r.try_get(0).map_err(|e| db("entities", e))?,
                            xml: r.try_get(1).map_err(|e| db("entities", e))?,
                            policy: r.try_get(2).map_err(|e| db("entities", e))?,
                            origin: origin_of(r.try_get(3).map_err(|e| db("entities", e))?),
                        })
                    })
                    .collect()
            }

            async fn entity(&self, entity_id: &str) -> Result<Option<StoredEntity>, Error> {
                let w = |e| db("entity", e);
                let row = sqlx::query(
                    "SELECT entity_id, xml, policy, origin FROM entities WHERE entity_id = $1",
                )
                .bind(entity_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(w)?;
                row.map(|r| {
                    Ok(StoredEntity {
                        entity_id: r.try_get(0).map_err(w)?,
                        xml: r.try_get(1).map_err(w)?,
                        policy: r.try_get(2).map_err(w)?,
                        origin: origin_of(r.try_get(3).map_err(w)?),
                    })
                })
                .transpose()
            }

            async fn put_entity(&self, e: &StoredEntity) -> Result<(), Error> {
                self.upsert_entity(e, ENTITY_ROW, "put entity").await
            }

            async fn put_metadata(&self, e: &StoredEntity) -> Result<(), Error> {
                self.upsert_entity(e, ENTITY_METADATA, "put metadata").await
            }

            async fn put_policy(&self, entity_id: &str, policy: &str) -> Result<bool, Error> {
                let w = |e| db("put policy", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                let n = sqlx::query("UPDATE entities SET policy = $2 WHERE entity_id = $1")
                    .bind(entity_id)
                    .bind(policy)
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?
                    .rows_affected();
                sqlx::query("UPDATE generation SET n = n + 1 WHERE name = 'registry'")
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                tx.commit().await.map_err(w)?;
                Ok(n > 0)
            }

            async fn delete_entity(&self, entity_id: &str) -> Result<(), Error> {
                let w = |e| db("delete entity", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                Self::delete_entity_in(&mut tx, entity_id).await?;
                tx.commit().await.map_err(w)
            }

            async fn put_token(&self, hash: &str, entity_id: &str) -> Result<(), Error> {
                let w = |e| db("put token", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                sqlx::query("DELETE FROM tokens WHERE entity_id = $1")
                    .bind(entity_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                sqlx::query("INSERT INTO tokens (hash, entity_id) VALUES ($1, $2)")
                    .bind(hash)
                    .bind(entity_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                tx.commit().await.map_err(w)
            }

            async fn token_entity(&self, hash: &str) -> Result<Option<String>, Error> {
                let row = sqlx::query("SELECT entity_id FROM tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db("token", e))?;
                row.map(|r| r.try_get(0).map_err(|e| db("token", e)))
                    .transpose()
            }

            async fn relationships(&self) -> Result<Vec<(String, String, i64)>, Error> {
                let rows = sqlx::query("SELECT idp, sp, since FROM relationships")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| db("relationships", e))?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get(0).map_err(|e| db("relationships", e))?,
                            r.try_get(1).map_err(|e| db("relationships", e))?,
                            r.try_get(2).map_err(|e| db("relationships", e))?,
                        ))
                    })
                    .collect()
            }

            async fn rules(&self) -> Result<Option<String>, Error> {
                let row = sqlx::query("SELECT json FROM rules WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db("rules", e))?;
                row.map(|r| r.try_get(0).map_err(|e| db("rules", e)))
                    .transpose()
            }

            async fn put_rules(&self, json: &str) -> Result<(), Error> {
                let mut tx = $begin(&self.pool).await.map_err(|e| db("put rules", e))?;
                sqlx::query(
                    "INSERT INTO rules (id, json) VALUES (1, $1) \
                     ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                )
                .bind(json)
                .execute(&mut *tx)
                .await
                .map_err(|e| db("put rules", e))?;
                sqlx::query("UPDATE generation SET n = n + 1 WHERE name = 'registry'")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db("put rules", e))?;
                tx.commit().await.map_err(|e| db("put rules", e))
            }

            async fn generation(&self) -> Result<Generation, Error> {
                let rows = sqlx::query("SELECT name, n FROM generation")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| db("generation", e))?;
                let mut g = Generation::default();
                for r in rows {
                    let name: String = r.try_get(0).map_err(|e| db("generation", e))?;
                    let n: i64 = r.try_get(1).map_err(|e| db("generation", e))?;
                    match name.as_str() {
                        "registry" => g.registry = n,
                        "relationships" => g.relationships = n,
                        _ => {}
                    }
                }
                Ok(g)
            }

            async fn audit(&self, at: i64, event: &str) -> Result<(), Error> {
                sqlx::query("INSERT INTO audit (at, event) VALUES ($1, $2)")
                    .bind(at)
                    .bind(event)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("audit", e))?;
                Ok(())
            }

            async fn flow_count(&self, now: i64) -> Result<i64, Error> {
                let row = sqlx::query("SELECT COUNT(*) FROM flows WHERE expires > $1")
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| db("flow count", e))?;
                row.try_get(0).map_err(|e| db("flow count", e))
            }

            async fn flow_live(&self, id: &str, now: i64) -> Result<bool, Error> {
                let row = sqlx::query("SELECT 1 FROM flows WHERE id = $1 AND expires > $2")
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| db("flow lookup", e))?;
                Ok(row.is_some())
            }

            async fn transact<R: Send, F>(
                &self,
                select: FlowSelect<'_>,
                now: i64,
                f: F,
            ) -> Result<R, Error>
            where
                F: FnOnce(Vec<String>) -> (Changes, R) + Send,
            {
                let w = |e| db("flow transaction", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                let rows = match select {
                    FlowSelect::None => Vec::new(),
                    FlowSelect::One(id) => sqlx::query(concat!(
                        "SELECT record FROM flows WHERE id = $1 AND expires > $2",
                        $lock
                    ))
                    .bind(id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(w)?,
                    FlowSelect::Pair(a, b) => sqlx::query(concat!(
                        "SELECT record FROM flows WHERE expires > $3 AND \
                         ((idp = $1 AND sp = $2) OR (idp = $2 AND sp = $1))",
                        $lock
                    ))
                    .bind(a)
                    .bind(b)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(w)?,
                    FlowSelect::Due(at) => sqlx::query(concat!(
                        "SELECT record FROM flows WHERE due <= $1 ORDER BY due LIMIT 100",
                        $lock,
                        $skip
                    ))
                    .bind(at)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(w)?,
                };
                let records = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(w)?;
                let (changes, out) = f(records);
                for (key, until) in &changes.consumed {
                    let n = sqlx::query(
                        "INSERT INTO consumed (key, until) VALUES ($1, $2) \
                         ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(until)
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?
                    .rows_affected();
                    if n == 0 {
                        // Dropping `tx` rolls back: nothing of this call is written.
                        return Err(Error::Replayed(key.clone()));
                    }
                }
                for (id, data) in &changes.flows {
                    match data {
                        Some(d) => {
                            let (idp, sp) = d.pair.clone().unzip();
                            let source = d.source.as_deref().filter(|_| d.pending);
                            // A stored flow keeps its source while unauthenticated and
                            // drops it once authenticated.
                            sqlx::query(
                                "INSERT INTO flows (id, record, expires, due, idp, sp, source) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE \
                                 SET record = excluded.record, expires = excluded.expires, \
                                 due = excluded.due, idp = excluded.idp, sp = excluded.sp, \
                                 source = CASE WHEN $8 THEN flows.source ELSE NULL END",
                            )
                            .bind(id)
                            .bind(&d.record)
                            .bind(d.expires)
                            .bind(d.due)
                            .bind(idp)
                            .bind(sp)
                            .bind(source)
                            .bind(d.pending)
                            .execute(&mut *tx)
                            .await
                            .map_err(w)?;
                        }
                        None => {
                            sqlx::query("DELETE FROM flows WHERE id = $1")
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(w)?;
                        }
                    }
                }
                for (idp, sp, since) in &changes.relationships {
                    sqlx::query(
                        "INSERT INTO relationships (idp, sp, since) VALUES ($1, $2, $3) \
                         ON CONFLICT (idp, sp) DO NOTHING",
                    )
                    .bind(idp)
                    .bind(sp)
                    .bind(since)
                    .execute(&mut *tx)
                    .await
                    .map_err(w)?;
                }
                if !changes.relationships.is_empty() {
                    sqlx::query("UPDATE generation SET n = n + 1 WHERE name = 'relationships'")
                        .execute(&mut *tx)
                        .await
                        .map_err(w)?;
                }
                for (at, event) in &changes.audit {
                    sqlx::query("INSERT INTO audit (at, event) VALUES ($1, $2)")
                        .bind(at)
                        .bind(event)
                        .execute(&mut *tx)
                        .await
                        .map_err(w)?;
                }
                for id in &changes.deleted {
                    Self::delete_entity_in(&mut tx, id).await?;
                }
                for (owed, due, max) in &changes.owed {
                    Self::owe_in(&mut tx, owed, now, *due, *max).await?;
                }
                tx.commit().await.map_err(w)?;
                Ok(out)
            }

            async fn hit(&self, key: &str, window: i64, limit: u32) -> Result<bool, Error> {
                let row = sqlx::query(
                    "INSERT INTO rate (key, win, n) VALUES ($1, $2, 1) \
                     ON CONFLICT (key, win) DO UPDATE SET n = rate.n + 1 RETURNING n",
                )
                .bind(key)
                .bind(window)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| db("rate", e))?;
                let n: i64 = row.try_get(0).map_err(|e| db("rate", e))?;
                Ok(n <= i64::from(limit))
            }

            async fn sweep(&self, now: i64) -> Result<(), Error> {
                // The periodic step forgets expired flows (rolling back an exchange first);
                // one it could not read stays until an hour past its lifetime.
                sqlx::query("DELETE FROM flows WHERE expires < $1")
                    .bind(now.saturating_sub(3600))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("sweep", e))?;
                sqlx::query("DELETE FROM consumed WHERE until < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("sweep", e))?;
                sqlx::query("DELETE FROM rate WHERE win < $1")
                    .bind(now / 60 - 2)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("sweep", e))?;
                sqlx::query("DELETE FROM owed_triggers WHERE since < $1")
                    .bind(now.saturating_sub(OWED_TRIGGER_MAX_AGE.as_secs() as i64))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("sweep", e))?;
                Ok(())
            }

            async fn admit_pending(
                &self,
                source: &str,
                now: i64,
                caps: FlowCaps,
            ) -> Result<Admission, Error> {
                let w = |e| db("admit flow", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                let count = |q: &'static str| sqlx::query_scalar::<_, i64>(q);
                let mut evicted = 0;
                // Counted up to the cap only: the work per admission stays bounded by the cap
                // however many flows one address (a load balancer, an attacker) holds.
                let mut mine: i64 = count(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM flows \
                     WHERE source = $1 AND expires > $2 LIMIT $3) AS held",
                )
                .bind(source)
                .bind(now)
                .bind(i64::from(caps.pending_per_source))
                .fetch_one(&mut *tx)
                .await
                .map_err(w)?;
                // The oldest unauthenticated flow of `victim` (all live the same time, so the
                // one expiring first).
                const EVICT: &str = "DELETE FROM flows WHERE id IN (SELECT id FROM flows \
                     WHERE source = $1 AND expires > $2 ORDER BY expires LIMIT 1)";
                if mine >= i64::from(caps.pending_per_source) {
                    sqlx::query(EVICT)
                        .bind(source)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(w)?;
                    evicted += 1;
                    mine -= 1;
                }
                let pending: i64 = count(
                    "SELECT COUNT(*) FROM flows WHERE source IS NOT NULL AND expires > $1",
                )
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(w)?;
                if pending >= i64::from(caps.pending) {
                    let top = sqlx::query(
                        "SELECT source, COUNT(*) FROM flows \
                         WHERE source IS NOT NULL AND expires > $1 \
                         GROUP BY source ORDER BY COUNT(*) DESC LIMIT 1",
                    )
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(w)?;
                    let top = match top {
                        Some(r) => Some((
                            r.try_get::<String, _>(0).map_err(w)?,
                            r.try_get::<i64, _>(1).map_err(w)?,
                        )),
                        None => None,
                    };
                    match top {
                        Some((victim, n)) if n > mine => {
                            sqlx::query(EVICT)
                                .bind(victim)
                                .bind(now)
                                .execute(&mut *tx)
                                .await
                                .map_err(w)?;
                            evicted += 1;
                        }
                        _ => {
                            tx.commit().await.map_err(w)?;
                            return Ok(Admission::Full);
                        }
                    }
                }
                let all: i64 = count("SELECT COUNT(*) FROM flows WHERE expires > $1")
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(w)?;
                tx.commit().await.map_err(w)?;
                if all >= i64::from(caps.flows) {
                    return Ok(Admission::Full);
                }
                Ok(Admission::Room { evicted })
            }

            async fn owe(
                &self,
                owed: &OwedTrigger,
                now: i64,
                due: i64,
                max: usize,
            ) -> Result<bool, Error> {
                let w = |e| db("owed trigger", e);
                let mut tx = $begin(&self.pool).await.map_err(w)?;
                let kept = Self::owe_in(&mut tx, owed, now, due, max).await?;
                tx.commit().await.map_err(w)?;
                Ok(kept)
            }

            async fn settle(&self, owed: &OwedTrigger) -> Result<(), Error> {
                sqlx::query(
                    "DELETE FROM owed_triggers WHERE recipient = $1 AND about = $2 \
                     AND action = $3 AND issued = $4",
                )
                .bind(&owed.recipient)
                .bind(&owed.about)
                .bind(&owed.action)
                .bind(owed.issued)
                .execute(&self.pool)
                .await
                .map_err(|e| db("owed trigger", e))?;
                Ok(())
            }

            async fn take_owed(
                &self,
                now: i64,
                limit: usize,
                again: i64,
            ) -> Result<Vec<OwedTrigger>, Error> {
                // The rows taken are chosen once (a materialized CTE: PostgreSQL could run an
                // `IN (subquery)` more than once and take more than `limit`), skipping those
                // another instance holds.
                let rows = sqlx::query(concat!(
                    "WITH t AS MATERIALIZED (SELECT recipient AS r, about AS a \
                     FROM owed_triggers WHERE due <= $1 ORDER BY due LIMIT $2",
                    $lock,
                    $skip,
                    ") UPDATE owed_triggers SET due = $3 FROM t \
                     WHERE recipient = t.r AND about = t.a \
                     RETURNING recipient, about, action, issued"
                ))
                .bind(now)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(again)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db("owed triggers", e))?;
                rows.iter()
                    .map(|r| {
                        let get = |i| r.try_get::<String, _>(i).map_err(|e| db("owed triggers", e));
                        Ok(OwedTrigger {
                            recipient: get(0)?,
                            about: get(1)?,
                            action: get(2)?,
                            issued: r.try_get(3).map_err(|e| db("owed triggers", e))?,
                        })
                    })
                    .collect()
            }

            async fn owed_count(&self) -> Result<i64, Error> {
                let row = sqlx::query("SELECT COUNT(*) FROM owed_triggers")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| db("owed count", e))?;
                row.try_get(0).map_err(|e| db("owed count", e))
            }

            async fn prune_audit(&self, before: i64, keep: u32) -> Result<u64, Error> {
                // The id of the newest row beyond `keep` is NULL when there are fewer, and
                // `id <= NULL` deletes nothing.
                let r = sqlx::query(
                    "DELETE FROM audit WHERE at < $1 OR id <= \
                     (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET $2)",
                )
                .bind(before)
                .bind(i64::from(keep))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| db("prune audit", e))?;
                Ok(r.rows_affected())
            }
        }
    };
}

/// SQLite, one file (WAL journal), created and migrated at start: one broker instance.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| db("database", e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL syncs at checkpoints, not at every commit: a crash of the
            // process loses nothing, a power cut may lose the last commits (flows, which the
            // users then restart), never corrupts the file.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| db(&path.display().to_string(), e))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| Error::Store(format!("migrating {}: {e}", path.display())))?;
        Ok(SqliteStore { pool })
    }
}

/// Writers take the database lock at `BEGIN`, so two flow transactions never interleave.
async fn sqlite_begin(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

store_impl!(SqliteStore, sqlx::Sqlite, sqlite_begin, "", "", false);

/// PostgreSQL, shared by several broker instances; migrated at start (instances starting
/// together wait for each other on sqlx's migration lock).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`; libpq's
    /// `PG*` environment variables fill what it leaves out) and migrates.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| db("database", e))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| db("connecting to PostgreSQL", e))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| Error::Store(format!("migrating PostgreSQL: {e}")))?;
        Ok(PgStore { pool })
    }
}

async fn pg_begin(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin().await
}

store_impl!(
    PgStore,
    sqlx::Postgres,
    pg_begin,
    " FOR UPDATE",
    " SKIP LOCKED",
    true
);
