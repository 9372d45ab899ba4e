//! The CloudEvents envelope on the wire, the typed errors of every rejected
//! event, the producer's sequences, and the replica's accessors and
//! snapshots.

#[path = "support/replica.rs"]
mod common_replica;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common_replica::{customer, live, obj, snapshot, Customer, Order};
use ecst::{
    Change, DecodeError, DecodeErrorKind, Entry, Envelope, EventContext, Operation, Outcome,
    Producer, Replica, Router, Sequence, SequenceError, SnapshotError,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Members = Vec<(&'static str, Value)>;

/// A valid v2 upsert of customer `c-1` at sequence 7, in the order ecst
/// writes it.
fn members() -> Members {
    vec![
        ("specversion", json!("1.0")),
        ("id", json!("customer:c-1:7")),
        ("source", json!("urn:example:crm")),
        ("type", json!("customer")),
        ("subject", json!("c-1")),
        ("time", json!("2024-05-01T12:00:00.000Z")),
        ("datacontenttype", json!("application/json")),
        ("dataschema", json!("urn:ecst:schema:customer:v2")),
        ("sequence", json!("00000000000000000007")),
        ("schemaversion", json!(2)),
        ("operation", json!("upsert")),
        (
            "data",
            json!({"id": "c-1", "name": "Ada", "email": "ada@example.com", "credit": 100}),
        ),
    ]
}

/// The state `members()` carries.
fn ada() -> Customer {
    Customer {
        id: "c-1".into(),
        name: "Ada".into(),
        email: Some("ada@example.com".into()),
        credit: 100,
    }
}

/// A v1 payload of `c-1`.
fn ada_v1() -> Value {
    json!({"id": "c-1", "full_name": "Ada", "credit": 100})
}

fn with(mut members: Members, name: &'static str, value: Value) -> Members {
    let slot = members.iter_mut().find(|(n, _)| *n == name);
    match slot {
        Some(slot) => slot.1 = value,
        None => members.push((name, value)),
    }
    members
}

/// `members` declaring schema version `version`, in `schemaversion` and in
/// `dataschema` alike (they must agree).
fn at_version(members: Members, version: u32) -> Members {
    let members = with(members, "schemaversion", json!(version));
    with(
        members,
        "dataschema",
        json!(format!("urn:ecst:schema:customer:v{version}")),
    )
}

fn without(mut members: Members, name: &str) -> Members {
    members.retain(|(n, _)| *n != name);
    members
}

/// Moves `data` to the front: the decoder then cannot read it in place and
/// takes the raw path.
fn data_first(mut members: Members) -> Members {
    let at = members.iter().position(|(n, _)| *n == "data").unwrap();
    let data = members.remove(at);
    members.insert(0, data);
    members
}

/// A delete of `c-1` at sequence 7.
fn delete_members() -> Members {
    let members = without(
        without(without(members(), "data"), "dataschema"),
        "datacontenttype",
    );
    with(members, "operation", json!("delete"))
}

/// The context of an envelope whose attributes are all readable.
fn full_context() -> EventContext {
    EventContext {
        id: Some("customer:c-1:7".into()),
        entity: Some("customer".into()),
        key: Some("c-1".into()),
        schema_version: Some(2),
        sequence: Some(7),
    }
}

/// A replica that already holds `c-1` at sequence 3 and a tombstone for
/// `c-9`.
fn seeded() -> Replica<Customer> {
    let mut replica = Replica::new();
    let mut producer = Producer::<Customer>::resume("urn:example:crm", [("c-1".into(), 2.into())]);
    let upsert = producer.upsert(customer("c-1", "Old")).unwrap();
    assert_eq!(upsert.sequence, Sequence::new(3));
    replica.apply(upsert);
    replica.apply(producer.delete("c-9".into()).unwrap());
    replica
}

/// Decodes `bytes` as a `Customer` event that must be rejected, checking
/// that the rejection is counted and changes nothing; returns the error.
fn reject(bytes: &[u8]) -> DecodeError {
    let direct = match Envelope::<Customer>::from_json(bytes) {
        Ok(envelope) => panic!("accepted: {envelope:?}\n{}", String::from_utf8_lossy(bytes)),
        Err(e) => e,
    };
    let mut replica = seeded();
    let before = snapshot(&replica);
    let stats = replica.stats();
    let error = replica
        .apply_json(bytes)
        .expect_err("the replica accepted it");
    assert_eq!(
        snapshot(&replica),
        before,
        "a rejected event changed the replica"
    );
    let after = replica.stats();
    assert_eq!(after.rejected, stats.rejected + 1);
    assert_eq!(
        after.future_version,
        stats.future_version + u64::from(error.is_future_version())
    );
    assert_eq!(after.applied(), stats.applied());
    assert_eq!(error.to_string(), direct.to_string());
    assert!(!error.to_string().is_empty());
    error
}

fn accept(bytes: &[u8]) -> Envelope<Customer> {
    match Envelope::<Customer>::from_json(bytes) {
        Ok(envelope) => envelope,
        Err(e) => panic!("rejected: {e}\n{}", String::from_utf8_lossy(bytes)),
    }
}

fn names(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

#[test]
fn an_upsert_carries_every_attribute() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let envelope = producer
        .upsert(ada())
        .unwrap()
        .with_correlation_id("corr-1")
        .with_causation_id("cause-1")
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let wire: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();

    assert_eq!(wire["specversion"], "1.0");
    assert_eq!(wire["id"], "customer:c-1:1");
    assert_eq!(wire["source"], "urn:example:crm");
    assert_eq!(wire["type"], "customer");
    assert_eq!(wire["subject"], "c-1");
    let time = wire["time"].as_str().expect("time is a string");
    let parsed = envelope.time().expect("time parses as RFC 3339");
    assert!(parsed > UNIX_EPOCH);
    assert_eq!(Some(time), envelope.time.as_deref());
    assert_eq!(wire["datacontenttype"], "application/json");
    assert_eq!(wire["dataschema"], "urn:ecst:schema:customer:v2");
    assert_eq!(
        Envelope::<Customer>::dataschema(2),
        "urn:ecst:schema:customer:v2"
    );
    assert_eq!(wire["sequence"], "00000000000000000001");
    assert_eq!(wire["schemaversion"], 2);
    assert_eq!(wire["operation"], "upsert");
    assert_eq!(wire["correlationid"], "corr-1");
    assert_eq!(wire["causationid"], "cause-1");
    assert_eq!(
        wire["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(wire["data"], serde_json::to_value(ada()).unwrap());
    let expected: BTreeSet<&str> = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "sequence",
        "schemaversion",
        "operation",
        "correlationid",
        "causationid",
        "traceparent",
        "data",
    ]
    .into();
    assert_eq!(names(&wire), expected);
}

#[test]
fn a_delete_carries_no_data_and_unset_ids_are_left_out() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let envelope = producer.delete("c-1".into()).unwrap();
    assert_eq!(envelope.operation(), Operation::Delete);
    assert_eq!(envelope.state(), None);
    let wire: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
    assert_eq!(wire["operation"], "delete");
    assert_eq!(wire["subject"], "c-1");
    assert_eq!(wire["sequence"], "00000000000000000001");
    let expected: BTreeSet<&str> = [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "sequence",
        "schemaversion",
        "operation",
    ]
    .into();
    assert_eq!(names(&wire), expected);
}

#[test]
fn the_sequence_is_a_twenty_digit_string_that_sorts_like_the_number() {
    let max = Sequence::MAX.get();
    let values = [0, 1, 9, 10, 42, 1_000_000, max / 2, max - 1, max];
    let mut encoded = Vec::new();
    for n in values {
        let envelope = Envelope::upsert("urn:s", "e", Sequence::new(n), ada());
        let wire: Value = serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        let text = wire["sequence"].as_str().unwrap().to_owned();
        assert_eq!(text.len(), 20, "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(text.parse::<u64>().unwrap(), n);
        assert_eq!(
            accept(&envelope.to_json().unwrap()).sequence,
            Sequence::new(n)
        );
        encoded.push(text);
    }
    assert_eq!(encoded.last().unwrap(), "09223372036854775807");
    let mut sorted = encoded.clone();
    sorted.sort();
    assert_eq!(sorted, encoded, "lexicographic order is numeric order");
}

#[test]
fn attributes_that_select_the_payload_struct_come_before_data() {
    let bytes = Envelope::upsert("urn:s", "e", Sequence::new(1), ada())
        .to_json()
        .unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let data = text.find("\"data\":").unwrap();
    for name in ["\"type\":", "\"schemaversion\":", "\"operation\":"] {
        assert!(text.find(name).unwrap() < data, "{name} after data: {text}");
    }
}

#[test]
fn encoding_and_decoding_round_trip() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let upsert = producer
        .upsert(ada())
        .unwrap()
        .with_correlation_id("corr \"quoted\" \u{e9}")
        .with_causation_id("cause-1")
        .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let decoded = accept(&upsert.to_json().unwrap());
    assert_eq!(decoded, upsert);
    assert_eq!(decoded.written_version(), 2);
    assert_eq!(decoded.change, Change::Upsert(ada()));

    let delete = producer.delete("c-1".into()).unwrap();
    let decoded = accept(&delete.to_json().unwrap());
    assert_eq!(decoded, delete);
    assert_eq!(decoded.sequence, Sequence::new(2));
    assert_eq!(decoded.change, Change::Delete);
    assert_eq!(decoded.correlation_id, None);

    let mut orders = Producer::<Order>::new("urn:example:shop");
    let order = orders
        .upsert(Order {
            number: 42,
            total_cents: 999,
        })
        .unwrap();
    let bytes = order.to_json().unwrap();
    assert_eq!(Envelope::<Order>::from_json(&bytes).unwrap(), order);
    let wire: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(wire["subject"], "42");
    assert_eq!(wire["dataschema"], "urn:ecst:schema:order:v1");
    assert_eq!(wire["schemaversion"], 1);
}

// ---------------------------------------------------------------------------
// What the decoder accepts
// ---------------------------------------------------------------------------

#[test]
fn attributes_are_accepted_in_any_order() {
    let canonical = accept(&obj(&members()));
    assert_eq!(canonical.change, Change::Upsert(ada()));
    assert_eq!(canonical.key, "c-1");
    assert_eq!(canonical.sequence, Sequence::new(7));
    assert_eq!(canonical.time.as_deref(), Some("2024-05-01T12:00:00.000Z"));

    let mut reversed = members();
    reversed.reverse();
    assert_eq!(accept(&obj(&reversed)), canonical);
    assert_eq!(accept(&obj(&data_first(members()))), canonical);

    // data between type and schemaversion, with a v1 payload (raw path, then
    // upcast).
    let v1 = with(at_version(members(), 1), "data", ada_v1());
    let mut shuffled = v1.clone();
    shuffled.swap(4, 11);
    let old = accept(&obj(&shuffled));
    assert_eq!(old, accept(&obj(&v1)));
    assert_eq!(old.written_version(), 1);
    assert_eq!(
        old.state(),
        Some(&Customer {
            email: None,
            ..ada()
        })
    );

    // Through a replica and a router too.
    let mut replica = Replica::<Customer>::new();
    assert_eq!(
        replica.apply_json(&obj(&reversed)).unwrap(),
        Outcome::Inserted
    );
    assert_eq!(replica.get("c-1"), Some(&ada()));
    let mut router = Router::new();
    router.add(Replica::<Customer>::new()).unwrap();
    let routed = router.apply_json(&obj(&data_first(members()))).unwrap();
    assert_eq!(routed.entity, "customer");
    assert_eq!(routed.outcome, Outcome::Inserted);
    assert_eq!(
        router.replica::<Customer>().unwrap().get("c-1"),
        Some(&ada())
    );
}

#[test]
fn the_sequence_may_be_an_integer_or_an_unpadded_string() {
    for sequence in [
        json!(7),
        json!("7"),
        json!("0007"),
        json!("00000000000000000007"),
    ] {
        let envelope = accept(&obj(&with(members(), "sequence", sequence.clone())));
        assert_eq!(envelope.sequence, Sequence::new(7), "{sequence}");
    }
    for sequence in [
        json!(i64::MAX),
        json!("9223372036854775807"),
        json!("09223372036854775807"),
    ] {
        let envelope = accept(&obj(&with(members(), "sequence", sequence)));
        assert_eq!(envelope.sequence, Sequence::MAX);
    }
    // schemaversion as a plain digit string (how CloudEvents binary mode
    // carries it) is read the same way.
    let envelope = accept(&obj(&with(members(), "schemaversion", json!("2"))));
    assert_eq!(envelope.written_version(), 2);
}

#[test]
fn unknown_extension_attributes_are_ignored() {
    let canonical = accept(&obj(&members()));
    let mut extended = members();
    extended.insert(0, ("partitionkey", json!("p-1")));
    extended.insert(5, ("myext", json!({"nested": [1, null, {"data": 5}]})));
    extended.push(("dataref", json!(5)));
    extended.push(("comexampleflag", json!(true)));
    assert_eq!(accept(&obj(&extended)), canonical);
    assert_eq!(accept(&obj(&data_first(extended))), canonical);
}

#[test]
fn json_content_types_with_parameters_are_accepted() {
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/cloudevents+json",
    ] {
        let envelope = accept(&obj(&with(members(), "datacontenttype", json!(ct))));
        assert_eq!(envelope.state(), Some(&ada()), "{ct}");
    }
    // datacontenttype is optional in CloudEvents.
    accept(&obj(&without(members(), "datacontenttype")));
}

#[test]
fn an_old_version_is_upcast_on_both_paths() {
    let v1 = with(at_version(members(), 1), "data", ada_v1());
    for bytes in [obj(&v1), obj(&data_first(v1.clone()))] {
        let envelope = accept(&bytes);
        assert_eq!(envelope.written_version(), 1);
        assert_eq!(
            envelope.state(),
            Some(&Customer {
                id: "c-1".into(),
                name: "Ada".into(),
                email: None,
                credit: 100,
            })
        );
    }
}

#[test]
fn a_delete_with_null_data_or_trailing_whitespace_is_accepted() {
    let envelope = accept(&obj(&with(delete_members(), "data", Value::Null)));
    assert_eq!(envelope.change, Change::Delete);
    let mut bytes = obj(&members());
    bytes.extend_from_slice(b" \n\t\r\n");
    assert_eq!(accept(&bytes), accept(&obj(&members())));
}

// ---------------------------------------------------------------------------
// What the decoder rejects, and what it says
// ---------------------------------------------------------------------------

#[test]
fn malformed_json_is_malformed_with_what_was_readable() {
    let error = reject(br#"{"specversion":"1.0","id":"customer:c-1:7","type":"customer","#);
    assert!(
        matches!(error.kind(), DecodeErrorKind::Malformed(_)),
        "{error}"
    );
    assert_eq!(error.context().id.as_deref(), Some("customer:c-1:7"));
    assert_eq!(error.context().entity.as_deref(), Some("customer"));
    assert_eq!(error.context().key, None);

    for bytes in [&b""[..], b"not json", b"{", b"{\"id\":}", b"\xff\xfe"] {
        let error = reject(bytes);
        assert!(
            matches!(error.kind(), DecodeErrorKind::Malformed(_)),
            "{error}"
        );
        assert_eq!(error.context(), &EventContext::default());
    }
}

#[test]
fn bytes_that_are_not_utf8_are_malformed_wherever_they_are() {
    // Invalid UTF-8 inside an ignored string: an unknown payload field and an
    // extension attribute. serde_json skips over those unchecked; the decoder
    // must still refuse them, the same way on every path.
    let mut data = serde_json::to_value(ada()).unwrap();
    data["note"] = json!("NOTE");
    let in_payload = with(members(), "data", data);
    let in_extension = with(members(), "partitionkey", json!("NOTE"));
    for (members, in_data) in [(in_payload, true), (in_extension, false)] {
        for (ordered, first) in [(members.clone(), false), (data_first(members), true)] {
            let bytes = obj(&ordered);
            // Sanity: valid as written.
            accept(&bytes);
            let at = bytes.windows(4).position(|w| w == b"NOTE").unwrap();
            let bad = [&bytes[..at], b"N\xff\xfeE", &bytes[at + 4..]].concat();
            assert!(std::str::from_utf8(&bad).is_err());
            let error = reject(&bad);
            assert!(
                matches!(error.kind(), DecodeErrorKind::Malformed(_)),
                "{error}"
            );
            // What came before the bad bytes was read.
            if !(in_data && first) {
                assert_eq!(error.context(), &full_context());
            }
            let mut router = Router::new();
            router.add(Replica::<Customer>::new()).unwrap();
            let error = router.apply_json(&bad).unwrap_err();
            assert!(
                matches!(error.kind(), DecodeErrorKind::Malformed(_)),
                "{error}"
            );
            assert!(router.replica::<Customer>().unwrap().is_empty());
        }
    }
}

#[test]
fn a_json_value_that_is_not_an_object_is_malformed() {
    for bytes in [&b"[]"[..], b"[1,2]", b"\"text\"", b"42", b"null", b"true"] {
        let error = reject(bytes);
        assert!(
            matches!(error.kind(), DecodeErrorKind::Malformed(_)),
            "{error}"
        );
    }
}

#[test]
fn trailing_garbage_is_malformed_with_the_full_context() {
    for tail in [&b"x"[..], b" {}", b"}", b",", b"\0"] {
        let mut bytes = obj(&members());
        bytes.extend_from_slice(tail);
        let error = reject(&bytes);
        assert!(
            matches!(error.kind(), DecodeErrorKind::Malformed(_)),
            "{error}"
        );
        assert_eq!(error.context(), &full_context());
    }
}

#[test]
fn a_missing_required_attribute_is_named() {
    for name in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "sequence",
        "schemaversion",
        "operation",
    ] {
        for bytes in [
            obj(&without(members(), name)),
            obj(&data_first(without(members(), name))),
            // null counts as absent
            obj(&with(members(), name, Value::Null)),
        ] {
            let error = reject(&bytes);
            match error.kind() {
                DecodeErrorKind::MissingAttribute(missing) => assert_eq!(*missing, name),
                other => panic!("{name}: {other:?}"),
            }
            // Everything else that was there is in the context.
            let mut expected = full_context();
            match name {
                "id" => expected.id = None,
                "type" => expected.entity = None,
                "subject" => expected.key = None,
                "sequence" => expected.sequence = None,
                "schemaversion" => expected.schema_version = None,
                _ => {}
            }
            assert_eq!(error.context(), &expected, "{name}");
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}

fn assert_invalid(error: &DecodeError, attribute: &str) {
    match error.kind() {
        DecodeErrorKind::InvalidAttribute { name, reason } => {
            assert_eq!(*name, attribute, "{error}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected invalid `{attribute}`, got {other:?}"),
    }
}

#[test]
fn only_specversion_1_0_is_read() {
    for version in ["0.3", "1", "1.0.0", "2.0"] {
        let error = reject(&obj(&with(members(), "specversion", json!(version))));
        assert_invalid(&error, "specversion");
        assert_eq!(error.context(), &full_context());
    }
}

#[test]
fn required_strings_must_not_be_empty() {
    for name in ["id", "source", "type", "subject"] {
        let error = reject(&obj(&with(members(), name, json!(""))));
        assert_invalid(&error, name);
    }
}

#[test]
fn an_attribute_of_the_wrong_json_type_is_malformed() {
    for (name, value) in [
        ("id", json!(5)),
        ("subject", json!(["c-1"])),
        ("type", json!({"name": "customer"})),
        ("operation", json!(true)),
        ("time", json!(12)),
    ] {
        let error = reject(&obj(&with(members(), name, value)));
        assert!(
            matches!(error.kind(), DecodeErrorKind::Malformed(_)),
            "{error}"
        );
    }
}

#[test]
fn a_sequence_that_is_not_a_non_negative_integer_is_invalid() {
    for value in [
        json!("abc"),
        json!(-1),
        json!(1.5),
        json!(true),
        json!([]),
        json!([7]),
        json!({}),
        json!({"n": 7}),
        json!(""),
        json!("+7"),
        json!("-7"),
        json!(" 7"),
        json!("7.0"),
        json!("0x10"),
    ] {
        for bytes in [
            obj(&with(members(), "sequence", value.clone())),
            obj(&data_first(with(members(), "sequence", value.clone()))),
        ] {
            let error = reject(&bytes);
            assert_invalid(&error, "sequence");
            let mut expected = full_context();
            expected.sequence = None;
            assert_eq!(error.context(), &expected, "{value}");
        }
    }
}

#[test]
fn a_sequence_beyond_u64_is_invalid() {
    for value in [
        json!("18446744073709551616"),
        json!("99999999999999999999999"),
        serde_json::from_str::<Value>("18446744073709551616").unwrap(),
    ] {
        let error = reject(&obj(&with(members(), "sequence", value)));
        assert_invalid(&error, "sequence");
    }
}

#[test]
fn a_sequence_above_i64_max_is_refused_naming_the_range() {
    // SQLite and PostgreSQL keep sequences in signed 64-bit columns: an
    // event the decoder accepted above i64::MAX could never be committed,
    // and a follower would stall on it.
    let over = i64::MAX as u64 + 1;
    for value in [
        json!(over),
        json!(over.to_string()),
        json!(format!("{over:020}")),
        json!(u64::MAX),
        json!("18446744073709551615"),
    ] {
        for bytes in [
            obj(&with(members(), "sequence", value.clone())),
            obj(&data_first(with(members(), "sequence", value.clone()))),
            obj(&with(delete_members(), "sequence", value.clone())),
        ] {
            let error = reject(&bytes);
            assert_invalid(&error, "sequence");
            let DecodeErrorKind::InvalidAttribute { reason, .. } = error.kind() else {
                unreachable!()
            };
            assert!(
                reason.contains("0..=9223372036854775807 (i64::MAX)"),
                "{reason}"
            );
            assert_eq!(error.context().key.as_deref(), Some("c-1"));
            assert!(error.context().sequence.unwrap() >= over, "{error}");
            let mut router = Router::new();
            router.add(Replica::<Customer>::new()).unwrap();
            router.apply_json(&bytes).unwrap_err();
            assert_eq!(router.rejected(), 1);
        }
    }
    let max = accept(&obj(&with(members(), "sequence", json!(i64::MAX))));
    assert_eq!(max.sequence, Sequence::MAX);
}

#[test]
fn the_sequence_range_is_checked_by_try_new_and_next() {
    assert_eq!(Sequence::MAX, Sequence::new(9_223_372_036_854_775_807));
    assert_eq!(Sequence::try_new(0), Ok(Sequence::new(0)));
    assert_eq!(Sequence::try_new(i64::MAX as u64), Ok(Sequence::MAX));
    let error = Sequence::try_new(i64::MAX as u64 + 1).unwrap_err();
    assert_eq!(error.value, 9_223_372_036_854_775_808);
    assert!(
        error.to_string().contains("0..=9223372036854775807"),
        "{error}"
    );
    assert_eq!(Sequence::MAX.next(), None);
    assert_eq!(Sequence::new(u64::MAX).next(), None);
    assert_eq!(
        Sequence::new(i64::MAX as u64 - 1).next(),
        Some(Sequence::MAX)
    );
}

#[test]
fn a_subject_with_a_control_character_is_refused() {
    // PostgreSQL TEXT cannot hold NUL; no key should carry control
    // characters into stores, logs or NATS subjects.
    for (subject, character, at, shown) in [
        ("c\u{0}1", '\u{0}', 1, "c\\u{0}1"),
        ("c-1\n", '\n', 3, "c-1\\n"),
        ("\u{7f}", '\u{7f}', 0, "\\u{7f}"),
        ("\u{e9}\u{85}", '\u{85}', 2, "\u{e9}\\u{85}"),
    ] {
        let upsert = with(
            with(members(), "subject", json!(subject)),
            "data",
            json!({"id": subject, "name": "Ada", "email": null, "credit": 1}),
        );
        let delete = with(delete_members(), "subject", json!(subject));
        for bytes in [obj(&upsert), obj(&data_first(upsert.clone())), obj(&delete)] {
            let error = reject(&bytes);
            match error.kind() {
                DecodeErrorKind::KeyControlCharacter {
                    character: c,
                    at: a,
                } => assert_eq!((*c, *a), (character, at)),
                other => panic!("{subject:?}: {other:?}"),
            }
            // What is shown and stored about the event is escaped.
            assert_eq!(error.context().key.as_deref(), Some(shown));
            let text = error.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.contains("control character U+"), "{text}");
        }
    }
}

#[test]
fn a_subject_longer_than_the_limit_is_refused() {
    let limit = ecst::envelope::MAX_KEY_BYTES;
    assert_eq!(limit, 1024);
    let event = |key: &str| {
        obj(&with(
            with(members(), "subject", json!(key)),
            "data",
            json!({"id": key, "name": "Ada", "email": null, "credit": 1}),
        ))
    };
    let longest = "k".repeat(limit);
    assert_eq!(accept(&event(&longest)).key, longest);
    // Multi-byte characters count in bytes.
    let wide = "\u{e9}".repeat(limit / 2 + 1);
    for key in ["k".repeat(limit + 1), wide, "k".repeat(1 << 20)] {
        let error = reject(&event(&key));
        assert!(
            matches!(error.kind(), DecodeErrorKind::KeyTooLong { len } if *len == key.len()),
            "{error}"
        );
        assert!(error.to_string().contains("at most 1024 bytes"), "{error}");
        // The context does not carry a megabyte along.
        let shown = error.context().key.as_deref().unwrap();
        assert!(
            shown.len() <= limit + 3 && shown.ends_with("..."),
            "{shown}"
        );
    }
}

#[test]
fn a_dataschema_that_contradicts_type_or_schemaversion_is_refused() {
    let cases = [
        // The issue's case: which version is it?
        with(
            members(),
            "dataschema",
            json!("urn:ecst:schema:customer:v1"),
        ),
        with(members(), "dataschema", json!("urn:ecst:schema:order:v2")),
        with(
            members(),
            "dataschema",
            json!("urn:ecst:schema:customer:v02"),
        ),
        with(members(), "dataschema", json!("urn:ecst:schema:customer")),
        with(
            members(),
            "dataschema",
            json!("URN:ECST:schema:customer:v3"),
        ),
        with(
            delete_members(),
            "dataschema",
            json!("urn:ecst:schema:customer:v1"),
        ),
    ];
    for members in cases {
        let mut orders = vec![obj(&members)];
        if members.iter().any(|(name, _)| *name == "data") {
            orders.push(obj(&data_first(members.clone())));
        }
        for bytes in orders {
            let error = reject(&bytes);
            match error.kind() {
                DecodeErrorKind::DataSchemaMismatch { found, expected } => {
                    assert_eq!(expected, "urn:ecst:schema:customer:v2");
                    assert_ne!(found, expected);
                }
                other => panic!("{other:?}\n{}", String::from_utf8_lossy(&bytes)),
            }
            assert!(!error.is_future_version());
            assert!(error.to_string().contains("contradicts"), "{error}");
        }
    }
    // A v1 payload under a contradicting v2 dataschema is reported as the
    // contradiction, not as a payload mismatch, whatever the order.
    let v1_payload = with(with(members(), "schemaversion", json!(1)), "data", ada_v1());
    for bytes in [obj(&v1_payload), obj(&data_first(v1_payload.clone()))] {
        assert!(matches!(
            reject(&bytes).kind(),
            DecodeErrorKind::DataSchemaMismatch { .. }
        ));
    }
    // Agreeing URIs, the ecst namespace in another case, and foreign URIs
    // are accepted.
    let canonical = accept(&obj(&members()));
    for uri in [
        "urn:ecst:schema:customer:v2",
        "URN:ECST:schema:customer:v2",
        "https://schemas.example/customer/v9.json",
        "urn:example:schema:customer:v9",
    ] {
        assert_eq!(
            accept(&obj(&with(members(), "dataschema", json!(uri)))),
            canonical,
            "{uri}"
        );
    }
    assert_eq!(accept(&obj(&without(members(), "dataschema"))), canonical);
    // An empty or duplicated dataschema is invalid.
    assert_invalid(
        &reject(&obj(&with(members(), "dataschema", json!("")))),
        "dataschema",
    );
    let mut twice = members();
    twice.push(("dataschema", json!("urn:ecst:schema:customer:v2")));
    assert_invalid(&reject(&obj(&twice)), "dataschema");
}

#[test]
fn a_future_version_is_parked_before_its_dataschema_is_judged() {
    // A consumer that does not know v3 cannot judge it: park, retry later.
    for dataschema in ["urn:ecst:schema:customer:v3", "urn:ecst:schema:customer:v2"] {
        let bytes = obj(&with(
            with(members(), "schemaversion", json!(3)),
            "dataschema",
            json!(dataschema),
        ));
        assert!(reject(&bytes).is_future_version(), "{dataschema}");
    }
}

#[test]
fn time_must_be_rfc_3339() {
    for time in [
        "yesterday",
        "2024-05-01",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-02-30T12:00:00Z",
        "Wed, 01 May 2024 12:00:00 GMT",
        "1714564800",
        "",
        "2024-05-01T12:00:00Z\u{0}",
    ] {
        for members in [
            with(members(), "time", json!(time)),
            with(delete_members(), "time", json!(time)),
        ] {
            let error = reject(&obj(&members));
            assert_invalid(&error, "time");
            assert!(error.to_string().contains("RFC 3339"), "{error}");
            assert!(!error.to_string().contains('\u{0}'));
        }
    }
    // RFC 3339 allows offsets, lower-case t and z, any fraction.
    let noon = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
    for (time, at) in [
        ("2024-05-01T12:00:00Z", noon),
        ("2024-05-01T14:00:00+02:00", noon),
        (
            "2024-05-01t07:00:00.250-05:00",
            noon + Duration::from_millis(250),
        ),
        (
            "2024-05-01T12:00:00.000000001z",
            noon + Duration::from_nanos(1),
        ),
    ] {
        let envelope = accept(&obj(&with(members(), "time", json!(time))));
        assert_eq!(envelope.time.as_deref(), Some(time));
        assert_eq!(envelope.time(), Some(at), "{time}");
    }
    // time is optional.
    assert_eq!(accept(&obj(&without(members(), "time"))).time(), None);
}

#[test]
fn a_schemaversion_string_must_be_the_plain_integer() {
    for value in ["02", "002", "00"] {
        let error = reject(&obj(&with(members(), "schemaversion", json!(value))));
        assert_invalid(&error, "schemaversion");
        assert!(error.to_string().contains("leading zeros"), "{error}");
    }
    assert_eq!(
        accept(&obj(&with(members(), "schemaversion", json!("2")))),
        accept(&obj(&members()))
    );
    // "0" is read, and is no version.
    assert!(matches!(
        reject(&obj(&with(members(), "schemaversion", json!("0")))).kind(),
        DecodeErrorKind::InvalidVersion
    ));
}

#[test]
fn schema_versions_start_at_1_and_fit_in_u32() {
    let error = reject(&obj(&with(members(), "schemaversion", json!(0))));
    assert!(
        matches!(error.kind(), DecodeErrorKind::InvalidVersion),
        "{error}"
    );
    assert_eq!(error.context().id.as_deref(), Some("customer:c-1:7"));
    assert!(!error.is_future_version());

    for value in [
        json!(-2),
        json!("two"),
        json!(2.0),
        json!(4_294_967_296_u64),
    ] {
        let error = reject(&obj(&with(members(), "schemaversion", value)));
        assert_invalid(&error, "schemaversion");
        assert!(!error.is_future_version());
    }
}

#[test]
fn a_future_version_is_parked_not_poison() {
    for version in [3, 99, u32::MAX] {
        let bytes = obj(&with(members(), "schemaversion", json!(version)));
        let error = reject(&bytes);
        assert!(error.is_future_version(), "{error}");
        assert!(matches!(
            error.kind(),
            DecodeErrorKind::FutureVersion { newest_known: 2 }
        ));
        let mut expected = full_context();
        expected.schema_version = Some(version);
        assert_eq!(error.context(), &expected);

        // Counted as such by the replica, which stays unchanged (`reject`
        // checks that) ...
        let mut replica = seeded();
        replica.apply_json(&bytes).unwrap_err();
        replica
            .apply_json(&obj(&data_first(with(
                members(),
                "schemaversion",
                json!(version),
            ))))
            .unwrap_err();
        assert_eq!(replica.stats().future_version, 2);
        assert_eq!(replica.stats().rejected, 2);
        assert_eq!(replica.get("c-1"), Some(&customer("c-1", "Old")));

        // ... and behind a router, by the entity's replica.
        let mut router = Router::new();
        router.add(Replica::<Customer>::new()).unwrap();
        assert!(router.apply_json(&bytes).unwrap_err().is_future_version());
        assert_eq!(router.rejected(), 0);
        let routed = router.replica::<Customer>().unwrap();
        assert_eq!(routed.stats().future_version, 1);
        assert!(routed.is_empty());
    }
    // Any other error is not a future version, even with a future version
    // declared, when the entity is not ours.
    let error = reject(&obj(&with(
        with(members(), "schemaversion", json!(3)),
        "type",
        json!("order"),
    )));
    assert!(!error.is_future_version());
}

#[test]
fn an_event_of_another_entity_is_rejected_by_a_replica() {
    let error = reject(&obj(&with(members(), "type", json!("order"))));
    assert!(
        matches!(
            error.kind(),
            DecodeErrorKind::WrongEntity {
                expected: "customer"
            }
        ),
        "{error}"
    );
    assert_eq!(error.context().entity.as_deref(), Some("order"));
}

#[test]
fn an_event_of_an_unregistered_entity_is_rejected_by_a_router() {
    let mut router = Router::new();
    router.add(Replica::<Customer>::new()).unwrap();
    router.add(Replica::<Order>::new()).unwrap();
    let mut entities: Vec<_> = router.entities().collect();
    entities.sort();
    assert_eq!(entities, ["customer", "order"]);

    let error = router
        .apply_json(&obj(&with(members(), "type", json!("invoice"))))
        .unwrap_err();
    assert!(
        matches!(error.kind(), DecodeErrorKind::UnknownEntity),
        "{error}"
    );
    assert_eq!(error.context().entity.as_deref(), Some("invoice"));
    assert_eq!(error.context().id.as_deref(), Some("customer:c-1:7"));
    assert_eq!(router.rejected(), 1);

    // Malformed envelopes are counted by the router too; errors inside a
    // replica by the replica.
    router.apply_json(b"{").unwrap_err();
    assert_eq!(router.rejected(), 2);
    router
        .apply_json(&obj(&with(members(), "data", json!({"id": 1}))))
        .unwrap_err();
    assert_eq!(router.rejected(), 2);
    assert_eq!(router.replica::<Customer>().unwrap().stats().rejected, 1);
    assert!(router.replica::<Customer>().unwrap().is_empty());
    assert!(router.replica::<Order>().unwrap().is_empty());

    // A second replica of the same entity is refused.
    let taken = router.add(Replica::<Customer>::new()).unwrap_err();
    assert_eq!(taken.entity, "customer");
}

#[test]
fn a_payload_not_matching_its_declared_version_is_a_mismatch() {
    let cases = [
        // v2 header, v1 payload
        with(members(), "data", ada_v1()),
        // v1 header, v2 payload
        at_version(members(), 1),
        with(members(), "data", json!(5)),
        with(members(), "data", json!([])),
        with(members(), "data", json!("c-1")),
        with(
            members(),
            "data",
            json!({"id": "c-1", "name": "Ada", "credit": -1}),
        ),
        with(
            members(),
            "data",
            json!({"id": "c-1", "name": 7, "credit": 1}),
        ),
    ];
    for members in cases {
        for bytes in [obj(&members), obj(&data_first(members.clone()))] {
            let error = reject(&bytes);
            assert!(
                matches!(error.kind(), DecodeErrorKind::PayloadMismatch(_)),
                "{error}\n{}",
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(error.context().key.as_deref(), Some("c-1"));
            assert_eq!(error.context().id.as_deref(), Some("customer:c-1:7"));
        }
    }
}

#[test]
fn a_failing_upcast_names_the_hop_and_the_field() {
    let members = with(
        at_version(members(), 1),
        "data",
        json!({"id": "c-1", "full_name": "Ada", "credit": -5}),
    );
    for bytes in [obj(&members), obj(&data_first(members.clone()))] {
        let error = reject(&bytes);
        match error.kind() {
            DecodeErrorKind::Upcast(upcast) => {
                assert_eq!(upcast.entity(), "customer");
                assert_eq!(upcast.from_version(), 1);
                assert_eq!(upcast.to_version(), 2);
                assert_eq!(upcast.field(), Some("credit"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(error.context().schema_version, Some(1));
    }
}

#[test]
fn an_upsert_needs_data() {
    for bytes in [
        obj(&without(members(), "data")),
        obj(&with(members(), "data", Value::Null)),
        obj(&data_first(with(members(), "data", Value::Null))),
    ] {
        let error = reject(&bytes);
        assert!(
            matches!(error.kind(), DecodeErrorKind::MissingData),
            "{error}"
        );
        assert_eq!(error.context(), &full_context());
    }
}

#[test]
fn a_delete_must_not_carry_data() {
    for data in [json!({}), serde_json::to_value(ada()).unwrap(), json!(0)] {
        let members = with(delete_members(), "data", data);
        for bytes in [obj(&members), obj(&data_first(members.clone()))] {
            let error = reject(&bytes);
            assert!(
                matches!(error.kind(), DecodeErrorKind::UnexpectedData),
                "{error}"
            );
            assert_eq!(error.context(), &full_context());
        }
    }
}

#[test]
fn a_subject_that_is_not_a_key_is_invalid() {
    let order = |subject: &str| {
        obj(&[
            ("specversion", json!("1.0")),
            ("id", json!("order:x:1")),
            ("source", json!("urn:example:shop")),
            ("type", json!("order")),
            ("subject", json!(subject)),
            ("sequence", json!("1")),
            ("schemaversion", json!(1)),
            ("operation", json!("delete")),
        ])
    };
    for subject in ["abc", "-1", "1.0", "18446744073709551616", " 1"] {
        let bytes = order(subject);
        let error = Envelope::<Order>::from_json(&bytes).unwrap_err();
        assert!(
            matches!(error.kind(), DecodeErrorKind::InvalidKey(_)),
            "{error}"
        );
        assert_eq!(error.context().key.as_deref(), Some(subject));
        let mut replica = Replica::<Order>::new();
        replica.apply_json(&bytes).unwrap_err();
        assert_eq!(replica.stats().rejected, 1);
        assert_eq!(replica.tombstones(), 0);
    }
    assert_eq!(
        Envelope::<Order>::from_json(&order("18446744073709551615"))
            .unwrap()
            .key,
        u64::MAX
    );
}

#[test]
fn a_subject_differing_from_the_payload_key_is_a_mismatch() {
    let members = with(
        with(members(), "subject", json!("c-2")),
        "id",
        json!("customer:c-2:7"),
    );
    for bytes in [obj(&members), obj(&data_first(members.clone()))] {
        let error = reject(&bytes);
        match error.kind() {
            DecodeErrorKind::KeyMismatch { payload_key } => assert_eq!(payload_key, "c-1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(error.context().key.as_deref(), Some("c-2"));
        let text = error.to_string();
        assert!(text.contains("customer:c-2:7"), "{text}");
        assert!(text.contains("c-2"), "{text}");
        assert!(text.contains("c-1"), "{text}");
    }
}

#[test]
fn a_duplicate_attribute_is_invalid() {
    for name in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "sequence",
        "schemaversion",
        "operation",
        "time",
        "datacontenttype",
        "data",
    ] {
        let mut members = members();
        let copy = members.iter().find(|(n, _)| *n == name).unwrap().clone();
        // The same value again, at the end and at the start.
        for at in [members.len(), 0] {
            let mut twice = members.clone();
            twice.insert(at, copy.clone());
            let error = reject(&obj(&twice));
            assert_invalid(&error, name);
        }
        members.push(copy);
        assert_invalid(&reject(&obj(&data_first(members))), name);
    }
    // A second occurrence counts even when one of them is null: a reader
    // that keeps the last value would see another event.
    for name in [
        "id",
        "sequence",
        "schemaversion",
        "operation",
        "type",
        "data",
        "subject",
    ] {
        let mut late_null = members();
        late_null.push((name, Value::Null));
        assert_invalid(&reject(&obj(&late_null)), name);
        let mut early_null = members();
        early_null.insert(0, (name, Value::Null));
        assert_invalid(&reject(&obj(&early_null)), name);
    }
}

#[test]
fn binary_data_is_not_supported() {
    let binary = with(
        without(members(), "data"),
        "data_base64",
        json!("eyJpZCI6ImMtMSJ9"),
    );
    let error = reject(&obj(&binary));
    assert_invalid(&error, "data_base64");
    // Even next to JSON data.
    let error = reject(&obj(&with(members(), "data_base64", json!("AA=="))));
    assert_invalid(&error, "data_base64");
}

#[test]
fn a_non_json_content_type_is_unsupported() {
    for ct in [
        "application/avro",
        "text/plain",
        "application/xml",
        "json",
        "",
    ] {
        let error = reject(&obj(&with(members(), "datacontenttype", json!(ct))));
        match error.kind() {
            DecodeErrorKind::UnsupportedContentType(found) => assert_eq!(found, ct),
            other => panic!("{ct}: {other:?}"),
        }
        assert_eq!(error.context(), &full_context());
    }
}

#[test]
fn an_unknown_operation_is_invalid() {
    for op in ["update", "UPSERT", "", "create"] {
        let error = reject(&obj(&with(members(), "operation", json!(op))));
        assert_invalid(&error, "operation");
    }
}

#[test]
fn an_error_displays_the_id_the_key_and_the_reason() {
    let error = reject(&obj(&with(members(), "data", Value::Null)));
    let text = error.to_string();
    assert!(text.contains("customer:c-1:7"), "{text}");
    assert!(text.contains("c-1"), "{text}");
    assert!(text.contains("customer"), "{text}");
    assert!(text.contains("data"), "{text}");
    let (context, kind) = error.into_parts();
    assert_eq!(context, full_context());
    assert!(matches!(kind, DecodeErrorKind::MissingData));

    // The source chain reaches serde_json's message.
    let error = reject(&obj(&with(members(), "data", json!(5))));
    let source = std::error::Error::source(&error).expect("a source");
    assert!(!source.to_string().is_empty());
}

// ---------------------------------------------------------------------------
// Producer
// ---------------------------------------------------------------------------

#[test]
fn the_counter_is_per_key_and_ids_name_entity_key_and_sequence() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    assert_eq!(producer.source(), "urn:example:crm");
    let steps = [
        (
            producer.upsert(customer("a", "A")).unwrap(),
            "customer:a:1",
            1,
        ),
        (
            producer.upsert(customer("b", "B")).unwrap(),
            "customer:b:1",
            1,
        ),
        (
            producer.upsert(customer("a", "A2")).unwrap(),
            "customer:a:2",
            2,
        ),
        (producer.delete("a".into()).unwrap(), "customer:a:3", 3),
        (
            producer.upsert(customer("b", "B2")).unwrap(),
            "customer:b:2",
            2,
        ),
        (
            producer.upsert(customer("a", "A3")).unwrap(),
            "customer:a:4",
            4,
        ),
    ];
    for (envelope, id, sequence) in &steps {
        assert_eq!(envelope.id, *id);
        assert_eq!(envelope.sequence, Sequence::new(*sequence));
        assert_eq!(envelope.source, "urn:example:crm");
        assert_eq!(envelope.written_version(), 2);
    }
    assert_eq!(producer.last_sequence(&"a".into()), Some(Sequence::new(4)));
    assert_eq!(producer.last_sequence(&"b".into()), Some(Sequence::new(2)));
    assert_eq!(producer.last_sequence(&"c".into()), None);

    // The counter continues after an owner's revision.
    producer
        .upsert_at(customer("b", "B3"), Sequence::new(10))
        .unwrap();
    let next = producer.upsert(customer("b", "B4")).unwrap();
    assert_eq!(next.sequence, Sequence::new(11));
    assert_eq!(next.id, "customer:b:11");

    let mut orders = Producer::<Order>::new("urn:example:shop");
    let order = orders.delete_at(42, Sequence::new(9)).unwrap();
    assert_eq!(order.id, "order:42:9");
    assert_eq!(order.key, 42);
}

#[test]
fn a_revision_that_does_not_increase_is_refused() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    producer
        .upsert_at(customer("c-1", "A"), Sequence::new(5))
        .unwrap();
    for given in [5, 4, 0] {
        let error = producer
            .upsert_at(customer("c-1", "B"), Sequence::new(given))
            .unwrap_err();
        assert_eq!(
            error,
            SequenceError::NotIncreasing {
                entity: "customer",
                key: "c-1".into(),
                given: Sequence::new(given),
                last: Sequence::new(5),
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("c-1") && text.contains(&given.to_string()),
            "{text}"
        );
        assert!(matches!(
            producer.delete_at("c-1".into(), Sequence::new(given)),
            Err(SequenceError::NotIncreasing { .. })
        ));
    }
    // A refused revision does not move the key.
    assert_eq!(
        producer.last_sequence(&"c-1".into()),
        Some(Sequence::new(5))
    );
    // Other keys are independent.
    producer
        .upsert_at(customer("c-2", "C"), Sequence::new(1))
        .unwrap();
    producer.delete_at("c-1".into(), Sequence::new(6)).unwrap();
    assert_eq!(
        producer.last_sequence(&"c-1".into()),
        Some(Sequence::new(6))
    );
}

#[test]
fn the_producer_refuses_a_revision_above_the_range() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let over = Sequence::new(i64::MAX as u64 + 1);
    assert_eq!(
        producer.upsert_at(customer("c-1", "A"), over).unwrap_err(),
        SequenceError::OutOfRange {
            entity: "customer",
            key: "c-1".into(),
            given: over,
        }
    );
    let error = producer
        .delete_at("c-1".into(), Sequence::new(u64::MAX))
        .unwrap_err();
    assert!(matches!(error, SequenceError::OutOfRange { .. }), "{error}");
    assert!(
        error.to_string().contains("0..=9223372036854775807"),
        "{error}"
    );
    // Nothing was recorded for the refused revisions.
    assert_eq!(producer.last_sequence(&"c-1".into()), None);

    // Up to MAX is fine, and the counter stops there.
    let at_max = producer
        .upsert_at(customer("c-1", "A"), Sequence::MAX)
        .unwrap();
    assert_eq!(
        Envelope::<Customer>::from_json(&at_max.to_json().unwrap())
            .unwrap()
            .sequence,
        Sequence::MAX
    );
    assert!(matches!(
        producer.upsert(customer("c-1", "B")),
        Err(SequenceError::Exhausted { .. })
    ));
    assert!(matches!(
        producer.delete("c-1".into()),
        Err(SequenceError::Exhausted { .. })
    ));
}

#[test]
fn the_producer_refuses_a_key_the_decoder_would_refuse() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let long = "k".repeat(1025);
    for key in ["c\u{0}1", "tab\t", "", long.as_str()] {
        let error = producer.upsert(customer(key, "A")).unwrap_err();
        let SequenceError::InvalidKey {
            entity, key: shown, ..
        } = &error
        else {
            panic!("{key:?}: {error:?}");
        };
        assert_eq!(*entity, "customer");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.len() <= 1027);
        assert!(!error.to_string().chars().any(char::is_control));
        assert!(matches!(
            producer.delete_at(key.into(), Sequence::new(1)),
            Err(SequenceError::InvalidKey { .. })
        ));
        assert_eq!(producer.last_sequence(&key.into()), None);
    }
    producer.upsert(customer(&"k".repeat(1024), "A")).unwrap();
}

#[test]
fn a_resumed_producer_continues_and_an_exhausted_counter_is_an_error() {
    let mut producer = Producer::<Customer>::resume(
        "urn:example:crm",
        [
            ("c-1".into(), Sequence::new(41)),
            ("c-2".into(), Sequence::new(u64::MAX)),
        ],
    );
    assert_eq!(
        producer.upsert(customer("c-1", "A")).unwrap().sequence,
        Sequence::new(42)
    );
    assert_eq!(
        producer.upsert(customer("c-2", "B")).unwrap_err(),
        SequenceError::Exhausted {
            entity: "customer",
            key: "c-2".into(),
        }
    );
    assert!(matches!(
        producer.delete("c-2".into()),
        Err(SequenceError::Exhausted { .. })
    ));
    assert!(matches!(
        producer.upsert_at(customer("c-1", "A"), Sequence::new(41)),
        Err(SequenceError::NotIncreasing { .. })
    ));
}

// ---------------------------------------------------------------------------
// Replica
// ---------------------------------------------------------------------------

#[test]
fn replica_accessors_show_live_states_and_tombstones() {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    let mut replica = Replica::<Customer>::with_capacity(8);
    assert!(replica.is_empty());
    assert_eq!(replica.entry("c-1"), None);

    let events = [
        producer.upsert(customer("c-1", "A")).unwrap(),
        producer.upsert(customer("c-2", "B")).unwrap(),
        producer.upsert(customer("c-3", "C")).unwrap(),
        producer.upsert(customer("c-1", "A2")).unwrap(),
        producer.delete("c-2".into()).unwrap(),
        producer.delete("c-4".into()).unwrap(),
    ];
    let outcomes: Vec<Outcome> = events
        .iter()
        .map(|e| replica.apply_json(&e.to_json().unwrap()).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Inserted,
            Outcome::Inserted,
            Outcome::Inserted,
            Outcome::Updated,
            Outcome::Deleted,
            Outcome::Deleted,
        ]
    );
    assert_eq!(replica.len(), 2);
    assert!(!replica.is_empty());
    assert_eq!(replica.tombstones(), 2);
    assert_eq!(replica.get("c-1"), Some(&customer("c-1", "A2")));
    assert_eq!(replica.get("c-2"), None);
    assert_eq!(replica.get("c-5"), None);
    assert_eq!(
        replica.entry("c-1"),
        Some(Entry::Live {
            sequence: Sequence::new(2),
            state: &customer("c-1", "A2"),
        })
    );
    assert_eq!(replica.entry("c-1").unwrap().sequence(), Sequence::new(2));
    assert_eq!(
        replica.entry("c-2"),
        Some(Entry::Tombstone {
            sequence: Sequence::new(2)
        })
    );
    assert_eq!(
        replica.entry("c-4"),
        Some(Entry::Tombstone {
            sequence: Sequence::new(1)
        })
    );
    let mut keys: Vec<&String> = replica.iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys, ["c-1", "c-3"]);
    let mut all: Vec<&String> = replica.entries().map(|(k, _)| k).collect();
    all.sort();
    assert_eq!(all, ["c-1", "c-2", "c-3", "c-4"]);

    // An upsert older than the tombstone is stale; a newer one revives.
    let old = Envelope::upsert("urn:s", "x", Sequence::new(1), customer("c-2", "Zombie"));
    assert_eq!(replica.apply(old), Outcome::Stale);
    assert_eq!(replica.get("c-2"), None);
    let revived = replica.apply_change(
        "c-2".into(),
        Sequence::new(3),
        Change::Upsert(customer("c-2", "B3")),
    );
    assert_eq!(revived, Outcome::Inserted);
    assert_eq!(replica.len(), 3);
    assert_eq!(replica.tombstones(), 1);

    let stats = replica.stats();
    assert_eq!((stats.inserted, stats.updated, stats.deleted), (4, 1, 2));
    assert_eq!((stats.duplicates, stats.stale, stats.rejected), (0, 1, 0));
    assert_eq!(stats.applied(), 7);
}

#[test]
fn purging_tombstones_drops_only_old_tombstones() {
    let mut replica = Replica::<Customer>::new();
    replica.apply(Envelope::upsert(
        "urn:s",
        "1",
        Sequence::new(1),
        customer("c-1", "A"),
    ));
    replica.apply(Envelope::delete(
        "urn:s",
        "2",
        "c-2".into(),
        Sequence::new(5),
    ));
    replica.apply(Envelope::delete(
        "urn:s",
        "3",
        "c-3".into(),
        Sequence::new(2),
    ));
    assert_eq!(replica.tombstones(), 2);

    // Nothing was deleted before the epoch.
    assert_eq!(replica.purge_tombstones_before(UNIX_EPOCH), 0);
    assert_eq!(replica.tombstones(), 2);

    let future = SystemTime::now() + Duration::from_secs(24 * 3600);
    assert_eq!(replica.purge_tombstones_before(future), 2);
    assert_eq!(replica.tombstones(), 0);
    assert_eq!(replica.entry("c-2"), None);
    assert_eq!(replica.len(), 1, "live states are never purged");
    assert_eq!(replica.get("c-1"), Some(&customer("c-1", "A")));
    assert_eq!(replica.purge_tombstones_before(future), 0);

    // As documented: after a purge, an old upsert brings the entity back.
    let old = Envelope::upsert("urn:s", "0", Sequence::new(1), customer("c-2", "Old"));
    assert_eq!(replica.apply(old), Outcome::Inserted);
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

fn populated() -> Replica<Customer> {
    let mut replica = Replica::<Customer>::new();
    replica.apply(Envelope::upsert(
        "urn:s",
        "a",
        Sequence::new(4),
        customer("c-2", "B"),
    ));
    replica.apply(Envelope::upsert(
        "urn:s",
        "b",
        Sequence::new(1),
        customer("c-1", "A"),
    ));
    replica.apply(Envelope::delete(
        "urn:s",
        "c",
        "c-3".into(),
        Sequence::new(9),
    ));
    replica
}

#[test]
fn a_snapshot_round_trips_states_tombstones_and_sequences() {
    let original = populated();
    let bytes = snapshot(&original);
    let wire: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(wire["entity"], "customer");
    assert_eq!(wire["schemaversion"], 2);
    let entries = wire["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["c-1", "c-2", "c-3"], "sorted by key");
    assert_eq!(
        entries[2],
        json!({"key": "c-3", "sequence": 9, "deleted": true})
    );
    assert_eq!(entries[1]["sequence"], 4);
    assert_eq!(
        entries[1]["state"],
        serde_json::to_value(customer("c-2", "B")).unwrap()
    );

    let mut restored = Replica::<Customer>::new();
    let stats = restored.import_snapshot(&bytes).unwrap();
    assert_eq!((stats.inserted, stats.deleted, stats.applied()), (2, 1, 3));
    assert_eq!(snapshot(&restored), bytes);
    assert_eq!(live(&restored), live(&original));
    assert_eq!(restored.tombstones(), 1);
    assert_eq!(
        restored.entry("c-3"),
        Some(Entry::Tombstone {
            sequence: Sequence::new(9)
        })
    );
    assert_eq!(
        restored.stats(),
        Default::default(),
        "imports are not events"
    );

    // Importing again changes nothing.
    let again = restored.import_snapshot(&bytes).unwrap();
    assert_eq!((again.duplicates, again.applied()), (3, 0));
    assert_eq!(snapshot(&restored), bytes);

    // An empty replica's snapshot is valid too.
    let empty = snapshot(&Replica::<Customer>::new());
    let mut target = populated();
    assert_eq!(target.import_snapshot(&empty).unwrap(), Default::default());
}

#[test]
fn a_snapshot_merges_by_sequence() {
    let mut replica = Replica::<Customer>::new();
    replica.apply(Envelope::upsert(
        "urn:s",
        "a",
        Sequence::new(10),
        customer("c-1", "Newer"),
    ));
    replica.apply(Envelope::upsert(
        "urn:s",
        "b",
        Sequence::new(1),
        customer("c-3", "Older"),
    ));
    let stats = replica.import_snapshot(&snapshot(&populated())).unwrap();
    assert_eq!(stats.stale, 1);
    assert_eq!(stats.inserted, 1);
    assert_eq!(stats.deleted, 1);
    assert_eq!(replica.get("c-1"), Some(&customer("c-1", "Newer")));
    assert_eq!(replica.get("c-2"), Some(&customer("c-2", "B")));
    assert_eq!(replica.get("c-3"), None);
}

#[test]
fn an_old_version_snapshot_is_upcast() {
    let bytes = br#"{"entity":"customer","schemaversion":1,"entries":[
        {"key":"c-1","sequence":4,"state":{"id":"c-1","full_name":"Ada","credit":12}},
        {"key":"c-2","sequence":9,"deleted":true}
    ]}"#;
    let mut replica = Replica::<Customer>::new();
    replica.import_snapshot(bytes).unwrap();
    assert_eq!(
        replica.entry("c-1"),
        Some(Entry::Live {
            sequence: Sequence::new(4),
            state: &Customer {
                id: "c-1".into(),
                name: "Ada".into(),
                email: None,
                credit: 12,
            },
        })
    );
    assert_eq!(
        replica.entry("c-2"),
        Some(Entry::Tombstone {
            sequence: Sequence::new(9)
        })
    );
    // Re-exported in the newest version.
    let wire: Value = serde_json::from_slice(&snapshot(&replica)).unwrap();
    assert_eq!(wire["schemaversion"], 2);
    assert_eq!(wire["entries"][0]["state"]["name"], "Ada");
}

#[test]
fn a_bad_snapshot_changes_nothing() {
    let entry_ok =
        r#"{"key":"c-0","sequence":50,"state":{"id":"c-0","name":"New","email":null,"credit":1}}"#;
    let snapshot_with = |entry: &str| {
        format!(r#"{{"entity":"customer","schemaversion":2,"entries":[{entry_ok},{entry}]}}"#)
            .into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "malformed"),
        (b"[]".to_vec(), "malformed"),
        (
            br#"{"entity":"customer","schemaversion":2}"#.to_vec(),
            "malformed",
        ),
        (
            br#"{"entity":"customer","schemaversion":0,"entries":[]} x"#.to_vec(),
            "malformed",
        ),
        (
            br#"{"entity":"order","schemaversion":1,"entries":[]}"#.to_vec(),
            "entity",
        ),
        (
            br#"{"entity":"customer","schemaversion":3,"entries":[]}"#.to_vec(),
            "future",
        ),
        (
            snapshot_with(
                r#"{"key":"c-1","sequence":99,"state":{"id":"c-2","name":"X","email":null,"credit":1}}"#,
            ),
            "key mismatch",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":99}"#),
            "missing data",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":99,"state":null}"#),
            "missing data",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":99,"deleted":true,"state":{"id":"c-1"}}"#),
            "unexpected data",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":99,"state":{"id":"c-1"}}"#),
            "payload",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":-1,"deleted":true}"#),
            "malformed",
        ),
        // No store holds a sequence above i64::MAX.
        (
            snapshot_with(r#"{"key":"c-1","sequence":9223372036854775808,"deleted":true}"#),
            "malformed",
        ),
        (
            snapshot_with(r#"{"key":"c-1","sequence":99,"deleted":true,"extra":1}"#),
            "malformed",
        ),
    ];
    for (bytes, what) in cases {
        let mut replica = populated();
        let before = snapshot(&replica);
        let stats = replica.stats();
        let error = replica.import_snapshot(&bytes).expect_err(what);
        assert!(!error.to_string().is_empty());
        match (what, &error) {
            ("malformed", SnapshotError::Malformed(_)) => {}
            ("entity", SnapshotError::WrongEntity { found, expected }) => {
                assert_eq!((found.as_str(), *expected), ("order", "customer"));
            }
            (
                "future",
                SnapshotError::FutureVersion {
                    version,
                    newest_known,
                },
            ) => {
                assert_eq!((*version, *newest_known), (3, 2));
            }
            (_, SnapshotError::Entry { index, key, kind }) => {
                assert_eq!((*index, key.as_str()), (1, "c-1"), "{what}");
                let ok = match what {
                    "key mismatch" => {
                        matches!(kind, DecodeErrorKind::KeyMismatch { payload_key } if payload_key == "c-2")
                    }
                    "missing data" => matches!(kind, DecodeErrorKind::MissingData),
                    "unexpected data" => matches!(kind, DecodeErrorKind::UnexpectedData),
                    "payload" => matches!(kind, DecodeErrorKind::PayloadMismatch(_)),
                    _ => false,
                };
                assert!(ok, "{what}: {error}");
            }
            _ => panic!("{what}: {error:?}"),
        }
        assert_eq!(snapshot(&replica), before, "{what}: the replica changed");
        assert_eq!(
            replica.get("c-0"),
            None,
            "{what}: the valid entry was merged"
        );
        assert_eq!(replica.stats(), stats);
    }
}

#[test]
fn snapshot_entry_errors_cover_keys_and_upcasts() {
    // A key that does not parse as the key type.
    let mut orders = Replica::<Order>::new();
    orders.apply(Envelope::delete("urn:s", "1", 7, Sequence::new(1)));
    let before = snapshot(&orders);
    let error = orders
        .import_snapshot(br#"{"entity":"order","schemaversion":1,"entries":[{"key":"seven","sequence":2,"deleted":true}]}"#)
        .unwrap_err();
    assert!(
        matches!(&error, SnapshotError::Entry { index: 0, key, kind: DecodeErrorKind::InvalidKey(_) } if key == "seven"),
        "{error}"
    );
    assert!(error.to_string().contains("seven"));
    assert_eq!(snapshot(&orders), before);

    // An upcast that fails.
    let mut replica = populated();
    let before = snapshot(&replica);
    let error = replica
        .import_snapshot(br#"{"entity":"customer","schemaversion":1,"entries":[{"key":"c-1","sequence":99,"state":{"id":"c-1","full_name":"A","credit":-3}}]}"#)
        .unwrap_err();
    assert!(
        matches!(
            &error,
            SnapshotError::Entry {
                kind: DecodeErrorKind::Upcast(_),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(snapshot(&replica), before);
}

/// Found by a red-team review: `007` and `+7` parse to the integer key 7,
/// so one key had several subjects and a message on `order.007` wrote order
/// 7. Only the key's canonical (`Display`) form is accepted, in events and
/// in snapshots.
#[test]
fn a_key_in_another_spelling_is_refused() {
    let mut replica = Replica::<Order>::new();
    for spelling in ["007", "+7"] {
        let event = obj(&[
            ("specversion", json!("1.0")),
            ("id", json!(format!("order:{spelling}:1"))),
            ("source", json!("urn:evil")),
            ("type", json!("order")),
            ("subject", json!(spelling)),
            ("sequence", json!("1000")),
            ("schemaversion", json!(1)),
            ("operation", json!("upsert")),
            ("data", json!({"number": 7, "total_cents": 1})),
        ]);
        let error = replica.apply_json(&event).unwrap_err();
        assert!(
            matches!(error.kind(), DecodeErrorKind::InvalidKey(reason) if reason.contains("write `7`")),
            "{spelling}: {error}"
        );
    }
    assert!(replica.entry(&7).is_none());
    let snapshot = br#"{"entity":"order","schemaversion":1,"entries":[{"key":"007","sequence":1,"state":{"number":7,"total_cents":1}}]}"#;
    assert!(replica.import_snapshot(snapshot).is_err());
}
