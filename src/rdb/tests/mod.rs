//! Unit tests of the reader on hand-built files: the builder below writes
//! what rdb.c writes, byte by byte; each encoding's own tests are in its
//! file.

mod payloads;
mod robust;
mod streams;
mod values;

use std::collections::BTreeMap;

use super::*;
use crate::record::StreamChunk;

pub(super) const NOW: i64 = 1_700_000_000_000;

/// An RDB file being built.
#[derive(Debug, Clone)]
pub(super) struct Rdb(pub Vec<u8>);

impl Rdb {
    pub fn new(version: u32) -> Rdb {
        Rdb(format!("REDIS{version:04}").into_bytes())
    }

    pub fn u8(mut self, b: u8) -> Rdb {
        self.0.push(b);
        self
    }

    pub fn raw(mut self, b: &[u8]) -> Rdb {
        self.0.extend_from_slice(b);
        self
    }

    /// A length as rdbSaveLen writes it.
    pub fn len(mut self, n: u64) -> Rdb {
        if n < 1 << 6 {
            self.0.push(n as u8);
        } else if n < 1 << 14 {
            self.0.push(0x40 | (n >> 8) as u8);
            self.0.push(n as u8);
        } else if n <= u64::from(u32::MAX) {
            self.0.push(0x80);
            self.0.extend((n as u32).to_be_bytes());
        } else {
            self.0.push(0x81);
            self.0.extend(n.to_be_bytes());
        }
        self
    }

    /// A raw string.
    pub fn str(self, s: &[u8]) -> Rdb {
        self.len(s.len() as u64).raw(s)
    }

    pub fn aux(self, k: &str, v: &str) -> Rdb {
        self.u8(types::OP_AUX).str(k.as_bytes()).str(v.as_bytes())
    }

    pub fn select(self, db: u64) -> Rdb {
        self.u8(types::OP_SELECTDB).len(db)
    }

    pub fn expire_ms(self, at: i64) -> Rdb {
        self.u8(types::OP_EXPIRETIME_MS).raw(&at.to_le_bytes())
    }

    /// A key's type byte and name; its value follows.
    pub fn key(self, type_byte: u8, name: &str) -> Rdb {
        self.u8(type_byte).str(name.as_bytes())
    }

    /// The end byte and the checksum.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.u8(types::OP_EOF).0;
        let crc = crc64(&out);
        out.extend(crc.to_le_bytes());
        out
    }
}

pub(super) fn options(chunk_bytes: usize) -> RdbOptions {
    RdbOptions::new(NOW, chunk_bytes)
}

/// Every item of a file, every key selected.
pub(super) fn read_all(
    bytes: &[u8],
    options: RdbOptions,
) -> Result<(Vec<RdbItem>, RdbStats, bool), RdbError> {
    let mut reader = RdbReader::new(bytes, options)?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item(&mut |_| true)? {
        items.push(item);
    }
    Ok((items, reader.stats().clone(), reader.checksum_verified()))
}

/// The records of a file, each checked as the archive reader checks it
/// (through its JSON line).
pub(super) fn records(bytes: &[u8], chunk_bytes: usize) -> Vec<Record> {
    let (items, _, verified) = read_all(bytes, options(chunk_bytes)).unwrap();
    assert!(verified, "the checksum was verified");
    items
        .into_iter()
        .filter_map(|item| match item {
            RdbItem::Record { record, .. } => {
                let mut line = Vec::new();
                record.encode_into(&mut line);
                line.pop();
                let back = Record::decode(&line).unwrap_or_else(|e| panic!("{e}: {record:?}"));
                assert_eq!(back, record);
                Some(record)
            }
            _ => None,
        })
        .collect()
}

/// The records of one key put back together, checking their parts: the
/// value, and the field expiries of all parts.
pub(super) fn whole(
    records: &[Record],
    key: &str,
) -> (Value, Vec<crate::record::FieldExpiry>, Option<Expiry>) {
    let parts: Vec<&Record> = records
        .iter()
        .filter(|r| r.key.0 == key.as_bytes())
        .collect();
    assert!(!parts.is_empty(), "no records of {key}");
    for (i, r) in parts.iter().enumerate() {
        assert_eq!(r.part as usize, i, "{key}: parts in order");
        assert_eq!(
            r.more,
            i + 1 < parts.len(),
            "{key}: more on all but the last"
        );
        assert!(
            i == 0 || r.expiry.is_none(),
            "{key}: expiry on the first part only"
        );
    }
    let mut value = parts[0].value.clone();
    let mut fe = parts[0].field_expiry.clone();
    for r in &parts[1..] {
        fe.extend(r.field_expiry.iter().cloned());
        match (&mut value, r.value.clone()) {
            (Value::String(a), Value::String(b)) => a.0.extend(b.0),
            (Value::List(a), Value::List(b)) | (Value::Set(a), Value::Set(b)) => a.extend(b),
            (Value::Hash(a), Value::Hash(b)) => a.extend(b),
            (Value::Zset(a), Value::Zset(b)) => a.extend(b),
            (Value::Stream(a), Value::Stream(b)) => {
                assert!(b.meta.is_none(), "{key}: meta in the first part only");
                assert!(
                    b.entries.is_empty() || a.pending.is_empty(),
                    "{key}: no entries after pending entries"
                );
                a.entries.extend(b.entries);
                for run in b.pending {
                    match a.pending.last_mut() {
                        Some(last) if last.group == run.group => last.entries.extend(run.entries),
                        _ => a.pending.push(run),
                    }
                }
            }
            (a, b) => panic!("{key}: parts of different types {a:?} {b:?}"),
        }
    }
    (value, fe, parts[0].expiry)
}

