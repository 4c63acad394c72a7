//! Schema upgrades (issue #17): records the steps cannot apply to are
//! counted and listed, a skip-mode plan counts only what it writes, and
//! `archive upgrade` upgrades the live database in place: exactly the
//! legacy records, never a current one, no lost update, and a rollback
//! that puts back the exact prior state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Commands;
use redis_archive::connection::{Endpoint, Side, Timeouts};
use redis_archive::profile::Profile;
use redis_archive::progress::Silent;
use redis_archive::upgrade::{UpgradeOptions, perform};

use crate::support::{RedisServer, command, export, output, restore, run};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/profiles")
        .join(name)
}

fn relay() -> String {
    fixture("relay.toml").display().to_string()
}

/// The relay service's schema-1 data (users 42 and 7), plus a user half
/// migrated (nested subscription, a stripe_id left over), one fully
/// current with an expiry, and two broken ones: a string that is not JSON
/// and a JSON array.
fn live_mix() -> RedisServer {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-legacy.redis"));
    let mut c = server.conn();
    let _: () = c
        .hset_multiple(
            "user:10",
            &[
                ("id", "10"),
                ("username", "bo"),
                ("email", "bo@example.com"),
                ("role", "admin"),
                ("subscription", r#"{"status":"active"}"#),
                ("stripe_id", "cus_10"),
            ],
        )
        .unwrap();
    let _: () = c
        .hset_multiple(
            "user:11",
            &[
                ("id", "11"),
                ("username", "cy"),
                ("email", "cy@example.com"),
                ("role", "user"),
                ("subscription", r#"{"status":"trialing"}"#),
            ],
        )
        .unwrap();
    let _: () = c.pexpire("user:11", 3_600_000).unwrap();
    let _: () = c.set("user:8", "not json").unwrap();
    let _: () = c.set("user:9", "[1,2]").unwrap();
    server
}

const LEGACY: &[&str] = &["user:42", "user:7", "user:10", "apikey:k-ada-1"];

fn upgrade(server: &RedisServer, backups: &Path, extra: &[&str]) -> crate::support::Run {
    upgrade_at(&server.url(), backups, extra)
}

fn upgrade_at(url: &str, backups: &Path, extra: &[&str]) -> crate::support::Run {
    let profile = relay();
    let mut args = vec![
        "upgrade",
        "--profile",
        &profile,
        "--target",
        url,
        "--backup-dir",
        backups.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn group<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {report}"))
}

/// Every key notified while `during` runs (keyspace notifications for
/// hash, string and generic commands).
fn written_during(server: &RedisServer, during: impl FnOnce()) -> BTreeSet<String> {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Kgh$")
        .query(&mut server.conn())
        .unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let mut conn = server.conn();
    let collected = seen.clone();
    let listener = std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe("__keyspace@0__:*").unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        ready_tx.send(()).unwrap();
        loop {
            match pubsub.get_message() {
                Ok(msg) => {
                    let channel = msg.get_channel_name().to_string();
                    let key = channel.trim_start_matches("__keyspace@0__:").to_string();
                    collected.lock().unwrap().insert(key);
                }
                Err(_) => {
                    if stop_rx.try_recv().is_ok() {
                        break;
                    }
                }
            }
        }
    });
    ready_rx.recv().unwrap();
    during();
    // Notifications of the last writes are on their way.
    std::thread::sleep(Duration::from_millis(300));
    stop_tx.send(()).unwrap();
    listener.join().unwrap();
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

#[test]
fn stats_count_a_live_mix_exactly_and_write_nothing() {
    let server = live_mix();
    let before = server.snapshot();
    let backups = tempfile::tempdir().unwrap();
    let mut report = serde_json::Value::Null;
    let written = written_during(&server, || {
        report = upgrade(&server, backups.path(), &["--stats", "--json"])
            .ok()
            .json();
    });
    assert!(written.is_empty(), "--stats wrote {written:?}");
    assert_eq!(server.snapshot(), before);
    // user:42, 7, 10 legacy; user:11 current; user:8, 9 broken; the API key
    // legacy; settings and usage current (no step for them).
    let user = group(&report, "user");
    assert_eq!(
        (
            &user["records"],
            &user["changed"],
            &user["current"],
            &user["broken"]
        ),
        (&6.into(), &3.into(), &1.into(), &2.into()),
        "{report}"
    );
    assert_eq!(group(&report, "apikeys")["changed"], 1, "{report}");
    assert_eq!(
        (
            &report["records"],
            &report["legacy"],
            &report["current"],
            &report["broken"]
        ),
        (&9.into(), &4.into(), &3.into(), &2.into()),
        "{report}"
    );
    let legacy: BTreeSet<&str> = report["legacy_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(legacy, LEGACY.iter().copied().collect());
    let broken: Vec<&str> = report["broken_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        broken.iter().copied().collect::<BTreeSet<_>>(),
        ["user:8", "user:9"].into()
    );
    let step = |name: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"].as_str().unwrap().starts_with(name))
            .unwrap()["records"]
            .clone()
    };
    // user:42 and user:10 have a stripe_id; user:7 has no role.
    assert_eq!(step("rename stripe_id"), 2);
    assert_eq!(step("nest"), 3);
    assert_eq!(step("default role"), 2);
    assert_eq!(step("drop legacyQuota"), 1);

    // One user: through the profile's selection.
    let one = upgrade(&server, backups.path(), &["42", "--stats", "--json"])
        .ok()
        .json();
    assert_eq!(
        one["legacy_keys"],
        serde_json::json!(["user:42", "apikey:k-ada-1"])
    );
    assert_eq!(
        (&one["broken"], &one["current"]),
        (&0.into(), &2.into()),
        "{one}"
    );

    // The dry run says the same, and that the upgrade would stop (exit 7).
    let dry = upgrade(&server, backups.path(), &["--dry-run"]).fails(7, "cannot be upgraded");
    let text = dry.stdout_text();
    assert!(
        text.contains("user:8: is a string that is not JSON"),
        "{text}"
    );
    assert_eq!(server.snapshot(), before);
}

#[test]
fn upgrade_writes_exactly_the_legacy_records_and_rollback_puts_them_back() {
    let server = live_mix();
    let before = server.snapshot();
    let backups = tempfile::tempdir().unwrap();

    // Without --skip-errors: stops at a broken record, naming it, before
    // writing anything.
    upgrade(&server, backups.path(), &["--yes"]).fails(7, "user record user:");
    assert_eq!(server.snapshot(), before);
    // Without --yes and no terminal: confirmation needed.
    upgrade(&server, backups.path(), &["--skip-errors"]).fails(11, "--yes");

    let mut report = serde_json::Value::Null;
    let written = written_during(&server, || {
        let done = upgrade(
            &server,
            backups.path(),
            &["--yes", "--skip-errors", "--json"],
        );
        assert_eq!(
            done.code, 10,
            "broken records make it partial: {}",
            done.stderr
        );
        report = done.json();
    });
    assert_eq!(
        written,
        LEGACY.iter().map(|k| k.to_string()).collect(),
        "only the legacy records are written"
    );
    assert_eq!(report["written"], 4, "{report}");
    assert_eq!(report["broken"], 2, "{report}");
    let after = server.snapshot();
    for current in [
        "user:11",
        "user:8",
        "user:9",
        "user:42:settings",
        "usage:42:20261121",
    ] {
        assert_eq!(
            after[current.as_bytes()],
            before[current.as_bytes()],
            "{current} untouched, expiry included"
        );
    }
    let user: std::collections::HashMap<String, String> = server.conn().hgetall("user:10").unwrap();
    let sub: serde_json::Value = serde_json::from_str(&user["subscription"]).unwrap();
    assert_eq!(
        sub,
        serde_json::json!({"status": "active", "customerId": "cus_10"}),
        "a half-migrated record keeps what it had and gets the rest"
    );
    assert_eq!(user["role"], "admin");
    assert!(!user.contains_key("stripe_id"));

    // Again: everything that can be upgraded is current, nothing written.
    let again = upgrade(
        &server,
        backups.path(),
        &["--yes", "--skip-errors", "--json"],
    );
    let again = again.json();
    assert_eq!(
        (&again["legacy"], &again["written"]),
        (&0.into(), &0.into())
    );
    assert_eq!(server.snapshot(), after);

    // Rollback puts back the exact prior state.
    let backup = report["backup"].as_str().unwrap().to_string();
    assert_eq!(
        report["rollback"].as_str().unwrap(),
        format!("archive rollback {backup}")
    );
    run(&["rollback", &backup, "--yes"]).ok();
    assert_eq!(server.snapshot(), before);
}

/// Issue #17: broken records are problems for validate and restore, and a
/// skip-mode plan counts as upgraded only the records it writes.
#[test]
fn broken_records_are_listed_and_a_skip_plan_upgrades_nothing_it_skips() {
    let server = live_mix();
    let dir = tempfile::tempdir().unwrap();
    let v1_path = crate::support::relay_schema_1_profile(dir.path());
    let file = dir.path().join("users.tar.zst");
    export(
        &server,
        &file,
        &["--profile", v1_path.to_str().unwrap(), "--types", "user"],
    )
    .ok();

    let checked = run(&[
        "validate",
        file.to_str().unwrap(),
        "--profile",
        &relay(),
        "--json",
    ]);
    assert_eq!(checked.code, 7, "{}", checked.stderr);
    let checked = checked.json();
    let up = &checked["profile"]["upgrade"];
    assert_eq!(
        (
            &up["records"],
            &up["changed"],
            &up["current"],
            &up["broken"]
        ),
        (&7.into(), &3.into(), &2.into(), &2.into()),
        "user:42:settings is current: {checked}"
    );
    let problems = checked["problems"].to_string();
    assert!(
        problems.contains("user:8") && problems.contains("JSON array"),
        "{problems}"
    );

    // Restore validates first: broken records stop it, named, unless
    // --no-validate, whose plan and report count and list them.
    let target = RedisServer::start();
    restore(&target, &file, &["--profile", &relay(), "--dry-run"])
        .fails(7, "user record user:8 cannot be upgraded");
    let plan = restore(
        &target,
        &file,
        &["--profile", &relay(), "--dry-run", "--no-validate"],
    )
    .ok();
    let text = plan.stdout_text();
    assert!(
        text.contains("3 records to upgrade, 2 already current, 2 broken")
            && text.contains("user:9: holds a JSON array"),
        "{text}"
    );
    restore(&target, &file, &["--profile", &relay(), "--no-validate"]).ok();
    let skip = restore(
        &target,
        &file,
        &[
            "--profile",
            &relay(),
            "--dry-run",
            "--no-validate",
            "--mode",
            "skip",
            "--json",
        ],
    )
    .ok()
    .json();
    let up = &skip["profile"]["upgrade"];
    assert_eq!(
        (&up["records"], &up["changed"], &up["broken"]),
        (&0.into(), &0.into(), &0.into()),
        "every key is skipped, so none is upgraded: {skip}"
    );
}

/// `server` loaded with the relay's schema-1 data, and the options of an
/// upgrade of it with the relay profile, through the library.
fn legacy_relay(server: &RedisServer) -> UpgradeOptions {
    server.load_commands(&fixture("relay-legacy.redis"));
    let target =
        Endpoint::resolve(&server.url(), None, None, Side::Target, Timeouts::default()).unwrap();
    let profile = Profile::locate(Some(&fixture("relay.toml")))
        .unwrap()
        .unwrap();
    UpgradeOptions::new(target, Arc::new(profile))
}

/// The application's own connection to `url`.
fn application(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// A server with the relay's schema-1 data, and the options of an upgrade
/// of it with a pre-upgrade backup.
fn with_backups() -> (RedisServer, tempfile::TempDir, UpgradeOptions) {
    let server = RedisServer::start();
    let backups = tempfile::tempdir().unwrap();
    let mut options = legacy_relay(&server);
    options.backup_dir = Some(backups.path().to_path_buf());
    (server, backups, options)
}

/// A record the application changes between the upgrade's read and its
/// write is not overwritten with an upgrade of what was read: the write is
/// refused, the record read again and upgraded from its new value. The
/// application changes a field the upgrade rewrites (subscriptionStatus
/// becomes subscription.status), so without the compare-and-set its value
/// would be lost. Driven through the library, whose hook runs between a
/// batch's read and write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_made_during_the_upgrade_is_kept() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let (server, _backups, mut options) = with_backups();
    let before = server.snapshot();
    let url = server.url();
    let once = Arc::new(AtomicBool::new(false));
    let seen = once.clone();
    options.between_read_and_write = Some(Arc::new(move |keys: &[Vec<u8>]| {
        assert!(keys.iter().any(|k| k == b"user:42"), "{keys:?}");
        if !seen.swap(true, Ordering::SeqCst) {
            let mut c = application(&url);
            let _: () = c.hset("user:42", "subscriptionStatus", "canceled").unwrap();
        }
    }));

    let report = perform(&options, &Silent).await.unwrap();
    assert!(once.load(Ordering::SeqCst), "the hook ran");
    assert_eq!(report.retried, 1, "{report:?}");
    assert_eq!((report.written, report.failed), (3, 0), "{report:?}");
    let upgraded = |server: &RedisServer| {
        let user: std::collections::HashMap<String, String> =
            server.conn().hgetall("user:42").unwrap();
        let sub: serde_json::Value = serde_json::from_str(&user["subscription"]).unwrap();
        assert_eq!(
            sub["status"], "canceled",
            "the concurrent write is kept: {user:?}"
        );
        assert!(
            !user.values().any(|v| v.contains("active")),
            "the value read before the write is gone: {user:?}"
        );
        assert!(!user.contains_key("subscriptionStatus") && !user.contains_key("stripe_id"));
    };
    upgraded(&server);

    // Rollback never reverts the application's write: user:42 changed
    // after it was backed up, so it stays as the application and the
    // retry left it; the other records are put back.
    run(&["rollback", report.backup.as_deref().unwrap(), "--yes"]).ok();
    upgraded(&server);
    let after = server.snapshot();
    for key in ["user:7", "apikey:k-ada-1"] {
        assert_eq!(after[key.as_bytes()], before[key.as_bytes()], "{key}");
    }
}

/// In a Redis Cluster each record is read and written on its own slot's
/// primary, and the keys are listed on every primary.
#[test]
fn upgrade_in_a_cluster() {
    let cluster = crate::support::RedisCluster::start();
    cluster.load_commands(&fixture("relay-legacy.redis"));
    let before = cluster.snapshot();
    let backups = tempfile::tempdir().unwrap();
    let url = cluster.url();
    let done = upgrade_at(&url, backups.path(), &["--yes", "--json"])
        .ok()
        .json();
    assert_eq!(
        (&done["legacy"], &done["written"]),
        (&3.into(), &3.into()),
        "{done}"
    );
    let again = upgrade_at(&url, backups.path(), &["--stats", "--json"])
        .ok()
        .json();
    assert_eq!(
        (&again["legacy"], &again["current"]),
        (&0.into(), &5.into()),
        "{again}"
    );
    run(&["rollback", done["backup"].as_str().unwrap(), "--yes"]).ok();
    assert_eq!(cluster.snapshot(), before);
}

/// A record that changes before every write is given up after the retries
/// and reported as failed; the others are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_changing_is_reported_as_failed() {
    use std::sync::atomic::{AtomicU64, Ordering};

    let server = RedisServer::start();
    let mut options = legacy_relay(&server);
    options.retries = 2;
    let url = server.url();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    options.between_read_and_write = Some(Arc::new(move |_: &[Vec<u8>]| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let mut c = application(&url);
        let _: () = c.hset("user:7", "seen", n).unwrap();
    }));

    let report = perform(&options, &Silent).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the first try and 2 retries"
    );
    assert_eq!((report.failed, report.retried), (1, 2), "{report:?}");
    assert_eq!(report.failed_keys, ["user:7"]);
    let user = report.groups.iter().find(|g| g.group == "user").unwrap();
    assert_eq!((user.failed, user.written), (1, 1), "{report:?}");
    assert_eq!(report.written, 2, "user:42 and its API key: {report:?}");
    assert!(report.is_partial());
    let user: std::collections::HashMap<String, String> = server.conn().hgetall("user:7").unwrap();
    assert_eq!(
        user["seen"], "2",
        "the last write of the application is there"
    );
    assert!(
        user.contains_key("subscriptionStatus"),
        "not upgraded: {user:?}"
    );
}

