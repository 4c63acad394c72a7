//! `copy`: from one Redis straight into another (or into another database
//! of the same server), without a file.
//!
//! It is export and restore joined at the record stream: the export's SCAN
//! walk and fetcher read the source, and restore's [`Planner`] and
//! [`Applier`] take the records, so selection, conflict modes, TTL modes,
//! renames, dry run and reports mean exactly what they mean there. The plan
//! walks the source once (reading, not writing); perform walks it again.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::archive::reader::{Location, Visitor};
use crate::connection::{Conn, Endpoint};
use crate::error::{Error, Result};
use crate::export::walk;
use crate::fetch::{ChunkSizes, FetchStats, Fetcher, Outgoing};
use crate::keyspace::Selection;
use crate::progress::{Cancel, Progress, Silent};
use crate::report::{ActionCounts, KeyError, RestoreReport};
use crate::restore::{Applier, Mode, Outcome, Planner, WriteOptions, open_target};

const CHANNEL_RECORDS: usize = 1024;

#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub source: Endpoint,
    /// Without an explicit database (URL or --db), the source's database.
    pub target: Endpoint,
    pub selection: Selection,
    pub write: WriteOptions,
    pub chunks: ChunkSizes,
    pub scan_count: usize,
    pub cancel: Cancel,
}

impl CopyOptions {
    pub fn new(source: Endpoint, target: Endpoint, selection: Selection) -> Self {
        let target = if target.has_explicit_db() {
            target
        } else {
            target.with_db(source.db())
        };
        CopyOptions {
            source,
            target,
            selection,
            write: WriteOptions::default(),
            chunks: ChunkSizes::default(),
            scan_count: 512,
            cancel: Cancel::new(),
        }
    }
}

/// What copying would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyPlan {
    pub source: String,
    pub target: String,
    pub selection: Selection,
    pub actions: ActionCounts,
}

/// What a copy did: the restore side's report plus what reading saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    #[serde(flatten)]
    pub restore: RestoreReport,
    pub selection: Selection,
    /// Keys the walk found that were gone when read.
    pub vanished: u64,
    /// Keys that could not be read from the source.
    pub read_errors: u64,
    pub read_error_samples: Vec<KeyError>,
}

impl CopyReport {
    pub fn is_partial(&self) -> bool {
        self.restore.is_partial() || self.read_errors > 0
    }
}

impl CopyPlan {
    pub fn into_dry_run_report(self) -> CopyReport {
        CopyReport {
            restore: RestoreReport::planned(self.source, self.target, self.actions),
            selection: self.selection,
            vanished: 0,
            read_errors: 0,
            read_error_samples: Vec::new(),
        }
    }
}

/// Walk the source and plan against the target. Writes nothing.
pub async fn plan(options: &CopyOptions, progress: &dyn Progress) -> Result<CopyPlan> {
    let (actions, _) = run(options, progress, Side::Plan).await?;
    let Finished::Planned(actions) = actions else {
        return Err(Error::Internal("planning returned no plan".into()));
    };
    Ok(CopyPlan {
        source: options.source.display(),
        target: options.target.display(),
        selection: options.selection.clone(),
        actions,
    })
}

/// Copy, deciding each key against the target as it is now. With
/// `--mode fail` it plans first, so that nothing is written when any key
/// exists, even when the caller did not ask for a plan.
pub async fn perform(options: &CopyOptions, progress: &dyn Progress) -> Result<CopyReport> {
    let started = Instant::now();
    if options.write.mode == Mode::Fail {
        plan(options, &Silent).await?;
    }
    let (finished, stats) = run(options, progress, Side::Write).await?;
    let Finished::Written(outcome) = finished else {
        return Err(Error::Internal("copying returned no outcome".into()));
    };
    Ok(CopyReport {
        restore: outcome.into_report(options.source.display(), options.target.display(), started),
        selection: options.selection.clone(),
        vanished: stats.vanished(),
        read_errors: stats.error_count,
        read_error_samples: stats.errors,
    })
}

enum Side {
    Plan,
    Write,
}

enum Finished {
    Planned(ActionCounts),
    Written(Outcome),
}

/// Read the source into a Planner or an Applier: the walk runs on the
/// runtime, the visitor on a thread of its own (it blocks on the runtime
/// for its Redis calls), joined by a bounded channel.
async fn run(
    options: &CopyOptions,
    progress: &dyn Progress,
    side: Side,
) -> Result<(Finished, FetchStats)> {
    let mut source = options.source.connect().await?;
    let total: Option<u64> = source
        .query(&redis::cmd("DBSIZE"), "reading DBSIZE")
        .await
        .ok();
    let target = match side {
        Side::Write => Some(open_target(&options.target).await?),
        Side::Plan => None,
    };
    let handle = Handle::current();
    progress.start(total);
    let result = tokio::task::block_in_place(|| {
        let (tx, rx) = mpsc::channel::<Outgoing>(CHANNEL_RECORDS);
        let mut fetcher = Fetcher::new(source.clone(), options.chunks, tx);
        std::thread::scope(|scope| {
            let consumer = scope.spawn(|| consume(handle.clone(), options, target, rx));
            let walked = handle.block_on(walk(
                &mut source,
                &options.selection,
                options.scan_count,
                &options.cancel,
                &mut fetcher,
                progress,
            ));
            let stats = std::mem::take(&mut fetcher.stats);
            drop(fetcher);
            let consumed = consumer
                .join()
                .map_err(|_| Error::Internal("the copy writer panicked".into()))?;
            // The target's failure is the cause of a failed walk; report it first.
            let finished = consumed?;
            if !walked? {
                return Err(Error::Interrupted(format!(
                    "copy stopped; {}",
                    match &finished {
                        Finished::Written(o) => format!(
                            "{} keys were written to {}, run the same copy again to complete it",
                            o.written,
                            options.target.display()
                        ),
                        Finished::Planned(_) => "nothing was written".into(),
                    }
                )));
            }
            Ok((finished, stats))
        })
    });
    progress.finish();
    result
}

fn consume(
    handle: Handle,
    options: &CopyOptions,
    target: Option<(Conn, crate::load::TargetFeatures, i64)>,
    mut rx: mpsc::Receiver<Outgoing>,
) -> Result<Finished> {
    let location = Location {
        entry: "<source>".into(),
        record: 0,
    };
    // The walk drives the progress bar; the visitors report nothing.
    match target {
        None => {
            let mut planner = Planner::new(
                handle,
                options.target.clone(),
                options.write.clone(),
                options.cancel.clone(),
                &Silent,
            );
            planner.connect()?;
            while let Some(out) = rx.blocking_recv() {
                planner.record(out.record, &location)?;
            }
            Ok(Finished::Planned(planner.finish()?.1))
        }
        Some((conn, features, now_ms)) => {
            let mut applier = Applier::new(
                handle,
                conn,
                features,
                now_ms,
                options.write.clone(),
                options.cancel.clone(),
                &Silent,
            );
            while let Some(out) = rx.blocking_recv() {
                applier.record(out.record, &location)?;
            }
            Ok(Finished::Written(applier.finish()?))
        }
    }
}
