//! Where a Redis server is, how to log in, and how to talk to it.
//!
//! URLs follow redis-cli: `redis://[user[:password]@]host[:port][/db]`, and
//! `rediss://` for TLS. The password may instead come from the environment so
//! that it never has to be on a command line; it is kept only inside the
//! connection info and is never part of [`Endpoint::display`], which is what
//! every message, manifest and report uses.

mod endpoint;
mod replica;
mod server;
mod wire;

pub use endpoint::Endpoint;
pub use replica::{Framing, ReplicaLink, SyncPoint};
pub(crate) use wire::{Replies, Request, Wire};

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

/// Commands to send together, built per node in a cluster (see
/// [`Conn::pipes`]).
pub(crate) enum Pipes {
    One(redis::Pipeline),
    Split(crate::cluster::Split),
}

impl Pipes {
    /// The pipeline to add `key`'s commands to; every command added to it
    /// before the next call must be `key`'s.
    pub(crate) fn for_key(&mut self, key: &[u8]) -> &mut redis::Pipeline {
        match self {
            Pipes::One(pipe) => pipe,
            Pipes::Split(split) => split.for_key(key),
        }
    }
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

/// A redirection on a primary read directly: its slots moved under the reader.
fn slots_moved(endpoint: &Endpoint, action: &str) -> Error {
    Error::Cluster {
        endpoint: endpoint.display(),
        reason: format!(
            "the cluster changed (a slot moved, or a replica took over) while {action}; nothing was written; run it again once the resharding or failover is over"
        ),
    }
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

    /// How many keys the node at `address` holds (a cluster's primary as
    /// [`Conn::dedicated_address`] names it; the server itself otherwise).
    pub(crate) async fn node_dbsize(&mut self, address: &str) -> Result<u64> {
        let mut node = match &self.link {
            Link::Single(_) => return self.query(&redis::cmd("DBSIZE"), "counting keys").await,
            Link::Cluster(router) => {
                let endpoint = self.node_endpoint(address);
                let node = router
                    .node(address)
                    .await
                    .map_err(|e| endpoint.classify(e, "connecting"))?;
                Conn {
                    link: Link::Single(node),
                    endpoint,
                    retries: self.retries,
                    in_cluster: true,
                }
            }
        };
        node.query(&redis::cmd("DBSIZE"), "counting keys").await
    }

    /// [`Conn::dedicated_address`] for many keys: the cluster's slot table
    /// is read once, and no address is formatted per key.
    pub(crate) fn key_addresses(&self) -> KeyAddresses {
        match &self.link {
            Link::Single(_) => KeyAddresses::Single(self.endpoint.display().into()),
            Link::Cluster(router) => KeyAddresses::Slots(router.slot_owners()),
        }
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
        slots_moved(&self.endpoint, action)
    }

    /// An empty pipeline for [`Conn::pipeline_pipes`]: one pipeline on a
    /// single server, one per node in a cluster.
    pub(crate) fn pipes(&self) -> Pipes {
        match &self.link {
            Link::Single(_) => Pipes::One(redis::pipe()),
            Link::Cluster(router) => Pipes::Split(router.split()),
        }
    }

    /// Run `pipes` as [`Conn::pipeline`] runs a pipeline: in a cluster each
    /// node's part goes out as built, with no copy of its commands.
    pub(crate) async fn pipeline_pipes(
        &mut self,
        pipes: &mut Pipes,
        action: &str,
    ) -> Result<Vec<Value>> {
        let split = match pipes {
            Pipes::One(pipe) => return self.pipeline(pipe, action).await,
            Pipes::Split(split) if split.is_empty() => return Ok(Vec::new()),
            Pipes::Split(split) => split,
        };
        let mut attempt = 0;
        loop {
            let sent = match &self.link {
                Link::Cluster(router) => router.pipeline_split(split).await,
                Link::Single(_) => {
                    return Err(Error::Internal(
                        "a cluster's pipeline sent to a single server".into(),
                    ));
                }
            };
            match sent {
                Ok(v) => return Ok(v),
                Err(e) if self.recover(&e, attempt).await => attempt += 1,
                Err(e) => return Err(self.exhausted(e, action, attempt)),
            }
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

/// Which node serves a key, as [`Conn::key_addresses`] read it.
#[derive(Debug)]
pub(crate) enum KeyAddresses {
    Single(Arc<str>),
    Slots(Arc<Vec<Arc<str>>>),
}

impl KeyAddresses {
    pub fn of(&self, key: &[u8]) -> &Arc<str> {
        match self {
            KeyAddresses::Single(address) => address,
            KeyAddresses::Slots(owners) => cluster::owner_of(owners, key),
        }
    }
}
