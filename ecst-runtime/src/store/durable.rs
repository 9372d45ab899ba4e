//! A replica in memory, committed to a store batch by batch.

use std::collections::{HashMap, HashSet};

use super::{Checkpoint, Commit, Loaded, Parked, ReplicaStore, StoredEntry};
use crate::envelope::decode_header;
use crate::event::StateEvent;
use crate::replica::{Entry, Outcome, Replica};

/// One message from the broker.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The broker's sequence of the message in its stream.
    pub stream_sequence: u64,
    /// The subject it arrived on.
    pub subject: &'a str,
    /// The CloudEvents JSON body.
    pub payload: &'a [u8],
    /// Set when the transport already refused the message (say, a payload
    /// over the size limit): it is parked with this reason, undecoded.
    pub refused: Option<&'a str>,
    /// The entity key as the transport addresses the message (on NATS, the
    /// subject's last tokens), if it does. Used only when the payload cannot
    /// say (garbage, a refused payload), so that such a message still holds
    /// back the later events of its key.
    pub key: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// A message to decode and apply.
    pub fn new(stream_sequence: u64, subject: &'a str, payload: &'a [u8]) -> Self {
        Message {
            stream_sequence,
            subject,
            payload,
            refused: None,
            key: None,
        }
    }

    /// The same message, addressed to entity key `key` by the transport.
    #[must_use]
    pub fn with_key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }
}

/// What a batch did, message by message.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Applied messages and their outcomes, in order.
    pub applied: Vec<(u64, Outcome)>,
    /// Messages rejected and parked (with every later event of their key),
    /// with the reason.
    pub parked: Vec<(u64, String)>,
    /// Events rejected *without* being parked, with the reason: the
    /// unsequenced events of [`DurableReplica::merge_unsequenced`] (a
    /// bootstrap answer), which have no stream sequence (it reads 0 here)
    /// and can be asked for again.
    pub rejected: Vec<(u64, String)>,
}

/// A [`Replica`] whose changes and checkpoint are committed to a
/// [`ReplicaStore`] in one transaction per batch.
///
/// Events that cannot be applied (a malformed envelope, an unknown future
/// version, a failed upcast) are *parked*: stored beside the replica with
/// the reason, and every later event of the same key is parked behind them,
/// so that a key's events are never applied out of order. The checkpoint
/// moves past parked events, since they are durable too. After fixing the
/// cause (upgrading the consumer, say), [`DurableReplica::retry_parked`]
/// applies them in order.
pub struct DurableReplica<T: StateEvent, S: ReplicaStore<T>> {
    replica: Replica<T>,
    store: S,
    checkpoint: Option<Checkpoint>,
    parked: Vec<Parked>,
    /// Keys with parked events, and the lowest stream sequence parked for
    /// each: later messages of the key are held behind it.
    held: HashMap<String, u64>,
    /// The last commit failed and memory may be ahead of the store.
    stale_memory: bool,
}

impl<T: StateEvent, S: ReplicaStore<T>> DurableReplica<T, S> {
    /// Loads the replica, its checkpoint and its parked events from `store`.
    pub async fn open(mut store: S) -> Result<Self, S::Error> {
        let loaded = store.load().await?;
        let mut durable = DurableReplica {
            replica: Replica::new(),
            store,
            checkpoint: None,
            parked: Vec::new(),
            held: HashMap::new(),
            stale_memory: false,
        };
        durable.install(loaded);
        Ok(durable)
    }

    fn install(&mut self, loaded: Loaded<T>) {
        self.replica = loaded.replica;
        self.checkpoint = loaded.checkpoint;
        self.held.clear();
        for parked in &loaded.parked {
            if let Some(key) = &parked.key {
                hold(&mut self.held, key, parked.stream_sequence);
            }
        }
        self.parked = loaded.parked;
        self.stale_memory = false;
    }

    /// Reloads everything from the store, dropping what memory holds.
    pub async fn reload(&mut self) -> Result<(), S::Error> {
        let loaded = self.store.load().await?;
        self.install(loaded);
        Ok(())
    }

    /// The replica as committed (plus nothing uncommitted: every
    /// [`DurableReplica::apply_batch`] commits before it returns).
    pub fn replica(&self) -> &Replica<T> {
        &self.replica
    }

