//! Red team of the replica's own hash table (issue 12: `Slots`, a
//! `hashbrown::HashTable` whose key hash is taken once per event by the
//! version gate and handed to the write, each slot keeping 32 bits of it
//! for the rehash on growth).
//!
//! A hash that reached the write for another key, or a rehash from a kept
//! hash that is not the key's, would leave a replica with a key twice or a
//! key it can no longer find: silently wrong. So every path that writes is
//! driven, with many keys (the table grows many times, also after purges
//! and removals), against a model of the version gate written out
//! independently (`HashMap<key, (sequence, state or tombstone)>`):
//!
//! - `Replica::apply_json` (the in-place gate), a `Router` (the gate on
//!   parts read by the router), `apply_change`, `restore`,
//!   `restore_tombstone`, `import_snapshot` (into itself and into a fresh
//!   table), `purge_tombstones_before`;
//! - a `BlockingReplica` over a `MemoryStore` (the durable `Part` path:
//!   `decode_gated`, then the write with the gate's hash), reloaded from its
//!   store (a new table, filled by `restore`);
//! - a `String` key looked up by `&str` (`Borrow`), and an integer key.
//!
//! After every step the replica must hold each key exactly once (`len`,
//! `tombstones`, `entries`, `iter`), find each one (`get`, `entry`,
//! `read_version`, `deleted_at`), and give each event the outcome the
//! model gives.

#[path = "support/replica.rs"]
mod common_replica;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, SystemTime};

use common_replica::snapshot;
use ecst::store::blocking::BlockingReplica;
use ecst::store::{MemoryStore, Message};
use ecst::{Change, Entry, Envelope, Outcome, Replica, Router, Sequence, StateEvent};
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A small entity keyed by a string (a two-field entity: the table's own
/// per-entry cost is most of its size).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "meter", version = 1)]
struct Meter {
    #[state_event(key)]
    id: String,
    reading: u64,
}

/// A small entity keyed by an integer.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "tick", version = 1)]
struct Tick {
    #[state_event(key)]
    n: u64,
    value: u32,
}

/// How a test entity is made from a key number and a value.
trait Make: StateEvent + Clone + PartialEq + Debug + Serialize
where
    Self::Key: Clone + Hash + Eq + Debug,
{
    fn key_of(k: u64) -> Self::Key;
    fn make(k: u64, value: u32) -> Self;
}

impl Make for Meter {
    fn key_of(k: u64) -> String {
        format!("m-{k}")
    }
    fn make(k: u64, value: u32) -> Self {
        Meter {
            id: Self::key_of(k),
            reading: u64::from(value),
        }
    }
}

impl Make for Tick {
    fn key_of(k: u64) -> u64 {
        k
    }
    fn make(k: u64, value: u32) -> Self {
        Tick { n: k, value }
    }
}

/// One step against a replica.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// An event: key, sequence, `Some(value)` for an upsert.
    Event(u64, u64, Option<u32>),
    /// Every tombstone purged.
    Purge,
    /// The replica written to a snapshot and read into a fresh one.
    Reimport,
    /// The replica's own snapshot merged into itself (all duplicates).
    SelfMerge,
}

/// The version gate, written out: per key, the sequence held and the live
/// state (`None`: a tombstone). Every event here is at the newest version.
struct Model<T: StateEvent>(HashMap<T::Key, (u64, Option<T>)>);

