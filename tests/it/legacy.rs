//! Legacy records (data schema_version 1 of the relay profile) where the
//! upgrade steps meet the other parts of issue 17: shared keys, strings
//! too big for one record, `copy`'s validation, and `--redact`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::profiles::{fixture, hash};
use crate::support::{RedisServer, export, relay_schema_1_profile, restore, run};

/// A server with relay-legacy.redis loaded, and `extra` commands after it.
fn legacy_server(extra: &[&[&str]]) -> RedisServer {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-legacy.redis"));
    let mut conn = server.conn();
    for args in extra {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<redis::Value>(&mut conn).unwrap();
    }
    server
}

/// User 42 exported from `server` with the schema-1 profile.
fn export_v1(server: &RedisServer, dir: &Path) -> PathBuf {
    let v1 = relay_schema_1_profile(dir);
    let file = dir.join("old.tar.zst");
    export(server, &file, &["42", "--profile", v1.to_str().unwrap()]).ok();
    file
}

/// The relay profile's groups at data schema_version 2, with one upgrade
/// from 1 made of `steps` after the `role` default that the required field
/// needs, written into `dir`.
fn v2_with(dir: &Path, steps: &str) -> PathBuf {
    let v1 = std::fs::read_to_string(relay_schema_1_profile(dir)).unwrap();
    let text = format!(
        "{}\n[[upgrade]]\nfrom = 1\nto = 2\n{ROLE}{steps}",
        v1.replace("schema_version = 1", "schema_version = 2")
    );
    let path = dir.join("relay-v2.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const ROLE: &str =
    "[[upgrade.step]]\nop = \"default\"\ngroup = \"user\"\nfield = \"role\"\nvalue = \"user\"\n";

/// A `rename` of a member of the settings JSON strings.
const RENAME_THEME: &str = "[[upgrade.step]]\nop = \"rename\"\ngroup = \"settings\"\nfield = \"theme\"\nto = \"colorScheme\"\n";

/// The upgrade counts `validate --profile` gives for `file`.
fn validated(file: &Path, profile: &str) -> serde_json::Value {
    let checked = run(&[
        "validate",
        file.to_str().unwrap(),
        "--profile",
        profile,
        "--json",
    ])
    .ok()
    .json();
    checked["profile"]["upgrade"].clone()
}

/// User 42 with `settings` as its settings string (over 64 KiB), exported
/// at schema 1; the schema-2 profile renames a settings member.
fn split_settings(settings: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let source = legacy_server(&[&["SET", "user:42:settings", settings]]);
    let dir = tempfile::tempdir().unwrap();
    let file = export_v1(&source, dir.path());
    let v2 = v2_with(dir.path(), RENAME_THEME);
    (dir, file, v2)
}

fn step_count(upgrade: &serde_json::Value, step: &str) -> u64 {
    upgrade["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with(step))
        .unwrap_or_else(|| panic!("no step {step} in {upgrade}"))["records"]
        .as_u64()
        .unwrap()
}

/// A step without `group` applies to every group of records, but never to
/// the keys that hold ids: the user's index, the shared index and the
/// shared hash (which holds other users' fields too).
#[test]
fn a_step_without_group_leaves_indexes_and_shared_keys_alone() {
    let source = legacy_server(&[
        &["HSET", "apikey_hash_map", "9f2c1a", "k-ada-1"],
        &["HSET", "apikey_hash_map", "77aa01", "k-eve-1"],
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = export_v1(&source, dir.path());
    let v2 = v2_with(
        dir.path(),
        "[[upgrade.step]]\nop = \"default\"\nfield = \"updatedAt\"\nvalue = \"2026-01-01\"\n",
    );
    let v2 = v2.to_str().unwrap();

    // user:42, user:42:settings, apikey:k-ada-1, usage:42:20261121.
    let upgrade = validated(&file, v2);
    assert_eq!(upgrade["records"], 4, "{upgrade}");
    assert_eq!(step_count(&upgrade, "default updatedAt"), 4, "{upgrade}");

    let target = RedisServer::start();
    let report = restore(&target, &file, &["--profile", v2, "--json"])
        .ok()
        .json();
    let upgrade = &report["profile"]["upgrade"];
    assert_eq!(upgrade["records"], 4, "{report}");
    assert_eq!(step_count(upgrade, "default updatedAt"), 4, "{report}");
    assert_eq!(hash(&target, "user:42")["updatedAt"], "2026-01-01");
    let map = hash(&target, "apikey_hash_map");
    assert_eq!(
        map.into_iter().collect::<Vec<_>>(),
        vec![("9f2c1a".to_string(), "k-ada-1".to_string())],
        "only user 42's field, and no updatedAt in the shared hash"
    );
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("users:by_created")
        .arg(0)
        .arg(-1)
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(members, vec!["42".to_string()]);
}

/// A JSON string over 64 KiB travels in several records; none of them is
/// JSON alone. Restore and validate must not call it broken (exit 7): it
/// is written as it is, and counted once as too big to upgrade there.
#[test]
fn a_json_string_split_over_records_is_not_broken() {
    let blob = "x".repeat(200 << 10);
    let settings = format!(r#"{{"id":"42","theme":"dark","blob":"{blob}"}}"#);
    let (_dir, file, v2) = split_settings(&settings);
    let v2 = v2.to_str().unwrap();
    let inspected = run(&["inspect", file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let strings = &inspected["counts"]["by_type"]["string"];
    assert!(
        strings["records"].as_u64() > strings["keys"].as_u64(),
        "the settings string is split: {strings}"
    );
    let upgrade = validated(&file, v2);
    assert_eq!(upgrade["broken"], 0, "{upgrade}");
    assert_eq!(
        upgrade["split"], 1,
        "one key, however many parts: {upgrade}"
    );

    let target = RedisServer::start();
    let plain = restore(&target, &file, &["--profile", v2, "--dry-run"])
        .ok()
        .stdout_text();
    assert!(
        plain.contains("1 string(s) over 64 KiB left as they are"),
        "{plain}"
    );
    let report = restore(&target, &file, &["--profile", v2, "--json"])
        .ok()
        .json();
    assert_eq!(report["profile"]["upgrade"]["broken"], 0, "{report}");
    assert_eq!(report["profile"]["upgrade"]["split"], 1, "{report}");
    let stored: String = redis::cmd("GET")
        .arg("user:42:settings")
        .query(&mut target.conn())
        .unwrap();
    assert!(stored == settings, "written as it was");
}

/// A split string that is not JSON at all is left as it is too: no part
/// of it is reported broken, where before every part was.
#[test]
fn a_split_string_that_is_not_json_is_left_as_it_is() {
    let junk = "not json ".repeat(30 << 10);
    let (_dir, file, v2) = split_settings(&junk);
    // Its parts are left alone: nothing to call broken part by part.
    let upgrade = validated(&file, v2.to_str().unwrap());
    assert_eq!(upgrade["broken"], 0, "{upgrade}");
    assert_eq!(upgrade["split"], 1, "{upgrade}");
}

/// `copy USER --profile` validates as restore does; `--no-validate` copies
/// anyway, and the refusal names the copy's source, not its spool.
#[test]
fn copy_validates_names_its_source_and_can_be_told_not_to() {
    let source = RedisServer::start();
    source.load_commands(&fixture("relay-data.redis"));
    redis::cmd("HDEL")
        .arg("apikey:k-ada-1")
        .arg("name")
        .query::<i64>(&mut source.conn())
        .unwrap();
    let relay = fixture("relay.toml").display().to_string();
    let target = RedisServer::start();
    let ends = [
        format!("--source={}", source.url()),
        format!("--target={}", target.url()),
    ];
    let copy = |user: &str, extra: &[&str]| {
        let mut args = vec!["copy", user, "--profile", &relay, "--yes"];
        args.extend(ends.iter().map(String::as_str));
        args.extend_from_slice(extra);
        run(&args)
    };
    let refused = copy("42", &[]).fails(7, "lacks required field name");
    let port = source.url().rsplit(':').next().unwrap().to_string();
    assert!(
        refused.stderr.contains("user 42 on 127.0.0.1:")
            && refused.stderr.contains(&format!(":{port}/0")),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("spool"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--no-validate"),
        "{}",
        refused.stderr
    );
    assert_eq!(target.dbsize(0), 0, "refused before the first write");

    copy("42", &["--no-validate"]).ok();
    assert!(!hash(&target, "apikey:k-ada-1").contains_key("name"));
    copy("12345", &[]).fails(18, "user 12345 has no keys");
}

/// A legacy record keeps a sensitive value under its old name: `rename`
/// of `stripe_id` to `stripeCustomerId`, then `nest` of that into
/// `subscription`. With `subscription` sensitive, the old names are
/// redacted too and named in the header.
#[test]
fn redact_covers_the_legacy_names_of_sensitive_fields() {
    let source = legacy_server(&[]);
    let dir = tempfile::tempdir().unwrap();
    let relay = std::fs::read_to_string(fixture("relay.toml")).unwrap();
    let marked = relay.replacen(
        "sensitive = [\"email\"]",
        "sensitive = [\"email\", \"subscription\"]",
        1,
    );
    assert_ne!(marked, relay);
    let profile = dir.path().join("relay.toml");
    std::fs::write(&profile, marked).unwrap();
    let file = dir.path().join("redacted.tar.zst");
    export(
        &source,
        &file,
        &["42", "--profile", profile.to_str().unwrap(), "--redact"],
    )
    .ok();

    let out = Command::new("zstd")
        .arg("-dc")
        .arg(&file)
        .output()
        .expect("zstd");
    assert!(out.status.success());
    let has = |needle: &str| {
        out.stdout
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    for secret in ["cus_42", "ada@example.com"] {
        assert!(!has(secret), "{secret} is in the archive");
    }
    assert!(has("[REDACTED]"));
    let inspected = run(&["inspect", file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(
        inspected["redaction"]["fields"]["user"],
        serde_json::json!([
            "email",
            "subscription",
            "subscriptionStatus",
            "stripeCustomerId",
            "subscriptionPlan",
            "stripe_id"
        ])
    );
}
