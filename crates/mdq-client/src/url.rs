//! MDQ URLs (draft-young-md-query-21 §3, draft-young-md-query-saml-21 §2.1-2.2).
//!
//! - A base URL is a scheme, an authority and a path ending in `/`, with no query or fragment
//!   (a missing final `/` is added).
//! - A lookup is `base + "entities/" + identifier`, the identifier percent-encoded as one path
//!   segment: `/` becomes `%2F`, a space `%20` (never `+`); RFC 3986 `pchar`s other than `%`
//!   (unreserved, sub-delims, `:` and `@`) stay as they are. The entityIDs `.` and `..` would be
//!   dot segments (RFC 3986 §5.2.4; WHATWG parsers read `%2E` as a dot too) and leave
//!   `entities/`: they are looked up by their `{sha1}` form instead.
//! - The SAML profile's transformed identifier is `{sha1}` and 40 lower-case hex digits of the
//!   SHA-1 of the entityID; in a URL the braces are `%7B` and `%7D`.
//! - All entities: `base + "entities"`.

use saml_metadata::model::sha1_hex;

use crate::error::Error;

/// A validated MDQ base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Validates `s` (http or https, a host, no query, no fragment, no user info).
    pub fn parse(s: &str) -> Result<BaseUrl, Error> {
        // The url crate follows WHATWG leniency (`https:/host`, `https:///host`): insist on the
        // RFC 3986 form `scheme://authority`.
        if !s
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'))
        {
            return Err(Error::Url(format!("{s:?}: expected scheme://host/path/")));
        }
        let u = url::Url::parse(s).map_err(|e| Error::Url(format!("{s:?}: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(Error::Url(format!(
                "{s:?}: the scheme must be http or https"
            )));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(Error::Url(format!("{s:?}: no host")));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(Error::Url(format!(
                "{s:?}: a base URL has no query or fragment"
            )));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(Error::Url(format!("{s:?}: no credentials in the base URL")));
        }
        let mut out: String = u.into();
        if !out.ends_with('/') {
            out.push('/');
        }
        Ok(BaseUrl(out))
    }

    /// The base URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lookup URL for `id`.
    pub fn entity(&self, id: &Identifier) -> String {
        format!("{}entities/{}", self.0, id.path_segment())
    }

    /// The URL of all entities.
    pub fn all(&self) -> String {
        format!("{}entities", self.0)
    }
}

/// The longest entityID looked up (SAML Core §8.3.6: an entity identifier is at most 1024
/// characters).
pub const MAX_ENTITY_ID_CHARS: usize = 1024;

/// What a lookup asks for: an entityID, or the `{sha1}` transform of one. The cache key (the
/// SHA-1 hex of the entityID) is computed once, when the identifier is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    entity_id: Option<String>,
    key: String,
}

impl Identifier {
    /// An entityID: 1 to 1024 characters (SAML Core §8.3.6), no control characters (mdq review
    /// L8: an Issuer of megabytes became a URL three times as long, answered 414 and never
    /// cached; CR or LF forged lines in logs that print the error).
    pub fn entity_id(id: &str) -> Result<Identifier, Error> {
        if id.is_empty() {
            return Err(Error::Url("empty entityID".into()));
        }
        if id.chars().count() > MAX_ENTITY_ID_CHARS {
            return Err(Error::Url(format!(
                "an entityID longer than {MAX_ENTITY_ID_CHARS} characters (SAML Core §8.3.6)"
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(Error::Url(format!(
                "an entityID with control characters: {id:?}"
            )));
        }
        Ok(Identifier {
            entity_id: Some(id.to_owned()),
            key: sha1_hex(id),
        })
    }

    /// The `{sha1}` identifier of an entityID.
    pub fn sha1_of(entity_id: &str) -> Identifier {
        Identifier {
            entity_id: None,
            key: sha1_hex(entity_id),
        }
    }

    /// Parses `{sha1}` + 40 hex digits (upper case is folded to lower case, which servers
    /// such as pyFF require).
    pub fn parse_sha1(s: &str) -> Result<Identifier, Error> {
        let hex = s
            .strip_prefix("{sha1}")
            .ok_or_else(|| Error::Url(format!("{s:?} does not start with {{sha1}}")))?;
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Url(format!("{s:?}: {{sha1}} needs 40 hex digits")));
        }
        Ok(Identifier {
            entity_id: None,
            key: hex.to_ascii_lowercase(),
        })
    }

    /// The entityID, for an entityID lookup.
    pub fn as_entity_id(&self) -> Option<&str> {
        self.entity_id.as_deref()
    }

    /// The cache key: the SHA-1 hex of the entityID, whichever form was asked for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether an entity with `entity_id` answers this identifier.
    pub fn matches(&self, entity_id: &str) -> bool {
        match &self.entity_id {
            Some(e) => e == entity_id,
            None => sha1_hex(entity_id) == self.key,
        }
    }

    /// Like [`Identifier::matches`] for an entity already known to have this identifier's key
    /// (found under it): only an entityID lookup needs comparing.
    pub(crate) fn matches_keyed(&self, entity_id: &str) -> bool {
        self.entity_id.as_deref().is_none_or(|e| e == entity_id)
    }

    /// The identifier as one encoded path segment.
    pub fn path_segment(&self) -> String {
        match &self.entity_id {
            // `.` and `..` would be dot segments, and WHATWG parsers (the url crate, so reqwest)
            // treat `%2E` as a dot as well: these two go by their {sha1} form, which every MDQ
            // SAML responder supports (draft-young-md-query-saml-21 §2.2). So does an entityID
            // the most common responder cannot read back (see [`survives_pyff`]).
            Some(e) if survives_pyff(e) => encode_segment(e),
            _ => None,
        }
        .unwrap_or_else(|| format!("%7Bsha1%7D{}", self.key))
    }
}

/// Whether pyFF's MDQ server reads `entity_id` back from its encoded path segment (mdq review
/// M5). The server sees the decoded path (WSGI decodes `%2F`), split at `/` by Pyramid, which
/// drops empty and `.` segments and resolves `..`; pyFF joins the segments with `/`, turns
/// `:/` back into `://`, restores a trailing `/`, trims white space and strips a `.xml` or
/// `.json` extension (pyff/api.py `process_handler`, `_d`). An entityID that does not survive
/// this (`https://x.org//idp`, `…/metadata.xml`, surrounding spaces) was answered 404, and the
/// 404 cached under the key its `{sha1}` form shares.
fn survives_pyff(entity_id: &str) -> bool {
    let mut segments: Vec<&str> = Vec::new();
    for s in entity_id.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = segments.join("/").replace(":/", "://");
    if entity_id.ends_with('/') && !path.is_empty() {
        path.push('/');
    }
    let trimmed = path.trim();
    let bare = trimmed
        .strip_suffix(".xml")
        .or_else(|| trimmed.strip_suffix(".json"))
        .unwrap_or(trimmed);
    bare == entity_id
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entity_id {
            Some(e) => f.write_str(e),
            None => write!(f, "{{sha1}}{}", self.key),
        }
    }
}

