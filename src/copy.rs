//! `copy`: from one Redis straight into another (or into another database
//! of the same server), with no archive for the user to handle.
//!
//! A copy is an export and a restore. The selection is first exported to a
//! private spool (a temp directory of mode 0700, the archive encrypted with
//! age to a key that exists only in this process's memory), and restored
//! from there with restore's plan, pre-restore backup, journal and perform.
//! So a copy is planned against one consistent read of the source, the plan
//! it shows is the plan it carries out, and it can be rolled back exactly
//! like a restore. The spool costs disk space about the size of a
//! compressed export of the selection, and is removed when the copy ends.
//!
//! `--verify` compares the spool with the target after writing, as
//! `compare --subset` does (or `--subset=merge` after a merge), with the
//! copy's renames: the check reads what was copied, not the source as it
//! is by then.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveSource, Decryption, Destination, Encryption};
use crate::compare::{CompareMode, CompareOptions, Comparison, compare};
use crate::connection::Endpoint;
use crate::error::{Error, Result};
use crate::export::{ExportOptions, export};
use crate::fetch::ChunkSizes;
use crate::keyspace::Selection;
use crate::load::TtlMode;
use crate::progress::{Cancel, Progress};
use crate::report::{
    ActionCounts, ExportReport, KeyError, PlanNames, RenameSummary, RestoreReport,
};
use crate::restore::{self, Mode, Plan, RestoreOptions, WriteOptions};

/// What to copy from one live server to another; [`CopyOptions::new`] fills
/// in the defaults.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// The server read from.
    pub source: Endpoint,
    /// Without an explicit database (URL or --db), the source's database.
    pub target: Endpoint,
    /// The keys to copy.
    pub selection: Selection,
    /// How keys are written into the target (mode, expiry, renames).
    pub write: WriteOptions,
    /// How big keys are split into records while read.
    pub chunks: ChunkSizes,
    /// COUNT for SCAN: keys per step, and so per read batch.
    pub scan_count: usize,
    /// Set to stop the copy cleanly.
    pub cancel: Cancel,
    /// Where the pre-restore backup goes; `None` writes none.
    pub backup_dir: Option<PathBuf>,
    /// Read the source's snapshot (one instant) instead of SCAN.
    pub snapshot: bool,
    /// Copy one user's records, or whole groups, as a profile describes
    /// them (instead of `selection`).
    pub profile: Option<crate::profile::select::ProfileExport>,
    /// After writing, check that the target holds what was copied.
    pub verify: bool,
    /// With a profile: refuse records that break its rules before the
    /// first write, as a restore does.
    pub validate: bool,
}

impl CopyOptions {
    /// Copy `selection` from `source` to `target` with the default write
    /// options; the target keeps the source's database unless it names one.
    pub fn new(source: Endpoint, target: Endpoint, selection: Selection) -> Self {
        let target = target.or_db(source.db());
        CopyOptions {
            source,
            target,
            selection,
            write: WriteOptions::default(),
            chunks: ChunkSizes::default(),
            scan_count: 512,
            cancel: Cancel::new(),
            backup_dir: None,
            snapshot: false,
            profile: None,
            verify: false,
            validate: true,
        }
    }
}

/// A copy read from the source and planned against the target.
#[derive(Debug)]
pub struct CopyPlan {
    /// The source, with any password left out.
    pub source: String,
    /// The target, with any password left out.
    pub target: String,
    /// The keys selected.
    pub selection: Selection,
    /// What the copy would do to each key.
    pub actions: ActionCounts,
    read: ExportReport,
    restore: Plan,
    restore_options: RestoreOptions,
    verify: bool,
    _spool: tempfile::TempDir,
}

/// What a copy did: the restore side's report plus what reading saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    /// The writing side: what was done to each key in the target.
    #[serde(flatten)]
    pub restore: RestoreReport,
    /// The keys selected.
    pub selection: Selection,
    /// Keys the walk found that were gone when read.
    pub vanished: u64,
    /// Keys that could not be read from the source.
    pub read_errors: u64,
    /// The first keys that could not be read, with why.
    pub read_error_samples: Vec<KeyError>,
    /// With `verify`: the target compared with what was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Comparison>,
}

impl CopyReport {
    /// True when some keys were not copied (read or write errors).
    pub fn is_partial(&self) -> bool {
        self.restore.is_partial() || self.read_errors > 0
    }

    /// True when a verification ran and found differences.
    pub fn verification_failed(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(|c| !c.is_identical())
    }
}

impl CopyPlan {
    /// The report of a dry run: what would be done, nothing written.
    pub fn into_dry_run_report(self) -> CopyReport {
        let mut restore = RestoreReport::planned(self.source, self.target, self.actions);
        restore.renames = self.restore.renames;
        restore.names = self.restore.names;
        restore.groups = self.restore.groups;
        restore.merge_would_add = self.restore.merge_would_add;
        CopyReport {
            restore,
            selection: self.selection,
            vanished: self.read.vanished,
            read_errors: self.read.errors,
            read_error_samples: self.read.error_samples,
            verification: None,
        }
    }

    /// Where the pre-restore backup will be, when there is one.
    pub fn backup_path(&self) -> Option<&std::path::Path> {
        self.restore.backup_path()
    }

    /// With rename rules: what they do to the selected keys.
    pub fn renames(&self) -> Option<&RenameSummary> {
        self.restore.renames.as_ref()
    }

    /// The first existing keys the plan skips, overwrites or merges into.
    pub fn names(&self) -> &PlanNames {
        &self.restore.names
    }

    /// What the plan's merges would add, when counted.
    pub fn merge_would_add(&self) -> Option<u64> {
        self.restore.merge_would_add
    }
}

