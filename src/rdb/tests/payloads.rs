//! RESTORE payloads read back by the reader: what `restore_payload` writes
//! is the value it was given (the servers' own acceptance is tested against
//! real servers, with `sanitize-dump-payload yes`).

use proptest::prelude::*;

use super::*;
use crate::rdb::{STREAM_COUNTERS_RDB, decode_with_payload, restore_payload};
use crate::record::{Bytes, Expiry, Record, Score, StreamEntry, StreamId, StreamMeta};

/// The value a payload holds, through an RDB file made of it.
fn read_back(payload: &[u8]) -> Value {
    let (body, trailer) = payload.split_at(payload.len() - 10);
    assert_eq!(
        u64::from_le_bytes(trailer[2..].try_into().unwrap()),
        crc64(&payload[..payload.len() - 8]),
        "the trailer's CRC-64 covers the value and the version"
    );
    let version = u16::from_le_bytes([trailer[0], trailer[1]]);
    let file = Rdb::new(u32::from(version))
        .u8(body[0])
        .str(b"k")
        .raw(&body[1..])
        .finish();
    let mut all = records(&file, 64 << 20);
    assert_eq!(all.len(), 1);
    all.remove(0).value
}

fn bytes() -> impl Strategy<Value = Bytes> {
    // Mostly short, sometimes past the one-byte and two-byte lengths.
    prop_oneof![
        20 => proptest::collection::vec(any::<u8>(), 0..80),
        1 => proptest::collection::vec(any::<u8>(), 0..20_000),
    ]
    .prop_map(Bytes)
}

fn distinct(items: Vec<Bytes>) -> Vec<Bytes> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|b| seen.insert(b.0.clone()))
        .collect()
}

/// Scores of every kind a listpack holds: integers, fractions, the
/// extremes, both zeros and both infinities.
fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1000i64..1000).prop_map(|i| i as f64),
        (-1000i64..1000).prop_map(|i| i as f64 / 7.0),
        any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(9007199254740993.0),
        Just(-1e300),
    ]
}

fn stream() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(
            (
                1u64..5,
                0u64..3,
                proptest::collection::vec((bytes(), bytes()), 0..4),
            ),
            0..250,
        ),
        0u64..10,
        any::<bool>(),
    )
        .prop_map(|(steps, past, deleted)| {
            let mut id = StreamId { ms: 1, seq: 0 };
            let mut entries = Vec::new();
            for (ms, seq, fields) in steps {
                id = StreamId {
                    ms: id.ms + ms - 1,
                    seq: if ms == 1 { id.seq + seq + 1 } else { seq },
                };
                entries.push(StreamEntry { id, fields });
            }
            let last = entries.last().map_or(StreamId::default(), |e| e.id);
            let meta = StreamMeta {
                last_id: StreamId {
                    ms: last.ms + past,
                    seq: last.seq,
                },
                entries_added: Some(entries.len() as u64 + past),
                max_deleted_id: Some(StreamId {
                    ms: u64::from(deleted),
                    seq: 0,
                }),
                groups: Vec::new(),
            };
            Value::Stream(crate::record::StreamChunk {
                meta: Some(meta),
                entries,
                pending: Vec::new(),
            })
        })
}

