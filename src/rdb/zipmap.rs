//! Zipmaps: how Redis 2.x stored small hashes. Loading an old file into a
//! newer server converts them, so a file saved since has none; they are
//! read for completeness. A count byte (254 and up: "count them"), then per
//! field its length, the field, the value's length, a byte of free space
//! after the value, the value and that free space; a length is one byte
//! below 254, or 254 and a u32; 0xFF ends the map.

/// Where a walk over a zipmap is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Walk {
    pos: usize,
    seen: usize,
}

/// A field and its value.
pub(super) type Pair<'a> = (&'a [u8], &'a [u8]);

const END: u8 = 0xff;
const BIGLEN: u8 = 254;

/// Check the end byte; a walk from the first field.
pub(super) fn open(data: &[u8]) -> Result<Walk, String> {
    if data.len() < 2 {
        return Err(format!("zipmap of {} bytes is too short", data.len()));
    }
    if data.last() != Some(&END) {
        return Err("zipmap does not end with 0xFF".into());
    }
    Ok(Walk { pos: 1, seen: 0 })
}

fn length(data: &[u8], pos: &mut usize) -> Result<usize, String> {
    let past = || format!("zipmap entry at {pos} goes past the end");
    let first = *data.get(*pos).ok_or_else(past)?;
    match first {
        END => Err(format!("zipmap ends inside an entry at {pos}")),
        BIGLEN => {
            let b = data.get(*pos + 1..*pos + 5).ok_or_else(past)?;
            *pos += 5;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        n => {
            *pos += 1;
            Ok(usize::from(n))
        }
    }
}

/// The next field and value, or `None` at the end byte.
pub(super) fn next<'a>(data: &'a [u8], walk: &mut Walk) -> Result<Option<Pair<'a>>, String> {
    let start = walk.pos;
    let past = || format!("zipmap entry at {start} goes past the end");
    if data.get(start) == Some(&END) {
        if start + 1 != data.len() {
            return Err(format!("zipmap end byte at {start}, before its end"));
        }
        let declared = data.first().copied().unwrap_or(0);
        if declared < BIGLEN && usize::from(declared) != walk.seen {
            return Err(format!(
                "zipmap says {declared} fields, it holds {}",
                walk.seen
            ));
        }
        return Ok(None);
    }
    let mut pos = start;
    let flen = length(data, &mut pos)?;
    let field = data
        .get(pos..pos.checked_add(flen).ok_or_else(past)?)
        .ok_or_else(past)?;
    pos += flen;
    let vlen = length(data, &mut pos)?;
    let free = usize::from(*data.get(pos).ok_or_else(past)?);
    pos += 1;
    let value = data
        .get(pos..pos.checked_add(vlen).ok_or_else(past)?)
        .ok_or_else(past)?;
    pos += vlen + free;
    if pos >= data.len() {
        return Err(past());
    }
    walk.pos = pos;
    walk.seen += 1;
    Ok(Some((field, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = Vec<(Vec<u8>, Vec<u8>)>;

    fn all(data: &[u8]) -> Result<Owned, String> {
        let mut walk = open(data)?;
        let mut out = Vec::new();
        while let Some((f, v)) = next(data, &mut walk)? {
            out.push((f.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn the_example_in_zipmap_c() {
        let zm = b"\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff";
        assert_eq!(
            all(zm).unwrap(),
            vec![
                (b"foo".to_vec(), b"bar".to_vec()),
                (b"hello".to_vec(), b"world".to_vec())
            ]
        );
    }

    #[test]
    fn free_space_and_long_lengths() {
        let long = vec![b'v'; 300];
        let mut zm = vec![2, 1, b'a', 1, 2, b'x', 0, 0];
        zm.extend([1, b'b', 254]);
        zm.extend(300u32.to_le_bytes());
        zm.push(0);
        zm.extend(&long);
        zm.push(0xff);
        assert_eq!(
            all(&zm).unwrap(),
            vec![(b"a".to_vec(), b"x".to_vec()), (b"b".to_vec(), long)]
        );
        // 254 in the count byte: "count them".
        zm[0] = 254;
        assert_eq!(all(&zm).unwrap().len(), 2);
    }

    #[test]
    fn corrupt_zipmaps_are_refused() {
        let good = b"\x02\x03foo\x03\x00bar\x05hello\x05\x00world\xff".to_vec();
        let mut bad = good.clone();
        bad[0] = 3;
        assert!(all(&bad).unwrap_err().contains("says 3 fields"));
        let mut bad = good.clone();
        bad[1] = 40;
        assert!(all(&bad).unwrap_err().contains("past the end"));
        let mut bad = good.clone();
        bad[6] = 9; // free space past the end
        assert!(all(&bad).is_err());
        let mut bad = good.clone();
        bad[10] = 0xff;
        assert!(all(&bad).unwrap_err().contains("before its end"));
        assert!(all(b"\x00").is_err());
        for n in 0..good.len() {
            let _ = all(&good[..n]);
        }
    }
}
