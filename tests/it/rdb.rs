//! The RDB reader against what real servers save: Redis 7.0 (RDB 10),
//! Redis 8.0 (RDB 12) and Valkey 8.1 (RDB 11), each filled with every type
//! in every encoding it uses. What the reader gives, put back together key
//! by key, must be what the server itself reports (support's `key_state`,
//! `PEXPIRETIME`); read as DUMP payloads, it must be what the server's own
//! `DUMP` returns, byte for byte. The test vectors in fixtures/rdb/ and
//! random damage to them are read here too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use redis_archive::rdb::{KeyInfo, RdbError, RdbItem, RdbOptions, RdbReader, RdbStats, SkipReason};
use redis_archive::record::{KeyType, Record, Value};

use crate::support::{RedisServer, ServerKind, expire_time, key_state, load_mixed};
use fill::{FUNCTION, fill, start};
use state::state_of;

mod fill;
mod fixtures;
mod state;

/// A time before any expiry the tests set (they set them from now on).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `SAVE`, and where the file went.
fn save(server: &RedisServer) -> PathBuf {
    let mut c = server.conn();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let mut config = |name: &str| -> String {
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(&mut c)
            .unwrap();
        v[1].clone()
    };
    Path::new(&config("dir")).join(config("dbfilename"))
}

/// What the reader gave for a file.
#[derive(Debug, Default)]
struct Read {
    keys: BTreeMap<(u32, Vec<u8>), Vec<Record>>,
    skipped: Vec<(KeyInfo, SkipReason)>,
    aux: BTreeMap<Vec<u8>, Vec<u8>>,
    functions: Vec<Vec<u8>>,
    stats: RdbStats,
    version: u32,
    verified: bool,
}

fn read_file(path: &Path, options: RdbOptions, select: &mut dyn FnMut(&KeyInfo) -> bool) -> Read {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = RdbReader::new(file, options).unwrap();
    let mut out = Read {
        version: reader.version(),
        ..Read::default()
    };
    let mut open: Option<(u32, Vec<u8>)> = None;
    while let Some(item) = reader.next_item(select).unwrap() {
        match item {
            RdbItem::Aux { key, value } => {
                out.aux.insert(key, value);
            }
            RdbItem::Function { code } => out.functions.push(code),
            RdbItem::Record { db, record } => {
                let id = (db, record.key.0.clone());
                // Records of different keys never interleave.
                match &open {
                    Some(o) => assert_eq!(*o, id, "a key's parts are consecutive"),
                    None => assert!(!out.keys.contains_key(&id), "a key read twice: {id:?}"),
                }
                open = record.more.then(|| id.clone());
                out.keys.entry(id).or_default().push(record);
            }
            RdbItem::Skipped { info, why } => out.skipped.push((info, why)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(open.is_none(), "the last key was finished");
    out.stats = reader.stats().clone();
    out.verified = reader.checksum_verified();
    out
}

/// Every key of every database, with its database.
fn server_keys(server: &RedisServer) -> BTreeSet<(u32, Vec<u8>)> {
    let mut out = BTreeSet::new();
    for db in 0..16u32 {
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut server.conn_db(db.into()))
            .unwrap();
        out.extend(keys.into_iter().map(|k| (db, k)));
    }
    out
}

/// The reader's records of every key equal the server's own view of it.
fn assert_same_as_server(server: &RedisServer, read: &Read) {
    let keys = server_keys(server);
    let got: BTreeSet<_> = read.keys.keys().cloned().collect();
    assert_eq!(got, keys, "the same keys");
    for (db, key) in &keys {
        let mut c = server.conn_db((*db).into());
        let records = &read.keys[&(*db, key.clone())];
        let t: String = redis::cmd("TYPE").arg(key).query(&mut c).unwrap();
        if KeyType::from_redis(&t) == Some(KeyType::Dump) {
            // A module type: its DUMP payload, as the server gives it.
            let Value::Dump(dump) = &records[0].value else {
                panic!("{t} key {key:?} as {records:?}");
            };
            let want: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut c).unwrap();
            assert_eq!(dump.type_name, t);
            assert!(dump.payload.0 == want, "DUMP of {key:?} differs");
            assert_eq!(records[0].expiry.map(|e| e.at_ms), expire_time(&mut c, key));
            continue;
        }
        let want = (key_state(&mut c, key).unwrap(), expire_time(&mut c, key));
        let have = state_of(records);
        assert!(
            want == have,
            "key {:?} in db {db} differs:\n  server: {:.300}\n  reader: {:.300}",
            String::from_utf8_lossy(key),
            format!("{want:?}"),
            format!("{have:?}")
        );
    }
}

fn check_server(kind: ServerKind, version: u32) {
    let server = start(kind);
    fill(&server, kind);
    let path = save(&server);
    for chunk in [1 << 20, 64] {
        let read = read_file(&path, RdbOptions::new(now_ms(), chunk), &mut |_| true);
        assert_eq!(read.version, version);
        assert!(read.verified, "checksum verified");
        assert_same_as_server(&server, &read);
        assert_eq!(read.functions, [FUNCTION.as_bytes()]);
        let ver_key: &[u8] = if kind == ServerKind::Valkey81 {
            b"valkey-ver"
        } else {
            b"redis-ver"
        };
        assert!(read.aux.contains_key(ver_key), "{:?}", read.aux.keys());
        assert!(read.skipped.is_empty(), "{:?}", read.skipped);
        assert_eq!(read.stats.keys, read.keys.len() as u64);
        assert_eq!(read.stats.keys_per_db[&2], 2);
        assert_eq!(
            read.stats.bytes_read,
            std::fs::metadata(&path).unwrap().len()
        );
        if chunk == 64 {
            // Big keys came in many parts, none much over the size asked.
            assert!(read.keys[&(0, b"hash:huge".to_vec())].len() > 10_000);
            assert!(read.keys[&(0, b"stream:big".to_vec())].len() > 1000);
            assert!(read.keys[&(0, b"str:big-raw".to_vec())].len() > 3000);
            for r in read.keys.values().flatten() {
                assert!(
                    r.value.clone().split(64).len() == 1 || r.value.len() <= 1,
                    "{:.200}",
                    format!("{r:?}")
                );
            }
        }
    }
    check_dumps(&server, &path);
    check_select_and_expiry(&server, &path, kind);
}

/// Read as DUMP payloads, every key is what the server's DUMP returns.
fn check_dumps(server: &RedisServer, path: &Path) {
    let mut options = RdbOptions::new(now_ms(), 1 << 20);
    options.as_dump = true;
    let read = read_file(path, options, &mut |_| true);
    assert_eq!(read.keys.len(), server_keys(server).len());
    for ((db, key), records) in &read.keys {
        assert_eq!(records.len(), 1);
        let Value::Dump(dump) = &records[0].value else {
            panic!("{records:?}")
        };
        let mut c = server.conn_db((*db).into());
        let want: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut c).unwrap();
        let t: String = redis::cmd("TYPE").arg(key).query(&mut c).unwrap();
        assert_eq!(dump.type_name, t);
        assert!(
            dump.payload.0 == want,
            "DUMP of {:?} differs ({} vs {} bytes)",
            String::from_utf8_lossy(key),
            dump.payload.0.len(),
            want.len()
        );
    }
}

