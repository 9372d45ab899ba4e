//! The compatibility checker on arbitrary input.
//!
//! The input is two JSON documents separated by a NUL byte (or one, compared
//! with itself). Every mode and policy is checked, and a history of the two.
//! Invariants: the checker never panics, never overflows the stack and
//! never hangs (errors are fine: they are typed), and a schema it accepts is
//! compatible with itself in every mode and policy.
#![no_main]

use ecst_schema::compat::{check_history, check_with, Mode, Policy};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MODES: [Mode; 7] = [
    Mode::None,
    Mode::Backward,
    Mode::BackwardTransitive,
    Mode::Forward,
    Mode::ForwardTransitive,
    Mode::Full,
    Mode::FullTransitive,
];
const POLICIES: [Policy; 2] = [Policy::Strict, Policy::Lenient];

fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}

/// A schema the checker accepts is compatible with itself.
fn itself(schema: &Value) {
    for policy in POLICIES {
        for mode in MODES {
            if let Ok(report) = check_with(schema, schema, mode, policy) {
                assert!(
                    report.is_compatible(),
                    "{schema} is not compatible with itself ({mode}, {policy}): {report}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (old, new) = match data.iter().position(|&b| b == 0) {
        Some(at) => (parse(&data[..at]), parse(&data[at + 1..])),
        None => (parse(data), None),
    };
    for schema in [&old, &new].into_iter().flatten() {
        itself(schema);
    }
    let (Some(old), Some(new)) = (old, new) else {
        return;
    };
    for policy in POLICIES {
        for mode in MODES {
            let report = check_with(&old, &new, mode, policy);
            if let Ok(report) = &report {
                // The report prints without panicking.
                let _ = report.to_string();
            }
        }
        let history = [old.clone(), new.clone(), old.clone()];
        let _ = check_history(&history, Mode::FullTransitive, policy);
    }
});
