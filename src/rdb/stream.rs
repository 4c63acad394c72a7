//! Streams: entries from the stream's listpacks, then its metadata and
//! consumer groups, put out in the order the archive needs.
//!
//! The RDB has a stream's entries first and its metadata and groups after
//! them, but a stream's first record must carry the metadata with every
//! group and consumer, and its pending entries must come after all of its
//! entries. So the whole value is read before its first record is made:
//! entries are kept in memory up to 4 x `chunk_bytes` and, past that,
//! spooled to an anonymous temporary file (deleted by the system when
//! closed), from which they are read back in order. Each group's pending
//! entries list (id, delivery time and count, consumer) is held in memory:
//! it takes ~60 bytes an entry, and the consumer owning each entry is only
//! known once the consumers, which come after the list, have been read.
//!
//! A listpack node starts with a "master entry" (live and deleted entry
//! counts, field names); each entry then has flags (deleted, same fields as
//! the master), its id as a difference from the node's id, its fields (or
//! only values), and its number of listpack elements. Deleted entries are
//! left out.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};

use crate::record::{
    Bytes, ConsumerGroup, GroupPending, PendingEntry, StreamChunk, StreamEntry, StreamId,
    StreamMeta,
};

use super::error::RdbError;
use super::input::Input;
use super::listpack::{self, Entry};
use super::types::{STREAM_LISTPACKS_2, STREAM_LISTPACKS_3};

const FLAG_DELETED: i64 = 1;
const FLAG_SAME_FIELDS: i64 = 2;

/// A stream's entries, in memory or spooled.
#[derive(Debug)]
enum Entries {
    Memory(VecDeque<StreamEntry>),
    Spooled { file: BufReader<File>, left: u64 },
}

/// Where entries go while the stream is read.
struct Spool {
    memory: Vec<StreamEntry>,
    bytes: usize,
    limit: usize,
    file: Option<BufWriter<File>>,
    count: u64,
}

fn entry_size(e: &StreamEntry) -> usize {
    16 + e
        .fields
        .iter()
        .map(|(f, v)| f.0.len() + v.0.len() + 16)
        .sum::<usize>()
}

fn write_bytes(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u64).to_le_bytes())?;
    w.write_all(b)
}

