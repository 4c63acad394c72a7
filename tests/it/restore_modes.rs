//! Restore behaviour: TTL modes, skip vs overwrite, dry run, confirmation.

use crate::support::*;
use redis::Commands;

fn now_ms(c: &mut redis::Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(c).unwrap();
    s * 1000 + us / 1000
}

#[test]
fn ttl_absolute_keeps_expiry_time_and_drops_expired_keys() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.set_ex("long", "v", 3600).unwrap();
    let _: () = c.pset_ex("short", "v", 300).unwrap();
    let _: () = c.set("forever", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ttl.tar.zst");
    export(&src, &file, &[]).ok();
    let long_at = expire_time(&mut c, b"long").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));

    let plan = restore(&dst, &file, &["--dry-run", "--json"]).ok().json();
    assert_eq!(plan["plan"]["by_type"]["string"]["expired"], 1, "{plan}");
    assert_eq!(plan["plan"]["by_type"]["string"]["create"], 2, "{plan}");

    let report = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(report["written"], 2);
    assert_eq!(report["plan"]["by_type"]["string"]["expired"], 1);
    let mut d = dst.conn();
    assert!(
        !d.exists::<_, bool>("short").unwrap(),
        "expired key is not written"
    );
    let at = expire_time(&mut d, b"long").unwrap();
    assert!(
        (at - long_at).abs() <= 1000,
        "absolute expiry kept: {at} vs {long_at}"
    );
    assert_eq!(expire_time(&mut d, b"forever"), None);
}

#[test]
fn ttl_relative_restarts_the_remaining_time() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.pset_ex("k", "v", 5_000).unwrap();
    let _: () = c.pset_ex("gone", "v", 200).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rel.tar.zst");
    export(&src, &file, &[]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1_500));

    restore(&dst, &file, &["--ttl", "relative"]).ok();
    let mut d = dst.conn();
    let left: i64 = d.pttl("k").unwrap();
    // About 5 s again, not the 3.5 s an absolute restore would leave.
    assert!(left > 4_000 && left <= 5_000, "remaining ttl {left}");
    let gone_left: i64 = d.pttl("gone").unwrap();
    assert!(
        gone_left > 0 && gone_left <= 200,
        "relative mode writes keys expired since: {gone_left}"
    );
    let _ = now_ms(&mut d);
}

#[test]
fn ttl_none_drops_expiry() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.set_ex("k", "v", 100).unwrap();
    let _: () = c.hset("h", "f", "v").unwrap();
    let _: () = c.expire("h", 100).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.tar.zst");
    export(&src, &file, &[]).ok();
    restore(&dst, &file, &["--ttl", "none"]).ok();
    let mut d = dst.conn();
    assert_eq!(d.pttl::<_, i64>("k").unwrap(), -1);
    assert_eq!(d.pttl::<_, i64>("h").unwrap(), -1);
}

#[test]
fn skip_leaves_existing_keys_and_is_safe_to_repeat() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.set("shared", "from-archive").unwrap();
    let _: () = c.rpush("list", &["a", "b"]).unwrap();
    let _: () = c.set("new", "x").unwrap();
    let mut d = dst.conn();
    let _: () = d.set("shared", "live").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("skip.tar.zst");
    export(&src, &file, &[]).ok();

    let first = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(first["plan"]["by_type"]["string"]["skip"], 1, "{first}");
    assert_eq!(first["written"], 2);
    assert_eq!(d.get::<_, String>("shared").unwrap(), "live");

    let second = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(second["written"], 0, "{second}");
    assert_eq!(second["plan"]["by_type"]["string"]["skip"], 2);
    assert_eq!(second["plan"]["by_type"]["list"]["skip"], 1);
    assert_eq!(
        d.lrange::<_, Vec<String>>("list", 0, -1).unwrap(),
        ["a", "b"],
        "not appended twice"
    );
}

