//! What is wrong with an archive, and where: the problems a read finds.
//! A strict read (restore, inspect) stops at the first and turns it into
//! an error; a lenient one (validate) counts them all and keeps the first.

use super::*;
use crate::samples::Samples;

/// What kind of problem an archive has; decides the error a strict read
/// returns, and is named in validation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not an archive at all: see [`Error::NotAnArchive`].
    NotAnArchive,
    /// Fails verification: see [`Error::Corrupt`].
    Corrupt,
    /// Ends early: see [`Error::Truncated`].
    Truncated,
    /// Written by a newer format version: see
    /// [`Error::UnsupportedSchema`].
    UnsupportedSchema,
    /// A record that breaks a profile's rules (`validate --profile`).
    Record,
}

/// One thing wrong with an archive, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// The tar entry it is in, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// 1-based record (line) number inside the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// The key concerned, printable, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            entry: None,
            record: None,
            key: None,
            message: message.into(),
        }
    }

    /// A record-level finding at `location`.
    pub fn record(location: &Location, key: &[u8], message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Record, message)
            .at(&location.entry, Some(location.record))
            .key(Some(key))
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Corrupt, message)
    }

    pub(crate) fn at(mut self, entry: &str, record: Option<u64>) -> Self {
        self.entry = Some(entry.to_string());
        self.record = record;
        self
    }

    pub(crate) fn key(mut self, key: Option<&[u8]>) -> Self {
        self.key = key.map(crate::record::printable);
        self
    }

    /// Where, as one prefix: `data/000000.jsonl record 3 (key "user:1"): `.
    pub fn location(&self) -> String {
        let mut out = String::new();
        if let Some(entry) = &self.entry {
            out.push_str(entry);
            if let Some(r) = self.record {
                out.push_str(&format!(" record {r}"));
            }
        }
        if let Some(key) = &self.key {
            out.push_str(&format!(" (key \"{key}\")"));
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out
    }

    pub(crate) fn into_error(self, name: &str) -> Error {
        let path = name.to_string();
        let reason = format!("{}{}", self.location(), self.message);
        match self.kind {
            ProblemKind::NotAnArchive => Error::NotAnArchive { path, reason },
            ProblemKind::Truncated => Error::Truncated { path, reason },
            ProblemKind::Corrupt | ProblemKind::UnsupportedSchema | ProblemKind::Record => {
                Error::Corrupt { path, reason }
            }
        }
    }

    pub(crate) fn from_error(err: &Error) -> Self {
        let kind = match err {
            Error::NotAnArchive { .. } => ProblemKind::NotAnArchive,
            Error::Truncated { .. } => ProblemKind::Truncated,
            Error::UnsupportedSchema { .. } => ProblemKind::UnsupportedSchema,
            _ => ProblemKind::Corrupt,
        };
        let message = match err {
            Error::NotAnArchive { reason, .. }
            | Error::Truncated { reason, .. }
            | Error::Corrupt { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        Problem::new(kind, message)
    }
}

/// Where problems go: a strict read fails at the first one (restore must
/// not act on a bad archive); validation collects them all.
pub(crate) struct Problems {
    pub(crate) name: String,
    pub(crate) strict: bool,
    /// Every problem counted, the first kept.
    pub(crate) found: Samples<Problem>,
}

/// Reading cannot go on (the stream itself is broken).
pub(crate) struct Stop;

impl Problems {
    pub(crate) fn report(&mut self, problem: Problem) -> Result<()> {
        if self.strict {
            return Err(problem.into_error(&self.name));
        }
        self.found.add(problem);
        Ok(())
    }

    /// An error after which nothing more can be read.
    pub(crate) fn fatal(&mut self, err: Error) -> Result<Stop> {
        if self.strict {
            return Err(err);
        }
        self.report(Problem::from_error(&err))?;
        Ok(Stop)
    }
}
