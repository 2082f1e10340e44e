//! Exclusive XML Canonicalization 1.0 (W3C Recommendation, 18 July 2002), with and without
//! comments, with an `InclusiveNamespaces PrefixList` (§3), over the [`crate::xml`] event stream.
//!
//! The [`Canonicalizer`] is fed events of one element subtree (the apex first) and writes the
//! canonical octets to any [`std::io::Write`] (a hasher when verifying, so a 65 MB aggregate is
//! never held twice). Leaving events out (the enveloped-signature transform omits the
//! `ds:Signature` subtree) is the caller's choice. Rules applied, by section of the
//! Canonical XML 1.0 Recommendation that exclusive c14n builds on:
//! - §2.2 / §5.2 text: `&` `<` `>` and CR escaped, line ends normalized by the reader's rules;
//! - attribute values normalized (XML 1.0 §3.3.3) then `&` `<` `"` TAB LF CR escaped;
//! - attributes sorted by namespace URI then local name, namespace nodes by prefix;
//! - empty elements written as start/end pairs;
//! - exc-c14n §3: a namespace node is output on an element only when visibly utilized there
//!   (or listed in the PrefixList) and not already output with the same value by an output
//!   ancestor; `xmlns=""` only to undo an output default namespace.
//!
//! Any error is fatal and nothing is ever reported as canonical output for a partial subtree.

use std::io::Write;

use crate::error::Error;
use crate::xml::chars::{self, Piece, for_each_piece};
use crate::xml::{Event, NsDecl, Reader, StartElement, Text, XML_NS};

/// `http://www.w3.org/2001/10/xml-exc-c14n#`
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// `http://www.w3.org/2001/10/xml-exc-c14n#WithComments`
pub const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

/// Parameters of exclusive canonicalization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep comments (the `#WithComments` variant).
    pub with_comments: bool,
    /// The InclusiveNamespaces PrefixList; `""` stands for `#default`.
    pub inclusive_prefixes: Vec<String>,
}

impl Options {
    /// Parses a PrefixList attribute value (white-space separated; `#default` for the default
    /// namespace).
    pub fn with_prefix_list(mut self, list: &str) -> Self {
        self.inclusive_prefixes = list
            .split_ascii_whitespace()
            .map(|p| {
                if p == "#default" {
                    String::new()
                } else {
                    p.to_owned()
                }
            })
            .collect();
        self
    }
}

const BUF: usize = 64 << 10;

/// Streaming exclusive canonicalizer of one element subtree.
#[derive(Debug)]
pub struct Canonicalizer<'a, W: Write> {
    out: W,
    buf: Vec<u8>,
    opts: Options,
    rendered: Vec<NsDecl<'a>>,
    frames: Vec<usize>,
    ns_scratch: Vec<NsDecl<'a>>,
    attr_scratch: Vec<(usize, &'a str, &'a str)>,
    written: u64,
    started: bool,
    finished: bool,
}

impl<'a, W: Write> Canonicalizer<'a, W> {
    /// A canonicalizer writing to `out`.
    pub fn new(out: W, opts: Options) -> Self {
        Canonicalizer {
            out,
            buf: Vec::with_capacity(BUF),
            opts,
            rendered: Vec::new(),
            frames: Vec::new(),
            ns_scratch: Vec::new(),
            attr_scratch: Vec::new(),
            written: 0,
            started: false,
            finished: false,
        }
    }

    /// Feeds one event of the subtree. The first event must be the apex's start tag; events
    /// after the apex's end tag are an error.
    pub fn event(&mut self, ev: &Event<'_, 'a>) -> Result<(), Error> {
        if self.finished {
            return Err(Error::C14n(
                "event after the end of the canonicalized subtree".into(),
            ));
        }
        match ev {
            Event::Start(s) => self.start(s),
            Event::End(e) => {
                let Some(len) = self.frames.pop() else {
                    return Err(Error::C14n("end tag without start".into()));
                };
                self.rendered.truncate(len);
                self.push(b"</");
                self.push(e.name.raw.as_bytes());
                self.push(b">");
                if self.frames.is_empty() {
                    self.finished = true;
                }
                self.flush_if_full()
            }
            Event::Text(t) => {
                self.check_inside()?;
                self.text(t)
            }
            Event::Comment(c) => {
                self.check_inside()?;
                if self.opts.with_comments {
                    self.push(b"<!--");
                    write_newlines_normalized(&mut self.buf, c.raw);
                    self.push(b"-->");
                }
                self.flush_if_full()
            }
        }
    }

