//! The restore journal: which keys a restore touched, and what it left.
//!
//! Beside each pre-restore backup `B`, a restore writes `B.journal`, JSON
//! Lines, fsynced line by line:
//!
//! - `{"touch": [key, ...]}` before a batch writes, naming the keys it is
//!   about to change, in order;
//! - `{"after": [[key, fingerprint], ...]}` once those keys are written:
//!   the SHA-1 of each key's DUMP as the restore left it (`null`: absent),
//!   computed by the server so no value crosses the wire; "unknown" for a
//!   key the restore created (rollback deletes it whatever it holds, so
//!   its fingerprint would cost the server a DUMP for nothing) or too big to
//!   fingerprint; "left-alone" for one it found created by someone else
//!   and did not write. A batch's `touch` can come before the previous
//!   batch's `after`. These lines are
//!   not fsynced on their own: the next `touch` (or the end) makes them
//!   durable, and one lost in a crash only means rollback puts that batch
//!   back without asking whether it changed since.
//!
//! - `{"members": {key, kind, only_new, members}}` just before the `touch`
//!   that names a key shared by all users (a shared index or hash of a
//!   user archive): the members the restore writes and their values. The
//!   rollback of such a key works member by member (`restore/members.rs`);
//!   a journal without these lines (an older one) rolls back whole keys.
//!
//! Touched keys come in archive order, the order of the backup, so rollback
//! reads both in lockstep and puts back exactly the keys that were touched,
//! even when the restore was killed half way; the fingerprint tells it
//! whether someone changed a key after the restore.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use redis::Value as Reply;

use crate::connection::Conn;
use crate::error::{Error, Result};
use crate::record::{Bytes, BytesRef};
use crate::restore::members::SharedMembers;

pub(crate) use crate::folder::catalog::journal_path;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Touch(Vec<Bytes>),
    Members(SharedMembers),
    After(Vec<(Bytes, Option<String>)>),
}

/// [`Line`]'s `touch` and `after` as they are written: borrowed, so that
/// naming a million keys copies none of them.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum LineOut<'a> {
    Touch(Vec<BytesRef<'a>>),
    After(Vec<(BytesRef<'a>, Option<&'a str>)>),
}

/// Written by restore.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// The line being written, kept for the next: a restore writes two
    /// lines per batch, each naming up to a batch of keys.
    line: Vec<u8>,
}

impl Journal {
    pub fn create(path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::output(&path, e))?;
        Ok(Journal {
            file,
            path,
            line: Vec::new(),
        })
    }

    fn write(&mut self, line: &impl Serialize, sync: bool) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line).map_err(|e| Error::Internal(e.to_string()))?;
        self.line.push(b'\n');
        self.file
            .write_all(&self.line)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) })
            .map_err(|e| Error::output(&self.path, e))
    }

    /// Make everything written so far durable.
    pub fn finish(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::output(&self.path, e))
    }

    /// Record, durably, the keys a batch is about to change.
    pub fn touch(&mut self, keys: &[&[u8]]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.write(
            &LineOut::Touch(keys.iter().map(|k| BytesRef(k)).collect()),
            true,
        )
    }

    /// Record the members a batch writes into shared keys; durable with
    /// the `touch` that follows.
    pub fn members(&mut self, writes: &[SharedMembers]) -> Result<()> {
        for w in writes {
            self.write(&Line::Members(w.clone()), false)?;
        }
        Ok(())
    }

    /// Record what the restore left in finished keys.
    pub fn after<K: AsRef<[u8]>, F: AsRef<str>>(&mut self, keys: &[(K, Option<F>)]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let line = keys
            .iter()
            .map(|(k, f)| (BytesRef(k.as_ref()), f.as_ref().map(AsRef::as_ref)))
            .collect();
        self.write(&LineOut::After(line), false)
    }
}

/// A touched key as rollback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub key: Vec<u8>,
    /// What the restore left, when its batch completed; `Some(None)` means
    /// it left the key absent; `None` means the restore stopped before.
    pub after: Option<Option<String>>,
    /// For a shared key: the members the restore wrote.
    pub members: Option<SharedMembers>,
}

/// Read by rollback, in step with the backup. Holds at most about two
/// batches of keys.
#[derive(Debug)]
pub struct JournalReader {
    lines: std::io::Lines<BufReader<File>>,
    path: PathBuf,
    queue: VecDeque<Touched>,
    /// Entries of `queue` that have their `after` already.
    resolved: usize,
    done: bool,
    /// Members lines read ahead of their key's turn.
    members: Vec<SharedMembers>,
}

