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

/// A key's shape, worked out once per key and read: a hash of its name
/// with ids as one mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape(u64);

impl Shapes {
    /// The type a key of this shape most likely has, if the shape has
    /// been regular.
    pub fn guess(&self, shape: Shape) -> Option<KeyType> {
        let seen = self.seen.get(&shape.0)?;
        (seen.streak >= STREAK).then_some(seen.t)
    }

    /// A key of this shape turned out to be of type `t`.
    pub fn learn(&mut self, shape: Shape, t: KeyType) {
        let full = self.seen.len() >= SHAPES;
        match self.seen.entry(shape.0) {
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

    /// The guess for a key of this shape was wrong: the shape starts over.
    pub fn missed(&mut self, shape: Shape) {
        if let Some(seen) = self.seen.get_mut(&shape.0) {
            seen.streak = 0;
        }
    }
}

// Byte classes: a separator, a byte only an id holds, or a name's (0).
const SEPARATOR: u8 = 1;
const ID: u8 = 2;

/// What each byte is to a shape: a separator, a byte only an id holds
/// (a digit, or outside printable ASCII), or a name's.
const CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 256 {
        if (b as u8).is_ascii_digit() || b < 0x20 || b >= 0x7f {
            class[b] = ID;
        }
        b += 1;
    }
    let separators = b":/.|-_#{},=";
    let mut i = 0;
    while i < separators.len() {
        class[separators[i] as usize] = SEPARATOR;
        i += 1;
    }
    class
};

impl Shape {
    /// The shape of `key`: FNV-1a over its parts, each followed by its
    /// separator (0xff after a last part without one), ids as one mark.
    pub fn of(key: &[u8]) -> Shape {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut add = |b: u8| {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        let mut part = |body: &[u8], id: bool, separator: u8| {
            if id || body.len() >= ID_BYTES {
                // A mark no printable name holds.
                add(0);
            } else {
                body.iter().for_each(|&b| add(b));
            }
            add(separator);
        };
        let (mut start, mut id) = (0, false);
        for (i, &b) in key.iter().enumerate() {
            match CLASS[usize::from(b)] {
                SEPARATOR => {
                    part(&key[start..i], id, b);
                    (start, id) = (i + 1, false);
                }
                ID => id = true,
                _ => {}
            }
        }
        if start < key.len() {
            part(&key[start..], id, 0xff);
        }
        Shape(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_make_no_difference_to_a_shape_and_names_do() {
        let shape = Shape::of;
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
        assert_ne!(shape(b"a::b"), shape(b"a:b"));
        assert_eq!(shape(b"a:1b:c"), shape(b"a:\x01:c"));
    }

    /// The shape as first defined, part by part, for the table to match.
    fn by_parts(key: &[u8]) -> Shape {
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
            match id {
                true => add(0),
                false => body.iter().for_each(|&b| add(b)),
            }
            add(separator.unwrap_or(0xff));
        }
        Shape(hash)
    }

    proptest::proptest! {
        #[test]
        fn the_table_gives_the_shape_part_by_part_does(
            key in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b":/.|-_#{},=a1\x7f\x00\xff".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..40,
            )
        ) {
            proptest::prop_assert_eq!(Shape::of(&key), by_parts(&key));
        }
    }

    #[test]
    fn a_shape_is_guessed_once_regular_and_not_after_a_miss() {
        let mut shapes = Shapes::default();
        for i in 0..STREAK {
            assert_eq!(shapes.guess(Shape::of(format!("h:{i}").as_bytes())), None);
            shapes.learn(Shape::of(format!("h:{i}").as_bytes()), KeyType::Hash);
        }
        assert_eq!(shapes.guess(Shape::of(b"h:1000")), Some(KeyType::Hash));
        shapes.missed(Shape::of(b"h:1001"));
        assert_eq!(shapes.guess(Shape::of(b"h:1002")), None);
        shapes.learn(Shape::of(b"h:1003"), KeyType::Set);
        assert_eq!(
            shapes.guess(Shape::of(b"h:1004")),
            None,
            "a change of type starts over"
        );
        for i in 0..STREAK {
            shapes.learn(Shape::of(format!("h:{i}").as_bytes()), KeyType::Set);
        }
        assert_eq!(shapes.guess(Shape::of(b"h:1005")), Some(KeyType::Set));
    }

    #[test]
    fn mixed_types_of_one_shape_are_not_guessed() {
        let mut shapes = Shapes::default();
        let types = [KeyType::Hash, KeyType::Set, KeyType::String];
        for i in 0..300 {
            shapes.learn(Shape::of(format!("k:{i}").as_bytes()), types[i % 3]);
            assert_eq!(shapes.guess(Shape::of(b"k:x1")), None);
        }
    }
}