fn write_entry(w: &mut impl Write, e: &StreamEntry) -> std::io::Result<()> {
    w.write_all(&e.id.ms.to_le_bytes())?;
    w.write_all(&e.id.seq.to_le_bytes())?;
    w.write_all(&(e.fields.len() as u64).to_le_bytes())?;
    for (f, v) in &e.fields {
        write_bytes(w, &f.0)?;
        write_bytes(w, &v.0)?;
    }
    Ok(())
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_bytes(r: &mut impl Read) -> std::io::Result<Bytes> {
    let n = read_u64(r)?;
    let mut out = Vec::new();
    // The spool is our own file: its lengths are the ones written above.
    r.take(n).read_to_end(&mut out)?;
    Ok(Bytes(out))
}

fn read_entry(r: &mut impl Read) -> std::io::Result<StreamEntry> {
    let ms = read_u64(r)?;
    let seq = read_u64(r)?;
    let n = read_u64(r)?;
    let mut fields = Vec::new();
    for _ in 0..n {
        let f = read_bytes(r)?;
        fields.push((f, read_bytes(r)?));
    }
    Ok(StreamEntry {
        id: StreamId { ms, seq },
        fields,
    })
}

impl Spool {
    fn new(limit: usize) -> Self {
        Spool {
            memory: Vec::new(),
            bytes: 0,
            limit,
            file: None,
            count: 0,
        }
    }

    fn push(&mut self, e: StreamEntry) -> Result<(), RdbError> {
        self.count += 1;
        if let Some(w) = &mut self.file {
            return write_entry(w, &e).map_err(RdbError::Spool);
        }
        self.bytes += entry_size(&e);
        self.memory.push(e);
        if self.bytes > self.limit {
            let mut w = BufWriter::new(tempfile::tempfile().map_err(RdbError::Spool)?);
            for e in self.memory.drain(..) {
                write_entry(&mut w, &e).map_err(RdbError::Spool)?;
            }
            self.file = Some(w);
        }
        Ok(())
    }

    fn finish(self) -> Result<Entries, RdbError> {
        match self.file {
            None => Ok(Entries::Memory(self.memory.into())),
            Some(w) => {
                let mut file = w
                    .into_inner()
                    .map_err(|e| RdbError::Spool(e.into_error()))?;
                file.rewind().map_err(RdbError::Spool)?;
                Ok(Entries::Spooled {
                    file: BufReader::new(file),
                    left: self.count,
                })
            }
        }
    }
}

/// A stream id as the RDB stores ids of nodes and pending entries: 128
/// bits, big-endian.
fn raw_id(raw: [u8; 16]) -> StreamId {
    let (ms, seq) = raw.split_at(8);
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    StreamId {
        ms: word(ms),
        seq: word(seq),
    }
}

fn len_id<R: BufRead>(input: &mut Input<R>) -> Result<StreamId, RdbError> {
    let ms = input.len()?;
    Ok(StreamId {
        ms,
        seq: input.len()?,
    })
}

/// A whole stream, read and ready to be put out in records.
#[derive(Debug)]
pub(super) struct StreamOut {
    meta: Option<StreamMeta>,
    /// Bytes of the meta's consumer names, counted in the first record.
    meta_bytes: usize,
    entries: Entries,
    groups: Vec<Bytes>,
    pending: VecDeque<(usize, PendingEntry)>,
    carry: Option<Item>,
}

#[derive(Debug)]
enum Item {
    Entry(StreamEntry),
    Pending(usize, PendingEntry),
}

/// Read a stream value of RDB type `type_byte`.
pub(super) fn read<R: BufRead>(
    input: &mut Input<R>,
    type_byte: u8,
    chunk_bytes: usize,
) -> Result<StreamOut, RdbError> {
    let v2 = type_byte >= STREAM_LISTPACKS_2;
    let v3 = type_byte >= STREAM_LISTPACKS_3;
    let mut spool = Spool::new(chunk_bytes.saturating_mul(4));
    let mut node = Node::default();
    let nodes = input.len()?;
    for _ in 0..nodes {
        let at = input.offset();
        let key = input.string()?;
        let key: [u8; 16] = key.try_into().map_err(|k: Vec<u8>| {
            RdbError::corrupt(at, format!("a stream node id of {} bytes, not 16", k.len()))
        })?;
        let at = input.offset();
        input.string_into(&mut node.blob, &mut node.scratch)?;
        node.read(raw_id(key), &mut spool, at)?;
    }
    input.len()?; // the number of entries
    let last_id = len_id(input)?;
    let (entries_added, max_deleted_id) = if v2 {
        len_id(input)?; // the first entry's id
        let max_deleted = len_id(input)?;
        (Some(input.len()?), Some(max_deleted))
    } else {
        (None, None)
    };
    let mut groups = Vec::new();
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    let mut pending = VecDeque::new();
    let count = input.len()?;
    for g in 0..count {
        let at = input.offset();
        let name = Bytes(input.string()?);
        if !seen.insert(name.clone()) {
            return Err(RdbError::corrupt(
                at,
                format!("consumer group {name:?} appears twice"),
            ));
        }
        let last_delivered_id = len_id(input)?;
        // -1, "unknown", is saved as the largest length.
        let entries_read = if v2 {
            Some(input.len()?).filter(|&n| n != u64::MAX)
        } else {
            None
        };
        let (consumers, entries) = read_pel(input, v3, &name)?;
        groups.push(ConsumerGroup {
            name: name.clone(),
            last_delivered_id,
            entries_read,
            consumers,
        });
        names.push(name);
        pending.extend(entries.into_iter().map(|e| (g as usize, e)));
    }
    let meta_bytes = groups
        .iter()
        .flat_map(|g| &g.consumers)
        .map(|c| c.0.len() + 8)
        .sum();
    Ok(StreamOut {
        meta: Some(StreamMeta {
            last_id,
            entries_added,
            max_deleted_id,
            groups,
        }),
        meta_bytes,
        entries: spool.finish()?,
        groups: names,
        pending,
        carry: None,
    })
}

/// A group's pending entries list and its consumers with theirs: the
/// consumers' names, and the entries, each with its consumer.
fn read_pel<R: BufRead>(
    input: &mut Input<R>,
    v3: bool,
    group: &Bytes,
) -> Result<(Vec<Bytes>, Vec<PendingEntry>), RdbError> {
    // (id, delivery time, delivery count, consumer)
    let mut pel: Vec<(StreamId, i64, u64, Option<usize>)> = Vec::new();
    let n = input.len()?;
    for _ in 0..n {
        let at = input.offset();
        let id = raw_id(input.array()?);
        let time = input.u64_le()? as i64;
        let count = input.len()?;
        if pel.last().is_some_and(|p| p.0 >= id) {
            return Err(RdbError::corrupt(
                at,
                format!("pending entries of group {group:?} out of order at {id}"),
            ));
        }
        if time < 0 {
            return Err(RdbError::corrupt(
                at,
                format!("pending entry {id} delivered at {time}"),
            ));
        }
        pel.push((id, time, count, None));
    }
    let mut consumers = Vec::new();
    let mut seen = HashSet::new();
    let n = input.len()?;
    for c in 0..n {
        let at = input.offset();
        let name = Bytes(input.string()?);
        if !seen.insert(name.clone()) {
            return Err(RdbError::corrupt(
                at,
                format!("consumer {name:?} appears twice in group {group:?}"),
            ));
        }
        input.skip(if v3 { 16 } else { 8 })?; // seen (and active) time
        let owned = input.len()?;
        for _ in 0..owned {
            let at = input.offset();
            let id = raw_id(input.array()?);
            match pel.binary_search_by(|p| p.0.cmp(&id)) {
                Ok(i) if pel[i].3.is_none() => pel[i].3 = Some(c as usize),
                _ => {
                    return Err(RdbError::corrupt(
                        at,
                        format!(
                            "consumer {name:?} of group {group:?} owns pending entry {id}, \
                             which the group's list does not hold for it"
                        ),
                    ));
                }
            }
        }
        consumers.push(name);
    }
    let at = input.offset();
    let entries = pel
        .into_iter()
        .map(|(id, time, count, owner)| {
            let consumer = owner.and_then(|c| consumers.get(c)).ok_or_else(|| {
                RdbError::corrupt(
                    at,
                    format!("pending entry {id} of group {group:?} has no consumer"),
                )
            })?;
            Ok(PendingEntry {
                id,
                consumer: consumer.clone(),
                delivery_count: count,
                delivered_at_ms: time,
            })
        })
        .collect::<Result<_, RdbError>>()?;
    Ok((consumers, entries))
}

/// Buffers for reading listpack nodes, and the last id read.
#[derive(Default)]
struct Node {
    blob: Vec<u8>,
    scratch: Vec<u8>,
    master_fields: Vec<Vec<u8>>,
    last: Option<StreamId>,
}

/// A walk over one node's listpack, with its errors placed at `at`.
struct NodeWalk<'a> {
    blob: &'a [u8],
    walk: listpack::Walk,
    at: u64,
}

