//! Whether one JSON Schema can replace another: Confluent Schema Registry's
//! rules for JSON Schema, standalone.
//!
//! [`check`] compares an old and a new schema under a [`Mode`] (`BACKWARD`,
//! `FORWARD`, `FULL`, their transitive forms, `NONE`) and returns a
//! [`Report`] listing every [`Difference`], each typed
//! ([`DifferenceKind`], named after Confluent's `Difference.Type`), placed
//! (a JSON pointer), judged (compatible or not under the [`Policy`]) and
//! explained. [`check_history`] checks the newest of several versions the
//! way the registry does on registration.
//!
//! A backward check asks whether a reader using the new schema accepts
//! everything the old one allowed; a forward check is the same question with
//! the schemas swapped; full asks both.
//!
//! ```
//! use ecst_schema::compat::{check, check_with, DifferenceKind, Mode, Policy};
//! use serde_json::json;
//!
//! let v1 = json!({"type": "object", "properties": {"name": {"type": "string"}}});
//! let v2 = json!({"type": "object", "properties": {
//!     "name": {"type": "string"},
//!     "email": {"type": "string"}
//! }});
//!
//! // v1 is an open content model: data written with it may already hold an
//! // `email` that is not a string, so the strict policy refuses.
//! let report = check(&v1, &v2, Mode::Backward)?;
//! assert!(!report.is_compatible());
//! let difference = &report.differences()[0];
//! assert_eq!(difference.path, "#/properties/email");
//! assert!(matches!(difference.kind, DifferenceKind::PropertyAddedToOpenContentModel { .. }));
//! println!("{report}");
//!
//! // The lenient policy assumes writers only write what they declare.
//! assert!(check_with(&v1, &v2, Mode::Backward, Policy::Lenient)?.is_compatible());
//! // And an old reader ignores the new, optional property.
//! assert!(check(&v1, &v2, Mode::Forward)?.is_compatible());
//! # Ok::<(), ecst_schema::compat::SchemaError>(())
//! ```
//!
//! # What is compared
//!
//! Annotations (`title`, `description`, `default`, `examples`, …) never
//! break a reader. `type` (with `integer` inside `number`), `enum` and
//! `const`, `not`, numeric and string bounds, `multipleOf`, `pattern`,
//! `format`, objects (`properties`, `required`, `additionalProperties`,
//! `patternProperties`, `minProperties`, `maxProperties`), arrays (`items`,
//! `prefixItems`, draft-07 tuples and `additionalItems`, `minItems`,
//! `maxItems`, `uniqueItems`), `allOf`/`anyOf`/`oneOf` (sub-schemas paired
//! wherever they sit in the list) and `$ref` into the same document (`#`,
//! `#/$defs/…`, `#/definitions/…`), followed on both sides; a recursive type
//! is compared once per pair of definitions. Any other keyword
//! (`if`/`then`/`else`, `dependentSchemas`, `contains`,
//! `unevaluatedProperties`, custom ones) that differs between the schemas
//! is reported as [`DifferenceKind::Unsupported`], never compatible: the
//! checker does not claim compatibility for a change it does not
//! understand.
//!
//! # Where this checker departs from Confluent
//!
//! - `oneOf` overlap (strict policy only): `oneOf` rejects a value that
//!   two alternatives accept, so adding or widening an alternative of the
//!   reader's `oneOf` is only compatible when the checker can show the
//!   alternatives that changed exclude the others (different JSON types or
//!   `const`/`enum` values, or a required tag property, as serde's tagged
//!   enums write them). Otherwise it reports
//!   [`DifferenceKind::OneOfAlternativesOverlap`], incompatible. Confluent
//!   accepts such changes (`SUM_TYPE_EXTENDED`); so does the lenient policy.
//! - Numbers are compared exactly, never through a rounding `f64` or a
//!   tolerance: integers as integers, an integer against a fraction by the
//!   fraction's exact binary value, and `multipleOf` by exact division of
//!   those values. A `multipleOf` change between decimal fractions with no
//!   exact binary value (`0.3` to `0.1`) cannot be shown to be a
//!   refinement and is reported as a change (`MULTIPLE_OF_CHANGED`).
//! - `format`, `const`, `patternProperties` and keywords the checker does
//!   not evaluate are compared (Confluent ignores them); a change to an
//!   unevaluated keyword is never compatible.
//!
//! # Limits
//!
//! The checker never recurses per character of a name or per link of a
//! `$ref` chain, and bounds its work: comparisons nest at most 64 levels
//! ([`SchemaErrorReason::TooDeep`]), a `$ref` chain has at most 1,000
//! links ([`SchemaErrorReason::RefChainTooLong`]), one check makes at most
//! 100,000 sub-comparisons ([`SchemaErrorReason::TooManyComparisons`]), and
//! a `patternProperties` regex that takes too many steps to decide is not
//! judged. Each `$ref` is followed once per document. Every schema the
//! checker accepts is compatible with itself.

