//! `validate --profile`: record-level checks a Redis tool cannot make alone.
//!
//! After the archive's own checks, every record is placed in its group
//! (and upgraded in memory, as restore would) and checked: required fields
//! present, the owner field naming the archive's user, and every reference
//! naming a record that is in the archive. References are resolved at the
//! end, so the checker keeps the ids of the archive's records of referenced
//! groups, and the references it saw, in memory (a user's records, or the
//! groups exported).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::archive::Header;
use crate::archive::reader::{Location, Visitor};
use crate::archive::stream::Tee;
use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::profile::rewrite::{Part, check_scope, classify};
use crate::profile::select::json_text;
use crate::profile::upgrade::{UpgradeSummary, Upgrader};
use crate::record::{Record, Value, printable};

/// A record that breaks the profile's rules, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) location: Location,
    pub(crate) key: Vec<u8>,
    pub(crate) message: String,
}

/// What the profile checks found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub(crate) findings: Vec<Finding>,
    pub(crate) upgrade: Option<UpgradeSummary>,
    pub(crate) user: Option<String>,
    /// Records per group.
    pub(crate) groups: BTreeMap<String, u64>,
    /// False when the archive was not exported through a profile and the
    /// profile was only picked up by default: nothing was checked.
    pub(crate) checked: bool,
}

/// The profile part of a validation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileValidation {
    /// The profile's name.
    pub name: String,
    /// The archive's user, for a user archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Keys per group.
    pub groups: BTreeMap<String, u64>,
    /// Records that break the profile's rules (listed among the problems).
    pub findings: u64,
    /// How many records restore would upgrade, and by which steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSummary>,
}

/// A reference seen, resolved at the end.
struct Pending {
    location: Location,
    key: Vec<u8>,
    field: String,
    group: usize,
    id: Vec<u8>,
}

/// The key whose parts are being read: its required fields not yet seen.
struct Open {
    location: Location,
    key: Vec<u8>,
    group: usize,
    missing: BTreeSet<String>,
}

pub(crate) struct Checker {
    profile: Arc<Profile>,
    archive: String,
    user: Option<Vec<u8>>,
    upgrader: Option<Upgrader>,
    /// Ids of records present, per group that some reference names.
    present: Vec<HashSet<Vec<u8>>>,
    referenced: Vec<bool>,
    /// Groups the archive was exported with: references into other groups
    /// cannot be checked (an `--types apikeys` archive has no accounts).
    exported: Vec<bool>,
    pending: Vec<Pending>,
    open: Option<Open>,
    out: Checked,
    /// Fail on an archive without a profile scope (else skip it).
    pub(crate) required: bool,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("profile", &self.profile.name)
            .finish()
    }
}

impl Checker {
    pub(crate) fn new(profile: Arc<Profile>, archive: String) -> Self {
        let n = profile.groups.len();
        let mut referenced = vec![false; n];
        for g in &profile.groups {
            for r in &g.references {
                if let Some(i) = profile.groups.iter().position(|t| t.name == r.group) {
                    referenced[i] = true;
                }
            }
        }
        Checker {
            profile,
            archive,
            user: None,
            upgrader: None,
            present: vec![HashSet::new(); n],
            referenced,
            exported: vec![false; n],
            pending: Vec::new(),
            open: None,
            out: Checked::default(),
            required: true,
        }
    }

    fn find(&mut self, location: &Location, key: &[u8], message: String) {
        self.out.findings.push(Finding {
            location: location.clone(),
            key: key.to_vec(),
            message,
        });
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open.take()
            && !open.missing.is_empty()
        {
            let group = self.profile.groups[open.group].name.clone();
            let missing: Vec<&str> = open.missing.iter().map(String::as_str).collect();
            self.find(
                &open.location,
                &open.key,
                format!(
                    "{group} record {} lacks required field{} {}",
                    printable(&open.key),
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                ),
            );
        }
    }

    /// Resolve the references and hand over what was found.
    pub(crate) fn finish(mut self) -> Checked {
        self.close_open();
        for p in std::mem::take(&mut self.pending) {
            if self.exported[p.group] && !self.present[p.group].contains(&p.id) {
                let group = &self.profile.groups[p.group].name;
                self.find(
                    &p.location,
                    &p.key,
                    format!(
                        "{} references {group} {} (field {}), which is not in the archive",
                        printable(&p.key),
                        printable(&p.id),
                        p.field
                    ),
                );
            }
        }
        self.out.upgrade = self.upgrader.map(|u| u.summary());
        self.out
    }
}

impl Visitor for Checker {
    fn header(&mut self, header: &Header) -> Result<()> {
        let Some(scope) = &header.profile else {
            if !self.required {
                return Ok(());
            }
            return Err(Error::Profile(format!(
                "{} was not exported with a profile; record checks need an archive written by `archive export USER_ID` or `--types`",
                self.archive
            )));
        };
        check_scope(&self.profile, scope, &self.archive)?;
        self.out.checked = true;
        for (i, g) in self.profile.groups.iter().enumerate() {
            self.exported[i] = scope.groups.contains(&g.name);
        }
        self.user = scope.user.as_ref().map(|u| u.as_bytes().to_vec());
        self.out.user = scope.user.clone();
        self.upgrader = Upgrader::new(
            &self.profile.upgrades,
            scope.schema_version,
            self.profile.schema_version,
        )?;
        Ok(())
    }