#[test]
fn overwrite_replaces_type_value_and_ttl() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let _: () = c.hset_multiple("k", &[("a", "1"), ("b", "2")]).unwrap();
    let _: () = c.set("s", "archive").unwrap();
    let mut d = dst.conn();
    // Same name, other type, extra data and a TTL the archive does not have.
    let _: () = d.rpush("k", &["x", "y"]).unwrap();
    let _: () = d.set_ex("s", "live", 100).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ow.tar.zst");
    export(&src, &file, &[]).ok();

    let report = restore(&dst, &file, &["--mode", "overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(
        report["plan"]["by_type"]["hash"]["overwrite"], 1,
        "{report}"
    );
    assert_eq!(
        report["plan"]["by_type"]["string"]["overwrite"], 1,
        "{report}"
    );
    assert_same_db(&mut c, &mut d, 0);
    assert_eq!(
        d.pttl::<_, i64>("s").unwrap(),
        -1,
        "the archive's (absent) TTL wins"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let mut d = dst.conn();
    let _: () = d.set("str:plain", "live").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dry.tar.zst");
    export(&src, &file, &[]).ok();

    let text = restore(&dst, &file, &["--dry-run"]).ok().stdout_text();
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains("create"), "{text}");
    // The plan names the existing keys it leaves alone or replaces.
    assert!(
        text.contains("existing keys skipped (left as they are): 1\n  str:plain\n"),
        "{text}"
    );
    let text = restore(&dst, &file, &["--dry-run", "--mode", "overwrite"])
        .ok()
        .stdout_text();
    assert!(
        text.contains("existing keys overwritten: 1\n  str:plain\n"),
        "{text}"
    );
    for mode in ["skip", "overwrite"] {
        let plan = restore(&dst, &file, &["--dry-run", "--json", "--mode", mode])
            .ok()
            .json();
        assert_eq!(plan["dry_run"], true);
        assert_eq!(plan["written"], 0);
        let action = if mode == "skip" { "skip" } else { "overwrite" };
        assert_eq!(plan["plan"]["by_type"]["string"][action], 1, "{plan}");
        assert_eq!(
            plan["names"][action],
            serde_json::json!(["str:plain"]),
            "{plan}"
        );
    }
    assert_eq!(dst.dbsize(0), 1);
    assert_eq!(d.get::<_, String>("str:plain").unwrap(), "live");
}

#[test]
fn without_a_terminal_restore_needs_yes_and_writes_nothing() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.tar.zst");
    export(&src, &file, &[]).ok();
    let url = dst.url();
    run(&["restore", file.to_str().unwrap(), "--target", &url]).fails(11, "pass --yes");
    assert_eq!(dst.dbsize(0), 0);
}

/// An archive of 60 strings of 100 KB, and a target with too little memory
/// for all of them (it refuses writes with OOM).
fn oom_case() -> (RedisServer, tempfile::TempDir, std::path::PathBuf) {
    let src = RedisServer::start();
    let dst = RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let mut c = src.conn();
    let value = "x".repeat(100_000);
    let mut pipe = redis::pipe();
    for i in 0..60 {
        pipe.cmd("SET").arg(format!("k{i:02}")).arg(&value).ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("oom.tar.zst");
    export(&src, &file, &[]).ok();
    (dst, dir, file)
}

#[test]
fn keys_the_server_refuses_are_counted_and_the_rest_restored() {
    // A target with too little memory refuses some writes (OOM): the restore
    // goes on, names the failed keys, and exits with the partial code.
    let (dst, _dir, file) = oom_case();
    let out = restore(&dst, &file, &["--json"]);
    assert_eq!(out.code, 10, "partial exit code\n{}", out.stderr);
    let report = out.json();
    let errors = report["errors"].as_u64().unwrap();
    let written = report["written"].as_u64().unwrap();
    assert!(errors > 0 && written > 0, "{report}");
    assert_eq!(errors + written, 60);
    assert_eq!(dst.dbsize(0), written);
    let sample = &report["error_samples"][0];
    assert!(
        sample["reason"].as_str().unwrap().contains("OOM"),
        "{sample}"
    );
    assert!(sample["key"].as_str().unwrap().starts_with('k'));
}

/// `cmd` run by the shell on a terminal of its own (`script`), its answers
/// written to the child's stdin.
fn on_a_terminal(cmd: &str) -> std::process::Child {
    std::process::Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("ARCHIVE_BACKUP_DIR", test_backup_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (bsdutils) gives the test a terminal")
}

#[test]
fn on_a_terminal_restore_asks_first() {
    // `script` gives the restore a terminal; the answer comes through it.
    let dst = RedisServer::start();
    let valid = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    let ask = |answer: &str| {
        let cmd = format!(
            "'{}' restore '{}' --target '{}'",
            bin().display(),
            valid.display(),
            dst.url()
        );
        let mut child = on_a_terminal(&cmd);
        std::thread::sleep(std::time::Duration::from_millis(500));
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{answer}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        )
    };

    let (code, text) = ask("n");
    assert_eq!(code, Some(11), "{text}");
    assert!(text.contains("write 8 keys? [y/N]"), "{text}");
    assert!(
        text.contains("cancelled at the prompt; nothing was written"),
        "{text}"
    );
    assert_eq!(dst.dbsize(0), 0);

    let (code, text) = ask("y");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("8 keys written"), "{text}");
    assert_eq!(dst.dbsize(0), 8);
}

