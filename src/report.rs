//! What commands return: plain data that the binary renders as text or JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::profile::upgrade::UpgradeSummary;
use crate::record::{KeyType, printable};

pub use crate::samples::Samples;

/// A key that could not be read or written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyError {
    /// The key as redis-cli shows it (`\xNN` for bytes that are not printable).
    pub key: String,
    /// Why it failed, as the server or the reader said.
    pub reason: String,
}

impl KeyError {
    /// A key error for the raw key `key`, shown printable.
    pub fn new(key: &[u8], reason: impl Into<String>) -> Self {
        KeyError {
            key: printable(key),
            reason: reason.into().replace('\n', " "),
        }
    }
}

/// Per-type outcome of an export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSummary {
    /// Keys written into the archive.
    pub exported: u64,
    /// Keys gone by the time they were read.
    pub vanished: u64,
    /// Keys that could not be read.
    pub errors: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    /// The archive's id (in its header and the folder's metadata).
    pub id: String,
    /// The file written, or `-` for stdout.
    pub output: String,
    /// The source, with any password left out.
    pub source: String,
    /// Size of the archive file in bytes.
    pub bytes: u64,
    /// Keys written into the archive.
    pub keys: u64,
    /// Records written (a big key spans several).
    pub records: u64,
    /// Exported, vanished and failed keys per type.
    pub by_type: BTreeMap<KeyType, TypeSummary>,
    /// Keys found by the walk that were gone when read (deleted or expired).
    pub vanished: u64,
    /// Times a key read in several parts changed meanwhile: its parts were
    /// voided in the archive (no reader restores them) and it was read
    /// again; it then counts as exported, vanished or an error.
    #[serde(default)]
    pub changed: u64,
    /// Keys that could not be read; the archive holds the rest.
    pub errors: u64,
    /// The first keys that could not be read, with why.
    pub error_samples: Vec<KeyError>,
    /// Wall-clock time the export took.
    pub seconds: f64,
    /// The record layout version of the archive.
    pub schema_version: u64,
    /// sha256 of the file as written.
    pub sha256: String,
    /// Whether the archive is age-encrypted.
    pub encrypted: bool,
    /// A profile export: whose records and which groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::ProfileScope>,
    /// Keys per profile group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, u64>,
    /// With `--redact`: how the sensitive values were replaced, and which
    /// fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<crate::archive::Redaction>,
    /// Keys of a snapshot or RDB file that had expired by its instant
    /// (or, for a file, by the export): no server loading it would keep
    /// them, so they are not exported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expired: u64,
    /// Function libraries in the snapshot or RDB file, which the archive
    /// does not hold (copy them with `FUNCTION DUMP`/`FUNCTION RESTORE`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub functions_not_kept: u64,
}

/// What restore does, or did, with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Action {
    /// The key is not in the target: write it.
    Create,
    /// The key is in the target and the mode is skip: leave it.
    Skip,
    /// The key is in the target and the mode is overwrite: replace it.
    Overwrite,
    /// The key is in the target and the mode is merge: add what it lacks.
    Merge,
    /// The key's expiry time has passed: do not write it.
    Expired,
    /// The key is in the target and the mode is fail.
    Conflict,
    /// The target cannot hold the key (a module type it has not loaded, a
    /// DUMP payload newer than it reads) and `--drop-unsupported` was given.
    Unsupported,
    /// The key's parts in the archive were voided (it changed while being
    /// exported): never written, and not counted as a key.
    Void,
}

impl Action {
    /// The actions a plan counts and shows (not [`Action::Void`]).
    pub const ALL: [Action; 7] = [
        Action::Create,
        Action::Skip,
        Action::Overwrite,
        Action::Merge,
        Action::Expired,
        Action::Conflict,
        Action::Unsupported,
    ];

    /// The lowercase name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Skip => "skip",
            Action::Overwrite => "overwrite",
            Action::Merge => "merge",
            Action::Expired => "expired",
            Action::Conflict => "conflict",
            Action::Unsupported => "unsupported",
            Action::Void => "void",
        }
    }
}

