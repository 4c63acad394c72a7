//! The RDB's own small encodings: lengths, strings (raw, integer-encoded or
//! LZF-compressed), doubles, and integers written back as the decimal text
//! Redis would reply with.

use std::io::BufRead;

use super::error::RdbError;
use super::input::Input;
use super::lzf;

/// How a string is stored, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StrHeader {
    /// `n` bytes follow as they are.
    Raw(u64),
    /// An integer (INT8/16/32), meaning its decimal text.
    Int(i64),
    /// `clen` bytes of LZF that decompress to `len`.
    Lzf { clen: u64, len: u64 },
}

impl<R: BufRead> Input<R> {
    /// A length, or (true) the number of a special encoding.
    fn len_or_encoding(&mut self) -> Result<(u64, bool), RdbError> {
        let at = self.offset();
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => (u64::from(first & 0x3f), false),
            1 => {
                let next = self.u8()?;
                ((u64::from(first & 0x3f) << 8) | u64::from(next), false)
            }
            3 => (u64::from(first & 0x3f), true),
            _ => match first {
                0x80 => (u64::from(u32::from_be_bytes(self.array()?)), false),
                0x81 => (u64::from_be_bytes(self.array()?), false),
                _ => {
                    return Err(RdbError::corrupt(
                        at,
                        format!("unknown length encoding 0x{first:02x}"),
                    ));
                }
            },
        })
    }

    /// A length (a count, a size, an id part).
    pub fn len(&mut self) -> Result<u64, RdbError> {
        let at = self.offset();
        match self.len_or_encoding()? {
            (n, false) => Ok(n),
            (_, true) => Err(RdbError::corrupt(
                at,
                "a string encoding where a length belongs",
            )),
        }
    }

    /// How the next string is stored.
    pub fn string_header(&mut self) -> Result<StrHeader, RdbError> {
        let at = self.offset();
        match self.len_or_encoding()? {
            (n, false) => Ok(StrHeader::Raw(n)),
            (0, true) => Ok(StrHeader::Int(i64::from(self.u8()? as i8))),
            (1, true) => Ok(StrHeader::Int(i64::from(i16::from_le_bytes(self.array()?)))),
            (2, true) => Ok(StrHeader::Int(i64::from(i32::from_le_bytes(self.array()?)))),
            (3, true) => {
                let clen = self.len()?;
                let len = self.len()?;
                if len > clen.saturating_mul(lzf::MAX_RATIO) {
                    return Err(RdbError::corrupt(
                        at,
                        format!("LZF string of {clen} bytes cannot make the {len} declared"),
                    ));
                }
                Ok(StrHeader::Lzf { clen, len })
            }
            (e, true) => Err(RdbError::corrupt(
                at,
                format!("unknown string encoding {e}"),
            )),
        }
    }

    /// The rest of a string whose header was read, appended to `out`;
    /// `scratch` holds compressed bytes.
    pub fn string_body(
        &mut self,
        header: StrHeader,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), RdbError> {
        match header {
            StrHeader::Raw(n) => self.append(n, out),
            StrHeader::Int(v) => {
                push_int(out, v);
                Ok(())
            }
            StrHeader::Lzf { clen, len } => {
                let at = self.offset();
                scratch.clear();
                self.append(clen, scratch)?;
                // Bounded: `len` was checked against the bytes just read.
                let len = usize::try_from(len)
                    .map_err(|_| RdbError::corrupt(at, "LZF string too long"))?;
                lzf::decompress(scratch, len, out).map_err(|e| RdbError::corrupt(at, e))
            }
        }
    }

    /// A whole string into `out` (cleared first).
    pub fn string_into(
        &mut self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), RdbError> {
        out.clear();
        let header = self.string_header()?;
        self.string_body(header, out, scratch)
    }

    /// A whole string.
    pub fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        let mut out = Vec::new();
        let header = self.string_header()?;
        self.string_body(header, &mut out, &mut Vec::new())?;
        Ok(out)
    }

    /// Read past a string without keeping it.
    pub fn skip_string(&mut self) -> Result<(), RdbError> {
        match self.string_header()? {
            StrHeader::Raw(n) => self.skip(n),
            StrHeader::Int(_) => Ok(()),
            StrHeader::Lzf { clen, .. } => self.skip(clen),
        }
    }

    /// A little-endian u64 (times in milliseconds).
    pub fn u64_le(&mut self) -> Result<u64, RdbError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A double as 8 little-endian bytes (RDB 8+ sorted sets, modules).
    pub fn f64_binary(&mut self) -> Result<f64, RdbError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A double as text with a length byte, which may say NaN (253),
    /// infinity (254) or minus infinity (255).
    pub fn f64_text(&mut self) -> Result<f64, RdbError> {
        let at = self.offset();
        let len = self.u8()?;
        match len {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            _ => {
                let mut buf = [0u8; 252];
                let text = &mut buf[..usize::from(len)];
                self.exact(text)?;
                parse_double(text).ok_or_else(|| {
                    RdbError::corrupt(
                        at,
                        format!("{:?} is not a number", String::from_utf8_lossy(text)),
                    )
                })
            }
        }
    }

    /// Read past a text double.
    pub fn skip_f64_text(&mut self) -> Result<(), RdbError> {
        match self.u8()? {
            253..=255 => Ok(()),
            len => self.skip(u64::from(len)),
        }
    }
}

