//! A reader for the common shape of a payload (`data`), cheaper per token
//! than serde_json, that gives up on everything else.
//!
//! [`PayloadReader`] is a [`serde::Deserializer`] over JSON text that is
//! already known to be UTF-8. It reads plain JSON: strings without escapes
//! (borrowed from the text), integers that fit a `u64` (or, negative, an
//! `i64`), `true`, `false`, `null`, arrays and objects nested at most
//! [`MAX_DEPTH`] deep. On anything else it stops with [`GaveUp`], and the
//! caller reads the same text with serde_json instead. So it never reports
//! an error of its own; the contract is:
//!
//! - whenever it reads a value and [`PayloadReader::end`] says the text is
//!   used up (trailing whitespace aside), that value is the one
//!   `serde_json::from_str` gives for the same text and the same type: it
//!   makes the very visitor calls serde_json's `Deserializer` makes, method
//!   by method (numbers as `visit_u64` or, negative, `visit_i64`; a struct
//!   from an object or an array; an enum from a string or a one-entry
//!   object; `ignored_any` then `visit_unit`; map keys as serde_json's map
//!   key reader reads them);
//! - on anything else it fails, and from then on it has given up for good:
//!   even if a visitor swallows the failure and goes on, [`end`] fails. Any
//!   error, a visitor's own included, means "read it with serde_json".
//!
//! It gives up on: an escape (`\`) or a control character in a string; a
//! fraction, an exponent, `-0`, an integer beyond `u64` (or below
//! `i64::MIN`); nesting deeper than [`MAX_DEPTH`] (serde_json allows 128);
//! `i128`/`u128`, `deserialize_bytes`/`deserialize_byte_buf`; numbers and
//! booleans read from map keys; serde_json's private tokens as a map key,
//! and `$serde_json::private::Number` as a newtype name; and any syntax
//! error. serde_json's `RawValue` (the newtype
//! `$serde_json::private::RawValue`) it hands over as serde_json does, the
//! raw text of a value it skips. Where serde_json would
//! read these, it still does, from the caller's fallback.
//!
//! [`end`]: PayloadReader::end

mod access;

use core::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Visitor};

use self::access::{Elements, Entries, ObjectVariant, RawEntry, StringVariant, RAW_VALUE};
use super::decode::DataSource;
use super::scan::special_byte;

/// How deep arrays and objects may nest before the reader gives up: well
/// under serde_json's limit of 128 (less one inside an envelope), so that
/// whatever it reads, serde_json reads without reaching its limit.
pub const MAX_DEPTH: u8 = 64;

/// The reader stopped: the text is not in the shape it reads exactly as
/// serde_json does (or a visitor failed). Read it with serde_json.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaveUp;

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not read by the payload reader: read it with serde_json")
    }
}

impl std::error::Error for GaveUp {}

impl de::Error for GaveUp {
    #[cold]
    fn custom<T: fmt::Display>(_: T) -> Self {
        GaveUp
    }
}

/// Whether this build's serde_json hands a number to a `deserialize_any`
/// visitor as `visit_u64`/`visit_i64`, as this reader does. It does not when
/// its `arbitrary_precision` feature is on anywhere in the build (features
/// of a crate are shared by the whole build): numbers then come as a map
/// with a private key, which this reader does not mimic, so it is not used
/// at all. Asked of serde_json once per process.
pub fn reads_as_serde_json() -> bool {
    static PLAIN_NUMBERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAIN_NUMBERS.get_or_init(|| {
        /// `true` for a plain `visit_u64`; any other call is an error.
        struct Probe;
        impl Visitor<'_> for Probe {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<bool, E> {
                Ok(n == 1)
            }
        }
        let mut probe = serde_json::Deserializer::from_str("1");
        de::Deserializer::deserialize_any(&mut probe, Probe).unwrap_or(false)
    })
}

/// Reads a whole JSON text (whitespace around it allowed) as `T`, or gives
/// up: `Ok(v)` only where `serde_json::from_str::<T>(text)` is `Ok(v)`.
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, GaveUp> {
    let mut reader = PayloadReader::new(text);
    let value = T::deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

/// A [`serde::Deserializer`] over plain JSON text that gives up on what it
/// does not read exactly as serde_json does (see the [module docs](self)).
pub struct PayloadReader<'de> {
    text: &'de str,
    /// The index of the next unread byte.
    at: usize,
    /// How many more arrays or objects may open.
    depth_left: u8,
    /// The reader failed once: whatever follows is not trusted.
    gave_up: bool,
    /// The caller took the text as it is, unread
    /// ([`DataSource::take_text`]).
    taken: bool,
}

