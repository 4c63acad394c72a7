//! Key renames applied on the way into the target (restore, copy, compare).
//!
//! `--rename-prefix OLD=NEW` writes a key that starts with OLD as NEW
//! followed by the rest of the key: the tenant migration
//! (`tenant_a:` -> `tenant_b:`). `=` separates the two because key prefixes
//! usually contain colons. Several renames are tried in order and the first
//! that matches wins, so a specific prefix can come before a general one.
//!
//! `--rename-token OLD=NEW` replaces OLD wherever it stands as a whole
//! token: between the start or end of the key and the separators
//! `: _ { } - . /`. A tenant id is rarely only at the front
//! (`lightrag:siraya:x`, `embed:ab12:siraya`, `siraya_kv_store_x`), and a
//! plain substring rule would also catch its neighbour `siraya2`.
//!
//! How they combine: every rule reads the key as it is in the archive, and
//! no rule sees another's output. The first matching prefix rule replaces
//! its prefix; the token rules then go once, left to right, over the rest
//! of the key, the first matching rule winning at each token (so `a=b` and
//! `b=a` swap, and never chain). That keeps a rename predictable and
//! lets compare work a target key back to the names it can have come from.
//!
//! Rules are literal text. A rule with a glob character (`*`, `?`, `[`) is
//! refused rather than taken literally: someone who writes `tenant_*=` means
//! a pattern, and a literal rule would silently rename nothing.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::printable;
use crate::report::{RenameExample, RenameSummary, Samples};

/// The bytes that end a token (besides the start and end of the key).
pub const TOKEN_SEPARATORS: &[u8] = b":_{}-./";

fn is_separator(b: u8) -> bool {
    TOKEN_SEPARATORS.contains(&b)
}

/// Key renames: by prefix (`--rename-prefix OLD=NEW`, the first matching
/// rule wins) and by token (`--rename-token OLD=NEW`, wherever the token
/// stands); keys that no rule matches keep their name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remap {
    renames: Vec<(String, String)>,
    #[serde(default)]
    tokens: Vec<(String, String)>,
}

/// Which option a rule came from, for messages.
#[derive(Clone, Copy)]
enum Kind {
    Prefix,
    Token,
}

impl Kind {
    fn option(self) -> &'static str {
        match self {
            Kind::Prefix => "--rename-prefix",
            Kind::Token => "--rename-token",
        }
    }
}

/// One `OLD=NEW` spec, checked: split at the first `=`, OLD not empty, no
/// glob characters on either side; a token's OLD starts and ends with a
/// token character and its NEW is not empty.
fn parse_rule(spec: &str, kind: Kind) -> Result<(String, String)> {
    let option = kind.option();
    let example = match kind {
        Kind::Prefix => "tenant_a:=tenant_b:",
        Kind::Token => "siraya=tenant_7692",
    };
    let bad = |why: String| Error::InvalidArgument(format!("{option} {spec:?}: {why}"));
    let Some((old, new)) = spec.split_once('=').filter(|(old, _)| !old.is_empty()) else {
        return Err(bad(format!(
            "expected OLD=NEW with a non-empty OLD, e.g. {example}"
        )));
    };
    if let Some(c) = spec.chars().find(|c| matches!(c, '*' | '?' | '[')) {
        return Err(bad(format!(
            "{c:?} is a glob character, but rules are literal text, not patterns; name the exact text, e.g. {example}"
        )));
    }
    if let Kind::Token = kind {
        let mut ends = [old.bytes().next(), old.bytes().next_back()].into_iter();
        if ends.any(|b| b.is_some_and(is_separator)) {
            return Err(bad(
                "OLD starts or ends with a separator (: _ { } - . /), so it is no whole token; leave the separators out, e.g. siraya=tenant_7692".into(),
            ));
        }
        if new.is_empty() {
            return Err(bad(
                "NEW is empty, which would leave two separators side by side; to drop a leading part use --rename-prefix OLD=".into(),
            ));
        }
    }
    Ok((old.to_string(), new.to_string()))
}

impl Remap {
    /// Parse `--rename-prefix` specs (`OLD=NEW`, split at the first `=`).
    pub fn parse(specs: &[String]) -> Result<Self> {
        Remap::with_rules(specs, &[])
    }

    /// Parse `--rename-prefix` and `--rename-token` specs, each `OLD=NEW`
    /// (split at the first `=`); refuses an empty OLD and glob characters.
    pub fn with_rules(prefixes: &[String], tokens: &[String]) -> Result<Self> {
        let parse_all = |specs: &[String], kind| -> Result<Vec<(String, String)>> {
            specs.iter().map(|s| parse_rule(s, kind)).collect()
        };
        Ok(Remap {
            renames: parse_all(prefixes, Kind::Prefix)?,
            tokens: parse_all(tokens, Kind::Token)?,
        })
    }

