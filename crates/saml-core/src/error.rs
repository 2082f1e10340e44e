//! The crate's one error type, split by cause: malformed input ([`Error::Xml`], [`Error::Limit`]),
//! security or policy rejection ([`Error::Signature`]), key problems ([`Error::Key`]) and misuse
//! ([`Error::Usage`]).

use std::fmt;

use crate::status::StatusCode;

/// Everything that can go wrong in `saml-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not well-formed XML, or uses an XML feature this reader refuses
    /// (XMLDSIG.md rule 1). `offset` is the byte offset in the document where it was found.
    #[error("malformed XML at byte {offset}: {kind}")]
    Xml {
        /// Byte offset into the document.
        offset: usize,
        /// What was wrong.
        kind: XmlError,
    },
    /// A configured resource limit was exceeded (see [`crate::xml::Limits`]).
    #[error("XML limit exceeded at byte {offset}: {limit}")]
    Limit {
        /// Byte offset into the document.
        offset: usize,
        /// Which limit.
        limit: LimitExceeded,
    },
    /// Canonicalization failed. Any canonicalization error is fatal for verification.
    #[error("canonicalization failed: {0}")]
    C14n(String),
    /// The signature was rejected: structure, algorithm, reference, digest or signature value.
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    /// A key or certificate could not be used (unparseable PEM, unsupported key type, too small).
    #[error("key error: {0}")]
    Key(String),
    /// The API was called with arguments that cannot work (e.g. no trusted keys configured).
    #[error("usage error: {0}")]
    Usage(String),
    /// OpenSSL reported an error while computing a digest or signature.
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// A SAML protocol message or binding was malformed or rejected by a profile rule.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// Error reported by libxmlsec1 (the `xmlsec` feature's second engine).
    #[cfg(feature = "xmlsec")]
    #[error("xmlsec engine: {0}")]
    XmlSec(String),
}

/// What kind of failure an [`Error`] is, for callers that map errors to their own answers
/// (an HTTP status, a SAML status code, a log level) without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is malformed: not well-formed XML, not the schema, a bad binding encoding.
    Malformed,
    /// The input is well-formed but refused by a security or policy rule: a signature that does
    /// not verify, a wrapped or replayed assertion, an expired message, a resource limit, a
    /// non-success status from the IdP.
    Rejected,
    /// The API was used in a way that cannot work: no trusted keys, an unusable key or
    /// configuration.
    Misuse,
    /// A cryptographic operation failed (OpenSSL, decryption).
    Crypto,
    /// Reading or writing where the caller asked failed (an output file).
    Io,
}

impl Error {
    pub(crate) fn xml(offset: usize, kind: XmlError) -> Self {
        Error::Xml { offset, kind }
    }

