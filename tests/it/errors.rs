//! Each failure: one clear line on stderr, its documented exit code, and
//! nothing written (no file at the output path, no key in the target).

use std::path::Path;
use std::process::Stdio;

use crate::support::*;
use redis::Commands;

fn dir_is_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing may be left behind: {left:?}");
}

#[test]
fn unreachable_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = format!("redis://127.0.0.1:{}", dead_port());
    run(&[
        "export",
        "--source",
        &url,
        "-o",
        file.to_str().unwrap(),
        "--connect-timeout",
        "2",
    ])
    .fails(3, "cannot connect to Redis at 127.0.0.1:");
    dir_is_empty(dir.path());
}

#[test]
fn unreachable_target() {
    let url = format!("redis://127.0.0.1:{}", dead_port());
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    run(&[
        "restore",
        valid.to_str().unwrap(),
        "--target",
        &url,
        "--yes",
    ])
    .fails(3, "check that the server is running");
}

#[test]
fn authentication_refused_without_leaking_the_password() {
    let src = RedisServer::start_with(&["--requirepass", "right-password"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    let url = format!("redis://:wrong-password@127.0.0.1:{}", src.port);
    let out = run(&["export", "--source", &url, "-o", file.to_str().unwrap()])
        .fails(4, "refused authentication");
    assert!(!out.stderr.contains("wrong-password"), "{}", out.stderr);
    assert!(
        out.stderr.contains("SOURCE_REDIS_PASSWORD"),
        "{}",
        out.stderr
    );

    // No password at all: the server says NOAUTH at the first command.
    run(&[
        "export",
        "--source",
        &src.url(),
        "-o",
        file.to_str().unwrap(),
    ])
    .fails(4, "refused authentication");
    dir_is_empty(dir.path());

    // Wrong password from the environment on restore.
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    let out = command(&[
        "restore",
        valid.to_str().unwrap(),
        "--target",
        &src.url(),
        "--yes",
    ])
    .env("TARGET_REDIS_PASSWORD", "also-wrong")
    .output()
    .unwrap();
    let out = output(out).fails(4, "TARGET_REDIS_PASSWORD");
    assert!(!out.stderr.contains("also-wrong"));
}

#[test]
fn database_index_out_of_range() {
    let src = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&src, &file, &["--db", "99"]).fails(5, "has no database 99");
    dir_is_empty(dir.path());
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    restore(&src, &valid, &["--db", "16"]).fails(5, "has no database 16");
}

#[test]
fn output_path_not_writable() {
    let src = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x.tar.zst");
    export(&src, &missing, &[]).fails(9, "the directory does not exist");

    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    export(&src, &file.join("x.tar.zst"), &[]).fails(9, "cannot write");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn disk_full_on_stdout() {
    let src = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let url = src.url();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = command(&["export", "--source", &url, "-o", "-"])
        .stdout(Stdio::from(full))
        .output()
        .unwrap();
    output(out).fails(9, "disk full");
}

#[test]
fn disk_full_leaves_nothing_at_the_output_path() {
    // A 256 KiB filesystem in a private mount namespace, and an export of
    // several MiB of incompressible data into it.
    let src = RedisServer::start();
    let mut c = src.conn();
    let mut seed = 0x2545f491u32;
    let mut noise = vec![0u8; 4 << 20];
    for b in noise.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        *b = seed as u8;
    }
    let _: () = c.set("noise", noise).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{m}' || exit 99; '{bin}' export --source '{url}' -o '{m}/x.tar.zst'; code=$?; ls -A '{m}' >&2; exit $code",
        m = mnt.display(),
        bin = bin().display(),
        url = src.url(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) is needed for this test");
    let run = output(out);
    assert_ne!(
        run.code, 99,
        "could not mount a tmpfs in a private namespace: {}",
        run.stderr
    );
    assert_eq!(run.code, 9, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line and an empty directory listing: {lines:?}"
    );
    assert!(lines[0].contains("disk full"), "{}", lines[0]);
}

#[test]
fn unknown_type_and_bad_url_are_usage_errors() {
    run(&["export", "--type", "blob", "-o", "/tmp/never.tar.zst"])
        .fails(2, "unknown --type \"blob\"");
    let out = run(&[
        "export",
        "--source",
        "http://user:pw123@h",
        "-o",
        "/tmp/never.tar.zst",
    ])
    .fails(2, "invalid Redis URL");
    assert!(!out.stderr.contains("pw123"), "{}", out.stderr);
    assert!(!Path::new("/tmp/never.tar.zst").exists());
}

#[test]
fn missing_archive_file() {
    run(&["inspect", "/nonexistent/archive.tar.zst"])
        .fails(9, "cannot read /nonexistent/archive.tar.zst");
}

#[test]
fn failed_restore_of_stdin_archive_writes_nothing() {
    let dst = RedisServer::start();
    let corrupt =
        std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corrupt.tar.zst"))
            .unwrap();
    let url = dst.url();
    let out = command(&["restore", "-", "--target", &url, "--yes"])
        .stdin(Stdio::from(corrupt))
        .output()
        .unwrap();
    output(out).fails(7, "<stdin>: archive is corrupt");
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn readme_and_help_document_the_same_exit_codes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table = readme.split("## Exit codes").nth(1).unwrap();
    let from_readme: Vec<u32> = table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    let help = run(&["--help"]).ok().stdout_text().replace('\n', " ");
    let listed = help.split("Exit codes:").nth(1).unwrap();
    let from_help: Vec<u32> = listed
        .split(',')
        .filter_map(|part| part.trim().split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(from_readme, from_help, "README table vs --help");
    assert!(from_readme.len() >= 16);
}

#[test]
fn a_read_only_acl_user_can_export_everything() {
    // The rights docs/SECURITY.md names for exports, and no more.
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", "ro", "on", ">pw", "~*", "+@read", "+info", "+time", "+scan", "+watch",
            "+multi", "+exec",
        ])
        .query(&mut src.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ro.tar.zst");
    let url = format!("redis://ro:pw@127.0.0.1:{}", src.port);
    run(&["export", "--source", &url, "-o", file.to_str().unwrap()]).ok();
    let dst = RedisServer::start();
    restore(&dst, &file, &[]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);
}

#[test]
fn issue_14_a_user_not_allowed_watch_is_told_so_before_a_big_key_is_archived() {
    // A key read in several parts is read under WATCH; without the right
    // the export stops with the permission named and writes nothing.
    let src = RedisServer::start();
    let items: Vec<String> = (0..5000).map(|i| format!("item-{i}")).collect();
    let _: () = src.conn().rpush("big:list", &items).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", "ro", "on", ">pw", "~*", "+@read", "+info", "+time", "+scan",
        ])
        .query(&mut src.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ro.tar.zst");
    let url = format!("redis://ro:pw@127.0.0.1:{}", src.port);
    run(&["export", "--source", &url, "-o", file.to_str().unwrap()])
        .fails(6, "lacks a permission this command needs");
    assert!(!file.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_cluster_node_without_slots_is_refused_before_anything_is_read_or_written() {
    // A node started with cluster-enabled that no cluster was created from.
    let node = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&node, &file, &[]).fails(6, "no node serves any slot yet");
    assert!(!file.exists());
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
    restore(&node, &valid, &[]).fails(6, "redis-cli --cluster create");
    let url = node.url();
    run(&["compare", valid.to_str().unwrap(), "--target", &url]).fails(6, "cluster at");
    assert_eq!(node.dbsize(0), 0);
}

/// Passwords that were not URL-encoded make the URL invalid; the message
/// shows none of them, whatever characters they hold.
#[test]
fn an_invalid_url_never_shows_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.tar.zst");
    for (url, secret_parts) in [
        (
            "redis://:secret/part@127.0.0.1:6390",
            &["secret", "part"][..],
        ),
        (
            "redis://:p@ss:w/rd#1%@127.0.0.1/0",
            &["ss:w", "rd#1", "p@"][..],
        ),
        ("rediss://admin:x/y?z@127.0.0.1", &["x/y", "?z"][..]),
    ] {
        let out = run(&["export", "--source", url, "-o", file.to_str().unwrap()])
            .fails(2, "invalid Redis URL");
        for part in secret_parts {
            assert!(!out.stderr.contains(part), "{url}: {}", out.stderr);
        }
        assert!(!file.exists());
        // Every command that takes a URL, on either side, and through the
        // environment: nothing it prints holds the password.
        let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid.tar.zst");
        let valid = valid.to_str().unwrap();
        let folder = dir.path().join("folder");
        let folder = folder.to_str().unwrap();
        let elsewhere = "redis://127.0.0.1:1";
        let commands: Vec<Vec<&str>> = vec![
            vec!["backup", "--source", url, "--backup-dir", folder],
            vec!["restore", valid, "--target", url, "--yes"],
            vec!["restore", valid, "--target", url, "--dry-run", "--json"],
            vec!["copy", "--source", url, "--target", elsewhere, "--yes"],
            vec!["copy", "--source", elsewhere, "--target", url, "--yes"],
            vec!["compare", valid, "--target", url, "--json"],
            vec!["rollback", valid, "--target", url, "--yes"],
        ];
        for args in &commands {
            let out = run(args);
            assert_ne!(out.code, 0, "{args:?}");
            let all = format!("{}{}", out.stdout_text(), out.stderr);
            for part in secret_parts {
                assert!(!all.contains(part), "{args:?}: {all}");
            }
        }
        let out = command(&["restore", valid, "--yes"])
            .env("TARGET_REDIS_URL", url)
            .output()
            .unwrap();
        let out = output(out);
        assert_eq!(out.code, 2, "{}", out.stderr);
        let all = format!("{}{}", out.stdout_text(), out.stderr);
        for part in secret_parts {
            assert!(!all.contains(part), "TARGET_REDIS_URL: {all}");
        }
    }
}

/// `backup` names its own file: its help does not offer `-o`, which it
/// would refuse, and it says what to use instead when given one.
#[test]
fn backup_does_not_offer_an_output_file() {
    let help = run(&["backup", "--help"]).ok().stdout_text();
    assert!(!help.contains("--output"), "{help}");
    let export_help = run(&["export", "--help"]).ok().stdout_text();
    assert!(export_help.contains("--output"), "{export_help}");
    let out = run(&[
        "backup",
        "-o",
        "x.tar.zst",
        "--source",
        "redis://127.0.0.1:1",
    ]);
    out.fails(2, "use `archive export -o FILE` to choose a file");
}
