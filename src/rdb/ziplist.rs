//! Ziplists: the compact encoding of small hashes, sorted sets and lists
//! (and of quicklist nodes) before Redis 7.0 replaced them by listpacks:
//! RDB files of version 9 (Redis 5 and 6) hold them.
//!
//! A ziplist is a 10-byte header (total bytes u32, offset of the last entry
//! u32, entry count u16, 65535 meaning "count them"), the entries and a
//! 0xFF end byte. An entry is the previous entry's size (1 byte, or 0xFE and
//! a u32), an encoding (string with a 6-, 14- or 32-bit big-endian length,
//! or an integer of 8, 16, 24, 32 or 64 bits, or 0 to 12 in the encoding
//! byte itself), and the data. Sizes are checked against each other and the
//! blob: a corrupt ziplist is an error, never an out-of-bounds read.

use super::listpack::Entry;

/// Where a walk over a ziplist is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Walk {
    pos: usize,
    prev_size: usize,
    last_start: usize,
    declared: Option<usize>,
    seen: usize,
    tail: usize,
}

const HEADER: usize = 10;
const END: u8 = 0xff;

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Check a ziplist's header and end byte; a walk from its first entry.
pub(super) fn open(data: &[u8]) -> Result<Walk, String> {
    if data.len() < HEADER + 1 {
        return Err(format!("ziplist of {} bytes is too short", data.len()));
    }
    let total = le(&data[..4]);
    if total != data.len() as u64 {
        return Err(format!(
            "ziplist header says {total} bytes, the string holds {}",
            data.len()
        ));
    }
    if data.last() != Some(&END) {
        return Err("ziplist does not end with 0xFF".into());
    }
    let tail = le(&data[4..8]) as usize;
    let count = le(&data[8..10]) as usize;
    Ok(Walk {
        pos: HEADER,
        prev_size: 0,
        last_start: HEADER,
        declared: (count != usize::from(u16::MAX)).then_some(count),
        seen: 0,
        tail,
    })
}

/// The next entry, or `None` at the end byte (when the count and the tail
/// offset are checked).
pub(super) fn next<'a>(data: &'a [u8], walk: &mut Walk) -> Result<Option<Entry<'a>>, String> {
    let pos = walk.pos;
    let past = || format!("ziplist entry at {pos} goes past the end");
    let byte = |i: usize| data.get(i).copied().ok_or_else(past);
    let slice = |from: usize, n: usize| {
        from.checked_add(n)
            .and_then(|to| data.get(from..to))
            .ok_or_else(past)
    };
    let first = byte(pos)?;
    if first == END {
        if pos + 1 != data.len() {
            return Err(format!("ziplist end byte at {pos}, before its end"));
        }
        if let Some(n) = walk.declared
            && n != walk.seen
        {
            return Err(format!(
                "ziplist header says {n} entries, it holds {}",
                walk.seen
            ));
        }
        if walk.tail != walk.last_start {
            return Err(format!(
                "ziplist header puts its last entry at {}, it is at {}",
                walk.tail, walk.last_start
            ));
        }
        return Ok(None);
    }
    let (prev, mut at) = if first < 0xfe {
        (usize::from(first), pos + 1)
    } else {
        (le(slice(pos + 1, 4)?) as usize, pos + 5)
    };
    if prev != walk.prev_size {
        return Err(format!(
            "ziplist entry at {pos} says the entry before it has {prev} bytes, it has {}",
            walk.prev_size
        ));
    }
    let enc = byte(at)?;
    at += 1;
    let entry = match enc >> 6 {
        0 => {
            let n = usize::from(enc & 0x3f);
            let s = slice(at, n)?;
            at += n;
            Entry::Str(s)
        }
        1 => {
            let n = (usize::from(enc & 0x3f) << 8) | usize::from(byte(at)?);
            let s = slice(at + 1, n)?;
            at += 1 + n;
            Entry::Str(s)
        }
        2 => {
            let h = slice(at, 4)?;
            let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let s = slice(at + 4, n)?;
            at += 4 + n;
            Entry::Str(s)
        }
        _ => {
            let (value, n) = match enc {
                0xc0 => (signed(le(slice(at, 2)?), 16), 2),
                0xd0 => (signed(le(slice(at, 4)?), 32), 4),
                0xe0 => (le(slice(at, 8)?) as i64, 8),
                0xf0 => (signed(le(slice(at, 3)?), 24), 3),
                0xfe => (signed(le(slice(at, 1)?), 8), 1),
                0xf1..=0xfd => (i64::from(enc & 0x0f) - 1, 0),
                _ => {
                    return Err(format!(
                        "unknown ziplist encoding 0x{enc:02x} at {}",
                        at - 1
                    ));
                }
            };
            at += n;
            Entry::Int(value)
        }
    };
    // The end byte must still follow.
    if at >= data.len() {
        return Err(past());
    }
    walk.prev_size = at - pos;
    walk.last_start = pos;
    walk.pos = at;
    walk.seen += 1;
    Ok(Some(entry))
}

