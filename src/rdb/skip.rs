//! Reading past a value without decoding it: for keys not selected or
//! expired, and to take a value's raw bytes (module values, DUMP payloads).
//! Only the structure is walked: strings and blobs are skipped by their
//! length, so skipping costs no memory whatever the value's size.

use std::io::BufRead;

use super::error::RdbError;
use super::input::Input;
use super::module;
use super::types::*;

/// Read past a value of type `type_byte` that starts here; `at` is where
/// its type byte was, for errors.
pub(super) fn skip_value<R: BufRead>(
    input: &mut Input<R>,
    type_byte: u8,
    at: u64,
) -> Result<(), RdbError> {
    match type_byte {
        STRING
        | HASH_ZIPMAP
        | LIST_ZIPLIST
        | SET_INTSET
        | ZSET_ZIPLIST
        | HASH_ZIPLIST
        | HASH_LISTPACK
        | ZSET_LISTPACK
        | SET_LISTPACK
        | HASH_LISTPACK_EX_PRE_GA => input.skip_string(),
        HASH_LISTPACK_EX => {
            input.skip(8)?;
            input.skip_string()
        }
        LIST | SET | LIST_QUICKLIST => repeat(input, |i| i.skip_string()),
        LIST_QUICKLIST_2 => repeat(input, |i| {
            i.len()?;
            i.skip_string()
        }),
        ZSET => repeat(input, |i| {
            i.skip_string()?;
            i.skip_f64_text()
        }),
        ZSET_2 => repeat(input, |i| {
            i.skip_string()?;
            i.skip(8)
        }),
        HASH => repeat(input, |i| {
            i.skip_string()?;
            i.skip_string()
        }),
        HASH_METADATA | HASH_METADATA_PRE_GA => {
            if type_byte == HASH_METADATA {
                input.skip(8)?;
            }
            repeat(input, |i| {
                i.len()?;
                i.skip_string()?;
                i.skip_string()
            })
        }
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 => skip_stream(input, type_byte),
        MODULE_2 => {
            input.len()?;
            module::skip_body(input)
        }
        MODULE_PRE_GA => Err(RdbError::Unsupported {
            offset: at,
            what: "a module value of the Redis 4.0 release candidates (type 6)",
        }),
        _ => Err(RdbError::UnknownType {
            type_byte,
            offset: at,
        }),
    }
}

/// A count, then that many of something.
fn repeat<R: BufRead>(
    input: &mut Input<R>,
    mut one: impl FnMut(&mut Input<R>) -> Result<(), RdbError>,
) -> Result<(), RdbError> {
    let n = input.len()?;
    for _ in 0..n {
        one(input)?;
    }
    Ok(())
}

/// `n` lengths.
fn lens<R: BufRead>(input: &mut Input<R>, n: usize) -> Result<(), RdbError> {
    for _ in 0..n {
        input.len()?;
    }
    Ok(())
}

fn skip_stream<R: BufRead>(input: &mut Input<R>, type_byte: u8) -> Result<(), RdbError> {
    let v2 = type_byte >= STREAM_LISTPACKS_2;
    let v3 = type_byte >= STREAM_LISTPACKS_3;
    // Nodes: master id and listpack.
    repeat(input, |i| {
        i.skip_string()?;
        i.skip_string()
    })?;
    // Length and last id; then first id, max deleted id, entries added.
    lens(input, if v2 { 8 } else { 3 })?;
    repeat(input, |i| {
        i.skip_string()?; // name
        lens(i, if v2 { 3 } else { 2 })?; // last delivered id, entries read
        repeat(i, |i| {
            i.skip(16 + 8)?; // id, delivery time
            i.len().map(drop) // delivery count
        })?;
        repeat(i, |i| {
            i.skip_string()?; // name
            i.skip(if v3 { 16 } else { 8 })?; // seen (and active) time
            repeat(i, |i| i.skip(16))
        })
    })
}
