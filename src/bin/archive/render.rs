//! Reports as text for people, or JSON for scripts.
//! One file for every report on purpose: the tables share their columns and
//! wording, which stay consistent when they are side by side.

use std::collections::BTreeMap;
use std::io::{self, Write};

use redis_archive::archive::manifest::ArchiveKind;
use redis_archive::archive::{Header, Manifest, Redaction, RedactionMethod};
use redis_archive::compare::{CompareMode, Comparison};
use redis_archive::copy::CopyReport;
use redis_archive::folder::audit::{AuditEntry, Outcome};
use redis_archive::folder::catalog::Entry;
use redis_archive::folder::prune::PruneReport;
use redis_archive::keyspace::Selection;
use redis_archive::profile::ProfileScope;
use redis_archive::profile::upgrade::UpgradeSummary;
use redis_archive::record::KeyType;
use redis_archive::report::{
    Action, ActionCounts, ExportReport, GroupCounts, KeyError, PlanNames, RenameSummary,
    RestoreReport,
};
use redis_archive::restore::rollback::RollbackReport;
use redis_archive::upgrade::UpgradeReport;
use redis_archive::validate::ValidationReport;
use serde::Serialize;

/// "... and N more" when a list shows fewer than there are.
fn and_more(out: &mut dyn Write, total: u64, shown: usize) -> io::Result<()> {
    if total > shown as u64 {
        writeln!(out, "  ... and {} more", total - shown as u64)?;
    }
    Ok(())
}

pub fn json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn errors(out: &mut dyn Write, total: u64, samples: &[KeyError]) -> io::Result<()> {
    if total == 0 {
        return Ok(());
    }
    writeln!(out, "{total} key(s) failed; the first {}:", samples.len())?;
    for e in samples {
        writeln!(out, "  \"{}\": {}", e.key, e.reason)?;
    }
    Ok(())
}

pub fn export(out: &mut dyn Write, r: &ExportReport) -> io::Result<()> {
    writeln!(
        out,
        "exported {} keys ({} records) from {} to {} ({}) in {:.1} s",
        r.keys,
        r.records,
        r.source,
        r.output,
        human_bytes(r.bytes),
        r.seconds
    )?;
    writeln!(
        out,
        "{:<8} {:>10} {:>10} {:>8}",
        "type", "exported", "vanished", "errors"
    )?;
    for (t, s) in &r.by_type {
        writeln!(
            out,
            "{:<8} {:>10} {:>10} {:>8}",
            t.name(),
            s.exported,
            s.vanished,
            s.errors
        )?;
    }
    if let Some(p) = &r.profile {
        profile_scope(out, p, &r.groups)?;
    }
    redaction(out, r.redaction.as_ref())?;
    let untyped = r.vanished - r.by_type.values().map(|s| s.vanished).sum::<u64>();
    if untyped > 0 {
        writeln!(out, "{untyped} key(s) vanished before their type was read")?;
    }
    if r.changed > 0 {
        writeln!(
            out,
            "{} time(s) a big key changed while being read: its partial copy is voided in the archive (never restored) and it was read again",
            r.changed
        )?;
    }
    if r.expired > 0 {
        writeln!(
            out,
            "{} selected key(s) in the snapshot had already expired and were not exported",
            r.expired
        )?;
    }
    if r.functions_not_kept > 0 {
        writeln!(
            out,
            "warning: {} function librar(y/ies) in the snapshot are not kept in the archive; copy them with FUNCTION DUMP and FUNCTION RESTORE",
            r.functions_not_kept
        )?;
    }
    errors(out, r.errors, &r.error_samples)
}

/// Columns worth showing: create always, the other actions when they occur.
fn columns(counts: &ActionCounts) -> Vec<Action> {
    Action::ALL
        .into_iter()
        .filter(|&a| a == Action::Create || counts.total(a) > 0)
        .collect()
}

pub fn plan_table(out: &mut dyn Write, counts: &ActionCounts) -> io::Result<()> {
    table(out, counts, &BTreeMap::new())
}

