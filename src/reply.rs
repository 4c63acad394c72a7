//! Decoding Redis replies into records' parts: the shapes of SCAN, XINFO,
//! XRANGE, TIME and DUMP replies, in RESP2 and RESP3 alike, in one place
//! for every reader of them (export, compare, restore's plan, streams).

use redis::Value as Reply;

use crate::record::{
    Bytes, ConsumerGroup, DumpValue, Score, StreamEntry, StreamId, StreamMeta, Value, parse_score,
};

pub(crate) fn parse_time(reply: Option<Reply>) -> std::result::Result<i64, String> {
    let items = array_of(reply.unwrap_or(Reply::Nil));
    let num = |v: Option<&Reply>| -> Option<i64> {
        std::str::from_utf8(&bytes_of(v?.clone()))
            .ok()?
            .parse()
            .ok()
    };
    match (num(items.first()), num(items.get(1))) {
        (Some(s), Some(us)) => Ok(s * 1000 + us / 1000),
        _ => Err("TIME returned an unexpected reply".into()),
    }
}

pub(crate) fn bytes_of(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::BulkString(b) => b,
        Reply::SimpleString(s) => s.into_bytes(),
        Reply::VerbatimString { text, .. } => text.into_bytes(),
        Reply::Int(i) => i.to_string().into_bytes(),
        Reply::Okay => b"OK".to_vec(),
        Reply::Double(d) => d.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(crate) fn array_of(reply: Reply) -> Vec<Reply> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items,
        Reply::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn scan_reply(reply: Reply) -> std::result::Result<(Vec<u8>, Vec<Reply>), String> {
    let mut parts = array_of(reply).into_iter();
    match (parts.next(), parts.next()) {
        (Some(cursor), Some(items)) => Ok((bytes_of(cursor), array_of(items))),
        _ => Err("unexpected SCAN reply".into()),
    }
}

pub(crate) fn scan_value(command: &str, items: Vec<Reply>) -> std::result::Result<Value, String> {
    Ok(match command {
        "HSCAN" => Value::Hash(pairs(items).collect()),
        "SSCAN" => Value::Set(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
        "ZSCAN" => {
            let mut members = Vec::with_capacity(items.len() / 2);
            for (member, score) in pairs(items) {
                let score =
                    parse_score(&score.0).ok_or_else(|| format!("bad score {:?}", score))?;
                members.push((member, Score(score)));
            }
            Value::Zset(members)
        }
        other => return Err(format!("no value for {other}")),
    })
}

pub(crate) fn pairs(items: Vec<Reply>) -> impl Iterator<Item = (Bytes, Bytes)> {
    let mut it = items.into_iter();
    std::iter::from_fn(move || {
        let a = it.next()?;
        let b = it.next()?;
        Some((Bytes(bytes_of(a)), Bytes(bytes_of(b))))
    })
}

/// Field/value pairs of an XINFO reply (flat in RESP2, a map in RESP3).
pub(crate) fn info_fields(reply: Reply) -> Vec<(String, Reply)> {
    let mut it = array_of(reply).into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((String::from_utf8_lossy(&bytes_of(k)).into_owned(), v));
    }
    out
}

pub(crate) fn stream_id_of(reply: &Reply) -> Option<StreamId> {
    StreamId::parse(std::str::from_utf8(&bytes_of(reply.clone())).ok()?)
}

pub(crate) fn u64_of(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Int(i) if *i >= 0 => Some(*i as u64),
        Reply::Nil => None,
        other => std::str::from_utf8(&bytes_of(other.clone()))
            .ok()?
            .parse()
            .ok(),
    }
}

pub(crate) fn stream_meta(reply: Reply) -> std::result::Result<StreamMeta, String> {
    let mut meta = StreamMeta {
        last_id: StreamId::default(),
        entries_added: None,
        max_deleted_id: None,
        groups: Vec::new(),
    };
    let mut has_last = false;
    for (name, value) in info_fields(reply) {
        match name.as_str() {
            "last-generated-id" => {
                meta.last_id = stream_id_of(&value).ok_or("bad last-generated-id")?;
                has_last = true;
            }
            "entries-added" => meta.entries_added = u64_of(&value),
            "max-deleted-entry-id" => meta.max_deleted_id = stream_id_of(&value),
            _ => {}
        }
    }
    if !has_last {
        return Err("XINFO STREAM has no last-generated-id".into());
    }
    Ok(meta)
}

pub(crate) fn stream_groups(reply: Reply) -> std::result::Result<Vec<ConsumerGroup>, String> {
    let mut groups = Vec::new();
    for group in array_of(reply) {
        let mut name = None;
        let mut last = None;
        let mut entries_read = None;
        for (field, value) in info_fields(group) {
            match field.as_str() {
                "name" => name = Some(Bytes(bytes_of(value))),
                "last-delivered-id" => last = stream_id_of(&value),
                "entries-read" => entries_read = u64_of(&value),
                _ => {}
            }
        }
        match (name, last) {
            (Some(name), Some(last_delivered_id)) => groups.push(ConsumerGroup {
                name,
                last_delivered_id,
                entries_read,
                consumers: Vec::new(),
            }),
            _ => return Err("XINFO GROUPS reply lacks name or last-delivered-id".into()),
        }
    }
    Ok(groups)
}

pub(crate) fn stream_entries(reply: Reply) -> std::result::Result<Vec<StreamEntry>, String> {
    let mut entries = Vec::new();
    for entry in array_of(reply) {
        let mut parts = array_of(entry).into_iter();
        let id = parts
            .next()
            .and_then(|r| stream_id_of(&r))
            .ok_or("stream entry without an id")?;
        let fields = pairs(parts.next().map(array_of).unwrap_or_default()).collect();
        entries.push(StreamEntry { id, fields });
    }
    Ok(entries)
}

/// A DUMP payload ends with a 2-byte little-endian RDB version and an
/// 8-byte CRC64.
pub(crate) fn dump_value(payload: &[u8], type_name: String) -> DumpValue {
    let rdb_version = if payload.len() >= 10 {
        let at = payload.len() - 10;
        u16::from_le_bytes([payload[at], payload[at + 1]])
    } else {
        0
    };
    DumpValue {
        type_name,
        rdb_version,
        payload: Bytes(payload.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_trailer_gives_rdb_version() {
        let mut payload = vec![0u8; 5];
        payload.extend_from_slice(&[11, 0]);
        payload.extend_from_slice(&[0; 8]);
        assert_eq!(dump_value(&payload, "MBbloom--".into()).rdb_version, 11);
    }
}