/// An integer as serde_json reads it: non-negative as a `u64`, negative as
/// an `i64`.
enum Integer {
    Unsigned(u64),
    Negative(i64),
}

impl<'de> PayloadReader<'de> {
    /// A reader at the start of `text`.
    pub fn new(text: &'de str) -> Self {
        PayloadReader {
            text,
            at: 0,
            depth_left: MAX_DEPTH,
            gave_up: false,
            taken: false,
        }
    }

    /// Checks, after a value was read, that only whitespace is left, and
    /// that the reader never gave up on the way (a visitor may have gone
    /// on after a failure). A text the caller took unread (as `data` whose
    /// bytes it recognised) needs no more reading.
    pub fn end(&mut self) -> Result<(), GaveUp> {
        if self.gave_up || !(self.taken || self.whitespace().is_none()) {
            return Err(GaveUp);
        }
        Ok(())
    }

    /// Whether the caller took the text unread ([`DataSource::take_text`]):
    /// then nothing of it was checked.
    pub fn taken(&self) -> bool {
        self.taken
    }

    /// Fails, for good.
    #[cold]
    #[inline(never)]
    fn give_up<T>(&mut self) -> Result<T, GaveUp> {
        self.gave_up = true;
        Err(GaveUp)
    }

    #[inline]
    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return, as
    /// serde_json) and returns the next byte, not consumed.
    #[inline]
    fn whitespace(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        loop {
            match bytes.get(self.at) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.at += 1,
                other => return other.copied(),
            }
        }
    }

    /// Consumes `byte` after whitespace, or gives up.
    #[inline]
    fn expect(&mut self, byte: u8) -> Result<(), GaveUp> {
        if self.whitespace() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.give_up()
        }
    }

    /// Consumes `word` (`null`, `true`, `false`), which starts at the next
    /// byte. Like serde_json, it does not look at the byte after it: what
    /// comes next must fit the syntax anyway.
    #[inline]
    fn literal(&mut self, word: &[u8]) -> Result<(), GaveUp> {
        let end = self.at + word.len();
        if self.bytes().get(self.at..end) == Some(word) {
            self.at = end;
            Ok(())
        } else {
            self.give_up()
        }
    }

    /// The rest of a string whose opening quote was consumed, borrowed:
    /// gives up on an escape, a control character or no closing quote.
    #[inline]
    fn string(&mut self) -> Result<&'de str, GaveUp> {
        let start = self.at;
        let end = special_byte(self.bytes(), start);
        if self.bytes().get(end) != Some(&b'"') {
            return self.give_up();
        }
        self.at = end + 1;
        // Both ends are at ASCII bytes, so on character boundaries.
        match self.text.get(start..end) {
            Some(text) => Ok(text),
            None => self.give_up(),
        }
    }

    /// An integer starting at the next byte (`-` or a digit), as serde_json
    /// reads it; gives up on a float, `-0`, overflow or a bad number.
    #[inline]
    fn integer(&mut self) -> Result<Integer, GaveUp> {
        let negative = self.bytes().get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let magnitude = self.digits()?;
        if !negative {
            return Ok(Integer::Unsigned(magnitude));
        }
        // serde_json: `-0` and anything below i64::MIN are floats.
        let value = (magnitude as i64).wrapping_neg();
        if value >= 0 {
            return self.give_up();
        }
        Ok(Integer::Negative(value))
    }

    /// The digits of a non-negative integer: one `0`, or no leading zero;
    /// not followed by a fraction or an exponent; at most `u64::MAX`.
    #[inline]
    fn digits(&mut self) -> Result<u64, GaveUp> {
        let bytes = self.bytes();
        let start = self.at;
        let mut value: u64 = 0;
        let mut i = start;
        while let Some(&b @ b'0'..=b'9') = bytes.get(i) {
            let digit = u64::from(b - b'0');
            // 19 digits never overflow; beyond, check.
            value = if i - start < 19 {
                value * 10 + digit
            } else {
                match value.checked_mul(10).and_then(|v| v.checked_add(digit)) {
                    Some(v) => v,
                    None => return self.give_up(),
                }
            };
            i += 1;
        }
        let count = i - start;
        let leading_zero = count > 1 && bytes.get(start) == Some(&b'0');
        if count == 0 || leading_zero || matches!(bytes.get(i), Some(b'.' | b'e' | b'E')) {
            return self.give_up();
        }
        self.at = i;
        Ok(value)
    }

    /// A number, for a `deserialize_<number>` call: serde_json's
    /// `deserialize_number`.
    #[inline]
    fn number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'-' | b'0'..=b'9') => match self.integer()? {
                Integer::Unsigned(n) => visitor.visit_u64(n),
                Integer::Negative(n) => visitor.visit_i64(n),
            },
            _ => self.give_up(),
        }
    }

    /// A string value, for `deserialize_str` and what serde_json forwards
    /// to it.
    #[inline]
    fn string_value<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, GaveUp> {
        if self.whitespace() != Some(b'"') {
            return self.give_up();
        }
        self.at += 1;
        visitor.visit_borrowed_str(self.string()?)
    }

    /// Opens an array or object (at the next byte): one level deeper.
    #[inline]
    fn open(&mut self) -> Result<(), GaveUp> {
        match self.depth_left.checked_sub(1) {
            Some(left) if left > 0 => {
                self.depth_left = left;
                self.at += 1;
                Ok(())
            }
            _ => self.give_up(),
        }
    }

    /// An array, at its `[`: the visitor reads the elements, then the `]`
    /// is read even if the visitor failed, as serde_json does.
    #[inline]
    fn array<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, GaveUp> {
        self.open()?;
        let value = visitor.visit_seq(Elements::new(self));
        self.depth_left += 1;
        let closed = self.close(b']');
        let value = value?;
        closed.map(|()| value)
    }

    /// An object, at its `{`: the visitor reads the entries, then the `}`
    /// is read even if the visitor failed, as serde_json does.
    #[inline]
    fn object<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, GaveUp> {
        self.open()?;
        let value = visitor.visit_map(Entries::new(self));
        self.depth_left += 1;
        let closed = self.close(b'}');
        let value = value?;
        closed.map(|()| value)
    }

    /// The end of an array or object.
    #[inline]
    fn close(&mut self, bracket: u8) -> Result<(), GaveUp> {
        self.expect(bracket)
    }

    /// Skips one value, checking its syntax as serde_json's
    /// `ignore_value` does (within this reader's limits).
    fn skip(&mut self) -> Result<(), GaveUp> {
        match self.whitespace() {
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.integer().map(drop),
            Some(b'"') => {
                self.at += 1;
                self.string().map(drop)
            }
            Some(b'[') => {
                self.open()?;
                if self.whitespace() != Some(b']') {
                    loop {
                        self.skip()?;
                        match self.whitespace() {
                            Some(b',') => self.at += 1,
                            Some(b']') => break,
                            _ => return self.give_up(),
                        }
                    }
                }
                self.depth_left += 1;
                self.close(b']')
            }
            Some(b'{') => {
                self.open()?;
                if self.whitespace() != Some(b'}') {
                    loop {
                        self.expect(b'"')?;
                        self.string()?;
                        self.expect(b':')?;
                        self.skip()?;
                        match self.whitespace() {
                            Some(b',') => self.at += 1,
                            Some(b'}') => break,
                            _ => return self.give_up(),
                        }
                    }
                }
                self.depth_left += 1;
                self.close(b'}')
            }
            _ => self.give_up(),
        }
    }

    /// serde_json's `RawValue`, handed over as serde_json hands it (its
    /// `deserialize_raw_value`): whitespace skipped, the value skipped and
    /// checked as [`PayloadReader::skip`] checks it, then its text as the
    /// one entry of a map under serde_json's private key. A skipped value
    /// (the `data` of an event the version gate refuses) so costs no second
    /// reading by serde_json.
    fn raw_value<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, GaveUp> {
        self.whitespace();
        let start = self.at;
        self.skip()?;
        let Some(raw) = self.text.get(start..self.at) else {
            return self.give_up();
        };
        visitor.visit_map(RawEntry::new(raw))
    }

    /// A newtype's name that serde_json reads specially.
    #[inline]
    fn is_private(name: &str) -> bool {
        name.starts_with("$serde_json::private::")
    }
}

