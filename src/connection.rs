//! Where a Redis server is, how to log in, and how to talk to it.
//!
//! URLs follow redis-cli: `redis://[user[:password]@]host[:port][/db]`, and
//! `rediss://` for TLS. The password may instead come from the environment so
//! that it never has to be on a command line; it is kept only inside the
//! connection info and is never part of [`Endpoint::display`], which is what
//! every message, manifest and report uses.

pub use crate::archive::manifest::{Address, ServerInfo};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, ServerErrorKind, Value,
};

use crate::cluster::{self, Router, Topology};
use crate::error::{Error, Result};

/// Which side of a transfer an endpoint is; decides the environment
/// variables that are named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server read from (export, the source of a copy).
    Source,
    /// The server written to or compared with (restore, copy, rollback,
    /// compare).
    Target,
}

impl Side {
    /// The environment variable that holds this side's password.
    pub fn password_env(self) -> &'static str {
        match self {
            Side::Source => "SOURCE_REDIS_PASSWORD",
            Side::Target => "TARGET_REDIS_PASSWORD",
        }
    }
}

/// Timeouts for one endpoint. A response timeout is off by default: a big
/// collection chunk or a slow server must not be cut off half way.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long to wait for a connection to be set up.
    pub connect: Duration,
    /// How long to wait for a reply; `None` waits as long as it takes.
    pub response: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            response: None,
        }
    }
}

/// A resolved endpoint: connection info with credentials, and a display form
/// without them.
#[derive(Clone)]
pub struct Endpoint {
    info: ConnectionInfo,
    side: Side,
    timeouts: Timeouts,
    /// Whether the database was chosen (URL path or --db), as opposed to
    /// the default 0; restore and copy pick their own default otherwise.
    explicit_db: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the ConnectionInfo: it holds the password.
        f.debug_struct("Endpoint")
            .field("address", &self.display())
            .field("side", &self.side)
            .finish()
    }
}

impl Endpoint {
    /// Resolve `url`, with `db` overriding the URL's database and `password`
    /// (from the environment) filling in a password the URL does not have.
    pub fn resolve(
        url: &str,
        db: Option<i64>,
        password: Option<String>,
        side: Side,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let bad = |reason: String| Error::BadUrl {
            url: redact_url(url),
            reason,
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(bad("the scheme must be redis:// or rediss://".into()));
        }
        let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(db) = db {
            if db < 0 {
                return Err(bad(format!("database index {db} is negative")));
            }
            settings = settings.set_db(db);
        }
        if settings.password().is_none()
            && let Some(password) = password.filter(|p| !p.is_empty())
        {
            settings = settings.set_password(password);
        }
        Ok(Endpoint {
            info: info.set_redis_settings(settings),
            side,
            timeouts,
            explicit_db: db.is_some() || url_names_db(url),
        })
    }

    /// Whether the database was named (in the URL or explicitly), as
    /// opposed to the default 0.
    pub fn has_explicit_db(&self) -> bool {
        self.explicit_db
    }

    /// The same endpoint on another database.
    pub(crate) fn with_db(&self, db: i64) -> Self {
        let settings = self.info.redis_settings().clone().set_db(db);
        Endpoint {
            info: self.info.clone().set_redis_settings(settings),
            side: self.side,
            timeouts: self.timeouts,
            explicit_db: true,
        }
    }

    /// The same endpoint on `db` unless one was chosen: the database a
    /// restore or copy goes to when the user named none. A cluster, which
    /// has only database 0, takes it as 0.
    pub(crate) fn or_db(&self, db: i64) -> Self {
        if self.explicit_db {
            return self.clone();
        }
        Endpoint {
            explicit_db: false,
            ..self.with_db(db)
        }
    }

    /// The same credentials and TLS settings for another node.
    fn with_address(&self, host: &str, port: u16) -> Self {
        let addr = match self.info.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        Endpoint {
            info: self.info.clone().set_addr(addr),
            ..self.clone()
        }
    }

