//! Bootstrap by request/response: a consumer asks the owner for the current
//! state of all or some keys; the owner answers with ordinary state events.
//!
//! Protocol, on plain NATS (no JetStream): the consumer sends a
//! [`BootstrapRequest`] (JSON) to `_ecst.bootstrap.<prefix>.<entity>` with a
//! reply inbox; the owner publishes one structured-mode envelope per entity
//! to the inbox, then an empty message with the header
//! `Ecst-Bootstrap-End: <count>`, so the consumer knows it has everything.
//!
//! The owner answers only on a reply subject that is safe to publish to with
//! its permissions (see [`reply_refusal`]): a client allowed to send
//! bootstrap requests must not be able to make the owner write into the
//! state stream (a reply subject `<prefix>.<entity>.<key>` would overwrite
//! that key) or call the JetStream API (`$JS.API.STREAM.DELETE.<stream>`
//! with the empty end marker would delete the stream). Inboxes
//! (`_INBOX.…`, or a client's custom inbox prefix) are what requesters use.
//!
//! The requester checks the answer's address as the follower checks a
//! stream message's subject: every event must be of the entity asked for
//! and, when the request named keys, of one of those keys. An answer with
//! any other event (a foreign responder on the reply subject, or a confused
//! owner) is refused whole with [`NatsError::BootstrapMisaddressed`] and
//! nothing of it is merged: once one event of it was not asked for, none of
//! it can be trusted to be the owner's.
//!
//! An owner that cannot finish an answer (a state it cannot encode, or
//! larger than the server's payload limit) ends it with the end marker
//! `Ecst-Bootstrap-End: aborted` and the reason in `Ecst-Bootstrap-Error`,
//! so the requester fails at once with that reason instead of waiting for
//! its time-out; the responder goes on serving other requests.

use std::time::Duration;

use async_nats::{Client, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::subject::is_publishable;
use super::{NatsError, Subjects};
use crate::envelope::{decode_header, Envelope};
use crate::event::{EntityKey, StateEvent};

const END: &str = "Ecst-Bootstrap-End";
/// The end marker's value for an answer the owner could not finish.
const ABORTED: &str = "aborted";
/// Why the owner could not finish an answer (with `END: aborted`).
const ERROR: &str = "Ecst-Bootstrap-Error";
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
///
/// A request whose reply subject [`reply_refusal`] refuses (under the
/// state stream's prefix, a `$` system or API subject, ecst's own
/// `_ecst.` subjects, or not a valid subject) is not answered at all, and
/// `state` is not called: it is logged with `tracing::warn!` and the
/// requester runs into its time-out.
///
/// An answer that cannot be finished (an envelope that does not encode, or
/// is larger than the server's payload limit) is ended with an abort marker
/// that carries the reason (the requester fails with it) and logged, and
/// the responder goes on serving. It returns with an error only if it
/// cannot subscribe; it returns `Ok` when the subscription ends (the client
/// was closed).
///
/// # Cancellation
///
/// Dropping the future (or aborting the task that runs it) stops serving
/// at once, possibly in the middle of an answer: that answer then has no
/// end marker, and the requester fails with [`NatsError::Bootstrap`] at its
/// time-out. It never takes a partial answer for a complete one.
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
        if let Some(reason) = reply_refusal(subjects, &reply) {
            tracing::warn!(
                entity = T::ENTITY,
                reply = %shown(&reply),
                reason,
                "refused a bootstrap request: its reply subject is not an inbox"
            );
            continue;
        }
        let asked: BootstrapRequest =
            serde_json::from_slice(&request.payload).unwrap_or(BootstrapRequest {
                keys: Some(Vec::new()),
            });
        let envelopes = state(&asked);
        let mut headers = HeaderMap::new();
        match answer(&client, &reply, &envelopes).await {
            Ok(sent) => headers.insert(END, sent.to_string().as_str()),
            Err(error) => {
                tracing::warn!(
                    entity = T::ENTITY,
                    reply = %shown(&reply),
                    %error,
                    "could not finish a bootstrap answer: ending it as aborted"
                );
                headers.insert(END, ABORTED);
                headers.insert(ERROR, shown(&error.to_string()).as_str());
            }
        }
        let ended = async {
            client
                .publish_with_headers(reply, headers, Bytes::new())
                .await?;
            client.flush().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
        .await;
        if let Err(error) = ended {
            // The connection is closing: the subscription ends next.
            tracing::warn!(
                entity = T::ENTITY,
                %error,
                "could not end a bootstrap answer; the requester will time out"
            );
        }
    }
    Ok(())
}

/// Sends the events of one answer: how many were sent, or why not all.
async fn answer<T: StateEvent>(
    client: &Client,
    reply: &str,
    envelopes: &[Envelope<T>],
) -> Result<u64, NatsError> {
    let mut sent = 0u64;
    for envelope in envelopes {
        let json = envelope.to_json()?;
        client
            .publish(reply.to_owned(), Bytes::from(json))
            .await
            .map_err(|e| super::jetstream("answering a bootstrap request", e))?;
        sent += 1;
    }
    Ok(sent)
}

