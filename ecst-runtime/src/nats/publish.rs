//! Publishing state events.
//!
//! # The sequence guard
//!
//! The state stream keeps the last message published on a subject, not the
//! one with the highest ecst sequence: a producer that published sequence 5
//! and then 3 for a key (two owner instances racing, a retry after a slow
//! acknowledgement) would leave 3 in the stream, and replicas that bootstrap
//! later would hold 3 for good while those that were following hold 5.
//!
//! So a [`Publisher`] guards every publish by default. It knows the stream
//! sequence of the last message on the subject and that event's ecst
//! sequence and id, and publishes with
//! `Nats-Expected-Last-Subject-Sequence` set to that stream sequence, so the
//! server stores the event only if nothing was published on the subject
//! since. Before that it compares sequences:
//!
//! - the stored event's sequence is lower: publish;
//! - the same sequence and the same event id: a retry of a stored event,
//!   answered as a duplicate without publishing, once a read of the
//!   subject's last message has confirmed that it is still on top (another
//!   publisher may have stored a newer one: then it is refused, as below);
//! - otherwise (higher, or equal with another id): refused with
//!   [`NatsError::NotNewer`], and the stream keeps the newer state.
//!
//! What it knows comes from its own acknowledgements (a cache of the last
//! message per subject, shared by clones of the publisher and bounded: see
//! [`Publisher::with_guard_cache`]). A subject it has not published on is
//! assumed empty (expected last subject sequence 0), which costs nothing for
//! new keys; when the subject has a message after all, or another publisher
//! published since, the server refuses the publish (wrong last sequence),
//! and the publisher reads the subject's last message
//! (`STREAM.MSG.GET` with `last_by_subj`), compares again and retries, up to
//! [`GUARD_ATTEMPTS`] times before it gives up with
//! [`NatsError::WrongLastSequence`].
//!
//! A stored message that is not a valid ecst event of the same entity and
//! key (garbage, a payload that does not decode, another producer's
//! mistake) holds nothing back and is overwritten: its `sequence` would
//! otherwise block the key for good. An event of a schema version newer than
//! this build knows counts (an upgraded producer wrote it).
//!
//! [`Publisher::unguarded`] turns the guard off for producers that order
//! their events per key themselves (a single writer per key that never
//! retries an older event): one publish per event, no reads.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;

use super::binary::{to_binary, to_structured};
use super::{jetstream, NatsError, Subjects};
use crate::envelope::{decode_header, decode_typed, Envelope};
use crate::event::StateEvent;

/// How many times a guarded publish reads the subject's last message and
/// tries again after the server refused it because the subject changed.
pub const GUARD_ATTEMPTS: u32 = 5;

/// The default bound of a guarded publisher's cache: the last message of
/// this many subjects.
pub const GUARD_CACHE_SUBJECTS: usize = 100_000;

/// How an event is laid out on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object with every attribute and `data` (the default).
    #[default]
    Structured,
    /// Attributes as `ce-` headers, `data` as the body.
    Binary,
}

/// What the server answered to a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence in the stream.
    pub stream_sequence: u64,
    /// The server had already stored an event with this id (within the
    /// duplicate window) and dropped this one; or, for a guarded publisher,
    /// the subject's last message is this very event (a guarded publisher
    /// answers a retry of an event that a newer one has replaced since with
    /// [`NatsError::NotNewer`], whatever the server's duplicate window
    /// still remembers).
    pub duplicate: bool,
}

/// Publishes envelopes on `<prefix>.<entity>.<key>` with `Nats-Msg-Id` =
/// event id, and waits for the stream's acknowledgement.
///
/// Guarded by default: it never leaves an older state of a key on top of a
/// newer one (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct Publisher {
    js: Context,
    subjects: Subjects,
    mode: Mode,
    /// `None`: unguarded.
    guard: Option<Arc<Guard>>,
}

