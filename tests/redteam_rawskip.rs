//! Red team on two changes to how `data` is read (issue 12):
//!
//! - the payload reader hands serde_json's `RawValue` over itself (the
//!   value skipped and checked by the reader), so the `data` of an upsert
//!   the version gate refuses is read raw without serde_json;
//! - the scanner's bracket count (which keeps a `data` as deep as the serde
//!   path's limit away from the scanner) runs only where the payload reader
//!   gave up or the text was taken unread as the held state's.
//!
//! Each event goes through every consumer (`Replica::apply_json`, a
//! `Router`, a `BlockingReplica` over a memory store, a typed memory store
//! and SQLite) and through a reference that decodes it whole
//! (`Envelope::from_json`, then `Replica::apply`). The gated consumers must
//! agree with each other exactly; with the reference they must agree too,
//! except for the documented difference (an upsert the gate refuses is
//! `Stale`, or a tie with the held state's text `Duplicate`, where decoding
//! its data would fail), and then only for an envelope that is well-formed
//! JSON. After every event, every consumer holds what the reference holds;
//! for a set of events, every delivery order ends with the same contents.
//!
//! The attacks: `data` first, last, in the middle, spaced out, behind an
//! escaped attribute; whitespace, escapes, floats, integers at the edges of
//! `u64`/`i64`, nesting around the payload reader's limit (64) and
//! serde_json's (128), strings full of brackets, duplicate keys, invalid
//! JSON and non-UTF-8 in the `data` of a stale event, `null`, ties, and a
//! state type that keeps part of its data as a `RawValue`.

#![cfg(feature = "sqlite")]

use std::collections::BTreeMap;

use ecst::store::blocking::BlockingReplica;
use ecst::store::sqlite::SqliteStore;
use ecst::store::{MemoryStore, Message};
use ecst::{DecodeErrorKind, Entry, Envelope, Outcome, Replica, Router, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[path = "support/gated.rs"]
mod gated;

use gated::Doc;

/// Part of the data kept as serde_json's `RawValue`: its text, as written
/// (whitespace inside included), is the state.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug)]
#[state_event(entity = "rawdoc", version = 1)]
pub struct RawDoc {
    #[state_event(key)]
    pub id: String,
    #[schemars(with = "serde_json::Value")]
    pub raw: Box<RawValue>,
}

/// Typed fields: a float, a signed and an unsigned integer, a list.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "typed", version = 1)]
pub struct Typed {
    #[state_event(key)]
    pub id: String,
    pub f: f64,
    pub i: i64,
    pub u: u64,
    pub list: Vec<Option<String>>,
}

/// What a consumer did with one event: its outcome, or rejected.
type Got = Result<Outcome, String>;

/// What a replica holds: per key, the sequence and the state's JSON
/// (`None`: a tombstone).
type Contents = BTreeMap<String, (String, Option<String>)>;

/// Where `data` goes in the envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// As ecst writes it: `data` last.
    Last,
    /// `data` first: the gate does not know the key or sequence yet.
    First,
    /// `data` after `subject`, before `sequence`.
    Middle,
    /// `data` last, whitespace (tabs, CR LF) around every token.
    Spaced,
    /// `data` last, after an attribute with an escape (the scanner gives
    /// up: the serde path reads it all).
    Escaped,
}

const LAYOUTS: [Layout; 5] = [
    Layout::Last,
    Layout::First,
    Layout::Middle,
    Layout::Spaced,
    Layout::Escaped,
];

/// An upsert (`data` = `Some`) or delete of `entity`/`key` at `sequence`.
fn event(entity: &str, key: &str, sequence: u64, data: Option<&str>, layout: Layout) -> Vec<u8> {
    let id = if layout == Layout::Escaped {
        "\"e\\u002d1\""
    } else {
        "\"e-1\""
    };
    let operation = if data.is_some() {
        "\"upsert\""
    } else {
        "\"delete\""
    };
    let mut attrs: Vec<(&str, String)> = vec![
        ("specversion", "\"1.0\"".into()),
        ("id", id.into()),
        ("source", "\"urn:test\"".into()),
        ("type", format!("\"{entity}\"")),
        ("subject", format!("\"{key}\"")),
        ("sequence", sequence.to_string()),
        ("schemaversion", "1".into()),
        ("operation", operation.into()),
    ];
    if let Some(data) = data {
        let data = ("data", data.to_owned());
        match layout {
            Layout::First => attrs.insert(0, data),
            Layout::Middle => attrs.insert(5, data),
            Layout::Last | Layout::Spaced | Layout::Escaped => attrs.push(data),
        }
    }
    let (open, colon, comma, close) = if layout == Layout::Spaced {
        ("{ \r\n\t", " :\t", " ,\r\n ", "\n\t}\r\n")
    } else {
        ("{", ":", ",", "}")
    };
    let body: Vec<String> = attrs
        .iter()
        .map(|(name, value)| format!("\"{name}\"{colon}{value}"))
        .collect();
    format!("{open}{}{close}", body.join(comma)).into_bytes()
}