impl<T: Make> Model<T>
where
    T::Key: Clone + Hash + Eq + Debug,
{
    fn new() -> Self {
        Model(HashMap::new())
    }

    fn apply(&mut self, key: T::Key, sequence: u64, state: Option<T>) -> Outcome {
        let outcome = match self.0.get(&key) {
            None if state.is_some() => Outcome::Inserted,
            None => Outcome::Deleted,
            Some((held, _)) if sequence < *held => Outcome::Stale,
            Some((held, held_state)) if sequence == *held => match (held_state, &state) {
                (None, None) => Outcome::Duplicate,
                (None, Some(_)) => Outcome::Stale,
                (Some(_), None) => Outcome::Deleted,
                (Some(held), Some(incoming)) => {
                    let held = serde_json::to_vec(held).expect("serializes");
                    let incoming = serde_json::to_vec(incoming).expect("serializes");
                    match incoming.cmp(&held) {
                        std::cmp::Ordering::Greater => Outcome::Updated,
                        std::cmp::Ordering::Less => Outcome::Stale,
                        std::cmp::Ordering::Equal => Outcome::Duplicate,
                    }
                }
            },
            Some(_) if state.is_none() => Outcome::Deleted,
            Some((_, Some(_))) => Outcome::Updated,
            Some((_, None)) => Outcome::Inserted,
        };
        if matches!(
            outcome,
            Outcome::Inserted | Outcome::Updated | Outcome::Deleted
        ) {
            self.0.insert(key, (sequence, state));
        }
        outcome
    }

    fn purge(&mut self) -> usize {
        let before = self.0.len();
        self.0.retain(|_, (_, state)| state.is_some());
        before - self.0.len()
    }

    fn live(&self) -> usize {
        self.0.values().filter(|(_, state)| state.is_some()).count()
    }
}

/// The envelope of an event step.
fn envelope<T: Make>(k: u64, sequence: u64, value: Option<u32>) -> Vec<u8>
where
    T::Key: Clone + Hash + Eq + Debug,
{
    let sequence = Sequence::new(sequence);
    let envelope = match value {
        Some(value) => Envelope::upsert("urn:example:owner", "id-1", sequence, T::make(k, value)),
        None => Envelope::<T>::delete("urn:example:owner", "id-1", T::key_of(k), sequence),
    };
    envelope.to_json().expect("encodes")
}

/// The replica holds exactly what the model holds: each key once, found
/// by every look-up.
fn assert_holds<T: Make>(
    replica: &Replica<T>,
    model: &Model<T>,
    keys: u64,
    context: &str,
) -> Result<(), TestCaseError>
where
    T::Key: Clone + Hash + Eq + Debug,
{
    prop_assert_eq!(replica.len(), model.live(), "len: {}", context);
    prop_assert_eq!(
        replica.tombstones(),
        model.0.len() - model.live(),
        "tombstones: {}",
        context
    );
    let entries: Vec<&T::Key> = replica.entries().map(|(key, _)| key).collect();
    prop_assert_eq!(entries.len(), model.0.len(), "entries: {}", context);
    let distinct: HashSet<&T::Key> = entries.iter().copied().collect();
    prop_assert_eq!(distinct.len(), entries.len(), "a key twice: {}", context);
    prop_assert_eq!(replica.iter().count(), model.live(), "iter: {}", context);
    for k in 0..keys {
        let key = T::key_of(k);
        match model.0.get(&key) {
            None => {
                prop_assert!(replica.entry(&key).is_none(), "{:?} held: {}", key, context);
            }
            Some((sequence, Some(state))) => {
                prop_assert_eq!(
                    replica.entry(&key),
                    Some(Entry::Live {
                        sequence: Sequence::new(*sequence),
                        state
                    }),
                    "{}",
                    context
                );
                prop_assert_eq!(replica.get(&key), Some(state));
                prop_assert_eq!(replica.read_version(&key), Some(T::VERSION));
                prop_assert_eq!(replica.deleted_at(&key), None);
            }
            Some((sequence, None)) => {
                prop_assert_eq!(
                    replica.entry(&key),
                    Some(Entry::Tombstone {
                        sequence: Sequence::new(*sequence)
                    }),
                    "{}",
                    context
                );
                prop_assert_eq!(replica.get(&key), None);
                prop_assert_eq!(replica.read_version(&key), None);
                prop_assert!(replica.deleted_at(&key).is_some());
            }
        }
    }
    // Every key iterated is one the model holds, at its sequence.
    for (key, entry) in replica.entries() {
        let held = model.0.get(key).map(|(s, _)| Sequence::new(*s));
        let sequence = match entry {
            Entry::Live { sequence, .. } | Entry::Tombstone { sequence } => sequence,
        };
        prop_assert_eq!(held, Some(sequence), "{:?}: {}", key, context);
    }
    Ok(())
}

/// Which path writes.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `Replica::apply_json`.
    Json,
    /// `Router::apply_json`.
    Router,
    /// `Replica::apply_change`.
    Change,
    /// `restore` / `restore_tombstone` (outcomes as the gate's).
    Restore,
}

