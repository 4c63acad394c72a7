//! Damaged and hostile input: every truncation and every changed byte of a
//! file with a bit of everything is an error (never a panic, never a
//! success), and lengths the input cannot back allocate nothing.

use super::streams::{Ent, node, raw_id};
use super::*;
use crate::rdb::listpack::build::{E, listpack};
use crate::rdb::types::*;
use crate::rdb::ziplist::build::ziplist;

fn everything() -> Vec<u8> {
    let stream = node(
        (5, 0),
        &[
            Ent {
                id: (5, 0),
                fields: &[("f", "v")],
                deleted: false,
            },
            Ent {
                id: (5, 1),
                fields: &[("f", "w")],
                deleted: true,
            },
            Ent {
                id: (6, 0),
                fields: &[("g", "x")],
                deleted: false,
            },
        ],
    );
    let mut intset = 2u32.to_le_bytes().to_vec();
    intset.extend(2u32.to_le_bytes());
    intset.extend([1, 0, 2, 0]);
    Rdb::new(12)
        .aux("redis-ver", "8.0.2")
        .select(0)
        .u8(OP_RESIZEDB)
        .len(9)
        .len(1)
        .expire_ms(NOW + 1000)
        .key(STRING, "s")
        .str(b"value")
        .key(STRING, "z")
        .raw(&[
            0xc3, 0x09, 0x32, 0x01, b'a', b'a', 0xe0, 0x25, 0x00, 0x01, b'a', b'a',
        ])
        .key(LIST_QUICKLIST_2, "l")
        .len(2)
        .len(2)
        .str(&listpack(&[E::S(b"a"), E::I(-3)]))
        .len(1)
        .str(b"plain")
        .key(LIST_QUICKLIST, "q")
        .len(1)
        .str(&ziplist(&[E::S(b"x"), E::I(300)]))
        .key(SET_INTSET, "i")
        .str(&intset)
        .key(ZSET_LISTPACK, "zs")
        .str(&listpack(&[E::S(b"m"), E::S(b"1.5")]))
        .key(HASH_METADATA, "h")
        .raw(&((NOW + 10) as u64).to_le_bytes())
        .len(2)
        .len(1)
        .str(b"f")
        .str(b"v")
        .len(0)
        .str(b"g")
        .str(b"w")
        .key(STREAM_LISTPACKS_3, "st")
        .len(1)
        .str(&raw_id(5, 0))
        .str(&stream)
        .len(2)
        .len(6)
        .len(0)
        .len(5)
        .len(0)
        .len(5)
        .len(1)
        .len(3)
        .len(1)
        .str(b"g")
        .len(6)
        .len(0)
        .len(2)
        .len(1)
        .raw(&raw_id(6, 0))
        .raw(&77u64.to_le_bytes())
        .len(1)
        .len(1)
        .str(b"c")
        .raw(&[0; 16])
        .len(1)
        .raw(&raw_id(6, 0))
        .key(MODULE_2, "m")
        .len(0x1234_5678_9000)
        .raw(&[0x02, 0x01, 0x00])
        .finish()
}

fn read(bytes: &[u8], chunk: usize, as_dump: bool) -> Result<usize, RdbError> {
    let mut opts = options(chunk);
    opts.as_dump = as_dump;
    read_all(bytes, opts).map(|(items, _, _)| items.len())
}

#[test]
fn the_whole_file_reads() {
    let file = everything();
    for (chunk, as_dump) in [(1 << 20, false), (8, false), (100, true)] {
        assert!(read(&file, chunk, as_dump).unwrap() >= 10);
    }
    let recs = records(&file, 8);
    assert_eq!(
        whole(&recs, "st").0.len(),
        2 + 1,
        "two entries and a pending entry"
    );
}

#[test]
fn every_truncation_is_an_error() {
    let file = everything();
    for n in 0..file.len() {
        for (chunk, as_dump) in [(1 << 20, false), (8, false), (100, true)] {
            let got = read(&file[..n], chunk, as_dump);
            assert!(got.is_err(), "{n} of {} bytes read as {got:?}", file.len());
        }
    }
}

#[test]
fn every_changed_byte_is_an_error() {
    let file = everything();
    for at in 0..file.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[at] ^= mask;
            for (chunk, as_dump) in [(1 << 20, false), (8, false), (100, true)] {
                let got = read(&bad, chunk, as_dump);
                assert!(got.is_err(), "byte {at} ^ {mask:#x} read as {got:?}");
            }
        }
    }
}

#[test]
fn lengths_the_input_cannot_back_allocate_nothing() {
    let huge = 1u64 << 62;
    let cases = [
        Rdb::new(12).key(STRING, "s").len(huge).raw(b"abc"),
        Rdb::new(12).key(LIST, "l").len(huge).str(b"a"),
        Rdb::new(12).key(SET_LISTPACK, "s").len(huge),
        Rdb::new(12).key(STREAM_LISTPACKS_3, "s").len(huge),
        Rdb::new(12).u8(OP_AUX).len(huge),
        // A listpack string that says it is 4 GiB long.
        Rdb::new(12)
            .key(SET_LISTPACK, "s")
            .str(&[12, 0, 0, 0, 1, 0, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ];
    for rdb in cases {
        let file = rdb.finish();
        let e = read(&file, 1 << 20, false).unwrap_err();
        assert!(
            matches!(e, RdbError::Truncated { .. } | RdbError::Corrupt { .. }),
            "{e}"
        );
    }
    // An LZF string declaring more than its bytes can make.
    let file = Rdb::new(12)
        .key(STRING, "s")
        .raw(&[0xc3, 0x02])
        .len(huge)
        .raw(&[0, b'a'])
        .finish();
    let e = read(&file, 1 << 20, false).unwrap_err();
    assert!(e.to_string().contains("cannot make"), "{e}");
}
