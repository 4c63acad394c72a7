//! Records: one Redis key, or one chunk of one big key, in a portable form.
//!
//! The archive holds records as JSON Lines so that any tool can read them
//! (`tar -xO ... | jq`), and so that a record means the same thing whatever
//! server version wrote or reads it (unlike DUMP payloads, which are tied to
//! an RDB version). Binary data is kept exact: a byte string is a JSON string
//! when it is valid UTF-8 and `{"b64": "..."}` otherwise.
//!
//! A key whose value is too big to hold at once is written as several
//! consecutive records with the same key, numbered by `part`, every one but
//! the last carrying `"more": true`. Neither the writer nor the reader ever
//! needs a whole key in memory. See docs/FORMAT.md for the full layout.

mod bytes;
mod stream;

pub use bytes::{Bytes, Score, parse_score};
pub(crate) use bytes::{BytesRef, Spill, format_score};
pub use stream::{
    ConsumerGroup, GroupPending, PendingEntry, StreamChunk, StreamEntry, StreamId, StreamMeta,
};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The six portable types plus the DUMP fallback, in a fixed order used for
/// counts and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyType {
    /// A Redis string (any bytes).
    String,
    /// A hash of fields and values.
    Hash,
    /// A list, in order.
    List,
    /// A set of members.
    Set,
    /// A sorted set of members and scores.
    Zset,
    /// A stream, with its consumer groups.
    Stream,
    /// Any other type (modules): kept as a DUMP payload.
    Dump,
    /// Not a Redis type: pre-restore archives record that a key did not
    /// exist, so rollback can delete what the restore created.
    Absent,
}

impl KeyType {
    /// Every type, in the order counts and reports list them.
    pub const ALL: [KeyType; 8] = [
        KeyType::String,
        KeyType::Hash,
        KeyType::List,
        KeyType::Set,
        KeyType::Zset,
        KeyType::Stream,
        KeyType::Dump,
        KeyType::Absent,
    ];

    /// The lowercase name, as Redis's `TYPE` reports it (`dump` and
    /// `absent` for the others).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::List => "list",
            KeyType::Set => "set",
            KeyType::Zset => "zset",
            KeyType::Stream => "stream",
            KeyType::Dump => "dump",
            KeyType::Absent => "absent",
        }
    }

    /// Parse a user-facing type name (`--type`); accepts Redis's names and
    /// a few common spellings.
    pub fn parse(name: &str) -> Option<KeyType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "string" | "str" => KeyType::String,
            "hash" => KeyType::Hash,
            "list" => KeyType::List,
            "set" => KeyType::Set,
            "zset" | "sortedset" | "sorted-set" => KeyType::Zset,
            "stream" => KeyType::Stream,
            "dump" | "module" | "other" => KeyType::Dump,
            _ => return None,
        })
    }

    /// Map a `TYPE` reply; `None` means the key is gone.
    pub fn from_redis(reply: &str) -> Option<KeyType> {
        match reply {
            "none" => None,
            "string" => Some(KeyType::String),
            "hash" => Some(KeyType::Hash),
            "list" => Some(KeyType::List),
            "set" => Some(KeyType::Set),
            "zset" => Some(KeyType::Zset),
            "stream" => Some(KeyType::Stream),
            _ => Some(KeyType::Dump),
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When a key expires, as read from the source server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// Absolute expiry, milliseconds since the Unix epoch (source server clock).
    pub at_ms: i64,
    /// Remaining time to live when the key was read, in milliseconds.
    pub ttl_ms: i64,
}

/// A module type kept as the server's own serialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpValue {
    /// The name `TYPE` reported, e.g. `ReJSON-RL`.
    pub type_name: String,
    /// RDB version from the payload's trailer; a server only RESTOREs
    /// payloads of its own RDB version or older.
    pub rdb_version: u16,
    /// The `DUMP` payload as the server returned it.
    pub payload: Bytes,
}

/// The key did not exist (pre-restore archives only). Written as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsentValue {}

