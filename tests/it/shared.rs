//! Data shared by all users in per-user archives (issue #17): a user's
//! member of a shared index is restored, backed up and rolled back on its
//! own, so other users' members and their changes are never undone.

use std::path::{Path, PathBuf};

use crate::profiles::{fixture, zscore};
use crate::support::{RedisServer, compare_with, export, restore, run};

const BOARD: &str = "leaderboard:issues_found";

fn zincrby(server: &RedisServer, key: &str, by: f64, member: &str) {
    let _: f64 = redis::cmd("ZINCRBY")
        .arg(key)
        .arg(by)
        .arg(member)
        .query(&mut server.conn())
        .unwrap();
}

/// The review fixtures loaded, and user 42 (leaderboard score 3) exported.
fn review_42(dir: &Path) -> (RedisServer, PathBuf, String) {
    let server = RedisServer::start();
    server.load_commands(&fixture("review-data.redis"));
    let profile = fixture("review.toml").display().to_string();
    let file = dir.join("u42.tar.zst");
    export(&server, &file, &["42", "--profile", &profile]).ok();
    (server, file, profile)
}

/// Restore `file` as user `id` with `extra` options; the backup's path.
fn restore_as(
    server: &RedisServer,
    file: &Path,
    profile: &str,
    id: &str,
    extra: &[&str],
) -> String {
    let mut args = vec!["--profile", profile, "--as-user", id, "--json"];
    args.extend_from_slice(extra);
    let report = restore(server, file, &args).ok().json();
    report["backup"].as_str().unwrap().to_string()
}

fn rollback(backup: &str) -> serde_json::Value {
    run(&["rollback", backup, "--yes", "--json"]).ok().json()
}

/// Issue #17: an overwrite used to leave 42's leaderboard score stale (10,
/// the archive says 3) and compare reported the difference forever.
#[test]
fn overwrite_sets_the_users_shared_member_and_rollback_puts_back_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, file, _) = review_42(dir.path());
    let _: () = redis::cmd("ZADD")
        .arg(BOARD)
        .arg(10)
        .arg("user:42")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(compare_with(&server, &file, &[]).code, 14, "differs first");

    let report = restore(&server, &file, &["--mode", "overwrite", "--json"])
        .ok()
        .json();
    assert_eq!(zscore(&server, BOARD, "user:42"), Some(3.0));
    assert_eq!(zscore(&server, BOARD, "user:4"), Some(1.0), "others kept");
    assert_eq!(zscore(&server, BOARD, "user:13"), Some(1.0), "others kept");
    let out = compare_with(&server, &file, &["--json"]);
    assert_eq!(
        out.code,
        0,
        "identical after the overwrite: {}",
        out.stdout_text()
    );

    // The journal names the member written, not the whole leaderboard.
    let backup = report["backup"].as_str().unwrap().to_string();
    let journal = std::fs::read_to_string(format!("{backup}.journal")).unwrap();
    assert!(
        journal.lines().any(|l| l.starts_with("{\"members\"")
            && l.contains("user:42")
            && !l.contains("user:4\"")),
        "{journal}"
    );

    // Someone else's score changes meanwhile; rollback keeps it and puts
    // 42's back to exactly 10.
    zincrby(&server, BOARD, 7.0, "user:500");
    let done = rollback(&backup);
    assert_eq!(done["members_reverted"], 1, "{done}");
    assert_eq!(done["members_changed"], 0, "{done}");
    assert_eq!(zscore(&server, BOARD, "user:42"), Some(10.0));
    assert_eq!(zscore(&server, BOARD, "user:500"), Some(7.0));
    assert_eq!(zscore(&server, BOARD, "user:4"), Some(1.0));
}

