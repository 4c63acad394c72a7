//! Which keys of a batch exist in the target, asked as a task of its own
//! (its answer is read once the next batch has been taken in), as cheaply
//! as the target allows.
//!
//! - One server: a single `EXISTS k1 k2 ...` answers for the whole batch
//!   when none of its keys exists (a restore into an empty database, the
//!   usual case) or all of them do (an overwrite of the same keys), at a
//!   tenth of the server's cost of one `EXISTS` per key; a batch where only
//!   some exist is asked by one script, as a cluster node is.
//! - A cluster: a node that holds no key answers for its keys with one
//!   `DBSIZE`. A multi-key `EXISTS` must stay in one slot, so each other
//!   node is asked for its keys by one script (keys of many slots, one node: Redis
//!   7.0's `allow-cross-slot-keys`), which saves the client a command and a
//!   reply per key. A node that refuses (an older server, a slot that moved
//!   meanwhile) is asked key by key.

use std::sync::Arc;

use redis::Value as Reply;

use crate::connection::Conn;
use crate::error::{Error, Result};

/// The answer, one flag per key, in order.
pub(super) type ExistsTask = tokio::task::JoinHandle<Result<Vec<bool>>>;

const ACTION: &str = "checking which keys exist";

/// Whether each key exists on its node, for keys that all live on one node
/// of a cluster: `KEYS[1]` routes the call, the others are `ARGV`.
const NODE_EXISTS_SCRIPT: &str = "#!lua flags=no-writes,allow-cross-slot-keys
local r = {redis.call('EXISTS', KEYS[1])}
for i, k in ipairs(ARGV) do r[i + 1] = redis.call('EXISTS', k) end
return r";

/// Ask whether each key exists.
pub(super) fn send_exists<'k>(conn: &Conn, keys: impl IntoIterator<Item = &'k [u8]>) -> ExistsTask {
    let keys: Vec<Vec<u8>> = keys.into_iter().map(<[u8]>::to_vec).collect();
    let mut conn = conn.clone();
    tokio::spawn(async move {
        let mut answers: Vec<Option<bool>> = vec![None; keys.len()];
        if keys.len() > 1 {
            if conn.is_cluster() {
                per_node(&mut conn, &keys, &mut answers).await?;
            } else {
                let mut all = redis::pipe();
                all.cmd("EXISTS").arg(&keys);
                // EXISTS counts a key named twice twice, so a count equal to
                // the number of names means every one exists.
                match conn.pipeline(&mut all, ACTION).await?[..] {
                    [Reply::Int(0)] => return Ok(vec![false; keys.len()]),
                    [Reply::Int(n)] if n as usize == keys.len() => {
                        return Ok(vec![true; keys.len()]);
                    }
                    _ => per_node(&mut conn, &keys, &mut answers).await?,
                }
            }
        }
        let unknown: Vec<usize> = (0..keys.len()).filter(|&i| answers[i].is_none()).collect();
        if !unknown.is_empty() {
            let mut pipe = redis::pipe();
            for &i in &unknown {
                pipe.cmd("EXISTS").arg(&keys[i]);
            }
            let replies = conn.pipeline(&mut pipe, ACTION).await?;
            for (&i, reply) in unknown.iter().zip(replies) {
                answers[i] = Some(match reply {
                    Reply::Int(n) => n > 0,
                    other => {
                        return Err(Error::Redis {
                            endpoint: conn.endpoint().display(),
                            action: ACTION.into(),
                            reason: format!("unexpected reply {other:?}"),
                        });
                    }
                });
            }
        }
        Ok(answers.into_iter().map(|a| a.unwrap_or(false)).collect())
    })
}

/// One script per node for its keys (one call on a single server); the
/// answers it gives are filled in, the others are asked key by key.
async fn per_node(conn: &mut Conn, keys: &[Vec<u8>], answers: &mut [Option<bool>]) -> Result<()> {
    let mut nodes: std::collections::BTreeMap<Arc<str>, Vec<usize>> = Default::default();
    let addresses = conn.key_addresses();
    for (i, key) in keys.iter().enumerate() {
        nodes.entry(addresses.of(key).clone()).or_default().push(i);
    }
    // A node that holds no key at all (a restore into an empty cluster, the
    // usual case) answers for all of its keys with one DBSIZE: a script
    // costs its node about a microsecond a key.
    // (A user not allowed DBSIZE has the script ask.) The nodes are asked
    // at the same time, not one round trip after another.
    let sizes = match conn.is_cluster() {
        true => {
            futures_util::future::join_all(nodes.keys().map(|address| {
                let mut conn = conn.clone();
                async move { conn.node_dbsize(address).await.ok() }
            }))
            .await
        }
        false => vec![None; nodes.len()],
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (group, size) in nodes.into_values().zip(sizes) {
        if size == Some(0) {
            for i in group {
                answers[i] = Some(false);
            }
        } else {
            groups.push(group);
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for group in &groups {
        let c = pipe.cmd("EVAL").arg(NODE_EXISTS_SCRIPT).arg(1);
        for &i in group {
            c.arg(&keys[i]);
        }
    }
    let replies = conn.pipeline(&mut pipe, ACTION).await?;
    for (group, reply) in groups.iter().zip(replies) {
        if let Reply::Array(flags) = reply
            && flags.len() == group.len()
        {
            for (&i, flag) in group.iter().zip(flags) {
                if let Reply::Int(n) = flag {
                    answers[i] = Some(n > 0);
                }
            }
        }
    }
    Ok(())
}

/// The answer of [`send_exists`].
pub(super) async fn read_exists(task: ExistsTask) -> Result<Vec<bool>> {
    task.await
        .map_err(|e| Error::Internal(format!("a Redis task failed: {e}")))?
}
