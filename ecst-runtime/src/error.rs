//! The typed error of everything that reads an event.

use core::fmt;
use std::error::Error as StdError;

use crate::upcast::UpcastError;

/// What is known about an event that could not be decoded or applied.
///
/// Every field is what the envelope itself said, as far as it could be read
/// before the failure: a garbled envelope may leave all of them `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The CloudEvents `id`.
    pub id: Option<String>,
    /// The entity name (CloudEvents `type`).
    pub entity: Option<String>,
    /// The entity key (CloudEvents `subject`).
    pub key: Option<String>,
    /// The schema version the envelope declared.
    pub schema_version: Option<u32>,
    /// The per-entity sequence the envelope declared.
    pub sequence: Option<u64>,
}

impl fmt::Display for EventContext {
    /// `event customer:c-1:7 (type customer, key c-1, schemaversion 3,
    /// sequence 7)`, leaving out what could not be read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("event")?;
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        let mut parts: Vec<String> = Vec::new();
        if let Some(entity) = &self.entity {
            parts.push(format!("type {entity}"));
        }
        if let Some(key) = &self.key {
            parts.push(format!("key {key}"));
        }
        if let Some(version) = self.schema_version {
            parts.push(format!("schemaversion {version}"));
        }
        if let Some(sequence) = self.sequence {
            parts.push(format!("sequence {sequence}"));
        }
        if parts.is_empty() && self.id.is_none() {
            f.write_str(" (unreadable envelope)")
        } else if parts.is_empty() {
            Ok(())
        } else {
            write!(f, " ({})", parts.join(", "))
        }
    }
}

/// Why an event was rejected.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The bytes are not a JSON CloudEvent: not JSON, not an object, an
    /// attribute of the wrong JSON type, or trailing bytes.
    Malformed(serde_json::Error),
    /// A required CloudEvents or ecst attribute is missing.
    MissingAttribute(&'static str),
    /// An attribute is present but its value is not acceptable.
    InvalidAttribute {
        /// The attribute's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `datacontenttype` names something other than JSON.
    UnsupportedContentType(String),
    /// The event is of another entity type than the one expected.
    WrongEntity {
        /// The entity the reader handles.
        expected: &'static str,
    },
    /// No replica is registered for the event's entity type.
    UnknownEntity,
    /// The event was written in a schema version newer than this build
    /// knows. Producers upgrade before consumers: park such events and retry
    /// them after the consumer is upgraded.
    FutureVersion {
        /// The newest version this build knows.
        newest_known: u32,
    },
    /// The schema version is not a valid version (versions start at 1).
    InvalidVersion,
    /// The payload does not match the struct of its declared schema version.
    PayloadMismatch(serde_json::Error),
    /// Upcasting the payload to the newest version failed.
    Upcast(UpcastError),
    /// The `subject` could not be parsed as the entity's key type.
    InvalidKey(String),
    /// The payload's key field differs from the envelope's `subject`.
    KeyMismatch {
        /// The key found in the payload.
        payload_key: String,
    },
    /// The `subject` is longer than
    /// [`MAX_KEY_BYTES`](crate::envelope::MAX_KEY_BYTES).
    KeyTooLong {
        /// The subject's length in bytes.
        len: usize,
    },
    /// The `subject` holds a control character (`char::is_control`: U+0000
    /// to U+001F, U+007F to U+009F), which a key cannot carry: PostgreSQL
    /// TEXT cannot hold NUL, and keys appear in logs and NATS subjects.
    KeyControlCharacter {
        /// The character.
        character: char,
        /// Its byte offset in the subject.
        at: usize,
    },
    /// `dataschema` is an ecst schema URI (`urn:ecst:schema:...`) that
    /// contradicts `type` and `schemaversion`.
    DataSchemaMismatch {
        /// The `dataschema` found (control characters escaped, shortened).
        found: String,
        /// The URI `type` and `schemaversion` call for.
        expected: String,
    },
    /// An upsert without `data`.
    MissingData,
    /// A delete that carries `data`.
    UnexpectedData,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Malformed(e) => write!(f, "not a JSON CloudEvent: {e}"),
            DecodeErrorKind::MissingAttribute(name) => {
                write!(f, "required attribute `{name}` is missing")
            }
            DecodeErrorKind::InvalidAttribute { name, reason } => {
                write!(f, "attribute `{name}` is invalid: {reason}")
            }
            DecodeErrorKind::UnsupportedContentType(ct) => write!(
                f,
                "datacontenttype `{ct}` is not supported; ecst reads `application/json`"
            ),
            DecodeErrorKind::WrongEntity { expected } => {
                write!(f, "expected an event of type `{expected}`")
            }
            DecodeErrorKind::UnknownEntity => {
                f.write_str("no replica is registered for this entity type")
            }
            DecodeErrorKind::FutureVersion { newest_known } => write!(
                f,
                "schema version is newer than this build knows (newest known: v{newest_known}); \
                 upgrade the consumer, or park the event until it is"
            ),
            DecodeErrorKind::InvalidVersion => f.write_str("schema versions start at 1"),
            DecodeErrorKind::PayloadMismatch(e) => {
                write!(f, "data does not match its declared schema version: {e}")
            }
            DecodeErrorKind::Upcast(e) => fmt::Display::fmt(e, f),
            DecodeErrorKind::InvalidKey(reason) => {
                write!(f, "subject is not a valid key: {reason}")
            }
            DecodeErrorKind::KeyMismatch { payload_key } => {
                write!(f, "subject differs from the key in data (`{payload_key}`)")
            }
            DecodeErrorKind::KeyTooLong { len } => write!(
                f,
                "subject is {len} bytes long; keys are at most {} bytes",
                crate::envelope::MAX_KEY_BYTES
            ),
            DecodeErrorKind::KeyControlCharacter { character, at } => write!(
                f,
                "subject holds the control character U+{:04X} at byte {at}; \
                 keys cannot carry control characters",
                u32::from(*character)
            ),
            DecodeErrorKind::DataSchemaMismatch { found, expected } => write!(
                f,
                "dataschema `{found}` contradicts type and schemaversion, which call for \
                 `{expected}`"
            ),
            DecodeErrorKind::MissingData => f.write_str("an upsert must carry `data`"),
            DecodeErrorKind::UnexpectedData => f.write_str("a delete must not carry `data`"),
        }
    }
}

