//! Sensitive fields: the values `export --redact` replaces, so that an
//! archive of user records can go to QA without the users' tokens,
//! password hashes and e-mail addresses.
//!
//! A value becomes either one fixed mask, or a keyed hash (HMAC-SHA-256
//! under a key the operator keeps): the same value always becomes the same
//! text, so two records that share an e-mail still share it, across
//! records and across exports made with the same key. Ids cannot be
//! redacted: they are part of key names (`apikey:{id}`), which the archive
//! keeps as they are, so a field that names a record or a user (an owner
//! or reference field) is refused as sensitive when the profile is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::rewrite::{Part, classify, with_json_object};
use super::select::json_text;
use super::upgrade::{Step, Upgrade};
use super::{Group, Profile};
use crate::archive::manifest::{Redaction, RedactionMethod};
use crate::error::{Error, Result};
use crate::record::{Bytes, Record, Value};

/// What every sensitive value becomes with the mask method.
pub const MASK: &str = "[REDACTED]";
/// What a keyed hash starts with, so that a redacted value is recognized
/// as one wherever it is seen.
pub const KEYED_PREFIX: &str = "hmac-sha256:";
/// A key shorter than this is refused: whoever guesses the key can test
/// guessed values (e-mail addresses) against the archive.
pub const MIN_KEY_BYTES: usize = 16;

/// The key of keyed redaction. Never shown: its `Debug` hides it, and no
/// message, header or report names more than where it was read from.
#[derive(Clone)]
pub struct RedactKey(Vec<u8>);

impl std::fmt::Debug for RedactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactKey(***)")
    }
}

impl RedactKey {
    /// The key held in `bytes` (one line ending is dropped, as editors add
    /// one); refused when shorter than [`MIN_KEY_BYTES`].
    pub fn new(mut bytes: Vec<u8>, from: &str) -> Result<RedactKey> {
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the redaction key file {from} is empty; write a random key into it, e.g. `head -c 32 /dev/urandom | base64 > FILE`"
            )));
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "the redaction key in {from} is shorter than {MIN_KEY_BYTES} bytes; use a random key, e.g. `head -c 32 /dev/urandom | base64 > FILE`"
            )));
        }
        Ok(RedactKey(bytes))
    }

    /// The key read from the file at `path`.
    pub fn from_file(path: &Path) -> Result<RedactKey> {
        let bytes = std::fs::read(path).map_err(|e| Error::input(path, e))?;
        RedactKey::new(bytes, &path.display().to_string())
    }

    fn hash(&self, value: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(value);
        let mut out = KEYED_PREFIX.as_bytes().to_vec();
        out.extend_from_slice(hex::encode(mac.finalize().into_bytes()).as_bytes());
        out
    }
}

/// How sensitive values are replaced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Redact {
    /// Every value becomes [`MASK`].
    Mask,
    /// Every value becomes [`KEYED_PREFIX`] and the hex HMAC-SHA-256 of
    /// the value under the key.
    Keyed(RedactKey),
}

impl Redact {
    /// The method the header records.
    pub fn method(&self) -> RedactionMethod {
        match self {
            Redact::Mask => RedactionMethod::Mask,
            Redact::Keyed(_) => RedactionMethod::HmacSha256,
        }
    }

    /// What `value` becomes.
    pub fn replace(&self, value: &[u8]) -> Vec<u8> {
        match self {
            Redact::Mask => MASK.as_bytes().to_vec(),
            Redact::Keyed(key) => key.hash(value),
        }
    }
}

/// Refuse sensitive fields that cannot be redacted: ids that key names
/// carry (owner and reference fields), and fields of groups that hold only
/// members of a shared index.
pub(crate) fn check(groups: &[Group]) -> std::result::Result<(), super::Bad> {
    for (i, g) in groups.iter().enumerate() {
        let fail = |reason: String| {
            let at = vec![
                super::Seg::Key("group"),
                super::Seg::Index(i),
                super::Seg::Key("sensitive"),
            ];
            Err(super::Bad::new(at, format!("group {:?}: {reason}", g.name)))
        };
        let mut seen = BTreeSet::new();
        for field in &g.sensitive {
            if field.is_empty() {
                return fail("`sensitive` names an empty field".into());
            }
            if !seen.insert(field) {
                return fail(format!("`sensitive` names {field:?} twice"));
            }
            if g.owner_field.as_deref() == Some(field.as_str()) {
                return fail(format!(
                    "sensitive field {field:?} is the owner field: it holds a user id, which key names carry too, and ids cannot be redacted; leave it out of `sensitive`"
                ));
            }
            if let Some(r) = g.references.iter().find(|r| &r.field == field) {
                return fail(format!(
                    "sensitive field {field:?} references group {:?}: it holds an id, which that group's key names carry too, and ids cannot be redacted; leave it out of `sensitive`",
                    r.group
                ));
            }
        }
        if !g.sensitive.is_empty() && g.keys.is_empty() && g.by_id.is_none() {
            return fail(
                "`sensitive` needs records with fields (`keys` or `key`); a shared index holds only members and a shared hash only ids, which cannot be redacted".into(),
            );
        }
    }
    Ok(())
}

