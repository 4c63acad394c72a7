//! `restore`: verify, plan, then perform.
//!
//! [`plan`] reads the whole archive once, verifying every checksum and every
//! record (and decrypting it, when it is encrypted), and asks the target
//! (read-only: TIME and EXISTS) what would happen to each key: create, skip,
//! overwrite, merge or expired. Nothing is written until that pass has
//! succeeded, so a corrupt, truncated or tampered archive writes nothing.
//! [`perform`] then reads the archive again and carries the plan out with
//! pipelined batches, deciding each key by the same rules against the
//! target as it is at that moment. A key the server refuses does not stop
//! the rest: it is counted and named in the report (pg_restore's habit),
//! and the report says the restore was partial.
//!
//! Each pass reads the archive on a blocking thread that sends batches of
//! records through a bounded channel ((`archive::stream`)); the
//! `Planner` and `Applier` are async loops over those batches that await
//! the target directly. Nothing holds a runtime thread while it waits, so
//! the library runs on a current-thread runtime as well as a multi-threaded
//! one. Batches arrive before the archive is known to be whole, so the plan
//! is used only once the reader has verified all of it. Standard input is
//! spooled to a private temp file first, because the archive has to be read
//! twice.

mod applier;
pub mod backup;
mod decisions;
mod exists;
mod groups;
pub(crate) mod journal;
pub(crate) mod members;
mod merges;
mod planner;
pub mod remap;
pub mod rollback;

pub(crate) use applier::Applier;
use decisions::{DecisionReader, Decisions};
use exists::{ExistsTask, read_exists, send_exists};
use groups::GroupTally;
pub(crate) use journal::{LEFT_ALONE_FINGERPRINT, UNKNOWN_FINGERPRINT, fingerprints};
use merges::MergeCounts;
pub(crate) use planner::Planner;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::archive::manifest::RestoreLink;
use crate::archive::reader::ArchiveSource;
use crate::archive::stream::{Batches, Tee};
use crate::archive::{Decryption, Header, Manifest};
use crate::connection::{Conn, Endpoint, Pipes, ServerInfo};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::load::{KeyCarry, Role, TargetFeatures, TtlMode, add_merge, add_record, add_restore};
use crate::profile::Profile;
use crate::profile::check::CheckTee;
use crate::profile::rewrite::Rewriter;
use crate::progress::{Cancel, Progress};
use crate::record::{Bytes, Expiry, KeyType, Record, Value, printable};
use crate::report::{
    Action, ActionCounts, GroupCounts, KeyError, PlanNames, ProfileRestore, RenameSummary,
    RestoreReport, Samples,
};
use backup::PreRestoreBackup;
use journal::{Journal, journal_path};
use remap::{Remap, RenameTally};

/// Problems a refused restore names (the rest are counted).
const INVALID_EXAMPLES: usize = 5;

/// A pipeline running as a task of its own.
type Pending = tokio::task::JoinHandle<Result<Vec<Reply>>>;

/// What to do with a key that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Leave it as it is (running the same restore twice is safe).
    #[default]
    Skip,
    /// Replace it: type, value and expiry become the archive's.
    Overwrite,
    /// Add the fields, members and stream entries it lacks; change nothing
    /// it has. Strings that exist are skipped.
    Merge,
    /// Write nothing at all if any key exists; list the first ones.
    Fail,
}

/// How records are written into a target; shared by restore and copy.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// What to do with keys that already exist.
    pub mode: Mode,
    /// How written keys get their expiry.
    pub ttl: TtlMode,
    /// Key renames applied on the way in.
    pub remap: Remap,
    /// Keys per EXISTS and write batch.
    pub batch_keys: usize,
    /// Bytes a write batch holds in memory (its decoded records), to bound a
    /// batch of big records.
    pub batch_bytes: usize,
    /// The profile of a user archive: upgrades old records, and with
    /// `as_user` writes the user's records under another id.
    pub profile: Option<Arc<Profile>>,
    /// For a user archive: write the records under this user id instead of
    /// the archive's.
    pub as_user: Option<String>,
    /// Write what the target can hold and drop the rest (counted), instead
    /// of refusing the restore.
    pub drop_unsupported: bool,
    /// Count what the plan's merges would add (a read-only script per
    /// record of a key that may be merged into): for a plan a person reads.
    pub count_merges: bool,
    /// The instant of the run, which upgrade steps with `now` write: taken
    /// once, so the plan and the writes, and every record, see the same.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl WriteOptions {
    /// What the records of the archive with `header` need on their way in
    /// (the same for the plan and the writes, so both see the same records).
    fn rewriter(&self, header: &Header, archive: &str) -> Result<Option<Rewriter>> {
        let rewriter = Rewriter::prepare(
            self.profile.as_ref(),
            header,
            self.as_user.as_deref(),
            archive,
        )?;
        Ok(rewriter.map(|r| r.at(self.now)))
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: Mode::Skip,
            ttl: TtlMode::Absolute,
            remap: Remap::default(),
            batch_keys: 2048,
            batch_bytes: 8 << 20,
            profile: None,
            as_user: None,
            drop_unsupported: false,
            count_merges: false,
            now: chrono::Utc::now(),
        }
    }
}

