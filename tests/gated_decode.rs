//! The version gate reads the attributes first: an upsert the replica will
//! refuse whatever its data says is `Stale` without its `data` being
//! decoded. This checks that the shortcut changes nothing else: through
//! `Replica::apply_json` and a `Router`, every event gets exactly the
//! outcome (or the very error) that decoding it whole with
//! `Envelope::from_json` and applying it gives, and the replicas stay equal
//! to one that always decodes. A `DurableReplica` (the store path) applies
//! what the replica applies, with the same outcome, and parks what the
//! replica rejects. The one documented difference: an upsert
//! refused by the gate whose well-formed data does not fit its type (a
//! payload mismatch, a failed upcast, another key in the payload) is
//! `Stale` instead of rejected.
//!
//! Events: three keys, sequences 0..5, upserts of several versions (an
//! upcast one, a tolerated newer one, an unknown one), rival states at one
//! sequence, the same state at one sequence written as ecst writes it (a
//! duplicate found from the data's text) or otherwise, deletes, and faults in the data, in the attributes or both,
//! with `data` before or after the attributes.

use std::collections::BTreeMap;

use ecst::store::blocking::BlockingReplica;
use ecst::store::{MemoryStore, Message};
use ecst::{DecodeErrorKind, Entry, Envelope, Outcome, Replica, Router, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[path = "support/gated.rs"]
mod gated;

use gated::Customer;

/// What an event's `data` is.
#[derive(Clone, Debug)]
enum Data {
    /// A version-2 state; `canonical`: written as ecst's producer writes
    /// it (`serde_json::to_vec` of the state, fields in declared order),
    /// so a tie with the same state is found without decoding.
    V2 {
        name: u8,
        credit: u8,
        canonical: bool,
    },
    /// A version-1 state (upcast), failing for a negative credit.
    V1 { name: u8, credit: i8 },
    /// A version-3 state (read as version 2, the extra field ignored).
    V3 { name: u8, credit: u8 },
    /// Declared version 4, which this build does not know.
    V4,
    /// Valid JSON that does not fit version 2.
    Mismatch,
    /// A state of another key.
    OtherKey,
    /// `null`.
    Null,
    /// JSON with a syntax error inside `data`.
    Broken,
    /// A delete, without data.
    Delete,
    /// A delete that carries data.
    DeleteCarrying,
}

#[derive(Clone, Debug)]
struct Event {
    key: u8,
    sequence: u64,
    data: Data,
    /// `data` first rather than last.
    data_first: bool,
    /// No `specversion` (a fault in the attributes too).
    no_specversion: bool,
}

fn event() -> impl Strategy<Value = Event> {
    let data = prop_oneof![
        6 => (0..2u8, 0..2u8, any::<bool>())
            .prop_map(|(name, credit, canonical)| Data::V2 { name, credit, canonical }),
        2 => (0..2u8, -1..2i8).prop_map(|(name, credit)| Data::V1 { name, credit }),
        1 => (0..2u8, 0..2u8).prop_map(|(name, credit)| Data::V3 { name, credit }),
        1 => Just(Data::V4),
        2 => Just(Data::Mismatch),
        1 => Just(Data::OtherKey),
        1 => Just(Data::Null),
        1 => Just(Data::Broken),
        2 => Just(Data::Delete),
        1 => Just(Data::DeleteCarrying),
    ];
    (
        0..3u8,
        0..5u64,
        data,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(key, sequence, data, data_first, no_specversion)| Event {
            key,
            sequence,
            data,
            data_first,
            no_specversion,
        })
}

impl Event {
    fn key(&self) -> String {
        format!("c-{}", self.key)
    }

    /// The schema version, the operation and the `data` text.
    fn parts(&self) -> (u32, &'static str, Option<String>) {
        let key = self.key();
        let name = |n: &u8| format!("name-{n}");
        let upsert = "upsert";
        match &self.data {
            Data::V2 {
                name: n,
                credit,
                canonical: true,
            } => {
                let state = Customer {
                    id: key,
                    name: name(n),
                    credit: u64::from(*credit),
                };
                (
                    2,
                    upsert,
                    Some(serde_json::to_string(&state).expect("JSON")),
                )
            }
            Data::V2 {
                name: n,
                credit,
                canonical: false,
            } => (
                2,
                upsert,
                Some(json!({"id": key, "name": name(n), "credit": credit}).to_string()),
            ),
            Data::V1 { name: n, credit } => (
                1,
                upsert,
                Some(json!({"id": key, "full_name": name(n), "credit": credit}).to_string()),
            ),
            Data::V3 { name: n, credit } => (
                3,
                upsert,
                Some(
                    json!({"id": key, "name": name(n), "credit": credit, "nickname": "x"})
                        .to_string(),
                ),
            ),
            Data::V4 => (4, upsert, Some(json!({"id": key}).to_string())),
            Data::Mismatch => (
                2,
                upsert,
                Some(json!({"id": key, "name": 7, "credit": "lots"}).to_string()),
            ),
            Data::OtherKey => (
                2,
                upsert,
                Some(json!({"id": "c-9", "name": "n", "credit": 1}).to_string()),
            ),
            Data::Null => (2, upsert, Some("null".into())),
            Data::Broken => (2, upsert, Some(format!(r#"{{"id": "{key}", "name": }}"#))),
            Data::Delete => (2, "delete", None),
            Data::DeleteCarrying => (2, "delete", Some(json!({"id": key}).to_string())),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let (version, operation, data) = self.parts();
        let mut members: Vec<(&str, String)> = Vec::new();
        if !self.no_specversion {
            members.push(("specversion", json!("1.0").to_string()));
        }
        members.extend([
            (
                "id",
                json!(format!("e-{}-{}", self.key, self.sequence)).to_string(),
            ),
            ("source", json!("urn:test").to_string()),
            ("type", json!("customer").to_string()),
            ("subject", json!(self.key()).to_string()),
            (
                "sequence",
                json!(format!("{:020}", self.sequence)).to_string(),
            ),
            ("schemaversion", json!(version).to_string()),
            ("operation", json!(operation).to_string()),
        ]);
        if let Some(data) = data {
            let at = if self.data_first { 0 } else { members.len() };
            members.insert(at, ("data", data));
        }
        let body: Vec<String> = members
            .iter()
            .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
            .collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    }
}

/// Every key: its sequence, its state (`None` for a tombstone) and the
/// version the state was read at.
type Contents = BTreeMap<String, (u64, Option<Customer>, Option<u32>)>;

fn contents(replica: &Replica<Customer>) -> Contents {
    replica
        .entries()
        .map(|(key, entry)| {
            let value = match entry {
                Entry::Live { sequence, state } => (
                    sequence.get(),
                    Some(state.clone()),
                    replica.read_version(key),
                ),
                Entry::Tombstone { sequence } => (sequence.get(), None, None),
            };
            (key.clone(), value)
        })
        .collect()
}

/// Whether the reference replica (which decodes everything) holds, for the
/// event's key, what refuses an upsert at the event's sequence whatever its
/// data: the only case where skipping the data may turn a rejection into
/// `Stale`.
fn refused_whatever_the_data(reference: &Replica<Customer>, event: &Event) -> bool {
    let (version, _, _) = event.parts();
    let read_version = version.min(Customer::VERSION);
    let key = event.key();
    match reference.entry(key.as_str()) {
        None => false,
        Some(Entry::Tombstone { sequence }) => event.sequence <= sequence.get(),
        Some(Entry::Live { sequence, .. }) => {
            let held_version = reference.read_version(key.as_str()).unwrap_or(0);
            event.sequence < sequence.get()
                || (event.sequence == sequence.get() && held_version > read_version)
        }
    }
}

fn run(events: &[Event]) -> Result<(), TestCaseError> {
    let mut gated = Replica::<Customer>::new();
    let mut router = Router::new();
    router.add(Replica::<Customer>::new()).expect("one entity");
    let mut reference = Replica::<Customer>::new();
    let mut durable =
        BlockingReplica::<Customer, _>::open(MemoryStore::new()).expect("a memory store opens");
    let mut tally = BTreeMap::<&'static str, u64>::new();
    let mut read_as_older = 0;
    for (position, event) in (1..).zip(events) {
        let bytes = event.bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = gated.apply_json(&bytes);
        let routed = router.apply_json(&bytes).map(|routed| routed.outcome);
        let batch = durable
            .apply_batch(&[Message::new(position, "events.customer", &bytes)])
            .expect("a memory store commits");
        match &result {
            Ok(outcome) => prop_assert_eq!(
                &batch.applied,
                &vec![(position, *outcome)],
                "durable: {}",
                text
            ),
            Err(_) => prop_assert_eq!(
                batch.parked.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
                vec![position],
                "durable, parked: {}",
                text
            ),
        }
        let direct = Envelope::<Customer>::from_json(&bytes);
        match (&result, &routed) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "replica and router: {}", text),
            // The router reads `data` raw (after every attribute), so which
            // of two faults it reports first may differ: both reject.
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "replica {:?}, router {:?}: {}", result, routed, text),
        }
        match (&result, direct) {
            (Ok(outcome), Ok(envelope)) => {
                if envelope.written_version() > Customer::VERSION {
                    read_as_older += 1;
                }
                let expected = reference.apply(envelope);
                prop_assert_eq!(*outcome, expected, "{}", text);
            }
            (Err(error), Err(expected)) => {
                prop_assert_eq!(error.to_string(), expected.to_string(), "{}", text);
            }
            (Ok(outcome), Err(expected)) => {
                // The documented difference, and only it.
                let data_fault = matches!(
                    expected.kind(),
                    DecodeErrorKind::PayloadMismatch(_)
                        | DecodeErrorKind::Upcast(_)
                        | DecodeErrorKind::KeyMismatch { .. }
                );
                prop_assert!(
                    *outcome == Outcome::Stale
                        && data_fault
                        && refused_whatever_the_data(&reference, event),
                    "accepted as {:?} what decoding rejects ({}): {}",
                    outcome,
                    expected,
                    text
                );
            }
            (Err(error), Ok(_)) => {
                prop_assert!(
                    false,
                    "rejected what decoding accepts ({}): {}",
                    error,
                    text
                )
            }
        }
        let name = match &result {
            Ok(Outcome::Inserted) => "inserted",
            Ok(Outcome::Updated) => "updated",
            Ok(Outcome::Deleted) => "deleted",
            Ok(Outcome::Duplicate) => "duplicates",
            Ok(Outcome::Stale) => "stale",
            Ok(other) => {
                prop_assert!(false, "an outcome this test does not know: {:?}", other);
                unreachable!()
            }
            Err(_) => "rejected",
        };
        *tally.entry(name).or_default() += 1;
        let held = contents(&gated);
        prop_assert_eq!(&held, &contents(&reference), "after {}", text);
        prop_assert_eq!(
            &held,
            &contents(router.replica::<Customer>().expect("registered"))
        );
        prop_assert_eq!(&held, &contents(durable.replica()), "durable");
    }
    let stats = gated.stats();
    let count = |name| tally.get(name).copied().unwrap_or(0);
    prop_assert_eq!(
        (
            stats.inserted,
            stats.updated,
            stats.deleted,
            stats.duplicates,
            stats.stale,
            stats.rejected
        ),
        (
            count("inserted"),
            count("updated"),
            count("deleted"),
            count("duplicates"),
            count("stale"),
            count("rejected")
        )
    );
    // Read as older: every accepted version-3 event, refused or not.
    let accepted_v3 = events
        .iter()
        .filter(|event| matches!(event.data, Data::V3 { .. }) && !event.no_specversion)
        .count() as u64;
    prop_assert_eq!(stats.read_as_older, accepted_v3);
    prop_assert!(read_as_older <= accepted_v3);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn the_gate_changes_nothing_but_undecoded_stale_data(
        events in proptest::collection::vec(event(), 1..40)
    ) {
        run(&events)?;
    }
}

/// The difference, spelled out once: a stale upsert whose data does not fit
/// is `Stale` (not decoded); the same event at a higher sequence is
/// rejected, and so is a stale one whose data is not JSON, or whose version
/// this build does not know.
#[test]
fn a_stale_upsert_is_refused_from_its_attributes() {
    let mut replica = Replica::<Customer>::new();
    let at = |sequence, data| Event {
        key: 1,
        sequence,
        data,
        data_first: false,
        no_specversion: false,
    };
    let fresh = at(
        3,
        Data::V2 {
            name: 0,
            credit: 1,
            canonical: false,
        },
    );
    let apply = |replica: &mut Replica<Customer>, event: &Event| {
        replica
            .apply_json(&event.bytes())
            .map_err(|error| error.to_string())
    };
    assert_eq!(apply(&mut replica, &fresh), Ok(Outcome::Inserted));
    for data in [
        Data::Mismatch,
        Data::OtherKey,
        Data::V1 {
            name: 0,
            credit: -1,
        },
    ] {
        assert_eq!(
            apply(&mut replica, &at(2, data.clone())),
            Ok(Outcome::Stale),
            "{data:?}"
        );
        assert!(replica.apply_json(&at(4, data).bytes()).is_err());
    }
    for data in [Data::Broken, Data::V4, Data::Null, Data::DeleteCarrying] {
        assert!(replica.apply_json(&at(2, data).bytes()).is_err());
    }
    let stats = replica.stats();
    assert_eq!((stats.inserted, stats.stale, stats.rejected), (1, 3, 7));
}

/// Counts how often a `Counted` state is decoded.
static DECODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn counted<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    DECODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    u64::deserialize(deserializer)
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "counted", version = 1)]
pub struct Counted {
    #[state_event(key)]
    pub id: String,
    #[serde(deserialize_with = "counted")]
    pub n: u64,
}

