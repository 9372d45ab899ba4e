//! `allOf`, `anyOf` and `oneOf`.
//!
//! Confluent's rules: a sum (`anyOf`/`oneOf`) may gain alternatives and a
//! product (`allOf`) may lose schemas; the sub-schemas of the two sides are
//! paired one to one, wherever they sit in the list, by a maximum matching
//! over the pairs that are compatible. A plain schema that becomes one
//! alternative of a sum is compatible (`SUM_TYPE_EXTENDED`), and so is a
//! product that becomes one of its parts (`PRODUCT_TYPE_NARROWED`).
//!
//! Where only one side has a combinator the walk reasons on what the
//! keywords mean: a writer's `allOf` is merged into one schema (merging only
//! drops constraints, so a reader that accepts the merge accepts the
//! original), a reader's `allOf` is checked part by part, each alternative
//! of a writer's sum must be accepted by the reader, and each JSON type of a
//! writer's type array must be accepted by some alternative of the reader's
//! sum.

use serde_json::{Map, Value};

use super::diff::{
    annotations, is_annotation, prefixed, push, without_own_annotations, Diffs, Walker,
};
use super::disjoint::disjoint;
use super::error::SchemaError;
use super::kind::DifferenceKind;
use super::node::{Node, CONTAINERS, METADATA};
use super::refs::resolve;

const SUMS: &[&str] = &["anyOf", "oneOf"];

pub(crate) fn compare(
    walker: &mut Walker,
    w: &Node<'_>,
    r: &Node<'_>,
) -> Result<Diffs, SchemaError> {
    let w_all = w.schema_list("allOf")?;
    let r_all = r.schema_list("allOf")?;
    match (w_all, r_all) {
        (Some(w_all), Some(r_all)) => {
            let mut out = pair_up(walker, "allOf", "allOf", &w_all, &r_all)?;
            let w_rest = w.without(&["allOf"], "rest");
            let r_rest = r.without(&["allOf"], "rest");
            out.extend(walker.compare(&w_rest, &r_rest)?);
            Ok(out)
        }
        (Some(w_all), None) => writer_product(walker, w, r, &w_all),
        (None, Some(r_all)) => reader_product(walker, w, r, &r_all),
        (None, None) => sums(walker, w, r),
    }
}

