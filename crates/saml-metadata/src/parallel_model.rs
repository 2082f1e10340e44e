//! The eager model of a large aggregate built on several threads, while its signature is
//! checked (issue 15: `load` of 10,000 entities spent two thirds of its time building the model
//! on one core after verification, then half of it on two cores after verification).
//!
//! While the root signature streams, the root's child elements (SAML Metadata §2.3.1: the
//! `md:EntitiesDescriptor`'s `ds:Signature`, `md:Extensions`, entities and groups) are recorded as
//! byte ranges: offsets only, at most one per [`MIN_CHILD_BYTES`] of the document (more, and the
//! model is built on one thread after verification, as before), so an unsigned document can
//! make this hold little. Recorded children are handed, in contiguous runs of about equal size
//! (eight per thread, each taken in document order by whichever thread is free), to threads
//! that parse them from their bytes (checked as a document's are, [`Reader::new_fragment`]) in
//! the root's namespace scope, while the verification goes on.
//!
//! Nothing parsed this way is used unless the root signature verified: on any verification
//! error the threads stop after the run in hand and their work is dropped. After it verified,
//! the parsed children are used only when (as checked on the verified content) everything
//! between them is white space (a comment or text between them sends the document to the
//! one-thread path, which reads it and reports what it finds), they lie inside the signed root
//! after its `ds:Signature` (so every byte read was verified), and the namespace scope they
//! were read in is the verified root's. The root's attributes are read from its verified start
//! tag, the children put together in document order. The first error in document order is the
//! one reported, as on one thread; the model is the same (tested against the one-thread path).
//! A document whose signature fails costs at most its model's work before the error, as a
//! good one does.
//!
//! [`verify_then_build_releasing`] (`load::load_owned`) records the same children under the
//! same checks but parses them only after the signature verified, from the last to the first,
//! cutting the document it owns behind each batch: the model is built in about its own memory
//! instead of the document's plus its own.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

use saml_core::dsig::Verified;
use saml_core::xml::cursor::{CopyPool, Cursor};
use saml_core::xml::{Event, Limits, NsDecl, Reader, effective_scope};

use crate::error::Error;
use crate::load::Policy;
use crate::model::{EntitiesDescriptor, Metadata};
use crate::nested_signatures::{self, RefusedEntity};
use crate::parse::{GroupChild, MD_NS, entities_attributes, entities_child, root};

/// A child of the root takes at least this many bytes on average, or the children are not
/// recorded (the smallest useful `md:EntityDescriptor`, with an entityID and one role with one
/// endpoint, is well over this).
pub(crate) const MIN_CHILD_BYTES: usize = 128;

/// Runs of children per thread (see the module documentation).
const RUNS_PER_THREAD: usize = 8;

/// Children a thread takes at a time when a batch is parsed after verification
/// ([`verify_then_build_releasing`]): few enough that the threads finish a batch together.
const CHILDREN_PER_TAKE: usize = 8;

/// The root's children seen while the root signature streams, cut into runs as they come.
#[derive(Debug)]
pub(crate) struct RootChildren {
    children: Vec<Range<usize>>,
    open: Option<usize>,
    root_end_tag: Option<usize>,
    max: usize,
    overflow: bool,
    /// Children before this index were handed out in runs.
    sent: usize,
    /// Runs handed out.
    runs: usize,
    /// A run is handed out once its children span this many bytes.
    run_bytes: usize,
}

impl RootChildren {
    /// Ready for a document of `doc_len` bytes read on `threads` threads.
    pub(crate) fn new(doc_len: usize, threads: usize) -> Self {
        RootChildren {
            children: Vec::new(),
            open: None,
            root_end_tag: None,
            max: doc_len / MIN_CHILD_BYTES,
            overflow: false,
            sent: 0,
            runs: 0,
            run_bytes: doc_len / (threads.max(1) * RUNS_PER_THREAD) + 1,
        }
    }

