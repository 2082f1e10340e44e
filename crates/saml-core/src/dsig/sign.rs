//! Creating an enveloped signature (XML-DSig 1.1 §3.1) with exclusive c14n over one element,
//! placed where the SAML schemas want it.

use base64::Engine as _;
use openssl::hash::Hasher;

use super::algorithms::{DigestAlgorithm, ENVELOPED_SIGNATURE, SignatureAlgorithm};
use super::keys::SigningKey;
use super::pipeline::DigestSink;
use super::{DSIG_NS, Placement, SAML_ASSERTION_NS, Target};
use crate::c14n::{self, Canonicalizer, EXC_C14N};
use crate::error::{Error, SignatureError};
use crate::xml::{Event, Limits, Reader, StartElement};

/// How to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignOptions {
    /// The element to sign.
    pub target: Target,
    /// Where to put the ds:Signature: first child (metadata) or after saml:Issuer (protocol
    /// messages). [`Placement::Anywhere`] means first child.
    pub placement: Placement,
    /// Signature algorithm; `None` picks the key's natural one (RSA-SHA256, ECDSA by curve).
    pub algorithm: Option<SignatureAlgorithm>,
    /// Digest algorithm. Default SHA-256.
    pub digest: DigestAlgorithm,
    /// InclusiveNamespaces PrefixList for the reference's exc-c14n transform, if any: at most
    /// [`c14n::MAX_INCLUSIVE_PREFIXES`] distinct prefixes (verifiers here refuse more).
    pub inclusive_prefixes: Option<String>,
    /// Put the signer's certificate in KeyInfo (when the key has one). Default true.
    pub include_certificate: bool,
    /// The unprefixed attribute holding the target's ID (for the Reference URI). Default `ID`.
    /// A target whose ID is written with a character reference is refused, as `verify` would.
    pub id_attribute: String,
    /// Reader limits for the input.
    pub limits: Limits,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            target: Target::Root,
            placement: Placement::FirstChild,
            algorithm: None,
            digest: DigestAlgorithm::Sha256,
            inclusive_prefixes: None,
            include_certificate: true,
            id_attribute: "ID".into(),
            limits: Limits::default(),
        }
    }
}

