//! Confluent's JSON Schema compatibility rules, case by case.
//!
//! `tests/compat/cases.json` holds the cases, in the shape of Confluent's
//! own `diff-schema-examples.json`: an original and an updated schema, the
//! strict BACKWARD verdict (`compatible`), the lenient one
//! (`compatible_lenient`) and, where given, the strict FORWARD one
//! (`forward`). Every verdict was written from the rules, case by case, not
//! taken from this checker's output. The test lists every case that
//! disagrees, then fails.

use std::collections::BTreeMap;

use ecst_schema::compat::{
    check, check_history, check_with, DifferenceKind, Direction, Mode, Policy, SchemaErrorReason,
};
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
struct Case {
    description: String,
    category: String,
    original_schema: Value,
    update_schema: Value,
    compatible: bool,
    compatible_lenient: bool,
    forward: Option<bool>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("compat/cases.json");
    match serde_json::from_str(text) {
        Ok(cases) => cases,
        Err(e) => panic!("tests/compat/cases.json: {e}"),
    }
}

#[test]
fn every_case_gets_the_verdict_the_rules_give() {
    let cases = cases();
    let mut mismatches = Vec::new();
    for case in &cases {
        let mut checks = vec![
            (
                "BACKWARD strict",
                Mode::Backward,
                Policy::Strict,
                case.compatible,
            ),
            (
                "BACKWARD lenient",
                Mode::Backward,
                Policy::Lenient,
                case.compatible_lenient,
            ),
        ];
        if let Some(forward) = case.forward {
            checks.push(("FORWARD strict", Mode::Forward, Policy::Strict, forward));
        }
        for (label, mode, policy, expected) in checks {
            match check_with(&case.original_schema, &case.update_schema, mode, policy) {
                Ok(report) if report.is_compatible() == expected => {}
                Ok(report) => {
                    let found: Vec<String> = report
                        .differences()
                        .iter()
                        .map(|d| {
                            format!(
                                "      {} {} {:?} compatible={}",
                                d.direction, d.path, d.kind, d.compatible
                            )
                        })
                        .collect();
                    mismatches.push(format!(
                        "[{}] {} — {label}: expected {}, got {}\n{}",
                        case.category,
                        case.description,
                        if expected {
                            "compatible"
                        } else {
                            "incompatible"
                        },
                        if expected {
                            "incompatible"
                        } else {
                            "compatible"
                        },
                        found.join("\n")
                    ));
                }
                Err(e) => mismatches.push(format!(
                    "[{}] {} — {label}: error {e}",
                    case.category, case.description
                )),
            }
        }
    }
    for mismatch in &mismatches {
        eprintln!("{mismatch}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases disagree (listed above)",
        mismatches.len(),
        cases.len()
    );
}

#[test]
fn the_table_covers_every_category() {
    let cases = cases();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        *per_category.entry(case.category.as_str()).or_default() += 1;
    }
    for category in [
        "content-model",
        "required",
        "defaults",
        "type",
        "enum",
        "numeric-bounds",
        "string-bounds",
        "array",
        "combinators",
        "refs",
        "metadata",
        "const",
        "not",
        "unsupported",
    ] {
        let count = per_category.get(category).copied().unwrap_or(0);
        assert!(
            count >= 5,
            "category {category} has {count} cases: {per_category:?}"
        );
    }
    assert!(cases.len() >= 70, "{} cases", cases.len());
    assert!(cases.iter().filter(|c| c.forward.is_some()).count() >= 70);
    // Both verdicts occur, and the lenient policy flips some.
    assert!(cases.iter().any(|c| c.compatible) && cases.iter().any(|c| !c.compatible));
    assert!(cases.iter().any(|c| c.compatible != c.compatible_lenient));
}

#[test]
fn full_is_backward_and_forward() {
    for case in cases() {
        let Some(forward) = case.forward else {
            continue;
        };
        let full = check(&case.original_schema, &case.update_schema, Mode::Full).unwrap();
        assert_eq!(
            full.is_compatible(),
            case.compatible && forward,
            "{}",
            case.description
        );
        let directions: Vec<Direction> = full.differences().iter().map(|d| d.direction).collect();
        let backward_count = directions
            .iter()
            .filter(|d| **d == Direction::Backward)
            .count();
        assert!(
            directions[..backward_count]
                .iter()
                .all(|d| *d == Direction::Backward),
            "backward differences come first: {}",
            case.description
        );
    }
}

