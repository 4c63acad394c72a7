//! Lists, sets, sorted sets and hashes, one element at a time, whatever
//! encoding the file holds them in, gathered into records of about
//! `chunk_bytes`.
//!
//! A key is never held whole: elements stored one RDB string after another
//! are read as they are needed, and an encoded blob (listpack, ziplist,
//! intset, zipmap, one quicklist node) is read whole, since its length
//! prefix is all the file says about where its elements are, and walked.
//! So a key costs at most one record being filled, one element held over
//! for the next record, and one blob (a few KiB to a few MiB: servers cap
//! them with `*-max-listpack-*` and `list-max-listpack-size`).

use std::io::BufRead;

use crate::record::{Bytes, FieldExpiry, Score, Value};

use super::error::RdbError;
use super::input::Input;
use super::intset::Intset;
use super::listpack::{self, Entry};
use super::strings::{int_text, parse_double};
use super::{types, ziplist, zipmap};

/// What a key's elements are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    List,
    Set,
    Zset,
    Hash,
}

/// One element.
#[derive(Debug)]
pub(super) enum Elem {
    /// A list item or set member.
    Item(Vec<u8>),
    /// A sorted set member and its score.
    Member(Vec<u8>, f64),
    /// A hash field, its value and when it expires (ms), if it does.
    Field(Vec<u8>, Vec<u8>, Option<i64>),
}

/// The latest expiry a hash field can have (Redis's `EB_EXPIRE_TIME_MAX`).
const FIELD_EXPIRY_MAX: u64 = (1 << 48) - 1;

/// How elements stored as consecutive RDB strings look.
#[derive(Debug, Clone, Copy)]
enum Plain {
    Items,
    ZsetText,
    ZsetBinary,
    Hash,
    /// Each field preceded by its expiry: relative to `base` (the hash's
    /// earliest field expiry, plus one; 0 = none), or absolute without it
    /// (the 7.4 release candidates' format).
    HashTtl {
        base: Option<u64>,
    },
}

/// Where the elements come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `left` elements as consecutive strings.
    Plain { left: u64, layout: Plain },
    /// One blob, read when the key started.
    Single,
    /// `left` quicklist nodes; version 2 nodes say what they hold.
    Quicklist { left: u64, v2: bool },
}

/// A walk over the blob at hand.
#[derive(Debug, Clone, Copy)]
enum Walk {
    Done,
    Listpack(listpack::Walk),
    Ziplist(ziplist::Walk),
    Intset(Intset, usize),
    Zipmap(zipmap::Walk),
    /// A quicklist-2 "plain" node: the blob is one list item.
    PlainNode,
}

/// The elements of one key, read on demand.
#[derive(Debug)]
pub(super) struct Cursor {
    kind: Kind,
    /// Blob entries per element: 1 (items), 2 (pairs), 3 (field, value, ttl).
    tuple: usize,
    source: Source,
    blob: Vec<u8>,
    walk: Walk,
    /// Where the blob at hand started in the file.
    blob_at: u64,
    scratch: Vec<u8>,
}

impl Cursor {
    fn new() -> Cursor {
        Cursor {
            kind: Kind::List,
            tuple: 1,
            source: Source::Single,
            blob: Vec::new(),
            walk: Walk::Done,
            blob_at: 0,
            scratch: Vec::new(),
        }
    }