    /// Records one event of the verification pass (depths are the document's: the root is 1);
    /// returns a run of children to parse when one is complete (at the root's end tag, the
    /// last one).
    pub(crate) fn observe(&mut self, ev: &Event<'_, '_>) -> Option<Run> {
        match ev {
            Event::Start(s) if s.depth == 2 && !self.overflow => {
                if self.children.len() >= self.max {
                    self.overflow = true;
                    self.children = Vec::new();
                } else {
                    self.open = Some(s.span.start);
                }
                None
            }
            Event::End(e) if e.depth == 2 => {
                let start = self.open.take()?;
                self.children.push(start..e.span.end);
                let first = self.children.get(self.sent)?.start;
                (e.span.end - first >= self.run_bytes).then(|| self.take_run())
            }
            Event::End(e) if e.depth == 1 => {
                self.root_end_tag = Some(e.span.start);
                (!self.overflow && self.sent < self.children.len()).then(|| self.take_run())
            }
            _ => None,
        }
    }

    fn take_run(&mut self) -> Run {
        let run = self.children.get(self.sent..).unwrap_or_default().to_vec();
        self.sent = self.children.len();
        self.runs += 1;
        (self.runs - 1, run)
    }
}

/// A run of children: its index (runs are numbered in document order) and their ranges.
type Run = (usize, Vec<Range<usize>>);

/// The children of one run, parsed.
type Parsed = Result<Vec<Child>, Error>;

/// A root child as parsed, with the entities refused in it for an invalid model.
type Child = (GroupChild, Vec<RefusedEntity>);

/// Parsed runs, by run index.
type Done = Vec<(usize, Parsed)>;

/// Verifies `doc` under `policy` (as `nested_signatures::verify`) and builds the model of the
/// aggregate on `threads` threads while it does (see the module documentation). The model is
/// `None` when this path does not apply (the root is no `md:EntitiesDescriptor`, too many
/// children, or something other than white space between them): the caller then reads the
/// verified document on one thread.
pub(crate) fn verify_and_build<'a>(
    doc: &'a [u8],
    policy: &Policy,
    threads: usize,
) -> Result<(Verified<'a>, Vec<RefusedEntity>, Option<Metadata>), Error> {
    verify_and_build_with(doc, policy, threads, RootChildren::new(doc.len(), threads))
}

fn verify_and_build_with<'a>(
    doc: &'a [u8],
    policy: &Policy,
    threads: usize,
    mut seen: RootChildren,
) -> Result<(Verified<'a>, Vec<RefusedEntity>, Option<Metadata>), Error> {
    let limits = policy.verify.limits;
    let inherited: OnceLock<Vec<NsDecl<'a>>> = OnceLock::new();
    let stop = AtomicBool::new(false);
    let (tx, rx) = channel::<Run>();
    let queue = Mutex::new(rx);
    let work = || parse_runs(doc, limits, &inherited, &queue, &stop);
    let (outcome, slots) = std::thread::scope(|s| {
        let helpers: Vec<_> = (0..threads.max(1)).map(|_| s.spawn(work)).collect();
        let mut tx: Option<Sender<Run>> = Some(tx);
        let outcome = nested_signatures::verify(doc, policy, &mut |ev| {
            if let Event::Start(st) = ev
                && st.depth == 2
                && inherited.get().is_none()
            {
                // The root's scope: the first child's, less what the child declares itself.
                let own = st.scope.len().saturating_sub(st.namespace_decls.len());
                let _ = inherited.set(effective_scope(st.scope.get(..own).unwrap_or_default()));
            }
            if let Some(run) = seen.observe(ev)
                && tx.as_ref().is_some_and(|t| t.send(run).is_err())
            {
                tx = None;
            }
        });
        if outcome.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        drop(tx);
        // The verifying thread helps with what is left.
        let mut all = vec![Ok(if outcome.is_ok() { work() } else { Vec::new() })];
        all.extend(helpers.into_iter().map(|h| h.join()));
        let mut slots: Vec<Option<Parsed>> =
            std::iter::repeat_with(|| None).take(seen.runs).collect();
        let mut panicked = false;
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
                Err(_) => panicked = true,
            }
        }
        (outcome, (!panicked).then_some(slots))
    });
    let (verified, mut refused) = outcome?;
    let md = match assemble(&verified, &seen, inherited.get(), slots, &mut refused) {
        // A child that holds more than its part's allowance: whether the document may is what
        // one cursor over it says (the caller reads it on one thread), so every path agrees.
        Err(Error::Core(saml_core::Error::Limit {
            limit: saml_core::LimitExceeded::ModelCopies(_),
            ..
        })) => None,
        other => other?,
    };
    Ok((verified, refused, md))
}

