//! Integrating a peer's metadata at an entity (the provider extension's last step), in the
//! layout the GÉANT-TrustBroker chose and Shibboleth SP's `LocalDynamic` metadata provider reads:
//! `<lowercase hex SHA-1 of the entityID>.xml` holding one signed EntityDescriptor, and beside
//! it `<same>.xml.loc` holding the URL it came from, so that a restart re-initialises every
//! dynamic source without the broker. Rollback removes both.
//!
//! The `.xml.loc` is DAME's ownership marker (agent review M4): the agent always writes it before
//! the `.xml`, so a `<sha1>.xml` without it was put there by the operator (a hand-vetted
//! LocalDynamic entry). Such a file is never replaced ([`Refusal::StaticallyConfigured`]) nor
//! removed by a rollback.
//!
//! [`accept_peer`] checks what was fetched before anything is written: the broker's signature
//! (saml-metadata's verified load with the broker's pinned keys), validity, and that the
//! document is the one entity that was asked for. [`IntegrationTarget`] is where it goes:
//! [`MemoryTarget`] for tests and embedders with their own store, and (feature `fs`)
//! `LocalDynamicDir`, a directory written atomically.

use std::collections::BTreeMap;
use std::time::SystemTime;

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{EntityDescriptor, Metadata, sha1_hex};

use crate::error::{Error, Refusal};

/// The file name of `entity_id`'s metadata: `<sha1 hex>.xml`.
#[must_use]
pub fn metadata_file(entity_id: &str) -> String {
    format!("{}.xml", sha1_hex(entity_id))
}

/// The file name of its source URL: `<sha1 hex>.xml.loc`.
#[must_use]
pub fn loc_file(entity_id: &str) -> String {
    format!("{}.xml.loc", sha1_hex(entity_id))
}

/// Checks a peer's metadata as fetched from the broker: signed by one of `broker_keys`, valid
/// at `now`, exactly one EntityDescriptor, and its entityID is `expected` (a broker answering
/// for another entity is refused as [`Refusal::UnknownEntity`]).
pub fn accept_peer(
    xml: &[u8],
    expected: &str,
    broker_keys: &TrustedKeys,
    now: SystemTime,
) -> Result<EntityDescriptor, Error> {
    let agg = load::load(xml, &Policy::new(broker_keys.clone(), now))?;
    match agg.metadata() {
        Metadata::Entity(e) if e.entity_id == expected => Ok((**e).clone()),
        Metadata::Entity(_) => Err(Refusal::UnknownEntity.into()),
        _ => Err(Error::malformed(
            "peer metadata",
            "expected one EntityDescriptor, got an EntitiesDescriptor",
        )),
    }
}

/// Whether `xml`, a document already verified (by the MDQ client, which checked that it
/// answers for the peer), has a bare EntityDescriptor as its root: one entity per file, as the
/// LocalDynamic layout holds. Reads up to the root's start tag; the signature is not verified
/// again (see [`accept_peer`] for a document nobody has checked).
pub fn root_is_entity(xml: &[u8]) -> Result<(), Error> {
    let not_bare = || {
        Error::malformed(
            "peer metadata",
            "expected one EntityDescriptor, got an EntitiesDescriptor",
        )
    };
    let mut r = saml_core::xml::Reader::new(xml, saml_core::xml::Limits::default())?;
    while r.advance()? {
        if let Some(saml_core::xml::Event::Start(s)) = r.current() {
            return if s.is(saml_metadata::ns::MD_NS, "EntityDescriptor") {
                Ok(())
            } else {
                Err(not_bare())
            };
        }
    }
    Err(not_bare())
}