    /// Start on a value of RDB type `type_byte`: read what it starts with
    /// (a count, or its blob). False when the type is not a collection.
    /// The cursor's buffers are kept from key to key.
    fn start<R: BufRead>(&mut self, input: &mut Input<R>, type_byte: u8) -> Result<bool, RdbError> {
        use types::*;
        self.source = Source::Single;
        self.walk = Walk::Done;
        self.blob_at = input.offset();
        let plain = |input: &mut Input<R>, layout| -> Result<Source, RdbError> {
            Ok(Source::Plain {
                left: input.len()?,
                layout,
            })
        };
        let (kind, tuple) = match type_byte {
            LIST => {
                self.source = plain(input, Plain::Items)?;
                (Kind::List, 1)
            }
            SET => {
                self.source = plain(input, Plain::Items)?;
                (Kind::Set, 1)
            }
            ZSET => {
                self.source = plain(input, Plain::ZsetText)?;
                (Kind::Zset, 2)
            }
            ZSET_2 => {
                self.source = plain(input, Plain::ZsetBinary)?;
                (Kind::Zset, 2)
            }
            HASH => {
                self.source = plain(input, Plain::Hash)?;
                (Kind::Hash, 2)
            }
            HASH_METADATA_PRE_GA => {
                self.source = plain(input, Plain::HashTtl { base: None })?;
                (Kind::Hash, 3)
            }
            HASH_METADATA => {
                let base = input.u64_le()?;
                self.source = plain(input, Plain::HashTtl { base: Some(base) })?;
                (Kind::Hash, 3)
            }
            LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                self.source = Source::Quicklist {
                    left: input.len()?,
                    v2: type_byte == LIST_QUICKLIST_2,
                };
                (Kind::List, 1)
            }
            HASH_ZIPMAP => {
                self.load(input)?;
                self.walk = Walk::Zipmap(zipmap::open(&self.blob).map_err(|e| self.bad(e))?);
                (Kind::Hash, 2)
            }
            SET_INTSET => {
                self.load(input)?;
                self.walk = Walk::Intset(Intset::open(&self.blob).map_err(|e| self.bad(e))?, 0);
                (Kind::Set, 1)
            }
            LIST_ZIPLIST | ZSET_ZIPLIST | HASH_ZIPLIST => {
                self.load(input)?;
                self.walk = Walk::Ziplist(ziplist::open(&self.blob).map_err(|e| self.bad(e))?);
                match type_byte {
                    LIST_ZIPLIST => (Kind::List, 1),
                    ZSET_ZIPLIST => (Kind::Zset, 2),
                    _ => (Kind::Hash, 2),
                }
            }
            HASH_LISTPACK
            | ZSET_LISTPACK
            | SET_LISTPACK
            | HASH_LISTPACK_EX_PRE_GA
            | HASH_LISTPACK_EX => {
                if type_byte == HASH_LISTPACK_EX {
                    // The earliest field expiry, kept by Redis for later use.
                    input.u64_le()?;
                }
                self.load(input)?;
                self.walk = Walk::Listpack(listpack::open(&self.blob).map_err(|e| self.bad(e))?);
                match type_byte {
                    HASH_LISTPACK => (Kind::Hash, 2),
                    ZSET_LISTPACK => (Kind::Zset, 2),
                    SET_LISTPACK => (Kind::Set, 1),
                    _ => (Kind::Hash, 3),
                }
            }
            _ => return Ok(false),
        };
        self.kind = kind;
        self.tuple = tuple;
        Ok(true)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Read the next blob (an RDB string) into `self.blob`.
    fn load<R: BufRead>(&mut self, input: &mut Input<R>) -> Result<(), RdbError> {
        self.blob_at = input.offset();
        input.string_into(&mut self.blob, &mut self.scratch)
    }

    fn bad(&self, what: String) -> RdbError {
        RdbError::corrupt(self.blob_at, what)
    }

    /// The next element; `None` when there are no more.
    pub fn next<R: BufRead>(&mut self, input: &mut Input<R>) -> Result<Option<Elem>, RdbError> {
        loop {
            if let Some(e) = self.blob_elem()? {
                return Ok(Some(e));
            }
            match self.source {
                Source::Single => return Ok(None),
                Source::Plain { left: 0, .. } | Source::Quicklist { left: 0, .. } => {
                    return Ok(None);
                }
                Source::Plain {
                    ref mut left,
                    layout,
                } => {
                    *left -= 1;
                    return self.plain(input, layout).map(Some);
                }
                Source::Quicklist { ref mut left, v2 } => {
                    *left -= 1;
                    self.node(input, v2)?;
                }
            }
        }
    }