/// What one thread does: takes runs in document order until there are none, or until a run
/// failed or the verification did (`stop`).
fn parse_runs<'a>(
    doc: &'a [u8],
    limits: Limits,
    inherited: &OnceLock<Vec<NsDecl<'a>>>,
    queue: &Mutex<Receiver<Run>>,
    stop: &AtomicBool,
) -> Done {
    let mut done = Done::new();
    // After a failure no later run is started; every earlier one was already taken, so the
    // first error in document order is among the results.
    while !stop.load(Ordering::Relaxed) {
        let Some((i, run)) = queue.lock().ok().and_then(|rx| rx.recv().ok()) else {
            break;
        };
        // Set before the first run was sent.
        let Some(scope) = inherited.get() else { break };
        let parsed: Parsed = run
            .into_iter()
            .map(|r| child(doc, r, scope, limits, Copies::Part))
            .collect();
        if parsed.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        done.push((i, parsed));
    }
    done
}

/// The model of the verified aggregate from the children parsed while it was verified, or
/// `None` when they cannot stand for it (see the module documentation).
fn assemble(
    verified: &Verified<'_>,
    seen: &RootChildren,
    inherited: Option<&Vec<NsDecl<'_>>>,
    slots: Option<Vec<Option<Parsed>>>,
    refused: &mut Vec<RefusedEntity>,
) -> Result<Option<Metadata>, Error> {
    let Some(mut group) = checked_root(verified, seen, inherited)? else {
        return Ok(None);
    };
    for slot in slots.ok_or_else(thread_failed)? {
        add_children(
            &mut group,
            slot.ok_or_else(thread_failed)??,
            verified.signed_range().start,
            refused,
        )?;
    }
    Ok(Some(Metadata::Entities(Box::new(group))))
}

fn thread_failed() -> Error {
    Error::Invalid {
        element: "EntitiesDescriptor".into(),
        offset: 0,
        message: "a model-building thread failed".into(),
    }
}

/// Puts parsed children of the root into its group, in the order given, and the entities
/// refused in them into `refused`; a second `md:Extensions` is refused as
/// [`crate::parse::entities`] refuses it (`at`: the root's offset).
fn add_children(
    group: &mut EntitiesDescriptor,
    children: Vec<Child>,
    at: usize,
    refused: &mut Vec<RefusedEntity>,
) -> Result<(), Error> {
    for (c, bad) in children {
        refused.extend(bad);
        match c {
            GroupChild::Signature | GroupChild::Refused => {}
            GroupChild::Extensions(x) => {
                if group.extensions.present {
                    return Err(Error::Invalid {
                        element: "EntitiesDescriptor".into(),
                        offset: at,
                        message: "a second Extensions in one md:EntitiesDescriptor".into(),
                    });
                }
                group.extensions = *x;
            }
            GroupChild::Child(c) => group.children.push(c),
        }
    }
    Ok(())
}

