//! Attribute conversion rules (the GÉANT-TrustBroker design): after an exchange, an IdP
//! compares the SP's `RequestedAttribute`s with what it can release
//! ([`crate::agent::missing_attributes`]) and asks the broker for rules that derive a missing
//! target attribute from source attributes it has. The papers used Shibboleth-specific XSLT
//! and called for an implementation-neutral format; this is it. **Rules are data, never code**:
//! a closed set of operations, no scripts, no templates, no XSLT.
//!
//! ## Format (serde; JSON shown)
//! ```json
//! {"rules": [{
//!   "id": "eppn-from-uid",
//!   "description": "eduPersonPrincipalName as uid@example.org",
//!   "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "friendly_name": "eduPersonPrincipalName"},
//!   "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
//!   "ops": [{"op": "lowercase"}, {"op": "scope_add", "scope": "example.org"}]
//! }]}
//! ```
//! The values of the `sources`, in order, are the input; `ops` apply one after the other to the
//! list of values; what remains are the target's values. A rule without ops is a **copy** (the
//! target named like a source) or a **rename** (named otherwise: the source stays released
//! too).
//!
//! | op | effect on the values |
//! |---|---|
//! | `join {separator}` | all values into one, in order |
//! | `split {separator}` | each value split at every separator |
//! | `regex_replace {pattern, replacement}` | every match replaced (`$1`, `${name}` for groups, `$$` for `$`); a pattern every engine reads alike ([`portable`]) |
//! | `scope_add {scope}` | `value@scope` for each value without `@`; a value that has one, or is empty, is dropped |
//! | `scope_strip` | each value cut before its last `@` |
//! | `value_map {map, keep_unmapped}` | each value looked up; unmapped ones dropped unless kept |
//! | `lowercase` | Unicode lower case |
//! | `constant {values}` | the values replaced by these |
//!
//! ## Bounds (rules may come from a broker other people write to)
//! A rule set parses from at most [`MAX_JSON`] bytes, holds at most [`MAX_RULES`] rules of at
//! most [`MAX_OPS`] operations; a value map holds at most [`MAX_MAP`] entries; a regex pattern
//! is at most [`MAX_PATTERN`] bytes and compiles into at most [`REGEX_SIZE_LIMIT`] bytes, and a
//! set holds at most [`MAX_REGEXES`] of them (the `regex` crate: no backtracking, time linear
//! in the input). Evaluation refuses more than
//! [`MAX_VALUES`] values or a value longer than [`MAX_VALUE_LEN`] bytes at any step: an error,
//! never a truncation.
//!
//! ## Generators
//! [`simplesamlphp::authproc`] writes SimpleSAMLphp `authproc` filters, [`shibboleth::resolver`]
//! Shibboleth IdP attribute-resolver definitions, both for one IdP described by an [`Output`];
//! an operation a product has no stock declarative filter for is refused for that rule
//! ([`crate::Error::Unsupported`]), never approximated. Who may assert a scope (conversion
//! review H2): a rule set is the broker's, shared by every IdP, so a generator refuses a
//! `scope_add` of a scope not among the IdP's own ([`Output::scopes`]) and a rule making a
//! scoped attribute ([`SCOPED_ATTRIBUTES`]: eduPersonPrincipalName and the like) unless its last
//! operation is such a `scope_add`: every value it makes is then `something@` one of the IdP's
//! scopes, and a value already holding an `@` (a login name chosen as `victim@victim.example`)
//! is dropped, not passed on.
//!
//! ```
//! use dame_protocol::conversion::{Attributes, RuleSet};
//! let rules = RuleSet::from_json(br#"{"rules": [{
//!     "id": "eppn", "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"},
//!     "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
//!     "ops": [{"op": "lowercase"}, {"op": "scope_add", "scope": "example.org"}]}]}"#)?;
//! let mut have = Attributes::default();
//! have.insert("urn:oid:0.9.2342.19200300.100.1.1", ["Alice"]);
//! let wanted = ["urn:oid:1.3.6.1.4.1.5923.1.1.1.6"];
//! let rule = rules.rules_for(&wanted, &have.names())[0];
//! assert_eq!(rule.evaluate(&have)?, vec!["alice@example.org"]);
//! # Ok::<(), dame_protocol::Error>(())
//! ```

