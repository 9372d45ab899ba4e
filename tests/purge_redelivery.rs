//! The class behind the red team's purge break (issue 9): whatever the
//! broker redelivers, and whenever tombstones are purged (here: as early as
//! possible, every tombstone at once, far inside any sane horizon), a
//! durable replica never brings a deleted key back from a message it had
//! handled before the purge, and ends equal to the owner once the stream
//! has been read. What it keeps out is parked as `PurgedTombstone`, only
//! for keys it does not hold.
//!
//! `ECST_PROPTEST_CASES=N` sets the number of cases (default 256).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use ecst::consume::{ParkKind, ParkingLimits};
use ecst::store::{DurableReplica, MemoryStore, Message};
use ecst::{Entry, Producer};
use proptest::collection::vec;
use proptest::prelude::*;

#[path = "support/stores.rs"]
mod store_common;

use store_common::{account1, v1};

const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

/// What the consumer does next.
#[derive(Clone, Debug)]
enum Step {
    /// The next `count` new messages, with earlier ones (picked by
    /// `redelivered`, modulo what was handled) mixed in after them.
    Deliver {
        count: usize,
        redelivered: Vec<usize>,
    },
    /// Only redeliveries of handled messages.
    Redeliver(Vec<usize>),
    /// Purge every tombstone.
    Purge,
    /// Restart: reload from the store.
    Reload,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..6usize, vec(any::<usize>(), 0..3))
            .prop_map(|(count, redelivered)| Step::Deliver { count, redelivered }),
        2 => vec(any::<usize>(), 1..5).prop_map(Step::Redeliver),
        2 => Just(Step::Purge),
        1 => Just(Step::Reload),
    ]
}

/// The owner's history: `(key, delete?)` per event, published in order.
fn history() -> impl Strategy<Value = Vec<(usize, bool)>> {
    vec((0..KEYS.len(), prop::bool::weighted(0.35)), 1..40)
}

/// One stream message: position, subject, payload; and what it says.
struct Published {
    stream_sequence: u64,
    subject: String,
    payload: Vec<u8>,
    key: usize,
    sequence: u64,
    delete: bool,
}

fn publish(history: &[(usize, bool)]) -> Vec<Published> {
    let mut producer = Producer::<v1::Account>::new("urn:example:bank");
    history
        .iter()
        .enumerate()
        .map(|(index, &(key, delete))| {
            let name = KEYS[key];
            let envelope = if delete {
                producer.delete(name.to_owned()).expect("delete")
            } else {
                let balance = i64::try_from(index).expect("small");
                producer
                    .upsert(account1(name, "owner", balance))
                    .expect("upsert")
            };
            Published {
                stream_sequence: index as u64 + 1,
                subject: format!("bank.account.{name}"),
                payload: envelope.to_json().expect("encode"),
                key,
                sequence: envelope.sequence.get(),
                delete,
            }
        })
        .collect()
}

fn message(published: &Published) -> Message<'_> {
    Message::new(
        published.stream_sequence,
        &published.subject,
        &published.payload,
    )
}