/// The plan per type and action, and, after a run where keys failed, a
/// `failed` column: a partial run's table names every type that failed.
fn table(
    out: &mut dyn Write,
    counts: &ActionCounts,
    failed: &BTreeMap<KeyType, u64>,
) -> io::Result<()> {
    let columns = columns(counts);
    let with_failed = failed.values().any(|&n| n > 0);
    write!(out, "{:<8}", "type")?;
    for a in &columns {
        write!(out, " {:>10}", a.name())?;
    }
    if with_failed {
        write!(out, " {:>10}", "failed")?;
    }
    writeln!(out)?;
    for t in KeyType::ALL {
        if !counts.by_type.contains_key(&t) && !failed.contains_key(&t) {
            continue;
        }
        write!(out, "{:<8}", t.name())?;
        for &a in &columns {
            write!(out, " {:>10}", counts.get(t, a))?;
        }
        if with_failed {
            write!(out, " {:>10}", failed.get(&t).copied().unwrap_or(0))?;
        }
        writeln!(out)?;
    }
    write!(out, "{:<8}", "total")?;
    for &a in &columns {
        write!(out, " {:>10}", counts.total(a))?;
    }
    if with_failed {
        write!(out, " {:>10}", failed.values().sum::<u64>())?;
    }
    writeln!(out)
}

