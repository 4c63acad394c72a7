//! Profiles: where an application keeps one user's records, and how its
//! record shapes changed between versions.
//!
//! No Redis tool can know that `apikey:k1` belongs to user 42 because its
//! `userId` field says so, or that `users:by_created` holds one member per
//! user. A profile (a small TOML file, docs/PROFILES.md) says it as data:
//! record groups that find a user's keys by template, through an index key,
//! by an owner field, or as members of a shared index; the fields each
//! group requires and references; and upgrade steps from one data
//! schema_version to the next. Export uses the groups to select
//! ([`select`]), restore to write a user's records under another id and to
//! upgrade old records ([`rewrite`]), validate to check records ([`check`]).

pub mod check;
pub mod offline;
pub mod rewrite;
pub mod select;
pub mod sensitive;
pub mod template;
pub mod upgrade;

pub use crate::archive::manifest::ProfileScope;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use template::Template;
pub(crate) use upgrade::Upgrade;
use upgrade::{Step, UpgradeFile};

/// Environment variable naming the profile file when `--profile` is not given.
pub const PROFILE_ENV: &str = "ARCHIVE_PROFILE";
/// Profile file looked for in the current directory last.
pub const DEFAULT_PROFILE_FILE: &str = "archive.toml";

/// A profile file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    schema_version: u64,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "group", default)]
    groups: Vec<GroupFile>,
    #[serde(rename = "upgrade", default)]
    upgrades: Vec<UpgradeFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    #[serde(default = "yes")]
    per_user: bool,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    index: Option<String>,
    #[serde(default)]
    owner_field: Option<String>,
    #[serde(default)]
    shared_index: Option<String>,
    #[serde(default)]
    member: Option<String>,
    #[serde(default)]
    shared_hash: Option<String>,
    #[serde(default, rename = "match")]
    match_on: Option<String>,
    #[serde(default)]
    ids: Option<String>,
    #[serde(default)]
    clone_id: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    sensitive: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A field that holds the id of a record of another (or the same) group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reference {
    pub(crate) field: String,
    pub(crate) group: String,
}

/// Records of one group found by id: `key` with `{id}`, the ids taken from
/// an index key's members or found by scanning for an owner field.
#[derive(Debug, Clone)]
pub(crate) struct ById {
    pub(crate) key: Template,
    /// A set, sorted set or list of ids, one per user (`user:{user}:apikeys`).
    pub(crate) index: Option<Template>,
    /// How a clone's ids are made from the user's: `{user}` is the new
    /// user, `{id}` the old id. Only used when `key` has no `{user}`.
    pub(crate) clone_id: Template,
}

/// Members a user owns in a set or sorted set shared by all users.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The shared key, the same for every user.
    pub(crate) key: Vec<u8>,
    /// The SCAN pattern that names just that key.
    pub(crate) pattern: String,
    /// The user's member (`{user}`, `user:{user}`).
    pub(crate) member: Template,
}

/// Fields a user owns in a hash shared by all users, found by value (or by
/// field name): those that hold the user id, or the id of one of the
/// user's records of another group (`apikey_hash_map`: hashed API key ->
/// key id).
#[derive(Debug, Clone)]
pub(crate) struct SharedHash {
    /// The shared key, the same for every user.
    pub(crate) key: Vec<u8>,
    /// The SCAN pattern that names just that key.
    pub(crate) pattern: String,
    /// Match field names instead of values.
    pub(crate) by_field: bool,
    /// The group whose record ids select fields; `None`: the user id.
    pub(crate) ids: Option<String>,
}

/// A kind of record the application keeps per user (or shared by all
/// users), and how its keys are found.
#[derive(Debug, Clone)]
pub struct Group {
    /// The group's name, as `--types` takes it.
    pub name: String,
    /// False for data shared by all users (admins, global settings): taken
    /// only by `export --types` without a user.
    pub per_user: bool,
    /// Keys named after the user, exact or glob.
    pub(crate) keys: Vec<Template>,
    pub(crate) by_id: Option<ById>,
    /// A hash field (or top-level JSON field of a string) naming the owner.
    pub(crate) owner_field: Option<String>,
    pub(crate) shared: Option<Shared>,
    pub(crate) shared_hash: Option<SharedHash>,
    pub(crate) required: Vec<String>,
    pub(crate) references: Vec<Reference>,
    /// Fields whose values `export --redact` replaces (hash fields, or
    /// top-level members of a JSON object stored in a string).
    pub sensitive: Vec<String>,
}

