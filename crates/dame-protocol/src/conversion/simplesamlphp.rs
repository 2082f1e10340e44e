//! SimpleSAMLphp `authproc` filters from conversion rules (SimpleSAMLphp 1.19 and 2.x, stock
//! `core` filters only: `core:AttributeCopy`, `core:AttributeAlter`, `core:AttributeValueMap`,
//! `core:AttributeAdd`; `core:PHP` is code and never written). Per rule:
//!
//! | rule | filters |
//! |---|---|
//! | one source, no ops (copy, rename) | `core:AttributeCopy` source => target |
//! | `regex_replace` | `core:AttributeAlter` on the target, pattern `/…/u` (PCRE; the pattern is written as is, `/` escaped) |
//! | `scope_add` | `core:AttributeAlter` `/^([^@]*)$/u` => `$1@scope` |
//! | `scope_strip` | `core:AttributeAlter` `/@[^@]*$/u` => `` |
//! | `value_map` as the first op, unmapped dropped | `core:AttributeValueMap` source => target, `%keep` |
//! | `constant` as the only op | `core:AttributeAdd` target => values, `%replace` |
//!
//! `join`, `split`, `lowercase`, several sources, a `value_map` keeping unmapped values or not
//! first, and a `constant` with other ops have no stock filter: such a rule is refused
//! ([`Error::Unsupported`]) rather than approximated. Names are SAML names unless `names` maps
//! them to the IdP's local attribute names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Op, Rule};
use crate::error::Error;

/// A PHP single-quoted string literal.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn unsupported(rule: &Rule, what: &str) -> Error {
    Error::Unsupported {
        what: "SimpleSAMLphp authproc",
        reason: format!("rule {}: {what}", rule.id),
    }
}

fn local<'a>(names: &'a BTreeMap<String, String>, n: &'a str) -> &'a str {
    names.get(n).map_or(n, String::as_str)
}

/// The filters of `rules`, numbered from `first_priority` in steps of one, as the body of a PHP
/// `'authproc' => [ ... ]` array (entries `N => [ ... ],`). `names` maps SAML names to the
/// IdP's local attribute names (absent: the SAML name is used).
pub fn authproc(
    rules: &[&Rule],
    names: &BTreeMap<String, String>,
    first_priority: u32,
) -> Result<String, Error> {
    let mut out = String::new();
    let mut prio = first_priority;
    for rule in rules {
        let [source] = rule.sources.as_slice() else {
            return Err(unsupported(rule, "several sources"));
        };
        let src = local(names, source);
        let target = local(names, &rule.target.name);
        let _ = writeln!(out, "    // DAME conversion rule {}", rule.id);
        let mut entries: Vec<String> = Vec::new();
        let ops: &[Op] = &rule.ops;
        let rest = match ops {
            [Op::Constant { values }] => {
                let vals: Vec<String> = values.iter().map(|v| q(v)).collect();
                entries.push(format!(
                    "'class' => 'core:AttributeAdd', '%replace', {} => [{}]",
                    q(target),
                    vals.join(", ")
                ));
                &[][..]
            }
            [Op::ValueMap { map, keep_unmapped }, rest @ ..] => {
                if *keep_unmapped {
                    return Err(unsupported(rule, "value_map keeping unmapped values"));
                }
                let mut by_target: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for (s, t) in map {
                    by_target.entry(t).or_default().push(s);
                }
                let values: Vec<String> = by_target
                    .iter()
                    .map(|(t, ss)| {
                        let list: Vec<String> = ss.iter().map(|s| q(s)).collect();
                        format!("{} => [{}]", q(t), list.join(", "))
                    })
                    .collect();
                entries.push(format!(
                    "'class' => 'core:AttributeValueMap', '%keep', 'sourceattribute' => {}, 'targetattribute' => {}, 'values' => [{}]",
                    q(src),
                    q(target),
                    values.join(", ")
                ));
                rest
            }
            _ => {
                if src != target {
                    entries.push(format!(
                        "'class' => 'core:AttributeCopy', {} => {}",
                        q(src),
                        q(target)
                    ));
                }
                ops
            }
        };
        for op in rest {
            let (pattern, replacement) = match op {
                Op::RegexReplace {
                    pattern,
                    replacement,
                } => (
                    format!("/{}/u", pattern.replace('/', "\\/")),
                    replacement.clone(),
                ),
                Op::ScopeAdd { scope } => ("/^([^@]*)$/u".to_owned(), format!("$1@{scope}")),
                Op::ScopeStrip => ("/@[^@]*$/u".to_owned(), String::new()),
                other => {
                    return Err(unsupported(
                        rule,
                        &format!("no stock filter for {} here", other.name()),
                    ));
                }
            };
            entries.push(format!(
                "'class' => 'core:AttributeAlter', 'subject' => {}, 'pattern' => {}, 'replacement' => {}",
                q(target),
                q(&pattern),
                q(&replacement)
            ));
        }
        for e in entries {
            let _ = writeln!(out, "    {prio} => [{e}],");
            prio += 1;
        }
    }
    Ok(out)
}
