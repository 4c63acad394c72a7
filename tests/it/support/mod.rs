//! Test support: real `redis-server` processes and the real `archive` binary.
//!
//! Every server runs on a free port with `--save ""` in its own temp dir and
//! is killed when dropped; nothing assumes a server on 6379 and nothing is
//! mocked. When a check fails, the server's log goes into the message.
//!
//! Which server: [`RedisServer::start`] and [`RedisCluster::start`] run
//! `$ARCHIVE_TEST_SERVER` and `$ARCHIVE_TEST_CLI` (default `redis-server`
//! and `redis-cli` from `PATH`), so `./scripts/test` runs a whole suite
//! against another server by setting them. A test that needs one server
//! whatever the default is starts it with [`RedisServer::start_version`];
//! [`RedisServer::version`] says what a running server is.

pub mod dataset;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::{Commands, Connection, Value};

/// A server the tests can start on purpose, whatever the default server is.
///
/// Each kind is a folder holding two executables, `redis-server` and
/// `redis-cli` (for Valkey they run `valkey-server` and `valkey-cli`), named
/// by an environment variable that `./scripts/test` sets (the folders are
/// made by `./scripts/servers`). When the variable is not set, starting such
/// a server panics: a test that needs Redis 8 never passes silently
/// without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Redis 7.0, Debian 12's `redis-server` package (`ARCHIVE_TEST_REDIS70_DIR`).
    Redis70,
    /// Redis 8.0, from Debian 13's packages (`ARCHIVE_TEST_REDIS8_DIR`).
    Redis8,
    /// Valkey 8.1, from Debian 13's packages (`ARCHIVE_TEST_VALKEY81_DIR`).
    Valkey81,
}

impl ServerKind {
    /// Every server `./scripts/test` tests against.
    pub const ALL: [ServerKind; 3] = [
        ServerKind::Redis70,
        ServerKind::Redis8,
        ServerKind::Valkey81,
    ];

    /// The environment variable naming this server's folder.
    pub fn dir_var(self) -> &'static str {
        match self {
            ServerKind::Redis70 => "ARCHIVE_TEST_REDIS70_DIR",
            ServerKind::Redis8 => "ARCHIVE_TEST_REDIS8_DIR",
            ServerKind::Valkey81 => "ARCHIVE_TEST_VALKEY81_DIR",
        }
    }

    /// The flavor and `(major, minor)` version this server reports.
    pub fn expected(self) -> (Flavor, (u32, u32)) {
        match self {
            ServerKind::Redis70 => (Flavor::Redis, (7, 0)),
            ServerKind::Redis8 => (Flavor::Redis, (8, 0)),
            ServerKind::Valkey81 => (Flavor::Valkey, (8, 1)),
        }
    }

    /// The server and cli executables, from the folder its variable names;
    /// panics when the variable is not set.
    fn binaries(self) -> Binaries {
        let var = self.dir_var();
        let dir = match std::env::var_os(var) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => panic!(
                "{self:?} is needed: set {var} to a folder with its redis-server and \
                 redis-cli; ./scripts/test does"
            ),
        };
        Binaries {
            server: dir.join("redis-server").into_os_string(),
            cli: dir.join("redis-cli").into_os_string(),
        }
    }
}

/// Redis or Valkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Redis,
    Valkey,
}

/// What a running server says it is ([`RedisServer::version`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub flavor: Flavor,
    /// The server's own version: `valkey_version` on Valkey (which also
    /// reports `redis_version:7.2.4`), else `redis_version`.
    pub version: String,
}

impl ServerVersion {
    /// Read `INFO server`.
    pub fn of(c: &mut Connection) -> Self {
        let info: String = redis::cmd("INFO").arg("server").query(c).unwrap();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        match field("valkey_version") {
            Some(version) => ServerVersion {
                flavor: Flavor::Valkey,
                version,
            },
            None => ServerVersion {
                flavor: Flavor::Redis,
                version: field("redis_version")
                    .unwrap_or_else(|| panic!("INFO server without redis_version:\n{info}")),
            },
        }
    }

