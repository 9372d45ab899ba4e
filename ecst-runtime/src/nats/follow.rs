//! Following a state stream into a durable replica.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{BatchConfig, Config as PullConfig};
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use async_nats::{StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;

use super::binary::to_structured;
use super::bootstrap::{request_bootstrap, BootstrapRequest};
use super::lag::StreamTip;
use super::lease::Lease;
use super::{jetstream, NatsError, ServerVersion, Subjects};
use crate::consume::{BatchOutcome, Message, RetryPolicy};
use crate::event::StateEvent;
use crate::store::{DurableConsumer, DurableReplica, DurableRouter, ReplicaStore, RouterStore};

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
    /// `<prefix>.<entity>.>`, or the prefix's `<prefix>.>` for a
    /// [`DurableRouter`] of several entities (whose messages of other
    /// entities are skipped and counted; on nats-server 2.10, list each
    /// entity's wildcard here instead to leave them on the server). More
    /// than one needs nats-server 2.10.
    pub filter_subjects: Vec<String>,
    /// Messages per fetch (and per commit). While catching up, up to two
    /// batches are delivered and unacknowledged at a time (see
    /// [`Follower`]).
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
    /// The time to live of the lease on `durable_name` (see [`Follower`]):
    /// a follower that stops polling for longer loses it. `None` takes no
    /// lease: only for a durable name that you guarantee one process uses.
    pub lease_ttl: Option<Duration>,
    /// How long [`Follower::start`] waits for another holder's lease to be
    /// released or to expire before it fails with
    /// [`NatsError::DurableNameTaken`].
    pub lease_wait: Duration,
    /// How often, at most, the follower asks the server for the stream's
    /// last sequence for the `ecst_consumer_lag` gauge alone (feature
    /// `metrics`): the lag is that sequence minus the checkpoint. In
    /// between, deliveries keep it up to date on a stream without gaps (see
    /// the README's metrics table).
    pub lag_refresh: Duration,
}

impl FollowSettings {
    /// Settings for `durable_name` on `stream`, with defaults: batches of
    /// 512, 1 s fetch wait, 30 s ack wait, 1 MiB payload limit, a 10 s
    /// lease on the durable name, waited for up to 11 s, the stream's last
    /// sequence read for the lag gauge at most once a second.
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
            lease_ttl: Some(Duration::from_secs(10)),
            lease_wait: Duration::from_secs(11),
            lag_refresh: Duration::from_secs(1),
        }
    }
}

/// What one [`Follower::poll`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Progress {
    /// The batch's outcomes (applied and parked messages).
    pub batch: BatchOutcome,
    /// Messages the server still had for this consumer after the batch, as
    /// the last message of the batch said (0 for an empty batch). The
    /// `ecst_consumer_lag` gauge is another measure: stream sequences past
    /// the checkpoint (see the README's metrics).
    pub pending: u64,
    /// The server confirmed, after this batch was committed and
    /// acknowledged, that the consumer has nothing left: see
    /// [`Progress::caught_up`].
    pub confirmed: bool,
}

impl Progress {
    /// `true` when the replica has caught up with the stream: the batch
    /// left nothing pending *and* the server, asked afterwards, reports no
    /// message pending or awaiting acknowledgement for this consumer.
    ///
    /// An empty fetch alone proves nothing (after a broker restart the
    /// first fetches can come back empty while the stream still holds
    /// thousands of messages for the consumer), so the answer is the
    /// server's own count, read after the batch.
    pub fn caught_up(&self) -> bool {
        self.pending == 0 && self.confirmed
    }
}

/// Keeps a [`DurableReplica`] up to date from a state stream: a
/// [`StreamFollower`] of one replica.
pub type Follower<T, S> = StreamFollower<DurableReplica<T, S>>;

/// Keeps the replicas of a [`DurableRouter`] up to date from one state
/// stream, with one durable consumer over the prefix (`<prefix>.>`) and one
/// checkpoint: a [`StreamFollower`] of a router.
pub type RouterFollower<S> = StreamFollower<DurableRouter<S>>;