/// Why the owner must not answer a bootstrap request on `reply`, or `None`
/// if it may: a reply subject must be a valid subject to publish to (no
/// wildcard, whitespace or empty token, at most
/// [`MAX_SUBJECT_BYTES`](super::MAX_SUBJECT_BYTES)), outside the state
/// stream's prefix (`<prefix>` and `<prefix>.…`, which the stream
/// captures), not a `$` subject (`$JS.API.…` is the JetStream API, `$SYS`,
/// `$KV`, `$O` are the system's and the stores'), and not one of ecst's own
/// `_ecst.…` subjects (another owner's requests).
pub fn reply_refusal(subjects: &Subjects, reply: &str) -> Option<&'static str> {
    if !is_publishable(reply) {
        return Some("not a subject one can publish to (a wildcard, whitespace, an empty token, or too long)");
    }
    if subjects.is_under_prefix(reply) {
        return Some("inside the state stream's prefix: the answer would be stored as state");
    }
    if reply.starts_with('$') {
        return Some("a `$` subject (JetStream API or system): not an inbox");
    }
    if reply == "_ecst" || reply.starts_with("_ecst.") {
        return Some("one of ecst's own subjects: not an inbox");
    }
    None
}

/// `text` for a log line: at most 200 bytes, control characters escaped.
fn shown(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end].escape_debug().collect();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Asks the owner of `T` for its current state and returns the events it
/// sent (structured-mode JSON), complete or an error: a missing end marker
/// within `timeout`, a count that does not match, or an answer the owner
/// aborted is [`NatsError::Bootstrap`]; an answer with an event of another
/// entity, or of a key the request did not name, is
/// [`NatsError::BootstrapMisaddressed`], and nothing of it can be merged:
/// once one event of it was not asked for, none of it can be trusted to be
/// the owner's. An event whose attributes cannot be read
/// at all is returned as it is: it cannot apply, and
/// [`Follower::bootstrap_from_owner`](super::Follower::bootstrap_from_owner)
/// reports it in [`BatchOutcome::rejected`](crate::consume::BatchOutcome::rejected).
///
/// # Cancellation
///
/// Cancellation-safe: dropping the future drops the answer's subscription;
/// nothing was returned, so nothing was merged.
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
            Some(aborted) if aborted == ABORTED => {
                let why = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(ERROR))
                    .map_or("no reason given", |v| v.as_str());
                return Err(fail(format!(
                    "the owner aborted its answer after {} events: {}",
                    events.len(),
                    shown(why)
                )));
            }
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
                check_addressed::<T>(request, &events)?;
                return Ok(events);
            }
        }
    }
}

/// Checks that every event of an answer is of entity `T` and, when the
/// request named keys, of one of them: the answer's address, as a stream
/// message's subject is its address. Keys are compared in their canonical
/// spelling (a requested `007` of a numeric key is key `7`); the decoder
/// refuses an event whose key is not spelt canonically.
fn check_addressed<T: StateEvent>(
    request: &BootstrapRequest,
    events: &[Vec<u8>],
) -> Result<(), NatsError> {
    let asked: Option<std::collections::HashSet<String>> = request.keys.as_ref().map(|keys| {
        keys.iter()
            .map(|key| match T::Key::parse_key(key) {
                Ok(parsed) => parsed.to_string(),
                Err(_) => key.clone(),
            })
            .collect()
    });
    for event in events {
        // Unreadable attributes: no address to check; it cannot apply.
        let Ok((header, _)) = decode_header(event) else {
            continue;
        };
        let entity_ok = header.entity == T::ENTITY;
        let key_ok = asked
            .as_ref()
            .is_none_or(|asked| asked.contains(header.key.as_ref()));
        if !(entity_ok && key_ok) {
            return Err(NatsError::BootstrapMisaddressed {
                entity: T::ENTITY,
                event_entity: shown(&header.entity),
                event_key: shown(&header.key),
                asked: match &asked {
                    None => format!("every key of `{}`", T::ENTITY),
                    Some(keys) => format!("{} key(s) of `{}`", keys.len(), T::ENTITY),
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_on_inboxes() {
        let subjects = Subjects::new("acme.crm").unwrap();
        for fine in [
            "_INBOX.abc.def",
            "my.inbox.1",
            "acme.crmx.customer",
            "acme",
            "_ecstx.reply",
        ] {
            assert_eq!(reply_refusal(&subjects, fine), None, "{fine}");
        }
        for hostile in [
            "acme.crm",
            "acme.crm.customer.c-1",
            "acme.crm.other",
            "$JS.API.STREAM.DELETE.CRM",
            "$SYS.REQ.SERVER.PING",
            "$KV.config.a",
            "_ecst.bootstrap.acme.crm.customer",
            "_INBOX.*",
            "_INBOX.>",
            "a..b",
            "a b",
            "",
        ] {
            assert!(reply_refusal(&subjects, hostile).is_some(), "{hostile}");
        }
        let long = format!("_INBOX.{}", "x".repeat(super::super::MAX_SUBJECT_BYTES));
        assert!(reply_refusal(&subjects, &long).is_some());
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"é".repeat(150)).chars().count(), 101);
    }
}