/// Runs `steps` on one path against the model, checking the whole replica
/// every `every` steps and at the end.
fn run<T: Make>(path: Path, steps: &[Step], keys: u64, every: usize) -> Result<(), TestCaseError>
where
    T::Key: Clone + Hash + Eq + Debug,
{
    let mut model = Model::<T>::new();
    let mut router = Router::new();
    router.add(Replica::<T>::new()).expect("one entity");
    let mut mine = Replica::<T>::new();
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Event(k, sequence, value) => {
                let expected = model.apply(T::key_of(k), sequence, value.map(|v| T::make(k, v)));
                let outcome = match path {
                    Path::Json => mine.apply_json(&envelope::<T>(k, sequence, value)),
                    Path::Router => router
                        .apply_json(&envelope::<T>(k, sequence, value))
                        .map(|routed| routed.outcome),
                    Path::Change => Ok(mine.apply_change(
                        T::key_of(k),
                        Sequence::new(sequence),
                        match value {
                            Some(v) => Change::Upsert(T::make(k, v)),
                            None => Change::Delete,
                        },
                    )),
                    Path::Restore => Ok(match value {
                        Some(v) => mine.restore(
                            T::key_of(k),
                            Sequence::new(sequence),
                            T::VERSION,
                            Change::Upsert(T::make(k, v)),
                        ),
                        None => mine.restore_tombstone(T::key_of(k), Sequence::new(sequence), past),
                    }),
                };
                prop_assert_eq!(
                    outcome.map_err(|e| e.to_string()),
                    Ok(expected),
                    "step {} {:?} on {:?}",
                    i,
                    step,
                    path
                );
            }
            Step::Purge => {
                let replica = pick(path, &mut router, &mut mine);
                let purged =
                    replica.purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600));
                prop_assert_eq!(purged, model.purge(), "purge at step {}", i);
            }
            Step::Reimport => {
                let bytes = snapshot(pick(path, &mut router, &mut mine));
                let mut fresh = Replica::<T>::new();
                let stats = fresh.import_snapshot(&bytes).expect("own snapshot");
                prop_assert_eq!(
                    stats.inserted + stats.deleted,
                    model.0.len() as u64,
                    "reimport at step {}",
                    i
                );
                // Same contents, in a table with another SipHash key.
                prop_assert_eq!(snapshot(&fresh), bytes, "reimport at step {}", i);
                assert_holds(&fresh, &model, keys, &format!("reimported at step {i}"))?;
                // A snapshot keeps no deletion times: the fresh replica's
                // tombstones are stamped now (the purges here take them all).
                match path {
                    Path::Router => {
                        router = Router::new();
                        router.add(fresh).expect("one entity");
                    }
                    _ => mine = fresh,
                }
            }
            Step::SelfMerge => {
                let replica = pick(path, &mut router, &mut mine);
                let bytes = snapshot(replica);
                let stats = replica.import_snapshot(&bytes).expect("own snapshot");
                prop_assert_eq!(
                    stats.duplicates,
                    model.0.len() as u64,
                    "self merge at {}",
                    i
                );
                prop_assert_eq!(snapshot(replica), bytes, "self merge at {}", i);
            }
        }
        if (i + 1) % every == 0 {
            let replica = pick(path, &mut router, &mut mine);
            assert_holds(
                replica,
                &model,
                keys,
                &format!("after step {i} on {path:?}"),
            )?;
        }
    }
    let replica = pick(path, &mut router, &mut mine);
    assert_holds(replica, &model, keys, &format!("at the end on {path:?}"))
}

/// The replica `path` writes to: the router's, or `mine`.
fn pick<'r, T: StateEvent>(
    path: Path,
    router: &'r mut Router,
    mine: &'r mut Replica<T>,
) -> &'r mut Replica<T> {
    match path {
        Path::Router => router.replica_mut::<T>().expect("registered"),
        _ => mine,
    }
}

