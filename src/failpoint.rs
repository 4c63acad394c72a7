//! Crash points for tests: with `ARCHIVE_FAILPOINT=NAME` (or `NAME:N`, the
//! N-th time it is reached) the process aborts at that point: no
//! destructor, no cleanup, no flush, which is what SIGKILL or a power cut
//! does. The crash tests use it to show what is left after a crash at each
//! stage of a write. Unset, a crash point costs one check of a cached value.
//! [`check`] points fail with an internal error instead (`export.start`),
//! so that the exit code of a bug can be tested without a bug.
//!
//! Points: `write.entry` (a data entry was appended), `write.manifest` (the
//! manifest was appended, layers not flushed), `write.before-rename` (the
//! temp file is complete and fsynced), `write.after-rename` (renamed, the
//! directory not fsynced), `folder.before-meta` (a folder archive is in
//! place, its metadata not written), `restore.backup-done` (the pre-restore
//! backup is complete, nothing written yet), `restore.batch` (a batch's
//! keys are journaled, not yet written), `restore.written` (a batch is
//! written, its outcome not yet journaled), `upgrade.backup-done` (the
//! pre-upgrade backup is complete, nothing written yet), `upgrade.batch`
//! (a batch of upgraded records is written and journaled).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const FAILPOINT_ENV: &str = "ARCHIVE_FAILPOINT";

fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(FAILPOINT_ENV).ok()?;
            Some(match spec.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1).max(1)),
                None => (spec, 1),
            })
        })
        .as_ref()
}

static HITS: AtomicU64 = AtomicU64::new(0);

fn reached(name: &str) -> bool {
    armed().is_some_and(|(armed, n)| armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n)
}

/// Abort here when this point is armed and reached for the N-th time.
pub fn hit(name: &str) {
    if reached(name) {
        std::process::abort();
    }
}

/// Fail here with an internal error when this point is armed.
pub fn check(name: &str) -> crate::Result<()> {
    if reached(name) {
        return Err(crate::Error::Internal(format!(
            "failure injected at {name}"
        )));
    }
    Ok(())
}
