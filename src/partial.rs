//! Temp files that become real files by rename, and what a crash leaves.
//!
//! Every file `archive` writes (archives, folder metadata) is written to a
//! hidden temp file beside its destination and renamed into place once
//! complete and fsynced, so a reader never sees half a file. A process
//! killed before the rename (SIGKILL, power loss) cannot remove its temp
//! file, so the name carries the writer's pid,
//! `.NAME.PID.RANDOM.archive-partial`, and the next write into the same
//! folder removes those whose process is gone. Liveness is read from
//! `/proc`; where there is none, nothing is removed.

use std::fs;
use std::io;
use std::path::Path;

const SUFFIX: &str = ".archive-partial";

/// A new temp file in `dir` for the file named `name`, after removing
/// temp files that dead processes left in `dir`.
pub(crate) fn create(dir: &Path, name: &str) -> io::Result<tempfile::NamedTempFile> {
    remove_stale(dir);
    tempfile::Builder::new()
        .prefix(&format!(".{name}.{}.", std::process::id()))
        .suffix(SUFFIX)
        .tempfile_in(dir)
}

/// Write `bytes` to `path` so that it is never half there: a temp file
/// beside it, fsync, rename, fsync the directory (the rename is durable
/// only once the directory entry is on disk). Every small file `archive`
/// writes (folder metadata, reports) goes through here; archives take the
/// same steps in their writer, with crash points between them.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut temp = create(parent_dir(path), &name)?;
    temp.as_file_mut().write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    sync_parent(path)
}

/// `text` made safe inside a file name: ASCII letters, digits, `.`, `_` and
/// `-` kept, anything else (a `/`, a space, a quote) turned into `-`. The
/// one rule for every name `archive` makes from a label or a user id.
pub(crate) fn file_name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The directory a path is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Make a rename into `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    fs::File::open(parent_dir(path))?.sync_all()
}

/// The pid in a temp file name of ours, if it is one.
fn writer_pid(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    // NAME may hold dots; PID and RANDOM are the last two parts.
    let mut parts = stem.rsplitn(3, '.');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Remove temp files in `dir` whose writer is no longer running. Best
/// effort: a file that cannot be removed is left for the next time.
pub(crate) fn remove_stale(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(writer_pid) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        assert_eq!(
            writer_pid(".x.tar.zst.123.AbC9zz.archive-partial"),
            Some(123)
        );
        assert_eq!(writer_pid(".meta.7.aaaaaa.archive-partial"), Some(7));
        assert_eq!(writer_pid(".x.tar.zst.partial"), None);
        assert_eq!(writer_pid("x.1.a.archive-partial"), None);
        assert_eq!(writer_pid(".notpid.a.archive-partial"), None);
    }

    #[test]
    fn only_dead_writers_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22: this pid cannot be running.
        let dead = dir
            .path()
            .join(".a.tar.zst.99999999.xxxxxx.archive-partial");
        let alive = dir.path().join(format!(
            ".b.tar.zst.{}.yyyyyy.archive-partial",
            std::process::id()
        ));
        let other = dir.path().join(".c.99999999.zzzzzz.partial");
        for f in [&dead, &alive, &other] {
            fs::write(f, b"x").unwrap();
        }
        let fresh = create(dir.path(), "d.tar.zst").unwrap();
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists() && fresh.path().exists());
    }
}
