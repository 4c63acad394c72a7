//! LZF decompression, for strings Redis saved compressed (`rdbcompression
//! yes`, strings over 20 bytes that shrink) and compressed quicklist nodes.
//!
//! The stream is a series of runs, each starting with a control byte: below
//! 32 it is a literal run of `ctrl + 1` bytes; otherwise its top three bits
//! are a length (7 meaning "add the next byte") and the low five, with the
//! next byte, a distance back into what was already written, from which
//! `length + 2` bytes are copied (possibly overlapping what they produce).

/// At most how many bytes one input byte can stand for: a back reference of
/// three bytes (control, extra length, distance) copies 7 + 255 + 2 = 264
/// bytes. A declared length beyond this ratio cannot be right, so callers
/// refuse it before allocating anything for it.
pub const MAX_RATIO: u64 = 88;

/// Decompress `input` into `out` (appended), which must come to exactly
/// `expected` bytes. The error says what is wrong with the input.
pub fn decompress(input: &[u8], expected: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let end = start
        .checked_add(expected)
        .ok_or("LZF output length overflows")?;
    out.reserve(expected);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let literal = input
                .get(i..i + run)
                .ok_or("LZF literal run goes past the end of the input")?;
            if out.len() + run > end {
                return Err(format!(
                    "LZF data decompresses to more than the {expected} bytes declared"
                ));
            }
            out.extend_from_slice(literal);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(
                    *input
                        .get(i)
                        .ok_or("LZF back reference cut off by the end of the input")?,
                );
                i += 1;
            }
            let low = usize::from(
                *input
                    .get(i)
                    .ok_or("LZF back reference cut off by the end of the input")?,
            );
            i += 1;
            let distance = ((ctrl & 0x1f) << 8) + low + 1;
            let len = len + 2;
            let produced = out.len() - start;
            if distance > produced {
                return Err(format!(
                    "LZF back reference {distance} bytes back, before the start of the output"
                ));
            }
            if out.len() + len > end {
                return Err(format!(
                    "LZF data decompresses to more than the {expected} bytes declared"
                ));
            }
            let from = out.len() - distance;
            if distance >= len {
                out.extend_from_within(from..from + len);
            } else {
                // The copy overlaps what it writes (a repeated pattern):
                // byte by byte, each read after the one before is written.
                for k in 0..len {
                    let b = out[from + k];
                    out.push(b);
                }
            }
        }
    }
    if out.len() != end {
        return Err(format!(
            "LZF data decompresses to {} bytes, not the {expected} declared",
            out.len() - start
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], expected: usize) -> Result<Vec<u8>, String> {
        let mut out = b"prefix".to_vec();
        decompress(input, expected, &mut out)?;
        assert!(out.starts_with(b"prefix"), "appends after what was there");
        Ok(out[6..].to_vec())
    }

    #[test]
    fn literal_runs() {
        assert_eq!(run(&[2, b'a', b'b', b'c'], 3).unwrap(), b"abc");
        assert_eq!(run(&[0, b'x', 0, b'y'], 2).unwrap(), b"xy");
        let long: Vec<u8> = std::iter::once(31).chain(0..32u8).collect();
        assert_eq!(run(&long, 32).unwrap(), (0..32u8).collect::<Vec<_>>());
        assert_eq!(run(&[], 0).unwrap(), b"");
    }

    #[test]
    fn back_references_short_long_and_overlapping() {
        // "abc" then copy 3 (len field 1 -> 1 + 2) from 3 back: "abcabc".
        assert_eq!(run(&[2, b'a', b'b', b'c', 0x20, 2], 6).unwrap(), b"abcabc");
        // "a" then copy 9 from 1 back (overlapping run): ten 'a's.
        assert_eq!(run(&[0, b'a', 0xe0, 0, 0], 10).unwrap(), b"aaaaaaaaaa");
        // len 7 + extra byte 20 = 27 + 2 = 29 copies of "ab" pattern.
        let out = run(&[1, b'a', b'b', 0xe0, 20, 1], 31).unwrap();
        assert_eq!(out.len(), 31);
        assert!(out.chunks(2).all(|c| c == b"ab" || c == b"a"));
        // A distance using the high bits of the control byte: 256 + 3 back.
        let mut input = vec![31];
        input.extend(0..32u8);
        let mut expected: Vec<u8> = (0..32u8).collect();
        for _ in 0..8 {
            input.push(31);
            input.extend(0..32u8);
            expected.extend(0..32u8);
        }
        // 288 bytes written; copy 4 bytes from 259 back.
        input.extend([0x40 | 1, 2]);
        let from = expected.len() - 259;
        let copied: Vec<u8> = expected[from..from + 4].to_vec();
        expected.extend(copied);
        assert_eq!(run(&input, expected.len()).unwrap(), expected);
    }

    #[test]
    fn real_redis_output() {
        // Redis 7.0's RDB bytes for SET k <50 x 'a'>: c3 09 32, then these 9.
        let fifty = run(&[0x01, b'a', b'a', 0xe0, 0x25, 0x00, 0x01, b'a', b'a'], 50).unwrap();
        assert_eq!(fifty, vec![b'a'; 50]);
        // And for SET m <"hello world, hello world, hello world! " x 3>:
        // c3 20 40 75 (32 bytes that make 117).
        let mut input = vec![0x0d];
        input.extend_from_slice(b"hello world, h");
        input.extend_from_slice(&[
            0xe0, 0x0e, 0x0c, 0x00, b'!', 0xe0, 0x10, 0x19, 0xe0, 0x04, 0x33, 0xe0, 0x1e, 0x26,
            0x01, b'!', b' ',
        ]);
        assert_eq!(input.len(), 32);
        let text = run(&input, 117).unwrap();
        assert_eq!(text, b"hello world, hello world, hello world! ".repeat(3));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(run(&[5, b'a'], 6).unwrap_err().contains("literal run"));
        assert!(
            run(&[2, b'a', b'b', b'c'], 2)
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            run(&[2, b'a', b'b', b'c'], 4)
                .unwrap_err()
                .contains("not the 4")
        );
        assert!(
            run(&[0, b'a', 0x20, 5], 4)
                .unwrap_err()
                .contains("before the start")
        );
        assert!(run(&[0, b'a', 0x20], 4).unwrap_err().contains("cut off"));
        assert!(run(&[0, b'a', 0xe0], 12).unwrap_err().contains("cut off"));
        assert!(
            run(&[0, b'a', 0xe0, 0, 0], 5)
                .unwrap_err()
                .contains("more than")
        );
    }
}
