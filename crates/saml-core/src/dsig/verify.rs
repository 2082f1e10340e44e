//! Verification of an enveloped signature in one streaming pass (XMLDSIG.md rules 1-8).
//!
//! ```text
//!  bytes ──► hardened Reader ──► events ──┬─► ID table (uniqueness)
//!                                         ├─► ds:Signature child of the target: span recorded,
//!                                         │   parsed (strict profile) when it closes, then its
//!                                         │   Reference URI checked and SignatureValue over
//!                                         │   exc-c14n(SignedInfo) by a trusted key
//!                                         └─► exc-c14n of the target minus its Signature ──► digest
//!  then: digest == DigestValue
//!  result: Verified { signed element span, key index } — the only way to the signed content
//! ```
//! The target's start tag and whatever precedes the Signature inside it are canonicalized from a
//! second reader over that short prefix once the Signature (and so the PrefixList) is known.
//!
//! The signature over SignedInfo is authenticated before anything of the signed content is
//! canonicalized or digested (W3C XML Signature Best Practices, BP 1: potentially expensive work
//! only after the signature is authenticated). A document that no configured key signed is
//! refused once its `ds:Signature` has been read: for a metadata aggregate, after its head
//! rather than after a pass over all of it.

use std::collections::HashSet;
use std::ops::Range;

use openssl::hash::Hasher;

use super::algorithms::{DigestAlgorithm, SignatureAlgorithm};
use super::keys::TrustedKeys;
use super::pipeline::{DigestSink, DigestStage};
use super::signature::{self, ParsedSignature};
use super::{DSIG_NS, Placement, SAML_ASSERTION_NS, Target};
use crate::c14n::{self, Canonicalizer};
use crate::error::{Error, LimitExceeded, SignatureError};
use crate::xml::chars;
use crate::xml::{Event, Limits, NsDecl, Reader, StartElement};

/// How to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Which element carries the enveloped signature.
    pub target: Target,
    /// Where its `ds:Signature` must stand.
    pub placement: Placement,
    /// Accept SHA-1 digests and signatures (legacy federations). Off by default.
    pub allow_sha1: bool,
    /// Smallest RSA modulus accepted, in bits. Default 2048.
    pub min_rsa_bits: u32,
    /// Unprefixed attribute names treated as IDs (must be unique in the document, and be
    /// written plainly: a value with a character reference or XML white space is refused, so
    /// the raw and normalized values, which `sign` and other processors may compare, are the
    /// same string). Default `["ID"]` (SAML).
    pub id_attributes: Vec<String>,
    /// Reader limits.
    pub limits: Limits,
    /// Largest accepted `ds:Signature` element, in bytes. Default 64 KiB.
    pub max_signature_size: usize,
    /// Documents at least this large are canonicalized and hashed on a second thread while the
    /// first one reads and checks (same octets, about 1.5x faster on two cores). `None` keeps
    /// everything on the calling thread ([`VerifyOptions::single_threaded`]). Default 4 MiB:
    /// protocol messages and single entities never start a thread; eduGAIN-sized aggregates
    /// start one scoped thread (`std::thread::scope`) that ends before `verify` returns.
    pub parallel_min_size: Option<usize>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            target: Target::Root,
            placement: Placement::FirstChild,
            allow_sha1: false,
            min_rsa_bits: 2048,
            id_attributes: vec!["ID".to_owned()],
            limits: Limits::default(),
            max_signature_size: 64 << 10,
            parallel_min_size: Some(4 << 20),
        }
    }
}

impl VerifyOptions {
    /// Options for SAML metadata: signature on the document root, as its first child.
    #[must_use]
    pub fn metadata() -> Self {
        Self::default()
    }

    /// Options for a SAML protocol message element with this ID: the Signature right after
    /// `saml:Issuer`.
    pub fn protocol(id: impl Into<String>) -> Self {
        VerifyOptions {
            target: Target::Id(id.into()),
            placement: Placement::AfterIssuer,
            ..Self::default()
        }
    }

    /// Opts in to SHA-1 and 1024-bit RSA, for old federation metadata.
    #[must_use]
    pub fn legacy(mut self) -> Self {
        self.allow_sha1 = true;
        self.min_rsa_bits = 1024;
        self
    }

