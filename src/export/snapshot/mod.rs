//! Exports of one instant: the RDB a server sends to a replica
//! (`--snapshot`), or an RDB file (`--from-rdb`), turned into the same
//! records a SCAN export writes.
//!
//! Each RDB is read on a thread of its own (one per primary of a cluster,
//! all asked at the same time), and records go in batches through a
//! bounded channel to the writer thread, as in a SCAN export. The
//! selection is applied as the RDB streams by: a key that is not selected
//! is skipped undecoded, though its bytes are still read and checksummed.
//! The RDB's own CRC-64 is checked at its end, before the archive is
//! committed; a truncated or corrupt RDB leaves nothing at the output path.
//!
//! A user's export (`export USER_ID`) needs two passes, because an RDB
//! cannot be asked which ids a user's index holds before the records they
//! name go by (see `profile::offline`). A file is read twice; an RDB that
//! arrives once (stdin, a replication link) is copied into a private,
//! already unlinked temp file during the first pass and read from there.

mod input;
mod pump;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

pub use input::RdbInput;
use input::{Opened, Source as RdbSource};
use pump::{BATCHES_IN_FLIGHT, Pump, Tally};

use super::*;
use crate::archive::manifest::{Address, ServerInfo};
use crate::archive::{Consistency, SnapshotOrigin, SnapshotSource};
use crate::profile::offline::OfflineUser;
use crate::rdb::KeyInfo;

/// Where an export reads its keys.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ExportMethod {
    /// Key by key with SCAN, while the database keeps changing.
    #[default]
    Scan,
    /// The server's own snapshot, received as a replica receives it.
    Snapshot,
    /// An RDB file, with no server at all.
    RdbFile(RdbInput),
}

/// Which keys of an RDB are exported: those of one database that the
/// selection takes, or, for a user's export, the user's keys.
#[derive(Clone)]
pub(super) struct Choice {
    selection: Selection,
    db: i64,
    user: Option<Arc<OfflineUser>>,
}

impl Choice {
    fn wants(&self, info: &KeyInfo) -> bool {
        i64::from(info.db) == self.db
            && match &self.user {
                Some(user) => user.second_pass_wants(&info.key.0),
                None => {
                    self.selection.matches_key(&info.key.0)
                        && self.selection.matches_type(info.key_type)
                }
            }
    }

    /// What of a wanted record is exported (a shared index: only the
    /// user's member).
    fn take(&self, record: Record) -> Option<Record> {
        match &self.user {
            Some(user) => user.take(record),
            None => Some(record),
        }
    }
}

/// Where the RDBs come from, as the header records it.
struct Origin {
    address: Address,
    /// The server's flavor and version (a file's comes from its aux fields).
    server: Option<ServerInfo>,
    cluster: Option<ClusterSource>,
    /// The instant expiry is measured from.
    now_ms: i64,
    /// A cluster's connection and slot map when the snapshots were asked
    /// for: if the slots moved meanwhile, a key may be in two snapshots or
    /// in none.
    slots: Option<(Conn, Topology)>,
}

pub(super) async fn export_rdb(
    options: ExportOptions,
    progress: &dyn Progress,
    started: Instant,
) -> Result<(ExportReport, Header)> {
    let started_at = Utc::now();
    let selection = match &options.profile {
        Some(p) => p.selection()?,
        None => options.selection.clone(),
    };
    let user = match &options.profile {
        Some(p) => p
            .user
            .as_deref()
            .map(|u| Ok::<_, Error>(OfflineUser::new(&p.groups()?, u)))
            .transpose()?,
        None => None,
    };
    let file = match &options.method {
        ExportMethod::RdbFile(input) => Some(input.clone()),
        _ => None,
    };
    let (mut sources, mut origin) = open_sources(&options, file.as_ref(), started_at).await?;
    let db = origin.address.db;
    let slots = origin.slots.take();
    let user = match user {
        Some(user) => {
            let (again, user) = first_pass(
                sources,
                user,
                file.clone(),
                origin.now_ms,
                db,
                &options.cancel,
            )
            .await?;
            sources = again;
            Some(Arc::new(user))
        }
        None => None,
    };
    let choice = Choice {
        selection: selection.clone(),
        db,
        user,
    };
    let mut pending = Vec::new();
    for one in sources {
        let choice = choice.clone();
        let now_ms = origin.now_ms;
        pending.push(blocking(move || Opened::new(one, now_ms, &choice)));
    }
    let mut opened = Vec::new();
    for task in pending {
        opened.push(task.await?);
    }

    let server = match origin.server {
        Some(server) => server,
        None => opened[0].server(),
    };
    let source = Source {
        address: origin.address,
        server,
        cluster: origin.cluster,
    };
    let nodes = opened.iter().map(|o| o.node.clone()).collect();
    let (writer, counter, id, _) = open_archive(&options, started_at, source, |header| {
        header.consistency = Consistency::Snapshot;
        header.snapshot = Some(SnapshotSource {
            origin: match file {
                Some(_) => SnapshotOrigin::RdbFile,
                None => SnapshotOrigin::Replication,
            },
            nodes,
        });
    })?;
    let (tx, rx) = std_mpsc::sync_channel::<Vec<Record>>(BATCHES_IN_FLIGHT);
    let write_thread = std::thread::spawn(move || write_batches(writer, rx, counter));

    progress.start(None);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sequence = Arc::new(Mutex::new(()));
    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let readers = opened.len();
    for one in opened {
        let pump = Pump {
            choice: choice.clone(),
            tx: tx.clone(),
            sequence: sequence.clone(),
            done: done.clone(),
            cancel: options.cancel.clone(),
            stop: stop.clone(),
        };
        let results_tx = results_tx.clone();
        std::thread::spawn(move || {
            let _ = results_tx.send(pump.run(one));
        });
    }
    drop((tx, results_tx));
    let mut tally = Tally::default();
    let mut failure = None;
    let mut reported = 0;
    let mut finished = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while finished < readers {
        tokio::select! {
            result = results.recv() => {
                finished += 1;
                match result {
                    Some(Ok(t)) => {
                        tally.expired += t.expired;
                        tally.functions += t.functions;
                    }
                    Some(Err(e)) => {
                        // The first failure stops the others at their next batch.
                        stop.store(true, Ordering::Relaxed);
                        failure.get_or_insert(e);
                    }
                    None => break,
                }
            }
            _ = tick.tick() => {}
        }
        let now = done.load(Ordering::Relaxed);
        progress.advance(now - reported);
        reported = now;
    }
    progress.finish();
    let written = blocking(move || {
        write_thread
            .join()
            .map_err(|_| Error::Internal("the archive writer panicked".into()))?
    })
    .await;
    // A writer failure (disk full) is the cause of the readers' failure.
    let writer = written?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some((conn, before)) = &slots {
        unmoved_since(conn, before).await?;
    }
    let mut report = conclude(&options, writer, FetchStats::default(), started, id).await?;
    if let Some(input) = &file {
        report.0.source = input.display();
    }
    report.0.expired = tally.expired;
    report.0.functions_not_kept = tally.functions;
    Ok(report)
}

