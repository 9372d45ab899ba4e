//! `ecst tail <prefix> [entity] [key]`: events as they arrive, each with
//! what changed since the previous event of its key.
//!
//! To show what changed, the tail must know each key's previous state. A
//! state stream holds one event per key, so the tail first reads the
//! events the stream holds under its filter (with a progress bar) and keeps
//! each key's latest state in memory, then prints what arrives. `--no-diff`
//! skips that read (and prints no changes); `--from-start` and `--last N`
//! print some or all of what was read, then follow.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::TailArgs;
use crate::diff::{self, Change};
use crate::error::{chain, Failure, Outcome, Verdict};
use crate::event::{self, Event};
use crate::nats::{self, From, StoredMessage};
use crate::output;

/// What `--json` prints, one line per message.
#[derive(Serialize)]
struct Line<'a> {
    stream_sequence: u64,
    subject: &'a str,
    published: &'a str,
    /// The event, `null` for a message that is not one.
    event: Option<&'a Event>,
    /// Why the message is not an ecst event.
    error: Option<&'a str>,
    /// The sequence of the previous event of the key the tail saw.
    previous_sequence: Option<u64>,
    /// What changed since that event; `null` when none was seen.
    changes: Option<&'a [Change]>,
}

/// The previous event of a key, as far as the tail knows.
struct Previous {
    sequence: u64,
    /// `None` for a delete.
    state: Option<Value>,
}

/// Runs `ecst tail`.
pub async fn run(server: &str, args: TailArgs, json: bool) -> Outcome {
    let subjects = nats::subjects(&args.prefix)?;
    let named = |e: ecst_runtime::nats::NatsError| Failure::new(chain(&e));
    let filter = match (&args.entity, &args.key) {
        (Some(entity), Some(key)) => subjects.event(entity, key).map_err(named)?,
        (Some(entity), None) => {
            // Checks the entity token; any key would do.
            subjects.event(entity, "k").map_err(named)?;
            format!("{}.{entity}.>", args.prefix)
        }
        (None, _) => format!("{}.>", args.prefix),
    };
    let nats = nats::connect(server).await?;
    let stream = nats.stream_for(&args.prefix, &filter).await?;
    let reads_first = !args.no_diff || args.from_start || args.last.is_some();
    let from = if reads_first { From::All } else { From::New };
    // What the stream held when the tail started: messages up to this
    // stream sequence are read first (printed or not); later ones are new.
    let last_at_start = stream.cached_info().state.last_sequence;
    let mut scan = nats::Scan::start(&stream, &filter, from).await?;
    let stored = scan.pending_at_start;
    let keep = match (args.from_start, args.last) {
        (true, _) => usize::MAX,
        (false, Some(last)) => usize::try_from(last).unwrap_or(usize::MAX),
        (false, None) => 0,
    };
    let printing = match (args.from_start, args.last) {
        (true, _) => "every one, then new events".to_owned(),
        (false, Some(last)) => format!("the last {last}, then new events"),
        (false, None) => "new events".to_owned(),
    };
    let mut tail = Tail {
        previous: HashMap::new(),
        printed: 0,
        count: args.count,
        no_diff: args.no_diff,
        json,
    };

    // What the stream holds: read (remembering each key's state), keeping
    // the last `keep` to print once they are all read.
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut first_new = None;
    let mut read = 0_u64;
    if stored > 0 {
        let bar = output::progress(stored, "reading what the stream holds", json);
        loop {
            // Messages can be replaced (one per subject) while the tail
            // reads: the stored ones may end sooner than counted.
            let Some(scanned) = scan.next(Some(nats::NEXT_WITHIN)).await? else {
                break;
            };
            let message = scanned.message;
            if message.stream_sequence > last_at_start {
                first_new = Some(message);
                break;
            }
            bar.inc(1);
            read += 1;
            let event = event::read(&message);
            let previous = tail.remember(&message, &event);
            if keep > 0 {
                if held.len() == keep {
                    held.pop_front();
                }
                held.push_back(Held {
                    message,
                    event,
                    previous,
                });
            }
            if scanned.pending == 0 {
                break;
            }
        }
        bar.finish_and_clear();
    }
    eprintln!(
        "ecst tail: following `{filter}` in stream `{}` ({read} stored events read, printing {printing}); \
         Ctrl-C to stop",
        stream.cached_info().config.name,
    );
    for Held {
        message,
        event,
        previous,
    } in held
    {
        if tail.done() {
            return Ok(Verdict::Good);
        }
        tail.show(&message, &event, previous.as_ref())?;
    }
    if let Some(message) = first_new {
        tail.next(&message)?;
    }
    loop {
        if tail.done() {
            return Ok(Verdict::Good);
        }
        let Some(scanned) = scan.next(None).await? else {
            continue;
        };
        tail.next(&scanned.message)?;
    }
}

