//! Publishing state events.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;

use super::binary::to_binary;
use super::{NatsError, Subjects};
use crate::envelope::Envelope;
use crate::event::StateEvent;

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
    /// duplicate window) and dropped this one.
    pub duplicate: bool,
}

/// Publishes envelopes on `<prefix>.<entity>.<key>` with `Nats-Msg-Id` =
/// event id, and waits for the stream's acknowledgement.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: Context,
    subjects: Subjects,
    mode: Mode,
}

impl Publisher {
    /// A structured-mode publisher.
    pub fn new(js: Context, subjects: Subjects) -> Self {
        Publisher {
            js,
            subjects,
            mode: Mode::Structured,
        }
    }

    /// The same publisher in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Publishes `envelope` and waits until the stream has stored it.
    pub async fn publish<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
    ) -> Result<Published, NatsError> {
        self.send(envelope, None).await
    }

    /// Publishes `envelope` only if the last message on its subject has
    /// stream sequence `last` (0: no message yet): optimistic concurrency
    /// for producers that may race. A mismatch is
    /// [`NatsError::WrongLastSequence`].
    pub async fn publish_if_last<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: u64,
    ) -> Result<Published, NatsError> {
        self.send(envelope, Some(last)).await
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
    pub async fn publish_all<T: StateEvent>(
        &self,
        envelopes: &[Envelope<T>],
    ) -> Result<Vec<Published>, NatsError> {
        let mut in_flight = FuturesOrdered::new();
        let mut out = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let (subject, message) = self.message(envelope, None)?;
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
            in_flight.push_back(async move {
                let ack = ack
                    .await
                    .map_err(|source| NatsError::Publish { subject, source })?;
                Ok::<_, NatsError>(Published {
                    stream_sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })
            });
        }
        while let Some(done) = in_flight.next().await {
            out.push(done?);
        }
        Ok(out)
    }

    async fn send<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: Option<u64>,
    ) -> Result<Published, NatsError> {
        let (subject, message) = self.message(envelope, last)?;
        let result = async { self.js.send_publish(subject.clone(), message).await?.await }.await;
        match result {
            Ok(ack) => Ok(Published {
                stream_sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(source) if source.kind() == PublishErrorKind::WrongLastSequence => {
                Err(NatsError::WrongLastSequence {
                    subject,
                    expected: last.unwrap_or_default(),
                })
            }
            Err(source) => Err(NatsError::Publish { subject, source }),
        }
    }

    fn message<T: StateEvent>(
        &self,
        envelope: &Envelope<T>,
        last: Option<u64>,
    ) -> Result<(String, Publish), NatsError> {
        let subject = self.subjects.event(T::ENTITY, &envelope.key.to_string())?;
        let json = envelope.to_json()?;
        let mut message = match self.mode {
            Mode::Structured => Publish::build().payload(Bytes::from(json)),
            Mode::Binary => {
                let (headers, body) = to_binary(&json).map_err(|source| NatsError::JetStream {
                    action: "splitting the envelope into binary-mode headers",
                    source,
                })?;
                Publish::build().headers(headers).payload(body)
            }
        };
        message = message.message_id(&envelope.id);
        if let Some(last) = last {
            message = message.expected_last_subject_sequence(last);
        }
        Ok((subject, message))
    }
}
