//! Every value type in every encoding, small and in parts.

use super::*;
use crate::rdb::listpack::build::{E, listpack};
use crate::rdb::types::*;
use crate::rdb::ziplist::build::ziplist;
use crate::record::{FieldExpiry, Score};

/// `data` as an LZF string made of literal runs only (valid LZF, which
/// compresses nothing), with its RDB string header.
fn lzf_string(data: &[u8]) -> Vec<u8> {
    let mut compressed = Vec::new();
    for run in data.chunks(32) {
        compressed.push(run.len() as u8 - 1);
        compressed.extend_from_slice(run);
    }
    let mut out = vec![0xc3];
    out.extend(
        Rdb(Vec::new())
            .len(compressed.len() as u64)
            .len(data.len() as u64)
            .0,
    );
    out.extend(compressed);
    out
}

fn zset(v: &[(&str, f64)]) -> Value {
    Value::Zset(v.iter().map(|(m, s)| (b(m), Score(*s))).collect())
}

fn hash(v: &[(&str, &str)]) -> Value {
    Value::Hash(v.iter().map(|(f, x)| (b(f), b(x))).collect())
}

fn fe(field: &str, at_ms: i64) -> FieldExpiry {
    FieldExpiry {
        field: b(field),
        at_ms,
        ttl_ms: at_ms - NOW,
    }
}

#[test]
fn strings_raw_integer_lzf_and_in_parts() {
    let big: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let fifty_a = [
        0xc3, 0x09, 0x32, 0x01, b'a', b'a', 0xe0, 0x25, 0x00, 0x01, b'a', b'a',
    ];
    let file = Rdb::new(12)
        .key(STRING, "raw")
        .str(b"hello")
        .key(STRING, "int")
        .raw(&[0xc1, 0x39, 0x30])
        .key(STRING, "neg")
        .raw(&[0xc2, 0x00, 0x00, 0x00, 0x80])
        .key(STRING, "lzf")
        .raw(&fifty_a)
        .key(STRING, "empty")
        .str(b"")
        .key(STRING, "big")
        .str(&big)
        .key(STRING, "biglzf")
        .raw(&lzf_string(&big))
        .finish();
    for chunk in [64, 1 << 20] {
        let recs = records(&file, chunk);
        let get = |k| whole(&recs, k).0;
        assert_eq!(get("raw"), Value::String(b("hello")));
        assert_eq!(get("int"), Value::String(b("12345")));
        assert_eq!(get("neg"), Value::String(b("-2147483648")));
        assert_eq!(get("lzf"), Value::String(Bytes(vec![b'a'; 50])));
        assert_eq!(get("empty"), Value::String(b("")));
        assert_eq!(get("big"), Value::String(Bytes(big.clone())));
        assert_eq!(get("biglzf"), Value::String(Bytes(big.clone())));
        let parts = recs.iter().filter(|r| r.key == b("big")).count();
        assert_eq!(parts, if chunk == 64 { 16 } else { 1 });
        assert!(recs.iter().all(|r| r.value.len() <= chunk));
    }
}

#[test]
fn lists_in_every_encoding() {
    let plain_node = vec![b'p'; 100];
    let file = Rdb::new(12)
        .key(LIST, "plain")
        .len(3)
        .str(b"a")
        .raw(&[0xc0, 0xfe])
        .str(b"c")
        .key(LIST_ZIPLIST, "ziplist")
        .str(&ziplist(&[
            E::S(b"a"),
            E::I(1),
            E::I(-70000),
            E::S(&[0xff, 0]),
        ]))
        .key(LIST_QUICKLIST, "quicklist")
        .len(2)
        .str(&ziplist(&[E::S(b"x"), E::S(b"y")]))
        .raw(&lzf_string(&ziplist(&[E::I(7), E::S(b"z")])))
        .key(LIST_QUICKLIST_2, "quicklist2")
        .len(3)
        .len(2)
        .str(&listpack(&[E::S(b"a"), E::I(4095)]))
        .len(1)
        .str(&plain_node)
        .len(2)
        .raw(&lzf_string(&listpack(&[E::I(-1)])))
        .finish();
    let recs = records(&file, 1 << 20);
    let list = |v: &[&str]| Value::List(items(v));
    assert_eq!(whole(&recs, "plain").0, list(&["a", "-2", "c"]));
    assert_eq!(
        whole(&recs, "ziplist").0,
        Value::List(vec![b("a"), b("1"), b("-70000"), Bytes(vec![0xff, 0])])
    );
    assert_eq!(whole(&recs, "quicklist").0, list(&["x", "y", "7", "z"]));
    assert_eq!(
        whole(&recs, "quicklist2").0,
        Value::List(vec![b("a"), b("4095"), Bytes(plain_node), b("-1")])
    );
    let bad = Rdb::new(12)
        .key(LIST_QUICKLIST_2, "q")
        .len(1)
        .len(3)
        .str(b"xx")
        .finish();
    let e = read_all(&bad, options(100)).unwrap_err();
    assert!(
        e.to_string().contains("unknown quicklist node container 3"),
        "{e}"
    );
}

