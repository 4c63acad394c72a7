//! The backup folder's audit log: one JSON line per run of `backup`,
//! `restore`, `copy`, `rollback` and `prune` against the folder, saying when,
//! who, where, with which command, how it ended and what its report said.
//!
//! Runbooks ask "who ran this migration, and what did it do"; the folder is
//! where the runs leave their archives, so it is where their record stays.
//! Each line goes out in one `write` on a file opened with `O_APPEND`, so
//! concurrent runs never interleave within a line and nothing earlier is
//! ever rewritten. The file is 0600 like the archives beside it; it holds
//! no secrets (the command line is redacted, reports carry no credentials).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::ArchiveSource;
use crate::archive::manifest::Operator;
use crate::error::{Error, Result};

/// The audit log's file name in the backup folder.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    /// Everything done.
    Ok,
    /// Done, but some keys failed (exit code 10).
    Partial,
    /// Stopped by an error; `error` says which.
    Failed,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the run ended.
    pub time: DateTime<Utc>,
    /// `backup`, `restore`, `copy`, `rollback` or `prune`.
    pub action: String,
    /// Who ran it, where, with which command line (secrets removed).
    #[serde(flatten)]
    pub operator: Operator,
    /// How it ended.
    pub outcome: Outcome,
    /// The error that stopped it (failed runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's report without its lists (key samples, archives
    /// considered): counts, ends, files.
    #[serde(default)]
    pub summary: serde_json::Value,
}

impl AuditEntry {
    /// An entry for a run of `action` by this process that ended now with
    /// `result`; `partial` says whether a finished report counts failed keys.
    pub fn of<T: Serialize>(
        action: &str,
        result: &Result<T>,
        partial: impl FnOnce(&T) -> bool,
    ) -> Self {
        let (outcome, error, summary) = match result {
            Ok(report) => (
                if partial(report) {
                    Outcome::Partial
                } else {
                    Outcome::Ok
                },
                None,
                summary(report),
            ),
            Err(e) => (
                Outcome::Failed,
                Some(e.to_string()),
                serde_json::Value::Null,
            ),
        };
        AuditEntry {
            time: Utc::now(),
            action: action.into(),
            operator: Operator::current(),
            outcome,
            error,
            summary,
        }
    }
}

/// A report as JSON, without its arrays at any depth: the counts stay, the
/// samples of key names and lists of archives (long, and the report the
/// command printed has them) go.
fn summary<T: Serialize>(report: &T) -> serde_json::Value {
    fn strip(value: &mut serde_json::Value) {
        if let serde_json::Value::Object(map) = value {
            map.retain(|_, v| !v.is_array());
            map.values_mut().for_each(strip);
        }
    }
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    strip(&mut value);
    value
}

/// Append `entry` to the audit log of the folder `dir` (created 0600).
pub fn append(dir: &Path, entry: &AuditEntry) -> Result<()> {
    let path = dir.join(AUDIT_FILE);
    let mut line = serde_json::to_vec(entry)
        .map_err(|e| Error::Internal(format!("audit entry does not serialize: {e}")))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::output(&path, e))?;
    // One write: with O_APPEND the line lands whole at the end, even when
    // two runs append at once.
    file.write_all(&line).map_err(|e| Error::output(&path, e))
}

/// Log the run of `action` that ended with `result` in each folder of
/// `dirs`, and hand the result back. A run that succeeded but cannot be
/// logged fails with the log's error (an audit that silently misses runs is
/// no audit); a failed run keeps its own error.
pub(crate) fn record<T: Serialize>(
    dirs: &[PathBuf],
    action: &str,
    result: Result<T>,
    partial: impl FnOnce(&T) -> bool,
) -> Result<T> {
    if dirs.is_empty() {
        return result;
    }
    let entry = AuditEntry::of(action, &result, partial);
    let mut logged = Ok(());
    for dir in dirs {
        // The folder may not exist yet (a restore that had nothing to back up).
        let _ = super::catalog::create_private_dir(dir);
        logged = logged.and(append(dir, &entry));
    }
    match (result, logged) {
        (Ok(_), Err(e)) => Err(e),
        (result, _) => result,
    }
}

/// The folder a file of the backup folder lives in (`.` for a bare name).
pub(crate) fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The folders a restore or copy is logged in: the one its pre-restore
/// backup goes to, and the one the restored archive lives in when that is
/// a backup folder's archive (it has its metadata sidecar), once each.
pub(crate) fn restore_folders(backup_dir: Option<&Path>, archive: &ArchiveSource) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = backup_dir.map(Path::to_path_buf).into_iter().collect();
    if let ArchiveSource::File(path) = archive
        && super::catalog::meta_path(path).is_file()
    {
        let dir = folder_of(path);
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if !dirs.iter().any(|d| same(d, &dir)) {
            dirs.push(dir);
        }
    }
    dirs
}

/// The audit log of the folder `dir`, oldest first; an empty list when the
/// folder has none yet. A line that does not parse (a torn write after a
/// crash) is skipped rather than hiding the rest.
pub fn read(dir: &Path) -> Result<Vec<AuditEntry>> {
    let path = dir.join(AUDIT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.is_dir() {
                return Ok(Vec::new());
            }
            return Err(Error::input(dir, e));
        }
        Err(e) => return Err(Error::input(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_private_lines_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let ok: Result<serde_json::Value> = Ok(
            serde_json::json!({"keys": 3, "error_samples": ["k"], "by_type": {"hash": 1, "x": []}}),
        );
        append(dir.path(), &AuditEntry::of("backup", &ok, |_| false)).unwrap();
        let failed: Result<serde_json::Value> = Err(Error::Cancelled);
        let r = record(&[dir.path().to_path_buf()], "restore", failed, |_| false);
        assert!(matches!(r, Err(Error::Cancelled)));
        let path = dir.path().join(AUDIT_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].action, "backup");
        assert_eq!(entries[0].outcome, Outcome::Ok);
        assert_eq!(
            entries[0].summary,
            serde_json::json!({"keys": 3, "by_type": {"hash": 1}})
        );
        assert_eq!(entries[1].outcome, Outcome::Failed);
        assert!(entries[1].error.is_some());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.lines()
                .all(|l| l.contains("\"user\"") && l.contains("\"host\""))
        );
    }

    #[test]
    fn a_folder_without_a_log_has_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        assert!(read(&dir.path().join("missing")).is_err());
    }
}