/// The value part of a record; for a key split over several records each
/// holds the next chunk (string bytes, fields, items, members, entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// A string's bytes (or the next chunk of them).
    #[serde(deserialize_with = "bytes::hollow_ok")]
    String(Bytes),
    /// Hash field-value pairs.
    #[serde(deserialize_with = "bytes::hollow_ok")]
    Hash(Vec<(Bytes, Bytes)>),
    /// List items, in order.
    #[serde(deserialize_with = "bytes::hollow_ok")]
    List(Vec<Bytes>),
    /// Set members.
    #[serde(deserialize_with = "bytes::hollow_ok")]
    Set(Vec<Bytes>),
    /// Sorted set members with their scores.
    #[serde(deserialize_with = "bytes::hollow_ok")]
    Zset(Vec<(Bytes, Score)>),
    /// Stream entries, metadata and pending entries.
    Stream(StreamChunk),
    /// A key of any other type, as its `DUMP` payload.
    Dump(DumpValue),
    /// The key did not exist (pre-restore archives only).
    Absent(AbsentValue),
}

impl Value {
    /// The key type this value belongs to.
    pub fn key_type(&self) -> KeyType {
        match self {
            Value::String(_) => KeyType::String,
            Value::Hash(_) => KeyType::Hash,
            Value::List(_) => KeyType::List,
            Value::Set(_) => KeyType::Set,
            Value::Zset(_) => KeyType::Zset,
            Value::Stream(_) => KeyType::Stream,
            Value::Dump(_) => KeyType::Dump,
            Value::Absent(_) => KeyType::Absent,
        }
    }

    /// Number of elements this chunk carries (bytes for strings).
    pub fn len(&self) -> usize {
        match self {
            Value::String(b) => b.0.len(),
            Value::Hash(v) => v.len(),
            Value::List(v) | Value::Set(v) => v.len(),
            Value::Zset(v) => v.len(),
            Value::Stream(s) => s.entries.len() + pending_len(&s.pending),
            Value::Dump(d) => d.payload.0.len(),
            Value::Absent(_) => 0,
        }
    }

    /// True when the chunk carries nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of data this chunk holds, roughly what it costs in memory.
    pub(crate) fn approx_bytes(&self) -> usize {
        match self {
            Value::String(b) => b.0.len(),
            Value::Hash(v) => v.iter().map(pair_size).sum(),
            Value::List(v) | Value::Set(v) => v.iter().map(item_size).sum(),
            Value::Zset(v) => v.iter().map(member_size).sum(),
            Value::Stream(s) => stream_size(s),
            Value::Dump(d) => d.payload.0.len(),
            Value::Absent(_) => 0,
        }
    }

    /// Bytes this chunk takes in memory once decoded: its data, plus a
    /// vector header and an allocator block for each byte string in it. A
    /// member of a few bytes takes several times its size, so batches held
    /// in memory are bounded by this rather than by the data alone.
    pub(crate) fn held_bytes(&self) -> usize {
        self.approx_bytes() + self.strings() * HELD_PER_STRING
    }

    /// Byte strings this chunk holds.
    fn strings(&self) -> usize {
        match self {
            Value::String(_) | Value::Dump(_) => 1,
            Value::Hash(v) => 2 * v.len(),
            Value::List(v) | Value::Set(v) => v.len(),
            Value::Zset(v) => v.len(),
            Value::Stream(s) => {
                s.entries
                    .iter()
                    .map(|e| 1 + 2 * e.fields.len())
                    .sum::<usize>()
                    + pending_len(&s.pending)
            }
            Value::Absent(_) => 0,
        }
    }

