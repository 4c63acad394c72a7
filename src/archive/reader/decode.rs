//! Record lines decoded on a thread of their own.
//!
//! Decoding a record's JSON (and allocating its byte strings) is most of
//! what reading an archive costs, more than decompressing and hashing it.
//! So the reader's thread frames the lines and sends them, a chunk of about
//! 256 KiB at a time, to a decoding thread, and takes the records back in
//! the same order a chunk later: the two run side by side. Everything that
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

/// Lines in, decoded lines out, in order.
pub(super) struct Decoder {
    to_worker: Option<SyncSender<Chunk>>,
    from_worker: Receiver<Vec<(Location, Decoded)>>,
    chunk: Chunk,
    in_flight: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        let (to_worker, work) = sync_channel::<Chunk>(2);
        let (done, from_worker) = sync_channel(2);
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
        Decoder {
            to_worker: Some(to_worker),
            from_worker,
            chunk: Chunk::default(),
            in_flight: 0,
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
            self.send(out);
            // One chunk is decoded while the next is framed.
            while self.in_flight > 1 {
                self.receive(out)?;
            }
        }
        Ok(())
    }

    /// Every line taken so far, decoded, added to `out`.
    pub fn flush(&mut self, out: &mut Vec<(Location, Decoded)>) -> Result<()> {
        self.send(out);
        while self.in_flight > 0 {
            self.receive(out)?;
        }
        Ok(())
    }

    fn send(&mut self, out: &mut Vec<(Location, Decoded)>) {
        if self.chunk.lines.is_empty() {
            return;
        }
        let decoding = self.chunk.decoding;
        let chunk = std::mem::replace(
            &mut self.chunk,
            Chunk {
                decoding,
                ..Chunk::default()
            },
        );
        match &self.to_worker {
            Some(tx) => match tx.send(chunk) {
                Ok(()) => self.in_flight += 1,
                // The worker is gone: decode here (what it held is
                // reported lost by `receive`).
                Err(e) => {
                    self.to_worker = None;
                    e.0.decode(out);
                }
            },
            None => chunk.decode(out),
        }
    }

    fn receive(&mut self, out: &mut Vec<(Location, Decoded)>) -> Result<()> {
        self.in_flight -= 1;
        match self.from_worker.recv() {
            Ok(done) => {
                out.extend(done);
                Ok(())
            }
            // Only a panic stops the worker; what it held is lost.
            Err(_) => Err(Error::Internal("the record decoding thread stopped".into())),
        }
    }
}
