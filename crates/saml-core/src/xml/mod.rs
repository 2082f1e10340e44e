//! A hardened XML reader over quick-xml (XMLDSIG.md "Verifier rules", rule 1).
//!
//! The document is checked once as a whole (size, UTF-8, allowed characters), then cut into
//! tokens where quick-xml's parsers end them (module `token`: quick-xml's `ElementParser` and
//! `PiParser` over the checked text, without the per-token UTF-8 validation and event building of
//! `quick_xml::Reader`, whose cut the `xml_reader` fuzz target compares with ours).
//!
//! [`Reader`] turns a UTF-8 document into a stream of [`Event`]s that both the canonicalizer
//! ([`crate::c14n`]) and model builders consume, so one parse serves both. Every event carries its
//! byte span in the original document and resolved namespaces; names, attribute values and text
//! are borrowed from the document (no copies).
//!
//! What it refuses, beyond plain well-formedness: DOCTYPE (and so every entity or attribute-list
//! declaration), references to entities other than the five predefined ones, character references
//! to non-Chars (`&#0;`), processing instructions, names that are not QNames of NCNames
//! (`x::Root`, `x:=`), unbound prefixes, namespace declarations that XML Namespaces 1.0 forbids
//! (and relative namespace URIs, which exclusive c14n must fail on, and namespace URIs holding a
//! character reference, TAB, line end or `"`), duplicate attributes by
//! expanded name, `<` in attribute values, a second root, content outside the root, and an XML
//! declaration that is not version 1.0 / UTF-8. All sizes are bounded by [`Limits`], including
//! the number of namespace declarations in scope at once.
//!
//! Namespace work is linear in the input: prefix lookups ([`StartElement::lookup`],
//! [`StartElement::binding_index`]) go through an index of the scope and cost the same whatever
//! the number of bindings in scope (issue 13 item 1).
//!
//! Empty-element tags (`<a/>`) are reported as a [`Event::Start`] followed by an [`Event::End`].

pub(crate) mod chars;
pub mod cursor;
mod escape;
mod token;

use std::ops::Range;

use token::{Kind, Tokenizer};

use crate::error::{Error, LimitExceeded, XmlError};

pub use chars::{attribute_value, normalize_newlines, text_value};
pub use escape::{escape_attr, escape_text};

pub use crate::ns::{XML_NS, XMLNS_NS};

/// Resource limits. The defaults fit eduGAIN-sized metadata aggregates (tens of MB) and SAML
/// protocol messages; lower them for untrusted small inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted document, in bytes. Default 256 MiB.
    pub max_document_size: usize,
    /// Deepest element nesting. Default 64.
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element. Default 64.
    pub max_attributes: usize,
    /// Longest attribute value, in bytes. Default 64 KiB.
    pub max_attribute_len: usize,
    /// Longest single text node, in bytes. Default 16 MiB (embedded `data:` logos).
    pub max_text_len: usize,
    /// Longest element or attribute name, in bytes. Default 512.
    pub max_name_len: usize,
    /// Most namespace declarations in scope at once: the sum over an element and all its
    /// ancestors (a fragment reader's inherited bindings included). Default 256. Lookups do not
    /// depend on this number (they are hash lookups); it bounds what a scope can hold, and so
    /// the inherited scope that metadata entities and signed elements carry.
    pub max_namespace_declarations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_size: 256 << 20,
            max_depth: 64,
            max_attributes: 64,
            max_attribute_len: 64 << 10,
            max_text_len: 16 << 20,
            max_name_len: 512,
            max_namespace_declarations: 256,
        }
    }
}

/// A qualified name split into prefix (empty when none) and local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QName<'a> {
    /// The prefix, `""` when the name is unprefixed.
    pub prefix: &'a str,
    /// The local part.
    pub local: &'a str,
    /// The name as written (`prefix:local` or `local`).
    pub raw: &'a str,
}

impl<'a> QName<'a> {
    /// Splits and validates a QName: one optional prefix, both parts NCNames.
    pub fn parse(raw: &'a str) -> Result<Self, XmlError> {
        match chars::ascii_qname_colon(raw) {
            Some(Some(i)) => {
                return Ok(QName {
                    prefix: &raw[..i],
                    local: &raw[i + 1..],
                    raw,
                });
            }
            Some(None) => {
                return Ok(QName {
                    prefix: "",
                    local: raw,
                    raw,
                });
            }
            None => {}
        }
        Self::parse_general(raw)
    }

    /// [`QName::parse`] for any name (non-ASCII or not a QName: the error).
    fn parse_general(raw: &'a str) -> Result<Self, XmlError> {
        let (prefix, local) = match memchr::memchr(b':', raw.as_bytes()) {
            Some(i) => {
                let (p, l) = (&raw[..i], &raw[i + 1..]);
                if !chars::is_ncname(p) {
                    return Err(XmlError::InvalidName(raw.to_owned()));
                }
                (p, l)
            }
            None => ("", raw),
        };
        if !chars::is_ncname(local) {
            return Err(XmlError::InvalidName(raw.to_owned()));
        }
        Ok(QName { prefix, local, raw })
    }
}

/// A namespace binding: `xmlns:prefix="uri"`, or `xmlns="uri"` with an empty prefix.
/// An empty `uri` with an empty prefix undeclares the default namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsDecl<'a> {
    /// Bound prefix, `""` for the default namespace.
    pub prefix: &'a str,
    /// Namespace URI.
    pub uri: &'a str,
}

/// An attribute (not a namespace declaration) of a start tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Its name.
    pub name: QName<'a>,
    /// Its namespace URI, `""` for unprefixed attributes.
    pub namespace: &'a str,
    /// The value as written between the quotes (references not yet expanded).
    pub raw_value: &'a str,
}

impl<'a> Attribute<'a> {
    /// The normalized value (references expanded, white space normalized as for CDATA).
    #[must_use]
    pub fn value(&self) -> std::borrow::Cow<'a, str> {
        attribute_value(self.raw_value)
    }
}