/// A redelivery (the same sequence, `data` byte for byte what ecst's
/// producer writes for the state held) is a duplicate without its data
/// being decoded, through a replica, a router and a durable replica; the
/// same state written otherwise, and a rival state, are decoded and go to
/// the tie-break.
#[test]
fn a_redelivery_is_a_duplicate_without_decoding() {
    use std::sync::atomic::Ordering::SeqCst;
    let envelope = |data: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"e-1","source":"urn:test","type":"counted","subject":"k","sequence":"00000000000000000001","schemaversion":1,"operation":"upsert","data":{data}}}"#
        )
        .into_bytes()
    };
    let canonical = envelope(r#"{"id":"k","n":5}"#);
    let spaced = envelope(r#"{ "id": "k", "n": 5 }"#);
    let rival = envelope(r#"{"id":"k","n":6}"#);

    let mut replica = Replica::<Counted>::new();
    let mut router = Router::new();
    router.add(Replica::<Counted>::new()).expect("one entity");
    let mut durable =
        BlockingReplica::<Counted, _>::open(MemoryStore::new()).expect("a memory store opens");
    let mut stream_sequence = 0;
    let mut apply_all = |bytes: &[u8]| {
        stream_sequence += 1;
        let batch = durable
            .apply_batch(&[Message::new(stream_sequence, "events.counted", bytes)])
            .expect("the store commits");
        assert_eq!(batch.applied.len(), 1, "not parked: {:?}", batch.parked);
        [
            replica.apply_json(bytes).expect("valid"),
            router.apply_json(bytes).expect("valid").outcome,
            batch.applied[0].1,
        ]
    };
    let before = DECODED.load(SeqCst);
    assert_eq!(apply_all(&canonical), [Outcome::Inserted; 3]);
    assert_eq!(
        DECODED.load(SeqCst) - before,
        3,
        "decoded once per consumer"
    );
    assert_eq!(apply_all(&canonical), [Outcome::Duplicate; 3]);
    assert_eq!(
        DECODED.load(SeqCst) - before,
        3,
        "a redelivery is not decoded"
    );
    assert_eq!(apply_all(&spaced), [Outcome::Duplicate; 3]);
    assert_eq!(
        DECODED.load(SeqCst) - before,
        6,
        "other spellings are decoded"
    );
    assert_eq!(apply_all(&rival), [Outcome::Updated; 3]);
    assert_eq!(DECODED.load(SeqCst) - before, 9, "a rival state is decoded");
    assert_eq!(replica.get("k").map(|c| c.n), Some(6));
}
