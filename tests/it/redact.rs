//! Sanitized exports (issue #17): `export --redact` and `--redact-key`
//! with the relay profile, whose fixture declares its tokens, password
//! hashes, e-mail addresses and session addresses sensitive.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::profiles::{fixture, hash};
use crate::support::{KeyState, RedisServer, command, export, key_state, output, restore, run};

const MASK: &str = "[REDACTED]";
const KEYED: &str = "hmac-sha256:";
/// The fields relay.toml declares sensitive, in any group.
const SENSITIVE: [&str; 5] = ["email", "accessToken", "refreshToken", "ip", "passwordHash"];

fn relay() -> String {
    fixture("relay.toml").display().to_string()
}

/// A server with the relay data loaded.
fn relay_server() -> RedisServer {
    let server = RedisServer::start();
    server.load_commands(&fixture("relay-data.redis"));
    server
}

/// Every value of a sensitive field in `server`: hash fields, and members
/// of JSON objects held in strings.
fn secrets(server: &RedisServer) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for key in server.snapshot().into_keys() {
        match key_state(&mut server.conn(), &key) {
            Some(KeyState::Hash(pairs)) => {
                for (f, v) in pairs {
                    if SENSITIVE.contains(&String::from_utf8(f).unwrap().as_str()) {
                        out.insert(String::from_utf8(v).unwrap());
                    }
                }
            }
            Some(KeyState::String(text)) => {
                if let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice(&text) {
                    for f in SENSITIVE {
                        if let Some(serde_json::Value::String(v)) = doc.get(f) {
                            out.insert(v.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `zstd -dc FILE`: every byte of the archive as stored, decompressed.
fn decompressed(file: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .arg("-dc")
        .arg(file)
        .output()
        .expect("zstd");
    assert!(out.status.success());
    out.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn get(server: &RedisServer, key: &str) -> String {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.conn())
        .unwrap()
}

#[test]
fn a_masked_export_holds_no_declared_secret_even_in_a_hash_split_into_records() {
    let source = relay_server();
    // User 42's hash in many records: its e-mail is redacted in whichever
    // part it falls.
    let mut c = source.conn();
    for i in 0..3000 {
        let _: () = redis::cmd("HSET")
            .arg("user:42")
            .arg(format!("pref{i}"))
            .arg("x".repeat(64))
            .query(&mut c)
            .unwrap();
    }
    // A session document read in parts (over 64 KiB), gathered to be
    // redacted (found by the group export: a user export's owner scan
    // reads only its first 64 KiB).
    let big = format!(
        r#"{{"userId":"42","ip":"10.7.7.7","pad":"{}"}}"#,
        "p".repeat(300_000)
    );
    let _: () = redis::cmd("SET")
        .arg("session:tok-ada-big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let secrets = secrets(&source);
    assert!(secrets.contains("sk-ant-oat-ada") && secrets.contains("ada@example.com"));
    assert!(secrets.contains("10.7.7.7"));
    assert!(secrets.contains("10.0.0.1") && secrets.contains("$2b$10$abcdefghijklmnopqrstuv"));
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("u42.tar.zst");
    let report = export(
        &source,
        &user,
        &["42", "--profile", &relay(), "--redact", "--json"],
    )
    .ok()
    .json();
    assert_eq!(report["redaction"]["method"], "mask");
    let admins = dir.path().join("admins.tar.zst");
    export(
        &source,
        &admins,
        &[
            "--profile",
            &relay(),
            "--types",
            "admins,claude_accounts,sessions",
            "--redact",
        ],
    )
    .ok();

    for file in [&user, &admins] {
        let bytes = decompressed(file);
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "{secret:?} is in {}",
                file.display()
            );
        }
        assert!(contains(&bytes, MASK));
    }

    let inspected = run(&["inspect", user.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let hashes = &inspected["counts"]["by_type"]["hash"];
    assert!(
        hashes["records"].as_u64() > hashes["keys"].as_u64(),
        "user:42 is split: {hashes}"
    );
    let redaction = &inspected["redaction"];
    assert_eq!(redaction["method"], "mask");
    assert_eq!(
        redaction["fields"]["claude_accounts"],
        serde_json::json!(["accessToken", "refreshToken"])
    );
    assert_eq!(redaction["fields"]["sessions"], serde_json::json!(["ip"]));
    let text = run(&["inspect", user.to_str().unwrap()]).ok().stdout_text();
    assert!(text.contains("redacted:        masked"), "{text}");
    assert!(text.contains("  user: email"), "{text}");
    run(&["validate", user.to_str().unwrap(), "--profile", &relay()]).ok();

    // Restored, the masked fields are there (required fields stay) with
    // the mask; the rest is as it was.
    let target = RedisServer::start();
    restore(&target, &user, &["--profile", &relay()]).ok();
    let restored = hash(&target, "user:42");
    assert_eq!(restored["email"], MASK);
    assert_eq!(restored["username"], "ada");
    assert_eq!(restored.len(), 6 + 3000);
    let session: serde_json::Value =
        serde_json::from_str(&get(&target, "session:tok-ada-1")).unwrap();
    assert_eq!(session["ip"], MASK);
    assert_eq!(session["userId"], "42");
    let groups = RedisServer::start();
    restore(&groups, &admins, &["--profile", &relay()]).ok();
    assert_eq!(hash(&groups, "admin:adm-1")["passwordHash"], MASK);
    let big: serde_json::Value =
        serde_json::from_str(&get(&groups, "session:tok-ada-big")).unwrap();
    assert_eq!(big["ip"], MASK);
    assert_eq!(big["pad"].as_str().unwrap().len(), 300_000);
}

#[test]
fn a_keyed_export_keeps_equal_values_equal_and_references_resolving_after_restore() {
    let source = relay_server();
    // The same token in two records of two groups.
    let _: () = redis::cmd("HSET")
        .arg("gemini_account:ga-ada")
        .arg("accessToken")
        .arg("sk-ant-oat-ada")
        .query(&mut source.conn())
        .unwrap();
    let secrets = secrets(&source);
    let dir = tempfile::tempdir().unwrap();
    let key_text = "k3y-material-7Qx9-never-shown-anywhere";
    let key = dir.path().join("redact.key");
    std::fs::write(&key, format!("{key_text}\n")).unwrap();
    let key_arg = key.to_str().unwrap();

    let first = dir.path().join("first.tar.zst");
    let exported = export(
        &source,
        &first,
        &["42", "--profile", &relay(), "--redact-key", key_arg],
    )
    .ok();
    // The same key from the environment, in a second export.
    let second = dir.path().join("second.tar.zst");
    let url = source.url();
    let again = output(
        command(&[
            "export",
            "42",
            "--profile",
            &relay(),
            "--source",
            &url,
            "-o",
            second.to_str().unwrap(),
            "--redact",
        ])
        .env("ARCHIVE_REDACT_KEY_FILE", &key)
        .output()
        .unwrap(),
    )
    .ok();
    let mut shown = vec![
        exported.stdout_text(),
        exported.stderr,
        again.stdout_text(),
        again.stderr,
    ];
    for file in [&first, &second] {
        let bytes = decompressed(file);
        for secret in secrets.iter().map(String::as_str).chain([key_text]) {
            assert!(
                !contains(&bytes, secret),
                "{secret:?} is in {}",
                file.display()
            );
        }
        assert!(contains(&bytes, KEYED));
        for args in [vec!["inspect"], vec!["inspect", "--json"]] {
            let mut args = args;
            args.insert(1, file.to_str().unwrap());
            let r = run(&args).ok();
            shown.extend([r.stdout_text(), r.stderr]);
        }
    }
    let inspected = run(&["inspect", first.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(inspected["redaction"]["method"], "hmac-sha256");
    // validate: required fields are there and references resolve.
    let validated = run(&["validate", first.to_str().unwrap(), "--profile", &relay()]).ok();
    shown.extend([validated.stdout_text(), validated.stderr]);

    let (a, b) = (RedisServer::start(), RedisServer::start());
    let restored = restore(&a, &first, &["--profile", &relay()]).ok();
    shown.extend([restored.stdout_text(), restored.stderr]);
    restore(&b, &second, &["--profile", &relay()]).ok();
    let claude = hash(&a, "claude:account:ca-ada");
    let gemini = hash(&a, "gemini_account:ga-ada");
    assert!(claude["accessToken"].starts_with(KEYED), "{claude:?}");
    assert_eq!(
        claude["accessToken"], gemini["accessToken"],
        "equal secrets map to equal hashes"
    );
    assert_ne!(claude["accessToken"], claude["refreshToken"]);
    assert_eq!(
        hash(&b, "claude:account:ca-ada"),
        claude,
        "the same key gives the same hashes in another export"
    );
    // References still resolve: the key's account ids name restored keys.
    let apikey = hash(&a, "apikey:k-ada-1");
    assert_eq!(apikey["userId"], "42");
    assert_eq!(
        hash(&a, &format!("claude:account:{}", apikey["claudeAccountId"]))["ownerId"],
        "42"
    );
    assert_eq!(
        hash(&a, &format!("gemini_account:{}", apikey["geminiAccountId"]))["id"],
        "ga-ada"
    );
    assert_eq!(hash(&a, "user:42")["id"], "42");

    for text in &shown {
        assert!(!text.contains(key_text), "the key is shown: {text}");
    }

    // An empty key file is refused, naming no key.
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    export(
        &source,
        &dir.path().join("x.tar.zst"),
        &[
            "42",
            "--profile",
            &relay(),
            "--redact-key",
            empty.to_str().unwrap(),
        ],
    )
    .fails(2, "is empty");
}

#[test]
fn redact_needs_a_profile_and_groups_that_declare_sensitive_fields() {
    let source = relay_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.tar.zst");
    export(&source, &file, &["--redact"]).fails(2, "profile");
    export(
        &source,
        &file,
        &["42", "--profile", &relay(), "--types", "usage", "--redact"],
    )
    .fails(2, "declare no `sensitive` fields");
    assert!(!file.exists());
}

#[test]
fn a_redacted_archive_into_a_production_looking_target_is_warned_not_refused() {
    let source = relay_server();
    let dir = tempfile::tempdir().unwrap();
    let redacted = dir.path().join("r.tar.zst");
    export(
        &source,
        &redacted,
        &["42", "--profile", &relay(), "--redact"],
    )
    .ok();
    let plain = dir.path().join("p.tar.zst");
    export(&source, &plain, &["42", "--profile", &relay()]).ok();

    let target = RedisServer::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app-prod")
        .arg("on")
        .arg(">pw-Zq81-secret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query(&mut target.conn())
        .unwrap();
    let url = target.url();
    let prod = url.replace("redis://", "redis://app-prod:pw-Zq81-secret@");
    assert_ne!(prod, url);
    let profile = relay();
    let restore_to = |url: &str, file: &Path, extra: &[&str]| {
        let mut args = vec!["restore", file.to_str().unwrap(), "--target", url];
        args.extend_from_slice(&["--profile", &profile]);
        args.extend_from_slice(extra);
        run(&args).ok()
    };

    let dry = restore_to(&prod, &redacted, &["--dry-run"]);
    let text = dry.stdout_text();
    assert!(
        text.contains("warning: the archive is redacted (mask") && text.contains("\"app-prod\""),
        "{text}"
    );
    let json = restore_to(&prod, &redacted, &["--dry-run", "--json"]).json();
    assert!(
        json["redaction_warning"]
            .as_str()
            .unwrap()
            .contains("looks like production")
    );
    assert_eq!(target.dbsize(0), 0, "a dry run writes nothing");

    // Not refused: the restore goes ahead and its report says it again.
    let done = restore_to(&prod, &redacted, &["--yes", "--json"]).json();
    assert!(done["redaction_warning"].is_string(), "{done}");
    assert_eq!(hash(&target, "user:42")["email"], MASK);
    assert!(
        !dry.stdout_text().contains("pw-Zq81-secret") && !dry.stderr.contains("pw-Zq81-secret")
    );

    // No warning for an archive that is not redacted, or for a target
    // that does not look like production.
    let plain_dry = restore_to(&prod, &plain, &["--dry-run", "--json"]).json();
    assert!(plain_dry.get("redaction_warning").is_none(), "{plain_dry}");
    let other = RedisServer::start();
    let elsewhere = restore_to(&other.url(), &redacted, &["--dry-run", "--json"]).json();
    assert!(elsewhere.get("redaction_warning").is_none(), "{elsewhere}");
}