/// Percent-encodes `s` as one path segment (RFC 3986 `pchar` minus `%`), or `None` for the
/// empty string and the whole segments `.` and `..`: those cannot be sent as an entity's path
/// segment. Left as they are, `.` and `..` are dot segments that URL resolution removes (RFC
/// 3986 §5.2.4), sending the request outside `entities/`; encoded as `%2E`, WHATWG URL parsers
/// (the `url` crate, so reqwest, and browsers) still read them as dots; an empty segment names
/// `entities/` itself. Use the `{sha1}` form for such identifiers, as
/// [`Identifier::path_segment`] does (mdq review I2: this function returned `%2E` and was
/// documented as safe).
pub fn encode_segment(s: &str) -> Option<String> {
    if s.is_empty() || s == "." || s == ".." {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_examples() {
        assert_eq!(
            encode_segment("blue/green+light blue").as_deref(),
            Some("blue%2Fgreen+light%20blue")
        );
        assert_eq!(
            encode_segment("http://example.org/idp").as_deref(),
            Some("http:%2F%2Fexample.org%2Fidp")
        );
        assert_eq!(
            Identifier::sha1_of("http://example.org/service").to_string(),
            "{sha1}11d72e8cf351eb6c75c721e838f469677ab41bdb"
        );
        let base = BaseUrl::parse("https://mdq.example.org/global").expect("base");
        assert_eq!(base.as_str(), "https://mdq.example.org/global/");
        assert_eq!(
            base.entity(&Identifier::sha1_of("http://example.org/service")),
            "https://mdq.example.org/global/entities/%7Bsha1%7D11d72e8cf351eb6c75c721e838f469677ab41bdb"
        );
        assert_eq!(base.all(), "https://mdq.example.org/global/entities");
        assert_eq!(
            base.entity(
                &Identifier::entity_id("https://idp.example.org/idp/shibboleth").expect("id")
            ),
            "https://mdq.example.org/global/entities/https:%2F%2Fidp.example.org%2Fidp%2Fshibboleth"
        );
        assert_eq!(
            encode_segment("a%b?c#d é").as_deref(),
            Some("a%25b%3Fc%23d%20%C3%A9")
        );
        for dots in ["", ".", ".."] {
            assert_eq!(encode_segment(dots), None, "{dots:?}");
        }
        assert_eq!(encode_segment("...").as_deref(), Some("..."));
        for bad in [
            "ftp://x/",
            "https://x/?a=b",
            "https://x/#f",
            "https://u:p@x/",
            "nota url",
            "https:///path",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Identifier::parse_sha1("{sha1}11D72E8CF351EB6C75C721E838F469677AB41BDB").expect("hex"),
            Identifier::sha1_of("http://example.org/service")
        );
        assert!(Identifier::parse_sha1("{sha1}xyz").is_err());
        assert!(Identifier::entity_id("").is_err());
    }
}
