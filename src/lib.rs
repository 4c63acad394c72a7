//! Export Redis keyspaces into verified, versioned archives and restore
//! them exactly.
//!
//! An archive is a zstd-compressed tar stream: `header.json`, data entries
//! of JSON Lines records (one Redis key, or one chunk of a big key, per
//! line; binary-safe), and `manifest.json` with counts and sha256 checksums.
//! Standard tools open it (`zstd -dc FILE | tar -x`); docs/FORMAT.md
//! describes every field.
//!
//! The library does the work and returns reports; it never prints. The
//! `archive` binary parses arguments, renders reports and maps errors to
//! exit codes.
//!
//! ```no_run
//! use redis_archive::archive::Destination;
//! use redis_archive::connection::{Endpoint, Side, Timeouts};
//! use redis_archive::export::{ExportOptions, export};
//! use redis_archive::keyspace::Selection;
//! use redis_archive::progress::Silent;
//! use redis_archive::restore::{RestoreOptions, perform, plan};
//! use redis_archive::archive::ArchiveSource;
//!
//! # async fn run() -> redis_archive::Result<()> {
//! let source = Endpoint::resolve("redis://127.0.0.1:6379", None, None, Side::Source, Timeouts::default())?;
//! let selection = Selection { include: vec!["user:*".into()], ..Selection::default() };
//! let report = export(
//!     ExportOptions::new(source, Destination::File("users.tar.zst".into()), selection),
//!     &Silent,
//! )
//! .await?;
//! println!("{} keys", report.keys);
//!
//! let target = Endpoint::resolve("redis://127.0.0.1:6380", None, None, Side::Target, Timeouts::default())?;
//! let options = RestoreOptions::new(ArchiveSource::File("users.tar.zst".into()), target);
//! let plan = plan(&options, &Silent).await?; // verifies everything, writes nothing
//! let done = perform(plan, &options, &Silent).await?;
//! assert!(!done.is_partial());
//! # Ok(()) }
//! ```

pub mod archive;
pub(crate) mod cluster;
pub mod compare;
pub mod connection;
pub mod copy;
pub mod error;
pub mod export;
pub(crate) mod failpoint;
pub mod fetch;
pub mod folder;
pub mod keyspace;
pub mod load;
pub mod partial;
pub(crate) mod pel;
pub mod profile;
pub mod progress;
/// Reading RDB files (snapshots a server saves, or sends a replica) into
/// records, streaming, in bounded memory.
pub mod rdb;
pub mod record;
pub mod redact;
pub(crate) mod reply;
pub mod report;
pub mod restore;
mod samples;
pub mod upgrade;
pub mod validate;

pub use error::{Error, Result};
