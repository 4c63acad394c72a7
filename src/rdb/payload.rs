//! Records -> `DUMP` payloads, for writing a key with one `RESTORE`.
//!
//! A restore that writes a small key with `RESTORE` instead of its commands
//! (`DEL`, `HSET`, `PEXPIREAT`, ...) gets three things: one command per key
//! with its expiry; a creation that fails (`BUSYKEY`) instead of adding to a
//! key someone made in the meantime, so no `EXISTS` has to be asked first;
//! and for streams a server that takes the entries as they are instead of
//! running one `XADD` per entry (a stream's `RESTORE` costs the server a
//! fifth of its `XADD`s).
//!
//! Values are written in the encodings every server reads and converts
//! itself, as it would the commands' result: strings, hashes, lists, sets
//! and sorted sets in their plain forms (the server picks listpack,
//! intset or hashtable by its own limits), streams as listpack nodes of at
//! most 100 entries (the servers' default node size). A stream with
//! consumer groups, a hash with field expiry, a key split over several
//! records and a value that is already a payload get `None`: they keep
//! their commands.

use super::crc64;
use super::listpack::build::{self, E};
use super::types;
use crate::record::{Bytes, StreamChunk, StreamId, Value};

/// The RDB version a server must read for streams with their counters
/// (`entries-added`, `max-deleted-entry-id`): Redis 7.0 and later.
pub const STREAM_COUNTERS_RDB: u16 = 10;

/// Entries per stream node, as `stream-node-max-entries` defaults to.
const NODE_ENTRIES: usize = 100;

/// The payload that `RESTORE` turns into `value`, for a server that reads
/// RDB `rdb_version` (9 or later), or `None` when the value keeps its
/// commands.
pub fn restore_payload(value: &Value, rdb_version: u16) -> Option<Vec<u8>> {
    restore_payload_within(value, rdb_version, value.approx_bytes())
}

/// [`restore_payload`] for a value already known to take about `bytes`
/// (an upper bound saves growing the payload; the caller has measured the
/// value once already, and measuring walks every element).
pub(crate) fn restore_payload_within(
    value: &Value,
    rdb_version: u16,
    bytes: usize,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes + 32);
    match value {
        Value::String(s) => {
            out.push(types::STRING);
            string(&mut out, &s.0);
        }
        Value::Hash(fields) if !fields.is_empty() => {
            out.push(types::HASH);
            len(&mut out, fields.len() as u64);
            for (f, v) in fields {
                string(&mut out, &f.0);
                string(&mut out, &v.0);
            }
        }
        Value::List(items) if !items.is_empty() => {
            out.push(types::LIST);
            strings(&mut out, items);
        }
        Value::Set(members) if !members.is_empty() => {
            out.push(types::SET);
            strings(&mut out, members);
        }
        Value::Zset(members) if !members.is_empty() => {
            out.push(types::ZSET_2);
            len(&mut out, members.len() as u64);
            for (m, score) in members {
                string(&mut out, &m.0);
                out.extend_from_slice(&score.0.to_le_bytes());
            }
        }
        Value::Stream(chunk) if rdb_version >= STREAM_COUNTERS_RDB => {
            stream(&mut out, chunk)?;
        }
        _ => return None,
    }
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// An RDB length: 6 bits, 14 bits, or a 32- or 64-bit big-endian number.
pub(super) fn len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A string as it is, after its length (no integer or LZF encoding).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn strings(out: &mut Vec<u8>, items: &[Bytes]) {
    len(out, items.len() as u64);
    for item in items {
        string(out, &item.0);
    }
}

fn id(out: &mut Vec<u8>, id: StreamId) {
    len(out, id.ms);
    len(out, id.seq);
}

/// A stream without consumer groups, whole in one record, as
/// `RDB_TYPE_STREAM_LISTPACKS_2`: its nodes, then its length, last id,
/// first id, max deleted id, entries added and (no) groups.
fn stream(out: &mut Vec<u8>, chunk: &StreamChunk) -> Option<()> {
    let meta = chunk.meta.as_ref()?;
    if !meta.groups.is_empty() || !chunk.pending.is_empty() {
        return None;
    }
    out.push(types::STREAM_LISTPACKS_2);
    let nodes = chunk.entries.chunks(NODE_ENTRIES);
    len(out, nodes.len() as u64);
    for node in nodes {
        let master = node[0].id;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&master.ms.to_be_bytes());
        key[8..].copy_from_slice(&master.seq.to_be_bytes());
        string(out, &key);
        string(out, &stream_node(master, node));
    }
    len(out, chunk.entries.len() as u64);
    id(out, meta.last_id);
    id(
        out,
        chunk
            .entries
            .first()
            .map_or_else(StreamId::default, |e| e.id),
    );
    id(out, meta.max_deleted_id.unwrap_or_default());
    len(
        out,
        meta.entries_added.unwrap_or(chunk.entries.len() as u64),
    );
    len(out, 0);
    Some(())
}

/// One node's listpack: the master entry (live count, deleted count, no
/// master fields, 0), then each entry with its fields written out (flags
/// 0), its id as a difference from the node's, and its element count.
fn stream_node(master: StreamId, entries: &[crate::record::StreamEntry]) -> Vec<u8> {
    let mut lp = build::start();
    let mut count = 0;
    let mut put = |lp: &mut Vec<u8>, e: E| {
        build::entry(lp, &e);
        count += 1;
    };
    put(&mut lp, E::I(entries.len() as i64));
    put(&mut lp, E::I(0));
    put(&mut lp, E::I(0));
    put(&mut lp, E::I(0));
    for entry in entries {
        put(&mut lp, E::I(0));
        put(&mut lp, E::I(entry.id.ms.wrapping_sub(master.ms) as i64));
        put(&mut lp, E::I(entry.id.seq.wrapping_sub(master.seq) as i64));
        put(&mut lp, E::I(entry.fields.len() as i64));
        for (f, v) in &entry.fields {
            put(&mut lp, E::S(&f.0));
            put(&mut lp, E::S(&v.0));
        }
        put(&mut lp, E::I(entry.fields.len() as i64 * 2 + 4));
    }
    build::finish(lp, count)
}
