//! A local Redis Cluster of test servers.

use super::server::{free_port, redis_cli_file, slot_ranges};
use super::*;

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
