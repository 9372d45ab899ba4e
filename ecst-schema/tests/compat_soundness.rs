//! Soundness of the checker against an independent validator.
//!
//! Random pairs of related schemas (both derived from one random schema by
//! random edits: bounds moved, keywords dropped or added, types widened,
//! alternatives added, properties added or removed), random instances
//! valid under the writer's schema (built from the schema, plus random JSON,
//! kept only if the `jsonschema` crate accepts them), and the claim checked:
//! whenever the checker says a BACKWARD change is compatible under the
//! strict policy, the `jsonschema` crate accepts every such instance under
//! the reader's schema. (The lenient policy is unsound by design: it trusts
//! writers not to write undeclared properties.)
//!
//! The generator stays inside what both sides evaluate exactly: numbers are
//! integers, halves and quarters (the validator divides floats), patterns
//! are a few fixed ones. `ECST_PROPTEST_CASES` sets the number of pairs
//! (default 256).

use ecst_schema::compat::{check, Mode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// A small deterministic generator, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NAMES: [&str; 6] = ["a", "b", "c", "x1", "x2", "kind"];
const PATTERNS: [&str; 3] = ["^x", "^[a-c]$", "1$"];
const TYPES: [&str; 7] = [
    "integer", "number", "string", "boolean", "null", "object", "array",
];

fn number(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => json!(9_007_199_254_740_993_u64),
        1 => json!(9_007_199_254_740_992_u64),
        2 => json!(-3),
        3 => json!(0.5),
        4 => json!(2.25),
        _ => json!(rng.below(12) as i64 - 2),
    }
}

fn multiple(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(1),
        json!(2),
        json!(3),
        json!(4),
        json!(6),
        json!(0.5),
        json!(0.25),
    ])
    .clone()
}

fn scalar(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(null),
        1 => json!(rng.chance(50)),
        2 => number(rng),
        3 => json!(*rng.pick(&["", "a", "x1", "abc", "kind"])),
        4 => json!(rng.below(5)),
        _ => json!(*rng.pick(&NAMES)),
    }
}

/// A random schema, `depth` levels deep at most.
fn schema(rng: &mut Rng, depth: usize) -> Value {
    if depth == 0 || rng.chance(30) {
        return leaf(rng);
    }
    match rng.below(10) {
        0..=3 => object(rng, depth),
        4 => json!({"type": "array", "items": schema(rng, depth - 1)}),
        5 => {
            let keyword = *rng.pick(&["anyOf", "oneOf", "allOf"]);
            let n = 1 + rng.below(3);
            let parts: Vec<Value> = (0..n).map(|_| schema(rng, depth - 1)).collect();
            json!({ keyword: parts })
        }
        6 => json!({"$ref": "#/$defs/D"}),
        7 => json!({"not": leaf(rng)}),
        _ => leaf(rng),
    }
}

fn object(rng: &mut Rng, depth: usize) -> Value {
    let mut props = Map::new();
    for name in NAMES {
        if rng.chance(35) {
            props.insert(name.to_owned(), schema(rng, depth - 1));
        }
    }
    let mut out = json!({"type": "object", "properties": props});
    let required: Vec<&str> = NAMES.iter().copied().filter(|_| rng.chance(20)).collect();
    if !required.is_empty() {
        out["required"] = json!(required);
    }
    match rng.below(5) {
        0 => out["additionalProperties"] = json!(false),
        1 => out["additionalProperties"] = leaf(rng),
        _ => {}
    }
    if rng.chance(15) {
        out["patternProperties"] = json!({ *rng.pick(&PATTERNS): leaf(rng) });
    }
    out
}

fn leaf(rng: &mut Rng) -> Value {
    let mut out = Map::new();
    let ty = *rng.pick(&TYPES);
    if rng.chance(15) {
        out.insert("type".into(), json!([ty, *rng.pick(&TYPES)]));
    } else if rng.chance(90) {
        out.insert("type".into(), json!(ty));
    }
    match ty {
        "integer" | "number" => {
            for keyword in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
                if rng.chance(20) {
                    out.insert(keyword.into(), number(rng));
                }
            }
            if rng.chance(25) {
                out.insert("multipleOf".into(), multiple(rng));
            }
        }
        "string" => {
            for keyword in ["minLength", "maxLength"] {
                if rng.chance(25) {
                    out.insert(keyword.into(), json!(rng.below(4)));
                }
            }
        }
        "array" => {
            for keyword in ["minItems", "maxItems"] {
                if rng.chance(25) {
                    out.insert(keyword.into(), json!(rng.below(4)));
                }
            }
            if rng.chance(20) {
                out.insert("uniqueItems".into(), json!(true));
            }
        }
        "object" => {
            for keyword in ["minProperties", "maxProperties"] {
                if rng.chance(25) {
                    out.insert(keyword.into(), json!(rng.below(4)));
                }
            }
        }
        _ => {}
    }
    if rng.chance(10) {
        let values: Vec<Value> = (0..1 + rng.below(3)).map(|_| scalar(rng)).collect();
        out.insert("enum".into(), json!(values));
    } else if rng.chance(5) {
        out.insert("const".into(), scalar(rng));
    }
    Value::Object(out)
}