/// The checks that let the recorded children stand for the verified root (see the module
/// documentation), and the root's group with its attributes only; `None` when they fail.
fn checked_root(
    verified: &Verified<'_>,
    seen: &RootChildren,
    inherited: Option<&Vec<NsDecl<'_>>>,
) -> Result<Option<EntitiesDescriptor>, Error> {
    let Some(root_end_tag) = seen.root_end_tag else {
        return Ok(None);
    };
    if seen.overflow || seen.open.is_some() || seen.sent != seen.children.len() {
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
    if !seen.children.is_empty() && inherited != Some(&scope) {
        return Ok(None);
    }
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
    // Children only after the Signature and before the root's end tag, white space between:
    // every byte parsed lies in the signed content, clear of the Signature.
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
    Ok(Some(entities_attributes(&root)?))
}

/// Verifies `doc` (as `nested_signatures::verify`), then builds its model from the root's
/// children, last first, giving the document's memory back as it goes: after each batch of
/// children (about a 16th of the document) is parsed, `doc` is cut to where the batch began
/// and shrunk, so the document and its model are never both whole in memory (with glibc's
/// allocator a shrunk large block is returned to the system at once, by `mremap`). The
/// children are the ones [`verify_and_build`] records, under the same checks (white space
/// between them, inside the signed root after its `ds:Signature`, in the verified root's
/// namespace scope); each batch is parsed on up to `threads` threads. The model, and for a
/// bad document the error (the first in document order), are those of `load` (tested). A
/// document these checks do not admit has its model built from the verified document on
/// one thread, as `load` does, before any memory is given back. One difference: the children
/// share one model-copy allowance and are modelled last batch first, several at a time, so a
/// document over it may be refused at another child (and with another error, when an earlier
/// child is also malformed) than `load` names; whether it is refused is the same.
///
/// Returns the index of the key that verified, the entities refused for their own
/// signatures, and the model; `doc` is left holding (at most) the bytes before the root's
/// first child.
pub(crate) fn verify_then_build_releasing(
    doc: &mut Vec<u8>,
    policy: &Policy,
    threads: usize,
) -> Result<(usize, Vec<RefusedEntity>, Metadata), Error> {
    let limits = policy.verify.limits;
    let (signer, mut refused, mut group, scope, children, pool, root_at) = {
        let doc: &[u8] = doc;
        let mut seen = RootChildren::new(doc.len(), 1);
        let mut inherited: Option<Vec<NsDecl<'_>>> = None;
        let (verified, refused) = nested_signatures::verify(doc, policy, &mut |ev| {
            if let Event::Start(st) = ev
                && st.depth == 2
                && inherited.is_none()
            {
                let own = st.scope.len().saturating_sub(st.namespace_decls.len());
                inherited = Some(effective_scope(st.scope.get(..own).unwrap_or_default()));
            }
            // Runs are for threads that parse while verification goes on; none here.
            let _ = seen.observe(ev);
        })?;
        let signer = verified.key_index();
        let Some(group) = checked_root(&verified, &seen, inherited.as_ref())? else {
            let mut refused = refused;
            let md = crate::parse::metadata(&mut Cursor::verified(&verified)?, Some(&mut refused))?;
            return Ok((signer, refused, md));
        };
        let scope: Vec<(String, String)> = inherited
            .unwrap_or_default()
            .iter()
            .map(|d| (d.prefix.to_owned(), d.uri.to_owned()))
            .collect();
        // The children share the signed root's copy allowance, as they do under one cursor
        // in `load` (each had its own 1 KiB beyond its part's allowance: dsig review L3).
        let pool = CopyPool::for_document(verified.signed_range().len());
        let root_at = verified.signed_range().start;
        (signer, refused, group, scope, seen.children, pool, root_at)
    };
    let scope: Vec<NsDecl<'_>> = scope
        .iter()
        .map(|(prefix, uri)| NsDecl { prefix, uri })
        .collect();
    let batch_bytes = doc.len() / 16 + 1;
    // Batches of parsed children, last batch first; on an error, only the error is kept
    // (replaced by any found earlier in the document, so the first one is reported).
    let mut batches: Vec<Vec<Child>> = Vec::new();
    let mut error: Option<Error> = None;
    let mut end = children.len();
    while let Some(last) = end.checked_sub(1).and_then(|i| children.get(i)) {
        let mut start = end - 1;
        while let Some(prev) = start.checked_sub(1).and_then(|i| children.get(i))
            && last.end - prev.start <= batch_bytes
        {
            start -= 1;
        }
        let batch = children.get(start..end).unwrap_or_default();
        match parse_batch(doc, batch, &scope, limits, threads, &pool) {
            Ok(parsed) if error.is_none() => batches.push(parsed),
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                batches = Vec::new();
            }
        }
        if let Some(first) = batch.first() {
            doc.truncate(first.start);
            doc.shrink_to_fit();
        }
        end = start;
    }
    if let Some(e) = error {
        return Err(e);
    }
    group.children.reserve_exact(children.len());
    for batch in batches.into_iter().rev() {
        add_children(&mut group, batch, root_at, &mut refused)?;
    }
    Ok((signer, refused, Metadata::Entities(Box::new(group))))
}