/// A message read before following, waiting to be printed.
struct Held {
    message: StoredMessage,
    event: Result<Event, String>,
    previous: Option<Previous>,
}

/// The tail's memory and settings.
struct Tail {
    /// The previous event of every key seen, by subject.
    previous: HashMap<String, Previous>,
    printed: u64,
    count: Option<u64>,
    no_diff: bool,
    json: bool,
}

impl Tail {
    fn done(&self) -> bool {
        self.count.is_some_and(|count| self.printed >= count)
    }

    /// Records `message` as its key's latest event; returns the one before.
    fn remember(
        &mut self,
        message: &StoredMessage,
        event: &Result<Event, String>,
    ) -> Option<Previous> {
        let Ok(event) = event else {
            return None;
        };
        if self.no_diff {
            return None;
        }
        self.previous.insert(
            message.subject.clone(),
            Previous {
                sequence: event.sequence,
                state: event.data.clone(),
            },
        )
    }

    /// Prints a new message.
    fn next(&mut self, message: &StoredMessage) -> Result<(), Failure> {
        let event = event::read(message);
        let previous = self.remember(message, &event);
        self.show(message, &event, previous.as_ref())
    }

    fn show(
        &mut self,
        message: &StoredMessage,
        event: &Result<Event, String>,
        previous: Option<&Previous>,
    ) -> Result<(), Failure> {
        self.printed += 1;
        show(message, event, previous, self.no_diff, self.json)
    }
}

fn show(
    message: &StoredMessage,
    event: &Result<Event, String>,
    previous: Option<&Previous>,
    no_diff: bool,
    json: bool,
) -> Result<(), Failure> {
    let event = match event {
        Ok(event) => event,
        Err(why) => {
            if json {
                return output::json(&Line {
                    stream_sequence: message.stream_sequence,
                    subject: &message.subject,
                    published: &message.published,
                    event: None,
                    error: Some(why),
                    previous_sequence: None,
                    changes: None,
                });
            }
            say!(
                "#{}  {}  not an ecst event: {why}",
                message.stream_sequence,
                message.subject
            );
            return Ok(());
        }
    };
    let changes = match (previous, no_diff) {
        (Some(previous), false) => Some(changes(previous.state.as_ref(), event.data.as_ref())),
        _ => None,
    };
    if json {
        return output::json(&Line {
            stream_sequence: message.stream_sequence,
            subject: &message.subject,
            published: &message.published,
            event: Some(event),
            error: None,
            previous_sequence: previous.map(|p| p.sequence),
            changes: changes.as_deref(),
        });
    }
    let was = previous.map_or_else(String::new, |p| format!(" (was {})", p.sequence));
    say!(
        "#{}  {} {}  sequence {}{was}  v{}  {}  {}",
        message.stream_sequence,
        event.entity,
        event.key,
        event.sequence,
        event.schemaversion,
        event.operation,
        message.published
    );
    match (&changes, &event.data) {
        (_, None) => say!("    (deleted)"),
        (None, Some(state)) if !no_diff => {
            say!("    (no earlier event of this key seen) {state}");
        }
        (None, Some(_)) => {}
        (Some(changes), Some(_)) if changes.is_empty() => say!("    (state unchanged)"),
        (Some(changes), Some(_)) => {
            for change in changes {
                say!("    {}", diff::line(change));
            }
        }
    }
    Ok(())
}

/// From the previous state (`None`: deleted) to the new one (`None`:
/// deleted); a state after a delete is all added.
fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let empty = Value::Object(Map::new());
    match after {
        Some(after) => diff::changes(before.unwrap_or(&empty), after),
        None => diff::changes(before.unwrap_or(&empty), &empty),
    }
}