    /// What kind of failure this is (see [`ErrorKind`]).
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Xml { .. } | Error::C14n(_) => ErrorKind::Malformed,
            Error::Limit { .. } | Error::Signature(_) => ErrorKind::Rejected,
            Error::Key(_) | Error::Usage(_) => ErrorKind::Misuse,
            Error::Crypto(_) => ErrorKind::Crypto,
            Error::Protocol(p) => p.kind(),
            #[cfg(feature = "xmlsec")]
            Error::XmlSec(_) => ErrorKind::Rejected,
        }
    }

    /// The signature-rejection reason, if this error is one.
    #[must_use]
    pub fn signature_error(&self) -> Option<&SignatureError> {
        match self {
            Error::Signature(s) => Some(s),
            _ => None,
        }
    }

    /// The XML well-formedness / hardening reason, if this error is one.
    #[must_use]
    pub fn xml_error(&self) -> Option<&XmlError> {
        match self {
            Error::Xml { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Why the hardened reader refused a document (XMLSIG.md "Verifier rules", rule 1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XmlError {
    /// The bytes are not UTF-8 (only UTF-8 documents are accepted).
    NotUtf8,
    /// A character that XML 1.0 does not allow (e.g. U+0000, U+0001, U+FFFE).
    InvalidChar(u32),
    /// The XML declaration names an encoding other than UTF-8, or a version other than 1.0.
    BadDeclaration(String),
    /// A `<!DOCTYPE` (and with it any entity or attribute-list declaration).
    DocType,
    /// A reference to an entity other than the five predefined ones.
    UnknownEntity(String),
    /// A character reference to something that is not an XML Char (e.g. `&#0;`), or malformed.
    InvalidCharRef(String),
    /// A processing instruction (anything `<?...?>` other than the leading XML declaration).
    ProcessingInstruction,
    /// A name that is not a valid QName of NCNames (e.g. `x::Root`, `x:=`, `1a`).
    InvalidName(String),
    /// A prefix that is not bound to a namespace.
    UnboundPrefix(String),
    /// A namespace declaration that XML Namespaces 1.0 forbids (rebinding `xml`/`xmlns`,
    /// undeclaring a prefix, a relative URI, or a reference inside the URI).
    BadNamespaceDeclaration(String),
    /// The same attribute (by expanded name) twice on one element.
    DuplicateAttribute(String),
    /// An attribute value containing `<`.
    LtInAttributeValue,
    /// A second root element.
    MultipleRoots,
    /// Non-whitespace content before the root element.
    ContentBeforeRoot,
    /// Non-whitespace content or markup after the root element.
    TrailingContent,
    /// No root element at all.
    NoRoot,
    /// The document ended inside an element.
    UnclosedElement(String),
    /// An end tag that does not match the open element.
    MismatchedEndTag {
        /// The open element's name.
        expected: String,
        /// The end tag's name.
        found: String,
    },
    /// Any other syntax error, as reported by quick-xml.
    Syntax(String),
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::NotUtf8 => f.write_str("document is not valid UTF-8"),
            XmlError::InvalidChar(c) => write!(f, "character U+{c:04X} is not allowed in XML"),
            XmlError::BadDeclaration(s) => {
                write!(f, "unsupported XML declaration: {}", shown(s))
            }
            XmlError::DocType => f.write_str("DOCTYPE declarations are not allowed"),
            XmlError::UnknownEntity(e) => {
                write!(f, "reference to undeclared entity &{};", shown(e))
            }
            XmlError::InvalidCharRef(r) => {
                write!(f, "invalid character reference &{};", shown(r))
            }
            XmlError::ProcessingInstruction => {
                f.write_str("processing instructions are not allowed")
            }
            XmlError::InvalidName(n) => write!(f, "invalid XML name {}", quoted(n)),
            XmlError::UnboundPrefix(p) => write!(f, "namespace prefix {} is not bound", quoted(p)),
            XmlError::BadNamespaceDeclaration(s) => {
                write!(f, "bad namespace declaration: {}", shown(s))
            }
            XmlError::DuplicateAttribute(a) => write!(f, "duplicate attribute {}", quoted(a)),
            XmlError::LtInAttributeValue => f.write_str("'<' inside an attribute value"),
            XmlError::MultipleRoots => f.write_str("a second root element"),
            XmlError::ContentBeforeRoot => f.write_str("text before the root element"),
            XmlError::TrailingContent => f.write_str("content after the root element"),
            XmlError::NoRoot => f.write_str("no root element"),
            XmlError::UnclosedElement(n) => write!(f, "element <{}> is not closed", shown(n)),
            XmlError::MismatchedEndTag { expected, found } => {
                write!(
                    f,
                    "end tag </{}> does not close <{}>",
                    shown(found),
                    shown(expected)
                )
            }
            XmlError::Syntax(s) => write!(f, "syntax error: {}", shown(s)),
        }
    }
}

/// Which configured limit was exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitExceeded {
    /// Document larger than `max_document_size` bytes.
    DocumentSize(usize),
    /// Elements nested deeper than `max_depth`.
    Depth(usize),
    /// More than `max_attributes` attributes (including namespace declarations) on one element.
    Attributes(usize),
    /// An attribute value longer than `max_attribute_len` bytes.
    AttributeLength(usize),
    /// A text node longer than `max_text_len` bytes.
    TextLength(usize),
    /// A name longer than `max_name_len` bytes.
    NameLength(usize),
    /// A `ds:Signature` element larger than the signature size limit.
    SignatureSize(usize),
    /// More than `max_namespace_declarations` namespace declarations in scope at once.
    NamespaceDeclarations(usize),
    /// Signatures nested inside a signed document (entity-level signatures in an aggregate)
    /// digesting more than this many times the document's size in all.
    NestedSignatureWork(usize),
    /// A model built from a document holding more than this many bytes beyond the document's
    /// own: copies (namespace declarations repeated onto elements kept as written) and the
    /// fixed sizes of the values it keeps.
    ModelCopies(usize),
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::DocumentSize(n) => write!(f, "document larger than {n} bytes"),
            LimitExceeded::Depth(n) => write!(f, "elements nested deeper than {n}"),
            LimitExceeded::Attributes(n) => write!(f, "more than {n} attributes on an element"),
            LimitExceeded::AttributeLength(n) => {
                write!(f, "attribute value longer than {n} bytes")
            }
            LimitExceeded::TextLength(n) => write!(f, "text node longer than {n} bytes"),
            LimitExceeded::NameLength(n) => write!(f, "name longer than {n} bytes"),
            LimitExceeded::SignatureSize(n) => write!(f, "ds:Signature larger than {n} bytes"),
            LimitExceeded::NamespaceDeclarations(n) => {
                write!(f, "more than {n} namespace declarations in scope")
            }
            LimitExceeded::NestedSignatureWork(n) => {
                write!(f, "nested signatures covering more than {n}x the document")
            }
            LimitExceeded::ModelCopies(n) => {
                write!(f, "a model holding more than {n} bytes beyond the document")
            }
        }
    }
}

