//! age encryption: round trips, interoperability with the `age` CLI both
//! ways, damaged encrypted files, wrong keys, and no secret ever printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        Keys {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new age identity file; returns (path, public key).
    fn age(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let ok = Command::new("age-keygen")
            .arg("-o")
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .expect("age-keygen (Debian package age)");
        assert!(ok.success());
        let public = Command::new("age-keygen")
            .arg("-y")
            .arg(&path)
            .output()
            .unwrap();
        (
            path,
            String::from_utf8(public.stdout).unwrap().trim().to_string(),
        )
    }

    /// A new unencrypted ssh-ed25519 key; returns (private path, public key).
    fn ssh(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (Debian package openssh-client)");
        assert!(ok.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        (path, public.trim().to_string())
    }
}

fn age_decrypt_and_list(file: &Path, identity: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | zstd -dc | tar -t",
            identity.display(),
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `archive export --passphrase`, the passphrase from ARCHIVE_PASSPHRASE.
fn export_with_passphrase(url: &str, file: &Path, passphrase: &str) {
    let out = command(&[
        "export",
        "--source",
        url,
        "-o",
        file.to_str().unwrap(),
        "--passphrase",
    ])
    .env("ARCHIVE_PASSPHRASE", passphrase)
    .output()
    .unwrap();
    output(out).ok();
}

const ENTRIES: &str = "header.json\ndata/000000.jsonl\nmanifest.json\n";

#[test]
fn x25519_round_trip_and_the_age_cli_opens_it() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let file = keys.path("x.tar.zst.age");
    export(&src, &file, &["-r", &public]).ok();

    assert_eq!(age_decrypt_and_list(&file, &identity), ENTRIES);
    let inspected = run(&[
        "inspect",
        "--json",
        "-i",
        identity.to_str().unwrap(),
        file.to_str().unwrap(),
    ])
    .ok()
    .json();
    assert_eq!(inspected["encrypted"], true);
    restore(&dst, &file, &["-i", identity.to_str().unwrap()]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn ssh_ed25519_round_trip() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (private, public) = keys.ssh("id_ed25519");
    let file = keys.path("s.tar.zst.age");
    export(&src, &file, &["-r", &public, "--armor"]).ok();
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    );
    assert_eq!(age_decrypt_and_list(&file, &private), ENTRIES);
    restore(&dst, &file, &["-i", private.to_str().unwrap()]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn recipients_file_and_identity_from_the_environment() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let (_, other) = keys.age("other.txt");
    let recipients = keys.path("recipients.txt");
    std::fs::write(&recipients, format!("# team keys\n{public}\n\n{other}\n")).unwrap();
    let file = keys.path("r.tar.zst.age");
    export(&src, &file, &["-R", recipients.to_str().unwrap()]).ok();
    let url = dst.url();
    let out = command(&["restore", file.to_str().unwrap(), "--target", &url, "--yes"])
        .env("ARCHIVE_IDENTITY_FILE", &identity)
        .output()
        .unwrap();
    output(out).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn passphrase_round_trip_and_the_age_cli_opens_it() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let file = keys.path("p.tar.zst.age");
    let url = src.url();
    export_with_passphrase(&url, &file, "correct horse battery");

    // From a passphrase file this time.
    let pass_file = keys.path("pass");
    std::fs::write(&pass_file, "correct horse battery\n").unwrap();
    let target = dst.url();
    let out = command(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        &target,
        "--yes",
    ])
    .env("ARCHIVE_PASSPHRASE_FILE", &pass_file)
    .output()
    .unwrap();
    output(out).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);

    // The age CLI asks on a terminal: `script` gives it one.
    let plain = keys.path("p.tar.zst");
    let mut child = Command::new("script")
        .arg("-qec")
        .arg(format!(
            "age -d -o '{}' '{}'",
            plain.display(),
            file.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "correct horse battery").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(String::from_utf8(stock_tar(&plain, "-t")).unwrap(), ENTRIES);
}

