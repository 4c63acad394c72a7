//! Which keys an export takes, and how they are found.
//!
//! Keys are found with SCAN, never KEYS, so a big database is walked in
//! small steps without blocking the server. A single `--match` pattern and a
//! single `--type` are passed to the server (SCAN MATCH / TYPE) so it sends
//! less; several patterns, excludes and several types are applied here, with
//! a glob matcher that follows the server's own rules, so a pattern means
//! the same whether the server or this program applies it.

pub use crate::archive::manifest::Selection;

use crate::record::KeyType;

impl Selection {
    /// Whether `key` is selected by the include and exclude globs.
    pub fn matches_key(&self, key: &[u8]) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p.as_bytes(), key)))
            && !self.exclude.iter().any(|p| glob_match(p.as_bytes(), key))
    }

    /// Whether keys of type `t` are selected.
    pub fn matches_type(&self, t: KeyType) -> bool {
        self.types.is_empty() || self.types.contains(&t)
    }

    /// The pattern to hand to SCAN MATCH, when one pattern covers the selection.
    pub(crate) fn server_pattern(&self) -> Option<&str> {
        match self.include.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The type to hand to SCAN TYPE, when exactly one portable type is asked for.
    /// DUMP covers many module types, which SCAN TYPE cannot name at once.
    pub(crate) fn server_type(&self) -> Option<KeyType> {
        match self.types.as_slice() {
            [KeyType::Dump] => None,
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Redis glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`) over bytes, with
/// the same semantics as the server's `stringmatchlen`, including its
/// handling of reversed ranges and of a pattern that ends inside a class.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Position to resume from after the most recent `*`: (pattern, text).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                    p += 1;
                }
                star = Some((p, t));
                p += 1;
                continue;
            }
            if let Some(next) = match_one(pattern, p, text.get(t).copied()) {
                p = next;
                t += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if there is one.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp + 1;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Match the pattern element at `p` (not `*`) against one text byte; the
/// index after the element when it matches. No byte left never matches.
fn match_one(pattern: &[u8], p: usize, c: Option<u8>) -> Option<usize> {
    let c = c?;
    match pattern[p] {
        b'?' => Some(p + 1),
        b'[' => match_class(pattern, p, c),
        // A trailing backslash is a literal backslash, as in Redis.
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        x => (x == c).then_some(p + 1),
    }
}

/// Match one byte against the class that opens at `pattern[open]`; return the
/// index after the class when it matches.
fn match_class(pattern: &[u8], open: usize, c: u8) -> Option<usize> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(i) {
            // Redis treats an unterminated class as ending at the pattern's end.
            None => {
                i = pattern.len();
                break;
            }
            Some(b']') => {
                i += 1;
                break;
            }
            Some(b'\\') if i + 1 < pattern.len() => {
                if pattern[i + 1] == c {
                    matched = true;
                }
                i += 2;
            }
            Some(&lo) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                let hi = pattern[i + 2];
                let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                if (a..=b).contains(&c) {
                    matched = true;
                }
                i += 3;
            }
            Some(&x) => {
                if x == c {
                    matched = true;
                }
                i += 1;
            }
        }
    }
    (matched != negate).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("user:*", "user:42", true),
            ("user:*", "users:42", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("*:*:x", "a:b:c:x", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "a", false),
            ("[", "a", false),
            ("a[", "a", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(
                glob_match(p.as_bytes(), t.as_bytes()),
                *want,
                "{p:?} vs {t:?}"
            );
        }
    }

    #[test]
    fn glob_is_binary_safe() {
        assert!(glob_match(b"k*", &[b'k', 0xff, 0x00]));
        assert!(glob_match(&[0xff, b'*'], &[0xff, b'z']));
    }

    #[test]
    fn selection_combines_includes_and_excludes() {
        let sel = Selection {
            include: vec!["user:*".into(), "apikey:*".into()],
            exclude: vec!["user:*:tmp".into()],
            types: vec![],
        };
        assert!(sel.matches_key(b"user:1"));
        assert!(sel.matches_key(b"apikey:k"));
        assert!(!sel.matches_key(b"user:1:tmp"));
        assert!(!sel.matches_key(b"session:1"));
        assert_eq!(sel.server_pattern(), None);
    }
}
