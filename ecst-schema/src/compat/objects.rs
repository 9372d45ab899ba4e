//! Objects: `properties`, `required`, `additionalProperties`,
//! `patternProperties`, `maxProperties`, `minProperties`.
//!
//! Confluent's content models: an object is *open* when it allows any other
//! property (`additionalProperties` absent or `true`, no
//! `patternProperties`), *closed* with `additionalProperties: false`, and
//! *partially open* when a `patternProperties` or `additionalProperties`
//! schema constrains the other properties. Here the model is decided per
//! property name, which is what the keywords mean: a name no pattern matches
//! in an object without `additionalProperties` is open even if the object
//! has patterns.

use super::bounds::Bound;
use super::content::{covered, ContentModel as Extra};
use super::diff::{prefixed, push, Diffs, Walker};
use super::error::SchemaError;
use super::kind::{DifferenceKind, Presence};
use super::node::{escape, Node};
use super::pattern::Pattern;
use super::refs::resolved;

/// What an object allows for one property name it does not declare.
enum Coverage<'b> {
    Open,
    Closed,
    /// Every schema that applies (matching patterns, or the
    /// `additionalProperties` schema).
    Schemas(Vec<Node<'b>>),
    /// A pattern this checker cannot evaluate.
    Unknown(String),
}

struct Shape<'b> {
    properties: Vec<(&'b str, Node<'b>)>,
    required: Vec<&'b str>,
    patterns: Vec<(&'b str, Node<'b>, Option<Pattern>)>,
    /// What the object allows for a property it does not declare.
    extra: Extra<'b>,
}

fn shape<'b>(node: &'b Node<'_>) -> Result<Shape<'b>, SchemaError> {
    let patterns = node
        .schema_map("patternProperties")?
        .into_iter()
        .map(|(source, schema)| (source, schema, Pattern::parse(source).ok()))
        .collect();
    let extra = Extra::of(node, "additionalProperties")?;
    Ok(Shape {
        properties: node.schema_map("properties")?,
        required: node.required()?,
        patterns,
        extra,
    })
}

impl<'b> Shape<'b> {
    fn property(&self, name: &str) -> Option<&Node<'b>> {
        self.properties
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, node)| node)
    }

    fn requires(&self, name: &str) -> bool {
        self.required.contains(&name)
    }

    fn coverage(&self, name: &str) -> Coverage<'b> {
        let mut matching = Vec::new();
        for (source, schema, pattern) in &self.patterns {
            match pattern.as_ref().map(|p| p.is_match(name)) {
                Some(Some(true)) => matching.push(schema.clone()),
                Some(Some(false)) => {}
                Some(None) | None => return Coverage::Unknown((*source).to_owned()),
            }
        }
        if !matching.is_empty() {
            return Coverage::Schemas(matching);
        }
        match &self.extra {
            Extra::Open => Coverage::Open,
            Extra::Closed => Coverage::Closed,
            Extra::Schema(schema) => Coverage::Schemas(vec![schema.clone()]),
        }
    }

    /// Whether every property name is unconstrained.
    fn fully_open(&self) -> bool {
        self.patterns.is_empty() && matches!(self.extra, Extra::Open)
    }

    /// Whether no undeclared property is allowed.
    fn fully_closed(&self) -> bool {
        self.patterns.is_empty() && matches!(self.extra, Extra::Closed)
    }
}

fn has_default(node: &Node<'_>) -> Result<bool, SchemaError> {
    Ok(node.get("default").is_some() || resolved(node)?.get("default").is_some())
}

fn unknown_pattern(out: &mut Diffs, source: &str) {
    push(
        out,
        "/patternProperties",
        DifferenceKind::Unsupported {
            keyword: "patternProperties".to_owned(),
        },
        format!(
            "the pattern `{source}` uses regular-expression syntax this checker does not evaluate"
        ),
    );
}

