//! Reading RDB files (and replication RDB streams) into records.
//!
//! An RDB file is a snapshot a server writes with `SAVE`, `BGSAVE` or for a
//! replica: a header (`REDIS` and a 4-digit format version), opcodes
//! (metadata, database selection, a key's expiry) and keys with their
//! values, an end byte, and a CRC-64 of everything before it. Reading one
//! costs the server nothing but the snapshot itself, which is why an export
//! may want it instead of reading key by key.
//!
//! [`RdbReader`](crate::rdb::RdbReader) turns a file into the same
//! [`Record`](crate::record::Record)s an export from a live server makes, in
//! one pass and in bounded memory, so that a file of any size, or a key of
//! any size, can be archived: a big key comes out in parts of about
//! [`chunk_bytes`](crate::rdb::RdbOptions::chunk_bytes), its elements read
//! from the input as the parts are asked for (see `collection.rs`). Three
//! things are held whole, because the format leaves no choice: an
//! LZF-compressed string (it only decompresses whole; servers compress only
//! strings that fit in memory anyway), one encoded node of a collection (its
//! length prefix is the only way to its elements), and a stream's consumer
//! groups and pending entries (they come after its entries in the file and
//! before them in the records; the entries are spooled to a temporary file,
//! see `stream.rs`).
//!
//! The reader reads from a [`BufRead`](std::io::BufRead) and never past the
//! 8 checksum bytes, so on a replication stream the caller's reader is left
//! exactly at what follows the RDB. Every byte is checksummed as it is read;
//! nothing in the input is trusted: every length is checked against what was
//! read, so a corrupt or hostile file makes an error, never a panic or an
//! allocation the file does not pay for. Formats: RDB versions 9 to 12,
//! written by Redis 5.0 to 8.x and Valkey 7.2 to 8.x (every encoding they
//! write, and the older ones they still read).

mod collection;
mod crc64;
mod dump;
mod error;
mod input;
mod intset;
mod items;
mod listpack;
mod lzf;
mod module;
mod packed;
mod payload;
mod skip;
mod stream;
mod strings;
mod types;
mod ziplist;
mod zipmap;

use std::io::BufRead;

use crate::record::{Bytes, DumpValue, Expiry, KeyType, Record, Value};

use collection::Chunker;
pub use crc64::crc64;
pub use dump::DumpBatch;
pub use error::RdbError;
use input::Input;
pub use items::{KeyInfo, RdbItem, RdbOptions, RdbStats, SkipReason};
pub use module::dump_payload;
pub use payload::{STREAM_COUNTERS_RDB, restore_payload};
pub(crate) use payload::{decode_with_payload, restore_payload_within};
use stream::StreamOut;
use strings::StrHeader;

/// The RDB format versions this reader reads.
pub const VERSIONS: std::ops::RangeInclusive<u32> = 9..=12;

/// Reads an RDB file item by item; see the module docs.
#[derive(Debug)]
pub struct RdbReader<R> {
    input: Input<R>,
    version: u32,
    options: RdbOptions,
    db: u32,
    expire_at: Option<i64>,
    current: Option<Current>,
    state: State,
    checksum_verified: bool,
    stats: RdbStats,
    /// Reads collections, one at a time (its buffers are kept).
    chunker: Chunker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed,
}

/// A key whose records are being returned.
#[derive(Debug)]
struct Current {
    db: u32,
    key: Bytes,
    part: u32,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// A raw string: `left` bytes still in the input.
    Raw {
        left: u64,
    },
    /// A string held whole (integer or LZF), from `pos` on.
    Held {
        data: Vec<u8>,
        pos: usize,
    },
    /// A collection, read by the reader's chunker.
    Collection,
    Stream(Box<StreamOut>),
}

/// One record's share of a key.
struct Part {
    value: Value,
    field_expiry: Vec<crate::record::FieldExpiry>,
    more: bool,
    /// A collection found to have nothing (left) to return.
    nothing: Option<SkipReason>,
}