    /// Keeps verification on the calling thread whatever the document size (sets
    /// [`parallel_min_size`](Self::parallel_min_size) to `None`): for embedders that forbid
    /// spawning threads. By default, documents of 4 MiB or more use one scoped helper thread
    /// that ends before [`verify`] returns.
    #[must_use]
    pub fn single_threaded(mut self) -> Self {
        self.parallel_min_size = None;
        self
    }
}

/// A successful verification: the only way to reach the signed content.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    src: &'a str,
    base: usize,
    limits: Limits,
    element: Range<usize>,
    signature: Range<usize>,
    inherited: Vec<NsDecl<'a>>,
    key_index: usize,
    algorithm: SignatureAlgorithm,
    digest: DigestAlgorithm,
    canonical_len: u64,
    /// The KeyInfo certificates (DER), kept only for a second engine's key check.
    #[cfg_attr(not(feature = "xmlsec"), allow(dead_code))]
    pub(crate) key_info_certs: Vec<Vec<u8>>,
    /// Where the document holds comments and CDATA sections, in order (runs of them with no
    /// tag between merged): markup inside them is not markup, and a fragment may not start
    /// there (dsig review L2).
    opaque: Vec<Range<usize>>,
}

/// Records the comments and CDATA sections of a document in order, merging a run of them that
/// no tag separates (text between them holds no `<`, so no element starts inside the run):
/// at most one span per tag, whatever the document does with comments.
#[derive(Default)]
struct Opaque {
    spans: Vec<Range<usize>>,
    /// Whether the last event that was not text was a comment or CDATA section.
    open: bool,
}

impl Opaque {
    fn note(&mut self, span: &Range<usize>) {
        match self.spans.last_mut() {
            Some(last) if self.open => last.end = span.end,
            _ => self.spans.push(span.clone()),
        }
        self.open = true;
    }

    /// Whether `at` lies inside a recorded span (its first byte included).
    fn contains(spans: &[Range<usize>], at: usize) -> bool {
        let i = spans.partition_point(|s| s.end <= at);
        spans.get(i).is_some_and(|s| s.start <= at)
    }
}

impl<'a> Verified<'a> {
    /// Byte range of the signed element in the verified document.
    #[must_use]
    pub fn signed_range(&self) -> Range<usize> {
        self.element.clone()
    }

