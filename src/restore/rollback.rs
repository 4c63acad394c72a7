//! `rollback`: put back what a restore (or copy) changed, from its
//! pre-restore backup and journal.
//!
//! The backup holds, in archive order, the previous state of every key the
//! restore planned to change (`absent` for keys it would create); the
//! journal names, in the same order, the keys it actually touched and what
//! it left in them. Reading both in step, rollback puts back exactly the
//! touched keys: their previous type, value and expiry, or deletes them when
//! they did not exist. Keys the restore did not reach are left alone. A key
//! whose state is no longer what the restore left (someone wrote to it
//! since) is reported, and put back anyway unless `skip_changed`.
//!
//! Like restore, it plans first (verifying the whole backup, writing
//! nothing) and performs in a second pass, each an async loop over batches
//! of the backup's records read on a blocking thread; the writes go through
//! restore's `Applier`.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::archive::manifest::ArchiveKind;
use crate::archive::reader::ArchiveSource;
use crate::archive::stream::Batches;
use crate::archive::{Decryption, Header};
use crate::connection::{Conn, Endpoint, Side, Timeouts};
use crate::error::{Error, Result};
use crate::load::TtlMode;
use crate::progress::{Cancel, Progress, Silent};
use crate::record::{Record, Value, printable};
use crate::report::{KeyError, Samples};
use crate::restore::journal::{JournalReader, Touched, journal_path};
use crate::restore::{
    Applier, LEFT_ALONE_FINGERPRINT, Mode, UNKNOWN_FINGERPRINT, WriteOptions, fingerprints,
    open_target,
};

/// What to roll back; [`RollbackOptions::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The pre-restore backup archive.
    pub backup: PathBuf,
    /// The server to roll back; `None` uses the one the backup was taken
    /// from, with `password` and `timeouts`.
    pub target: Option<Endpoint>,
    /// The password for the backup's server, when `target` is `None`.
    pub password: Option<String>,
    /// Timeouts for the backup's server, when `target` is `None`.
    pub timeouts: Timeouts,
    /// Leave keys that changed since the restore as they are, instead of
    /// putting them back anyway.
    pub skip_changed: bool,
    /// Set to stop the rollback cleanly between batches.
    pub cancel: Cancel,
}

impl RollbackOptions {
    /// Roll back to `backup` on the server it was taken from, putting back
    /// changed keys too.
    pub fn new(backup: PathBuf) -> Self {
        RollbackOptions {
            backup,
            target: None,
            password: None,
            timeouts: Timeouts::default(),
            skip_changed: false,
            cancel: Cancel::new(),
        }
    }
}

/// What a rollback did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackReport {
    /// The backup archive as named.
    pub backup: String,
    /// The server rolled back, with any password left out.
    pub target: String,
    /// True when nothing was written: the report is a plan.
    pub dry_run: bool,
    /// Keys put back to their previous value.
    pub restored: u64,
    /// Keys the restore created, deleted again.
    pub deleted: u64,
    /// Keys the restore created that are gone already (a rollback run
    /// before, or someone deleted them): nothing to do.
    #[serde(default)]
    pub already_gone: u64,
    /// Keys in the backup that the restore never touched: left alone.
    pub untouched: u64,
    /// Keys someone changed after the restore.
    pub changed: u64,
    /// Changed keys left alone because of `skip_changed`.
    pub skipped_changed: u64,
    /// The first changed keys, printable.
    pub changed_samples: Vec<String>,
    /// Keys whose writes the server refused.
    pub errors: u64,
    /// The first of them, with why.
    pub error_samples: Vec<KeyError>,
    /// Wall-clock time the rollback took.
    pub seconds: f64,
    /// Pending entries of consumer groups not put back: their message is
    /// not in the stream (XCLAIM cannot create them).
    #[serde(default)]
    pub pending_not_restored: u64,
}

impl RollbackReport {
    /// True when some keys could not be put back.
    pub fn is_partial(&self) -> bool {
        self.errors > 0
    }
}

/// Verify the backup and work out what rolling back would do.
pub async fn plan(options: &RollbackOptions, progress: &dyn Progress) -> Result<RollbackReport> {
    run(options, progress, false).await
}

