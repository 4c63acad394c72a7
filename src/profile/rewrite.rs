//! Restoring a user archive: upgrade old records, and write a user's
//! records under another id (`restore --as-user`).
//!
//! Every record is first placed in its group by its key. Upgrade steps then
//! bring it to the profile's shape. Under `--as-user` the user id is
//! rewritten wherever the profile says it is: in key names (`{user}`), in
//! the members of the user's index keys and of shared indexes, and in owner
//! fields. Records whose key has no `{user}` (`apikey:{id}`) get a new id
//! (the group's `clone_id`, `{user}-{id}` by default), otherwise the clone
//! would write over the original's records; every field the profile
//! declares as a reference to such a group follows the new id.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::archive::Header;
use crate::error::{Error, Result};
use crate::profile::select::json_text;
use crate::profile::template::{Captures, replace};
use crate::profile::upgrade::{Applied, UpgradeSummary, Upgrader};
use crate::profile::{Group, Profile, ProfileScope};
use crate::record::{Bytes, Record, Value};

/// Which part of a group a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// A key named after the user (`keys`).
    Named(Captures),
    /// A record found by id (`key`).
    ById(Captures),
    /// The user's index of ids.
    Index(Captures),
    /// A shared index holding the user's members.
    Shared,
    /// A shared hash holding the user's fields.
    SharedHash,
}

impl Part {
    /// Keys that hold ids, not records: upgrade steps never apply to them,
    /// and a shared one holds other users' members and fields too.
    pub(crate) fn is_shared_or_index(&self) -> bool {
        matches!(self, Part::Index(_) | Part::Shared | Part::SharedHash)
    }
}

/// The group (by position in the profile) and part a key belongs to. With
/// the user known, the first group that claims the key wins. Without it
/// (whole-group archives) `{user}` matches any id, so `user:{user}` would
/// also claim `user:42:projects`; the claim that leaves least to the
/// placeholders (the most literal match) wins instead.
pub(crate) fn classify(
    profile: &Profile,
    key: &[u8],
    user: Option<&[u8]>,
) -> Option<(usize, Part)> {
    let mut best: Option<(usize, usize, Part)> = None;
    for (i, g) in profile.groups.iter().enumerate() {
        for (part, caps) in claims(g, key, user) {
            if user.is_some() {
                return Some((i, part));
            }
            let width = caps.user.map_or(0, |r| r.len()) + caps.id.map_or(0, |r| r.len());
            if best.as_ref().is_none_or(|(w, ..)| width < *w) {
                best = Some((width, i, part));
            }
        }
    }
    best.map(|(_, i, part)| (i, part))
}

/// Every way group `g` claims `key`, in order of precedence.
fn claims(g: &Group, key: &[u8], user: Option<&[u8]>) -> Vec<(Part, Captures)> {
    let mut out = Vec::new();
    if let Some(shared) = &g.shared
        && shared.key == key
    {
        out.push((Part::Shared, Captures::default()));
    }
    if let Some(h) = &g.shared_hash
        && h.key == key
    {
        out.push((Part::SharedHash, Captures::default()));
    }
    if let Some(by_id) = &g.by_id
        && let Some(index) = &by_id.index
        && let Some(c) = index.captures(key, user)
    {
        out.push((Part::Index(c.clone()), c));
    }
    if let Some(c) = g.keys.iter().find_map(|t| t.captures(key, user)) {
        out.push((Part::Named(c.clone()), c));
    }
    if let Some(by_id) = &g.by_id
        && let Some(c) = by_id.key.captures(key, user)
    {
        out.push((Part::ById(c.clone()), c));
    }
    out
}

/// What restore does to records of a user archive under a profile.
#[derive(Debug)]
pub(crate) struct Rewriter {
    profile: Arc<Profile>,
    user: Option<Vec<u8>>,
    as_user: Option<Vec<u8>>,
    upgrader: Option<Upgrader>,
}

