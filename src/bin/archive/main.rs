//! The `archive` binary: parse, call the library, render, exit.
//!
//! Exit codes live here and only here (the table is also in the README and
//! in `--help`). A closed stdout (`archive inspect x | head`) is not an
//! error.

// The doc comments of the argument structs are clap's help text, written
// for a terminal (`[user[:password]@]`, `<ID>`), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod cli;
mod commands;
mod progress;
mod prompt;
mod render;
mod secrets;

use std::io::{self};
use std::process::ExitCode;

use clap::Parser;
use redis_archive::error::Error;
use redis_archive::progress::Cancel;

use cli::{Cli, Command};

mod exit {
    pub const OK: u8 = 0;
    pub const INTERNAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const AUTH: u8 = 4;
    pub const DB_RANGE: u8 = 5;
    pub const REDIS: u8 = 6;
    pub const BAD_ARCHIVE: u8 = 7;
    pub const SCHEMA: u8 = 8;
    pub const IO: u8 = 9;
    pub const PARTIAL: u8 = 10;
    pub const CONFIRM: u8 = 11;
    pub const DECRYPT: u8 = 12;
    pub const CONFLICT: u8 = 13;
    pub const DIFFERENT: u8 = 14;
    pub const LOCKED: u8 = 15;
    pub const UNSUPPORTED: u8 = 16;
    pub const NOT_REDIS: u8 = 17;
    pub const NO_RECORDS: u8 = 18;
    /// 128 + SIGINT, as shells report a command stopped by Ctrl-C.
    pub const INTERRUPTED: u8 = 130;
}

fn exit_code(err: &Error) -> u8 {
    match err {
        Error::RestoreFailed { cause, .. } => exit_code(cause),
        Error::Unreachable { .. } => exit::UNREACHABLE,
        Error::NotRedis { .. } => exit::NOT_REDIS,
        Error::NoRecords { .. } => exit::NO_RECORDS,
        Error::AuthRefused { .. } => exit::AUTH,
        Error::DbOutOfRange { .. } => exit::DB_RANGE,
        Error::Redis { .. }
        | Error::NoPermission { .. }
        | Error::Cluster { .. }
        | Error::SnapshotRefused { .. } => exit::REDIS,
        Error::BadUrl { .. }
        | Error::InvalidArgument(_)
        | Error::Profile(_)
        | Error::ClusterDb { .. } => exit::USAGE,
        Error::NotAnArchive { .. }
        | Error::Corrupt { .. }
        | Error::Truncated { .. }
        | Error::BadRdb { .. }
        | Error::RecordsInvalid { .. }
        | Error::BrokenRecord { .. } => exit::BAD_ARCHIVE,
        Error::UnsupportedSchema { .. } | Error::DataSchemaTooNew { .. } => exit::SCHEMA,
        Error::Decrypt { .. } => exit::DECRYPT,
        Error::Input { .. } | Error::Output { .. } => exit::IO,
        Error::ConfirmationRequired { .. } | Error::Cancelled => exit::CONFIRM,
        Error::Conflict { .. } => exit::CONFLICT,
        Error::Locked { .. } => exit::LOCKED,
        Error::TargetUnsupported { .. } => exit::UNSUPPORTED,
        Error::Interrupted(_) => exit::INTERRUPTED,
        Error::Internal(_) => exit::INTERNAL,
        // Error is non_exhaustive: a variant added to the library later and
        // not yet given its own code here is reported as an internal error.
        _ => exit::INTERNAL,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    progress::set_mode(cli.progress);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("archive: cannot start the runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let cancel = Cancel::new();
    runtime.spawn(stop_on_signal(cancel.clone()));
    match runtime.block_on(run(cli, cancel)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Archive(err)) => {
            eprintln!("archive: {err}");
            ExitCode::from(exit_code(&err))
        }
        Err(Failure::Io(err)) if err.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::OK)
        }
        Err(Failure::Io(err)) => {
            eprintln!("archive: cannot write the report: {err}");
            ExitCode::from(exit::IO)
        }
    }
}

enum Failure {
    Archive(Error),
    Io(io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Archive(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

async fn run(cli: Cli, cancel: Cancel) -> Result<u8, Failure> {
    match cli.command {
        Command::Export(args) => commands::run_export(args, cancel).await,
        Command::Inspect(args) => commands::run_inspect(args),
        Command::Validate(args) => commands::run_validate(args),
        Command::Compare(args) => commands::run_compare(args).await,
        Command::Restore(args) => commands::run_restore(args, cancel).await,
        Command::Copy(args) => commands::run_copy(args, cancel).await,
        Command::Rollback(args) => commands::run_rollback(args, cancel).await,
        Command::Upgrade(args) => commands::run_upgrade(args, cancel).await,
        Command::Backup(args) => commands::run_backup(args, cancel).await,
        Command::List(args) => commands::run_list(args),
        Command::Prune(args) => commands::run_prune(args),
        Command::Log(args) => commands::run_log(args),
        Command::Completions(args) => commands::run_completions(args),
        Command::Man => commands::run_man(),
    }
}

/// The first SIGINT or SIGTERM asks the work to stop cleanly (temp files
/// removed, a restore stopped between batches); a second one exits at once.
async fn stop_on_signal(cancel: Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    std::process::exit(i32::from(exit::INTERRUPTED));
}