/// What to restore and where; [`RestoreOptions::new`] fills in the
/// defaults. The same options go to [`plan`] and [`perform`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The archive.
    pub source: ArchiveSource,
    /// The target; without an explicit database (URL or --db) the archive's
    /// source database is used.
    pub target: Endpoint,
    /// How keys are written.
    pub write: WriteOptions,
    /// Set to stop the restore cleanly between batches.
    pub cancel: Cancel,
    /// Identities or passphrase for an encrypted archive.
    pub decryption: Decryption,
    /// Where the pre-restore backup goes; `None` writes none (`--no-backup`).
    pub backup_dir: Option<PathBuf>,
    /// With a profile and an archive exported through it: check the
    /// records as `validate --profile` does while planning, and refuse
    /// the restore (dry run or not) when one breaks the profile's rules.
    pub validate: bool,
}

impl RestoreOptions {
    /// Restore `source` into `target` in skip mode, with absolute expiry
    /// and no pre-restore backup.
    pub fn new(source: ArchiveSource, target: Endpoint) -> Self {
        RestoreOptions {
            source,
            target,
            write: WriteOptions::default(),
            cancel: Cancel::new(),
            decryption: Decryption::none(),
            backup_dir: None,
            validate: true,
        }
    }
}

/// A verified archive and what restoring it would do.
#[derive(Debug)]
pub struct Plan {
    /// The archive as named.
    pub source: String,
    /// The target, with its database resolved.
    pub target: Endpoint,
    /// The archive's manifest, verified by the planning read.
    pub manifest: Manifest,
    /// Whether the archive is age-encrypted.
    pub encrypted: bool,
    /// What would be done to each key, per type.
    pub actions: ActionCounts,
    /// What the profile did to the records (user archives).
    pub profile: Option<ProfileRestore>,
    /// Hash field expiries the target cannot hold, dropped on request.
    pub dropped_field_expiries: u64,
    /// With rename rules: what they do to the keys.
    pub renames: Option<RenameSummary>,
    /// The first existing keys the plan skips, overwrites or merges into.
    pub names: PlanNames,
    /// With a profile: the plan per group.
    pub groups: BTreeMap<String, GroupCounts>,
    /// What the merges would add (fields, members, list values, stream
    /// entries), when counted (`WriteOptions::count_merges`).
    pub merge_would_add: Option<u64>,
    /// Set when a redacted archive would go into a target that looks like
    /// production (see [`redaction_warning`]).
    pub redaction_warning: Option<String>,
    /// The decision for each key, in archive order: perform follows it.
    decisions: Decisions,
    /// The pre-restore backup, complete but not yet in place: perform
    /// finishes it before its first write; a plan dropped unused leaves
    /// nothing behind.
    backup: Option<PreRestoreBackup>,
    /// The archive to read for perform (stdin spooled to a temp file).
    archive: ArchiveSource,
    _spool: Option<tempfile::NamedTempFile>,
}

impl Plan {
    /// The report of a dry run: the plan, nothing written.
    pub fn into_dry_run_report(self) -> RestoreReport {
        let mut report = RestoreReport::planned(self.source, self.target.describe(), self.actions);
        report.profile = self.profile;
        report.dropped_field_expiries = self.dropped_field_expiries;
        report.renames = self.renames;
        report.names = self.names;
        report.groups = self.groups;
        report.merge_would_add = self.merge_would_add;
        report.redaction_warning = self.redaction_warning;
        report
    }

