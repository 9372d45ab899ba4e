//! Stored payloads of every schema version decode to the newest struct, via
//! the bare payload entry point and via the CloudEvents envelope; the
//! generated older-version structs are usable on their own; a failing
//! conversion is reported with everything needed to find it.

#[path = "support/entities.rs"]
mod common;

use std::error::Error as _;

use common::{fixture, fixture_json, BadAmount, Customer, CustomerV1, CustomerV2, Order, OrderV1};
use ecst::{
    DecodeErrorKind, Envelope, Operation, PayloadError, Producer, Sequence, StateEvent, Upcast,
    UpcastError,
};
use proptest::prelude::*;

/// What each stored `customer/vN.json` must decode to.
fn expected_customer(version: u32) -> Customer {
    match version {
        // full_name -> name; email: Default; tier: `default = default_tier`;
        // preferred_contact: computed from v2, where only the fax was known;
        // credit: "12.50" dollars -> 1250 cents; fax: dropped at 3.
        1 => Customer {
            id: "c-1".into(),
            name: "Ada Lovelace".into(),
            email: None,
            tier: "standard".into(),
            preferred_contact: "fax:+44 20 7946 0000".into(),
            credit_limit_cents: 1250,
        },
        // email wins over the fax; "99" dollars -> 9900 cents.
        2 => Customer {
            id: "c-1".into(),
            name: "Ada King".into(),
            email: Some("ada@example.com".into()),
            tier: "gold".into(),
            preferred_contact: "email:ada@example.com".into(),
            credit_limit_cents: 9900,
        },
        3 => Customer {
            id: "c-1".into(),
            name: "Ada King, Countess of Lovelace".into(),
            email: None,
            tier: "platinum".into(),
            preferred_contact: "post".into(),
            credit_limit_cents: 250_000,
        },
        _ => unreachable!("customer has versions 1..=3"),
    }
}

fn expected_order(version: u32) -> Order {
    match version {
        1 => Order {
            id: 42,
            customer_id: "c-1".into(),
            amount_cents: 1250,
            currency: "EUR".into(),
        },
        2 => Order {
            id: 42,
            customer_id: "c-1".into(),
            amount_cents: 1999,
            currency: "CHF".into(),
        },
        _ => unreachable!("order has versions 1..=2"),
    }
}

#[test]
fn declared_versions() {
    assert_eq!(Customer::ENTITY, "customer");
    assert_eq!(<Customer as StateEvent>::VERSION, 3);
    assert_eq!(<CustomerV1 as Upcast>::VERSION, 1);
    assert_eq!(<CustomerV2 as Upcast>::VERSION, 2);
    assert_eq!(<Customer as Upcast>::VERSION, 3);
    assert_eq!(Order::ENTITY, "order");
    assert_eq!(<Order as StateEvent>::VERSION, 2);
    assert_eq!(<OrderV1 as Upcast>::VERSION, 1);
}

#[test]
fn every_stored_customer_payload_decodes_to_the_newest_struct() {
    for version in 1..=3 {
        let bytes = fixture(&format!("customer/v{version}.json"));
        let decoded = Customer::from_json_version(version, &bytes)
            .unwrap_or_else(|e| panic!("customer v{version}: {e}"));
        assert_eq!(decoded, expected_customer(version), "customer v{version}");
    }
}

#[test]
fn every_stored_order_payload_decodes_through_the_hand_written_hop() {
    for version in 1..=2 {
        let bytes = fixture(&format!("order/v{version}.json"));
        let decoded = Order::from_json_version(version, &bytes)
            .unwrap_or_else(|e| panic!("order v{version}: {e}"));
        assert_eq!(decoded, expected_order(version), "order v{version}");
    }
}

#[test]
fn every_stored_customer_envelope_decodes_to_the_newest_struct() {
    // v1 and v3 are laid out as ecst writes them (data last, decoded in
    // place); v2 has `data` first (kept raw, decoded after the attributes),
    // an unpadded integer `sequence` and a correlation id.
    for version in 1..=3u32 {
        let bytes = fixture(&format!("customer/envelope-v{version}.json"));
        let envelope = Envelope::<Customer>::from_json(&bytes)
            .unwrap_or_else(|e| panic!("customer envelope v{version}: {e}"));
        assert_eq!(envelope.id, format!("customer:c-1:{version}"));
        assert_eq!(envelope.source, "urn:example:crm");
        assert_eq!(envelope.key, "c-1");
        assert_eq!(envelope.sequence, Sequence::new(u64::from(version)));
        assert_eq!(envelope.operation(), Operation::Upsert);
        assert_eq!(envelope.written_version(), version);
        assert_eq!(envelope.state(), Some(&expected_customer(version)));
    }
    let v2 = Envelope::<Customer>::from_json(&fixture("customer/envelope-v2.json")).unwrap();
    assert_eq!(v2.correlation_id.as_deref(), Some("req-7"));
    assert_eq!(v2.time, None);
    let v3 = Envelope::<Customer>::from_json(&fixture("customer/envelope-v3.json")).unwrap();
    assert_eq!(v3.time.as_deref(), Some("2023-01-02T03:04:05.678Z"));
}

