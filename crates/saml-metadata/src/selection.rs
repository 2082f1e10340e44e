//! A selection of a verified aggregate written as a new signed aggregate, straight to a writer
//! (what pyFF's `select`, `finalize`, `sign` and `publish` do in a pipeline, and an MDQ or
//! federation operator's "the IdPs of this category, re-signed by us").
//!
//! The chosen entities are copied from the verified bytes, each as [`crate::split`] cuts it
//! (its start tag with the namespace declarations it inherited, every `ds:Signature` in it
//! left out: the new signer's key is the one to trust), under a new `md:EntitiesDescriptor`
//! (SAML Metadata §2.3.1) with a `Name`, a `validUntil` and an `ID` made from them and the
//! entityIDs (as [`EntitiesDescriptor::combine`](crate::model::EntitiesDescriptor::combine)
//! makes it). The document is signed while it is written ([`saml_core::dsig::StreamingSigner`]): a first pass
//! hashes the entities' canonical form, a second writes them after the signature. Neither the
//! selection's model nor its XML is ever whole in memory: the peak is the aggregate being read
//! and one entity (BENCHMARKS.md, issue 15).
//!
//! Entities are modelled one at a time to be filtered, on up to four threads unless
//! [`SelectOptions::single_threaded`], and not kept.

use std::io::Write;
use std::time::SystemTime;

use saml_core::SignatureError;
use saml_core::dsig::{SignOptions, SigningKey, StreamingSigner};
use saml_core::time::format_datetime_exact;
use saml_core::xml::escape_attr;

use crate::builder::salted_id;
use crate::error::Error;
use crate::filter::Filter;
use crate::lazy::LazyAggregate;
use crate::nested_signatures::RefusedEntity;
use crate::ns::MD_NS;

/// Entities modelled per thread below which the filter runs on the calling thread only.
const PER_THREAD_MIN: usize = 64;

/// How to write a selection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SelectOptions {
    /// The new aggregate's `Name`.
    pub name: String,
    /// Its `validUntil` (none when `None`; a relying party's policy usually wants one).
    pub valid_until: Option<SystemTime>,
    /// How to sign it (over the root, the signature first: the defaults).
    pub sign: SignOptions,
    /// Filter the entities on the calling thread only.
    pub single_threaded: bool,
}

impl SelectOptions {
    /// A selection named `name`, valid until `valid_until`, signed with the default options.
    #[must_use]
    pub fn new(name: &str, valid_until: Option<SystemTime>) -> Self {
        SelectOptions {
            name: name.to_owned(),
            valid_until,
            sign: SignOptions::default(),
            single_threaded: false,
        }
    }
}

/// What [`write_selection_report`] wrote, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selected {
    /// The entityIDs written, in document order.
    pub entities: Vec<String>,
    /// The entities left out because their model is invalid (`invalid_model`), in document
    /// order: they cannot be judged by the filter, and `load` leaves them out too.
    pub refused: Vec<RefusedEntity>,
}

/// Writes the entities of `agg` that `filter` lets through, in document order, as a new
/// aggregate signed with `key`, to `out`; returns their entityIDs (see
/// [`write_selection_report`], which also names the entities left out).
pub fn write_selection<W: Write>(
    agg: &LazyAggregate<'_>,
    filter: &Filter,
    key: &SigningKey,
    opts: &SelectOptions,
    out: W,
) -> Result<Vec<String>, Error> {
    write_selection_report(agg, filter, key, opts, out).map(|s| s.entities)
}