/// Roll back, and log it in the audit log of the backup's folder.
pub async fn perform(options: &RollbackOptions, progress: &dyn Progress) -> Result<RollbackReport> {
    let result = run(options, progress, true).await;
    let dir = crate::folder::audit::folder_of(&options.backup);
    crate::folder::audit::record(&[dir], "rollback", result, |r| r.is_partial())
}

async fn run(
    options: &RollbackOptions,
    progress: &dyn Progress,
    write: bool,
) -> Result<RollbackReport> {
    let started = Instant::now();
    progress.start(None);
    let result = async {
        let journal = JournalReader::open(&journal_path(&options.backup))?;
        let mut rollback = Rollbacker {
            options,
            write,
            target: None,
            conn: None,
            applier: None,
            now_ms: 0,
            journal,
            batch: Vec::new(),
            report: RollbackReport {
                backup: options.backup.display().to_string(),
                target: String::new(),
                dry_run: !write,
                restored: 0,
                deleted: 0,
                untouched: 0,
                already_gone: 0,
                changed: 0,
                skipped_changed: 0,
                changed_samples: Vec::new(),
                errors: 0,
                error_samples: Vec::new(),
                seconds: 0.0,
                pending_not_restored: 0,
            },
            changed: Samples::default(),
            skipping: false,
            reread: false,
            progress,
        };
        let source = ArchiveSource::File(options.backup.clone());
        let batches = Batches::start(source, Decryption::none());
        batches.visit(&mut rollback).await?;
        rollback.flush().await?;
        let mut report = rollback.report;
        (report.changed, report.changed_samples) = rollback.changed.into_parts();
        if let Some(applier) = rollback.applier {
            let outcome = applier.finish().await?;
            (report.errors, report.error_samples) = outcome.errors.into_parts();
            report.pending_not_restored = outcome.pending_not_restored;
        }
        Ok::<_, Error>(report)
    }
    .await;
    progress.finish();
    let mut report = result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A key of the backup waiting for its batch: its records, and what the
/// journal says of it.
struct Pending {
    records: Vec<Record>,
    touched: Option<Touched>,
}

struct Rollbacker<'a> {
    options: &'a RollbackOptions,
    write: bool,
    target: Option<Endpoint>,
    conn: Option<Conn>,
    applier: Option<Applier<'static>>,
    now_ms: i64,
    journal: Option<JournalReader>,
    batch: Vec<Pending>,
    report: RollbackReport,
    /// Keys someone changed since the restore left them.
    changed: Samples<String>,
    /// The current key is untouched: skip its continuation records.
    skipping: bool,
    /// The last key's parts were void: its next first record replaces them.
    reread: bool,
    progress: &'a dyn Progress,
}

