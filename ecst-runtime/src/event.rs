//! The traits a `#[derive(StateEvent)]` type implements.

use core::fmt::{Debug, Display};
use core::hash::Hash;
use core::str::FromStr;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Serialize;

use crate::compatibility::Mode;
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
    note = "an entity key needs `Clone + Eq + Hash + Debug + Display + FromStr + Send + Sync` (with a `Display` error), and `Display`/`FromStr` must round-trip"
)]
pub trait EntityKey: Clone + Eq + Hash + Debug + Display + FromStr + Send + Sync + 'static {
    /// Parses a key from its `Display` form, the parse error as text.
    fn parse_key(text: &str) -> Result<Self, String>;
}

impl<K> EntityKey for K
where
    K: Clone + Eq + Hash + Debug + Display + FromStr + Send + Sync + 'static,
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
pub trait StateEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The key type, taken from the field marked `#[state_event(key)]`.
    type Key: EntityKey;

    /// The entity name: the CloudEvents `type` of its envelopes.
    const ENTITY: &'static str;

    /// The newest (current) schema version. Versions run `1..=VERSION`.
    const VERSION: u32;

    /// How each new version must relate to the earlier ones
    /// (`#[state_event(compatibility = "..")]`, Confluent Schema Registry's
    /// mode names), checked by the schema lock.
    ///
    /// Defaults to `NONE`: ecst readers dispatch on the explicit schema
    /// version and upcast, so they never read old data with a new schema and
    /// need no schema-level compatibility to stay correct. Declare a mode when
    /// something else relies on it: `FORWARD` or `FULL` lets a consumer read
    /// an event of the next, unknown version as its own newest version
    /// (unknown fields ignored, counted), so producers can upgrade first;
    /// `FORWARD_TRANSITIVE` or `FULL_TRANSITIVE` extends that to any newer
    /// version; `BACKWARD` keeps readers that do not upcast (other languages,
    /// a registry) working.
    const COMPATIBILITY: Mode = Mode::None;

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
        match core::str::from_utf8(json) {
            // Checked whole, in one pass: the string reader does not check
            // each string again, as the slice reader would.
            Ok(text) => payload_from_json(version, serde_json::Deserializer::from_str(text)),
            // Not UTF-8: the slice reader reports where it matters. It
            // skips strings it ignores (an unknown field) without checking
            // them, so it can accept such a payload; JSON text is UTF-8
            // wherever the bad bytes are, and an envelope holding the same
            // payload is refused whole, so the payload is refused too.
            Err(invalid) => {
                let _read: Self =
                    payload_from_json(version, serde_json::Deserializer::from_slice(json))?;
                Err(PayloadError::Mismatch {
                    version,
                    source: <serde_json::Error as serde::de::Error>::custom(format_args!(
                        "the payload is not UTF-8 (invalid byte at offset {})",
                        invalid.valid_up_to()
                    )),
                })
            }
        }
    }

    /// The JSON Schema of every version, oldest first.
    fn schemas() -> Vec<(u32, schemars::Schema)> {
        (1..=Self::VERSION)
            .filter_map(|v| Self::schema(v).map(|s| (v, s)))
            .collect()
    }
}

/// The body of [`StateEvent::from_json_version`], for either JSON reader.
fn payload_from_json<'de, T, R>(
    version: u32,
    mut de: serde_json::Deserializer<R>,
) -> Result<T, PayloadError>
where
    T: StateEvent,
    R: serde_json::de::Read<'de>,
{
    let value = T::deserialize_version(version, &mut de)?;
    de.end()
        .map_err(|source| PayloadError::Mismatch { version, source })?;
    Ok(value)
}

/// A version of a [`StateEvent`] that can be brought up to the newest one.
///
/// The derive implements it for every generated older-version struct
/// (`CustomerV1`, `CustomerV2`, ...) and, as the identity, for the newest type.
/// An older version only needs to be read: it derives `Deserialize` and
/// `JsonSchema`, and `Serialize`, `Clone`, `Debug` only when the entity's
/// `#[state_event(derive(..))]` lists them.
pub trait Upcast: DeserializeOwned + Sized {
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
    let old = V::deserialize(deserializer).map_err(|source| PayloadError::Mismatch {
        version: V::VERSION,
        source,
    })?;
    old.upcast().map_err(PayloadError::Upcast)
}
