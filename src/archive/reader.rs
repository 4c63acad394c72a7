//! file -> zstd -> tar -> verified records.
//!
//! The reader streams: it never writes an entry to the filesystem and holds
//! at most one record line at a time. It checks as it goes that the entries
//! are exactly `header.json`, `data/000000.jsonl`, ..., `manifest.json`, in
//! that order, regular files, with sane sizes; that records parse and that
//! a key split over several records is contiguous; and at the end that
//! every entry's size, record count and sha256 and the counts per type match
//! the manifest, and that the zstd stream ends cleanly (frame checksum).
//!
//! Records are handed out before the end is verified, so a caller that must
//! not act on unverified data (restore) reads the archive twice: once to
//! verify, once to act.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::encryption::{Decryption, is_age};
use super::manifest::{
    Counts, EntryInfo, FORMAT_NAME, HEADER_ENTRY, Header, MANIFEST_ENTRY, Manifest,
    OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, data_entry_name,
};
use crate::error::{Error, Result};
use crate::record::{KeyType, Record};

/// A record line longer than this is refused, so a hostile file cannot make
/// the reader buffer without end. The writer keeps records near 8 MiB; only
/// a single element bigger than that makes a bigger record, and Redis caps
/// an element at 512 MB (proto-max-bulk-len), which JSON or base64 makes at
/// most 1 GiB.
pub const MAX_RECORD_BYTES: usize = 1 << 30;
/// Entries larger than this are refused: the writer closes an entry at
/// 4 MiB, so only one huge record can make an entry this big.
pub const MAX_ENTRY_BYTES: u64 = (MAX_RECORD_BYTES as u64) + (8 << 20);
/// `header.json` and `manifest.json` are small; bound them too.
pub const MAX_META_BYTES: u64 = 64 << 20;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// An archive to read: a file, or standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSource {
    File(PathBuf),
    Stdin,
    /// Standard input, already copied to this private file; named `<stdin>`
    /// in messages, since that is what the user gave.
    Spooled(PathBuf),
}

impl ArchiveSource {
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            ArchiveSource::Stdin
        } else {
            ArchiveSource::File(PathBuf::from(arg))
        }
    }

    pub fn display(&self) -> String {
        match self {
            ArchiveSource::File(p) => p.display().to_string(),
            ArchiveSource::Stdin | ArchiveSource::Spooled(_) => "<stdin>".into(),
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            ArchiveSource::File(path) | ArchiveSource::Spooled(path) => Ok(Box::new(
                File::open(path).map_err(|e| Error::input(path, e))?,
            )),
            ArchiveSource::Stdin => Ok(Box::new(io::stdin())),
        }
    }
}

/// Where a record sits, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub entry: String,
    /// 1-based line number inside the entry.
    pub record: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record {}", self.entry, self.record)
    }
}

/// What a read calls back with, in archive order.
pub trait Visitor {
    fn header(&mut self, _header: &Header) -> Result<()> {
        Ok(())
    }
    fn record(&mut self, record: Record, location: &Location) -> Result<()>;
}

/// A visitor that only wants the header and the verified manifest.
#[derive(Debug, Default)]
pub struct Discard;

impl Visitor for Discard {
    fn record(&mut self, _record: Record, _location: &Location) -> Result<()> {
        Ok(())
    }
}

/// A verified archive: its manifest, and whether it was encrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    #[serde(flatten)]
    pub manifest: Manifest,
    pub encrypted: bool,
}

