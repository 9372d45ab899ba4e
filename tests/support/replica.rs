//! Sample entities and helpers shared by the replica, envelope and decoder
//! tests (`convergence.rs`, `envelope.rs`, `fuzz_decode.rs`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::num::TryFromIntError;

use ecst::{Replica, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A customer at schema version 2, with a history:
///
/// - v1: `{"id": String, "full_name": String, "credit": i64}`
/// - v2: `{"id": String, "name": String, "email": Option<String>, "credit": u64}`
///
/// The hop v1 -> v2 fails for a negative `credit` (an [`ecst::UpcastError`]).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(retyped(since = 2, from = i64, with = to_unsigned))]
    pub credit: u64,
}

fn to_unsigned(credit: i64) -> Result<u64, TryFromIntError> {
    u64::try_from(credit)
}

/// An order, version 1 only, keyed by a number (so that a `subject` can fail
/// to parse as the key).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub number: u64,
    pub total_cents: u64,
}

pub fn customer(id: &str, name: &str) -> Customer {
    Customer {
        id: id.into(),
        name: name.into(),
        email: Some(format!("{name}@example.com")),
        credit: 100,
    }
}

/// A JSON object written with its members in exactly the given order
/// (duplicates included), which `serde_json::json!` cannot do.
pub fn obj(members: &[(&str, Value)]) -> Vec<u8> {
    let mut out = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out.into_bytes()
}

/// The replica's full content (live states, tombstones, sequences) as
/// snapshot bytes, which are sorted by key and so comparable.
pub fn snapshot<T: StateEvent>(replica: &Replica<T>) -> Vec<u8> {
    let mut out = Vec::new();
    replica.write_snapshot(&mut out).expect("snapshot");
    out
}

/// The live entities of a replica, cloned.
pub fn live<T: StateEvent + Clone>(replica: &Replica<T>) -> HashMap<T::Key, T> {
    replica
        .iter()
        .map(|(key, state)| (key.clone(), state.clone()))
        .collect()
}
