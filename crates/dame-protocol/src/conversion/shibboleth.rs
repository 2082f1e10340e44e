//! Shibboleth IdP attribute-resolver definitions from conversion rules (IdP v4 syntax,
//! `urn:mace:shibboleth:2.0:resolver` with `xsi:type` definitions and inline
//! `AttributeEncoder`s, which v4 still reads; v5 takes the same definitions with the encoders
//! moved to transcoding rules). Each operation becomes one definition fed by the previous one;
//! the last carries the target's SAML 2 name. No `ScriptedAttribute` (code) and no `Template`
//! (Velocity) is ever written.
//!
//! | op | definition |
//! |---|---|
//! | none (copy, rename) | `Simple` |
//! | `regex_replace` | `Mapped`: `SourceValue partialMatch="true"` = pattern (one every engine reads alike, [`super::portable`]), `ReturnValue` = the replacement in `Matcher`'s syntax (`$1`, `\$`, `\\`), `DefaultValue passThru="true"` |
//! | `scope_add` | `Mapped`: `^([^@]+)\z` -> `$1@scope`, no pass-through (a value with a scope, or empty, is dropped) |
//! | `scope_strip` | `Mapped`: `(?s)^(.*)@[^@]*\z` -> `$1`, pass-through |
//! | `value_map` | `Mapped`: one `ValueMap` per entry, `^\Q…\E\z` (Java's `$` would match before a final newline), pass-through when unmapped values are kept |
//! | `constant` (only op) | a `Static` data connector and a `Simple` definition |
//!
//! `join`, `split`, `lowercase` and several sources have no declarative definition: such a rule
//! is refused ([`Error::Unsupported`]), and so is a rule adding a scope that is not the IdP's
//! ([`super::Output::scopes`]). Source attributes are named by the IdP's resolver ids:
//! [`super::Output::names`] maps SAML names to them, and a source without an id is refused.
//! Each definition's `AttributeEncoder` comes right after its input, as the resolver schema
//! orders a `Mapped` definition's elements (conversion review M3: after the `ValueMap`s it
//! made the fragment invalid).

use std::fmt::Write as _;

use super::{Op, Output, Rule, portable};
use crate::error::Error;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A literal for a Java regex (`Pattern.quote`).
fn quote(s: &str) -> String {
    format!("\\Q{}\\E", s.replace("\\E", "\\E\\\\E\\Q"))
}

/// A literal for a Java `Matcher` replacement (`Matcher.quoteReplacement`).
fn quote_replacement(s: &str) -> String {
    s.replace('\\', "\\\\").replace('$', "\\$")
}

fn unsupported(rule: &Rule, what: &str) -> Error {
    Error::Unsupported {
        what: "Shibboleth attribute resolver",
        reason: format!("rule {}: {what}", rule.id),
    }
}

/// The resolver id of rule `id` under `prefix`: `_` doubled and `.` written `_d`, so distinct
/// rule ids (`a.b`, `a_b`) and the suffixes of a rule's steps (`_0`, `_static`) never meet
/// (conversion review M3).
fn base_id(prefix: &str, id: &str) -> String {
    let mut out = format!("{prefix}_");
    for c in id.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("_d"),
            c => out.push(c),
        }
    }
    out
}