/// Parses consecutive children of the root on up to `threads` threads (this one among them),
/// each taking the next [`CHILDREN_PER_TAKE`] children until none are left; the first error in
/// document order is the one returned.
fn parse_batch(
    doc: &[u8],
    batch: &[Range<usize>],
    scope: &[NsDecl<'_>],
    limits: Limits,
    threads: usize,
    pool: &CopyPool,
) -> Result<Vec<Child>, Error> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Parsed)> = Vec::new();
        loop {
            let at = next.fetch_add(CHILDREN_PER_TAKE, Ordering::Relaxed);
            let Some(rs) = batch.get(at..(at + CHILDREN_PER_TAKE).min(batch.len())) else {
                break;
            };
            if rs.is_empty() {
                break;
            }
            let parsed: Parsed = rs
                .iter()
                .map(|r| child(doc, r.clone(), scope, limits, Copies::Pooled(pool)))
                .collect();
            done.push((at, parsed));
        }
        done
    };
    let helpers = threads
        .saturating_sub(1)
        .min(batch.len().div_ceil(CHILDREN_PER_TAKE).saturating_sub(1));
    let mut done = std::thread::scope(|s| {
        let others: Vec<_> = (0..helpers).map(|_| s.spawn(work)).collect();
        let mut done = work();
        for h in others {
            match h.join() {
                Ok(more) => done.extend(more),
                Err(_) => done.push((0, Err(thread_failed()))),
            }
        }
        done
    });
    done.sort_by_key(|(at, _)| *at);
    let mut out = Vec::with_capacity(batch.len());
    for (_, parsed) in done {
        out.extend(parsed?);
    }
    Ok(out)
}

/// What a root child's model may copy beyond its bytes.
#[derive(Clone, Copy)]
enum Copies<'p> {
    /// Its part's allowance: the children modelled while the signature is checked together hold no
    /// more than `load` on one thread allows, which decides when a child needs more (dsig
    /// review L3).
    Part,
    /// What is left of the document's allowance, shared by every child (`load_owned`, after
    /// verification).
    Pooled(&'p CopyPool),
}

