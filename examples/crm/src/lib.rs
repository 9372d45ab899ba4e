//! What the two CRM processes share: the `Customer` entity, the stream's
//! names, a tiny argument parser, a deterministic random generator, and
//! the JSON-lines format in which the owner writes its truth and the
//! consumer dumps its replica.
//!
//! - `crm-owner` (src/bin/crm-owner.rs) owns the customers and publishes a
//!   state event for every edit;
//! - `crm-consumer` (src/bin/crm-consumer.rs) keeps a durable replica of
//!   them in SQLite;
//! - `crm-outbox-owner` (src/bin/crm-outbox-owner.rs) owns them in a
//!   database (SQLite or PostgreSQL) and publishes through ecst's
//!   transactional outbox ([`outbox`]).
//!
//! See README.md in this directory for how to run them.

pub mod outbox;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use ecst::{Entry, Replica, Sequence, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer as the CRM service owns it, in its newest shape (version 3);
/// the same entity as in `examples/quickstart.rs`.
///
/// - v1 had `full_name`, a credit limit in whole dollars and a `fax`;
/// - v2 renamed `full_name` to `name` and added `email`;
/// - v3 dropped `fax` and counts the credit limit in cents.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 3)]
#[state_event(removed(since = 3, field = "fax", ty = Option<String>))]
pub struct Customer {
    /// The customer id, e.g. `c-000042`: the entity key.
    #[state_event(key)]
    pub id: String,
    /// The display name.
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    /// The e-mail address, if known.
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    /// The credit limit, in cents.
    #[state_event(retyped(since = 3, from = u32, with = dollars_to_cents))]
    pub credit_limit_cents: u64,
}

fn dollars_to_cents(dollars: u32) -> Result<u64, std::convert::Infallible> {
    Ok(u64::from(dollars) * 100)
}

/// The CloudEvents `source` of the owner's events.
pub const SOURCE: &str = "urn:example:crm";
/// The default NATS address.
pub const DEFAULT_NATS: &str = "127.0.0.1:4222";
/// The default state stream.
pub const DEFAULT_STREAM: &str = "CRM";
/// The default subject prefix: events go to `crm.customer.<id>`.
pub const DEFAULT_PREFIX: &str = "crm";

/// The key of customer number `n`.
pub fn customer_id(n: u64) -> String {
    format!("c-{n:06}")
}

/// xorshift64*: small, deterministic, good enough to invent customers and
/// pick edits. The same seed gives the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds diverge at once and
        // the state is never zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One line of the owner's truth or of the consumer's dump:
/// `{"key":"c-000001","sequence":3,"state":{...}}`, `state` being `null`
/// for a deleted customer (a tombstone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateLine {
    /// The customer id.
    pub key: String,
    /// The per-key sequence of the last event.
    pub sequence: u64,
    /// The state, `None` once deleted.
    pub state: Option<Customer>,
}

/// Writes `lines` (already sorted by key) to `path` as JSON lines.
pub fn write_state_lines<'a>(
    path: &Path,
    lines: impl IntoIterator<Item = (&'a String, Sequence, Option<&'a Customer>)>,
) -> Result<usize, String> {
    let fail = |e: &dyn fmt::Display| format!("cannot write `{}`: {e}", path.display());
    let file = File::create(path).map_err(|e| fail(&e))?;
    let mut out = BufWriter::new(file);
    let mut count = 0;
    for (key, sequence, state) in lines {
        let line = StateLine {
            key: key.clone(),
            sequence: sequence.get(),
            state: state.cloned(),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| fail(&e))?;
        out.write_all(b"\n").map_err(|e| fail(&e))?;
        count += 1;
    }
    out.flush().map_err(|e| fail(&e))?;
    Ok(count)
}

/// A replica's entries (live states and tombstones), sorted by key.
pub fn sorted_entries(replica: &Replica<Customer>) -> BTreeMap<&String, Entry<'_, Customer>> {
    replica.entries().collect()
}

/// Writes a replica as JSON lines, sorted by key; returns the line count.
pub fn dump_replica(path: &Path, replica: &Replica<Customer>) -> Result<usize, String> {
    let entries = sorted_entries(replica);
    write_state_lines(
        path,
        entries.into_iter().map(|(key, entry)| match entry {
            Entry::Live { sequence, state } => (key, sequence, Some(state)),
            Entry::Tombstone { sequence } => (key, sequence, None),
        }),
    )
}

/// A command-line error: what was wrong, to print above the usage.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Command-line arguments, read by hand: `--flag`, `--flag value` and
/// `--flag=value`.
pub struct Args {
    items: std::vec::IntoIter<String>,
}

/// One argument.
pub enum Arg {
    /// `--name`, with its inline `=value` if there was one.
    Flag(String, Option<String>),
    /// Anything not starting with `--`.
    Positional(String),
}

impl Args {
    /// The process's arguments, without the program name.
    pub fn from_env() -> Result<Self, UsageError> {
        let mut items = Vec::new();
        for arg in std::env::args_os().skip(1) {
            let arg = arg
                .into_string()
                .map_err(|raw| UsageError(format!("argument {raw:?} is not valid UTF-8")))?;
            items.push(arg);
        }
        Ok(Args {
            items: items.into_iter(),
        })
    }

    /// The next argument.
    pub fn next_arg(&mut self) -> Option<Arg> {
        let item = self.items.next()?;
        Some(match item.strip_prefix("--") {
            Some(flag) => match flag.split_once('=') {
                Some((name, value)) => Arg::Flag(name.to_owned(), Some(value.to_owned())),
                None => Arg::Flag(flag.to_owned(), None),
            },
            None => Arg::Positional(item),
        })
    }

    /// The value of `--flag`: inline, or the next argument.
    pub fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, UsageError> {
        match inline {
            Some(value) => Ok(value),
            None => self
                .items
                .next()
                .ok_or_else(|| UsageError(format!("--{flag} needs a value"))),
        }
    }

    /// The value of `--flag`, parsed.
    pub fn parsed<T>(&mut self, flag: &str, inline: Option<String>) -> Result<T, UsageError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let text = self.value(flag, inline)?;
        text.parse()
            .map_err(|e| UsageError(format!("--{flag} {text:?}: {e}")))
    }
}

/// Refuses a value for a flag that takes none (`--flag=value`).
pub fn no_value(flag: &str, inline: Option<String>) -> Result<(), UsageError> {
    match inline {
        None => Ok(()),
        Some(_) => Err(UsageError(format!("--{flag} takes no value"))),
    }
}

/// Connects to NATS, or explains what to check.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| {
            format!(
                "cannot connect to NATS at {url}: {e}\n  is nats-server running with JetStream? \
                 (apt-get install nats-server, then: nats-server -js)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic() {
        let a: Vec<u64> = {
            let mut rng = Rng::new(7);
            (0..4).map(|_| rng.next_u64()).collect()
        };
        let mut rng = Rng::new(7);
        let b: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }
}