/// Three versions where each step is compatible under the lenient policy
/// but the last cannot read the first's data: `a` is dropped from a closed
/// model (v1 is open, so fine), then comes back with another type (adding a
/// property to an open model is what the lenient policy accepts). Only the
/// transitive check sees v0's string `a` meet v2's integer `a`.
fn drifting_property() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
        json!({"type": "object", "properties": {}}),
        json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
    ]
}

#[test]
fn backward_transitive_checks_against_every_earlier_version() {
    let history = drifting_property();
    let adjacent = check_history(&history, Mode::Backward, Policy::Lenient).unwrap();
    assert!(adjacent.is_compatible(), "{adjacent}");
    assert_eq!(adjacent.compared_against(), &[1]);

    let transitive = check_history(&history, Mode::BackwardTransitive, Policy::Lenient).unwrap();
    assert!(!transitive.is_compatible());
    assert_eq!(transitive.compared_against(), &[0, 1]);
    let broken: Vec<_> = transitive.incompatibilities().collect();
    assert_eq!(broken.len(), 1, "{transitive}");
    assert_eq!(broken[0].against, 0);
    assert_eq!(broken[0].path, "#/properties/a");
    assert_eq!(broken[0].kind, DifferenceKind::TypeChanged);
    assert!(
        transitive
            .to_string()
            .starts_with("against version 0: #/properties/a: type changed"),
        "{transitive}"
    );

    // For a single pair, a transitive mode is its plain mode.
    for (transitive, plain) in [
        (Mode::BackwardTransitive, Mode::Backward),
        (Mode::ForwardTransitive, Mode::Forward),
        (Mode::FullTransitive, Mode::Full),
    ] {
        let a = check_with(&history[0], &history[2], transitive, Policy::Lenient).unwrap();
        let b = check_with(&history[0], &history[2], plain, Policy::Lenient).unwrap();
        assert_eq!(a.differences(), b.differences());
    }
}

/// The forward counterpart: v0 reads `b` as a string, v1 drops it (an old
/// reader ignores it), v2 writes it as an integer. v1 reads v2's data, v0
/// does not.
#[test]
fn forward_and_full_transitive_check_against_every_earlier_version() {
    let history = vec![
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "additionalProperties": false}),
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}),
    ];
    for (transitive, plain) in [
        (Mode::ForwardTransitive, Mode::Forward),
        (Mode::FullTransitive, Mode::Full),
    ] {
        let adjacent = check_history(&history, plain, Policy::Lenient).unwrap();
        assert!(adjacent.is_compatible(), "{plain}: {adjacent}");
        let report = check_history(&history, transitive, Policy::Lenient).unwrap();
        assert!(!report.is_compatible(), "{transitive}");
        assert!(
            report.incompatibilities().all(|d| d.against == 0),
            "{report}"
        );
        assert!(report
            .incompatibilities()
            .any(|d| d.direction == Direction::Forward && d.path == "#/properties/b"));
    }
    // Under the strict policy even the adjacent step fails: v1 is open, so
    // v2's `b` may clash with what v1's writers put there.
    assert!(!check_history(&history, Mode::Full, Policy::Strict)
        .unwrap()
        .is_compatible());
}

#[test]
fn short_histories_and_none_are_compatible() {
    let one = vec![json!({"type": "string"})];
    assert!(check_history(&one, Mode::FullTransitive, Policy::Strict)
        .unwrap()
        .is_compatible());
    assert!(check_history(&[], Mode::Backward, Policy::Strict)
        .unwrap()
        .is_compatible());
    let report = check(
        &json!({"type": "string"}),
        &json!({"type": "integer"}),
        Mode::None,
    )
    .unwrap();
    assert!(report.is_compatible() && report.differences().is_empty());
    assert!(report.compared_against().is_empty());
}

#[test]
fn recursive_types_are_compared_without_looping() {
    // A linked list whose node refers to itself, through `#` and `$defs`,
    // on both sides; the change sits two levels down.
    let list = |value: &str| {
        json!({
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "value": {"type": value},
                        "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                        "tree": {"type": "array", "items": {"$ref": "#"}}
                    },
                    "required": ["value"]
                }
            }
        })
    };
    let report = check(&list("integer"), &list("number"), Mode::Full).unwrap();
    assert!(!report.is_compatible());
    let kinds: Vec<(&str, &DifferenceKind, Direction)> = report
        .differences()
        .iter()
        .map(|d| (d.path.as_str(), &d.kind, d.direction))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "#/properties/value",
                &DifferenceKind::TypeExtended,
                Direction::Backward
            ),
            (
                "#/properties/value",
                &DifferenceKind::TypeNarrowed,
                Direction::Forward
            ),
        ]
    );
    assert!(
        check(&list("integer"), &list("integer"), Mode::FullTransitive)
            .unwrap()
            .differences()
            .is_empty()
    );
}

