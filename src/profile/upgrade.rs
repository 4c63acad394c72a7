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

/// How many records each step changed.
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
    /// Records changed, per step.
    pub steps: Vec<StepCount>,
}

/// Records one upgrade step changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCount {
    /// The step, described in words.
    pub step: String,
    /// Records it changed.
    pub records: u64,
}

/// The steps that take records from one version to another, with counts.
#[derive(Debug, Clone)]
pub(crate) struct Upgrader {
    steps: Vec<Step>,
    summary: UpgradeSummary,
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
        Ok(Some(Upgrader { steps, summary }))
    }

    pub(crate) fn summary(&self) -> &UpgradeSummary {
        &self.summary
    }

    /// Bring one record (of `group`, when known) to the new shape.
    pub(crate) fn apply(&mut self, record: &mut Record, group: Option<&str>) -> Result<()> {
        let whole = record.part == 0 && !record.more;
        let mut json = None;
        let mut doc = match &mut record.value {
            Value::Hash(fields) => Doc::Hash(fields),
            Value::String(text) => match serde_json::from_slice::<Json>(&text.0) {
                Ok(Json::Object(map)) => {
                    json = Some(text);
                    Doc::Json(map)
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        if record.part == 0 {
            self.summary.records += 1;
        }
        let mut changed_any = false;
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
            if doc.apply(step).map_err(|reason| {
                Error::Profile(format!(
                    "key {}: step `{}`: {reason}",
                    printable(&record.key.0),
                    step.describe()
                ))
            })? {
                changed_any = true;
                self.summary.steps[i].records += 1;
            }
        }
        if !changed_any && record.part == 0 {
            self.summary.current += 1;
        }
        if let (Some(text), Doc::Json(map), true) = (json, doc, changed_any) {
            *text = Bytes(serde_json::to_vec(&Json::Object(map)).expect("JSON serializes"));
        }
        Ok(())
    }
}

/// Fields of a hash, or top-level members of a JSON object.
enum Doc<'a> {
    Hash(&'a mut Vec<(Bytes, Bytes)>),
    Json(Map<String, Json>),
}

impl Doc<'_> {
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
