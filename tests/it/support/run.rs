//! Running the `archive` binary as a user would, and reading what it did.

use super::*;

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Assert success, showing stderr when it is not.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "archive failed\nstderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout_text()
        );
        self
    }

    /// Assert an exit code and that stderr is one line containing `needle`.
    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code,
            code,
            "expected exit code {code}\nstderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout_text()
        );
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}:\n{}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "an error is one line:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout_text()))
    }
}

/// What stock tools see: `zstd -dc FILE | tar ARGS` (e.g. `-t`, `-xO data/000000.jsonl`).
pub fn stock_tar(file: &Path, args: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar {args}", file.display()))
        .output()
        .expect("sh, zstd and tar");
    assert!(
        out.status.success(),
        "zstd -dc | tar {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_archive"))
}

/// Where pre-restore backups of tests go unless a test names a folder:
/// under the build's temp dir, never the developer's home.
pub fn test_backup_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("backups-{}", std::process::id()))
}

/// A command for the binary with the connection variables cleared, so a
/// developer's environment cannot leak into a test.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    hermetic(cmd)
}

/// The binary run by `sh` after `setup` (e.g. `umask 000`).
pub fn command_after(setup: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(bin())
        .args(args);
    hermetic(cmd)
}

fn hermetic(mut cmd: Command) -> Command {
    cmd.env("ARCHIVE_BACKUP_DIR", test_backup_dir());
    for var in [
        "SOURCE_REDIS_URL",
        "TARGET_REDIS_URL",
        "SOURCE_REDIS_PASSWORD",
        "TARGET_REDIS_PASSWORD",
        "SOURCE_REDIS_HOST",
        "SOURCE_REDIS_PORT",
        "SOURCE_REDIS_DB",
        "TARGET_REDIS_HOST",
        "TARGET_REDIS_PORT",
        "TARGET_REDIS_DB",
        "ARCHIVE_PASSPHRASE",
        "ARCHIVE_PASSPHRASE_FILE",
        "ARCHIVE_IDENTITY_FILE",
        "ARCHIVE_REDACT_KEY_FILE",
        "ARCHIVE_PROFILE",
        "ARCHIVE_FAILPOINT",
        "ARCHIVE_PROGRESS_INTERVAL",
    ] {
        cmd.env_remove(var);
    }
    // Progress lines would mix into the stderr tests read; the test of
    // them turns them on.
    cmd.env("ARCHIVE_PROGRESS_INTERVAL", "0");
    cmd.stdin(Stdio::null());
    cmd
}

/// The binary started with stdout and stderr captured.
pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start archive")
}

/// Wait, up to a minute, until `done`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Send `child` a signal by name (`INT`, `TERM`) with kill(1), so the
/// tests need no unsafe code.
pub fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{name} failed");
}

pub fn run(args: &[&str]) -> Run {
    output(command(args).output().expect("run archive"))
}

pub fn output(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn export(server: &RedisServer, path: &Path, extra: &[&str]) -> Run {
    export_url(&server.url(), path, extra)
}

pub fn export_url(url: &str, path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["export", "--source", url, "-o", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// `archive compare ARCHIVE --target SERVER EXTRA...`.
pub fn compare_with(target: &RedisServer, archive: &Path, extra: &[&str]) -> Run {
    let url = target.url();
    let mut args = vec!["compare", archive.to_str().unwrap(), "--target", &url];
    args.extend_from_slice(extra);
    run(&args)
}

pub fn restore(server: &RedisServer, path: &Path, extra: &[&str]) -> Run {
    restore_url(&server.url(), path, extra)
}

pub fn restore_url(url: &str, path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", path.to_str().unwrap(), "--target", url, "--yes"];
    args.extend_from_slice(extra);
    run(&args)
}
