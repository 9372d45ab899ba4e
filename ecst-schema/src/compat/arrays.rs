//! Arrays: the schema for every item, tuples (`prefixItems`, or draft-07
//! `items` arrays) and what follows them (`items` after `prefixItems`,
//! `additionalItems`), `minItems`, `maxItems`, `uniqueItems`.
//!
//! Both drafts are read into one shape: a tuple of positional schemas, then
//! a rule for the rest. Without a tuple the rule for the rest is the schema
//! of every item.

use super::bounds::Bound;
use super::content::{covered, ContentModel as Rest};
use super::diff::{prefixed, push, Diffs, Walker};
use super::error::SchemaError;
use super::kind::DifferenceKind;
use super::node::Node;
use super::refs::resolved;

struct Shape<'b> {
    tuple: Vec<Node<'b>>,
    /// Where the tuple is written: `prefixItems` or `items`.
    tuple_keyword: &'static str,
    /// What the array allows after its tuple.
    rest: Rest<'b>,
    /// Where the rule for the rest is written: `items` or `additionalItems`.
    rest_keyword: &'static str,
}

fn shape<'b>(node: &'b Node<'_>) -> Result<Shape<'b>, SchemaError> {
    if let Some(tuple) = node.schema_list("prefixItems")? {
        return Ok(Shape {
            tuple,
            tuple_keyword: "prefixItems",
            rest: Rest::of(node, "items")?,
            rest_keyword: "items",
        });
    }
    if node.get("items").is_some_and(serde_json::Value::is_array) {
        return Ok(Shape {
            tuple: node.schema_list("items")?.unwrap_or_default(),
            tuple_keyword: "items",
            rest: Rest::of(node, "additionalItems")?,
            rest_keyword: "additionalItems",
        });
    }
    Ok(Shape {
        tuple: Vec::new(),
        tuple_keyword: "prefixItems",
        rest: Rest::of(node, "items")?,
        rest_keyword: "items",
    })
}

