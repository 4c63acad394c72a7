//! Schema upgrades: record shapes change as an application evolves, and an
//! old archive has to come back in the shape the application reads now.
//!
//! Steps are data, not code: rename a field, move flat fields into a nested
//! JSON object, set a default, drop a field. They apply to hashes (fields)
//! and to strings that hold a JSON object (top-level members), optionally
//! only to one group's records. Each step is idempotent on a record already
//! in the new shape, so a record that needs nothing passes through as is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::record::{Bytes, Record, Value, printable};
use crate::samples::Samples;

/// The steps from data schema_version `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upgrade {
    pub(crate) from: u64,
    pub(crate) to: u64,
    #[serde(rename = "step", default)]
    pub(crate) steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Step {
    /// `field` becomes `to` (replacing `to` when both exist).
    Rename {
        #[serde(default)]
        group: Option<String>,
        field: String,
        to: String,
    },
    /// `fields` move into a JSON object under `into` (a hash field holding
    /// JSON text, or a nested member of a JSON string), named by `names`
    /// when given; an object already there keeps its other members.
    Nest {
        #[serde(default)]
        group: Option<String>,
        fields: Vec<String>,
        into: String,
        #[serde(default)]
        names: BTreeMap<String, String>,
    },
    /// `field` gets `value` when it is missing.
    Default {
        #[serde(default)]
        group: Option<String>,
        field: String,
        value: String,
    },
    /// `field` is removed.
    Drop {
        #[serde(default)]
        group: Option<String>,
        field: String,
    },
}

impl Step {
    fn group(&self) -> Option<&str> {
        match self {
            Step::Rename { group, .. }
            | Step::Nest { group, .. }
            | Step::Default { group, .. }
            | Step::Drop { group, .. } => group.as_deref(),
        }
    }

    /// Steps that must see the whole key, not one of its chunks.
    fn needs_whole_key(&self) -> bool {
        matches!(self, Step::Nest { .. } | Step::Default { .. })
    }

    /// One line for a person.
    pub(crate) fn describe(&self) -> String {
        let scope = |g: Option<&str>| g.map(|g| format!(" ({g})")).unwrap_or_default();
        match self {
            Step::Rename { group, field, to } => {
                format!("rename {field} to {to}{}", scope(group.as_deref()))
            }
            Step::Nest {
                group,
                fields,
                into,
                ..
            } => format!(
                "nest {} into {into}{}",
                fields.join(", "),
                scope(group.as_deref())
            ),
            Step::Default {
                group,
                field,
                value,
            } => format!("default {field} = {value:?}{}", scope(group.as_deref())),
            Step::Drop { group, field } => format!("drop {field}{}", scope(group.as_deref())),
        }
    }
}

/// The upgrades must lead, one version at a time, to the profile's version.
pub(crate) fn check_chain(
    upgrades: &[Upgrade],
    current: u64,
    groups: &BTreeSet<String>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for u in upgrades {
        if u.to != u.from + 1 || u.to > current {
            return Err(Error::Profile(format!(
                "upgrade from {} to {}: each upgrade goes one version up, at most to schema_version {current}",
                u.from, u.to
            )));
        }
        if !seen.insert(u.from) {
            return Err(Error::Profile(format!(
                "two upgrades from version {}",
                u.from
            )));
        }
        for step in &u.steps {
            if let Some(g) = step.group()
                && !groups.contains(g)
            {
                return Err(Error::Profile(format!(
                    "upgrade from {}: step `{}` names group {g:?}, which is not defined",
                    u.from,
                    step.describe()
                )));
            }
        }
    }
    if let Some(&lowest) = seen.iter().next()
        && let Some(gap) = (lowest..current).find(|v| !seen.contains(v))
    {
        return Err(Error::Profile(format!(
            "no upgrade from version {gap}; upgrades must cover every version from {lowest} to {current}"
        )));
    }
    Ok(())
}

