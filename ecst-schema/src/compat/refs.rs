//! `$ref` resolution inside one document, with cycle detection, and
//! equality of keyword values that sees through `$ref`s.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{SchemaError, SchemaErrorReason};
use super::node::{Doc, Node, CONTAINERS, METADATA};

/// `node` with its `$ref` followed, or `node` itself when it has none.
pub(crate) fn resolved<'a>(node: &Node<'a>) -> Result<Node<'a>, SchemaError> {
    Ok(resolve(node)?.unwrap_or_else(|| node.clone()))
}

/// Follows `node`'s `$ref` (and the target's, and so on) to a schema that
/// has none. `None` when `node` has no `$ref`.
///
/// Keywords beside a `$ref` (draft 2019-09 and later allow them; schemars
/// puts `description` and `default` there) are merged into the target. When
/// a sibling constrains something the target also constrains, differently,
/// the result is `allOf` of the two, which is what the keywords mean.
pub(crate) fn resolve<'a>(node: &Node<'a>) -> Result<Option<Node<'a>>, SchemaError> {
    let Some(map) = node.value.as_object() else {
        return Ok(None);
    };
    let Some(first) = map.get("$ref") else {
        return Ok(None);
    };
    let doc = node.doc;
    let mut reference = reference_str(node, first)?;
    let mut chain: Vec<String> = Vec::new();
    // Sibling keywords met on the way, outermost first.
    let mut layers: Vec<Map<String, Value>> = vec![siblings(map)];
    loop {
        if chain.iter().any(|seen| seen == reference) {
            chain.push(reference.to_owned());
            return Err(node.error(Some("$ref"), SchemaErrorReason::RefCycle { chain }));
        }
        chain.push(reference.to_owned());
        let target =
            lookup(doc.root, reference).map_err(|reason| node.error(Some("$ref"), reason))?;
        match target
            .as_object()
            .and_then(|m| m.get("$ref").map(|r| (m, r)))
        {
            Some((target_map, next)) => {
                layers.push(siblings(target_map));
                let via = Node {
                    value: Cow::Borrowed(target),
                    doc,
                    at: reference.to_owned(),
                    id: String::new(),
                };
                reference = reference_str(&via, next)?;
            }
            None => {
                let at = reference.to_owned();
                if layers.iter().all(Map::is_empty) {
                    return Ok(Some(Node {
                        value: Cow::Borrowed(target),
                        doc,
                        id: format!("{}:{at}", doc.version),
                        at,
                    }));
                }
                let mut merged = target.clone();
                for layer in layers.iter().rev() {
                    merged = merge_layer(merged, layer);
                }
                let key = Value::Array(layers.into_iter().map(Value::Object).collect());
                return Ok(Some(Node {
                    value: Cow::Owned(merged),
                    doc,
                    id: format!("{}:{at}+{key}", doc.version),
                    at,
                }));
            }
        }
    }
}

fn reference_str<'v>(node: &Node<'_>, value: &'v Value) -> Result<&'v str, SchemaError> {
    value.as_str().ok_or_else(|| {
        node.error(
            Some("$ref"),
            SchemaErrorReason::InvalidKeyword {
                keyword: "$ref".to_owned(),
                expected: "a string",
            },
        )
    })
}

/// The keywords beside `$ref` that say something about data or the schema.
fn siblings(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| k.as_str() != "$ref" && !CONTAINERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `layer`'s keywords laid over `target`: annotations replace, new keywords
/// join, and a keyword both constrain differently makes an `allOf`.
fn merge_layer(target: Value, layer: &Map<String, Value>) -> Value {
    let mut map = match target {
        Value::Object(map) => map,
        Value::Bool(true) => Map::new(),
        other => {
            // `false`, or not a schema (reported when walked): keep the
            // siblings beside it as a conjunction.
            let mut map = Map::new();
            map.insert(
                "allOf".to_owned(),
                Value::Array(vec![other, Value::Object(layer.clone())]),
            );
            return Value::Object(map);
        }
    };
    let conflicts = layer.iter().any(|(k, v)| {
        !METADATA.contains(&k.as_str()) && map.get(k).is_some_and(|existing| existing != v)
    });
    if !conflicts {
        for (k, v) in layer {
            map.insert(k.clone(), v.clone());
        }
        return Value::Object(map);
    }
    let (notes, constraints): (Map<String, Value>, Map<String, Value>) = layer
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| METADATA.contains(&k.as_str()));
    let mut merged = notes;
    merged.insert(
        "allOf".to_owned(),
        Value::Array(vec![Value::Object(map), Value::Object(constraints)]),
    );
    Value::Object(merged)
}

