//! Reading keys from Redis as records.
//!
//! Keys are read in batches. From a single server (or one primary of a
//! cluster) a batch goes over a lean link of the fetcher's own and is read
//! by each key's encoding, compact values as `DUMP` payloads decoded by the
//! RDB reader (`encoded.rs`). Otherwise, and for what that path hands back,
//! it takes two pipelined round trips: TYPE for every key, then PTTL and the
//! first chunk of the value. Most keys are done after that. A key whose first chunk shows there is more (a SCAN cursor that is
//! not 0, a full LRANGE or GETRANGE page, a stream beyond the first page) is
//! read on in further chunks and written as several records, so no reply and
//! no record ever holds a whole big key.
//!
//! A key can change between these commands (it is a live database). A key
//! that is gone is counted as vanished; a key whose type changed under us
//! (WRONGTYPE) is read again once from the start, and counted as an error
//! only if that fails too.

use std::collections::{BTreeMap, HashMap, HashSet};

use redis::Value as Reply;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

mod chunks;
mod encoded;
mod field_expiry;
mod shapes;
mod watched;

use chunks::{FirstRead, Resume};

use field_expiry::{FieldExpiries, add_field_expiry_read, apply_field_expiry};

use crate::connection::{Conn, ServerInfo};
use crate::error::{Error, Result};
use crate::record::{
    Bytes, DumpValue, Expiry, FieldExpiry, KeyType, Record, StreamChunk, StreamId, Value,
};
use crate::reply::{
    array_of, bytes_of, dump_value, parse_time, scan_reply, scan_value, stream_entries,
    stream_groups, stream_meta,
};
use crate::report::{KeyError, Samples, TypeSummary};

/// How much is read at once.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSizes {
    /// Bytes of a string in its first read (kept small: a batch holds one
    /// first read per key).
    pub first_string_bytes: usize,
    /// Bytes of a string per follow-up read.
    pub string_bytes: usize,
    /// Elements in a collection's first read (kept small for the same reason).
    pub first_elements: usize,
    /// Elements per follow-up collection read (COUNT for *SCAN, page size
    /// for LRANGE/XRANGE).
    pub elements: usize,
}

impl Default for ChunkSizes {
    fn default() -> Self {
        ChunkSizes {
            first_string_bytes: 64 << 10,
            string_bytes: 1 << 20,
            first_elements: 100,
            elements: 1000,
        }
    }
}

/// Tallies of what was read, for the report and the manifest.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// Per-type counts of exported, vanished and failed keys.
    pub by_type: BTreeMap<KeyType, TypeSummary>,
    /// Keys that were gone before their type was known.
    pub vanished_untyped: u64,
    /// Keys that could not be read: all counted, the first named with why.
    pub errors: Samples<KeyError>,
    /// Times a big key changed while it was read (its parts voided, read
    /// again); each ends as exported, vanished or an error.
    pub changed: u64,
}

impl FetchStats {
    /// Keys that were gone by the time they were read, typed or not.
    pub fn vanished(&self) -> u64 {
        self.vanished_untyped + self.by_type.values().map(|t| t.vanished).sum::<u64>()
    }

    /// Add another reader's tallies (one per cluster node) to these.
    pub(crate) fn absorb(&mut self, other: FetchStats) {
        for (t, summary) in other.by_type {
            let mine = self.by_type.entry(t).or_default();
            mine.exported += summary.exported;
            mine.vanished += summary.vanished;
            mine.errors += summary.errors;
        }
        self.vanished_untyped += other.vanished_untyped;

        self.changed += other.changed;
        self.errors.absorb(other.errors);
    }

    fn vanish(&mut self, t: Option<KeyType>) {
        match t {
            Some(t) => self.by_type.entry(t).or_default().vanished += 1,
            None => self.vanished_untyped += 1,
        }
    }

    fn fail(&mut self, key: &[u8], t: KeyType, reason: String) {
        self.by_type.entry(t).or_default().errors += 1;
        self.errors.add(KeyError::new(key, reason));
    }
}

/// A record is split when its chunk holds more than this, so records stay
/// small whatever one SCAN page returns.
pub(crate) const RECORD_TARGET_BYTES: usize = 8 << 20;

