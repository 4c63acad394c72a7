//! file -> zstd -> tar -> verified records.
//!
//! The reader streams: it never writes an entry to the filesystem and holds
//! a few hundred KiB of record lines at a time (decoded on a thread of
//! their own, see `decode.rs`), or one big record. It checks as it goes that the entries
//! are exactly `header.json`, `data/000000.jsonl`, ..., `manifest.json`, in
//! that order, regular files, with sane sizes; that records parse and that
//! a key split over several records is contiguous; and at the end that
//! every entry's size, record count and sha256 and the counts per type match
//! the manifest, and that the zstd stream ends cleanly (frame checksum).
//!
//! Records are handed out before the end is verified, so a caller that must
//! not act on unverified data (restore) reads the archive twice: once to
//! verify, once to act.
//!
//! Longer than most files on purpose: the read is one state machine
//! (entries, their checksums, the manifest, the closing frame), and split
//! across files its order would be harder to follow.

mod checks;
mod decode;
mod guard;
mod problem;

use checks::*;
use decode::{Decoded, Decoder, Decoding};
pub(crate) use guard::MAX_RECORD_BYTES;
use guard::{ClosingReader, Counted, Hashing, Meter};
pub use guard::{LARGE_RECORD_BYTES, MAX_ENTRY_BYTES, MAX_EXPANSION, MAX_META_BYTES};

pub use problem::{Problem, ProblemKind};
pub(crate) use problem::{Problems, Stop};

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::encryption::{Decryption, is_age};
use super::manifest::{
    CLOSING_FRAME_BYTES, CLOSING_MAGIC, CLOSING_TAG, Counts, EntryInfo, FORMAT_NAME, HEADER_ENTRY,
    Header, MANIFEST_ENTRY, Manifest, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, data_entry_name,
};
use crate::error::{Error, Result};
use crate::record::{KeyType, Record};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// An archive to read: a file, or standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSource {
    /// A file on disk.
    File(PathBuf),
    /// Standard input; it can be read only once, so a caller that reads
    /// twice spools it to a file first ([`Spooled`](Self::Spooled)).
    Stdin,
    /// Standard input, already copied to this private file; named `<stdin>`
    /// in messages, since that is what the user gave.
    Spooled(PathBuf),
    /// Bytes in memory (tests and fuzzing: no file needed).
    Memory(std::sync::Arc<[u8]>),
}

impl ArchiveSource {
    /// `-` means standard input, anything else a file path (as the command
    /// line takes it).
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            ArchiveSource::Stdin
        } else {
            ArchiveSource::File(PathBuf::from(arg))
        }
    }

    /// The name to show in messages: the path, `<stdin>` or `<memory>`.
    pub fn display(&self) -> String {
        match self {
            ArchiveSource::File(p) => p.display().to_string(),
            ArchiveSource::Stdin | ArchiveSource::Spooled(_) => "<stdin>".into(),
            ArchiveSource::Memory(_) => "<memory>".into(),
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            ArchiveSource::File(path) | ArchiveSource::Spooled(path) => Ok(Box::new(
                File::open(path).map_err(|e| Error::input(path, e))?,
            )),
            ArchiveSource::Stdin => Ok(Box::new(io::stdin())),
            ArchiveSource::Memory(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
        }
    }
}

/// Where a record sits, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The data entry's name, shared by the entry's records.
    pub entry: std::sync::Arc<str>,
    /// 1-based line number inside the entry.
    pub record: u64,
    /// The length of the record's line, in bytes.
    pub bytes: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record {}", self.entry, self.record)
    }
}

/// What a read calls back with, in archive order.
pub trait Visitor {
    /// Called once with the header, before any record.
    fn header(&mut self, _header: &Header) -> Result<()> {
        Ok(())
    }
    /// Called for every record, in archive order; an error stops the read.
    fn record(&mut self, record: Record, location: &Location) -> Result<()>;
    /// Asked once the header was taken: whether records must carry their
    /// values' elements. A visitor that needs only keys, types and shapes
    /// says no and gets hollow records (`Record::decode_hollow`), checked
    /// exactly as whole ones, at a fraction of the cost.
    fn wants_values(&self) -> bool {
        true
    }
    /// Asked once the header was taken, when [`Visitor::wants_values`]:
    /// the RDB version of a server the visitor writes keys to with
    /// `RESTORE`, for a visitor that wants each key's payload made as its
    /// record is decoded, on the decoding thread, instead of its elements.
    /// Such records come to [`Visitor::record_with_payload`], hollow.
    fn payloads_for(&self) -> Option<u16> {
        None
    }
    /// A record of a key whole in it, with the payload `RESTORE` turns
    /// into its value (see [`Visitor::payloads_for`]); its value is hollow
    /// and must not be written.
    fn record_with_payload(
        &mut self,
        _record: Record,
        _payload: Vec<u8>,
        location: &Location,
    ) -> Result<()> {
        Err(Error::Internal(format!(
            "a record with its payload at {location}, which was not asked for"
        )))
    }
}

