//! Reading keys from Redis as records.
//!
//! Keys are read in batches with two pipelined round trips: TYPE for every
//! key, then PTTL and the first chunk of the value. Most keys are done after
//! that. A key whose first chunk shows there is more (a SCAN cursor that is
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

use crate::connection::{Conn, ServerInfo};
use crate::error::{Error, Result};
use crate::record::{
    Bytes, DumpValue, Expiry, FieldExpiry, KeyType, Record, StreamChunk, StreamId, Value,
};
use crate::reply::{
    array_of, bytes_of, dump_value, parse_time, scan_reply, scan_value, stream_entries,
    stream_groups, stream_meta,
};
use crate::report::{KeyError, TypeSummary};

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
    /// The first keys that could not be read, with why.
    pub errors: Vec<KeyError>,
    /// Keys that could not be read, all of them.
    pub error_count: u64,
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
        self.error_count += other.error_count;
        self.changed += other.changed;
        let room = crate::report::MAX_ERROR_SAMPLES.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    fn vanish(&mut self, t: Option<KeyType>) {
        match t {
            Some(t) => self.by_type.entry(t).or_default().vanished += 1,
            None => self.vanished_untyped += 1,
        }
    }

    fn fail(&mut self, key: &[u8], t: KeyType, reason: String) {
        self.by_type.entry(t).or_default().errors += 1;
        self.error_count += 1;
        if self.errors.len() < crate::report::MAX_ERROR_SAMPLES {
            self.errors.push(KeyError::new(key, reason));
        }
    }
}

/// A record is split when its chunk holds more than this, so records stay
/// small whatever one SCAN page returns.
pub(crate) const RECORD_TARGET_BYTES: usize = 8 << 20;

/// Bytes of records read but not yet written. Reads wait when it is used
/// up, so a slow disk slows the reads instead of filling memory.
pub(crate) const IN_FLIGHT_BYTES: usize = 16 << 20;

/// A record on its way to the writer, holding its share of the in-flight
/// byte budget until it is dropped after writing.
#[derive(Debug)]
pub struct Outgoing {
    /// The record.
    pub record: Record,
    _budget: OwnedSemaphorePermit,
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
}

/// How many times a big key that keeps changing while it is read is read
/// again from the start before it is given up (and reported).
pub(crate) const WATCHED_READ_ATTEMPTS: u32 = 3;

/// The first read of one key, sent in the second round trip.
enum FirstRead {
    String,
    Scan(&'static str),
    List,
    Stream,
    Dump,
}

impl FirstRead {
    fn for_type(t: KeyType) -> Self {
        match t {
            KeyType::String => FirstRead::String,
            KeyType::Hash => FirstRead::Scan("HSCAN"),
            KeyType::Set => FirstRead::Scan("SSCAN"),
            KeyType::Zset => FirstRead::Scan("ZSCAN"),
            KeyType::List => FirstRead::List,
            KeyType::Stream => FirstRead::Stream,
            KeyType::Dump | KeyType::Absent => FirstRead::Dump,
        }
    }

