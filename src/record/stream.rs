//! A stream's parts in records: entry ids, entries, consumer groups with
//! their consumers and pending entries, the stream-wide meta.

use super::*;

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

/// One stream entry: its id and field-value pairs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// Field-value pairs, in the order they were added.
    #[serde(deserialize_with = "super::bytes::hollow_only")]
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
