//! Any bytes through the archive reader (the full read restore makes before
//! writing): it may refuse them, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_archive::archive::reader::Discard;
use redis_archive::archive::{ArchiveSource, Decryption, read_archive};

fuzz_target!(|data: &[u8]| {
    let _ = read_archive(
        &ArchiveSource::Memory(data.into()),
        &Decryption::none(),
        &mut Discard,
    );
});