/// Append `v` in decimal, as Redis replies with an integer-encoded string.
pub(super) fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// `v` in decimal.
pub(super) fn int_text(v: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    push_int(&mut out, v);
    out
}

/// A double as Redis writes it in text (`1.5`, `-3`, `1e+300`, `inf`,
/// `-inf`, `nan`).
pub(super) fn parse_double(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(bytes: &[u8]) -> Input<&[u8]> {
        Input::new(bytes)
    }

    #[test]
    fn length_encodings() {
        assert_eq!(input(&[0x05]).len().unwrap(), 5);
        assert_eq!(input(&[0x3f]).len().unwrap(), 63);
        assert_eq!(input(&[0x41, 0x02]).len().unwrap(), 0x102);
        assert_eq!(input(&[0x7f, 0xff]).len().unwrap(), 16383);
        assert_eq!(input(&[0x80, 0, 1, 0, 0]).len().unwrap(), 65536);
        assert_eq!(
            input(&[0x81, 1, 0, 0, 0, 0, 0, 0, 2]).len().unwrap(),
            (1 << 56) + 2
        );
        let e = input(&[0x82]).len().unwrap_err();
        assert!(
            e.to_string().contains("unknown length encoding 0x82"),
            "{e}"
        );
        let e = input(&[0xc0, 1]).len().unwrap_err();
        assert!(e.to_string().contains("where a length belongs"), "{e}");
        assert!(matches!(
            input(&[0x80, 0, 1]).len().unwrap_err(),
            RdbError::Truncated { offset: 3 }
        ));
    }

    #[test]
    fn integer_strings_are_decimal_text() {
        assert_eq!(input(&[0xc0, 0x7f]).string().unwrap(), b"127");
        assert_eq!(input(&[0xc0, 0x80]).string().unwrap(), b"-128");
        assert_eq!(input(&[0xc1, 0x00, 0x80]).string().unwrap(), b"-32768");
        assert_eq!(input(&[0xc1, 0x39, 0x30]).string().unwrap(), b"12345");
        assert_eq!(
            input(&[0xc2, 0xff, 0xff, 0xff, 0x7f]).string().unwrap(),
            b"2147483647"
        );
        assert_eq!(
            input(&[0xc2, 0x00, 0x00, 0x00, 0x80]).string().unwrap(),
            b"-2147483648"
        );
        let e = input(&[0xc4]).string().unwrap_err();
        assert!(e.to_string().contains("unknown string encoding 4"), "{e}");
        assert_eq!(int_text(i64::MIN), b"-9223372036854775808");
        assert_eq!(int_text(i64::MAX), b"9223372036854775807");
        assert_eq!(int_text(0), b"0");
        assert_eq!(int_text(-7), b"-7");
    }

    #[test]
    fn raw_and_lzf_strings() {
        assert_eq!(input(&[0x03, b'a', b'b', b'c']).string().unwrap(), b"abc");
        assert_eq!(input(&[0x00]).string().unwrap(), b"");
        let lzf = [
            0xc3, 0x09, 0x32, 0x01, b'a', b'a', 0xe0, 0x25, 0x00, 0x01, b'a', b'a',
        ];
        assert_eq!(input(&lzf).string().unwrap(), vec![b'a'; 50]);
        let mut skipped = input(&lzf);
        skipped.skip_string().unwrap();
        assert_eq!(skipped.offset(), lzf.len() as u64);
        // A compressed length that cannot hold what it claims.
        let e = input(&[0xc3, 0x01, 0x81, 0, 0, 0, 0, 0, 0, 1, 0])
            .string()
            .unwrap_err();
        assert!(e.to_string().contains("cannot make"), "{e}");
        let e = input(&[0xc3, 0x02, 0x05, 0x00, b'a']).string().unwrap_err();
        assert!(e.to_string().contains("LZF"), "{e}");
        assert!(matches!(
            input(&[0x05, b'a']).string().unwrap_err(),
            RdbError::Truncated { offset: 2 }
        ));
    }

    #[test]
    fn doubles() {
        assert_eq!(input(&[3, b'1', b'.', b'5']).f64_text().unwrap(), 1.5);
        assert_eq!(input(&[254]).f64_text().unwrap(), f64::INFINITY);
        assert_eq!(input(&[255]).f64_text().unwrap(), f64::NEG_INFINITY);
        assert!(input(&[253]).f64_text().unwrap().is_nan());
        assert_eq!(
            input(&[6, b'1', b'e', b'+', b'3', b'0', b'0'])
                .f64_text()
                .unwrap(),
            1e300
        );
        assert!(input(&[2, b'x', b'y']).f64_text().is_err());
        assert_eq!(
            input(&2.5f64.to_le_bytes()).f64_binary().unwrap(),
            2.5,
            "binary doubles are little-endian"
        );
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_double(b"-0"), Some(-0.0));
        assert_eq!(parse_double(b"1 "), None);
    }
}
