//! `archive upgrade`: a profile's schema upgrade applied to the records of
//! the live database, in place.
//!
//! The alternative, export and `restore --mode overwrite`, rewrites every
//! record and overwrites whatever the application wrote in between. Here
//! each record is read (type, value and the SHA-1 of its DUMP, in one
//! script, so the three agree), upgraded in memory, and written back only
//! when a step changed it, by a script that first checks the key's DUMP
//! still has that SHA-1. A record changed meanwhile is left as it is, read
//! again and upgraded again (a few times, then reported as failed), so a
//! concurrent write is never lost; a current record is never written.
//!
//! The keys are listed first (a user's through the profile's selection, or
//! every key of the groups with SCAN). A first pass reads them in batches,
//! counts them and saves every legacy record in a pre-upgrade backup (the
//! same machinery as a restore's), which is finished, fsynced and renamed,
//! before anything is written: an upgrade killed at any point leaves a
//! backup that `archive rollback` can use. The second pass reads the legacy
//! records again and writes them, each batch named in the backup's journal
//! first, with the fingerprint each write left recorded after it (taken by
//! the write script itself, so a later write by the application is not
//! mistaken for the upgrade's). A record changed since its backup is not
//! in the backup as it is now: it is journaled as left alone and upgraded
//! by a retry that is not journaled, so rollback never reverts the
//! application's write (that record stays upgraded).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::archive::manifest::RestoreLink;
use crate::connection::{Conn, Endpoint};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fetch::{ChunkSizes, Fetcher};
use crate::keyspace::glob_match;
use crate::profile::Profile;
use crate::profile::rewrite::classify;
use crate::profile::select::{ProfileExport, UserWalk};
use crate::profile::upgrade::{Applied, BrokenRecord, StepCount, UpgradeSummary, Upgrader};
use crate::progress::{Cancel, Progress};
use crate::record::{Bytes, KeyType, Record, Value, printable};
use crate::report::Action;
use crate::restore::backup::PreRestoreBackup;
use crate::restore::journal::{Journal, LEFT_ALONE_FINGERPRINT, journal_path};
use crate::restore::members::SharedMembers;
use crate::restore::rollback_command;
use crate::samples::Samples;

/// Called with a batch's keys after they are read (again) for writing,
/// before they are written: where a test changes a record under the
/// upgrade.
pub type BetweenReadAndWrite = Arc<dyn Fn(&[Vec<u8>]) + Send + Sync>;

/// What to upgrade, and how.
#[derive(Clone)]
pub struct UpgradeOptions {
    /// The database.
    pub target: Endpoint,
    /// The profile whose upgrade steps apply.
    pub profile: Arc<Profile>,
    /// One user's records (through the profile's selection); `None`: every
    /// record of the groups.
    pub user: Option<String>,
    /// Group names (`--types`); empty means all.
    pub groups: Vec<String>,
    /// Count and list broken records and go on (else stop at the first).
    pub skip_errors: bool,
    /// Where the pre-upgrade backup goes; `None` writes none.
    pub backup_dir: Option<PathBuf>,
    /// Records read and written per round trip.
    pub batch_keys: usize,
    /// How many times a record changed meanwhile is read again.
    pub retries: u32,
    /// Stops between batches.
    pub cancel: Cancel,
    /// See [`BetweenReadAndWrite`].
    pub between_read_and_write: Option<BetweenReadAndWrite>,
    /// Called with a batch's keys once they are written, before the
    /// journal records what the writes left: where a test changes a record
    /// just after the upgrade.
    pub after_write: Option<BetweenReadAndWrite>,
}

impl std::fmt::Debug for UpgradeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeOptions")
            .field("target", &self.target.display())
            .field("profile", &self.profile.name)
            .field("user", &self.user)
            .finish()
    }
}

