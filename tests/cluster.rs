//! Redis Cluster (issue #9): export from and restore into a sharded
//! deployment, against real local clusters of three primaries.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use redis::Commands;
use support::*;

type Snapshot = BTreeMap<Vec<u8>, (KeyState, Option<i64>)>;

/// The mixed keyspace of the other round-trip tests, plus hash-tagged keys
/// (several keys in one slot) and a collection big enough to be read and
/// written in chunks.
fn load_source(server: &RedisServer) {
    let mut c = server.conn();
    load_mixed(&mut c);
    dataset::load(&mut c, 3_000, 20_000);
    for user in 0..50 {
        let tag = format!("{{user:{user}}}");
        let _: () = c
            .hset_multiple(
                format!("{tag}:profile"),
                &[("name", format!("user {user}")), ("plan", "team".into())],
            )
            .unwrap();
        let _: () = c.sadd(format!("{tag}:sessions"), user * 10).unwrap();
        let _: () = c
            .rpush(
                format!("{tag}:feed"),
                &[b"a".to_vec(), vec![0xff, user as u8]],
            )
            .unwrap();
        let _: () = c.pexpire(format!("{tag}:feed"), 3_600_000).unwrap();
    }
}

fn assert_same(label: &str, expected: &Snapshot, actual: &Snapshot) {
    assert_eq!(expected.len(), actual.len(), "{label}: key counts differ");
    for (key, want) in expected {
        let got = actual
            .get(key)
            .unwrap_or_else(|| panic!("{label}: {:?} missing", String::from_utf8_lossy(key)));
        assert!(
            got == want,
            "{label}: {:?} differs",
            String::from_utf8_lossy(key)
        );
    }
}

fn export_url(url: &str, path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["export", "--source", url, "-o", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

fn restore_url(url: &str, path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", path.to_str().unwrap(), "--target", url, "--yes"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn issue_9_round_trips_between_clusters_and_single_servers_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let single = RedisServer::start();
    load_source(&single);
    let expected = single.snapshot();
    let plain = dir.path().join("single.tar.zst");
    export(&single, &plain, &[]).ok();

    // single server -> cluster: every key lands on its slot's primary.
    let first = RedisCluster::start();
    let report = restore_url(&first.url(), &plain, &["--json", "--no-backup"])
        .ok()
        .json();
    assert_eq!(
        report["written"].as_u64(),
        Some(expected.len() as u64),
        "{report}"
    );
    assert_same("single -> cluster", &expected, &first.snapshot());
    let sizes = first.sizes();
    assert!(
        sizes.iter().all(|&n| n > 1_000),
        "keys spread over every primary: {sizes:?}"
    );
    for user in [0, 17, 49] {
        let tag = format!("{{user:{user}}}");
        let owners: Vec<usize> = ["profile", "sessions", "feed"]
            .iter()
            .map(|k| first.owner(format!("{tag}:{k}").as_bytes()))
            .collect();
        assert!(owners.iter().all(|&o| o == owners[0]), "{owners:?}");
    }

    // cluster -> archive: one archive with every shard's keys, saying so.
    let sharded = dir.path().join("cluster.tar.zst");
    let report = export_url(&first.url(), &sharded, &["--json"]).ok().json();
    assert_eq!(report["keys"].as_u64(), Some(expected.len() as u64));
    let inspected = run(&["inspect", sharded.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let source = &inspected["source"];
    assert_eq!(source["cluster"]["nodes"], 3, "{inspected}");
    assert_eq!(source["cluster"]["slots"], 16384, "{inspected}");
    let text = run(&["inspect", sharded.to_str().unwrap()])
        .ok()
        .stdout_text();
    assert!(
        text.contains("cluster:         3 primaries serving 16384 slots"),
        "{text}"
    );
    run(&["validate", sharded.to_str().unwrap()]).ok();

    // cluster -> cluster.
    let second = RedisCluster::start();
    restore_url(&second.url(), &sharded, &[]).ok();
    assert_same("cluster -> cluster", &expected, &second.snapshot());
    let compared = run(&[
        "compare",
        sharded.to_str().unwrap(),
        "--target",
        &second.url(),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(compared["differences"], 0, "{compared}");

    // cluster -> single server.
    let other = RedisServer::start();
    restore(&other, &sharded, &[]).ok();
    assert_same("cluster -> single", &expected, &other.snapshot());
}

#[test]
fn issue_9_copy_between_clusters_and_rollback_in_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let from = RedisCluster::start();
    let single = RedisServer::start();
    load_source(&single);
    let plain = dir.path().join("single.tar.zst");
    export(&single, &plain, &[]).ok();
    restore_url(&from.url(), &plain, &["--no-backup"]).ok();
    let expected = from.snapshot();

    // The target already holds some of the keys, with other values.
    let to = RedisCluster::start();
    let mut c = to.nodes[to.owner(b"str:plain")].conn();
    let _: () = c.set("str:plain", "older").unwrap();
    let mut c = to.nodes[to.owner(b"{user:3}:profile")].conn();
    let _: () = c.hset("{user:3}:profile", "name", "someone else").unwrap();
    let mut c = to.nodes[to.owner(b"only:in:target")].conn();
    let _: () = c.set("only:in:target", "stays").unwrap();
    let before = to.snapshot();

    let report = run(&[
        "copy",
        "--source",
        &from.url(),
        "--target",
        &to.url(),
        "--mode",
        "overwrite",
        "--yes",
        "--json",
        "--backup-dir",
        backups.to_str().unwrap(),
    ])
    .ok()
    .json();
    let mut after = to.snapshot();
    assert_eq!(
        after.remove(b"only:in:target".as_slice()).map(|v| v.0),
        Some(KeyState::String(b"stays".to_vec()))
    );
    assert_same("copy cluster -> cluster", &expected, &after);

    // The pre-restore backup undoes the copy exactly.
    let backup = report["backup"]
        .as_str()
        .unwrap_or_else(|| panic!("no backup in {report}"))
        .to_string();
    run(&["rollback", &backup, "--yes"]).ok();
    assert_same("rollback in a cluster", &before, &to.snapshot());
}

#[test]
fn issue_9_a_cluster_has_only_database_0() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start();
    let path = dir.path().join("x.tar.zst");
    let url = format!("{}/3", cluster.url());
    export_url(&url, &path, &[]).fails(2, "has only database 0, not 3");
    assert!(!path.exists());
    run(&[
        "export",
        "--source",
        &cluster.url(),
        "--db",
        "2",
        "-o",
        path.to_str().unwrap(),
    ])
    .fails(2, "drop --db");

    // An archive of database 3 goes to database 0 unless told otherwise.
    let single = RedisServer::start();
    let _: () = single.conn_db(3).set("in:three", "v").unwrap();
    let three = dir.path().join("three.tar.zst");
    export(&single, &three, &["--db", "3"]).ok();
    restore_url(&cluster.url(), &three, &[]).ok();
    assert_eq!(cluster.dbsize(), 1);
    restore_url(&cluster.url(), &three, &["--db", "3"]).fails(2, "only database 0");
}
