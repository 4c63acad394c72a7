//! The backup folder: archives with their metadata, listed without keys.
//!
//! Every archive written into the folder gets a plaintext sidecar,
//! `FILE.meta.json`, written last (temp file, fsync, rename): it is the
//! commit point, so an archive without one was never finished. It says what
//! `list` and `prune` need without decryption keys and without reading the
//! archive: id, kind, name, tags, created, user, source (no credentials),
//! keys, size, sha256 of the file, encrypted. Nothing else: no key names,
//! no values.
//!
//! A lock file keeps two prunes, or a prune and a backup, from racing.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::manifest::{ArchiveKind, Header};
use crate::connection::Address;
use crate::error::{Error, Result};

pub(crate) const META_SUFFIX: &str = ".meta.json";
pub(crate) const META_FORMAT: &str = "redis-archive-meta";
pub(crate) const LOCK_FILE: &str = ".archive.lock";

/// The sidecar of one archive in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Always `redis-archive-meta`, so a stray JSON file is not taken for
    /// metadata.
    pub format: String,
    /// The metadata layout version.
    pub version: u32,
    /// The archive's id, as in its header.
    pub id: String,
    /// Why the archive was written.
    pub kind: ArchiveKind,
    /// The archive's file name, in the same folder.
    pub file: String,
    /// The backup's name, when it was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The backup's tags, which retention can keep archives by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the export began.
    pub created: DateTime<Utc>,
    /// The user id of a user archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The profile groups of a profile archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The server the data came from, without credentials.
    pub source: Address,
    /// Keys in the archive.
    pub keys: u64,
    /// Size of the archive file in bytes.
    pub size: u64,
    /// sha256 of the archive file (hex).
    pub sha256: String,
    /// Whether the archive is age-encrypted.
    pub encrypted: bool,
}

impl Meta {
    /// The metadata of the archive `file` with this header, once written.
    pub fn new(
        header: &Header,
        file: String,
        keys: u64,
        size: u64,
        sha256: String,
        encrypted: bool,
    ) -> Self {
        Meta {
            format: META_FORMAT.into(),
            version: 1,
            id: header.id.clone(),
            kind: header.kind,
            file,
            name: header.name.clone(),
            tags: header.tags.clone(),
            created: header.started_at,
            user: header.profile.as_ref().and_then(|p| p.user.clone()),
            groups: header
                .profile
                .as_ref()
                .map(|p| p.groups.clone())
                .unwrap_or_default(),
            source: header.source.address.clone(),
            keys,
            size,
            sha256,
            encrypted,
        }
    }
}

/// Create `dir` (and parents) with mode 0700: backups hold production data.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::output(dir, e))
}

/// The restore journal beside the pre-restore backup at `backup`: the
/// folder's files are named here, whoever writes them.
pub(crate) fn journal_path(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// The sidecar path of an archive file.
pub(crate) fn meta_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(META_SUFFIX);
    PathBuf::from(name)
}

/// Write `meta` beside its archive, atomically: the archive becomes part of
/// the folder at the rename.
pub fn commit(dir: &Path, meta: &Meta) -> Result<()> {
    let path = meta_path(&dir.join(&meta.file));
    let mut json = serde_json::to_vec_pretty(meta).map_err(|e| Error::Internal(e.to_string()))?;
    json.push(b'\n');
    crate::partial::write_atomically(&path, &json).map_err(|e| Error::output(&path, e))
}

/// A file name that sorts by time and carries a readable label.
pub fn archive_file_name(created: DateTime<Utc>, label: &str, id: &str, encrypted: bool) -> String {
    let label = crate::partial::file_name_part(label);
    format!(
        "{}-{label}-{}.tar.zst{}",
        created.format("%Y%m%dT%H%M%SZ"),
        &id[..id.len().min(8)],
        if encrypted { ".age" } else { "" }
    )
}

