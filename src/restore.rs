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
//! The [`Planner`] and [`Applier`] are record visitors, so `copy` feeds them
//! from a live source instead of an archive. Standard input is spooled to a
//! private temp file first, because the archive has to be read twice.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::archive::manifest::RestoreLink;
use crate::archive::reader::{ArchiveSource, Location, Visitor, read_archive};
use crate::archive::{Decryption, Header, Manifest};
use crate::backup::Backup;
use crate::connection::{Conn, Endpoint, ServerInfo};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::journal::{FINGERPRINT_SCRIPT, Journal, journal_path};
use crate::load::{KeyCarry, Role, TargetFeatures, TtlMode, add_merge, add_record};
use crate::profile::Profile;
use crate::profile::rewrite::Rewriter;
use crate::progress::{Cancel, Progress};
use crate::record::{Bytes, Expiry, KeyType, Record, Value, printable};
use crate::remap::Remap;
use crate::report::{
    Action, ActionCounts, KeyError, MAX_ERROR_SAMPLES, ProfileRestore, RestoreReport,
};

/// What to do with a key that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
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
    pub mode: Mode,
    pub ttl: TtlMode,
    pub remap: Remap,
    /// Keys per EXISTS and write batch.
    pub batch_keys: usize,
    /// Bytes of values per write batch, to bound a batch of big records.
    pub batch_bytes: usize,
    /// The profile of a user archive: upgrades old records, and with
    /// `as_user` writes the user's records under another id.
    pub profile: Option<Arc<Profile>>,
    pub as_user: Option<String>,
    /// Write what the target can hold and drop the rest (counted), instead
    /// of refusing the restore.
    pub drop_unsupported: bool,
}

impl WriteOptions {
    /// What the records of the archive with `header` need on their way in
    /// (the same for the plan and the writes, so both see the same records).
    fn rewriter(&self, header: &Header, archive: &str) -> Result<Option<Rewriter>> {
        Rewriter::prepare(
            self.profile.as_ref(),
            header,
            self.as_user.as_deref(),
            archive,
        )
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: Mode::Skip,
            ttl: TtlMode::Absolute,
            remap: Remap::default(),
            batch_keys: 512,
            batch_bytes: 8 << 20,
            profile: None,
            as_user: None,
            drop_unsupported: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub source: ArchiveSource,
    /// The target; without an explicit database (URL or --db) the archive's
    /// source database is used.
    pub target: Endpoint,
    pub write: WriteOptions,
    pub cancel: Cancel,
    /// Identities or passphrase for an encrypted archive.
    pub decryption: Decryption,
    /// Where the pre-restore backup goes; `None` writes none (`--no-backup`).
    pub backup_dir: Option<PathBuf>,
}

impl RestoreOptions {
    pub fn new(source: ArchiveSource, target: Endpoint) -> Self {
        RestoreOptions {
            source,
            target,
            write: WriteOptions::default(),
            cancel: Cancel::new(),
            decryption: Decryption::none(),
            backup_dir: None,
        }
    }
}

/// A verified archive and what restoring it would do.
#[derive(Debug)]
pub struct Plan {
    pub source: String,
    /// The target, with its database resolved.
    pub target: Endpoint,
    pub manifest: Manifest,
    pub encrypted: bool,
    pub actions: ActionCounts,
    /// What the profile did to the records (user archives).
    pub profile: Option<ProfileRestore>,
    /// Hash field expiries the target cannot hold, dropped on request.
    pub dropped_field_expiries: u64,
    /// The decision for each key, in archive order: perform follows it.
    decisions: Vec<Action>,
    /// The pre-restore backup, complete but not yet in place: perform
    /// finishes it before its first write; a plan dropped unused leaves
    /// nothing behind.
    backup: Option<Backup>,
    /// The archive to read for perform (stdin spooled to a temp file).
    archive: ArchiveSource,
    _spool: Option<tempfile::NamedTempFile>,
}

impl Plan {
    /// The report of a dry run: the plan, nothing written.
    pub fn into_dry_run_report(self) -> RestoreReport {
        let mut report = RestoreReport::planned(self.source, self.target.display(), self.actions);
        report.profile = self.profile;
        report.dropped_field_expiries = self.dropped_field_expiries;
        report
    }

    pub fn header(&self) -> &Header {
        &self.manifest.header
    }

