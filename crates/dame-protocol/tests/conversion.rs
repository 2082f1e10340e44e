//! Attribute conversion rules: every operation, composition, the JSON format, every bound
//! (refused with an error, never truncated), the repository query, and both generators with
//! hostile values (PHP syntax checked by `php -l` when PHP is installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use dame_protocol::conversion::{
    AttributeName, Attributes, MAX_JSON, MAX_VALUES, Op, Output, Rule, RuleSet, shibboleth,
    simplesamlphp,
};
use dame_protocol::{Error, ErrorKind};

const UID: &str = "urn:oid:0.9.2342.19200300.100.1.1";
const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
const AFF: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.1";
const SAFF: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9";
const CN: &str = "urn:oid:2.5.4.3";

fn name(n: &str) -> AttributeName {
    AttributeName {
        name: n.into(),
        friendly_name: None,
    }
}

fn rule(id: &str, target: &str, sources: &[&str], ops: Vec<Op>) -> Rule {
    Rule::new(
        id,
        name(target),
        sources.iter().map(|s| (*s).to_owned()).collect(),
        ops,
    )
    .unwrap()
}

fn attrs(pairs: &[(&str, &[&str])]) -> Attributes {
    let mut a = Attributes::default();
    for (n, v) in pairs {
        a.insert(n, v.iter().copied());
    }
    a
}

fn malformed<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
            e.to_string()
        }
        Ok(v) => panic!("accepted: {v:?}"),
    }
}

#[test]
fn each_operation() {
    let a = attrs(&[
        (UID, &["Alice"]),
        (CN, &["Alice", "Liddell"]),
        (AFF, &["staff", "member", "alum"]),
        (EPPN, &["alice@example.org"]),
    ]);
    let eval = |r: Rule| r.evaluate(&a).unwrap();
    assert_eq!(eval(rule("copy", UID, &[UID], vec![])), vec!["Alice"]);
    assert_eq!(
        eval(rule("rename", "urn:x:login", &[UID], vec![])),
        vec!["Alice"]
    );
    assert_eq!(
        eval(rule(
            "join",
            "urn:x:n",
            &[CN],
            vec![Op::Join {
                separator: " ".into()
            }]
        )),
        vec!["Alice Liddell"]
    );
    assert_eq!(
        eval(rule(
            "split",
            "urn:x:n",
            &[EPPN],
            vec![Op::Split {
                separator: "@".into()
            }]
        )),
        vec!["alice", "example.org"]
    );
    assert_eq!(
        eval(rule(
            "re",
            "urn:x:n",
            &[EPPN],
            vec![Op::RegexReplace {
                pattern: "^([^@]+)@([^@]{1,100})$".into(),
                replacement: "$2\\$1".into()
            }]
        )),
        vec!["example.org\\alice"]
    );
    assert_eq!(
        eval(rule(
            "scope",
            SAFF,
            &[AFF],
            vec![Op::ScopeAdd {
                scope: "example.org".into()
            }]
        )),
        vec![
            "staff@example.org",
            "member@example.org",
            "alum@example.org"
        ]
    );
    assert_eq!(
        eval(rule("strip", UID, &[EPPN], vec![Op::ScopeStrip])),
        vec!["alice"]
    );
    let map: BTreeMap<String, String> = [("staff", "employee"), ("alum", "affiliate")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert_eq!(
        eval(rule(
            "map",
            AFF,
            &[AFF],
            vec![Op::ValueMap {
                map: map.clone(),
                keep_unmapped: false
            }]
        )),
        vec!["employee", "affiliate"]
    );
    assert_eq!(
        eval(rule(
            "mapkeep",
            AFF,
            &[AFF],
            vec![Op::ValueMap {
                map,
                keep_unmapped: true
            }]
        )),
        vec!["employee", "member", "affiliate"]
    );
    assert_eq!(
        eval(rule("lower", UID, &[UID], vec![Op::Lowercase])),
        vec!["alice"]
    );
    assert_eq!(
        eval(rule(
            "const",
            "urn:x:c",
            &[UID],
            vec![Op::Constant {
                values: vec!["a".into(), "b".into()]
            }]
        )),
        vec!["a", "b"]
    );
    // Sources in order; a missing source contributes nothing.
    assert_eq!(
        eval(rule("two", "urn:x:n", &[UID, "urn:x:missing", CN], vec![])),
        vec!["Alice", "Alice", "Liddell"]
    );
}

#[test]
fn json_round_trip_and_strictness() {
    let json = br#"{"rules": [
        {"id": "eppn", "description": "uid at our scope",
         "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "friendly_name": "eduPersonPrincipalName"},
         "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
         "ops": [{"op": "lowercase"}, {"op": "scope_add", "scope": "example.org"}]},
        {"id": "aff", "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.1"},
         "sources": ["urn:x:role"],
         "ops": [{"op": "value_map", "map": {"Professor": "faculty"}}]}
    ]}"#;
    let set = RuleSet::from_json(json).unwrap();
    assert_eq!(set.rules.len(), 2);
    let again = RuleSet::from_json(set.to_json().unwrap().as_bytes()).unwrap();
    assert_eq!(again, set);
    // Unknown fields and operations, duplicate ids, bad ids, bad regexes: refused.
    malformed(RuleSet::from_json(br#"{"rules": [], "extra": 1}"#));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a", "target": {"name": "x"}, "sources": ["y"], "ops": [{"op": "php", "code": "exec()"}]}]}"#,
    ));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a", "target": {"name": "x"}, "sources": ["y"]}, {"id": "a", "target": {"name": "x"}, "sources": ["y"]}]}"#,
    ));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a b", "target": {"name": "x"}, "sources": ["y"]}]}"#,
    ));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a", "target": {"name": "x"}, "sources": ["y"], "ops": [{"op": "regex_replace", "pattern": "(", "replacement": ""}]}]}"#,
    ));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a", "target": {"name": "x"}, "sources": []}]}"#,
    ));
    malformed(RuleSet::from_json(
        br#"{"rules": [{"id": "a", "target": {"name": "x"}, "sources": ["y"], "ops": [{"op": "scope_add", "scope": "$1\\evil"}]}]}"#,
    ));
}