#[test]
fn archives_the_age_cli_encrypted_restore() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let plain = keys.path("x.tar.zst");
    export(&src, &plain, &[]).ok();
    for (name, armor) in [("theirs.tar.zst.age", false), ("theirs.asc", true)] {
        let file = keys.path(name);
        let mut age = Command::new("age");
        if armor {
            age.arg("-a");
        }
        assert!(
            age.args(["-r", &public, "-o"])
                .arg(&file)
                .arg(&plain)
                .status()
                .unwrap()
                .success()
        );
        let dst = RedisServer::start();
        restore(&dst, &file, &["-i", identity.to_str().unwrap()]).ok();
        assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
    }
}

#[test]
fn damaged_encrypted_archives_write_nothing() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let file = keys.path("x.tar.zst.age");
    export(&src, &file, &["-r", &public]).ok();
    let bytes = std::fs::read(&file).unwrap();
    let dst = RedisServer::start();
    let id = identity.to_str().unwrap();

    // Cut at many lengths: header, first chunk, just before the end.
    for cut in [
        40,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 17,
        bytes.len() - 1,
    ] {
        let damaged = keys.path("cut.tar.zst.age");
        std::fs::write(&damaged, &bytes[..cut]).unwrap();
        let out = restore(&dst, &damaged, &["-i", id]);
        assert_eq!(out.code, 7, "cut at {cut}: {}", out.stderr);
        assert_eq!(dst.dbsize(0), 0, "cut at {cut}: nothing may be written");
    }
    // Flip single bytes in the payload: age's authentication catches each.
    for at in [bytes.len() / 2, bytes.len() - 20, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x40;
        let damaged = keys.path("flip.tar.zst.age");
        std::fs::write(&damaged, &tampered).unwrap();
        let out = restore(&dst, &damaged, &["-i", id]);
        assert_eq!(out.code, 7, "flip at {at}: {}", out.stderr);
        assert!(
            out.stderr.contains("archive is corrupt") || out.stderr.contains("truncated"),
            "{}",
            out.stderr
        );
        assert_eq!(dst.dbsize(0), 0);
    }
}

