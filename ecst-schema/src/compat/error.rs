//! Why two schemas could not be compared.

/// A schema the checker cannot walk: a `$ref` that cannot be followed, or a
/// value where a schema is required that is not one.
///
/// Returned instead of a report; the checker never panics on its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schema {version}, at {path}: {reason}")]
pub struct SchemaError {
    /// Which schema: its index in the history given to
    /// [`check_history`](super::check_history), or `0` for the old and `1`
    /// for the new schema given to [`check`](super::check).
    pub version: usize,
    /// A JSON pointer into that schema (`#/properties/home/$ref`).
    pub path: String,
    /// What is wrong there.
    pub reason: SchemaErrorReason,
}

/// What is wrong at a [`SchemaError`]'s path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaErrorReason {
    /// `$ref`s that lead back to themselves without reaching a schema
    /// (`A` is `{"$ref": "B"}` and `B` is `{"$ref": "A"}`). A recursive type,
    /// whose `$ref` sits inside a property or an item, is not this: it is
    /// compared normally.
    #[error("the $ref chain {} loops without reaching a schema", chain.join(" -> "))]
    RefCycle {
        /// The references followed, in order, ending with the repeated one.
        chain: Vec<String>,
    },
    /// A `$ref` names a place in the document that does not exist.
    #[error("$ref `{reference}` points to nothing in the document")]
    MissingRefTarget {
        /// The reference as written.
        reference: String,
    },
    /// A `$ref` that is not a JSON pointer into the same document (`#`,
    /// `#/$defs/Name`): another document, an `$anchor` or a relative URI.
    #[error("$ref `{reference}` is not a pointer into this document (only `#` and `#/...` are followed)")]
    UnsupportedRef {
        /// The reference as written.
        reference: String,
    },
    /// A schema was required (an object or a boolean) and something else
    /// was found.
    #[error("expected a schema (an object or a boolean), found {found}")]
    NotASchema {
        /// The JSON type found: `"a string"`, `"an array"`…
        found: &'static str,
    },
    /// Comparisons nested deeper than the checker allows: a loop of `$ref`s
    /// through `allOf`/`anyOf`/`oneOf` that never reaches a property or an
    /// item, or a schema nested absurdly deep.
    #[error("comparisons nest more than {limit} levels deep: the schema is nested too deeply, or loops through $ref and allOf/anyOf/oneOf")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// A `$ref` chain (`A` is `{"$ref": "B"}`, `B` is `{"$ref": "C"}`, …)
    /// longer than the checker follows: real schemas chain two or three.
    #[error("the $ref chain is longer than {limit} links")]
    RefChainTooLong {
        /// The most links one `$ref` may follow.
        limit: usize,
    },
    /// Comparing the two schemas takes more sub-comparisons than the
    /// checker allows: the schemas are huge, or combine many `anyOf`,
    /// `oneOf` and `allOf` alternatives at many levels, whose pairings
    /// multiply.
    #[error("comparing the schemas takes more than {limit} sub-comparisons")]
    TooManyComparisons {
        /// The most sub-comparisons one check may make.
        limit: usize,
    },
    /// A keyword's value has the wrong shape (`"required": "name"`).
    #[error("`{keyword}` must be {expected}")]
    InvalidKeyword {
        /// The keyword.
        keyword: String,
        /// What its value must be.
        expected: &'static str,
    },
}

/// `"a string"`, `"an array"`…: the JSON type of `value`, for messages.
pub(crate) fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
