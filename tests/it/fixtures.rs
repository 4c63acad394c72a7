//! The test vectors in fixtures/: one case each, as fixtures/README.md says.

use std::path::PathBuf;

use crate::support::*;
use redis::Commands;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// `inspect` fails with `code` and `needle`, and `restore` writes nothing.
fn rejected(name: &str, code: i32, needle: &str) {
    let path = fixture(name);
    run(&["inspect", path.to_str().unwrap()]).fails(code, needle);
    let dst = RedisServer::start();
    restore(&dst, &path, &[]).fails(code, needle);
    assert_eq!(dst.dbsize(0), 0, "{name}: nothing may be written");
}

#[test]
fn valid_archive_inspects_and_restores_exactly() {
    let path = fixture("valid.tar.zst");
    let manifest = run(&["inspect", "--json", path.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(manifest["counts"]["keys"], 9);
    assert_eq!(manifest["counts"]["records"], 10);
    assert_eq!(manifest["source"]["host"], "fixture-host");

    let dst = RedisServer::start();
    let report = restore(&dst, &path, &["--json"]).ok().json();
    assert_eq!(report["written"], 8, "{report}");
    assert_eq!(report["plan"]["by_type"]["string"]["expired"], 1);
    let mut c = dst.conn();
    assert_eq!(c.hget::<_, _, String>("user:1", "plan").unwrap(), "pro");
    assert_eq!(
        c.get::<_, Vec<u8>>("bin:key").unwrap(),
        vec![0xff, 0x00, 0xfe]
    );
    let mut set: Vec<Vec<u8>> = c.smembers(&[0xff, 0x00, 0xfe][..]).unwrap();
    set.sort();
    assert_eq!(
        set,
        vec![b"".to_vec(), b"a".to_vec(), vec![0xff, 0x00, 0xfe]]
    );
    let rank: Vec<(String, String)> = redis::cmd("ZRANGE")
        .arg("rank")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        rank,
        [
            ("bottom".into(), "-inf".into()),
            ("mid".into(), "0.10000000000000001".into()),
            ("top".into(), "inf".into())
        ]
    );
    assert_eq!(c.get::<_, String>("empty").unwrap(), "");
    assert_eq!(expire_time(&mut c, b"session:abc"), Some(4_102_444_800_000));
    assert!(!c.exists::<_, bool>("session:old").unwrap());
    assert_eq!(
        c.lrange::<_, Vec<String>>("list:split", 0, -1).unwrap(),
        ["a", "b", "c"]
    );
    let info: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg("events")
        .query(&mut c)
        .unwrap();
    let text = format!("{info:?}");
    assert!(
        text.contains("\"5-0\"") && text.contains("\"1-2\""),
        "last id and max deleted id: {text}"
    );
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("events")
        .query(&mut c)
        .unwrap();
    assert!(format!("{groups:?}").contains("readers"));
}

#[test]
fn archive_from_a_cluster_says_so_and_restores_into_a_single_server() {
    let path = fixture("from-cluster.tar.zst");
    let manifest = run(&["inspect", "--json", path.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(manifest["source"]["cluster"]["nodes"], 3);
    assert_eq!(manifest["source"]["cluster"]["slots"], 16384);
    let text = run(&["inspect", path.to_str().unwrap()]).ok().stdout_text();
    assert!(
        text.contains("cluster:         3 primaries serving 16384 slots"),
        "{text}"
    );
    // The records are those of valid.tar.zst, and restore the same way.
    let from_cluster = RedisServer::start();
    let report = restore(&from_cluster, &path, &["--json"]).ok().json();
    assert_eq!(report["written"], 8, "{report}");
    let from_single = RedisServer::start();
    restore(&from_single, &fixture("valid.tar.zst"), &[]).ok();
    assert_eq!(from_cluster.snapshot(), from_single.snapshot());
}

#[test]
fn corrupt_archive_is_refused() {
    rejected("corrupt.tar.zst", 7, "archive is corrupt");
}

#[test]
fn truncated_archive_is_refused() {
    rejected("truncated.tar.zst", 7, "archive is truncated");
}

#[test]
fn future_schema_names_both_versions() {
    rejected(
        "future-schema.tar.zst",
        8,
        "schema_version 3, this program reads up to 2; upgrade `archive`",
    );
}

#[test]
fn tampered_record_fails_its_checksum() {
    rejected("tampered.tar.zst", 7, "sha256 mismatch");
}

#[test]
fn wrong_manifest_counts_are_refused() {
    rejected("bad-counts.tar.zst", 7, "counts differ from the manifest");
}

#[test]
fn text_file_is_not_an_archive() {
    rejected("not-an-archive.txt", 7, "not an archive");
}

#[test]
fn encrypted_vector_opens_with_the_test_key() {
    let key = fixture("age-key.txt");
    let path = fixture("encrypted.tar.zst.age");
    let m = run(&[
        "inspect",
        "--json",
        "-i",
        key.to_str().unwrap(),
        path.to_str().unwrap(),
    ])
    .ok()
    .json();
    assert_eq!(m["encrypted"], true);
    assert_eq!(m["counts"]["keys"], 9);
    run(&["inspect", path.to_str().unwrap()])
        .fails(12, "archive is encrypted: pass --identity or --passphrase");
    let dst = RedisServer::start();
    let report = restore(&dst, &path, &["-i", key.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(report["written"], 8);
}

#[test]
fn passphrase_vector_needs_the_right_passphrase() {
    let path = fixture("encrypted-passphrase.tar.zst.age");
    let with = |p: &str| {
        output(
            command(&["inspect", "--json", path.to_str().unwrap()])
                .env("ARCHIVE_PASSPHRASE", p)
                .output()
                .unwrap(),
        )
    };
    assert_eq!(with("fixture passphrase").ok().json()["counts"]["keys"], 9);
    with("another passphrase").fails(12, "wrong passphrase");
}

#[test]
fn truncated_encrypted_vector_is_refused() {
    let key = fixture("age-key.txt");
    let path = fixture("encrypted-truncated.tar.zst.age");
    let cut = "the encrypted data does not authenticate: the file was cut short or altered";
    run(&[
        "inspect",
        "-i",
        key.to_str().unwrap(),
        path.to_str().unwrap(),
    ])
    .fails(7, cut);
    let dst = RedisServer::start();
    restore(&dst, &path, &["-i", key.to_str().unwrap()]).fails(7, cut);
    assert_eq!(dst.dbsize(0), 0);
}

#[test]
fn issue_14_schema2_vector_keeps_field_expiry_and_never_restores_voided_parts() {
    let path = fixture("schema2.tar.zst");
    let manifest = run(&["inspect", "--json", path.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(manifest["schema_version"], 2);
    assert_eq!(manifest["counts"]["keys"], 4, "{manifest}");
    assert_eq!(manifest["counts"]["records"], 8);
    assert_eq!(manifest["counts"]["voided"], 2);
    assert_eq!(manifest["counts"]["field_expiries"], 2);
    let text = run(&["inspect", path.to_str().unwrap()]).ok().stdout_text();
    assert!(text.contains("voided:          2"), "{text}");

    // A server without field expiry: the plan refuses (code_16 in
    // exit_codes.rs); asked to, it restores the rest and counts what it drops.
    let dst = RedisServer::start();
    let plan = restore(&dst, &path, &["--dry-run", "--drop-unsupported", "--json"])
        .ok()
        .json();
    assert_eq!(plan["plan"]["by_type"]["list"]["create"], 1, "{plan}");
    assert_eq!(plan["plan"]["by_type"].get("set"), None, "{plan}");
    assert_eq!(plan["dropped_field_expiries"], 1, "{plan}");
    assert_eq!(dst.dbsize(0), 0);
    let report = restore(&dst, &path, &["--drop-unsupported", "--json"])
        .ok()
        .json();
    assert_eq!(report["written"], 4, "{report}");
    assert_eq!(report["dropped_field_expiries"], 1, "{report}");
    let mut c = dst.conn();
    let mut fields: Vec<(String, String)> = c.hgetall("session:fields").unwrap();
    fields.sort();
    // The field whose expiry passed in 2001 is not brought back.
    assert_eq!(
        fields,
        [
            ("name".into(), "Ann".into()),
            ("token".into(), "t-1".into())
        ]
    );
    assert_eq!(
        c.lrange::<_, Vec<String>>("list:changing", 0, -1).unwrap(),
        ["a", "b", "c"]
    );
    assert!(!c.exists::<_, bool>("set:gone").unwrap());
    // The stream's group comes back with its consumers and pending entries.
    let pending: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
        .arg("jobs")
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut c)
        .unwrap();
    let pending: Vec<(String, String, i64)> = pending
        .into_iter()
        .map(|(id, who, _, n)| (id, who, n))
        .collect();
    assert_eq!(
        pending,
        [
            ("1-0".into(), "w1".into(), 3),
            ("2-0".into(), "w2".into(), 1)
        ]
    );
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("jobs")
        .arg("workers")
        .query(&mut c)
        .unwrap();
    assert_eq!(consumers.len(), 3);
    assert_eq!(dst.dbsize(0), 4);
    // compare knows the voided parts are not part of the archive, and that
    // this target cannot have the field's expiry.
    let out = run(&["compare", path.to_str().unwrap(), "--target", &dst.url()]);
    assert_eq!(out.code, 14, "{}", out.stdout_text());
    assert!(
        out.stdout_text()
            .contains("expire on their own in the archive; the target has no field expiry"),
        "{}",
        out.stdout_text()
    );
}
