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

use super::{Change, Operation, CONTENT_TYPE, SPEC_VERSION};
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
    pub time: Option<Cow<'de, str>>,
    pub correlation_id: Option<Cow<'de, str>>,
    pub causation_id: Option<Cow<'de, str>>,
    pub traceparent: Option<Cow<'de, str>>,
}

impl Header<'_> {
    pub fn context(&self) -> EventContext {
        EventContext {
            id: Some(self.id.clone().into_owned()),
            entity: Some(self.entity.clone().into_owned()),
            key: Some(self.key.clone().into_owned()),
            schema_version: Some(self.schema_version),
            sequence: Some(self.sequence.get()),
        }
    }

    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
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
}

/// Reads the attributes and keeps `data` raw (for routing by entity type).
pub(crate) fn decode_header(
    bytes: &[u8],
) -> Result<(Header<'_>, DataSlot<'_, Infallible>), DecodeError> {
    let mut sink = RawSink {
        slot: DataSlot::Absent,
    };
    let (fields, result) = parse(bytes, &mut sink);
    if let Err(e) = result {
        return Err(DecodeError::new(
            fields.context(),
            DecodeErrorKind::Malformed(e),
        ));
    }
    let header = fields.into_header()?;
    Ok((header, sink.slot))
}

/// Reads an envelope of entity `T`, decoding and upcasting its state.
pub(crate) fn decode_typed<T: StateEvent>(bytes: &[u8]) -> Result<Decoded<'_, T>, DecodeError> {
    let mut sink = TypedSink::<T> {
        slot: DataSlot::Absent,
        upcast_failure: None,
        reading: false,
    };
    let (fields, result) = parse(bytes, &mut sink);
    if let Err(e) = result {
        let kind = match sink.upcast_failure.take() {
            Some(failure) => DecodeErrorKind::Upcast(failure),
            None if sink.reading && !(e.is_syntax() || e.is_eof()) => {
                DecodeErrorKind::PayloadMismatch(e)
            }
            None => DecodeErrorKind::Malformed(e),
        };
        return Err(DecodeError::new(fields.context(), kind));
    }
    let header = fields.into_header()?;
    finish_typed(header, sink.slot)
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

/// Checks a header against `T` and turns its `data` into a [`Change`].
pub(crate) fn finish_typed<'de, T: StateEvent>(
    header: Header<'de>,
    slot: DataSlot<'de, T>,
) -> Result<Decoded<'de, T>, DecodeError> {
    if header.entity != T::ENTITY {
        return Err(header.error(DecodeErrorKind::WrongEntity {
            expected: T::ENTITY,
        }));
    }
    let Some(version) = read_as::<T>(header.schema_version) else {
        return Err(header.error(DecodeErrorKind::FutureVersion {
            newest_known: T::VERSION,
        }));
    };
    let key = match <T::Key as EntityKey>::parse_key(&header.key) {
        Ok(key) => key,
        Err(e) => return Err(header.error(DecodeErrorKind::InvalidKey(e))),
    };
    let change = match (header.operation, slot) {
        (Operation::Upsert, DataSlot::Value(state)) => Change::Upsert(state),
        (Operation::Upsert, DataSlot::Raw(raw)) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            match T::deserialize_version(version, &mut de) {
                Ok(state) => Change::Upsert(state),
                Err(e) => {
                    let kind = match e {
                        DecodeVersionError::Payload(e) => DecodeErrorKind::PayloadMismatch(e),
                        DecodeVersionError::Upcast(e) => DecodeErrorKind::Upcast(e),
                        DecodeVersionError::UnknownVersion { .. } => {
                            DecodeErrorKind::InvalidVersion
                        }
                    };
                    return Err(header.error(kind));
                }
            }
        }
        (Operation::Upsert, DataSlot::Absent | DataSlot::Null) => {
            return Err(header.error(DecodeErrorKind::MissingData))
        }
        (Operation::Delete, DataSlot::Absent | DataSlot::Null) => Change::Delete,
        (Operation::Delete, DataSlot::Raw(_) | DataSlot::Value(_)) => {
            return Err(header.error(DecodeErrorKind::UnexpectedData))
        }
    };
    if let Change::Upsert(state) = &change {
        if *state.key() != key {
            return Err(header.error(DecodeErrorKind::KeyMismatch {
                payload_key: state.key().to_string(),
            }));
        }
    }
    Ok(Decoded {
        header,
        key,
        change,
    })
}

