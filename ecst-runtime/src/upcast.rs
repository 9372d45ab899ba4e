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

/// Why a payload (the `data` of an envelope, without the envelope) could
/// not be decoded into the newest version: what
/// [`StateEvent::from_json_version`](crate::StateEvent::from_json_version)
/// and [`StateEvent::deserialize_version`](crate::StateEvent::deserialize_version)
/// return. `E` is the deserializer's own error type (`serde_json::Error`
/// unless you decode another format).
#[derive(Debug, thiserror::Error)]
pub enum PayloadError<E = serde_json::Error> {
    /// The payload does not match the struct of its declared version.
    #[error("payload does not match schema version {version}: {source}")]
    Mismatch {
        /// The declared version.
        version: u32,
        /// What the deserializer reported.
        source: E,
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

/// The error of [`StateEvent::deserialize_version`](crate::StateEvent::deserialize_version):
/// the same as [`PayloadError`], over the deserializer's error type. Kept
/// as a name for code written against ecst 0.1.0, where it was a type of
/// its own.
pub type DecodeVersionError<E> = PayloadError<E>;