/// The value a same-document reference (`#`, `#/$defs/Name`) points to.
pub(crate) fn lookup<'a>(root: &'a Value, reference: &str) -> Result<&'a Value, SchemaErrorReason> {
    let Some(fragment) = reference.strip_prefix('#') else {
        return Err(SchemaErrorReason::UnsupportedRef {
            reference: reference.to_owned(),
        });
    };
    if !fragment.is_empty() && !fragment.starts_with('/') {
        return Err(SchemaErrorReason::UnsupportedRef {
            reference: reference.to_owned(),
        });
    }
    let pointer = percent_decode(fragment).ok_or_else(|| SchemaErrorReason::UnsupportedRef {
        reference: reference.to_owned(),
    })?;
    root.pointer(&pointer)
        .ok_or_else(|| SchemaErrorReason::MissingRefTarget {
            reference: reference.to_owned(),
        })
}

/// `%XX` escapes of a URI fragment decoded; `None` if malformed.
fn percent_decode(fragment: &str) -> Option<String> {
    if !fragment.contains('%') {
        return Some(fragment.to_owned());
    }
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = fragment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether two JSON values are equal, numbers compared by value (`1` and
/// `1.0` are equal).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Whether two keyword values mean the same, following `$ref`s on both
/// sides (a `$ref` whose target changed is not the same). Refs that cannot
/// be followed make the values differ.
pub(crate) fn same_meaning(a: &Value, a_doc: Doc<'_>, b: &Value, b_doc: Doc<'_>) -> bool {
    let mut seen = HashSet::new();
    same(a, a_doc, b, b_doc, &mut seen)
}

fn same(
    a: &Value,
    a_doc: Doc<'_>,
    b: &Value,
    b_doc: Doc<'_>,
    seen: &mut HashSet<(String, String)>,
) -> bool {
    let a_ref = a.get("$ref").and_then(Value::as_str);
    let b_ref = b.get("$ref").and_then(Value::as_str);
    if a_ref.is_some() || b_ref.is_some() {
        let key = (
            format!("{}:{}", a_doc.version, a_ref.unwrap_or("")),
            format!("{}:{}", b_doc.version, b_ref.unwrap_or("")),
        );
        if a_ref.is_some() && b_ref.is_some() && !seen.insert(key) {
            // Already being compared further up: assume equal (the rest of
            // the comparison decides).
            return true;
        }
        let (Some(a_map), Some(b_map)) = (a.as_object(), b.as_object()) else {
            return false;
        };
        let (Some(a_target), Some(b_target)) = (target(a_ref, a_doc), target(b_ref, b_doc)) else {
            return false;
        };
        let a_rest: Map<String, Value> = siblings(a_map);
        let b_rest: Map<String, Value> = siblings(b_map);
        return match (a_target, b_target) {
            (Some(x), Some(y)) => {
                same(x, a_doc, y, b_doc, seen)
                    && same(
                        &Value::Object(a_rest),
                        a_doc,
                        &Value::Object(b_rest),
                        b_doc,
                        seen,
                    )
            }
            (Some(x), None) if a_rest.is_empty() => same(x, a_doc, b, b_doc, seen),
            (None, Some(y)) if b_rest.is_empty() => same(a, a_doc, y, b_doc, seen),
            _ => false,
        };
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, a_doc, y, b_doc, seen))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(v, a_doc, w, b_doc, seen)))
        }
        _ => json_eq(a, b),
    }
}

