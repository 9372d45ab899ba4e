//! The CloudEvents 1.0 envelope around a state event.
//!
//! ecst writes JSON structured mode: one JSON object with the CloudEvents
//! attributes and the state under `data`. Besides the required `specversion`,
//! `id`, `source` and `type`, every envelope carries:
//!
//! | attribute | value |
//! |---|---|
//! | `type` | the entity name, e.g. `customer` |
//! | `subject` | the entity key, as its `Display` form: at most [`MAX_KEY_BYTES`] bytes, no control characters |
//! | `time` | when the producer built the event (RFC 3339) |
//! | `datacontenttype` | `application/json` (upserts only) |
//! | `dataschema` | `urn:ecst:schema:<entity>:v<N>` (upserts only); when a reader finds an ecst URI here, it must name `type` and `schemaversion` |
//! | `sequence` | the per-entity sequence, `0..=`[`Sequence::MAX`] (`i64::MAX`, the largest value every store holds), a 20-digit zero-padded decimal string so that it orders lexicographically, as the CloudEvents sequence extension asks; readers also accept unpadded strings and JSON integers |
//! | `schemaversion` | the schema version of `data`, an integer; never guessed from the payload's shape |
//! | `operation` | `upsert` or `delete` |
//! | `correlationid`, `causationid`, `traceparent` | when set |
//!
//! Unknown extension attributes are accepted and ignored. What the reader
//! refuses, and every leniency it keeps (and why), is listed in the
//! `decode` module's documentation, repeated here:
//!
//! **Refused** (each a [`DecodeError`] naming the event): a `sequence` above
//! [`Sequence::MAX`]; a `subject` longer than [`MAX_KEY_BYTES`] or holding a
//! control character; a `time` that is not an RFC 3339 date-time; an ecst
//! `dataschema` (`urn:ecst:schema:...`) other than
//! `urn:ecst:schema:<type>:v<schemaversion>`; a `schemaversion` string with
//! leading zeros; an empty `dataschema`; any attribute twice.
//!
//! **Lenient, on purpose:**
//!
//! - Unknown extension attributes are ignored: CloudEvents consumers must
//!   tolerate extensions they do not know.
//! - Attributes come in any order (a JSON object is unordered); `null` is an
//!   absent attribute, as in the CloudEvents JSON format.
//! - `sequence` is read from a JSON integer or a string of decimal digits,
//!   padded or not: the CloudEvents sequence extension is a string, other
//!   producers write integers or skip the padding, and the value, not its
//!   spelling, orders events. 0 is accepted (the producer's counter starts
//!   at 1).
//! - `schemaversion` is also read from a string of decimal digits in its
//!   plain form (`"3"`): CloudEvents binary mode carries every attribute as a
//!   string (ecst's own NATS binary mode turns `ce-schemaversion: 3` back into
//!   `"3"`), and that is the CloudEvents string encoding of an Integer.
//! - A `dataschema` that is not an ecst URI is not checked: a producer may
//!   point at its own schema registry. An ecst URI is checked after the
//!   entity and the version gate: an event of a version newer than the
//!   consumer knows is `FutureVersion` (to park), and judged on retry.
//! - `time` is optional, and any RFC 3339 form is read: an offset other than
//!   `Z`, lower-case `t`/`z`, a fraction of any length, a leap second `:60`
//!   on any day (checking it needs the leap-second table).
//! - `datacontenttype` may be absent (CloudEvents reads `data` as JSON then),
//!   carry parameters, differ in case, or be any `+json` type.
//! - `id`, `source`, `correlationid`, `causationid` and `traceparent` are
//!   opaque to ecst: any non-empty string (`id`, `source`) or any string.
//! - The `subject` is parsed with the key type's `FromStr`, which may accept
//!   several spellings of one key (`007` for the integer key 7); the replica
//!   holds the parsed key.
//! - A delete may carry `"data": null`, read as no data.

