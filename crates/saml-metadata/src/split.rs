//! Splitting a verified aggregate into standalone per-entity documents (what an MDQ server
//! serves). Each entity is cut from the verified bytes, exactly as signed, with the inherited
//! namespace declarations it uses written onto its root (never the unused ones, which the
//! source's signature does not cover); every `ds:Signature` in it (the entity's
//! own, its roles', any below) is dropped: the caller re-signs with its own key (see
//! `saml_core::dsig::sign`), and a signature left behind would have to verify under the
//! reader's trust, which may be that key only.

use saml_core::dsig::{DSIG_NS, Verified};
use saml_core::xml::{Event, StartElement, escape_attr};

use crate::error::Error;
use crate::groups::{BadValidUntil, Groups, Member, earliest};
use crate::load::{Policy, check_validity, is_expired};
use crate::nested_signatures::{self, RefusedEntity};
use crate::time::parse_datetime;

/// One entity cut out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityDocument {
    /// Its entityID.
    pub entity_id: String,
    /// A standalone XML document holding only that EntityDescriptor.
    pub xml: String,
}

/// What [`split_report`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Split {
    /// One document per entity, in document order.
    pub documents: Vec<EntityDocument>,
    /// Entities left out because a signature of their own did not verify
    /// ([`crate::nested_signatures`]).
    pub refused: Vec<RefusedEntity>,
    /// entityIDs of entities left out because their validUntil, or that of a group containing
    /// them, had passed.
    pub expired: Vec<String>,
}

/// Verifies `doc` under `policy` and returns each of its entities as a standalone document,
/// in document order, with the checks of [`crate::load::load`]: the root's validUntil under
/// the policy, entityIDs unique; entities whose validUntil (or a containing group's) has
/// passed, or whose own signature fails, are left out (see [`split_report`] to learn which).
/// An entity is the root EntityDescriptor or one in the tree of EntitiesDescriptor groups, not
/// one written inside an `md:Extensions` (see `groups`).
pub fn split(doc: &[u8], policy: &Policy) -> Result<Vec<EntityDocument>, Error> {
    split_report(doc, policy).map(|s| s.documents)
}

/// Like [`split`], and says which entities were left out because a signature of their own (on
/// the entity, a role or a group containing it) did not verify, or because they had expired.
pub fn split_report(doc: &[u8], policy: &Policy) -> Result<Split, Error> {
    let (verified, refused) = nested_signatures::verify(doc, policy, &mut |_| {})?;
    let skip: std::collections::HashSet<&str> =
        refused.iter().map(|r| r.entity_id.as_str()).collect();
    let mut events = verified.events()?;
    let mut out = Vec::new();
    let mut expired = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut groups = Groups::new();
    let mut root = true;
    let mut current: Option<(String, Cut)> = None;
    while let Some(ev) = events.next()? {
        let member = match &ev {
            Event::Start(s) => {
                if std::mem::take(&mut root) {
                    check_validity(valid_until(s)?, policy)?;
                }
                groups
                    .start(s)
                    .map_err(|BadValidUntil(offset)| Error::Invalid {
                        element: "EntitiesDescriptor".into(),
                        offset,
                        message: "validUntil is not an xs:dateTime".into(),
                    })?
            }
            Event::End(e) => {
                groups.end(e);
                Member::Other
            }
            _ => Member::Other,
        };
        if let Some((_, cut)) = current.as_mut() {
            if cut.event(&ev)
                && let Some((entity_id, cut)) = current.take()
            {
                let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                cut.finish(&verified, &mut xml)?;
                xml.push('\n');
                out.push(EntityDocument { entity_id, xml });
            }
        } else if let Event::Start(s) = &ev
            && let Member::Entity(around) = member
        {
            let entity_id = s
                .attribute("entityID")
                .map(|a| a.value().into_owned())
                .ok_or_else(|| Error::Invalid {
                    element: "EntityDescriptor".into(),
                    offset: s.span.start,
                    message: "missing required attribute entityID".into(),
                })?;
            if !seen.insert(entity_id.clone()) {
                return Err(Error::DuplicateEntityId(entity_id));
            }
            let vu = earliest(valid_until(s)?, around);
            if skip.contains(entity_id.as_str()) {
                // Refused for a signature of its own: reported as such, not cut.
            } else if vu.is_some_and(|vu| is_expired(vu, policy)) {
                expired.push(entity_id);
            } else {
                current = Some((entity_id, Cut::start(s, &verified, vu)?));
            }
        }
    }
    drop(skip);
    Ok(Split {
        documents: out,
        refused,
        expired,
    })
}

