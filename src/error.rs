//! One error type for the whole library.
//!
//! Every message is one line that names the thing that went wrong (an
//! endpoint without credentials, a file, an entry, a key) and ends with what
//! the user can do about it, because these errors are read by someone
//! restoring a database under pressure. The binary maps each variant to a
//! documented exit code; the library never decides how an error is shown.

use std::io;
use std::path::PathBuf;

/// The library's result type: every fallible function returns [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, one variant per cause a caller may want to
/// tell apart (the binary gives most of them their own exit code).
///
/// New variants may be added in minor releases, so a `match` needs a
/// wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "cannot connect to Redis at {endpoint}: {reason}; check that the server is running and the URL is right"
    )]
    /// The server could not be reached: refused, timed out, TLS failed.
    Unreachable {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// What the connection attempt reported.
        reason: String,
    },

    #[error(
        "{endpoint} is not a Redis server: it answered, but not in the Redis protocol; check the host and port (and use rediss:// if it expects TLS)"
    )]
    /// Something listens at the address but does not speak RESP (an HTTP
    /// server, another database, a TLS port reached without TLS).
    NotRedis {
        /// The endpoint, with any password left out.
        endpoint: String,
    },

    #[error(
        "Redis at {endpoint} refused authentication: {reason}; check the user name and the password (URL or {password_env})"
    )]
    /// The server answered but refused the user name or password.
    AuthRefused {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// The server's reply.
        reason: String,
        /// The environment variable the password can come from for this side.
        password_env: &'static str,
    },

    #[error(
        "Redis at {endpoint} has no database {db}: {reason}; pick a database index the server has (see `CONFIG GET databases`)"
    )]
    /// The database index is not one the server has.
    DbOutOfRange {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// The database index that was asked for.
        db: i64,
        /// The server's reply.
        reason: String,
    },

    #[error("Redis at {endpoint} failed while {action}: {reason}")]
    /// A command failed on a reachable server (an error reply, a dropped
    /// connection mid-way, a reply of an unexpected shape).
    Redis {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// What was being done, such as "reading keys".
        action: String,
        /// The server's reply or the connection error.
        reason: String,
    },

    #[error(
        "Redis at {endpoint} failed while {action}: {reason}; the user lacks a permission this command needs"
    )]
    /// The server refused a command to this user (an ACL without it): a
    /// right to grant, not a fault to retry. See docs/SECURITY.md for the
    /// rights each command needs.
    NoPermission {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// What was being done, such as "watching a big key".
        action: String,
        /// The server's reply.
        reason: String,
    },

    #[error(
        "Redis at {endpoint} did not send a snapshot: {reason}; a plain export (without --snapshot) reads the keys with SCAN and needs no such rights"
    )]
    /// The server would not act as a replication source: no right to
    /// `PSYNC`/`REPLCONF`, a managed service, a server loading or unable to fork.
    SnapshotRefused {
        /// The endpoint, with any password left out.
        endpoint: String,
        /// Why, in words.
        reason: String,
    },

    #[error("cannot read the RDB {source_name}: {reason}; nothing was written")]
    /// An RDB file or snapshot that is truncated, corrupt or of an RDB
    /// version or type this program does not know.
    BadRdb {
        /// The file (or the server the snapshot came from).
        source_name: String,
        /// What is wrong, with the byte offset where it is known.
        reason: String,
    },

    #[error(
        "invalid Redis URL {url:?}: {reason}; use redis://[user[:password]@]host[:port][/db] or rediss:// for TLS"
    )]
    /// The Redis URL cannot be parsed or uses an unknown scheme.
    BadUrl {
        /// The URL as given, with any password left out.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    #[error(
        "{path}: not an archive ({reason}); expected a .tar.zst file written by `archive export`"
    )]
    /// The file is not an archive at all (wrong magic, not tar+zstd, no
    /// header); see [`Error::is_bad_archive`].
    NotAnArchive {
        /// The file that was read.
        path: String,
        /// What did not match.
        reason: String,
    },

    #[error(
        "{path}: archive is corrupt: {reason}; do not restore from it, use another copy or a different backup"
    )]
    /// The archive fails verification (a checksum or count mismatch, a
    /// record that does not parse); its contents must not be trusted.
    Corrupt {
        /// The file that was read.
        path: String,
        /// The first problem found.
        reason: String,
    },

    #[error(
        "{path}: archive is truncated: {reason}; the file is incomplete, copy it again or use another backup"
    )]
    /// The archive ends early, as an interrupted copy or write leaves it.
    Truncated {
        /// The file that was read.
        path: String,
        /// Where it ended.
        reason: String,
    },

    #[error(
        "{path}: archive has schema_version {found}, this program reads up to {supported}; upgrade `archive` to read it"
    )]
    /// The archive was written by a newer version of the format than this
    /// library reads.
    UnsupportedSchema {
        /// The file that was read.
        path: String,
        /// The archive's `schema_version`.
        found: u64,
        /// The newest `schema_version` this library reads.
        supported: u64,
    },

    #[error("{path}: {reason}")]
    /// An encrypted archive cannot be decrypted: no key or passphrase was
    /// given, or the one given does not fit.
    Decrypt {
        /// The file that was read.
        path: String,
        /// What failed and what to supply.
        reason: String,
    },

    #[error("profile: {0}")]
    /// An application profile is invalid or does not fit the request.
    Profile(String),

    #[error(
        "{group} record {key} cannot be upgraded: it {reason}; nothing was written for it. Fix the record, or pass --skip-errors to leave such records as they are"
    )]
    /// `archive upgrade` met a record its steps cannot apply to, without
    /// `--skip-errors`.
    BrokenRecord {
        /// The record's profile group.
        group: String,
        /// The key, printable.
        key: String,
        /// Why the steps cannot apply to it.
        reason: String,
    },

    #[error(
        "{endpoint} is a Redis Cluster node and a cluster has only database 0, not {db}; drop --db (or the /{db} in the URL)"
    )]
    /// A database other than 0 was asked of a Redis Cluster.
    ClusterDb {
        /// The cluster node, with any password left out.
        endpoint: String,
        /// The database index that was asked for.
        db: i64,
    },

    #[error("cluster at {endpoint}: {reason}")]
    /// The cluster's layout got in the way: slots moved during the work,
    /// a shard is down, or the topology cannot be read.
    Cluster {
        /// The cluster node, with any password left out.
        endpoint: String,
        /// What happened.
        reason: String,
    },

    #[error(
        "user {user} has no keys in the groups of profile {profile:?} ({}); nothing was written; check the user id, or --types and the profile's templates",
        groups.join(", ")
    )]
    /// A user export (or backup) found none of the user's keys.
    NoRecords {
        /// The user id asked for.
        user: String,
        /// The profile's name.
        profile: String,
        /// The groups looked in.
        groups: Vec<String>,
    },

    #[error(
        "{archive}: {count} record(s) break the rules of profile {profile:?}: {}; nothing was written; fix them, or pass --no-validate to write the records as they are",
        list_some(examples, *count)
    )]
    /// Restore with a profile found records that break its rules (missing
    /// required fields, another owner, dangling references): stopped before
    /// the first write, as `validate --profile` would report them.
    RecordsInvalid {
        /// The archive as named, or for a copy its source and user.
        archive: String,
        /// The profile's name.
        profile: String,
        /// How many problems there are.
        count: u64,
        /// The first ones, in words.
        examples: Vec<String>,
    },

    #[error(
        "{path}: the records are in data schema_version {found} of {profile:?}, newer than the profile's {supported}; restore with the profile of the application version that wrote them"
    )]
    /// A user archive's records are newer than the profile used to restore
    /// them, which cannot downgrade records.
    DataSchemaTooNew {
        /// The file that was read.
        path: String,
        /// The profile's name.
        profile: String,
        /// The data schema version of the records.
        found: u64,
        /// The newest data schema version the profile knows.
        supported: u64,
    },

    #[error("cannot read {path}: {source}; check the path and its permissions")]
    /// A local file cannot be read (missing, no permission, an I/O error).
    Input {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    #[error("cannot write {path}: {}", describe_write_error(.source))]
    /// A local file cannot be written; the message says whether the disk is
    /// full, a directory is missing or permission is lacking.
    Output {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    /// An option or combination of options is not valid; the message says
    /// which and what to use instead.
    InvalidArgument(String),

    #[error(
        "refusing to write to {target} without confirmation: no terminal to ask on; pass --yes to restore, or --dry-run to see the plan"
    )]
    /// A restore needs confirmation and there is no terminal to ask on.
    ConfirmationRequired {
        /// The target that would have been written.
        target: String,
    },

    #[error("cancelled at the prompt; nothing was written")]
    /// The user declined the confirmation; nothing was written.
    Cancelled,

    #[error("interrupted: {0}")]
    /// The work was stopped through [`Cancel`](crate::progress::Cancel)
    /// (the binary does so on SIGINT or SIGTERM); the text says what was
    /// left behind.
    Interrupted(String),

    #[error("{reason}")]
    /// Another process holds the lock on a backup folder.
    Locked {
        /// Who holds it and what to do.
        reason: String,
    },

    #[error("{cause}; to undo what was written: {rollback}")]
    /// A restore failed after it had started writing; the target holds part
    /// of the archive.
    RestoreFailed {
        /// The error that stopped the restore.
        cause: Box<Error>,
        /// How to undo what was written (a rollback command, or why none
        /// is possible).
        rollback: String,
    },

    #[error("{count} key(s) already exist in {target} ({keys}{more}); nothing was written; choose --mode skip, overwrite or merge, or another target", more = if *count > 10 { ", ..." } else { "" })]
    /// With [`Mode::Fail`](crate::restore::Mode::Fail), keys of the archive
    /// already exist in the target; nothing was written.
    Conflict {
        /// The target, with any password left out.
        target: String,
        /// How many keys exist.
        count: u64,
        /// The first ones, printable and comma-separated.
        keys: String,
    },

    #[error(
        "{target} cannot hold what the archive holds: {what}; nothing was written; restore into a server that can, or add --drop-unsupported to restore the rest without them (counted in the report)"
    )]
    /// The target cannot hold some of what the archive holds (hash field
    /// expiry, module types, newer DUMP payloads); nothing was written.
    TargetUnsupported {
        /// The target, with any password left out.
        target: String,
        /// What it cannot hold.
        what: String,
    },

    #[error("internal error: {0}; please report this")]
    /// A bug: a state the library should never reach.
    Internal(String),
}