impl JournalReader {
    /// Open the journal; a missing journal means the restore never wrote.
    pub fn open(path: &Path) -> Result<Option<Self>> {
        match File::open(path) {
            Ok(f) => Ok(Some(JournalReader {
                lines: BufReader::new(f).lines(),
                path: path.to_path_buf(),
                queue: VecDeque::new(),
                resolved: 0,
                done: false,
                members: Vec::new(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::input(path, e)),
        }
    }

    fn read_line(&mut self) -> Result<()> {
        let Some(line) = self.lines.next() else {
            self.done = true;
            return Ok(());
        };
        let line = line.map_err(|e| Error::input(&self.path, e))?;
        // A line cut off by a crash is the end of what was recorded.
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
            self.done = true;
            return Ok(());
        };
        match parsed {
            Line::Touch(keys) => self.queue.extend(keys.into_iter().map(|k| Touched {
                key: k.0,
                after: None,
                members: None,
            })),
            Line::Members(m) => self.members.push(m),
            Line::After(entries) => {
                for (key, fingerprint) in entries {
                    if let Some(t) = self.queue.get_mut(self.resolved)
                        && t.key == key.0
                    {
                        t.after = Some(fingerprint);
                        self.resolved += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next touched key, if it is `key`; otherwise `key` was not touched.
    pub fn take_if(&mut self, key: &[u8]) -> Result<Option<Touched>> {
        // Read until the front key's outcome is known or the journal ends.
        while !self.done && (self.queue.is_empty() || self.resolved == 0) {
            self.read_line()?;
        }
        if self.queue.front().is_some_and(|t| t.key == key) {
            self.resolved = self.resolved.saturating_sub(1);
            let mut touched = self.queue.pop_front();
            if let Some(t) = touched.as_mut()
                && let Some(i) = self.members.iter().position(|m| m.key.0 == key)
            {
                t.members = Some(self.members.swap_remove(i));
            }
            return Ok(touched);
        }
        Ok(None)
    }
}

/// SHA-1 of each key's DUMP (`None`: the key does not exist). A server
/// that refuses DUMP gives "unknown".
pub(crate) async fn fingerprints(conn: &mut Conn, keys: &[&[u8]]) -> Result<Vec<Option<String>>> {
    let mut pipe = redis::pipe();
    add_fingerprints(&mut pipe, keys);
    let replies = conn.pipeline(&mut pipe, "fingerprinting keys").await?;
    Ok(read_fingerprints(replies))
}

/// Add one `DUMP` per key; the client hashes the payloads. Each key is at
/// most FINGERPRINT_MAX_BYTES, so no reply is big. Hashing here rather than
/// in a server script (`redis.sha1hex`, the same digest) halves the
/// server's cost of a fingerprint, and the server is what a restore waits
/// for; the digests are equal, so journals stay comparable either way.
pub(crate) fn add_fingerprints(pipe: &mut redis::Pipeline, keys: &[&[u8]]) {
    for key in keys {
        pipe.cmd("DUMP").arg(*key);
    }
}

/// The fingerprints in the replies to [`add_fingerprints`]' commands, in
/// the order of the keys.
pub(crate) fn read_fingerprints(replies: Vec<Reply>) -> Vec<Option<String>> {
    replies
        .into_iter()
        .map(|reply| match reply {
            Reply::Nil => None,
            Reply::BulkString(payload) => Some(sha1_hex(&payload)),
            // DUMP refused (an ACL, a managed service): not known.
            _ => Some(UNKNOWN_FINGERPRINT.to_string()),
        })
        .collect()
}

/// Lowercase hex SHA-1, as Lua's `redis.sha1hex` gives it.
fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    // By table, not by `format!` byte by byte: an overwrite fingerprints
    // every key it replaces, and formatting cost more than the SHA-1.
    hex::encode(sha1::Sha1::digest(data))
}

/// Journaled when a key is not fingerprinted (created by the restore, too
/// big, or DUMP refused).
pub const UNKNOWN_FINGERPRINT: &str = "unknown";

/// The restore named the key but wrote nothing: someone created it after
/// the plan. Rollback leaves it alone.
pub const LEFT_ALONE_FINGERPRINT: &str = "left-alone";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_lowercase_hex_sha1_as_lua_gives_them() {
        // Journals written before keep their fingerprints: the text must
        // not change (FIPS 180 test vector; nil is an absent key).
        let replies = vec![Reply::BulkString(b"abc".to_vec()), Reply::Nil];
        assert_eq!(
            read_fingerprints(replies),
            vec![
                Some("a9993e364706816aba3e25717850c26c9cd0d89d".to_string()),
                None
            ]
        );
    }

    #[test]
    fn lockstep_over_touches_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.journal");
        let mut j = Journal::create(path.clone()).unwrap();
        j.touch(&[b"a", b"b"]).unwrap();
        j.after(&[(&b"a"[..], Some("f1")), (&b"b"[..], None)])
            .unwrap();
        j.touch(&[b"d"]).unwrap();
        // The restore died here: d has no outcome.
        drop(j);
        let mut r = JournalReader::open(&path).unwrap().unwrap();
        let a = r.take_if(b"a").unwrap().unwrap();
        assert_eq!(a.after, Some(Some("f1".into())));
        let b = r.take_if(b"b").unwrap().unwrap();
        assert_eq!(b.after, Some(None));
        assert_eq!(r.take_if(b"c").unwrap(), None, "c was not touched");
        let d = r.take_if(b"d").unwrap().unwrap();
        assert_eq!(d.after, None, "touched, outcome unknown");
        assert_eq!(r.take_if(b"e").unwrap(), None);
    }

    #[test]
    fn a_shared_keys_members_come_with_its_touch() {
        use crate::restore::members::SharedKind;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.journal");
        let mut j = Journal::create(path.clone()).unwrap();
        let writes = SharedMembers {
            key: Bytes(b"lb".to_vec()),
            kind: SharedKind::Zset,
            only_new: false,
            members: vec![(Bytes(b"user:42".to_vec()), Some(Bytes(b"3".to_vec())))],
        };
        j.members(std::slice::from_ref(&writes)).unwrap();
        j.touch(&[b"a", b"lb"]).unwrap();
        j.after(&[(b"a".to_vec(), None::<String>), (b"lb".to_vec(), None)])
            .unwrap();
        drop(j);
        let mut r = JournalReader::open(&path).unwrap().unwrap();
        assert_eq!(r.take_if(b"a").unwrap().unwrap().members, None);
        assert_eq!(r.take_if(b"lb").unwrap().unwrap().members, Some(writes));
    }

    #[test]
    fn missing_journal_means_nothing_was_touched() {
        assert!(
            JournalReader::open(Path::new("/nonexistent/x.journal"))
                .unwrap()
                .is_none()
        );
    }
}
