//! The command line's grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Look at ecst state streams and replica stores: tail and get events,
/// check a replica against its stream, handle parked events, check a
/// stream's settings.
///
/// Exit status: 0 when all is well, 1 when a check found a problem
/// (`replica diff`, `stream info`), 2 on an error (one line on stderr).
#[derive(Debug, Parser)]
#[command(name = "ecst", version, max_term_width = 100)]
pub struct Cli {
    /// The NATS server (a password in the URL is never printed).
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222",
        value_name = "URL"
    )]
    pub server: String,

    /// Print JSON for scripts instead of text (one object; `tail` prints one
    /// object per line).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print events as they arrive, each with what changed since the
    /// previous event of its key.
    Tail(TailArgs),
    /// Print the latest event of a key, as the stream holds it.
    Get(GetArgs),
    /// A replica store: one key's row, or the whole replica against the
    /// stream.
    Replica {
        /// What to do with the replica.
        #[command(subcommand)]
        command: ReplicaCommand,
    },
    /// The parked events of a replica store.
    Parked {
        /// What to do with parked events.
        #[command(subcommand)]
        command: ParkedCommand,
    },
    /// A state stream.
    Stream {
        /// What to do with the stream.
        #[command(subcommand)]
        command: StreamCommand,
    },
}

/// `ecst tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The subject prefix of the state stream (e.g. `ecst` or `acme.crm`).
    pub prefix: String,
    /// Only events of this entity.
    pub entity: Option<String>,
    /// Only events of this key (needs the entity).
    pub key: Option<String>,
    /// Print every event the stream holds (the latest of every key), then
    /// follow.
    #[arg(long, conflicts_with = "last")]
    pub from_start: bool,
    /// Print the last N events the stream holds, then follow.
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Exit after printing N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Print no state changes: start at once, without first reading the
    /// current state of every followed key (which the changes are computed
    /// against).
    #[arg(long)]
    pub no_diff: bool,
}

/// `ecst get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The subject prefix of the state stream.
    pub prefix: String,
    /// The entity (the events' `type`).
    pub entity: String,
    /// The key, as the events' `subject` attribute writes it.
    pub key: String,
}

/// Which store, and whose rows in it.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "store")]
pub struct StoreArgs {
    /// An SQLite replica store (the file must exist).
    #[arg(long, value_name = "FILE", group = "store")]
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL replica store (`postgresql://user@host/db` or
    /// `host=.. user=.. dbname=..`).
    #[arg(long, value_name = "URL", group = "store")]
    pub postgres: Option<String>,
}

/// The consumer whose rows to read: optional when the store holds one.
#[derive(Debug, Args)]
pub struct ConsumerArg {
    /// The consumer name the replica was opened with; may be left out when
    /// the store holds a single consumer.
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
}

/// `ecst replica ...`.
#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// One key's row: its sequence and state (or tombstone), and the
    /// consumer's checkpoint.
    Show {
        /// The entity.
        entity: String,
        /// The key.
        key: String,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        consumer: ConsumerArg,
    },
    /// Compare the store's rows with the stream's latest event of every
    /// key: keys missing, stale (lower sequence), extra or ahead, with a
    /// verdict.
    Diff {
        /// The subject prefix of the state stream.
        prefix: String,
        /// The entity.
        entity: String,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        consumer: ConsumerArg,
        /// List at most N keys of each kind (the counts are always whole).
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
    },
}

/// `ecst parked ...`.
#[derive(Debug, Subcommand)]
pub enum ParkedCommand {
    /// List parked events, pending and resolved.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        consumer: ConsumerArg,
        /// Only this entity.
        #[arg(long)]
        entity: Option<String>,
        /// Only the pending ones.
        #[arg(long)]
        pending: bool,
    },
    /// Make a resolved parked event pending again (its resolution cleared),
    /// for the consumer's next `retry_parked` after it loads the store
    /// (which applies it only if it is newer than what its key holds).
    /// Refused for kinds `retry_parked` never applies (misaddressed,
    /// refused, purged_tombstone), and for an event at or below the purge
    /// floor whose key the store does not hold.
    Retry {
        /// The entity.
        entity: String,
        /// The parked event's stream sequence.
        stream_sequence: u64,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        consumer: ConsumerArg,
    },
    /// Resolve a pending parked event without applying it, recording why
    /// (as `DurableReplica::discard_parked` does).
    Discard {
        /// The entity.
        entity: String,
        /// The parked event's stream sequence.
        stream_sequence: u64,
        /// Why: stored in the row's resolution, `discarded: <why>`.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        consumer: ConsumerArg,
    },
}

/// `ecst stream ...`.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// The stream's settings and state, checked against what ecst needs.
    Info {
        /// The subject prefix of the state stream.
        prefix: String,
    },
}
