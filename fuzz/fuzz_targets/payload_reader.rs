//! The payload reader (`ecst::envelope::payload`) against serde_json, from
//! arbitrary bytes (as text, when they are UTF-8).
//!
//! Invariants: nothing panics; whenever the payload reader reads a value,
//! serde_json reads the same text into the same type, and gets the same
//! value. Targets: `serde_json::Value`, an entity-like struct (`Option`,
//! `Vec<String>`, a unit enum, `u64`, `bool`, `#[serde(default)]`, a
//! renamed field, a nested struct, a `HashMap<String, i64>`, an enum with
//! data), the bench's customer, borrowed strings, maps with enum keys,
//! integers of every width, `char`, `()` and `IgnoredAny`.
#![no_main]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use ecst::envelope::payload;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum Tier {
    Free,
    Pro,
    Enterprise,
}

#[derive(Deserialize, Debug, PartialEq)]
enum Shape {
    Point,
    Circle(u32),
    Pair(i64, bool),
    Rect { w: u64, h: u64 },
}

#[derive(Deserialize, Debug, PartialEq)]
struct Address {
    street: String,
    city: Option<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Account {
    id: String,
    #[serde(rename = "fullName")]
    name: String,
    email: Option<String>,
    tags: Vec<String>,
    tier: Tier,
    credit: u64,
    active: bool,
    #[serde(default)]
    note: String,
    address: Address,
    limits: HashMap<String, i64>,
    #[serde(default)]
    shape: Option<Shape>,
}

/// The benchmarks' customer (`benches/support/customer.rs`).
#[derive(Deserialize, Debug, PartialEq)]
struct Customer {
    id: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    tier: Tier,
    active: bool,
    credit_limit_cents: u64,
    created_at_ms: u64,
    tags: Vec<String>,
    street: String,
    city: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Borrowing<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow)]
    city: Cow<'a, str>,
}

fn agree<'de, T: Deserialize<'de> + Debug + PartialEq>(text: &'de str) {
    if let Ok(value) = payload::from_str::<T>(text) {
        match serde_json::from_str::<T>(text) {
            Ok(expected) => assert_eq!(value, expected, "{text:?}"),
            Err(e) => panic!("read {value:?} where serde_json fails ({e}): {text:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    agree::<Value>(text);
    agree::<Account>(text);
    agree::<Customer>(text);
    agree::<Option<Customer>>(text);
    agree::<Address>(text);
    agree::<String>(text);
    agree::<&str>(text);
    agree::<Cow<str>>(text);
    agree::<Borrowing>(text);
    agree::<HashMap<String, i64>>(text);
    agree::<BTreeMap<Tier, u32>>(text);
    agree::<Vec<u64>>(text);
    agree::<Vec<i8>>(text);
    agree::<Vec<i64>>(text);
    agree::<(u8, u16, u32, i16, i32)>(text);
    agree::<Vec<Option<bool>>>(text);
    agree::<Vec<f64>>(text);
    agree::<Vec<char>>(text);
    agree::<Vec<Shape>>(text);
    agree::<Vec<Tier>>(text);
    agree::<()>(text);
    agree::<IgnoredAny>(text);
    agree_raw(text);
});

/// serde_json's `RawValue` (what the version gate reads a refused `data`
/// as): the same text as serde_json's, wherever the reader reads one.
fn agree_raw(text: &str) {
    if let Ok(raw) = payload::from_str::<Option<&RawValue>>(text) {
        match serde_json::from_str::<Option<&RawValue>>(text) {
            Ok(expected) => assert_eq!(raw.map(RawValue::get), expected.map(RawValue::get)),
            Err(e) => panic!("read {raw:?} where serde_json fails ({e}): {text:?}"),
        }
    }
}