/// Which of `anyOf`/`oneOf` a schema has.
fn sum_keywords(node: &Node<'_>) -> Vec<&'static str> {
    SUMS.iter()
        .copied()
        .filter(|k| node.get(k).is_some())
        .collect()
}

fn sums(walker: &mut Walker, w: &Node<'_>, r: &Node<'_>) -> Result<Diffs, SchemaError> {
    let w_sums = sum_keywords(w);
    let r_sums = sum_keywords(r);
    match (w_sums.as_slice(), r_sums.as_slice()) {
        ([], []) => walker.compare_plain(w, r),
        ([w_kw], [r_kw]) => {
            let (w_kw, r_kw) = (*w_kw, *r_kw);
            let w_list = w.schema_list(w_kw)?.unwrap_or_default();
            let r_list = r.schema_list(r_kw)?.unwrap_or_default();
            let mut out = Vec::new();
            if w_kw != r_kw {
                // Confluent's compareCriteria: anything may become anyOf, a
                // single schema may become oneOf; anyOf to a many-schema
                // oneOf can reject data that matches two alternatives.
                if r_kw == "anyOf" || w_list.len() == 1 {
                    push(
                        &mut out,
                        "",
                        DifferenceKind::CombinedTypeExtended,
                        format!("{w_kw} -> {r_kw}"),
                    );
                } else {
                    push(
                        &mut out,
                        "",
                        DifferenceKind::CombinedTypeChanged,
                        format!("{w_kw} -> {r_kw}"),
                    );
                    return Ok(out);
                }
            }
            let w_rest = w.without(SUMS, "rest");
            let r_rest = r.without(SUMS, "rest");
            out.extend(walker.compare(&w_rest, &r_rest)?);
            out.extend(pair_up(walker, w_kw, r_kw, &w_list, &r_list)?);
            Ok(out)
        }
        ([], [r_kw]) => reader_sum(walker, w, r, r_kw),
        ([w_kw], []) => writer_sum(walker, w, r, w_kw),
        (_, [_, _]) => {
            // The reader has both: it requires both, so check each.
            let mut out = walker.compare(w, &r.without(&["oneOf"], "anyOf-only"))?;
            let one = walker.compare(w, &r.without(&["anyOf"], "oneOf-only"))?;
            out.extend(
                one.into_iter()
                    .filter(|d| !out.contains(d))
                    .collect::<Vec<_>>(),
            );
            Ok(out)
        }
        ([_, _], r_sums) => {
            // The writer has both: dropping one only widens what it wrote.
            let drop = if r_sums.contains(&"anyOf") {
                "oneOf"
            } else {
                "anyOf"
            };
            walker.compare(&w.without(&[drop], "one-sum"), r)
        }
        _ => walker.compare_plain(w, r),
    }
}

/// The reader has a sum the writer lacks: each of the writer's JSON types
/// (or the writer's schema as a whole) must be accepted by some alternative.
fn reader_sum(
    walker: &mut Walker,
    w: &Node<'_>,
    r: &Node<'_>,
    r_kw: &str,
) -> Result<Diffs, SchemaError> {
    let alternatives = r.schema_list(r_kw)?.unwrap_or_default();
    let rest = r.without(SUMS, "rest");
    let mut out = if rest.accepts_anything() {
        annotations(w, &rest)
    } else {
        walker.compare(w, &rest)?
    };
    let mut all_accepted = true;
    for (label, part) in split_types(w)? {
        let mut closest: Option<(usize, (bool, usize), Diffs)> = None;
        let mut accepted = None;
        for (j, alternative) in alternatives.iter().enumerate() {
            let diffs = walker.compare(&part, alternative)?;
            if walker.compatible(&diffs) {
                accepted = Some((j, diffs));
                break;
            }
            let distance = walker.distance(&diffs);
            if closest.as_ref().is_none_or(|(_, best, _)| distance < *best) {
                closest = Some((j, distance, diffs));
            }
        }
        match accepted {
            Some((j, diffs)) => {
                out.extend(prefixed(
                    &format!("/{r_kw}/{j}"),
                    without_own_annotations(diffs),
                ));
            }
            None => {
                all_accepted = false;
                let mut detail = format!("no alternative of the reader's {r_kw} accepts {label}");
                if let Some((j, _, diffs)) = closest {
                    detail.push_str(&format!(
                        "; the closest, alternative {j}, fails at {}",
                        walker.first_problem(&diffs)
                    ));
                }
                push(
                    &mut out,
                    format!("/{r_kw}"),
                    DifferenceKind::CombinedTypeSubschemasChanged,
                    detail,
                );
            }
        }
    }
    if all_accepted && alternatives.len() > 1 {
        push(
            &mut out,
            "",
            DifferenceKind::SumTypeExtended,
            format!("one of {} alternatives", alternatives.len()),
        );
    }
    if r_kw == "oneOf" {
        // The writer's schema is one alternative: every pair of the
        // reader's may now both match what it wrote.
        let r_list = distinct(&alternatives);
        let unmatched = vec![Vec::new(); r_list.len()];
        one_of_overlaps(&mut out, &[], &alternatives, &r_list, &unmatched);
    }
    Ok(out)
}

/// A writer schema with a type array, split into one schema per type, so
/// that `["string", "null"]` can be matched against `anyOf: [string, null]`.
fn split_types<'a>(w: &Node<'a>) -> Result<Vec<(String, Node<'a>)>, SchemaError> {
    let names = w.types()?.names();
    let is_array = matches!(w.get("type"), Some(Value::Array(items)) if items.len() > 1);
    if !is_array || names.len() < 2 {
        return Ok(vec![("the writer's schema".to_owned(), w.clone())]);
    }
    let mut parts = Vec::with_capacity(names.len());
    for name in names {
        let mut value = w.value.as_ref().clone();
        if let Some(map) = value.as_object_mut() {
            map.insert("type".to_owned(), Value::String(name.to_owned()));
        }
        parts.push((
            format!("the writer's `{name}` values"),
            w.derived(value, &format!("type={name}")),
        ));
    }
    Ok(parts)
}

