//! The export of a selection: `SCAN` every primary (the one server, or each
//! primary of a cluster, several at a time) and read what it finds through
//! the fetcher. The other walk, over one user's records, is
//! `profile::select::UserWalk`; both feed the same fetcher and writer.

use tokio::sync::mpsc;

use crate::connection::{Conn, Request, ServerInfo, Wire};
use crate::error::{Error, Result};
use crate::fetch::{FetchStats, Fetcher, dedupe};
use crate::keyspace::Selection;
use crate::progress::{Cancel, Progress};
use crate::reply::{bytes_of, scan_reply};

/// Cluster primaries walked at the same time; their readers share one
/// byte budget, but each holds a batch of its own.
const PARALLEL_SHARDS: usize = 8;

/// Readers per primary: enough that the server always has a batch to
/// answer while the client decodes another.
const LANES: usize = 2;

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
                let done = self.walk(&mut conn, &mut reader, LANES).await?;
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
    /// each step's keys read by one of `lanes` readers: while one reader
    /// works through a batch's replies, the server answers another's, and
    /// the next SCAN step is already asked for.
    async fn walk(&self, conn: &mut Conn, fetcher: &mut Fetcher, lanes: usize) -> Result<bool> {
        let selection = self.selection;
        let server_type = selection.server_type();
        let accept = |t| selection.matches_type(t);
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Vec<u8>>>(lanes);
        let rx = tokio::sync::Mutex::new(rx);
        let mut readers: Vec<Fetcher> = (0..lanes).map(|_| fetcher.sharing(conn.clone())).collect();
        let read = futures_util::future::try_join_all(readers.iter_mut().map(|reader| {
            let (rx, accept) = (&rx, &accept);
            async move {
                // Each batch goes to whichever reader is free.
                while let Some(keys) = { rx.lock().await.recv().await } {
                    reader.fetch_batch(keys, server_type, accept).await?;
                }
                Ok::<(), Error>(())
            }
        }));
        let (done, _) = futures_util::future::try_join(self.scan(conn, tx), read).await?;
        for reader in readers {
            fetcher.stats.absorb(reader.stats);
        }
        Ok(done)
    }

    /// SCAN one server to the end (true) or until cancelled (false),
    /// sending each step's selected keys to `batches`.
    async fn scan(&self, conn: &mut Conn, batches: mpsc::Sender<Vec<Vec<u8>>>) -> Result<bool> {
        let selection = self.selection;
        let mut steps = Steps::open(conn).await;
        let count = self.scan_count.to_string();
        let mut cursor = String::from("0");
        loop {
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            let mut args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
            if let Some(pattern) = selection.server_pattern() {
                args.extend([&b"MATCH"[..], pattern.as_bytes()]);
            }
            args.extend([&b"COUNT"[..], count.as_bytes()]);
            if let Some(t) = selection.server_type() {
                args.extend([&b"TYPE"[..], t.name().as_bytes()]);
            }
            let (next, keys) = steps.step(&args).await?;
            let found = keys.len() as u64;
            let keys: Vec<Vec<u8>> = dedupe(keys)
                .into_iter()
                .filter(|k| selection.matches_key(k))
                .collect();
            // The readers are gone only when one failed; its error is the
            // walk's.
            if !keys.is_empty() && batches.send(keys).await.is_err() {
                return Ok(true);
            }
            self.progress.advance(found);
            if next == "0" {
                return Ok(true);
            }
            cursor = next;
        }
    }
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
