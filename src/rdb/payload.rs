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
//! Strings are written plain; small hashes, lists and sorted sets as the
//! listpacks the server keeps them in, which it takes as they are, and the
//! others, and sets, in the plain forms every server reads and converts
//! itself (see `packed.rs`); streams as listpack nodes of at most 100
//! entries (the servers' default node size). A stream with
//! consumer groups, a hash with field expiry, a key split over several
//! records and a value that is already a payload get `None`: they keep
//! their commands.

use super::crc64;
use super::listpack::build::{self, E};
use super::packed::{self, Collection};
use super::types;
use crate::record::{Bytes, Record, Spill, StreamChunk, StreamId, Value};

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
    // Room only for a value that gets a payload (a module value's line can
    // be a mebibyte).
    let mut out = Vec::new();
    let room = bytes + 32;
    match value {
        Value::String(s) => {
            out.reserve_exact(room);
            out.push(types::STRING);
            string(&mut out, &s.0);
        }
        Value::Hash(_) | Value::List(_) | Value::Set(_) | Value::Zset(_) => {
            out.reserve_exact(room);
            Collection::of(value)?.write(&mut out, rdb_version)?;
        }
        Value::Stream(chunk) if rdb_version >= STREAM_COUNTERS_RDB => {
            out.reserve_exact(room);
            stream(&mut out, chunk)?;
        }
        _ => return None,
    }
    Some(trailer(out, rdb_version))
}

/// The RDB version and the checksum that end every payload.
fn trailer(mut out: Vec<u8>, rdb_version: u16) -> Vec<u8> {
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Strings and the elements of collections as a payload holds them: byte
/// strings after their length.
const SPILL: Spill = string;

thread_local! {
    /// The spilled elements of the line being decoded; kept between lines
    /// so that its room is allocated once per thread.
    static ELEMENTS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decode a record line for a restore into a server that reads RDB
/// `rdb_version`: a key whole in one record, of a type
/// [`restore_payload`] takes, comes with its payload and a value that is
/// no longer needed, so hollow (strings' bytes and collections' elements
/// empty, their number and scores kept; streams empty): the bytes of
/// strings and the elements of hashes, lists, sets and sorted sets go from
/// the line straight into the payload, never allocated one by one. Any
/// other record comes back whole, without a payload. Checked as
/// [`Record::decode`] checks, with the same errors.
pub(crate) fn decode_with_payload(
    line: &[u8],
    rdb_version: u16,
) -> Result<(Record, Option<Vec<u8>>), String> {
    ELEMENTS.with(|elements| {
        let mut elements = elements.borrow_mut();
        let decoded = with_elements(line, rdb_version, &mut elements);
        // The room a big record took is not kept.
        if elements.capacity() > KEPT_ROOM {
            *elements = Vec::new();
        }
        decoded
    })
}

/// Room for spilled elements kept between lines.
const KEPT_ROOM: usize = 1 << 20;

fn with_elements(
    line: &[u8],
    rdb_version: u16,
    elements: &mut Vec<u8>,
) -> Result<(Record, Option<Vec<u8>>), String> {
    let (mut record, spilled) = Record::decode_spilled(line, SPILL, elements)?;
    let whole_key =
        record.part == 0 && !record.more && !record.void && record.field_expiry.is_empty();
    if spilled {
        if whole_key && let Some(payload) = spilled_payload(&record.value, elements, rdb_version) {
            return Ok((record, Some(payload)));
        }
        refill(&mut record.value, elements)?;
        return Ok((record, None));
    }
    if !whole_key {
        return Ok((record, None));
    }
    // Streams: their payload is made from the whole entries, which are
    // then no longer needed.
    let payload = restore_payload_within(&record.value, rdb_version, line.len());
    if payload.is_some()
        && let Value::Stream(chunk) = &mut record.value
    {
        *chunk = StreamChunk {
            meta: None,
            entries: Vec::new(),
            pending: Vec::new(),
        };
    }
    Ok((record, payload))
}

/// The payload of a hollow value whose bytes or elements were spilled,
/// as [`restore_payload`] makes it from the whole one; `None` for an empty
/// collection.
fn spilled_payload(value: &Value, elements: &[u8], rdb_version: u16) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(elements.len() + 32);
    match value {
        // Its bytes are spilled as the payload holds them.
        Value::String(_) => {
            out.push(types::STRING);
            out.extend_from_slice(elements);
        }
        _ => Collection::spilled(value, elements)?.write(&mut out, rdb_version)?,
    }
    Some(trailer(out, rdb_version))
}

/// Give a hollow value back the bytes or elements it spilled, for a
/// record that is written by commands after all (part of a split key).
fn refill(value: &mut Value, elements: &[u8]) -> Result<(), String> {
    let lost = || "the spilled elements of a record do not read back".to_string();
    let owned = |x: &[u8]| Bytes(x.to_vec());
    if let Value::String(s) = value {
        let mut at = 0;
        let bytes = packed::read_string(elements, &mut at).filter(|_| at == elements.len());
        *s = owned(bytes.ok_or_else(lost)?);
        return Ok(());
    }
    let spilled = Collection::spilled(value, elements).ok_or_else(lost)?;
    match (value, spilled) {
        (Value::Hash(v), Collection::Hash(x)) => {
            for ((f, val), pair) in v.iter_mut().zip(x.chunks(2)) {
                (*f, *val) = (owned(pair[0]), owned(pair[1]));
            }
        }
        (Value::List(v) | Value::Set(v), Collection::List(x) | Collection::Set(x)) => {
            for (item, x) in v.iter_mut().zip(x) {
                *item = owned(x);
            }
        }
        (Value::Zset(v), Collection::Zset(x)) => {
            for ((m, _), (x, _)) in v.iter_mut().zip(x) {
                *m = owned(x);
            }
        }
        _ => return Err(lost()),
    }
    Ok(())
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
pub(super) fn string(out: &mut Vec<u8>, s: &[u8]) {
    len(out, s.len() as u64);
    out.extend_from_slice(s);
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
