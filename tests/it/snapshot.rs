//! Issue 15: archives of one instant, from the server's own snapshot
//! (`export --snapshot`, received as a replica) and from RDB files
//! (`export --from-rdb`), on every server the tests run.

use std::path::{Path, PathBuf};

use crate::support::*;
use redis::{Commands, Connection};

/// A server that starts sending its snapshot at once (not after waiting
/// the default 5 s for other replicas to join).
fn start(kind: ServerKind) -> RedisServer {
    RedisServer::start_version_with(kind, &["--repl-diskless-sync-delay", "0"])
}

/// Every type in every encoding a server uses for it: small collections
/// (listpack/ziplist), big ones (hashtable, skiplist, quicklist), integer
/// sets, integer and compressible strings, binary data, expiries, streams
/// with groups and pending entries, and hash field TTLs where the server
/// has them.
pub(crate) fn load_every_encoding(c: &mut Connection, field_ttls: bool) {
    load_mixed(c);
    let big: Vec<(String, String)> = (0..2_000)
        .map(|i| (format!("field-{i}"), format!("value-{i}")))
        .collect();
    let _: () = c.hset_multiple("enc:hash:big", &big).unwrap();
    let members: Vec<(f64, String)> = (0..2_000)
        .map(|i| (f64::from(i) * 1.5 - 7.25, format!("m{i}")))
        .collect();
    let _: () = c.zadd_multiple("enc:zset:big", &members).unwrap();
    let items: Vec<String> = (0..5_000).map(|i| format!("item-{i}")).collect();
    let _: () = c.rpush("enc:list:big", &items).unwrap();
    let _: () = c
        .sadd("enc:set:ints", &[1, -2, 300, 70_000, 5_000_000_000i64])
        .unwrap();
    let ints: Vec<i64> = (0..1_000).collect();
    let _: () = c.sadd("enc:set:bigints", &ints).unwrap();
    let words: Vec<String> = (0..1_000).map(|i| format!("w{i}")).collect();
    let _: () = c.sadd("enc:set:big", &words).unwrap();
    let _: () = c.sadd("enc:set:small", &["a", "b", "c"]).unwrap();
    let _: () = c.set("enc:str:int", -123_456_789).unwrap();
    let _: () = c.set("enc:str:small-int", 7).unwrap();
    let _: () = c.set("enc:str:lzf", "abcdefgh".repeat(500)).unwrap();
    let _: () = c.set("enc:str:big", "0123456789".repeat(100_000)).unwrap();
    let _: () = c.set_ex("enc:str:seconds", "ttl", 3_600).unwrap();
    let _: () = c.hset("enc:hash:small", "n", 42).unwrap();
    let _: () = c.rpush("enc:list:small", &["x", "1", "-5"]).unwrap();
    let _: () = c.zadd("enc:zset:small", "one", 1).unwrap();
    if field_ttls {
        crate::fidelity::load_field_expiry(c);
    }
}

/// Save the server's data and return where its RDB file is.
fn save(server: &RedisServer) -> PathBuf {
    let mut c = server.conn();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let dir: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query(&mut c)
        .unwrap();
    let name: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dbfilename")
        .query(&mut c)
        .unwrap();
    Path::new(&dir[1]).join(&name[1])
}

fn round_trips(kind: ServerKind) {
    let src = start(kind);
    let field_ttls = !matches!(kind, ServerKind::Redis70 | ServerKind::Valkey81);
    load_every_encoding(&mut src.conn(), field_ttls);
    let keys = src.dbsize(0);
    let rdb = save(&src);
    let dir = tempfile::tempdir().unwrap();

    for (name, args) in [
        ("from-rdb", vec!["--from-rdb", rdb.to_str().unwrap()]),
        ("snapshot", vec!["--snapshot"]),
    ] {
        let file = dir.path().join(format!("{name}.tar.zst"));
        let mut all = args.clone();
        all.push("--json");
        let report = export(&src, &file, &all).ok().json();
        assert_eq!(report["keys"], keys, "{name}: {report}");
        let dst = RedisServer::start_version(kind);
        restore(&dst, &file, &[]).ok();
        let compared = assert_same_db(&mut src.conn(), &mut dst.conn(), 1_000);
        assert_eq!(compared, keys, "{name}");
        let text = run(&["inspect", file.to_str().unwrap()]).ok().stdout_text();
        assert!(text.contains("consistency:     snapshot"), "{name}: {text}");
    }
}

