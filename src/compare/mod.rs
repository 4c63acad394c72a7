//! `compare`: an archive against a live database, key by key. Read-only.
//!
//! The archive is streamed once, with the db and rename mapping restore
//! would apply. Keys are checked in pipelined batches: type and expiry
//! first, then each record's chunk against the same part of the target
//! value (GETRANGE, HMGET, SMISMEMBER, ZMSCORE, LRANGE, XRANGE) and, at a
//! key's last record, the target's length, so extra fields or members show
//! too. A stream's pending entries are checked against XPENDING over the
//! same ids, and at its last record its groups and consumers (see `pel`).
//! Neither side is ever loaded whole: the archive is read on a blocking
//! thread that hands batches of records to the async comparison, which
//! awaits the target directly (so it runs on any tokio runtime).
//!
//! Keys the target has and the archive lacks are found afterwards by a SCAN
//! of the target limited to the archive's selection. To know which keys the
//! archive had, a 64-bit fingerprint of every archive key is kept (about 16
//! bytes per key), not the keys themselves.
//!
//! A subset comparison ([`CompareMode::Subset`], [`CompareMode::Merge`])
//! skips that SCAN: it asks whether the archive is in the target, as a
//! restore into a database with other data leaves it. With rename rules,
//! every key is looked up under its new name, and a key no rule renames is
//! a difference: a tenant move whose rules missed a key must not pass.
//!
//! About 800 lines: the report types live here with the walk that
//! fills them; the per-type checks are in checks.rs.

mod checks;

use checks::{Check, FieldExpiryCheck, KeyState, add_checks, evaluate};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use redis::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::archive::reader::ArchiveSource;
use crate::archive::stream::Batches;
use crate::archive::{Decryption, Header};
use crate::connection::{Conn, Endpoint};
use crate::error::{Error, Result};
use crate::keyspace::Selection;
use crate::progress::Progress;
use crate::record::{Bytes, Expiry, KeyType, Record, StreamEntry, Value, parse_score, printable};
use crate::reply::{array_of, bytes_of, stream_entries};
use crate::report::{RenameSummary, Samples};
use crate::restore::remap::{Remap, RenameTally};

/// What to compare: an archive against a live server, read-only.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The archive.
    pub source: ArchiveSource,
    /// Without an explicit database, the archive's source database.
    pub target: Endpoint,
    /// Key renames the archive was restored with, so keys are looked up
    /// under their new names.
    pub remap: Remap,
    /// Expiry times this close count as equal.
    pub ttl_tolerance_ms: i64,
    /// Keys or passphrase for an encrypted archive.
    pub decryption: Decryption,
    /// Keys per round trip to the target.
    pub batch_keys: usize,
    /// The profile of a user archive: its records are compared as restore
    /// writes them (upgraded to the profile's data schema, and with
    /// `as_user`, under the new user id).
    pub profile: Option<std::sync::Arc<crate::profile::Profile>>,
    /// The user id a user archive was restored as (`restore --as-user`).
    pub as_user: Option<String>,
    /// What the target must hold: exactly the archive, or the archive
    /// among other keys.
    pub mode: CompareMode,
    /// Compare expiry times; off to check a restore made with `--ttl none`
    /// or `relative`, which writes other times than the archive's.
    pub compare_expiry: bool,
}

/// How much of the target a comparison asks about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CompareMode {
    /// The target's keys inside the archive's selection are exactly the
    /// archive's: equal values and expiry, and no extra keys.
    #[default]
    Exact,
    /// Every key of the archive equals the target's; keys only the target
    /// has are not looked for (after a skip or overwrite restore into a
    /// database with other data).
    Subset,
    /// What a merge leaves: every hash field, set or sorted-set member,
    /// list value and stream entry id of the archive is in the target's
    /// key, whatever its value there; strings and DUMP-kept keys exist with
    /// their type; expiry, lengths and consumer groups are not compared;
    /// extra keys are not looked for.
    Merge,
}

