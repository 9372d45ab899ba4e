//! Heap bytes held by a `Replica<T>` of N keys against the plainest map a
//! consumer would write by hand, `HashMap<Key, (u64, T)>` (the sequence and
//! the state), holding the very same states. Target: the replica at most
//! 1.05x the map.
//!
//! Measured with a counting global allocator (`stats_alloc`, no unsafe code
//! here): each container is built, then dropped, and the bytes its drop
//! gives back are the bytes it held (what it asked the allocator for: the
//! table of entries and control bytes, and every key's and state's own
//! heap data; malloc's per-allocation overhead is not counted, and is the
//! same on both sides since both make the same allocations).
//!
//! Both are built the same way, by inserting N keys one at a time into an
//! empty container (so both tables grow to the same number of buckets),
//! and the states are made by the same function, so their strings have the
//! same capacities. The replica is built with `Replica::apply` of the
//! producer's envelopes (sequence 1..=N), as a consumer's replica is.
//!
//! Three entities: `Customer`, the benches' ~11-field entity (strings on the
//! heap dominate, ~600 bytes per state); `Reading`, a small one (a key and
//! a number), where the per-entry overhead of the table shows in full; and
//! `Tally`, integers only (no heap data at all, and no spare bit pattern
//! in the state for the slot's enum tag to use).
//!
//! Run with `cargo bench -p ecst-benches --bench memory` (prints a table;
//! not a criterion bench: nothing is timed).

#![forbid(unsafe_code)]

#[path = "support/customer.rs"]
mod customer;

use std::alloc::System;
use std::collections::HashMap;
use std::hint::black_box;

use customer::{customer, Customer};
use ecst::{Producer, Replica, StateEvent};
use serde::{Deserialize, Serialize};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The sizes measured.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// The target ratio, replica bytes / map bytes.
const TARGET: f64 = 1.05;

/// A small entity: the per-entry cost of the table is most of its size.
#[derive(StateEvent, Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "reading", version = 1)]
struct Reading {
    #[state_event(key)]
    sensor: String,
    value: u64,
}

fn reading(i: usize, _revision: u64) -> Reading {
    Reading {
        sensor: format!("sensor-{i:08}"),
        value: i as u64 * 7,
    }
}

/// Bytes given back to the allocator by dropping `value`: the heap bytes it
/// held.
fn held_by<V>(value: V) -> usize {
    let region = Region::new(GLOBAL);
    drop(black_box(value));
    let change = region.change();
    let freed = change.bytes_deallocated as isize
        - change.bytes_allocated as isize
        - change.bytes_reallocated;
    usize::try_from(freed).unwrap_or(0)
}

/// A replica of `n` keys, each applied once through `Replica::apply`.
fn replica<T: StateEvent>(n: usize, state: fn(usize, u64) -> T) -> Replica<T> {
    let mut producer = Producer::<T>::new("urn:example:bench");
    let mut replica = Replica::new();
    for i in 0..n {
        let envelope = producer.upsert(state(i, 1)).unwrap();
        replica.apply(envelope);
    }
    assert_eq!(replica.len(), n);
    replica
}

/// The same states in the hand-written map, keyed as the replica keys them.
fn map<T: StateEvent>(n: usize, state: fn(usize, u64) -> T) -> HashMap<T::Key, (u64, T)> {
    let mut map = HashMap::new();
    for i in 0..n {
        let state = state(i, 1);
        map.insert(state.key().clone(), (i as u64 + 1, state));
    }
    assert_eq!(map.len(), n);
    map
}

fn measure<T: StateEvent>(name: &str, state: fn(usize, u64) -> T) {
    for n in SIZES {
        let replica_bytes = held_by(replica(n, state));
        let map_bytes = held_by(map(n, state));
        let ratio = replica_bytes as f64 / map_bytes as f64;
        println!(
            "memory {name}/{n}: Replica {replica_bytes} B ({:.1} B/key), HashMap<Key, (u64, T)> \
             {map_bytes} B ({:.1} B/key): {ratio:.3}x (+{:.1} B/key){}",
            replica_bytes as f64 / n as f64,
            map_bytes as f64 / n as f64,
            (replica_bytes as f64 - map_bytes as f64) / n as f64,
            if ratio <= TARGET {
                ""
            } else {
                " -- over the 1.05x target"
            },
        );
    }
    println!(
        "memory {name}: size_of (Key, (u64, T)) = {} B per table entry",
        std::mem::size_of::<(T::Key, (u64, T))>()
    );
}

/// An entity of integers only.
#[derive(StateEvent, Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "tally", version = 1)]
struct Tally {
    #[state_event(key)]
    counter: u64,
    count: u64,
}

fn tally(i: usize, _revision: u64) -> Tally {
    Tally {
        counter: i as u64,
        count: i as u64 * 3,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    measure::<Customer>("customer", customer);
    measure::<Reading>("reading", reading);
    measure::<Tally>("tally", tally);
}
