//! Data shared by all users in per-user archives (issue #17): a user's
//! member of a shared index is restored, backed up and rolled back on its
//! own, so other users' members and their changes are never undone.

use std::path::{Path, PathBuf};

use crate::support::{RedisServer, compare_with, export, restore, run};

const BOARD: &str = "leaderboard:issues_found";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/profiles")
        .join(name)
}

fn zscore(server: &RedisServer, key: &str, member: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query(&mut server.conn())
        .unwrap()
}

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
    let as_user = |id: &str| {
        let report = restore(
            &server,
            &file,
            &[
                "--profile",
                &profile,
                "--as-user",
                id,
                "--mode",
                "merge",
                "--json",
            ],
        )
        .ok()
        .json();
        report["backup"].as_str().unwrap().to_string()
    };
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
