//! `export USER_ID`: find exactly one user's keys, group by group.
//!
//! Keys named after the user are read directly (exact templates, after an
//! EXISTS) or found with SCAN MATCH on a pattern in which the user id is
//! escaped, so user 4 never matches user 42's keys. Records found by id
//! come from the members of the user's index key, read in chunks, or from
//! scanning the group's keys for an owner field equal to the user. A shared
//! index contributes one record holding only the user's member. A key two
//! groups claim is taken once; the set of keys taken is in memory, which is
//! one user's worth.
//!
//! `export --types` without a user takes whole groups for every user: the
//! same templates with `{user}` and `{id}` as wildcards, walked as an
//! ordinary selection.

use std::collections::{HashMap, HashSet};

use redis::Value as Reply;

use crate::connection::Conn;
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::keyspace::Selection;
use crate::profile::template::Template;
use crate::profile::{Group, Profile, ProfileScope, SharedHash};
use crate::progress::{Cancel, Progress};
use crate::record::{Bytes, Record, Score, Value, parse_score};
use crate::reply::bytes_of;

/// What a profile export takes.
#[derive(Debug, Clone)]
pub struct ProfileExport {
    /// The profile.
    pub profile: std::sync::Arc<Profile>,
    /// One user's records; `None` exports the groups for all users.
    pub user: Option<String>,
    /// Group names (`--types`); empty means all.
    pub groups: Vec<String>,
}

impl ProfileExport {
    /// The groups to take: those named, or all that apply; an unknown name
    /// is an error.
    pub fn groups(&self) -> Result<Vec<&Group>> {
        self.profile
            .select_groups(&self.groups, self.user.is_some())
    }

    /// What the manifest records.
    pub fn scope(&self) -> Result<ProfileScope> {
        let groups = self.groups()?;
        Ok(ProfileScope {
            name: self.profile.name.clone(),
            schema_version: self.profile.schema_version,
            user: self.user.clone(),
            groups: groups.iter().map(|g| g.name.clone()).collect(),
            shared_keys: match self.user {
                Some(_) => groups
                    .iter()
                    .filter_map(|g| {
                        g.shared
                            .as_ref()
                            .map(|s| &s.key)
                            .or(g.shared_hash.as_ref().map(|h| &h.key))
                    })
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect(),
                None => Vec::new(),
            },
        })
    }

    /// The selection the header records. For a user: the patterns that
    /// hold only this user's keys (what `compare` may look for extra keys
    /// in). For whole groups: every pattern walked.
    pub fn selection(&self) -> Result<Selection> {
        let user = self.user.as_deref();
        let mut include = Vec::new();
        for g in self.groups()? {
            include.extend(g.keys.iter().map(|t| t.pattern(user)));
            if let Some(b) = &g.by_id {
                if let Some(i) = &b.index {
                    include.push(i.pattern(user));
                }
                if user.is_none() || b.key.has_user() {
                    include.push(b.key.pattern(user));
                }
            }
            if let (Some(s), None) = (&g.shared, user) {
                include.push(s.pattern.clone());
            }
            if let (Some(h), None) = (&g.shared_hash, user) {
                include.push(h.pattern.clone());
            }
        }
        include.dedup();
        Ok(Selection {
            include,
            ..Selection::default()
        })
    }
}

/// A JSON member as text: strings as they are, numbers as written.
pub(crate) fn json_text(v: &serde_json::Value) -> Vec<u8> {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Walks one user's groups and reads every key through the fetcher.
pub(crate) struct UserWalk<'a> {
    pub conn: &'a mut Conn,
    pub fetcher: &'a mut Fetcher,
    pub scan_count: usize,
    pub cancel: &'a Cancel,
    pub progress: &'a dyn Progress,
    taken: HashSet<Vec<u8>>,
    /// The ids of the records found per group, for groups whose ids select
    /// a shared hash's fields (one user's worth).
    ids: HashMap<String, HashSet<Vec<u8>>>,
    /// The group being walked, when its ids are wanted: its name and key.
    collecting: Option<(String, Template, Vec<u8>)>,
}

fn any_type(_: crate::record::KeyType) -> bool {
    true
}

impl<'a> UserWalk<'a> {
    pub fn new(
        conn: &'a mut Conn,
        fetcher: &'a mut Fetcher,
        scan_count: usize,
        cancel: &'a Cancel,
        progress: &'a dyn Progress,
    ) -> Self {
        UserWalk {
            conn,
            fetcher,
            scan_count,
            cancel,
            progress,
            taken: HashSet::new(),
            ids: HashMap::new(),
            collecting: None,
        }
    }