impl Rollbacker<'_> {
    async fn header(&mut self, header: &Header) -> Result<()> {
        if header.kind != ArchiveKind::PreRestore {
            return Err(Error::InvalidArgument(format!(
                "{} is not a pre-restore backup (its kind is {:?}); rollback takes the backup a restore or copy wrote",
                self.options.backup.display(),
                header.kind
            )));
        }
        let target = match &self.options.target {
            Some(t) => t.clone(),
            None => {
                let a = &header.source.address;
                let scheme = if a.tls { "rediss" } else { "redis" };
                Endpoint::resolve(
                    &format!("{scheme}://{}:{}/{}", a.host, a.port, a.db),
                    None,
                    self.options.password.clone(),
                    Side::Target,
                    self.options.timeouts,
                )?
            }
        };
        self.report.target = target.display();
        let (mut conn, features, now_ms) = open_target(&target).await?;
        self.now_ms = now_ms;
        if self.write {
            let write = WriteOptions {
                mode: Mode::Overwrite,
                ttl: TtlMode::Absolute,
                ..WriteOptions::default()
            };
            self.applier = Some(Applier::new(
                conn.clone(),
                features,
                now_ms,
                write,
                self.options.cancel.clone(),
                &Silent,
            ));
        }
        // The connection must answer before the pass begins.
        conn.time_ms().await?;
        self.conn = Some(conn);
        self.target = Some(target);
        Ok(())
    }

    async fn record(&mut self, record: Record) -> Result<()> {
        if record.part == 0
            && std::mem::take(&mut self.reread)
            && let Some(p) = self.batch.last_mut()
            && p.records.is_empty()
        {
            p.records.push(record);
            return Ok(());
        }
        if record.part == 0 {
            let touched = match self.journal.as_mut() {
                Some(j) => j.take_if(&record.key.0)?,
                None => None,
            };
            if touched.is_none() {
                self.report.untouched += 1;
                self.skipping = record.more;
                return Ok(());
            }
            self.skipping = false;
            if self.batch.len() >= 256 {
                self.flush().await?;
            }
            self.batch.push(Pending {
                records: vec![record],
                touched,
            });
            return Ok(());
        }
        if self.skipping {
            self.skipping = record.more;
            return Ok(());
        }
        if record.void {
            // The key changed while the backup read it; the backup holds
            // it again next (or as absent): that copy replaces this one.
            if let Some(p) = self.batch.last_mut() {
                p.records.truncate(0);
                self.reread = true;
            }
            return Ok(());
        }
        // Continuation of a touched key: kept with its first record, so a
        // big key is put back whole (bounded by the batch of keys).
        if let Some(p) = self.batch.last_mut() {
            p.records.push(record);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.options.cancel.is_cancelled() {
            return Err(Error::Interrupted(format!(
                "rollback stopped after {} keys; run it again to finish (it is safe to repeat)",
                self.report.restored + self.report.deleted
            )));
        }
        let batch = std::mem::take(&mut self.batch);
        let keys: Vec<&[u8]> = batch.iter().map(|p| &p.records[0].key.0[..]).collect();
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Internal("rolling back before connecting".into()));
        };
        let now = fingerprints(conn, &keys).await?;
        let count = batch.len() as u64;
        // Deletes go first: they free memory on a target the restore left
        // full (a restore stopped by OOM), where the values put back would
        // otherwise be refused. Keys are distinct, so order does not matter
        // otherwise.
        let mut deletes = Vec::new();
        let mut puts = Vec::new();
        for (pending, current) in batch.into_iter().zip(now) {
            let key = pending.records[0].key.0.clone();
            let after = pending.touched.and_then(|t| t.after);
            if matches!(&after, Some(Some(f)) if f == LEFT_ALONE_FINGERPRINT) {
                continue;
            }
            if current.is_none() && matches!(pending.records[0].value, Value::Absent(_)) {
                // Absent before the restore and absent now: as it was.
                self.report.already_gone += 1;
                continue;
            }
            let changed = match (&after, &current) {
                (Some(a), c) => {
                    a.as_deref() != c.as_deref()
                        && a.as_deref() != Some(UNKNOWN_FINGERPRINT)
                        && c.as_deref() != Some(UNKNOWN_FINGERPRINT)
                }
                // The restore stopped before this key's outcome was recorded.
                (None, _) => false,
            };
            if changed {
                self.changed.add(printable(&key));
                if self.options.skip_changed {
                    self.report.skipped_changed += 1;
                    continue;
                }
            }
            let first = &pending.records[0];
            let expired = matches!(first.expiry, Some(e) if e.at_ms <= self.now_ms);
            if expired || matches!(first.value, Value::Absent(_)) {
                // Absent before the restore (or since expired): delete it.
                self.report.deleted += 1;
                deletes.push(Record::new(
                    first.key.clone(),
                    Value::Absent(Default::default()),
                ));
            } else {
                self.report.restored += 1;
                puts.extend(pending.records);
            }
        }
        if let Some(applier) = self.applier.as_mut() {
            for r in deletes.into_iter().chain(puts) {
                applier.record(r).await?;
            }
        }
        self.progress.advance(count);
        Ok(())
    }
}

impl crate::archive::stream::BatchVisitor for Rollbacker<'_> {
    fn header(&mut self, header: &Header) -> impl Future<Output = Result<()>> + Send {
        Rollbacker::header(self, header)
    }

    fn record(&mut self, record: Record, _held: usize) -> impl Future<Output = Result<()>> + Send {
        Rollbacker::record(self, record)
    }
}