/// A deterministic stream of steps over `keys` keys: mostly events (new
/// keys first, so that the table grows while it is used; then updates,
/// deletes, redeliveries and older events), with purges, reimports and
/// self-merges among them.
fn steps(seed: u64, keys: u64, n: usize) -> Vec<Step> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = next();
        let step = match r % 1000 {
            0..=1 => Step::Purge,
            2 => Step::Reimport,
            3 => Step::SelfMerge,
            _ => {
                // The key range widens as the run goes on: the table grows
                // throughout, between purges too.
                let span = ((i as u64 + 1) * keys / n as u64).max(1);
                let k = next() % span;
                let sequence = 1 + next() % 6;
                let value = (next() % 4 != 0).then(|| (next() % 3) as u32);
                Step::Event(k, sequence, value)
            }
        };
        out.push(step);
    }
    out
}

#[test]
fn string_keys_on_every_path_through_many_growths() {
    for (seed, path) in [
        (1, Path::Json),
        (2, Path::Router),
        (3, Path::Change),
        (4, Path::Restore),
    ] {
        let keys = 3000;
        run::<Meter>(path, &steps(seed, keys, 12_000), keys, 4000).expect("holds");
    }
}

#[test]
fn integer_keys_on_every_path_through_many_growths() {
    for (seed, path) in [
        (5, Path::Json),
        (6, Path::Router),
        (7, Path::Change),
        (8, Path::Restore),
    ] {
        let keys = 3000;
        run::<Tick>(path, &steps(seed, keys, 12_000), keys, 4000).expect("holds");
    }
}

/// After growing, purging every tombstone and growing again, every key
/// is found exactly once: the rehash runs from the kept hashes of slots
/// that were written, replaced (an update keeps the hash of the write,
/// not the first insert's) and deleted.
#[test]
fn grow_purge_grow_again() {
    let mut replica = Replica::<Meter>::new();
    let mut model = Model::<Meter>::new();
    let apply =
        |replica: &mut Replica<Meter>, model: &mut Model<Meter>, k: u64, s: u64, v: Option<u32>| {
            let outcome = replica
                .apply_json(&envelope::<Meter>(k, s, v))
                .expect("applies");
            assert_eq!(
                outcome,
                model.apply(Meter::key_of(k), s, v.map(|v| Meter::make(k, v)))
            );
        };
    for round in 0..4u64 {
        let base = round * 2000;
        for k in base..base + 2000 {
            apply(&mut replica, &mut model, k, 1, Some(1));
        }
        // Every other key updated, every third deleted (in place of the
        // slot: the replaced slot carries the hash of the replacing write).
        for k in (base..base + 2000).step_by(2) {
            apply(&mut replica, &mut model, k, 2, Some(2));
        }
        for k in (base..base + 2000).step_by(3) {
            apply(&mut replica, &mut model, k, 3, None);
        }
        assert_eq!(
            replica.purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600)),
            model.purge()
        );
        assert_holds(&replica, &model, base + 2000, &format!("round {round}")).expect("holds");
        // The purged keys come back, as new keys, after the removals.
        for k in (base..base + 2000).step_by(3) {
            apply(&mut replica, &mut model, k, 4, Some(4));
        }
        assert_holds(
            &replica,
            &model,
            base + 2000,
            &format!("round {round}, back"),
        )
        .expect("holds");
    }
}

/// A `String` key is found by `&str` (the public look-ups take any `Q`
/// the key borrows as), before and after the table grew.
#[test]
fn a_string_key_is_found_by_str() {
    let mut replica = Replica::<Meter>::new();
    replica
        .apply_json(&envelope::<Meter>(0, 1, Some(7)))
        .expect("applies");
    replica
        .apply_json(&envelope::<Meter>(1, 1, None))
        .expect("applies");
    let check = |replica: &Replica<Meter>| {
        assert_eq!(replica.get("m-0").map(|m| m.reading), Some(7));
        assert!(matches!(replica.entry("m-0"), Some(Entry::Live { .. })));
        assert_eq!(replica.read_version("m-0"), Some(1));
        assert_eq!(replica.deleted_at("m-0"), None);
        assert!(replica.deleted_at("m-1").is_some());
        assert!(matches!(
            replica.entry("m-1"),
            Some(Entry::Tombstone { sequence }) if sequence == Sequence::new(1)
        ));
        assert_eq!(replica.get("m-x"), None);
        assert_eq!(replica.entry(""), None);
    };
    check(&replica);
    for k in 2..5000 {
        replica
            .apply_json(&envelope::<Meter>(k, 1, Some(1)))
            .expect("applies");
    }
    check(&replica);
    assert_eq!(replica.get("m-4999").map(|m| m.reading), Some(1));
    assert_eq!(replica.len(), 4999);
    assert_eq!(replica.tombstones(), 1);
}