/// An event could not be decoded or applied.
///
/// Carries what the envelope said ([`EventContext`]: id, entity, key, schema
/// version, sequence) and why it was rejected ([`DecodeErrorKind`]). Nothing
/// that fails is dropped silently: every rejection is one of these.
pub struct DecodeError(Box<Inner>);

struct Inner {
    context: EventContext,
    kind: DecodeErrorKind,
}

impl DecodeError {
    /// An error of `kind` about the event described by `context`.
    pub fn new(context: EventContext, kind: DecodeErrorKind) -> Self {
        DecodeError(Box::new(Inner { context, kind }))
    }

    /// What the envelope said about the event.
    pub fn context(&self) -> &EventContext {
        &self.0.context
    }

    /// Why the event was rejected.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }

    /// Consumes the error, returning the context and the kind.
    pub fn into_parts(self) -> (EventContext, DecodeErrorKind) {
        let inner = *self.0;
        (inner.context, inner.kind)
    }

    /// `true` when the event was written in a schema version newer than this
    /// build knows: the event is fine, the consumer is old. Park it and
    /// retry after upgrading instead of treating it as poison.
    pub fn is_future_version(&self) -> bool {
        matches!(self.0.kind, DecodeErrorKind::FutureVersion { .. })
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("context", &self.0.context)
            .field("kind", &self.0.kind)
            .finish()
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.context, self.0.kind)
    }
}

impl StdError for DecodeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.0.kind {
            DecodeErrorKind::Malformed(e) | DecodeErrorKind::PayloadMismatch(e) => Some(e),
            DecodeErrorKind::Upcast(e) => Some(e),
            _ => None,
        }
    }
}
