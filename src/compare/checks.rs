//! The comparisons of one record's chunk with the target: one command per
//! chunk (GETRANGE, HMGET and HPEXPIRETIME, SMISMEMBER, ZMSCORE, LRANGE,
//! XRANGE, DUMP), its length at the key's last record, and what each reply
//! means; what is known of a key across its records.

use super::*;

/// What is known of the key being compared, across its records.
#[derive(Debug)]
pub(super) struct KeyState {
    pub(super) key: Vec<u8>,
    pub(super) key_type: KeyType,
    /// Skip the key's remaining records: expired, missing or of another type.
    pub(super) settled: bool,
    pub(super) expiry: Option<Expiry>,
    pub(super) target_expiry: Option<i64>,
    /// Elements (bytes for strings) in the archive so far.
    pub(super) total: u64,
    /// Elements that differ, and a few examples.
    pub(super) differing: u64,
    pub(super) examples: Vec<String>,
    /// Last stream id seen, for XRANGE bounds.
    pub(super) stream_meta: Option<crate::record::StreamMeta>,
    /// A shared index of which the archive holds one user's members: only
    /// those are compared, not the key's length or expiry.
    pub(super) partial: bool,
    /// Already expired in the archive: counted as such, not compared.
    pub(super) expired: bool,
    /// Decided from TYPE alone: identical (`Ok`) or a difference.
    pub(super) early: Option<std::result::Result<(), (DiffKind, String)>>,
    /// The archive voids the key's parts (it changed while exported):
    /// nothing of it is compared or counted.
    pub(super) void: bool,
    /// How hash field expiry is compared, with the tolerance and the clock.
    pub(super) fields: FieldExpiryCheck,
    /// A stream's consumer groups: consumers and pending entries.
    pub(super) pel: crate::pel::PelCompare,
    /// A DUMP-kept type the server re-encodes, whose payload differs.
    pub(super) not_comparable: Option<String>,
    /// Only look for the archive's fields, members and entries, whatever
    /// their values (`--subset=merge`): what a merge leaves.
    pub(super) presence: bool,
}

/// How hash field expiry is compared on this target.
#[derive(Debug, Clone, Copy)]
pub(super) struct FieldExpiryCheck {
    /// The target has the feature (Redis 7.4+, Valkey 9.0+).
    pub(super) supported: bool,
    /// The target may hold fields with expiry (its `subexpiry` count), so
    /// even fields without expiry in the archive are checked.
    pub(super) target_has_some: bool,
    pub(super) tolerance: i64,
    pub(super) now_ms: i64,
}

impl KeyState {
    pub(super) fn note(&mut self, what: String) {
        self.differing += 1;
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }
}

/// One comparison command and what to do with its reply.
#[derive(Debug)]
pub(super) enum Check {
    StringRange(Vec<u8>),
    HashFields(Vec<(Bytes, Bytes)>),
    Members(Vec<Bytes>),
    Scores(Vec<(Bytes, f64)>),
    ListRange(Vec<Bytes>),
    StreamRange(Vec<StreamEntry>),
    Dump(Vec<u8>, String),
    /// Each field's expiry in the archive (ms), to compare with the target's.
    FieldExpiry(Vec<(Bytes, Option<i64>)>),
    /// The target's length must equal the archive's total.
    Length,
    /// The stream's last id and consumer groups.
    StreamMeta,
    /// Consumer groups: their consumers and pending entries.
    Pel(crate::pel::PelCheck),
    /// Fields or members that must be in the target, whatever their value
    /// (HMGET, SMISMEMBER, ZMSCORE: a nil or a 0 is one it lacks).
    Present(Vec<Bytes>),
    /// A list value that must be somewhere in the target's list (LPOS).
    InList(Bytes),
    /// Stream entry ids that must be in the target's XRANGE.
    EntriesPresent(Vec<crate::record::StreamId>),
}

