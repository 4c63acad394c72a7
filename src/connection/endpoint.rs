//! Where a server is and how to log in: a URL (and a password from the
//! environment) resolved into an `Endpoint` whose display form carries no
//! credentials, opened into a connection to one server or a whole cluster;
//! driver errors turned into errors a user can act on.

use super::*;
use crate::redact::redact_url;

/// A resolved endpoint: connection info with credentials, and a display form
/// without them.
#[derive(Clone)]
pub struct Endpoint {
    pub(super) info: ConnectionInfo,
    pub(super) side: Side,
    pub(super) timeouts: Timeouts,
    /// Whether the database was chosen (URL path or --db), as opposed to
    /// the default 0; restore and copy pick their own default otherwise.
    explicit_db: bool,
    /// Whether this is the default address, taken because nothing was
    /// configured (no URL, no variables): messages say so, since a local
    /// server that happens to run there is rarely the one meant.
    defaulted: bool,
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
            defaulted: false,
        })
    }

    /// Mark this endpoint as the default one, used because nothing was
    /// configured; [`Endpoint::describe`] then says so.
    pub fn defaulted(self) -> Self {
        Endpoint {
            defaulted: true,
            ..self
        }
    }

    /// [`Endpoint::display`], followed by `(default; nothing configured)`
    /// when the address is the default one: for plans, prompts, reports and
    /// errors, where a surprising address must be noticed.
    pub fn describe(&self) -> String {
        if self.defaulted {
            format!("{} (default; nothing configured)", self.display())
        } else {
            self.display()
        }
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
            defaulted: self.defaulted,
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
    pub(super) fn with_address(&self, host: &str, port: u16) -> Self {
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

    /// The user name the connection authenticates as, when one is given.
    pub fn username(&self) -> Option<&str> {
        self.info.redis_settings().username()
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
    pub(super) async fn open_node(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(self.info.clone())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(self.timeouts.response);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub(super) async fn open(&self) -> std::result::Result<(Link, Endpoint), Opened> {
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
    pub(super) fn node_endpoint(&self, address: &str) -> Endpoint {
        let (host, port) = address.rsplit_once(':').unwrap_or((address, "0"));
        self.with_address(host, port.parse().unwrap_or(0))
    }

    /// Turn a driver error into the error a user can act on.
    pub(crate) fn classify(&self, err: RedisError, action: &str) -> Error {
        let endpoint = self.describe();
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
        // The first reply did not parse as RESP: whatever answers is not a
        // Redis server (the driver says "Parse error ... Unexpected '33'").
        if action == "connecting" && err.kind() == ErrorKind::Parse {
            return Error::NotRedis { endpoint };
        }
        if action == "connecting" || err.is_connection_refusal() {
            return Error::Unreachable { endpoint, reason };
        }
        if err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm) {
            return Error::NoPermission {
                endpoint,
                action: action.into(),
                reason,
            };
        }
        Error::Redis {
            endpoint,
            action: action.into(),
            reason,
        }
    }
}

pub(super) fn describe_redis_error(err: &RedisError) -> String {
    // The driver's Display can span lines; errors here are one line.
    err.to_string().replace('\n', " ")
}

/// Whether a URL has a database path (`redis://host:6379/2`).
pub(super) fn url_names_db(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.split_once('/') {
        Some((_, path)) => !path.trim_matches('/').is_empty(),
        None => false,
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