#[test]
fn a_ref_cycle_that_never_reaches_a_schema_is_an_error() {
    let looping = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}});
    let fine = json!({"type": "string"});
    let err = check(&fine, &looping, Mode::Backward).unwrap_err();
    assert_eq!(err.version, 1);
    assert_eq!(err.path, "#/$ref");
    match &err.reason {
        SchemaErrorReason::RefCycle { chain } => {
            assert_eq!(chain, &["#/$defs/A", "#/$defs/B", "#/$defs/A"]);
        }
        other => panic!("{other:?}"),
    }
    // A loop through allOf never reaches a property either.
    let through_all_of =
        json!({"$ref": "#/$defs/A", "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}});
    let err = check(&through_all_of, &json!({"type": "object"}), Mode::Backward).unwrap_err();
    assert!(
        matches!(err.reason, SchemaErrorReason::TooDeep { .. }),
        "{err}"
    );
}

#[test]
fn a_missing_ref_target_is_an_error_naming_the_pointer() {
    let old = json!({"type": "object", "properties": {"home": {"$ref": "#/$defs/Address"}}, "$defs": {"Address": {"type": "object"}}});
    let new = json!({"type": "object", "properties": {"home": {"$ref": "#/$defs/Adress"}}, "$defs": {"Address": {"type": "object"}}});
    let err = check(&old, &new, Mode::Backward).unwrap_err();
    assert_eq!(err.version, 1);
    assert_eq!(err.path, "#/properties/home/$ref");
    assert_eq!(
        err.reason,
        SchemaErrorReason::MissingRefTarget {
            reference: "#/$defs/Adress".to_owned()
        }
    );
    assert!(err.to_string().contains("#/$defs/Adress"), "{err}");
    // Forward, the same schema is the writer: still version 1.
    assert_eq!(check(&old, &new, Mode::Forward).unwrap_err().version, 1);
}

#[test]
fn malformed_schemas_are_errors_not_panics() {
    for (schema, path) in [
        (json!("string"), "#"),
        (json!({"properties": {"a": 5}}), "#/properties/a"),
        (json!({"type": "object", "required": "a"}), "#/required"),
        (json!({"type": 3}), "#/type"),
        (json!({"anyOf": {"type": "string"}}), "#/anyOf"),
        (json!({"type": "array", "items": [1]}), "#/items/0"),
        (json!({"$ref": "https://example.com/other.json"}), "#/$ref"),
        (json!({"type": "number", "maximum": "10"}), "#/maximum"),
    ] {
        let err = check(&json!({}), &schema, Mode::Full).unwrap_err();
        assert_eq!(err.path, path, "{schema}: {err}");
    }
}

#[test]
fn a_changed_unsupported_keyword_is_never_compatible() {
    let old = json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]}});
    let new = json!({"type": "object", "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["y"]}});
    for mode in [Mode::Backward, Mode::Forward, Mode::Full] {
        for policy in [Policy::Strict, Policy::Lenient] {
            let report = check_with(&old, &new, mode, policy).unwrap();
            assert!(!report.is_compatible());
            assert!(report.incompatibilities().all(|d| d.kind
                == DifferenceKind::Unsupported {
                    keyword: "then".into()
                }));
        }
    }
    let text = check(&old, &new, Mode::Backward).unwrap().to_string();
    assert!(
        text.starts_with("#/then: unsupported keyword `then` changed:"),
        "{text}"
    );
    assert!(check(&old, &old, Mode::Full)
        .unwrap()
        .differences()
        .is_empty());
}

#[test]
fn the_report_prints_one_line_per_incompatible_difference() {
    let old = json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 10}, "n": {"type": "integer"}}});
    let new = json!({"type": "object", "title": "T", "properties": {
        "a": {"type": "string", "maxLength": 5},
        "n": {"type": "number"},
        "email": {"type": "string"}
    }});
    let report = check(&old, &new, Mode::Backward).unwrap();
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("#/properties/a/maxLength: maxLength lowered: "),
        "{text}"
    );
    assert!(
        lines[0].contains("reader using the new schema rejects"),
        "{text}"
    );
    assert!(
        lines[1]
            .starts_with("#/properties/email: optional property added to an open content model: "),
        "{text}"
    );
    // The compatible ones are in the report, not in the text.
    assert!(report
        .differences()
        .iter()
        .any(|d| d.kind == DifferenceKind::TitleChanged && d.compatible));
    assert!(report
        .differences()
        .iter()
        .any(|d| d.kind == DifferenceKind::TypeExtended && d.path == "#/properties/n"));
    assert_eq!(report.mode(), Mode::Backward);
    assert_eq!(report.policy(), Policy::Strict);
    assert_eq!(
        check(&old, &old, Mode::Full).unwrap().to_string(),
        "compatible (FULL, STRICT)"
    );
}

