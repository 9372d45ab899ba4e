//! The walk: two schemas in, typed differences out.
//!
//! [`Walker::compare`] takes a *writer* schema (the one data was written
//! with) and a *reader* schema (the one it is read with) and lists how the
//! reader differs, in Confluent's terms. A backward check walks (old, new), a
//! forward check (new, old). Whether each difference is compatible is the
//! policy's business ([`rules`](super::rules)); the walk only asks it when a
//! decision depends on whether a sub-comparison passed (a `oneOf` pairing, a
//! property covered by `additionalProperties`).
//!
//! `$ref`s are followed on both sides. Every pair of schemas reached through
//! a `$ref` is compared once and remembered; a pair met again while it is
//! still being compared (a recursive type) is assumed compatible there, and
//! the comparison further up decides.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::error::{SchemaError, SchemaErrorReason};
use super::kind::DifferenceKind;
use super::mode::Policy;
use super::node::{Doc, Node, TypeSet, CONTAINERS, METADATA, UNDERSTOOD};
#[cfg(test)]
use super::refs::RefCache;
use super::refs::{json_eq, resolve, same_meaning};
use super::{arrays, combinators, objects, rules, scalars};

/// How deep comparisons may nest before the walk gives up. A property
/// costs one level, an `anyOf` alternative another, so this is some 32 to
/// 64 levels of nested types: more than real schemas use (serde_json parses
/// at most 128 levels of JSON), and far from the end of a 2 MiB thread stack
/// even in a debug build, where 160 levels overflow it.
const MAX_DEPTH: usize = 64;

/// How many sub-comparisons one walk may make. A schema of hundreds of
/// types takes a few thousand (pairs reached through `$ref` are compared
/// once); alternatives nested in alternatives multiply, and this bounds the
/// time such a schema can take (about a second in a debug build).
const MAX_COMPARISONS: usize = 100_000;

/// One difference as the walk finds it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RawDiff {
    /// JSON pointer relative to the pair being compared: `""` for the pair
    /// itself, `"/properties/email"` below it.
    pub(crate) path: String,
    pub(crate) kind: DifferenceKind,
    /// Values for the explanation: `"10 -> 5"`, a property name, the reason
    /// a sub-comparison failed.
    pub(crate) detail: String,
}

pub(crate) type Diffs = Vec<RawDiff>;

/// Adds a difference at `path` (relative, `""` for here).
pub(crate) fn push(
    out: &mut Diffs,
    path: impl Into<String>,
    kind: DifferenceKind,
    detail: impl Into<String>,
) {
    out.push(RawDiff {
        path: path.into(),
        kind,
        detail: detail.into(),
    });
}

/// `diffs`, found for a schema at `prefix` below the current one.
pub(crate) fn prefixed(prefix: &str, diffs: Diffs) -> impl Iterator<Item = RawDiff> + '_ {
    diffs.into_iter().map(move |mut d| {
        d.path.insert_str(0, prefix);
        d
    })
}

/// Whether `kind` only reports an annotation.
pub(crate) fn is_annotation(kind: &DifferenceKind) -> bool {
    matches!(
        kind,
        DifferenceKind::IdChanged
            | DifferenceKind::TitleChanged
            | DifferenceKind::DescriptionChanged
            | DifferenceKind::DefaultChanged
            | DifferenceKind::MetadataChanged { .. }
    )
}

/// `diffs` without the annotation changes of the compared pair itself, for
/// sub-comparisons whose outer schemas were compared on their own.
pub(crate) fn without_own_annotations(diffs: Diffs) -> Diffs {
    diffs
        .into_iter()
        .filter(|d| !(d.path.is_empty() && is_annotation(&d.kind)))
        .collect()
}

/// Compares schemas, remembering pairs reached through `$ref`.
pub(crate) struct Walker {
    policy: Policy,
    memo: HashMap<(String, String), Diffs>,
    in_progress: HashSet<(String, String)>,
    depth: usize,
    /// Sub-comparisons made so far.
    comparisons: usize,
}

impl Walker {
    pub(crate) fn new(policy: Policy) -> Self {
        Walker {
            policy,
            memo: HashMap::new(),
            in_progress: HashSet::new(),
            depth: 0,
            comparisons: 0,
        }
    }