/// Every consumer of one entity type, and the reference.
struct Consumers<T: StateEvent + Clone> {
    reference: Replica<T>,
    replica: Replica<T>,
    router: Router,
    memory: BlockingReplica<T, MemoryStore>,
    typed: BlockingReplica<T, MemoryStore<T>>,
    sqlite: BlockingReplica<T, SqliteStore>,
    stream_sequence: u64,
    /// The events where the gated consumers took what the reference
    /// rejected (the documented difference), with the reference's error.
    skipped: Vec<(String, String)>,
    /// The events a router took that the replica rejected as too deep.
    router_deeper: Vec<String>,
}

impl<T: StateEvent + Clone> Consumers<T> {
    fn new() -> Self {
        let mut router = Router::new();
        router.add(Replica::<T>::new()).expect("one entity");
        Consumers {
            reference: Replica::new(),
            replica: Replica::new(),
            router,
            memory: BlockingReplica::open(MemoryStore::new()).expect("a memory store opens"),
            typed: BlockingReplica::open(MemoryStore::<T>::typed())
                .expect("a typed memory store opens"),
            sqlite: BlockingReplica::open(SqliteStore::in_memory("redteam").expect("SQLite opens"))
                .expect("the SQLite store loads"),
            stream_sequence: 0,
            skipped: Vec::new(),
            router_deeper: Vec::new(),
        }
    }

    /// Applies `bytes` everywhere and checks every consumer against the
    /// others and the reference; returns what `Replica::apply_json` got.
    fn apply(&mut self, bytes: &[u8]) -> Got {
        let shown = String::from_utf8_lossy(bytes).into_owned();
        let decoded = Envelope::<T>::from_json(bytes);
        let replica = self.replica.apply_json(bytes).map_err(|e| message(&e));
        let router = self
            .router
            .apply_json(bytes)
            .map(|routed| routed.outcome)
            .map_err(|e| message(&e));
        match (&router, &replica) {
            // Both reject (the messages may differ: a router reads `data`
            // raw, then decodes it on its own).
            (Err(_), Err(_)) => {}
            // A router reads `data` on its own, one level of nesting more
            // than a replica reading it in place, and takes a `data` 127
            // levels deep that a replica rejects (a known divergence, found
            // by this red team, not by the changes under test). From then
            // on the router holds something else: it is left out.
            (Ok(_), Err(error)) if error.ends_with("recursion limit exceeded") => {
                self.router_deeper.push(shown.clone());
            }
            _ if !self.router_deeper.is_empty() => {}
            _ => assert_eq!(router, replica, "Router against Replica on {shown}"),
        }
        match (decoded, &replica) {
            (Ok(envelope), _) => {
                let expected = self.reference.apply(envelope);
                assert_eq!(replica, Ok(expected), "Replica against decoding on {shown}");
            }
            (Err(error), Err(got)) => {
                assert_eq!(*got, message(&error), "Replica's error on {shown}");
            }
            (Err(error), Ok(outcome)) => {
                // The documented difference, and only it: refused (or the
                // held state's text), the envelope well-formed JSON, the
                // fault in `data`.
                let data_fault = matches!(
                    error.kind(),
                    DecodeErrorKind::PayloadMismatch(_)
                        | DecodeErrorKind::Upcast(_)
                        | DecodeErrorKind::KeyMismatch { .. }
                        | DecodeErrorKind::Malformed(_)
                );
                let well_formed =
                    serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(bytes).is_ok();
                assert!(
                    matches!(outcome, Outcome::Stale | Outcome::Duplicate)
                        && data_fault
                        && well_formed,
                    "took as {outcome:?} what decoding rejects ({error}): {shown}"
                );
                self.skipped.push((shown.clone(), error.to_string()));
            }
        }
        self.stream_sequence += 1;
        let subject = format!("events.{}", T::ENTITY);
        let message = Message::new(self.stream_sequence, &subject, bytes);
        for (name, batch) in [
            (
                "memory",
                self.memory
                    .apply_batch(std::slice::from_ref(&message))
                    .expect("the memory store commits"),
            ),
            (
                "typed memory",
                self.typed
                    .apply_batch(std::slice::from_ref(&message))
                    .expect("the typed memory store commits"),
            ),
            (
                "sqlite",
                self.sqlite
                    .apply_batch(std::slice::from_ref(&message))
                    .expect("the SQLite store commits"),
            ),
        ] {
            let got = match (batch.applied.as_slice(), batch.parked.as_slice()) {
                ([(_, outcome)], []) => Ok(*outcome),
                ([], [_]) => Err(()),
                other => panic!("{name}: one message, {other:?}"),
            };
            assert_eq!(
                got,
                replica.as_ref().map(|o| *o).map_err(|_| ()),
                "{name} against Replica on {shown}"
            );
        }
        self.assert_same(&shown);
        replica
    }