pub mod portable;
pub mod shibboleth;
pub mod simplesamlphp;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Largest rule set accepted (1 MiB of JSON).
pub const MAX_JSON: usize = 1 << 20;
/// Most rules in a set.
pub const MAX_RULES: usize = 10_000;
/// Most operations in a rule.
pub const MAX_OPS: usize = 64;
/// Most sources of a rule.
pub const MAX_SOURCES: usize = 16;
/// Most entries in a value map.
pub const MAX_MAP: usize = 10_000;
/// Longest regex pattern (bytes).
pub const MAX_PATTERN: usize = 1024;
/// Most `regex_replace` operations in one rule set: each compiles into up to
/// [`REGEX_SIZE_LIMIT`] bytes and a lazy DFA cache as large, so that a set costs at most
/// 64 MiB of regexes (review C6: a 1 MiB set could hold a thousand, gigabytes compiled).
pub const MAX_REGEXES: usize = 128;
/// Most memory a compiled regex may take (bytes).
pub const REGEX_SIZE_LIMIT: usize = 256 << 10;
/// Most values at any step of an evaluation.
pub const MAX_VALUES: usize = 1_000;
/// Longest value at any step of an evaluation (bytes).
pub const MAX_VALUE_LEN: usize = 64 << 10;
/// Longest name, id, scope, separator or constant (bytes).
pub const MAX_TEXT: usize = 1024;

/// The attributes whose values are scoped (`user@scope`), which an SP checks against the
/// asserting IdP's `shibmd:Scope`s or not at all (saml-core's one list).
pub use saml_core::protocol::scoped::SCOPED_ATTRIBUTES;

/// Whether `name` (a SAML name, a friendly name or a local name) is a scoped attribute's.
fn is_scoped(name: &str) -> bool {
    saml_core::protocol::scoped::is_scoped_name(name)
}

/// The IdP a generator writes for: what its rules may assert and how its product numbers and
/// names what is generated (conversion review H2, M3, M4).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Output<'a> {
    /// SAML name -> the IdP's local attribute name (SimpleSAMLphp) or resolver id of a source
    /// (Shibboleth); absent, the SAML name is used (SimpleSAMLphp) or the rule refused
    /// (Shibboleth).
    pub names: &'a BTreeMap<String, String>,
    /// The scopes this IdP asserts (its `shibmd:Scope`s, DNS domains): the only ones a
    /// `scope_add` may add. Empty: no rule that adds a scope or makes a scoped attribute.
    pub scopes: &'a [String],
    /// SimpleSAMLphp `authproc` priorities to number the filters with, in order (default
    /// 40 to 49: before `core:AttributeLimit`, which the stock configuration runs at 50, so
    /// what a filter makes is released only to the SPs that may have it); a set needing more
    /// filters than the range holds is refused.
    pub priorities: std::ops::RangeInclusive<u32>,
    /// Prefix of the Shibboleth resolver ids generated (default `dame`); give each file its
    /// own when several are installed together.
    pub id_prefix: &'a str,
}

impl<'a> Output<'a> {
    /// For an IdP with these local `names` and `scopes`, the other settings their defaults.
    #[must_use]
    pub fn new(names: &'a BTreeMap<String, String>, scopes: &'a [String]) -> Self {
        Output {
            names,
            scopes,
            priorities: 40..=49,
            id_prefix: "dame",
        }
    }

    /// With SimpleSAMLphp priorities `priorities`.
    #[must_use]
    pub fn priorities(mut self, priorities: std::ops::RangeInclusive<u32>) -> Self {
        self.priorities = priorities;
        self
    }

    /// With Shibboleth resolver ids prefixed `prefix`.
    #[must_use]
    pub fn id_prefix(mut self, prefix: &'a str) -> Self {
        self.id_prefix = prefix;
        self
    }

