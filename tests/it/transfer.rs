//! Moving data between environments: copy, renames, databases, merge, fail.

use crate::support::*;
use redis::Commands;

fn copy(src: &RedisServer, dst: &RedisServer, extra: &[&str]) -> Run {
    let (s, t) = (src.url(), dst.url());
    let mut args = vec!["copy", "--source", &s, "--target", &t];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn copy_round_trips_a_mixed_keyspace() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    dataset::load(&mut src.conn(), 3_000, 5_000);
    let report = copy(&src, &dst, &["--yes", "--json"]).ok().json();
    assert_eq!(report["written"], src.dbsize(0), "{report}");
    assert_eq!(report["errors"], 0);
    assert_eq!(report["read_errors"], 0);
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);

    // Again: everything exists now, so skip mode writes nothing.
    let again = copy(&src, &dst, &["--yes", "--json"]).ok().json();
    assert_eq!(again["written"], 0);
}

/// An archive from the default server restores exactly into each tested
/// server, and a copy reaches each too. `./scripts/test` runs this suite
/// against each server in turn, so every pair of source and target is
/// covered (Redis 7.0, Redis 8.0, Valkey 8.1).
#[test]
fn every_tested_server_takes_an_archive_from_the_default_one() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    dataset::load(&mut src.conn(), 600, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &[]).ok();
    for kind in ServerKind::ALL {
        let dst = RedisServer::start_version(kind);
        let report = restore(&dst, &file, &["--json"]).ok().json();
        assert_eq!(report["errors"], 0, "{kind:?}: {report}");
        assert_same_db(&mut src.conn(), &mut dst.conn(), 0);

        let other = RedisServer::start_version(kind);
        copy(&src, &other, &["--yes"]).ok();
        assert_same_db(&mut src.conn(), &mut other.conn(), 0);
    }
}

