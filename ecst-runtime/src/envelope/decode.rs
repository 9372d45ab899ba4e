//! Reading CloudEvents JSON: the attributes into a borrowed [`Header`], the
//! `data` straight into the struct of its declared version.
//!
//! The reader is hand-written rather than derived for one reason: speed
//! without giving up typing. A derived envelope would either fix `data` to one
//! type (and cannot know the version before reading it) or buffer it as a
//! `serde_json::Value`. Here the attributes are visited in order, and when
//! `data` arrives after `type`, `schemaversion` and `operation` (as ecst
//! writes it), it is deserialized in place into the right version struct and
//! upcast; otherwise it is kept as a borrowed `RawValue` and decoded once the
//! whole object has been read. Attribute strings are borrowed from the input
//! unless they contain escapes.

use core::convert::Infallible;
use core::fmt;
use core::marker::PhantomData;
use std::borrow::Cow;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::scan;
use super::{dataschema, Change, Operation, CONTENT_TYPE, MAX_KEY_BYTES, SPEC_VERSION};
use crate::compatibility::Mode;
use crate::error::{DecodeError, DecodeErrorKind, EventContext};
use crate::event::{EntityKey, StateEvent};
use crate::sequence::Sequence;
use crate::upcast::{DecodeVersionError, UpcastError};

/// The validated attributes of an envelope, borrowed from the input.
#[derive(Debug)]
pub(crate) struct Header<'de> {
    pub id: Cow<'de, str>,
    pub source: Cow<'de, str>,
    pub entity: Cow<'de, str>,
    pub key: Cow<'de, str>,
    pub sequence: Sequence,
    pub schema_version: u32,
    pub operation: Operation,
    pub dataschema: Option<Cow<'de, str>>,
    pub time: Option<Cow<'de, str>>,
    pub correlation_id: Option<Cow<'de, str>>,
    pub causation_id: Option<Cow<'de, str>>,
    pub traceparent: Option<Cow<'de, str>>,
}

impl Header<'_> {
    pub fn context(&self) -> EventContext {
        self.view().context()
    }

    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.context(), kind)
    }

    /// What the typed checks read of it.
    fn view(&self) -> View<'_> {
        View {
            id: &self.id,
            entity: &self.entity,
            key: &self.key,
            dataschema: self.dataschema.as_deref(),
            attrs: Attrs {
                sequence: self.sequence,
                schema_version: self.schema_version,
                operation: self.operation,
            },
        }
    }
}

/// The attributes of a validated header that are not text: small, and
/// copied rather than moved with the header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attrs {
    pub sequence: Sequence,
    pub schema_version: u32,
    pub operation: Operation,
}

/// What the typed checks read of a validated header, by reference: built
/// from a [`Header`] or straight from the [`Fields`] it would be made of,
/// so that the reader need not move the header's strings into one.
#[derive(Clone, Copy)]
struct View<'a> {
    id: &'a str,
    entity: &'a str,
    key: &'a str,
    dataschema: Option<&'a str>,
    attrs: Attrs,
}

impl View<'_> {
    /// [`Header::context`].
    fn context(&self) -> EventContext {
        EventContext {
            id: Some(shown(self.id, usize::MAX)),
            entity: Some(shown(self.entity, usize::MAX)),
            key: Some(shown(self.key, MAX_KEY_BYTES)),
            schema_version: Some(self.attrs.schema_version),
            sequence: Some(self.attrs.sequence.get()),
        }
    }

    #[cold]
    #[inline(never)]
    fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.context(), kind)
    }
}

/// What was found under `data`.
#[derive(Debug)]
pub(crate) enum DataSlot<'de, T> {
    Absent,
    Null,
    Raw(&'de RawValue),
    Value(T),
}

impl<'de> DataSlot<'de, Infallible> {
    /// Retypes a slot that was read without a target type.
    pub fn retype<T>(self) -> DataSlot<'de, T> {
        match self {
            DataSlot::Absent => DataSlot::Absent,
            DataSlot::Null => DataSlot::Null,
            DataSlot::Raw(raw) => DataSlot::Raw(raw),
            DataSlot::Value(never) => match never {},
        }
    }
}

/// An envelope decoded for one entity type.
pub(crate) struct Decoded<'de, T: StateEvent> {
    pub header: Header<'de>,
    pub key: T::Key,
    pub change: Change<T>,
    /// The text of `data` when the state was decoded from it as written,
    /// at `T`'s newest version (no upcast, no tolerant read of a newer
    /// version): a JSON of the state that decodes to it again, which a
    /// store can keep instead of serializing the state. `None` otherwise.
    pub data_text: Option<&'de str>,
}

/// What a replica holds for one key, as far as the version gate needs it to
/// refuse an upsert without reading its data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    /// The sequence held (of the state or of the tombstone).
    pub sequence: Sequence,
    /// The read version of the live state; `None` for a tombstone.
    pub read_version: Option<u32>,
}

impl Held {
    /// Whether an upsert at `sequence`, read at `read_version`, loses to
    /// what is held whatever its data: a lower sequence, or the same one
    /// against a tombstone (a delete wins a tie) or against a state read at
    /// a higher version (see `Replica`'s tie-break). An upsert at the same
    /// sequence and read version needs its data: the tie-break compares
    /// serializations.
    pub fn refuses_upsert(self, sequence: Sequence, read_version: u32) -> bool {
        sequence < self.sequence
            || (sequence == self.sequence
                && self.read_version.is_none_or(|held| held > read_version))
    }

    /// Whether an upsert at `sequence`, read at `read_version`, ties with
    /// the live state held: the same sequence and read version, where the
    /// tie-break compares the two states.
    pub fn ties_with(self, sequence: Sequence, read_version: u32) -> bool {
        sequence == self.sequence && self.read_version == Some(read_version)
    }
}

/// What the version gate asks of a replica (see [`decode_gated`]).
pub(crate) trait Gate<K> {
    /// What the replica holds for `key`.
    fn held(&mut self, key: &K) -> Option<Held>;

    /// Whether `data`, the text of an upsert's data written at the newest
    /// version, is byte for byte the JSON serialization of the live state
    /// held for `key`: then the upsert is the state held, whatever the
    /// tie-break would find (it compares those serializations), and need
    /// not be decoded.
    fn holds_text(&mut self, key: &K, data: &str) -> bool;
}

/// The replica's side of the version gate.
pub(crate) type Lookup<'g, K> = &'g mut dyn Gate<K>;

/// An envelope decoded for one entity type, through the version gate.
pub(crate) enum Gated<'de, T: StateEvent> {
    /// Decoded, data and all.
    Decoded(Decoded<'de, T>),
    /// A valid upsert that the version gate refuses whatever its data is
    /// (see [`Held::refuses_upsert`]), or that ties with the state held and
    /// whose data is that state's serialization ([`Gate::holds_text`]):
    /// its `data` was checked to be JSON but not decoded.
    Refused {
        /// The validated attributes.
        header: Header<'de>,
        /// The key, parsed.
        key: T::Key,
        /// The state held, as it is: a [`Duplicate`](crate::Outcome::Duplicate)
        /// rather than [`Stale`](crate::Outcome::Stale).
        same: bool,
    },
}

impl<'de, T: StateEvent> Gated<'de, T> {
    /// The validated attributes.
    pub fn header(&self) -> &Header<'de> {
        match self {
            Gated::Decoded(decoded) => &decoded.header,
            Gated::Refused { header, .. } => header,
        }
    }

    /// The key, parsed.
    pub fn key(&self) -> &T::Key {
        match self {
            Gated::Decoded(decoded) => &decoded.key,
            Gated::Refused { key, .. } => key,
        }
    }
}

/// An envelope read in place ([`InPlace::gated`]): the attributes as read
/// and what was found under `data` stay where the reader put them, in the
/// caller's frame, rather than being moved into a [`Header`] and a
/// [`Decoded`] and re-wrapped on their way out (each move of a state or a
/// header is a copy of a few hundred bytes).
pub(crate) struct InPlace<'de, T: StateEvent> {
    fields: Fields<'de>,
    read: Reading<'de, T>,
}

/// What the plain reader ([`decode_typed`]) found: the key and the
/// attributes that are not text. The change stays in the [`InPlace`].
pub(crate) struct Read<K> {
    /// The key, parsed.
    pub key: K,
    /// The validated attributes that are not text.
    pub attrs: Attrs,
}

impl<K> Read<K> {
    /// As [`InPlace::gated`] returns what it decoded.
    fn unrefused(self) -> Checked<K> {
        Checked {
            key: self.key,
            attrs: self.attrs,
            refused: None,
        }
    }
}

/// What [`InPlace::gated`] found: the key, the attributes that are not
/// text, and whether the gate refused the upsert. The change itself stays
/// in the [`InPlace`] ([`InPlace::take_change`]).
pub(crate) struct Checked<K> {
    /// The key, parsed.
    pub key: K,
    /// The validated attributes that are not text.
    pub attrs: Attrs,
    /// `None`: decoded, data and all; `Some(same)`: [`Gated::Refused`].
    pub refused: Option<bool>,
}