    /// The archive's header.
    pub fn header(&self) -> &Header {
        &self.manifest.header
    }

    /// Where the pre-restore backup will be, when there is one.
    pub fn backup_path(&self) -> Option<&Path> {
        self.backup.as_ref().map(|b| b.path.as_path())
    }
}

/// What marks a target as production: in its host name or in the user
/// name it connects as, in any case (`redis-prod-1`, `production.cache`,
/// `app_prod`). A rule of names only: a false alarm costs a line of text,
/// and nothing is refused on it.
const PRODUCTION_MARK: &str = "prod";

/// The warning for restoring a redacted archive (`header.redaction`) into a
/// target that looks like production: its sensitive fields would hold
/// masks or hashes where the application expects real tokens and
/// addresses. `None` when either is not the case.
pub fn redaction_warning(header: &Header, target: &Endpoint) -> Option<String> {
    let redaction = header.redaction.as_ref()?;
    let host = target.address().host;
    let looks = |name: &str| name.to_ascii_lowercase().contains(PRODUCTION_MARK);
    let why = if looks(&host) {
        format!("its host name {host:?}")
    } else {
        format!(
            "its user name {:?}",
            target.username().filter(|u| looks(u))?
        )
    };
    Some(format!(
        "the archive is redacted ({}: its sensitive fields hold replaced values, not the real ones) and the target {} looks like production ({why} contains {PRODUCTION_MARK:?}); restoring it there writes those replaced values over real data",
        redaction.method.name(),
        target.display()
    ))
}

/// The command that undoes a restore whose backup is at `path`.
pub(crate) fn rollback_command(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:+".contains(c))
    {
        format!("archive rollback {text}")
    } else {
        format!("archive rollback '{}'", text.replace('\'', "'\\''"))
    }
}

/// Verify the archive and work out what restoring it would do. Writes nothing.
pub async fn plan(options: &RestoreOptions, progress: &dyn Progress) -> Result<Plan> {
    let (archive, spool) = spool_if_stdin(&options.source)?;
    progress.start(None);
    let planned = async {
        let mut planner = Planner::new(
            options.target.clone(),
            options.write.clone(),
            options.cancel.clone(),
            progress,
        );
        if let Some(dir) = &options.backup_dir {
            planner = planner.with_backup(dir.clone(), options.source.display());
        }
        planner.archive = options.source.display();
        let (tee, checks) = match (&options.write.profile, options.validate) {
            (Some(profile), true) => {
                let (tee, checks) = CheckTee::new(profile.clone(), options.source.display());
                (Some(Box::new(tee) as Box<dyn Tee>), Some(checks))
            }
            _ => (None, None),
        };
        // The plan and its backup count only once the whole archive has
        // checked out.
        let verified = Batches::start_with(archive.clone(), options.decryption.clone(), tee, {
            let write = options.write.clone();
            move |header| planner_needs_values(&write, header)
        })
        .visit(&mut planner)
        .await?;
        if let Some(checked) = checks.and_then(CheckTee::finish)
            && !checked.findings.is_empty()
        {
            return Err(Error::RecordsInvalid {
                archive: options.source.display(),
                profile: options
                    .write
                    .profile
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                count: checked.findings.len() as u64,
                examples: checked
                    .findings
                    .iter()
                    .take(INVALID_EXAMPLES)
                    .map(|f| f.message.clone())
                    .collect(),
            });
        }
        let planned = planner.finish().await?;
        Ok::<_, Error>((verified, planned))
    }
    .await;
    progress.finish();
    let (verified, planned) = planned?;
    let redaction_warning = redaction_warning(&verified.manifest.header, &planned.target);
    Ok(Plan {
        source: options.source.display(),
        target: planned.target,
        manifest: verified.manifest,
        encrypted: verified.encrypted,
        actions: planned.actions,
        profile: planned.profile,
        dropped_field_expiries: planned.dropped_field_expiries,
        renames: planned.renames,
        names: planned.names,
        groups: planned.groups,
        merge_would_add: planned.merge_would_add,
        redaction_warning,
        decisions: planned.decisions,
        backup: planned.backup,
        archive,
        _spool: spool,
    })
}