impl Rewriter {
    /// Check the archive against the profile and set up what its records
    /// need. `None` when nothing is to be done to them.
    pub(crate) fn prepare(
        profile: Option<&Arc<Profile>>,
        header: &Header,
        as_user: Option<&str>,
        archive: &str,
    ) -> Result<Option<Rewriter>> {
        let Some(profile) = profile else {
            if as_user.is_some() {
                return Err(Error::InvalidArgument(
                    "--as-user needs the profile that describes the user's records; pass --profile FILE (or set ARCHIVE_PROFILE)".into(),
                ));
            }
            return Ok(None);
        };
        let Some(scope) = &header.profile else {
            if as_user.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "{archive} is not a user archive (it was not exported with a USER_ID); --as-user applies to user archives"
                )));
            }
            return Ok(None);
        };
        check_scope(profile, scope, archive)?;
        let user = scope.user.as_ref().map(|u| u.as_bytes().to_vec());
        if as_user.is_some() && user.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{archive} holds whole groups, not one user's records; --as-user applies to an archive exported with a USER_ID"
            )));
        }
        if let Some(new) = as_user {
            check_user_id(new)?;
        }
        let upgrader = Upgrader::new(
            &profile.upgrades,
            scope.schema_version,
            profile.schema_version,
        )?;
        let as_user = as_user
            .map(|u| u.as_bytes().to_vec())
            .filter(|u| Some(u) != user.as_ref());
        if upgrader.is_none() && as_user.is_none() {
            return Ok(None);
        }
        Ok(Some(Rewriter {
            profile: profile.clone(),
            user,
            as_user,
            upgrader,
        }))
    }

    /// Take `now` as the instant upgrade steps write.
    pub(crate) fn at(mut self, now: DateTime<Utc>) -> Rewriter {
        self.upgrader = self.upgrader.map(|u| u.with_now(now));
        self
    }

    pub(crate) fn upgrade_summary(&self) -> Option<UpgradeSummary> {
        self.upgrader.as_ref().map(|u| u.summary())
    }

    /// Take a record back out of the upgrade's counts: the restore does
    /// not write it after all.
    pub(crate) fn uncount(&mut self, applied: &Applied) {
        if let Some(up) = self.upgrader.as_mut() {
            up.uncount(applied);
        }
    }

    /// Upgrade and rewrite one record; what the upgrade did to it.
    pub(crate) fn apply(&mut self, record: &mut Record) -> Result<Applied> {
        let class = classify(&self.profile, &record.key.0, self.user.as_deref());
        let group = class.as_ref().map(|(i, _)| &self.profile.groups[*i]);
        let applied = match self.upgrader.as_mut() {
            Some(up) if !class.as_ref().is_some_and(|(_, p)| p.is_shared_or_index()) => {
                up.apply(record, group.map(|g| g.name.as_str()))?
            }
            _ => Applied::default(),
        };
        let (Some(new), Some(old), Some((_, part)), Some(group)) =
            (&self.as_user, &self.user, &class, group)
        else {
            return Ok(applied);
        };
        let ids = Ids { new_user: new };
        match part {
            Part::Named(c) => record.key = Bytes(replace(&record.key.0, c, Some(new), None)),
            Part::ById(c) => {
                let id = c.id.clone().map(|r| record.key.0[r].to_vec());
                let new_id = id.map(|id| ids.map(group, &id));
                record.key = Bytes(replace(&record.key.0, c, Some(new), new_id.as_deref()));
            }
            Part::Index(c) => {
                record.key = Bytes(replace(&record.key.0, c, Some(new), None));
                map_members(&mut record.value, |m| Some(ids.map(group, m)));
            }
            Part::Shared => {
                let shared = group.shared.as_ref().expect("classified as shared");
                map_members(&mut record.value, |m| {
                    shared
                        .member
                        .captures(m, Some(old))
                        .map(|c| replace(m, &c, Some(new), None))
                });
            }
            // The side that holds an id follows the clone: the user id, or
            // the id the `ids` group's records get (their clone_id).
            Part::SharedHash => {
                let h = group
                    .shared_hash
                    .as_ref()
                    .expect("classified as shared hash");
                let map = |id: &[u8]| match &h.ids {
                    None if id == &old[..] => new.clone(),
                    None => id.to_vec(),
                    Some(g) => match self.profile.group(g) {
                        Some(target) => ids.map(target, id),
                        None => id.to_vec(),
                    },
                };
                if let Value::Hash(fields) = &mut record.value {
                    for (f, v) in fields.iter_mut() {
                        let id = if h.by_field { &mut f.0 } else { &mut v.0 };
                        *id = map(id);
                    }
                }
                return Ok(applied);
            }
        }
        for_each_field(&mut record.value, |field, value| {
            if group.owner_field.as_deref().map(str::as_bytes) == Some(field) && value == old {
                return Some(new.clone());
            }
            let reference = group
                .references
                .iter()
                .find(|r| r.field.as_bytes() == field)?;
            let target = self.profile.group(&reference.group)?;
            Some(ids.map(target, value))
        });
        Ok(applied)
    }
}