    /// `(major, minor)`.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    }
}

/// A server executable and the matching cli.
#[derive(Debug, Clone)]
struct Binaries {
    server: std::ffi::OsString,
    cli: std::ffi::OsString,
}

impl Binaries {
    /// `$ARCHIVE_TEST_SERVER` and `$ARCHIVE_TEST_CLI`, else `redis-server`
    /// and `redis-cli` from `PATH`.
    fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        };
        Binaries {
            server: var("ARCHIVE_TEST_SERVER", "redis-server"),
            cli: var("ARCHIVE_TEST_CLI", "redis-cli"),
        }
    }
}

pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The cli that goes with this server (for loading command files and
    /// creating clusters).
    cli: std::ffi::OsString,
}

impl RedisServer {
    /// Start the default server (`$ARCHIVE_TEST_SERVER`, else `redis-server`).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Start the default server with extra `redis-server` arguments (e.g.
    /// `--requirepass x`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_binaries(&Binaries::from_env(), extra)
    }

    /// Start a server of one kind, whatever the default server is, for a
    /// test of what only that server has. Panics when its folder's variable
    /// (see [`ServerKind`]) is not set, or when the server there reports
    /// another flavor or version than `kind`.
    ///
    /// ```ignore
    /// // Hash field TTLs exist from Redis 8.0 on.
    /// let src = RedisServer::start_version(ServerKind::Redis8);
    /// let dst = RedisServer::start_version(ServerKind::Redis8);
    /// let _: () = redis::cmd("HSET").arg("h").arg("f").arg("v").query(&mut src.conn()).unwrap();
    /// // ... HPEXPIRE h 60000 FIELDS 1 f, export src, restore into dst, compare ...
    /// ```
    ///
    /// A test run against the default server can ask it what it is with
    /// [`RedisServer::version`] (flavor and `major_minor`).
    pub fn start_version(kind: ServerKind) -> Self {
        Self::start_version_with(kind, &[])
    }

    /// [`RedisServer::start_version`] with extra server arguments.
    pub fn start_version_with(kind: ServerKind, extra: &[&str]) -> Self {
        let binaries = kind.binaries();
        let server = Self::start_binaries(&binaries, extra);
        let found = server.version();
        let (flavor, major_minor) = kind.expected();
        assert!(
            found.flavor == flavor && found.major_minor() == major_minor,
            "{kind:?} was asked for, but {} is {found:?}",
            binaries.server.to_string_lossy()
        );
        server
    }

    fn start_binaries(binaries: &Binaries, extra: &[&str]) -> Self {
        let name = binaries.server.to_string_lossy();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let child = Command::new(&binaries.server)
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--dir", dir.path().to_str().unwrap()])
                .args(["--logfile", "redis.log"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {name}: {e} (the server is $ARCHIVE_TEST_SERVER, else \
                         redis-server: apt-get install redis-server)"
                    )
                });
            let mut server = RedisServer {
                child,
                port,
                dir,
                cli: binaries.cli.clone(),
            };
            if server.wait_ready(extra) {
                return server;
            }
            last_log = server.log();
        }
        panic!("{name} did not start; last log:\n{last_log}");
    }

    /// What this server says it is (`INFO server`): Redis or Valkey, and
    /// its version.
    pub fn version(&self) -> ServerVersion {
        ServerVersion::of(&mut self.conn())
    }

    fn wait_ready(&mut self, extra: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_string());
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let url = match &password {
                Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
                None => self.url(),
            };
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn url_db(&self, db: i64) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn conn(&self) -> Connection {
        self.conn_db(0)
    }

    pub fn conn_db(&self, db: i64) -> Connection {
        redis::Client::open(self.url_db(db).as_str())
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| panic!("connect to test server: {e}\n{}", self.log()))
    }

    /// `master` or `slave`, as ROLE says.
    pub fn role(&self) -> String {
        let role: Vec<Value> = redis::cmd("ROLE").query(&mut self.conn()).unwrap();
        redis::from_redis_value(role[0].clone()).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn dbsize(&self, db: i64) -> u64 {
        redis::cmd("DBSIZE").query(&mut self.conn_db(db)).unwrap()
    }

    /// Run a file of redis-cli commands (the fixtures' data loaders), as
    /// their header says: `grep -v '^#' FILE | redis-cli -p PORT`.
    pub fn load_commands(&self, file: &Path) {
        redis_cli_file(&self.cli, file, &format!("-p {}", self.port));
    }

    /// Every key with its state and expiry time, for exact before/after checks.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, (KeyState, Option<i64>)> {
        let mut c = self.conn();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let state = key_state(&mut c, &k).expect("key exists");
                let at = expire_time(&mut c, &k);
                (k, (state, at))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local Redis Cluster, each node on free client and bus ports, created
/// with `redis-cli --cluster create`: three primaries, and replicas only for
/// the tests that need a failover (three processes start faster than six).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(3, 0)
    }

    /// `primaries` primaries, each with `replicas` replicas.
    pub fn start_with(primaries: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                    // Replicas sync at once, not after the default 5 s.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(&nodes[0].cli)
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nodes[0].cli.to_string_lossy()));
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_stable();
        cluster
    }

    /// Wait until every node says the cluster is ok, agrees on who serves
    /// which slot, and every replica is in sync with its primary.
    pub fn wait_stable(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let views: Vec<String> = self
                .nodes
                .iter()
                .map(|n| {
                    let mut c = n.conn();
                    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
                    let replication: String =
                        redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
                    let synced = !replication.contains("master_link_status:down");
                    let state = if info.contains("cluster_state:ok") && synced {
                        "ok"
                    } else {
                        "not ok"
                    };
                    format!("{state} {}", self.slot_view(n))
                })
                .collect();
            if views[0].starts_with("ok ") && views.iter().all(|v| v == &views[0]) {
                return;
            }
            if Instant::now() > deadline {
                let nodes: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| {
                        redis::cmd("CLUSTER")
                            .arg("NODES")
                            .query::<String>(&mut n.conn())
                            .unwrap()
                    })
                    .collect();
                panic!(
                    "the cluster did not become stable:\n{}\n{}",
                    views.join("\n"),
                    nodes.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A node's view of slot ownership: "range:port" sorted.
    fn slot_view(&self, node: &RedisServer) -> String {
        let mut view: Vec<String> = slot_ranges(node)
            .into_iter()
            .map(|(a, b, port)| format!("{a}-{b}:{port}"))
            .collect();
        view.sort();
        view.join(",")
    }

    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// A node's id in the cluster.
    pub fn node_id(&self, node: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[node].conn())
            .unwrap()
    }

    /// The index of the node serving `key`'s slot.
    pub fn owner(&self, key: &[u8]) -> usize {
        self.owner_of_slot(self.slot(key))
    }

    /// `key`'s hash slot, as the server computes it.
    pub fn slot(&self, key: &[u8]) -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].conn())
            .unwrap()
    }

    /// The node that says it serves `slot` (each node knows its own
    /// slots at once; another node's view may lag behind the gossip).
    pub fn owner_of_slot(&self, slot: i64) -> usize {
        self.nodes
            .iter()
            .position(|n| {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut n.conn())
                    .unwrap();
                let me = nodes.lines().find(|l| l.contains("myself")).unwrap();
                me.split_whitespace().skip(8).any(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    match (a.parse::<i64>(), b.parse::<i64>()) {
                        (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                        _ => false,
                    }
                })
            })
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    /// Each node's idea of who serves `slot`, as a port.
    fn views_of_slot(&self, slot: i64) -> Vec<i64> {
        self.nodes
            .iter()
            .map(|n| {
                slot_ranges(n)
                    .into_iter()
                    .find_map(|(a, b, port)| (a..=b).contains(&slot).then_some(port))
                    .unwrap_or(-1)
            })
            .collect()
    }

    /// Move `slot` from its primary to node `to`, keys included, the way
    /// `redis-cli --cluster reshard` does: IMPORTING, MIGRATING, MIGRATE
    /// each key, then NODE on every primary.
    pub fn move_slot(&self, slot: i64, to: usize) {
        let from = self.owner_of_slot(slot);
        if from == to {
            return;
        }
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let mut src = self.nodes[from].conn();
        let mut dst = self.nodes[to].conn();
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&from_id)
            .query(&mut dst)
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&to_id)
            .query(&mut src)
            .unwrap();
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut src)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .unwrap();
        }
        for node in [to, from] {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&to_id)
                .query(&mut self.nodes[node].conn())
                .unwrap();
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if i != to && i != from {
                let _: () = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id)
                    .query(&mut node.conn())
                    .unwrap();
            }
        }
        let port = self.nodes[to].port as i64;
        wait_for("every node to see the slot moved", || {
            let agreed = self.views_of_slot(slot).iter().all(|&p| p == port);
            if !agreed {
                std::thread::sleep(Duration::from_millis(10));
            }
            agreed
        });
    }

    /// The nodes that are primaries now (replicas hold copies of their keys).
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.nodes.iter().filter(|n| n.role() == "master").collect()
    }

    /// Every key of every primary with its state and expiry time.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, (KeyState, Option<i64>)> {
        let mut all = BTreeMap::new();
        for node in self.primaries() {
            for (k, v) in node.snapshot() {
                assert!(all.insert(k, v).is_none(), "a key on two nodes");
            }
        }
        all
    }

    pub fn dbsize(&self) -> u64 {
        self.primaries().iter().map(|n| n.dbsize(0)).sum()
    }

    /// Keys held by each primary.
    pub fn sizes(&self) -> Vec<u64> {
        self.primaries().iter().map(|n| n.dbsize(0)).collect()
    }

    /// Run a file of redis-cli commands in cluster mode (`redis-cli -c`
    /// follows the redirections).
    pub fn load_commands(&self, file: &Path) {
        redis_cli_file(
            &self.nodes[0].cli,
            file,
            &format!("-c -p {}", self.nodes[0].port),
        );
    }
}

