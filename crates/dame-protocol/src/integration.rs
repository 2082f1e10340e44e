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
}

#[cfg(feature = "fs")]
pub use fs::LocalDynamicDir;

#[cfg(feature = "fs")]
mod fs {
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    use super::{IntegrationTarget, check_source, loc_file, metadata_file};
    use crate::error::{Error, Refusal};

    /// A `LocalDynamic` source directory (Shibboleth SP's `<MetadataProvider
    /// type="LocalDynamic" sourceDirectory="...">`): files are written to a temporary name and
    /// renamed, so a reader never sees half a document.
    #[derive(Debug, Clone)]
    pub struct LocalDynamicDir {
        dir: PathBuf,
    }

    fn io(what: &Path, e: std::io::Error) -> Error {
        Error::malformed("integration directory", format!("{}: {e}", what.display()))
    }

    impl LocalDynamicDir {
        /// The directory `dir` (created when missing).
        pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
            let dir = dir.into();
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            Ok(LocalDynamicDir { dir })
        }

        /// The directory.
        #[must_use]
        pub fn path(&self) -> &Path {
            &self.dir
        }

        fn write_atomically(&self, name: &str, data: &[u8]) -> Result<(), Error> {
            let path = self.dir.join(name);
            let tmp = self.dir.join(format!(".{name}.tmp{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            f.write_all(data)
                .and_then(|()| f.sync_all())
                .map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
        }
    }

    impl IntegrationTarget for LocalDynamicDir {
        fn integrate(&mut self, entity_id: &str, xml: &[u8], source: &str) -> Result<(), Error> {
            check_source(source)?;
            // An operator's file (no marker) is not DAME's to replace (M4).
            let loc = self.dir.join(loc_file(entity_id));
            let xml_path = self.dir.join(metadata_file(entity_id));
            let exists = |p: &Path| {
                std::fs::symlink_metadata(p).map(|_| true).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(false)
                    } else {
                        Err(io(p, e))
                    }
                })
            };
            if exists(&xml_path)? && !exists(&loc)? {
                return Err(Refusal::StaticallyConfigured.into());
            }
            // The source first: a crash between the two leaves a re-fetchable entry.
            self.write_atomically(&loc_file(entity_id), format!("{source}\n").as_bytes())?;
            self.write_atomically(&metadata_file(entity_id), xml)
        }

        fn remove(&mut self, entity_id: &str) -> Result<bool, Error> {
            // Only what DAME wrote: without the `.xml.loc` marker the `.xml` is the
            // operator's (M4) and stays.
            let loc = self.dir.join(loc_file(entity_id));
            match std::fs::symlink_metadata(&loc) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io(&loc, e)),
            }
            for name in [metadata_file(entity_id), loc_file(entity_id)] {
                let p = self.dir.join(&name);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&p, e)),
                }
            }
            Ok(true)
        }

        fn sources(&self) -> Result<BTreeMap<String, String>, Error> {
            let mut out = BTreeMap::new();
            for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
                let entry = entry.map_err(|e| io(&self.dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".xml.loc") else {
                    continue;
                };
                if stem.len() != 40 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                let body = std::fs::read(entry.path()).map_err(|e| io(&entry.path(), e))?;
                if body.len() > 4096 {
                    continue;
                }
                if let Ok(url) = String::from_utf8(body) {
                    out.insert(stem.to_owned(), url.trim().to_owned());
                }
            }
            Ok(out)
        }
    }
}