impl<'de, T: StateEvent> InPlace<'de, T> {
    pub fn new() -> Self {
        InPlace {
            fields: Fields::default(),
            read: Reading::new(),
        }
    }

    /// [`decode_gated`], leaving what it read in `self`: the same checks,
    /// the same errors.
    #[inline]
    pub fn gated(
        &mut self,
        bytes: &'de [u8],
        lookup: Lookup<'_, T::Key>,
    ) -> Result<Checked<T::Key>, DecodeError> {
        let mut sink = TypedSink {
            read: &mut self.read,
            gate: Some(lookup),
        };
        let result = parse(bytes, &mut self.fields, &mut sink);
        let lookup = sink.gate.take();
        let outcome = match result {
            Err(e) => Err(sink.failure(&self.fields, e)),
            Ok(()) => self.fields.check().and_then(|attrs| {
                let view = self.fields.view(attrs);
                let read = &mut self.read;
                let checked = read.schema_checked;
                if read.same {
                    let (key, _, _) = check_typed::<T>(&view, read.probed.take(), checked)?;
                    return Ok(Checked {
                        key,
                        attrs,
                        refused: Some(true),
                    });
                }
                finish_in_place(&view, read, lookup, checked)
            }),
        };
        match outcome {
            // The gate made `data` be read raw rather than in place, which
            // can change which of two faults is found first: the error is
            // the one the plain reader gives (errors are rare; read again).
            Err(_) if self.read.gated_raw => self.plain(bytes).map(Read::unrefused),
            outcome => outcome,
        }
    }

    /// [`decode_typed`], leaving what it read in `self`.
    fn plain(&mut self, bytes: &'de [u8]) -> Result<Read<T::Key>, DecodeError> {
        self.fields = Fields::default();
        self.read.reset();
        let mut sink = TypedSink {
            read: &mut self.read,
            gate: None,
        };
        if let Err(e) = parse(bytes, &mut self.fields, &mut sink) {
            return Err(sink.failure(&self.fields, e));
        }
        let attrs = self.fields.check()?;
        let view = self.fields.view(attrs);
        let checked = self.read.schema_checked;
        let (key, version, _) = check_typed::<T>(&view, self.read.probed.take(), checked)?;
        change_in_place(&view, &key, version, &mut self.read)?;
        Ok(Read { key, attrs })
    }

    /// The change read, moved out (a delete once taken).
    #[inline]
    pub fn take_change(&mut self) -> Change<T> {
        self.read.take_change()
    }

    /// What [`InPlace::gated`] found, as [`decode_gated`] returns it.
    fn into_gated(mut self, checked: Checked<T::Key>) -> Gated<'de, T> {
        let change = self.take_change();
        let header = self.fields.into_checked_header(checked.attrs);
        gated_of(header, checked, change, self.read.text)
    }
}

/// The [`Gated`] of a header and what the typed checks found for it.
fn gated_of<'de, T: StateEvent>(
    header: Header<'de>,
    checked: Checked<T::Key>,
    change: Change<T>,
    data_text: Option<&'de str>,
) -> Gated<'de, T> {
    match checked.refused {
        Some(same) => Gated::Refused {
            header,
            key: checked.key,
            same,
        },
        None => Gated::Decoded(Decoded {
            header,
            key: checked.key,
            change,
            data_text,
        }),
    }
}

/// Reads the attributes and keeps `data` raw (for routing by entity type).
pub(crate) fn decode_header(
    bytes: &[u8],
) -> Result<(Header<'_>, DataSlot<'_, Infallible>), DecodeError> {
    let mut sink = RawSink {
        slot: DataSlot::Absent,
    };
    let mut fields = Fields::default();
    if let Err(e) = parse(bytes, &mut fields, &mut sink) {
        return Err(DecodeError::new(
            fields.context(),
            DecodeErrorKind::Malformed(e),
        ));
    }
    let header = fields.into_header()?;
    Ok((header, sink.slot))
}

/// Whether the scanner reads `bytes` itself (rather than leaving them to
/// serde_json): for the tests that compare the two readers.
#[cfg(test)]
pub(super) fn scanner_reads(bytes: &[u8]) -> bool {
    let mut sink = RawSink {
        slot: DataSlot::Absent,
    };
    core::str::from_utf8(bytes)
        .is_ok_and(|text| scan::scan(text, &mut Fields::default(), &mut sink).is_some())
}

/// [`decode_header`] through the scanner (`true`) or serde_json alone,
/// shown with `Debug`, `data` as its raw text: for the tests that compare
/// the two readers.
#[cfg(test)]
pub(super) fn header_read_with(bytes: &[u8], scanner: bool) -> String {
    let mut sink = RawSink {
        slot: DataSlot::Absent,
    };
    let mut fields = Fields::default();
    let result = parse_with(bytes, &mut fields, &mut sink, scanner);
    let header = match result {
        Err(e) => Err(DecodeError::new(
            fields.context(),
            DecodeErrorKind::Malformed(e),
        )),
        Ok(()) => fields.into_header(),
    };
    let data = match sink.slot {
        DataSlot::Raw(raw) => format!("Raw({})", raw.get()),
        other => format!("{other:?}"),
    };
    format!("{header:?} {data}")
}

/// Reads an envelope of entity `T`, decoding and upcasting its state.
pub(crate) fn decode_typed<T: StateEvent>(bytes: &[u8]) -> Result<Decoded<'_, T>, DecodeError> {
    let mut read = InPlace::<T>::new();
    let found = read.plain(bytes)?;
    let change = read.take_change();
    let header = read.fields.into_checked_header(found.attrs);
    Ok(Decoded {
        header,
        key: found.key,
        change,
        data_text: read.read.text,
    })
}

/// [`decode_typed`] through the version gate: an upsert that the replica
/// will refuse whatever its data is, judged from the attributes and from
/// what `lookup` says the replica holds for the key, comes back
/// [`Gated::Refused`] with its `data` checked as JSON but not decoded into
/// `T`. Everything else comes back exactly as [`decode_typed`] returns it:
/// the same value, or the same error.
///
/// `data` is decoded in place when it comes after `subject` and `sequence`
/// (as ecst writes it) and the gate lets the event through; otherwise it is
/// kept raw and decoded, if it must be, once the attributes are all read.
/// [`InPlace::gated`] is the same, leaving what it read in place.
pub(crate) fn decode_gated<'de, T: StateEvent>(
    bytes: &'de [u8],
    lookup: Lookup<'_, T::Key>,
) -> Result<Gated<'de, T>, DecodeError> {
    let mut read = InPlace::<T>::new();
    let checked = read.gated(bytes, lookup)?;
    Ok(read.into_gated(checked))
}

/// The version of `T` to read data written in `written` with: itself when
/// known; the newest known one for a newer version that `T`'s declared
/// compatibility promises old readers can read (`FORWARD`/`FULL`: the next
/// version; `*_TRANSITIVE`: any); `None` for a future version it does not.
pub(crate) fn read_as<T: StateEvent>(written: u32) -> Option<u32> {
    if written <= T::VERSION {
        return Some(written);
    }
    let tolerated = match T::COMPATIBILITY {
        Mode::Forward | Mode::Full => written == T::VERSION.saturating_add(1),
        Mode::ForwardTransitive | Mode::FullTransitive => true,
        Mode::Backward | Mode::BackwardTransitive | Mode::None => false,
    };
    tolerated.then_some(T::VERSION)
}

/// [`decode_gated`] for a header read already (by the router), its `data`
/// in `slot`: with a `lookup`, an upsert whose `data` is still raw and that
/// the gate refuses whatever it says (see [`Held::refuses_upsert`]) is
/// [`Gated::Refused`], its data not decoded. Every check on the attributes
/// runs first, in the same order. `probed` is the key as the reader
/// already parsed it from this header's `subject`, with what `lookup` said
/// for it.
pub(crate) fn finish_gated<'de, T: StateEvent>(
    header: Header<'de>,
    slot: DataSlot<'de, T>,
    probed: Option<(T::Key, Option<Held>)>,
    lookup: Option<Lookup<'_, T::Key>>,
) -> Result<Gated<'de, T>, DecodeError> {
    let mut read = Reading::new();
    read.slot = slot;
    read.probed = probed;
    let checked = finish_in_place(&header.view(), &mut read, lookup, false)?;
    let change = read.take_change();
    Ok(gated_of(header, checked, change, read.text))
}

/// Checks a validated header against `T` and, through the gate when there
/// is a `lookup`, turns its `data` into a state in place (see
/// [`change_in_place`]), or refuses it; `schema_checked` says the reader
/// already found the `dataschema` to agree.
#[inline]
fn finish_in_place<'de, T: StateEvent>(
    view: &View<'_>,
    read: &mut Reading<'de, T>,
    lookup: Option<Lookup<'_, T::Key>>,
    schema_checked: bool,
) -> Result<Checked<T::Key>, DecodeError> {
    let attrs = view.attrs;
    let (key, version, held) = check_typed::<T>(view, read.probed.take(), schema_checked)?;
    if let (Some(lookup), Operation::Upsert, DataSlot::Raw(raw)) =
        (lookup, attrs.operation, &read.slot)
    {
        let held = held.unwrap_or_else(|| lookup.held(&key));
        let read_version = attrs.schema_version.min(T::VERSION);
        if held.is_some_and(|held| held.refuses_upsert(attrs.sequence, read_version)) {
            return Ok(Checked {
                key,
                attrs,
                refused: Some(false),
            });
        }
        // Only data written at the newest version: older data is upcast,
        // and what an upcast makes of it is not its text.
        if attrs.schema_version == T::VERSION
            && held.is_some_and(|held| held.ties_with(attrs.sequence, read_version))
            && lookup.holds_text(&key, raw.get())
        {
            return Ok(Checked {
                key,
                attrs,
                refused: Some(true),
            });
        }
    }
    change_in_place(view, &key, version, read)?;
    Ok(Checked {
        key,
        attrs,
        refused: None,
    })
}

