//! Stream consumer groups: their consumers and pending entries survive
//! export/restore, copy and rollback exactly, however long the PEL.
//! One file, though long: every test shares the job-queue builders.

use crate::support::*;
use redis::Value;

fn pending_count(c: &mut redis::Connection, key: &str, group: &str) -> i64 {
    let summary: Vec<Value> = redis::cmd("XPENDING").arg(key).arg(group).query(c).unwrap();
    redis::from_redis_value(summary[0].clone()).unwrap()
}

fn stream_state(server: &RedisServer, key: &str) -> KeyState {
    key_state(&mut server.conn(), key.as_bytes()).unwrap()
}

#[test]
fn export_then_restore_keeps_consumers_and_pending_entries() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.tar.zst");
    export(&src, &file, &[]).ok();

    let report = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        report["pending_not_restored"], 1,
        "the entry whose message was deleted is counted: {report}"
    );
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);

    // Beyond the snapshot: what a worker sees.
    let mut d = dst.conn();
    assert_eq!(pending_count(&mut d, "stream:jobs", "workers"), 4);
    assert_eq!(pending_count(&mut d, "stream:jobs", "audit"), 5);
    let KeyState::Stream {
        consumers, pending, ..
    } = stream_state(&dst, "stream:jobs")
    else {
        panic!("not a stream")
    };
    let workers = &consumers.iter().find(|(g, _)| g == b"workers").unwrap().1;
    assert_eq!(
        workers,
        &[
            b"idle-worker".to_vec(),
            b"w1".to_vec(),
            b"w2".to_vec(),
            b"w3".to_vec()
        ]
    );
    let counts: Vec<i64> = pending
        .iter()
        .filter(|p| p.0 == b"workers")
        .map(|p| p.3)
        .collect();
    assert_eq!(counts, [3, 4, 1, 1], "1-0 three deliveries, 2-0 four");
    // Delivered but not acknowledged: a consumer claiming idle entries gets them again.
    let claimed: Vec<Value> = redis::cmd("XAUTOCLAIM")
        .arg("stream:jobs")
        .arg("workers")
        .arg("w9")
        .arg(30_000)
        .arg("0")
        .arg("JUSTID")
        .query(&mut d)
        .unwrap();
    let ids: Vec<String> = redis::from_redis_value(claimed[1].clone()).unwrap();
    assert_eq!(ids, ["2-0"], "the entry delivered a minute ago");

    // The text report says it too.
    let text = restore(&dst, &file, &["--db", "2"]).ok().stdout_text();
    assert!(
        text.contains("1 pending entry of consumer groups not restored"),
        "{text}"
    );
}

