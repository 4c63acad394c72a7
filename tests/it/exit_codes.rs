//! One test per documented exit code (README "Exit codes"; issue #8): each
//! makes the binary exit with that code and checks the one-line message.
//! Other test files cover the same failures in depth.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Fails with `code`, and stderr is one line holding `needle`.
fn one_line(out: Run, code: i32, needle: &str) {
    let out = out.fails(code, needle);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
}

fn export_to_nowhere(url: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tar.zst");
    let mut args = vec!["export", "--source", url, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = run(&args);
    assert!(!out.exists() || run.code == 0);
    run
}

#[test]
fn code_0_success() {
    let src = RedisServer::start();
    export_to_nowhere(&src.url(), &[]).ok();
}

#[test]
fn code_1_internal_error() {
    let src = RedisServer::start();
    let out = output(
        command(&["export", "--source", &src.url(), "-o", "/nonexistent/x"])
            .env("ARCHIVE_FAILPOINT", "export.start")
            .output()
            .unwrap(),
    );
    one_line(
        out,
        1,
        "internal error: failure injected at export.start; please report this",
    );
}

#[test]
fn code_2_usage() {
    one_line(
        run(&["export", "--type", "blob"]),
        2,
        "unknown --type \"blob\"",
    );
}

#[test]
fn code_3_unreachable() {
    let url = format!("redis://127.0.0.1:{}", dead_port());
    one_line(export_to_nowhere(&url, &[]), 3, "cannot connect to Redis");
}

#[test]
fn code_4_authentication_refused() {
    let src = RedisServer::start_with(&["--requirepass", "right"]);
    let url = format!("redis://:wrong@127.0.0.1:{}", src.port);
    one_line(export_to_nowhere(&url, &[]), 4, "refused authentication");
}

#[test]
fn code_5_database_out_of_range() {
    let src = RedisServer::start();
    one_line(
        export_to_nowhere(&src.url(), &["--db", "99"]),
        5,
        "has no database 99",
    );
}

#[test]
fn code_6_redis_command_failed() {
    // A user the server lets in but not run SCAN.
    let src = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("+@all")
        .arg("-scan")
        .query(&mut src.conn())
        .unwrap();
    let url = format!("redis://reader:pw@127.0.0.1:{}", src.port);
    one_line(export_to_nowhere(&url, &[]), 6, "lacks a permission");
}

#[test]
fn code_7_not_a_valid_archive() {
    let f = fixture("corrupt.tar.zst");
    one_line(
        run(&["inspect", f.to_str().unwrap()]),
        7,
        "archive is corrupt",
    );
}

#[test]
fn code_8_schema_too_new() {
    let f = fixture("future-schema.tar.zst");
    one_line(
        run(&["inspect", f.to_str().unwrap()]),
        8,
        "upgrade `archive`",
    );
}

#[test]
fn code_9_input_or_output() {
    one_line(
        run(&["inspect", "/nonexistent/a.tar.zst"]),
        9,
        "cannot read /nonexistent/a.tar.zst",
    );
}

#[test]
fn code_10_partial() {
    let src = RedisServer::start();
    let mut pipe = redis::pipe();
    for i in 0..30 {
        pipe.cmd("SET")
            .arg(format!("k{i}"))
            .arg("v".repeat(200_000))
            .ignore();
    }
    pipe.query::<()>(&mut src.conn()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&src, &file, &[]).ok();
    let dst = RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let out = restore(&dst, &file, &[]);
    assert_eq!(out.code, 10, "{}", out.stderr);
    assert!(
        out.stdout_text().contains("failed"),
        "{}",
        out.stdout_text()
    );
}

#[test]
fn code_11_confirmation_required() {
    let dst = RedisServer::start();
    let f = fixture("valid.tar.zst");
    let out = run(&["restore", f.to_str().unwrap(), "--target", &dst.url()]);
    one_line(out, 11, "--yes");
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn code_12_cannot_decrypt() {
    let f = fixture("encrypted.tar.zst.age");
    one_line(
        run(&["inspect", f.to_str().unwrap()]),
        12,
        "pass --identity or --passphrase",
    );
}

#[test]
fn code_13_keys_exist_with_mode_fail() {
    let dst = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("session:abc")
        .arg("x")
        .query(&mut dst.conn())
        .unwrap();
    let f = fixture("valid.tar.zst");
    one_line(restore(&dst, &f, &["--mode", "fail"]), 13, "session:abc");
    assert_eq!(dst.dbsize(0), 1);
}

#[test]
fn code_14_compare_differs() {
    let dst = RedisServer::start();
    let f = fixture("valid.tar.zst");
    let out = run(&["compare", f.to_str().unwrap(), "--target", &dst.url()]);
    assert_eq!(out.code, 14, "{}", out.stderr);
    assert!(
        out.stdout_text().contains("missing"),
        "{}",
        out.stdout_text()
    );
}

#[test]
fn code_15_folder_locked() {
    let dir = tempfile::tempdir().unwrap();
    // Held by a process that is running: this test.
    std::fs::write(
        dir.path().join(".archive.lock"),
        format!("{} backup 2026-11-22T00:00:00Z -\n", std::process::id()),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    one_line(
        run(&["prune", d, "--keep-last", "1"]),
        15,
        "locked by process",
    );
}

#[test]
fn code_16_target_cannot_hold_the_archive() {
    // Hash fields with their own expiry into a server without the feature.
    let dst = RedisServer::start();
    let f = fixture("schema2.tar.zst");
    one_line(
        restore(&dst, &f, &[]),
        16,
        "1 hash(es) with 1 field(s) that expire on their own",
    );
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn code_17_not_a_redis_server() {
    // Issue 16: an HTTP server on the port used to give the driver's
    // "Incompatible type - Parse error at 1 Unexpected '33'".
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let url = format!("redis://127.0.0.1:{port}");
    one_line(export_to_nowhere(&url, &[]), 17, "is not a Redis server");
}

#[test]
fn code_18_no_records() {
    // User 12345 has no keys; users 42 and 7 have.
    let src = RedisServer::start();
    src.load_commands(&fixture("profiles/relay-data.redis"));
    let relay = fixture("profiles/relay.toml");
    let relay = relay.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("u.tar.zst");
    one_line(
        export(&src, &file, &["12345", "--profile", relay]),
        18,
        "user 12345 has no keys in the groups of profile \"api-relay\" (user, settings, apikeys,",
    );
    assert!(!file.exists(), "no empty archive is left");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp file either"
    );

    let folder = dir.path().join("backups");
    let out = run(&[
        "backup",
        "--source",
        &src.url(),
        "--backup-dir",
        folder.to_str().unwrap(),
        "12345",
        "--types",
        "apikeys",
        "--profile",
        relay,
    ]);
    one_line(out, 18, "profile \"api-relay\" (apikeys)");
    let archives = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tar.zst"))
        .count();
    assert_eq!(archives, 0, "the backup folder holds no archive");

    // The same user id with keys exports as before.
    export(&src, &file, &["42", "--profile", relay]).ok();
    assert!(file.exists());
}

#[test]
fn code_130_interrupted() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 100_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let child = command(&[
        "export",
        "--source",
        &src.url(),
        "-o",
        file.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    one_line(
        output(child.wait_with_output().unwrap()),
        130,
        "nothing was written",
    );
    assert!(!file.exists());
}

#[test]
fn every_documented_code_has_a_test_here() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let this = include_str!("exit_codes.rs");
    let table = readme.split("## Exit codes").nth(1).unwrap();
    for code in table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse::<u32>().ok())
    {
        assert!(
            this.contains(&format!("fn code_{code}_")),
            "exit code {code} has no test"
        );
    }
}
