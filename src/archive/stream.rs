//! The archive as a stream of record batches, for async readers.
//!
//! Reading and verifying an archive is synchronous work (decompression,
//! decryption, checksums), while the restore side spends its time waiting
//! on Redis. So the archive is read on a blocking thread of its own, which
//! sends the header and then batches of records through a bounded channel;
//! the async side loops over them and awaits its Redis calls directly. This
//! keeps the runtime's threads free (the library works on a current-thread
//! runtime too), lets decoding overlap with the server's work, and bounds
//! memory to a few batches.
//!
//! A batch is only what the reader has read so far: the verdict on the whole
//! archive comes from [`Batches::finish`], and a caller that must not act on
//! an archive that turns out corrupt (restore's plan) waits for it before
//! acting.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::reader::{ArchiveSource, Location, Verified, Visitor, read_archive};
use super::{Decryption, Header};
use crate::error::{Error, Result};
use crate::record::Record;

/// Records per batch sent.
const BATCH_RECORDS: usize = 512;
/// Bytes a batch sent holds in memory, to bound a batch of big records.
const BATCH_BYTES: usize = 8 << 20;
/// Batches decoded ahead of the async side.
const AHEAD: usize = 2;

/// What the reader sends: the header first, then records in archive order.
#[derive(Debug)]
pub enum Batch {
    Header(Box<Header>),
    /// Records, in order.
    Records(Vec<Read>),
}

/// A record as read.
#[derive(Debug)]
pub struct Read {
    pub record: Record,
    /// What it holds in memory (`Record::held_bytes`, bounded from its line).
    pub held: usize,
    /// The payload `RESTORE` turns into its key, when the reader was asked
    /// for payloads and the key has one ([`Batches::start_with_payloads`]);
    /// the record's value is then hollow.
    pub payload: Option<Vec<u8>>,
}

/// What a reader asked for payloads says of a header: the RDB version of
/// the server they are made for, or `None` for none.
type PayloadsFor = Box<dyn Fn(&Header) -> Option<u16> + Send>;

/// An archive being read on a blocking thread.
#[derive(Debug)]
pub struct Batches {
    rx: mpsc::Receiver<Batch>,
    reader: JoinHandle<Result<Verified>>,
}

/// A second reader of the records, on the reader's thread, where each
/// record's place in the archive is known (restore's profile checks, which
/// name that place).
pub(crate) trait Tee: Send {
    /// The header, before any record.
    fn header(&mut self, header: &Header) -> Result<()>;
    /// The next record, and where it is.
    fn record(&mut self, record: &Record, location: &Location) -> Result<()>;
}

impl Batches {
    /// Start reading `source`.
    pub fn start(source: ArchiveSource, decryption: Decryption) -> Self {
        Batches::start_with(source, decryption, None, |_| true)
    }

    /// Start reading `source` for writing its keys into a server: where
    /// `payloads_for` gives that server's RDB version for the header, each
    /// key whole in one record of a type `RESTORE` takes comes with its
    /// payload, made on the decoding thread straight from the record's
    /// line, and a hollow value (see [`Read::payload`]).
    pub(crate) fn start_with_payloads(
        source: ArchiveSource,
        decryption: Decryption,
        payloads_for: impl Fn(&Header) -> Option<u16> + Send + 'static,
    ) -> Self {
        Batches::spawn(
            source,
            decryption,
            None,
            Box::new(|_| true),
            Box::new(payloads_for),
        )
    }

    /// Start reading `source`, showing every record to `tee` too, for a
    /// reader that, once it knows the header, may need only the records'
    /// keys and shapes: where `wants_values` says no (and there is no
    /// `tee`), records come hollow (see `Record::decode_hollow`), checked
    /// as strictly.
    pub(crate) fn start_with(
        source: ArchiveSource,
        decryption: Decryption,
        tee: Option<Box<dyn Tee>>,
        wants_values: impl Fn(&Header) -> bool + Send + 'static,
    ) -> Self {
        Batches::spawn(
            source,
            decryption,
            tee,
            Box::new(wants_values),
            Box::new(|_| None),
        )
    }

