//! Writing an [`Envelope`] as CloudEvents JSON.

use core::fmt;

use serde::{Serialize, Serializer};

use super::{dataschema, Change, Envelope, Operation, CONTENT_TYPE, SPEC_VERSION};
use crate::event::StateEvent;
use crate::sequence::Sequence;

/// The wire layout. Field order is deliberate: the attributes a reader needs
/// to pick the payload's struct (`type`, `schemaversion`, `operation`) come
/// before `data`, so readers decode `data` in one pass.
#[derive(Serialize)]
struct Wire<'a, T> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    entity: &'static str,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<String>,
    sequence: PaddedSequence,
    schemaversion: u32,
    operation: Operation,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
}

/// A sequence written as a 20-digit zero-padded decimal string, so that the
/// CloudEvents `sequence` extension's lexicographic order matches the numeric
/// one (`u64::MAX` has 20 digits).
struct PaddedSequence(Sequence);

impl Serialize for PaddedSequence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Padded(u64);
        impl fmt::Display for Padded {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:020}", self.0)
            }
        }
        serializer.collect_str(&Padded(self.0.get()))
    }
}

/// Writes `envelope` with `traceparent` (the envelope's own, or the
/// current span's for an envelope without one).
pub(super) fn write<T: StateEvent>(
    envelope: &Envelope<T>,
    out: &mut Vec<u8>,
    traceparent: Option<&str>,
) -> Result<(), EncodeError> {
    let subject = envelope.key.to_string();
    let data = match &envelope.change {
        Change::Upsert(state) => Some(state),
        Change::Delete => None,
    };
    let wire = Wire {
        specversion: SPEC_VERSION,
        id: &envelope.id,
        source: &envelope.source,
        entity: T::ENTITY,
        subject: &subject,
        time: envelope.time.as_deref(),
        datacontenttype: data.map(|_| CONTENT_TYPE),
        dataschema: data.map(|_| dataschema(T::ENTITY, T::VERSION)),
        sequence: PaddedSequence(envelope.sequence),
        schemaversion: T::VERSION,
        operation: envelope.change.operation(),
        correlationid: envelope.correlation_id.as_deref(),
        causationid: envelope.causation_id.as_deref(),
        traceparent,
        data,
    };
    // Writing into a Vec cannot fail on I/O; the state's own `Serialize` can
    // (a map with non-string keys, a failing `serialize_with`).
    serde_json::to_writer(&mut *out, &wire).map_err(|source| EncodeError {
        entity: T::ENTITY,
        key: subject.clone(),
        source,
    })
}

/// A state could not be encoded as JSON: its `Serialize` implementation
/// failed.
#[derive(Debug, thiserror::Error)]
#[error("encoding `{entity}` key `{key}` as JSON failed: {source}")]
pub struct EncodeError {
    entity: &'static str,
    key: String,
    source: serde_json::Error,
}