impl<'de> DataSource<'de> for PayloadReader<'de> {
    type Error = GaveUp;

    #[inline]
    fn value<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GaveUp> {
        seed.deserialize(self)
    }

    /// The whole text, as serde_json's source gives it: the reader reads
    /// exactly that text, or the caller reads it again with serde_json.
    fn text(&self) -> Option<&'de str> {
        Some(self.text)
    }

    /// As serde_json's source does: the caller knows the text is one JSON
    /// value, and [`PayloadReader::end`] then has nothing to check.
    fn take_text(&mut self) -> bool {
        self.taken = true;
        true
    }
}

impl<'de> de::Deserializer<'de> for &mut PayloadReader<'de> {
    type Error = GaveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            Some(b'-' | b'0'..=b'9') => match self.integer()? {
                Integer::Unsigned(n) => visitor.visit_u64(n),
                Integer::Negative(n) => visitor.visit_i64(n),
            },
            Some(b'"') => {
                self.at += 1;
                visitor.visit_borrowed_str(self.string()?)
            }
            Some(b'[') => self.array(visitor),
            Some(b'{') => self.object(visitor),
            _ => self.give_up(),
        }
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            _ => self.give_up(),
        }
    }

    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    /// An integer only (serde_json reads it as `visit_u64`/`visit_i64`
    /// for a float too); a fraction or exponent gives up.
    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    /// As `deserialize_f32`.
    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.number(visitor)
    }

    /// serde_json reads 128-bit integers its own way: give up.
    fn deserialize_i128<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.give_up()
    }

    /// As `deserialize_i128`.
    fn deserialize_u128<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.give_up()
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.string_value(visitor)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.string_value(visitor)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.string_value(visitor)
    }

    /// serde_json reads bytes from strings without checking them as UTF-8,
    /// and from arrays: give up.
    fn deserialize_bytes<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.give_up()
    }

    /// As `deserialize_bytes`.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, _: V) -> Result<V::Value, GaveUp> {
        self.give_up()
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        if self.whitespace() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        if self.whitespace() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_unit()
        } else {
            self.give_up()
        }
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        self.deserialize_unit(visitor)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        if name == RAW_VALUE {
            return self.raw_value(visitor);
        }
        if PayloadReader::is_private(name) {
            return self.give_up();
        }
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'[') => self.array(visitor),
            _ => self.give_up(),
        }
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, GaveUp> {
        self.deserialize_seq(visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        self.deserialize_seq(visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'{') => self.object(visitor),
            _ => self.give_up(),
        }
    }

    /// From an object or, as serde_json allows, an array.
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'{') => self.object(visitor),
            Some(b'[') => self.array(visitor),
            _ => self.give_up(),
        }
    }

    /// From a string (a unit variant) or a one-entry object.
    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GaveUp> {
        match self.whitespace() {
            Some(b'"') => visitor.visit_enum(StringVariant::new(self)),
            Some(b'{') => {
                self.open()?;
                let value = visitor.visit_enum(ObjectVariant::new(self));
                self.depth_left += 1;
                // serde_json reads the `}` only after a success.
                let value = value?;
                self.close(b'}')?;
                Ok(value)
            }
            _ => self.give_up(),
        }
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.string_value(visitor)
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GaveUp> {
        self.skip()?;
        visitor.visit_unit()
    }
}

impl<'de> PayloadReader<'de> {
    /// A map key, as serde_json's map key reader reads it; the next byte
    /// is its opening quote. Gives up on serde_json's private tokens.
    #[inline]
    fn key(&mut self) -> Result<&'de str, GaveUp> {
        self.at += 1;
        let key = self.string()?;
        if key.starts_with('$') && PayloadReader::is_private(key) {
            return self.give_up();
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::reads_as_serde_json;

    /// The reader is on in this build: serde_json's `arbitrary_precision`
    /// is not (if a dependency turned it on, the reader would be off, and
    /// decoding slower, without a word).
    #[test]
    fn the_reader_is_on_where_numbers_are_plain() {
        assert!(reads_as_serde_json());
    }
}