/// Why a signature was rejected (XMLDSIG.md rules 2-8). Each attack class maps to a variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The element to verify was not found (no root, or no element with that ID).
    #[error("the element to verify was not found: {}", shown(.0))]
    TargetNotFound(String),
    /// The signed element has no `ds:Signature` child where the placement requires one. With
    /// [`crate::dsig::Placement::FirstChild`] (metadata) this is reported at the element's first
    /// child element when it is not a `ds:Signature`, or when none starts within
    /// `max_signature_size` bytes of the end of the element's start tag; what follows is not read.
    #[error("no ds:Signature child on the signed element where the placement requires one")]
    Missing,
    /// More than one `ds:Signature` child on the signed element.
    #[error("more than one ds:Signature child on the signed element")]
    Multiple,
    /// The `ds:Signature` is not where the schema puts it (first child for metadata, right after
    /// `saml:Issuer` for protocol messages).
    #[error("ds:Signature is not at the required position: {}", shown(.0))]
    Misplaced(String),
    /// The structure inside `ds:Signature` is not the one allowed (missing, repeated or
    /// unexpected elements, `ds:Object`, `ds:Manifest`, wrapped `SignedInfo`...).
    #[error("unexpected ds:Signature structure: {}", shown(.0))]
    Structure(String),
    /// A comment inside `ds:Signature` (e.g. inside DigestValue, CVE-2025-29775).
    #[error("comment inside ds:Signature")]
    CommentInSignature,
    /// The Reference URI is not `""` or `#ID` of the signed element (or is not same-document).
    #[error("Reference URI {} does not point at the signed element", quoted(.0))]
    ReferenceUri(String),
    /// An ID attribute value occurs more than once in the document.
    #[error("ID {} occurs more than once", quoted(.0))]
    DuplicateId(String),
    /// An ID attribute whose value is written with a character reference or white space
    /// (e.g. `ID="&#95;a1"`): such a value reads differently raw and normalized, so it is
    /// refused rather than compared one way or the other.
    #[error("ID {} is written with a character reference or white space", quoted(.0))]
    InvalidId(String),
    /// The transforms are not exactly enveloped-signature followed by exc-c14n.
    #[error("transforms not allowed: {}", shown(.0))]
    Transforms(String),
    /// An algorithm that is unknown or not on the allowlist (SHA-1 without legacy opt-in, MD5,
    /// HMAC, DSA, inclusive c14n...).
    #[error("algorithm not allowed: {}", shown(.0))]
    Algorithm(String),
    /// A malformed value inside `ds:Signature` (bad base64, wrong ECDSA length, bad PrefixList).
    #[error("malformed signature value: {}", shown(.0))]
    Malformed(String),
    /// The canonical form of the signed element does not hash to the DigestValue.
    #[error("digest mismatch: the signed content was modified")]
    DigestMismatch,
    /// No configured key verified the SignatureValue over SignedInfo.
    #[error("signature value not made by any trusted key")]
    NotTrusted,
    /// A trusted key made the SignatureValue, but the signature's KeyInfo carries
    /// certificates and none of them holds that key: the signer claims another identity than
    /// the one that signed (Shibboleth SP and XML-Security-C refuse this too).
    #[error("KeyInfo names a certificate other than the trusted key that made the signature")]
    KeyInfoMismatch,
    /// Canonicalization produced no output (the "void canonicalization" class).
    #[error("empty canonical output never verifies")]
    EmptyCanonicalForm,
}

