//! IO adapters over the sans-IO [`crate::client::Client`], and the persistent cache directory
//! they share: `persist` (feature `persist`, on by default and enabled by `blocking` and
//! `tokio`), `blocking` (feature `blocking`) and `tokio` (feature `tokio`). Without any of these
//! features this module is empty and the crate has no filesystem or network code.

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub mod options {
    //! Settings shared by the IO adapters.

    use std::time::Duration;

    /// Adapter settings. Build them from [`Options::default`] and the `with_*` methods.
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub struct Options {
        /// Connect timeout (default 5 s).
        pub connect_timeout: Duration,
        /// Whole-request timeout (default 15 s).
        pub timeout: Duration,
        /// Retries after the first attempt for transport errors and 5xx (default 2).
        pub retries: u32,
        /// First backoff, doubled each retry (default 200 ms).
        pub backoff: Duration,
        /// A persistent cache directory (see [`crate::io::persist`]); none by default.
        pub cache_dir: Option<std::path::PathBuf>,
        /// The certificate authorities (DER) trusted for `https://` servers, instead of the
        /// system's (OpenSSL's default store); `None`, the default: the system's.
        pub root_certificates: Option<Vec<Vec<u8>>>,
    }

    impl Default for Options {
        fn default() -> Self {
            Options {
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(15),
                retries: 2,
                backoff: Duration::from_millis(200),
                cache_dir: None,
                root_certificates: None,
            }
        }
    }

    impl Options {
        /// The connect timeout.
        #[must_use]
        pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
            self.connect_timeout = timeout;
            self
        }

        /// The timeout of one attempt (connect to last byte); each retry has its own, so a fetch
        /// takes at most `(retries + 1) * timeout` plus the backoffs.
        #[must_use]
        pub fn with_timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// Retries after the first attempt for transport errors and 5xx.
        #[must_use]
        pub fn with_retries(mut self, retries: u32) -> Self {
            self.retries = retries;
            self
        }

        /// The first backoff, doubled each retry.
        #[must_use]
        pub fn with_backoff(mut self, backoff: Duration) -> Self {
            self.backoff = backoff;
            self
        }

        /// A persistent cache directory (see [`crate::io::persist`]).
        #[must_use]
        pub fn with_cache_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.cache_dir = Some(dir.into());
            self
        }

        /// Trusts only the certificate authorities `der` (each one DER certificate) for
        /// `https://` servers, not the system's (a federation's private MDQ CA, a test).
        #[must_use]
        pub fn with_root_certificates(mut self, der: Vec<Vec<u8>>) -> Self {
            self.root_certificates = Some(der);
            self
        }
    }
}
#[cfg(feature = "tokio")]
pub mod tokio;

/// What a transfer gave: status, header fields and body, or a transport error.
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) type Transfer = Result<(u16, Vec<(String, String)>, Vec<u8>), String>;

/// What the adapter does with its cache directory after a fetch (outside its lock).
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) enum Persist {
    /// Nothing.
    Keep,
    /// Save this entry.
    Save(crate::client::Snapshot),
    /// Remove what is saved under this cache key (the SHA-1 hex of the entityID): its answer
    /// said `no-store`, or the server no longer has it, and an older copy on disk would be
    /// restored after a restart (mdq review M4).
    Remove(String),
}

#[cfg(any(feature = "blocking", feature = "tokio"))]
impl Persist {
    /// Applies it to `dir`. A full disk only loses persistence, not the lookup.
    pub(crate) fn apply(self, dir: Option<&std::path::Path>) {
        let Some(dir) = dir else { return };
        match self {
            Persist::Keep => {}
            Persist::Save(s) => {
                let _ = persist::save(dir, &s);
            }
            Persist::Remove(key) => persist::remove_key(dir, &key),
        }
    }
}

/// Hands a finished transfer to the core; returns the lookup's result and, when `persist` and it
/// produced an entity, what to do with the cache directory (the adapter does it outside its
/// lock).
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) fn complete(
    core: &mut crate::client::Client,
    r: &crate::client::FetchRequest,
    result: Result<crate::client::Verified, String>,
    persist: bool,
) -> (
    Result<Option<std::sync::Arc<saml_metadata::model::EntityDescriptor>>, crate::Error>,
    Persist,
) {
    let now = std::time::SystemTime::now();
    let out = match result {
        Ok(verified) => core.handle_verified(r.token, verified, now),
        Err(e) => core.handle_failure(r.token, &e, now),
    };
    let action = match &out {
        Ok(Some(_)) if persist => match core.snapshot(&r.id) {
            Some(s) => Persist::Save(s),
            None if core.is_no_store(&r.id) => Persist::Remove(r.id.key().to_owned()),
            None => Persist::Keep,
        },
        // Not found (and nothing kept): a copy on disk would come back after a restart.
        Ok(None) if persist => Persist::Remove(r.id.key().to_owned()),
        _ => Persist::Keep,
    };
    (out, action)
}

