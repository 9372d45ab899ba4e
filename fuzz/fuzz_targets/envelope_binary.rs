//! CloudEvents binary mode as NATS delivers it: `ce-` headers and a body,
//! turned back into structured JSON by ecst's converter and decoded.
//!
//! The converter (`to_structured` in ecst-runtime/src/nats/binary.rs) is
//! `pub(crate)` and reachable only through a live NATS connection
//! (`Follower`, `Publisher`), so this target compiles that file as it is
//! (`#[path]` below) instead of copying it.
//!
//! Input: the header block and the body of an `HMSG`, split at the first
//! empty line (`\n\n`); without one, the whole input is the body of a
//! message without headers. Header lines are read as async-nats reads them
//! from the wire (`name: value`, the name through `HeaderName::from_str`,
//! the value trimmed, repeated names appended); lines it would refuse are
//! skipped.
//!
//! Invariants: nothing panics; the converter answers `None` exactly when no
//! header is `ce-specversion` (any case); what it returns goes through the
//! decoders with the same invariants as `envelope_structured`.
#![no_main]

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use ecst::Envelope;
use ecst_fuzz::{check_accepted, router, Customer, Order};
use libfuzzer_sys::fuzz_target;

/// What `binary.rs` needs from its crate.
mod upcast {
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}

#[allow(dead_code)]
#[path = "../../ecst-runtime/src/nats/binary.rs"]
mod binary;

/// The headers of a header block, and whether one is `ce-specversion`.
fn headers(block: &str) -> (HeaderMap, bool) {
    let mut headers = HeaderMap::new();
    let mut binary_mode = false;
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_str(name),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        binary_mode |= name.to_string().eq_ignore_ascii_case("ce-specversion");
        headers.append(name, value);
    }
    (headers, binary_mode)
}

fuzz_target!(|data: &[u8]| {
    let (headers, binary_mode, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => {
            let Ok(block) = std::str::from_utf8(&data[..at]) else {
                return;
            };
            let (headers, binary_mode) = headers(block);
            (Some(headers), binary_mode, &data[at + 2..])
        }
        None => (None, false, data),
    };
    let structured = binary::to_structured(headers.as_ref(), body);
    assert_eq!(
        structured.is_some(),
        binary_mode,
        "binary mode is exactly a ce-specversion header"
    );
    let Some(json) = structured else {
        return;
    };
    if let Ok(envelope) = Envelope::<Customer>::from_json(&json) {
        check_accepted(&envelope);
    }
    if let Ok(envelope) = Envelope::<Order>::from_json(&json) {
        check_accepted(&envelope);
    }
    let _ = router().apply_json(&json);
});