/// Keeps a [`DurableConsumer`] up to date from a state stream: a
/// [`DurableReplica`] ([`Follower`]) or a [`DurableRouter`]
/// ([`RouterFollower`]).
///
/// One follower per durable name at a time: [`Follower::start`] takes a
/// lease on the name (a key-value entry in the `ecst_leases` bucket, see
/// [`FollowSettings::lease_ttl`]) and fails with
/// [`NatsError::DurableNameTaken`] while another follower holds it; a
/// crashed holder's lease expires after its time to live. Poll at least
/// every third of it, or the lease lapses.
///
/// On start the follower (re)creates its durable pull consumer from the
/// replica's checkpoint: a new replica starts from the latest state of
/// every key (one wildcard filter subject, as nats-server 2.9 requires):
/// `DeliverPolicy::All` on a state stream (`max_messages_per_subject = 1`,
/// where it delivers exactly what `LastPerSubject` would, for less server
/// work), `DeliverPolicy::LastPerSubject` on a stream that keeps history; a
/// restarted one with `ByStartSequence` just after its checkpoint. Each
/// [`Follower::poll`] fetches a batch, applies and commits it with the
/// checkpoint, and only then acknowledges it, with one acknowledgement (the
/// consumer's `AckPolicy::All`, on the batch's highest stream sequence). A
/// crash anywhere in between loses nothing: unacknowledged messages come
/// again, and those already committed are duplicates.
///
/// While catching up (the server still has messages for the consumer after
/// a batch), a poll asks for the next batch before it applies the current
/// one, so that the server delivers while the replica commits; the next
/// batch is read, applied and acknowledged by the next poll. Poll again
/// promptly while catching up: a batch left waiting longer than `ack_wait`
/// is delivered again later, as a duplicate.
pub struct StreamFollower<C: DurableConsumer> {
    js: Context,
    client: async_nats::Client,
    settings: FollowSettings,
    durable: C,
    consumer: Option<Consumer<PullConfig>>,
    /// The inbox of the next batch, requested ahead (see above).
    next: Option<Subscriber>,
    /// A poll started and did not finish: its future was dropped (a
    /// `select!`, a `timeout`). Messages it had received are delivered but
    /// unacknowledged, so the next poll re-creates the consumer from the
    /// checkpoint, and they come again.
    interrupted: bool,
    /// The consumer sequence of the last delivery received from the
    /// current consumer (`None` right after creating it).
    delivered: Option<u64>,
    /// The lease on the durable name, when the settings ask for one.
    lease: Option<Lease>,
    /// The stream's last sequence, for the consumer lag.
    tip: StreamTip,
    /// What each poll reuses.
    buffers: Buffers,
}

/// The buffers a [`StreamFollower`] reuses from batch to batch (empty
/// between polls), and the refusal of an oversized payload.
struct Buffers {
    /// The messages of the batch.
    messages: Vec<async_nats::Message>,
    /// The stream sequence of each message, and its structured-mode JSON
    /// when it came in binary mode.
    bodies: Vec<(u64, Option<Vec<u8>>)>,
    /// Why a payload above `max_payload` is parked unread.
    too_big: String,
}