/// `grep -v '^#' FILE | CLI ARGS`, which must report no error.
fn redis_cli_file(cli: &std::ffi::OsStr, file: &Path, args: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("grep -v '^#' '{}' | \"$0\" {args}", file.display()))
        .arg(cli)
        .output()
        .expect("sh, grep and redis-cli");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("ERR"),
        "loading {}: {stdout}{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node's CLUSTER SLOTS: (first slot, last slot, primary's port).
fn slot_ranges(node: &RedisServer) -> Vec<(i64, i64, i64)> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut node.conn())
        .unwrap();
    slots
        .into_iter()
        .map(|s| {
            let Value::Array(items) = s else {
                panic!("CLUSTER SLOTS: {s:?}")
            };
            let Value::Array(primary) = items[2].clone() else {
                panic!("CLUSTER SLOTS: {items:?}")
            };
            let int = |v: &Value| redis::from_redis_value::<i64>(v.clone()).unwrap();
            (int(&items[0]), int(&items[1]), int(&primary[1]))
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    free_port()
}

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
        "ARCHIVE_PASSPHRASE",
        "ARCHIVE_PASSPHRASE_FILE",
        "ARCHIVE_IDENTITY_FILE",
        "ARCHIVE_PROFILE",
        "ARCHIVE_FAILPOINT",
    ] {
        cmd.env_remove(var);
    }
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

