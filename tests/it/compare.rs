//! `compare`: an archive against a live database, key by key.

use crate::support::*;
use redis::Commands;

fn compare(archive: &std::path::Path, target: &RedisServer, extra: &[&str]) -> Run {
    compare_with(target, archive, &[&["--json"], extra].concat())
}

#[test]
fn identical_after_restore_then_each_kind_of_difference() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    // A big hash and list, so chunked comparison is exercised too.
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("HSET")
            .arg("big:hash")
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
        pipe.cmd("RPUSH").arg("big:list").arg(i).ignore();
    }
    pipe.query::<()>(&mut src.conn()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.tar.zst");
    export(&src, &file, &[]).ok();
    restore(&dst, &file, &[]).ok();

    let same = compare(&file, &dst, &[]).ok().json();
    assert_eq!(same["differences"], 0, "{same}");
    assert_eq!(same["compared"], src.dbsize(0));
    assert_eq!(same["identical"], src.dbsize(0));

    let mut d = dst.conn();
    let _: () = d.set("str:plain", "changed").unwrap();
    let _: () = d.hset("hash:1", "name", "Bob").unwrap();
    let _: () = d.hset("big:hash", "f2999", "other").unwrap();
    let _: () = d.zadd("zset:1", "tenth", 0.2).unwrap();
    let _: () = d.pexpire("str:unicode", 5_000).unwrap();
    let _: () = d.del("list:1").unwrap();
    let _: () = d.set("added:key", "new").unwrap();
    let _: () = d.del("set:1").unwrap();
    let _: () = d.set("set:1", "now a string").unwrap();

    let out = compare(&file, &dst, &[]);
    assert_eq!(out.code, 14, "differences exit 14\n{}", out.stderr);
    let diff = out.json();
    let by = &diff["by_kind"];
    assert_eq!(by["value-differs"], 4, "{diff}");
    assert_eq!(by["ttl-differs"], 1, "{diff}");
    assert_eq!(by["missing"], 1, "{diff}");
    assert_eq!(by["extra"], 1, "{diff}");
    assert_eq!(by["type-differs"], 1, "{diff}");
    assert_eq!(diff["differences"], 8);
    let examples = diff["examples"].as_array().unwrap();
    let find = |key: &str| {
        examples
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("no difference for {key}: {diff}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        find("hash:1").contains("1 of 3 fields differ"),
        "{}",
        find("hash:1")
    );
    assert!(
        find("big:hash").contains("\"f2999\" differs"),
        "{}",
        find("big:hash")
    );
    assert!(
        find("zset:1").contains("score 0.1 in the archive, 0.2 in the target"),
        "{}",
        find("zset:1")
    );
    assert!(find("set:1").contains("archive set, target string"));
    assert!(find("added:key").contains("not in the archive"));

    let text = run(&["compare", file.to_str().unwrap(), "--target", &dst.url()]).stdout_text();
    assert!(text.starts_with("DIFFERENT: "), "{text}");
}

#[test]
fn ttl_tolerance_and_expired_keys() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut s = src.conn();
    let _: () = s.pset_ex("soon", "v", 300).unwrap();
    let _: () = s.set_ex("later", "v", 3600).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.tar.zst");
    export(&src, &file, &[]).ok();
    restore(&dst, &file, &[]).ok();
    std::thread::sleep(std::time::Duration::from_millis(400));
    // `later` restored with the same absolute expiry; move it by 3 s.
    let mut d = dst.conn();
    let at = expire_time(&mut d, b"later").unwrap();
    let _: () = redis::cmd("PEXPIREAT")
        .arg("later")
        .arg(at + 3000)
        .query(&mut d)
        .unwrap();

    let strict = compare(&file, &dst, &[]);
    assert_eq!(strict.code, 14);
    let j = strict.json();
    assert_eq!(j["expired_in_archive"], 1, "{j}");
    assert_eq!(j["by_kind"]["ttl-differs"], 1, "{j}");
    let loose = compare(&file, &dst, &["--ttl-tolerance", "5s"]).ok().json();
    assert_eq!(loose["differences"], 0, "{loose}");
    // A usage error, reported by the argument parser (exit 2).
    let url = dst.url();
    let bad = run(&[
        "compare",
        file.to_str().unwrap(),
        "--target",
        &url,
        "--ttl-tolerance",
        "soon",
    ]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("\"soon\" is not a duration"),
        "{}",
        bad.stderr
    );
}