/// A start tag.
#[derive(Debug, Clone)]
pub struct StartElement<'r, 'a> {
    /// The element name.
    pub name: QName<'a>,
    /// Its namespace URI (`""` when in no namespace).
    pub namespace: &'a str,
    /// The attributes, in document order, without namespace declarations.
    pub attributes: &'r [Attribute<'a>],
    /// The namespace declarations on this element, in document order (never `xml`).
    pub namespace_decls: &'r [NsDecl<'a>],
    /// All bindings in scope at this element, innermost last (later entries shadow earlier
    /// ones with the same prefix). Includes `namespace_decls` at its end.
    pub scope: &'r [NsDecl<'a>],
    /// Byte span of the start tag in the document.
    pub span: Range<usize>,
    /// Whether it was written as an empty-element tag (`<a/>`).
    pub empty: bool,
    /// Depth of this element; the root has depth 1.
    pub depth: usize,
    /// The reader's index of `scope` (prefix -> innermost binding), when the event comes from
    /// a [`Reader`]; without it lookups scan `scope`.
    bindings: Option<&'r Bindings<'a>>,
}

impl<'r, 'a> StartElement<'r, 'a> {
    /// Whether this element is `{namespace}local`.
    #[must_use]
    pub fn is(&self, namespace: &str, local: &str) -> bool {
        self.name.local == local && self.namespace == namespace
    }

    /// The raw value of the unprefixed attribute `name`.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<&'r Attribute<'a>> {
        self.attributes
            .iter()
            .find(|a| a.name.prefix.is_empty() && a.name.local == name)
    }

    /// Resolves `prefix` in this element's scope (`""` gives the default namespace, which is
    /// `Some("")` when none is declared).
    ///
    /// Takes constant time whatever the number of bindings in scope (a hash lookup in the
    /// reader's index).
    #[must_use]
    pub fn lookup(&self, prefix: &str) -> Option<&'a str> {
        match self.bindings {
            Some(b) => b.lookup(prefix),
            None => lookup(self.scope, prefix),
        }
    }

    /// The index in [`StartElement::scope`] of the binding of `prefix` in force here (`None`
    /// when the prefix is not declared, including the implicit `xml` and empty default).
    /// Constant time, like [`StartElement::lookup`].
    #[must_use]
    pub fn binding_index(&self, prefix: &str) -> Option<usize> {
        match self.bindings {
            Some(b) => b.index_of(prefix),
            None => {
                work::add(self.scope.len() as u64);
                self.scope.iter().rposition(|d| chars::eq(d.prefix, prefix))
            }
        }
    }

    /// The declaration of `prefix` in force here (`None` when not declared).
    pub(crate) fn binding(&self, prefix: &str) -> Option<NsDecl<'a>> {
        self.binding_index(prefix)
            .and_then(|i| self.scope.get(i))
            .copied()
    }
}