    /// The checkpoint, `None` before the first commit.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint
    }

    /// The stream sequence to resume after: every message up to it is
    /// handled. `0` for a new store.
    pub fn resume_after(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.stream_sequence)
    }

    /// Events parked and not yet resolved, oldest first.
    pub fn parked(&self) -> &[Parked] {
        &self.parked
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Applies `messages` in order and commits the changes, the newly
    /// parked events and the checkpoint (the last message's stream
    /// sequence) in one transaction. Messages at or below the checkpoint
    /// (redeliveries after a crash) are applied again, harmlessly: the
    /// version gate makes them duplicates.
    ///
    /// On a store error nothing of the batch is durable; memory is reloaded
    /// from the store before the next batch, and the caller should not
    /// acknowledge the messages. An empty batch (an idle poll) writes
    /// nothing.
    pub async fn apply_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> Result<BatchOutcome, S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        if messages.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let mut outcome = BatchOutcome::default();
        let mut changed: Vec<T::Key> = Vec::new();
        let mut parked_now: Vec<Parked> = Vec::new();
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        // A redelivery of a message already parked stays parked, once: it is
        // neither applied (it would jump the queue of its key) nor parked
        // again (the store holds one row per stream sequence).
        let already_parked: HashSet<u64> = self.parked.iter().map(|p| p.stream_sequence).collect();
        for message in messages {
            checkpoint.stream_sequence = checkpoint.stream_sequence.max(message.stream_sequence);
            let sequence = message.stream_sequence;
            let parked_before = if already_parked.contains(&sequence) {
                self.parked.iter().find(|p| p.stream_sequence == sequence)
            } else {
                parked_now.iter().find(|p| p.stream_sequence == sequence)
            };
            if let Some(parked) = parked_before {
                outcome.parked.push((sequence, parked.reason.clone()));
                continue;
            }
            if let Some(reason) = message.refused {
                self.park(
                    message,
                    None,
                    reason.to_owned(),
                    &mut parked_now,
                    &mut outcome,
                );
                continue;
            }
            if let Some(reason) = self.held_behind(message) {
                self.park(message, reason.0, reason.1, &mut parked_now, &mut outcome);
                continue;
            }
            match self.replica.apply_json_keyed(message.payload) {
                Ok((applied, key)) => {
                    if changes_state(applied) {
                        checkpoint.applied += 1;
                        changed.push(key);
                    }
                    outcome.applied.push((message.stream_sequence, applied));
                }
                Err(error) => {
                    let key = error.context().key.clone();
                    self.park(
                        message,
                        key,
                        error.to_string(),
                        &mut parked_now,
                        &mut outcome,
                    );
                }
            }
        }
        self.commit(&changed, &parked_now, &[], checkpoint).await?;
        self.parked.extend(parked_now);
        Ok(outcome)
    }

    /// Merges events that do not come from the stream (an owner's answer to
    /// a bootstrap request) into the replica by sequence and commits the
    /// changes. The checkpoint's stream position does not move.
    ///
    /// An event that cannot be applied, or whose key has parked events (so
    /// that a key's events are not applied around them), is returned in
    /// [`BatchOutcome::rejected`] and not parked: it has no stream sequence
    /// to be parked under (parked events are identified by theirs), and
    /// asking the owner again after fixing the cause brings it again.
    pub async fn merge_unsequenced(
        &mut self,
        payloads: &[&[u8]],
    ) -> Result<BatchOutcome, S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        let mut outcome = BatchOutcome::default();
        let mut changed: Vec<T::Key> = Vec::new();
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        for payload in payloads {
            // An answer is the owner's current state: it comes after
            // every parked event of its key.
            let answer = Message::new(u64::MAX, "", payload);
            if let Some((_, reason)) = self.held_behind(&answer) {
                outcome.rejected.push((0, reason));
                continue;
            }
            match self.replica.apply_json_keyed(payload) {
                Ok((applied, key)) => {
                    if changes_state(applied) {
                        checkpoint.applied += 1;
                        changed.push(key);
                    }
                    outcome.applied.push((0, applied));
                }
                Err(error) => outcome.rejected.push((0, error.to_string())),
            }
        }
        self.commit(&changed, &[], &[], checkpoint).await?;
        Ok(outcome)
    }

    /// Applies the parked events again, in order; those that now apply
    /// leave the parking lot, the others (and everything behind them on the
    /// same key) stay. Returns what happened, committed in one transaction.
    pub async fn retry_parked(&mut self) -> Result<BatchOutcome, S::Error> {
        if self.stale_memory {
            self.reload().await?;
        }
        let mut outcome = BatchOutcome::default();
        let mut still_blocked: HashMap<String, ()> = HashMap::new();
        let mut unparked = Vec::new();
        let mut changed: Vec<T::Key> = Vec::new();
        let mut checkpoint = self.checkpoint.unwrap_or_default();
        for parked in &self.parked {
            let blocked = parked
                .key
                .as_ref()
                .is_some_and(|k| still_blocked.contains_key(k));
            if !blocked {
                if let Ok((applied, key)) = self.replica.apply_json_keyed(&parked.payload) {
                    if changes_state(applied) {
                        checkpoint.applied += 1;
                        changed.push(key);
                    }
                    outcome.applied.push((parked.stream_sequence, applied));
                    unparked.push(parked.stream_sequence);
                    continue;
                }
            }
            if let Some(key) = &parked.key {
                still_blocked.insert(key.clone(), ());
            }
            outcome
                .parked
                .push((parked.stream_sequence, parked.reason.clone()));
        }
        self.commit(&changed, &[], &unparked, checkpoint).await?;
        self.parked
            .retain(|p| !unparked.contains(&p.stream_sequence));
        self.held.clear();
        for parked in &self.parked {
            if let Some(key) = &parked.key {
                hold(&mut self.held, key, parked.stream_sequence);
            }
        }
        Ok(outcome)
    }

    /// Commits what the replica now holds for the `changed` keys, the
    /// `parked` and `unparked` events and `checkpoint` in one transaction,
    /// and then takes `checkpoint` as the replica's. When the store fails,
    /// memory is marked stale: it is reloaded before the next batch.
    async fn commit(
        &mut self,
        changed: &[T::Key],
        parked: &[Parked],
        unparked: &[u64],
        checkpoint: Checkpoint,
    ) -> Result<(), S::Error> {
        let commit = Commit {
            entries: stored_entries(&self.replica, changed),
            parked,
            unparked,
            checkpoint,
        };
        if let Err(error) = self.store.commit(commit).await {
            self.stale_memory = true;
            return Err(error);
        }
        self.checkpoint = Some(checkpoint);
        Ok(())
    }

    /// If `message` belongs to a key with parked events: its key and why.
    fn held_behind(&self, message: &Message<'_>) -> Option<(Option<String>, String)> {
        if self.held.is_empty() {
            return None;
        }
        let key = match decode_header(message.payload) {
            Ok((header, _)) => header.key.into_owned(),
            Err(error) => error
                .context()
                .key
                .clone()
                .or_else(|| message.key.map(str::to_owned))?,
        };
        // Only what comes after the key's first parked event waits; a
        // redelivery of an earlier message (already applied) goes through
        // the version gate as usual.
        let first = *self.held.get(&key)?;
        (message.stream_sequence > first).then(|| {
            let reason = format!("held behind an earlier parked event of key `{key}`");
            (Some(key), reason)
        })
    }

    fn park(
        &mut self,
        message: &Message<'_>,
        key: Option<String>,
        reason: String,
        parked_now: &mut Vec<Parked>,
        outcome: &mut BatchOutcome,
    ) {
        // What the payload said, else what the transport addressed.
        let key = key.or_else(|| message.key.map(str::to_owned));
        if let Some(key) = &key {
            hold(&mut self.held, key, message.stream_sequence);
        }
        outcome
            .parked
            .push((message.stream_sequence, reason.clone()));
        parked_now.push(Parked {
            stream_sequence: message.stream_sequence,
            subject: message.subject.to_owned(),
            key,
            reason,
            payload: message.payload.to_vec(),
        });
    }
}

/// Records that `key` has a parked event at `stream_sequence`.
fn hold(held: &mut HashMap<String, u64>, key: &str, stream_sequence: u64) {
    held.entry(key.to_owned())
        .and_modify(|first| *first = (*first).min(stream_sequence))
        .or_insert(stream_sequence);
}

fn changes_state(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Inserted | Outcome::Updated | Outcome::Deleted
    )
}

/// What the replica now holds for each changed key, each key once.
fn stored_entries<'a, T: StateEvent>(
    replica: &'a Replica<T>,
    changed: &'a [T::Key],
) -> Vec<StoredEntry<'a, T>> {
    let mut seen = HashSet::with_capacity(changed.len());
    changed
        .iter()
        .filter(|key| seen.insert(*key))
        .filter_map(|key| {
            replica.entry(key).map(|entry| match entry {
                Entry::Live { sequence, state } => StoredEntry {
                    key,
                    sequence,
                    read_version: replica.read_version(key).unwrap_or(T::VERSION),
                    state: Some(state),
                },
                Entry::Tombstone { sequence } => StoredEntry {
                    key,
                    sequence,
                    read_version: T::VERSION,
                    state: None,
                },
            })
        })
        .collect()
}
