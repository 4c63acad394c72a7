//! Corrupt and hostile archives (issue #8): every single-byte change, every
//! truncation, appended data, tar entries that are not plain files, sizes
//! beyond the limits, absurd manifests and decompression bombs are refused
//! by the same full read that restore makes before its first write. The
//! reader never writes an entry to the filesystem.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::support::{RedisServer, command, output, restore};
use redis_archive::archive::reader::{
    Discard, LARGE_RECORD_BYTES, MAX_ENTRY_BYTES, MAX_META_BYTES,
};
use redis_archive::archive::{ArchiveSource, Decryption, read_archive};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn age_key() -> Decryption {
    Decryption::none()
        .with_identity_files(&[fixture("age-key.txt")])
        .unwrap()
}

/// Read `bytes` as restore's verifying pass does; the error text, or
/// `None` when it was accepted.
fn refused(bytes: &[u8], decryption: &Decryption) -> Option<String> {
    match read_archive(
        &ArchiveSource::Memory(bytes.into()),
        decryption,
        &mut Discard,
    ) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn every_single_byte_change_is_detected() {
    let mut tried = 0;
    for (name, decryption, masks) in [
        (
            "valid.tar.zst",
            Decryption::none(),
            &[0x01u8, 0x80, 0xff][..],
        ),
        ("encrypted.tar.zst.age", age_key(), &[0x01u8, 0x80][..]),
    ] {
        let good = std::fs::read(fixture(name)).unwrap();
        assert!(refused(&good, &decryption).is_none(), "{name} reads");
        for at in 0..good.len() {
            for mask in masks {
                let mut bad = good.clone();
                bad[at] ^= mask;
                tried += 1;
                assert!(
                    refused(&bad, &decryption).is_some(),
                    "{name}: byte {at} ^ {mask:#04x} went unnoticed"
                );
            }
        }
    }
    eprintln!("{tried} single-byte changes tried, all refused");
    assert!(tried > 5000);
}

#[test]
fn every_truncation_is_detected() {
    let mut tried = 0;
    for (name, decryption) in [
        ("valid.tar.zst", Decryption::none()),
        ("encrypted.tar.zst.age", age_key()),
    ] {
        let good = std::fs::read(fixture(name)).unwrap();
        for len in 0..good.len() {
            tried += 1;
            assert!(
                refused(&good[..len], &decryption).is_some(),
                "{name} cut to {len} bytes went unnoticed"
            );
        }
    }
    eprintln!("{tried} truncations tried, all refused");
}

#[test]
fn appended_data_is_detected() {
    let good = std::fs::read(fixture("valid.tar.zst")).unwrap();
    let encrypted = std::fs::read(fixture("encrypted.tar.zst.age")).unwrap();
    let tails: [&[u8]; 4] = [b"garbage", &[0u8; 600], &good, b"\n"];
    for tail in tails {
        let bad = [&good[..], tail].concat();
        let why = refused(&bad, &Decryption::none());
        assert!(
            why.is_some(),
            "{} bytes appended went unnoticed",
            tail.len()
        );
        let bad = [&encrypted[..], tail].concat();
        assert!(refused(&bad, &age_key()).is_some());
    }
    // Another whole archive appended decompresses cleanly: the reader
    // still finds data after the tar's end.
    let twice = [&good[..], &good[..]].concat();
    let why = refused(&twice, &Decryption::none()).unwrap();
    assert!(why.contains("data after the end of the archive"), "{why}");
}

/// The entries of `valid.tar.zst`: (header, content) in order.
fn entries() -> Vec<(tar::Header, Vec<u8>)> {
    let plain = zstd::decode_all(&std::fs::read(fixture("valid.tar.zst")).unwrap()[..]).unwrap();
    let mut archive = tar::Archive::new(&plain[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            (e.header().clone(), content)
        })
        .collect()
}

/// A tar of raw 512-byte headers and contents, as a hostile writer would
/// make it (the tar crate refuses to write some of these), zstd-compressed.
fn pack(entries: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (header, content) in entries {
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(content);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    zstd::encode_all(&tar[..], 3).unwrap()
}

fn with_name(header: &tar::Header, name: &[u8]) -> tar::Header {
    let mut h = header.clone();
    let raw = h.as_old_mut();
    raw.name = [0; 100];
    raw.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

#[test]
fn entries_that_are_not_plain_files_or_repeat_are_refused() {
    let good = entries();
    assert_eq!(good.len(), 3, "header, one data entry, manifest");
    let refuse = |list: Vec<(tar::Header, Vec<u8>)>, what: &str, needle: &str| {
        let why = refused(&pack(&list), &Decryption::none())
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(why.contains(needle), "{what}: {why}");
    };
    let of_type = |t: tar::EntryType, link: Option<&str>| {
        let mut list = good.clone();
        let h = &mut list[1].0;
        h.set_entry_type(t);
        if let Some(target) = link {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        if !matches!(t, tar::EntryType::Regular) {
            list[1].1.clear();
            list[1].0.set_size(0);
            list[1].0.set_cksum();
        }
        list
    };
    refuse(
        of_type(tar::EntryType::Char, None),
        "a character device",
        "not a regular file",
    );
    refuse(
        of_type(tar::EntryType::Block, None),
        "a block device",
        "not a regular file",
    );
    refuse(
        of_type(tar::EntryType::Fifo, None),
        "a fifo",
        "not a regular file",
    );
    refuse(
        of_type(tar::EntryType::Link, Some("header.json")),
        "a hard link",
        "not a regular file",
    );
    refuse(
        of_type(tar::EntryType::Symlink, Some("/etc/shadow")),
        "a symlink",
        "not a regular file",
    );

    let mut dup = good.clone();
    dup.insert(1, good[0].clone());
    refuse(dup, "a second header.json", "header.json");
    let mut dup = good.clone();
    dup.insert(2, good[1].clone());
    refuse(dup, "a data entry twice", "unexpected entry");

    let mut absolute = good.clone();
    absolute[1].0 = with_name(&good[1].0, b"/tmp/evil.jsonl");
    refuse(absolute, "an absolute path", "unexpected entry");
    let mut dotdot = good.clone();
    dotdot[1].0 = with_name(&good[1].0, b"data/../../evil.jsonl");
    refuse(dotdot, "a path with ..", "unexpected entry");
}

#[test]
fn sizes_beyond_the_limits_are_refused_before_anything_is_read() {
    let good = entries();
    // Headers that claim more than the limits, followed by a few bytes: the
    // reader must refuse on the claim, not try to read or allocate it.
    let mut big_data = good.clone();
    big_data[1].0.set_size(MAX_ENTRY_BYTES + 1);
    big_data[1].0.set_cksum();
    let bytes = pack(&big_data[..2]);
    let why = refused(&bytes, &Decryption::none()).unwrap();
    assert!(why.contains("over the limit"), "{why}");

    let mut big_meta = good.clone();
    big_meta[0].0.set_size(MAX_META_BYTES + 1);
    big_meta[0].0.set_cksum();
    let why = refused(&pack(&big_meta[..1]), &Decryption::none()).unwrap();
    assert!(why.contains("over the limit"), "{why}");
}

#[test]
fn absurd_manifest_counts_and_sizes_are_refused_without_huge_allocations() {
    let good = entries();
    let manifest: serde_json::Value = serde_json::from_slice(&good[2].1).unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("keys", {
            let mut m = manifest.clone();
            m["counts"]["keys"] = u64::MAX.into();
            m["counts"]["records"] = u64::MAX.into();
            m
        }),
        ("entry size", {
            let mut m = manifest.clone();
            m["entries"][0]["size"] = u64::MAX.into();
            m["entries"][0]["records"] = u64::MAX.into();
            m
        }),
        ("a million entries", {
            let mut m = manifest.clone();
            let one = m["entries"][0].clone();
            m["entries"] = serde_json::Value::Array(vec![one; 1_000_000]);
            m
        }),
    ];
    for (what, m) in cases {
        let mut list = good.clone();
        list[2].1 = serde_json::to_vec(&m).unwrap();
        let len = list[2].1.len() as u64;
        list[2].0.set_size(len);
        list[2].0.set_cksum();
        let why = refused(&pack(&list), &Decryption::none())
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(why.contains("corrupt"), "{what}: {why}");
    }
}

/// A zstd stream of one data entry holding `len` bytes of `a` and no newline.
fn bomb(len: u64) -> Vec<u8> {
    let good = entries();
    let mut encoder = zstd::Encoder::new(Vec::new(), 19).unwrap();
    {
        let mut tar = tar::Builder::new(&mut encoder);
        let mut header = good[0].0.clone();
        tar.append_data(&mut header, "header.json", &good[0].1[..])
            .unwrap();
        let mut header = good[1].0.clone();
        header.set_size(len);
        tar.append_data(
            &mut header,
            "data/000000.jsonl",
            std::io::repeat(b'a').take(len),
        )
        .unwrap();
        tar.finish().unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn a_decompression_bomb_is_refused_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 GiB record line from a file of a few tens of KiB. Read in full it
    // would take a gigabyte; the reader stops once the line passes
    // LARGE_RECORD_BYTES, so the binary runs under a 640 MiB address-space
    // limit (which reading the line whole would break) and says why.
    let bytes = bomb(1 << 30);
    assert!(bytes.len() < 512 << 10, "{} bytes", bytes.len());
    let file = dir.path().join("bomb.tar.zst");
    std::fs::write(&file, &bytes).unwrap();
    let limited = format!(
        "ulimit -v {}; exec '{}' validate '{}'",
        640 << 10,
        crate::support::bin().display(),
        file.display()
    );
    let out = output(
        std::process::Command::new("sh")
            .args(["-c", &limited])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 7, "{}\n{}", out.stderr, out.stdout_text());
    assert!(
        out.stdout_text().contains("decompression bomb"),
        "{}",
        out.stdout_text()
    );
    const { assert!(LARGE_RECORD_BYTES < 640 << 20) };

    // restore refuses it the same way and writes nothing.
    let target = RedisServer::start();
    restore(&target, &file, &[]).fails(7, "decompression bomb");
    assert_eq!(target.dbsize(0), 0);
}

#[test]
fn the_reader_writes_nothing_to_the_filesystem() {
    // An archive whose entries name absolute and parent paths is read in a
    // scratch directory: nothing appears anywhere.
    let dir = tempfile::tempdir().unwrap();
    let good = entries();
    let mut list = good.clone();
    list.insert(
        1,
        (
            with_name(&good[1].0, b"../escaped.jsonl"),
            good[1].1.clone(),
        ),
    );
    let file = dir.path().join("a.tar.zst");
    std::fs::write(&file, pack(&list)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = output(
        command(&["validate", file.to_str().unwrap()])
            .current_dir(&work)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 7);
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
