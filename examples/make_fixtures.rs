//! Writes the test vectors in fixtures/ (see fixtures/README.md).
//!
//! `cargo run --example make_fixtures -- fixtures` rewrites them. They are
//! checked in: the tests read the committed files, so a change to the
//! writer cannot silently change what the reader is tested against.

use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use redis_archive::archive::manifest::{
    ArchiveKind, ClusterSource, Header, Manifest, Program, SCHEMA_VERSION, Source, closing_frame,
};
use redis_archive::archive::{ArchiveWriter, Destination, Encryption, WriterOptions};
use redis_archive::connection::{Address, ServerInfo};
use redis_archive::keyspace::Selection;
use redis_archive::record::{
    Bytes, ConsumerGroup, Expiry, FieldExpiry, GroupPending, PendingEntry, Record, Score,
    StreamChunk, StreamEntry, StreamId, StreamMeta, Value,
};
use sha2::{Digest, Sha256};

/// 2100-01-01T00:00:00Z: far enough that `--ttl absolute` keeps the key.
const FAR_FUTURE_MS: i64 = 4_102_444_800_000;
/// 2001-01-01T00:00:00Z: already past, so `--ttl absolute` skips the key.
const PAST_MS: i64 = 978_307_200_000;
/// The first schema: the vectors made before schema 2 stay schema 1 (and
/// byte for byte what they were), so that every reader keeps reading them.
const SCHEMA_1: u64 = 1;

