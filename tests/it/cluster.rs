//! Redis Cluster (issue #9): export from and restore into a sharded
//! deployment, against real local clusters of three primaries.
//! One file, though long: every test shares the clusters' setup helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use redis::Commands;

type Snapshot = BTreeMap<Vec<u8>, (KeyState, Option<i64>)>;

/// The mixed keyspace of the other round-trip tests, plus hash-tagged keys
/// (several keys in one slot) and a collection big enough to be read and
/// written in chunks.
fn load_source(c: &mut redis::Connection) {
    load_mixed(c);
    dataset::load(c, 3_000, 20_000);
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

/// A single server filled by `load`, its snapshot, and its export.
fn exported_source(
    dir: &Path,
    load: impl FnOnce(&mut redis::Connection),
) -> (RedisServer, Snapshot, PathBuf) {
    let single = RedisServer::start();
    load(&mut single.conn());
    let snapshot = single.snapshot();
    let path = dir.join("single.tar.zst");
    export(&single, &path, &[]).ok();
    (single, snapshot, path)
}

fn assert_same(label: &str, expected: &Snapshot, actual: &Snapshot) {
    assert_close(label, expected, actual, 0);
}

/// Same keys and values; expiry times within `tolerance_ms`. Redis's own
/// MIGRATE carries a key's TTL, not its expiry time, so a key moved by a
/// resharding expires a few milliseconds later than before.
fn assert_close(label: &str, expected: &Snapshot, actual: &Snapshot, tolerance_ms: i64) {
    assert_eq!(expected.len(), actual.len(), "{label}: key counts differ");
    for (key, want) in expected {
        let got = actual
            .get(key)
            .unwrap_or_else(|| panic!("{label}: {:?} missing", String::from_utf8_lossy(key)));
        let close = match (want.1, got.1) {
            (Some(a), Some(b)) => (a - b).abs() <= tolerance_ms,
            (a, b) => a == b,
        };
        assert!(
            got.0 == want.0 && close,
            "{label}: {:?} differs: expected {:?}, found {:?}",
            String::from_utf8_lossy(key),
            want,
            got
        );
    }
}

#[test]
fn issue_9_round_trips_between_clusters_and_single_servers_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (_single, expected, plain) = exported_source(dir.path(), load_source);

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
    // A key the archive does not have, on whichever primary serves it, is found.
    let extra = "str:extra:in:target";
    let _: () = second.nodes[second.owner(extra.as_bytes())]
        .conn()
        .set(extra, "x")
        .unwrap();
    let differs = run(&[
        "compare",
        sharded.to_str().unwrap(),
        "--target",
        &second.url(),
    ]);
    assert_eq!(differs.code, 14, "{}", differs.stderr);
    assert!(
        differs.stdout_text().contains(extra),
        "{}",
        differs.stdout_text()
    );
    let _: () = second.nodes[second.owner(extra.as_bytes())]
        .conn()
        .del(extra)
        .unwrap();

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
    let (_single, _, plain) = exported_source(dir.path(), load_source);
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
fn issue_9_a_cluster_with_a_slot_nobody_serves_is_refused_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start();
    let owner = cluster.owner_of_slot(0);
    let _: () = redis::cmd("CLUSTER")
        .arg("DELSLOTS")
        .arg(0)
        .query(&mut cluster.nodes[owner].conn())
        .unwrap();
    let url = cluster.nodes[owner].url();
    let path = dir.path().join("x.tar.zst");
    export_url(&url, &path, &[]).fails(6, "serves only 16383 of 16384 slots");
    assert!(!path.exists());
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    restore_url(&url, &valid, &[]).fails(6, "redis-cli --cluster check");
    assert_eq!(cluster.dbsize(), 0);
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

fn setslot(node: &RedisServer, slot: i64, state: &str, id: &str) {
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(id)
        .query(&mut node.conn())
        .unwrap();
}

#[test]
fn issue_9_restore_follows_ask_while_a_slot_migrates_and_rollback_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_single, expected, archive) = exported_source(dir.path(), |c| {
        for i in 0..200 {
            let _: () = c.set(format!("{{mig}}:{i}"), format!("new {i}")).unwrap();
        }
        load_mixed(c);
    });

    // Slot of {mig} half moved from its primary A to B: keys 0..25 already
    // on B, 25..50 still on A, the rest on neither.
    let cluster = RedisCluster::start();
    let slot = cluster.slot(b"{mig}");
    let a = cluster.owner_of_slot(slot);
    let b = (a + 1) % 3;
    let mut on_a = cluster.nodes[a].conn();
    for i in 0..50 {
        let _: () = on_a
            .set(format!("{{mig}}:{i}"), format!("old {i}"))
            .unwrap();
    }
    // (A node importing a slot does not serve it to readers that have not
    // said ASKING: the snapshot is taken first; MIGRATE changes no value.)
    let before = cluster.snapshot();
    setslot(&cluster.nodes[b], slot, "IMPORTING", &cluster.node_id(a));
    setslot(&cluster.nodes[a], slot, "MIGRATING", &cluster.node_id(b));
    let moved: Vec<String> = (0..25).map(|i| format!("{{mig}}:{i}")).collect();
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.nodes[b].port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(&moved)
        .query(&mut on_a)
        .unwrap();
    assert_eq!(cluster.nodes[b].dbsize(0), 25);

    // An export now would read a slot that is on two nodes: refused.
    let out = dir.path().join("during.tar.zst");
    export_url(&cluster.url(), &out, &[]).fails(6, &format!("slot {slot} is being moved"));
    assert!(!out.exists());

    let backups = dir.path().join("backups");
    let report = restore_url(
        &cluster.url(),
        &archive,
        &[
            "--mode",
            "overwrite",
            "--json",
            "--backup-dir",
            backups.to_str().unwrap(),
        ],
    )
    .ok()
    .json();
    assert!(
        report["redirects"].as_u64().unwrap_or(0) >= 175,
        "keys not on A were sent to B after ASK: {report}"
    );
    assert_eq!(
        report["plan"]["by_type"]["string"]["overwrite"], 50,
        "{report}"
    );

    // Finish the migration: every key of the slot is on B, with its new value.
    cluster.move_slot(slot, b);
    cluster.wait_stable();
    let keys_on_b: Vec<Vec<u8>> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(1000)
        .query(&mut cluster.nodes[b].conn())
        .unwrap();
    assert_eq!(keys_on_b.len(), 200);
    assert_same("restore during a migration", &expected, &cluster.snapshot());

    // The slot has moved since: rollback finds it at B and restores the
    // old values there.
    let backup = report["backup"].as_str().unwrap().to_string();
    run(&["rollback", &backup, "--yes"]).ok();
    assert_same("rollback after the migration", &before, &cluster.snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_a_stale_slot_map_is_corrected_by_moved() {
    use redis_archive::connection::{Endpoint, Side, Timeouts};
    let cluster = RedisCluster::start();
    let endpoint = Endpoint::resolve(
        &cluster.url(),
        None,
        None,
        Side::Target,
        Timeouts::default(),
    )
    .unwrap();
    let mut conn = endpoint.connect().await.unwrap();
    assert!(conn.is_cluster());

    // The slot moves after the map was read.
    let slot = cluster.slot(b"{stale}");
    let to = (cluster.owner_of_slot(slot) + 1) % 3;
    cluster.move_slot(slot, to);
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("{{stale}}:{i}")).arg(i);
        pipe.cmd("SET").arg(format!("other:{i}")).arg(i);
    }
    let replies = conn.pipeline(&mut pipe, "writing").await.unwrap();
    assert!(
        replies.iter().all(|r| *r == redis::Value::Okay),
        "{replies:?}"
    );
    assert!(conn.redirects() >= 1);
    let v: i64 = cluster.nodes[to].conn().get("{stale}:7").unwrap();
    assert_eq!(v, 7);
    assert_eq!(cluster.dbsize(), 20);

    // With the map read again, nothing more is redirected.
    let seen = conn.redirects();
    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg("{stale}:3");
    let replies = conn.pipeline(&mut pipe, "reading").await.unwrap();
    assert_eq!(replies, vec![redis::Value::BulkString(b"3".to_vec())]);
    assert_eq!(conn.redirects(), seen);
}

