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
//! Work is linear in the input (issue 13 item 1): each start tag looks up only the prefixes it
//! uses and, with a PrefixList, the listed prefixes it declares itself (at the apex, every listed
//! prefix) — a listed prefix that an element does not redeclare has, by induction, already been
//! output with its in-scope value by an output ancestor, so exc-c14n §3 outputs nothing for it.
//! Lookups in the document's scope and in what ancestors rendered are hash lookups, and a
//! PrefixList holds at most [`MAX_INCLUSIVE_PREFIXES`] distinct prefixes (more is an error).
//!
//! Any error is fatal and nothing is ever reported as canonical output for a partial subtree.

use std::io::Write;

use crate::error::Error;
use crate::xml::chars::{self, Piece, for_each_piece};
use crate::xml::{Attribute, Bindings, Event, NsDecl, QName, Reader, StartElement, Text, XML_NS};

/// Most distinct prefixes an InclusiveNamespaces PrefixList may hold (`#default` included).
/// Real signers list a handful; a longer list is refused by [`Canonicalizer`] and by the
/// signature parser.
pub const MAX_INCLUSIVE_PREFIXES: usize = 64;

/// `http://www.w3.org/2001/10/xml-exc-c14n#`
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// `http://www.w3.org/2001/10/xml-exc-c14n#WithComments`
pub const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

/// Parameters of exclusive canonicalization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Keep comments (the `#WithComments` variant).
    pub with_comments: bool,
    /// The InclusiveNamespaces PrefixList; `""` stands for `#default`.
    pub inclusive_prefixes: Vec<String>,
}

impl Options {
    /// Parses a PrefixList attribute value (white-space separated; `#default` for the default
    /// namespace).
    #[must_use]
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

impl Options {
    /// Fails when the PrefixList holds more than [`MAX_INCLUSIVE_PREFIXES`] distinct prefixes.
    pub(crate) fn check_prefix_list(&self) -> Result<(), String> {
        let n = PrefixSet::new(&self.inclusive_prefixes).len();
        if n > MAX_INCLUSIVE_PREFIXES {
            return Err(format!(
                "InclusiveNamespaces PrefixList of {n} prefixes (at most {MAX_INCLUSIVE_PREFIXES})"
            ));
        }
        Ok(())
    }
}

/// A PrefixList as a sorted set (`""` for `#default`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrefixSet(Vec<String>);

impl PrefixSet {
    fn new(list: &[String]) -> Self {
        let mut v = list.to_vec();
        v.sort_unstable();
        v.dedup();
        PrefixSet(v)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn contains(&self, prefix: &str) -> bool {
        crate::xml::work::add(1);
        self.0.binary_search_by(|p| p.as_str().cmp(prefix)).is_ok()
    }
}

/// The namespace bindings exclusive c14n has to consider at start tag `s` (§3): those of the
/// prefixes it visibly utilizes, and those of the listed prefixes it declares itself (every
/// listed prefix at the `apex`), each resolved in `s`'s scope, sorted by prefix, without
/// duplicates. Constant work per prefix whatever the size of the scope.
pub(crate) fn gather<'a>(
    s: &StartElement<'_, 'a>,
    list: &PrefixSet,
    apex: bool,
    cand: &mut Vec<NsDecl<'a>>,
) {
    cand.clear();
    // Visibly utilized prefixes: the reader already resolved them (element and attribute
    // namespaces), so no lookup is needed.
    if s.name.prefix != "xml" {
        cand.push(NsDecl {
            prefix: s.name.prefix,
            uri: s.namespace,
        });
    }
    for a in s.attributes {
        if !a.name.prefix.is_empty() && a.name.prefix != "xml" {
            cand.push(NsDecl {
                prefix: a.name.prefix,
                uri: a.namespace,
            });
        }
    }
    if !list.is_empty() {
        if apex {
            for p in &list.0 {
                if p == "xml" {
                    continue;
                }
                match s.binding(p) {
                    Some(d) => cand.push(d),
                    None if p.is_empty() => cand.push(NsDecl {
                        prefix: "",
                        uri: "",
                    }),
                    None => {}
                }
            }
        } else {
            for d in s.namespace_decls {
                if list.contains(d.prefix) {
                    cand.push(*d);
                }
            }
        }
    }
    if cand.len() > 1 {
        cand.sort_unstable_by(|a, b| chars::cmp(a.prefix, b.prefix));
        cand.dedup_by(|a, b| chars::eq(a.prefix, b.prefix));
    }
}
/// Streaming exclusive canonicalizer of one element subtree.
#[derive(Debug)]
pub struct Canonicalizer<'a, W: Write> {
    out: W,
    buf: Vec<u8>,
    opts: Options,
    list: PrefixSet,
    rendered: Bindings<'a>,
    frames: Vec<usize>,
    ns_scratch: Vec<NsDecl<'a>>,
    render_scratch: Vec<NsDecl<'a>>,
    attr_scratch: Vec<(usize, &'a str, &'a str)>,
    written: u64,
    started: bool,
    finished: bool,
    /// Bytes of namespace nodes rendered and of namespace URIs compared (see
    /// [`NAMESPACE_ALLOWANCE`]).
    ns_work: u64,
    /// Bytes of everything else the canonical form holds: names, attributes, text.
    content: u64,
}