/// Issue #17: the pre-upgrade backup is complete before the first write.
/// An upgrade killed after its first batch of writes (or just after its
/// backup) leaves a finished backup that `rollback` uses to put back the
/// exact prior state.
#[test]
fn an_upgrade_killed_after_its_first_writes_is_undone_exactly_by_rollback() {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-legacy.redis"));
    let mut pipe = redis::pipe();
    for i in 100..140 {
        pipe.cmd("HSET")
            .arg(format!("user:{i}"))
            .arg(&[
                "id",
                &i.to_string(),
                "username",
                "u",
                "subscriptionStatus",
                "active",
            ])
            .ignore();
    }
    pipe.query::<()>(&mut server.conn()).unwrap();
    let before = server.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let profile = relay();
    let url = server.url();
    for (i, point) in ["upgrade.backup-done", "upgrade.batch:1", "upgrade.batch:3"]
        .into_iter()
        .enumerate()
    {
        let backups = dir.path().join(format!("b{i}"));
        let args = [
            "upgrade",
            "--profile",
            &profile,
            "--target",
            &url,
            "--backup-dir",
            backups.to_str().unwrap(),
            "--batch",
            "5",
            "--yes",
        ];
        let out = output(
            command(&args)
                .env("ARCHIVE_FAILPOINT", point)
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, -1, "{point}: killed\n{}", out.stderr);
        let written = server
            .snapshot()
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .count();
        let expected = match point {
            "upgrade.backup-done" => 0,
            "upgrade.batch:1" => 5,
            _ => 15,
        };
        assert_eq!(
            written, expected,
            "{point}: records written before the kill"
        );
        let finished: Vec<PathBuf> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
            .collect();
        assert_eq!(
            finished.len(),
            1,
            "{point}: one finished backup: {finished:?}"
        );
        run(&[
            "rollback",
            finished[0].to_str().unwrap(),
            "--target",
            &url,
            "--yes",
        ])
        .ok();
        assert_eq!(server.snapshot(), before, "{point}: the exact prior state");
    }
}

