//! Key renames applied on the way into the target (restore, copy, compare).
//!
//! `--rename-prefix OLD=NEW` writes a key that starts with OLD as NEW
//! followed by the rest of the key: the tenant migration
//! (`tenant_a:` -> `tenant_b:`). `=` separates the two because key prefixes
//! usually contain colons. Several renames are tried in order and the first
//! that matches wins, so a specific prefix can come before a general one.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Key renames by prefix (`--rename-prefix OLD=NEW`); the first rule whose
/// prefix matches wins, keys that match none keep their name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remap {
    renames: Vec<(String, String)>,
}

impl Remap {
    /// Parse `OLD=NEW` specs (split at the first `=`; OLD must not be empty).
    pub fn parse(specs: &[String]) -> Result<Self> {
        let mut renames = Vec::with_capacity(specs.len());
        for spec in specs {
            match spec.split_once('=') {
                Some((old, new)) if !old.is_empty() => {
                    renames.push((old.to_string(), new.to_string()))
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "--rename-prefix {spec:?}: expected OLD=NEW with a non-empty OLD, e.g. tenant_a:=tenant_b:"
                    )));
                }
            }
        }
        Ok(Remap { renames })
    }

    /// True when no key is renamed.
    pub fn is_empty(&self) -> bool {
        self.renames.is_empty()
    }

    /// The name `key` gets in the target.
    pub fn key<'a>(&self, key: &'a [u8]) -> Cow<'a, [u8]> {
        for (old, new) in &self.renames {
            if let Some(rest) = key.strip_prefix(old.as_bytes()) {
                let mut out = Vec::with_capacity(new.len() + rest.len());
                out.extend_from_slice(new.as_bytes());
                out.extend_from_slice(rest);
                return Cow::Owned(out);
            }
        }
        Cow::Borrowed(key)
    }
}

impl Remap {
    /// The source name a target key would have had: the inverse of [`key`]
    /// (`None` when no archive key can have become this one, because an
    /// archive key of that name would have been renamed away).
    ///
    /// [`key`]: Remap::key
    pub fn source_name(&self, target: &[u8]) -> Option<Vec<u8>> {
        for (old, new) in &self.renames {
            if let Some(rest) = target.strip_prefix(new.as_bytes()) {
                let mut out = old.as_bytes().to_vec();
                out.extend_from_slice(rest);
                return Some(out);
            }
        }
        let renamed_away = self
            .renames
            .iter()
            .any(|(old, _)| target.starts_with(old.as_bytes()));
        (!renamed_away).then(|| target.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_name_inverts_renames() {
        let r = Remap::parse(&["tenant_a:=tenant_b:".into()]).unwrap();
        assert_eq!(r.source_name(b"tenant_b:1").unwrap(), b"tenant_a:1");
        assert_eq!(r.source_name(b"other").unwrap(), b"other");
        assert_eq!(r.source_name(b"tenant_a:1"), None);
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
    }
}
