//! Decoding CloudEvents envelopes and applying them to a replica, against
//! hand-written serde baselines over the very same bytes.
//!
//! Workload: 100k keys, one upsert each; 10% of the keys also get a newer
//! upsert that is delivered *before* the older one (the older one is then
//! stale), and 10% of the keys get their upsert delivered twice. The events
//! are shuffled with a seeded RNG, so every run (and every function in the
//! group) sees the same 120k events in the same order.
//!
//! - `ecst_replica`: `Replica::<Customer>::apply_json` per event;
//! - `serde_envelope_hashmap`: a derived serde struct for the same envelope
//!   bytes, `HashMap<String, (u64, Customer)>` with a sequence check;
//! - `serde_payload_hashmap`: the payload alone (no envelope) with the same
//!   map, so the envelope's own cost is visible;
//! - `serde_envelope_str_hashmap`: the envelope baseline with the input
//!   checked as UTF-8 once and read with `from_str` (as ecst reads it): the
//!   baseline the target is set against;
//! - `cloudevents_sdk_hashmap`: what a user of the `cloudevents-sdk` crate
//!   writes: `cloudevents::Event` from the JSON, the `sequence` extension
//!   and the `subject` read from it, `serde_json::from_value` of its data,
//!   then the same map.
//!
//! Run with `cargo bench -p ecst-benches --bench decode_apply`, then
//! `python3 benches/ratios.py` for the ratios of this very run. Each
//! iteration replays the whole workload into a fresh map; dropping the map is
//! not timed.
//!
//! `ECST_BENCH_ONCE=<function>[,<function>...] ECST_BENCH_REPEAT=<n>` skips
//! criterion and runs the functions in turn, `n` rounds, printing each one's
//! best time and the first one's time as a fraction of it: a steadier
//! measure than criterion's on a machine whose load changes between
//! functions. For instruction counts, `ECST_BENCH_ONCE=<function>` (one of
//! the names above) runs that function once over the workload:
//! `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*run_*' target/release/deps/decode_apply-<hash>`.

use std::collections::hash_map::{self, HashMap};
use std::hint::black_box;
use std::time::Duration;

#[path = "support/customer.rs"]
mod customer;

use criterion::{criterion_group, BatchSize, Criterion, SamplingMode};
use customer::{customer, Customer};
use ecst::{Outcome, Producer, Replica, Sequence, StateEvent};
use serde::Deserialize;

const KEYS: usize = 100_000;

/// SplitMix64: a tiny seeded generator, enough for a reproducible shuffle.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One event as delivered: the envelope, and for the payload-only baseline
/// the sequence (as a broker header would carry it) and the bare payload.
struct Event {
    envelope: Vec<u8>,
    sequence: u64,
    payload: Vec<u8>,
}

fn workload() -> Vec<Event> {
    let mut producer = Producer::<Customer>::new("urn:example:crm");
    // (key index, revision) in delivery order, before shuffling.
    let mut plan: Vec<(usize, u64)> = Vec::with_capacity(KEYS + KEYS / 5);
    for i in 0..KEYS {
        plan.push((i, 1));
        if i % 10 == 3 {
            plan.push((i, 2)); // out of order: forced before revision 1 below
        }
        if i % 10 == 7 {
            plan.push((i, 1)); // duplicate delivery
        }
    }
    let mut rng = SplitMix64(0x5EED_ECE5);
    for n in (1..plan.len()).rev() {
        plan.swap(n, rng.below(n + 1));
    }
    // Make the out-of-order keys really out of order: revision 2 first.
    let mut first_pos: HashMap<usize, usize> = HashMap::new();
    for pos in 0..plan.len() {
        let (key, rev) = plan[pos];
        if key % 10 != 3 {
            continue;
        }
        match first_pos.get(&key) {
            None => {
                first_pos.insert(key, pos);
            }
            Some(&earlier) if rev == 2 => plan.swap(earlier, pos),
            Some(_) => {}
        }
    }

    // Encode every distinct (key, revision) once, through the producer, in
    // revision order (the producer insists on increasing sequences).
    let mut encoded: HashMap<(usize, u64), (Vec<u8>, Vec<u8>)> = HashMap::new();
    for i in 0..KEYS {
        let revisions: &[u64] = if i % 10 == 3 { &[1, 2] } else { &[1] };
        for &rev in revisions {
            let state = customer(i, rev);
            let payload = serde_json::to_vec(&state).unwrap();
            let envelope = producer
                .upsert_at(state, Sequence::new(rev))
                .unwrap()
                .to_json()
                .unwrap();
            encoded.insert((i, rev), (envelope, payload));
        }
    }
    plan.into_iter()
        .map(|(i, rev)| {
            let (envelope, payload) = encoded[&(i, rev)].clone();
            Event {
                envelope,
                sequence: rev,
                payload,
            }
        })
        .collect()
}

