//! A batch read by each key's encoding, over the lean link to one server
//! (a single server, or one primary of a cluster).
//!
//! The first round trip asks every key's `OBJECT ENCODING`, which says
//! both what the key is and whether its size is bounded. A value in a
//! compact encoding (listpack, intset, ziplist, ...: small by the server's
//! own limits) is read with `DUMP`, one bulk string, and decoded by the RDB
//! reader into the very records an RDB file gives (hash field expiry
//! included, so no `HPEXPIRETIME`). Strings are read with `GETRANGE`, and
//! the other encodings (hashtable, skiplist, quicklist), whose size is not
//! known, with their usual first page; a key that needs more is read under
//! `WATCH` as before. A stream is asked `XLEN` and `MEMORY USAGE` first
//! (exact for a stream of few nodes, as every node is counted) and read
//! with `DUMP` in a third round trip when small, groups and pending
//! entries included, which spares it the reads under `WATCH`.
//!
//! The lean link holds `DUMP` payloads and string ranges to a byte budget
//! per request, so a key that grew or changed between the round trips is
//! never held whole: its reply is read past and the key read the usual
//! way, in its place. So are keys whose encoding or payload this reader
//! does not know. A server or user that refuses `OBJECT`, `DUMP`, `XLEN`
//! or `MEMORY` has the batch (and the rest of the export) read the usual
//! way: nothing was sent before the whole batch was read.

use crate::connection::{Replies, Request, Wire};
use crate::rdb::{DumpBatch, RdbItem, RdbOptions, RdbReader, VERSIONS};

use super::chunks::{FirstRead, Resume};
use super::shapes::Shape;
use super::*;

/// Streams with at most this many entries (so at most this many listpack
/// nodes, each counted exactly by `MEMORY USAGE ... SAMPLES`) ...
const STREAM_DUMP_ENTRIES: i64 = 128;
/// ... and at most this many bytes by that count are read with `DUMP`.
const STREAM_DUMP_BYTES: i64 = 1 << 20;

/// Bytes of `DUMP` payloads and string ranges that one request may bring;
/// a reply that does not fit is read past, and its key read the usual way.
pub(crate) const REQUEST_BYTES: usize = 8 << 20;

/// How a key is read, by its encoding.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// A compact encoding: `DUMP`.
    Dump,
    /// A string, or the first page of a collection of unknown size.
    Read(FirstRead),
    /// A hashtable: a hash or a set, so `HSCAN` and `SSCAN` (one fits).
    HashOrSet,
    /// Asked its length and size, then maybe `DUMP`.
    Stream,
    /// Read the usual way (`TYPE` first), in its place.
    Usual,
    /// Nothing to read: gone, or of a type not selected.
    Nothing,
}

/// What became of a key in the batch, sent in key order at the end.
enum Got {
    /// Read whole.
    Ready(Record),
    /// Its `DUMP` payload is the next in one of the batch's RDB streams
    /// (`late`: the streams', read in the third round trip).
    Dumped {
        expiry: Option<Expiry>,
        t: KeyType,
        wanted: bool,
        late: bool,
    },
    /// Needs more reads: read under `WATCH`.
    Watched(KeyType),
    /// Read the usual way, in its place.
    Usual,
    /// Counted already (vanished, failed) or not selected.
    Nothing,
}

/// A batch, read: what became of each key, the `DUMP` payloads of the
/// second and third round trips, and the server's clock at the second.
struct Read {
    got: Vec<Got>,
    dumps: DumpBatch,
    late: DumpBatch,
    now_ms: i64,
}

/// The server or user refused one of this path's commands.
struct Refused;

/// The lean link, once asked for.
#[derive(Debug, Default)]
pub(super) enum Lean {
    /// Not opened yet.
    #[default]
    Untried,
    Open(Box<Wire>),
    /// Not for this connection (a whole cluster, a server whose `DUMP`
    /// payloads this reader does not read), or refused.
    Off,
}