fn parse<'de, S: DataSink<'de>>(
    bytes: &'de [u8],
    sink: &mut S,
) -> (Fields<'de>, Result<(), serde_json::Error>) {
    let mut fields = Fields::default();
    let result = match core::str::from_utf8(bytes) {
        // Checked whole, in one pass: the reader need not check each string
        // again (serde_json's slice reader validates every string it reads
        // on its own, which costs several times more than one pass).
        Ok(text) => read(
            &mut serde_json::Deserializer::from_str(text),
            &mut fields,
            sink,
        ),
        // Not UTF-8: read the bytes as they are, so that whatever comes
        // first (a syntax error, a bad string, a payload mismatch) is what
        // is reported, as if they had been read in one go.
        Err(_) => read(
            &mut serde_json::Deserializer::from_slice(bytes),
            &mut fields,
            sink,
        )
        .and_then(|()| utf8(bytes)),
    };
    (fields, result)
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
struct Fields<'de> {
    specversion: Option<Cow<'de, str>>,
    id: Option<Cow<'de, str>>,
    source: Option<Cow<'de, str>>,
    entity: Option<Cow<'de, str>>,
    key: Option<Cow<'de, str>>,
    time: Option<Cow<'de, str>>,
    datacontenttype: Option<Cow<'de, str>>,
    sequence: Option<Number>,
    schemaversion: Option<Number>,
    operation: Option<Cow<'de, str>>,
    correlationid: Option<Cow<'de, str>>,
    causationid: Option<Cow<'de, str>>,
    traceparent: Option<Cow<'de, str>>,
    data_seen: bool,
    data_base64: bool,
    /// The attributes read so far, one bit per [`Attr`].
    seen: u32,
    duplicate: Option<&'static str>,
}