/// A visitor that only wants the header and the verified manifest.
#[derive(Debug, Default)]
pub struct Discard;

impl Visitor for Discard {
    fn record(&mut self, _record: Record, _location: &Location) -> Result<()> {
        Ok(())
    }

    fn wants_values(&self) -> bool {
        false
    }
}

/// A verified archive: its manifest, and whether it was encrypted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// The archive's manifest, checked against what was read.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// Whether the archive was age-encrypted.
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
    let mut problems = Problems {
        name: source.display(),
        strict: true,
        found: Default::default(),
    };
    let (seen, encrypted) = read_with(source, decryption, visitor, &mut problems)?;
    match seen.manifest {
        Some(manifest) => Ok(Verified {
            manifest,
            encrypted,
        }),
        None => Err(Error::Internal(
            "a strict read ended without a manifest".into(),
        )),
    }
}

/// What a lenient read found: every problem, with where it is, and what
/// was read whatever the manifest says. `validate` builds its report on it.
#[derive(Debug, Clone)]
pub(crate) struct LenientRead {
    /// The archive as the user named it.
    pub file: String,
    /// Whether it was age-encrypted.
    pub encrypted: bool,
    /// The header's schema_version, when the header could be read.
    pub schema_version: Option<u64>,
    /// Keys and records read (whatever the manifest says).
    pub keys: u64,
    /// Records read.
    pub records: u64,
    /// Problems found: all counted, the first kept in the order found.
    pub problems: crate::samples::Samples<Problem>,
}

/// Read the whole archive, collecting every problem instead of stopping at
/// the first, handing every record that reads well to `visitor`. Fails
/// only when the archive cannot be read at all (missing file, no key to
/// decrypt it).
pub(crate) fn read_leniently(
    source: &ArchiveSource,
    decryption: &Decryption,
    visitor: &mut dyn Visitor,
) -> Result<LenientRead> {
    let mut problems = Problems {
        name: source.display(),
        strict: false,
        found: Default::default(),
    };
    let (seen, encrypted) = read_with(source, decryption, visitor, &mut problems)?;
    Ok(LenientRead {
        file: source.display(),
        encrypted,
        schema_version: seen.header.as_ref().map(|h| h.schema_version),
        keys: seen.counts.keys,
        records: seen.counts.records,
        problems: problems.found,
    })
}

fn read_plain<R: BufRead>(
    name: &str,
    mut input: R,
    decrypted: bool,
    visitor: &mut dyn Visitor,
    problems: &mut Problems,
    meter: &Meter,
) -> Result<Seen> {
    let empty = Seen {
        header: None,
        manifest: None,
        counts: Counts::default(),
    };
    let head = match input.fill_buf() {
        Ok(h) => h,
        Err(e) => {
            problems.fatal(classify_io(name, e))?;
            return Ok(empty);
        }
    };
    if !head.starts_with(&ZSTD_MAGIC) {
        problems.fatal(not_zstd(name, head, decrypted))?;
        return Ok(empty);
    }
    let decoder = match zstd::Decoder::with_buffer(input) {
        Ok(d) => d,
        Err(e) => {
            problems.fatal(classify_io(name, e))?;
            return Ok(empty);
        }
    };
    let mut decoder = Counted {
        inner: decoder,
        count: meter.expanded.clone(),
    };
    run(name, &mut decoder, visitor, problems, meter)
}

/// Read the whole archive with `problems` deciding what a problem does.
fn read_with(
    source: &ArchiveSource,
    decryption: &Decryption,
    visitor: &mut dyn Visitor,
    problems: &mut Problems,
) -> Result<(Seen, bool)> {
    let name = source.display();
    let meter = Meter::default();
    let file = Counted {
        inner: source.open()?,
        count: meter.file.clone(),
    };
    let mut input = BufReader::with_capacity(1 << 16, file);
    let head = input.fill_buf().map_err(|e| Error::input(&name, e))?;
    let closing = |inner| {
        BufReader::with_capacity(
            1 << 16,
            ClosingReader {
                inner,
                closing: meter.closing.clone(),
            },
        )
    };
    if is_age(head) {
        let plain: Box<dyn Read> = Box::new(decryption.open(&name, input)?);
        let plain = closing(plain);
        return Ok((
            read_plain(&name, plain, true, visitor, problems, &meter)?,
            true,
        ));
    }
    let input = closing(Box::new(input));
    Ok((
        read_plain(&name, input, false, visitor, problems, &meter)?,
        false,
    ))
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
    /// A stream whose pending entries have begun: its entries are over.
    pending_seen: bool,
}

