//! `$ref` resolution inside one document, with cycle detection, and
//! equality of keyword values that sees through `$ref`s.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::error::{SchemaError, SchemaErrorReason};
use super::node::{Doc, Node, CONTAINERS, METADATA};
use super::number::Num;

/// How many `$ref`s one resolution may follow before it gives up: real
/// schemas chain two or three.
pub(crate) const MAX_REF_CHAIN: usize = 1_000;

/// The `$ref`s of one document, each followed once: a reference met again
/// (two hundred properties naming one definition) is answered from here, so
/// the cost of a chain is paid once per document, not once per use.
#[derive(Debug, Default)]
pub(crate) struct RefCache {
    targets: RefCell<HashMap<String, Rc<Target>>>,
}

/// Where a reference leads.
#[derive(Debug)]
struct Target {
    /// The pointer of the schema at the end of the chain (one without
    /// `$ref`).
    at: String,
    /// That schema with the keywords beside the `$ref`s followed on the way
    /// merged in, when there were any.
    merged: Option<Rc<Value>>,
    /// Identity of `merged`: the reference it was resolved from (each
    /// reference of a document leads to one merged schema).
    key: String,
    /// How many `$ref`s the chain follows.
    links: usize,
}

impl RefCache {
    fn get(&self, reference: &str) -> Option<Rc<Target>> {
        self.targets.borrow().get(reference).cloned()
    }

    fn insert(&self, reference: String, target: Rc<Target>) {
        self.targets.borrow_mut().insert(reference, target);
    }
}

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
///
/// Each reference is followed once per document ([`RefCache`]), in a loop:
/// neither the stack nor the time grows with uses of a long chain.
pub(crate) fn resolve<'a>(node: &Node<'a>) -> Result<Option<Node<'a>>, SchemaError> {
    let Some(map) = node.value.as_object() else {
        return Ok(None);
    };
    let Some(first) = map.get("$ref") else {
        return Ok(None);
    };
    let doc = node.doc;
    let reference = reference_str(node, first)?;
    let target = follow(node, reference)?;
    let value: Cow<'a, Value> = match &target.merged {
        Some(merged) => Cow::Owned(Value::clone(merged)),
        None => Cow::Borrowed(
            lookup(doc.root, &target.at).map_err(|reason| node.error(Some("$ref"), reason))?,
        ),
    };
    let own = siblings(map);
    let at = target.at.clone();
    if own.is_empty() {
        return Ok(Some(Node {
            value,
            doc,
            id: format!("{}:{at}{}", doc.version, target.key),
            at,
        }));
    }
    let merged = merge_layer(value.into_owned(), &own);
    Ok(Some(Node {
        value: Cow::Owned(merged),
        doc,
        id: format!("{}:{at}{}+{}", doc.version, target.key, Value::Object(own)),
        at,
    }))
}