/// The resolver elements for `rules` (to place inside `<AttributeResolver>`) for the IdP
/// `output`: ids prefixed [`Output::id_prefix`], sources named by their resolver ids
/// ([`Output::names`]). Refuses a rule the resolver has no declarative definition for, one
/// whose scopes are not the IdP's, and a replacement Java would read otherwise.
pub fn resolver(rules: &[&Rule], output: &Output<'_>) -> Result<String, Error> {
    let ids = output.names;
    let prefix = output.id_prefix;
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Error::Unsupported {
            what: "Shibboleth attribute resolver",
            reason: format!("id prefix {prefix:?}: letters, digits and - only"),
        });
    }
    let mut out = String::new();
    for rule in rules {
        output.check_scopes(rule, "Shibboleth attribute resolver")?;
        let [source] = rule.sources.as_slice() else {
            return Err(unsupported(rule, "several sources"));
        };
        let Some(src) = ids.get(source) else {
            return Err(unsupported(rule, &format!("no resolver id for {source}")));
        };
        let base = base_id(prefix, &rule.id);
        // Rule ids hold no `--` (checked when parsed): the comment stays well-formed.
        let _ = writeln!(out, "<!-- DAME conversion rule {} -->", esc(&rule.id));
        let friendly = rule
            .target
            .friendly_name
            .as_ref()
            .map(|f| format!(" friendlyName=\"{}\"", esc(f)))
            .unwrap_or_default();
        // The last definition carries the target's encoder, right after its input: the
        // schema's base type (inputs, encoders) comes before a `Mapped`'s own elements.
        let encoder = format!(
            "<AttributeEncoder xsi:type=\"SAML2String\" name=\"{}\"{friendly} encodeType=\"false\"/>",
            esc(&rule.target.name)
        );
        let encoder_if = |id: &str| if id == base { encoder.as_str() } else { "" };
        let mut input = format!("<InputAttributeDefinition ref=\"{}\"/>", esc(src));
        if let [Op::Constant { values }] = rule.ops.as_slice() {
            let conn = format!("{base}_static");
            let _ = writeln!(
                out,
                "<DataConnector id=\"{conn}\" xsi:type=\"Static\"><Attribute id=\"{base}\">{}</Attribute></DataConnector>",
                values
                    .iter()
                    .map(|v| format!("<Value>{}</Value>", esc(v)))
                    .collect::<String>()
            );
            input = format!("<InputDataConnector ref=\"{conn}\" attributeNames=\"{base}\"/>");
            let _ = writeln!(
                out,
                "<AttributeDefinition id=\"{base}\" xsi:type=\"Simple\">{input}{encoder}</AttributeDefinition>"
            );
            continue;
        }
        if rule.ops.is_empty() {
            let _ = writeln!(
                out,
                "<AttributeDefinition id=\"{base}\" xsi:type=\"Simple\">{input}{encoder}</AttributeDefinition>"
            );
            continue;
        }
        for (i, op) in rule.ops.iter().enumerate() {
            let id = if i + 1 == rule.ops.len() {
                base.clone()
            } else {
                format!("{base}_{i}")
            };
            let maps: Vec<(String, String)>;
            let mut pass = true;
            match op {
                Op::RegexReplace { pattern, .. } => {
                    let Some((pieces, groups)) = rule.replacement(i) else {
                        return Err(unsupported(rule, "regex_replace not compiled"));
                    };
                    let replacement = portable::java_replacement(pieces, groups)
                        .map_err(|e| unsupported(rule, &e))?;
                    maps = vec![(pattern.clone(), replacement)];
                }
                Op::ScopeAdd { scope } => {
                    // Only values without a scope match; the others are dropped, not passed
                    // through (conversion review H2).
                    pass = false;
                    maps = vec![(
                        "^([^@]+)\\z".into(),
                        format!("$1@{}", quote_replacement(scope)),
                    )];
                }
                Op::ScopeStrip => maps = vec![("(?s)^(.*)@[^@]*\\z".into(), "$1".into())],
                Op::ValueMap { map, keep_unmapped } => {
                    pass = *keep_unmapped;
                    maps = map
                        .iter()
                        .map(|(s, t)| (format!("^{}\\z", quote(s)), quote_replacement(t)))
                        .collect();
                }
                other => {
                    return Err(unsupported(
                        rule,
                        &format!("no declarative definition for {}", other.name()),
                    ));
                }
            }
            let mut body = format!("xsi:type=\"Mapped\">{input}{}", encoder_if(&id));
            if pass {
                body.push_str("<DefaultValue passThru=\"true\"/>");
            }
            for (s, r) in &maps {
                let _ = write!(
                    body,
                    "<ValueMap><ReturnValue>{}</ReturnValue><SourceValue partialMatch=\"true\">{}</SourceValue></ValueMap>",
                    esc(r),
                    esc(s)
                );
            }
            input = format!("<InputAttributeDefinition ref=\"{id}\"/>");
            let _ = writeln!(
                out,
                "<AttributeDefinition id=\"{id}\" {body}</AttributeDefinition>"
            );
        }
    }
    Ok(out)
}