/// The writer has a sum the reader lacks: the reader must accept each
/// alternative (with the writer's other keywords).
fn writer_sum(
    walker: &mut Walker,
    w: &Node<'_>,
    r: &Node<'_>,
    w_kw: &str,
) -> Result<Diffs, SchemaError> {
    let alternatives = w.schema_list(w_kw)?.unwrap_or_default();
    let rest = keywords_without(w, SUMS);
    let mut out = annotations(w, r);
    for (i, alternative) in alternatives.iter().enumerate() {
        let diffs = if only_annotations(&rest) {
            walker.compare(alternative, r)?
        } else {
            let resolved = resolve(alternative)?;
            let part = resolved.as_ref().unwrap_or(alternative);
            let merged = merge_writer(Value::Object(rest.clone()), part.value.as_ref());
            walker.compare(&w.derived(merged, &format!("{w_kw}{i}")), r)?
        };
        if walker.compatible(&diffs) {
            out.extend(prefixed(
                &format!("/{w_kw}/{i}"),
                without_own_annotations(diffs),
            ));
        } else {
            let why = walker.first_problem(&diffs);
            push(
                &mut out,
                format!("/{w_kw}/{i}"),
                DifferenceKind::SumTypeNarrowed,
                format!("the reader rejects this alternative at {why}"),
            );
        }
    }
    Ok(out)
}

