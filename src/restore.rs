//! `restore`: verify, plan, then perform.
//!
//! [`plan`] reads the whole archive once, verifying every checksum and every
//! record, and asks the target (read-only: TIME and EXISTS) what would
//! happen to each key: create, skip, overwrite or expired. Nothing is written
//! until that pass has succeeded, so a corrupt or truncated archive writes
//! nothing. [`perform`] then reads the archive again and carries the plan
//! out with pipelined batches, deciding each key by the same rules against
//! the target as it is at that moment. A key the server refuses does not
//! stop the rest: it is counted and named in the report (pg_restore's
//! habit), and the report says the restore was partial.
//!
//! Standard input is spooled to a private temp file first, because the
//! archive has to be read twice.

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::archive::reader::{ArchiveSource, Location, Visitor, read_archive};
use crate::archive::{Decryption, Header, Manifest};
use crate::connection::{Conn, Endpoint};
use crate::error::{Error, Result};
use crate::load::{KeyCarry, TargetFeatures, TtlMode, add_record};
use crate::progress::{Cancel, Progress};
use crate::record::{Expiry, KeyType, Record};
use crate::report::{Action, ActionCounts, KeyError, MAX_ERROR_SAMPLES, RestoreReport};

/// What to do with a key that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Leave it as it is (running the same restore twice is safe).
    #[default]
    Skip,
    /// Replace it: type, value and expiry become the archive's.
    Overwrite,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub source: ArchiveSource,
    pub target: Endpoint,
    pub mode: Mode,
    pub ttl: TtlMode,
    /// Keys per EXISTS and write batch.
    pub batch_keys: usize,
    /// Bytes of values per write batch, to bound a batch of big records.
    pub batch_bytes: usize,
    pub cancel: Cancel,
    /// Identities or passphrase for an encrypted archive.
    pub decryption: Decryption,
}

impl RestoreOptions {
    pub fn new(source: ArchiveSource, target: Endpoint) -> Self {
        RestoreOptions {
            source,
            target,
            mode: Mode::Skip,
            ttl: TtlMode::Absolute,
            batch_keys: 512,
            batch_bytes: 8 << 20,
            cancel: Cancel::new(),
            decryption: Decryption::none(),
        }
    }
}

/// A verified archive and what restoring it would do.
#[derive(Debug)]
pub struct Plan {
    pub archive: String,
    pub target: String,
    pub manifest: Manifest,
    pub actions: ActionCounts,
    /// The archive to read for perform (stdin spooled to a temp file).
    source: ArchiveSource,
    _spool: Option<tempfile::NamedTempFile>,
}

/// Verify the archive and work out what restoring it would do. Writes nothing.
pub async fn plan(options: &RestoreOptions, progress: &dyn Progress) -> Result<Plan> {
    let (source, spool) = spool_if_stdin(&options.source)?;
    let mut conn = options.target.connect().await?;
    let now_ms = conn.time_ms().await?;
    let handle = Handle::current();
    let mode = options.mode;
    let ttl = options.ttl;
    let batch = options.batch_keys;
    progress.start(None);
    let reading = source.clone();
    let progress_ref: &dyn Progress = progress;
    // The visitor blocks on the runtime for its EXISTS batches, so the read
    // runs in a scoped blocking thread.
    let (manifest, actions) = tokio::task::block_in_place(|| {
        let mut planner = Planner {
            handle,
            conn,
            mode,
            ttl,
            now_ms,
            batch,
            pending: Vec::new(),
            actions: ActionCounts::default(),
            progress: progress_ref,
            cancel: options.cancel.clone(),
        };
        let verified = read_archive(&reading, &options.decryption, &mut planner)?;
        planner.flush()?;
        Ok::<_, Error>((verified.manifest, planner.actions))
    })?;
    progress.finish();
    Ok(Plan {
        archive: options.source.display(),
        target: options.target.display(),
        manifest,
        actions,
        source,
        _spool: spool,
    })
}

