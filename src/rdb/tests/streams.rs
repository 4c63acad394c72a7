//! Streams: nodes, deleted entries, groups, consumers and pending entries,
//! whole and in parts (spooled).

use super::*;
use crate::rdb::listpack::build::{E, listpack};
use crate::rdb::types::*;
use crate::record::{ConsumerGroup, GroupPending, PendingEntry, StreamEntry, StreamId, StreamMeta};

pub(super) struct Ent<'a> {
    pub id: (u64, u64),
    pub fields: &'a [(&'a str, &'a str)],
    pub deleted: bool,
}

/// A stream node's listpack as t_stream.c writes it: the master entry
/// (fields of the first entry), then each entry relative to it.
pub(super) fn node(master: (u64, u64), entries: &[Ent]) -> Vec<u8> {
    let master_fields: Vec<&str> = entries[0].fields.iter().map(|(f, _)| *f).collect();
    let deleted = entries.iter().filter(|e| e.deleted).count() as i64;
    let mut lp = vec![
        E::I(entries.len() as i64 - deleted),
        E::I(deleted),
        E::I(master_fields.len() as i64),
    ];
    lp.extend(master_fields.iter().map(|f| E::S(f.as_bytes())));
    lp.push(E::I(0));
    for e in entries {
        let names: Vec<&str> = e.fields.iter().map(|(f, _)| *f).collect();
        let same = names == master_fields;
        let flags = i64::from(e.deleted) | if same { 2 } else { 0 };
        lp.extend([
            E::I(flags),
            E::I((e.id.0 - master.0) as i64),
            E::I((e.id.1 - master.1) as i64),
        ]);
        let n = e.fields.len() as i64;
        if same {
            lp.extend(e.fields.iter().map(|(_, v)| E::S(v.as_bytes())));
            lp.push(E::I(n + 3));
        } else {
            lp.push(E::I(n));
            for (f, v) in e.fields {
                lp.extend([E::S(f.as_bytes()), E::S(v.as_bytes())]);
            }
            lp.push(E::I(2 * n + 4));
        }
    }
    listpack(&lp)
}