    /// Every difference of `reader` from `writer`.
    pub(crate) fn diff(&mut self, writer: Doc<'_>, reader: Doc<'_>) -> Result<Diffs, SchemaError> {
        let w = Node::root(writer);
        let r = Node::root(reader);
        w.keywords()?;
        r.keywords()?;
        // The roots are a pair like any reached through `$ref`: a `$ref: "#"`
        // below them (schemars' `Box<Self>`) meets them in progress.
        let key = (w.id.clone(), r.id.clone());
        self.in_progress.insert(key.clone());
        let result = self.compare(&w, &r);
        self.in_progress.remove(&key);
        result
    }

    /// Whether all of `diffs` are compatible under the walk's policy.
    pub(crate) fn compatible(&self, diffs: &Diffs) -> bool {
        rules::all_compatible(diffs.iter().map(|d| &d.kind), self.policy)
    }

    /// `"properties/x: type changed (string -> number)"`: the first
    /// incompatible difference, for the detail of a failed sub-comparison
    /// (its path relative to the schemas compared).
    pub(crate) fn first_problem(&self, diffs: &Diffs) -> String {
        diffs
            .iter()
            .find(|d| !rules::is_compatible(&d.kind, self.policy))
            .map(|d| {
                let at = match d.path.strip_prefix('/') {
                    Some(path) => format!("{path}: "),
                    None => "the top level: ".to_owned(),
                };
                if d.detail.is_empty() {
                    format!("{at}{}", d.kind)
                } else {
                    format!("{at}{} ({})", d.kind, d.detail)
                }
            })
            .unwrap_or_default()
    }

    /// How badly a failed pairing fails, for naming the closest candidate:
    /// a different JSON type at the top counts more than anything below.
    pub(crate) fn distance(&self, diffs: &Diffs) -> (bool, usize) {
        let top_type = diffs.iter().any(|d| {
            d.path.is_empty()
                && matches!(
                    d.kind,
                    DifferenceKind::TypeChanged | DifferenceKind::TypeNarrowed
                )
        });
        let problems = diffs
            .iter()
            .filter(|d| !rules::is_compatible(&d.kind, self.policy))
            .count();
        (top_type, problems)
    }

    /// The differences of reader schema `r` from writer schema `w`, with
    /// paths relative to them.
    pub(crate) fn compare(&mut self, w: &Node<'_>, r: &Node<'_>) -> Result<Diffs, SchemaError> {
        if self.depth >= MAX_DEPTH {
            return Err(w.error(None, SchemaErrorReason::TooDeep { limit: MAX_DEPTH }));
        }
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(w.error(
                None,
                SchemaErrorReason::TooManyComparisons {
                    limit: MAX_COMPARISONS,
                },
            ));
        }
        let w_ref = resolve(w)?;
        let r_ref = resolve(r)?;
        let through_ref = w_ref.is_some() || r_ref.is_some();
        let w = w_ref.as_ref().unwrap_or(w);
        let r = r_ref.as_ref().unwrap_or(r);
        if !through_ref {
            return self.nested(|walker| walker.compare_resolved(w, r));
        }
        let key = (w.id.clone(), r.id.clone());
        if let Some(known) = self.memo.get(&key) {
            return Ok(known.clone());
        }
        if !self.in_progress.insert(key.clone()) {
            return Ok(Vec::new());
        }
        let result = self.nested(|walker| walker.compare_resolved(w, r));
        self.in_progress.remove(&key);
        let diffs = result?;
        self.memo.insert(key, diffs.clone());
        Ok(diffs)
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn compare_resolved(&mut self, w: &Node<'_>, r: &Node<'_>) -> Result<Diffs, SchemaError> {
        w.keywords()?;
        r.keywords()?;
        if w.is_false() {
            // The writer wrote nothing, so every reader reads it.
            return Ok(Vec::new());
        }
        if r.accepts_anything() {
            return Ok(annotations(w, r));
        }
        if r.is_false() {
            let mut out = Vec::new();
            push(
                &mut out,
                "",
                DifferenceKind::TypeNarrowed,
                "the reader's schema is `false`",
            );
            return Ok(out);
        }
        combinators::compare(self, w, r)
    }