/// Carry out a plan made by [`plan`] with the same options.
pub async fn perform(
    plan: Plan,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let mut conn = options.target.connect().await?;
    let features = TargetFeatures::of(&conn.server_info().await?);
    let now_ms = conn.time_ms().await?;
    let handle = Handle::current();
    progress.start(Some(plan.manifest.counts.keys));
    let progress_ref: &dyn Progress = progress;
    let applier = tokio::task::block_in_place(|| {
        let mut applier = Applier {
            handle,
            conn,
            options: options.clone(),
            features,
            now_ms,
            batch: Vec::new(),
            batch_bytes: 0,
            current: None,
            done: ActionCounts::default(),
            written: 0,
            errors: 0,
            errors_by_type: BTreeMap::new(),
            error_samples: Vec::new(),
            progress: progress_ref,
        };
        read_archive(&plan.source, &options.decryption, &mut applier)?;
        applier.flush()?;
        Ok::<_, Error>(applier)
    })?;
    progress.finish();
    Ok(RestoreReport {
        archive: plan.archive,
        target: plan.target,
        dry_run: false,
        plan: applier.done,
        written: applier.written,
        errors: applier.errors,
        errors_by_type: applier.errors_by_type,
        error_samples: applier.error_samples,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl Plan {
    /// The report of a dry run: the plan, nothing written.
    pub fn into_dry_run_report(self) -> RestoreReport {
        RestoreReport {
            archive: self.archive,
            target: self.target,
            dry_run: true,
            plan: self.actions,
            written: 0,
            errors: 0,
            errors_by_type: BTreeMap::new(),
            error_samples: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn header(&self) -> &Header {
        &self.manifest.header
    }
}

fn spool_if_stdin(
    source: &ArchiveSource,
) -> Result<(ArchiveSource, Option<tempfile::NamedTempFile>)> {
    match source {
        ArchiveSource::File(_) | ArchiveSource::Spooled(_) => Ok((source.clone(), None)),
        ArchiveSource::Stdin => {
            // tempfile creates the file 0600: the spool holds the data.
            let mut spool = tempfile::Builder::new()
                .prefix("archive-restore-")
                .suffix(".spool")
                .tempfile()
                .map_err(|e| Error::output(std::env::temp_dir(), e))?;
            io::copy(&mut io::stdin().lock(), spool.as_file_mut())
                .map_err(|e| Error::input("<stdin>", e))?;
            spool
                .as_file()
                .sync_all()
                .map_err(|e| Error::output(spool.path(), e))?;
            Ok((
                ArchiveSource::Spooled(spool.path().to_path_buf()),
                Some(spool),
            ))
        }
    }
}

/// Decide what happens to a key, given whether the target has it.
fn decide(mode: Mode, ttl: TtlMode, expiry: Option<Expiry>, now_ms: i64, exists: bool) -> Action {
    if ttl.is_expired(expiry, now_ms) {
        Action::Expired
    } else if !exists {
        Action::Create
    } else if mode == Mode::Skip {
        Action::Skip
    } else {
        Action::Overwrite
    }
}

/// EXISTS for each key, pipelined.
fn exists_batch(handle: &Handle, conn: &mut Conn, keys: &[&[u8]]) -> Result<Vec<bool>> {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("EXISTS").arg(*key);
    }
    let replies = handle.block_on(conn.pipeline(&mut pipe, "checking which keys exist"))?;
    replies
        .into_iter()
        .map(|r| match r {
            Reply::Int(n) => Ok(n > 0),
            other => Err(Error::Redis {
                endpoint: conn.endpoint().display(),
                action: "checking which keys exist".into(),
                reason: format!("unexpected reply {other:?}"),
            }),
        })
        .collect()
}

struct Planner<'p> {
    handle: Handle,
    conn: Conn,
    mode: Mode,
    ttl: TtlMode,
    now_ms: i64,
    batch: usize,
    pending: Vec<(Vec<u8>, KeyType, Option<Expiry>)>,
    actions: ActionCounts,
    progress: &'p dyn Progress,
    cancel: Cancel,
}

impl Planner<'_> {
    fn flush(&mut self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Interrupted(
                "restore stopped while verifying; nothing was written".into(),
            ));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<&[u8]> = self.pending.iter().map(|(k, _, _)| &k[..]).collect();
        let exists = exists_batch(&self.handle, &mut self.conn, &keys)?;
        let planned = self.pending.len() as u64;
        for ((_, t, expiry), exists) in self.pending.drain(..).zip(exists) {
            let action = decide(self.mode, self.ttl, expiry, self.now_ms, exists);
            self.actions.add(t, action);
        }
        self.progress.advance(planned);
        Ok(())
    }
}

impl Visitor for Planner<'_> {
    fn record(&mut self, record: Record, _location: &Location) -> Result<()> {
        if record.part != 0 {
            return Ok(());
        }
        if self.ttl.is_expired(record.expiry, self.now_ms) {
            self.actions.add(record.key_type(), Action::Expired);
            return Ok(());
        }
        self.pending
            .push((record.key.0, record.value.key_type(), record.expiry));
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }
}

