//! Readers that bound and check the bytes as they pass: how far the data
//! expanded (decompression bombs), the closing checksum frame, bytes
//! counted and hashed per entry; and the limits they enforce.

use super::*;

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
pub(crate) struct Meter {
    pub(crate) file: Rc<Cell<u64>>,
    pub(crate) expanded: Rc<Cell<u64>>,
    pub(crate) closing: Rc<RefCell<Closing>>,
}

/// Hashes the compressed stream but for its last CLOSING_FRAME_BYTES,
/// which are kept: at the end they must be the closing frame holding that
/// hash.
#[derive(Default)]
pub(crate) struct Closing {
    pub(crate) hasher: Sha256,
    pub(crate) last: Vec<u8>,
}

impl Closing {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.last.extend_from_slice(bytes);
        if self.last.len() > CLOSING_FRAME_BYTES {
            let cut = self.last.len() - CLOSING_FRAME_BYTES;
            self.hasher.update(&self.last[..cut]);
            self.last.drain(..cut);
        }
    }

    /// The problem with the stream's end, if any.
    pub(crate) fn verify(&self) -> Option<Problem> {
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
pub(crate) struct ClosingReader<R> {
    pub(crate) inner: R,
    pub(crate) closing: Rc<RefCell<Closing>>,
}

impl<R: Read> Read for ClosingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.closing.borrow_mut().feed(&buf[..n]);
        Ok(n)
    }
}

impl Meter {
    pub(crate) fn check(&self) -> io::Result<()> {
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
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes and counts every byte read through it.
pub(crate) struct Hashing<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