/// One random edit somewhere in `schema`.
fn edit(rng: &mut Rng, schema: &mut Value, depth: usize) {
    let Some(map) = schema.as_object_mut() else {
        if rng.chance(50) {
            *schema = leaf(rng);
        }
        return;
    };
    // Descend into a sub-schema now and then.
    let children: Vec<String> = ["items", "not", "additionalProperties"]
        .into_iter()
        .filter(|k| map.get(*k).is_some_and(Value::is_object))
        .map(str::to_owned)
        .collect();
    if depth > 0 && rng.chance(50) {
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            if !props.is_empty() {
                let i = rng.below(props.len());
                if let Some((_, child)) = props.iter_mut().nth(i) {
                    return edit(rng, child, depth - 1);
                }
            }
        }
        for keyword in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(parts)) = map.get_mut(keyword) {
                if !parts.is_empty() {
                    let i = rng.below(parts.len());
                    return edit(rng, &mut parts[i], depth - 1);
                }
            }
        }
        if !children.is_empty() {
            let key = rng.pick(&children).clone();
            if let Some(child) = map.get_mut(&key) {
                return edit(rng, child, depth - 1);
            }
        }
    }
    match rng.below(9) {
        0 if !map.is_empty() => {
            // Drop a keyword.
            let i = rng.below(map.len());
            if let Some(key) = map.keys().nth(i).cloned() {
                map.remove(&key);
            }
        }
        1 => {
            // Move or add a bound.
            let keyword = *rng.pick(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "minProperties",
                "maxProperties",
            ]);
            let value = if keyword.contains("imum") {
                number(rng)
            } else {
                json!(rng.below(4))
            };
            map.insert(keyword.into(), value);
        }
        2 => {
            map.insert("multipleOf".into(), multiple(rng));
        }
        3 => {
            // Widen or change the type.
            let ty = *rng.pick(&TYPES);
            let new = match map.get("type") {
                Some(Value::String(old)) if rng.chance(60) => json!([old, ty]),
                _ => json!(ty),
            };
            map.insert("type".into(), new);
        }
        4 => {
            // Another alternative.
            let keyword = *rng.pick(&["anyOf", "oneOf"]);
            match map.get_mut(keyword) {
                Some(Value::Array(parts)) => parts.push(leaf(rng)),
                _ => {
                    let current = Value::Object(std::mem::take(map));
                    map.insert(keyword.into(), json!([current, leaf(rng)]));
                }
            }
        }
        5 => {
            // A property added, required or not.
            let name = *rng.pick(&NAMES);
            let props = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(props) = props.as_object_mut() {
                props.insert(name.into(), leaf(rng));
            }
            if rng.chance(30) {
                map.insert("required".into(), json!([name]));
            }
        }
        6 => {
            let value = rng
                .pick(&[json!(false), json!(true), json!({"type": "string"})])
                .clone();
            map.insert("additionalProperties".into(), value);
        }
        7 => {
            let values: Vec<Value> = (0..1 + rng.below(3)).map(|_| scalar(rng)).collect();
            map.insert("enum".into(), json!(values));
        }
        _ => {
            map.insert("uniqueItems".into(), json!(rng.chance(50)));
        }
    }
}

/// `schema` with `$defs/D` (what `{"$ref": "#/$defs/D"}` names).
fn document(rng: &mut Rng, mut schema: Value, def: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.insert("$defs".into(), json!({ "D": def }));
        return schema;
    }
    let _ = rng;
    json!({"allOf": [schema], "$defs": {"D": def}})
}

