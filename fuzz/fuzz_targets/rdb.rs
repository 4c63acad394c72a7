//! Any bytes through the RDB reader, in both modes and with small records:
//! it may refuse them, never panic, hang or allocate more than the input
//! pays for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_archive::rdb::{RdbOptions, RdbReader};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the record size and the mode, so the fuzzer
    // reaches the code that splits keys into parts.
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let mut options = RdbOptions::new(1_700_000_000_000, usize::from(knob & 0x7f) + 1);
    options.as_dump = knob & 0x80 != 0;
    let Ok(mut reader) = RdbReader::new(data, options) else {
        return;
    };
    let mut select = |info: &redis_archive::rdb::KeyInfo| info.key.0.first() != Some(&b'x');
    while let Ok(Some(_)) = reader.next_item(&mut select) {}
});
