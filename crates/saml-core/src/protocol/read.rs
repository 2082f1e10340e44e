//! A pull cursor over the hardened reader's events for element-only content, as the protocol
//! parsers need it: children one at a time, text content, typed attributes, errors that name the
//! element and its byte offset.

use std::borrow::Cow;
use std::time::SystemTime;

use crate::error::Error;
use crate::error::ProtocolError;
use crate::time::parse_datetime;
use crate::xml::{Event, Reader, read_text};

/// The XML white-space characters (XML 1.0 §2.3 `S`): space, tab, CR, LF. Not U+00A0, U+3000,
/// U+2028, U+0085 or any other Unicode `White_Space`.
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `s` without leading and trailing XML white space (only [`is_xml_space`] characters).
pub(crate) fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

/// XML Schema `whiteSpace=collapse`: runs of XML white space become one space, none at the ends.
pub(crate) fn collapse(s: &str) -> String {
    s.split(is_xml_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A start tag, copied out of the reader.
pub(crate) struct Elem<'a> {
    pub(crate) ns: &'a str,
    pub(crate) local: &'a str,
    attrs: Vec<(&'a str, &'a str, Cow<'a, str>)>,
    pub(crate) start: usize,
    pub(crate) depth: usize,
}

impl Elem<'_> {
    pub(crate) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.0.is_empty() && a.1 == local)
            .map(|a| a.2.as_ref())
    }

    pub(crate) fn invalid(&self, message: impl Into<String>) -> Error {
        ProtocolError::Malformed {
            element: self.local.to_owned(),
            offset: self.start,
            message: message.into(),
        }
        .into()
    }

    pub(crate) fn required(&self, local: &str) -> Result<&str, Error> {
        self.attr(local)
            .ok_or_else(|| self.invalid(format!("missing required attribute {local}")))
    }

    pub(crate) fn string(&self, local: &str) -> Option<String> {
        self.attr(local).map(str::to_owned)
    }

    pub(crate) fn bool_attr(&self, local: &str) -> Result<Option<bool>, Error> {
        self.attr(local)
            .map(|v| match xml_trim(v) {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(self.invalid(format!("{local}={other:?} is not a boolean"))),
            })
            .transpose()
    }

    pub(crate) fn u16_attr(&self, local: &str) -> Result<Option<u16>, Error> {
        self.attr(local)
            .map(|v| {
                xml_trim(v)
                    .parse()
                    .map_err(|_| self.invalid(format!("{local}={v:?} is not an unsignedShort")))
            })
            .transpose()
    }

    pub(crate) fn time_attr(&self, local: &str) -> Result<Option<SystemTime>, Error> {
        self.attr(local)
            .map(|v| {
                parse_datetime(v)
                    .ok_or_else(|| self.invalid(format!("{local}={v:?} is not an xs:dateTime")))
            })
            .transpose()
    }

    pub(crate) fn required_time(&self, local: &str) -> Result<SystemTime, Error> {
        self.time_attr(local)?
            .ok_or_else(|| self.invalid(format!("missing required attribute {local}")))
    }

    /// `Version` must be `2.0` (SAML Core §3.2.1, §2.3.3).
    pub(crate) fn check_version(&self) -> Result<(), Error> {
        match self.required("Version")? {
            "2.0" => Ok(()),
            v => Err(ProtocolError::Version(v.to_owned()).into()),
        }
    }
}

pub(crate) struct Cursor<'a> {
    pub(crate) r: Reader<'a>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(r: Reader<'a>) -> Self {
        Cursor { r }
    }

    /// The next child element of the current element, `None` at its end. Comments and white
    /// space are passed over; other text is an error.
    pub(crate) fn next_child(&mut self, parent: &str) -> Result<Option<Elem<'a>>, Error> {
        loop {
            if !self.r.advance()? {
                return Ok(None);
            }
            match self.r.current() {
                Some(Event::Start(s)) => {
                    return Ok(Some(Elem {
                        ns: s.namespace,
                        local: s.name.local,
                        attrs: s
                            .attributes
                            .iter()
                            .map(|a| (a.namespace, a.name.local, a.value()))
                            .collect(),
                        start: s.span.start,
                        depth: s.depth,
                    }));
                }
                Some(Event::End(_)) | None => return Ok(None),
                Some(Event::Comment(_)) => {}
                Some(Event::Text(t)) => {
                    if !t.is_whitespace() {
                        return Err(ProtocolError::Malformed {
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
    pub(crate) fn text(&mut self, _e: &Elem<'_>) -> Result<String, Error> {
        read_text(&mut self.r)
    }

    /// The text content of the element just returned, with XML Schema's `whiteSpace=collapse`
    /// (XML Schema Part 2 §4.3.6), as for `xs:anyURI` values (Audience, AuthnContextClassRef).
    /// Only the four XML white-space characters are touched, never other Unicode spaces.
    pub(crate) fn collapsed(&mut self, _e: &Elem<'_>) -> Result<String, Error> {
        Ok(collapse(&read_text(&mut self.r)?))
    }

    /// Consumes the rest of the element just returned.
    pub(crate) fn skip(&mut self, e: &Elem<'_>) -> Result<(), Error> {
        loop {
            match self.r.next()? {
                Some(Event::End(end)) if end.depth == e.depth => return Ok(()),
                None => return Ok(()),
                _ => {}
            }
        }
    }
}