/// Add to `group`'s sensitive fields the older names that upgrade steps
/// map onto them: a legacy record still holds its value under the old name
/// (`rename` of `field` to a sensitive `to`), or in flat fields that `nest`
/// moves into a sensitive `into`. An export writes records as they are
/// stored, so without these a legacy record would keep the value. Chains
/// (`a` to `b` to a sensitive `c`) are followed to the end.
pub(crate) fn add_legacy_names(group: &mut Group, upgrades: &[Upgrade]) {
    if group.sensitive.is_empty() {
        return;
    }
    let steps: Vec<&Step> = upgrades
        .iter()
        .flat_map(|u| &u.steps)
        .filter(|s| s.group().is_none_or(|g| g == group.name))
        .collect();
    loop {
        let mut added = false;
        for step in &steps {
            let old: Vec<&String> = match step {
                Step::Rename { field, to, .. } if group.sensitive.contains(to) => vec![field],
                Step::Nest { fields, into, .. } if group.sensitive.contains(into) => {
                    fields.iter().collect()
                }
                _ => continue,
            };
            for name in old {
                if !group.sensitive.contains(name) {
                    group.sensitive.push(name.clone());
                    added = true;
                }
            }
        }
        if !added {
            return;
        }
    }
}

/// The header's account of a redacted export of `groups`; an error when
/// none of them declares a sensitive field, since an archive marked
/// redacted that redacts nothing would mislead whoever receives it.
pub(crate) fn redaction(redact: &Redact, groups: &[&Group]) -> Result<Redaction> {
    let fields: BTreeMap<String, Vec<String>> = groups
        .iter()
        .filter(|g| !g.sensitive.is_empty())
        .map(|g| (g.name.clone(), g.sensitive.clone()))
        .collect();
    if fields.is_empty() {
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        return Err(Error::InvalidArgument(format!(
            "--redact: the exported groups ({}) declare no `sensitive` fields, so nothing would be redacted; declare them in the profile (docs/PROFILES.md)",
            names.join(", ")
        )));
    }
    Ok(Redaction {
        method: redact.method(),
        fields,
    })
}

/// The largest JSON document read in parts that is redacted: it must be
/// parsed whole, so it is gathered first; a bigger one stops the export.
pub const MAX_GATHERED_BYTES: usize = 64 << 20;
/// Parts a gathered document is written back in (the size the export
/// reads big strings in).
const PART_BYTES: usize = 1 << 20;

/// Replaces sensitive values in the records of a profile export. A hash
/// split over several records is redacted part by part, so memory stays
/// what the export's bound makes it; a string read in parts (a JSON
/// document over 64 KiB) is gathered, up to [`MAX_GATHERED_BYTES`], and
/// written back redacted, in parts again.
pub(crate) struct Redactor {
    profile: Arc<Profile>,
    user: Option<Vec<u8>>,
    redact: Redact,
    /// The first part of a string being gathered, its value the text so far.
    gathering: Option<Record>,
}

impl Redactor {
    pub(crate) fn new(profile: Arc<Profile>, user: Option<Vec<u8>>, redact: Redact) -> Self {
        Redactor {
            profile,
            user,
            redact,
            gathering: None,
        }
    }

