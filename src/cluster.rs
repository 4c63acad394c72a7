//! Redis Cluster: which primary serves which slot, and writes routed to it.
//!
//! A cluster splits the keyspace into 16384 hash slots, each served by one
//! primary. Reads and writes are sent to the slot's primary over one
//! connection per node; pipelines are split per node and the parts run at
//! the same time. While slots move (resharding, a failover), a node answers
//! MOVED (the slot is elsewhere now: learn it and send again) or ASK (this
//! one key is already at the importing node: send it there once, after
//! ASKING). Commands are only ever sent again after such an answer, which
//! says the command was not run, so writes are never applied twice.
//!
//! The map comes from CLUSTER NODES, which every Redis and Valkey cluster
//! node answers, and which also shows slots in migration.
//!
//! Kept in one file, though long: slot map, router and redirections are one
//! protocol, and each part is only correct together with the others.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;
use redis::{Arg, Cmd, RedisError, Value};

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// Redirections followed for one command before giving up: a slot that
/// keeps moving is a cluster in trouble, not a resharding. TRYAGAIN waits
/// 10 ms, doubling up to half a second: about 5 s in all.
const MAX_REDIRECTS: usize = 16;

/// The hash slot of a key: CRC16 (XMODEM) of the key, or of the part
/// inside the first non-empty `{...}` (a hash tag), modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// CRC-16/XMODEM (polynomial 0x1021), a byte at a time by table: a
/// restore into a cluster works out the slot of every key it writes.
fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The CRC of each byte value on its own, shifted to the top.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The key a command is routed by; `None` for commands about the node
/// itself (SCAN, INFO, TIME, DBSIZE), which go to a node chosen by the caller.
pub fn command_key(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    // Called for every command of every pipeline: no allocation.
    let name = args.next()?;
    let any = |names: &[&[u8]]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
    if any(&[
        b"SCAN",
        b"INFO",
        b"TIME",
        b"DBSIZE",
        b"PING",
        b"ASKING",
        b"CLUSTER",
        b"SCRIPT",
        b"CLIENT",
        b"CONFIG",
        b"FLUSHDB",
        b"FLUSHALL",
        b"SELECT",
    ]) {
        None
    } else if any(&[
        b"EVAL",
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ]) {
        args.next()?;
        let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        if keys == 0 { None } else { args.next() }
    } else if any(&[b"XGROUP", b"XINFO", b"OBJECT", b"MEMORY"]) {
        // A subcommand comes before the key.
        args.next()?;
        args.next()
    } else {
        args.next()
    }
}

/// One primary and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// Inclusive slot ranges.
    pub slots: Vec<(u16, u16)>,
    pub epoch: u64,
}

impl Shard {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|(a, b)| usize::from(*b) - usize::from(*a) + 1)
            .sum()
    }
}

// The archive header's summary of a cluster is made here, where the
// topology is known: the format layer only stores it.
impl crate::archive::manifest::ClusterSource {
    /// The summary of a cluster's layout as read at the start.
    pub(crate) fn of(topology: &Topology) -> Self {
        Self {
            nodes: topology.shards.len(),
            slots: topology.covered(),
        }
    }
}

/// Which primary serves each slot, as one node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Primaries that serve at least one slot, in the order of their first slot.
    pub shards: Vec<Shard>,
    /// Slots being moved: (slot, "migrating"/"importing", node id).
    pub moving: Vec<(u16, String, String)>,
}

