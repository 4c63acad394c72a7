//! The bytes of the file: read through the caller's buffer, counted,
//! checksummed, and, while a value's raw form is wanted (module values,
//! DUMP payloads), copied aside.
//!
//! Reads take bytes from a window over the `BufRead`'s buffer, which is
//! consumed (and checksummed, with the fast slicing CRC) in one go when the
//! window is used up, instead of at every read: most reads are a byte or a
//! few. Nothing is copied into a second buffer, so the reader stops exactly
//! where it has read to: after the checksum, a replication stream's next
//! bytes are still in the caller's reader.

use std::io::{BufRead, ErrorKind};

use super::crc64;
use super::error::RdbError;

/// How much of an announced length is reserved at once: more is reserved
/// only as the bytes actually arrive, so a corrupt length cannot make the
/// reader allocate what the input does not hold.
const RESERVE_STEP: usize = 1 << 20;

/// The reader's input; see the module docs.
#[derive(Debug)]
pub(super) struct Input<R> {
    inner: R,
    /// Bytes of the buffer already read, not yet consumed from `inner`.
    used: usize,
    /// The buffer's length when it was last filled.
    len: usize,
    /// Bytes consumed from `inner`.
    consumed: u64,
    /// The CRC-64 of the consumed bytes (those that are checksummed).
    crc: u64,
    /// Whether consumed bytes count in the checksum.
    checksumming: bool,
    record: Option<Vec<u8>>,
}

impl<R: BufRead> Input<R> {
    pub fn new(inner: R) -> Self {
        Input {
            inner,
            used: 0,
            len: 0,
            consumed: 0,
            crc: 0,
            checksumming: true,
            record: None,
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.consumed + self.used as u64
    }

    /// The CRC-64 of the bytes read so far.
    pub fn crc(&mut self) -> Result<u64, RdbError> {
        self.flush()?;
        Ok(self.crc)
    }

    /// The input, with what was read consumed from it.
    pub fn into_inner(mut self) -> R {
        self.inner.consume(self.used);
        self.inner
    }

    /// From now on, keep a copy of every byte read, after `first`.
    pub fn start_recording(&mut self, first: &[u8]) -> Result<(), RdbError> {
        self.flush()?;
        self.record = Some(first.to_vec());
        Ok(())
    }

    /// Stop keeping bytes; what was kept.
    pub fn stop_recording(&mut self) -> Result<Vec<u8>, RdbError> {
        self.flush()?;
        Ok(self.record.take().unwrap_or_default())
    }

    fn truncated(&self) -> RdbError {
        RdbError::Truncated {
            offset: self.offset(),
        }
    }

    /// Consume the bytes read from the buffer: checksum them, record them.
    fn flush(&mut self) -> Result<(), RdbError> {
        if self.used == 0 {
            return Ok(());
        }
        // The buffer is not empty, so this reads nothing.
        let buf = self.inner.fill_buf().map_err(RdbError::Io)?;
        let done = buf.get(..self.used).unwrap_or_default();
        if self.checksumming {
            self.crc = crc64::update(self.crc, done);
        }
        if let Some(r) = &mut self.record {
            r.extend_from_slice(done);
        }
        self.inner.consume(self.used);
        self.consumed += self.used as u64;
        self.used = 0;
        self.len = 0;
        Ok(())
    }

    /// Flush, and fill the buffer again (empty at the end of the input).
    #[cold]
    fn refill(&mut self) -> Result<(), RdbError> {
        self.flush()?;
        self.len = loop {
            match self.inner.fill_buf() {
                Ok(buf) => break buf.len(),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(RdbError::Io(e)),
            }
        };
        Ok(())
    }

    /// The unread bytes of the buffer, filled again when used up; empty
    /// only at the end of the input.
    #[inline]
    fn window(&mut self) -> Result<&[u8], RdbError> {
        if self.used >= self.len {
            self.refill()?;
            if self.len == 0 {
                return Ok(&[]);
            }
        }
        let buf = self.inner.fill_buf().map_err(RdbError::Io)?;
        Ok(buf.get(self.used..self.len).unwrap_or_default())
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, RdbError> {
        match self.window()?.first().copied() {
            Some(b) => {
                self.used += 1;
                Ok(b)
            }
            None => Err(self.truncated()),
        }
    }

    /// Hand the next `n` bytes to `f`, a piece at a time.
    #[inline]
    fn pieces(&mut self, n: u64, mut f: impl FnMut(&[u8])) -> Result<(), RdbError> {
        let mut left = n;
        while left > 0 {
            let buf = self.window()?;
            if buf.is_empty() {
                return Err(self.truncated());
            }
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            f(&buf[..take]);
            self.used += take;
            left -= take as u64;
        }
        Ok(())
    }

    /// Fill `out` exactly.
    #[inline]
    pub fn exact(&mut self, out: &mut [u8]) -> Result<(), RdbError> {
        let buf = self.window()?;
        if let Some(bytes) = buf.get(..out.len()) {
            out.copy_from_slice(bytes);
            self.used += out.len();
            return Ok(());
        }
        let mut done = 0;
        self.pieces(out.len() as u64, |p| {
            out[done..done + p.len()].copy_from_slice(p);
            done += p.len();
        })
    }

    /// `N` bytes.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let mut out = [0u8; N];
        self.exact(&mut out)?;
        Ok(out)
    }

    /// Append `n` bytes to `out`, growing it only as they arrive.
    pub fn append(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), RdbError> {
        out.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(RESERVE_STEP));
        self.pieces(n, |p| out.extend_from_slice(p))
    }

