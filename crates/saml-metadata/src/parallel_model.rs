//! The eager model of a large aggregate built on several threads (issue 15: `load` of 10,000
//! entities spent two thirds of its time building the model on one core after verification).
//!
//! While the root signature streams, the root's child elements (SAML Metadata §2.3.1: the
//! `md:EntitiesDescriptor`'s `ds:Signature`, `md:Extensions`, entities and groups) are recorded as
//! byte ranges: offsets only, at most one per [`MIN_CHILD_BYTES`] of the document (more, and the
//! model is built on one thread as before), so an unsigned document can make this hold little.
//! Once the signature is good, and only when everything between those children is white space
//! (a comment or text between them sends the document to the one-thread path, which reads it and
//! reports what it finds), the root's attributes are read from its start tag and the children
//! are parsed from their verified ranges in contiguous runs of about equal size (eight per
//! thread, each taken in document order by whichever thread is free) and put together in
//! document order. The first error in document order is the one
//! reported, as on one thread; the model is the same (tested against the one-thread path).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use saml_core::dsig::Verified;
use saml_core::xml::{Event, NsDecl, effective_scope};

use crate::error::Error;
use crate::model::Metadata;
use crate::parse::{Cursor, GroupChild, MD_NS, entities_attributes, entities_child, root};

/// A child of the root takes at least this many bytes on average, or the children are not
/// recorded (the smallest useful `md:EntityDescriptor`, with an entityID and one role with one
/// endpoint, is well over this).
pub(crate) const MIN_CHILD_BYTES: usize = 128;

/// Runs of children per thread (see [`build`]).
const RUNS_PER_THREAD: usize = 8;

/// The root's children seen while the root signature streams.
#[derive(Debug)]
pub(crate) struct RootChildren {
    children: Vec<Range<usize>>,
    open: Option<usize>,
    root_end_tag: Option<usize>,
    max: usize,
    overflow: bool,
}

impl RootChildren {
    /// Ready for a document of `doc_len` bytes.
    pub(crate) fn new(doc_len: usize) -> Self {
        RootChildren {
            children: Vec::new(),
            open: None,
            root_end_tag: None,
            max: doc_len / MIN_CHILD_BYTES,
            overflow: false,
        }
    }

    /// Records one event of the verification pass (depths are the document's: the root is 1).
    pub(crate) fn observe(&mut self, ev: &Event<'_, '_>) {
        match ev {
            Event::Start(s) if s.depth == 2 && !self.overflow => {
                if self.children.len() >= self.max {
                    self.overflow = true;
                    self.children = Vec::new();
                } else {
                    self.open = Some(s.span.start);
                }
            }
            Event::End(e) if e.depth == 2 => {
                if let Some(start) = self.open.take() {
                    self.children.push(start..e.span.end);
                }
            }
            Event::End(e) if e.depth == 1 => self.root_end_tag = Some(e.span.start),
            _ => {}
        }
    }
}

/// Builds the model of the verified aggregate from the recorded children on `threads` threads;
/// `None` when this path does not apply (the root is no `md:EntitiesDescriptor`, too many
/// children, or something other than white space between them): the caller then reads the
/// document on one thread.
pub(crate) fn build(
    verified: &Verified<'_>,
    seen: RootChildren,
    threads: usize,
) -> Result<Option<Metadata>, Error> {
    let Some(root_end_tag) = seen.root_end_tag else {
        return Ok(None);
    };
    if seen.overflow || seen.open.is_some() {
        return Ok(None);
    }
    let mut events = verified.events()?;
    if !events.advance()? {
        return Ok(None);
    }
    let (tag_end, scope) = match events.current() {
        Some(Event::Start(s)) if s.is(MD_NS, "EntitiesDescriptor") && !s.empty => {
            (s.span.end, effective_scope(s.scope))
        }
        _ => return Ok(None),
    };
    let xml = verified.signed_xml();
    let base = verified.signed_range().start;
    let blank = |r: Range<usize>| {
        r.start <= r.end
            && xml
                .as_bytes()
                .get(r.start - base..r.end - base)
                .is_some_and(|gap| {
                    gap.iter()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                })
    };
    let signature = verified.signature_range();
    let mut at = signature.end;
    if !blank(tag_end..signature.start) {
        return Ok(None);
    }
    for child in &seen.children {
        if !blank(at..child.start) {
            return Ok(None);
        }
        at = child.end;
    }
    if !blank(at..root_end_tag) {
        return Ok(None);
    }

    let mut cursor = Cursor::verified(verified)?;
    let root = root(&mut cursor)?;
    let mut group = entities_attributes(&root)?;
    // More runs than threads, taken in document order by whichever thread is free: a thread
    // whose allocator starts cold (a new malloc arena faults in every page) takes fewer.
    let runs = split_runs(&seen.children, threads * RUNS_PER_THREAD);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut done: Vec<(usize, Result<Vec<GroupChild>, Error>)> = Vec::new();
        // After a failure no later run is started; every earlier one was already taken, so
        // the first error in document order is among the results.
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(run) = runs.get(i) else { break };
            let parsed: Result<Vec<GroupChild>, Error> = run
                .iter()
                .map(|r| child(verified, r.clone(), &scope, root.local))
                .collect();
            if parsed.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            done.push((i, parsed));
        }
        done
    };
    let mut slots: Vec<Option<Result<Vec<GroupChild>, Error>>> =
        std::iter::repeat_with(|| None).take(runs.len()).collect();
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = vec![Ok(work())];
        all.extend(helpers.into_iter().map(|h| h.join()));
        for done in all {
            match done {
                Ok(done) => {
                    for (i, r) in done {
                        if let Some(slot) = slots.get_mut(i) {
                            *slot = Some(r);
                        }
                    }
                }
                // A panicking thread leaves its runs empty: reported below as a failure.
                Err(_) => failed.store(true, Ordering::Relaxed),
            }
        }
    });
    for slot in slots {
        let Some(run) = slot else {
            return Err(Error::Invalid {
                element: "EntitiesDescriptor".into(),
                offset: 0,
                message: "a model-building thread failed".into(),
            });
        };
        for c in run? {
            match c {
                GroupChild::Signature => {}
                GroupChild::Extensions(x) => group.extensions = *x,
                GroupChild::Child(c) => group.children.push(c),
            }
        }
    }
    Ok(Some(Metadata::Entities(Box::new(group))))
}