/// The signature algorithm and the reference's c14n options of `opts`, refusing SHA-1 and a
/// PrefixList that verifiers here would refuse.
fn checked_options(
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<(SignatureAlgorithm, c14n::Options), Error> {
    let algorithm = opts.algorithm.unwrap_or_else(|| key.default_algorithm());
    if matches!(
        algorithm,
        SignatureAlgorithm::RsaSha1 | SignatureAlgorithm::EcdsaSha1
    ) || opts.digest == DigestAlgorithm::Sha1
    {
        return Err(Error::Usage("SHA-1 is not used for new signatures".into()));
    }
    let mut c14n_opts = c14n::Options::default();
    if let Some(list) = &opts.inclusive_prefixes {
        c14n_opts = c14n_opts.with_prefix_list(list);
        c14n_opts.check_prefix_list().map_err(Error::Usage)?;
    }
    Ok((algorithm, c14n_opts))
}

/// Signs `doc`: returns the document with an enveloped `ds:Signature` inserted into the target
/// element. The Reference URI is `#ID` when the target has an ID, `""` otherwise (root only).
pub fn sign(doc: &[u8], key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
    let (algorithm, c14n_opts) = checked_options(key, opts)?;

    let mut reader = Reader::new(doc, opts.limits)?;
    let mut canon: Option<Canonicalizer<'_, DigestSink>> = None;
    let mut target_depth = 0usize;
    let mut id: Option<String> = None;
    let mut insert_at: Option<usize> = None;
    let mut children = 0usize;
    let mut first_is_issuer = false;
    let mut digest: Option<Vec<u8>> = None;
    let mut ids = std::collections::HashSet::new();
    while let Some(ev) = reader.next()? {
        if let Event::Start(s) = &ev {
            note_id(s, &opts.id_attribute, &mut ids)?;
        }
        if let Some(c) = canon.as_mut() {
            match &ev {
                Event::Start(s) if s.depth == target_depth + 1 => {
                    children += 1;
                    if s.is(DSIG_NS, "Signature") {
                        return Err(Error::Usage("the element is already signed".into()));
                    }
                    first_is_issuer |= children == 1 && s.is(SAML_ASSERTION_NS, "Issuer");
                }
                // SAML Core §5.3 schemas: the Signature follows saml:Issuer when there is one.
                Event::End(e)
                    if e.depth == target_depth + 1
                        && children == 1
                        && first_is_issuer
                        && opts.placement == Placement::AfterIssuer =>
                {
                    insert_at = Some(e.span.end);
                }
                _ => {}
            }
            c.event(&ev)?;
            if c.is_complete()
                && let Some(c) = canon.take()
            {
                let (mut sink, _) = c.finish()?;
                digest = Some(sink.0.finish()?.to_vec());
            }
            continue;
        }
        if digest.is_some() {
            continue;
        }
        if let Event::Start(s) = &ev {
            let id_attr = s.attribute(&opts.id_attribute);
            let sid = id_attr.map(|a| a.value().into_owned());
            let hit = match &opts.target {
                Target::Root => s.depth == 1,
                Target::Id(want) => sid.as_deref() == Some(want.as_str()),
            };
            if hit {
                // `verify` refuses such IDs (issue 13 item 6); never sign what cannot verify.
                if let Some(a) = id_attr
                    && !super::verify::is_plain_id(a.raw_value)
                {
                    return Err(SignatureError::InvalidId(a.raw_value.to_owned()).into());
                }
                if s.empty {
                    return Err(Error::Usage("cannot sign an empty-element tag".into()));
                }
                if matches!(opts.target, Target::Root) && sid.is_none() && s.depth != 1 {
                    return Err(Error::Usage("a non-root element needs an ID".into()));
                }
                target_depth = s.depth;
                id = sid;
                insert_at = Some(s.span.end);
                let hasher = Hasher::new(opts.digest.message_digest())?;
                let mut c = Canonicalizer::new(DigestSink(hasher), c14n_opts.clone());
                c.event(&ev)?;
                canon = Some(c);
            }
        }
    }
    let (Some(digest), Some(at)) = (digest, insert_at) else {
        return Err(Error::Usage("the element to sign was not found".into()));
    };
    let uri = id.map(|i| format!("#{i}")).unwrap_or_default();
    let signature = signature_element(&digest, &uri, algorithm, key, opts)?;
    let mut out = Vec::with_capacity(doc.len() + signature.len());
    out.extend_from_slice(&doc[..at]);
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(&doc[at..]);
    Ok(out)
}

/// Records the `id_attribute` of the start tag `s` in `ids`: a second element with the same
/// ID, or an ID written with a character reference or white space, is refused, as `verify`
/// refuses it anywhere in the document (XMLDSIG.md rule 2). Review W3: `sign` looked at the
/// target's ID only, so an aggregate whose entities repeated an ID (or the root's) was signed
/// and then failed every verification, ours included.
fn note_id<'a>(
    s: &StartElement<'_, 'a>,
    id_attribute: &str,
    ids: &mut std::collections::HashSet<&'a str>,
) -> Result<(), Error> {
    if let Some(a) = s.attribute(id_attribute) {
        if !super::verify::is_plain_id(a.raw_value) {
            return Err(SignatureError::InvalidId(a.raw_value.to_owned()).into());
        }
        if !ids.insert(a.raw_value) {
            return Err(SignatureError::DuplicateId(a.raw_value.to_owned()).into());
        }
    }
    Ok(())
}