    /// True when no key is renamed.
    pub fn is_empty(&self) -> bool {
        self.renames.is_empty() && self.tokens.is_empty()
    }

    /// The name `key` gets in the target (borrowed when no rule renames it).
    pub fn key<'a>(&self, key: &'a [u8]) -> Cow<'a, [u8]> {
        let prefix = self
            .renames
            .iter()
            .find(|(old, _)| key.starts_with(old.as_bytes()));
        if prefix.is_none() && self.tokens.is_empty() {
            return Cow::Borrowed(key);
        }
        let from = prefix.map_or(0, |(old, _)| old.len());
        let mut out = Vec::with_capacity(key.len());
        if let Some((_, new)) = prefix {
            out.extend_from_slice(new.as_bytes());
        }
        let tokens_renamed = self.replace_tokens(key, from, &mut out);
        if prefix.is_none() && !tokens_renamed {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(out)
        }
    }

    /// Append `key[from..]` to `out` with the token rules applied; token
    /// boundaries are judged on the whole key, so a token that starts right
    /// after a renamed prefix counts only if the prefix ended in a separator.
    /// True when some token was replaced.
    fn replace_tokens(&self, key: &[u8], from: usize, out: &mut Vec<u8>) -> bool {
        let mut replaced = false;
        let mut copied = from;
        let mut i = from;
        while i < key.len() {
            let token_start = !is_separator(key[i]) && (i == 0 || is_separator(key[i - 1]));
            if !token_start {
                i += 1;
                continue;
            }
            if let Some((old, new)) = self.token_at(key, i) {
                out.extend_from_slice(&key[copied..i]);
                out.extend_from_slice(new.as_bytes());
                i += old.len();
                copied = i;
                replaced = true;
                continue;
            }
            while i < key.len() && !is_separator(key[i]) {
                i += 1;
            }
        }
        out.extend_from_slice(&key[copied..]);
        replaced
    }

    /// The first token rule whose OLD stands whole at `at` (a token start).
    fn token_at(&self, key: &[u8], at: usize) -> Option<&(String, String)> {
        self.tokens.iter().find(|(old, _)| {
            let end = at + old.len();
            key[at..].starts_with(old.as_bytes()) && (end == key.len() || is_separator(key[end]))
        })
    }
}

/// How many places of NEW tokens a target key's inverse tries every
/// combination of: each may have been an OLD token or not, 2^n names. Past
/// the bound only the two extremes are tried (all renamed, none).
const MAX_TOKEN_PLACES: usize = 8;

impl Remap {
    /// The source names a target key can have come from: every name that
    /// [`key`] turns into `target` (empty when every archive key of such a
    /// name would have been renamed into something else). A key with more
    /// than 8 places a NEW token could have come from is tried as all of
    /// them renamed, and as none.
    ///
    /// [`key`]: Remap::key
    pub fn source_names(&self, target: &[u8]) -> Vec<Vec<u8>> {
        let mut heads: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0)];
        for (old, new) in &self.renames {
            if target.starts_with(new.as_bytes()) {
                heads.push((old.as_bytes().to_vec(), new.len()));
            }
        }
        let mut names = Vec::new();
        for (head, skip) in heads {
            for tail in self.token_sources(target, skip) {
                let mut name = head.clone();
                name.extend_from_slice(&tail);
                if !names.contains(&name) && self.key(&name) == target {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Candidate originals of `target[from..]`: each place a token rule's
    /// NEW stands whole taken back to its OLD, or not.
    fn token_sources(&self, target: &[u8], from: usize) -> Vec<Vec<u8>> {
        let mut places: Vec<(usize, usize, &str)> = Vec::new();
        for (old, new) in &self.tokens {
            let new = new.as_bytes();
            for at in from..target.len() {
                let end = at + new.len();
                // Where a prefix rule's NEW ends, the original key may have
                // had a separator that NEW lacks: any place there is tried.
                let whole = target[at..].starts_with(new)
                    && (at == from || is_separator(target[at - 1]))
                    && (end == target.len() || is_separator(target[end]));
                if whole {
                    places.push((at, end, old));
                }
            }
        }
        places.sort();
        let rest = &target[from..];
        let build = |chosen: &[(usize, usize, &str)]| -> Option<Vec<u8>> {
            let mut out = Vec::with_capacity(rest.len());
            let mut copied = from;
            for &(at, end, old) in chosen {
                if at < copied {
                    return None;
                }
                out.extend_from_slice(&target[copied..at]);
                out.extend_from_slice(old.as_bytes());
                copied = end;
            }
            out.extend_from_slice(&target[copied..]);
            Some(out)
        };
        if places.len() > MAX_TOKEN_PLACES {
            return [build(&[]), build(&places)].into_iter().flatten().collect();
        }
        (0u32..1 << places.len())
            .filter_map(|mask| {
                let chosen: Vec<_> = places
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, p)| *p)
                    .collect();
                build(&chosen)
            })
            .collect()
    }
}