    fn check_inside(&self) -> Result<(), Error> {
        if self.frames.is_empty() {
            return Err(Error::C14n(
                "character data outside the apex element".into(),
            ));
        }
        Ok(())
    }

    fn start(&mut self, s: &StartElement<'_, 'a>) -> Result<(), Error> {
        if self.frames.is_empty() && self.started {
            return Err(Error::C14n("a second apex element".into()));
        }
        self.started = true;
        // Namespace nodes to render (exc-c14n §3): visibly utilized prefixes plus the
        // PrefixList, each only if its in-scope value differs from what an output ancestor
        // rendered.
        let mut cand: Vec<NsDecl<'a>> = std::mem::take(&mut self.ns_scratch);
        cand.clear();
        let consider = |prefix: &'a str, this: &mut Self, cand: &mut Vec<NsDecl<'a>>| {
            if prefix == "xml" || cand.iter().any(|d| chars::eq(d.prefix, prefix)) {
                return;
            }
            let Some(uri) = s.lookup(prefix) else { return };
            let rendered = this
                .rendered
                .iter()
                .rev()
                .find(|d| chars::eq(d.prefix, prefix))
                .map(|d| d.uri);
            let needed = match rendered {
                Some(r) => !chars::eq(r, uri),
                None => !(prefix.is_empty() && uri.is_empty()),
            };
            if needed {
                cand.push(NsDecl { prefix, uri });
            }
        };
        consider(s.name.prefix, self, &mut cand);
        for a in s.attributes {
            if !a.name.prefix.is_empty() {
                consider(a.name.prefix, self, &mut cand);
            }
        }
        if !self.opts.inclusive_prefixes.is_empty() {
            // Prefixes are looked up in the scope so the stored &str has the document lifetime.
            for d in crate::xml::effective_scope(s.scope) {
                if self.opts.inclusive_prefixes.iter().any(|p| p == d.prefix) {
                    consider(d.prefix, self, &mut cand);
                }
            }
            if self.opts.inclusive_prefixes.iter().any(|p| p.is_empty()) {
                consider("", self, &mut cand);
            }
        }
        if cand.len() > 1 {
            cand.sort_unstable_by(|a, b| chars::cmp(a.prefix, b.prefix));
        }

        self.frames.push(self.rendered.len());
        self.push(b"<");
        self.push(s.name.raw.as_bytes());
        for d in &cand {
            if d.prefix.is_empty() {
                self.push(b" xmlns=\"");
            } else {
                self.push(b" xmlns:");
                self.push(d.prefix.as_bytes());
                self.push(b"=\"");
            }
            write_attr_value(&mut self.buf, d.uri)?;
            self.push(b"\"");
        }
        self.rendered.extend_from_slice(&cand);
        self.ns_scratch = cand;

        let mut attrs = std::mem::take(&mut self.attr_scratch);
        attrs.clear();
        attrs.extend(s.attributes.iter().enumerate().map(|(i, a)| {
            (
                i,
                if a.name.prefix == "xml" {
                    XML_NS
                } else {
                    a.namespace
                },
                a.name.local,
            )
        }));
        if attrs.len() > 1 {
            attrs.sort_unstable_by(|a, b| chars::cmp(a.1, b.1).then_with(|| chars::cmp(a.2, b.2)));
        }
        for &(i, _, _) in &attrs {
            let a = &s.attributes[i];
            self.push(b" ");
            self.push(a.name.raw.as_bytes());
            self.push(b"=\"");
            write_attr_value(&mut self.buf, a.raw_value)?;
            self.push(b"\"");
        }
        self.attr_scratch = attrs;
        self.push(b">");
        self.flush_if_full()
    }