#[test]
fn copy_dry_run_and_confirmation_write_nothing() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let text = copy(&src, &dst, &["--dry-run", "--match", "str:*"])
        .ok()
        .stdout_text();
    assert!(text.contains("dry run: copy"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}/0", src.port)),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}/0", dst.port)),
        "{text}"
    );
    assert!(text.contains("match:           str:*"), "{text}");
    let plan = copy(&src, &dst, &["--dry-run", "--json", "--match", "str:*"])
        .ok()
        .json();
    assert_eq!(plan["plan"]["by_type"]["string"]["create"], 5, "{plan}");
    copy(&src, &dst, &[]).fails(11, "pass --yes");
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn copy_between_databases_of_one_server() {
    let server = RedisServer::start();
    load_mixed(&mut server.conn_db(1));
    let url = server.url();
    let report = run(&[
        "copy",
        "--source",
        &url,
        "--source-db",
        "1",
        "--target",
        &url,
        "--db",
        "0",
        "--yes",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(report["target"], format!("127.0.0.1:{}/0", server.port));
    assert_same_db(&mut server.conn_db(1), &mut server.conn_db(0), 1000);

    // Without --db the target is the source's database: here, the same
    // database, which a copy refuses (it would skip every key).
    let same = run(&[
        "copy",
        "--source",
        &server.url_db(1),
        "--target",
        &url,
        "--yes",
        "--json",
    ])
    .fails(2, "are the same database");
    assert!(
        same.stderr
            .contains(&format!("the target 127.0.0.1:{}/1", server.port)),
        "{}",
        same.stderr
    );
}

#[test]
fn restore_goes_to_the_archives_database_unless_told_otherwise() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let _: () = src.conn_db(2).set("in-db-2", "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db2.tar.zst");
    export(&src, &file, &["--db", "2"]).ok();
    restore(&dst, &file, &[]).ok();
    assert_eq!(dst.dbsize(2), 1, "the archive's database by default");
    let url0 = dst.url_db(0);
    run(&[
        "restore",
        file.to_str().unwrap(),
        "--target",
        &url0,
        "--yes",
    ])
    .ok();
    assert_eq!(dst.dbsize(0), 1, "a database in the URL wins");
}

/// A tenant's keys of every type, with TTLs.
fn load_tenant(c: &mut redis::Connection, prefix: &str) {
    let k = |s: &str| format!("{prefix}{s}");
    redis::pipe()
        .cmd("SET")
        .arg(k("config"))
        .arg("v")
        .arg("PX")
        .arg(800_000)
        .cmd("HSET")
        .arg(k("user:1"))
        .arg("name")
        .arg("Ann")
        .cmd("PEXPIRE")
        .arg(k("user:1"))
        .arg(900_000)
        .cmd("RPUSH")
        .arg(k("queue"))
        .arg("a")
        .arg("b")
        .cmd("SADD")
        .arg(k("tags"))
        .arg("x")
        .cmd("ZADD")
        .arg(k("rank"))
        .arg(1)
        .arg("m")
        .cmd("XADD")
        .arg(k("events"))
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("PEXPIRE")
        .arg(k("events"))
        .arg(700_000)
        .query::<()>(c)
        .unwrap();
}

#[test]
fn rename_prefix_moves_a_tenant_with_ttls() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_tenant(&mut src.conn(), "tenant_a:");
    let _: () = src.conn().set("other:key", "untouched").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.tar.zst");
    export(&src, &file, &["--match", "tenant_a:*"]).ok();
    restore(&dst, &file, &["--rename-prefix", "tenant_a:=tenant_b:"]).ok();

    let (mut s, mut d) = (src.conn(), dst.conn());
    let keys: Vec<String> = s.keys("tenant_a:*").unwrap();
    assert_eq!(keys.len(), 6);
    assert_eq!(dst.dbsize(0), 6);
    for key in keys {
        let renamed = key.replacen("tenant_a:", "tenant_b:", 1);
        assert_eq!(
            key_state(&mut s, key.as_bytes()),
            key_state(&mut d, renamed.as_bytes()),
            "{key}"
        );
        let (a, b) = (
            expire_time(&mut s, key.as_bytes()),
            expire_time(&mut d, renamed.as_bytes()),
        );
        assert_eq!(a.is_some(), b.is_some(), "{key}");
        if let (Some(a), Some(b)) = (a, b) {
            assert!((a - b).abs() <= 1000, "{key}: {a} vs {b}");
        }
    }

    // copy does the same within one database, leaving the source as it was.
    let (url, url2) = (src.url(), src.url());
    let report = run(&[
        "copy",
        "--source",
        &url,
        "--target",
        &url2,
        "--match",
        "tenant_a:*",
        "--rename-prefix",
        "tenant_a:=tenant_c:",
        "--yes",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(report["written"], 6);
    let copied: Vec<String> = s.keys("tenant_c:*").unwrap();
    assert_eq!(copied.len(), 6);
    assert_eq!(s.keys::<_, Vec<String>>("tenant_a:*").unwrap().len(), 6);
}

#[test]
fn merge_adds_missing_members_and_changes_nothing() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let (mut s, mut d) = (src.conn(), dst.conn());
    redis::pipe()
        .cmd("ZADD")
        .arg("index")
        .arg(5)
        .arg("alice")
        .arg(3)
        .arg("carol")
        .cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("archive")
        .arg("b")
        .arg("archive")
        .cmd("SADD")
        .arg("s")
        .arg("x")
        .arg("y")
        .cmd("RPUSH")
        .arg("l")
        .arg("1")
        .arg("2")
        .arg("3")
        .cmd("XADD")
        .arg("st")
        .arg("1-1")
        .arg("f")
        .arg("old")
        .cmd("XADD")
        .arg("st")
        .arg("9-1")
        .arg("f")
        .arg("new")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("st")
        .arg("g2")
        .arg("0")
        .cmd("SET")
        .arg("str")
        .arg("archive")
        .cmd("SET")
        .arg("fresh")
        .arg("new key")
        .query::<()>(&mut s)
        .unwrap();
    redis::pipe()
        .cmd("ZADD")
        .arg("index")
        .arg(1)
        .arg("alice")
        .arg(2)
        .arg("bob")
        .cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("target")
        .cmd("PEXPIRE")
        .arg("h")
        .arg(500_000)
        .cmd("SADD")
        .arg("s")
        .arg("y")
        .arg("z")
        .cmd("RPUSH")
        .arg("l")
        .arg("2")
        .arg("9")
        .cmd("XADD")
        .arg("st")
        .arg("5-1")
        .arg("f")
        .arg("target")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("st")
        .arg("g1")
        .arg("0")
        .cmd("SET")
        .arg("str")
        .arg("target")
        .query::<()>(&mut d)
        .unwrap();
    let h_expiry = expire_time(&mut d, b"h");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.tar.zst");
    export(&src, &file, &[]).ok();

    let plan = restore(&dst, &file, &["--mode", "merge", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(plan["plan"]["by_type"]["zset"]["merge"], 1, "{plan}");
    assert_eq!(plan["plan"]["by_type"]["string"]["skip"], 1, "{plan}");
    let report = restore(&dst, &file, &["--mode", "merge", "--json"])
        .ok()
        .json();
    assert_eq!(report["plan"]["by_type"]["zset"]["merge"], 1);
    assert_eq!(report["written"], 1, "only the new string key: {report}");
    // carol (zset) + b (hash) + x (set) + 1, 3 (list) + 9-1 (stream) = 6
    assert_eq!(report["added"], 6, "{report}");

    let index: Vec<(String, f64)> = d.zrange_withscores("index", 0, -1).unwrap();
    assert_eq!(
        index,
        [
            ("alice".into(), 1.0),
            ("bob".into(), 2.0),
            ("carol".into(), 3.0)
        ],
        "existing scores kept"
    );
    let mut h: Vec<(String, String)> = d.hgetall("h").unwrap();
    h.sort();
    assert_eq!(
        h,
        [
            ("a".into(), "target".into()),
            ("b".into(), "archive".into())
        ]
    );
    assert_eq!(expire_time(&mut d, b"h"), h_expiry, "expiry unchanged");
    let mut set: Vec<String> = d.smembers("s").unwrap();
    set.sort();
    assert_eq!(set, ["x", "y", "z"]);
    assert_eq!(
        d.lrange::<_, Vec<String>>("l", 0, -1).unwrap(),
        ["2", "9", "1", "3"]
    );
    let ids: Vec<String> = redis::cmd("XRANGE")
        .arg("st")
        .arg("-")
        .arg("+")
        .query::<Vec<(String, Vec<String>)>>(&mut d)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        ["5-1", "9-1"],
        "older ids cannot be inserted; newer ones are appended"
    );
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("st")
        .query(&mut d)
        .unwrap();
    let groups = format!("{groups:?}");
    assert!(groups.contains("g1") && groups.contains("g2"), "{groups}");
    assert_eq!(
        d.get::<_, String>("str").unwrap(),
        "target",
        "existing strings are skipped"
    );
    assert_eq!(d.get::<_, String>("fresh").unwrap(), "new key");
}

#[test]
fn fail_mode_writes_nothing_when_keys_exist() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let mut d = dst.conn();
    let _: () = d.set("str:plain", "live").unwrap();
    let _: () = d.set("list:1", "live").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.tar.zst");
    export(&src, &file, &[]).ok();
    let out = restore(&dst, &file, &["--mode", "fail"]).fails(13, "2 key(s) already exist");
    assert!(
        out.stderr.contains("str:plain") && out.stderr.contains("list:1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"));
    assert_eq!(dst.dbsize(0), 2);
    copy(&src, &dst, &["--mode", "fail", "--yes"]).fails(13, "already exist");
    assert_eq!(dst.dbsize(0), 2);

    // Into an empty database, fail mode is an ordinary restore.
    let empty = RedisServer::start();
    restore(&empty, &file, &["--mode", "fail"]).ok();
    assert_same_db(&mut src.conn(), &mut empty.conn(), 1000);
}

/// The variables teams' `.env` files already hold (SOURCE_REDIS_HOST,
/// _PORT, _PASSWORD, _DB and TARGET_...) say where to copy from and to;
/// a value that is not a number is refused before anything happens.
#[test]
fn connection_variables_name_both_ends() {
    let src = RedisServer::start_with(&["--requirepass", "src-pw"]);
    let dst = RedisServer::start();
    let mut c = redis::Client::open(format!("redis://:src-pw@127.0.0.1:{}/3", src.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = c.set("in:three", "yes").unwrap();
    let (src_port, dst_port) = (src.port.to_string(), dst.port.to_string());
    let out = command(&["copy", "--yes", "--no-backup", "--json"])
        .env("SOURCE_REDIS_HOST", "127.0.0.1")
        .env("SOURCE_REDIS_PORT", &src_port)
        .env("SOURCE_REDIS_PASSWORD", "src-pw")
        .env("SOURCE_REDIS_DB", "3")
        .env("TARGET_REDIS_HOST", "127.0.0.1")
        .env("TARGET_REDIS_PORT", &dst_port)
        .env("TARGET_REDIS_DB", "5")
        .output()
        .unwrap();
    let report = output(out).ok().json();
    assert!(!report.to_string().contains("src-pw"), "{report}");
    let v: String = dst.conn_db(5).get("in:three").unwrap();
    assert_eq!(v, "yes");
    assert_eq!(dst.dbsize(0), 0);

    let out = command(&["export", "-o", "/tmp/never.tar.zst"])
        .env("SOURCE_REDIS_PORT", "63x79")
        .output()
        .unwrap();
    output(out).fails(2, "SOURCE_REDIS_PORT=\"63x79\" is not a port");
    assert!(!std::path::Path::new("/tmp/never.tar.zst").exists());

    // A user of its own (an ACL user, its name needing percent-encoding),
    // and TLS asked for in words.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("copy@er")
        .arg("on")
        .arg(">copy-pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query(&mut c)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("by-user.tar.zst");
    let out = command(&["export", "-o", file.to_str().unwrap(), "--json"])
        .env("SOURCE_REDIS_HOST", "127.0.0.1")
        .env("SOURCE_REDIS_PORT", &src_port)
        .env("SOURCE_REDIS_USERNAME", "copy@er")
        .env("SOURCE_REDIS_PASSWORD", "copy-pw")
        .env("SOURCE_REDIS_DB", "3")
        .env("SOURCE_REDIS_TLS", "no")
        .output()
        .unwrap();
    let report = output(out).ok().json();
    assert_eq!(report["keys"], 1, "{report}");
    assert!(!report.to_string().contains("copy-pw"), "{report}");
    let out = command(&["export", "-o", file.to_str().unwrap()])
        .env("SOURCE_REDIS_PORT", &src_port)
        .env("SOURCE_REDIS_TLS", "maybe")
        .output()
        .unwrap();
    output(out).fails(2, "SOURCE_REDIS_TLS=\"maybe\" is neither yes nor no");
}

/// A copy of a database onto itself would skip (or rewrite) every key:
/// refused before anything happens, whatever name the URLs give the
/// server; with a rename it is a real move and goes ahead.
#[test]
fn copy_onto_itself_is_refused_unless_it_renames() {
    let server = RedisServer::start();
    let _: () = server.conn_db(2).set("tenant:a:k", "v").unwrap();
    let by_ip = format!("redis://127.0.0.1:{}/2", server.port);
    let by_name = format!("redis://localhost:{}/2", server.port);
    run(&["copy", "--source", &by_ip, "--target", &by_name, "--yes"])
        .fails(2, "are the same database");
    assert_eq!(server.dbsize(2), 1);
    run(&[
        "copy",
        "--source",
        &by_ip,
        "--target",
        &by_ip,
        "--yes",
        "--no-backup",
        "--rename-prefix",
        "tenant:a:=tenant:b:",
    ])
    .ok();
    let v: String = server.conn_db(2).get("tenant:b:k").unwrap();
    assert_eq!(v, "v");
}

/// DB 1 -> DB 0 with `--mode merge --verify` into a database with data of
/// its own: the check passes and keeps the target's values; entries a
/// merge cannot add (older than the target stream's last id) fail it.
#[test]
fn merge_copy_from_db1_into_db0_verifies() {
    let server = RedisServer::start();
    let (mut one, mut zero) = (server.conn_db(1), server.conn_db(0));
    redis::pipe()
        .cmd("HSET")
        .arg("session:1")
        .arg("user")
        .arg("42")
        .arg("seen")
        .arg("now")
        .cmd("ZADD")
        .arg("session:index")
        .arg(1)
        .arg("s1")
        .arg(2)
        .arg("s2")
        .cmd("SADD")
        .arg("session:tags")
        .arg("a")
        .arg("b")
        .cmd("RPUSH")
        .arg("session:log")
        .arg("login")
        .arg("view")
        .cmd("SET")
        .arg("session:cfg")
        .arg("db1")
        .cmd("XADD")
        .arg("events:1")
        .arg("1-1")
        .arg("f")
        .arg("db1")
        .query::<()>(&mut one)
        .unwrap();
    redis::pipe()
        .cmd("SET")
        .arg("other:x")
        .arg("db0")
        .cmd("ZADD")
        .arg("session:index")
        .arg(5)
        .arg("s0")
        .arg(9)
        .arg("s1")
        .cmd("HSET")
        .arg("session:1")
        .arg("user")
        .arg("db0")
        .cmd("RPUSH")
        .arg("session:log")
        .arg("boot")
        .cmd("XADD")
        .arg("events:1")
        .arg("5-1")
        .arg("f")
        .arg("db0")
        .query::<()>(&mut zero)
        .unwrap();
    let (db1, db0) = (server.url_db(1), server.url_db(0));
    let copy = |selection: &str, json: bool| {
        let mut args = vec![
            "copy",
            "--source",
            &db1,
            "--target",
            &db0,
            "--match",
            selection,
            "--mode",
            "merge",
            "--verify",
            "--yes",
            "--no-backup",
        ];
        if json {
            args.push("--json");
        }
        run(&args)
    };
    let report = copy("session:*", true).ok().json();
    let verification = &report["verification"];
    assert_eq!(verification["mode"], "merge", "{report}");
    assert_eq!(verification["differences"], 0, "{report}");
    assert_eq!(verification["compared"], 5, "{report}");
    let score: f64 = zero.zscore("session:index", "s1").unwrap();
    assert_eq!(score, 9.0, "merge keeps the target's score");
    let user: String = zero.hget("session:1", "user").unwrap();
    assert_eq!(user, "db0");
    let other: String = zero.get("other:x").unwrap();
    assert_eq!(other, "db0");

    let out = copy("events:*", false);
    assert_eq!(out.code, 14, "{}\n{}", out.stderr, out.stdout_text());
    let text = out.stdout_text();
    assert!(text.contains("verify: DIFFERENT"), "{text}");
    assert!(text.contains("entry 1-1 missing in the target"), "{text}");
}

/// A merge plan says how much it would add, member by member, and the
/// merge then adds exactly that: a sorted set, a hash, a list (a value
/// twice in the archive, once in the target), a stream (entries at or
/// below the target's last id are not added) and a set.
#[test]
fn a_merge_plan_counts_what_it_would_add() {
    let server = RedisServer::start();
    let mut one = server.conn_db(1);
    let mut zero = server.conn_db(0);
    redis::pipe()
        .cmd("ZADD")
        .arg("idx")
        .arg(1)
        .arg("a")
        .arg(2)
        .arg("b")
        .arg(3)
        .arg("c")
        .cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg(1)
        .arg("f2")
        .arg(2)
        .arg("f3")
        .arg(3)
        .cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("a")
        .cmd("XADD")
        .arg("s")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("XADD")
        .arg("s")
        .arg("5-0")
        .arg("f")
        .arg("v")
        .cmd("XADD")
        .arg("s")
        .arg("10-2")
        .arg("f")
        .arg("v")
        .cmd("SADD")
        .arg("st")
        .arg("a")
        .arg("b")
        .cmd("SET")
        .arg("str")
        .arg("v")
        .query::<()>(&mut one)
        .unwrap();
    redis::pipe()
        .cmd("ZADD")
        .arg("idx")
        .arg(9)
        .arg("a")
        .cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg("x")
        .cmd("RPUSH")
        .arg("l")
        .arg("b")
        .cmd("XADD")
        .arg("s")
        .arg("5-0")
        .arg("f")
        .arg("v")
        .cmd("SADD")
        .arg("st")
        .arg("b")
        .query::<()>(&mut zero)
        .unwrap();
    let (from, to) = (server.url_db(1), server.url_db(0));
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "copy",
            "--source",
            from.as_str(),
            "--target",
            to.as_str(),
            "--mode",
            "merge",
        ];
        a.extend_from_slice(extra);
        a
    };
    let text = run(&args(&["--dry-run"])).ok().stdout_text();
    assert!(
        text.contains("merge would add 8 fields, members or entries to 5 existing keys"),
        "{text}"
    );
    let plan = run(&args(&["--dry-run", "--json"])).ok().json();
    assert_eq!(plan["merge_would_add"], 8, "{plan}");
    assert_eq!(server.dbsize(0), 5, "a dry run writes nothing");
    let done = run(&args(&["--yes", "--no-backup", "--json"])).ok().json();
    assert_eq!(done["added"], 8, "{done}");
    // With --yes nothing is shown before writing, so nothing is counted.
    assert!(done.get("merge_would_add").is_none(), "{done}");
}