/// Verifies a transfer's answer with `verifier` (taken from the core under its lock, run
/// without it: MDQ review M5, a costly document held every other lookup, cache hits included).
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) fn verify(
    verifier: &crate::client::Verifier,
    (status, headers, body): &(u16, Vec<(String, String)>, Vec<u8>),
) -> crate::client::Verified {
    verifier.verify(&crate::response::HttpResponse {
        status: *status,
        headers,
        body,
    })
}

/// A fetch in progress, reported to the core as failed if it ends without being completed:
/// an async `get` dropped while its transfer runs (a caller's timeout, a disconnected
/// client's handler), or a transfer that panicked. Without it the core kept the entity pending
/// for good: every later lookup waited for a fetch that would never finish, and the stale copy
/// was never served.
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) struct Abandoned<'c, F: Fn()> {
    core: &'c std::sync::Mutex<crate::client::Client>,
    token: Option<crate::client::Token>,
    /// Wakes the lookups waiting for this fetch.
    wake: F,
}

#[cfg(any(feature = "blocking", feature = "tokio"))]
impl<'c, F: Fn()> Abandoned<'c, F> {
    /// Armed for the fetch `token` of `core`.
    pub(crate) fn arm(
        core: &'c std::sync::Mutex<crate::client::Client>,
        token: crate::client::Token,
        wake: F,
    ) -> Self {
        Abandoned {
            core,
            token: Some(token),
            wake,
        }
    }

    /// The transfer ended (well or not): its outcome goes to the core the ordinary way.
    pub(crate) fn disarm(mut self) {
        self.token = None;
    }
}

#[cfg(any(feature = "blocking", feature = "tokio"))]
impl<F: Fn()> Drop for Abandoned<'_, F> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
            let _ = core.handle_failure(
                token,
                "the transfer was abandoned",
                std::time::SystemTime::now(),
            );
            drop(core);
            (self.wake)();
        }
    }
}

/// The error a lookup answered [`crate::client::Lookup::Unavailable`] gets.
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) fn core_unavailable(failures: u32, until: std::time::SystemTime) -> crate::Error {
    crate::Error::Unavailable {
        failures,
        until: saml_core::time::format_datetime_exact(until),
    }
}

#[cfg(feature = "persist")]
pub mod persist {
    //! A persistent cache directory (feature `persist`, enabled by `blocking` and `tokio`): for each entity `{sha1}.xml` (the signed document as
    //! received) and `{sha1}.meta` (`entity_id=`, `etag=`, `last_modified=`, `expires=` in Unix seconds, `sha256=` of
    //! the document it goes with), written
    //! atomically. On start the adapters restore every entry through
    //! [`crate::client::Client::restore`], which verifies the document again: a restart serves
    //! known entities without the network and revalidates them with If-None-Match (or
    //! If-Modified-Since).
    //!
    //! Nothing in the directory is trusted: the document is verified again, the `.meta` expiry
    //! is only an upper bound (clamped to `max_ttl` and the document's validUntil on restore),
    //! and a malformed file (an expiry `SystemTime` cannot hold, garbage) is skipped and
    //! reported, never a panic.

    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use saml_metadata::model::sha1_hex;

    use crate::client::Snapshot;

    /// The largest cached document read back (a `{sha1}.xml` beyond it is skipped): the
    /// adapters' own body limit is at most this in practice.
    pub const MAX_CACHED_DOCUMENT: u64 = 64 << 20;

    /// The largest `.meta` file read back.
    const MAX_META: u64 = 64 << 10;

