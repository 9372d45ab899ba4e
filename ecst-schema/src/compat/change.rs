//! A difference told as the change a person made, from the old schema to
//! the new one.
//!
//! The walk names what it finds relative to the writer: a forward check
//! reads the new schema's data with the old schema, so a variant added in
//! the new schema is found as an alternative the reader (old) lacks,
//! `SUM_TYPE_NARROWED`, with its counts written writer first ("5 -> 4
//! schemas"). The kinds keep Confluent's meaning; what a person reads says
//! what changed ("alternative added", "4 -> 5 schemas") and which reader
//! fails on which data.

use super::bounds::Bound;
use super::kind::{DifferenceKind, Presence};
use super::report::Direction;

/// The short phrase of the change from the old schema to the new one.
pub(crate) fn phrase(kind: &DifferenceKind, direction: Direction) -> String {
    match direction {
        Direction::Backward => kind.to_string(),
        Direction::Forward => mirror(kind).map_or_else(|| kind.to_string(), str::to_owned),
    }
}

/// `detail` with its values in old-to-new order: a forward walk writes
/// them new first (`"5 -> 4 schemas"`, `"added \"x\""` for a value the new
/// schema lacks).
pub(crate) fn detail(detail: &str, direction: Direction) -> String {
    if direction == Direction::Backward {
        return detail.to_owned();
    }
    if let Some((from, to)) = detail.split_once(" -> ") {
        // `"5 -> 4 schemas"`: the unit follows the second number.
        let (to, unit) = to.split_once(' ').unwrap_or((to, ""));
        let (from, to) = (from.trim(), to.trim());
        if !from.contains(' ') && !to.contains(' ') {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            return format!("{to} -> {from}{unit}");
        }
    }
    let swapped: Vec<String> = detail
        .split("; ")
        .map(|part| {
            if let Some(rest) = part.strip_prefix("added ") {
                format!("removed {rest}")
            } else if let Some(rest) = part.strip_prefix("removed ") {
                format!("added {rest}")
            } else {
                part.to_owned()
            }
        })
        .collect();
    // Added values first, as the backward walk writes them.
    let (added, other): (Vec<&String>, Vec<&String>) =
        swapped.iter().partition(|part| part.starts_with("added "));
    added
        .into_iter()
        .chain(other)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

/// The sentence for a difference a forward check found, told from the old
/// schema to the new one; `None` where the walk's own sentence reads right
/// either way. `detail` is already in old-to-new order.
pub(crate) fn forward_explanation(
    kind: &DifferenceKind,
    detail: &str,
    compatible: bool,
) -> Option<String> {
    use DifferenceKind as K;
    let d = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let rejects = |what: &str| {
        format!("a reader using the old schema rejects {what} written with the new schema")
    };
    let accepts = "a reader using the old schema still accepts everything written with the new \
                   schema";
    if let Some((keyword, tightens)) = Bound::of(kind) {
        // The reader (old) is tighter than the writer (new): the new
        // schema relaxed the bound.
        return Some(if tightens {
            format!(
                "the new schema relaxes `{keyword}`{d}, so {}",
                rejects("values outside the old bound")
            )
        } else {
            format!("the new schema tightens `{keyword}`{d}, so {accepts}")
        });
    }
    let text = match kind {
        K::SumTypeNarrowed => format!(
            "the new schema adds alternatives{d} (an enum variant, for example), so {}",
            rejects("values of the added ones")
        ),
        K::SumTypeExtended => format!("the new schema drops alternatives{d}, so {accepts}"),
        K::EnumArrayNarrowed => format!(
            "the new schema allows more values{d} (a unit enum variant, for example), so {}",
            rejects("the added values")
        ),
        K::EnumArrayChanged => format!(
            "the new schema allows other values{d}, so {}",
            rejects("the added values")
        ),
        K::EnumArrayExtended => format!("the new schema allows fewer values{d}, so {accepts}"),
        K::TypeNarrowed => format!(
            "the new schema admits more JSON types{d}, so {}",
            rejects("values of the added types")
        ),
        K::TypeExtended => format!("the new schema admits fewer JSON types{d}, so {accepts}"),
        K::TypeChanged => format!(
            "the new schema admits other JSON types{d}, so {}",
            rejects("values of the new types")
        ),
        K::FormatChanged => format!(
            "the new schema has another `format`{d}, so {} (when formats are validated)",
            rejects("values in the new format")
        ),
        K::PatternChanged => format!(
            "the new schema has another pattern{d}, so {}",
            rejects("strings that only match the new one")
        ),
        K::ConstChanged => format!(
            "the new schema requires another constant{d}, so {}",
            rejects("the new constant")
        ),
        K::RequiredAttributeAdded => format!(
            "the new schema makes a required property optional{d}, so {}",
            rejects("objects without it")
        ),
        K::RequiredAttributeRemoved | K::RequiredAttributeWithDefaultAdded => {
            format!("the new schema makes a property required{d}, so {accepts}")
        }
        K::PropertyRemovedFromClosedContentModel { .. } if !compatible => format!(
            "the new schema adds a property{d} that the old schema's closed object does not \
             declare, so {}",
            rejects("objects that hold it")
        ),
        K::PropertyAddedToOpenContentModel {
            presence: Presence::Required,
        } => format!(
            "the new schema removes a property{d} that the old schema requires without a \
             default, so {}",
            rejects("every object")
        ),
        K::PropertyAddedToOpenContentModel { .. } if !compatible => format!(
            "the new schema removes a property{d} and its object is open, so data written with \
             it may hold a property of that name with any value, which a reader using the old \
             schema rejects where the value does not fit the old declaration"
        ),
        K::RequiredPropertyAddedToUnopenContentModel => format!(
            "the new schema removes a property{d} that the old schema requires without a \
             default, so {}",
            rejects("every object")
        ),
        _ => return None,
    };
    Some(text)
}

/// The phrase of a forward difference's kind seen from old to new.
fn mirror(kind: &DifferenceKind) -> Option<&'static str> {
    use DifferenceKind as K;
    if let Some((keyword, tightens)) = Bound::of(kind) {
        return Some(match (keyword, tightens) {
            ("maxLength", true) => "maxLength relaxed",
            ("maxLength", false) => "maxLength tightened",
            ("minLength", true) => "minLength relaxed",
            ("minLength", false) => "minLength tightened",
            ("maximum", true) => "maximum relaxed",
            ("maximum", false) => "maximum tightened",
            ("minimum", true) => "minimum relaxed",
            ("minimum", false) => "minimum tightened",
            ("exclusiveMaximum", true) => "exclusiveMaximum relaxed",
            ("exclusiveMaximum", false) => "exclusiveMaximum tightened",
            ("exclusiveMinimum", true) => "exclusiveMinimum relaxed",
            ("exclusiveMinimum", false) => "exclusiveMinimum tightened",
            ("maxProperties", true) => "maxProperties relaxed",
            ("maxProperties", false) => "maxProperties tightened",
            ("minProperties", true) => "minProperties relaxed",
            ("minProperties", false) => "minProperties tightened",
            ("maxItems", true) => "maxItems relaxed",
            ("maxItems", false) => "maxItems tightened",
            ("minItems", true) => "minItems relaxed",
            ("minItems", false) => "minItems tightened",
            (_, true) => "bound relaxed",
            (_, false) => "bound tightened",
        });
    }
    Some(match kind {
        K::SchemaAdded => "schema removed",
        K::SchemaRemoved => "schema added",
        K::TypeExtended => "type narrowed",
        K::TypeNarrowed => "type widened",
        K::PatternAdded => "pattern removed",
        K::PatternRemoved => "pattern added",
        K::FormatAdded => "format removed",
        K::FormatRemoved => "format added",
        K::MultipleOfAdded => "multipleOf removed",
        K::MultipleOfRemoved => "multipleOf added",
        K::MultipleOfExpanded => "multipleOf made finer",
        K::MultipleOfReduced => "multipleOf made coarser",
        K::EnumArrayExtended => "enum narrowed",
        K::EnumArrayNarrowed => "enum extended",
        K::EnumAdded => "enum removed",
        K::EnumRemoved => "enum added",
        K::NotTypeNarrowed => "not extended",
        K::NotTypeExtended => "not narrowed",
        K::NotAdded => "not removed",
        K::NotRemoved => "not added",
        K::RequiredAttributeAdded => "property made optional",
        K::RequiredAttributeWithDefaultAdded | K::RequiredAttributeRemoved => {
            "property made required"
        }
        K::PropertyAddedToOpenContentModel {
            presence: Presence::Required,
        } => "required property removed",
        K::PropertyAddedToOpenContentModel { .. } => "property removed from an open content model",
        K::RequiredPropertyAddedToUnopenContentModel => "required property removed",
        K::RequiredPropertyWithDefaultAddedToUnopenContentModel => {
            "required property with a default removed"
        }
        K::OptionalPropertyAddedToUnopenContentModel => {
            "optional property removed from a closed content model"
        }
        K::PropertyRemovedFromOpenContentModel => "property added to an open content model",
        K::PropertyRemovedFromClosedContentModel { .. } => {
            "property added to a closed content model"
        }
        K::AdditionalPropertiesAdded => "additionalProperties closed",
        K::AdditionalPropertiesRemoved => "additionalProperties opened",
        K::AdditionalPropertiesExtended => "additionalProperties narrowed",
        K::AdditionalPropertiesNarrowed => "additionalProperties widened",
        K::UniqueItemsAdded => "uniqueItems removed",
        K::UniqueItemsRemoved => "uniqueItems added",
        K::AdditionalItemsAdded => "additional items forbidden",
        K::AdditionalItemsRemoved => "additional items allowed",
        K::AdditionalItemsExtended => "additional items narrowed",
        K::AdditionalItemsNarrowed => "additional items widened",
        K::ProductTypeExtended => "allOf narrowed",
        K::ProductTypeNarrowed => "allOf extended",
        K::SumTypeExtended => "alternative removed",
        K::SumTypeNarrowed => "alternative added",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_details_are_turned_old_to_new() {
        assert_eq!(
            detail("5 -> 4 schemas", Direction::Forward),
            "4 -> 5 schemas"
        );
        assert_eq!(detail("10 -> 5", Direction::Forward), "5 -> 10");
        assert_eq!(
            detail("5 -> 4 schemas", Direction::Backward),
            "5 -> 4 schemas"
        );
        assert_eq!(
            detail("added \"c\"; removed \"b\"", Direction::Forward),
            "added \"b\"; removed \"c\""
        );
        assert_eq!(detail("removed \"x\"", Direction::Forward), "added \"x\"");
        assert_eq!(detail("email", Direction::Forward), "email");
    }
}
