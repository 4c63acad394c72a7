//! Ctrl-C and SIGTERM stop cleanly: an export leaves nothing behind, a
//! restore stops between batches and says how far it got.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn interrupted_export_leaves_nothing(signal: i32) {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 200_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    let child = command(&["export", "--source", &url, "-o", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The temp file exists once the export is under way.
    wait_for("the export to start writing", || entries(dir.path()) > 0);
    assert_eq!(send_signal(child.id(), signal), 0);
    let out = output(child.wait_with_output().unwrap());
    let out = out.fails(130, "interrupted: export stopped; nothing was written");
    assert!(out.stdout.is_empty());
    assert_eq!(entries(dir.path()), 0, "no archive and no temp file left");
}

/// kill(1), so the test needs no unsafe code.
fn send_signal(pid: u32, signal: i32) -> i32 {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() { 0 } else { 1 }
}

#[test]
fn sigint_during_export() {
    interrupted_export_leaves_nothing(libc::SIGINT);
}

#[test]
fn sigterm_during_export() {
    interrupted_export_leaves_nothing(libc::SIGTERM);
}

#[test]
fn sigint_during_restore_stops_between_batches() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let total = dataset::load(&mut src.conn(), 200_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&src, &file, &[]).ok();
    let url = dst.url();
    let child = command(&["restore", file.to_str().unwrap(), "--target", &url, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the restore to start writing", || dst.dbsize(0) > 0);
    assert_eq!(send_signal(child.id(), libc::SIGINT), 0);
    let out = output(child.wait_with_output().unwrap());
    let out = out.fails(130, "interrupted: stopped after");
    assert!(
        out.stderr
            .contains("to undo what was written: archive rollback"),
        "{}",
        out.stderr
    );
    let written = dst.dbsize(0);
    assert!(
        written > 0 && written < total,
        "stopped part way: {written} of {total}"
    );
}
