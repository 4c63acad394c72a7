//! The numbers of rdb.h: value types and opcodes, and which key type each
//! value type is.

use crate::record::KeyType;

pub const STRING: u8 = 0;
pub const LIST: u8 = 1;
pub const SET: u8 = 2;
pub const ZSET: u8 = 3;
pub const HASH: u8 = 4;
/// Sorted set with binary doubles (RDB 8+).
pub const ZSET_2: u8 = 5;
/// Module value of the Redis 4.0 release candidates.
pub const MODULE_PRE_GA: u8 = 6;
/// Module value that can be walked without the module (Redis 4.0+).
pub const MODULE_2: u8 = 7;
pub const HASH_ZIPMAP: u8 = 9;
pub const LIST_ZIPLIST: u8 = 10;
pub const SET_INTSET: u8 = 11;
pub const ZSET_ZIPLIST: u8 = 12;
pub const HASH_ZIPLIST: u8 = 13;
/// Quicklist of ziplists (Redis 3.2 to 6.2).
pub const LIST_QUICKLIST: u8 = 14;
/// Stream (Redis 5.0 to 6.2).
pub const STREAM_LISTPACKS: u8 = 15;
pub const HASH_LISTPACK: u8 = 16;
pub const ZSET_LISTPACK: u8 = 17;
/// Quicklist of listpack or plain nodes (Redis 7.0+).
pub const LIST_QUICKLIST_2: u8 = 18;
/// Stream with entries-added, max-deleted-id and entries-read (Redis 7.0).
pub const STREAM_LISTPACKS_2: u8 = 19;
/// Set as a listpack (Redis 7.2+).
pub const SET_LISTPACK: u8 = 20;
/// Stream with consumers' active time (Redis 7.2+, Valkey).
pub const STREAM_LISTPACKS_3: u8 = 21;
/// Hash with field expiry, absolute times (Redis 7.4 release candidates).
pub const HASH_METADATA_PRE_GA: u8 = 22;
/// Listpack hash with field expiry (Redis 7.4 release candidates).
pub const HASH_LISTPACK_EX_PRE_GA: u8 = 23;
/// Hash with field expiry, times relative to the earliest (Redis 7.4+).
pub const HASH_METADATA: u8 = 24;
/// Listpack hash with field expiry, after the earliest expiry (Redis 7.4+).
pub const HASH_LISTPACK_EX: u8 = 25;

/// Keys per slot (Redis 7.4+ in cluster mode): three lengths.
pub const OP_SLOT_INFO: u8 = 244;
/// A function library's code (Redis 7.0+).
pub const OP_FUNCTION2: u8 = 245;
/// Functions of the Redis 7.0 release candidates.
pub const OP_FUNCTION_PRE_GA: u8 = 246;
pub const OP_MODULE_AUX: u8 = 247;
/// LRU idle time of the next key, in seconds.
pub const OP_IDLE: u8 = 248;
/// LFU counter of the next key, one byte.
pub const OP_FREQ: u8 = 249;
pub const OP_AUX: u8 = 250;
pub const OP_RESIZEDB: u8 = 251;
pub const OP_EXPIRETIME_MS: u8 = 252;
pub const OP_EXPIRETIME: u8 = 253;
pub const OP_SELECTDB: u8 = 254;
pub const OP_EOF: u8 = 255;

/// The key type of a value type; `None` for a byte that is no value type
/// this reader knows.
pub fn key_type(type_byte: u8) -> Option<KeyType> {
    Some(match type_byte {
        STRING => KeyType::String,
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => KeyType::List,
        SET | SET_INTSET | SET_LISTPACK => KeyType::Set,
        ZSET | ZSET_2 | ZSET_ZIPLIST | ZSET_LISTPACK => KeyType::Zset,
        HASH
        | HASH_ZIPMAP
        | HASH_ZIPLIST
        | HASH_LISTPACK
        | HASH_METADATA_PRE_GA
        | HASH_LISTPACK_EX_PRE_GA
        | HASH_METADATA
        | HASH_LISTPACK_EX => KeyType::Hash,
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => KeyType::Stream,
        MODULE_PRE_GA | MODULE_2 => KeyType::Dump,
        _ => return None,
    })
}
