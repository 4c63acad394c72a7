//! Writing records to Redis: the commands that recreate a key exactly.
//!
//! A key is written as: clear it (DEL, or SET/RESTORE which replace), add
//! each record's chunk (APPEND, HSET, RPUSH, SADD, ZADD, XADD), then, after
//! its last record, the key-wide state: expiry, and for a stream its last
//! id, counters and consumer groups with their consumers (a stream with
//! pending entries gets these once its entries are in, before the first
//! XCLAIM: see `pel`). Clearing first makes the write exact
//! (no leftover fields from an older value) and makes a repeated record of
//! the same key harmless.

use redis::Pipeline;
use serde::{Deserialize, Serialize};

use crate::connection::ServerInfo;
use crate::record::{
    Bytes, ConsumerGroup, Expiry, FieldExpiry, Record, StreamId, StreamMeta, Value, format_score,
};

/// Placeholder group used to create an empty stream; destroyed at once.
const TEMP_GROUP: &str = "__archive_restore_tmp__";

/// How keys get their expiry on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
    pub(crate) fn is_expired(self, expiry: Option<Expiry>, now_ms: i64) -> bool {
        matches!((self, expiry), (TtlMode::Absolute, Some(e)) if e.at_ms <= now_ms)
    }
}

/// What the target server supports, for picking command variants.
#[derive(Debug, Clone)]
pub(crate) struct TargetFeatures {
    pub(crate) stream_v7: bool,
    /// Hash fields can have their own expiry. Without it, restore refuses
    /// an archive that has some, unless told to drop them.
    pub(crate) field_expiry: bool,
    /// The RDB version of `RESTORE` payloads this target reads, when small
    /// keys are written with `RESTORE` (see [`add_restore`]); `None` when
    /// the user may not run it.
    pub(crate) restore_rdb: Option<u16>,
}

impl TargetFeatures {
    pub(crate) fn of(server: &ServerInfo) -> Self {
        let stream_v7 = server.has_stream_v7();
        TargetFeatures {
            stream_v7,
            field_expiry: server.has_field_expiry(),
            restore_rdb: Some(if stream_v7 {
                crate::rdb::STREAM_COUNTERS_RDB
            } else {
                9
            }),
        }
    }

    /// The `RESTORE` payload that writes `record` in one command, when it
    /// can be: a whole key (one record) without hash field expiry, of a
    /// type [`crate::rdb::restore_payload`] encodes.
    /// `held` is what the record holds in memory ([`Record::held_bytes`]),
    /// more than its payload takes.
    pub(crate) fn restore_payload(
        &self,
        record: &Record,
        ttl: TtlMode,
        held: usize,
    ) -> Option<Vec<u8>> {
        let rdb = self.restore_rdb?;
        if record.part != 0 || record.more || record.void || !record.field_expiry.is_empty() {
            return None;
        }
        // RESTORE reads a TTL of 0 as "no expiry"; PEXPIRE 0 deletes.
        if ttl == TtlMode::Relative && record.expiry.is_some_and(|e| e.ttl_ms <= 0) {
            return None;
        }
        crate::rdb::restore_payload_within(&record.value, rdb, held)
    }
}

/// Write a whole key with one `RESTORE` of `payload` (from
/// [`TargetFeatures::restore_payload`]), its expiry included. Without
/// `replace` the server refuses (`BUSYKEY`) a key that exists, so a key
/// created by someone since it was seen absent is left alone.
pub(crate) fn add_restore(
    pipe: &mut Pipeline,
    record: &Record,
    payload: &[u8],
    ttl: TtlMode,
    replace: bool,
    roles: &mut Vec<Role>,
) {
    // Sized once: this is the command nearly every key of a restore is
    // written with, and growing its buffers was a good part of the cost.
    let mut c = redis::Cmd::with_capacity(6, record.key.0.len() + payload.len() + 40);
    c.arg("RESTORE").arg(&record.key.0[..]);
    let absolute = match (ttl, record.expiry) {
        (TtlMode::Absolute, Some(e)) => {
            c.arg(e.at_ms);
            true
        }
        (TtlMode::Relative, Some(e)) => {
            c.arg(e.ttl_ms);
            false
        }
        _ => {
            c.arg(0);
            false
        }
    };
    c.arg(payload);
    if replace {
        c.arg("REPLACE");
    }
    if absolute {
        c.arg("ABSTTL");
    }
    pipe.add_command(c);
    roles.push(Role::Create);
}

