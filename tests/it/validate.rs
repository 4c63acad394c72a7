//! `validate` against the test vectors: a good archive passes; each kind of
//! damage is named with where it is.

use std::path::PathBuf;

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Validate a fixture that must be invalid; return its JSON report.
fn invalid(name: &str) -> serde_json::Value {
    let out = run(&["validate", "--json", fixture(name).to_str().unwrap()]);
    assert_eq!(
        out.code, 7,
        "{name}: invalid archives exit 7\n{}",
        out.stderr
    );
    let report = out.json();
    assert_eq!(report["valid"], false, "{name}");
    assert!(report["problems_total"].as_u64().unwrap() >= 1);
    report
}

/// The problems of a report, one per line, as "entry record key: message".
fn problems(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {} {}: {}",
                p["entry"].as_str().unwrap_or("-"),
                p["record"].as_u64().map_or("-".into(), |r| r.to_string()),
                p["key"].as_str().unwrap_or("-"),
                p["message"].as_str().unwrap()
            )
        })
        .collect()
}

fn has(report: &serde_json::Value, needle: &str) {
    let all = problems(report);
    assert!(
        all.iter().any(|p| p.contains(needle)),
        "no problem matching {needle:?} in {all:#?}"
    );
}

#[test]
fn good_archive_is_valid_and_report_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let out = run(&[
        "validate",
        fixture("valid.tar.zst").to_str().unwrap(),
        "-o",
        report_path.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout_text().starts_with("valid: "),
        "{}",
        out.stdout_text()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["keys"], 9);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn flipped_byte_in_a_data_entry() {
    has(
        &invalid("flipped-data.tar.zst"),
        "data/000000.jsonl - -: sha256 mismatch",
    );
}

#[test]
fn flipped_byte_in_the_manifest() {
    has(
        &invalid("flipped-manifest.tar.zst"),
        "data/000000.jsonl - -: sha256 mismatch",
    );
}

#[test]
fn flipped_byte_in_the_compressed_stream() {
    has(&invalid("corrupt.tar.zst"), "the data is damaged");
}

#[test]
fn truncated_file() {
    let report = invalid("truncated.tar.zst");
    assert_eq!(report["problems"][0]["kind"], "truncated", "{report}");
}

#[test]
fn extra_entry() {
    has(
        &invalid("extra-entry.tar.zst"),
        "unexpected entry \"notes.txt\"",
    );
}

#[test]
fn link_entry() {
    has(
        &invalid("link-entry.tar.zst"),
        "entry \"data/000001.jsonl\" is a Symlink, not a regular file",
    );
}

#[test]
fn path_traversal_entry() {
    has(
        &invalid("traversal-entry.tar.zst"),
        "unexpected entry \"../../tmp/evil.jsonl\"",
    );
    assert!(
        !std::path::Path::new("/tmp/evil.jsonl").exists(),
        "nothing is ever extracted"
    );
}

#[test]
fn missing_entry() {
    let report = invalid("missing-entry.tar.zst");
    has(&report, "missing entry data/000000.jsonl");
    has(&report, "counts differ from the manifest");
}

#[test]
fn record_that_does_not_parse() {
    has(
        &invalid("bad-record.tar.zst"),
        "data/000000.jsonl 2 bin:key: record does not parse",
    );
}

#[test]
fn counts_that_do_not_match() {
    has(
        &invalid("bad-counts.tar.zst"),
        "counts differ from the manifest: it says 10 keys",
    );
}

#[test]
fn future_schema_version() {
    let report = invalid("future-schema.tar.zst");
    assert_eq!(
        report["problems"][0]["kind"], "unsupported-schema",
        "{report}"
    );
    has(&report, "schema_version 3, this program reads up to 2");
}

#[test]
fn encrypted_archives_are_validated_with_their_key() {
    let key = fixture("age-key.txt");
    let out = run(&[
        "validate",
        "--json",
        "-i",
        key.to_str().unwrap(),
        fixture("encrypted.tar.zst.age").to_str().unwrap(),
    ])
    .ok();
    assert_eq!(out.json()["encrypted"], true);
    run(&[
        "validate",
        fixture("encrypted.tar.zst.age").to_str().unwrap(),
    ])
    .fails(12, "archive is encrypted");
    let out = run(&[
        "validate",
        "--json",
        "-i",
        key.to_str().unwrap(),
        fixture("encrypted-truncated.tar.zst.age").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 7);
    has(&out.json(), "cut short or altered");
}

#[test]
fn text_report_lists_problems_with_locations() {
    let out = run(&["validate", fixture("bad-record.tar.zst").to_str().unwrap()]);
    assert_eq!(out.code, 7);
    let text = out.stdout_text();
    assert!(text.starts_with("INVALID: "), "{text}");
    assert!(
        text.contains("data/000000.jsonl record 2 (key \"bin:key\"): record does not parse"),
        "{text}"
    );
}