#[test]
fn redis70_snapshots_and_rdb_files_restore_exactly() {
    round_trips(ServerKind::Redis70);
}

#[test]
fn redis8_snapshots_and_rdb_files_restore_exactly() {
    round_trips(ServerKind::Redis8);
}

#[test]
fn valkey81_snapshots_and_rdb_files_restore_exactly() {
    round_trips(ServerKind::Valkey81);
}

#[test]
fn snapshot_header_names_the_instant() {
    let src = start(ServerKind::Redis70);
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &["--snapshot"]).ok();
    let header: serde_json::Value =
        serde_json::from_slice(&stock_tar(&file, "-xO header.json")).unwrap();
    assert_eq!(header["consistency"], "snapshot", "{header}");
    let node = &header["snapshot"]["nodes"][0];
    assert_eq!(header["snapshot"]["origin"], "replication", "{header}");
    assert_eq!(node["node"], format!("127.0.0.1:{}", src.port), "{header}");
    assert!(node["offset"].as_u64().is_some(), "{header}");
    assert_eq!(node["replid"].as_str().map(str::len), Some(40), "{header}");
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut src.conn())
        .unwrap();
    assert!(
        info.contains("connected_slaves:0"),
        "the link is closed: {info}"
    );
}

/// Amounts move between accounts in MULTI/EXEC while the export runs: a
/// snapshot holds one instant, so the total is exact.
#[test]
fn a_snapshot_is_one_instant_while_writes_go_on() {
    let src = start(ServerKind::Redis70);
    let accounts = 200;
    let total = accounts * 1_000;
    let mut c = src.conn();
    for i in 0..accounts {
        let _: () = c.set(format!("acct:{i}"), 1_000).unwrap();
    }
    let padding: Vec<(String, String)> = (0..50_000)
        .map(|i| (format!("pad:{i}"), "x".repeat(100)))
        .collect();
    for chunk in padding.chunks(5_000) {
        let _: () = c.mset(chunk).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = src.conn();
        std::thread::spawn(move || {
            let mut moves = 0u64;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let from = format!("acct:{}", i % accounts);
                let to = format!("acct:{}", (i * 7 + 3) % accounts);
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("DECRBY")
                    .arg(&from)
                    .arg(5)
                    .ignore()
                    .cmd("INCRBY")
                    .arg(&to)
                    .arg(5)
                    .ignore()
                    .query(&mut c)
                    .unwrap();
                i += 1;
                moves += 1;
            }
            moves
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    std::thread::sleep(std::time::Duration::from_millis(100));
    export(&src, &file, &["--snapshot", "--match", "acct:*"]).ok();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = writer.join().unwrap();
    assert!(moves > 100, "writes went on during the export ({moves})");

    let dst = RedisServer::start();
    restore(&dst, &file, &[]).ok();
    let mut d = dst.conn();
    let sum: i64 = (0..accounts)
        .map(|i| d.get::<_, i64>(format!("acct:{i}")).unwrap())
        .sum();
    assert_eq!(sum, total as i64, "the accounts' sum is exact");
}

#[test]
fn selection_applies_to_an_rdb_file() {
    let src = start(ServerKind::Redis70);
    let mut c = src.conn();
    load_mixed(&mut c);
    let mut c1 = src.conn_db(1);
    let _: () = c1.set("other:db", "1").unwrap();
    let _: () = c1.hset("user:1", "f", "v").unwrap();
    let rdb = save(&src);
    let dir = tempfile::tempdir().unwrap();
    let rdb_arg = rdb.to_str().unwrap();

    let file = dir.path().join("db1.tar.zst");
    let report = export(&src, &file, &["--from-rdb", rdb_arg, "--db", "1", "--json"])
        .ok()
        .json();
    assert_eq!(report["keys"], 2, "{report}");

    let file = dir.path().join("sel.tar.zst");
    let report = export(
        &src,
        &file,
        &[
            "--from-rdb",
            rdb_arg,
            "--match",
            "str:*",
            "--match",
            "hash:*",
            "--exclude",
            "str:ttl",
            "--type",
            "string",
            "--json",
        ],
    )
    .ok()
    .json();
    let expected = {
        let keys: Vec<String> = c.keys("str:*").unwrap();
        keys.len() as u64 - 1
    };
    assert_eq!(report["keys"], expected, "{report}");
    assert_eq!(
        report["by_type"]["string"]["exported"], expected,
        "{report}"
    );

    // From stdin, with no server at all.
    let file = dir.path().join("stdin.tar.zst");
    let out = command(&[
        "export",
        "--from-rdb",
        "-",
        "--source",
        &format!("redis://127.0.0.1:{}", dead_port()),
        "-o",
        file.to_str().unwrap(),
        "--json",
    ])
    .stdin(std::fs::File::open(&rdb).unwrap())
    .output()
    .unwrap();
    let report = output(out).ok().json();
    assert_eq!(report["keys"], src.dbsize(0), "{report}");
}

#[test]
fn broken_rdb_files_are_refused_and_nothing_is_written() {
    let src = start(ServerKind::Redis70);
    load_mixed(&mut src.conn());
    let rdb = std::fs::read(save(&src)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut flipped = rdb.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let mut future = rdb.clone();
    future[5..9].copy_from_slice(b"0099");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", rdb[..rdb.len() / 2].to_vec(), "ends early"),
        (
            "no-checksum-end",
            rdb[..rdb.len() - 4].to_vec(),
            "ends early",
        ),
        ("flipped", flipped, "cannot read the RDB"),
        ("version", future, "99"),
        (
            "not-rdb",
            b"hello world, not an RDB".to_vec(),
            "cannot read the RDB",
        ),
    ];
    for (name, bytes, needle) in cases {
        let input = dir.path().join(format!("{name}.rdb"));
        std::fs::write(&input, bytes).unwrap();
        let out_dir = dir.path().join(name);
        std::fs::create_dir(&out_dir).unwrap();
        let file = out_dir.join("a.tar.zst");
        let run = run(&[
            "export",
            "--from-rdb",
            input.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ])
        .fails(7, needle);
        assert!(
            run.stderr.contains("cannot read the RDB"),
            "{name}: {}",
            run.stderr
        );
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(
            left.is_empty(),
            "{name}: nothing at the output path: {left:?}"
        );
    }
}

#[test]
fn a_user_without_replication_rights_is_told_what_works() {
    let src = start(ServerKind::Redis70);
    let mut c = src.conn();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(">s3cret-pw")
        .arg("~*")
        .arg("+@all")
        .arg("-psync")
        .arg("-sync")
        .arg("-replconf")
        .query(&mut c)
        .unwrap();
    let _: () = c.set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    let url = format!("redis://reader:s3cret-pw@127.0.0.1:{}", src.port);
    let run = export_url(&url, &file, &["--snapshot"]).fails(6, "may not replicate");
    assert!(run.stderr.contains("without --snapshot"), "{}", run.stderr);
    assert!(!run.stderr.contains("s3cret-pw"), "{}", run.stderr);
    assert!(!file.exists());
    // The plain export works for the same user.
    export_url(&url, &file, &[]).ok();
}

#[test]
fn a_cluster_snapshot_takes_every_primary() {
    let cluster = RedisCluster::start();
    let single = RedisServer::start();
    load_mixed(&mut single.conn());
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.tar.zst");
    export(&single, &seed, &[]).ok();
    restore_url(&cluster.url(), &seed, &[]).ok();
    let keys = cluster.dbsize();
    assert!(keys > 5);

    let file = dir.path().join("a.tar.zst");
    let report = export_url(&cluster.url(), &file, &["--snapshot", "--json"])
        .ok()
        .json();
    assert_eq!(report["keys"], keys, "{report}");
    let header: serde_json::Value =
        serde_json::from_slice(&stock_tar(&file, "-xO header.json")).unwrap();
    assert_eq!(
        header["snapshot"]["nodes"].as_array().map(Vec::len),
        Some(3),
        "one snapshot per primary: {header}"
    );
    let dst = RedisServer::start();
    restore(&dst, &file, &[]).ok();
    let (want, got) = (cluster.snapshot(), dst.snapshot());
    assert_eq!(want.len(), got.len());
    for (key, (state, at)) in &want {
        let (s, a) = &got[key];
        assert!(
            s == state && at.is_some() == a.is_some(),
            "{:?}",
            String::from_utf8_lossy(key)
        );
    }
}

/// `export USER_ID` from an RDB file and from a snapshot takes exactly the
/// keys (and shared-index members) the live export takes.
#[test]
fn a_users_records_from_an_rdb_are_those_of_the_live_export() {
    let fixture = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/profiles")
            .join(name)
    };
    for (data, profile) in [
        ("relay-data.redis", "relay.toml"),
        ("review-data.redis", "review.toml"),
    ] {
        let src = start(ServerKind::Redis70);
        src.load_commands(&fixture(data));
        let rdb = save(&src);
        let profile = fixture(profile);
        let profile = profile.to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.tar.zst");
        export(&src, &live, &["42", "--profile", profile]).ok();
        let expected = RedisServer::start();
        restore(&expected, &live, &[]).ok();
        let live_manifest = run(&["inspect", live.to_str().unwrap(), "--json"])
            .ok()
            .json();

        for (name, extra) in [
            ("from-rdb", vec!["--from-rdb", rdb.to_str().unwrap()]),
            ("snapshot", vec!["--snapshot"]),
        ] {
            let file = dir.path().join(format!("{name}.tar.zst"));
            let mut args = vec!["42", "--profile", profile];
            args.extend(extra);
            export(&src, &file, &args).ok();
            let manifest = run(&["inspect", file.to_str().unwrap(), "--json"])
                .ok()
                .json();
            assert_eq!(manifest["groups"], live_manifest["groups"], "{data} {name}");
            assert_eq!(manifest["profile"]["user"], "42");
            let got = RedisServer::start();
            restore(&got, &file, &[]).ok();
            assert_close(&expected, &got, &format!("{data} {name}"));
        }
    }
}

/// Same keys and values; expiry times within a second (restores set TTLs
/// relative to when they run).
fn assert_close(expected: &RedisServer, got: &RedisServer, label: &str) {
    let (want, have) = (expected.snapshot(), got.snapshot());
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        have.keys().collect::<Vec<_>>(),
        "{label}: the same keys"
    );
    for (key, (state, at)) in &want {
        let (s, a) = &have[key];
        assert!(
            s == state,
            "{label}: {:?} differs",
            String::from_utf8_lossy(key)
        );
        assert_eq!(
            at.is_some(),
            a.is_some(),
            "{label}: {:?}",
            String::from_utf8_lossy(key)
        );
        assert!(
            at.zip(*a).is_none_or(|(x, y)| (x - y).abs() <= 1_000),
            "{label}: {:?} expires at {at:?}, not {a:?}",
            String::from_utf8_lossy(key)
        );
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// A snapshot export of `keys` keys, under way (its temp file written).
fn snapshot_under_way(keys: u64) -> (RedisServer, tempfile::TempDir, std::process::Child) {
    let src = start(ServerKind::Redis70);
    dataset::load(&mut src.conn(), keys, 0);
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_snapshot(&src.url(), dir.path());
    (src, dir, child)
}

/// `export --snapshot` of `url` into `dir`, once its temp file is there.
fn spawn_snapshot(url: &str, dir: &Path) -> std::process::Child {
    let file = dir.join("x.tar.zst");
    let child = spawn(&[
        "export",
        "--snapshot",
        "--source",
        url,
        "-o",
        file.to_str().unwrap(),
    ]);
    wait_for("the export to start writing", || entries(dir) > 0);
    child
}

#[test]
fn sigint_during_a_snapshot_leaves_nothing() {
    let (_src, dir, child) = snapshot_under_way(200_000);
    signal(&child, "INT");
    let out = output(child.wait_with_output().unwrap());
    out.fails(130, "interrupted: export stopped; nothing was written");
    assert_eq!(entries(dir.path()), 0, "no archive and no temp file left");
}

/// The server drops the replication link half way: an error, and nothing
/// at the output path.
#[test]
fn a_dropped_snapshot_leaves_nothing() {
    let (src, dir, child) = snapshot_under_way(300_000);
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut src.conn())
        .unwrap();
    let out = output(child.wait_with_output().unwrap());
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("cannot read the RDB"), "{}", out.stderr);
    assert_eq!(entries(dir.path()), 0, "no archive and no temp file left");
}

