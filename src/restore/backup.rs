//! The pre-restore backup: what a restore is about to change, saved first.
//!
//! While a restore plans, every key it will overwrite or merge into is read
//! from the target (type, value, TTL) and every key it will create is
//! recorded as `absent`, into an ordinary archive of kind `pre-restore`, in
//! the order of the archive being restored. The backup is finished (fsynced
//! and renamed into place) before the restore's first write; rollback puts
//! it back. Backups live in a folder of their own, created 0700.

use std::path::{Path, PathBuf};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::archive::manifest::{ArchiveKind, RestoreLink, Source};
use crate::archive::{ArchiveWriter, Destination, Header, WriterOptions};
use crate::connection::{Conn, Endpoint, ServerInfo};
use crate::error::{Error, Result};
use crate::fetch::{ChunkSizes, Fetcher};
use crate::folder::catalog::{Meta, archive_file_name, commit, create_private_dir};
use crate::keyspace::Selection;
use crate::record::{Bytes, KeyType, Record, Value};
use crate::report::Action;
use crate::restore::members::SharedMembers;

/// The default folder for backups: `$ARCHIVE_BACKUP_DIR` is read by the
/// binary; this is what applies without it.
pub fn default_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("archive").join("backups")
}

/// A pre-restore backup being written.
pub(crate) struct PreRestoreBackup {
    writer: ArchiveWriter,
    conn: Conn,
    pub path: PathBuf,
    /// The file's name in the folder, for its metadata.
    file: String,
    /// One reader for the whole backup, so what it learns of the keyspace
    /// (key shapes, its link to the server) serves every batch; it is out
    /// of this slot while a batch is read.
    fetcher: Option<Fetcher>,
}

impl std::fmt::Debug for PreRestoreBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreRestoreBackup")
            .field("path", &self.path)
            .finish()
    }
}

impl PreRestoreBackup {
    /// Start a backup of `target` (a `server` as `conn` reported it) in `dir`.
    pub async fn create(
        dir: &Path,
        target: &Endpoint,
        conn: &mut Conn,
        server: ServerInfo,
        link: RestoreLink,
    ) -> Result<Self> {
        create_private_dir(dir)?;
        let server_info = server.clone();
        let field_expiry = conn.may_have_field_expiry(&server).await?;
        let started = Utc::now();
        let mut header = Header::new(
            ArchiveKind::PreRestore,
            started,
            Source {
                address: target.address(),
                server,
                cluster: conn
                    .topology()
                    .as_ref()
                    .map(crate::archive::manifest::ClusterSource::of),
            },
            Selection::default(),
        );
        header.restore = Some(link);
        let file = archive_file_name(started, "pre-restore", &header.id, false);
        let path = dir.join(&file);
        let writer = ArchiveWriter::create(
            Destination::File(path.clone()),
            header,
            WriterOptions::default(),
            None,
        )?;
        // Each batch gets a channel of its own (see `save`).
        let (tx, _) = crate::fetch::channel(1);
        let fetcher = Fetcher::new(conn.clone(), ChunkSizes::default(), tx)
            .for_server(&server_info)
            .reading_field_expiry(field_expiry);
        Ok(PreRestoreBackup {
            writer,
            conn: conn.clone(),
            path,
            file,
            fetcher: Some(fetcher),
        })
    }