fn header(schema_version: u64) -> Header {
    let mut header = Header::new(
        ArchiveKind::Export,
        "2026-11-21T12:00:00Z".parse().unwrap(),
        Source {
            address: Address {
                host: "fixture-host".into(),
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
    // Pinned, so regenerated fixtures do not change with the crate version.
    header.program = Program {
        name: "archive".into(),
        version: "0.1.0".into(),
    };
    header.schema_version = schema_version;
    header.id = "0123456789abcdef".into();
    header
}

fn record(key: &str, value: Value) -> Record {
    Record::new(key.into(), value)
}

/// Ten keys: every type, binary data, infinite scores, a split key, an
/// expiry in the future and one in the past.
fn records() -> Vec<Record> {
    let bin = Bytes(vec![0xff, 0x00, 0xfe]);
    let mut ttl = record("session:abc", Value::String("token".into()));
    ttl.expiry = Some(Expiry {
        at_ms: FAR_FUTURE_MS,
        ttl_ms: 3_600_000,
    });
    let mut expired = record("session:old", Value::String("stale".into()));
    expired.expiry = Some(Expiry {
        at_ms: PAST_MS,
        ttl_ms: 1_000,
    });
    let split = |part: u32, more: bool, items: &[&str]| Record {
        key: "list:split".into(),
        expiry: None,
        part,
        more,
        field_expiry: Vec::new(),
        void: false,
        value: Value::List(items.iter().map(|s| Bytes::from(*s)).collect()),
    };
    vec![
        record(
            "user:1",
            Value::Hash(vec![
                ("name".into(), "Ann".into()),
                ("plan".into(), "pro".into()),
            ]),
        ),
        record("bin:key", Value::String(bin.clone())),
        Record {
            key: bin.clone(),
            ..record("", Value::Set(vec!["a".into(), bin.clone(), "".into()]))
        },
        record(
            "rank",
            Value::Zset(vec![
                ("bottom".into(), Score(f64::NEG_INFINITY)),
                ("mid".into(), Score(0.1)),
                ("top".into(), Score(f64::INFINITY)),
            ]),
        ),
        record(
            "events",
            Value::Stream(StreamChunk {
                meta: Some(StreamMeta {
                    last_id: StreamId { ms: 5, seq: 0 },
                    entries_added: Some(3),
                    max_deleted_id: Some(StreamId { ms: 1, seq: 2 }),
                    groups: vec![ConsumerGroup {
                        name: "readers".into(),
                        last_delivered_id: StreamId { ms: 1, seq: 1 },
                        entries_read: Some(1),
                        consumers: Vec::new(),
                    }],
                }),
                entries: vec![
                    StreamEntry {
                        id: StreamId { ms: 1, seq: 1 },
                        fields: vec![("f".into(), "v".into())],
                    },
                    StreamEntry {
                        id: StreamId { ms: 5, seq: 0 },
                        fields: vec![("a".into(), bin.clone())],
                    },
                ],
                pending: Vec::new(),
            }),
        ),
        record("empty", Value::String("".into())),
        ttl,
        expired,
        split(0, true, &["a", "b"]),
        split(1, false, &["c"]),
    ]
}

/// What schema 2 added: a hash whose fields have their own expiry (one in
/// 2100, one in 2001), a list voided half way (it changed while exported)
/// and then written whole, a set voided and not written again (it was
/// deleted), a stream whose group has consumers and pending entries (one
/// delivered 3 times), and a plain string.
fn schema2_records() -> Vec<Record> {
    let mut fields = record(
        "session:fields",
        Value::Hash(vec![
            ("name".into(), "Ann".into()),
            ("token".into(), "t-1".into()),
            ("old".into(), "t-0".into()),
        ]),
    );
    fields.field_expiry = vec![
        FieldExpiry {
            field: "token".into(),
            at_ms: FAR_FUTURE_MS,
            ttl_ms: 3_600_000,
        },
        FieldExpiry {
            field: "old".into(),
            at_ms: PAST_MS,
            ttl_ms: 1_000,
        },
    ];
    let list = |items: &[&str]| Value::List(items.iter().map(|s| Bytes::from(*s)).collect());
    vec![
        fields,
        Record {
            more: true,
            ..record("list:changing", list(&["a", "b"]))
        },
        Record {
            part: 1,
            void: true,
            ..record("list:changing", list(&[]))
        },
        record("list:changing", list(&["a", "b", "c"])),
        Record {
            more: true,
            ..record("set:gone", Value::Set(vec!["x".into()]))
        },
        Record {
            part: 1,
            void: true,
            ..record("set:gone", Value::Set(vec![]))
        },
        record(
            "jobs",
            Value::Stream(StreamChunk {
                meta: Some(StreamMeta {
                    last_id: StreamId { ms: 3, seq: 0 },
                    entries_added: Some(3),
                    max_deleted_id: Some(StreamId { ms: 0, seq: 0 }),
                    groups: vec![ConsumerGroup {
                        name: "workers".into(),
                        last_delivered_id: StreamId { ms: 2, seq: 0 },
                        entries_read: Some(2),
                        consumers: vec!["w1".into(), "w2".into(), "idle".into()],
                    }],
                }),
                entries: (1..=3)
                    .map(|ms| StreamEntry {
                        id: StreamId { ms, seq: 0 },
                        fields: vec![("job".into(), format!("j{ms}").as_str().into())],
                    })
                    .collect(),
                pending: vec![GroupPending {
                    group: "workers".into(),
                    entries: vec![
                        PendingEntry {
                            id: StreamId { ms: 1, seq: 0 },
                            consumer: "w1".into(),
                            delivery_count: 3,
                            delivered_at_ms: PAST_MS,
                        },
                        PendingEntry {
                            id: StreamId { ms: 2, seq: 0 },
                            consumer: "w2".into(),
                            delivery_count: 1,
                            delivered_at_ms: PAST_MS + 1,
                        },
                    ],
                }],
            }),
        ),
        record("plain", Value::String("v".into())),
    ]
}

fn write_archive(path: &Path, header: Header, encryption: Option<&Encryption>) {
    write_records(path, header, encryption, records());
}

fn write_records(
    path: &Path,
    header: Header,
    encryption: Option<&Encryption>,
    records: Vec<Record>,
) {
    let mut writer = ArchiveWriter::create(
        Destination::File(path.to_path_buf()),
        header,
        WriterOptions {
            zstd_level: 3,
            zstd_workers: 0,
        },
        encryption,
    )
    .unwrap();
    for r in records {
        writer.write_record(&r).unwrap();
    }
    writer
        .finish("2026-11-21T12:00:01Z".parse().unwrap(), 0)
        .unwrap();
}

/// One tar entry of a repacked archive.
struct Entry {
    name: String,
    data: Vec<u8>,
    /// Set for a symlink entry.
    link: Option<String>,
}

/// Unpack the valid archive's entries, let `edit` change them, pack them
/// again as well-formed tar+zstd. Names are written as raw bytes, so even
/// `..` paths (which tar libraries refuse to create) can be made.
fn repack(valid: &Path, out: &Path, edit: impl FnOnce(&mut Vec<Entry>)) {
    let file = std::fs::File::open(valid).unwrap();
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.push(Entry {
            name,
            data,
            link: None,
        });
    }
    edit(&mut entries);
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    let mut builder = tar::Builder::new(encoder);
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_mode(0o600);
        h.set_mtime(1_795_262_400);
        match &e.link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.as_ustar_mut().unwrap().linkname[..target.len()]
                    .copy_from_slice(target.as_bytes());
            }
            None => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(e.data.len() as u64);
            }
        }
        h.set_cksum();
        builder.append(&h, &e.data[..]).unwrap();
    }
    // Closed as the writer closes a stream, so each vector has only the
    // defect it is made for.
    let mut bytes = builder.into_inner().unwrap().finish().unwrap();
    let sum: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&closing_frame(sum));
    std::fs::write(out, bytes).unwrap();
}

