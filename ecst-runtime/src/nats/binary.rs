//! CloudEvents binary mode on NATS (the CloudEvents NATS protocol binding):
//! the transport-neutral [`envelope::binary`](crate::envelope::binary) over
//! async-nats's `HeaderMap`.

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;

use crate::envelope::binary::{self, BinaryModeError};

/// Splits a structured-mode JSON envelope into `ce-` headers and a body.
pub(crate) fn to_binary(structured: &[u8]) -> Result<(HeaderMap, Bytes), BinaryModeError> {
    let (pairs, body) = binary::to_binary(structured)?;
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        // `to_binary` refused line breaks, the only thing a value cannot hold.
        let value = HeaderValue::from_str(&value).map_err(|_| BinaryModeError::LineBreak {
            attribute: name.clone(),
        })?;
        headers.insert(name.as_str(), value);
    }
    Ok((headers, Bytes::from(body)))
}

/// The structured-mode JSON of a binary-mode message, or `None` if it is
/// not in binary mode.
pub(crate) fn to_structured(headers: Option<&HeaderMap>, body: &[u8]) -> Option<Vec<u8>> {
    let pairs = headers?.iter().flat_map(|(name, values)| {
        values
            .iter()
            .map(move |value| (AsRef::<str>::as_ref(name), value.as_str()))
    });
    binary::to_structured(pairs, body)
}