/// The `ds:Signature` element of an enveloped signature whose Reference (`uri`) has `digest`
/// over the exclusive canonical form of its target: SignedInfo built, canonicalized and signed.
fn signature_element(
    digest: &[u8],
    uri: &str,
    algorithm: SignatureAlgorithm,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<String, Error> {
    let b64 = base64::engine::general_purpose::STANDARD;

    let prefix_list = opts
        .inclusive_prefixes
        .as_ref()
        .map(|l| {
            format!(
                "<ec:InclusiveNamespaces xmlns:ec=\"{EXC_C14N}\" PrefixList=\"{}\"/>",
                crate::xml::escape_attr(l)
            )
        })
        .unwrap_or_default();
    let signed_info = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>\
         <ds:Reference URI=\"{}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED_SIGNATURE}\"/>\
         <ds:Transform Algorithm=\"{EXC_C14N}\">{prefix_list}</ds:Transform></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue>\
         </ds:Reference></ds:SignedInfo>",
        algorithm.uri(),
        crate::xml::escape_attr(uri),
        opts.digest.uri(),
        b64.encode(digest),
    );
    // Exclusive c14n of SignedInfo depends only on the namespaces it uses (ds), which the
    // Signature element declares, so canonicalizing it standalone gives the signed octets.
    let standalone = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}</ds:Signature>");
    let si_c14n = c14n::canonicalize_element(
        standalone.as_bytes(),
        c14n::Options::default(),
        |s| s.is(DSIG_NS, "SignedInfo"),
        |_| false,
    )?;
    let value = key.sign(algorithm, &si_c14n)?;
    let key_info = match (opts.include_certificate, key.certificate()) {
        (true, Some(cert)) => format!(
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            b64.encode(cert.to_der()?)
        ),
        _ => String::new(),
    };
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>{key_info}</ds:Signature>",
        b64.encode(&value)
    );
    Ok(signature)
}

/// Signs a document that is written out piece by piece and never held whole (a selection of
/// entities streamed to a file): an enveloped signature over the root (XML-DSig 1.1 §3.1,
/// exclusive c14n), placed as the root's first child, as [`sign`] places it.
///
/// Give the root's start tag to [`StreamingSigner::new`], then the root's content in order
/// through [`StreamingSigner::content`], each piece whole elements and text (an element is not
/// cut between two pieces), then take the `ds:Signature` element from
/// [`StreamingSigner::finish`]. The signed document is the start tag, that element, the same
/// pieces in the same order, and the root's end tag (`</` and the start tag's name and `>`):
/// for an RSA key, byte for byte what [`sign`] makes of the unsigned document.
///
/// Each piece is read (with `opts.limits`) and canonicalized inside the root, so its canonical
/// form is the one it has in the whole document: exclusive c14n of a child depends only on
/// the namespaces its ancestors rendered, and those are the root's. Memory: one piece and its
/// canonical form at a time.
pub struct StreamingSigner<'k> {
    key: &'k SigningKey,
    opts: SignOptions,
    algorithm: SignatureAlgorithm,
    c14n_opts: c14n::Options,
    start_tag: String,
    end_tag: String,
    /// The canonical start tag's length: each piece's canonical form starts with it.
    canonical_start: usize,
    uri: String,
    hasher: Hasher,
    /// A reusable document: the start tag, a piece, the end tag.
    wrapped: Vec<u8>,
    /// The canonicalizer's namespace work and content over the pieces so far, and the part of
    /// it each piece's own canonicalizer counts again for the root's tags: the pieces are held
    /// to the one allowance signing the whole would have (`c14n::NAMESPACE_ALLOWANCE`).
    work: (u64, u64),
    root_work: (u64, u64),
    /// The IDs of the root and of the pieces' elements so far: each is refused a second time
    /// (see `note_id`).
    ids: std::collections::HashSet<String>,
}