#[test]
fn bounds_are_errors_not_truncations() {
    // Oversized JSON.
    let big = vec![b' '; MAX_JSON + 1];
    assert!(malformed(RuleSet::from_json(&big)).contains("larger"));
    // Too many rules.
    let many: Vec<String> = (0..10_001)
        .map(|i| format!(r#"{{"id": "r{i}", "target": {{"name": "x"}}, "sources": ["y"]}}"#))
        .collect();
    let json = format!(r#"{{"rules": [{}]}}"#, many.join(","));
    assert!(json.len() < MAX_JSON);
    assert!(malformed(RuleSet::from_json(json.as_bytes())).contains("rules"));
    // Too many operations.
    let ops = vec![Op::Lowercase; 65];
    malformed(Rule::new("many", name("x"), vec!["y".into()], ops));
    // A split that would make more values than allowed.
    let a = attrs(&[(UID, &[&",".repeat(5_000)])]);
    let r = rule(
        "split",
        "x",
        &[UID],
        vec![Op::Split {
            separator: ",".into(),
        }],
    );
    assert!(malformed(r.evaluate(&a)).contains(&MAX_VALUES.to_string()));
    // A join past the value length.
    let long = "x".repeat(40_000);
    let a = attrs(&[(CN, &[long.as_str(), long.as_str()])]);
    let r = rule(
        "join",
        "x",
        &[CN],
        vec![Op::Join {
            separator: "".into(),
        }],
    );
    malformed(r.evaluate(&a));
    // A regex that explodes a backtracking engine is refused (the generated filters run in
    // PCRE and Java: conversion review M2); what is accepted is linear here too, and a huge
    // one is refused.
    malformed(Rule::new(
        "redos",
        name("x"),
        vec![UID.into()],
        vec![Op::RegexReplace {
            pattern: "(a+)+$".into(),
            replacement: "".into(),
        }],
    ));
    let a = attrs(&[(UID, &[&format!("{}!", "a".repeat(50_000))])]);
    let r = rule(
        "linear",
        "x",
        &[UID],
        vec![Op::RegexReplace {
            pattern: "^a+$".into(),
            replacement: "".into(),
        }],
    );
    assert_eq!(
        r.evaluate(&a).unwrap(),
        vec![format!("{}!", "a".repeat(50_000))]
    );
    malformed(Rule::new(
        "huge",
        name("x"),
        vec!["y".into()],
        vec![Op::RegexReplace {
            pattern: "x".repeat(2_000),
            replacement: "".into(),
        }],
    ));
    malformed(Rule::new(
        "blowup",
        name("x"),
        vec!["y".into()],
        vec![Op::RegexReplace {
            pattern: "\\pL{100}\\pL{100}".into(),
            replacement: "".into(),
        }],
    ));
    // A replacement that grows each value past the bound.
    let a = attrs(&[(UID, &[&"a".repeat(1000)])]);
    let r = rule(
        "grow",
        "x",
        &[UID],
        vec![Op::RegexReplace {
            pattern: "a".into(),
            replacement: "x".repeat(100),
        }],
    );
    malformed(r.evaluate(&a));
}

/// Review C6: no bound covered a set's regexes together (each compiles into up to 256 KiB and
/// a DFA cache as large): a 1 MiB set could hold a thousand. At most `MAX_REGEXES` per set,
/// counted before any is compiled. And a replacement is built match by match and refused as
/// soon as it is too long, with what `replace_all` gives otherwise.
#[test]
fn a_set_holds_a_bounded_number_of_regexes_and_replacements_stop_early() {
    use dame_protocol::conversion::{MAX_REGEXES, MAX_VALUE_LEN};
    let regex_rules = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"id": "r{i}", "target": {{"name": "x{i}"}}, "sources": ["y"], "ops": [{{"op": "regex_replace", "pattern": "^a{i}$", "replacement": "b"}}]}}"#
                )
            })
            .collect()
    };
    let json = |rules: Vec<String>| format!(r#"{{"rules": [{}]}}"#, rules.join(","));
    assert!(RuleSet::from_json(json(regex_rules(MAX_REGEXES)).as_bytes()).is_ok());
    let e = malformed(RuleSet::from_json(
        json(regex_rules(MAX_REGEXES + 1)).as_bytes(),
    ));
    assert!(e.contains("regex_replace"), "{e}");

    // An empty match at every position, each replaced by 1 KiB: refused.
    let a = attrs(&[(UID, &[&"a".repeat(MAX_VALUE_LEN)])]);
    let r = rule(
        "empty-matches",
        "x",
        &[UID],
        vec![Op::RegexReplace {
            pattern: "x?".into(),
            replacement: "y".repeat(1024),
        }],
    );
    assert!(malformed(r.evaluate(&a)).contains("longer"));
    // One match, its expansion 512 times the value: refused before it is written (review H4).
    let r = rule(
        "one-big-expansion",
        "x",
        &[UID],
        vec![Op::RegexReplace {
            pattern: "^.+".into(),
            replacement: "$0".repeat(512),
        }],
    );
    assert!(malformed(r.evaluate(&a)).contains("longer"));
    // What replace_all gives: groups, empty matches, no match, a literal `$$`.
    for (pattern, replacement, value, want) in [
        (
            "^(?<u>[^@]+)@old\\.example$",
            "$u@new.example",
            "jo@old.example",
            "jo@new.example",
        ),
        ("x?", "-", "ab", "-a-b-"),
        ("z", "y", "abc", "abc"),
        ("(a)(b)", "$2$1$$", "abab", "ba$ba$"),
    ] {
        let a = attrs(&[(UID, &[value])]);
        let r = rule(
            "same",
            "x",
            &[UID],
            vec![Op::RegexReplace {
                pattern: pattern.into(),
                replacement: replacement.into(),
            }],
        );
        assert_eq!(r.evaluate(&a).unwrap(), vec![want.to_owned()], "{pattern}");
    }
}