/// Errors of the protocol layer: what was wrong with a message, or which rule rejected it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A required element or attribute is missing or malformed.
    #[error("invalid <{element}> at byte {offset}: {message}")]
    Malformed {
        /// Local name of the element.
        element: String,
        /// Byte offset of its start tag.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// The IdP answered with a non-success status.
    #[error("the IdP returned status {}{}{}", shown(&code.to_string()), .second.as_ref().map(|s| format!(" / {}", shown(&s.to_string()))).unwrap_or_default(), .message.as_ref().map(|m| format!(": {}", shown(m))).unwrap_or_default())]
    Status {
        /// Top-level code.
        code: StatusCode,
        /// Second-level code.
        second: Option<StatusCode>,
        /// StatusMessage.
        message: Option<String>,
        /// Whether this is the IdP's own answer to an outstanding request: the Response was
        /// signed and verified with the IdP's keys, names no other issuer, and its
        /// `InResponseTo` is a request outstanding for that IdP. `false`: anyone could have
        /// posted it (an unsigned Response, or one answering no request of ours), so it must
        /// not end a login that the genuine answer may still complete.
        authentic: bool,
    },
    /// Neither the Response nor the Assertion is signed, or the policy wants the Assertion
    /// signed and it is not.
    #[error("{0}")]
    Unsigned(String),
    /// A Response must hold exactly one Assertion or EncryptedAssertion (the number found: 0,
    /// or 2, since reading stops at the second).
    #[error("expected exactly one assertion in the Response, found {0}")]
    AssertionCount(usize),
    /// The signed assertion is not the Response's assertion child (signature wrapping).
    #[error("the signed assertion is not the assertion the Response carries (signature wrapping)")]
    Wrapped,
    /// Issuer other than the expected IdP.
    #[error("issuer {} is not the expected {expected:?}", quoted(found))]
    IssuerMismatch {
        /// Expected entityID.
        expected: String,
        /// What the message says.
        found: String,
    },
    /// Destination other than this SP's ACS.
    #[error("Destination {} is not one of this SP's ACS URLs", quoted(found))]
    DestinationMismatch {
        /// What the message says.
        found: String,
    },
    /// `InResponseTo` names no request this SP has outstanding.
    #[error("InResponseTo {} is not an outstanding request of this SP", quoted(.0))]
    UnknownRequest(String),
    /// No `InResponseTo` and unsolicited responses are not allowed.
    #[error("unsolicited Response (no InResponseTo) and unsolicited responses are not allowed")]
    Unsolicited,
    /// A time condition is not met yet.
    #[error("{what} is not valid before {at} (now {now})")]
    NotYetValid {
        /// Which element.
        what: &'static str,
        /// Its NotBefore, RFC 3339.
        at: String,
        /// Now.
        now: String,
    },
    /// A time condition has passed.
    #[error("{what} expired at {at} (now {now})")]
    Expired {
        /// Which element.
        what: &'static str,
        /// Its NotOnOrAfter, RFC 3339.
        at: String,
        /// Now.
        now: String,
    },
    /// The assertion has no `AudienceRestriction` (SAML Profiles §4.1.4.2 requires one naming
    /// the SP).
    #[error("the assertion has no AudienceRestriction (SAML Profiles §4.1.4.2 requires one)")]
    NoAudienceRestriction,
    /// This SP is not in an AudienceRestriction.
    #[error("this SP ({sp}) is not in the audience {}", quoted_list(audiences))]
    AudienceMismatch {
        /// This SP's entityID.
        sp: String,
        /// The audiences of the failing restriction.
        audiences: Vec<String>,
    },
    /// No bearer SubjectConfirmation passes the profile's checks.
    #[error("no usable bearer SubjectConfirmation: {0}")]
    NoBearerConfirmation(String),
    /// The assertion ID was already used (replay).
    #[error("assertion {} was already used (replay)", quoted(.0))]
    Replayed(String),
    /// `Version` is not 2.0.
    #[error("unsupported SAML version {}", quoted(.0))]
    Version(String),
    /// XML Encryption: the assertion could not be decrypted or uses a refused algorithm.
    #[error("cannot decrypt: {0}")]
    Decryption(String),
    /// A binding-level problem (base64, DEFLATE, size limit, parameters, URL).
    #[error("binding: {0}")]
    Binding(String),
    /// A persistent or transient NameID's `NameQualifier` is not the IdP, or its
    /// `SPNameQualifier` not this SP (nor an accepted affiliation): the identifier would be
    /// filed under another party's namespace (SAML Core §8.3.7, §8.3.8).
    #[error(
        "NameID {attribute} {} names another party than the IdP and this SP",
        quoted(found)
    )]
    NameQualifierMismatch {
        /// `NameQualifier` or `SPNameQualifier`.
        attribute: String,
        /// The value found.
        found: String,
    },
    /// The AuthnRequest names a subject (`saml:Subject`) and the principal asserted is another
    /// one: the IdP must answer with an error status instead (SAML Core §3.4.1).
    #[error("the request asks for subject {requested:?}, not {asserted:?}")]
    SubjectMismatch {
        /// The NameID the request names.
        requested: String,
        /// The NameID that would have been asserted.
        asserted: String,
    },
    /// The AuthnRequest's `NameIDPolicy` asks for a NameID format the NameID asserted does not
    /// have (or for the `encrypted` format, an `EncryptedID`, which this builder does not
    /// make), or names an `SPNameQualifier` the NameID's differs from: the IdP answers
    /// `InvalidNameIDPolicy` instead (SAML Core §3.4.1.1).
    #[error("the request's NameIDPolicy is not met: {0}")]
    NameIdPolicyUnmet(String),
    /// The AuthnRequest's `RequestedAuthnContext` is not met by the authentication context
    /// asserted: with comparison `exact`, `minimum` or `maximum` it is none of the listed
    /// classes; `better`, and declaration references, only the IdP's own judgement can meet
    /// (SAML Core §3.3.2.2.1). The IdP answers `NoAuthnContext` instead.
    #[error(
        "the request asks for an authentication context ({comparison}) in {requested:?}, not {asserted:?}"
    )]
    AuthnContextUnmet {
        /// The comparison (`exact` when the request gives none).
        comparison: String,
        /// The classes (or declarations) the request lists.
        requested: Vec<String>,
        /// The class that would have been asserted.
        asserted: String,
    },
    /// The AuthnRequest has `ForceAuthn="true"` and the authentication asserted happened
    /// before the request was issued (an existing session's): the IdP must authenticate the
    /// presenter again (SAML Core §3.4.1).
    #[error(
        "the request forces a new authentication after {requested}, the asserted one was at {authenticated}"
    )]
    StaleAuthentication {
        /// The request's IssueInstant, RFC 3339.
        requested: String,
        /// The AuthnInstant that would have been asserted, RFC 3339.
        authenticated: String,
    },
}

