//! Secrets stay secret (issue #8): passwords (in URLs and in the
//! environment), an age identity and passphrases go through every command,
//! and none of them appears in any archive byte (decrypted and
//! decompressed), manifest, sidecar, journal, report, stdout or stderr.
//! Every file is created 0600 and every folder 0700, even under umask 000.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{RedisServer, Run, command_after, output};
use age::secrecy::{ExposeSecret, SecretString};

const SOURCE_PASSWORD: &str = "src-PASSWORD-s3cr3t-1";
const TARGET_PASSWORD: &str = "tgt-PASSWORD-s3cr3t-2";
const PASSPHRASE: &str = "PASSPHRASE-s3cr3t-3";
const WRONG_PASSWORD: &str = "WRONG-PASSWORD-s3cr3t-4";
const WRONG_PASSPHRASE: &str = "WRONG-PASSPHRASE-s3cr3t-5";

struct World {
    dir: tempfile::TempDir,
    identity_file: PathBuf,
    identity_secret: String,
    recipient: String,
    source: RedisServer,
    target: RedisServer,
    /// Every stdout and stderr seen.
    said: Vec<String>,
}

impl World {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Run the binary under umask 000 with `env`; keep what it printed.
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = command_after("umask 000", args);
        cmd.current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = output(cmd.output().unwrap());
        self.said.push(out.stdout_text());
        self.said.push(out.stderr.clone());
        out
    }
}

fn secrets(w: &World) -> Vec<String> {
    vec![
        SOURCE_PASSWORD.into(),
        TARGET_PASSWORD.into(),
        PASSPHRASE.into(),
        WRONG_PASSWORD.into(),
        WRONG_PASSPHRASE.into(),
        w.identity_secret.clone(),
        // The secret part alone, in case of re-encoding.
        w.identity_secret["AGE-SECRET-KEY-1".len()..].to_string(),
    ]
}

