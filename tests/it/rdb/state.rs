//! A key's records put back together into the state support's
//! `key_state` reads from a server, so the two compare exactly.

use std::collections::BTreeSet;

use redis_archive::record::{Record, StreamChunk, Value};

use crate::support::KeyState;

fn text(id: redis_archive::record::StreamId) -> String {
    id.to_string()
}

/// A key's records put back together into the state the server reports.
pub fn state_of(records: &[Record]) -> (KeyState, Option<i64>) {
    let mut value = records[0].value.clone();
    let mut field_expiry = records[0].field_expiry.clone();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.part as usize, i);
        assert_eq!(r.more, i + 1 < records.len());
        assert!(i == 0 || r.expiry.is_none());
        let mut line = Vec::new();
        r.encode_into(&mut line);
        line.pop();
        assert_eq!(
            Record::decode(&line).unwrap(),
            *r,
            "the record checks and round-trips"
        );
        if i == 0 {
            continue;
        }
        field_expiry.extend(r.field_expiry.iter().cloned());
        match (&mut value, r.value.clone()) {
            (Value::String(a), Value::String(b)) => a.0.extend(b.0),
            (Value::List(a), Value::List(b)) | (Value::Set(a), Value::Set(b)) => a.extend(b),
            (Value::Hash(a), Value::Hash(b)) => a.extend(b),
            (Value::Zset(a), Value::Zset(b)) => a.extend(b),
            (Value::Stream(a), Value::Stream(b)) => {
                assert!(b.meta.is_none());
                assert!(
                    b.entries.is_empty() || a.pending.is_empty(),
                    "entries after pending"
                );
                a.entries.extend(b.entries);
                a.pending.extend(b.pending);
            }
            (a, b) => panic!("parts of different types: {a:?} / {b:?}"),
        }
    }
    let expiry = records[0].expiry.map(|e| e.at_ms);
    let bytes =
        |v: Vec<redis_archive::record::Bytes>| v.into_iter().map(|b| b.0).collect::<Vec<_>>();
    let state = match value {
        Value::String(s) => KeyState::String(s.0),
        Value::List(v) => KeyState::List(bytes(v)),
        Value::Set(v) => {
            let mut v = bytes(v);
            v.sort();
            KeyState::Set(v)
        }
        Value::Zset(v) => {
            let mut v: Vec<(Vec<u8>, u64)> =
                v.into_iter().map(|(m, s)| (m.0, s.0.to_bits())).collect();
            v.sort();
            KeyState::Zset(v)
        }
        Value::Hash(v) => {
            let mut v: Vec<(Vec<u8>, Vec<u8>)> = v.into_iter().map(|(f, x)| (f.0, x.0)).collect();
            v.sort();
            if field_expiry.is_empty() {
                KeyState::Hash(v)
            } else {
                let mut e: Vec<(Vec<u8>, i64)> = field_expiry
                    .into_iter()
                    .map(|f| (f.field.0, f.at_ms))
                    .collect();
                e.sort();
                KeyState::ExpiringHash(v, e)
            }
        }
        Value::Stream(s) => stream_state(s),
        other => panic!("unexpected value {other:?}"),
    };
    (state, expiry)
}

fn stream_state(s: StreamChunk) -> KeyState {
    let meta = s.meta.expect("meta in the first record");
    let entries: Vec<(String, Vec<Vec<u8>>)> = s
        .entries
        .iter()
        .map(|e| {
            (
                text(e.id),
                e.fields
                    .iter()
                    .flat_map(|(f, v)| [f.0.clone(), v.0.clone()])
                    .collect(),
            )
        })
        .collect();
    let ids: BTreeSet<_> = s.entries.iter().map(|e| e.id).collect();
    let mut groups: Vec<_> = meta
        .groups
        .iter()
        .map(|g| {
            (
                g.name.0.clone(),
                text(g.last_delivered_id),
                g.entries_read.map(|n| n as i64),
            )
        })
        .collect();
    groups.sort();
    let mut consumers: Vec<_> = meta
        .groups
        .iter()
        .map(|g| {
            let mut names: Vec<Vec<u8>> = g.consumers.iter().map(|c| c.0.clone()).collect();
            names.sort();
            (g.name.0.clone(), names)
        })
        .collect();
    consumers.sort();
    let mut pending: Vec<_> = s
        .pending
        .iter()
        .flat_map(|run| {
            run.entries.iter().map(|e| {
                (
                    run.group.0.clone(),
                    text(e.id),
                    e.consumer.0.clone(),
                    e.delivery_count as i64,
                    e.delivered_at_ms,
                )
            })
        })
        .filter(|p| ids.iter().any(|id| text(*id) == p.1))
        .collect();
    pending.sort();
    KeyState::Stream {
        entries,
        last_id: text(meta.last_id),
        entries_added: meta.entries_added.expect("entries added (RDB 10+)") as i64,
        max_deleted_id: text(meta.max_deleted_id.expect("max deleted id (RDB 10+)")),
        groups,
        consumers,
        pending,
    }
}
