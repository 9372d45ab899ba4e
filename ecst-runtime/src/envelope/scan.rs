//! The fast path of the envelope reader: the attributes scanned by hand,
//! `data` handed to serde_json.
//!
//! serde_json reads an attribute through several layers (a key seed, a
//! value seed, a visitor, its string reader's per-call setup), which costs
//! more than the short strings themselves. Envelopes are nearly always
//! written the way ecst writes them: scalar attributes without escapes, and
//! `data` last. This module reads exactly that shape and nothing else: at
//! the first thing it does not read the way serde_json would (an escape, a
//! control character, a number that is not a plain non-negative integer,
//! an array or object outside `data`, `data` not last, any syntax or
//! payload error), it gives up and the caller reads the whole input again
//! with serde_json. So whatever it accepts, it reads into the very `Fields`
//! and data slot that the serde path gives, and every error (with
//! serde_json's message and position) comes from the serde path.
//!
//! `data` is read here by a deserializer of its own, so serde_json's
//! recursion limit of 128 nested arrays and objects would count from `data`
//! itself, where the serde path, reading it in place inside the envelope,
//! allows one level less. So that the limit cannot depend on how the
//! attributes are spelled, a `data` with 127 or more opening brackets (a
//! cheap bound on its depth) is left to the serde path, unless the payload
//! reader (which gives up long before that depth) read it. The raw path (a
//! `Router`, or `data` before the attributes that pick its version) reads
//! `data` on its own too; where it may nest that deep, it decodes it one
//! level down, as the serde path does in place.

use std::borrow::Cow;

use serde::de::Visitor;

use super::decode::{put, Attr, DataSink, DataText, Fields, Number, NumberVisitor};
use super::payload::{self, PayloadReader};

/// Reads `text` (a whole envelope, already checked as UTF-8) into `fields`
/// and `sink`. `None` means "read it with serde_json instead": `fields` and
/// `sink` may then hold partial results, to be discarded.
pub(super) fn scan<'de, S: DataSink<'de>>(
    text: &'de str,
    fields: &mut Fields<'de>,
    sink: &mut S,
) -> Option<()> {
    let mut at = Cursor {
        text,
        bytes: text.as_bytes(),
        i: 0,
    };
    at.whitespace();
    at.eat(b'{')?;
    at.whitespace();
    if at.peek()? == b'}' {
        at.i += 1;
        return at.only_whitespace_left();
    }
    // The attribute ecst writes next (see `NAMES`): compared first.
    let mut expected = 0;
    loop {
        let rest = at.bytes.get(at.i..)?;
        // `data` is the next most likely: the attributes between are
        // optional.
        let known = predicted(rest, expected).or_else(|| predicted(rest, Attr::Data as usize));
        let attr = match known {
            Some((attr, len)) => {
                at.i += len;
                attr
            }
            None => {
                at.eat(b'"')?;
                let attr = at.key()?;
                at.whitespace();
                at.eat(b':')?;
                attr
            }
        };
        if !matches!(attr, Attr::Other) {
            expected = attr as usize + 1;
        }
        at.whitespace();
        fields.mark(attr);
        match attr {
            Attr::Data => return data(text, at.i, fields, sink),
            Attr::DataBase64 => return None,
            Attr::Sequence => put(&mut fields.sequence, at.number(false)?),
            Attr::SchemaVersion => put(&mut fields.schemaversion, at.number(true)?),
            Attr::Other => at.scalar()?,
            Attr::SpecVersion => put(&mut fields.specversion, at.text()?),
            Attr::Id => put(&mut fields.id, at.text()?),
            Attr::Source => put(&mut fields.source, at.text()?),
            Attr::Type => put(&mut fields.entity, at.text()?),
            Attr::Subject => put(&mut fields.key, at.text()?),
            Attr::Time => put(&mut fields.time, at.text()?),
            Attr::DataContentType => put(&mut fields.datacontenttype, at.text()?),
            Attr::DataSchema => put(&mut fields.dataschema, at.text()?),
            Attr::Operation => put(&mut fields.operation, at.text()?),
            Attr::CorrelationId => put(&mut fields.correlationid, at.text()?),
            Attr::CausationId => put(&mut fields.causationid, at.text()?),
            Attr::TraceParent => put(&mut fields.traceparent, at.text()?),
        }
        at.whitespace();
        match at.next()? {
            b',' => at.whitespace(),
            b'}' => return at.only_whitespace_left(),
            _ => return None,
        }
    }
}