/// Issue #17: rolling back one user's merge used to put the whole shared key
/// back, erasing other users' changes made since.
#[test]
fn rollback_of_a_merge_reverts_the_users_members_and_keeps_changes_made_since() {
    let dir = tempfile::tempdir().unwrap();
    let (server, file, profile) = review_42(dir.path());
    let as_user = |id: &str| restore_as(&server, &file, &profile, id, &["--mode", "merge"]);
    let first = as_user("99");
    let second = as_user("98");
    assert_eq!(zscore(&server, BOARD, "user:99"), Some(3.0));
    assert_eq!(zscore(&server, BOARD, "user:98"), Some(3.0));

    // Another user's concurrent change, and a change to a member the second
    // restore wrote.
    zincrby(&server, BOARD, 7.0, "user:500");
    zincrby(&server, BOARD, 1.0, "user:98");

    let done = rollback(&second);
    assert_eq!(done["members_reverted"], 0, "{done}");
    assert_eq!(done["members_changed"], 1, "{done}");
    assert_eq!(
        done["members_changed_samples"][0],
        format!("{BOARD} member user:98"),
        "{done}"
    );
    assert_eq!(zscore(&server, BOARD, "user:98"), Some(4.0), "kept");
    let text = run(&["rollback", &second, "--yes", "--dry-run"]).ok();
    assert!(
        text.stdout_text()
            .contains("member(s) of shared keys were changed after the restore"),
        "{}",
        text.stdout_text()
    );

    let done = rollback(&first);
    assert_eq!(done["members_reverted"], 1, "{done}");
    assert_eq!(zscore(&server, BOARD, "user:99"), None, "removed again");
    assert_eq!(zscore(&server, BOARD, "user:500"), Some(7.0), "kept");
    assert_eq!(zscore(&server, BOARD, "user:42"), Some(3.0));
    assert_eq!(zscore(&server, BOARD, "user:98"), Some(4.0));
}

fn hget(server: &RedisServer, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query(&mut server.conn())
        .unwrap()
}

/// Issue #17: the relay's `apikey_hash_map` (hashed key -> key id, one hash
/// for all users) goes with the user, and a migrated API key resolves
/// through it in the target.
#[test]
fn a_migrated_api_key_resolves_through_the_shared_map() {
    let dir = tempfile::tempdir().unwrap();
    let source = RedisServer::start();
    source.load_commands(&fixture("relay-data.redis"));
    let relay = fixture("relay.toml").display().to_string();
    let file = dir.path().join("u42.tar.zst");
    export(&source, &file, &["42", "--profile", &relay]).ok();
    let manifest = run(&["inspect", file.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(manifest["groups"]["apikey_map"], 1, "{manifest}");

    // Another user's entry, and a stale entry for one of 42's hashed keys.
    let target = RedisServer::start();
    let _: () = redis::cmd("HSET")
        .arg("apikey_hash_map")
        .arg("aaaa")
        .arg("k-other")
        .arg("4b7d0e")
        .arg("k-stale")
        .query(&mut target.conn())
        .unwrap();
    let backup = restore_as(&target, &file, &relay, "77", &[]);
    let map = "apikey_hash_map";
    let id = hget(&target, map, "9f2c1a").expect("the migrated key is in the map");
    assert_eq!(id, "77-k-ada-1");
    let key = redis::cmd("HGET")
        .arg(format!("apikey:{id}"))
        .arg("userId")
        .query::<String>(&mut target.conn())
        .unwrap();
    assert_eq!(key, "77", "the key id resolves to the new user's record");
    // Only 42's two fields were taken; a field already there is kept by a merge.
    assert_eq!(
        hget(&target, map, "11aa22"),
        None,
        "user 4's entry not taken"
    );
    assert_eq!(hget(&target, map, "aaaa").as_deref(), Some("k-other"));
    assert_eq!(hget(&target, map, "4b7d0e").as_deref(), Some("k-stale"));

    // Rollback removes exactly the field the restore added.
    let done = rollback(&backup);
    assert_eq!(
        done["members_reverted"], 2,
        "users:by_created and the map: {done}"
    );
    assert_eq!(hget(&target, map, "9f2c1a"), None);
    assert_eq!(hget(&target, map, "aaaa").as_deref(), Some("k-other"));
    assert_eq!(hget(&target, map, "4b7d0e").as_deref(), Some("k-stale"));

    // An overwrite sets the user's fields, and its rollback puts back the
    // value it replaced.
    let backup = restore_as(&target, &file, &relay, "77", &["--mode", "overwrite"]);
    assert_eq!(hget(&target, map, "4b7d0e").as_deref(), Some("77-k-ada-2"));
    rollback(&backup);
    assert_eq!(hget(&target, map, "4b7d0e").as_deref(), Some("k-stale"));
    assert_eq!(hget(&target, map, "9f2c1a"), None);
    assert_eq!(hget(&target, map, "aaaa").as_deref(), Some("k-other"));
}