pub(super) fn b(s: &str) -> Bytes {
    Bytes(s.as_bytes().to_vec())
}

pub(super) fn items(v: &[&str]) -> Vec<Bytes> {
    v.iter().map(|s| b(s)).collect()
}

pub(super) fn stream_of(v: &Value) -> &StreamChunk {
    match v {
        Value::Stream(s) => s,
        other => panic!("not a stream: {other:?}"),
    }
}

#[test]
fn header_versions() {
    for v in 9..=12 {
        let file = Rdb::new(v).finish();
        let reader = RdbReader::new(&file[..], options(100)).unwrap();
        assert_eq!(reader.version(), v);
    }
    for v in [1, 8, 13, 80] {
        let file = Rdb::new(v).finish();
        let e = RdbReader::new(&file[..], options(100)).unwrap_err();
        assert!(matches!(e, RdbError::Version(n) if n == v), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("version {v} is not supported")),
            "{e}"
        );
    }
    let e = RdbReader::new(&b"VALKEY080\xff"[..], options(100)).unwrap_err();
    assert!(matches!(e, RdbError::Version(80)), "{e}");
    for bad in [&b"REDIX0011"[..], b"REDIS00a1", b"hello world"] {
        let e = RdbReader::new(bad, options(100)).unwrap_err();
        assert!(matches!(e, RdbError::NotRdb), "{e}");
    }
    let e = RdbReader::new(&b"REDIS"[..], options(100)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the RDB file ends early at byte 5 (truncated?)"
    );
}

#[test]
fn aux_fields_functions_and_opcodes() {
    let file = Rdb::new(11)
        .aux("redis-ver", "7.2.4")
        // An integer aux value, as rdbSaveAuxFieldStrInt writes "64".
        .u8(types::OP_AUX)
        .str(b"redis-bits")
        .raw(&[0xc0, 64])
        .u8(types::OP_FUNCTION2)
        .str(b"#!lua name=lib\nredis.register_function('f', function() return 1 end)")
        .u8(types::OP_MODULE_AUX)
        .len(0x1234_5678_9abc)
        .len(2)
        .len(1)
        .raw(&[0x02, 0x07, 0x05, 0x01, b'x', 0x00])
        .select(3)
        .u8(types::OP_RESIZEDB)
        .len(1)
        .len(0)
        .u8(types::OP_SLOT_INFO)
        .len(866)
        .len(1)
        .len(0)
        .u8(types::OP_IDLE)
        .len(12345)
        .u8(types::OP_FREQ)
        .u8(5)
        .key(types::STRING, "k")
        .str(b"v")
        .finish();
    let (items, stats, verified) = read_all(&file, options(100)).unwrap();
    assert!(verified);
    assert_eq!(
        items[..3],
        [
            RdbItem::Aux {
                key: b"redis-ver".to_vec(),
                value: b"7.2.4".to_vec()
            },
            RdbItem::Aux {
                key: b"redis-bits".to_vec(),
                value: b"64".to_vec()
            },
            RdbItem::Function {
                code: b"#!lua name=lib\nredis.register_function('f', function() return 1 end)"
                    .to_vec()
            },
        ]
    );
    let RdbItem::Record { db, record } = &items[3] else {
        panic!("{:?}", items[3]);
    };
    assert_eq!(*db, 3);
    assert_eq!(*record, Record::new(b("k"), Value::String(b("v"))));
    assert_eq!(items.len(), 4);
    assert_eq!(stats.module_aux, 1);
    assert_eq!(stats.functions, 1);
    assert_eq!(stats.aux_fields, 2);
    assert_eq!(stats.announced_keys, BTreeMap::from([(3, 1)]));
    assert_eq!(stats.keys_per_db, BTreeMap::from([(3, 1)]));
    assert_eq!(stats.bytes_read, file.len() as u64);
}