    /// Refuses `rule` if it adds a scope that is not the IdP's or makes a scoped attribute
    /// other than through such a `scope_add` as its last operation (the [module docs](self)).
    pub(crate) fn check_scopes(&self, rule: &Rule, product: &'static str) -> Result<(), Error> {
        let refuse = |why: String| Error::Unsupported {
            what: product,
            reason: format!("rule {}: {why}", rule.id),
        };
        // Exactly as configured: `EXAMPLE.org` would make a second identity for each user at
        // an SP that compares values as strings.
        let ours = |scope: &str| self.scopes.iter().any(|s| s == scope);
        for op in &rule.ops {
            if let Op::ScopeAdd { scope } = op
                && !ours(scope)
            {
                return Err(refuse(format!(
                    "adds scope {scope}, which is not this IdP's (its scopes: {:?})",
                    self.scopes
                )));
            }
        }
        // By its SAML name, its friendly name or the IdP's local name for it (an SP may request
        // `eduPersonPrincipalName` by its basic name, and SimpleSAMLphp names it so inside),
        // and a local name that is the one the IdP gives a scoped attribute (`eppn` mapped from
        // eduPersonPrincipalName's URN: a rule targeting `eppn` writes that attribute).
        let local = self
            .names
            .get(&rule.target.name)
            .map_or(rule.target.name.as_str(), String::as_str);
        let scoped_local = SCOPED_ATTRIBUTES
            .iter()
            .filter_map(|a| self.names.get(*a))
            .any(|l| l.eq_ignore_ascii_case(local));
        let scoped = scoped_local
            || std::iter::once(rule.target.name.as_str())
                .chain(rule.target.friendly_name.as_deref())
                .chain(std::iter::once(local))
                .any(is_scoped);
        if scoped && !matches!(rule.ops.last(), Some(Op::ScopeAdd { .. })) {
            return Err(refuse(format!(
                "makes the scoped attribute {} without adding this IdP's scope last",
                rule.target.name
            )));
        }
        Ok(())
    }
}

const WHAT: &str = "conversion rule";

/// An attribute by its SAML name (a URI such as `urn:oid:...`) and friendly name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeName {
    /// `Name` (URI form).
    pub name: String,
    /// `FriendlyName`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// One operation on the list of values (see the [module docs](self) for each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Op {
    /// All values into one.
    Join {
        /// Between values.
        separator: String,
    },
    /// Each value split at every separator.
    Split {
        /// Where to split (not empty).
        separator: String,
    },
    /// Every match of `pattern` replaced by `replacement` (`$1`, `${name}` for groups).
    RegexReplace {
        /// The pattern (`regex` crate syntax).
        pattern: String,
        /// The replacement.
        replacement: String,
    },
    /// `value@scope` for each value without `@`.
    ScopeAdd {
        /// The scope (a DNS domain).
        scope: String,
    },
    /// Each value cut before its last `@`.
    ScopeStrip,
    /// Each value looked up in `map`.
    ValueMap {
        /// Source value -> target value.
        map: BTreeMap<String, String>,
        /// Keep values the map does not name (default: drop them).
        #[serde(default)]
        keep_unmapped: bool,
    },
    /// Unicode lower case.
    Lowercase,
    /// The values replaced by these.
    Constant {
        /// The values.
        values: Vec<String>,
    },
}

impl Op {
    /// The operation's name as written in the format.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Op::Join { .. } => "join",
            Op::Split { .. } => "split",
            Op::RegexReplace { .. } => "regex_replace",
            Op::ScopeAdd { .. } => "scope_add",
            Op::ScopeStrip => "scope_strip",
            Op::ValueMap { .. } => "value_map",
            Op::Lowercase => "lowercase",
            Op::Constant { .. } => "constant",
        }
    }
}

/// A rule: a target attribute from source attributes through operations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique in its set (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The attribute produced.
    pub target: AttributeName,
    /// The attributes read, by name, in order.
    pub sources: Vec<String>,
    /// The operations, in order.
    #[serde(default)]
    pub ops: Vec<Op>,
    #[serde(skip)]
    compiled: Vec<Option<Compiled>>,
}