pub(crate) fn compare(
    walker: &mut Walker,
    out: &mut Diffs,
    w: &Node<'_>,
    r: &Node<'_>,
) -> Result<(), SchemaError> {
    use DifferenceKind as K;
    let ws = shape(w)?;
    let rs = shape(r)?;
    let common = ws.tuple.len().min(rs.tuple.len());
    for i in 0..common {
        let diffs = walker.compare(&ws.tuple[i], &rs.tuple[i])?;
        out.extend(prefixed(&format!("/{}/{i}", ws.tuple_keyword), diffs));
    }
    // Positions only the writer's tuple has: the reader's rule for the rest
    // applies to them now.
    for (i, item) in ws.tuple.iter().enumerate().skip(common) {
        let at = format!("/{}/{i}", ws.tuple_keyword);
        match &rs.rest {
            Rest::Open => push(out, at, K::ItemRemovedFromOpenContentModel, ""),
            Rest::Closed => {
                let kind = if resolved(item)?.is_false() {
                    K::ItemWithFalseRemovedFromClosedContentModel
                } else {
                    K::ItemRemovedFromClosedContentModel
                };
                push(out, at, kind, "");
            }
            Rest::Schema(schema) => {
                let diffs = walker.compare(item, schema)?;
                covered(
                    walker,
                    out,
                    &at,
                    None,
                    diffs,
                    [
                        K::ItemRemovedIsCoveredByPartiallyOpenContentModel,
                        K::ItemRemovedNotCoveredByPartiallyOpenContentModel,
                    ],
                );
            }
        }
    }
    // Positions only the reader's tuple has: the writer's rule for the rest
    // said what could be there.
    for (i, item) in rs.tuple.iter().enumerate().skip(common) {
        let at = format!("/{}/{i}", rs.tuple_keyword);
        match &ws.rest {
            Rest::Open => {
                let kind = if resolved(item)?.accepts_anything() {
                    K::ItemWithEmptySchemaAddedToOpenContentModel
                } else {
                    K::ItemAddedToOpenContentModel
                };
                push(out, at, kind, "");
            }
            Rest::Closed => push(out, at, K::ItemAddedToClosedContentModel, ""),
            Rest::Schema(schema) => {
                let diffs = walker.compare(schema, item)?;
                covered(
                    walker,
                    out,
                    &at,
                    None,
                    diffs,
                    [
                        K::ItemAddedIsCoveredByPartiallyOpenContentModel,
                        K::ItemAddedNotCoveredByPartiallyOpenContentModel,
                    ],
                );
            }
        }
    }
    // The rule for the rest. Without tuples it is the schema of every item,
    // which Confluent reports as a schema added or removed.
    let no_tuples = ws.tuple.is_empty() && rs.tuple.is_empty();
    let at = |keyword: &str| format!("/{keyword}");
    match (&ws.rest, &rs.rest) {
        (Rest::Open, Rest::Open) | (Rest::Closed, Rest::Closed) => {}
        (Rest::Open, Rest::Closed) | (Rest::Schema(_), Rest::Closed) => {
            push(out, at(rs.rest_keyword), K::AdditionalItemsRemoved, "");
        }
        (Rest::Open, Rest::Schema(_)) => {
            let kind = if no_tuples {
                K::SchemaAdded
            } else {
                K::AdditionalItemsNarrowed
            };
            push(out, at(rs.rest_keyword), kind, "");
        }
        (Rest::Closed, _) => push(out, at(rs.rest_keyword), K::AdditionalItemsAdded, ""),
        (Rest::Schema(_), Rest::Open) => {
            let kind = if no_tuples {
                K::SchemaRemoved
            } else {
                K::AdditionalItemsExtended
            };
            push(out, at(ws.rest_keyword), kind, "");
        }
        (Rest::Schema(a), Rest::Schema(b)) => {
            let diffs = walker.compare(a, b)?;
            out.extend(prefixed(&at(ws.rest_keyword), diffs));
        }
    }
    Bound::MaxItems.compare(out, w, r)?;
    Bound::MinItems.compare(out, w, r)?;
    match (w.flag("uniqueItems")?, r.flag("uniqueItems")?) {
        (true, false) => push(out, "/uniqueItems", K::UniqueItemsRemoved, ""),
        (false, true) => push(out, "/uniqueItems", K::UniqueItemsAdded, ""),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::diff::found;
    use super::*;
    use serde_json::json;
    use DifferenceKind as K;

    #[test]
    fn draft_07_and_2020_12_tuples_read_alike() {
        let draft7 =
            json!({"type": "array", "items": [{"type": "string"}], "additionalItems": false});
        let draft2020 =
            json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false});
        assert!(found(draft7.clone(), draft2020.clone()).is_empty());
        assert!(found(draft2020, draft7).is_empty());
    }

    #[test]
    fn the_schema_of_every_item_and_the_rule_after_a_tuple() {
        let array = |extra: serde_json::Value| {
            let mut schema = json!({"type": "array"});
            if let (Some(map), Some(more)) = (schema.as_object_mut(), extra.as_object()) {
                map.extend(more.clone());
            }
            schema
        };
        assert_eq!(
            found(
                array(json!({})),
                array(json!({"items": {"type": "string"}}))
            ),
            vec![("/items".to_owned(), K::SchemaAdded)]
        );
        assert_eq!(
            found(
                array(json!({"prefixItems": [{}]})),
                array(json!({"prefixItems": [{}], "items": {"type": "string"}}))
            ),
            vec![("/items".to_owned(), K::AdditionalItemsNarrowed)]
        );
        assert_eq!(
            found(
                array(json!({"items": false})),
                array(json!({"items": {"type": "string"}}))
            ),
            vec![("/items".to_owned(), K::AdditionalItemsAdded)]
        );
        assert_eq!(
            found(
                array(json!({"items": {"type": "string"}})),
                array(json!({"items": true}))
            ),
            vec![("/items".to_owned(), K::SchemaRemoved)]
        );
    }

    #[test]
    fn tuple_positions_against_the_other_sides_rule() {
        let tuple = |items: serde_json::Value, rest: serde_json::Value| json!({"type": "array", "prefixItems": items, "items": rest});
        // The writer's second position meets the reader's rule for the rest.
        assert_eq!(
            found(
                tuple(
                    json!([{"type": "string"}, {"type": "integer"}]),
                    json!({"type": "number"})
                ),
                tuple(json!([{"type": "string"}]), json!({"type": "number"}))
            ),
            vec![
                ("/prefixItems/1".to_owned(), K::TypeExtended),
                (
                    "/prefixItems/1".to_owned(),
                    K::ItemRemovedIsCoveredByPartiallyOpenContentModel
                ),
            ]
        );
        assert_eq!(
            found(
                tuple(json!([{"type": "string"}, false]), json!(false)),
                tuple(json!([{"type": "string"}]), json!(false))
            ),
            vec![(
                "/prefixItems/1".to_owned(),
                K::ItemWithFalseRemovedFromClosedContentModel
            )]
        );
        assert_eq!(
            found(
                tuple(json!([{"type": "string"}]), json!(true)),
                tuple(json!([{"type": "string"}, true]), json!(true))
            ),
            vec![(
                "/prefixItems/1".to_owned(),
                K::ItemWithEmptySchemaAddedToOpenContentModel
            )]
        );
    }
}
