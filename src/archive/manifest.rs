//! What an archive says about itself.
//!
//! An archive opens with `header.json` (format, schema_version, source,
//! selection) so a reader can refuse a format it does not know before it
//! reads any data, and closes with `manifest.json`, which repeats the header
//! and adds what is only known at the end: counts and, for every data entry,
//! its size, record count and sha256. A writer that never reaches the end
//! never writes a manifest, so an archive without one is truncated.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{KeyType, Record};

/// The `format` every header carries, so a reader can tell an archive from
/// another tar file.
pub const FORMAT_NAME: &str = "redis-archive";
/// The record layout and manifest version this program writes.
pub const SCHEMA_VERSION: u64 = 2;
/// The oldest schema_version this program still reads.
pub const OLDEST_SCHEMA_VERSION: u64 = 1;

/// Name of the first tar entry, the header.
pub const HEADER_ENTRY: &str = "header.json";

/// The closing checksum frame: a zstd skippable frame (magic
/// 0x184D2A5A, 40 bytes of content: a tag and the sha256 of the compressed
/// stream before it).
pub const CLOSING_MAGIC: u32 = 0x184D_2A5A;
/// Tag at the start of the closing frame's content.
pub const CLOSING_TAG: &[u8; 8] = b"ARCHSUM1";
/// Size of the closing frame in bytes: 8 bytes of frame header, the tag and
/// the sha256.
pub const CLOSING_FRAME_BYTES: usize = 48;

/// The frame that closes the compressed stream: a zstd skippable frame
/// (which `zstd -d` passes over) holding the sha256 of every compressed
/// byte before it, so that a reader notices any change to the file, even
/// one that decompresses to the same data.
pub fn closing_frame(sha256: [u8; 32]) -> [u8; CLOSING_FRAME_BYTES] {
    let mut frame = [0u8; CLOSING_FRAME_BYTES];
    frame[..4].copy_from_slice(&CLOSING_MAGIC.to_le_bytes());
    frame[4..8].copy_from_slice(&((CLOSING_FRAME_BYTES - 8) as u32).to_le_bytes());
    frame[8..16].copy_from_slice(CLOSING_TAG);
    frame[16..].copy_from_slice(&sha256);
    frame
}
/// Name of the last tar entry, the manifest.
pub const MANIFEST_ENTRY: &str = "manifest.json";

/// Name of the `index`-th data entry.
pub fn data_entry_name(index: usize) -> String {
    format!("data/{index:06}.jsonl")
}

/// Why an archive was written; backup folders and `prune --kind` tell them
/// apart by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveKind {
    /// Written by `archive export` (or the library's `export`).
    Export,
    /// Written into a backup folder by `archive backup`.
    Backup,
    /// The state a restore (or copy) was about to change, for rollback.
    PreRestore,
}

/// What a pre-restore archive was taken for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreLink {
    /// The archive restored (its path as given; `<stdin>`), or the copy's source.
    pub archive: String,
    /// The restored archive's id, when it had one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive_id: String,
    /// The mode the restore ran with.
    pub mode: String,
}

/// A new archive id: 16 hex digits from the clock, the process and the
/// system's random source; unique enough to tell archives apart in a folder.
pub fn new_archive_id() -> String {
    use std::io::Read;
    let mut seed = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    let mut h = Sha256::new();
    h.update(seed);
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    hex::encode(&h.finalize()[..8])
}

/// The program that wrote an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Always `archive`.
    pub name: String,
    /// The crate version that wrote it.
    pub version: String,
}

impl Program {
    /// This program, at this version.
    pub fn current() -> Self {
        Program {
            name: "archive".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Who wrote an archive, where, and with which command: an audit trail
/// that travels with the archive. The tool version is [`Program`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// The operating-system user (`USER`, else `LOGNAME`, else the uid).
    pub user: String,
    /// The machine's host name.
    pub host: String,
    /// The command line, secrets removed (see [`crate::redact::redact_args`]).
    pub command: String,
}

impl Operator {
    /// The user, host and command line of this process. The program is
    /// named by its file name: where it was installed says nothing about
    /// who ran it, and a path can name a home directory.
    pub fn current() -> Self {
        let mut args: Vec<String> = std::env::args().collect();
        if let Some(program) = args.first_mut()
            && let Some(name) = std::path::Path::new(program.as_str()).file_name()
        {
            *program = name.to_string_lossy().into_owned();
        }
        Operator {
            user: current_user(),
            host: host_name(),
            command: crate::redact::join_args(&crate::redact::redact_args(args)),
        }
    }
}

fn current_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .or_else(|| {
            // No login variables (cron, containers): the owner of this
            // process's own /proc entry, by its name in /etc/passwd as
            // `id -un` would say, else by number.
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let name = passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid).then(|| name.to_string())
            });
            Some(name.unwrap_or_else(|| format!("uid {uid}")))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Where the data came from; no credentials, ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Host, port, database and whether TLS was used.
    #[serde(flatten)]
    pub address: Address,
    /// The server's flavor and version.
    pub server: ServerInfo,
    /// Set when the data came from (or, in a pre-restore backup, went to)
    /// a Redis Cluster; `address` is then the node connected to first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSource>,
}

