//! What a `regex_replace` may say so that it means the same in the three engines that run it:
//! the `regex` crate (the evaluator, [`super::Rule::evaluate`]), PCRE (SimpleSAMLphp's
//! `core:AttributeAlter`, through `preg_replace`) and `java.util.regex` (the Shibboleth IdP's
//! `Mapped` definition). Conversion review H1, M1, M2: patterns were checked by the `regex`
//! crate only and written as they were, so constructs it accepts failed to compile in PCRE
//! (SimpleSAMLphp then emptied the target for every user) or in Java (the resolver did not
//! load), or meant something else there; replacements were copied as they were, so the
//! documented `${name}` stayed a literal in PHP (every user got the same value) and `$$` or a
//! backslash threw in Java; and the `regex` crate's linear time says nothing about the two
//! backtracking engines.
//!
//! **Patterns** are parsed with `regex-syntax` and refused unless they use only: literals
//! (escapes `\t \n \r \f \a`, `\xHH`, `\x{H…}`, and a backslash before punctuation), `.`,
//! `^ $ \A \z \b \B`, `\d \s \w` and their negations, `\pX` / `\p{Xx}` for Unicode general
//! categories, bracketed classes of literals, ranges and those classes (no nested brackets, no
//! `[:alpha:]`, no `&& -- ~~`), groups (capturing, `(?<name>…)` with an ASCII name, `(?:…)`),
//! the flags `i m s`, alternations and repetitions. Refused because an engine reads them
//! otherwise: `(?P<…>`, `\v` (a class in PCRE and Java), `\u` / `\U` escapes, `\b{…}`, `\<`,
//! `\>`, the flags `u x U R`, a quantified assertion (`^*`, `\b?`) and a class written like a
//! POSIX one outside brackets (`[:a:]`, `[.a.]`, `[=a=]`), which PCRE refuses. What still
//! differs is documented, not hidden: `\d \w \s` and case folding are ASCII in Java (PHP's
//! `/u` makes them Unicode in PCRE, as in the evaluator); Java's `$` and `.` know more line
//! terminators (PCRE is given `D`, so its `$` is the end, as here).
//!
//! **Backtracking** (review M2: `^(?:[a-z]*a){12}$` took 44 s in Java on a 37-character value;
//! the second review: `a*a*[bc]` took 7.8 s on 2,000 characters, and even `x*[yz]` is
//! quadratic when tried at every start): a repetition may not contain another repetition or an
//! alternation; a pattern has at most [`MAX_CHOICES`] repetitions and alternations in all, at
//! most [`MAX_LONG_REPEATS`] of the repetitions may repeat more than once, at most one of them
//! without an upper bound (`*`, `+`, `{n,}`), and a pattern with one begins with `^` or `\A`,
//! so it is tried at one start only; a counted repetition repeats at most [`MAX_COUNT`] times.
//! The worst case of a backtracking engine is then linear in the value's length times the
//! bounded repetitions' counts, not of a degree the rule's author picks. SimpleSAMLphp stops
//! at `pcre.backtrack_limit` anyway; the Shibboleth IdP has no such limit, which is why the
//! bound is on the pattern.
//!
//! **Replacements** are parsed with the `regex` crate's rules (`$N`, `$name`, `${…}`, `$$`),
//! every group reference resolved against the pattern (a group that does not exist is refused:
//! the evaluator would have silently given the empty string), and written in each engine's
//! own syntax: `${N}` with `\$` and `\\` in PHP, `$N` with `Matcher.quoteReplacement`'s
//! escapes in Java.

use regex::Regex;
use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassSet, ClassSetItem, ClassUnicodeKind, FlagsItemKind, GroupKind,
    HexLiteralKind, LiteralKind, RepetitionKind, RepetitionRange, SpecialLiteralKind,
};

/// Most repetitions and alternations in one pattern.
pub const MAX_CHOICES: usize = 4;
/// Most repetitions in one pattern that may repeat more than once (`*`, `+`, `{n,m}` with
/// `m > 1`).
pub const MAX_LONG_REPEATS: usize = 2;
/// Largest count of a counted repetition (`{n}`, `{n,}`, `{n,m}`).
pub const MAX_COUNT: u32 = 100;

/// One part of a parsed replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text written as it is.
    Literal(String),
    /// The text of capture group N (0 is the whole match).
    Group(usize),
}