#[test]
fn missing_and_wrong_keys_have_their_messages() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (_, public) = keys.age("key.txt");
    let (wrong, _) = keys.age("wrong.txt");
    let file = keys.path("x.tar.zst.age");
    export(&src, &file, &["-r", &public]).ok();
    let f = file.to_str().unwrap();
    run(&["inspect", f]).fails(12, "archive is encrypted: pass --identity or --passphrase");
    run(&["inspect", f, "-i", wrong.to_str().unwrap()])
        .fails(12, "none of the given identities can decrypt this archive");

    let pfile = keys.path("p.tar.zst.age");
    let url = src.url();
    export_with_passphrase(&url, &pfile, "right");
    let out = command(&["inspect", pfile.to_str().unwrap()])
        .env("ARCHIVE_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    output(out).fails(12, "wrong passphrase");
    run(&["inspect", pfile.to_str().unwrap()]).fails(12, "encrypted with a passphrase");

    let dst = RedisServer::start();
    restore(&dst, &file, &["-i", wrong.to_str().unwrap()])
        .fails(12, "none of the given identities");
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn unsupported_recipients_are_named() {
    let out = run(&[
        "export",
        "-o",
        "/tmp/never.age",
        "-r",
        "age1pq1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
    ]);
    out.fails(2, "post-quantum age key");
    run(&[
        "export",
        "-o",
        "/tmp/never.age",
        "-r",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    ])
    .fails(2, "not a usable SSH public key");
    run(&["export", "-o", "/tmp/never.age", "--armor"])
        .fails(2, "--armor applies to encrypted archives");
    assert!(!Path::new("/tmp/never.age").exists());
}

#[test]
fn encrypted_pipe_from_export_into_restore() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let src_url = src.url();
    let dst_url = dst.url();
    let mut exporter = command(&["export", "--source", &src_url, "-o", "-", "-r", &public])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let restored = command(&[
        "restore",
        "-",
        "--target",
        &dst_url,
        "--yes",
        "-i",
        identity.to_str().unwrap(),
    ])
    .stdin(exporter.stdout.take().unwrap())
    .output()
    .unwrap();
    assert!(exporter.wait().unwrap().success());
    output(restored).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn no_secret_appears_anywhere() {
    let src = RedisServer::start_with(&["--requirepass", "redis-pw-8c1f"]);
    let dst = RedisServer::start_with(&["--requirepass", "redis-pw-8c1f"]);
    let client =
        redis::Client::open(format!("redis://:redis-pw-8c1f@127.0.0.1:{}", src.port)).unwrap();
    load_mixed(&mut client.get_connection().unwrap());
    let keys = Keys::new();
    let (identity, public) = keys.age("key.txt");
    let secret_key = std::fs::read_to_string(&identity)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let secrets = ["redis-pw-8c1f", "passphrase-5e0d", secret_key.as_str()];

    let mut seen = Vec::new();
    let mut check = |what: &str, bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        for s in secrets {
            assert!(!text.contains(s), "{what} contains a secret");
        }
        seen.push(what.to_string());
    };
    let file = keys.path("x.tar.zst.age");
    let pfile = keys.path("p.tar.zst.age");
    let src_url = format!("redis://:redis-pw-8c1f@127.0.0.1:{}", src.port);
    let runs = [
        command(&[
            "export",
            "--source",
            &src_url,
            "-o",
            file.to_str().unwrap(),
            "-r",
            &public,
            "--json",
        ])
        .output(),
        command(&[
            "export",
            "--source",
            &src.url(),
            "-o",
            pfile.to_str().unwrap(),
            "--passphrase",
        ])
        .env("SOURCE_REDIS_PASSWORD", "redis-pw-8c1f")
        .env("ARCHIVE_PASSPHRASE", "passphrase-5e0d")
        .output(),
        command(&[
            "inspect",
            "--json",
            file.to_str().unwrap(),
            "-i",
            identity.to_str().unwrap(),
        ])
        .output(),
        command(&["inspect", pfile.to_str().unwrap()])
            .env("ARCHIVE_PASSPHRASE", "passphrase-5e0d")
            .output(),
        command(&["inspect", pfile.to_str().unwrap()])
            .env("ARCHIVE_PASSPHRASE", "not-it")
            .output(),
        command(&[
            "restore",
            file.to_str().unwrap(),
            "--target",
            &dst.url(),
            "--yes",
            "-i",
            identity.to_str().unwrap(),
        ])
        .env("TARGET_REDIS_PASSWORD", "redis-pw-8c1f")
        .output(),
        command(&[
            "restore",
            file.to_str().unwrap(),
            "--target",
            &dst.url(),
            "--dry-run",
            "-i",
            identity.to_str().unwrap(),
        ])
        .env("TARGET_REDIS_PASSWORD", "wrong-pw")
        .output(),
        command(&[
            "export",
            "--source",
            &format!("redis://:wrong-{}@127.0.0.1:{}", "redis-pw-8c1f", src.port),
            "-o",
            "-",
        ])
        .output(),
    ];
    for (i, out) in runs.into_iter().enumerate() {
        let out = out.unwrap();
        check(&format!("stdout of run {i}"), &out.stdout);
        check(&format!("stderr of run {i}"), &out.stderr);
    }
    let inner = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | zstd -dc",
            identity.display(),
            file.display()
        ))
        .output()
        .unwrap();
    assert!(inner.status.success());
    check("the archive's entries", &inner.stdout);
    check("the encrypted file", &std::fs::read(&file).unwrap());
    check("the passphrase file", &std::fs::read(&pfile).unwrap());
    assert_eq!(seen.len(), 19);
}