/// Checks a header against `T`: the entity, the version (returning the
/// version to read `data` as), the `dataschema`, and the key (parsed, or
/// taken from `probed`, with what the gate said for it). With
/// `schema_checked`, the reader already found the `dataschema` to agree
/// (it cannot change after: a second one is a duplicate attribute).
#[allow(clippy::type_complexity)]
#[inline]
fn check_typed<T: StateEvent>(
    header: &View<'_>,
    probed: Option<(T::Key, Option<Held>)>,
    schema_checked: bool,
) -> Result<(T::Key, u32, Option<Option<Held>>), DecodeError> {
    let schema_version = header.attrs.schema_version;
    if header.entity != T::ENTITY {
        return Err(header.error(DecodeErrorKind::WrongEntity {
            expected: T::ENTITY,
        }));
    }
    let Some(version) = read_as::<T>(schema_version) else {
        return Err(header.error(DecodeErrorKind::FutureVersion {
            newest_known: T::VERSION,
        }));
    };
    // After the version gate: a consumer that does not know the declared
    // version parks the event (FutureVersion) and judges it on retry.
    if let Some(found) = header.dataschema.filter(|_| !schema_checked) {
        if !dataschema_agrees(found, T::ENTITY, schema_version) {
            return Err(header.error(DecodeErrorKind::DataSchemaMismatch {
                found: shown(found, 200),
                expected: dataschema(T::ENTITY, schema_version),
            }));
        }
    }
    let (key, held) = match probed {
        Some((key, held)) => (key, Some(held)),
        None => match <T::Key as EntityKey>::parse_key(header.key) {
            Ok(key) => (key, None),
            Err(e) => return Err(header.error(DecodeErrorKind::InvalidKey(e))),
        },
    };
    // One key, one spelling: `007` and `+7` parse to the integer key 7, and
    // would give it several subjects (and several parking keys). Only the
    // key's own `Display` form is accepted.
    if !displays_as(&key, header.key) {
        return Err(header.error(DecodeErrorKind::InvalidKey(format!(
            "not the key's canonical form: write `{key}`"
        ))));
    }
    Ok((key, version, held))
}

/// Turns the `data` of a checked header, where the reader left it in
/// `read`, into the state of a [`Change`], read as `version`: a state still
/// raw is decoded into the slot; `read.text` is left as the data's text
/// when the state was decoded from it as written (see
/// [`Decoded::data_text`]), `None` otherwise.
#[inline]
fn change_in_place<'de, T: StateEvent>(
    header: &View<'_>,
    key: &T::Key,
    version: u32,
    read: &mut Reading<'de, T>,
) -> Result<(), DecodeError> {
    match (header.attrs.operation, &read.slot) {
        (Operation::Upsert, DataSlot::Value(_)) => {}
        (Operation::Upsert, DataSlot::Raw(raw)) => {
            let raw = raw.get();
            read.text = Some(raw);
            let decoded = if scan::possibly_too_deep(raw) {
                one_level_down::<T>(raw, version)
            } else {
                let mut de = serde_json::Deserializer::from_str(raw);
                T::deserialize_version(version, &mut de).map_err(|e| match e {
                    DecodeVersionError::Mismatch { source, .. } => {
                        DecodeErrorKind::PayloadMismatch(source)
                    }
                    DecodeVersionError::Upcast(e) => DecodeErrorKind::Upcast(e),
                    DecodeVersionError::UnknownVersion { .. } => DecodeErrorKind::InvalidVersion,
                })
            };
            match decoded {
                Ok(state) => read.slot = DataSlot::Value(state),
                Err(kind) => return Err(header.error(kind)),
            }
        }
        (Operation::Upsert, DataSlot::Absent | DataSlot::Null) => {
            return Err(header.error(DecodeErrorKind::MissingData))
        }
        (Operation::Delete, DataSlot::Absent | DataSlot::Null) => {
            read.slot = DataSlot::Absent;
            read.text = None;
        }
        (Operation::Delete, DataSlot::Raw(_) | DataSlot::Value(_)) => {
            return Err(header.error(DecodeErrorKind::UnexpectedData))
        }
    }
    if let DataSlot::Value(state) = &read.slot {
        if state.key() != key {
            return Err(header.error(DecodeErrorKind::KeyMismatch {
                payload_key: state.key().to_string(),
            }));
        }
    }
    // As written only: data upcast from an older version, or read
    // tolerantly from a newer one, is not a JSON of the state.
    if header.attrs.schema_version != T::VERSION {
        read.text = None;
    }
    Ok(())
}

/// `data`'s text (read raw) decoded as the serde path decodes it in place,
/// one level down inside the envelope, so that serde_json's depth limit
/// counts alike: read on its own, it could nest one level deeper, and a
/// `Router` kept a state of 127 levels that a `Replica` refused (red team,
/// issue 12). Only for a text that may nest that deep
/// ([`scan::possibly_too_deep`]); the errors are those of the serde path.
#[cold]
#[inline(never)]
fn one_level_down<T: StateEvent>(raw: &str, version: u32) -> Result<T, DecodeErrorKind> {
    /// A one-element array, its element read by `seed`.
    struct OneElement<S>(S);
    impl<'de, S: DeserializeSeed<'de, Value = ()>> Visitor<'de> for OneElement<S> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("data")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            match seq.next_element_seed(self.0)? {
                Some(()) => Ok(()),
                None => Err(de::Error::invalid_length(0, &"data")),
            }
        }
    }
    let wrapped = format!("[{raw}]");
    let mut de = serde_json::Deserializer::from_str(&wrapped);
    let (mut failure, mut slot) = (None, DataSlot::Absent);
    let seed = VersionSeed {
        version,
        failure: &mut failure,
        slot: &mut slot,
    };
    let read = de::Deserializer::deserialize_seq(&mut de, OneElement(seed));
    match (read, slot) {
        (Ok(()), DataSlot::Value(state)) => Ok(state),
        (Ok(()), _) => Err(DecodeErrorKind::MissingData),
        (Err(e), _) => Err(match failure {
            Some(failure) => DecodeErrorKind::Upcast(failure),
            None if e.is_syntax() || e.is_eof() => DecodeErrorKind::Malformed(e),
            None => DecodeErrorKind::PayloadMismatch(e),
        }),
    }
}

#[inline]
fn parse<'de, S: DataSink<'de>>(
    bytes: &'de [u8],
    fields: &mut Fields<'de>,
    sink: &mut S,
) -> Result<(), serde_json::Error> {
    parse_with(bytes, fields, sink, true)
}

/// [`parse`], through the scanner first when `scanner` (`false` only in
/// the tests that compare the two readers).
#[inline]
fn parse_with<'de, S: DataSink<'de>>(
    bytes: &'de [u8],
    fields: &mut Fields<'de>,
    sink: &mut S,
    scanner: bool,
) -> Result<(), serde_json::Error> {
    // simdutf8: the same check as `core::str::from_utf8`, with vector
    // instructions where the CPU has them (a fifth of the instructions on
    // the benches' envelopes); where the input is not UTF-8, the reader
    // below finds where.
    match simdutf8::basic::from_utf8(bytes) {
        // Checked whole, in one pass: the reader need not check each string
        // again (serde_json's slice reader validates every string it reads
        // on its own, which costs several times more than one pass).
        Ok(text) => {
            if scanner && scan::scan(text, fields, sink).is_some() {
                return Ok(());
            }
            // Not the shape the scanner reads: read it all again.
            *fields = Fields::default();
            sink.reset();
            read(&mut serde_json::Deserializer::from_str(text), fields, sink)
        }
        // Not UTF-8: read the bytes as they are, so that whatever comes
        // first (a syntax error, a bad string, a payload mismatch) is what
        // is reported, as if they had been read in one go.
        Err(_) => read(
            &mut serde_json::Deserializer::from_slice(bytes),
            fields,
            sink,
        )
        .and_then(|()| utf8(bytes)),
    }
}

fn read<'de, R: serde_json::de::Read<'de>, S: DataSink<'de>>(
    de: &mut serde_json::Deserializer<R>,
    fields: &mut Fields<'de>,
    sink: &mut S,
) -> Result<(), serde_json::Error> {
    de.deserialize_map(EnvelopeVisitor { fields, sink })?;
    de.end()
}