/// `Some(None)` without a reference, `Some(Some(target))` with one that
/// resolves, `None` with one that does not.
fn target<'a>(reference: Option<&str>, doc: Doc<'a>) -> Option<Option<&'a Value>> {
    match reference {
        Some(reference) => lookup(doc.root, reference).ok().map(Some),
        None => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(root: &Value, version: usize) -> Doc<'_> {
        Doc { root, version }
    }

    #[test]
    fn follows_chains_and_merges_siblings() {
        let root = json!({
            "properties": {"home": {"$ref": "#/$defs/A", "description": "Home."}},
            "$defs": {
                "A": {"$ref": "#/$defs/B"},
                "B": {"type": "object", "description": "An address."}
            }
        });
        let d = doc(&root, 0);
        let top = Node::root(d);
        let home = top.child(&root["properties"]["home"], "properties/home");
        let resolved = resolve(&home).unwrap().unwrap();
        assert_eq!(
            resolved.value.as_ref(),
            &json!({"type": "object", "description": "Home."})
        );
        assert_eq!(resolved.at, "#/$defs/B");
    }

    #[test]
    fn conflicting_siblings_become_all_of() {
        let root =
            json!({"$ref": "#/$defs/A", "type": "string", "$defs": {"A": {"type": "integer"}}});
        let resolved = resolve(&Node::root(doc(&root, 0))).unwrap().unwrap();
        assert_eq!(
            resolved.value.as_ref(),
            &json!({"allOf": [{"type": "integer"}, {"type": "string"}]})
        );
    }

    #[test]
    fn loops_and_missing_targets_are_errors() {
        let root = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}});
        let err = resolve(&Node::root(doc(&root, 3))).unwrap_err();
        assert_eq!(err.version, 3);
        assert!(
            matches!(err.reason, SchemaErrorReason::RefCycle { .. }),
            "{err}"
        );

        let root = json!({"$ref": "#/$defs/Gone"});
        let err = resolve(&Node::root(doc(&root, 0))).unwrap_err();
        assert_eq!(err.path, "#/$ref");
        assert!(err.to_string().contains("#/$defs/Gone"), "{err}");

        let root = json!({"$ref": "other.json#/x"});
        let err = resolve(&Node::root(doc(&root, 0))).unwrap_err();
        assert!(matches!(
            err.reason,
            SchemaErrorReason::UnsupportedRef { .. }
        ));
    }

    #[test]
    fn pointers_are_decoded() {
        let root = json!({"$defs": {"a b": {"type": "string"}, "x/y": true}});
        assert_eq!(
            lookup(&root, "#/$defs/a%20b").unwrap(),
            &json!({"type": "string"})
        );
        assert_eq!(lookup(&root, "#/$defs/x~1y").unwrap(), &json!(true));
        assert_eq!(lookup(&root, "#").unwrap(), &root);
    }

    #[test]
    fn equality_sees_through_refs() {
        let a = json!({"if": {"$ref": "#/$defs/X"}, "$defs": {"X": {"type": "string"}}});
        let b = json!({"if": {"$ref": "#/$defs/X"}, "$defs": {"X": {"type": "number"}}});
        let c = json!({"if": {"type": "string"}});
        assert!(!same_meaning(&a["if"], doc(&a, 0), &b["if"], doc(&b, 1)));
        assert!(same_meaning(&a["if"], doc(&a, 0), &c["if"], doc(&c, 1)));
        let cyclic = json!({"if": {"$ref": "#"}});
        assert!(same_meaning(
            &cyclic["if"],
            doc(&cyclic, 0),
            &cyclic["if"],
            doc(&cyclic, 1)
        ));
        assert!(json_eq(&json!([1, {"a": 2.0}]), &json!([1.0, {"a": 2}])));
    }
}