    fn text(&mut self, t: &Text<'_>) -> Result<(), Error> {
        if t.cdata {
            write_text_literal(&mut self.buf, t.raw, true);
        } else {
            let buf = &mut self.buf;
            for_each_piece(t.raw, |p| match p {
                Piece::Literal(s) => write_text_literal(buf, s, false),
                Piece::Ref(c) => write_text_char(buf, c),
            })
            .map_err(|e| Error::C14n(e.to_string()))?;
        }
        self.flush_if_full()
    }

    #[inline]
    fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn flush_if_full(&mut self) -> Result<(), Error> {
        if self.buf.len() >= BUF {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::C14n(format!("output: {e}")))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Whether the apex element has been closed.
    pub fn is_complete(&self) -> bool {
        self.finished
    }

    /// Flushes and returns the sink and the number of canonical bytes written. Fails if the
    /// apex element was not closed or nothing was written (an element never canonicalizes to
    /// nothing).
    pub fn finish(mut self) -> Result<(W, u64), Error> {
        if !self.finished {
            return Err(Error::C14n(
                "the canonicalized subtree is incomplete".into(),
            ));
        }
        self.flush()?;
        if self.written == 0 {
            return Err(Error::C14n("empty canonical output".into()));
        }
        Ok((self.out, self.written))
    }
}

fn write_newlines_normalized(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\r', &b[i..]) {
        let at = i + off;
        buf.extend_from_slice(&b[i..at]);
        buf.push(b'\n');
        i = at + 1;
        if b.get(i) == Some(&b'\n') {
            i += 1;
        }
    }
    buf.extend_from_slice(&b[i..]);
}

/// Literal text (no references inside): `>` escaped, CR/CRLF normalized to LF; in CDATA also
/// `&` and `<` escaped.
fn write_text_literal(buf: &mut Vec<u8>, s: &str, cdata: bool) {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        let next = if cdata {
            b[i..]
                .iter()
                .position(|&c| matches!(c, b'>' | b'\r' | b'&' | b'<'))
        } else {
            memchr::memchr2(b'>', b'\r', &b[i..])
        };
        let Some(off) = next else { break };
        let at = i + off;
        buf.extend_from_slice(&b[i..at]);
        i = at + 1;
        match b[at] {
            b'>' => buf.extend_from_slice(b"&gt;"),
            b'&' => buf.extend_from_slice(b"&amp;"),
            b'<' => buf.extend_from_slice(b"&lt;"),
            _ => {
                buf.push(b'\n');
                if b.get(i) == Some(&b'\n') {
                    i += 1;
                }
            }
        }
    }
    buf.extend_from_slice(&b[i..]);
}

