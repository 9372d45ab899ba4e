//! NATS JetStream transport (feature `nats`).
//!
//! - [`StateStream`] provisions (or verifies) a stream that keeps the latest
//!   event per subject (`max_messages_per_subject = 1`, like a compacted
//!   Kafka topic) with a duplicate window for `Nats-Msg-Id` de-duplication.
//! - [`Publisher`] publishes envelopes on `<prefix>.<entity>.<key>`, in
//!   CloudEvents structured or binary mode, with `Nats-Msg-Id` = event id
//!   and `Nats-Expected-Last-Subject-Sequence`: by default it never leaves
//!   an older state of a key on top of a newer one.
//! - [`Follower`] bootstraps a [`DurableReplica`](crate::store::DurableReplica)
//!   from the last event of every key, then follows live with a durable pull
//!   consumer, acknowledging only after the batch and its checkpoint are
//!   committed. After a restart it resumes from its checkpoint.
//!   [`RouterFollower`] does the same for a
//!   [`DurableRouter`](crate::store::DurableRouter) of several entities,
//!   with one durable consumer over the prefix and one checkpoint (both are
//!   a [`StreamFollower`] of a [`DurableConsumer`](crate::store::DurableConsumer)).
//! - [`serve_bootstrap`] and [`request_bootstrap`] implement bootstrap by
//!   request/response: the owner answers with ordinary state events, which
//!   merge into the replica by sequence.
//!
//! The server's version is checked before any setting that needs a newer
//! server than nats-server 2.9 ([`ServerVersion`]).

mod binary;
mod bootstrap;
mod follow;
mod lag;
mod lease;
pub mod publish;
mod server;
mod stream;
pub mod subject;

use crate::envelope::EncodeError;
use crate::upcast::BoxError;

pub use crate::consume::RetryPolicy;
pub use bootstrap::{reply_refusal, request_bootstrap, serve_bootstrap, BootstrapRequest};
pub use follow::{FollowSettings, Follower, Progress, RouterFollower, StreamFollower};
pub use lease::LEASE_BUCKET;
pub use publish::{Mode, Published, Publisher, GUARD_ATTEMPTS, GUARD_CACHE_SUBJECTS};
pub use server::ServerVersion;
pub use stream::StateStream;
pub use subject::{decode_key, encode_key, Address, SubjectError, Subjects, MAX_SUBJECT_BYTES};

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// A setting needs a newer nats-server than the one connected.
    #[error(
        "{feature} needs nats-server {needs} or newer, but the server is {server} (older servers \
         silently ignore the setting)"
    )]
    ServerTooOld {
        /// What was asked for.
        feature: &'static str,
        /// The first server version that has it.
        needs: ServerVersion,
        /// The connected server's version.
        server: ServerVersion,
    },
    /// The server reported a version ecst cannot read.
    #[error("the server reported version `{0}`, which is not a version number")]
    UnknownServerVersion(String),
    /// A subject (prefix, entity or key) would not mean what it says.
    #[error("subject `{subject}` is not usable: {reason}")]
    InvalidSubject {
        /// The subject or part of it.
        subject: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A subject would be longer than [`MAX_SUBJECT_BYTES`] (a very long
    /// key): refused before publishing, where the server would drop the
    /// connection's line and the publish would end in a time-out.
    #[error(
        "the subject of this `{entity}` key would be {length} bytes long, over the limit of {limit}"
    )]
    SubjectTooLong {
        /// The entity.
        entity: String,
        /// The subject's length in bytes, with the key encoded.
        length: usize,
        /// [`MAX_SUBJECT_BYTES`].
        limit: usize,
    },
    /// The stream already holds an event of this key with a sequence at
    /// least as high as the one being published (another instance or an
    /// earlier call published a newer state): publishing would put an older
    /// state on top of a newer one, so the guarded [`Publisher`] refuses.
    #[error(
        "`{subject}` already holds sequence {stored}, not older than {attempted}: refusing to \
         overwrite a newer state"
    )]
    NotNewer {
        /// The subject.
        subject: String,
        /// The ecst sequence of the event the stream holds.
        stored: u64,
        /// The sequence refused.
        attempted: u64,
    },
    /// The stream exists with settings that break ECST's assumptions.
    #[error("stream `{stream}` is not a state stream: {reason}")]
    StreamMismatch {
        /// The stream name.
        stream: String,
        /// What differs.
        reason: String,
    },
    /// A JetStream request failed (stream, consumer, fetch).
    #[error("{action} failed: {source}")]
    JetStream {
        /// What was being done.
        action: &'static str,
        /// The client's error.
        source: BoxError,
    },
    /// Publishing failed.
    #[error("publishing to `{subject}` failed: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::jetstream::context::PublishError,
    },
    /// `Nats-Expected-Last-Subject-Sequence` did not match: another event
    /// was published for this key since.
    #[error("`{subject}` changed since stream sequence {expected}: reload and try again")]
    WrongLastSequence {
        /// The subject.
        subject: String,
        /// The sequence the publisher expected to be the last.
        expected: u64,
    },
    /// The state could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The replica store failed, after the retries of the policy.
    #[error("the replica store failed after {attempts} attempts: {source}")]
    Store {
        /// How many times the batch was tried.
        attempts: u32,
        /// The last store error.
        source: BoxError,
    },
    /// A bootstrap request got no complete answer.
    #[error("bootstrap of `{entity}` from its owner failed: {reason}")]
    Bootstrap {
        /// The entity.
        entity: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// An answer to a bootstrap request held an event that was not asked
    /// for: of another entity, or of a key the request did not name (a
    /// foreign responder on the reply subject, or a confused owner). The
    /// whole answer is refused and nothing of it is merged: the replica is
    /// as it was before the request.
    #[error(
        "bootstrap of `{entity}` refused: the answer holds an event of entity `{event_entity}`, \
         key `{event_key}`, which was not asked for (asked: {asked}); nothing of the answer was \
         merged (a foreign responder on the reply subject, or a confused owner)"
    )]
    BootstrapMisaddressed {
        /// The entity asked for.
        entity: &'static str,
        /// The entity the event names (at most 200 bytes, escaped).
        event_entity: String,
        /// The key the event names (at most 200 bytes, escaped).
        event_key: String,
        /// What the request asked for.
        asked: String,
    },
    /// Another follower holds the lease on this durable consumer name: two
    /// followers sharing one name would split its messages between them.
    #[error(
        "durable consumer name `{durable_name}` is in use by {holder}; stop it, or wait up to \
         {ttl:?} after it crashed, or pick another name"
    )]
    DurableNameTaken {
        /// The durable name.
        durable_name: String,
        /// Who holds it, as it described itself.
        holder: String,
        /// The lease's time to live.
        ttl: core::time::Duration,
    },
}

fn jetstream(action: &'static str, source: impl Into<BoxError>) -> NatsError {
    NatsError::JetStream {
        action,
        source: source.into(),
    }
}
