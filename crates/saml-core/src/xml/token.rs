//! The markup of a document split into tokens (XML 1.0 §2.4 character data, §2.5 comments,
//! §2.6 processing instructions, §2.7 CDATA sections, §2.8 the XML declaration, §3.1 tags,
//! §4.1 references), over text that [`super::Reader`] has already checked (UTF-8, allowed
//! characters).
//!
//! The token boundaries are quick-xml's: tags and processing instructions end where
//! [`quick_xml::parser::ElementParser`] and [`quick_xml::parser::PiParser`] say (a `>` outside
//! quoted attribute values; `?>`), comments and CDATA sections where quick-xml's reader ends them,
//! and text is split at `&` and `<` as its reader splits it. The `xml_reader` fuzz target checks
//! that this tokenizer and `quick_xml::Reader` cut every input into the same tokens, and fail on
//! the same ones. What this module saves is quick-xml's per-token work that the checked text makes
//! redundant: UTF-8 validation of every token (the whole document was validated once), its copy
//! of every open element's name, and its event enum.
//!
//! Every step is linear in the bytes it consumes: each search starts where the token starts and
//! the tokenizer never looks back.

use quick_xml::parser::{ElementParser, Parser, PiParser};

use crate::error::XmlError;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Character data up to the next `<` or `&` (never empty).
    Text,
    /// `&name;` or `&#...;`: a reference, not yet checked (§4.1).
    Ref,
    /// `<name ...>`.
    Start,
    /// `<name .../>`.
    Empty,
    /// `</name ...>`.
    End,
    /// `<!-- ... -->`, with no `--` inside and not ending in `--->` (§2.5).
    Comment,
    /// `<![CDATA[ ... ]]>`.
    CData,
    /// `<?xml ...?>`: a processing instruction whose target is exactly `xml` (§2.8).
    Decl,
    /// Any other `<? ... ?>`.
    Pi,
}

/// One token: its kind and its bytes `start..end` in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Splits text into tokens, front to back.
#[derive(Debug, Clone)]
pub(crate) struct Tokenizer<'a> {
    src: &'a [u8],
    pos: usize,
}

/// Why the text at `offset` is not a token.
pub(crate) type TokenError = (usize, XmlError);

fn syntax(at: usize, what: &str) -> TokenError {
    (at, XmlError::Syntax(what.into()))
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Tokenizer<'a> {
    /// A tokenizer at the start of `src`.
    pub(crate) fn new(src: &'a str) -> Self {
        Tokenizer {
            src: src.as_bytes(),
            pos: 0,
        }
    }

    /// Offset of the next unread byte.
    #[inline]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The next token, `None` at the end of the text. After an error the tokenizer stays where
    /// it was (the reader stops at its first error).
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Token>, TokenError> {
        let start = self.pos;
        let Some(rest) = self.src.get(start..).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let (kind, len) = match rest[0] {
            b'<' => markup(rest).map_err(|(at, e)| (start + at, e))?,
            b'&' => match memchr::memchr3(b';', b'&', b'<', &rest[1..]) {
                // `&` + name + `;`
                Some(i) if rest[i + 1] == b';' => (Kind::Ref, i + 2),
                _ => return Err(syntax(start, "a '&' that does not start a reference")),
            },
            _ => (
                Kind::Text,
                memchr::memchr2(b'<', b'&', rest).unwrap_or(rest.len()),
            ),
        };
        self.pos = start + len;
        Ok(Some(Token {
            kind,
            start,
            end: start + len,
        }))
    }
}

/// The markup at the start of `rest` (which starts with `<`): its kind and length, or where
/// (relative to `rest`) and why it is not markup.
fn markup(rest: &[u8]) -> Result<(Kind, usize), TokenError> {
    match rest.get(1) {
        None => Err(syntax(0, "'<' at the end of the document")),
        Some(b'!') => bang(rest),
        Some(b'?') => {
            let mut p = PiParser(false);
            let Some(i) = p.feed(rest) else {
                return Err(syntax(
                    0,
                    "unclosed processing instruction or XML declaration",
                ));
            };
            let len = i + 1;
            // At least `<??>`: `<?>` is not one.
            if len <= 3 {
                return Err(syntax(0, "unclosed processing instruction"));
            }
            let target = &rest[2..len - 2];
            let decl = target.starts_with(b"xml") && target.get(3).is_none_or(|&b| is_ws(b));
            Ok((if decl { Kind::Decl } else { Kind::Pi }, len))
        }
        Some(&second) => {
            let mut p = ElementParser::Outside;
            match p.feed(rest) {
                Some(i) => {
                    let len = i + 1;
                    let kind = if second == b'/' {
                        Kind::End
                    } else if rest[..len].ends_with(b"/>") {
                        Kind::Empty
                    } else {
                        Kind::Start
                    };
                    Ok((kind, len))
                }
                None => Err(syntax(
                    0,
                    match p {
                        ElementParser::SingleQ => "unclosed single-quoted attribute value",
                        ElementParser::DoubleQ => "unclosed double-quoted attribute value",
                        ElementParser::Outside => "unclosed tag",
                    },
                )),
            }
        }
    }
}