impl std::fmt::Debug for StreamingSigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingSigner")
            .field("start_tag", &self.start_tag)
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl<'k> StreamingSigner<'k> {
    /// A signer for the document whose root has `start_tag` (`<md:EntitiesDescriptor ...>`,
    /// namespace declarations included; not an empty-element tag). The Reference URI is `#` and
    /// the root's `opts.id_attribute` when it has one, else `""`. `opts.target` must be
    /// [`Target::Root`] and `opts.placement` first child.
    pub fn new(start_tag: &str, key: &'k SigningKey, opts: &SignOptions) -> Result<Self, Error> {
        let (algorithm, c14n_opts) = checked_options(key, opts)?;
        if opts.target != Target::Root || opts.placement == Placement::AfterIssuer {
            return Err(Error::Usage(
                "a streamed document is signed over its root, the signature first".into(),
            ));
        }
        // The root alone (`<r ...></r>`): checks the start tag and gives its name, its ID and
        // its canonical form.
        let name = start_tag
            .strip_prefix('<')
            .and_then(|t| t.split([' ', '\t', '\r', '\n', '>', '/']).next())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Usage("not a start tag".into()))?;
        let end_tag = format!("</{name}>");
        let alone = format!("{start_tag}{end_tag}");
        let mut reader = Reader::new(alone.as_bytes(), opts.limits)?;
        let mut id = None;
        let mut id_seen = None;
        let mut elements = 0usize;
        let mut c = Canonicalizer::new(Vec::new(), c14n_opts.clone());
        while let Some(ev) = reader.next()? {
            if let Event::Start(s) = &ev {
                elements += 1;
                if s.empty || s.span.end != start_tag.len() {
                    return Err(Error::Usage(
                        "not the start tag of a root with content".into(),
                    ));
                }
                if let Some(a) = s.attribute(&opts.id_attribute) {
                    if !super::verify::is_plain_id(a.raw_value) {
                        return Err(SignatureError::InvalidId(a.raw_value.to_owned()).into());
                    }
                    id = Some(a.value().into_owned());
                    id_seen = Some(a.raw_value.to_owned());
                }
            }
            c.event(&ev)?;
        }
        if elements != 1 {
            return Err(Error::Usage(
                "not the start tag of a root with content".into(),
            ));
        }
        let root_work = c.work();
        let (canonical, _) = c.finish()?;
        let canonical_start = canonical
            .len()
            .checked_sub(end_tag.len())
            .filter(|&n| canonical.ends_with(end_tag.as_bytes()) && n > 0)
            .ok_or_else(|| Error::C14n("the root's end tag is not canonical".into()))?;
        let mut hasher = Hasher::new(opts.digest.message_digest())?;
        hasher.update(&canonical[..canonical_start])?;
        Ok(StreamingSigner {
            key,
            opts: opts.clone(),
            algorithm,
            c14n_opts,
            start_tag: start_tag.to_owned(),
            end_tag,
            canonical_start,
            uri: id.map(|i| format!("#{i}")).unwrap_or_default(),
            hasher,
            wrapped: Vec::new(),
            work: root_work,
            root_work,
            ids: id_seen.into_iter().collect(),
        })
    }

    /// The next piece of the root's content: whole elements, text, comments. Refused: a piece
    /// that does not read as content of the root (an element left open or closed that it did
    /// not open, the root's end), or that holds a `ds:Signature` child of the root.
    pub fn content(&mut self, piece: &[u8]) -> Result<(), Error> {
        self.wrapped.clear();
        self.wrapped.extend_from_slice(self.start_tag.as_bytes());
        self.wrapped.extend_from_slice(piece);
        self.wrapped.extend_from_slice(self.end_tag.as_bytes());
        let mut reader = Reader::new(&self.wrapped, self.opts.limits)?;
        let mut c = Canonicalizer::new(Vec::with_capacity(piece.len()), self.c14n_opts.clone())
            .with_work((
                self.work.0.saturating_sub(self.root_work.0),
                self.work.1.saturating_sub(self.root_work.1),
            ));
        let root_end = self.wrapped.len();
        let mut ids = std::collections::HashSet::new();
        while let Some(ev) = reader.next()? {
            if let Event::Start(s) = &ev
                && s.depth >= 2
            {
                note_id(s, &self.opts.id_attribute, &mut ids)?;
                if let Some(a) = s.attribute(&self.opts.id_attribute)
                    && self.ids.contains(a.raw_value)
                {
                    return Err(SignatureError::DuplicateId(a.raw_value.to_owned()).into());
                }
            }
            match &ev {
                Event::Start(s) if s.depth == 2 && s.is(DSIG_NS, "Signature") => {
                    return Err(Error::Usage("the element is already signed".into()));
                }
                Event::End(e) if e.depth == 1 && e.span.end != root_end => {
                    return Err(Error::Usage("a piece closes the root".into()));
                }
                _ => {}
            }
            c.event(&ev)?;
        }
        let work = c.work();
        let (canonical, _) = c.finish()?;
        self.work = work;
        self.ids.extend(ids.into_iter().map(str::to_owned));
        let inner = canonical
            .get(self.canonical_start..canonical.len().saturating_sub(self.end_tag.len()))
            .ok_or_else(|| Error::C14n("a piece's canonical form is out of shape".into()))?;
        self.hasher.update(inner)?;
        Ok(())
    }

    /// The `ds:Signature` element to write right after the root's start tag.
    pub fn finish(mut self) -> Result<String, Error> {
        self.hasher.update(self.end_tag.as_bytes())?;
        let digest = self.hasher.finish()?;
        signature_element(&digest[..], &self.uri, self.algorithm, self.key, &self.opts)
    }
}