/// `verb` is what was done: "restore" or "copy".
pub fn restore(out: &mut dyn Write, r: &RestoreReport, verb: &str) -> io::Result<()> {
    if r.dry_run {
        writeln!(
            out,
            "dry run: {verb} {} into {} would do this (nothing was written):",
            r.source, r.target
        )?;
    } else {
        writeln!(
            out,
            "{verb} {} into {}: {} keys written, {} failed, in {:.1} s",
            r.source, r.target, r.written, r.errors, r.seconds
        )?;
    }
    if let Some(w) = &r.redaction_warning {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(p) = &r.profile {
        let who = p.user.as_deref().unwrap_or("(all users)");
        match &p.as_user {
            Some(new) => writeln!(
                out,
                "user {who} of profile {}, written as user {new}",
                p.name
            )?,
            None => writeln!(out, "user {who} of profile {}", p.name)?,
        }
        if let Some(u) = &p.upgrade {
            upgrade(out, u, !r.dry_run)?;
        }
    }
    table(out, &r.plan, &r.errors_by_type)?;
    if let Some(renames) = &r.renames {
        self::renames(out, renames)?;
    }
    group_counts(out, &r.groups)?;
    plan_names(out, &r.names, &r.plan)?;
    if r.dry_run {
        merge_would_add(out, r.merge_would_add, &r.plan)?;
    }
    let merged = r.plan.total(Action::Merge);
    if merged > 0 && !r.dry_run {
        writeln!(
            out,
            "merge added {} fields, members or entries to {merged} existing keys",
            r.added
        )?;
    }
    if r.appeared > 0 {
        writeln!(
            out,
            "{} key(s) appeared in the target after the plan and were left alone",
            r.appeared
        )?;
    }
    if r.redirects > 0 {
        writeln!(
            out,
            "followed {} cluster redirection(s) (slots moving while writing)",
            r.redirects
        )?;
    }
    pending_not_restored(out, r.pending_not_restored)?;
    errors(out, r.errors, &r.error_samples)?;
    if !r.dry_run {
        match (&r.backup, &r.rollback) {
            (Some(path), Some(cmd)) => {
                writeln!(out, "pre-restore backup: {path}")?;
                writeln!(out, "to undo this {verb}: {cmd}")?;
            }
            _ => writeln!(
                out,
                "no pre-restore backup was written (--no-backup): this {verb} cannot be rolled back"
            )?,
        }
    }
    if r.is_partial() {
        writeln!(
            out,
            "the {verb} was partial: fix the cause above and run it again (with --mode skip, keys already written are left as they are)"
        )?;
    }
    Ok(())
}

pub fn copy(out: &mut dyn Write, r: &CopyReport) -> io::Result<()> {
    restore(out, &r.restore, "copy")?;
    selection(out, &r.selection)?;
    if r.vanished > 0 {
        writeln!(
            out,
            "{} key(s) vanished from the source while being read",
            r.vanished
        )?;
    }
    if r.read_errors > 0 {
        writeln!(
            out,
            "{} key(s) could not be read from the source:",
            r.read_errors
        )?;
        for e in &r.read_error_samples {
            writeln!(out, "  \"{}\": {}", e.key, e.reason)?;
        }
    }
    if let Some(c) = &r.verification {
        write!(out, "verify: ")?;
        comparison(out, c)?;
    }
    Ok(())
}

/// How many `old -> new` examples and unrenamed keys a plan shows.
const RENAME_EXAMPLES: usize = 5;

/// What a plan's merges would add, when it was counted.
pub fn merge_would_add(out: &mut dyn Write, n: Option<u64>, plan: &ActionCounts) -> io::Result<()> {
    let merged = plan.total(Action::Merge);
    match n {
        Some(n) if merged > 0 => writeln!(
            out,
            "merge would add {n} fields, members or entries to {merged} existing keys"
        ),
        _ => Ok(()),
    }
}

/// What was done (or would be) to each profile group's keys.
pub fn group_counts(out: &mut dyn Write, groups: &BTreeMap<String, GroupCounts>) -> io::Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    writeln!(out, "per group:")?;
    for (name, c) in groups {
        write!(
            out,
            "  {name}: {} created, {} skipped, {} overwritten, {} merged, {} failed",
            c.created, c.skipped, c.overwritten, c.merged, c.failed
        )?;
        if c.other > 0 {
            write!(out, ", {} not written (expired or unsupported)", c.other)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The first existing keys the plan skips, overwrites or merges into,
/// under their counts.
pub fn plan_names(out: &mut dyn Write, names: &PlanNames, plan: &ActionCounts) -> io::Result<()> {
    let lists = [
        (
            &names.skip,
            Action::Skip,
            "existing keys skipped (left as they are)",
        ),
        (
            &names.overwrite,
            Action::Overwrite,
            "existing keys overwritten",
        ),
        (&names.merge, Action::Merge, "existing keys merged into"),
    ];
    for (list, action, label) in lists {
        if list.is_empty() {
            continue;
        }
        let total = plan.total(action);
        writeln!(out, "{label}: {total}")?;
        for key in list {
            writeln!(out, "  {key}")?;
        }
        and_more(out, total, list.len())?;
    }
    Ok(())
}

/// What the rename rules do: how many keys they rename, the first few
/// `old -> new`, and the keys no rule renames.
pub fn renames(out: &mut dyn Write, r: &RenameSummary) -> io::Result<()> {
    if r.examples.is_empty() {
        writeln!(out, "renames: no key renamed")?;
    } else {
        writeln!(out, "renames: {} key(s) renamed, e.g.", r.renamed)?;
    }
    for e in r.examples.iter().take(RENAME_EXAMPLES) {
        writeln!(out, "  {} -> {}", e.from, e.to)?;
    }
    and_more(out, r.renamed, r.examples.len().min(RENAME_EXAMPLES))?;
    if r.not_renamed > 0 {
        writeln!(
            out,
            "{} selected key(s) no rule renames (they keep their name):",
            r.not_renamed
        )?;
        for key in r.not_renamed_examples.iter().take(RENAME_EXAMPLES) {
            writeln!(out, "  {key}")?;
        }
        and_more(
            out,
            r.not_renamed,
            r.not_renamed_examples.len().min(RENAME_EXAMPLES),
        )?;
    }
    Ok(())
}

pub fn selection(out: &mut dyn Write, s: &Selection) -> io::Result<()> {
    let list = |v: &[String], none: &str| {
        if v.is_empty() {
            none.to_string()
        } else {
            v.join(" ")
        }
    };
    writeln!(out, "match:           {}", list(&s.include, "*"))?;
    writeln!(out, "exclude:         {}", list(&s.exclude, "-"))?;
    let types: Vec<String> = s.types.iter().map(|t| t.name().to_string()).collect();
    writeln!(out, "types:           {}", list(&types, "all"))
}

/// Whose records a profile archive holds, and how many per group.
fn profile_scope(
    out: &mut dyn Write,
    p: &ProfileScope,
    groups: &BTreeMap<String, u64>,
) -> io::Result<()> {
    writeln!(
        out,
        "profile:         {} (data schema_version {})",
        p.name, p.schema_version
    )?;
    writeln!(
        out,
        "user:            {}",
        p.user.as_deref().unwrap_or("(all users)")
    )?;
    let counted: Vec<String> = p
        .groups
        .iter()
        .map(|g| format!("{g} {}", groups.get(g).copied().unwrap_or(0)))
        .collect();
    writeln!(out, "groups (keys):   {}", counted.join(", "))?;
    if !p.shared_keys.is_empty() {
        writeln!(
            out,
            "shared indexes:  {} (this user's members only)",
            p.shared_keys.join(", ")
        )?;
    }
    Ok(())
}

/// What an upgrade did, or would do, to the records.
fn upgrade(out: &mut dyn Write, u: &UpgradeSummary, done: bool) -> io::Result<()> {
    writeln!(
        out,
        "data schema {} -> {}: {} records {}, {} already current, {} broken",
        u.from,
        u.to,
        u.changed,
        if done { "upgraded" } else { "to upgrade" },
        u.current,
        u.broken
    )?;
    if u.split > 0 {
        writeln!(
            out,
            "{} string(s) over 64 KiB left as they are (the steps need them whole); run `archive upgrade` after the restore",
            u.split
        )?;
    }
    for s in &u.steps {
        writeln!(out, "  {:>8}  {}", s.records, s.step)?;
    }
    broken_records(out, u)
}

/// What `archive upgrade` found (statistics, dry run) or did.
pub fn upgrade_report(out: &mut dyn Write, r: &UpgradeReport) -> io::Result<()> {
    writeln!(
        out,
        "{} {}: profile {}{}, data schema {} -> {}",
        if r.dry_run { "plan for" } else { "upgraded" },
        r.target,
        r.profile,
        r.user
            .as_deref()
            .map(|u| format!(", user {u}"))
            .unwrap_or_default(),
        r.from,
        r.to
    )?;
    writeln!(
        out,
        "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "group", "records", "legacy", "current", "broken", "written", "failed"
    )?;
    for g in &r.groups {
        let u = &g.upgrade;
        writeln!(
            out,
            "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            g.group, u.records, u.changed, u.current, u.broken, g.written, g.failed
        )?;
    }
    writeln!(
        out,
        "  {:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "total", r.records, r.legacy, r.current, r.broken, r.written, r.failed
    )?;
    writeln!(
        out,
        "steps (records {}):",
        if r.dry_run { "to change" } else { "changed" }
    )?;
    for s in &r.steps {
        writeln!(out, "  {:>8}  {}", s.records, s.step)?;
    }
    if !r.legacy_keys.is_empty() {
        let more = r.legacy.saturating_sub(r.legacy_keys.len() as u64);
        writeln!(
            out,
            "legacy records: {}{}",
            r.legacy_keys.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )?;
    }
    broken_records(
        out,
        &UpgradeSummary {
            broken: r.broken,
            broken_records: r.broken_records.clone(),
            ..UpgradeSummary::default()
        },
    )?;
    if r.retried > 0 {
        writeln!(
            out,
            "{} record(s) changed by someone else while upgraded: read again and upgraded from their new value (rollback leaves those changed after the backup as they are)",
            r.retried
        )?;
    }
    if r.failed > 0 {
        writeln!(
            out,
            "failed: {} record(s) kept changing (or became broken) and were not written: {}",
            r.failed,
            r.failed_keys.join(", ")
        )?;
    }
    if !r.dry_run {
        match (&r.backup, &r.rollback) {
            (Some(path), Some(cmd)) => {
                writeln!(out, "pre-upgrade backup: {path}")?;
                writeln!(out, "to undo this upgrade: {cmd}")?;
            }
            _ if r.written > 0 => writeln!(
                out,
                "no pre-upgrade backup was written (--no-backup): this upgrade cannot be rolled back"
            )?,
            _ => writeln!(out, "nothing written: no record needs the upgrade")?,
        }
    }
    Ok(())
}

/// The first records no upgrade step could apply to, and how many more.
fn broken_records(out: &mut dyn Write, u: &UpgradeSummary) -> io::Result<()> {
    if u.broken == 0 {
        return Ok(());
    }
    writeln!(out, "problems: {} record(s) cannot be upgraded", u.broken)?;
    for b in &u.broken_records {
        writeln!(out, "  {}: {}", b.key, b.reason)?;
    }
    let more = u.broken.saturating_sub(u.broken_records.len() as u64);
    if more > 0 {
        writeln!(out, "  ... and {more} more")?;
    }
    Ok(())
}

/// Whether the keys are one instant, and which: per node, the replication
/// offset (or the file) and when the server made the RDB.
fn snapshot(out: &mut dyn Write, h: &Header) -> io::Result<()> {
    let Some(snap) = &h.snapshot else {
        return writeln!(
            out,
            "consistency:     live (keys read one by one with SCAN while the database could change)"
        );
    };
    writeln!(
        out,
        "consistency:     snapshot (one instant of the database)"
    )?;
    for node in &snap.nodes {
        let mut line = format!("  {} (RDB version {}", node.node, node.rdb_version);
        if let Some(offset) = node.offset {
            line.push_str(&format!(", replication offset {offset}"));
        }
        if let Some(at) = node.created_at {
            line.push_str(&format!(", made {}", at.to_rfc3339()));
        }
        writeln!(out, "{line})")?;
    }
    Ok(())
}

pub fn manifest(out: &mut dyn Write, m: &Manifest, encrypted: bool) -> io::Result<()> {
    let h = &m.header;
    writeln!(
        out,
        "format:          {} (schema_version {})",
        h.format, h.schema_version
    )?;
    writeln!(
        out,
        "encrypted:       {}",
        if encrypted { "yes (age)" } else { "no" }
    )?;
    writeln!(out, "kind:            {:?}", h.kind)?;
    writeln!(
        out,
        "written by:      {} {}",
        h.program.name, h.program.version
    )?;
    if let Some(o) = &h.operator {
        writeln!(out, "operator:        {}@{}", o.user, o.host)?;
        writeln!(out, "command:         {}", o.command)?;
    }
    writeln!(out, "started:         {}", h.started_at.to_rfc3339())?;
    writeln!(out, "finished:        {}", m.finished_at.to_rfc3339())?;
    let s = &h.source;
    writeln!(
        out,
        "source:          {}{}:{}/{} ({} {})",
        if s.address.tls { "rediss://" } else { "" },
        s.address.host,
        s.address.port,
        s.address.db,
        s.server.flavor,
        s.server.version
    )?;
    if let Some(c) = &s.cluster {
        writeln!(
            out,
            "cluster:         {} primaries serving {} slots",
            c.nodes, c.slots
        )?;
    }
    snapshot(out, h)?;
    match &h.profile {
        Some(p) => profile_scope(out, p, &m.groups)?,
        None => selection(out, &h.selection)?,
    }
    redaction(out, h.redaction.as_ref())?;
    writeln!(
        out,
        "keys:            {} in {} records",
        m.counts.keys, m.counts.records
    )?;
    if m.counts.vanished > 0 {
        writeln!(
            out,
            "vanished:        {} (gone while being read, not in the archive)",
            m.counts.vanished
        )?;
    }
    if m.counts.voided > 0 {
        writeln!(
            out,
            "voided:          {} partial copies of keys that changed while being read (never restored)",
            m.counts.voided
        )?;
    }
    if m.counts.field_expiries > 0 {
        writeln!(
            out,
            "field expiries:  {} hash fields with their own expiry",
            m.counts.field_expiries
        )?;
    }
    writeln!(out, "{:<8} {:>10} {:>10}", "type", "keys", "records")?;
    for (t, c) in &m.counts.by_type {
        writeln!(out, "{:<8} {:>10} {:>10}", t.name(), c.keys, c.records)?;
    }
    writeln!(out, "entries:")?;
    for e in &m.entries {
        writeln!(
            out,
            "  {}  {:>10}  {:>8} records  sha256 {}",
            e.name,
            human_bytes(e.size),
            e.records,
            e.sha256
        )?;
    }
    Ok(())
}

/// How an archive was redacted, and which fields per group (never a key).
fn redaction(out: &mut dyn Write, r: Option<&Redaction>) -> io::Result<()> {
    let Some(r) = r else {
        return Ok(());
    };
    let how = match r.method {
        RedactionMethod::Mask => "masked",
        RedactionMethod::HmacSha256 => "keyed hash (hmac-sha256), equal values stay equal",
        _ => r.method.name(),
    };
    writeln!(out, "redacted:        {how}")?;
    for (group, fields) in &r.fields {
        writeln!(out, "  {group}: {}", fields.join(", "))?;
    }
    Ok(())
}

pub fn validation(out: &mut dyn Write, r: &ValidationReport) -> io::Result<()> {
    let version = r
        .schema_version
        .map_or_else(|| "unknown".to_string(), |v| v.to_string());
    if let Some(p) = &r.profile {
        let groups: Vec<String> = p.groups.iter().map(|(g, n)| format!("{g} {n}")).collect();
        writeln!(
            out,
            "profile {}: user {}, keys per group: {}; {} record problem(s)",
            p.name,
            p.user.as_deref().unwrap_or("(all users)"),
            groups.join(", "),
            p.findings
        )?;
        if let Some(u) = &p.upgrade {
            upgrade(out, u, false)?;
        }
    }
    if r.valid {
        writeln!(
            out,
            "valid: {} (schema_version {version}, {} keys in {} records{})",
            r.file,
            r.keys,
            r.records,
            if r.encrypted { ", encrypted" } else { "" }
        )?;
        return Ok(());
    }
    let only_records = r
        .profile
        .as_ref()
        .is_some_and(|p| p.findings == r.problems_total);
    if only_records {
        writeln!(
            out,
            "INVALID: {}: {} record problem(s) under the profile; the archive itself is intact",
            r.file, r.problems_total
        )?;
    } else {
        writeln!(
            out,
            "INVALID: {}: {} problem(s); do not restore from it",
            r.file, r.problems_total
        )?;
    }
    for p in &r.problems {
        writeln!(out, "  {}{}", p.location(), p.message)?;
    }
    and_more(out, r.problems_total, r.problems.len())?;
    Ok(())
}

/// The verdict first (`copy --verify` puts it after "verify: "), then what
/// was not compared and what the renames found, then the differences.
pub fn comparison(out: &mut dyn Write, c: &Comparison) -> io::Result<()> {
    let expired = if c.expired_in_archive > 0 {
        format!(", {} expired in the archive", c.expired_in_archive)
    } else {
        String::new()
    };
    if c.is_identical() {
        let verdict = match c.mode {
            CompareMode::Subset => "in the target, equal (keys only in the target not looked at):",
            CompareMode::Merge => {
                "merged: every field, member and entry is in the target (values and expiry its own):"
            }
            _ => "identical:",
        };
        writeln!(
            out,
            "{verdict} {} and {} ({} keys compared{expired})",
            c.archive, c.target, c.compared
        )?;
    } else {
        let kinds: Vec<String> = c
            .by_kind
            .iter()
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect();
        writeln!(
            out,
            "DIFFERENT: {} and {}: {} difference(s) ({}); {} keys compared, {} identical{expired}",
            c.archive,
            c.target,
            c.differences,
            kinds.join(", "),
            c.compared,
            c.identical
        )?;
    }
    if c.not_compared > 0 {
        writeln!(
            out,
            "not compared: {} key(s) of types the server re-encodes, whose DUMP payloads differ without saying whether their values do (e.g. {})",
            c.not_compared,
            c.not_compared_examples.join(", ")
        )?;
    }
    if let Some(r) = &c.renames {
        let missing = if r.missing > 0 {
            format!(", {} not found under their new names", r.missing)
        } else {
            String::new()
        };
        writeln!(
            out,
            "renames: {} key(s) looked up under their new names{missing}, {} no rule renames",
            r.renamed, r.not_renamed
        )?;
    }
    for d in &c.examples {
        let kind = d.kind.name();
        writeln!(out, "  {kind:<14} \"{}\": {}", d.key, d.detail)?;
    }
    and_more(out, c.differences, c.examples.len())
}

pub fn rollback(out: &mut dyn Write, r: &RollbackReport) -> io::Result<()> {
    let lead = if r.dry_run {
        format!("dry run: rolling back {} into {} would", r.backup, r.target)
    } else {
        format!("rolled back {} into {}:", r.backup, r.target)
    };
    writeln!(
        out,
        "{lead} put back {} keys, delete {} keys the restore created, leave {} untouched keys alone",
        r.restored, r.deleted, r.untouched
    )?;
    if r.already_gone > 0 {
        writeln!(
            out,
            "{} key(s) the restore created are gone already: nothing to do",
            r.already_gone
        )?;
    }
    if r.changed > 0 {
        let what = if r.skipped_changed > 0 {
            "left as they are (--skip-changed)"
        } else {
            "put back anyway (--skip-changed leaves them)"
        };
        writeln!(
            out,
            "{} key(s) were changed after the restore, {what}: {}",
            r.changed,
            r.changed_samples.join(", ")
        )?;
    }
    if r.members_reverted > 0 {
        writeln!(
            out,
            "{} {} member(s) of shared keys the restore wrote (other members left alone)",
            if r.dry_run {
                "would put back"
            } else {
                "put back"
            },
            r.members_reverted
        )?;
    }
    if r.members_changed > 0 {
        writeln!(
            out,
            "{} member(s) of shared keys were changed after the restore, left as they are: {}",
            r.members_changed,
            r.members_changed_samples.join(", ")
        )?;
    }
    pending_not_restored(out, r.pending_not_restored)?;
    errors(out, r.errors, &r.error_samples)
}

/// Pending entries that XCLAIM could not create, said whenever there are.
fn pending_not_restored(out: &mut dyn Write, count: u64) -> io::Result<()> {
    if count > 0 {
        writeln!(
            out,
            "{count} pending entr{} of consumer groups not restored: the message is no longer in the stream (deleted or trimmed), so no command can create the entry",
            if count == 1 { "y" } else { "ies" }
        )?;
    }
    Ok(())
}

pub fn list(out: &mut dyn Write, entries: &[Entry]) -> io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<20} {:<11} {:<16} {:<8} {:>9} {:>10} {:<9} groups",
        "id", "created", "kind", "name", "user", "keys", "size", "encrypted"
    )?;
    for e in entries {
        if let Entry::Archive { meta, .. } = e {
            let kind = match meta.kind {
                ArchiveKind::Backup => "backup",
                ArchiveKind::PreRestore => "pre-restore",
                ArchiveKind::Export => "export",
            };
            writeln!(
                out,
                "{:<16} {:<20} {:<11} {:<16} {:<8} {:>9} {:>10} {:<9} {}",
                meta.id,
                meta.created.format("%Y-%m-%d %H:%M:%S"),
                kind,
                meta.name.as_deref().unwrap_or("-"),
                meta.user.as_deref().unwrap_or("-"),
                meta.keys,
                human_bytes(meta.size),
                if meta.encrypted { "yes" } else { "no" },
                if meta.groups.is_empty() {
                    "-".to_string()
                } else {
                    meta.groups.join(",")
                }
            )?;
        }
    }
    for e in entries {
        if let Entry::Problem { path, problem } = e {
            writeln!(out, "! {path}: {problem}")?;
        }
    }
    Ok(())
}