/// The hand-written baseline: a plain derived struct for the same envelope.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Env {
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    subject: String,
    sequence: String,
    schemaversion: u32,
    operation: String,
    data: Option<Customer>,
}

type Baseline = HashMap<String, (u64, Customer)>;

/// Same version gate as the replica: apply only a higher sequence.
fn gate(map: &mut Baseline, key: String, sequence: u64, state: Customer) -> Outcome {
    match map.entry(key) {
        hash_map::Entry::Vacant(vacant) => {
            vacant.insert((sequence, state));
            Outcome::Inserted
        }
        hash_map::Entry::Occupied(mut occupied) => {
            let held = occupied.get().0;
            if sequence < held {
                Outcome::Stale
            } else if sequence == held {
                Outcome::Duplicate
            } else {
                *occupied.get_mut() = (sequence, state);
                Outcome::Updated
            }
        }
    }
}

#[inline(never)]
fn run_ecst(events: &[Event]) -> Replica<Customer> {
    let mut replica = Replica::<Customer>::new();
    for event in events {
        black_box(replica.apply_json(black_box(&event.envelope)).unwrap());
    }
    replica
}

#[inline(never)]
fn run_serde_envelope(events: &[Event]) -> Baseline {
    let mut map = Baseline::new();
    for event in events {
        let env: Env = serde_json::from_slice(black_box(&event.envelope)).unwrap();
        let sequence: u64 = env.sequence.parse().unwrap();
        let state = env.data.unwrap();
        black_box(gate(&mut map, env.subject, sequence, state));
    }
    map
}

/// `run_serde_envelope` with the input checked as UTF-8 once up front and
/// read with `from_str`, the trick ecst itself uses (`from_slice` checks
/// every string it reads on its own): the best a hand-written reader gets.
#[inline(never)]
fn run_serde_envelope_str(events: &[Event]) -> Baseline {
    let mut map = Baseline::new();
    for event in events {
        let text = std::str::from_utf8(black_box(&event.envelope)).unwrap();
        let env: Env = serde_json::from_str(text).unwrap();
        let sequence: u64 = env.sequence.parse().unwrap();
        let state = env.data.unwrap();
        black_box(gate(&mut map, env.subject, sequence, state));
    }
    map
}

/// The `cloudevents-sdk` peer: the SDK's `Event` (which holds `data` as a
/// `serde_json::Value`), then the state from that value.
#[inline(never)]
fn run_cloudevents(events: &[Event]) -> Baseline {
    use cloudevents::event::{AttributesReader, Data, ExtensionValue};
    let mut map = Baseline::new();
    for event in events {
        let mut ce: cloudevents::Event =
            serde_json::from_slice(black_box(&event.envelope)).unwrap();
        let sequence: u64 = match ce.extension("sequence") {
            Some(ExtensionValue::String(text)) => text.parse().unwrap(),
            Some(ExtensionValue::Integer(n)) => u64::try_from(*n).unwrap(),
            other => panic!("no sequence: {other:?}"),
        };
        let key = ce.subject().unwrap().to_owned();
        let state: Customer = match ce.take_data().2 {
            Some(Data::Json(value)) => serde_json::from_value(value).unwrap(),
            other => panic!("no JSON data: {other:?}"),
        };
        black_box(gate(&mut map, key, sequence, state));
    }
    map
}

