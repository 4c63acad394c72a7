//! Performing a plan: batches of records become pipelined writes, each key
//! decided again against the target as it is then; failed keys are removed,
//! counted and named; each batch is journaled before it is written.

use super::journal::{add_fingerprints, read_fingerprints};
use super::members::SharedMembers;
use super::*;

/// What writing did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: ActionCounts,
    pub written: u64,
    pub added: u64,
    /// Keys planned for creation that appeared in the target before they
    /// were written: left alone, since the backup does not hold them.
    pub appeared: u64,
    /// Keys that failed: all counted, the first named.
    pub errors: Samples<KeyError>,
    pub errors_by_type: BTreeMap<KeyType, u64>,
    /// Cluster redirections followed (see [`Conn::redirects`]).
    pub redirects: u64,
    /// Pending entries of consumer groups not restored: their message is
    /// not in the stream.
    pub pending_not_restored: u64,
    /// With a profile: what was done per group.
    pub groups: BTreeMap<String, GroupCounts>,
}

impl Outcome {
    pub fn into_report(self, source: String, target: String, started: Instant) -> RestoreReport {
        let (errors, error_samples) = self.errors.into_parts();
        RestoreReport {
            source,
            target,
            dry_run: false,
            plan: self.done,
            written: self.written,
            added: self.added,
            appeared: self.appeared,
            errors,
            errors_by_type: self.errors_by_type,
            error_samples,
            seconds: started.elapsed().as_secs_f64(),
            backup: None,
            rollback: None,
            profile: None,
            dropped_field_expiries: 0,
            redirects: self.redirects,
            pending_not_restored: self.pending_not_restored,
            renames: None,
            names: Default::default(),
            groups: self.groups,
            merge_would_add: None,
            redaction_warning: None,
        }
    }

    fn fail(&mut self, key: &[u8], t: KeyType, reason: String) {
        *self.errors_by_type.entry(t).or_default() += 1;
        self.errors.add(KeyError::new(key, reason));
    }
}

/// The key whose records are being written.
struct Current {
    seq: u64,
    key_type: KeyType,
    action: Action,
    carry: KeyCarry,
    failed: Option<String>,
    /// Named in the journal: its outcome is journaled when it finishes.
    touched: bool,
    /// Small enough to fingerprint (one record, at most FINGERPRINT_MAX_BYTES).
    small: bool,
    /// A shared key of a user archive: the members written, which rollback
    /// checks one by one instead of a fingerprint of the whole key.
    shared: Option<SharedMembers>,
}

/// Keys bigger than this are journaled as "unknown" instead of being
/// fingerprinted: a DUMP of a big key would block the server for as long as
/// it takes, and its reply would be held whole.
const FINGERPRINT_MAX_BYTES: usize = 1 << 20;

/// What to journal of a finished key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JournalEntry {
    /// Not touched: nothing.
    Nothing,
    Fingerprint,
    /// Too big to fingerprint.
    Unknown,
}

/// A key whose last record is in a batch: what to count and journal.
struct FinishedKey {
    seq: u64,
    /// Its last record's position in the batch.
    index: usize,
    key_type: KeyType,
    action: Action,
    journal: JournalEntry,
}

/// A batch whose writes were sent and not yet accounted for.
struct InFlight {
    /// The batch's keys, by record index: its values are in the pipeline
    /// now, and are not held twice while the server works.
    keys: Vec<Bytes>,
    task: Pending,
    roles: Vec<Role>,
    /// The key (seq) each command belongs to.
    owners: Vec<u64>,
    finished: Vec<FinishedKey>,
    /// Keys already failed before sending (--mode fail conflicts).
    failures: BTreeMap<u64, String>,
    /// Keys created or replaced (seq -> a record index): a failure deletes them.
    replaced: BTreeMap<u64, usize>,
}