#[test]
fn stored_order_envelope_decodes_through_the_hand_written_hop() {
    let envelope = Envelope::<Order>::from_json(&fixture("order/envelope-v1.json")).unwrap();
    assert_eq!(envelope.key, 42);
    assert_eq!(envelope.written_version(), 1);
    assert_eq!(envelope.state(), Some(&expected_order(1)));
}

#[test]
fn envelope_data_is_the_vn_payload_fixture() {
    // The envelope fixtures carry exactly the bare payload fixtures, so the
    // two entry points are checked against the same stored data.
    for version in 1..=3 {
        let envelope = fixture_json(&format!("customer/envelope-v{version}.json"));
        let payload = fixture_json(&format!("customer/v{version}.json"));
        assert_eq!(envelope["data"], payload, "customer v{version}");
        assert_eq!(envelope["schemaversion"], version);
    }
}

#[test]
fn re_encoded_envelope_is_newest_and_decodes_to_the_same_state() {
    let old = Envelope::<Customer>::from_json(&fixture("customer/envelope-v1.json")).unwrap();
    let json = old.to_json().unwrap();
    let wire: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(wire["schemaversion"], 3);
    assert_eq!(wire["dataschema"], "urn:ecst:schema:customer:v3");
    assert_eq!(wire["data"]["credit_limit_cents"], 1250);
    assert!(wire["data"].get("full_name").is_none());
    assert!(wire["data"].get("fax").is_none());
    let again = Envelope::<Customer>::from_json(&json).unwrap();
    assert_eq!(again.written_version(), 3);
    assert_eq!(again.state(), old.state());
    assert_eq!(again.id, old.id);
    assert_eq!(again.sequence, old.sequence);
}

#[test]
fn generated_structs_are_constructible_serializable_and_upcast() {
    let v1 = CustomerV1 {
        id: "c-1".into(),
        full_name: "Ada Lovelace".into(),
        credit_limit_cents: "12.50".into(),
        fax: Some("+44 20 7946 0000".into()),
    };
    // Serialized, a v1 struct is what v1 producers wrote.
    assert_eq!(
        serde_json::to_value(&v1).unwrap(),
        fixture_json("customer/v1.json")
    );
    // Typed upcast and decoding the serialized form agree.
    let bytes = serde_json::to_vec(&v1).unwrap();
    assert_eq!(
        Customer::from_json_version(1, &bytes).unwrap(),
        expected_customer(1)
    );
    assert_eq!(v1.clone().upcast().unwrap(), expected_customer(1));
    assert_eq!(Upcast::upcast(v1).unwrap(), expected_customer(1));

    let v2 = CustomerV2 {
        id: "c-1".into(),
        name: "Ada King".into(),
        email: Some("ada@example.com".into()),
        tier: "gold".into(),
        credit_limit_cents: "99".into(),
        fax: Some("+44 20 7946 0000".into()),
    };
    assert_eq!(
        serde_json::to_value(&v2).unwrap(),
        fixture_json("customer/v2.json")
    );
    assert_eq!(ecst::Upcast::upcast(v2).unwrap(), expected_customer(2));

    // The newest struct upcasts to itself.
    let v3 = expected_customer(3);
    assert_eq!(v3.clone().upcast().unwrap(), v3);
    assert_eq!(
        serde_json::to_value(&v3).unwrap(),
        fixture_json("customer/v3.json")
    );

    // Single hops are plain `TryFrom` impls.
    let v1 = serde_json::from_slice::<CustomerV1>(&fixture("customer/v1.json")).unwrap();
    let hopped = CustomerV2::try_from(v1).unwrap();
    assert_eq!(
        hopped,
        CustomerV2 {
            id: "c-1".into(),
            name: "Ada Lovelace".into(),
            email: None,
            tier: "standard".into(),
            credit_limit_cents: "12.50".into(),
            fax: Some("+44 20 7946 0000".into()),
        }
    );

    let order = OrderV1 {
        id: 7,
        customer_id: "c-2".into(),
        amount: "0.5 USD".into(),
    };
    assert_eq!(
        serde_json::to_value(&order).unwrap(),
        serde_json::json!({"id": 7, "customer_id": "c-2", "amount": "0.5 USD"})
    );
    assert_eq!(
        order.upcast().unwrap(),
        Order {
            id: 7,
            customer_id: "c-2".into(),
            amount_cents: 50,
            currency: "USD".into(),
        }
    );
}