impl<'de> Fields<'de> {
    fn context(&self) -> EventContext {
        let owned = |v: &Option<Cow<'de, str>>| v.as_deref().map(str::to_owned);
        EventContext {
            id: owned(&self.id),
            entity: owned(&self.entity),
            key: owned(&self.key),
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
        let fail = |fields: &Self, kind| Err(DecodeError::new(fields.context(), kind));
        let invalid = |name, reason: String| DecodeErrorKind::InvalidAttribute { name, reason };
        if let Some(name) = self.duplicate {
            return fail(&self, invalid(name, "appears more than once".into()));
        }
        match self.specversion.as_deref() {
            None => return fail(&self, DecodeErrorKind::MissingAttribute("specversion")),
            Some(SPEC_VERSION) => {}
            Some(other) => {
                let reason =
                    format!("`{other}` is not supported; ecst reads CloudEvents {SPEC_VERSION}");
                return fail(&self, invalid("specversion", reason));
            }
        }
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.entity),
            ("subject", &self.key),
        ] {
            match value.as_deref() {
                None => return fail(&self, DecodeErrorKind::MissingAttribute(name)),
                Some("") => return fail(&self, invalid(name, "must not be empty".into())),
                Some(_) => {}
            }
        }
        if let Some(ct) = self.datacontenttype.as_deref() {
            if !is_json(ct) {
                return fail(
                    &self,
                    DecodeErrorKind::UnsupportedContentType(ct.to_owned()),
                );
            }
        }
        if self.data_base64 {
            let reason = "binary data is not supported; ecst carries JSON under `data`".into();
            return fail(&self, invalid("data_base64", reason));
        }
        let sequence = match &self.sequence {
            None => return fail(&self, DecodeErrorKind::MissingAttribute("sequence")),
            Some(Number::Invalid(reason)) => {
                return fail(&self, invalid("sequence", reason.clone()))
            }
            Some(Number::Valid(n)) => Sequence::new(*n),
        };
        let schema_version = match &self.schemaversion {
            None => return fail(&self, DecodeErrorKind::MissingAttribute("schemaversion")),
            Some(Number::Invalid(reason)) => {
                return fail(&self, invalid("schemaversion", reason.clone()))
            }
            Some(Number::Valid(0)) => return fail(&self, DecodeErrorKind::InvalidVersion),
            Some(Number::Valid(n)) => match u32::try_from(*n) {
                Ok(v) => v,
                Err(_) => {
                    return fail(
                        &self,
                        invalid("schemaversion", format!("{n} is out of range")),
                    )
                }
            },
        };
        let operation = match self.operation.as_deref() {
            None => return fail(&self, DecodeErrorKind::MissingAttribute("operation")),
            Some("upsert") => Operation::Upsert,
            Some("delete") => Operation::Delete,
            Some(other) => {
                let reason = format!("`{other}` is neither `upsert` nor `delete`");
                return fail(&self, invalid("operation", reason));
            }
        };
        // Checked above: all four are present.
        let (Some(id), Some(source), Some(entity), Some(key)) =
            (self.id, self.source, self.entity, self.key)
        else {
            return Err(DecodeError::new(
                EventContext::default(),
                DecodeErrorKind::MissingAttribute("id"),
            ));
        };
        Ok(Header {
            id,
            source,
            entity,
            key,
            sequence,
            schema_version,
            operation,
            time: self.time,
            correlation_id: self.correlationid,
            causation_id: self.causationid,
            traceparent: self.traceparent,
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

/// Where `data` goes once the visitor reaches it.
trait DataSink<'de> {
    fn read<A: MapAccess<'de>>(
        &mut self,
        fields: &Fields<'de>,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

struct RawSink<'de> {
    slot: DataSlot<'de, Infallible>,
}

impl<'de> DataSink<'de> for RawSink<'de> {
    fn read<A: MapAccess<'de>>(&mut self, _: &Fields<'de>, map: &mut A) -> Result<(), A::Error> {
        self.slot = read_raw(map)?;
        Ok(())
    }
}

fn read_raw<'de, T, A: MapAccess<'de>>(map: &mut A) -> Result<DataSlot<'de, T>, A::Error> {
    Ok(match map.next_value::<Option<&'de RawValue>>()? {
        Some(raw) => DataSlot::Raw(raw),
        None => DataSlot::Null,
    })
}

struct TypedSink<'de, T> {
    slot: DataSlot<'de, T>,
    upcast_failure: Option<UpcastError>,
    reading: bool,
}

impl<'de, T: StateEvent> DataSink<'de> for TypedSink<'de, T> {
    fn read<A: MapAccess<'de>>(
        &mut self,
        fields: &Fields<'de>,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let version = match fields.schemaversion {
            Some(Number::Valid(v)) if v >= 1 => {
                u32::try_from(v).ok().and_then(read_as::<T>).unwrap_or(0)
            }
            _ => 0,
        };
        let in_place = version != 0
            && fields.entity.as_deref() == Some(T::ENTITY)
            && fields.operation.as_deref() == Some(Operation::Upsert.as_str());
        if !in_place {
            self.slot = read_raw(map)?;
            return Ok(());
        }
        self.reading = true;
        let state = map.next_value_seed(VersionSeed::<T> {
            version,
            failure: &mut self.upcast_failure,
            target: PhantomData,
        })?;
        self.reading = false;
        self.slot = match state {
            Some(state) => DataSlot::Value(state),
            // `"data": null` is no data, as on the raw path.
            None => DataSlot::Null,
        };
        Ok(())
    }
}

/// Deserializes `data` as version `version` of `T` and upcasts it; `null` is
/// `None`. An upcast failure is parked in `failure` (serde errors cannot
/// carry it).
struct VersionSeed<'a, T> {
    version: u32,
    failure: &'a mut Option<UpcastError>,
    target: PhantomData<T>,
}