#[test]
fn sets_in_every_encoding() {
    let mut intset = 4u32.to_le_bytes().to_vec();
    intset.extend(3u32.to_le_bytes());
    for v in [-2i32, 1, 70000] {
        intset.extend(v.to_le_bytes());
    }
    let file = Rdb::new(11)
        .key(SET, "plain")
        .len(2)
        .str(b"a")
        .str(b"b")
        .key(SET_INTSET, "intset")
        .str(&intset)
        .key(SET_LISTPACK, "listpack")
        .str(&listpack(&[E::S(b"x"), E::I(5)]))
        .finish();
    let recs = records(&file, 1 << 20);
    assert_eq!(whole(&recs, "plain").0, Value::Set(items(&["a", "b"])));
    assert_eq!(
        whole(&recs, "intset").0,
        Value::Set(items(&["-2", "1", "70000"]))
    );
    assert_eq!(whole(&recs, "listpack").0, Value::Set(items(&["x", "5"])));
}

#[test]
fn sorted_sets_in_every_encoding() {
    let file = Rdb::new(12)
        .key(ZSET, "text")
        .len(3)
        .str(b"a")
        .raw(&[3, b'1', b'.', b'5'])
        .str(b"b")
        .u8(254)
        .str(b"c")
        .u8(255)
        .key(ZSET_2, "binary")
        .len(2)
        .str(b"x")
        .raw(&0.1f64.to_le_bytes())
        .str(b"y")
        .raw(&(-1e300f64).to_le_bytes())
        .key(ZSET_ZIPLIST, "ziplist")
        .str(&ziplist(&[E::S(b"m"), E::S(b"2.5"), E::S(b"n"), E::I(3)]))
        .key(ZSET_LISTPACK, "listpack")
        .str(&listpack(&[E::S(b"m"), E::I(-7), E::S(b"n"), E::S(b"inf")]))
        .finish();
    let recs = records(&file, 1 << 20);
    assert_eq!(
        whole(&recs, "text").0,
        zset(&[("a", 1.5), ("b", f64::INFINITY), ("c", f64::NEG_INFINITY)])
    );
    assert_eq!(whole(&recs, "binary").0, zset(&[("x", 0.1), ("y", -1e300)]));
    assert_eq!(whole(&recs, "ziplist").0, zset(&[("m", 2.5), ("n", 3.0)]));
    assert_eq!(
        whole(&recs, "listpack").0,
        zset(&[("m", -7.0), ("n", f64::INFINITY)])
    );
    for nan in [
        Rdb::new(12).key(ZSET, "z").len(1).str(b"a").u8(253),
        Rdb::new(12)
            .key(ZSET_2, "z")
            .len(1)
            .str(b"a")
            .raw(&f64::NAN.to_le_bytes()),
        Rdb::new(12)
            .key(ZSET_LISTPACK, "z")
            .str(&listpack(&[E::S(b"a"), E::S(b"nan")])),
    ] {
        let e = read_all(&nan.finish(), options(100)).unwrap_err();
        assert!(e.to_string().contains("score that is not a number"), "{e}");
    }
    let bad = Rdb::new(12)
        .key(ZSET_LISTPACK, "z")
        .str(&listpack(&[E::S(b"a"), E::S(b"x")]));
    let e = read_all(&bad.finish(), options(100)).unwrap_err();
    assert!(e.to_string().contains("score \"x\" is not a number"), "{e}");
}

