//! The checker on what schemars 1.x actually writes for evolving Rust types.
//!
//! Each module holds two versions of one type under the same name, so the
//! schemas differ only by the change under test.
#![allow(dead_code)]

use ecst_schema::compat::{
    check, check_with, DifferenceKind, Direction, Mode, Policy, Presence, Report,
};
use schemars::{schema_for, JsonSchema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn schema<T: JsonSchema>() -> Value {
    schema_for!(T).to_value()
}

fn incompatible(report: &Report) -> Vec<(String, DifferenceKind)> {
    report
        .incompatibilities()
        .map(|d| (d.path.clone(), d.kind.clone()))
        .collect()
}

mod open_v1 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Customer {
        pub name: String,
        pub email: Option<String>,
    }
}

mod open_v2 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Customer {
        pub name: String,
        pub email: Option<String>,
        pub phone: Option<String>,
    }
}

/// schemars writes no `additionalProperties` for a plain struct: the object
/// is an *open* content model. Data written with v1 may then already hold a
/// `phone` of any type (v1 allowed any extra property), which v2's
/// `phone: string | null` would reject. Confluent's strict rules therefore
/// refuse the new optional field (`PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL`,
/// `OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL` in 8.x); the lenient policy,
/// which assumes writers only write what their schema declares, accepts it.
/// Forward, an old reader ignores the new property, so it passes.
#[test]
fn optional_field_added_to_an_open_struct() {
    let (v1, v2) = (schema::<open_v1::Customer>(), schema::<open_v2::Customer>());
    assert_eq!(
        v1.get("additionalProperties"),
        None,
        "schemars structs are open"
    );

    let strict = check(&v1, &v2, Mode::Backward).unwrap();
    assert!(!strict.is_compatible());
    assert_eq!(
        incompatible(&strict),
        vec![(
            "#/properties/phone".to_owned(),
            DifferenceKind::PropertyAddedToOpenContentModel {
                presence: Presence::Optional
            }
        )]
    );
    assert!(check_with(&v1, &v2, Mode::Backward, Policy::Lenient)
        .unwrap()
        .is_compatible());
    assert!(check(&v1, &v2, Mode::Forward).unwrap().is_compatible());
    assert!(!check(&v1, &v2, Mode::Full).unwrap().is_compatible());
}

mod closed_v1 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Customer {
        pub name: String,
    }
}

mod closed_v2 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Customer {
        pub name: String,
        pub email: Option<String>,
    }
}

/// With `deny_unknown_fields` schemars writes `additionalProperties: false`:
/// a closed model, so v1 data never holds `email` and adding it optional is
/// backward compatible under both policies. Forward, v1's closed reader
/// rejects v2 data that holds `email`: strict refuses, lenient (readers
/// ignore unknown properties) accepts.
#[test]
fn optional_field_added_to_a_closed_struct() {
    let (v1, v2) = (
        schema::<closed_v1::Customer>(),
        schema::<closed_v2::Customer>(),
    );
    assert_eq!(v1["additionalProperties"], Value::Bool(false));
    for policy in [Policy::Strict, Policy::Lenient] {
        assert!(check_with(&v1, &v2, Mode::Backward, policy)
            .unwrap()
            .is_compatible());
    }
    let forward = check(&v1, &v2, Mode::Forward).unwrap();
    assert_eq!(
        incompatible(&forward),
        vec![(
            "#/properties/email".to_owned(),
            DifferenceKind::PropertyRemovedFromClosedContentModel { required: false }
        )]
    );
    assert!(check_with(&v1, &v2, Mode::Full, Policy::Lenient)
        .unwrap()
        .is_compatible());
}

mod required_v2 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Customer {
        pub name: String,
        pub age: u32,
    }
}

mod defaulted_v2 {
    use super::*;
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Customer {
        pub name: String,
        #[serde(default)]
        pub age: u32,
    }
}

/// A new non-`Option` field is required: v1 data lacks it, under either
/// policy. With `#[serde(default)]` schemars leaves it out of `required`
/// (and writes the default), which is compatible.
#[test]
fn required_field_added_with_and_without_a_default() {
    let v1 = schema::<closed_v1::Customer>();
    let required = schema::<required_v2::Customer>();
    for policy in [Policy::Strict, Policy::Lenient] {
        let report = check_with(&v1, &required, Mode::Backward, policy).unwrap();
        assert_eq!(
            incompatible(&report),
            vec![(
                "#/properties/age".to_owned(),
                DifferenceKind::RequiredPropertyAddedToUnopenContentModel
            )]
        );
    }
    let defaulted = schema::<defaulted_v2::Customer>();
    assert_eq!(defaulted["properties"]["age"]["default"], 0);
    assert!(check(&v1, &defaulted, Mode::Backward)
        .unwrap()
        .is_compatible());
}

