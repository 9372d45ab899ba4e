//! Typed upcasting against decoding the current version directly, and against
//! the same upcast written by hand over `serde_json::Value`.
//!
//! `Account` is at version 3: `full_name` became `name` and `email` was added
//! at 2; `credit_limit_cents` was retyped from whole dollars (`u32`) and `fax`
//! was removed at 3. A version-1 payload therefore goes through two hops.
//!
//! - `v3_direct`: `Account::from_json_version(3, v3_bytes)`;
//! - `v1_upcast`: `Account::from_json_version(1, v1_bytes)` (typed `AccountV1`,
//!   then the generated hops 1->2->3);
//! - `v1_value_upcast`: `v1_bytes` parsed into a `serde_json::Value`, keys
//!   renamed/added/converted/removed by hand, then `serde_json::from_value`;
//! - `v1_obake_upcast`: the same history declared with `obake`: `v1_bytes`
//!   decoded into the generated version-1 struct, then its `From` hops to
//!   version 3 (the peer a Rust user would reach for).
//!
//! Run with `cargo bench -p ecst-benches --bench upcast`, then `python3 benches/ratios.py`.
//!
//! For instruction counts, `ECST_BENCH_ONCE=<function>` skips criterion and
//! calls that function 10,000 times (see `benches/decode_apply.rs`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "account", version = 3)]
#[state_event(removed(since = 3, field = "fax", ty = Option<String>))]
pub struct Account {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(retyped(since = 3, from = u32, with = dollars_to_cents))]
    pub credit_limit_cents: u64,
    pub phone: Option<String>,
    pub tier: Tier,
    pub active: bool,
    pub created_at_ms: u64,
    pub tags: Vec<String>,
    pub street: String,
    pub city: String,
}

fn dollars_to_cents(dollars: u32) -> Result<u64, std::convert::Infallible> {
    Ok(u64::from(dollars) * 100)
}

const V1: &str = r#"{"id":"acc-00012345","full_name":"Customer Number 12345 (rev 1)","credit_limit_cents":4500,"fax":"+44 20 7946 0999","phone":"+44 20 7946 2345","tier":"pro","active":true,"created_at_ms":1700012345000,"tags":["retail","newsletter","region-9"],"street":"346 Baker Street, Flat 26","city":"London"}"#;

const V3: &str = r#"{"id":"acc-00012345","name":"Customer Number 12345 (rev 1)","email":null,"credit_limit_cents":450000,"phone":"+44 20 7946 2345","tier":"pro","active":true,"created_at_ms":1700012345000,"tags":["retail","newsletter","region-9"],"street":"346 Baker Street, Flat 26","city":"London"}"#;

/// `Account`'s history as obake declares it: one struct, fields enabled per
/// version, `From` between consecutive versions.
#[obake::versioned]
#[obake(version("1.0.0"))]
#[obake(version("2.0.0"))]
#[obake(version("3.0.0"))]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ObakeAccount {
    pub id: String,
    #[obake(cfg("1.0.0"))]
    pub full_name: String,
    #[obake(cfg(">=2.0.0"))]
    pub name: String,
    #[obake(cfg(">=2.0.0"))]
    pub email: Option<String>,
    #[obake(cfg("<3.0.0"))]
    #[serde(rename = "credit_limit_cents")]
    pub credit_limit_dollars: u32,
    #[obake(cfg(">=3.0.0"))]
    pub credit_limit_cents: u64,
    #[obake(cfg("<3.0.0"))]
    pub fax: Option<String>,
    pub phone: Option<String>,
    pub tier: Tier,
    pub active: bool,
    pub created_at_ms: u64,
    pub tags: Vec<String>,
    pub street: String,
    pub city: String,
}

impl From<ObakeAccount!["1.0.0"]> for ObakeAccount!["2.0.0"] {
    fn from(v1: ObakeAccount!["1.0.0"]) -> Self {
        Self {
            id: v1.id,
            name: v1.full_name,
            email: None,
            credit_limit_dollars: v1.credit_limit_dollars,
            fax: v1.fax,
            phone: v1.phone,
            tier: v1.tier,
            active: v1.active,
            created_at_ms: v1.created_at_ms,
            tags: v1.tags,
            street: v1.street,
            city: v1.city,
        }
    }
}