/// One child of the root, read from its verified bytes.
fn child(
    verified: &Verified<'_>,
    range: Range<usize>,
    scope: &[NsDecl<'_>],
    parent: &str,
) -> Result<GroupChild, Error> {
    let offset = range.start;
    let mut c = Cursor::verified_fragment(verified, range, scope)?;
    let ch = c.next_child(parent)?.ok_or_else(|| Error::Invalid {
        element: parent.to_owned(),
        offset,
        message: "no element where one was recorded".into(),
    })?;
    entities_child(&mut c, &ch)
}

/// `children` cut into at most `threads` contiguous runs of about equal byte size (`threads`
/// here is just the number of runs wanted).
fn split_runs(children: &[Range<usize>], threads: usize) -> Vec<&[Range<usize>]> {
    let total: usize = children.iter().map(|r| r.len()).sum();
    let per = total / threads.max(1) + 1;
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut size) = (0, 0);
    for (i, r) in children.iter().enumerate() {
        size += r.len();
        if size >= per && runs.len() + 1 < threads {
            runs.push(&children[start..=i]);
            start = i + 1;
            size = 0;
        }
    }
    runs.push(&children[start..]);
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_every_child_once_in_order() {
        let children: Vec<Range<usize>> = (0..10).map(|i| i * 100..i * 100 + 90).collect();
        for threads in 1..6 {
            let runs = split_runs(&children, threads);
            assert!(runs.len() <= threads.max(1));
            let joined: Vec<Range<usize>> = runs.concat();
            assert_eq!(joined, children, "{threads} threads");
        }
        assert_eq!(split_runs(&[], 2).concat(), Vec::<Range<usize>>::new());
    }

    /// The threaded path runs for an aggregate whose children are separated by white space
    /// (tests/parallel_model.rs compares its model with the one-thread path's) and steps aside
    /// for a comment between them.
    #[test]
    fn applies_to_blank_separated_children_only() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys, VerifyOptions};

        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = SigningKey::new(
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
            None,
        )
        .unwrap();
        let mut keys = TrustedKeys::new();
        keys.add_public_key(key.public_key().unwrap(), "fed")
            .unwrap();
        let entity = |i: usize| {
            format!(
                r#"<EntityDescriptor entityID="https://sp{i}.example.org/"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp{i}.example.org/acs" index="0"/></SPSSODescriptor></EntityDescriptor>"#
            )
        };
        for (sep, applies) in [("\n ", true), ("<!-- c -->", false)] {
            let body: Vec<String> = (0..8).map(entity).collect();
            let doc = format!(
                r#"<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">{}</EntitiesDescriptor>"#,
                body.join(sep)
            );
            let doc = dsig::sign(doc.as_bytes(), &key, &SignOptions::default()).unwrap();
            let mut seen = RootChildren::new(doc.len());
            let v = dsig::verify_observed(&doc, &keys, &VerifyOptions::metadata(), &mut |ev| {
                seen.observe(ev)
            })
            .unwrap();
            assert_eq!(seen.children.len(), 8);
            let md = build(&v, seen, 2).unwrap();
            assert_eq!(md.is_some(), applies, "separator {sep:?}");
            if let Some(Metadata::Entities(g)) = md {
                assert_eq!(g.entities().len(), 8);
            }
            // More children than one per MIN_CHILD_BYTES: nothing kept, one thread.
            let mut few = RootChildren::new(MIN_CHILD_BYTES * 4);
            let v = dsig::verify_observed(&doc, &keys, &VerifyOptions::metadata(), &mut |ev| {
                few.observe(ev)
            })
            .unwrap();
            assert!(few.overflow && few.children.is_empty());
            assert!(build(&v, few, 2).unwrap().is_none());
        }
    }
}