pub(crate) fn compare(
    walker: &mut Walker,
    out: &mut Diffs,
    w: &Node<'_>,
    r: &Node<'_>,
) -> Result<(), SchemaError> {
    let ws = shape(w)?;
    let rs = shape(r)?;
    let mut names: Vec<&str> = Vec::new();
    for name in ws
        .properties
        .iter()
        .map(|(n, _)| *n)
        .chain(rs.properties.iter().map(|(n, _)| *n))
        .chain(ws.required.iter().copied())
        .chain(rs.required.iter().copied())
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let at = format!("/properties/{}", escape(name));
        let required_at = format!("/required/{}", escape(name));
        let (w_req, r_req) = (ws.requires(name), rs.requires(name));
        match (ws.property(name), rs.property(name)) {
            (Some(a), Some(b)) => {
                let with_default = !w_req && r_req && has_default(b)?;
                required_changed(out, required_at, name, (w_req, r_req), with_default);
                let diffs = walker.compare(a, b)?;
                out.extend(prefixed(&at, diffs));
            }
            (None, Some(b)) => added(walker, out, &at, name, b, r_req, ws.coverage(name))?,
            (Some(a), None) => {
                removed(walker, out, &at, name, a, w_req, rs.coverage(name))?;
                if r_req && !w_req {
                    push(
                        out,
                        required_at,
                        DifferenceKind::RequiredAttributeAdded,
                        name,
                    );
                }
            }
            (None, None) => required_changed(out, required_at, name, (w_req, r_req), false),
        }
    }
    patterns(walker, out, &ws, &rs)?;
    additional(walker, out, &ws, &rs)?;
    Bound::MaxProperties.compare(out, w, r)?;
    Bound::MinProperties.compare(out, w, r)?;
    Ok(())
}

/// A change of whether `name` is listed in `required`: `required` says it
/// for the writer and the reader; `with_default`, whether the reader's
/// schema of the property has a `default`.
fn required_changed(
    out: &mut Diffs,
    at: String,
    name: &str,
    required: (bool, bool),
    with_default: bool,
) {
    let kind = match required {
        (true, false) => DifferenceKind::RequiredAttributeRemoved,
        (false, true) if with_default => DifferenceKind::RequiredAttributeWithDefaultAdded,
        (false, true) => DifferenceKind::RequiredAttributeAdded,
        _ => return,
    };
    push(out, at, kind, name);
}

/// A property only the reader declares; `coverage` is what the writer
/// allowed under that name.
fn added(
    walker: &mut Walker,
    out: &mut Diffs,
    at: &str,
    name: &str,
    schema: &Node<'_>,
    required: bool,
    coverage: Coverage<'_>,
) -> Result<(), SchemaError> {
    let presence = match (required, required && has_default(schema)?) {
        (false, _) => Presence::Optional,
        (true, true) => Presence::RequiredWithDefault,
        (true, false) => Presence::Required,
    };
    let covering = match coverage {
        Coverage::Unknown(source) => {
            unknown_pattern(out, &source);
            return Ok(());
        }
        Coverage::Open => {
            let kind = if presence != Presence::Required && resolved(schema)?.accepts_anything() {
                DifferenceKind::PropertyWithEmptySchemaAddedToOpenContentModel
            } else {
                DifferenceKind::PropertyAddedToOpenContentModel { presence }
            };
            push(out, at, kind, name);
            return Ok(());
        }
        Coverage::Closed => None,
        Coverage::Schemas(schemas) => Some(schemas),
    };
    if let Some(schemas) = covering {
        // The writer's data under this name satisfied every covering
        // schema; one of them is enough for the reader (a weaker writer).
        let mut best: Option<Diffs> = None;
        for covering in &schemas {
            let diffs = walker.compare(covering, schema)?;
            let better = match &best {
                None => true,
                Some(current) => walker.compatible(&diffs) && !walker.compatible(current),
            };
            if better {
                best = Some(diffs);
            }
        }
        covered(
            walker,
            out,
            at,
            Some(name),
            best.unwrap_or_default(),
            [
                DifferenceKind::PropertyAddedIsCoveredByPartiallyOpenContentModel,
                DifferenceKind::PropertyAddedNotCoveredByPartiallyOpenContentModel,
            ],
        );
    }
    let kind = match presence {
        Presence::Optional => DifferenceKind::OptionalPropertyAddedToUnopenContentModel,
        Presence::RequiredWithDefault => {
            DifferenceKind::RequiredPropertyWithDefaultAddedToUnopenContentModel
        }
        Presence::Required => DifferenceKind::RequiredPropertyAddedToUnopenContentModel,
    };
    push(out, at, kind, name);
    Ok(())
}

