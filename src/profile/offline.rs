//! `export USER_ID` from a snapshot or an RDB file: the same keys the live
//! walk (`select.rs`) takes, found in two passes over the RDB, since an
//! RDB cannot be asked questions: its keys come in no useful order, and an
//! index key may come after the records it names.
//!
//! The first pass reads only the user's index keys (their members are the
//! ids of the user's records) and the candidates of owner-field groups
//! (whose owner field says whether they are the user's); the second takes
//! the keys now known by name, those named after the user, and the user's
//! member of each shared index, and their fields of each shared hash. What is held between the passes is one
//! user's worth: the names of the user's records. Pure: the caller reads
//! the RDB and feeds the records in.

use std::collections::HashSet;

use crate::profile::select::json_text;
use crate::profile::template::Template;
use crate::profile::{Group, SharedHash};
use crate::record::{Bytes, Record, Value};

/// One user's keys in an RDB, found in two passes.
#[derive(Debug)]
pub struct OfflineUser {
    groups: Vec<Group>,
    user: Vec<u8>,
    /// Index keys of the user, each with the template of the records its
    /// members name.
    indexes: Vec<(Vec<u8>, Template)>,
    /// Records found in the first pass: by index member or owner field.
    found: HashSet<Vec<u8>>,
    /// Shared keys and the user's member in each.
    shared: Vec<(Vec<u8>, Vec<u8>)>,
    /// Shared hashes whose fields are selected by the user's ids.
    hashes: Vec<SharedHash>,
}

impl OfflineUser {
    /// The user's keys among `groups`.
    pub fn new(groups: &[&Group], user: &str) -> Self {
        let u = user.as_bytes();
        let mut indexes = Vec::new();
        let mut shared = Vec::new();
        for g in groups {
            if let Some(b) = &g.by_id
                && let Some(index) = &b.index
            {
                indexes.push((index.render(u, b""), b.key.clone()));
            }
            if let Some(s) = &g.shared {
                shared.push((s.key.clone(), s.member.render(u, b"")));
            }
        }
        OfflineUser {
            groups: groups.iter().map(|g| (*g).clone()).collect(),
            user: u.to_vec(),
            indexes,
            found: HashSet::new(),
            shared,
            hashes: groups
                .iter()
                .filter_map(|g| g.shared_hash.clone())
                .collect(),
        }
    }

    /// First pass: whether a key's records are needed to find the user's
    /// records (an index of the user's, a candidate of an owner field).
    pub fn first_pass_wants(&self, key: &[u8]) -> bool {
        self.indexes.iter().any(|(k, _)| k == key) || self.owner_candidate(key).is_some()
    }

    /// First pass: learn from one record of a key `first_pass_wants`.
    pub fn learn(&mut self, record: &Record) {
        let key = &record.key.0;
        if let Some((_, template)) = self.indexes.iter().find(|(k, _)| k == key) {
            let ids: Vec<&Bytes> = match &record.value {
                Value::Set(v) | Value::List(v) => v.iter().collect(),
                Value::Zset(v) => v.iter().map(|(m, _)| m).collect(),
                _ => Vec::new(),
            };
            for id in ids {
                self.found.insert(template.render(&self.user, &id.0));
            }
        }
        if let Some(field) = self.owner_candidate(key) {
            let owner = match &record.value {
                Value::Hash(fields) => fields
                    .iter()
                    .find(|(f, _)| f.0 == field.as_bytes())
                    .map(|(_, v)| v.0.clone()),
                // A JSON document whole in its first record, as the live
                // walk reads the first 64 KiB of it.
                Value::String(text) if record.part == 0 && !record.more => {
                    match serde_json::from_slice(&text.0) {
                        Ok(serde_json::Value::Object(doc)) => doc.get(field).map(json_text),
                        _ => None,
                    }
                }
                _ => None,
            };
            if owner.as_deref() == Some(&self.user[..]) {
                self.found.insert(key.clone());
            }
        }
    }

    /// Second pass: whether a key is one of the user's (or a shared index
    /// holding the user's member).
    pub fn second_pass_wants(&self, key: &[u8]) -> bool {
        let u = Some(&self.user[..]);
        self.found.contains(key)
            || self.indexes.iter().any(|(k, _)| k == key)
            || self.shared.iter().any(|(k, _)| k == key)
            || self.hashes.iter().any(|h| h.key == key)
            || self.groups.iter().any(|g| {
                g.keys.iter().any(|t| t.matches(key, u))
                    || g.by_id.as_ref().is_some_and(|b| {
                        b.index.is_none() && g.owner_field.is_none() && b.key.matches(key, u)
                    })
            })
    }

    /// Second pass: what of a record goes into the archive. A shared
    /// index gives one record with only the user's member; other keys are
    /// taken whole.
    pub fn take(&self, record: Record) -> Option<Record> {
        if let Some(h) = self.hashes.iter().find(|h| h.key == record.key.0) {
            return self.shared_fields(h, record);
        }
        let Some((_, member)) = self.shared.iter().find(|(k, _)| *k == record.key.0) else {
            return Some(record);
        };
        let value = match record.value {
            Value::Zset(members) => Value::Zset(
                members
                    .into_iter()
                    .filter(|(m, _)| m.0 == *member)
                    .collect(),
            ),
            Value::Set(members) => {
                Value::Set(members.into_iter().filter(|m| m.0 == *member).collect())
            }
            _ => return None,
        };
        (!value.is_empty()).then(|| Record::new(record.key, value))
    }

    /// The user's fields of a shared hash: those whose value (or name) is
    /// the user id or the id of a record of the `ids` group found in the
    /// first pass. The record keeps its place among the key's parts.
    fn shared_fields(&self, h: &SharedHash, mut record: Record) -> Option<Record> {
        let ids: HashSet<Vec<u8>> = match &h.ids {
            None => HashSet::from([self.user.clone()]),
            Some(name) => {
                let key = self
                    .groups
                    .iter()
                    .find(|g| &g.name == name)
                    .and_then(|g| g.by_id.as_ref())
                    .map(|b| &b.key)?;
                self.found
                    .iter()
                    .filter_map(|k| {
                        let r = key.captures(k, Some(&self.user))?.id?;
                        Some(k[r].to_vec())
                    })
                    .collect()
            }
        };
        let Value::Hash(fields) = &mut record.value else {
            return None;
        };
        fields.retain(|(f, v)| ids.contains(if h.by_field { &f.0 } else { &v.0 }));
        let alone = record.part == 0 && !record.more;
        (!alone || !record.value.is_empty()).then_some(record)
    }

    /// The owner field a key is a candidate for, if any.
    fn owner_candidate(&self, key: &[u8]) -> Option<&str> {
        let u = Some(&self.user[..]);
        self.groups.iter().find_map(|g| {
            let b = g.by_id.as_ref()?;
            let field = g.owner_field.as_deref()?;
            (b.index.is_none() && b.key.matches(key, u.filter(|_| b.key.has_user())))
                .then_some(field)
        })
    }
}