/// Moves slots between the primaries, one after another, until stopped:
/// a resharding that runs under a restore or an export. Returns the
/// number of slots moved.
fn reshard_meanwhile(
    cluster: &RedisCluster,
    keys: &[String],
    stop: &std::sync::atomic::AtomicBool,
    after: std::time::Duration,
) -> usize {
    use std::sync::atomic::Ordering;
    std::thread::sleep(after);
    let mut moves = 0;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // A spread of slots that hold keys, each to the next primary.
        let key = &keys[(i * 7919) % keys.len()];
        let slot = cluster.slot(key.as_bytes());
        let to = (cluster.owner_of_slot(slot) + 1) % cluster.nodes.len();
        cluster.move_slot(slot, to);
        moves += 1;
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    moves
}

#[test]
fn issue_9_restore_and_export_while_the_cluster_reshards() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (_single, expected, archive) = exported_source(dir.path(), |c| {
        load_mixed(c);
        dataset::load(c, 10_000, 20_000);
    });
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();

    let cluster = RedisCluster::start();
    let stop = AtomicBool::new(false);
    let (report, moves) = std::thread::scope(|s| {
        let mover = s.spawn(|| reshard_meanwhile(&cluster, &keys, &stop, Duration::ZERO));
        let report = restore_url(&cluster.url(), &archive, &["--json"]);
        stop.store(true, Ordering::Relaxed);
        (report, mover.join().unwrap())
    });
    let report = report.ok().json();
    assert!(moves > 0);
    eprintln!(
        "restore: {moves} slots moved meanwhile, {} redirections followed",
        report["redirects"]
    );
    cluster.wait_stable();
    assert_close(
        "restore while resharding",
        &expected,
        &cluster.snapshot(),
        1000,
    );

    // An export either reads a consistent cluster or writes nothing.
    let stop = AtomicBool::new(false);
    let mut outcomes = Vec::new();
    // The resharding starts before the export, or while it reads.
    for (round, after) in [0, 30, 80].into_iter().enumerate() {
        let out = dir.path().join(format!("during-{round}.tar.zst"));
        let after = Duration::from_millis(after);
        let run = std::thread::scope(|s| {
            let mover = s.spawn(|| reshard_meanwhile(&cluster, &keys, &stop, after));
            let run = export_url(&cluster.url(), &out, &[]);
            stop.store(true, Ordering::Relaxed);
            mover.join().unwrap();
            run
        });
        stop.store(false, Ordering::Relaxed);
        if run.code == 0 {
            let copy = RedisServer::start();
            restore(&copy, &out, &[]).ok();
            assert_close("export while resharding", &expected, &copy.snapshot(), 1000);
            outcomes.push("exact".to_string());
        } else {
            assert_eq!(run.code, 6, "{}", run.stderr);
            assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
            assert!(!out.exists());
            outcomes.push(run.stderr.trim().to_string());
        }
    }
    eprintln!("exports while resharding: {outcomes:?}");
}