    /// Compares two schemas neither of which has `allOf`, `anyOf` or
    /// `oneOf` (nor `$ref`): keyword by keyword.
    pub(crate) fn compare_plain(
        &mut self,
        w: &Node<'_>,
        r: &Node<'_>,
    ) -> Result<Diffs, SchemaError> {
        let mut out = annotations(w, r);
        let w_types = w.types()?;
        let r_types = r.types()?;
        if w_types != r_types {
            let kind = if w_types.is_subset_of(r_types) {
                DifferenceKind::TypeExtended
            } else if r_types.is_subset_of(w_types) {
                DifferenceKind::TypeNarrowed
            } else {
                DifferenceKind::TypeChanged
            };
            push(
                &mut out,
                "",
                kind,
                format!("{} -> {}", w_types.describe(), r_types.describe()),
            );
        }
        // Keywords about one JSON type matter only if both schemas admit it:
        // the type change itself is reported above.
        let common: TypeSet = w_types.intersection(r_types);
        values(&mut out, w, r)?;
        self.negation(&mut out, w, r)?;
        if common.has_number() {
            scalars::numbers(&mut out, w, r)?;
        }
        if common.has_string() {
            scalars::strings(&mut out, w, r)?;
        }
        if !common.is_empty() {
            scalars::format(&mut out, w, r)?;
        }
        if common.has_object() {
            objects::compare(self, &mut out, w, r)?;
        }
        if common.has_array() {
            arrays::compare(self, &mut out, w, r)?;
        }
        unsupported(&mut out, w, r);
        Ok(out)
    }

    /// `not`: the reader accepts more when its `not` matches less, so the
    /// two `not` schemas are compared the other way round.
    fn negation(&mut self, out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) -> Result<(), SchemaError> {
        match (w.schema_at("not")?, r.schema_at("not")?) {
            (None, None) => {}
            (Some(_), None) => push(out, "/not", DifferenceKind::NotRemoved, ""),
            (None, Some(_)) => push(out, "/not", DifferenceKind::NotAdded, ""),
            (Some(w_not), Some(r_not)) => {
                let reversed = self.compare(&r_not, &w_not)?;
                if reversed.iter().all(|d| is_annotation(&d.kind)) {
                    return Ok(());
                }
                if self.compatible(&reversed) {
                    push(out, "/not", DifferenceKind::NotTypeNarrowed, "");
                } else {
                    let why = self.first_problem(&reversed);
                    push(out, "/not", DifferenceKind::NotTypeExtended, why);
                }
            }
        }
        Ok(())
    }
}

/// Annotation keywords that differ.
pub(crate) fn annotations(w: &Node<'_>, r: &Node<'_>) -> Diffs {
    let mut out = Vec::new();
    for &keyword in METADATA {
        let (a, b) = (w.get(keyword), r.get(keyword));
        let differ = match (a, b) {
            (None, None) => false,
            (Some(a), Some(b)) => !json_eq(a, b),
            _ => true,
        };
        if !differ {
            continue;
        }
        let kind = match keyword {
            "$id" | "id" => DifferenceKind::IdChanged,
            "title" => DifferenceKind::TitleChanged,
            "description" => DifferenceKind::DescriptionChanged,
            "default" => DifferenceKind::DefaultChanged,
            other => DifferenceKind::MetadataChanged {
                keyword: other.to_owned(),
            },
        };
        push(&mut out, "", kind, "");
    }
    out
}

/// The values a schema allows by `enum` and `const`: `None` for any.
pub(crate) fn allowed(node: &Node<'_>) -> Result<Option<Vec<Value>>, SchemaError> {
    let listed = match node.get("enum") {
        None => None,
        Some(Value::Array(values)) => Some(values.clone()),
        Some(_) => {
            return Err(node.error(
                Some("enum"),
                SchemaErrorReason::InvalidKeyword {
                    keyword: "enum".to_owned(),
                    expected: "an array",
                },
            ))
        }
    };
    Ok(match (node.get("const"), listed) {
        (None, listed) => listed,
        (Some(value), None) => Some(vec![value.clone()]),
        (Some(value), Some(listed)) => Some(
            listed
                .into_iter()
                .filter(|v| json_eq(v, value))
                .take(1)
                .collect(),
        ),
    })
}

fn list(values: &[&Value]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = values.iter().take(SHOWN).map(|v| v.to_string()).collect();
    if values.len() > SHOWN {
        parts.push(format!("and {} more", values.len() - SHOWN));
    }
    parts.join(", ")
}

