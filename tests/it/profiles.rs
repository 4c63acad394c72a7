//! Per-user archives through profiles (issue #5), with the two example
//! profiles and their data loaders from fixtures/profiles.
//! One file, though long: the runbooks share the two profiles' data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::{KeyState, RedisServer, export, key_state, restore, run};

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/profiles")
        .join(name)
}

fn profile(name: &str) -> String {
    fixture(name).display().to_string()
}

fn keys_of(server: &RedisServer) -> BTreeSet<String> {
    server
        .snapshot()
        .into_keys()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

pub(crate) fn hash(server: &RedisServer, key: &str) -> BTreeMap<String, String> {
    match key_state(&mut server.conn(), key.as_bytes()) {
        Some(KeyState::Hash(pairs)) => pairs
            .into_iter()
            .map(|(f, v)| (String::from_utf8(f).unwrap(), String::from_utf8(v).unwrap()))
            .collect(),
        other => panic!("{key}: expected a hash, found {other:?}"),
    }
}

fn zscore(server: &RedisServer, key: &str, member: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query(&mut server.conn())
        .unwrap()
}

/// A server loaded with `data`, and user 42 exported from it with `profile`
/// (whose path is returned too).
fn user_42(data: &str, profile_file: &str) -> ((RedisServer, tempfile::TempDir, PathBuf), String) {
    let server = RedisServer::start();
    server.load_commands(&fixture(data));
    let dir = tempfile::tempdir().unwrap();
    let path = profile(profile_file);
    let file = export_user(
        &server,
        dir.path(),
        "u42.tar.zst",
        &["42", "--profile", &path],
    );
    ((server, dir, file), path)
}

/// Export from `server` into `dir/name` with `args`.
fn export_user(server: &RedisServer, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let file = dir.join(name);
    export(server, &file, args).ok();
    file
}

const RELAY_42: &[&str] = &[
    "user:42",
    "user:42:settings",
    "user:42:api_keys",
    "apikey:k-ada-1",
    "apikey:k-ada-2",
    "claude:account:ca-ada",
    "gemini_account:ga-ada",
    "usage:42:20261120",
    "usage:42:20261121",
    "session:tok-ada-1",
    "session:tok-ada-2",
    "users:by_created",
];

#[test]
fn export_42_takes_every_key_of_user_42_and_none_of_4_420_or_7() {
    let ((source, dir, file), relay) = user_42("relay-data.redis", "relay.toml");

    let manifest = run(&["inspect", file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(manifest["profile"]["user"], "42");
    assert_eq!(manifest["profile"]["name"], "api-relay");
    assert_eq!(manifest["profile"]["schema_version"], 2);
    assert_eq!(manifest["groups"]["apikeys"], 3, "{manifest}");
    assert_eq!(manifest["groups"]["sessions"], 2);
    assert_eq!(manifest["groups"]["users_index"], 1);
    assert_eq!(manifest["counts"]["keys"], RELAY_42.len() as u64);
    let text = run(&["inspect", file.to_str().unwrap()]).ok().stdout_text();
    assert!(text.contains("user:            42"), "{text}");

    // Into an empty server: exactly those keys, each as in the source
    // (the shared index holds just user 42's member).
    let target = RedisServer::start();
    restore(&target, &file, &[]).ok();
    assert_eq!(keys_of(&target), set(RELAY_42));
    let (mut s, mut t) = (source.conn(), target.conn());
    for key in RELAY_42.iter().filter(|k| **k != "users:by_created") {
        assert_eq!(
            key_state(&mut s, key.as_bytes()),
            key_state(&mut t, key.as_bytes()),
            "{key}"
        );
        let (a, b) = (
            crate::support::expire_time(&mut s, key.as_bytes()),
            crate::support::expire_time(&mut t, key.as_bytes()),
        );
        assert!(
            a.is_some() == b.is_some() && (a.unwrap_or(0) - b.unwrap_or(0)).abs() <= 1000,
            "{key}: {a:?} {b:?}"
        );
    }
    let index: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("users:by_created")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut t)
        .unwrap();
    assert_eq!(index, vec![("42".to_string(), 1700000042000.0)]);

    // compare sees the user's records as identical, shared index included.
    let url = target.url();
    run(&["compare", file.to_str().unwrap(), "--target", &url]).ok();
    // Cloned as user 99 into the same database: references across groups
    // found by owner field follow the new ids, JSON owners too.
    let before = target.snapshot();
    restore(&target, &file, &["--profile", &relay, "--as-user", "99"]).ok();
    let key = hash(&target, "apikey:99-k-ada-1");
    assert_eq!(
        (key["id"].as_str(), key["userId"].as_str()),
        ("99-k-ada-1", "99")
    );
    assert_eq!(key["claudeAccountId"], "99-ca-ada");
    assert_eq!(key["geminiAccountId"], "99-ga-ada");
    assert_eq!(hash(&target, "claude:account:99-ca-ada")["ownerId"], "99");
    let session: serde_json::Value = serde_json::from_str(
        &redis::cmd("GET")
            .arg("session:99-tok-ada-2")
            .query::<String>(&mut target.conn())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(session["userId"], 99, "a number stays a number");
    assert!(crate::support::expire_time(&mut target.conn(), b"session:99-tok-ada-2").is_some());
    assert_eq!(
        zscore(&target, "users:by_created", "99"),
        Some(1700000042000.0)
    );
    let after = target.snapshot();
    assert!(
        before
            .iter()
            .all(|(k, v)| after.get(k) == Some(v) || k == b"users:by_created")
    );
    assert_eq!(after.len(), before.len() + RELAY_42.len() - 1);

    // A user backup in the folder is listed with its user and groups.
    let folder = dir.path().join("backups");
    let url = source.url();
    run(&[
        "backup",
        "42",
        "--profile",
        &relay,
        "--source",
        &url,
        "--backup-dir",
        folder.to_str().unwrap(),
    ])
    .ok();
    let listed = run(&["list", folder.to_str().unwrap(), "--user", "42", "--json"])
        .ok()
        .json();
    assert_eq!(listed[0]["meta"]["user"], "42", "{listed}");
    assert_eq!(listed[0]["meta"]["groups"][1], "settings");

    // User 4 gets only user 4's keys, although "4" prefixes "42" and "420".
    let four = export_user(
        &source,
        dir.path(),
        "u4.tar.zst",
        &["4", "--profile", &relay],
    );
    let target4 = RedisServer::start();
    restore(&target4, &four, &[]).ok();
    assert_eq!(
        keys_of(&target4),
        set(&[
            "user:4",
            "user:4:settings",
            "user:4:api_keys",
            "apikey:k-dora-1",
            "claude:account:ca-dora",
            "usage:4:20261121",
            "session:tok-dora",
            "users:by_created",
        ])
    );
}

const REVIEW_42: &[&str] = &[
    "user:42",
    "settings:42",
    "settings:42:editor",
    "user:42:projects",
    "project:p1",
    "project:p2",
    "user:42:tasks",
    "audit:task:t1",
    "audit:task:t2",
    "audit:task:t3",
    "audit:issue:i1",
    "audit:issue:i2",
    "audit:issue:i3",
    "activity:42",
    "leaderboard:issues_found",
];

#[test]
fn restore_puts_a_user_back_with_its_index_entries_and_touches_no_one_else() {
    let ((server, _dir, file), _) = user_42("review-data.redis", "review.toml");

    let empty = RedisServer::start();
    restore(&empty, &file, &[]).ok();
    assert_eq!(keys_of(&empty), set(REVIEW_42));
    for key in REVIEW_42.iter().filter(|k| !k.starts_with("leaderboard")) {
        assert_eq!(
            key_state(&mut server.conn(), key.as_bytes()),
            key_state(&mut empty.conn(), key.as_bytes()),
            "{key}"
        );
    }

    // User 42 deleted from the live database, then restored from the archive:
    // the shared leaderboard keeps everyone else and gets 42 back.
    let before = server.snapshot();
    let mut c = server.conn();
    for key in REVIEW_42.iter().filter(|k| !k.starts_with("leaderboard")) {
        let _: () = redis::cmd("DEL").arg(*key).query(&mut c).unwrap();
    }
    let _: () = redis::cmd("ZREM")
        .arg("leaderboard:issues_found")
        .arg("user:42")
        .query(&mut c)
        .unwrap();
    let report = restore(&server, &file, &["--json"]).ok().json();
    assert_eq!(report["profile"]["user"], "42");
    assert_eq!(server.snapshot(), before, "the database is as it was");

    // Restored again over itself in overwrite mode: other users' leaderboard
    // entries are merged into, never replaced.
    let _: () = redis::cmd("ZADD")
        .arg("leaderboard:issues_found")
        .arg(5)
        .arg("user:999")
        .query(&mut c)
        .unwrap();
    restore(&server, &file, &["--mode", "overwrite"]).ok();
    assert_eq!(
        zscore(&server, "leaderboard:issues_found", "user:999"),
        Some(5.0)
    );
    assert_eq!(
        zscore(&server, "leaderboard:issues_found", "user:4"),
        Some(1.0)
    );
}

#[test]
fn as_user_clones_the_records_under_a_new_id_with_references_rewritten() {
    let ((server, _dir, file), review) = user_42("review-data.redis", "review.toml");
    let before = server.snapshot();

    let report = restore(
        &server,
        &file,
        &["--profile", &review, "--as-user", "99", "--json"],
    )
    .ok()
    .json();
    assert_eq!(report["profile"]["as_user"], "99");
    assert_eq!(report["written"], 14, "{report}");

    // Nothing of user 42 (or anyone else) changed; only the shared
    // leaderboard gained a member.
    let after = server.snapshot();
    for (key, state) in &before {
        if key.as_slice() != b"leaderboard:issues_found" {
            assert_eq!(
                after.get(key),
                Some(state),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
    assert_eq!(
        zscore(&server, "leaderboard:issues_found", "user:42"),
        Some(3.0)
    );
    assert_eq!(
        zscore(&server, "leaderboard:issues_found", "user:99"),
        Some(3.0)
    );

    let user = hash(&server, "user:99");
    assert_eq!(user["id"], "99");
    assert_eq!(user["email"], "ada@example.com");
    let projects: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg("user:99:projects")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(projects, set(&["99-p1", "99-p2"]));
    let project = hash(&server, "project:99-p1");
    assert_eq!(
        (project["id"].as_str(), project["ownerId"].as_str()),
        ("99-p1", "99")
    );
    assert_eq!(project["repoUrl"], "https://git.example.com/ada/api");
    let task = hash(&server, "audit:task:99-t1");
    assert_eq!(task["projectId"], "99-p1");
    assert_eq!(task["ownerId"], "99");
    let issue = hash(&server, "audit:issue:99-i1");
    assert_eq!(issue["taskId"], "99-t1");
    assert_eq!(issue["id"], "99-i1");
    let tasks: Vec<String> = redis::cmd("ZRANGE")
        .arg("user:99:tasks")
        .arg(0)
        .arg(-1)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(tasks, vec!["99-t1", "99-t2", "99-t3"]);
    let editor: String = redis::cmd("GET")
        .arg("settings:99:editor")
        .query(&mut server.conn())
        .unwrap();
    assert!(editor.contains("\"tabWidth\":4"), "{editor}");

    // The clone is undone exactly by its rollback.
    let rollback = report["rollback"].as_str().unwrap().to_string();
    let backup = rollback.strip_prefix("archive rollback ").unwrap();
    run(&["rollback", backup, "--target", &server.url(), "--yes"]).ok();
    assert_eq!(server.snapshot(), before);
}

#[test]
fn types_exports_only_those_groups() {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-data.redis"));
    let dir = tempfile::tempdir().unwrap();
    let relay = profile("relay.toml");

    // The seed use: every user's API keys, and the admin accounts.
    let seed = export_user(
        &server,
        dir.path(),
        "seed.tar.zst",
        &["--types", "apikeys,admins", "--profile", &relay],
    );
    let target = RedisServer::start();
    restore(&target, &seed, &[]).ok();
    assert_eq!(
        keys_of(&target),
        set(&[
            "apikey:k-ada-1",
            "apikey:k-ada-2",
            "apikey:k-dora-1",
            "apikey:k-bob-1",
            "apikey:k-eve-1",
            "user:42:api_keys",
            "user:4:api_keys",
            "user:420:api_keys",
            "user:7:api_keys",
            "admin:adm-1",
            "admin:adm-2",
            "admin_username:root",
            "admin_username:ops",
        ])
    );
    let listed = run(&["inspect", seed.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(
        listed["profile"]["groups"],
        serde_json::json!(["apikeys", "admins"])
    );
    assert!(listed["profile"]["user"].is_null());
    // References into groups left out (accounts) are not dangling.
    let checked = run(&[
        "validate",
        seed.to_str().unwrap(),
        "--profile",
        &relay,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(checked["profile"]["groups"]["apikeys"], 9, "{checked}");
    assert_eq!(checked["profile"]["groups"]["admins"], 4, "{checked}");

    // One user's API keys only.
    let keys = export_user(
        &server,
        dir.path(),
        "k42.tar.zst",
        &["42", "--types", "apikeys", "--profile", &relay],
    );
    let target = RedisServer::start();
    restore(&target, &keys, &[]).ok();
    assert_eq!(
        keys_of(&target),
        set(&["user:42:api_keys", "apikey:k-ada-1", "apikey:k-ada-2"])
    );

    // A group shared by all users is not one user's.
    export(
        &server,
        &dir.path().join("x"),
        &["42", "--types", "admins", "--profile", &relay],
    )
    .fails(2, "shared by all users");
    export(
        &server,
        &dir.path().join("x"),
        &["42", "--types", "nope", "--profile", &relay],
    )
    .fails(2, "apikeys");
    export(&server, &dir.path().join("x"), &["42"]).fails(2, "needs a profile");
}

/// User 13 of review-data.redis has a task referencing a project it does
/// not own and an issue without its severity.
const T13_DANGLING: &str =
    "audit:task:t13 references projects p9 (field projectId), which is not in the archive";
const I13_MISSING: &str = "issues record audit:issue:i13 lacks required field severity";

/// A server loaded with review-data.redis, a folder, the review profile,
/// and user 13's archive in that folder.
fn review_13() -> (RedisServer, tempfile::TempDir, String, PathBuf) {
    let server = RedisServer::start();
    server.load_commands(&fixture("review-data.redis"));
    let dir = tempfile::tempdir().unwrap();
    let review = profile("review.toml");
    let bad = export_user(
        &server,
        dir.path(),
        "u13.tar.zst",
        &["13", "--profile", &review],
    );
    (server, dir, review, bad)
}

#[test]
fn validate_reports_a_dangling_reference_and_a_missing_required_field() {
    let (server, dir, review, bad) = review_13();

    let good = export_user(
        &server,
        dir.path(),
        "u42.tar.zst",
        &["42", "--profile", &review],
    );
    let ok = run(&["validate", good.to_str().unwrap(), "--profile", &review])
        .ok()
        .stdout_text();
    assert!(ok.contains("0 record problem(s)"), "{ok}");

    let out = run(&["validate", bad.to_str().unwrap(), "--profile", &review]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    let text = out.stdout_text();
    assert!(text.contains(T13_DANGLING), "{text}");
    assert!(text.contains(I13_MISSING), "{text}");
    let json = run(&[
        "validate",
        bad.to_str().unwrap(),
        "--profile",
        &review,
        "--json",
    ])
    .json();
    assert_eq!(json["profile"]["findings"], 2, "{json}");
    assert!(
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] == "record" && p["entry"].is_string())
    );

    // Without --profile the archive itself is intact.
    run(&["validate", bad.to_str().unwrap()]).ok();
}

/// Issue 17: a restore through a profile checks the records as `validate
/// --profile` does, in the dry run too, and stops before the first write.
#[test]
fn restore_stops_at_records_that_break_the_profile_unless_told_not_to() {
    let (server, dir, review, bad) = review_13();
    let target = RedisServer::start();
    let names_both = |stderr: &str| {
        assert!(stderr.contains(T13_DANGLING), "{stderr}");
        assert!(stderr.contains(I13_MISSING), "{stderr}");
        assert!(
            stderr.contains("2 record(s) break the rules of profile \"code-review\""),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    };
    let dry = restore(&target, &bad, &["--profile", &review, "--dry-run"]);
    assert_eq!(dry.code, 7, "{}", dry.stderr);
    names_both(&dry.stderr);
    let backups = dir.path().join("backups");
    let real = restore(
        &target,
        &bad,
        &[
            "--profile",
            &review,
            "--backup-dir",
            backups.to_str().unwrap(),
        ],
    );
    assert_eq!(real.code, 7, "{}", real.stderr);
    names_both(&real.stderr);
    assert_eq!(target.dbsize(0), 0, "refused before the first write");
    let left = std::fs::read_dir(&backups).map_or(0, |d| d.count());
    assert_eq!(left, 0, "and before its pre-restore backup");

    let planned = restore(
        &target,
        &bad,
        &["--profile", &review, "--dry-run", "--no-validate", "--json"],
    )
    .ok()
    .json();
    assert_eq!(planned["plan"]["by_type"]["hash"]["create"], 4, "{planned}");
    assert_eq!(target.dbsize(0), 0);
    restore(&target, &bad, &["--profile", &review, "--no-validate"]).ok();
    assert!(keys_of(&target).contains("audit:issue:i13"));

    // A valid archive restores as before, and without a profile nothing
    // is checked.
    let good = export_user(
        &server,
        dir.path(),
        "u42.tar.zst",
        &["42", "--profile", &review],
    );
    restore(
        &RedisServer::start(),
        &good,
        &["--profile", &review, "--dry-run"],
    )
    .ok();
    restore(&RedisServer::start(), &bad, &["--dry-run"]).ok();
}

/// User 42 of relay-legacy.redis, exported with the relay profile as the
/// application shipped it at data schema_version 1.
struct Legacy {
    _server: RedisServer,
    dir: tempfile::TempDir,
    v1_path: PathBuf,
    file: PathBuf,
    /// relay.toml without its upgrades.
    groups: String,
}

impl Legacy {
    /// The relay profile at data schema_version 2 with one upgrade from 1
    /// made of `steps` (TOML `[[upgrade.step]]` tables).
    fn profile_with(&self, steps: &str) -> PathBuf {
        let path = self.dir.path().join("relay-v2.toml");
        let text = format!("{}\n[[upgrade]]\nfrom = 1\nto = 2\n{steps}", self.groups);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The JSON document held in the string `key`.
fn json_at(server: &RedisServer, key: &str) -> serde_json::Value {
    let text: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query(&mut server.conn())
        .unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn legacy_42() -> Legacy {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-legacy.redis"));
    let dir = tempfile::tempdir().unwrap();
    let current = std::fs::read_to_string(fixture("relay.toml")).unwrap();
    let cut = current.find("# Version 1 kept").unwrap();
    let groups = current[..cut].to_string();
    let v1_path = dir.path().join("relay-v1.toml");
    std::fs::write(
        &v1_path,
        groups.replace("schema_version = 2", "schema_version = 1"),
    )
    .unwrap();
    let file = export_user(
        &server,
        dir.path(),
        "old.tar.zst",
        &["42", "--profile", v1_path.to_str().unwrap()],
    );
    Legacy {
        _server: server,
        dir,
        v1_path,
        file,
        groups,
    }
}

#[test]
fn a_schema_1_archive_restores_in_schema_2_shape() {
    let Legacy {
        dir, v1_path, file, ..
    } = legacy_42();
    let relay = profile("relay.toml");

    // validate and the dry run both count what the upgrade will do.
    let checked = run(&[
        "validate",
        file.to_str().unwrap(),
        "--profile",
        &relay,
        "--json",
    ])
    .ok()
    .json();
    let upgrade = &checked["profile"]["upgrade"];
    assert_eq!(
        (upgrade["from"].as_u64(), upgrade["to"].as_u64()),
        (Some(1), Some(2))
    );
    let target = RedisServer::start();
    let plan = restore(
        &target,
        &file,
        &["--profile", &relay, "--dry-run", "--json"],
    )
    .ok()
    .json();
    let up = &plan["profile"]["upgrade"];
    assert_eq!(up, upgrade, "validate and the dry run agree");
    // user:42, user:42:settings, apikey:k-ada-1, usage:42:20261121
    // (hashes and JSON strings; the index and shared members are not records
    // with fields).
    assert_eq!(up["records"], 4, "{plan}");
    assert_eq!(up["current"], 2, "{plan}");
    let count = |step: &str| {
        up["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"].as_str().unwrap().starts_with(step))
            .unwrap()["records"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("rename stripe_id"), 1);
    assert_eq!(count("nest"), 1);
    assert_eq!(count("default role"), 1);
    assert_eq!(count("drop legacyQuota"), 1);
    let dry = restore(&target, &file, &["--profile", &relay, "--dry-run"])
        .ok()
        .stdout_text();
    assert!(
        dry.contains("data schema 1 -> 2: 2 records to upgrade, 2 already current"),
        "{dry}"
    );
    assert_eq!(target.dbsize(0), 0, "a dry run writes nothing");

    restore(&target, &file, &["--profile", &relay]).ok();
    let user = hash(&target, "user:42");
    let subscription: serde_json::Value = serde_json::from_str(&user["subscription"]).unwrap();
    assert_eq!(
        subscription,
        serde_json::json!({"status": "active", "customerId": "cus_42", "plan": "team"})
    );
    for flat in [
        "subscriptionStatus",
        "stripe_id",
        "stripeCustomerId",
        "subscriptionPlan",
    ] {
        assert!(!user.contains_key(flat), "{flat} left in {user:?}");
    }
    assert_eq!(user["role"], "user");
    assert!(!hash(&target, "apikey:k-ada-1").contains_key("legacyQuota"));

    // Without a profile, records come back as they were written.
    let plain = RedisServer::start();
    restore(&plain, &file, &[]).ok();
    assert_eq!(hash(&plain, "user:42")["stripe_id"], "cus_42");

    // A schema-2 archive is refused by the schema-1 profile.
    let source2 = RedisServer::start();
    source2.load_commands(&fixture("relay-data.redis"));
    let new = export_user(
        &source2,
        dir.path(),
        "new.tar.zst",
        &["42", "--profile", &relay],
    );
    restore(&plain, &new, &["--profile", v1_path.to_str().unwrap()])
        .fails(8, "newer than the profile's 1");
    restore(&plain, &new, &["--as-user", "99"]).fails(2, "--profile");
}

/// Issue 17: upgrade steps with defaults of every TOML type, the run's
/// `now`, and `keep = true`, through the binary.
#[test]
fn upgrade_steps_write_typed_defaults_now_and_keep_the_legacy_fields() {
    let legacy = legacy_42();
    let steps = r#"
[[upgrade.step]]
op = "rename"
group = "user"
field = "stripe_id"
to = "stripeCustomerId"
keep = true

[[upgrade.step]]
op = "nest"
group = "user"
fields = ["subscriptionStatus", "subscriptionPlan"]
into = "subscription"
names = { subscriptionStatus = "status", subscriptionPlan = "plan" }
keep = true

[[upgrade.step]]
op = "default"
group = "user"
field = "role"
value = "user"

[[upgrade.step]]
op = "default"
group = "user"
field = "quota"
value = 100

[[upgrade.step]]
op = "default"
group = "user"
field = "flags"
value = { beta = true }

[[upgrade.step]]
op = "default"
group = "user"
field = "migratedAt"
now = "iso8601"

[[upgrade.step]]
op = "default"
group = "settings"
field = "prefs"
value = { views = 0, langs = ["en"] }

[[upgrade.step]]
op = "default"
group = "settings"
field = "limit"
value = 2.5

[[upgrade.step]]
op = "default"
group = "settings"
field = "updatedAt"
now = "ms"

[[upgrade.step]]
op = "default"
group = "apikeys"
field = "scopes"
value = ["read", "write"]

[[upgrade.step]]
op = "default"
group = "apikeys"
field = "active"
value = true
"#;
    let v2_path = legacy.profile_with(steps);
    let v2 = v2_path.to_str().unwrap();
    let file = &legacy.file;

    let target = RedisServer::start();
    let dry = restore(&target, file, &["--profile", v2, "--dry-run"])
        .ok()
        .stdout_text();
    assert!(dry.contains("copy stripe_id to stripeCustomerId"), "{dry}");
    assert!(dry.contains("default updatedAt = now (ms)"), "{dry}");
    let before = chrono::Utc::now().timestamp_millis();
    restore(&target, file, &["--profile", v2]).ok();
    let after = chrono::Utc::now().timestamp_millis();

    let user = hash(&target, "user:42");
    assert_eq!(user["stripe_id"], "cus_42", "keep: the legacy field stays");
    assert_eq!(user["stripeCustomerId"], "cus_42");
    assert_eq!(user["subscriptionStatus"], "active");
    let subscription: serde_json::Value = serde_json::from_str(&user["subscription"]).unwrap();
    assert_eq!(
        subscription,
        serde_json::json!({"status": "active", "plan": "team"})
    );
    assert_eq!(user["quota"], "100");
    assert_eq!(user["flags"], r#"{"beta":true}"#);
    let migrated = chrono::DateTime::parse_from_rfc3339(&user["migratedAt"]).unwrap();
    assert!(user["migratedAt"].ends_with('Z'), "{}", user["migratedAt"]);

    let settings = json_at(&target, "user:42:settings");
    assert_eq!(settings["theme"], "dark");
    assert_eq!(
        settings["prefs"],
        serde_json::json!({"views": 0, "langs": ["en"]})
    );
    assert_eq!(settings["limit"], 2.5);
    let updated = settings["updatedAt"].as_i64().expect("a JSON number");
    assert!(
        (before..=after).contains(&updated),
        "{before} {updated} {after}"
    );
    assert_eq!(
        updated,
        migrated.timestamp_millis(),
        "one instant for every record of the run"
    );

    let key = hash(&target, "apikey:k-ada-1");
    assert_eq!(key["scopes"], r#"["read","write"]"#);
    assert_eq!(key["active"], "true");
    assert_eq!(key["legacyQuota"], "500", "no drop step in this profile");
}

/// `copy 42` takes user 42's records straight to another server, and
/// `copy 42 --as-user 99` clones them in one command, as export + restore
/// do in two.
#[test]
fn copy_takes_a_user_or_clones_it_in_one_command() {
    let source = RedisServer::start();
    source.load_commands(&fixture("relay-data.redis"));
    let relay = profile("relay.toml");
    let target = RedisServer::start();
    let (s, t) = (source.url(), target.url());
    let report = run(&[
        "copy",
        "42",
        "--profile",
        &relay,
        "--source",
        &s,
        "--target",
        &t,
        "--yes",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(keys_of(&target), set(RELAY_42));

    // A clone into the same database is a real copy, not a copy onto itself.
    let before = keys_of(&source).len();
    run(&[
        "copy",
        "42",
        "--profile",
        &relay,
        "--as-user",
        "99",
        "--source",
        &s,
        "--target",
        &s,
        "--yes",
    ])
    .ok();
    let key = hash(&source, "apikey:99-k-ada-1");
    assert_eq!(key["userId"], "99");
    assert_eq!(
        zscore(&source, "users:by_created", "99"),
        Some(1700000042000.0)
    );
    assert_eq!(keys_of(&source).len(), before + RELAY_42.len() - 1);
}

/// A clone made with `restore --as-user` is verified with the same
/// options: `compare --profile --as-user` finds it identical, where a plain
/// compare (looking for user 42's keys) finds them missing.
#[test]
fn compare_verifies_a_clone_under_its_new_id() {
    let ((_source, _dir, file), relay) = user_42("relay-data.redis", "relay.toml");
    let target = RedisServer::start();
    let f = file.to_str().unwrap();
    restore(&target, &file, &["--profile", &relay, "--as-user", "99"]).ok();
    let url = target.url();
    let as_clone = [
        "compare",
        f,
        "--target",
        &url,
        "--profile",
        &relay,
        "--as-user",
        "99",
        "--json",
    ];
    run(&as_clone).ok();
    let plain = run(&["compare", f, "--target", &url, "--json"]);
    assert_eq!(plain.code, 14, "{}", plain.stderr);
    // An extra key under the clone's own patterns is found.
    let _: () = redis::cmd("SET")
        .arg("usage:99:20991231")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let out = run(&as_clone);
    assert_eq!(out.code, 14, "{}", out.stderr);
    assert!(
        out.stdout_text().contains("usage:99:20991231"),
        "{}",
        out.stdout_text()
    );
}

/// A prod -> QA group copy in one command reports per group, in the
/// profile's words, as well as per type.
#[test]
fn a_group_copy_reports_per_group() {
    let source = RedisServer::start();
    source.load_commands(&fixture("relay-data.redis"));
    let relay = profile("relay.toml");
    let target = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg("apikey:k-ada-1")
        .arg("already here")
        .query(&mut target.conn())
        .unwrap();
    let (s, t) = (source.url(), target.url());
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "copy",
            "--types",
            "apikeys,admins",
            "--profile",
            relay.as_str(),
            "--source",
            s.as_str(),
            "--target",
            t.as_str(),
            "--no-backup",
        ];
        a.extend_from_slice(extra);
        a
    };
    let dry = run(&args(&["--dry-run", "--json", "--verbose"])).ok();
    // --verbose lists every key with what the plan would do to it.
    assert!(
        dry.stderr.contains("to skip (exists): apikey:k-ada-1\n"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        dry.stderr.matches("to create: ").count(),
        12,
        "{}",
        dry.stderr
    );
    let plan = dry.json();
    assert_eq!(plan["groups"]["apikeys"]["created"], 8, "{plan}");
    assert_eq!(plan["groups"]["apikeys"]["skipped"], 1, "{plan}");
    assert_eq!(plan["groups"]["admins"]["created"], 4, "{plan}");

    let done = run(&args(&["--yes", "-v"])).ok();
    // -v names each key with what was done to it, as the runbooks' "Copied: ...".
    assert!(
        done.stderr.contains("created: admin:adm-1\n")
            && done.stderr.contains("skipped (exists): apikey:k-ada-1\n"),
        "{}",
        done.stderr
    );
    assert_eq!(
        done.stderr.matches("created: ").count(),
        12,
        "{}",
        done.stderr
    );
    let text = done.stdout_text();
    assert!(
        text.contains(
            "per group:\n  admins: 4 created, 0 skipped, 0 overwritten, 0 merged, 0 failed\n  apikeys: 8 created, 1 skipped, 0 overwritten, 0 merged, 0 failed\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("existing keys skipped (left as they are): 1\n  apikey:k-ada-1\n"),
        "{text}"
    );
}

/// Issue 17: `now` is the instant the caller gives the restore, the same
/// for the plan, the writes and every record.
#[tokio::test(flavor = "current_thread")]
async fn now_is_the_instant_the_restore_is_given() {
    use redis_archive::archive::ArchiveSource;
    use redis_archive::connection::{Endpoint, Side, Timeouts};
    use redis_archive::profile::Profile;
    use redis_archive::progress::Silent;
    use redis_archive::restore::{self, RestoreOptions};

    let legacy = legacy_42();
    let steps = r#"
[[upgrade.step]]
op = "default"
field = "updatedAt"
now = "ms"

[[upgrade.step]]
op = "default"
group = "user"
field = "migratedAt"
now = "iso8601"
"#;
    let v2 = legacy.profile_with(steps);
    let target = RedisServer::start();
    let endpoint =
        Endpoint::resolve(&target.url(), None, None, Side::Target, Timeouts::default()).unwrap();
    let mut options = RestoreOptions::new(ArchiveSource::File(legacy.file.clone()), endpoint);
    options.write.profile = Some(std::sync::Arc::new(Profile::load(&v2).unwrap()));
    options.write.now = "2026-11-30T20:15:00.123Z".parse().unwrap();
    // These steps leave the user's required `role` missing.
    options.validate = false;
    let plan = restore::plan(&options, &Silent).await.unwrap();
    restore::perform(plan, &options, &Silent).await.unwrap();

    let user = hash(&target, "user:42");
    assert_eq!(user["updatedAt"], "1796069700123");
    assert_eq!(user["migratedAt"], "2026-11-30T20:15:00.123Z");
    assert_eq!(
        hash(&target, "apikey:k-ada-1")["updatedAt"],
        "1796069700123"
    );
    let settings = json_at(&target, "user:42:settings");
    assert_eq!(settings["updatedAt"], 1_796_069_700_123_i64);
}