    /// The signed element as written (its ds:Signature included).
    #[must_use]
    pub fn signed_xml(&self) -> &'a str {
        &self.src[self.element.start - self.base..self.element.end - self.base]
    }

    /// Byte range of the verified ds:Signature.
    #[must_use]
    pub fn signature_range(&self) -> Range<usize> {
        self.signature.clone()
    }

    /// Index, in the [`TrustedKeys`] given to [`verify`], of the key that verified.
    #[must_use]
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// The signature algorithm.
    #[must_use]
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// The digest algorithm.
    #[must_use]
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest
    }

    #[cfg_attr(not(feature = "xmlsec"), allow(dead_code))]
    pub(crate) fn set_key_index(&mut self, i: usize) {
        self.key_index = i;
    }

    /// A reader over one element inside the signed content (`range` from the element's `<` to
    /// the end of its end tag, `inherited` the namespace scope of its parent, e.g. recorded
    /// through [`verify_observed`]). Fails unless the range lies inside the signed element and
    /// outside its ds:Signature, so only verified bytes can be read this way.
    pub fn fragment(
        &self,
        range: Range<usize>,
        inherited: &[NsDecl<'a>],
    ) -> Result<Reader<'a>, Error> {
        let inside = range.start > self.element.start
            && range.end < self.element.end
            && range.start < range.end;
        let clear_of_signature =
            range.end <= self.signature.start || range.start >= self.signature.end;
        if !(inside && clear_of_signature) {
            return Err(Error::Usage(format!(
                "{range:?} is not inside the signed content"
            )));
        }
        // It must begin with a start tag the verification read as one: not inside a comment
        // (comments are not digested: anyone can add one holding markup to a signed document)
        // or a CDATA section (signed as text), nor at an end tag, comment or PI (dsig review
        // L2: such a range read attacker bytes as verified elements).
        let bytes = self.src.as_bytes();
        let at = range.start - self.base;
        let starts_tag = bytes.get(at) == Some(&b'<')
            && bytes
                .get(at + 1)
                .is_some_and(|b| !matches!(b, b'!' | b'?' | b'/'));
        if !starts_tag || Opaque::contains(&self.opaque, range.start) {
            return Err(Error::Usage(format!(
                "{range:?} does not begin with an element of the signed content"
            )));
        }
        Reader::from_verified(self.src, self.base, self.limits).fragment_reader(range, inherited)
    }

    /// Verifies the enveloped signature that an element inside the signed content carries
    /// itself (an `md:EntityDescriptor` signed on its own inside a signed aggregate, SAML
    /// Metadata §3.1): `range` from the element's `<` to the end of its end tag, `inherited` the
    /// namespace scope of its parent. The same rules as [`verify`] apply with the element as
    /// the target (one `ds:Signature` child where `opts.placement` says, a single Reference),
    /// and the Reference must be `#` + the element's ID: `""` names the whole document. Runs on
    /// the calling thread; returns the index of the trusted key that made the signature.
    /// Fails like [`Verified::fragment`] for a range outside the signed content.
    pub fn verify_inner(
        &self,
        range: Range<usize>,
        inherited: &[NsDecl<'a>],
        keys: &TrustedKeys,
        opts: &VerifyOptions,
    ) -> Result<usize, Error> {
        if keys.is_empty() {
            return Err(Error::Usage("no trusted keys configured".into()));
        }
        let reader = self.fragment(range, inherited)?;
        let opts = VerifyOptions {
            target: Target::Root,
            ..opts.clone()
        };
        let v = std::thread::scope(|sc| {
            scan(
                sc,
                reader,
                false,
                keys,
                &opts,
                Crypto::Native,
                Extent::Inner,
                &mut |_| {},
            )
        })?;
        Ok(v.key_index)
    }

    /// Number of canonical bytes that were digested (0 when a second engine did the digest).
    #[must_use]
    pub fn canonical_len(&self) -> u64 {
        self.canonical_len
    }

    /// Namespace bindings in scope at the signed element's parent (empty for the root).
    #[must_use]
    pub fn inherited_scope(&self) -> &[NsDecl<'a>] {
        &self.inherited
    }

    /// Events of the signed element, exactly the content that was digested: its
    /// ds:Signature subtree is left out (the enveloped-signature transform); comments stay
    /// (they do not split text values, see [`crate::xml::read_text`]). The reader starts with
    /// the namespace scope of the element's parent, so a nested element reads as it did in
    /// the document.
    pub fn events(&self) -> Result<Reader<'a>, Error> {
        let mut r = Reader::from_verified(self.src, self.base, self.limits)
            .fragment_reader(self.element.clone(), &self.inherited)?;
        r.omit_subtree_at(self.signature.start);
        Ok(r)
    }
}

struct SignedElement<'a> {
    depth: usize,
    start: usize,
    /// Where its start tag ends (its content begins).
    content: usize,
    inherited: Vec<NsDecl<'a>>,
    id: Option<&'a str>,
    children: usize,
    first_child_issuer: bool,
}

/// Where the scan is; each state holds what it knows (the signed element once found).
enum Phase<'a> {
    /// Before the signed element.
    Before,
    /// Inside the signed element, before its ds:Signature.
    Pre(SignedElement<'a>),
    /// Inside the ds:Signature (its start offset, depth, and the scope of its parent).
    InSignature {
        target: SignedElement<'a>,
        start: usize,
        depth: usize,
        scope: Vec<NsDecl<'a>>,
    },
    /// After the ds:Signature, streaming into the digest.
    Post(SignedElement<'a>),
    /// After the signed element's end tag (or its empty tag).
    After(SignedElement<'a>),
}

fn is_signature(s: &StartElement<'_, '_>) -> bool {
    s.is(DSIG_NS, "Signature")
}

/// Verifies the enveloped signature selected by `opts` in `doc` with `keys`.
///
/// The whole document is read and checked once (rule 1), IDs must be unique, the target must
/// carry exactly one `ds:Signature` child at the required position whose single Reference points
/// at the target; a configured key must have made the SignatureValue (checked first, where the
/// Signature ends) and the digest of the target's exclusive canonical form (minus the
/// Signature) must match. KeyInfo only orders the keys tried, and refuses the signature when its
/// certificates do not hold the key that made it.
pub fn verify<'a>(
    doc: &'a [u8],
    keys: &TrustedKeys,
    opts: &VerifyOptions,
) -> Result<Verified<'a>, Error> {
    check(doc, keys, opts, Crypto::Native, &mut |_| {})
}