/// Read and verify the whole archive, calling `visitor` for the header and
/// every record; returns the manifest once everything has checked out. An
/// age-encrypted archive is decrypted with `decryption`.
pub fn read_archive(
    source: &ArchiveSource,
    decryption: &Decryption,
    visitor: &mut dyn Visitor,
) -> Result<Verified> {
    let name = source.display();
    let mut input = BufReader::with_capacity(1 << 16, source.open()?);
    let head = input.fill_buf().map_err(|e| Error::input(&name, e))?;
    if is_age(head) {
        let plain = BufReader::with_capacity(1 << 16, decryption.open(&name, input)?);
        let manifest = read_plain(&name, plain, true, visitor)?;
        return Ok(Verified {
            manifest,
            encrypted: true,
        });
    }
    let manifest = read_plain(&name, input, false, visitor)?;
    Ok(Verified {
        manifest,
        encrypted: false,
    })
}

fn read_plain<R: BufRead>(
    name: &str,
    mut input: R,
    decrypted: bool,
    visitor: &mut dyn Visitor,
) -> Result<Manifest> {
    let head = input.fill_buf().map_err(|e| classify_io(name, e))?;
    if !head.starts_with(&ZSTD_MAGIC) {
        return Err(not_zstd(name, head, decrypted));
    }
    let mut decoder = zstd::Decoder::with_buffer(input).map_err(|e| classify_io(name, e))?;
    run(name, &mut decoder, visitor)
}

/// Say clearly what a file is when it is not a zstd archive, instead of a
/// decoder error.
fn not_zstd(name: &str, head: &[u8], decrypted: bool) -> Error {
    let reason = if decrypted {
        "it decrypts, but what it holds is not a zstd-compressed archive"
    } else if head.is_empty() {
        "the file is empty"
    } else if head.len() > 262 && &head[257..262] == b"ustar" {
        "it is an uncompressed tar; archives are zstd-compressed"
    } else {
        "it does not start with the zstd magic bytes"
    };
    Error::NotAnArchive {
        path: name.to_string(),
        reason: reason.into(),
    }
}

/// Map an I/O error inside the zstd/tar stream to truncated or corrupt.
fn classify_io(name: &str, err: io::Error) -> Error {
    let text = err.to_string();
    let truncated = err.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("incomplete frame")
        || text.contains("unexpected end");
    if truncated {
        Error::Truncated {
            path: name.to_string(),
            reason: format!("the file ends early ({text})"),
        }
    } else {
        Error::Corrupt {
            path: name.to_string(),
            reason: format!("the data is damaged ({text})"),
        }
    }
}

/// Hashes and counts every byte read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A data entry as it was actually read.
#[derive(Debug)]
struct SeenEntry {
    name: String,
    size: u64,
    records: u64,
    sha256: String,
}

/// The key a split record continues, to check contiguity.
#[derive(Debug)]
struct OpenKey {
    key: Vec<u8>,
    key_type: KeyType,
    next_part: u32,
}