/// A `regex_replace` as checked and compiled.
#[derive(Debug, Clone)]
struct Compiled {
    re: Regex,
    /// The replacement, parsed and its groups resolved (what the evaluator writes).
    pieces: Vec<portable::Piece>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        // The compiled regexes follow from the ops.
        self.id == other.id
            && self.description == other.description
            && self.target == other.target
            && self.sources == other.sources
            && self.ops == other.ops
    }
}

impl Eq for Rule {}

/// Attribute values by name: what an IdP has for a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(BTreeMap<String, Vec<String>>);

impl Attributes {
    /// Adds values of `name`.
    pub fn insert<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, name: &str, values: I) {
        self.0
            .entry(name.to_owned())
            .or_default()
            .extend(values.into_iter().map(Into::into));
    }

    /// The values of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// The names present.
    #[must_use]
    pub fn names(&self) -> BTreeSet<String> {
        self.0.keys().cloned().collect()
    }
}

fn text(field: &str, s: &str, allow_empty: bool) -> Result<(), Error> {
    if s.len() > MAX_TEXT {
        return Err(Error::malformed(
            WHAT,
            format!("{field} longer than {MAX_TEXT} bytes"),
        ));
    }
    if !allow_empty && s.is_empty() {
        return Err(Error::malformed(WHAT, format!("{field} is empty")));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::malformed(
            WHAT,
            format!("{field} holds control characters"),
        ));
    }
    // Conversion review L4 (and M3): noncharacters (U+FFFE is not an XML character: the
    // resolver file would not parse) and the invisible format characters that make text in a
    // file for review read otherwise than it is (bidirectional overrides and isolates,
    // zero-width characters, tags).
    if let Some(c) = s.chars().find(|&c| hidden_or_nonchar(c)) {
        return Err(Error::malformed(
            WHAT,
            format!("{field} holds U+{:04X}", u32::from(c)),
        ));
    }
    Ok(())
}

fn hidden_or_nonchar(c: char) -> bool {
    let u = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&u)
        || u & 0xFFFE == 0xFFFE
        || matches!(
            u,
            0x00AD
                | 0x061C
                | 0x180E
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0xE0000..=0xE007F
        )
}

