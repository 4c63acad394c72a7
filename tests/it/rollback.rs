//! Pre-restore backups and rollback: every restore can be undone exactly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use redis::Commands;

/// A target that already holds other versions of some keys, with TTLs, and
/// keys the archive does not touch.
fn prepare_target(c: &mut redis::Connection) {
    redis::pipe()
        .cmd("SET")
        .arg("str:plain")
        .arg("older value")
        .arg("PX")
        .arg(900_000)
        .cmd("HSET")
        .arg("hash:1")
        .arg("name")
        .arg("Old")
        .arg("only-here")
        .arg("x")
        .cmd("ZADD")
        .arg("zset:1")
        .arg(7)
        .arg("tenth")
        .arg(1)
        .arg("local")
        .cmd("RPUSH")
        .arg("list:1")
        .arg("z")
        .cmd("SADD")
        .arg("set:1")
        .arg("q")
        .cmd("PEXPIRE")
        .arg("set:1")
        .arg(800_000)
        .cmd("SET")
        .arg("untouched:1")
        .arg("keep me")
        .cmd("HSET")
        .arg("untouched:2")
        .arg("f")
        .arg("v")
        .query::<()>(c)
        .unwrap();
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "zst"));
    files.sort();
    files
}

/// Export the whole target as it is now: the state rollback must return to.
fn snapshot(server: &RedisServer, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    export(server, &file, &[]).ok();
    file
}

fn assert_identical(snapshot: &Path, server: &RedisServer) {
    let url = server.url();
    let out = run(&[
        "compare",
        snapshot.to_str().unwrap(),
        "--target",
        &url,
        "--json",
    ]);
    assert_eq!(
        out.code,
        0,
        "target differs from its state before the restore:\n{}",
        out.stdout_text()
    );
}

fn rollback_run(backup: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["rollback", backup.to_str().unwrap(), "--yes"];
    args.extend_from_slice(extra);
    run(&args)
}

/// `touched`: target keys the mode changes (merge skips the existing string).
fn overwrite_or_merge_then_rollback(mode: &str, touched: u64) {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    prepare_target(&mut dst.conn());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let before = snapshot(&dst, dir.path(), "before.tar.zst");
    let backup_dir = dir.path().join("backups");
    let bd = backup_dir.to_str().unwrap();

    let report = restore(
        &dst,
        &archive,
        &["--mode", mode, "--backup-dir", bd, "--json"],
    )
    .ok()
    .json();
    let files = backups(&backup_dir);
    assert_eq!(files.len(), 1, "one pre-restore backup: {files:?}");
    let backup = &files[0];
    assert_eq!(report["backup"], backup.to_str().unwrap());
    assert_eq!(
        report["rollback"],
        format!("archive rollback {}", backup.display())
    );
    let text = run(&["inspect", "--json", backup.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(text["kind"], "pre-restore");
    assert_eq!(text["restore"]["archive"], archive.to_str().unwrap());
    assert_eq!(text["restore"]["mode"], mode);
    assert_eq!(text["source"]["port"], dst.port);
    // The journal's fingerprint of a key the restore replaced is the one a
    // server script gives (`redis.sha1hex` of its DUMP), so journals of
    // either making compare alike.
    let journal = std::fs::read_to_string(format!("{}.journal", backup.display())).unwrap();
    let journaled = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["after"].as_array().cloned())
        .flatten()
        .find(|e| e[0] == "hash:1")
        .expect("hash:1 journaled");
    let by_server: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(redis.call('DUMP', KEYS[1]))")
        .arg(1)
        .arg("hash:1")
        .query(&mut dst.conn())
        .unwrap();
    assert_eq!(journaled[1], by_server.as_str(), "{journal}");
    // The restore changed the target.
    let url = dst.url();
    assert_eq!(
        run(&["compare", before.to_str().unwrap(), "--target", &url]).code,
        14
    );

    let dry = rollback_run(backup, &["--dry-run", "--json"]).ok().json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        run(&["compare", before.to_str().unwrap(), "--target", &url]).code,
        14,
        "a dry run writes nothing"
    );

    let done = rollback_run(backup, &["--json"]).ok().json();
    assert_eq!(done["target"], format!("127.0.0.1:{}/0", dst.port));
    assert_eq!(done["changed"], 0, "{done}");
    assert_eq!(done["restored"], touched, "{done}");
    let created = report["plan"]["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|a| a["create"].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(
        done["deleted"], created,
        "every key the restore created: {done}"
    );
    assert_identical(&before, &dst);
}