/// A character that came from a reference in text.
fn write_text_char(buf: &mut Vec<u8>, c: char) {
    match c {
        '&' => buf.extend_from_slice(b"&amp;"),
        '<' => buf.extend_from_slice(b"&lt;"),
        '>' => buf.extend_from_slice(b"&gt;"),
        '\r' => buf.extend_from_slice(b"&#xD;"),
        c => {
            let mut tmp = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
    }
}

/// A raw attribute value, normalized (XML 1.0 §3.3.3) and escaped for canonical output.
fn write_attr_value(buf: &mut Vec<u8>, raw: &str) -> Result<(), Error> {
    let mut pending_cr = false;
    for_each_piece(raw, |p| match p {
        Piece::Literal(s) => {
            let b = s.as_bytes();
            let mut i = 0;
            if pending_cr && b.first() == Some(&b'\n') {
                i = 1;
            }
            pending_cr = false;
            while i < b.len() {
                let Some(off) = b[i..]
                    .iter()
                    .position(|&c| matches!(c, b'\t' | b'\n' | b'\r' | b'"' | b'&' | b'<'))
                else {
                    buf.extend_from_slice(&b[i..]);
                    break;
                };
                let at = i + off;
                buf.extend_from_slice(&b[i..at]);
                i = at + 1;
                match b[at] {
                    b'"' => buf.extend_from_slice(b"&quot;"),
                    b'&' => buf.extend_from_slice(b"&amp;"),
                    b'<' => buf.extend_from_slice(b"&lt;"),
                    b'\r' => {
                        buf.push(b' ');
                        if b.get(i) == Some(&b'\n') {
                            i += 1;
                        } else if i == b.len() {
                            pending_cr = true;
                        }
                    }
                    _ => buf.push(b' '),
                }
            }
        }
        Piece::Ref(c) => {
            pending_cr = false;
            match c {
                '&' => buf.extend_from_slice(b"&amp;"),
                '<' => buf.extend_from_slice(b"&lt;"),
                '"' => buf.extend_from_slice(b"&quot;"),
                '\t' => buf.extend_from_slice(b"&#x9;"),
                '\n' => buf.extend_from_slice(b"&#xA;"),
                '\r' => buf.extend_from_slice(b"&#xD;"),
                c => {
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
    })
    .map_err(|e| Error::C14n(e.to_string()))
}

/// Canonicalizes the element subtree that `reader` yields next (typically a fragment reader
/// from [`Reader::fragment_reader`]), omitting every subtree whose start tag matches `omit`.
pub fn canonicalize<'a, W: Write>(
    reader: &mut Reader<'a>,
    opts: Options,
    out: W,
    mut omit: impl FnMut(&StartElement<'_, 'a>) -> bool,
) -> Result<(W, u64), Error> {
    let mut c = Canonicalizer::new(out, opts);
    let mut skip_depth: Option<usize> = None;
    while let Some(ev) = reader.next()? {
        if skip(&ev, &mut skip_depth, &mut omit) {
            continue;
        }
        c.event(&ev)?;
        if c.is_complete() {
            break;
        }
    }
    c.finish()
}

/// Tracks an omitted subtree: returns whether `ev` is part of one (starting one if `omit`
/// matches its start tag).
pub(crate) fn skip<'a>(
    ev: &Event<'_, 'a>,
    skip_depth: &mut Option<usize>,
    omit: &mut impl FnMut(&StartElement<'_, 'a>) -> bool,
) -> bool {
    if let Some(d) = *skip_depth {
        if let Event::End(e) = ev
            && e.depth == d
        {
            *skip_depth = None;
        }
        return true;
    }
    if let Event::Start(s) = ev
        && omit(s)
    {
        *skip_depth = Some(s.depth);
        return true;
    }
    false
}

/// Reads `doc` with default limits and returns the exclusive canonical form of the first
/// element whose start tag matches `select`, omitting subtrees matching `omit`. The whole
/// document is still read and checked. A convenience for tests and tools; verification streams
/// into a hasher instead.
pub fn canonicalize_element<'a>(
    doc: &'a [u8],
    opts: Options,
    mut select: impl FnMut(&StartElement<'_, 'a>) -> bool,
    mut omit: impl FnMut(&StartElement<'_, 'a>) -> bool,
) -> Result<Vec<u8>, Error> {
    let mut reader = Reader::new(doc, crate::xml::Limits::default())?;
    let mut active: Option<Canonicalizer<'a, Vec<u8>>> = None;
    let mut done: Option<Vec<u8>> = None;
    let mut skip_depth = None;
    while let Some(ev) = reader.next()? {
        match active.as_mut() {
            Some(c) => {
                if skip(&ev, &mut skip_depth, &mut omit) {
                    continue;
                }
                c.event(&ev)?;
                if c.is_complete()
                    && let Some(c) = active.take()
                {
                    done = Some(c.finish()?.0);
                }
            }
            None => {
                if let Event::Start(s) = &ev
                    && done.is_none()
                    && select(s)
                {
                    let mut c = Canonicalizer::new(Vec::new(), opts.clone());
                    c.event(&ev)?;
                    active = Some(c);
                }
            }
        }
    }
    done.ok_or_else(|| Error::Usage("no element matched the selection".into()))
}
