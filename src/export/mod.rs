//! `export`: SCAN the selection, read each key as records, write an archive.
//!
//! Redis I/O runs on the async runtime; encoding, hashing, tar and zstd run
//! on their own thread, fed through a bounded channel. The channel bound is
//! what keeps memory flat: a slow disk slows the reads instead of queueing
//! the keyspace in memory, and both cores are kept busy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

mod scan;
mod snapshot;

use scan::ScanWalk;
pub use snapshot::{ExportMethod, RdbInput};

use crate::archive::manifest::{ArchiveKind, ClusterSource, SCHEMA_VERSION, Source};
use crate::archive::{ArchiveWriter, Destination, Encryption, Finished, Header, WriterOptions};
use crate::cluster::Topology;
use crate::connection::{Conn, Endpoint};
use crate::error::{Error, Result};
use crate::fetch::{ChunkSizes, FetchStats, Fetcher, Inbox};
use crate::keyspace::Selection;
use crate::profile::Profile;
use crate::profile::rewrite::classify;
use crate::profile::select::{ProfileExport, UserWalk};
use crate::profile::sensitive::{Redact, Redactor, redaction};
use crate::progress::{Cancel, Progress};
use crate::record::Record;
use crate::report::ExportReport;

/// Messages (a batch's records each) in flight between the readers and
/// the writer thread; their bytes are bounded by the fetcher's budget.
const CHANNEL_MESSAGES: usize = 64;

/// What to export and where; [`ExportOptions::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The server read from.
    pub source: Endpoint,
    /// Where the archive is written.
    pub destination: Destination,
    /// The keys to export.
    pub selection: Selection,
    /// How the archive is compressed.
    pub writer: WriterOptions,
    /// How big keys are split into records.
    pub chunks: ChunkSizes,
    /// COUNT for SCAN: keys per step, and so per read batch.
    pub scan_count: usize,
    /// Set to stop the export cleanly; no archive is left behind.
    pub cancel: Cancel,
    /// Encrypt the archive with age.
    pub encryption: Option<Arc<Encryption>>,
    /// What the header says the archive is.
    pub label: Label,
    /// Export one user's records, or whole groups, as a profile describes
    /// them (instead of `selection`).
    pub profile: Option<ProfileExport>,
    /// Reconnects per command when the source connection drops (reads are
    /// safe to send again; SCAN cursors survive a new connection).
    pub reconnects: u32,
    /// Where the keys are read: SCAN (the default), the server's snapshot,
    /// or an RDB file.
    pub method: ExportMethod,
    /// Replace the values of the profile's sensitive fields (a profile
    /// export only); the header records how and which fields.
    pub redact: Option<Redact>,
}

/// Kind, id, name and tags of a new archive.
#[derive(Debug, Clone)]
pub struct Label {
    /// Why the archive is written.
    pub kind: ArchiveKind,
    /// A fresh id unless set (a backup names its file after the id first).
    pub id: Option<String>,
    /// A name for the archive (backups).
    pub name: Option<String>,
    /// Free-form labels for the archive (backups).
    pub tags: Vec<String>,
}

impl Default for Label {
    fn default() -> Self {
        Label {
            kind: ArchiveKind::Export,
            id: None,
            name: None,
            tags: Vec::new(),
        }
    }
}

impl ExportOptions {
    /// Export `selection` from `source` into `destination`, unencrypted,
    /// with the default compression and chunk sizes.
    pub fn new(source: Endpoint, destination: Destination, selection: Selection) -> Self {
        ExportOptions {
            source,
            destination,
            selection,
            writer: WriterOptions::default(),
            chunks: ChunkSizes::default(),
            scan_count: 512,
            cancel: Cancel::new(),
            encryption: None,
            label: Label::default(),
            profile: None,
            reconnects: 5,
            method: ExportMethod::Scan,
            redact: None,
        }
    }
}

/// Export the selected keys into a new archive and return what was written.
/// The archive is complete and verified on success; on any error no file is
/// left at a file destination.
pub async fn export(options: ExportOptions, progress: &dyn Progress) -> Result<ExportReport> {
    Ok(export_archive(options, progress).await?.0)
}

/// The file an export writes when no `-o` is given, in the current
/// directory: `archive-TIME-dbN.tar.zst` (UTC), or `-user-ID` for one user's
/// records, `.age` added when encrypted.
pub fn default_file_name(
    now: chrono::DateTime<Utc>,
    user: Option<&str>,
    db: i64,
    encrypted: bool,
) -> std::path::PathBuf {
    let scope = match user {
        Some(user) => format!("user-{}", crate::partial::file_name_part(user)),
        None => format!("db{db}"),
    };
    format!(
        "archive-{}-{scope}.tar.zst{}",
        now.format("%Y%m%dT%H%M%SZ"),
        if encrypted { ".age" } else { "" }
    )
    .into()
}

