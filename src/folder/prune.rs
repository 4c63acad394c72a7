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

use super::catalog::journal_path;
use crate::archive::manifest::ArchiveKind;
use crate::error::{Error, Result};
use crate::folder::catalog::{Entry, Lock, meta_path, scan};
use crate::folder::retention::{Item, Policy, Zone, decide};

/// What to prune and by which rules; [`prune`] plans, and removes only when
/// asked to.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The backup folder.
    pub dir: PathBuf,
    /// Which archives to keep.
    pub policy: Policy,
    /// Only archives of this kind; pre-restore backups that are the latest
    /// rollback point of their target are kept unless this is `PreRestore`.
    pub kind: Option<ArchiveKind>,
    /// Only archives of this user.
    pub user: Option<String>,
    /// The timezone calendar periods (days, weeks...) are counted in.
    pub zone: Zone,
    /// The time the policy is applied at (normally now).
    pub now: DateTime<Utc>,
}

/// One archive considered by prune, and its fate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneItem {
    /// The archive file.
    pub path: String,
    /// Its id.
    pub id: String,
    /// Why it was written.
    pub kind: ArchiveKind,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Size in bytes.
    pub size: u64,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it (empty when it is removed).
    pub reasons: Vec<String>,
}

/// What prune decided, and did unless it was a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneReport {
    /// The backup folder.
    pub dir: String,
    /// True when archives were removed; false for a plan.
    pub applied: bool,
    /// Every archive considered, oldest first, with its decision.
    pub archives: Vec<PruneItem>,
    /// Files in the folder that are not complete archives: left alone.
    pub problems: Vec<Entry>,
    /// Archives kept.
    pub kept: u64,
    /// Archives removed (or, for a plan, that would be).
    pub removed: u64,
    /// Bytes removed (or, for a plan, that would be).
    pub freed: u64,
}

/// Plan, and with `apply` delete what the plan removes; an applied prune
/// is logged in the folder's audit log.
pub fn prune(options: &PruneOptions, apply: bool) -> Result<PruneReport> {
    let result = prune_folder(options, apply);
    if apply {
        super::audit::record(std::slice::from_ref(&options.dir), "prune", result, |_| {
            false
        })
    } else {
        result
    }
}

fn prune_folder(options: &PruneOptions, apply: bool) -> Result<PruneReport> {
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