impl<R: BufRead> RdbReader<R> {
    /// Start reading: checks the `REDIS` signature and the format version.
    pub fn new(input: R, options: RdbOptions) -> Result<Self, RdbError> {
        let mut input = Input::new(input);
        let magic = input.array::<9>()?;
        let digits = |b: &[u8]| -> Option<u32> {
            b.iter().try_fold(0u32, |acc, &d| {
                d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
            })
        };
        let version = match (magic.split_at(5), magic.split_at(6)) {
            ((b"REDIS", v), _) => digits(v),
            // Valkey 9 marks its own format versions so.
            (_, (b"VALKEY", v)) => digits(v),
            _ => None,
        }
        .ok_or(RdbError::NotRdb)?;
        if !VERSIONS.contains(&version) || magic.starts_with(b"VALKEY") {
            return Err(RdbError::Version(version));
        }
        let mut options = options;
        options.chunk_bytes = options.chunk_bytes.max(1);
        Ok(RdbReader {
            input,
            version,
            options,
            db: 0,
            expire_at: None,
            current: None,
            state: State::Reading,
            checksum_verified: false,
            stats: RdbStats::default(),
            chunker: Chunker::new(),
        })
    }

    /// The file's format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// True once the end was reached and a non-zero stored checksum matched
    /// (a server with `rdbchecksum no` stores 0: nothing to check).
    pub fn checksum_verified(&self) -> bool {
        self.checksum_verified
    }

    /// Counts of what was read so far.
    pub fn stats(&self) -> &RdbStats {
        &self.stats
    }

    /// The input, with whatever follows the RDB still unread.
    pub fn into_inner(self) -> R {
        self.input.into_inner()
    }

