//! What kind of change a [`Difference`](super::Difference) is.
//!
//! The kinds are Confluent's `Difference.Type`s in CamelCase, so a registry's
//! refusal (`PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL #/properties/email`) and
//! this checker's report name the same thing; [`DifferenceKind::confluent_name`]
//! gives the registry's spelling. A few kinds have no registry counterpart
//! (`format`, `const`, `patternProperties`, unsupported keywords); their
//! documentation says so.

use core::fmt;

/// Whether a property added to a schema is required, and with a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Presence {
    /// Not listed in `required`.
    Optional,
    /// Listed in `required`, and its schema has a `default`.
    RequiredWithDefault,
    /// Listed in `required`, without a `default`.
    Required,
}

macro_rules! kinds {
    ($(
        $(#[$doc:meta])*
        $name:ident $({ $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? })? => $confluent:literal, $text:literal;
    )*) => {
        /// One kind of change between a writer's schema and a reader's
        /// schema, in Confluent's vocabulary.
        ///
        /// "Added", "removed", "increased"… always describe the reader's
        /// schema relative to the writer's: for a backward check the writer
        /// is the old schema and the reader the new one, for a forward check
        /// the other way round.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum DifferenceKind {
            $(
                $(#[$doc])*
                $name $({ $(
                    $(#[$fdoc])*
                    $field: $ty
                ),* })?,
            )*
        }

        impl DifferenceKind {
            /// The registry's name for this kind (`"TYPE_NARROWED"`), or the
            /// name this checker uses where Confluent has none.
            pub fn confluent_name(&self) -> &'static str {
                match self {
                    $(kinds!(@pat $name $({ $($field),* })?) => $confluent,)*
                }
            }

            /// A few words naming the change, for reports.
            pub(crate) fn phrase(&self) -> &'static str {
                match self {
                    $(kinds!(@pat $name $({ $($field),* })?) => $text,)*
                }
            }
        }
    };
    (@pat $name:ident { $($field:ident),* }) => { DifferenceKind::$name { .. } };
    (@pat $name:ident) => { DifferenceKind::$name };
}