/// Export, returning also the archive's header (for the folder's metadata).
pub(crate) async fn export_archive(
    options: ExportOptions,
    progress: &dyn Progress,
) -> Result<(ExportReport, Header)> {
    let started = Instant::now();
    crate::failpoint::check("export.start")?;
    if !matches!(options.method, ExportMethod::Scan) {
        return snapshot::export_rdb(options, progress, started).await;
    }
    let mut conn = options.source.connect_retrying(options.reconnects).await?;
    let server = conn.server_info().await?;
    let server_info = server.clone();
    // One connection per primary of a cluster (the server itself otherwise).
    let shards = conn.shards().await?;
    let mut total: Option<u64> = Some(0);
    for shard in &shards {
        let size: Option<u64> = shard
            .clone()
            .query(&redis::cmd("DBSIZE"), "reading DBSIZE")
            .await
            .ok();
        total = total.zip(size).map(|(a, b)| a + b);
    }
    let topology = settled_topology(&conn)?;

    let source = Source {
        address: conn.endpoint().address(),
        server,
        cluster: topology.as_ref().map(ClusterSource::of),
    };
    let (writer, counter, id, selection) = open_archive(&options, Utc::now(), source, |_| {})?;
    let (tx, rx) = crate::fetch::channel(CHANNEL_MESSAGES);
    let write_thread = std::thread::spawn(move || write_all(writer, rx, counter));

    let user = options.profile.as_ref().and_then(|p| p.user.clone());
    progress.start(if user.is_some() { None } else { total });
    let mut fetcher = Fetcher::new(conn.clone(), options.chunks, tx).for_server(&server_info);
    let walked = match (&options.profile, user) {
        (Some(p), Some(user)) => {
            // The SCAN walk asks each node itself; the user walk reads
            // through this fetcher.
            fetcher.detect_field_expiry(&server_info).await?;
            let groups = p.groups()?;
            let mut by_user = UserWalk::new(
                &mut conn,
                &mut fetcher,
                options.scan_count,
                &options.cancel,
                progress,
            );
            by_user.run(&user, &groups).await
        }
        _ => {
            let walk = ScanWalk {
                selection: &selection,
                scan_count: options.scan_count,
                cancel: &options.cancel,
                progress,
            };
            walk.run(&shards, &mut fetcher, &server_info).await
        }
    };
    progress.finish();
    let stats = std::mem::take(&mut fetcher.stats);
    drop(fetcher);
    let walked = match (&topology, walked) {
        (Some(before), Ok(done)) => unmoved_since(&conn, before).await.map(|()| done),
        (_, walked) => walked,
    };
    let written = write_thread
        .join()
        .map_err(|_| Error::Internal("the archive writer panicked".into()))?;
    // A writer failure (disk full) is the cause of a failed walk; report it first.
    let writer = written?;
    if !walked? {
        return Err(Error::Interrupted(format!(
            "export stopped; nothing was written to {}",
            options.destination.display()
        )));
    }

    conclude(&options, writer, stats, started, id).await
}

/// Commit the archive once every reader is done, and say what was written.
async fn conclude(
    options: &ExportOptions,
    writer: ArchiveWriter,
    mut stats: FetchStats,
    started: Instant,
    id: String,
) -> Result<(ExportReport, Header)> {
    // An empty user archive would pass for a backup of that user; the
    // writer dropped unfinished leaves no file.
    if let Some(p) = &options.profile
        && let Some(user) = &p.user
        && writer.counts().keys == 0
    {
        return Err(Error::NoRecords {
            user: user.clone(),
            profile: p.profile.name.clone(),
            groups: p.groups()?.iter().map(|g| g.name.clone()).collect(),
        });
    }
    let vanished = stats.vanished();
    let errors = std::mem::take(&mut stats.errors).into_parts();
    let Finished {
        destination,
        bytes,
        sha256,
        encrypted,
        manifest,
    } = tokio::task::spawn_blocking(move || writer.finish(Utc::now(), vanished))
        .await
        .map_err(|e| Error::Internal(format!("finishing the archive: {e}")))??;

    let output = match &destination {
        Destination::File(p) => p.display().to_string(),
        Destination::Stdout => "-".into(),
    };
    let mut by_type = stats.by_type;
    for (t, count) in &manifest.counts.by_type {
        by_type.entry(*t).or_default().exported = count.keys;
    }
    let report = ExportReport {
        id,
        output,
        source: options.source.describe(),
        bytes,
        keys: manifest.counts.keys,
        records: manifest.counts.records,
        by_type,
        vanished,
        changed: stats.changed,
        errors: errors.0,
        error_samples: errors.1,
        seconds: started.elapsed().as_secs_f64(),
        schema_version: SCHEMA_VERSION,
        sha256,
        encrypted,
        profile: manifest.header.profile.clone(),
        groups: manifest.groups,
        redaction: manifest.header.redaction.clone(),
        expired: 0,
        functions_not_kept: 0,
    };
    Ok((report, manifest.header))
}