/// The key whose records are being written.
struct Current {
    seq: u64,
    key_type: KeyType,
    action: Action,
    carry: KeyCarry,
    failed: Option<String>,
}

struct Applier<'p> {
    handle: Handle,
    conn: Conn,
    options: RestoreOptions,
    features: TargetFeatures,
    now_ms: i64,
    batch: Vec<Record>,
    batch_bytes: usize,
    current: Option<Current>,
    done: ActionCounts,
    written: u64,
    errors: u64,
    errors_by_type: BTreeMap<KeyType, u64>,
    error_samples: Vec<KeyError>,
    progress: &'p dyn Progress,
}

impl Visitor for Applier<'_> {
    fn header(&mut self, _header: &Header) -> Result<()> {
        Ok(())
    }

    fn record(&mut self, record: Record, _location: &Location) -> Result<()> {
        self.batch_bytes += record.value.approx_bytes();
        self.batch.push(record);
        if self.batch.len() >= self.options.batch_keys
            || self.batch_bytes >= self.options.batch_bytes
        {
            self.flush()?;
        }
        Ok(())
    }
}

impl Applier<'_> {
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.options.cancel.is_cancelled() {
            return Err(Error::Interrupted(format!(
                "restore stopped after {} keys were written; the target holds a partial restore, run the same restore again to complete it",
                self.written
            )));
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;

        // Which first records need an EXISTS answer.
        let ask: Vec<&[u8]> = batch
            .iter()
            .filter(|r| r.part == 0 && !self.options.ttl.is_expired(r.expiry, self.now_ms))
            .map(|r| &r.key.0[..])
            .collect();
        let mut exists = exists_batch(&self.handle, &mut self.conn, &ask)?.into_iter();

        // Build one pipeline; remember which key each command belongs to.
        let mut pipe = redis::pipe();
        let mut owners: Vec<u64> = Vec::new();
        // Keys finished in this batch: (seq, key, type, action).
        let mut finished: Vec<(u64, Vec<u8>, KeyType, Action)> = Vec::new();
        let mut outcomes: BTreeMap<u64, Option<String>> = BTreeMap::new();
        let mut touched: BTreeMap<u64, &[u8]> = BTreeMap::new();
        let mut next_seq = self.current.as_ref().map(|c| c.seq + 1).unwrap_or(0);
        for record in &batch {
            if record.part == 0 {
                let expired = self.options.ttl.is_expired(record.expiry, self.now_ms);
                let exists = if expired {
                    false
                } else {
                    exists.next().unwrap_or(false)
                };
                let action = decide(
                    self.options.mode,
                    self.options.ttl,
                    record.expiry,
                    self.now_ms,
                    exists,
                );
                self.current = Some(Current {
                    seq: next_seq,
                    key_type: record.key_type(),
                    action,
                    carry: KeyCarry::default(),
                    failed: None,
                });
                next_seq += 1;
            }
            let Some(current) = self.current.as_mut() else {
                return Err(Error::Internal(
                    "a continuation record without its key".into(),
                ));
            };
            // Once a key has failed, its remaining records are not written.
            let writes = matches!(current.action, Action::Create | Action::Overwrite)
                && current.failed.is_none();
            if writes {
                let n = add_record(
                    &mut pipe,
                    record,
                    self.options.ttl,
                    &self.features,
                    &mut current.carry,
                );
                owners.extend(std::iter::repeat_n(current.seq, n));
                outcomes.entry(current.seq).or_insert(None);
                touched.insert(current.seq, &record.key.0);
            }
            if !record.more {
                finished.push((
                    current.seq,
                    record.key.0.clone(),
                    current.key_type,
                    current.action,
                ));
            }
        }

        let replies = self
            .handle
            .block_on(self.conn.pipeline(&mut pipe, "writing keys"))?;
        for (seq, reply) in owners.iter().zip(replies) {
            if let Reply::ServerError(e) = reply {
                let slot = outcomes.entry(*seq).or_insert(None);
                if slot.is_none() {
                    *slot = Some(e.to_string());
                }
            }
        }
        // A key whose writes failed part way would be left half-written
        // (a SET that worked and an APPEND that did not): remove it, so the
        // target holds whole keys or none. DEL is allowed even under OOM.
        let mut cleanup = redis::pipe();
        for (seq, outcome) in &outcomes {
            if outcome.is_some()
                && let Some(key) = touched.get(seq)
            {
                cleanup.cmd("DEL").arg(*key).ignore();
            }
        }
        self.handle.block_on(
            self.conn
                .pipeline(&mut cleanup, "removing half-written keys"),
        )?;
        // A key split across batches keeps its failure until its last record.
        if let Some(current) = self.current.as_mut()
            && let Some(Some(reason)) = outcomes.get(&current.seq)
            && current.failed.is_none()
        {
            current.failed = Some(reason.clone());
        }

        let finished_count = finished.len() as u64;
        for (seq, key, t, action) in finished {
            let carried = self
                .current
                .as_ref()
                .filter(|c| c.seq == seq)
                .and_then(|c| c.failed.clone());
            let failure = outcomes.get(&seq).cloned().flatten().or(carried);
            match failure {
                Some(reason) => {
                    self.errors += 1;
                    *self.errors_by_type.entry(t).or_default() += 1;
                    if self.error_samples.len() < MAX_ERROR_SAMPLES {
                        self.error_samples.push(KeyError::new(&key, reason));
                    }
                }
                None => {
                    self.done.add(t, action);
                    if matches!(action, Action::Create | Action::Overwrite) {
                        self.written += 1;
                    }
                }
            }
        }
        self.progress.advance(finished_count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let past = Some(Expiry {
            at_ms: 10,
            ttl_ms: 5,
        });
        let future = Some(Expiry {
            at_ms: 1000,
            ttl_ms: 5,
        });
        assert_eq!(
            decide(Mode::Skip, TtlMode::Absolute, past, 100, true),
            Action::Expired
        );
        assert_eq!(
            decide(Mode::Skip, TtlMode::Relative, past, 100, false),
            Action::Create
        );
        assert_eq!(
            decide(Mode::Skip, TtlMode::None, past, 100, true),
            Action::Skip
        );
        assert_eq!(
            decide(Mode::Overwrite, TtlMode::Absolute, future, 100, true),
            Action::Overwrite
        );
        assert_eq!(
            decide(Mode::Overwrite, TtlMode::Absolute, None, 100, false),
            Action::Create
        );
    }
}