fn entry<'a>(entries: &'a mut [Entry], name: &str) -> &'a mut Entry {
    entries.iter_mut().find(|e| e.name == name).unwrap()
}

/// Make the manifest's entry list agree with the data entries again, so a
/// vector shows only the one problem it is about.
fn fix_manifest(entries: &mut [Entry]) {
    let mut m: Manifest = serde_json::from_slice(&entry(entries, "manifest.json").data).unwrap();
    for info in &mut m.entries {
        let data = &entries.iter().find(|e| e.name == info.name).unwrap().data;
        info.size = data.len() as u64;
        info.records = data.iter().filter(|&&b| b == b'\n').count() as u64;
        info.sha256 = hex::encode(Sha256::digest(data));
    }
    entry(entries, "manifest.json").data = serde_json::to_vec_pretty(&m).unwrap();
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures".into()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = dir.join("valid.tar.zst");
    write_archive(&valid, header(SCHEMA_1), None);
    write_records(
        &dir.join("schema2.tar.zst"),
        header(SCHEMA_VERSION),
        None,
        schema2_records(),
    );

    let bytes = std::fs::read(&valid).unwrap();
    // One byte flipped in the middle of the compressed data.
    let mut corrupt = bytes.clone();
    let at = corrupt.len() / 2;
    corrupt[at] ^= 0x01;
    std::fs::write(dir.join("corrupt.tar.zst"), &corrupt).unwrap();
    // Cut off: the last third is missing, manifest included.
    std::fs::write(dir.join("truncated.tar.zst"), &bytes[..bytes.len() * 2 / 3]).unwrap();

    write_archive(
        &dir.join("future-schema.tar.zst"),
        header(SCHEMA_VERSION + 1),
        None,
    );

    // The same records as exported from a Redis Cluster of three primaries.
    let mut sharded = header(SCHEMA_1);
    sharded.source.cluster = Some(ClusterSource {
        nodes: 3,
        slots: 16384,
    });
    write_archive(&dir.join("from-cluster.tar.zst"), sharded, None);

    // Encrypted vectors: to the committed test key, and to a passphrase.
    // age output is randomised, so these change whenever they are remade.
    let key_path = dir.join("age-key.txt");
    if !key_path.exists() {
        let key = age::x25519::Identity::generate();
        std::fs::write(
            &key_path,
            format!(
                "# test key for fixtures/*.age; not a secret\n# public key: {}\n{}\n",
                key.to_public(),
                key.to_string().expose_secret()
            ),
        )
        .unwrap();
    }
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    let public = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let to_key = Encryption::to_recipients(&[public], &[], false).unwrap();
    write_archive(
        &dir.join("encrypted.tar.zst.age"),
        header(SCHEMA_1),
        Some(&to_key),
    );
    let to_passphrase =
        Encryption::to_passphrase(SecretString::from("fixture passphrase".to_string()), true);
    write_archive(
        &dir.join("encrypted-passphrase.tar.zst.age"),
        header(SCHEMA_1),
        Some(&to_passphrase),
    );
    let encrypted = std::fs::read(dir.join("encrypted.tar.zst.age")).unwrap();
    std::fs::write(
        dir.join("encrypted-truncated.tar.zst.age"),
        &encrypted[..encrypted.len() - 100],
    )
    .unwrap();

    // Valid tar and zstd, but a record was edited after the manifest was
    // written: only the sha256 check can tell.
    repack(&valid, &dir.join("tampered.tar.zst"), |entries| {
        let data = &mut entry(entries, "data/000000.jsonl").data;
        *data = String::from_utf8(data.clone())
            .unwrap()
            .replace("\"pro\"", "\"max\"")
            .into_bytes();
    });
    // The manifest is sane JSON but its counts are wrong.
    repack(&valid, &dir.join("bad-counts.tar.zst"), |entries| {
        let manifest = &mut entry(entries, "manifest.json").data;
        let mut m: Manifest = serde_json::from_slice(manifest).unwrap();
        m.counts.keys += 1;
        *manifest = serde_json::to_vec_pretty(&m).unwrap();
    });
    // One byte flipped inside the data entry ("Ann" -> "Bnn").
    repack(&valid, &dir.join("flipped-data.tar.zst"), |entries| {
        let data = &mut entry(entries, "data/000000.jsonl").data;
        let at = data.windows(3).position(|w| w == b"Ann").unwrap();
        data[at] = b'B';
    });
    // One byte flipped inside the manifest (a hex digit of the sha256).
    repack(&valid, &dir.join("flipped-manifest.tar.zst"), |entries| {
        let manifest = &mut entry(entries, "manifest.json").data;
        let at = manifest
            .windows(9)
            .position(|w| w == b"\"sha256\":")
            .unwrap()
            + 12;
        manifest[at] = if manifest[at] == b'0' { b'1' } else { b'0' };
    });
    // An entry the manifest does not list, before manifest.json.
    repack(&valid, &dir.join("extra-entry.tar.zst"), |entries| {
        let at = entries.len() - 1;
        entries.insert(
            at,
            Entry {
                name: "notes.txt".into(),
                data: b"hello\n".to_vec(),
                link: None,
            },
        );
    });
    // A symbolic link, and a path that climbs out of the extraction directory.
    repack(&valid, &dir.join("link-entry.tar.zst"), |entries| {
        let at = entries.len() - 1;
        entries.insert(
            at,
            Entry {
                name: "data/000001.jsonl".into(),
                data: vec![],
                link: Some("/etc/passwd".into()),
            },
        );
    });
    repack(&valid, &dir.join("traversal-entry.tar.zst"), |entries| {
        let at = entries.len() - 1;
        entries.insert(
            at,
            Entry {
                name: "../../tmp/evil.jsonl".into(),
                data: b"{}\n".to_vec(),
                link: None,
            },
        );
    });
    // The data entry is gone; the manifest still lists it.
    repack(&valid, &dir.join("missing-entry.tar.zst"), |entries| {
        entries.retain(|e| e.name != "data/000000.jsonl");
    });
    // The second record has the wrong shape (a hash field without a value);
    // the manifest's checksums are made to match, so only the record is wrong.
    repack(&valid, &dir.join("bad-record.tar.zst"), |entries| {
        let data = &mut entry(entries, "data/000000.jsonl").data;
        let text = String::from_utf8(data.clone()).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1] = r#"{"key":"bin:key","value":{"hash":[["field-without-value"]]}}"#.into();
        *data = (lines.join("\n") + "\n").into_bytes();
        fix_manifest(entries);
    });
    std::fs::write(dir.join("not-an-archive.txt"), b"this is not an archive\n").unwrap();
    println!("fixtures written to {}", dir.display());
}
