//! JIDs as far as this crate needs them (RFC 7622): the bare JID `localpart@domainpart` that a
//! key belongs to, and comparisons that ignore the resource.
//!
//! Full PRECIS enforcement is the XMPP library's job; here a JID is checked for shape (non-empty
//! domain, no whitespace or control characters, parts within the 1023-byte limits of RFC 7622
//! §3) and compared case-insensitively in its ASCII localpart and domain, which is what the
//! `UsernameCaseMapped` profile and IDNA do for the names middleware uses.

use std::fmt;

use crate::{Error, Result};

/// A JID: `[localpart@]domainpart[/resourcepart]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Jid {
    full: String,
    bare_len: usize,
}

impl Jid {
    /// Parses and checks the shape of a JID (RFC 7622 §3).
    pub fn new(s: &str) -> Result<Jid> {
        let bad = |why: &str| Error::Stanza(format!("bad JID {s:?}: {why}"));
        if s.is_empty() || s.len() > 3071 {
            return Err(bad("empty or too long"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control character"));
        }
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        if let Some(r) = resource
            && (r.is_empty() || r.len() > 1023)
        {
            return Err(bad("empty or too long resourcepart"));
        }
        let domain = match bare.rsplit_once('@') {
            Some((local, domain)) => {
                if local.is_empty() || local.len() > 1023 || local.contains('@') {
                    return Err(bad("empty, too long or ambiguous localpart"));
                }
                if local
                    .chars()
                    .any(|c| matches!(c, '"' | '&' | '\'' | ':' | '<' | '>'))
                {
                    return Err(bad("character not allowed in a localpart"));
                }
                domain
            }
            None => bare,
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() || domain.len() > 1023 {
            return Err(bad("empty or too long domainpart"));
        }
        let mut full = String::with_capacity(s.len());
        // Case-insensitive parts are stored lowercase (ASCII), the resource as given.
        let bare_norm = match bare.rsplit_once('@') {
            Some((local, _)) => format!("{}@{}", local.to_lowercase(), domain.to_ascii_lowercase()),
            None => domain.to_ascii_lowercase(),
        };
        full.push_str(&bare_norm);
        let bare_len = full.len();
        if let Some(r) = resource {
            full.push('/');
            full.push_str(r);
        }
        Ok(Jid { full, bare_len })
    }

    /// The bare JID (`localpart@domainpart`), normalized.
    pub fn bare(&self) -> &str {
        &self.full[..self.bare_len]
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.full.get(self.bare_len + 1..)
    }

    /// The bare JID as a JID of its own.
    pub fn to_bare(&self) -> Jid {
        Jid {
            full: self.bare().to_owned(),
            bare_len: self.bare_len,
        }
    }

    /// Whether both name the same account (resources ignored).
    pub fn same_bare(&self, other: &Jid) -> bool {
        self.bare() == other.bare()
    }

    /// The whole JID, normalized.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl std::str::FromStr for Jid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Jid> {
        Jid::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let j = Jid::new("Juliet@Example.COM/balcony").unwrap();
        assert_eq!(j.bare(), "juliet@example.com");
        assert_eq!(j.resource(), Some("balcony"));
        assert!(j.same_bare(&Jid::new("juliet@example.com").unwrap()));
        assert_eq!(Jid::new("example.com").unwrap().bare(), "example.com");
        assert!(Jid::new("room@conf.example/nick with/slash").is_err());
        assert_eq!(
            Jid::new("room@conf.example/nick/slash").unwrap().resource(),
            Some("nick/slash")
        );
        for bad in [
            "",
            "@example.com",
            "a@",
            "a@b/",
            "a b@c",
            "a@@b",
            "a\"@b",
            "a@b\n",
        ] {
            assert!(Jid::new(bad).is_err(), "{bad:?}");
        }
    }
}
