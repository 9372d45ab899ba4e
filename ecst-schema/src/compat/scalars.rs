//! Numbers and strings: bounds, `multipleOf`, `pattern`, `format`.

use super::bounds::Bound;
use super::diff::{push, Diffs};
use super::error::{SchemaError, SchemaErrorReason};
use super::kind::DifferenceKind;
use super::node::Node;
use super::number::Num;

/// `(maximum, exclusiveMaximum)` or the minimum pair, with draft 4's
/// boolean `exclusiveMaximum: true` read as the later numeric form.
fn limits(
    node: &Node<'_>,
    inclusive: &str,
    exclusive: &str,
) -> Result<(Option<Num>, Option<Num>), SchemaError> {
    let limit = node.number(inclusive)?;
    match node.get(exclusive) {
        Some(serde_json::Value::Bool(true)) => Ok((None, limit)),
        Some(serde_json::Value::Bool(false)) => Ok((limit, None)),
        _ => Ok((limit, node.number(exclusive)?)),
    }
}

pub(crate) fn numbers(out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) -> Result<(), SchemaError> {
    use DifferenceKind as K;
    let (w_max, w_xmax) = limits(w, "maximum", "exclusiveMaximum")?;
    let (r_max, r_xmax) = limits(r, "maximum", "exclusiveMaximum")?;
    let (w_min, w_xmin) = limits(w, "minimum", "exclusiveMinimum")?;
    let (r_min, r_xmin) = limits(r, "minimum", "exclusiveMinimum")?;
    Bound::Maximum.compare_values(out, w_max, r_max);
    Bound::Minimum.compare_values(out, w_min, r_min);
    Bound::ExclusiveMaximum.compare_values(out, w_xmax, r_xmax);
    Bound::ExclusiveMinimum.compare_values(out, w_xmin, r_xmin);
    let at = "/multipleOf";
    match (multiple_of(w)?, multiple_of(r)?) {
        (None, None) => {}
        (None, Some(b)) => push(out, at, K::MultipleOfAdded, b.to_string()),
        (Some(a), None) => push(out, at, K::MultipleOfRemoved, format!("was {a}")),
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            // Exact (see `number`): no tolerance, and a pair whose ratio
            // cannot be shown whole is a change, never compatible.
            let kind = if a.is_multiple_of(b) {
                // Every multiple of a is a multiple of b.
                K::MultipleOfReduced
            } else if b.is_multiple_of(a) {
                K::MultipleOfExpanded
            } else {
                K::MultipleOfChanged
            };
            push(out, at, kind, format!("{a} -> {b}"));
        }
    }
    Ok(())
}

/// `multipleOf`, which must be above zero.
fn multiple_of(node: &Node<'_>) -> Result<Option<Num>, SchemaError> {
    match node.number("multipleOf")? {
        Some(n) if !n.is_positive() => Err(node.error(
            Some("multipleOf"),
            SchemaErrorReason::InvalidKeyword {
                keyword: "multipleOf".to_owned(),
                expected: "a number above zero",
            },
        )),
        n => Ok(n),
    }
}

pub(crate) fn strings(out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) -> Result<(), SchemaError> {
    use DifferenceKind as K;
    Bound::MaxLength.compare(out, w, r)?;
    Bound::MinLength.compare(out, w, r)?;
    let at = "/pattern";
    match (w.string("pattern")?, r.string("pattern")?) {
        (None, None) => {}
        (None, Some(b)) => push(out, at, K::PatternAdded, b),
        (Some(a), None) => push(out, at, K::PatternRemoved, format!("was {a}")),
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => push(out, at, K::PatternChanged, format!("{a} -> {b}")),
    }
    Ok(())
}

/// `format`. Confluent ignores it; here adding or changing one is a
/// restriction, except a numeric format replaced by a wider one (what
/// schemars writes when `u32` becomes `u64`).
pub(crate) fn format(out: &mut Diffs, w: &Node<'_>, r: &Node<'_>) -> Result<(), SchemaError> {
    use DifferenceKind as K;
    let at = "/format";
    match (w.string("format")?, r.string("format")?) {
        (None, None) => {}
        (None, Some(b)) => push(out, at, K::FormatAdded, b),
        (Some(a), None) => push(out, at, K::FormatRemoved, format!("was {a}")),
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            let kind = if widens(a, b) {
                K::FormatWidened
            } else {
                K::FormatChanged
            };
            push(out, at, kind, format!("{a} -> {b}"));
        }
    }
    Ok(())
}

/// The values of an integer format, as `(min, max)`.
fn integer_range(format: &str) -> Option<(f64, f64)> {
    let signed = |bits: i32| Some((-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0));
    let unsigned = |bits: i32| Some((0.0, 2f64.powi(bits) - 1.0));
    match format {
        "int8" => signed(8),
        "int16" => signed(16),
        "int32" => signed(32),
        "int64" | "int" => signed(64),
        "int128" => signed(128),
        "uint8" => unsigned(8),
        "uint16" => unsigned(16),
        "uint32" => unsigned(32),
        "uint64" | "uint" => unsigned(64),
        "uint128" => unsigned(128),
        _ => None,
    }
}

/// Whether every value of numeric format `from` is a value of `to`.
fn widens(from: &str, to: &str) -> bool {
    let numeric = |f: &str| integer_range(f).is_some() || f == "float" || f == "double";
    match (integer_range(from), integer_range(to)) {
        (Some((lo, hi)), Some((to_lo, to_hi))) => to_lo <= lo && hi <= to_hi,
        // Every JSON number is a double as far as validation goes; a float
        // holds the 8- and 16-bit integers exactly.
        _ if to == "double" => numeric(from),
        (Some((lo, hi)), None) if to == "float" => lo >= -65536.0 && hi <= 65535.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_formats_widen_by_range() {
        assert!(widens("uint32", "uint64"));
        assert!(widens("uint32", "int64"));
        assert!(widens("int32", "int64"));
        assert!(widens("float", "double"));
        assert!(widens("uint8", "float"));
        assert!(!widens("int64", "uint64"));
        assert!(!widens("uint64", "uint32"));
        assert!(!widens("double", "float"));
        assert!(!widens("date", "date-time"));
    }
}
