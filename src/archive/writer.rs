//! records -> data entries -> tar -> zstd -> temp file -> rename.
//!
//! Records are gathered into data entries of a few MiB (tar needs an entry's
//! size before its bytes, so one entry is buffered; never more). Each entry's
//! sha256 goes into the manifest, written last. The output only appears at
//! its path when [`ArchiveWriter::finish`] has flushed, fsynced and renamed
//! the temp file; a writer dropped before that removes its temp file, so an
//! interrupted export leaves nothing that looks like an archive.
//!
//! The byte sink under zstd is the place an encryption layer slots in.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::encryption::{AgeWriter, Encryption};
use super::manifest::closing_frame;
use super::manifest::{
    Counts, EntryInfo, HEADER_ENTRY, Header, MANIFEST_ENTRY, Manifest, data_entry_name,
};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::partial::{parent_dir, sync_parent};
use crate::record::Record;

/// An entry is closed once it holds this many bytes of records.
const ENTRY_TARGET_BYTES: usize = 4 << 20;

/// Where the archive goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A file; written to a temp file beside it and renamed into place once
    /// complete.
    File(PathBuf),
    /// Standard output, written as it goes.
    Stdout,
}

impl Destination {
    /// The name to show in messages: the path or `<stdout>`.
    pub fn display(&self) -> String {
        match self {
            Destination::File(p) => p.display().to_string(),
            Destination::Stdout => "<stdout>".into(),
        }
    }
}

/// Bytes zstd compresses at a time on its worker thread.
const JOB_BYTES: u32 = 2 << 20;

/// How the compressed stream is written.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// zstd compression level (1 to 19; 3 by default).
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the writing thread.
    pub zstd_workers: u32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            zstd_level: 3,
            zstd_workers: 1,
        }
    }
}

/// The bottom of the stack: a temp file beside the destination, or stdout.
enum Sink {
    Temp(tempfile::NamedTempFile),
    Stdout(io::Stdout),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // The raw file, not NamedTempFile's Write, which wraps errors
            // with the temp path and hides the errno (ENOSPC).
            Sink::Temp(f) => f.as_file_mut().write(buf),
            Sink::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Temp(f) => f.as_file_mut().flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

/// Counts and hashes the bytes on their way to the sink: the size and
/// sha256 of the file as written, for the report and the folder's metadata.
struct Counting<W> {
    inner: W,
    bytes: u64,
    hasher: Sha256,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The optional age layer between zstd and the bytes that reach the sink.
enum Envelope<W: Write> {
    Plain(W),
    Age(AgeWriter<W>),
}

impl<W: Write> Envelope<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Envelope::Plain(w) => Ok(w),
            Envelope::Age(a) => a.finish(),
        }
    }
}

impl<W: Write> Write for Envelope<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Envelope::Plain(w) => w.write(buf),
            Envelope::Age(a) => a.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Envelope::Plain(w) => w.flush(),
            Envelope::Age(a) => a.flush(),
        }
    }
}

/// tar -> zstd -> (sha256 of the compressed stream, for the closing
/// checksum) -> [age] -> (size and sha256 of the file) -> file.
type Stack = tar::Builder<zstd::Encoder<'static, Counting<Envelope<Counting<Sink>>>>>;

/// What a finished archive is.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Where it was written.
    pub destination: Destination,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// sha256 of the file as written (hex).
    pub sha256: String,
    /// Whether it was age-encrypted.
    pub encrypted: bool,
    /// The manifest that closes it.
    pub manifest: Manifest,
}