impl UpgradeOptions {
    /// Every record of every group of `profile` in `target`.
    pub fn new(target: Endpoint, profile: Arc<Profile>) -> Self {
        UpgradeOptions {
            target,
            profile,
            user: None,
            groups: Vec::new(),
            skip_errors: false,
            backup_dir: None,
            batch_keys: 256,
            retries: 5,
            cancel: Cancel::default(),
            between_read_and_write: None,
            after_write: None,
        }
    }
}

/// One group's records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupUpgrade {
    /// The group.
    pub group: String,
    /// Records looked at, legacy (`changed`), current and broken, per step.
    #[serde(flatten)]
    pub upgrade: UpgradeSummary,
    /// Records written (0 for statistics and dry runs).
    pub written: u64,
    /// Legacy records not written: still changing after every retry, or
    /// broken since they were first read.
    #[serde(default)]
    pub failed: u64,
}

/// What `archive upgrade` found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The database, without credentials.
    pub target: String,
    /// The profile's name.
    pub profile: String,
    /// The user, when one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// True when nothing was written (`--stats`, `--dry-run`).
    pub dry_run: bool,
    /// The lowest data schema version the steps start from.
    pub from: u64,
    /// The profile's data schema version.
    pub to: u64,
    /// Per group.
    pub groups: Vec<GroupUpgrade>,
    /// Per step, over all groups: records it changes (or changed).
    pub steps: Vec<StepCount>,
    /// Records looked at.
    pub records: u64,
    /// Records a step changes (legacy ones).
    pub legacy: u64,
    /// Records no step changes.
    pub current: u64,
    /// Records written.
    pub written: u64,
    /// Records the steps cannot apply to.
    pub broken: u64,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_records: Vec<BrokenRecord>,
    /// Records found changed between their read and their write, read again.
    pub retried: u64,
    /// Legacy records not written: still changing after every retry, or
    /// broken since their first read.
    pub failed: u64,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_keys: Vec<String>,
    /// The first legacy records (what a dry run would write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_keys: Vec<String>,
    /// The pre-upgrade backup, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The command that undoes this upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// How long it took.
    pub seconds: f64,
}

impl UpgradeReport {
    /// The error an upgrade without `--skip-errors` stops with: the first
    /// broken record.
    pub fn first_broken(&self) -> Option<Error> {
        self.broken_records.first().map(|b| Error::BrokenRecord {
            group: self
                .groups
                .iter()
                .find(|g| g.upgrade.broken_records.iter().any(|r| r.key == b.key))
                .map(|g| g.group.clone())
                .unwrap_or_default(),
            key: b.key.clone(),
            reason: b.reason.clone(),
        })
    }

    /// Some records were not upgraded (broken with `--skip-errors`, or
    /// changing under every retry).
    pub fn is_partial(&self) -> bool {
        !self.dry_run && (self.failed > 0 || self.broken > 0)
    }
}

/// Count what an upgrade would do, writing nothing (`--stats`, `--dry-run`);
/// broken records are counted and listed, whatever `skip_errors`.
pub async fn plan(options: &UpgradeOptions, progress: &dyn Progress) -> Result<UpgradeReport> {
    Run::start(options, false).await?.go(progress).await
}

/// Upgrade the records, writing only those a step changes.
pub async fn perform(options: &UpgradeOptions, progress: &dyn Progress) -> Result<UpgradeReport> {
    let dirs: Vec<PathBuf> = options.backup_dir.iter().cloned().collect();
    let result = Run::start(options, true).await?.go(progress).await;
    crate::folder::audit::record(&dirs, "upgrade", result, |r| r.is_partial())
}

/// Reads a key's type, value and the SHA-1 of its DUMP at one instant.
const READ: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'hash' then
  return {t, redis.call('HGETALL', KEYS[1]), redis.sha1hex(redis.call('DUMP', KEYS[1]))}
elseif t == 'string' then
  return {t, redis.call('GET', KEYS[1]), redis.sha1hex(redis.call('DUMP', KEYS[1]))}
end
return {t}
"#;