#[test]
fn overwrite_then_rollback_is_exact() {
    overwrite_or_merge_then_rollback("overwrite", 5);
}

#[test]
fn merge_then_rollback_is_exact() {
    overwrite_or_merge_then_rollback("merge", 4);
}

#[test]
fn backup_is_private_and_no_backup_says_so() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let backup_dir = dir.path().join("nested/backups");
    let text = restore(
        &dst,
        &archive,
        &["--backup-dir", backup_dir.to_str().unwrap()],
    )
    .ok()
    .stdout_text();
    let files = backups(&backup_dir);
    assert!(
        text.contains(&format!("pre-restore backup: {}", files[0].display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "to undo this restore: archive rollback {}",
            files[0].display()
        )),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&backup_dir), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
    let journal = PathBuf::from(format!("{}.journal", files[0].display()));
    assert_eq!(mode(&journal), 0o600);

    let other = dir.path().join("none");
    let dst2 = RedisServer::start();
    let text = restore(
        &dst2,
        &archive,
        &["--no-backup", "--backup-dir", other.to_str().unwrap()],
    )
    .ok()
    .stdout_text();
    assert!(!other.exists(), "--no-backup wins over a folder");
    assert!(
        text.contains(
            "no pre-restore backup was written (--no-backup): this restore cannot be rolled back"
        ),
        "{text}"
    );
    // A dry run writes no backup either.
    let dry_dir = dir.path().join("dry");
    restore(
        &dst2,
        &archive,
        &["--dry-run", "--backup-dir", dry_dir.to_str().unwrap()],
    )
    .ok();
    assert!(!dry_dir.exists());
}

#[test]
fn rollback_leaves_untouched_keys_and_reports_changed_ones() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut s = src.conn();
    let _: () = s.set("a", "archive").unwrap();
    let _: () = s.set("b", "archive").unwrap();
    let _: () = s.set("c", "archive").unwrap();
    let mut d = dst.conn();
    let _: () = d.set("a", "before").unwrap();
    let _: () = d.set("b", "before too").unwrap();
    let _: () = d.set("other", "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let bd = dir.path().join("b");
    restore(
        &dst,
        &archive,
        &["--mode", "overwrite", "--backup-dir", bd.to_str().unwrap()],
    )
    .ok();
    let backup = backups(&bd).remove(0);

    // After the restore, someone writes to restored keys and to others.
    let _: () = d.set("b", "someone else").unwrap();
    let _: () = d.set("c", "someone else too").unwrap();
    let _: () = d.set("other", "changed by someone").unwrap();
    let _: () = d.set("newcomer", "y").unwrap();

    let skip = rollback_run(&backup, &["--skip-changed", "--json"])
        .ok()
        .json();
    assert_eq!(skip["changed"], 1, "{skip}");
    assert_eq!(skip["skipped_changed"], 1);
    assert_eq!(skip["changed_samples"][0], "b");
    assert_eq!(d.get::<_, String>("a").unwrap(), "before");
    assert!(
        !d.exists::<_, bool>("c").unwrap(),
        "created by the restore: deleted, whatever it holds since"
    );
    assert_eq!(
        d.get::<_, String>("b").unwrap(),
        "someone else",
        "--skip-changed keeps it"
    );
    assert_eq!(
        d.get::<_, String>("other").unwrap(),
        "changed by someone",
        "never touched by the restore"
    );
    assert_eq!(d.get::<_, String>("newcomer").unwrap(), "y");

    let again = rollback_run(&backup, &["--json"]).ok().json();
    assert!(again["changed"].as_u64().unwrap() >= 1);
    assert_eq!(
        d.get::<_, String>("b").unwrap(),
        "before too",
        "put back anyway without --skip-changed"
    );
    assert_eq!(d.get::<_, String>("other").unwrap(), "changed by someone");
}

