//! Helpers the crm process tests share (`faults.rs`, `soak.rs`): reading
//! the programs' output lines and their state dumps.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread;

use ecst_example_crm::{Customer, StateLine};

/// The number after `name=` in a `key=value` line.
pub fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number `{name}=` in line {line:?}"))
}

pub fn line_starting<'a>(output: &'a str, start: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{output}"))
}

pub fn read_state_lines(path: &Path) -> BTreeMap<String, (u64, Option<Customer>)> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut states = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let parsed: StateLine = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}: {line}", path.display(), number + 1));
        let previous = states.insert(parsed.key.clone(), (parsed.sequence, parsed.state));
        assert!(
            previous.is_none(),
            "{}: key {} twice",
            path.display(),
            parsed.key
        );
    }
    states
}

pub fn forward(pipe: impl Read + Send + 'static, tag: &'static str, tx: Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(format!("{tag}{line}")).is_err() {
                break;
            }
        }
    });
}