/// JSON text is UTF-8 (RFC 8259, section 8.1). serde_json checks the strings
/// it reads, but skips over ignored values (extensions, unknown payload
/// fields) unchecked, while a `data` kept raw is checked whole: without this,
/// the same bytes would be accepted or rejected depending on the attribute
/// order and on whether a replica or a router reads them.
fn utf8(bytes: &[u8]) -> Result<(), serde_json::Error> {
    match core::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(de::Error::custom(format_args!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to()
        ))),
    }
}

/// The attributes as read, before validation.
#[derive(Default)]
pub(super) struct Fields<'de> {
    pub(super) specversion: Option<Cow<'de, str>>,
    pub(super) id: Option<Cow<'de, str>>,
    pub(super) source: Option<Cow<'de, str>>,
    pub(super) entity: Option<Cow<'de, str>>,
    pub(super) key: Option<Cow<'de, str>>,
    pub(super) time: Option<Cow<'de, str>>,
    pub(super) datacontenttype: Option<Cow<'de, str>>,
    pub(super) dataschema: Option<Cow<'de, str>>,
    pub(super) sequence: Option<Number>,
    pub(super) schemaversion: Option<Number>,
    pub(super) operation: Option<Cow<'de, str>>,
    pub(super) correlationid: Option<Cow<'de, str>>,
    pub(super) causationid: Option<Cow<'de, str>>,
    pub(super) traceparent: Option<Cow<'de, str>>,
    pub(super) data_seen: bool,
    data_base64: bool,
    /// The attributes read so far, one bit per [`Attr`].
    seen: u32,
    duplicate: Option<&'static str>,
}

impl<'de> Fields<'de> {
    /// Records that `attr` was read: a second occurrence is a duplicate
    /// even when one of them is `null` (a reader that keeps the last value
    /// would see another event than one that keeps the first).
    #[inline]
    pub(super) fn mark(&mut self, attr: Attr) {
        if let Some(name) = attr.name() {
            let bit = 1 << attr as u32;
            if self.seen & bit != 0 {
                self.duplicate.get_or_insert(name);
            }
            self.seen |= bit;
        }
    }

    /// What the attributes said, as far as they were read. Control
    /// characters are escaped (`\u{0}`) and a key is cut at
    /// [`MAX_KEY_BYTES`]: the context is displayed, logged and stored with
    /// parked events, where a NUL or a megabyte-long key would fail again.
    fn context(&self) -> EventContext {
        EventContext {
            id: self.id.as_deref().map(|v| shown(v, usize::MAX)),
            entity: self.entity.as_deref().map(|v| shown(v, usize::MAX)),
            key: self.key.as_deref().map(|v| shown(v, MAX_KEY_BYTES)),
            schema_version: match self.schemaversion {
                Some(Number::Valid(v)) => u32::try_from(v).ok(),
                _ => None,
            },
            sequence: match self.sequence {
                Some(Number::Valid(v)) => Some(v),
                _ => None,
            },
        }
    }

    fn into_header(self) -> Result<Header<'de>, DecodeError> {
        let attrs = self.check()?;
        Ok(self.into_checked_header(attrs))
    }

    /// The header of attributes that [`Fields::check`] found valid
    /// (`attrs`), their strings moved into it.
    fn into_checked_header(self, attrs: Attrs) -> Header<'de> {
        Header {
            id: self.id.unwrap_or_default(),
            source: self.source.unwrap_or_default(),
            entity: self.entity.unwrap_or_default(),
            key: self.key.unwrap_or_default(),
            sequence: attrs.sequence,
            schema_version: attrs.schema_version,
            operation: attrs.operation,
            dataschema: self.dataschema,
            time: self.time,
            correlation_id: self.correlationid,
            causation_id: self.causationid,
            traceparent: self.traceparent,
        }
    }

    /// What the typed checks read of attributes that [`Fields::check`]
    /// found valid (`attrs`), by reference.
    #[inline]
    fn view(&self, attrs: Attrs) -> View<'_> {
        View {
            id: self.id.as_deref().unwrap_or_default(),
            entity: self.entity.as_deref().unwrap_or_default(),
            key: self.key.as_deref().unwrap_or_default(),
            dataschema: self.dataschema.as_deref(),
            attrs,
        }
    }

    /// Validates the attributes, in place: what [`Fields::into_header`]
    /// refuses, in the same order, without moving their strings. `id`,
    /// `source`, `type` and `subject` are present when it passes.
    fn check(&self) -> Result<Attrs, DecodeError> {
        let fail = |fields: &Self, kind| Err(DecodeError::new(fields.context(), kind));
        let invalid = |name, reason: String| DecodeErrorKind::InvalidAttribute { name, reason };
        if let Some(name) = self.duplicate {
            return fail(self, invalid(name, "appears more than once".into()));
        }
        match self.specversion.as_deref() {
            None => return fail(self, DecodeErrorKind::MissingAttribute("specversion")),
            Some(SPEC_VERSION) => {}
            Some(other) => {
                let reason = format!(
                    "`{}` is not supported; ecst reads CloudEvents {SPEC_VERSION}",
                    shown(other, 40)
                );
                return fail(self, invalid("specversion", reason));
            }
        }
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.entity),
            ("subject", &self.key),
        ] {
            match value.as_deref() {
                None => return fail(self, DecodeErrorKind::MissingAttribute(name)),
                Some("") => return fail(self, invalid(name, "must not be empty".into())),
                Some(_) => {}
            }
        }
        if let Some(key) = self.key.as_deref() {
            if let Err(kind) = check_key(key) {
                return fail(self, kind);
            }
        }
        if let Some(ct) = self.datacontenttype.as_deref() {
            if !is_json(ct) {
                return fail(self, DecodeErrorKind::UnsupportedContentType(shown(ct, 80)));
            }
        }
        if self.dataschema.as_deref() == Some("") {
            return fail(self, invalid("dataschema", "must not be empty".into()));
        }
        if let Some(time) = self.time.as_deref() {
            if !is_rfc3339(time) {
                let reason = format!(
                    "`{}` is not an RFC 3339 date-time (e.g. `2024-05-01T12:00:00Z`)",
                    shown(time, 40)
                );
                return fail(self, invalid("time", reason));
            }
        }
        if self.data_base64 {
            let reason = "binary data is not supported; ecst carries JSON under `data`".into();
            return fail(self, invalid("data_base64", reason));
        }
        let sequence = match &self.sequence {
            None => return fail(self, DecodeErrorKind::MissingAttribute("sequence")),
            Some(Number::Invalid(reason)) => {
                return fail(self, invalid("sequence", reason.clone()))
            }
            Some(Number::Valid(n)) => match Sequence::try_new(*n) {
                Ok(sequence) => sequence,
                Err(e) => return fail(self, invalid("sequence", e.to_string())),
            },
        };
        let schema_version = match &self.schemaversion {
            None => return fail(self, DecodeErrorKind::MissingAttribute("schemaversion")),
            Some(Number::Invalid(reason)) => {
                return fail(self, invalid("schemaversion", reason.clone()))
            }
            Some(Number::Valid(0)) => return fail(self, DecodeErrorKind::InvalidVersion),
            Some(Number::Valid(n)) => match u32::try_from(*n) {
                Ok(v) => v,
                Err(_) => {
                    return fail(
                        self,
                        invalid("schemaversion", format!("{n} is out of range")),
                    )
                }
            },
        };
        let operation = match self.operation.as_deref() {
            None => return fail(self, DecodeErrorKind::MissingAttribute("operation")),
            Some("upsert") => Operation::Upsert,
            Some("delete") => Operation::Delete,
            Some(other) => {
                let reason = format!("`{}` is neither `upsert` nor `delete`", shown(other, 40));
                return fail(self, invalid("operation", reason));
            }
        };
        Ok(Attrs {
            sequence,
            schema_version,
            operation,
        })
    }
}

/// `application/json`, with or without parameters, or any `+json` type.
fn is_json(content_type: &str) -> bool {
    if content_type == CONTENT_TYPE {
        return true; // what ecst writes
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime
            .get(mime.len().saturating_sub(5)..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// Where the reader takes `data` from: the envelope's map (the serde path)
/// or a deserializer over `data` alone (the scanner's).
pub(super) trait DataSource<'de> {
    type Error: de::Error;
    fn value<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error>;

    /// The text of `data`, when the source reads exactly that text.
    fn text(&self) -> Option<&'de str> {
        None
    }

    /// Takes `data` as its text, unread: for a text known to be one JSON
    /// value (the serialization of a state). `false` when the source does
    /// not know its text.
    fn take_text(&mut self) -> bool {
        false
    }
}

/// `data` as the envelope map's next value.
struct FromMap<'m, A>(&'m mut A);

impl<'de, A: MapAccess<'de>> DataSource<'de> for FromMap<'_, A> {
    type Error = A::Error;
    #[inline]
    fn value<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}

/// `data` read on its own, from its text (the scanner's source).
pub(super) struct DataText<'de> {
    de: serde_json::Deserializer<serde_json::de::StrRead<'de>>,
    /// The text `de` reads: one JSON value, without whitespace after.
    text: &'de str,
    /// Taken as it is ([`DataSource::take_text`]), without `de`.
    taken: bool,
}