    /// Where the pre-restore backup will be, when there is one.
    pub fn backup_path(&self) -> Option<&Path> {
        self.backup.as_ref().map(|b| b.path.as_path())
    }
}

/// The command that undoes a restore whose backup is at `path`.
pub fn rollback_command(path: &Path) -> String {
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
    let handle = Handle::current();
    progress.start(None);
    // The visitor blocks on the runtime for its Redis calls, so the read
    // runs with this worker given over to blocking.
    let planned = tokio::task::block_in_place(|| {
        let mut planner = Planner::new(
            handle,
            options.target.clone(),
            options.write.clone(),
            options.cancel.clone(),
            progress,
        );
        if let Some(dir) = &options.backup_dir {
            planner = planner.with_backup(dir.clone(), options.source.display());
        }
        planner.archive = options.source.display();
        let verified = read_archive(&archive, &options.decryption, &mut planner)?;
        let planned = planner.finish()?;
        Ok::<_, Error>((verified, planned))
    });
    progress.finish();
    let (verified, planned) = planned?;
    Ok(Plan {
        source: options.source.display(),
        target: planned.target,
        manifest: verified.manifest,
        encrypted: verified.encrypted,
        actions: planned.actions,
        profile: planned.profile,
        dropped_field_expiries: planned.dropped_field_expiries,
        decisions: planned.decisions,
        backup: planned.backup,
        archive,
        _spool: spool,
    })
}

/// Carry out a plan made by [`plan`] with the same options.
pub async fn perform(
    mut plan: Plan,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = plan.target.clone();
    let (conn, features, now_ms) = open_target(&target).await?;
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
    let handle = Handle::current();
    progress.start(Some(plan.manifest.counts.keys));
    let decisions = std::mem::take(&mut plan.decisions);
    let applied = tokio::task::block_in_place(|| {
        let mut applier = Applier::new(
            handle,
            conn,
            features,
            now_ms,
            options.write.clone(),
            options.cancel.clone(),
            progress,
        )
        .following(decisions, journal);
        applier.archive = options.source.display();
        read_archive(&plan.archive, &options.decryption, &mut applier)?;
        applier.finish()
    });
    progress.finish();
    let outcome = applied.map_err(|cause| match &backup {
        Some(path) => Error::RestoreFailed {
            cause: Box::new(cause),
            rollback: rollback_command(path),
        },
        None => cause,
    })?;
    let mut report = outcome.into_report(plan.source, target.display(), started);
    report.profile = plan.profile.take();
    report.dropped_field_expiries = plan.dropped_field_expiries;
    report.backup = backup.as_ref().map(|p| p.display().to_string());
    report.rollback = backup.as_deref().map(rollback_command);
    Ok(report)
}

/// Connect to the target and read what writing needs: its features and clock.
pub(crate) async fn open_target(target: &Endpoint) -> Result<(Conn, TargetFeatures, i64)> {
    let mut conn = target.connect().await?;
    let features = TargetFeatures::of(&conn.server_info().await?);
    let now_ms = conn.time_ms().await?;
    Ok((conn, features, now_ms))
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

/// EXISTS for each key, pipelined.
/// EXISTS for each key, started on the runtime: its replies are read once
/// the next batch has been decoded.
fn send_exists<'k>(
    handle: &Handle,
    conn: &Conn,
    keys: impl IntoIterator<Item = &'k [u8]>,
) -> Pending {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("EXISTS").arg(key);
    }
    spawn_pipeline(handle, conn, pipe, "checking which keys exist")
}

