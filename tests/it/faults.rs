//! Redis faults during a run (issue #8): a source connection killed, a
//! source or target that goes away, a target out of memory, a slow server.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::*;

fn running(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

#[test]
fn export_reconnects_when_its_connection_is_killed_and_the_archive_is_exact() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    let mut child = spawn(&[
        "export",
        "--source",
        &url,
        "-o",
        file.to_str().unwrap(),
        "--json",
    ]);
    // Kill every client connection but this one, again and again, while
    // the export runs.
    let mut admin = src.conn();
    let mut killed = 0;
    while running(&mut child) {
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut admin)
            .unwrap();
        killed += n;
        std::thread::sleep(Duration::from_millis(400));
    }
    let out = output(child.wait_with_output().unwrap()).ok();
    assert!(
        killed >= 2,
        "the export's connection was killed {killed} times"
    );
    assert_eq!(out.json()["keys"], src.dbsize(0), "{}", out.stdout_text());

    let dst = RedisServer::start();
    restore(&dst, &file, &[]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);
}

#[test]
fn a_source_that_goes_away_fails_clearly_and_leaves_nothing() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    let mut child = spawn(&["export", "--source", &url, "-o", file.to_str().unwrap()]);
    wait_for("the export to start writing", || {
        std::fs::read_dir(dir.path()).unwrap().count() > 0 || !running(&mut child)
    });
    drop(src); // the server process is killed
    let started = Instant::now();
    let out = output(child.wait_with_output().unwrap());
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("gave up after 5 reconnects") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded retries"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no archive and no temp file"
    );
}

#[test]
fn a_target_that_goes_away_mid_restore_names_the_rollback_command() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&src, &file, &[]).ok();
    let dst = RedisServer::start();
    let url = dst.url();
    let backups = dir.path().join("b");
    let mut child = spawn(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        &url,
        "--yes",
        "--backup-dir",
        backups.to_str().unwrap(),
    ]);
    wait_for("the restore to start writing", || {
        dst.dbsize(0) >= 1_000 || !running(&mut child)
    });
    drop(dst);
    let out = output(child.wait_with_output().unwrap());
    assert!(
        matches!(out.code, 3 | 6),
        "connection failure code: {}\n{}",
        out.code,
        out.stderr
    );
    assert!(
        out.stderr
            .contains("to undo what was written: archive rollback"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_target_out_of_memory_stops_short_and_rollback_undoes_it() {
    let src = RedisServer::start();
    let mut pipe = redis::pipe();
    for i in 0..60 {
        pipe.cmd("SET")
            .arg(format!("k{i:02}"))
            .arg("v".repeat(100_000))
            .ignore();
    }
    pipe.query::<()>(&mut src.conn()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&src, &file, &[]).ok();

    let dst = RedisServer::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let mut pipe = redis::pipe();
    for i in 0..20 {
        pipe.cmd("SET")
            .arg(format!("k{i:02}"))
            .arg(format!("old {i}"))
            .ignore();
        pipe.cmd("SET")
            .arg(format!("own{i}"))
            .arg(i)
            .arg("PX")
            .arg(600_000)
            .ignore();
    }
    pipe.query::<()>(&mut dst.conn()).unwrap();
    let before = dst.snapshot();
    let backups = dir.path().join("b");
    let url = dst.url();
    let out = restore(
        &dst,
        &file,
        &[
            "--mode",
            "overwrite",
            "--json",
            "--backup-dir",
            backups.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 10, "{}", out.stderr);
    let report = out.json();
    assert!(report["errors"].as_u64().unwrap() > 0, "{report}");
    assert!(report["written"].as_u64().unwrap() > 0, "{report}");
    let rollback = report["rollback"].as_str().unwrap();
    let backup = rollback.strip_prefix("archive rollback ").unwrap();
    run(&["rollback", backup, "--target", &url, "--yes"]).ok();
    assert!(dst.snapshot() == before, "the target is as it was");
}

#[test]
fn a_slow_server_hits_a_configured_timeout_and_none_by_default() {
    let src = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    dataset::load(&mut src.conn(), 100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    // Once the export is under way, the server stops answering for a while.
    let stalled_export = |extra: &[&str], secs: &str| {
        let mut args = vec!["export", "--source", &url, "-o", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut child = spawn(&args);
        wait_for("the export to start writing", || {
            std::fs::read_dir(dir.path()).unwrap().count() > 0 || !running(&mut child)
        });
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(secs)
            .query(&mut src.conn())
            .unwrap();
        output(child.wait_with_output().unwrap())
    };

    stalled_export(&["--timeout", "0.3"], "1.5").fails(6, "timed out");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    stalled_export(&[], "1.5").ok();
    run(&["validate", file.to_str().unwrap()]).ok();
}