impl<'de> DataText<'de> {
    pub(super) fn new(text: &'de str) -> Self {
        DataText {
            de: serde_json::Deserializer::from_str(text),
            text,
            taken: false,
        }
    }

    /// Checks that the text was read to its end (whitespace aside).
    pub(super) fn end(&mut self) -> Result<(), serde_json::Error> {
        if self.taken {
            return Ok(());
        }
        self.de.end()
    }
}

impl<'de> DataSource<'de> for DataText<'de> {
    type Error = serde_json::Error;
    #[inline]
    fn value<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        seed.deserialize(&mut self.de)
    }

    fn text(&self) -> Option<&'de str> {
        Some(self.text)
    }

    fn take_text(&mut self) -> bool {
        self.taken = true;
        true
    }
}

/// Where `data` goes once the reader reaches it.
pub(super) trait DataSink<'de> {
    fn read<D: DataSource<'de>>(
        &mut self,
        fields: &Fields<'de>,
        source: &mut D,
    ) -> Result<(), D::Error>;

    /// Forgets what a read that was given up left behind.
    fn reset(&mut self);
}

struct RawSink<'de> {
    slot: DataSlot<'de, Infallible>,
}

impl<'de> DataSink<'de> for RawSink<'de> {
    fn read<D: DataSource<'de>>(
        &mut self,
        _: &Fields<'de>,
        source: &mut D,
    ) -> Result<(), D::Error> {
        self.slot = read_raw(source)?;
        Ok(())
    }

    fn reset(&mut self) {
        self.slot = DataSlot::Absent;
    }
}

fn read_raw<'de, T, D: DataSource<'de>>(source: &mut D) -> Result<DataSlot<'de, T>, D::Error> {
    Ok(match source.value(PhantomData::<Option<&'de RawValue>>)? {
        Some(raw) => DataSlot::Raw(raw),
        None => DataSlot::Null,
    })
}

/// What a typed read found under `data`, and what it learned on the way:
/// kept in the caller's frame (see [`InPlace`]) while a [`TypedSink`]
/// borrows it.
struct Reading<'de, T: StateEvent> {
    slot: DataSlot<'de, T>,
    upcast_failure: Option<UpcastError>,
    reading: bool,
    /// The key as parsed from `subject` when `data` was reached, and what
    /// the gate said for it.
    probed: Option<(T::Key, Option<Held>)>,
    /// `data` was read raw because of the gate (where the plain reader
    /// decodes it in place).
    gated_raw: bool,
    /// The `dataschema` was present when `data` was reached, and agreed
    /// with `type` and `schemaversion`.
    schema_checked: bool,
    /// The text the state was decoded from in place, when the source
    /// knows it.
    text: Option<&'de str>,
    /// `data` is the serialization of the state held, at its sequence:
    /// taken as text, not decoded ([`Gate::holds_text`]).
    same: bool,
}

impl<T: StateEvent> Reading<'_, T> {
    /// The change read, moved out of the slot (a delete once taken; only a
    /// checked read's slot is taken: a state, or nothing for a delete).
    #[inline]
    fn take_change(&mut self) -> Change<T> {
        match core::mem::replace(&mut self.slot, DataSlot::Absent) {
            DataSlot::Value(state) => Change::Upsert(state),
            DataSlot::Absent | DataSlot::Null | DataSlot::Raw(_) => Change::Delete,
        }
    }

    fn new() -> Self {
        Reading {
            slot: DataSlot::Absent,
            upcast_failure: None,
            reading: false,
            probed: None,
            gated_raw: false,
            schema_checked: false,
            text: None,
            same: false,
        }
    }

    /// Forgets what a read that was given up left behind.
    fn reset(&mut self) {
        self.slot = DataSlot::Absent;
        self.upcast_failure = None;
        self.reading = false;
        self.probed = None;
        self.gated_raw = false;
        self.schema_checked = false;
        self.text = None;
        self.same = false;
    }
}

/// Where a typed read puts `data`: into `read`, through the gate when
/// there is one.
struct TypedSink<'r, 'de, 'g, T: StateEvent> {
    read: &'r mut Reading<'de, T>,
    /// What the replica holds, per key: set when reading through the gate.
    gate: Option<Lookup<'g, T::Key>>,
}

impl<T: StateEvent> TypedSink<'_, '_, '_, T> {
    /// The error for a parse that failed with `e`.
    fn failure(&mut self, fields: &Fields<'_>, e: serde_json::Error) -> DecodeError {
        let kind = match self.read.upcast_failure.take() {
            Some(failure) => DecodeErrorKind::Upcast(failure),
            None if self.read.reading && !(e.is_syntax() || e.is_eof()) => {
                DecodeErrorKind::PayloadMismatch(e)
            }
            None => DecodeErrorKind::Malformed(e),
        };
        DecodeError::new(fields.context(), kind)
    }

    /// What `data`, about to be decoded in place, needs because of the
    /// gate: to be read raw instead when the key and sequence are not known
    /// yet (they come after `data`) or when the gate refuses the upsert
    /// whatever its data is; to be taken as it is when it ties with the
    /// state held and its text (`data`, if the source knows it) is that
    /// state's serialization. Records the parsed key and the
    /// gate's answer for [`finish_in_place`].
    fn gate_holds_back(&mut self, fields: &Fields<'_>, version: u32, data: Option<&str>) -> Hold {
        let Some(lookup) = self.gate.as_mut() else {
            return Hold::No;
        };
        let (Some(sequence), Some(text)) = (&fields.sequence, fields.key.as_deref()) else {
            return Hold::Raw;
        };
        // An invalid sequence or key fails the header later: read as the
        // plain reader does.
        let Number::Valid(sequence) = *sequence else {
            return Hold::No;
        };
        let (Ok(sequence), Ok(key)) = (
            Sequence::try_new(sequence),
            <T::Key as EntityKey>::parse_key(text),
        ) else {
            return Hold::No;
        };
        let held = lookup.held(&key);
        // `version` is what the data is read as: the read version.
        let refused = held.is_some_and(|held| held.refuses_upsert(sequence, version));
        // A tie with the state held, data written at the newest version:
        // data that is the held state's serialization (a redelivery) is a
        // duplicate without being decoded.
        let written = fields.schemaversion.as_ref();
        let tied = !refused
            && matches!(written, Some(Number::Valid(v)) if *v == u64::from(T::VERSION))
            && held.is_some_and(|held| held.ties_with(sequence, version));
        // A tie whose text is something else is decoded in place, as the
        // plain reader decodes it: read raw on its own, `data` could nest
        // one level deeper (red team: a rival too deep to decode in place
        // would then win the tie in one delivery order and not the other).
        let hold = if tied && data.is_some_and(|data| lookup.holds_text(&key, data)) {
            Hold::Same
        } else if refused {
            Hold::Raw
        } else {
            Hold::No
        };
        self.read.probed = Some((key, held));
        hold
    }
}

/// What the gate makes of `data` before it is decoded in place.
enum Hold {
    /// Decode it in place.
    No,
    /// Read it raw (see [`TypedSink::gate_holds_back`]).
    Raw,
    /// Take it as it is: the serialization of the state held.
    Same,
}

impl<'de, T: StateEvent> DataSink<'de> for TypedSink<'_, 'de, '_, T> {
    fn reset(&mut self) {
        self.read.reset();
    }

    fn read<D: DataSource<'de>>(
        &mut self,
        fields: &Fields<'de>,
        map: &mut D,
    ) -> Result<(), D::Error> {
        let version = match fields.schemaversion {
            Some(Number::Valid(v)) if v >= 1 => {
                u32::try_from(v).ok().and_then(read_as::<T>).unwrap_or(0)
            }
            _ => 0,
        };
        // A `dataschema` that contradicts the header: read raw, so that the
        // contradiction, not the payload, is what is reported.
        let agrees = || match (fields.dataschema.as_deref(), &fields.schemaversion) {
            (Some(uri), Some(Number::Valid(written))) => u32::try_from(*written)
                .is_ok_and(|written| dataschema_agrees(uri, T::ENTITY, written)),
            _ => true,
        };
        let in_place = version != 0
            && fields.entity.as_deref() == Some(T::ENTITY)
            && fields.operation.as_deref() == Some(Operation::Upsert.as_str())
            && agrees();
        if !in_place {
            self.read.slot = read_raw(map)?;
            return Ok(());
        }
        self.read.schema_checked = fields.dataschema.is_some();
        let text = map.text();
        match self.gate_holds_back(fields, version, text) {
            Hold::No => {}
            Hold::Same if map.take_text() => {
                self.read.gated_raw = true;
                self.read.same = true;
                return Ok(());
            }
            Hold::Raw | Hold::Same => {
                self.read.gated_raw = true;
                self.read.slot = read_raw(map)?;
                return Ok(());
            }
        }
        let read = &mut *self.read;
        read.reading = true;
        map.value(VersionSeed::<T> {
            version,
            failure: &mut read.upcast_failure,
            slot: &mut read.slot,
        })?;
        read.reading = false;
        read.text = text;
        Ok(())
    }
}