/// The replies of [`send_exists`].
fn read_exists(handle: &Handle, conn: &Conn, task: Pending) -> Result<Vec<bool>> {
    let replies = join(handle, task)?;
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

/// Start a pipeline on the runtime; its replies are collected by [`join`].
fn spawn_pipeline(
    handle: &Handle,
    conn: &Conn,
    mut pipe: redis::Pipeline,
    action: &'static str,
) -> Pending {
    let mut conn = conn.clone();
    handle.spawn(async move { conn.pipeline(&mut pipe, action).await })
}

fn join(handle: &Handle, task: Pending) -> Result<Vec<Reply>> {
    handle
        .block_on(task)
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

/// SHA-1 of each key's DUMP, computed by the server (`None`: the key does
/// not exist). A server without scripting gives "unknown".
pub(crate) fn fingerprints(
    handle: &Handle,
    conn: &mut Conn,
    keys: &[&[u8]],
) -> Result<Vec<Option<String>>> {
    let mut pipe = redis::pipe();
    let groups = add_fingerprints(&mut pipe, keys, conn.is_cluster());
    let replies = handle.block_on(conn.pipeline(&mut pipe, "fingerprinting keys"))?;
    Ok(read_fingerprints(&groups, replies))
}

/// Add the script calls that fingerprint `keys`, a few keys per call: each
/// key is at most FINGERPRINT_MAX_BYTES, so no call holds the server long,
/// and the calls are few. In a cluster a call's keys share a slot (a script
/// may not touch keys of two slots). Returns the indexes of each call's keys.
fn add_fingerprints(pipe: &mut redis::Pipeline, keys: &[&[u8]], cluster: bool) -> Vec<Vec<usize>> {
    let groups: Vec<Vec<usize>> = if cluster {
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_slot
                .entry(crate::cluster::slot(key))
                .or_default()
                .push(i);
        }
        by_slot
            .into_values()
            .flat_map(|v| {
                v.chunks(FINGERPRINTS_PER_CALL)
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        (0..keys.len())
            .collect::<Vec<usize>>()
            .chunks(FINGERPRINTS_PER_CALL)
            .map(<[usize]>::to_vec)
            .collect()
    };
    for group in &groups {
        let call = pipe.cmd("EVAL").arg(FINGERPRINT_SCRIPT).arg(group.len());
        for &i in group {
            call.arg(keys[i]);
        }
    }
    groups
}

/// The fingerprints in the replies to [`add_fingerprints`]' calls, in the
/// order of the keys.
fn read_fingerprints(groups: &[Vec<usize>], replies: Vec<Reply>) -> Vec<Option<String>> {
    let mut out = vec![None; groups.iter().map(Vec::len).sum()];
    for (group, reply) in groups.iter().zip(replies) {
        match reply {
            Reply::Array(items) if items.len() == group.len() => {
                for (&i, r) in group.iter().zip(items) {
                    out[i] = match r {
                        Reply::Nil => None,
                        other => Some(
                            String::from_utf8_lossy(&crate::fetch::bytes_of(other)).into_owned(),
                        ),
                    };
                }
            }
            // No scripting (or no DUMP) on this server: not known.
            _ => {
                for &i in group {
                    out[i] = Some(UNKNOWN_FINGERPRINT.to_string());
                }
            }
        }
    }
    out
}

/// Keys fingerprinted per script call.
const FINGERPRINTS_PER_CALL: usize = 32;

/// Journaled when the server cannot fingerprint (no scripting).
pub const UNKNOWN_FINGERPRINT: &str = "unknown";

fn rename(remap: &Remap, record: &mut Record) {
    if !remap.is_empty()
        && let std::borrow::Cow::Owned(key) = remap.key(&record.key.0)
    {
        record.key = Bytes(key);
    }
}

/// A key waiting for EXISTS.
struct PendingKey {
    key: Vec<u8>,
    key_type: KeyType,
    expiry: Option<Expiry>,
    /// Its position in the plan's decisions.
    index: usize,
    /// A shared index of a user archive.
    shared: bool,
}

/// Works out the plan: connects when it knows the target database (at the
/// archive's header, or at once for copy), then EXISTS in batches.
pub struct Planner<'p> {
    handle: Handle,
    target: Endpoint,
    conn: Option<Conn>,
    write: WriteOptions,
    cancel: Cancel,
    now_ms: i64,
    /// Keys waiting for EXISTS, with their index in `decisions` and
    /// whether they are a shared index of a user archive.
    pending: Vec<PendingKey>,
    /// The previous batch, its EXISTS on the way.
    in_flight: Option<(Vec<PendingKey>, Pending)>,
    /// The archive, as named in messages.
    pub archive: String,
    rewriter: Option<Rewriter>,
    /// Shared keys of a user archive: their records are merged, whatever the mode.
    shared: HashSet<Vec<u8>>,
    profile: Option<ProfileRestore>,
    actions: ActionCounts,
    decisions: Vec<Action>,
    conflicts: Vec<String>,
    /// Where to put a pre-restore backup, and the archive it is for.
    backup_to: Option<(PathBuf, String)>,
    backup: Option<Backup>,
    progress: &'p dyn Progress,
    /// The key whose records are being read: its index in `decisions`,
    /// and whether it is expired.
    open_key: Option<(usize, bool)>,
    /// Keys whose parts turned out void, with their type.
    voided: Vec<(usize, KeyType)>,
    /// What the archive needs of the target, checked at the end.
    needs: Needs,
    /// The target's version, for what it can hold.
    server: Option<ServerInfo>,
}

/// What the archive holds that not every server can: hash field expiry,
/// DUMP payloads (their RDB version, their module types).
#[derive(Debug, Default)]
struct Needs {
    field_expiry_keys: u64,
    field_expiries: u64,
    field_expiry_example: Option<String>,
    last_field_expiry_key: Option<usize>,
    /// Per DUMP type name: the keys (their index in `decisions`), the
    /// newest RDB version among them, and one key to name.
    dumps: BTreeMap<String, (Vec<usize>, u16, String)>,
}

/// What planning produced.
#[derive(Debug)]
pub struct Planned {
    pub target: Endpoint,
    pub actions: ActionCounts,
    pub profile: Option<ProfileRestore>,
    pub dropped_field_expiries: u64,
    decisions: Vec<Action>,
    backup: Option<Backup>,
}

impl std::fmt::Debug for Planner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("target", &self.target)
            .finish()
    }
}

