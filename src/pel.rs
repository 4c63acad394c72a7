//! Consumers and pending entries lists (PELs) of stream consumer groups:
//! read on export, written back on restore, compared by `compare`.
//!
//! A group's consumers travel in the stream's first record (`meta.groups`).
//! Its pending entries follow all of the stream's entries, a page at a time,
//! in records of their own (`StreamChunk::pending`), so a PEL of millions is
//! never one reply or one record.
//!
//! **Reading.** `XPENDING key group start end count` pages a PEL by id and
//! gives each entry's idle time, which the server computes from its clock as
//! it runs the command. Each page is sent between two clock reads in one
//! pipeline: when both fall in the same millisecond, XPENDING ran in that
//! millisecond and `delivery time = that millisecond - idle` is exact. When
//! they do not, the page is read again, smaller; after [`CLOCK_TRIES`] reads
//! the first clock read is used, within a millisecond.
//!
//! **Writing.** Once the stream's entries are all in and its groups exist
//! (created with their last-delivered id and entries-read, which nothing
//! below changes), consumers are created with `XGROUP CREATECONSUMER` and
//! pending entries with `XCLAIM key group consumer 0 id... TIME ms
//! RETRYCOUNT n FORCE JUSTID`. XCLAIM FORCE skips an id whose message is not
//! in the stream (deleted or trimmed at the source, or, in a merge, an entry
//! the target had passed): its reply lists the ids it claimed, and the
//! restore counts the others.
//!
//! **Merging** into a stream the target has: a group the target lacks is
//! created with its consumers and pending entries; a group it has is left
//! exactly as it is (consumers, pending entries, last-delivered id). The
//! writes are pipelined, so the claims cannot wait for the reply that says
//! whether the group was created: the script that creates it also creates a
//! marker consumer, the claims run only where the marker is, and the
//! marker is removed at the key's last record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use redis::{Pipeline, Value as Reply};

use crate::connection::Conn;
use crate::error::Result;
use crate::load::{Role, TargetFeatures};
use crate::record::{
    Bytes, ConsumerGroup, GroupPending, PendingEntry, StreamChunk, StreamId, printable,
};
use crate::reply::{array_of, bytes_of, info_fields, parse_time, stream_id_of, u64_of};

/// Reads of one page whose clock reads fell in different milliseconds,
/// before the delivery times are taken within a millisecond.
pub const CLOCK_TRIES: usize = 20;

/// Ids per XCLAIM.
const CLAIM_IDS: usize = 256;

/// The consumer that marks a group a merge created (see the module docs).
const MARKER: &str = "__archive_restore_tmp__";

/// The server's clock, from the node that holds `key`: in a cluster, TIME
/// would go to another node, whose clock and order say nothing of this one.
const TIME_SCRIPT: &str = "return redis.call('TIME')";

fn add_clock(pipe: &mut Pipeline, key: &[u8], cluster: bool) {
    if cluster {
        pipe.cmd("EVAL").arg(TIME_SCRIPT).arg(1).arg(key);
    } else {
        pipe.cmd("TIME");
    }
}

// ---------------------------------------------------------------- reading

/// Where reading a stream's pending entries goes on from.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// Groups whose pending entries are still to be read, each from an id.
    groups: VecDeque<(Bytes, StreamId)>,
    /// The stream's last id as its first record has it: pending entries
    /// above it are for entries the archive does not hold (a later state).
    last: StreamId,
}

impl Cursor {
    /// Drop groups read to the end; `None` when none is left.
    fn settle(mut self) -> Option<Cursor> {
        while self
            .groups
            .front()
            .is_some_and(|(_, from)| *from > self.last)
        {
            self.groups.pop_front();
        }
        (!self.groups.is_empty()).then_some(self)
    }
}