/// Deserializes `data` as version `version` of `T` and upcasts it, into
/// `slot` (rather than returning it, to be moved into the slot after: a
/// state is a few hundred bytes); `null` is [`DataSlot::Null`], as on the
/// raw path. An upcast failure is parked in `failure` (serde errors cannot
/// carry it).
struct VersionSeed<'a, 'de, T> {
    version: u32,
    failure: &'a mut Option<UpcastError>,
    slot: &'a mut DataSlot<'de, T>,
}

impl<'de, T: StateEvent> DeserializeSeed<'de> for VersionSeed<'_, 'de, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T: StateEvent> Visitor<'de> for VersionSeed<'_, 'de, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        *self.slot = DataSlot::Null;
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        *self.slot = DataSlot::Null;
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match T::deserialize_version(self.version, deserializer) {
            Ok(state) => {
                *self.slot = DataSlot::Value(state);
                Ok(())
            }
            Err(DecodeVersionError::Mismatch { source, .. }) => Err(source),
            Err(DecodeVersionError::Upcast(failure)) => {
                *self.failure = Some(failure);
                Err(de::Error::custom("upcast failed"))
            }
            Err(DecodeVersionError::UnknownVersion { version, .. }) => Err(de::Error::custom(
                format_args!("unknown schema version {version}"),
            )),
        }
    }
}

struct EnvelopeVisitor<'a, 'de, S> {
    fields: &'a mut Fields<'de>,
    sink: &'a mut S,
}

/// Stores an attribute's value; `null` is no value (the CloudEvents JSON
/// format reads it as absent).
#[inline]
pub(super) fn put<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

impl<'de, S: DataSink<'de>> Visitor<'de> for EnvelopeVisitor<'_, 'de, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CloudEvents JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let f = self.fields;
        while let Some(attr) = map.next_key::<Attr>()? {
            f.mark(attr);
            match attr {
                Attr::SpecVersion => put(&mut f.specversion, text(&mut map)?),
                Attr::Id => put(&mut f.id, text(&mut map)?),
                Attr::Source => put(&mut f.source, text(&mut map)?),
                Attr::Type => put(&mut f.entity, text(&mut map)?),
                Attr::Subject => put(&mut f.key, text(&mut map)?),
                Attr::Time => put(&mut f.time, text(&mut map)?),
                Attr::DataContentType => put(&mut f.datacontenttype, text(&mut map)?),
                Attr::DataSchema => put(&mut f.dataschema, text(&mut map)?),
                Attr::Sequence => put(&mut f.sequence, map.next_value()?),
                Attr::SchemaVersion => put(
                    &mut f.schemaversion,
                    map.next_value::<Option<Integer>>()?.map(|n| n.0),
                ),
                Attr::Operation => put(&mut f.operation, text(&mut map)?),
                Attr::CorrelationId => put(&mut f.correlationid, text(&mut map)?),
                Attr::CausationId => put(&mut f.causationid, text(&mut map)?),
                Attr::TraceParent => put(&mut f.traceparent, text(&mut map)?),
                Attr::Data if f.data_seen => {
                    map.next_value::<IgnoredAny>()?;
                }
                Attr::Data => {
                    f.data_seen = true;
                    self.sink.read(f, &mut FromMap(&mut map))?;
                }
                Attr::DataBase64 => {
                    map.next_value::<IgnoredAny>()?;
                    f.data_base64 = true;
                }
                Attr::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

/// The attribute names ecst reads; anything else is an ignored extension.
#[derive(Clone, Copy)]
pub(super) enum Attr {
    SpecVersion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataContentType,
    DataSchema,
    Sequence,
    SchemaVersion,
    Operation,
    CorrelationId,
    CausationId,
    TraceParent,
    Data,
    DataBase64,
    Other,
}

impl Attr {
    /// The attribute named `name`.
    #[inline]
    pub(super) fn of(name: &str) -> Attr {
        match name {
            "specversion" => Attr::SpecVersion,
            "id" => Attr::Id,
            "source" => Attr::Source,
            "type" => Attr::Type,
            "subject" => Attr::Subject,
            "time" => Attr::Time,
            "datacontenttype" => Attr::DataContentType,
            "dataschema" => Attr::DataSchema,
            "sequence" => Attr::Sequence,
            "schemaversion" => Attr::SchemaVersion,
            "operation" => Attr::Operation,
            "correlationid" => Attr::CorrelationId,
            "causationid" => Attr::CausationId,
            "traceparent" => Attr::TraceParent,
            "data" => Attr::Data,
            "data_base64" => Attr::DataBase64,
            _ => Attr::Other,
        }
    }

    /// The wire name, `None` for an extension.
    fn name(self) -> Option<&'static str> {
        Some(match self {
            Attr::SpecVersion => "specversion",
            Attr::Id => "id",
            Attr::Source => "source",
            Attr::Type => "type",
            Attr::Subject => "subject",
            Attr::Time => "time",
            Attr::DataContentType => "datacontenttype",
            Attr::DataSchema => "dataschema",
            Attr::Sequence => "sequence",
            Attr::SchemaVersion => "schemaversion",
            Attr::Operation => "operation",
            Attr::CorrelationId => "correlationid",
            Attr::CausationId => "causationid",
            Attr::TraceParent => "traceparent",
            Attr::Data => "data",
            Attr::DataBase64 => "data_base64",
            Attr::Other => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Attr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttrVisitor;
        impl Visitor<'_> for AttrVisitor {
            type Value = Attr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvents attribute name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Attr, E> {
                Ok(Attr::of(name))
            }
        }
        deserializer.deserialize_identifier(AttrVisitor)
    }
}

/// A string attribute, borrowed from the input when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A non-negative integer attribute (`sequence`, `schemaversion`), given as a
/// JSON integer or a string of decimal digits. Anything else is kept as the
/// reason it is invalid, so the error can name the event.
#[derive(Debug)]
pub(super) enum Number {
    Valid(u64),
    Invalid(String),
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor { canonical: false })
    }
}

/// `schemaversion`: a [`Number`] whose string form must be canonical, the
/// CloudEvents string encoding of an Integer (`"3"`, not `"03"`), as binary
/// mode carries it.
struct Integer(Number);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NumberVisitor { canonical: true })
            .map(Integer)
    }
}