    /// One element stored as RDB strings.
    fn plain<R: BufRead>(&mut self, input: &mut Input<R>, layout: Plain) -> Result<Elem, RdbError> {
        Ok(match layout {
            Plain::Items => Elem::Item(input.string()?),
            Plain::ZsetText => {
                let member = input.string()?;
                Elem::Member(member, input.f64_text()?)
            }
            Plain::ZsetBinary => {
                let member = input.string()?;
                Elem::Member(member, input.f64_binary()?)
            }
            Plain::Hash => {
                let field = input.string()?;
                Elem::Field(field, input.string()?, None)
            }
            Plain::HashTtl { base } => {
                let at = input.offset();
                let ttl = input.len()?;
                let expiry = match (ttl, base) {
                    (0, _) => None,
                    (t, Some(base)) => Some(t.checked_add(base).map(|v| v - 1)),
                    (t, None) => Some(Some(t)),
                };
                let expiry = match expiry {
                    None => None,
                    Some(Some(v)) if v <= FIELD_EXPIRY_MAX => Some(v as i64),
                    Some(_) => {
                        return Err(RdbError::corrupt(
                            at,
                            "a hash field expiry past the latest there can be",
                        ));
                    }
                };
                let field = input.string()?;
                Elem::Field(field, input.string()?, expiry)
            }
        })
    }

    /// Read the next quicklist node.
    fn node<R: BufRead>(&mut self, input: &mut Input<R>, v2: bool) -> Result<(), RdbError> {
        let at = input.offset();
        let container = if v2 { input.len()? } else { 2 };
        self.load(input)?;
        if self.blob.is_empty() {
            return Err(self.bad("an empty quicklist node".into()));
        }
        self.walk = match (container, v2) {
            (1, _) => Walk::PlainNode,
            (2, true) => Walk::Listpack(listpack::open(&self.blob).map_err(|e| self.bad(e))?),
            (2, false) => Walk::Ziplist(ziplist::open(&self.blob).map_err(|e| self.bad(e))?),
            (c, _) => {
                return Err(RdbError::corrupt(
                    at,
                    format!("unknown quicklist node container {c}"),
                ));
            }
        };
        Ok(())
    }

    /// The next element of the blob at hand; `None` when it has no more.
    fn blob_elem(&mut self) -> Result<Option<Elem>, RdbError> {
        let result = match &mut self.walk {
            Walk::Done => return Ok(None),
            Walk::PlainNode => {
                self.walk = Walk::Done;
                return Ok(Some(Elem::Item(std::mem::take(&mut self.blob))));
            }
            Walk::Intset(set, i) => {
                let v = set.get(&self.blob, *i);
                *i += 1;
                Ok(v.map(|v| Elem::Item(int_text(v))))
            }
            Walk::Zipmap(walk) => zipmap::next(&self.blob, walk)
                .map(|pair| pair.map(|(f, v)| Elem::Field(f.to_vec(), v.to_vec(), None))),
            Walk::Listpack(walk) => {
                let blob = &self.blob;
                tuple(self.kind, self.tuple, || listpack::next(blob, walk))
            }
            Walk::Ziplist(walk) => {
                let blob = &self.blob;
                tuple(self.kind, self.tuple, || ziplist::next(blob, walk))
            }
        };
        match result {
            Ok(Some(e)) => Ok(Some(e)),
            Ok(None) => {
                self.walk = Walk::Done;
                Ok(None)
            }
            Err(e) => Err(self.bad(e)),
        }
    }
}

/// The next element made of `n` entries of a listpack or ziplist.
fn tuple<'a>(
    kind: Kind,
    n: usize,
    mut next: impl FnMut() -> Result<Option<Entry<'a>>, String>,
) -> Result<Option<Elem>, String> {
    let Some(first) = next()? else {
        return Ok(None);
    };
    let mut rest = || next()?.ok_or_else(|| "the encoding ends inside an element".to_string());
    Ok(Some(match (kind, n) {
        (Kind::List | Kind::Set, _) => Elem::Item(first.to_vec()),
        (Kind::Zset, _) => {
            let score = match rest()? {
                Entry::Int(v) => v as f64,
                Entry::Str(s) => parse_double(s).ok_or_else(|| {
                    format!("score {:?} is not a number", String::from_utf8_lossy(s))
                })?,
            };
            Elem::Member(first.to_vec(), score)
        }
        (Kind::Hash, 2) => Elem::Field(first.to_vec(), rest()?.to_vec(), None),
        (Kind::Hash, _) => {
            let value = rest()?.to_vec();
            let expiry = match rest()?.int() {
                Some(0) => None,
                Some(at) if (1..=FIELD_EXPIRY_MAX as i64).contains(&at) => Some(at),
                _ => return Err("a hash field expiry that is not a time".into()),
            };
            Elem::Field(first.to_vec(), value, expiry)
        }
    }))
}

