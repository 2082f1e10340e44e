//! Handling an MDQ response (draft-young-md-query-21 §4, -saml-21 §3): status codes as outcomes,
//! gzip, size limits, lenient Content-Type, signature and validity through saml-metadata, the
//! entityID check, and the cache lifetime from the headers and the metadata.
//!
//! Real servers' quirks handled: an empty `EntitiesDescriptor` with 200 means "not found"
//! (pyFF); unquoted ETags; `Expires` without `Cache-Control`.

use std::io::Read;
use std::time::{Duration, SystemTime};

use saml_metadata::load::{self, Aggregate, Policy};
use saml_metadata::model::{EntityDescriptor, Metadata, Role};
use saml_metadata::time::parse_datetime;

use crate::error::Error;
use crate::url::Identifier;

/// An HTTP response as the adapter received it.
#[derive(Debug, Clone, Copy)]
pub struct HttpResponse<'a> {
    /// Status code.
    pub status: u16,
    /// Header fields, names in any case.
    pub headers: &'a [(String, String)],
    /// The body as received (possibly gzip-compressed).
    pub body: &'a [u8],
}

impl HttpResponse<'_> {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// What a response means.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a fetched response is the verified answer to a lookup"]
pub enum Fetched {
    /// The verified entity, its ETag and how long it may be cached (before clamping).
    Entity {
        /// The entity.
        entity: Box<EntityDescriptor>,
        /// The ETag, normalized (quotes and `W/` kept as sent).
        etag: Option<String>,
        /// The `Last-Modified` date as sent, if it is one an `If-Modified-Since` header can
        /// carry back (at most 64 visible ASCII characters): the validator of a server that
        /// sends no ETag.
        last_modified: Option<String>,
        /// Lifetime from the response and metadata, if any said.
        ttl: Option<Duration>,
        /// The entity's (or its document's) validUntil.
        valid_until: Option<SystemTime>,
        /// The shortest signed cacheDuration of the document's root, the entity and its roles:
        /// it bounds the lifetime a later 304 gives the copy too.
        cache_duration: Option<Duration>,
        /// The verified document as received (decoded), for a persistent cache.
        document: Vec<u8>,
        /// `Cache-Control: no-store`: the answer may be used, and is kept in memory for the
        /// configured minimum lifetime like any other, but never written to a persistent
        /// cache (RFC 9111 §5.2.2.5; mdq review I1).
        no_store: bool,
    },
    /// 304: the cached copy is still current.
    NotModified {
        /// Lifetime from the response headers, if any.
        ttl: Option<Duration>,
        /// `Cache-Control: no-store`: the cached copy is no longer handed to a persistent
        /// cache.
        no_store: bool,
    },
    /// 404, or an empty EntitiesDescriptor.
    NotFound {
        /// Lifetime from the response headers, if any (for negative caching).
        ttl: Option<Duration>,
    },
}

/// The shortest signed cacheDuration of `agg`'s root, `entity` and its roles (SAML Metadata
/// §2.3.1: each bounds what it contains; the entity's alone was taken, a longer one than its
/// group's included: mdq review L2).
pub(crate) fn signed_cache_duration(
    agg: &Aggregate,
    entity: &EntityDescriptor,
) -> Option<Duration> {
    let root_cache = match agg.metadata() {
        Metadata::Entities(g) => g.cache_duration,
        Metadata::Entity(_) => None,
    };
    [root_cache, entity.cache_duration]
        .into_iter()
        .chain(entity.roles.iter().map(Role::cache_duration))
        .flatten()
        .min()
}

/// Whether `v` can be sent back in a request header as it is: 1 to `max` visible ASCII
/// characters and spaces.
pub(crate) fn header_safe(v: &str, max: usize) -> bool {
    (1..=max).contains(&v.len()) && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// A lifetime an answer's headers give (`header`) bounded by the signed cacheDuration: the
/// shorter when both are given (an unsigned max-age, from a proxy or a MITM on an http://
/// base, stretched the signed one: mdq review L2), else whichever is.
pub(crate) fn bounded_by_signed(
    header: Option<Duration>,
    signed: Option<Duration>,
) -> Option<Duration> {
    match (header, signed) {
        (Some(a), Some(m)) => Some(a.min(m)),
        (a, m) => a.or(m),
    }
}

/// What a response's headers say about caching it (RFC 9111 §5.2.2, §5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheHeaders {
    /// `Cache-Control: max-age` (zero for `no-cache` and `no-store`: revalidate at once).
    pub max_age: Option<Duration>,
    /// `Expires` relative to `Date` (or to `now` without one).
    pub expires: Option<Duration>,
    /// `Cache-Control: no-store`.
    pub no_store: bool,
}

