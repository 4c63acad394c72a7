//! The RDB test vectors in fixtures/rdb/ (made by scripts/make-rdb-fixtures
//! from fixtures/rdb/data.redis; see fixtures/README.md): what reading each
//! must give, and random damage to them, which must be refused without a
//! panic (the stable counterpart of fuzz/fuzz_targets/rdb.rs).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use redis_archive::rdb::{RdbItem, RdbOptions, RdbReader};
use redis_archive::record::{
    Bytes, ConsumerGroup, Expiry, FieldExpiry, GroupPending, PendingEntry, Record, Score,
    StreamChunk, StreamEntry, StreamId, StreamMeta, Value,
};

/// The reference time of the expected records: 2027-01-15.
const NOW: i64 = 1_800_000_000_000;
/// 2100-01-01, the expiry the data sets.
const Y2100: i64 = 4_102_444_800_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/rdb")
            .join(name),
    )
    .unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes(s.as_bytes().to_vec())
}

fn record(key: &str, value: Value) -> Record {
    Record::new(b(key), value)
}

/// What every server's file holds, by (db, key); sets and hashes sorted.
/// RDB 9 streams (Redis 6.0) do not have entries added or the largest
/// deleted id; Redis 8.0's file has a hash with field expiry more.
fn expected(rdb9: bool, redis8: bool) -> BTreeMap<(u32, Bytes), Record> {
    let id = |ms, seq| StreamId { ms, seq };
    let mut ttl = record("str:ttl", Value::String(b("expiring")));
    ttl.expiry = Some(Expiry {
        at_ms: Y2100,
        ttl_ms: Y2100 - NOW,
    });
    let mut records = vec![
        (0, record("str:plain", Value::String(b("hello")))),
        (0, record("str:int", Value::String(b("12345")))),
        (0, record("str:lzf", Value::String(b(&"abc".repeat(20))))),
        (
            0,
            record("str:bin", Value::String(Bytes(vec![0xff, 0x00, 0xfe]))),
        ),
        (0, ttl),
        (
            0,
            record("list:small", Value::List(vec![b("a"), b("b"), b("3")])),
        ),
        (
            0,
            record("set:ints", Value::Set(vec![b("1"), b("2"), b("3")])),
        ),
        (0, record("set:strs", Value::Set(vec![b("a"), b("b")]))),
        (
            0,
            record(
                "zset:small",
                Value::Zset(vec![
                    (b("a"), Score(1.5)),
                    (b("b"), Score(f64::NEG_INFINITY)),
                    (b("c"), Score(3.0)),
                ]),
            ),
        ),
        (
            0,
            record(
                "hash:small",
                Value::Hash(vec![(b("f"), b("v")), (b("n"), b("1"))]),
            ),
        ),
        (
            0,
            record(
                "stream",
                Value::Stream(StreamChunk {
                    meta: Some(StreamMeta {
                        last_id: id(2, 0),
                        entries_added: (!rdb9).then_some(3),
                        max_deleted_id: (!rdb9).then_some(id(1, 2)),
                        groups: vec![ConsumerGroup {
                            name: b("grp"),
                            last_delivered_id: id(1, 1),
                            // A deleted entry before the group's position:
                            // the servers do not know it (XINFO says nil).
                            entries_read: None,
                            consumers: vec![b("alice"), b("bob"), b("carol")],
                        }],
                    }),
                    entries: vec![
                        StreamEntry {
                            id: id(1, 1),
                            fields: vec![(b("f"), b("v"))],
                        },
                        StreamEntry {
                            id: id(2, 0),
                            fields: vec![(b("g"), b("x"))],
                        },
                    ],
                    pending: vec![GroupPending {
                        group: b("grp"),
                        entries: vec![PendingEntry {
                            id: id(1, 1),
                            consumer: b("bob"),
                            delivery_count: 3,
                            delivered_at_ms: 1_700_000_000_000,
                        }],
                    }],
                }),
            ),
        ),
        (1, record("db1:key", Value::String(b("v")))),
    ];
    if redis8 {
        let mut hfe = record(
            "hfe",
            Value::Hash(vec![(b("f1"), b("v1")), (b("f2"), b("v2"))]),
        );
        hfe.field_expiry = vec![FieldExpiry {
            field: b("f1"),
            at_ms: Y2100,
            ttl_ms: Y2100 - NOW,
        }];
        records.push((0, hfe));
    }
    records
        .into_iter()
        .map(|(db, r)| ((db, r.key.clone()), r))
        .collect()
}