    /// The next item. `select` is asked once per key, before its value is
    /// decoded (name, type and expiry known); false: the value is read past
    /// (still checksummed) and `Skipped { why: NotSelected }` returned.
    /// `Ok(None)` after the end opcode once the stored checksum matched (or
    /// was 0); nothing past the 8 checksum bytes is read. After an error,
    /// every call returns [`RdbError::Stopped`].
    pub fn next_item(
        &mut self,
        select: &mut dyn FnMut(&KeyInfo) -> bool,
    ) -> Result<Option<RdbItem>, RdbError> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => return Err(RdbError::Stopped),
            State::Reading => {}
        }
        let item = self.step(select);
        self.stats.bytes_read = self.input.offset();
        if item.is_err() {
            self.state = State::Failed;
            self.current = None;
        }
        item
    }

    fn step(
        &mut self,
        select: &mut dyn FnMut(&KeyInfo) -> bool,
    ) -> Result<Option<RdbItem>, RdbError> {
        if let Some(current) = self.current.take() {
            return self.next_part(current).map(Some);
        }
        let input = &mut self.input;
        loop {
            let at = input.offset();
            let op = input.u8()?;
            match op {
                types::OP_EXPIRETIME_MS => self.expire_at = Some(input.u64_le()? as i64),
                types::OP_EXPIRETIME => {
                    let seconds = i32::from_le_bytes(input.array()?);
                    self.expire_at = Some(i64::from(seconds) * 1000);
                }
                types::OP_IDLE => {
                    input.len()?;
                }
                types::OP_FREQ => {
                    input.u8()?;
                }
                types::OP_SELECTDB => {
                    let db = input.len()?;
                    self.db = u32::try_from(db)
                        .map_err(|_| RdbError::corrupt(at, format!("database number {db}")))?;
                }
                types::OP_RESIZEDB => {
                    let keys = input.len()?;
                    input.len()?; // keys with an expiry
                    *self.stats.announced_keys.entry(self.db).or_default() += keys;
                }
                types::OP_SLOT_INFO => {
                    for _ in 0..3 {
                        input.len()?; // slot, its keys, its keys with an expiry
                    }
                }
                types::OP_AUX => {
                    let key = input.string()?;
                    let value = input.string()?;
                    self.stats.aux_fields += 1;
                    return Ok(Some(RdbItem::Aux { key, value }));
                }
                types::OP_MODULE_AUX => {
                    module::skip_aux(input)?;
                    self.stats.module_aux += 1;
                }
                types::OP_FUNCTION_PRE_GA => {
                    return Err(RdbError::Unsupported {
                        offset: at,
                        what: "functions of the Redis 7.0 release candidates (opcode 246)",
                    });
                }
                types::OP_FUNCTION2 => {
                    let code = input.string()?;
                    self.stats.functions += 1;
                    return Ok(Some(RdbItem::Function { code }));
                }
                types::OP_EOF => {
                    let computed = input.crc()?;
                    let stored = input.unchecked_u64_le()?;
                    if stored != 0 {
                        if stored != computed {
                            return Err(RdbError::Checksum { stored, computed });
                        }
                        self.checksum_verified = true;
                    }
                    self.state = State::Done;
                    return Ok(None);
                }
                _ => return self.start_key(op, at, select).map(Some),
            }
        }
    }

    /// A key of value type `type_byte` (at `at`): its first record, or why
    /// it was skipped.
    fn start_key(
        &mut self,
        type_byte: u8,
        at: u64,
        select: &mut dyn FnMut(&KeyInfo) -> bool,
    ) -> Result<RdbItem, RdbError> {
        let Some(key_type) = types::key_type(type_byte) else {
            return Err(RdbError::UnknownType {
                type_byte,
                offset: at,
            });
        };
        let key = Bytes(self.input.string()?);
        let info = KeyInfo {
            db: self.db,
            key,
            key_type,
            expire_at_ms: self.expire_at.take(),
        };
        let now_ms = self.options.now_ms;
        let why = if !select(&info) {
            self.stats.not_selected += 1;
            Some(SkipReason::NotSelected)
        } else if info.expire_at_ms.is_some_and(|t| t <= now_ms) {
            self.stats.expired_keys += 1;
            Some(SkipReason::Expired)
        } else {
            None
        };
        if let Some(why) = why {
            skip::skip_value(&mut self.input, type_byte, at)?;
            return Ok(RdbItem::Skipped { info, why });
        }
        let expiry = info.expire_at_ms.map(|at_ms| Expiry {
            at_ms,
            ttl_ms: at_ms.saturating_sub(now_ms),
        });
        if self.options.as_dump || key_type == KeyType::Dump {
            let value = self.dump(type_byte, at, key_type)?;
            return Ok(self.record(info.db, info.key, expiry, 0, value, Vec::new(), false));
        }
        let body = match key_type {
            KeyType::String => match self.input.string_header()? {
                StrHeader::Raw(n) => Body::Raw { left: n },
                header => {
                    let mut data = Vec::new();
                    self.input.string_body(header, &mut data, &mut Vec::new())?;
                    Body::Held { data, pos: 0 }
                }
            },
            KeyType::Stream => Body::Stream(Box::new(stream::read(
                &mut self.input,
                type_byte,
                self.options.chunk_bytes,
            )?)),
            _ => {
                if !self.chunker.start(&mut self.input, type_byte)? {
                    return Err(RdbError::UnknownType {
                        type_byte,
                        offset: at,
                    });
                }
                Body::Collection
            }
        };
        let mut current = Current {
            db: info.db,
            key: info.key.clone(),
            part: 0,
            body,
        };
        let part = self.part(&mut current.body)?;
        if let Some(why) = part.nothing {
            match why {
                SkipReason::Empty => self.stats.empty_keys += 1,
                _ => self.stats.expired_keys += 1,
            }
            return Ok(RdbItem::Skipped { info, why });
        }
        let item = self.record(
            current.db,
            current.key.clone(),
            expiry,
            0,
            part.value,
            part.field_expiry,
            part.more,
        );
        if part.more {
            current.part = 1;
            self.current = Some(current);
        }
        Ok(item)
    }

    /// The next record of a key in parts.
    fn next_part(&mut self, mut current: Current) -> Result<RdbItem, RdbError> {
        let part = self.part(&mut current.body)?;
        let item = self.record(
            current.db,
            current.key.clone(),
            None,
            current.part,
            part.value,
            part.field_expiry,
            part.more,
        );
        if part.more {
            current.part += 1;
            self.current = Some(current);
        }
        Ok(item)
    }

    fn part(&mut self, body: &mut Body) -> Result<Part, RdbError> {
        let chunk_bytes = self.options.chunk_bytes;
        let whole = |value| Part {
            value,
            field_expiry: Vec::new(),
            more: false,
            nothing: None,
        };
        Ok(match body {
            Body::Raw { left } => {
                let n = (*left).min(chunk_bytes as u64);
                let mut data = Vec::new();
                self.input.append(n, &mut data)?;
                *left -= n;
                Part {
                    more: *left > 0,
                    ..whole(Value::String(Bytes(data)))
                }
            }
            Body::Held { data, pos } => {
                let end = data.len().min(pos.saturating_add(chunk_bytes));
                let piece = if *pos == 0 && end == data.len() {
                    std::mem::take(data)
                } else {
                    data.get(*pos..end).unwrap_or_default().to_vec()
                };
                *pos = end;
                Part {
                    more: end < data.len(),
                    ..whole(Value::String(Bytes(piece)))
                }
            }
            Body::Collection => {
                let chunk =
                    self.chunker
                        .next_chunk(&mut self.input, self.options.now_ms, chunk_bytes)?;
                self.stats.expired_fields += chunk.expired_fields;
                let nothing = (chunk.value.is_empty() && !chunk.more).then_some(
                    if chunk.expired_fields > 0 {
                        SkipReason::Expired
                    } else {
                        SkipReason::Empty
                    },
                );
                Part {
                    value: chunk.value,
                    field_expiry: chunk.field_expiry,
                    more: chunk.more,
                    nothing,
                }
            }
            Body::Stream(out) => {
                let (chunk, more) = out.next_chunk(chunk_bytes)?;
                Part {
                    more,
                    ..whole(Value::Stream(chunk))
                }
            }
        })
    }

    /// The value as a `DUMP` payload: its type byte and raw bytes.
    fn dump(&mut self, type_byte: u8, at: u64, key_type: KeyType) -> Result<Value, RdbError> {
        self.input.start_recording(&[type_byte])?;
        let walked = skip::skip_value(&mut self.input, type_byte, at);
        let raw = self.input.stop_recording()?;
        walked?;
        let type_name = if key_type == KeyType::Dump {
            // The module id is the first thing after the type byte.
            let mut id = Input::new(raw.get(1..).unwrap_or_default());
            module::type_name(id.len()?)
        } else {
            key_type.name().to_string()
        };
        // VERSIONS fit in a u16.
        let rdb_version = self.version as u16;
        Ok(Value::Dump(DumpValue {
            type_name,
            rdb_version,
            payload: Bytes(dump_payload(&raw, rdb_version)),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn record(
        &mut self,
        db: u32,
        key: Bytes,
        expiry: Option<Expiry>,
        part: u32,
        value: Value,
        field_expiry: Vec<crate::record::FieldExpiry>,
        more: bool,
    ) -> RdbItem {
        if part == 0 {
            self.stats.keys += 1;
            *self.stats.keys_per_db.entry(db).or_default() += 1;
        }
        self.stats.records += 1;
        RdbItem::Record {
            db,
            record: Record {
                key,
                expiry,
                part,
                more,
                field_expiry,
                void: false,
                value,
            },
        }
    }
}

#[cfg(test)]
mod tests;