/// Writes records in pipelined batches.
pub struct Applier<'p> {
    conn: Conn,
    features: TargetFeatures,
    write: WriteOptions,
    cancel: Cancel,
    now_ms: i64,
    batch: Vec<Record>,
    /// What each record of the batch holds in memory, measured once.
    batch_held: Vec<usize>,
    /// Each record's payload, when the reader made it (its value is then
    /// hollow: see `Batches::start_with_payloads`).
    batch_payloads: Vec<Option<Vec<u8>>>,
    batch_bytes: usize,
    in_flight: Option<InFlight>,
    current: Option<Current>,
    outcome: Outcome,
    /// The plan's decision per key, followed in order (restore); without
    /// it each key is decided on the spot.
    planned: Option<DecisionReader>,
    journal: Option<Journal>,
    progress: &'p dyn Progress,
    /// The archive, as named in messages.
    pub archive: String,
    rewriter: Option<Rewriter>,
    groups: GroupTally,
    /// Shared keys of a user archive, as written (renamed): written
    /// member by member.
    shared: HashSet<Vec<u8>>,
}

impl std::fmt::Debug for Applier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").field("conn", &self.conn).finish()
    }
}

impl Applier<'_> {
    pub fn header(&mut self, header: &Header) -> Result<()> {
        self.rewriter = self.write.rewriter(header, &self.archive)?;
        self.groups = GroupTally::new(&self.write, header);
        if let Some(scope) = header.profile.as_ref().filter(|s| s.user.is_some()) {
            self.shared = scope
                .shared_keys
                .iter()
                .map(|k| self.write.remap.key(k.as_bytes()).into_owned())
                .collect();
        }
        Ok(())
    }

    pub async fn record(&mut self, record: Record) -> Result<()> {
        self.record_held(record, None, None).await
    }

    /// [`Applier::record`] of a record known to hold at most `held` bytes
    /// as read (a rewrite may change that, and is measured), with the
    /// payload the reader made of it, if it did.
    async fn record_held(
        &mut self,
        mut record: Record,
        held: Option<usize>,
        payload: Option<Vec<u8>>,
    ) -> Result<()> {
        // A payload's record is hollow: nothing may rewrite or split it.
        if payload.is_some() && (self.rewriter.is_some() || self.shared.contains(&record.key.0)) {
            return Err(Error::Internal(format!(
                "a payload was made for {}, whose records are rewritten",
                printable(&record.key.0)
            )));
        }
        if let Some(r) = self.rewriter.as_mut() {
            r.apply(&mut record)?;
        }
        let key_bytes = record.key.0.len();
        rename(&self.write.remap, &mut record);
        if self.write.ttl == TtlMode::Absolute {
            drop_expired_fields(&mut record, self.now_ms);
        }
        let held = match held {
            Some(held) if self.rewriter.is_none() => {
                held + record.key.0.len().saturating_sub(key_bytes)
            }
            _ => record.held_bytes(),
        };
        self.batch_bytes += held;
        self.batch_held.push(held);
        self.batch_payloads.push(payload);
        self.batch.push(record);
        if self.batch.len() >= self.write.batch_keys || self.batch_bytes >= self.write.batch_bytes {
            self.flush().await?;
        }
        Ok(())
    }
}

impl<'p> Applier<'p> {
    pub fn new(
        conn: Conn,
        features: TargetFeatures,
        now_ms: i64,
        write: WriteOptions,
        cancel: Cancel,
        progress: &'p dyn Progress,
    ) -> Self {
        Applier {
            conn,
            features,
            write,
            cancel,
            now_ms,
            batch: Vec::new(),
            batch_held: Vec::new(),
            batch_payloads: Vec::new(),
            batch_bytes: 0,
            in_flight: None,
            current: None,
            outcome: Outcome::default(),
            planned: None,
            journal: None,
            progress,
            archive: "the archive".into(),
            rewriter: None,
            groups: GroupTally::default(),
            shared: HashSet::new(),
        }
    }

