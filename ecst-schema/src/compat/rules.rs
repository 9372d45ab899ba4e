//! Which kinds of difference a policy accepts.
//!
//! Confluent keeps two sets of `Difference.Type`s, `COMPATIBLE_CHANGES_STRICT`
//! and `COMPATIBLE_CHANGES_LENIENT`; a check passes when every difference
//! found is in the set of its policy. This is those sets as one function.

use super::kind::{DifferenceKind, Presence};
use super::mode::Policy;

/// Whether a difference of `kind` keeps the reader able to read the writer's
/// data under `policy`.
pub(crate) fn is_compatible(kind: &DifferenceKind, policy: Policy) -> bool {
    use DifferenceKind as K;
    match kind {
        // Annotations, and every relaxation.
        K::IdChanged
        | K::TitleChanged
        | K::DescriptionChanged
        | K::DefaultChanged
        | K::MetadataChanged { .. }
        | K::SchemaRemoved
        | K::TypeExtended
        | K::MaxLengthIncreased
        | K::MaxLengthRemoved
        | K::MinLengthDecreased
        | K::MinLengthRemoved
        | K::PatternRemoved
        | K::FormatRemoved
        | K::FormatWidened
        | K::MaximumIncreased
        | K::MaximumRemoved
        | K::MinimumDecreased
        | K::MinimumRemoved
        | K::ExclusiveMaximumIncreased
        | K::ExclusiveMaximumRemoved
        | K::ExclusiveMinimumDecreased
        | K::ExclusiveMinimumRemoved
        | K::MultipleOfReduced
        | K::MultipleOfRemoved
        | K::EnumArrayExtended
        | K::EnumRemoved
        | K::NotTypeNarrowed
        | K::NotRemoved
        | K::RequiredAttributeWithDefaultAdded
        | K::RequiredAttributeRemoved
        | K::PropertyWithEmptySchemaAddedToOpenContentModel
        | K::RequiredPropertyWithDefaultAddedToUnopenContentModel
        | K::OptionalPropertyAddedToUnopenContentModel
        | K::PropertyRemovedFromOpenContentModel
        | K::PropertyWithFalseRemovedFromClosedContentModel
        | K::PropertyAddedIsCoveredByPartiallyOpenContentModel
        | K::PropertyRemovedIsCoveredByPartiallyOpenContentModel
        | K::AdditionalPropertiesAdded
        | K::AdditionalPropertiesExtended
        | K::PatternPropertyAddedToClosedContentModel
        | K::PatternPropertyRemovedFromOpenContentModel
        | K::MaxPropertiesIncreased
        | K::MaxPropertiesRemoved
        | K::MinPropertiesDecreased
        | K::MinPropertiesRemoved
        | K::MaxItemsIncreased
        | K::MaxItemsRemoved
        | K::MinItemsDecreased
        | K::MinItemsRemoved
        | K::UniqueItemsRemoved
        | K::AdditionalItemsAdded
        | K::AdditionalItemsExtended
        | K::ItemWithEmptySchemaAddedToOpenContentModel
        | K::ItemAddedToClosedContentModel
        | K::ItemRemovedFromOpenContentModel
        | K::ItemWithFalseRemovedFromClosedContentModel
        | K::ItemAddedIsCoveredByPartiallyOpenContentModel
        | K::ItemRemovedIsCoveredByPartiallyOpenContentModel
        | K::CombinedTypeExtended
        | K::ProductTypeNarrowed
        | K::SumTypeExtended => true,

        // What the lenient policy adds: writers are assumed to write only
        // the properties their schema declares, readers to ignore the ones
        // they do not know. A required property without a default is still
        // missing from every old record, so it stays incompatible.
        K::PropertyAddedToOpenContentModel { presence } => {
            policy == Policy::Lenient && *presence != Presence::Required
        }
        K::PropertyRemovedFromClosedContentModel { required } => {
            policy == Policy::Lenient && !*required
        }
        K::PropertyAddedNotCoveredByPartiallyOpenContentModel
        | K::PropertyRemovedNotCoveredByPartiallyOpenContentModel
        | K::AdditionalPropertiesRemoved
        | K::AdditionalPropertiesNarrowed
        | K::PatternPropertyAddedToOpenContentModel
        | K::PatternPropertyRemoved => policy == Policy::Lenient,

        // Confluent accepts a `oneOf` whose alternatives may overlap; the
        // strict policy here does not, since a value matching two
        // alternatives fails `oneOf`.
        K::OneOfAlternativesOverlap => policy == Policy::Lenient,

        // Every restriction, every change the checker cannot judge.
        K::SchemaAdded
        | K::TypeNarrowed
        | K::TypeChanged
        | K::Unsupported { .. }
        | K::MaxLengthAdded
        | K::MaxLengthDecreased
        | K::MinLengthAdded
        | K::MinLengthIncreased
        | K::PatternAdded
        | K::PatternChanged
        | K::FormatAdded
        | K::FormatChanged
        | K::MaximumAdded
        | K::MaximumDecreased
        | K::MinimumAdded
        | K::MinimumIncreased
        | K::ExclusiveMaximumAdded
        | K::ExclusiveMaximumDecreased
        | K::ExclusiveMinimumAdded
        | K::ExclusiveMinimumIncreased
        | K::MultipleOfAdded
        | K::MultipleOfExpanded
        | K::MultipleOfChanged
        | K::EnumArrayNarrowed
        | K::EnumArrayChanged
        | K::EnumAdded
        | K::ConstChanged
        | K::NotTypeExtended
        | K::NotAdded
        | K::RequiredAttributeAdded
        | K::RequiredPropertyAddedToUnopenContentModel
        | K::PatternPropertyAdded
        | K::MaxPropertiesAdded
        | K::MaxPropertiesDecreased
        | K::MinPropertiesAdded
        | K::MinPropertiesIncreased
        | K::MaxItemsAdded
        | K::MaxItemsDecreased
        | K::MinItemsAdded
        | K::MinItemsIncreased
        | K::UniqueItemsAdded
        | K::AdditionalItemsRemoved
        | K::AdditionalItemsNarrowed
        | K::ItemAddedToOpenContentModel
        | K::ItemRemovedFromClosedContentModel
        | K::ItemAddedNotCoveredByPartiallyOpenContentModel
        | K::ItemRemovedNotCoveredByPartiallyOpenContentModel
        | K::CombinedTypeChanged
        | K::ProductTypeExtended
        | K::SumTypeNarrowed
        | K::CombinedTypeSubschemasChanged => false,
    }
}

