//! The record's JSON form: exact round trips, for every value and by
//! property, and what a reader refuses.

use super::*;
use proptest::prelude::*;

fn round_trip(record: &Record) -> Record {
    let mut buf = Vec::new();
    record.encode_into(&mut buf);
    assert_eq!(buf.last(), Some(&b'\n'));
    assert_eq!(
        buf.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one record is one line"
    );
    Record::decode(&buf[..buf.len() - 1]).unwrap()
}

#[test]
fn binary_bytes_use_base64_and_text_stays_text() {
    let r = Record::new(Bytes(vec![0xff, 0x00, b'k']), Value::String("héllo".into()));
    let mut buf = Vec::new();
    r.encode_into(&mut buf);
    let line = String::from_utf8(buf).unwrap();
    assert_eq!(
        line,
        "{\"key\":{\"b64\":\"/wBr\"},\"value\":{\"string\":\"héllo\"}}\n"
    );
    assert_eq!(round_trip(&r), r);
}

#[test]
fn control_characters_use_base64() {
    let mut buf = Vec::new();
    Bytes(vec![0, 1, 2])
        .serialize(&mut serde_json::Serializer::new(&mut buf))
        .unwrap();
    assert_eq!(buf, br#"{"b64":"AAEC"}"#);
    buf.clear();
    Bytes::from("a\tb\n")
        .serialize(&mut serde_json::Serializer::new(&mut buf))
        .unwrap();
    assert_eq!(buf, br#""a\tb\n""#);
}

#[test]
fn split_keeps_order_meta_and_bounds() {
    let items: Vec<Bytes> = (0..100u8).map(|i| Bytes(vec![i; 10])).collect();
    let pieces = Value::List(items.clone()).split(100);
    assert!(pieces.len() > 1);
    assert!(pieces.iter().all(|p| p.approx_bytes() <= 100));
    let joined: Vec<Bytes> = pieces
        .into_iter()
        .flat_map(|p| match p {
            Value::List(v) => v,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(joined, items);

    let big = Value::Set(vec![Bytes(vec![1; 500]), Bytes(vec![2; 5])]);
    assert_eq!(big.split(100).len(), 2, "an oversized element stands alone");

    let stream = Value::Stream(StreamChunk {
        meta: Some(StreamMeta {
            last_id: StreamId { ms: 9, seq: 0 },
            entries_added: None,
            max_deleted_id: None,
            groups: vec![],
        }),
        entries: (1..=10)
            .map(|ms| StreamEntry {
                id: StreamId { ms, seq: 0 },
                fields: vec![("f".into(), Bytes(vec![0; 40]))],
            })
            .collect(),
        pending: Vec::new(),
    });
    let pieces = stream.split(150);
    assert!(pieces.len() > 1);
    for (i, p) in pieces.iter().enumerate() {
        let Value::Stream(c) = p else { unreachable!() };
        assert_eq!(c.meta.is_some(), i == 0);
    }
}

fn pending(group: &str, ids: std::ops::Range<u64>) -> GroupPending {
    GroupPending {
        group: group.into(),
        entries: ids
            .map(|ms| PendingEntry {
                id: StreamId { ms, seq: 0 },
                consumer: "worker".into(),
                delivery_count: ms,
                delivered_at_ms: 1_700_000_000_000 + ms as i64,
            })
            .collect(),
    }
}

#[test]
fn split_keeps_pending_entries_after_entries_and_in_their_groups() {
    let chunk = StreamChunk {
        meta: None,
        entries: (1..=4)
            .map(|ms| StreamEntry {
                id: StreamId { ms, seq: 0 },
                fields: vec![("f".into(), Bytes(vec![0; 40]))],
            })
            .collect(),
        pending: vec![pending("a", 1..30), pending("b", 1..3)],
    };
    let whole = Value::Stream(chunk.clone());
    assert_eq!(whole.len(), 4 + 29 + 2);
    let pieces = whole.split(200);
    assert!(pieces.len() > 3, "{}", pieces.len());
    let mut entries = Vec::new();
    let mut runs: Vec<GroupPending> = Vec::new();
    for p in pieces {
        assert!(p.approx_bytes() <= 200);
        let Value::Stream(c) = p else { unreachable!() };
        assert!(
            c.entries.is_empty() || runs.is_empty(),
            "no entries after pending entries"
        );
        entries.extend(c.entries);
        for run in c.pending {
            match runs.last_mut() {
                Some(last) if last.group == run.group => last.entries.extend(run.entries),
                _ => runs.push(run),
            }
        }
    }
    assert_eq!(entries, chunk.entries);
    assert_eq!(runs, chunk.pending);
}

#[test]
fn schema_1_stream_records_still_decode_and_bad_pending_entries_do_not() {
    let old = br#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1","entries_read":1}]},"entries":[{"id":"5-0","fields":[["a","b"]]}]}}}"#;
    let record = Record::decode(old).unwrap();
    let Value::Stream(chunk) = &record.value else {
        panic!()
    };
    assert!(chunk.pending.is_empty());
    assert!(chunk.meta.as_ref().unwrap().groups[0].consumers.is_empty());
    let mut buf = Vec::new();
    record.encode_into(&mut buf);
    assert_eq!(&buf[..buf.len() - 1], &old[..], "written back unchanged");

    let new = br#"{"key":"s","part":1,"value":{"stream":{"entries":[],"pending":[{"group":"g","entries":[{"id":"1-1","consumer":"alice","delivery_count":3,"delivered_at_ms":1795305364391}]}]}}}"#;
    let record = Record::decode(new).unwrap();
    let mut buf = Vec::new();
    record.encode_into(&mut buf);
    assert_eq!(&buf[..buf.len() - 1], &new[..]);

    for bad in [
        // ids out of order
        r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"2-0","consumer":"a","delivery_count":1,"delivered_at_ms":5},{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":5}]}]}}}"#,
        // a negative delivery time
        r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":-5}]}]}}}"#,
        // an empty run
        r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[]}]}}}"#,
        // an unknown field
        r#"{"key":"s","part":1,"value":{"stream":{"pending":[{"group":"g","entries":[{"id":"1-0","consumer":"a","delivery_count":1,"delivered_at_ms":5,"idle":3}]}]}}}"#,
        // a consumer named twice
        r#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1","consumers":["a","a"]}]}}}}"#,
        // a group named twice
        r#"{"key":"s","value":{"stream":{"meta":{"last_id":"5-0","groups":[{"name":"g","last_delivered_id":"1-1"},{"name":"g","last_delivered_id":"1-1"}]}}}}"#,
    ] {
        assert!(Record::decode(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn infinite_and_extreme_scores_round_trip() {
    let scores = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        -0.0,
        1e308,
        f64::MIN_POSITIVE,
        5e-324,
        9007199254740993.0,
    ];
    let r = Record {
        key: "z".into(),
        expiry: None,
        part: 0,
        more: false,
        field_expiry: Vec::new(),
        void: false,
        value: Value::Zset(
            scores
                .iter()
                .enumerate()
                .map(|(i, &s)| (Bytes(vec![i as u8]), Score(s)))
                .collect(),
        ),
    };
    let back = round_trip(&r);
    let Value::Zset(members) = back.value else {
        panic!()
    };
    for ((_, got), want) in members.iter().zip(scores) {
        assert_eq!(got.0.to_bits(), want.to_bits(), "{want}");
    }
}

#[test]
fn score_strings_from_redis_parse() {
    assert_eq!(parse_score(b"inf"), Some(f64::INFINITY));
    assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
    assert_eq!(parse_score(b"1.5"), Some(1.5));
    assert_eq!(parse_score(b"nan"), None);
    assert_eq!(format_score(f64::INFINITY), "+inf");
    assert_eq!(format_score(0.1), "0.1");
}

#[test]
fn rejects_unknown_fields_and_bad_values() {
    assert!(Record::decode(br#"{"key":"k","value":{"string":"v"},"extra":1}"#).is_err());
    assert!(Record::decode(br#"{"key":"k","value":{"float":"v"}}"#).is_err());
    assert!(Record::decode(br#"{"key":{"b64":"!!"},"value":{"string":"v"}}"#).is_err());
    assert!(Record::decode(br#"{"key":"k","value":{"zset":[["m","nan"]]}}"#).is_err());
    assert!(
        Record::decode(br#"{"key":"k","value":{"stream":{"entries":[]}}}"#).is_err(),
        "a stream's first record must carry meta"
    );
    assert!(
        Record::decode(br#"{"key":"k","expiry":{"at_ms":5,"ttl_ms":0},"value":{"string":""}}"#)
            .is_err()
    );
}

/// What a hollow decode must give for `record`: the same record with the
/// bytes of its string or the elements of its collections empty.
fn hollowed(record: &Record) -> Record {
    let empty = |_: &Bytes| Bytes::default();
    let mut out = record.clone();
    out.value = match &record.value {
        Value::String(s) => Value::String(empty(s)),
        Value::Hash(v) => Value::Hash(v.iter().map(|(f, x)| (empty(f), empty(x))).collect()),
        Value::List(v) => Value::List(v.iter().map(empty).collect()),
        Value::Set(v) => Value::Set(v.iter().map(empty).collect()),
        Value::Zset(v) => Value::Zset(v.iter().map(|(m, s)| (empty(m), *s)).collect()),
        Value::Stream(c) => {
            let mut c = c.clone();
            for e in &mut c.entries {
                e.fields = e.fields.iter().map(|(f, x)| (empty(f), empty(x))).collect();
            }
            Value::Stream(c)
        }
        other => other.clone(),
    };
    out
}

#[test]
fn hollow_decodes_refuse_what_whole_ones_refuse() {
    let bad: [&[u8]; 9] = [
        br#"{"key":"k","part":1,"void":true,"value":{"string":"x"}}"#,
        br#"{"key":"k","value":{"string":"v"},"extra":1}"#,
        br#"{"key":"k","value":{"float":"v"}}"#,
        br#"{"key":{"b64":"!!"},"value":{"string":"v"}}"#,
        br#"{"key":"k","value":{"zset":[["m","nan"]]}}"#,
        br#"{"key":"k","value":{"hash":[["f",{"b64":"!!"}]]}}"#,
        br#"{"key":"k","value":{"set":[{"b64":"QQ==","x":1}]}}"#,
        br#"{"key":"k","value":{"stream":{"entries":[]}}}"#,
        br#"{"key":"k","field_expiry":[{"field":"g","at_ms":5,"ttl_ms":5}],"value":{"hash":[["f","v"]]}}"#,
    ];
    for line in bad {
        let text = String::from_utf8_lossy(line);
        assert!(Record::decode(line).is_err(), "{text}");
        assert!(Record::decode_hollow(line).is_err(), "{text}");
    }
    // A refused hollow decode leaves the thread decoding whole records.
    let whole = Record::decode(br#"{"key":"k","value":{"set":["m"]}}"#).unwrap();
    assert_eq!(whole.value, Value::Set(vec![Bytes::from("m")]));
    let hollow = Record::decode_hollow(br#"{"key":"k","value":{"set":["m",{"b64":"AA=="}]}}"#);
    assert_eq!(hollow.unwrap().value, Value::Set(vec![Bytes::default(); 2]));
}

#[test]
fn stream_ids_order_and_advance() {
    let id = StreamId::parse("5-18446744073709551615").unwrap();
    assert_eq!(id.next(), Some(StreamId { ms: 6, seq: 0 }));
    assert_eq!(StreamId::parse("1-2").unwrap().to_string(), "1-2");
    assert!(StreamId::parse("1").is_none());
    assert!(StreamId::parse("a-1").is_none());
}

#[test]
fn printable_escapes_binary() {
    assert_eq!(printable(b"user:1"), "user:1");
    assert_eq!(printable(&[0xff, b'a', b'\n']), "\\xffa\\n");
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes),
        ".{0,20}".prop_map(|s: String| Bytes(s.into_bytes())),
    ]
}

fn score() -> impl Strategy<Value = Score> {
    prop_oneof![
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Score),
        Just(Score(f64::INFINITY)),
        Just(Score(f64::NEG_INFINITY)),
        (-1000i64..1000).prop_map(|i| Score(i as f64 / 7.0)),
    ]
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| StreamId { ms, seq })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        bytes().prop_map(Value::String),
        proptest::collection::vec((bytes(), bytes()), 0..6).prop_map(Value::Hash),
        proptest::collection::vec(bytes(), 0..6).prop_map(Value::List),
        proptest::collection::vec(bytes(), 0..6).prop_map(Value::Set),
        proptest::collection::vec((bytes(), score()), 0..6).prop_map(Value::Zset),
        (
            stream_id(),
            proptest::option::of(any::<u64>()),
            proptest::collection::btree_map(
                bytes(),
                (
                    stream_id(),
                    proptest::option::of(any::<u64>()),
                    proptest::collection::btree_set(bytes(), 0..3)
                ),
                0..3
            ),
            proptest::collection::btree_set(stream_id(), 0..4),
            (
                bytes(),
                proptest::collection::btree_map(
                    stream_id(),
                    (bytes(), any::<u64>(), 0i64..i64::MAX),
                    0..4
                )
            ),
        )
            .prop_map(|(last_id, entries_added, groups, ids, (group, pending))| {
                Value::Stream(StreamChunk {
                    meta: Some(StreamMeta {
                        last_id,
                        entries_added,
                        max_deleted_id: None,
                        groups: groups
                            .into_iter()
                            .map(|(name, (last_delivered_id, entries_read, consumers))| {
                                ConsumerGroup {
                                    name,
                                    last_delivered_id,
                                    entries_read,
                                    consumers: consumers.into_iter().collect(),
                                }
                            })
                            .collect(),
                    }),
                    entries: ids
                        .into_iter()
                        .map(|id| StreamEntry {
                            id,
                            fields: vec![(Bytes::from("f"), Bytes(vec![0xfe]))],
                        })
                        .collect(),
                    pending: if pending.is_empty() {
                        Vec::new()
                    } else {
                        vec![GroupPending {
                            group,
                            entries: pending
                                .into_iter()
                                .map(|(id, (consumer, delivery_count, delivered_at_ms))| {
                                    PendingEntry {
                                        id,
                                        consumer,
                                        delivery_count,
                                        delivered_at_ms,
                                    }
                                })
                                .collect(),
                        }]
                    },
                })
            }),
        (bytes(), any::<u16>()).prop_map(|(payload, rdb_version)| Value::Dump(DumpValue {
            type_name: "MBbloom--".into(),
            rdb_version,
            payload
        })),
    ]
}

proptest! {
    #[test]
    fn any_record_round_trips_exactly(
        key in bytes(),
        expiry in proptest::option::of((any::<i64>(), 1i64..i64::MAX)),
        part in 0u32..3,
        more in any::<bool>(),
        value in value(),
    ) {
        let record = Record {
            key,
            expiry: expiry.map(|(at_ms, ttl_ms)| Expiry { at_ms, ttl_ms }),
            part,
            more,
            field_expiry: Vec::new(),
            void: false,
            value,
        };
        let back = round_trip(&record);
        // Compare scores bit for bit: -0.0 == 0.0 would hide a lost sign.
        if let (Value::Zset(a), Value::Zset(b)) = (&record.value, &back.value) {
            for ((ma, sa), (mb, sb)) in a.iter().zip(b) {
                prop_assert_eq!(ma, mb);
                prop_assert_eq!(sa.0.to_bits(), sb.0.to_bits());
            }
        }
        prop_assert_eq!(back, record.clone());
        let mut line = Vec::new();
        record.encode_into(&mut line);
        line.pop();
        prop_assert_eq!(Record::decode_hollow(&line).unwrap(), hollowed(&record));
        prop_assert_eq!(Record::decode(&line).unwrap(), record);
    }

    #[test]
    fn scores_survive_the_redis_text_form(s in any::<f64>().prop_filter("not NaN", |f| !f.is_nan())) {
        let text = format_score(s);
        prop_assert_eq!(parse_score(text.as_bytes()).unwrap().to_bits(), s.to_bits());
    }
}

#[test]
fn a_line_that_does_not_parse_reads_the_same_as_parsed_from_bytes() {
    let lines: [&[u8]; 3] = [
        b"{\"key\":\"k\",\"value\":{\"string\":\"v\"",
        b"{\"key\":\"k\xff\",\"value\":{\"string\":\"v\"}}",
        b"{\"key\":\"k\",\"value\":{\"list\":[1]}}",
    ];
    for line in lines {
        let expected = serde_json::from_slice::<Record>(line)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(expected.is_err());
        assert_eq!(Record::decode(line).map(|_| ()), expected);
        assert_eq!(Record::decode_hollow(line).map(|_| ()), expected);
    }
    let good = br#"{"key":"k","value":{"list":["a","b"]}}"#;
    assert_eq!(
        Record::decode(good).unwrap(),
        serde_json::from_slice::<Record>(good).unwrap()
    );
}