    /// Split a chunk into pieces of about `max_bytes` each, keeping element
    /// order; an element larger than `max_bytes` is a piece of its own.
    /// Strings and DUMP payloads are not split here (strings are read in
    /// small ranges already; a payload must stay whole). Stream meta stays
    /// with the first piece.
    pub fn split(self, max_bytes: usize) -> Vec<Value> {
        fn pieces<T>(items: Vec<T>, max: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
            let mut out = vec![Vec::new()];
            let mut bytes = 0;
            for item in items {
                let n = size(&item);
                if bytes + n > max && !out.last().is_some_and(|p| p.is_empty()) {
                    out.push(Vec::new());
                    bytes = 0;
                }
                bytes += n;
                out.last_mut().expect("never empty").push(item);
            }
            out
        }
        if self.approx_bytes() <= max_bytes {
            return vec![self];
        }
        match self {
            Value::Hash(v) => pieces(v, max_bytes, pair_size)
                .into_iter()
                .map(Value::Hash)
                .collect(),
            Value::List(v) => pieces(v, max_bytes, item_size)
                .into_iter()
                .map(Value::List)
                .collect(),
            Value::Set(v) => pieces(v, max_bytes, item_size)
                .into_iter()
                .map(Value::Set)
                .collect(),
            Value::Zset(v) => pieces(v, max_bytes, member_size)
                .into_iter()
                .map(Value::Zset)
                .collect(),
            Value::Stream(StreamChunk {
                mut meta,
                entries,
                pending,
            }) => {
                let items =
                    entries
                        .into_iter()
                        .map(StreamItem::Entry)
                        .chain(pending.into_iter().flat_map(|g| {
                            let group = g.group;
                            g.entries
                                .into_iter()
                                .map(move |e| StreamItem::Pending(group.clone(), e))
                        }));
                pieces(items.collect(), max_bytes, StreamItem::size)
                    .into_iter()
                    .map(|items| Value::Stream(StreamItem::chunk(meta.take(), items)))
                    .collect()
            }
            other => vec![other],
        }
    }
}

/// What one decoded byte string costs beyond its bytes: a `Vec` header
/// (24 bytes) and the allocator's block header and rounding (about 16).
const HELD_PER_STRING: usize = 40;

// Sizes of one element, with a little for its bookkeeping: used both to
// bound memory and to split chunks, so they must agree.
fn item_size(x: &Bytes) -> usize {
    x.0.len() + 8
}

fn pair_size((a, b): &(Bytes, Bytes)) -> usize {
    a.0.len() + b.0.len() + 16
}

fn member_size((m, _): &(Bytes, Score)) -> usize {
    m.0.len() + 16
}

fn entry_size(e: &StreamEntry) -> usize {
    16 + e.fields.iter().map(pair_size).sum::<usize>()
}

fn pending_size(e: &PendingEntry) -> usize {
    e.consumer.0.len() + 40
}

fn pending_len(pending: &[GroupPending]) -> usize {
    pending.iter().map(|g| g.entries.len()).sum()
}

fn stream_size(s: &StreamChunk) -> usize {
    let consumers: usize = s.meta.as_ref().map_or(0, |m| {
        m.groups
            .iter()
            .flat_map(|g| &g.consumers)
            .map(item_size)
            .sum()
    });
    let pending: usize = s
        .pending
        .iter()
        .map(|g| g.group.0.len() + g.entries.iter().map(pending_size).sum::<usize>())
        .sum();
    consumers + pending + s.entries.iter().map(entry_size).sum::<usize>()
}

/// A stream chunk's elements in order, for splitting: its entries, then
/// its pending entries, each with its group.
enum StreamItem {
    Entry(StreamEntry),
    Pending(Bytes, PendingEntry),
}

impl StreamItem {
    fn size(&self) -> usize {
        match self {
            StreamItem::Entry(e) => entry_size(e),
            StreamItem::Pending(_, e) => pending_size(e),
        }
    }

