//! Crashes at every stage of a write (issue #8). `ARCHIVE_FAILPOINT` makes
//! the binary abort at a named point, with no cleanup of any kind, as
//! SIGKILL or a power cut would; each test then checks what is left: never
//! a file that looks complete when it is not, no stray temp file after the
//! next run, and a restore that `rollback` undoes exactly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::*;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn crashed(out: &Run, point: &str) {
    assert_eq!(
        out.code, -1,
        "{point}: the process should have died by a signal\n{}",
        out.stderr
    );
}

fn with_failpoint(args: &[&str], point: &str) -> Run {
    output(
        command(args)
            .env("ARCHIVE_FAILPOINT", point)
            .output()
            .unwrap(),
    )
}

/// 40 strings of 1 MB: about 10 data entries, written in well under a second.
fn big_source() -> RedisServer {
    let src = RedisServer::start();
    let mut pipe = redis::pipe();
    for i in 0..40 {
        let value = format!("{i:03}").repeat(350_000);
        pipe.cmd("SET").arg(format!("big:{i}")).arg(value).ignore();
    }
    pipe.query::<()>(&mut src.conn()).unwrap();
    src
}

#[test]
fn an_export_killed_at_any_stage_leaves_no_file_and_the_next_run_cleans_up() {
    let src = big_source();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = src.url();
    let args = ["export", "--source", &url, "-o", file.to_str().unwrap()];
    let points = [
        "write.entry:1",
        "write.entry:5",
        "write.manifest",
        "write.before-rename",
        "write.after-rename",
    ];
    for point in points {
        let out = with_failpoint(&args, point);
        crashed(&out, point);
        if point == "write.after-rename" {
            // Renamed means complete: the file is whole and valid.
            run(&["validate", file.to_str().unwrap()]).ok();
        } else {
            assert!(!file.exists(), "{point}: nothing at the output path");
            let left = names(dir.path());
            assert!(
                left.len() == 1 && left.iter().all(|n| n.ends_with(".archive-partial")),
                "{point}: only the dead writer's temp file: {left:?}"
            );
            // Before the manifest is flushed what is left is not an archive;
            // before the rename it is a whole one, but not at the output path.
            let partial = dir.path().join(left.iter().next().unwrap());
            let check = run(&["validate", partial.to_str().unwrap()]);
            if point == "write.before-rename" {
                check.ok();
            } else {
                assert_eq!(check.code, 7, "{point}: {}", check.stdout_text());
            }
        }
        // The next export into the same folder removes the dead temp file.
        run(&args).ok();
        assert_eq!(names(dir.path()), BTreeSet::from(["x.tar.zst".to_string()]));
        run(&["validate", file.to_str().unwrap()]).ok();
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn a_backup_killed_at_any_stage_is_never_listed_as_complete() {
    let src = big_source();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("backups");
    let url = src.url();
    let f = folder.to_str().unwrap();
    let args = ["backup", "--source", &url, "--backup-dir", f];
    let complete = |listing: &serde_json::Value| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "archive")
            .count()
    };
    for (i, point) in [
        "write.entry:2",
        "write.before-rename",
        "write.after-rename",
        "folder.before-meta",
    ]
    .into_iter()
    .enumerate()
    {
        crashed(&with_failpoint(&args, point), point);
        let listing = run(&["list", f, "--json"]).ok().json();
        assert_eq!(complete(&listing), i, "{point}: {listing}");
        assert!(
            names(&folder).iter().all(|n| !n.ends_with(".meta.json")
                || folder.join(n.trim_end_matches(".meta.json")).exists()),
            "{point}: no metadata without its archive"
        );
        // A backup that completes is listed; the dead temp files are gone.
        run(&args).ok();
        let listing = run(&["list", f, "--json"]).ok().json();
        assert_eq!(complete(&listing), i + 1, "{point}: {listing}");
        assert!(
            names(&folder)
                .iter()
                .all(|n| !n.ends_with(".archive-partial")),
            "{point}: {:?}",
            names(&folder)
        );
    }
    // Killed after the rename and before the metadata: the archive is there,
    // named as unfinished, never pruned, never listed as complete.
    let listing = run(&["list", f, "--json"]).ok().json();
    let problems: Vec<&serde_json::Value> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] != "archive")
        .collect();
    assert_eq!(problems.len(), 2, "{listing}");
    assert!(
        problems
            .iter()
            .all(|p| p["problem"].as_str().unwrap().starts_with("no metadata")),
        "{listing}"
    );
}