#[test]
fn issue_9_one_users_records_from_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profiles");
    let relay = profiles.join("relay.toml");
    let relay = relay.to_str().unwrap();
    let single = RedisServer::start();
    single.load_commands(&profiles.join("relay-data.redis"));
    let cluster = RedisCluster::start();
    cluster.load_commands(&profiles.join("relay-data.redis"));
    assert_eq!(cluster.dbsize(), single.dbsize(0));

    // The same user's archive from either holds the same keys and values.
    let from_single = dir.path().join("single-42.tar.zst");
    export(&single, &from_single, &["42", "--profile", relay]).ok();
    let from_cluster = dir.path().join("cluster-42.tar.zst");
    let report = export_url(
        &cluster.url(),
        &from_cluster,
        &["42", "--profile", relay, "--json"],
    )
    .ok()
    .json();
    assert_eq!(report["keys"], 13, "{report}");
    let a = RedisServer::start();
    restore(&a, &from_single, &["--profile", relay]).ok();
    let b = RedisServer::start();
    restore(&b, &from_cluster, &["--profile", relay]).ok();
    // (The loaders set TTLs relative to when they ran, a moment apart.)
    assert_close(
        "user 42 from a cluster",
        &a.snapshot(),
        &b.snapshot(),
        10_000,
    );

    // Deleted from the cluster and put back: the cluster is as it was, the
    // shared index's other members and the map's other fields untouched.
    let before = cluster.snapshot();
    for key in a.snapshot().keys() {
        let node = &cluster.nodes[cluster.owner(key)];
        if key.as_slice() == b"users:by_created" {
            let _: () = node.conn().zrem(key, "42").unwrap();
        } else if key.as_slice() == b"apikey_hash_map" {
            let _: () = node.conn().hdel(key, &["9f2c1a", "4b7d0e"]).unwrap();
        } else {
            let _: () = node.conn().del(key).unwrap();
        }
    }
    assert!(cluster.dbsize() < before.len() as u64);
    restore_url(&cluster.url(), &from_cluster, &["--profile", relay]).ok();
    assert_same(
        "user 42 restored into the cluster",
        &before,
        &cluster.snapshot(),
    );
}

