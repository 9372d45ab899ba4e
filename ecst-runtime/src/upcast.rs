//! Errors of the typed upcast chain.

use core::fmt;
use std::error::Error as StdError;

/// The boxed error a user conversion function returned.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A hop from one schema version to the next failed in a user function
/// (`retyped(.., with = f)` or `hop(.., with = f)`).
#[derive(Debug)]
pub struct UpcastError {
    entity: &'static str,
    from: u32,
    to: u32,
    field: Option<&'static str>,
    source: BoxError,
}

impl UpcastError {
    /// Creates an error for the hop `from -> to` of `entity`; `field` names
    /// the retyped field, `None` for a whole-struct hop function.
    pub fn new(
        entity: &'static str,
        from: u32,
        to: u32,
        field: Option<&'static str>,
        source: impl Into<BoxError>,
    ) -> Self {
        UpcastError {
            entity,
            from,
            to,
            field,
            source: source.into(),
        }
    }

    /// The entity whose hop failed.
    pub fn entity(&self) -> &'static str {
        self.entity
    }

    /// The version the hop started from.
    pub fn from_version(&self) -> u32 {
        self.from
    }

    /// The version the hop was going to.
    pub fn to_version(&self) -> u32 {
        self.to
    }

    /// The retyped field whose conversion failed, if the hop was generated.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upcasting `{}` from v{} to v{} failed",
            self.entity, self.from, self.to
        )?;
        if let Some(field) = self.field {
            write!(f, " in field `{field}`")?;
        }
        write!(f, ": {}", self.source)
    }
}

impl StdError for UpcastError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// Why [`StateEvent::deserialize_version`](crate::StateEvent::deserialize_version)
/// failed. `E` is the deserializer's own error type.
#[derive(Debug)]
pub enum DecodeVersionError<E> {
    /// The payload does not match the struct of its declared version.
    Payload(E),
    /// A hop to a newer version failed.
    Upcast(UpcastError),
    /// The version is outside `1..=newest`.
    UnknownVersion {
        /// The version asked for.
        version: u32,
        /// The newest version this build knows.
        newest: u32,
    },
}

/// Why a bare payload (no envelope) could not be decoded; see
/// [`StateEvent::from_json_version`](crate::StateEvent::from_json_version).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The payload does not match the struct of its declared version.
    #[error("payload does not match schema version {version}: {source}")]
    Mismatch {
        /// The declared version.
        version: u32,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A hop to a newer version failed.
    #[error(transparent)]
    Upcast(UpcastError),
    /// The version is not known to this build.
    #[error("schema version {version} is unknown; this build knows 1..={newest}")]
    UnknownVersion {
        /// The version asked for.
        version: u32,
        /// The newest version this build knows.
        newest: u32,
    },
}
