//! `ecst`: the command line of ecst, for operators.
//!
//! See `ecst --help`, and "The `ecst` command line" in the README.

#![forbid(unsafe_code)]

#[macro_use]
mod output;
mod cli;
mod commands;
mod diff;
mod error;
mod event;
mod nats;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ParkedCommand, ReplicaCommand, StreamCommand};
use crate::error::{Failure, Outcome, Verdict};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&Failure::new(format!("starting the runtime: {error}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(Verdict::Good) => ExitCode::SUCCESS,
        Ok(Verdict::Problem) => ExitCode::from(1),
        // The reader stopped reading: nothing left to say to anyone.
        Err(failure) if failure.is_closed() => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("ecst: error: {failure}");
    ExitCode::from(2)
}

async fn run(cli: Cli) -> Outcome {
    let json = cli.json;
    let server = cli.server;
    match cli.command {
        Command::Tail(args) => commands::tail::run(&server, args, json).await,
        Command::Get(args) => commands::get::run(&server, args, json).await,
        Command::Replica { command } => match command {
            ReplicaCommand::Show {
                entity,
                key,
                store,
                consumer,
            } => commands::replica::show(&store, consumer.consumer, &entity, &key, json).await,
            ReplicaCommand::Diff {
                prefix,
                entity,
                store,
                consumer,
                limit,
            } => {
                let target = commands::replica::DiffTarget {
                    server: &server,
                    prefix: &prefix,
                    entity: &entity,
                    limit,
                };
                commands::replica::diff(&store, consumer.consumer, target, json).await
            }
        },
        Command::Parked { command } => match command {
            ParkedCommand::List {
                store,
                consumer,
                entity,
                pending,
            } => {
                commands::parked::list(&store, consumer.consumer, entity.as_deref(), pending, json)
                    .await
            }
            ParkedCommand::Retry {
                entity,
                stream_sequence,
                store,
                consumer,
            } => {
                commands::parked::retry(&store, consumer.consumer, &entity, stream_sequence, json)
                    .await
            }
            ParkedCommand::Discard {
                entity,
                stream_sequence,
                reason,
                store,
                consumer,
            } => {
                let target = commands::parked::Target {
                    entity: &entity,
                    stream_sequence,
                };
                commands::parked::discard(&store, consumer.consumer, target, &reason, json).await
            }
        },
        Command::Stream { command } => match command {
            StreamCommand::Info { prefix } => commands::stream::info(&server, &prefix, json).await,
        },
    }
}
