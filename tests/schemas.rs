//! `T::schema(version)` describes what version `version` really looks like on
//! the wire: instances of every version (the generated older structs, the
//! newest struct, stored fixtures and envelopes' `data`) validate against the
//! schema of their own version, and not against a version of another shape.

#[path = "support/entities.rs"]
mod common;

use common::{
    fixture_json, Customer, CustomerV1, CustomerV2, Order, OrderV1, Profile, ProfileV1, ProfileV2,
};
use ecst::{Envelope, Producer, Sequence, StateEvent};
use serde::Serialize;
use serde_json::Value;

fn validator<T: StateEvent>(version: u32) -> jsonschema::Validator {
    let schema =
        T::schema(version).unwrap_or_else(|| panic!("{} has no schema v{version}", T::ENTITY));
    let schema = serde_json::to_value(schema).unwrap();
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{} schema v{version} is not a valid schema: {e}", T::ENTITY))
}

/// Asserts that `instance` validates against `T`'s schema of `version`.
#[track_caller]
fn assert_valid<T: StateEvent>(version: u32, instance: &Value) {
    let validator = validator::<T>(version);
    if let Err(e) = validator.validate(instance) {
        panic!(
            "{} v{version}: {instance} does not validate: {e} at {}",
            T::ENTITY,
            e.instance_path()
        );
    }
    assert!(validator.is_valid(instance));
}

#[track_caller]
fn assert_invalid<T: StateEvent>(version: u32, instance: &Value) {
    assert!(
        !validator::<T>(version).is_valid(instance),
        "{} v{version}: {instance} unexpectedly validates",
        T::ENTITY
    );
}

fn value(state: &impl Serialize) -> Value {
    serde_json::to_value(state).unwrap()
}

fn customer_v1() -> CustomerV1 {
    CustomerV1 {
        id: "c-1".into(),
        full_name: "Ada".into(),
        credit_limit_cents: "12.50".into(),
        fax: None,
    }
}

fn customer_v2() -> CustomerV2 {
    CustomerV2 {
        id: "c-1".into(),
        name: "Ada".into(),
        email: Some("ada@example.com".into()),
        tier: "gold".into(),
        credit_limit_cents: "99".into(),
        fax: Some("+1".into()),
    }
}

fn customer_v3() -> Customer {
    Customer {
        id: "c-1".into(),
        name: "Ada".into(),
        email: None,
        tier: "gold".into(),
        preferred_contact: "post".into(),
        credit_limit_cents: 9900,
    }
}

fn profile_v1() -> ProfileV1 {
    ProfileV1 {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: String::new(),
        home_page: None,
        full_name: "Ada Lovelace".into(),
        postcode: "W1".into(),
        birth_year: "1815".into(),
        fax_number: None,
    }
}

fn profile_v2() -> ProfileV2 {
    ProfileV2 {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: "Countess".into(),
        home_page: Some("https://example.com".into()),
        display_name: "Ada Lovelace".into(),
        postal_code: "W1".into(),
        tags: vec!["math".into()],
        birth_year: "1815".into(),
        fax_number: Some("+44".into()),
    }
}

fn profile_v3() -> Profile {
    Profile {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: String::new(),
        home_page: None,
        display_name: "Ada Lovelace".into(),
        postal_code: "W1".into(),
        tags: Vec::new(),
        birth_year: 1815,
    }
}

#[test]
fn there_is_one_schema_per_version_and_none_outside() {
    assert_eq!(
        Customer::schemas()
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        Order::schemas().iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(Customer::schema(0).is_none());
    assert!(Customer::schema(4).is_none());
    assert!(Order::schema(3).is_none());
    for (version, schema) in Customer::schemas() {
        assert_eq!(Some(schema), Customer::schema(version));
    }
}

#[test]
fn every_schema_is_a_valid_json_schema() {
    for (version, schema) in Customer::schemas()
        .into_iter()
        .map(|(v, s)| (format!("customer v{v}"), s))
        .chain(
            Order::schemas()
                .into_iter()
                .map(|(v, s)| (format!("order v{v}"), s)),
        )
        .chain(
            Profile::schemas()
                .into_iter()
                .map(|(v, s)| (format!("profile v{v}"), s)),
        )
    {
        let schema = serde_json::to_value(schema).unwrap();
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{version}: {e}");
        }
    }
}

#[test]
fn customer_instances_validate_against_their_own_version() {
    assert_valid::<Customer>(1, &value(&customer_v1()));
    assert_valid::<Customer>(
        1,
        &value(&CustomerV1 {
            fax: Some("+1".into()),
            ..customer_v1()
        }),
    );
    assert_valid::<Customer>(2, &value(&customer_v2()));
    assert_valid::<Customer>(3, &value(&customer_v3()));
    // Stored fixtures too.
    for version in 1..=3 {
        assert_valid::<Customer>(version, &fixture_json(&format!("customer/v{version}.json")));
    }
}

#[test]
fn order_instances_validate_against_their_own_version() {
    let v1 = OrderV1 {
        id: 1,
        customer_id: "c-1".into(),
        amount: "1.00 EUR".into(),
    };
    assert_valid::<Order>(1, &value(&v1));
    let v2 = Order {
        id: u64::MAX,
        customer_id: "c-1".into(),
        amount_cents: 100,
        currency: "EUR".into(),
    };
    assert_valid::<Order>(2, &value(&v2));
    for version in 1..=2 {
        assert_valid::<Order>(version, &fixture_json(&format!("order/v{version}.json")));
    }
    assert_invalid::<Order>(2, &value(&v1));
    assert_invalid::<Order>(1, &value(&v2));
}

