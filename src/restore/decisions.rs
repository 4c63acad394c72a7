//! The plan's decision for each key, in archive order, in memory that does
//! not grow with the archive: one byte a key, the settled ones moved to a
//! private temp file (unnamed, gone with the process) in large writes, the
//! rest in memory. Perform reads them back in order. At 4,000,000 keys the
//! bytes alone were 4 MiB of a restore's peak.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};
use crate::report::Action;

/// Decisions kept in memory before the settled ones go to the file.
const WINDOW: usize = 256 << 10;

/// A decision's byte: its place in [`Action::ALL`], and one past them for
/// [`Action::Void`].
fn byte(action: Action) -> u8 {
    let all = &Action::ALL;
    all.iter().position(|&a| a == action).unwrap_or(all.len()) as u8
}

fn action(byte: u8) -> Result<Action> {
    match usize::from(byte) {
        b if b == Action::ALL.len() => Ok(Action::Void),
        b => Action::ALL
            .get(b)
            .copied()
            .ok_or_else(|| Error::Internal(format!("a plan decision reads back as {byte}"))),
    }
}

fn io_error(e: io::Error) -> Error {
    Error::Internal(format!(
        "cannot keep the plan in a temp file ({e}); check the space in the temp directory"
    ))
}

/// The decisions of a plan being made; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    file: Option<File>,
    /// Decisions in the file: those of keys `0..spilled`.
    spilled: usize,
    /// Decisions of keys `spilled..`.
    tail: Vec<u8>,
}

impl Decisions {
    /// Keys decided (or waiting to be).
    pub(crate) fn len(&self) -> usize {
        self.spilled + self.tail.len()
    }

    pub(crate) fn push(&mut self, a: Action) {
        self.tail.push(byte(a));
    }

    /// The decision of key `index`.
    pub(crate) fn get(&self, index: usize) -> Result<Action> {
        if index >= self.spilled {
            return action(self.tail[index - self.spilled]);
        }
        let mut b = [0u8];
        self.file()?
            .read_exact_at(&mut b, index as u64)
            .map_err(io_error)?;
        action(b[0])
    }

    /// Decide key `index` anew; returns what it was.
    pub(crate) fn replace(&mut self, index: usize, a: Action) -> Result<Action> {
        let before = self.get(index)?;
        if index >= self.spilled {
            self.tail[index - self.spilled] = byte(a);
        } else {
            self.file()?
                .write_all_at(&[byte(a)], index as u64)
                .map_err(io_error)?;
        }
        Ok(before)
    }

    /// Keys before `index` are decided for good (bar rare changes, which
    /// [`Decisions::replace`] makes in the file): past a window, they leave
    /// memory.
    pub(crate) fn settled_before(&mut self, index: usize) -> Result<()> {
        let settled = index.saturating_sub(self.spilled).min(self.tail.len());
        if settled < WINDOW {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile().map_err(io_error)?);
        }
        let mut file = self.file()?;
        file.write_all(&self.tail[..settled]).map_err(io_error)?;
        self.tail.drain(..settled);
        self.spilled += settled;
        Ok(())
    }

    fn file(&self) -> Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| Error::Internal("a plan decision before the first was kept".into()))
    }

    /// Read the decisions back, in order.
    pub(crate) fn into_reader(self) -> Result<DecisionReader> {
        let file = match self.file {
            Some(mut file) => {
                use std::io::Seek;
                file.seek(io::SeekFrom::Start(0)).map_err(io_error)?;
                Some(BufReader::with_capacity(64 << 10, file).take(self.spilled as u64))
            }
            None => None,
        };
        Ok(DecisionReader {
            file,
            tail: self.tail.into_iter(),
        })
    }
}

/// The decisions of a plan, read in order by perform.
#[derive(Debug)]
pub(crate) struct DecisionReader {
    file: Option<io::Take<BufReader<File>>>,
    tail: std::vec::IntoIter<u8>,
}

impl DecisionReader {
    /// The next key's decision; `None` past the last key.
    pub(crate) fn next(&mut self) -> Result<Option<Action>> {
        if let Some(file) = self.file.as_mut() {
            let mut b = [0u8];
            match file.read(&mut b).map_err(io_error)? {
                1 => return action(b[0]).map(Some),
                _ => self.file = None,
            }
        }
        self.tail.next().map(action).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_past_the_window_come_back_in_order_with_their_changes() {
        let n = 3 * WINDOW + 123;
        let pick = |i: usize| Action::ALL[i % Action::ALL.len()];
        let mut d = Decisions::default();
        for i in 0..n {
            d.push(pick(i));
            // As a plan settles: all but the last batch's keys.
            if i % 2048 == 0 {
                d.settled_before(i.saturating_sub(4096)).unwrap();
            }
        }
        assert!(d.spilled > 0, "some decisions left memory");
        assert!(d.tail.len() < WINDOW + 8192);
        assert_eq!(d.len(), n);
        // Changes to decisions in the file and in memory.
        assert_eq!(d.replace(5, Action::Void).unwrap(), pick(5));
        assert_eq!(d.replace(n - 1, Action::Unsupported).unwrap(), pick(n - 1));
        assert_eq!(d.get(5).unwrap(), Action::Void);
        let mut r = d.into_reader().unwrap();
        for i in 0..n {
            let expected = match i {
                5 => Action::Void,
                i if i == n - 1 => Action::Unsupported,
                i => pick(i),
            };
            assert_eq!(r.next().unwrap(), Some(expected), "decision {i}");
        }
        assert_eq!(r.next().unwrap(), None);
    }

    #[test]
    fn a_small_plan_stays_in_memory() {
        let mut d = Decisions::default();
        d.push(Action::Create);
        d.settled_before(1).unwrap();
        assert!(d.file.is_none());
        let mut r = d.into_reader().unwrap();
        assert_eq!(r.next().unwrap(), Some(Action::Create));
        assert_eq!(r.next().unwrap(), None);
    }
}