    /// Save the current state of `wanted` keys, in order: the value of
    /// keys to overwrite or merge into, `absent` for keys to create. Each
    /// key's type in the archive is what it is first read as (the target's
    /// key most likely has it; a key of another type is read the usual
    /// way). Returns the positions (in `wanted`) of keys that turned out
    /// not to exist, which were saved as absent. A key that cannot be read
    /// stops the restore: without its backup it must not be changed.
    ///
    /// A shared key of a user archive (`Some` members) is saved as the
    /// previous state of the members the restore writes, not whole: a
    /// record holding those that exist, or `absent` when none does.
    pub async fn save(
        &mut self,
        wanted: &[(&[u8], KeyType, Action, Option<&SharedMembers>)],
    ) -> Result<Vec<usize>> {
        let mut members: Vec<Option<Record>> = Vec::new();
        for (_, _, action, shared) in wanted {
            if let (Some(shared), false) = (shared, *action == Action::Create) {
                let states = shared.read(&mut self.conn).await?;
                members.push(shared.backup_record(&states));
            }
        }
        let mut members = members.into_iter();
        let (to_read, types): (Vec<Vec<u8>>, Vec<KeyType>) = wanted
            .iter()
            .filter(|(_, _, a, m)| *a != Action::Create && m.is_none())
            .map(|(k, t, _, _)| (k.to_vec(), *t))
            .unzip();
        let mut fetcher = self
            .fetcher
            .take()
            .ok_or_else(|| Error::Internal("a backup batch after a failed one".into()))?;
        let writer = &mut self.writer;
        // The fetcher fills a bounded channel while the drain writes records
        // in `wanted` order, so neither waits on the other and memory stays
        // flat. The channel is this batch's: once the fetcher lets go of it
        // the drain sees its end (keys gone since EXISTS send nothing), and
        // a drain that stops early closes it under the fetcher.
        let (tx, mut rx) = crate::fetch::channel(64);
        fetcher.sending_to(tx);
        let fetch = async move {
            let read = fetcher.fetch_batch_typed(to_read, types).await;
            fetcher.sending_to(mpsc::channel(1).0);
            let stats = std::mem::take(&mut fetcher.stats);
            (read, stats, fetcher)
        };
        let drain = async move {
            let mut gone = Vec::new();
            let mut pending: Option<Record> = None;
            for (i, (key, _, action, shared)) in wanted.iter().enumerate() {
                if *action == Action::Create {
                    writer.write_record(&absent(key))?;
                    continue;
                }
                if shared.is_some() {
                    match members.next().flatten() {
                        Some(record) => writer.write_record(&record)?,
                        None => writer.write_record(&absent(key))?,
                    }
                    continue;
                }
                let first = match pending.take() {
                    Some(r) => Some(r),
                    None => rx.recv().await,
                };
                match first {
                    Some(record) if record.key.0 == *key => {
                        let mut record = record;
                        loop {
                            let (mut more, mut void) = (record.more, record.void);
                            writer.write_record(&record)?;
                            while more {
                                let Some(next) = rx.recv().await else { break };
                                (more, void) = (next.more, next.void);
                                writer.write_record(&next)?;
                            }
                            if !void {
                                break;
                            }
                            // It changed while read: read again, or gone.
                            match rx.recv().await {
                                Some(again) if again.key.0 == *key => record = again,
                                other => {
                                    pending = other;
                                    writer.write_record(&absent(key))?;
                                    gone.push(i);
                                    break;
                                }
                            }
                        }
                    }
                    other => {
                        pending = other;
                        writer.write_record(&absent(key))?;
                        gone.push(i);
                    }
                }
            }
            Ok::<_, Error>(gone)
        };
        let ((read, stats, fetcher), gone) = tokio::join!(fetch, drain);
        read?;
        self.fetcher = Some(fetcher);
        if let Some(e) = stats.errors.examples().first() {
            return Err(Error::Redis {
                endpoint: self.conn.endpoint().display(),
                action: "backing up keys before the restore".into(),
                reason: format!(
                    "cannot read key \"{}\" ({}); nothing was written, the key must be backed up before it is changed",
                    e.key, e.reason
                ),
            });
        }
        gone
    }

    /// Finish the archive (fsynced, in place) and commit its metadata.
    /// Returns its path.
    pub fn finish(self) -> Result<PathBuf> {
        let finished = self.writer.finish(Utc::now(), 0)?;
        let meta = Meta::new(
            &finished.manifest.header,
            self.file,
            finished.manifest.counts.keys,
            finished.bytes,
            finished.sha256,
            finished.encrypted,
        );
        let dir = self.path.parent().unwrap_or(Path::new("."));
        commit(dir, &meta)?;
        Ok(self.path)
    }
}

fn absent(key: &[u8]) -> Record {
    Record::new(Bytes(key.to_vec()), Value::Absent(Default::default()))
}