/// Where `reference` leads in `node`'s document: from the cache, or by
/// walking the chain once and remembering every reference on it.
fn follow(node: &Node<'_>, reference: &str) -> Result<Rc<Target>, SchemaError> {
    let doc = node.doc;
    if let Some(known) = doc.refs.get(reference) {
        return Ok(known);
    }
    // The references walked, each with the siblings beside the `$ref` its
    // target holds (`None` for the last, whose target has no `$ref`).
    let mut chain: Vec<(String, Option<Map<String, Value>>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut current = reference.to_owned();
    let mut end = loop {
        if let Some(known) = doc.refs.get(&current) {
            break known;
        }
        if chain.len() >= MAX_REF_CHAIN {
            return Err(node.error(
                Some("$ref"),
                SchemaErrorReason::RefChainTooLong {
                    limit: MAX_REF_CHAIN,
                },
            ));
        }
        if !seen.insert(current.clone()) {
            let mut names: Vec<String> = chain.into_iter().map(|(r, _)| r).collect();
            names.push(current);
            return Err(node.error(Some("$ref"), SchemaErrorReason::RefCycle { chain: names }));
        }
        let target =
            lookup(doc.root, &current).map_err(|reason| node.error(Some("$ref"), reason))?;
        match target
            .as_object()
            .and_then(|m| m.get("$ref").map(|r| (m, r)))
        {
            Some((target_map, next)) => {
                let via = Node {
                    value: Cow::Borrowed(target),
                    doc,
                    at: current.clone(),
                    id: String::new(),
                };
                let next = reference_str(&via, next)?.to_owned();
                chain.push((
                    std::mem::replace(&mut current, next),
                    Some(siblings(target_map)),
                ));
            }
            None => {
                let end = Rc::new(Target {
                    at: current.clone(),
                    merged: None,
                    key: String::new(),
                    links: 1,
                });
                doc.refs.insert(current, end.clone());
                break end;
            }
        }
    };
    if end.links + chain.len() > MAX_REF_CHAIN {
        return Err(node.error(
            Some("$ref"),
            SchemaErrorReason::RefChainTooLong {
                limit: MAX_REF_CHAIN,
            },
        ));
    }
    // Innermost first: each reference's target is the next one's, with
    // the siblings beside its own `$ref` laid over it.
    for (name, layer) in chain.into_iter().rev() {
        let layer = layer.unwrap_or_default();
        let target = if layer.is_empty() {
            Target {
                at: end.at.clone(),
                merged: end.merged.clone(),
                key: end.key.clone(),
                links: end.links + 1,
            }
        } else {
            let base = match &end.merged {
                Some(merged) => Value::clone(merged),
                None => lookup(doc.root, &end.at)
                    .map_err(|reason| node.error(Some("$ref"), reason))?
                    .clone(),
            };
            Target {
                at: end.at.clone(),
                merged: Some(Rc::new(merge_layer(base, &layer))),
                key: format!("<{name}"),
                links: end.links + 1,
            }
        };
        end = Rc::new(target);
        doc.refs.insert(name, end.clone());
    }
    Ok(end)
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

/// Whether two JSON values are equal, numbers compared by exact value (`1`
/// and `1.0` are equal, `9007199254740993` and `9007199254740992.0` are
/// not).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (Num::of(x), Num::of(y)) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
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
/// sides (a `$ref` whose target changed is not the same). A `$ref` that
/// cannot be followed is compared as written: the same unresolvable
/// reference on both sides means the same, so a schema always means the
/// same as itself.
///
/// The pairs still to compare are kept on a list, not on the stack: a chain
/// of ten thousand `$ref`s costs ten thousand steps, not stack frames.
pub(crate) fn same_meaning<'v>(a: &'v Value, a_doc: Doc<'v>, b: &'v Value, b_doc: Doc<'v>) -> bool {
    /// Two values to compare, or the keywords beside two `$ref`s.
    enum Pending<'v> {
        Values(&'v Value, &'v Value),
        Siblings(&'v Map<String, Value>, &'v Map<String, Value>),
    }
    let beside = |map: &'v Map<String, Value>| {
        map.iter()
            .filter(|(k, _)| k.as_str() != "$ref" && !CONTAINERS.contains(&k.as_str()))
    };
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut pending = vec![Pending::Values(a, b)];
    while let Some(next) = pending.pop() {
        let (a, b) = match next {
            Pending::Values(a, b) => (a, b),
            Pending::Siblings(x, y) => {
                if beside(x).count() != beside(y).count() {
                    return false;
                }
                for (k, v) in beside(x) {
                    let Some(w) = y.get(k) else {
                        return false;
                    };
                    pending.push(Pending::Values(v, w));
                }
                continue;
            }
        };
        let a_ref = a.get("$ref").and_then(Value::as_str);
        let b_ref = b.get("$ref").and_then(Value::as_str);
        if a_ref.is_some() || b_ref.is_some() {
            let (Some(a_map), Some(b_map)) = (a.as_object(), b.as_object()) else {
                return false;
            };
            let (a_target, b_target) = match (target(a_ref, a_doc), target(b_ref, b_doc)) {
                (Some(x), Some(y)) => (x, y),
                (None, None) if a_ref == b_ref => {
                    // Both point nowhere, the same way.
                    pending.push(Pending::Siblings(a_map, b_map));
                    continue;
                }
                _ => return false,
            };
            if let (Some(a_ref), Some(b_ref)) = (a_ref, b_ref) {
                let key = (
                    format!("{}:{a_ref}", a_doc.version),
                    format!("{}:{b_ref}", b_doc.version),
                );
                if !seen.insert(key) {
                    // Already compared, or being compared: that comparison
                    // decides. The siblings still count.
                    pending.push(Pending::Siblings(a_map, b_map));
                    continue;
                }
            }
            let a_alone = beside(a_map).next().is_none();
            let b_alone = beside(b_map).next().is_none();
            match (a_target, b_target) {
                (Some(x), Some(y)) => {
                    pending.push(Pending::Values(x, y));
                    pending.push(Pending::Siblings(a_map, b_map));
                }
                (Some(x), None) if a_alone => pending.push(Pending::Values(x, b)),
                (None, Some(y)) if b_alone => pending.push(Pending::Values(a, y)),
                _ => return false,
            }
            continue;
        }
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                pending.extend(x.iter().zip(y).map(|(x, y)| Pending::Values(x, y)));
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.len() != y.len() {
                    return false;
                }
                for (k, v) in x {
                    let Some(w) = y.get(k) else {
                        return false;
                    };
                    pending.push(Pending::Values(v, w));
                }
            }
            _ if !json_eq(a, b) => return false,
            _ => {}
        }
    }
    true
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
        Doc {
            root,
            version,
            refs: Box::leak(Box::default()),
        }
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
    fn each_reference_is_followed_once() {
        let mut defs = Map::new();
        for i in 0..100 {
            defs.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i + 1), "description": format!("{i}")}),
            );
        }
        defs.insert("d100".into(), json!({"type": "string"}));
        let root = json!({"$defs": defs, "uses": (0..100).map(|i| json!({"$ref": format!("#/$defs/d{i}")})).collect::<Vec<_>>()});
        let d = doc(&root, 0);
        let top = Node::root(d);
        for i in 0..100 {
            let use_i = top.child(&root["uses"][i], &format!("uses/{i}"));
            let target = resolve(&use_i).unwrap().unwrap();
            assert_eq!(target.at, "#/$defs/d100");
            assert_eq!(target.value["description"], json!(format!("{i}")));
            assert_eq!(target.value["type"], json!("string"));
        }
        // One entry per reference of the chain, walked once in all.
        assert_eq!(d.refs.targets.borrow().len(), 101);
        assert_eq!(d.refs.get("#/$defs/d0").unwrap().links, 101);
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