#[test]
fn rules_for_picks_rules_whose_sources_the_idp_has() {
    let set = RuleSet::new(vec![
        rule(
            "eppn-uid",
            EPPN,
            &[UID],
            vec![Op::ScopeAdd {
                scope: "example.org".into(),
            }],
        ),
        rule(
            "eppn-mail",
            EPPN,
            &["urn:oid:0.9.2342.19200300.100.1.3"],
            vec![],
        ),
        rule(
            "saff",
            SAFF,
            &[AFF],
            vec![Op::ScopeAdd {
                scope: "example.org".into(),
            }],
        ),
        rule(
            "cn",
            CN,
            &[UID, "urn:x:sn"],
            vec![Op::Join {
                separator: " ".into(),
            }],
        ),
    ])
    .unwrap();
    let have: BTreeSet<String> = [UID, AFF].into_iter().map(str::to_owned).collect();
    let ids: Vec<&str> = set
        .rules_for(&[EPPN, SAFF, CN], &have)
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, vec!["eppn-uid", "saff"]);
    assert!(set.rules_for(&["urn:x:none"], &have).is_empty());
}

fn sample() -> Vec<Rule> {
    let mut eppn = rule(
        "eppn",
        EPPN,
        &[UID],
        vec![Op::ScopeAdd {
            scope: "example.org".into(),
        }],
    );
    eppn.target.friendly_name = Some("eduPersonPrincipalName".into());
    let map: BTreeMap<String, String> = [("Prof. O'Hara \\ <Dean>", "faculty & \"staff\"")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    vec![
        eppn,
        rule(
            "aff",
            AFF,
            &["urn:x:role"],
            vec![Op::ValueMap {
                map,
                keep_unmapped: false,
            }],
        ),
        rule(
            "mail",
            "urn:oid:0.9.2342.19200300.100.1.3",
            &[EPPN],
            vec![Op::RegexReplace {
                pattern: "@old/domain]]>$".into(),
                replacement: "@new.example".into(),
            }],
        ),
        rule(
            "const",
            "urn:x:c",
            &[UID],
            vec![Op::Constant {
                values: vec!["it's".into()],
            }],
        ),
    ]
}

const SCOPES: &[&str] = &["example.org"];

fn scopes() -> Vec<String> {
    SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn simplesamlphp_filters_are_exact_and_escaped() {
    let rules = sample();
    let refs: Vec<&Rule> = rules.iter().collect();
    let names: BTreeMap<String, String> = [(UID.to_owned(), "uid".to_owned())].into();
    let scopes = scopes();
    let out = Output::new(&names, &scopes).priorities(60..=69);
    let php = simplesamlphp::authproc(&refs, &out).unwrap();
    let expected = r#"<?php
// DAME conversion rules (generated; review before use)
return [
    // DAME conversion rule eppn
    60 => ['class' => 'core:AttributeCopy', 'uid' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6'],
    61 => ['class' => 'core:AttributeAlter', '%remove', 'subject' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6', 'pattern' => '/@|\\A\\z/u'],
    62 => ['class' => 'core:AttributeAlter', 'subject' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6', 'pattern' => '/\\z/u', 'replacement' => '@example.org'],
    // DAME conversion rule aff
    63 => ['class' => 'core:AttributeValueMap', '%keep', 'sourceattribute' => 'urn:x:role', 'targetattribute' => 'urn:oid:1.3.6.1.4.1.5923.1.1.1.1', 'values' => ['faculty & "staff"' => ['Prof. O\'Hara \\ <Dean>']]],
    // DAME conversion rule mail
    64 => ['class' => 'core:AttributeCopy', 'urn:oid:1.3.6.1.4.1.5923.1.1.1.6' => 'urn:oid:0.9.2342.19200300.100.1.3'],
    65 => ['class' => 'core:AttributeAlter', 'subject' => 'urn:oid:0.9.2342.19200300.100.1.3', 'pattern' => '/@old\\/domain]]>$/uD', 'replacement' => '@new.example'],
    // DAME conversion rule const
    66 => ['class' => 'core:AttributeAdd', '%replace', 'urn:x:c' => ['it\'s']],
];
"#;
    assert_eq!(php, expected);
    // No stock filter: refused, not approximated.
    let lower = rule("lower", UID, &[UID], vec![Op::Lowercase]);
    let e = simplesamlphp::authproc(&[&lower], &out).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    // More filters than the priorities number: refused.
    let e = simplesamlphp::authproc(&refs, &Output::new(&names, &scopes).priorities(60..=65))
        .unwrap_err();
    assert!(e.to_string().contains("priorities"), "{e}");
    // The default numbers before core:AttributeLimit (50).
    assert_eq!(Output::new(&names, &scopes).priorities, 40..=49);
    // Names PHP would make integer keys, or options of the filter: refused (review L3).
    for bad in ["123", "class", "%priority"] {
        let r = rule("k", bad, &[UID], vec![]);
        assert!(simplesamlphp::authproc(&[&r], &out).is_err(), "{bad}");
    }
}

/// The generated filters, run by SimpleSAMLphp's own classes on two users, give what the
/// evaluator gives: conversion review H1 (the documented `${name}` stayed a literal in PHP:
/// every user got one eppn), H2 (a value with a scope of its own passed), M1 (an escaped `/`
/// broke the pattern: the target emptied for every user) and M5 (the file was not PHP: a value
/// `<?php … ?>` ran when it was included). Needs PHP and SimpleSAMLphp (`bash
/// scripts/setup.sh`).
#[test]
fn simplesamlphp_filters_do_what_the_evaluator_does() {
    let rules = RuleSet::from_json(
        br#"{"rules": [
        {"id": "eppn", "target": {"name": "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"},
         "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
         "ops": [{"op": "scope_add", "scope": "example.org"}]},
        {"id": "mail", "target": {"name": "urn:oid:0.9.2342.19200300.100.1.3"},
         "sources": ["urn:x:login"],
         "ops": [{"op": "regex_replace", "pattern": "^(?<user>[^@]+)@old\\.example$",
                  "replacement": "${user}@new.example$$ C:\\"}]},
        {"id": "path", "target": {"name": "urn:x:path"}, "sources": ["urn:x:path-in"],
         "ops": [{"op": "regex_replace", "pattern": "^a\\/(b)$", "replacement": "$1/a"}]},
        {"id": "note", "target": {"name": "urn:x:note"}, "sources": ["urn:oid:0.9.2342.19200300.100.1.1"],
         "ops": [{"op": "constant", "values": ["<?php echo \"RAN\"; ?>"]}]}
    ]}"#,
    )
    .unwrap();
    let refs: Vec<&Rule> = rules.rules.iter().collect();
    let names = BTreeMap::new();
    let scopes = scopes();
    let php = simplesamlphp::authproc(&refs, &Output::new(&names, &scopes)).unwrap();
    let users = [
        attrs(&[
            (UID, &["alice", ""]),
            ("urn:x:login", &["alice@old.example"]),
            ("urn:x:path-in", &["a/b"]),
        ]),
        attrs(&[
            (UID, &["bob", "victim@victim.example"]),
            ("urn:x:login", &["bob@old.example"]),
            ("urn:x:path-in", &["a/c"]),
        ]),
    ];
    let php_bin = which("php").expect("php is needed (bash scripts/setup.sh installs it)");
    let autoload = "/usr/share/simplesamlphp/lib/_autoload.php";
    assert!(
        std::path::Path::new(autoload).exists(),
        "SimpleSAMLphp is needed at {autoload} (bash scripts/setup.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.authproc.php");
    std::fs::write(&file, &php).unwrap();
    let runner = dir.path().join("run.php");
    std::fs::write(
        &runner,
        format!(
            r#"<?php
require '{autoload}';
ob_start();
$filters = require $argv[1];
$leaked = ob_get_clean();
if ($leaked !== '') {{ fwrite(STDERR, "output while loading: $leaked"); exit(3); }}
ksort($filters);
$attributes = json_decode($argv[2], true);
$request = ['Attributes' => $attributes];
foreach ($filters as $prio => $config) {{
    [$module, $name] = explode(':', $config['class']);
    unset($config['class']);
    $class = "\\SimpleSAML\\Module\\$module\\Auth\\Process\\$name";
    (new $class($config, null))->process($request);
}}
$out = [];
foreach ($request['Attributes'] as $k => $v) {{ $out[$k] = array_values($v); }}
echo json_encode($out);
"#
        ),
    )
    .unwrap();
    for user in &users {
        let mut input = serde_json::Map::new();
        for n in user.names() {
            input.insert(n.clone(), serde_json::json!(user.get(&n).unwrap()));
        }
        let run = std::process::Command::new(&php_bin)
            .arg(&runner)
            .arg(&file)
            .arg(serde_json::Value::Object(input).to_string())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got: BTreeMap<String, Vec<String>> = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stdout)));
        for r in &rules.rules {
            let want = r.evaluate(user).unwrap();
            let have = got.get(&r.target.name).cloned().unwrap_or_default();
            assert_eq!(have, want, "rule {}", r.id);
        }
    }
    // What the evaluator gives, spelled out.
    assert_eq!(
        rules.rules[0].evaluate(&users[1]).unwrap(),
        vec!["bob@example.org"]
    );
    assert_eq!(
        rules.rules[1].evaluate(&users[0]).unwrap(),
        vec!["alice@new.example$ C:\\"]
    );
    assert_eq!(rules.rules[2].evaluate(&users[0]).unwrap(), vec!["b/a"]);
}