/// Namespace bindings in scope, innermost last, with an index from prefix to its innermost
/// binding so that a lookup costs the same whatever the number of bindings (issue 13 item 1:
/// scanning or rebuilding the scope per start tag was quadratic). Truncation restores the
/// shadowed bindings, so the total work is linear in the declarations read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bindings<'a> {
    decls: Vec<NsDecl<'a>>,
    /// For each entry of `decls`: 1 + the index of the binding of the same prefix it shadows,
    /// or 0.
    shadowed: Vec<u32>,
    innermost: std::collections::HashMap<&'a str, u32>,
    /// Whether `innermost` is kept (see [`Bindings::push`]).
    indexed: bool,
    /// The last prefixes the reader resolved through [`Bindings::lookup_memo`] while
    /// `innermost` is kept, with their index: a document uses a few prefixes over and over,
    /// and comparing a short prefix costs less than hashing it. Emptied whenever the bindings
    /// change, so it never answers differently from [`Bindings::index_of`].
    memo: [(&'a str, Option<u32>); MEMO],
    /// How many entries of `memo` are filled.
    memo_len: u8,
    /// The entry of `memo` the next miss replaces (once all are filled).
    memo_next: u8,
}

/// Entries of [`Bindings`]' lookup memo.
const MEMO: usize = 4;

/// Up to this many bindings, a backwards scan is as cheap as hashing and is used instead.
const SCAN_BINDINGS: usize = 16;

/// The index, once built, is given up only when the scope shrinks to this many bindings: a
/// document whose elements each cross [`SCAN_BINDINGS`] and back must not make every element
/// rebuild it (between two builds at least this many declarations are read again).
const UNINDEX_BINDINGS: usize = SCAN_BINDINGS / 2;

impl<'a> Bindings<'a> {
    pub(crate) fn from_slice(decls: &[NsDecl<'a>]) -> Self {
        let mut b = Bindings {
            decls: Vec::with_capacity(decls.len()),
            shadowed: Vec::with_capacity(decls.len()),
            ..Bindings::default()
        };
        for d in decls {
            b.push(*d);
        }
        b
    }

    pub(crate) fn as_slice(&self) -> &[NsDecl<'a>] {
        &self.decls
    }

    pub(crate) fn len(&self) -> usize {
        self.decls.len()
    }

    /// The prefix index is built when the scope grows past [`SCAN_BINDINGS`] bindings and
    /// given up when it shrinks to [`UNINDEX_BINDINGS`]: with few bindings, lookups scan, and
    /// hashing every declaration and every end of its scope would be wasted.
    pub(crate) fn push(&mut self, d: NsDecl<'a>) {
        let prev = self.index_of(d.prefix);
        self.push_shadowing(d, prev);
    }

    /// [`Bindings::push`] for a caller that has just looked `d.prefix` up: `prev` is what
    /// [`Bindings::index_of`] returned for it.
    pub(crate) fn push_shadowing(&mut self, d: NsDecl<'a>, prev: Option<usize>) {
        self.memo_len = 0;
        let at = self.decls.len();
        if !self.indexed && at >= SCAN_BINDINGS {
            for (i, e) in self.decls.iter().enumerate() {
                self.innermost.insert(e.prefix, i as u32);
            }
            self.indexed = true;
            work::add(at as u64);
        }
        if self.indexed {
            work::add(1);
            self.innermost.insert(d.prefix, at as u32);
        }
        self.shadowed.push(prev.map_or(0, |p| p as u32 + 1));
        self.decls.push(d);
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        if self.decls.len() > len {
            self.memo_len = 0;
        }
        while self.decls.len() > len {
            let (Some(d), Some(prev)) = (self.decls.pop(), self.shadowed.pop()) else {
                break;
            };
            if self.indexed {
                if prev == 0 {
                    self.innermost.remove(d.prefix);
                } else {
                    self.innermost.insert(d.prefix, prev - 1);
                }
            }
            work::add(1);
        }
        if self.indexed && self.decls.len() <= UNINDEX_BINDINGS {
            // Emptying costs its capacity; a large one is freed instead (its keys and values
            // need no drop).
            if self.innermost.capacity() > 4 * SCAN_BINDINGS {
                self.innermost = std::collections::HashMap::new();
            } else {
                self.innermost.clear();
            }
            self.indexed = false;
        }
    }

    /// Index of the innermost binding of `prefix`.
    pub(crate) fn index_of(&self, prefix: &str) -> Option<usize> {
        if self.indexed {
            work::add(1);
            self.innermost.get(prefix).map(|&i| i as usize)
        } else {
            let mut n = 0u64;
            let found = self.decls.iter().rposition(|d| {
                n += 1;
                chars::eq(d.prefix, prefix)
            });
            work::add(n);
            found
        }
    }

    /// [`Bindings::index_of`], answered from the memo of the last prefixes looked up when it
    /// holds `prefix` (only while the prefix index is kept: below that, the scan is as cheap).
    fn index_of_memo(&mut self, prefix: &'a str) -> Option<usize> {
        if !self.indexed {
            return self.index_of(prefix);
        }
        let filled = usize::from(self.memo_len);
        if let Some(&(_, i)) = self.memo[..filled]
            .iter()
            .find(|(p, _)| chars::eq(p, prefix))
        {
            work::add(1);
            return i.map(|i| i as usize);
        }
        let found = self.index_of(prefix);
        let slot = if filled < MEMO {
            self.memo_len += 1;
            filled
        } else {
            let slot = usize::from(self.memo_next);
            self.memo_next = ((slot + 1) % MEMO) as u8;
            slot
        };
        self.memo[slot] = (prefix, found.map(|i| i as u32));
        found
    }

    /// [`Bindings::lookup`] through the memo of the last prefixes looked up.
    pub(crate) fn lookup_memo(&mut self, prefix: &'a str) -> Option<&'a str> {
        let found = self.index_of_memo(prefix);
        self.resolve(found, prefix)
    }

    /// The URI `prefix` resolves to, with the implicit `xml` and empty default bindings.
    pub(crate) fn lookup(&self, prefix: &str) -> Option<&'a str> {
        self.resolve(self.index_of(prefix), prefix)
    }

    fn resolve(&self, found: Option<usize>, prefix: &str) -> Option<&'a str> {
        match found.and_then(|i| self.decls.get(i)) {
            Some(d) => Some(d.uri),
            None if prefix.is_empty() => Some(""),
            None if prefix == "xml" => Some(XML_NS),
            None => None,
        }
    }
}

pub(crate) fn lookup<'a>(scope: &[NsDecl<'a>], prefix: &str) -> Option<&'a str> {
    let mut n = 0u64;
    let found = scope.iter().rev().find(|d| {
        n += 1;
        chars::eq(d.prefix, prefix)
    });
    work::add(n);
    match found {
        Some(d) => Some(d.uri),
        None if prefix.is_empty() => Some(""),
        None if prefix == "xml" => Some(XML_NS),
        None => None,
    }
}

/// The effective bindings of a scope: one entry per prefix, the innermost binding, in the
/// order of the scope. Linear in the length of `scope`.
#[must_use]
pub fn effective_scope<'a>(scope: &[NsDecl<'a>]) -> Vec<NsDecl<'a>> {
    let mut out: Vec<NsDecl<'a>> = Vec::with_capacity(scope.len());
    if scope.len() <= SCAN_BINDINGS {
        // Small scopes (the ordinary case): a scan beats hashing, and is bounded.
        for d in scope.iter().rev() {
            if !out.iter().any(|o| o.prefix == d.prefix) {
                out.push(*d);
            }
        }
    } else {
        let mut seen: std::collections::HashSet<&'a str> =
            std::collections::HashSet::with_capacity(scope.len());
        for d in scope.iter().rev() {
            if seen.insert(d.prefix) {
                out.push(*d);
            }
        }
    }
    out.reverse();
    work::add(scope.len() as u64);
    out
}

/// Not part of the API: how [`Reader`] cuts `src` (text already checked, after any byte-order
/// mark) into tokens, for the `xml_reader` fuzz target, which compares it with how
/// `quick_xml::Reader` cuts the same text. Each item is a token's kind and byte range; the last is
/// `Err(offset)` if the tokenizer refused the text there.
#[doc(hidden)]
#[must_use]
pub fn tokens_for_fuzzing(src: &str) -> Vec<Result<(String, Range<usize>), usize>> {
    let mut t = Tokenizer::new(src);
    let mut out = Vec::new();
    loop {
        match t.next() {
            Ok(Some(tok)) => out.push(Ok((format!("{:?}", tok.kind), tok.start..tok.end))),
            Ok(None) => return out,
            Err((at, _)) => {
                out.push(Err(at));
                return out;
            }
        }
    }
}

/// A count of namespace-binding work (bindings visited, hash probes) done on this thread, for
/// tests that bound the work of the reader and the canonicalizer in the input size. Counted only
/// in builds with debug assertions (where the tests run); release builds pay nothing. Not part
/// of the stable API.
#[doc(hidden)]
pub mod work {
    use std::cell::Cell;