/// Issue #17: a record the server refuses to read (here DUMP, for an ACL
/// user without it) stops the upgrade with the key and the missing right
/// named, before anything is written; it is never passed over uncounted.
#[test]
fn a_user_not_allowed_dump_is_told_so_and_nothing_is_written() {
    let server = live_mix();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "nodump", "on", ">pw", "~*", "+@all", "-dump"])
        .query(&mut server.conn())
        .unwrap();
    let before = server.snapshot();
    let backups = tempfile::tempdir().unwrap();
    let url = format!("redis://nodump:pw@127.0.0.1:{}", server.port);
    for extra in [&["--stats"][..], &["--yes", "--skip-errors"][..]] {
        let out = upgrade_at(&url, backups.path(), extra);
        let code = out.code;
        assert_ne!(code, 0, "{extra:?}");
        out.fails(code, "DUMP");
    }
    assert_eq!(server.snapshot(), before);
}

/// A legacy record the application turns into one the steps cannot apply
/// to while it is upgraded is not written, and is counted as failed for
/// its group (with `--skip-errors`), not passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_broken_during_the_upgrade_is_counted_as_failed() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = RedisServer::start();
    let mut options = legacy_relay(&server);
    options.skip_errors = true;
    let url = server.url();
    let once = Arc::new(AtomicBool::new(false));
    options.between_read_and_write = Some(Arc::new(move |_: &[Vec<u8>]| {
        if !once.swap(true, Ordering::SeqCst) {
            let mut c = application(&url);
            let _: () = c.del("user:7").unwrap();
            let _: () = c.set("user:7", "not json").unwrap();
        }
    }));

    let report = perform(&options, &Silent).await.unwrap();
    assert_eq!((report.failed, report.retried), (1, 1), "{report:?}");
    assert_eq!(report.failed_keys, ["user:7"]);
    let user = report.groups.iter().find(|g| g.group == "user").unwrap();
    assert_eq!((user.failed, user.written), (1, 1), "{report:?}");
    assert!(report.is_partial());
    let kept: String = server.conn().get("user:7").unwrap();
    assert_eq!(
        kept, "not json",
        "the application's value is not written over"
    );
}