/// The cluster an archive's data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSource {
    /// Primaries that served slots.
    pub nodes: usize,
    /// Slots they served (16384 in a whole cluster).
    pub slots: usize,
}

/// The first entry of an archive: what it is, where its data came from and
/// what was selected; readable before any record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The record layout version (see [`SCHEMA_VERSION`]).
    pub schema_version: u64,
    /// Unique per archive (see [`new_archive_id`]).
    #[serde(default)]
    pub id: String,
    /// Why the archive was written.
    pub kind: ArchiveKind,
    /// The program and version that wrote it.
    pub program: Program,
    /// When the export began; keys were read at some moment after it.
    pub started_at: DateTime<Utc>,
    /// The server the data came from.
    pub source: Source,
    /// The keys that were selected.
    pub selection: Selection,
    /// For a pre-restore archive: the restore it was taken for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreLink>,
    /// A backup's name (`archive backup --name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form labels given at backup (`--tag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// For an archive exported through a profile: whose records, which
    /// groups, and their data schema_version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileScope>,
    /// The compressed stream ends with the closing checksum frame, and a
    /// reader must find it (archives written before it existed lack it).
    #[serde(default)]
    pub closing_checksum: bool,
    /// Whether the keys are one instant of the database (a snapshot) or
    /// were read one by one while it changed. Absent means `live`.
    #[serde(default, skip_serializing_if = "Consistency::is_live")]
    pub consistency: Consistency,
    /// For a snapshot: where its instant comes from, per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSource>,
    /// Who wrote the archive, on which host, with which command. Absent in
    /// archives written before it was recorded; readers that do not know
    /// it pass over it, so it needs no new schema_version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// For an archive exported with `--redact`: how the values of the
    /// profile's sensitive fields were replaced, and which fields. Never
    /// the key. Absent in archives that are not redacted (and in those
    /// written before it was recorded); readers that do not know it pass
    /// over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
}

/// How an archive's sensitive values were replaced at export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// A fixed mask, or a keyed hash of each value.
    pub method: RedactionMethod,
    /// The sensitive fields, per profile group (groups that declare none
    /// are left out).
    pub fields: BTreeMap<String, Vec<String>>,
}

/// What replaced a sensitive value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RedactionMethod {
    /// Every value became the same mask text.
    Mask,
    /// Every value became `hmac-sha256:` and the hex HMAC-SHA-256 of the
    /// value under the export's key: equal values stay equal.
    HmacSha256,
}

impl RedactionMethod {
    /// The name the header and reports use.
    pub fn name(self) -> &'static str {
        match self {
            RedactionMethod::Mask => "mask",
            RedactionMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

/// How the keys of an archive relate in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Consistency {
    /// Read key by key (SCAN) while the database could change: each key
    /// is one version of itself, two keys may be of different moments.
    #[default]
    Live,
    /// One instant of the database: the server's own snapshot (taken as a
    /// replica) or an RDB file.
    Snapshot,
}

impl Consistency {
    /// True for `live`, the default that older archives imply.
    pub fn is_live(&self) -> bool {
        *self == Consistency::Live
    }
}

/// Where a snapshot archive's instant comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSource {
    /// `replication` (a live server sent it to us as to a replica) or
    /// `rdb_file`.
    pub origin: SnapshotOrigin,
    /// One per RDB read: the server (one per primary of a cluster), or
    /// the file.
    pub nodes: Vec<SnapshotNode>,
}

/// How a snapshot was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SnapshotOrigin {
    /// Received from a live server over its replication protocol.
    Replication,
    /// Read from an RDB file.
    RdbFile,
}

/// One RDB an archive was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotNode {
    /// `host:port` of the server, or the file's name (`-` for stdin).
    pub node: String,
    /// The RDB format version.
    pub rdb_version: u32,
    /// The replication id of the server's history (replication only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replid: Option<String>,
    /// The replication offset the snapshot stands for: the instant, in
    /// the server's own terms (replication only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// When the server made the RDB (its `ctime` field), to the second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The server version that wrote the RDB (its `redis-ver` field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
}

impl Header {
    /// A header for an archive this program writes now.
    pub fn new(
        kind: ArchiveKind,
        started_at: DateTime<Utc>,
        source: Source,
        selection: Selection,
    ) -> Self {
        Header {
            format: FORMAT_NAME.into(),
            schema_version: SCHEMA_VERSION,
            id: new_archive_id(),
            kind,
            program: Program::current(),
            started_at,
            source,
            selection,
            restore: None,
            name: None,
            tags: Vec::new(),
            profile: None,
            closing_checksum: true,
            consistency: Consistency::Live,
            snapshot: None,
            operator: Some(Operator::current()),
            redaction: None,
        }
    }
}

/// Keys and records of one type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCount {
    /// Keys of this type in the archive.
    pub keys: u64,
    /// Records of this type (a big key spans several).
    pub records: u64,
}