pub(super) fn add_checks(
    pipe: &mut redis::Pipeline,
    record: &Record,
    state: &mut KeyState,
) -> Vec<Check> {
    if state.presence {
        return add_presence_checks(pipe, record, state);
    }
    let key = &record.key.0[..];
    let mut checks = Vec::new();
    match &record.value {
        Value::String(b) => {
            let from = state.total;
            state.total += b.0.len() as u64;
            if !b.0.is_empty() {
                pipe.cmd("GETRANGE").arg(key).arg(from).arg(state.total - 1);
                checks.push(Check::StringRange(b.0.clone()));
            }
        }
        Value::Hash(fields) => {
            let f = state.fields;
            let expiry: HashMap<&[u8], i64> = record
                .field_expiry
                .iter()
                .map(|e| (&e.field.0[..], e.at_ms))
                .collect();
            // A field whose expiry has passed is gone, as an expired key is.
            let fields: Vec<(Bytes, Bytes)> = fields
                .iter()
                .filter(|(name, _)| expiry.get(&name.0[..]).is_none_or(|&at| at > f.now_ms))
                .cloned()
                .collect();
            state.total += fields.len() as u64;
            if !fields.is_empty() {
                let c = pipe.cmd("HMGET").arg(key);
                for (name, _) in &fields {
                    c.arg(&name.0[..]);
                }
                if f.supported && (f.target_has_some || !expiry.is_empty()) {
                    let c = pipe
                        .cmd("HPEXPIRETIME")
                        .arg(key)
                        .arg("FIELDS")
                        .arg(fields.len());
                    for (name, _) in &fields {
                        c.arg(&name.0[..]);
                    }
                    checks.push(Check::HashFields(fields.clone()));
                    checks.push(Check::FieldExpiry(
                        fields
                            .iter()
                            .map(|(name, _)| (name.clone(), expiry.get(&name.0[..]).copied()))
                            .collect(),
                    ));
                } else {
                    if !f.supported && !expiry.is_empty() {
                        state.note(format!(
                            "{} field(s) expire on their own in the archive; the target has no field expiry",
                            expiry.len()
                        ));
                    }
                    checks.push(Check::HashFields(fields));
                }
            }
        }
        Value::Set(members) => {
            state.total += members.len() as u64;
            if !members.is_empty() {
                let c = pipe.cmd("SMISMEMBER").arg(key);
                for m in members {
                    c.arg(&m.0[..]);
                }
                checks.push(Check::Members(members.clone()));
            }
        }
        Value::Zset(members) => {
            state.total += members.len() as u64;
            if !members.is_empty() {
                let c = pipe.cmd("ZMSCORE").arg(key);
                for (m, _) in members {
                    c.arg(&m.0[..]);
                }
                checks.push(Check::Scores(
                    members.iter().map(|(m, s)| (m.clone(), s.0)).collect(),
                ));
            }
        }
        Value::List(items) => {
            let from = state.total;
            state.total += items.len() as u64;
            if !items.is_empty() {
                pipe.cmd("LRANGE").arg(key).arg(from).arg(state.total - 1);
                checks.push(Check::ListRange(items.clone()));
            }
        }
        Value::Stream(chunk) => {
            if let Some(meta) = &chunk.meta {
                state.stream_meta = Some(meta.clone());
            }
            state.total += chunk.entries.len() as u64;
            if let (Some(first), Some(last)) = (chunk.entries.first(), chunk.entries.last()) {
                pipe.cmd("XRANGE")
                    .arg(key)
                    .arg(first.id.to_string())
                    .arg(last.id.to_string());
                checks.push(Check::StreamRange(chunk.entries.clone()));
            }
            let pel = crate::pel::add_checks(pipe, key, &chunk.pending, &mut state.pel);
            checks.extend(pel.into_iter().map(Check::Pel));
            if !record.more {
                pipe.cmd("XINFO").arg("STREAM").arg(key);
                checks.push(Check::StreamMeta);
                if let Some(meta) = state.stream_meta.as_ref().filter(|_| !state.partial) {
                    let groups =
                        crate::pel::add_final_checks(pipe, key, &meta.groups, &mut state.pel);
                    checks.extend(groups.into_iter().map(Check::Pel));
                }
            }
        }
        Value::Dump(d) => {
            pipe.cmd("DUMP").arg(key);
            checks.push(Check::Dump(d.payload.0.clone(), d.type_name.clone()));
        }
        // Settled in `begin`: there is nothing to read.
        Value::Absent(_) => {}
    }
    // At a key's last record, the target must not hold more than the archive.
    if !record.more
        && !state.partial
        && let Some(command) = length_command(record.key_type())
    {
        pipe.cmd(command).arg(key);
        checks.push(Check::Length);
    }
    checks
}

