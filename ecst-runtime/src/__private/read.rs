//! Reading the generated older versions of an entity (`CustomerV1`, ..)
//! without a serde derive on each: the derive emits one set of typed slots
//! per entity, shared by its older versions, and each version's
//! `Deserialize` reads into them through [`read_struct`] with that
//! version's [`Layout`], then takes its fields out with [`take`] (in
//! [`FromSlots`], called inside the deserializer, as serde's derive builds
//! the struct, so that a format's errors carry the position).
//!
//! What it accepts, and the errors it reports, are those of serde's derive
//! on a struct without `#[serde]` attributes (bar `rename_all`, applied by
//! the derive to the names in the layout): a map (unknown keys ignored, a
//! duplicate key an error, a missing `Option` field `None`, any other
//! missing field an error) or a sequence of the fields in order.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One older version's shape on the wire.
pub struct Layout {
    /// The struct's name, as serde's derive passes it (`"CustomerV1"`).
    pub name: &'static str,
    /// The fields' serialized names, in declaration order.
    pub fields: &'static [&'static str],
    /// For each field, the index of the entity's slot it is read into.
    pub slots: &'static [usize],
    /// What a too short sequence expected: `"struct CustomerV1 with 8
    /// elements"`, as serde's derive says it.
    pub expected_len: &'static str,
}

/// The typed slots of an entity's older versions: one `Option<T>` per
/// distinct field (name history and type) of the versions read this way.
/// Implemented by the derive.
pub trait Slots: Sized {
    /// Every slot empty.
    fn empty() -> Self;

    /// Reads the value of the map entry for `slot`; `name` is the key, for
    /// the duplicate-field error.
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        slot: usize,
        name: &'static str,
        map: &mut A,
    ) -> Result<(), A::Error>;

    /// Reads the `index`th element of a sequence into `slot`.
    fn read_element<'de, A: SeqAccess<'de>>(
        &mut self,
        slot: usize,
        index: usize,
        seq: &mut A,
        layout: &'static Layout,
    ) -> Result<(), A::Error>;
}

/// An older version built from its entity's slots. Implemented by the
/// derive, with [`take`] for each field.
pub trait FromSlots<S>: Sized {
    /// The version's fields, taken out of `slots`.
    fn from_slots<E: de::Error>(slots: S) -> Result<Self, E>;
}

/// Reads one older version's fields into its entity's slots and builds it.
pub fn read_struct<'de, S: Slots, T: FromSlots<S>, D: Deserializer<'de>>(
    deserializer: D,
    layout: &'static Layout,
) -> Result<T, D::Error> {
    deserializer.deserialize_struct(
        layout.name,
        layout.fields,
        ReadVisitor {
            layout,
            read: PhantomData,
        },
    )
}

/// The body of a [`Slots::read_value`] arm.
#[inline]
pub fn next_value<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(<A::Error as de::Error>::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The body of a [`Slots::read_element`] arm.
#[inline]
pub fn next_element<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    slot: &mut Option<T>,
    index: usize,
    seq: &mut A,
    layout: &'static Layout,
) -> Result<(), A::Error> {
    match seq.next_element()? {
        Some(value) => {
            *slot = Some(value);
            Ok(())
        }
        None => Err(<A::Error as de::Error>::invalid_length(
            index,
            &layout.expected_len,
        )),
    }
}

/// A field's value from its slot; a missing field is `None` for an
/// `Option`, else the error "missing field `name`" (serde's
/// `missing_field`).
#[inline]
pub fn take<'de, T: Deserialize<'de>, E: de::Error>(
    slot: Option<T>,
    name: &'static str,
) -> Result<T, E> {
    match slot {
        Some(value) => Ok(value),
        None => T::deserialize(MissingField {
            name,
            error: PhantomData,
        }),
    }
}

struct ReadVisitor<S, T> {
    layout: &'static Layout,
    read: PhantomData<fn(S) -> T>,
}

impl<'de, S: Slots, T: FromSlots<S>> Visitor<'de> for ReadVisitor<S, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "struct {}", self.layout.name)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut slots = S::empty();
        for (index, &slot) in self.layout.slots.iter().enumerate() {
            slots.read_element(slot, index, &mut seq, self.layout)?;
        }
        T::from_slots(slots)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut slots = S::empty();
        let fields = self.layout.fields;
        while let Some(key) = map.next_key_seed(FieldKey { fields })? {
            match key.and_then(|i| Some((*self.layout.slots.get(i)?, *fields.get(i)?))) {
                Some((slot, name)) => slots.read_value(slot, name, &mut map)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        T::from_slots(slots)
    }
}

/// A map key: the position of the field it names, `None` for a key to
/// ignore. serde's derived field identifier: a name, its bytes, or an
/// index.
struct FieldKey {
    fields: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for FieldKey {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldKey {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(usize::try_from(value)
            .ok()
            .filter(|&i| i < self.fields.len()))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(self.fields.iter().position(|name| *name == value))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Self::Value, E> {
        Ok(self.fields.iter().position(|name| name.as_bytes() == value))
    }
}

/// serde's `missing_field`: `None` for an `Option`, else the error.
struct MissingField<E> {
    name: &'static str,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> Deserializer<'de> for MissingField<E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, E> {
        Err(E::missing_field(self.name))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