    /// Put a piece back together: consecutive pending entries of one group
    /// make one run.
    fn chunk(meta: Option<StreamMeta>, items: Vec<StreamItem>) -> StreamChunk {
        let mut chunk = StreamChunk {
            meta,
            entries: Vec::new(),
            pending: Vec::new(),
        };
        for item in items {
            match item {
                StreamItem::Entry(e) => chunk.entries.push(e),
                StreamItem::Pending(group, e) => match chunk.pending.last_mut() {
                    Some(run) if run.group == group => run.entries.push(e),
                    _ => chunk.pending.push(GroupPending {
                        group,
                        entries: vec![e],
                    }),
                },
            }
        }
        chunk
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// When one hash field expires (Redis 7.4+ `HPEXPIRE`), like a key's [`Expiry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldExpiry {
    /// The field, one of the fields of the same record.
    pub field: Bytes,
    /// Absolute expiry, milliseconds since the Unix epoch (source server clock).
    pub at_ms: i64,
    /// Remaining time to live when the field was read, in milliseconds.
    pub ttl_ms: i64,
}

/// One line of a data entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The key, binary-safe.
    pub key: Bytes,
    /// When the key expires; `None` for a key that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Expiry>,
    /// 0 for the first (often only) record of a key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part: u32,
    /// True when further records of the same key follow.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// Expiry of the fields of this chunk that have one (hashes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_expiry: Vec<FieldExpiry>,
    /// The key changed while it was being read in parts: this last record
    /// voids the parts before it, and no reader may restore any of them.
    /// Its value is empty. (A later, whole copy of the key may follow.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub void: bool,
    /// The value, or this record's chunk of it.
    pub value: Value,
}

impl Record {
    /// A record of `key` holding `value`, with nothing else set.
    pub fn new(key: Bytes, value: Value) -> Record {
        Record {
            key,
            expiry: None,
            part: 0,
            more: false,
            field_expiry: Vec::new(),
            void: false,
            value,
        }
    }

    /// The key type of the value.
    pub fn key_type(&self) -> KeyType {
        self.value.key_type()
    }

    /// Bytes this record takes in memory once decoded, roughly.
    pub(crate) fn held_bytes(&self) -> usize {
        self.key.0.len() + HELD_PER_STRING + self.value.held_bytes()
    }

    /// [`Record::held_bytes`], bounded from above without walking the
    /// value, for a record read from a line of `line_bytes`: a line holds
    /// every byte of the record at least once (text as itself or escaped,
    /// binary as base64).
    pub(crate) fn held_bytes_by_line(&self, line_bytes: usize) -> usize {
        line_bytes + (1 + self.value.strings()) * HELD_PER_STRING
    }