/// Keys not selected are skipped; with the clock far ahead, every key
/// with an expiry is skipped as expired, and so is a hash all of whose
/// fields expire; other hashes lose their expiring fields.
fn check_select_and_expiry(server: &RedisServer, path: &Path, kind: ServerKind) {
    let read = read_file(path, RdbOptions::new(now_ms(), 1 << 20), &mut |info| {
        !info.key.0.starts_with(b"list:")
    });
    let skipped: BTreeSet<_> = read
        .skipped
        .iter()
        .map(|(info, why)| {
            assert_eq!(*why, SkipReason::NotSelected);
            assert_eq!(info.key_type, KeyType::List);
            info.key.0.clone()
        })
        .collect();
    let lists: BTreeSet<_> = server_keys(server)
        .into_iter()
        .filter(|(_, k)| k.starts_with(b"list:"))
        .map(|(_, k)| k)
        .collect();
    assert_eq!(skipped, lists);
    assert!(read.verified);
    assert_eq!(read.stats.not_selected, lists.len() as u64);

    let later = now_ms() + 400 * 86_400_000;
    let read = read_file(path, RdbOptions::new(later, 1 << 20), &mut |_| true);
    let mut expired: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (info, why) in &read.skipped {
        assert_eq!(*why, SkipReason::Expired);
        expired.insert(info.key.0.clone());
    }
    let mut want: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (db, key) in server_keys(server) {
        if expire_time(&mut server.conn_db(db.into()), &key).is_some() {
            want.insert(key);
        }
    }
    if kind == ServerKind::Redis8 {
        want.insert(b"hfe:all".to_vec());
        let kept = &read.keys[&(0, b"hfe:big".to_vec())];
        let Value::Hash(fields) = &kept[0].value else {
            panic!()
        };
        assert_eq!(fields.len(), 1000 - 143);
        assert!(kept[0].field_expiry.is_empty());
        assert_eq!(read.stats.expired_fields, 2 + 2 + 143);
    } else {
        assert_eq!(read.stats.expired_fields, 0);
    }
    assert_eq!(expired, want);
    assert_eq!(read.stats.expired_keys, want.len() as u64);
}

#[test]
fn reads_what_redis70_saves() {
    check_server(ServerKind::Redis70, 10);
}

#[test]
fn reads_what_redis8_saves() {
    check_server(ServerKind::Redis8, 12);
}

#[test]
fn reads_what_valkey81_saves() {
    check_server(ServerKind::Valkey81, 11);
}

/// A truncated file from a real server is an error, not a short read.
#[test]
fn a_truncated_real_file_is_an_error() {
    let server = RedisServer::start_version(ServerKind::Redis8);
    load_mixed(&mut server.conn());
    let path = save(&server);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() - 1, bytes.len() - 9, bytes.len() / 2, 20] {
        let mut reader = RdbReader::new(&bytes[..cut], RdbOptions::new(now_ms(), 1 << 20)).unwrap();
        let err = loop {
            match reader.next_item(&mut |_| true) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("{cut} bytes read to the end"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, RdbError::Truncated { .. }), "{err}");
    }
}