    /// The database index.
    pub fn db(&self) -> i64 {
        self.info.redis_settings().db()
    }

    /// Which side of a transfer this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Host, port, database and TLS, without credentials, as an archive
    /// records it.
    pub fn address(&self) -> Address {
        let (host, port, tls) = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            ConnectionAddr::Unix(path) => (path.display().to_string(), 0, false),
            #[allow(unreachable_patterns)]
            _ => ("unknown".into(), 0, false),
        };
        Address {
            host,
            port,
            db: self.db(),
            tls,
        }
    }

    /// `host:port/db`, or `rediss://host:port/db` for TLS. Safe to print.
    pub fn display(&self) -> String {
        let a = self.address();
        let scheme = if a.tls { "rediss://" } else { "" };
        format!("{scheme}{}:{}/{}", a.host, a.port, a.db)
    }

    /// Open a connection (to a single server, or to a whole cluster when
    /// the server is a cluster node); fails at once when the server cannot
    /// be reached.
    pub async fn connect(&self) -> Result<Conn> {
        self.connect_retrying(0).await
    }

    /// Connect, and when the connection drops (a killed client, a restarted
    /// proxy) connect again and send the command again, up to `attempts`
    /// times with backoff, for this connection's whole life. For read-only
    /// use: a write sent twice could apply twice.
    ///
    /// A cluster node gives a connection to the whole cluster, on database
    /// 0 (the only one a cluster has) unless another was asked for.
    pub(crate) async fn connect_retrying(&self, attempts: u32) -> Result<Conn> {
        let mut attempt = 0;
        loop {
            match self.open().await {
                Ok((link, endpoint)) => {
                    return Ok(Conn {
                        link,
                        endpoint,
                        retries: attempts,
                        in_cluster: false,
                    });
                }
                Err(Opened::Dropped(_)) if attempt < attempts => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(Opened::Dropped(e) | Opened::Failed(e)) => {
                    return Err(self.classify(e, "connecting"));
                }
                Err(Opened::Refused(e)) => return Err(e),
            }
        }
    }

    /// One connection to this endpoint's node.
    async fn open_node(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(self.info.clone())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(self.timeouts.response);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn open(&self) -> std::result::Result<(Link, Endpoint), Opened> {
        let sort = |e: RedisError| {
            if is_dropped(&e) && !e.is_connection_refusal() {
                Opened::Dropped(e)
            } else {
                Opened::Failed(e)
            }
        };
        let mut endpoint = self.clone();
        let mut inner = match self.open_node().await {
            Ok(c) => c,
            // The database was only a default (the archive's): a cluster
            // has database 0 alone, so that is where the data goes.
            Err(e) if is_cluster_select(&e) && !self.explicit_db => {
                endpoint = self.or_db(0);
                endpoint.open_node().await.map_err(sort)?
            }
            Err(e) if is_cluster_select(&e) => {
                return Err(Opened::Refused(Error::ClusterDb {
                    endpoint: self.display(),
                    db: self.db(),
                }));
            }
            Err(e) => return Err(sort(e)),
        };
        // A user not allowed INFO is taken for a single server.
        let cluster: String = match redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut inner)
            .await
        {
            Ok(text) => text,
            Err(e) if is_dropped(&e) => return Err(Opened::Dropped(e)),
            Err(_) => String::new(),
        };
        if !cluster.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Ok((Link::Single(inner), endpoint));
        }
        let nodes: String = match redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut inner)
            .await
        {
            Ok(nodes) => nodes,
            Err(e) if is_dropped(&e) => return Err(Opened::Dropped(e)),
            // Connected, but not allowed to map the cluster (an ACL without
            // CLUSTER NODES): a refused command, not an unreachable server.
            Err(e) => {
                return Err(Opened::Refused(
                    endpoint.classify(e, "reading the cluster's slots (CLUSTER NODES)"),
                ));
            }
        };
        let host = endpoint.address().host;
        let topology = Topology::parse(&nodes, &host).map_err(|reason| {
            Opened::Refused(Error::Cluster {
                endpoint: endpoint.display(),
                reason,
            })
        })?;
        if topology.covered() < cluster::SLOTS {
            return Err(Opened::Refused(Error::Cluster {
                endpoint: endpoint.display(),
                reason: format!(
                    "the cluster serves only {} of {} slots; run `redis-cli --cluster check` and fix it first",
                    topology.covered(),
                    cluster::SLOTS
                ),
            }));
        }
        let template = endpoint.clone();
        let open: cluster::Open = Arc::new(move |address: String| {
            let node = template.node_endpoint(&address);
            Box::pin(async move { node.open_node().await })
        });
        let router = Router::new(topology, host, open);
        Ok((Link::Cluster(Arc::new(router)), endpoint))
    }

    /// This endpoint's settings for the node at `host:port`.
    fn node_endpoint(&self, address: &str) -> Endpoint {
        let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
        self.with_address(host, port.parse().unwrap_or(0))
    }

    /// Turn a driver error into the error a user can act on.
    pub(crate) fn classify(&self, err: RedisError, action: &str) -> Error {
        let endpoint = self.display();
        let reason = describe_redis_error(&err);
        let lower = reason.to_ascii_lowercase();
        if err.kind() == ErrorKind::AuthenticationFailed
            || matches!(err.code(), Some("WRONGPASS") | Some("NOAUTH"))
            || lower.contains("wrongpass")
            || lower.contains("noauth")
            || lower.contains("invalid password")
        {
            return Error::AuthRefused {
                endpoint,
                reason,
                password_env: self.side.password_env(),
            };
        }
        if lower.contains("db index is out of range") || lower.contains("invalid db index") {
            return Error::DbOutOfRange {
                endpoint,
                db: self.db(),
                reason,
            };
        }
        if action == "connecting" || err.is_connection_refusal() {
            return Error::Unreachable { endpoint, reason };
        }
        if err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) {
            return Error::Redis {
                endpoint,
                action: action.into(),
                reason: format!("{reason}; the user lacks a permission this command needs"),
            };
        }
        Error::Redis {
            endpoint,
            action: action.into(),
            reason,
        }
    }
}