/// Test helpers: ziplists built the way Redis builds them.
#[cfg(test)]
pub(super) mod build {
    use super::*;
    use crate::rdb::listpack::build::E;

    fn entry(out: &mut Vec<u8>, prev: usize, e: &E) {
        if prev < 254 {
            out.push(prev as u8);
        } else {
            out.push(0xfe);
            out.extend_from_slice(&(prev as u32).to_le_bytes());
        }
        match *e {
            E::S(s) if s.len() < 64 => {
                out.push(s.len() as u8);
                out.extend_from_slice(s);
            }
            E::S(s) if s.len() < 16384 => {
                out.push(0x40 | (s.len() >> 8) as u8);
                out.push(s.len() as u8);
                out.extend_from_slice(s);
            }
            E::S(s) => {
                out.push(0x80);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s);
            }
            E::I(v) if (0..=12).contains(&v) => out.push(0xf1 + v as u8),
            E::I(v) if i8::try_from(v).is_ok() => out.extend([0xfe, v as u8]),
            E::I(v) if i16::try_from(v).is_ok() => {
                out.push(0xc0);
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
            E::I(v) if (-8388608..=8388607).contains(&v) => {
                out.push(0xf0);
                out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            E::I(v) if i32::try_from(v).is_ok() => {
                out.push(0xd0);
                out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            E::I(v) => {
                out.push(0xe0);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// A ziplist of `entries`.
    pub fn ziplist(entries: &[E]) -> Vec<u8> {
        let mut out = vec![0; HEADER];
        let mut prev = 0;
        let mut last = HEADER;
        for e in entries {
            let start = out.len();
            entry(&mut out, prev, e);
            prev = out.len() - start;
            last = start;
        }
        out.push(END);
        let total = out.len() as u32;
        out[..4].copy_from_slice(&total.to_le_bytes());
        out[4..8].copy_from_slice(&(last as u32).to_le_bytes());
        let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
        out[8..10].copy_from_slice(&count.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::ziplist;
    use super::*;
    use crate::rdb::listpack::build::E;

    fn all(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut walk = open(data)?;
        let mut out = Vec::new();
        while let Some(e) = next(data, &mut walk)? {
            out.push(e.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn the_example_in_ziplist_c() {
        // "2" and "5": [0f 00 00 00] [0c 00 00 00] [02 00] [00 f3] [02 f6] [ff]
        let zl = [
            0x0f, 0, 0, 0, 0x0c, 0, 0, 0, 0x02, 0, 0x00, 0xf3, 0x02, 0xf6, 0xff,
        ];
        assert_eq!(all(&zl).unwrap(), vec![b"2".to_vec(), b"5".to_vec()]);
        assert_eq!(ziplist(&[E::I(2), E::I(5)]), zl, "the builder agrees");
    }

    #[test]
    fn every_encoding_reads_back() {
        let big = vec![b'b'; 20000];
        let mid = vec![b'm'; 300];
        let ints = [
            0,
            12,
            13,
            -1,
            127,
            -128,
            128,
            32767,
            -32768,
            32768,
            8388607,
            -8388608,
            8388608,
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
        ];
        let mut entries = vec![
            E::S(b""),
            E::S(b"hi"),
            E::S(&mid),
            E::S(&big),
            E::S(b"after"),
        ];
        entries.extend(ints.iter().map(|&v| E::I(v)));
        let zl = ziplist(&entries);
        let mut want = vec![
            b"".to_vec(),
            b"hi".to_vec(),
            mid.clone(),
            big.clone(),
            b"after".to_vec(),
        ];
        want.extend(ints.iter().map(|v| v.to_string().into_bytes()));
        assert_eq!(all(&zl).unwrap(), want);
    }

    #[test]
    fn corrupt_ziplists_are_refused() {
        let good = ziplist(&[E::S(b"abc"), E::I(300), E::S(b"z")]);
        assert_eq!(all(&good).unwrap().len(), 3);
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(all(&bad).unwrap_err().contains("header says"));
        let mut bad = good.clone();
        bad[8] = 2;
        assert!(all(&bad).unwrap_err().contains("2 entries"));
        let mut bad = good.clone();
        bad[4] ^= 1;
        assert!(all(&bad).unwrap_err().contains("last entry"));
        let mut bad = good.clone();
        bad[15] = 9; // the second entry's prevlen
        assert!(all(&bad).unwrap_err().contains("entry before it"));
        let mut bad = good.clone();
        bad[11] = 60; // a string longer than the ziplist
        assert!(all(&bad).unwrap_err().contains("past the end"));
        let mut bad = good.clone();
        bad[16] = 0xc5;
        assert!(all(&bad).unwrap_err().contains("unknown ziplist encoding"));
        for n in 0..good.len() {
            let _ = all(&good[..n]);
        }
    }
}