impl ProtocolError {
    /// For a request an IdP cannot answer as asked ([`crate::protocol::idp::ResponseBuilder::build`]'s
    /// refusals), the status of the error Response it sends instead (SAML Core §3.2.2.2,
    /// §3.4.1); `None` for every other error.
    #[must_use]
    pub fn answer_status(&self) -> Option<crate::protocol::Status> {
        use crate::status::StatusCode;
        let second = match self {
            ProtocolError::SubjectMismatch { .. } => StatusCode::UnknownPrincipal,
            ProtocolError::NameIdPolicyUnmet(_) => StatusCode::InvalidNameIdPolicy,
            ProtocolError::AuthnContextUnmet { .. } => StatusCode::NoAuthnContext,
            ProtocolError::StaleAuthentication { .. } => StatusCode::AuthnFailed,
            _ => return None,
        };
        Some(crate::protocol::Status {
            code: StatusCode::Responder,
            second: Some(second),
            message: None,
        })
    }

    /// What kind of failure this is (see [`ErrorKind`]).
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::Malformed { .. }
            | ProtocolError::Version(_)
            | ProtocolError::Binding(_)
            | ProtocolError::AssertionCount(_) => ErrorKind::Malformed,
            ProtocolError::Decryption(_) => ErrorKind::Crypto,
            _ => ErrorKind::Rejected,
        }
    }
}