mod arrays;
mod bounds;
mod change;
mod combinators;
mod content;
mod diff;
mod disjoint;
mod error;
mod explain;
mod kind;
mod mode;
mod node;
mod number;
mod objects;
mod pattern;
mod refs;
mod report;
mod rules;
mod scalars;

use serde_json::Value;

pub use error::{SchemaError, SchemaErrorReason};
pub use kind::{DifferenceKind, Presence};
pub use mode::{Mode, ParseModeError, Policy};
pub use report::{Difference, Direction, Report};

use diff::Walker;
use node::Doc;
use refs::RefCache;

/// Checks `new` against `old` under `mode` with Confluent's default, strict
/// policy. A transitive mode behaves as its plain form: there is only one
/// earlier version.
///
/// # Errors
///
/// A [`SchemaError`] when either schema cannot be walked: a `$ref` that
/// points nowhere, out of the document, or in a loop, or a value where a
/// schema belongs that is not one.
pub fn check(old: &Value, new: &Value, mode: Mode) -> Result<Report, SchemaError> {
    check_with(old, new, mode, Policy::Strict)
}

/// [`check`] with a chosen [`Policy`].
///
/// # Errors
///
/// As [`check`].
pub fn check_with(
    old: &Value,
    new: &Value,
    mode: Mode,
    policy: Policy,
) -> Result<Report, SchemaError> {
    let mut differences = Vec::new();
    let (old_refs, new_refs) = (RefCache::default(), RefCache::default());
    let old = Doc {
        root: old,
        version: 0,
        refs: &old_refs,
    };
    let new = Doc {
        root: new,
        version: 1,
        refs: &new_refs,
    };
    compare(old, new, mode, policy, &mut differences)?;
    Ok(Report {
        mode,
        policy,
        differences,
        compared: if mode == Mode::None {
            Vec::new()
        } else {
            vec![0]
        },
    })
}

/// Checks the newest schema of `history` (oldest first, newest last) the
/// way the registry does when it is registered: against every earlier
/// version for the transitive modes, against the one before it otherwise.
/// A history of fewer than two versions is compatible.
///
/// # Errors
///
/// As [`check`]; only the versions compared are read.
pub fn check_history(history: &[Value], mode: Mode, policy: Policy) -> Result<Report, SchemaError> {
    let mut differences = Vec::new();
    let mut compared = Vec::new();
    if let Some((newest, earlier)) = history.split_last() {
        if mode != Mode::None && !earlier.is_empty() {
            let new_refs = RefCache::default();
            let new = Doc {
                root: newest,
                version: earlier.len(),
                refs: &new_refs,
            };
            let first = if mode.is_transitive() {
                0
            } else {
                earlier.len() - 1
            };
            for (version, old) in earlier.iter().enumerate().skip(first) {
                let old_refs = RefCache::default();
                compare(
                    Doc {
                        root: old,
                        version,
                        refs: &old_refs,
                    },
                    new,
                    mode,
                    policy,
                    &mut differences,
                )?;
                compared.push(version);
            }
        }
    }
    Ok(Report {
        mode,
        policy,
        differences,
        compared,
    })
}

fn compare(
    old: Doc<'_>,
    new: Doc<'_>,
    mode: Mode,
    policy: Policy,
    out: &mut Vec<Difference>,
) -> Result<(), SchemaError> {
    for (direction, wanted) in [
        (Direction::Backward, mode.checks_backward()),
        (Direction::Forward, mode.checks_forward()),
    ] {
        if !wanted {
            continue;
        }
        let (writer, reader) = match direction {
            Direction::Backward => (old, new),
            Direction::Forward => (new, old),
        };
        let found = Walker::new(policy).diff(writer, reader)?;
        out.extend(found.into_iter().map(|raw| {
            let compatible = rules::is_compatible(&raw.kind, policy);
            // Told as the change from the old schema to the new one.
            let detail = change::detail(&raw.detail, direction);
            let forward = match direction {
                Direction::Forward => change::forward_explanation(&raw.kind, &detail, compatible),
                Direction::Backward => None,
            };
            let explanation = forward.unwrap_or_else(|| {
                explain::explain(
                    &raw.kind,
                    &detail,
                    direction.writer(),
                    direction.reader(),
                    compatible,
                )
            });
            Difference {
                path: format!("#{}", raw.path),
                kind: raw.kind,
                compatible,
                direction,
                explanation,
                against: old.version,
            }
        }));
    }
    Ok(())
}
