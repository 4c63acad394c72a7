//! Issue 14: what today's servers hold comes back exactly, and what a
//! target cannot hold is refused before the first write. Hash fields with
//! their own expiry (Redis 8.0), vector sets (Redis 8.0's built-in module
//! type), into Redis 8.0 itself and into Redis 7.0 and Valkey 8.1, which
//! have neither.

use std::path::Path;

use crate::support::*;
use redis::{Commands, Connection};

/// Hashes whose fields have their own expiry: a small one, one big enough
/// to be read and written in chunks (and split over records), and one
/// that also expires as a whole.
pub(crate) fn load_field_expiry(c: &mut Connection) {
    let _: () = c
        .hset_multiple(
            "hfe:session",
            &[("name", "Ann"), ("tok1", "a"), ("tok2", "b"), ("tok3", "c")],
        )
        .unwrap();
    let _: Vec<i64> = redis::cmd("HPEXPIRE")
        .arg("hfe:session")
        .arg(600_000)
        .arg("FIELDS")
        .arg(1)
        .arg("tok1")
        .query(c)
        .unwrap();
    let at = now_ms(c) + 3_600_123;
    let _: Vec<i64> = redis::cmd("HPEXPIREAT")
        .arg("hfe:session")
        .arg(at)
        .arg("FIELDS")
        .arg(2)
        .arg("tok2")
        .arg("tok3")
        .query(c)
        .unwrap();
    let fields: Vec<(String, String)> = (0..3_000)
        .map(|i| (format!("f{i}"), format!("value-{i}")))
        .collect();
    let _: () = c.hset_multiple("hfe:big", &fields).unwrap();
    for i in (0..3_000).step_by(3) {
        let _: Vec<i64> = redis::cmd("HPEXPIRE")
            .arg("hfe:big")
            .arg(900_000 + i)
            .arg("FIELDS")
            .arg(1)
            .arg(format!("f{i}"))
            .query(c)
            .unwrap();
    }
    let _: () = c.hset("hfe:keyttl", "x", "1").unwrap();
    let _: () = c.hset("hfe:keyttl", "y", "2").unwrap();
    let _: () = c.pexpire("hfe:keyttl", 800_000).unwrap();
    let _: Vec<i64> = redis::cmd("HPEXPIRE")
        .arg("hfe:keyttl")
        .arg(400_000)
        .arg("FIELDS")
        .arg(1)
        .arg("y")
        .query(c)
        .unwrap();
}

fn now_ms(c: &mut Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(c).unwrap();
    s * 1000 + us / 1000
}

fn field_expiry(c: &mut Connection, key: &str, field: &str) -> i64 {
    let t: Vec<i64> = redis::cmd("HPEXPIRETIME")
        .arg(key)
        .arg("FIELDS")
        .arg(1)
        .arg(field)
        .query(c)
        .unwrap();
    t[0]
}

fn copy(src: &RedisServer, dst: &RedisServer, extra: &[&str]) -> Run {
    let (s, t) = (src.url(), dst.url());
    let mut args = vec!["copy", "--source", &s, "--target", &t];
    args.extend_from_slice(extra);
    run(&args)
}

fn compare(file: &Path, dst: &RedisServer) -> Run {
    run(&["compare", file.to_str().unwrap(), "--target", &dst.url()])
}

/// A Redis 8.0 source with the mixed keyspace (streams with consumer
/// groups and pending entries included) and hashes with field expiry,
/// exported to `file`.
fn redis8_source(file: &Path) -> RedisServer {
    let src = RedisServer::start_version(ServerKind::Redis8);
    load_mixed(&mut src.conn());
    load_field_expiry(&mut src.conn());
    let report = export(&src, file, &["--json"]).ok().json();
    assert_eq!(report["errors"], 0, "{report}");
    let manifest = run(&["inspect", "--json", file.to_str().unwrap()])
        .ok()
        .json();
    // 3 + 1000 + 1 fields with their own expiry.
    assert_eq!(manifest["counts"]["field_expiries"], 1004, "{manifest}");
    src
}

#[test]
fn issue_14_field_expiry_survives_restore_copy_merge_and_rollback_on_redis_8() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r8.tar.zst");
    let src = redis8_source(&file);

    // export -> restore: every key, value, expiry and field expiry exact.
    let dst = RedisServer::start_version(ServerKind::Redis8);
    restore(&dst, &file, &[]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);
    assert!(matches!(
        key_state(&mut dst.conn(), b"hfe:big"),
        Some(KeyState::ExpiringHash(fields, expiring)) if fields.len() == 3_000 && expiring.len() == 1_000
    ));
    compare(&file, &dst).ok();
    // A field whose expiry was removed in the target is a difference.
    let _: Vec<i64> = redis::cmd("HPERSIST")
        .arg("hfe:session")
        .arg("FIELDS")
        .arg(1)
        .arg("tok1")
        .query(&mut dst.conn())
        .unwrap();
    let out = compare(&file, &dst);
    let text = out.stdout_text();
    assert_eq!(out.code, 14, "{text}");
    assert!(text.contains("\"tok1\" expires at"), "{text}");
    assert!(text.contains("never in the target"), "{text}");

    // copy: the same, server to server.
    let other = RedisServer::start_version(ServerKind::Redis8);
    copy(&src, &other, &["--yes"]).ok();
    assert_same_db(&mut src.conn(), &mut other.conn(), 0);

    // merge: fields the target lacks come with their expiry; its own stay.
    let merged = RedisServer::start_version(ServerKind::Redis8);
    let _: () = merged.conn().hset("hfe:session", "tok1", "mine").unwrap();
    restore(&merged, &file, &["--mode", "merge"]).ok();
    let mut m = merged.conn();
    assert_eq!(
        m.hget::<_, _, String>("hfe:session", "tok1").unwrap(),
        "mine"
    );
    assert_eq!(field_expiry(&mut m, "hfe:session", "tok1"), -1);
    assert_eq!(
        field_expiry(&mut m, "hfe:session", "tok2"),
        field_expiry(&mut src.conn(), "hfe:session", "tok2")
    );
    assert_eq!(field_expiry(&mut m, "hfe:session", "name"), -1);

    // restore --mode overwrite over the target's own field expiry, then
    // rollback: the target is back exactly as it was, field expiry included.
    let target = RedisServer::start_version(ServerKind::Redis8);
    let mut t = target.conn();
    let _: () = t
        .hset_multiple("hfe:session", &[("name", "Bob"), ("tok9", "z")])
        .unwrap();
    let _: Vec<i64> = redis::cmd("HPEXPIRE")
        .arg("hfe:session")
        .arg(1_200_000)
        .arg("FIELDS")
        .arg(1)
        .arg("tok9")
        .query(&mut t)
        .unwrap();
    let _: () = t.set("own:key", "kept").unwrap();
    let before = target.snapshot();
    let backups = tempfile::tempdir().unwrap();
    let report = restore(
        &target,
        &file,
        &[
            "--mode",
            "overwrite",
            "--backup-dir",
            backups.path().to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        key_state(&mut t, b"hfe:session"),
        key_state(&mut src.conn(), b"hfe:session")
    );
    let backup = report["backup"].as_str().unwrap().to_string();
    run(&["rollback", &backup, "--yes"]).ok();
    assert_eq!(target.snapshot(), before);
}