/// Fill in the consumers of a stream's groups in its first record (one
/// XINFO CONSUMERS per group, in one round trip) and say whose pending
/// entries are to be read after the stream's entries. When the record
/// holds all of the entries (`entries_done`), up to `count` pending entries
/// go in it too, so a small stream stays one record. The inner error is a
/// command the server refused for this key (it changed type meanwhile); a
/// group destroyed since is kept without consumers.
pub(crate) async fn read_groups(
    conn: &mut Conn,
    key: &[u8],
    chunk: &mut StreamChunk,
    entries_done: bool,
    count: usize,
) -> Result<std::result::Result<Option<Cursor>, String>> {
    let Some(meta) = chunk.meta.as_mut().filter(|m| !m.groups.is_empty()) else {
        return Ok(Ok(None));
    };
    let mut pipe = redis::pipe();
    for group in &meta.groups {
        pipe.cmd("XINFO")
            .arg("CONSUMERS")
            .arg(key)
            .arg(&group.name.0[..]);
    }
    let replies = conn.pipeline(&mut pipe, "reading stream consumers").await?;
    let mut groups = VecDeque::new();
    for (group, reply) in meta.groups.iter_mut().zip(replies) {
        if let Reply::ServerError(e) = &reply {
            let text = e.to_string();
            if text.contains("NOGROUP") {
                continue;
            }
            return Ok(Err(text));
        }
        let mut pending = 0;
        for consumer in array_of(reply) {
            let mut name = None;
            for (field, value) in info_fields(consumer) {
                match field.as_str() {
                    "name" => name = Some(Bytes(bytes_of(value))),
                    "pending" => pending += u64_of(&value).unwrap_or(0),
                    _ => {}
                }
            }
            match name {
                Some(name) => group.consumers.push(name),
                None => return Ok(Err("XINFO CONSUMERS gave a consumer without a name".into())),
            }
        }
        if pending > 0 {
            groups.push_back((group.name.clone(), StreamId::default()));
        }
    }
    let mut cursor = Cursor {
        groups,
        last: meta.last_id,
    }
    .settle();
    let mut room = if entries_done { count } else { 0 };
    while room > 0
        && let Some(c) = cursor.take()
    {
        let (runs, next) = match read_page(conn, key, c, room).await {
            Ok(page) => page,
            Err(reason) => return Ok(Err(reason)),
        };
        room = room.saturating_sub(runs.iter().map(|r| r.entries.len()).sum());
        chunk.pending.extend(runs);
        cursor = next;
    }
    Ok(Ok(cursor))
}

/// Read the next page of pending entries (up to `count`), skipping groups
/// that turn out to have none left. Returns the runs read (empty only when
/// nothing is left) and where to go on from.
pub(crate) async fn read_page(
    conn: &mut Conn,
    key: &[u8],
    mut cursor: Cursor,
    count: usize,
) -> std::result::Result<(Vec<GroupPending>, Option<Cursor>), String> {
    let cluster = conn.is_cluster();
    while let Some((group, from)) = cursor.groups.front().cloned() {
        let mut asked = count.max(1);
        let mut page = None;
        for attempt in 0..CLOCK_TRIES {
            let mut pipe = redis::pipe();
            add_clock(&mut pipe, key, cluster);
            pipe.cmd("XPENDING")
                .arg(key)
                .arg(&group.0[..])
                .arg(from.to_string())
                .arg(cursor.last.to_string())
                .arg(asked);
            add_clock(&mut pipe, key, cluster);
            let mut replies = conn
                .pipeline(&mut pipe, "reading pending entries")
                .await
                .map_err(|e| e.to_string())?
                .into_iter();
            let before = parse_time(replies.next())?;
            let reply = replies.next().unwrap_or(Reply::Nil);
            let after = parse_time(replies.next())?;
            if let Reply::ServerError(e) = &reply {
                let text = e.to_string();
                // The group (or the key) is gone: nothing more to read of it.
                if text.contains("NOGROUP") {
                    break;
                }
                return Err(text);
            }
            if before == after || attempt + 1 == CLOCK_TRIES {
                page = Some((pending_entries(reply, before)?, asked));
                break;
            }
            // The clock ticked over: a smaller page runs in less time.
            asked = (asked / 2).max(16).min(asked);
        }
        let Some((entries, asked)) = page else {
            cursor.groups.pop_front();
            continue;
        };
        match entries.last().and_then(|e| e.id.next()) {
            Some(next) if entries.len() >= asked => cursor.groups[0].1 = next,
            _ => {
                cursor.groups.pop_front();
            }
        }
        if !entries.is_empty() {
            return Ok((vec![GroupPending { group, entries }], cursor.settle()));
        }
        cursor = match cursor.settle() {
            Some(c) => c,
            None => break,
        };
    }
    Ok((Vec::new(), None))
}

/// One XPENDING entry: id, consumer, idle ms, deliveries.
fn pending_item(item: Reply) -> Option<(StreamId, Vec<u8>, i64, u64)> {
    let mut f = array_of(item).into_iter();
    let id = stream_id_of(&f.next()?)?;
    let consumer = bytes_of(f.next()?);
    let idle = u64_of(&f.next()?)?;
    let count = u64_of(&f.next()?)?;
    Some((id, consumer, i64::try_from(idle).ok()?, count))
}