#[test]
fn compare_follows_renames_and_databases_and_writes_nothing() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut s = src.conn_db(3);
    let _: () = s.hset("tenant_a:user", "n", "1").unwrap();
    let _: () = s.set("tenant_a:cfg", "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.tar.zst");
    export(&src, &file, &["--db", "3", "--match", "tenant_a:*"]).ok();
    restore(&dst, &file, &["--rename-prefix", "tenant_a:=tenant_b:"]).ok();
    // An unrelated key outside the selection is not an extra.
    let _: () = dst.conn_db(3).set("unrelated", "x").unwrap();
    let before = dst.dbsize(3);
    let same = compare(&file, &dst, &["--rename-prefix", "tenant_a:=tenant_b:"])
        .ok()
        .json();
    assert_eq!(same["differences"], 0, "{same}");
    assert_eq!(same["target"], format!("127.0.0.1:{}/3", dst.port));
    // Without the rename, both keys are missing.
    let out = compare(&file, &dst, &[]);
    assert_eq!(out.json()["by_kind"]["missing"], 2);
    assert_eq!(dst.dbsize(3), before, "compare is read-only");
}

/// After a skip-mode copy into a database with other data, plain compare
/// reports the target's own keys as extra; `--subset` asks only whether
/// the archive is in the target, and still sees a value that differs.
#[test]
fn subset_ignores_the_targets_other_keys_after_a_skip_mode_copy() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let mut d = dst.conn();
    let _: () = d.set("theirs:1", "kept").unwrap();
    let _: () = d.hset("theirs:2", "f", "kept").unwrap();
    let (from, to) = (src.url(), dst.url());
    let copied = run(&[
        "copy",
        "--source",
        &from,
        "--target",
        &to,
        "--yes",
        "--no-backup",
        "--verify",
        "--json",
    ])
    .ok()
    .json();
    let verification = &copied["verification"];
    assert_eq!(verification["mode"], "subset", "{copied}");
    assert_eq!(verification["differences"], 0, "{copied}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.tar.zst");
    export(&src, &file, &[]).ok();

    let plain = compare(&file, &dst, &[]);
    assert_eq!(plain.code, 14, "{}", plain.stderr);
    assert_eq!(plain.json()["by_kind"]["extra"], 2, "{}", plain.json());

    let subset = compare(&file, &dst, &["--subset"]).ok().json();
    assert_eq!(subset["differences"], 0, "{subset}");
    assert_eq!(subset["mode"], "subset");
    assert_eq!(subset["compared"], src.dbsize(0));
    let text = run(&[
        "compare",
        file.to_str().unwrap(),
        "--target",
        &to,
        "--subset",
    ])
    .ok()
    .stdout_text();
    assert!(text.starts_with("in the target, equal"), "{text}");

    let _: () = d.hset("hash:1", "name", "Bob").unwrap();
    let out = compare(&file, &dst, &["--subset"]);
    assert_eq!(out.code, 14);
    let diff = out.json();
    assert_eq!(diff["by_kind"]["value-differs"], 1, "{diff}");
    assert_eq!(diff["differences"], 1, "{diff}");
}

/// `--subset=merge` asks what a merge leaves: the archive's members are
/// in the target whatever their values; one the target lacks is named.
#[test]
fn subset_merge_checks_members_not_values() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let (mut s, mut d) = (src.conn(), dst.conn());
    redis::pipe()
        .cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .cmd("ZADD")
        .arg("z")
        .arg(1)
        .arg("m1")
        .arg(2)
        .arg("m2")
        .cmd("RPUSH")
        .arg("l")
        .arg("x")
        .arg("y")
        .cmd("SADD")
        .arg("s")
        .arg("p")
        .arg("q")
        .cmd("XADD")
        .arg("st")
        .arg("2-1")
        .arg("f")
        .arg("v")
        .cmd("SET")
        .arg("str")
        .arg("archive")
        .query::<()>(&mut s)
        .unwrap();
    redis::pipe()
        .cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("theirs")
        .arg("c")
        .arg("3")
        .cmd("ZADD")
        .arg("z")
        .arg(9)
        .arg("m1")
        .cmd("RPUSH")
        .arg("l")
        .arg("y")
        .arg("w")
        .cmd("XADD")
        .arg("st")
        .arg("1-1")
        .arg("f")
        .arg("theirs")
        .cmd("SET")
        .arg("str")
        .arg("theirs")
        .cmd("EXPIRE")
        .arg("str")
        .arg(100)
        .query::<()>(&mut d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.tar.zst");
    export(&src, &file, &[]).ok();
    restore(&dst, &file, &["--mode", "merge"]).ok();

    let merged = compare(&file, &dst, &["--subset=merge"]).ok().json();
    assert_eq!(merged["differences"], 0, "{merged}");
    assert_eq!(merged["mode"], "merge");
    // The same target is not equal to the archive.
    assert_eq!(compare(&file, &dst, &["--subset"]).code, 14);

    let _: () = d.lrem("l", 0, "x").unwrap();
    let _: () = d.hdel("h", "b").unwrap();
    let out = compare(&file, &dst, &["--subset=merge"]);
    assert_eq!(out.code, 14);
    let diff = out.json();
    assert_eq!(diff["by_kind"]["value-differs"], 2, "{diff}");
    let details = diff["examples"].to_string();
    assert!(
        details.contains("\\\"x\\\" missing in the target"),
        "{details}"
    );
    assert!(
        details.contains("\\\"b\\\" missing in the target"),
        "{details}"
    );
}