    /// Append this record as one JSON line.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("records always serialize");
        out.push(b'\n');
    }

    /// Parse one line (without its newline) and check what JSON alone
    /// cannot: that the value is well-formed for its type.
    pub fn decode(line: &[u8]) -> Result<Record, String> {
        let record: Record = parse_line(line)?;
        record.check()?;
        Ok(record)
    }

    /// [`Record::decode`] for a reader that needs only the record's key,
    /// shape and sizes (a restore's plan): every check is the same, but the
    /// bytes of strings and the elements of collections (hash fields and
    /// values, list items, set and sorted-set members, stream entry fields)
    /// come back as empty byte strings, so a record costs one allocation
    /// instead of one per element. Names of groups and consumers, DUMP
    /// payloads, a record with field expiry (whose checks compare field
    /// names) and a void record (whose check is that its value is empty)
    /// are whole.
    pub(crate) fn decode_hollow(line: &[u8]) -> Result<Record, String> {
        let record: Record = {
            let _hollow = bytes::Hollow::request();
            parse_line(line)?
        };
        if !record.field_expiry.is_empty() || record.void {
            return Record::decode(line);
        }
        record.check()?;
        Ok(record)
    }

    /// [`Record::decode`] for a reader that turns the bytes of strings and
    /// the elements of hashes, lists, sets and sorted sets into something
    /// else as they are read (a restore's `RESTORE` payloads), instead of
    /// allocating each: they are written to `out` by `spill`, in order, and
    /// the record comes back as [`Record::decode_hollow`] gives it, checked
    /// as strictly. The flag says whether it did: records of other types,
    /// with field expiry or void come back whole, with `out` empty.
    pub(crate) fn decode_spilled(
        line: &[u8],
        spill: Spill,
        out: &mut Vec<u8>,
    ) -> Result<(Record, bool), String> {
        out.clear();
        // Parsed from text only: a line that is not UTF-8, or does not
        // parse, is decoded again whole, for the error a whole decode gives.
        let parsed = bytes::spilled(spill, out, || {
            std::str::from_utf8(line)
                .ok()
                .and_then(|text| serde_json::from_str::<Record>(text).ok())
        });
        let record = match parsed {
            Some(record) if record.field_expiry.is_empty() && !record.void => record,
            _ => {
                out.clear();
                return Record::decode(line).map(|r| (r, false));
            }
        };
        record.check()?;
        let spilled = matches!(
            record.value,
            Value::String(_) | Value::Hash(_) | Value::List(_) | Value::Set(_) | Value::Zset(_)
        );
        Ok((record, spilled))
    }

    fn check(&self) -> Result<(), String> {
        if let Value::Zset(members) = &self.value
            && members.iter().any(|(_, s)| s.0.is_nan())
        {
            return Err("sorted set score is NaN".into());
        }
        if let Value::Stream(chunk) = &self.value {
            if self.part == 0 && chunk.meta.is_none() {
                return Err("first record of a stream has no meta".into());
            }
            if chunk.entries.windows(2).any(|w| w[0].id >= w[1].id) {
                return Err("stream entries are not in increasing id order".into());
            }
            check_groups(chunk)?;
        }
        if let Some(e) = self.expiry
            && e.ttl_ms <= 0
        {
            return Err(format!("expiry has a non-positive ttl {}", e.ttl_ms));
        }
        if !self.field_expiry.is_empty() {
            let Value::Hash(fields) = &self.value else {
                return Err("field_expiry on a record that is not a hash".into());
            };
            for fe in &self.field_expiry {
                if fe.ttl_ms <= 0 {
                    return Err(format!("field expiry has a non-positive ttl {}", fe.ttl_ms));
                }
                if !fields.iter().any(|(f, _)| *f == fe.field) {
                    return Err(format!(
                        "field_expiry names field {:?}, which the record does not hold",
                        fe.field
                    ));
                }
            }
        }
        if self.void
            && (self.part == 0 || self.more || !self.value.is_empty() || self.expiry.is_some())
        {
            return Err(
                "a void record must be the empty last part of a key (part > 0, no more, no value)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What JSON alone cannot say about consumer groups: group and consumer
/// names are not repeated, and a group's pending entries are in increasing
/// id order with a delivery time that is not negative.
fn check_groups(chunk: &StreamChunk) -> Result<(), String> {
    if let Some(meta) = &chunk.meta {
        let mut names = std::collections::HashSet::new();
        for group in &meta.groups {
            if !names.insert(&group.name) {
                return Err(format!("consumer group {:?} appears twice", group.name));
            }
            let mut consumers = std::collections::HashSet::new();
            if let Some(c) = group.consumers.iter().find(|c| !consumers.insert(*c)) {
                return Err(format!(
                    "consumer {c:?} appears twice in group {:?}",
                    group.name
                ));
            }
        }
    }
    for run in &chunk.pending {
        if run.entries.is_empty() {
            return Err(format!("no pending entries for group {:?}", run.group));
        }
        if run.entries.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(format!(
                "pending entries of group {:?} are not in increasing id order",
                run.group
            ));
        }
        if let Some(e) = run.entries.iter().find(|e| e.delivered_at_ms < 0) {
            return Err(format!(
                "pending entry {} of group {:?} has a negative delivery time",
                e.id, run.group
            ));
        }
    }
    Ok(())
}

/// Show a key to a person: printable ASCII as is, other bytes as `\xNN`
/// (the redis-cli convention), so a binary key still fits on one line.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A JSON line parsed with its UTF-8 checked once, whole, instead of
/// string by string (what parsing a record spends most on after its
/// allocations; most lines are ASCII). A line that is not UTF-8 or does
/// not parse is parsed again as bytes, so that its error reads the same.
fn parse_line<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .map_or_else(
            || serde_json::from_slice(line).map_err(|e| e.to_string()),
            Ok,
        )
}

#[cfg(test)]
mod tests;