    /// Returns false when stopped by `cancel`.
    pub async fn run(&mut self, user: &str, groups: &[&Group]) -> Result<bool> {
        let u = user.as_bytes();
        let wanted: HashSet<&str> = groups
            .iter()
            .filter_map(|g| g.shared_hash.as_ref()?.ids.as_deref())
            .collect();
        for g in groups {
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            self.collecting = g
                .by_id
                .as_ref()
                .filter(|_| wanted.contains(g.name.as_str()))
                .map(|b| (g.name.clone(), b.key.clone(), u.to_vec()));
            for t in &g.keys {
                if t.is_exact() {
                    self.fetch_existing(vec![t.render(u, b"")]).await?;
                } else {
                    self.scan(&t.pattern(Some(user)), |k| t.matches(k, Some(u)), None)
                        .await?;
                }
            }
            if let Some(b) = &g.by_id {
                match (&b.index, &g.owner_field) {
                    (Some(index), _) => {
                        let index_key = index.render(u, b"");
                        self.fetch_existing(vec![index_key.clone()]).await?;
                        self.index_members(&index_key, &b.key, u).await?;
                    }
                    (None, Some(field)) => {
                        let key = &b.key;
                        let owned = (field.as_str(), u);
                        self.scan(
                            &key.pattern(Some(user)),
                            |k| key.matches(k, Some(u).filter(|_| key.has_user())),
                            Some(owned),
                        )
                        .await?;
                    }
                    (None, None) => {
                        let key = &b.key;
                        self.scan(&key.pattern(Some(user)), |k| key.matches(k, Some(u)), None)
                            .await?;
                    }
                }
            }
            if let Some(shared) = &g.shared {
                self.shared_member(&shared.key, &shared.member.render(u, b""))
                    .await?;
            }
        }
        self.collecting = None;
        // Last, once the ids of every group they name are known.
        for g in groups {
            if let Some(h) = &g.shared_hash {
                let ids = match &h.ids {
                    Some(group) => self.ids.remove(group).unwrap_or_default(),
                    None => HashSet::from([u.to_vec()]),
                };
                self.shared_fields(h, &ids).await?;
            }
        }
        Ok(true)
    }

    /// Keys not taken yet, remembered as taken.
    fn untaken(&mut self, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        keys.into_iter()
            .filter(|k| self.taken.insert(k.clone()))
            .collect()
    }

    async fn fetch(&mut self, keys: Vec<Vec<u8>>) -> Result<()> {
        if let Some((group, key, user)) = &self.collecting {
            let found = self.ids.entry(group.clone()).or_default();
            for k in &keys {
                if let Some(r) = key.captures(k, Some(user)).and_then(|c| c.id) {
                    found.insert(k[r].to_vec());
                }
            }
        }
        let keys = self.untaken(keys);
        let n = keys.len() as u64;
        if !keys.is_empty() {
            self.fetcher.fetch_batch(keys, None, &any_type).await?;
        }
        self.progress.advance(n);
        Ok(())
    }