/// Reads a [`Number`]; with `canonical`, a string with leading zeros is
/// invalid.
pub(super) struct NumberVisitor {
    pub(super) canonical: bool,
}

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer or a string of decimal digits")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number::Valid(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(match u64::try_from(v) {
            Ok(v) => Number::Valid(v),
            Err(_) => Number::Invalid(format!("{v} is negative")),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number::Invalid(format!("{v} is not an integer")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Number, E> {
        Ok(Number::Invalid(format!("`{v}` is not a number")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        if self.canonical && v.len() > 1 && v.starts_with('0') {
            return Ok(Number::Invalid(format!(
                "`{}` has leading zeros; write the integer, or its plain decimal string",
                shown(v, 40)
            )));
        }
        Ok(parse_digits(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Number, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Number::Invalid("an array is not a number".into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Number::Invalid("an object is not a number".into()))
    }
}

fn parse_digits(v: &str) -> Number {
    let digits = v.as_bytes();
    if digits.is_empty() {
        return not_digits(v);
    }
    // Every byte a digit first: not digits wins over too large, wherever
    // the bad byte is.
    if !all_digits(digits) {
        return not_digits(v);
    }
    // The sequence is 20 zero-padded digits on every event: skip the
    // zeros; up to 19 significant digits cannot overflow a u64
    // (10^19 - 1 < 2^64), more are added with overflow checks.
    let significant = &digits[leading_zeros(digits)..];
    let add = |n: u64, b: &u8| n * 10 + u64::from(b - b'0');
    if significant.len() <= 19 {
        return Number::Valid(significant.iter().fold(0, add));
    }
    let checked = significant.iter().try_fold(0u64, |n, &b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    });
    if let Some(n) = checked {
        return Number::Valid(n);
    }
    Number::Invalid(format!("`{}` does not fit in 64 bits", shown(v, 40)))
}

/// Eight ASCII `0`s, as one little-endian word.
const ZEROS: u64 = u64::from_le_bytes(*b"00000000");

/// Whether every byte is an ASCII digit: eight at a time (a sequence has
/// twenty).
#[inline]
fn all_digits(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<8>();
    words.iter().all(|&word| {
        // High nibbles all 3, then low nibbles all 9 or less: adding 6
        // carries into the high nibble exactly when a low one is above 9.
        let x = u64::from_le_bytes(word);
        const HIGH: u64 = u64::from_le_bytes([0xf0; 8]);
        x & HIGH == ZEROS && x.wrapping_add(u64::from_le_bytes([6; 8])) & HIGH == ZEROS
    }) && rest.iter().all(u8::is_ascii_digit)
}

/// How many `0`s `digits` (all ASCII digits) starts with: eight at a time.
#[inline]
fn leading_zeros(digits: &[u8]) -> usize {
    let mut at = 0;
    while let Some(&word) = digits.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let other = u64::from_le_bytes(word) ^ ZEROS;
        if other != 0 {
            return at + (other.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + digits
        .get(at..)
        .unwrap_or_default()
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len() - at)
}

#[cold]
fn not_digits(v: &str) -> Number {
    Number::Invalid(format!(
        "`{}` is not a string of decimal digits",
        shown(v, 40)
    ))
}

/// `text` as it may be shown in an error: control characters escaped
/// (`\u{0}`), cut to at most `max` bytes of the input (with `...`). Errors
/// are displayed, logged and stored with parked events: an attribute value
/// must not bring a NUL or a megabyte into them.
pub(crate) fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (at, c) in text.char_indices() {
        if at >= max || at.saturating_add(c.len_utf8()) > max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks that `key` (a `subject`) can be stored and shown: at most
/// [`MAX_KEY_BYTES`] bytes, no control character. Emptiness is checked with
/// the other required attributes.
pub(crate) fn check_key(key: &str) -> Result<(), DecodeErrorKind> {
    if key.len() > MAX_KEY_BYTES {
        return Err(DecodeErrorKind::KeyTooLong { len: key.len() });
    }
    // Printable ASCII, the usual key: no control character.
    if key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    match key.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, character)) => Err(DecodeErrorKind::KeyControlCharacter { character, at }),
        None => Ok(()),
    }
}

/// Whether a `dataschema` agrees with `type` and `schemaversion`: an ecst
/// schema URI (`urn:ecst:schema:`, the scheme and namespace compared
/// case-insensitively, as URNs are) must be exactly
/// `urn:ecst:schema:<entity>:v<version>`; any other URI is not ecst's to
/// check. Compares without allocating: it runs on every upsert.
fn dataschema_agrees(uri: &str, entity: &str, version: u32) -> bool {
    let b = uri.as_bytes();
    let ecst = match b.first_chunk::<16>() {
        // As ecst writes it, compared as two words.
        Some(b"urn:ecst:schema:") => true,
        Some(prefix) => {
            prefix[..9].eq_ignore_ascii_case(b"urn:ecst:") && &prefix[9..] == b"schema:"
        }
        None => false,
    };
    if !ecst {
        return true;
    }
    b[16..]
        .strip_prefix(entity.as_bytes())
        .and_then(|rest| rest.strip_prefix(b":v"))
        .is_some_and(|digits| is_decimal(digits, version))
}

/// Whether `digits` is `n` written in decimal, without leading zeros.
fn is_decimal(digits: &[u8], mut n: u32) -> bool {
    if digits.first() == Some(&b'0') {
        return false; // not even `0`: a version is 1 or more
    }
    let mut rest = digits;
    // From the last digit: `n` has one more for as long as it is not zero.
    loop {
        let Some((&last, before)) = rest.split_last() else {
            return false;
        };
        if u32::from(last.wrapping_sub(b'0')) != n % 10 {
            return false;
        }
        n /= 10;
        rest = before;
        if n == 0 {
            return rest.is_empty();
        }
    }
}

/// Parses an RFC 3339 `date-time` (section 5.6) strictly: `YYYY-MM-DDTHH:MM:SS`,
/// an optional fraction of any length, and `Z` or a `+HH:MM`/`-HH:MM` offset;
/// `T` and `Z` may be lower case (as section 5.6 allows). Returns the seconds
/// since the Unix epoch (negative before 1970) and the nanoseconds.
///
/// Dates are checked against the calendar (no February 30); a leap second
/// (`:60`) is accepted on any day, since checking it needs the leap-second
/// table.
pub(crate) fn parse_rfc3339(text: &str) -> Option<(i64, u32)> {
    rfc3339(text)
}

/// Whether [`parse_rfc3339`] reads `text`: the same code, with the seconds
/// and nanoseconds left uncomputed (it runs on every event with a `time`).
fn is_rfc3339(text: &str) -> bool {
    rfc3339(text).is_some()
}

/// [`parse_rfc3339`], inlined into both callers.
#[inline(always)]
fn rfc3339(text: &str) -> Option<(i64, u32)> {
    let b = text.as_bytes();
    // `YYYY-MM-DDTHH:MM:SS` as three little-endian words (the last two
    // overlap): the separators compared at once (`T` folded to `t`), then
    // the digits checked eight at a time, as in `all_digits`.
    let head: &[u8; 19] = b.first_chunk()?;
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    // Byte masks: `D` a digit, `_` a separator.
    const DDDD_DD_: u64 = 0x00ff_ff00_ffff_ffff; // `YYYY-MM-`
    const DD_DD_DD: u64 = 0xffff_00ff_ff00_ffff; // `DDTHH:MM` and `HH:MM:SS`
    let (date, clock, seconds) = (word(0), word(8) | 0x20 << 16, word(11));
    let separators = date & !DDDD_DD_ == u64::from_le_bytes(*b"\0\0\0\0-\0\0-")
        && clock & !DD_DD_DD == u64::from_le_bytes(*b"\0\0t\0\0:\0\0")
        && seconds & !DD_DD_DD == u64::from_le_bytes(*b"\0\0:\0\0:\0\0");
    let digits = |x: u64, mask: u64| {
        const HIGH: u64 = u64::from_le_bytes([0xf0; 8]);
        x & HIGH & mask == ZEROS & mask
            && x.wrapping_add(u64::from_le_bytes([6; 8])) & HIGH & mask == ZEROS & mask
    };
    if !(separators
        && digits(date, DDDD_DD_)
        && digits(clock, DD_DD_DD)
        && digits(seconds, DD_DD_DD))
    {
        return None;
    }
    let number = |at: usize, width: usize| {
        head[at..at + width]
            .iter()
            .fold(0, |n, &d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (number(0, 4), number(5, 2), number(8, 2));
    let (hour, minute, second) = (number(11, 2), number(14, 2), number(17, 2));
    let at = |i: usize, expected: &[u8]| b.get(i).is_some_and(|c| expected.contains(c));
    let num = |range: core::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = if b.len() == i + 1 && b[i] | 0x20 == b'z' {
        0
    } else if at(i, b"+-") && at(i + 3, b":") && b.len() == i + 6 {
        let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
        if h > 23 || m > 59 {
            return None;
        }
        let minutes = i64::from(h * 60 + m);
        if b[i] == b'+' {
            minutes
        } else {
            -minutes
        }
    } else {
        return None;
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // `days_from_civil`).
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - offset * 60;
    Some((seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_with_and_without_padding() {
        assert!(matches!(
            parse_digits("00000000000000000042"),
            Number::Valid(42)
        ));
        assert!(matches!(parse_digits("7"), Number::Valid(7)));
        assert!(matches!(parse_digits(""), Number::Invalid(_)));
        assert!(matches!(parse_digits("+7"), Number::Invalid(_)));
        assert!(matches!(parse_digits("-7"), Number::Invalid(_)));
        assert!(matches!(
            parse_digits("99999999999999999999"),
            Number::Invalid(_)
        ));
    }

    #[test]
    fn digits_parse_like_str_parse() {
        let max = u64::MAX.to_string();
        for (text, expected) in [
            ("0", Some(0)),
            ("00000000000000000000", Some(0)),
            ("00000000000000000001", Some(1)),
            (max.as_str(), Some(u64::MAX)),
            (
                "0000000000000000000000018446744073709551615",
                Some(u64::MAX),
            ),
            ("18446744073709551616", None),
            ("100000000000000000000", None),
        ] {
            match (parse_digits(text), expected) {
                (Number::Valid(n), Some(e)) => assert_eq!(n, e, "{text}"),
                (Number::Invalid(_), None) => {}
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
        // Not digits wins over too large, wherever the bad byte is.
        let Number::Invalid(reason) = parse_digits("99999999999999999999x") else {
            panic!("accepted");
        };
        assert!(reason.contains("decimal digits"), "{reason}");
    }

    #[test]
    fn rfc3339_is_read_strictly() {
        let at = |text| parse_rfc3339(text);
        assert_eq!(at("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(at("2024-05-01T12:00:00.000Z"), Some((1_714_564_800, 0)));
        assert_eq!(at("2024-05-01T14:00:00+02:00"), Some((1_714_564_800, 0)));
        assert_eq!(
            at("2024-05-01t07:30:00.5-04:30"),
            Some((1_714_564_800, 500_000_000))
        );
        assert_eq!(
            at("2024-05-01T12:00:00.1234567891z"),
            Some((1_714_564_800, 123_456_789))
        );
        assert_eq!(at("1969-12-31T23:59:59Z"), Some((-1, 0)));
        assert_eq!(at("2024-02-29T00:00:00Z").map(|t| t.0), Some(1_709_164_800));
        assert_eq!(at("2016-12-31T23:59:60Z").map(|t| t.0), Some(1_483_228_800));
        assert_eq!(
            at("0000-01-01T00:00:00Z").map(|t| t.0),
            Some(-62_167_219_200)
        );
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00+02",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00+02:60",
            "2024-05-01T12:00:00ZZ",
            "2024-05-01T12:00:00Z ",
            " 2024-05-01T12:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:61Z",
            "+2024-01-01T00:00:00Z",
            "2024-1-01T00:00:00Z",
            "2024-01-01T00:00:00\u{e9}",
            "\u{e9}024-01-01T00:00:00Z",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn shown_escapes_control_characters_and_cuts() {
        assert_eq!(shown("c-1", 40), "c-1");
        assert_eq!(shown("a\u{0}b\n", 40), "a\\u{0}b\\n");
        assert_eq!(shown("abcdef", 3), "abc...");
        assert_eq!(shown("\u{e9}\u{e9}", 3), "\u{e9}...");
        assert_eq!(shown("", 0), "");
    }

    #[test]
    fn keys_are_short_printable_text() {
        assert!(check_key("c-1").is_ok());
        assert!(check_key("\u{e9}t\u{e9} \u{1f600}").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(matches!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(DecodeErrorKind::KeyTooLong { len }) if len == MAX_KEY_BYTES + 1
        ));
        for (key, character, at) in [
            ("a\u{0}", '\u{0}', 1),
            ("\tx", '\t', 0),
            ("\u{e9}\u{7f}", '\u{7f}', 2),
            ("x\u{9f}", '\u{9f}', 1),
        ] {
            match check_key(key) {
                Err(DecodeErrorKind::KeyControlCharacter {
                    character: c,
                    at: a,
                }) => {
                    assert_eq!((c, a), (character, at), "{key:?}")
                }
                other => panic!("{key:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ecst_dataschemas_must_name_the_entity_and_version() {
        assert!(dataschema_agrees("urn:ecst:schema:order:v2", "order", 2));
        assert!(dataschema_agrees("URN:ECST:schema:order:v2", "order", 2));
        assert!(dataschema_agrees(
            "https://registry.example/order/4",
            "order",
            2
        ));
        assert!(dataschema_agrees("urn:other:schema:order:v4", "order", 2));
        for uri in [
            "urn:ecst:schema:order:v4",
            "urn:ecst:schema:customer:v2",
            "urn:ecst:schema:order:v02",
            "urn:ecst:schema:order:v+2",
            "urn:ecst:schema:order:2",
            "urn:ecst:schema:order:v",
            "urn:ecst:schema:order",
            "urn:ecst:schema:",
            "urn:ecst:schema:order:v2 ",
            "urn:ecst:schema:order:v99999999999",
        ] {
            assert!(!dataschema_agrees(uri, "order", 2), "{uri}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("application/avro"));
        assert!(!is_json("json"));
        assert!(!is_json(""));
    }
}

/// Whether `value` displays exactly as `text`, compared as it is written,
/// without allocating (this runs for every event decoded).
pub(crate) fn displays_as<V: fmt::Display + 'static>(value: &V, text: &str) -> bool {
    // A `String` key (the common kind) displays as itself: compared
    // directly, without the formatting machinery (it runs on every event).
    if let Some(string) = (value as &dyn core::any::Any).downcast_ref::<String>() {
        return string == text;
    }
    struct Compare<'t> {
        rest: &'t str,
    }
    impl fmt::Write for Compare<'_> {
        fn write_str(&mut self, chunk: &str) -> fmt::Result {
            match self.rest.strip_prefix(chunk) {
                Some(rest) => {
                    self.rest = rest;
                    Ok(())
                }
                None => Err(fmt::Error),
            }
        }
    }
    let mut compare = Compare { rest: text };
    fmt::write(&mut compare, format_args!("{value}")).is_ok() && compare.rest.is_empty()
}

#[cfg(test)]
mod displays_as_tests {
    use super::displays_as;

    #[test]
    fn compares_the_display_form_exactly() {
        assert!(displays_as(&7u64, "7"));
        assert!(!displays_as(&7u64, "007"));
        assert!(!displays_as(&7u64, "+7"));
        assert!(!displays_as(&7u64, "7 "));
        assert!(!displays_as(&17u64, "1"));
        assert!(displays_as(&"c-1", "c-1"));
        assert!(displays_as(&"", ""));
        assert!(displays_as(&String::from("c-1"), "c-1"));
        assert!(!displays_as(&String::from("c-1"), "c-1 "));
        assert!(!displays_as(&String::from("c-1"), "c-"));
    }
}

/// The word-at-a-time checks against the plain byte-by-byte ones they
/// replaced, on every one- and two-byte change of inputs that pass.
#[cfg(test)]
mod word_at_a_time_tests {
    use super::{dataschema_agrees, is_rfc3339, parse_digits, parse_rfc3339, Number};

    /// The byte-by-byte `parse_rfc3339`.
    fn rfc3339_plain(text: &str) -> Option<(i64, u32)> {
        let b = text.as_bytes();
        let num = |range: core::ops::Range<usize>| -> Option<u32> {
            let digits = b.get(range)?;
            digits.iter().try_fold(0u32, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        let at = |i: usize, expected: &[u8]| b.get(i).is_some_and(|c| expected.contains(c));
        if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if at(i, b".") {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..9 {
                nanos *= 10;
            }
        }
        let offset = if at(i, b"Zz") && b.len() == i + 1 {
            0
        } else if at(i, b"+-") && at(i + 3, b":") && b.len() == i + 6 {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if b[i] == b'+' {
                minutes
            } else {
                -minutes
            }
        } else {
            return None;
        };
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let seconds =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
                - offset * 60;
        Some((seconds, nanos))
    }

    /// The `dataschema_agrees` that compared through `str`.
    fn dataschema_plain(uri: &str, entity: &str, version: u32) -> bool {
        let ecst = uri
            .get(..9)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:ecst:"))
            && uri[9..].starts_with("schema:");
        if !ecst {
            return true;
        }
        uri["urn:ecst:schema:".len()..]
            .strip_prefix(entity)
            .and_then(|rest| rest.strip_prefix(":v"))
            .is_some_and(|digits| {
                !digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && digits.parse::<u32>() == Ok(version)
            })
    }

    /// `text` with one byte changed, removed or added, and cut short, at
    /// every position, for a set of bytes that matter to these checks.
    fn variants(text: &str) -> Vec<Vec<u8>> {
        let swaps: &[u8] = b"0123456789:-+.tTzZvV/ \x00\x7f\xc3\xe9";
        let bytes = text.as_bytes();
        let mut out = vec![bytes.to_vec()];
        for at in 0..=bytes.len() {
            out.push(bytes[..at].to_vec());
            if at < bytes.len() {
                let mut cut = bytes.to_vec();
                cut.remove(at);
                out.push(cut);
            }
            for &b in swaps {
                if at < bytes.len() {
                    let mut swapped = bytes.to_vec();
                    swapped[at] = b;
                    out.push(swapped);
                }
                let mut inserted = bytes.to_vec();
                inserted.insert(at, b);
                out.push(inserted);
            }
        }
        out
    }

    #[test]
    fn rfc3339_reads_what_the_plain_parser_reads() {
        for base in [
            "2024-05-01T12:00:00Z",
            "2024-02-29t23:59:60.123456789+14:30",
            "1999-12-31T00:09:59.5-00:00",
            "2000-02-29T09:00:00z",
            "2023-11-30T19:19:19.0001Z",
        ] {
            for variant in variants(base) {
                // Two changes: every byte of each variant once more.
                for twice in [variant.clone()].into_iter().chain(
                    (0..variant.len())
                        .flat_map(|at| b"09-:Tt".iter().map(move |&b| (at, b)))
                        .map(|(at, b)| {
                            let mut again = variant.clone();
                            again[at] = b;
                            again
                        }),
                ) {
                    let Ok(text) = core::str::from_utf8(&twice) else {
                        continue;
                    };
                    let plain = rfc3339_plain(text);
                    assert_eq!(parse_rfc3339(text), plain, "{text:?}");
                    assert_eq!(is_rfc3339(text), plain.is_some(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn dataschemas_agree_as_the_plain_comparison_says() {
        for (base, entity) in [
            ("urn:ecst:schema:order:v2", "order"),
            ("URN:eCsT:schema:customer:v10", "customer"),
            ("urn:ecst:schema:o:v4294967295", "o"),
            ("urn:ecst:schema::v1", ""),
        ] {
            for variant in variants(base) {
                let Ok(uri) = core::str::from_utf8(&variant) else {
                    continue;
                };
                for version in [0, 1, 2, 4, 10, 12, 100, 4_294_967_295, u32::MAX - 1] {
                    assert_eq!(
                        dataschema_agrees(uri, entity, version),
                        dataschema_plain(uri, entity, version),
                        "{uri:?} {entity} {version}"
                    );
                }
            }
        }
    }

    #[test]
    fn digits_parse_as_the_plain_parser_says() {
        let plain = |v: &str| -> Option<u64> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.trim_start_matches('0')
                .parse::<u64>()
                .ok()
                .or_else(|| v.bytes().all(|b| b == b'0').then_some(0))
        };
        for base in [
            "00000000000000000007",
            "00000000000000000000",
            "18446744073709551615",
            "000000000000000000000018446744073709551615",
            "12345678",
            "1",
        ] {
            for variant in variants(base) {
                let Ok(text) = core::str::from_utf8(&variant) else {
                    continue;
                };
                let read = match parse_digits(text) {
                    Number::Valid(n) => Some(n),
                    Number::Invalid(_) => None,
                };
                assert_eq!(read, plain(text), "{text:?}");
            }
        }
    }
}