pub fn restore(server: &RedisServer, path: &Path, extra: &[&str]) -> Run {
    restore_url(&server.url(), path, extra)
}

pub fn restore_url(url: &str, path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", path.to_str().unwrap(), "--target", url, "--yes"];
    args.extend_from_slice(extra);
    run(&args)
}

/// A key's full state, in a form that compares exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    String(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A hash some of whose fields have their own expiry: the fields, and
    /// (field, `HPEXPIRETIME` in ms) of those that expire, sorted.
    ExpiringHash(Vec<(Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, i64)>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    /// (member, score bits) sorted by member.
    Zset(Vec<(Vec<u8>, u64)>),
    Stream {
        entries: Vec<(String, Vec<Vec<u8>>)>,
        last_id: String,
        entries_added: i64,
        max_deleted_id: String,
        /// (name, last-delivered-id, entries-read) sorted by name.
        groups: Vec<(Vec<u8>, String, Option<i64>)>,
        /// (group, consumer names sorted) sorted by group. Seen and active
        /// times are left out: no command can set them.
        consumers: Consumers,
        /// Pending entries: (group, id, consumer, delivery count, delivery
        /// time in ms) sorted. Entries whose message is no longer in the
        /// stream are left out: no command can create them, so a restore
        /// counts them instead (`pending_not_restored`).
        pending: Pending,
    },
}