    thread_local! {
        static UNITS: Cell<u64> = const { Cell::new(0) };
        static START_TAGS: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts one start tag read by a reader on this thread (how many times a document is
    /// read, for tests that bound the passes over it).
    #[inline]
    pub fn start_tag() {
        if ENABLED {
            START_TAGS.with(|c| c.set(c.get().saturating_add(1)));
        }
    }

    /// Returns this thread's count of start tags read and resets it.
    #[must_use]
    pub fn take_start_tags() -> u64 {
        START_TAGS.with(|c| c.replace(0))
    }

    /// Whether work is counted in this build.
    pub const ENABLED: bool = cfg!(debug_assertions);

    /// Adds `n` units to this thread's count.
    #[inline]
    pub fn add(n: u64) {
        if ENABLED {
            UNITS.with(|c| c.set(c.get().saturating_add(n)));
        }
    }

    /// Returns this thread's count and resets it.
    #[must_use]
    pub fn take() -> u64 {
        UNITS.with(|c| c.replace(0))
    }
}

/// An end tag (or the synthetic end of an empty-element tag).
#[derive(Debug, Clone)]
pub struct EndElement<'a> {
    /// The element name.
    pub name: QName<'a>,
    /// Byte span of the end tag (empty for the end of an empty-element tag).
    pub span: Range<usize>,
    /// Depth of the element being closed.
    pub depth: usize,
}

/// Character data: a run of text, a single reference, or a CDATA section.
#[derive(Debug, Clone)]
pub struct Text<'a> {
    /// The data as written (escaped unless `cdata`).
    pub raw: &'a str,
    /// Whether this is the content of a CDATA section (nothing escaped).
    pub cdata: bool,
    /// Byte span in the document.
    pub span: Range<usize>,
}

impl<'a> Text<'a> {
    /// The character data (references expanded, line ends normalized).
    #[must_use]
    pub fn value(&self) -> std::borrow::Cow<'a, str> {
        if self.cdata {
            chars::normalize_newlines(self.raw)
        } else {
            text_value(self.raw)
        }
    }

    /// Whether the text is XML white space only.
    #[must_use]
    pub fn is_whitespace(&self) -> bool {
        !self.cdata
            && self
                .raw
                .bytes()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }
}

/// One token of the document.
#[derive(Debug, Clone)]
pub enum Event<'r, 'a> {
    /// A start tag (an empty-element tag gives a `Start` and then an `End`).
    Start(StartElement<'r, 'a>),
    /// An end tag.
    End(EndElement<'a>),
    /// Character data inside the root element.
    Text(Text<'a>),
    /// A comment (content between `<!--` and `-->`).
    Comment(Text<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Prolog,
    Content,
    Epilog,
    Done,
}

#[derive(Debug)]
struct Open<'a> {
    name: QName<'a>,
    namespace: &'a str,
    ns_len: usize,
}

/// The hardened pull reader. See the module docs for what it accepts.
#[derive(Debug)]
pub struct Reader<'a> {
    src: &'a str,
    base: usize,
    tok: Tokenizer<'a>,
    limits: Limits,
    scope: Bindings<'a>,
    open: Vec<Open<'a>>,
    attrs: Vec<Attribute<'a>>,
    pending_end: Option<usize>,
    state: State,
    fragment: bool,
    omit_at: Option<usize>,
    omitting: Option<usize>,
    cur: Cur<'a>,
    /// Namespace identities for the duplicate-attribute check (see [`NamespaceIds`]).
    ns_ids: NamespaceIds<'a>,
}

/// Small identities of namespace URIs, for comparing two attributes' namespaces without
/// comparing their text: a start tag of 64 attributes of one local name in 64 long URIs that
/// differ only at their end cost some 2,000 full URI comparisons (megabytes per tag of a few
/// hundred bytes, before any signature check; dsig review M1). A URI's text is hashed once per
/// binding that carries it (its slice, looked up by address), so the work is the bytes
/// declared, and built only for the rare tag with two attributes of one local name.
#[derive(Debug, Default)]
struct NamespaceIds<'a> {
    /// By the address and length of the URI slice (a binding's, or a constant).
    by_slice: std::collections::HashMap<(usize, usize), u32>,
    /// By the URI's text.
    by_text: std::collections::HashMap<&'a str, u32>,
}

impl<'a> NamespaceIds<'a> {
    /// The identity of `uri`: equal for equal text, whatever slice holds it.
    fn of(&mut self, uri: &'a str) -> u32 {
        let key = (uri.as_ptr() as usize, uri.len());
        if let Some(&id) = self.by_slice.get(&key) {
            work::add(1);
            return id;
        }
        work::add(1 + uri.len() as u64 / 64);
        let next = self.by_text.len() as u32;
        let id = *self.by_text.entry(uri).or_insert(next);
        self.by_slice.insert(key, id);
        id
    }
}