fn run(name: &str, decoder: &mut impl Read, visitor: &mut dyn Visitor) -> Result<Manifest> {
    let name = name.to_string();
    let io_err = |e: io::Error| classify_io(&name, e);
    let corrupt = |reason: String| Error::Corrupt {
        path: name.clone(),
        reason,
    };
    let mut header: Option<Header> = None;
    let mut manifest: Option<Manifest> = None;
    let mut seen: Vec<SeenEntry> = Vec::new();
    let mut counts = Counts::default();
    let mut open_key: Option<OpenKey> = None;
    let mut line = Vec::new();

    let mut archive = tar::Archive::new(&mut *decoder);
    let entries = archive.entries().map_err(io_err)?;
    for (index, entry) in entries.enumerate() {
        let entry = entry.map_err(io_err)?;
        let path_bytes = entry.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&path_bytes).into_owned();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(corrupt(format!(
                "entry {path:?} is a {kind:?}, not a regular file; archives hold only regular files"
            )));
        }
        let size = entry.header().size().map_err(io_err)?;
        if manifest.is_some() {
            return Err(corrupt(format!("entry {path:?} follows manifest.json")));
        }
        if index == 0 {
            if path != HEADER_ENTRY {
                return Err(Error::NotAnArchive {
                    path: name.clone(),
                    reason: format!("its first entry is {path:?}, not {HEADER_ENTRY}"),
                });
            }
            let bytes = read_small(entry, size, &path).map_err(|e| self_err(&name, e))?;
            let h = parse_header(&name, &bytes)?;
            visitor.header(&h)?;
            header = Some(h);
            continue;
        }
        if path == MANIFEST_ENTRY {
            let bytes = read_small(entry, size, &path).map_err(|e| self_err(&name, e))?;
            manifest = Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("manifest.json does not parse: {e}")))?,
            );
            continue;
        }
        let expected = data_entry_name(seen.len());
        if path != expected {
            return Err(corrupt(format!(
                "unexpected entry {path:?} where {expected} should be (an archive holds only header.json, data/NNNNNN.jsonl in order, manifest.json)"
            )));
        }
        if size > MAX_ENTRY_BYTES {
            return Err(corrupt(format!(
                "entry {path} is {size} bytes, over the limit of {MAX_ENTRY_BYTES}"
            )));
        }
        let mut hashing = BufReader::with_capacity(
            1 << 16,
            Hashing {
                inner: entry,
                hasher: Sha256::new(),
                bytes: 0,
            },
        );
        let mut records = 0u64;
        loop {
            line.clear();
            let n = read_line(&mut hashing, &mut line).map_err(io_err)?;
            if n == 0 {
                break;
            }
            records += 1;
            let location = Location {
                entry: path.clone(),
                record: records,
            };
            if line.last() != Some(&b'\n') {
                return Err(corrupt(format!(
                    "{location}: the record does not end with a newline (or is longer than {MAX_RECORD_BYTES} bytes)"
                )));
            }
            let record = Record::decode(&line[..line.len() - 1])
                .map_err(|e| corrupt(format!("{location}: record does not parse: {e}")))?;
            check_continuity(&mut open_key, &record)
                .map_err(|e| corrupt(format!("{location}: {e}")))?;
            counts.add(record.key_type(), record.part == 0);
            visitor.record(record, &location)?;
        }
        let hashing = hashing.into_inner();
        seen.push(SeenEntry {
            name: path,
            size: hashing.bytes,
            records,
            sha256: hex::encode(hashing.hasher.finalize()),
        });
    }
    // The tar end marker may come before the end of the zstd stream;
    // read to the end so a damaged or cut-off last frame is caught.
    io::copy(decoder, &mut io::sink()).map_err(io_err)?;

    let Some(header) = header else {
        return Err(Error::NotAnArchive {
            path: name.clone(),
            reason: "it holds no entries".into(),
        });
    };
    let Some(manifest) = manifest else {
        return Err(Error::Truncated {
            path: name.clone(),
            reason: format!(
                "it ends after {} data entries without manifest.json",
                seen.len()
            ),
        });
    };
    if open_key.is_some() {
        return Err(corrupt(
            "the last key is split and its final record is missing".into(),
        ));
    }
    verify_manifest(&name, &header, &manifest, &seen, &counts)?;
    Ok(manifest)
}

fn self_err(name: &str, err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::InvalidData {
        Error::Corrupt {
            path: name.to_string(),
            reason: err.to_string(),
        }
    } else {
        classify_io(name, err)
    }
}

/// Read a metadata entry whole, refusing absurd sizes before allocating.
fn read_small(entry: impl Read, size: u64, path: &str) -> io::Result<Vec<u8>> {
    if size > MAX_META_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("entry {path} is {size} bytes, over the limit of {MAX_META_BYTES}"),
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(size).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("entry {path} ends early"),
        ));
    }
    Ok(bytes)
}

/// Read up to and including the next newline, at most MAX_RECORD_BYTES.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_RECORD_BYTES + 1 - line.len();
        let take = take.min(room);
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        total += take;
        if done || line.len() > MAX_RECORD_BYTES {
            return Ok(total);
        }
    }
}

