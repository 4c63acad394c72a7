//! The reader threads: one per RDB, each turning its RDB into record
//! batches for the writer thread; and the first pass of a user export.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};

use super::input::{Input, Opened, Tee, bad_rdb};
use super::{Choice, RdbSource as Source};
use crate::error::{Error, Result};
use crate::profile::offline::OfflineUser;
use crate::progress::Cancel;
use crate::rdb::{RdbItem, RdbOptions, RdbReader, SkipReason};
use crate::record::Record;

/// Records per batch sent to the writer, and batches in flight: with
/// records of at most `CHUNK_BYTES`, the channel holds a few MiB at most.
pub(super) const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
pub(super) const BATCHES_IN_FLIGHT: usize = 8;

/// What one RDB gave, beyond its records.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub expired: u64,
    pub functions: u64,
}

/// One RDB's reader thread, and what it shares with the others.
pub(super) struct Pump {
    pub choice: Choice,
    pub tx: mpsc::SyncSender<Vec<Record>>,
    /// Held from the first to the last record of a key split in parts: a
    /// key's parts must follow each other in the archive.
    pub sequence: Arc<Mutex<()>>,
    /// Keys sent so far, for the progress bar.
    pub done: Arc<AtomicU64>,
    pub cancel: Cancel,
    /// Set when another reader failed: the export is over.
    pub stop: Arc<AtomicBool>,
}

impl Pump {
    pub(super) fn run(self, mut one: Opened) -> Result<Tally> {
        let name = one.name.clone();
        let mut tally = Tally::default();
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut batch_bytes = 0;
        let mut held = None;
        let choice = self.choice.clone();
        let mut select = |info: &crate::rdb::KeyInfo| choice.wants(info);
        let mut next = one.first.take();
        loop {
            let item = match next.take() {
                Some(item) => item,
                None => match one
                    .reader
                    .next_item(&mut select)
                    .map_err(|e| bad_rdb(&name, e))?
                {
                    Some(item) => item,
                    None => break,
                },
            };
            match item {
                RdbItem::Record { record, .. } => {
                    let Some(record) = self.choice.take(record) else {
                        continue;
                    };
                    if !record.more {
                        self.done.fetch_add(1, Ordering::Relaxed);
                    }
                    let mid_key = record.more;
                    batch_bytes += record.value.approx_bytes() + record.key.0.len();
                    batch.push(record);
                    if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                        self.send(&mut batch, &mut held, mid_key)?;
                        batch_bytes = 0;
                    }
                }
                RdbItem::Skipped {
                    why: SkipReason::Expired,
                    info,
                } if self.choice.wants(&info) => tally.expired += 1,
                RdbItem::Function { .. } => tally.functions += 1,
                _ => {}
            }
        }
        self.send(&mut batch, &mut held, false)?;
        one.check_end()?;
        Ok(tally)
    }

    fn send<'a>(
        &'a self,
        batch: &mut Vec<Record>,
        held: &mut Option<MutexGuard<'a, ()>>,
        mid_key: bool,
    ) -> Result<()> {
        if self.cancel.is_cancelled() || self.stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted(
                "export stopped; nothing was written".into(),
            ));
        }
        if batch.is_empty() {
            return Ok(());
        }
        if held.is_none() {
            *held = Some(self.sequence.lock().unwrap_or_else(|e| e.into_inner()));
        }
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH_RECORDS));
        // The writer is gone only when it failed; its error is reported.
        let _ = self.tx.send(full);
        if !mid_key {
            *held = None;
        }
        Ok(())
    }
}

/// The first pass of a user export over one RDB: learn which keys are the
/// user's (index members, owner fields). Returns an input to read the same
/// RDB again: the file again, or the spool it was copied into as it went
/// by (stdin, a replication link).
pub(super) fn learn(
    source: Source,
    file: Option<&super::RdbInput>,
    now_ms: i64,
    db: i64,
    user: &Mutex<OfflineUser>,
    cancel: &Cancel,
) -> Result<Source> {
    let Source { name, input, link } = source;
    let bad = |e| bad_rdb(&name, e);
    let options = RdbOptions::new(now_ms, super::input::CHUNK_BYTES);
    let wants = |info: &crate::rdb::KeyInfo| {
        i64::from(info.db) == db && lock(user).first_pass_wants(&info.key.0)
    };
    let replay: Input = match file {
        // A file is simply read again.
        Some(file) => {
            let mut reader = RdbReader::new(input, options).map_err(bad)?;
            read_all(&mut reader, &wants, user, cancel, &name)?;
            file.open()?
        }
        // Anything else is copied as it is read.
        None => {
            let mut reader = RdbReader::new(Tee::new(input)?, options).map_err(bad)?;
            read_all(&mut reader, &wants, user, cancel, &name)?;
            let consumed = reader.stats().bytes_read;
            let mut tee = reader.into_inner();
            if let Some((framing, _)) = &link {
                framing
                    .check_end(&mut tee, consumed)
                    .map_err(|reason| Error::BadRdb {
                        source_name: name.clone(),
                        reason,
                    })?;
            }
            tee.replay()?
        }
    };
    Ok(Source {
        name,
        input: replay,
        link,
    })
}

fn read_all<R: std::io::BufRead>(
    reader: &mut RdbReader<R>,
    wants: &dyn Fn(&crate::rdb::KeyInfo) -> bool,
    user: &Mutex<OfflineUser>,
    cancel: &Cancel,
    name: &str,
) -> Result<()> {
    let mut select = |info: &crate::rdb::KeyInfo| wants(info);
    let mut items = 0u64;
    while let Some(item) = reader
        .next_item(&mut select)
        .map_err(|e| bad_rdb(name, e))?
    {
        if let RdbItem::Record { record, .. } = item {
            lock(user).learn(&record);
        }
        items += 1;
        if items.is_multiple_of(4096) && cancel.is_cancelled() {
            return Err(Error::Interrupted(
                "export stopped; nothing was written".into(),
            ));
        }
    }
    Ok(())
}

fn lock(user: &Mutex<OfflineUser>) -> MutexGuard<'_, OfflineUser> {
    user.lock().unwrap_or_else(|e| e.into_inner())
}