/// A target with its own data, some of it older versions of the archive's keys.
fn prepare_target(dst: &RedisServer) {
    let mut c = dst.conn();
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    dataset::load(&mut c, 1_500, 0);
    let mut pipe = redis::pipe();
    for i in 0..300u64 {
        pipe.cmd("SET")
            .arg(dataset::key_name(i * 5))
            .arg(format!("older {i}"))
            .arg("PX")
            .arg(3_600_000)
            .ignore();
        pipe.cmd("HSET")
            .arg(format!("local:{i}"))
            .arg("f")
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
}

type Snapshot = std::collections::BTreeMap<Vec<u8>, (KeyState, Option<i64>)>;

/// The same keys, values and expiry times, naming the first keys that differ.
fn assert_same_snapshot(before: &Snapshot, after: &Snapshot, what: &str) {
    let differ: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .take(5)
        .map(|k| {
            format!(
                "{}: {:?} -> {:?}",
                String::from_utf8_lossy(k),
                before.get(k).map(|v| &v.1),
                after.get(k).map(|v| &v.1)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: the target is not as it was: {differ:#?}"
    );
}

/// `restore ARCHIVE --mode overwrite` into `url`, backups into `backups`.
fn overwrite_restore<'a>(archive: &'a Path, url: &'a str, backups: &'a Path) -> [&'a str; 9] {
    [
        "restore",
        archive.to_str().unwrap(),
        "--target",
        url,
        "--yes",
        "--mode",
        "overwrite",
        "--backup-dir",
        backups.to_str().unwrap(),
    ]
}

fn newest_backup(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .collect();
    found.sort();
    found.pop()
}

#[test]
fn a_restore_killed_at_any_stage_is_undone_exactly_by_rollback() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 20_000, 0);
    let dst = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let url = dst.url();
    let points = [
        "write.entry:1", // finishing the pre-restore backup
        "write.before-rename",
        "restore.backup-done",
        "restore.batch:1",
        "restore.batch:5",
        "restore.written:1",
        "restore.written:9",
    ];
    for (i, point) in points.into_iter().enumerate() {
        prepare_target(&dst);
        let before = dst.snapshot();
        let backups = dir.path().join(format!("b{i}"));
        let out = with_failpoint(&overwrite_restore(&archive, &url, &backups), point);
        crashed(&out, point);
        match newest_backup(&backups) {
            Some(backup) => {
                run(&[
                    "rollback",
                    backup.to_str().unwrap(),
                    "--target",
                    &url,
                    "--yes",
                ])
                .ok();
            }
            // Killed before the backup was in place: nothing was written.
            None => assert!(point.starts_with("write."), "{point}: no backup"),
        }
        assert_same_snapshot(&before, &dst.snapshot(), point);
    }
}

#[test]
fn a_restore_stopped_with_sigint_is_undone_exactly_by_rollback() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 60_000, 0);
    let dst = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    prepare_target(&dst);
    let before = dst.snapshot();
    let initial = dst.dbsize(0);
    let backups = dir.path().join("b");
    let url = dst.url();
    let child = spawn(&overwrite_restore(&archive, &url, &backups));
    wait_for("the restore to start writing", || {
        dst.dbsize(0) >= initial + 2_000
    });
    signal(&child, "INT");
    let out = output(child.wait_with_output().unwrap()).fails(130, "archive rollback");
    let command = out
        .stderr
        .lines()
        .find_map(|l| l.split("archive rollback ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    run(&["rollback", &command, "--target", &url, "--yes"]).ok();
    assert_same_snapshot(&before, &dst.snapshot(), "SIGINT");
}