fn check_values(v: &[String]) -> Result<(), Error> {
    if v.len() > MAX_VALUES {
        return Err(Error::malformed(
            WHAT,
            format!("more than {MAX_VALUES} values"),
        ));
    }
    if v.iter().any(|x| x.len() > MAX_VALUE_LEN) {
        return Err(Error::malformed(
            WHAT,
            format!("a value longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

impl Rule {
    /// The parsed replacement and group count of operation `i`, a `regex_replace`.
    pub(crate) fn replacement(&self, i: usize) -> Option<(&[portable::Piece], usize)> {
        self.compiled
            .get(i)?
            .as_ref()
            .map(|c| (c.pieces.as_slice(), c.re.captures_len()))
    }

    /// A rule producing `target` from `sources` through `ops`; checked and compiled.
    pub fn new(
        id: &str,
        target: AttributeName,
        sources: Vec<String>,
        ops: Vec<Op>,
    ) -> Result<Self, Error> {
        let mut r = Rule {
            id: id.to_owned(),
            description: None,
            target,
            sources,
            ops,
            compiled: Vec::new(),
        };
        r.check()?;
        Ok(r)
    }

    /// Checks bounds and syntax, compiles the regexes.
    fn check(&mut self) -> Result<(), Error> {
        text("id", &self.id, false)?;
        if !self
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || self.id.contains("--")
        {
            // `--` may not appear in an XML comment, where the generators name the rule.
            return Err(Error::malformed(
                WHAT,
                format!("id {:?}: letters, digits, - _ . only, no --", self.id),
            ));
        }
        text("target name", &self.target.name, false)?;
        if let Some(f) = &self.target.friendly_name {
            text("friendly name", f, false)?;
        }
        if let Some(d) = &self.description {
            text("description", d, true)?;
        }
        if self.sources.is_empty() || self.sources.len() > MAX_SOURCES {
            return Err(Error::malformed(
                WHAT,
                format!("{}: 1 to {MAX_SOURCES} sources", self.id),
            ));
        }
        for s in &self.sources {
            text("source name", s, false)?;
        }
        if self.ops.len() > MAX_OPS {
            return Err(Error::malformed(
                WHAT,
                format!("{}: more than {MAX_OPS} operations", self.id),
            ));
        }
        let mut compiled = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let mut re = None;
            match op {
                Op::Join { separator } => text("separator", separator, true)?,
                Op::Split { separator } => text("separator", separator, false)?,
                Op::RegexReplace {
                    pattern,
                    replacement,
                } => {
                    if pattern.len() > MAX_PATTERN {
                        return Err(Error::malformed(
                            WHAT,
                            format!("{}: pattern longer than {MAX_PATTERN} bytes", self.id),
                        ));
                    }
                    text("pattern", pattern, false)?;
                    text("replacement", replacement, true)?;
                    let bad =
                        |e: String| Error::malformed(WHAT, format!("{}: pattern: {e}", self.id));
                    portable::check_pattern(pattern).map_err(bad)?;
                    let compiled = RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .nest_limit(64)
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                    let pieces =
                        portable::parse_replacement(replacement, &compiled).map_err(|e| {
                            Error::malformed(WHAT, format!("{}: replacement: {e}", self.id))
                        })?;
                    re = Some(Compiled {
                        re: compiled,
                        pieces,
                    });
                }
                Op::ScopeAdd { scope } => {
                    text("scope", scope, false)?;
                    if !scope
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    {
                        return Err(Error::malformed(
                            WHAT,
                            format!("{}: a scope is a DNS domain", self.id),
                        ));
                    }
                }
                Op::ScopeStrip | Op::Lowercase => {}
                Op::ValueMap { map, .. } => {
                    if map.len() > MAX_MAP {
                        return Err(Error::malformed(
                            WHAT,
                            format!("{}: value map over {MAX_MAP} entries", self.id),
                        ));
                    }
                    for (k, v) in map {
                        text("mapped value", k, true)?;
                        text("mapped value", v, true)?;
                    }
                }
                Op::Constant { values } => {
                    if values.is_empty() || values.len() > MAX_VALUES {
                        return Err(Error::malformed(
                            WHAT,
                            format!("{}: 1 to {MAX_VALUES} constants", self.id),
                        ));
                    }
                    for v in values {
                        text("constant", v, true)?;
                    }
                }
            }
            compiled.push(re);
        }
        self.compiled = compiled;
        Ok(())
    }

    /// The target's values from `attrs`: the sources' values in order, through the operations.
    /// A source the user has no value for contributes nothing; no value at the end is an empty
    /// list.
    pub fn evaluate(&self, attrs: &Attributes) -> Result<Vec<String>, Error> {
        let mut values: Vec<String> = Vec::new();
        for s in &self.sources {
            if let Some(v) = attrs.get(s) {
                values.extend(v.iter().cloned());
                check_values(&values)?;
            }
        }
        for (i, op) in self.ops.iter().enumerate() {
            values = match op {
                Op::Join { separator } => {
                    let total: usize = values.iter().map(String::len).sum::<usize>()
                        + separator.len() * values.len().saturating_sub(1);
                    if total > MAX_VALUE_LEN {
                        return Err(Error::malformed(
                            WHAT,
                            format!(
                                "{}: joined value longer than {MAX_VALUE_LEN} bytes",
                                self.id
                            ),
                        ));
                    }
                    if values.is_empty() {
                        values
                    } else {
                        vec![values.join(separator)]
                    }
                }
                Op::Split { separator } => {
                    let mut out = Vec::new();
                    for v in &values {
                        for part in v.split(separator.as_str()) {
                            if out.len() == MAX_VALUES {
                                return Err(Error::malformed(
                                    WHAT,
                                    format!(
                                        "{}: split gives more than {MAX_VALUES} values",
                                        self.id
                                    ),
                                ));
                            }
                            out.push(part.to_owned());
                        }
                    }
                    out
                }
                Op::RegexReplace { .. } => {
                    let Some(Some(c)) = self.compiled.get(i) else {
                        return Err(Error::malformed(WHAT, "rule not compiled"));
                    };
                    let mut out = Vec::with_capacity(values.len());
                    for v in &values {
                        // What `replace_all` makes, built match by match and refused as soon
                        // as it is too long (review C6: a pattern matching the empty string
                        // with a 1 KiB replacement built 64 MiB from a 64 KiB value first).
                        let too_long = || {
                            Error::malformed(
                                WHAT,
                                format!(
                                    "{}: replaced value longer than {MAX_VALUE_LEN} bytes",
                                    self.id
                                ),
                            )
                        };
                        // Each expansion is measured before it is written (review H4: one
                        // match of `.+` with 512 `$0`s made 32 MiB of one value).
                        let mut r = String::new();
                        let mut last = 0;
                        for caps in c.re.captures_iter(v) {
                            let Some(m) = caps.get(0) else { continue };
                            let group = |g: usize| caps.get(g).map_or("", |m| m.as_str());
                            let adds: usize = c
                                .pieces
                                .iter()
                                .map(|p| match p {
                                    portable::Piece::Literal(s) => s.len(),
                                    portable::Piece::Group(g) => group(*g).len(),
                                })
                                .sum();
                            if r.len() + (m.start() - last) + adds > MAX_VALUE_LEN {
                                return Err(too_long());
                            }
                            r.push_str(&v[last..m.start()]);
                            for p in &c.pieces {
                                match p {
                                    portable::Piece::Literal(s) => r.push_str(s),
                                    portable::Piece::Group(g) => r.push_str(group(*g)),
                                }
                            }
                            last = m.end();
                        }
                        r.push_str(&v[last..]);
                        if r.len() > MAX_VALUE_LEN {
                            return Err(too_long());
                        }
                        out.push(r);
                    }
                    out
                }
                // A value that has a scope already is dropped (conversion review H2: passed
                // on, a login name chosen as `victim@victim.example` became that eppn).
                Op::ScopeAdd { scope } => values
                    .into_iter()
                    .filter(|v| !v.is_empty() && !v.contains('@'))
                    .map(|v| format!("{v}@{scope}"))
                    .collect(),
                Op::ScopeStrip => values
                    .into_iter()
                    .map(|v| match v.rfind('@') {
                        Some(at) => v[..at].to_owned(),
                        None => v,
                    })
                    .collect(),
                Op::ValueMap { map, keep_unmapped } => values
                    .into_iter()
                    .filter_map(|v| match map.get(&v) {
                        Some(t) => Some(t.clone()),
                        None if *keep_unmapped => Some(v),
                        None => None,
                    })
                    .collect(),
                Op::Lowercase => values.into_iter().map(|v| v.to_lowercase()).collect(),
                Op::Constant { values } => values.clone(),
            };
            check_values(&values)?;
        }
        Ok(values)
    }
}

/// A set of rules with unique ids: what a broker shares and an IdP queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// A set of `rules`, checked (bounds, unique ids, regexes compile).
    pub fn new(rules: Vec<Rule>) -> Result<Self, Error> {
        let mut s = RuleSet { rules };
        s.check()?;
        Ok(s)
    }

    fn check(&mut self) -> Result<(), Error> {
        if self.rules.len() > MAX_RULES {
            return Err(Error::malformed(
                WHAT,
                format!("more than {MAX_RULES} rules"),
            ));
        }
        // Counted before any is compiled.
        let regexes = self
            .rules
            .iter()
            .flat_map(|r| &r.ops)
            .filter(|op| matches!(op, Op::RegexReplace { .. }))
            .count();
        if regexes > MAX_REGEXES {
            return Err(Error::malformed(
                WHAT,
                format!("more than {MAX_REGEXES} regex_replace operations"),
            ));
        }
        let mut ids = HashSet::new();
        for r in &mut self.rules {
            r.check()?;
            if !ids.insert(r.id.clone()) {
                return Err(Error::malformed(WHAT, format!("id {:?} used twice", r.id)));
            }
        }
        Ok(())
    }

    /// Parses and checks a rule set from JSON (at most [`MAX_JSON`] bytes).
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        if json.len() > MAX_JSON {
            return Err(Error::malformed(
                WHAT,
                format!("rule set larger than {MAX_JSON} bytes"),
            ));
        }
        let mut s: RuleSet = serde_json::from_slice(json)
            .map_err(|e| Error::malformed(WHAT, format!("JSON: {e}")))?;
        s.check()?;
        Ok(s)
    }

    /// The set as JSON.
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string_pretty(self).map_err(|e| Error::malformed(WHAT, e.to_string()))
    }

    /// The rules producing one of `wanted` (target names) from attributes all in `have`, in
    /// set order (the repository query an IdP makes after an exchange).
    #[must_use]
    pub fn rules_for<S: AsRef<str>>(&self, wanted: &[S], have: &BTreeSet<String>) -> Vec<&Rule> {
        let wanted: std::collections::HashSet<&str> = wanted.iter().map(AsRef::as_ref).collect();
        self.rules
            .iter()
            .filter(|r| wanted.contains(r.target.name.as_str()))
            .filter(|r| r.sources.iter().all(|s| have.contains(s)))
            .collect()
    }
}

/// The IdP's question to the broker after an exchange (defined here; the draft has none):
///
/// ```text
/// GET <broker DAME endpoint>?action=rules&sp=<SP entityID>&have=<names, space-separated>
/// 200 application/json: a RuleSet of the rules that make an attribute the SP requests
///     (its RequestedAttributes) and the IdP does not have, from attributes it has
///     DAME-Signature: SigAlg=<URI>&Signature=<base64>   (see [`sign_answer`])
/// ```
/// Rules are shared data, not secrets: the query is not signed. The answer is: what it says
/// becomes configuration at the IdP, so the agent checks it with the broker key it pins for
/// triggers and metadata, not only with TLS and the system's roots (conversion review L1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RulesQuery {
    /// The SP whose requested attributes are meant.
    pub sp: String,
    /// The attribute names the IdP can release.
    pub have: BTreeSet<String>,
}