/// What the rules did to the keys a plan or a comparison saw: keys
/// renamed, with the first few `old -> new`, and keys no rule renamed.
#[derive(Debug, Default)]
pub(crate) struct RenameTally {
    renamed: Samples<RenameExample>,
    kept: Samples<String>,
}

impl RenameTally {
    /// Count `old`, which the rules turn into `new`.
    pub(crate) fn add(&mut self, old: &[u8], new: &[u8]) {
        if old == new {
            self.kept.add(printable(old));
        } else {
            self.renamed.add(RenameExample {
                from: printable(old),
                to: printable(new),
            });
        }
    }

    /// Take back a key counted by [`add`](Self::add) (its parts turned out
    /// void); the examples stay, they still show what the rules do.
    pub(crate) fn take_back(&mut self, remap: &Remap, key: &[u8]) {
        if remap.key(key) == key {
            self.kept.uncount();
        } else {
            self.renamed.uncount();
        }
    }

    pub(crate) fn into_summary(self) -> RenameSummary {
        let (renamed, examples) = self.renamed.into_parts();
        let (not_renamed, not_renamed_examples) = self.kept.into_parts();
        RenameSummary {
            renamed,
            examples,
            not_renamed,
            not_renamed_examples,
            missing: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(specs: &[&str]) -> Remap {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        Remap::with_rules(&[], &specs).unwrap()
    }

    fn renamed(r: &Remap, key: &str) -> String {
        String::from_utf8(r.key(key.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn source_name_inverts_renames() {
        let r = Remap::parse(&["tenant_a:=tenant_b:".into()]).unwrap();
        // Either a renamed tenant_a key, or a tenant_b key no rule renamed.
        assert_eq!(
            r.source_names(b"tenant_b:1"),
            vec![b"tenant_b:1".to_vec(), b"tenant_a:1".to_vec()]
        );
        assert_eq!(r.source_names(b"other"), vec![b"other".to_vec()]);
        assert!(r.source_names(b"tenant_a:1").is_empty());
    }

    #[test]
    fn first_matching_prefix_wins() {
        let r =
            Remap::parse(&["tenant_a:vip:=gold:".into(), "tenant_a:=tenant_b:".into()]).unwrap();
        assert_eq!(&*r.key(b"tenant_a:vip:1"), b"gold:1");
        assert_eq!(&*r.key(b"tenant_a:user:1"), b"tenant_b:user:1");
        assert_eq!(&*r.key(b"other:1"), b"other:1");
        assert_eq!(&*r.key(&[b't', 0xff]), &[b't', 0xff]);
    }

    #[test]
    fn value_may_contain_equals_and_be_empty() {
        let r = Remap::parse(&["a:=b=c:".into(), "x:=".into()]).unwrap();
        assert_eq!(&*r.key(b"a:1"), b"b=c:1");
        assert_eq!(&*r.key(b"x:1"), b"1");
    }

    #[test]
    fn rejects_missing_separator_or_empty_old() {
        assert!(Remap::parse(&["nosep".into()]).is_err());
        assert!(Remap::parse(&["=new".into()]).is_err());
        assert!(Remap::with_rules(&[], &["=new".into()]).is_err());
        assert!(Remap::with_rules(&[], &["nosep".into()]).is_err());
    }

    #[test]
    fn glob_characters_are_refused_in_every_rule() {
        for spec in ["tenant_*=x", "a?=b", "a[bc]=d", "a=b*"] {
            let err = Remap::parse(&[spec.into()]).unwrap_err().to_string();
            assert!(err.contains("glob character"), "{spec}: {err}");
            assert!(err.contains("--rename-prefix"), "{err}");
            let err = Remap::with_rules(&[], &[spec.into()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--rename-token"), "{err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn token_rules_are_whole_tokens() {
        assert!(Remap::with_rules(&[], &[":siraya=x".into()]).is_err());
        assert!(Remap::with_rules(&[], &["siraya_=x".into()]).is_err());
        assert!(Remap::with_rules(&[], &["siraya=".into()]).is_err());
        // Separators inside OLD make a run of tokens, matched whole.
        let r = tokens(&["tenant:a=tenant:b"]);
        assert_eq!(renamed(&r, "x:tenant:a:1"), "x:tenant:b:1");
        assert_eq!(renamed(&r, "x:tenant:ab:1"), "x:tenant:ab:1");
    }

    #[test]
    fn a_token_is_renamed_in_front_middle_and_end_only_whole() {
        let r = tokens(&["siraya=tenant_7692"]);
        for (from, to) in [
            ("lightrag:siraya:x", "lightrag:tenant_7692:x"),
            ("embed:ab12:siraya", "embed:ab12:tenant_7692"),
            ("siraya_kv_store_x", "tenant_7692_kv_store_x"),
            ("siraya", "tenant_7692"),
            ("{siraya}.doc/siraya-1", "{tenant_7692}.doc/tenant_7692-1"),
            ("siraya2_x", "siraya2_x"),
            ("xsiraya:1", "xsiraya:1"),
            ("a::siraya::b", "a::tenant_7692::b"),
            ("", ""),
        ] {
            assert_eq!(renamed(&r, from), to, "{from}");
        }
        assert!(matches!(r.key(b"siraya2_x"), Cow::Borrowed(_)));
    }

    #[test]
    fn tokens_are_bytes() {
        let r = tokens(&["id=new"]);
        assert_eq!(&*r.key(b"\xff:id:\x00"), b"\xff:new:\x00");
        assert_eq!(&*r.key(b"\xffid:x"), b"\xffid:x");
    }

    /// The documented order: the first matching prefix rule, then every
    /// token rule over the rest of the key; no rule reads another's output.
    #[test]
    fn prefix_first_then_tokens_on_the_rest_without_chaining() {
        let r = Remap::with_rules(
            &["t1:=siraya:".into()],
            &["siraya=tenant_7692".into(), "a=b".into(), "b=a".into()],
        )
        .unwrap();
        // NEW of the prefix rule is not searched for tokens.
        assert_eq!(renamed(&r, "t1:siraya:x"), "siraya:tenant_7692:x");
        // Token rules swap, never chain.
        assert_eq!(renamed(&r, "a:b:siraya"), "b:a:tenant_7692");
        // A prefix that ends mid-token leaves no token start behind it.
        let r = Remap::with_rules(&["lig=LIG".into()], &["htrag=x".into()]).unwrap();
        assert_eq!(renamed(&r, "lightrag:1"), "LIGhtrag:1");
        assert!(
            r.source_names(b"LIGhtrag:1")
                .contains(&b"lightrag:1".to_vec())
        );
        // A NEW prefix without the separator its OLD had is still inverted.
        let r = Remap::with_rules(&["p:=q".into()], &["siraya=t".into()]).unwrap();
        assert_eq!(renamed(&r, "p:siraya"), "qt");
        assert!(r.source_names(b"qt").contains(&b"p:siraya".to_vec()));
    }

    /// Property: a rename never touches a key without the whole token, and
    /// inverting gives back the original among the candidates.
    #[test]
    fn renames_invert_over_generated_keys() {
        let r = Remap::with_rules(
            &["p:=q:".into()],
            &["siraya=tenant_7692".into(), "ab=cd".into()],
        )
        .unwrap();
        let parts = ["siraya", "siraya2", "ab", "cd", "tenant_7692", "x", "p", ""];
        let seps = [":", "_", "{", "}", "-", ".", "/", "", "="];
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..5000 {
            let mut key = String::new();
            for _ in 0..next(6) {
                key.push_str(parts[next(parts.len())]);
                key.push_str(seps[next(seps.len())]);
            }
            let new = r.key(key.as_bytes()).into_owned();
            let sources = r.source_names(&new);
            assert!(
                sources.contains(&key.clone().into_bytes()),
                "{key:?} -> {:?}: {sources:?}",
                printable(&new)
            );
            for s in sources {
                assert_eq!(r.key(&s), &new[..], "{key:?}");
            }
            let expected_same = !key.starts_with("p:")
                && !key
                    .split(|c: char| TOKEN_SEPARATORS.contains(&(c as u8)))
                    .any(|t| t == "siraya" || t == "ab");
            assert_eq!(new == key.as_bytes(), expected_same, "{key:?}");
        }
    }

    #[test]
    fn tally_counts_renamed_and_kept() {
        let r = tokens(&["siraya=t"]);
        let mut tally = RenameTally::default();
        for key in [&b"siraya:1"[..], b"siraya2:1", b"x:siraya"] {
            tally.add(key, &r.key(key));
        }
        tally.take_back(&r, b"x:siraya");
        let s = tally.into_summary();
        assert_eq!((s.renamed, s.not_renamed), (1, 1));
        assert_eq!(s.examples[0].to, "t:1");
        assert_eq!(s.not_renamed_examples, vec!["siraya2:1".to_string()]);
    }
}
