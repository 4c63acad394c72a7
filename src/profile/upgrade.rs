//! Schema upgrades: record shapes change as an application evolves, and an
//! old archive has to come back in the shape the application reads now.
//!
//! Steps are data, not code: rename a field, move flat fields into a nested
//! JSON object, set a default, drop a field. They apply to hashes (fields)
//! and to strings that hold a JSON object (top-level members), optionally
//! only to one group's records. Each step is idempotent on a record already
//! in the new shape, so a record that needs nothing passes through as is.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::profile::{Bad, Seg};
use crate::record::{Bytes, Record, Value, printable};
use crate::samples::Samples;

/// The steps from data schema_version `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upgrade {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) steps: Vec<Step>,
}

/// An `[[upgrade]]` table as written; its steps become [`Step`]s once
/// checked, so that a mistake in one is reported at the value that is wrong.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpgradeFile {
    pub(crate) from: u64,
    pub(crate) to: u64,
    #[serde(rename = "step", default)]
    pub(crate) steps: Vec<StepFile>,
}

/// An `[[upgrade.step]]` table as written: every key any step takes, so an
/// unknown key is refused by the parser at its own position and a key that
/// does not belong to the step's `op` by [`Step::from_file`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepFile {
    op: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    into: Option<String>,
    #[serde(default)]
    names: Option<BTreeMap<String, String>>,
    #[serde(default)]
    value: Option<toml::Value>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    keep: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `field` becomes `to` (replacing `to` when both exist); with `keep`,
    /// `field` stays too.
    Rename {
        group: Option<String>,
        field: String,
        to: String,
        keep: bool,
    },
    /// `fields` move into a JSON object under `into` (a hash field holding
    /// JSON text, or a nested member of a JSON string), named by `names`
    /// when given; an object already there keeps its other members. With
    /// `keep`, the flat fields stay too.
    Nest {
        group: Option<String>,
        fields: Vec<String>,
        into: String,
        names: BTreeMap<String, String>,
        keep: bool,
    },
    /// `field` gets a value when it is missing.
    Default {
        group: Option<String>,
        field: String,
        fill: Fill,
    },
    /// `field` is removed.
    Drop {
        group: Option<String>,
        field: String,
    },
}

/// What a `default` step writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fill {
    /// A fixed value, any TOML value in its JSON form.
    Value(Json),
    /// The instant of the run.
    Now(NowForm),
}

/// How `now` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NowForm {
    /// Milliseconds since the Unix epoch: a JSON number.
    Ms,
    /// ISO 8601 in UTC with milliseconds: `2026-11-30T20:15:00.123Z`.
    Iso8601,
}

