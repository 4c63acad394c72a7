//! Export from one real server, restore into another, compare key by key.

use std::process::Stdio;

use crate::support::*;
use redis::Commands;

#[test]
fn every_type_and_edge_case_round_trips_exactly() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.tar.zst");

    let out = export(&src, &file, &["--json"]).ok();
    let report = out.json();
    let keys = src.dbsize(0);
    assert_eq!(report["keys"], keys, "{report}");
    assert_eq!(report["by_type"]["stream"]["exported"], 3);
    assert_eq!(report["errors"], 0);

    restore(&dst, &file, &[]).ok();
    let compared = assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
    assert_eq!(compared, keys);
}

#[test]
fn archive_file_is_private_and_opens_with_stock_tools() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &[]).ok();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "archives hold data: owner-only");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");

    let names = String::from_utf8(stock_tar(&file, "-t")).unwrap();
    assert_eq!(names, "header.json\ndata/000000.jsonl\nmanifest.json\n");

    let text = String::from_utf8(stock_tar(&file, "-xO data/000000.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, src.dbsize(0));
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    assert!(
        text.contains(r#""key":"str:plain","value":{"string":"hello"}"#),
        "{text}"
    );
}

#[test]
fn inspect_shows_the_manifest() {
    let src = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &["--match", "str:*"]).ok();

    let text = run(&["inspect", file.to_str().unwrap()]).ok().stdout_text();
    assert!(text.contains("schema_version 2"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}/0", src.port)),
        "{text}"
    );
    assert!(text.contains("match:           str:*"), "{text}");
    assert!(text.contains("data/000000.jsonl"), "{text}");

    let json = run(&["inspect", "--json", file.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(json["format"], "redis-archive");
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["source"]["port"], src.port);
    let server = src.version();
    let flavor = match server.flavor {
        Flavor::Redis => "redis",
        Flavor::Valkey => "valkey",
    };
    assert_eq!(json["source"]["server"]["flavor"], flavor);
    assert_eq!(json["source"]["server"]["version"], server.version);
    assert_eq!(json["selection"]["match"][0], "str:*");
    assert_eq!(json["counts"]["keys"], 5);
    assert_eq!(json["counts"]["by_type"]["string"]["keys"], 5);
    let entry = &json["entries"][0];
    assert_eq!(entry["name"], "data/000000.jsonl");
    assert_eq!(entry["sha256"].as_str().unwrap().len(), 64);
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn big_collections_are_read_and_written_in_chunks() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let n = 25_000;
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("HSET")
            .arg("big:hash")
            .arg(format!("f{i}"))
            .arg(i)
            .ignore();
        pipe.cmd("RPUSH").arg("big:list").arg(i).ignore();
        pipe.cmd("SADD").arg("big:set").arg(i).ignore();
        pipe.cmd("ZADD")
            .arg("big:zset")
            .arg(i as f64 / 3.0)
            .arg(i)
            .ignore();
    }
    for i in 0..3_500 {
        pipe.cmd("XADD")
            .arg("big:stream")
            .arg(format!("{}-{}", 1 + i / 3, i % 3))
            .arg("i")
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    let big_string: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = c.set("big:string", &big_string).unwrap();
    let _: () = c.pexpire("big:zset", 500_000).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.tar.zst");
    export(&src, &file, &[]).ok();
    let manifest = run(&["inspect", "--json", file.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(manifest["counts"]["keys"], 6);
    // Each big key spans several records: chunked, never one reply.
    for t in ["hash", "list", "set", "zset", "stream", "string"] {
        let records = manifest["counts"]["by_type"][t]["records"]
            .as_u64()
            .unwrap();
        assert!(records > 2, "{t} should be chunked, has {records} records");
    }
    restore(&dst, &file, &[]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn selection_by_pattern_exclude_type_and_db() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    redis::pipe()
        .cmd("SET")
        .arg("user:1")
        .arg("a")
        .cmd("HSET")
        .arg("user:1:profile")
        .arg("n")
        .arg("x")
        .cmd("SET")
        .arg("user:1:tmp")
        .arg("t")
        .cmd("SET")
        .arg("apikey:k")
        .arg("k")
        .cmd("SET")
        .arg("session:s")
        .arg("s")
        .query::<()>(&mut c)
        .unwrap();
    let mut c3 = src.conn_db(3);
    let _: () = c3.set("db3:key", "three").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sel.tar.zst");
    let report = export(
        &src,
        &file,
        &[
            "--match",
            "user:*",
            "--match",
            "apikey:*",
            "--exclude",
            "*:tmp",
            "--type",
            "string",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(report["keys"], 2, "{report}");
    restore(&dst, &file, &[]).ok();
    let mut d = dst.conn();
    let mut keys: Vec<String> = d.keys("*").unwrap();
    keys.sort();
    assert_eq!(keys, ["apikey:k", "user:1"]);

    // --db picks the source database; restore --db picks the target's.
    let file3 = dir.path().join("db3.tar.zst");
    export(&src, &file3, &["--db", "3"]).ok();
    restore(&dst, &file3, &["--db", "5"]).ok();
    let v: Option<String> = dst.conn_db(5).get("db3:key").unwrap();
    assert_eq!(v.as_deref(), Some("three"));
    assert_eq!(dst.dbsize(3), 0);
}

#[test]
fn client_side_globs_agree_with_the_server() {
    // Two patterns are matched here, one by the server: both must pick the
    // same keys for every pattern shape.
    let src = RedisServer::start();
    let mut c = src.conn();
    let keys = [
        "hello", "hallo", "hxllo", "hllo", "heeello", "h*llo", "a[b", "x\\y", "user:1", "user:12",
    ];
    for k in keys {
        let _: () = c.set(k, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for pattern in [
        "h?llo",
        "h*llo",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-f]llo",
        "h\\*llo",
        "a[[]b",
        "x\\\\y",
        "user:?",
        "*",
    ] {
        let server: Vec<String> = {
            let mut v: Vec<String> = c.keys(pattern).unwrap();
            v.sort();
            v
        };
        let file = dir.path().join("g.tar.zst");
        // The second pattern matches nothing, forcing client-side matching.
        export(
            &src,
            &file,
            &["--match", pattern, "--match", "\u{1}nothing"],
        )
        .ok();
        let text = stock_tar(&file, "-xO data/000000.jsonl");
        let mut ours: Vec<String> = String::from_utf8(text)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        ours.sort();
        assert_eq!(ours, server, "pattern {pattern:?}");
    }
}

#[test]
fn export_to_stdout_pipes_into_restore_from_stdin() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let src_url = src.url();
    let dst_url = dst.url();
    let mut exporter = command(&["export", "--source", &src_url, "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let restorer = command(&["restore", "-", "--target", &dst_url, "--yes", "--json"])
        .stdin(exporter.stdout.take().unwrap())
        .output()
        .unwrap();
    let exported = exporter.wait_with_output().unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&exported.stderr).contains("exported"),
        "the export summary goes to stderr when the archive is on stdout"
    );
    let restored = output(restorer).ok();
    assert_eq!(restored.json()["written"], src.dbsize(0));
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn default_output_name_carries_a_utc_timestamp() {
    let src = RedisServer::start();
    let _: () = src.conn().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = src.url();
    let out = command(&["export", "--source", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    output(out).ok();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    // archive-YYYYMMDDTHHMMSSZ-db0.tar.zst
    assert!(
        name.starts_with("archive-") && name.ends_with("Z-db0.tar.zst"),
        "{name}"
    );
    assert_eq!(
        name.len(),
        "archive-20261121T101500Z-db0.tar.zst".len(),
        "{name}"
    );
}

#[test]
fn source_url_and_password_come_from_the_environment() {
    let src = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}", src.port)).unwrap();
    let _: () = client.get_connection().unwrap().set("k", "v").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.tar.zst");
    let out = command(&["export", "-o", file.to_str().unwrap()])
        .env("SOURCE_REDIS_URL", src.url())
        .env("SOURCE_REDIS_PASSWORD", "s3cret")
        .output()
        .unwrap();
    let out = output(out).ok();
    assert!(!out.stdout_text().contains("s3cret"));
    let manifest = stock_tar(&file, "-xO");
    assert!(
        !String::from_utf8_lossy(&manifest).contains("s3cret"),
        "no password in the archive"
    );
}

#[test]
fn fat_elements_are_split_into_bounded_records() {
    // One HSCAN page of 1000 fields of 20 KiB is ~20 MiB: it must become
    // several records near 8 MiB, and a single 10 MiB element its own.
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let fat = "v".repeat(20 << 10);
    let mut pipe = redis::pipe();
    for i in 0..1500 {
        pipe.cmd("HSET")
            .arg("fat:hash")
            .arg(format!("f{i}"))
            .arg(&fat)
            .ignore();
    }
    pipe.cmd("RPUSH")
        .arg("fat:list")
        .arg("small")
        .arg("x".repeat(10 << 20))
        .arg("small")
        .ignore();
    pipe.query::<()>(&mut c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fat.tar.zst");
    export(&src, &file, &[]).ok();

    let data = stock_tar(&file, "-xO --wildcards 'data/*'");
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let longest = lines.iter().map(|l| l.len()).max().unwrap();
    assert!(
        lines.len() >= 6,
        "split into several records: {}",
        lines.len()
    );
    assert!(
        longest < (10 << 20) + 4096,
        "records stay bounded: {longest}"
    );
    restore(&dst, &file, &[]).ok();
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);
}

/// Off a terminal (CI, a `tee`d log) a long run says how far it got, line
/// by line, and the summary still ends it.
#[test]
fn progress_goes_to_logs_as_lines() {
    let src = RedisServer::start();
    dataset::load(&mut src.conn(), 60_000, 0);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    let url = src.url();
    let out = command(&["export", "--source", &url, "-o", file.to_str().unwrap()])
        .env("ARCHIVE_PROGRESS_INTERVAL", "0.01")
        .output()
        .unwrap();
    let run = output(out).ok();
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("exporting: "))
        .collect();
    assert!(!lines.is_empty(), "{}", run.stderr);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("/60000 keys, ") && l.ends_with(" s")),
        "{lines:?}"
    );
    assert!(run.stdout_text().starts_with("exported 60000 keys"));

    // --progress none: no lines, the same summary.
    let out = command(&[
        "export",
        "--source",
        &url,
        "-o",
        file.to_str().unwrap(),
        "--progress",
        "none",
    ])
    .env("ARCHIVE_PROGRESS_INTERVAL", "0.01")
    .output()
    .unwrap();
    let quiet = output(out).ok();
    assert!(!quiet.stderr.contains("exporting: "), "{}", quiet.stderr);
    assert!(quiet.stdout_text().starts_with("exported 60000 keys"));
    // An unknown mode is a usage error.
    let bad = crate::support::run(&["export", "--source", &url, "--progress", "loud"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