/// The event the reader is on (see [`Reader::current`]).
#[derive(Debug)]
enum Cur<'a> {
    None,
    Start { span: Range<usize>, empty: bool },
    End(EndElement<'a>),
    Text(Text<'a>),
    Comment(Text<'a>),
}

impl<'a> Reader<'a> {
    /// Checks the whole document (size, UTF-8, allowed characters) and prepares to read it.
    pub fn new(doc: &'a [u8], limits: Limits) -> Result<Self, Error> {
        let (src, base) = check_document(doc, &limits, false)?;
        Ok(Self::build(src, base, limits, Bindings::default(), false))
    }

    /// Like [`Reader::new`], with the document-wide character check on a second thread
    /// (worth it for documents of several MB).
    pub(crate) fn new_parallel(doc: &'a [u8], limits: Limits) -> Result<Self, Error> {
        let (src, base) = check_document(doc, &limits, true)?;
        Ok(Self::build(src, base, limits, Bindings::default(), false))
    }

    /// A reader over one element subtree of the same document, `range` being byte offsets in
    /// the whole document from the element's `<` to the end of its end tag, and `inherited` the
    /// namespace scope of its parent. Offsets in events stay those of the whole document. A
    /// range that ends before the element closes gives a prefix reader: it ends (`None`) at the
    /// end of the range with elements still open.
    pub fn fragment_reader(
        &self,
        range: Range<usize>,
        inherited: &[NsDecl<'a>],
    ) -> Result<Reader<'a>, Error> {
        let src = range
            .start
            .checked_sub(self.base)
            .zip(range.end.checked_sub(self.base))
            .and_then(|(s, e)| self.src.get(s..e))
            .ok_or_else(|| Error::Usage("fragment range outside the document".into()))?;
        if inherited.len() > self.limits.max_namespace_declarations {
            return Err(Error::Limit {
                offset: range.start,
                limit: LimitExceeded::NamespaceDeclarations(self.limits.max_namespace_declarations),
            });
        }
        let mut r = Self::build(
            src,
            range.start,
            self.limits,
            Bindings::from_slice(inherited),
            true,
        );
        r.state = State::Content;
        Ok(r)
    }

    /// A reader over one element subtree of a document that no [`Reader`] has checked yet:
    /// the bytes of `range` (byte offsets in `doc`, from the element's `<` to the end of its
    /// end tag) are checked as [`Reader::new`] checks a document (size, UTF-8, allowed
    /// characters), then read as [`Reader::fragment_reader`] reads a range, `inherited` being
    /// the namespace scope of the element's parent. Offsets in events are those of `doc`.
    /// Nothing read this way is authenticated: it is for reading parts of a document on other
    /// threads while its signature is checked, to be used only once the check succeeded.
    pub fn new_fragment(
        doc: &'a [u8],
        range: Range<usize>,
        inherited: &[NsDecl<'a>],
        limits: Limits,
    ) -> Result<Reader<'a>, Error> {
        let bytes = doc
            .get(range.clone())
            .ok_or_else(|| Error::Usage("fragment range outside the document".into()))?;
        if bytes.len() > limits.max_document_size {
            return Err(Error::Limit {
                offset: range.start + limits.max_document_size,
                limit: LimitExceeded::DocumentSize(limits.max_document_size),
            });
        }
        let src = check_utf8(bytes, range.start)?;
        if let Some((at, c)) = chars::find_invalid_char(bytes) {
            return Err(Error::xml(range.start + at, XmlError::InvalidChar(c)));
        }
        Self::build(src, range.start, limits, Bindings::default(), false)
            .fragment_reader(range, inherited)
    }

    /// A reader over a document that a [`Reader`] already accepted (`src` and `base` as
    /// returned by [`Reader::source`]), without checking it again.
    pub(crate) fn from_verified(src: &'a str, base: usize, limits: Limits) -> Self {
        Self::build(src, base, limits, Bindings::default(), false)
    }

    /// Leaves out the element subtree whose start tag begins at byte `offset`: no event of it
    /// is returned (used to hand out signed content without its enveloped ds:Signature).
    pub fn omit_subtree_at(&mut self, offset: usize) {
        self.omit_at = Some(offset);
    }

    /// The document text (after any byte-order mark) and the byte offset where it starts.
    #[must_use]
    pub fn source(&self) -> (&'a str, usize) {
        (self.src, self.base)
    }

    /// The limits this reader enforces.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn build(
        src: &'a str,
        base: usize,
        limits: Limits,
        scope: Bindings<'a>,
        fragment: bool,
    ) -> Self {
        Reader {
            src,
            base,
            tok: Tokenizer::new(src),
            limits,
            scope,
            open: Vec::with_capacity(16),
            attrs: Vec::with_capacity(16),
            pending_end: None,
            state: State::Prolog,
            fragment,
            omit_at: None,
            omitting: None,
            cur: Cur::None,
            ns_ids: NamespaceIds::default(),
        }
    }

    /// Current depth (number of open elements).
    #[must_use]
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    /// Byte offset (in the whole document) of the next unread input.
    #[must_use]
    pub fn position(&self) -> usize {
        self.base + self.tok.position()
    }

    /// All namespace bindings currently in scope, innermost last.
    #[must_use]
    pub fn scope(&self) -> &[NsDecl<'a>] {
        self.scope.as_slice()
    }

    /// The source between two positions reported by quick-xml (never panics).
    fn slice(&self, start: usize, end: usize) -> Result<&'a str, Error> {
        self.src.get(start..end).ok_or_else(|| {
            self.err(
                start,
                XmlError::Syntax("inconsistent token boundaries".into()),
            )
        })
    }

    fn err(&self, at: usize, kind: XmlError) -> Error {
        Error::xml(self.base + at, kind)
    }

    fn limit(&self, at: usize, limit: LimitExceeded) -> Error {
        Error::Limit {
            offset: self.base + at,
            limit,
        }
    }

    /// The next event, or `None` at the end of the document (or of the fragment).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event<'_, 'a>>, Error> {
        if self.advance()? {
            Ok(self.current())
        } else {
            Ok(None)
        }
    }

    /// Moves to the next event; `false` at the end. [`Reader::current`] then gives the event.
    /// This split form lets hot loops avoid moving whole events through `Result`s.
    pub fn advance(&mut self) -> Result<bool, Error> {
        self.cur = Cur::None;
        if let Some(at) = self.pending_end.take() {
            let end = self.pop(at..at)?;
            if self.omitting == Some(end.depth) {
                self.omitting = None;
            } else {
                self.cur = Cur::End(end);
                return Ok(true);
            }
        }
        loop {
            if self.state == State::Done {
                return Ok(false);
            }
            let tok = match self.tok.next() {
                Ok(Some(tok)) => tok,
                Ok(None) => {
                    let start = self.tok.position();
                    if let Some(open) = self.open.last() {
                        if self.fragment {
                            // A fragment that ends with open elements is a prefix reader.
                            self.state = State::Done;
                            return Ok(false);
                        }
                        let n = open.name.raw.to_owned();
                        return Err(self.err(start, XmlError::UnclosedElement(n)));
                    }
                    if self.state == State::Prolog {
                        return Err(self.err(start, XmlError::NoRoot));
                    }
                    self.state = State::Done;
                    return Ok(false);
                }
                Err((at, kind)) => return Err(self.err(at, kind)),
            };
            let (start, end) = (tok.start, tok.end);
            let span = self.base + start..self.base + end;
            match tok.kind {
                Kind::Start | Kind::Empty => {
                    let empty = tok.kind == Kind::Empty;
                    match self.state {
                        State::Prolog => self.state = State::Content,
                        State::Content => {}
                        _ => return Err(self.err(start, XmlError::MultipleRoots)),
                    }
                    let raw = self.slice(start, end)?;
                    self.start_tag(raw, start)?;
                    if self.omitting.is_none() && self.omit_at == Some(span.start) {
                        self.omitting = Some(self.open.len());
                    }
                    if self.omitting.is_some() {
                        if empty {
                            let end = self.pop(span.end..span.end)?;
                            if self.omitting == Some(end.depth) {
                                self.omitting = None;
                            }
                        }
                        continue;
                    }
                    if empty {
                        self.pending_end = Some(self.base + end);
                    }
                    work::start_tag();
                    self.cur = Cur::Start { span, empty };
                    return Ok(true);
                }
                Kind::End => {
                    // §3.1: `</` Name S? `>`; only XML white space may follow the name.
                    let name = self
                        .slice(start + 2, end - 1)?
                        .trim_end_matches([' ', '\t', '\r', '\n']);
                    // Bounded like a start tag's name before it is compared or kept (review
                    // C3: a 1 MB end tag was copied whole into the error).
                    if name.len() > self.limits.max_name_len {
                        return Err(
                            self.limit(start, LimitExceeded::NameLength(self.limits.max_name_len))
                        );
                    }
                    let Some(open) = self.open.last() else {
                        return Err(self.err(start, XmlError::TrailingContent));
                    };
                    if !chars::eq(open.name.raw, name) {
                        return Err(self.err(
                            start,
                            XmlError::MismatchedEndTag {
                                expected: open.name.raw.to_owned(),
                                found: name.to_owned(),
                            },
                        ));
                    }
                    let end = self.pop(span)?;
                    if let Some(d) = self.omitting {
                        if d == end.depth {
                            self.omitting = None;
                        }
                        continue;
                    }
                    self.cur = Cur::End(end);
                    return Ok(true);
                }
                Kind::Text => {
                    let raw = self.slice(start, end)?;
                    if self.state != State::Content {
                        if raw
                            .bytes()
                            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                        {
                            continue;
                        }
                        let kind = if self.state == State::Prolog {
                            XmlError::ContentBeforeRoot
                        } else {
                            XmlError::TrailingContent
                        };
                        return Err(self.err(start, kind));
                    }
                    if self.omitting.is_some() {
                        continue;
                    }
                    if has_cdata_end(raw.as_bytes()) {
                        return Err(self.err(start, XmlError::Syntax("']]>' in text".into())));
                    }
                    if raw.len() > self.limits.max_text_len {
                        return Err(
                            self.limit(start, LimitExceeded::TextLength(self.limits.max_text_len))
                        );
                    }
                    self.cur = Cur::Text(Text {
                        raw,
                        cdata: false,
                        span,
                    });
                    return Ok(true);
                }
                Kind::Ref => {
                    if self.state != State::Content {
                        return Err(self.err(start, XmlError::ContentBeforeRoot));
                    }
                    let name = self.src.get(start + 1..end.saturating_sub(1)).unwrap_or("");
                    chars::check_reference(name).map_err(|k| self.err(start, k))?;
                    let raw = self.slice(start, end)?;
                    if self.omitting.is_some() {
                        continue;
                    }
                    self.cur = Cur::Text(Text {
                        raw,
                        cdata: false,
                        span,
                    });
                    return Ok(true);
                }
                Kind::CData => {
                    if self.state != State::Content {
                        return Err(self.err(start, XmlError::ContentBeforeRoot));
                    }
                    let raw = self.src.get(start + 9..end.saturating_sub(3)).unwrap_or("");
                    if self.omitting.is_some() {
                        continue;
                    }
                    // A CDATA section is a text node like any other (dsig review L1).
                    if raw.len() > self.limits.max_text_len {
                        return Err(
                            self.limit(start, LimitExceeded::TextLength(self.limits.max_text_len))
                        );
                    }
                    self.cur = Cur::Text(Text {
                        raw,
                        cdata: true,
                        span,
                    });
                    return Ok(true);
                }
                Kind::Comment => {
                    let raw = self.src.get(start + 4..end.saturating_sub(3)).unwrap_or("");
                    if self.state == State::Content && self.omitting.is_none() {
                        self.cur = Cur::Comment(Text {
                            raw,
                            cdata: false,
                            span,
                        });
                        return Ok(true);
                    }
                    continue;
                }
                Kind::Decl => {
                    if start != 0 || self.fragment {
                        return Err(self.err(start, XmlError::ProcessingInstruction));
                    }
                    // `<?xml` ... `?>`: quick-xml reads the pseudo-attributes.
                    let content = self.slice(start + 2, end - 2)?;
                    let decl = quick_xml::events::BytesDecl::from_start(
                        quick_xml::events::BytesStart::from_content(content, 3),
                    );
                    check_decl(&decl).map_err(|k| self.err(start, k))?;
                    continue;
                }
                Kind::Pi => return Err(self.err(start, XmlError::ProcessingInstruction)),
            }
        }
    }

    /// The event [`Reader::advance`] moved to (`None` before the first call and at the end).
    #[inline]
    #[must_use]
    pub fn current(&self) -> Option<Event<'_, 'a>> {
        match &self.cur {
            Cur::None => None,
            Cur::Start { span, empty } => Some(self.start_event(span.clone(), *empty)),
            Cur::End(e) => Some(Event::End(e.clone())),
            Cur::Text(t) => Some(Event::Text(t.clone())),
            Cur::Comment(t) => Some(Event::Comment(t.clone())),
        }
    }

    #[inline]
    fn start_event(&self, span: Range<usize>, empty: bool) -> Event<'_, 'a> {
        let open = self.open.last().map(|o| (o.name, o.namespace, o.ns_len));
        let empty_name = QName {
            prefix: "",
            local: "",
            raw: "",
        };
        let (name, namespace, ns_len) = open.unwrap_or((empty_name, "", 0));
        Event::Start(StartElement {
            name,
            namespace,
            attributes: &self.attrs,
            namespace_decls: self.scope.as_slice().get(ns_len..).unwrap_or_default(),
            scope: self.scope.as_slice(),
            span,
            empty,
            depth: self.open.len(),
            bindings: Some(&self.scope),
        })
    }

    fn pop(&mut self, span: Range<usize>) -> Result<EndElement<'a>, Error> {
        let depth = self.open.len();
        let Some(open) = self.open.pop() else {
            return Err(Error::xml(span.start, XmlError::TrailingContent));
        };
        self.scope.truncate(open.ns_len);
        if self.open.is_empty() {
            self.state = if self.fragment {
                State::Done
            } else {
                State::Epilog
            };
        }
        Ok(EndElement {
            name: open.name,
            span,
            depth,
        })
    }

    /// Parses a start tag `raw` (from `<` to `>`) at `at`: names, attributes, namespaces.
    fn start_tag(&mut self, raw: &'a str, at: usize) -> Result<(), Error> {
        let limits = self.limits;
        if self.open.len() >= limits.max_depth {
            return Err(self.limit(at, LimitExceeded::Depth(limits.max_depth)));
        }
        let body = raw
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .map(|r| r.strip_suffix('/').unwrap_or(r))
            .ok_or_else(|| self.err(at, XmlError::Syntax("bad start tag".into())))?;
        let name_end = body
            .bytes()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(body.len());
        let raw_name = &body[..name_end];
        if raw_name.len() > limits.max_name_len {
            return Err(self.limit(at, LimitExceeded::NameLength(limits.max_name_len)));
        }
        let name = QName::parse(raw_name).map_err(|k| self.err(at, k))?;
        if name.prefix == "xmlns" {
            return Err(self.err(at, XmlError::InvalidName(raw_name.into())));
        }
        let ns_len = self.scope.len();
        self.attrs.clear();
        let mut rest = &body[name_end..];
        let mut count = 0usize;
        loop {
            let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
            if trimmed.is_empty() {
                break;
            }
            if trimmed.len() == rest.len() {
                return Err(self.err(
                    at,
                    XmlError::Syntax("missing white space between attributes".into()),
                ));
            }
            let (aname, value, after) = split_attribute(trimmed).ok_or_else(|| {
                self.err(
                    at,
                    XmlError::Syntax(format!("malformed attribute in <{raw_name}>")),
                )
            })?;
            rest = after;
            count += 1;
            if count > limits.max_attributes {
                return Err(self.limit(at, LimitExceeded::Attributes(limits.max_attributes)));
            }
            if aname.len() > limits.max_name_len {
                return Err(self.limit(at, LimitExceeded::NameLength(limits.max_name_len)));
            }
            if value.len() > limits.max_attribute_len {
                return Err(
                    self.limit(at, LimitExceeded::AttributeLength(limits.max_attribute_len))
                );
            }
            chars::check_attribute_value(value).map_err(|k| self.err(at, k))?;
            let qn = QName::parse(aname).map_err(|k| self.err(at, k))?;
            if qn.raw == "xmlns" || qn.prefix == "xmlns" {
                let prefix = if qn.prefix.is_empty() { "" } else { qn.local };
                self.declare(prefix, value, ns_len, at)?;
            } else {
                self.attrs.push(Attribute {
                    name: qn,
                    namespace: "",
                    raw_value: value,
                });
            }
        }
        // Resolve attribute namespaces now that all declarations on this element are known.
        for i in 0..self.attrs.len() {
            let p = self.attrs[i].name.prefix;
            if !p.is_empty() {
                let ns = self
                    .scope
                    .lookup_memo(p)
                    .ok_or_else(|| Error::xml(self.base + at, XmlError::UnboundPrefix(p.into())))?;
                self.attrs[i].namespace = ns;
            }
        }
        for i in 1..self.attrs.len() {
            let (a, b) = self.attrs.split_at(i);
            let cur = &b[0];
            for x in a {
                if !chars::eq(x.name.local, cur.name.local) {
                    continue;
                }
                // One local name twice: the same namespace by identity, not by text.
                let same = std::ptr::eq(x.namespace, cur.namespace)
                    || (x.namespace.len() == cur.namespace.len()
                        && self.ns_ids.of(x.namespace) == self.ns_ids.of(cur.namespace));
                if same {
                    return Err(self.err(at, XmlError::DuplicateAttribute(cur.name.raw.into())));
                }
            }
        }
        let Some(namespace) = self.scope.lookup_memo(name.prefix) else {
            return Err(self.err(at, XmlError::UnboundPrefix(name.prefix.into())));
        };
        self.open.push(Open {
            name,
            namespace,
            ns_len,
        });
        Ok(())
    }

    fn declare(
        &mut self,
        prefix: &'a str,
        uri: &'a str,
        ns_len: usize,
        at: usize,
    ) -> Result<(), Error> {
        let bad = |s: String| Error::xml(self.base + at, XmlError::BadNamespaceDeclaration(s));
        let prev = self.scope.index_of(prefix);
        if prev.is_some_and(|i| i >= ns_len) {
            return Err(self.err(at, XmlError::DuplicateAttribute(format!("xmlns:{prefix}"))));
        }
        if prefix == "xmlns" {
            return Err(bad("the xmlns prefix cannot be declared".into()));
        }
        if prefix == "xml" {
            if uri != XML_NS {
                return Err(bad("the xml prefix cannot be rebound".into()));
            }
            return Ok(());
        }
        if uri == XML_NS || uri == XMLNS_NS {
            return Err(bad(format!("{uri} cannot be bound to {prefix:?}")));
        }
        if uri.contains('&') {
            return Err(bad(format!(
                "references in namespace URIs are not supported ({uri:?})"
            )));
        }
        // A literal TAB, LF or CR attribute-normalizes to a space (XML 1.0 §3.3.3), so the URI
        // compared here and the one c14n writes would differ; a `"` can only be written back as
        // a reference. Neither belongs in a URI (RFC 3986 §2), and refusing them keeps
        // parse(write(x)) == x for every document read (issue 13 item 9).
        if uri
            .bytes()
            .any(|b| matches!(b, b'\t' | b'\n' | b'\r' | b'"'))
        {
            return Err(bad(format!(
                "namespace URI {uri:?} holds a TAB, line end or double quote"
            )));
        }
        if uri.is_empty() {
            if !prefix.is_empty() {
                return Err(bad(format!("prefix {prefix:?} cannot be undeclared")));
            }
        } else if !chars::is_absolute_uri(uri) {
            return Err(bad(format!("relative namespace URI {uri:?}")));
        }
        if self.scope.len() >= self.limits.max_namespace_declarations {
            return Err(self.limit(
                at,
                LimitExceeded::NamespaceDeclarations(self.limits.max_namespace_declarations),
            ));
        }
        self.scope.push_shadowing(NsDecl { prefix, uri }, prev);
        Ok(())
    }
}