/// Writes an upgraded record only if the key is still what was read:
/// ARGV[1] the SHA-1 read; a string's new value, or a hash's fields to
/// delete (counted) then fields to set. Returns 0 when not written, else
/// the SHA-1 of the DUMP it left (the journal's after-fingerprint).
const WRITE: &str = r#"
local d = redis.call('DUMP', KEYS[1])
if not d or redis.sha1hex(d) ~= ARGV[1] then return 0 end
if ARGV[2] == 'string' then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return redis.sha1hex(redis.call('DUMP', KEYS[1]))
end
local n = tonumber(ARGV[3])
for i = 4, 3 + n do redis.call('HDEL', KEYS[1], ARGV[i]) end
for i = 4 + n, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.sha1hex(redis.call('DUMP', KEYS[1]))
"#;

/// A record as read: its group, value and fingerprint.
struct Read {
    key: Vec<u8>,
    group: usize,
    old: Value,
    fingerprint: String,
}

struct Run<'o> {
    options: &'o UpgradeOptions,
    conn: Conn,
    write: bool,
    /// Per selected group (index in the profile): its upgrader, records
    /// written and records failed.
    upgraders: BTreeMap<usize, (Upgrader, u64, u64)>,
    from: u64,
    legacy: Samples<String>,
    failed: Samples<String>,
    broken: Samples<BrokenRecord>,
    retried: u64,
    backup: Option<PreRestoreBackup>,
    journal: Option<Journal>,
    backup_path: Option<PathBuf>,
}