#[test]
fn absurd_nesting_is_an_error_not_a_stack_overflow() {
    fn nested(depth: usize, leaf: &str) -> Value {
        let mut schema = json!({"type": leaf});
        for _ in 0..depth {
            schema = json!({"type": "object", "properties": {"x": {"anyOf": [schema, {"type": "null"}]}}});
        }
        schema
    }
    // Twelve levels of `Option<Nested>`: fine.
    let report = check(&nested(12, "integer"), &nested(12, "number"), Mode::Full).unwrap();
    assert_eq!(report.incompatibilities().count(), 1);
    // Hundreds: refused.
    let err = check(
        &nested(300, "integer"),
        &nested(300, "number"),
        Mode::Backward,
    )
    .unwrap_err();
    assert!(
        matches!(err.reason, SchemaErrorReason::TooDeep { .. }),
        "{err}"
    );

    // A chain of 300 distinct definitions, each a property of the previous.
    let mut defs = serde_json::Map::new();
    for i in 0..300 {
        defs.insert(
            format!("d{i}"),
            json!({"type": "object", "properties": {"n": {"$ref": format!("#/$defs/d{}", i + 1)}}}),
        );
    }
    defs.insert("d300".into(), json!({"type": "integer"}));
    let chain = json!({"$ref": "#/$defs/d0", "$defs": defs});
    let err = check(&chain, &chain, Mode::Full).unwrap_err();
    assert!(
        matches!(err.reason, SchemaErrorReason::TooDeep { .. }),
        "{err}"
    );
}

/// Runs `f` on a thread with the 2 MiB stack `cargo test` gives its
/// threads (and most programs give theirs), whatever RUST_MIN_STACK says.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

/// `{"$ref": "#/$defs/d0"}` with `d0` -> `d1` -> ... -> `d{links - 1}`, a
/// string, and `extra` beside the definitions.
fn ref_chain(links: usize, extra: serde_json::Map<String, Value>) -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..links - 1 {
        defs.insert(
            format!("d{i}"),
            json!({"$ref": format!("#/$defs/d{}", i + 1)}),
        );
    }
    defs.insert(format!("d{}", links - 1), json!({"type": "string"}));
    let mut schema = extra;
    schema.insert("$defs".into(), Value::Object(defs));
    Value::Object(schema)
}

#[test]
fn long_ref_chains_are_followed_in_a_loop_or_refused() {
    on_small_stack(|| {
        let root = |links| {
            let mut top = serde_json::Map::new();
            top.insert("$ref".into(), json!("#/$defs/d0"));
            ref_chain(links, top)
        };
        // A few hundred links: followed.
        let fine = root(500);
        assert!(check(&fine, &fine, Mode::Full).unwrap().is_compatible());
        // 50,000 links overflowed the stack; now a typed error.
        let long = root(50_000);
        let err = check(&long, &long, Mode::Full).unwrap_err();
        assert_eq!(err.path, "#/$ref");
        assert!(
            matches!(err.reason, SchemaErrorReason::RefChainTooLong { .. }),
            "{err}"
        );
    });
}

#[test]
fn an_unknown_keyword_pointing_into_a_long_chain_compares_in_a_loop() {
    on_small_stack(|| {
        let schema = |leaf: &str| {
            let mut top = serde_json::Map::new();
            top.insert("type".into(), json!("object"));
            top.insert("x-extra".into(), json!({"$ref": "#/$defs/d0"}));
            let mut schema = ref_chain(50_000, top);
            schema["$defs"]["d49999"] = json!({"type": leaf});
            schema
        };
        let (a, b) = (schema("string"), schema("integer"));
        assert!(check(&a, &a, Mode::Full).unwrap().is_compatible());
        let report = check(&a, &b, Mode::Backward).unwrap();
        assert!(!report.is_compatible());
        assert!(report.incompatibilities().all(|d| d.kind
            == DifferenceKind::Unsupported {
                keyword: "x-extra".into()
            }));
    });
}