/// Review H2: a rule set is the broker's and shared by every IdP; a generator writes no rule
/// that adds another IdP's scope, nor one making a scoped attribute without adding the IdP's
/// own scope last.
#[test]
fn generators_write_only_the_idps_own_scopes() {
    let names: BTreeMap<String, String> = [(UID.to_owned(), "uid".to_owned())].into();
    let scopes = scopes();
    let out = Output::new(&names, &scopes);
    let other = rule(
        "eppn",
        EPPN,
        &[UID],
        vec![Op::ScopeAdd {
            scope: "idp-a.example".into(),
        }],
    );
    let constant = rule(
        "eppn",
        EPPN,
        &[UID],
        vec![Op::Constant {
            values: vec!["admin@example.org".into()],
        }],
    );
    let renamed = rule("eppn", EPPN, &[UID], vec![]);
    let ours = rule(
        "eppn",
        EPPN,
        &[UID],
        vec![Op::ScopeAdd {
            scope: "example.org".into(),
        }],
    );
    // Another spelling of the IdP's scope would be another identity at an SP comparing strings.
    let spelled = rule(
        "eppn",
        EPPN,
        &[UID],
        vec![Op::ScopeAdd {
            scope: "EXAMPLE.org".into(),
        }],
    );
    for r in [&other, &constant, &renamed, &spelled] {
        assert!(matches!(
            simplesamlphp::authproc(&[r], &out),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            shibboleth::resolver(&[r], &out),
            Err(Error::Unsupported { .. })
        ));
    }
    assert!(simplesamlphp::authproc(&[&ours], &out).is_ok());
    assert!(shibboleth::resolver(&[&ours], &out).is_ok());
    // Named by its basic name, by its friendly name, or mapped to it by the IdP's local names:
    // scoped all the same.
    let basic = rule("eppn", "eduPersonPrincipalName", &[UID], vec![]);
    let mut friendly = rule("eppn", "urn:x:login", &[UID], vec![]);
    friendly.target.friendly_name = Some("eduPersonPrincipalName".into());
    let mapped = rule("eppn", "urn:x:local-eppn", &[UID], vec![]);
    let local: BTreeMap<String, String> = [
        (UID.to_owned(), "uid".to_owned()),
        (
            "urn:x:local-eppn".to_owned(),
            "eduPersonPrincipalName".to_owned(),
        ),
    ]
    .into();
    for r in [&basic, &friendly] {
        assert!(
            simplesamlphp::authproc(&[r], &out).is_err(),
            "{}",
            r.target.name
        );
    }
    assert!(simplesamlphp::authproc(&[&mapped], &Output::new(&local, &scopes)).is_err());
    // An IdP that configured no scope writes no scoped rule at all.
    let none: Vec<String> = Vec::new();
    assert!(simplesamlphp::authproc(&[&ours], &Output::new(&names, &none)).is_err());
    // A value with a scope of its own is dropped, never passed on.
    let user = attrs(&[(UID, &["victim@victim.example", "mallory", ""])]);
    assert_eq!(ours.evaluate(&user).unwrap(), vec!["mallory@example.org"]);
    // The second review: a local name the IdP gives a scoped attribute is that attribute.
    let eppn_local: BTreeMap<String, String> = [
        (UID.to_owned(), "uid".to_owned()),
        (EPPN.to_owned(), "principal".to_owned()),
    ]
    .into();
    let forged = rule(
        "x",
        "principal",
        &[UID],
        vec![Op::Constant {
            values: vec!["victim@victim.example".into()],
        }],
    );
    let out_local = Output::new(&eppn_local, &scopes);
    assert!(simplesamlphp::authproc(&[&forged], &out_local).is_err());
    assert!(shibboleth::resolver(&[&forged], &out_local).is_err());
    for name in [
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.12",
        "urn:mace:dir:attribute-def:eduPersonUniqueId",
    ] {
        let r = rule("x", name, &[UID], vec![]);
        assert!(simplesamlphp::authproc(&[&r], &out).is_err(), "{name}");
    }
}