/// The attribute that ecst writes `expected`-th (`encode.rs`: the order of
/// [`Attr`]'s variants), if `rest` starts with its name (quotes and colon
/// included), and the length of that name.
#[inline]
fn predicted(rest: &[u8], expected: usize) -> Option<(Attr, usize)> {
    /// Compared as constants of known size: a few word compares.
    fn name<const N: usize>(rest: &[u8], attr: Attr, name: &[u8; N]) -> Option<(Attr, usize)> {
        (rest.first_chunk::<N>() == Some(name)).then_some((attr, N))
    }
    match expected {
        0 => name(rest, Attr::SpecVersion, b"\"specversion\":"),
        1 => name(rest, Attr::Id, b"\"id\":"),
        2 => name(rest, Attr::Source, b"\"source\":"),
        3 => name(rest, Attr::Type, b"\"type\":"),
        4 => name(rest, Attr::Subject, b"\"subject\":"),
        5 => name(rest, Attr::Time, b"\"time\":"),
        6 => name(rest, Attr::DataContentType, b"\"datacontenttype\":"),
        7 => name(rest, Attr::DataSchema, b"\"dataschema\":"),
        8 => name(rest, Attr::Sequence, b"\"sequence\":"),
        9 => name(rest, Attr::SchemaVersion, b"\"schemaversion\":"),
        10 => name(rest, Attr::Operation, b"\"operation\":"),
        11 => name(rest, Attr::CorrelationId, b"\"correlationid\":"),
        12 => name(rest, Attr::CausationId, b"\"causationid\":"),
        13 => name(rest, Attr::TraceParent, b"\"traceparent\":"),
        14 => name(rest, Attr::Data, b"\"data\":"),
        _ => None,
    }
}

/// How deep `data` may nest when serde_json reads it inside the envelope:
/// its limit of 128 levels, less the envelope's own.
const MAX_DEPTH_IN_PLACE: usize = 127;

/// Reads `data`, starting at byte `start`, as the last attribute: from
/// there to the envelope's closing brace must be one JSON value (and
/// whitespace).
fn data<'de, S: DataSink<'de>>(
    text: &'de str,
    start: usize,
    fields: &mut Fields<'de>,
    sink: &mut S,
) -> Option<()> {
    let trimmed = text.trim_end_matches([' ', '\t', '\n', '\r']);
    let end = trimmed.strip_suffix('}')?.len();
    // Without the whitespace before the closing brace: the sources hand
    // this text on as `data`'s own (`DataSource::text`).
    let value = text
        .get(start..end)?
        .trim_end_matches([' ', '\t', '\n', '\r']);
    fields.data_seen = true;
    // The payload reader first: it reads plain JSON for less than
    // serde_json, and gives up on anything else, which serde_json then
    // reads from the same text (so every value and error is serde_json's).
    if payload::reads_as_serde_json() {
        let mut reader = PayloadReader::new(value);
        if sink.read(fields, &mut reader).is_ok() && reader.end().is_ok() {
            // What the reader read nests less than `MAX_DEPTH_IN_PLACE`
            // (it gives up deeper), so only a text taken unread can be too
            // deep for the serde path.
            return (!reader.taken() || !possibly_too_deep(value)).then_some(());
        }
        sink.reset();
    }
    if possibly_too_deep(value) {
        return None;
    }
    data_by_serde_json(value, fields, sink)
}

// What the payload reader reads, the serde path reads without reaching
// its limit.
const _: () = assert!((payload::MAX_DEPTH as usize) < MAX_DEPTH_IN_PLACE);