// Element sizes as record.rs counts them (so the parts made here split
// like `Value::split` would split them).
fn elem_size(e: &Elem) -> usize {
    match e {
        Elem::Item(x) => x.len() + 8,
        Elem::Member(m, _) => m.len() + 16,
        Elem::Field(f, v, _) => f.len() + v.len() + 16,
    }
}

/// One record's worth of a key.
#[derive(Debug)]
pub(super) struct Chunk {
    pub value: Value,
    pub field_expiry: Vec<FieldExpiry>,
    /// More elements follow (in the next chunk, which is not empty).
    pub more: bool,
    /// Hash fields dropped from this chunk because they had expired.
    pub expired_fields: u64,
}

/// A key's elements in chunks.
#[derive(Debug)]
pub(super) struct Chunker {
    cursor: Cursor,
    /// The element that did not fit in the last chunk.
    carry: Option<Elem>,
}

impl Chunker {
    pub fn new() -> Self {
        Chunker {
            cursor: Cursor::new(),
            carry: None,
        }
    }

    /// Start on a value of RDB type `type_byte`; false when it is not a
    /// collection.
    pub fn start<R: BufRead>(
        &mut self,
        input: &mut Input<R>,
        type_byte: u8,
    ) -> Result<bool, RdbError> {
        self.carry = None;
        self.cursor.start(input, type_byte)
    }

    /// The next chunk: elements until the next would take it past
    /// `chunk_bytes` (at least one element, unless there are none left).
    pub fn next_chunk<R: BufRead>(
        &mut self,
        input: &mut Input<R>,
        now_ms: i64,
        chunk_bytes: usize,
    ) -> Result<Chunk, RdbError> {
        let mut value = match self.cursor.kind() {
            Kind::List => Value::List(Vec::new()),
            Kind::Set => Value::Set(Vec::new()),
            Kind::Zset => Value::Zset(Vec::new()),
            Kind::Hash => Value::Hash(Vec::new()),
        };
        let mut chunk = Chunk {
            value: Value::Absent(Default::default()),
            field_expiry: Vec::new(),
            more: false,
            expired_fields: 0,
        };
        let mut bytes: usize = 0;
        loop {
            let at = input.offset();
            let elem = match self.carry.take() {
                Some(e) => e,
                None => match self.cursor.next(input)? {
                    Some(e) => e,
                    None => break,
                },
            };
            if let Elem::Field(_, _, Some(at)) = elem
                && at <= now_ms
            {
                chunk.expired_fields += 1;
                continue;
            }
            let n = elem_size(&elem);
            if bytes > 0 && bytes.saturating_add(n) > chunk_bytes {
                self.carry = Some(elem);
                chunk.more = true;
                break;
            }
            bytes = bytes.saturating_add(n);
            match (&mut value, elem) {
                (Value::List(v) | Value::Set(v), Elem::Item(x)) => v.push(Bytes(x)),
                (Value::Zset(v), Elem::Member(m, s)) => {
                    if s.is_nan() {
                        return Err(RdbError::corrupt(
                            at,
                            "a sorted set score that is not a number",
                        ));
                    }
                    v.push((Bytes(m), Score(s)));
                }
                (Value::Hash(v), Elem::Field(f, x, expiry)) => {
                    if let Some(at_ms) = expiry {
                        chunk.field_expiry.push(FieldExpiry {
                            field: Bytes(f.clone()),
                            at_ms,
                            ttl_ms: at_ms.saturating_sub(now_ms),
                        });
                    }
                    v.push((Bytes(f), Bytes(x)));
                }
                _ => return Err(RdbError::corrupt(at, "an element of the wrong kind")),
            }
        }
        chunk.value = value;
        Ok(chunk)
    }
}
