//! Listpacks: the compact encoding of small hashes, sets, sorted sets,
//! quicklist-2 list nodes and stream nodes (Redis 7.0+; streams since 5.0).
//!
//! A listpack is a 6-byte header (total bytes u32, element count u16, 65535
//! meaning "count them"), the entries, and a 0xFF end byte. Each entry is an
//! encoding byte that says whether a string or an integer follows and how
//! long it is, the data, and a "backlen" (the entry's own size, 7 bits a
//! byte, for walking backwards). Every length is checked against the blob,
//! so a corrupt listpack is an error, never an out-of-bounds read.

use super::strings::push_int;

/// One element of a listpack or ziplist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// A string, as stored.
    Str(&'a [u8]),
    /// An integer; Redis replies with its decimal text.
    Int(i64),
}

impl Entry<'_> {
    /// The element as Redis would reply with it.
    pub fn to_vec(self) -> Vec<u8> {
        match self {
            Entry::Str(s) => s.to_vec(),
            Entry::Int(v) => {
                let mut out = Vec::with_capacity(20);
                push_int(&mut out, v);
                out
            }
        }
    }

    /// The integer, when the element is one.
    pub fn int(self) -> Option<i64> {
        match self {
            Entry::Int(v) => Some(v),
            Entry::Str(_) => None,
        }
    }
}

/// Where a walk over a listpack is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Walk {
    pos: usize,
    declared: Option<usize>,
    seen: usize,
}

const HEADER: usize = 6;
const END: u8 = 0xff;

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Check a listpack's header and end byte; a walk from its first entry.
pub(super) fn open(data: &[u8]) -> Result<Walk, String> {
    if data.len() < HEADER + 1 {
        return Err(format!("listpack of {} bytes is too short", data.len()));
    }
    let total = le(&data[..4]);
    if total != data.len() as u64 {
        return Err(format!(
            "listpack header says {total} bytes, the string holds {}",
            data.len()
        ));
    }
    if data.last() != Some(&END) {
        return Err("listpack does not end with 0xFF".into());
    }
    let count = le(&data[4..6]) as usize;
    Ok(Walk {
        pos: HEADER,
        declared: (count != usize::from(u16::MAX)).then_some(count),
        seen: 0,
    })
}

/// How many bytes the backlen of an entry of `size` bytes takes.
fn backlen_size(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Decode a backlen that ends just before `end`.
fn backlen(data: &[u8], end: usize, len: usize) -> Option<u64> {
    let mut value = 0u64;
    for k in 0..len {
        let b = *data.get(end.checked_sub(1 + k)?)?;
        value |= u64::from(b & 0x7f) << (7 * k);
        let last = k + 1 == len;
        if (b & 0x80 == 0) != last {
            return None;
        }
    }
    Some(value)
}

/// Sign-extend the low `bits` bits of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The next entry, or `None` at the end byte (when the count and layout
/// are checked).
pub(super) fn next<'a>(data: &'a [u8], walk: &mut Walk) -> Result<Option<Entry<'a>>, String> {
    let pos = walk.pos;
    let at = |n: usize| -> Result<&'a [u8], String> {
        data.get(pos..pos + n)
            .ok_or_else(|| format!("listpack entry at {pos} goes past the end"))
    };
    let b = *data
        .get(pos)
        .ok_or_else(|| format!("listpack entry at {pos} goes past the end"))?;
    if b == END {
        if pos + 1 != data.len() {
            return Err(format!("listpack end byte at {pos}, before its end"));
        }
        if let Some(n) = walk.declared
            && n != walk.seen
        {
            return Err(format!(
                "listpack header says {n} entries, it holds {}",
                walk.seen
            ));
        }
        return Ok(None);
    }
    // (entry, encoded size without the backlen)
    let (entry, size) = if b & 0x80 == 0 {
        (Entry::Int(i64::from(b & 0x7f)), 1)
    } else if b & 0xc0 == 0x80 {
        let n = usize::from(b & 0x3f);
        (Entry::Str(&at(1 + n)?[1..]), 1 + n)
    } else if b & 0xe0 == 0xc0 {
        let h = at(2)?;
        let v = (u64::from(h[0] & 0x1f) << 8) | u64::from(h[1]);
        (Entry::Int(signed(v, 13)), 2)
    } else if b & 0xf0 == 0xe0 {
        let h = at(2)?;
        let n = (usize::from(h[0] & 0x0f) << 8) | usize::from(h[1]);
        (Entry::Str(&at(2 + n)?[2..]), 2 + n)
    } else {
        match b {
            0xf0 => {
                let n = le(&at(5)?[1..]) as usize;
                let total = n
                    .checked_add(5)
                    .ok_or_else(|| format!("listpack string at {pos} is too long"))?;
                (Entry::Str(&at(total)?[5..]), total)
            }
            0xf1 => (Entry::Int(signed(le(&at(3)?[1..]), 16)), 3),
            0xf2 => (Entry::Int(signed(le(&at(4)?[1..]), 24)), 4),
            0xf3 => (Entry::Int(signed(le(&at(5)?[1..]), 32)), 5),
            0xf4 => (Entry::Int(le(&at(9)?[1..]) as i64), 9),
            _ => return Err(format!("unknown listpack encoding 0x{b:02x} at {pos}")),
        }
    };
    let back = backlen_size(size);
    let end = pos + size + back;
    // The end byte must still follow.
    if end >= data.len() {
        return Err(format!("listpack entry at {pos} goes past the end"));
    }
    if backlen(data, end, back) != Some(size as u64) {
        return Err(format!(
            "listpack entry at {pos}: its backlen does not say its size {size}"
        ));
    }
    walk.pos = end;
    walk.seen += 1;
    Ok(Some(entry))
}