/// `<!` markup: a comment or a CDATA section; a DOCTYPE is refused.
fn bang(rest: &[u8]) -> Result<(Kind, usize), TokenError> {
    if rest.starts_with(b"<!--") {
        // quick-xml ends a comment at the first `>` after `<!--` that follows `--`.
        let Some(i) = memchr::memmem::find(&rest[4..], b"-->") else {
            return Err(syntax(0, "unclosed comment"));
        };
        // §2.5: no `--` inside, and so no `-` just before the closing `-->`.
        if let Some(p) = memchr::memmem::find(&rest[4..4 + i + 1], b"--") {
            return Err(syntax(4 + p, "'--' in a comment"));
        }
        return Ok((Kind::Comment, 4 + i + 3));
    }
    if rest.starts_with(b"<![CDATA[") {
        return match memchr::memmem::find(&rest[9..], b"]]>") {
            Some(i) => Ok((Kind::CData, 9 + i + 3)),
            None => Err(syntax(0, "unclosed CDATA section")),
        };
    }
    if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
        return Err((0, XmlError::DocType));
    }
    Err(syntax(
        0,
        "'<!' that starts neither a comment nor a CDATA section",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Result<Vec<(Kind, &str)>, TokenError> {
        let mut t = Tokenizer::new(s);
        let mut out = Vec::new();
        while let Some(tok) = t.next()? {
            out.push((tok.kind, &s[tok.start..tok.end]));
        }
        Ok(out)
    }

    #[test]
    fn splits_like_quick_xml() {
        use Kind::*;
        let doc = "<?xml version='1.0'?><a x='>' y=\"'/>\">t&amp;u&#x20;<!-- c - d --><![CDATA[<]]>]]><b/></a >";
        assert_eq!(
            tokens(doc).unwrap(),
            [
                (Decl, "<?xml version='1.0'?>"),
                (Start, "<a x='>' y=\"'/>\">"),
                (Text, "t"),
                (Ref, "&amp;"),
                (Text, "u"),
                (Ref, "&#x20;"),
                (Comment, "<!-- c - d -->"),
                (CData, "<![CDATA[<]]>"),
                (Text, "]]>"),
                (Empty, "<b/>"),
                (End, "</a >"),
            ]
        );
        assert_eq!(
            tokens("<?xml-stylesheet x?>").unwrap(),
            [(Pi, "<?xml-stylesheet x?>")]
        );
        assert_eq!(tokens("<?xml?>").unwrap(), [(Decl, "<?xml?>")]);
        assert_eq!(tokens("<??>").unwrap(), [(Pi, "<??>")]);
        assert_eq!(tokens("<!---->").unwrap(), [(Comment, "<!---->")]);
    }

    #[test]
    fn refuses_what_quick_xml_refuses() {
        for (doc, at) in [
            ("<", 0),
            ("a<", 1),
            ("<a", 0),
            ("<a x='>", 0),
            ("<a x=\">", 0),
            ("&amp", 0),
            ("x&amp<a/>", 1),
            ("&a&b;", 0),
            ("<!-- a -- b -->", 7),
            ("<!-- a --->", 7),
            ("<!-->", 0),
            ("<!--->", 0),
            ("<!-- unclosed", 0),
            ("<![CDATA[x]]", 0),
            ("<![CDAT[x]]>", 0),
            ("<!ELEMENT x ANY>", 0),
            ("<?>", 0),
            ("<?xml", 0),
        ] {
            let got = tokens(doc).map(|_| ()).unwrap_err();
            assert_eq!(got.0, at, "{doc}: {got:?}");
            assert!(matches!(got.1, XmlError::Syntax(_)), "{doc}: {got:?}");
        }
        for doc in ["<!DOCTYPE a>", "<!doctype a [<!ENTITY x 'y'>]>"] {
            assert_eq!(tokens(doc).unwrap_err(), (0, XmlError::DocType), "{doc}");
        }
    }
}