/// One thing found in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Entry {
    /// An archive with good metadata.
    Archive {
        /// The archive file.
        path: String,
        /// Its metadata.
        meta: Box<Meta>,
    },
    /// Something that is not a usable archive, and why.
    Problem {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Entry {
    /// The file's path, whether it is an archive or a problem.
    pub fn path(&self) -> &str {
        match self {
            Entry::Archive { path, .. } | Entry::Problem { path, .. } => path,
        }
    }
}

fn is_archive_name(name: &str) -> bool {
    name.ends_with(".tar.zst") || name.ends_with(".tar.zst.age")
}

/// Everything in the folder, archives sorted by creation time, then the
/// problems (files that are not archives, damaged or missing metadata,
/// unfinished writes) sorted by name. Journals, the lock and the audit log are the
/// folder's own and not listed.
pub fn scan(dir: &Path) -> Result<Vec<Entry>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| Error::input(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut archives = Vec::new();
    let mut problems = Vec::new();
    let problem = |name: &str, why: &str| Entry::Problem {
        path: dir.join(name).display().to_string(),
        problem: why.to_string(),
    };
    for name in &names {
        if name == LOCK_FILE || name == super::audit::AUDIT_FILE || name.ends_with(".journal") {
            continue;
        }
        if name.ends_with(".archive-partial") {
            problems.push(problem(
                name,
                "unfinished: a write in progress, or one that was interrupted",
            ));
            continue;
        }
        if let Some(archive) = name.strip_suffix(META_SUFFIX) {
            if !names.iter().any(|n| n == archive) {
                problems.push(problem(name, "metadata without its archive"));
            }
            continue;
        }
        if !is_archive_name(name) {
            problems.push(problem(name, "not an archive"));
            continue;
        }
        let path = dir.join(name);
        let meta_file = meta_path(&path);
        if !meta_file.exists() {
            problems.push(problem(
                name,
                "no metadata: never finished, or not written by `archive backup`",
            ));
            continue;
        }
        let meta = fs::read(&meta_file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).map_err(|e| e.to_string()));
        match meta {
            Ok(meta) if meta.format != META_FORMAT || meta.file != *name => {
                problems.push(problem(
                    name,
                    "damaged metadata: it does not describe this file",
                ));
            }
            Ok(meta) => {
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if size != meta.size {
                    problems.push(problem(
                        name,
                        &format!(
                            "damaged: the file is {size} bytes, its metadata says {}",
                            meta.size
                        ),
                    ));
                } else {
                    archives.push(Entry::Archive {
                        path: path.display().to_string(),
                        meta: Box::new(meta),
                    });
                }
            }
            Err(e) => problems.push(problem(name, &format!("damaged metadata: {e}"))),
        }
    }
    archives.sort_by(|a, b| match (a, b) {
        (Entry::Archive { meta: x, .. }, Entry::Archive { meta: y, .. }) => {
            x.created.cmp(&y.created).then_with(|| x.file.cmp(&y.file))
        }
        _ => std::cmp::Ordering::Equal,
    });
    archives.extend(problems);
    Ok(archives)
}

/// The folder's lock, held while pruning or writing a backup; removed on drop.
#[derive(Debug)]
pub(crate) struct Lock {
    path: PathBuf,
}

/// This machine's name, to tell whose processes a lock's pid can be checked against.
fn host_name() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Whether process `pid` runs on this machine (unknown without `/proc`).
fn running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() || !Path::new("/proc/self").exists()
}

/// What a lock file says: pid, command, time and, since it is written,
/// the host. A lock from this host whose process is gone is stale and is
/// taken over, as restic does; one from another host (a shared folder) or
/// without a host is only named.
struct Holder {
    pid: Option<u32>,
    what: String,
    host: Option<String>,
}

impl Holder {
    fn parse(text: &str) -> Self {
        let mut fields = text.split_whitespace();
        let pid = fields.next().and_then(|p| p.parse().ok());
        let what = fields.next().unwrap_or("something").to_string();
        let host = fields.nth(1).filter(|h| *h != "-").map(str::to_string);
        Holder { pid, what, host }
    }

    /// Left by a process of this machine that is no longer running.
    fn is_stale_here(&self) -> bool {
        match (self.pid, &self.host) {
            (Some(pid), Some(host)) => host_name().as_ref() == Some(host) && !running(pid),
            _ => false,
        }
    }
}

