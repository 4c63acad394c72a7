//! Key and member templates: `user:{user}`, `usage:{user}:*`, `apikey:{id}`.
//!
//! A template is a Redis glob (`*` and `?`; `\` escapes the next byte) with
//! two placeholders. `{user}` stands for the user id, `{id}` for the id of
//! one record of a group. A template is used three ways: rendered into a
//! SCAN pattern (the user id escaped, so an id never acts as a glob),
//! rendered into a key name, and matched against a key name to find which
//! user and record id it holds, so that restore can write it under another.

use std::ops::Range;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes.
    Star,
    /// `?`: any one byte.
    One,
    User,
    Id,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    text: String,
    tokens: Vec<Token>,
}

/// Where the placeholders sit in a matched key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Captures {
    pub(crate) user: Option<Range<usize>>,
    pub(crate) id: Option<Range<usize>>,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let bytes = text.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            if rest.starts_with(b"{user}") {
                tokens.push(Token::User);
                i += 6;
                continue;
            }
            if rest.starts_with(b"{id}") {
                tokens.push(Token::Id);
                i += 4;
                continue;
            }
            match bytes[i] {
                b'*' => tokens.push(Token::Star),
                b'?' => tokens.push(Token::One),
                b'[' | b']' => {
                    return Err(Error::Profile(format!(
                        "template {text:?}: character classes ([...]) are not supported; use * and ?, or escape with \\"
                    )));
                }
                b'\\' if i + 1 < bytes.len() => {
                    i += 1;
                    tokens.push(Token::Byte(bytes[i]));
                }
                b => tokens.push(Token::Byte(b)),
            }
            i += 1;
        }
        if tokens.is_empty() {
            return Err(Error::Profile("empty template".into()));
        }
        Ok(Template {
            text: text.to_string(),
            tokens,
        })
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn has_user(&self) -> bool {
        self.tokens.contains(&Token::User)
    }

    pub(crate) fn has_id(&self) -> bool {
        self.tokens.contains(&Token::Id)
    }

    /// Whether it holds `*` or `?` (escaped ones are plain bytes).
    pub(crate) fn has_glob(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Star | Token::One))
    }

    /// True when the template names one key (no glob, no `{id}`) once the
    /// user is known.
    pub(crate) fn is_exact(&self) -> bool {
        !self.has_glob() && !self.has_id()
    }

    /// A SCAN MATCH pattern: `user` (escaped) for `{user}`, `*` where it is
    /// `None` and for `{id}`.
    pub(crate) fn pattern(&self, user: Option<&str>) -> String {
        let mut out = Vec::with_capacity(self.text.len() + 8);
        for t in &self.tokens {
            match t {
                Token::Byte(b) => push_escaped(&mut out, *b),
                Token::Star | Token::Id => out.push(b'*'),
                Token::One => out.push(b'?'),
                Token::User => match user {
                    Some(u) => u.bytes().for_each(|b| push_escaped(&mut out, b)),
                    None => out.push(b'*'),
                },
            }
        }
        String::from_utf8(out).expect("built from UTF-8 pieces")
    }

    /// The key an exact template (besides `{id}`) names.
    pub(crate) fn render(&self, user: &[u8], id: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + user.len() + id.len());
        for t in &self.tokens {
            match t {
                Token::Byte(b) => out.push(*b),
                Token::Star => out.push(b'*'),
                Token::One => out.push(b'?'),
                Token::User => out.extend_from_slice(user),
                Token::Id => out.extend_from_slice(id),
            }
        }
        out
    }

    /// Match `key`; `{user}` must be `user` when given (any non-empty run of
    /// bytes otherwise), `{id}` is any non-empty run of bytes.
    pub(crate) fn captures(&self, key: &[u8], user: Option<&[u8]>) -> Option<Captures> {
        let mut caps = Captures::default();
        self.step(0, key, 0, user, &mut caps).then_some(caps)
    }

    pub(crate) fn matches(&self, key: &[u8], user: Option<&[u8]>) -> bool {
        self.captures(key, user).is_some()
    }

    fn step(
        &self,
        t: usize,
        key: &[u8],
        k: usize,
        user: Option<&[u8]>,
        caps: &mut Captures,
    ) -> bool {
        let Some(token) = self.tokens.get(t) else {
            return k == key.len();
        };
        match token {
            Token::Byte(b) => key.get(k) == Some(b) && self.step(t + 1, key, k + 1, user, caps),
            Token::One => k < key.len() && self.step(t + 1, key, k + 1, user, caps),
            Token::Star => (k..=key.len()).any(|end| self.step(t + 1, key, end, user, caps)),
            Token::User => match user {
                Some(u) => {
                    key[k..].starts_with(u) && {
                        caps.user = Some(k..k + u.len());
                        self.step(t + 1, key, k + u.len(), user, caps)
                    }
                }
                None => (k + 1..=key.len()).any(|end| {
                    caps.user = Some(k..end);
                    self.step(t + 1, key, end, user, caps)
                }),
            },
            Token::Id => (k + 1..=key.len()).any(|end| {
                caps.id = Some(k..end);
                self.step(t + 1, key, end, user, caps)
            }),
        }
    }
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
        out.push(b'\\');
    }
    out.push(b);
}