/// The writer has `allOf`, the reader not: merge the parts into the
/// writer's schema. If the merge is not accepted, Confluent's rule: any one
/// part that the reader accepts is enough (`PRODUCT_TYPE_NARROWED`).
fn writer_product(
    walker: &mut Walker,
    w: &Node<'_>,
    r: &Node<'_>,
    parts: &[Node<'_>],
) -> Result<Diffs, SchemaError> {
    let rest = keywords_without(w, &["allOf"]);
    let mut resolved = Vec::with_capacity(parts.len());
    for part in parts {
        resolved.push(match resolve(part)? {
            Some(target) => target.value.into_owned(),
            None => part.value.as_ref().clone(),
        });
    }
    let merged = resolved
        .iter()
        .fold(Value::Object(rest.clone()), |acc, part| {
            merge_writer(acc, part)
        });
    let whole = walker.compare(&w.derived(merged, "allOf*"), r)?;
    if walker.compatible(&whole) || parts.len() == 1 {
        return Ok(whole);
    }
    for (i, part) in resolved.iter().enumerate() {
        let one = merge_writer(Value::Object(rest.clone()), part);
        let diffs = walker.compare(&w.derived(one, &format!("allOf{i}")), r)?;
        if walker.compatible(&diffs) {
            let mut out: Diffs = prefixed(&format!("/allOf/{i}"), diffs).collect();
            push(
                &mut out,
                "",
                DifferenceKind::ProductTypeNarrowed,
                format!("only #/allOf/{i} is kept"),
            );
            return Ok(out);
        }
    }
    Ok(whole)
}

/// The reader has `allOf`, the writer not: the writer must satisfy every
/// part, and the reader's other keywords.
fn reader_product(
    walker: &mut Walker,
    w: &Node<'_>,
    r: &Node<'_>,
    parts: &[Node<'_>],
) -> Result<Diffs, SchemaError> {
    let rest = r.without(&["allOf"], "rest");
    let mut out = if rest.accepts_anything() {
        annotations(w, &rest)
    } else {
        walker.compare(w, &rest)?
    };
    for (i, part) in parts.iter().enumerate() {
        let diffs = walker.compare(w, part)?;
        out.extend(prefixed(
            &format!("/allOf/{i}"),
            without_own_annotations(diffs),
        ));
    }
    Ok(out)
}

/// Confluent's `CombinedSchemaDiff` for two lists of the same (or a
/// compatible) combinator: size change, then a maximum one-to-one pairing of
/// compatible sub-schemas, wherever they sit in the lists.
pub(crate) fn pair_up(
    walker: &mut Walker,
    w_kw: &str,
    r_kw: &str,
    w_list: &[Node<'_>],
    r_list: &[Node<'_>],
) -> Result<Diffs, SchemaError> {
    let (w_raw, r_raw) = (w_list, r_list);
    let w_list = distinct(w_list);
    let r_list = distinct(r_list);
    let (wn, rn) = (w_list.len(), r_list.len());
    let product = r_kw == "allOf";
    let mut out = Vec::new();
    if wn != rn {
        let kind = match (wn < rn, product) {
            (true, true) => DifferenceKind::ProductTypeExtended,
            (true, false) => DifferenceKind::SumTypeExtended,
            (false, true) => DifferenceKind::ProductTypeNarrowed,
            (false, false) => DifferenceKind::SumTypeNarrowed,
        };
        push(&mut out, "", kind, format!("{wn} -> {rn} schemas"));
    }
    let mut results: Vec<Vec<Diffs>> = Vec::with_capacity(wn);
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(wn);
    for (_, w_part) in &w_list {
        let mut row = Vec::with_capacity(rn);
        let mut ok = Vec::new();
        for (j, (_, r_part)) in r_list.iter().enumerate() {
            let diffs = walker.compare(w_part, r_part)?;
            if walker.compatible(&diffs) {
                ok.push(j);
            }
            row.push(diffs);
        }
        results.push(row);
        edges.push(ok);
    }
    if r_kw == "oneOf" {
        // For each of the reader's alternatives, the writer's that mean the
        // same: nothing but annotations differ, compared both ways (a
        // reader that accepts anything shows no difference one way).
        let mut same: Vec<Vec<usize>> = vec![Vec::new(); rn];
        for (j, (_, r_part)) in r_list.iter().enumerate() {
            for (i, (_, w_part)) in w_list.iter().enumerate() {
                if !results[i][j].iter().all(|d| is_annotation(&d.kind)) {
                    continue;
                }
                let back = walker.compare(r_part, w_part)?;
                if back.iter().all(|d| is_annotation(&d.kind)) {
                    same[j].push(i);
                }
            }
        }
        one_of_overlaps(&mut out, w_raw, r_raw, &r_list, &same);
    }
    let matched = maximum_matching(&edges, rn);
    let mut pairs: Vec<(usize, usize)> = matched
        .iter()
        .enumerate()
        .filter_map(|(j, i)| i.map(|i| (i, j)))
        .collect();
    pairs.sort_unstable();
    for &(i, j) in &pairs {
        let diffs = std::mem::take(&mut results[i][j]);
        out.extend(prefixed(&format!("/{w_kw}/{}", w_list[i].0), diffs));
    }
    if pairs.len() < wn.min(rn) {
        // Name the writer's schemas that pair with nothing (for a sum each
        // must be accepted by some alternative); if every one has a partner
        // but not a distinct one, say so once.
        let mut named = false;
        for (i, (index, _)) in w_list.iter().enumerate() {
            if product || !edges[i].is_empty() {
                continue;
            }
            named = true;
            let closest = results[i]
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| walker.distance(d));
            let mut detail = format!(
                "no alternative of the reader's {r_kw} accepts the writer's alternative {index}"
            );
            if let Some((j, diffs)) = closest {
                detail.push_str(&format!(
                    "; the closest, alternative {}, fails at {}",
                    r_list[j].0,
                    walker.first_problem(diffs)
                ));
            }
            push(
                &mut out,
                format!("/{w_kw}/{index}"),
                DifferenceKind::CombinedTypeSubschemasChanged,
                detail,
            );
        }
        if !named {
            let unpaired = wn.min(rn) - pairs.len();
            push(
                &mut out,
                format!("/{w_kw}"),
                DifferenceKind::CombinedTypeSubschemasChanged,
                format!("{unpaired} more schema(s) of the reader's {r_kw} should pair one to one with the writer's, and none is compatible"),
            );
        }
    }
    Ok(out)
}

/// `oneOf` rejects a value that two of its alternatives accept. Under the
/// strict policy every pair of the reader's alternatives must therefore
/// exclude each other ([`disjoint`]), except a pair that stands for two
/// distinct alternatives of the writer's `oneOf` unchanged (values the
/// writer wrote matched only one of them). `same[j]` lists the writer's
/// alternatives (of `w_raw`, deduplicated) that reader alternative `j` of
/// `r_list` means the same as. Confluent checks none of this.
fn one_of_overlaps(
    out: &mut Diffs,
    w_raw: &[Node<'_>],
    r_raw: &[Node<'_>],
    r_list: &[(usize, &Node<'_>)],
    same: &[Vec<usize>],
) {
    const SHOWN: usize = 3;
    let mut found: Vec<String> = Vec::new();
    // A repeated alternative matches whatever it matches twice.
    for (index, node) in r_list {
        let copies = |list: &[Node<'_>]| list.iter().filter(|n| n.value == node.value).count();
        let (r_copies, w_copies) = (copies(r_raw), copies(w_raw));
        if r_copies > 1 && r_copies > w_copies {
            found.push(format!("alternative {index} appears {r_copies} times"));
        }
    }
    let mut steps = 0;
    for (j, (j_index, j_node)) in r_list.iter().enumerate() {
        for (k, (k_index, k_node)) in r_list.iter().enumerate().skip(j + 1) {
            let (sj, sk) = (&same[j], &same[k]);
            // Two distinct writer alternatives, one for each.
            let unchanged = match (sj.as_slice(), sk.as_slice()) {
                ([], _) | (_, []) => false,
                ([a], [b]) => a != b,
                _ => true,
            };
            if unchanged || disjoint(j_node, k_node, &mut steps) {
                continue;
            }
            found.push(format!("alternatives {j_index} and {k_index}"));
        }
    }
    if found.is_empty() {
        return;
    }
    let more = found.len().saturating_sub(SHOWN);
    found.truncate(SHOWN);
    let mut detail = found.join(", ");
    if more > 0 {
        detail.push_str(&format!(" and {more} more pair(s)"));
    }
    push(
        out,
        "/oneOf",
        DifferenceKind::OneOfAlternativesOverlap,
        detail,
    );
}

/// The list without repeated schemas, each with its index.
fn distinct<'b, 'a>(list: &'b [Node<'a>]) -> Vec<(usize, &'b Node<'a>)> {
    let mut out: Vec<(usize, &Node<'a>)> = Vec::with_capacity(list.len());
    for (i, node) in list.iter().enumerate() {
        if !out.iter().any(|(_, seen)| seen.value == node.value) {
            out.push((i, node));
        }
    }
    out
}

/// For each right-hand vertex, the left-hand one paired with it, in a
/// maximum matching of `edges` (left vertex -> right vertices).
fn maximum_matching(edges: &[Vec<usize>], right: usize) -> Vec<Option<usize>> {
    fn augment(
        i: usize,
        edges: &[Vec<usize>],
        seen: &mut [bool],
        pair: &mut [Option<usize>],
    ) -> bool {
        for &j in &edges[i] {
            if seen[j] {
                continue;
            }
            seen[j] = true;
            let free = match pair[j] {
                None => true,
                Some(k) => augment(k, edges, seen, pair),
            };
            if free {
                pair[j] = Some(i);
                return true;
            }
        }
        false
    }
    let mut pair = vec![None; right];
    for i in 0..edges.len() {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut pair);
    }
    pair
}

fn keywords_without(node: &Node<'_>, dropped: &[&str]) -> Map<String, Value> {
    node.value
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(k, _)| !dropped.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn only_annotations(map: &Map<String, Value>) -> bool {
    map.keys()
        .all(|k| METADATA.contains(&k.as_str()) || CONTAINERS.contains(&k.as_str()))
}

/// `part` merged into the writer's schema `acc`. Where both constrain the
/// same keyword one is kept, which only widens what the writer wrote; that
/// is safe, since a reader accepting more accepts less. `properties` are
/// joined and `required` united, which is exact.
pub(crate) fn merge_writer(acc: Value, part: &Value) -> Value {
    let mut map = match (acc, part) {
        (Value::Bool(false), _) | (_, Value::Bool(false)) => return Value::Bool(false),
        (acc, Value::Bool(true)) => return acc,
        (Value::Object(map), _) => map,
        (_, part) => return part.clone(),
    };
    let Some(part) = part.as_object() else {
        return Value::Object(map);
    };
    for (keyword, value) in part {
        if CONTAINERS.contains(&keyword.as_str()) {
            continue;
        }
        match (keyword.as_str(), map.get_mut(keyword)) {
            (_, None) => {
                map.insert(keyword.clone(), value.clone());
            }
            ("properties", Some(Value::Object(existing))) => {
                if let Some(more) = value.as_object() {
                    for (name, schema) in more {
                        existing
                            .entry(name.clone())
                            .or_insert_with(|| schema.clone());
                    }
                }
            }
            ("required", Some(Value::Array(existing))) => {
                if let Some(more) = value.as_array() {
                    for name in more {
                        if !existing.contains(name) {
                            existing.push(name.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_finds_a_perfect_pairing_when_greedy_would_not() {
        // 0 fits 0 and 1, 1 fits only 0: greedy 0->0 leaves 1 alone.
        let pair = maximum_matching(&[vec![0, 1], vec![0]], 2);
        assert_eq!(pair, vec![Some(1), Some(0)]);
    }

    #[test]
    fn writer_merge_joins_properties_and_required() {
        let merged = merge_writer(
            json!({"type": "object", "properties": {"a": {}}, "required": ["a"]}),
            &json!({"type": "string", "properties": {"b": {}}, "required": ["b"], "$defs": {}}),
        );
        assert_eq!(
            merged,
            json!({"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"]})
        );
        assert_eq!(
            merge_writer(json!({"type": "string"}), &json!(false)),
            json!(false)
        );
    }
}

#[cfg(test)]
mod walk_tests {
    use super::super::diff::found;
    use super::*;
    use serde_json::json;
    use DifferenceKind as K;

    #[test]
    fn alternatives_pair_up_wherever_they_sit() {
        assert!(found(
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
            json!({"oneOf": [{"type": "null"}, {"type": "string"}, {"type": "integer"}]})
        )
        .is_empty());
        // Duplicates collapse, as in Confluent.
        assert!(found(
            json!({"anyOf": [{"type": "string"}, {"type": "string"}]}),
            json!({"anyOf": [{"type": "string"}]})
        )
        .is_empty());
    }

    #[test]
    fn criterion_changes() {
        // A single-schema allOf is that schema, and so is a single-schema anyOf.
        assert!(found(
            json!({"allOf": [{"type": "string"}]}),
            json!({"anyOf": [{"type": "string"}]})
        )
        .is_empty());
        assert_eq!(
            found(
                json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
                json!({"oneOf": [{"type": "string"}, {"type": "integer"}]})
            ),
            vec![("".to_owned(), K::CombinedTypeChanged)]
        );
        assert_eq!(
            found(
                json!({"anyOf": [{"type": "string"}]}),
                json!({"oneOf": [{"type": "string"}]})
            ),
            vec![("".to_owned(), K::CombinedTypeExtended)]
        );
    }

    #[test]
    fn a_writer_sum_must_be_accepted_alternative_by_alternative() {
        // Each alternative fits the reader: compatible, though Confluent's
        // class-based comparison would call it a type change.
        assert_eq!(
            found(
                json!({"anyOf": [{"type": "integer"}, {"type": "number", "maximum": 3}]}),
                json!({"type": "number"})
            ),
            vec![
                ("/anyOf/0".to_owned(), K::TypeExtended),
                ("/anyOf/1/maximum".to_owned(), K::MaximumRemoved),
            ]
        );
        let kinds = found(
            json!({"anyOf": [{"type": "integer"}, {"type": "null"}]}),
            json!({"type": "integer"}),
        );
        assert_eq!(kinds, vec![("/anyOf/1".to_owned(), K::SumTypeNarrowed)]);
    }

    #[test]
    fn a_reader_with_both_sums_requires_both() {
        let kinds = found(
            json!({"type": "string"}),
            json!({"anyOf": [{"type": "string"}, {"type": "null"}], "oneOf": [{"type": "integer"}, {"type": "null"}]}),
        );
        assert!(
            kinds
                .iter()
                .any(|(_, k)| *k == K::CombinedTypeSubschemasChanged),
            "{kinds:?}"
        );
    }
}
