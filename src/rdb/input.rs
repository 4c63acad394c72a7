//! The bytes of the file: read through the caller's buffer, counted,
//! checksummed as they go, and, while a value's raw form is wanted (module
//! values, DUMP payloads), copied aside.
//!
//! Everything is consumed from `BufRead::fill_buf` slices, never through a
//! second buffer, so the reader stops exactly where it has read to: after
//! the checksum, a replication stream's next bytes are still in the
//! caller's reader.

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
    offset: u64,
    crc: u64,
    record: Option<Vec<u8>>,
}

/// `fill_buf`, trying again when interrupted. A filled buffer is asked for
/// twice (the borrow checker cannot see that returning the first call's
/// slice from a loop is sound); the second call reads nothing, since the
/// buffer is not empty. At the end of the input nothing is asked again.
fn fill<R: BufRead>(r: &mut R) -> std::io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Ok([]) => return Ok(&[]),
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    r.fill_buf()
}

impl<R: BufRead> Input<R> {
    pub fn new(inner: R) -> Self {
        Input {
            inner,
            offset: 0,
            crc: 0,
            record: None,
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The CRC-64 of the bytes read so far.
    pub fn crc(&self) -> u64 {
        self.crc
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// From now on, keep a copy of every byte read, after `first`.
    pub fn start_recording(&mut self, first: &[u8]) {
        self.record = Some(first.to_vec());
    }

    /// Stop keeping bytes; what was kept.
    pub fn stop_recording(&mut self) -> Vec<u8> {
        self.record.take().unwrap_or_default()
    }

    fn truncated(&self) -> RdbError {
        RdbError::Truncated {
            offset: self.offset,
        }
    }

    /// Consume up to `max` bytes, handing them to `f`; how many (0 only at
    /// the end of the input).
    #[inline]
    fn piece(&mut self, max: usize, f: impl FnOnce(&[u8])) -> Result<usize, RdbError> {
        let Input {
            inner,
            offset,
            crc,
            record,
        } = self;
        let buf = fill(inner).map_err(RdbError::Io)?;
        let n = buf.len().min(max);
        let piece = &buf[..n];
        *crc = crc64::update(*crc, piece);
        if let Some(r) = record {
            r.extend_from_slice(piece);
        }
        f(piece);
        inner.consume(n);
        *offset += n as u64;
        Ok(n)
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, RdbError> {
        let Input {
            inner,
            offset,
            crc,
            record,
        } = self;
        let buf = fill(inner).map_err(RdbError::Io)?;
        let Some(&b) = buf.first() else {
            return Err(RdbError::Truncated { offset: *offset });
        };
        *crc = crc64::update_byte(*crc, b);
        if let Some(r) = record {
            r.push(b);
        }
        inner.consume(1);
        *offset += 1;
        Ok(b)
    }

    /// Fill `out` exactly.
    pub fn exact(&mut self, out: &mut [u8]) -> Result<(), RdbError> {
        let mut done = 0;
        while done < out.len() {
            let rest = &mut out[done..];
            let n = self.piece(rest.len(), |p| rest[..p.len()].copy_from_slice(p))?;
            if n == 0 {
                return Err(self.truncated());
            }
            done += n;
        }
        Ok(())
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
        let mut left = n;
        out.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(RESERVE_STEP));
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            let got = self.piece(max, |p| out.extend_from_slice(p))?;
            if got == 0 {
                return Err(self.truncated());
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// Read and drop `n` bytes (still checksummed, and recorded if asked).
    pub fn skip(&mut self, n: u64) -> Result<(), RdbError> {
        let mut left = n;
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            let got = self.piece(max, |_| {})?;
            if got == 0 {
                return Err(self.truncated());
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// Eight bytes that are not part of the checksum (the checksum itself).
    pub fn unchecked_u64_le(&mut self) -> Result<u64, RdbError> {
        let crc = self.crc;
        let bytes = self.array::<8>()?;
        self.crc = crc;
        Ok(u64::from_le_bytes(bytes))
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
        let mut input = Input::new(BufReader::with_capacity(7, Trickle(&data, false)));
        assert_eq!(input.u8().unwrap(), 0);
        input.start_recording(b"T");
        assert_eq!(input.array::<3>().unwrap(), [1, 2, 3]);
        let mut v = b"x".to_vec();
        input.append(500, &mut v).unwrap();
        assert_eq!(&v[1..], &data[4..504]);
        assert_eq!(input.stop_recording().len(), 1 + 3 + 500);
        input.skip(1000).unwrap();
        assert_eq!(input.offset(), 1504);
        assert_eq!(input.crc(), crc64::crc64(&data[..1504]));
        let err = input.skip(1000).unwrap_err();
        assert!(matches!(err, RdbError::Truncated { offset: 2000 }), "{err}");
    }

    #[test]
    fn checksum_bytes_are_not_checksummed() {
        let mut data = b"ab".to_vec();
        data.extend(7u64.to_le_bytes());
        data.push(b'z');
        let mut input = Input::new(&data[..]);
        input.skip(2).unwrap();
        assert_eq!(input.unchecked_u64_le().unwrap(), 7);
        assert_eq!(input.crc(), crc64::crc64(b"ab"));
        let rest = input.into_inner();
        assert_eq!(rest, b"z", "nothing past the checksum was read");
    }
}
