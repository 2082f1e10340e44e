//! SimpleSAMLphp `authproc` filters from conversion rules (SimpleSAMLphp 1.19 and 2.x, stock
//! `core` filters only: `core:AttributeCopy`, `core:AttributeAlter`, `core:AttributeValueMap`,
//! `core:AttributeAdd`; `core:PHP` is code and never written). Per rule:
//!
//! | rule | filters |
//! |---|---|
//! | one source, no ops (copy, rename) | `core:AttributeCopy` source => target |
//! | `regex_replace` | `core:AttributeAlter` on the target, pattern `/…/uD` (PCRE; a pattern every engine reads alike, [`super::portable`]; an unescaped `/` escaped), the replacement in `preg_replace`'s syntax (`${1}`, `\$`, `\\`) |
//! | `scope_add` | `core:AttributeAlter` `%remove` of `/@|\A\z/u` (a scope already, or empty), then `/\z/u` => `@scope` |
//! | `scope_strip` | `core:AttributeAlter` `/@[^@]*$/uD` => `` |
//! | `value_map` as the first op, unmapped dropped | `core:AttributeValueMap` source => target, `%keep` |
//! | `constant` as the only op | `core:AttributeAdd` target => values, `%replace` |
//!
//! `join`, `split`, `lowercase`, several sources, a `value_map` keeping unmapped values or not
//! first, and a `constant` with other ops have no stock filter: such a rule is refused
//! ([`Error::Unsupported`]) rather than approximated, and so is a rule adding a scope that is
//! not the IdP's ([`super::Output::scopes`]). Names are SAML names unless
//! [`super::Output::names`] maps them to the IdP's local attribute names.
//!
//! The output is a PHP file returning the filters (`<?php return [ N => [...], ... ];`):
//! `'authproc' => require '<sha1>.authproc.php'` in the SP's metadata, or `+` the operator's
//! own. Everything in it is inside PHP mode and single-quoted (conversion review M5: the bare
//! array body it used to be put a value such as `<?php … ?>` outside PHP mode, to be run by
//! whoever included the file). A name PHP would turn into an integer key, or that SimpleSAMLphp
//! reads as an option (`class`, `%…`), is refused (review L3).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Op, Output, Rule, portable};
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

/// A string SimpleSAMLphp's filters read as an attribute name in an array key: not one PHP
/// turns into an integer key, not `class`, not an option (`%…`).
fn key_name(rule: &Rule, n: &str) -> Result<(), Error> {
    let integer = n
        .strip_prefix('-')
        .unwrap_or(n)
        .bytes()
        .all(|b| b.is_ascii_digit());
    if integer || n == "class" || n.starts_with('%') {
        return Err(unsupported(
            rule,
            &format!("{n:?} cannot be an attribute name in a filter's array"),
        ));
    }
    Ok(())
}

/// The filters of `rules` for the IdP `out`, numbered by [`Output::priorities`], as a PHP file
/// returning the array (`<?php return [ N => [ ... ], ... ];`). Refuses a rule SimpleSAMLphp
/// has no stock filter for, one whose scopes are not the IdP's, and a set with more filters
/// than the priorities number.
pub fn authproc(rules: &[&Rule], output: &Output<'_>) -> Result<String, Error> {
    let names = output.names;
    let mut out =
        String::from("<?php\n// DAME conversion rules (generated; review before use)\nreturn [\n");
    let mut prio = *output.priorities.start();
    for rule in rules {
        output.check_scopes(rule, "SimpleSAMLphp authproc")?;
        let [source] = rule.sources.as_slice() else {
            return Err(unsupported(rule, "several sources"));
        };
        let src = local(names, source);
        let target = local(names, &rule.target.name);
        key_name(rule, src)?;
        key_name(rule, target)?;
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
                let values = by_target
                    .iter()
                    .map(|(t, ss)| {
                        key_name(rule, t)?;
                        let list: Vec<String> = ss.iter().map(|s| q(s)).collect();
                        Ok(format!("{} => [{}]", q(t), list.join(", ")))
                    })
                    .collect::<Result<Vec<String>, Error>>()?;
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
        let first_rest = ops.len() - rest.len();
        for (k, op) in rest.iter().enumerate() {
            let (pattern, replacement) = match op {
                Op::RegexReplace { pattern, .. } => {
                    let Some((pieces, _)) = rule.replacement(first_rest + k) else {
                        return Err(unsupported(rule, "regex_replace not compiled"));
                    };
                    (
                        portable::php_pattern(pattern),
                        portable::php_replacement(pieces),
                    )
                }
                Op::ScopeAdd { scope } => {
                    // Values with a scope of their own are removed first (conversion review
                    // H2), then every value gets this one.
                    entries.push(format!(
                        "'class' => 'core:AttributeAlter', '%remove', 'subject' => {}, 'pattern' => '/@|\\\\A\\\\z/u'",
                        q(target)
                    ));
                    ("/\\z/u".to_owned(), format!("@{scope}"))
                }
                Op::ScopeStrip => ("/@[^@]*$/uD".to_owned(), String::new()),
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
            if !output.priorities.contains(&prio) {
                return Err(unsupported(
                    rule,
                    &format!(
                        "more filters than the priorities {:?} number",
                        output.priorities
                    ),
                ));
            }
            let _ = writeln!(out, "    {prio} => [{e}],");
            prio += 1;
        }
    }
    out.push_str("];\n");
    Ok(out)
}