/// Like [`verify`], and calls `observer` with every event of the signed element that follows its
/// `ds:Signature` (the signed element's own end tag included), in order, while verification
/// streams. This lets a caller build an index in the same pass (saml-metadata's lazy loader
/// records entity offsets this way). What the observer sees is only trustworthy if this
/// function returns `Ok`: it runs before the digest check finishes (the signature over
/// SignedInfo is already good when the first event is observed; a document no configured key
/// signed is refused before any). The signed element's start tag and anything before the
/// Signature are available from [`Verified::events`].
pub fn verify_observed<'a>(
    doc: &'a [u8],
    keys: &TrustedKeys,
    opts: &VerifyOptions,
    observer: &mut dyn FnMut(&Event<'_, 'a>),
) -> Result<Verified<'a>, Error> {
    check(doc, keys, opts, Crypto::Native, observer)
}

/// Whether [`check`] does the digest and signature-value work itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crypto {
    /// Our c14n, digest and OpenSSL signature check.
    Native,
    /// Structure only: every rule but the cryptographic checks (for a second engine).
    #[cfg_attr(not(feature = "xmlsec"), allow(dead_code))]
    StructureOnly,
}

pub(crate) fn check<'a>(
    doc: &'a [u8],
    keys: &TrustedKeys,
    opts: &VerifyOptions,
    crypto: Crypto,
    observer: &mut dyn FnMut(&Event<'_, 'a>),
) -> Result<Verified<'a>, Error> {
    std::thread::scope(|sc| check_in(sc, doc, keys, opts, crypto, observer))
}

fn check_in<'scope, 'env, 'a: 'env>(
    sc: &'scope std::thread::Scope<'scope, 'env>,
    doc: &'a [u8],
    keys: &TrustedKeys,
    opts: &VerifyOptions,
    crypto: Crypto,
    observer: &mut dyn FnMut(&Event<'_, 'a>),
) -> Result<Verified<'a>, Error> {
    if keys.is_empty() {
        return Err(Error::Usage("no trusted keys configured".into()));
    }
    let parallel = opts.parallel_min_size.is_some_and(|m| doc.len() >= m);
    let reader = if parallel {
        Reader::new_parallel(doc, opts.limits)?
    } else {
        Reader::new(doc, opts.limits)?
    };
    scan(
        sc,
        reader,
        parallel,
        keys,
        opts,
        crypto,
        Extent::Document,
        observer,
    )
}

/// Whether [`scan`] reads a whole document or one element inside an already verified one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// A whole document: `Target::Root` is its root, whose Reference may be `""`.
    Document,
    /// One element subtree inside verified content ([`Verified::verify_inner`]): the target
    /// is the subtree's top element and its Reference must be `#` + its ID (`""` would name
    /// the whole document, XML-DSig 1.1 §4.4.3.2).
    Inner,
}