/// Writes the entities of `agg` that `filter` lets through, in document order, as a new
/// aggregate signed with `key`, to `out`. An entity whose model is invalid is left out and
/// named in [`Selected::refused`], as `load` leaves it out (review W6: one such entity failed
/// every selection, a filter of all entities included). Nothing is written unless every
/// entity chosen was modelled and the selection signed: an empty selection (an
/// `md:EntitiesDescriptor` needs a child) is an error before the first byte. `out` is written
/// in pieces of about an entity; wrap a file in a `BufWriter`. A write error stops with
/// [`Error::Output`], `out` holding a partial document: write to a temporary file and rename
/// it.
pub fn write_selection_report<W: Write>(
    agg: &LazyAggregate<'_>,
    filter: &Filter,
    key: &SigningKey,
    opts: &SelectOptions,
    mut out: W,
) -> Result<Selected, Error> {
    let (chosen, refused) = matching(agg, filter, opts.single_threaded)?;
    if chosen.is_empty() {
        return Err(Error::Unwritable {
            element: "EntitiesDescriptor".into(),
            message: "no entity matches: an EntitiesDescriptor needs at least one entity \
                      (SAML Metadata §2.3.1)"
                .into(),
        });
    }
    let ids: Vec<String> = chosen
        .iter()
        .filter_map(|&i| agg.entity_id_at(i).map(str::to_owned))
        .collect();
    // First pass: the digest of the canonical content. The root's ID is derived from the
    // selection; an entity holding it already (a member that guessed it: review W3) gets the
    // selection another.
    let mut piece = String::new();
    let mut salt = 0;
    let (start_tag, signature) = loop {
        let id = salted_id(
            &opts.name,
            opts.valid_until,
            ids.iter().map(String::as_str),
            salt,
        );
        let mut start_tag = format!("<md:EntitiesDescriptor xmlns:md=\"{MD_NS}\" ID=\"{id}\"");
        if let Some(t) = opts.valid_until {
            start_tag.push_str(&format!(" validUntil=\"{}\"", format_datetime_exact(t)));
        }
        start_tag.push_str(&format!(" Name=\"{}\">", escape_attr(&opts.name)));
        let mut signer = StreamingSigner::new(&start_tag, key, &opts.sign)?;
        let streamed = chosen.iter().try_for_each(|&i| {
            piece.clear();
            piece.push('\n');
            agg.standalone(i, &mut piece, None)?;
            signer.content(piece.as_bytes()).map_err(Error::from)
        });
        match streamed {
            Err(Error::Core(saml_core::Error::Signature(SignatureError::DuplicateId(dup))))
                if dup == id && salt < 3 =>
            {
                salt += 1;
                continue;
            }
            other => other?,
        }
        signer.content(b"\n")?;
        break (start_tag, signer.finish()?);
    };

    // Second pass: the same pieces, after the signature.
    let mut put = |b: &[u8]| out.write_all(b).map_err(Error::Output);
    put(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
    put(start_tag.as_bytes())?;
    put(signature.as_bytes())?;
    for &i in &chosen {
        piece.clear();
        piece.push('\n');
        agg.standalone(i, &mut piece, None)?;
        put(piece.as_bytes())?;
    }
    put(b"\n</md:EntitiesDescriptor>\n")?;
    out.flush().map_err(Error::Output)?;
    Ok(Selected {
        entities: ids,
        refused,
    })
}

/// The indexes of the entities `filter` lets through, in document order, and the entities
/// left out because their model is invalid ([`Error::Invalid`]; any other error is the error).
fn matching(
    agg: &LazyAggregate<'_>,
    filter: &Filter,
    single: bool,
) -> Result<(Vec<u32>, Vec<RefusedEntity>), Error> {
    let n = agg.len();
    let threads = if single {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get().min(4))
            .min(n / PER_THREAD_MIN)
            .max(1)
    };
    type Picked = (Vec<u32>, Vec<RefusedEntity>);
    let pick = |range: std::ops::Range<usize>| -> Result<Picked, Error> {
        let (mut v, mut refused) = (Vec::new(), Vec::new());
        let mut memo = crate::lazy::GroupMemo::default();
        for i in range {
            let i = i as u32;
            // The groups' Extensions are modelled only for a filter that reads them.
            let groups = if filter.uses_groups() {
                agg.groups_of(i, &mut memo)?
            } else {
                Vec::new()
            };
            let groups: Vec<&crate::ext::Extensions> = groups.iter().map(|g| &**g).collect();
            let model = match agg.model(i) {
                Ok(m) => m,
                Err(e @ Error::Invalid { .. }) => {
                    refused.push(RefusedEntity::invalid_model(
                        agg.entity_id_at(i).unwrap_or_default().to_owned(),
                        agg.offset_at(i).unwrap_or_default(),
                        e.to_string(),
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if filter.matches_in(&model, &groups) {
                v.push(i);
            }
        }
        Ok((v, refused))
    };
    if threads == 1 {
        return pick(0..n);
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|sc| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                sc.spawn(move || pick(range))
            })
            .collect();
        let (mut all, mut refused) = (Vec::new(), Vec::new());
        for p in parts {
            // A panic can only come from the caller's predicate: it goes on as on one thread.
            let (v, r) = p.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
            all.extend(v);
            refused.extend(r);
        }
        Ok((all, refused))
    })
}