#[test]
fn added_with_sees_the_removed_field_of_the_previous_version() {
    let no_contact = CustomerV2 {
        id: "c-2".into(),
        name: "Grace".into(),
        email: None,
        tier: "gold".into(),
        credit_limit_cents: "1".into(),
        fax: None,
    };
    assert_eq!(no_contact.upcast().unwrap().preferred_contact, "none");
}

/// An invoice whose hop into version 2 is hand-written and converts the
/// retyped `total` itself, so `retyped` only declares the old type.
#[derive(
    StateEvent, serde::Serialize, serde::Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq,
)]
#[state_event(entity = "invoice", version = 2)]
#[state_event(hop(since = 2, with = invoice_in_cents))]
#[state_event(derive(Debug, PartialEq))]
pub struct Invoice {
    #[state_event(key)]
    pub id: u64,
    #[state_event(retyped(since = 2, from = u32))]
    pub total: u64,
}

fn invoice_in_cents(previous: InvoiceV1) -> Result<Invoice, std::convert::Infallible> {
    Ok(Invoice {
        id: previous.id,
        total: u64::from(previous.total) * 100,
    })
}

#[test]
fn hand_written_hop_converts_a_field_retyped_without_with() {
    let v1: InvoiceV1 = serde_json::from_str(r#"{"id":7,"total":12}"#).unwrap();
    assert_eq!(v1, InvoiceV1 { id: 7, total: 12 });
    assert_eq!(v1.upcast().unwrap(), Invoice { id: 7, total: 1200 });
}

fn assert_credit_failure(err: &UpcastError, bad: &str) {
    assert_eq!(err.entity(), "customer");
    assert_eq!(err.from_version(), 2);
    assert_eq!(err.to_version(), 3);
    assert_eq!(err.field(), Some("credit_limit_cents"));
    let source = err
        .source()
        .expect("the conversion's own error is the source");
    assert_eq!(
        source.downcast_ref::<BadAmount>(),
        Some(&BadAmount(bad.to_owned()))
    );
    let text = err.to_string();
    for part in ["customer", "v2", "v3", "credit_limit_cents", bad] {
        assert!(text.contains(part), "{text:?} does not mention {part:?}");
    }
}

#[test]
fn failing_retype_names_entity_versions_and_field() {
    let v1 = CustomerV1 {
        id: "c-9".into(),
        full_name: "Charles Babbage".into(),
        credit_limit_cents: "12,50".into(),
        fax: None,
    };
    assert_credit_failure(&v1.upcast().unwrap_err(), "12,50");

    let v2 = br#"{"id":"c-9","name":"C","email":null,"tier":"gold","fax":null,"credit_limit_cents":"-3"}"#;
    match Customer::from_json_version(2, v2) {
        Err(PayloadError::Upcast(err)) => assert_credit_failure(&err, "-3"),
        other => panic!("expected an upcast failure, got {other:?}"),
    }
}

#[test]
fn failing_hand_written_hop_names_entity_and_versions_but_no_field() {
    let v1 = br#"{"id":1,"customer_id":"c-1","amount":"12.50EUR"}"#;
    let err = match Order::from_json_version(1, v1) {
        Err(PayloadError::Upcast(err)) => err,
        other => panic!("expected an upcast failure, got {other:?}"),
    };
    assert_eq!(err.entity(), "order");
    assert_eq!(err.from_version(), 1);
    assert_eq!(err.to_version(), 2);
    assert_eq!(err.field(), None);
    assert!(err.source().unwrap().is::<BadAmount>());
}

#[test]
fn envelope_reports_failing_retype_as_upcast_with_event_context() {
    // As ecst writes it: `data` last, decoded in place.
    let in_place = fixture("customer/envelope-v1-bad-credit.json");
    // The same event with `data` first: kept raw and decoded afterwards.
    let value: serde_json::Value = serde_json::from_slice(&in_place).unwrap();
    let data_first = {
        let mut object = value.as_object().unwrap().clone();
        let data = object.remove("data").unwrap();
        let mut reordered = serde_json::Map::new();
        reordered.insert("data".into(), data);
        reordered.extend(object);
        serde_json::to_vec(&reordered).unwrap()
    };
    assert!(data_first.starts_with(br#"{"data":"#));
    for bytes in [in_place, data_first] {
        let err = Envelope::<Customer>::from_json(&bytes).unwrap_err();
        match err.kind() {
            DecodeErrorKind::Upcast(upcast) => assert_credit_failure(upcast, "twelve dollars"),
            other => panic!("expected DecodeErrorKind::Upcast, got {other:?}"),
        }
        let context = err.context();
        assert_eq!(context.id.as_deref(), Some("customer:c-9:4"));
        assert_eq!(context.key.as_deref(), Some("c-9"));
        assert_eq!(context.entity.as_deref(), Some("customer"));
        assert_eq!(context.schema_version, Some(1));
        let source = err.source().expect("the upcast error is the source");
        assert!(source.is::<UpcastError>());
        let text = err.to_string();
        assert!(text.contains("customer:c-9:4"), "{text}");
        assert!(text.contains("credit_limit_cents"), "{text}");
    }
}

#[test]
fn payload_of_the_wrong_version_is_a_mismatch_not_a_guess() {
    // A v1 payload declared as v3 (and the other way round) is rejected:
    // the version is never guessed from the shape.
    let v1 = fixture("customer/v1.json");
    assert!(matches!(
        Customer::from_json_version(3, &v1),
        Err(PayloadError::Mismatch { version: 3, .. })
    ));
    let v3 = fixture("customer/v3.json");
    assert!(matches!(
        Customer::from_json_version(1, &v3),
        Err(PayloadError::Mismatch { version: 1, .. })
    ));
    for version in [0, 4] {
        assert!(matches!(
            Customer::from_json_version(version, &v3),
            Err(PayloadError::UnknownVersion { version: v, newest: 3 }) if v == version
        ));
    }
}

#[test]
fn envelope_with_a_future_version_is_parked_not_guessed() {
    let mut value = fixture_json("customer/envelope-v3.json");
    value["schemaversion"] = 4.into();
    let err = Envelope::<Customer>::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(err.is_future_version(), "{err}");
    assert!(matches!(
        err.kind(),
        DecodeErrorKind::FutureVersion { newest_known: 3 }
    ));
}

#[test]
fn producer_envelopes_round_trip_the_newest_version() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let state = expected_customer(2);
    let json = producer.upsert(state.clone()).unwrap().to_json().unwrap();
    let decoded = Envelope::<Customer>::from_json(&json).unwrap();
    assert_eq!(decoded.state(), Some(&state));
    assert_eq!(decoded.written_version(), 3);
}

fn arb_text() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn arb_customer_v1() -> impl Strategy<Value = (CustomerV1, u32, u8)> {
    (
        arb_text(),
        arb_text(),
        proptest::option::of(arb_text()),
        any::<u32>(),
        0u8..100,
    )
        .prop_map(|(id, full_name, fax, dollars, cents)| {
            let v1 = CustomerV1 {
                id,
                full_name,
                credit_limit_cents: format!("{dollars}.{cents:02}"),
                fax,
            };
            (v1, dollars, cents)
        })
}

proptest! {
    /// Decoding a serialized v1 struct and upcasting the struct itself give
    /// the same newest state, and each field lands where its history says.
    #[test]
    fn any_v1_decodes_like_its_typed_upcast((v1, dollars, cents) in arb_customer_v1()) {
        let bytes = serde_json::to_vec(&v1).unwrap();
        let decoded = Customer::from_json_version(1, &bytes).unwrap();
        let upcast = v1.clone().upcast().unwrap();
        prop_assert_eq!(&decoded, &upcast);
        prop_assert_eq!(&decoded.id, &v1.id);
        prop_assert_eq!(&decoded.name, &v1.full_name);
        prop_assert_eq!(&decoded.email, &None);
        prop_assert_eq!(decoded.tier.as_str(), "standard");
        prop_assert_eq!(decoded.credit_limit_cents, u64::from(dollars) * 100 + u64::from(cents));
        let contact = v1.fax.as_ref().map_or_else(|| "none".to_owned(), |f| format!("fax:{f}"));
        prop_assert_eq!(decoded.preferred_contact, contact);
    }

    /// The same through a full envelope.
    #[test]
    fn any_v1_envelope_decodes_like_its_typed_upcast((v1, _dollars, _cents) in arb_customer_v1()) {
        prop_assume!(!v1.id.is_empty());
        let envelope = serde_json::json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": "urn:test",
            "type": "customer",
            "subject": v1.id,
            "sequence": "00000000000000000001",
            "schemaversion": 1,
            "operation": "upsert",
            "data": v1,
        });
        let decoded = Envelope::<Customer>::from_json(&serde_json::to_vec(&envelope).unwrap()).unwrap();
        prop_assert_eq!(decoded.state(), Some(&v1.upcast().unwrap()));
    }
}