fn describe_redis_error(err: &RedisError) -> String {
    // The driver's Display can span lines; errors here are one line.
    err.to_string().replace('\n', " ")
}

/// Whether a URL has a database path (`redis://host:6379/2`).
fn url_names_db(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.split_once('/') {
        Some((_, path)) => !path.trim_matches('/').is_empty(),
        None => false,
    }
}

/// Strip the password from a URL before it is shown anywhere.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let redacted = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}{}{}", &url[..scheme_end + 3], redacted, &rest[at..])
        }
        None => url.to_string(),
    }
}

/// An open connection and the endpoint it belongs to, so every failure can
/// name where it happened.
#[derive(Clone)]
pub struct Conn {
    link: Link,
    endpoint: Endpoint,
    /// Reconnects allowed per command when the connection drops; only for
    /// connections that only read, where sending a command again is safe.
    retries: u32,
    /// One primary of a cluster, read directly (an export's shard): a
    /// redirection means the slots moved under the reader.
    in_cluster: bool,
}

/// A single server (or one cluster node), or a whole cluster.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(Arc<Router>),
}

/// `SELECT` refused because the server is a cluster node.
fn is_cluster_select(err: &RedisError) -> bool {
    err.to_string()
        .to_ascii_lowercase()
        .contains("not allowed in cluster mode")
}

/// Why opening a connection failed.
enum Opened {
    /// The connection dropped while being set up: worth another try.
    Dropped(RedisError),
    Failed(RedisError),
    /// Not a server this program works with, or not a usable URL.
    Refused(Error),
}

/// Waits before reconnect attempt `n` (1-based): 100 ms doubling, at most 2 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(100u64 << (n - 1).min(5)).min(Duration::from_secs(2))
}

