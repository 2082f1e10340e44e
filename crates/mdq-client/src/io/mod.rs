//! IO adapters over the sans-IO [`crate::client::Client`], and the persistent cache directory
//! they share.

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub mod options {
    //! Settings shared by the IO adapters.

    use std::time::Duration;

    /// Adapter settings.
    #[derive(Debug, Clone)]
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
    }

    impl Default for Options {
        fn default() -> Self {
            Options {
                connect_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(15),
                retries: 2,
                backoff: Duration::from_millis(200),
                cache_dir: None,
            }
        }
    }
}
#[cfg(feature = "tokio")]
pub mod tokio;

/// What a transfer gave: status, header fields and body, or a transport error.
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) type Transfer = Result<(u16, Vec<(String, String)>, Vec<u8>), String>;

/// Hands a finished transfer to the core; returns the lookup's result and, when `persist` and it
/// produced an entity, the snapshot to save (the adapter saves it outside its lock).
#[cfg(any(feature = "blocking", feature = "tokio"))]
pub(crate) fn complete(
    core: &mut crate::client::Client,
    r: &crate::client::FetchRequest,
    result: Transfer,
    persist: bool,
) -> (
    Result<Option<std::sync::Arc<saml_metadata::model::EntityDescriptor>>, crate::Error>,
    Option<crate::client::Snapshot>,
) {
    let now = std::time::SystemTime::now();
    let out = match result {
        Ok((status, headers, body)) => core.handle_response(
            r.token,
            &crate::response::HttpResponse {
                status,
                headers: &headers,
                body: &body,
            },
            now,
        ),
        Err(e) => core.handle_failure(r.token, &e, now),
    };
    let snapshot = match &out {
        Ok(Some(_)) if persist => core.snapshot(&r.id),
        _ => None,
    };
    (out, snapshot)
}

pub mod persist {
    //! A persistent cache directory: for each entity `{sha1}.xml` (the signed document as
    //! received) and `{sha1}.meta` (`entity_id=`, `etag=`, `expires=` in Unix seconds), written
    //! atomically. On start the adapters restore every entry through
    //! [`crate::client::Client::restore`], which verifies the document again: a restart serves
    //! known entities without the network and revalidates them with If-None-Match.

    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use saml_metadata::model::sha1_hex;

    use crate::client::Snapshot;

    fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, path)
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
            "entity_id={}\nexpires={expires}\n",
            s.entity_id.replace('\n', "")
        );
        if let Some(e) = &s.etag {
            meta.push_str(&format!("etag={}\n", e.replace('\n', "")));
        }
        write_atomic(&dir.join(format!("{key}.meta")), meta.as_bytes())
    }

    /// Every entry saved in `dir` (unreadable or incomplete ones are passed over).
    pub fn load(dir: &Path) -> Vec<Snapshot> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in rd.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            let (Ok(meta), Ok(document)) = (
                std::fs::read_to_string(&p),
                std::fs::read(p.with_extension("xml")),
            ) else {
                continue;
            };
            let get = |k: &str| {
                meta.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(str::to_owned)
            };
            let (Some(entity_id), Some(expires)) = (
                get("entity_id="),
                get("expires=").and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            out.push(Snapshot {
                entity_id,
                document: Arc::new(document),
                etag: get("etag="),
                expires: UNIX_EPOCH + Duration::from_secs(expires),
            });
        }
        out
    }
}
