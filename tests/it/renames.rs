//! Renames by token (`--rename-token`): a tenant id wherever it stands in
//! its keys, checked rules, plans that name the renames, and compare with
//! the same rules (issue 16).

use crate::support::*;
use redis::Commands;

const RULE: &str = "siraya=tenant_7692";

/// The tenant's keys, with the id in front, in the middle and at the end,
/// of several types and with a TTL; a neighbour tenant and an unrelated key.
fn load_tenants(c: &mut redis::Connection) {
    redis::pipe()
        .cmd("HSET")
        .arg("lightrag:siraya:llm_cache:1")
        .arg("prompt")
        .arg("hi")
        .arg("answer")
        .arg("hello")
        .cmd("ZADD")
        .arg("embed:ab12:siraya")
        .arg(1)
        .arg("doc1")
        .arg(2)
        .arg("doc2")
        .cmd("SET")
        .arg("siraya_kv_store_x")
        .arg("v")
        .arg("EX")
        .arg(3600)
        .cmd("RPUSH")
        .arg("{siraya}.docs-queue")
        .arg("a")
        .arg("b")
        .cmd("SET")
        .arg("siraya2_x")
        .arg("the neighbour")
        .cmd("SET")
        .arg("other:key")
        .arg("x")
        .query::<()>(c)
        .unwrap();
}

const MOVED: [(&str, &str); 4] = [
    (
        "lightrag:siraya:llm_cache:1",
        "lightrag:tenant_7692:llm_cache:1",
    ),
    ("embed:ab12:siraya", "embed:ab12:tenant_7692"),
    ("siraya_kv_store_x", "tenant_7692_kv_store_x"),
    ("{siraya}.docs-queue", "{tenant_7692}.docs-queue"),
];

fn compare(file: &std::path::Path, target: &RedisServer, extra: &[&str]) -> Run {
    compare_with(target, file, extra)
}

#[test]
fn token_rule_moves_a_tenant_and_compare_proves_it() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    load_tenants(&mut src.conn());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("siraya.tar.zst");
    export(
        &src,
        &file,
        &["--match", "*siraya*", "--exclude", "siraya2_*"],
    )
    .ok();

    // The dry run names the renames.
    let plan = restore(&dst, &file, &["--rename-token", RULE, "--dry-run"]).ok();
    let text = plan.stdout_text();
    assert!(text.contains("renames: 4 key(s) renamed"), "{text}");
    for (old, new) in MOVED {
        assert!(text.contains(&format!("  {old} -> {new}")), "{text}");
    }
    assert_eq!(dst.dbsize(0), 0, "a dry run writes nothing");

    restore(&dst, &file, &["--rename-token", RULE]).ok();
    let (mut s, mut d) = (src.conn(), dst.conn());
    assert_eq!(dst.dbsize(0), 4);
    for (old, new) in MOVED {
        assert_eq!(
            key_state(&mut s, old.as_bytes()),
            key_state(&mut d, new.as_bytes()),
            "{old}"
        );
    }
    assert!(expire_time(&mut d, b"tenant_7692_kv_store_x").is_some());

    // compare with the same rule proves the move.
    let same = compare(&file, &dst, &["--rename-token", RULE, "--json"])
        .ok()
        .json();
    assert_eq!(same["differences"], 0, "{same}");
    assert_eq!(same["renames"]["renamed"], 4, "{same}");
    assert_eq!(same["renames"]["not_renamed"], 0, "{same}");

    // One key left under its old name: compare fails and says so.
    let _: () = d
        .rename("embed:ab12:tenant_7692", "embed:ab12:siraya")
        .unwrap();
    let out = compare(&file, &dst, &["--rename-token", RULE, "--json"]);
    assert_eq!(out.code, 14, "{}", out.stderr);
    let diff = out.json();
    assert_eq!(diff["by_kind"]["missing"], 1, "{diff}");
    assert_eq!(diff["renames"]["missing"], 1, "{diff}");
    let detail = diff["examples"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("still under its old name \"embed:ab12:siraya\""),
        "{detail}"
    );
    let _: () = d
        .rename("embed:ab12:siraya", "embed:ab12:tenant_7692")
        .unwrap();

    // Rules that miss keys (a prefix rule cannot reach the middle or the
    // end) make compare fail rather than look the keys up under their old
    // names.
    let out = compare(
        &file,
        &src,
        &["--rename-prefix", "siraya_=tenant_7692_", "--json"],
    );
    assert_eq!(out.code, 14, "{}", out.stderr);
    let diff = out.json();
    assert_eq!(diff["by_kind"]["not-renamed"], 3, "{diff}");
    assert_eq!(diff["renames"]["not_renamed"], 3, "{diff}");
    let text = compare(&file, &src, &["--rename-prefix", "siraya_=tenant_7692_"]).stdout_text();
    assert!(
        text.contains("1 key(s) looked up under their new names")
            && text.contains("3 no rule renames"),
        "{text}"
    );
}

