//! `prune`: apply a retention policy to a backup folder.
//!
//! The plan is the pure retention decision over the folder's metadata;
//! applying it deletes each removed archive's metadata first (so it stops
//! being part of the folder), then the archive and, for a pre-restore
//! backup, its journal. The folder is locked for the whole run. Files that
//! are not complete archives are listed, never deleted.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::archive::manifest::ArchiveKind;
use crate::error::{Error, Result};
use crate::folder::catalog::{Entry, Lock, meta_path, scan};
use crate::folder::retention::{Item, Policy, Zone, decide};
use crate::restore::journal::journal_path;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub dir: PathBuf,
    pub policy: Policy,
    /// Only archives of this kind; pre-restore backups that are the latest
    /// rollback point of their target are kept unless this is `PreRestore`.
    pub kind: Option<ArchiveKind>,
    pub user: Option<String>,
    pub zone: Zone,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneItem {
    pub path: String,
    pub id: String,
    pub kind: ArchiveKind,
    pub created: DateTime<Utc>,
    pub size: u64,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneReport {
    pub dir: String,
    pub applied: bool,
    /// Every archive considered, oldest first, with its decision.
    pub archives: Vec<PruneItem>,
    /// Files in the folder that are not complete archives: left alone.
    pub problems: Vec<Entry>,
    pub kept: u64,
    pub removed: u64,
    /// Bytes removed (or, for a plan, that would be).
    pub freed: u64,
}

/// Plan, and with `apply` delete what the plan removes.
pub fn prune(options: &PruneOptions, apply: bool) -> Result<PruneReport> {
    let _lock = Lock::acquire(&options.dir, "prune")?;
    let entries = scan(&options.dir)?;
    let mut archives = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        match entry {
            Entry::Archive { path, meta } => {
                let wanted = options.kind.is_none_or(|k| k == meta.kind)
                    && options
                        .user
                        .as_ref()
                        .is_none_or(|u| meta.user.as_ref() == Some(u));
                if wanted {
                    archives.push((path, meta));
                }
            }
            problem => problems.push(problem),
        }
    }
    // The newest pre-restore backup of each target is its rollback point.
    let protect_rollback = options.kind != Some(ArchiveKind::PreRestore);
    let items: Vec<Item> = archives
        .iter()
        .map(|(_, meta)| {
            let latest = protect_rollback
                && meta.kind == ArchiveKind::PreRestore
                && !archives.iter().any(|(_, other)| {
                    other.kind == ArchiveKind::PreRestore
                        && other.source == meta.source
                        && (other.created, &other.id) > (meta.created, &meta.id)
                });
            Item {
                id: meta.id.clone(),
                created: meta.created,
                tags: meta.tags.clone(),
                protected: latest.then(|| {
                    format!(
                        "latest rollback point of {}:{}/{} (name --kind pre-restore to prune it)",
                        meta.source.host, meta.source.port, meta.source.db
                    )
                }),
            }
        })
        .collect();
    let decisions = decide(&items, &options.policy, options.now, options.zone)?;
    let mut report = PruneReport {
        dir: options.dir.display().to_string(),
        applied: apply,
        archives: Vec::new(),
        problems,
        kept: 0,
        removed: 0,
        freed: 0,
    };
    for ((path, meta), decision) in archives.into_iter().zip(decisions) {
        if decision.keep {
            report.kept += 1;
        } else {
            report.removed += 1;
            report.freed += meta.size;
        }
        report.archives.push(PruneItem {
            path,
            id: meta.id,
            kind: meta.kind,
            created: meta.created,
            size: meta.size,
            keep: decision.keep,
            reasons: decision.reasons,
        });
    }
    if apply {
        for item in report.archives.iter().filter(|i| !i.keep) {
            let path = PathBuf::from(&item.path);
            // Metadata first: from here the archive is no longer part of the folder.
            for file in [meta_path(&path), path.clone(), journal_path(&path)] {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::output(&file, e)),
                }
            }
        }
    }
    Ok(report)
}
