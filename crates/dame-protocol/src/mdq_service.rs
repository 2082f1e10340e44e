//! The broker's metadata service core (sans-IO): answers Metadata Query Protocol requests
//! (draft-young-md-query) for registered entities with their signed per-entity documents.
//!
//! ```text
//! GET <base>/entities/<pct-encoded entityID>    the signed EntityDescriptor
//! GET <base>/entities/{sha1}<40 hex digits>     the same, by the SHA-1 of the entityID
//! GET <base>/entities                           the signed aggregate of all, when offered
//! 200 application/samlmetadata+xml, ETag, Cache-Control: max-age
//! 304 when If-None-Match names the current ETag; 404 (cached briefly) for unknown entities;
//! 406 when Accept excludes SAML metadata; 405 for methods other than GET and HEAD;
//! 400 for a path that is not one segment below `entities`.
//! ```

use std::sync::Arc;
use std::time::Duration;

use saml_metadata::model::sha1_hex;

/// The media type of MDQ answers.
pub const MEDIA_TYPE: &str = "application/samlmetadata+xml";

/// A signed document the service can send.
///
/// The XML is shared, so that handing it out is a reference count, not a copy: a source kept
/// behind a lock (the broker's registry) is held only for that moment, however large the
/// document and however many ask at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDocument {
    /// The signed XML.
    pub xml: Arc<[u8]>,
    /// Its entity tag (an opaque version, e.g. a digest prefix), without quotes.
    pub etag: String,
}

/// Where the service finds documents (the broker's store, or memory).
pub trait DocumentSource {
    /// The signed document of the entity whose entityID has SHA-1 `sha1_hex` (lower case).
    fn by_sha1(&self, sha1_hex: &str) -> Option<SignedDocument>;
    /// The signed aggregate of every entity, if the broker publishes one.
    fn aggregate(&self) -> Option<SignedDocument> {
        None
    }
}

/// An MDQ request as the HTTP layer saw it.
#[derive(Debug, Clone, Copy)]
pub struct MdqRequest<'a> {
    /// The method (`GET`, `HEAD`).
    pub method: &'a str,
    /// The request path (without query string), still percent-encoded.
    pub path: &'a str,
    /// The `Accept` header, if any.
    pub accept: Option<&'a str>,
    /// The `If-None-Match` header, if any.
    pub if_none_match: Option<&'a str>,
}

/// The answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MdqAnswer {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (empty for HEAD, 304 and errors), shared with the source's document.
    pub body: Arc<[u8]>,
}

/// The service: its path prefix and how long answers may be cached.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MdqService {
    /// The path under which `entities` lives (e.g. `/` or `/metadataservice/`), ending in `/`.
    pub base_path: String,
    /// `Cache-Control: max-age` of found documents (default 1 hour).
    pub max_age: Duration,
    /// `Cache-Control: max-age` of 404 answers (default 1 minute: a newly registered entity
    /// is found soon).
    pub negative_max_age: Duration,
}

impl MdqService {
    /// A service under `base_path` (a trailing `/` is added when missing).
    #[must_use]
    pub fn new(base_path: &str) -> Self {
        let mut base = base_path.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        MdqService {
            base_path: base,
            max_age: Duration::from_secs(3600),
            negative_max_age: Duration::from_secs(60),
        }
    }

    fn plain(status: u16, max_age: Option<Duration>) -> MdqAnswer {
        let mut headers = vec![("Content-Length", "0".to_owned())];
        if let Some(a) = max_age {
            headers.push(("Cache-Control", format!("max-age={}", a.as_secs())));
        }
        MdqAnswer {
            status,
            headers,
            body: Arc::from([]),
        }
    }

    /// Answers `req` from `source`.
    pub fn answer(&self, req: &MdqRequest<'_>, source: &dyn DocumentSource) -> MdqAnswer {
        let head = match req.method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                let mut a = Self::plain(405, None);
                a.headers.push(("Allow", "GET, HEAD".into()));
                return a;
            }
        };
        let Some(rest) = req
            .path
            .strip_prefix(self.base_path.as_str())
            .and_then(|r| r.strip_prefix("entities"))
        else {
            return Self::plain(404, Some(self.negative_max_age));
        };
        if !accepts_metadata(req.accept) {
            return Self::plain(406, None);
        }
        let doc = match rest {
            "" | "/" => source.aggregate(),
            seg => {
                let Some(seg) = seg.strip_prefix('/') else {
                    return Self::plain(404, Some(self.negative_max_age));
                };
                if seg.contains('/') || seg.len() > 4096 {
                    return Self::plain(400, None);
                }
                match sha1_of(seg) {
                    Some(hashes) => hashes.iter().find_map(|h| source.by_sha1(h)),
                    None => return Self::plain(400, None),
                }
            }
        };
        let Some(doc) = doc else {
            return Self::plain(404, Some(self.negative_max_age));
        };
        let etag = format!("\"{}\"", doc.etag);
        let cache = format!("max-age={}", self.max_age.as_secs());
        if req.if_none_match.is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str()))
        }) {
            return MdqAnswer {
                status: 304,
                headers: vec![("ETag", etag), ("Cache-Control", cache)],
                body: Arc::from([]),
            };
        }
        MdqAnswer {
            status: 200,
            headers: vec![
                ("Content-Type", MEDIA_TYPE.to_owned()),
                ("Content-Length", doc.xml.len().to_string()),
                ("ETag", etag),
                ("Cache-Control", cache),
            ],
            body: if head { Arc::from([]) } else { doc.xml },
        }
    }
}

/// The SHA-1 hex digests an MDQ path segment may name, to look up in order: `{sha1}<hex>`
/// (braces percent-encoded or not, in either case), else the SHA-1 of the entityID the segment
/// percent-encodes (RFC 3986 §2.1: `+` is itself, as the draft's examples, Shibboleth and
/// mdq-client write it), then, for clients that form-encode a space as `+`, of that reading.
fn sha1_of(seg: &str) -> Option<Vec<String>> {
    let id = percent_decode(seg)?;
    if let Some(h) = id.strip_prefix("{sha1}") {
        return (h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| vec![h.to_ascii_lowercase()]);
    }
    if id.is_empty() {
        return None;
    }
    let mut out = vec![sha1_hex(&id)];
    if seg.contains('+') {
        out.push(sha1_hex(&saml_core::bindings::url_decode(seg).ok()?));
    }
    Some(out)
}

/// `%XX` decoded (RFC 3986 §2.1), nothing else (`+` is itself); the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    saml_core::bindings::url_decode(&s.replace('+', "%2B")).ok()
}

/// Whether an `Accept` header admits SAML metadata (absent: yes).
fn accepts_metadata(accept: Option<&str>) -> bool {
    let Some(a) = accept else { return true };
    a.split(',').any(|item| {
        let mut parts = item.split(';');
        let t = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused
            && matches!(
                t.as_str(),
                MEDIA_TYPE | "application/xml" | "text/xml" | "application/*" | "text/*" | "*/*"
            )
    })
}