fn parse_header(name: &str, bytes: &[u8]) -> Result<Header> {
    let not = |reason: String| Error::NotAnArchive {
        path: name.to_string(),
        reason,
    };
    // Look at format and version before the strict parse: a newer version
    // may have fields this program does not know.
    let loose: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| not(format!("header.json does not parse: {e}")))?;
    if loose.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not(format!(
            "header.json does not say format {FORMAT_NAME:?}"
        )));
    }
    let Some(version) = loose.get("schema_version").and_then(|v| v.as_u64()) else {
        return Err(not("header.json has no integer schema_version".into()));
    };
    if version > SCHEMA_VERSION {
        return Err(Error::UnsupportedSchema {
            path: name.to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < OLDEST_SCHEMA_VERSION {
        return Err(not(format!(
            "schema_version {version} is older than any this program reads"
        )));
    }
    serde_json::from_value(loose).map_err(|e| Error::Corrupt {
        path: name.to_string(),
        reason: format!("header.json is malformed: {e}"),
    })
}

fn check_continuity(
    open: &mut Option<OpenKey>,
    record: &Record,
) -> std::result::Result<(), String> {
    match open.take() {
        Some(o)
            if o.key != record.key.0
                || o.key_type != record.key_type()
                || o.next_part != record.part =>
        {
            return Err(format!(
                "expected part {} of a split {} key, found part {} of another record",
                o.next_part, o.key_type, record.part
            ));
        }
        Some(_) => {}
        None if record.part != 0 => {
            return Err(format!(
                "part {} of a key whose first part is missing",
                record.part
            ));
        }
        None => {}
    }
    if record.more {
        *open = Some(OpenKey {
            key: record.key.0.clone(),
            key_type: record.key_type(),
            next_part: record
                .part
                .checked_add(1)
                .ok_or_else(|| "too many parts".to_string())?,
        });
    }
    Ok(())
}

fn verify_manifest(
    name: &str,
    header: &Header,
    manifest: &Manifest,
    seen: &[SeenEntry],
    counts: &Counts,
) -> Result<()> {
    let corrupt = |reason: String| Error::Corrupt {
        path: name.to_string(),
        reason,
    };
    if manifest.header.schema_version != header.schema_version
        || manifest.header.format != header.format
    {
        return Err(corrupt(
            "manifest.json and header.json disagree on format or schema_version".into(),
        ));
    }
    if manifest.entries.len() != seen.len() {
        return Err(corrupt(format!(
            "manifest lists {} data entries, the archive has {}",
            manifest.entries.len(),
            seen.len()
        )));
    }
    for (want, got) in manifest.entries.iter().zip(seen) {
        let EntryInfo {
            name: wname,
            size,
            records,
            sha256,
        } = want;
        if wname != &got.name {
            return Err(corrupt(format!(
                "manifest lists {wname}, the archive has {}",
                got.name
            )));
        }
        if *size != got.size {
            return Err(corrupt(format!(
                "{wname} is {} bytes, the manifest says {size}",
                got.size
            )));
        }
        if *records != got.records {
            return Err(corrupt(format!(
                "{wname} holds {} records, the manifest says {records}",
                got.records
            )));
        }
        if !sha256.eq_ignore_ascii_case(&got.sha256) {
            return Err(corrupt(format!(
                "{wname} sha256 mismatch: the data was altered"
            )));
        }
    }
    let mut expected = manifest.counts.clone();
    expected.vanished = 0;
    if &expected != counts {
        return Err(corrupt(format!(
            "counts differ from the manifest: it says {} keys in {} records, the data has {} keys in {} records",
            manifest.counts.keys, manifest.counts.records, counts.keys, counts.records
        )));
    }
    Ok(())
}

/// Read just what `inspect` shows: the verified manifest.
pub fn read_manifest(source: &ArchiveSource, decryption: &Decryption) -> Result<Verified> {
    read_archive(source, decryption, &mut Discard)
}