/// Most characters of a value from an unauthenticated message an error shows ([`shown`]).
pub(crate) const MAX_SHOWN: usize = 256;

/// `value` as an error shows it: as written when it is short and holds no control character
/// (nor a line separator or bidirectional control),
/// else [`quoted`]: its first [`MAX_SHOWN`] characters escaped (Rust string syntax). An unsigned
/// Response's `StatusMessage` (up to the reader's text limit) and status code URI were shown
/// whole and raw before any signature was checked: forged log lines, a megabyte per line
/// (review S5). The whole value stays in the error's fields.
fn shown(value: &str) -> std::borrow::Cow<'_, str> {
    // Line and paragraph separators and bidirectional controls reorder or break a log line
    // as control characters do (review G4); `{:?}` escapes them.
    let plain = |c: char| {
        !c.is_control()
            && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if value.chars().count() <= MAX_SHOWN && value.chars().all(plain) {
        return value.into();
    }
    quoted(value).into()
}

/// `value` quoted and escaped as `{:?}` shows it, its first [`MAX_SHOWN`] characters only
/// (then `…`): what errors show of an identifier, URL or version an unauthenticated message
/// carries, which the attribute limit alone bounds (64 KiB by default; review G4). The whole
/// value stays in the error's fields.
fn quoted(value: &str) -> String {
    let mut chars = value.char_indices();
    match chars.nth(MAX_SHOWN) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// Most values of a list an error shows ([`quoted_list`]).
const MAX_SHOWN_VALUES: usize = 8;

/// `values` as `["a", "b"]`, each [`quoted`], at most [`MAX_SHOWN_VALUES`] of them (then how
/// many more).
fn quoted_list(values: &[String]) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(MAX_SHOWN_VALUES)
        .map(|v| quoted(v))
        .collect();
    let more = values.len().saturating_sub(MAX_SHOWN_VALUES);
    if more > 0 {
        format!("[{}] and {more} more", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_cause() {
        assert_eq!(
            Error::xml(3, XmlError::DocType).kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            Error::Signature(SignatureError::DigestMismatch).kind(),
            ErrorKind::Rejected
        );
        assert_eq!(Error::Usage("no keys".into()).kind(), ErrorKind::Misuse);
        assert_eq!(
            Error::Protocol(ProtocolError::Replayed("_a".into())).kind(),
            ErrorKind::Rejected
        );
        assert_eq!(
            Error::Protocol(ProtocolError::Binding("bad base64".into())).kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            Error::Protocol(ProtocolError::Decryption("x".into())).kind(),
            ErrorKind::Crypto
        );
    }

    /// Review G4's rest: the values of an unauthenticated message an error names (issuer,
    /// destination, version, request and assertion IDs, name qualifiers, audiences) were
    /// shown whole, up to the attribute limit each: a 64 KiB line in a log per forged
    /// Response. They are shown quoted, at most 256 characters each and 8 of a list.
    #[test]
    fn unauthenticated_values_are_shown_bounded() {
        let long = format!("{}\n{}", "x".repeat(300), "y".repeat(60_000));
        let errors = [
            ProtocolError::IssuerMismatch {
                expected: "https://idp.example/".into(),
                found: long.clone(),
            },
            ProtocolError::DestinationMismatch {
                found: long.clone(),
            },
            ProtocolError::UnknownRequest(long.clone()),
            ProtocolError::Replayed(long.clone()),
            ProtocolError::Version(long.clone()),
            ProtocolError::NameQualifierMismatch {
                attribute: "NameQualifier".into(),
                found: long.clone(),
            },
            ProtocolError::AudienceMismatch {
                sp: "https://sp.example/".into(),
                audiences: vec![long.clone(); 1000],
            },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.len() < 8 * 300 + 200, "{} bytes", text.len());
            assert!(!text.contains('\n'), "escaped");
            assert!(
                text.contains(&format!("\"{}\"…", "x".repeat(256))),
                "{text:.400}"
            );
        }
        let e = ProtocolError::AudienceMismatch {
            sp: "https://sp.example/".into(),
            audiences: vec!["a".into(); 10],
        };
        assert_eq!(
            e.to_string(),
            r#"this SP (https://sp.example/) is not in the audience ["a", "a", "a", "a", "a", "a", "a", "a"] and 2 more"#
        );
        let e = ProtocolError::Version("2.1".into());
        assert_eq!(e.to_string(), r#"unsupported SAML version "2.1""#);
    }

    /// Review C3: XML and signature errors echoed names, IDs, URIs and references whole (an
    /// end tag's name up to the document's size, an ID up to the attribute limit), some raw,
    /// before any signature was checked. Each is shown at most 256 characters, escaped when
    /// it holds a control character.
    #[test]
    fn xml_and_signature_errors_show_bounded_values() {
        let long = format!("{}\n{}", "b".repeat(300), "c".repeat(60_000));
        let errors: Vec<Error> = vec![
            Error::xml(0, XmlError::InvalidName(long.clone())),
            Error::xml(0, XmlError::UnboundPrefix(long.clone())),
            Error::xml(0, XmlError::BadNamespaceDeclaration(long.clone())),
            Error::xml(0, XmlError::DuplicateAttribute(long.clone())),
            Error::xml(0, XmlError::UnclosedElement(long.clone())),
            Error::xml(0, XmlError::UnknownEntity(long.clone())),
            Error::xml(0, XmlError::InvalidCharRef(long.clone())),
            Error::xml(0, XmlError::Syntax(long.clone())),
            Error::xml(
                0,
                XmlError::MismatchedEndTag {
                    expected: long.clone(),
                    found: long.clone(),
                },
            ),
            Error::Signature(SignatureError::TargetNotFound(long.clone())),
            Error::Signature(SignatureError::ReferenceUri(long.clone())),
            Error::Signature(SignatureError::DuplicateId(long.clone())),
            Error::Signature(SignatureError::InvalidId(long.clone())),
            // Review H2: what the declaration and the signature's algorithms say.
            Error::xml(0, XmlError::BadDeclaration(long.clone())),
            Error::Signature(SignatureError::Misplaced(long.clone())),
            Error::Signature(SignatureError::Structure(long.clone())),
            Error::Signature(SignatureError::Transforms(long.clone())),
            Error::Signature(SignatureError::Algorithm(long.clone())),
            Error::Signature(SignatureError::Malformed(long.clone())),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(
                text.len() < 2 * 300 + 200,
                "{} bytes: {text:.200}",
                text.len()
            );
            assert!(!text.contains('\n'), "escaped: {text:.200}");
        }
        // Short plain values read as before.
        let e = Error::xml(
            7,
            XmlError::MismatchedEndTag {
                expected: "md:a".into(),
                found: "md:b".into(),
            },
        );
        assert!(
            e.to_string()
                .contains("end tag </md:b> does not close <md:a>"),
            "{e}"
        );
        let e = SignatureError::DuplicateId("_a1".into());
        assert_eq!(e.to_string(), r#"ID "_a1" occurs more than once"#);
    }
}