    /// Every consumer holds what the reference holds.
    fn assert_same(&self, shown: &str) {
        let expected = contents(&self.reference);
        assert_eq!(contents(&self.replica), expected, "Replica after {shown}");
        let routed = self.router.replica::<T>().expect("routed");
        if self.router_deeper.is_empty() {
            assert_eq!(contents(routed), expected, "Router after {shown}");
        }
        for (name, durable) in [
            ("memory", self.memory.replica()),
            ("typed memory", self.typed.replica()),
            ("sqlite", self.sqlite.replica()),
        ] {
            assert_eq!(contents(durable), expected, "{name} after {shown}");
            assert_eq!(
                durable.stats(),
                self.replica.stats(),
                "{name}'s counts after {shown}"
            );
        }
        // A router counts, in its replica, what it routes to it (not what
        // it rejects).
        let outcomes = |stats: ecst::ApplyStats| {
            [
                stats.inserted,
                stats.updated,
                stats.deleted,
                stats.duplicates,
                stats.stale,
            ]
        };
        if self.router_deeper.is_empty() {
            assert_eq!(
                outcomes(routed.stats()),
                outcomes(self.replica.stats()),
                "Router's counts after {shown}"
            );
        }
    }

    fn contents(&self) -> Contents {
        contents(&self.replica)
    }
}