    /// Read and drop `n` bytes (still checksummed, and recorded if asked).
    pub fn skip(&mut self, n: u64) -> Result<(), RdbError> {
        self.pieces(n, |_| {})
    }

    /// Eight bytes that are not part of the checksum (the checksum itself).
    pub fn unchecked_u64_le(&mut self) -> Result<u64, RdbError> {
        self.flush()?;
        self.checksumming = false;
        let bytes = self.array::<8>();
        let flushed = self.flush();
        self.checksumming = true;
        flushed?;
        Ok(u64::from_le_bytes(bytes?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// A reader that hands out one byte per read, and is interrupted
    /// before each: the slowest input there is.
    struct Trickle<'a>(&'a [u8], bool);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(ErrorKind::Interrupted.into());
            }
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn reads_count_checksum_and_record() {
        let data: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        for capacity in [1, 7, 4096] {
            let mut input = Input::new(BufReader::with_capacity(capacity, Trickle(&data, false)));
            assert_eq!(input.u8().unwrap(), 0);
            input.start_recording(b"T").unwrap();
            assert_eq!(input.array::<3>().unwrap(), [1, 2, 3]);
            let mut v = b"x".to_vec();
            input.append(500, &mut v).unwrap();
            assert_eq!(&v[1..], &data[4..504]);
            assert_eq!(input.stop_recording().unwrap().len(), 1 + 3 + 500);
            input.skip(1000).unwrap();
            assert_eq!(input.offset(), 1504);
            assert_eq!(input.crc().unwrap(), crc64::crc64(&data[..1504]));
            let err = input.skip(1000).unwrap_err();
            assert!(matches!(err, RdbError::Truncated { offset: 2000 }), "{err}");
        }
    }

    #[test]
    fn checksum_bytes_are_not_checksummed_and_nothing_after_is_read() {
        let mut data = b"ab".to_vec();
        data.extend(7u64.to_le_bytes());
        data.push(b'z');
        for capacity in [1, 3, 64] {
            let mut input = Input::new(BufReader::with_capacity(capacity, &data[..]));
            input.skip(2).unwrap();
            assert_eq!(input.unchecked_u64_le().unwrap(), 7);
            assert_eq!(input.crc().unwrap(), crc64::crc64(b"ab"));
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut input.into_inner(), &mut rest).unwrap();
            assert_eq!(rest, b"z", "nothing past the checksum was consumed");
        }
    }
}
