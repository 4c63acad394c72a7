//! Issue 16: who did what. The archive header's operator, the backup
//! folder's audit log and `archive log`; completions and the man page; the
//! default endpoint named when nothing is configured. (A port that is not
//! Redis: exit_codes.rs, code 17.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;
use redis::Commands;

const PASSWORD: &str = "audit-pw-41c7";

fn secret_free(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains(PASSWORD),
        "{what} holds the password:\n{text}"
    );
}

fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
    let path = dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    secret_free("the audit log", text.as_bytes());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the audit log is private");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn issue_16_audit_log_after_backup_restore_copy_rollback_and_prune() {
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let url = |db: i64| format!("redis://:{PASSWORD}@127.0.0.1:{}/{db}", server.port);
    let mut c = redis::Client::open(url(0))
        .unwrap()
        .get_connection()
        .unwrap();
    for i in 0..20 {
        let _: () = c.set(format!("k:{i}"), i).unwrap();
    }
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let dir_arg = dir.to_str().unwrap();

    let backup = run(&[
        "backup",
        "--source",
        &url(0),
        "--backup-dir",
        dir_arg,
        "--name",
        "nightly",
        "--json",
    ])
    .ok();
    let archive = backup.json()["output"].as_str().unwrap().to_string();

    // The header says who, where and how, without the password.
    let header = stock_tar(Path::new(&archive), "-xO header.json");
    secret_free("the backup's header", &header);
    let inspected = run(&["inspect", &archive, "--json"]).ok().json();
    let operator = &inspected["operator"];
    assert!(
        operator["user"].as_str().is_some_and(|u| !u.is_empty()),
        "{inspected}"
    );
    assert!(operator["host"].as_str().is_some_and(|h| !h.is_empty()));
    let command = operator["command"].as_str().unwrap();
    assert!(
        command.contains(" backup --source redis://:***@127.0.0.1:"),
        "{command}"
    );
    let text = run(&["inspect", &archive]).ok().stdout_text();
    assert!(
        text.contains("operator:") && text.contains("command:"),
        "{text}"
    );

    let _: () = c.set("k:1", "changed").unwrap();
    let restored = run(&[
        "restore",
        &archive,
        "--target",
        &url(0),
        "--mode",
        "overwrite",
        "--yes",
        "--backup-dir",
        dir_arg,
        "--json",
    ])
    .ok()
    .json();
    let pre_restore = restored["backup"].as_str().unwrap().to_string();
    assert!(Path::new(&pre_restore).starts_with(dir), "{pre_restore}");
    secret_free(
        "the pre-restore backup's header",
        &stock_tar(Path::new(&pre_restore), "-xO header.json"),
    );
    run(&[
        "copy",
        "--source",
        &url(0),
        "--target",
        &url(1),
        "--yes",
        "--backup-dir",
        dir_arg,
    ])
    .ok();
    run(&["rollback", &pre_restore, "--target", &url(0), "--yes"]).ok();
    let value: String = c.get("k:1").unwrap();
    assert_eq!(
        value, "changed",
        "the rollback put back the value before the restore"
    );
    // A restore of the folder's own archive is logged there even when its
    // pre-restore backup is not taken.
    run(&[
        "restore",
        &archive,
        "--target",
        &url(2),
        "--no-backup",
        "--yes",
    ])
    .ok();
    run(&["prune", dir_arg, "--keep-last", "1", "--yes"]).ok();

    let lines = log_lines(dir);
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["backup", "restore", "copy", "rollback", "restore", "prune"]
    );
    for line in &lines {
        assert_eq!(line["outcome"], "ok", "{line}");
        assert!(line["time"].as_str().is_some(), "{line}");
        assert!(line["user"].as_str().is_some() && line["host"].as_str().is_some());
        let command = line["command"].as_str().unwrap();
        assert!(
            command.contains(line["action"].as_str().unwrap()),
            "{command}"
        );
        assert!(line["summary"].is_object(), "{line}");
    }
    assert!(
        lines[1]["command"]
            .as_str()
            .unwrap()
            .contains("redis://:***@")
    );
    assert_eq!(lines[0]["summary"]["keys"], 20);
    assert_eq!(lines[1]["summary"]["written"], 20, "{}", lines[1]);
    assert_eq!(lines[3]["summary"]["restored"], 20, "{}", lines[3]);
    assert!(
        lines[5]["summary"]["removed"].as_u64().unwrap() >= 1,
        "{}",
        lines[5]
    );

    // `archive log`: text, JSON, the last N.
    let text = run(&["log", "--folder", dir_arg]).ok();
    secret_free("archive log", text.stdout_text().as_bytes());
    let text = text.stdout_text();
    for action in ["backup", "restore", "copy", "rollback", "prune"] {
        assert!(
            text.contains(&format!("  {action} ")),
            "{action} missing:\n{text}"
        );
    }
    assert!(text.contains("keys 20"), "{text}");
    let last = run(&["log", "--folder", dir_arg, "--json", "--last", "2"])
        .ok()
        .json();
    let last: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(last, ["restore", "prune"]);
    // The log is the folder's own: list does not take it for a stray file.
    let listed = run(&["list", dir_arg, "--json"]).ok().stdout_text();
    assert!(!listed.contains("audit.jsonl"), "{listed}");
}

#[test]
fn a_failed_run_is_logged_with_its_error() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().to_str().unwrap();
    let dead = format!("redis://:{PASSWORD}@127.0.0.1:{}", dead_port());
    run(&["backup", "--source", &dead, "--backup-dir", dir]).fails(3, "cannot connect");
    let lines = log_lines(folder.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "backup");
    assert_eq!(lines[0]["outcome"], "failed");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    let empty = tempfile::tempdir().unwrap();
    let out = run(&["log", "--folder", empty.path().to_str().unwrap()]).ok();
    assert!(
        out.stdout_text().contains("no runs logged"),
        "{}",
        out.stdout_text()
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]).ok().stdout_text();
        assert!(
            out.contains("archive") && out.contains("rollback"),
            "{shell}:\n{out}"
        );
    }
    let man = run(&["man"]).ok().stdout_text();
    assert!(man.starts_with(".ie") || man.contains(".TH"), "{man}");
    for command in [
        "export",
        "restore",
        "rollback",
        "backup",
        "prune",
        "log",
        "completions",
    ] {
        assert!(man.contains(command), "the man page names {command}");
    }
}

#[test]
fn the_default_endpoint_is_named_in_a_dry_run() {
    let server = RedisServer::start();
    let _: () = server.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&server, &file, &[]).ok();
    // No --target and no variables: 127.0.0.1:6379. A dry run only reads,
    // so whether a server runs there or not, nothing is written; either
    // the plan or the connection error names the address as the default.
    let out = run(&["restore", "--dry-run", file.to_str().unwrap()]);
    let all = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(
        all.contains("127.0.0.1:6379/0 (default; nothing configured)"),
        "{all}"
    );
    // An explicit target is not called a default.
    let out = run(&[
        "restore",
        "--dry-run",
        file.to_str().unwrap(),
        "--target",
        &server.url(),
    ]);
    let all = format!("{}{}", out.ok().stdout_text(), "");
    assert!(!all.contains("default; nothing configured"), "{all}");
}