pub mod binary;
mod decode;
mod encode;
// Public (hidden) only for the differential tests and the fuzz target.
#[doc(hidden)]
pub mod payload;
mod scan;
mod traceparent;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;
use crate::event::StateEvent;
use crate::sequence::Sequence;

pub(crate) use decode::{
    check_key, decode_gated, decode_header, decode_typed, displays_as, finish_gated, shown,
    Checked, DataSlot, Decoded, Gate, Gated, Header, Held, InPlace,
};
pub use encode::EncodeError;
pub use traceparent::{TraceParent, TraceParentError};

pub use crate::sequence::SequenceOutOfRange;

/// The longest `subject` (entity key) the decoder accepts, in bytes of UTF-8.
///
/// Keys are stored in indexed columns and travel in NATS subjects: a
/// PostgreSQL B-tree index entry cannot exceed about 2.7 kB, and a NATS
/// subject is one line of the protocol. 1024 bytes leaves room for both.
pub const MAX_KEY_BYTES: usize = 1024;

/// The CloudEvents spec version ecst writes and reads.
pub const SPEC_VERSION: &str = "1.0";

/// The `datacontenttype` ecst writes.
pub const CONTENT_TYPE: &str = "application/json";

/// What an event does to its entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Operation {
    /// The entity was created or changed; `data` carries its full state.
    Upsert,
    /// The entity was deleted; there is no `data`.
    Delete,
}

impl Operation {
    /// The wire name: `upsert` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
        }
    }
}

/// The change an event carries.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Change<T> {
    /// The entity's full, newest state.
    Upsert(T),
    /// The entity was deleted.
    Delete,
}

impl<T> Change<T> {
    /// The operation of this change.
    pub fn operation(&self) -> Operation {
        match self {
            Change::Upsert(_) => Operation::Upsert,
            Change::Delete => Operation::Delete,
        }
    }
}

/// A state event in its CloudEvents envelope, with the state decoded (and
/// upcast) to the newest version of `T`.
///
/// Build one on the producer side with a [`Producer`](crate::Producer) (which
/// keeps the per-key sequence) or with [`Envelope::upsert`] /
/// [`Envelope::delete`]; read one with [`Envelope::from_json`].
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<T: StateEvent> {
    /// The CloudEvents `id`, unique per `source`.
    pub id: String,
    /// The CloudEvents `source`: the producing service.
    pub source: String,
    /// The entity key (`subject` on the wire).
    pub key: T::Key,
    /// The per-entity sequence.
    pub sequence: Sequence,
    /// The CloudEvents `time`, RFC 3339, as written.
    pub time: Option<String>,
    /// The id of the request or conversation this event belongs to.
    pub correlation_id: Option<String>,
    /// The id of the message that caused this event.
    pub causation_id: Option<String>,
    /// A W3C trace context `traceparent`.
    pub traceparent: Option<String>,
    /// The change itself.
    pub change: Change<T>,
    written_version: u32,
}

impl<T: StateEvent> Envelope<T> {
    /// An upsert of `state` at `sequence`. The key is taken from the state;
    /// `time` is now.
    pub fn upsert(
        source: impl Into<String>,
        id: impl Into<String>,
        sequence: Sequence,
        state: T,
    ) -> Self {
        let key = state.key().clone();
        Self::new(
            source.into(),
            id.into(),
            key,
            sequence,
            Change::Upsert(state),
        )
    }

    /// A delete of the entity `key` at `sequence`; `time` is now.
    pub fn delete(
        source: impl Into<String>,
        id: impl Into<String>,
        key: T::Key,
        sequence: Sequence,
    ) -> Self {
        Self::new(source.into(), id.into(), key, sequence, Change::Delete)
    }