/// Read one key's type and value; `None` when it does not exist.
pub fn key_state(c: &mut Connection, key: &[u8]) -> Option<KeyState> {
    let t: String = redis::cmd("TYPE").arg(key).query(c).unwrap();
    Some(match t.as_str() {
        "none" => return None,
        "string" => KeyState::String(c.get(key).unwrap()),
        "hash" => {
            let mut v: Vec<(Vec<u8>, Vec<u8>)> = c.hgetall(key).unwrap();
            v.sort();
            with_field_expiry(c, key, v)
        }
        "list" => KeyState::List(c.lrange(key, 0, -1).unwrap()),
        "set" => {
            let mut v: Vec<Vec<u8>> = c.smembers(key).unwrap();
            v.sort();
            KeyState::Set(v)
        }
        "zset" => {
            let raw: Vec<(Vec<u8>, String)> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
                .unwrap();
            let mut v: Vec<(Vec<u8>, u64)> = raw
                .into_iter()
                .map(|(m, s)| (m, parse_score(&s).to_bits()))
                .collect();
            v.sort();
            KeyState::Zset(v)
        }
        "stream" => stream_state(c, key),
        other => panic!("unexpected type {other}"),
    })
}

fn parse_score(s: &str) -> f64 {
    match s {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

fn info_map(v: Value) -> BTreeMap<String, Value> {
    let items = match v {
        Value::Array(items) => items,
        other => panic!("expected array, got {other:?}"),
    };
    let mut map = BTreeMap::new();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(redis::from_redis_value::<String>(k).unwrap(), v);
    }
    map
}

fn stream_state(c: &mut Connection, key: &[u8]) -> KeyState {
    let raw: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query::<Vec<Value>>(c)
        .unwrap()
        .into_iter()
        .map(|e| redis::from_redis_value::<(String, Vec<Vec<u8>>)>(e).unwrap())
        .collect();
    let info = info_map(redis::cmd("XINFO").arg("STREAM").arg(key).query(c).unwrap());
    let s = |m: &BTreeMap<String, Value>, k: &str| {
        redis::from_redis_value::<String>(m[k].clone()).unwrap()
    };
    let groups_raw: Vec<Value> = redis::cmd("XINFO").arg("GROUPS").arg(key).query(c).unwrap();
    let mut groups: Vec<(Vec<u8>, String, Option<i64>)> = groups_raw
        .into_iter()
        .map(|g| {
            let m = info_map(g);
            (
                redis::from_redis_value::<Vec<u8>>(m["name"].clone()).unwrap(),
                s(&m, "last-delivered-id"),
                redis::from_redis_value::<Option<i64>>(m["entries-read"].clone()).unwrap(),
            )
        })
        .collect();
    groups.sort();
    let (consumers, pending) = stream_pel(c, key, &raw);
    KeyState::Stream {
        entries: raw,
        last_id: s(&info, "last-generated-id"),
        entries_added: redis::from_redis_value::<i64>(info["entries-added"].clone()).unwrap(),
        max_deleted_id: s(&info, "max-deleted-entry-id"),
        groups,
        consumers,
        pending,
    }
}

/// A stream's consumers: (group, names).
pub type Consumers = Vec<(Vec<u8>, Vec<Vec<u8>>)>;
/// A stream's pending entries: (group, id, consumer, delivery count, delivery time).
pub type Pending = Vec<(Vec<u8>, String, Vec<u8>, i64, i64)>;

/// Consumers and pending entries of every group, from XINFO STREAM FULL
/// (exact delivery times), leaving out entries whose message is gone.
fn stream_pel(
    c: &mut Connection,
    key: &[u8],
    entries: &[(String, Vec<Vec<u8>>)],
) -> (Consumers, Pending) {
    let ids: std::collections::HashSet<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    let full = info_map(
        redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .arg("FULL")
            .arg("COUNT")
            .arg(0)
            .query(c)
            .unwrap(),
    );
    let groups: Vec<Value> = redis::from_redis_value(full["groups"].clone()).unwrap();
    let mut consumers = Vec::new();
    let mut pending = Vec::new();
    for group in groups {
        let g = info_map(group);
        let name: Vec<u8> = redis::from_redis_value(g["name"].clone()).unwrap();
        let mut names: Vec<Vec<u8>> = redis::from_redis_value::<Vec<Value>>(g["consumers"].clone())
            .unwrap()
            .into_iter()
            .map(|c| redis::from_redis_value(info_map(c)["name"].clone()).unwrap())
            .collect();
        names.sort();
        consumers.push((name.clone(), names));
        let pel: Vec<(String, Vec<u8>, i64, i64)> =
            redis::from_redis_value(g["pending"].clone()).unwrap();
        for (id, consumer, at, count) in pel {
            if ids.contains(id.as_str()) {
                pending.push((name.clone(), id, consumer, count, at));
            }
        }
    }
    consumers.sort();
    pending.sort();
    (consumers, pending)
}

/// Absolute expiry in ms (PEXPIRETIME), or None for a key without one.
pub fn expire_time(c: &mut Connection, key: &[u8]) -> Option<i64> {
    let t: i64 = redis::cmd("PEXPIRETIME").arg(key).query(c).unwrap();
    (t >= 0).then_some(t)
}

/// Compare two databases key by key: same keys, types, values, and expiry
/// times within `ttl_tolerance_ms`. Walks `a` with SCAN in batches (reads
/// pipelined), so it works for big databases; returns the keys compared.
pub fn assert_same_db(a: &mut Connection, b: &mut Connection, ttl_tolerance_ms: i64) -> u64 {
    let size_a: u64 = redis::cmd("DBSIZE").query(a).unwrap();
    let size_b: u64 = redis::cmd("DBSIZE").query(b).unwrap();
    assert_eq!(
        size_a, size_b,
        "the databases hold different numbers of keys"
    );
    let mut cursor: u64 = 0;
    let mut compared = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(a)
            .unwrap();
        let sa = batch_states(a, &keys);
        let sb = batch_states(b, &keys);
        for ((key, (va, ea)), (vb, eb)) in keys.iter().zip(sa).zip(sb) {
            assert!(
                va == vb,
                "key {:?} differs:\n  source: {}\n  target: {}",
                String::from_utf8_lossy(key),
                abbreviate(&va),
                abbreviate(&vb)
            );
            match (ea, eb) {
                (None, None) => {}
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= ttl_tolerance_ms,
                    "key {:?}: expiry {x} vs {y}",
                    String::from_utf8_lossy(key)
                ),
                _ => panic!(
                    "key {:?}: expiry {ea:?} vs {eb:?}",
                    String::from_utf8_lossy(key)
                ),
            }
            compared += 1;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    compared
}

/// A hash's state with the expiry of each of its fields that has one, read
/// with `HPEXPIRETIME` on servers that have it.
fn with_field_expiry(c: &mut Connection, key: &[u8], fields: Vec<(Vec<u8>, Vec<u8>)>) -> KeyState {
    let supported: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("HPEXPIRETIME")
        .query(c)
        .unwrap();
    if fields.is_empty() || matches!(supported.first(), None | Some(Value::Nil)) {
        return KeyState::Hash(fields);
    }
    let mut cmd = redis::cmd("HPEXPIRETIME");
    cmd.arg(key).arg("FIELDS").arg(fields.len());
    for (f, _) in &fields {
        cmd.arg(f);
    }
    let times: Vec<i64> = cmd.query(c).unwrap();
    let expiring: Vec<(Vec<u8>, i64)> = fields
        .iter()
        .zip(times)
        .filter(|(_, t)| *t >= 0)
        .map(|((f, _), t)| (f.clone(), t))
        .collect();
    if expiring.is_empty() {
        KeyState::Hash(fields)
    } else {
        KeyState::ExpiringHash(fields, expiring)
    }
}

/// Type, value and expiry of each key, in two pipelined round trips
/// (streams, which need several commands, one by one).
fn batch_states(c: &mut Connection, keys: &[Vec<u8>]) -> Vec<(Option<KeyState>, Option<i64>)> {
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("TYPE").arg(k).cmd("PEXPIRETIME").arg(k);
    }
    let meta: Vec<(String, i64)> = pipe.query(c).unwrap();
    let mut pipe = redis::pipe();
    for (k, (t, _)) in keys.iter().zip(&meta) {
        match t.as_str() {
            "string" => pipe.cmd("GET").arg(k),
            "hash" => pipe.cmd("HGETALL").arg(k),
            "list" => pipe.cmd("LRANGE").arg(k).arg(0).arg(-1),
            "set" => pipe.cmd("SMEMBERS").arg(k),
            "zset" => pipe.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
            _ => pipe.cmd("PING"),
        };
    }
    let values: Vec<Value> = pipe.query(c).unwrap();
    keys.iter()
        .zip(meta)
        .zip(values)
        .map(|((k, (t, exp)), v)| {
            let state = match t.as_str() {
                "none" => None,
                "string" => Some(KeyState::String(redis::from_redis_value(v).unwrap())),
                "hash" => {
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = redis::from_redis_value(v).unwrap();
                    pairs.sort();
                    Some(with_field_expiry(c, k, pairs))
                }
                "list" => Some(KeyState::List(redis::from_redis_value(v).unwrap())),
                "set" => {
                    let mut m: Vec<Vec<u8>> = redis::from_redis_value(v).unwrap();
                    m.sort();
                    Some(KeyState::Set(m))
                }
                "zset" => {
                    let raw: Vec<(Vec<u8>, String)> = redis::from_redis_value(v).unwrap();
                    let mut m: Vec<(Vec<u8>, u64)> = raw
                        .into_iter()
                        .map(|(m, s)| (m, parse_score(&s).to_bits()))
                        .collect();
                    m.sort();
                    Some(KeyState::Zset(m))
                }
                _ => key_state(c, k),
            };
            (state, (exp >= 0).then_some(exp))
        })
        .collect()
}

