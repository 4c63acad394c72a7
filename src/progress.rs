//! Progress reporting without printing: the library calls an observer, the
//! binary decides whether that is a progress bar, a log line or nothing.

/// Observer of a long-running command. Calls come from worker tasks, so an
/// implementation must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    /// The work is about to start; `total` is an estimate when known.
    fn start(&self, _total: Option<u64>) {}
    /// `n` more keys are done.
    fn advance(&self, _n: u64) {}
    /// The work has ended, successfully or not.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}