/// A property only the writer declares; `coverage` is what the reader
/// allows under that name.
fn removed(
    walker: &mut Walker,
    out: &mut Diffs,
    at: &str,
    name: &str,
    schema: &Node<'_>,
    required: bool,
    coverage: Coverage<'_>,
) -> Result<(), SchemaError> {
    match coverage {
        Coverage::Unknown(source) => unknown_pattern(out, &source),
        Coverage::Open => push(
            out,
            at,
            DifferenceKind::PropertyRemovedFromOpenContentModel,
            name,
        ),
        Coverage::Closed => {
            let kind = if resolved(schema)?.is_false() {
                DifferenceKind::PropertyWithFalseRemovedFromClosedContentModel
            } else {
                DifferenceKind::PropertyRemovedFromClosedContentModel { required }
            };
            push(out, at, kind, name);
        }
        Coverage::Schemas(schemas) => {
            // The reader applies every covering schema.
            let mut diffs = Vec::new();
            for covering in &schemas {
                diffs.extend(walker.compare(schema, covering)?);
            }
            covered(
                walker,
                out,
                at,
                Some(name),
                diffs,
                [
                    DifferenceKind::PropertyRemovedIsCoveredByPartiallyOpenContentModel,
                    DifferenceKind::PropertyRemovedNotCoveredByPartiallyOpenContentModel,
                ],
            );
        }
    }
    Ok(())
}

/// `patternProperties` entries, matched by their pattern text.
fn patterns(
    walker: &mut Walker,
    out: &mut Diffs,
    ws: &Shape<'_>,
    rs: &Shape<'_>,
) -> Result<(), SchemaError> {
    for (source, w_schema, _) in &ws.patterns {
        let at = format!("/patternProperties/{}", escape(source));
        match rs.patterns.iter().find(|(s, _, _)| s == source) {
            Some((_, r_schema, _)) => {
                let diffs = walker.compare(w_schema, r_schema)?;
                out.extend(prefixed(&at, diffs));
            }
            None => {
                let kind = if rs.fully_open() {
                    DifferenceKind::PatternPropertyRemovedFromOpenContentModel
                } else {
                    DifferenceKind::PatternPropertyRemoved
                };
                push(out, at, kind, *source);
            }
        }
    }
    for (source, r_schema, pattern) in &rs.patterns {
        if ws.patterns.iter().any(|(s, _, _)| s == source) {
            continue;
        }
        let at = format!("/patternProperties/{}", escape(source));
        let kind = if ws.fully_closed() {
            DifferenceKind::PatternPropertyAddedToClosedContentModel
        } else if ws.fully_open() {
            DifferenceKind::PatternPropertyAddedToOpenContentModel
        } else {
            DifferenceKind::PatternPropertyAdded
        };
        push(out, at, kind, *source);
        // A pattern applies to declared properties too: the writer's
        // values for a property the new pattern matches must fit it.
        let Some(pattern) = pattern else {
            unknown_pattern(out, source);
            continue;
        };
        for (name, w_schema) in &ws.properties {
            let Some(matches) = pattern.is_match(name) else {
                unknown_pattern(out, source);
                continue;
            };
            if matches {
                let diffs = walker.compare(w_schema, r_schema)?;
                out.extend(prefixed(&format!("/properties/{}", escape(name)), diffs));
            }
        }
    }
    Ok(())
}