/// An error's message without serde_json's position (which a router,
/// reading `data` on its own, counts from `data`).
fn message(error: &ecst::DecodeError) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Per key, the sequence and the state's JSON (`None`: a tombstone).
fn contents<T: StateEvent>(replica: &Replica<T>) -> Contents {
    replica
        .entries()
        .map(|(key, entry)| {
            let value = match entry {
                Entry::Live { sequence, state } => (
                    sequence.to_string(),
                    Some(serde_json::to_string(state).expect("serializes")),
                ),
                Entry::Tombstone { sequence } => (sequence.to_string(), None),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// `{"id":"k","v":` + `levels - 1` nested arrays around `inner` + `}`:
/// `levels` deep in all.
fn deep(levels: usize, inner: &str) -> String {
    let arrays = levels - 1;
    format!(
        "{{\"id\":\"k\",\"v\":{}{inner}{}}}",
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

/// The same depth in objects: `{"a":{"a":...}}`.
fn deep_objects(levels: usize, inner: &str) -> String {
    let objects = levels - 1;
    format!(
        "{{\"id\":\"k\",\"v\":{}{inner}{}}}",
        "{\"a\":".repeat(objects),
        "}".repeat(objects)
    )
}

/// `data` texts for `Doc` (key `k`): valid ones in every shape the
/// readers treat differently, then invalid ones.
fn doc_attacks() -> Vec<(String, String)> {
    let brackets = "[{".repeat(200);
    let mut attacks: Vec<(String, String)> = vec![
        ("plain".into(), r#"{"id":"k","v":1}"#.into()),
        (
            "spaced".into(),
            " {\t\"id\" :\r\n\"k\" , \"v\" : [ 1 , { } , [ ] ] } ".into(),
        ),
        (
            "escaped key".into(),
            r#"{"id":"\u006b","v":"a\"b\\c\/d"}"#.into(),
        ),
        (
            "escaped field name".into(),
            r#"{"\u0069d":"k","v":2}"#.into(),
        ),
        ("float".into(), r#"{"id":"k","v":1.5}"#.into()),
        ("exponent".into(), r#"{"id":"k","v":1E2}"#.into()),
        ("negative zero".into(), r#"{"id":"k","v":-0}"#.into()),
        (
            "negative zero float".into(),
            r#"{"id":"k","v":-0.0}"#.into(),
        ),
        (
            "u64 max".into(),
            r#"{"id":"k","v":18446744073709551615}"#.into(),
        ),
        (
            "u64 max + 1".into(),
            r#"{"id":"k","v":18446744073709551616}"#.into(),
        ),
        (
            "i64 min".into(),
            r#"{"id":"k","v":-9223372036854775808}"#.into(),
        ),
        (
            "i64 min - 1".into(),
            r#"{"id":"k","v":-9223372036854775809}"#.into(),
        ),
        (
            "float out of range".into(),
            r#"{"id":"k","v":1e400}"#.into(),
        ),
        (
            "tiny float".into(),
            r#"{"id":"k","v":3.0261999441573203e-52}"#.into(),
        ),
        (
            "unicode".into(),
            "{\"id\":\"k\",\"v\":\"\u{e9}\u{1f600}\"}".into(),
        ),
        (
            "brackets in a string".into(),
            format!(r#"{{"id":"k","v":"{brackets}"}}"#),
        ),
        (
            "brackets in a key".into(),
            format!(r#"{{"id":"k","v":{{"{brackets}":[]}}}}"#),
        ),
        (
            "many siblings".into(),
            format!(r#"{{"id":"k","v":[{}[]]}}"#, "[],".repeat(200)),
        ),
        ("duplicate field".into(), r#"{"id":"k","v":1,"v":2}"#.into()),
        (
            "duplicate key in v".into(),
            r#"{"id":"k","v":{"a":1,"a":2}}"#.into(),
        ),
        (
            "unknown field".into(),
            r#"{"id":"k","v":1,"w":[[{"x":null}]]}"#.into(),
        ),
        ("other key".into(), r#"{"id":"j","v":1}"#.into()),
        ("not an object".into(), "[\"k\",1]".into()),
        ("wrong type".into(), r#"{"id":1,"v":1}"#.into()),
        ("missing field".into(), r#"{"id":"k"}"#.into()),
        ("null".into(), "null".into()),
        ("true".into(), "true".into()),
        ("string".into(), "\"k\"".into()),
        ("lone surrogate".into(), r#"{"id":"k","v":"\ud800"}"#.into()),
        (
            "private key".into(),
            r#"{"id":"k","v":{"$serde_json::private::RawValue":"[1,2]"}}"#.into(),
        ),
        // Invalid JSON.
        ("missing value".into(), r#"{"id":"k","v":}"#.into()),
        (
            "trailing comma in array".into(),
            r#"{"id":"k","v":[1,]}"#.into(),
        ),
        (
            "trailing comma in object".into(),
            r#"{"id":"k","v":1,}"#.into(),
        ),
        ("leading zero".into(), r#"{"id":"k","v":01}"#.into()),
        ("bare minus".into(), r#"{"id":"k","v":-}"#.into()),
        ("dot without digits".into(), r#"{"id":"k","v":1.}"#.into()),
        (
            "exponent without digits".into(),
            r#"{"id":"k","v":1e}"#.into(),
        ),
        ("plus sign".into(), r#"{"id":"k","v":+1}"#.into()),
        ("truncated literal".into(), r#"{"id":"k","v":tru}"#.into()),
        ("literal run on".into(), r#"{"id":"k","v":truex}"#.into()),
        ("nul".into(), "nul".into()),
        ("null then more".into(), "null null".into()),
        ("bad escape".into(), r#"{"id":"k","v":"\x"}"#.into()),
        (
            "short unicode escape".into(),
            r#"{"id":"k","v":"\u12"}"#.into(),
        ),
        (
            "control character".into(),
            "{\"id\":\"k\",\"v\":\"a\tb\"}".into(),
        ),
        (
            "unterminated string".into(),
            r#"{"id":"k","v":"abc}"#.into(),
        ),
        ("single quotes".into(), "{'id':'k','v':1}".into()),
        ("unquoted key".into(), r#"{id:"k","v":1}"#.into()),
        ("missing colon".into(), r#"{"id" "k","v":1}"#.into()),
        ("missing comma".into(), r#"{"id":"k" "v":1}"#.into()),
        ("mismatched brackets".into(), r#"{"id":"k","v":[1}]"#.into()),
        ("unclosed array".into(), r#"{"id":"k","v":[1,2}"#.into()),
        ("extra closing".into(), r#"{"id":"k","v":1}}"#.into()),
        (
            "two values".into(),
            r#"{"id":"k","v":1} {"id":"k","v":1}"#.into(),
        ),
        ("comment".into(), r#"{"id":"k","v":1/*x*/}"#.into()),
        ("NaN".into(), r#"{"id":"k","v":NaN}"#.into()),
        ("empty".into(), String::new()),
        ("form feed".into(), "{\"id\":\"k\",\"v\":1\u{c}}".into()),
        ("BOM".into(), "\u{feff}{\"id\":\"k\",\"v\":1}".into()),
        (
            "brackets in a string, unterminated".into(),
            format!(r#"{{"id":"k","v":"{brackets}}}"#),
        ),
    ];
    // Nesting around the payload reader's limit (it gives up at 64) and
    // serde_json's (128 levels, one of them the envelope's when read in
    // place).
    for levels in [62, 63, 64, 65, 125, 126, 127, 128, 129, 200] {
        attacks.push((format!("{levels} levels of arrays"), deep(levels, "1")));
        attacks.push((
            format!("{levels} levels of objects"),
            deep_objects(levels, "1"),
        ));
        attacks.push((
            format!("{levels} levels, a float inside"),
            deep(levels, "1.5"),
        ));
        attacks.push((
            format!("{levels} levels, an escape inside"),
            deep(levels, "\"\\n\""),
        ));
        attacks.push((format!("{levels} levels, unclosed"), {
            let mut text = deep(levels, "1");
            text.truncate(text.len() - 2);
            text.push('}');
            text
        }));
        attacks.push((
            format!("{levels} levels, a syntax error inside"),
            deep(levels, "1,"),
        ));
    }
    attacks
}

/// Runs `events` through a fresh set of consumers, in order (each checked
/// as it goes); returns the final contents.
fn run<T: StateEvent + Clone>(events: &[&Vec<u8>]) -> Contents {
    let mut consumers = Consumers::<T>::new();
    for bytes in events {
        let _ = consumers.apply(bytes);
    }
    consumers.contents()
}

/// A stale upsert (a lower sequence than the state held, or a tie with a
/// tombstone) carrying each attack as `data`, in every layout: every
/// consumer gets what decoding it whole gives, or, for well-formed JSON,
/// `Stale`; never `Stale` for invalid JSON; every consumer keeps the state.
#[test]
fn stale_upserts_carrying_every_attack() {
    let held = event(
        "doc",
        "k",
        5,
        Some(r#"{"id":"k","v":"held"}"#),
        Layout::Last,
    );
    let delete = event("doc", "k", 5, None, Layout::Last);
    let mut stale = 0;
    let mut rejected = 0;
    for (name, data) in doc_attacks() {
        let invalid_json = serde_json::from_str::<&RawValue>(&data).is_err();
        for layout in LAYOUTS {
            for (first, sequence) in [(&held, 3), (&delete, 5), (&delete, 4)] {
                let mut consumers = Consumers::<Doc>::new();
                consumers.apply(first).expect("valid");
                let bytes = event("doc", "k", sequence, Some(&data), layout);
                let got = consumers.apply(&bytes);
                match &got {
                    Ok(Outcome::Stale) => stale += 1,
                    Err(_) => rejected += 1,
                    other => panic!("{name} ({layout:?}): {other:?}"),
                }
                if invalid_json {
                    assert!(got.is_err(), "{name} ({layout:?}) taken: {got:?}");
                }
            }
        }
    }
    assert!(
        stale > 100 && rejected > 100,
        "{stale} stale, {rejected} rejected"
    );
}

/// Each attack as the `data` of a new state (then redelivered, in every
/// layout), and as a rival at the held state's sequence (a tie, decided by
/// comparing serializations), in every layout: every consumer gets what
/// decoding it whole gives.
#[test]
fn new_states_and_rivals_carrying_every_attack() {
    let held = event(
        "doc",
        "k",
        5,
        Some(r#"{"id":"k","v":"held"}"#),
        Layout::Last,
    );
    for (name, data) in doc_attacks() {
        for layout in LAYOUTS {
            let mut fresh = Consumers::<Doc>::new();
            let inserted = fresh.apply(&event("doc", "k", 5, Some(&data), layout));
            let mut consumers = Consumers::<Doc>::new();
            consumers.apply(&held).expect("valid");
            let newer = consumers.apply(&event("doc", "k", 7, Some(&data), layout));
            assert_eq!(
                inserted.is_ok(),
                newer.is_ok(),
                "{name} ({layout:?}): {inserted:?} {newer:?}"
            );
            let mut consumers = Consumers::<Doc>::new();
            consumers.apply(&held).expect("valid");
            let rival = consumers.apply(&event("doc", "k", 5, Some(&data), layout));
            assert_eq!(
                inserted.is_ok(),
                rival.is_ok(),
                "{name} ({layout:?}): {inserted:?} {rival:?}"
            );
            // The same event again, and its data in every other layout:
            // what decoding finds (a duplicate, or the tie-break).
            for again in LAYOUTS {
                let _ = fresh.apply(&event("doc", "k", 5, Some(&data), again));
            }
            assert!(fresh.skipped.is_empty(), "{name}: {:?}", fresh.skipped);
        }
    }
}

/// The held state's own text redelivered at its sequence (taken unread by
/// the scanner, then counted for brackets), for states whose text is
/// shallow but full of brackets, as deep as the payload reader reads, and
/// deeper: a duplicate in every layout, as decoding finds.
#[test]
fn redeliveries_of_bracket_heavy_and_deep_states() {
    let brackets = "[{".repeat(200);
    let mut states = vec![
        format!(r#"{{"id":"k","v":"{brackets}"}}"#),
        format!(r#"{{"id":"k","v":{{"{brackets}":"]}}"}}}}"#),
        format!(r#"{{"id":"k","v":[{}[]]}}"#, "[],".repeat(200)),
    ];
    for levels in [62, 63, 64, 65, 126, 127] {
        states.push(deep(levels, "1"));
        states.push(deep_objects(levels, "\"[[[\""));
    }
    for state in &states {
        let canonical =
            serde_json::to_string(&serde_json::from_str::<Doc>(state).expect("a state"))
                .expect("serializes");
        assert_eq!(&canonical, state, "written as ecst writes it");
        for first_layout in LAYOUTS {
            for layout in LAYOUTS {
                let mut consumers = Consumers::<Doc>::new();
                let first = consumers.apply(&event("doc", "k", 5, Some(state), first_layout));
                let again = consumers.apply(&event("doc", "k", 5, Some(state), layout));
                match (&first, &again) {
                    (Ok(Outcome::Inserted), Ok(Outcome::Duplicate)) => {}
                    // Held from `data` read on its own (one level more
                    // allowed), then read in place: too deep, as decoding
                    // finds (checked against it by `apply`).
                    (Ok(Outcome::Inserted), Err(error))
                        if error.ends_with("recursion limit exceeded") => {}
                    (Err(_), _) => {}
                    other => panic!("{first_layout:?} then {layout:?}: {other:?}: {state}"),
                }
            }
        }
    }
}

/// For each attack, a set of events on one key (the attack at the held
/// sequence, below it and above it; a plain state; a delete) delivered in
/// every order and layout: every order ends with the same contents.
#[test]
fn every_delivery_order_ends_the_same() {
    let plain = r#"{"id":"k","v":"held"}"#;
    let picked = [
        "plain",
        "spaced",
        "escaped key",
        "float out of range",
        "brackets in a string",
        "many siblings",
        "duplicate field",
        "lone surrogate",
        "other key",
        "trailing comma in array",
        "63 levels of arrays",
        "64 levels of objects",
        "64 levels, an escape inside",
        "126 levels of arrays",
        "127 levels of arrays",
        "127 levels, a float inside",
        "128 levels of objects",
    ];
    let attacks: Vec<(String, String)> = doc_attacks()
        .into_iter()
        .filter(|(name, _)| picked.contains(&name.as_str()))
        .collect();
    assert_eq!(attacks.len(), picked.len());
    for (name, data) in &attacks {
        for layout in [Layout::Last, Layout::First] {
            let events = [
                event("doc", "k", 5, Some(plain), Layout::Last),
                event("doc", "k", 5, Some(data), layout),
                event("doc", "k", 3, Some(data), layout),
                event("doc", "k", 6, None, Layout::Last),
                event("doc", "k", 6, Some(data), layout),
            ];
            let mut ends = BTreeMap::new();
            for order in permutations(events.len()) {
                let ordered: Vec<&Vec<u8>> = order.iter().map(|&i| &events[i]).collect();
                let end = run::<Doc>(&ordered);
                ends.entry(end).or_insert(order);
            }
            assert_eq!(ends.len(), 1, "{name} ({layout:?}): {ends:#?}");
        }
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            out.push(order);
        }
    }
    out
}

/// A state that keeps part of its data as a `RawValue` (read by the
/// payload reader since it hands `RawValue` over): its text, whitespace
/// and escapes included, is kept as written, by every consumer and store;
/// ties between spellings of one value are decided the same in every
/// order; stale ones are refused.
#[test]
fn raw_value_states() {
    let raws = [
        "1",
        " [1, 2] ",
        "[1,2]",
        "{\"a\" : \"b\"}",
        "\"\\u0041\"",
        "\"A\"",
        "-0",
        "1.50",
        "null",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "[1,]",
        "\"\\ud800\"",
        "01",
    ];
    let data = |raw: &str| format!(r#"{{"id":"k","raw":{raw}}}"#);
    for raw in raws {
        for layout in LAYOUTS {
            let mut consumers = Consumers::<RawDoc>::new();
            let got = consumers.apply(&event("rawdoc", "k", 5, Some(&data(raw)), layout));
            if got.is_ok() {
                let held = consumers.replica.get("k").expect("held");
                assert_eq!(held.raw.get(), raw.trim(), "{layout:?}");
                // Its text again: a duplicate; stale: refused.
                let text = serde_json::to_string(held).expect("serializes");
                assert_eq!(
                    consumers.apply(&event("rawdoc", "k", 5, Some(&text), layout)),
                    Ok(Outcome::Duplicate)
                );
                assert_eq!(
                    consumers.apply(&event("rawdoc", "k", 4, Some(&data(raw)), layout)),
                    Ok(Outcome::Stale)
                );
            }
        }
    }
    // Rivals at one sequence: spellings of one value, in every order.
    let rivals: Vec<Vec<u8>> = ["[1,2]", " [1, 2] ", "[1, 2]", "\"\\u0041\"", "\"A\""]
        .iter()
        .zip(LAYOUTS.iter().cycle())
        .map(|(raw, layout)| event("rawdoc", "k", 5, Some(&data(raw)), *layout))
        .collect();
    let mut ends = BTreeMap::new();
    for order in permutations(rivals.len()) {
        let ordered: Vec<&Vec<u8>> = order.iter().map(|&i| &rivals[i]).collect();
        let end = run::<RawDoc>(&ordered);
        ends.entry(end).or_insert(order);
    }
    assert_eq!(ends.len(), 1, "{ends:#?}");
}

/// Typed fields at their edges, stale and fresh, in every layout: every
/// consumer gets what decoding gives, and a stale event is `Stale` only
/// for well-formed JSON.
#[test]
fn typed_fields_at_their_edges() {
    let fields = [
        r#""f":1,"i":-1,"u":1,"list":[]"#,
        r#""f":1.0,"i":-9223372036854775808,"u":18446744073709551615,"list":[null,"a"]"#,
        r#""f":-0,"i":0,"u":0,"list":[]"#,
        r#""f":1e308,"i":9223372036854775807,"u":0,"list":[]"#,
        r#""f":1e309,"i":0,"u":0,"list":[]"#,
        r#""f":1,"i":-9223372036854775809,"u":0,"list":[]"#,
        r#""f":1,"i":0,"u":18446744073709551616,"list":[]"#,
        r#""f":1,"i":0,"u":-1,"list":[]"#,
        r#""f":1,"i":0,"u":1.0,"list":[]"#,
        r#""f":1,"i":0,"u":1,"list":[1]"#,
        r#""f":"1","i":0,"u":1,"list":[]"#,
        r#""f":1,"i":0,"u":1,"list":["\ud83d\ude00"]"#,
        r#""f":1,"i":0,"u":1,"list":["\udc00"]"#,
        r#""f":1,"i":0,"u":1,"list":[],"f":2"#,
        r#""f":1,"i":0,"u":1,"list":[],"extra":[[[[]]]]"#,
        r#""f":1,"i":0,"u":1,"list":[,]"#,
        r#""f":1,"i":00,"u":1,"list":[]"#,
    ];
    let held = event(
        "typed",
        "k",
        5,
        Some(r#"{"id":"k","f":0.5,"i":0,"u":0,"list":[]}"#),
        Layout::Last,
    );
    for body in fields {
        let data = format!(r#"{{"id":"k",{body}}}"#);
        let invalid_json = serde_json::from_str::<&RawValue>(&data).is_err();
        for layout in LAYOUTS {
            for sequence in [4, 5, 6] {
                let mut consumers = Consumers::<Typed>::new();
                consumers.apply(&held).expect("valid");
                let got = consumers.apply(&event("typed", "k", sequence, Some(&data), layout));
                if invalid_json {
                    assert!(got.is_err(), "{data} ({layout:?}) taken: {got:?}");
                }
            }
        }
    }
}

/// Non-UTF-8 inside the `data` of a stale upsert (in a string, in a key,
/// between tokens): rejected by every consumer, in every layout.
#[test]
fn non_utf8_in_stale_data_is_rejected() {
    let held = event(
        "doc",
        "k",
        5,
        Some(r#"{"id":"k","v":"held"}"#),
        Layout::Last,
    );
    for bad in [
        &[0xff][..],
        &[0xc3][..],
        &[0xed, 0xa0, 0x80][..],
        &[0xc0, 0xaf][..],
    ] {
        for place in 0..3 {
            let mut data = br#"{"id":"k","#.to_vec();
            match place {
                0 => {
                    data.extend_from_slice(br#""v":""#);
                    data.extend_from_slice(bad);
                    data.extend_from_slice(br#""}"#);
                }
                1 => {
                    data.extend_from_slice(br#""v":{""#);
                    data.extend_from_slice(bad);
                    data.extend_from_slice(br#"":1}}"#);
                }
                _ => {
                    data.extend_from_slice(br#""v":1"#);
                    data.extend_from_slice(bad);
                    data.extend_from_slice(b"}");
                }
            }
            for layout in LAYOUTS {
                let marker = "\u{1}DATA\u{1}";
                let template = event("doc", "k", 3, Some(marker), layout);
                let text = String::from_utf8(template).expect("UTF-8");
                let at = text.find(marker).expect("the marker");
                let mut bytes = text.as_bytes()[..at].to_vec();
                bytes.extend_from_slice(&data);
                bytes.extend_from_slice(&text.as_bytes()[at + marker.len()..]);
                let mut consumers = Consumers::<Doc>::new();
                consumers.apply(&held).expect("valid");
                assert!(consumers.apply(&bytes).is_err(), "{place} {layout:?}");
            }
        }
    }
}

/// A JSON-ish text: valid values nested to any depth, with tokens
/// (brackets, commas, escapes, numbers the payload reader gives up on)
/// spliced in at random, so that most are near-misses of valid JSON.
fn json_ish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("1".to_owned()),
        Just("-7".to_owned()),
        Just("-0".to_owned()),
        Just("1.5".to_owned()),
        Just("1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"a\"".to_owned()),
        Just("\"[{\"".to_owned()),
        Just("\"\\u0041\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
    ];
    let value = leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-c]", inner), 0..4).prop_map(|entries| {
                let body: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    let splice = prop_oneof![
        Just(""),
        Just(""),
        Just(""),
        Just(","),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just(":"),
        Just("\""),
        Just("\\"),
        Just(" \t\r\n"),
        Just("\u{1}"),
        Just("0"),
    ];
    (
        value,
        0usize..64,
        0usize..64,
        splice,
        prop_oneof![Just(0usize), 60usize..130],
    )
        .prop_map(|(value, at, cut, splice, depth)| {
            // Spliced at a character boundary; sometimes nested deep.
            let mut text = value;
            let at = at.min(text.len());
            let at = (0..=at)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.insert_str(at, splice);
            if cut == 0 {
                text.pop();
            }
            format!("{}{text}{}", "[".repeat(depth), "]".repeat(depth))
        })
}

fn layout() -> impl Strategy<Value = Layout> {
    proptest::sample::select(LAYOUTS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("ECST_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256)
    ))]

    /// Near-valid JSON under `v`, as the data of a stale upsert, a rival at
    /// the held sequence, and a newer state, in any layout: every consumer
    /// checked against decoding (see `Consumers::apply`); invalid JSON is
    /// never taken, stale or not.
    #[test]
    fn near_valid_json_in_any_role(v in json_ish(), layout in layout(), sequence in 3u64..8) {
        let data = format!(r#"{{"id":"k","v":{v}}}"#);
        let invalid_json = serde_json::from_str::<&RawValue>(&data).is_err();
        let mut consumers = Consumers::<Doc>::new();
        consumers
            .apply(&event("doc", "k", 5, Some(r#"{"id":"k","v":"held"}"#), Layout::Last))
            .expect("valid");
        let got = consumers.apply(&event("doc", "k", sequence, Some(&data), layout));
        if invalid_json {
            prop_assert!(got.is_err(), "{} ({:?}) taken: {:?}", data, layout, got);
        }
        // Redelivered, in another layout.
        let _ = consumers.apply(&event("doc", "k", sequence, Some(&data), Layout::Last));
    }
}