/// What a key's first record says that is applied after its last record.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyCarry {
    expiry: Option<Expiry>,
    stream_meta: Option<StreamMeta>,
    /// Entries written so far into a stream being created, and the last
    /// one's id: what the stream's metadata is without XSETID.
    stream_written: u64,
    stream_last: Option<StreamId>,
    /// Merge: groups whose pending entries follow, marked until the key's
    /// last record (see `pel`).
    marked_groups: Vec<Bytes>,
}

/// What a command's reply means for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A write: an error reply fails the key.
    Write,
    /// `RESTORE` of a key seen absent: `BUSYKEY` means someone created it
    /// since, and it is left alone.
    Create,
    /// A merge write whose integer reply is the number of members it added.
    Added,
    /// XADD in a merge: an id the target stream has already passed is left
    /// out (streams only grow at the end), not an error.
    StreamAdd,
    /// XGROUP CREATE in a merge: a group the target already has is kept.
    Group,
    /// XCLAIM of this many pending entries: those it does not claim (their
    /// message is not in the stream) are counted, not an error.
    Claim(usize),
}

/// Adds members the target lacks to a list, leaving what it has alone.
const MERGE_LIST_SCRIPT: &str = "local added = 0 \
for i = 1, #ARGV do \
  if not redis.call('LPOS', KEYS[1], ARGV[i]) then \
    redis.call('RPUSH', KEYS[1], ARGV[i]) \
    added = added + 1 \
  end \
end \
return added";

/// Sets a field the hash lacks, with its expiry; leaves one it has alone.
const MERGE_EXPIRING_FIELD_SCRIPT: &str = "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then \
  redis.call(ARGV[3], KEYS[1], ARGV[4], 'FIELDS', 1, ARGV[1]) \
  return 1 \
end \
return 0";

/// The expiry of a hash chunk's fields, one command per distinct time (a
/// field whose time has passed is removed by the server at once, as an
/// expired key is not written).
fn add_field_expiry(
    pipe: &mut Pipeline,
    roles: &mut Vec<Role>,
    key: &[u8],
    expiry: &[FieldExpiry],
    ttl: TtlMode,
) {
    let (command, when): (&str, fn(&FieldExpiry) -> i64) = match ttl {
        TtlMode::Absolute => ("HPEXPIREAT", |e| e.at_ms),
        TtlMode::Relative => ("HPEXPIRE", |e| e.ttl_ms),
        TtlMode::None => return,
    };
    let mut by_time: std::collections::BTreeMap<i64, Vec<&[u8]>> = Default::default();
    for e in expiry {
        by_time.entry(when(e)).or_default().push(&e.field.0);
    }
    for (at, fields) in by_time {
        let c = cmd(pipe, roles, key, command)
            .arg(at)
            .arg("FIELDS")
            .arg(fields.len());
        for f in fields {
            c.arg(f);
        }
    }
}