/// Two replicas of one entity: each table has its own SipHash key, so a
/// hash from one is not the other's. Events applied to both, alternately,
/// and one's snapshot merged into the other, leave both whole.
#[test]
fn two_replicas_side_by_side() {
    let mut a = Replica::<Meter>::new();
    let mut b = Replica::<Meter>::new();
    let mut model = Model::<Meter>::new();
    for k in 0..3000u64 {
        let bytes = envelope::<Meter>(k, 1 + k % 3, Some((k % 5) as u32));
        let expected = model.apply(
            Meter::key_of(k),
            1 + k % 3,
            Some(Meter::make(k, (k % 5) as u32)),
        );
        assert_eq!(a.apply_json(&bytes).expect("applies"), expected);
        assert_eq!(b.apply_json(&bytes).expect("applies"), expected);
        if k % 7 == 0 {
            let delete = envelope::<Meter>(k, 9, None);
            let expected = model.apply(Meter::key_of(k), 9, None);
            assert_eq!(b.apply_json(&delete).expect("applies"), expected);
            assert_eq!(a.apply_json(&delete).expect("applies"), expected);
        }
    }
    let stats = b.import_snapshot(&snapshot(&a)).expect("a's snapshot");
    assert_eq!(stats.duplicates, model.0.len() as u64);
    assert_holds(&a, &model, 3000, "a").expect("holds");
    assert_holds(&b, &model, 3000, "b").expect("holds");
    assert_eq!(snapshot(&a), snapshot(&b));
}

/// The durable path (`Part`: `decode_gated`, then the write with the
/// gate's hash) against the model, through growth, purges (the store's
/// `purge_tombstone_keys`, which removes key by key) and the unsequenced
/// merge of an owner's answers (`apply_json_keyed`), then reloaded from the
/// store into a fresh table (`restore`).
#[test]
fn the_durable_path_holds_every_key_once() {
    let mut durable = BlockingReplica::<Meter, MemoryStore>::open(MemoryStore::new())
        .expect("a memory store opens");
    let mut model = Model::<Meter>::new();
    let keys = 1500;
    let steps = steps(11, keys, 4000);
    let subject = "events.meter";
    let mut position = 0u64;
    let mut chunk = Vec::new();
    let mut flush = |durable: &mut BlockingReplica<Meter, MemoryStore>,
                     model: &mut Model<Meter>,
                     chunk: &mut Vec<(u64, u64, Option<u32>)>,
                     unsequenced: bool| {
        let payloads: Vec<Vec<u8>> = chunk
            .iter()
            .map(|&(k, s, v)| envelope::<Meter>(k, s, v))
            .collect();
        let first = position + 1;
        let (batch, expected) = if unsequenced {
            let payloads: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let batch = durable.merge_unsequenced(&payloads).expect("commits");
            let expected: Vec<(u64, Outcome)> = chunk
                .iter()
                .map(|&(k, s, v)| {
                    (
                        0,
                        model.apply(Meter::key_of(k), s, v.map(|v| Meter::make(k, v))),
                    )
                })
                .collect();
            (batch, expected)
        } else {
            let messages: Vec<Message<'_>> = payloads
                .iter()
                .enumerate()
                .map(|(i, bytes)| Message::new(first + i as u64, subject, bytes))
                .collect();
            position += chunk.len() as u64;
            let batch = durable.apply_batch(&messages).expect("commits");
            let expected: Vec<(u64, Outcome)> = chunk
                .iter()
                .enumerate()
                .map(|(i, &(k, s, v))| {
                    (
                        first + i as u64,
                        model.apply(Meter::key_of(k), s, v.map(|v| Meter::make(k, v))),
                    )
                })
                .collect();
            (batch, expected)
        };
        assert!(batch.parked.is_empty(), "parked: {:?}", batch.parked);
        assert_eq!(batch.applied, expected, "at position {first}");
        chunk.clear();
    };
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Event(k, s, v) => {
                chunk.push((k, s, v));
                if chunk.len() == 97 {
                    flush(&mut durable, &mut model, &mut chunk, i % 5 == 0);
                }
            }
            Step::Purge => {
                flush(&mut durable, &mut model, &mut chunk, false);
                let purged = durable
                    .purge_tombstones_before(SystemTime::now() + Duration::from_secs(3600))
                    .expect("purges");
                assert_eq!(purged, model.purge(), "purge at step {i}");
                assert_holds(durable.replica(), &model, keys, &format!("purged at {i}"))
                    .expect("holds");
            }
            Step::Reimport | Step::SelfMerge => {
                flush(&mut durable, &mut model, &mut chunk, false);
                durable.reload().expect("reloads");
                assert_holds(durable.replica(), &model, keys, &format!("reloaded at {i}"))
                    .expect("holds");
            }
        }
    }
    flush(&mut durable, &mut model, &mut chunk, false);
    assert_holds(durable.replica(), &model, keys, "durable").expect("holds");
    durable.reload().expect("reloads");
    assert_holds(durable.replica(), &model, keys, "reloaded").expect("holds");
}

