//! `ecst stream info <prefix>`: the stream's settings checked against what
//! ecst needs, as `StateStream::ensure` checks them, plus what is worth
//! knowing.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
use serde::Serialize;

use crate::error::{Outcome, Verdict};
use crate::nats;
use crate::output;

/// One check of a setting.
#[derive(Serialize)]
struct Check {
    /// The setting, by its JetStream name.
    setting: &'static str,
    /// Its value.
    value: String,
    /// `ok`, `warning` (works, but worth a look) or `problem` (breaks ecst).
    status: &'static str,
    /// Why, for a warning or a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    stream: &'a str,
    subjects: &'a [String],
    messages: u64,
    keys: u64,
    bytes: u64,
    first_sequence: u64,
    last_sequence: u64,
    consumers: usize,
    checks: Vec<Check>,
    /// `fit` or `unfit`.
    verdict: &'static str,
}

/// Runs `ecst stream info`.
pub async fn info(server: &str, prefix: &str, json: bool) -> Outcome {
    let subjects = nats::subjects(prefix)?;
    let wanted = subjects.all();
    let nats = nats::connect(server).await?;
    let mut stream = nats.stream_for(prefix, &wanted).await?;
    let info = stream
        .info()
        .await
        .map_err(|e| {
            crate::error::Failure::new(format!(
                "reading the stream's settings failed: {}",
                crate::error::chain(&e)
            ))
        })?
        .clone();
    let checks = checks(&info.config, &wanted);
    let fit = checks.iter().all(|check| check.status != "problem");
    let verdict = if fit { "fit" } else { "unfit" };
    let state = &info.state;
    if json {
        output::json(&Report {
            stream: &info.config.name,
            subjects: &info.config.subjects,
            messages: state.messages,
            keys: state.subjects_count,
            bytes: state.bytes,
            first_sequence: state.first_sequence,
            last_sequence: state.last_sequence,
            consumers: state.consumer_count,
            checks,
            verdict,
        })?;
    } else {
        say!(
            "stream {} (subjects {})",
            info.config.name,
            info.config.subjects.join(", ")
        );
        say!(
            "  {} messages, {} keys, {} bytes, stream sequences {}..={}, {} consumers",
            state.messages,
            state.subjects_count,
            state.bytes,
            state.first_sequence,
            state.last_sequence,
            state.consumer_count
        );
        for check in &checks {
            let mark = match check.status {
                "ok" => "ok     ",
                "warning" => "warning",
                _ => "PROBLEM",
            };
            match &check.why {
                Some(why) => say!("  {mark} {}: {} ({why})", check.setting, check.value),
                None => say!("  {mark} {}: {}", check.setting, check.value),
            }
        }
        let problems = checks.iter().filter(|c| c.status == "problem").count();
        if fit {
            say!("verdict: fit for ecst: a state stream keeping every key's latest event");
        } else {
            say!(
                "verdict: NOT fit for ecst: {problems} setting(s) would lose or block keys' \
                 latest state; StateStream::ensure refuses this stream"
            );
        }
    }
    Ok(if fit { Verdict::Good } else { Verdict::Problem })
}

fn checks(config: &Config, wanted: &str) -> Vec<Check> {
    let ok = |setting, value: String| Check {
        setting,
        value,
        status: "ok",
        why: None,
    };
    let problem = |setting, value: String, why: String| Check {
        setting,
        value,
        status: "problem",
        why: Some(why),
    };
    let warning = |setting, value: String, why: String| Check {
        setting,
        value,
        status: "warning",
        why: Some(why),
    };
    let mut checks = Vec::new();
    let per_subject = config.max_messages_per_subject;
    checks.push(if per_subject == 1 {
        ok("max_msgs_per_subject", "1".to_owned())
    } else {
        problem(
            "max_msgs_per_subject",
            limit(per_subject),
            "a state stream keeps 1 message per subject: the latest state".to_owned(),
        )
    });
    checks.push(if config.subjects.iter().any(|s| s == wanted) {
        ok("subjects", config.subjects.join(", "))
    } else {
        problem(
            "subjects",
            config.subjects.join(", "),
            format!("ecst publishes under `{wanted}`, which the stream must capture"),
        )
    });
    checks.push(if config.max_age.is_zero() {
        ok("max_age", "none".to_owned())
    } else {
        problem(
            "max_age",
            duration(config.max_age),
            "messages expire: the state of keys that rarely change would vanish".to_owned(),
        )
    });
    let limited = config.max_messages > 0 || config.max_bytes > 0;
    let limits = format!(
        "max_msgs {}, max_bytes {}, discard {}",
        limit(config.max_messages),
        limit(config.max_bytes),
        match config.discard {
            DiscardPolicy::Old => "old",
            DiscardPolicy::New => "new",
        }
    );
    checks.push(if limited && config.discard == DiscardPolicy::Old {
        problem(
            "limits",
            limits,
            "past the limits the oldest messages are dropped: the state of keys that rarely \
             change"
                .to_owned(),
        )
    } else if limited {
        warning(
            "limits",
            limits,
            "past the limits new keys are refused (publishes fail, nothing is lost)".to_owned(),
        )
    } else {
        ok("limits", limits)
    });
    if config.discard == DiscardPolicy::New && config.discard_new_per_subject {
        checks.push(problem(
            "discard_new_per_subject",
            "true".to_owned(),
            "a subject's new message is refused while it holds one: no key could change".to_owned(),
        ));
    }
    checks.push(if config.sealed {
        problem(
            "sealed",
            "true".to_owned(),
            "a sealed stream takes no new events".to_owned(),
        )
    } else {
        ok("sealed", "false".to_owned())
    });
    checks.push(if config.duplicate_window.is_zero() {
        warning(
            "duplicate_window",
            "0s".to_owned(),
            "publishes are not de-duplicated by Nats-Msg-Id".to_owned(),
        )
    } else {
        ok("duplicate_window", duration(config.duplicate_window))
    });
    checks.push(match config.storage {
        StorageType::File => ok("storage", "file".to_owned()),
        StorageType::Memory => warning(
            "storage",
            "memory".to_owned(),
            "every key's state is lost when the server restarts".to_owned(),
        ),
    });
    checks.push(ok("num_replicas", config.num_replicas.to_string()));
    checks
}

fn limit(value: i64) -> String {
    if value <= 0 {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}