/// XPENDING's entries with their delivery times, given the millisecond the
/// command ran in.
fn pending_entries(reply: Reply, now_ms: i64) -> std::result::Result<Vec<PendingEntry>, String> {
    array_of(reply)
        .into_iter()
        .map(|item| {
            let (id, consumer, idle, delivery_count) =
                pending_item(item).ok_or("XPENDING gave an unexpected entry")?;
            Ok(PendingEntry {
                id,
                consumer: Bytes(consumer),
                delivery_count,
                delivered_at_ms: (now_ms - idle).max(0),
            })
        })
        .collect()
}

// ---------------------------------------------------------------- writing

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
fn claims(run: &GroupPending) -> BTreeMap<(&Bytes, i64, u64), Vec<StreamId>> {
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
const MERGE_GROUP_SCRIPT: &str = "local args = {'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2]} \
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
const MERGE_CLAIM_SCRIPT: &str = "if redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[2]) == 1 then \
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

/// What `compare` knows of a stream's groups across its records.
#[derive(Debug, Default)]
pub(crate) struct PelCompare {
    cluster: bool,
    /// Per group, the id the next range starts at (`None`: past the last id).
    next_from: BTreeMap<Bytes, Option<StreamId>>,
    /// The clock read before the range in flight.
    clock: Option<i64>,
    range: Option<(GroupPending, Vec<Reply>)>,
    /// Pending entries the target lacks: differences only if the target's
    /// stream has their message (one that is gone cannot be restored).
    missing: Vec<(Bytes, StreamId)>,
    /// Differences found in the groups so far.
    differences: u64,
}

impl PelCompare {
    pub(crate) fn new(cluster: bool) -> Self {
        PelCompare {
            cluster,
            ..PelCompare::default()
        }
    }

    /// Differences in groups, consumers and pending entries.
    pub(crate) fn differences(&self) -> u64 {
        self.differences
    }
}

/// A stream's difference in a sentence, when its groups differ:
/// `differing` counts every difference, `groups` those in its groups.
pub(crate) fn detail(differing: u64, entries: u64, groups: u64) -> String {
    let in_entries = differing.saturating_sub(groups);
    let in_groups = format!(
        "{groups} difference{} in consumer groups",
        if groups == 1 { "" } else { "s" }
    );
    if in_entries == 0 {
        in_groups
    } else {
        format!("{in_entries} of {entries} entries differ, and {in_groups}")
    }
}

/// One comparison command about consumer groups.
#[derive(Debug)]
pub(crate) enum PelCheck {
    /// The clock before a range.
    Clock,
    /// The target's pending entries over an archived run's ids (and from
    /// where the previous run of the group ended, so gaps are seen too).
    Range(GroupPending),
    /// The clock after it: the range is judged.
    Close,
    /// The target's groups against the archive's.
    Groups(Vec<ConsumerGroup>),
    /// One group's consumers.
    Consumers(Bytes, Vec<Bytes>),
    /// Pending entries after the group's last archived one: none expected.
    Tail(Bytes),
    /// Whether the target's stream has the message of a missing pending entry.
    Message(Bytes, StreamId),
}

/// The checks for a record's pending entries.
pub(crate) fn add_checks(
    pipe: &mut Pipeline,
    key: &[u8],
    pending: &[GroupPending],
    state: &mut PelCompare,
) -> Vec<PelCheck> {
    let mut checks = Vec::new();
    for run in pending {
        let Some(last) = run.entries.last().map(|e| e.id) else {
            continue;
        };
        let Some(from) = state
            .next_from
            .get(&run.group)
            .copied()
            .unwrap_or(Some(StreamId::default()))
        else {
            continue;
        };
        add_clock(pipe, key, state.cluster);
        pipe.cmd("XPENDING")
            .arg(key)
            .arg(&run.group.0[..])
            .arg(from.to_string())
            .arg(last.to_string())
            // One more than the archive has: an extra one always shows.
            .arg(run.entries.len() + 1);
        add_clock(pipe, key, state.cluster);
        checks.extend([
            PelCheck::Clock,
            PelCheck::Range(run.clone()),
            PelCheck::Close,
        ]);
        state.next_from.insert(run.group.clone(), last.next());
    }
    checks
}

/// The checks at a stream's last record: groups, consumers, and pending
/// entries after the last archived one.
pub(crate) fn add_final_checks(
    pipe: &mut Pipeline,
    key: &[u8],
    groups: &[ConsumerGroup],
    state: &mut PelCompare,
) -> Vec<PelCheck> {
    pipe.cmd("XINFO").arg("GROUPS").arg(key);
    let mut checks = vec![PelCheck::Groups(groups.to_vec())];
    for group in groups {
        pipe.cmd("XINFO")
            .arg("CONSUMERS")
            .arg(key)
            .arg(&group.name.0[..]);
        checks.push(PelCheck::Consumers(
            group.name.clone(),
            group.consumers.clone(),
        ));
        let from = state
            .next_from
            .get(&group.name)
            .copied()
            .unwrap_or(Some(StreamId::default()));
        if let Some(from) = from {
            pipe.cmd("XPENDING")
                .arg(key)
                .arg(&group.name.0[..])
                .arg(from.to_string())
                .arg("+")
                .arg(1);
            checks.push(PelCheck::Tail(group.name.clone()));
        }
    }
    checks
}

/// Look up the messages of pending entries the target lacks.
pub(crate) fn add_lookups(
    pipe: &mut Pipeline,
    key: &[u8],
    state: &mut PelCompare,
) -> Vec<PelCheck> {
    state
        .missing
        .drain(..)
        .map(|(group, id)| {
            pipe.cmd("XRANGE")
                .arg(key)
                .arg(id.to_string())
                .arg(id.to_string());
            PelCheck::Message(group, id)
        })
        .collect()
}

fn name(bytes: &[u8]) -> String {
    let text = printable(bytes);
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// Judge one reply; returns what differs.
pub(crate) fn evaluate(state: &mut PelCompare, check: PelCheck, reply: Reply) -> Vec<String> {
    let notes = judge(state, check, reply);
    state.differences += notes.len() as u64;
    notes
}

fn judge(state: &mut PelCompare, check: PelCheck, reply: Reply) -> Vec<String> {
    let mut notes = Vec::new();
    match check {
        PelCheck::Clock => state.clock = parse_time(Some(reply)).ok(),
        PelCheck::Range(run) => state.range = Some((run, array_of(reply))),
        PelCheck::Close => {
            let after = parse_time(Some(reply)).ok();
            if let (Some((run, got)), Some(before), Some(after)) =
                (state.range.take(), state.clock.take(), after)
            {
                compare_run(state, run, got, before, after, &mut notes);
            }
        }
        PelCheck::Groups(want) => {
            let mut got = BTreeMap::new();
            for group in array_of(reply) {
                let mut name = None;
                let mut last = None;
                let mut read = None;
                for (field, value) in info_fields(group) {
                    match field.as_str() {
                        "name" => name = Some(bytes_of(value)),
                        "last-delivered-id" => last = stream_id_of(&value),
                        "entries-read" => read = u64_of(&value),
                        _ => {}
                    }
                }
                if let Some(n) = name {
                    got.insert(n, (last, read));
                }
            }
            for group in &want {
                match got.remove(&group.name.0) {
                    None => notes.push(format!(
                        "group \"{}\" missing in the target",
                        name(&group.name.0)
                    )),
                    Some((last, read)) => {
                        if last != Some(group.last_delivered_id) {
                            notes.push(format!(
                                "group \"{}\" last delivered id {} in the archive, {} in the target",
                                name(&group.name.0),
                                group.last_delivered_id,
                                last.map(|l| l.to_string()).unwrap_or_default()
                            ));
                        }
                        if let (Some(want), Some(got)) = (group.entries_read, read)
                            && want != got
                        {
                            notes.push(format!(
                                "group \"{}\" entries read {want} in the archive, {got} in the target",
                                name(&group.name.0)
                            ));
                        }
                    }
                }
            }
            for extra in got.keys() {
                notes.push(format!("group \"{}\" only in the target", name(extra)));
            }
        }
        PelCheck::Consumers(group, want) => {
            let mut got = BTreeSet::new();
            for consumer in array_of(reply) {
                for (field, value) in info_fields(consumer) {
                    if field == "name" {
                        got.insert(bytes_of(value));
                    }
                }
            }
            for c in &want {
                if !got.remove(&c.0) {
                    notes.push(format!(
                        "consumer \"{}\" of group \"{}\" missing in the target",
                        name(&c.0),
                        name(&group.0)
                    ));
                }
            }
            for c in got {
                notes.push(format!(
                    "consumer \"{}\" of group \"{}\" only in the target",
                    name(&c),
                    name(&group.0)
                ));
            }
        }
        PelCheck::Tail(group) => {
            for item in array_of(reply) {
                if let Some((id, ..)) = pending_item(item) {
                    notes.push(format!(
                        "pending entry {id} of group \"{}\" only in the target",
                        name(&group.0)
                    ));
                }
            }
        }
        PelCheck::Message(group, id) => {
            if !array_of(reply).is_empty() {
                notes.push(format!(
                    "pending entry {id} of group \"{}\" missing in the target",
                    name(&group.0)
                ));
            }
        }
    }
    notes
}

/// An archived run against the target's pending entries over its ids.
fn compare_run(
    state: &mut PelCompare,
    run: GroupPending,
    got: Vec<Reply>,
    before: i64,
    after: i64,
    notes: &mut Vec<String>,
) {
    let group = name(&run.group.0);
    let mut got = got.into_iter().filter_map(pending_item).peekable();
    for want in run.entries {
        while let Some((id, ..)) = got.next_if(|g| g.0 < want.id) {
            notes.push(format!(
                "pending entry {id} of group \"{group}\" only in the target"
            ));
        }
        match got.next_if(|g| g.0 == want.id) {
            Some((id, consumer, idle, count)) => {
                // XPENDING ran between the two clock reads.
                let (earliest, latest) = (before - idle, after - idle);
                let at = want.delivered_at_ms;
                if consumer != want.consumer.0
                    || count != want.delivery_count
                    || at < earliest
                    || at > latest
                {
                    notes.push(format!(
                        "pending entry {id} of group \"{group}\": {} delivery(ies) to \"{}\" at {at} ms in the archive, {count} to \"{}\" at {earliest} ms in the target",
                        want.delivery_count,
                        name(&want.consumer.0),
                        name(&consumer)
                    ));
                }
            }
            None => state.missing.push((run.group.clone(), want.id)),
        }
    }
    for (id, ..) in got {
        notes.push(format!(
            "pending entry {id} of group \"{group}\" only in the target"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(u64, &str, i64, u64)]) -> GroupPending {
        GroupPending {
            group: "g".into(),
            entries: entries
                .iter()
                .map(|&(ms, consumer, at, count)| PendingEntry {
                    id: StreamId { ms, seq: 0 },
                    consumer: consumer.into(),
                    delivery_count: count,
                    delivered_at_ms: at,
                })
                .collect(),
        }
    }

    #[test]
    fn entries_delivered_together_share_one_claim() {
        let r = run(&[
            (1, "a", 10, 1),
            (2, "a", 10, 1),
            (3, "b", 10, 1),
            (4, "a", 10, 2),
        ]);
        let by = claims(&r);
        assert_eq!(by.len(), 3);
        assert_eq!(
            by[&(&Bytes::from("a"), 10, 1)],
            vec![StreamId { ms: 1, seq: 0 }, StreamId { ms: 2, seq: 0 }]
        );
        let mut pipe = redis::pipe();
        let mut roles = Vec::new();
        add_claims(&mut pipe, b"k", &r, &mut roles);
        assert_eq!(roles, vec![Role::Claim(2), Role::Claim(1), Role::Claim(1)]);
    }

    #[test]
    fn claims_not_made_are_counted() {
        let ids = Reply::Array(vec![Reply::BulkString(b"1-0".to_vec())]);
        assert_eq!(not_claimed(3, &ids), 2);
        assert_eq!(not_claimed(3, &Reply::Int(3)), 0);
        assert_eq!(not_claimed(3, &Reply::Int(-1)), 0, "the target's own group");
    }

    fn xpending(items: &[(u64, &str, i64, u64)]) -> Vec<Reply> {
        items
            .iter()
            .map(|&(ms, consumer, idle, count)| {
                Reply::Array(vec![
                    Reply::BulkString(format!("{ms}-0").into_bytes()),
                    Reply::BulkString(consumer.as_bytes().to_vec()),
                    Reply::Int(idle),
                    Reply::Int(count as i64),
                ])
            })
            .collect()
    }

    #[test]
    fn delivery_times_come_from_the_millisecond_xpending_ran_in() {
        let entries = pending_entries(Reply::Array(xpending(&[(1, "a", 250, 3)])), 1_000).unwrap();
        assert_eq!(entries[0].delivered_at_ms, 750);
        assert_eq!(entries[0].delivery_count, 3);

        let mut state = PelCompare::default();
        let mut notes = Vec::new();
        // The target ran XPENDING between 1000 and 1001 ms: 750 or 751.
        let want = run(&[(1, "a", 751, 3), (2, "a", 700, 1), (4, "b", 10, 1)]);
        let got = xpending(&[(1, "a", 250, 3), (2, "a", 250, 1), (3, "x", 5, 1)]);
        compare_run(&mut state, want, got, 1_000, 1_001, &mut notes);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("2-0"), "{notes:?}");
        assert!(notes[1].contains("3-0") && notes[1].contains("only in the target"));
        assert_eq!(
            state.missing,
            vec![(Bytes::from("g"), StreamId { ms: 4, seq: 0 })]
        );
    }
}