/// A copy within one database: the plan counts the neighbour no rule
/// renames, and the neighbour is left exactly as it was.
#[test]
fn token_copy_names_the_keys_no_rule_renames_and_spares_the_neighbour() {
    let server = RedisServer::start();
    load_tenants(&mut server.conn());
    let url = server.url();
    let copy = |extra: &[&str]| {
        let mut args = vec![
            "copy",
            "--source",
            &url,
            "--target",
            &url,
            "--match",
            "*siraya*",
            "--rename-token",
            RULE,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let plan = copy(&["--dry-run", "--json"]).ok().json();
    let renames = &plan["renames"];
    assert_eq!(renames["renamed"], 4, "{plan}");
    assert_eq!(renames["not_renamed"], 1, "{plan}");
    assert_eq!(renames["not_renamed_examples"][0], "siraya2_x", "{plan}");
    let text = copy(&["--dry-run"]).ok().stdout_text();
    assert!(
        text.contains("1 selected key(s) no rule renames (they keep their name):\n  siraya2_x"),
        "{text}"
    );

    // --verify checks the copy under the new names; the neighbour, which
    // no rule renames, is named.
    let done = copy(&["--yes", "--no-backup", "--verify", "--json"]);
    assert_eq!(done.code, 14, "{}", done.stderr);
    let verification = &done.json()["verification"];
    assert_eq!(verification["by_kind"]["not-renamed"], 1, "{verification}");
    assert_eq!(verification["identical"], 4, "{verification}");
    let mut c = server.conn();
    for (old, new) in MOVED {
        assert_eq!(
            key_state(&mut c, old.as_bytes()),
            key_state(&mut c, new.as_bytes()),
            "{old}"
        );
    }
    let v: String = c.get("siraya2_x").unwrap();
    assert_eq!(v, "the neighbour");
    let touched: Vec<String> = c.keys("*tenant_76922*").unwrap();
    assert!(touched.is_empty(), "{touched:?}");
    assert_eq!(server.dbsize(0), 6 + 4);
}

/// A rule with glob characters, or an empty OLD, is refused (exit 2) before
/// anything is read or connected to.
#[test]
fn rules_with_globs_or_an_empty_old_are_refused() {
    let dead = format!("redis://127.0.0.1:{}", dead_port());
    let bad = [
        ("--rename-token", "siraya*=tenant_7692", "glob character"),
        ("--rename-token", "=tenant_7692", "non-empty OLD"),
        ("--rename-prefix", "tenant_?:=b:", "glob character"),
        ("--rename-prefix", "tenant_[ab]:=b:", "glob character"),
    ];
    for (option, rule, needle) in bad {
        for command in [
            vec!["restore", "missing.tar.zst", "--target", &dead, "--yes"],
            vec!["compare", "missing.tar.zst", "--target", &dead],
            vec!["copy", "--source", &dead, "--target", &dead, "--yes"],
        ] {
            let mut args = command.clone();
            args.extend_from_slice(&[option, rule]);
            run(&args).fails(2, needle);
        }
    }
}