impl Topology {
    /// Parse CLUSTER NODES. A node that does not know its own address
    /// (a cluster of one, not yet met) lists it empty: `seed_host` fills in.
    pub fn parse(nodes: &str, seed_host: &str) -> Result<Self, String> {
        let mut shards = Vec::new();
        let mut moving = Vec::new();
        for line in nodes.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return Err(format!("unexpected CLUSTER NODES line {line:?}"));
            }
            let flags: Vec<&str> = fields[2].split(',').collect();
            if !flags.contains(&"master")
                || flags.contains(&"noaddr")
                || flags.contains(&"handshake")
            {
                continue;
            }
            let address = fields[1].split(['@', ',']).next().unwrap_or_default();
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("unexpected node address {address:?}"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("unexpected node address {address:?}"))?;
            let host = match host.trim_matches(['[', ']']) {
                "" => seed_host.to_string(),
                h => h.to_string(),
            };
            let mut slots = Vec::new();
            for item in &fields[8..] {
                if let Some(inner) = item.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    let (slot, kind, node) = if let Some((s, n)) = inner.split_once("->-") {
                        (s, "migrating", n)
                    } else if let Some((s, n)) = inner.split_once("-<-") {
                        (s, "importing", n)
                    } else {
                        return Err(format!("unexpected slot entry {item:?}"));
                    };
                    let slot = parse_slot(slot)?;
                    moving.push((slot, kind.to_string(), node.to_string()));
                    continue;
                }
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                slots.push((parse_slot(a)?, parse_slot(b)?));
            }
            if slots.is_empty() {
                continue;
            }
            slots.sort();
            shards.push(Shard {
                id: fields[0].to_string(),
                host,
                port,
                slots,
                epoch: fields[6].parse().unwrap_or(0),
            });
        }
        shards.sort_by_key(|s| s.slots[0]);
        moving.sort();
        if shards.is_empty() {
            return Err(
                "no node serves any slot yet; create the cluster first (redis-cli --cluster create)"
                    .into(),
            );
        }
        Ok(Topology { shards, moving })
    }

    /// Slots served by some primary (16384 in a healthy cluster).
    pub fn covered(&self) -> usize {
        self.shards.iter().map(Shard::slot_count).sum()
    }

    /// Index into `shards` of the primary serving each slot.
    fn owners(&self) -> Vec<Option<usize>> {
        let mut owners = vec![None; SLOTS];
        for (i, shard) in self.shards.iter().enumerate() {
            for &(a, b) in &shard.slots {
                for slot in a..=b {
                    owners[usize::from(slot)] = Some(i);
                }
            }
        }
        owners
    }

    /// What is different in `later`, in words, or `None` when nothing is:
    /// the same primaries serving the same slots, nothing in migration.
    pub fn change_since(&self, later: &Topology) -> Option<String> {
        if self == later {
            return None;
        }
        let before = self.owners();
        let after = later.owners();
        let moved = (0..SLOTS)
            .filter(|&s| {
                before[s].map(|i| &self.shards[i].id) != after[s].map(|i| &later.shards[i].id)
            })
            .count();
        if moved > 0 {
            return Some(format!("{moved} slots changed primary"));
        }
        if !later.moving.is_empty() || !self.moving.is_empty() {
            return Some(format!(
                "slots in migration: {} before, {} after",
                self.moving.len(),
                later.moving.len()
            ));
        }
        Some("a primary's address or configuration epoch changed".into())
    }
}

fn parse_slot(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|&n| usize::from(n) < SLOTS)
        .ok_or_else(|| format!("unexpected slot {s:?}"))
}

/// A redirection in a reply: where the command must go instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved {
        slot: u16,
        address: String,
    },
    Ask {
        address: String,
    },
    /// A command on several keys of a slot in migration, some of them
    /// moved already: the same again, a moment later.
    TryAgain,
}

/// MOVED or ASK in a server error reply.
pub fn redirect_of(value: &Value) -> Option<Redirect> {
    let Value::ServerError(e) = value else {
        return None;
    };
    parse_redirect(e.code(), e.details().unwrap_or_default())
}

/// MOVED or ASK in a failed command's error.
pub fn redirect_of_error(err: &RedisError) -> Option<Redirect> {
    let code = err.code()?;
    parse_redirect(code, err.detail().unwrap_or_default())
}

fn parse_redirect(code: &str, details: &str) -> Option<Redirect> {
    if code == "TRYAGAIN" {
        return Some(Redirect::TryAgain);
    }
    let mut parts = details.split_ascii_whitespace();
    let slot: u16 = parts.next()?.parse().ok()?;
    let address = parts.next()?.to_string();
    match code {
        "MOVED" => Some(Redirect::Moved { slot, address }),
        "ASK" => Some(Redirect::Ask { address }),
        _ => None,
    }
}

/// Opens a connection to a node by address (`host:port`).
pub type Open = Arc<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<MultiplexedConnection>> + Send>,
        > + Send
        + Sync,