/// What a merge leaves, checked: the archive's hash fields, set and
/// sorted-set members, list values and stream entry ids are in the target
/// key, whatever their values there (a merge keeps the target's). A string
/// or DUMP-kept key only has to exist with its type, settled by `begin`.
fn add_presence_checks(
    pipe: &mut redis::Pipeline,
    record: &Record,
    state: &mut KeyState,
) -> Vec<Check> {
    let key = &record.key.0[..];
    let mut members = |command: &str, names: Vec<Bytes>| {
        state.total += names.len() as u64;
        if names.is_empty() {
            return Vec::new();
        }
        let c = pipe.cmd(command).arg(key);
        for name in &names {
            c.arg(&name.0[..]);
        }
        vec![Check::Present(names)]
    };
    match &record.value {
        Value::Hash(fields) => {
            // A field whose own expiry has passed is not written, so not looked for.
            let now_ms = state.fields.now_ms;
            let gone = |f: &Bytes| {
                record
                    .field_expiry
                    .iter()
                    .any(|e| e.field == *f && e.at_ms <= now_ms)
            };
            let names = fields
                .iter()
                .filter(|(f, _)| !gone(f))
                .map(|(f, _)| f.clone())
                .collect();
            members("HMGET", names)
        }
        Value::Set(set) => members("SMISMEMBER", set.clone()),
        Value::Zset(zset) => members("ZMSCORE", zset.iter().map(|(m, _)| m.clone()).collect()),
        Value::List(items) => {
            state.total += items.len() as u64;
            items
                .iter()
                .map(|item| {
                    pipe.cmd("LPOS").arg(key).arg(&item.0[..]);
                    Check::InList(item.clone())
                })
                .collect()
        }
        Value::Stream(chunk) => {
            state.total += chunk.entries.len() as u64;
            match (chunk.entries.first(), chunk.entries.last()) {
                (Some(first), Some(last)) => {
                    pipe.cmd("XRANGE")
                        .arg(key)
                        .arg(first.id.to_string())
                        .arg(last.id.to_string());
                    vec![Check::EntriesPresent(
                        chunk.entries.iter().map(|e| e.id).collect(),
                    )]
                }
                _ => Vec::new(),
            }
        }
        Value::String(_) | Value::Dump(_) | Value::Absent(_) => Vec::new(),
    }
}

/// Types kept as DUMP payloads whose payload the server writes anew on
/// RESTORE (a vector set rebuilds its graph; TopK re-lays its heap), so the
/// same value can dump differently.
pub(super) fn reencoded(type_name: &str) -> bool {
    matches!(type_name, "vectorset" | "TopK-TYPE")
}

/// The command that gives a key's length in the unit `KeyState::total` counts.
pub(super) fn length_command(t: KeyType) -> Option<&'static str> {
    match t {
        KeyType::String => Some("STRLEN"),
        KeyType::Hash => Some("HLEN"),
        KeyType::Set => Some("SCARD"),
        KeyType::Zset => Some("ZCARD"),
        KeyType::List => Some("LLEN"),
        KeyType::Stream => Some("XLEN"),
        KeyType::Dump | KeyType::Absent => None,
    }
}