/// `key` with the captured spans replaced: `{user}` by `user`, `{id}` by `id`.
pub(crate) fn replace(
    key: &[u8],
    caps: &Captures,
    user: Option<&[u8]>,
    id: Option<&[u8]>,
) -> Vec<u8> {
    let mut spans: Vec<(Range<usize>, &[u8])> = Vec::new();
    if let (Some(r), Some(u)) = (&caps.user, user) {
        spans.push((r.clone(), u));
    }
    if let (Some(r), Some(i)) = (&caps.id, id) {
        spans.push((r.clone(), i));
    }
    spans.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(key.len() + 16);
    let mut at = 0;
    for (range, with) in spans {
        out.extend_from_slice(&key[at..range.start]);
        out.extend_from_slice(with);
        at = range.end;
    }
    out.extend_from_slice(&key[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::glob_match;

    fn t(text: &str) -> Template {
        Template::parse(text).unwrap()
    }

    #[test]
    fn user_ids_that_prefix_each_other_do_not_mix() {
        let usage = t("usage:{user}:*");
        let p = usage.pattern(Some("4"));
        assert!(glob_match(p.as_bytes(), b"usage:4:20261121"));
        assert!(!glob_match(p.as_bytes(), b"usage:42:20261121"));
        assert!(!glob_match(p.as_bytes(), b"usage:420:x"));
        assert!(usage.matches(b"usage:4:1", Some(b"4")));
        assert!(!usage.matches(b"usage:42:1", Some(b"4")));
    }

    #[test]
    fn user_ids_are_escaped_in_patterns() {
        let p = t("user:{user}").pattern(Some("a*[b]?\\"));
        assert_eq!(p, "user:a\\*\\[b\\]\\?\\\\");
        assert!(glob_match(p.as_bytes(), b"user:a*[b]?\\"));
        assert!(!glob_match(p.as_bytes(), b"user:axxb]?\\"));
    }

    #[test]
    fn captures_and_replaces_the_user_and_id() {
        let tpl = t("project:{user}:{id}");
        let caps = tpl.captures(b"project:42:p1", Some(b"42")).unwrap();
        assert_eq!(caps.user, Some(8..10));
        assert_eq!(caps.id, Some(11..13));
        assert_eq!(
            replace(b"project:42:p1", &caps, Some(b"99"), Some(b"99-p1")),
            b"project:99:99-p1"
        );
        assert_eq!(
            replace(b"project:42:p1", &caps, Some(b"7"), None),
            b"project:7:p1"
        );
        let any = tpl.captures(b"project:7:p1", None).unwrap();
        assert_eq!(any.user, Some(8..9));
    }

    proptest::proptest! {
        /// Whatever the ids hold (glob characters included), a user's
        /// pattern matches that user's keys and no other user's.
        #[test]
        fn patterns_match_only_their_own_user(
            a in "[0-9a-z*?\\\\\\[\\]]{1,6}",
            b in "[0-9a-z*?\\\\\\[\\]]{1,6}",
            rest in "[a-z0-9]{1,5}",
        ) {
            let tpl = t("usage:{user}:*");
            let key = [b"usage:", a.as_bytes(), b":", rest.as_bytes()].concat();
            proptest::prop_assert!(glob_match(tpl.pattern(Some(&a)).as_bytes(), &key));
            proptest::prop_assert_eq!(
                glob_match(tpl.pattern(Some(&b)).as_bytes(), &key),
                a == b
            );
            proptest::prop_assert_eq!(tpl.matches(&key, Some(b.as_bytes())), a == b);
            let caps = tpl.captures(&key, Some(a.as_bytes())).unwrap();
            proptest::prop_assert_eq!(
                replace(&key, &caps, Some(b"99"), None),
                [b"usage:99:", rest.as_bytes()].concat()
            );
        }
    }

    #[test]
    fn exactness_and_rendering() {
        assert!(t("user:{user}").is_exact());
        assert!(!t("usage:{user}:*").is_exact());
        assert!(!t("apikey:{id}").is_exact());
        assert_eq!(t("apikey:{id}").render(b"", b"k1"), b"apikey:k1");
        assert_eq!(t("apikey:{id}").pattern(None), "apikey:*");
        assert!(Template::parse("a[bc]").is_err());
        assert_eq!(t("a\\*{user}").pattern(Some("1")), "a\\*1");
    }
}