#[test]
fn shibboleth_resolver_is_exact_and_escaped() {
    let rules = sample();
    let refs: Vec<&Rule> = rules.iter().collect();
    let ids: BTreeMap<String, String> = [
        (UID.to_owned(), "uid".to_owned()),
        (EPPN.to_owned(), "eppn".to_owned()),
        ("urn:x:role".to_owned(), "role".to_owned()),
    ]
    .into();
    let scopes = scopes();
    let out = Output::new(&ids, &scopes);
    let xml = shibboleth::resolver(&refs, &out).unwrap();
    let expected = concat!(
        "<!-- DAME conversion rule eppn -->\n",
        "<AttributeDefinition id=\"dame_eppn\" xsi:type=\"Mapped\"><InputAttributeDefinition ref=\"uid\"/><AttributeEncoder xsi:type=\"SAML2String\" name=\"urn:oid:1.3.6.1.4.1.5923.1.1.1.6\" friendlyName=\"eduPersonPrincipalName\" encodeType=\"false\"/><ValueMap><ReturnValue>$1@example.org</ReturnValue><SourceValue partialMatch=\"true\">^([^@]+)\\z</SourceValue></ValueMap></AttributeDefinition>\n",
        "<!-- DAME conversion rule aff -->\n",
        "<AttributeDefinition id=\"dame_aff\" xsi:type=\"Mapped\"><InputAttributeDefinition ref=\"role\"/><AttributeEncoder xsi:type=\"SAML2String\" name=\"urn:oid:1.3.6.1.4.1.5923.1.1.1.1\" encodeType=\"false\"/><ValueMap><ReturnValue>faculty &amp; &quot;staff&quot;</ReturnValue><SourceValue partialMatch=\"true\">^\\QProf. O&apos;Hara \\ &lt;Dean&gt;\\E\\z</SourceValue></ValueMap></AttributeDefinition>\n",
        "<!-- DAME conversion rule mail -->\n",
        "<AttributeDefinition id=\"dame_mail\" xsi:type=\"Mapped\"><InputAttributeDefinition ref=\"eppn\"/><AttributeEncoder xsi:type=\"SAML2String\" name=\"urn:oid:0.9.2342.19200300.100.1.3\" encodeType=\"false\"/><DefaultValue passThru=\"true\"/><ValueMap><ReturnValue>@new.example</ReturnValue><SourceValue partialMatch=\"true\">@old/domain]]&gt;$</SourceValue></ValueMap></AttributeDefinition>\n",
        "<!-- DAME conversion rule const -->\n",
        "<DataConnector id=\"dame_const_static\" xsi:type=\"Static\"><Attribute id=\"dame_const\"><Value>it&apos;s</Value></Attribute></DataConnector>\n",
        "<AttributeDefinition id=\"dame_const\" xsi:type=\"Simple\"><InputDataConnector ref=\"dame_const_static\" attributeNames=\"dame_const\"/><AttributeEncoder xsi:type=\"SAML2String\" name=\"urn:x:c\" encodeType=\"false\"/></AttributeDefinition>\n",
    );
    assert_eq!(xml, expected);
    well_formed(&xml);
    // Unsupported operations and unknown sources are refused.
    let join = rule(
        "join",
        CN,
        &[UID],
        vec![Op::Join {
            separator: " ".into(),
        }],
    );
    assert!(matches!(
        shibboleth::resolver(&[&join], &out).unwrap_err(),
        Error::Unsupported { .. }
    ));
    let unknown = rule("u", CN, &["urn:x:nobody"], vec![]);
    assert!(matches!(
        shibboleth::resolver(&[&unknown], &out).unwrap_err(),
        Error::Unsupported { .. }
    ));
}