pub fn prune(out: &mut dyn Write, r: &PruneReport) -> io::Result<()> {
    for a in &r.archives {
        let verdict = if a.keep { "keep  " } else { "remove" };
        let why = if a.keep {
            a.reasons.join("; ")
        } else {
            String::new()
        };
        writeln!(
            out,
            "{verdict} {}  {}  {}",
            a.created.format("%Y-%m-%d %H:%M:%S"),
            a.path.rsplit('/').next().unwrap_or(&a.path),
            why
        )?;
    }
    for p in &r.problems {
        writeln!(out, "left   {}: not a complete archive", p.path())?;
    }
    if r.applied {
        writeln!(
            out,
            "removed {} archive(s), kept {}, freed {}",
            r.removed,
            r.kept,
            human_bytes(r.freed)
        )
    } else {
        writeln!(
            out,
            "plan: remove {} archive(s) ({}), keep {}; nothing was deleted, pass --yes to delete",
            r.removed,
            human_bytes(r.freed),
            r.kept
        )
    }
}

/// The counts of a run's summary worth a glance, in this order.
const LOG_COUNTS: [&str; 9] = [
    "keys", "bytes", "written", "added", "restored", "deleted", "removed", "kept", "errors",
];

/// The audit log: one line per run (time, action, outcome, who and where,
/// the counts), its command line under it.
pub fn audit_log(out: &mut dyn Write, entries: &[AuditEntry]) -> io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "no runs logged in this folder yet");
    }
    for e in entries {
        let outcome = match e.outcome {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            _ => "?",
        };
        let summary = e.summary.get("restore").unwrap_or(&e.summary);
        let counts: Vec<String> = LOG_COUNTS
            .iter()
            .filter_map(|name| {
                let n = summary.get(*name)?.as_u64()?;
                Some(if *name == "bytes" {
                    human_bytes(n)
                } else {
                    format!("{name} {n}")
                })
            })
            .collect();
        let detail = match &e.error {
            Some(error) => error.clone(),
            None => counts.join(", "),
        };
        writeln!(
            out,
            "{}  {:<8} {:<7}  {}@{}  {}",
            e.time.format("%Y-%m-%d %H:%M:%SZ"),
            e.action,
            outcome,
            e.operator.user,
            e.operator.host,
            detail
        )?;
        writeln!(out, "    {}", e.operator.command)?;
    }
    Ok(())
}