/// What a read saw, whatever its problems.
struct Seen {
    header: Option<Header>,
    manifest: Option<Manifest>,
    counts: Counts,
}

fn run(
    name: &str,
    decoder: &mut impl Read,
    visitor: &mut dyn Visitor,
    problems: &mut Problems,
    meter: &Meter,
) -> Result<Seen> {
    let mut seen = Seen {
        header: None,
        manifest: None,
        counts: Counts::default(),
    };
    let mut entries_seen: Vec<SeenEntry> = Vec::new();
    if let Err(Stop) = read_entries(
        name,
        decoder,
        visitor,
        problems,
        &mut seen,
        &mut entries_seen,
        meter,
    )? {
        return Ok(seen);
    }
    if seen.header.is_none() {
        problems.report(Problem::new(
            ProblemKind::NotAnArchive,
            "it holds no entries",
        ))?;
        return Ok(seen);
    }
    let Some(manifest) = &seen.manifest else {
        problems.report(Problem::new(
            ProblemKind::Truncated,
            format!(
                "it ends after {} data entries without manifest.json",
                entries_seen.len()
            ),
        ))?;
        return Ok(seen);
    };
    if let Some(header) = &seen.header {
        verify_manifest(header, manifest, &entries_seen, &seen.counts, problems)?;
    }
    // Last, so that a problem the manifest names more precisely is the one
    // reported first.
    if seen.header.as_ref().is_some_and(|h| h.closing_checksum)
        && let Some(problem) = meter.closing.borrow().verify()
    {
        problems.report(problem)?;
    }
    Ok(seen)
}

/// Read `input` to its end; whether it held anything but zero bytes
/// (tar pads its end with zero blocks).
fn nonzero_tail(input: &mut impl Read) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    let mut nonzero = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(nonzero),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        nonzero |= buf[..n].iter().any(|&b| b != 0);
    }
}

