//! The broker's store, behind one trait: registered entities with their policies,
//! relationships, flows (so that a flow survives a restart and can continue on another
//! instance), the shared conversion rules and the audit log. [`SqliteStore`] is the embedded
//! default: one file, created and migrated at start (sqlx migrations in
//! `crates/dame-server/migrations`), parameterised queries only.

use std::future::Future;
use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::Error;

/// A stored entity: its metadata as registered (XML) and its policy (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntity {
    /// The entityID.
    pub entity_id: String,
    /// The metadata as registered.
    pub xml: String,
    /// The policy, as JSON.
    pub policy: String,
}

/// What the broker keeps across restarts and shares between instances.
pub trait Store: Send + Sync + 'static {
    /// Every registered entity.
    fn entities(&self) -> impl Future<Output = Result<Vec<StoredEntity>, Error>> + Send;
    /// Registers or replaces an entity.
    fn put_entity(&self, e: &StoredEntity) -> impl Future<Output = Result<(), Error>> + Send;
    /// Every relationship: (IdP, SP, since as Unix seconds).
    fn relationships(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, i64)>, Error>> + Send;
    /// Records a relationship.
    fn put_relationship(
        &self,
        idp: &str,
        sp: &str,
        since: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// A flow record (JSON), if stored and not expired at `now` (Unix seconds).
    fn flow(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Stores a flow record.
    fn put_flow(
        &self,
        id: &str,
        record: &str,
        expires: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Forgets a flow (finished, failed or expired).
    fn delete_flow(&self, id: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// The conversion rules (JSON), if any were stored.
    fn rules(&self) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Replaces the conversion rules.
    fn put_rules(&self, json: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// Appends an audit event (JSON) at `at` (Unix seconds).
    fn audit(&self, at: i64, event: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

fn db(what: &str, e: sqlx::Error) -> Error {
    Error::Store(format!("{what}: {e}"))
}

/// SQLite, one file (WAL journal), created and migrated at start.
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
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| db(&path.display().to_string(), e))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| Error::Store(format!("migrating {}: {e}", path.display())))?;
        Ok(SqliteStore { pool })
    }
}

impl Store for SqliteStore {
    async fn entities(&self) -> Result<Vec<StoredEntity>, Error> {
        let rows = sqlx::query("SELECT entity_id, xml, policy FROM entities ORDER BY entity_id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db("entities", e))?;
        rows.iter()
            .map(|r| {
                Ok(StoredEntity {
                    entity_id: r.try_get(0).map_err(|e| db("entities", e))?,
                    xml: r.try_get(1).map_err(|e| db("entities", e))?,
                    policy: r.try_get(2).map_err(|e| db("entities", e))?,
                })
            })
            .collect()
    }

    async fn put_entity(&self, e: &StoredEntity) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO entities (entity_id, xml, policy) VALUES ($1, $2, $3) \
             ON CONFLICT (entity_id) DO UPDATE SET xml = excluded.xml, policy = excluded.policy",
        )
        .bind(&e.entity_id)
        .bind(&e.xml)
        .bind(&e.policy)
        .execute(&self.pool)
        .await
        .map_err(|e| db("put entity", e))?;
        Ok(())
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

    async fn put_relationship(&self, idp: &str, sp: &str, since: i64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO relationships (idp, sp, since) VALUES ($1, $2, $3) \
             ON CONFLICT (idp, sp) DO NOTHING",
        )
        .bind(idp)
        .bind(sp)
        .bind(since)
        .execute(&self.pool)
        .await
        .map_err(|e| db("put relationship", e))?;
        Ok(())
    }

    async fn flow(&self, id: &str, now: i64) -> Result<Option<String>, Error> {
        let row = sqlx::query("SELECT record FROM flows WHERE id = $1 AND expires > $2")
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db("flow", e))?;
        row.map(|r| r.try_get(0).map_err(|e| db("flow", e)))
            .transpose()
    }

    async fn put_flow(&self, id: &str, record: &str, expires: i64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO flows (id, record, expires) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record, expires = excluded.expires",
        )
        .bind(id)
        .bind(record)
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(|e| db("put flow", e))?;
        Ok(())
    }

    async fn delete_flow(&self, id: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM flows WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| db("delete flow", e))?;
        Ok(())
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
        sqlx::query(
            "INSERT INTO rules (id, json) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET json = excluded.json",
        )
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(|e| db("put rules", e))?;
        Ok(())
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
}
