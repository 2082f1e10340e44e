//! Where the canonical octets of the signed element go while the reader streams: into a
//! canonicalizer and hasher on the same thread, or, for large documents, to a second thread
//! that canonicalizes and hashes while the first keeps reading and checking (a two-stage
//! pipeline over batches of events; the events borrow the document, so the second stage runs
//! in a scoped thread and nothing is copied but small records).
//!
//! Both stages see exactly the same events in the same order; for each start tag the first
//! stage resolves the namespace bindings that exclusive c14n has to consider
//! ([`crate::c14n`]'s `gather`: the element's and its attributes' prefixes, and the listed
//! prefixes the element declares when an InclusiveNamespaces PrefixList is in force), so the
//! second stage needs no scope and the output is byte-identical to the inline path (tested).
//! The work per start tag is bounded by its own size, never by the bindings in scope.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use openssl::hash::Hasher;

use crate::c14n::{Canonicalizer, PrefixSet, gather};
use crate::error::Error;
use crate::xml::{Attribute, EndElement, Event, NsDecl, QName, Text};

/// Writes canonical octets into an OpenSSL hasher.
pub(crate) struct DigestSink(pub(crate) Hasher);

impl Write for DigestSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Events per batch handed to the hashing thread. A hand-off may wake that thread (a futex
/// wake on the scanning thread, the critical path): with 1024 a 60 MiB aggregate made about
/// 3,000 hand-offs and verified 10% slower than with 4096. At most seven batches exist at once
/// (one filling, two queued, one replayed, three recycled).
const BATCH_EVENTS: usize = 4096;

/// Attributes, and separately namespace candidates, after which a batch is handed over before
/// [`BATCH_EVENTS`] events: what the limits allow per start tag (64 attributes and hundreds of
/// namespace candidates by default, more if an embedder raises them) times 4096 events would be
/// tens of MB per batch. With this cap a batch holds at most 160 KiB of records, about 1.3 MB
/// of attributes and 0.5 MB of candidates beyond one start tag's worth, so the seven batches
/// stay under 15 MB whatever the document. Real metadata stays far below it (about one
/// attribute per event).
const BATCH_ITEMS: usize = 16 * 1024;

/// One event as the digest stage needs it, kept small (40 bytes): the scanning thread writes
/// one per event and the hashing thread reads it from another core. Names are kept as written
/// with the position of their colon (`u32::MAX` for none).
enum Rec<'a> {
    Start {
        raw: &'a str,
        colon: u32,
        attrs: (u32, u32),
        scope: (u32, u32),
    },
    End {
        raw: &'a str,
        colon: u32,
        depth: u32,
    },
    Text {
        raw: &'a str,
        cdata: bool,
    },
    Comment(&'a str),
}

const _: () = assert!(std::mem::size_of::<Rec<'static>>() <= 40);

/// The colon of a name for [`Rec`].
fn colon_of(q: &QName<'_>) -> u32 {
    if q.prefix.is_empty() {
        u32::MAX
    } else {
        q.prefix.len() as u32
    }
}

/// The name [`colon_of`] described.
fn qname(raw: &str, colon: u32) -> QName<'_> {
    let at = colon as usize;
    match (raw.get(..at), raw.get(at + 1..)) {
        (Some(prefix), Some(local)) if colon != u32::MAX => QName { prefix, local, raw },
        _ => QName {
            prefix: "",
            local: raw,
            raw,
        },
    }
}

#[derive(Default)]
pub(crate) struct Batch<'a> {
    recs: Vec<Rec<'a>>,
    attrs: Vec<Attribute<'a>>,
    scope: Vec<NsDecl<'a>>,
    scratch: Vec<NsDecl<'a>>,
}

impl<'a> Batch<'a> {
    /// Whether the batch is handed over now (see [`BATCH_EVENTS`], [`BATCH_ITEMS`]).
    fn is_full(&self) -> bool {
        self.recs.len() >= BATCH_EVENTS
            || self.attrs.len() >= BATCH_ITEMS
            || self.scope.len() >= BATCH_ITEMS
    }

    fn clear(&mut self) {
        self.recs.clear();
        self.attrs.clear();
        self.scope.clear();
    }

    fn push(&mut self, ev: &Event<'_, 'a>, list: &PrefixSet, apex: bool) {
        let rec = match ev {
            Event::Start(s) => {
                let a0 = self.attrs.len() as u32;
                self.attrs.extend_from_slice(s.attributes);
                let s0 = self.scope.len() as u32;
                gather(s, list, apex, &mut self.scratch);
                self.scope.extend_from_slice(&self.scratch);
                Rec::Start {
                    raw: s.name.raw,
                    colon: colon_of(&s.name),
                    attrs: (a0, self.attrs.len() as u32),
                    scope: (s0, self.scope.len() as u32),
                }
            }
            Event::End(e) => Rec::End {
                raw: e.name.raw,
                colon: colon_of(&e.name),
                depth: e.depth as u32,
            },
            Event::Text(t) => Rec::Text {
                raw: t.raw,
                cdata: t.cdata,
            },
            Event::Comment(c) => Rec::Comment(c.raw),
        };
        self.recs.push(rec);
    }

