//! Entities shared by the version gate's tests (`gated_decode.rs`,
//! `redteam_inplace.rs`, `depth_limit.rs`, `redteam_rawskip.rs`).

#![allow(dead_code)]

use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version 2, with an upcast from version 1 that fails for a negative
/// credit; FORWARD, so version 3 is read as version 2.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 2, compatibility = "FORWARD")]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(retyped(since = 2, from = i64, with = to_unsigned))]
    pub credit: u64,
}

fn to_unsigned(credit: i64) -> Result<u64, std::num::TryFromIntError> {
    u64::try_from(credit)
}

/// Any JSON under `v`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "doc", version = 1)]
pub struct Doc {
    #[state_event(key)]
    pub id: String,
    pub v: serde_json::Value,
}
