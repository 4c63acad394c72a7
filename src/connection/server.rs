//! What a server can do, from its flavor and version: the commands and
//! features that differ between Redis and Valkey releases.

use super::*;

impl ServerInfo {
    /// PEXPIRETIME exists (Redis 7.0, Valkey 7.2 and later).
    pub(crate) fn has_pexpiretime(&self) -> bool {
        self.version_tuple() >= (7, 0)
    }

    /// `(major, minor)` of the server, `(0, 0)` when unknown.
    pub(crate) fn version_tuple(&self) -> (u32, u32) {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether this is Valkey (as opposed to Redis).
    pub(crate) fn is_valkey(&self) -> bool {
        self.flavor == "valkey"
    }

    /// Hash fields with their own expiry (`HPEXPIRE` and friends): Redis
    /// 7.4 and later, Valkey 9.0 and later.
    pub(crate) fn has_field_expiry(&self) -> bool {
        let v = self.version_tuple();
        if self.is_valkey() {
            v >= (9, 0)
        } else {
            v >= (7, 4)
        }
    }

    /// The newest RDB version this server loads (`RESTORE` refuses DUMP
    /// payloads of a newer one). From the release notes of each version;
    /// `None` for an unknown version. Valkey numbers its own RDB versions
    /// from 80 on, in 9.0.
    pub fn rdb_version(&self) -> Option<u16> {
        let v = self.version_tuple();
        if v == (0, 0) {
            return None;
        }
        Some(if self.is_valkey() {
            if v >= (9, 0) { 80 } else { 11 }
        } else {
            match v {
                v if v >= (7, 4) => 12,
                v if v >= (7, 2) => 11,
                v if v >= (7, 0) => 10,
                v if v >= (5, 0) => 9,
                _ => 8,
            }
        })
    }

    /// Redis 7.0 added XSETID ENTRIESADDED/MAXDELETEDID and XGROUP ENTRIESREAD.
    /// Valkey 7.2+ reports its own version numbers from 7.2 on, so the same test holds.
    pub(crate) fn has_stream_v7(&self) -> bool {
        self.version_tuple() >= (7, 0)
    }
}