/// Add the commands that write one record to `pipe`, one role per command.
/// `carry` holds the key's first-record state until its last record.
/// `absent` says the key was just seen not to exist, so there is nothing to
/// clear first (a DEL per key is a fifth of a restore's server time).
pub(crate) fn add_record(
    pipe: &mut Pipeline,
    record: &Record,
    ttl: TtlMode,
    features: &TargetFeatures,
    carry: &mut KeyCarry,
    roles: &mut Vec<Role>,
    absent: bool,
) {
    let key = &record.key.0[..];
    let first = record.part == 0;
    if first {
        *carry = KeyCarry {
            expiry: record.expiry,
            ..KeyCarry::default()
        };
    }
    let n = roles;
    match &record.value {
        Value::String(bytes) => {
            cmd(pipe, n, key, if first { "SET" } else { "APPEND" }).arg(&bytes.0[..]);
        }
        Value::Absent(_) => {
            // The key did not exist: make it so again.
            cmd(pipe, n, key, "DEL");
            return;
        }
        Value::Dump(dump) => {
            // RESTORE sets the value and the expiry in one step.
            let c = cmd(pipe, n, key, "RESTORE");
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
            return;
        }
        other => {
            if first && !absent {
                cmd(pipe, n, key, "DEL");
            }
            match other {
                Value::Hash(fields) if !fields.is_empty() => {
                    let c = cmd(pipe, n, key, "HSET");
                    for (f, v) in fields {
                        c.arg(&f.0[..]).arg(&v.0[..]);
                    }
                    if features.field_expiry {
                        add_field_expiry(pipe, n, key, &record.field_expiry, ttl);
                    }
                }
                Value::List(items) if !items.is_empty() => {
                    let c = cmd(pipe, n, key, "RPUSH");
                    for item in items {
                        c.arg(&item.0[..]);
                    }
                }
                Value::Set(members) if !members.is_empty() => {
                    let c = cmd(pipe, n, key, "SADD");
                    for m in members {
                        c.arg(&m.0[..]);
                    }
                }
                Value::Zset(members) if !members.is_empty() => {
                    let c = cmd(pipe, n, key, "ZADD");
                    for (m, score) in members {
                        c.arg(format_score(score.0)).arg(&m.0[..]);
                    }
                }
                Value::Stream(chunk) => {
                    if first && chunk.entries.is_empty() {
                        // Creates the stream even when it has no entries
                        // (otherwise its first XADD does).
                        pipe.cmd("XGROUP")
                            .arg("CREATE")
                            .arg(key)
                            .arg(TEMP_GROUP)
                            .arg("$")
                            .arg("MKSTREAM");
                        pipe.cmd("XGROUP").arg("DESTROY").arg(key).arg(TEMP_GROUP);
                        n.extend([Role::Write, Role::Write]);
                    }
                    if first {
                        carry.stream_meta = chunk.meta.clone();
                    }
                    for entry in &chunk.entries {
                        let c = cmd(pipe, n, key, "XADD");
                        c.arg(entry.id.to_string());
                        for (f, v) in &entry.fields {
                            c.arg(&f.0[..]).arg(&v.0[..]);
                        }
                    }
                    carry.stream_written += chunk.entries.len() as u64;
                    if let Some(last) = chunk.entries.last() {
                        carry.stream_last = Some(last.id);
                    }
                    if !chunk.pending.is_empty() {
                        // The entries are all in: the groups come first.
                        if let Some(meta) = carry.stream_meta.take() {
                            let set_id = !carry.left_by_xadd(&meta);
                            add_stream_meta(pipe, key, &meta, set_id, features, n);
                        }
                        for run in &chunk.pending {
                            crate::pel::add_claims(pipe, key, run, n);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if !record.more {
        finish_key(pipe, key, ttl, features, std::mem::take(carry), n);
    }
}

/// Add the commands that merge one record into a key the target has: add
/// what it lacks, change nothing it has (values, scores, expiry, stream
/// ids). Strings and DUMP values are never merged (the plan skips them).
pub(crate) fn add_merge(
    pipe: &mut Pipeline,
    record: &Record,
    ttl: TtlMode,
    features: &TargetFeatures,
    carry: &mut KeyCarry,
    roles: &mut Vec<Role>,
) {
    let key = &record.key.0[..];
    if record.part == 0 {
        *carry = KeyCarry::default();
    }
    match &record.value {
        Value::Hash(fields) => {
            let expiring: std::collections::HashMap<&[u8], &FieldExpiry> =
                if features.field_expiry && ttl != TtlMode::None {
                    record
                        .field_expiry
                        .iter()
                        .map(|e| (&e.field.0[..], e))
                        .collect()
                } else {
                    Default::default()
                };
            for (f, v) in fields {
                match expiring.get(&f.0[..]) {
                    // Only a field the merge adds gets the archive's expiry.
                    Some(e) => {
                        let (command, when) = match ttl {
                            TtlMode::Relative => ("HPEXPIRE", e.ttl_ms),
                            _ => ("HPEXPIREAT", e.at_ms),
                        };
                        pipe.cmd("EVAL")
                            .arg(MERGE_EXPIRING_FIELD_SCRIPT)
                            .arg(1)
                            .arg(key)
                            .arg(&f.0[..])
                            .arg(&v.0[..])
                            .arg(command)
                            .arg(when);
                    }
                    None => {
                        pipe.cmd("HSETNX").arg(key).arg(&f.0[..]).arg(&v.0[..]);
                    }
                }
                roles.push(Role::Added);
            }
        }
        Value::Set(members) if !members.is_empty() => {
            let c = pipe.cmd("SADD").arg(key);
            for m in members {
                c.arg(&m.0[..]);
            }
            roles.push(Role::Added);
        }
        Value::Zset(members) if !members.is_empty() => {
            let c = pipe.cmd("ZADD").arg(key).arg("NX");
            for (m, score) in members {
                c.arg(format_score(score.0)).arg(&m.0[..]);
            }
            roles.push(Role::Added);
        }
        Value::List(items) if !items.is_empty() => {
            let c = pipe.cmd("EVAL").arg(MERGE_LIST_SCRIPT).arg(1).arg(key);
            for item in items {
                c.arg(&item.0[..]);
            }
            roles.push(Role::Added);
        }
        Value::Stream(chunk) => {
            if record.part == 0 {
                carry.stream_meta = chunk.meta.clone();
            }
            for entry in &chunk.entries {
                let c = pipe.cmd("XADD").arg(key).arg(entry.id.to_string());
                for (f, v) in &entry.fields {
                    c.arg(&f.0[..]).arg(&v.0[..]);
                }
                roles.push(Role::StreamAdd);
            }
            if !chunk.pending.is_empty() {
                // Groups the target lacks are created (marked) before their
                // pending entries are claimed.
                if let Some(meta) = carry.stream_meta.take() {
                    for group in &meta.groups {
                        crate::pel::add_merge_group(pipe, key, group, features, true, roles);
                        carry.marked_groups.push(group.name.clone());
                    }
                }
                for run in &chunk.pending {
                    crate::pel::add_merge_claims(pipe, key, run, roles);
                }
            }
        }
        _ => {}
    }
    if !record.more
        && let Some(meta) = carry.stream_meta.take()
    {
        for group in &meta.groups {
            if group.consumers.is_empty() {
                add_group(pipe, key, group, features);
                roles.push(Role::Group);
            } else {
                crate::pel::add_merge_group(pipe, key, group, features, false, roles);
            }
        }
    }
    if !record.more && !carry.marked_groups.is_empty() {
        crate::pel::add_merge_unmark(pipe, key, &carry.marked_groups, roles);
    }
}

fn add_group(pipe: &mut Pipeline, key: &[u8], group: &ConsumerGroup, features: &TargetFeatures) {
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
}

/// Start a write command on `key`.
fn cmd<'p>(
    pipe: &'p mut Pipeline,
    roles: &mut Vec<Role>,
    key: &[u8],
    name: &str,
) -> &'p mut Pipeline {
    roles.push(Role::Write);
    pipe.cmd(name).arg(key)
}

/// Key-wide state, after the key's last record.
fn finish_key(
    pipe: &mut Pipeline,
    key: &[u8],
    ttl: TtlMode,
    features: &TargetFeatures,
    carry: KeyCarry,
    roles: &mut Vec<Role>,
) {
    if let Some(meta) = &carry.stream_meta {
        let set_id = !carry.left_by_xadd(meta);
        add_stream_meta(pipe, key, meta, set_id, features, roles);
    }
    match (ttl, carry.expiry) {
        (TtlMode::Absolute, Some(e)) => {
            pipe.cmd("PEXPIREAT").arg(key).arg(e.at_ms);
            roles.push(Role::Write);
        }
        (TtlMode::Relative, Some(e)) => {
            pipe.cmd("PEXPIRE").arg(key).arg(e.ttl_ms);
            roles.push(Role::Write);
        }
        _ => {}
    }
}

impl KeyCarry {
    /// Whether the stream just created by XADDs already has `meta`'s last
    /// id and counters, as a stream whose entries were never deleted or
    /// trimmed does: then XSETID would change nothing (and it is a tenth of
    /// a stream's restore).
    fn left_by_xadd(&self, meta: &StreamMeta) -> bool {
        self.stream_last == Some(meta.last_id)
            && meta.entries_added.is_none_or(|n| n == self.stream_written)
            && meta
                .max_deleted_id
                .is_none_or(|id| id == StreamId::default())
    }
}

/// A stream's last id, counters (unless `set_id` is false: XADD left them
/// right), groups and consumers, once its entries are all in (pending
/// entries, if any, are claimed after this).
fn add_stream_meta(
    pipe: &mut Pipeline,
    key: &[u8],
    meta: &StreamMeta,
    set_id: bool,
    features: &TargetFeatures,
    roles: &mut Vec<Role>,
) {
    if set_id {
        let c = pipe.cmd("XSETID").arg(key).arg(meta.last_id.to_string());
        if features.stream_v7
            && let Some(added) = meta.entries_added
        {
            c.arg("ENTRIESADDED").arg(added);
            c.arg("MAXDELETEDID")
                .arg(meta.max_deleted_id.unwrap_or_default().to_string());
        }
        roles.push(Role::Write);
    }
    for group in &meta.groups {
        add_group(pipe, key, group, features);
        roles.push(Role::Write);
        crate::pel::add_consumers(pipe, key, group, roles);
    }
}