/// The byte range in the start tag `tag` of the unprefixed attribute `name` whose raw value is
/// `raw_value` (a slice of `tag`), from the white space before its name to its closing quote;
/// `None` when `raw_value` is not inside `tag` or the text around it is not `name = "value"`.
fn attribute_range(tag: &str, raw_value: &str, name: &str) -> Option<(usize, usize)> {
    let start = (raw_value.as_ptr() as usize).checked_sub(tag.as_ptr() as usize)?;
    let end = start.checked_add(raw_value.len())?;
    if end >= tag.len() {
        return None;
    }
    let before = tag
        .get(..start.checked_sub(1)?)?
        .trim_end_matches([' ', '\t', '\r', '\n']);
    let before = before
        .strip_suffix('=')?
        .trim_end_matches([' ', '\t', '\r', '\n']);
    let name_start = before.strip_suffix(name)?.len();
    let with_space = tag[..name_start]
        .trim_end_matches([' ', '\t', '\r', '\n'])
        .len();
    if with_space == name_start {
        return None;
    }
    Some((with_space, end + 1))
}

/// The `validUntil` of an EntityDescriptor or EntitiesDescriptor start tag.
fn valid_until(s: &StartElement<'_, '_>) -> Result<Option<std::time::SystemTime>, Error> {
    match s.attribute("validUntil") {
        None => Ok(None),
        Some(a) => parse_datetime(&a.value())
            .map(Some)
            .ok_or_else(|| Error::Invalid {
                element: s.name.local.into(),
                offset: s.span.start,
                message: "validUntil is not an xs:dateTime".into(),
            }),
    }
}

/// One element cut out of the verified bytes as a standalone element: its start tag with the
/// inherited namespace declarations it uses written onto it, its content as signed minus every
/// `ds:Signature` in it. The new document is signed by its writer, often with another key, and
/// a signature left on the entity, a role or anything inside would have to verify under the
/// reader's trust (SAML Metadata §3, [`crate::nested_signatures`]): a consumer trusting only
/// the new signer would drop the entity.
pub(crate) struct Cut {
    depth: usize,
    /// The start tag's byte span in the document, and where its name ends within it.
    tag: (usize, usize),
    name_end: usize,
    /// How many bindings were in scope outside the element (indexes below are inherited).
    base: usize,
    /// The inherited bindings the element uses (in names, attribute names, `xsi:type`
    /// values): prefix, URI, index in the scope. Only these are declared on the cut's start
    /// tag: a declaration nothing uses is outside the source's exclusive canonical form, so
    /// outside its signature, and copying every one onto every entity let whoever altered the
    /// aggregate in transit multiply each cut by megabytes, or push it past the attribute
    /// limit (metadata review M2).
    used: Vec<(String, String, usize)>,
    /// The validUntil that applied to the element in its document, when earlier than its
    /// own: written onto the cut (formatted), in place of its own attribute (the byte range
    /// in the start tag of that attribute, with the white space before it).
    valid_until: Option<(String, Option<(usize, usize)>)>,
    /// The end of the start tag as written (where the content begins).
    tag_end: usize,
    /// The `ds:Signature` elements and comments to leave out, as byte ranges.
    signatures: Vec<(usize, usize)>,
    /// The depth of the `ds:Signature` being read.
    open_signature: Option<usize>,
    /// The end of the element's end tag, once read; `None` for an empty-element tag.
    end: Option<usize>,
}

impl Cut {
    /// Begins with the element's start tag, read from `verified`'s signed content.
    /// `valid_until` is the validUntil that applied to it in its document (the earliest of its
    /// own, its groups' and the root's, SAML Metadata §2.3.1): a cut stands alone, so it
    /// carries that one, not only its own (metadata review M1: a split entity of an aggregate
    /// valid for four days, re-signed, stayed valid for ever).
    ///
    /// Fails closed (review W8): a start tag outside the verified bytes, or an own validUntil
    /// that cannot be located in it to be replaced, is an error, never a cut that keeps its
    /// own later validUntil.
    pub(crate) fn start(
        s: &StartElement<'_, '_>,
        verified: &Verified<'_>,
        valid_until: Option<std::time::SystemTime>,
    ) -> Result<Cut, Error> {
        let offset = verified.signed_range().start;
        let base = s.scope.len() - s.namespace_decls.len();
        let tag = s
            .span
            .start
            .checked_sub(offset)
            .zip(s.span.end.checked_sub(offset))
            .and_then(|(a, b)| verified.signed_xml().get(a..b))
            .ok_or_else(|| {
                out_of_shape(s.span.start, "its start tag is outside the verified bytes")
            })?;
        let valid_until = match valid_until {
            None => None,
            Some(vu) => {
                let own = s.attribute("validUntil");
                let own_time = own.and_then(|a| parse_datetime(&a.value()));
                if own_time.is_some_and(|t| t <= vu) {
                    None
                } else {
                    let formatted = saml_core::time::format_datetime_exact(vu);
                    match own {
                        None => Some((formatted, None)),
                        Some(a) => {
                            let r = attribute_range(tag, a.raw_value, "validUntil").ok_or_else(
                                || out_of_shape(s.span.start, "its validUntil cannot be replaced"),
                            )?;
                            Some((formatted, Some(r)))
                        }
                    }
                }
            }
        };
        // The signed root itself (a single-entity document): its own signature is a child
        // that `Verified::events` does not show, but its bytes are there.
        let signatures = if s.span.start == offset {
            let sig = verified.signature_range();
            vec![(sig.start, sig.end)]
        } else {
            Vec::new()
        };
        let mut cut = Cut {
            depth: s.depth,
            tag: (s.span.start, s.span.end),
            name_end: 1 + s.name.raw.len(),
            base,
            used: Vec::new(),
            valid_until,
            tag_end: s.span.end,
            signatures,
            open_signature: None,
            end: None,
        };
        cut.note_uses(s);
        Ok(cut)
    }

