//! Where the canonical octets of the signed element go while the reader streams: into a
//! canonicalizer and hasher on the same thread, or, for large documents, to a second thread
//! that canonicalizes and hashes while the first keeps reading and checking (a two-stage
//! pipeline over batches of events; the events borrow the document, so the second stage runs
//! in a scoped thread and nothing is copied but small records).
//!
//! Both stages see exactly the same events in the same order; the second stage gets, for each
//! start tag, the namespace bindings that exclusive c14n can consult (the element's and its
//! attributes' prefixes, or the whole effective scope when an InclusiveNamespaces PrefixList is
//! in force), so the output is byte-identical to the inline path (tested).

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use openssl::hash::Hasher;

use crate::c14n::Canonicalizer;
use crate::error::Error;
use crate::xml::{
    Attribute, EndElement, Event, NsDecl, QName, StartElement, Text, effective_scope,
};

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

const BATCH_EVENTS: usize = 4096;

enum Rec<'a> {
    Start {
        name: QName<'a>,
        namespace: &'a str,
        attrs: (u32, u32),
        scope: (u32, u32),
        depth: u32,
        empty: bool,
    },
    End {
        name: QName<'a>,
        depth: u32,
    },
    Text(Text<'a>),
    Comment(Text<'a>),
}

#[derive(Default)]
pub(crate) struct Batch<'a> {
    recs: Vec<Rec<'a>>,
    attrs: Vec<Attribute<'a>>,
    scope: Vec<NsDecl<'a>>,
}

impl<'a> Batch<'a> {
    fn clear(&mut self) {
        self.recs.clear();
        self.attrs.clear();
        self.scope.clear();
    }

    fn push(&mut self, ev: &Event<'_, 'a>, full_scope: bool) {
        let rec = match ev {
            Event::Start(s) => {
                let a0 = self.attrs.len() as u32;
                self.attrs.extend_from_slice(s.attributes);
                let s0 = self.scope.len() as u32;
                if full_scope {
                    self.scope.extend(effective_scope(s.scope));
                } else {
                    // What exclusive c14n consults without a PrefixList: the visibly utilized
                    // prefixes, already resolved by the reader.
                    self.scope.push(NsDecl {
                        prefix: s.name.prefix,
                        uri: s.namespace,
                    });
                    for a in s.attributes.iter().filter(|a| !a.name.prefix.is_empty()) {
                        self.scope.push(NsDecl {
                            prefix: a.name.prefix,
                            uri: a.namespace,
                        });
                    }
                }
                Rec::Start {
                    name: s.name,
                    namespace: s.namespace,
                    attrs: (a0, self.attrs.len() as u32),
                    scope: (s0, self.scope.len() as u32),
                    depth: s.depth as u32,
                    empty: s.empty,
                }
            }
            Event::End(e) => Rec::End {
                name: e.name,
                depth: e.depth as u32,
            },
            Event::Text(t) => Rec::Text(t.clone()),
            Event::Comment(c) => Rec::Comment(c.clone()),
        };
        self.recs.push(rec);
    }

    fn replay(&self, c: &mut Canonicalizer<'a, DigestSink>) -> Result<(), Error> {
        for rec in &self.recs {
            let ev = match rec {
                Rec::Start {
                    name,
                    namespace,
                    attrs,
                    scope,
                    depth,
                    empty,
                } => Event::Start(StartElement {
                    name: *name,
                    namespace,
                    attributes: &self.attrs[attrs.0 as usize..attrs.1 as usize],
                    namespace_decls: &[],
                    scope: &self.scope[scope.0 as usize..scope.1 as usize],
                    span: 0..0,
                    empty: *empty,
                    depth: *depth as usize,
                }),
                Rec::End { name, depth } => Event::End(EndElement {
                    name: *name,
                    span: 0..0,
                    depth: *depth as usize,
                }),
                Rec::Text(t) => Event::Text(t.clone()),
                Rec::Comment(t) => Event::Comment(t.clone()),
            };
            c.event(&ev)?;
        }
        Ok(())
    }
}

type Finished = Result<(DigestSink, u64), Error>;

/// The digest stage: inline or on a second thread.
pub(crate) enum DigestStage<'scope, 'a> {
    Inline(Canonicalizer<'a, DigestSink>),
    Piped {
        tx: SyncSender<Batch<'a>>,
        recycled: Receiver<Batch<'a>>,
        batch: Batch<'a>,
        full_scope: bool,
        worker: ScopedJoinHandle<'scope, Finished>,
    },
}

impl<'scope, 'a: 'scope> DigestStage<'scope, 'a> {
    /// Runs `c` on a second thread of `scope`.
    pub(crate) fn piped<'env>(
        scope: &'scope Scope<'scope, 'env>,
        mut c: Canonicalizer<'a, DigestSink>,
        full_scope: bool,
    ) -> Self
    where
        'a: 'env,
    {
        let (tx, rx) = sync_channel::<Batch<'a>>(4);
        let (back_tx, recycled) = sync_channel::<Batch<'a>>(8);
        let worker = scope.spawn(move || -> Finished {
            while let Ok(mut batch) = rx.recv() {
                batch.replay(&mut c)?;
                batch.clear();
                let _ = back_tx.try_send(batch);
            }
            c.finish()
        });
        DigestStage::Piped {
            tx,
            recycled,
            batch: Batch::default(),
            full_scope,
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
                full_scope,
                ..
            } => {
                batch.push(ev, *full_scope);
                if batch.recs.len() >= BATCH_EVENTS {
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
                worker
                    .join()
                    .unwrap_or_else(|_| Err(Error::C14n("canonicalization thread panicked".into())))
            }
        }
    }
}