/// `enum` and `const`, compared as sets of allowed values.
fn values(out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) -> Result<(), SchemaError> {
    let path = |node: &Node<'_>| {
        if node.get("enum").is_some() {
            "/enum"
        } else {
            "/const"
        }
    };
    match (allowed(w)?, allowed(r)?) {
        (None, None) => {}
        (Some(_), None) => push(out, path(w), DifferenceKind::EnumRemoved, ""),
        (None, Some(values)) => {
            let shown: Vec<&Value> = values.iter().collect();
            push(
                out,
                path(r),
                DifferenceKind::EnumAdded,
                format!("only {} allowed", list(&shown)),
            );
        }
        (Some(old), Some(new)) => {
            let added: Vec<&Value> = new
                .iter()
                .filter(|v| !old.iter().any(|o| json_eq(o, v)))
                .collect();
            let removed: Vec<&Value> = old
                .iter()
                .filter(|v| !new.iter().any(|n| json_eq(n, v)))
                .collect();
            let detail = match (added.is_empty(), removed.is_empty()) {
                (true, true) => return Ok(()),
                (false, true) => format!("added {}", list(&added)),
                (true, false) => format!("removed {}", list(&removed)),
                (false, false) => format!("added {}; removed {}", list(&added), list(&removed)),
            };
            let kind = if removed.is_empty() {
                DifferenceKind::EnumArrayExtended
            } else if added.is_empty() {
                DifferenceKind::EnumArrayNarrowed
            } else if w.get("enum").is_none() && r.get("enum").is_none() {
                DifferenceKind::ConstChanged
            } else {
                DifferenceKind::EnumArrayChanged
            };
            push(out, path(r), kind, detail);
        }
    }
    Ok(())
}

/// Keywords the checker does not understand: any that differ is reported,
/// and is never compatible.
fn unsupported(out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) {
    // `true` has no keywords.
    let empty = serde_json::Map::new();
    let w_map = w.value.as_object().unwrap_or(&empty);
    let r_map = r.value.as_object().unwrap_or(&empty);
    unsupported_in(out, w, w_map, r, r_map);
}

fn unsupported_in(
    out: &mut Diffs,
    w: &Node<'_>,
    w_map: &serde_json::Map<String, Value>,
    r: &Node<'_>,
    r_map: &serde_json::Map<String, Value>,
) {
    let known =
        |k: &str| METADATA.contains(&k) || CONTAINERS.contains(&k) || UNDERSTOOD.contains(&k);
    let mut keywords: Vec<&String> = w_map
        .keys()
        .chain(r_map.keys())
        .filter(|k| !known(k))
        .collect();
    keywords.sort();
    keywords.dedup();
    for keyword in keywords {
        let same = match (w_map.get(keyword), r_map.get(keyword)) {
            (Some(a), Some(b)) => same_meaning(a, w.doc, b, r.doc),
            _ => false,
        };
        if !same {
            let detail = match (w_map.contains_key(keyword), r_map.contains_key(keyword)) {
                (true, false) => "removed",
                (false, true) => "added",
                _ => "changed",
            };
            push(
                out,
                format!("/{}", super::node::escape(keyword)),
                DifferenceKind::Unsupported {
                    keyword: keyword.clone(),
                },
                detail,
            );
        }
    }
}

/// Walks `old` (writer) against `new` (reader): the raw differences.
#[cfg(test)]
pub(crate) fn walk(old: &Value, new: &Value, policy: Policy) -> Result<Diffs, SchemaError> {
    let (old_refs, new_refs) = (RefCache::default(), RefCache::default());
    Walker::new(policy).diff(
        Doc {
            root: old,
            version: 0,
            refs: &old_refs,
        },
        Doc {
            root: new,
            version: 1,
            refs: &new_refs,
        },
    )
}