impl CompareOptions {
    /// Compare `source` with `target`: no renames, a one-second expiry
    /// tolerance.
    pub fn new(source: ArchiveSource, target: Endpoint) -> Self {
        CompareOptions {
            source,
            target,
            remap: Remap::default(),
            ttl_tolerance_ms: 1000,
            decryption: Decryption::none(),
            batch_keys: 256,
            profile: None,
            as_user: None,
            mode: CompareMode::Exact,
            compare_expiry: true,
        }
    }
}

/// How a key differs between the archive and the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DiffKind {
    /// In the archive, not in the target.
    Missing,
    /// In the target (inside the archive's selection), not in the archive.
    Extra,
    /// In both, as keys of different types.
    TypeDiffers,
    /// In both, of the same type, with different values.
    ValueDiffers,
    /// In both, with different expiry: one expires and the other does not,
    /// or the times are further apart than the tolerance.
    TtlDiffers,
    /// Compared with rename rules, a key of the archive that no rule
    /// renames: restore would write it under its own name.
    NotRenamed,
}

impl DiffKind {
    /// The kebab-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::TypeDiffers => "type-differs",
            DiffKind::ValueDiffers => "value-differs",
            DiffKind::TtlDiffers => "ttl-differs",
            DiffKind::NotRenamed => "not-renamed",
        }
    }
}

/// One key that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// How it differs.
    pub kind: DiffKind,
    /// The key, printable.
    pub key: String,
    /// What differs, in words (such as the first field whose values differ).
    pub detail: String,
}

/// What a comparison found; it is identical when no key differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The archive as named.
    pub archive: String,
    /// The target, with any password left out.
    pub target: String,
    /// Archive keys looked at (not counting expired ones).
    pub compared: u64,
    /// Keys equal in type, value and expiry (within the tolerance).
    pub identical: u64,
    /// Keys whose expiry in the archive has passed: not compared.
    pub expired_in_archive: u64,
    /// Keys that differ, all kinds together.
    pub differences: u64,
    /// Keys that differ, per kind.
    pub by_kind: BTreeMap<DiffKind, u64>,
    /// The first differences found.
    pub examples: Vec<Difference>,
    /// Keys of types kept as DUMP payloads that the server re-encodes
    /// (vector sets, TopK): payloads that differ do not mean the values do,
    /// so these keys are reported as not compared, not as different.
    #[serde(default)]
    pub not_compared: u64,
    /// The first of them, with their type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared_examples: Vec<String>,
    /// How much of the target was asked about.
    #[serde(default)]
    pub mode: CompareMode,
    /// With rename rules: keys renamed (with examples), keys no rule
    /// renames, renamed keys not found under their new names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renames: Option<RenameSummary>,
}

impl Comparison {
    /// True when no key differs; keys not compared do not count against it.
    pub fn is_identical(&self) -> bool {
        self.differences == 0
    }
}

/// Compare the archive with the target. Writes nothing.
pub async fn compare(options: &CompareOptions, progress: &dyn Progress) -> Result<Comparison> {
    progress.start(None);
    let result = async {
        let mut checker = Checker {
            target: options.target.clone(),
            conn: None,
            now_ms: 0,
            remap: options.remap.clone(),
            renames: RenameTally::default(),
            renamed_from: HashMap::new(),
            missing_renamed: 0,
            mode: options.mode,
            compare_expiry: options.compare_expiry,
            profile: options.profile.clone(),
            as_user: options.as_user.clone(),
            rewriter: None,
            tolerance: options.ttl_tolerance_ms,
            batch_keys: options.batch_keys,
            batch: Vec::new(),
            current: None,
            seen: HashSet::new(),
            selection: Selection::default(),
            extras: true,
            shared: HashSet::new(),
            result: Tally::default(),
            progress,
            fields: FieldExpiryCheck {
                supported: false,
                target_has_some: false,
                tolerance: options.ttl_tolerance_ms,
                now_ms: 0,
            },
        };
        let batches = Batches::start(options.source.clone(), options.decryption.clone());
        batches.visit(&mut checker).await?;
        checker.flush().await?;
        if checker.extras && options.mode == CompareMode::Exact {
            checker.extras().await?;
        }
        Ok::<_, Error>(checker)
    }
    .await;
    progress.finish();
    let checker = result?;
    let renames = (!options.remap.is_empty()).then(|| RenameSummary {
        missing: checker.missing_renamed,
        ..checker.renames.into_summary()
    });
    let Tally {
        compared,
        identical,
        expired,
        by_kind,
        differences,
        not_compared,
    } = checker.result;
    let (not_compared, not_compared_examples) = not_compared.into_parts();
    Ok(Comparison {
        archive: options.source.display(),
        target: checker.target.describe(),
        compared,
        identical,
        expired_in_archive: expired,
        differences: differences.total(),
        by_kind,
        examples: differences.into_parts().1,
        not_compared,
        not_compared_examples,
        mode: options.mode,
        renames,
    })
}

