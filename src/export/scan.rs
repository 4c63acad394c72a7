//! The export of a selection: `SCAN` every primary (the one server, or each
//! primary of a cluster, several at a time) and read what it finds through
//! the fetcher. The other walk, over one user's records, is
//! `profile::select::UserWalk`; both feed the same fetcher and writer.

use crate::connection::{Conn, ServerInfo};
use crate::error::{Error, Result};
use crate::fetch::{FetchStats, Fetcher, dedupe};
use crate::keyspace::Selection;
use crate::progress::{Cancel, Progress};

/// Cluster primaries walked at the same time; their readers share one
/// byte budget, but each holds a batch of its own.
const PARALLEL_SHARDS: usize = 8;

/// Walks a selection with `SCAN` and reads every key it matches.
pub(crate) struct ScanWalk<'a> {
    pub selection: &'a Selection,
    /// `COUNT` for SCAN: keys per step, and so per read batch.
    pub scan_count: usize,
    pub cancel: &'a Cancel,
    pub progress: &'a dyn Progress,
}

impl ScanWalk<'_> {
    /// Walk every primary in `shards`, each with its own connection and a
    /// reader sharing `fetcher`'s writer and budget; their tallies end in
    /// `fetcher.stats`. Returns false when stopped by `cancel`.
    pub async fn run(
        &self,
        shards: &[Conn],
        fetcher: &mut Fetcher,
        server: &ServerInfo,
    ) -> Result<bool> {
        use futures_util::stream::{StreamExt, TryStreamExt};
        let walks = shards.iter().map(|shard| {
            let mut conn = shard.clone();
            let mut reader = fetcher.sharing(shard.clone());
            async move {
                // Each node counts its own keys with field expiry.
                reader.detect_field_expiry(server).await?;
                let done = self.walk(&mut conn, &mut reader).await?;
                Ok::<_, Error>((done, reader.stats))
            }
        });
        let results: Vec<(bool, FetchStats)> = futures_util::stream::iter(walks)
            .buffer_unordered(PARALLEL_SHARDS)
            .try_collect()
            .await?;
        let mut all_done = true;
        for (done, stats) in results {
            all_done &= done;
            fetcher.stats.absorb(stats);
        }
        Ok(all_done)
    }

    /// Walk one server's keys with SCAN (with MATCH and TYPE when one
    /// pattern or one type covers the selection; the rest filtered here).
    async fn walk(&self, conn: &mut Conn, fetcher: &mut Fetcher) -> Result<bool> {
        let selection = self.selection;
        let server_type = selection.server_type();
        let accept = |t| selection.matches_type(t);
        let mut cursor: u64 = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor);
            if let Some(pattern) = selection.server_pattern() {
                scan.arg("MATCH").arg(pattern);
            }
            scan.arg("COUNT").arg(self.scan_count);
            if let Some(t) = server_type {
                scan.arg("TYPE").arg(t.name());
            }
            let (next, keys): (u64, Vec<Vec<u8>>) = conn.query(&scan, "scanning keys").await?;
            let found = keys.len() as u64;
            let keys: Vec<Vec<u8>> = dedupe(keys)
                .into_iter()
                .filter(|k| selection.matches_key(k))
                .collect();
            if !keys.is_empty() {
                fetcher.fetch_batch(keys, server_type, &accept).await?;
            }
            self.progress.advance(found);
            if next == 0 {
                return Ok(true);
            }
            cursor = next;
        }
    }
}
