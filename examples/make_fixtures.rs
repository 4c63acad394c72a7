//! Writes the test vectors in fixtures/ (see fixtures/README.md).
//!
//! `cargo run --example make_fixtures -- fixtures` rewrites them. They are
//! checked in: the tests read the committed files, so a change to the
//! writer cannot silently change what the reader is tested against.

use std::io::Write;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use redis_archive::archive::manifest::{
    ArchiveKind, Header, Manifest, Program, SCHEMA_VERSION, Source,
};
use redis_archive::archive::{ArchiveWriter, Destination, Encryption, WriterOptions};
use redis_archive::connection::{Address, ServerInfo};
use redis_archive::keyspace::Selection;
use redis_archive::record::{
    Bytes, ConsumerGroup, Expiry, Record, Score, StreamChunk, StreamEntry, StreamId, StreamMeta,
    Value,
};

/// 2100-01-01T00:00:00Z: far enough that `--ttl absolute` keeps the key.
const FAR_FUTURE_MS: i64 = 4_102_444_800_000;
/// 2001-01-01T00:00:00Z: already past, so `--ttl absolute` skips the key.
const PAST_MS: i64 = 978_307_200_000;

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
        },
        Selection::default(),
    );
    // Pinned, so regenerated fixtures do not change with the crate version.
    header.program = Program {
        name: "archive".into(),
        version: "0.1.0".into(),
    };
    header.schema_version = schema_version;
    header
}

fn record(key: &str, value: Value) -> Record {
    Record {
        key: key.into(),
        expiry: None,
        part: 0,
        more: false,
        value,
    }
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
            }),
        ),
        record("empty", Value::String("".into())),
        ttl,
        expired,
        split(0, true, &["a", "b"]),
        split(1, false, &["c"]),
    ]
}

fn write_archive(path: &Path, header: Header, encryption: Option<&Encryption>) {
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
    for r in records() {
        writer.write_record(&r).unwrap();
    }
    writer
        .finish("2026-11-21T12:00:01Z".parse().unwrap(), 0)
        .unwrap();
}

/// Unpack the valid archive's entries, let `edit` change them, pack again
/// (a well-formed tar+zstd whose content no longer matches its manifest).
fn repack(valid: &Path, out: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let file = std::fs::File::open(valid).unwrap();
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.push((name.clone(), edit(&name, data)));
    }
    let mut encoder = zstd::Encoder::new(std::fs::File::create(out).unwrap(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    let mut builder = tar::Builder::new(encoder);
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1_795_262_400);
        builder.append_data(&mut h, &name, &data[..]).unwrap();
    }
    builder
        .into_inner()
        .unwrap()
        .finish()
        .unwrap()
        .flush()
        .unwrap();
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures".into()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = dir.join("valid.tar.zst");
    write_archive(&valid, header(SCHEMA_VERSION), None);

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
        header(SCHEMA_VERSION),
        Some(&to_key),
    );
    let to_passphrase =
        Encryption::to_passphrase(SecretString::from("fixture passphrase".to_string()), true);
    write_archive(
        &dir.join("encrypted-passphrase.tar.zst.age"),
        header(SCHEMA_VERSION),
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
    repack(&valid, &dir.join("tampered.tar.zst"), |name, data| {
        if name.starts_with("data/") {
            String::from_utf8(data)
                .unwrap()
                .replace("\"pro\"", "\"max\"")
                .into_bytes()
        } else {
            data
        }
    });
    // The manifest is sane JSON but its counts are wrong.
    repack(&valid, &dir.join("bad-counts.tar.zst"), |name, data| {
        if name == "manifest.json" {
            let mut m: Manifest = serde_json::from_slice(&data).unwrap();
            m.counts.keys += 1;
            serde_json::to_vec_pretty(&m).unwrap()
        } else {
            data
        }
    });
    std::fs::write(dir.join("not-an-archive.txt"), b"this is not an archive\n").unwrap();
    println!("fixtures written to {}", dir.display());
}
