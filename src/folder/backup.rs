//! `backup`: an export into the backup folder, named so that names sort by
//! time, committed by its metadata sidecar, with the folder locked meanwhile.

use std::path::Path;

use chrono::Utc;

use super::catalog::{Lock, Meta, archive_file_name, commit};
use crate::archive::Destination;
use crate::archive::manifest::{ArchiveKind, new_archive_id};
use crate::error::Result;
use crate::export::{ExportOptions, export_archive};
use crate::progress::Progress;
use crate::report::ExportReport;

/// Export into the backup folder `dir` (created 0700 if need be), and log
/// the run in the folder's audit log.
pub async fn backup(
    options: ExportOptions,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    super::catalog::create_private_dir(dir)?;
    let result = write_backup(options, dir, progress).await;
    super::audit::record(&[dir.to_path_buf()], "backup", result, |r| r.errors > 0)
}

async fn write_backup(
    mut options: ExportOptions,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<ExportReport> {
    let _lock = Lock::acquire(dir, "backup")?;
    let id = new_archive_id();
    let created = Utc::now();
    let label = options
        .label
        .name
        .clone()
        .unwrap_or_else(|| "backup".into());
    let file = archive_file_name(created, &label, &id, options.encryption.is_some());
    options.destination = Destination::File(dir.join(&file));
    options.label.kind = ArchiveKind::Backup;
    options.label.id = Some(id);
    let (report, header) = export_archive(options, progress).await?;
    crate::failpoint::hit("folder.before-meta");
    let meta = Meta::new(
        &header,
        file,
        report.keys,
        report.bytes,
        report.sha256.clone(),
        report.encrypted,
    );
    commit(dir, &meta)?;
    Ok(report)
}