#[allow(clippy::too_many_arguments)]
fn scan<'scope, 'env, 'a: 'env>(
    sc: &'scope std::thread::Scope<'scope, 'env>,
    mut reader: Reader<'a>,
    parallel: bool,
    keys: &TrustedKeys,
    opts: &VerifyOptions,
    crypto: Crypto,
    extent: Extent,
    observer: &mut dyn FnMut(&Event<'_, 'a>),
) -> Result<Verified<'a>, Error> {
    let (src, base) = reader.source();
    // Sized for about one ID per 4 KiB (a federation aggregate's entities carry one each),
    // so the set is not rebuilt a dozen times while it grows; capped at 64 Ki entries.
    let mut ids: HashSet<&'a str> = HashSet::with_capacity((src.len() / 4096).min(1 << 16));
    let mut phase = Phase::Before;
    let mut parsed: Option<ParsedSignature<'a>> = None;
    let mut sig_range = 0..0;
    // The digest stage, with the index of the key that signed SignedInfo.
    let mut c14n: Option<(DigestStage<'scope, 'a>, usize)> = None;
    let mut element_end = None;
    let mut opaque = Opaque::default();

    loop {
        let pos = reader.position();
        if !reader.advance()? {
            break;
        }
        let Some(ev) = reader.current() else { break };
        // Every ID attribute in the document must be unique (rule 2), whatever the phase, and
        // be written plainly, so that its raw and normalized values are the same string: the
        // value compared here, the one `sign` looks up and the one other processors see agree
        // (issue 13 item 6).
        // Inside the signed element only (`fragment` refuses anything outside it): a message
        // signed by ID has unsigned surroundings whose comments would otherwise be recorded.
        if !matches!(phase, Phase::Before | Phase::After(_)) {
            match &ev {
                Event::End(_) => opaque.open = false,
                Event::Comment(t) => opaque.note(&t.span),
                Event::Text(t) if t.cdata => opaque.note(&t.span),
                _ => {}
            }
        }
        if let Event::Start(s) = &ev {
            opaque.open = false;
            for a in s.attributes {
                if a.name.prefix.is_empty()
                    && opts
                        .id_attributes
                        .iter()
                        .any(|n| chars::eq(n, a.name.local))
                {
                    if !is_plain_id(a.raw_value) {
                        return Err(SignatureError::InvalidId(a.raw_value.to_owned()).into());
                    }
                    if !ids.insert(a.raw_value) {
                        return Err(SignatureError::DuplicateId(a.raw_value.to_owned()).into());
                    }
                }
            }
        }
        // After the ds:Signature, streaming into the digest: nearly every event of a signed
        // aggregate. Handled here, without moving the phase out and back in per event.
        if let Phase::Post(t) = &phase {
            if let Event::Start(s) = &ev
                && s.depth == t.depth + 1
                && is_signature(s)
            {
                return Err(SignatureError::Multiple.into());
            }
            observer(&ev);
            if let Some((c, _)) = c14n.as_mut() {
                c.feed(&ev)?;
            }
            if let Event::End(e) = &ev
                && e.depth == t.depth
            {
                element_end = Some(e.span.end);
                if let Phase::Post(t) = std::mem::replace(&mut phase, Phase::Before) {
                    phase = Phase::After(t);
                }
            }
            continue;
        }
        phase = match std::mem::replace(&mut phase, Phase::Before) {
            Phase::Before => {
                let Event::Start(s) = &ev else {
                    continue;
                };
                let id = s
                    .attributes
                    .iter()
                    .find(|a| {
                        a.name.prefix.is_empty()
                            && opts
                                .id_attributes
                                .iter()
                                .any(|n| chars::eq(n, a.name.local))
                    })
                    .map(|a| a.raw_value);
                let hit = match &opts.target {
                    Target::Root => s.depth == 1,
                    Target::Id(want) => id == Some(want.as_str()),
                };
                if !hit {
                    continue;
                }
                let own = s.namespace_decls.len();
                let target = SignedElement {
                    depth: s.depth,
                    start: s.span.start,
                    content: s.span.end,
                    inherited: s.scope[..s.scope.len() - own].to_vec(),
                    id,
                    children: 0,
                    first_child_issuer: false,
                };
                // An empty target has no Signature; keep reading so that document-wide
                // checks (duplicate IDs) report first.
                if s.empty {
                    Phase::After(target)
                } else {
                    Phase::Pre(target)
                }
            }
            // With the signature required as first child, a document is known unsigned at its
            // first child element (or when none starts within `max_signature_size` bytes of the
            // end of its start tag):
            // refused there, not after reading the rest. A signature by an untrusted key is
            // refused after its head; an unsigned document cost a whole pass.
            Phase::Pre(t)
                if opts.placement == Placement::FirstChild
                    && (matches!(&ev, Event::Start(s) if !is_signature(s))
                        || reader_pos_exceeds(pos, t.content, opts.max_signature_size)) =>
            {
                return Err(SignatureError::Missing.into());
            }
            Phase::Pre(mut t) => match &ev {
                Event::Start(s) if s.depth == t.depth + 1 => {
                    t.children += 1;
                    if is_signature(s) {
                        let ok = match opts.placement {
                            Placement::FirstChild => t.children == 1,
                            Placement::AfterIssuer => {
                                t.children == 1 || (t.children == 2 && t.first_child_issuer)
                            }
                            Placement::Anywhere => true,
                        };
                        if !ok {
                            return Err(SignatureError::Misplaced(format!(
                                "element child #{} of the signed element",
                                t.children
                            ))
                            .into());
                        }
                        let own = s.namespace_decls.len();
                        Phase::InSignature {
                            target: t,
                            start: s.span.start,
                            depth: s.depth,
                            scope: s.scope[..s.scope.len() - own].to_vec(),
                        }
                    } else {
                        if t.children == 1 && s.is(SAML_ASSERTION_NS, "Issuer") {
                            t.first_child_issuer = true;
                        }
                        Phase::Pre(t)
                    }
                }
                Event::End(e) if e.depth == t.depth => Phase::After(t),
                _ => Phase::Pre(t),
            },
            Phase::InSignature {
                target: t,
                start,
                depth,
                scope,
            } => {
                if reader_pos_exceeds(pos, start, opts.max_signature_size) {
                    return Err(Error::Limit {
                        offset: pos,
                        limit: LimitExceeded::SignatureSize(opts.max_signature_size),
                    });
                }
                match &ev {
                    Event::Comment(_) => return Err(SignatureError::CommentInSignature.into()),
                    Event::End(e) if e.depth == depth => {
                        let range = start..e.span.end;
                        if range.len() > opts.max_signature_size {
                            return Err(Error::Limit {
                                offset: range.start,
                                limit: LimitExceeded::SignatureSize(opts.max_signature_size),
                            });
                        }
                        let frag = reader_fragment(src, base, opts.limits, range.clone(), &scope)?;
                        let p = signature::parse(frag, opts.allow_sha1)?;
                        // Rule 2: the single Reference points at the signed element itself.
                        check_reference(&p, &t, extent)?;
                        if crypto == Crypto::Native {
                            // The signature over SignedInfo is authenticated before anything
                            // else is canonicalized or digested (W3C XML Signature Best
                            // Practices, BP 1): a document no configured key signed is refused
                            // after its head, not after hashing the rest of it.
                            let key_index = check_signed_info(src, base, keys, opts, &p)?;
                            // Canonicalize the target's start tag and what precedes the
                            // Signature.
                            let hasher = Hasher::new(p.digest.message_digest())?;
                            let mut c =
                                Canonicalizer::new(DigestSink(hasher), p.reference_c14n.clone());
                            let mut prefix = reader_fragment(
                                src,
                                base,
                                opts.limits,
                                t.start..range.start,
                                &t.inherited,
                            )?;
                            while let Some(pe) = prefix.next()? {
                                c.event(&pe)?;
                            }
                            let stage = if parallel {
                                DigestStage::piped(sc, c)
                            } else {
                                DigestStage::Inline(Box::new(c))
                            };
                            c14n = Some((stage, key_index));
                        }
                        parsed = Some(p);
                        sig_range = range;
                        Phase::Post(t)
                    }
                    _ => Phase::InSignature {
                        target: t,
                        start,
                        depth,
                        scope,
                    },
                }
            }
            // Taken above, before the phase is moved out.
            post @ Phase::Post(_) => post,
            after @ Phase::After(_) => after,
        };
    }

    let t = match phase {
        Phase::Before => None,
        Phase::Pre(t) | Phase::InSignature { target: t, .. } | Phase::Post(t) | Phase::After(t) => {
            Some(t)
        }
    };
    let Some(t) = t else {
        return Err(SignatureError::TargetNotFound(match &opts.target {
            Target::Root => "no root element".into(),
            Target::Id(id) => format!("no element with ID {id:?}"),
        })
        .into());
    };
    let (Some(p), Some(end)) = (parsed, element_end) else {
        return Err(SignatureError::Missing.into());
    };

    let mut verified = Verified {
        src,
        base,
        limits: opts.limits,
        element: t.start..end,
        signature: sig_range,
        inherited: t.inherited,
        key_index: 0,
        algorithm: p.algorithm,
        digest: p.digest,
        canonical_len: 0,
        key_info_certs: Vec::new(),
        opaque: opaque.spans,
    };
    let Some((c, key_index)) = c14n else {
        // Crypto::StructureOnly: the second engine checks the key against KeyInfo itself.
        verified.key_info_certs = p.certificates;
        return Ok(verified);
    };
    let (sink, len) = c.finish()?;
    if len == 0 {
        return Err(SignatureError::EmptyCanonicalForm.into());
    }
    let digest = sink.0.clone().finish()?;
    if digest.len() != p.digest_value.len() || !openssl::memcmp::eq(&digest, &p.digest_value) {
        return Err(SignatureError::DigestMismatch.into());
    }
    verified.key_index = key_index;
    verified.canonical_len = len;
    Ok(verified)
}

