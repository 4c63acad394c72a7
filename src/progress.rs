//! Progress reporting without printing: the library calls an observer, the
//! binary decides whether that is a progress bar, a log line or nothing.

use crate::report::Action;

/// Observer of a long-running command. Calls come from worker tasks, so an
/// implementation must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// The work is about to start; `total` is an estimate when known.
    fn start(&self, _total: Option<u64>) {}
    /// `n` more keys are done.
    fn advance(&self, _n: u64) {}
    /// The work has ended, successfully or not.
    fn finish(&self) {}
    /// A restore's or copy's plan decided `key` (for a listing of every
    /// key, `--verbose`).
    fn planned(&self, _key: &[u8], _action: Action) {}
    /// A restore or copy dealt with `key`: `action` was done, or its writes
    /// failed for `failed`.
    fn done(&self, _key: &[u8], _action: Action, _failed: Option<&str>) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

/// A request to stop, set from outside (the binary sets it on SIGINT or
/// SIGTERM). Long-running work checks it between batches and stops with
/// [`crate::Error::Interrupted`], cleaning up as on any other failure:
/// an export removes its temp file, a restore stops before its next batch.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    /// A request that has not been made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the work to stop; every clone sees it.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the stop has been asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
