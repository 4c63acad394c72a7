//! The plan: one pass over the archive that verifies it, decides each key
//! against the target (read-only) and saves what will change into the
//! pre-restore backup; what the target cannot hold refuses it here.

use super::members::SharedMembers;
use super::*;
use crate::profile::upgrade::Applied;

/// A key waiting for EXISTS.
struct PendingKey {
    key: Vec<u8>,
    key_type: KeyType,
    expiry: Option<Expiry>,
    /// Its position in the plan's decisions.
    index: usize,
    /// A shared key of a user archive: the members it writes.
    shared: Option<SharedMembers>,
    /// What the profile's upgrade did to its first record: taken back out
    /// of the counts if the key is not written.
    upgrade: Applied,
}

/// Works out the plan: connects when it knows the target database (at the
/// archive's header, or at once for copy), then EXISTS in batches.
pub struct Planner<'p> {
    target: Endpoint,
    conn: Option<Conn>,
    write: WriteOptions,
    cancel: Cancel,
    now_ms: i64,
    /// Keys waiting for EXISTS, with their index in `decisions` and
    /// whether they are a shared index of a user archive.
    pending: Vec<PendingKey>,
    /// The previous batch, its EXISTS on the way.
    in_flight: Option<(Vec<PendingKey>, ExistsTask)>,
    /// The archive, as named in messages.
    pub archive: String,
    rewriter: Option<Rewriter>,
    /// Shared keys of a user archive: their records are merged, whatever the mode.
    shared: HashSet<Vec<u8>>,
    profile: Option<ProfileRestore>,
    actions: ActionCounts,
    decisions: Decisions,
    conflicts: Vec<String>,
    /// The first existing keys skipped, overwritten or merged into.
    names: PlanNames,
    /// With a profile: the plan per group.
    groups: GroupTally,
    /// What the merges would add, when counted.
    merges: Option<MergeCounts>,
    /// Where to put a pre-restore backup, and the archive it is for.
    backup_to: Option<(PathBuf, String)>,
    backup: Option<PreRestoreBackup>,
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
    /// What the rename rules do to the keys.
    renames: RenameTally,
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
    pub renames: Option<RenameSummary>,
    pub names: PlanNames,
    pub groups: BTreeMap<String, GroupCounts>,
    pub merge_would_add: Option<u64>,
    pub(super) decisions: Decisions,
    pub(super) backup: Option<PreRestoreBackup>,
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
        target: Endpoint,
        write: WriteOptions,
        cancel: Cancel,
        progress: &'p dyn Progress,
    ) -> Self {
        let merges = write.count_merges.then(MergeCounts::new);
        Planner {
            merges,
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
            decisions: Decisions::default(),
            conflicts: Vec::new(),
            names: PlanNames::default(),
            groups: GroupTally::default(),
            backup_to: None,
            backup: None,
            progress,
            open_key: None,
            voided: Vec::new(),
            needs: Needs::default(),
            server: None,
            renames: RenameTally::default(),
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
    pub async fn connect(&mut self, archive_id: &str) -> Result<()> {
        let mut conn = self.target.connect().await?;
        // As connected: a cluster takes a default database as 0.
        self.target = conn.endpoint().clone();
        self.now_ms = conn.time_ms().await?;
        let server = conn.server_info().await?;
        self.server = Some(server.clone());
        if let Some((dir, archive)) = &self.backup_to {
            let link = RestoreLink {
                archive: archive.clone(),
                archive_id: archive_id.to_string(),
                mode: format!("{:?}", self.write.mode).to_lowercase(),
            };
            let backup =
                PreRestoreBackup::create(dir, &self.target, &mut conn, server, link).await?;
            self.backup = Some(backup);
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// The target as resolved, the plan and the unfinished backup; with
    /// `--mode fail`, an error if any key exists.
    pub async fn finish(mut self) -> Result<Planned> {
        self.flush().await?;
        self.settle().await?;
        for (index, t) in std::mem::take(&mut self.voided) {
            let planned = self.decisions.replace(index, Action::Void)?;
            self.actions.remove(t, planned);
        }
        let dropped_field_expiries = self.check_target().await?;
        let conflicts = self.actions.total(Action::Conflict);
        if conflicts > 0 {
            return Err(Error::Conflict {
                target: self.target.display(),
                count: conflicts,
                keys: self.conflicts.join(", "),
            });
        }
        if let (Some(p), Some(r)) = (self.profile.as_mut(), &self.rewriter) {
            p.upgrade = r.upgrade_summary();
        }
        // Every key is decided now: the last counts are kept or dropped.
        let merge_would_add = match (self.merges.as_mut(), self.conn.as_mut()) {
            (Some(m), Some(conn)) => {
                m.ask(conn).await?;
                m.resolve(&self.decisions, usize::MAX)?;
                m.known.then_some(m.total)
            }
            _ => None,
        };
        Ok(Planned {
            merge_would_add,
            renames: (!self.write.remap.is_empty()).then(|| self.renames.into_summary()),
            names: self.names,
            groups: self.groups.into_counts(),
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
    async fn check_target(&mut self) -> Result<u64> {
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
            loaded_modules(conn).await
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
                let planned = self.decisions.replace(index, Action::Unsupported)?;
                self.actions.remove(KeyType::Dump, planned);
                self.actions.add(KeyType::Dump, Action::Unsupported);
            }
        }
        Ok(dropped_field_expiries)
    }

    async fn flush(&mut self) -> Result<()> {
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
        let task = send_exists(conn, keys.iter().map(|k| &k.key[..]));
        if let Some(m) = self.merges.as_mut() {
            m.ask(&mut conn.clone()).await?;
        }
        self.settle().await?;
        // Every key before this batch's is decided.
        let first = keys.first().map_or(self.decisions.len(), |k| k.index);
        if let Some(m) = self.merges.as_mut() {
            m.resolve(&self.decisions, first)?;
        }
        self.decisions.settled_before(first)?;
        self.in_flight = Some((keys, task));
        Ok(())
    }

    /// Decide the batch whose EXISTS is in flight, if any.
    async fn settle(&mut self) -> Result<()> {
        let Some((keys, task)) = self.in_flight.take() else {
            return Ok(());
        };
        let exists = read_exists(task).await?;
        let planned = keys.len() as u64;
        let mut decided = Vec::with_capacity(keys.len());
        let mut upgrades = Vec::with_capacity(keys.len());
        for (p, exists) in keys.into_iter().zip(exists) {
            let PendingKey {
                key,
                key_type: t,
                expiry,
                index,
                shared,
                upgrade,
            } = p;
            let mut action = decide(
                self.write.mode,
                self.write.ttl,
                t,
                expiry,
                self.now_ms,
                exists,
            );
            // Other users' members of a shared key are never replaced: an
            // overwrite writes the user's members only (see the applier).
            if shared.is_some()
                && matches!(action, Action::Skip | Action::Overwrite | Action::Conflict)
            {
                action = Action::Merge;
            }
            self.names.add(action, || printable(&key));
            self.groups.add(&key, action);
            if action == Action::Conflict && self.conflicts.len() < 10 {
                self.conflicts.push(printable(&key));
            }
            decided.push((key, t, action, index, shared));
            upgrades.push(upgrade);
        }
        if let Some(backup) = self.backup.as_mut() {
            let writes =
                |a: &Action| matches!(a, Action::Create | Action::Overwrite | Action::Merge);
            let wanted: Vec<(&[u8], KeyType, Action, Option<&SharedMembers>)> = decided
                .iter()
                .filter(|(_, _, a, _, _)| writes(a))
                .map(|(k, t, a, _, m)| (&k[..], *t, *a, m.as_ref()))
                .collect();
            let gone = backup.save(&wanted).await?;
            // A key that vanished between EXISTS and its backup gets created.
            let positions: Vec<usize> = decided
                .iter()
                .enumerate()
                .filter(|(_, (_, _, a, _, _))| writes(a))
                .map(|(i, _)| i)
                .collect();
            for g in gone {
                decided[positions[g]].2 = Action::Create;
            }
        }
        for ((key, t, action, index, _), upgrade) in decided.into_iter().zip(upgrades) {
            // Only what is written gets upgraded (a skip-mode plan upgrades
            // none of the keys it skips). A key split in parts is counted
            // by its first part here.
            if !matches!(action, Action::Create | Action::Overwrite | Action::Merge)
                && let Some(r) = self.rewriter.as_mut()
            {
                r.uncount(&upgrade);
            }
            self.progress.planned(&key, action);
            self.actions.add(t, action);
            self.decisions.replace(index, action)?;
        }
        self.progress.advance(planned);
        Ok(())
    }
}

impl Planner<'_> {
    async fn header(&mut self, header: &Header) -> Result<()> {
        self.target = self.target.or_db(header.source.address.db);
        self.rewriter = self.write.rewriter(header, &self.archive)?;
        self.groups = GroupTally::new(&self.write, header);
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
        self.connect(&header.id).await
    }

    async fn record(&mut self, mut record: Record) -> Result<()> {
        // Every part goes through the rewrite, so that a step that cannot
        // handle a split key fails here, before anything is written.
        let upgrade = match self.rewriter.as_mut() {
            Some(r) => r.apply(&mut record)?,
            None => Applied::default(),
        };
        if self.write.ttl == TtlMode::Absolute {
            drop_expired_fields(&mut record, self.now_ms);
        }
        if record.void {
            if let Some((index, _)) = self.open_key {
                self.voided.push((index, record.key_type()));
                if !self.write.remap.is_empty() {
                    self.renames.take_back(&self.write.remap, &record.key.0);
                }
            }
            return Ok(());
        }
        if record.part == 0 && !self.write.remap.is_empty() {
            self.renames
                .add(&record.key.0, &self.write.remap.key(&record.key.0));
        }
        if record.part == 0 {
            let expired = self.write.ttl.is_expired(record.expiry, self.now_ms);
            self.open_key = Some((self.decisions.len(), expired));
        }
        if let Some((index, false)) = self.open_key {
            self.needs.note(&record, index);
            if let Some(m) = self.merges.as_mut()
                && (self.write.mode == Mode::Merge || self.shared.contains(&record.key.0))
            {
                m.queue(index, &self.write.remap.key(&record.key.0), &record);
            }
        }
        if record.part != 0 {
            return Ok(());
        }
        let index = self.decisions.len();
        if self.write.ttl.is_expired(record.expiry, self.now_ms) {
            if let Some(r) = self.rewriter.as_mut() {
                r.uncount(&upgrade);
            }
            self.actions.add(record.key_type(), Action::Expired);
            self.decisions.push(Action::Expired);
            self.progress
                .planned(&self.write.remap.key(&record.key.0), Action::Expired);
            return Ok(());
        }
        // Decided at the next flush.
        self.decisions.push(Action::Skip);
        let shared = self.shared.contains(&record.key.0);
        rename(&self.write.remap, &mut record);
        let shared = shared
            .then(|| SharedMembers::of(&record, self.write.mode != Mode::Overwrite))
            .flatten();
        self.pending.push(PendingKey {
            key: record.key.0,
            key_type: record.value.key_type(),
            expiry: record.expiry,
            index,
            shared,
            upgrade,
        });
        if self.pending.len() >= self.write.batch_keys {
            self.flush().await?;
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
    for module in crate::reply::array_of(reply) {
        let mut fields = crate::reply::array_of(module).into_iter();
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            if crate::reply::bytes_of(k) == b"name" {
                names.push(String::from_utf8_lossy(&crate::reply::bytes_of(v)).into_owned());
            }
        }
    }
    Some(names)
}

impl crate::archive::stream::BatchVisitor for Planner<'_> {
    fn header(&mut self, header: &Header) -> impl Future<Output = Result<()>> + Send {
        Planner::header(self, header)
    }

    fn record(&mut self, record: Record, _held: usize) -> impl Future<Output = Result<()>> + Send {
        Planner::record(self, record)
    }
}