/// Review M3: definition ids were `dame_` + the rule id with `.` made `_`, and a step's
/// `_N`: `a.b` and `a_b`, or `x`'s first step and a rule `x_0`, gave one id, and so did the
/// same rule in two SPs' files. Ids are now injective, and prefixed per file.
#[test]
fn shibboleth_resolver_ids_are_distinct() {
    let ids: BTreeMap<String, String> = [(UID.to_owned(), "uid".to_owned())].into();
    let scopes = scopes();
    let strip = || Op::ScopeStrip;
    let rules = [
        rule("a.b", CN, &[UID], vec![strip()]),
        rule("a_b", CN, &[UID], vec![strip()]),
        rule("x", CN, &[UID], vec![strip(), strip()]),
        rule("x_0", CN, &[UID], vec![strip()]),
        rule("y_static", CN, &[UID], vec![]),
        rule(
            "y",
            CN,
            &[UID],
            vec![Op::Constant {
                values: vec!["v".into()],
            }],
        ),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let mut all = Vec::new();
    for prefix in ["dame-1a2b3c4d", "dame-5e6f7a8b"] {
        let xml =
            shibboleth::resolver(&refs, &Output::new(&ids, &scopes).id_prefix(prefix)).unwrap();
        well_formed(&xml);
        for part in xml
            .split("<AttributeDefinition id=\"")
            .chain(xml.split("<DataConnector id=\""))
            .filter(|p| !p.starts_with("<!--"))
        {
            all.push(part.split('"').next().unwrap().to_owned());
        }
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    assert!(shibboleth::resolver(&refs, &Output::new(&ids, &scopes).id_prefix("a b")).is_err());
}

/// Review M1, M2, M3, L4: what a rule may hold so that the generated files mean what the
/// evaluator computes and load at all.
#[test]
fn rules_refuse_what_the_products_read_otherwise() {
    let re = |pattern: &str, replacement: &str| {
        let json = serde_json::json!({"rules": [{"id": "r", "target": {"name": "urn:x:t"},
            "sources": ["urn:x:s"], "ops": [{"op": "regex_replace", "pattern": pattern,
            "replacement": replacement}]}]});
        RuleSet::from_json(json.to_string().as_bytes())
    };
    for pattern in [
        "(?-u)a",
        "(?R)a",
        "(?P<n>a)",
        "[a-z--b]",
        "\\b{start}a",
        "^(a|aa)*$",
        "(x+x+)+y",
        "^(?:[a-z]*a){12}$",
        "a\u{1}",
    ] {
        malformed(re(pattern, "x"));
    }
    assert!(re("^([^@]+)@old\\.example$", "$1").is_ok());
    // A replacement naming a group the pattern does not have.
    malformed(re("^(a)$", "$2"));
    malformed(re("^(a)$", "${user}"));
    // Text the files would show otherwise, or XML cannot hold.
    for bad in ["\u{202E}moc.elpmaxe", "a\u{FFFE}", "zero\u{200B}width"] {
        let json = serde_json::json!({"rules": [{"id": "r", "target": {"name": "urn:x:t"},
            "sources": ["urn:x:s"], "ops": [{"op": "constant", "values": [bad]}]}]});
        malformed(RuleSet::from_json(json.to_string().as_bytes()));
    }
    // `--` cannot be in a rule id (it is written into an XML comment).
    let json = serde_json::json!({"rules": [{"id": "a--b", "target": {"name": "urn:x:t"},
        "sources": ["urn:x:s"]}]});
    malformed(RuleSet::from_json(json.to_string().as_bytes()));
}

fn well_formed(xml: &str) {
    let doc = format!(
        "<AttributeResolver xmlns=\"urn:mace:shibboleth:2.0:resolver\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">{xml}</AttributeResolver>"
    );
    let mut reader = quick_xml::Reader::from_str(&doc);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed: {e}"),
        }
    }
}