    /// The records to write for `record`: itself with its sensitive values
    /// replaced; or, for the parts of a string being gathered, nothing
    /// until its last part, then all of it. A void record drops what was
    /// gathered of its key (none of it was written).
    pub(crate) fn apply(&mut self, mut record: Record) -> Result<Vec<Record>> {
        if let Some(first) = self.gathering.as_mut() {
            if first.key != record.key {
                return Err(Error::Internal(
                    "a split string's parts were interleaved with another key's".into(),
                ));
            }
            if record.void {
                self.gathering = None;
                return Ok(Vec::new());
            }
            let (Value::String(text), Value::String(more)) = (&mut first.value, &record.value)
            else {
                return Err(Error::Internal(
                    "a split string went on as another type".into(),
                ));
            };
            if text.0.len() + more.0.len() > MAX_GATHERED_BYTES {
                let key = String::from_utf8_lossy(&record.key.0).into_owned();
                self.gathering = None;
                return Err(Error::InvalidArgument(format!(
                    "--redact: key {key:?} is a string over {} MiB, too big to redact its JSON members; nothing was written; leave its group out with --types, or export without --redact",
                    MAX_GATHERED_BYTES >> 20
                )));
            }
            text.0.extend_from_slice(&more.0);
            if record.more {
                return Ok(Vec::new());
            }
            let mut whole = self.gathering.take().expect("gathering");
            whole.more = false;
            self.redact_record(&mut whole)?;
            return Ok(in_parts(whole));
        }
        if record.more
            && record.part == 0
            && matches!(record.value, Value::String(_))
            && self.sensitive_group(&record).is_some()
        {
            self.gathering = Some(record);
            return Ok(Vec::new());
        }
        self.redact_record(&mut record)?;
        Ok(vec![record])
    }

    /// The group of `record` when it declares sensitive fields and the
    /// record is one of its records (not an index).
    fn sensitive_group(&self, record: &Record) -> Option<&Group> {
        let (i, part) = classify(&self.profile, &record.key.0, self.user.as_deref())?;
        let group = &self.profile.groups[i];
        (!group.sensitive.is_empty() && !matches!(part, Part::Index(_) | Part::Shared))
            .then_some(group)
    }