#[test]
fn many_uses_of_one_chain_resolve_it_once() {
    // 200 properties pointing into a chain, a description beside every
    // link: resolved once, not once per property (that took 20 s at
    // 5,000 links).
    let schema = |leaf: &str| {
        let mut props = serde_json::Map::new();
        for i in 0..200 {
            props.insert(
                format!("p{i}"),
                json!({"$ref": format!("#/$defs/d{}", i % 50)}),
            );
        }
        let mut defs = serde_json::Map::new();
        for i in 0..900 {
            defs.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i + 1), "description": format!("link {i}")}),
            );
        }
        defs.insert("d900".into(), json!({"type": leaf}));
        json!({"type": "object", "properties": props, "$defs": defs})
    };
    let (a, b) = (schema("integer"), schema("number"));
    let started = std::time::Instant::now();
    assert!(check(&a, &a, Mode::Full).unwrap().is_compatible());
    let report = check(&a, &b, Mode::Full).unwrap();
    assert_eq!(report.incompatibilities().count(), 200, "{report}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // 5,000 links: refused at once.
    let mut long = schema("integer");
    for i in 900..5_000 {
        long["$defs"][format!("d{i}")] = json!({"$ref": format!("#/$defs/d{}", i + 1)});
    }
    long["$defs"]["d5000"] = json!({"type": "integer"});
    let err = check(&long, &long, Mode::Full).unwrap_err();
    assert!(
        matches!(err.reason, SchemaErrorReason::RefChainTooLong { .. }),
        "{err}"
    );
}

#[test]
fn a_very_long_property_name_against_a_pattern_needs_no_stack() {
    on_small_stack(|| {
        let name = "a".repeat(50_000);
        let old = json!({"type": "object", "properties": {name.clone(): {"type": "string"}}});
        let new = json!({"type": "object", "properties": {name.clone(): {"type": "string"}},
            "patternProperties": {"^a+$": {"type": "string"}, "^(a|b)*c": {"type": "integer"}}});
        let report = check(&old, &new, Mode::Backward).unwrap();
        // The new patterns apply to the old property: `^a+$` fits, the
        // other does not match it. Adding patterns to an open model is
        // what the strict policy refuses.
        assert!(report
            .incompatibilities()
            .all(|d| d.kind == DifferenceKind::PatternPropertyAddedToOpenContentModel));
        assert!(check(&new, &new, Mode::Full).unwrap().is_compatible());
    });
}

#[test]
fn an_overlapping_one_of_is_reported_and_explained() {
    let old = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
    let new = json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "number"}]});
    let report = check(&old, &new, Mode::Backward).unwrap();
    let broken: Vec<_> = report.incompatibilities().collect();
    assert_eq!(broken.len(), 1, "{report}");
    assert_eq!(broken[0].path, "#/oneOf");
    assert_eq!(broken[0].kind, DifferenceKind::OneOfAlternativesOverlap);
    assert_eq!(
        broken[0].kind.confluent_name(),
        "ONE_OF_ALTERNATIVES_OVERLAP"
    );
    assert!(
        broken[0].explanation.contains("alternatives 1 and 2"),
        "{}",
        broken[0].explanation
    );
    // Confluent's verdict under the lenient policy: reported, compatible.
    let lenient = check_with(&old, &new, Mode::Backward, Policy::Lenient).unwrap();
    assert!(lenient.is_compatible());
    assert!(lenient
        .differences()
        .iter()
        .any(|d| d.kind == DifferenceKind::OneOfAlternativesOverlap));
}

#[test]
fn exact_numbers_name_the_values_as_written() {
    let old = json!({"type": "integer", "maximum": 9_007_199_254_740_993_u64});
    let new = json!({"type": "integer", "maximum": 9_007_199_254_740_992_u64});
    let text = check(&old, &new, Mode::Backward).unwrap().to_string();
    assert!(
        text.contains("(9007199254740993 -> 9007199254740992)"),
        "{text}"
    );
    // multipleOf must be above zero.
    let err = check(
        &json!({}),
        &json!({"type": "number", "multipleOf": 0}),
        Mode::Full,
    )
    .unwrap_err();
    assert_eq!(err.path, "#/multipleOf");
}