/// Whether the plan must see the records' values, or their keys and
/// shapes are enough (then the plan's pass over the archive decodes them
/// hollow, which is most of what it costs). What a merge would add is
/// counted from the values, and a profile's upgrades, checks and shared
/// indexes look at them.
fn planner_needs_values(write: &WriteOptions, header: &crate::archive::Header) -> bool {
    write.mode == Mode::Merge || header.profile.is_some()
}

/// Carry out a plan made by [`plan`] with the same options. The restore is
/// logged in the audit log of its pre-restore backup's folder, and in that
/// of the backup folder the archive comes from.
pub async fn perform(
    plan: Plan,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let result = perform_unlogged(plan, options, progress).await;
    let dirs =
        crate::folder::audit::restore_folders(options.backup_dir.as_deref(), &options.source);
    crate::folder::audit::record(&dirs, "restore", result, |r| r.is_partial())
}

/// [`perform`] without the audit log entry (copy logs its own).
pub(crate) async fn perform_unlogged(
    mut plan: Plan,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = plan.target.clone();
    let (conn, features, now_ms) = open_target(&target).await?;
    let restore_rdb = features.restore_rdb;
    // The backup is complete and durable before the first write.
    let backup = match plan.backup.take() {
        Some(b) => Some(b.finish()?),
        None => None,
    };
    failpoint::hit("restore.backup-done");
    let journal = match &backup {
        Some(path) => Some(Journal::create(journal_path(path))?),
        None => None,
    };
    progress.start(Some(plan.manifest.counts.keys));
    let decisions = std::mem::take(&mut plan.decisions).into_reader()?;
    let applied = async {
        let mut applier = Applier::new(
            conn,
            features,
            now_ms,
            options.write.clone(),
            options.cancel.clone(),
            progress,
        )
        .following(decisions, journal);
        applier.archive = options.source.display();
        // Whole keys come with their RESTORE payload, made on the reader's
        // decoding thread, unless the values are rewritten or merged.
        let batches =
            Batches::start_with_payloads(plan.archive.clone(), options.decryption.clone(), {
                let write = options.write.clone();
                move |header| restore_rdb.filter(|_| !planner_needs_values(&write, header))
            });
        batches.visit(&mut applier).await?;
        applier.finish().await
    }
    .await;
    progress.finish();
    let outcome = applied.map_err(|cause| match &backup {
        Some(path) => Error::RestoreFailed {
            cause: Box::new(cause),
            rollback: rollback_command(path),
        },
        None => cause,
    })?;
    let mut report = outcome.into_report(plan.source, target.describe(), started);
    report.profile = plan.profile.take();
    report.dropped_field_expiries = plan.dropped_field_expiries;
    report.renames = plan.renames.take();
    report.names = std::mem::take(&mut plan.names);
    report.redaction_warning = plan.redaction_warning.take();
    report.backup = backup.as_ref().map(|p| p.display().to_string());
    report.rollback = backup.as_deref().map(rollback_command);
    Ok(report)
}

/// Connect to the target and read what writing needs: its features and clock.
pub(crate) async fn open_target(target: &Endpoint) -> Result<(Conn, TargetFeatures, i64)> {
    let mut conn = target.connect().await?;
    let mut features = TargetFeatures::of(&conn.server_info().await?);
    if features.restore_rdb.is_some() && !may_restore(&mut conn).await? {
        features.restore_rdb = None;
    }
    let now_ms = conn.time_ms().await?;
    Ok((conn, features, now_ms))
}

/// Whether this user may run RESTORE (an ACL can forbid it, a managed
/// service can rename it): asked with a payload the server refuses before
/// it writes anything. Without it, every key keeps its commands.
async fn may_restore(conn: &mut Conn) -> Result<bool> {
    let mut probe = redis::pipe();
    probe
        .cmd("RESTORE")
        .arg("archive:restore-probe")
        .arg(0)
        .arg("not a payload");
    let replies = conn.pipeline(&mut probe, "checking RESTORE").await?;
    Ok(match replies.first() {
        Some(Reply::ServerError(e)) => {
            e.details().is_some_and(|d| d.contains("payload")) || e.code() == "BUSYKEY"
        }
        _ => false,
    })
}