/// Whether text contains `]]>` (not allowed in character data, XML 1.0 §2.4). Text rarely
/// contains `>` at all, so one byte search decides almost always.
fn has_cdata_end(b: &[u8]) -> bool {
    memchr::memchr_iter(b'>', b).any(|i| i >= 2 && &b[i - 2..i] == b"]]")
}

/// Splits `name="value" rest` (value without quotes).
fn split_attribute(s: &str) -> Option<(&str, &str, &str)> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let eq = memchr::memchr(b'=', s.as_bytes())?;
    let name = s[..eq].trim_end_matches([' ', '\t', '\r', '\n']);
    if name.is_empty() || name.bytes().any(ws) {
        return None;
    }
    let after = s[eq + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
    let quote = *after.as_bytes().first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let body = &after[1..];
    let close = memchr::memchr(quote, body.as_bytes())?;
    Some((name, &body[..close], &body[close + 1..]))
}

fn check_decl(d: &quick_xml::events::BytesDecl<'_>) -> Result<(), XmlError> {
    let version = d
        .version()
        .map_err(|e| XmlError::BadDeclaration(e.to_string()))?;
    if version != "1.0" {
        return Err(XmlError::BadDeclaration(format!("version {version}")));
    }
    if let Some(enc) = d.encoding() {
        let enc = enc.map_err(|e| XmlError::BadDeclaration(e.to_string()))?;
        if !enc.eq_ignore_ascii_case("utf-8") {
            return Err(XmlError::BadDeclaration(format!(
                "encoding {enc} (only UTF-8 is accepted)"
            )));
        }
    }
    Ok(())
}

