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
//! | `regex_replace` | `Mapped`: `SourceValue partialMatch="true"` = pattern, `ReturnValue` = replacement, `DefaultValue passThru="true"` (Java regex; the pattern is written as is) |
//! | `scope_add` | `Mapped`: `^([^@]*)$` -> `$1@scope`, pass-through |
//! | `scope_strip` | `Mapped`: `^(.*)@[^@]*$` -> `$1`, pass-through |
//! | `value_map` | `Mapped`: one `ValueMap` per entry, source quoted (`\Q…\E`), pass-through when unmapped values are kept |
//! | `constant` (only op) | a `Static` data connector and a `Simple` definition |
//!
//! `join`, `split`, `lowercase` and several sources have no declarative definition: such a rule
//! is refused ([`Error::Unsupported`]). Source attributes are named by the IdP's resolver ids:
//! `ids` maps SAML names to them, and a source without an id is refused.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Op, Rule};
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

/// The resolver elements for `rules` (to place inside `<AttributeResolver>`), ids prefixed
/// `dame_`. `ids` maps SAML attribute names to the IdP's resolver ids of the sources.
pub fn resolver(rules: &[&Rule], ids: &BTreeMap<String, String>) -> Result<String, Error> {
    let mut out = String::new();
    for rule in rules {
        let [source] = rule.sources.as_slice() else {
            return Err(unsupported(rule, "several sources"));
        };
        let Some(src) = ids.get(source) else {
            return Err(unsupported(rule, &format!("no resolver id for {source}")));
        };
        let base = format!("dame_{}", rule.id.replace('.', "_"));
        let _ = writeln!(out, "<!-- DAME conversion rule {} -->", esc(&rule.id));
        // (definition id, body) in order; the input of each is the previous one.
        let mut defs: Vec<(String, String)> = Vec::new();
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
            defs.push((base.clone(), format!("xsi:type=\"Simple\">{input}")));
        } else {
            if rule.ops.is_empty() {
                defs.push((base.clone(), format!("xsi:type=\"Simple\">{input}")));
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
                    Op::RegexReplace {
                        pattern,
                        replacement,
                    } => maps = vec![(pattern.clone(), replacement.clone())],
                    Op::ScopeAdd { scope } => {
                        maps = vec![(
                            "^([^@]*)$".into(),
                            format!("$1@{}", quote_replacement(scope)),
                        )];
                    }
                    Op::ScopeStrip => maps = vec![("^(.*)@[^@]*$".into(), "$1".into())],
                    Op::ValueMap { map, keep_unmapped } => {
                        pass = *keep_unmapped;
                        maps = map
                            .iter()
                            .map(|(s, t)| (format!("^{}$", quote(s)), quote_replacement(t)))
                            .collect();
                    }
                    other => {
                        return Err(unsupported(
                            rule,
                            &format!("no declarative definition for {}", other.name()),
                        ));
                    }
                }
                let mut body = format!("xsi:type=\"Mapped\">{input}");
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
                defs.push((id, body));
            }
        }
        for (id, body) in defs {
            let _ = write!(out, "<AttributeDefinition id=\"{id}\" {body}");
            if id == base {
                let friendly = rule
                    .target
                    .friendly_name
                    .as_ref()
                    .map(|f| format!(" friendlyName=\"{}\"", esc(f)))
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "<AttributeEncoder xsi:type=\"SAML2String\" name=\"{}\"{friendly} encodeType=\"false\"/>",
                    esc(&rule.target.name)
                );
            }
            out.push_str("</AttributeDefinition>\n");
        }
    }
    Ok(out)
}