pub(super) fn evaluate(state: &mut KeyState, check: Check, reply: Reply) {
    if let Reply::ServerError(e) = &reply {
        state.note(format!("the target refused the comparison: {e}"));
        return;
    }
    match check {
        Check::StringRange(want) => {
            if bytes_of(reply) != want {
                state.note(format!(
                    "bytes from offset {}",
                    state.total - want.len() as u64
                ));
            }
        }
        Check::Dump(want, type_name) => {
            if bytes_of(reply) != want {
                if reencoded(&type_name) {
                    state.not_comparable = Some(type_name);
                } else {
                    state.note("the DUMP payloads differ".into());
                }
            }
        }
        Check::HashFields(fields) => {
            for ((f, want), got) in fields.iter().zip(array_of(reply)) {
                if matches!(got, Reply::Nil) {
                    state.note(format!("\"{}\" missing in the target", short(&f.0)));
                } else if bytes_of(got) != want.0 {
                    state.note(format!("\"{}\" differs", short(&f.0)));
                }
            }
        }
        Check::FieldExpiry(fields) => {
            let tolerance = state.fields.tolerance;
            for ((f, want), got) in fields.iter().zip(array_of(reply)) {
                let got = match got {
                    // Missing: counted by the field check.
                    Reply::Int(-2) => continue,
                    Reply::Int(t) if t >= 0 => Some(t),
                    _ => None,
                };
                let differs = match (want, got) {
                    (None, None) => false,
                    (Some(a), Some(b)) => (a - b).abs() > tolerance,
                    _ => true,
                };
                if differs {
                    let show =
                        |t: Option<i64>| t.map_or("never".to_string(), |t| format!("at {t} ms"));
                    state.note(format!(
                        "\"{}\" expires {} in the archive, {} in the target",
                        short(&f.0),
                        show(*want),
                        show(got)
                    ));
                }
            }
        }
        Check::Members(members) => {
            for (m, got) in members.iter().zip(array_of(reply)) {
                if !matches!(got, Reply::Int(1)) {
                    state.note(format!("\"{}\" missing in the target", short(&m.0)));
                }
            }
        }
        Check::Scores(members) => {
            for ((m, want), got) in members.iter().zip(array_of(reply)) {
                let got = match got {
                    Reply::Nil => None,
                    Reply::Double(d) => Some(d),
                    other => parse_score(&bytes_of(other)),
                };
                match got {
                    None => state.note(format!("\"{}\" missing in the target", short(&m.0))),
                    Some(g) if g.to_bits() != want.to_bits() && g != *want => state.note(format!(
                        "\"{}\" score {want} in the archive, {g} in the target",
                        short(&m.0)
                    )),
                    _ => {}
                }
            }
        }
        Check::ListRange(items) => {
            let got = array_of(reply);
            let start = state.total - items.len() as u64;
            for (i, want) in items.iter().enumerate() {
                match got.get(i) {
                    Some(g) if bytes_of(g.clone()) == want.0 => {}
                    _ => state.note(format!("index {}", start + i as u64)),
                }
            }
        }
        Check::StreamRange(entries) => {
            let got = stream_entries(reply).unwrap_or_default();
            let mut got = got.into_iter().peekable();
            for want in entries {
                while got.peek().is_some_and(|g| g.id < want.id) {
                    let extra = got.next().expect("peeked");
                    state.note(format!("entry {} only in the target", extra.id));
                }
                match got.next_if(|g| g.id == want.id) {
                    Some(g) if g.fields == want.fields => {}
                    Some(_) => state.note(format!("entry {} differs", want.id)),
                    None => state.note(format!("entry {} missing in the target", want.id)),
                }
            }
        }
        Check::Length => {
            let len = match reply {
                Reply::Int(n) => n.max(0) as u64,
                _ => 0,
            };
            if len > state.total {
                state.note(format!("the target has {} more", len - state.total));
            }
        }
        Check::Present(names) => {
            for (name, got) in names.iter().zip(array_of(reply)) {
                if matches!(got, Reply::Nil | Reply::Int(0)) {
                    state.note(format!("\"{}\" missing in the target", short(&name.0)));
                }
            }
        }
        Check::InList(item) => {
            if matches!(reply, Reply::Nil) {
                state.note(format!("\"{}\" missing in the target", short(&item.0)));
            }
        }
        Check::EntriesPresent(ids) => {
            let got: HashSet<_> = stream_entries(reply)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.id)
                .collect();
            for id in ids.iter().filter(|id| !got.contains(id)) {
                state.note(format!("entry {id} missing in the target"));
            }
        }
        Check::Pel(check) => {
            for note in crate::pel::evaluate(&mut state.pel, check, reply) {
                state.note(note);
            }
        }
        Check::StreamMeta => {
            let Some(meta) = state.stream_meta.take() else {
                return;
            };
            let info = array_of(reply);
            let field = |name: &str| {
                info.chunks(2)
                    .find(|kv| bytes_of(kv[0].clone()) == name.as_bytes())
                    .and_then(|kv| kv.get(1).cloned())
            };
            let last = field("last-generated-id").map(bytes_of);
            if last.as_deref() != Some(meta.last_id.to_string().as_bytes()) {
                state.note(format!(
                    "last id {} in the archive, {} in the target",
                    meta.last_id,
                    last.map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default()
                ));
            }
        }
    }
}