mod shapes_v1 {
    use super::*;
    use std::collections::HashMap;

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Address {
        pub street: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Status {
        Active,
        Closed,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Payment {
        Cash,
        Card { last4: String },
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Account {
        /// Where statements go.
        pub home: Address,
        pub status: Status,
        pub payment: Payment,
        pub balance: u32,
        pub limits: HashMap<String, u32>,
        pub tags: Vec<String>,
        pub parent: Option<Box<Account>>,
    }
}

mod shapes_v2 {
    use super::*;
    use std::collections::HashMap;

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Address {
        pub street: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Status {
        Active,
        Closed,
        Frozen,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Payment {
        Cash,
        Card { last4: String },
        Transfer { iban: String },
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Account {
        /// Where statements and notices go.
        pub home: Option<Address>,
        pub status: Status,
        pub payment: Payment,
        pub balance: u64,
        pub limits: HashMap<String, u64>,
        pub tags: Vec<String>,
        pub parent: Option<Box<Account>>,
    }
}

/// Widening changes schemars expresses with `$ref`, `anyOf`, `oneOf`,
/// `format` and `additionalProperties`: a struct made optional, a unit
/// variant and a data variant added, `u32` to `u64` in a field and in a map,
/// a doc comment reworded, all inside a recursive type. Backward compatible;
/// forward, the old reader meets the new variants, the null address and the
/// wider integers.
#[test]
fn widening_changes_across_refs_enums_and_recursion() {
    let (v1, v2) = (
        schema::<shapes_v1::Account>(),
        schema::<shapes_v2::Account>(),
    );
    let backward = check(&v1, &v2, Mode::Backward).unwrap();
    assert!(backward.is_compatible(), "{backward}");
    let kinds: Vec<&DifferenceKind> = backward.differences().iter().map(|d| &d.kind).collect();
    for expected in [
        DifferenceKind::SumTypeExtended,
        DifferenceKind::EnumArrayExtended,
        DifferenceKind::FormatWidened,
        DifferenceKind::DescriptionChanged,
    ] {
        assert!(kinds.contains(&&expected), "{expected:?} in {kinds:?}");
    }

    let forward = check(&v1, &v2, Mode::Forward).unwrap();
    assert!(!forward.is_compatible());
    let paths: Vec<&str> = forward
        .incompatibilities()
        .map(|d| d.path.as_str())
        .collect();
    for path in [
        "#/properties/home/anyOf/1",
        "#/properties/status/enum",
        "#/properties/balance/format",
        "#/properties/limits/additionalProperties/format",
    ] {
        assert!(paths.contains(&path), "{path} in {paths:?}\n{forward}");
    }
    assert!(forward
        .incompatibilities()
        .all(|d| d.direction == Direction::Forward));
    assert!(check(&v2, &v2, Mode::FullTransitive)
        .unwrap()
        .differences()
        .is_empty());
}

mod narrowed_v2 {
    use super::*;
    use std::collections::HashMap;

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Address {
        pub street: String,
        pub zip: String,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Status {
        Active,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub enum Payment {
        Cash,
        Card { last4: u16 },
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    pub struct Account {
        pub home: Address,
        pub status: Status,
        pub payment: Payment,
        pub balance: u16,
        pub limits: HashMap<String, u32>,
        pub tags: Vec<String>,
        pub parent: Option<Box<Account>>,
    }
}

/// Narrowing changes, each reported where it is, even inside the recursive
/// `parent` and through `$ref`s.
#[test]
fn narrowing_changes_are_each_reported() {
    let (v1, v2) = (
        schema::<shapes_v1::Account>(),
        schema::<narrowed_v2::Account>(),
    );
    let report = check(&v1, &v2, Mode::Backward).unwrap();
    let found = incompatible(&report);
    for (path, kind) in [
        (
            "#/properties/home/properties/zip",
            DifferenceKind::PropertyAddedToOpenContentModel {
                presence: Presence::Required,
            },
        ),
        (
            "#/properties/status/enum",
            DifferenceKind::EnumArrayNarrowed,
        ),
        (
            "#/properties/payment/oneOf/1",
            DifferenceKind::CombinedTypeSubschemasChanged,
        ),
        ("#/properties/balance/format", DifferenceKind::FormatChanged),
        ("#/properties/balance/maximum", DifferenceKind::MaximumAdded),
    ] {
        assert!(
            found.iter().any(|(p, k)| p == path && *k == kind),
            "{path} {kind:?} in\n{report}"
        );
    }
    let text = report.to_string();
    assert_eq!(text.lines().count(), found.len());
}
