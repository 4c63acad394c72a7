//! Record lines decoded on threads of their own.
//!
//! Decoding a record's JSON (and allocating its byte strings) is most of
//! what reading an archive costs, more than decompressing and hashing it.
//! So the reader's thread frames the lines and sends them, a chunk of about
//! 256 KiB at a time, to two decoding threads in turn, and takes the
//! records back in the same order: all three run side by side. Everything that
//! depends on order (continuity of split keys, counts, problems, the
//! visitor) stays on the reader's thread. A line over 1 MiB is decoded on
//! the reader's thread once the lines before it are back, so no more than
//! one big record is ever held, as before.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::Location;
use crate::error::{Error, Result};
use crate::record::Record;

/// Bytes of lines sent at once.
const CHUNK_BYTES: usize = 256 << 10;
/// Lines at least this long are decoded on the reader's thread.
const INLINE_BYTES: usize = 1 << 20;

/// How lines are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Decoding {
    #[default]
    Whole,
    /// With `Record::decode_hollow`.
    Hollow,
    /// With `rdb::decode_with_payload` for a server reading this RDB version.
    Payloads(u16),
}

/// A line, decoded.
pub(super) enum Decoded {
    /// A record, and with [`Decoding::Payloads`] its `RESTORE` payload
    /// when it has one (its value then hollow).
    Record(Record, Option<Vec<u8>>),
    /// It does not parse: why, and its key when it is JSON enough to say.
    Bad {
        reason: String,
        key: Option<Vec<u8>>,
    },
}

impl Decoded {
    fn of(line: &[u8], decoding: Decoding) -> Decoded {
        let decoded = match decoding {
            Decoding::Whole => Record::decode(line).map(|r| (r, None)),
            Decoding::Hollow => Record::decode_hollow(line).map(|r| (r, None)),
            Decoding::Payloads(rdb) => crate::rdb::decode_with_payload(line, rdb),
        };
        match decoded {
            Ok((r, payload)) => Decoded::Record(r, payload),
            Err(reason) => Decoded::Bad {
                reason,
                key: key_of_unparsed(line),
            },
        }
    }
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

#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    /// Where each line ends in `data`, and where it is in the archive.
    lines: Vec<(usize, Location)>,
    decoding: Decoding,
}

impl Chunk {
    fn decode(self, out: &mut Vec<(Location, Decoded)>) {
        let mut start = 0;
        for (end, location) in self.lines {
            out.push((location, Decoded::of(&self.data[start..end], self.decoding)));
            start = end;
        }
    }
}

/// Threads decoding chunks, in turn.
const WORKERS: usize = 2;

/// One decoding thread: chunks in, decoded lines out, in order.
struct Worker {
    to: SyncSender<Chunk>,
    from: Receiver<Vec<(Location, Decoded)>>,
}

impl Worker {
    fn spawn() -> Worker {
        let (to, work) = sync_channel::<Chunk>(1);
        let (done, from) = sync_channel(1);
        // The worker ends when the reader drops its sender.
        std::thread::spawn(move || {
            while let Ok(chunk) = work.recv() {
                let mut out = Vec::with_capacity(chunk.lines.len());
                chunk.decode(&mut out);
                if done.send(out).is_err() {
                    return;
                }
            }
        });
        Worker { to, from }
    }
}

/// Lines in, decoded lines out, in order.
pub(super) struct Decoder {
    workers: Vec<Worker>,
    chunk: Chunk,
    /// Chunks sent, and chunks taken back: chunk `n` goes to worker
    /// `n % WORKERS`, so they come back in the order they went.
    sent: usize,
    received: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            workers: (0..WORKERS).map(|_| Worker::spawn()).collect(),
            chunk: Chunk::default(),
            sent: 0,
            received: 0,
        }
    }

    /// Decode the lines taken from now on this way.
    pub fn set_decoding(&mut self, decoding: Decoding) {
        self.chunk.decoding = decoding;
    }

    /// Take `line` (without its newline), found at `location`; lines that
    /// are decoded by now are added to `out`, in order.
    pub fn push(
        &mut self,
        line: &[u8],
        location: Location,
        out: &mut Vec<(Location, Decoded)>,
    ) -> Result<()> {
        if line.len() >= INLINE_BYTES {
            self.flush(out)?;
            out.push((location, Decoded::of(line, self.chunk.decoding)));
            return Ok(());
        }
        self.chunk.data.extend_from_slice(line);
        self.chunk.lines.push((self.chunk.data.len(), location));
        if self.chunk.data.len() >= CHUNK_BYTES {
            self.send()?;
            // Every worker decodes a chunk while the next is framed.
            while self.sent - self.received > WORKERS {
                self.receive(out)?;
            }
        }
        Ok(())
    }

    /// Every line taken so far, decoded, added to `out`.
    pub fn flush(&mut self, out: &mut Vec<(Location, Decoded)>) -> Result<()> {
        self.send()?;
        while self.received < self.sent {
            self.receive(out)?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        if self.chunk.lines.is_empty() {
            return Ok(());
        }
        let decoding = self.chunk.decoding;
        let chunk = std::mem::replace(
            &mut self.chunk,
            Chunk {
                decoding,
                ..Chunk::default()
            },
        );
        match self.workers[self.sent % WORKERS].to.send(chunk) {
            Ok(()) => {
                self.sent += 1;
                Ok(())
            }
            Err(_) => Err(stopped()),
        }
    }

    fn receive(&mut self, out: &mut Vec<(Location, Decoded)>) -> Result<()> {
        let worker = &self.workers[self.received % WORKERS];
        self.received += 1;
        match worker.from.recv() {
            Ok(done) => {
                out.extend(done);
                Ok(())
            }
            Err(_) => Err(stopped()),
        }
    }
}

/// Only a panic stops a worker; what it held is lost.
fn stopped() -> Error {
    Error::Internal("the record decoding thread stopped".into())
}