pub(super) fn raw_id(ms: u64, seq: u64) -> Vec<u8> {
    let mut out = ms.to_be_bytes().to_vec();
    out.extend(seq.to_be_bytes());
    out
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

/// The test stream, in format `type_byte`: two nodes, a deleted entry,
/// two groups, consumers, pending entries (one of a deleted entry).
fn stream_file(type_byte: u8) -> Vec<u8> {
    let v2 = type_byte >= STREAM_LISTPACKS_2;
    let v3 = type_byte >= STREAM_LISTPACKS_3;
    let n1 = node(
        (100, 0),
        &[
            Ent {
                id: (100, 0),
                fields: &[("a", "1"), ("b", "2")],
                deleted: false,
            },
            Ent {
                id: (100, 1),
                fields: &[("a", "3"), ("b", "4")],
                deleted: true,
            },
            Ent {
                id: (101, 0),
                fields: &[("c", "5")],
                deleted: false,
            },
            Ent {
                id: (102, 7),
                fields: &[("a", "x"), ("b", "")],
                deleted: false,
            },
        ],
    );
    let n2 = node(
        (200, 5),
        &[Ent {
            id: (200, 5),
            fields: &[("big", "0123456789abcdef0123456789")],
            deleted: false,
        }],
    );
    let mut r = Rdb::new(12)
        .key(type_byte, "s")
        .len(2)
        .str(&raw_id(100, 0))
        .str(&n1)
        .str(&raw_id(200, 5))
        .str(&n2)
        .len(4) // entries
        .len(300) // last id 300-1 (XSETID)
        .len(1);
    if v2 {
        r = r.len(100).len(0).len(100).len(1).len(6); // first, max deleted, added
    }
    r = r.len(2).str(b"g1").len(102).len(7);
    if v2 {
        r = r.len(u64::MAX); // entries read unknown
    }
    // Global PEL: 100-0, 100-1 (deleted since), 200-5.
    r = r.len(3);
    for (ms, seq, t, count) in [(100, 0, 1000u64, 1), (100, 1, 2000, 2), (200, 5, 3000, 7)] {
        r = r.raw(&raw_id(ms, seq)).raw(&t.to_le_bytes()).len(count);
    }
    let times = |r: Rdb| if v3 { r.raw(&[9; 16]) } else { r.raw(&[9; 8]) };
    r = r.len(3).str(b"alice");
    r = times(r).len(2).raw(&raw_id(100, 0)).raw(&raw_id(200, 5));
    r = r.str(b"bob");
    r = times(r).len(1).raw(&raw_id(100, 1));
    r = r.str(b"idle");
    r = times(r).len(0);
    r = r.str(b"g2").len(0).len(0);
    if v2 {
        r = r.len(0);
    }
    r.len(0).len(0).key(STRING, "after").str(b"ok").finish()
}

fn expected(type_byte: u8) -> Value {
    let v2 = type_byte >= STREAM_LISTPACKS_2;
    let entry = |ms, seq, f: &[(&str, &str)]| StreamEntry {
        id: id(ms, seq),
        fields: f.iter().map(|(a, x)| (b(a), b(x))).collect(),
    };
    let pending = |ms, seq, c: &str, n, t| PendingEntry {
        id: id(ms, seq),
        consumer: b(c),
        delivery_count: n,
        delivered_at_ms: t,
    };
    Value::Stream(StreamChunk {
        meta: Some(StreamMeta {
            last_id: id(300, 1),
            entries_added: v2.then_some(6),
            max_deleted_id: v2.then_some(id(100, 1)),
            groups: vec![
                ConsumerGroup {
                    name: b("g1"),
                    last_delivered_id: id(102, 7),
                    entries_read: None,
                    consumers: items(&["alice", "bob", "idle"]),
                },
                ConsumerGroup {
                    name: b("g2"),
                    last_delivered_id: id(0, 0),
                    entries_read: v2.then_some(0),
                    consumers: vec![],
                },
            ],
        }),
        entries: vec![
            entry(100, 0, &[("a", "1"), ("b", "2")]),
            entry(101, 0, &[("c", "5")]),
            entry(102, 7, &[("a", "x"), ("b", "")]),
            entry(200, 5, &[("big", "0123456789abcdef0123456789")]),
        ],
        pending: vec![GroupPending {
            group: b("g1"),
            entries: vec![
                pending(100, 0, "alice", 1, 1000),
                pending(100, 1, "bob", 2, 2000),
                pending(200, 5, "alice", 7, 3000),
            ],
        }],
    })
}

#[test]
fn streams_of_every_version_whole_and_in_parts() {
    for t in [STREAM_LISTPACKS, STREAM_LISTPACKS_2, STREAM_LISTPACKS_3] {
        let file = stream_file(t);
        let recs = records(&file, 1 << 20);
        assert_eq!(recs.iter().filter(|r| r.key == b("s")).count(), 1);
        assert_eq!(whole(&recs, "s").0, expected(t), "type {t}");
        // 40 bytes a record: every entry and pending entry in a record of
        // its own, entries spooled to a file.
        let recs = records(&file, 40);
        assert!(
            recs.iter().filter(|r| r.key == b("s")).count() >= 7,
            "type {t}"
        );
        let first = stream_of(&recs[0].value);
        assert!(first.meta.is_some());
        assert_eq!(whole(&recs, "s").0, expected(t), "type {t} in parts");
        assert_eq!(whole(&recs, "after").0, Value::String(b("ok")));
    }
}

#[test]
fn corrupt_streams_are_refused() {
    let good = stream_file(STREAM_LISTPACKS_3);
    let find = |needle: &[u8]| {
        good.windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    // bob owns 100-1: make him own 100-2, which the group's list lacks.
    let at = find(b"bob") + 3 + 16 + 1;
    let mut bad = good.clone();
    bad[at + 15] = 2;
    let e = read_all(&bad, options(100)).unwrap_err();
    assert!(e.to_string().contains("does not hold for it"), "{e}");
    // bob owns nothing: 100-1 has no consumer.
    let mut bad = good[..at - 1].to_vec();
    bad.push(0);
    bad.extend_from_slice(&good[at + 16..]);
    let e = read_all(&bad, options(100)).unwrap_err();
    assert!(e.to_string().contains("has no consumer"), "{e}");
    // A node id of 15 bytes.
    let n = node(
        (1, 0),
        &[Ent {
            id: (1, 0),
            fields: &[("f", "v")],
            deleted: false,
        }],
    );
    let file = Rdb::new(12)
        .key(STREAM_LISTPACKS_3, "s")
        .len(1)
        .str(&[0; 15])
        .str(&n)
        .finish();
    let e = read_all(&file, options(100)).unwrap_err();
    assert!(e.to_string().contains("node id of 15 bytes"), "{e}");
    // Entries going backwards across nodes.
    let n2 = node(
        (0, 5),
        &[Ent {
            id: (0, 5),
            fields: &[("f", "v")],
            deleted: false,
        }],
    );
    let file = Rdb::new(12)
        .key(STREAM_LISTPACKS, "s")
        .len(2)
        .str(&raw_id(1, 0))
        .str(&n)
        .str(&raw_id(0, 5))
        .str(&n2)
        .finish();
    let e = read_all(&file, options(100)).unwrap_err();
    assert!(e.to_string().contains("is not after the one before"), "{e}");
    // A node whose entry count is more than it holds.
    let mut short = n.clone();
    short[6] = 2; // live count, a 7-bit integer
    let file = Rdb::new(12)
        .key(STREAM_LISTPACKS, "s")
        .len(1)
        .str(&raw_id(1, 0))
        .str(&short)
        .finish();
    let e = read_all(&file, options(100)).unwrap_err();
    assert!(e.to_string().contains("ends early"), "{e}");
}