fn abbreviate(s: &Option<KeyState>) -> String {
    let text = format!("{s:?}");
    if text.len() > 400 {
        format!("{}... ({} chars)", &text[..400], text.len())
    } else {
        text
    }
}

/// Fill a database with every type and the awkward cases: binary and empty
/// keys and values, infinite scores, streams with deleted entries and
/// consumer groups, keys with and without TTLs.
pub fn load_mixed(c: &mut Connection) {
    let bin: &[u8] = &[0xff, 0x00, 0xfe, b'\n', b'"'];
    redis::pipe()
        .cmd("SET")
        .arg("str:plain")
        .arg("hello")
        .cmd("SET")
        .arg("str:empty")
        .arg("")
        .cmd("SET")
        .arg(bin)
        .arg(bin)
        .cmd("SET")
        .arg("")
        .arg("empty key name")
        .cmd("SET")
        .arg("str:int")
        .arg(12345)
        .cmd("SET")
        .arg("str:unicode")
        .arg("héllo wörld ✓")
        .cmd("SET")
        .arg("str:ttl")
        .arg("expiring")
        .arg("PX")
        .arg(600_000)
        .cmd("HSET")
        .arg("hash:1")
        .arg("name")
        .arg("Ann")
        .arg("")
        .arg("empty field")
        .arg(bin)
        .arg("")
        .cmd("PEXPIRE")
        .arg("hash:1")
        .arg(900_000)
        .cmd("RPUSH")
        .arg("list:1")
        .arg("a")
        .arg("")
        .arg(bin)
        .arg("a")
        .cmd("SADD")
        .arg("set:1")
        .arg("x")
        .arg("")
        .arg(bin)
        .cmd("ZADD")
        .arg("zset:1")
        .arg("+inf")
        .arg("top")
        .arg("-inf")
        .arg("bottom")
        .arg(0.1)
        .arg("tenth")
        .arg(-0.0)
        .arg("negzero")
        .arg(1e300)
        .arg("huge")
        .arg("5e-324")
        .arg(bin)
        .cmd("XADD")
        .arg("stream:1")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("XADD")
        .arg("stream:1")
        .arg("1-2")
        .arg(bin)
        .arg(bin)
        .cmd("XADD")
        .arg("stream:1")
        .arg("5-0")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("d")
        .cmd("XDEL")
        .arg("stream:1")
        .arg("1-2")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:1")
        .arg("readers")
        .arg("1-1")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:1")
        .arg(bin)
        .arg("$")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:empty")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .cmd("PEXPIRE")
        .arg("stream:1")
        .arg(700_000)
        .query::<()>(c)
        .unwrap();
    // A consumer reads one entry so entries-read is set on the group.
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("readers")
        .arg("alice")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("stream:1")
        .arg(">")
        .query(c)
        .unwrap();
    load_job_queue(c, "stream:jobs");
}