impl NowForm {
    fn render(self, now: DateTime<Utc>) -> Json {
        match self {
            NowForm::Ms => Json::from(now.timestamp_millis()),
            NowForm::Iso8601 => Json::String(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        }
    }
}

/// A step that cannot be built: the key of its table the mistake is in,
/// and why.
pub(crate) type StepError = (&'static str, String);

/// A TOML value in its JSON form; a date-time becomes its TOML text.
fn json_of(value: toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s),
        toml::Value::Integer(i) => Json::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} has no JSON form; use a finite number"))?,
        toml::Value::Boolean(b) => Json::Bool(b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.into_iter().map(json_of).collect::<Result<_, _>>()?),
        toml::Value::Table(t) => Json::Object(
            t.into_iter()
                .map(|(k, v)| json_of(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

impl Step {
    /// Check a step as written and build it.
    pub(crate) fn from_file(s: StepFile) -> Result<Step, StepError> {
        let given: [(&'static str, bool); 9] = [
            ("group", s.group.is_some()),
            ("field", s.field.is_some()),
            ("to", s.to.is_some()),
            ("fields", s.fields.is_some()),
            ("into", s.into.is_some()),
            ("names", s.names.is_some()),
            ("value", s.value.is_some()),
            ("now", s.now.is_some()),
            ("keep", s.keep.is_some()),
        ];
        let (takes, needs): (&[&str], &[&str]) = match s.op.as_str() {
            "rename" => (&["group", "field", "to", "keep"], &["field", "to"]),
            "nest" => (
                &["group", "fields", "into", "names", "keep"],
                &["fields", "into"],
            ),
            "default" => (&["group", "field", "value", "now"], &["field"]),
            "drop" => (&["group", "field"], &["field"]),
            other => {
                return Err((
                    "op",
                    format!("unknown op {other:?}; a step is one of rename, nest, default, drop"),
                ));
            }
        };
        let op = s.op.as_str();
        if let Some((key, _)) = given.iter().find(|(k, g)| *g && !takes.contains(k)) {
            return Err((
                key,
                format!("`{op}` takes no `{key}`; it takes {}", takes.join(", ")),
            ));
        }
        if let Some(key) = needs
            .iter()
            .find(|k| !given.iter().any(|(g, on)| g == *k && *on))
        {
            return Err(("op", format!("`{op}` needs `{key}`")));
        }
        let group = s.group;
        let keep = s.keep.unwrap_or(false);
        Ok(match op {
            "rename" => Step::Rename {
                group,
                field: s.field.unwrap_or_default(),
                to: s.to.unwrap_or_default(),
                keep,
            },
            "nest" => Step::Nest {
                group,
                fields: s.fields.unwrap_or_default(),
                into: s.into.unwrap_or_default(),
                names: s.names.unwrap_or_default(),
                keep,
            },
            "default" => {
                let fill = match (s.value, s.now) {
                    (Some(_), Some(_)) => {
                        return Err((
                            "now",
                            "give `value` (a fixed value) or `now` (the time of the run), not both"
                                .into(),
                        ));
                    }
                    (Some(v), None) => Fill::Value(json_of(v).map_err(|e| ("value", e))?),
                    (None, Some(form)) => Fill::Now(match form.as_str() {
                        "ms" => NowForm::Ms,
                        "iso8601" => NowForm::Iso8601,
                        other => {
                            return Err((
                                "now",
                                format!(
                                    "now = {other:?}: write now = \"ms\" (milliseconds since the epoch) or now = \"iso8601\" (UTC text)"
                                ),
                            ));
                        }
                    }),
                    (None, None) => {
                        return Err((
                            "op",
                            "`default` needs `value` (any TOML value) or `now` (\"ms\" or \"iso8601\")".into(),
                        ));
                    }
                };
                Step::Default {
                    group,
                    field: s.field.unwrap_or_default(),
                    fill,
                }
            }
            _ => Step::Drop {
                group,
                field: s.field.unwrap_or_default(),
            },
        })
    }

    pub(crate) fn group(&self) -> Option<&str> {
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
            Step::Rename {
                group,
                field,
                to,
                keep,
            } => {
                let verb = if *keep { "copy" } else { "rename" };
                format!("{verb} {field} to {to}{}", scope(group.as_deref()))
            }
            Step::Nest {
                group,
                fields,
                into,
                keep,
                ..
            } => {
                let verb = if *keep { "copy" } else { "nest" };
                format!(
                    "{verb} {} into {into}{}",
                    fields.join(", "),
                    scope(group.as_deref())
                )
            }
            Step::Default { group, field, fill } => {
                let value = match fill {
                    Fill::Value(v) => v.to_string(),
                    Fill::Now(NowForm::Ms) => "now (ms)".into(),
                    Fill::Now(NowForm::Iso8601) => "now (ISO 8601)".into(),
                };
                format!("default {field} = {value}{}", scope(group.as_deref()))
            }
            Step::Drop { group, field } => format!("drop {field}{}", scope(group.as_deref())),
        }
    }
}

/// The upgrades must lead, one version at a time, to the profile's version.
/// A mistake is reported at the value of the `[[upgrade]]` it is in.
pub(crate) fn check_chain(
    upgrades: &[Upgrade],
    current: u64,
    groups: &BTreeSet<String>,
) -> std::result::Result<(), Bad> {
    let mut seen = BTreeSet::new();
    for (i, u) in upgrades.iter().enumerate() {
        let at = |key: &'static str| vec![Seg::Key("upgrade"), Seg::Index(i), Seg::Key(key)];
        if u.to != u.from + 1 || u.to > current {
            return Err(Bad::new(
                at("to"),
                format!(
                    "upgrade from {} to {}: each upgrade goes one version up, at most to schema_version {current}",
                    u.from, u.to
                ),
            ));
        }
        if !seen.insert(u.from) {
            return Err(Bad::new(
                at("from"),
                format!("two upgrades from version {}", u.from),
            ));
        }
        for (j, step) in u.steps.iter().enumerate() {
            if let Some(g) = step.group()
                && !groups.contains(g)
            {
                return Err(Bad::new(
                    vec![
                        Seg::Key("upgrade"),
                        Seg::Index(i),
                        Seg::Key("step"),
                        Seg::Index(j),
                        Seg::Key("group"),
                    ],
                    format!(
                        "upgrade from {}: step `{}` names group {g:?}, which is not defined",
                        u.from,
                        step.describe()
                    ),
                ));
            }
        }
    }
    if let Some(&lowest) = seen.iter().next()
        && let Some(gap) = (lowest..current).find(|v| !seen.contains(v))
    {
        return Err(Bad::new(
            vec![Seg::Key("upgrade")],
            format!(
                "no upgrade from version {gap}; upgrades must cover every version from {lowest} to {current}"
            ),
        ));
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
    /// Strings of a group the steps apply to that were too big to travel
    /// in one record (over 64 KiB): the steps need the whole JSON, so a
    /// restore writes them as they are and `archive upgrade` brings them
    /// up, reading each whole.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub split: u64,
    /// Records changed, per step.
    pub steps: Vec<StepCount>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// A string split over several records, left as it was: its parts are
    /// not JSON on their own.
    pub(crate) split: bool,
    /// The first broken part of its key: a key is one broken record however
    /// many of its parts the steps cannot apply to.
    pub(crate) broken_first: bool,
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
    /// The key of the last broken record, whose further parts are not
    /// counted again.
    last_broken: Option<Vec<u8>>,
    /// What `now` means for every record of the run.
    now: DateTime<Utc>,
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
            last_broken: None,
            now: Utc::now(),
        }))
    }

    /// Take `now` as the instant of the run instead of the clock at
    /// [`new`](Self::new).
    pub(crate) fn with_now(mut self, now: DateTime<Utc>) -> Upgrader {
        self.now = now;
        self
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
        let mut applied = self.upgrade(record, group)?;
        applied.broken_first =
            applied.broken.is_some() && self.last_broken.as_deref() != Some(&record.key.0[..]);
        self.count(&record.key.0, &applied);
        Ok(applied)
    }

    /// Count what [`Upgrader::upgrade`] did to the record at `key`; a
    /// broken key counts once, whatever number of its parts are broken.
    pub(crate) fn count(&mut self, key: &[u8], applied: &Applied) {
        if applied.counted {
            self.summary.records += 1;
            if applied.split {
                self.summary.split += 1;
            } else if applied.broken.is_none() && !applied.changed() {
                self.summary.current += 1;
            }
            if applied.changed() {
                self.summary.changed += 1;
            }
        }
        for &i in &applied.steps {
            self.summary.steps[i].records += 1;
        }
        if let Some(reason) = &applied.broken
            && self.last_broken.as_deref() != Some(key)
        {
            self.last_broken = Some(key.to_vec());
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
            if applied.split {
                s.split = s.split.saturating_sub(1);
            } else if applied.broken.is_none() && !applied.changed() {
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
        if applied.broken_first {
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
            // Each part alone is not JSON, and a restore cannot hold a
            // string of any size whole to parse it: left as it is, counted
            // once (its first part) so the summary says so.
            Value::String(_) if !whole => {
                applied.counted = in_scope && record.part == 0;
                applied.split = applied.counted;
                return Ok(applied);
            }
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
            match doc.apply(step, self.now) {
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

    /// The value of `field` as JSON (hash values as strings).
    fn get(&self, field: &str) -> Result<Option<Json>, String> {
        match self {
            Doc::Hash(h) => match h.iter().find(|(f, _)| f.0 == field.as_bytes()) {
                Some((_, v)) => std::str::from_utf8(&v.0)
                    .map(|s| Some(Json::String(s.to_string())))
                    .map_err(|_| format!("field {field} is not UTF-8 text")),
                None => Ok(None),
            },
            Doc::Json(m) => Ok(m.get(field).cloned()),
        }
    }

    /// Remove `field`, returning its value as JSON (hash values as strings).
    fn take(&mut self, field: &str) -> Result<Option<Json>, String> {
        let value = self.get(field)?;
        match self {
            Doc::Hash(h) => h.retain(|(f, _)| f.0 != field.as_bytes()),
            Doc::Json(m) => {
                m.remove(field);
            }
        }
        Ok(value)
    }

    /// Write `field`: into a JSON document as the JSON value, into a hash
    /// as text (a string as itself, anything else as its JSON text).
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
    /// JSON member itself; `None` when absent.
    fn object(&self, field: &str) -> Result<Option<Map<String, Json>>, String> {
        match self.get(field)? {
            None => Ok(None),
            Some(Json::Object(m)) => Ok(Some(m)),
            Some(Json::String(s)) if matches!(self, Doc::Hash(_)) => {
                match serde_json::from_str::<Json>(&s) {
                    Ok(Json::Object(m)) => Ok(Some(m)),
                    _ => Err(format!("field {field} exists and is not a JSON object")),
                }
            }
            Some(_) => Err(format!("field {field} exists and is not a JSON object")),
        }
    }

    /// Apply one step; whether it changed anything. With `keep`, a record
    /// whose target already holds the legacy values is in the new shape.
    fn apply(&mut self, step: &Step, now: DateTime<Utc>) -> Result<bool, String> {
        match step {
            Step::Rename {
                field, to, keep, ..
            } => {
                let Some(v) = self.get(field)? else {
                    return Ok(false);
                };
                if *keep {
                    if self.get(to)?.as_ref() == Some(&v) {
                        return Ok(false);
                    }
                } else {
                    self.take(field)?;
                }
                self.put(to, v);
                Ok(true)
            }
            Step::Nest {
                fields,
                into,
                names,
                keep,
                ..
            } => {
                if !fields.iter().any(|f| self.has(f)) {
                    return Ok(false);
                }
                let before = self.object(into)?;
                let mut object = before.clone().unwrap_or_default();
                for f in fields {
                    let v = if *keep { self.get(f)? } else { self.take(f)? };
                    if let Some(v) = v {
                        object.insert(names.get(f).unwrap_or(f).clone(), v);
                    }
                }
                if *keep && before.as_ref() == Some(&object) {
                    return Ok(false);
                }
                self.put(into, Json::Object(object));
                Ok(true)
            }
            Step::Default { field, fill, .. } => {
                if self.has(field) {
                    return Ok(false);
                }
                let value = match fill {
                    Fill::Value(v) => v.clone(),
                    Fill::Now(form) => form.render(now),
                };
                self.put(field, value);
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
                    keep: false,
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
                    keep: false,
                },
                Step::Default {
                    group: None,
                    field: "plan".into(),
                    fill: Fill::Value("free".into()),
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

    /// A string read in parts is not JSON part by part: left as it is and
    /// counted once, never broken. A hash broken in two of its parts is
    /// one broken record.
    #[test]
    fn a_split_key_counts_once() {
        let mut u = Upgrader::new(&steps(), 1, 2).unwrap().unwrap();
        let doc = br#"{"stripe_id":"cus_1","plan":"team"}"#;
        for (i, chunk) in doc.chunks(10).enumerate() {
            let mut r = Record::new("settings:1".into(), Value::String(chunk.to_vec().into()));
            r.part = i as u32;
            r.more = (i + 1) * 10 < doc.len();
            let before = r.clone();
            let applied = u.apply(&mut r, Some("settings")).unwrap();
            assert!(applied.broken.is_none() && !applied.changed());
            assert_eq!(r, before);
        }
        let s = u.summary();
        assert_eq!((s.records, s.split, s.current, s.broken), (1, 1, 0, 0));

        let mut u = upgrader(vec![
            Step::Rename {
                group: None,
                field: "a".into(),
                to: "b".into(),
                keep: false,
            },
            Step::Rename {
                group: None,
                field: "c".into(),
                to: "d".into(),
                keep: false,
            },
        ]);
        let binary = |part: u32, field: &str| Record {
            part,
            more: part == 0,
            value: Value::Hash(vec![(field.into(), Bytes(vec![0xff, 0xfe]))]),
            ..Record::new("user:1".into(), Value::Hash(Vec::new()))
        };
        let first = u.apply(&mut binary(0, "a"), Some("user")).unwrap();
        let second = u.apply(&mut binary(1, "c"), Some("user")).unwrap();
        assert!(first.broken.is_some() && second.broken.is_some());
        assert_eq!(u.summary().broken, 1, "one key");
        u.uncount(&second);
        assert_eq!(u.summary().broken, 1, "its first part holds the count");
        u.uncount(&first);
        assert_eq!(u.summary().broken, 0);
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

    fn step(text: &str) -> Step {
        Step::from_file(toml::from_str(text).unwrap()).unwrap()
    }

    fn upgrader(steps: Vec<Step>) -> Upgrader {
        let now = DateTime::parse_from_rfc3339("2026-11-30T20:15:00.123Z").unwrap();
        Upgrader::new(
            &[Upgrade {
                from: 1,
                to: 2,
                steps,
            }],
            1,
            2,
        )
        .unwrap()
        .unwrap()
        .with_now(now.with_timezone(&Utc))
    }

    fn json_record(text: &str) -> Record {
        Record::new("doc:1".into(), Value::String(text.into()))
    }

    fn json_of_record(r: &Record) -> Json {
        let Value::String(text) = &r.value else {
            panic!("not a string")
        };
        serde_json::from_slice(&text.0).unwrap()
    }

    /// Every TOML type, and both forms of `now`, as a default.
    const DEFAULTS: &str = r#"
        s = { op = "default", field = "role", value = "user" }
        i = { op = "default", field = "views", value = 0 }
        f = { op = "default", field = "ratio", value = 0.5 }
        b = { op = "default", field = "active", value = true }
        t = { op = "default", field = "meta", value = { views = 0, tags = ["a"] } }
        a = { op = "default", field = "tags", value = ["x", 1] }
        j = { op = "default", field = "raw", value = '{"views":0}' }
        ms = { op = "default", field = "updatedAt", now = "ms" }
        iso = { op = "default", field = "createdAt", now = "iso8601" }
    "#;

    fn default_steps() -> Vec<Step> {
        let table: toml::Table = toml::from_str(DEFAULTS).unwrap();
        ["s", "i", "f", "b", "t", "a", "j", "ms", "iso"]
            .iter()
            .map(|k| Step::from_file(table[*k].clone().try_into().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn defaults_of_every_toml_type_land_as_json_values() {
        let mut u = upgrader(default_steps());
        let mut r = json_record(r#"{"name":"Ada"}"#);
        u.apply(&mut r, None).unwrap();
        assert_eq!(
            json_of_record(&r),
            serde_json::json!({
                "name": "Ada",
                "role": "user",
                "views": 0,
                "ratio": 0.5,
                "active": true,
                "meta": {"views": 0, "tags": ["a"]},
                "tags": ["x", 1],
                "raw": "{\"views\":0}",
                "updatedAt": 1_796_069_700_123_i64,
                "createdAt": "2026-11-30T20:15:00.123Z",
            })
        );
        // Present fields are kept, whatever their value.
        let mut again = json_record(r#"{"views":7,"updatedAt":1}"#);
        u.apply(&mut again, None).unwrap();
        let doc = json_of_record(&again);
        assert_eq!(
            (doc["views"].clone(), doc["updatedAt"].clone()),
            (7.into(), 1.into())
        );
    }

    #[test]
    fn defaults_in_a_hash_are_text() {
        let mut u = upgrader(default_steps());
        let mut r = hash("user:42", &[("name", "Ada")]);
        u.apply(&mut r, None).unwrap();
        assert_eq!(field(&r, "role"), Some("user"), "a string as itself");
        assert_eq!(field(&r, "views"), Some("0"));
        assert_eq!(field(&r, "ratio"), Some("0.5"));
        assert_eq!(field(&r, "active"), Some("true"));
        assert_eq!(field(&r, "meta"), Some(r#"{"tags":["a"],"views":0}"#));
        assert_eq!(field(&r, "tags"), Some(r#"["x",1]"#));
        assert_eq!(field(&r, "raw"), Some(r#"{"views":0}"#));
        assert_eq!(field(&r, "updatedAt"), Some("1796069700123"));
        assert_eq!(field(&r, "createdAt"), Some("2026-11-30T20:15:00.123Z"));
    }

    #[test]
    fn now_is_one_instant_for_the_whole_run() {
        let mut u = upgrader(default_steps());
        let mut a = json_record("{}");
        let mut b = hash("user:1", &[]);
        u.apply(&mut a, None).unwrap();
        u.apply(&mut b, None).unwrap();
        assert_eq!(
            json_of_record(&a)["createdAt"].as_str(),
            field(&b, "createdAt")
        );
    }

    #[test]
    fn default_steps_are_checked() {
        let bad = |text: &str| Step::from_file(toml::from_str(text).unwrap()).unwrap_err();
        let (key, why) = bad("op = \"default\"\nfield = \"a\"\nvalue = 1\nnow = \"ms\"");
        assert_eq!(key, "now");
        assert!(why.contains("not both"), "{why}");
        assert_eq!(
            bad("op = \"default\"\nfield = \"a\"\nnow = \"today\"").0,
            "now"
        );
        assert_eq!(bad("op = \"default\"\nfield = \"a\"").0, "op");
        assert_eq!(
            bad("op = \"default\"\nfield = \"a\"\nvalue = nan").0,
            "value"
        );
        assert_eq!(bad("op = \"drop\"\nfield = \"a\"\nkeep = true").0, "keep");
        // The literal string "now" is a value like any other.
        let s = step("op = \"default\"\nfield = \"a\"\nvalue = \"now\"");
        assert_eq!(s.describe(), "default a = \"now\"");
        assert_eq!(
            step("op = \"default\"\nfield = \"a\"\nnow = \"ms\"").describe(),
            "default a = now (ms)"
        );
    }

    #[test]
    fn keep_copies_and_a_copied_record_is_current() {
        let steps = vec![
            step("op = \"rename\"\nfield = \"stripe_id\"\nto = \"customerId\"\nkeep = true"),
            step(
                "op = \"nest\"\nfields = [\"status\", \"plan\"]\ninto = \"subscription\"\nkeep = true",
            ),
        ];
        assert_eq!(steps[0].describe(), "copy stripe_id to customerId");
        let mut u = upgrader(steps);
        let mut r = hash(
            "user:42",
            &[
                ("stripe_id", "cus_1"),
                ("status", "active"),
                ("plan", "pro"),
            ],
        );
        u.apply(&mut r, None).unwrap();
        assert_eq!(field(&r, "stripe_id"), Some("cus_1"), "legacy field stays");
        assert_eq!(field(&r, "customerId"), Some("cus_1"));
        assert_eq!(field(&r, "status"), Some("active"));
        let nested: Json = serde_json::from_str(field(&r, "subscription").unwrap()).unwrap();
        assert_eq!(
            nested,
            serde_json::json!({"status": "active", "plan": "pro"})
        );

        let before = r.clone();
        u.apply(&mut r, None).unwrap();
        assert_eq!(r, before, "a copied record needs nothing more");
        assert_eq!(u.summary().current, 1);

        // A legacy field changed since the copy: the copy follows it.
        let mut changed = hash(
            "user:43",
            &[("stripe_id", "cus_2"), ("customerId", "cus_1")],
        );
        u.apply(&mut changed, None).unwrap();
        assert_eq!(field(&changed, "customerId"), Some("cus_2"));
        assert_eq!(u.summary().steps[0].records, 2);

        let mut doc = json_record(r#"{"status":"trial","subscription":{"since":1}}"#);
        u.apply(&mut doc, None).unwrap();
        assert_eq!(
            json_of_record(&doc),
            serde_json::json!({"status": "trial", "subscription": {"since": 1, "status": "trial"}})
        );
    }
}
