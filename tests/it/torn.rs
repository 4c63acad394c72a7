//! Issue 14: a key read in several parts is archived only as one version
//! of it. Big keys are changed (deleted, expired, rewritten) while an
//! export reads them, at several moments of the read; whatever the archive
//! holds, a restore never writes a key that the source did not hold whole
//! at some instant, and the export's report says it ran into the change.
//!
//! The export runs through the library with small chunks, so that reading
//! one key takes thousands of round trips; the change is made once the
//! server has answered a given number of chunk reads (its own command
//! statistics), which puts it inside the read without guessing at timing.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;
use redis::Commands;
use redis_archive::archive::Destination;
use redis_archive::connection::{Endpoint, Side, Timeouts};
use redis_archive::export::{ExportOptions, export};
use redis_archive::fetch::ChunkSizes;
use redis_archive::keyspace::Selection;
use redis_archive::progress::Silent;

const LIST_ITEMS: usize = 300_000;
const HASH_FIELDS: usize = 60_000;
const STRING_BYTES: usize = 4 << 20;

/// Calls of `command` the server has answered so far.
fn calls(c: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Export `src` into `file` with small chunks while `change` runs once the
/// server has answered `after` more `command` calls; returns the report.
fn export_while(
    src: &RedisServer,
    file: &Path,
    command: &str,
    after: u64,
    change: impl FnOnce(&mut redis::Connection),
) -> serde_json::Value {
    let mut c = src.conn();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    let endpoint =
        Endpoint::resolve(&src.url(), None, None, Side::Source, Timeouts::default()).unwrap();
    let mut options = ExportOptions::new(
        endpoint,
        Destination::File(file.to_path_buf()),
        Selection::default(),
    );
    options.chunks = ChunkSizes {
        first_string_bytes: 4096,
        string_bytes: 4096,
        first_elements: 50,
        elements: 50,
    };
    let running = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(export(options, &Silent))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(&mut c, command) < after {
        assert!(!running.is_finished(), "the export ended before the change");
        assert!(Instant::now() < deadline, "the export did not get there");
        std::thread::sleep(Duration::from_millis(1));
    }
    change(&mut c);
    let report = running.join().unwrap().unwrap();
    serde_json::to_value(&report).unwrap()
}

/// Restore `file` into a fresh server with `--ttl none`, so that a key cut
/// short by an expiry would live on if it were written.
fn restored(file: &Path) -> RedisServer {
    let dst = RedisServer::start();
    restore(&dst, file, &["--ttl", "none"]).ok();
    dst
}

fn load_list(c: &mut redis::Connection, key: &str) -> Vec<String> {
    let items: Vec<String> = (0..LIST_ITEMS).map(|i| format!("item-{i}")).collect();
    for chunk in items.chunks(10_000) {
        let _: () = c.rpush(key, chunk).unwrap();
    }
    items
}

#[test]
fn a_list_deleted_expired_or_rewritten_while_read_is_never_restored_in_part() {
    let dir = tempfile::tempdir().unwrap();
    // Early, in the middle and near the end of about 6,000 chunk reads.
    for after in [5, 3_000, 5_500] {
        for change in ["del", "pexpire", "lset"] {
            let src = RedisServer::start();
            let mut c = src.conn();
            let before = load_list(&mut c, "big:list");
            let file = dir.path().join(format!("{change}-{after}.tar.zst"));
            let report = export_while(&src, &file, "lrange", after, |c| match change {
                "del" => {
                    let _: () = c.del("big:list").unwrap();
                }
                "pexpire" => {
                    let _: () = c.pexpire("big:list", 20).unwrap();
                    std::thread::sleep(Duration::from_millis(30));
                }
                _ => {
                    let _: () = c.lset("big:list", 0, "rewritten").unwrap();
                }
            });
            let mut after_change = before.clone();
            after_change[0] = "rewritten".into();
            let dst = restored(&file);
            let got: Vec<String> = dst.conn().lrange("big:list", 0, -1).unwrap();
            let what = format!("{change} after {after} reads: {report}");
            assert!(report["changed"].as_u64().unwrap() >= 1, "{what}");
            match change {
                // Gone at the end: vanished, nothing of it restored.
                "del" | "pexpire" => {
                    assert!(got.is_empty(), "{what}: {} items restored", got.len());
                    assert_eq!(report["vanished"], 1, "{what}");
                }
                // Rewritten: read again whole, as it is after the change.
                _ => {
                    assert!(got == after_change, "{what}: {} items", got.len());
                    assert_eq!(report["keys"], 1, "{what}");
                }
            }
            let manifest = run(&["inspect", "--json", file.to_str().unwrap()])
                .ok()
                .json();
            assert!(
                manifest["counts"]["voided"].as_u64().unwrap() >= 1,
                "{what}: {manifest}"
            );
            // compare agrees: the voided parts are not the archive's.
            let compare = run(&[
                "compare",
                file.to_str().unwrap(),
                "--target",
                &dst.url(),
                "--json",
            ]);
            assert_eq!(compare.code, 0, "{what}: {}", compare.stdout_text());
        }
    }
}

#[test]
fn a_big_hash_and_string_rewritten_while_read_are_archived_as_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let src = RedisServer::start();
    let mut c = src.conn();
    let fields: Vec<(String, String)> = (0..HASH_FIELDS)
        .map(|i| (format!("f{i}"), format!("v{i}")))
        .collect();
    for chunk in fields.chunks(10_000) {
        let _: () = c.hset_multiple("big:hash", chunk).unwrap();
    }
    let file = dir.path().join("hash.tar.zst");
    let report = export_while(&src, &file, "hscan", 600, |c| {
        let _: () = c.hdel("big:hash", "f7").unwrap();
    });
    assert!(report["changed"].as_u64().unwrap() >= 1, "{report}");
    let dst = restored(&file);
    let got: std::collections::HashMap<String, String> = dst.conn().hgetall("big:hash").unwrap();
    assert_eq!(got.len(), HASH_FIELDS - 1, "{report}");
    assert!(!got.contains_key("f7"));
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);

    let src = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.set("big:string", vec![b'a'; STRING_BYTES]).unwrap();
    let file = dir.path().join("string.tar.zst");
    let report = export_while(&src, &file, "getrange", 500, |c| {
        let _: () = redis::cmd("SETRANGE")
            .arg("big:string")
            .arg(STRING_BYTES - 1)
            .arg("z")
            .query(c)
            .unwrap();
    });
    assert!(report["changed"].as_u64().unwrap() >= 1, "{report}");
    let dst = restored(&file);
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);

    // Deleted while read: vanished, not restored in part.
    let file = dir.path().join("string-gone.tar.zst");
    let report = export_while(&src, &file, "getrange", 300, |c| {
        let _: () = c.del("big:string").unwrap();
    });
    assert_eq!(report["vanished"], 1, "{report}");
    let dst = restored(&file);
    assert_eq!(dst.dbsize(0), 0, "{report}");
}