/// A stream used as a job queue: two groups, several consumers (one with a
/// binary name, one without pending entries), entries delivered more than
/// once, one acknowledged, one pending entry whose message was deleted
/// (XDEL leaves it in the PEL), and the last id moved on with XSETID.
pub fn load_job_queue(c: &mut Connection, key: &str) {
    let bin: &[u8] = &[0xff, 0x00, b'c'];
    let mut pipe = redis::pipe();
    for i in 1..=10 {
        pipe.cmd("XADD")
            .arg(key)
            .arg(format!("{i}-0"))
            .arg("job")
            .arg(i);
    }
    let read = |pipe: &mut redis::Pipeline, group: &str, consumer: &[u8], count: usize| {
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(key)
            .arg(">");
    };
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("workers")
        .arg("0");
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("audit")
        .arg("0");
    read(&mut pipe, "workers", b"w1", 3);
    read(&mut pipe, "workers", b"w2", 3);
    read(&mut pipe, "audit", bin, 5);
    // Delivered again, to another consumer: two more deliveries.
    for _ in 0..2 {
        pipe.cmd("XCLAIM")
            .arg(key)
            .arg("workers")
            .arg("w3")
            .arg(0)
            .arg("1-0");
    }
    // Delivered four times, the last a minute ago.
    pipe.cmd("XCLAIM")
        .arg(key)
        .arg("workers")
        .arg("w1")
        .arg(0)
        .arg("2-0")
        .arg("IDLE")
        .arg(60_000)
        .arg("RETRYCOUNT")
        .arg(4);
    pipe.cmd("XACK").arg(key).arg("workers").arg("3-0");
    pipe.cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(key)
        .arg("workers")
        .arg("idle-worker");
    // 6-0 is pending for w2 in workers only.
    pipe.cmd("XDEL").arg(key).arg("6-0");
    pipe.cmd("XSETID").arg(key).arg("100-7");
    let _: Vec<Value> = pipe.query(c).unwrap();
}