#[test]
fn refused_opcodes_and_types() {
    let file = Rdb::new(10).u8(types::OP_FUNCTION_PRE_GA).finish();
    let e = read_all(&file, options(100)).unwrap_err();
    assert!(matches!(e, RdbError::Unsupported { offset: 9, .. }), "{e}");
    assert!(e.to_string().contains("release candidates"), "{e}");
    let file = Rdb::new(10).key(types::MODULE_PRE_GA, "m").len(1).finish();
    let e = read_all(&file, options(100)).unwrap_err();
    assert!(matches!(e, RdbError::Unsupported { offset: 9, .. }), "{e}");
    for t in [8u8, 26, 100, 243] {
        let file = Rdb::new(12).aux("a", "b").key(t, "k").str(b"v").finish();
        let mut reader = RdbReader::new(&file[..], options(100)).unwrap();
        assert!(matches!(
            reader.next_item(&mut |_| true),
            Ok(Some(RdbItem::Aux { .. }))
        ));
        let e = reader.next_item(&mut |_| true).unwrap_err();
        assert!(
            matches!(e, RdbError::UnknownType { type_byte, offset: 14 } if type_byte == t),
            "{e}"
        );
        assert!(e.to_string().contains("cannot be skipped"), "{e}");
        assert!(matches!(
            reader.next_item(&mut |_| true),
            Err(RdbError::Stopped)
        ));
    }
}

#[test]
fn checksums() {
    let file = Rdb::new(11).key(types::STRING, "k").str(b"v").finish();
    assert!(read_all(&file, options(100)).unwrap().2);
    // rdbchecksum no: the stored checksum is 0.
    let mut unchecked = file.clone();
    let n = unchecked.len();
    unchecked[n - 8..].fill(0);
    let (items, _, verified) = read_all(&unchecked, options(100)).unwrap();
    assert!(!verified);
    assert_eq!(items.len(), 1);
    let mut wrong = file.clone();
    wrong[n - 1] ^= 0x40;
    let e = read_all(&wrong, options(100)).unwrap_err();
    assert!(matches!(e, RdbError::Checksum { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("RDB checksum mismatch: stored 0x"),
        "{e}"
    );
    assert!(e.to_string().ends_with(": the file is corrupt"), "{e}");
}

#[test]
fn stops_at_the_checksum_of_a_replication_stream() {
    let mut stream = Rdb::new(12).key(types::STRING, "k").str(b"v").finish();
    stream.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let mut reader = RdbReader::new(
        std::io::BufReader::with_capacity(4, &stream[..]),
        options(100),
    )
    .unwrap();
    while reader.next_item(&mut |_| true).unwrap().is_some() {}
    assert!(reader.checksum_verified());
    assert!(
        reader.next_item(&mut |_| true).unwrap().is_none(),
        "stays done"
    );
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader.into_inner(), &mut rest).unwrap();
    assert_eq!(rest, b"*1\r\n$4\r\nPING\r\n");
}

#[test]
fn key_expiry_and_selection() {
    let file = Rdb::new(9)
        .expire_ms(NOW + 5000)
        .key(types::STRING, "later")
        .str(b"1")
        .expire_ms(NOW)
        .key(types::LIST, "now")
        .len(1)
        .str(b"x")
        .u8(types::OP_EXPIRETIME)
        .raw(&((NOW / 1000 + 10) as i32).to_le_bytes())
        .key(types::STRING, "seconds")
        .str(b"2")
        .key(types::STRING, "unwanted")
        .str(b"3")
        .key(types::STRING, "plain")
        .str(b"4")
        .finish();
    let mut reader = RdbReader::new(&file[..], options(100)).unwrap();
    let mut asked = Vec::new();
    let mut select = |info: &KeyInfo| {
        asked.push((info.key.clone(), info.key_type, info.expire_at_ms));
        info.key.0 != b"unwanted"
    };
    let mut got = Vec::new();
    while let Some(item) = reader.next_item(&mut select).unwrap() {
        got.push(item);
    }
    assert_eq!(
        asked,
        [
            (b("later"), KeyType::String, Some(NOW + 5000)),
            (b("now"), KeyType::List, Some(NOW)),
            (
                b("seconds"),
                KeyType::String,
                Some((NOW / 1000 + 10) * 1000)
            ),
            (b("unwanted"), KeyType::String, None),
            (b("plain"), KeyType::String, None),
        ]
    );
    let RdbItem::Record { record, .. } = &got[0] else {
        panic!()
    };
    assert_eq!(
        record.expiry,
        Some(Expiry {
            at_ms: NOW + 5000,
            ttl_ms: 5000
        })
    );
    assert!(
        matches!(&got[1], RdbItem::Skipped { why: SkipReason::Expired, info } if info.key == b("now"))
    );
    assert!(matches!(
        &got[3],
        RdbItem::Skipped {
            why: SkipReason::NotSelected,
            ..
        }
    ));
    let RdbItem::Record { record, .. } = &got[4] else {
        panic!()
    };
    assert_eq!(record.expiry, None);
    assert_eq!(record.value, Value::String(b("4")));
    let stats = reader.stats();
    assert_eq!(
        (stats.keys, stats.expired_keys, stats.not_selected),
        (3, 1, 1)
    );
}