/// The human report of a partial restore shows the failed keys per type,
/// as the JSON one does.
#[test]
fn a_partial_restore_table_names_the_failed_types() {
    let (dst, _dir, file) = oom_case();
    let out = restore(&dst, &file, &[]);
    assert_eq!(out.code, 10, "{}", out.stderr);
    let text = out.stdout_text();
    let header = text.lines().find(|l| l.starts_with("type")).unwrap();
    assert!(header.trim_end().ends_with("failed"), "{text}");
    let failed = 60 - dst.dbsize(0);
    assert!(failed > 0);
    let row = text.lines().find(|l| l.starts_with("string")).unwrap();
    assert!(row.trim_end().ends_with(&format!(" {failed}")), "{text}");
}

/// Keys that someone creates between the plan and its confirmation are
/// left as they are and counted, with and without a pre-restore backup
/// (without one, a small key is written by one RESTORE that the server
/// refuses for a key that exists, instead of asking first).
#[test]
fn keys_created_after_the_plan_are_left_alone() {
    let src = RedisServer::start();
    let mut s = src.conn();
    let _: () = s.set("k:string", "v").unwrap();
    let _: () = s.hset("k:hash", "f", "v").unwrap();
    let _: () = s.rpush("k:list", &["a", "b"]).unwrap();
    let _: () = s.sadd("k:set", &["a", "b"]).unwrap();
    let _: () = s.zadd("k:zset", "a", 1.5).unwrap();
    let _: () = redis::cmd("XADD")
        .arg("k:stream")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query(&mut s)
        .unwrap();
    let _: () = s.set("k:other", "mine").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &[]).ok();
    let names = [
        "k:string", "k:hash", "k:list", "k:set", "k:zset", "k:stream",
    ];
    for extra in ["", " --no-backup"] {
        let dst = RedisServer::start();
        let cmd = format!(
            "'{}' restore '{}' --target '{}'{extra}",
            bin().display(),
            file.display(),
            dst.url()
        );
        let mut child = on_a_terminal(&cmd);
        std::thread::sleep(std::time::Duration::from_millis(500));
        // The plan has seen an empty target; now someone else writes.
        let mut d = dst.conn();
        for name in names {
            let _: () = d.set(name, "theirs").unwrap();
        }
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "y").unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        assert_eq!(out.status.code(), Some(0), "{extra}: {text}");
        assert!(
            text.contains("6 key(s) appeared in the target after the plan and were left alone"),
            "{extra}: {text}"
        );
        for name in names {
            let v: String = d.get(name).unwrap();
            assert_eq!(v, "theirs", "{extra}: {name} left alone");
        }
        let v: String = d.get("k:other").unwrap();
        assert_eq!(v, "mine", "{extra}: the other key restored");
        if extra.is_empty() {
            // Rollback deletes what the restore created and leaves alone
            // what it did not write.
            let backup = text
                .lines()
                .find_map(|l| l.strip_prefix("to undo this restore: archive rollback "))
                .unwrap_or_else(|| panic!("{text}"));
            run(&["rollback", backup.trim(), "--yes"]).ok();
            assert!(!d.exists::<_, bool>("k:other").unwrap());
            for name in names {
                let v: String = d.get(name).unwrap();
                assert_eq!(v, "theirs", "{name} left alone by rollback");
            }
        }
    }
}

/// A user the target does not allow RESTORE (an ACL, or a managed service
/// that renames it) gets every key written by its commands instead.
#[test]
fn a_user_without_restore_gets_the_same_keys() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 300, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &[]).ok();
    let dst = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "loader", "on", ">pw", "~*", "+@all", "-restore"])
        .query(&mut dst.conn())
        .unwrap();
    let url = format!("redis://loader:pw@127.0.0.1:{}", dst.port);
    restore_url(&url, &file, &["--no-backup"]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut dst.conn())
        .unwrap();
    assert!(
        stats.contains("cmdstat_restore:calls=0,") && stats.contains("cmdstat_hset:"),
        "written by commands: {stats}"
    );
}