/// The archive's profile must be the one given, and not newer.
pub(crate) fn check_scope(profile: &Profile, scope: &ProfileScope, archive: &str) -> Result<()> {
    if scope.name != profile.name {
        return Err(Error::Profile(format!(
            "{archive} was exported with profile {:?}, but {} is profile {:?}; pass the matching --profile",
            scope.name,
            profile.path.display(),
            profile.name
        )));
    }
    if scope.schema_version > profile.schema_version {
        return Err(Error::DataSchemaTooNew {
            path: archive.to_string(),
            profile: profile.name.clone(),
            found: scope.schema_version,
            supported: profile.schema_version,
        });
    }
    Ok(())
}

/// A user id must be usable inside key names and patterns.
pub fn check_user_id(id: &str) -> Result<()> {
    if id.is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::InvalidArgument(format!(
            "user id {id:?} is empty or holds spaces or control characters"
        )));
    }
    Ok(())
}

/// How ids change in a clone.
struct Ids<'a> {
    new_user: &'a [u8],
}

impl Ids<'_> {
    /// The clone's id for record `id` of `group`: unchanged when the
    /// group's keys carry the user already.
    fn map(&self, group: &Group, id: &[u8]) -> Vec<u8> {
        match &group.by_id {
            Some(b) if !b.key.has_user() => b.clone_id.render(self.new_user, id),
            _ => id.to_vec(),
        }
    }
}

/// Rewrite the members of a set, sorted set or list; `None` keeps one.
fn map_members(value: &mut Value, f: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    let apply = |b: &mut Bytes| {
        if let Some(new) = f(&b.0) {
            b.0 = new;
        }
    };
    match value {
        Value::Set(items) | Value::List(items) => items.iter_mut().for_each(apply),
        Value::Zset(members) => members.iter_mut().for_each(|(m, _)| apply(m)),
        _ => {}
    }
}

/// Visit the fields of a hash, or the top-level string members of a JSON
/// object held in a string; `f` returns a new value for a field to change.
pub(crate) fn for_each_field(
    value: &mut Value,
    mut f: impl FnMut(&[u8], &[u8]) -> Option<Vec<u8>>,
) {
    match value {
        Value::Hash(fields) => {
            for (name, v) in fields.iter_mut() {
                if let Some(new) = f(&name.0, &v.0) {
                    v.0 = new;
                }
            }
        }
        Value::String(text) => with_json_object(text, |map| {
            let mut changed = false;
            for (name, v) in map.iter_mut() {
                if !(v.is_string() || v.is_number()) {
                    continue;
                }
                let Some(new) = f(name.as_bytes(), &json_text(v)) else {
                    continue;
                };
                let Ok(new) = String::from_utf8(new) else {
                    continue;
                };
                // A number stays a number when the new id is one.
                *v = match (
                    v.is_number(),
                    serde_json::from_str::<serde_json::Number>(&new),
                ) {
                    (true, Ok(n)) => serde_json::Value::Number(n),
                    _ => serde_json::Value::String(new),
                };
                changed = true;
            }
            changed
        }),
        _ => {}
    }
}

