//! Any bytes as one record line: decoding may fail, never panic; a record
//! that decodes encodes back to a line that decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_archive::record::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let mut line = Vec::new();
        record.encode_into(&mut line);
        line.pop();
        assert_eq!(Record::decode(&line).unwrap(), record);
    }
});