impl<C: DurableConsumer> StreamFollower<C> {
    /// Checks the settings against the server and creates the consumer.
    pub async fn start(
        client: async_nats::Client,
        settings: FollowSettings,
        durable: C,
    ) -> Result<Self, NatsError> {
        let server = ServerVersion::of(&client)?;
        // Spans and metrics name the stream and the durable name.
        let durable = durable.with_consumer(&settings.stream, &settings.durable_name);
        if settings.filter_subjects.len() > 1 {
            server.require("following several filter subjects", ServerVersion::V2_10)?;
        }
        let js = jetstream::new(client.clone());
        let lease = match settings.lease_ttl {
            None => None,
            Some(ttl) => {
                let holder = format!(
                    "follower {} (process {})",
                    client.new_inbox().trim_start_matches("_INBOX."),
                    std::process::id()
                );
                let lease = Lease::acquire(
                    &js,
                    &settings.stream,
                    &settings.durable_name,
                    holder,
                    ttl,
                    settings.lease_wait,
                )
                .await?;
                Some(lease)
            }
        };
        let settings_lag_refresh = settings.lag_refresh;
        let buffers = Buffers {
            messages: Vec::with_capacity(settings.batch),
            bodies: Vec::with_capacity(settings.batch),
            too_big: format!(
                "payload exceeds the {} byte limit of this follower",
                settings.max_payload
            ),
        };
        let mut follower = StreamFollower {
            js,
            client,
            settings,
            durable,
            consumer: None,
            next: None,
            interrupted: false,
            delivered: None,
            lease,
            tip: StreamTip::new(settings_lag_refresh),
            buffers,
        };
        // A cluster electing a leader answers with time-outs for a while:
        // retried like a fetch.
        let mut attempt = 0;
        loop {
            match follower.create_consumer().await {
                Ok(()) => return Ok(follower),
                Err(error) => {
                    attempt += 1;
                    if attempt >= follower.settings.retry.attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(follower.settings.retry.backoff(attempt)).await;
                }
            }
        }
    }

    /// The replica (or router) and its checkpoint.
    pub fn replica(&self) -> &C {
        &self.durable
    }

    /// The replica (or router), mutably (to retry parked events, say).
    pub fn replica_mut(&mut self) -> &mut C {
        &mut self.durable
    }

    /// Stops following and returns the replica (or router). The lease on
    /// the durable name is left to expire; [`StreamFollower::stop`]
    /// releases it at once.
    pub fn into_replica(self) -> C {
        self.durable
    }

    /// Stops following, releases the lease on the durable name (so that a
    /// successor can start at once), and returns the replica (or router).
    pub async fn stop(mut self) -> C {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
        self.durable
    }

