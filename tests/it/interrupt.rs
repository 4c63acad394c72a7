//! Ctrl-C and SIGTERM stop cleanly: an export leaves nothing behind, a
//! restore stops between batches and says how far it got.

use std::path::Path;

use crate::support::*;

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn interrupted_export_leaves_nothing(name: &str) {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 200_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    let child = spawn(&["export", "--source", &url, "-o", file.to_str().unwrap()]);
    // The temp file exists once the export is under way.
    wait_for("the export to start writing", || entries(dir.path()) > 0);
    signal(&child, name);
    let out = output(child.wait_with_output().unwrap());
    let out = out.fails(130, "interrupted: export stopped; nothing was written");
    assert!(out.stdout.is_empty());
    assert_eq!(entries(dir.path()), 0, "no archive and no temp file left");
}

#[test]
fn sigint_during_export() {
    interrupted_export_leaves_nothing("INT");
}

#[test]
fn sigterm_during_export() {
    interrupted_export_leaves_nothing("TERM");
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
    let child = spawn(&["restore", file.to_str().unwrap(), "--target", &url, "--yes"]);
    wait_for("the restore to start writing", || dst.dbsize(0) > 0);
    signal(&child, "INT");
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