impl<'de, T: StateEvent> DeserializeSeed<'de> for VersionSeed<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T: StateEvent> Visitor<'de> for VersionSeed<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        match T::deserialize_version(self.version, deserializer) {
            Ok(state) => Ok(Some(state)),
            Err(DecodeVersionError::Payload(e)) => Err(e),
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
fn put<T>(slot: &mut Option<T>, value: Option<T>) {
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
            // A second occurrence is a duplicate even when one of them is
            // `null`: a reader that keeps the last value would see another
            // event than one that keeps the first.
            if let Some(name) = attr.name() {
                let bit = 1 << attr as u32;
                if f.seen & bit != 0 {
                    f.duplicate.get_or_insert(name);
                }
                f.seen |= bit;
            }
            match attr {
                Attr::SpecVersion => put(&mut f.specversion, text(&mut map)?),
                Attr::Id => put(&mut f.id, text(&mut map)?),
                Attr::Source => put(&mut f.source, text(&mut map)?),
                Attr::Type => put(&mut f.entity, text(&mut map)?),
                Attr::Subject => put(&mut f.key, text(&mut map)?),
                Attr::Time => put(&mut f.time, text(&mut map)?),
                Attr::DataContentType => put(&mut f.datacontenttype, text(&mut map)?),
                Attr::Sequence => put(&mut f.sequence, map.next_value()?),
                Attr::SchemaVersion => put(&mut f.schemaversion, map.next_value()?),
                Attr::Operation => put(&mut f.operation, text(&mut map)?),
                Attr::CorrelationId => put(&mut f.correlationid, text(&mut map)?),
                Attr::CausationId => put(&mut f.causationid, text(&mut map)?),
                Attr::TraceParent => put(&mut f.traceparent, text(&mut map)?),
                Attr::Data if f.data_seen => {
                    map.next_value::<IgnoredAny>()?;
                }
                Attr::Data => {
                    f.data_seen = true;
                    self.sink.read(f, &mut map)?;
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
enum Attr {
    SpecVersion,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataContentType,
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
                Ok(match name {
                    "specversion" => Attr::SpecVersion,
                    "id" => Attr::Id,
                    "source" => Attr::Source,
                    "type" => Attr::Type,
                    "subject" => Attr::Subject,
                    "time" => Attr::Time,
                    "datacontenttype" => Attr::DataContentType,
                    "sequence" => Attr::Sequence,
                    "schemaversion" => Attr::SchemaVersion,
                    "operation" => Attr::Operation,
                    "correlationid" => Attr::CorrelationId,
                    "causationid" => Attr::CausationId,
                    "traceparent" => Attr::TraceParent,
                    "data" => Attr::Data,
                    "data_base64" => Attr::DataBase64,
                    _ => Attr::Other,
                })
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
enum Number {
    Valid(u64),
    Invalid(String),
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
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
        deserializer.deserialize_any(NumberVisitor)
    }
}

fn parse_digits(v: &str) -> Number {
    let digits = v.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return not_digits(v);
    }
    // The sequence is 20 zero-padded digits on every event: skip the zeros,
    // and add up at most 20 significant digits in a u128, where they cannot
    // overflow (10^20 < 2^67); only the final narrowing can fail.
    let start = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len());
    let significant = &digits[start..];
    if significant.len() <= 20 {
        let n = significant
            .iter()
            .fold(0u128, |n, &b| n * 10 + u128::from(b - b'0'));
        if let Ok(n) = u64::try_from(n) {
            return Number::Valid(n);
        }
    }
    Number::Invalid(format!("`{v}` does not fit in 64 bits"))
}

#[cold]
fn not_digits(v: &str) -> Number {
    let shown: String = v.chars().take(40).collect();
    Number::Invalid(format!("`{shown}` is not a string of decimal digits"))
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
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("application/avro"));
        assert!(!is_json("json"));
        assert!(!is_json(""));
    }
}