    async fn create_consumer(&mut self) -> Result<(), NatsError> {
        // A batch requested from the consumer being replaced is not read.
        self.next = None;
        self.delivered = None;
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(|e| jetstream("looking up the state stream", e))?;
        let info = stream.cached_info();
        let created = std::time::SystemTime::from(info.created);
        let last_sequence = info.state.last_sequence;
        self.tip.read(last_sequence, Instant::now());
        let one_per_subject = info.config.max_messages_per_subject == 1;
        // The checkpoint stores the identity (creation time) of the stream
        // its positions count in, so this holds across restarts too.
        let recreated = self
            .durable
            .stream_created()
            .is_some_and(|seen| seen != created);
        // A stream deleted and created again (or restored from an older
        // backup) numbers its messages afresh: resuming after the
        // checkpoint would skip the new stream's first messages (all of
        // them when it is shorter), silently. Start over from the latest
        // event of every key instead; the version gate keeps what the
        // replica already holds where it is newer.
        if recreated || self.durable.resume_after() > last_sequence {
            tracing::warn!(
                stream = %self.settings.stream,
                checkpoint = self.durable.resume_after(),
                last_sequence,
                recreated,
                "the state stream was re-created or reset below the checkpoint: bootstrapping again"
            );
            self.durable
                .rewind_stream_position()
                .await
                .map_err(|error| NatsError::Store {
                    attempts: 1,
                    source: Box::new(error),
                })?;
        }
        // Written with the next commit's checkpoint: a position is only
        // ever stored with the stream it counts in.
        self.durable.set_stream_created(created);
        // The replica's checkpoint is the truth: whatever the server
        // remembers of an earlier consumer of this name is replaced.
        let _ = stream.delete_consumer(&self.settings.durable_name).await;
        let resume_after = self.durable.resume_after();
        let deliver_policy = if resume_after > 0 {
            DeliverPolicy::ByStartSequence {
                start_sequence: resume_after + 1,
            }
        } else if one_per_subject {
            // A state stream holds only each subject's last message, so
            // delivering all it holds is delivering the last per subject:
            // the same messages in the same order (tests/deliver_policy.rs),
            // and cheaper for the server (17-18% less CPU, measured in
            // benches/nats.rs).
            DeliverPolicy::All
        } else {
            DeliverPolicy::LastPerSubject
        };
        let mut config = PullConfig {
            durable_name: Some(self.settings.durable_name.clone()),
            deliver_policy,
            // One acknowledgement per batch, after its commit (see
            // `acknowledge`), instead of one per message: less work for the
            // server and for this client.
            ack_policy: AckPolicy::All,
            ack_wait: self.settings.ack_wait,
            // No limit (-1): the follower bounds what it holds itself (one
            // batch being committed, the next one requested ahead). A limit
            // is not only unneeded but harmful: nats-server 2.9 takes the
            // next sequence off a `LastPerSubject` consumer's list before it
            // checks the limit, and when the limit is reached (acknowledgements
            // of earlier batches still queued on the server) that message is
            // never delivered, and the next commit moves the checkpoint past
            // it. Seen with a limit of 4 batches under load.
            max_ack_pending: -1,
            ..PullConfig::default()
        };
        match self.settings.filter_subjects.as_slice() {
            [] => {
                config.filter_subject = match self.durable.entities().as_slice() {
                    [entity] => self.settings.subjects.entity(entity),
                    _ => self.settings.subjects.all(),
                }
            }
            [one] => config.filter_subject = one.clone(),
            many => config.filter_subjects = many.to_vec(),
        }
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| jetstream("creating the durable consumer", e))?;
        // The new consumer this normally is. If the old one could not be
        // deleted (no permission to, a broker restarting), the server returns
        // it as it is when its configuration matches: it goes on from where
        // it was. That is safe only if it holds no delivery this follower has
        // not committed: acknowledgements are by batch (`AckPolicy::All`), so
        // acknowledging this run's first batch would also acknowledge what the
        // old consumer delivered to a run that died before committing it, and
        // those messages would never come again. Refused, with the reason.
        let info = consumer.cached_info();
        // A new consumer has delivered nothing (its delivered stream
        // sequence is where it starts, less one). An old one is resumed only
        // if everything it delivered was acknowledged, so committed, at or
        // below the checkpoint: it can then only deliver again what the
        // replica holds, or what comes next.
        let fresh = info.delivered.consumer_sequence == 0;
        if !fresh && (info.num_ack_pending > 0 || info.delivered.stream_sequence > resume_after) {
            return Err(jetstream(
                "creating the durable consumer",
                format!(
                    "an earlier consumer named `{}` could not be deleted and holds deliveries \
                     this follower has not committed ({} awaiting acknowledgement, delivered \
                     through stream sequence {}, checkpoint {resume_after}); resuming it could \
                     acknowledge messages never applied. Allow this client to delete it \
                     (`$JS.API.CONSUMER.DELETE.{}.{}`, see docs/nats-permissions.md) or delete \
                     it by hand",
                    self.settings.durable_name,
                    info.num_ack_pending,
                    info.delivered.stream_sequence,
                    self.settings.stream,
                    self.settings.durable_name,
                ),
            ));
        }
        // Deliveries are numbered from what the server says it delivered
        // (0 for a new consumer; more for an old one returned as it is).
        self.delivered = Some(info.delivered.consumer_sequence);
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
    ///
    /// # Cancellation
    ///
    /// Cancellation-safe: if the future is dropped at any await (inside a
    /// `select!` or a `timeout`), nothing is lost. The messages it had
    /// received are unacknowledged, so the next poll re-creates the
    /// consumer from the checkpoint and they are delivered again; a commit
    /// in flight is either durable (and the redelivery a duplicate) or not
    /// (and memory is reloaded from the store).
    pub async fn poll(&mut self) -> Result<Progress, NatsError> {
        if self.interrupted {
            self.consumer = None;
            self.next = None;
        }
        if let Some(lease) = &mut self.lease {
            if lease.renew_if_due(&self.settings.durable_name).await? {
                // The lease had expired: someone may have used the name
                // meanwhile. Start the consumer again from the checkpoint.
                self.consumer = None;
                self.next = None;
            }
        }
        self.interrupted = true;
        let result = self.poll_once().await;
        self.interrupted = false;
        if result.is_err() {
            // The failed batch was delivered but not acknowledged: the
            // server would go on with the messages after it and deliver it
            // again only after `ack_wait`, and the next commit would move
            // the checkpoint past events never applied (lost for good if
            // the process then restarts from the checkpoint). Re-create the
            // consumer from the checkpoint on the next poll instead, and
            // drop the batch requested ahead from this one.
            self.consumer = None;
            self.next = None;
        }
        result
    }