#[test]
fn profile_instances_with_serde_attributes_validate_against_their_own_version() {
    // The schemas follow rename_all, rename, skip_serializing_if and default.
    assert_valid::<Profile>(1, &value(&profile_v1()));
    assert_valid::<Profile>(2, &value(&profile_v2()));
    assert_valid::<Profile>(3, &value(&profile_v3()));
    // Defaulted fields and skipped options may be missing in every version.
    let minimal_v1 = serde_json::json!({
        "userId": "u", "handle": "h", "fullName": "F", "postcode": "P", "birthYear": "1"
    });
    assert_valid::<Profile>(1, &minimal_v1);
    let minimal_v3 = serde_json::json!({
        "userId": "u", "handle": "h", "displayName": "F", "zip": "P"
    });
    assert_valid::<Profile>(3, &minimal_v3);
    // The snake_case names are not what the schema describes.
    let snake_v3 = serde_json::json!({
        "user_id": "u", "screen_name": "h", "display_name": "F", "postal_code": "P"
    });
    assert_invalid::<Profile>(3, &snake_v3);
}

#[test]
fn envelope_data_validates_against_the_schema_of_its_schemaversion() {
    // Stored envelopes of every version.
    for version in 1..=3 {
        let envelope = fixture_json(&format!("customer/envelope-v{version}.json"));
        let written = u32::try_from(envelope["schemaversion"].as_u64().unwrap()).unwrap();
        assert_eq!(written, version);
        assert_valid::<Customer>(written, &envelope["data"]);
    }
    let order = fixture_json("order/envelope-v1.json");
    assert_valid::<Order>(1, &order["data"]);

    // Envelopes written now, by a producer and by hand.
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let json = producer.upsert(customer_v3()).unwrap().to_json().unwrap();
    let wire: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(wire["schemaversion"], 3);
    assert_valid::<Customer>(3, &wire["data"]);

    let envelope = Envelope::upsert("urn:example:crm", "p-1", Sequence::new(9), profile_v3());
    let wire: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
    assert_valid::<Profile>(Profile::VERSION, &wire["data"]);

    // A decoded old envelope re-encodes in the newest version, and its data
    // then fits the newest schema.
    let old =
        Envelope::<Customer>::from_json(&common::fixture("customer/envelope-v1.json")).unwrap();
    let wire: Value = serde_json::from_slice(&old.to_json().unwrap()).unwrap();
    assert_valid::<Customer>(3, &wire["data"]);
    assert_invalid::<Customer>(1, &wire["data"]);
}

#[test]
fn a_payload_does_not_validate_against_a_version_of_another_shape() {
    // v1 has `full_name` and a string credit limit; v3 requires `name`,
    // `tier`, `preferred_contact` and an integer credit limit.
    let v1 = value(&customer_v1());
    assert_invalid::<Customer>(3, &v1);
    assert_invalid::<Customer>(2, &v1);
    assert_invalid::<Customer>(3, &fixture_json("customer/v1.json"));
    // And the other way round.
    let v3 = value(&customer_v3());
    assert_invalid::<Customer>(1, &v3);
    assert_invalid::<Customer>(2, &v3);
    // v2 differs from v3 only in the credit limit's type (and the fax):
    // a string credit limit is not a v3 integer.
    assert_invalid::<Customer>(3, &value(&customer_v2()));
    // v1 and v3 profiles disagree on `fullName` vs `displayName`.
    assert_invalid::<Profile>(3, &value(&profile_v1()));
    assert_invalid::<Profile>(1, &value(&profile_v3()));
}

#[test]
fn a_field_of_the_wrong_type_is_rejected_by_its_version_schema() {
    let mut v3 = value(&customer_v3());
    v3["credit_limit_cents"] = Value::from(-1);
    assert_invalid::<Customer>(3, &v3);
    let mut v3 = value(&customer_v3());
    v3["email"] = Value::from(5);
    assert_invalid::<Customer>(3, &v3);
    let mut v1 = value(&customer_v1());
    v1["fax"] = Value::from(true);
    assert_invalid::<Customer>(1, &v1);
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,10}"
    }

    proptest! {
        /// Whatever values a version's struct holds, what it serializes to
        /// fits that version's schema.
        #[test]
        fn any_customer_of_any_version_fits_its_schema(
            id in text(),
            name in text(),
            email in proptest::option::of(text()),
            fax in proptest::option::of(text()),
            tier in text(),
            credit in any::<u64>(),
        ) {
            let v1 = CustomerV1 {
                id: id.clone(),
                full_name: name.clone(),
                credit_limit_cents: credit.to_string(),
                fax: fax.clone(),
            };
            let v2 = CustomerV2 {
                id: id.clone(),
                name: name.clone(),
                email: email.clone(),
                tier: tier.clone(),
                credit_limit_cents: credit.to_string(),
                fax,
            };
            let v3 = Customer {
                id,
                name,
                email,
                tier,
                preferred_contact: "post".into(),
                credit_limit_cents: credit,
            };
            prop_assert!(validator::<Customer>(1).is_valid(&value(&v1)));
            prop_assert!(validator::<Customer>(2).is_valid(&value(&v2)));
            prop_assert!(validator::<Customer>(3).is_valid(&value(&v3)));
            prop_assert!(!validator::<Customer>(3).is_valid(&value(&v1)));
        }
    }
}