    /// Follow a plan's decisions, and journal every key before writing it.
    pub fn following(mut self, decisions: DecisionReader, journal: Option<Journal>) -> Self {
        self.planned = Some(decisions);
        self.journal = journal;
        self
    }

    pub async fn finish(mut self) -> Result<Outcome> {
        self.flush().await?;
        self.settle().await?;
        if let Some(journal) = self.journal.as_mut() {
            journal.finish()?;
        }
        self.outcome.redirects = self.conn.redirects();
        self.outcome.groups = std::mem::take(&mut self.groups).into_counts();
        Ok(self.outcome)
    }

    /// Send a batch's writes and return while the server runs them, so the
    /// next batch is read and decoded meanwhile (both cores work). Before
    /// they are sent, the previous batch is settled: its replies counted,
    /// its failed keys removed, its outcome journaled. Batches touch
    /// distinct keys, and the next batch's EXISTS goes out behind this
    /// batch's writes on the same connection, so it sees them done.
    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            self.settle().await?;
            return Err(Error::Interrupted(format!(
                "stopped after {} keys were written; run the same command again to complete it",
                self.outcome.written
            )));
        }
        let batch = std::mem::take(&mut self.batch);
        let held = std::mem::take(&mut self.batch_held);
        let mut made = std::mem::take(&mut self.batch_payloads).into_iter();
        self.batch_bytes = 0;
        let (mode, ttl, now_ms) = (self.write.mode, self.write.ttl, self.now_ms);

        // The plan's decision for each key, and the keys written with one
        // RESTORE. Whether a key exists matters only for the others: a
        // RESTORE without REPLACE refuses a key that appeared since the
        // plan, and with REPLACE writes the key whether or not it is there.
        let mut planned: Vec<Option<Action>> = Vec::new();
        let mut payloads: Vec<Option<Vec<u8>>> = Vec::new();
        let mut ask: Vec<&[u8]> = Vec::new();
        for (record, &held) in batch.iter().zip(&held) {
            let made = made.next().flatten();
            if record.part != 0 {
                continue;
            }
            let decision = match self.planned.as_mut() {
                Some(plan) => Some(plan.next()?.ok_or_else(|| {
                    Error::Internal("the archive has more keys than the plan".into())
                })?),
                None => None,
            };
            let payload = match (decision, made) {
                (Some(Action::Create | Action::Overwrite), Some(made)) => Some(made),
                (Some(Action::Create | Action::Overwrite), None) => {
                    self.features.restore_payload(record, ttl, held)
                }
                // Nothing is written of a skipped key; anything else would
                // need the value the payload stands for.
                (
                    Some(
                        Action::Skip
                        | Action::Expired
                        | Action::Conflict
                        | Action::Unsupported
                        | Action::Void,
                    ),
                    _,
                )
                | (_, None) => None,
                (_, Some(_)) => {
                    return Err(Error::Internal(format!(
                        "a payload was made for {}, which is not written whole",
                        printable(&record.key.0)
                    )));
                }
            };
            let asked = match decision {
                None | Some(Action::Merge) => true,
                Some(Action::Create | Action::Overwrite) => payload.is_none(),
                Some(_) => false,
            };
            if asked {
                ask.push(&record.key.0);
            }
            planned.push(decision);
            payloads.push(payload);
        }
        // With nothing to ask, this batch goes out before the previous one
        // is accounted for, so the server always has the next batch queued
        // (not when a key continues from the previous batch, whose failure
        // must be known first). The journal then names this batch's keys
        // before the previous batch's outcome: rollback reads it either way.
        let early = ask.is_empty() && batch[0].part == 0;
        let mut exists = if ask.is_empty() {
            Vec::new().into_iter()
        } else {
            let exists_task = send_exists(&self.conn, ask);
            self.settle().await?;
            read_exists(exists_task).await?.into_iter()
        };
        if !early {
            self.settle().await?;
        }
        let mut planned = planned.into_iter();
        let mut payloads = payloads.into_iter();

        // One pipeline; each command remembers its key and what its reply means.
        let mut pipes = self.conn.pipes();
        // Most keys are one command and one record: room for that up front.
        let mut roles: Vec<Role> = Vec::with_capacity(batch.len());
        let mut owners: Vec<u64> = Vec::with_capacity(batch.len());
        let mut finished: Vec<FinishedKey> = Vec::with_capacity(batch.len());
        let mut failures: BTreeMap<u64, String> = BTreeMap::new();
        // Keys this batch created or replaced: the only ones a failure may delete.
        let mut replaced: BTreeMap<u64, usize> = BTreeMap::new();
        let mut touching: Vec<&[u8]> = Vec::with_capacity(batch.len());
        let mut member_writes: Vec<SharedMembers> = Vec::new();
        let only_new = mode != Mode::Overwrite;
        let mut next_seq = self.current.as_ref().map_or(0, |c| c.seq + 1);
        let mut payload: Option<Vec<u8>> = None;
        for (index, record) in batch.iter().enumerate() {
            if record.part == 0 {
                let decision = planned.next().flatten();
                payload = payloads.next().flatten();
                let exists = match decision {
                    Some(Action::Create) if payload.is_some() => false,
                    Some(Action::Overwrite) if payload.is_some() => true,
                    Some(a) if !matches!(a, Action::Create | Action::Overwrite | Action::Merge) => {
                        false
                    }
                    _ => exists.next().unwrap_or(false),
                };
                let action = match decision {
                    Some(planned) => follow(planned, exists),
                    None => Followed::Do(decide(
                        mode,
                        ttl,
                        record.key_type(),
                        record.expiry,
                        now_ms,
                        exists,
                    )),
                };
                let action = match action {
                    Followed::Do(a) => a,
                    Followed::Appeared => {
                        self.outcome.appeared += 1;
                        Action::Skip
                    }
                };
                let failed = (action == Action::Conflict)
                    .then(|| "already exists in the target (--mode fail)".to_string());
                let touched = failed.is_none()
                    && matches!(action, Action::Create | Action::Overwrite | Action::Merge);
                let shared = (touched && self.shared.contains(&record.key.0))
                    .then(|| SharedMembers::of(record, only_new))
                    .flatten();
                if touched {
                    touching.push(&record.key.0);
                }
                if let Some(m) = &shared {
                    member_writes.push(m.clone());
                }
                self.current = Some(Current {
                    seq: next_seq,
                    key_type: record.key_type(),
                    action,
                    carry: KeyCarry::default(),
                    failed,
                    touched,
                    small: !record.more && held[index] <= FINGERPRINT_MAX_BYTES,
                    shared,
                });
                next_seq += 1;
            }
            let Some(current) = self.current.as_mut() else {
                return Err(Error::Internal(
                    "a continuation record without its key".into(),
                ));
            };
            // Once a key has failed, its remaining records are not written.
            if current.failed.is_none() {
                let before = roles.len();
                match current.action {
                    Action::Create | Action::Overwrite => {
                        match payload.take() {
                            Some(payload) => add_restore(
                                pipes.for_key(&record.key.0),
                                record,
                                &payload,
                                ttl,
                                current.action == Action::Overwrite,
                                &mut roles,
                            ),
                            None => add_record(
                                pipes.for_key(&record.key.0),
                                record,
                                ttl,
                                &self.features,
                                &mut current.carry,
                                &mut roles,
                                current.action == Action::Create,
                            ),
                        }
                        replaced.insert(current.seq, index);
                    }
                    // An overwrite sets the user's members of a shared key
                    // to the archive's and leaves the others alone.
                    Action::Merge if mode == Mode::Overwrite && current.shared.is_some() => {
                        if let Some(m) = &current.shared {
                            m.add_overwrite(pipes.for_key(&record.key.0));
                            roles.push(Role::Added);
                        }
                    }
                    Action::Merge => add_merge(
                        pipes.for_key(&record.key.0),
                        record,
                        ttl,
                        &self.features,
                        &mut current.carry,
                        &mut roles,
                    ),
                    Action::Skip
                    | Action::Expired
                    | Action::Conflict
                    | Action::Unsupported
                    | Action::Void => {}
                }
                if record.void && current.touched {
                    // A plan voids such a key before it is ever written.
                    return Err(Error::Internal(format!(
                        "a void record for {}, which is being written",
                        printable(&record.key.0)
                    )));
                }
                owners.extend(std::iter::repeat_n(current.seq, roles.len() - before));
            } else if record.part == 0 {
                failures.insert(current.seq, current.failed.clone().unwrap_or_default());
            }
            if !record.more {
                // A key the restore creates is not fingerprinted: its
                // rollback is a delete whatever it holds by then, and
                // fingerprinting every created key (a DUMP and a SHA-1 each)
                // would double the server's work.
                let journal = match (current.touched, current.small, current.action) {
                    (false, _, _) => JournalEntry::Nothing,
                    // Rolled back member by member: the whole key's DUMP
                    // would only cost the server.
                    _ if current.shared.is_some() => JournalEntry::Unknown,
                    (true, _, Action::Create) | (true, false, _) => JournalEntry::Unknown,
                    (true, true, _) => JournalEntry::Fingerprint,
                };
                finished.push(FinishedKey {
                    seq: current.seq,
                    index,
                    key_type: current.key_type,
                    action: current.action,
                    journal,
                });
            }
        }

        // What each finished key is left as, measured in the same pipeline,
        // after its writes: no round trip of its own.
        if self.journal.is_some() {
            let small: Vec<&[u8]> = finished
                .iter()
                .filter(|f| f.journal == JournalEntry::Fingerprint)
                .map(|f| &batch[f.index].key.0[..])
                .collect();
            for key in small {
                add_fingerprints(pipes.for_key(key), &[key]);
            }
        }

        // Durably name the keys about to change before changing them.
        if let Some(journal) = self.journal.as_mut() {
            journal.members(&member_writes)?;
            journal.touch(&touching)?;
        }
        failpoint::hit("restore.batch");
        let task = spawn_pipeline(&self.conn, pipes, "writing keys");
        let keys = batch.into_iter().map(|r| r.key).collect();
        if early {
            self.settle().await?;
        }
        self.in_flight = Some(InFlight {
            keys,
            task,
            roles,
            owners,
            finished,
            failures,
            replaced,
        });
        Ok(())
    }

    /// Wait for the batch in flight, if any, and account for it.
    async fn settle(&mut self) -> Result<()> {
        let Some(InFlight {
            keys,
            task,
            roles,
            owners,
            finished,
            mut failures,
            replaced,
        }) = self.in_flight.take()
        else {
            return Ok(());
        };
        let mut replies = join(task).await?;
        failpoint::hit("restore.written");
        // The fingerprints follow the writes' replies.
        let measured = read_fingerprints(replies.split_off(roles.len()));
        // Keys whose RESTORE found them created since the plan: left alone.
        let mut appeared: HashSet<u64> = HashSet::new();
        for ((seq, role), reply) in owners.iter().zip(&roles).zip(replies) {
            match (role, reply) {
                (Role::Create, Reply::ServerError(e)) if e.code() == "BUSYKEY" => {
                    appeared.insert(*seq);
                }
                (Role::Added, Reply::Int(n)) => self.outcome.added += n.max(0) as u64,
                (Role::StreamAdd, Reply::ServerError(e))
                    if e.to_string().contains("equal or smaller") => {}
                (Role::Group, Reply::ServerError(e)) if e.to_string().contains("BUSYGROUP") => {}
                (_, Reply::ServerError(e)) => {
                    failures.entry(*seq).or_insert_with(|| e.to_string());
                }
                (Role::Claim(sent), reply) => {
                    self.outcome.pending_not_restored += crate::pel::not_claimed(*sent, &reply)
                }
                (Role::StreamAdd, _) => self.outcome.added += 1,
                _ => {}
            }
        }
        // A key whose writes failed part way would be left half-written (a
        // SET that worked and an APPEND that did not): remove it, so the
        // target holds whole keys or none. DEL is allowed even under OOM.
        // Merged keys are never removed: they hold the target's own data.
        let mut cleanup = redis::pipe();
        for seq in failures.keys() {
            if let Some(&index) = replaced.get(seq) {
                cleanup.cmd("DEL").arg(&keys[index].0[..]);
            }
        }
        self.conn
            .pipeline(&mut cleanup, "removing half-written keys")
            .await?;
        // A key split across batches keeps its failure until its last record.
        if let Some(current) = self.current.as_mut()
            && current.failed.is_none()
            && let Some(reason) = failures.get(&current.seq)
        {
            current.failed = Some(reason.clone());
        }
        self.journal_outcomes(&keys, &finished, &failures, &replaced, &appeared, measured)?;

        for f in &finished {
            let key = &keys[f.index].0;
            let carried = self
                .current
                .as_ref()
                .filter(|c| c.seq == f.seq)
                .and_then(|c| c.failed.clone());
            match failures.get(&f.seq).cloned().or(carried) {
                Some(reason) => {
                    self.groups.fail(key);
                    self.progress.done(key, f.action, Some(&reason));
                    self.outcome.fail(key, f.key_type, reason)
                }
                None if f.action == Action::Void => {}
                None if appeared.contains(&f.seq) => {
                    self.outcome.appeared += 1;
                    self.outcome.done.add(f.key_type, Action::Skip);
                    self.groups.add(key, Action::Skip);
                    self.progress.done(key, Action::Skip, None);
                }
                None => {
                    self.outcome.done.add(f.key_type, f.action);
                    self.groups.add(key, f.action);
                    self.progress.done(key, f.action, None);
                    if matches!(f.action, Action::Create | Action::Overwrite) {
                        self.outcome.written += 1;
                    }
                }
            }
        }
        self.progress.advance(finished.len() as u64);
        Ok(())
    }

    /// Journal what the restore left in the touched keys that finished:
    /// the fingerprints measured after their writes, except for keys that
    /// failed and were removed, which it left absent, and keys that
    /// appeared since the plan, which it left alone.
    fn journal_outcomes(
        &mut self,
        keys: &[Bytes],
        finished: &[FinishedKey],
        failures: &BTreeMap<u64, String>,
        replaced: &BTreeMap<u64, usize>,
        appeared: &HashSet<u64>,
        measured: Vec<Option<String>>,
    ) -> Result<()> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        let mut measured = measured.iter();
        let mut entries: Vec<(&[u8], Option<&str>)> = Vec::with_capacity(finished.len());
        for f in finished {
            let key = &keys[f.index].0[..];
            let removed = failures.contains_key(&f.seq) && replaced.contains_key(&f.seq);
            let after = match f.journal {
                JournalEntry::Nothing => continue,
                JournalEntry::Fingerprint => measured.next().and_then(|m| m.as_deref()),
                JournalEntry::Unknown => Some(UNKNOWN_FINGERPRINT),
            };
            let after = if removed {
                None
            } else if appeared.contains(&f.seq) {
                Some(LEFT_ALONE_FINGERPRINT)
            } else {
                after
            };
            entries.push((key, after));
        }
        journal.after(&entries)
    }
}

impl crate::archive::stream::BatchVisitor for Applier<'_> {
    fn header(&mut self, header: &Header) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Applier::header(self, header))
    }

    fn record(&mut self, record: Record, held: usize) -> impl Future<Output = Result<()>> + Send {
        Applier::record_held(self, record, Some(held), None)
    }

    fn record_with_payload(
        &mut self,
        record: Record,
        held: usize,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send {
        Applier::record_held(self, record, Some(held), Some(payload))
    }
}
