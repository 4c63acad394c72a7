//! Key types foreseen from key names, so that most keys need no question
//! before they are read.
//!
//! Reading a key needs its type (the read commands are per type), and
//! asking for it costs the server a command per key, about a fifth of what
//! an export asks of it. But keyspaces are regular: `user:42:profile` and
//! `user:43:profile` are the same type, so after a few keys of a shape the
//! next one of that shape is read as that type straight away. The read
//! itself says whether the guess was right (a read of the wrong type is
//! refused with WRONGTYPE and costs the server next to nothing); a key
//! guessed wrong is asked and read the usual way, and its shape is not
//! guessed again until it has been regular for a while. So a keyspace
//! without shapes (random names of mixed types) is read as before, and
//! the records are the same either way: a guess only picks the command.
//!
//! A key's shape is its name with every part (between `:`, `/`, `.`, `|`,
//! `-`, `_`, `#`, `{`, `}`, `,` or `=`) that holds a digit or a byte
//! outside printable ASCII, or is long, taken for an id.

use std::collections::HashMap;

use crate::record::KeyType;

/// Keys of one shape and one type in a row before that shape is guessed.
const STREAK: u32 = 8;

/// Shapes remembered; past this, new shapes are not guessed.
const SHAPES: usize = 4096;

/// A part this long is taken for an id (a hash, a UUID without digits).
const ID_BYTES: usize = 16;

/// What is known of one shape.
#[derive(Debug, Clone, Copy)]
struct Seen {
    t: KeyType,
    /// Keys of this type in a row.
    streak: u32,
}

/// Types seen per key shape; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Shapes {
    seen: HashMap<u64, Seen>,
}

impl Shapes {
    /// The type a key named `key` most likely has, if its shape has been
    /// regular.
    pub fn guess(&self, key: &[u8]) -> Option<KeyType> {
        let seen = self.seen.get(&shape(key))?;
        (seen.streak >= STREAK).then_some(seen.t)
    }

    /// `key` turned out to be of type `t`.
    pub fn learn(&mut self, key: &[u8], t: KeyType) {
        let full = self.seen.len() >= SHAPES;
        match self.seen.entry(shape(key)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let seen = e.get_mut();
                if seen.t == t {
                    seen.streak = seen.streak.saturating_add(1);
                } else {
                    *seen = Seen { t, streak: 1 };
                }
            }
            std::collections::hash_map::Entry::Vacant(e) if !full => {
                e.insert(Seen { t, streak: 1 });
            }
            std::collections::hash_map::Entry::Vacant(_) => {}
        }
    }

    /// The guess for `key` was wrong: its shape starts over.
    pub fn missed(&mut self, key: &[u8]) {
        if let Some(seen) = self.seen.get_mut(&shape(key)) {
            seen.streak = 0;
        }
    }
}

/// A hash of `key`'s shape (FNV-1a over its parts, ids as one mark).
fn shape(key: &[u8]) -> u64 {
    const SEPARATORS: &[u8] = b":/.|-_#{},=";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |b: u8| {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    for part in key.split_inclusive(|b| SEPARATORS.contains(b)) {
        let (body, separator) = match part.split_last() {
            Some((last, body)) if SEPARATORS.contains(last) => (body, Some(*last)),
            _ => (part, None),
        };
        let id = body.len() >= ID_BYTES
            || body
                .iter()
                .any(|&b| b.is_ascii_digit() || !(0x20..0x7f).contains(&b));
        if id {
            // A mark no printable name holds.
            add(0);
        } else {
            body.iter().for_each(|&b| add(b));
        }
        add(separator.unwrap_or(0xff));
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_make_no_difference_to_a_shape_and_names_do() {
        assert_eq!(shape(b"user:42:profile"), shape(b"user:7:profile"));
        assert_eq!(shape(b"hash:123"), shape(b"hash:99\xff\xfe\x07"));
        assert_eq!(
            shape(b"session:9f8a7c6b"),
            shape(b"session:abcdefabcdefabcdef")
        );
        assert_ne!(shape(b"user:42:profile"), shape(b"user:42:friends"));
        assert_ne!(shape(b"user:42"), shape(b"user:42:"));
        assert_ne!(shape(b"a:b"), shape(b"a/b"));
        assert_ne!(shape(b"ab"), shape(b"a:b"));
    }

    #[test]
    fn a_shape_is_guessed_once_regular_and_not_after_a_miss() {
        let mut shapes = Shapes::default();
        for i in 0..STREAK {
            assert_eq!(shapes.guess(format!("h:{i}").as_bytes()), None);
            shapes.learn(format!("h:{i}").as_bytes(), KeyType::Hash);
        }
        assert_eq!(shapes.guess(b"h:1000"), Some(KeyType::Hash));
        shapes.missed(b"h:1001");
        assert_eq!(shapes.guess(b"h:1002"), None);
        shapes.learn(b"h:1003", KeyType::Set);
        assert_eq!(
            shapes.guess(b"h:1004"),
            None,
            "a change of type starts over"
        );
        for i in 0..STREAK {
            shapes.learn(format!("h:{i}").as_bytes(), KeyType::Set);
        }
        assert_eq!(shapes.guess(b"h:1005"), Some(KeyType::Set));
    }

    #[test]
    fn mixed_types_of_one_shape_are_not_guessed() {
        let mut shapes = Shapes::default();
        let types = [KeyType::Hash, KeyType::Set, KeyType::String];
        for i in 0..300 {
            shapes.learn(format!("k:{i}").as_bytes(), types[i % 3]);
            assert_eq!(shapes.guess(b"k:x1"), None);
        }
    }
}