/// The last message of a subject, as far as the guard knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Last {
    /// Its stream sequence; 0 for no message.
    stream_sequence: u64,
    /// Its ecst sequence and event id, if it is an ecst event of the same
    /// entity and key.
    event: Option<(u64, String)>,
}

#[derive(Debug)]
struct Guard {
    capacity: usize,
    /// The last message per subject, learnt from acknowledgements and reads.
    known: Mutex<HashMap<String, Last>>,
    /// The name of the stream that captures the subjects, looked up once.
    stream: Mutex<Option<String>>,
}

impl Guard {
    fn new(capacity: usize) -> Self {
        Guard {
            capacity,
            known: Mutex::new(HashMap::new()),
            stream: Mutex::new(None),
        }
    }

    /// Judges `envelope` against what is known of `subject` (nothing known:
    /// an empty subject), without copying it.
    fn judge<T: StateEvent>(
        &self,
        subject: &str,
        envelope: &Envelope<T>,
    ) -> Result<Verdict, NatsError> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        match known.get(subject) {
            Some(last) => judge(subject, last, envelope),
            None => judge(subject, &Last::default(), envelope),
        }
    }

    fn get(&self, subject: &str) -> Option<Last> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(subject).cloned()
    }

    /// Learns that `last` is (or was) the subject's last message. Only
    /// forward: what two publishes (clones of one publisher, or a
    /// `publish_all`) learn can arrive in either order, and a message with
    /// a lower stream sequence than the one known is an older one, which
    /// must not be taken for the last again (its event would then be judged
    /// against, and a retry of it answered from, a state that is no longer
    /// on top). After a stream was re-created, stream sequences start low
    /// again: the publish that finds out calls [`Guard::forget`] first.
    fn set(&self, subject: impl AsRef<str> + Into<String>, last: Last) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = known.get_mut(subject.as_ref()) {
            if last.stream_sequence >= slot.stream_sequence {
                *slot = last;
            }
            return;
        }
        if known.len() >= self.capacity {
            // Start over: a forgotten subject costs one read when it is
            // published on again, never correctness.
            known.clear();
        }
        if self.capacity > 0 {
            known.insert(subject.into(), last);
        }
    }

    fn forget(&self, subject: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.remove(subject);
    }
}

/// The acknowledgement of a pipelined publish.
enum Ack {
    /// Coming from the server.
    Pending(PublishAckFuture),
    /// Not published: the guard found this very event stored at this
    /// stream sequence.
    Known(u64),
}

/// What the guard decides for an envelope given the subject's last message.
enum Verdict {
    /// Publish, expecting this last subject sequence.
    Publish(u64),
    /// This very event is the last message: nothing to publish.
    Duplicate(u64),
}

fn judge<T: StateEvent>(
    subject: &str,
    last: &Last,
    envelope: &Envelope<T>,
) -> Result<Verdict, NatsError> {
    let attempted = envelope.sequence.get();
    match &last.event {
        Some((stored, id)) if *stored == attempted && *id == envelope.id => {
            Ok(Verdict::Duplicate(last.stream_sequence))
        }
        Some((stored, _)) if *stored >= attempted => Err(NatsError::NotNewer {
            subject: subject.to_owned(),
            stored: *stored,
            attempted,
        }),
        _ => Ok(Verdict::Publish(last.stream_sequence)),
    }
}

impl Publisher {
    /// A structured-mode publisher, guarded (see the
    /// [module documentation](self)).
    pub fn new(js: Context, subjects: Subjects) -> Self {
        Publisher {
            js,
            subjects,
            mode: Mode::Structured,
            guard: Some(Arc::new(Guard::new(GUARD_CACHE_SUBJECTS))),
        }
    }

    /// The same publisher in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same publisher without the sequence guard: every publish goes
    /// out as it is, and the stream keeps whatever was published last on a
    /// subject, even an older state. Only for producers that order the
    /// events of each key themselves (one writer per key, no retries of
    /// older events).
    #[must_use]
    pub fn unguarded(mut self) -> Self {
        self.guard = None;
        self
    }

