//! CloudEvents binary content mode, over any transport's headers: the
//! attributes in `ce-` headers (`datacontenttype` in `content-type`), `data`
//! as the body. ecst's decoders read structured JSON, so a binary message is
//! turned back into it on receipt; a transport adapter only translates its
//! header type to and from name/value pairs (the NATS one is a few lines).

use serde_json::{Map, Value};

/// Why an envelope cannot be written in binary mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryModeError {
    /// The structured envelope is not a JSON object.
    #[error("not a JSON CloudEvent: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A header cannot carry a line break.
    #[error(
        "attribute `{attribute}` contains a line break, which a header cannot carry (publish \
         such events in structured mode)"
    )]
    LineBreak {
        /// The attribute.
        attribute: String,
    },
}

/// Headers as name/value pairs, in order.
pub type Headers = Vec<(String, String)>;

/// Splits a structured-mode JSON envelope into headers (`ce-<attribute>`,
/// and `content-type` for `datacontenttype`) and a body (`data`, empty for
/// a delete). Non-string attributes are written as their JSON text.
pub fn to_binary(structured: &[u8]) -> Result<(Headers, Vec<u8>), BinaryModeError> {
    let mut attributes: Map<String, Value> =
        serde_json::from_slice(structured).map_err(BinaryModeError::NotJson)?;
    let body = match attributes.remove("data") {
        // Re-serializing a value just parsed cannot fail.
        Some(data) => serde_json::to_vec(&data).map_err(BinaryModeError::NotJson)?,
        None => Vec::new(),
    };
    let mut headers = Vec::with_capacity(attributes.len());
    for (name, value) in attributes {
        let text = match value {
            Value::String(text) => text,
            other => other.to_string(),
        };
        if text.contains(['\r', '\n']) {
            return Err(BinaryModeError::LineBreak { attribute: name });
        }
        let header = if name == "datacontenttype" {
            "content-type".to_owned()
        } else {
            format!("ce-{name}")
        };
        headers.push((header, text));
    }
    Ok((headers, body))
}

/// The structured-mode JSON of a binary-mode message, or `None` if the
/// message is not in binary mode (no `ce-specversion` header). Header names
/// are matched ignoring ASCII case; headers other than `ce-*` and
/// `content-type` are ignored. Every value is written as a JSON string
/// (`schemaversion` and `sequence` readers accept digit strings).
pub fn to_structured<'h, I>(headers: I, body: &[u8]) -> Option<Vec<u8>>
where
    I: IntoIterator<Item = (&'h str, &'h str)> + Clone,
{
    let binary = headers
        .clone()
        .into_iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("ce-specversion"));
    if !binary {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 512);
    out.push(b'{');
    let mut first = true;
    for (name, value) in headers {
        let attribute = if name.eq_ignore_ascii_case("content-type") {
            "datacontenttype".to_owned()
        } else if name.len() > 3
            && name.is_char_boundary(3)
            && name[..3].eq_ignore_ascii_case("ce-")
        {
            name[3..].to_ascii_lowercase()
        } else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        push_string(&mut out, &attribute);
        out.push(b':');
        push_string(&mut out, value);
    }
    if !body.is_empty() {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"data\":");
        // The body is spliced in as it is, so it must be exactly one JSON
        // value: `{..},"subject":"x"` would otherwise add attributes the
        // headers do not have. Anything else goes in as a JSON string,
        // which the decoder refuses as a payload that does not match.
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            out.extend_from_slice(body);
        } else {
            push_string(&mut out, &String::from_utf8_lossy(body));
        }
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

    fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn binary_round_trips_to_equivalent_structured_json() {
        let structured = br#"{"specversion":"1.0","id":"c:1:2","source":"urn:s","type":"c","subject":"1","datacontenttype":"application/json","sequence":"00000000000000000002","schemaversion":3,"operation":"upsert","data":{"id":"1","n":"\"quoted\""}}"#;
        let (headers, body) = to_binary(structured).unwrap();
        assert!(headers.contains(&("ce-schemaversion".into(), "3".into())));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        let back = to_structured(pairs(&headers), &body).unwrap();
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
        assert!(to_structured(Vec::<(&str, &str)>::new(), b"{}").is_none());
        assert!(to_structured(vec![("Nats-Msg-Id", "x")], b"{}").is_none());
        // Not a character boundary at byte 3: ignored, not a panic.
        assert!(to_structured(vec![("ce-specversion", "1.0"), ("céx", "y")], b"").is_some());
    }

    #[test]
    fn a_body_cannot_add_attributes() {
        let headers = vec![("ce-specversion", "1.0"), ("ce-subject", "c-1")];
        let json = to_structured(headers, br#"{"id":"c-1"},"subject":"c-2""#).unwrap();
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["subject"], "c-1");
        assert_eq!(value["data"], r#"{"id":"c-1"},"subject":"c-2""#);
    }
}