/// Whether `data`'s text may nest as deep as the serde path's limit (see
/// the module docs): such a `data` is left to the serde path. Each opening
/// bracket of a JSON value has its closing one, so a shorter text holds
/// fewer (and one that is not JSON fails anyway).
pub(super) fn possibly_too_deep(value: &str) -> bool {
    value.len() >= 2 * MAX_DEPTH_IN_PLACE
        && opening_brackets(value.as_bytes()) >= MAX_DEPTH_IN_PLACE
}

/// `data` read by serde_json, where the payload reader gave up: out of
/// line, so that the common path stays small.
#[cold]
#[inline(never)]
fn data_by_serde_json<'de, S: DataSink<'de>>(
    value: &'de str,
    fields: &mut Fields<'de>,
    sink: &mut S,
) -> Option<()> {
    let mut source = DataText::new(value);
    sink.read(fields, &mut source).ok()?;
    source.end().ok()
}

/// How many bytes of `bytes` are `[` or `{`: counted in blocks of 255
/// bytes into a byte-wide sum, which the compiler turns into vector
/// instructions (a sum per byte into a `usize` costs several times more).
fn opening_brackets(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|block| {
            // `[` is `{` without bit 5; no other byte ORs to `{`.
            let n = block
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')));
            usize::from(n)
        })
        .sum()
}

/// A position in the envelope's text.
struct Cursor<'de> {
    text: &'de str,
    bytes: &'de [u8],
    i: usize,
}

impl<'de> Cursor<'de> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// Skips JSON whitespace (RFC 8259: space, tab, line feed, carriage
    /// return), as serde_json does between tokens.
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn only_whitespace_left(&mut self) -> Option<()> {
        self.whitespace();
        (self.i == self.bytes.len()).then_some(())
    }

    /// The attribute named by the string whose opening quote was read.
    /// The names ecst writes are compared in place, closing quote
    /// included; anything else is read as a string and looked up.
    #[inline(never)]
    fn key(&mut self) -> Option<Attr> {
        let rest = self.bytes.get(self.i..)?;
        let (attr, name): (Attr, &[u8]) = match *rest.first()? {
            b's' if rest.starts_with(b"specversion\"") => (Attr::SpecVersion, b"specversion"),
            b's' if rest.starts_with(b"source\"") => (Attr::Source, b"source"),
            b's' if rest.starts_with(b"subject\"") => (Attr::Subject, b"subject"),
            b's' if rest.starts_with(b"sequence\"") => (Attr::Sequence, b"sequence"),
            b's' if rest.starts_with(b"schemaversion\"") => (Attr::SchemaVersion, b"schemaversion"),
            b'i' if rest.starts_with(b"id\"") => (Attr::Id, b"id"),
            b't' if rest.starts_with(b"type\"") => (Attr::Type, b"type"),
            b't' if rest.starts_with(b"time\"") => (Attr::Time, b"time"),
            b'd' if rest.starts_with(b"datacontenttype\"") => {
                (Attr::DataContentType, b"datacontenttype")
            }
            b'd' if rest.starts_with(b"dataschema\"") => (Attr::DataSchema, b"dataschema"),
            b'd' if rest.starts_with(b"data\"") => (Attr::Data, b"data"),
            b'o' if rest.starts_with(b"operation\"") => (Attr::Operation, b"operation"),
            _ => return self.string().map(Attr::of),
        };
        self.i += name.len() + 1;
        Some(attr)
    }

    /// The rest of a string whose opening quote was read: `None` if it has
    /// an escape or a control character (or no end).
    #[inline(always)]
    fn string(&mut self) -> Option<&'de str> {
        let start = self.i;
        let end = special_byte(self.bytes, start);
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        self.text.get(start..end)
    }

    /// A string attribute or `null` (`Some(None)`).
    fn text(&mut self) -> Option<Option<Cow<'de, str>>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                Some(Some(Cow::Borrowed(self.string()?)))
            }
            b'n' => self.literal("null").map(|()| None),
            _ => None,
        }
    }

    /// `sequence` or `schemaversion` (`canonical`): a string read as the
    /// serde path's visitor reads it, a plain non-negative integer of up to
    /// 19 digits (which cannot overflow a u64, as serde_json reads it), or
    /// `null` (`Some(None)`).
    fn number(&mut self, canonical: bool) -> Option<Option<Number>> {
        let visitor = NumberVisitor { canonical };
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let text = self.string()?;
                visitor.visit_str::<serde_json::Error>(text).ok().map(Some)
            }
            b'n' => self.literal("null").map(|()| None),
            b'0'..=b'9' => {
                let start = self.i;
                while let Some(b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
                let digits = &self.bytes[start..self.i];
                let plain = digits.len() <= 19 && (digits.len() == 1 || digits[0] != b'0');
                if !plain || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let n = digits
                    .iter()
                    .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
                visitor.visit_u64::<serde_json::Error>(n).ok().map(Some)
            }
            _ => None,
        }
    }

    /// An ignored attribute's value: a string, `null`, `true`, `false` or a
    /// plain non-negative integer.
    #[inline(never)]
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'n' => self.literal("null"),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'0'..=b'9' => self.number(false).map(drop),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.i + word.len();
        if self.bytes.get(self.i..end)? != word.as_bytes() {
            return None;
        }
        self.i = end;
        // `nullx` is not `null`: the next byte must end the token.
        match self.peek() {
            Some(b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r') => Some(()),
            _ => None,
        }
    }
}