    /// The regular file at `path` (not a link, not a device: `/dev/zero` behind a link never
    /// ends), if it holds at most `max` bytes (MDQ review L4).
    fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        let m = std::fs::symlink_metadata(path)?;
        if !m.file_type().is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        if m.len() > max {
            return Err(std::io::Error::other(format!("larger than {max} bytes")));
        }
        let mut out = Vec::new();
        std::fs::File::open(path)?
            .take(max + 1)
            .read_to_end(&mut out)?;
        if out.len() as u64 > max {
            return Err(std::io::Error::other(format!("larger than {max} bytes")));
        }
        Ok(out)
    }

    fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
        // A name of its own per write: two threads (or processes) saving one entity never
        // write into one temporary file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        // A new file, never one already there (a link planted at the predictable name in a
        // directory others can write to would have been followed: mdq review L9).
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, data))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The SHA-256 of a document, in hex: what its `.meta` file names, so that a `.meta`
    /// paired with another version's document (two writers, `.xml` and `.meta` being two
    /// renames) is recognised.
    fn document_digest(document: &[u8]) -> String {
        openssl::sha::sha256(document)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Saves `s` in `dir`.
    pub fn save(dir: &Path, s: &Snapshot) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let key = sha1_hex(&s.entity_id);
        write_atomic(&dir.join(format!("{key}.xml")), &s.document)?;
        let expires = s
            .expires
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut meta = format!(
            "entity_id={}\nexpires={expires}\nsha256={}\n",
            s.entity_id.replace('\n', ""),
            document_digest(&s.document)
        );
        if let Some(e) = &s.etag {
            meta.push_str(&format!("etag={}\n", e.replace('\n', "")));
        }
        if let Some(d) = &s.last_modified {
            meta.push_str(&format!("last_modified={}\n", d.replace('\n', "")));
        }
        write_atomic(&dir.join(format!("{key}.meta")), meta.as_bytes())
    }

    /// Removes what is saved in `dir` for `entity_id` (nothing there is no error).
    pub fn remove(dir: &Path, entity_id: &str) {
        let key = sha1_hex(entity_id);
        for ext in ["meta", "xml"] {
            let _ = std::fs::remove_file(dir.join(format!("{key}.{ext}")));
        }
    }

    /// What [`load`] found in a cache directory.
    #[derive(Debug, Default)]
    #[must_use]
    pub struct Loaded {
        /// The well-formed entries (still to be verified by
        /// [`crate::client::Client::restore`]).
        pub snapshots: Vec<Snapshot>,
        /// The `.meta` files passed over, and why ([`crate::Error::Cache`]).
        pub skipped: Vec<(PathBuf, crate::Error)>,
    }

    /// Reads one entry from the text of its `.meta` file and its document. The expiry is an
    /// upper bound only: [`crate::client::Client::restore`] clamps it like a fresh lifetime. An
    /// expiry that is not a number of seconds or that `SystemTime` cannot represent is an
    /// error, never a panic. A `.meta` naming another document (`sha256=`: another version's,
    /// written by a concurrent writer) is an error; one naming none (written before it did)
    /// keeps no ETag, so the entry is fetched whole rather than revalidated (MDQ review L4).
    pub fn parse_meta(meta: &str, document: Vec<u8>) -> Result<Snapshot, crate::Error> {
        let bad = |m: &str| crate::Error::Cache(m.to_owned());
        let get = |k: &str| meta.lines().find_map(|l| l.strip_prefix(k));
        let paired = match get("sha256=") {
            Some(d) if d.trim() != document_digest(&document) => {
                return Err(bad("the .meta file is for another version of the document"));
            }
            Some(_) => true,
            None => false,
        };
        let entity_id = get("entity_id=")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| bad("no entity_id"))?;
        let secs = get("expires=")
            .ok_or_else(|| bad("no expires"))?
            .trim()
            .parse::<u64>()
            .map_err(|_| bad("expires is not a number of seconds"))?;
        let expires = UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| bad("expires is out of range"))?;
        Ok(Snapshot {
            entity_id: entity_id.to_owned(),
            document: Arc::new(document),
            // An ETag that no HTTP header can carry is dropped (the entry is fetched whole
            // next time) rather than making every revalidation fail (MDQ review L4).
            etag: get("etag=")
                .filter(|e| {
                    paired && !e.is_empty() && e.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                })
                .map(str::to_owned),
            last_modified: get("last_modified=")
                .filter(|d| paired && crate::response::header_safe(d, 64))
                .map(str::to_owned),
            expires,
        })
    }

    /// Every entry saved in `dir`; unreadable or malformed ones are skipped and reported in
    /// [`Loaded::skipped`]. A missing directory is an empty cache.
    pub fn load(dir: &Path) -> Loaded {
        let mut out = Loaded::default();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return out;
        };
        for f in rd.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            let meta = read_bounded(&p, MAX_META)
                .and_then(|m| String::from_utf8(m).map_err(|_| std::io::Error::other("not UTF-8")));
            let r = match (
                meta,
                read_bounded(&p.with_extension("xml"), MAX_CACHED_DOCUMENT),
            ) {
                (Ok(meta), Ok(document)) => parse_meta(&meta, document),
                (Err(e), _) | (_, Err(e)) => Err(crate::Error::Cache(format!("unreadable: {e}"))),
            };
            match r {
                Ok(s) => out.snapshots.push(s),
                Err(e) => out.skipped.push((p, e)),
            }
        }
        out
    }

    /// Restores the entries of `dir` into `core` at `now`, the latest expiry first, one
    /// document in memory at a time, until the cache holds [`crate::Config::max_entries`] or
    /// [`crate::Config::max_bytes`] (see [`parse_meta`] and
    /// [`crate::client::Client::restore`]); returns the files skipped, and why (malformed, or a
    /// document that no longer verifies or has expired). The files of a skipped entry, and
    /// those beyond what the cache holds, are deleted: the directory read whole into memory,
    /// and never pruned, grew with every entity ever looked up (mdq review M4).
    #[must_use = "the skipped files say which cache entries were not restored, and why"]
    pub fn restore_into(
        core: &mut crate::client::Client,
        dir: &Path,
        now: std::time::SystemTime,
    ) -> Vec<(PathBuf, crate::Error)> {
        let mut skipped = Vec::new();
        let Ok(rd) = std::fs::read_dir(dir) else {
            return skipped;
        };
        // The `.meta` files (small), with the expiry each names.
        let mut metas: Vec<(u64, PathBuf, String)> = Vec::new();
        for f in rd.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            match read_bounded(&p, MAX_META)
                .and_then(|m| String::from_utf8(m).map_err(|_| std::io::Error::other("not UTF-8")))
            {
                Ok(meta) => {
                    let expires = meta
                        .lines()
                        .find_map(|l| l.strip_prefix("expires="))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    metas.push((expires, p, meta));
                }
                Err(e) => {
                    discard(&p);
                    skipped.push((p, crate::Error::Cache(format!("unreadable: {e}"))));
                }
            }
        }
        metas.sort_unstable_by_key(|m| std::cmp::Reverse(m.0));
        let (max_entries, max_bytes) = (core.config().max_entries, core.config().max_bytes);
        let mut bytes = 0usize;
        for (_, p, meta) in metas {
            if core.len() >= max_entries || bytes >= max_bytes {
                // Beyond what the cache holds: the entries expiring first go.
                discard(&p);
                continue;
            }
            let restored = read_bounded(&p.with_extension("xml"), MAX_CACHED_DOCUMENT)
                .map_err(|e| crate::Error::Cache(format!("unreadable: {e}")))
                .and_then(|document| parse_meta(&meta, document))
                .and_then(|s| core.restore(&s, now).map(|()| s.document.len()));
            match restored {
                Ok(n) => bytes = bytes.saturating_add(n),
                Err(e) => {
                    discard(&p);
                    skipped.push((p, e));
                }
            }
        }
        skipped
    }

    /// Deletes a cache entry's `.meta` file and its document.
    fn discard(meta: &Path) {
        let _ = std::fs::remove_file(meta);
        let _ = std::fs::remove_file(meta.with_extension("xml"));
    }

    /// Removes what is saved in `dir` under the cache key `key` (the SHA-1 hex of the
    /// entityID; nothing there is no error).
    #[cfg(any(feature = "blocking", feature = "tokio"))]
    pub(crate) fn remove_key(dir: &Path, key: &str) {
        discard(&dir.join(format!("{key}.meta")));
    }

    #[cfg(all(test, unix))]
    mod tests {
        use super::*;

        /// mdq review L9: the temporary file had a predictable name and was written with
        /// `fs::write`, which follows a link planted there (a cache directory others can write
        /// to). It is created new: a link at the name makes the write fail, the link's target
        /// untouched.
        #[test]
        fn a_link_at_the_temporary_name_is_not_followed() {
            let dir = tempfile::tempdir().unwrap();
            let victim = dir.path().join("victim");
            std::fs::write(&victim, b"keep").unwrap();
            let path = dir.path().join("0123.xml");
            // Every name this process's next writes could take.
            for n in 0..256 {
                let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
                std::os::unix::fs::symlink(&victim, tmp).unwrap();
            }
            assert!(write_atomic(&path, b"attacker-chosen").is_err());
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            assert!(!path.exists());
        }
    }
}
