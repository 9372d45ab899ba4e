//! Following a state stream into a durable replica.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;

use super::binary::to_structured;
use super::bootstrap::{request_bootstrap, BootstrapRequest};
use super::{jetstream, NatsError, ServerVersion, Subjects};
use crate::event::StateEvent;
use crate::store::{BatchOutcome, DurableReplica, Message, ReplicaStore};

/// Retries of a batch whose commit failed (the store was unreachable, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per batch before [`Follower::poll`] gives up with
    /// [`NatsError::Store`]; the batch stays unacknowledged and is delivered
    /// again later.
    pub attempts: u32,
    /// The wait after the first failure; doubled after each one.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How a [`Follower`] consumes.
#[derive(Clone, Debug)]
pub struct FollowSettings {
    /// The state stream's name.
    pub stream: String,
    /// The durable consumer's name: one follower per name at a time.
    pub durable_name: String,
    /// The subjects the stream uses.
    pub subjects: Subjects,
    /// Subjects to follow; empty (the default) means the entity's wildcard
    /// `<prefix>.<entity>.>`. More than one needs nats-server 2.10.
    pub filter_subjects: Vec<String>,
    /// Messages per fetch (and per commit).
    pub batch: usize,
    /// How long a fetch waits for messages when the stream is idle.
    pub fetch_wait: Duration,
    /// How long the server waits for an acknowledgement before delivering
    /// a message again.
    pub ack_wait: Duration,
    /// Payloads above this many bytes are parked unread.
    pub max_payload: usize,
    /// Retries of a failed commit.
    pub retry: RetryPolicy,
}