/// A value built to fit `schema` (often it does not: the validator
/// decides), or random JSON.
fn instance(rng: &mut Rng, schema: &Value, root: &Value, depth: usize) -> Value {
    if depth == 0 || rng.chance(10) {
        return random_json(rng, 2);
    }
    let Some(map) = schema.as_object() else {
        return random_json(rng, 2);
    };
    if let Some(Value::String(reference)) = map.get("$ref") {
        let target = root.pointer(reference.trim_start_matches('#')).cloned();
        return match target {
            Some(target) => instance(rng, &target, root, depth - 1),
            None => random_json(rng, 1),
        };
    }
    if let Some(value) = map.get("const") {
        return value.clone();
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        if !values.is_empty() && rng.chance(80) {
            return rng.pick(values).clone();
        }
    }
    for keyword in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(parts)) = map.get(keyword) {
            if !parts.is_empty() {
                let part = rng.pick(parts).clone();
                return instance(rng, &part, root, depth - 1);
            }
        }
    }
    let ty = match map.get("type") {
        Some(Value::String(ty)) => ty.clone(),
        Some(Value::Array(types)) if !types.is_empty() => {
            rng.pick(types).as_str().unwrap_or("null").to_owned()
        }
        _ => rng.pick(&TYPES).to_string(),
    };
    match ty.as_str() {
        "integer" | "number" => {
            let candidates: Vec<Value> = ["minimum", "maximum", "multipleOf"]
                .iter()
                .filter_map(|k| map.get(*k).cloned())
                .collect();
            if !candidates.is_empty() && rng.chance(50) {
                let base = rng.pick(&candidates).clone();
                return match (base.as_i64(), rng.below(3)) {
                    (Some(i), 0) => json!(i + 1),
                    (Some(i), 1) => json!(i - 1),
                    _ => base,
                };
            }
            number(rng)
        }
        "string" => {
            let len = rng.below(5);
            json!((0..len)
                .map(|_| *rng.pick(&['a', 'b', 'x', '1']))
                .collect::<String>())
        }
        "boolean" => json!(rng.chance(50)),
        "null" => json!(null),
        "array" => {
            let items = map.get("items").cloned().unwrap_or(json!({}));
            let n = rng.below(4);
            json!((0..n)
                .map(|_| instance(rng, &items, root, depth - 1))
                .collect::<Vec<_>>())
        }
        _ => {
            let mut out = Map::new();
            let props = map.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for name in NAMES {
                let wanted = required.contains(&name) || rng.chance(40);
                if !wanted {
                    continue;
                }
                let value = match props.and_then(|p| p.get(name)) {
                    Some(sub) => instance(rng, sub, root, depth - 1),
                    None => random_json(rng, 1),
                };
                out.insert(name.to_owned(), value);
            }
            Value::Object(out)
        }
    }
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        5 => json!((0..rng.below(3))
            .map(|_| random_json(rng, depth - 1))
            .collect::<Vec<_>>()),
        6 => {
            let mut out = Map::new();
            for _ in 0..rng.below(3) {
                out.insert(rng.pick(&NAMES).to_string(), random_json(rng, depth - 1));
            }
            Value::Object(out)
        }
        _ => scalar(rng),
    }
}

#[derive(Default)]
struct Tally {
    pairs: usize,
    compatible: usize,
    instances: usize,
}

fn one_pair(seed: u64, tally: &mut Tally) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed | 1);
    let base = schema(&mut rng, 3);
    let def = leaf(&mut rng);
    let (mut writer, mut reader) = (base.clone(), base);
    let (mut writer_def, mut reader_def) = (def.clone(), def);
    for _ in 0..rng.below(3) {
        edit(&mut rng, &mut writer, 3);
    }
    for _ in 0..1 + rng.below(2) {
        edit(&mut rng, &mut reader, 3);
    }
    if rng.chance(20) {
        edit(&mut rng, &mut writer_def, 1);
    }
    if rng.chance(20) {
        edit(&mut rng, &mut reader_def, 1);
    }
    let writer = document(&mut rng, writer, writer_def);
    let reader = document(&mut rng, reader, reader_def);
    tally.pairs += 1;
    let (Ok(w_validator), Ok(r_validator)) = (
        jsonschema::validator_for(&writer),
        jsonschema::validator_for(&reader),
    ) else {
        return Ok(());
    };
    let Ok(report) = check(&writer, &reader, Mode::Backward) else {
        return Ok(());
    };
    if !report.is_compatible() {
        return Ok(());
    }
    tally.compatible += 1;
    for _ in 0..40 {
        let value = instance(&mut rng, &writer, &writer, 5);
        if !w_validator.is_valid(&value) {
            continue;
        }
        tally.instances += 1;
        prop_assert!(
            r_validator.is_valid(&value),
            "the checker calls this BACKWARD compatible, but the reader rejects {value}\n\
             writer: {writer}\nreader: {reader}\nreport: {report:?}"
        );
    }
    Ok(())
}

#[test]
fn compatible_means_the_reader_accepts_the_writers_data() {
    let cases = std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&any::<u64>(), |seed| {
        one_pair(seed, &mut tally.borrow_mut())
    });
    let tally = tally.into_inner();
    eprintln!(
        "{} pairs, {} judged compatible, {} writer-valid instances checked against the reader",
        tally.pairs, tally.compatible, tally.instances
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise the claim, not just produce
    // incompatible pairs.
    assert!(
        tally.compatible * 10 >= tally.pairs,
        "too few compatible pairs"
    );
}