/// Refuses a pattern that does not mean the same in the three engines, or whose backtracking
/// is not bounded as the [module docs](self) say.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
    let ast = ast::parse::ParserBuilder::new()
        .nest_limit(64)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let mut count = Counts::default();
    walk(&ast, false, &mut count, pattern)?;
    if count.unbounded > 1 {
        return Err(
            "more than one repetition without an upper bound (backtracking engines run it)".into(),
        );
    }
    if count.unbounded == 1 && !anchored(&ast) {
        return Err("a pattern with * + or {n,} must begin with ^ or \\A (backtracking engines try it at every start)".into());
    }
    if count.choices > MAX_CHOICES {
        return Err(format!(
            "more than {MAX_CHOICES} repetitions and alternations (backtracking engines run it)"
        ));
    }
    if count.long_repeats > MAX_LONG_REPEATS {
        return Err(format!(
            "more than {MAX_LONG_REPEATS} repetitions of more than one (backtracking engines run it)"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    choices: usize,
    long_repeats: usize,
    unbounded: usize,
}

/// Whether `ast` begins with `^` or `\A` (after any flags).
fn anchored(ast: &Ast) -> bool {
    let first = match ast {
        Ast::Concat(c) => c.asts.iter().find(|a| !matches!(a, Ast::Flags(_))),
        other => Some(other),
    };
    matches!(first, Some(Ast::Assertion(a))
        if matches!(a.kind, AssertionKind::StartLine | AssertionKind::StartText))
}

/// `under_repetition`: inside a repetition that repeats more than once (inside `?` a
/// sub-expression runs at most once, so nothing multiplies).
fn walk(
    ast: &Ast,
    under_repetition: bool,
    count: &mut Counts,
    pattern: &str,
) -> Result<(), String> {
    match ast {
        Ast::Empty(_) | Ast::Dot(_) | Ast::ClassPerl(_) => Ok(()),
        Ast::Literal(l) => literal(l),
        Ast::Flags(f) => flags(&f.flags),
        Ast::Assertion(a) => match a.kind {
            AssertionKind::StartLine
            | AssertionKind::EndLine
            | AssertionKind::StartText
            | AssertionKind::EndText
            | AssertionKind::WordBoundary
            | AssertionKind::NotWordBoundary => Ok(()),
            _ => Err("only ^ $ \\A \\z \\b \\B as assertions".into()),
        },
        Ast::ClassUnicode(c) => unicode_class(&c.kind),
        Ast::ClassBracketed(c) => {
            // `[:a:]`, `[.a.]`, `[=a=]` outside brackets: a class of literals here and in Java,
            // an error in PCRE ("POSIX named classes are supported only within a class").
            let text = pattern.get(c.span.start.offset..).unwrap_or("");
            let text = text.strip_prefix('[').unwrap_or(text);
            let text = text.strip_prefix('^').unwrap_or(text);
            if text.starts_with([':', '.', '=']) {
                return Err("a class beginning [: [. or [= (PCRE reads a POSIX class)".into());
            }
            class_set(&c.kind)
        }
        Ast::Repetition(r) => {
            if under_repetition {
                return Err(
                    "a repetition inside a repetition (backtracking engines run it)".into(),
                );
            }
            count.choices += 1;
            if repeats_an_assertion(&r.ast) {
                return Err("a quantified assertion (PCRE refuses it)".into());
            }
            if matches!(
                r.op.kind,
                RepetitionKind::ZeroOrMore
                    | RepetitionKind::OneOrMore
                    | RepetitionKind::Range(RepetitionRange::AtLeast(_))
            ) {
                count.unbounded += 1;
            }
            let long = match &r.op.kind {
                RepetitionKind::ZeroOrOne => false,
                RepetitionKind::ZeroOrMore | RepetitionKind::OneOrMore => true,
                RepetitionKind::Range(range) => {
                    let (RepetitionRange::Exactly(m)
                    | RepetitionRange::AtLeast(m)
                    | RepetitionRange::Bounded(_, m)) = *range;
                    if m > MAX_COUNT {
                        return Err(format!("a count above {MAX_COUNT}"));
                    }
                    !matches!(
                        range,
                        RepetitionRange::Exactly(0 | 1) | RepetitionRange::Bounded(_, 0 | 1)
                    )
                }
            };
            if long {
                count.long_repeats += 1;
            }
            walk(&r.ast, long, count, pattern)
        }
        Ast::Group(g) => {
            match &g.kind {
                GroupKind::CaptureIndex(_) => {}
                GroupKind::CaptureName {
                    starts_with_p,
                    name,
                } => {
                    if *starts_with_p {
                        return Err("(?P<name>…): Java knows only (?<name>…)".into());
                    }
                    let n = &name.name;
                    let ok = n.len() <= 32
                        && n.starts_with(|c: char| c.is_ascii_alphabetic())
                        && n.chars().all(|c| c.is_ascii_alphanumeric());
                    if !ok {
                        return Err(format!(
                            "group name {n:?}: a letter, then letters and digits (at most 32)"
                        ));
                    }
                }
                GroupKind::NonCapturing(f) => flags(f)?,
            }
            walk(&g.ast, under_repetition, count, pattern)
        }
        Ast::Alternation(a) => {
            if under_repetition {
                return Err(
                    "an alternation inside a repetition (backtracking engines run it)".into(),
                );
            }
            count.choices += 1;
            a.asts
                .iter()
                .try_for_each(|x| walk(x, under_repetition, count, pattern))
        }
        Ast::Concat(c) => c
            .asts
            .iter()
            .try_for_each(|x| walk(x, under_repetition, count, pattern)),
    }
}

/// Whether a repetition's operand is an assertion (possibly inside groups).
fn repeats_an_assertion(ast: &Ast) -> bool {
    match ast {
        Ast::Assertion(_) => true,
        Ast::Group(g) => repeats_an_assertion(&g.ast),
        _ => false,
    }
}

fn literal(l: &ast::Literal) -> Result<(), String> {
    match &l.kind {
        LiteralKind::Verbatim | LiteralKind::Meta | LiteralKind::Superfluous => Ok(()),
        LiteralKind::HexFixed(HexLiteralKind::X) | LiteralKind::HexBrace(HexLiteralKind::X) => {
            Ok(())
        }
        LiteralKind::Special(SpecialLiteralKind::VerticalTab) => {
            Err("\\v is a class of vertical space in PCRE and Java: write \\x0B".into())
        }
        LiteralKind::Special(SpecialLiteralKind::Space) => {
            Err("an escaped space (x mode) is not allowed".into())
        }
        LiteralKind::Special(_) => Ok(()),
        _ => Err("only \\xHH and \\x{H…} as code point escapes".into()),
    }
}

fn flags(f: &ast::Flags) -> Result<(), String> {
    for item in &f.items {
        match &item.kind {
            FlagsItemKind::Negation => {}
            FlagsItemKind::Flag(
                ast::Flag::CaseInsensitive | ast::Flag::MultiLine | ast::Flag::DotMatchesNewLine,
            ) => {}
            FlagsItemKind::Flag(_) => {
                return Err("only the flags i, m and s (the others differ between engines)".into());
            }
        }
    }
    Ok(())
}

/// The Unicode general categories, which all three engines name alike.
const CATEGORIES: [&str; 38] = [
    "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc",
    "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C",
    "Cc", "Cf", "Cs", "Co", "Cn", "LC",
];

fn unicode_class(kind: &ClassUnicodeKind) -> Result<(), String> {
    let ok = match kind {
        ClassUnicodeKind::OneLetter(c) => CATEGORIES.contains(&c.to_string().as_str()),
        ClassUnicodeKind::Named(n) => CATEGORIES.contains(&n.as_str()),
        ClassUnicodeKind::NamedValue { .. } => false,
    };
    if ok {
        Ok(())
    } else {
        Err("only general categories (\\pL, \\p{Lu}) as Unicode classes".into())
    }
}

fn class_set(set: &ClassSet) -> Result<(), String> {
    match set {
        ClassSet::BinaryOp(_) => Err("class operations (&& -- ~~) differ between engines".into()),
        ClassSet::Item(item) => class_item(item),
    }
}

fn class_item(item: &ClassSetItem) -> Result<(), String> {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Range(_) | ClassSetItem::Perl(_) => Ok(()),
        ClassSetItem::Literal(l) => literal(l),
        ClassSetItem::Unicode(u) => unicode_class(&u.kind),
        ClassSetItem::Ascii(_) => Err("[:name:] classes: Java does not know them".into()),
        ClassSetItem::Bracketed(_) => Err("a class inside a class: PCRE reads it otherwise".into()),
        ClassSetItem::Union(u) => u.items.iter().try_for_each(class_item),
    }
}

/// `replacement` parsed as the `regex` crate reads it, every group reference resolved against
/// `re` (by number or name); a reference to a group `re` does not have is refused.
pub(crate) fn parse_replacement(replacement: &str, re: &Regex) -> Result<Vec<Piece>, String> {
    let mut out: Vec<Piece> = Vec::new();
    let mut lit = String::new();
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        lit.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            lit.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(end) => (&r[..end], &r[end + 1..]),
                None => ("", rest),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            // A `$` that names nothing is itself (as the regex crate reads it).
            lit.push('$');
            continue;
        }
        let index = if name.bytes().all(|b| b.is_ascii_digit()) {
            name.parse::<usize>()
                .ok()
                .filter(|&i| i < re.captures_len())
        } else {
            re.capture_names().position(|n| n == Some(name))
        };
        // PHP reads at most two digits in `${N}` (the second review: `${100}` stayed a literal).
        let index = index.filter(|&i| i < 100);
        let Some(index) = index else {
            return Err(format!(
                "the replacement names group {name:?}, which the pattern does not have"
            ));
        };
        if !lit.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut lit)));
        }
        out.push(Piece::Group(index));
        rest = after;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Literal(lit));
    }
    Ok(out)
}