>;

/// Routes commands to the primaries of one cluster.
pub struct Router {
    open: Open,
    seed_host: String,
    state: Mutex<State>,
}

struct State {
    topology: Topology,
    /// Slot -> address of its primary, updated by MOVED between refreshes
    /// (shared strings: every command of a pipeline takes one; the map is
    /// shared too, with the split pipelines being built).
    owners: Arc<Vec<Arc<str>>>,
    nodes: HashMap<String, MultiplexedConnection>,
    redirects: u64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().expect("router state");
        f.debug_struct("Router")
            .field("shards", &state.topology.shards.len())
            .finish()
    }
}

impl Router {
    pub fn new(topology: Topology, seed_host: String, open: Open) -> Self {
        let owners = Arc::new(owner_addresses(&topology));
        Router {
            open,
            seed_host,
            state: Mutex::new(State {
                topology,
                owners,
                nodes: HashMap::new(),
                redirects: 0,
            }),
        }
    }

    pub fn topology(&self) -> Topology {
        self.state.lock().expect("router state").topology.clone()
    }

    /// Redirections (MOVED and ASK) followed so far.
    pub fn redirects(&self) -> u64 {
        self.state.lock().expect("router state").redirects
    }

    /// A connection to `address`, opened on first use.
    pub async fn node(&self, address: &str) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(c) = self.state.lock().expect("router state").nodes.get(address) {
            return Ok(c.clone());
        }
        let conn = (self.open)(address.to_string()).await?;
        self.state
            .lock()
            .expect("router state")
            .nodes
            .insert(address.to_string(), conn.clone());
        Ok(conn)
    }

    /// Forget a node's connection (it dropped): the next use opens a new one.
    pub fn forget(&self, address: &str) {
        self.state
            .lock()
            .expect("router state")
            .nodes
            .remove(address);
    }

    /// Read the slot map again, from any node that answers.
    pub async fn refresh(&self) -> redis::RedisResult<Topology> {
        let candidates: Vec<String> = {
            let state = self.state.lock().expect("router state");
            state.topology.shards.iter().map(Shard::address).collect()
        };
        let mut last = None;
        for address in candidates {
            let result = async {
                let mut conn = self.node(&address).await?;
                let text: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await?;
                Topology::parse(&text, &self.seed_host)
                    .map_err(|e| RedisError::from((redis::ErrorKind::Parse, "CLUSTER NODES", e)))
            }
            .await;
            match result {
                Ok(topology) => {
                    let mut state = self.state.lock().expect("router state");
                    state.owners = Arc::new(owner_addresses(&topology));
                    state.topology = topology.clone();
                    return Ok(topology);
                }
                Err(e) => {
                    self.forget(&address);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| (redis::ErrorKind::Io, "no cluster node answers").into()))
    }

    /// The address of each slot's primary, as last known.
    pub fn slot_owners(&self) -> Arc<Vec<Arc<str>>> {
        self.state.lock().expect("router state").owners.clone()
    }

    /// The address of the primary serving `key`'s slot, as last known.
    pub fn owner_of_key(&self, key: &[u8]) -> String {
        owner_of(&self.state.lock().expect("router state").owners, key).to_string()
    }

    /// The address a command goes to: its slot's primary, or the first
    /// primary for commands without a key.
    fn address_of(state: &State, cmd: &Cmd) -> Arc<str> {
        match command_key(cmd) {
            Some(key) => owner_of(&state.owners, key).clone(),
            None => state.topology.shards[0].address().into(),
        }
    }

    /// An empty pipeline to be built per node (see [`Split`]).
    pub fn split(&self) -> Split {
        Split {
            owners: self.slot_owners(),
            parts: Vec::new(),
            order: Vec::new(),
            open: None,
        }
    }

    /// Run the commands of `pipe` on their slots' primaries: one pipeline
    /// per node, all at once, following MOVED and ASK. Replies come back in
    /// the order of the commands; a refused command is a `ServerError`.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> redis::RedisResult<Vec<Value>> {
        let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
        self.run(&cmds, Vec::new()).await
    }

    /// Run a pipeline built per node: each node's part goes out as it was
    /// built, with no copy of its commands; only commands redirected
    /// elsewhere are copied. Replies come back in the order the commands
    /// were added.
    pub async fn pipeline_split(&self, split: &mut Split) -> redis::RedisResult<Vec<Value>> {
        split.close();
        let per_part: Vec<Vec<&Cmd>> = split
            .parts
            .iter()
            .map(|(_, p)| p.cmd_iter().collect())
            .collect();
        let cmds: Vec<&Cmd> = split
            .order
            .iter()
            .map(|&(k, j)| per_part[k as usize][j as usize])
            .collect();
        let mut first: Vec<Part<'_>> = split
            .parts
            .iter()
            .map(|(a, p)| (a.clone(), Vec::with_capacity(p.len()), Cow::Borrowed(p)))
            .collect();
        for (g, &(k, _)) in split.order.iter().enumerate() {
            first[k as usize].1.push((g, false));
        }
        self.run(&cmds, first).await
    }

    /// Send `cmds` (those of `first`, as built, in the first round) and
    /// follow redirections until every command has its reply.
    async fn run(&self, cmds: &[&Cmd], mut first: Vec<Part<'_>>) -> redis::RedisResult<Vec<Value>> {
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        // (command index, ASK address when it must go there once)
        let mut pending: Vec<(usize, Option<String>)> = match first.is_empty() {
            true => (0..cmds.len()).map(|i| (i, None)).collect(),
            false => Vec::new(),
        };
        for round in 0..=MAX_REDIRECTS {
            let parts: Vec<Part<'_>> = if round == 0 && !first.is_empty() {
                std::mem::take(&mut first)
            } else {
                let mut by_node: BTreeMap<Arc<str>, Vec<(usize, bool)>> = BTreeMap::new();
                {
                    // One lock for the whole pipeline.
                    let state = self.state.lock().expect("router state");
                    for (i, ask) in pending.drain(..) {
                        let asking = ask.is_some();
                        let address = match ask {
                            Some(a) => a.into(),
                            None => Self::address_of(&state, cmds[i]),
                        };
                        by_node.entry(address).or_default().push((i, asking));
                    }
                }
                by_node
                    .into_iter()
                    .map(|(address, items)| {
                        let mut part = redis::pipe();
                        part.ignore_errors();
                        for &(i, asking) in &items {
                            if asking {
                                part.cmd("ASKING");
                            }
                            part.add_command(cmds[i].clone());
                        }
                        (address, items, Cow::Owned(part))
                    })
                    .collect()
            };
            let sends = parts.into_iter().map(|(address, items, part)| async move {
                let mut conn = self.node(&address).await?;
                let values: Vec<Value> = match part.query_async(&mut conn).await {
                    Ok(v) => v,
                    Err(e) => {
                        self.forget(&address);
                        return Err(e);
                    }
                };
                Ok::<_, RedisError>((address, items, values))
            });
            let results = futures_util::future::join_all(sends).await;
            // Slots MOVED said are elsewhere now, with where.
            let mut moved: Vec<(u16, String)> = Vec::new();
            let mut wait = false;
            for result in results {
                let (address, items, values) = result?;
                let mut values = values.into_iter();
                for (i, asking) in items {
                    if asking {
                        values.next(); // ASKING's OK
                    }
                    let value = values.next().unwrap_or(Value::Nil);
                    match redirect_of(&value) {
                        Some(_) if round == MAX_REDIRECTS => replies[i] = Some(value),
                        Some(Redirect::Moved { slot, address }) => {
                            self.state.lock().expect("router state").redirects += 1;
                            moved.push((slot, self.full_address(&address)));
                            pending.push((i, None));
                        }
                        Some(Redirect::Ask { address }) => {
                            self.state.lock().expect("router state").redirects += 1;
                            pending.push((i, Some(self.full_address(&address))));
                        }
                        Some(Redirect::TryAgain) => {
                            wait = true;
                            pending.push((i, asking.then(|| address.to_string())));
                        }
                        None => replies[i] = Some(value),
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            // Commands of one key stay in order across rounds.
            pending.sort_by_key(|(i, _)| *i);
            if wait {
                let ms = (10u64 << round.min(6)).min(500);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            if !moved.is_empty() {
                // A moved slot rarely moves alone: learn the whole map again.
                // What MOVED said is newer than any map a node may still
                // hold, and is kept whether or not a node answers.
                let _ = self.refresh().await;
                let mut state = self.state.lock().expect("router state");
                for (slot, address) in moved {
                    Arc::make_mut(&mut state.owners)[usize::from(slot)] = address.into();
                }
            }
        }
        Ok(replies
            .into_iter()
            .map(|v| v.unwrap_or(Value::Nil))
            .collect())
    }

    /// `host:port` with the seed's host when a node leaves it empty.
    fn full_address(&self, address: &str) -> String {
        match address.rsplit_once(':') {
            Some(("", port)) => format!("{}:{port}", self.seed_host),
            _ => address.to_string(),
        }
    }
}

/// One node's pipeline: its address, the commands' indexes (and whether
/// each is sent after `ASKING`), and the pipeline itself.
type Part<'a> = (Arc<str>, Vec<(usize, bool)>, Cow<'a, redis::Pipeline>);

/// A pipeline built per node: each command goes straight into the pipeline
/// of its key's primary (by the slot map as it was when the split began),
/// so that sending it copies nothing; a node that no longer owns a slot
/// redirects, as for any pipeline.
pub struct Split {
    owners: Arc<Vec<Arc<str>>>,
    parts: Vec<(Arc<str>, redis::Pipeline)>,
    /// (part, position in it) of each command, in the order they were added.
    order: Vec<(u32, u32)>,
    /// The part commands are being added to, and its length before.
    open: Option<(usize, usize)>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// Of the address of each slot's primary, the one serving `key`.
pub fn owner_of<'a>(owners: &'a [Arc<str>], key: &[u8]) -> &'a Arc<str> {
    &owners[usize::from(slot(key))]
}