/// What an archive holds, counted as it was written; a reader checks its
/// own count against it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Keys in the archive.
    pub keys: u64,
    /// Records in the archive (a big key spans several).
    pub records: u64,
    /// Keys and records per type.
    pub by_type: BTreeMap<KeyType, TypeCount>,
    /// Keys the walk found that were gone (deleted or expired) by the time
    /// they were read; not in the archive.
    #[serde(default)]
    pub vanished: u64,
    /// Keys whose parts were voided because the key changed while it was
    /// being read (a whole copy may follow); not counted in `keys`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub voided: u64,
    /// Hash fields that carry their own expiry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub field_expiries: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Counts {
    /// Count one record as it is written or read: a key at its first part,
    /// taken back out at a void last part.
    pub fn add(&mut self, record: &Record) {
        let c = self.by_type.entry(record.key_type()).or_default();
        c.records += 1;
        self.records += 1;
        if record.void {
            c.keys = c.keys.saturating_sub(1);
            self.keys = self.keys.saturating_sub(1);
            self.voided += 1;
        } else if record.part == 0 {
            c.keys += 1;
            self.keys += 1;
        }
        self.field_expiries += record.field_expiry.len() as u64;
    }
}

/// One data entry as the manifest lists it; a reader checks every entry
/// against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The tar entry name (see [`data_entry_name`]).
    pub name: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Records (lines) in the entry.
    pub records: u64,
    /// sha256 of the entry's bytes (hex).
    pub sha256: String,
}

/// The last entry of an archive: the header again, the counts and a
/// checksum per data entry. An archive is only trusted once its manifest
/// has been read and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The header, repeated so the manifest alone describes the archive.
    #[serde(flatten)]
    pub header: Header,
    /// When the last record was written.
    pub finished_at: DateTime<Utc>,
    /// What the archive holds.
    pub counts: Counts,
    /// Keys per profile group (profile exports only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, u64>,
    /// The data entries, in order.
    pub entries: Vec<EntryInfo>,
}

// Value types the header records. Their behaviour lives with the layers
// that use them (matching in `keyspace`, versions in `connection`): the
// format only stores them.

/// What to export. Empty `include` means every key; empty `types` means
/// every type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// Glob patterns of keys to take (Redis `MATCH` syntax).
    #[serde(rename = "match", default)]
    pub include: Vec<String>,
    /// Glob patterns of keys to leave out, applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Key types to take.
    #[serde(default)]
    pub types: Vec<KeyType>,
}

/// What an archive records about where its data came from: no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Host name or IP address (the socket path for a Unix socket).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database index.
    pub db: i64,
    /// Whether the connection used TLS.
    pub tls: bool,
}

/// The server an archive was read from, or a restore writes into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `redis` or `valkey`.
    pub flavor: String,
    /// The server's version, as INFO reports it.
    pub version: String,
}

/// What the manifest says about a user archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileScope {
    /// The profile's `name`.
    pub name: String,
    /// The data schema_version the records are in.
    pub schema_version: u64,
    /// The user whose records these are; absent for a whole-group export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The profile groups the archive holds.
    pub groups: Vec<String>,
    /// Keys shared by all users of which the archive holds only this user's
    /// members: restore adds those members and never replaces the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        use crate::record::Value;
        let mut counts = Counts::default();
        let hash = Record {
            more: true,
            ..Record::new("h".into(), Value::Hash(vec![]))
        };
        counts.add(&hash);
        counts.add(&Record { part: 1, ..hash });
        counts.add(&Record::new("s".into(), Value::String("v".into())));
        Manifest {
            header: Header::new(
                ArchiveKind::Export,
                "2026-11-21T10:00:00Z".parse().unwrap(),
                Source {
                    address: Address {
                        host: "127.0.0.1".into(),
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
                Selection {
                    include: vec!["user:*".into()],
                    exclude: vec![],
                    types: vec![KeyType::Hash],
                },
            ),
            finished_at: "2026-11-21T10:00:01Z".parse().unwrap(),
            counts,
            groups: BTreeMap::new(),
            entries: vec![EntryInfo {
                name: data_entry_name(0),
                size: 10,
                records: 3,
                sha256: "00".repeat(32),
            }],
        }
    }

    #[test]
    fn manifest_round_trips_and_is_flat() {
        let m = sample();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["schema_version"], 2);
        assert_eq!(json["format"], "redis-archive");
        assert_eq!(
            json["host"],
            serde_json::Value::Null,
            "address sits under source"
        );
        assert_eq!(json["source"]["port"], 6379);
        assert_eq!(json["selection"]["match"][0], "user:*");
        assert_eq!(json["counts"]["by_type"]["hash"]["records"], 2);
        assert_eq!(json["counts"]["keys"], 2);
        assert!(json["operator"]["user"].is_string());
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn headers_without_an_operator_still_read() {
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("operator");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.header.operator, None);
    }

    #[test]
    fn data_entry_names_sort_in_write_order() {
        assert_eq!(data_entry_name(7), "data/000007.jsonl");
        assert!(data_entry_name(9) < data_entry_name(10));
    }
}