/// One child of the root, read from its bytes (checked as a document's are) in the root's
/// namespace scope.
fn child(
    doc: &[u8],
    range: Range<usize>,
    scope: &[NsDecl<'_>],
    limits: Limits,
    copies: Copies<'_>,
) -> Result<Child, Error> {
    let offset = range.start;
    let reader = Reader::new_fragment(doc, range, scope, limits)?;
    let mut c = match copies {
        Copies::Part => Cursor::unverified_part(reader),
        Copies::Pooled(pool) => Cursor::unverified_pooled(reader, pool),
    };
    let ch = c
        .next_child("EntitiesDescriptor")?
        .ok_or_else(|| Error::Invalid {
            element: "EntitiesDescriptor".to_owned(),
            offset,
            message: "no element where one was recorded".into(),
        })?;
    let mut refused = Vec::new();
    let child = entities_child(&mut c, &ch, Some(&mut refused))?;
    Ok((child, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys, VerifyOptions};
    use std::time::SystemTime;

    fn key() -> (SigningKey, TrustedKeys) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = SigningKey::new(
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
            None,
        )
        .unwrap();
        let mut keys = TrustedKeys::new();
        keys.add_public_key(key.public_key().unwrap(), "fed")
            .unwrap();
        (key, keys)
    }

    fn entity(i: usize) -> String {
        format!(
            r#"<EntityDescriptor entityID="https://sp{i}.example.org/"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp{i}.example.org/acs" index="0"/></SPSSODescriptor></EntityDescriptor>"#
        )
    }

    fn aggregate(sep: &str, key: &SigningKey) -> Vec<u8> {
        let body: Vec<String> = (0..8).map(entity).collect();
        signed(&body.join(sep), key)
    }

    fn signed(body: &str, key: &SigningKey) -> Vec<u8> {
        let doc = format!(
            r#"<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata">{body}</EntitiesDescriptor>"#
        );
        dsig::sign(doc.as_bytes(), key, &SignOptions::default()).unwrap()
    }

    /// The threaded path runs for an aggregate whose children are separated by white space
    /// (tests/parallel_model.rs compares its model with the one-thread path's) and steps aside
    /// for a comment between them; the runs handed out cover every child once, in order.
    #[test]
    fn applies_to_blank_separated_children_only() {
        let (key, keys) = key();
        let policy = Policy::new(keys.clone(), SystemTime::now());
        for (sep, applies) in [("\n ", true), ("<!-- c -->", false)] {
            let doc = aggregate(sep, &key);
            let (_, _, md) = verify_and_build(&doc, &policy, 2).unwrap();
            assert_eq!(md.is_some(), applies, "separator {sep:?}");
            if let Some(Metadata::Entities(g)) = md {
                assert_eq!(g.entities().len(), 8);
            }

            let mut seen = RootChildren::new(doc.len(), 2);
            let mut runs = Vec::new();
            dsig::verify_observed(&doc, &keys, &VerifyOptions::metadata(), &mut |ev| {
                runs.extend(seen.observe(ev));
            })
            .unwrap();
            assert_eq!(seen.children.len(), 8);
            assert!(runs.len() > 1, "{} runs", runs.len());
            let order: Vec<usize> = runs.iter().map(|(i, _)| *i).collect();
            assert_eq!(order, (0..runs.len()).collect::<Vec<_>>());
            let joined: Vec<Range<usize>> = runs.into_iter().flat_map(|(_, r)| r).collect();
            assert_eq!(joined, seen.children);

            // More children than one per MIN_CHILD_BYTES: nothing kept, one thread.
            let few = RootChildren::new(MIN_CHILD_BYTES * 4, 2);
            let (_, _, md) = verify_and_build_with(&doc, &policy, 2, few).unwrap();
            assert!(md.is_none());
        }
    }

    /// Children are parsed before the signature is known to be good; when it is not, the
    /// verification's error is the one reported, never what the children held.
    #[test]
    fn a_failed_signature_is_the_error_whatever_the_children_hold() {
        let (key, keys) = key();
        let policy = Policy::new(keys, SystemTime::now());
        let doc = aggregate("\n", &key);
        let text = String::from_utf8(doc).unwrap();
        // Every entity loses its entityID (a model error) and the digest no longer matches.
        let bad = text.replace("entityID=", "entityXD=");
        let err = verify_and_build(bad.as_bytes(), &policy, 2).unwrap_err();
        assert!(matches!(err, Error::Core(_)), "{err:?}");
        // The same children under a good signature: their error is reported.
        let body: Vec<String> = (0..8).map(entity).collect();
        let doc = signed(&body.join("\n").replace("entityID=", "entityXD="), &key);
        let err = verify_and_build(&doc, &policy, 2).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
        // The same for the model built after verification, the document given back.
        let err = verify_then_build_releasing(&mut bad.into_bytes(), &policy, 2).unwrap_err();
        assert!(matches!(err, Error::Core(_)), "{err:?}");
        let err = verify_then_build_releasing(&mut doc.clone(), &policy, 2).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    }

    /// `verify_then_build_releasing` cuts the document behind each batch it has parsed: what
    /// is left ends before the root's first entity, and the allocation was shrunk to it. With
    /// a comment between the entities (the one-thread path) the document stays whole.
    #[test]
    fn the_document_is_given_back_while_the_model_is_built() {
        let (key, keys) = key();
        let policy = Policy::new(keys, SystemTime::now());
        for threads in [1, 2] {
            let mut doc = aggregate("\n", &key);
            let whole = doc.len();
            let first = String::from_utf8_lossy(&doc)
                .find("<EntityDescriptor")
                .unwrap();
            let (_, _, md) = verify_then_build_releasing(&mut doc, &policy, threads).unwrap();
            let Metadata::Entities(g) = md else {
                panic!("aggregate")
            };
            assert_eq!(g.entities().len(), 8);
            assert!(doc.len() <= first, "{} of {whole} bytes left", doc.len());
            assert!(doc.capacity() < whole / 2, "capacity {}", doc.capacity());

            let mut doc = aggregate("<!-- c -->", &key);
            let whole = doc.len();
            verify_then_build_releasing(&mut doc, &policy, threads).unwrap();
            assert_eq!(doc.len(), whole);
        }
    }
}