#[test]
fn a_small_stream_with_groups_stays_one_record() {
    let src = RedisServer::start();
    load_job_queue(&mut src.conn(), "jobs");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.tar.zst");
    export(&src, &file, &[]).ok();
    let text = String::from_utf8(stock_tar(&file, "-xO data/000000.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let record: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let stream = &record["value"]["stream"];
    assert_eq!(stream["meta"]["last_id"], "100-7");
    let workers = &stream["meta"]["groups"][1];
    assert_eq!(workers["name"], "workers");
    assert_eq!(
        workers["consumers"],
        serde_json::json!(["idle-worker", "w1", "w2", "w3"])
    );
    let run = stream["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "workers")
        .unwrap();
    let first = &run["entries"][0];
    assert_eq!(first["id"], "1-0");
    assert_eq!(first["consumer"], "w3");
    assert_eq!(first["delivery_count"], 3);
    assert!(first["delivered_at_ms"].as_i64().unwrap() > 1_600_000_000_000);
    let ids: Vec<&str> = run["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["1-0", "2-0", "4-0", "5-0", "6-0"],
        "archived as read, 6-0 included"
    );
}

#[test]
fn copy_keeps_consumers_and_pending_entries() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let (s, t) = (src.url(), dst.url());
    let report = run(&["copy", "--source", &s, "--target", &t, "--yes", "--json"])
        .ok()
        .json();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["pending_not_restored"], 1, "{report}");
    assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
}

#[test]
fn overwrite_then_rollback_puts_groups_back_exactly() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    // The target's own job queue, in another state: more acknowledged, a
    // consumer of its own, a later delivery.
    let mut d = dst.conn();
    load_job_queue(&mut d, "stream:jobs");
    let _: Value = redis::pipe()
        .cmd("XACK")
        .arg("stream:jobs")
        .arg("workers")
        .arg("4-0")
        .cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("stream:jobs")
        .arg("audit")
        .arg("target-only")
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("late")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg("stream:jobs")
        .arg(">")
        .query(&mut d)
        .unwrap();
    let before = dst.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.tar.zst");
    export(&src, &file, &[]).ok();
    let backups = dir.path().join("backups");
    let report = restore(
        &dst,
        &file,
        &[
            "--mode",
            "overwrite",
            "--backup-dir",
            backups.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(report["pending_not_restored"], 1, "{report}");
    assert_eq!(
        stream_state(&dst, "stream:jobs"),
        stream_state(&src, "stream:jobs"),
        "overwritten with the archive's groups"
    );
    assert_ne!(before, dst.snapshot());

    let backup = report["backup"].as_str().unwrap().to_string();
    let done = run(&["rollback", &backup, "--yes", "--json"]).ok().json();
    assert_eq!(done["changed"], 0, "{done}");
    assert_eq!(
        done["pending_not_restored"], 1,
        "the target's own entry for a deleted message cannot come back: {done}"
    );
    assert_eq!(dst.snapshot(), before, "rollback is exact");
}

#[test]
fn a_big_pending_entries_list_is_paged_and_round_trips() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    let n = 6_000;
    let mut pipe = redis::pipe();
    for i in 1..=n {
        pipe.cmd("XADD")
            .arg("big:jobs")
            .arg(format!("{i}-0"))
            .arg("i")
            .arg(i)
            .ignore();
    }
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg("big:jobs")
        .arg("g")
        .arg("0")
        .ignore();
    for w in 0..6 {
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg(format!("worker-{w}"))
            .arg("COUNT")
            .arg(n / 6)
            .arg("STREAMS")
            .arg("big:jobs")
            .arg(">")
            .ignore();
    }
    // Some delivered again, some acknowledged, in between.
    for i in (1..=n).step_by(7) {
        pipe.cmd("XCLAIM")
            .arg("big:jobs")
            .arg("g")
            .arg("worker-0")
            .arg(0)
            .arg(format!("{i}-0"))
            .arg("RETRYCOUNT")
            .arg(i % 5 + 2)
            .ignore();
    }
    for i in (3..=n).step_by(11) {
        pipe.cmd("XACK")
            .arg("big:jobs")
            .arg("g")
            .arg(format!("{i}-0"))
            .ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    let pel = pending_count(&mut c, "big:jobs", "g");
    assert!(pel > 5_000, "{pel}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.tar.zst");
    export(&src, &file, &[]).ok();
    // Pending entries come in pages (1000 at most), each a record of its own.
    let data = String::from_utf8(stock_tar(&file, "-xO --wildcards 'data/*'")).unwrap();
    let runs: Vec<usize> = data
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|r| {
            r["value"]["stream"]["pending"].as_array().map(|runs| {
                runs.iter()
                    .map(|run| run["entries"].as_array().unwrap().len())
                    .sum()
            })
        })
        .collect();
    assert!(runs.len() >= 6, "{runs:?}");
    assert!(runs.iter().all(|&n| n <= 1000), "{runs:?}");
    assert_eq!(runs.iter().sum::<usize>() as i64, pel);

    let report = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(report["pending_not_restored"], 0, "{report}");
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);

    // compare reads the PEL back in the same pages.
    let url = dst.url();
    let same = run(&[
        "compare",
        file.to_str().unwrap(),
        "--target",
        &url,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(same["differences"], 0, "{same}");
}

#[test]
fn compare_sees_consumers_and_pending_entries() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_mixed(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.tar.zst");
    export(&src, &file, &[]).ok();
    restore(&dst, &file, &[]).ok();
    let url = dst.url();
    let compare = || {
        run(&[
            "compare",
            file.to_str().unwrap(),
            "--target",
            &url,
            "--json",
        ])
    };
    let same = compare().ok().json();
    assert_eq!(
        same["differences"], 0,
        "the entry whose message is gone is not a difference: {same}"
    );

    let mut d = dst.conn();
    let _: i64 = redis::cmd("XACK")
        .arg("stream:jobs")
        .arg("workers")
        .arg("4-0")
        .query(&mut d)
        .unwrap();
    let out = compare();
    assert_eq!(out.code, 14, "{}", out.stderr);
    let diff = out.json();
    assert_eq!(diff["differences"], 1, "{diff}");
    assert_eq!(diff["by_kind"]["value-differs"], 1, "{diff}");
    let detail = diff["examples"][0]["detail"].as_str().unwrap();
    assert_eq!(diff["examples"][0]["key"], "stream:jobs");
    assert!(
        detail.starts_with("1 difference in consumer groups (e.g. pending entry 4-0 of group \"workers\" missing in the target)"),
        "{detail}"
    );

    // A consumer gone, a delivery counted again: each shows.
    let _: Value = redis::pipe()
        .cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg("stream:jobs")
        .arg("workers")
        .arg("idle-worker")
        .cmd("XCLAIM")
        .arg("stream:jobs")
        .arg("workers")
        .arg("w1")
        .arg(0)
        .arg("5-0")
        .arg("JUSTID")
        .query(&mut d)
        .unwrap();
    let diff = compare().json();
    let detail = diff["examples"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("consumer \"idle-worker\""), "{detail}");
    assert!(detail.contains("pending entry 5-0"), "{detail}");
}

#[test]
fn merge_adds_groups_the_target_lacks_and_leaves_its_own_alone() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_job_queue(&mut src.conn(), "jobs");
    // The target has the stream with only the workers group, in its own state.
    let mut d = dst.conn();
    let _: Value = redis::pipe()
        .cmd("XADD")
        .arg("jobs")
        .arg("1-0")
        .arg("job")
        .arg(1)
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs")
        .arg("workers")
        .arg("0")
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("mine")
        .arg("STREAMS")
        .arg("jobs")
        .arg(">")
        .query(&mut d)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.tar.zst");
    export(&src, &file, &[]).ok();
    let before = dst.snapshot();
    let backups = dir.path().join("backups");
    let report = restore(
        &dst,
        &file,
        &[
            "--mode",
            "merge",
            "--backup-dir",
            backups.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(report["errors"], 0, "{report}");
    // Every audit entry's message is in the merged stream (1-0 the target's
    // own, the others added by the merge): all of them come over.
    let (
        KeyState::Stream {
            groups: got_groups,
            consumers: got_consumers,
            pending: got_pending,
            ..
        },
        KeyState::Stream {
            groups: want_groups,
            consumers: want_consumers,
            pending: want_pending,
            ..
        },
    ) = (stream_state(&dst, "jobs"), stream_state(&src, "jobs"))
    else {
        panic!("not streams")
    };
    let by = |groups: &[(Vec<u8>, String, Option<i64>)], name: &[u8]| {
        groups.iter().find(|g| g.0 == name).cloned()
    };
    // audit came over whole.
    assert_eq!(by(&got_groups, b"audit"), by(&want_groups, b"audit"));
    let of = |c: &Consumers, name: &[u8]| c.iter().find(|g| g.0 == name).cloned();
    assert_eq!(of(&got_consumers, b"audit"), of(&want_consumers, b"audit"));
    let pel = |p: &Pending, name: &[u8]| {
        p.iter()
            .filter(|e| e.0 == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(pel(&got_pending, b"audit"), pel(&want_pending, b"audit"));
    // workers is the target's own: one consumer, one pending entry, no marker.
    assert_eq!(
        of(&got_consumers, b"workers").unwrap().1,
        vec![b"mine".to_vec()]
    );
    let mine = pel(&got_pending, b"workers");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].2, b"mine");
    assert_eq!(report["pending_not_restored"], 0, "{report}");

    // And the merge is undone exactly.
    let backup = report["backup"].as_str().unwrap().to_string();
    run(&["rollback", &backup, "--yes"]).ok();
    assert_eq!(dst.snapshot(), before);
}

#[test]
fn in_a_cluster_pending_entries_are_read_on_their_own_node() {
    // Pre-restore backups and compare read a cluster through its router:
    // the clock that dates pending entries must be the key's own node's.
    let cluster = RedisCluster::start();
    let src = RedisServer::start();
    load_job_queue(&mut src.conn(), "stream:jobs");
    let mut node = cluster.nodes[cluster.owner(b"stream:jobs")].conn();
    load_job_queue(&mut node, "stream:jobs");
    let _: Value = redis::pipe()
        .cmd("XACK")
        .arg("stream:jobs")
        .arg("audit")
        .arg("1-0")
        .cmd("XCLAIM")
        .arg("stream:jobs")
        .arg("workers")
        .arg("other")
        .arg(0)
        .arg("4-0")
        .arg("IDLE")
        .arg(5_000)
        .query(&mut node)
        .unwrap();
    let before = cluster.snapshot();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.tar.zst");
    export(&src, &file, &[]).ok();
    let backups = dir.path().join("backups");
    let report = restore_url(
        &cluster.url(),
        &file,
        &[
            "--mode",
            "overwrite",
            "--backup-dir",
            backups.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(report["pending_not_restored"], 1, "{report}");
    assert_eq!(
        cluster.snapshot()[b"stream:jobs".as_slice()],
        src.snapshot()[b"stream:jobs".as_slice()]
    );
    let url = cluster.url();
    let same = run(&[
        "compare",
        file.to_str().unwrap(),
        "--target",
        &url,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(same["differences"], 0, "{same}");

    let backup = report["backup"].as_str().unwrap().to_string();
    run(&["rollback", &backup, "--yes"]).ok();
    assert_eq!(cluster.snapshot(), before, "rollback in a cluster is exact");
}

#[test]
fn entries_after_pending_entries_are_refused() {
    use redis_archive::archive::manifest::{ArchiveKind, Header, Source};
    use redis_archive::archive::{ArchiveWriter, Destination, WriterOptions};
    use redis_archive::connection::{Address, ServerInfo};
    use redis_archive::keyspace::Selection;
    use redis_archive::record::{
        GroupPending, PendingEntry, Record, StreamChunk, StreamEntry, StreamId, StreamMeta,
        Value as RecordValue,
    };

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.tar.zst");
    let header = Header::new(
        ArchiveKind::Export,
        chrono::Utc::now(),
        Source {
            address: Address {
                host: "127.0.0.1".into(),
                port: 6379,
                db: 0,
                tls: false,
            },
            server: ServerInfo {
                flavor: "redis".into(),
                version: "7.0.15".into(),
            },
            cluster: None,
        },
        Selection::default(),
    );
    let mut writer = ArchiveWriter::create(
        Destination::File(file.clone()),
        header,
        WriterOptions::default(),
        None,
    )
    .unwrap();
    let id = |ms| StreamId { ms, seq: 0 };
    let entry = |ms| StreamEntry {
        id: id(ms),
        fields: vec![("f".into(), "v".into())],
    };
    let chunks = [
        StreamChunk {
            meta: Some(StreamMeta {
                last_id: id(2),
                entries_added: None,
                max_deleted_id: None,
                groups: Vec::new(),
            }),
            entries: vec![entry(1)],
            pending: vec![GroupPending {
                group: "g".into(),
                entries: vec![PendingEntry {
                    id: id(1),
                    consumer: "c".into(),
                    delivery_count: 1,
                    delivered_at_ms: 5,
                }],
            }],
        },
        StreamChunk {
            meta: None,
            entries: vec![entry(2)],
            pending: Vec::new(),
        },
    ];
    for (part, chunk) in chunks.into_iter().enumerate() {
        writer
            .write_record(&Record {
                key: "s".into(),
                expiry: None,
                part: part as u32,
                more: part == 0,
                field_expiry: Vec::new(),
                void: false,
                value: RecordValue::Stream(chunk),
            })
            .unwrap();
    }
    writer.finish(chrono::Utc::now(), 0).unwrap();
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.code, 7, "{}{}", out.stderr, out.stdout_text());
    assert!(
        format!("{}{}", out.stderr, out.stdout_text())
            .contains("entries after its pending entries"),
        "{}{}",
        out.stderr,
        out.stdout_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_pages_read_every_pending_entry_exactly_once() {
    use redis_archive::archive::Destination;
    use redis_archive::connection::{Endpoint, Side, Timeouts};
    use redis_archive::export::{ExportOptions, export};
    use redis_archive::fetch::ChunkSizes;
    use redis_archive::keyspace::Selection;
    use redis_archive::progress::Silent;

    let src = RedisServer::start();
    let dst = RedisServer::start();
    let mut c = src.conn();
    // A stream small enough for one first read, and one that is not; each
    // with two groups whose PELs span many pages.
    for (key, n) in [("small", 40), ("large", 700)] {
        let mut pipe = redis::pipe();
        for i in 1..=n {
            pipe.cmd("XADD")
                .arg(key)
                .arg(format!("{i}-1"))
                .arg("i")
                .arg(i)
                .ignore();
        }
        for group in ["a", "b"] {
            pipe.cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg(group)
                .arg("0")
                .ignore();
            for consumer in ["x", "y", "z"] {
                pipe.cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(n / 4)
                    .arg("STREAMS")
                    .arg(key)
                    .arg(">")
                    .ignore();
            }
        }
        pipe.query::<()>(&mut c).unwrap();
    }
    load_job_queue(&mut c, "jobs");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.tar.zst");
    let source =
        Endpoint::resolve(&src.url(), None, None, Side::Source, Timeouts::default()).unwrap();
    let mut options = ExportOptions::new(
        source,
        Destination::File(file.clone()),
        Selection::default(),
    );
    options.chunks = ChunkSizes {
        first_string_bytes: 64,
        string_bytes: 64,
        first_elements: 7,
        elements: 16,
    };
    let report = export(options, &Silent).await.unwrap();
    assert_eq!(report.errors, 0);
    assert!(report.records > 100, "{} records", report.records);

    let restored = tokio::task::spawn_blocking(move || {
        let report = restore(&dst, &file, &["--json"]).ok().json();
        (dst, report)
    })
    .await
    .unwrap();
    let (dst, report) = restored;
    assert_eq!(report["pending_not_restored"], 1, "{report}");
    assert_same_db(&mut src.conn(), &mut dst.conn(), 0);
}