/// Namespace work the canonical form may cost beyond twice its other content, in bytes.
/// Exclusive c14n renders an inherited binding again on every element that uses it without an
/// output ancestor having rendered it: one 64 KiB declaration on an unsigned root, used by
/// thousands of `<p:e/>` after a replayed SignedInfo, made every six input bytes 64 KiB of
/// canonical output to hash (about 10^4 times the input; dsig review M2). Real documents render
/// a few short URIs per element, well inside twice their content.
pub const NAMESPACE_ALLOWANCE: u64 = 1 << 20;

impl<'a, W: Write> Canonicalizer<'a, W> {
    /// A canonicalizer writing to `out`.
    pub fn new(out: W, opts: Options) -> Self {
        Canonicalizer {
            out,
            buf: Vec::with_capacity(BUF),
            list: PrefixSet::new(&opts.inclusive_prefixes),
            opts,
            rendered: Bindings::default(),
            frames: Vec::new(),
            ns_scratch: Vec::new(),
            render_scratch: Vec::new(),
            attr_scratch: Vec::new(),
            written: 0,
            started: false,
            finished: false,
            ns_work: 0,
            content: 0,
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
            Event::Start(s) => {
                let mut cand = std::mem::take(&mut self.ns_scratch);
                gather(s, &self.list, self.frames.is_empty(), &mut cand);
                let r = self.start(s.name, s.attributes, &cand);
                self.ns_scratch = cand;
                r
            }
            Event::End(e) => {
                let Some(len) = self.frames.pop() else {
                    return Err(Error::C14n("end tag without start".into()));
                };
                self.rendered.truncate(len);
                self.content += e.name.raw.len() as u64 + 3;
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
                    self.content += c.raw.len() as u64 + 7;
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

    /// The PrefixList in force, as a set.
    pub(crate) fn prefix_set(&self) -> &PrefixSet {
        &self.list
    }

    /// Feeds a start tag whose bindings to consider were already gathered (by [`gather`], on
    /// the reading thread of the digest pipeline).
    pub(crate) fn start_gathered(
        &mut self,
        name: QName<'a>,
        attributes: &[Attribute<'a>],
        cand: &[NsDecl<'a>],
    ) -> Result<(), Error> {
        if self.finished {
            return Err(Error::C14n(
                "event after the end of the canonicalized subtree".into(),
            ));
        }
        self.start(name, attributes, cand)
    }

    fn start(
        &mut self,
        name: QName<'a>,
        attributes: &[Attribute<'a>],
        gathered: &[NsDecl<'a>],
    ) -> Result<(), Error> {
        if self.frames.is_empty() && self.started {
            return Err(Error::C14n("a second apex element".into()));
        }
        if self.list.0.len() > MAX_INCLUSIVE_PREFIXES {
            return Err(Error::C14n(format!(
                "InclusiveNamespaces PrefixList of more than {MAX_INCLUSIVE_PREFIXES} prefixes"
            )));
        }
        self.started = true;
        // Namespace nodes to render (exc-c14n §3): of the gathered bindings, those whose value
        // differs from what an output ancestor rendered (an empty default needs no `xmlns=""`
        // unless a default was rendered).
        let mut cand: Vec<NsDecl<'a>> = std::mem::take(&mut self.render_scratch);
        cand.clear();
        let mut ns_work = 0u64;
        for d in gathered {
            let needed = match self.rendered.index_of(d.prefix) {
                // The binding an ancestor rendered is most often the very one in scope (the
                // same slice): no need to compare the text.
                Some(i) => self.rendered.as_slice().get(i).is_none_or(|r| {
                    if std::ptr::eq(r.uri, d.uri) {
                        return false;
                    }
                    ns_work += d.uri.len() as u64;
                    !chars::eq(r.uri, d.uri)
                }),
                None => !(d.prefix.is_empty() && d.uri.is_empty()),
            };
            if needed {
                ns_work += (d.prefix.len() + d.uri.len() + 10) as u64;
                cand.push(*d);
            }
        }
        self.content += name.raw.len() as u64 + 2;
        for a in attributes {
            self.content += (a.name.raw.len() + a.raw_value.len() + 4) as u64;
        }

        self.frames.push(self.rendered.len());
        self.push(b"<");
        self.push(name.raw.as_bytes());
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
        for d in &cand {
            self.rendered.push(*d);
        }
        self.render_scratch = cand;

        let mut attrs = std::mem::take(&mut self.attr_scratch);
        attrs.clear();
        attrs.extend(attributes.iter().enumerate().map(|(i, a)| {
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
            attrs.sort_unstable_by(|a, b| {
                let by_ns = if std::ptr::eq(a.1, b.1) {
                    std::cmp::Ordering::Equal
                } else {
                    let (o, examined) = cmp_counting(a.1, b.1);
                    ns_work += examined as u64;
                    o
                };
                by_ns.then_with(|| chars::cmp(a.2, b.2))
            });
        }
        self.ns_work += ns_work;
        if self.ns_work > self.content.saturating_mul(2) + NAMESPACE_ALLOWANCE {
            return Err(Error::C14n(format!(
                "namespace nodes rendered or compared ({} bytes) beyond twice the content ({} \
                 bytes) and {NAMESPACE_ALLOWANCE} bytes: an inherited namespace re-rendered \
                 on many elements",
                self.ns_work, self.content
            )));
        }
        for &(i, _, _) in &attrs {
            let Some(a) = attributes.get(i) else { continue };
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
        self.content += t.raw.len() as u64;
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

    /// The namespace work and the content counted so far (see [`NAMESPACE_ALLOWANCE`]).
    pub(crate) fn work(&self) -> (u64, u64) {
        (self.ns_work, self.content)
    }

    /// Starts the count from `work` (a document canonicalized in pieces, each by its own
    /// canonicalizer, is held to one allowance).
    pub(crate) fn with_work(mut self, work: (u64, u64)) -> Self {
        (self.ns_work, self.content) = work;
        self
    }

    /// Whether the apex element's start tag has been fed.
    pub(crate) fn is_started(&self) -> bool {
        self.started
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

/// Byte order of two namespace URIs, and how many bytes were looked at to find it.
fn cmp_counting(a: &str, b: &str) -> (std::cmp::Ordering, usize) {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let common = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    let o = match (x.get(common), y.get(common)) {
        (Some(p), Some(q)) => p.cmp(q),
        _ => x.len().cmp(&y.len()),
    };
    (o, common)
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

/// The bytes `write_attr_value` replaces in one literal run (TAB, LF, CR, `"`, and `&` or `<`,
/// which the reader never leaves in one), in order: two vectorized scans, each passing over
/// the run once (a search restarted from every hit would pass over the rest of a value again
/// for each `"` in it: quadratic in a value of quotes).
struct AttrSpecials<'b> {
    spaces: std::iter::Peekable<memchr::Memchr3<'b>>,
    others: std::iter::Peekable<memchr::Memchr3<'b>>,
}

impl<'b> AttrSpecials<'b> {
    fn new(b: &'b [u8]) -> Self {
        AttrSpecials {
            spaces: memchr::memchr3_iter(b'\t', b'\n', b'\r', b).peekable(),
            others: memchr::memchr3_iter(b'"', b'&', b'<', b).peekable(),
        }
    }

    /// The first position at or after `from`.
    fn next_from(&mut self, from: usize) -> Option<usize> {
        let first = |it: &mut std::iter::Peekable<memchr::Memchr3<'b>>| {
            while it.next_if(|&p| p < from).is_some() {}
            it.peek().copied()
        };
        match (first(&mut self.spaces), first(&mut self.others)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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
            let mut specials = AttrSpecials::new(b);
            while i < b.len() {
                let Some(at) = specials.next_from(i) else {
                    buf.extend_from_slice(&b[i..]);
                    break;
                };
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

#[cfg(test)]
mod attr_special_tests {
    use super::{AttrSpecials, write_attr_value};

    /// A value of quotes with a TAB at its end: each quote is found once, not by a search
    /// over the rest of the value (quadratic: 34 ms for a 64 KiB value, the default limit, and
    /// 8 s for this 1 MiB one in a release build).
    #[test]
    fn a_value_of_quotes_is_escaped_in_one_pass() {
        let n = 1 << 20;
        let raw = format!("{}\t", "\"".repeat(n));
        let mut buf = Vec::new();
        write_attr_value(&mut buf, &raw).unwrap();
        assert_eq!(buf.len(), n * "&quot;".len() + 1);
        assert!(buf.starts_with(b"&quot;&quot;") && buf.ends_with(b"&quot; "));
    }

    #[test]
    fn finds_the_first_special_byte() {
        let by_bytes = |b: &[u8]| {
            b.iter()
                .position(|c| matches!(c, b'\t' | b'\n' | b'\r' | b'"' | b'&' | b'<'))
        };
        let specials = [b'\t', b'\n', b'\r', b'"', b'&', b'<', b'a', b' ', 0xC3];
        for len in 0..6 {
            let mut idx = vec![0usize; len];
            loop {
                let v: Vec<u8> = idx.iter().map(|&i| specials[i]).collect();
                let mut found = AttrSpecials::new(&v);
                for from in 0..=len {
                    let want = by_bytes(&v[from..]).map(|p| p + from);
                    assert_eq!(found.next_from(from), want, "{v:?} from {from}");
                }
                let mut k = 0;
                while k < len && idx[k] == specials.len() - 1 {
                    idx[k] = 0;
                    k += 1;
                }
                if k == len {
                    break;
                }
                idx[k] += 1;
            }
        }
        let long = format!("{}\"{}\t", "x".repeat(100), "y".repeat(50));
        assert_eq!(AttrSpecials::new(long.as_bytes()).next_from(0), Some(100));
    }
}