/// A replica made with room for few keys grows past it, and one made with
/// room for all never grows: both hold every key once.
#[test]
fn with_capacity_small_and_large() {
    for capacity in [0, 1, 7, 5000] {
        let mut replica = Replica::<Tick>::with_capacity(capacity);
        let mut model = Model::<Tick>::new();
        for k in 0..3000u64 {
            for (s, v) in [(1, Some(1)), (2, None), (3, Some(3))] {
                if (k + s) % 4 == 0 {
                    continue;
                }
                let expected = model.apply(k, s, v.map(|v| Tick::make(k, v)));
                let outcome = replica
                    .apply_json(&envelope::<Tick>(k, s, v))
                    .expect("applies");
                assert_eq!(outcome, expected, "key {k} sequence {s}");
            }
        }
        assert_holds(&replica, &model, 3000, &format!("capacity {capacity}")).expect("holds");
    }
}

fn small_steps() -> impl Strategy<Value = Vec<Step>> {
    let event = (0u64..400, 1u64..5, proptest::option::of(0u32..3))
        .prop_map(|(k, s, v)| Step::Event(k, s, v));
    proptest::collection::vec(
        prop_oneof![
            200 => event,
            1 => Just(Step::Purge),
            1 => Just(Step::Reimport),
            1 => Just(Step::SelfMerge),
        ],
        1..1500,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    /// Random steps over a few hundred keys, on every path.
    #[test]
    fn random_steps_hold(steps in small_steps()) {
        for path in [Path::Json, Path::Router, Path::Change, Path::Restore] {
            run::<Meter>(path, &steps, 400, 500)?;
            run::<Tick>(path, &steps, 400, 500)?;
        }
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// An envelope written by hand: attributes in the given order, `subject`
/// and `data` as raw JSON text (so they can be duplicated or escaped).
fn hostile(members: &[(&str, &str)]) -> Vec<u8> {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

fn head(sequence: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("specversion", "\"1.0\""),
        ("id", "\"e-1\""),
        ("source", "\"urn:test\""),
        ("type", "\"meter\""),
        ("sequence", sequence),
        ("schemaversion", "1"),
        ("operation", "\"upsert\""),
    ]
}

/// A hostile publisher cannot make the gate look up one key and the write
/// go to another: an envelope naming two keys (a `subject` before and
/// after `data`, `data` of another key) is rejected and changes nothing,
/// on the in-place path, through a router and on the durable path; an
/// escaped `subject` is the key it spells. (In a debug build, a hash that
/// reached the write for another key would also fail `Slots`' own
/// assertion.)
#[test]
fn one_event_one_key_whatever_the_publisher_writes() {
    let data1 = r#"{"id":"m-1","reading":9}"#;
    let data2 = r#"{"id":"m-2","reading":9}"#;
    let rejected: Vec<Vec<(&str, &str)>> = vec![
        // Two subjects around `data`, either one's data.
        [
            head("6"),
            vec![
                ("subject", "\"m-1\""),
                ("data", data2),
                ("subject", "\"m-2\""),
            ],
        ]
        .concat(),
        [
            head("6"),
            vec![
                ("subject", "\"m-1\""),
                ("data", data1),
                ("subject", "\"m-2\""),
            ],
        ]
        .concat(),
        [
            head("6"),
            vec![
                ("subject", "\"m-2\""),
                ("data", data1),
                ("subject", "\"m-1\""),
            ],
        ]
        .concat(),
        // `data` first, then two subjects.
        [
            vec![("data", data1)],
            head("6"),
            vec![("subject", "\"m-1\""), ("subject", "\"m-2\"")],
        ]
        .concat(),
        // A second subject that is null.
        [
            head("6"),
            vec![("subject", "\"m-1\""), ("data", data1), ("subject", "null")],
        ]
        .concat(),
        // The subject one key, the data another.
        [head("6"), vec![("subject", "\"m-1\""), ("data", data2)]].concat(),
        // Stale (read raw by the gate), then a second subject.
        [
            head("1"),
            vec![
                ("subject", "\"m-1\""),
                ("data", data1),
                ("subject", "\"m-2\""),
            ],
        ]
        .concat(),
        // Stale with broken data and a second subject: the gate's raw
        // read fails, the plain reader reads again.
        [
            head("1"),
            vec![
                ("subject", "\"m-1\""),
                ("data", r#"{"id":"m-1","reading":"x"}"#),
                ("subject", "\"m-2\""),
            ],
        ]
        .concat(),
    ];
    let fill = |replica: &mut Replica<Meter>| {
        for k in 0..3000u64 {
            replica
                .apply_json(&envelope::<Meter>(k, 5, Some(k as u32)))
                .expect("applies");
        }
    };
    let mut replica = Replica::<Meter>::new();
    fill(&mut replica);
    let mut router = Router::new();
    let mut routed = Replica::<Meter>::new();
    fill(&mut routed);
    router.add(routed).expect("one entity");
    let mut durable = BlockingReplica::<Meter, MemoryStore>::open(MemoryStore::new())
        .expect("a memory store opens");
    let fills: Vec<Vec<u8>> = (0..3000u64)
        .map(|k| envelope::<Meter>(k, 5, Some(k as u32)))
        .collect();
    let messages: Vec<Message<'_>> = (1..)
        .zip(&fills)
        .map(|(at, bytes)| Message::new(at, "events.meter", bytes))
        .collect();
    durable.apply_batch(&messages).expect("commits");
    let held = snapshot(&replica);
    for (at, members) in (10_000..).zip(&rejected) {
        let bytes = hostile(members);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(replica.apply_json(&bytes).is_err(), "applied: {text}");
        assert!(router.apply_json(&bytes).is_err(), "routed: {text}");
        let batch = durable
            .apply_batch(&[Message::new(at, "events.meter", &bytes)])
            .expect("commits");
        assert_eq!(batch.applied, vec![], "durable applied: {text}");
        assert_eq!(snapshot(&replica), held, "changed by {text}");
        assert_eq!(
            snapshot(router.replica::<Meter>().expect("registered")),
            held
        );
        assert_eq!(
            snapshot(durable.replica()),
            held,
            "durable changed by {text}"
        );
    }
    // An escaped subject is the key it spells: the held slot is updated,
    // no second one made.
    let escaped = hostile(
        &[
            head("6"),
            vec![("subject", r#""m-\u0031""#), ("data", data1)],
        ]
        .concat(),
    );
    assert_eq!(
        replica.apply_json(&escaped).expect("applies"),
        Outcome::Updated
    );
    assert_eq!(
        router.apply_json(&escaped).expect("applies").outcome,
        Outcome::Updated
    );
    let batch = durable
        .apply_batch(&[Message::new(20_000, "events.meter", &escaped)])
        .expect("commits");
    assert_eq!(batch.applied, vec![(20_000, Outcome::Updated)]);
    // Redelivered: the gate finds the state held by its text.
    assert_eq!(
        replica.apply_json(&escaped).expect("applies"),
        Outcome::Duplicate
    );
    for replica in [
        &replica,
        router.replica::<Meter>().expect("registered"),
        durable.replica(),
    ] {
        assert_eq!(replica.len(), 3000);
        assert_eq!(replica.entries().count(), 3000);
        assert_eq!(replica.get("m-1").map(|m| m.reading), Some(9));
        assert_eq!(replica.get("m-2").map(|m| m.reading), Some(2));
    }
}
