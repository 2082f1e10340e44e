//! The one model cursor: a pull cursor over the hardened reader's events for element-only
//! content, which the protocol messages (`crate::protocol`) and the metadata model
//! (`saml-metadata`) are built with. Children one at a time, text content, typed attributes,
//! errors that name the element and its byte offset.
//!
//! A cursor is made from verified content ([`Cursor::verified`], [`Cursor::verified_fragment`]:
//! only bytes a signature covered) or, for tools and for reading what is checked afterwards,
//! through the deliberately named [`Cursor::unverified`]; [`Cursor::is_verified`] says which.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::dsig::Verified;
use crate::error::{Error, LimitExceeded, ProtocolError};
use crate::time::parse_datetime;
use crate::xml::{Event, NsDecl, Reader, read_text};

/// The XML white-space characters (XML 1.0 §2.3 `S`): space, tab, CR, LF. Not U+00A0, U+3000,
/// U+2028, U+0085 or any other Unicode `White_Space`.
#[must_use]
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `s` without leading and trailing XML white space (only [`is_xml_space`] characters).
#[must_use]
pub fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

/// `s` cut to at most `max` bytes, at a character boundary.
#[must_use]
pub fn cut_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` whole when it has at most `max` bytes, else its first bytes ([`cut_to`]) and `…`: how a
/// value with no length bound of its own is kept or shown bounded.
#[must_use]
pub fn shortened(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        s.into()
    } else {
        format!("{}…", cut_to(s, max)).into()
    }
}

/// XML Schema `whiteSpace=collapse` (XML Schema Part 2 §4.3.6): runs of XML white space become
/// one space, none at the ends.
#[must_use]
pub fn collapse(s: &str) -> String {
    s.split(is_xml_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An element that breaks its schema: a missing or malformed attribute, unexpected content.
/// Each crate maps it to its own error (`ProtocolError::Malformed` here, `Error::Invalid` in
/// saml-metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Local name of the element.
    pub element: String,
    /// Byte offset of its start tag (or of the offending text).
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        ProtocolError::Malformed {
            element: m.element,
            offset: m.offset,
            message: m.message,
        }
        .into()
    }
}

/// What reading with a [`Cursor`] can fail with: the element breaks its schema, or the reader
/// refused the XML.
#[derive(Debug)]
pub enum CursorError {
    /// The element breaks its schema.
    Malformed(Malformed),
    /// The hardened reader refused the input.
    Xml(Error),
}

impl From<Error> for CursorError {
    fn from(e: Error) -> Self {
        CursorError::Xml(e)
    }
}

impl From<Malformed> for CursorError {
    fn from(m: Malformed) -> Self {
        CursorError::Malformed(m)
    }
}

impl From<CursorError> for Error {
    fn from(e: CursorError) -> Self {
        match e {
            CursorError::Malformed(m) => m.into(),
            CursorError::Xml(e) => e,
        }
    }
}

/// An attribute of an [`Elem`]: (prefix, namespace, local name, value).
type Attr<'a> = (&'a str, &'a str, &'a str, Cow<'a, str>);

/// A start tag, copied out of the reader so that reading can go on.
#[derive(Debug, Clone)]
pub struct Elem<'a> {
    /// Namespace of the element name.
    pub ns: &'a str,
    /// Local name.
    pub local: &'a str,
    /// Prefix of the element name as written.
    pub prefix: &'a str,
    attrs: Vec<Attr<'a>>,
    /// How many namespace declarations the start tag carries itself.
    pub own_decls: usize,
    /// Byte offset of the start tag.
    pub start: usize,
    /// Depth (the root is 1).
    pub depth: usize,
}

impl<'a> Elem<'a> {
    /// Whether this is `{ns}local`.
    #[must_use]
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns == ns
    }

    /// The attributes as (prefix, namespace, local name, value).
    #[must_use]
    pub fn attributes(&self) -> &[Attr<'a>] {
        &self.attrs
    }

    /// An unqualified attribute's value.
    #[must_use]
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.1.is_empty() && a.2 == local)
            .map(|a| a.3.as_ref())
    }

    /// A namespace-qualified attribute's value.
    #[must_use]
    pub fn attr_ns(&self, ns: &str, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.1 == ns && a.2 == local)
            .map(|a| a.3.as_ref())
    }

    /// An unqualified attribute's value, owned.
    #[must_use]
    pub fn string(&self, local: &str) -> Option<String> {
        self.attr(local).map(str::to_owned)
    }

    /// A [`Malformed`] naming this element.
    #[must_use]
    pub fn invalid(&self, message: impl Into<String>) -> Malformed {
        Malformed {
            element: self.local.to_owned(),
            offset: self.start,
            message: message.into(),
        }
    }

    /// A required unqualified attribute.
    pub fn required(&self, local: &str) -> Result<&str, Malformed> {
        self.attr(local)
            .ok_or_else(|| self.invalid(format!("missing required attribute {local}")))
    }

    /// An `xs:boolean` attribute (`true`, `false`, `1`, `0`, XML white space collapsed).
    pub fn bool_attr(&self, local: &str) -> Result<Option<bool>, Malformed> {
        self.attr(local)
            .map(|v| match xml_trim(v) {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(self.invalid(format!("{local}={other:?} is not a boolean"))),
            })
            .transpose()
    }

    /// An `xs:unsignedShort` attribute.
    pub fn u16_attr(&self, local: &str) -> Result<Option<u16>, Malformed> {
        self.attr(local)
            .map(|v| {
                xml_trim(v)
                    .parse()
                    .map_err(|_| self.invalid(format!("{local}={v:?} is not an unsignedShort")))
            })
            .transpose()
    }

    /// An `xs:dateTime` attribute.
    pub fn time_attr(&self, local: &str) -> Result<Option<SystemTime>, Malformed> {
        self.attr(local)
            .map(|v| {
                parse_datetime(v)
                    .ok_or_else(|| self.invalid(format!("{local}={v:?} is not an xs:dateTime")))
            })
            .transpose()
    }

    /// A required `xs:dateTime` attribute.
    pub fn required_time(&self, local: &str) -> Result<SystemTime, Malformed> {
        self.time_attr(local)?
            .ok_or_else(|| self.invalid(format!("missing required attribute {local}")))
    }
}

/// Pull cursor over element-only content.
#[derive(Debug)]
pub struct Cursor<'a> {
    r: Reader<'a>,
    verified: bool,
    /// Bytes model builders may still copy beyond what they read ([`Cursor::charge_copy`]).
    copy_allowance: usize,
    /// The allowance at the start, for the error.
    copy_limit: usize,
    /// Where the allowance is drawn from instead, when several cursors share one.
    pool: Option<CopyPool>,
}

/// One document's model allowance ([`MODEL_ALLOWANCE_FACTOR`] times its bytes and 1 KiB, as
/// one cursor over it has),
/// shared by cursors over its parts that are read on several threads
/// ([`Cursor::unverified_pooled`]): together they copy no more than one cursor over the whole
/// document may, however the copies fall between the parts. Which part is refused when the
/// pool runs dry can depend on the threads' timing; whether one is does not.
#[derive(Debug, Clone)]
pub struct CopyPool {
    left: Arc<AtomicUsize>,
    limit: usize,
}

impl CopyPool {
    /// The pool of a document of `len` bytes.
    #[must_use]
    pub fn for_document(len: usize) -> Self {
        let limit = copy_allowance(len);
        CopyPool {
            left: Arc::new(AtomicUsize::new(limit)),
            limit,
        }
    }

    /// Takes `bytes` from the pool, or fails leaving it as it was.
    fn take(&self, bytes: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// How many times the bytes under a cursor model builders may hold beyond them
/// ([`Cursor::charge_copy`]): what they copy, and the fixed sizes of the values they keep. A
/// real federation aggregate's model charges about half its bytes, an aggregate of minimal
/// entities (an SP with one endpoint and no key) about four times them; a 48-byte
/// `md:PDPDescriptor` is a 616-byte role, so that a document of such elements made a model 13
/// times its size, on `load`'s helper threads before the signature was known to be good
/// (review A1). With the bytes the model's strings hold (at most the document's), a model is
/// at most about seven times the document.
pub const MODEL_ALLOWANCE_FACTOR: usize = 6;

/// What a cursor over a whole document of `len` bytes lets model builders hold beyond them
/// (see [`Cursor::charge_copy`]): [`MODEL_ALLOWANCE_FACTOR`] times the bytes, and 1 KiB.
fn copy_allowance(len: usize) -> usize {
    len.saturating_mul(MODEL_ALLOWANCE_FACTOR)
        .saturating_add(1024)
}

/// What a cursor over one part of a document lets model builders hold:
/// [`MODEL_ALLOWANCE_FACTOR`] times its bytes, the 1 KiB being the document's once. Parts read one at a time (entities from the lazy index,
/// root children on `load`'s helper threads) then copy at most what one cursor over the whole
/// document allows: with 1 KiB for each, 40,000 small entities under one long binding held up
/// to twenty times the document in copies where `load` on one thread refused it (dsig review
/// L3).
fn part_allowance(len: usize) -> usize {
    len.saturating_mul(MODEL_ALLOWANCE_FACTOR)
}

impl<'a> Cursor<'a> {
    fn new(r: Reader<'a>, allowance: usize, verified: bool) -> Self {
        Cursor {
            r,
            verified,
            copy_allowance: allowance,
            copy_limit: allowance,
            pool: None,
        }
    }

    /// A cursor over the signed element of `v` (its ds:Signature left out): what model
    /// builders read.
    pub fn verified(v: &Verified<'a>) -> Result<Self, Error> {
        Ok(Cursor::new(
            v.events()?,
            copy_allowance(v.signed_range().len()),
            true,
        ))
    }

    /// A cursor over one element inside the signed content of `v` (see
    /// [`Verified::fragment`]).
    pub fn verified_fragment(
        v: &Verified<'a>,
        range: Range<usize>,
        inherited: &[NsDecl<'a>],
    ) -> Result<Self, Error> {
        let len = range.len();
        Ok(Cursor::new(
            v.fragment(range, inherited)?,
            part_allowance(len),
            true,
        ))
    }

    /// A cursor over content no signature has covered: for tools that inspect documents and
    /// for reading what is checked afterwards. Nothing read this way is authenticated.
    #[must_use]
    pub fn unverified(r: Reader<'a>) -> Self {
        let len = r.source().0.len();
        Cursor::new(r, copy_allowance(len), false)
    }

    /// [`Cursor::unverified`] over one part of a document (a [`Reader::new_fragment`]) that
    /// is read part by part: model builders may hold [`MODEL_ALLOWANCE_FACTOR`] times its bytes
    /// (the 1 KiB slack being
    /// the whole document's), so that the parts together copy no more than one cursor over
    /// the document allows.
    #[must_use]
    pub fn unverified_part(r: Reader<'a>) -> Self {
        let len = r.source().0.len();
        Cursor::new(r, part_allowance(len), false)
    }

    /// [`Cursor::unverified`] over one part of a document (a [`Reader::new_fragment`]) whose
    /// parts are read on several threads: model builders draw from the document's `pool`,
    /// shared by every part's cursor.
    #[must_use]
    pub fn unverified_pooled(r: Reader<'a>, pool: &CopyPool) -> Self {
        let mut c = Cursor::new(r, 0, false);
        c.copy_limit = pool.limit;
        c.pool = Some(pool.clone());
        c
    }

    /// Accounts for `bytes` a model builder copies beyond the content it reads (the namespace
    /// declarations an element kept as written inherits, say) or the fixed size of a value it
    /// keeps: at most [`MODEL_ALLOWANCE_FACTOR`] times the bytes under the cursor plus 1 KiB in
    /// all, so that what a document can make a model hold stays
    /// proportional to the document, however its declarations are arranged. Fails with
    /// [`LimitExceeded::ModelCopies`] beyond it.
    pub fn charge_copy(&mut self, bytes: usize) -> Result<(), Error> {
        if let Some(pool) = &self.pool {
            return if pool.take(bytes) {
                Ok(())
            } else {
                Err(Error::Limit {
                    offset: self.r.position(),
                    limit: LimitExceeded::ModelCopies(self.copy_limit),
                })
            };
        }
        match self.copy_allowance.checked_sub(bytes) {
            Some(left) => {
                self.copy_allowance = left;
                Ok(())
            }
            None => Err(Error::Limit {
                offset: self.r.position(),
                limit: LimitExceeded::ModelCopies(self.copy_limit),
            }),
        }
    }

    /// Whether the content comes from a verified signature.
    #[must_use]
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// The underlying reader (its scope, source and position).
    #[must_use]
    pub fn reader(&self) -> &Reader<'a> {
        &self.r
    }

    /// The next child element of the current element; `None` at its end tag (or the end of
    /// input). Comments and white space are passed over; other text is an error naming
    /// `parent`.
    pub fn next_child(&mut self, parent: &str) -> Result<Option<Elem<'a>>, CursorError> {
        loop {
            if !self.r.advance()? {
                return Ok(None);
            }
            match self.r.current() {
                Some(Event::Start(s)) => {
                    return Ok(Some(Elem {
                        ns: s.namespace,
                        local: s.name.local,
                        prefix: s.name.prefix,
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.name.prefix, a.namespace, a.name.local, a.value()))
                            .collect(),
                        own_decls: s.namespace_decls.len(),
                        start: s.span.start,
                        depth: s.depth,
                    }));
                }
                Some(Event::End(_)) | None => return Ok(None),
                Some(Event::Comment(_)) => {}
                Some(Event::Text(t)) => {
                    if !t.is_whitespace() {
                        return Err(Malformed {
                            element: parent.to_owned(),
                            offset: t.span.start,
                            message: "unexpected text in element-only content".into(),
                        }
                        .into());
                    }
                }
            }
        }
    }

    /// The text content of the element just returned, exactly as written (comments do not
    /// split it). For `xs:string` based values (NameID, Issuer, StatusMessage): nothing is
    /// trimmed, so the signed text is the text returned.
    pub fn text(&mut self) -> Result<String, Error> {
        read_text(&mut self.r)
    }

    /// The text content with XML Schema's `whiteSpace=collapse`, as for `xs:anyURI` values
    /// (Audience, AuthnContextClassRef). Only the four XML white-space characters are touched.
    pub fn collapsed(&mut self) -> Result<String, Error> {
        Ok(collapse(&read_text(&mut self.r)?))
    }

    /// Consumes the rest of the element just returned.
    pub fn skip(&mut self, e: &Elem<'_>) -> Result<(), Error> {
        loop {
            match self.r.next()? {
                Some(Event::End(end)) if end.depth == e.depth => return Ok(()),
                None => return Ok(()),
                _ => {}
            }
        }
    }

    /// The next event of the element just returned (for callers that keep an element as
    /// written, e.g. unknown extensions).
    pub fn next_event(&mut self) -> Result<Option<Event<'_, 'a>>, Error> {
        self.r.next()
    }
}