#[derive(Debug, Default)]
struct Tally {
    compared: u64,
    identical: u64,
    expired: u64,
    by_kind: BTreeMap<DiffKind, u64>,
    differences: Samples<Difference>,
    not_compared: Samples<String>,
}

impl Tally {
    fn differ(&mut self, kind: DiffKind, key: &[u8], detail: String) {
        *self.by_kind.entry(kind).or_default() += 1;
        self.differences.add(Difference {
            kind,
            key: printable(key),
            detail,
        });
    }
}

struct Checker<'p> {
    target: Endpoint,
    conn: Option<Conn>,
    now_ms: i64,
    remap: Remap,
    /// What the rules did to the archive's keys.
    renames: RenameTally,
    /// The archive's name of each renamed key not yet finished, by its new
    /// name (a batch's worth).
    renamed_from: HashMap<Vec<u8>, Vec<u8>>,
    /// Renamed keys the target lacks under their new name.
    missing_renamed: u64,
    mode: CompareMode,
    compare_expiry: bool,
    profile: Option<std::sync::Arc<crate::profile::Profile>>,
    as_user: Option<String>,
    /// Upgrades and the `--as-user` rewrite, as restore applies them.
    rewriter: Option<crate::profile::rewrite::Rewriter>,
    tolerance: i64,
    batch_keys: usize,
    batch: Vec<Record>,
    current: Option<KeyState>,
    seen: HashSet<u64>,
    selection: Selection,
    /// Look for keys the archive lacks (not for a user archive whose
    /// groups have no pattern of the user's own).
    extras: bool,
    /// Shared indexes of a user archive.
    shared: HashSet<Vec<u8>>,
    result: Tally,
    progress: &'p dyn Progress,
    fields: FieldExpiryCheck,
}