/// How many records each step changed, how many were already current, and
/// which ones no step could apply to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSummary {
    /// The data schema version of the archive's records.
    pub from: u64,
    /// The version they are upgraded to (the profile's).
    pub to: u64,
    /// Records looked at (hashes and strings).
    pub records: u64,
    /// Records no step changed.
    pub current: u64,
    /// Records at least one step changed (the legacy ones).
    #[serde(default)]
    pub changed: u64,
    /// Records of a group the steps apply to that they cannot apply to:
    /// a string that is not a JSON object, a field that is not what a step
    /// expects. They are left as they are.
    #[serde(default)]
    pub broken: u64,
    /// The first broken records, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_records: Vec<BrokenRecord>,
    /// Records changed, per step.
    pub steps: Vec<StepCount>,
}

/// A record no upgrade step could apply to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenRecord {
    /// Its key.
    pub key: String,
    /// Why the steps cannot apply to it.
    pub reason: String,
}

/// Records one upgrade step changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCount {
    /// The step, described in words.
    pub step: String,
    /// Records it changed.
    pub records: u64,
}

/// What the upgrade did to one record, so that a caller that ends up not
/// writing it (a restore that skips the key) can take it out of the counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Counted among the records (the first part of a hash or string).
    pub(crate) counted: bool,
    /// The steps that changed it, by index.
    pub(crate) steps: Vec<usize>,
    /// Why no step could apply to it; it is left as it was.
    pub(crate) broken: Option<String>,
}

impl Applied {
    /// Whether the record differs from what it was.
    pub(crate) fn changed(&self) -> bool {
        !self.steps.is_empty()
    }
}

/// The steps that take records from one version to another, with counts.
#[derive(Debug, Clone)]
pub(crate) struct Upgrader {
    steps: Vec<Step>,
    summary: UpgradeSummary,
    broken: Samples<BrokenRecord>,
}

impl Upgrader {
    /// `None` when the records are already at the profile's version; an
    /// error when the profile cannot take them there.
    pub(crate) fn new(upgrades: &[Upgrade], from: u64, to: u64) -> Result<Option<Upgrader>> {
        if from >= to {
            return Ok(None);
        }
        let mut steps = Vec::new();
        for v in from..to {
            let u = upgrades.iter().find(|u| u.from == v).ok_or_else(|| {
                Error::Profile(format!(
                    "the archive's records are in data schema_version {from} but the profile has no upgrade from version {v}; add one or restore without --profile"
                ))
            })?;
            steps.extend(u.steps.iter().cloned());
        }
        let summary = UpgradeSummary {
            from,
            to,
            steps: steps
                .iter()
                .map(|s| StepCount {
                    step: s.describe(),
                    records: 0,
                })
                .collect(),
            ..UpgradeSummary::default()
        };
        Ok(Some(Upgrader {
            steps,
            summary,
            broken: Samples::default(),
        }))
    }

    /// The counts so far, with the first broken records.
    pub(crate) fn summary(&self) -> UpgradeSummary {
        let mut s = self.summary.clone();
        s.broken = self.broken.total();
        s.broken_records = self.broken.examples().to_vec();
        s
    }

    /// Whether any step applies to records of `group`.
    pub(crate) fn applies_to(&self, group: Option<&str>) -> bool {
        self.steps
            .iter()
            .any(|s| s.group().is_none_or(|g| Some(g) == group))
    }

    /// Bring one record (of `group`, when known) to the new shape, and
    /// count what was done. A record the steps cannot apply to is left as
    /// it was and counted as broken; only a step that needs a split key
    /// whole is an error.
    pub(crate) fn apply(&mut self, record: &mut Record, group: Option<&str>) -> Result<Applied> {
        let applied = self.upgrade(record, group)?;
        self.count(&record.key.0, &applied);
        Ok(applied)
    }

    /// Count what [`Upgrader::upgrade`] did to the record at `key`.
    pub(crate) fn count(&mut self, key: &[u8], applied: &Applied) {
        if applied.counted {
            self.summary.records += 1;
            if applied.broken.is_none() && !applied.changed() {
                self.summary.current += 1;
            }
            if applied.changed() {
                self.summary.changed += 1;
            }
        }
        for &i in &applied.steps {
            self.summary.steps[i].records += 1;
        }
        if let Some(reason) = &applied.broken {
            self.broken.add(BrokenRecord {
                key: printable(key),
                reason: reason.clone(),
            });
        }
    }