/// Write the header of a new archive (its label and, for a profile
/// export, its scope and the selection the profile makes; `amend` adds
/// the rest) and open its writer. Returns the writer, the per-group counter
/// of a profile export, the archive's id and the selection to walk.
fn open_archive(
    options: &ExportOptions,
    started_at: chrono::DateTime<Utc>,
    source: Source,
    amend: impl FnOnce(&mut Header),
) -> Result<(ArchiveWriter, Option<GroupCounter>, String, Selection)> {
    let mut header = Header::new(
        options.label.kind,
        started_at,
        source,
        options.selection.clone(),
    );
    if let Some(id) = &options.label.id {
        header.id = id.clone();
    }
    header.name = options.label.name.clone();
    header.tags = options.label.tags.clone();
    if let Some(p) = &options.profile {
        header.profile = Some(p.scope()?);
        header.selection = p.selection()?;
    }
    let redactor = match (&options.redact, &options.profile) {
        (None, _) => None,
        (Some(redact), Some(p)) => {
            header.redaction = Some(redaction(redact, &p.groups()?)?);
            Some(Redactor::new(
                p.profile.clone(),
                p.user.clone().map(String::into_bytes),
                redact.clone(),
            ))
        }
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "--redact replaces the fields a profile declares sensitive: select through the profile with a USER_ID or --types".into(),
            ));
        }
    };
    amend(&mut header);
    let selection = header.selection.clone();
    let counter = options.profile.as_ref().map(|p| GroupCounter {
        redactor,
        ..GroupCounter::new(p.profile.clone(), p.user.clone())
    });
    let id = header.id.clone();
    let writer = ArchiveWriter::create(
        options.destination.clone(),
        header,
        options.writer,
        options.encryption.as_deref(),
    )?;
    Ok((writer, counter, id, selection))
}

/// Write records as they arrive; hand the writer back for `finish` once the
/// readers are done, so that a failed export never reaches the rename.
fn write_all(
    mut writer: ArchiveWriter,
    mut rx: Inbox,
    mut counter: Option<GroupCounter>,
) -> Result<ArchiveWriter> {
    while let Some(record) = rx.blocking_recv() {
        let Some(c) = counter.as_mut() else {
            writer.write_record(&record)?;
            continue;
        };
        for record in c.pass(record)? {
            writer.write_record(&record)?;
        }
    }
    if let Some(c) = counter {
        writer.set_groups(c.groups);
    }
    Ok(writer)
}

/// Keys per profile group, counted as they are written; with `--redact`,
/// the sensitive values replaced on the way.
struct GroupCounter {
    profile: Arc<Profile>,
    user: Option<Vec<u8>>,
    groups: BTreeMap<String, u64>,
    redactor: Option<Redactor>,
}

impl GroupCounter {
    fn new(profile: Arc<Profile>, user: Option<String>) -> Self {
        GroupCounter {
            profile,
            user: user.map(String::into_bytes),
            groups: BTreeMap::new(),
            redactor: None,
        }
    }

    /// Count a record, and with `--redact` redact it: the records to
    /// write for it.
    fn pass(&mut self, record: Record) -> Result<Vec<Record>> {
        self.count(&record);
        match &mut self.redactor {
            Some(r) => r.apply(record),
            None => Ok(vec![record]),
        }
    }

    /// A key at its first record, taken back at a void last record.
    fn count(&mut self, record: &Record) {
        if record.part != 0 && !record.void {
            return;
        }
        if let Some((i, _)) = classify(&self.profile, &record.key.0, self.user.as_deref()) {
            let n = self
                .groups
                .entry(self.profile.groups[i].name.clone())
                .or_default();
            *n = if record.void {
                n.saturating_sub(1)
            } else {
                *n + 1
            };
        }
    }
}

/// A cluster's slot map at the start of an export (`None` for a single
/// server). Keys of a slot in migration are on two nodes, and the
/// importing one does not serve them yet: no consistent read is possible.
fn settled_topology(conn: &Conn) -> Result<Option<Topology>> {
    let topology = conn.topology();
    match topology.as_ref().and_then(|t| t.moving.first()) {
        Some((slot, _, _)) => Err(Error::Cluster {
            endpoint: conn.endpoint().display(),
            reason: format!(
                "slot {slot} is being moved between nodes; nothing was written; run the export once the resharding is over"
            ),
        }),
        None => Ok(topology),
    }
}

/// After the walk: keys read while slots moved may be missing from the
/// archive or in it twice, so a slot map different from `before` fails the
/// export.
async fn unmoved_since(conn: &Conn, before: &Topology) -> Result<()> {
    let Some(after) = conn.refresh_topology().await? else {
        return Ok(());
    };
    match before.change_since(&after) {
        None => Ok(()),
        Some(change) => Err(Error::Cluster {
            endpoint: conn.endpoint().display(),
            reason: format!(
                "the slots moved during the export ({change}); nothing was written; run it again once the resharding or failover is over"
            ),
        }),
    }
}

#[cfg(test)]
mod default_name_tests {
    use super::*;

    #[test]
    fn default_names_sort_by_time_and_keep_user_ids_file_name_safe() {
        let now = "2026-11-30T09:05:07Z".parse().unwrap();
        assert_eq!(
            default_file_name(now, None, 3, false),
            std::path::PathBuf::from("archive-20261130T090507Z-db3.tar.zst")
        );
        assert_eq!(
            default_file_name(now, Some("acme/42 x"), 0, true),
            std::path::PathBuf::from("archive-20261130T090507Z-user-acme-42-x.tar.zst.age")
        );
    }
}
