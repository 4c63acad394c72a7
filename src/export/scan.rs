//! The export of a selection: `SCAN` every primary (the one server, or each
//! primary of a cluster, several at a time) and read what it finds through
//! the fetcher. The other walk, over one user's records, is
//! `profile::select::UserWalk`; both feed the same fetcher and writer.

use crate::connection::{Conn, Request, ServerInfo, Wire};
use crate::error::{Error, Result};
use crate::fetch::{FetchStats, Fetcher, dedupe};
use crate::keyspace::Selection;
use crate::progress::{Cancel, Progress};
use crate::reply::{bytes_of, scan_reply};

/// Cluster primaries walked at the same time; their readers share one
/// byte budget, but each holds a batch of its own.
const PARALLEL_SHARDS: usize = 8;

/// Readers per primary: enough that the server nearly always has a batch
/// to answer while the client decodes others (docs/PERFORMANCE.md).
const LANES: usize = 4;
/// Readers in all: each holds a batch of its own outside the byte budget,
/// so a cluster's primaries share them (at least one each).
const READERS: usize = 6;

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
        let walked_at_once = shards.len().clamp(1, PARALLEL_SHARDS);
        let lanes = (READERS / walked_at_once).clamp(1, LANES);
        let walks = shards.iter().map(|shard| {
            let mut conn = shard.clone();
            let mut reader = fetcher.sharing(shard.clone());
            async move {
                // Each node counts its own keys with field expiry.
                reader.detect_field_expiry(server).await?;
                let done = self.walk(&mut conn, &mut reader, lanes).await?;
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
    /// pattern or one type covers the selection; the rest filtered here),
    /// by `lanes` readers that take turns at the next SCAN step and read
    /// its keys: while one reader works through a batch's replies, the
    /// server answers another's. Each reader reads the keys of the step it
    /// took itself right away, while the server still has them in its
    /// caches.
    async fn walk(&self, conn: &mut Conn, fetcher: &mut Fetcher, lanes: usize) -> Result<bool> {
        let server_type = self.selection.server_type();
        let accept = |t| self.selection.matches_type(t);
        let mut readers: Vec<Fetcher> = (0..lanes).map(|_| fetcher.sharing(conn.clone())).collect();
        let scan = tokio::sync::Mutex::new(Scan {
            steps: Steps::open(conn).await,
            cursor: Some(String::from("0")),
        });
        let read = futures_util::future::try_join_all(readers.iter_mut().map(|reader| {
            let (scan, accept) = (&scan, &accept);
            async move {
                loop {
                    // The turn at SCAN is given back before the keys are read.
                    let step = {
                        let mut scan = scan.lock().await;
                        self.next_step(&mut scan).await?
                    };
                    match step {
                        Some(keys) if keys.is_empty() => {}
                        Some(keys) => reader.fetch_batch(keys, server_type, accept).await?,
                        None => return Ok::<(), Error>(()),
                    }
                }
            }
        }));
        read.await?;
        for reader in readers {
            fetcher.stats.absorb(reader.stats);
        }
        // The walk went to the end unless it was cancelled.
        Ok(scan.into_inner().cursor.is_none() && !self.cancel.is_cancelled())
    }

    /// The selected keys of the next SCAN step; `None` once the server was
    /// scanned to the end, or the walk was cancelled.
    async fn next_step(&self, scan: &mut Scan<'_>) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(cursor) = scan.cursor.take() else {
            return Ok(None);
        };
        if self.cancel.is_cancelled() {
            return Ok(None);
        }
        let selection = self.selection;
        let count = self.scan_count.to_string();
        let mut args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
        if let Some(pattern) = selection.server_pattern() {
            args.extend([&b"MATCH"[..], pattern.as_bytes()]);
        }
        args.extend([&b"COUNT"[..], count.as_bytes()]);
        if let Some(t) = selection.server_type() {
            args.extend([&b"TYPE"[..], t.name().as_bytes()]);
        }
        let (next, keys) = scan.steps.step(&args).await?;
        self.progress.advance(keys.len() as u64);
        scan.cursor = (next != "0").then_some(next);
        Ok(Some(
            dedupe(keys)
                .into_iter()
                .filter(|k| selection.matches_key(k))
                .collect(),
        ))
    }
}

/// Where one server's SCAN is: its link and the next cursor (`None` once
/// the server was scanned to the end).
struct Scan<'a> {
    steps: Steps<'a>,
    cursor: Option<String>,
}

/// SCAN steps, over a lean link of their own when there is one.
struct Steps<'a> {
    conn: &'a mut Conn,
    wire: Option<Wire>,
}

impl<'a> Steps<'a> {
    async fn open(conn: &'a mut Conn) -> Steps<'a> {
        let wire = match conn.open_wire().await {
            Some(Ok(wire)) => Some(wire),
            // The driver's connection works: SCAN goes over it.
            _ => None,
        };
        Steps { conn, wire }
    }

    /// One SCAN step: the next cursor and the keys.
    async fn step(&mut self, args: &[&[u8]]) -> Result<(String, Vec<Vec<u8>>)> {
        let action = "scanning keys";
        let reply = match &mut self.wire {
            Some(wire) => {
                let mut request = Request::new();
                request.cmd(args);
                wire.round_trip(&request, 0, action).await?.take(0)
            }
            None => {
                let mut cmd = redis::cmd("SCAN");
                for a in &args[1..] {
                    cmd.arg(*a);
                }
                self.conn.query(&cmd, action).await?
            }
        };
        let refused = |reason: String| Error::Redis {
            endpoint: self.conn.endpoint().display(),
            action: action.into(),
            reason,
        };
        let reply = reply
            .extract_error()
            .map_err(|e| self.conn.endpoint().classify(e, action))?;
        let (cursor, keys) = scan_reply(reply).map_err(refused)?;
        let cursor = String::from_utf8(cursor)
            .ok()
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty())
            .ok_or_else(|| refused("SCAN returned a cursor that is not a number".into()))?;
        Ok((cursor, keys.into_iter().map(bytes_of).collect()))
    }
}