/// Reads the caching headers of `resp`.
pub fn cache_headers(resp: &HttpResponse<'_>, now: SystemTime) -> CacheHeaders {
    let mut out = CacheHeaders::default();
    // Every Cache-Control field line, as one list (RFC 9110 §5.3): a `no-store` on a second
    // line counts (mdq review of 2026-12-06: only the first line was read).
    let lower = resp
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cache-control"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    for d in lower.split(',').map(str::trim) {
        match d {
            "no-store" => {
                out.no_store = true;
                out.max_age = Some(Duration::ZERO);
            }
            "no-cache" => out.max_age = Some(Duration::ZERO),
            _ => {
                if let Some(v) = d.strip_prefix("max-age=")
                    && let Ok(secs) = v.trim_matches('"').parse::<u64>()
                    && out.max_age.is_none()
                {
                    out.max_age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    out.expires = resp.header("expires").and_then(http_date).map(|expires| {
        let base = resp.header("date").and_then(http_date).unwrap_or(now);
        expires.duration_since(base).unwrap_or(Duration::ZERO)
    });
    out
}

/// `Cache-Control: max-age` (zero for `no-cache` and `no-store`), else `Expires` relative to
/// `Date` (or `now`): the lifetime the headers alone give. [`handle`] puts the metadata's
/// cacheDuration between the two (see [`cache_headers`]).
pub fn header_ttl(resp: &HttpResponse<'_>, now: SystemTime) -> Option<Duration> {
    let h = cache_headers(resp, now);
    h.max_age.or(h.expires)
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7); other forms are ignored.
pub fn http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == mon)? + 1;
    let iso = format!("{year}-{m:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    parse_datetime(&iso)
}

fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    // Every member (RFC 1952 §2.2: a gzip file may be several), under the one bound (mdq
    // review L7: the first member alone was decoded, the rest ignored).
    flate2::read::MultiGzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Response(format!("bad gzip body: {e}")))?;
    if out.len() > max {
        return Err(Error::TooLarge { max });
    }
    Ok(out)
}

fn content_type_ok(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/samlmetadata+xml"
            | "application/xml"
            | "text/xml"
            | "application/octet-stream"
            | ""
    )
}

/// Interprets `resp` to a lookup of `id`: verifies the metadata under `policy` (keys, validity,
/// the caller's "now"), checks the entityID, and reads the lifetime. `max_body` bounds the
/// decoded body.
pub fn handle(
    id: &Identifier,
    resp: &HttpResponse<'_>,
    policy: &Policy,
    max_body: usize,
) -> Result<Fetched, Error> {
    let headers = cache_headers(resp, policy.now);
    let ttl = headers.max_age.or(headers.expires);
    match resp.status {
        200 => {}
        304 => {
            return Ok(Fetched::NotModified {
                ttl,
                no_store: headers.no_store,
            });
        }
        404 => return Ok(Fetched::NotFound { ttl }),
        // 406: the server cannot send SAML metadata.
        status => return Err(Error::Status { status }),
    }
    if !content_type_ok(resp.header("content-type")) {
        return Err(Error::Response(format!(
            "unexpected Content-Type {:?}",
            resp.header("content-type").unwrap_or_default()
        )));
    }
    let decoded = decode_body(resp, max_body)?;
    let body = decoded.as_slice();
    let agg = load::load(body, policy)?;
    let (entity, valid_until) = pick(id, &agg, policy.now)?;
    let Some(entity) = entity else {
        return Ok(Fetched::NotFound { ttl });
    };
    let cache_duration = signed_cache_duration(&agg, entity);
    // max-age and the signed cacheDuration, then Expires (mdq review I1).
    Ok(Fetched::Entity {
        etag: resp.header("etag").map(str::to_owned),
        last_modified: resp
            .header("last-modified")
            .map(str::trim)
            .filter(|v| header_safe(v, 64))
            .map(str::to_owned),
        ttl: bounded_by_signed(headers.max_age, cache_duration).or(headers.expires),
        no_store: headers.no_store,
        valid_until,
        cache_duration,
        document: body.to_vec(),
        entity: Box::new(entity.clone()),
    })
}