kinds! {
    // ---- metadata --------------------------------------------------------
    /// `$id` (or draft-04 `id`) changed. Compatible.
    IdChanged => "ID_CHANGED", "$id changed";
    /// `title` changed. Compatible.
    TitleChanged => "TITLE_CHANGED", "title changed";
    /// `description` changed. Compatible.
    DescriptionChanged => "DESCRIPTION_CHANGED", "description changed";
    /// `default` changed. Compatible: a default is used by readers, not
    /// validated.
    DefaultChanged => "DEFAULT_CHANGED", "default changed";
    /// Another annotation changed (`examples`, `$comment`, `$schema`,
    /// `readOnly`, `writeOnly`, `deprecated`, `$anchor`). Compatible. Not a
    /// Confluent kind: the registry ignores these keywords.
    MetadataChanged {
        /// The annotation keyword.
        keyword: String
    } => "METADATA_CHANGED", "annotation changed";

    // ---- whole schemas and types ------------------------------------------
    /// A schema now constrains what had none (an `items` schema where the
    /// array took anything).
    SchemaAdded => "SCHEMA_ADDED", "schema added";
    /// A schema that constrained a position is gone. Compatible.
    SchemaRemoved => "SCHEMA_REMOVED", "schema removed";
    /// The reader accepts more JSON types (`integer` to `number`, a type
    /// added to a type array). Compatible.
    TypeExtended => "TYPE_EXTENDED", "type widened";
    /// The reader accepts fewer JSON types (`number` to `integer`, `null`
    /// dropped from a type array).
    TypeNarrowed => "TYPE_NARROWED", "type narrowed";
    /// The reader accepts other JSON types (`string` to `number`).
    TypeChanged => "TYPE_CHANGED", "type changed";
    /// A keyword this checker does not understand differs between the two
    /// schemas. Never compatible: the checker does not claim compatibility
    /// for a change it cannot judge. Not a Confluent kind.
    Unsupported {
        /// The keyword whose value differs.
        keyword: String
    } => "UNSUPPORTED_KEYWORD_CHANGED", "unsupported keyword changed";

    // ---- strings ------------------------------------------------------------
    /// `maxLength` added.
    MaxLengthAdded => "MAX_LENGTH_ADDED", "maxLength added";
    /// `maxLength` removed. Compatible.
    MaxLengthRemoved => "MAX_LENGTH_REMOVED", "maxLength removed";
    /// `maxLength` raised. Compatible.
    MaxLengthIncreased => "MAX_LENGTH_INCREASED", "maxLength raised";
    /// `maxLength` lowered.
    MaxLengthDecreased => "MAX_LENGTH_DECREASED", "maxLength lowered";
    /// `minLength` added.
    MinLengthAdded => "MIN_LENGTH_ADDED", "minLength added";
    /// `minLength` removed. Compatible.
    MinLengthRemoved => "MIN_LENGTH_REMOVED", "minLength removed";
    /// `minLength` raised.
    MinLengthIncreased => "MIN_LENGTH_INCREASED", "minLength raised";
    /// `minLength` lowered. Compatible.
    MinLengthDecreased => "MIN_LENGTH_DECREASED", "minLength lowered";
    /// `pattern` added.
    PatternAdded => "PATTERN_ADDED", "pattern added";
    /// `pattern` removed. Compatible.
    PatternRemoved => "PATTERN_REMOVED", "pattern removed";
    /// `pattern` changed (any textual change counts).
    PatternChanged => "PATTERN_CHANGED", "pattern changed";
    /// `format` added. Not a Confluent kind: the registry ignores `format`.
    FormatAdded => "FORMAT_ADDED", "format added";
    /// `format` removed. Compatible. Not a Confluent kind.
    FormatRemoved => "FORMAT_REMOVED", "format removed";
    /// A numeric `format` replaced by one whose range holds the old one
    /// (`uint32` to `uint64`, `int32` to `int64`, `float` to `double`).
    /// Compatible. Not a Confluent kind.
    FormatWidened => "FORMAT_WIDENED", "numeric format widened";
    /// `format` replaced by an unrelated or narrower one. Not a Confluent
    /// kind.
    FormatChanged => "FORMAT_CHANGED", "format changed";

    // ---- numbers ------------------------------------------------------------
    /// `maximum` added.
    MaximumAdded => "MAXIMUM_ADDED", "maximum added";
    /// `maximum` removed. Compatible.
    MaximumRemoved => "MAXIMUM_REMOVED", "maximum removed";
    /// `maximum` raised. Compatible.
    MaximumIncreased => "MAXIMUM_INCREASED", "maximum raised";
    /// `maximum` lowered.
    MaximumDecreased => "MAXIMUM_DECREASED", "maximum lowered";
    /// `minimum` added.
    MinimumAdded => "MINIMUM_ADDED", "minimum added";
    /// `minimum` removed. Compatible.
    MinimumRemoved => "MINIMUM_REMOVED", "minimum removed";
    /// `minimum` raised.
    MinimumIncreased => "MINIMUM_INCREASED", "minimum raised";
    /// `minimum` lowered. Compatible.
    MinimumDecreased => "MINIMUM_DECREASED", "minimum lowered";
    /// `exclusiveMaximum` added.
    ExclusiveMaximumAdded => "EXCLUSIVE_MAXIMUM_ADDED", "exclusiveMaximum added";
    /// `exclusiveMaximum` removed. Compatible.
    ExclusiveMaximumRemoved => "EXCLUSIVE_MAXIMUM_REMOVED", "exclusiveMaximum removed";
    /// `exclusiveMaximum` raised. Compatible.
    ExclusiveMaximumIncreased => "EXCLUSIVE_MAXIMUM_INCREASED", "exclusiveMaximum raised";
    /// `exclusiveMaximum` lowered.
    ExclusiveMaximumDecreased => "EXCLUSIVE_MAXIMUM_DECREASED", "exclusiveMaximum lowered";
    /// `exclusiveMinimum` added.
    ExclusiveMinimumAdded => "EXCLUSIVE_MINIMUM_ADDED", "exclusiveMinimum added";
    /// `exclusiveMinimum` removed. Compatible.
    ExclusiveMinimumRemoved => "EXCLUSIVE_MINIMUM_REMOVED", "exclusiveMinimum removed";
    /// `exclusiveMinimum` raised.
    ExclusiveMinimumIncreased => "EXCLUSIVE_MINIMUM_INCREASED", "exclusiveMinimum raised";
    /// `exclusiveMinimum` lowered. Compatible.
    ExclusiveMinimumDecreased => "EXCLUSIVE_MINIMUM_DECREASED", "exclusiveMinimum lowered";
    /// `multipleOf` added.
    MultipleOfAdded => "MULTIPLE_OF_ADDED", "multipleOf added";
    /// `multipleOf` removed. Compatible.
    MultipleOfRemoved => "MULTIPLE_OF_REMOVED", "multipleOf removed";
    /// `multipleOf` became a multiple of the old one (`2` to `10`).
    MultipleOfExpanded => "MULTIPLE_OF_EXPANDED", "multipleOf made coarser";
    /// `multipleOf` became a divisor of the old one (`10` to `2`).
    /// Compatible.
    MultipleOfReduced => "MULTIPLE_OF_REDUCED", "multipleOf made finer";
    /// `multipleOf` changed to an unrelated value (`10` to `3`).
    MultipleOfChanged => "MULTIPLE_OF_CHANGED", "multipleOf changed";

    // ---- enum, const, not ---------------------------------------------------
    /// `enum` gained values and lost none. Compatible.
    EnumArrayExtended => "ENUM_ARRAY_EXTENDED", "enum extended";
    /// `enum` lost values and gained none.
    EnumArrayNarrowed => "ENUM_ARRAY_NARROWED", "enum narrowed";
    /// `enum` lost some values and gained others.
    EnumArrayChanged => "ENUM_ARRAY_CHANGED", "enum changed";
    /// An `enum` (or `const`) now restricts what took any value. Confluent
    /// reports this as `TYPE_CHANGED`.
    EnumAdded => "ENUM_ADDED", "enum added";
    /// The `enum` (or `const`) restriction is gone. Compatible.
    EnumRemoved => "ENUM_REMOVED", "enum removed";
    /// `const` changed. Confluent reports this as `ENUM_ARRAY_CHANGED`.
    ConstChanged => "CONST_CHANGED", "const changed";
    /// The schema inside `not` now matches less, so the reader accepts
    /// more. Compatible.
    NotTypeNarrowed => "NOT_TYPE_NARROWED", "not narrowed";
    /// The schema inside `not` now matches more (or other things), so the
    /// reader rejects more.
    NotTypeExtended => "NOT_TYPE_EXTENDED", "not extended";
    /// A `not` was added.
    NotAdded => "NOT_ADDED", "not added";
    /// The `not` was removed. Compatible.
    NotRemoved => "NOT_REMOVED", "not removed";

    // ---- objects: required ----------------------------------------------------
    /// An existing property became required, without a default.
    RequiredAttributeAdded => "REQUIRED_ATTRIBUTE_ADDED", "property made required";
    /// An existing property became required, and has a default. Compatible.
    RequiredAttributeWithDefaultAdded => "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", "property made required with a default";
    /// A property is no longer required. Compatible.
    RequiredAttributeRemoved => "REQUIRED_ATTRIBUTE_REMOVED", "property made optional";

    // ---- objects: properties and content models --------------------------------
    /// A property was added where the writer's object was open (no
    /// `additionalProperties` or `true`, no `patternProperties`): data
    /// written earlier may already hold a property of that name with any
    /// value. Confluent 7.x calls every case `PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL`;
    /// 8.x splits it by `presence`. Incompatible under the strict policy;
    /// under the lenient one compatible unless the property is required
    /// without a default.
    PropertyAddedToOpenContentModel {
        /// Whether the added property is required, and with a default.
        presence: Presence
    } => "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "property added to an open content model";
    /// A property whose schema accepts anything was added to an open
    /// object. Compatible.
    PropertyWithEmptySchemaAddedToOpenContentModel => "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", "property with an empty schema added to an open content model";
    /// A required property without a default was added to a closed or
    /// partially open object: data written earlier lacks it.
    RequiredPropertyAddedToUnopenContentModel => "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "required property added";
    /// A required property with a default was added to a closed or
    /// partially open object. Compatible.
    RequiredPropertyWithDefaultAddedToUnopenContentModel => "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL", "required property with a default added";
    /// An optional property was added to a closed or partially open object.
    /// Compatible.
    OptionalPropertyAddedToUnopenContentModel => "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "optional property added to a closed content model";
    /// A property was removed and the reader's object is open. Compatible.
    PropertyRemovedFromOpenContentModel => "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", "property removed from an open content model";
    /// A property whose schema was `false` was removed from a closed object.
    /// Compatible.
    PropertyWithFalseRemovedFromClosedContentModel => "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", "property with a false schema removed from a closed content model";
    /// A property was removed and the reader's object is closed: data
    /// written earlier that holds it is rejected. Incompatible under the
    /// strict policy; under the lenient one compatible when the property was
    /// optional (`required` tells which).
    PropertyRemovedFromClosedContentModel {
        /// Whether the writer's schema required the removed property.
        required: bool
    } => "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "property removed from a closed content model";
    /// A property was added where the writer's `patternProperties` or
    /// `additionalProperties` schema already allowed every value the new
    /// property schema allows. Compatible.
    PropertyAddedIsCoveredByPartiallyOpenContentModel => "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "property added, covered by the partially open content model";
    /// A property was added where the writer's `patternProperties` or
    /// `additionalProperties` schema allowed values the new property schema
    /// rejects. Incompatible under the strict policy only.
    PropertyAddedNotCoveredByPartiallyOpenContentModel => "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "property added, not covered by the partially open content model";
    /// A property was removed and the reader's `patternProperties` or
    /// `additionalProperties` schema accepts every value it allowed.
    /// Compatible.
    PropertyRemovedIsCoveredByPartiallyOpenContentModel => "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "property removed, covered by the partially open content model";
    /// A property was removed and the reader's `patternProperties` or
    /// `additionalProperties` schema rejects values it allowed. Incompatible
    /// under the strict policy only.
    PropertyRemovedNotCoveredByPartiallyOpenContentModel => "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "property removed, not covered by the partially open content model";
    /// `additionalProperties: false` was opened (removed, `true`, or a
    /// schema). Compatible.
    AdditionalPropertiesAdded => "ADDITIONAL_PROPERTIES_ADDED", "additionalProperties opened";
    /// The object was closed with `additionalProperties: false`.
    /// Incompatible under the strict policy only.
    AdditionalPropertiesRemoved => "ADDITIONAL_PROPERTIES_REMOVED", "additionalProperties closed";
    /// An `additionalProperties` schema was removed (the object is open
    /// again). Compatible.
    AdditionalPropertiesExtended => "ADDITIONAL_PROPERTIES_EXTENDED", "additionalProperties widened";
    /// An open object got an `additionalProperties` schema. Incompatible
    /// under the strict policy only.
    AdditionalPropertiesNarrowed => "ADDITIONAL_PROPERTIES_NARROWED", "additionalProperties narrowed";
    /// A `patternProperties` entry was added to an object that allowed no
    /// other properties. Compatible. Not a Confluent kind (the registry does
    /// not compare `patternProperties` entries).
    PatternPropertyAddedToClosedContentModel => "PATTERN_PROPERTY_ADDED_TO_CLOSED_CONTENT_MODEL", "patternProperties entry added to a closed content model";
    /// A `patternProperties` entry was added to an open object.
    /// Incompatible under the strict policy only. Not a Confluent kind.
    PatternPropertyAddedToOpenContentModel => "PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "patternProperties entry added to an open content model";
    /// A `patternProperties` entry was added beside other entries or an
    /// `additionalProperties` schema, which this checker cannot compare.
    /// Not a Confluent kind.
    PatternPropertyAdded => "PATTERN_PROPERTY_ADDED", "patternProperties entry added";
    /// A `patternProperties` entry was removed and the reader's object is
    /// open. Compatible. Not a Confluent kind.
    PatternPropertyRemovedFromOpenContentModel => "PATTERN_PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", "patternProperties entry removed from an open content model";
    /// A `patternProperties` entry was removed and the reader's object is
    /// not open. Incompatible under the strict policy only. Not a Confluent
    /// kind.
    PatternPropertyRemoved => "PATTERN_PROPERTY_REMOVED", "patternProperties entry removed";
    /// `maxProperties` added.
    MaxPropertiesAdded => "MAX_PROPERTIES_ADDED", "maxProperties added";
    /// `maxProperties` removed. Compatible.
    MaxPropertiesRemoved => "MAX_PROPERTIES_REMOVED", "maxProperties removed";
    /// `maxProperties` raised. Compatible.
    MaxPropertiesIncreased => "MAX_PROPERTIES_INCREASED", "maxProperties raised";
    /// `maxProperties` lowered.
    MaxPropertiesDecreased => "MAX_PROPERTIES_DECREASED", "maxProperties lowered";
    /// `minProperties` added.
    MinPropertiesAdded => "MIN_PROPERTIES_ADDED", "minProperties added";
    /// `minProperties` removed. Compatible.
    MinPropertiesRemoved => "MIN_PROPERTIES_REMOVED", "minProperties removed";
    /// `minProperties` raised.
    MinPropertiesIncreased => "MIN_PROPERTIES_INCREASED", "minProperties raised";
    /// `minProperties` lowered. Compatible.
    MinPropertiesDecreased => "MIN_PROPERTIES_DECREASED", "minProperties lowered";

    // ---- arrays -------------------------------------------------------------
    /// `maxItems` added.
    MaxItemsAdded => "MAX_ITEMS_ADDED", "maxItems added";
    /// `maxItems` removed. Compatible.
    MaxItemsRemoved => "MAX_ITEMS_REMOVED", "maxItems removed";
    /// `maxItems` raised. Compatible.
    MaxItemsIncreased => "MAX_ITEMS_INCREASED", "maxItems raised";
    /// `maxItems` lowered.
    MaxItemsDecreased => "MAX_ITEMS_DECREASED", "maxItems lowered";
    /// `minItems` added.
    MinItemsAdded => "MIN_ITEMS_ADDED", "minItems added";
    /// `minItems` removed. Compatible.
    MinItemsRemoved => "MIN_ITEMS_REMOVED", "minItems removed";
    /// `minItems` raised.
    MinItemsIncreased => "MIN_ITEMS_INCREASED", "minItems raised";
    /// `minItems` lowered. Compatible.
    MinItemsDecreased => "MIN_ITEMS_DECREASED", "minItems lowered";
    /// `uniqueItems: true` added.
    UniqueItemsAdded => "UNIQUE_ITEMS_ADDED", "uniqueItems added";
    /// `uniqueItems: true` removed. Compatible.
    UniqueItemsRemoved => "UNIQUE_ITEMS_REMOVED", "uniqueItems removed";
    /// Items past the tuple, forbidden before, are allowed now. Compatible.
    AdditionalItemsAdded => "ADDITIONAL_ITEMS_ADDED", "additional items allowed";
    /// Items past the tuple are now forbidden.
    AdditionalItemsRemoved => "ADDITIONAL_ITEMS_REMOVED", "additional items forbidden";
    /// The schema for items past the tuple was removed. Compatible.
    AdditionalItemsExtended => "ADDITIONAL_ITEMS_EXTENDED", "additional items widened";
    /// Items past the tuple, free before, now have a schema.
    AdditionalItemsNarrowed => "ADDITIONAL_ITEMS_NARROWED", "additional items narrowed";
    /// A tuple position was added where the writer allowed any item.
    ItemAddedToOpenContentModel => "ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "tuple item added to an open content model";
    /// A tuple position accepting anything was added where the writer
    /// allowed any item. Compatible.
    ItemWithEmptySchemaAddedToOpenContentModel => "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", "tuple item with an empty schema added to an open content model";
    /// A tuple position was added where the writer allowed no more items.
    /// Compatible.
    ItemAddedToClosedContentModel => "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", "tuple item added to a closed content model";
    /// A tuple position was removed and the reader allows any item there.
    /// Compatible.
    ItemRemovedFromOpenContentModel => "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", "tuple item removed from an open content model";
    /// A tuple position whose schema was `false` was removed from a closed
    /// tuple. Compatible.
    ItemWithFalseRemovedFromClosedContentModel => "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", "tuple item with a false schema removed from a closed content model";
    /// A tuple position was removed and the reader allows no item there.
    ItemRemovedFromClosedContentModel => "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", "tuple item removed from a closed content model";
    /// A tuple position was added and the writer's schema for further items
    /// allowed nothing the new position rejects. Compatible.
    ItemAddedIsCoveredByPartiallyOpenContentModel => "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "tuple item added, covered by the schema for further items";
    /// A tuple position was added and the writer's schema for further items
    /// allowed values the new position rejects.
    ItemAddedNotCoveredByPartiallyOpenContentModel => "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "tuple item added, not covered by the schema for further items";
    /// A tuple position was removed and the reader's schema for further
    /// items accepts everything it allowed. Compatible.
    ItemRemovedIsCoveredByPartiallyOpenContentModel => "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "tuple item removed, covered by the schema for further items";
    /// A tuple position was removed and the reader's schema for further
    /// items rejects values it allowed.
    ItemRemovedNotCoveredByPartiallyOpenContentModel => "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "tuple item removed, not covered by the schema for further items";

    // ---- oneOf / anyOf / allOf ----------------------------------------------
    /// `allOf` or `oneOf` became `anyOf`, or a single-schema combinator
    /// changed kind. Compatible.
    CombinedTypeExtended => "COMBINED_TYPE_EXTENDED", "combinator relaxed";
    /// The combinator changed kind in a way that accepts other data (a
    /// many-schema `anyOf` to `oneOf`, anything to a many-schema `allOf`).
    CombinedTypeChanged => "COMBINED_TYPE_CHANGED", "combinator changed";
    /// `allOf` gained a schema.
    ProductTypeExtended => "PRODUCT_TYPE_EXTENDED", "allOf extended";
    /// `allOf` lost a schema, or a schema stopped being a conjunction.
    /// Compatible.
    ProductTypeNarrowed => "PRODUCT_TYPE_NARROWED", "allOf narrowed";
    /// `oneOf`/`anyOf` gained an alternative, or a schema became one
    /// alternative among several. Compatible.
    SumTypeExtended => "SUM_TYPE_EXTENDED", "alternative added";
    /// `oneOf`/`anyOf` lost an alternative, or an alternative is no longer
    /// accepted.
    SumTypeNarrowed => "SUM_TYPE_NARROWED", "alternative removed";
    /// No one-to-one pairing of old and new `oneOf`/`anyOf`/`allOf`
    /// schemas is compatible.
    CombinedTypeSubschemasChanged => "COMBINED_TYPE_SUBSCHEMAS_CHANGED", "alternatives changed";
    /// The reader's `oneOf` gained or widened an alternative that the
    /// checker cannot show to exclude another one: a value the writer wrote
    /// may match both, and `oneOf` rejects a value matching two
    /// alternatives. Incompatible under the strict policy, compatible
    /// under the lenient one. Not a Confluent kind: the registry accepts
    /// such changes (`SUM_TYPE_EXTENDED`).
    OneOfAlternativesOverlap => "ONE_OF_ALTERNATIVES_OVERLAP", "oneOf alternatives may overlap";
}