    fn record(&mut self, mut record: Record, location: &Location) -> Result<()> {
        if !self.out.checked {
            return Ok(());
        }
        if record.part == 0 {
            self.close_open();
        }
        let profile = self.profile.clone();
        let Some((gi, part)) = classify(&profile, &record.key.0, self.user.as_deref()) else {
            if record.part == 0 {
                self.find(
                    location,
                    &record.key.0,
                    format!(
                        "{} belongs to no group of profile {:?}",
                        printable(&record.key.0),
                        profile.name
                    ),
                );
            }
            return Ok(());
        };
        let group = &profile.groups[gi];
        if record.void {
            // The key changed while exported: its parts are not the
            // archive's, so they neither count nor leave a field missing.
            self.open = None;
            if let Some(n) = self.out.groups.get_mut(&group.name) {
                *n = n.saturating_sub(1);
            }
            return Ok(());
        }
        if record.part == 0 {
            *self.out.groups.entry(group.name.clone()).or_default() += 1;
        }
        if let Some(up) = self.upgrader.as_mut()
            && !part.is_shared_or_index()
        {
            match up.apply(&mut record, Some(&group.name)) {
                Err(e) => {
                    self.find(location, &record.key.0, e.to_string());
                    return Ok(());
                }
                Ok(applied) => {
                    if let Some(reason) = applied.broken.filter(|_| applied.broken_first) {
                        let message = format!(
                            "{} record {} cannot be upgraded: it {reason}",
                            group.name,
                            printable(&record.key.0)
                        );
                        self.find(location, &record.key.0, message);
                    }
                }
            }
        }
        if let Part::ById(c) = &part
            && self.referenced[gi]
            && let Some(r) = &c.id
        {
            self.present[gi].insert(record.key.0[r.clone()].to_vec());
        }
        if part.is_shared_or_index() {
            return Ok(());
        }
        if record.part == 0 && !group.required.is_empty() && has_fields(&record.value) {
            self.open = Some(Open {
                location: location.clone(),
                key: record.key.0.clone(),
                group: gi,
                missing: group.required.iter().cloned().collect(),
            });
        }
        let mut owner = None;
        let mut refs = Vec::new();
        fields(&record.value, |name, value| {
            if let Some(open) = self.open.as_mut() {
                open.missing.remove(name);
            }
            if group.owner_field.as_deref() == Some(name) {
                owner = Some(value.to_vec());
            }
            if let Some(r) = group.references.iter().find(|r| r.field == name)
                && let Some(t) = profile.groups.iter().position(|g| g.name == r.group)
            {
                refs.push((r.field.clone(), t, value.to_vec()));
            }
        });
        if let (Some(owner), Some(user)) = (owner, self.user.as_ref())
            && &owner != user
        {
            self.find(
                location,
                &record.key.0,
                format!(
                    "{} has {} {}, but the archive is of user {}",
                    printable(&record.key.0),
                    group.owner_field.as_deref().unwrap_or_default(),
                    printable(&owner),
                    printable(user)
                ),
            );
        }
        for (field, group, id) in refs {
            self.pending.push(Pending {
                location: location.clone(),
                key: record.key.0.clone(),
                field,
                group,
                id,
            });
        }
        Ok(())
    }
}

/// The checks run alongside another reader of the archive (restore's plan
/// pass), so that invalid records stop a restore before its first write
/// without reading the archive once more.
pub(crate) struct CheckTee(Arc<Mutex<Option<Checker>>>);

impl CheckTee {
    /// A tee feeding a checker of `archive` against `profile`, and the
    /// handle to take the checker back from once the read is done. An
    /// archive not exported through a profile is not checked.
    pub(crate) fn new(profile: Arc<Profile>, archive: String) -> (CheckTee, CheckTee) {
        let mut checker = Checker::new(profile, archive);
        checker.required = false;
        let shared = Arc::new(Mutex::new(Some(checker)));
        (CheckTee(shared.clone()), CheckTee(shared))
    }

    /// What the checks found; `None` when the archive was not checked.
    pub(crate) fn finish(self) -> Option<Checked> {
        let checker = self.0.lock().ok()?.take()?;
        Some(checker.finish()).filter(|c| c.checked)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Checker) -> Result<T>) -> Result<T> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| Error::Internal("the profile checks panicked".into()))?;
        match guard.as_mut() {
            Some(checker) => f(checker),
            None => Err(Error::Internal(
                "the profile checks were finished early".into(),
            )),
        }
    }
}

impl Tee for CheckTee {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.with(|c| c.header(header))
    }

    fn record(&mut self, record: &Record, location: &Location) -> Result<()> {
        // Records of an archive the checks do not apply to are not copied.
        self.with(|c| match c.out.checked {
            true => c.record(record.clone(), location),
            false => Ok(()),
        })
    }
}

fn has_fields(value: &Value) -> bool {
    let mut any = false;
    fields(value, |_, _| any = true);
    any || matches!(value, Value::Hash(_))
}

/// The fields of a hash, or the top-level members of a JSON object held in
/// a string (non-string members as their JSON text).
fn fields(value: &Value, mut f: impl FnMut(&str, &[u8])) {
    match value {
        Value::Hash(pairs) => {
            for (name, v) in pairs {
                if let Ok(name) = std::str::from_utf8(&name.0) {
                    f(name, &v.0);
                }
            }
        }
        Value::String(text) => {
            if let Ok(serde_json::Value::Object(map)) =
                serde_json::from_slice::<serde_json::Value>(&text.0)
            {
                for (name, v) in &map {
                    f(name, &json_text(v));
                }
            }
        }
        _ => {}
    }
}
