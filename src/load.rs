//! Writing records to Redis: the commands that recreate a key exactly.
//!
//! A key is written as: clear it (DEL, or SET/RESTORE which replace), add
//! each record's chunk (APPEND, HSET, RPUSH, SADD, ZADD, XADD), then, after
//! its last record, the key-wide state: expiry, and for a stream its last
//! id, counters and consumer groups. Clearing first makes the write exact
//! (no leftover fields from an older value) and makes a repeated record of
//! the same key harmless.

use redis::Pipeline;
use serde::{Deserialize, Serialize};

use crate::connection::ServerInfo;
use crate::record::{Expiry, Record, StreamMeta, Value, format_score};

/// Placeholder group used to create an empty stream; destroyed at once.
const TEMP_GROUP: &str = "__archive_restore_tmp__";

/// How keys get their expiry on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TtlMode {
    /// The original expiry time; keys whose time has passed are not written.
    #[default]
    Absolute,
    /// The time to live that was left at export, counted from the restore.
    Relative,
    /// No expiry at all.
    None,
}

impl TtlMode {
    /// Whether a key with this expiry is already expired at `now_ms`.
    pub fn is_expired(self, expiry: Option<Expiry>, now_ms: i64) -> bool {
        matches!((self, expiry), (TtlMode::Absolute, Some(e)) if e.at_ms <= now_ms)
    }
}

/// What the target server supports, for picking command variants.
#[derive(Debug, Clone)]
pub struct TargetFeatures {
    pub stream_v7: bool,
}

impl TargetFeatures {
    pub fn of(server: &ServerInfo) -> Self {
        TargetFeatures {
            stream_v7: server.has_stream_v7(),
        }
    }
}

/// What a key's first record says that is applied after its last record.
#[derive(Debug, Clone, Default)]
pub struct KeyCarry {
    expiry: Option<Expiry>,
    stream_meta: Option<StreamMeta>,
}

/// Add the commands for one record to `pipe`; return how many were added.
/// `carry` holds the key's first-record state until its last record.
pub fn add_record(
    pipe: &mut Pipeline,
    record: &Record,
    ttl: TtlMode,
    features: &TargetFeatures,
    carry: &mut KeyCarry,
) -> usize {
    let key = &record.key.0[..];
    let first = record.part == 0;
    if first {
        *carry = KeyCarry {
            expiry: record.expiry,
            stream_meta: None,
        };
    }
    let mut n = 0;
    match &record.value {
        Value::String(bytes) => {
            cmd(pipe, &mut n, key, if first { "SET" } else { "APPEND" }).arg(&bytes.0[..]);
        }
        Value::Dump(dump) => {
            // RESTORE sets the value and the expiry in one step.
            let c = cmd(pipe, &mut n, key, "RESTORE");
            match (ttl, record.expiry) {
                (TtlMode::Absolute, Some(e)) => {
                    c.arg(e.at_ms)
                        .arg(&dump.payload.0[..])
                        .arg("REPLACE")
                        .arg("ABSTTL");
                }
                (TtlMode::Relative, Some(e)) => {
                    c.arg(e.ttl_ms).arg(&dump.payload.0[..]).arg("REPLACE");
                }
                _ => {
                    c.arg(0).arg(&dump.payload.0[..]).arg("REPLACE");
                }
            }
            return n;
        }
        other => {
            if first {
                cmd(pipe, &mut n, key, "DEL");
            }
            match other {
                Value::Hash(fields) if !fields.is_empty() => {
                    let c = cmd(pipe, &mut n, key, "HSET");
                    for (f, v) in fields {
                        c.arg(&f.0[..]).arg(&v.0[..]);
                    }
                }
                Value::List(items) if !items.is_empty() => {
                    let c = cmd(pipe, &mut n, key, "RPUSH");
                    for item in items {
                        c.arg(&item.0[..]);
                    }
                }
                Value::Set(members) if !members.is_empty() => {
                    let c = cmd(pipe, &mut n, key, "SADD");
                    for m in members {
                        c.arg(&m.0[..]);
                    }
                }
                Value::Zset(members) if !members.is_empty() => {
                    let c = cmd(pipe, &mut n, key, "ZADD");
                    for (m, score) in members {
                        c.arg(format_score(score.0)).arg(&m.0[..]);
                    }
                }
                Value::Stream(chunk) => {
                    if first {
                        // Creates the stream even when it has no entries.
                        pipe.cmd("XGROUP")
                            .arg("CREATE")
                            .arg(key)
                            .arg(TEMP_GROUP)
                            .arg("$")
                            .arg("MKSTREAM");
                        pipe.cmd("XGROUP").arg("DESTROY").arg(key).arg(TEMP_GROUP);
                        n += 2;
                        carry.stream_meta = chunk.meta.clone();
                    }
                    for entry in &chunk.entries {
                        let c = cmd(pipe, &mut n, key, "XADD");
                        c.arg(entry.id.to_string());
                        for (f, v) in &entry.fields {
                            c.arg(&f.0[..]).arg(&v.0[..]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if !record.more {
        n += finish_key(pipe, key, ttl, features, std::mem::take(carry));
    }
    n
}

/// Start a command on `key` and count it.
fn cmd<'p>(pipe: &'p mut Pipeline, n: &mut usize, key: &[u8], name: &str) -> &'p mut Pipeline {
    *n += 1;
    pipe.cmd(name).arg(key)
}

/// Key-wide state, after the key's last record.
fn finish_key(
    pipe: &mut Pipeline,
    key: &[u8],
    ttl: TtlMode,
    features: &TargetFeatures,
    carry: KeyCarry,
) -> usize {
    let mut n = 0;
    if let Some(meta) = carry.stream_meta {
        let c = pipe.cmd("XSETID").arg(key).arg(meta.last_id.to_string());
        if features.stream_v7
            && let Some(added) = meta.entries_added
        {
            c.arg("ENTRIESADDED").arg(added);
            c.arg("MAXDELETEDID")
                .arg(meta.max_deleted_id.unwrap_or_default().to_string());
        }
        n += 1;
        for group in &meta.groups {
            let c = pipe
                .cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(&group.name.0[..])
                .arg(group.last_delivered_id.to_string());
            if features.stream_v7
                && let Some(read) = group.entries_read
            {
                c.arg("ENTRIESREAD").arg(read);
            }
            n += 1;
        }
    }
    match (ttl, carry.expiry) {
        (TtlMode::Absolute, Some(e)) => {
            pipe.cmd("PEXPIREAT").arg(key).arg(e.at_ms);
            n += 1;
        }
        (TtlMode::Relative, Some(e)) => {
            pipe.cmd("PEXPIRE").arg(key).arg(e.ttl_ms);
            n += 1;
        }
        _ => {}
    }
    n
}
