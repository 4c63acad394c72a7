//! What a merge would add, counted for a plan that a person reads (a dry
//! run, a confirmation): per record of a key that may be merged into, one
//! read-only script asks the target how many of the record's fields,
//! members, list values or stream entries it lacks, as the merge's own
//! commands would find them. Counts are kept only for keys the plan then
//! decides to merge into; the others are dropped as soon as their key is
//! decided, so what is held stays within the batches being planned.

use redis::Value as Reply;

use crate::connection::Conn;
use crate::error::Result;
use crate::record::{Record, Value};
use crate::report::Action;

use super::decisions::Decisions;

/// How many of `ARGV` the key at `KEYS[1]` lacks, by its type in the
/// target: hash fields (`HSETNX` would set), set and sorted-set members
/// (`SADD`, `ZADD NX`), list values (the list merge appends), stream entry
/// ids above its last id (`XADD` would take). Writes nothing.
const MERGE_COUNT_SCRIPT: &str = "#!lua flags=no-writes
local k = KEYS[1]
local t = redis.call('TYPE', k)['ok']
local n = 0
if t == 'hash' then
  for i = 1, #ARGV do if redis.call('HEXISTS', k, ARGV[i]) == 0 then n = n + 1 end end
elseif t == 'set' then
  for i = 1, #ARGV do if redis.call('SISMEMBER', k, ARGV[i]) == 0 then n = n + 1 end end
elseif t == 'zset' then
  for i = 1, #ARGV do if not redis.call('ZSCORE', k, ARGV[i]) then n = n + 1 end end
elseif t == 'list' then
  local seen = {}
  for i = 1, #ARGV do
    if not seen[ARGV[i]] and not redis.call('LPOS', k, ARGV[i]) then n = n + 1 end
    seen[ARGV[i]] = true
  end
elseif t == 'stream' then
  local info = redis.call('XINFO', 'STREAM', k)
  local last = '0-0'
  for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end
  local lm, ls = string.match(last, '^(%d+)-(%d+)$')
  for i = 1, #ARGV do
    local m, s = string.match(ARGV[i], '^(%d+)-(%d+)$')
    local above
    if #m ~= #lm then above = #m > #lm
    elseif m ~= lm then above = m > lm
    elseif #s ~= #ls then above = #s > #ls
    else above = s > ls end
    if above then n = n + 1; lm, ls = m, s end
  end
end
return n";

/// Merge counts being gathered; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct MergeCounts {
    /// Probes of the batch being read: (key index, target key, members).
    queued: Vec<(usize, Vec<u8>, Vec<Vec<u8>>)>,
    /// Counts of keys not decided yet: (key index, count).
    waiting: Vec<(usize, u64)>,
    /// What the plan's merges would add.
    pub(crate) total: u64,
    /// False once the target would not answer (no scripting for this user).
    pub(crate) known: bool,
}

impl MergeCounts {
    pub(crate) fn new() -> MergeCounts {
        MergeCounts {
            known: true,
            ..Default::default()
        }
    }

    /// Queue a count for `record`, part of key number `index`, written as
    /// `key`. Values a merge does not count by member are not queued.
    pub(crate) fn queue(&mut self, index: usize, key: &[u8], record: &Record) {
        let members: Vec<Vec<u8>> = match &record.value {
            Value::Hash(v) => v.iter().map(|(f, _)| f.0.clone()).collect(),
            Value::Set(v) | Value::List(v) => v.iter().map(|m| m.0.clone()).collect(),
            Value::Zset(v) => v.iter().map(|(m, _)| m.0.clone()).collect(),
            Value::Stream(s) => s
                .entries
                .iter()
                .map(|e| e.id.to_string().into_bytes())
                .collect(),
            _ => return,
        };
        if !members.is_empty() {
            self.queued.push((index, key.to_vec(), members));
        }
    }

    /// Ask the target for the queued counts (one pipeline).
    pub(crate) async fn ask(&mut self, conn: &mut Conn) -> Result<()> {
        let queued = std::mem::take(&mut self.queued);
        if queued.is_empty() || !self.known {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, key, members) in &queued {
            pipe.cmd("EVAL")
                .arg(MERGE_COUNT_SCRIPT)
                .arg(1)
                .arg(&key[..])
                .arg(members);
        }
        let replies = conn
            .pipeline(&mut pipe, "counting what a merge would add")
            .await?;
        for ((index, _, _), reply) in queued.into_iter().zip(replies) {
            match reply {
                Reply::Int(n) => self.waiting.push((index, n.max(0) as u64)),
                _ => self.known = false,
            }
        }
        Ok(())
    }

    /// Keys before `frontier` are decided: keep the counts of those the
    /// plan merges into.
    pub(crate) fn resolve(&mut self, decisions: &Decisions, frontier: usize) -> Result<()> {
        let mut still = Vec::new();
        for (index, n) in std::mem::take(&mut self.waiting) {
            if index >= frontier {
                still.push((index, n));
            } else if decisions.get(index)? == Action::Merge {
                self.total += n;
            }
        }
        self.waiting = still;
        Ok(())
    }
}