/// Writes one archive: the header at creation, records as they come, and
/// the manifest and closing checksum at [`finish`](Self::finish). Dropping
/// it unfinished leaves no file at a file destination.
pub struct ArchiveWriter {
    destination: Destination,
    encrypted: bool,
    stack: Stack,
    header: Header,
    entry: Vec<u8>,
    entry_records: u64,
    entries: Vec<EntryInfo>,
    counts: Counts,
    groups: BTreeMap<String, u64>,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("destination", &self.destination)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl ArchiveWriter {
    /// Open the destination and write the header entry. With `encryption`,
    /// the zstd stream is encrypted with age before it reaches the file.
    pub fn create(
        destination: Destination,
        header: Header,
        options: WriterOptions,
        encryption: Option<&Encryption>,
    ) -> Result<Self> {
        let sink = match &destination {
            Destination::File(path) => Sink::Temp(temp_beside(path)?),
            Destination::Stdout => Sink::Stdout(io::stdout()),
        };
        let out_err = |e: io::Error| Error::output(destination.display(), e);
        let counting = Counting {
            inner: sink,
            bytes: 0,
            hasher: Sha256::new(),
        };
        let envelope = match encryption {
            Some(e) => Envelope::Age(e.wrap(counting).map_err(out_err)?),
            None => Envelope::Plain(counting),
        };
        let stream = Counting {
            inner: envelope,
            bytes: 0,
            hasher: Sha256::new(),
        };
        let mut encoder = zstd::Encoder::new(stream, options.zstd_level).map_err(out_err)?;
        encoder.include_checksum(true).map_err(out_err)?;
        if options.zstd_workers > 0 {
            encoder.multithread(options.zstd_workers).map_err(out_err)?;
            // The default job (8 MiB at level 3) makes zstd hold about 42 MiB
            // of buffers for one worker; 2 MiB jobs hold about 12.
            encoder
                .set_parameter(zstd::zstd_safe::CParameter::JobSize(JOB_BYTES))
                .map_err(out_err)?;
        }
        let mut writer = ArchiveWriter {
            destination,
            encrypted: encryption.is_some(),
            stack: tar::Builder::new(encoder),
            header,
            entry: Vec::with_capacity(ENTRY_TARGET_BYTES + (64 << 10)),
            entry_records: 0,
            entries: Vec::new(),
            counts: Counts::default(),
            groups: BTreeMap::new(),
        };
        let header_json = serde_json::to_vec_pretty(&writer.header)
            .map_err(|e| Error::Internal(format!("header does not serialize: {e}")))?;
        writer.append(HEADER_ENTRY, &header_json)?;
        Ok(writer)
    }

    /// Append one record; data entries are closed as they reach their
    /// target size.
    pub fn write_record(&mut self, record: &Record) -> Result<()> {
        record.encode_into(&mut self.entry);
        self.entry_records += 1;
        self.counts.add(record);
        if self.entry.len() >= ENTRY_TARGET_BYTES {
            self.close_entry()?;
        }
        Ok(())
    }

    /// What has been written so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Keys per profile group, for the manifest.
    pub fn set_groups(&mut self, groups: BTreeMap<String, u64>) {
        self.groups = groups;
    }

    fn close_entry(&mut self) -> Result<()> {
        if self.entry_records == 0 {
            return Ok(());
        }
        let name = data_entry_name(self.entries.len());
        let data = std::mem::take(&mut self.entry);
        self.append(&name, &data)?;
        self.entries.push(EntryInfo {
            name,
            size: data.len() as u64,
            records: self.entry_records,
            sha256: hex::encode(Sha256::digest(&data)),
        });
        self.entry = data;
        self.entry.clear();
        self.entry_records = 0;
        failpoint::hit("write.entry");
        Ok(())
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(self.header.started_at.timestamp().max(0) as u64);
        header.set_entry_type(tar::EntryType::Regular);
        let destination = self.destination.display();
        self.stack
            .append_data(&mut header, name, data)
            .map_err(|e| Error::output(destination, e))
    }

    /// Write the manifest, close every layer, make the file durable and move
    /// it into place. `vanished` is what the export saw disappear.
    pub fn finish(
        mut self,
        finished_at: chrono::DateTime<chrono::Utc>,
        vanished: u64,
    ) -> Result<Finished> {
        self.close_entry()?;
        let mut counts = std::mem::take(&mut self.counts);
        counts.vanished = vanished;
        let manifest = Manifest {
            header: self.header.clone(),
            finished_at,
            counts,
            groups: std::mem::take(&mut self.groups),
            entries: std::mem::take(&mut self.entries),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("manifest does not serialize: {e}")))?;
        self.append(MANIFEST_ENTRY, &json)?;
        failpoint::hit("write.manifest");
        let destination = self.destination.clone();
        let out_err = |e: io::Error| Error::output(destination.display(), e);
        let encoder = self.stack.into_inner().map_err(out_err)?;
        let stream = encoder.finish().map_err(out_err)?;
        let mut envelope = stream.inner;
        envelope
            .write_all(&closing_frame(stream.hasher.finalize().into()))
            .map_err(out_err)?;
        let mut counting = envelope.finish().map_err(out_err)?;
        counting.flush().map_err(out_err)?;
        let bytes = counting.bytes;
        let sha256 = hex::encode(counting.hasher.finalize());
        match (counting.inner, &destination) {
            (Sink::Temp(temp), Destination::File(path)) => {
                temp.as_file().sync_all().map_err(out_err)?;
                failpoint::hit("write.before-rename");
                temp.persist(path).map_err(|e| out_err(e.error))?;
                failpoint::hit("write.after-rename");
                sync_parent(path).map_err(out_err)?;
            }
            (Sink::Stdout(_), _) => {}
            (Sink::Temp(_), Destination::Stdout) => unreachable!("stdout never gets a temp file"),
        }
        Ok(Finished {
            destination,
            bytes,
            sha256,
            encrypted: self.encrypted,
            manifest,
        })
    }
}

/// A 0600 temp file in the destination's directory, so the final rename is
/// atomic (same filesystem) and a failure to create it is reported against
/// the path the user gave.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    crate::partial::create(parent_dir(path), &name).map_err(|e| Error::output(path, e))
}