/// Rule 2: the single Reference points at the signed element `t` itself (`""` only for a
/// document's root, XML-DSig 1.1 §4.4.3.2).
fn check_reference(
    p: &ParsedSignature<'_>,
    t: &SignedElement<'_>,
    extent: Extent,
) -> Result<(), Error> {
    let uri = p.reference_uri.as_str();
    let points_here = if uri.is_empty() {
        t.depth == 1 && extent == Extent::Document
    } else {
        uri.strip_prefix('#').is_some_and(|id| Some(id) == t.id)
    };
    if points_here {
        Ok(())
    } else {
        Err(SignatureError::ReferenceUri(uri.to_owned()).into())
    }
}

/// SignedInfo canonicalized with its own method and signed by a configured key (XML-DSig 1.1
/// §3.2.2, signature validation); returns the index of the key.
fn check_signed_info(
    src: &str,
    base: usize,
    keys: &TrustedKeys,
    opts: &VerifyOptions,
    p: &ParsedSignature<'_>,
) -> Result<usize, Error> {
    let mut si_reader = reader_fragment(
        src,
        base,
        opts.limits,
        p.signed_info.clone(),
        &p.signed_info_scope,
    )?;
    let (si_bytes, si_len) =
        c14n::canonicalize(&mut si_reader, p.c14n.clone(), Vec::new(), |_| false)?;
    if si_len == 0 {
        return Err(SignatureError::EmptyCanonicalForm.into());
    }
    keys.verify(
        p.algorithm,
        opts.min_rsa_bits,
        &si_bytes,
        &p.signature_value,
        &p.certificates,
    )
}

