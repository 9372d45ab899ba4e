//! One sentence per difference: what changed, and why it does or does not
//! break a reader.

use super::bounds::Bound;
use super::kind::{DifferenceKind, Presence};

/// The explanation of a difference of `kind`, where `writer` and `reader`
/// name the schemas (`"old"`, `"new"`) and `detail` carries the values the
/// walk found.
pub(crate) fn explain(
    kind: &DifferenceKind,
    detail: &str,
    writer: &str,
    reader: &str,
    compatible: bool,
) -> String {
    use DifferenceKind as K;
    let d = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let rejects = |what: &str| {
        format!(
            "a reader using the {reader} schema rejects {what} written with the {writer} schema"
        )
    };
    let accepts = format!(
        "a reader using the {reader} schema still accepts everything the {writer} schema allowed"
    );
    if let Some((keyword, tightens)) = Bound::of(kind) {
        return if tightens {
            format!(
                "the {reader} schema tightens `{keyword}`{d}, so {}",
                rejects("values outside the new bound")
            )
        } else {
            format!("the {reader} schema relaxes `{keyword}`{d}, so {accepts}")
        };
    }
    match kind {
        K::IdChanged | K::TitleChanged | K::DescriptionChanged | K::MetadataChanged { .. } => {
            format!("annotations do not constrain data, so {accepts}")
        }
        K::DefaultChanged => format!("a default is not validated, so {accepts}"),
        K::SchemaAdded => format!(
            "the {reader} schema constrains items that were unconstrained, so {}",
            rejects("items")
        ),
        K::SchemaRemoved => format!("the {reader} schema no longer constrains these items, so {accepts}"),
        K::TypeExtended => format!("the {reader} schema admits more JSON types{d}, so {accepts}"),
        K::TypeNarrowed => format!("the {reader} schema admits fewer JSON types{d}, so {}", rejects("values of the dropped types")),
        K::TypeChanged => format!("the {reader} schema admits other JSON types{d}, so {}", rejects("values")),
        K::Unsupported { keyword } => format!(
            "`{keyword}` {}, and this checker does not evaluate `{keyword}`, so it cannot tell whether a reader using the {reader} schema still accepts data written with the {writer} schema",
            if detail.is_empty() { "changed" } else { detail }
        ),
        K::PatternAdded => format!("the {reader} schema adds a pattern{d}, so {}", rejects("strings that do not match it")),
        K::PatternRemoved => format!("the {reader} schema drops the pattern{d}, so {accepts}"),
        K::PatternChanged => format!("the {reader} schema has another pattern{d}, so {}", rejects("strings that only match the old one")),
        K::FormatAdded => format!(
            "the {reader} schema adds `format`{d}, so {} (when formats are validated)",
            rejects("values not in that format")
        ),
        K::FormatRemoved => format!("the {reader} schema drops `format`{d}, so {accepts}"),
        K::FormatWidened => format!("the {reader} schema's numeric format holds every value of the {writer} schema's{d}, so {accepts}"),
        K::FormatChanged => format!(
            "the {reader} schema has another `format`{d}, so {} (when formats are validated)",
            rejects("values in the other format")
        ),
        K::MultipleOfAdded => format!("the {reader} schema adds `multipleOf`{d}, so {}", rejects("numbers that are not multiples of it")),
        K::MultipleOfRemoved => format!("the {reader} schema drops `multipleOf`{d}, so {accepts}"),
        K::MultipleOfReduced => format!("every multiple of the {writer} schema's `multipleOf` is a multiple of the {reader} schema's{d}, so {accepts}"),
        K::MultipleOfExpanded | K::MultipleOfChanged => format!(
            "the {reader} schema's `multipleOf` does not divide the {writer} schema's{d}, so {}",
            rejects("numbers")
        ),
        K::EnumArrayExtended => format!("the {reader} schema allows more values{d}, so {accepts}"),
        K::EnumArrayNarrowed | K::EnumArrayChanged => {
            format!("the {reader} schema no longer allows some values{d}, so {}", rejects("those values"))
        }
        K::EnumAdded => format!("the {reader} schema restricts values to a list{d}, so {}", rejects("other values")),
        K::EnumRemoved => format!("the {reader} schema no longer restricts values to a list, so {accepts}"),
        K::ConstChanged => format!("the {reader} schema requires another constant{d}, so {}", rejects("the old constant")),
        K::NotTypeNarrowed => format!("the schema under `not` matches less in the {reader} schema, so {accepts}"),
        K::NotTypeExtended => format!("the schema under `not` matches more in the {reader} schema{d}, so {}", rejects("values it now excludes")),
        K::NotAdded => format!("the {reader} schema adds a `not`, so {}", rejects("values it excludes")),
        K::NotRemoved => format!("the {reader} schema drops its `not`, so {accepts}"),
        K::RequiredAttributeAdded => format!(
            "the {reader} schema requires a property{d} that the {writer} schema left optional and gives it no default, so {}",
            rejects("objects without it")
        ),
        K::RequiredAttributeWithDefaultAdded => format!(
            "the {reader} schema requires a property{d} but gives it a default for objects written without it, so {accepts}"
        ),
        K::RequiredAttributeRemoved => format!("the {reader} schema no longer requires a property{d}, so {accepts}"),
        K::PropertyAddedToOpenContentModel { presence } => match (presence, compatible) {
            (Presence::Required, _) => format!(
                "the {reader} schema adds a required property{d} without a default, so {}",
                rejects("every object")
            ),
            (_, true) => format!(
                "the {writer} schema's object was open, but the lenient policy assumes writers only write the properties they declare, so a reader using the {reader} schema accepts the property{d} as absent"
            ),
            (_, false) => format!(
                "the {writer} schema's object is open, so data written with it may already hold a property{d} of that name with any value, and a reader using the {reader} schema rejects it where the value does not fit the new declaration"
            ),
        },
        K::PropertyWithEmptySchemaAddedToOpenContentModel => {
            format!("the added property{d} accepts any value, so {accepts}")
        }
        K::RequiredPropertyAddedToUnopenContentModel => format!(
            "the {reader} schema adds a required property{d} without a default, so {}",
            rejects("every object")
        ),
        K::RequiredPropertyWithDefaultAddedToUnopenContentModel => format!(
            "the {writer} schema allowed no such property and the {reader} schema gives it a default{d}, so {accepts}"
        ),
        K::OptionalPropertyAddedToUnopenContentModel => format!(
            "the {writer} schema's object did not allow the property{d} freely, so its data cannot hold a conflicting value and {accepts}"
        ),
        K::PropertyRemovedFromOpenContentModel => format!(
            "the {reader} schema's object is open, so a property it no longer declares{d} is accepted with any value and {accepts}"
        ),
        K::PropertyWithFalseRemovedFromClosedContentModel => format!(
            "the removed property{d} was forbidden (`false`), so data written with the {writer} schema never holds it and {accepts}"
        ),
        K::PropertyRemovedFromClosedContentModel { required } => {
            if compatible {
                format!(
                    "the {reader} schema's object is closed, but the lenient policy assumes readers ignore properties they do not declare, so the removed optional property{d} is ignored"
                )
            } else if *required {
                format!(
                    "the {reader} schema's object is closed and no longer declares a property{d} the {writer} schema required, so {}",
                    rejects("every object")
                )
            } else {
                format!(
                    "the {reader} schema's object is closed and no longer declares a property{d}, so {}",
                    rejects("objects that hold it")
                )
            }
        }
        K::PropertyAddedIsCoveredByPartiallyOpenContentModel => format!(
            "the {writer} schema's `patternProperties`/`additionalProperties` only allowed values the added property{d} accepts, so {accepts}"
        ),
        K::PropertyAddedNotCoveredByPartiallyOpenContentModel => {
            if compatible {
                format!(
                    "the {writer} schema's `patternProperties`/`additionalProperties` allowed values the added property rejects{d}, but the lenient policy assumes writers only write the properties they declare"
                )
            } else {
                format!(
                    "the {writer} schema's `patternProperties`/`additionalProperties` allowed values the added property rejects{d}, so {}",
                    rejects("objects holding such values")
                )
            }
        }
        K::PropertyRemovedIsCoveredByPartiallyOpenContentModel => format!(
            "the {reader} schema's `patternProperties`/`additionalProperties` accept every value the removed property{d} allowed, so {accepts}"
        ),
        K::PropertyRemovedNotCoveredByPartiallyOpenContentModel => {
            if compatible {
                format!(
                    "the {reader} schema's `patternProperties`/`additionalProperties` reject values the removed property allowed{d}, but the lenient policy assumes readers ignore properties they do not declare"
                )
            } else {
                format!(
                    "the {reader} schema's `patternProperties`/`additionalProperties` reject values the removed property allowed{d}, so {}",
                    rejects("objects holding such values")
                )
            }
        }
        K::AdditionalPropertiesAdded => format!("the {reader} schema's object is no longer closed, so {accepts}"),
        K::AdditionalPropertiesExtended => format!("the {reader} schema no longer constrains undeclared properties, so {accepts}"),
        K::AdditionalPropertiesRemoved | K::AdditionalPropertiesNarrowed => {
            let what = if matches!(kind, K::AdditionalPropertiesRemoved) {
                "forbids undeclared properties"
            } else {
                "constrains undeclared properties"
            };
            if compatible {
                format!(
                    "the {reader} schema {what}, but the lenient policy assumes writers only write the properties they declare and readers ignore the rest"
                )
            } else {
                format!("the {reader} schema {what}, so {}", rejects("objects holding other properties"))
            }
        }
        K::PatternPropertyAddedToClosedContentModel => format!(
            "the {writer} schema's object allowed no undeclared property, so {accepts}"
        ),
        K::PatternPropertyAddedToOpenContentModel | K::PatternPropertyAdded | K::PatternPropertyRemoved => {
            if compatible {
                format!(
                    "`patternProperties` changed{d}, and the lenient policy assumes writers only write the properties they declare and readers ignore the rest"
                )
            } else {
                format!(
                    "the {reader} schema constrains undeclared property names differently{d}, so {}",
                    rejects("objects holding such properties")
                )
            }
        }
        K::PatternPropertyRemovedFromOpenContentModel => format!(
            "the {reader} schema's object is open, so properties the removed pattern{d} matched are accepted with any value and {accepts}"
        ),
        K::UniqueItemsAdded => format!("the {reader} schema requires unique items, so {}", rejects("arrays with repeated items")),
        K::UniqueItemsRemoved => format!("the {reader} schema allows repeated items, so {accepts}"),
        K::AdditionalItemsAdded => format!("the {reader} schema allows items past the tuple, so {accepts}"),
        K::AdditionalItemsExtended => format!("the {reader} schema no longer constrains items past the tuple, so {accepts}"),
        K::AdditionalItemsRemoved => format!("the {reader} schema forbids items past the tuple, so {}", rejects("longer arrays")),
        K::AdditionalItemsNarrowed => format!("the {reader} schema constrains items past the tuple, so {}", rejects("such items")),
        K::ItemAddedToOpenContentModel => format!(
            "the {writer} schema allowed any item at this position, so {}",
            rejects("arrays whose item there does not fit the new position's schema")
        ),
        K::ItemWithEmptySchemaAddedToOpenContentModel => format!("the added position accepts any item, so {accepts}"),
        K::ItemAddedToClosedContentModel => format!("the {writer} schema allowed no item at this position, so {accepts}"),
        K::ItemRemovedFromOpenContentModel => format!("the {reader} schema allows any item at this position, so {accepts}"),
        K::ItemWithFalseRemovedFromClosedContentModel => format!("the removed position was forbidden (`false`), so {accepts}"),
        K::ItemRemovedFromClosedContentModel => format!("the {reader} schema allows no item at this position, so {}", rejects("arrays that long")),
        K::ItemAddedIsCoveredByPartiallyOpenContentModel => format!(
            "the {writer} schema's rule for further items only allowed what the added position accepts, so {accepts}"
        ),
        K::ItemAddedNotCoveredByPartiallyOpenContentModel => format!(
            "the {writer} schema's rule for further items allowed what the added position rejects{d}, so {}",
            rejects("such arrays")
        ),
        K::ItemRemovedIsCoveredByPartiallyOpenContentModel => format!(
            "the {reader} schema's rule for further items accepts everything the removed position allowed, so {accepts}"
        ),
        K::ItemRemovedNotCoveredByPartiallyOpenContentModel => format!(
            "the {reader} schema's rule for further items rejects what the removed position allowed{d}, so {}",
            rejects("such arrays")
        ),
        K::CombinedTypeExtended => format!("the {reader} schema's combinator accepts more{d}, so {accepts}"),
        K::CombinedTypeChanged => format!(
            "the {reader} schema's combinator is stricter{d}: data matching several alternatives, or not all parts, is rejected, so {}",
            rejects("some values")
        ),
        K::ProductTypeExtended => format!("the {reader} schema's `allOf` has more parts{d}, so {}", rejects("values that fail a new part")),
        K::ProductTypeNarrowed => format!("the {reader} schema requires fewer of the {writer} schema's `allOf` parts{d}, so {accepts}"),
        K::SumTypeExtended => format!("the {reader} schema offers more alternatives{d}, so {accepts}"),
        K::SumTypeNarrowed => format!("the {reader} schema offers fewer alternatives{d}, so {}", rejects("values of the dropped ones")),
        K::CombinedTypeSubschemasChanged => format!(
            "{}, so {}",
            if detail.is_empty() { "the alternatives changed" } else { detail },
            rejects("values of that alternative")
        ),
        K::OneOfAlternativesOverlap => format!(
            "the {reader} schema's `oneOf` has alternatives{d} that the checker cannot show to exclude each other, and `oneOf` rejects a value that matches two, so {}",
            if compatible {
                format!("{} (the lenient policy accepts this, as Confluent's registry does)", rejects("values that match both"))
            } else {
                rejects("values that match both")
            }
        ),
        // Bounds are handled above.
        _ => format!("`{}` changed{d}", kind.confluent_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_name_the_reader_and_the_writer() {
        let text = explain(
            &DifferenceKind::MaximumDecreased,
            "10 -> 5",
            "old",
            "new",
            false,
        );
        assert_eq!(
            text,
            "the new schema tightens `maximum` (10 -> 5), so a reader using the new schema rejects values \
             outside the new bound written with the old schema"
        );
        let open = DifferenceKind::PropertyAddedToOpenContentModel {
            presence: Presence::Optional,
        };
        assert!(explain(&open, "email", "old", "new", false)
            .contains("may already hold a property (email)"));
        assert!(explain(&open, "email", "old", "new", true).contains("lenient"));
    }
}