    /// Take a record counted by [`Upgrader::apply`] back out of the counts
    /// (a restore that does not write it after all).
    pub(crate) fn uncount(&mut self, applied: &Applied) {
        if applied.counted {
            let s = &mut self.summary;
            s.records = s.records.saturating_sub(1);
            if applied.broken.is_none() && !applied.changed() {
                s.current = s.current.saturating_sub(1);
            }
            if applied.changed() {
                s.changed = s.changed.saturating_sub(1);
            }
        }
        for &i in &applied.steps {
            let n = &mut self.summary.steps[i].records;
            *n = n.saturating_sub(1);
        }
        if applied.broken.is_some() {
            self.broken.uncount();
        }
    }

    /// The upgrade itself, counting nothing. Steps work on a copy, so a
    /// record a step fails on is left whole.
    pub(crate) fn upgrade(&self, record: &mut Record, group: Option<&str>) -> Result<Applied> {
        let mut applied = Applied::default();
        let whole = record.part == 0 && !record.more;
        let in_scope = self.applies_to(group);
        let mut doc = match &record.value {
            Value::Hash(fields) => Doc::Hash(fields.clone()),
            Value::String(text) => match serde_json::from_slice::<Json>(&text.0) {
                Ok(Json::Object(map)) => Doc::Json(map),
                Ok(other) if in_scope => {
                    applied.counted = record.part == 0;
                    applied.broken = Some(format!(
                        "holds a JSON {} where the upgrade expects an object",
                        json_kind(&other)
                    ));
                    return Ok(applied);
                }
                Err(_) if in_scope => {
                    applied.counted = record.part == 0;
                    applied.broken = Some("is a string that is not JSON".into());
                    return Ok(applied);
                }
                _ => return Ok(applied),
            },
            _ => return Ok(applied),
        };
        applied.counted = record.part == 0;
        for (i, step) in self.steps.iter().enumerate() {
            if step.group().is_some_and(|g| Some(g) != group) {
                continue;
            }
            if step.needs_whole_key() && !whole {
                return Err(Error::Profile(format!(
                    "key {} spans several records; the upgrade step `{}` needs it whole, so restore it without --profile and upgrade it in the application",
                    printable(&record.key.0),
                    step.describe()
                )));
            }
            match doc.apply(step) {
                Ok(true) => applied.steps.push(i),
                Ok(false) => {}
                Err(reason) => {
                    applied.steps.clear();
                    applied.broken = Some(format!("step `{}`: {reason}", step.describe()));
                    return Ok(applied);
                }
            }
        }
        if applied.changed() {
            match doc {
                Doc::Hash(fields) => record.value = Value::Hash(fields),
                Doc::Json(map) => {
                    record.value = Value::String(Bytes(
                        serde_json::to_vec(&Json::Object(map)).expect("JSON serializes"),
                    ))
                }
            }
        }
        Ok(applied)
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Fields of a hash, or top-level members of a JSON object.
enum Doc {
    Hash(Vec<(Bytes, Bytes)>),
    Json(Map<String, Json>),
}

impl Doc {
    fn has(&self, field: &str) -> bool {
        match self {
            Doc::Hash(h) => h.iter().any(|(f, _)| f.0 == field.as_bytes()),
            Doc::Json(m) => m.contains_key(field),
        }
    }

    /// Remove `field`, returning its value as JSON (hash values as strings).
    fn take(&mut self, field: &str) -> Result<Option<Json>, String> {
        match self {
            Doc::Hash(h) => match h.iter().position(|(f, _)| f.0 == field.as_bytes()) {
                Some(i) => {
                    let (_, v) = h.remove(i);
                    String::from_utf8(v.0)
                        .map(|s| Some(Json::String(s)))
                        .map_err(|_| format!("field {field} is not UTF-8 text"))
                }
                None => Ok(None),
            },
            Doc::Json(m) => Ok(m.remove(field)),
        }
    }

    fn put(&mut self, field: &str, value: Json) {
        match self {
            Doc::Hash(h) => {
                let bytes = match value {
                    Json::String(s) => s.into_bytes(),
                    other => other.to_string().into_bytes(),
                };
                match h.iter_mut().find(|(f, _)| f.0 == field.as_bytes()) {
                    Some((_, v)) => *v = Bytes(bytes),
                    None => h.push((Bytes::from(field), Bytes(bytes))),
                }
            }
            Doc::Json(m) => {
                m.insert(field.to_string(), value);
            }
        }
    }

    /// The object under `field`: parsed from a hash field's JSON text, or the
    /// JSON member itself; empty when absent.
    fn take_object(&mut self, field: &str) -> Result<Map<String, Json>, String> {
        match self.take(field)? {
            None => Ok(Map::new()),
            Some(Json::Object(m)) => Ok(m),
            Some(Json::String(s)) if matches!(self, Doc::Hash(_)) => {
                match serde_json::from_str::<Json>(&s) {
                    Ok(Json::Object(m)) => Ok(m),
                    _ => Err(format!("field {field} exists and is not a JSON object")),
                }
            }
            Some(_) => Err(format!("field {field} exists and is not a JSON object")),
        }
    }

    /// Apply one step; whether it changed anything.
    fn apply(&mut self, step: &Step) -> Result<bool, String> {
        match step {
            Step::Rename { field, to, .. } => match self.take(field)? {
                Some(v) => {
                    self.put(to, v);
                    Ok(true)
                }
                None => Ok(false),
            },
            Step::Nest {
                fields,
                into,
                names,
                ..
            } => {
                if !fields.iter().any(|f| self.has(f)) {
                    return Ok(false);
                }
                let mut object = self.take_object(into)?;
                for f in fields {
                    if let Some(v) = self.take(f)? {
                        object.insert(names.get(f).unwrap_or(f).clone(), v);
                    }
                }
                self.put(into, Json::Object(object));
                Ok(true)
            }
            Step::Default { field, value, .. } => {
                if self.has(field) {
                    return Ok(false);
                }
                self.put(field, Json::String(value.clone()));
                Ok(true)
            }
            Step::Drop { field, .. } => Ok(self.take(field)?.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Upgrade> {
        vec![Upgrade {
            from: 1,
            to: 2,
            steps: vec![
                Step::Rename {
                    group: None,
                    field: "stripe_id".into(),
                    to: "stripeCustomerId".into(),
                },
                Step::Nest {
                    group: Some("user".into()),
                    fields: vec!["subscriptionStatus".into(), "stripeCustomerId".into()],
                    into: "subscription".into(),
                    names: [
                        ("subscriptionStatus".to_string(), "status".to_string()),
                        ("stripeCustomerId".to_string(), "customerId".to_string()),
                    ]
                    .into(),
                },
                Step::Default {
                    group: None,
                    field: "plan".into(),
                    value: "free".into(),
                },
                Step::Drop {
                    group: None,
                    field: "legacy".into(),
                },
            ],
        }]
    }

    fn hash(key: &str, fields: &[(&str, &str)]) -> Record {
        Record {
            key: key.into(),
            expiry: None,
            part: 0,
            more: false,
            field_expiry: Vec::new(),
            void: false,
            value: Value::Hash(
                fields
                    .iter()
                    .map(|(f, v)| ((*f).into(), (*v).into()))
                    .collect(),
            ),
        }
    }

    fn field<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
        match &r.value {
            Value::Hash(h) => h
                .iter()
                .find(|(f, _)| f.0 == name.as_bytes())
                .map(|(_, v)| std::str::from_utf8(&v.0).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn flat_subscription_fields_end_up_nested() {
        let mut u = Upgrader::new(&steps(), 1, 2).unwrap().unwrap();
        let mut r = hash(
            "user:42",
            &[
                ("name", "Ada"),
                ("subscriptionStatus", "active"),
                ("stripe_id", "cus_1"),
                ("legacy", "x"),
            ],
        );
        u.apply(&mut r, Some("user")).unwrap();
        let nested: Json = serde_json::from_str(field(&r, "subscription").unwrap()).unwrap();
        assert_eq!(
            nested,
            serde_json::json!({"status": "active", "customerId": "cus_1"})
        );
        assert_eq!(field(&r, "subscriptionStatus"), None);
        assert_eq!(field(&r, "plan"), Some("free"));
        assert_eq!(field(&r, "legacy"), None);
        assert_eq!(field(&r, "name"), Some("Ada"));

        // Already in the new shape: nothing changes, and it counts as current.
        let before = r.clone();
        u.apply(&mut r, Some("user")).unwrap();
        assert_eq!(r, before);
        let s = u.summary();
        assert_eq!((s.records, s.current), (2, 1));
        assert_eq!(s.steps[1].records, 1, "{s:?}");
    }

    #[test]
    fn json_strings_are_upgraded_and_other_groups_left_alone() {
        let mut u = Upgrader::new(&steps(), 1, 2).unwrap().unwrap();
        let mut r = Record::new(
            "user:42:settings".into(),
            Value::String(r#"{"subscriptionStatus":"trial","theme":"dark"}"#.into()),
        );
        u.apply(&mut r, Some("user")).unwrap();
        let Value::String(text) = &r.value else {
            panic!()
        };
        let doc: Json = serde_json::from_slice(&text.0).unwrap();
        assert_eq!(doc["subscription"]["status"], "trial");
        assert_eq!(doc["plan"], "free");

        let mut other = hash("apikey:1", &[("subscriptionStatus", "x")]);
        u.apply(&mut other, Some("apikeys")).unwrap();
        assert_eq!(
            field(&other, "subscriptionStatus"),
            Some("x"),
            "nest is for user only"
        );
    }

    #[test]
    fn records_the_steps_cannot_apply_to_are_counted_as_broken() {
        let mut u = Upgrader::new(&steps(), 1, 2).unwrap().unwrap();
        let string = |key: &str, text: &str| Record::new(key.into(), Value::String(text.into()));
        for (key, text) in [("user:1", "not json"), ("user:2", "[1,2]")] {
            let mut r = string(key, text);
            let before = r.clone();
            let applied = u.apply(&mut r, Some("user")).unwrap();
            assert!(applied.broken.is_some() && !applied.changed());
            assert_eq!(r, before, "a broken record is left as it was");
        }
        // A hash field a step needs as an object, holding something else:
        // broken, and left whole (the rename before it is not kept).
        let mut r = hash("user:3", &[("stripe_id", "cus_3"), ("subscription", "[]")]);
        let before = r.clone();
        let applied = u.apply(&mut r, Some("user")).unwrap();
        assert!(applied.broken.unwrap().contains("not a JSON object"));
        assert_eq!(r, before);
        let mut ok = hash("user:4", &[("plan", "team")]);
        u.apply(&mut ok, Some("user")).unwrap();
        let s = u.summary();
        assert_eq!((s.records, s.current, s.changed, s.broken), (4, 1, 0, 3));
        assert_eq!(s.broken_records[0].key, "user:1");
        assert!(s.broken_records[1].reason.contains("JSON array"), "{s:?}");
        assert_eq!(s.steps.iter().map(|c| c.records).sum::<u64>(), 0);

        // A string outside the groups the steps apply to passes unnoticed.
        let mut u = Upgrader::new(
            &[Upgrade {
                from: 1,
                to: 2,
                steps: vec![Step::Drop {
                    group: Some("user".into()),
                    field: "x".into(),
                }],
            }],
            1,
            2,
        )
        .unwrap()
        .unwrap();
        let mut other = string("token:1", "opaque");
        let applied = u.apply(&mut other, Some("sessions")).unwrap();
        assert_eq!(applied, Applied::default());
        let mut legacy = hash("user:5", &[("x", "1")]);
        let applied = u.apply(&mut legacy, Some("user")).unwrap();
        u.uncount(&applied);
        let s = u.summary();
        assert_eq!(
            (s.records, s.changed, s.steps[0].records),
            (0, 0, 0),
            "uncounted"
        );
    }

    #[test]
    fn chains_must_be_complete_and_point_at_known_groups() {
        let groups: BTreeSet<String> = ["user".to_string()].into();
        assert!(check_chain(&steps(), 2, &groups).is_ok());
        assert!(
            check_chain(&steps(), 3, &groups).is_err(),
            "no upgrade from 2"
        );
        let unknown: BTreeSet<String> = BTreeSet::new();
        assert!(check_chain(&steps(), 2, &unknown).is_err());
        assert!(Upgrader::new(&steps(), 2, 2).unwrap().is_none());
        assert!(Upgrader::new(&[], 1, 2).is_err());
    }
}