/// The HTTP header carrying a rules answer's signature ([`sign_answer`]).
pub const ANSWER_SIGNATURE_HEADER: &str = "DAME-Signature";

/// What a rules answer's signature covers: a fixed label, when it was made (so an older answer
/// cannot be replayed for long), the query as the IdP sent it (so an answer to one SP's
/// question cannot be passed off for another's) and the body.
fn answer_octets(instant: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + query.len() + body.len());
    out.extend_from_slice(b"DAME rules answer\n");
    out.extend_from_slice(instant.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(query.strip_prefix('?').unwrap_or(query).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The [`ANSWER_SIGNATURE_HEADER`] value for the answer `body` to `query` (the raw query
/// string the IdP sent) at `now`, signed with the broker's `key` (its natural algorithm):
/// `IssueInstant=<xs:dateTime>&SigAlg=<URI>&Signature=<base64>`, percent-encoded.
pub fn sign_answer(
    query: &str,
    body: &[u8],
    key: &saml_core::dsig::SigningKey,
    now: std::time::SystemTime,
) -> Result<String, Error> {
    use base64::Engine as _;
    let instant = saml_core::time::format_datetime(now);
    let alg = key.default_algorithm();
    let sig = key.sign_octets(alg, &answer_octets(&instant, query, body))?;
    Ok(format!(
        "IssueInstant={}&SigAlg={}&Signature={}",
        saml_core::bindings::url_encode(&instant),
        saml_core::bindings::url_encode(alg.uri()),
        saml_core::bindings::url_encode(&base64::engine::general_purpose::STANDARD.encode(sig))
    ))
}

/// Checks the [`ANSWER_SIGNATURE_HEADER`] value `header` of the answer `body` to `query` at
/// `now` with the broker's `keys` (RSA at least 2048 bits, no SHA-1): an answer without it is
/// refused ([`Refusal::Unsigned`](crate::Refusal::Unsigned)), one whose signature does not
/// verify too ([`Refusal::BadSignature`](crate::Refusal::BadSignature)), and so is one made
/// more than [`crate::signed::DEFAULT_MAX_AGE`] ago or ahead of `now` by more than
/// [`crate::signed::DEFAULT_CLOCK_SKEW`] (an older answer, with rules since withdrawn, replayed).
pub fn verify_answer(
    query: &str,
    body: &[u8],
    header: Option<&str>,
    keys: &saml_core::dsig::TrustedKeys,
    now: std::time::SystemTime,
) -> Result<(), Error> {
    use base64::Engine as _;
    const W: &str = "rules answer signature";
    let header = header.ok_or(crate::error::Refusal::Unsigned)?;
    let q = crate::query::Query::parse(W, header)?;
    let names: Vec<&str> = q.pairs.iter().map(|(k, _)| *k).collect();
    if names != ["IssueInstant", "SigAlg", "Signature"] {
        return Err(Error::malformed(
            W,
            "IssueInstant, SigAlg, Signature, nothing else",
        ));
    }
    let instant = q.required(W, "IssueInstant")?;
    let issued = saml_core::time::parse_datetime(&instant)
        .ok_or_else(|| Error::malformed(W, "IssueInstant is not xs:dateTime"))?;
    let alg = q.required(W, "SigAlg")?;
    let alg = saml_core::dsig::SignatureAlgorithm::from_uri(&alg, false)
        .map_err(saml_core::Error::from)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(q.required(W, "Signature")?)
        .map_err(|e| Error::malformed(W, format!("Signature is not base64: {e}")))?;
    keys.verify_octets(alg, 2048, &answer_octets(&instant, query, body), &sig)
        .map_err(|_| crate::error::Refusal::BadSignature)?;
    crate::signed::check_time(
        issued,
        now,
        crate::signed::DEFAULT_MAX_AGE,
        crate::signed::DEFAULT_CLOCK_SKEW,
    )?;
    Ok(())
}

impl RulesQuery {
    /// The query string.
    #[must_use]
    pub fn to_query(&self) -> String {
        let have: Vec<&str> = self.have.iter().map(String::as_str).collect();
        crate::query::write(&[
            ("action", "rules"),
            ("sp", &self.sp),
            ("have", &have.join(" ")),
        ])
    }

    /// Parses a query string (at most [`MAX_SOURCES`] x 64 names).
    pub fn parse(query: &str) -> Result<Self, Error> {
        const Q: &str = "rules query";
        let q = crate::query::Query::parse(Q, query)?;
        if q.required(Q, "action")? != "rules" {
            return Err(Error::malformed(Q, "action must be rules"));
        }
        let sp = q.required(Q, "sp")?;
        let have: BTreeSet<String> = q
            .get(Q, "have")?
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if have.len() > MAX_SOURCES * 64 {
            return Err(Error::malformed(Q, "too many attribute names"));
        }
        Ok(RulesQuery { sp, have })
    }

    /// The broker's answer from its `rules` for the SP's metadata `sp`: the rules for every
    /// requested attribute the IdP lacks, from attributes it has.
    pub fn answer(
        &self,
        sp: &saml_metadata::model::EntityDescriptor,
        rules: &RuleSet,
    ) -> Result<RuleSet, Error> {
        if sp.entity_id != self.sp {
            return Err(crate::error::Refusal::UnknownEntity.into());
        }
        let have: Vec<&str> = self.have.iter().map(String::as_str).collect();
        let wanted: Vec<&str> = crate::agent::missing_attributes(sp, &have)
            .iter()
            .map(|a| a.attribute.name.as_str())
            .collect();
        Ok(RuleSet {
            rules: rules
                .rules_for(&wanted, &self.have)
                .into_iter()
                .cloned()
                .collect(),
        })
    }
}