    /// Read the keys that exist (an index may name records long gone).
    async fn fetch_existing(&mut self, keys: Vec<Vec<u8>>) -> Result<()> {
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("EXISTS").arg(k);
        }
        let replies = self
            .conn
            .pipeline(&mut pipe, "checking which keys exist")
            .await?;
        let existing = keys
            .into_iter()
            .zip(replies)
            .filter(|(_, r)| matches!(r, Reply::Int(n) if *n > 0))
            .map(|(k, _)| k)
            .collect();
        self.fetch(existing).await
    }

    /// SCAN `pattern`; keep keys `keep` accepts and, with `owner`, whose
    /// hash field equals the user.
    async fn scan(
        &mut self,
        pattern: &str,
        keep: impl Fn(&[u8]) -> bool,
        owner: Option<(&str, &[u8])>,
    ) -> Result<()> {
        // A cluster's primaries each scan their own slots.
        for mut shard in self.conn.shards().await? {
            let mut cursor: u64 = 0;
            loop {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(self.scan_count);
                let (next, keys): (u64, Vec<Vec<u8>>) = shard.query(&scan, "scanning keys").await?;
                let mut keys: Vec<Vec<u8>> = keys.into_iter().filter(|k| keep(k)).collect();
                if let Some((field, user)) = owner
                    && !keys.is_empty()
                {
                    keys = self.owned_by(keys, field, user).await?;
                }
                self.fetch(keys).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// The keys whose owner field is `user`: a hash field, or a top-level
    /// member of a JSON object held in a string.
    async fn owned_by(
        &mut self,
        keys: Vec<Vec<u8>>,
        field: &str,
        user: &[u8],
    ) -> Result<Vec<Vec<u8>>> {
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HGET").arg(k).arg(field);
        }
        let owners = self
            .conn
            .pipeline(&mut pipe, "reading owner fields")
            .await?;
        let mut owned = Vec::new();
        let mut strings = Vec::new();
        for (key, reply) in keys.into_iter().zip(owners) {
            match reply {
                Reply::Nil => {}
                Reply::ServerError(e) if e.to_string().contains("WRONGTYPE") => strings.push(key),
                Reply::ServerError(_) => {}
                other => {
                    if bytes_of(other) == user {
                        owned.push(key);
                    }
                }
            }
        }
        if strings.is_empty() {
            return Ok(owned);
        }
        let mut pipe = redis::pipe();
        for k in &strings {
            // An owner named in the first 64 KiB; a string document bigger
            // than that is not a user record of this kind.
            pipe.cmd("GETRANGE").arg(k).arg(0).arg(65535);
        }
        let texts = self
            .conn
            .pipeline(&mut pipe, "reading owner fields")
            .await?;
        for (key, reply) in strings.into_iter().zip(texts) {
            if let Reply::BulkString(text) = reply
                && let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice(&text)
                && doc.get(field).map(json_text).as_deref() == Some(user)
            {
                owned.push(key);
            }
        }
        Ok(owned)
    }

    /// Read the ids in the user's index key in chunks and fetch their records.
    async fn index_members(&mut self, index: &[u8], key: &Template, user: &[u8]) -> Result<()> {
        let kind: String = self
            .conn
            .query(redis::cmd("TYPE").arg(index), "reading an index key's type")
            .await?;
        let count = self.scan_count;
        let mut cursor: Vec<u8> = b"0".to_vec();
        let mut offset = 0usize;
        loop {
            let (ids, done): (Vec<Vec<u8>>, bool) = match kind.as_str() {
                "none" => return Ok(()),
                "set" | "zset" => {
                    let command = if kind == "set" { "SSCAN" } else { "ZSCAN" };
                    let (next, items): (Vec<u8>, Vec<Vec<u8>>) = self
                        .conn
                        .query(
                            redis::cmd(command)
                                .arg(index)
                                .arg(&cursor)
                                .arg("COUNT")
                                .arg(count),
                            "reading an index key",
                        )
                        .await?;
                    let step = if kind == "zset" { 2 } else { 1 };
                    let ids = items.into_iter().step_by(step).collect();
                    let done = next == b"0";
                    cursor = next;
                    (ids, done)
                }
                "list" => {
                    let items: Vec<Vec<u8>> = self
                        .conn
                        .query(
                            redis::cmd("LRANGE")
                                .arg(index)
                                .arg(offset)
                                .arg(offset + count - 1),
                            "reading an index key",
                        )
                        .await?;
                    offset += count;
                    let done = items.len() < count;
                    (items, done)
                }
                other => {
                    return Err(Error::Profile(format!(
                        "index key {} is a {other}; an index holds ids in a set, sorted set or list",
                        crate::record::printable(index)
                    )));
                }
            };
            let keys = ids.iter().map(|id| key.render(user, id)).collect();
            self.fetch_existing(keys).await?;
            if done {
                return Ok(());
            }
        }
    }

    /// One record holding the user's fields of a shared hash: those whose
    /// value (or name) is one of `ids`. Read with HSCAN, keeping only the
    /// matching fields, so memory is the user's fields, not the hash.
    async fn shared_fields(&mut self, h: &SharedHash, ids: &HashSet<Vec<u8>>) -> Result<()> {
        let mut fields = Vec::new();
        let mut cursor: Vec<u8> = b"0".to_vec();
        loop {
            let (next, items): (Vec<u8>, Vec<Vec<u8>>) = self
                .conn
                .query(
                    redis::cmd("HSCAN")
                        .arg(&h.key)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(self.scan_count),
                    "reading a shared hash",
                )
                .await?;
            let mut items = items.into_iter();
            while let (Some(f), Some(v)) = (items.next(), items.next()) {
                let id = if h.by_field { &f } else { &v };
                if ids.contains(id) && !fields.iter().any(|(x, _): &(Bytes, Bytes)| x.0 == f) {
                    fields.push((Bytes(f), Bytes(v)));
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
        }
        if fields.is_empty() {
            return Ok(());
        }
        self.fetcher
            .send(Record::new(h.key.clone().into(), Value::Hash(fields)))
            .await
    }

    /// One record holding the user's member of a shared set or sorted set.
    async fn shared_member(&mut self, key: &[u8], member: &[u8]) -> Result<()> {
        let kind: String = self
            .conn
            .query(redis::cmd("TYPE").arg(key), "reading a shared index's type")
            .await?;
        let value = match kind.as_str() {
            "zset" => {
                let score: Option<Vec<u8>> = self
                    .conn
                    .query(
                        redis::cmd("ZSCORE").arg(key).arg(member),
                        "reading a shared index",
                    )
                    .await?;
                let Some(score) = score else { return Ok(()) };
                let score = parse_score(&score).ok_or_else(|| {
                    Error::Internal("the server sent a score that is not a number".into())
                })?;
                Value::Zset(vec![(member.into(), Score(score))])
            }
            "set" => {
                let present: bool = self
                    .conn
                    .query(
                        redis::cmd("SISMEMBER").arg(key).arg(member),
                        "reading a shared index",
                    )
                    .await?;
                if !present {
                    return Ok(());
                }
                Value::Set(vec![member.into()])
            }
            _ => return Ok(()),
        };
        self.fetcher.send(Record::new(key.into(), value)).await
    }
}