/// A dropped or broken connection, as opposed to a reply or a timeout.
fn is_dropped(err: &RedisError) -> bool {
    err.is_connection_dropped() || (err.is_io_error() && !err.is_timeout())
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Conn {
    /// The endpoint this connection was opened from.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether commands go to a cluster's primaries by slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// The cluster's slot map as last read, for a cluster connection.
    pub(crate) fn topology(&self) -> Option<Topology> {
        match &self.link {
            Link::Cluster(router) => Some(router.topology()),
            Link::Single(_) => None,
        }
    }

    /// Read the cluster's slot map again (`None` for a single server).
    pub(crate) async fn refresh_topology(&self) -> Result<Option<Topology>> {
        match &self.link {
            Link::Cluster(router) => router
                .refresh()
                .await
                .map(Some)
                .map_err(|e| self.endpoint.classify(e, "reading the cluster's slots")),
            Link::Single(_) => Ok(None),
        }
    }

    /// MOVED and ASK redirections followed so far (0 for a single server).
    pub fn redirects(&self) -> u64 {
        match &self.link {
            Link::Cluster(router) => router.redirects(),
            Link::Single(_) => 0,
        }
    }

    /// One connection per primary: the server itself, or each primary of a
    /// cluster, which answer for their own slots only (SCAN, DBSIZE). A
    /// redirection on one of them is an error: the slots moved.
    pub(crate) async fn shards(&self) -> Result<Vec<Conn>> {
        let Link::Cluster(router) = &self.link else {
            return Ok(vec![self.clone()]);
        };
        let mut shards = Vec::new();
        for shard in router.topology().shards {
            let endpoint = self.endpoint.with_address(&shard.host, shard.port);
            let inner = router
                .node(&shard.address())
                .await
                .map_err(|e| endpoint.classify(e, "connecting"))?;
            shards.push(Conn {
                link: Link::Single(inner),
                endpoint,
                retries: self.retries,
                in_cluster: true,
            });
        }
        Ok(shards)
    }

    /// A connection of its own to the node serving `key`, shared with
    /// nobody: for `WATCH`, whose state belongs to the connection, so that
    /// no other command stream can clear it or be caught by it.
    pub(crate) async fn dedicated(&self, key: &[u8]) -> Result<Conn> {
        let endpoint = match &self.link {
            Link::Single(_) => self.endpoint.clone(),
            Link::Cluster(router) => self.node_endpoint(&router.owner_of_key(key)),
        };
        let inner = endpoint
            .open_node()
            .await
            .map_err(|e| endpoint.classify(e, "connecting"))?;
        Ok(Conn {
            link: Link::Single(inner),
            endpoint,
            retries: 0,
            in_cluster: self.in_cluster || self.is_cluster(),
        })
    }

    fn node_endpoint(&self, address: &str) -> Endpoint {
        self.endpoint.node_endpoint(address)
    }

    /// Which node [`Conn::dedicated`] connects to for `key`.
    pub(crate) fn dedicated_address(&self, key: &[u8]) -> String {
        match &self.link {
            Link::Single(_) => self.endpoint.display(),
            Link::Cluster(router) => router.owner_of_key(key),
        }
    }

    /// Whether to try again after `err` on attempt `attempt` (0-based);
    /// reconnects first. The new connection selects the same database.
    async fn recover(&mut self, err: &RedisError, attempt: u32) -> bool {
        if attempt >= self.retries || !is_dropped(err) {
            return false;
        }
        tokio::time::sleep(backoff(attempt + 1)).await;
        match &mut self.link {
            Link::Single(inner) => {
                if let Ok(fresh) = self.endpoint.open_node().await {
                    *inner = fresh;
                }
            }
            Link::Cluster(router) => {
                let _ = router.refresh().await;
            }
        }
        true
    }

    fn exhausted(&self, err: RedisError, action: &str, attempts: u32) -> Error {
        if self.in_cluster && cluster::redirect_of_error(&err).is_some() {
            return self.slots_moved(action);
        }
        let e = self.endpoint.classify(err, action);
        match e {
            Error::Redis {
                endpoint,
                action,
                reason,
            } if attempts > 0 => Error::Redis {
                endpoint,
                action,
                reason: format!(
                    "{reason} (the connection dropped; gave up after {attempts} reconnects)"
                ),
            },
            other => other,
        }
    }

    fn slots_moved(&self, action: &str) -> Error {
        Error::Cluster {
            endpoint: self.endpoint.display(),
            reason: format!(
                "the cluster changed (a slot moved, or a replica took over) while {action}; nothing was written; run it again once the resharding or failover is over"
            ),
        }
    }

    /// Send `pipe` over this connection's link, as it is.
    async fn send(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<Vec<Value>> {
        match &mut self.link {
            Link::Single(inner) => pipe.query_async(inner).await,
            Link::Cluster(router) => router.pipeline(pipe).await,
        }
    }

    /// Run one command; `action` says what it was for in an error message.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        action: &str,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let result = match &mut self.link {
                Link::Single(inner) => cmd.query_async(inner).await,
                Link::Cluster(router) => {
                    let mut pipe = redis::pipe();
                    pipe.add_command(cmd.clone());
                    router.pipeline(&pipe).await.and_then(|replies| {
                        let reply = replies.into_iter().next().unwrap_or(Value::Nil);
                        Ok(redis::from_redis_value(reply.extract_error()?)?)
                    })
                }
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if self.recover(&e, attempt).await => attempt += 1,
                Err(e) => return Err(self.exhausted(e, action, attempt)),
            }
        }
    }

    /// Run a pipeline and return one reply per command; a command that the
    /// server refused is a `Value::ServerError` in its slot, not a failure of
    /// the whole pipeline, so callers can attribute errors to keys. Against
    /// a cluster, each command goes to its key's primary; commands with
    /// `ignore()` are not supported there (their replies are returned).
    pub async fn pipeline(
        &mut self,
        pipe: &mut redis::Pipeline,
        action: &str,
    ) -> Result<Vec<Value>> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        pipe.ignore_errors();
        let mut attempt = 0;
        loop {
            match self.send(pipe).await {
                Ok(v) => {
                    if self.in_cluster && v.iter().any(|r| cluster::redirect_of(r).is_some()) {
                        return Err(self.slots_moved(action));
                    }
                    return Ok(v);
                }
                Err(e) if self.recover(&e, attempt).await => attempt += 1,
                Err(e) => return Err(self.exhausted(e, action, attempt)),
            }
        }
    }

    /// Server facts recorded in manifests and used to pick command variants.
    pub(crate) async fn server_info(&mut self) -> Result<ServerInfo> {
        let info: String = self
            .query(redis::cmd("INFO").arg("server"), "reading INFO")
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        let version = field("valkey_version")
            .or_else(|| field("redis_version"))
            .unwrap_or_else(|| "unknown".into());
        let flavor = if field("valkey_version").is_some()
            || field("server_name").as_deref() == Some("valkey")
        {
            "valkey"
        } else {
            "redis"
        };
        Ok(ServerInfo {
            flavor: flavor.into(),
            version,
        })
    }

    /// Whether any hash in this connection's database may have fields with
    /// their own expiry: the server has the feature and `INFO keyspace`
    /// counts such keys (`subexpiry`). A cluster, whose nodes each count
    /// their own, is taken to have some.
    pub(crate) async fn may_have_field_expiry(&mut self, server: &ServerInfo) -> Result<bool> {
        if !server.has_field_expiry() {
            return Ok(false);
        }
        if self.is_cluster() {
            return Ok(true);
        }
        let info: String = self
            .query(redis::cmd("INFO").arg("keyspace"), "reading INFO")
            .await?;
        let prefix = format!("db{}:", self.endpoint.db());
        let Some(line) = info.lines().find_map(|l| l.trim().strip_prefix(&prefix)) else {
            return Ok(false);
        };
        Ok(
            match line.split(',').find_map(|kv| kv.strip_prefix("subexpiry=")) {
                Some(n) => n.trim() != "0",
                // A server with the feature that does not count: assume some.
                None => true,
            },
        )
    }

    /// The server's clock in milliseconds since the epoch. Expiry times are
    /// read and compared against the server's clock, not this machine's.
    pub(crate) async fn time_ms(&mut self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self.query(&redis::cmd("TIME"), "reading TIME").await?;
        Ok(secs * 1000 + micros / 1000)
    }
}