#[test]
fn issue_9_a_failover_during_an_export_is_reported_and_the_cluster_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let (_single, expected, plain) = exported_source(dir.path(), |c| {
        load_mixed(c);
        dataset::load(c, 20_000, 0);
    });

    let cluster = RedisCluster::start_with(3, 1);
    restore_url(&cluster.url(), &plain, &["--no-backup"]).ok();
    let replica = cluster
        .nodes
        .iter()
        .find(|n| n.role() == "slave")
        .expect("a replica");

    // Every write has reached the replica...
    let field = |node: &RedisServer, name: &str| -> String {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut node.conn())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let port: u16 = field(replica, "master_port").parse().unwrap();
    let primary = cluster.nodes.iter().find(|n| n.port == port).unwrap();
    wait_for("the replica to have every write", || {
        field(replica, "slave_repl_offset") == field(primary, "master_repl_offset")
    });

    // ...and it takes over from its primary while the export reads. (A
    // TAKEOVER needs no handshake, which a loaded machine can time out.)
    let out = dir.path().join("during.tar.zst");
    let run = std::thread::scope(|s| {
        let failover = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            let _: () = redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .arg("TAKEOVER")
                .query(&mut replica.conn())
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while replica.role() != "master" {
                let log = replica.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                assert!(
                    std::time::Instant::now() < deadline,
                    "no failover:\n{}",
                    tail.join("\n")
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let run = export_url(&cluster.url(), &out, &[]);
        failover.join().unwrap();
        run
    });
    if run.code == 0 {
        eprintln!("the export finished before the failover began");
        let copy = RedisServer::start();
        restore(&copy, &out, &[]).ok();
        assert_same("export before a failover", &expected, &copy.snapshot());
    } else {
        eprintln!("export during a failover: {}", run.stderr.trim());
        assert_eq!(run.code, 6, "{}", run.stderr);
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
        assert!(!out.exists());
    }

    // Afterwards the same URL reaches the new primary: export and restore
    // work, and what they read and write is exact.
    cluster.wait_stable();
    let after = dir.path().join("after.tar.zst");
    export_url(&cluster.url(), &after, &[]).ok();
    let copy = RedisServer::start();
    restore(&copy, &after, &[]).ok();
    assert_same("export after a failover", &expected, &copy.snapshot());
    let _: () = redis::cmd("FLUSHALL").query(&mut replica.conn()).unwrap();
    restore_url(
        &cluster.url(),
        &plain,
        &["--mode", "overwrite", "--no-backup"],
    )
    .ok();
    assert_same("restore after a failover", &expected, &cluster.snapshot());
}

#[test]
fn issue_9_a_read_only_user_exports_a_cluster_with_cluster_nodes_added() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start();
    for node in &cluster.nodes {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("reader")
            .arg("on")
            .arg(">pw")
            .arg(&["~*", "+@read", "+info", "+time", "+scan"])
            .query(&mut node.conn())
            .unwrap();
    }
    for i in 0..300 {
        let key = format!("k:{i}");
        let _: () = cluster.nodes[cluster.owner(key.as_bytes())]
            .conn()
            .set(&key, i)
            .unwrap();
    }
    let url = format!("redis://reader:pw@127.0.0.1:{}", cluster.nodes[0].port);
    let path = dir.path().join("x.tar.zst");
    // Without CLUSTER NODES the cluster cannot be mapped: said, nothing written.
    export_url(&url, &path, &[]).fails(6, "lacks a permission this command needs");
    assert!(!path.exists());
    for node in &cluster.nodes {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("reader")
            .arg("+cluster|nodes")
            .query(&mut node.conn())
            .unwrap();
    }
    let report = export_url(&url, &path, &["--json"]).ok().json();
    assert_eq!(report["keys"], 300, "{report}");
}