#[inline(never)]
fn run_serde_payload(events: &[Event]) -> Baseline {
    let mut map = Baseline::new();
    for event in events {
        let state: Customer = serde_json::from_slice(black_box(&event.payload)).unwrap();
        let key = state.id.clone();
        black_box(gate(&mut map, key, event.sequence, state));
    }
    map
}

fn check(events: &[Event]) {
    let replica = run_ecst(events);
    let stats = replica.stats();
    assert_eq!(stats.inserted, KEYS as u64);
    assert_eq!(stats.updated, 0);
    assert_eq!(stats.stale, KEYS as u64 / 10);
    assert_eq!(stats.duplicates, KEYS as u64 / 10);
    let a = run_serde_envelope(events);
    let b = run_serde_payload(events);
    assert_eq!(run_serde_envelope_str(events), a);
    assert_eq!(run_cloudevents(events), a);
    assert_eq!(a.len(), KEYS);
    for (key, (seq, state)) in &a {
        let entry = replica.entry(key.as_str()).unwrap();
        assert_eq!(entry.sequence().get(), *seq);
        assert_eq!(replica.get(key.as_str()), Some(state));
        assert_eq!(b.get(key), Some(&(*seq, state.clone())));
    }
    let envelope_bytes: usize = events.iter().map(|e| e.envelope.len()).sum();
    let payload_bytes: usize = events.iter().map(|e| e.payload.len()).sum();
    eprintln!(
        "decode_apply: {} events, mean envelope {} bytes, mean payload {} bytes",
        events.len(),
        envelope_bytes / events.len(),
        payload_bytes / events.len()
    );
}

fn bench(c: &mut Criterion) {
    let events = workload();
    check(&events);
    assert_eq!(Customer::VERSION, 1);

    let mut group = c.benchmark_group("decode_apply");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("ecst_replica", |b| {
        b.iter_batched(|| (), |()| run_ecst(&events), BatchSize::PerIteration)
    });
    group.bench_function("serde_envelope_hashmap", |b| {
        b.iter_batched(
            || (),
            |()| run_serde_envelope(&events),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("serde_envelope_str_hashmap", |b| {
        b.iter_batched(
            || (),
            |()| run_serde_envelope_str(&events),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cloudevents_sdk_hashmap", |b| {
        b.iter_batched(
            || (),
            |()| run_cloudevents(&events),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("serde_payload_hashmap", |b| {
        b.iter_batched(
            || (),
            |()| run_serde_payload(&events),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(functions) = std::env::var("ECST_BENCH_ONCE") {
        let events = workload();
        let repeat: u32 = std::env::var("ECST_BENCH_REPEAT")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let functions: Vec<&str> = functions.split(',').collect();
        let mut best = vec![Duration::MAX; functions.len()];
        // Round-robin, so that a change of load hits every function alike;
        // the best of the rounds is the least disturbed.
        for _ in 0..repeat {
            for (function, best) in functions.iter().zip(&mut best) {
                // The time to fill the map; dropping it is not timed.
                fn timed<R>(run: impl FnOnce() -> R) -> Duration {
                    let started = std::time::Instant::now();
                    let filled = black_box(run());
                    let elapsed = started.elapsed();
                    drop(filled);
                    elapsed
                }
                let elapsed = match *function {
                    "ecst_replica" => timed(|| run_ecst(&events)),
                    "serde_envelope_hashmap" => timed(|| run_serde_envelope(&events)),
                    "serde_envelope_str_hashmap" => timed(|| run_serde_envelope_str(&events)),
                    "serde_payload_hashmap" => timed(|| run_serde_payload(&events)),
                    "cloudevents_sdk_hashmap" => timed(|| run_cloudevents(&events)),
                    other => panic!("unknown function `{other}`"),
                };
                *best = (*best).min(elapsed);
            }
        }
        if repeat > 1 {
            let first = best[0].as_secs_f64();
            for (function, best) in functions.iter().zip(&best) {
                eprintln!(
                    "{function}: best of {repeat} {best:.3?}; {} / {function} = {:.3}",
                    functions[0],
                    first / best.as_secs_f64().max(f64::MIN_POSITIVE),
                );
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