/// Keys per action per type: a restore plan, or what a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    /// Keys per action, per type.
    pub by_type: BTreeMap<KeyType, BTreeMap<Action, u64>>,
}

impl ActionCounts {
    /// Count one key of type `t` under `action`.
    pub fn add(&mut self, t: KeyType, action: Action) {
        *self
            .by_type
            .entry(t)
            .or_default()
            .entry(action)
            .or_default() += 1;
    }

    /// Take back a key counted under `action` (one found void later).
    pub fn remove(&mut self, t: KeyType, action: Action) {
        let Some(actions) = self.by_type.get_mut(&t) else {
            return;
        };
        if let Some(n) = actions.get_mut(&action) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                actions.remove(&action);
            }
        }
        if actions.is_empty() {
            self.by_type.remove(&t);
        }
    }

    /// Keys under `action`, all types together.
    pub fn total(&self, action: Action) -> u64 {
        self.by_type.values().filter_map(|m| m.get(&action)).sum()
    }

    /// Keys of type `t` under `action`.
    pub fn get(&self, t: KeyType, action: Action) -> u64 {
        self.by_type
            .get(&t)
            .and_then(|m| m.get(&action))
            .copied()
            .unwrap_or(0)
    }

    /// Keys that will be (or were) written.
    pub fn writes(&self) -> u64 {
        self.total(Action::Create) + self.total(Action::Overwrite)
    }
}

/// What a restore or a copy did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The archive (restore) or the source endpoint (copy).
    pub source: String,
    /// The target, with any password left out.
    pub target: String,
    /// True when nothing was written: the report is a plan.
    pub dry_run: bool,
    /// What was decided per key (for a dry run, what would be).
    pub plan: ActionCounts,
    /// Keys written successfully (created or overwritten).
    pub written: u64,
    /// Fields, members and stream entries that merge added to existing keys.
    pub added: u64,
    /// Keys planned for creation that someone else created first: left alone.
    #[serde(default)]
    pub appeared: u64,
    /// Keys whose writes the server refused; listed in `error_samples`.
    pub errors: u64,
    /// Keys that failed, per type.
    pub errors_by_type: BTreeMap<KeyType, u64>,
    /// The first keys that failed, with why.
    pub error_samples: Vec<KeyError>,
    /// Wall-clock time the restore took.
    pub seconds: f64,
    /// The pre-restore backup, when one was written.
    #[serde(default)]
    pub backup: Option<String>,
    /// The command that undoes this restore.
    #[serde(default)]
    pub rollback: Option<String>,
    /// For a user archive: whose records, under which id, and the upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileRestore>,
    /// Hash field expiries not written because the target cannot hold them
    /// (`--drop-unsupported`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_field_expiries: u64,
    /// MOVED and ASK answers followed while writing into a cluster whose
    /// slots were moving.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redirects: u64,
    /// Pending entries of consumer groups that could not be restored
    /// because their message is no longer in the stream (deleted or
    /// trimmed): XCLAIM cannot create them.
    #[serde(default)]
    pub pending_not_restored: u64,
    /// With rename rules: what they do to the selected keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renames: Option<RenameSummary>,
    /// The first keys of the target the plan skips, overwrites or merges
    /// into, by name (their counts are in `plan`).
    #[serde(default, skip_serializing_if = "PlanNames::is_empty")]
    pub names: PlanNames,
    /// With a profile: what was done (or would be) per group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupCounts>,
    /// A plan's count of what its merges would add (fields, members, list
    /// values, stream entries), when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_would_add: Option<u64>,
    /// A redacted archive into a target that looks like production: not
    /// refused, but said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction_warning: Option<String>,
}

/// What a restore or copy did (or would do) to one profile group's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounts {
    /// Keys created.
    pub created: u64,
    /// Existing keys left as they were.
    pub skipped: u64,
    /// Existing keys replaced.
    pub overwritten: u64,
    /// Existing keys merged into.
    pub merged: u64,
    /// Keys not written for another reason (expired, unsupported, ...).
    pub other: u64,
    /// Keys whose writes failed.
    pub failed: u64,
}