impl ServerInfo {
    /// PEXPIRETIME exists (Redis 7.0, Valkey 7.2 and later).
    pub(crate) fn has_pexpiretime(&self) -> bool {
        self.version_tuple() >= (7, 0)
    }

    /// `(major, minor)` of the server, `(0, 0)` when unknown.
    pub(crate) fn version_tuple(&self) -> (u32, u32) {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether this is Valkey (as opposed to Redis).
    pub(crate) fn is_valkey(&self) -> bool {
        self.flavor == "valkey"
    }

    /// Hash fields with their own expiry (`HPEXPIRE` and friends): Redis
    /// 7.4 and later, Valkey 9.0 and later.
    pub(crate) fn has_field_expiry(&self) -> bool {
        let v = self.version_tuple();
        if self.is_valkey() {
            v >= (9, 0)
        } else {
            v >= (7, 4)
        }
    }

    /// The newest RDB version this server loads (`RESTORE` refuses DUMP
    /// payloads of a newer one). From the release notes of each version;
    /// `None` for an unknown version. Valkey numbers its own RDB versions
    /// from 80 on, in 9.0.
    pub fn rdb_version(&self) -> Option<u16> {
        let v = self.version_tuple();
        if v == (0, 0) {
            return None;
        }
        Some(if self.is_valkey() {
            if v >= (9, 0) { 80 } else { 11 }
        } else {
            match v {
                v if v >= (7, 4) => 12,
                v if v >= (7, 2) => 11,
                v if v >= (7, 0) => 10,
                v if v >= (5, 0) => 9,
                _ => 8,
            }
        })
    }

    /// Redis 7.0 added XSETID ENTRIESADDED/MAXDELETEDID and XGROUP ENTRIESREAD.
    /// Valkey 7.2+ reports its own version numbers from 7.2 on, so the same test holds.
    pub(crate) fn has_stream_v7(&self) -> bool {
        self.version_tuple() >= (7, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_whether_the_url_names_a_database() {
        assert!(url_names_db("redis://h:1/2"));
        assert!(!url_names_db("redis://h:1"));
        assert!(!url_names_db("redis://h:1/"));
        assert!(url_names_db("redis://u:p@h/0?protocol=resp3"));
        let ep = Endpoint::resolve("redis://h:1", None, None, Side::Target, Timeouts::default())
            .unwrap();
        assert!(!ep.has_explicit_db());
        let moved = ep.with_db(4);
        assert_eq!((moved.db(), moved.has_explicit_db()), (4, true));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://u:secret@h:1/2"), "redis://u:***@h:1/2");
        assert_eq!(redact_url("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("rediss://secret@h"), "rediss://***@h");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    }

    #[test]
    fn display_has_no_credentials() {
        let ep = Endpoint::resolve(
            "redis://alice:hunter2@10.0.0.1:7000/3",
            None,
            None,
            Side::Source,
            Timeouts::default(),
        )
        .unwrap();
        assert_eq!(ep.display(), "10.0.0.1:7000/3");
        assert!(!format!("{ep:?}").contains("hunter2"));
    }

    #[test]
    fn db_flag_overrides_url_and_env_password_fills_in() {
        let ep = Endpoint::resolve(
            "redis://127.0.0.1:6379/3",
            Some(5),
            Some("pw".into()),
            Side::Target,
            Timeouts::default(),
        )
        .unwrap();
        assert_eq!(ep.db(), 5);
        assert_eq!(ep.info.redis_settings().password(), Some("pw"));
    }

    #[test]
    fn rejects_other_schemes_without_echoing_password() {
        let err = Endpoint::resolve(
            "http://u:topsecret@h",
            None,
            None,
            Side::Source,
            Timeouts::default(),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