/// `additionalProperties`, as Confluent compares it.
fn additional(
    walker: &mut Walker,
    out: &mut Diffs,
    ws: &Shape<'_>,
    rs: &Shape<'_>,
) -> Result<(), SchemaError> {
    let at = "/additionalProperties";
    match (&ws.extra, &rs.extra) {
        (Extra::Open, Extra::Open) | (Extra::Closed, Extra::Closed) => {}
        (Extra::Closed, _) => push(out, at, DifferenceKind::AdditionalPropertiesAdded, ""),
        (_, Extra::Closed) => push(out, at, DifferenceKind::AdditionalPropertiesRemoved, ""),
        (Extra::Open, Extra::Schema(_)) => {
            push(out, at, DifferenceKind::AdditionalPropertiesNarrowed, "")
        }
        (Extra::Schema(_), Extra::Open) => {
            push(out, at, DifferenceKind::AdditionalPropertiesExtended, "")
        }
        (Extra::Schema(a), Extra::Schema(b)) => {
            let diffs = walker.compare(a, b)?;
            out.extend(prefixed(at, diffs));
        }
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
    fn a_name_no_pattern_matches_is_open_when_additional_properties_is_absent() {
        // Confluent treats any patternProperties as "not open"; the keywords
        // leave `b` unconstrained, so adding it is an open-model addition.
        let kinds = found(
            json!({"type": "object", "patternProperties": {"^x_": {"type": "string"}}}),
            json!({"type": "object", "patternProperties": {"^x_": {"type": "string"}}, "properties": {"b": {"type": "integer"}}}),
        );
        assert_eq!(
            kinds,
            vec![(
                "/properties/b".to_owned(),
                K::PropertyAddedToOpenContentModel {
                    presence: Presence::Optional
                }
            )]
        );
    }

    #[test]
    fn every_matching_pattern_covers_a_removed_property() {
        let reader = json!({"type": "object", "additionalProperties": false, "patternProperties": {
            "^n": {"type": "number"},
            "_id$": {"type": "integer"}
        }});
        // `n_id` must be a number and an integer for the reader: an integer
        // passes, a number does not.
        let writer = |t: &str| json!({"type": "object", "additionalProperties": false, "properties": {"n_id": {"type": t}}});
        let removed = |t: &str| {
            found(writer(t), reader.clone())
                .into_iter()
                .filter(|(p, _)| p == "/properties/n_id")
                .map(|(_, k)| k)
                .collect::<Vec<_>>()
        };
        assert!(
            removed("integer").contains(&K::PropertyRemovedIsCoveredByPartiallyOpenContentModel)
        );
        assert!(
            removed("number").contains(&K::PropertyRemovedNotCoveredByPartiallyOpenContentModel)
        );
    }

    #[test]
    fn a_pattern_the_checker_cannot_read_is_unsupported() {
        let kinds = found(
            json!({"type": "object", "additionalProperties": false, "patternProperties": {"(?<=a)b": {}}}),
            json!({"type": "object", "additionalProperties": false, "patternProperties": {"(?<=a)b": {}}, "properties": {"ab": {}}}),
        );
        assert!(kinds.contains(&(
            "/patternProperties".to_owned(),
            K::Unsupported {
                keyword: "patternProperties".into()
            }
        )));
    }

    #[test]
    fn a_new_pattern_applies_to_declared_properties_too() {
        let kinds = found(
            json!({"type": "object", "additionalProperties": false, "properties": {"S_a": {"type": "string"}}}),
            json!({"type": "object", "additionalProperties": false, "properties": {"S_a": {"type": "string"}},
                   "patternProperties": {"^S_": {"type": "integer"}}}),
        );
        assert!(kinds.contains(&(
            "/patternProperties/^S_".to_owned(),
            K::PatternPropertyAddedToClosedContentModel
        )));
        assert!(kinds.contains(&("/properties/S_a".to_owned(), K::TypeChanged)));
    }

    #[test]
    fn required_names_without_a_declaration_count() {
        assert_eq!(
            found(
                json!({"type": "object"}),
                json!({"type": "object", "required": ["id"]})
            ),
            vec![("/required/id".to_owned(), K::RequiredAttributeAdded)]
        );
        assert_eq!(
            found(
                json!({"type": "object", "required": ["id"]}),
                json!({"type": "object"})
            ),
            vec![("/required/id".to_owned(), K::RequiredAttributeRemoved)]
        );
    }
}