fn run(history: &[(usize, bool)], steps: &[Step]) -> Result<(), TestCaseError> {
    let stream = publish(history);
    let far_future = SystemTime::now() + Duration::from_secs(3600);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut durable = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
                .await
                .expect("open");
            let next = run_steps(&mut durable, &stream, steps, 0).await?;
            // The rest of the stream, then everything once more.
            let rest: Vec<Message<'_>> = stream[next..].iter().map(message).collect();
            durable.apply_batch(&rest).await.expect("rest");
            durable
                .purge_tombstones_before(far_future)
                .await
                .expect("purge");
            let all: Vec<Message<'_>> = stream.iter().map(message).collect();
            durable.apply_batch(&all).await.expect("all again");
            no_resurrection_in(durable.replica(), durable.resume_after(), &stream)?;

            // Equal to the owner: each key's last event decides.
            let mut owner: HashMap<usize, &Published> = HashMap::new();
            for published in &stream {
                owner.insert(published.key, published);
            }
            for (index, name) in KEYS.iter().enumerate() {
                let held = durable.replica().get(*name);
                match owner.get(&index) {
                    Some(last) if !last.delete => {
                        let balance = i64::try_from(last.stream_sequence - 1).expect("small");
                        prop_assert_eq!(held, Some(&account1(name, "owner", balance)));
                    }
                    _ => prop_assert_eq!(held, None, "key {} should not be live", name),
                }
            }
            // What was kept out is visible, and only for keys not held.
            for parked in durable.parked().filter(|p| p.is_pending()) {
                prop_assert_eq!(parked.reason.kind, ParkKind::PurgedTombstone);
                let key = parked.key.as_deref().unwrap_or_default();
                prop_assert_eq!(durable.replica().get(key), None);
            }
            Ok(())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn purges_never_let_a_redelivery_bring_a_deleted_key_back(
        history in history(),
        steps in vec(step(), 0..30),
    ) {
        run(&history, &steps)?;
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("ECST_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

// The same class across an upgrade (the red team's second break, issue 9):
// some upserts are of a version the consumer does not know yet (parked as
// future versions), redeliveries and purges come as above, and at the end
// the consumer is upgraded and retries what is parked. A retry never brings
// back a key whose delete was handled, and the upgraded replica ends equal
// to the owner.

/// What the owner publishes of a key: an upsert the old consumer reads, an
/// upsert of the next version, or a delete.
#[derive(Clone, Copy, Debug)]
enum Op {
    Old,
    New,
    Delete,
}

fn upgrade_history() -> impl Strategy<Value = Vec<(usize, Op)>> {
    let op = prop_oneof![5 => Just(Op::Old), 3 => Just(Op::New), 4 => Just(Op::Delete)];
    vec((0..KEYS.len(), op), 1..40)
}

/// The stream, every event by one `v2` producer; the old upserts and the
/// deletes rewritten as a `v1` owner writes them.
fn publish_versions(history: &[(usize, Op)]) -> Vec<Published> {
    use store_common::{account2, v2};
    let mut producer = Producer::<v2::Account>::new("urn:example:bank");
    history
        .iter()
        .enumerate()
        .map(|(index, &(key, op))| {
            let name = KEYS[key];
            let balance = i64::try_from(index).expect("small");
            let envelope = match op {
                Op::Delete => producer.delete(name.to_owned()).expect("delete"),
                Op::Old | Op::New => producer
                    .upsert(account2(name, "owner", None, balance))
                    .expect("upsert"),
            };
            let sequence = envelope.sequence.get();
            let mut payload = envelope.to_json().expect("encode");
            if !matches!(op, Op::New) {
                let mut json: serde_json::Value = serde_json::from_slice(&payload).expect("json");
                json["schemaversion"] = serde_json::json!(1);
                if let Some(object) = json.as_object_mut() {
                    object.remove("dataschema");
                }
                if matches!(op, Op::Old) {
                    json["data"] = serde_json::json!({
                        "id": name, "owner": "owner", "balance": balance
                    });
                }
                payload = serde_json::to_vec(&json).expect("encode");
            }
            Published {
                stream_sequence: index as u64 + 1,
                subject: format!("bank.account.{name}"),
                payload,
                key,
                sequence,
                delete: matches!(op, Op::Delete),
            }
        })
        .collect()
}

/// No key holds a live state older than a delete of it that the replica
/// has handled (a message at or below `handled`, its checkpoint).
fn no_resurrection_in<T: ecst::StateEvent<Key = String>>(
    replica: &ecst::Replica<T>,
    handled: u64,
    stream: &[Published],
) -> Result<(), TestCaseError> {
    for (index, name) in KEYS.iter().enumerate() {
        let Some(Entry::Live { sequence, .. }) = replica.entry(*name) else {
            continue;
        };
        let newer_delete = stream.iter().find(|p| {
            p.key == index
                && p.delete
                && p.stream_sequence <= handled
                && p.sequence > sequence.get()
        });
        prop_assert!(
            newer_delete.is_none(),
            "key {name} is live at sequence {} although its delete at sequence {} was handled",
            sequence.get(),
            newer_delete.map_or(0, |p| p.sequence)
        );
    }
    Ok(())
}

/// Runs `steps` on `durable` from stream index `next`; where it got to.
async fn run_steps<T: ecst::StateEvent<Key = String>>(
    durable: &mut DurableReplica<T, MemoryStore>,
    stream: &[Published],
    steps: &[Step],
    mut next: usize,
) -> Result<usize, TestCaseError> {
    let far_future = SystemTime::now() + Duration::from_secs(3600);
    let redeliveries = |picks: &[usize], handled: usize| -> Vec<usize> {
        if handled == 0 {
            return Vec::new();
        }
        picks.iter().map(|pick| pick % handled).collect()
    };
    for step in steps {
        match step {
            Step::Deliver { count, redelivered } => {
                let again = redeliveries(redelivered, next);
                let end = (next + count).min(stream.len());
                let batch: Vec<Message<'_>> = stream[next..end]
                    .iter()
                    .chain(again.iter().map(|&i| &stream[i]))
                    .map(message)
                    .collect();
                durable.apply_batch(&batch).await.expect("batch");
                next = end;
            }
            Step::Redeliver(picks) => {
                let again = redeliveries(picks, next);
                let batch: Vec<Message<'_>> = again.iter().map(|&i| message(&stream[i])).collect();
                durable.apply_batch(&batch).await.expect("redelivery");
            }
            Step::Purge => {
                durable
                    .purge_tombstones_before(far_future)
                    .await
                    .expect("purge");
            }
            Step::Reload => {
                // A retry (which changes nothing of a future version
                // before the upgrade), then a restart.
                durable.retry_parked().await.expect("retry");
                durable.reload().await.expect("reload");
            }
        }
        no_resurrection_in(durable.replica(), durable.resume_after(), stream)?;
    }
    Ok(next)
}

fn run_upgrade(
    history: &[(usize, Op)],
    steps: &[Step],
    upgrade_at: usize,
) -> Result<(), TestCaseError> {
    use store_common::{account2, v2};
    let stream = publish_versions(history);
    let far_future = SystemTime::now() + Duration::from_secs(3600);
    let (before, after) = steps.split_at(upgrade_at.min(steps.len()));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(async {
            // Resolved parked events are dropped at once: a redelivery
            // finds no trace of what it was.
            let limits = ParkingLimits {
                max_resolved: 0,
                ..ParkingLimits::default()
            };
            let mut old = DurableReplica::<v1::Account, _>::open(MemoryStore::new())
                .await
                .expect("open")
                .with_parking_limits(limits);
            let next = run_steps(&mut old, &stream, before, 0).await?;

            // The upgrade: the new build opens the store and retries.
            let mut new = DurableReplica::<v2::Account, _>::open(old.store().clone())
                .await
                .expect("upgrade")
                .with_parking_limits(limits);
            new.retry_parked().await.expect("retry");
            no_resurrection_in(new.replica(), new.resume_after(), &stream)?;
            let next = run_steps(&mut new, &stream, after, next).await?;

            let rest: Vec<Message<'_>> = stream[next..].iter().map(message).collect();
            new.apply_batch(&rest).await.expect("rest");
            new.retry_parked().await.expect("retry");
            new.purge_tombstones_before(far_future)
                .await
                .expect("purge");
            let all: Vec<Message<'_>> = stream.iter().map(message).collect();
            new.apply_batch(&all).await.expect("all again");
            no_resurrection_in(new.replica(), new.resume_after(), &stream)?;

            // Equal to the owner: each key's last event decides.
            let mut owner: HashMap<usize, &Published> = HashMap::new();
            for published in &stream {
                owner.insert(published.key, published);
            }
            for (index, name) in KEYS.iter().enumerate() {
                let held = new.replica().get(*name);
                match owner.get(&index) {
                    Some(last) if !last.delete => {
                        let balance = i64::try_from(last.stream_sequence - 1).expect("small");
                        prop_assert_eq!(held, Some(&account2(name, "owner", None, balance)));
                    }
                    _ => prop_assert_eq!(held, None, "key {} should not be live", name),
                }
            }
            // What stays kept out is visible, and only for keys not held.
            for parked in new.parked().filter(|p| p.is_pending()) {
                prop_assert_eq!(parked.reason.kind, ParkKind::PurgedTombstone);
                let key = parked.key.as_deref().unwrap_or_default();
                prop_assert_eq!(new.replica().get(key), None);
            }
            Ok(())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn an_upgrade_retry_never_brings_a_deleted_key_back(
        history in upgrade_history(),
        steps in vec(step(), 0..30),
        upgrade_at in 0..30usize,
    ) {
        run_upgrade(&history, &steps, upgrade_at)?;
    }
}
