//! Servers the tests start: one `redis-server` of a kind, or a cluster.

use super::*;

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
    pub(super) cli: std::ffi::OsString,
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
    pub(super) cli: std::ffi::OsString,
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
                // Every RESTORE payload the tests write is checked whole,
                // as a server that distrusts its clients would.
                .args(["--sanitize-dump-payload", "yes"])
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

/// `grep -v '^#' FILE | CLI ARGS`, which must report no error.
pub(super) fn redis_cli_file(cli: &std::ffi::OsStr, file: &Path, args: &str) {
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
pub(super) fn slot_ranges(node: &RedisServer) -> Vec<(i64, i64, i64)> {
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

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    free_port()
}