#[test]
fn issue_14_field_expiry_into_servers_without_it_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r8.tar.zst");
    let src = redis8_source(&file);
    for kind in [ServerKind::Redis70, ServerKind::Valkey81] {
        let dst = RedisServer::start_version(kind);
        let url = dst.url();
        let needle = "3 hash(es) with 1004 field(s) that expire on their own";
        let out = restore(&dst, &file, &["--dry-run"]).fails(16, needle);
        assert!(out.stderr.contains("--drop-unsupported"), "{}", out.stderr);
        restore(&dst, &file, &[]).fails(16, needle);
        run(&["copy", "--source", &src.url(), "--target", &url, "--yes"]).fails(16, needle);
        assert_eq!(dst.dbsize(0), 0, "{kind:?}: nothing may be written");

        // Asked to, it restores the rest and counts what it dropped.
        let report = restore(&dst, &file, &["--drop-unsupported", "--json"])
            .ok()
            .json();
        assert_eq!(report["dropped_field_expiries"], 1004, "{kind:?}: {report}");
        assert_eq!(report["errors"], 0, "{kind:?}: {report}");
        let mut c = dst.conn();
        assert_eq!(c.hlen::<_, u64>("hfe:big").unwrap(), 3_000);
        assert_eq!(c.hget::<_, _, String>("hfe:session", "tok1").unwrap(), "a");
        assert_eq!(dst.dbsize(0), src.dbsize(0), "{kind:?}");
    }
}

#[test]
fn issue_14_vector_sets_are_refused_where_they_cannot_load_and_compared_fairly_where_they_can() {
    let src = RedisServer::start_version(ServerKind::Redis8);
    let mut c = src.conn();
    for (name, v) in [("el1", [0.1, 0.2, 0.3]), ("el2", [0.9, -0.5, 0.25])] {
        let _: i64 = redis::cmd("VADD")
            .arg("vs")
            .arg("VALUES")
            .arg(3)
            .arg(v[0])
            .arg(v[1])
            .arg(v[2])
            .arg(name)
            .arg("SETATTR")
            .arg(format!("{{\"name\":\"{name}\"}}"))
            .query(&mut c)
            .unwrap();
    }
    let _: () = c.set("plain", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vs.tar.zst");
    export(&src, &file, &[]).ok();

    for kind in [ServerKind::Redis70, ServerKind::Valkey81] {
        let dst = RedisServer::start_version(kind);
        restore(&dst, &file, &[]).fails(16, "1 key(s) of type vectorset (e.g. \"vs\")");
        assert_eq!(dst.dbsize(0), 0, "{kind:?}");
        let plan = restore(&dst, &file, &["--drop-unsupported", "--dry-run", "--json"])
            .ok()
            .json();
        assert_eq!(plan["plan"]["by_type"]["dump"]["unsupported"], 1, "{plan}");
        restore(&dst, &file, &["--drop-unsupported"]).ok();
        assert_eq!(dst.dbsize(0), 1, "{kind:?}: only the string");
    }

    // Into Redis 8.0 it loads; the server re-encodes it, so compare says it
    // could not compare its payload rather than calling it different.
    let dst = RedisServer::start_version(ServerKind::Redis8);
    restore(&dst, &file, &[]).ok();
    let mut d = dst.conn();
    assert_eq!(
        redis::cmd("VCARD").arg("vs").query::<i64>(&mut d).unwrap(),
        2
    );
    for name in ["el1", "el2"] {
        let want: Vec<String> = redis::cmd("VEMB")
            .arg("vs")
            .arg(name)
            .query(&mut c)
            .unwrap();
        let got: Vec<String> = redis::cmd("VEMB")
            .arg("vs")
            .arg(name)
            .query(&mut d)
            .unwrap();
        assert_eq!(got, want, "{name}");
        let attr: String = redis::cmd("VGETATTR")
            .arg("vs")
            .arg(name)
            .query(&mut d)
            .unwrap();
        assert!(attr.contains(name), "{attr}");
    }
    let out = compare(&file, &dst).ok();
    assert!(
        out.stdout_text().contains("not compared: 1 key(s)"),
        "{}",
        out.stdout_text()
    );
}