/// `(path, kind)` of every raw difference, strict policy.
#[cfg(test)]
pub(crate) fn found(old: Value, new: Value) -> Vec<(String, DifferenceKind)> {
    match walk(&old, &new, Policy::Strict) {
        Ok(diffs) => diffs.into_iter().map(|d| (d.path, d.kind)).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use DifferenceKind as K;

    fn at(path: &str, kind: DifferenceKind) -> (String, DifferenceKind) {
        (path.to_owned(), kind)
    }

    #[test]
    fn types_compare_as_sets() {
        assert_eq!(
            found(json!({"type": "integer"}), json!({"type": "number"})),
            vec![at("", K::TypeExtended)]
        );
        assert_eq!(
            found(
                json!({"type": ["string", "null"]}),
                json!({"type": "string"})
            ),
            vec![at("", K::TypeNarrowed)]
        );
        assert_eq!(
            found(json!({"type": "string"}), json!({"type": "number"})),
            vec![at("", K::TypeChanged)]
        );
        assert_eq!(
            found(json!({}), json!({"type": "object"})),
            vec![at("", K::TypeNarrowed)]
        );
        assert!(found(
            json!({"type": ["null", "string"]}),
            json!({"type": ["string", "null"]})
        )
        .is_empty());
    }

    #[test]
    fn keywords_of_a_type_only_one_side_admits_are_not_compared() {
        // The type change says it all; maxLength and minimum are moot.
        assert_eq!(
            found(
                json!({"type": "string", "maxLength": 3}),
                json!({"type": "integer", "minimum": 1})
            ),
            vec![at("", K::TypeChanged)]
        );
        // Both admit strings: the string bound is compared.
        assert_eq!(
            found(
                json!({"type": ["string", "integer"], "maxLength": 3}),
                json!({"type": "string", "maxLength": 2})
            ),
            vec![
                at("", K::TypeNarrowed),
                at("/maxLength", K::MaxLengthDecreased)
            ]
        );
    }

    #[test]
    fn false_and_true_schemas() {
        assert!(found(json!(false), json!({"type": "string"})).is_empty());
        assert!(found(json!({"type": "string"}), json!(true)).is_empty());
        assert_eq!(
            found(json!(true), json!(false)),
            vec![at("", K::TypeNarrowed)]
        );
        assert_eq!(
            found(json!(true), json!({"type": "string"})),
            vec![at("", K::TypeNarrowed)]
        );
    }

    #[test]
    fn enum_details_name_the_values() {
        let diffs = walk(
            &json!({"enum": ["a", "b"]}),
            &json!({"enum": ["a", "c"]}),
            Policy::Strict,
        )
        .unwrap();
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].kind, K::EnumArrayChanged);
        assert_eq!(diffs[0].detail, "added \"c\"; removed \"b\"");
        assert_eq!(found(json!({"const": 1}), json!({"const": 1.0})), vec![]);
    }

    #[test]
    fn annotations_are_reported_and_compatible() {
        let kinds = found(
            json!({"title": "a", "description": "x", "default": 1, "examples": [1], "type": "integer"}),
            json!({"title": "b", "description": "y", "default": 2, "examples": [2], "type": "integer"}),
        );
        assert_eq!(
            kinds,
            vec![
                at("", K::TitleChanged),
                at("", K::DescriptionChanged),
                at("", K::DefaultChanged),
                at(
                    "",
                    K::MetadataChanged {
                        keyword: "examples".into()
                    }
                ),
            ]
        );
        assert!(kinds
            .iter()
            .all(|(_, k)| rules::is_compatible(k, Policy::Strict)));
    }

    #[test]
    fn each_pair_of_definitions_is_compared_once() {
        // Ten properties all pointing at one recursive definition.
        let schema = |leaf: &str| {
            let props: serde_json::Map<String, Value> = (0..10)
                .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/T"})))
                .collect();
            json!({
                "type": "object",
                "properties": props,
                "$defs": {"T": {"type": "object", "properties": {
                    "leaf": {"type": leaf},
                    "again": {"$ref": "#/$defs/T"},
                    "root": {"$ref": "#"}
                }}}
            })
        };
        let mut walker = Walker::new(Policy::Strict);
        let (old, new) = (schema("integer"), schema("number"));
        let (old_refs, new_refs) = (RefCache::default(), RefCache::default());
        let diffs = walker
            .diff(
                Doc {
                    root: &old,
                    version: 0,
                    refs: &old_refs,
                },
                Doc {
                    root: &new,
                    version: 1,
                    refs: &new_refs,
                },
            )
            .unwrap();
        // One widening per property, found once and reused.
        assert_eq!(diffs.len(), 10);
        assert!(diffs
            .iter()
            .all(|d| d.kind == K::TypeExtended && d.path.ends_with("/leaf")));
        assert_eq!(walker.memo.len(), 1, "{:?}", walker.memo.keys());
        assert!(walker.in_progress.is_empty());
    }

    #[test]
    fn unsupported_keywords_are_compared_by_meaning() {
        assert!(found(
            json!({"if": {"type": "string"}}),
            json!({"if": {"type": "string"}})
        )
        .is_empty());
        assert_eq!(
            found(
                json!({"type": "array", "contains": {"type": "string"}}),
                json!({"type": "array"})
            ),
            vec![at(
                "/contains",
                K::Unsupported {
                    keyword: "contains".into()
                }
            )]
        );
        // A reader that accepts anything accepts it whatever the keyword.
        assert!(found(json!({"contains": {"type": "string"}}), json!({})).is_empty());
    }
}
