//! `ecst get <prefix> <entity> <key>`: the latest event of a key.

use serde::Serialize;

use crate::cli::GetArgs;
use crate::error::{Failure, Outcome, Verdict};
use crate::event::{self, Event};
use crate::nats;
use crate::output;

/// What `--json` prints.
#[derive(Serialize)]
struct Got<'a> {
    stream: &'a str,
    subject: &'a str,
    stream_sequence: u64,
    published: &'a str,
    event: &'a Event,
}

/// Runs `ecst get`.
pub async fn run(server: &str, args: GetArgs, json: bool) -> Outcome {
    let subjects = nats::subjects(&args.prefix)?;
    let subject = subjects
        .event(&args.entity, &args.key)
        .map_err(|error| Failure::new(crate::error::chain(&error)))?;
    let nats = nats::connect(server).await?;
    let stream = nats.stream_for(&args.prefix, &subject).await?;
    let Some(message) = nats.last_message(&stream, &subject).await? else {
        return Err(Failure::new(format!(
            "stream `{}` holds no event of `{}` key `{}` (subject `{subject}`)",
            stream.cached_info().config.name,
            args.entity,
            args.key
        )));
    };
    let event = event::read(&message).map_err(|why| {
        Failure::new(format!(
            "the last message on `{subject}` (stream sequence {}) is not an ecst event: {why}",
            message.stream_sequence
        ))
    })?;
    let stream_name = stream.cached_info().config.name.clone();
    if json {
        output::json(&Got {
            stream: &stream_name,
            subject: &message.subject,
            stream_sequence: message.stream_sequence,
            published: &message.published,
            event: &event,
        })?;
        return Ok(Verdict::Good);
    }
    say!(
        "{} {}  sequence {}  schema version {}  {}",
        event.entity,
        event.key,
        event.sequence,
        event.schemaversion,
        event.operation
    );
    let rows = [
        (
            "stream",
            format!("{stream_name}, stream sequence {}", message.stream_sequence),
        ),
        ("subject", message.subject.clone()),
        ("stored", message.published.clone()),
        ("id", event.id.clone()),
        ("source", event.source.clone()),
        ("time", event.time.clone().unwrap_or_else(|| "-".to_owned())),
        ("mode", event.mode.to_owned()),
    ];
    for (name, value) in rows {
        say!("  {name:<8} {value}");
    }
    for (name, value) in [
        ("correlationid", &event.correlationid),
        ("causationid", &event.causationid),
        ("traceparent", &event.traceparent),
    ] {
        if let Some(value) = value {
            say!("  {name:<8} {value}");
        }
    }
    match &event.data {
        Some(data) => {
            let pretty = serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string());
            say!("state:\n{pretty}");
        }
        None => say!("state: (deleted)"),
    }
    Ok(Verdict::Good)
}
