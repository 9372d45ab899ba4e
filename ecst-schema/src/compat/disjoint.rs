//! Whether two schemas exclude each other: no value is valid under both.
//!
//! `oneOf` rejects a value that two of its alternatives accept, so a
//! reader's `oneOf` that gained or widened an alternative is only safe if
//! the alternatives still exclude each other. This module proves that for
//! the shapes real schemas use, and answers "not shown" for anything else:
//!
//! - the JSON types (with `enum`/`const` narrowing them) do not meet:
//!   `string` against `null`, a unit variant against a struct;
//! - the `enum`/`const` values do not meet: `"A"` against `"B"`;
//! - both are objects only, one requires a property and the other forbids
//!   it or constrains it to values the first one's schema for it excludes:
//!   serde's externally tagged enums (`{"required": ["B"],
//!   "additionalProperties": false}`) and internally tagged ones (a
//!   required `type` property with a different `const` per variant);
//! - one is `allOf` with a part that excludes the other, or `anyOf`/`oneOf`
//!   whose every alternative excludes it.
//!
//! The search is bounded in depth and steps; running out means "not shown".

use super::diff::allowed;
use super::node::{Node, TypeSet};
use super::refs::{json_eq, resolved};

/// How deep the proof may descend into properties and combinators.
const MAX_DEPTH: usize = 8;
/// How many pairs the proofs for one `oneOf` may look at, all together.
pub(crate) const MAX_STEPS: usize = 100_000;

/// Whether no value is valid under both `a` and `b`, as far as the checker
/// can show. `false` means "not shown", not "they overlap". `steps` counts
/// the pairs looked at, across calls; past [`MAX_STEPS`] nothing more is
/// shown.
pub(crate) fn disjoint(a: &Node<'_>, b: &Node<'_>, steps: &mut usize) -> bool {
    prove(a, b, 0, steps)
}

fn prove(a: &Node<'_>, b: &Node<'_>, depth: usize, steps: &mut usize) -> bool {
    *steps += 1;
    if depth > MAX_DEPTH || *steps > MAX_STEPS {
        return false;
    }
    let (Ok(a), Ok(b)) = (resolved(a), resolved(b)) else {
        return false;
    };
    if a.is_false() || b.is_false() {
        return true;
    }
    if a.keywords().is_err() || b.keywords().is_err() {
        return false;
    }
    // Every keyword constrains on its own: a proof from some of a schema's
    // keywords holds for the whole schema.
    if own_keywords_disjoint(&a, &b, depth, steps) {
        return true;
    }
    for (x, y) in [(&a, &b), (&b, &a)] {
        if let Ok(Some(parts)) = x.schema_list("allOf") {
            if parts.iter().any(|part| prove(part, y, depth + 1, steps)) {
                return true;
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Ok(Some(alternatives)) = x.schema_list(keyword) {
                if alternatives
                    .iter()
                    .all(|alternative| prove(alternative, y, depth + 1, steps))
                {
                    return true;
                }
            }
        }
    }
    false
}

/// The JSON types a schema's `type`, `enum` and `const` admit.
fn admitted(node: &Node<'_>) -> Option<TypeSet> {
    let types = node.types().ok()?;
    Some(match allowed(node).ok()? {
        Some(values) => values
            .iter()
            .fold(TypeSet::NONE, |set, v| set.union(TypeSet::of_value(v)))
            .intersection(types),
        None => types,
    })
}

fn own_keywords_disjoint(a: &Node<'_>, b: &Node<'_>, depth: usize, steps: &mut usize) -> bool {
    let (Some(a_types), Some(b_types)) = (admitted(a), admitted(b)) else {
        return false;
    };
    let common = a_types.intersection(b_types);
    if common.is_empty() {
        return true;
    }
    if let (Ok(Some(a_values)), Ok(Some(b_values))) = (allowed(a), allowed(b)) {
        if !a_values
            .iter()
            .any(|x| b_values.iter().any(|y| json_eq(x, y)))
        {
            return true;
        }
    }
    common.is_subset_of(TypeSet::OBJECT_ONLY)
        && (excluded_property(a, b, depth, steps) || excluded_property(b, a, depth, steps))
}

/// Whether `x` requires a property that every value of `y` lacks or holds
/// with a value `x`'s schema for it rejects (both are objects only).
fn excluded_property(x: &Node<'_>, y: &Node<'_>, depth: usize, steps: &mut usize) -> bool {
    let (Ok(required), Ok(x_props), Ok(y_props)) = (
        x.required(),
        x.schema_map("properties"),
        y.schema_map("properties"),
    ) else {
        return false;
    };
    let y_closed = y.get("patternProperties").is_none()
        && matches!(
            y.get("additionalProperties"),
            Some(serde_json::Value::Bool(false))
        );
    required.iter().any(|name| {
        let y_schema = y_props.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let x_schema = x_props.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        match (x_schema, y_schema) {
            (_, None) => y_closed,
            (None, Some(y_schema)) => resolved(y_schema).is_ok_and(|s| s.is_false()),
            (Some(x_schema), Some(y_schema)) => prove(x_schema, y_schema, depth + 1, steps),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::node::Doc;
    use super::super::refs::RefCache;
    use super::*;
    use serde_json::{json, Value};

    fn check(a: Value, b: Value) -> bool {
        let root = json!({"a": a, "b": b, "$defs": {"S": {"type": "string"}}});
        let refs = RefCache::default();
        let doc = Doc {
            root: &root,
            version: 0,
            refs: &refs,
        };
        let top = Node::root(doc);
        disjoint(
            &top.child(&root["a"], "a"),
            &top.child(&root["b"], "b"),
            &mut 0,
        )
    }

    #[test]
    fn types_and_values_that_do_not_meet() {
        assert!(check(json!({"type": "string"}), json!({"type": "null"})));
        assert!(check(
            json!({"type": "string"}),
            json!({"type": ["integer", "null"]})
        ));
        assert!(!check(
            json!({"type": "integer"}),
            json!({"type": "number"})
        ));
        assert!(check(json!({"const": "A"}), json!({"enum": ["B", "C"]})));
        assert!(!check(json!({"const": 1}), json!({"enum": [1.0]})));
        assert!(check(json!({"const": 1}), json!({"type": "string"})));
        assert!(check(
            json!({"$ref": "#/$defs/S"}),
            json!({"type": "object"})
        ));
        assert!(!check(json!({"type": "string"}), json!({})));
        assert!(check(json!(false), json!({})));
    }

    #[test]
    fn tagged_enums_exclude_each_other() {
        // Externally tagged, as schemars writes them.
        let variant = |name: &str| json!({"type": "object", "properties": {name: {}}, "required": [name], "additionalProperties": false});
        assert!(check(variant("A"), variant("B")));
        assert!(!check(variant("A"), variant("A")));
        // Internally tagged.
        let tagged = |tag: &str| json!({"type": "object", "properties": {"kind": {"type": "string", "const": tag}}, "required": ["kind"]});
        assert!(check(tagged("a"), tagged("b")));
        assert!(!check(tagged("a"), tagged("a")));
        // Open objects without a tag can hold both.
        assert!(!check(
            json!({"type": "object", "required": ["a"]}),
            json!({"type": "object", "required": ["b"]})
        ));
    }

    #[test]
    fn combinators() {
        assert!(check(
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!({"type": "integer"})
        ));
        assert!(!check(
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"type": "integer"})
        ));
        assert!(check(
            json!({"allOf": [{"type": "string"}, {"minLength": 1}]}),
            json!({"type": "integer"})
        ));
    }
}
