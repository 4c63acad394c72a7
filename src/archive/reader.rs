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

/// A record line longer than this is refused, so a hostile file cannot make
/// the reader buffer without end. The writer keeps records near 8 MiB; only
/// a single element bigger than that makes a bigger record, and Redis caps
/// an element at 512 MB (proto-max-bulk-len), which JSON or base64 makes at
/// most 1 GiB.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;
/// Entries larger than this are refused: the writer closes an entry at
/// 4 MiB, so only one huge record can make an entry this big.
pub const MAX_ENTRY_BYTES: u64 = (MAX_RECORD_BYTES as u64) + (8 << 20);
/// `header.json` and `manifest.json` are small; bound them too.
pub const MAX_META_BYTES: u64 = 64 << 20;
/// Records are streamed, so only a long record line costs memory. Past
/// this length a line is only read on while the archive expands less than
/// [`MAX_EXPANSION`] times: a small file made to expand into a huge line
/// (a decompression bomb) is refused before it can take much memory.
pub const LARGE_RECORD_BYTES: usize = 64 << 20;
/// Decompressed bytes per file byte beyond which a large record is refused.
/// Real data, even repetitive, stays far below it at 64 MiB.
pub const MAX_EXPANSION: u64 = 1000;

/// Bytes read from the file, bytes they decompressed into, and the
/// closing checksum of the compressed stream.
#[derive(Default, Clone)]
struct Meter {
    file: Rc<Cell<u64>>,
    expanded: Rc<Cell<u64>>,
    closing: Rc<RefCell<Closing>>,
}

/// Hashes the compressed stream but for its last CLOSING_FRAME_BYTES,
/// which are kept: at the end they must be the closing frame holding that
/// hash.
#[derive(Default)]
struct Closing {
    hasher: Sha256,
    last: Vec<u8>,
}

impl Closing {
    fn feed(&mut self, bytes: &[u8]) {
        self.last.extend_from_slice(bytes);
        if self.last.len() > CLOSING_FRAME_BYTES {
            let cut = self.last.len() - CLOSING_FRAME_BYTES;
            self.hasher.update(&self.last[..cut]);
            self.last.drain(..cut);
        }
    }

    /// The problem with the stream's end, if any.
    fn verify(&self) -> Option<Problem> {
        let frame = &self.last;
        let is_frame = frame.len() == CLOSING_FRAME_BYTES
            && frame[..4] == CLOSING_MAGIC.to_le_bytes()
            && frame[4..8] == ((CLOSING_FRAME_BYTES - 8) as u32).to_le_bytes()
            && &frame[8..16] == CLOSING_TAG;
        if !is_frame {
            return Some(Problem::new(
                ProblemKind::Truncated,
                "the closing checksum frame is missing: the file was cut short, or something follows it",
            ));
        }
        (self.hasher.clone().finalize()[..] != frame[16..]).then(|| {
            Problem::corrupt(
                "the file does not match its closing checksum: some of its bytes were changed",
            )
        })
    }
}

/// Feeds the compressed stream to [`Closing`] as the decoder reads it.
struct ClosingReader<R> {
    inner: R,
    closing: Rc<RefCell<Closing>>,
}

impl<R: Read> Read for ClosingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.closing.borrow_mut().feed(&buf[..n]);
        Ok(n)
    }
}

impl Meter {
    fn check(&self) -> io::Result<()> {
        let (file, expanded) = (self.file.get().max(1), self.expanded.get());
        if expanded / file > MAX_EXPANSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a record longer than {} MiB in data that expands {} times ({expanded} bytes from {file}); refused as a decompression bomb",
                    LARGE_RECORD_BYTES >> 20,
                    expanded / file
                ),
            ));
        }
        Ok(())
    }
}