/// An application profile (`archive.toml`): which keys belong to a user, in
/// which groups, and how records of older data schema versions are
/// upgraded.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The application's name, recorded in the archives exported through it.
    pub name: String,
    /// The data schema_version the application reads now.
    pub schema_version: u64,
    /// Free text for people reading the file.
    pub description: Option<String>,
    /// The groups, in the file's order.
    pub groups: Vec<Group>,
    pub(crate) upgrades: Vec<Upgrade>,
    /// Where it was read from.
    pub path: PathBuf,
}

impl Profile {
    /// The profile named by `--profile`, else by `ARCHIVE_PROFILE`, else
    /// `archive.toml` in the current directory when there is one.
    pub fn locate(explicit: Option<&Path>) -> Result<Option<Profile>> {
        if let Some(path) = explicit {
            return Profile::load(path).map(Some);
        }
        if let Some(path) = std::env::var_os(PROFILE_ENV).filter(|p| !p.is_empty()) {
            return Profile::load(Path::new(&path)).map(Some);
        }
        let local = Path::new(DEFAULT_PROFILE_FILE);
        if local.is_file() {
            return Profile::load(local).map(Some);
        }
        Ok(None)
    }

    /// Read and check the profile at `path`.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Input {
            path: path.to_path_buf(),
            source: e,
        })?;
        Profile::parse(&text, path)
    }

    /// Parse and check profile text; `path` is only named in messages,
    /// with the line and column of the value a mistake is in.
    pub fn parse(text: &str, path: &Path) -> Result<Profile> {
        let file: ProfileFile = toml::from_str(text).map_err(|e| {
            Error::Profile(format!(
                "{}: {}",
                position(path, text, e.span().map(|s| s.start)),
                e.message().trim_end()
            ))
        })?;
        Profile::build(file, path).map_err(|bad| {
            Error::Profile(format!(
                "{}: {}",
                position(path, text, bad.offset(text)),
                bad.message
            ))
        })
    }

    fn build(file: ProfileFile, path: &Path) -> std::result::Result<Profile, Bad> {
        if file.name.trim().is_empty() {
            return Err(Bad::new(
                vec![Seg::Key("name")],
                "`name` must not be empty".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut groups = Vec::with_capacity(file.groups.len());
        for (i, g) in file.groups.into_iter().enumerate() {
            if !names.insert(g.name.clone()) {
                return Err(Bad::new(
                    group_at(i, "name"),
                    format!("group {:?} is defined twice", g.name),
                ));
            }
            groups.push(build_group(g, i)?);
        }
        if groups.is_empty() {
            return Err(Bad::new(Vec::new(), "no [[group]] defined".into()));
        }
        for (i, g) in groups.iter().enumerate() {
            for (k, r) in g.references.iter().enumerate() {
                let at = || {
                    let mut at = group_at(i, "references");
                    at.extend([Seg::Index(k), Seg::Key("group")]);
                    at
                };
                let target = groups.iter().find(|t| t.name == r.group).ok_or_else(|| {
                    Bad::new(
                        at(),
                        format!(
                            "group {:?}: reference {:?} names group {:?}, which is not defined",
                            g.name, r.field, r.group
                        ),
                    )
                })?;
                if target.by_id.is_none() {
                    return Err(Bad::new(
                        at(),
                        format!(
                            "group {:?}: reference {:?} names group {:?}, which has no `key` with {{id}}",
                            g.name, r.field, r.group
                        ),
                    ));
                }
            }
        }
        for (i, g) in groups.iter().enumerate() {
            let Some(ids) = g.shared_hash.as_ref().and_then(|h| h.ids.as_ref()) else {
                continue;
            };
            match groups.iter().find(|t| &t.name == ids) {
                Some(t) if t.by_id.is_some() && t.per_user => {}
                Some(_) => {
                    return Err(Bad::new(
                        group_at(i, "ids"),
                        format!(
                            "group {:?}: ids = {ids:?} names a group without `key` with {{id}} (or not per user); its records' ids select the shared hash's fields",
                            g.name
                        ),
                    ));
                }
                None => {
                    return Err(Bad::new(
                        group_at(i, "ids"),
                        format!(
                            "group {:?}: ids = {ids:?} names no group of this profile",
                            g.name
                        ),
                    ));
                }
            }
        }
        let mut upgrades = Vec::with_capacity(file.upgrades.len());
        for (i, u) in file.upgrades.into_iter().enumerate() {
            let mut steps = Vec::with_capacity(u.steps.len());
            for (j, s) in u.steps.into_iter().enumerate() {
                steps.push(Step::from_file(s).map_err(|(key, message)| {
                    let at = vec![
                        Seg::Key("upgrade"),
                        Seg::Index(i),
                        Seg::Key("step"),
                        Seg::Index(j),
                        Seg::Key(key),
                    ];
                    Bad::new(at, format!("upgrade from {}: {message}", u.from))
                })?);
            }
            upgrades.push(Upgrade {
                from: u.from,
                to: u.to,
                steps,
            });
        }
        sensitive::check(&groups)?;
        upgrade::check_chain(&upgrades, file.schema_version, &names)?;
        for g in &mut groups {
            sensitive::add_legacy_names(g, &upgrades);
        }
        Ok(Profile {
            name: file.name,
            schema_version: file.schema_version,
            description: file.description,
            groups,
            upgrades,
            path: path.to_path_buf(),
        })
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The groups named in `--types` (when none are named: all of them,
    /// or for one user's export all the per-user ones).
    pub(crate) fn select_groups(&self, names: &[String], for_user: bool) -> Result<Vec<&Group>> {
        if names.is_empty() {
            return Ok(self
                .groups
                .iter()
                .filter(|g| g.per_user || !for_user)
                .collect());
        }
        let mut out: Vec<&Group> = Vec::new();
        for name in names {
            let group = self.group(name).ok_or_else(|| {
                let known: Vec<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
                Error::InvalidArgument(format!(
                    "--types {name}: profile {:?} has no such group; its groups are {}",
                    self.name,
                    known.join(", ")
                ))
            })?;
            if for_user && !group.per_user {
                return Err(Error::InvalidArgument(format!(
                    "--types {name}: group {name:?} is shared by all users (per_user = false); export it without a USER_ID"
                )));
            }
            if !out.iter().any(|g| g.name == group.name) {
                out.push(group);
            }
        }
        for g in &out {
            if let Some(ids) = g.shared_hash.as_ref().and_then(|h| h.ids.as_ref())
                && for_user
                && !out.iter().any(|t| &t.name == ids)
            {
                return Err(Error::InvalidArgument(format!(
                    "--types {}: its fields are selected by the ids of group {ids:?}; add {ids} to --types",
                    g.name
                )));
            }
        }
        Ok(out)
    }
}

/// Where the `field` of the `i`-th `[[group]]` is.
fn group_at(i: usize, field: &'static str) -> Vec<Seg> {
    vec![Seg::Key("group"), Seg::Index(i), Seg::Key(field)]
}

fn build_group(g: GroupFile, i: usize) -> std::result::Result<Group, Bad> {
    let name = g.name.clone();
    let bad = |at: Vec<Seg>, reason: String| Bad::new(at, format!("group {name:?}: {reason}"));
    let fail = |field: &'static str, reason: String| Err(bad(group_at(i, field), reason));
    let template = |at: Vec<Seg>, what: &str, text: &str| {
        Template::parse(text).map_err(|e| {
            let e = match e {
                Error::Profile(reason) => reason,
                other => other.to_string(),
            };
            bad(at, format!("{what} {text:?}: {e}"))
        })
    };
    let mut keys = Vec::with_capacity(g.keys.len());
    for (k, text) in g.keys.iter().enumerate() {
        let mut at = group_at(i, "keys");
        at.push(Seg::Index(k));
        let t = template(at.clone(), "key", text)?;
        if t.has_id() || (g.per_user && !t.has_user()) {
            // Without {user} the template would take every user's keys.
            return Err(bad(
                at,
                format!(
                    "keys entry {text:?} must contain {{user}} and no {{id}} (use `key` for records found by id, `per_user = false` for data shared by all users)"
                ),
            ));
        }
        keys.push(t);
    }
    let by_id = match &g.key {
        Some(text) => {
            let key = template(group_at(i, "key"), "key", text)?;
            if key.text().matches("{id}").count() != 1 {
                return fail(
                    "key",
                    format!("key {text:?} must contain {{id}} exactly once"),
                );
            }
            let index = match &g.index {
                Some(text) => {
                    let t = template(group_at(i, "index"), "index", text)?;
                    if !t.is_exact() || !t.has_user() {
                        return fail(
                            "index",
                            format!(
                                "index {text:?} must name one key per user: {{user}} and no glob or {{id}}"
                            ),
                        );
                    }
                    Some(t)
                }
                None => None,
            };
            if g.per_user && index.is_none() && g.owner_field.is_none() && !key.has_user() {
                return fail(
                    "key",
                    format!(
                        "key {text:?} has no {{user}}: say how a user's ids are found, with `index` or `owner_field`"
                    ),
                );
            }
            let clone_id = template(
                group_at(
                    i,
                    if g.clone_id.is_some() {
                        "clone_id"
                    } else {
                        "key"
                    },
                ),
                "clone_id",
                g.clone_id.as_deref().unwrap_or("{user}-{id}"),
            )?;
            if !clone_id.has_id() || !clone_id.has_user() || clone_id.has_glob() {
                return fail(
                    "clone_id",
                    "clone_id must contain {user} and {id} and no glob".into(),
                );
            }
            Some(ById {
                key,
                index,
                clone_id,
            })
        }
        None => {
            if g.index.is_some() || g.clone_id.is_some() {
                return fail(
                    if g.index.is_some() {
                        "index"
                    } else {
                        "clone_id"
                    },
                    "`index` and `clone_id` need `key` (the records' key with {id})".into(),
                );
            }
            None
        }
    };
    let shared = match (&g.shared_index, &g.member) {
        (Some(key), Some(member)) => {
            let k = template(group_at(i, "shared_index"), "shared_index", key)?;
            if k.has_user() || k.has_id() || !k.is_exact() {
                return fail(
                    "shared_index",
                    format!(
                        "shared_index {key:?} names one key shared by all users: no placeholder, no glob"
                    ),
                );
            }
            let m = template(group_at(i, "member"), "member", member)?;
            if !m.has_user() || !m.is_exact() {
                return fail(
                    "member",
                    format!("member {member:?} must contain {{user}} and no glob or {{id}}"),
                );
            }
            Some(Shared {
                key: k.render(b"", b""),
                pattern: k.pattern(None),
                member: m,
            })
        }
        (None, None) => None,
        _ => {
            let given = if g.member.is_some() {
                "member"
            } else {
                "shared_index"
            };
            return fail(given, "`shared_index` and `member` go together".into());
        }
    };
    let shared_hash = match &g.shared_hash {
        Some(key) => {
            let k = template(group_at(i, "shared_hash"), "shared_hash", key)?;
            if k.has_user() || k.has_id() || !k.is_exact() {
                return fail(
                    "shared_hash",
                    format!(
                        "shared_hash {key:?} names one hash shared by all users: no placeholder, no glob"
                    ),
                );
            }
            if shared.is_some() || by_id.is_some() || !keys.is_empty() {
                return fail(
                    "shared_hash",
                    "a `shared_hash` group takes nothing else: give `keys`, `key` or `shared_index` in a group of their own".into(),
                );
            }
            let by_field = match g.match_on.as_deref() {
                None | Some("value") => false,
                Some("field") => true,
                Some(other) => {
                    return fail(
                        "match",
                        format!(
                            "match = {other:?}: say \"value\" (fields whose value is an id) or \"field\" (fields named by an id)"
                        ),
                    );
                }
            };
            Some(SharedHash {
                key: k.render(b"", b""),
                pattern: k.pattern(None),
                by_field,
                ids: g.ids.clone(),
            })
        }
        None => {
            if g.match_on.is_some() || g.ids.is_some() {
                let given = if g.ids.is_some() { "ids" } else { "match" };
                return fail(given, "`match` and `ids` go with `shared_hash`".into());
            }
            None
        }
    };
    if !g.per_user
        && (shared.is_some() || shared_hash.is_some() || keys.iter().any(Template::has_user))
    {
        return fail(
            "per_user",
            "a group with `per_user = false` has no {user} and no shared index".into(),
        );
    }
    if keys.is_empty() && by_id.is_none() && shared.is_none() && shared_hash.is_none() {
        return fail(
            "name",
            "finds no keys: give `keys`, `key` (with `index` or `owner_field`), `shared_index` or `shared_hash`"
                .into(),
        );
    }
    Ok(Group {
        name: g.name,
        per_user: g.per_user,
        keys,
        by_id,
        owner_field: g.owner_field,
        shared,
        shared_hash,
        required: g.required,
        references: g.references,
        sensitive: g.sensitive,
    })
}

/// One step of the path to a value in the profile's TOML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A profile mistake found after parsing, and the value it is about (its
/// path in the document), so the message can name that value's line and
/// column.
#[derive(Debug)]
pub(crate) struct Bad {
    at: Vec<Seg>,
    message: String,
}

impl Bad {
    pub(crate) fn new(at: Vec<Seg>, message: String) -> Bad {
        Bad { at, message }
    }

    /// Where the value is in `text`: the deepest part of the path that is
    /// written there (a table, when the key it misses is absent).
    fn offset(&self, text: &str) -> Option<usize> {
        let doc = toml::de::DeTable::parse(text).ok()?;
        let root = toml::de::DeValue::Table(doc.into_inner());
        let mut node = &root;
        let mut found = None;
        for seg in &self.at {
            let next = match seg {
                Seg::Key(k) => node.get(*k),
                Seg::Index(i) => node.get(*i),
            };
            match next {
                Some(n) => {
                    node = n.get_ref();
                    found = Some(n.span().start);
                }
                None => break,
            }
        }
        found
    }
}

/// `file:line:column` of byte `offset` of `text` (both counted from 1,
/// the column in characters), or just the file.
fn position(path: &Path, text: &str, offset: Option<usize>) -> String {
    let Some(offset) = offset.map(|o| o.min(text.len())) else {
        return path.display().to_string();
    };
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = before[start..].chars().count() + 1;
    format!("{}:{line}:{column}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile> {
        Profile::parse(text, Path::new("test.toml"))
    }

    const MINIMAL: &str = r#"
name = "app"
schema_version = 1
[[group]]
name = "user"
keys = ["user:{user}"]
"#;

    #[test]
    fn minimal_profile_parses() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.name, "app");
        assert_eq!(p.groups.len(), 1);
        assert!(p.select_groups(&["nope".into()], true).is_err());
    }

    #[test]
    fn rejects_templates_that_would_take_other_users_keys() {
        let e = parse(&MINIMAL.replace("user:{user}", "user:*")).unwrap_err();
        assert!(e.to_string().contains("must contain {user}"), "{e}");
        let e = parse(
            r#"name = "a"
schema_version = 1
[[group]]
name = "k"
key = "apikey:{id}"
"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("index` or `owner_field"), "{e}");
    }

    #[test]
    fn rejects_unknown_fields_and_dangling_group_references() {
        let e = parse(&format!("{MINIMAL}colour = 1\n")).unwrap_err();
        assert!(e.to_string().contains("test.toml"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}references = [{{ field = \"p\", group = \"projects\" }}]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not defined"), "{e}");
    }

    #[test]
    fn a_shared_hash_is_one_key_matched_by_the_ids_of_a_group_with_ids() {
        let keys = r#"
[[group]]
name = "apikeys"
key = "apikey:{id}"
index = "user:{user}:api_keys"
"#;
        let map = |extra: &str| {
            format!(
                "{MINIMAL}{keys}[[group]]\nname = \"map\"\nshared_hash = \"apikey_hash_map\"\n{extra}"
            )
        };
        let p = parse(&map("match = \"value\"\nids = \"apikeys\"\n")).unwrap();
        let h = p.group("map").unwrap().shared_hash.as_ref().unwrap();
        assert_eq!(
            (h.key.as_slice(), h.by_field),
            (&b"apikey_hash_map"[..], false)
        );
        let e = p.select_groups(&["map".into()], true).unwrap_err();
        assert!(e.to_string().contains("add apikeys to --types"), "{e}");
        assert!(
            parse(&map("match = \"field\"\n")).unwrap().groups[2]
                .shared_hash
                .as_ref()
                .unwrap()
                .by_field
        );
        for (extra, says) in [
            ("match = \"key\"\n", "say \"value\""),
            ("ids = \"user\"\n", "without `key` with {id}"),
            ("ids = \"nope\"\n", "names no group"),
            ("keys = [\"x:{user}\"]\n", "takes nothing else"),
        ] {
            let e = parse(&map(extra)).unwrap_err();
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
        let e = parse(&MINIMAL.replace(
            "keys = [\"user:{user}\"]",
            "keys = [\"user:{user}\"]\nids = \"x\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("go with `shared_hash`"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}[[group]]\nname = \"m\"\nshared_hash = \"map:{{user}}\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("no placeholder"), "{e}");
    }
}

#[cfg(test)]
mod positions {
    use super::*;

    /// A profile whose mistakes sit well below the start of their tables.
    const LONG: &str = r#"name = "app"
schema_version = 2

[[group]]
name = "user"
keys = ["user:{user}"]
required = ["id"]

[[group]]
name = "apikeys"
key = "apikey:{id}"
index = "user:{user}:apikeys"
owner_field = "userId"
required = ["id", "userId"]

[[upgrade]]
from = 1
to = 2

[[upgrade.step]]
op = "rename"
field = "stripe_id"
to = "stripeCustomerId"

[[upgrade.step]]
op = "default"
group = "user"
field = "views"
value = 0
"#;

    /// `test.toml:LINE:COLUMN` of the first `needle` in `text`.
    fn spot(text: &str, needle: &str) -> String {
        let at = text.find(needle).expect("needle in the profile");
        let line = text[..at].lines().count() + usize::from(text[..at].ends_with('\n'));
        let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
        format!("test.toml:{line}:{column}: ")
    }

    fn error(text: &str) -> String {
        Profile::parse(text, Path::new("test.toml"))
            .unwrap_err()
            .to_string()
    }

    /// The error of LONG with `from` replaced by `to`, which must name the
    /// position of `needle` (in the changed text).
    fn reported_at(from: &str, to: &str, needle: &str) -> String {
        let text = LONG.replace(from, to);
        let e = error(&text);
        assert!(e.contains(&spot(&text, needle)), "{e}");
        e
    }

    #[test]
    fn the_long_profile_is_valid() {
        let p = Profile::parse(LONG, Path::new("test.toml")).unwrap();
        assert_eq!(p.upgrades[0].steps.len(), 2);
    }

    #[test]
    fn a_parse_error_names_the_line_and_column_of_the_value() {
        // An unclosed array is found at the end of its line.
        let e = error(&LONG.replace("value = 0", "value = [1, 2"));
        assert!(e.contains("test.toml:29:14: "), "{e}");
        reported_at("to = 2", "to = \"two\"", "\"two\"");
    }

    #[test]
    fn an_unknown_field_is_named_where_it_is() {
        let e = reported_at("owner_field", "owner_feld", "owner_feld");
        assert!(e.contains("unknown field `owner_feld`"), "{e}");
        reported_at("value = 0", "value = 0\nvalu = 1", "valu =");
    }

    #[test]
    fn a_bad_step_is_named_at_its_value() {
        // Line 29, twelve lines below the start of the [[upgrade]] table.
        let e = reported_at("value = 0", "now = \"soon\"", "\"soon\"");
        assert!(e.contains("test.toml:29:7: "), "{e}");
        let e = reported_at("value = 0", "value = 0\nnow = \"ms\"", "\"ms\"");
        assert!(e.contains("not both"), "{e}");
        let user = "group = \"user\"\nfield = \"views\"";
        reported_at(user, &user.replace("user", "users"), "\"users\"");
        reported_at("op = \"default\"", "op = \"defualt\"", "\"defualt\"");
        reported_at("value = 0", "value = 0\nkeep = true", "true");
    }

    #[test]
    fn a_reference_to_an_unknown_group_is_named_at_the_group() {
        let e = reported_at(
            "required = [\"id\", \"userId\"]",
            "required = [\"id\"]\nreferences = [{ field = \"p\", group = \"projects\" }]",
            "\"projects\"",
        );
        assert!(e.contains("not defined"), "{e}");
    }

    #[test]
    fn a_bad_template_is_named_at_its_value() {
        let e = reported_at(
            "user:{user}:apikeys",
            "user:[a]:{user}",
            "\"user:[a]:{user}\"",
        );
        assert!(e.contains("test.toml:12:9: "), "{e}");
        reported_at(
            "apikey:{id}\"",
            "apikey:{id}:{id}\"",
            "\"apikey:{id}:{id}\"",
        );
        reported_at("[\"user:{user}\"]", "[\"user:{user}\", \"u:*\"]", "\"u:*\"");
    }
}