fn which(p: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}

/// Review L1: the rules answer is signed by the broker over the IdP's question and the body,
/// and checked with the broker key the agent pins; TLS with the system's roots was all that
/// vouched for what becomes the IdP's configuration.
#[test]
fn a_rules_answer_is_signed_over_the_question_and_the_body() {
    use dame_protocol::conversion::{sign_answer, verify_answer};
    let broker = testkit::signer::TestKey::rsa("broker");
    let other = testkit::signer::TestKey::rsa("other");
    let query = "action=rules&sp=https%3A%2F%2Fsp.example.org%2F&have=urn%3Ax%3Auid";
    let body = br#"{"rules": []}"#;
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let sig = sign_answer(query, body, &broker.signing(), now).unwrap();
    assert!(verify_answer(query, body, Some(&sig), &broker.trusted(), now).is_ok());
    let refusal = |r: Result<(), Error>| match r {
        Err(Error::Refused(x)) => x,
        other => panic!("{other:?}"),
    };
    use dame_protocol::Refusal;
    // Unsigned, another body, another SP's question, another key.
    assert_eq!(
        refusal(verify_answer(query, body, None, &broker.trusted(), now)),
        Refusal::Unsigned
    );
    assert_eq!(
        refusal(verify_answer(
            query,
            br#"{"rules": [ ]}"#,
            Some(&sig),
            &broker.trusted(),
            now
        )),
        Refusal::BadSignature
    );
    assert_eq!(
        refusal(verify_answer(
            &query.replace("sp.example", "sp2.example"),
            body,
            Some(&sig),
            &broker.trusted(),
            now
        )),
        Refusal::BadSignature
    );
    assert_eq!(
        refusal(verify_answer(
            query,
            body,
            Some(&sig),
            &other.trusted(),
            now
        )),
        Refusal::BadSignature
    );
    malformed(verify_answer(
        query,
        body,
        Some("Signature=x&SigAlg=y"),
        &broker.trusted(),
        now,
    ));
    // An answer made too long ago (an older one replayed), or ahead of the clock: refused.
    let later = now + std::time::Duration::from_secs(600);
    assert_eq!(
        refusal(verify_answer(
            query,
            body,
            Some(&sig),
            &broker.trusted(),
            later
        )),
        Refusal::Stale
    );
    let earlier = now - std::time::Duration::from_secs(600);
    assert_eq!(
        refusal(verify_answer(
            query,
            body,
            Some(&sig),
            &broker.trusted(),
            earlier
        )),
        Refusal::FromFuture
    );
}
