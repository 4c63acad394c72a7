//! One error type for the whole library.
//!
//! Every message is one line that names the thing that went wrong (an
//! endpoint without credentials, a file, an entry, a key) and ends with what
//! the user can do about it, because these errors are read by someone
//! restoring a database under pressure. The binary maps each variant to a
//! documented exit code; the library never decides how an error is shown.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to Redis at {endpoint}: {reason}; check that the server is running and the URL is right"
    )]
    Unreachable { endpoint: String, reason: String },

    #[error(
        "Redis at {endpoint} refused authentication: {reason}; check the user name and the password (URL or {password_env})"
    )]
    AuthRefused {
        endpoint: String,
        reason: String,
        password_env: &'static str,
    },

    #[error(
        "Redis at {endpoint} has no database {db}: {reason}; pick a database index the server has (see `CONFIG GET databases`)"
    )]
    DbOutOfRange {
        endpoint: String,
        db: i64,
        reason: String,
    },

    #[error("Redis at {endpoint} failed while {action}: {reason}")]
    Redis {
        endpoint: String,
        action: String,
        reason: String,
    },

    #[error(
        "invalid Redis URL {url:?}: {reason}; use redis://[user[:password]@]host[:port][/db] or rediss:// for TLS"
    )]
    BadUrl { url: String, reason: String },

    #[error(
        "{path}: not an archive ({reason}); expected a .tar.zst file written by `archive export`"
    )]
    NotAnArchive { path: String, reason: String },

    #[error(
        "{path}: archive is corrupt: {reason}; do not restore from it, use another copy or a different backup"
    )]
    Corrupt { path: String, reason: String },

    #[error(
        "{path}: archive is truncated: {reason}; the file is incomplete, copy it again or use another backup"
    )]
    Truncated { path: String, reason: String },

    #[error(
        "{path}: archive has schema_version {found}, this program reads up to {supported}; upgrade `archive` to read it"
    )]
    UnsupportedSchema {
        path: String,
        found: u64,
        supported: u64,
    },

    #[error("{path}: {reason}")]
    Decrypt { path: String, reason: String },

    #[error("profile: {0}")]
    Profile(String),

    #[error(
        "{endpoint} is a Redis Cluster node and a cluster has only database 0, not {db}; drop --db (or the /{db} in the URL)"
    )]
    ClusterDb { endpoint: String, db: i64 },

    #[error("cluster at {endpoint}: {reason}")]
    Cluster { endpoint: String, reason: String },

    #[error(
        "{path}: the records are in data schema_version {found} of {profile:?}, newer than the profile's {supported}; restore with the profile of the application version that wrote them"
    )]
    DataSchemaTooNew {
        path: String,
        profile: String,
        found: u64,
        supported: u64,
    },

    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Input {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {path}: {}", describe_write_error(.source))]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{0}")]
    InvalidArgument(String),

    #[error(
        "refusing to write to {target} without confirmation: no terminal to ask on; pass --yes to restore, or --dry-run to see the plan"
    )]
    ConfirmationRequired { target: String },

    #[error("restore cancelled; nothing was written")]
    Cancelled,

    #[error("interrupted: {0}")]
    Interrupted(String),

    #[error("{reason}")]
    Locked { reason: String },

    #[error("{cause}; to undo what was written: {rollback}")]
    RestoreFailed { cause: Box<Error>, rollback: String },

    #[error("{count} key(s) already exist in {target} ({keys}{more}); nothing was written; choose --mode skip, overwrite or merge, or another target", more = if *count > 10 { ", ..." } else { "" })]
    Conflict {
        target: String,
        count: u64,
        keys: String,
    },

    #[error(
        "{target} cannot hold what the archive holds: {what}; nothing was written; restore into a server that can, or add --drop-unsupported to restore the rest without them (counted in the report)"
    )]
    TargetUnsupported { target: String, what: String },

    #[error("internal error: {0}; please report this")]
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
