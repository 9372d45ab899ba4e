//! Bootstrap by request/response: a consumer asks the owner for the current
//! state of all or some keys; the owner answers with ordinary state events.
//!
//! Protocol, on plain NATS (no JetStream): the consumer sends a
//! [`BootstrapRequest`] (JSON) to `_ecst.bootstrap.<prefix>.<entity>` with a
//! reply inbox; the owner publishes one structured-mode envelope per entity
//! to the inbox, then an empty message with the header
//! `Ecst-Bootstrap-End: <count>`, so the consumer knows it has everything.

use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{NatsError, Subjects};
use crate::envelope::Envelope;
use crate::event::StateEvent;

const END: &str = "Ecst-Bootstrap-End";
/// The queue group the owner's responders share.
const QUEUE_GROUP: &str = "ecst-bootstrap";

/// Which entities a consumer asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRequest {
    /// The keys wanted (their `Display` form); `None` for every entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

impl BootstrapRequest {
    /// Every entity.
    pub fn all() -> Self {
        BootstrapRequest { keys: None }
    }

    /// Only these keys.
    pub fn keys<K: ToString>(keys: impl IntoIterator<Item = K>) -> Self {
        BootstrapRequest {
            keys: Some(keys.into_iter().map(|k| k.to_string()).collect()),
        }
    }
}

/// Serves bootstrap requests for entity `T` until the subscription ends
/// (the responders of all instances of the owner share the queue group
/// `ecst-bootstrap`, so each request is answered by one of them):
/// `state` returns the owner's current envelopes for a request (built with
/// the owner's [`Producer`](crate::Producer) or its own revisions, so their
/// sequences are the real ones). A request that is not valid JSON is
/// answered with no events.
pub async fn serve_bootstrap<T, F>(
    client: Client,
    subjects: &Subjects,
    mut state: F,
) -> Result<(), NatsError>
where
    T: StateEvent,
    F: FnMut(&BootstrapRequest) -> Vec<Envelope<T>>,
{
    let subject = subjects.bootstrap(T::ENTITY);
    // A queue group: an owner running as several instances answers each
    // request once. Without it every instance answers the same inbox, the
    // answers interleave, and the first end marker's count is wrong.
    let mut requests = client
        .queue_subscribe(subject.clone(), QUEUE_GROUP.to_owned())
        .await
        .map_err(|e| super::jetstream("subscribing to bootstrap requests", e))?;
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let asked: BootstrapRequest =
            serde_json::from_slice(&request.payload).unwrap_or(BootstrapRequest {
                keys: Some(Vec::new()),
            });
        let envelopes = state(&asked);
        let mut sent = 0u64;
        for envelope in &envelopes {
            let json = envelope.to_json()?;
            client
                .publish(reply.clone(), Bytes::from(json))
                .await
                .map_err(|e| super::jetstream("answering a bootstrap request", e))?;
            sent += 1;
        }
        let mut headers = HeaderMap::new();
        headers.insert(END, sent.to_string().as_str());
        client
            .publish_with_headers(reply, headers, Bytes::new())
            .await
            .map_err(|e| super::jetstream("ending a bootstrap answer", e))?;
        client
            .flush()
            .await
            .map_err(|e| super::jetstream("flushing a bootstrap answer", e))?;
    }
    Ok(())
}

/// Asks the owner of `T` for its current state and returns the events it
/// sent (structured-mode JSON), complete or an error: a missing end marker
/// within `timeout`, or a count that does not match, is
/// [`NatsError::Bootstrap`].
pub async fn request_bootstrap<T: StateEvent>(
    client: &Client,
    subjects: &Subjects,
    request: &BootstrapRequest,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, NatsError> {
    let fail = |reason: String| NatsError::Bootstrap {
        entity: T::ENTITY,
        reason,
    };
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| super::jetstream("subscribing to the bootstrap answer", e))?;
    let body = serde_json::to_vec(request).map_err(|e| fail(e.to_string()))?;
    client
        .publish_with_reply(subjects.bootstrap(T::ENTITY), inbox, Bytes::from(body))
        .await
        .map_err(|e| super::jetstream("sending a bootstrap request", e))?;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, answers.next()).await;
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => return Err(fail("the answer subscription closed early".into())),
            Err(_) => {
                return Err(fail(format!(
                    "no complete answer within {timeout:?} ({} events so far); is the owner's responder running?",
                    events.len()
                )))
            }
        };
        if message.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(fail(format!(
                "no responders on `{}`: is the owner's responder running?",
                subjects.bootstrap(T::ENTITY)
            )));
        }
        if let Some(status) = message.status {
            // Another status (the server's, not the owner's): not an event.
            let reason = message.description.as_deref().unwrap_or("no description");
            return Err(fail(format!(
                "the server answered with status {status} ({reason})"
            )));
        }
        let end = message
            .headers
            .as_ref()
            .and_then(|h| h.get(END))
            .map(|v| v.as_str().to_owned());
        match end {
            None => events.push(message.payload.to_vec()),
            Some(count) => {
                let expected: usize = count
                    .parse()
                    .map_err(|_| fail(format!("the end marker `{count}` is not a count")))?;
                if expected != events.len() {
                    return Err(fail(format!(
                        "the owner sent {expected} events but {} arrived",
                        events.len()
                    )));
                }
                return Ok(events);
            }
        }
    }
}