/// `bytes` as text, or where (offset `base` + position) it stops being UTF-8.
fn check_utf8(bytes: &[u8], base: usize) -> Result<&str, Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Ok(s),
        // The fast validator does not say where; the standard one does.
        Err(_) => std::str::from_utf8(bytes)
            .map_err(|e| Error::xml(base + e.valid_up_to(), XmlError::NotUtf8)),
    }
}

/// Size limit, BOM, UTF-8 and XML Char checks over the whole input, once.
fn check_document<'a>(
    doc: &'a [u8],
    limits: &Limits,
    parallel: bool,
) -> Result<(&'a str, usize), Error> {
    if doc.len() > limits.max_document_size {
        return Err(Error::Limit {
            offset: limits.max_document_size,
            limit: LimitExceeded::DocumentSize(limits.max_document_size),
        });
    }
    let (bytes, base) = match doc.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, 3),
        None => (doc, 0),
    };
    let utf8 = || check_utf8(bytes, base);
    let (src, invalid) = if parallel {
        std::thread::scope(|sc| {
            let chars = sc.spawn(|| chars::find_invalid_char(bytes));
            let src = utf8();
            (src, chars.join().unwrap_or(Some((0, 0))))
        })
    } else {
        (utf8(), chars::find_invalid_char(bytes))
    };
    let src = src?;
    if src.starts_with('\u{FEFF}') {
        // A second byte-order mark is content before the root (U+FEFF is a character, not
        // white space).
        return Err(Error::xml(base, XmlError::ContentBeforeRoot));
    }
    if let Some((at, c)) = invalid {
        return Err(Error::xml(base + at, XmlError::InvalidChar(c)));
    }
    Ok((src, base))
}

