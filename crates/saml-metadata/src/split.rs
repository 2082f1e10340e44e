//! Splitting a verified aggregate into standalone per-entity documents (what an MDQ server
//! serves). Each entity is cut from the verified bytes, exactly as signed, with the namespace
//! declarations it inherited written onto its root; an entity-level `ds:Signature` child is
//! dropped (the caller re-signs with its own key, see `saml_core::dsig::sign`).

use saml_core::dsig::DSIG_NS;
use saml_core::xml::{Event, effective_scope, escape_attr};

use crate::error::Error;
use crate::load::Policy;
use crate::nested_signatures::{self, RefusedEntity};
use crate::ns::MD_NS;

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
}

/// Verifies `doc` under `policy` and returns every EntityDescriptor as a standalone document,
/// in document order; entities whose own signature fails are left out (see [`split_report`]
/// to learn which).
pub fn split(doc: &[u8], policy: &Policy) -> Result<Vec<EntityDocument>, Error> {
    split_report(doc, policy).map(|s| s.documents)
}

/// Like [`split`], and says which entities were left out because a signature of their own (on
/// the entity, a role or a group containing it) did not verify.
pub fn split_report(doc: &[u8], policy: &Policy) -> Result<Split, Error> {
    let (verified, refused) = nested_signatures::verify(doc, policy, &mut |_| {})?;
    let skip: std::collections::HashSet<&str> =
        refused.iter().map(|r| r.entity_id.as_str()).collect();
    let src = verified.signed_xml();
    let offset = verified.signed_range().start;
    let mut events = verified.events()?;
    let mut out = Vec::new();
    // (entityID, start offset, start-tag end offset, depth, start tag with inherited decls)
    let mut current: Option<(String, usize, usize, usize, String)> = None;
    let mut cut: Vec<(usize, usize)> = Vec::new(); // signature ranges to drop inside the entity
    while let Some(ev) = events.next()? {
        match ev {
            Event::Start(s) if current.is_none() && s.is(MD_NS, "EntityDescriptor") => {
                let entity_id = s
                    .attribute("entityID")
                    .map(|a| a.value().into_owned())
                    .ok_or_else(|| Error::Invalid {
                        element: "EntityDescriptor".into(),
                        offset: s.span.start,
                        message: "missing required attribute entityID".into(),
                    })?;
                let own = s.namespace_decls.len();
                let inherited = effective_scope(&s.scope[..s.scope.len() - own]);
                let tag = &src[s.span.start - offset..s.span.end - offset];
                let name_end = 1 + s.name.raw.len();
                let mut start_tag = String::with_capacity(tag.len() + 256);
                start_tag.push_str(&tag[..name_end]);
                for d in inherited {
                    if s.namespace_decls.iter().any(|o| o.prefix == d.prefix)
                        || (d.prefix.is_empty() && d.uri.is_empty())
                    {
                        continue;
                    }
                    if d.prefix.is_empty() {
                        start_tag.push_str(&format!(" xmlns=\"{}\"", escape_attr(d.uri)));
                    } else {
                        start_tag.push_str(&format!(
                            " xmlns:{}=\"{}\"",
                            d.prefix,
                            escape_attr(d.uri)
                        ));
                    }
                }
                start_tag.push_str(&tag[name_end..]);
                cut.clear();
                current = Some((entity_id, s.span.start, s.span.end, s.depth, start_tag));
            }
            Event::Start(s) => {
                if let Some((_, _, _, depth, _)) = &current
                    && s.depth == depth + 1
                    && s.is(DSIG_NS, "Signature")
                {
                    cut.push((s.span.start, 0));
                }
            }
            Event::End(e) => {
                if let Some(last) = cut.last_mut()
                    && last.1 == 0
                    && current.as_ref().is_some_and(|c| e.depth == c.3 + 1)
                {
                    last.1 = e.span.end;
                }
                if let Some((entity_id, _, tag_end, _, start_tag)) =
                    current.take_if(|c| c.3 == e.depth)
                {
                    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                    xml.push_str(&start_tag);
                    if e.span.is_empty() {
                        // <md:EntityDescriptor .../>: the start tag is the whole element.
                    } else {
                        let mut at = tag_end;
                        for &(a, b) in &cut {
                            xml.push_str(&src[at - offset..a - offset]);
                            at = b;
                        }
                        xml.push_str(&src[at - offset..e.span.end - offset]);
                    }
                    xml.push('\n');
                    if !skip.contains(entity_id.as_str()) {
                        out.push(EntityDocument { entity_id, xml });
                    }
                }
            }
            _ => {}
        }
    }
    drop(skip);
    Ok(Split {
        documents: out,
        refused,
    })
}