impl<'o> Run<'o> {
    async fn start(options: &'o UpgradeOptions, write: bool) -> Result<Run<'o>> {
        let profile = &options.profile;
        let from = profile
            .upgrades
            .iter()
            .map(|u| u.from)
            .min()
            .ok_or_else(|| {
                Error::Profile(format!(
                    "profile {:?} has no [[upgrade]] steps; nothing to upgrade",
                    profile.name
                ))
            })?;
        let selection = ProfileExport {
            profile: profile.clone(),
            user: options.user.clone(),
            groups: options.groups.clone(),
        };
        let mut upgraders = BTreeMap::new();
        // One instant for every record a `now` default writes in this run.
        let now = chrono::Utc::now();
        for g in selection.groups()? {
            let i = profile
                .groups
                .iter()
                .position(|p| p.name == g.name)
                .expect("a selected group is the profile's");
            if g.shared.is_some() || g.shared_hash.is_some() {
                // Other users' members and fields: never rewritten by one
                // user's upgrade.
                continue;
            }
            let upgrader = Upgrader::new(&profile.upgrades, from, profile.schema_version)?
                .ok_or_else(|| Error::Internal("upgrades up to the profile's version".into()))?
                .with_now(now);
            upgraders.insert(i, (upgrader, 0, 0));
        }
        let conn = options.target.connect().await?;
        Ok(Run {
            options,
            conn,
            write,
            upgraders,
            from,
            legacy: Samples::default(),
            failed: Samples::default(),
            broken: Samples::default(),
            retried: 0,
            backup: None,
            journal: None,
            backup_path: None,
        })
    }

    async fn go(mut self, progress: &dyn Progress) -> Result<UpgradeReport> {
        let started = Instant::now();
        let keys = self.keys().await?;
        progress.start(Some(keys.len() as u64));
        let result = self.upgrade_all(keys, progress).await;
        progress.finish();
        // A backup not finished when the run stopped covers nothing that
        // was written: only the first pass had run.
        self.backup = None;
        if let Some(j) = self.journal.as_mut() {
            j.finish()?;
        }
        let backup = self.backup_path.clone();
        if let Err(cause) = result {
            return Err(match &backup {
                Some(path) => Error::RestoreFailed {
                    cause: Box::new(cause),
                    rollback: rollback_command(path),
                },
                None => cause,
            });
        }
        Ok(self.report(backup.as_deref(), started))
    }

    /// The keys to look at, each with its group.
    async fn keys(&mut self) -> Result<Vec<(Vec<u8>, usize)>> {
        let profile = self.options.profile.clone();
        let user = self.options.user.as_deref();
        let found = match user {
            Some(user) => self.user_keys(user).await?,
            None => self.scanned_keys().await?,
        };
        Ok(found
            .into_iter()
            .filter_map(|key| {
                let (group, _) = classify(&profile, &key, user.map(str::as_bytes))?;
                self.upgraders.contains_key(&group).then_some((key, group))
            })
            .collect())
    }

    /// A user's keys, found as `export USER_ID` finds them.
    async fn user_keys(&mut self, user: &str) -> Result<Vec<Vec<u8>>> {
        let selection = ProfileExport {
            profile: self.options.profile.clone(),
            user: Some(user.to_string()),
            groups: self.options.groups.clone(),
        };
        let groups = selection.groups()?;
        let (tx, mut rx) = crate::fetch::channel(256);
        let mut fetcher = Fetcher::new(self.conn.clone(), ChunkSizes::default(), tx);
        let mut conn = self.conn.clone();
        let cancel = self.options.cancel.clone();
        let walk = async {
            let quiet = crate::progress::Silent;
            let mut walk = UserWalk::new(&mut conn, &mut fetcher, 1000, &cancel, &quiet);
            let r = walk.run(user, &groups).await;
            drop(walk);
            fetcher.sending_to(mpsc::channel(1).0);
            r
        };
        let drain = async {
            let mut keys = Vec::new();
            while let Some(record) = rx.recv().await {
                if record.part == 0 && !record.void {
                    keys.push(record.key.0);
                }
            }
            keys
        };
        let (walked, mut keys) = tokio::join!(walk, drain);
        if !walked? {
            return Err(Error::Interrupted("stopped; nothing was written".into()));
        }
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        Ok(keys)
    }

    /// Every key of the groups: SCAN MATCH each pattern on each primary; a
    /// key an earlier pattern matches is taken there.
    async fn scanned_keys(&mut self) -> Result<Vec<Vec<u8>>> {
        let selection = ProfileExport {
            profile: self.options.profile.clone(),
            user: None,
            groups: self.options.groups.clone(),
        }
        .selection()?;
        let patterns = selection.include;
        let mut keys = Vec::new();
        for mut shard in self.conn.shards().await? {
            for (i, pattern) in patterns.iter().enumerate() {
                let mut cursor = 0u64;
                loop {
                    if self.options.cancel.is_cancelled() {
                        return Err(Error::Interrupted("stopped; nothing was written".into()));
                    }
                    let (next, page): (u64, Vec<Vec<u8>>) = shard
                        .query(
                            redis::cmd("SCAN")
                                .arg(cursor)
                                .arg("MATCH")
                                .arg(pattern)
                                .arg("COUNT")
                                .arg(1000),
                            "scanning the groups' keys",
                        )
                        .await?;
                    keys.extend(
                        page.into_iter()
                            .filter(|k| !patterns[..i].iter().any(|p| glob_match(p.as_bytes(), k))),
                    );
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        Ok(keys)
    }

    /// Two passes. The first reads every record, counts it and saves the
    /// legacy ones into the pre-upgrade backup, which is finished (fsynced,
    /// renamed) before anything is written: a run killed at any point
    /// leaves a backup that `rollback` can use. Only each legacy record's
    /// fingerprint is kept, not its value. The second pass reads the legacy
    /// records again and writes those still as they were backed up.
    async fn upgrade_all(
        &mut self,
        keys: Vec<(Vec<u8>, usize)>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let size = self.options.batch_keys.max(1);
        let mut legacy: Vec<(Vec<u8>, usize, String)> = Vec::new();
        for batch in keys.chunks(size) {
            if self.options.cancel.is_cancelled() {
                return Err(Error::Interrupted("stopped; nothing was written".into()));
            }
            let reads = self.read(batch).await?;
            let changed = self.compute(reads, true)?;
            if self.write {
                self.save(&changed).await?;
            }
            let found = if self.write { changed.len() } else { 0 };
            legacy.extend(
                changed
                    .into_iter()
                    .map(|(r, _)| (r.key, r.group, r.fingerprint)),
            );
            progress.advance((batch.len() - found) as u64);
        }
        if !self.write {
            return Ok(());
        }
        self.finish_backup()?;
        failpoint::hit("upgrade.backup-done");
        for batch in legacy.chunks(size) {
            if self.options.cancel.is_cancelled() {
                return Err(Error::Interrupted(
                    "stopped between batches; the batches before were written".into(),
                ));
            }
            let todo: Vec<(Vec<u8>, usize)> =
                batch.iter().map(|(k, g, _)| (k.clone(), *g)).collect();
            let backed_up: HashMap<&[u8], &str> =
                batch.iter().map(|(k, _, f)| (&k[..], f.as_str())).collect();
            // A record changed since it was backed up is not in the backup
            // as it is now: it is read again below, like one changed
            // between a read and its write.
            let (same, _): (Vec<Read>, Vec<Read>) = self
                .read(&todo)
                .await?
                .into_iter()
                .partition(|r| backed_up.get(&r.key[..]) == Some(&r.fingerprint.as_str()));
            let unchanged: HashSet<Vec<u8>> = same.iter().map(|r| r.key.clone()).collect();
            let changed = self.compute(same, false)?;
            let mut lost = self.write_batch(changed, true).await?;
            lost.extend(todo.into_iter().filter(|(k, _)| !unchanged.contains(k)));
            failpoint::hit("upgrade.batch");
            let mut attempt = 0;
            while !lost.is_empty() {
                if attempt >= self.options.retries {
                    for (key, group) in lost {
                        self.fail(&key, group);
                    }
                    break;
                }
                attempt += 1;
                self.retried += lost.len() as u64;
                let reads = self.read(&lost).await?;
                let changed = self.compute(reads, false)?;
                lost = self.write_batch(changed, false).await?;
            }
            progress.advance(batch.len() as u64);
        }
        Ok(())
    }

    /// A legacy record given up: counted for its group and listed.
    fn fail(&mut self, key: &[u8], group: usize) {
        self.upgraders.get_mut(&group).expect("selected").2 += 1;
        self.failed.add(printable(key));
    }

    /// Finish the pre-upgrade backup (the journal stays open for the
    /// writes).
    fn finish_backup(&mut self) -> Result<()> {
        if let Some(b) = self.backup.take() {
            if let Some(j) = self.journal.as_mut() {
                j.finish()?;
            }
            let path = b.finish()?;
            self.journal = Some(Journal::create(journal_path(&path))?);
            self.backup_path = Some(path);
        }
        Ok(())
    }

    /// Each key's type, value and fingerprint, in one script per key.
    async fn read(&mut self, keys: &[(Vec<u8>, usize)]) -> Result<Vec<Read>> {
        let mut pipe = redis::pipe();
        for (key, _) in keys {
            pipe.cmd("EVAL").arg(READ).arg(1).arg(key);
        }
        let replies = self.conn.pipeline(&mut pipe, "reading records").await?;
        let mut out = Vec::new();
        for ((key, group), reply) in keys.iter().zip(replies) {
            if let Reply::ServerError(e) = &reply {
                // A record not read is not counted and not upgraded: never
                // pass it over in silence.
                return Err(Error::Redis {
                    endpoint: self.options.target.display(),
                    action: "reading records to upgrade".into(),
                    reason: format!(
                        "key {}: {e}; the user needs EVAL, TYPE, HGETALL, GET and DUMP on the profile's keys (and the server must not be busy)",
                        printable(key)
                    ),
                });
            }
            let mut parts = crate::reply::array_of(reply).into_iter();
            let kind = parts.next().map(crate::reply::bytes_of).unwrap_or_default();
            let (Some(value), Some(sum)) = (parts.next(), parts.next()) else {
                continue; // gone, or a type no step applies to
            };
            let old = if kind == b"hash" {
                let mut flat = crate::reply::array_of(value).into_iter();
                let mut pairs = Vec::new();
                while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                    pairs.push((
                        Bytes(crate::reply::bytes_of(f)),
                        Bytes(crate::reply::bytes_of(v)),
                    ));
                }
                Value::Hash(pairs)
            } else {
                Value::String(Bytes(crate::reply::bytes_of(value)))
            };
            out.push(Read {
                key: key.clone(),
                group: *group,
                old,
                fingerprint: String::from_utf8_lossy(&crate::reply::bytes_of(sum)).into_owned(),
            });
        }
        Ok(out)
    }

    /// Upgrade each record in memory, counting it on its first read; the
    /// records a step changed, with their new value.
    fn compute(&mut self, reads: Vec<Read>, first: bool) -> Result<Vec<(Read, Value)>> {
        let profile = self.options.profile.clone();
        let mut changed = Vec::new();
        for read in reads {
            let name = &profile.groups[read.group].name;
            let (upgrader, _, _) = self.upgraders.get_mut(&read.group).expect("selected");
            let mut record = Record::new(Bytes(read.key.clone()), read.old.clone());
            let applied: Applied = upgrader.upgrade(&mut record, Some(name))?;
            if first {
                upgrader.count(&read.key, &applied);
            }
            if let Some(reason) = &applied.broken {
                if first {
                    self.broken.add(BrokenRecord {
                        key: printable(&read.key),
                        reason: reason.clone(),
                    });
                }
                if !first {
                    // Broken since its first read: not written, and counted.
                    self.fail(&read.key, read.group);
                }
                if self.write && !self.options.skip_errors {
                    return Err(Error::BrokenRecord {
                        group: name.clone(),
                        key: printable(&read.key),
                        reason: reason.clone(),
                    });
                }
                continue;
            }
            if applied.changed() {
                if first {
                    self.legacy.add(printable(&read.key));
                }
                changed.push((read, record.value));
            }
        }
        Ok(changed)
    }

    /// Write the changed records, each only if it is still what was read;
    /// `journaled`: named in the journal first, and what each write left
    /// recorded after. A record read again after the backup was finished
    /// is not in the backup as it was just read, so its retry is not
    /// journaled: rollback leaves it as the application and the upgrade
    /// left it. Returns the keys found changed meanwhile.
    async fn write_batch(
        &mut self,
        changed: Vec<(Read, Value)>,
        journaled: bool,
    ) -> Result<Vec<(Vec<u8>, usize)>> {
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&[u8]> = changed.iter().map(|(r, _)| &r.key[..]).collect();
        if journaled && let Some(j) = self.journal.as_mut() {
            j.touch(&keys)?;
        }
        if let Some(hook) = &self.options.between_read_and_write {
            let owned: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
            hook(&owned);
        }
        let mut pipe = redis::pipe();
        for (read, new) in &changed {
            pipe.cmd("EVAL")
                .arg(WRITE)
                .arg(1)
                .arg(&read.key)
                .arg(&read.fingerprint);
            match (&read.old, new) {
                (Value::Hash(old), Value::Hash(new)) => {
                    let gone: Vec<&Bytes> = old
                        .iter()
                        .map(|(f, _)| f)
                        .filter(|f| !new.iter().any(|(n, _)| n == *f))
                        .collect();
                    pipe.arg("hash").arg(gone.len());
                    for f in gone {
                        pipe.arg(&f.0);
                    }
                    for (f, v) in new {
                        if !old.iter().any(|(o, ov)| o == f && ov == v) {
                            pipe.arg(&f.0).arg(&v.0);
                        }
                    }
                }
                (_, Value::String(text)) => {
                    pipe.arg("string").arg(&text.0);
                }
                _ => return Err(Error::Internal("an upgrade changed a record's type".into())),
            }
        }
        let replies = self
            .conn
            .pipeline(&mut pipe, "writing upgraded records")
            .await?;
        if let Some(hook) = &self.options.after_write {
            let owned: Vec<Vec<u8>> = changed.iter().map(|(r, _)| r.key.clone()).collect();
            hook(&owned);
        }
        let mut lost = Vec::new();
        let mut after = Vec::new();
        for ((read, _), reply) in changed.into_iter().zip(replies) {
            match reply {
                // The SHA-1 of the DUMP the write left, taken in the same
                // script: a later write by the application is not the
                // upgrade's.
                Reply::BulkString(sum) => {
                    self.upgraders.get_mut(&read.group).expect("selected").1 += 1;
                    after.push((read.key, Some(String::from_utf8_lossy(&sum).into_owned())));
                }
                Reply::Int(0) => {
                    after.push((read.key.clone(), Some(LEFT_ALONE_FINGERPRINT.to_string())));
                    lost.push((read.key, read.group));
                }
                other => {
                    return Err(Error::Redis {
                        endpoint: self.options.target.display(),
                        action: "writing upgraded records".into(),
                        reason: format!("key {}: {other:?}", printable(&read.key)),
                    });
                }
            }
        }
        if journaled && let Some(j) = self.journal.as_mut() {
            j.after(&after)?;
        }
        Ok(lost)
    }

    /// The records about to be written, as they are now, into the backup.
    async fn save(&mut self, changed: &[(Read, Value)]) -> Result<()> {
        let Some(dir) = self.options.backup_dir.as_deref() else {
            return Ok(());
        };
        if changed.is_empty() {
            return Ok(());
        }
        if self.backup.is_none() {
            let server = self.conn.server_info().await?;
            let link = RestoreLink {
                archive: format!("upgrade with profile {}", self.options.profile.name),
                archive_id: String::new(),
                mode: "upgrade".into(),
            };
            let backup =
                PreRestoreBackup::create(dir, &self.options.target, &mut self.conn, server, link)
                    .await?;
            self.backup = Some(backup);
        }
        // Shared keys are never upgraded (see `keys`), so no record here
        // is saved member by member.
        let wanted: Vec<(&[u8], KeyType, Action, Option<&SharedMembers>)> = changed
            .iter()
            .map(|(r, _)| (&r.key[..], r.old.key_type(), Action::Overwrite, None))
            .collect();
        let backup = self.backup.as_mut().expect("created above");
        backup.save(&wanted).await?;
        Ok(())
    }

    fn report(self, backup: Option<&Path>, started: Instant) -> UpgradeReport {
        let profile = &self.options.profile;
        let mut report = UpgradeReport {
            target: self.options.target.describe(),
            profile: profile.name.clone(),
            user: self.options.user.clone(),
            dry_run: !self.write,
            from: self.from,
            to: profile.schema_version,
            retried: self.retried,
            backup: backup.map(|p| p.display().to_string()),
            rollback: backup.map(rollback_command),
            seconds: started.elapsed().as_secs_f64(),
            ..UpgradeReport::default()
        };
        for (i, (upgrader, written, failed)) in &self.upgraders {
            let s = upgrader.summary();
            if report.steps.is_empty() {
                report.steps = s
                    .steps
                    .iter()
                    .map(|c| StepCount {
                        records: 0,
                        ..c.clone()
                    })
                    .collect();
            }
            for (total, c) in report.steps.iter_mut().zip(&s.steps) {
                total.records += c.records;
            }
            report.records += s.records;
            report.legacy += s.changed;
            report.current += s.current;
            report.written += written;
            report.groups.push(GroupUpgrade {
                group: profile.groups[*i].name.clone(),
                upgrade: s,
                written: *written,
                failed: *failed,
            });
        }
        (report.broken, report.broken_records) = self.broken.into_parts();
        (report.failed, report.failed_keys) = self.failed.into_parts();
        report.legacy_keys = self.legacy.into_parts().1;
        report
    }
}
