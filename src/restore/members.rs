//! Member-level writes to keys shared by all users.
//!
//! A user archive holds, for a shared index (a set or sorted set) or a
//! shared hash, only the user's members or fields. Restoring, backing up
//! and rolling back such a key works on those members alone: the backup
//! saves their previous state (absent, or the score or field value), the
//! journal names the values written, and rollback puts back each member
//! only if it still holds what the restore wrote, so other users' members,
//! and changes made since by someone else, are never undone.

use redis::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::connection::Conn;
use crate::error::Result;
use crate::record::{Bytes, Record, Score, Value, format_score, parse_score};

/// The kind of a shared key, which says how its members are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SharedKind {
    Set,
    Zset,
    Hash,
}

/// The members of a shared key a record writes, with the value of each
/// (a score or a field's value; `None` for a set member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedMembers {
    pub key: Bytes,
    pub kind: SharedKind,
    /// True when existing members are kept (a merge): the restore only
    /// adds members that were absent.
    pub only_new: bool,
    pub members: Vec<(Bytes, Option<Bytes>)>,
}

impl SharedMembers {
    /// What `record` writes into its shared key; `None` for a value that
    /// is not a set, sorted set or hash.
    pub fn of(record: &Record, only_new: bool) -> Option<Self> {
        let (kind, members) = match &record.value {
            Value::Set(m) => (
                SharedKind::Set,
                m.iter().map(|m| (m.clone(), None)).collect(),
            ),
            Value::Zset(m) => (
                SharedKind::Zset,
                m.iter()
                    .map(|(m, s)| (m.clone(), Some(Bytes(format_score(s.0).into_bytes()))))
                    .collect(),
            ),
            Value::Hash(f) => (
                SharedKind::Hash,
                f.iter()
                    .map(|(f, v)| (f.clone(), Some(v.clone())))
                    .collect(),
            ),
            _ => return None,
        };
        Some(SharedMembers {
            key: record.key.clone(),
            kind,
            only_new,
            members,
        })
    }

    /// The current state of each member: absent, or present with its
    /// value (empty for a set member).
    pub async fn read(&self, conn: &mut Conn) -> Result<Vec<Option<Bytes>>> {
        let mut pipe = redis::pipe();
        for (m, _) in &self.members {
            let command = match self.kind {
                SharedKind::Set => "SISMEMBER",
                SharedKind::Zset => "ZSCORE",
                SharedKind::Hash => "HGET",
            };
            pipe.cmd(command).arg(&self.key.0[..]).arg(&m.0[..]);
        }
        let replies = conn
            .pipeline(&mut pipe, "reading the members of a shared key")
            .await?;
        let mut states = Vec::with_capacity(replies.len());
        for reply in replies {
            states.push(match reply {
                Reply::Int(1) => Some(Bytes(Vec::new())),
                Reply::BulkString(v) => Some(Bytes(v)),
                Reply::Double(d) => Some(Bytes(format_score(d).into_bytes())),
                Reply::ServerError(e) => {
                    return Err(crate::error::Error::Redis {
                        endpoint: conn.endpoint().display(),
                        action: "reading the members of a shared key".into(),
                        reason: format!(
                            "{}: {e}; nothing was written",
                            crate::record::printable(&self.key.0)
                        ),
                    });
                }
                _ => None,
            });
        }
        Ok(states)
    }

    /// The record a pre-restore backup keeps: the members that exist now,
    /// with their values; `None` when none does.
    pub fn backup_record(&self, states: &[Option<Bytes>]) -> Option<Record> {
        let present = self
            .members
            .iter()
            .zip(states)
            .filter_map(|((m, _), s)| s.as_ref().map(|v| (m.clone(), v.clone())));
        let value = match self.kind {
            SharedKind::Set => Value::Set(present.map(|(m, _)| m).collect()),
            SharedKind::Zset => Value::Zset(
                present
                    .filter_map(|(m, v)| Some((m, Score(parse_score(&v.0)?))))
                    .collect(),
            ),
            SharedKind::Hash => Value::Hash(present.collect()),
        };
        (!value.is_empty()).then(|| Record::new(self.key.clone(), value))
    }

    /// Add the commands that write the members whatever the key holds
    /// (an overwrite: other members stay as they are).
    pub fn add_overwrite(&self, pipe: &mut redis::Pipeline) {
        if self.members.is_empty() {
            return;
        }
        let command = match self.kind {
            SharedKind::Set => "SADD",
            SharedKind::Zset => "ZADD",
            SharedKind::Hash => "HSET",
        };
        let c = pipe.cmd(command).arg(&self.key.0[..]);
        for (m, v) in &self.members {
            match (self.kind, v) {
                (SharedKind::Zset, Some(v)) => c.arg(&v.0[..]).arg(&m.0[..]),
                (SharedKind::Hash, Some(v)) => c.arg(&m.0[..]).arg(&v.0[..]),
                _ => c.arg(&m.0[..]),
            };
        }
    }
}

