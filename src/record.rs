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

/// A stream entry id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence number within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Parse `ms-seq`; `None` for anything else.
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest id greater than this one, for resuming XRANGE.
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        StreamId::parse(&text)
            .ok_or_else(|| de::Error::custom(format!("invalid stream id {text:?}")))
    }
}

/// A binary-safe byte string; see the module docs for its JSON form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", printable(&self.0))
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&str> for Bytes {
    fn from(v: &str) -> Self {
        Bytes(v.as_bytes().to_vec())
    }
}

/// Whether bytes are written as a JSON string: valid UTF-8 without control
/// characters other than tab, newline and carriage return. Other control
/// characters would be escaped as `\u00XX`, six bytes each; base64 keeps
/// every record within 4/3 of its data (2x for text full of `"` and `\\`).
fn as_text(bytes: &[u8]) -> Option<&str> {
    let plain = bytes
        .iter()
        .all(|&b| !(b < 0x20 || b == 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'));
    if plain {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match as_text(&self.0) {
            Some(text) => s.serialize_str(text),
            None => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("b64", &B64.encode(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or {\"b64\": \"...\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
                Ok(Bytes(v.into_bytes()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bytes, A::Error> {
                let mut out = None;
                while let Some(name) = map.next_key::<std::borrow::Cow<str>>()? {
                    if name != "b64" || out.is_some() {
                        return Err(de::Error::custom(format!(
                            "unexpected field {name:?} in a byte string"
                        )));
                    }
                    let text = map.next_value::<std::borrow::Cow<str>>()?;
                    out = Some(B64.decode(text.as_bytes()).map_err(de::Error::custom)?);
                }
                out.map(Bytes)
                    .ok_or_else(|| de::Error::custom("empty byte string object"))
            }
        }
        d.deserialize_any(BytesVisitor)
    }
}

/// A sorted-set score. JSON numbers cannot say infinity, so `inf` and
/// `-inf` are the strings Redis itself uses; finite scores are numbers
/// written with the shortest form that reads back to the same f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else if self.0 > 0.0 {
            s.serialize_str("inf")
        } else if self.0 < 0.0 {
            s.serialize_str("-inf")
        } else {
            Err(serde::ser::Error::custom("NaN is not a valid score"))
        }
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScoreVisitor;
        impl Visitor<'_> for ScoreVisitor {
            type Value = Score;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Score, E> {
                Ok(Score(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Score, E> {
                Ok(Score(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Score, E> {
                Ok(Score(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Score, E> {
                parse_score(v.as_bytes())
                    .filter(|s| !s.is_finite())
                    .map(Score)
                    .ok_or_else(|| E::custom(format!("invalid score {v:?}")))
            }
        }
        d.deserialize_any(ScoreVisitor)
    }
}

/// Parse a score as Redis prints it (`1.5`, `inf`, `-inf`, `+inf`).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let v = match text {
        "inf" | "+inf" | "Inf" | "+Inf" => f64::INFINITY,
        "-inf" | "-Inf" => f64::NEG_INFINITY,
        _ => text.parse::<f64>().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// Format a score for a command so that the server parses the same f64.
pub(crate) fn format_score(v: f64) -> String {
    if v == f64::INFINITY {
        "+inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        // Rust's Display for f64 is the shortest string that round-trips.
        format!("{v}")
    }
}

/// One stream entry: its id and field-value pairs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// Field-value pairs, in the order they were added.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// A stream's consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    /// The group's name.
    pub name: Bytes,
    /// The id of the last entry delivered to the group.
    pub last_delivered_id: StreamId,
    /// `entries-read` (Redis 7.0+); absent when the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries_read: Option<u64>,
    /// The group's consumers, by name (their seen and active times cannot
    /// be set by any command, so they are not kept). Their pending entries
    /// follow in later records (`StreamChunk::pending`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Bytes>,
}

/// One entry of a group's pending entries list: delivered to `consumer`,
/// not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingEntry {
    /// The pending entry's id.
    pub id: StreamId,
    /// The consumer it was delivered to.
    pub consumer: Bytes,
    /// How many times the entry was delivered.
    pub delivery_count: u64,
    /// When it was last delivered: milliseconds since the Unix epoch by
    /// the source server's clock.
    pub delivered_at_ms: i64,
}

/// A run of one group's pending entries, in increasing id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPending {
    /// The group's name.
    pub group: Bytes,
    /// The entries, in increasing id order.
    pub entries: Vec<PendingEntry>,
}

/// Stream-wide facts, carried by the first record of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// The stream's last id, which can be past its last entry (entries
    /// deleted, or `XSETID`).
    pub last_id: StreamId,
    /// `entries-added` (Redis 7.0+): entries ever added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries_added: Option<u64>,
    /// `max-deleted-entry-id` (Redis 7.0+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deleted_id: Option<StreamId>,
    /// The stream's consumer groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ConsumerGroup>,
}

/// A stream's share of one record: its metadata (first record only),
/// entries and pending entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// Stream-wide facts; only in a stream's first record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<StreamMeta>,
    /// Entries, in increasing id order.
    #[serde(default)]
    pub entries: Vec<StreamEntry>,
    /// Pending entries of consumer groups. They come after all of the
    /// stream's entries: a record that has some is followed by no entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<GroupPending>,
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
    String(Bytes),
    /// Hash field-value pairs.
    Hash(Vec<(Bytes, Bytes)>),
    /// List items, in order.
    List(Vec<Bytes>),
    /// Set members.
    Set(Vec<Bytes>),
    /// Sorted set members with their scores.
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

    /// Append this record as one JSON line.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("records always serialize");
        out.push(b'\n');
    }

    /// Parse one line (without its newline) and check what JSON alone
    /// cannot: that the value is well-formed for its type.
    pub fn decode(line: &[u8]) -> Result<Record, String> {
        let record: Record = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        record.check()?;
        Ok(record)
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
pub(crate) fn printable(bytes: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(record: &Record) -> Record {
        let mut buf = Vec::new();
        record.encode_into(&mut buf);
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(
            buf.iter().filter(|&&b| b == b'\n').count(),
            1,
            "one record is one line"
        );
        Record::decode(&buf[..buf.len() - 1]).unwrap()
    }

    #[test]
    fn binary_bytes_use_base64_and_text_stays_text() {
        let r = Record::new(Bytes(vec![0xff, 0x00, b'k']), Value::String("héllo".into()));
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        let line = String::from_utf8(buf).unwrap();
        assert_eq!(
            line,
            "{\"key\":{\"b64\":\"/wBr\"},\"value\":{\"string\":\"héllo\"}}\n"
        );
        assert_eq!(round_trip(&r), r);
    }

    #[test]
    fn control_characters_use_base64() {
        let mut buf = Vec::new();
        Bytes(vec![0, 1, 2])
            .serialize(&mut serde_json::Serializer::new(&mut buf))
            .unwrap();
        assert_eq!(buf, br#"{"b64":"AAEC"}"#);
        buf.clear();
        Bytes::from("a\tb\n")
            .serialize(&mut serde_json::Serializer::new(&mut buf))
            .unwrap();
        assert_eq!(buf, br#""a\tb\n""#);
    }

    #[test]
    fn split_keeps_order_meta_and_bounds() {
        let items: Vec<Bytes> = (0..100u8).map(|i| Bytes(vec![i; 10])).collect();
        let pieces = Value::List(items.clone()).split(100);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.approx_bytes() <= 100));
        let joined: Vec<Bytes> = pieces
            .into_iter()
            .flat_map(|p| match p {
                Value::List(v) => v,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(joined, items);

        let big = Value::Set(vec![Bytes(vec![1; 500]), Bytes(vec![2; 5])]);
        assert_eq!(big.split(100).len(), 2, "an oversized element stands alone");

        let stream = Value::Stream(StreamChunk {
            meta: Some(StreamMeta {
                last_id: StreamId { ms: 9, seq: 0 },
                entries_added: None,
                max_deleted_id: None,
                groups: vec![],
            }),
            entries: (1..=10)
                .map(|ms| StreamEntry {
                    id: StreamId { ms, seq: 0 },
                    fields: vec![("f".into(), Bytes(vec![0; 40]))],
                })
                .collect(),
            pending: Vec::new(),
        });
        let pieces = stream.split(150);
        assert!(pieces.len() > 1);
        for (i, p) in pieces.iter().enumerate() {
            let Value::Stream(c) = p else { unreachable!() };
            assert_eq!(c.meta.is_some(), i == 0);
        }
    }

    fn pending(group: &str, ids: std::ops::Range<u64>) -> GroupPending {
        GroupPending {
            group: group.into(),
            entries: ids
                .map(|ms| PendingEntry {
                    id: StreamId { ms, seq: 0 },
                    consumer: "worker".into(),
                    delivery_count: ms,
                    delivered_at_ms: 1_700_000_000_000 + ms as i64,
                })
                .collect(),
        }
    }

    #[test]
    fn split_keeps_pending_entries_after_entries_and_in_their_groups() {
        let chunk = StreamChunk {
            meta: None,
            entries: (1..=4)
                .map(|ms| StreamEntry {
                    id: StreamId { ms, seq: 0 },
                    fields: vec![("f".into(), Bytes(vec![0; 40]))],
                })
                .collect(),
            pending: vec![pending("a", 1..30), pending("b", 1..3)],
        };
        let whole = Value::Stream(chunk.clone());
        assert_eq!(whole.len(), 4 + 29 + 2);
        let pieces = whole.split(200);
        assert!(pieces.len() > 3, "{}", pieces.len());
        let mut entries = Vec::new();
        let mut runs: Vec<GroupPending> = Vec::new();
        for p in pieces {
            assert!(p.approx_bytes() <= 200);
            let Value::Stream(c) = p else { unreachable!() };
            assert!(
                c.entries.is_empty() || runs.is_empty(),
                "no entries after pending entries"
            );
            entries.extend(c.entries);
            for run in c.pending {
                match runs.last_mut() {
                    Some(last) if last.group == run.group => last.entries.extend(run.entries),
                    _ => runs.push(run),
                }
            }
        }
        assert_eq!(entries, chunk.entries);
        assert_eq!(runs, chunk.pending);
    }

    #[test]
    fn schema_1_stream_records_still_decode_and_bad_pending_entries_do_not() {
        let old = br#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1","entries_read":1}]},"entries":[{"id":"5-0","fields":[["a","b"]]}]}}}"#;
        let record = Record::decode(old).unwrap();
        let Value::Stream(chunk) = &record.value else {
            panic!()
        };
        assert!(chunk.pending.is_empty());
        assert!(chunk.meta.as_ref().unwrap().groups[0].consumers.is_empty());
        let mut buf = Vec::new();
        record.encode_into(&mut buf);
        assert_eq!(&buf[..buf.len() - 1], &old[..], "written back unchanged");

        let new = br#"{"key":"s","part":1,"value":{"stream":{"entries":[],"pending":[{"group":"g","entries":[{"id":"1-1","consumer":"alice","delivery_count":3,"delivered_at_ms":1795305364391}]}]}}}"#;
        let record = Record::decode(new).unwrap();
        let mut buf = Vec::new();
        record.encode_into(&mut buf);
        assert_eq!(&buf[..buf.len() - 1], &new[..]);

        for bad in [
            // ids out of order
            r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"2-0","consumer":"a","delivery_count":1,"delivered_at_ms":5},{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":5}]}]}}}"#,
            // a negative delivery time
            r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":-5}]}]}}}"#,
            // an empty run
            r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[]}]}}}"#,
            // an unknown field
            r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":5,"idle":3}]}]}}}"#,
            // a consumer named twice
            r#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1","consumers":["a","a"]}]}}}}"#,
            // a group named twice
            r#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1"},{"name":"g","last_delivered_id":"1-1"}]}}}}"#,
        ] {
            assert!(Record::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn infinite_and_extreme_scores_round_trip() {
        let scores = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.1,
            -0.0,
            1e308,
            f64::MIN_POSITIVE,
            5e-324,
            9007199254740993.0,
        ];
        let r = Record {
            key: "z".into(),
            expiry: None,
            part: 0,
            more: false,
            field_expiry: Vec::new(),
            void: false,
            value: Value::Zset(
                scores
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (Bytes(vec![i as u8]), Score(s)))
                    .collect(),
            ),
        };
        let back = round_trip(&r);
        let Value::Zset(members) = back.value else {
            panic!()
        };
        for ((_, got), want) in members.iter().zip(scores) {
            assert_eq!(got.0.to_bits(), want.to_bits(), "{want}");
        }
    }

    #[test]
    fn score_strings_from_redis_parse() {
        assert_eq!(parse_score(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(format_score(f64::INFINITY), "+inf");
        assert_eq!(format_score(0.1), "0.1");
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(Record::decode(br#"{"key":"k","value":{"string":"v"},"extra":1}"#).is_err());
        assert!(Record::decode(br#"{"key":"k","value":{"float":"v"}}"#).is_err());
        assert!(Record::decode(br#"{"key":{"b64":"!!"},"value":{"string":"v"}}"#).is_err());
        assert!(Record::decode(br#"{"key":"k","value":{"zset":[["m","nan"]]}}"#).is_err());
        assert!(
            Record::decode(br#"{"key":"k","value":{"stream":{"entries":[]}}}"#).is_err(),
            "a stream's first record must carry meta"
        );
        assert!(
            Record::decode(br#"{"key":"k","expiry":{"at_ms":5,"ttl_ms":0},"value":{"string":""}}"#)
                .is_err()
        );
    }

    #[test]
    fn stream_ids_order_and_advance() {
        let id = StreamId::parse("5-18446744073709551615").unwrap();
        assert_eq!(id.next(), Some(StreamId { ms: 6, seq: 0 }));
        assert_eq!(StreamId::parse("1-2").unwrap().to_string(), "1-2");
        assert!(StreamId::parse("1").is_none());
        assert!(StreamId::parse("a-1").is_none());
    }

    #[test]
    fn printable_escapes_binary() {
        assert_eq!(printable(b"user:1"), "user:1");
        assert_eq!(printable(&[0xff, b'a', b'\n']), "\\xffa\\n");
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes),
            ".{0,20}".prop_map(|s: String| Bytes(s.into_bytes())),
        ]
    }

    fn score() -> impl Strategy<Value = Score> {
        prop_oneof![
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(Score),
            Just(Score(f64::INFINITY)),
            Just(Score(f64::NEG_INFINITY)),
            (-1000i64..1000).prop_map(|i| Score(i as f64 / 7.0)),
        ]
    }

    fn stream_id() -> impl Strategy<Value = StreamId> {
        (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| StreamId { ms, seq })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            bytes().prop_map(Value::String),
            proptest::collection::vec((bytes(), bytes()), 0..6).prop_map(Value::Hash),
            proptest::collection::vec(bytes(), 0..6).prop_map(Value::List),
            proptest::collection::vec(bytes(), 0..6).prop_map(Value::Set),
            proptest::collection::vec((bytes(), score()), 0..6).prop_map(Value::Zset),
            (
                stream_id(),
                proptest::option::of(any::<u64>()),
                proptest::collection::btree_map(
                    bytes(),
                    (
                        stream_id(),
                        proptest::option::of(any::<u64>()),
                        proptest::collection::btree_set(bytes(), 0..3)
                    ),
                    0..3
                ),
                proptest::collection::btree_set(stream_id(), 0..4),
                (
                    bytes(),
                    proptest::collection::btree_map(
                        stream_id(),
                        (bytes(), any::<u64>(), 0i64..i64::MAX),
                        0..4
                    )
                ),
            )
                .prop_map(|(last_id, entries_added, groups, ids, (group, pending))| {
                    Value::Stream(StreamChunk {
                        meta: Some(StreamMeta {
                            last_id,
                            entries_added,
                            max_deleted_id: None,
                            groups: groups
                                .into_iter()
                                .map(|(name, (last_delivered_id, entries_read, consumers))| {
                                    ConsumerGroup {
                                        name,
                                        last_delivered_id,
                                        entries_read,
                                        consumers: consumers.into_iter().collect(),
                                    }
                                })
                                .collect(),
                        }),
                        entries: ids
                            .into_iter()
                            .map(|id| StreamEntry {
                                id,
                                fields: vec![(Bytes::from("f"), Bytes(vec![0xfe]))],
                            })
                            .collect(),
                        pending: if pending.is_empty() {
                            Vec::new()
                        } else {
                            vec![GroupPending {
                                group,
                                entries: pending
                                    .into_iter()
                                    .map(|(id, (consumer, delivery_count, delivered_at_ms))| {
                                        PendingEntry {
                                            id,
                                            consumer,
                                            delivery_count,
                                            delivered_at_ms,
                                        }
                                    })
                                    .collect(),
                            }]
                        },
                    })
                }),
            (bytes(), any::<u16>()).prop_map(|(payload, rdb_version)| Value::Dump(DumpValue {
                type_name: "MBbloom--".into(),
                rdb_version,
                payload
            })),
        ]
    }

    proptest! {
        #[test]
        fn any_record_round_trips_exactly(
            key in bytes(),
            expiry in proptest::option::of((any::<i64>(), 1i64..i64::MAX)),
            part in 0u32..3,
            more in any::<bool>(),
            value in value(),
        ) {
            let record = Record {
                key,
                expiry: expiry.map(|(at_ms, ttl_ms)| Expiry { at_ms, ttl_ms }),
                part,
                more,
                field_expiry: Vec::new(),
                void: false,
                value,
            };
            let back = round_trip(&record);
            // Compare scores bit for bit: -0.0 == 0.0 would hide a lost sign.
            if let (Value::Zset(a), Value::Zset(b)) = (&record.value, &back.value) {
                for ((ma, sa), (mb, sb)) in a.iter().zip(b) {
                    prop_assert_eq!(ma, mb);
                    prop_assert_eq!(sa.0.to_bits(), sb.0.to_bits());
                }
            }
            prop_assert_eq!(back, record);
        }

        #[test]
        fn scores_survive_the_redis_text_form(s in any::<f64>().prop_filter("not NaN", |f| !f.is_nan())) {
            let text = format_score(s);
            prop_assert_eq!(parse_score(text.as_bytes()).unwrap().to_bits(), s.to_bits());
        }
    }
}