fn fingerprint(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn short(bytes: &[u8]) -> String {
    let text = printable(bytes);
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

impl Checker<'_> {
    async fn header(&mut self, header: &Header) -> Result<()> {
        self.target = self.target.or_db(header.source.address.db);
        self.selection = header.selection.clone();
        self.rewriter = crate::profile::rewrite::Rewriter::prepare(
            self.profile.as_ref(),
            header,
            self.as_user.as_deref(),
            "the archive",
        )?;
        if let (Some(profile), Some(new), Some(scope)) =
            (&self.profile, &self.as_user, &header.profile)
        {
            // The clone's keys are where extra keys would be.
            self.selection = crate::profile::select::ProfileExport {
                profile: profile.clone(),
                user: Some(new.clone()),
                groups: scope.groups.clone(),
            }
            .selection()?;
        }
        if let Some(scope) = header.profile.as_ref().filter(|p| p.user.is_some()) {
            self.extras = !self.selection.include.is_empty();
            self.shared = scope
                .shared_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect();
        }
        let mut conn = self.target.connect().await?;
        // As connected: a cluster takes a default database as 0.
        self.target = conn.endpoint().clone();
        self.now_ms = conn.time_ms().await?;
        let server = conn.server_info().await?;
        self.fields.supported = server.has_field_expiry();
        self.fields.target_has_some = conn.may_have_field_expiry(&server).await?;
        self.fields.now_ms = self.now_ms;
        self.conn = Some(conn);
        Ok(())
    }

    async fn record(&mut self, mut record: Record) -> Result<()> {
        if let Some(rewriter) = self.rewriter.as_mut() {
            rewriter.apply(&mut record)?;
        }
        if !self.remap.is_empty() {
            let new = self.remap.key(&record.key.0).into_owned();
            if record.part == 0 && !record.void {
                self.renames.add(&record.key.0, &new);
            }
            if new != record.key.0 {
                let old = std::mem::replace(&mut record.key, Bytes(new));
                self.renamed_from.insert(record.key.0.clone(), old.0);
            }
        }
        if record.part == 0 {
            self.seen.insert(fingerprint(&record.key.0));
        }
        self.batch.push(record);
        if self.batch.len() >= self.batch_keys {
            self.flush().await?;
        }
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Internal("comparing before connecting".into()))
    }

    async fn query(&mut self, pipe: &mut redis::Pipeline, action: &str) -> Result<Vec<Reply>> {
        self.conn()?.pipeline(pipe, action).await
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);

        // Round trip 1: type and expiry of every key that starts here.
        let mut pipe = redis::pipe();
        for r in batch.iter().filter(|r| r.part == 0) {
            pipe.cmd("TYPE")
                .arg(&r.key.0[..])
                .cmd("PEXPIRETIME")
                .arg(&r.key.0[..]);
        }
        let mut meta = self
            .query(&mut pipe, "reading key types")
            .await?
            .into_iter();

        // Round trip 2: each record's chunk, and lengths at a key's end.
        // Records of a key are contiguous, so every key in `states` ends in
        // this batch except perhaps the last, which is carried to the next.
        let mut states: Vec<KeyState> = self.current.take().into_iter().collect();
        let mut pipe = redis::pipe();
        let mut plan: Vec<(usize, Check)> = Vec::new();
        for record in &batch {
            if record.part == 0 {
                let type_reply = bytes_of(meta.next().unwrap_or(Reply::Nil));
                let expire = match meta.next() {
                    Some(Reply::Int(t)) => t,
                    _ => -2,
                };
                let state = self.begin(record, &type_reply, expire);
                states.push(state);
            }
            let Some(index) = states.len().checked_sub(1) else {
                return Err(Error::Internal(
                    "a continuation record without its key".into(),
                ));
            };
            let state = &mut states[index];
            if record.void {
                state.void = true;
                continue;
            }
            if !state.settled {
                plan.extend(
                    add_checks(&mut pipe, record, state)
                        .into_iter()
                        .map(|c| (index, c)),
                );
            }
        }
        let replies = self.query(&mut pipe, "comparing values").await?;
        for ((index, check), reply) in plan.into_iter().zip(replies) {
            evaluate(&mut states[index], check, reply);
        }
        self.pending_lookups(&mut states).await?;
        self.old_names(&mut states).await?;
        if batch.last().is_some_and(|r| r.more) {
            self.current = states.pop();
        }
        for state in states {
            self.finish_key(state);
        }
        self.progress
            .advance(batch.iter().filter(|r| r.part == 0).count() as u64);
        Ok(())
    }

    /// Pending entries the target lacks differ only if the target's stream
    /// has their message: one more round trip, only when there are such.
    async fn pending_lookups(&mut self, states: &mut [KeyState]) -> Result<()> {
        let mut pipe = redis::pipe();
        let mut plan = Vec::new();
        for (index, state) in states.iter_mut().enumerate() {
            let checks = crate::pel::add_lookups(&mut pipe, &state.key, &mut state.pel);
            plan.extend(checks.into_iter().map(|c| (index, Check::Pel(c))));
        }
        if plan.is_empty() {
            return Ok(());
        }
        let replies = self.query(&mut pipe, "comparing pending entries").await?;
        for ((index, check), reply) in plan.into_iter().zip(replies) {
            evaluate(&mut states[index], check, reply);
        }
        Ok(())
    }

    /// A renamed key missing under its new name: one more round trip, only
    /// when there are such, to say whether it is still under its old name
    /// (a move that did not happen).
    async fn old_names(&mut self, states: &mut [KeyState]) -> Result<()> {
        let missing: Vec<(usize, Vec<u8>)> = states
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.early, Some(Err((DiffKind::Missing, _)))))
            .filter_map(|(i, s)| self.renamed_from.get(&s.key).map(|old| (i, old.clone())))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, old) in &missing {
            pipe.cmd("EXISTS").arg(&old[..]);
        }
        let replies = self.query(&mut pipe, "looking for old names").await?;
        for ((index, old), reply) in missing.into_iter().zip(replies) {
            let detail = if matches!(reply, Reply::Int(1)) {
                format!(
                    "not under its new name; still under its old name \"{}\"",
                    printable(&old)
                )
            } else {
                format!(
                    "not under its new name (renamed from \"{}\")",
                    printable(&old)
                )
            };
            states[index].early = Some(Err((DiffKind::Missing, detail)));
        }
        Ok(())
    }

    /// Decide what can be decided from TYPE and PEXPIRETIME alone. Nothing
    /// is counted until the key's last record, which may void it.
    fn begin(&mut self, record: &Record, type_reply: &[u8], expire: i64) -> KeyState {
        let key = record.key.0.clone();
        let mut state = KeyState {
            key: key.clone(),
            key_type: record.key_type(),
            settled: false,
            expiry: record.expiry,
            target_expiry: (expire >= 0).then_some(expire),
            total: 0,
            differing: 0,
            examples: Vec::new(),
            stream_meta: None,
            partial: self.shared.contains(&record.key.0),
            expired: false,
            early: None,
            void: false,
            fields: self.fields,
            not_comparable: None,
            pel: crate::pel::PelCompare::new(self.conn.as_ref().is_some_and(Conn::is_cluster)),
            presence: self.mode == CompareMode::Merge,
        };
        state.partial |= state.presence;
        if matches!(record.expiry, Some(e) if e.at_ms <= self.now_ms) {
            state.expired = true;
            state.settled = true;
            return state;
        }
        if !self.remap.is_empty() && !self.renamed_from.contains_key(&key) {
            state.settled = true;
            state.early = Some(Err((
                DiffKind::NotRenamed,
                "no --rename-prefix or --rename-token rule renames it, so restore writes it under its own name".into(),
            )));
            return state;
        }
        let target_type = std::str::from_utf8(type_reply)
            .ok()
            .and_then(KeyType::from_redis);
        if record.key_type() == KeyType::Absent {
            // A pre-restore archive says the key did not exist.
            state.settled = true;
            state.early = Some(match target_type {
                None => Ok(()),
                Some(t) => Err((
                    DiffKind::Extra,
                    format!("a {t} in the target; the archive records that the key did not exist"),
                )),
            });
            return state;
        }
        match target_type {
            None => {
                state.early = Some(Err((
                    DiffKind::Missing,
                    "in the archive, not in the target".into(),
                )));
                state.settled = true;
            }
            Some(t) if t != record.key_type() => {
                state.early = Some(Err((
                    DiffKind::TypeDiffers,
                    format!("archive {}, target {}", record.key_type(), t),
                )));
                state.settled = true;
            }
            Some(_) => {}
        }
        state
    }

    fn finish_key(&mut self, state: KeyState) {
        let old = self.renamed_from.remove(&state.key);
        if state.void {
            if !self.remap.is_empty() {
                self.renames
                    .take_back(&self.remap, old.as_deref().unwrap_or(&state.key));
            }
            return;
        }
        if old.is_some() && matches!(state.early, Some(Err((DiffKind::Missing, _)))) {
            self.missing_renamed += 1;
        }
        if state.expired {
            self.result.expired += 1;
            return;
        }
        self.result.compared += 1;
        match state.early {
            Some(Ok(())) => {
                self.result.identical += 1;
                return;
            }
            Some(Err((kind, detail))) => {
                self.result.differ(kind, &state.key, detail);
                return;
            }
            None => {}
        }
        if let Some(type_name) = &state.not_comparable
            && state.differing == 0
        {
            self.result.compared -= 1;
            self.result
                .not_compared
                .add(format!("{} ({type_name})", printable(&state.key)));
            return;
        }
        let mut identical = true;
        if state.differing > 0 {
            identical = false;
            let unit = match state.key_type {
                KeyType::String | KeyType::Dump | KeyType::Absent => "value",
                KeyType::Hash => "fields",
                KeyType::Stream => "entries",
                _ => "members",
            };
            let detail = if matches!(state.key_type, KeyType::String | KeyType::Dump) {
                "the value differs".to_string()
            } else if state.pel.differences() > 0 {
                crate::pel::detail(state.differing, state.total, state.pel.differences())
            } else {
                format!("{} of {} {unit} differ", state.differing, state.total)
            };
            let examples = if state.examples.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", state.examples.join("; "))
            };
            self.result.differ(
                DiffKind::ValueDiffers,
                &state.key,
                format!("{detail}{examples}"),
            );
        }
        if state.presence || !self.compare_expiry {
            // A merge leaves the expiry of a key it merged into as it was.
            if identical {
                self.result.identical += 1;
            }
            return;
        }
        let archive_at = state.expiry.map(|e| e.at_ms);
        let target_at = state.target_expiry.filter(|_| !state.partial);
        let ttl_detail = match (archive_at, target_at) {
            (None, None) => None,
            (Some(a), None) => Some(format!("archive expires at {a} ms, target never")),
            (None, Some(t)) => Some(format!("archive never expires, target at {t} ms")),
            (Some(a), Some(t)) if (a - t).abs() > self.tolerance => Some(format!(
                "expiry differs by {:.1} s",
                (a - t) as f64 / 1000.0
            )),
            _ => None,
        };
        if let Some(detail) = ttl_detail {
            identical = false;
            self.result.differ(DiffKind::TtlDiffers, &state.key, detail);
        }
        if identical {
            self.result.identical += 1;
        }
    }

    /// Keys in the target, inside the archive's selection, that the archive
    /// does not have.
    async fn extras(&mut self) -> Result<()> {
        let selection = self.selection.clone();
        let remap = self.remap.clone();
        // A cluster's primaries each scan their own slots.
        let shards = self.conn()?.shards().await?;
        for mut shard in shards {
            self.extras_on(&mut shard, &selection, &remap).await?;
        }
        Ok(())
    }

    async fn extras_on(
        &mut self,
        shard: &mut Conn,
        selection: &Selection,
        remap: &Remap,
    ) -> Result<()> {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("COUNT").arg(1000);
            let (next, keys): (u64, Vec<Vec<u8>>) =
                shard.query(&scan, "scanning the target").await?;
            let candidates: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !self.seen.contains(&fingerprint(k)))
                .filter(|k| in_selection(selection, remap, k))
                .collect();
            if !candidates.is_empty() {
                let mut pipe = redis::pipe();
                for k in &candidates {
                    pipe.cmd("TYPE").arg(&k[..]);
                }
                let types = self.query(&mut pipe, "reading key types").await?;
                for (key, t) in candidates.into_iter().zip(types) {
                    let name = bytes_of(t);
                    let Some(t) = std::str::from_utf8(&name)
                        .ok()
                        .and_then(KeyType::from_redis)
                    else {
                        continue;
                    };
                    if selection.matches_type(t) {
                        self.result.differ(
                            DiffKind::Extra,
                            &key,
                            format!("a {t} in the target, not in the archive"),
                        );
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Whether a target key falls inside the archive's selection, taking renames
/// into account: a renamed key is judged by the name it had in the source.
fn in_selection(selection: &Selection, remap: &Remap, key: &[u8]) -> bool {
    if remap.is_empty() {
        return selection.matches_key(key);
    }
    remap
        .source_names(key)
        .iter()
        .any(|source| selection.matches_key(source))
}

impl crate::archive::stream::BatchVisitor for Checker<'_> {
    fn header(&mut self, header: &Header) -> impl Future<Output = Result<()>> + Send {
        Checker::header(self, header)
    }

    fn record(&mut self, record: Record, _held: usize) -> impl Future<Output = Result<()>> + Send {
        Checker::record(self, record)
    }
}