/// Whether an ID value as written equals its normalized value and has no white space: not
/// empty, no reference, no XML white space (xs:ID values are NCNames, SAML Core §1.3.4).
pub(crate) fn is_plain_id(raw: &str) -> bool {
    !raw.is_empty()
        && !raw
            .bytes()
            .any(|b| matches!(b, b'&' | b' ' | b'\t' | b'\n' | b'\r'))
}

fn reader_pos_exceeds(pos: usize, start: usize, max: usize) -> bool {
    pos.saturating_sub(start) > max
}

fn reader_fragment<'a>(
    src: &'a str,
    base: usize,
    limits: Limits,
    range: Range<usize>,
    scope: &[NsDecl<'a>],
) -> Result<Reader<'a>, Error> {
    Reader::from_verified(src, base, limits).fragment_reader(range, scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsig::{SignOptions, SigningKey, sign};

    /// Comments and CDATA sections are recorded for `Verified::fragment` inside the signed
    /// element only: a message signed by ID has unsigned surroundings an attacker fills, and
    /// one span per tag there cost memory for nothing (`fragment` refuses ranges outside the
    /// element anyway). Inside, a run with no tag between is one span.
    #[test]
    fn only_the_signed_elements_comments_and_cdata_are_recorded() {
        let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
        let key = SigningKey::new(openssl::pkey::PKey::from_rsa(rsa).expect("key"), None)
            .expect("signing key");
        let mut keys = TrustedKeys::new();
        keys.add_public_key(key.public_key().expect("public"), "k")
            .expect("trusted");
        let doc = "<r><!--a--><x ID=\"_x\"><!--in--> <![CDATA[<y/>]]><!--run--><y/><!--last--></x><!--b--><z/><!--c--></r>";
        let target = Target::Id("_x".into());
        let signed = sign(
            doc.as_bytes(),
            &key,
            &SignOptions {
                target: target.clone(),
                ..SignOptions::default()
            },
        )
        .expect("sign");
        let mut opts = VerifyOptions::metadata();
        opts.target = target;
        let v = verify(&signed, &keys, &opts).expect("verify");
        let text = std::str::from_utf8(&signed).expect("utf-8");
        let spans: Vec<&str> = v.opaque.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(
            spans,
            ["<!--in--> <![CDATA[<y/>]]><!--run-->", "<!--last-->"],
            "{text}"
        );
    }
}
