//! Strict query strings (`application/x-www-form-urlencoded` pairs, as the SAML HTTP-Redirect
//! binding uses them): bounded length and count, every name at most once, values
//! percent-decoded on demand so that signed octets stay as received.

use saml_core::bindings::url_decode;

use crate::error::Error;

/// Longest query string accepted (bytes).
pub const MAX_QUERY_LEN: usize = 16 << 10;
/// Most parameters accepted in one query string.
pub const MAX_PARAMS: usize = 32;

/// A parsed query string: the raw (still encoded) pairs, in order.
#[derive(Debug, Clone)]
pub(crate) struct Query<'a> {
    pub(crate) pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Query<'a> {
    /// Parses `q` (with or without the leading `?`).
    pub(crate) fn parse(what: &'static str, q: &'a str) -> Result<Self, Error> {
        let q = q.strip_prefix('?').unwrap_or(q);
        if q.len() > MAX_QUERY_LEN {
            return Err(Error::malformed(
                what,
                format!("query longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for part in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| Error::malformed(what, format!("parameter {part:?} has no '='")))?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Error::malformed(what, format!("bad parameter name {k:?}")));
            }
            if pairs.iter().any(|(n, _)| *n == k) {
                return Err(Error::malformed(
                    what,
                    format!("{k} appears more than once"),
                ));
            }
            if pairs.len() == MAX_PARAMS {
                return Err(Error::malformed(
                    what,
                    format!("more than {MAX_PARAMS} parameters"),
                ));
            }
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    /// The raw (encoded) value of `name`.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// The decoded value of `name`, if present.
    pub(crate) fn get(&self, what: &'static str, name: &str) -> Result<Option<String>, Error> {
        self.raw(name)
            .map(|v| url_decode(v).map_err(|e| Error::malformed(what, format!("{name}: {e}"))))
            .transpose()
    }

    /// The decoded value of a required parameter, non-empty.
    pub(crate) fn required(&self, what: &'static str, name: &str) -> Result<String, Error> {
        match self.get(what, name)? {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(Error::malformed(what, format!("{name} is empty"))),
            None => Err(Error::malformed(what, format!("{name} is missing"))),
        }
    }
}

/// `name=value` pairs written in order, values percent-encoded.
pub(crate) fn write(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", saml_core::bindings::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `endpoint` with `query` appended (`?`, or `&` when the endpoint has a query already).
pub(crate) fn append(endpoint: &str, query: &str) -> String {
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{query}")
}
