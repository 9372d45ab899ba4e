//! Numbers compared exactly.
//!
//! serde_json (without its `arbitrary_precision` feature, which ecst does not
//! enable) keeps a number as a `u64`, an `i64` or an `f64`: an integer
//! written without a fraction or exponent keeps its exact value, anything
//! else is the nearest `f64`. The checker compares those values exactly:
//! integers as integers (`i128`), an integer against an `f64` by the
//! `f64`'s exact binary value, never by rounding the integer to an `f64`
//! (`9007199254740993` is above `9007199254740992`, though both round to the
//! same `f64`).
//!
//! `multipleOf` is compared the same way: every positive number the checker
//! reads is `m * 2^e` with `m` odd (an integer up to `u64::MAX`, or an
//! `f64`'s 53-bit significand), so "every multiple of `a` is a multiple of
//! `b`", i.e. `a / b` is a whole number, is exactly `m_b` divides `m_a` and
//! `e_a >= e_b`. No tolerance: `2000000001` is not a multiple of `1e9`. A
//! decimal fraction has no exact `f64` (`0.1`, `0.3`), and the text it was
//! written as is gone by the time the checker sees it, so `0.3 -> 0.1` is
//! not judged a refinement: it is reported as a change, which is never
//! compatible. Refinements by powers of two (`0.5 -> 0.25`) and between
//! integers are judged exactly.

use core::cmp::Ordering;
use core::fmt;

use serde_json::Number;

/// A JSON number as serde_json holds it, with an exact order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    /// A `u64` or `i64`.
    Int(i128),
    /// Any other number: a finite `f64`.
    Float(f64),
}

impl Num {
    /// The number serde_json parsed; `None` for a non-finite float (which
    /// serde_json does not produce from JSON text).
    pub(crate) fn of(n: &Number) -> Option<Num> {
        if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else {
            n.as_f64().filter(|x| x.is_finite()).map(Num::Float)
        }
    }

    /// Whether the number is above zero.
    pub(crate) fn is_positive(self) -> bool {
        match self {
            Num::Int(i) => i > 0,
            Num::Float(x) => x > 0.0,
        }
    }

    /// `(m, e)` with `m` odd and the number `m * 2^e`, for a number above
    /// zero.
    fn dyadic(self) -> Option<(u128, i32)> {
        match self {
            Num::Int(i) if i > 0 => {
                let i = i.unsigned_abs();
                let zeros = i.trailing_zeros();
                Some((i >> zeros, zeros as i32))
            }
            Num::Float(x) if x > 0.0 && x.is_finite() => {
                let bits = x.to_bits();
                let exponent = ((bits >> 52) & 0x7ff) as i32;
                let fraction = bits & ((1 << 52) - 1);
                let (significand, e) = if exponent == 0 {
                    // Subnormal.
                    (fraction, -1074)
                } else {
                    (fraction | (1 << 52), exponent - 1075)
                };
                let zeros = significand.trailing_zeros();
                Some((u128::from(significand >> zeros), e + zeros as i32))
            }
            _ => None,
        }
    }

    /// Whether `self` is a whole multiple of `other`, exactly: every
    /// multiple of `self` is then a multiple of `other`. `false` when either
    /// is not above zero.
    pub(crate) fn is_multiple_of(self, other: Num) -> bool {
        match (self.dyadic(), other.dyadic()) {
            (Some((m, e)), Some((n, f))) => e >= f && m % n == 0,
            _ => false,
        }
    }
}

/// An integer against a finite `f64`, exactly.
fn cmp_int_float(i: i128, x: f64) -> Ordering {
    // Every finite f64 of magnitude below 2^127 has its floor in i128, and
    // every i128 lies strictly between -2^127 - 1 and 2^127.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0; // 2^127
    if x >= LIMIT {
        return Ordering::Less;
    }
    if x < -LIMIT {
        return Ordering::Greater;
    }
    let floor = x.floor();
    // Exact: |floor| <= 2^127 and floor is integral (-2^127 fits i128).
    let whole = floor as i128;
    match i.cmp(&whole) {
        Ordering::Equal if floor < x => Ordering::Less,
        other => other,
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Num) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num {
    /// The exact order of the values (the floats are finite).
    fn cmp(&self, other: &Num) -> Ordering {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(&b),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

impl fmt::Display for Num {
    /// As JSON would write it: `10`, not `10.0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => write!(f, "{}", x as i64),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(value: serde_json::Value) -> Num {
        match value {
            serde_json::Value::Number(n) => Num::of(&n).unwrap(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn integers_beyond_f64_precision_stay_apart() {
        assert!(n(json!(9_007_199_254_740_993_u64)) > n(json!(9_007_199_254_740_992_u64)));
        assert!(n(json!(9_007_199_254_740_993_u64)) > n(json!(9_007_199_254_740_992.0)));
        assert!(n(json!(u64::MAX)) < n(json!(18_446_744_073_709_551_616.0)));
        assert!(n(json!(i64::MIN)) == n(json!(-9_223_372_036_854_775_808.0)));
        assert!(n(json!(-1)) < n(json!(-0.5)));
        assert!(n(json!(0)) > n(json!(-0.5)));
        assert!(n(json!(1)) < n(json!(1.5)));
        assert!(n(json!(2)) > n(json!(1.5)));
        assert!(n(json!(1)) == n(json!(1.0)));
        assert!(n(json!(0)) == n(json!(-0.0)));
        assert!(n(json!(i64::MAX)) < n(json!(1e300)));
        assert!(n(json!(i64::MIN)) > n(json!(-1e300)));
    }

    #[test]
    fn multiples_are_exact() {
        assert!(n(json!(10)).is_multiple_of(n(json!(2))));
        assert!(!n(json!(10)).is_multiple_of(n(json!(3))));
        assert!(!n(json!(2_000_000_001)).is_multiple_of(n(json!(1_000_000_000))));
        assert!(!n(json!(2_000_000_001)).is_multiple_of(n(json!(1e9))));
        assert!(n(json!(2e9)).is_multiple_of(n(json!(1_000_000_000))));
        assert!(n(json!(1.5)).is_multiple_of(n(json!(0.5))));
        assert!(n(json!(1)).is_multiple_of(n(json!(0.25))));
        assert!(!n(json!(0.25)).is_multiple_of(n(json!(1))));
        assert!(n(json!(u64::MAX)).is_multiple_of(n(json!(5))));
        assert!(!n(json!(u64::MAX)).is_multiple_of(n(json!(7))));
        // Decimal fractions have no exact binary value: not a refinement.
        assert!(!n(json!(0.3)).is_multiple_of(n(json!(0.1))));
        assert!(!n(json!(2)).is_multiple_of(n(json!(0))));
        assert!(!n(json!(2)).is_multiple_of(n(json!(-1))));
        assert!(n(json!(5e-324)).is_multiple_of(n(json!(5e-324))));
    }

    #[test]
    fn display_as_json() {
        assert_eq!(n(json!(10.0)).to_string(), "10");
        assert_eq!(n(json!(0.5)).to_string(), "0.5");
        assert_eq!(
            n(json!(9_007_199_254_740_993_u64)).to_string(),
            "9007199254740993"
        );
    }
}