    fn new(source: String, id: String, key: T::Key, sequence: Sequence, change: Change<T>) -> Self {
        Envelope {
            id,
            source,
            key,
            sequence,
            time: Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            change,
            written_version: T::VERSION,
        }
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C `traceparent`.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets the `traceparent` to the current span's, if the envelope has
    /// none and there is one: with the `opentelemetry` feature, the
    /// OpenTelemetry context of the current `tracing` span; without it,
    /// nothing (set one with [`Envelope::with_traceparent`]).
    /// [`Producer`](crate::Producer) calls this on every envelope it builds,
    /// and NATS's `Publisher` writes the current span's into an envelope
    /// without one.
    #[must_use]
    pub fn with_current_trace(mut self) -> Self {
        if self.traceparent.is_none() {
            self.traceparent = crate::telemetry::current_traceparent().map(|t| t.to_string());
        }
        self
    }

    /// The `traceparent`, read strictly ([`TraceParent::parse`]): `None`
    /// if absent, an error if malformed.
    pub fn trace_parent(&self) -> Option<Result<TraceParent, TraceParentError>> {
        self.traceparent.as_deref().map(TraceParent::parse)
    }

    /// The operation of this event.
    pub fn operation(&self) -> Operation {
        self.change.operation()
    }

    /// The state, for an upsert.
    pub fn state(&self) -> Option<&T> {
        match &self.change {
            Change::Upsert(state) => Some(state),
            Change::Delete => None,
        }
    }

    /// The schema version the event was written in: for a decoded envelope,
    /// the `schemaversion` on the wire (the state has been upcast since); for
    /// one built here, `T::VERSION`.
    pub fn written_version(&self) -> u32 {
        self.written_version
    }

    /// The CloudEvents `time` parsed, if present and valid RFC 3339 (any
    /// offset; the decoder refuses an envelope whose `time` is not).
    pub fn time(&self) -> Option<SystemTime> {
        let (seconds, nanos) = decode::parse_rfc3339(self.time.as_deref()?)?;
        let since_epoch = Duration::new(seconds.unsigned_abs(), 0);
        let whole = if seconds >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(since_epoch)?
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(since_epoch)?
        };
        whole.checked_add(Duration::from_nanos(u64::from(nanos)))
    }

    /// The `dataschema` URI of version `version` of `T`.
    pub fn dataschema(version: u32) -> String {
        dataschema(T::ENTITY, version)
    }

    /// Encodes the envelope as CloudEvents JSON (structured mode), always in
    /// the newest schema version.
    ///
    /// Fails only if the state's own `Serialize` implementation fails.
    pub fn to_json(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out)?;
        Ok(out)
    }

    /// Appends the CloudEvents JSON encoding to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode::write(self, out, self.traceparent.as_deref())
    }

    /// [`Envelope::to_json`], with the current span's `traceparent` if the
    /// envelope has none (see [`Envelope::with_current_trace`]).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn to_json_traced(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(512);
        match &self.traceparent {
            Some(_) => self.write_json(&mut out)?,
            None => {
                let current = crate::telemetry::current_traceparent().map(|t| t.to_string());
                encode::write(self, &mut out, current.as_deref())?;
            }
        }
        Ok(out)
    }

    /// Decodes CloudEvents JSON (structured mode) of entity `T`, upcasting
    /// the state from whatever version it was written in.
    pub fn from_json(json: &[u8]) -> Result<Self, DecodeError> {
        let decoded = decode_typed::<T>(json)?;
        let header = decoded.header;
        Ok(Envelope {
            id: header.id.into_owned(),
            source: header.source.into_owned(),
            key: decoded.key,
            sequence: header.sequence,
            time: header.time.map(Cow::into_owned),
            correlation_id: header.correlation_id.map(Cow::into_owned),
            causation_id: header.causation_id.map(Cow::into_owned),
            traceparent: header.traceparent.map(Cow::into_owned),
            change: decoded.change,
            written_version: header.schema_version,
        })
    }
}

/// The `dataschema` URI of an entity's schema version.
pub fn dataschema(entity: &str, version: u32) -> String {
    format!("urn:ecst:schema:{entity}:v{version}")
}