/// Where integrated metadata goes.
pub trait IntegrationTarget {
    /// Stores `xml` (already accepted with [`accept_peer`]) for `entity_id`, with the URL it
    /// came from; replaces what DAME integrated before. A `<sha1>.xml` without its `.xml.loc`
    /// (the operator's own) is refused as [`Refusal::StaticallyConfigured`] and left unchanged.
    fn integrate(&mut self, entity_id: &str, xml: &[u8], source: &str) -> Result<(), Error>;
    /// Removes what DAME integrated for `entity_id` (rollback): both files, only when the
    /// `.xml.loc` marker is there (an operator's `<sha1>.xml` without it stays); whether
    /// anything was removed.
    fn remove(&mut self, entity_id: &str) -> Result<bool, Error>;
    /// The source URL of every integrated entity, by file stem (the SHA-1 hex): what a restart
    /// re-fetches.
    fn sources(&self) -> Result<BTreeMap<String, String>, Error>;
    /// Whether the entity whose entityID has SHA-1 `stem` is integrated now (one of
    /// [`IntegrationTarget::sources`]). The default lists them all; a target answers for one
    /// entry at the cost of one ([`crate::agent::Agent::refresh_due_listed`] asks under the
    /// agent's lock about the entries a listing made without it found due, about as many as
    /// the fetches one call starts, and those the agent knows but the listing lacks: a target
    /// holding many entries implements it for one).
    fn holds(&self, stem: &str) -> Result<bool, Error> {
        Ok(self.sources()?.contains_key(stem))
    }
    /// The document DAME integrated for the entity whose entityID has SHA-1 `stem`, when it
    /// is there and at most `max` bytes; `None` otherwise, and by default (a target that
    /// cannot tell). [`crate::agent::Agent`] reads it when the broker says it no longer
    /// publishes the peer, to remove a copy that has expired.
    fn document(&self, stem: &str, max: usize) -> Result<Option<Vec<u8>>, Error> {
        let _ = (stem, max);
        Ok(None)
    }
}

/// An in-memory target: file name to content, as the directory would hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTarget {
    /// `<sha1>.xml` and `<sha1>.xml.loc` files.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The source URL must be https, or http to a loopback address (a broker on the same host, or
/// a test), and one line.
fn check_source(source: &str) -> Result<(), Error> {
    let loopback = crate::registry::is_loopback_http(source);
    if !(source.starts_with("https://") || loopback) || source.chars().any(char::is_whitespace) {
        return Err(Error::malformed(
            "source URL",
            format!("{source:?} is not an https URL"),
        ));
    }
    Ok(())
}

impl IntegrationTarget for MemoryTarget {
    fn integrate(&mut self, entity_id: &str, xml: &[u8], source: &str) -> Result<(), Error> {
        check_source(source)?;
        if self.files.contains_key(&metadata_file(entity_id))
            && !self.files.contains_key(&loc_file(entity_id))
        {
            return Err(Refusal::StaticallyConfigured.into());
        }
        self.files.insert(metadata_file(entity_id), xml.to_vec());
        self.files
            .insert(loc_file(entity_id), format!("{source}\n").into_bytes());
        Ok(())
    }

    fn remove(&mut self, entity_id: &str) -> Result<bool, Error> {
        // Not DAME's without the marker (M4).
        if self.files.remove(&loc_file(entity_id)).is_none() {
            return Ok(false);
        }
        self.files.remove(&metadata_file(entity_id));
        Ok(true)
    }

    fn sources(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .files
            .iter()
            .filter_map(|(name, body)| {
                let stem = name.strip_suffix(".xml.loc")?;
                let url = std::str::from_utf8(body).ok()?.trim().to_owned();
                Some((stem.to_owned(), url))
            })
            .collect())
    }

    fn document(&self, stem: &str, max: usize) -> Result<Option<Vec<u8>>, Error> {
        if !self.files.contains_key(&format!("{stem}.xml.loc")) {
            return Ok(None);
        }
        Ok(self
            .files
            .get(&format!("{stem}.xml"))
            .filter(|d| d.len() <= max)
            .cloned())
    }
}

#[cfg(feature = "fs")]
pub use fs::{LocalDynamicDir, committed_sources, is_committed, write_new_then_rename};

#[cfg(feature = "fs")]
mod fs {
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{IntegrationTarget, check_source, loc_file, metadata_file};
    use crate::error::{Error, Refusal};

    /// The second line of a `.xml.loc` written before its `.xml`: the entry is not committed
    /// until the `.xml` is in place and the `.xml.loc` is rewritten without it.
    const PENDING: &str = "pending";
    /// The suffix a `.xml.loc` is renamed to while its entry is removed.
    const REMOVING: &str = ".removing";
    /// Largest `.xml.loc` read (a URL and a line).
    const MAX_LOC: u64 = 4096;

    /// A `LocalDynamic` source directory (Shibboleth SP's `<MetadataProvider
    /// type="LocalDynamic" sourceDirectory="...">`): files are written to a temporary name and
    /// renamed, so a reader never sees half a document.
    ///
    /// Crash safety (agent review L1): a new peer's `.xml.loc` is written first marked
    /// `pending`, then the `.xml`, then the `.xml.loc` without the mark; a removal renames the
    /// `.xml.loc` to `.xml.loc.removing` first, then deletes the `.xml`, then that tombstone.
    /// [`LocalDynamicDir::open`] finishes what a crash or a failed write interrupted: a pending
    /// entry is removed (its exchange never completed, so a restart must not integrate it), a
    /// removal is completed, and temporary files are deleted ([`LocalDynamicDir::recovered`]).
    /// The directory is synced after every rename.
    #[derive(Debug, Clone)]
    pub struct LocalDynamicDir {
        dir: PathBuf,
        recovered: Vec<String>,
    }

