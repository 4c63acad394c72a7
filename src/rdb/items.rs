//! What the reader is told and what it gives: options, items, key facts,
//! counts.

use std::collections::BTreeMap;

use crate::record::{Bytes, KeyType, Record};

/// How to read a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbOptions {
    /// Reference time, ms since the Unix epoch: a key's Expiry is
    /// `{ at_ms, ttl_ms: at_ms - now_ms }`; a key whose `at_ms <= now_ms`
    /// is not returned as records but as `Skipped { why: Expired }`. Same
    /// for hash fields with their own TTL: expired fields are dropped and
    /// counted.
    pub now_ms: i64,
    /// About how many bytes of data one record may carry before a key is
    /// split into parts (records with the same key, part 0, 1, 2..., every
    /// one but the last with `more = true`), as
    /// [`Value::split`](crate::record::Value::split) counts them.
    pub chunk_bytes: usize,
    /// Return every key as [`Value::Dump`](crate::record::Value::Dump): the
    /// `DUMP` payload the server that wrote the file would give for it (type
    /// name as `TYPE` says it).
    /// For copying to a server of the same version, and for checking this
    /// reader against a server's own `DUMP`. Module types always are.
    pub as_dump: bool,
}

impl RdbOptions {
    /// Options with the reference time and record size; keys decoded.
    pub fn new(now_ms: i64, chunk_bytes: usize) -> RdbOptions {
        RdbOptions {
            now_ms,
            chunk_bytes,
            as_dump: false,
        }
    }
}

/// A key, as known before its value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The database it is in.
    pub db: u32,
    /// Its name.
    pub key: Bytes,
    /// Its type (`Dump` for module types).
    pub key_type: KeyType,
    /// When it expires, ms since the Unix epoch.
    pub expire_at_ms: Option<i64>,
}

/// Why a key was read past rather than returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The `select` callback did not want it.
    NotSelected,
    /// It expired before `now_ms` (or, for a hash, all its fields did).
    Expired,
    /// It has no elements: servers drop such keys when they load a file.
    Empty,
}

/// What the file holds, one thing at a time.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RdbItem {
    /// An auxiliary field: `redis-ver`, `ctime`, `repl-id`, `repl-offset`, ...
    Aux {
        /// Its name.
        key: Vec<u8>,
        /// Its value (integers as their decimal text).
        value: Vec<u8>,
    },
    /// A function library's code (`FUNCTION LOAD`'s argument).
    Function {
        /// The code.
        code: Vec<u8>,
    },
    /// One record: a key, or one part of a big key.
    Record {
        /// The database it is in.
        db: u32,
        /// The record.
        record: Record,
    },
    /// A key whose value was read and dropped.
    Skipped {
        /// The key.
        info: KeyInfo,
        /// Why.
        why: SkipReason,
    },
}

/// Counts of what was read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RdbStats {
    /// Bytes read from the input.
    pub bytes_read: u64,
    /// Keys returned as records.
    pub keys: u64,
    /// Records returned (a big key makes several).
    pub records: u64,
    /// Keys returned as records, per database.
    pub keys_per_db: BTreeMap<u32, u64>,
    /// Keys per database as the file announces them (`RESIZEDB`), before
    /// any is selected or found expired: for progress.
    pub announced_keys: BTreeMap<u32, u64>,
    /// Keys the `select` callback did not want.
    pub not_selected: u64,
    /// Keys skipped because they had expired.
    pub expired_keys: u64,
    /// Hash fields dropped because they had expired (keys returned or not).
    pub expired_fields: u64,
    /// Keys without elements, skipped.
    pub empty_keys: u64,
    /// Auxiliary fields returned.
    pub aux_fields: u64,
    /// Function libraries returned.
    pub functions: u64,
    /// Modules' auxiliary data read past.
    pub module_aux: u64,
}