impl<'p> Planner<'p> {
    pub fn new(
        handle: Handle,
        target: Endpoint,
        write: WriteOptions,
        cancel: Cancel,
        progress: &'p dyn Progress,
    ) -> Self {
        Planner {
            handle,
            target,
            conn: None,
            write,
            cancel,
            now_ms: 0,
            pending: Vec::new(),
            in_flight: None,
            archive: "the archive".into(),
            rewriter: None,
            shared: HashSet::new(),
            profile: None,
            actions: ActionCounts::default(),
            decisions: Vec::new(),
            conflicts: Vec::new(),
            backup_to: None,
            backup: None,
            progress,
            open_key: None,
            voided: Vec::new(),
            needs: Needs::default(),
            server: None,
        }
    }

    /// Also save what the plan will change into a pre-restore backup in
    /// `dir`; `archive` names what is being restored.
    pub fn with_backup(mut self, dir: PathBuf, archive: String) -> Self {
        self.backup_to = Some((dir, archive));
        self
    }

    /// Connect to the target (read-only from here on) and read its clock.
    /// `archive_id` links the backup to the archive restored.
    pub fn connect(&mut self, archive_id: &str) -> Result<()> {
        let mut conn = self.handle.block_on(self.target.connect())?;
        // As connected: a cluster takes a default database as 0.
        self.target = conn.endpoint().clone();
        self.now_ms = self.handle.block_on(conn.time_ms())?;
        self.server = Some(self.handle.block_on(conn.server_info())?);
        if let Some((dir, archive)) = &self.backup_to {
            let link = RestoreLink {
                archive: archive.clone(),
                archive_id: archive_id.to_string(),
                mode: format!("{:?}", self.write.mode).to_lowercase(),
            };
            let backup = Backup::create(&self.handle, dir, &self.target, &mut conn, link)?;
            self.backup = Some(backup);
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// The target as resolved, the plan and the unfinished backup; with
    /// `--mode fail`, an error if any key exists.
    pub fn finish(mut self) -> Result<Planned> {
        self.flush()?;
        self.settle()?;
        for (index, t) in std::mem::take(&mut self.voided) {
            let planned = std::mem::replace(&mut self.decisions[index], Action::Void);
            self.actions.remove(t, planned);
        }
        let dropped_field_expiries = self.check_target()?;
        let conflicts = self.actions.total(Action::Conflict);
        if conflicts > 0 {
            return Err(Error::Conflict {
                target: self.target.display(),
                count: conflicts,
                keys: self.conflicts.join(", "),
            });
        }
        if let (Some(p), Some(r)) = (self.profile.as_mut(), &self.rewriter) {
            p.upgrade = r.upgrade_summary().cloned();
        }
        Ok(Planned {
            target: self.target,
            actions: self.actions,
            profile: self.profile,
            dropped_field_expiries,
            decisions: self.decisions,
            backup: self.backup,
        })
    }

    /// Refuse an archive the target cannot hold, naming what and why; with
    /// `drop_unsupported`, plan the keys it cannot load as unsupported and
    /// return how many field expiries will be dropped.
    fn check_target(&mut self) -> Result<u64> {
        let Some(server) = self.server.clone() else {
            return Ok(0);
        };
        let modules = if self.needs.dumps.is_empty() {
            None
        } else {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| Error::Internal("planning before connecting".into()))?;
            self.handle.block_on(loaded_modules(conn))
        };
        let target = format!(
            "{} ({} {})",
            self.target.display(),
            server.flavor,
            server.version
        );
        let mut problems = Vec::new();
        let mut dropped_field_expiries = 0;
        let needs = &self.needs;
        if needs.field_expiry_keys > 0
            && self.write.ttl != TtlMode::None
            && !TargetFeatures::of(&server).field_expiry
        {
            problems.push(format!(
                "{} hash(es) with {} field(s) that expire on their own (e.g. \"{}\"), which needs Redis 7.4+ or Valkey 9.0+",
                needs.field_expiry_keys,
                needs.field_expiries,
                needs.field_expiry_example.as_deref().unwrap_or_default()
            ));
            dropped_field_expiries = needs.field_expiries;
        }
        let mut unloadable = Vec::new();
        for (type_name, (keys, rdb, example)) in &needs.dumps {
            let why = match (server.rdb_version(), module_of(type_name), &modules) {
                (Some(readable), _, _) if *rdb > readable => Some(format!(
                    "DUMP payloads of RDB version {rdb}, newer than the {readable} it reads"
                )),
                (_, Some(module), Some(loaded))
                    if !loaded.iter().any(|m| m.eq_ignore_ascii_case(module)) =>
                {
                    Some(format!("module {module}, which it has not loaded"))
                }
                _ => None,
            };
            if let Some(why) = why {
                problems.push(format!(
                    "{} key(s) of type {type_name} (e.g. \"{example}\"), which need {why}",
                    keys.len()
                ));
                unloadable.push(type_name.clone());
            }
        }
        if problems.is_empty() {
            return Ok(0);
        }
        if !self.write.drop_unsupported {
            return Err(Error::TargetUnsupported {
                target,
                what: problems.join("; "),
            });
        }
        for type_name in unloadable {
            for &index in &self.needs.dumps[&type_name].0 {
                let planned = std::mem::replace(&mut self.decisions[index], Action::Unsupported);
                self.actions.remove(KeyType::Dump, planned);
                self.actions.add(KeyType::Dump, Action::Unsupported);
            }
        }
        Ok(dropped_field_expiries)
    }

    fn flush(&mut self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Interrupted(
                "stopped while planning; nothing was written".into(),
            ));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err(Error::Internal("planning before connecting".into()));
        };
        // This batch's EXISTS runs while the previous batch is decided (and
        // backed up) and the next one decoded.
        let keys = std::mem::take(&mut self.pending);
        let task = send_exists(&self.handle, conn, keys.iter().map(|k| &k.key[..]));
        self.settle()?;
        self.in_flight = Some((keys, task));
        Ok(())
    }

    /// Decide the batch whose EXISTS is in flight, if any.
    fn settle(&mut self) -> Result<()> {
        let Some((keys, task)) = self.in_flight.take() else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_ref() else {
            return Err(Error::Internal("planning before connecting".into()));
        };
        let exists = read_exists(&self.handle, conn, task)?;
        let planned = keys.len() as u64;
        let mut decided = Vec::with_capacity(keys.len());
        for (p, exists) in keys.into_iter().zip(exists) {
            let PendingKey {
                key,
                key_type: t,
                expiry,
                index,
                shared,
            } = p;
            let mut action = decide(
                self.write.mode,
                self.write.ttl,
                t,
                expiry,
                self.now_ms,
                exists,
            );
            // Other users' members of a shared index are never replaced.
            if shared && matches!(action, Action::Skip | Action::Overwrite | Action::Conflict) {
                action = Action::Merge;
            }
            if action == Action::Conflict && self.conflicts.len() < 10 {
                self.conflicts.push(printable(&key));
            }
            decided.push((key, t, action, index));
        }
        if let Some(backup) = self.backup.as_mut() {
            let writes =
                |a: &Action| matches!(a, Action::Create | Action::Overwrite | Action::Merge);
            let wanted: Vec<(&[u8], Action)> = decided
                .iter()
                .filter(|(_, _, a, _)| writes(a))
                .map(|(k, _, a, _)| (&k[..], *a))
                .collect();
            let gone = backup.save(&self.handle, &wanted)?;
            // A key that vanished between EXISTS and its backup gets created.
            let positions: Vec<usize> = decided
                .iter()
                .enumerate()
                .filter(|(_, (_, _, a, _))| writes(a))
                .map(|(i, _)| i)
                .collect();
            for g in gone {
                decided[positions[g]].2 = Action::Create;
            }
        }
        for (_, t, action, index) in decided {
            self.actions.add(t, action);
            self.decisions[index] = action;
        }
        self.progress.advance(planned);
        Ok(())
    }
}