    async fn poll_once(&mut self) -> Result<Progress, NatsError> {
        // The buffers of the last batch, emptied, are filled again.
        let mut messages = std::mem::take(&mut self.buffers.messages);
        let mut bodies = std::mem::take(&mut self.buffers.bodies);
        let mut attempt = 0;
        loop {
            match self.fetch(&mut messages).await {
                Ok(()) => break,
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
        }
        let mut pending = 0;
        // The message to acknowledge the batch with: the one of the highest
        // stream sequence (see `acknowledge`).
        let mut highest: Option<(u64, usize)> = None;
        let mut gap = false;
        for (index, message) in messages.iter().enumerate() {
            let info = message
                .reply
                .as_ref()
                .and_then(|reply| ack_info(reply.as_str()))
                .ok_or_else(|| {
                    jetstream(
                        "reading a message's stream sequence",
                        "the message has no JetStream acknowledgement subject",
                    )
                })?;
            // The consumer numbers its deliveries 1, 2, 3…: a number
            // skipped is a message the server delivered and this follower
            // never received (a connection lost mid-batch, a broker
            // restart). Nothing after it may be committed, or the
            // checkpoint would pass it: apply what came before, then start
            // the consumer again from the checkpoint.
            let expected = self.delivered.unwrap_or(0) + 1;
            if info.consumer_sequence != expected {
                tracing::warn!(
                    stream = %self.settings.stream,
                    expected,
                    received = info.consumer_sequence,
                    "a delivery was lost: resuming from the checkpoint"
                );
                messages.truncate(index);
                gap = true;
                break;
            }
            self.delivered = Some(info.consumer_sequence);
            pending = info.pending;
            self.tip.delivered(info.stream_sequence, info.pending);
            if highest.is_none_or(|(sequence, _)| info.stream_sequence > sequence) {
                highest = Some((info.stream_sequence, index));
            }
            let converted = to_structured(message.headers.as_ref(), &message.payload);
            bodies.push((info.stream_sequence, converted));
        }
        if gap {
            pending = pending.max(1);
        } else if pending > 0 {
            // The server has more: ask for the next batch now, so that it is
            // delivered while this one is applied and committed. It is read,
            // applied and acknowledged by the next poll, after this batch is
            // acknowledged. If asking fails, the next poll asks again.
            self.next = self.request().await.ok();
        }
        let batch: Vec<Message<'_>> = messages
            .iter()
            .zip(&bodies)
            .map(|(message, (sequence, converted))| {
                let payload: &[u8] = converted.as_deref().unwrap_or(&message.payload);
                let subject = message.subject.as_str();
                // The subject is the message's address: it applies only if
                // its envelope names the same entity and key.
                // An invalid one keeps the entity it names, so that a
                // router parks it under that entity as its replica would.
                let address = self.settings.subjects.message_address(subject);
                Message {
                    stream_sequence: *sequence,
                    subject,
                    payload,
                    refused: (payload.len() > self.settings.max_payload)
                        .then_some(self.buffers.too_big.as_str()),
                    address,
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
        drop(batch);
        // Committed: now, and only now, the batch is acknowledged.
        if let Some((_, index)) = highest {
            self.acknowledge(&messages[index]).await;
        }
        messages.clear();
        bodies.clear();
        self.buffers.messages = messages;
        self.buffers.bodies = bodies;
        if gap {
            self.consumer = None;
            self.next = None;
        }
        let confirmed = pending == 0 && self.nothing_left().await;
        if !confirmed && self.tip.due(Instant::now()) {
            self.read_tip().await;
        }
        self.durable
            .record_lag(self.tip.lag(self.durable.resume_after(), confirmed));
        Ok(Progress {
            batch: outcome,
            pending,
            confirmed,
        })
    }

    /// Acknowledges a committed batch by its message of the highest stream
    /// sequence: the consumer's `AckPolicy::All` takes it as the
    /// acknowledgement of every message it delivered up to that sequence.
    ///
    /// Safe, because any such message is committed: within one consumer,
    /// first deliveries come in stream order, so a message below the batch's
    /// highest sequence was delivered in this batch or an earlier one (all
    /// committed), or is a redelivery, in the batch requested ahead, of
    /// one of them. A delivery lost on the way re-creates the consumer (see
    /// `poll_once`), and an interrupted or failed poll too, before anything
    /// after it is acknowledged. And the consumer delivers only to this run:
    /// `create_consumer` replaces any earlier consumer of the name, and
    /// refuses one it cannot replace that holds deliveries not committed
    /// here (otherwise this acknowledgement would cover them, unseen).
    ///
    /// A lost acknowledgement only means a redelivery, which the checkpoint
    /// and the version gate turn into a duplicate. (This is
    /// `jetstream::Message::ack`: an empty message to the reply subject.)
    async fn acknowledge(&self, message: &async_nats::Message) {
        if let Some(reply) = &message.reply {
            let _ = self.client.publish(reply.clone(), Bytes::new()).await;
        }
    }

    /// Reads the stream's last sequence for the lag gauge (a request to the
    /// server); on failure the gauge keeps what deliveries said.
    async fn read_tip(&mut self) {
        if let Ok(stream) = self.js.get_stream(&self.settings.stream).await {
            self.tip
                .read(stream.cached_info().state.last_sequence, Instant::now());
        }
    }

    /// Whether the server says this consumer has no message left to
    /// deliver, and that every delivery it made reached this follower.
    /// `false` when it cannot say (an error): the caller polls again. If the
    /// server made a delivery this follower never received (its delivery
    /// count is ahead of the last one received), the consumer is re-created
    /// from the checkpoint so that it comes again.
    ///
    /// Deliveries are compared by the consumer's own count, not by stream
    /// sequence: a consumer with a filter moves its stream position past
    /// messages that do not match it without delivering them.
    ///
    /// Nothing left is also checked against the stream's leader: a
    /// consumer delivers from its own cluster node's copy of the stream,
    /// and after nodes crash nats-server 2.9 can leave a node whose copy
    /// differs from the leader's (extra messages, numbered past the
    /// leader's last sequence, and missing ones). A checkpoint past the
    /// leader's last sequence is that: the consumer is re-created, which
    /// starts over from the latest event of every key (see
    /// `create_consumer`), until it reads a copy that agrees.
    async fn nothing_left(&mut self) -> bool {
        let received = self.delivered.unwrap_or(0);
        let Some(consumer) = self.consumer.as_mut() else {
            return false;
        };
        let Ok(info) = consumer.info().await else {
            return false;
        };
        if info.delivered.consumer_sequence > received {
            self.consumer = None;
            self.next = None;
            return false;
        }
        if info.num_pending != 0 {
            return false;
        }
        let leader_last = match self.js.get_stream(&self.settings.stream).await {
            Ok(stream) => stream.cached_info().state.last_sequence,
            Err(_) => return false,
        };
        self.tip.read(leader_last, Instant::now());
        if self.durable.resume_after() > leader_last {
            tracing::warn!(
                stream = %self.settings.stream,
                checkpoint = self.durable.resume_after(),
                leader_last,
                "the consumer read a copy of the stream numbered past the leader's last \
                 sequence (a cluster node that diverged): starting over from the latest event \
                 of every key"
            );
            self.consumer = None;
            self.next = None;
            return false;
        }
        true
    }

    /// Fetches one batch into `messages` (emptied first).
    async fn fetch(&mut self, messages: &mut Vec<async_nats::Message>) -> Result<(), NatsError> {
        messages.clear();
        if self.consumer.is_none() {
            self.create_consumer().await?;
        }
        let inbox = match self.next.take() {
            Some(inbox) => inbox,
            None => self.request().await?,
        };
        self.receive(inbox, messages).await
    }

    /// Sends a pull request for one batch; its messages arrive in the
    /// returned inbox. The request is the one of async-nats'
    /// `Consumer::fetch`: no waiting on the server when the consumer has
    /// nothing (within `fetch_wait`).
    async fn request(&self) -> Result<Subscriber, NatsError> {
        let consumer = self
            .consumer
            .as_ref()
            .ok_or_else(|| jetstream("fetching a batch", "the consumer is gone"))?;
        let inbox = self.client.new_inbox();
        let subscriber = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| jetstream("fetching a batch", e))?;
        let request = BatchConfig {
            batch: self.settings.batch,
            expires: Some(self.settings.fetch_wait),
            no_wait: true,
            ..BatchConfig::default()
        };
        consumer
            .request_batch(request, inbox.into())
            .await
            .map_err(|e| jetstream("fetching a batch", e))?;
        Ok(subscriber)
    }

    /// Reads the messages of one pull request, until the batch is full or
    /// the server ends the request (nothing more, or `fetch_wait` over).
    ///
    /// As in async-nats' `fetch`, a request the server never ends (a lost
    /// connection) ends after `fetch_wait` plus 5 seconds; but that time
    /// runs from the start of reading, not from the request, so that a
    /// batch requested ahead does not expire while the one before it
    /// commits (the messages it already holds would be lost, and the next
    /// batch would move the checkpoint past them).
    async fn receive(
        &self,
        mut inbox: Subscriber,
        messages: &mut Vec<async_nats::Message>,
    ) -> Result<(), NatsError> {
        let deadline =
            tokio::time::Instant::now() + self.settings.fetch_wait + Duration::from_secs(5);
        messages.reserve(self.settings.batch);
        while messages.len() < self.settings.batch {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, inbox.next()).await else {
                break;
            };
            // A stream message carries its acknowledgement subject, whatever
            // status line its publisher put in its headers (a raw client can
            // store `NATS/1.0 503` in the stream): it is a message to apply
            // or park, never the server's answer to the fetch.
            let stored = message
                .reply
                .as_ref()
                .is_some_and(|reply| reply.as_str().starts_with("$JS.ACK."));
            if stored {
                messages.push(message);
                continue;
            }
            match message.status {
                None | Some(StatusCode::OK) => messages.push(message),
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                // No more messages, or the request expired.
                Some(StatusCode::NOT_FOUND | StatusCode::TIMEOUT) => break,
                Some(status) => {
                    let reason = message.description.as_deref().unwrap_or("no description");
                    return Err(jetstream(
                        "receiving a message",
                        format!("the server answered the fetch with status {status} ({reason})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Polls until the replica has caught up with the stream (see
    /// [`Progress::caught_up`]). Cancellation-safe, as [`Follower::poll`].
    pub async fn catch_up(&mut self) -> Result<(), NatsError> {
        loop {
            if self.poll().await?.caught_up() {
                return Ok(());
            }
        }
    }
}

impl<T: StateEvent, S: ReplicaStore<T>> StreamFollower<DurableReplica<T, S>> {
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

impl<S: RouterStore> StreamFollower<DurableRouter<S>> {
    /// Asks the owner of entity `T` for its current state (all keys, or
    /// some) and merges the answer into the router's replica of `T` by
    /// sequence, as [`Follower::bootstrap_from_owner`] does for one
    /// replica. The checkpoint does not move; answers of an entity the
    /// router does not hold, or that cannot be applied, are in
    /// [`BatchOutcome::rejected`].
    pub async fn bootstrap_from_owner<T: StateEvent>(
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

/// What a JetStream message's reply subject says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AckInfo {
    /// Its sequence in the stream.
    stream_sequence: u64,
    /// Its delivery number from the consumer: 1, 2, 3… per consumer.
    consumer_sequence: u64,
    /// Messages the consumer had left after it.
    pending: u64,
}

/// The stream sequence, consumer sequence and pending count of a JetStream
/// message, from its reply subject (ADR-15):
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>`,
/// or with `<domain>.<account hash>.` before the stream and possibly more
/// tokens at the end. `None` for anything else.
///
/// What `jetstream::Message::info` reads too, without its other fields
/// (the timestamp's conversion costs more than the rest).
fn ack_info(reply: &str) -> Option<AckInfo> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens: [&[u8]; 9] = [&[]; 9];
    let mut count = 0;
    for token in rest.as_bytes().split(|&byte| byte == b'.') {
        if let Some(slot) = tokens.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let (stream_sequence, consumer_sequence, pending) = match count {
        7 => (tokens[3], tokens[4], tokens[6]),
        9.. => (tokens[5], tokens[6], tokens[8]),
        _ => return None,
    };
    Some(AckInfo {
        stream_sequence: number(stream_sequence)?,
        consumer_sequence: number(consumer_sequence)?,
        pending: number(pending)?,
    })
}

/// A decimal `u64` (digits only), `None` for anything else or an overflow.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &byte| {
        let digit = byte.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(stream_sequence: u64, consumer_sequence: u64, pending: u64) -> AckInfo {
        AckInfo {
            stream_sequence,
            consumer_sequence,
            pending,
        }
    }

    #[test]
    fn reads_both_forms_of_the_acknowledgement_subject() {
        // nats-server 2.9: no domain, no account hash.
        assert_eq!(
            ack_info("$JS.ACK.ACCOUNTS.billing.1.4711.12.1700000000000000000.88"),
            Some(info(4711, 12, 88))
        );
        // ADR-15: domain (`_` for none), account hash, a trailing token.
        assert_eq!(
            ack_info("$JS.ACK._.HASH.ACCOUNTS.billing.2.4711.13.1700000000000000000.0.r4nd"),
            Some(info(4711, 13, 0))
        );
        assert_eq!(
            ack_info("$JS.ACK.hub.HASH.ACCOUNTS.billing.2.4711.13.1700000000000000000.5"),
            Some(info(4711, 13, 5))
        );
        assert_eq!(
            ack_info("$JS.ACK.S.c.1.18446744073709551615.1.1.0"),
            Some(info(u64::MAX, 1, 0))
        );
        for bad in [
            "",
            "_INBOX.abc",
            "$JS.ACK.ACCOUNTS.billing.1.4711.12.1700000000000000000",
            "$JS.ACK.ACCOUNTS.billing.1.x.12.1700000000000000000.88",
            "$JS.ACK.ACCOUNTS.billing.1.4711.12.1700000000000000000.-1",
            "$JS.ACK._.HASH.ACCOUNTS.billing.2.4711.13.1700000000000000000",
            "$JS.ACK.ACCOUNTS.billing.1.4711.12.1700000000000000000.",
            "$JS.ACK.ACCOUNTS.billing.1.4711.12.1700000000000000000.18446744073709551616",
        ] {
            assert_eq!(ack_info(bad), None, "{bad:?}");
        }
    }
}