/// Bytes of records read but not yet written. Reads wait when it is used
/// up, so a slow disk slows the reads instead of filling memory.
pub(crate) const IN_FLIGHT_BYTES: usize = 16 << 20;

/// Records on their way to the writer (a batch's, or one part of a big
/// key), holding their share of the in-flight byte budget until the last
/// of them has been written (the next record is asked for). One message per batch rather than per record: a
/// message costs a budget acquisition and maybe a wake-up of the writer's
/// thread, and most records are a few dozen bytes.
#[derive(Debug)]
pub struct Outgoing {
    records: std::vec::IntoIter<Record>,
    _budget: OwnedSemaphorePermit,
}

/// A channel from fetchers to a writer: give the `Sender` to
/// [`Fetcher::new`], take records from the [`Inbox`].
pub fn channel(messages: usize) -> (mpsc::Sender<Outgoing>, Inbox) {
    let (tx, rx) = mpsc::channel(messages);
    (tx, Inbox { rx, at: None })
}

/// The writer's end of [`channel`]: the records one at a time, in the
/// order they were sent.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Outgoing>,
    /// The message being taken apart; its budget is given back when the
    /// next one is taken.
    at: Option<Outgoing>,
}

impl Inbox {
    /// The next record; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.next_at_hand() {
                return Some(record);
            }
            self.at = Some(self.rx.recv().await?);
        }
    }

    /// [`Inbox::recv`] for a thread outside the runtime.
    pub fn blocking_recv(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.next_at_hand() {
                return Some(record);
            }
            self.at = Some(self.rx.blocking_recv()?);
        }
    }

    /// The next record of the message at hand; a message used up is let
    /// go (and its budget with it) before the next one is waited for.
    fn next_at_hand(&mut self) -> Option<Record> {
        let record = self.at.as_mut().and_then(|o| o.records.next());
        if record.is_none() {
            self.at = None;
        }
        record
    }
}

/// Reads keys and sends their records down a bounded channel to the writer.
#[derive(Debug)]
pub struct Fetcher {
    conn: Conn,
    chunks: ChunkSizes,
    out: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
    /// Held from the first to the last record of a key split in parts, by
    /// whichever of several readers (one per cluster node) is sending it:
    /// a key's parts must follow each other in the archive.
    sequence: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// What has been read so far.
    pub stats: FetchStats,
    /// Read expiry with PEXPIRETIME (Redis 7.0+): the absolute time exactly,
    /// where PTTL + TIME can be a millisecond off.
    exact_expiry: bool,
    /// Read the expiry of hash fields (HPEXPIRETIME): set when the server
    /// has hashes with field expiry, so that exports of servers without
    /// any pay nothing for it.
    field_expiry: bool,
    /// A connection of its own per node, for WATCH while a big key is read.
    watchers: HashMap<String, Conn>,
    /// The lean link that batches are read over, when there is one.
    lean: encoded::Lean,
    /// The server's `DUMP` payloads are of an RDB version the RDB reader
    /// reads, so keys can be read by their encoding.
    dumps_readable: bool,
    /// Types seen per key shape, to read keys without asking first.
    shapes: shapes::Shapes,
    /// The type each key of the batch at hand most likely has, when the
    /// caller knows (see [`Fetcher::fetch_batch_typed`]).
    hints: Vec<KeyType>,
    /// Records of the batch at hand, sent together (see `flush`).
    outbox: Vec<Record>,
}

/// Whether a refusal is WRONGTYPE: the key changed type since it was
/// asked. (The driver shows the code of an error it has no name for in
/// quotes.)
fn is_wrong_type(reason: &str) -> bool {
    reason.trim_start_matches('"').starts_with("WRONGTYPE")
}

/// What went wrong with one key.
enum KeyFault {
    Vanished,
    /// The server refused a command for this key (WRONGTYPE, NOPERM, OOM...).
    Refused(String),
}

