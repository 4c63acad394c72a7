//! Export reads keys by their encoding: compact values and small streams
//! as `DUMP` payloads decoded by the RDB reader, the rest with the usual
//! reads, and keys whose name has a known shape as the type of that shape.
//! Its records must be the usual reads' records, on every server; a user
//! who may not run `OBJECT` or `DUMP` gets the usual reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value as Json, json};

use crate::support::*;

/// A user with the rights of a read-only export but one: `denied`.
fn user_without(server: &RedisServer, name: &str, denied: &str) -> String {
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", name, "on", ">pw", "~*", "+@read", "+info", "+time", "+scan", "+watch",
            "+multi", "+exec", denied,
        ])
        .query(&mut server.conn())
        .unwrap();
    format!("redis://{name}:pw@127.0.0.1:{}", server.port)
}

/// Calls of `command` the server has answered.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn())
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Every key of an archive with its records merged: where its parts split
/// (which differs between a stream read whole and one read in pages) and
/// the remaining time to live (which depends on when it was read) left out.
fn keys_of(file: &Path) -> BTreeMap<String, Json> {
    let text = stock_tar(file, "-xO --wildcards 'data/*'");
    let mut parts: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for line in String::from_utf8(text).unwrap().lines() {
        let record: Json = serde_json::from_str(line).unwrap();
        parts
            .entry(record["key"].to_string())
            .or_default()
            .push(record);
    }
    parts
        .into_iter()
        .map(|(key, mut records)| {
            records.sort_by_key(|r| r["part"].as_u64().unwrap_or(0));
            (key, merge(records))
        })
        .collect()
}

fn merge(records: Vec<Json>) -> Json {
    let mut expiry = records[0]["expiry"].clone();
    if let Some(e) = expiry.as_object_mut() {
        e.remove("ttl_ms");
    }
    let mut field_expiry = Vec::new();
    let mut values = Vec::new();
    for r in &records {
        assert!(r["void"].is_null(), "no key changed: {r}");
        for mut e in r["field_expiry"].as_array().cloned().unwrap_or_default() {
            e.as_object_mut().unwrap().remove("ttl_ms");
            field_expiry.push(e);
        }
        let (kind, value) = r["value"].as_object().unwrap().iter().next().unwrap();
        values.push((kind.clone(), value.clone()));
    }
    let kind = values[0].0.clone();
    let value = match kind.as_str() {
        "stream" => {
            let mut meta = Json::Null;
            let (mut entries, mut pending) = (Vec::new(), Vec::new());
            for (_, v) in values {
                if !v["meta"].is_null() {
                    meta = v["meta"].clone();
                }
                entries.extend(v["entries"].as_array().cloned().unwrap_or_default());
                for run in v["pending"].as_array().cloned().unwrap_or_default() {
                    for e in run["entries"].as_array().unwrap() {
                        pending.push(json!([run["group"], e]));
                    }
                }
            }
            json!({"meta": meta, "entries": entries, "pending": pending})
        }
        _ if values.iter().all(|(_, v)| v.is_array()) => Json::Array(
            values
                .into_iter()
                .flat_map(|(_, v)| v.as_array().unwrap().clone())
                .collect(),
        ),
        _ => Json::Array(values.into_iter().map(|(_, v)| v).collect()),
    };
    json!({"type": kind, "expiry": expiry, "field_expiry": field_expiry, "value": value})
}

fn same_records_as_the_usual_reads(kind: ServerKind) {
    let src = RedisServer::start_version(kind);
    let field_ttls = !matches!(kind, ServerKind::Redis70 | ServerKind::Valkey81);
    crate::snapshot::load_every_encoding(&mut src.conn(), field_ttls);
    let mut c = src.conn();
    for i in 0..20 {
        // Small values of every compact encoding, with and without expiry.
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(format!("small:hash:{i}"))
            .arg("f")
            .arg(i)
            .cmd("ZADD")
            .arg(format!("small:zset:{i}"))
            .arg(f64::from(i) / 3.0)
            .arg("m")
            .cmd("SADD")
            .arg(format!("small:ints:{i}"))
            .arg(i)
            .arg(-i)
            .cmd("RPUSH")
            .arg(format!("small:list:{i}"))
            .arg(i)
            .cmd("XADD")
            .arg(format!("small:stream:{i}"))
            .arg("*")
            .arg("f")
            .arg(i)
            .cmd("PEXPIRE")
            .arg(format!("small:hash:{i}"))
            .arg(5_000_000 + i)
            .cmd("PEXPIRE")
            .arg(format!("small:stream:{i}"))
            .arg(5_000_000 + i)
            .query(&mut c)
            .unwrap();
    }
    // Keys of a few shapes, over many SCAN steps: after a few keys of a
    // shape its type is guessed, and "mix" is guessed wrong now and then.
    let mut pipe = redis::pipe();
    for i in 0..3_000 {
        pipe.cmd("HSET")
            .arg(format!("many:{i}:h"))
            .arg("f")
            .arg(i)
            .cmd("SET")
            .arg(format!("many:{i}:s"))
            .arg(i);
        match i % 10 {
            0 => pipe.cmd("SADD").arg(format!("mix:{i}")).arg(i),
            _ => pipe.cmd("HSET").arg(format!("mix:{i}")).arg("f").arg(i),
        };
        if i % 4 == 0 {
            pipe.cmd("PEXPIRE")
                .arg(format!("many:{i}:s"))
                .arg(6_000_000 + i);
        }
    }
    let _: () = pipe.query(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let encoded = dir.path().join("encoded.tar.zst");
    let report = export(&src, &encoded, &["--json"]).ok().json();
    assert_eq!(report["errors"], 0, "{report}");
    let asked = calls(&src, "object|encoding");
    assert!(
        asked < src.dbsize(0) / 2,
        "most keys are read as their shape says, without asking: {asked} asked"
    );
    let info: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut src.conn())
        .unwrap();
    assert!(
        info.contains("errorstat_WRONGTYPE"),
        "some \"mix\" keys were guessed wrong, and read the usual way: {info}"
    );
    // At least the small streams, whether their type was asked or guessed.
    assert!(
        calls(&src, "dump") >= 20,
        "compact values and small streams are read with DUMP: {} calls",
        calls(&src, "dump")
    );

    let usual = dir.path().join("usual.tar.zst");
    let url = user_without(&src, "nodump", "-dump");
    let dumps = calls(&src, "dump");
    let report = export_url(&url, &usual, &["--json"]).ok().json();
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        calls(&src, "dump") <= dumps + 1,
        "one refused DUMP, then the usual reads"
    );

    let (a, b) = (keys_of(&encoded), keys_of(&usual));
    assert_eq!(a.len() as u64, src.dbsize(0));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, record) in &a {
        assert_eq!(record, &b[key], "{key}");
    }

    // Without OBJECT the first question is refused: the usual reads too.
    let url = user_without(&src, "noobject", "-object");
    let plain = dir.path().join("plain.tar.zst");
    export_url(&url, &plain, &[]).ok();
    assert_eq!(keys_of(&plain), a);
}

#[test]
fn redis70_records_read_by_encoding_are_the_usual_reads_records() {
    same_records_as_the_usual_reads(ServerKind::Redis70);
}

#[test]
fn redis8_records_read_by_encoding_are_the_usual_reads_records() {
    same_records_as_the_usual_reads(ServerKind::Redis8);
}

#[test]
fn valkey81_records_read_by_encoding_are_the_usual_reads_records() {
    same_records_as_the_usual_reads(ServerKind::Valkey81);
}