#[test]
fn hashes_in_every_encoding() {
    let file = Rdb::new(12)
        .key(HASH, "plain")
        .len(2)
        .str(b"f")
        .str(b"v")
        .str(b"n")
        .raw(&[0xc0, 1])
        .key(HASH_ZIPMAP, "zipmap")
        .str(b"\x02\x03foo\x03\x00bar\x05hello\x05\x02world!!\xff")
        .key(HASH_ZIPLIST, "ziplist")
        .str(&ziplist(&[E::S(b"a"), E::I(1), E::S(b"b"), E::S(b"")]))
        .key(HASH_LISTPACK, "listpack")
        .str(&listpack(&[E::S(b"a"), E::I(1)]))
        .finish();
    let recs = records(&file, 1 << 20);
    assert_eq!(whole(&recs, "plain").0, hash(&[("f", "v"), ("n", "1")]));
    assert_eq!(
        whole(&recs, "zipmap").0,
        hash(&[("foo", "bar"), ("hello", "world")])
    );
    assert_eq!(whole(&recs, "ziplist").0, hash(&[("a", "1"), ("b", "")]));
    assert_eq!(whole(&recs, "listpack").0, hash(&[("a", "1")]));
    let odd = Rdb::new(12)
        .key(HASH_LISTPACK, "h")
        .str(&listpack(&[E::S(b"a")]));
    let e = read_all(&odd.finish(), options(100)).unwrap_err();
    assert!(e.to_string().contains("ends inside an element"), "{e}");
}

#[test]
fn hash_field_expiry_in_every_format() {
    let base = NOW - 1000;
    let lp_ex = listpack(&[
        E::S(b"old"),
        E::S(b"x"),
        E::I(NOW - 5),
        E::S(b"soon"),
        E::S(b"y"),
        E::I(NOW + 100),
        E::S(b"keep"),
        E::S(b"z"),
        E::I(0),
    ]);
    let file = Rdb::new(12)
        // Redis 7.4+: times relative to the earliest, plus one; 0 = none.
        .key(HASH_METADATA, "meta")
        .raw(&(base as u64).to_le_bytes())
        .len(3)
        .len(1)
        .str(b"gone")
        .str(b"1")
        .len(3001)
        .str(b"live")
        .str(b"2")
        .len(0)
        .str(b"plain")
        .str(b"3")
        // 7.4 release candidates: absolute times.
        .key(HASH_METADATA_PRE_GA, "meta-rc")
        .len(2)
        .len((NOW + 7) as u64)
        .str(b"a")
        .str(b"1")
        .len(0)
        .str(b"b")
        .str(b"2")
        .key(HASH_LISTPACK_EX, "lpex")
        .raw(&((NOW - 5) as u64).to_le_bytes())
        .str(&lp_ex)
        .key(HASH_LISTPACK_EX_PRE_GA, "lpex-rc")
        .str(&lp_ex)
        .key(HASH_LISTPACK_EX, "all-gone")
        .raw(&0u64.to_le_bytes())
        .str(&listpack(&[E::S(b"f"), E::S(b"v"), E::I(NOW)]))
        .finish();
    let (items, stats, _) = read_all(&file, options(1 << 20)).unwrap();
    assert!(matches!(
        items.last(),
        Some(RdbItem::Skipped { why: SkipReason::Expired, info }) if info.key == b("all-gone")
    ));
    assert_eq!(stats.expired_fields, 1 + 1 + 1 + 1);
    assert_eq!(stats.expired_keys, 1);
    let recs = records(&file, 1 << 20);
    let (v, f, _) = whole(&recs, "meta");
    assert_eq!(v, hash(&[("live", "2"), ("plain", "3")]));
    assert_eq!(f, [fe("live", NOW + 2000)]);
    let (v, f, _) = whole(&recs, "meta-rc");
    assert_eq!(v, hash(&[("a", "1"), ("b", "2")]));
    assert_eq!(f, [fe("a", NOW + 7)]);
    for key in ["lpex", "lpex-rc"] {
        let (v, f, _) = whole(&recs, key);
        assert_eq!(v, hash(&[("soon", "y"), ("keep", "z")]));
        assert_eq!(f, [fe("soon", NOW + 100)]);
    }
    // In parts, each record names the expiry of its own fields (checked by
    // Record::decode in records()).
    let many: Vec<(String, String)> = (0..40)
        .map(|i| (format!("field{i}"), format!("value{i}")))
        .collect();
    let mut rdb = Rdb::new(12)
        .key(HASH_METADATA, "many")
        .raw(&(NOW as u64 + 1).to_le_bytes())
        .len(40);
    for (i, (f, v)) in many.iter().enumerate() {
        rdb = rdb
            .len(if i % 2 == 0 { i as u64 + 1 } else { 0 })
            .str(f.as_bytes())
            .str(v.as_bytes());
    }
    let recs = records(&rdb.finish(), 100);
    assert!(recs.len() > 5);
    let (v, f, _) = whole(&recs, "many");
    let want: Vec<(&str, &str)> = many.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
    assert_eq!(v, hash(&want));
    assert_eq!(f.len(), 20);
    assert_eq!(f[1], fe("field2", NOW + 3));
}

