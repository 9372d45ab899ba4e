//! An ecst event read without its Rust type: the CloudEvents attributes
//! ecst writes and the state as JSON.
//!
//! The command line does not know the user's types, so it cannot decode
//! and upcast `data` the way a consumer does; it reads the envelope as
//! JSON (structured mode, or binary mode turned back into it with the
//! runtime's `envelope::binary::to_structured`) and shows what is there. A
//! message it reads may still be one a consumer refuses (a consumer also
//! checks the schema version, the payload against its type, `dataschema`
//! and `time`), but one it cannot read is one every consumer parks.

use async_nats::HeaderMap;
use ecst_runtime::envelope::binary::to_structured;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::nats::StoredMessage;

/// A stream message read as an ecst event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// `type`: the entity.
    #[serde(rename = "type")]
    pub entity: String,
    /// `subject`: the entity key.
    pub key: String,
    /// The ecst `sequence` attribute (per key).
    pub sequence: u64,
    /// `schemaversion`.
    pub schemaversion: u64,
    /// `operation`: `upsert` or `delete`.
    pub operation: String,
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `time`, as written.
    pub time: Option<String>,
    /// `correlationid`, `causationid`, `traceparent`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<String>,
    /// See `correlationid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causationid: Option<String>,
    /// See `correlationid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// `structured` or `binary`: how the message carried the envelope.
    pub mode: &'static str,
    /// The state (`data`); `None` for a delete.
    pub data: Option<Value>,
}

impl Event {
    /// `true` for a delete.
    pub fn is_delete(&self) -> bool {
        self.operation == "delete"
    }
}

/// Reads `message` as an ecst event, or says why it is not one.
pub fn read(message: &StoredMessage) -> Result<Event, String> {
    read_parts(message.headers.as_ref(), &message.payload)
}

fn read_parts(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Event, String> {
    let binary = headers.and_then(|headers| {
        let pairs = headers.iter().flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (AsRef::<str>::as_ref(name), value.as_str()))
        });
        to_structured(pairs, payload)
    });
    let (json, mode) = match &binary {
        Some(json) => (json.as_slice(), "binary"),
        None => (payload, "structured"),
    };
    let attributes: Map<String, Value> =
        serde_json::from_slice(json).map_err(|error| format!("not a JSON CloudEvent ({error})"))?;
    let text = |name: &str| -> Result<String, String> {
        match attributes.get(name) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(Value::Null) | None => Err(format!("no `{name}` attribute")),
            Some(other) => Err(format!("`{name}` is {other}, not a string")),
        }
    };
    let optional = |name: &str| match attributes.get(name) {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    let number = |name: &str| -> Result<u64, String> {
        match attributes.get(name) {
            Some(Value::Number(number)) => number
                .as_u64()
                .ok_or_else(|| format!("`{name}` is {number}, not a whole number")),
            Some(Value::String(text)) => text
                .parse::<u64>()
                .map_err(|_| format!("`{name}` is `{text}`, not a whole number")),
            Some(Value::Null) | None => Err(format!("no `{name}` attribute")),
            Some(other) => Err(format!("`{name}` is {other}, not a number")),
        }
    };
    let operation = text("operation")?;
    if operation != "upsert" && operation != "delete" {
        return Err(format!(
            "`operation` is `{operation}`, not `upsert` or `delete`"
        ));
    }
    let data = match attributes.get("data") {
        None | Some(Value::Null) => None,
        Some(data) => Some(data.clone()),
    };
    if operation == "upsert" && data.is_none() {
        return Err("an upsert without `data`".to_owned());
    }
    Ok(Event {
        entity: text("type")?,
        key: text("subject")?,
        sequence: number("sequence")?,
        schemaversion: number("schemaversion")?,
        id: text("id")?,
        source: text("source")?,
        time: optional("time"),
        correlationid: optional("correlationid"),
        causationid: optional("causationid"),
        traceparent: optional("traceparent"),
        mode,
        data: if operation == "delete" { None } else { data },
        operation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_structured_and_binary_envelopes() {
        let structured = br#"{"specversion":"1.0","id":"e1","source":"s","type":"customer",
            "subject":"c-1","sequence":"00000000000000000007","schemaversion":3,
            "operation":"upsert","data":{"name":"Ada"}}"#;
        let event = read_parts(None, structured).unwrap();
        assert_eq!(event.sequence, 7);
        assert_eq!(event.schemaversion, 3);
        assert_eq!(event.mode, "structured");
        assert_eq!(event.data, Some(serde_json::json!({"name": "Ada"})));

        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "e2"),
            ("ce-source", "s"),
            ("ce-type", "customer"),
            ("ce-subject", "c-1"),
            ("ce-sequence", "8"),
            ("ce-schemaversion", "3"),
            ("ce-operation", "delete"),
        ] {
            headers.insert(name, value);
        }
        let event = read_parts(Some(&headers), b"").unwrap();
        assert_eq!((event.sequence, event.mode), (8, "binary"));
        assert!(event.is_delete() && event.data.is_none());
    }

    #[test]
    fn says_why_a_message_is_not_an_event() {
        assert!(read_parts(None, b"garbage")
            .unwrap_err()
            .starts_with("not a JSON CloudEvent"));
        let no_sequence = br#"{"id":"e","source":"s","type":"t","subject":"k",
            "schemaversion":1,"operation":"delete"}"#;
        assert_eq!(
            read_parts(None, no_sequence).unwrap_err(),
            "no `sequence` attribute"
        );
    }
}