/// Collects the concatenated character data of the current element's text children until its
/// end tag (comments do not split a value, XMLDSIG.md rule 7). Fails on child elements.
pub fn read_text(reader: &mut Reader<'_>) -> Result<String, Error> {
    let mut out = String::new();
    let max = reader.limits.max_text_len;
    loop {
        let at = reader.position();
        match reader.next()? {
            Some(Event::Text(t)) => {
                let v = t.value();
                if out.is_empty() {
                    // Usually the only piece: keep its decoded copy instead of copying again.
                    out = v.into_owned();
                } else {
                    out.push_str(&v);
                }
                // The pieces a reference or a comment splits the text into are one value:
                // bounded as one (dsig review L1).
                if out.len() > max {
                    return Err(Error::Limit {
                        offset: at,
                        limit: LimitExceeded::TextLength(max),
                    });
                }
            }
            Some(Event::Comment(_)) => {}
            Some(Event::End(_)) => return Ok(out),
            Some(Event::Start(s)) => {
                return Err(Error::xml(
                    at,
                    XmlError::Syntax(format!(
                        "unexpected element <{}> in text content",
                        s.name.raw
                    )),
                ));
            }
            None => {
                return Err(Error::xml(
                    at,
                    XmlError::Syntax("unexpected end of input".into()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