impl<'a> NodeWalk<'a> {
    fn bad(&self, what: String) -> RdbError {
        RdbError::corrupt(self.at, format!("in a stream node: {what}"))
    }

    fn entry(&mut self) -> Result<Entry<'a>, RdbError> {
        match listpack::next(self.blob, &mut self.walk) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(self.bad("the node ends early".into())),
            Err(e) => Err(self.bad(e)),
        }
    }

    fn int(&mut self, what: &str) -> Result<i64, RdbError> {
        let e = self.entry()?;
        e.int()
            .ok_or_else(|| self.bad(format!("its {what} is not a number")))
    }

    fn count(&mut self, what: &str) -> Result<u64, RdbError> {
        let v = self.int(what)?;
        u64::try_from(v).map_err(|_| self.bad(format!("a negative {what} {v}")))
    }

    fn at_end(&mut self) -> Result<bool, RdbError> {
        match listpack::next(self.blob, &mut self.walk) {
            Ok(e) => Ok(e.is_none()),
            Err(e) => Err(self.bad(e)),
        }
    }
}

impl Node {
    /// The live entries of the node in `self.blob`, whose id is `master`.
    fn read(&mut self, master: StreamId, spool: &mut Spool, at: u64) -> Result<(), RdbError> {
        let mut lp = NodeWalk {
            blob: &self.blob,
            walk: listpack::open(&self.blob)
                .map_err(|e| RdbError::corrupt(at, format!("in a stream node: {e}")))?,
            at,
        };
        let live = lp.count("entry count")?;
        let deleted = lp.count("deleted entry count")?;
        let fields = lp.count("field count")?;
        self.master_fields.clear();
        for _ in 0..fields {
            let e = lp.entry()?;
            self.master_fields.push(e.to_vec());
        }
        if lp.int("master entry end")? != 0 {
            return Err(lp.bad("the master entry does not end with 0".into()));
        }
        for _ in 0..live.saturating_add(deleted) {
            let flags = lp.int("entry flags")?;
            let ms = lp.int("entry id")?;
            let seq = lp.int("entry id")?;
            let id = StreamId {
                ms: master.ms.wrapping_add(ms as u64),
                seq: master.seq.wrapping_add(seq as u64),
            };
            let same = flags & FLAG_SAME_FIELDS != 0;
            let keep = flags & FLAG_DELETED == 0;
            let n = if same {
                self.master_fields.len() as u64
            } else {
                lp.count("field count")?
            };
            let mut pairs = Vec::new();
            for i in 0..n {
                let field = if same {
                    keep.then(|| {
                        self.master_fields
                            .get(i as usize)
                            .cloned()
                            .unwrap_or_default()
                    })
                } else {
                    Some(lp.entry()?.to_vec())
                };
                let value = lp.entry()?;
                if let (true, Some(field)) = (keep, field) {
                    pairs.push((Bytes(field), Bytes(value.to_vec())));
                }
            }
            let elements = if same {
                n.saturating_add(3)
            } else {
                n.saturating_mul(2).saturating_add(4)
            };
            if lp.count("element count")? != elements {
                return Err(lp.bad(format!("entry {id} does not have the elements it says")));
            }
            if keep {
                if self.last.is_some_and(|last| last >= id) {
                    return Err(lp.bad(format!("entry {id} is not after the one before")));
                }
                self.last = Some(id);
                spool.push(StreamEntry { id, fields: pairs })?;
            }
        }
        if !lp.at_end()? {
            return Err(lp.bad("more entries than the node says".into()));
        }
        Ok(())
    }
}