impl Split {
    /// The pipeline to add `key`'s commands to; every command added to it
    /// before the next call is `key`'s.
    pub fn for_key(&mut self, key: &[u8]) -> &mut redis::Pipeline {
        self.close();
        let owner = owner_of(&self.owners, key);
        let k = match self.parts.iter().position(|(a, _)| Arc::ptr_eq(a, owner)) {
            Some(k) => k,
            None => {
                let mut part = redis::pipe();
                part.ignore_errors();
                self.parts.push((owner.clone(), part));
                self.parts.len() - 1
            }
        };
        self.open = Some((k, self.parts[k].1.len()));
        &mut self.parts[k].1
    }

    /// Commands added so far.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|(_, p)| p.len()).sum()
    }

    /// True when no command was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn close(&mut self) {
        if let Some((k, from)) = self.open.take() {
            let to = self.parts[k].1.len();
            self.order.extend((from..to).map(|j| (k as u32, j as u32)));
        }
    }
}

fn owner_addresses(topology: &Topology) -> Vec<Arc<str>> {
    let addresses: Vec<Arc<str>> = topology.shards.iter().map(|s| s.address().into()).collect();
    topology
        .owners()
        .into_iter()
        .map(|o| addresses[o.unwrap_or(0)].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // The specification's CRC16 check value, and slots Redis reports
        // with CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b""), 0);
        // Hash tags: the first {...} with something inside decides.
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user1000}.followers"), slot(b"{user1000}.following"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
    }

    #[test]
    fn the_crc_table_gives_what_the_crc_bit_by_bit_gives() {
        let bitwise = |data: &[u8]| {
            let mut crc: u16 = 0;
            for &byte in data {
                crc ^= u16::from(byte) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        };
        let all: Vec<u8> = (0..=255).collect();
        for n in 0..all.len() {
            assert_eq!(crc16(&all[..n]), bitwise(&all[..n]));
            assert_eq!(crc16(&all[n..]), bitwise(&all[n..]));
        }
    }

    #[test]
    fn a_split_pipeline_keeps_the_order_commands_were_added_in() {
        // Slots 0..8192 on one node, the rest on another.
        let (a, b): (Arc<str>, Arc<str>) = ("a:1".into(), "b:2".into());
        let owners = (0..SLOTS)
            .map(|s| if s < SLOTS / 2 { a.clone() } else { b.clone() })
            .collect();
        let mut split = Split {
            owners: Arc::new(owners),
            parts: Vec::new(),
            order: Vec::new(),
            open: None,
        };
        let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
        let mut added = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            // One to three commands per key, all on its own node.
            for n in 0..=(i % 3) {
                split.for_key(key.as_bytes()).cmd("SET").arg(key).arg(n);
                added.push((key.clone(), n));
            }
        }
        split.close();
        assert_eq!(split.len(), added.len());
        assert_eq!(split.parts.len(), 2, "both nodes have keys");
        let per_part: Vec<Vec<&Cmd>> = split
            .parts
            .iter()
            .map(|(_, p)| p.cmd_iter().collect())
            .collect();
        for ((k, j), (key, n)) in split.order.iter().zip(&added) {
            let (owner, _) = &split.parts[*k as usize];
            let expected = if usize::from(slot(key.as_bytes())) < SLOTS / 2 {
                &a
            } else {
                &b
            };
            assert!(Arc::ptr_eq(owner, expected), "{key} on its slot's node");
            let cmd = per_part[*k as usize][*j as usize];
            let args: Vec<Vec<u8>> = cmd
                .args_iter()
                .map(|a| match a {
                    Arg::Simple(b) => b.to_vec(),
                    _ => Vec::new(),
                })
                .collect();
            assert_eq!(
                args,
                [
                    b"SET".to_vec(),
                    key.as_bytes().to_vec(),
                    n.to_string().into_bytes()
                ]
            );
        }
    }

    #[test]
    fn finds_the_key_of_each_command() {
        let key = |c: &Cmd| command_key(c).map(|k| k.to_vec());
        assert_eq!(key(redis::cmd("GET").arg("k")), Some(b"k".to_vec()));
        assert_eq!(key(redis::cmd("SCAN").arg(0)), None);
        assert_eq!(
            key(redis::cmd("EVAL").arg("return 1").arg(2).arg("a").arg("b")),
            Some(b"a".to_vec())
        );
        assert_eq!(key(redis::cmd("EVAL").arg("return 1").arg(0)), None);
        assert_eq!(
            key(redis::cmd("XINFO").arg("STREAM").arg("s")),
            Some(b"s".to_vec())
        );
        assert_eq!(
            key(redis::cmd("xgroup")
                .arg("CREATE")
                .arg("s")
                .arg("g")
                .arg("$")),
            Some(b"s".to_vec())
        );
        assert_eq!(key(&redis::cmd("TIME")), None);
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [10922-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 1426238316232 0 5 disconnected
";

    #[test]
    fn reads_cluster_nodes() {
        let t = Topology::parse(NODES, "10.0.0.9").unwrap();
        let addresses: Vec<String> = t.shards.iter().map(Shard::address).collect();
        assert_eq!(
            addresses,
            ["10.0.0.9:30001", "127.0.0.1:30002", "127.0.0.1:30003"]
        );
        assert_eq!(t.shards[2].slots, vec![(10923, 16383)]);
        assert_eq!(t.shards[1].epoch, 2);
        assert_eq!(t.covered(), SLOTS);
        assert_eq!(t.moving.len(), 1);
        assert_eq!(t.moving[0].0, 10922);
        assert_eq!(t.change_since(&t), None);

        let moved = NODES
            .replace("5461-10922", "5461-10921")
            .replace("10923-16383 [", "10922-16383 [");
        let later = Topology::parse(&moved, "10.0.0.9").unwrap();
        assert_eq!(
            t.change_since(&later).as_deref(),
            Some("1 slots changed primary")
        );
        assert!(Topology::parse("", "h").is_err());
        assert!(Topology::parse("abc 1.2.3.4:x master", "h").is_err());
    }

    #[test]
    fn reads_redirections() {
        assert_eq!(
            parse_redirect("MOVED", "3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                address: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            parse_redirect("ASK", "3999 10.0.0.1:7000"),
            Some(Redirect::Ask {
                address: "10.0.0.1:7000".into()
            })
        );
        assert_eq!(parse_redirect("ERR", "3999 x:1"), None);
    }
}