impl Visitor for Planner<'_> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.target = self.target.or_db(header.source.address.db);
        self.rewriter = self.write.rewriter(header, &self.archive)?;
        if let Some(scope) = &header.profile {
            if scope.user.is_some() {
                self.shared = scope
                    .shared_keys
                    .iter()
                    .map(|k| k.as_bytes().to_vec())
                    .collect();
            }
            self.profile = Some(ProfileRestore {
                name: scope.name.clone(),
                user: scope.user.clone(),
                as_user: self.write.as_user.clone(),
                groups: scope.groups.clone(),
                upgrade: None,
            });
        }
        self.connect(&header.id)
    }

    fn record(&mut self, mut record: Record, _location: &Location) -> Result<()> {
        // Every part goes through the rewrite, so that a step that cannot
        // handle a split key fails here, before anything is written.
        if let Some(r) = self.rewriter.as_mut() {
            r.apply(&mut record)?;
        }
        if self.write.ttl == TtlMode::Absolute {
            drop_expired_fields(&mut record, self.now_ms);
        }
        if record.void {
            if let Some((index, _)) = self.open_key {
                self.voided.push((index, record.key_type()));
            }
            return Ok(());
        }
        if record.part == 0 {
            let expired = self.write.ttl.is_expired(record.expiry, self.now_ms);
            self.open_key = Some((self.decisions.len(), expired));
        }
        if let Some((index, false)) = self.open_key {
            self.needs.note(&record, index);
        }
        if record.part != 0 {
            return Ok(());
        }
        let index = self.decisions.len();
        if self.write.ttl.is_expired(record.expiry, self.now_ms) {
            self.actions.add(record.key_type(), Action::Expired);
            self.decisions.push(Action::Expired);
            return Ok(());
        }
        // Decided at the next flush.
        self.decisions.push(Action::Skip);
        let shared = self.shared.contains(&record.key.0);
        rename(&self.write.remap, &mut record);
        self.pending.push(PendingKey {
            key: record.key.0,
            key_type: record.value.key_type(),
            expiry: record.expiry,
            index,
            shared,
        });
        if self.pending.len() >= self.write.batch_keys {
            self.flush()?;
        }
        Ok(())
    }
}

