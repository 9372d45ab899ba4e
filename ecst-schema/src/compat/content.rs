//! Content models, in Confluent's terms: what an object allows for the
//! properties it does not declare, and an array for the items past its
//! tuple; and how content one side declares fares when the other side only
//! covers it with such a rule (a *partially open* content model).

use super::diff::{prefixed, push, Diffs, Walker};
use super::error::SchemaError;
use super::kind::DifferenceKind;
use super::node::Node;

/// What a schema allows where it declares nothing: an object's undeclared
/// properties (`additionalProperties`), an array's items past its tuple
/// (`items` after `prefixItems`, `additionalItems`).
pub(crate) enum ContentModel<'b> {
    /// Anything: the keyword is absent, or a schema that accepts anything
    /// (`true`, `{}`, only annotations).
    Open,
    /// Nothing: the keyword is `false`.
    Closed,
    /// What this schema accepts.
    Schema(Node<'b>),
}

impl<'b> ContentModel<'b> {
    /// The content model `node` writes under `keyword`.
    pub(crate) fn of(node: &'b Node<'_>, keyword: &str) -> Result<Self, SchemaError> {
        Ok(match node.schema_at(keyword)? {
            None => ContentModel::Open,
            Some(schema) if schema.is_false() => ContentModel::Closed,
            Some(schema) if schema.accepts_anything() => ContentModel::Open,
            Some(schema) => ContentModel::Schema(schema),
        })
    }
}

/// Reports content at `at` that one side declares and the other covers
/// only with a rule for undeclared content: `diffs` compares the declared
/// schema with the covering one(s). When they are compatible the content is
/// `covered` (and `diffs` are kept, placed at `at`); otherwise it is
/// `not_covered`, with the first problem. `name` is the property's name;
/// an array position has none.
pub(crate) fn covered(
    walker: &Walker,
    out: &mut Diffs,
    at: &str,
    name: Option<&str>,
    diffs: Diffs,
    [covered, not_covered]: [DifferenceKind; 2],
) {
    if walker.compatible(&diffs) {
        out.extend(prefixed(at, diffs));
        push(out, at, covered, name.unwrap_or_default());
    } else {
        let why = walker.first_problem(&diffs);
        let detail = match name {
            Some(name) => format!("`{name}` fails at {why}"),
            None => why,
        };
        push(out, at, not_covered, detail);
    }
}