    fn replay(&self, c: &mut Canonicalizer<'a, DigestSink>) -> Result<(), Error> {
        for rec in &self.recs {
            match rec {
                Rec::Start {
                    raw,
                    colon,
                    attrs,
                    scope,
                } => {
                    let attrs = self
                        .attrs
                        .get(attrs.0 as usize..attrs.1 as usize)
                        .unwrap_or_default();
                    let scope = self
                        .scope
                        .get(scope.0 as usize..scope.1 as usize)
                        .unwrap_or_default();
                    c.start_gathered(qname(raw, *colon), attrs, scope)?;
                }
                Rec::End { raw, colon, depth } => c.event(&Event::End(EndElement {
                    name: qname(raw, *colon),
                    span: 0..0,
                    depth: *depth as usize,
                }))?,
                Rec::Text { raw, cdata } => c.event(&Event::Text(Text {
                    raw,
                    cdata: *cdata,
                    span: 0..0,
                }))?,
                Rec::Comment(raw) => c.event(&Event::Comment(Text {
                    raw,
                    cdata: false,
                    span: 0..0,
                }))?,
            }
        }
        Ok(())
    }
}

type Finished = Result<(DigestSink, u64), Error>;

/// The digest stage: inline or on a second thread.
pub(crate) enum DigestStage<'scope, 'a> {
    Inline(Box<Canonicalizer<'a, DigestSink>>),
    Piped {
        tx: SyncSender<Batch<'a>>,
        recycled: Receiver<Batch<'a>>,
        batch: Batch<'a>,
        list: PrefixSet,
        apex_pending: bool,
        worker: ScopedJoinHandle<'scope, (Finished, u64)>,
    },
}

impl<'scope, 'a: 'scope> DigestStage<'scope, 'a> {
    /// Runs `c` on a second thread of `scope`.
    pub(crate) fn piped<'env>(
        scope: &'scope Scope<'scope, 'env>,
        mut c: Canonicalizer<'a, DigestSink>,
    ) -> Self
    where
        'a: 'env,
    {
        let list = c.prefix_set().clone();
        let apex_pending = !c.is_started();
        let (tx, rx) = sync_channel::<Batch<'a>>(2);
        let (back_tx, recycled) = sync_channel::<Batch<'a>>(3);
        let worker = scope.spawn(move || -> (Finished, u64) {
            let run = || -> Finished {
                while let Ok(mut batch) = rx.recv() {
                    batch.replay(&mut c)?;
                    batch.clear();
                    let _ = back_tx.try_send(batch);
                }
                c.finish()
            };
            let done = run();
            // This thread's namespace work is reported on the caller's thread.
            (done, crate::xml::work::take())
        });
        DigestStage::Piped {
            tx,
            recycled,
            batch: Batch::default(),
            list,
            apex_pending,
            worker,
        }
    }

    /// Feeds one event.
    pub(crate) fn feed(&mut self, ev: &Event<'_, 'a>) -> Result<(), Error> {
        match self {
            DigestStage::Inline(c) => c.event(ev),
            DigestStage::Piped {
                tx,
                recycled,
                batch,
                list,
                apex_pending,
                ..
            } => {
                let apex = *apex_pending && matches!(ev, Event::Start(_));
                if apex {
                    *apex_pending = false;
                }
                batch.push(ev, list, apex);
                if batch.is_full() {
                    let next = recycled.try_recv().unwrap_or_default();
                    let full = std::mem::replace(batch, next);
                    if tx.send(full).is_err() {
                        // The worker stopped on an error; `finish` reports it.
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
    }

    /// Flushes and returns the hasher and the number of canonical bytes.
    pub(crate) fn finish(self) -> Finished {
        match self {
            DigestStage::Inline(c) => c.finish(),
            DigestStage::Piped {
                tx, batch, worker, ..
            } => {
                if !batch.recs.is_empty() {
                    let _ = tx.send(batch);
                }
                drop(tx);
                match worker.join() {
                    Ok((done, work)) => {
                        crate::xml::work::add(work);
                        done
                    }
                    Err(_) => Err(Error::C14n("canonicalization thread panicked".into())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Limits, Reader};

    /// Pushes every event of `doc` into batches as `DigestStage::feed` does; returns the number
    /// of events of each batch handed over and the most attributes one held.
    fn batches(doc: &str) -> (Vec<usize>, usize) {
        let mut r = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
        let list = PrefixSet::default();
        let mut b = Batch::default();
        let (mut sizes, mut most_attrs, mut apex) = (Vec::new(), 0, true);
        while r.advance().expect("well-formed") {
            let Some(ev) = r.current() else { break };
            b.push(&ev, &list, apex && matches!(ev, Event::Start(_)));
            apex = false;
            if b.is_full() {
                sizes.push(b.recs.len());
                most_attrs = most_attrs.max(b.attrs.len());
                b.clear();
            }
        }
        (sizes, most_attrs)
    }

    /// A batch's memory is bounded by attributes as well as by events: start tags carrying as
    /// many attributes as the limits allow hand a batch over long before 4096 events.
    #[test]
    fn batches_are_bounded_by_attributes() {
        let attrs: String = (0..64).map(|i| format!(" a{i}=\"\"")).collect();
        let doc = format!("<r>{}</r>", format!("<e{attrs}/>").repeat(600));
        let (sizes, most) = batches(&doc);
        assert!(!sizes.is_empty(), "no batch handed over");
        assert!(sizes.iter().all(|&n| n < 1024), "{sizes:?}");
        assert!((BATCH_ITEMS..BATCH_ITEMS + 64).contains(&most), "{most}");
        // Ordinary content is handed over by events.
        let doc = format!("<r>{}</r>", "<e a=\"1\">t</e>".repeat(3000));
        let (sizes, most) = batches(&doc);
        assert_eq!(sizes, vec![BATCH_EVENTS, BATCH_EVENTS]);
        assert!(most < BATCH_ITEMS, "{most}");
    }
}