impl From<ObakeAccount!["2.0.0"]> for ObakeAccount!["3.0.0"] {
    fn from(v2: ObakeAccount!["2.0.0"]) -> Self {
        Self {
            id: v2.id,
            name: v2.name,
            email: v2.email,
            credit_limit_cents: dollars_to_cents(v2.credit_limit_dollars).unwrap(),
            phone: v2.phone,
            tier: v2.tier,
            active: v2.active,
            created_at_ms: v2.created_at_ms,
            tags: v2.tags,
            street: v2.street,
            city: v2.city,
        }
    }
}

/// The obake peer: decode the version-1 struct, then its `From` hops.
#[inline(never)]
fn run_v1_obake_upcast(bytes: &[u8]) -> ObakeAccount {
    let v1: ObakeAccount!["1.0.0"] = serde_json::from_slice(bytes).unwrap();
    let v2: ObakeAccount!["2.0.0"] = v1.into();
    v2.into()
}

#[inline(never)]
fn run_v3_direct(bytes: &[u8]) -> Account {
    Account::from_json_version(3, bytes).unwrap()
}

#[inline(never)]
fn run_v1_upcast(bytes: &[u8]) -> Account {
    Account::from_json_version(1, bytes).unwrap()
}

/// What a hand-written upcaster over `Value` does for the same two hops.
#[inline(never)]
fn run_v1_value_upcast(bytes: &[u8]) -> Account {
    let mut value: Value = serde_json::from_slice(bytes).unwrap();
    let object = value.as_object_mut().unwrap();
    // 1 -> 2: `full_name` renamed to `name`, `email` added.
    let name = object.remove("full_name").unwrap();
    object.insert("name".to_owned(), name);
    object.insert("email".to_owned(), Value::Null);
    // 2 -> 3: dollars (u32) to cents (u64), `fax` removed.
    let dollars = object
        .get("credit_limit_cents")
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok())
        .unwrap();
    object.insert(
        "credit_limit_cents".to_owned(),
        Value::from(dollars_to_cents(dollars).unwrap()),
    );
    object.remove("fax");
    serde_json::from_value(value).unwrap()
}

fn bench(c: &mut Criterion) {
    let v1 = V1.as_bytes();
    let v3 = V3.as_bytes();
    let direct = Account::from_json_version(3, v3).unwrap();
    assert_eq!(Account::from_json_version(1, v1).unwrap(), direct);
    assert_eq!(run_v1_value_upcast(v1), direct);
    assert_eq!(serde_json::to_vec(&direct).unwrap(), v3);
    assert_eq!(
        serde_json::to_vec(&run_v1_obake_upcast(v1)).unwrap(),
        serde_json::to_vec(&direct).unwrap()
    );

    let mut group = c.benchmark_group("upcast");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("v3_direct", |b| b.iter(|| run_v3_direct(black_box(v3))));
    group.bench_function("v1_upcast", |b| b.iter(|| run_v1_upcast(black_box(v1))));
    group.bench_function("v1_value_upcast", |b| {
        b.iter(|| run_v1_value_upcast(black_box(v1)))
    });
    group.bench_function("v1_obake_upcast", |b| {
        b.iter(|| run_v1_obake_upcast(black_box(v1)))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(function) = std::env::var("ECST_BENCH_ONCE") {
        let run: fn(&[u8]) -> Account = match function.as_str() {
            "v3_direct" => run_v3_direct,
            "v1_upcast" => run_v1_upcast,
            "v1_value_upcast" => run_v1_value_upcast,
            "v1_obake_upcast" => {
                for _ in 0..10_000 {
                    drop(black_box(run_v1_obake_upcast(black_box(V1.as_bytes()))));
                }
                return;
            }
            other => panic!("unknown function `{other}`"),
        };
        let bytes = if function == "v3_direct" { V3 } else { V1 };
        for _ in 0..10_000 {
            drop(black_box(run(black_box(bytes.as_bytes()))));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
