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

use std::collections::{BTreeMap, HashSet};

use redis::Value as Reply;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::connection::{Conn, ServerInfo};
use crate::error::{Error, Result};
use crate::record::{
    Bytes, ConsumerGroup, DumpValue, Expiry, KeyType, Record, Score, StreamChunk, StreamEntry,
    StreamId, StreamMeta, Value, parse_score,
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
    pub by_type: BTreeMap<KeyType, TypeSummary>,
    /// Keys that were gone before their type was known.
    pub vanished_untyped: u64,
    pub errors: Vec<KeyError>,
    pub error_count: u64,
}

impl FetchStats {
    pub fn vanished(&self) -> u64 {
        self.vanished_untyped + self.by_type.values().map(|t| t.vanished).sum::<u64>()
    }

    /// Add another reader's tallies (one per cluster node) to these.
    pub fn absorb(&mut self, other: FetchStats) {
        for (t, summary) in other.by_type {
            let mine = self.by_type.entry(t).or_default();
            mine.exported += summary.exported;
            mine.vanished += summary.vanished;
            mine.errors += summary.errors;
        }
        self.vanished_untyped += other.vanished_untyped;
        self.error_count += other.error_count;
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
pub const RECORD_TARGET_BYTES: usize = 8 << 20;

/// Bytes of records read but not yet written. Reads wait when it is used
/// up, so a slow disk slows the reads instead of filling memory.
pub const IN_FLIGHT_BYTES: usize = 16 << 20;

/// A record on its way to the writer, holding its share of the in-flight
/// byte budget until it is dropped after writing.
#[derive(Debug)]
pub struct Outgoing {
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
    pub stats: FetchStats,
    /// Read expiry with PEXPIRETIME (Redis 7.0+): the absolute time exactly,
    /// where PTTL + TIME can be a millisecond off.
    exact_expiry: bool,
}

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
        }
    }

    /// Another reader on `conn` (a cluster node) that feeds the same writer
    /// within the same byte budget.
    pub fn sharing(&self, conn: Conn) -> Self {
        Fetcher {
            conn,
            chunks: self.chunks,
            out: self.out.clone(),
            budget: self.budget.clone(),
            sequence: self.sequence.clone(),
            held: None,
            stats: FetchStats::default(),
            exact_expiry: self.exact_expiry,
        }
    }

    /// Read expiry times as the server holds them (PEXPIRETIME), when it can.
    pub fn for_server(mut self, server: &ServerInfo) -> Self {
        self.exact_expiry = server.has_pexpiretime();
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

        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let mut reads = Vec::with_capacity(typed.len());
        for (key, t, _) in &typed {
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
        let mut replies = replies.into_iter();
        let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;

        for ((key, t, type_name), read) in typed.into_iter().zip(reads) {
            let pttl = replies.next().unwrap_or(Reply::Nil);
            let parts: Vec<Reply> = replies.by_ref().take(read.replies()).collect();
            match self.first_record(&key, type_name, &read, pttl, parts, now_ms) {
                Ok((record, resume)) => self.emit_key(record, resume).await?,
                Err(KeyFault::Vanished) => self.stats.vanish(Some(t)),
                Err(KeyFault::Refused(reason)) => match retry.as_deref_mut() {
                    Some(list) if reason.starts_with("WRONGTYPE") => list.push(key),
                    _ => self.stats.fail(&key, t, reason),
                },
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
                value,
            },
            resume,
        ))
    }

    /// Send a key's first record, then read and send the rest of it.
    async fn emit_key(&mut self, mut first: Record, resume: Resume) -> Result<()> {
        // A stream's consumers go in its first record; its groups' pending
        // entries are read after its entries.
        let entries_done = matches!(resume, Resume::Done);
        let n = self.chunks.first_elements;
        let mut pending = match &mut first.value {
            Value::Stream(chunk) => {
                match crate::pel::read_groups(&mut self.conn, &first.key.0, chunk, entries_done, n)
                    .await?
                {
                    Ok(cursor) => cursor,
                    Err(reason) => {
                        let reason = format!("changed while being read: {reason}");
                        self.stats.fail(&first.key.0, KeyType::Stream, reason);
                        return Ok(());
                    }
                }
            }
            _ => None,
        };
        let mut resume = then_pending(resume, &mut pending);
        let key = first.key.clone();
        let key_type = first.key_type();
        let mut part = 0;
        let mut complete = true;
        let more = !matches!(resume, Resume::Done);
        self.send_pieces(&key, &mut part, first.expiry, first.value, more)
            .await?;
        while !matches!(resume, Resume::Done) {
            let (value, next) = match self.read_more(&key.0, key_type, resume).await {
                Ok(v) => v,
                // The key went away or changed mid-read: close it with what we
                // have, so the archive stays well-formed; its data is as of the
                // moment it changed, like any live read.
                Err(reason) => {
                    complete = false;
                    pending = None;
                    self.stats.fail(
                        &key.0,
                        key_type,
                        format!("changed while being read: {reason}"),
                    );
                    (empty_value(key_type), Resume::Done)
                }
            };
            resume = then_pending(next, &mut pending);
            let more = !matches!(resume, Resume::Done);
            self.send_pieces(&key, &mut part, None, value, more).await?;
        }
        if complete {
            self.stats.by_type.entry(key_type).or_default().exported += 1;
        }
        Ok(())
    }

    async fn read_more(
        &mut self,
        key: &[u8],
        t: KeyType,
        resume: Resume,
    ) -> std::result::Result<(Value, Resume), String> {
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
            Resume::Done => Ok((empty_value(t), Resume::Done)),
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
                Ok((Value::String(Bytes(bytes)), resume))
            }
            Resume::Scan { command, cursor } => {
                let mut cmd = redis::cmd(command);
                cmd.arg(key).arg(&cursor[..]).arg("COUNT").arg(n);
                let (cursor, items) = scan_reply(query(&mut self.conn, cmd).await?)?;
                Ok((scan_value(command, items)?, scan_resume(command, cursor)))
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
        more: bool,
    ) -> Result<()> {
        let pieces = value.split(RECORD_TARGET_BYTES);
        let last = pieces.len() - 1;
        for (i, value) in pieces.into_iter().enumerate() {
            let record = Record {
                key: key.clone(),
                expiry: if *part == 0 { expiry } else { None },
                part: *part,
                more: i < last || more,
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

fn ok(reply: Reply) -> std::result::Result<Reply, KeyFault> {
    match reply {
        Reply::ServerError(e) => Err(KeyFault::Refused(e.to_string())),
        other => Ok(other),
    }
}

pub(crate) fn parse_time(reply: Option<Reply>) -> std::result::Result<i64, String> {
    let items = array_of(reply.unwrap_or(Reply::Nil));
    let num = |v: Option<&Reply>| -> Option<i64> {
        std::str::from_utf8(&bytes_of(v?.clone()))
            .ok()?
            .parse()
            .ok()
    };
    match (num(items.first()), num(items.get(1))) {
        (Some(s), Some(us)) => Ok(s * 1000 + us / 1000),
        _ => Err("TIME returned an unexpected reply".into()),
    }
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

pub(crate) fn bytes_of(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::BulkString(b) => b,
        Reply::SimpleString(s) => s.into_bytes(),
        Reply::VerbatimString { text, .. } => text.into_bytes(),
        Reply::Int(i) => i.to_string().into_bytes(),
        Reply::Okay => b"OK".to_vec(),
        Reply::Double(d) => d.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(crate) fn array_of(reply: Reply) -> Vec<Reply> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items,
        Reply::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn scan_reply(reply: Reply) -> std::result::Result<(Vec<u8>, Vec<Reply>), String> {
    let mut parts = array_of(reply).into_iter();
    match (parts.next(), parts.next()) {
        (Some(cursor), Some(items)) => Ok((bytes_of(cursor), array_of(items))),
        _ => Err("unexpected SCAN reply".into()),
    }
}

fn scan_value(command: &str, items: Vec<Reply>) -> std::result::Result<Value, String> {
    Ok(match command {
        "HSCAN" => Value::Hash(pairs(items).collect()),
        "SSCAN" => Value::Set(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
        "ZSCAN" => {
            let mut members = Vec::with_capacity(items.len() / 2);
            for (member, score) in pairs(items) {
                let score =
                    parse_score(&score.0).ok_or_else(|| format!("bad score {:?}", score))?;
                members.push((member, Score(score)));
            }
            Value::Zset(members)
        }
        other => return Err(format!("no value for {other}")),
    })
}

fn pairs(items: Vec<Reply>) -> impl Iterator<Item = (Bytes, Bytes)> {
    let mut it = items.into_iter();
    std::iter::from_fn(move || {
        let a = it.next()?;
        let b = it.next()?;
        Some((Bytes(bytes_of(a)), Bytes(bytes_of(b))))
    })
}

/// Field/value pairs of an XINFO reply (flat in RESP2, a map in RESP3).
pub(crate) fn info_fields(reply: Reply) -> Vec<(String, Reply)> {
    let mut it = array_of(reply).into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((String::from_utf8_lossy(&bytes_of(k)).into_owned(), v));
    }
    out
}

pub(crate) fn stream_id_of(reply: &Reply) -> Option<StreamId> {
    StreamId::parse(std::str::from_utf8(&bytes_of(reply.clone())).ok()?)
}

pub(crate) fn u64_of(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Int(i) if *i >= 0 => Some(*i as u64),
        Reply::Nil => None,
        other => std::str::from_utf8(&bytes_of(other.clone()))
            .ok()?
            .parse()
            .ok(),
    }
}

fn stream_meta(reply: Reply) -> std::result::Result<StreamMeta, String> {
    let mut meta = StreamMeta {
        last_id: StreamId::default(),
        entries_added: None,
        max_deleted_id: None,
        groups: Vec::new(),
    };
    let mut has_last = false;
    for (name, value) in info_fields(reply) {
        match name.as_str() {
            "last-generated-id" => {
                meta.last_id = stream_id_of(&value).ok_or("bad last-generated-id")?;
                has_last = true;
            }
            "entries-added" => meta.entries_added = u64_of(&value),
            "max-deleted-entry-id" => meta.max_deleted_id = stream_id_of(&value),
            _ => {}
        }
    }
    if !has_last {
        return Err("XINFO STREAM has no last-generated-id".into());
    }
    Ok(meta)
}

fn stream_groups(reply: Reply) -> std::result::Result<Vec<ConsumerGroup>, String> {
    let mut groups = Vec::new();
    for group in array_of(reply) {
        let mut name = None;
        let mut last = None;
        let mut entries_read = None;
        for (field, value) in info_fields(group) {
            match field.as_str() {
                "name" => name = Some(Bytes(bytes_of(value))),
                "last-delivered-id" => last = stream_id_of(&value),
                "entries-read" => entries_read = u64_of(&value),
                _ => {}
            }
        }
        match (name, last) {
            (Some(name), Some(last_delivered_id)) => groups.push(ConsumerGroup {
                name,
                last_delivered_id,
                entries_read,
                consumers: Vec::new(),
            }),
            _ => return Err("XINFO GROUPS reply lacks name or last-delivered-id".into()),
        }
    }
    Ok(groups)
}

pub(crate) fn stream_entries(reply: Reply) -> std::result::Result<Vec<StreamEntry>, String> {
    let mut entries = Vec::new();
    for entry in array_of(reply) {
        let mut parts = array_of(entry).into_iter();
        let id = parts
            .next()
            .and_then(|r| stream_id_of(&r))
            .ok_or("stream entry without an id")?;
        let fields = pairs(parts.next().map(array_of).unwrap_or_default()).collect();
        entries.push(StreamEntry { id, fields });
    }
    Ok(entries)
}

/// A DUMP payload ends with a 2-byte little-endian RDB version and an
/// 8-byte CRC64.
fn dump_value(payload: &[u8], type_name: String) -> DumpValue {
    let rdb_version = if payload.len() >= 10 {
        let at = payload.len() - 10;
        u16::from_le_bytes([payload[at], payload[at + 1]])
    } else {
        0
    };
    DumpValue {
        type_name,
        rdb_version,
        payload: Bytes(payload.to_vec()),
    }
}

/// Keys SCAN returned in one step, without duplicates within the step.
pub fn dedupe(keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_trailer_gives_rdb_version() {
        let mut payload = vec![0u8; 5];
        payload.extend_from_slice(&[11, 0]);
        payload.extend_from_slice(&[0; 8]);
        assert_eq!(dump_value(&payload, "MBbloom--".into()).rdb_version, 11);
    }

    #[test]
    fn dedupe_keeps_first_occurrence_order() {
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        assert_eq!(dedupe(keys), vec![b"a".to_vec(), b"b".to_vec()]);
    }
}