#[test]
fn empty_collections_are_skipped() {
    let file = Rdb::new(12)
        .key(LIST, "l")
        .len(0)
        .key(SET_LISTPACK, "s")
        .str(&listpack(&[]))
        .key(LIST_QUICKLIST_2, "q")
        .len(0)
        .key(STRING, "k")
        .str(b"v")
        .finish();
    let (items, stats, _) = read_all(&file, options(100)).unwrap();
    let skipped: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            RdbItem::Skipped {
                info,
                why: SkipReason::Empty,
            } => Some(info.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, items_of(&["l", "s", "q"]));
    assert_eq!((stats.empty_keys, stats.keys), (3, 1));
}

fn items_of(v: &[&str]) -> Vec<Bytes> {
    items(v)
}

#[test]
fn big_collections_come_in_bounded_parts() {
    let n = 2000;
    let mut rdb = Rdb::new(12).key(LIST, "list").len(n);
    for i in 0..n {
        rdb = rdb.str(format!("item-{i}").as_bytes());
    }
    let mut zl = Rdb::new(9).key(ZSET_2, "zset").len(n);
    for i in 0..n {
        zl = zl
            .str(format!("m{i}").as_bytes())
            .raw(&(i as f64).to_le_bytes());
    }
    for (file, key) in [(rdb.finish(), "list"), (zl.finish(), "zset")] {
        let recs = records(&file, 256);
        assert!(recs.len() > 40, "{key} in many parts");
        for r in &recs {
            // Value::split's measure: no record holds more than chunk_bytes.
            assert!(
                r.value.clone().split(256).len() == 1,
                "{key} part {} too big",
                r.part
            );
        }
        let (v, _, _) = whole(&recs, key);
        assert_eq!(v.len(), n as usize);
    }
}

#[test]
fn module_values_and_dump_payloads() {
    // A module value: id, then opcodes: uint 5, string "abc", double, end.
    let id: u64 = 0x0123_4567_89ab_c000 | 3;
    let mut value = Rdb(Vec::new()).len(id).0;
    value.extend([0x02, 0x05, 0x05, 0x03, b'a', b'b', b'c', 0x04]);
    value.extend(2.5f64.to_le_bytes());
    value.push(0x00);
    let file = Rdb::new(11)
        .key(MODULE_2, "mod")
        .raw(&value)
        .key(STRING, "after")
        .str(b"ok")
        .finish();
    let recs = records(&file, 100);
    let Value::Dump(dump) = &recs[0].value else {
        panic!("{:?}", recs[0])
    };
    assert_eq!(dump.type_name, module::type_name(id));
    assert_eq!(dump.rdb_version, 11);
    let mut expected = vec![MODULE_2];
    expected.extend(&value);
    assert_eq!(dump.payload.0, dump_payload(&expected, 11));
    assert_eq!(recs[1].value, Value::String(b("ok")));
}

#[test]
fn every_value_as_a_dump_payload() {
    let lp = listpack(&[E::S(b"a"), E::I(1)]);
    let values: Vec<(u8, Vec<u8>, &str)> = vec![
        (STRING, Rdb(Vec::new()).str(b"hello").0, "string"),
        (
            LIST_QUICKLIST_2,
            Rdb(Vec::new()).len(1).len(2).str(&lp).0,
            "list",
        ),
        (HASH_LISTPACK, Rdb(Vec::new()).str(&lp).0, "hash"),
        (
            ZSET_2,
            Rdb(Vec::new()).len(1).str(b"m").raw(&1f64.to_le_bytes()).0,
            "zset",
        ),
        (SET, Rdb(Vec::new()).len(1).str(b"m").0, "set"),
    ];
    let mut rdb = Rdb::new(12);
    for (t, v, name) in &values {
        rdb = rdb.key(*t, name).raw(v);
    }
    let mut opts = options(10);
    opts.as_dump = true;
    let (items, _, _) = read_all(&rdb.finish(), opts).unwrap();
    for ((t, v, name), item) in values.iter().zip(items) {
        let RdbItem::Record { record, .. } = item else {
            panic!()
        };
        let Value::Dump(dump) = record.value else {
            panic!()
        };
        assert_eq!(dump.type_name, *name);
        let mut raw = vec![*t];
        raw.extend(v);
        assert_eq!(dump.payload.0, dump_payload(&raw, 12), "{name}");
    }
}
