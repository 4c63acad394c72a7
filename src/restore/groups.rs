//! Counts per profile group: a restore or copy of a user's records reports
//! what it did to each group ("apikeys: 24 created, 1 skipped"), the words
//! the application's own runbooks use, beside the per-type table.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::archive::Header;
use crate::profile::Profile;
use crate::profile::rewrite::classify;
use crate::report::{Action, GroupCounts};

use super::WriteOptions;

/// Keys counted by the profile group they belong to; keys of no group are
/// counted under [`NO_GROUP`].
#[derive(Debug, Default)]
pub(crate) struct GroupTally {
    /// The profile and the user id the keys are written under; `None`
    /// when the archive was not exported through a profile.
    scope: Option<(Arc<Profile>, Option<Vec<u8>>)>,
    counts: BTreeMap<String, GroupCounts>,
}

/// Where keys that belong to no group of the profile are counted.
pub const NO_GROUP: &str = "(no group)";

impl GroupTally {
    /// A tally for the archive of `header` written with `write`: keys are
    /// classified under the id they are written with (`--as-user`, else
    /// the archive's user).
    pub(crate) fn new(write: &WriteOptions, header: &Header) -> GroupTally {
        let (Some(profile), Some(scope)) = (&write.profile, &header.profile) else {
            return GroupTally::default();
        };
        let user = write.as_user.clone().or_else(|| scope.user.clone());
        GroupTally {
            scope: Some((profile.clone(), user.map(String::into_bytes))),
            counts: BTreeMap::new(),
        }
    }

    fn entry(&mut self, key: &[u8]) -> Option<&mut GroupCounts> {
        let (profile, user) = self.scope.as_ref()?;
        let name = match classify(profile, key, user.as_deref()) {
            Some((i, _)) => profile.groups[i].name.as_str(),
            None => NO_GROUP,
        };
        if !self.counts.contains_key(name) {
            self.counts.insert(name.to_string(), GroupCounts::default());
        }
        self.counts.get_mut(name)
    }

    /// `key` was (or is planned to be) dealt with by `action`.
    pub(crate) fn add(&mut self, key: &[u8], action: Action) {
        if let Some(c) = self.entry(key) {
            c.add(action);
        }
    }

    /// `key`'s writes failed.
    pub(crate) fn fail(&mut self, key: &[u8]) {
        if let Some(c) = self.entry(key) {
            c.failed += 1;
        }
    }

    /// The counts, by group name.
    pub(crate) fn into_counts(self) -> BTreeMap<String, GroupCounts> {
        self.counts
    }
}