    fn spawn(
        source: ArchiveSource,
        decryption: Decryption,
        tee: Option<Box<dyn Tee>>,
        wants_values: Box<dyn Fn(&Header) -> bool + Send>,
        payloads_for: PayloadsFor,
    ) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        let reader = tokio::task::spawn_blocking(move || {
            let mut sender = Sender {
                tx,
                batch: Vec::new(),
                bytes: 0,
                wants_values,
                values: true,
                payloads_for,
                payloads: None,
                tee,
            };
            let verified = read_archive(&source, &decryption, &mut sender)?;
            sender.send()?;
            Ok(verified)
        });
        Batches { rx, reader }
    }

    /// The next batch; `None` once the reader has stopped, whether at the
    /// end or at a problem (which [`Batches::finish`] returns).
    pub async fn next(&mut self) -> Option<Batch> {
        self.rx.recv().await
    }

    /// Stop reading if it is not done, and return the reader's verdict on
    /// the whole archive.
    pub async fn finish(self) -> Result<Verified> {
        // Dropping the receiver makes the reader's next send fail, so a
        // reader the async side gave up on stops soon.
        drop(self.rx);
        self.reader
            .await
            .map_err(|e| Error::Internal(format!("the archive reader failed: {e}")))?
    }

    /// [`Batches::finish`], after the async side handled the batches with
    /// `handled`: an error of its own comes first, since it concerns records
    /// read before any later problem of the archive.
    pub async fn verdict(self, handled: Result<()>) -> Result<Verified> {
        let verified = self.finish().await;
        handled?;
        verified
    }
}

/// What the async side does with an archive: its header, then its
/// records in order (restore's planner and applier, compare, rollback).
pub(crate) trait BatchVisitor {
    /// The header, before any record.
    fn header(&mut self, header: &Header) -> impl Future<Output = Result<()>> + Send;
    /// The next record, with the bytes it holds in memory.
    fn record(&mut self, record: Record, held: usize) -> impl Future<Output = Result<()>> + Send;
    /// The next record, with its `RESTORE` payload and a hollow value, for
    /// a visitor of [`Batches::start_with_payloads`].
    fn record_with_payload(
        &mut self,
        record: Record,
        _held: usize,
        _payload: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Err(Error::Internal(format!(
            "a payload for {}, which was not asked for",
            crate::record::printable(&record.key.0)
        ))))
    }
}

impl Batches {
    /// Hand every batch to `visitor` as it arrives, then return the
    /// reader's verdict on the whole archive (see [`Batches::verdict`]).
    pub(crate) async fn visit(mut self, visitor: &mut impl BatchVisitor) -> Result<Verified> {
        let handled = async {
            while let Some(batch) = self.next().await {
                match batch {
                    Batch::Header(header) => visitor.header(&header).await?,
                    Batch::Records(records) => {
                        for read in records {
                            match read.payload {
                                Some(payload) => {
                                    visitor
                                        .record_with_payload(read.record, read.held, payload)
                                        .await?
                                }
                                None => visitor.record(read.record, read.held).await?,
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        self.verdict(handled).await
    }
}

/// The visitor on the reader's thread: collects records into batches and
/// sends them, waiting while the channel is full.
struct Sender {
    tx: mpsc::Sender<Batch>,
    batch: Vec<Read>,
    bytes: usize,
    wants_values: Box<dyn Fn(&Header) -> bool + Send>,
    /// What `wants_values` said of the header.
    values: bool,
    payloads_for: PayloadsFor,
    /// What `payloads_for` said of the header.
    payloads: Option<u16>,
    tee: Option<Box<dyn Tee>>,
}

impl Sender {
    fn take(
        &mut self,
        record: Record,
        location: &Location,
        payload: Option<Vec<u8>>,
    ) -> Result<()> {
        // A payload is about the size of its line, which bounds this.
        let held = record.held_bytes_by_line(location.bytes);
        self.bytes += held;
        self.batch.push(Read {
            record,
            held,
            payload,
        });
        if self.batch.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        self.tx
            .blocking_send(Batch::Records(batch))
            .map_err(|_| Error::Internal("the archive is no longer being read".into()))
    }
}

impl Visitor for Sender {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.values = self.tee.is_some() || (self.wants_values)(header);
        self.payloads = (self.payloads_for)(header).filter(|_| self.tee.is_none());
        if let Some(tee) = self.tee.as_mut() {
            tee.header(header)?;
        }
        self.tx
            .blocking_send(Batch::Header(Box::new(header.clone())))
            .map_err(|_| Error::Internal("the archive is no longer being read".into()))
    }

    fn record(&mut self, record: Record, location: &Location) -> Result<()> {
        if let Some(tee) = self.tee.as_mut() {
            tee.record(&record, location)?;
        }
        self.take(record, location, None)
    }

    fn record_with_payload(
        &mut self,
        record: Record,
        payload: Vec<u8>,
        location: &Location,
    ) -> Result<()> {
        self.take(record, location, Some(payload))
    }

    fn wants_values(&self) -> bool {
        self.values
    }

    fn payloads_for(&self) -> Option<u16> {
        self.payloads
    }
}