fn spool_if_stdin(
    source: &ArchiveSource,
) -> Result<(ArchiveSource, Option<tempfile::NamedTempFile>)> {
    match source {
        ArchiveSource::File(_) | ArchiveSource::Spooled(_) | ArchiveSource::Memory(_) => {
            Ok((source.clone(), None))
        }
        ArchiveSource::Stdin => {
            // tempfile creates the file 0600: the spool holds the data (still
            // encrypted, when the archive is).
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
pub fn decide(
    mode: Mode,
    ttl: TtlMode,
    key_type: KeyType,
    expiry: Option<Expiry>,
    now_ms: i64,
    exists: bool,
) -> Action {
    if ttl.is_expired(expiry, now_ms) {
        return Action::Expired;
    }
    if !exists {
        return Action::Create;
    }
    match mode {
        Mode::Skip => Action::Skip,
        Mode::Overwrite => Action::Overwrite,
        Mode::Merge if matches!(key_type, KeyType::String | KeyType::Dump | KeyType::Absent) => {
            Action::Skip
        }
        Mode::Merge => Action::Merge,
        Mode::Fail => Action::Conflict,
    }
}

/// Start a pipeline as a task, so the server works while the caller goes
/// on; its replies are collected by [`join`].
fn spawn_pipeline(conn: &Conn, mut pipes: Pipes, action: &'static str) -> Pending {
    let mut conn = conn.clone();
    tokio::spawn(async move { conn.pipeline_pipes(&mut pipes, action).await })
}

async fn join(task: Pending) -> Result<Vec<Reply>> {
    task.await
        .map_err(|e| Error::Internal(format!("a Redis task failed: {e}")))?
}

/// What perform does with a key, given the plan and whether it exists now.
enum Followed {
    Do(Action),
    /// Planned for creation, but it exists now: someone else made it.
    Appeared,
}

fn follow(planned: Action, exists: bool) -> Followed {
    match planned {
        Action::Create if exists => Followed::Appeared,
        // Gone since the plan: the backup holds its old state; create it.
        Action::Overwrite | Action::Merge if !exists => Followed::Do(Action::Create),
        other => Followed::Do(other),
    }
}

fn rename(remap: &Remap, record: &mut Record) {
    if !remap.is_empty()
        && let std::borrow::Cow::Owned(key) = remap.key(&record.key.0)
    {
        record.key = Bytes(key);
    }
}

/// Hash fields whose own expiry has passed are not written, as expired keys
/// are not (and the target may not be able to expire them).
fn drop_expired_fields(record: &mut Record, now_ms: i64) {
    if !record.field_expiry.iter().any(|e| e.at_ms <= now_ms) {
        return;
    }
    let Value::Hash(fields) = &mut record.value else {
        return;
    };
    let gone: HashSet<Vec<u8>> = record
        .field_expiry
        .iter()
        .filter(|e| e.at_ms <= now_ms)
        .map(|e| e.field.0.clone())
        .collect();
    fields.retain(|(f, _)| !gone.contains(&f.0));
    record.field_expiry.retain(|e| e.at_ms > now_ms);
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
        let h = KeyType::Hash;
        assert_eq!(
            decide(Mode::Skip, TtlMode::Absolute, h, past, 100, true),
            Action::Expired
        );
        assert_eq!(
            decide(Mode::Skip, TtlMode::Relative, h, past, 100, false),
            Action::Create
        );
        assert_eq!(
            decide(Mode::Skip, TtlMode::None, h, past, 100, true),
            Action::Skip
        );
        assert_eq!(
            decide(Mode::Overwrite, TtlMode::Absolute, h, future, 100, true),
            Action::Overwrite
        );
        assert_eq!(
            decide(Mode::Overwrite, TtlMode::Absolute, h, None, 100, false),
            Action::Create
        );
        assert_eq!(
            decide(Mode::Merge, TtlMode::Absolute, h, None, 100, true),
            Action::Merge
        );
        assert_eq!(
            decide(
                Mode::Merge,
                TtlMode::Absolute,
                KeyType::String,
                None,
                100,
                true
            ),
            Action::Skip,
            "strings are never merged"
        );
        assert_eq!(
            decide(Mode::Fail, TtlMode::Absolute, h, None, 100, true),
            Action::Conflict
        );
        assert_eq!(
            decide(Mode::Fail, TtlMode::Absolute, h, None, 100, false),
            Action::Create
        );
    }
}
