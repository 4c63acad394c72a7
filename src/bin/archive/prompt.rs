//! Asking before a restore or copy writes: both ends, the selection and
//! the plan are shown, and the answer read from the terminal.

use std::io::{self, BufRead, IsTerminal, Write};

use redis_archive::error::Error;
use redis_archive::keyspace::Selection;
use redis_archive::report::{Action, ActionCounts, PlanNames, RenameSummary};

use crate::{Failure, render};

/// The two ends of a restore or copy, as the confirmation shows them.
pub(crate) struct Ends<'a> {
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) selection: &'a Selection,
    pub(crate) backup: Option<&'a std::path::Path>,
    pub(crate) renames: Option<&'a RenameSummary>,
    pub(crate) names: &'a PlanNames,
    pub(crate) merge_would_add: Option<u64>,
    /// A redacted archive going into a target that looks like production.
    pub(crate) warning: Option<&'a str>,
}

/// Ask on the terminal; without one, refuse (pass --yes).
pub(crate) fn confirm(
    ends: &Ends,
    actions: &ActionCounts,
    stdin_is_data: bool,
) -> Result<(), Failure> {
    ask(ends.to, stdin_is_data, |err| {
        writeln!(err, "from:      {}", ends.from)?;
        writeln!(err, "to:        {}", ends.to)?;
        render::selection(err, ends.selection)?;
        match ends.backup {
            Some(path) => writeln!(err, "backup:    {}", path.display())?,
            None => writeln!(
                err,
                "backup:    none (--no-backup): this cannot be rolled back"
            )?,
        }
        render::plan_table(err, actions)?;
        if let Some(renames) = ends.renames {
            render::renames(err, renames)?;
        }
        render::plan_names(err, ends.names, actions)?;
        render::merge_would_add(err, ends.merge_would_add, actions)?;
        if let Some(w) = ends.warning {
            writeln!(err, "warning:   {w}")?;
        }
        let merges = actions.total(Action::Merge);
        if merges > 0 {
            write!(
                err,
                "write {} keys and merge into {merges}? [y/N] ",
                actions.writes()
            )
        } else {
            write!(err, "write {} keys? [y/N] ", actions.writes())
        }
    })
}

/// Show `question` on the terminal and go on only on yes. Without a
/// terminal to ask on (or with stdin carrying the archive), refuse: the
/// caller must pass --yes.
pub(crate) fn ask(
    target: &str,
    stdin_is_data: bool,
    question: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), Failure> {
    let stdin = io::stdin();
    if stdin_is_data || !stdin.is_terminal() || !io::stderr().is_terminal() {
        return Err(Error::ConfirmationRequired {
            target: target.to_string(),
        }
        .into());
    }
    let mut err = io::stderr().lock();
    question(&mut err)?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Error::Cancelled.into())
    }
}
