//! Comparing an archive's consumers and pending entries with the target's.

use super::*;

/// What `compare` knows of a stream's groups across its records.
#[derive(Debug, Default)]
pub(crate) struct PelCompare {
    pub(super) cluster: bool,
    /// Per group, the id the next range starts at (`None`: past the last id).
    pub(super) next_from: BTreeMap<Bytes, Option<StreamId>>,
    /// The clock read before the range in flight.
    pub(super) clock: Option<i64>,
    pub(super) range: Option<(GroupPending, Vec<Reply>)>,
    /// Pending entries the target lacks: differences only if the target's
    /// stream has their message (one that is gone cannot be restored).
    pub(super) missing: Vec<(Bytes, StreamId)>,
    /// Differences found in the groups so far.
    pub(super) differences: u64,
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

pub(crate) fn name(bytes: &[u8]) -> String {
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

pub(crate) fn judge(state: &mut PelCompare, check: PelCheck, reply: Reply) -> Vec<String> {
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
pub(crate) fn compare_run(
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
