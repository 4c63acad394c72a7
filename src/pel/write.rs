//! Writing consumers and pending entries back, in a restore and in a merge.

use super::*;

/// `XGROUP CREATECONSUMER` for each of a group's consumers.
pub(crate) fn add_consumers(
    pipe: &mut Pipeline,
    key: &[u8],
    group: &ConsumerGroup,
    roles: &mut Vec<Role>,
) {
    for consumer in &group.consumers {
        pipe.cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(key)
            .arg(&group.name.0[..])
            .arg(&consumer.0[..]);
        roles.push(Role::Write);
    }
}

/// A run's ids by what XCLAIM sets for them (consumer, delivery time,
/// delivery count): entries delivered together share one command.
pub(crate) fn claims(run: &GroupPending) -> BTreeMap<(&Bytes, i64, u64), Vec<StreamId>> {
    let mut by = BTreeMap::new();
    for e in &run.entries {
        by.entry((&e.consumer, e.delivered_at_ms, e.delivery_count))
            .or_insert_with(Vec::new)
            .push(e.id);
    }
    by
}

/// The XCLAIMs that put a run of pending entries back into a group the
/// restore created.
pub(crate) fn add_claims(
    pipe: &mut Pipeline,
    key: &[u8],
    run: &GroupPending,
    roles: &mut Vec<Role>,
) {
    for ((consumer, at, count), ids) in claims(run) {
        for ids in ids.chunks(CLAIM_IDS) {
            let c = pipe
                .cmd("XCLAIM")
                .arg(key)
                .arg(&run.group.0[..])
                .arg(&consumer.0[..])
                .arg(0);
            for id in ids {
                c.arg(id.to_string());
            }
            c.arg("TIME")
                .arg(at)
                .arg("RETRYCOUNT")
                .arg(count)
                .arg("FORCE")
                .arg("JUSTID");
            roles.push(Role::Claim(ids.len()));
        }
    }
}

/// Creates a group the target lacks, with its consumers and (when ARGV[4]
/// is not empty) the marker consumer; a group the target has is left
/// alone (0).
pub(crate) const MERGE_GROUP_SCRIPT: &str = "local args = {'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2]} \
if ARGV[3] ~= '' then args[#args + 1] = 'ENTRIESREAD'; args[#args + 1] = ARGV[3] end \
local r = redis.pcall(unpack(args)) \
if type(r) == 'table' and r.err then \
  if string.sub(r.err, 1, 9) == 'BUSYGROUP' then return 0 end \
  return r \
end \
if ARGV[4] ~= '' then redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[4]) end \
for i = 5, #ARGV do redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[i]) end \
return 1";

/// Claims pending entries only in a group that has the marker (one this
/// merge created); -1 for a group the target had. The claims follow ARGV[2]
/// as (consumer, time, count, number of ids, ids...).
pub(crate) const MERGE_CLAIM_SCRIPT: &str = "if redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[2]) == 1 then \
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) \
  return -1 \
end \
local claimed = 0 \
local i = 3 \
while i <= #ARGV do \
  local n = tonumber(ARGV[i + 3]) \
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[i], '0'} \
  for j = 1, n do args[#args + 1] = ARGV[i + 3 + j] end \
  for _, a in ipairs({'TIME', ARGV[i + 1], 'RETRYCOUNT', ARGV[i + 2], 'FORCE', 'JUSTID'}) do args[#args + 1] = a end \
  claimed = claimed + #redis.call(unpack(args)) \
  i = i + 4 + n \
end \
return claimed";

/// Merge: create a group the target lacks, with its consumers; `mark` when
/// pending entries follow (they are claimed only into a group created here).
pub(crate) fn add_merge_group(
    pipe: &mut Pipeline,
    key: &[u8],
    group: &ConsumerGroup,
    features: &TargetFeatures,
    mark: bool,
    roles: &mut Vec<Role>,
) {
    let read = match group.entries_read {
        Some(n) if features.stream_v7 => n.to_string(),
        _ => String::new(),
    };
    let c = pipe
        .cmd("EVAL")
        .arg(MERGE_GROUP_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(&group.name.0[..])
        .arg(group.last_delivered_id.to_string())
        .arg(read)
        .arg(if mark { MARKER } else { "" });
    for consumer in &group.consumers {
        c.arg(&consumer.0[..]);
    }
    roles.push(Role::Group);
}

/// Merge: claim a run of pending entries, if its group was created by this
/// merge.
pub(crate) fn add_merge_claims(
    pipe: &mut Pipeline,
    key: &[u8],
    run: &GroupPending,
    roles: &mut Vec<Role>,
) {
    for ((consumer, at, count), ids) in claims(run) {
        for ids in ids.chunks(CLAIM_IDS) {
            let c = pipe
                .cmd("EVAL")
                .arg(MERGE_CLAIM_SCRIPT)
                .arg(1)
                .arg(key)
                .arg(&run.group.0[..])
                .arg(MARKER)
                .arg(&consumer.0[..])
                .arg(at)
                .arg(count)
                .arg(ids.len());
            for id in ids {
                c.arg(id.to_string());
            }
            roles.push(Role::Claim(ids.len()));
        }
    }
}

/// Merge, at a stream's last record: remove the markers.
pub(crate) fn add_merge_unmark(
    pipe: &mut Pipeline,
    key: &[u8],
    groups: &[Bytes],
    roles: &mut Vec<Role>,
) {
    for group in groups {
        pipe.cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(key)
            .arg(&group.0[..])
            .arg(MARKER);
        roles.push(Role::Write);
    }
}

/// How many of `sent` pending entries a claim did not restore, from its
/// reply (the ids XCLAIM claimed, or the merge script's count; -1: the
/// group was the target's, left alone).
pub(crate) fn not_claimed(sent: usize, reply: &Reply) -> u64 {
    let claimed = match reply {
        Reply::Array(ids) => ids.len(),
        Reply::Int(n) if *n >= 0 => *n as usize,
        _ => return 0,
    };
    sent.saturating_sub(claimed) as u64
}

// ---------------------------------------------------------------- comparing
