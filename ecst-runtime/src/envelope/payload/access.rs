//! What the payload reader hands to visitors: the elements of an array,
//! the entries of an object, a map key, an enum's variant. Each makes the
//! calls, and reads the bytes, that serde_json's counterpart
//! (`SeqAccess`, `MapAccess`, `MapKey`, `UnitVariantAccess`,
//! `VariantAccess` in its `de.rs`) does, and gives up where that one fails.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, Deserialize, DeserializeSeed, Visitor};

use super::{GaveUp, PayloadReader};

/// The elements of an array whose `[` was read.
pub(super) struct Elements<'r, 'de> {
    reader: &'r mut PayloadReader<'de>,
    first: bool,
}

impl<'r, 'de> Elements<'r, 'de> {
    pub(super) fn new(reader: &'r mut PayloadReader<'de>) -> Self {
        Elements {
            reader,
            first: true,
        }
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = GaveUp;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, GaveUp> {
        match self.reader.whitespace() {
            Some(b']') => return Ok(None),
            Some(_) if self.first => self.first = false,
            Some(b',') => {
                self.reader.at += 1;
                // `[1,]`: a trailing comma.
                if matches!(self.reader.whitespace(), Some(b']') | None) {
                    return self.reader.give_up();
                }
            }
            _ => return self.reader.give_up(),
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

/// The entries of an object whose `{` was read.
pub(super) struct Entries<'r, 'de> {
    reader: &'r mut PayloadReader<'de>,
    first: bool,
}

impl<'r, 'de> Entries<'r, 'de> {
    pub(super) fn new(reader: &'r mut PayloadReader<'de>) -> Self {
        Entries {
            reader,
            first: true,
        }
    }
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = GaveUp;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GaveUp> {
        match self.reader.whitespace() {
            Some(b'}') => return Ok(None),
            Some(b'"') if self.first => self.first = false,
            Some(b',') if !self.first => {
                self.reader.at += 1;
                if self.reader.whitespace() != Some(b'"') {
                    return self.reader.give_up();
                }
            }
            _ => return self.reader.give_up(),
        }
        seed.deserialize(Key::new(self.reader)).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GaveUp> {
        self.reader.expect(b':')?;
        seed.deserialize(&mut *self.reader)
    }
}

/// A map key, at its opening quote: a string, whatever the visitor asks
/// for, as serde_json's `MapKey` reads it; numbers and booleans in keys
/// (which serde_json reads from inside the quotes) give up.
pub(super) struct Key<'r, 'de> {
    reader: &'r mut PayloadReader<'de>,
}

impl<'r, 'de> Key<'r, 'de> {
    pub(super) fn new(reader: &'r mut PayloadReader<'de>) -> Self {
        Key { reader }
    }

    #[inline]
    fn refuse<T>(self) -> Result<T, GaveUp> {
        self.reader.give_up()
    }
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = GaveUp;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        visitor.visit_borrowed_str(self.reader.key()?)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.deserialize_any(visitor)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.deserialize_any(visitor)
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.deserialize_any(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_i8<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_i16<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_i32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_i64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_u8<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_u16<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_u32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_u64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_u128<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.refuse()
    }

    /// Map keys cannot be null: always `visit_some`, as serde_json.
    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        visitor.visit_some(self)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        if PayloadReader::is_private(name) {
            return self.refuse();
        }
        visitor.visit_newtype_struct(self)
    }

    /// serde_json reads an enum key as an enum value at the same place: a
    /// unit variant named by the string.
    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        de::Deserializer::deserialize_enum(self.reader, name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        char unit unit_struct seq tuple tuple_struct map struct ignored_any
    }
}

/// An enum written as a string: a unit variant.
pub(super) struct StringVariant<'r, 'de> {
    reader: &'r mut PayloadReader<'de>,
}

impl<'r, 'de> StringVariant<'r, 'de> {
    pub(super) fn new(reader: &'r mut PayloadReader<'de>) -> Self {
        StringVariant { reader }
    }
}

impl<'r, 'de> de::EnumAccess<'de> for StringVariant<'r, 'de> {
    type Error = GaveUp;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), GaveUp> {
        let variant = seed.deserialize(&mut *self.reader)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for StringVariant<'_, 'de> {
    type Error = GaveUp;

    #[inline]
    fn unit_variant(self) -> Result<(), GaveUp> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, GaveUp> {
        self.reader.give_up()
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, GaveUp> {
        self.reader.give_up()
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, GaveUp> {
        self.reader.give_up()
    }
}

/// An enum written as a one-entry object whose `{` was read: the key names
/// the variant, the value is its content.
pub(super) struct ObjectVariant<'r, 'de> {
    reader: &'r mut PayloadReader<'de>,
}

impl<'r, 'de> ObjectVariant<'r, 'de> {
    pub(super) fn new(reader: &'r mut PayloadReader<'de>) -> Self {
        ObjectVariant { reader }
    }
}

impl<'r, 'de> de::EnumAccess<'de> for ObjectVariant<'r, 'de> {
    type Error = GaveUp;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), GaveUp> {
        if self.reader.whitespace() != Some(b'"') {
            return self.reader.give_up();
        }
        let variant = seed.deserialize(Key::new(&mut *self.reader))?;
        self.reader.expect(b':')?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for ObjectVariant<'_, 'de> {
    type Error = GaveUp;

    #[inline]
    fn unit_variant(self) -> Result<(), GaveUp> {
        <()>::deserialize(self.reader)
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, GaveUp> {
        seed.deserialize(self.reader)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, GaveUp> {
        de::Deserializer::deserialize_seq(self.reader, visitor)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        de::Deserializer::deserialize_struct(self.reader, "", fields, visitor)
    }
}

/// The newtype name under which serde_json's `RawValue` asks for its text
/// (serde_json's `raw::TOKEN`).
pub(super) const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// A raw value's text as serde_json hands it to `RawValue`'s visitor
/// (`BorrowedRawDeserializer` in its `raw.rs`): a map of one entry, whose
/// key is [`RAW_VALUE`] and whose value is the text, borrowed.
pub(super) struct RawEntry<'de> {
    raw: Option<&'de str>,
}

impl<'de> RawEntry<'de> {
    pub(super) fn new(raw: &'de str) -> Self {
        RawEntry { raw: Some(raw) }
    }
}

impl<'de> de::MapAccess<'de> for RawEntry<'de> {
    type Error = GaveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GaveUp> {
        if self.raw.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(RAW_VALUE))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GaveUp> {
        match self.raw.take() {
            Some(raw) => seed.deserialize(BorrowedStrDeserializer::new(raw)),
            // Asked for a value without a key: serde_json's would panic.
            None => Err(GaveUp),
        }
    }
}
