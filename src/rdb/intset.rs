//! Intsets: the encoding of small sets of integers. A header of the width
//! of every element (2, 4 or 8 bytes, u32) and their count (u32), then the
//! elements, little-endian, in increasing order.

/// A checked intset: its element width and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Intset {
    width: usize,
    count: usize,
}

const HEADER: usize = 8;

impl Intset {
    /// Check the header against the blob's size.
    pub fn open(data: &[u8]) -> Result<Intset, String> {
        let header = data
            .get(..HEADER)
            .ok_or_else(|| format!("intset of {} bytes is too short", data.len()))?;
        let width = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if !matches!(width, 2 | 4 | 8) {
            return Err(format!("intset element width {width} is not 2, 4 or 8"));
        }
        let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if count.checked_mul(width).and_then(|n| n.checked_add(HEADER)) != Some(data.len()) {
            return Err(format!(
                "intset of {count} elements of {width} bytes cannot be {} bytes long",
                data.len()
            ));
        }
        Ok(Intset { width, count })
    }

    /// How many elements.
    #[cfg(test)]
    pub fn len(self) -> usize {
        self.count
    }

    /// Element `i` (`None` past the end).
    pub fn get(self, data: &[u8], i: usize) -> Option<i64> {
        if i >= self.count {
            return None;
        }
        let from = HEADER + i * self.width;
        let bytes = data.get(from..from + self.width)?;
        Some(match *bytes {
            [a, b] => i64::from(i16::from_le_bytes([a, b])),
            [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intset(width: u32, values: &[i64]) -> Vec<u8> {
        let mut out = width.to_le_bytes().to_vec();
        out.extend((values.len() as u32).to_le_bytes());
        for &v in values {
            out.extend_from_slice(&v.to_le_bytes()[..width as usize]);
        }
        out
    }

    fn all(data: &[u8]) -> Result<Vec<i64>, String> {
        let set = Intset::open(data)?;
        Ok((0..set.len()).map_while(|i| set.get(data, i)).collect())
    }

    #[test]
    fn every_width() {
        assert_eq!(
            all(&intset(2, &[-32768, 1, 32767])).unwrap(),
            [-32768, 1, 32767]
        );
        assert_eq!(
            all(&intset(4, &[i64::from(i32::MIN), 70000])).unwrap(),
            [i64::from(i32::MIN), 70000]
        );
        assert_eq!(
            all(&intset(8, &[i64::MIN, i64::MAX])).unwrap(),
            [i64::MIN, i64::MAX]
        );
        assert_eq!(all(&intset(2, &[])).unwrap(), Vec::<i64>::new());
        // SADD s 1 2 on Redis 7.0, the RDB string of type 11.
        let real = [2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0];
        assert_eq!(all(&real).unwrap(), [1, 2]);
    }

    #[test]
    fn corrupt_intsets_are_refused() {
        assert!(all(&intset(3, &[1])).unwrap_err().contains("width 3"));
        let mut short = intset(4, &[1, 2]);
        short.pop();
        assert!(all(&short).unwrap_err().contains("cannot be"));
        let mut lying = intset(2, &[1, 2]);
        lying[4] = 0xff;
        lying[7] = 0xff;
        assert!(all(&lying).unwrap_err().contains("cannot be"));
        assert!(all(&[2, 0, 0]).unwrap_err().contains("too short"));
    }
}