/// Whether every difference in `kinds` is compatible under `policy`.
pub(crate) fn all_compatible<'a>(
    kinds: impl IntoIterator<Item = &'a DifferenceKind>,
    policy: Policy,
) -> bool {
    kinds.into_iter().all(|kind| is_compatible(kind, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_accepts_more_than_strict_and_nothing_less() {
        let open = |presence| DifferenceKind::PropertyAddedToOpenContentModel { presence };
        for (kind, strict, lenient) in [
            (open(Presence::Optional), false, true),
            (open(Presence::RequiredWithDefault), false, true),
            (open(Presence::Required), false, false),
            (
                DifferenceKind::PropertyRemovedFromClosedContentModel { required: false },
                false,
                true,
            ),
            (
                DifferenceKind::PropertyRemovedFromClosedContentModel { required: true },
                false,
                false,
            ),
            (DifferenceKind::AdditionalPropertiesNarrowed, false, true),
            (DifferenceKind::AdditionalPropertiesRemoved, false, true),
            (
                DifferenceKind::PropertyRemovedFromOpenContentModel,
                true,
                true,
            ),
            (DifferenceKind::TypeNarrowed, false, false),
            (DifferenceKind::ItemAddedToOpenContentModel, false, false),
            (
                DifferenceKind::Unsupported {
                    keyword: "if".into(),
                },
                false,
                false,
            ),
        ] {
            assert_eq!(
                is_compatible(&kind, Policy::Strict),
                strict,
                "{kind:?} strict"
            );
            assert_eq!(
                is_compatible(&kind, Policy::Lenient),
                lenient,
                "{kind:?} lenient"
            );
        }
    }
}
