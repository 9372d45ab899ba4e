//! The state stream: the latest event per subject.

use std::time::Duration;

use async_nats::jetstream::stream::{Compression, Config, DiscardPolicy, StorageType, Stream};
use async_nats::jetstream::Context;

use super::{jetstream, NatsError, ServerVersion, Subjects};

/// A JetStream stream holding the latest state event of every key
/// (`max_messages_per_subject = 1`), over `<prefix>.>`.
#[derive(Clone, Debug)]
pub struct StateStream {
    /// The stream's name (no spaces, dots or wildcards), e.g. `ECST_CRM`.
    pub name: String,
    /// The subjects it captures: everything under the prefix.
    pub subjects: Subjects,
    /// How long the server remembers `Nats-Msg-Id`s to drop duplicate
    /// publishes. Default 2 minutes.
    pub duplicate_window: Duration,
    /// Replicas in a cluster (1 on a single server).
    pub replicas: usize,
    /// File (default, survives restarts) or memory storage.
    pub storage: StorageType,
    /// S2 compression of the stored messages; needs nats-server 2.10.
    pub compression: bool,
}

impl StateStream {
    /// A file-backed stream `name` over `subjects`, with the defaults above.
    pub fn new(name: impl Into<String>, subjects: Subjects) -> Self {
        StateStream {
            name: name.into(),
            subjects,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            storage: StorageType::File,
            compression: false,
        }
    }

    /// Creates the stream, or checks that the existing one keeps one
    /// message per subject over the prefix, and no limit (`max_age`, or
    /// `max_messages`/`max_bytes` with discard-old) that would drop the
    /// state of keys that rarely change. Refuses settings the server is too
    /// old for.
    pub async fn ensure(&self, js: &Context, server: ServerVersion) -> Result<Stream, NatsError> {
        if self.compression {
            server.require("stream compression", ServerVersion::V2_10)?;
        }
        let config = Config {
            name: self.name.clone(),
            subjects: vec![self.subjects.all()],
            max_messages_per_subject: 1,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            storage: self.storage,
            compression: self.compression.then_some(Compression::S2),
            ..Config::default()
        };
        let mut stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| jetstream("creating the state stream", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| jetstream("reading the state stream's settings", e))?;
        let existing = &info.config;
        if existing.max_messages_per_subject != 1 {
            return Err(NatsError::StreamMismatch {
                stream: self.name.clone(),
                reason: format!(
                    "it keeps {} messages per subject; a state stream keeps 1 (the latest state)",
                    existing.max_messages_per_subject
                ),
            });
        }
        let wanted = self.subjects.all();
        if !existing.subjects.contains(&wanted) {
            return Err(NatsError::StreamMismatch {
                stream: self.name.clone(),
                reason: format!("it captures {:?}, not `{wanted}`", existing.subjects),
            });
        }
        // Limits that silently drop the state of keys that rarely change.
        if !existing.max_age.is_zero() {
            return Err(NatsError::StreamMismatch {
                stream: self.name.clone(),
                reason: format!(
                    "its messages expire after {:?}; a state stream keeps every key's latest \
                     state until the key changes",
                    existing.max_age
                ),
            });
        }
        let limited = existing.max_messages > 0 || existing.max_bytes > 0;
        if limited && existing.discard == DiscardPolicy::Old {
            return Err(NatsError::StreamMismatch {
                stream: self.name.clone(),
                reason: format!(
                    "it discards its oldest messages beyond {} messages / {} bytes, which drops \
                     the state of keys that rarely change",
                    existing.max_messages, existing.max_bytes
                ),
            });
        }
        if existing.discard == DiscardPolicy::New && existing.discard_new_per_subject {
            return Err(NatsError::StreamMismatch {
                stream: self.name.clone(),
                reason: "it refuses a subject's new message while it holds one (discard new per \
                         subject), so no key could change"
                    .to_owned(),
            });
        }
        Ok(stream)
    }
}
