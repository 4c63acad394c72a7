//! Bounded fuzzing on stable Rust (issue #8), run by CI: random mutations of
//! real archives and record lines go through the archive reader and the
//! record decoder, the same entry points as the coverage-guided targets in
//! fuzz/ (scripts/fuzz). Neither may panic; the reader must refuse every
//! changed file; a record that decodes must encode back to itself.

use std::io::Read;
use std::path::Path;

use proptest::prelude::*;
use redis_archive::archive::reader::Discard;
use redis_archive::archive::{ArchiveSource, Decryption, read_archive};
use redis_archive::record::Record;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), 1..256usize).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::Flip(at, mask) => bytes[at % len] ^= mask,
        Mutation::Insert(at, b) => {
            let at = at % (len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete(at, n) => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Duplicate(at, n) => {
            let at = at % len;
            let piece = bytes[at..(at + n).min(len)].to_vec();
            bytes.splice(at..at, piece);
        }
        Mutation::Truncate(at) => bytes.truncate(at % len),
    }
}

/// The data entry of the valid fixture: real record lines to mutate.
fn record_lines() -> Vec<Vec<u8>> {
    let plain = zstd::decode_all(&fixture("valid.tar.zst")[..]).unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    let mut data = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().starts_with("data") {
            entry.read_to_end(&mut data).unwrap();
        }
    }
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_archives_are_refused_without_panicking(
        encrypted in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let (name, decryption) = if encrypted {
            let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/age-key.txt");
            ("encrypted.tar.zst.age", Decryption::none().with_identity_files(&[key]).unwrap())
        } else {
            ("valid.tar.zst", Decryption::none())
        };
        let good = fixture(name);
        let mut bytes = good.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let read = read_archive(&ArchiveSource::Memory(bytes.clone().into()), &decryption, &mut Discard);
        // Mutations may cancel out (a byte flipped twice); anything else is refused.
        prop_assert_eq!(read.is_ok(), bytes == good, "{:?}", mutations);
    }

    #[test]
    fn mutated_record_lines_decode_or_fail_and_round_trip(
        line in 0..9usize,
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let lines = record_lines();
        let mut bytes = lines[line % lines.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Ok(record) = Record::decode(&bytes) {
            let mut again = Vec::new();
            record.encode_into(&mut again);
            again.pop();
            prop_assert_eq!(Record::decode(&again).unwrap(), record);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
        let _ = read_archive(&ArchiveSource::Memory(bytes.into()), &Decryption::none(), &mut Discard);
    }
}
