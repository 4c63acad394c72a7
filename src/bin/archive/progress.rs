//! Progress: a bar on stderr when it is a terminal; otherwise (CI, a
//! `tee`d log) a line every 30 seconds, so a long run is never silent
//! until its end. `--progress` picks one of them, or neither. The library reports progress through its `Progress`
//! trait and never draws.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use redis_archive::progress::Progress;
use redis_archive::record::printable;
use redis_archive::report::Action;

use crate::cli::ProgressMode;

/// Seconds between progress lines when stderr is not a terminal
/// (`ARCHIVE_PROGRESS_INTERVAL` overrides it; 0 turns them off).
const LOG_INTERVAL_SECS: f64 = 30.0;

/// A progress bar on stderr when it is a terminal, progress lines
/// otherwise. With no known total (verifying an archive), a spinner with a
/// count.
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
    log: Option<Mutex<Log>>,
    verb: &'static str,
    /// List every key with its action on stderr (`--verbose`).
    listing: bool,
}

/// Where a run stands, for its progress lines.
struct Log {
    every: Duration,
    started: Instant,
    last: Instant,
    done: u64,
    total: Option<u64>,
}

/// The `--progress` mode, set once by `main` before any work starts.
static MODE: OnceLock<ProgressMode> = OnceLock::new();

/// Set what progress every bar of this run shows.
pub(crate) fn set_mode(mode: ProgressMode) {
    let _ = MODE.set(mode);
}

impl Bar {
    pub(crate) fn new(verb: &'static str) -> Self {
        let mode = MODE.get().copied().unwrap_or(ProgressMode::Auto);
        let terminal = io::stderr().is_terminal();
        let (bar, lines) = match mode {
            ProgressMode::Auto => (terminal, !terminal),
            ProgressMode::Bar => (terminal, false),
            ProgressMode::Lines => (false, true),
            ProgressMode::None => (false, false),
        };
        if !lines {
            let bar =
                bar.then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()));
            return Bar {
                bar,
                log: None,
                verb,
                listing: false,
            };
        }
        let secs = std::env::var("ARCHIVE_PROGRESS_INTERVAL")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(LOG_INTERVAL_SECS);
        let log = (secs > 0.0).then(|| {
            let now = Instant::now();
            Mutex::new(Log {
                every: Duration::from_secs_f64(secs),
                started: now,
                last: now,
                done: 0,
                total: None,
            })
        });
        Bar {
            bar: None,
            log,
            verb,
            listing: false,
        }
    }

    /// Also list every key with what is (or would be) done to it.
    pub(crate) fn listing(mut self, on: bool) -> Self {
        self.listing = on;
        self
    }

    /// One line of the listing, above the bar when there is one.
    fn list(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            // A listing that cannot be written is no reason to stop the work.
            None => {
                let _ = writeln!(io::stderr().lock(), "{line}");
            }
        }
    }

    fn style(&self, known_total: bool) -> ProgressStyle {
        let template = if known_total {
            format!(
                "{} {{bar:30}} {{human_pos}}/{{human_len}} keys  {{rate}}  eta {{eta}}",
                self.verb
            )
        } else {
            format!("{} {{spinner}} {{human_pos}} keys  {{rate}}", self.verb)
        };
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} keys/s", state.per_sec());
                },
            )
    }
}

impl Log {
    /// One line: `exporting: 120000/1000000 keys, 40000 keys/s, 3 s`.
    fn line(&self, verb: &str) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
        format!(
            "{verb}: {}{of} keys, {rate:.0} keys/s, {secs:.0} s",
            self.done
        )
    }
}

impl Progress for Bar {
    fn start(&self, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_style(self.style(total.is_some()));
            bar.set_length(total.unwrap_or(0));
            bar.set_position(0);
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        if let Some(log) = &self.log {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.total = total;
            log.done = 0;
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some(log) = &self.log {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.done += n;
            if log.last.elapsed() >= log.every {
                log.last = Instant::now();
                // A log that cannot be written is no reason to stop the work.
                let _ = writeln!(io::stderr().lock(), "{}", log.line(self.verb));
            }
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
    fn planned(&self, key: &[u8], action: Action) {
        if self.listing {
            let what = match action {
                Action::Create => "to create",
                Action::Skip => "to skip (exists)",
                Action::Overwrite => "to overwrite",
                Action::Merge => "to merge into",
                Action::Expired => "expired, not written",
                Action::Conflict => "exists (--mode fail)",
                Action::Unsupported => "unsupported, not written",
                _ => return,
            };
            self.list(format!("{what}: {}", printable(key)));
        }
    }
    fn done(&self, key: &[u8], action: Action, failed: Option<&str>) {
        if !self.listing {
            return;
        }
        if let Some(reason) = failed {
            self.list(format!("failed: {} ({reason})", printable(key)));
            return;
        }
        let what = match action {
            Action::Create => "created",
            Action::Skip => "skipped (exists)",
            Action::Overwrite => "overwritten",
            Action::Merge => "merged into",
            Action::Expired => "expired, not written",
            Action::Unsupported => "unsupported, not written",
            _ => return,
        };
        self.list(format!("{what}: {}", printable(key)));
    }
}