#[test]
fn killed_restore_rolls_back_exactly() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    dataset::load(&mut src.conn(), 150_000, 0);
    // The target holds older versions of some of the keys, and others.
    dataset::load(&mut dst.conn(), 2_000, 0);
    let mut d = dst.conn();
    let mut pipe = redis::pipe();
    for i in 0..500u64 {
        pipe.cmd("SET")
            .arg(dataset::key_name(i * 6))
            .arg(format!("older {i}"))
            .ignore();
        pipe.cmd("SET")
            .arg(format!("local:{i}"))
            .arg(i)
            .arg("PX")
            .arg(900_000)
            .ignore();
    }
    pipe.query::<()>(&mut d).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("big.tar.zst");
    export(&src, &archive, &[]).ok();
    let before = snapshot(&dst, dir.path(), "before.tar.zst");
    let initial = dst.dbsize(0);
    let bd = dir.path().join("b");

    let url = dst.url();
    let mut child = command(&[
        "restore",
        archive.to_str().unwrap(),
        "--target",
        &url,
        "--yes",
        "--mode",
        "overwrite",
        "--backup-dir",
        bd.to_str().unwrap(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dst.dbsize(0) < initial + 5_000 {
        assert!(
            Instant::now() < deadline,
            "the restore did not start writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    let written = dst.dbsize(0);
    assert!(written < initial + 150_000, "killed part way: {written}");

    let backup = backups(&bd).remove(0);
    let report = rollback_run(&backup, &["--json"]).ok().json();
    assert!(
        report["untouched"].as_u64().unwrap() > 0,
        "keys the restore never reached are left alone: {report}"
    );
    assert_identical(&before, &dst);
}

#[test]
fn copy_can_be_rolled_back_too() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    prepare_target(&mut dst.conn());
    let dir = tempfile::tempdir().unwrap();
    let before = snapshot(&dst, dir.path(), "before.tar.zst");
    let bd = dir.path().join("b");
    let (s, t) = (src.url(), dst.url());
    let report = run(&[
        "copy",
        "--source",
        &s,
        "--target",
        &t,
        "--mode",
        "overwrite",
        "--yes",
        "--json",
        "--backup-dir",
        bd.to_str().unwrap(),
    ])
    .ok()
    .json();
    assert!(
        report["rollback"]
            .as_str()
            .unwrap()
            .starts_with("archive rollback ")
    );
    rollback_run(&backups(&bd)[0], &[]).ok();
    assert_identical(&before, &dst);
}

#[test]
fn rollback_refuses_an_ordinary_archive() {
    let archive = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    let dst = RedisServer::start();
    let url = dst.url();
    rollback_run(&archive, &["--target", &url]).fails(2, "is not a pre-restore backup");
}

/// A second rollback of the same backup finds the keys the restore created
/// gone already and says so, instead of deleting them again or calling
/// them changed.
#[test]
fn a_second_rollback_finds_nothing_to_delete() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    dataset::load(&mut src.conn(), 50, 0);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let bd = dir.path().join("b");
    restore(&dst, &archive, &["--backup-dir", bd.to_str().unwrap()]).ok();
    let backup = backups(&bd).remove(0);
    let first = rollback_run(&backup, &["--json"]).ok().json();
    assert_eq!(first["deleted"], 50, "{first}");
    assert_eq!(dst.dbsize(0), 0);
    let second = rollback_run(&backup, &["--json"]).ok().json();
    assert_eq!(second["deleted"], 0, "{second}");
    assert_eq!(second["already_gone"], 50, "{second}");
    assert_eq!(second["changed"], 0, "{second}");
    let text = rollback_run(&backup, &[]).ok().stdout_text();
    assert!(
        text.contains("50 key(s) the restore created are gone already: nothing to do"),
        "{text}"
    );
}