/// Counts what is read through it.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

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
    /// The data entry's name.
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
    /// Called once with the header, before any record.
    fn header(&mut self, _header: &Header) -> Result<()> {
        Ok(())
    }
    /// Called for every record, in archive order; an error stops the read.
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
        first: Vec::new(),
        total: 0,
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
    /// Problems found, including those not kept in `problems`.
    pub problems_total: u64,
    /// The first problems, in the order they were found.
    pub problems: Vec<Problem>,
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
        first: Vec::new(),
        total: 0,
    };
    let (seen, encrypted) = read_with(source, decryption, visitor, &mut problems)?;
    Ok(LenientRead {
        file: source.display(),
        encrypted,
        schema_version: seen.header.as_ref().map(|h| h.schema_version),
        keys: seen.counts.keys,
        records: seen.counts.records,
        problems_total: problems.total,
        problems: problems.first,
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
    /// A stream whose pending entries have begun: its entries are over.
    pending_seen: bool,
}

/// What kind of problem an archive has; decides the error a strict read
/// returns, and is named in validation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Not an archive at all: see [`Error::NotAnArchive`].
    NotAnArchive,
    /// Fails verification: see [`Error::Corrupt`].
    Corrupt,
    /// Ends early: see [`Error::Truncated`].
    Truncated,
    /// Written by a newer format version: see
    /// [`Error::UnsupportedSchema`].
    UnsupportedSchema,
    /// A record that breaks a profile's rules (`validate --profile`).
    Record,
}

/// One thing wrong with an archive, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// The tar entry it is in, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// 1-based record (line) number inside the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// The key concerned, printable, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            entry: None,
            record: None,
            key: None,
            message: message.into(),
        }
    }

    /// A record-level finding at `location`.
    pub fn record(location: &Location, key: &[u8], message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Record, message)
            .at(&location.entry, Some(location.record))
            .key(Some(key))
    }

    fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Corrupt, message)
    }

    fn at(mut self, entry: &str, record: Option<u64>) -> Self {
        self.entry = Some(entry.to_string());
        self.record = record;
        self
    }

    fn key(mut self, key: Option<&[u8]>) -> Self {
        self.key = key.map(crate::record::printable);
        self
    }

    /// Where, as one prefix: `data/000000.jsonl record 3 (key "user:1"): `.
    pub fn location(&self) -> String {
        let mut out = String::new();
        if let Some(entry) = &self.entry {
            out.push_str(entry);
            if let Some(r) = self.record {
                out.push_str(&format!(" record {r}"));
            }
        }
        if let Some(key) = &self.key {
            out.push_str(&format!(" (key \"{key}\")"));
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out
    }

    fn into_error(self, name: &str) -> Error {
        let path = name.to_string();
        let reason = format!("{}{}", self.location(), self.message);
        match self.kind {
            ProblemKind::NotAnArchive => Error::NotAnArchive { path, reason },
            ProblemKind::Truncated => Error::Truncated { path, reason },
            ProblemKind::Corrupt | ProblemKind::UnsupportedSchema | ProblemKind::Record => {
                Error::Corrupt { path, reason }
            }
        }
    }

    fn from_error(err: &Error) -> Self {
        let kind = match err {
            Error::NotAnArchive { .. } => ProblemKind::NotAnArchive,
            Error::Truncated { .. } => ProblemKind::Truncated,
            Error::UnsupportedSchema { .. } => ProblemKind::UnsupportedSchema,
            _ => ProblemKind::Corrupt,
        };
        let message = match err {
            Error::NotAnArchive { reason, .. }
            | Error::Truncated { reason, .. }
            | Error::Corrupt { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        Problem::new(kind, message)
    }
}

/// How many problems a report lists; the rest are counted.
pub(crate) const MAX_PROBLEMS: usize = 20;

/// Where problems go: a strict read fails at the first one (restore must
/// not act on a bad archive); validation collects them all.
struct Problems {
    name: String,
    strict: bool,
    first: Vec<Problem>,
    total: u64,
}

/// Reading cannot go on (the stream itself is broken).
struct Stop;

impl Problems {
    fn report(&mut self, problem: Problem) -> Result<()> {
        if self.strict {
            return Err(problem.into_error(&self.name));
        }
        self.total += 1;
        if self.first.len() < MAX_PROBLEMS {
            self.first.push(problem);
        }
        Ok(())
    }

    /// An error after which nothing more can be read.
    fn fatal(&mut self, err: Error) -> Result<Stop> {
        if self.strict {
            return Err(err);
        }
        self.report(Problem::from_error(&err))?;
        Ok(Stop)
    }
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
                entry: path.clone(),
                record: records,
            };
            if line.last() != Some(&b'\n') {
                problems.report(
                    Problem::corrupt(format!(
                        "the record does not end with a newline (or is longer than {MAX_RECORD_BYTES} bytes)"
                    ))
                    .at(&path, Some(records)),
                )?;
                continue;
            }
            let body = &line[..line.len() - 1];
            let record = match Record::decode(body) {
                Ok(r) => r,
                Err(e) => {
                    open_key = None;
                    problems.report(
                        Problem::corrupt(format!("record does not parse: {e}"))
                            .at(&path, Some(records))
                            .key(key_of_unparsed(body).as_deref()),
                    )?;
                    continue;
                }
            };
            if let Err(e) = check_continuity(&mut open_key, &record) {
                open_key = None;
                problems.report(
                    Problem::corrupt(e)
                        .at(&path, Some(records))
                        .key(Some(&record.key.0)),
                )?;
            }
            seen.counts.add(&record);
            visitor.record(record, &location)?;
        }
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

/// The key of a record line that did not parse, when the line is JSON
/// enough to say it.
fn key_of_unparsed(line: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        key: crate::record::Bytes,
    }
    serde_json::from_slice::<KeyOnly>(line)
        .ok()
        .map(|k| k.key.0)
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
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
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
    let stream = match &record.value {
        crate::record::Value::Stream(chunk) => Some(chunk),
        _ => None,
    };
    let mut pending_seen = false;
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
        Some(o) => {
            pending_seen = o.pending_seen;
            if pending_seen && stream.is_some_and(|c| !c.entries.is_empty()) {
                return Err(format!(
                    "part {} of a stream has entries after its pending entries",
                    record.part
                ));
            }
        }
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
            pending_seen: pending_seen || stream.is_some_and(|c| !c.pending.is_empty()),
        });
    }
    Ok(())
}