    /// The same publisher, guarded, remembering the last message of at most
    /// `subjects` subjects (default [`GUARD_CACHE_SUBJECTS`]); when full, it
    /// forgets them all and learns again. A forgotten subject costs a read
    /// of its last message when it is next published on; 0 reads before
    /// every publish on a subject that already has a message. Clones made
    /// before this call keep their own cache.
    #[must_use]
    pub fn with_guard_cache(mut self, subjects: usize) -> Self {
        self.guard = Some(Arc::new(Guard::new(subjects)));
        self
    }

    /// `true` unless [`Publisher::unguarded`].
    pub fn is_guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// Publishes `envelope` and waits until the stream has stored it.
    ///
    /// Guarded (the default), [`NatsError::NotNewer`] if the stream holds
    /// the same key at this sequence or a higher one, and
    /// [`NatsError::WrongLastSequence`] if other publishers kept changing
    /// the subject for [`GUARD_ATTEMPTS`] attempts.
    pub async fn publish<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
    ) -> Result<Published, NatsError> {
        match &self.guard {
            Some(guard) => self.send_guarded(guard, envelope, None).await,
            None => self.send(envelope, None).await,
        }
    }

    /// Publishes `envelope` only if the last message on its subject has
    /// stream sequence `last` (0: no message yet): optimistic concurrency
    /// for producers that may race. A mismatch is
    /// [`NatsError::WrongLastSequence`] (not retried). Guarded, the message
    /// at `last` must also be older than `envelope`
    /// ([`NatsError::NotNewer`]).
    pub async fn publish_if_last<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: u64,
    ) -> Result<Published, NatsError> {
        match &self.guard {
            Some(guard) => self.send_guarded(guard, envelope, Some(last)).await,
            None => self.send(envelope, Some(last)).await,
        }
    }

    /// Publishes many envelopes, sending them without waiting for each
    /// acknowledgement (far faster than one round trip each). Returns one
    /// result per envelope, in order; the first failure ends the call (the
    /// envelopes before it may be stored).
    ///
    /// Acknowledgements are collected while sending, so any number of
    /// envelopes goes through the context's limit of acknowledgements in
    /// flight (5,000 by default, see
    /// `async_nats::jetstream::ContextBuilder::max_ack_inflight`), which a
    /// send waits on.
    ///
    /// Guarded, a key that comes again before the acknowledgement of its
    /// previous event waits for the acknowledgements in flight (it needs
    /// the stream sequence they bring), and an event the server refused
    /// because its subject changed is retried on its own, as
    /// [`Publisher::publish`] does.
    pub async fn publish_all<T: StateEvent>(
        &self,
        envelopes: &[Envelope<T>],
    ) -> Result<Vec<Published>, NatsError> {
        let mut in_flight = FuturesOrdered::new();
        let mut out = Vec::with_capacity(envelopes.len());
        // Guarded: the subjects with an acknowledgement in flight.
        // Hashes only: a collision costs a needless wait, nothing else.
        let mut pending: HashSet<u64> = HashSet::new();
        let hasher = RandomState::new();
        for envelope in envelopes {
            let subject = self.subject(envelope)?;
            let mut expected = None;
            if let Some(guard) = &self.guard {
                let hash = hasher.hash_one(&subject);
                if pending.contains(&hash) {
                    while let Some(done) = in_flight.next().await {
                        out.push(done?);
                    }
                    pending.clear();
                }
                match guard.judge(&subject, envelope)? {
                    Verdict::Duplicate(stream_sequence) => {
                        in_flight.push_back(self.acknowledged(
                            subject,
                            envelope,
                            None,
                            Ack::Known(stream_sequence),
                        ));
                        continue;
                    }
                    Verdict::Publish(last) => expected = Some(last),
                }
                pending.insert(hash);
            }
            let message = self.message(envelope, expected)?;
            let send = self.js.send_publish(subject.clone(), message);
            tokio::pin!(send);
            // While the send waits (for a free slot among the
            // acknowledgements in flight, say), collect the acknowledgements
            // that arrived: each frees its slot.
            let ack = loop {
                tokio::select! {
                    biased;
                    sent = &mut send => break sent,
                    Some(done) = in_flight.next() => out.push(done?),
                }
            };
            let ack = ack.map_err(|source| NatsError::Publish {
                subject: subject.clone(),
                source,
            })?;
            in_flight.push_back(self.acknowledged(subject, envelope, expected, Ack::Pending(ack)));
        }
        while let Some(done) = in_flight.next().await {
            out.push(done?);
        }
        Ok(out)
    }

    /// Waits for the acknowledgement of a pipelined publish; guarded,
    /// records it, or retries on its own if the subject changed.
    async fn acknowledged<T: StateEvent>(
        &self,
        subject: String,
        envelope: &Envelope<T>,
        expected: Option<u64>,
        ack: Ack,
    ) -> Result<Published, NatsError> {
        let ack = match (ack, &self.guard) {
            (Ack::Pending(ack), _) => ack.await,
            // Remembered as the last message: made sure of as `publish`
            // does (another publisher may have stored a newer one).
            (Ack::Known(_), Some(guard)) => return self.send_guarded(guard, envelope, None).await,
            (Ack::Known(stream_sequence), None) => {
                return Ok(Published {
                    stream_sequence,
                    duplicate: true,
                })
            }
        };
        match (ack, &self.guard) {
            (Ok(ack), Some(guard)) => self.learn(guard, &subject, envelope, &ack).await,
            (Ok(ack), None) => Ok(Published {
                stream_sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            (Err(source), Some(guard)) if is_wrong_last(&source) => {
                guard.forget(&subject);
                self.send_guarded(guard, envelope, None).await
            }
            (Err(source), _) if is_wrong_last(&source) => Err(NatsError::WrongLastSequence {
                subject,
                expected: expected.unwrap_or_default(),
            }),
            (Err(source), _) => Err(NatsError::Publish { subject, source }),
        }
    }

    /// One guarded publish: judge against the last message known (or read),
    /// publish expecting it, and on a conflict read again and retry.
    /// `caller_last`: the stream sequence the caller expects
    /// ([`Publisher::publish_if_last`]), checked and never retried.
    async fn send_guarded<T: StateEvent>(
        &self,
        guard: &Guard,
        envelope: &Envelope<T>,
        caller_last: Option<u64>,
    ) -> Result<Published, NatsError> {
        let subject = self.subject(envelope)?;
        let mut known = guard.get(&subject);
        let mut attempt = 0;
        // Whether `known` was just read from the stream (not remembered).
        let mut read = false;
        loop {
            let last = match (known.take(), caller_last) {
                (Some(last), Some(expected)) if last.stream_sequence != expected => {
                    self.read_last(guard, &subject, envelope).await?
                }
                (Some(last), _) => last,
                // Never published on here: assume nothing is there (free
                // for new keys; a conflict reads). So does a caller who
                // expects no message.
                (None, None) if attempt == 0 => Last::default(),
                (None, Some(0)) => Last::default(),
                (None, _) => self.read_last(guard, &subject, envelope).await?,
            };
            if let Some(expected) = caller_last {
                if last.stream_sequence != expected {
                    return Err(NatsError::WrongLastSequence { subject, expected });
                }
            }
            let expected = match judge(&subject, &last, envelope)? {
                // Remembered, this event is on top; another publisher may
                // have stored a newer one since, so it is read to be sure
                // (a retry of the last event is rare: one read).
                Verdict::Duplicate(_) if !std::mem::replace(&mut read, true) => {
                    known = Some(self.read_last(guard, &subject, envelope).await?);
                    continue;
                }
                Verdict::Duplicate(stream_sequence) => {
                    return Ok(Published {
                        stream_sequence,
                        duplicate: true,
                    })
                }
                Verdict::Publish(expected) => expected,
            };
            let message = self.message(envelope, Some(expected))?;
            let result =
                async { self.js.send_publish(subject.clone(), message).await?.await }.await;
            match result {
                Ok(ack) => return self.learn(guard, &subject, envelope, &ack).await,
                Err(source) if is_wrong_last(&source) => {
                    guard.forget(&subject);
                    attempt += 1;
                    if caller_last.is_some() || attempt >= GUARD_ATTEMPTS {
                        return Err(NatsError::WrongLastSequence { subject, expected });
                    }
                }
                Err(source) => return Err(NatsError::Publish { subject, source }),
            }
        }
    }

    /// What an acknowledgement of `envelope` teaches the guard, and the
    /// answer to the caller. A stored message is the subject's last. A
    /// duplicate is not necessarily: the server checks `Nats-Msg-Id` before
    /// `Nats-Expected-Last-Subject-Sequence`, so a retry of an event stored
    /// earlier (a call dropped after its publish went out, say) is answered
    /// with the *original* message's stream sequence even when newer
    /// messages were stored on the subject since. Taken for the last
    /// message, it would put an older state on top of a newer one in the
    /// guard, and the answer would depend on what this publisher happened
    /// to remember. So the subject's last message is read and judged, as
    /// for any publish: this very event on top is a duplicate, a newer one
    /// is [`NatsError::NotNewer`].
    async fn learn<T: StateEvent>(
        &self,
        guard: &Guard,
        subject: &str,
        envelope: &Envelope<T>,
        ack: &async_nats::jetstream::publish::PublishAck,
    ) -> Result<Published, NatsError> {
        if !ack.duplicate {
            guard.set(subject.to_owned(), learnt(envelope, ack.sequence));
            return Ok(Published {
                stream_sequence: ack.sequence,
                duplicate: false,
            });
        }
        let last = self.read_last(guard, subject, envelope).await?;
        match judge(subject, &last, envelope)? {
            Verdict::Duplicate(stream_sequence) => Ok(Published {
                stream_sequence,
                duplicate: true,
            }),
            // Stored at `ack.sequence`, and something that does not hold it
            // back (not an ecst event of this key) was put on top since.
            Verdict::Publish(_) => Ok(Published {
                stream_sequence: ack.sequence,
                duplicate: true,
            }),
        }
    }

    /// Reads the last message on `subject` and remembers it.
    async fn read_last<T: StateEvent>(
        &self,
        guard: &Guard,
        subject: &str,
        envelope: &Envelope<T>,
    ) -> Result<Last, NatsError> {
        let stream = self.stream_name(guard, subject).await?;
        let stream = self
            .js
            .get_stream_no_info(&stream)
            .await
            .map_err(|e| jetstream("looking up the state stream", e))?;
        let last = match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let structured = to_structured(Some(&message.headers), &message.payload);
                let json = structured.as_deref().unwrap_or(&message.payload);
                let key = envelope.key.to_string();
                // Only a valid event of this key holds a later one back: the
                // whole event is decoded, not only its header, or a foreign
                // message with a high `sequence` and a payload every
                // consumer parks would block the owner's key for good. An
                // event of a schema version this build does not know yet is
                // an upgraded producer's: it counts.
                let valid = match decode_typed::<T>(json) {
                    Ok(_) => true,
                    Err(error) => error.is_future_version(),
                };
                let event =
                    valid
                        .then(|| decode_header(json).ok())
                        .flatten()
                        .and_then(|(header, _)| {
                            (header.entity == T::ENTITY && header.key == key)
                                .then(|| (header.sequence.get(), header.id.into_owned()))
                        });
                if event.is_none() {
                    tracing::warn!(
                        subject,
                        stream_sequence = message.sequence,
                        "the last message on the subject is not an ecst event of this key: \
                         it will be overwritten"
                    );
                }
                Last {
                    stream_sequence: message.sequence,
                    event,
                }
            }
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                Last::default()
            }
            Err(error) => return Err(jetstream("reading the last message of a subject", error)),
        };
        guard.set(subject, last.clone());
        Ok(last)
    }

    /// The name of the stream that captures `subject`, looked up once.
    async fn stream_name(&self, guard: &Guard, subject: &str) -> Result<String, NatsError> {
        if let Some(name) = guard
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(name);
        }
        let name = self
            .js
            .stream_by_subject(subject)
            .await
            .map_err(|e| jetstream("finding the stream of a subject", e))?;
        *guard.stream.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.clone());
        Ok(name)
    }

    async fn send<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: Option<u64>,
    ) -> Result<Published, NatsError> {
        let subject = self.subject(envelope)?;
        let message = self.message(envelope, last)?;
        let result = async { self.js.send_publish(subject.clone(), message).await?.await }.await;
        match result {
            Ok(ack) => Ok(Published {
                stream_sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(source) if is_wrong_last(&source) => Err(NatsError::WrongLastSequence {
                subject,
                expected: last.unwrap_or_default(),
            }),
            Err(source) => Err(NatsError::Publish { subject, source }),
        }
    }

    fn subject<T: StateEvent>(&self, envelope: &Envelope<T>) -> Result<String, NatsError> {
        self.subjects.event(T::ENTITY, &envelope.key.to_string())
    }

    fn message<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: Option<u64>,
    ) -> Result<Publish, NatsError> {
        // An envelope without a `traceparent` gets the current span's.
        let json = envelope.to_json_traced()?;
        let mut message = match self.mode {
            Mode::Structured => Publish::build().payload(Bytes::from(json)),
            Mode::Binary => {
                let (headers, body) = to_binary(&json).map_err(|source| NatsError::JetStream {
                    action: "splitting the envelope into binary-mode headers",
                    source: Box::new(source),
                })?;
                Publish::build().headers(headers).payload(body)
            }
        };
        message = message.message_id(&envelope.id);
        if let Some(last) = last {
            message = message.expected_last_subject_sequence(last);
        }
        Ok(message)
    }
}