/// Read the source into the spool and plan against the target. Writes
/// nothing to the target (the backup is finished only by `perform`).
pub async fn plan(options: &CopyOptions, progress: &dyn Progress) -> Result<CopyPlan> {
    if options.write.remap.is_empty()
        && options.write.as_user.is_none()
        && same_database(&options.source, &options.target).await?
    {
        return Err(Error::InvalidArgument(format!(
            "the source {} and the target {} are the same database: every key would be skipped or written over itself; name another target or --db, or rename with --rename-prefix or --rename-token",
            options.source.display(),
            options.target.display()
        )));
    }
    let spool = tempfile::Builder::new()
        .prefix("archive-copy-")
        .tempdir()
        .map_err(|e| Error::output(std::env::temp_dir(), e))?;
    let path = spool.path().join("spool.tar.zst.age");
    let key = age::x25519::Identity::generate();
    let mut export_options = ExportOptions::new(
        options.source.clone(),
        Destination::File(path.clone()),
        options.selection.clone(),
    );
    export_options.chunks = options.chunks;
    export_options.scan_count = options.scan_count;
    if options.snapshot {
        export_options.method = crate::export::ExportMethod::Snapshot;
    }
    export_options.profile = options.profile.clone();
    export_options.cancel = options.cancel.clone();
    export_options.encryption = Some(Arc::new(Encryption::to_key(key.to_public())));
    let read = export(export_options, progress).await?;

    let mut restore_options =
        RestoreOptions::new(ArchiveSource::File(path), options.target.clone());
    restore_options.write = options.write.clone();
    restore_options.cancel = options.cancel.clone();
    restore_options.backup_dir = options.backup_dir.clone();
    restore_options.decryption = Decryption::none().with_identity(Arc::new(key));
    restore_options.validate = options.validate;
    let restore = restore::plan(&restore_options, progress)
        .await
        .map_err(|e| match e {
            // The spool is the copy's own: name what the records came from.
            Error::RecordsInvalid {
                profile,
                count,
                examples,
                ..
            } => Error::RecordsInvalid {
                archive: copied_from(&options.source, options.profile.as_ref()),
                profile,
                count,
                examples,
            },
            e => e,
        })?;
    Ok(CopyPlan {
        source: options.source.describe(),
        target: restore.target.describe(),
        selection: match &options.profile {
            Some(p) => p.selection()?,
            None => options.selection.clone(),
        },
        actions: restore.actions.clone(),
        read,
        restore,
        restore_options,
        verify: options.verify,
        _spool: spool,
    })
}

/// What a copy's records come from, in words: the source, and the user
/// when one user is copied.
fn copied_from(
    source: &Endpoint,
    profile: Option<&crate::profile::select::ProfileExport>,
) -> String {
    match profile.and_then(|p| p.user.as_deref()) {
        Some(user) => format!("user {user} on {}", source.describe()),
        None => source.describe(),
    }
}

/// Whether two endpoints are one database of one server: the same `run_id`
/// (whatever names the URLs use) and the same database index. A server
/// that will not say (an ACL without INFO) is taken to be another.
async fn same_database(source: &Endpoint, target: &Endpoint) -> Result<bool> {
    if source.db() != target.db() {
        return Ok(false);
    }
    async fn run_id(endpoint: &Endpoint) -> Result<Option<String>> {
        let mut conn = endpoint.connect().await?;
        let info: Option<String> = conn
            .query(redis::cmd("INFO").arg("server"), "reading INFO")
            .await
            .ok();
        Ok(info.and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("run_id:"))
                .map(|id| id.trim().to_string())
        }))
    }
    match (run_id(source).await?, run_id(target).await?) {
        (Some(a), Some(b)) => Ok(a == b),
        _ => Ok(false),
    }
}

/// Carry out a copy planned by [`plan`]. A copy that takes a pre-restore
/// backup is logged in the audit log of the backup's folder.
pub async fn perform(plan: CopyPlan, progress: &dyn Progress) -> Result<CopyReport> {
    let dir = plan.restore_options.backup_dir.clone();
    let result = async {
        let target = plan.restore.target.clone();
        let mut report =
            restore::perform_unlogged(plan.restore, &plan.restore_options, progress).await?;
        let verification = if plan.verify {
            let mut c = verify(&plan.restore_options, target, progress).await?;
            c.archive = plan.source.clone();
            Some(c)
        } else {
            None
        };
        report.source = plan.source;
        Ok(CopyReport {
            restore: report,
            selection: plan.selection,
            vanished: plan.read.vanished,
            read_errors: plan.read.errors,
            read_error_samples: plan.read.error_samples,
            verification,
        })
    }
    .await;
    let dirs: Vec<_> = dir.into_iter().collect();
    crate::folder::audit::record(&dirs, "copy", result, |r| r.is_partial())
}

/// Compare what was copied (the spool) with the target as the write mode
/// leaves it: every key equal, or after a merge every member present;
/// keys the target has besides are its own. Expiry is compared only when
/// the copy wrote the archive's own times (`--ttl absolute`).
async fn verify(
    restored: &RestoreOptions,
    target: Endpoint,
    progress: &dyn Progress,
) -> Result<Comparison> {
    let write = &restored.write;
    let mut options = CompareOptions::new(restored.source.clone(), target);
    options.decryption = restored.decryption.clone();
    options.remap = write.remap.clone();
    options.profile = write.profile.clone();
    options.as_user = write.as_user.clone();
    options.mode = match write.mode {
        Mode::Merge => CompareMode::Merge,
        _ => CompareMode::Subset,
    };
    options.compare_expiry = write.ttl == TtlMode::Absolute;
    compare(&options, progress).await
}