/// Issue #17: the journal records the fingerprint each write left, taken
/// by the write itself. An application write right after the upgrade's is
/// therefore seen by rollback as a change made since, and
/// `rollback --skip-changed` keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_right_after_the_upgrade_is_not_taken_for_the_upgrades() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let (server, _backups, mut options) = with_backups();
    let url = server.url();
    let once = Arc::new(AtomicBool::new(false));
    options.after_write = Some(Arc::new(move |keys: &[Vec<u8>]| {
        if keys.iter().any(|k| k == b"user:7") && !once.swap(true, Ordering::SeqCst) {
            let mut c = application(&url);
            let _: () = c.hset("user:7", "email", "eve@new.example").unwrap();
        }
    }));
    let report = perform(&options, &Silent).await.unwrap();
    assert_eq!(report.written, 3, "{report:?}");

    let backup = report.backup.as_deref().unwrap();
    let out = run(&["rollback", backup, "--yes", "--skip-changed"]).ok();
    assert!(
        out.stdout_text().contains("user:7"),
        "reported: {}",
        out.stdout_text()
    );
    let email: String = server.conn().hget("user:7", "email").unwrap();
    assert_eq!(email, "eve@new.example", "the application's write is kept");
    let user42: std::collections::HashMap<String, String> =
        server.conn().hgetall("user:42").unwrap();
    assert_eq!(user42["stripe_id"], "cus_42", "the others are rolled back");
}