/// Listpacks built the way Redis builds them: for RESTORE payloads, and for
/// the tests.
pub(super) mod build {
    use super::*;

    /// One entry of a listpack being built.
    pub enum E<'a> {
        S(&'a [u8]),
        I(i64),
    }

    /// The encoder in listpack.c: high 7-bit groups first, every byte but
    /// the first flagged, so that read backwards the flag means "more".
    pub fn encode_backlen(out: &mut Vec<u8>, l: usize) {
        let n = backlen_size(l);
        for k in (0..n).rev() {
            let mut b = ((l >> (7 * k)) & 0x7f) as u8;
            if k != n - 1 {
                b |= 0x80;
            }
            out.push(b);
        }
    }

    /// Append one entry to a listpack being built.
    pub fn entry(out: &mut Vec<u8>, e: &E) {
        let start = out.len();
        match *e {
            E::S(s) if s.len() < 64 => {
                out.push(0x80 | s.len() as u8);
                out.extend_from_slice(s);
            }
            E::S(s) if s.len() < 4096 => {
                out.push(0xe0 | (s.len() >> 8) as u8);
                out.push(s.len() as u8);
                out.extend_from_slice(s);
            }
            E::S(s) => {
                out.push(0xf0);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
            E::I(v) if (0..=127).contains(&v) => out.push(v as u8),
            E::I(v) if (-4096..=4095).contains(&v) => {
                let u = (v as u64) & 0x1fff;
                out.push(0xc0 | (u >> 8) as u8);
                out.push(u as u8);
            }
            E::I(v) if (-32768..=32767).contains(&v) => {
                out.push(0xf1);
                out.extend_from_slice(&(v as i16).to_le_bytes());
            }
            E::I(v) if (-8388608..=8388607).contains(&v) => {
                out.push(0xf2);
                out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            E::I(v) if i32::try_from(v).is_ok() => {
                out.push(0xf3);
                out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            E::I(v) => {
                out.push(0xf4);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let size = out.len() - start;
        encode_backlen(out, size);
    }

    /// A listpack of `entries`.
    #[cfg(test)]
    pub fn listpack(entries: &[E]) -> Vec<u8> {
        let mut out = start();
        for e in entries {
            entry(&mut out, e);
        }
        finish(out, entries.len())
    }

    /// An empty listpack's header, to append entries to.
    pub fn start() -> Vec<u8> {
        vec![0; HEADER]
    }

    /// Close a listpack of `count` entries: its end byte and header.
    pub fn finish(mut out: Vec<u8>, count: usize) -> Vec<u8> {
        finish_at(&mut out, 0, count);
        out
    }

    /// Start a listpack at the end of `out`; returns where it starts.
    pub fn start_at(out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        start
    }

    /// [`finish`] a listpack built at the end of `out` from `start` on.
    pub fn finish_at(out: &mut Vec<u8>, start: usize, count: usize) {
        out.push(END);
        let total = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&total.to_le_bytes());
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        out[start + 4..start + 6].copy_from_slice(&count.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::build::{E, listpack};
    use super::*;

    fn all(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut walk = open(data)?;
        let mut out = Vec::new();
        while let Some(e) = next(data, &mut walk)? {
            out.push(e.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn every_encoding_reads_back() {
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 300];
        let ints = [
            0,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -4097,
            32767,
            -32768,
            32768,
            8388607,
            -8388608,
            8388608,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
        ];
        let mut entries = vec![E::S(b""), E::S(b"hello"), E::S(&mid), E::S(&long)];
        entries.extend(ints.iter().map(|&v| E::I(v)));
        let lp = listpack(&entries);
        let got = all(&lp).unwrap();
        let mut want: Vec<Vec<u8>> = vec![b"".to_vec(), b"hello".to_vec(), mid.clone(), long];
        want.extend(ints.iter().map(|v| v.to_string().into_bytes()));
        assert_eq!(got, want);
    }

    #[test]
    fn a_real_listpack() {
        // HSET h f v on Redis 7.0: the RDB string of type 16.
        let lp = [
            0x0d, 0, 0, 0, 0x02, 0, 0x81, b'f', 0x02, 0x81, b'v', 0x02, 0xff,
        ];
        assert_eq!(all(&lp).unwrap(), vec![b"f".to_vec(), b"v".to_vec()]);
        // SADD s 1 2 into a listpack: 7-bit integers.
        let lp = [0x0b, 0, 0, 0, 0x02, 0, 0x01, 0x01, 0x02, 0x01, 0xff];
        assert_eq!(all(&lp).unwrap(), vec![b"1".to_vec(), b"2".to_vec()]);
    }

    #[test]
    fn backlens_of_every_width() {
        for size in [1usize, 126, 127, 128, 16381, 16382, 16383, 2097150, 2097151] {
            let mut out = Vec::new();
            super::build::encode_backlen(&mut out, size);
            assert_eq!(out.len(), backlen_size(size), "size {size}");
            assert_eq!(backlen(&out, out.len(), out.len()), Some(size as u64));
        }
    }

    #[test]
    fn corrupt_listpacks_are_refused() {
        let good = listpack(&[E::S(b"abc"), E::I(300)]);
        assert!(all(&good).is_ok());
        let mut bad = good.clone();
        bad[0] += 1;
        assert!(all(&bad).unwrap_err().contains("header says"));
        let mut bad = good.clone();
        bad[4] = 3;
        assert!(all(&bad).unwrap_err().contains("3 entries"));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = 0;
        assert!(all(&bad).unwrap_err().contains("0xFF"));
        let mut bad = good.clone();
        bad[6] = 0x80 | 40; // a string longer than the listpack
        assert!(all(&bad).unwrap_err().contains("past the end"));
        let mut bad = good.clone();
        bad[6] = 0xf7;
        assert!(all(&bad).unwrap_err().contains("unknown listpack encoding"));
        let mut bad = good.clone();
        bad[10] = 9; // the first entry's backlen
        assert!(all(&bad).unwrap_err().contains("backlen"));
        let mut bad = good.clone();
        bad[11] = 0xff; // an end byte in the middle
        assert!(all(&bad).unwrap_err().contains("before its end"));
        assert!(all(&[1, 0, 0]).unwrap_err().contains("too short"));
        // Every truncation is an error, never a panic.
        for n in 0..good.len() {
            let _ = all(&good[..n]);
        }
    }
}