impl Lock {
    pub(crate) fn acquire(dir: &Path, what: &str) -> Result<Lock> {
        let path = dir.join(LOCK_FILE);
        // A stale lock is moved aside and the creation tried again; twice
        // is enough unless another run keeps racing for it.
        for _ in 0..3 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(
                        f,
                        "{} {what} {} {}",
                        std::process::id(),
                        Utc::now().to_rfc3339(),
                        host_name().unwrap_or_else(|| "-".into())
                    );
                    let _ = f.sync_all();
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = Holder::parse(&fs::read_to_string(&path).unwrap_or_default());
                    if !holder.is_stale_here() {
                        return Err(Error::Locked {
                            reason: locked_reason(&holder, &path),
                        });
                    }
                    take_over(&path);
                }
                Err(e) => return Err(Error::output(&path, e)),
            }
        }
        Err(Error::Locked {
            reason: format!(
                "another run keeps taking the folder's lock {}; try again",
                path.display()
            ),
        })
    }
}

/// Move a stale lock aside. The rename is atomic, so of two runs taking
/// over the same stale lock one moves it; if what was moved turns out to
/// be a live lock (another run took over first), it is put back.
fn take_over(path: &Path) {
    let aside = path.with_extension(format!("lock.stale.{}", std::process::id()));
    if fs::rename(path, &aside).is_err() {
        return;
    }
    let moved = Holder::parse(&fs::read_to_string(&aside).unwrap_or_default());
    if moved.is_stale_here() {
        let _ = fs::remove_file(&aside);
    } else {
        let _ = fs::rename(&aside, path);
    }
}

fn locked_reason(holder: &Holder, path: &Path) -> String {
    let what = &holder.what;
    match holder.pid {
        Some(p) if holder.host.is_some() && holder.host != host_name() => format!(
            "the folder is locked by process {p} ({what}) on {}; wait for it, or remove {} if that run is gone",
            holder.host.as_deref().unwrap_or("another host"),
            path.display()
        ),
        Some(p) if running(p) => {
            format!("the folder is locked by process {p} ({what}); wait for it to finish")
        }
        Some(p) => format!(
            "the folder has a stale lock left by process {p} ({what}), which is no longer running; remove {} and run again",
            path.display()
        ),
        None => format!(
            "the folder has an unreadable lock; remove {} and run again",
            path.display()
        ),
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_time_and_are_safe() {
        let t: DateTime<Utc> = "2026-11-21T02:00:00Z".parse().unwrap();
        assert_eq!(
            archive_file_name(t, "before upgrade/v2", "0123456789abcdef", true),
            "20261121T020000Z-before-upgrade-v2-01234567.tar.zst.age"
        );
    }

    #[test]
    fn a_second_lock_is_refused_and_a_stale_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Lock::acquire(dir.path(), "prune").unwrap();
        let err = Lock::acquire(dir.path(), "backup").unwrap_err().to_string();
        assert!(err.contains("locked by process"), "{err}");
        drop(lock);
        fs::write(
            dir.path().join(LOCK_FILE),
            "999999999 prune 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        let err = Lock::acquire(dir.path(), "prune").unwrap_err().to_string();
        assert!(
            err.contains("stale lock left by process 999999999"),
            "a lock without a host is only named: {err}"
        );
        // Left on this host by a process that is gone: taken over.
        let host = host_name().unwrap();
        fs::write(
            dir.path().join(LOCK_FILE),
            format!("999999999 backup 2026-01-01T00:00:00Z {host}\n"),
        )
        .unwrap();
        let lock = Lock::acquire(dir.path(), "prune").unwrap();
        let text = fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.starts_with(&std::process::id().to_string()), "{text}");
        drop(lock);
        // Held on another host: never taken over.
        fs::write(
            dir.path().join(LOCK_FILE),
            "999999999 backup 2026-01-01T00:00:00Z elsewhere.example\n",
        )
        .unwrap();
        let err = Lock::acquire(dir.path(), "prune").unwrap_err().to_string();
        assert!(err.contains("on elsewhere.example"), "{err}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing left aside"
        );
    }
}