fn pending_size(e: &PendingEntry) -> usize {
    e.consumer.0.len() + 40
}

impl StreamOut {
    fn next_item(&mut self) -> Result<Option<Item>, RdbError> {
        match &mut self.entries {
            Entries::Memory(entries) => {
                if let Some(e) = entries.pop_front() {
                    return Ok(Some(Item::Entry(e)));
                }
            }
            Entries::Spooled { file, left } if *left > 0 => {
                *left -= 1;
                return read_entry(file)
                    .map(|e| Some(Item::Entry(e)))
                    .map_err(RdbError::Spool);
            }
            Entries::Spooled { .. } => {}
        }
        Ok(self.pending.pop_front().map(|(g, e)| Item::Pending(g, e)))
    }

    /// The next record's share: the meta (first time), then entries, then
    /// pending entries, up to about `chunk_bytes`; and whether more follow.
    pub fn next_chunk(&mut self, chunk_bytes: usize) -> Result<(StreamChunk, bool), RdbError> {
        let mut chunk = StreamChunk {
            meta: self.meta.take(),
            entries: Vec::new(),
            pending: Vec::new(),
        };
        let mut bytes = if chunk.meta.is_some() {
            self.meta_bytes
        } else {
            0
        };
        loop {
            let item = match self.carry.take() {
                Some(item) => item,
                None => match self.next_item()? {
                    Some(item) => item,
                    None => return Ok((chunk, false)),
                },
            };
            let n = match &item {
                Item::Entry(e) => entry_size(e),
                Item::Pending(_, e) => pending_size(e),
            };
            if bytes > 0 && bytes.saturating_add(n) > chunk_bytes {
                self.carry = Some(item);
                return Ok((chunk, true));
            }
            bytes = bytes.saturating_add(n);
            match item {
                Item::Entry(e) => chunk.entries.push(e),
                Item::Pending(g, e) => {
                    let group = self.groups.get(g).cloned().unwrap_or_default();
                    match chunk.pending.last_mut() {
                        Some(run) if run.group == group => run.entries.push(e),
                        _ => chunk.pending.push(GroupPending {
                            group,
                            entries: vec![e],
                        }),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_round_trips_entries_through_a_file() {
        let entries: Vec<StreamEntry> = (0..50u64)
            .map(|i| StreamEntry {
                id: StreamId { ms: i, seq: i * 3 },
                fields: vec![(Bytes(vec![i as u8; 3]), Bytes(b"\x00\xffv".to_vec()))],
            })
            .collect();
        let mut spool = Spool::new(200);
        for e in &entries {
            spool.push(e.clone()).unwrap();
        }
        assert!(spool.file.is_some(), "past the limit, entries go to a file");
        let mut out = StreamOut {
            meta: None,
            meta_bytes: 0,
            entries: spool.finish().unwrap(),
            groups: Vec::new(),
            pending: VecDeque::new(),
            carry: None,
        };
        let mut back = Vec::new();
        while let Some(Item::Entry(e)) = out.next_item().unwrap() {
            back.push(e);
        }
        assert_eq!(back, entries);
    }

    #[test]
    fn raw_ids_are_big_endian() {
        let mut raw = [0u8; 16];
        raw[7] = 1;
        raw[15] = 2;
        raw[0] = 0x80;
        assert_eq!(
            raw_id(raw),
            StreamId {
                ms: (1 << 63) | 1,
                seq: 2
            }
        );
    }
}