/// Open the file, or ask every primary for its snapshot at once (their
/// instants are then close).
async fn open_sources(
    options: &ExportOptions,
    file: Option<&RdbInput>,
    started_at: chrono::DateTime<Utc>,
) -> Result<(Vec<RdbSource>, Origin)> {
    if let Some(input) = file {
        let input = input.clone();
        let origin = Origin {
            address: Address {
                host: input.display(),
                port: 0,
                db: options.source.db(),
                tls: false,
            },
            server: None,
            cluster: None,
            slots: None,
            // Keys that expired before now would be dropped by any server
            // loading the file now; they are counted, not exported.
            now_ms: started_at.timestamp_millis(),
        };
        let one = blocking(move || RdbSource::file(&input)).await?;
        return Ok((vec![one], origin));
    }
    let mut conn = options.source.connect().await?;
    let server = conn.server_info().await?;
    let topology = settled_topology(&conn)?;
    let shards = conn.shards().await?;
    let now_ms = server_time(&mut conn).await?;
    let mut pending = Vec::new();
    for shard in &shards {
        let endpoint = shard.endpoint().clone();
        pending.push(blocking(move || RdbSource::replica(&endpoint)));
    }
    let mut sources = Vec::new();
    for task in pending {
        sources.push(task.await?);
    }
    let origin = Origin {
        address: conn.endpoint().address(),
        server: Some(server),
        cluster: topology.as_ref().map(ClusterSource::of),
        now_ms,
        slots: topology.map(|t| (conn, t)),
    };
    Ok((sources, origin))
}

/// A user's export: the first pass over every RDB learns which keys are
/// the user's; returns the RDBs ready to be read again.
async fn first_pass(
    sources: Vec<RdbSource>,
    user: OfflineUser,
    file: Option<RdbInput>,
    now_ms: i64,
    db: i64,
    cancel: &Cancel,
) -> Result<(Vec<RdbSource>, OfflineUser)> {
    let user = Arc::new(Mutex::new(user));
    let mut passes = Vec::new();
    for one in sources {
        let (user, file, cancel) = (user.clone(), file.clone(), cancel.clone());
        passes.push(blocking(move || {
            pump::learn(one, file.as_ref(), now_ms, db, &user, &cancel)
        }));
    }
    let mut again = Vec::new();
    for pass in passes {
        again.push(pass.await?);
    }
    let user = Arc::try_unwrap(user)
        .map_err(|_| Error::Internal("a first pass is still running".into()))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok((again, user))
}

fn write_batches(
    mut writer: ArchiveWriter,
    rx: std_mpsc::Receiver<Vec<Record>>,
    mut counter: Option<GroupCounter>,
) -> Result<ArchiveWriter> {
    for batch in rx {
        for record in batch {
            let Some(c) = counter.as_mut() else {
                writer.write_record(&record)?;
                continue;
            };
            for record in c.pass(record)? {
                writer.write_record(&record)?;
            }
        }
    }
    if let Some(c) = counter {
        writer.set_groups(c.groups);
    }
    Ok(writer)
}

/// Run `work` on a thread of its own, started now (not when the result is
/// awaited): the primaries of a cluster are asked for their snapshots at
/// the same time, not one after the other.
fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> impl Future<Output = Result<T>> {
    let task = tokio::task::spawn_blocking(work);
    async move {
        task.await
            .map_err(|e| Error::Internal(format!("a reader thread failed: {e}")))?
    }
}

async fn server_time(conn: &mut Conn) -> Result<i64> {
    let reply = conn
        .query(&redis::cmd("TIME"), "reading the server's clock")
        .await?;
    crate::reply::parse_time(Some(reply)).map_err(|reason| Error::Redis {
        endpoint: conn.endpoint().display(),
        action: "reading the server's clock".into(),
        reason,
    })
}
