//! The progress bar: on stderr, and only when it is a terminal. The library
//! reports progress through its `Progress` trait and never draws.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use redis_archive::progress::Progress;

/// A progress bar on stderr when it is a terminal; nothing otherwise. With
/// no known total (verifying an archive), a spinner with a count.
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
    verb: &'static str,
}

impl Bar {
    pub(crate) fn new(verb: &'static str) -> Self {
        let bar = io::stderr()
            .is_terminal()
            .then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()));
        Bar { bar, verb }
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

impl Progress for Bar {
    fn start(&self, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_style(self.style(total.is_some()));
            bar.set_length(total.unwrap_or(0));
            bar.set_position(0);
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
