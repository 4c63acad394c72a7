//! RESTORE payloads read back by the reader: what `restore_payload` writes
//! is the value it was given (the servers' own acceptance is tested against
//! real servers, with `sanitize-dump-payload yes`).

use proptest::prelude::*;

use super::*;
use crate::rdb::{STREAM_COUNTERS_RDB, restore_payload};
use crate::record::{Bytes, Score, StreamEntry, StreamId, StreamMeta};

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