fn verify_manifest(
    header: &Header,
    manifest: &Manifest,
    seen: &[SeenEntry],
    counts: &Counts,
    problems: &mut Problems,
) -> Result<()> {
    if manifest.header.schema_version != header.schema_version
        || manifest.header.format != header.format
    {
        problems.report(
            Problem::corrupt("manifest.json and header.json disagree on format or schema_version")
                .at(MANIFEST_ENTRY, None),
        )?;
    }
    for (i, want) in manifest.entries.iter().enumerate() {
        let Some(got) = seen.get(i) else {
            problems.report(Problem::corrupt(format!(
                "missing entry {}: the manifest lists it, the archive does not have it",
                want.name
            )))?;
            continue;
        };
        let EntryInfo {
            name,
            size,
            records,
            sha256,
        } = want;
        let here = |p: Problem| p.at(&got.name, None);
        if name != &got.name {
            problems.report(here(Problem::corrupt(format!(
                "the manifest lists {name} here"
            ))))?;
        }
        if *size != got.size {
            problems.report(here(Problem::corrupt(format!(
                "the entry is {} bytes, the manifest says {size}",
                got.size
            ))))?;
        }
        if *records != got.records {
            problems.report(here(Problem::corrupt(format!(
                "the entry holds {} records, the manifest says {records}",
                got.records
            ))))?;
        }
        if !sha256.eq_ignore_ascii_case(&got.sha256) {
            problems.report(here(Problem::corrupt(
                "sha256 mismatch: the data or the manifest was altered",
            )))?;
        }
    }
    for extra in seen.iter().skip(manifest.entries.len()) {
        problems.report(
            Problem::corrupt("the entry is not listed in the manifest").at(&extra.name, None),
        )?;
    }
    let mut expected = manifest.counts.clone();
    expected.vanished = 0;
    if &expected != counts {
        problems.report(Problem::corrupt(format!(
            "counts differ from the manifest: it says {} keys in {} records, the data has {} keys in {} records",
            manifest.counts.keys, manifest.counts.records, counts.keys, counts.records
        )))?;
    }
    Ok(())
}

/// Read just what `inspect` shows: the verified manifest.
pub fn read_manifest(source: &ArchiveSource, decryption: &Decryption) -> Result<Verified> {
    read_archive(source, decryption, &mut Discard)
}
