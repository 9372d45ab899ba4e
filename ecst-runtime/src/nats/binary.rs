//! CloudEvents binary mode on NATS: attributes in `ce-` headers, `data` as
//! the body (the CloudEvents NATS protocol binding). ecst's decoders read
//! structured JSON, so a binary message is turned back into it on receipt.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::upcast::BoxError;

/// Splits a structured-mode JSON envelope into `ce-` headers and a body.
///
/// A header cannot carry a line break: an attribute holding one (a
/// correlation id with a newline, say) is an error here, not the panic
/// async-nats would raise on insertion.
pub(crate) fn to_binary(structured: &[u8]) -> Result<(HeaderMap, Bytes), BoxError> {
    let mut attributes: Map<String, Value> = serde_json::from_slice(structured)?;
    let body = match attributes.remove("data") {
        Some(data) => Bytes::from(serde_json::to_vec(&data)?),
        None => Bytes::new(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in attributes {
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        let value = HeaderValue::from_str(&text).map_err(|_| {
            format!(
                "attribute `{name}` contains a line break, which a NATS header cannot carry \
                 (publish such events in structured mode)"
            )
        })?;
        if name == "datacontenttype" {
            headers.insert("content-type", value);
        } else {
            headers.insert(format!("ce-{name}").as_str(), value);
        }
    }
    Ok((headers, body))
}

/// The structured-mode JSON of a binary-mode message, or `None` if the
/// message is not in binary mode (no `ce-specversion` header).
pub(crate) fn to_structured(headers: Option<&HeaderMap>, body: &[u8]) -> Option<Vec<u8>> {
    let headers = headers?;
    let binary = headers
        .iter()
        .any(|(name, _)| AsRef::<str>::as_ref(name).eq_ignore_ascii_case("ce-specversion"));
    if !binary {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 512);
    out.push(b'{');
    let mut first = true;
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let attribute = if name.eq_ignore_ascii_case("content-type") {
            "datacontenttype".to_owned()
        } else if name.len() > 3 && name[..3].eq_ignore_ascii_case("ce-") {
            name[3..].to_ascii_lowercase()
        } else {
            continue;
        };
        for value in values {
            if !first {
                out.push(b',');
            }
            first = false;
            push_string(&mut out, &attribute);
            out.push(b':');
            push_string(&mut out, value.as_str());
        }
    }
    if !body.is_empty() {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"data\":");
        out.extend_from_slice(body);
    }
    out.push(b'}');
    Some(out)
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_round_trips_to_equivalent_structured_json() {
        let structured = br#"{"specversion":"1.0","id":"c:1:2","source":"urn:s","type":"c","subject":"1","datacontenttype":"application/json","sequence":"00000000000000000002","schemaversion":3,"operation":"upsert","data":{"id":"1","n":"\"quoted\""}}"#;
        let (headers, body) = to_binary(structured).unwrap();
        assert_eq!(
            headers.get("ce-schemaversion").map(|v| v.as_str()),
            Some("3")
        );
        assert_eq!(
            headers.get("content-type").map(|v| v.as_str()),
            Some("application/json")
        );
        let back = to_structured(Some(&headers), &body).unwrap();
        let a: Value = serde_json::from_slice(structured).unwrap();
        let mut b: Value = serde_json::from_slice(&back).unwrap();
        // Headers are strings: the version comes back as "3", which readers accept.
        b["schemaversion"] = Value::from(3);
        assert_eq!(a, b);
    }

    #[test]
    fn line_breaks_in_attributes_are_refused_not_panicked_on() {
        let structured = br#"{"specversion":"1.0","id":"c:1:2","source":"urn:s","type":"c","subject":"1","correlationid":"a\r\nce-operation: delete","data":{}}"#;
        let error = to_binary(structured).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("attribute `correlationid` contains a line break"),
            "{error}"
        );
    }

    #[test]
    fn structured_messages_are_left_alone() {
        assert!(to_structured(None, b"{}").is_none());
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", "x");
        assert!(to_structured(Some(&headers), b"{}").is_none());
    }
}