/// Interprets the answer to an "all entities" request (`base + "entities"`): the verified
/// aggregate (`None` for 304 or 404), after the same status, encoding, size and Content-Type
/// checks as a single lookup.
pub fn handle_all(
    resp: &HttpResponse<'_>,
    policy: &Policy,
    max_body: usize,
) -> Result<Option<Aggregate>, Error> {
    match resp.status {
        200 => {}
        304 | 404 => return Ok(None),
        status => return Err(Error::Status { status }),
    }
    if !content_type_ok(resp.header("content-type")) {
        return Err(Error::Response("unexpected Content-Type".into()));
    }
    let body = decode_body(resp, max_body)?;
    Ok(Some(load::load_owned(body, policy)?))
}

/// The body, size-checked and gunzipped when `Content-Encoding` says so.
fn decode_body(resp: &HttpResponse<'_>, max_body: usize) -> Result<Vec<u8>, Error> {
    if resp.body.len() > max_body {
        return Err(Error::TooLarge { max: max_body });
    }
    match resp
        .header("content-encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("identity") => Ok(resp.body.to_vec()),
        Some("gzip" | "x-gzip") => gunzip(resp.body, max_body),
        Some(other) => Err(Error::Response(format!(
            "unsupported Content-Encoding {other}"
        ))),
    }
}

/// The entity answering `id` in a verified document (a bare EntityDescriptor, or an
/// EntitiesDescriptor with it), and the validUntil that applies at `now`: the earliest of the
/// root's, its groups', its own and its roles' (a cached entity is served only until its first
/// role lapses: then it is fetched again, and loading leaves the lapsed role out: mdq review
/// M1). An entity whose validUntil has passed at `now` is refused (loading tolerates the
/// clock skew; the cache never serves at or after validUntil: mdq review L1).
pub(crate) fn pick<'a>(
    id: &Identifier,
    agg: &'a Aggregate,
    now: SystemTime,
) -> Result<(Option<&'a EntityDescriptor>, Option<SystemTime>), Error> {
    let root_valid = match agg.metadata() {
        Metadata::Entities(g) => g.valid_until,
        Metadata::Entity(e) => e.valid_until,
    };
    let mut found = None;
    for e in agg.entities() {
        if id.matches(&e.entity_id) {
            if let Some(first) = found.replace(e) {
                // Two entityIDs of one SHA-1 in one answer: the profile calls such a pair
                // malicious (draft-young-md-query-saml §4.2; mdq review L10).
                return Err(Error::Response(format!(
                    "two entities answer {id}: {:?} and {:?}",
                    first.entity_id, e.entity_id
                )));
            }
        } else if matches!(agg.metadata(), Metadata::Entity(_)) || agg.len() == 1 {
            return Err(Error::WrongEntity {
                requested: id.to_string(),
                found: e.entity_id.clone(),
            });
        }
    }
    if found.is_none() {
        // Left out of the verified aggregate: an error, not "not found" (mdq review I5: a
        // bad signature was cached as "does not exist").
        if let Some(r) = agg
            .refused_entities()
            .iter()
            .find(|r| id.matches(&r.entity_id))
        {
            return Err(Error::EntityLeftOut {
                entity_id: r.entity_id.clone(),
                reason: if r.invalid_model {
                    format!("its metadata is invalid: {}", r.reason)
                } else {
                    format!("its own signature did not verify: {}", r.reason)
                },
            });
        }
        if let Some(e) = agg.expired_entities().iter().find(|e| id.matches(e)) {
            return Err(Error::EntityLeftOut {
                entity_id: e.clone(),
                reason: "its validUntil has passed".into(),
            });
        }
    }
    if found.is_none() && !agg.is_empty() {
        return Err(Error::Response(format!(
            "{} entities and none is {id}",
            agg.len()
        )));
    }
    // The earliest of the entity's, its groups' and the root's (SAML Metadata §2.3.1), and of
    // its roles' (§2.4.1).
    let earliest = |a: Option<SystemTime>, b: Option<SystemTime>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut valid = earliest(
        found.and_then(|e| agg.valid_until(&e.entity_id)),
        root_valid,
    );
    if let Some(e) = found {
        for r in &e.roles {
            valid = earliest(valid, r.valid_until());
        }
        if valid.is_some_and(|v| v <= now) {
            return Err(Error::EntityLeftOut {
                entity_id: e.entity_id.clone(),
                reason: "its validUntil has passed".into(),
            });
        }
    }
    Ok((found, valid))
}