/// Sets and hashes in a fixed order (a hashtable's order is the server's).
fn sorted(mut r: Record) -> Record {
    match &mut r.value {
        Value::Set(v) => v.sort(),
        Value::Hash(v) => v.sort(),
        Value::Zset(v) => v.sort_by(|a, b| a.0.cmp(&b.0)),
        _ => {}
    }
    r
}

#[test]
fn the_rdb_fixtures_read_as_expected() {
    let function = b"#!lua name=fx\nredis.register_function('fx_one', function() return 1 end)";
    for (file, version, ver_key, ver) in [
        ("redis-6.0.rdb", 9, "redis-ver", "6.0.16"),
        ("redis-7.0.rdb", 10, "redis-ver", "7.0.15"),
        ("redis-8.0.rdb", 12, "redis-ver", "8.0.2"),
        ("valkey-8.1.rdb", 11, "valkey-ver", "8.1.1"),
    ] {
        let bytes = fixture(file);
        let mut reader = RdbReader::new(&bytes[..], RdbOptions::new(NOW, 1 << 20)).unwrap();
        assert_eq!(reader.version(), version, "{file}");
        let mut got = BTreeMap::new();
        let mut aux = BTreeMap::new();
        let mut functions = Vec::new();
        while let Some(item) = reader.next_item(&mut |_| true).unwrap() {
            match item {
                RdbItem::Record { db, record } => {
                    assert!(!record.more, "{file}: small keys are one record");
                    got.insert((db, record.key.clone()), sorted(record));
                }
                RdbItem::Aux { key, value } => {
                    aux.insert(String::from_utf8(key).unwrap(), value);
                }
                RdbItem::Function { code } => functions.push(code),
                other => panic!("{file}: {other:?}"),
            }
        }
        assert!(reader.checksum_verified(), "{file}");
        assert_eq!(got, expected(version == 9, version == 12), "{file}");
        assert_eq!(aux[ver_key], ver.as_bytes(), "{file}");
        assert_eq!(aux["redis-bits"], b"64", "{file}");
        if version == 9 {
            assert!(functions.is_empty(), "{file}");
        } else {
            assert_eq!(functions, [function.to_vec()], "{file}");
        }
        assert_eq!(reader.stats().keys_per_db[&1], 1);
        assert_eq!(reader.into_inner(), b"", "{file}: read to its end");
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
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
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A damaged file is refused (or, a few times in 2^64, read as another
    /// valid file), never a panic, with every key size.
    #[test]
    fn damaged_rdb_fixtures_are_refused(
        file in 0..4usize,
        m in mutation(),
        chunk in 1..100usize,
        as_dump: bool,
    ) {
        let name = ["redis-6.0.rdb", "redis-7.0.rdb", "redis-8.0.rdb", "valkey-8.1.rdb"][file];
        let original = fixture(name);
        let mut bytes = original.clone();
        let len = bytes.len();
        match &m {
            Mutation::Flip(at, mask) => bytes[at % len] ^= mask,
            Mutation::Insert(at, b) => {
                let at = at % (len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
        }
        let mut options = RdbOptions::new(NOW, chunk);
        options.as_dump = as_dump;
        let result = RdbReader::new(&bytes[..], options).and_then(|mut reader| {
            while reader.next_item(&mut |_| true)?.is_some() {}
            Ok(reader.checksum_verified())
        });
        // Appending after the checksum leaves a valid file followed by
        // other bytes (a replication stream's next commands).
        let appended = matches!(&m, Mutation::Insert(at, _) if at % (len + 1) == len);
        prop_assert!(result.is_err() || appended, "{m:?} of {name} read as {result:?}");
    }
}
