//! CloudEvents binary mode as NATS delivers it: `ce-` headers and a body,
//! turned back into structured JSON by `ecst::envelope::binary` and decoded.
//!
//! Input: the header block and the body of an `HMSG`, split at the first
//! empty line (`\n\n`); without one, the whole input is the body of a
//! message without headers. Header lines are `name: value` (value trimmed).
//! They go to the converter twice: as raw pairs (any transport; names may be
//! any text), and as async-nats builds its `HeaderMap` from the wire
//! (`HeaderName::from_str`, `HeaderValue::from_str`, `append`; lines it
//! would refuse skipped), iterated as the NATS adapter
//! (ecst-runtime/src/nats/binary.rs) iterates it.
//!
//! Invariants: nothing panics; the converter answers `None` exactly when no
//! header is `ce-specversion` (any case); what it returns goes through the
//! decoders with the same invariants as `envelope_structured`; and an
//! accepted envelope survives `to_binary` / `to_structured` unchanged.
#![no_main]

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use ecst::envelope::binary::{to_binary, to_structured};
use ecst::{Envelope, StateEvent};
use ecst_fuzz::{check_accepted, router, Customer, Order};
use libfuzzer_sys::fuzz_target;

fn is_specversion(name: &str) -> bool {
    name.eq_ignore_ascii_case("ce-specversion")
}

/// The header lines of a block as raw pairs.
fn pairs(block: &str) -> Vec<(&str, &str)> {
    block
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.trim()))
        .collect()
}

/// The headers async-nats would build from the same lines.
fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// An envelope converted to binary mode and back decodes unchanged.
fn binary_round_trip<T: StateEvent + PartialEq + std::fmt::Debug>(envelope: &Envelope<T>) {
    let json = envelope.to_json().expect("an accepted envelope encodes");
    let Ok((headers, body)) = to_binary(&json) else {
        // A line break in an attribute: refused, publish in structured mode.
        return;
    };
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let back = to_structured(pairs, &body).expect("to_binary writes ce-specversion");
    match Envelope::<T>::from_json(&back) {
        Ok(decoded) => {
            assert_eq!(decoded.to_json().expect("encodes"), json, "binary round trip differs")
        }
        Err(error) => panic!(
            "binary round trip of an accepted envelope does not decode: {error}\n{}",
            String::from_utf8_lossy(&back)
        ),
    }
}

fn decode(json: &[u8]) {
    if let Ok(envelope) = Envelope::<Customer>::from_json(json) {
        check_accepted(&envelope);
        binary_round_trip(&envelope);
    }
    if let Ok(envelope) = Envelope::<Order>::from_json(json) {
        check_accepted(&envelope);
        binary_round_trip(&envelope);
    }
    let _ = router().apply_json(json);
}

fuzz_target!(|data: &[u8]| {
    let Some(at) = data.windows(2).position(|w| w == b"\n\n") else {
        // No headers: a structured-mode message, which the adapter reads as is.
        decode(data);
        return;
    };
    let Ok(block) = std::str::from_utf8(&data[..at]) else {
        return;
    };
    let body = &data[at + 2..];

    let raw = pairs(block);
    let structured = to_structured(raw.iter().copied(), body);
    assert_eq!(
        structured.is_some(),
        raw.iter().any(|(name, _)| is_specversion(name)),
        "binary mode is exactly a ce-specversion header"
    );
    if let Some(json) = structured {
        decode(&json);
    }

    // As the NATS adapter sees it.
    let headers = header_map(&raw);
    let nats = headers.iter().flat_map(|(name, values)| {
        values
            .iter()
            .map(move |value| (AsRef::<str>::as_ref(name), value.as_str()))
    });
    let structured = to_structured(nats.clone(), body);
    assert_eq!(
        structured.is_some(),
        nats.clone().any(|(name, _)| is_specversion(name)),
        "binary mode is exactly a ce-specversion header"
    );
    if let Some(json) = structured {
        decode(&json);
    }
});
