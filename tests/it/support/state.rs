//! A key's whole state as the server reports it, for exact comparisons.

use super::*;

/// A key's full state, in a form that compares exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyState {
    String(Vec<u8>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// A hash some of whose fields have their own expiry: the fields, and
    /// (field, `HPEXPIRETIME` in ms) of those that expire, sorted.
    ExpiringHash(Vec<(Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, i64)>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    /// (member, score bits) sorted by member.
    Zset(Vec<(Vec<u8>, u64)>),
    Stream {
        entries: Vec<(String, Vec<Vec<u8>>)>,
        last_id: String,
        entries_added: i64,
        max_deleted_id: String,
        /// (name, last-delivered-id, entries-read) sorted by name.
        groups: Vec<(Vec<u8>, String, Option<i64>)>,
        /// (group, consumer names sorted) sorted by group. Seen and active
        /// times are left out: no command can set them.
        consumers: Consumers,
        /// Pending entries: (group, id, consumer, delivery count, delivery
        /// time in ms) sorted. Entries whose message is no longer in the
        /// stream are left out: no command can create them, so a restore
        /// counts them instead (`pending_not_restored`).
        pending: Pending,
    },
}

/// Read one key's type and value; `None` when it does not exist.
pub fn key_state(c: &mut Connection, key: &[u8]) -> Option<KeyState> {
    let t: String = redis::cmd("TYPE").arg(key).query(c).unwrap();
    Some(match t.as_str() {
        "none" => return None,
        "string" => KeyState::String(c.get(key).unwrap()),
        "hash" => {
            let mut v: Vec<(Vec<u8>, Vec<u8>)> = c.hgetall(key).unwrap();
            v.sort();
            with_field_expiry(c, key, v)
        }
        "list" => KeyState::List(c.lrange(key, 0, -1).unwrap()),
        "set" => {
            let mut v: Vec<Vec<u8>> = c.smembers(key).unwrap();
            v.sort();
            KeyState::Set(v)
        }
        "zset" => {
            let raw: Vec<(Vec<u8>, String)> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
                .unwrap();
            let mut v: Vec<(Vec<u8>, u64)> = raw
                .into_iter()
                .map(|(m, s)| (m, parse_score(&s).to_bits()))
                .collect();
            v.sort();
            KeyState::Zset(v)
        }
        "stream" => stream_state(c, key),
        other => panic!("unexpected type {other}"),
    })
}

fn parse_score(s: &str) -> f64 {
    match s {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

fn info_map(v: Value) -> BTreeMap<String, Value> {
    let items = match v {
        Value::Array(items) => items,
        other => panic!("expected array, got {other:?}"),
    };
    let mut map = BTreeMap::new();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(redis::from_redis_value::<String>(k).unwrap(), v);
    }
    map
}

fn stream_state(c: &mut Connection, key: &[u8]) -> KeyState {
    let raw: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query::<Vec<Value>>(c)
        .unwrap()
        .into_iter()
        .map(|e| redis::from_redis_value::<(String, Vec<Vec<u8>>)>(e).unwrap())
        .collect();
    let info = info_map(redis::cmd("XINFO").arg("STREAM").arg(key).query(c).unwrap());
    let s = |m: &BTreeMap<String, Value>, k: &str| {
        redis::from_redis_value::<String>(m[k].clone()).unwrap()
    };
    let groups_raw: Vec<Value> = redis::cmd("XINFO").arg("GROUPS").arg(key).query(c).unwrap();
    let mut groups: Vec<(Vec<u8>, String, Option<i64>)> = groups_raw
        .into_iter()
        .map(|g| {
            let m = info_map(g);
            (
                redis::from_redis_value::<Vec<u8>>(m["name"].clone()).unwrap(),
                s(&m, "last-delivered-id"),
                redis::from_redis_value::<Option<i64>>(m["entries-read"].clone()).unwrap(),
            )
        })
        .collect();
    groups.sort();
    let (consumers, pending) = stream_pel(c, key, &raw);
    KeyState::Stream {
        entries: raw,
        last_id: s(&info, "last-generated-id"),
        entries_added: redis::from_redis_value::<i64>(info["entries-added"].clone()).unwrap(),
        max_deleted_id: s(&info, "max-deleted-entry-id"),
        groups,
        consumers,
        pending,
    }
}

/// A stream's consumers: (group, names).
pub type Consumers = Vec<(Vec<u8>, Vec<Vec<u8>>)>;
/// A stream's pending entries: (group, id, consumer, delivery count, delivery time).
pub type Pending = Vec<(Vec<u8>, String, Vec<u8>, i64, i64)>;

/// Consumers and pending entries of every group, from XINFO STREAM FULL
/// (exact delivery times), leaving out entries whose message is gone.
fn stream_pel(
    c: &mut Connection,
    key: &[u8],
    entries: &[(String, Vec<Vec<u8>>)],
) -> (Consumers, Pending) {
    let ids: std::collections::HashSet<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
    let full = info_map(
        redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .arg("FULL")
            .arg("COUNT")
            .arg(0)
            .query(c)
            .unwrap(),
    );
    let groups: Vec<Value> = redis::from_redis_value(full["groups"].clone()).unwrap();
    let mut consumers = Vec::new();
    let mut pending = Vec::new();
    for group in groups {
        let g = info_map(group);
        let name: Vec<u8> = redis::from_redis_value(g["name"].clone()).unwrap();
        let mut names: Vec<Vec<u8>> = redis::from_redis_value::<Vec<Value>>(g["consumers"].clone())
            .unwrap()
            .into_iter()
            .map(|c| redis::from_redis_value(info_map(c)["name"].clone()).unwrap())
            .collect();
        names.sort();
        consumers.push((name.clone(), names));
        let pel: Vec<(String, Vec<u8>, i64, i64)> =
            redis::from_redis_value(g["pending"].clone()).unwrap();
        for (id, consumer, at, count) in pel {
            if ids.contains(id.as_str()) {
                pending.push((name.clone(), id, consumer, count, at));
            }
        }
    }
    consumers.sort();
    pending.sort();
    (consumers, pending)
}

/// Absolute expiry in ms (PEXPIRETIME), or None for a key without one.
pub fn expire_time(c: &mut Connection, key: &[u8]) -> Option<i64> {
    let t: i64 = redis::cmd("PEXPIRETIME").arg(key).query(c).unwrap();
    (t >= 0).then_some(t)
}

/// Compare two databases key by key: same keys, types, values, and expiry
/// times within `ttl_tolerance_ms`. Walks `a` with SCAN in batches (reads
/// pipelined), so it works for big databases; returns the keys compared.
pub fn assert_same_db(a: &mut Connection, b: &mut Connection, ttl_tolerance_ms: i64) -> u64 {
    let size_a: u64 = redis::cmd("DBSIZE").query(a).unwrap();
    let size_b: u64 = redis::cmd("DBSIZE").query(b).unwrap();
    assert_eq!(
        size_a, size_b,
        "the databases hold different numbers of keys"
    );
    let mut cursor: u64 = 0;
    let mut compared = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(a)
            .unwrap();
        let sa = batch_states(a, &keys);
        let sb = batch_states(b, &keys);
        for ((key, (va, ea)), (vb, eb)) in keys.iter().zip(sa).zip(sb) {
            assert!(
                va == vb,
                "key {:?} differs:\n  source: {}\n  target: {}",
                String::from_utf8_lossy(key),
                abbreviate(&va),
                abbreviate(&vb)
            );
            match (ea, eb) {
                (None, None) => {}
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= ttl_tolerance_ms,
                    "key {:?}: expiry {x} vs {y}",
                    String::from_utf8_lossy(key)
                ),
                _ => panic!(
                    "key {:?}: expiry {ea:?} vs {eb:?}",
                    String::from_utf8_lossy(key)
                ),
            }
            compared += 1;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    compared
}

/// A hash's state with the expiry of each of its fields that has one, read
/// with `HPEXPIRETIME` on servers that have it.
fn with_field_expiry(c: &mut Connection, key: &[u8], fields: Vec<(Vec<u8>, Vec<u8>)>) -> KeyState {
    let supported: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("HPEXPIRETIME")
        .query(c)
        .unwrap();
    if fields.is_empty() || matches!(supported.first(), None | Some(Value::Nil)) {
        return KeyState::Hash(fields);
    }
    let mut cmd = redis::cmd("HPEXPIRETIME");
    cmd.arg(key).arg("FIELDS").arg(fields.len());
    for (f, _) in &fields {
        cmd.arg(f);
    }
    let times: Vec<i64> = cmd.query(c).unwrap();
    let expiring: Vec<(Vec<u8>, i64)> = fields
        .iter()
        .zip(times)
        .filter(|(_, t)| *t >= 0)
        .map(|((f, _), t)| (f.clone(), t))
        .collect();
    if expiring.is_empty() {
        KeyState::Hash(fields)
    } else {
        KeyState::ExpiringHash(fields, expiring)
    }
}

/// Type, value and expiry of each key, in two pipelined round trips
/// (streams, which need several commands, one by one).
fn batch_states(c: &mut Connection, keys: &[Vec<u8>]) -> Vec<(Option<KeyState>, Option<i64>)> {
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("TYPE").arg(k).cmd("PEXPIRETIME").arg(k);
    }
    let meta: Vec<(String, i64)> = pipe.query(c).unwrap();
    let mut pipe = redis::pipe();
    for (k, (t, _)) in keys.iter().zip(&meta) {
        match t.as_str() {
            "string" => pipe.cmd("GET").arg(k),
            "hash" => pipe.cmd("HGETALL").arg(k),
            "list" => pipe.cmd("LRANGE").arg(k).arg(0).arg(-1),
            "set" => pipe.cmd("SMEMBERS").arg(k),
            "zset" => pipe.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES"),
            _ => pipe.cmd("PING"),
        };
    }
    let values: Vec<Value> = pipe.query(c).unwrap();
    keys.iter()
        .zip(meta)
        .zip(values)
        .map(|((k, (t, exp)), v)| {
            let state = match t.as_str() {
                "none" => None,
                "string" => Some(KeyState::String(redis::from_redis_value(v).unwrap())),
                "hash" => {
                    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = redis::from_redis_value(v).unwrap();
                    pairs.sort();
                    Some(with_field_expiry(c, k, pairs))
                }
                "list" => Some(KeyState::List(redis::from_redis_value(v).unwrap())),
                "set" => {
                    let mut m: Vec<Vec<u8>> = redis::from_redis_value(v).unwrap();
                    m.sort();
                    Some(KeyState::Set(m))
                }
                "zset" => {
                    let raw: Vec<(Vec<u8>, String)> = redis::from_redis_value(v).unwrap();
                    let mut m: Vec<(Vec<u8>, u64)> = raw
                        .into_iter()
                        .map(|(m, s)| (m, parse_score(&s).to_bits()))
                        .collect();
                    m.sort();
                    Some(KeyState::Zset(m))
                }
                _ => key_state(c, k),
            };
            (state, (exp >= 0).then_some(exp))
        })
        .collect()
}

fn abbreviate(s: &Option<KeyState>) -> String {
    let text = format!("{s:?}");
    if text.len() > 400 {
        format!("{}... ({} chars)", &text[..400], text.len())
    } else {
        text
    }
}
