//! The traits a `#[derive(StateEvent)]` type implements.

use core::fmt::{Debug, Display};
use core::hash::Hash;
use core::str::FromStr;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Serialize;

use crate::upcast::{DecodeVersionError, PayloadError, UpcastError};

/// The key of an entity: what the envelope's `subject` carries and what a
/// [`Replica`](crate::Replica) indexes by.
///
/// Implemented for every type that is `Clone + Eq + Hash + Debug + Display +
/// FromStr` (with a displayable parse error): `String`, the integer types, and
/// your own newtypes once they implement `Display` and `FromStr`. `Display`
/// writes the key into the envelope; `FromStr` reads it back, so the two must
/// round-trip.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an entity key",
    note = "an entity key needs `Clone + Eq + Hash + Debug + Display + FromStr` (with a `Display` error), and `Display`/`FromStr` must round-trip"
)]
pub trait EntityKey: Clone + Eq + Hash + Debug + Display + FromStr + 'static {
    /// Parses a key from its `Display` form, the parse error as text.
    fn parse_key(text: &str) -> Result<Self, String>;
}

impl<K> EntityKey for K
where
    K: Clone + Eq + Hash + Debug + Display + FromStr + 'static,
    <K as FromStr>::Err: Display,
{
    fn parse_key(text: &str) -> Result<Self, String> {
        K::from_str(text).map_err(|e| e.to_string())
    }
}

/// A versioned state event: an entity whose full state is published on every
/// change.
///
/// Implement it with `#[derive(StateEvent)]`; the derive writes the struct's
/// history into [`StateEvent::deserialize_version`] and
/// [`StateEvent::schema`]. The type itself is always the newest version.
pub trait StateEvent: Serialize + DeserializeOwned + 'static {
    /// The key type, taken from the field marked `#[state_event(key)]`.
    type Key: EntityKey;

    /// The entity name: the CloudEvents `type` of its envelopes.
    const ENTITY: &'static str;

    /// The newest (current) schema version. Versions run `1..=VERSION`.
    const VERSION: u32;

    /// The key of this entity.
    fn key(&self) -> &Self::Key;

    /// Deserializes a payload written in schema `version` and upcasts it, hop
    /// by hop, to the newest version.
    ///
    /// This is the single dispatch point every decoder goes through: the
    /// envelope decoder calls it with the payload in place, so a payload is
    /// read once, straight into the struct of its own version.
    fn deserialize_version<'de, D>(
        version: u32,
        deserializer: D,
    ) -> Result<Self, DecodeVersionError<D::Error>>
    where
        D: Deserializer<'de>;

    /// The JSON Schema of `version`, or `None` outside `1..=VERSION`.
    fn schema(version: u32) -> Option<schemars::Schema>;

    /// Decodes a JSON payload (the `data` of an envelope, without the envelope)
    /// written in schema `version` into the newest version.
    fn from_json_version(version: u32, json: &[u8]) -> Result<Self, PayloadError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let value = Self::deserialize_version(version, &mut de).map_err(|e| match e {
            DecodeVersionError::Payload(source) => PayloadError::Mismatch { version, source },
            DecodeVersionError::Upcast(source) => PayloadError::Upcast(source),
            DecodeVersionError::UnknownVersion { version, newest } => {
                PayloadError::UnknownVersion { version, newest }
            }
        })?;
        de.end()
            .map_err(|source| PayloadError::Mismatch { version, source })?;
        Ok(value)
    }

    /// The JSON Schema of every version, oldest first.
    fn schemas() -> Vec<(u32, schemars::Schema)> {
        (1..=Self::VERSION)
            .filter_map(|v| Self::schema(v).map(|s| (v, s)))
            .collect()
    }
}

/// A version of a [`StateEvent`] that can be brought up to the newest one.
///
/// The derive implements it for every generated older-version struct
/// (`CustomerV1`, `CustomerV2`, ...) and, as the identity, for the newest type.
pub trait Upcast: Serialize + DeserializeOwned + Sized {
    /// The newest version of the entity.
    type Latest: StateEvent;

    /// The schema version this struct describes.
    const VERSION: u32;

    /// Converts this version into the newest one, hop by hop.
    fn upcast(self) -> Result<Self::Latest, UpcastError>;
}

/// Deserializes version `V` and upcasts it; the body of every generated
/// `deserialize_version` arm.
#[doc(hidden)]
pub fn deserialize_and_upcast<'de, V, D>(
    deserializer: D,
) -> Result<V::Latest, DecodeVersionError<D::Error>>
where
    V: Upcast,
    D: Deserializer<'de>,
{
    let old = V::deserialize(deserializer).map_err(DecodeVersionError::Payload)?;
    old.upcast().map_err(DecodeVersionError::Upcast)
}