impl Error {
    pub(crate) fn output(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Output {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Input {
            path: path.into(),
            source,
        }
    }

    /// True when the error means the archive itself cannot be trusted.
    pub fn is_bad_archive(&self) -> bool {
        matches!(
            self,
            Error::NotAnArchive { .. } | Error::Corrupt { .. } | Error::Truncated { .. }
        )
    }
}

/// The first `examples` of `count` things, joined, with how many more.
fn list_some(examples: &[String], count: u64) -> String {
    let rest = count.saturating_sub(examples.len() as u64);
    match rest {
        0 => examples.join("; "),
        n => format!("{}; and {n} more", examples.join("; ")),
    }
}

/// Disk full and permission problems are the common causes of a failed
/// write; say which one it is and what to do, instead of a bare errno.
fn describe_write_error(err: &io::Error) -> String {
    match (err.raw_os_error(), err.kind()) {
        (Some(28), _) | (_, io::ErrorKind::StorageFull) => "disk full (no space left on device); free space or write elsewhere, nothing was left at the output path".into(),
        (Some(122), _) | (_, io::ErrorKind::QuotaExceeded) => "disk quota exceeded; free space or write elsewhere, nothing was left at the output path".into(),
        _ => match err.kind() {
            io::ErrorKind::NotFound => {
                format!("{err}; the directory does not exist, create it or choose another path")
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                format!("{err}; choose a writable location")
            }
            io::ErrorKind::NotADirectory => {
                format!("{err}; a part of the path is a file, choose another path")
            }
            _ => format!("{err}; nothing was left at the output path"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_named_as_such() {
        let err = Error::output("/x/y.tar.zst", io::Error::from_raw_os_error(28));
        let text = err.to_string();
        assert!(text.contains("disk full"), "{text}");
        assert!(text.starts_with("cannot write /x/y.tar.zst"), "{text}");
    }

    #[test]
    fn messages_are_one_line() {
        let err = Error::Corrupt {
            path: "a".into(),
            reason: "sha256 mismatch".into(),
        };
        assert!(!err.to_string().contains('\n'));
    }
}