impl Needs {
    fn note(&mut self, record: &Record, index: usize) {
        if !record.field_expiry.is_empty() {
            if self.last_field_expiry_key.replace(index) != Some(index) {
                self.field_expiry_keys += 1;
            }
            self.field_expiries += record.field_expiry.len() as u64;
            self.field_expiry_example
                .get_or_insert_with(|| printable(&record.key.0));
        }
        if let Value::Dump(dump) = &record.value {
            let entry = self
                .dumps
                .entry(dump.type_name.clone())
                .or_insert_with(|| (Vec::new(), 0, printable(&record.key.0)));
            entry.0.push(index);
            entry.1 = entry.1.max(dump.rdb_version);
        }
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

/// The module that provides a type kept as a DUMP payload, for the types
/// of the modules in common use (`TYPE` names the type, `MODULE LIST`
/// names the module). For other types the plan cannot tell whether the
/// target loads them: `RESTORE` decides, and a refusal fails that key.
fn module_of(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "ReJSON-RL" => "ReJSON",
        "MBbloom--" | "MBbloomCF" | "CMSk-TYPE" | "TopK-TYPE" | "TDIS-TYPE" => "bf",
        "TSDB-TYPE" => "timeseries",
        "vectorset" => "vectorset",
        "graphdata" => "graph",
        _ => return None,
    })
}

/// The names of the modules the server has loaded; `None` when it will not
/// say (an ACL without MODULE LIST), which is taken as "could be any".
async fn loaded_modules(conn: &mut Conn) -> Option<Vec<String>> {
    let reply: Reply = conn
        .query(redis::cmd("MODULE").arg("LIST"), "reading MODULE LIST")
        .await
        .ok()?;
    let mut names = Vec::new();
    for module in crate::fetch::array_of(reply) {
        let mut fields = crate::fetch::array_of(module).into_iter();
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            if crate::fetch::bytes_of(k) == b"name" {
                names.push(String::from_utf8_lossy(&crate::fetch::bytes_of(v)).into_owned());
            }
        }
    }
    Some(names)
}

/// What writing did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: ActionCounts,
    pub written: u64,
    pub added: u64,
    /// Keys planned for creation that appeared in the target before they
    /// were written: left alone, since the backup does not hold them.
    pub appeared: u64,
    pub errors: u64,
    pub errors_by_type: BTreeMap<KeyType, u64>,
    pub error_samples: Vec<KeyError>,
    /// Cluster redirections followed (see [`Conn::redirects`]).
    pub redirects: u64,
    /// Pending entries of consumer groups not restored: their message is
    /// not in the stream.
    pub pending_not_restored: u64,
}

impl Outcome {
    pub fn into_report(self, source: String, target: String, started: Instant) -> RestoreReport {
        RestoreReport {
            source,
            target,
            dry_run: false,
            plan: self.done,
            written: self.written,
            added: self.added,
            appeared: self.appeared,
            errors: self.errors,
            errors_by_type: self.errors_by_type,
            error_samples: self.error_samples,
            seconds: started.elapsed().as_secs_f64(),
            backup: None,
            rollback: None,
            profile: None,
            dropped_field_expiries: 0,
            redirects: self.redirects,
            pending_not_restored: self.pending_not_restored,
        }
    }

    fn fail(&mut self, key: &[u8], t: KeyType, reason: String) {
        self.errors += 1;
        *self.errors_by_type.entry(t).or_default() += 1;
        if self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(KeyError::new(key, reason));
        }
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
}

/// Keys bigger than this are journaled as "unknown" instead of being
/// fingerprinted: DUMP and SHA-1 of a big key in one script would block the
/// server for as long as they take.
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

