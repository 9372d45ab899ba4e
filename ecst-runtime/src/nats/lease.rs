//! The durable-name lease: one follower per durable consumer name at a
//! time, across processes and machines.
//!
//! Two followers sharing a durable name would split its messages between
//! them: each replica would miss what the other got, and restarting one
//! would not repair it. So a follower holds a lease on its name in a
//! JetStream key-value bucket (`ecst_leases`, one entry per stream and
//! durable name) before it creates its consumer. The entry is created only
//! if absent, renewed with an expected revision while the follower polls,
//! and expires on its own (the bucket's `max_age`) when its holder stops
//! renewing it: a crashed holder never blocks its successor for longer than
//! the lease's time to live.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy};
use async_nats::jetstream::Context;
use bytes::Bytes;
use tokio::time::Instant;

use super::{jetstream, NatsError};

/// The key-value bucket of the leases.
pub const LEASE_BUCKET: &str = "ecst_leases";

/// A held lease.
pub(crate) struct Lease {
    store: kv::Store,
    key: String,
    holder: Bytes,
    revision: u64,
    renewed: Instant,
    ttl: Duration,
}

impl Lease {
    /// Takes the lease of `durable_name` on `stream`, waiting up to `wait`
    /// for a holder to release it or for its lease to expire.
    pub(crate) async fn acquire(
        js: &Context,
        stream: &str,
        durable_name: &str,
        holder: String,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Lease, NatsError> {
        let deadline = Instant::now() + wait;
        let store = loop {
            match Self::bucket(js, ttl).await {
                Ok(store) => break store,
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(250).min(ttl / 4)).await,
            }
        };
        // The bucket's time to live is the lease's, whatever this follower
        // asked for: renew well within it.
        let ttl = match store.status().await {
            Ok(status) if !status.max_age().is_zero() => status.max_age(),
            _ => ttl,
        };
        let key = lease_key(stream, durable_name);
        let holder = Bytes::from(holder);
        loop {
            match store.create(&key, holder.clone()).await {
                Ok(revision) => {
                    return Ok(Lease {
                        store,
                        key,
                        holder,
                        revision,
                        renewed: Instant::now(),
                        ttl,
                    })
                }
                Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {
                    if let Ok(Some(entry)) = store.entry(&key).await {
                        if entry.value == holder && entry.operation == kv::Operation::Put {
                            // Ours: an earlier attempt of this call got
                            // through before its answer was lost.
                            return Ok(Lease {
                                store,
                                key,
                                holder,
                                revision: entry.revision,
                                renewed: Instant::now(),
                                ttl,
                            });
                        }
                    }
                    if Instant::now() >= deadline {
                        let held_by = match store.entry(&key).await {
                            Ok(Some(entry)) => String::from_utf8_lossy(&entry.value).into_owned(),
                            _ => "another follower".to_owned(),
                        };
                        return Err(NatsError::DurableNameTaken {
                            durable_name: durable_name.to_owned(),
                            holder: held_by,
                            ttl,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(250).min(ttl / 4)).await;
                }
                // A cluster electing a leader times out for a while: wait
                // as for a held lease.
                Err(error) => {
                    if Instant::now() >= deadline {
                        return Err(jetstream("taking the durable-name lease", error));
                    }
                    tokio::time::sleep(Duration::from_millis(250).min(ttl / 4)).await;
                }
            }
        }
    }

    /// The lease bucket, created if missing.
    async fn bucket(js: &Context, ttl: Duration) -> Result<kv::Store, NatsError> {
        if let Ok(store) = js.get_key_value(LEASE_BUCKET).await {
            return Ok(store);
        }
        // The stream a key-value bucket is, made by hand: `create_key_value`
        // first reads the account's limits, whose answer from nats-server
        // 2.9 async-nats cannot parse.
        let config = stream::Config {
            name: format!("KV_{LEASE_BUCKET}"),
            description: Some("ecst: which follower holds each durable consumer name".into()),
            subjects: vec![format!("$KV.{LEASE_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..stream::Config::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| jetstream("creating the lease bucket", e))?;
        js.get_key_value(LEASE_BUCKET)
            .await
            .map_err(|e| jetstream("opening the lease bucket", e))
    }

    /// Renews the lease if a third of its time to live has passed.
    /// Cancellation-safe: a renewal whose answer was lost is recognised by
    /// the holder's id on the next call. `Ok(true)`
    /// when it had expired and was taken again (nobody else held it): the
    /// caller must not trust its consumer's position and starts it again
    /// from its checkpoint.
    pub(crate) async fn renew_if_due(&mut self, durable_name: &str) -> Result<bool, NatsError> {
        if self.renewed.elapsed() < self.ttl / 3 {
            return Ok(false);
        }
        match self
            .store
            .update(&self.key, self.holder.clone(), self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                self.renewed = Instant::now();
                Ok(false)
            }
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                // Still ours, at a revision this follower did not see: an
                // earlier renewal reached the server but its future was
                // dropped (a cancelled poll) before the answer was read.
                if let Ok(Some(entry)) = self.store.entry(&self.key).await {
                    if entry.value == self.holder && entry.operation == kv::Operation::Put {
                        self.revision = entry.revision;
                        return Ok(false);
                    }
                }
                // Expired (or taken): take it again if nobody holds it.
                match self.store.create(&self.key, self.holder.clone()).await {
                    Ok(revision) => {
                        self.revision = revision;
                        self.renewed = Instant::now();
                        Ok(true)
                    }
                    Err(_) => {
                        let holder = match self.store.entry(&self.key).await {
                            Ok(Some(entry)) => String::from_utf8_lossy(&entry.value).into_owned(),
                            _ => "another follower".to_owned(),
                        };
                        Err(NatsError::DurableNameTaken {
                            durable_name: durable_name.to_owned(),
                            holder,
                            ttl: self.ttl,
                        })
                    }
                }
            }
            // The broker is unreachable: the poll will fail and retry; the
            // lease is renewed once it is back (or taken again if it expired).
            Err(_) => Ok(false),
        }
    }

    /// Gives the lease up, so that a successor need not wait for it to
    /// expire.
    pub(crate) async fn release(self) {
        let _ = self
            .store
            .delete_expect_revision(&self.key, Some(self.revision))
            .await;
    }
}

/// The lease's key: `<stream>.<durable name>`, with every character a
/// key-value key does not allow written as `=` and its hex code.
fn lease_key(stream: &str, durable_name: &str) -> String {
    let mut key = String::new();
    for (i, part) in [stream, durable_name].into_iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                key.push(char::from(byte));
            } else {
                key.push_str(&format!("={byte:02X}"));
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_are_valid_key_value_keys() {
        assert_eq!(lease_key("STATE", "billing"), "STATE.billing");
        assert_eq!(lease_key("STATE", "a b@c"), "STATE.a=20b=40c");
        assert_eq!(lease_key("S", "x=y"), "S.x=3Dy");
    }
}