/// The index of the first `"`, `\` or control character (`0x00..=0x1F`) at
/// or after `from`, or the length: eight bytes at a time (as serde_json's
/// own string reader does), without unsafe code. The scanner's strings and
/// the payload reader's.
#[inline]
pub(super) fn special_byte(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut i = from.min(bytes.len());
    // Words may reach past the string's end (into the rest of the
    // envelope): only the text's last few bytes are read one at a time.
    while let Some(&chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(chunk);
        // The lowest flagged byte is exact (Mycroft's zero-byte test); a
        // byte of 0x80 or more is never flagged.
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = x ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::super::decode::{header_read_with, scanner_reads};
    use super::{opening_brackets, special_byte};

    const ENVELOPE: &str = r#"{"specversion":"1.0","id":"e-1","source":"urn:s","type":"customer","subject":"c-1","time":"2024-05-01T12:00:00Z","datacontenttype":"application/json","dataschema":"urn:ecst:schema:customer:v1","sequence":"00000000000000000007","schemaversion":1,"operation":"upsert","correlationid":"k","x-ext":true,"data":{"id":"c-1","tags":["a",{"b":[1,2.5,null]}],"s":"\u00e9\n"}}"#;

    /// The attributes after `correlationid` that `ENVELOPE` leaves out.
    const FULL_TAIL: &str = r#""causationid":"c","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01""#;

    /// Whatever the input, the scanner and serde_json read the same
    /// attributes, the same `data`, or the same error.
    fn agree(input: &[u8]) {
        let scanned = header_read_with(input, true);
        let serde = header_read_with(input, false);
        assert_eq!(scanned, serde, "{}", String::from_utf8_lossy(input));
    }

    #[test]
    fn scanner_reads_what_serde_json_reads() {
        // What the scanner reads itself, and what it leaves to serde_json.
        for (shape, scanned) in [
            (ENVELOPE.to_owned(), true),
            (
                ENVELOPE.replace("schemaversion\":1", "schemaversion\":01"),
                false,
            ),
            (
                ENVELOPE.replace("\"id\":\"e-1\"", "\"id\":\"e\\u002d1\""),
                false,
            ),
            (ENVELOPE.replace("\"x-ext\":true", "\"x-ext\":[1]"), false),
            (r#"{"data":{},"specversion":"1.0"}"#.to_owned(), false),
            (r#"{"specversion":"1.0","data":null}"#.to_owned(), true),
        ] {
            assert_eq!(scanner_reads(shape.as_bytes()), scanned, "{shape}");
        }
        let shapes = [
            ENVELOPE.to_owned(),
            ENVELOPE.replace(',', " ,\n\t"),
            ENVELOPE.replace(':', " : "),
            ENVELOPE.replace(r#""sequence":"00000000000000000007""#, r#""sequence":7"#),
            ENVELOPE.replace(r#""correlationid":"k""#, r#""correlationid":null"#),
            ENVELOPE.replace(r#""x-ext":true"#, r#""x-ext":[1]"#),
            ENVELOPE.replace(r#""x-ext":true"#, r#""subject":"c-2""#),
            ENVELOPE.replace(r#""x-ext":true,"#, "") + " ",
            r#"{"data":{},"specversion":"1.0"}"#.to_owned(),
            r#"{"specversion":"1.0","data":null}"#.to_owned(),
            r#" { } "#.to_owned(),
            // Every attribute, in ecst's order; then `data` straight after
            // `operation`; then out of order.
            ENVELOPE.replace(r#""x-ext":true"#, FULL_TAIL),
            ENVELOPE.replace(r#""correlationid":"k","x-ext":true,"#, ""),
            ENVELOPE.replace(
                r#""id":"e-1","source":"urn:s""#,
                r#""source":"urn:s","id":"e-1""#,
            ),
        ];
        let swaps: &[u8] = b" \"\\,:{}[]0a-.en\x01\x7f";
        for shape in &shapes {
            let bytes = shape.as_bytes();
            agree(bytes);
            for at in 0..bytes.len() {
                let mut cut = bytes.to_vec();
                cut.remove(at);
                agree(&cut);
                agree(&bytes[..at]);
                for &b in swaps {
                    let mut swapped = bytes.to_vec();
                    swapped[at] = b;
                    agree(&swapped);
                    let mut inserted = bytes.to_vec();
                    inserted.insert(at, b);
                    agree(&inserted);
                }
            }
        }
    }

    #[test]
    fn opening_brackets_are_counted() {
        for len in (0..600).chain([2 * 255 - 1, 4 * 255 + 3]) {
            let text: Vec<u8> = (0..len).map(|i| b"[{a]}\xdb\xfb {"[i % 9]).collect();
            let naive = text.iter().filter(|&&b| b == b'[' || b == b'{').count();
            assert_eq!(opening_brackets(&text), naive, "{len}");
        }
        assert_eq!(opening_brackets(&[b'['; 1000]), 1000);
    }

    #[test]
    fn data_with_127_opening_brackets_is_left_to_serde_json() {
        // Shallow, so both readers accept them. The payload reader reads
        // them whatever their count (it gives up deeper than it may go);
        // where it gives up (a float), from 127 opening brackets on,
        // whatever the depth, the scanner does not read `data` itself.
        for (pairs, scanned, float) in [
            (124, true, true),
            (125, true, true),
            (126, false, true),
            (200, false, true),
            (126, true, false),
            (200, true, false),
        ] {
            let data = vec!["[]"; pairs].join(",");
            let tail = if float { ",1.5" } else { "" };
            let input = format!(r#"{{"specversion":"1.0","data":[{data}{tail}]}}"#);
            let brackets = pairs + 1;
            assert_eq!(
                scanner_reads(input.as_bytes()),
                scanned,
                "{brackets} {float}"
            );
            agree(input.as_bytes());
        }
        // Nested 126 and 127 deep: the serde path takes one level for the
        // envelope, so it reads the first and refuses the second.
        // The shortest `data` with 127 opening brackets (254 bytes) is
        // counted; one of 126 (252 bytes) need not be.
        for (depth, scanned) in [(126, true), (127, false)] {
            let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let input = format!(r#"{{"specversion":"1.0","data":{data}}}"#);
            assert_eq!(scanner_reads(input.as_bytes()), scanned, "{depth}");
            agree(input.as_bytes());
        }
    }

    #[test]
    fn special_bytes_are_found_where_they_are() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len())
                .find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
                .unwrap_or(bytes.len())
        };
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain text without an end".to_vec(),
            "\u{e9}t\u{e9} \u{1f600} \"".as_bytes().to_vec(),
        ];
        for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for at in 0..40 {
                let mut text = vec![b'a'; 40];
                text[at] = special;
                cases.push(text.clone());
                // High bytes before it must not hide it or be flagged.
                text.iter_mut().take(at).for_each(|b| *b = 0xc3);
                cases.push(text);
            }
        }
        for case in &cases {
            for from in 0..=case.len() {
                assert_eq!(
                    special_byte(case, from),
                    naive(case, from),
                    "{case:?} {from}"
                );
            }
        }
    }
}