/// A pipeline running on the runtime.
type Pending = tokio::task::JoinHandle<Result<Vec<Reply>>>;

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
    batch: Vec<Record>,
    task: Pending,
    roles: Vec<Role>,
    /// The key (seq) each command belongs to.
    owners: Vec<u64>,
    finished: Vec<FinishedKey>,
    /// Keys already failed before sending (--mode fail conflicts).
    failures: BTreeMap<u64, String>,
    /// Keys created or replaced (seq -> a record index): a failure deletes them.
    replaced: BTreeMap<u64, usize>,
    /// Keys per fingerprint call at the end of the pipeline.
    fingerprint_groups: Vec<Vec<usize>>,
}

/// Writes records in pipelined batches.
pub struct Applier<'p> {
    handle: Handle,
    conn: Conn,
    features: TargetFeatures,
    write: WriteOptions,
    cancel: Cancel,
    now_ms: i64,
    batch: Vec<Record>,
    batch_bytes: usize,
    in_flight: Option<InFlight>,
    current: Option<Current>,
    outcome: Outcome,
    /// The plan's decision per key, followed in order (restore); without
    /// it each key is decided on the spot.
    planned: Option<std::vec::IntoIter<Action>>,
    journal: Option<Journal>,
    progress: &'p dyn Progress,
    /// The archive, as named in messages.
    pub archive: String,
    rewriter: Option<Rewriter>,
}

impl std::fmt::Debug for Applier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").field("conn", &self.conn).finish()
    }
}

impl Visitor for Applier<'_> {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.rewriter = self.write.rewriter(header, &self.archive)?;
        Ok(())
    }

    fn record(&mut self, mut record: Record, _location: &Location) -> Result<()> {
        if let Some(r) = self.rewriter.as_mut() {
            r.apply(&mut record)?;
        }
        rename(&self.write.remap, &mut record);
        if self.write.ttl == TtlMode::Absolute {
            drop_expired_fields(&mut record, self.now_ms);
        }
        self.batch_bytes += record.value.approx_bytes();
        self.batch.push(record);
        if self.batch.len() >= self.write.batch_keys || self.batch_bytes >= self.write.batch_bytes {
            self.flush()?;
        }
        Ok(())
    }
}

impl<'p> Applier<'p> {
    pub fn new(
        handle: Handle,
        conn: Conn,
        features: TargetFeatures,
        now_ms: i64,
        write: WriteOptions,
        cancel: Cancel,
        progress: &'p dyn Progress,
    ) -> Self {
        Applier {
            handle,
            conn,
            features,
            write,
            cancel,
            now_ms,
            batch: Vec::new(),
            batch_bytes: 0,
            in_flight: None,
            current: None,
            outcome: Outcome::default(),
            planned: None,
            journal: None,
            progress,
            archive: "the archive".into(),
            rewriter: None,
        }
    }

    /// Follow a plan's decisions, and journal every key before writing it.
    pub fn following(mut self, decisions: Vec<Action>, journal: Option<Journal>) -> Self {
        self.planned = Some(decisions.into_iter());
        self.journal = journal;
        self
    }

    pub fn finish(mut self) -> Result<Outcome> {
        self.flush()?;
        self.settle()?;
        if let Some(journal) = self.journal.as_mut() {
            journal.finish()?;
        }
        self.outcome.redirects = self.conn.redirects();
        Ok(self.outcome)
    }