/// The bytes of an archive as far down as they go: decrypted, decompressed.
fn plaintext(w: &World, path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let compressed = if raw.starts_with(b"age-encryption.org/v1") {
        let decryptor = age::Decryptor::new(&raw[..]).unwrap();
        let identity: age::x25519::Identity = w.identity_secret.parse().unwrap();
        let by_key = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity));
        let mut reader = match by_key {
            Ok(r) => r,
            Err(_) => {
                let scrypt = age::scrypt::Identity::new(SecretString::from(PASSPHRASE.to_string()));
                age::Decryptor::new(&raw[..])
                    .unwrap()
                    .decrypt(std::iter::once(&scrypt as &dyn age::Identity))
                    .unwrap()
            }
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    };
    if compressed.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&compressed[..]).unwrap()
    } else {
        compressed
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push(path.clone());
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_secret_reaches_any_output_and_every_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("key.txt");
    let identity_secret = identity.to_string().expose_secret().to_string();
    std::fs::write(&identity_file, format!("{identity_secret}\n")).unwrap();
    let source = RedisServer::start_with(&["--requirepass", SOURCE_PASSWORD]);
    let target = RedisServer::start_with(&["--requirepass", TARGET_PASSWORD]);
    {
        let url = format!("redis://:{SOURCE_PASSWORD}@127.0.0.1:{}", source.port);
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        crate::support::dataset::load(&mut c, 2_000, 0);
    }
    let mut w = World {
        identity_file,
        identity_secret,
        recipient: identity.to_public().to_string(),
        dir,
        source,
        target,
        said: Vec::new(),
    };
    let src_url = format!("redis://:{SOURCE_PASSWORD}@127.0.0.1:{}", w.source.port);
    let src_plain = w.source.url();
    let tgt = w.target.url();
    let id = w.identity_file.display().to_string();
    let recipient = w.recipient.clone();
    let (a, p, backups, folder, report) = (
        w.path("a.tar.zst.age"),
        w.path("p.tar.zst.age"),
        w.path("backups"),
        w.path("folder"),
        w.path("report.json"),
    );
    let pass_file = w.path("pass.txt");
    std::fs::write(&pass_file, PASSPHRASE).unwrap();
    let src_env = [("SOURCE_REDIS_PASSWORD", SOURCE_PASSWORD)];
    let tgt_env = [("TARGET_REDIS_PASSWORD", TARGET_PASSWORD)];
    let phrase_env = [("ARCHIVE_PASSPHRASE", PASSPHRASE)];

    // Password in the URL, age recipient.
    w.run(
        &["export", "--source", &src_url, "-o", &a, "-r", &recipient],
        &[],
    )
    .ok();
    // Password from the environment, passphrase from a file.
    w.run(
        &["export", "--source", &src_plain, "-o", &p, "--passphrase"],
        &[src_env[0], ("ARCHIVE_PASSPHRASE_FILE", pass_file.as_str())],
    )
    .ok();
    w.run(&["inspect", &a, "-i", &id], &[]).ok();
    w.run(&["inspect", &p, "--json"], &phrase_env).ok();
    w.run(&["validate", &a, "-i", &id, "-o", &report], &[]).ok();
    w.run(&["validate", &p], &phrase_env).ok();
    w.run(
        &["restore", &p, "--target", &tgt, "--dry-run"],
        &[tgt_env[0], phrase_env[0]],
    )
    .ok();
    let restored = w
        .run(
            &[
                "restore",
                &a,
                "--target",
                &tgt,
                "-i",
                &id,
                "--yes",
                "--json",
                "--backup-dir",
                &backups,
            ],
            &tgt_env,
        )
        .ok()
        .json();
    w.run(&["compare", &a, "--target", &tgt, "-i", &id], &tgt_env)
        .ok();
    let backup = restored["backup"].as_str().unwrap().to_string();
    w.run(&["rollback", &backup, "--target", &tgt, "--yes"], &tgt_env)
        .ok();
    w.run(
        &[
            "copy",
            "--source",
            &src_url,
            "--target",
            &tgt,
            "--yes",
            "--backup-dir",
            &backups,
        ],
        &tgt_env,
    )
    .ok();
    w.run(
        &[
            "backup",
            "--source",
            &src_url,
            "--backup-dir",
            &folder,
            "-r",
            &recipient,
        ],
        &[],
    )
    .ok();
    w.run(
        &[
            "backup",
            "--source",
            &src_plain,
            "--backup-dir",
            &folder,
            "--passphrase",
        ],
        &[src_env[0], phrase_env[0]],
    )
    .ok();
    w.run(&["list", &folder], &[]).ok();
    w.run(&["prune", &folder, "--keep-last", "1", "--yes"], &[])
        .ok();
    // Failures name what failed, never the secret that failed.
    let wrong_url = format!("redis://:{WRONG_PASSWORD}@127.0.0.1:{}", w.source.port);
    w.run(&["export", "--source", &wrong_url, "-o", &w.path("x")], &[])
        .fails(4, "refused authentication");
    w.run(
        &["export", "--source", &src_plain, "-o", &w.path("x")],
        &[("SOURCE_REDIS_PASSWORD", WRONG_PASSWORD)],
    )
    .fails(4, "SOURCE_REDIS_PASSWORD");
    w.run(
        &["inspect", &p],
        &[("ARCHIVE_PASSPHRASE", WRONG_PASSPHRASE)],
    )
    .fails(12, "passphrase");

    let secrets = secrets(&w);
    for (i, text) in w.said.iter().enumerate() {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "output {i} holds a secret: {text}"
            );
        }
    }
    let mut files = Vec::new();
    files_under(w.dir.path(), &mut files);
    let mut checked = 0;
    let mut archives = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "key.txt" || name == "pass.txt" {
            continue; // the test's own inputs
        }
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        if f.is_dir() {
            assert_eq!(mode, 0o700, "{} is a folder of backups", f.display());
            continue;
        }
        assert_eq!(mode, 0o600, "{} holds data", f.display());
        let bytes = plaintext(&w, f);
        if bytes.windows(13).any(|win| win == b"manifest.json") {
            archives += 1; // decrypted and decompressed down to the tar
        }
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|win| win == s.as_bytes()),
                "{} holds a secret",
                f.display()
            );
        }
        checked += 1;
    }
    // Two exports, two backups (one pruned: its sidecar goes too), two
    // pre-restore backups with sidecars and journals, the report.
    assert!(checked >= 10, "{checked} files checked: {files:?}");
    assert!(archives >= 5, "{archives} archives opened to their tar");
}