impl Fetcher {
    /// A fetcher reading over `conn` that sends records to `out`; the
    /// channel's receiver is the writer.
    pub fn new(conn: Conn, chunks: ChunkSizes, out: mpsc::Sender<Outgoing>) -> Self {
        Fetcher {
            conn,
            chunks,
            out,
            budget: Arc::new(Semaphore::new(IN_FLIGHT_BYTES)),
            sequence: Arc::new(tokio::sync::Mutex::new(())),
            held: None,
            stats: FetchStats::default(),
            exact_expiry: false,
            field_expiry: false,
            watchers: HashMap::new(),
            lean: encoded::Lean::Untried,
            dumps_readable: false,
            shapes: Default::default(),
            hints: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Another reader on `conn` (a cluster node) that feeds the same writer
    /// within the same byte budget.
    pub(crate) fn sharing(&self, conn: Conn) -> Self {
        Fetcher {
            conn,
            chunks: self.chunks,
            out: self.out.clone(),
            budget: self.budget.clone(),
            sequence: self.sequence.clone(),
            held: None,
            stats: FetchStats::default(),
            exact_expiry: self.exact_expiry,
            field_expiry: self.field_expiry,
            watchers: HashMap::new(),
            lean: encoded::Lean::Untried,
            dumps_readable: self.dumps_readable,
            shapes: Default::default(),
            hints: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Read expiry times as the server holds them (PEXPIRETIME), when it can.
    pub(crate) fn for_server(mut self, server: &ServerInfo) -> Self {
        self.exact_expiry = server.has_pexpiretime();
        self.dumps_readable = encoded::dumps_readable(server);
        self
    }

    /// Read hash field expiry too, when the server may have any (see
    /// [`Conn::may_have_field_expiry`]).
    pub(crate) async fn detect_field_expiry(&mut self, server: &ServerInfo) -> Result<()> {
        self.field_expiry = self.conn.may_have_field_expiry(server).await?;
        Ok(())
    }

    /// Send records to `out` from now on. The channel sent to before sees
    /// its end once no other sender holds it: a reader kept across batches
    /// (the pre-restore backup's) gives each batch a channel of its own.
    pub(crate) fn sending_to(&mut self, out: mpsc::Sender<Outgoing>) {
        self.out = out;
    }

    /// Read hash field expiry too (or not), as found out before.
    pub(crate) fn reading_field_expiry(mut self, on: bool) -> Self {
        self.field_expiry = on;
        self
    }

    /// Read a batch of keys. `known_type` is set when SCAN already filtered
    /// by type, which saves the TYPE round trip. `accept` filters types.
    pub async fn fetch_batch(
        &mut self,
        keys: Vec<Vec<u8>>,
        known_type: Option<KeyType>,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Result<()> {
        if let Some(keys) = self.fetch_encoded(keys, known_type, accept).await? {
            let mut retry = Vec::new();
            self.fetch_once(keys, known_type, accept, Some(&mut retry))
                .await?;
            if !retry.is_empty() {
                self.fetch_once(retry, None, accept, None).await?;
            }
        }
        self.flush().await
    }

    /// Read a batch of keys, each first read as the type given for it
    /// (which the caller expects it to have): no question is asked before
    /// the read, and a key of another type is read the usual way.
    pub(crate) async fn fetch_batch_typed(
        &mut self,
        keys: Vec<Vec<u8>>,
        types: Vec<KeyType>,
    ) -> Result<()> {
        self.hints = types;
        let read = self.fetch_batch(keys, None, &|_| true).await;
        self.hints.clear();
        read
    }

    async fn fetch_once(
        &mut self,
        keys: Vec<Vec<u8>>,
        known_type: Option<KeyType>,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
        mut retry: Option<&mut Vec<Vec<u8>>>,
    ) -> Result<()> {
        let typed = match known_type {
            Some(t) => keys.into_iter().map(|k| (k, t, None)).collect(),
            None => self.types(keys, accept).await?,
        };
        if typed.is_empty() {
            return Ok(());
        }

        let (replies, reads) = self.first_reads(&typed).await?;
        let mut replies = replies.into_iter();
        let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;

        // In key order: a reader of the records (the pre-restore backup)
        // expects them in the order the keys were asked for.
        let mut read = Vec::with_capacity(typed.len());
        for ((key, t, type_name), first) in typed.into_iter().zip(reads) {
            let pttl = replies.next().unwrap_or(Reply::Nil);
            let parts: Vec<Reply> = replies.by_ref().take(first.replies()).collect();
            match self.first_record(&key, type_name.clone(), &first, pttl, parts, now_ms) {
                // A stream with consumer groups is read on (consumers,
                // pending entries): as one version too.
                Ok((record, Resume::Done)) if !has_groups(&record) => read.push(Ok(record)),
                // Read again from the start under WATCH, so that only a
                // whole, unchanged version of it reaches the archive.
                Ok(_) => read.push(Err((key, t, type_name))),
                Err(KeyFault::Vanished) => self.stats.vanish(Some(t)),
                Err(KeyFault::Refused(reason)) => match retry.as_deref_mut() {
                    Some(list) if is_wrong_type(&reason) => list.push(key),
                    _ => self.stats.fail(&key, t, reason),
                },
            }
        }
        if self.field_expiry {
            let mut small: Vec<&mut Record> =
                read.iter_mut().filter_map(|r| r.as_mut().ok()).collect();
            self.add_field_expiry(&mut small).await?;
        }
        for next in read {
            match next {
                Ok(record) => self.send_whole(record),
                Err((key, t, type_name)) => self.read_watched(key, t, type_name).await?,
            }
        }
        Ok(())
    }

    /// One pipeline: TIME, then per key its expiry and the first chunk of
    /// its value.
    async fn first_reads(
        &mut self,
        typed: &[(Vec<u8>, KeyType, Option<String>)],
    ) -> Result<(Vec<Reply>, Vec<FirstRead>)> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let mut reads = Vec::with_capacity(typed.len());
        for (key, t, _) in typed {
            pipe.cmd(if self.exact_expiry {
                "PEXPIRETIME"
            } else {
                "PTTL"
            })
            .arg(key);
            let read = FirstRead::for_type(*t);
            self.add_first_read(&mut pipe, key, &read);
            reads.push(read);
        }
        let replies = self.conn.pipeline(&mut pipe, "reading keys").await?;
        Ok((replies, reads))
    }

    /// TYPE for every key; drop the gone and the unwanted.
    async fn types(
        &mut self,
        keys: Vec<Vec<u8>>,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Result<Vec<(Vec<u8>, KeyType, Option<String>)>> {
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("TYPE").arg(key);
        }
        let replies = self.conn.pipeline(&mut pipe, "reading key types").await?;
        let mut typed = Vec::with_capacity(keys.len());
        for (key, reply) in keys.into_iter().zip(replies) {
            let name = match &reply {
                Reply::SimpleString(s) => s.clone(),
                Reply::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Reply::ServerError(e) => {
                    self.stats
                        .fail(&key, KeyType::Dump, format!("TYPE failed: {e}"));
                    continue;
                }
                other => return Err(self.protocol(format!("unexpected TYPE reply {other:?}"))),
            };
            match KeyType::from_redis(&name) {
                None => self.stats.vanish(None),
                Some(KeyType::Dump) if accept(KeyType::Dump) => {
                    typed.push((key, KeyType::Dump, Some(name)))
                }
                Some(t) if accept(t) => typed.push((key, t, None)),
                Some(_) => {}
            }
        }
        Ok(typed)
    }

    /// Queue a key read whole (sent with the rest of its batch): a hash
    /// all of whose fields expired since is gone.
    fn send_whole(&mut self, record: Record) {
        let t = record.key_type();
        if record.value.is_empty() && t == KeyType::Hash {
            self.stats.vanish(Some(t));
            return;
        }
        let mut part = 0;
        let pieces = pieces(
            &record.key,
            &mut part,
            record.expiry,
            record.value,
            record.field_expiry,
            false,
        );
        self.outbox.extend(pieces);
        self.stats.by_type.entry(t).or_default().exported += 1;
    }

    /// Send one chunk of a key as one or more records of at most
    /// RECORD_TARGET_BYTES each (bar a single bigger element), numbering
    /// parts on from `part`. `more` says whether the key goes on after it.
    async fn send_pieces(
        &mut self,
        key: &Bytes,
        part: &mut u32,
        expiry: Option<Expiry>,
        value: Value,
        field_expiry: Vec<FieldExpiry>,
        more: bool,
    ) -> Result<()> {
        for record in pieces(key, part, expiry, value, field_expiry, more) {
            self.send(record).await?;
        }
        Ok(())
    }

    /// Send what was queued and then `record`: the records of a key read
    /// in parts go out as they are read, so that no more of it is held.
    pub(crate) async fn send(&mut self, record: Record) -> Result<()> {
        self.outbox.push(record);
        self.flush().await
    }

    /// Send the queued records. They go out in one burst, so that the
    /// writer thread is woken once for a batch, not once per record (each
    /// wake also took the CPU from the thread reading the next batch).
    pub(crate) async fn flush(&mut self) -> Result<()> {
        let stopped = || Error::Internal("the archive writer stopped early".into());
        let Some(last) = self.outbox.last() else {
            return Ok(());
        };
        let ends_key = !last.more;
        // The turn first, then the budget: a reader waiting for its turn
        // holds no budget that the one sending a split key needs.
        if self.held.is_none() {
            self.held = Some(self.sequence.clone().lock_owned().await);
        }
        let records = std::mem::take(&mut self.outbox);
        let bytes: usize = records.iter().map(|r| r.value.approx_bytes()).sum();
        let budget = self
            .budget
            .clone()
            .acquire_many_owned(bytes.clamp(1, IN_FLIGHT_BYTES) as u32)
            .await
            .map_err(|_| stopped())?;
        self.out
            .send(Outgoing {
                records: records.into_iter(),
                _budget: budget,
            })
            .await
            .map_err(|_| stopped())?;
        if ends_key {
            self.held = None;
        }
        Ok(())
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Redis {
            endpoint: self.conn.endpoint().display(),
            action: "reading keys".into(),
            reason,
        }
    }
}

/// One chunk of a key as records of at most RECORD_TARGET_BYTES each (bar
/// a single bigger element), numbered on from `part`; `more` says whether
/// the key goes on after it.
fn pieces(
    key: &Bytes,
    part: &mut u32,
    expiry: Option<Expiry>,
    value: Value,
    field_expiry: Vec<FieldExpiry>,
    more: bool,
) -> Vec<Record> {
    let pieces = value.split(RECORD_TARGET_BYTES);
    let last = pieces.len() - 1;
    let mut field_expiry = FieldExpiries::new(field_expiry, pieces.len() > 1);
    let mut records = Vec::with_capacity(pieces.len());
    for (i, value) in pieces.into_iter().enumerate() {
        records.push(Record {
            key: key.clone(),
            expiry: if *part == 0 { expiry } else { None },
            part: *part,
            more: i < last || more,
            field_expiry: field_expiry.take_for(&value),
            void: false,
            value,
        });
        *part += 1;
    }
    records
}

/// A stream with consumer groups, whose consumers and pending entries are
/// read after its first record.
fn has_groups(record: &Record) -> bool {
    matches!(&record.value, Value::Stream(c) if c.meta.as_ref().is_some_and(|m| !m.groups.is_empty()))
}

/// Once a stream's entries are read, its pending entries, if it has some.
fn then_pending(resume: Resume, pending: &mut Option<crate::pel::Cursor>) -> Resume {
    match (resume, pending.take()) {
        (Resume::Done, Some(cursor)) => Resume::Pending(cursor),
        (resume, cursor) => {
            *pending = cursor;
            resume
        }
    }
}

pub(crate) fn empty_value(t: KeyType) -> Value {
    match t {
        KeyType::String => Value::String(Bytes::default()),
        KeyType::Hash => Value::Hash(Vec::new()),
        KeyType::List => Value::List(Vec::new()),
        KeyType::Set => Value::Set(Vec::new()),
        KeyType::Zset => Value::Zset(Vec::new()),
        KeyType::Stream => Value::Stream(StreamChunk {
            meta: None,
            entries: Vec::new(),
            pending: Vec::new(),
        }),
        KeyType::Absent => Value::Absent(Default::default()),
        KeyType::Dump => Value::Dump(DumpValue {
            type_name: String::new(),
            rdb_version: 0,
            payload: Bytes::default(),
        }),
    }
}

/// Keys SCAN returned in one step, without duplicates within the step.
pub(crate) fn dedupe(keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = HashSet::with_capacity(keys.len());
    let first: Vec<bool> = keys.iter().map(|k| seen.insert(&k[..])).collect();
    if first.iter().all(|&f| f) {
        return keys;
    }
    keys.into_iter()
        .zip(first)
        .filter_map(|(k, f)| f.then_some(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keeps_first_occurrence_order() {
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        assert_eq!(dedupe(keys), vec![b"a".to_vec(), b"b".to_vec()]);
    }
}