/// Whether two states of a member are the same (scores as numbers).
pub(crate) fn same(kind: SharedKind, a: Option<&Bytes>, b: Option<&Bytes>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match kind {
            SharedKind::Set => true,
            SharedKind::Zset => {
                parse_score(&a.0).is_some() && parse_score(&a.0) == parse_score(&b.0)
            }
            SharedKind::Hash => a == b,
        },
        _ => false,
    }
}

/// The prior state of each member of `writes`, from the backup's record
/// of the key (absent: none of them existed).
pub(crate) fn prior_states(writes: &SharedMembers, backup: &Value) -> Vec<Option<Bytes>> {
    writes
        .members
        .iter()
        .map(|(m, _)| match backup {
            Value::Set(v) => v.contains(m).then(|| Bytes(Vec::new())),
            Value::Zset(v) => v
                .iter()
                .find(|(x, _)| x == m)
                .map(|(_, s)| Bytes(format_score(s.0).into_bytes())),
            Value::Hash(v) => v.iter().find(|(f, _)| f == m).map(|(_, v)| v.clone()),
            _ => None,
        })
        .collect()
}

/// What rollback does with one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Revert {
    /// The restore did not change it (kept by a merge, or written with the
    /// value it had).
    Untouched,
    /// Removed since (or never written): nothing to do.
    Gone,
    /// Someone changed it after the restore: reported and kept.
    Changed,
    /// Remove it: it was absent before.
    Remove,
    /// Put back this value.
    Put(Bytes),
}

/// Decide one member: `prior` before the restore, `written` by it,
/// `current` now.
pub(crate) fn revert(
    kind: SharedKind,
    only_new: bool,
    prior: Option<&Bytes>,
    written: Option<&Bytes>,
    current: Option<&Bytes>,
) -> Revert {
    let empty = Bytes(Vec::new());
    let written = Some(written.unwrap_or(&empty));
    if prior.is_some() && (only_new || same(kind, prior, written)) {
        return Revert::Untouched;
    }
    if !same(kind, current, written) {
        return if current.is_none() {
            Revert::Gone
        } else {
            Revert::Changed
        };
    }
    match prior {
        None => Revert::Remove,
        Some(v) => Revert::Put(v.clone()),
    }
}

/// Add the command that reverts one member.
pub(crate) fn add_revert(
    pipe: &mut redis::Pipeline,
    kind: SharedKind,
    key: &[u8],
    member: &[u8],
    action: &Revert,
) {
    match (action, kind) {
        (Revert::Remove, SharedKind::Set) => pipe.cmd("SREM").arg(key).arg(member),
        (Revert::Remove, SharedKind::Zset) => pipe.cmd("ZREM").arg(key).arg(member),
        (Revert::Remove, SharedKind::Hash) => pipe.cmd("HDEL").arg(key).arg(member),
        (Revert::Put(v), SharedKind::Zset) => pipe.cmd("ZADD").arg(key).arg(&v.0[..]).arg(member),
        (Revert::Put(v), SharedKind::Hash) => pipe.cmd("HSET").arg(key).arg(member).arg(&v.0[..]),
        _ => return,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn overwrite_reverts_only_what_still_holds_the_written_value() {
        let z = SharedKind::Zset;
        // Was 10, the restore wrote 3, still 3: back to 10.
        assert_eq!(
            revert(z, false, Some(&b("10")), Some(&b("3")), Some(&b("3"))),
            Revert::Put(b("10"))
        );
        // Changed since to 10 by someone else: kept and reported.
        assert_eq!(
            revert(z, false, Some(&b("10")), Some(&b("3")), Some(&b("10"))),
            Revert::Changed
        );
        // Written with the value it had: nothing to undo.
        assert_eq!(
            revert(z, false, Some(&b("3")), Some(&b("3.0")), Some(&b("9"))),
            Revert::Untouched
        );
    }

    #[test]
    fn merge_removes_added_members_and_keeps_existing_ones() {
        let z = SharedKind::Zset;
        assert_eq!(
            revert(z, true, None, Some(&b("3")), Some(&b("3"))),
            Revert::Remove
        );
        assert_eq!(
            revert(z, true, Some(&b("10")), Some(&b("3")), Some(&b("10"))),
            Revert::Untouched
        );
        assert_eq!(
            revert(z, true, None, Some(&b("3")), Some(&b("10"))),
            Revert::Changed
        );
        assert_eq!(revert(z, true, None, Some(&b("3")), None), Revert::Gone);
        let s = SharedKind::Set;
        assert_eq!(revert(s, true, None, None, Some(&b(""))), Revert::Remove);
        assert_eq!(
            revert(s, true, Some(&b("")), None, Some(&b(""))),
            Revert::Untouched
        );
    }

    #[test]
    fn backup_record_holds_the_members_that_existed() {
        let w = SharedMembers {
            key: b("lb"),
            kind: SharedKind::Zset,
            only_new: true,
            members: vec![(b("a"), Some(b("1"))), (b("b"), Some(b("2")))],
        };
        assert!(w.backup_record(&[None, None]).is_none());
        let r = w.backup_record(&[None, Some(b("7"))]).unwrap();
        assert_eq!(r.value, Value::Zset(vec![(b("b"), Score(7.0))]));
        assert_eq!(prior_states(&w, &r.value), vec![None, Some(b("7"))]);
    }
}