/// Let `f` change the members of the JSON object held in `text` (returning
/// whether it did), and write it back when it did. Text that is not a JSON
/// object is left as it is.
pub(crate) fn with_json_object(
    text: &mut Bytes,
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> bool,
) {
    let Ok(serde_json::Value::Object(mut map)) =
        serde_json::from_slice::<serde_json::Value>(&text.0)
    else {
        return;
    };
    if f(&mut map) {
        text.0 = serde_json::to_vec(&serde_json::Value::Object(map)).expect("JSON");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PROFILE: &str = r#"
name = "review"
schema_version = 1
[[group]]
name = "user"
keys = ["user:{user}", "user:{user}:settings"]
owner_field = "id"
[[group]]
name = "projects"
key = "project:{id}"
index = "user:{user}:projects"
owner_field = "ownerId"
[[group]]
name = "tasks"
key = "task:{user}:{id}"
references = [{ field = "projectId", group = "projects" }]
[[group]]
name = "directory"
shared_index = "users:all"
member = "user:{user}"
"#;

    fn profile() -> Arc<Profile> {
        Arc::new(Profile::parse(PROFILE, Path::new("review.toml")).unwrap())
    }

    fn rec(key: &str, value: Value) -> Record {
        Record::new(key.into(), value)
    }

    fn rewriter() -> Rewriter {
        Rewriter {
            profile: profile(),
            user: Some(b"42".to_vec()),
            as_user: Some(b"99".to_vec()),
            upgrader: None,
        }
    }

    #[test]
    fn keys_are_classified_without_mixing_users() {
        let p = profile();
        let c = |k: &str| classify(&p, k.as_bytes(), Some(b"4")).map(|(i, _)| i);
        assert_eq!(c("user:4"), Some(0));
        assert_eq!(c("user:42"), None);
        assert_eq!(c("user:4:projects"), Some(1));
        assert_eq!(c("project:p1"), Some(1));
        assert_eq!(c("task:4:t1"), Some(2));
        assert_eq!(c("task:42:t1"), None);
        assert_eq!(c("users:all"), Some(3));

        // Whole-group archives: no user known, the most literal claim wins.
        let any = |k: &str| classify(&p, k.as_bytes(), None).map(|(i, _)| i);
        assert_eq!(any("user:42"), Some(0));
        assert_eq!(
            any("user:42:projects"),
            Some(1),
            "the index, not user 42:projects"
        );
        assert_eq!(any("task:42:t1"), Some(2));
    }

    #[test]
    fn as_user_rewrites_names_members_owners_and_references() {
        let mut r = rewriter();
        let hash = |pairs: &[(&str, &str)]| {
            Value::Hash(
                pairs
                    .iter()
                    .map(|(f, v)| ((*f).into(), (*v).into()))
                    .collect(),
            )
        };

        let mut user = rec("user:42", hash(&[("id", "42"), ("name", "Ada")]));
        r.apply(&mut user).unwrap();
        assert_eq!(user, rec("user:99", hash(&[("id", "99"), ("name", "Ada")])));

        let mut project = rec("project:p1", hash(&[("ownerId", "42"), ("note", "42")]));
        r.apply(&mut project).unwrap();
        assert_eq!(
            project,
            rec("project:99-p1", hash(&[("ownerId", "99"), ("note", "42")]))
        );

        let mut index = rec(
            "user:42:projects",
            Value::Set(vec!["p1".into(), "p2".into()]),
        );
        r.apply(&mut index).unwrap();
        assert_eq!(
            index,
            rec(
                "user:99:projects",
                Value::Set(vec!["99-p1".into(), "99-p2".into()])
            )
        );

        let mut task = rec("task:42:t1", hash(&[("projectId", "p1")]));
        r.apply(&mut task).unwrap();
        assert_eq!(task, rec("task:99:t1", hash(&[("projectId", "99-p1")])));

        let mut shared = rec(
            "users:all",
            Value::Zset(vec![("user:42".into(), crate::record::Score(1.0))]),
        );
        r.apply(&mut shared).unwrap();
        assert_eq!(
            shared,
            rec(
                "users:all",
                Value::Zset(vec![("user:99".into(), crate::record::Score(1.0))])
            )
        );

        let mut settings = rec(
            "user:42:settings",
            Value::String(r#"{"id":"42","theme":"dark"}"#.into()),
        );
        r.apply(&mut settings).unwrap();
        assert_eq!(
            settings,
            rec(
                "user:99:settings",
                Value::String(r#"{"id":"99","theme":"dark"}"#.into())
            )
        );
    }
}