    /// Replace the sensitive values of one whole record, or of one part of
    /// a hash.
    fn redact_record(&self, record: &mut Record) -> Result<()> {
        let Some(group) = self.sensitive_group(record) else {
            return Ok(());
        };
        let refuse = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "--redact: key {:?} of group {:?} {why}; nothing was written; leave the group out with --types, or export without --redact",
                String::from_utf8_lossy(&record.key.0),
                group.name
            )))
        };
        match &mut record.value {
            Value::Hash(fields) => {
                for (name, value) in fields.iter_mut() {
                    if is_sensitive(group, &name.0) {
                        value.0 = self.redact.replace(&value.0);
                    }
                }
            }
            Value::String(text) => redact_json(&self.redact, group, text),
            Value::Dump(_) => {
                return refuse(
                    "is a module type kept as a DUMP payload, whose fields cannot be read",
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// A gathered string as parts of [`PART_BYTES`] again, the expiry on the
/// first as the export writes it.
fn in_parts(whole: Record) -> Vec<Record> {
    let Value::String(text) = whole.value else {
        return vec![whole];
    };
    let chunks: Vec<&[u8]> = text.0.chunks(PART_BYTES).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Record {
            expiry: if i == 0 { whole.expiry } else { None },
            part: i as u32,
            more: i < last,
            ..Record::new(whole.key.clone(), Value::String(chunk.to_vec().into()))
        })
        .collect()
}

fn is_sensitive(group: &Group, name: &[u8]) -> bool {
    group.sensitive.iter().any(|f| f.as_bytes() == name)
}

/// Replace the sensitive top-level members of a JSON object held in a
/// string (a member of any type becomes a string; `null` stays, as it
/// holds nothing). A string that is not a JSON object has no members and
/// is left as it is.
fn redact_json(redact: &Redact, group: &Group, text: &mut Bytes) {
    with_json_object(text, |map| {
        let mut changed = false;
        for (name, v) in map.iter_mut() {
            if v.is_null() || !is_sensitive(group, name.as_bytes()) {
                continue;
            }
            // The hash of a member's text equals that of the same text in
            // a hash field: equal values stay equal across record kinds.
            let new = redact.replace(&json_text(v));
            *v = serde_json::Value::String(String::from_utf8(new).expect("mask and hex are ASCII"));
            changed = true;
        }
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
name = "app"
schema_version = 1
[[group]]
name = "user"
keys = ["user:{user}"]
owner_field = "id"
sensitive = ["email", "token"]
[[group]]
name = "sessions"
key = "session:{id}"
owner_field = "userId"
sensitive = ["ip", "secret"]
[[group]]
name = "usage"
keys = ["usage:{user}"]
"#;

    fn profile(text: &str) -> Result<Profile> {
        Profile::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn legacy_names_of_sensitive_fields_are_sensitive_too() {
        let text = r#"
name = "app"
schema_version = 3
group = [
  { name = "user", keys = ["user:{user}"], sensitive = ["email", "subscription"] },
  { name = "usage", keys = ["usage:{user}"], sensitive = ["count"] },
]
[[upgrade]]
from = 1
to = 2
step = [
  { op = "rename", field = "mail", to = "email" },
  { op = "nest", group = "user", fields = ["plan", "customer"], into = "subscription" },
]
[[upgrade]]
from = 2
to = 3
step = [
  { op = "rename", group = "user", field = "stripe_id", to = "customer" },
  { op = "rename", group = "user", field = "hits", to = "count" },
]
"#;
        let p = profile(text).unwrap();
        // `rename` without group reaches every group; the later `rename`
        // onto a nested field is followed; `hits` -> `count` is another
        // group's sensitive name.
        assert_eq!(
            p.group("user").unwrap().sensitive,
            [
                "email",
                "subscription",
                "mail",
                "plan",
                "customer",
                "stripe_id"
            ]
        );
        assert_eq!(p.group("usage").unwrap().sensitive, ["count"]);
    }

    /// The one record `r` writes for `record`, redacted.
    fn one(r: &mut Redactor, record: Record) -> Record {
        let mut out = r.apply(record).unwrap();
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    fn redactor(redact: Redact) -> Redactor {
        Redactor::new(
            Arc::new(profile(PROFILE).unwrap()),
            Some(b"42".to_vec()),
            redact,
        )
    }

    fn key() -> RedactKey {
        RedactKey::new(b"0123456789abcdef-key\n".to_vec(), "k").unwrap()
    }

    fn hash(key: &str, pairs: &[(&str, &str)]) -> Record {
        let fields = pairs
            .iter()
            .map(|(f, v)| (Bytes(f.as_bytes().to_vec()), Bytes(v.as_bytes().to_vec())))
            .collect();
        Record::new(key.into(), Value::Hash(fields))
    }

    fn fields(r: &Record) -> BTreeMap<String, String> {
        match &r.value {
            Value::Hash(v) => v
                .iter()
                .map(|(f, v)| {
                    (
                        String::from_utf8(f.0.clone()).unwrap(),
                        String::from_utf8(v.0.clone()).unwrap(),
                    )
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hash_fields_are_masked_part_by_part_and_others_kept() {
        let mut r = redactor(Redact::Mask);
        let mut first = hash("user:42", &[("id", "42"), ("email", "a@x.io")]);
        first.more = true;
        let mut second = hash("user:42", &[("token", "t-1"), ("name", "ada")]);
        second.part = 1;
        let first = one(&mut r, first);
        let second = one(&mut r, second);
        assert_eq!(fields(&first)["email"], MASK);
        assert_eq!(fields(&first)["id"], "42");
        assert_eq!(fields(&second)["token"], MASK);
        assert_eq!(fields(&second)["name"], "ada");
        // A group without sensitive fields, and another user's key, pass.
        let usage = one(&mut r, hash("usage:42", &[("email", "a@x.io")]));
        assert_eq!(fields(&usage)["email"], "a@x.io");
    }

    #[test]
    fn keyed_hashes_are_stable_distinct_and_hide_the_key() {
        let mut r = redactor(Redact::Keyed(key()));
        let a = one(
            &mut r,
            hash("user:42", &[("email", "a@x.io"), ("token", "a@x.io")]),
        );
        let (email, token) = (fields(&a)["email"].clone(), fields(&a)["token"].clone());
        assert_eq!(email, token, "equal values stay equal across fields");
        assert!(email.starts_with(KEYED_PREFIX) && email.len() == KEYED_PREFIX.len() + 64);
        assert!(!email.contains("a@x.io"));
        let other = RedactKey::new(b"another key of 16+ bytes".to_vec(), "k").unwrap();
        assert_ne!(Redact::Keyed(other).replace(b"a@x.io"), email.as_bytes());
        assert_eq!(format!("{:?}", key()), "RedactKey(***)");
        // RFC 4231 test case 2 pins the construction.
        let rfc = RedactKey(b"Jefe".to_vec()).hash(b"what do ya want for nothing?");
        assert_eq!(
            String::from_utf8(rfc).unwrap(),
            format!(
                "{KEYED_PREFIX}5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            )
        );
    }

    #[test]
    fn json_members_of_any_type_are_replaced_and_null_kept() {
        let mut r = redactor(Redact::Keyed(key()));
        let doc = r#"{"userId":"42","ip":"10.0.0.1","secret":{"a":[1]},"n":null,"keep":7}"#;
        let s = one(
            &mut r,
            Record::new("session:s1".into(), Value::String(doc.into())),
        );
        let Value::String(text) = &s.value else {
            panic!()
        };
        let out: serde_json::Value = serde_json::from_slice(&text.0).unwrap();
        assert_eq!(
            out["ip"].as_str().unwrap().as_bytes(),
            Redact::Keyed(key()).replace(b"10.0.0.1"),
            "a JSON member hashes as a hash field of the same text would"
        );
        assert!(out["secret"].as_str().unwrap().starts_with(KEYED_PREFIX));
        assert_eq!(out["userId"], "42");
        assert_eq!(out["keep"], 7);
        assert!(out["n"].is_null());
        // Not JSON: nothing to redact, left as it is.
        let plain = one(
            &mut r,
            Record::new("session:s2".into(), Value::String("opaque".into())),
        );
        assert_eq!(plain.value, Value::String("opaque".into()));
    }

    fn string_part(key: &str, part: u32, more: bool, text: Vec<u8>) -> Record {
        Record {
            part,
            more,
            ..Record::new(key.into(), Value::String(text.into()))
        }
    }

    #[test]
    fn a_json_string_read_in_parts_is_gathered_redacted_and_split_again() {
        let mut r = redactor(Redact::Mask);
        let filler = "x".repeat(3 << 20);
        let doc = format!(r#"{{"ip":"10.9.8.7","pad":"{filler}","userId":"42"}}"#).into_bytes();
        let parts: Vec<&[u8]> = doc.chunks(1 << 20).collect();
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let more = i + 1 < parts.len();
            let written = r
                .apply(string_part("session:big", i as u32, more, p.to_vec()))
                .unwrap();
            assert!(more == written.is_empty(), "written only at the last part");
            out.extend(written);
        }
        assert!(out.len() > 1);
        let mut whole = Vec::new();
        for (i, rec) in out.iter().enumerate() {
            assert_eq!((rec.part, rec.more), (i as u32, i + 1 < out.len()));
            let Value::String(t) = &rec.value else {
                panic!()
            };
            whole.extend_from_slice(&t.0);
        }
        let doc: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(doc["ip"], MASK);
        assert_eq!(doc["pad"].as_str().unwrap().len(), 3 << 20);

        // Voided parts are dropped with their void record.
        assert!(
            r.apply(string_part("session:v", 0, true, b"{".to_vec()))
                .unwrap()
                .is_empty()
        );
        let void = Record {
            void: true,
            ..string_part("session:v", 1, false, Vec::new())
        };
        assert!(r.apply(void).unwrap().is_empty());
        // Then a whole key goes through as usual.
        let s = one(
            &mut r,
            string_part("session:w", 0, false, br#"{"ip":"1"}"#.to_vec()),
        );
        assert!(matches!(&s.value, Value::String(t) if t.0 == br#"{"ip":"[REDACTED]"}"#));
    }

    #[test]
    fn ids_and_empty_keys_are_refused() {
        let e = profile(&PROFILE.replace(r#"["email", "token"]"#, r#"["id"]"#)).unwrap_err();
        assert!(e.to_string().contains("owner field"), "{e}");
        let e = profile(&format!(
            "{PROFILE}[[group]]\nname = \"keys\"\nkey = \"k:{{id}}\"\nindex = \"user:{{user}}:k\"\nreferences = [{{ field = \"acct\", group = \"keys\" }}]\nsensitive = [\"acct\"]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("ids cannot be redacted"), "{e}");
        let e = profile(&PROFILE.replace(r#"["ip", "secret"]"#, r#"["ip", "ip"]"#)).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(RedactKey::new(b"\n".to_vec(), "f").is_err());
        assert!(RedactKey::new(b"short".to_vec(), "f").is_err());
    }

    #[test]
    fn a_redacted_export_of_groups_without_sensitive_fields_is_refused() {
        let p = profile(PROFILE).unwrap();
        let usage = p.group("usage").unwrap();
        assert!(redaction(&Redact::Mask, &[usage]).is_err());
        let r = redaction(&Redact::Mask, &[p.group("user").unwrap(), usage]).unwrap();
        assert_eq!(r.fields.keys().collect::<Vec<_>>(), ["user"]);
    }
}