    /// Send a batch's writes and return while the server runs them, so the
    /// next batch is read and decoded meanwhile (both cores work). Before
    /// they are sent, the previous batch is settled: its replies counted,
    /// its failed keys removed, its outcome journaled. Batches touch
    /// distinct keys, and the next batch's EXISTS goes out behind this
    /// batch's writes on the same connection, so it sees them done.
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.cancel.is_cancelled() {
            self.settle()?;
            return Err(Error::Interrupted(format!(
                "stopped after {} keys were written; run the same command again to complete it",
                self.outcome.written
            )));
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (mode, ttl, now_ms) = (self.write.mode, self.write.ttl, self.now_ms);

        let firsts = batch.iter().filter(|r| r.part == 0).map(|r| &r.key.0[..]);
        let exists_task = send_exists(&self.handle, &self.conn, firsts);
        self.settle()?;
        let mut exists = read_exists(&self.handle, &self.conn, exists_task)?.into_iter();

        // One pipeline; each command remembers its key and what its reply means.
        let mut pipe = redis::pipe();
        let mut roles: Vec<Role> = Vec::new();
        let mut owners: Vec<u64> = Vec::new();
        let mut finished: Vec<FinishedKey> = Vec::new();
        let mut failures: BTreeMap<u64, String> = BTreeMap::new();
        // Keys this batch created or replaced: the only ones a failure may delete.
        let mut replaced: BTreeMap<u64, usize> = BTreeMap::new();
        let mut touching: Vec<&[u8]> = Vec::new();
        let mut next_seq = self.current.as_ref().map_or(0, |c| c.seq + 1);
        for (index, record) in batch.iter().enumerate() {
            if record.part == 0 {
                let exists = exists.next().unwrap_or(false);
                let action = match self.planned.as_mut() {
                    Some(plan) => {
                        let planned = plan.next().ok_or_else(|| {
                            Error::Internal("the archive has more keys than the plan".into())
                        })?;
                        follow(planned, exists)
                    }
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
                if touched {
                    touching.push(&record.key.0);
                }
                self.current = Some(Current {
                    seq: next_seq,
                    key_type: record.key_type(),
                    action,
                    carry: KeyCarry::default(),
                    failed,
                    touched,
                    small: !record.more && record.value.approx_bytes() <= FINGERPRINT_MAX_BYTES,
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
                        add_record(
                            &mut pipe,
                            record,
                            ttl,
                            &self.features,
                            &mut current.carry,
                            &mut roles,
                            current.action == Action::Create,
                        );
                        replaced.insert(current.seq, index);
                    }
                    Action::Merge => add_merge(
                        &mut pipe,
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
                let journal = match (current.touched, current.small) {
                    (false, _) => JournalEntry::Nothing,
                    (true, true) => JournalEntry::Fingerprint,
                    (true, false) => JournalEntry::Unknown,
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
        let fingerprint_groups = if self.journal.is_some() {
            let small: Vec<&[u8]> = finished
                .iter()
                .filter(|f| f.journal == JournalEntry::Fingerprint)
                .map(|f| &batch[f.index].key.0[..])
                .collect();
            add_fingerprints(&mut pipe, &small, self.conn.is_cluster())
        } else {
            Vec::new()
        };

        // Durably name the keys about to change before changing them.
        if let Some(journal) = self.journal.as_mut() {
            journal.touch(&touching)?;
        }
        failpoint::hit("restore.batch");
        let task = spawn_pipeline(&self.handle, &self.conn, pipe, "writing keys");
        self.in_flight = Some(InFlight {
            batch,
            task,
            roles,
            owners,
            finished,
            failures,
            replaced,
            fingerprint_groups,
        });
        Ok(())
    }

    /// Wait for the batch in flight, if any, and account for it.
    fn settle(&mut self) -> Result<()> {
        let Some(InFlight {
            batch,
            task,
            roles,
            owners,
            finished,
            mut failures,
            replaced,
            fingerprint_groups,
        }) = self.in_flight.take()
        else {
            return Ok(());
        };
        let mut replies = join(&self.handle, task)?;
        failpoint::hit("restore.written");
        let measured = read_fingerprints(&fingerprint_groups, replies.split_off(roles.len()));
        for ((seq, role), reply) in owners.iter().zip(&roles).zip(replies) {
            match (role, reply) {
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
                cleanup.cmd("DEL").arg(&batch[index].key.0[..]);
            }
        }
        self.handle.block_on(
            self.conn
                .pipeline(&mut cleanup, "removing half-written keys"),
        )?;
        // A key split across batches keeps its failure until its last record.
        if let Some(current) = self.current.as_mut()
            && current.failed.is_none()
            && let Some(reason) = failures.get(&current.seq)
        {
            current.failed = Some(reason.clone());
        }
        self.journal_outcomes(&batch, &finished, &failures, &replaced, measured)?;

        for f in &finished {
            let key = &batch[f.index].key.0;
            let carried = self
                .current
                .as_ref()
                .filter(|c| c.seq == f.seq)
                .and_then(|c| c.failed.clone());
            match failures.get(&f.seq).cloned().or(carried) {
                Some(reason) => self.outcome.fail(key, f.key_type, reason),
                None if f.action == Action::Void => {}
                None => {
                    self.outcome.done.add(f.key_type, f.action);
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
    /// failed and were removed, which it left absent.
    fn journal_outcomes(
        &mut self,
        batch: &[Record],
        finished: &[FinishedKey],
        failures: &BTreeMap<u64, String>,
        replaced: &BTreeMap<u64, usize>,
        measured: Vec<Option<String>>,
    ) -> Result<()> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        let mut measured = measured.into_iter();
        let mut entries = Vec::new();
        for f in finished {
            let key = batch[f.index].key.0.clone();
            let removed = failures.contains_key(&f.seq) && replaced.contains_key(&f.seq);
            let after = match f.journal {
                JournalEntry::Nothing => continue,
                JournalEntry::Fingerprint => measured.next().flatten(),
                JournalEntry::Unknown => Some(UNKNOWN_FINGERPRINT.to_string()),
            };
            entries.push((key, if removed { None } else { after }));
        }
        journal.after(entries)
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