    /// Notes the inherited bindings a start tag inside the element uses.
    fn note_uses(&mut self, s: &StartElement<'_, '_>) {
        let mut note = |p: &str| {
            if let Some(i) = s.binding_index(p).filter(|&i| i < self.base)
                && !self.used.iter().any(|(u, _, _)| u == p)
                && let Some(d) = s.scope.get(i)
                && !(p.is_empty() && d.uri.is_empty())
            {
                self.used.push((p.to_owned(), d.uri.to_owned(), i));
            }
        };
        note(s.name.prefix);
        for a in s.attributes {
            if !a.name.prefix.is_empty() {
                note(a.name.prefix);
            }
            if a.namespace == crate::ns::XSI_NS && a.name.local == "type" {
                let v = a.value();
                note(
                    saml_core::xml::cursor::xml_trim(&v)
                        .split_once(':')
                        .map_or("", |(p, _)| p),
                );
            }
        }
    }

    /// The next event after the start tag; true once the element's end has been read.
    pub(crate) fn event(&mut self, ev: &Event<'_, '_>) -> bool {
        match ev {
            Event::Start(s) if self.open_signature.is_none() && s.is(DSIG_NS, "Signature") => {
                self.signatures.push((s.span.start, s.span.end));
                self.open_signature = Some(s.depth);
            }
            // What a left-out signature uses needs no declaration.
            Event::Start(s) if self.open_signature.is_none() => self.note_uses(s),
            // Comments are left out like signatures: the digest ignored them, so the source's
            // signature never covered them, and a comment put inside a text node after signing
            // would otherwise be signed anew by whoever re-signs the cut, splitting the text
            // for readers that take its first node (metadata review I4). Inside a left-out
            // signature they go with it.
            Event::Comment(c) if self.open_signature.is_none() => {
                self.signatures.push((c.span.start, c.span.end));
            }
            Event::End(e) => {
                if self.open_signature == Some(e.depth) {
                    self.open_signature = None;
                    if let Some(last) = self.signatures.last_mut() {
                        last.1 = last.1.max(e.span.end);
                    }
                }
                if e.depth == self.depth {
                    // <md:EntityDescriptor .../>: the start tag is the whole element.
                    self.end = (!e.span.is_empty()).then_some(e.span.end);
                    return true;
                }
            }
            _ => {}
        }
        false
    }

    /// Appends the element to `out`; a span outside the verified bytes is an error (review
    /// W8: it was cut as empty).
    pub(crate) fn finish(self, verified: &Verified<'_>, out: &mut String) -> Result<(), Error> {
        let src = verified.signed_xml();
        let offset = verified.signed_range().start;
        let bytes = |a: usize, b: usize| {
            a.checked_sub(offset)
                .zip(b.checked_sub(offset))
                .and_then(|(x, y)| src.get(x..y))
                .ok_or_else(|| out_of_shape(a, "a part of it is outside the verified bytes"))
        };
        let tag = bytes(self.tag.0, self.tag.1)?;
        let name_end = self.name_end.min(tag.len());
        out.push_str(&tag[..name_end]);
        // In the order they were declared, as the source had them.
        let mut used = self.used;
        used.sort_unstable_by_key(|u| u.2);
        for (p, uri, _) in &used {
            if p.is_empty() {
                out.push_str(&format!(" xmlns=\"{}\"", escape_attr(uri)));
            } else {
                out.push_str(&format!(" xmlns:{p}=\"{}\"", escape_attr(uri)));
            }
        }
        match &self.valid_until {
            Some((vu, own)) => {
                out.push_str(&format!(" validUntil=\"{vu}\""));
                match own {
                    Some((a, b)) => {
                        let (Some(before), Some(after)) = (tag.get(name_end..*a), tag.get(*b..))
                        else {
                            return Err(out_of_shape(
                                self.tag.0,
                                "its validUntil cannot be replaced",
                            ));
                        };
                        out.push_str(before);
                        out.push_str(after);
                    }
                    None => out.push_str(&tag[name_end..]),
                }
            }
            None => out.push_str(&tag[name_end..]),
        }
        if let Some(end) = self.end {
            let piece = bytes;
            // In document order, whatever order they were noted in.
            let mut signatures = self.signatures;
            signatures.sort_unstable();
            let mut at = self.tag_end;
            for (a, b) in signatures {
                if a >= at {
                    out.push_str(piece(at, a)?);
                }
                at = at.max(b);
            }
            out.push_str(piece(at, end)?);
        }
        Ok(())
    }
}

/// A cut that does not fit the verified bytes (review W8): an error, not a shorter document.
fn out_of_shape(offset: usize, why: &str) -> Error {
    Error::Invalid {
        element: "EntityDescriptor".into(),
        offset,
        message: format!("cannot be cut: {why}"),
    }
}