/// The replacement for PHP's `preg_replace`: `${N}`, a literal `\` or `$` escaped with `\`.
pub(crate) fn php_replacement(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Literal(s) => {
                for c in s.chars() {
                    if c == '\\' || c == '$' {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            Piece::Group(i) => out.push_str(&format!("${{{i}}}")),
        }
    }
    out
}

/// The replacement for Java's `Matcher.replaceAll`: `$N`, literals as
/// `Matcher.quoteReplacement` writes them. Java reads further digits after `$N` as part of the
/// number while the group exists, so a group followed by a digit is refused when the pattern
/// has ten groups or more (`groups` counts group 0).
pub(crate) fn java_replacement(pieces: &[Piece], groups: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut after_group = false;
    for p in pieces {
        match p {
            Piece::Literal(s) => {
                if after_group && groups > 10 && s.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err("a group reference followed by a digit, with ten groups or more (Java reads one number)".into());
                }
                out.push_str(&s.replace('\\', "\\\\").replace('$', "\\$"));
                after_group = false;
            }
            Piece::Group(i) => {
                out.push_str(&format!("${i}"));
                after_group = true;
            }
        }
    }
    Ok(out)
}

/// `pattern` between PCRE delimiters `/…/uD` (UTF-8; `$` only at the end, as in the `regex`
/// crate): a `/` not already escaped gets a backslash, an escape is copied whole (review M1: an
/// escaped `\/` became `\\/`, which ended the pattern early).
pub(crate) fn php_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    out.push('/');
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '/' => out.push_str("\\/"),
            c => out.push(c),
        }
    }
    out.push_str("/uD");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_patterns() {
        for ok in [
            r"^([^@]+)@old\.example$",
            r"^(?<user>[a-z0-9]+)@(?i:EXAMPLE)\.org$",
            r"x\/y",
            r"^\d{1,3}-\w+",
            r"\p{Lu}\pL[\x41-\x{5A}]",
            r"^(a|b)c?$",
            r"^(?:foo|ba?r)?x",
        ] {
            assert_eq!(check_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            r"(?-u)a",
            r"(?R)a",
            r"(?x)a b",
            r"(?P<n>a)",
            r"(?<n_1>a)",
            r"[[:alpha:]]",
            r"[a-z--b]",
            r"[a[bc]]",
            r"\b{start}a",
            r"\<a",
            r"\u0041",
            r"\v",
            r"\p{Greek}",
            r"^(a|aa)*$",
            r"(x+x+)+y",
            r"^(?:[a-z]*a){12}$",
            r".*.*.*x",
            r"a?b?c?d?e?",
            r"a{101}",
            r"a*a*[bc]",
            r"x*[yz]",
            r"^a*b+c",
            r"[:a:]",
            r"[.a.]",
            r"[^=a=]",
            r"^*a",
            r"\b?x",
            r"a$?",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replacements_resolve_and_render() {
        let re = Regex::new(r"^(?<user>[^@]+)@(old)\.example$").unwrap();
        let p = parse_replacement("${user}@new.example $$5 $2", &re).unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Group(1),
                Piece::Literal("@new.example $5 ".into()),
                Piece::Group(2)
            ]
        );
        assert_eq!(php_replacement(&p), "${1}@new.example \\$5 ${2}");
        assert_eq!(java_replacement(&p, 3).unwrap(), "$1@new.example \\$5 $2");
        assert!(parse_replacement("$3", &re).is_err());
        assert!(parse_replacement("$user2", &re).is_err());
        assert!(parse_replacement("${nobody}", &re).is_err());
        // PHP's `${N}` reads two digits at most: group 100 cannot be written for it.
        let many = Regex::new(&"(a)".repeat(100)).unwrap();
        assert!(parse_replacement("$99", &many).is_ok());
        assert!(parse_replacement("$100", &many).is_err());
        // A lone `$` and a backslash are themselves.
        let p = parse_replacement(r"50$ C:\", &re).unwrap();
        assert_eq!(php_replacement(&p), r"50\$ C:\\");
        assert_eq!(java_replacement(&p, 3).unwrap(), r"50\$ C:\\");
        assert_eq!(php_pattern(r"x\/y/z"), r"/x\/y\/z/uD");
    }
}