impl FollowSettings {
    /// Settings for `durable_name` on `stream`, with defaults: batches of
    /// 512, 1 s fetch wait, 30 s ack wait, 1 MiB payload limit.
    pub fn new(
        stream: impl Into<String>,
        durable_name: impl Into<String>,
        subjects: Subjects,
    ) -> Self {
        FollowSettings {
            stream: stream.into(),
            durable_name: durable_name.into(),
            subjects,
            filter_subjects: Vec::new(),
            batch: 512,
            fetch_wait: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            max_payload: 1 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

/// What one [`Follower::poll`] did.
#[derive(Debug, Default)]
pub struct Progress {
    /// The batch's outcomes (applied and parked messages).
    pub batch: BatchOutcome,
    /// Messages the server still had for this consumer after the batch.
    pub pending: u64,
}

impl Progress {
    /// `true` when the replica has caught up with the stream.
    pub fn caught_up(&self) -> bool {
        self.pending == 0
    }
}

/// Keeps a [`DurableReplica`] up to date from a state stream.
///
/// On start the follower (re)creates its durable pull consumer from the
/// replica's checkpoint: a new replica starts with
/// `DeliverPolicy::LastPerSubject` (the latest state of every key, one
/// wildcard filter subject, as nats-server 2.9 requires), a restarted one
/// with `ByStartSequence` just after its checkpoint. Each
/// [`Follower::poll`] fetches a batch, applies and commits it with the
/// checkpoint, and only then acknowledges it. A crash anywhere in between
/// loses nothing: unacknowledged messages come again, and those already
/// committed are duplicates.
pub struct Follower<T: StateEvent, S: ReplicaStore<T>> {
    js: Context,
    client: async_nats::Client,
    settings: FollowSettings,
    durable: DurableReplica<T, S>,
    consumer: Option<Consumer<PullConfig>>,
}

impl<T: StateEvent, S: ReplicaStore<T>> Follower<T, S> {
    /// Checks the settings against the server and creates the consumer.
    pub async fn start(
        client: async_nats::Client,
        settings: FollowSettings,
        durable: DurableReplica<T, S>,
    ) -> Result<Self, NatsError> {
        let server = ServerVersion::of(&client)?;
        if settings.filter_subjects.len() > 1 {
            server.require("following several filter subjects", ServerVersion::V2_10)?;
        }
        let mut follower = Follower {
            js: jetstream::new(client.clone()),
            client,
            settings,
            durable,
            consumer: None,
        };
        follower.create_consumer().await?;
        Ok(follower)
    }

    /// The replica and its checkpoint.
    pub fn replica(&self) -> &DurableReplica<T, S> {
        &self.durable
    }

    /// The replica, mutably (to retry parked events, say).
    pub fn replica_mut(&mut self) -> &mut DurableReplica<T, S> {
        &mut self.durable
    }

    /// Stops following and returns the replica.
    pub fn into_replica(self) -> DurableReplica<T, S> {
        self.durable
    }

    async fn create_consumer(&mut self) -> Result<(), NatsError> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(|e| jetstream("looking up the state stream", e))?;
        // The replica's checkpoint is the truth: whatever the server
        // remembers of an earlier consumer of this name is replaced.
        let _ = stream.delete_consumer(&self.settings.durable_name).await;
        let resume_after = self.durable.resume_after();
        let deliver_policy = if resume_after == 0 {
            DeliverPolicy::LastPerSubject
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: resume_after + 1,
            }
        };
        let mut config = PullConfig {
            durable_name: Some(self.settings.durable_name.clone()),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_ack_pending: i64::try_from(self.settings.batch.saturating_mul(4))
                .unwrap_or(i64::MAX),
            ..PullConfig::default()
        };
        match self.settings.filter_subjects.as_slice() {
            [] => config.filter_subject = self.settings.subjects.entity(T::ENTITY),
            [one] => config.filter_subject = one.clone(),
            many => config.filter_subjects = many.to_vec(),
        }
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| jetstream("creating the durable consumer", e))?;
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Fetches one batch (waiting up to `fetch_wait` if the stream is idle),
    /// applies it, commits it with the checkpoint, then acknowledges it.
    ///
    /// Transient broker trouble (a restart, a lost connection) is retried
    /// inside, re-creating the consumer from the checkpoint; a store that
    /// keeps failing ends in [`NatsError::Store`] with the batch
    /// unacknowledged. The next poll then starts over from the checkpoint,
    /// so the failed batch comes again first.
    pub async fn poll(&mut self) -> Result<Progress, NatsError> {
        let result = self.poll_once().await;
        if result.is_err() {
            // The failed batch was delivered but not acknowledged: the
            // server would go on with the messages after it and deliver it
            // again only after `ack_wait`, and the next commit would move
            // the checkpoint past events never applied (lost for good if
            // the process then restarts from the checkpoint). Re-create the
            // consumer from the checkpoint on the next poll instead.
            self.consumer = None;
        }
        result
    }

    async fn poll_once(&mut self) -> Result<Progress, NatsError> {
        let mut attempt = 0;
        let messages = loop {
            match self.fetch().await {
                Ok(messages) => break messages,
                Err(error) => {
                    attempt += 1;
                    if attempt >= self.settings.retry.attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(self.settings.retry.backoff(attempt)).await;
                    // The broker may have restarted or lost the consumer.
                    let _ = self.create_consumer().await;
                }
            }
        };
        let mut pending = 0;
        let mut bodies: Vec<(u64, Option<Vec<u8>>)> = Vec::with_capacity(messages.len());
        for message in &messages {
            let info = message
                .info()
                .map_err(|e| jetstream("reading a message's stream sequence", e))?;
            pending = info.pending;
            let converted = to_structured(message.headers.as_ref(), &message.payload);
            bodies.push((info.stream_sequence, converted));
        }
        let too_big = format!(
            "payload exceeds the {} byte limit of this follower",
            self.settings.max_payload
        );
        let batch: Vec<Message<'_>> = messages
            .iter()
            .zip(&bodies)
            .map(|(message, (sequence, converted))| {
                let payload: &[u8] = converted.as_deref().unwrap_or(&message.payload);
                let subject = message.subject.as_str();
                Message {
                    stream_sequence: *sequence,
                    subject,
                    payload,
                    refused: (payload.len() > self.settings.max_payload)
                        .then_some(too_big.as_str()),
                    // Garbage and refused payloads cannot name their key;
                    // the subject does, so they still hold their key back.
                    key: self.settings.subjects.key_of(T::ENTITY, subject),
                }
            })
            .collect();
        let mut attempt = 0;
        let outcome = loop {
            match self.durable.apply_batch(&batch).await {
                Ok(outcome) => break outcome,
                Err(error) => {
                    attempt += 1;
                    if attempt >= self.settings.retry.attempts {
                        return Err(NatsError::Store {
                            attempts: attempt,
                            source: Box::new(error),
                        });
                    }
                    tokio::time::sleep(self.settings.retry.backoff(attempt)).await;
                }
            }
        };
        for message in &messages {
            // A lost acknowledgement only means a redelivery, which the
            // checkpoint and the version gate turn into a duplicate.
            let _ = message.ack().await;
        }
        Ok(Progress {
            batch: outcome,
            pending,
        })
    }

    async fn fetch(&mut self) -> Result<Vec<jetstream::Message>, NatsError> {
        if self.consumer.is_none() {
            self.create_consumer().await?;
        }
        let Some(consumer) = &self.consumer else {
            return Ok(Vec::new());
        };
        let mut batch = consumer
            .fetch()
            .max_messages(self.settings.batch)
            .expires(self.settings.fetch_wait)
            .messages()
            .await
            .map_err(|e| jetstream("fetching a batch", e))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| jetstream("receiving a message", e))?);
        }
        Ok(messages)
    }

    /// Polls until the replica has caught up with the stream.
    pub async fn catch_up(&mut self) -> Result<(), NatsError> {
        loop {
            if self.poll().await?.caught_up() {
                return Ok(());
            }
        }
    }

    /// Asks the owner for the current state (all keys, or some) and merges
    /// the answer into the replica by sequence: a state older than what the
    /// replica holds (a live update that arrived meanwhile) is stale and
    /// ignored. The checkpoint does not move. Answers that cannot be
    /// applied are in [`BatchOutcome::rejected`], not parked (see
    /// [`DurableReplica::merge_unsequenced`]).
    pub async fn bootstrap_from_owner(
        &mut self,
        request: &BootstrapRequest,
        timeout: Duration,
    ) -> Result<BatchOutcome, NatsError> {
        let events =
            request_bootstrap::<T>(&self.client, &self.settings.subjects, request, timeout).await?;
        let payloads: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
        self.durable
            .merge_unsequenced(&payloads)
            .await
            .map_err(|error| NatsError::Store {
                attempts: 1,
                source: Box::new(error),
            })
    }
}