    /// Replies this read produces, after the PTTL reply.
    fn replies(&self) -> usize {
        match self {
            FirstRead::Stream => 3,
            _ => 1,
        }
    }
}

/// Where reading a big key goes on from.
enum Resume {
    Done,
    String {
        offset: usize,
    },
    Scan {
        command: &'static str,
        cursor: Vec<u8>,
    },
    List {
        offset: usize,
    },
    Stream {
        from: StreamId,
        last: StreamId,
    },
    /// A stream's consumer groups' pending entries, after its entries.
    Pending(crate::pel::Cursor),
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
        }
    }

    /// Read expiry times as the server holds them (PEXPIRETIME), when it can.
    pub(crate) fn for_server(mut self, server: &ServerInfo) -> Self {
        self.exact_expiry = server.has_pexpiretime();
        self
    }

    /// Read hash field expiry too, when the server may have any (see
    /// [`Conn::may_have_field_expiry`]).
    pub(crate) async fn detect_field_expiry(&mut self, server: &ServerInfo) -> Result<()> {
        self.field_expiry = self.conn.may_have_field_expiry(server).await?;
        Ok(())
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
        let mut retry = Vec::new();
        self.fetch_once(keys, known_type, accept, Some(&mut retry))
            .await?;
        if !retry.is_empty() {
            self.fetch_once(retry, None, accept, None).await?;
        }
        Ok(())
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
                    Some(list) if reason.starts_with("WRONGTYPE") => list.push(key),
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
                Ok(record) => {
                    let t = record.key_type();
                    if record.value.is_empty() && t == KeyType::Hash {
                        // Every field expired between the reads: the key is gone.
                        self.stats.vanish(Some(t));
                        continue;
                    }
                    self.send_pieces(
                        &record.key,
                        &mut 0,
                        record.expiry,
                        record.value,
                        record.field_expiry,
                        false,
                    )
                    .await?;
                    self.stats.by_type.entry(t).or_default().exported += 1;
                }
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

    /// Read a key that needs several reads as one version of it: WATCH it
    /// on a connection of its own, read it from the start, and let EXEC say
    /// whether anything touched it meanwhile (a write, a delete, an expiry:
    /// WATCH sees them all). Its records are sent as they are read, so a
    /// changed key is closed with a void record, which tells every reader
    /// to drop its parts, and read again; a key that is gone by then is
    /// vanished, one that changes on every attempt is reported.
    async fn read_watched(
        &mut self,
        key: Vec<u8>,
        t: KeyType,
        type_name: Option<String>,
    ) -> Result<()> {
        for _ in 0..WATCHED_READ_ATTEMPTS {
            let watched = self.watch(&key).await?;
            let typed = [(key.clone(), t, type_name.clone())];
            let (replies, reads) = self.first_reads(&typed).await?;
            let mut replies = replies.into_iter();
            let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;
            let pttl = replies.next().unwrap_or(Reply::Nil);
            let parts: Vec<Reply> = replies.collect();
            let (mut first, resume) =
                match self.first_record(&key, type_name.clone(), &reads[0], pttl, parts, now_ms) {
                    Ok(read) => read,
                    Err(KeyFault::Vanished) => {
                        self.unwatch(&key).await;
                        self.stats.vanish(Some(t));
                        return Ok(());
                    }
                    Err(KeyFault::Refused(reason)) => {
                        self.unwatch(&key).await;
                        self.stats.fail(&key, t, reason);
                        return Ok(());
                    }
                };
            if self.field_expiry {
                self.add_field_expiry(&mut [&mut first]).await?;
            }
            // A stream's consumers go in its first record; its groups'
            // pending entries are read after its entries.
            let mut pending = None;
            if let Value::Stream(chunk) = &mut first.value {
                let n = self.chunks.first_elements;
                let entries_done = matches!(resume, Resume::Done);
                match crate::pel::read_groups(&mut self.conn, &key, chunk, entries_done, n).await? {
                    Ok(cursor) => pending = cursor,
                    Err(_) => {
                        // Changed before anything was sent: read it again.
                        self.unwatch(&key).await;
                        self.stats.changed += 1;
                        continue;
                    }
                }
            }
            let resume = then_pending(resume, &mut pending);
            let key_bytes = Bytes(key.clone());
            let mut resume = resume;
            let mut part = 0;
            // Each chunk is sent once the next one is read: the last is held
            // until EXEC has said the key did not change, so that a changed
            // key's parts always end with the void record (never a last part).
            let mut held = (first.expiry, first.value, first.field_expiry);
            let mut changed = !watched;
            while !changed && !matches!(resume, Resume::Done) {
                let (expiry, value, field_expiry) = held;
                self.send_pieces(&key_bytes, &mut part, expiry, value, field_expiry, true)
                    .await?;
                held = (None, empty_value(t), Vec::new());
                match self
                    .read_more(&key, t, std::mem::replace(&mut resume, Resume::Done))
                    .await
                {
                    Ok((value, field_expiry, next)) => {
                        resume = then_pending(next, &mut pending);
                        held = (None, value, field_expiry);
                    }
                    Err(_) => changed = true,
                }
            }
            if !changed {
                changed = !self.exec_unchanged(&key).await;
            }
            if !changed {
                let (expiry, value, field_expiry) = held;
                self.send_pieces(&key_bytes, &mut part, expiry, value, field_expiry, false)
                    .await?;
                self.stats.by_type.entry(t).or_default().exported += 1;
                return Ok(());
            }
            if part > 0 {
                // Parts were sent: void them.
                self.send(Record {
                    part,
                    void: true,
                    ..Record::new(key_bytes.clone(), empty_value(t))
                })
                .await?;
            }
            self.stats.changed += 1;
            let mut pipe = redis::pipe();
            pipe.cmd("EXISTS").arg(&key[..]);
            let exists = self.conn.pipeline(&mut pipe, "reading keys").await?;
            if matches!(exists.first(), Some(Reply::Int(0))) {
                self.stats.vanish(Some(t));
                return Ok(());
            }
        }
        self.stats.fail(
            &key,
            t,
            format!(
                "changed while being read, {WATCHED_READ_ATTEMPTS} times in a row; not archived (run the export again when it is quieter)"
            ),
        );
        Ok(())
    }

    /// WATCH `key` on a connection of this fetcher's own; false when the
    /// connection dropped (the next attempt opens another). A user not
    /// allowed WATCH cannot export big keys consistently: that is an error.
    async fn watch(&mut self, key: &[u8]) -> Result<bool> {
        let address = self.conn.dedicated_address(key);
        let mut conn = match self.watchers.get(&address) {
            Some(c) => c.clone(),
            None => {
                let c = self.conn.dedicated(key).await?;
                self.watchers.insert(address.clone(), c.clone());
                c
            }
        };
        let action =
            "watching a big key (WATCH, MULTI, EXEC), so that it is archived as one version";
        match conn
            .query::<Reply>(redis::cmd("WATCH").arg(key), action)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("permission") => Err(e),
            Err(_) => {
                self.watchers.remove(&address);
                Ok(false)
            }
        }
    }

    async fn unwatch(&mut self, key: &[u8]) {
        if let Some(c) = self.watchers.get_mut(&self.conn.dedicated_address(key)) {
            let _ = c
                .query::<Reply>(&redis::cmd("UNWATCH"), "watching a big key")
                .await;
        }
    }

    /// End the WATCH on `key` with an empty transaction: true when nothing
    /// touched the key since WATCH. A dropped connection counts as touched
    /// (and is opened anew next time).
    async fn exec_unchanged(&mut self, key: &[u8]) -> bool {
        let address = self.conn.dedicated_address(key);
        let Some(c) = self.watchers.get_mut(&address) else {
            return false;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("MULTI").cmd("EXEC");
        match c.pipeline(&mut pipe, "watching a big key").await {
            Ok(replies) => matches!(replies.get(1), Some(Reply::Array(_))),
            Err(_) => {
                self.watchers.remove(&address);
                false
            }
        }
    }

    /// Read the expiry of the fields of each hash record (one pipeline),
    /// and drop fields gone since they were read: they expired or were
    /// deleted in between, and the archive must not bring them back.
    async fn add_field_expiry(&mut self, records: &mut [&mut Record]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let mut asked = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if let Value::Hash(fields) = &record.value
                && !fields.is_empty()
            {
                add_field_expiry_read(&mut pipe, &record.key.0, fields);
                asked.push(i);
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let replies = self
            .conn
            .pipeline(&mut pipe, "reading hash field expiry")
            .await?;
        let mut replies = replies.into_iter();
        let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;
        for (i, reply) in asked.into_iter().zip(replies) {
            let record = &mut records[i];
            let Value::Hash(fields) = &mut record.value else {
                continue;
            };
            match apply_field_expiry(fields, reply, now_ms) {
                Ok(expiry) => record.field_expiry = expiry,
                Err(reason) => {
                    return Err(self.protocol(format!("HPEXPIRETIME: {reason}")));
                }
            }
        }
        Ok(())
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

    fn add_first_read(&self, pipe: &mut redis::Pipeline, key: &[u8], read: &FirstRead) {
        let n = self.chunks.first_elements;
        match read {
            FirstRead::String => {
                pipe.cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(self.chunks.first_string_bytes as i64 - 1);
            }
            FirstRead::Scan(command) => {
                pipe.cmd(command).arg(key).arg(0).arg("COUNT").arg(n);
            }
            FirstRead::List => {
                pipe.cmd("LRANGE").arg(key).arg(0).arg(n as i64 - 1);
            }
            FirstRead::Stream => {
                pipe.cmd("XINFO").arg("STREAM").arg(key);
                pipe.cmd("XINFO").arg("GROUPS").arg(key);
                pipe.cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(n);
            }
            FirstRead::Dump => {
                pipe.cmd("DUMP").arg(key);
            }
        }
    }

    fn first_record(
        &self,
        key: &[u8],
        type_name: Option<String>,
        read: &FirstRead,
        pttl: Reply,
        parts: Vec<Reply>,
        now_ms: i64,
    ) -> std::result::Result<(Record, Resume), KeyFault> {
        let expiry = match ok(pttl)? {
            Reply::Int(-2) => return Err(KeyFault::Vanished),
            Reply::Int(at) if at >= 0 && self.exact_expiry => Some(Expiry {
                at_ms: at,
                ttl_ms: (at - now_ms).max(1),
            }),
            Reply::Int(ms) if ms >= 0 => Some(Expiry {
                at_ms: now_ms + ms,
                ttl_ms: ms.max(1),
            }),
            _ => None,
        };
        let mut parts = parts.into_iter();
        let mut next = || ok(parts.next().unwrap_or(Reply::Nil));
        let n = self.chunks.first_elements;
        let (value, resume) = match read {
            FirstRead::String => {
                let bytes = bytes_of(next()?);
                let resume = if bytes.len() >= self.chunks.first_string_bytes {
                    Resume::String {
                        offset: bytes.len(),
                    }
                } else {
                    Resume::Done
                };
                (Value::String(Bytes(bytes)), resume)
            }
            FirstRead::Scan(command) => {
                let (cursor, items) = scan_reply(next()?).map_err(KeyFault::Refused)?;
                if items.is_empty() && cursor == b"0" {
                    return Err(KeyFault::Vanished);
                }
                let value = scan_value(command, items).map_err(KeyFault::Refused)?;
                (value, scan_resume(command, cursor))
            }
            FirstRead::List => {
                let items = array_of(next()?);
                if items.is_empty() {
                    return Err(KeyFault::Vanished);
                }
                let resume = if items.len() >= n {
                    Resume::List {
                        offset: items.len(),
                    }
                } else {
                    Resume::Done
                };
                (
                    Value::List(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
                    resume,
                )
            }
            FirstRead::Stream => {
                let info = next()?;
                if matches!(info, Reply::Nil) {
                    return Err(KeyFault::Vanished);
                }
                let mut meta = stream_meta(info).map_err(KeyFault::Refused)?;
                meta.groups = stream_groups(next()?).map_err(KeyFault::Refused)?;
                let mut entries = stream_entries(next()?).map_err(KeyFault::Refused)?;
                // Entries added after XINFO belong to a later state of the stream.
                entries.retain(|e| e.id <= meta.last_id);
                let resume = match entries.last() {
                    Some(last) if entries.len() >= n => match last.id.next() {
                        Some(from) if from <= meta.last_id => Resume::Stream {
                            from,
                            last: meta.last_id,
                        },
                        _ => Resume::Done,
                    },
                    _ => Resume::Done,
                };
                (
                    Value::Stream(StreamChunk {
                        meta: Some(meta),
                        entries,
                        pending: Vec::new(),
                    }),
                    resume,
                )
            }
            FirstRead::Dump => {
                let reply = next()?;
                if matches!(reply, Reply::Nil) {
                    return Err(KeyFault::Vanished);
                }
                let payload = bytes_of(reply);
                let type_name = type_name.unwrap_or_default();
                (Value::Dump(dump_value(&payload, type_name)), Resume::Done)
            }
        };
        Ok((
            Record {
                key: Bytes(key.to_vec()),
                expiry,
                part: 0,
                more: !matches!(resume, Resume::Done),
                field_expiry: Vec::new(),
                void: false,
                value,
            },
            resume,
        ))
    }

    async fn read_more(
        &mut self,
        key: &[u8],
        t: KeyType,
        resume: Resume,
    ) -> std::result::Result<(Value, Vec<FieldExpiry>, Resume), String> {
        let n = self.chunks.elements;
        let action = "reading a big key";
        let query = |conn: &mut Conn, cmd: redis::Cmd| {
            let mut conn = conn.clone();
            async move {
                conn.query::<Reply>(&cmd, action)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        match resume {
            Resume::Done => Ok((empty_value(t), Vec::new(), Resume::Done)),
            Resume::String { offset } => {
                let size = self.chunks.string_bytes;
                let mut cmd = redis::cmd("GETRANGE");
                cmd.arg(key).arg(offset).arg(offset + size - 1);
                let bytes = bytes_of(query(&mut self.conn, cmd).await?);
                let resume = if bytes.len() >= size {
                    Resume::String {
                        offset: offset + bytes.len(),
                    }
                } else {
                    Resume::Done
                };
                Ok((Value::String(Bytes(bytes)), Vec::new(), resume))
            }
            Resume::Scan { command, cursor } => {
                let mut cmd = redis::cmd(command);
                cmd.arg(key).arg(&cursor[..]).arg("COUNT").arg(n);
                let (cursor, items) = scan_reply(query(&mut self.conn, cmd).await?)?;
                let mut value = scan_value(command, items)?;
                let mut field_expiry = Vec::new();
                if self.field_expiry
                    && let Value::Hash(fields) = &mut value
                    && !fields.is_empty()
                {
                    let mut pipe = redis::pipe();
                    pipe.cmd("TIME");
                    add_field_expiry_read(&mut pipe, key, fields);
                    let replies = self
                        .conn
                        .pipeline(&mut pipe, action)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut replies = replies.into_iter();
                    let now_ms = parse_time(replies.next())?;
                    field_expiry =
                        apply_field_expiry(fields, replies.next().unwrap_or(Reply::Nil), now_ms)?;
                }
                Ok((value, field_expiry, scan_resume(command, cursor)))
            }
            Resume::List { offset } => {
                let mut cmd = redis::cmd("LRANGE");
                cmd.arg(key).arg(offset).arg(offset + n - 1);
                let items = array_of(query(&mut self.conn, cmd).await?);
                let resume = if items.len() >= n {
                    Resume::List {
                        offset: offset + items.len(),
                    }
                } else {
                    Resume::Done
                };
                Ok((
                    Value::List(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
                    Vec::new(),
                    resume,
                ))
            }
            Resume::Stream { from, last } => {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(key)
                    .arg(from.to_string())
                    .arg(last.to_string())
                    .arg("COUNT")
                    .arg(n);
                let entries = stream_entries(query(&mut self.conn, cmd).await?)?;
                let resume = match entries.last().and_then(|e| e.id.next()) {
                    Some(from) if entries.len() >= n && from <= last => {
                        Resume::Stream { from, last }
                    }
                    _ => Resume::Done,
                };
                Ok((
                    Value::Stream(StreamChunk {
                        meta: None,
                        entries,
                        pending: Vec::new(),
                    }),
                    Vec::new(),
                    resume,
                ))
            }
            Resume::Pending(cursor) => {
                let (pending, next) = crate::pel::read_page(&mut self.conn, key, cursor, n).await?;
                Ok((
                    Value::Stream(StreamChunk {
                        meta: None,
                        entries: Vec::new(),
                        pending,
                    }),
                    Vec::new(),
                    next.map_or(Resume::Done, Resume::Pending),
                ))
            }
        }
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
        let pieces = value.split(RECORD_TARGET_BYTES);
        let last = pieces.len() - 1;
        let mut field_expiry = FieldExpiries::new(field_expiry, pieces.len() > 1);
        for (i, value) in pieces.into_iter().enumerate() {
            let record = Record {
                key: key.clone(),
                expiry: if *part == 0 { expiry } else { None },
                part: *part,
                more: i < last || more,
                field_expiry: field_expiry.take_for(&value),
                void: false,
                value,
            };
            *part += 1;
            self.send(record).await?;
        }
        Ok(())
    }

    /// Wait for room in the in-flight byte budget, then hand the record to
    /// the writer; the budget is given back once it has been written.
    pub(crate) async fn send(&mut self, record: Record) -> Result<()> {
        let stopped = || Error::Internal("the archive writer stopped early".into());
        // The turn first, then the budget: a reader waiting for its turn
        // holds no budget that the one sending a split key needs.
        if self.held.is_none() {
            self.held = Some(self.sequence.clone().lock_owned().await);
        }
        let last = !record.more;
        let bytes = record.value.approx_bytes().clamp(1, IN_FLIGHT_BYTES) as u32;
        let budget = self
            .budget
            .clone()
            .acquire_many_owned(bytes)
            .await
            .map_err(|_| stopped())?;
        self.out
            .send(Outgoing {
                record,
                _budget: budget,
            })
            .await
            .map_err(|_| stopped())?;
        if last {
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

/// `HPEXPIRETIME key FIELDS n field...` for the fields of one chunk.
fn add_field_expiry_read(pipe: &mut redis::Pipeline, key: &[u8], fields: &[(Bytes, Bytes)]) {
    let c = pipe
        .cmd("HPEXPIRETIME")
        .arg(key)
        .arg("FIELDS")
        .arg(fields.len());
    for (f, _) in fields {
        c.arg(&f.0[..]);
    }
}

/// Apply an HPEXPIRETIME reply (one integer per field: -2 no such field,
/// -1 no expiry, else the time in ms) to the fields it was asked for:
/// fields gone since are dropped, the others' expiry returned.
fn apply_field_expiry(
    fields: &mut Vec<(Bytes, Bytes)>,
    reply: Reply,
    now_ms: i64,
) -> std::result::Result<Vec<FieldExpiry>, String> {
    if let Reply::ServerError(e) = &reply {
        return Err(e.to_string());
    }
    let times = array_of(reply);
    if times.len() != fields.len() {
        return Err(format!(
            "{} replies for {} fields",
            times.len(),
            fields.len()
        ));
    }
    let mut expiry = Vec::new();
    let mut keep = times.iter().map(|t| !matches!(t, Reply::Int(-2)));
    fields.retain(|_| keep.next().unwrap_or(true));
    let times = times.into_iter().filter(|t| !matches!(t, Reply::Int(-2)));
    for ((field, _), at) in fields.iter().zip(times) {
        match at {
            Reply::Int(at) if at >= 0 => expiry.push(FieldExpiry {
                field: field.clone(),
                at_ms: at,
                ttl_ms: (at - now_ms).max(1),
            }),
            Reply::Int(-1) => {}
            other => return Err(format!("unexpected reply {other:?}")),
        }
    }
    Ok(expiry)
}

/// Hands each piece of a split hash chunk the expiry of its own fields.
struct FieldExpiries {
    all: Vec<FieldExpiry>,
    by_field: Option<HashMap<Vec<u8>, FieldExpiry>>,
}

impl FieldExpiries {
    fn new(all: Vec<FieldExpiry>, split: bool) -> Self {
        let by_field = (split && !all.is_empty())
            .then(|| all.iter().map(|e| (e.field.0.clone(), e.clone())).collect());
        FieldExpiries { all, by_field }
    }

    fn take_for(&mut self, piece: &Value) -> Vec<FieldExpiry> {
        match (&mut self.by_field, piece) {
            (None, _) => std::mem::take(&mut self.all),
            (Some(map), Value::Hash(fields)) => fields
                .iter()
                .filter_map(|(f, _)| map.remove(&f.0))
                .collect(),
            (Some(_), _) => Vec::new(),
        }
    }
}

fn ok(reply: Reply) -> std::result::Result<Reply, KeyFault> {
    match reply {
        Reply::ServerError(e) => Err(KeyFault::Refused(e.to_string())),
        other => Ok(other),
    }
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

fn scan_resume(command: &'static str, cursor: Vec<u8>) -> Resume {
    if cursor == b"0" {
        Resume::Done
    } else {
        Resume::Scan { command, cursor }
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
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
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