impl fmt::Display for DifferenceKind {
    /// The short phrase, with the keyword for the kinds that carry one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DifferenceKind::Unsupported { keyword } => {
                write!(f, "unsupported keyword `{keyword}` changed")
            }
            DifferenceKind::MetadataChanged { keyword } => {
                write!(f, "annotation `{keyword}` changed")
            }
            DifferenceKind::PropertyAddedToOpenContentModel { presence } => {
                let which = match presence {
                    Presence::Optional => "optional",
                    Presence::RequiredWithDefault => "required (with a default)",
                    Presence::Required => "required",
                };
                write!(f, "{which} property added to an open content model")
            }
            DifferenceKind::PropertyRemovedFromClosedContentModel { required: true } => {
                f.write_str("required property removed from a closed content model")
            }
            DifferenceKind::PropertyRemovedFromClosedContentModel { required: false } => {
                f.write_str("optional property removed from a closed content model")
            }
            other => f.write_str(other.phrase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_confluent() {
        assert_eq!(
            DifferenceKind::TypeNarrowed.confluent_name(),
            "TYPE_NARROWED"
        );
        let kind = DifferenceKind::PropertyAddedToOpenContentModel {
            presence: Presence::Optional,
        };
        assert_eq!(
            kind.confluent_name(),
            "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
        );
        assert_eq!(
            kind.to_string(),
            "optional property added to an open content model"
        );
        let unsupported = DifferenceKind::Unsupported {
            keyword: "if".into(),
        };
        assert_eq!(unsupported.to_string(), "unsupported keyword `if` changed");
    }
}