/// What an acknowledgement of `envelope` at `stream_sequence` teaches.
fn learnt<T: StateEvent>(envelope: &Envelope<T>, stream_sequence: u64) -> Last {
    Last {
        stream_sequence,
        event: Some((envelope.sequence.get(), envelope.id.clone())),
    }
}

fn is_wrong_last(error: &PublishError) -> bool {
    error.kind() == PublishErrorKind::WrongLastSequence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(stream_sequence: u64, sequence: u64) -> Last {
        Last {
            stream_sequence,
            event: Some((sequence, format!("e-{sequence}"))),
        }
    }

    /// What two publishes learn can arrive in either order: the guard keeps
    /// the later message (the higher stream sequence), never the older one
    /// on top of it; after `forget` (a conflict, a re-created stream) it
    /// takes what it is told.
    #[test]
    fn the_guard_learns_only_forward() {
        let guard = Guard::new(10);
        guard.set("s", last(11, 7));
        guard.set("s", last(10, 5));
        assert_eq!(guard.get("s"), Some(last(11, 7)));
        guard.set("s", last(12, 8));
        assert_eq!(guard.get("s"), Some(last(12, 8)));
        // The same message read again, now known as a foreign one.
        let foreign = Last {
            stream_sequence: 12,
            event: None,
        };
        guard.set("s", foreign.clone());
        assert_eq!(guard.get("s"), Some(foreign));
        guard.forget("s");
        guard.set("s", last(1, 1));
        assert_eq!(guard.get("s"), Some(last(1, 1)));
    }
}