/// A server busy with another snapshot (a BGSAVE) answers PSYNC only once it
/// can fork again, sending bare newlines until then.
#[test]
fn a_snapshot_waits_for_a_busy_server() {
    let src = start(ServerKind::Redis70);
    dataset::load(&mut src.conn(), 20_000, 0);
    let mut c = src.conn();
    let set_delay = |c: &mut Connection, micros: u32| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("rdb-key-save-delay")
            .arg(micros)
            .query(c)
            .unwrap();
    };
    // About 2 s of BGSAVE (100 us a key); the child keeps the delay it
    // forked with, the snapshot after it does not.
    set_delay(&mut c, 100);
    let _: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    set_delay(&mut c, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    let report = export(&src, &file, &["--snapshot", "--json"]).ok().json();
    assert_eq!(report["keys"], src.dbsize(0), "{report}");
}

/// `copy --snapshot` and `backup --snapshot` take the same instant as
/// `export --snapshot`.
#[test]
fn copy_and_backup_take_snapshots_too() {
    let src = start(ServerKind::Redis70);
    load_mixed(&mut src.conn());
    let dst = RedisServer::start();
    let (s, t) = (src.url(), dst.url());
    let report = run(&[
        "copy",
        "--snapshot",
        "--source",
        &s,
        "--target",
        &t,
        "--yes",
        "--no-backup",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        assert_same_db(&mut src.conn(), &mut dst.conn(), 1_000),
        src.dbsize(0)
    );

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("backups");
    run(&[
        "backup",
        "--snapshot",
        "--source",
        &s,
        "--backup-dir",
        folder.to_str().unwrap(),
    ])
    .ok();
    let listed = run(&["list", folder.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let file = PathBuf::from(listed[0]["path"].as_str().expect("the backup is listed"));
    let header: serde_json::Value =
        serde_json::from_slice(&stock_tar(&file, "-xO header.json")).unwrap();
    assert_eq!(header["consistency"], "snapshot", "{header}");
}

/// Slots that move while a cluster's snapshots stream could put a key in
/// two snapshots or in none: the export fails and writes nothing.
#[test]
fn slots_moving_during_a_cluster_snapshot_fail_it() {
    let cluster = RedisCluster::start();
    let single = RedisServer::start();
    dataset::load(&mut single.conn(), 600, 0);
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.tar.zst");
    export(&single, &seed, &[]).ok();
    restore_url(&cluster.url(), &seed, &[]).ok();
    assert_eq!(cluster.dbsize(), 600, "the cluster holds the data");
    // Each primary takes about 8 s to write its snapshot (40 ms a key).
    for node in cluster.primaries() {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("rdb-key-save-delay")
            .arg(40_000)
            .query(&mut node.conn())
            .unwrap();
    }
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let file = out_dir.join("x.tar.zst");
    let child = spawn(&[
        "export",
        "--snapshot",
        "--source",
        &cluster.url(),
        "-o",
        file.to_str().unwrap(),
    ]);
    let saving = |node: &RedisServer| {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(&mut node.conn())
            .unwrap();
        info.contains("rdb_bgsave_in_progress:1")
    };
    wait_for("every primary to be writing its snapshot", || {
        cluster.primaries().into_iter().all(saving)
    });
    let slot = cluster.slot(&dataset::key_name(1));
    cluster.move_slot(slot, (cluster.owner_of_slot(slot) + 1) % 3);
    assert!(
        cluster.primaries().into_iter().all(saving),
        "the slot moved while every snapshot was being written"
    );
    let out = output(child.wait_with_output().unwrap());
    out.fails(6, "the slots moved during the export");
    assert_eq!(entries(&out_dir), 0, "nothing at the output path");
}
