//! The backup folder: backup, list (no keys needed), prune with retention.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::*;
use chrono::{DateTime, Datelike, Duration, Utc};
use redis::Commands;
use redis_archive::archive::manifest::{ArchiveKind, Header, Source};
use redis_archive::archive::{ArchiveWriter, Destination, Encryption, WriterOptions};
use redis_archive::connection::{Address, ServerInfo};
use redis_archive::folder::catalog::{Meta, archive_file_name, commit};
use redis_archive::keyspace::Selection;
use redis_archive::record::{Record, Value};

/// One archive in `dir` created at `created`, committed with its metadata
/// as `archive backup` would.
fn put_archive(
    dir: &Path,
    created: DateTime<Utc>,
    name: &str,
    encrypt: Option<&Encryption>,
) -> String {
    let source = Address {
        host: "10.0.0.5".into(),
        port: 6379,
        db: 0,
        tls: false,
    };
    let mut header = Header::new(
        ArchiveKind::Backup,
        created,
        Source {
            address: source.clone(),
            server: ServerInfo {
                flavor: "redis".into(),
                version: "7.0.15".into(),
            },
            cluster: None,
        },
        Selection::default(),
    );
    header.name = Some(name.into());
    let id = header.id.clone();
    let file = archive_file_name(created, name, &id, encrypt.is_some());
    let mut writer = ArchiveWriter::create(
        Destination::File(dir.join(&file)),
        header,
        WriterOptions::default(),
        encrypt,
    )
    .unwrap();
    writer
        .write_record(&Record::new("k".into(), Value::String("v".into())))
        .unwrap();
    let done = writer.finish(created, 0).unwrap();
    let meta = Meta::new(
        &done.manifest.header,
        file.clone(),
        done.manifest.counts.keys,
        done.bytes,
        done.sha256,
        done.encrypted,
    );
    commit(dir, &meta).unwrap();
    file
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn list_and_prune_a_folder_of_sixty_archives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = age::x25519::Identity::generate();
    let encryption = Encryption::to_key(key.to_public());
    let now = Utc::now();
    // 60 archives, one every 36 hours: 90 days; every third encrypted.
    let mut made: Vec<(DateTime<Utc>, String)> = Vec::new();
    for k in 0..60i64 {
        let created = now - Duration::hours(36 * k) - Duration::minutes(5);
        let enc = (k % 3 == 0).then_some(&encryption);
        made.push((created, put_archive(d, created, "nightly", enc)));
    }
    // A damaged archive (cut short after its metadata was written) and a stray file.
    let damaged = put_archive(d, now - Duration::days(3), "damaged", None);
    let bytes = std::fs::read(d.join(&damaged)).unwrap();
    std::fs::write(d.join(&damaged), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.join("notes.txt"), "not an archive\n").unwrap();
    let dir_arg = d.to_str().unwrap();

    // list: 60 archives by time, then the two problems; no key needed.
    let listed = run(&["list", dir_arg, "--json"]).ok().json();
    let entries = listed.as_array().unwrap();
    let archives: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["status"] == "archive")
        .collect();
    assert_eq!(archives.len(), 60);
    let times: Vec<&str> = archives
        .iter()
        .map(|a| a["meta"]["created"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "sorted by time");
    assert_eq!(
        archives
            .iter()
            .filter(|a| a["meta"]["encrypted"] == true)
            .count(),
        20
    );
    let problems: Vec<String> = entries
        .iter()
        .filter(|e| e["status"] == "problem")
        .map(|e| {
            format!(
                "{} {}",
                e["path"].as_str().unwrap(),
                e["problem"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&damaged) && p.contains("damaged")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("notes.txt") && p.contains("not an archive")),
        "{problems:?}"
    );
    let text = run(&["list", dir_arg]).ok().stdout_text();
    assert!(text.contains("nightly") && text.contains("! "), "{text}");

    // The expected plan, worked out here from the calendar.
    made.sort_by_key(|m| std::cmp::Reverse(m.0)); // newest first
    let mut expect: BTreeSet<String> = BTreeSet::new();
    let mut days = Vec::new();
    let mut weeks = Vec::new();
    for (rank, (created, file)) in made.iter().enumerate() {
        let day = created.date_naive();
        let week = (created.iso_week().year(), created.iso_week().week());
        if rank < 5 {
            expect.insert(file.clone()); // keep-min 5
        }
        if days.len() < 7 && !days.contains(&day) {
            days.push(day);
            expect.insert(file.clone());
        }
        if weeks.len() < 4 && !weeks.contains(&week) {
            weeks.push(week);
            expect.insert(file.clone());
        }
    }
    let policy = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-min", "5"];
    let mut args = vec!["prune", dir_arg, "--json"];
    args.extend_from_slice(&policy);
    let plan = run(&args).ok().json();
    let planned_keep: BTreeSet<String> = plan["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["keep"] == true)
        .map(|a| {
            a["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(planned_keep, expect);
    assert_eq!(plan["applied"], false);
    assert_eq!(files(d).len(), 60 * 2 + 2 + 1, "a plan deletes nothing");
    let text_plan = {
        let mut a = vec!["prune", dir_arg];
        a.extend_from_slice(&policy);
        run(&a).ok().stdout_text()
    };
    assert!(
        text_plan.contains("newest archive: never removed"),
        "{text_plan}"
    );
    assert!(text_plan.contains("pass --yes to delete"), "{text_plan}");

    let mut args = vec!["prune", dir_arg, "--yes", "--json"];
    args.extend_from_slice(&policy);
    let done = run(&args).ok().json();
    assert_eq!(done["removed"], 60 - expect.len() as u64);
    let mut remaining: BTreeSet<String> = expect.iter().cloned().collect();
    for f in &expect {
        remaining.insert(format!("{f}.meta.json"));
    }
    remaining.insert(damaged.clone());
    remaining.insert(format!("{damaged}.meta.json"));
    remaining.insert("notes.txt".into());
    // The prune itself is logged in the folder.
    remaining.insert("audit.jsonl".into());
    assert_eq!(files(d), remaining, "exactly the planned files remain");
}

#[test]
fn backup_command_writes_a_listed_checksummed_archive() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("backups");
    let (url, bd) = (src.url(), d.to_str().unwrap().to_string());
    let report = run(&[
        "backup",
        "--source",
        &url,
        "--backup-dir",
        &bd,
        "--name",
        "before upgrade",
        "--tag",
        "upgrade",
        "--json",
    ])
    .ok()
    .json();
    let id = report["id"].as_str().unwrap();
    let listed = run(&[
        "list", &bd, "--json", "--kind", "backup", "--tag", "upgrade",
    ])
    .ok()
    .json();
    let meta = &listed[0]["meta"];
    assert_eq!(meta["id"], id);
    assert_eq!(meta["name"], "before upgrade");
    assert_eq!(meta["keys"], src.dbsize(0));
    assert_eq!(meta["source"]["port"], src.port);
    let path = PathBuf::from(listed[0]["path"].as_str().unwrap());
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file.contains("-before-upgrade-") && file.ends_with(".tar.zst"),
        "{file}"
    );
    let sha = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sha.stdout).starts_with(meta["sha256"].as_str().unwrap()));
    // The sidecar holds no key names, values or credentials.
    let sidecar = std::fs::read_to_string(format!("{}.meta.json", path.display())).unwrap();
    assert!(
        !sidecar.contains("str:plain") && !sidecar.contains("hello"),
        "{sidecar}"
    );
    // The archive itself is an ordinary, valid archive.
    run(&["validate", path.to_str().unwrap()]).ok();
    run(&[
        "backup",
        "--source",
        &url,
        "--backup-dir",
        &bd,
        "-o",
        "x.tar.zst",
    ])
    .fails(2, "backup names its own file");
}

#[test]
fn latest_rollback_point_is_kept_unless_pre_restore_is_named() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    export(&src, &archive, &[]).ok();
    let bd = dir.path().join("b");
    let bds = bd.to_str().unwrap();
    for _ in 0..3 {
        restore(
            &dst,
            &archive,
            &["--mode", "overwrite", "--backup-dir", bds],
        )
        .ok();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let (url, sbd) = (src.url(), bds.to_string());
    run(&["backup", "--source", &url, "--backup-dir", &sbd]).ok();
    let plan = run(&["prune", bds, "--keep-last", "1", "--json"])
        .ok()
        .json();
    let kept: Vec<&serde_json::Value> = plan["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["keep"] == true)
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "the newest archive and the latest rollback point: {plan}"
    );
    assert!(kept.iter().any(|a| {
        a["kind"] == "pre-restore"
            && a["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("latest rollback point")
    }));
    let only = run(&[
        "prune",
        bds,
        "--keep-last",
        "1",
        "--kind",
        "pre-restore",
        "--yes",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(only["removed"], 2);
    // The journals of removed backups go with them.
    let journals = files(&bd)
        .into_iter()
        .filter(|f| f.ends_with(".journal"))
        .count();
    assert_eq!(journals, 1);
}

#[test]
fn locks_and_empty_policies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    run(&["prune", d, "--yes"]).fails(2, "empty retention policy");
    std::fs::write(
        dir.path().join(".archive.lock"),
        "999999999 prune 2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    run(&["prune", d, "--keep-last", "1"]).fails(15, "stale lock left by process 999999999");
    run(&["prune", d, "--keep-last", "1", "--timezone", "Mars"]).fails(2, "unknown --timezone");
}