    /// Writes `data` to `dir/name` so that a reader sees the old file or the new one, never
    /// half: to `.<name>.tmp<pid>-<n>`, a name no other writer of this process uses, created
    /// new (never through a link left there), synced when `sync`, then renamed over `name`.
    /// The temporary file is removed on error. The directory itself is not synced.
    pub fn write_new_then_rename(
        dir: &Path,
        name: &str,
        data: &[u8],
        sync: bool,
    ) -> std::io::Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp{}-{seq}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(data)?;
                if sync { f.sync_all() } else { Ok(()) }
            })
            .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn io(what: &Path, e: std::io::Error) -> Error {
        Error::malformed("integration directory", format!("{}: {e}", what.display()))
    }

    fn is_stem(s: &str) -> bool {
        s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Removes `p`; a missing file is not an error.
    fn remove_if_there(p: &Path) -> Result<(), Error> {
        match std::fs::remove_file(p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(p, e)),
        }
    }

    fn exists(p: &Path) -> Result<bool, Error> {
        std::fs::symlink_metadata(p).map(|_| true).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(false)
            } else {
                Err(io(p, e))
            }
        })
    }

    /// A `.xml.loc`'s lines when it is a regular file of at most [`MAX_LOC`] bytes in UTF-8
    /// (anything else is not one the agent wrote, and is not read).
    fn read_loc(p: &Path) -> Option<(String, bool)> {
        let m = std::fs::symlink_metadata(p).ok()?;
        if !m.is_file() || m.len() > MAX_LOC {
            return None;
        }
        let body = String::from_utf8(std::fs::read(p).ok()?).ok()?;
        let mut lines = body.lines();
        let url = lines.next()?.trim().to_owned();
        let pending = lines.any(|l| l.trim() == PENDING);
        Some((url, pending))
    }

    /// Whether `dir` holds a committed DAME entry for the entity whose entityID has SHA-1
    /// `stem` (40 lower-case hex digits): its `.xml.loc` is a regular file the agent wrote and
    /// no longer marked pending. An operator's `<sha1>.xml` without one, an entry still being
    /// written or one being removed is not.
    #[must_use]
    pub fn is_committed(dir: &Path, stem: &str) -> bool {
        stem.len() == 40
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && read_loc(&dir.join(format!("{stem}.xml.loc"))).is_some_and(|(_, pending)| !pending)
    }

    impl LocalDynamicDir {
        /// The directory `dir` (created when missing), with what an interrupted integration or
        /// removal left behind cleaned up (see the type's docs).
        pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
            let dir = dir.into();
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let mut d = LocalDynamicDir {
                dir,
                recovered: Vec::new(),
            };
            d.recover()?;
            Ok(d)
        }

        /// The directory.
        #[must_use]
        pub fn path(&self) -> &Path {
            &self.dir
        }

        /// What [`LocalDynamicDir::open`] cleaned up, one line per entry (for the log).
        #[must_use]
        pub fn recovered(&self) -> &[String] {
            &self.recovered
        }

        fn recover(&mut self) -> Result<(), Error> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
                let entry = entry.map_err(|e| io(&self.dir, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            let mut changed = false;
            for name in names {
                let path = self.dir.join(&name);
                // `.<sha1>.xml.tmp…` and `.<sha1>.xml.loc.tmp…`: a write that never finished.
                if let Some(rest) = name.strip_prefix('.')
                    && let Some((target, _)) = rest.split_once(".tmp")
                    && (target.strip_suffix(".xml").is_some_and(is_stem)
                        || target.strip_suffix(".xml.loc").is_some_and(is_stem))
                {
                    remove_if_there(&path)?;
                    self.recovered
                        .push(format!("{name}: unfinished write deleted"));
                    changed = true;
                } else if let Some(stem) = name.strip_suffix(".xml.loc.removing")
                    && is_stem(stem)
                {
                    remove_if_there(&self.dir.join(format!("{stem}.xml")))?;
                    remove_if_there(&path)?;
                    self.recovered.push(format!("{stem}: removal completed"));
                    changed = true;
                } else if let Some(stem) = name.strip_suffix(".xml.loc")
                    && is_stem(stem)
                    && read_loc(&path).is_some_and(|(_, pending)| pending)
                {
                    remove_if_there(&self.dir.join(format!("{stem}.xml")))?;
                    remove_if_there(&path)?;
                    self.recovered
                        .push(format!("{stem}: unfinished integration removed"));
                    changed = true;
                }
            }
            if changed {
                self.sync_dir()?;
            }
            Ok(())
        }

        /// Makes the renames and removals in the directory durable.
        fn sync_dir(&self) -> Result<(), Error> {
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(&self.dir, e))
        }

        fn write_atomically(&self, name: &str, data: &[u8]) -> Result<(), Error> {
            write_new_then_rename(&self.dir, name, data, true)
                .map_err(|e| io(&self.dir.join(name), e))?;
            self.sync_dir()
        }
    }

    impl IntegrationTarget for LocalDynamicDir {
        fn integrate(&mut self, entity_id: &str, xml: &[u8], source: &str) -> Result<(), Error> {
            check_source(source)?;
            // An operator's file (no marker) is not DAME's to replace (M4).
            let loc = self.dir.join(loc_file(entity_id));
            let xml_path = self.dir.join(metadata_file(entity_id));
            let had = exists(&loc)?;
            if exists(&xml_path)? && !had {
                return Err(Refusal::StaticallyConfigured.into());
            }
            // A new peer is pending until its `.xml` is in place (L1): a crash or a failed
            // write leaves an entry the next start removes, never one it integrates.
            if !had {
                self.write_atomically(
                    &loc_file(entity_id),
                    format!("{source}\n{PENDING}\n").as_bytes(),
                )?;
            }
            let committed = self
                .write_atomically(&metadata_file(entity_id), xml)
                .and_then(|()| {
                    self.write_atomically(&loc_file(entity_id), format!("{source}\n").as_bytes())
                });
            if let Err(e) = committed {
                if !had {
                    let _ = remove_if_there(&xml_path);
                    let _ = remove_if_there(&loc);
                }
                return Err(e);
            }
            Ok(())
        }

        fn remove(&mut self, entity_id: &str) -> Result<bool, Error> {
            // Only what DAME wrote: without the `.xml.loc` marker the `.xml` is the
            // operator's (M4) and stays.
            let loc = self.dir.join(loc_file(entity_id));
            if !exists(&loc)? {
                return Ok(false);
            }
            // The marker becomes a tombstone first: from here a restart completes the
            // removal instead of re-fetching the entity (L1).
            let tomb = self.dir.join(format!("{}{REMOVING}", loc_file(entity_id)));
            std::fs::rename(&loc, &tomb).map_err(|e| io(&loc, e))?;
            self.sync_dir()?;
            remove_if_there(&self.dir.join(metadata_file(entity_id)))?;
            remove_if_there(&tomb)?;
            self.sync_dir()?;
            Ok(true)
        }

        fn sources(&self) -> Result<BTreeMap<String, String>, Error> {
            committed_sources(&self.dir)
        }

        fn holds(&self, stem: &str) -> Result<bool, Error> {
            Ok(is_committed(&self.dir, stem))
        }

        fn document(&self, stem: &str, max: usize) -> Result<Option<Vec<u8>>, Error> {
            use std::io::Read as _;
            if !is_committed(&self.dir, stem) {
                return Ok(None);
            }
            let p = self.dir.join(format!("{stem}.xml"));
            // A regular file of DAME's, not followed through a link, read up to `max`.
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_file() && m.len() <= max as u64 => {}
                _ => return Ok(None),
            }
            let mut out = Vec::new();
            let f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
            f.take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| io(&p, e))?;
            Ok((out.len() <= max).then_some(out))
        }
    }

    /// [`IntegrationTarget::sources`] of the LocalDynamic directory `dir`, read without
    /// opening it (nothing is recovered or changed): what a service lists outside the agent's
    /// lock for [`crate::agent::Agent::refresh_due_listed`] (a directory of 10,000 peers takes
    /// about 100 ms: BENCHMARKS.md, the agent's refresh).
    pub fn committed_sources(dir: &Path) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            // An entry that cannot be read is skipped, not the start aborted (L3).
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".xml.loc") else {
                continue;
            };
            if !is_stem(stem) {
                continue;
            }
            if let Some((url, false)) = read_loc(&entry.path()) {
                out.insert(stem.to_owned(), url);
            }
        }
        Ok(out)
    }
}
