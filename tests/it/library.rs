//! Paths the binary cannot be driven into on demand, exercised through the
//! library against real servers: keys that vanish between SCAN and read,
//! and module-type keys kept as DUMP payloads.

use crate::support::*;
use redis::Commands;
use redis_archive::archive::manifest::{ArchiveKind, Header, Source};
use redis_archive::archive::{ArchiveWriter, Destination, WriterOptions};
use redis_archive::connection::{Endpoint, ServerInfo, Side, Timeouts};
use redis_archive::fetch::{ChunkSizes, Fetcher};
use redis_archive::keyspace::Selection;
use redis_archive::record::{Bytes, DumpValue, Expiry, KeyType, Record, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_gone_before_they_are_read_count_as_vanished() {
    let src = RedisServer::start();
    let _: () = src.conn().set("here", "v").unwrap();
    let endpoint =
        Endpoint::resolve(&src.url(), None, None, Side::Source, Timeouts::default()).unwrap();
    let conn = endpoint.connect().await.unwrap();
    let (tx, mut rx) = redis_archive::fetch::channel(16);
    let mut fetcher = Fetcher::new(conn, ChunkSizes::default(), tx);

    // As if SCAN had returned them and they were deleted before TYPE...
    fetcher
        .fetch_batch(
            vec![b"here".to_vec(), b"gone1".to_vec(), b"gone2".to_vec()],
            None,
            &|_| true,
        )
        .await
        .unwrap();
    // ...and as if SCAN TYPE had typed them, deleted before PTTL.
    fetcher
        .fetch_batch(vec![b"gone3".to_vec()], Some(KeyType::Hash), &|_| true)
        .await
        .unwrap();
    assert_eq!(fetcher.stats.vanished_untyped, 2);
    assert_eq!(fetcher.stats.by_type[&KeyType::Hash].vanished, 1);
    assert_eq!(fetcher.stats.vanished(), 3);
    assert_eq!(fetcher.stats.errors.total(), 0);
    drop(fetcher);
    let record = rx.recv().await.unwrap();
    assert_eq!(record.key.0, b"here");
    assert!(
        rx.recv().await.is_none(),
        "only the key that exists is written"
    );
}

#[test]
fn dump_records_restore_with_their_ttl() {
    // Stock Redis has no module types, so a DUMP payload of a plain hash
    // stands in for one: the restore path is the same RESTORE. Its type name
    // is no known module's, so the plan lets RESTORE decide (a known module
    // type the target has not loaded is refused: tests/it/fidelity.rs).
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c
        .hset_multiple("mod:key", &[("a", "1"), ("b", "2")])
        .unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("mod:key").query(&mut c).unwrap();
    let at = 4_102_444_800_000; // 2100-01-01

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dump.tar.zst");
    let header = Header::new(
        ArchiveKind::Export,
        chrono::Utc::now(),
        Source {
            address: redis_archive::connection::Address {
                host: "127.0.0.1".into(),
                port: src.port,
                db: 0,
                tls: false,
            },
            server: ServerInfo {
                flavor: "redis".into(),
                version: "7.0.15".into(),
            },
            cluster: None,
        },
        Selection::default(),
    );
    let mut writer = ArchiveWriter::create(
        Destination::File(file.clone()),
        header,
        WriterOptions::default(),
        None,
    )
    .unwrap();
    let rdb_version = u16::from_le_bytes([payload[payload.len() - 10], payload[payload.len() - 9]]);
    writer
        .write_record(&Record {
            key: "mod:key".into(),
            expiry: Some(Expiry {
                at_ms: at,
                ttl_ms: 1_000,
            }),
            part: 0,
            more: false,
            field_expiry: Vec::new(),
            void: false,
            value: Value::Dump(DumpValue {
                type_name: "example-type".into(),
                rdb_version,
                payload: Bytes(payload),
            }),
        })
        .unwrap();
    writer.finish(chrono::Utc::now(), 0).unwrap();

    let report = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(report["plan"]["by_type"]["dump"]["create"], 1, "{report}");
    let mut d = dst.conn();
    let mut fields: Vec<(String, String)> = d.hgetall("mod:key").unwrap();
    fields.sort();
    assert_eq!(fields, [("a".into(), "1".into()), ("b".into(), "2".into())]);
    assert_eq!(expire_time(&mut d, b"mod:key"), Some(at));

    // Overwrite replaces it through RESTORE ... REPLACE as well.
    let _: () = d.hset("mod:key", "extra", "x").unwrap();
    restore(&dst, &file, &["--mode", "overwrite"]).ok();
    assert!(!d.hexists::<_, _, bool>("mod:key", "extra").unwrap());
}

#[test]
fn module_type_names_map_to_dump() {
    assert_eq!(KeyType::from_redis("ReJSON-RL"), Some(KeyType::Dump));
    assert_eq!(KeyType::from_redis("MBbloom--"), Some(KeyType::Dump));
    assert_eq!(KeyType::from_redis("none"), None);
    assert_eq!(KeyType::from_redis("zset"), Some(KeyType::Zset));
}

/// The library bridges nothing to a multi-threaded runtime: restore (plan,
/// backup, journal, perform), compare and rollback all run on a
/// current-thread one.
#[tokio::test(flavor = "current_thread")]
async fn restore_compare_and_rollback_run_on_a_current_thread_runtime() {
    use redis_archive::archive::{ArchiveSource, Decryption};
    use redis_archive::compare::{CompareOptions, compare};
    use redis_archive::progress::Silent;
    use redis_archive::restore::{self, RestoreOptions, rollback};

    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.tar.zst");
    export(&src, &file, &[]).ok();

    let target =
        Endpoint::resolve(&dst.url(), None, None, Side::Target, Timeouts::default()).unwrap();
    let mut options = RestoreOptions::new(ArchiveSource::File(file.clone()), target.clone());
    options.decryption = Decryption::none();
    options.backup_dir = Some(dir.path().join("backups"));
    let plan = restore::plan(&options, &Silent).await.unwrap();
    let backup = plan.backup_path().unwrap().to_path_buf();
    let report = restore::perform(plan, &options, &Silent).await.unwrap();
    assert_eq!(report.errors, 0);
    assert!(report.written > 0);
    let compared = assert_same_db(&mut src.conn(), &mut dst.conn(), 2000);
    assert!(compared > 0);

    let comparison = compare(
        &CompareOptions::new(ArchiveSource::File(file), target.clone()),
        &Silent,
    )
    .await
    .unwrap();
    assert!(comparison.is_identical(), "{comparison:?}");
    assert_eq!(comparison.compared, report.written);

    let mut undo = rollback::RollbackOptions::new(backup);
    undo.target = Some(target);
    let rolled = rollback::perform(&undo, &Silent).await.unwrap();
    assert_eq!(rolled.errors, 0);
    assert_eq!(rolled.deleted, report.written);
    assert_eq!(
        dst.dbsize(0),
        0,
        "rollback deleted what the restore created"
    );
}