impl GroupCounts {
    /// Count one key dealt with by `action`.
    pub(crate) fn add(&mut self, action: Action) {
        match action {
            Action::Create => self.created += 1,
            Action::Skip => self.skipped += 1,
            Action::Overwrite => self.overwritten += 1,
            Action::Merge => self.merged += 1,
            Action::Void => {}
            _ => self.other += 1,
        }
    }
}

/// The first keys that already exist in the target and that a plan
/// leaves as they are, overwrites or merges into: what a person checks
/// before saying yes. Counts are in the plan's table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanNames {
    /// Existing keys left as they are (skip mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// Existing keys replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overwrite: Vec<String>,
    /// Existing keys merged into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merge: Vec<String>,
}

impl PlanNames {
    /// Keys named per action.
    pub const MAX: usize = 20;

    /// Name `key` under `action` if that action still has room; other
    /// actions are not named. The name is made only when kept.
    pub(crate) fn add(&mut self, action: Action, key: impl FnOnce() -> String) {
        let list = match action {
            Action::Skip => &mut self.skip,
            Action::Overwrite => &mut self.overwrite,
            Action::Merge => &mut self.merge,
            _ => return,
        };
        if list.len() < Self::MAX {
            list.push(key());
        }
    }

    /// True when no key is named.
    pub fn is_empty(&self) -> bool {
        self.skip.is_empty() && self.overwrite.is_empty() && self.merge.is_empty()
    }
}

/// One key's rename, as a plan or a comparison shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameExample {
    /// The name in the archive (or source), printable.
    pub from: String,
    /// The name in the target, printable.
    pub to: String,
}

/// What `--rename-prefix` and `--rename-token` rules do to the selected
/// keys: how many they rename (with the first few `from -> to`) and how
/// many no rule renames, which keep their name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameSummary {
    /// Keys a rule renames.
    pub renamed: u64,
    /// The first of them.
    pub examples: Vec<RenameExample>,
    /// Keys of the selection no rule renames.
    pub not_renamed: u64,
    /// The first of them.
    pub not_renamed_examples: Vec<String>,
    /// For compare: renamed keys the target does not hold under their new
    /// name.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What restoring a profile archive did to its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRestore {
    /// The profile's name.
    pub name: String,
    /// The archive's user (absent for a whole-group archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The id the records were written under (`--as-user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_user: Option<String>,
    /// The profile groups restored.
    pub groups: Vec<String>,
    /// Records upgraded from the archive's data schema to the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSummary>,
}

impl RestoreReport {
    /// The report of a dry run: the plan, nothing written.
    pub fn planned(source: String, target: String, plan: ActionCounts) -> Self {
        RestoreReport {
            source,
            target,
            dry_run: true,
            plan,
            written: 0,
            added: 0,
            appeared: 0,
            errors: 0,
            errors_by_type: BTreeMap::new(),
            error_samples: Vec::new(),
            seconds: 0.0,
            backup: None,
            rollback: None,
            profile: None,
            dropped_field_expiries: 0,
            redirects: 0,
            pending_not_restored: 0,
            renames: None,
            names: PlanNames::default(),
            groups: BTreeMap::new(),
            merge_would_add: None,
            redaction_warning: None,
        }
    }

    /// True when some keys failed to be written: the target holds only part
    /// of the archive.
    pub fn is_partial(&self) -> bool {
        self.errors > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_names_the_first_existing_keys_per_action_only() {
        let mut names = PlanNames::default();
        let mut made = 0;
        for i in 0..50 {
            for action in [Action::Skip, Action::Create, Action::Overwrite] {
                names.add(action, || {
                    made += 1;
                    format!("k{i}")
                });
            }
        }
        names.add(Action::Merge, || "m".into());
        assert_eq!(names.skip.len(), PlanNames::MAX);
        assert_eq!(names.overwrite.len(), PlanNames::MAX);
        assert_eq!(names.skip[0], "k0");
        assert_eq!(
            names.skip[PlanNames::MAX - 1],
            format!("k{}", PlanNames::MAX - 1)
        );
        assert_eq!(names.merge, ["m"]);
        // Names past the first are never made, and created keys are not named.
        assert_eq!(made, 2 * PlanNames::MAX);
    }
}