fn value() -> impl Strategy<Value = Value> {
    let members = || proptest::collection::vec(bytes(), 1..150).prop_map(distinct);
    prop_oneof![
        bytes().prop_map(Value::String),
        members().prop_map(|m| {
            Value::Hash(
                m.into_iter()
                    .map(|f| (f.clone(), Bytes(f.0.repeat(2))))
                    .collect(),
            )
        }),
        proptest::collection::vec(bytes(), 1..150).prop_map(Value::List),
        members().prop_map(Value::Set),
        (members(), proptest::collection::vec(-1e12f64..1e12, 150)).prop_map(|(m, s)| {
            Value::Zset(m.into_iter().zip(s).map(|(m, s)| (m, Score(s))).collect())
        }),
        // In the server's order, as exported: written as a listpack when small.
        (members(), proptest::collection::vec(score(), 150)).prop_map(|(m, s)| {
            let mut members: Vec<_> = m.into_iter().zip(s).collect();
            members.sort_by(|(ma, sa), (mb, sb)| sa.total_cmp(sb).then_with(|| ma.cmp(mb)));
            Value::Zset(members.into_iter().map(|(m, s)| (m, Score(s))).collect())
        }),
        stream(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_payload_holds_its_value(value in value()) {
        let payload = restore_payload(&value, STREAM_COUNTERS_RDB).unwrap();
        prop_assert_eq!(read_back(&payload), value);
    }

    /// What a restore's reader gives for a record line: the payload made
    /// from the whole record, or the whole record.
    #[test]
    fn a_line_decoded_with_its_payload_gives_the_records_payload(
        value in prop_oneof![value(), Just(Value::Hash(Vec::new()))],
        expiry in proptest::option::of(1i64..i64::MAX),
        part in 0u32..2,
        more in any::<bool>(),
    ) {
        let mut record = Record::new(Bytes::from("k"), value);
        record.expiry = expiry.map(|ttl_ms| Expiry { at_ms: ttl_ms, ttl_ms });
        if !matches!(record.value, Value::Stream(_)) {
            (record.part, record.more) = (part, more);
        }
        let mut line = Vec::new();
        record.encode_into(&mut line);
        line.pop();
        let whole_key = record.part == 0 && !record.more;
        let expected = restore_payload(&record.value, STREAM_COUNTERS_RDB).filter(|_| whole_key);
        let (decoded, payload) = decode_with_payload(&line, STREAM_COUNTERS_RDB).unwrap();
        match expected {
            Some(expected) => {
                prop_assert_eq!(payload, Some(expected));
                prop_assert_eq!(decoded, hollow(&record));
            }
            None => {
                prop_assert_eq!(payload, None);
                prop_assert_eq!(decoded, record);
            }
        }
    }
}

/// A record as it comes with its payload: the bytes of strings and the
/// elements of collections empty (scores kept), streams empty.
fn hollow(record: &Record) -> Record {
    let empty = |_: &Bytes| Bytes::default();
    let mut out = record.clone();
    out.value = match &record.value {
        Value::String(_) => Value::String(Bytes::default()),
        Value::Hash(v) => Value::Hash(v.iter().map(|(f, x)| (empty(f), empty(x))).collect()),
        Value::List(v) => Value::List(v.iter().map(empty).collect()),
        Value::Set(v) => Value::Set(v.iter().map(empty).collect()),
        Value::Zset(v) => Value::Zset(v.iter().map(|(m, s)| (empty(m), *s)).collect()),
        Value::Stream(_) => Value::Stream(crate::record::StreamChunk {
            meta: None,
            entries: Vec::new(),
            pending: Vec::new(),
        }),
        other => other.clone(),
    };
    out
}

#[test]
fn lines_decoded_with_payloads_are_checked_as_whole_ones() {
    let lines: [&[u8]; 7] = [
        br#"{"key":"k","value":{"zset":[["m","nan"]]}}"#,
        br#"{"key":"k","value":{"hash":[["f",{"b64":"!!"}]]}}"#,
        br#"{"key":"k","part":1,"void":true,"value":{"string":"x"}}"#,
        br#"{"key":"k","field_expiry":[{"field":"g","at_ms":5,"ttl_ms":5}],"value":{"hash":[["f","v"]]}}"#,
        br#"{"key":"k","value":{"list":["a",1]}}"#,
        b"{\"key\":\"k\xff\",\"value\":{\"string\":\"v\"}}",
        br#"{"key":"k","expiry":{"at_ms":5,"ttl_ms":0},"value":{"set":["a"]}}"#,
    ];
    for line in lines {
        let expected = Record::decode(line).map(|_| ());
        assert!(expected.is_err(), "{}", String::from_utf8_lossy(line));
        let got = decode_with_payload(line, STREAM_COUNTERS_RDB).map(|_| ());
        assert_eq!(got, expected, "{}", String::from_utf8_lossy(line));
    }
    // A record with field expiry keeps its commands, whole.
    let line = br#"{"key":"k","field_expiry":[{"field":"f","at_ms":5,"ttl_ms":5}],"value":{"hash":[["f","v"]]}}"#;
    let (record, payload) = decode_with_payload(line, STREAM_COUNTERS_RDB).unwrap();
    assert_eq!(payload, None);
    assert_eq!(record, Record::decode(line).unwrap());
}

#[test]
fn what_keeps_its_commands_gets_no_payload() {
    let empty_hash = Value::Hash(Vec::new());
    assert!(restore_payload(&empty_hash, STREAM_COUNTERS_RDB).is_none());
    let stream = Value::Stream(crate::record::StreamChunk {
        meta: Some(StreamMeta {
            last_id: StreamId { ms: 5, seq: 0 },
            entries_added: Some(0),
            max_deleted_id: None,
            groups: Vec::new(),
        }),
        entries: Vec::new(),
        pending: Vec::new(),
    });
    assert!(restore_payload(&stream, STREAM_COUNTERS_RDB).is_some());
    assert!(
        restore_payload(&stream, 9).is_none(),
        "servers before 7.0 cannot take a stream's counters"
    );
}

#[test]
fn small_collections_are_written_as_the_server_keeps_them() {
    let b = |s: &str| Bytes::from(s);
    let kind = |value: &Value, rdb: u16| restore_payload(value, rdb).unwrap()[0];
    let hash = |n: usize, len: usize| {
        Value::Hash(
            (0..n)
                .map(|i| (Bytes(format!("{i:0len$}").into_bytes()), b("7")))
                .collect(),
        )
    };
    let zset = |members: &[(&str, f64)]| {
        Value::Zset(members.iter().map(|&(m, s)| (b(m), Score(s))).collect())
    };
    // A hash: a listpack up to 128 fields of up to 64 bytes, all distinct.
    assert_eq!(kind(&hash(128, 64), 10), types::HASH_LISTPACK);
    assert_eq!(kind(&hash(129, 3), 10), types::HASH);
    assert_eq!(kind(&hash(3, 65), 10), types::HASH);
    assert_eq!(kind(&hash(3, 3), 9), types::HASH);
    let twice = Value::Hash(vec![(b("f"), b("1")), (b("f"), b("2"))]);
    assert_eq!(kind(&twice, 10), types::HASH);
    // A list: one node of a listpack up to 8 KiB.
    assert_eq!(
        kind(&Value::List(vec![b("a"); 1000]), 10),
        types::LIST_QUICKLIST_2
    );
    assert_eq!(
        kind(&Value::List(vec![Bytes(vec![b'x'; 100]); 100]), 10),
        types::LIST
    );
    // A sorted set: a listpack only in the server's order, members distinct.
    assert_eq!(
        kind(
            &zset(&[("b", -0.0), ("a", 1.0), ("c", 1.0), ("a", 2.5)]),
            10
        ),
        types::ZSET_2
    );
    assert_eq!(
        kind(
            &zset(&[("b", -0.0), ("a", 1.0), ("c", 1.0), ("d", 2.5)]),
            10
        ),
        types::ZSET_LISTPACK
    );
    assert_eq!(kind(&zset(&[("b", 1.0), ("a", 1.0)]), 10), types::ZSET_2);
    assert_eq!(kind(&zset(&[("a", 2.0), ("b", 1.0)]), 10), types::ZSET_2);
    // A NaN has no listpack form: sent plain, as it is, for the server to
    // refuse (records never hold one; the library's callers might).
    let nan = restore_payload(&zset(&[("a", f64::NAN)]), 10).unwrap();
    assert_eq!(nan[0], types::ZSET_2);
    assert!(
        nan.windows(8)
            .any(|w| f64::from_le_bytes(w.try_into().unwrap()).is_nan())
    );
    // Sets stay plain.
    assert_eq!(kind(&Value::Set(vec![b("a"), b("b")]), 12), types::SET);
    // What the server reads back from each is the value.
    for value in [
        hash(128, 64),
        Value::List(vec![
            b("-12"),
            b("012"),
            b("9223372036854775808"),
            b("-0"),
            b("0"),
        ]),
        zset(&[
            ("m", f64::NEG_INFINITY),
            ("a", -0.0),
            ("b", 0.0),
            ("c", 0.1),
            ("d", 1e300),
            ("e", f64::INFINITY),
        ]),
    ] {
        let payload = restore_payload(&value, 10).unwrap();
        assert!(matches!(
            payload[0],
            types::HASH_LISTPACK | types::LIST_QUICKLIST_2 | types::ZSET_LISTPACK
        ));
        let back = read_back(&payload);
        if let (Value::Zset(a), Value::Zset(b)) = (&value, &back) {
            let bits =
                |v: &[(Bytes, Score)]| v.iter().map(|(_, s)| s.0.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "scores bit for bit");
        }
        assert_eq!(back, value);
    }
}