impl Fetcher {
    /// Read `keys` by their encoding when the lean link can; `Some(keys)`
    /// hands them back, untouched, to be read the usual way.
    pub(super) async fn fetch_encoded(
        &mut self,
        keys: Vec<Vec<u8>>,
        known_type: Option<KeyType>,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Result<Option<Vec<Vec<u8>>>> {
        if matches!(self.lean, Lean::Untried) {
            let wire = match self.dumps_readable {
                true => self.conn.open_wire().await,
                false => None,
            };
            self.lean = match wire {
                Some(Ok(wire)) => Lean::Open(Box::new(wire)),
                // A link the driver opened but this one cannot (an unusual
                // TLS setup): the usual reads work, so they are used.
                _ => Lean::Off,
            };
        }
        let mut wire = match std::mem::take(&mut self.lean) {
            Lean::Open(wire) => wire,
            other => {
                self.lean = other;
                return Ok(Some(keys));
            }
        };
        let read = read_batch(&mut wire, self, &keys, known_type, accept).await;
        self.lean = Lean::Open(wire);
        match read? {
            Ok(read) => {
                self.send_in_order(keys, read, accept).await?;
                Ok(None)
            }
            Err(Refused) => {
                self.lean = Lean::Off;
                Ok(Some(keys))
            }
        }
    }

    /// Send what was read, in key order; keys to read the usual way or
    /// under WATCH are read in their place.
    async fn send_in_order(
        &mut self,
        keys: Vec<Vec<u8>>,
        read: Read,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Result<()> {
        let Read {
            mut got,
            dumps,
            late,
            now_ms,
        } = read;
        if self.field_expiry {
            let mut hashes: Vec<&mut Record> = got
                .iter_mut()
                .filter_map(|g| match g {
                    Got::Ready(r) => Some(r),
                    _ => None,
                })
                .collect();
            self.add_field_expiry(&mut hashes).await?;
        }
        let open = |batch: DumpBatch| match batch.is_empty() {
            true => None,
            false => batch
                .reader(RdbOptions::new(now_ms, RECORD_TARGET_BYTES))
                .ok(),
        };
        let mut readers = [open(dumps), open(late)];
        let mut usual = Vec::new();
        for (key, g) in keys.into_iter().zip(got) {
            if !matches!(g, Got::Usual) && !usual.is_empty() {
                self.fetch_once(std::mem::take(&mut usual), None, accept, None)
                    .await?;
            }
            match g {
                Got::Ready(record) => self.send_whole(record),
                Got::Dumped {
                    expiry,
                    wanted,
                    late,
                    ..
                } => {
                    let reader = &mut readers[usize::from(late)];
                    let sent = match reader.as_mut() {
                        Some(r) => self.send_dumped(r, &key, expiry, wanted).await?,
                        None => false,
                    };
                    if !sent {
                        // The payloads could not be decoded: this key and
                        // the rest of its stream's are read the usual way.
                        *reader = None;
                        usual.push(key);
                    }
                }
                Got::Watched(t) => self.read_watched(key, t, None).await?,
                Got::Usual => usual.push(key),
                Got::Nothing => {}
            }
        }
        if !usual.is_empty() {
            self.fetch_once(usual, None, accept, None).await?;
        }
        Ok(())
    }

    /// Send `key`'s records from the batch's RDB stream; false when the
    /// stream could not be decoded before any of them was sent (a part
    /// already sent is voided first).
    async fn send_dumped<R: std::io::BufRead>(
        &mut self,
        reader: &mut RdbReader<R>,
        key: &[u8],
        expiry: Option<Expiry>,
        wanted: bool,
    ) -> Result<bool> {
        let mut part = 0;
        let mut t = None;
        loop {
            match reader.next_item(&mut |_| true) {
                Ok(Some(RdbItem::Record { mut record, .. })) if record.key.0 == key => {
                    let more = record.more;
                    t = Some(record.key_type());
                    if wanted {
                        if part == 0 {
                            record.expiry = expiry;
                        }
                        part += 1;
                        self.outbox.push(record);
                    }
                    if !more {
                        if let Some(t) = t.filter(|_| wanted) {
                            self.stats.by_type.entry(t).or_default().exported += 1;
                        }
                        return Ok(true);
                    }
                }
                // Every field of a hash expired since it was read.
                Ok(Some(RdbItem::Skipped { info, .. })) if info.key.0 == key => {
                    if wanted {
                        self.stats.vanish(Some(info.key_type));
                    }
                    return Ok(true);
                }
                _ => {
                    if let Some(t) = t.filter(|_| part > 0) {
                        self.send(Record {
                            part,
                            void: true,
                            ..Record::new(Bytes(key.to_vec()), empty_value(t))
                        })
                        .await?;
                    }
                    return Ok(false);
                }
            }
        }
    }
}

/// The round trips of one batch; see the module docs.
async fn read_batch(
    wire: &mut Wire,
    fetcher: &mut Fetcher,
    keys: &[Vec<u8>],
    known_type: Option<KeyType>,
    accept: &(dyn Fn(KeyType) -> bool + Sync),
) -> Result<std::result::Result<Read, Refused>> {
    let action = "reading keys";
    // Room for a few commands per key, so the requests are not regrown.
    let room = keys.iter().map(|k| k.len() + 48).sum::<usize>();
    // A key whose type SCAN filtered by, the caller expects, or its shape
    // says, is read straight away; the others are asked their encoding first.
    let mut plans = Vec::with_capacity(keys.len());
    let mut guessed = vec![false; keys.len()];
    let shapes: Vec<Shape> = keys.iter().map(|k| Shape::of(k)).collect();
    let mut ask = Request::with_capacity(room);
    for (i, key) in keys.iter().enumerate() {
        let hint = fetcher.hints.get(i).copied();
        let guess = hint
            .or_else(|| fetcher.shapes.guess(shapes[i]))
            .filter(|&t| accept(t));
        match known_type.or(guess).and_then(Plan::of_type) {
            Some(plan) => {
                guessed[i] = known_type.is_none();
                plans.push(Some(plan));
            }
            None => {
                ask.cmd(&[b"OBJECT", b"ENCODING", key]);
                plans.push(None);
            }
        }
    }
    let mut encodings = match ask.is_empty() {
        true => Replies::default(),
        false => wire.round_trip(&ask, 0, action).await?,
    };
    if encodings
        .values()
        .any(|r| matches!(r, Reply::ServerError(_)))
    {
        return Ok(Err(Refused));
    }
    let mut asked = 0;
    let plans: Vec<Plan> = plans
        .into_iter()
        .map(|chosen| {
            if let Some(chosen) = chosen {
                return chosen;
            }
            asked += 1;
            match encodings.bytes(asked - 1) {
                Some(name) => match plan(name, known_type) {
                    (_, Some(t)) if !accept(t) => Plan::Nothing,
                    (plan, _) => plan,
                },
                None => match encodings.take(asked - 1) {
                    Reply::Nil => {
                        fetcher.stats.vanish(None);
                        Plan::Nothing
                    }
                    _ => Plan::Usual,
                },
            }
        })
        .collect();

    let sizes = Sizes::of(&fetcher.chunks);
    let mut read = Request::with_capacity(3 * room);
    read.cmd(&[b"TIME"]);
    for (key, plan) in keys.iter().zip(&plans) {
        match plan {
            Plan::Dump => {
                fetcher.ask_expiry(&mut read, key);
                read.cmd(&[b"DUMP", key]).capped();
            }
            Plan::Read(first) => {
                fetcher.ask_expiry(&mut read, key);
                sizes.first_read(&mut read, key, *first);
            }
            Plan::HashOrSet => {
                fetcher.ask_expiry(&mut read, key);
                sizes.first_read(&mut read, key, FirstRead::Scan("HSCAN"));
                sizes.first_read(&mut read, key, FirstRead::Scan("SSCAN"));
            }
            Plan::Stream => {
                read.cmd(&[b"XLEN", key]);
                read.cmd(&[b"MEMORY", b"USAGE", key, b"SAMPLES", &sizes.stream_samples]);
            }
            Plan::Usual | Plan::Nothing => {}
        }
    }
    let replies = wire.round_trip(&read, REQUEST_BYTES, action).await?;
    if replies.values().any(refused_command) {
        return Ok(Err(Refused));
    }
    let mut at = Taken::new(replies);
    let now_ms = parse_time(Some(at.take())).map_err(|e| fetcher.protocol(e))?;
    let mut dumps = DumpBatch::new();
    let mut got = Vec::with_capacity(keys.len());
    let mut streams = Vec::new();
    for (i, (key, plan)) in keys.iter().zip(&plans).enumerate() {
        got.push(match plan {
            Plan::Dump => {
                let expiry = at.take();
                fetcher.dumped(&mut at, &mut dumps, key, expiry, now_ms, None, accept)
            }
            Plan::Read(first) => {
                let expiry = at.take();
                match at.over_budget() {
                    true => {
                        at.skip();
                        Got::Usual
                    }
                    false => {
                        let part = at.take();
                        fetcher.first_got(key, *first, expiry, part, now_ms, accept)
                    }
                }
            }
            Plan::HashOrSet => {
                let expiry = at.take();
                let hash = at.take();
                let set = at.take();
                match (hash, set) {
                    (Reply::ServerError(_), Reply::ServerError(_)) => Got::Usual,
                    (Reply::ServerError(_), set) => {
                        let read = FirstRead::Scan("SSCAN");
                        fetcher.first_got(key, read, expiry, set, now_ms, accept)
                    }
                    (hash, _) => {
                        let read = FirstRead::Scan("HSCAN");
                        fetcher.first_got(key, read, expiry, hash, now_ms, accept)
                    }
                }
            }
            Plan::Stream => match (at.take(), at.take()) {
                (_, Reply::Nil) => {
                    fetcher.stats.vanish(Some(KeyType::Stream));
                    Got::Nothing
                }
                (Reply::Int(n), Reply::Int(bytes))
                    if n <= STREAM_DUMP_ENTRIES && bytes <= STREAM_DUMP_BYTES =>
                {
                    streams.push(i);
                    Got::Nothing
                }
                (Reply::Int(_), Reply::Int(_)) => Got::Watched(KeyType::Stream),
                _ => Got::Usual,
            },
            Plan::Usual => Got::Usual,
            Plan::Nothing => Got::Nothing,
        });
    }

    let mut late = DumpBatch::new();
    if !streams.is_empty() {
        let mut request = Request::new();
        request.cmd(&[b"TIME"]);
        for &i in &streams {
            fetcher.ask_expiry(&mut request, &keys[i]);
            request.cmd(&[b"DUMP", &keys[i]]).capped();
        }
        let replies = wire.round_trip(&request, REQUEST_BYTES, action).await?;
        if replies.values().any(refused_command) {
            return Ok(Err(Refused));
        }
        let mut at = Taken::new(replies);
        let now_ms = parse_time(Some(at.take())).map_err(|e| fetcher.protocol(e))?;
        for &i in &streams {
            let expiry = at.take();
            let t = Some(KeyType::Stream);
            got[i] = fetcher.dumped(&mut at, &mut late, &keys[i], expiry, now_ms, t, accept);
            if let Got::Dumped { late, .. } = &mut got[i] {
                *late = true;
            }
        }
    }
    for ((&shape, g), guessed) in shapes.iter().zip(&got).zip(guessed) {
        match g {
            Got::Ready(record) => fetcher.shapes.learn(shape, record.key_type()),
            Got::Dumped { t, .. } | Got::Watched(t) => fetcher.shapes.learn(shape, *t),
            // A read of the guessed type was refused: the guess was wrong.
            Got::Usual if guessed => fetcher.shapes.missed(shape),
            Got::Usual | Got::Nothing => {}
        }
    }
    Ok(Ok(Read {
        got,
        dumps,
        late,
        now_ms,
    }))
}

impl Plan {
    /// How to read a key known (or guessed) to be of type `t`, without
    /// asking its encoding: with the usual first reads, which are bounded
    /// whatever the encoding.
    fn of_type(t: KeyType) -> Option<Plan> {
        Some(match t {
            KeyType::String => Plan::Read(FirstRead::String),
            KeyType::Hash => Plan::Read(FirstRead::Scan("HSCAN")),
            KeyType::Set => Plan::Read(FirstRead::Scan("SSCAN")),
            KeyType::Zset => Plan::Read(FirstRead::Scan("ZSCAN")),
            KeyType::List => Plan::Read(FirstRead::List),
            KeyType::Stream => Plan::Stream,
            KeyType::Dump | KeyType::Absent => return None,
        })
    }
}

/// How to read a key of `encoding`, and its type where the encoding says
/// it. A type SCAN already filtered by that the encoding contradicts (the
/// key changed since) is read the usual way.
fn plan(encoding: &[u8], known: Option<KeyType>) -> (Plan, Option<KeyType>) {
    let (plan, t) = match encoding {
        b"listpack" | b"listpackex" | b"ziplist" | b"zipmap" => (Plan::Dump, None),
        b"intset" => (Plan::Dump, Some(KeyType::Set)),
        // "raw" is also what a module value says: GETRANGE refuses it with
        // WRONGTYPE, and the key is read the usual way.
        b"embstr" | b"int" | b"raw" => (Plan::Read(FirstRead::String), Some(KeyType::String)),
        b"quicklist" | b"linkedlist" => (Plan::Read(FirstRead::List), Some(KeyType::List)),
        b"skiplist" => (Plan::Read(FirstRead::Scan("ZSCAN")), Some(KeyType::Zset)),
        b"hashtable" => match known {
            Some(KeyType::Hash) => (Plan::Read(FirstRead::Scan("HSCAN")), known),
            Some(KeyType::Set) => (Plan::Read(FirstRead::Scan("SSCAN")), known),
            _ => (Plan::HashOrSet, None),
        },
        b"stream" => (Plan::Stream, Some(KeyType::Stream)),
        _ => (Plan::Usual, None),
    };
    match (known, t) {
        (Some(k), Some(t)) if k != t => (Plan::Usual, None),
        _ => (plan, t.or(known)),
    }
}

/// A server error that says the command is not allowed or not there.
fn refused_command(reply: &Reply) -> bool {
    let Reply::ServerError(e) = reply else {
        return false;
    };
    let detail = e.details().unwrap_or_default();
    e.code() == "NOPERM"
        || detail.contains("unknown command")
        || detail.contains("unknown subcommand")
}

/// The replies of a request, taken in order.
struct Taken {
    replies: Replies,
    next: usize,
}

impl Taken {
    fn new(replies: Replies) -> Self {
        Taken { replies, next: 0 }
    }

    /// The next reply, as a value.
    fn take(&mut self) -> Reply {
        self.next += 1;
        self.replies.take(self.next - 1)
    }

    /// Pass the next reply by.
    fn skip(&mut self) {
        self.next += 1;
    }

    /// The next reply's bytes, if it is a bulk string (not taken).
    fn bytes(&self) -> Option<&[u8]> {
        self.replies.bytes(self.next)
    }

    /// Whether the next reply was read past for want of budget.
    fn over_budget(&self) -> bool {
        self.replies.over_budget(self.next)
    }
}

/// The numbers of the first reads, as text, made once per batch.
struct Sizes {
    string_end: Vec<u8>,
    elements: Vec<u8>,
    list_end: Vec<u8>,
    stream_samples: Vec<u8>,
}

impl Sizes {
    fn of(chunks: &ChunkSizes) -> Self {
        let text = |n: i64| n.to_string().into_bytes();
        Sizes {
            string_end: text(chunks.first_string_bytes as i64 - 1),
            elements: text(chunks.first_elements as i64),
            list_end: text(chunks.first_elements as i64 - 1),
            stream_samples: text(STREAM_DUMP_ENTRIES),
        }
    }

    /// The same first reads as `Fetcher::add_first_read`.
    fn first_read(&self, request: &mut Request, key: &[u8], read: FirstRead) {
        match read {
            FirstRead::String => {
                request
                    .cmd(&[b"GETRANGE", key, b"0", &self.string_end])
                    .capped();
            }
            FirstRead::Scan(command) => {
                request.cmd(&[command.as_bytes(), key, b"0", b"COUNT", &self.elements]);
            }
            FirstRead::List => {
                request.cmd(&[b"LRANGE", key, b"0", &self.list_end]);
            }
            FirstRead::Stream | FirstRead::Dump => {}
        }
    }
}

impl Fetcher {
    fn ask_expiry(&self, request: &mut Request, key: &[u8]) {
        let command: &[u8] = if self.exact_expiry {
            b"PEXPIRETIME"
        } else {
            b"PTTL"
        };
        request.cmd(&[command, key]);
    }

    /// The next reply, a key's `DUMP` payload (after its expiry reply), as
    /// what became of the key: its payload goes into `batch`.
    #[allow(clippy::too_many_arguments)]
    fn dumped(
        &mut self,
        at: &mut Taken,
        batch: &mut DumpBatch,
        key: &[u8],
        expiry: Reply,
        now_ms: i64,
        t: Option<KeyType>,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Got {
        let expiry = match self.expiry_of(expiry, now_ms) {
            Ok(e) => e,
            Err(fault) => {
                at.skip();
                return match fault {
                    KeyFault::Vanished => {
                        self.stats.vanish(t);
                        Got::Nothing
                    }
                    KeyFault::Refused(_) => Got::Usual,
                };
            }
        };
        let got = match at.bytes() {
            Some(payload) => match batch.push(key, payload) {
                Ok(t) => Got::Dumped {
                    expiry,
                    t,
                    wanted: accept(t),
                    late: false,
                },
                // A payload this reader cannot take: read the usual way.
                Err(_) => Got::Usual,
            },
            None if at.over_budget() => Got::Usual,
            None => match at.take() {
                Reply::Nil => {
                    self.stats.vanish(t);
                    return Got::Nothing;
                }
                _ => return Got::Usual,
            },
        };
        at.skip();
        got
    }

    /// The first read of a key of unknown size, as what became of it.
    fn first_got(
        &mut self,
        key: &[u8],
        read: FirstRead,
        expiry: Reply,
        reply: Reply,
        now_ms: i64,
        accept: &(dyn Fn(KeyType) -> bool + Sync),
    ) -> Got {
        let t = match read {
            FirstRead::String => KeyType::String,
            FirstRead::List => KeyType::List,
            FirstRead::Scan("HSCAN") => KeyType::Hash,
            FirstRead::Scan("SSCAN") => KeyType::Set,
            _ => KeyType::Zset,
        };
        if !accept(t) {
            return Got::Nothing;
        }
        match self.first_record(key, None, &read, expiry, vec![reply], now_ms) {
            Ok((record, Resume::Done)) => Got::Ready(record),
            Ok(_) => Got::Watched(t),
            Err(KeyFault::Vanished) => {
                self.stats.vanish(Some(t));
                Got::Nothing
            }
            Err(KeyFault::Refused(reason)) if is_wrong_type(&reason) => Got::Usual,
            Err(KeyFault::Refused(reason)) => {
                self.stats.fail(key, t, reason);
                Got::Nothing
            }
        }
    }
}

/// Whether `server` writes `DUMP` payloads this reader reads.
pub(super) fn dumps_readable(server: &ServerInfo) -> bool {
    server
        .rdb_version()
        .is_some_and(|v| VERSIONS.contains(&u32::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_choose_the_read() {
        let p = |e: &[u8], k| {
            let (plan, t) = plan(e, k);
            (format!("{plan:?}"), t)
        };
        assert_eq!(p(b"listpack", None), ("Dump".into(), None));
        assert_eq!(p(b"intset", None), ("Dump".into(), Some(KeyType::Set)));
        assert_eq!(
            p(b"embstr", None),
            ("Read(String)".into(), Some(KeyType::String))
        );
        assert_eq!(p(b"hashtable", None), ("HashOrSet".into(), None));
        assert_eq!(
            p(b"hashtable", Some(KeyType::Hash)),
            ("Read(Scan(\"HSCAN\"))".into(), Some(KeyType::Hash))
        );
        assert_eq!(p(b"stream", Some(KeyType::Zset)), ("Usual".into(), None));
        assert_eq!(p(b"something-new", None), ("Usual".into(), None));
        assert_eq!(
            p(b"listpack", Some(KeyType::Zset)),
            ("Dump".into(), Some(KeyType::Zset))
        );
    }
}