fn read_entries(
    name: &str,
    decoder: &mut impl Read,
    visitor: &mut dyn Visitor,
    problems: &mut Problems,
    seen: &mut Seen,
    entries_seen: &mut Vec<SeenEntry>,
    meter: &Meter,
) -> Result<std::result::Result<(), Stop>> {
    let io_err = |e: io::Error| classify_io(name, e);
    let mut open_key: Option<OpenKey> = None;
    let mut line = Vec::new();
    let mut lines = Decoder::new();
    let mut decoded = Vec::new();
    let mut archive = tar::Archive::new(&mut *decoder);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return problems.fatal(io_err(e)).map(Err),
    };
    for (index, entry) in entries.enumerate() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return problems.fatal(io_err(e)).map(Err),
        };
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            problems.report(Problem::corrupt(format!(
                "entry {path:?} is a {kind:?}, not a regular file; archives hold only regular files"
            )))?;
            continue;
        }
        let size = match entry.header().size() {
            Ok(s) => s,
            Err(e) => return problems.fatal(io_err(e)).map(Err),
        };
        if seen.manifest.is_some() {
            problems.report(Problem::corrupt(format!(
                "entry {path:?} follows manifest.json"
            )))?;
            continue;
        }
        if index == 0 {
            if path != HEADER_ENTRY {
                return problems
                    .fatal(Error::NotAnArchive {
                        path: name.to_string(),
                        reason: format!("its first entry is {path:?}, not {HEADER_ENTRY}"),
                    })
                    .map(Err);
            }
            let parsed = read_small(entry, size, &path)
                .map_err(|e| self_err(name, e))
                .and_then(|bytes| parse_header(name, &bytes));
            match parsed {
                Ok(h) => {
                    visitor.header(&h)?;
                    lines.set_decoding(match (visitor.wants_values(), visitor.payloads_for()) {
                        (false, _) => Decoding::Hollow,
                        (true, Some(rdb)) => Decoding::Payloads(rdb),
                        (true, None) => Decoding::Whole,
                    });
                    seen.header = Some(h);
                }
                Err(e) => return problems.fatal(e).map(Err),
            }
            continue;
        }
        if path == MANIFEST_ENTRY {
            match read_small(entry, size, &path) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(m) => seen.manifest = Some(m),
                    Err(e) => {
                        problems.report(
                            Problem::corrupt(format!("manifest.json does not parse: {e}"))
                                .at(MANIFEST_ENTRY, None),
                        )?;
                    }
                },
                Err(e) => return problems.fatal(self_err(name, e)).map(Err),
            }
            continue;
        }
        let expected = data_entry_name(entries_seen.len());
        if path != expected {
            problems.report(Problem::corrupt(format!(
                "unexpected entry {path:?} where {expected} should be (an archive holds only header.json, data/NNNNNN.jsonl in order, manifest.json)"
            )))?;
            continue;
        }
        if size > MAX_ENTRY_BYTES {
            problems.report(
                Problem::corrupt(format!(
                    "the entry is {size} bytes, over the limit of {MAX_ENTRY_BYTES}"
                ))
                .at(&path, None),
            )?;
            continue;
        }
        let mut hashing = BufReader::with_capacity(
            1 << 16,
            Hashing {
                inner: entry,
                hasher: Sha256::new(),
                bytes: 0,
            },
        );
        let entry_name: std::sync::Arc<str> = path.as_str().into();
        let mut records = 0u64;
        loop {
            line.clear();
            let n = match read_line(&mut hashing, &mut line, meter) {
                Ok(n) => n,
                Err(e) => return problems.fatal(io_err(e)).map(Err),
            };
            if n == 0 {
                break;
            }
            records += 1;
            let location = Location {
                entry: entry_name.clone(),
                record: records,
                bytes: line.len(),
            };
            if line.last() != Some(&b'\n') {
                // Reported in order: after the lines before it.
                lines.flush(&mut decoded)?;
                take_decoded(&mut decoded, &mut open_key, problems, seen, visitor)?;
                problems.report(
                    Problem::corrupt(format!(
                        "the record does not end with a newline (or is longer than {MAX_RECORD_BYTES} bytes)"
                    ))
                    .at(&path, Some(records)),
                )?;
                continue;
            }
            lines.push(&line[..line.len() - 1], location, &mut decoded)?;
            take_decoded(&mut decoded, &mut open_key, problems, seen, visitor)?;
        }
        lines.flush(&mut decoded)?;
        take_decoded(&mut decoded, &mut open_key, problems, seen, visitor)?;
        let hashing = hashing.into_inner();
        entries_seen.push(SeenEntry {
            name: path,
            size: hashing.bytes,
            records,
            sha256: hex::encode(hashing.hasher.finalize()),
        });
    }
    // The tar end marker may come before the end of the zstd stream; read to
    // the end so a damaged or cut-off last frame is caught, and so is
    // anything appended after the tar's end (another archive, say), which
    // a reader that stopped at the end marker would silently ignore.
    match nonzero_tail(decoder) {
        Ok(false) => {}
        Ok(true) => problems.report(Problem::corrupt(
            "there is data after the end of the archive (appended or concatenated); the file is not what was written",
        ))?,
        Err(e) => return problems.fatal(io_err(e)).map(Err),
    }
    if let Some(open) = open_key {
        problems.report(
            Problem::corrupt("the last key is split and its final record is missing")
                .key(Some(&open.key)),
        )?;
    }
    Ok(Ok(()))
}

/// Check and hand over decoded lines, in order: each record's continuity
/// with the one before, the counts, the visitor.
fn take_decoded(
    decoded: &mut Vec<(Location, Decoded)>,
    open_key: &mut Option<OpenKey>,
    problems: &mut Problems,
    seen: &mut Seen,
    visitor: &mut dyn Visitor,
) -> Result<()> {
    for (location, line) in decoded.drain(..) {
        let (record, payload) = match line {
            Decoded::Record(r, payload) => (r, payload),
            Decoded::Bad { reason, key } => {
                *open_key = None;
                problems.report(
                    Problem::corrupt(format!("record does not parse: {reason}"))
                        .at(&location.entry, Some(location.record))
                        .key(key.as_deref()),
                )?;
                continue;
            }
        };
        if let Err(e) = check_continuity(open_key, &record) {
            *open_key = None;
            problems.report(
                Problem::corrupt(e)
                    .at(&location.entry, Some(location.record))
                    .key(Some(&record.key.0)),
            )?;
        }
        seen.counts.add(&record);
        match payload {
            Some(payload) => visitor.record_with_payload(record, payload, &location)?,
            None => visitor.record(record, &location)?,
        }
    }
    Ok(())
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
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, meter: &Meter) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        // Vectorized: a byte-by-byte search was a tenth of a restore's reading.
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_RECORD_BYTES + 1 - line.len();
        let take = take.min(room);
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        total += take;
        if line.len() > LARGE_RECORD_BYTES {
            meter.check()?;
        }
        if done || line.len() > MAX_RECORD_BYTES {
            return Ok(total);
        }
    }
}

/// Read just what `inspect` shows: the verified manifest.
pub fn read_manifest(source: &ArchiveSource, decryption: &Decryption) -> Result<Verified> {
    read_archive(source, decryption, &mut Discard)
}
