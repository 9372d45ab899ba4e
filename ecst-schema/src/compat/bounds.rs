//! Numeric bounds (`maxLength`, `minimum`, `maxItems`, …): one table says,
//! for each keyword, which differences a change of it is, both for the walk
//! that finds them and for the sentence that explains them.

use super::diff::{push, Diffs};
use super::error::SchemaError;
use super::kind::DifferenceKind;
use super::node::Node;
use super::number::Num;

/// A keyword that bounds a number, a length or a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    MaxLength,
    MinLength,
    Maximum,
    Minimum,
    ExclusiveMaximum,
    ExclusiveMinimum,
    MaxProperties,
    MinProperties,
    MaxItems,
    MinItems,
}

/// What the table says about one bound.
struct Row {
    keyword: &'static str,
    /// An upper bound, which a lower value tightens; a lower bound is
    /// tightened by a higher one.
    upper: bool,
    /// `[added, removed, increased, decreased]`, each as seen from the
    /// reader.
    kinds: [DifferenceKind; 4],
}

impl Bound {
    /// Every bound.
    const ALL: [Bound; 10] = [
        Bound::MaxLength,
        Bound::MinLength,
        Bound::Maximum,
        Bound::Minimum,
        Bound::ExclusiveMaximum,
        Bound::ExclusiveMinimum,
        Bound::MaxProperties,
        Bound::MinProperties,
        Bound::MaxItems,
        Bound::MinItems,
    ];

    /// The table: the bound's keyword, direction and kinds.
    fn row(self) -> Row {
        use DifferenceKind as K;
        match self {
            Bound::MaxLength => Row {
                keyword: "maxLength",
                upper: true,
                kinds: [
                    K::MaxLengthAdded,
                    K::MaxLengthRemoved,
                    K::MaxLengthIncreased,
                    K::MaxLengthDecreased,
                ],
            },
            Bound::MinLength => Row {
                keyword: "minLength",
                upper: false,
                kinds: [
                    K::MinLengthAdded,
                    K::MinLengthRemoved,
                    K::MinLengthIncreased,
                    K::MinLengthDecreased,
                ],
            },
            Bound::Maximum => Row {
                keyword: "maximum",
                upper: true,
                kinds: [
                    K::MaximumAdded,
                    K::MaximumRemoved,
                    K::MaximumIncreased,
                    K::MaximumDecreased,
                ],
            },
            Bound::Minimum => Row {
                keyword: "minimum",
                upper: false,
                kinds: [
                    K::MinimumAdded,
                    K::MinimumRemoved,
                    K::MinimumIncreased,
                    K::MinimumDecreased,
                ],
            },
            Bound::ExclusiveMaximum => Row {
                keyword: "exclusiveMaximum",
                upper: true,
                kinds: [
                    K::ExclusiveMaximumAdded,
                    K::ExclusiveMaximumRemoved,
                    K::ExclusiveMaximumIncreased,
                    K::ExclusiveMaximumDecreased,
                ],
            },
            Bound::ExclusiveMinimum => Row {
                keyword: "exclusiveMinimum",
                upper: false,
                kinds: [
                    K::ExclusiveMinimumAdded,
                    K::ExclusiveMinimumRemoved,
                    K::ExclusiveMinimumIncreased,
                    K::ExclusiveMinimumDecreased,
                ],
            },
            Bound::MaxProperties => Row {
                keyword: "maxProperties",
                upper: true,
                kinds: [
                    K::MaxPropertiesAdded,
                    K::MaxPropertiesRemoved,
                    K::MaxPropertiesIncreased,
                    K::MaxPropertiesDecreased,
                ],
            },
            Bound::MinProperties => Row {
                keyword: "minProperties",
                upper: false,
                kinds: [
                    K::MinPropertiesAdded,
                    K::MinPropertiesRemoved,
                    K::MinPropertiesIncreased,
                    K::MinPropertiesDecreased,
                ],
            },
            Bound::MaxItems => Row {
                keyword: "maxItems",
                upper: true,
                kinds: [
                    K::MaxItemsAdded,
                    K::MaxItemsRemoved,
                    K::MaxItemsIncreased,
                    K::MaxItemsDecreased,
                ],
            },
            Bound::MinItems => Row {
                keyword: "minItems",
                upper: false,
                kinds: [
                    K::MinItemsAdded,
                    K::MinItemsRemoved,
                    K::MinItemsIncreased,
                    K::MinItemsDecreased,
                ],
            },
        }
    }

    /// Compares the bound as both schemas write it under its keyword.
    pub(crate) fn compare(
        self,
        out: &mut Diffs,
        w: &Node<'_>,
        r: &Node<'_>,
    ) -> Result<(), SchemaError> {
        let keyword = self.row().keyword;
        self.compare_values(out, w.number(keyword)?, r.number(keyword)?);
        Ok(())
    }

    /// Compares the writer's value `w` of the bound with the reader's `r`.
    pub(crate) fn compare_values(self, out: &mut Diffs, w: Option<Num>, r: Option<Num>) {
        let Row { keyword, kinds, .. } = self.row();
        let [added, removed, increased, decreased] = kinds;
        let at = format!("/{keyword}");
        match (w, r) {
            (None, None) => {}
            (None, Some(b)) => push(out, at, added, b.to_string()),
            (Some(a), None) => push(out, at, removed, format!("was {a}")),
            (Some(a), Some(b)) if a < b => push(out, at, increased, format!("{a} -> {b}")),
            (Some(a), Some(b)) if a > b => push(out, at, decreased, format!("{a} -> {b}")),
            _ => {}
        }
    }

    /// For a difference of a bound: its keyword, and whether the change
    /// tightens the bound (adds it, or moves it inward).
    pub(crate) fn of(kind: &DifferenceKind) -> Option<(&'static str, bool)> {
        Bound::ALL.into_iter().find_map(|bound| {
            let Row {
                keyword,
                upper,
                kinds: [added, removed, increased, decreased],
            } = bound.row();
            let tightens = if *kind == added {
                true
            } else if *kind == removed {
                false
            } else if *kind == increased {
                !upper
            } else if *kind == decreased {
                upper
            } else {
                return None;
            };
            Some((keyword, tightens))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DifferenceKind as K;

    #[test]
    fn lowering_an_upper_bound_or_raising_a_lower_one_tightens() {
        assert_eq!(Bound::of(&K::MaxItemsAdded), Some(("maxItems", true)));
        assert_eq!(Bound::of(&K::MaxItemsDecreased), Some(("maxItems", true)));
        assert_eq!(Bound::of(&K::MaxItemsIncreased), Some(("maxItems", false)));
        assert_eq!(Bound::of(&K::MinimumIncreased), Some(("minimum", true)));
        assert_eq!(Bound::of(&K::MinimumDecreased), Some(("minimum", false)));
        assert_eq!(
            Bound::of(&K::ExclusiveMinimumRemoved),
            Some(("exclusiveMinimum", false))
        );
        assert_eq!(Bound::of(&K::TypeChanged), None);
    }
}
