//! One function per command: turn the parsed arguments into the library's
//! options, run it, render its report, and say which exit code it earned.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use redis_archive::archive::{ArchiveSource, Destination, WriterOptions, read_manifest};
use redis_archive::compare::{CompareMode, CompareOptions, compare};
use redis_archive::connection::{Endpoint, Side, Timeouts};
use redis_archive::copy::{self, CopyOptions};
use redis_archive::error::Error;
use redis_archive::export::{ExportMethod, ExportOptions, RdbInput, export};
use redis_archive::folder::backup::backup;
use redis_archive::folder::catalog::{Entry, scan};
use redis_archive::folder::prune::{PruneOptions, prune};
use redis_archive::folder::retention::{Policy, Zone, parse_within};
use redis_archive::keyspace::Selection;
use redis_archive::profile::rewrite::check_user_id;
use redis_archive::profile::select::ProfileExport;
use redis_archive::profile::{DEFAULT_PROFILE_FILE, PROFILE_ENV, Profile};
use redis_archive::progress::Cancel;
use redis_archive::record::KeyType;
use redis_archive::report::RestoreReport;
use redis_archive::restore::backup::default_dir;
use redis_archive::restore::remap::Remap;
use redis_archive::restore::rollback::{self, RollbackOptions};
use redis_archive::restore::{self, RestoreOptions, WriteOptions};
use redis_archive::upgrade::{self, UpgradeOptions, UpgradeReport};
use redis_archive::validate::{ProfileCheck, validate};

use crate::cli::{
    BackupArgs, CompareArgs, CompletionsArgs, ConnectArgs, CopyArgs, ExportArgs, InspectArgs,
    ListArgs, LogArgs, PruneArgs, RestoreArgs, RollbackArgs, SelectionArgs, UpgradeArgs,
    ValidateArgs, WriteArgs,
};

use crate::progress::Bar;
use crate::prompt::{Ends, ask, confirm};
use crate::{Failure, exit, render, secrets};

fn timeouts(args: &ConnectArgs) -> Result<Timeouts, Error> {
    let secs = |v: f64, name: &str| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(Error::InvalidArgument(format!(
                "--{name} must be a number of seconds >= 0"
            )))
        }
    };
    let response = secs(args.timeout, "timeout")?;
    Ok(Timeouts {
        connect: secs(args.connect_timeout, "connect-timeout")?,
        response: (!response.is_zero()).then_some(response),
    })
}

fn env_password(side: Side) -> Option<String> {
    std::env::var(side.password_env()).ok()
}

fn selection(args: &SelectionArgs) -> Result<Selection, Error> {
    let mut types = Vec::new();
    for name in &args.types {
        let t = KeyType::parse(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown --type {name:?}; use string, hash, list, set, zset, stream or dump"
            ))
        })?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(Selection {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        types,
    })
}

/// The profile export USER_ID or --types asks for.
/// A USER_ID or --types through a profile (export, backup, copy); `None`
/// for a selection by --match/--exclude/--type.
fn profile_selection(
    by: &crate::cli::ProfileSelectArgs,
    s: &SelectionArgs,
) -> Result<Option<ProfileExport>, Error> {
    let (user, profile, groups) = (by.user.as_ref(), by.profile.as_deref(), &by.groups);
    if user.is_none() && groups.is_empty() {
        if profile.is_some() {
            return Err(Error::InvalidArgument(
                "--profile selects by user or group: give a USER_ID, --types GROUP,..., or both"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if !s.include.is_empty() || !s.exclude.is_empty() || !s.types.is_empty() {
        return Err(Error::InvalidArgument(
            "a USER_ID or --types selects keys through the profile; leave out --match, --exclude and --type".into(),
        ));
    }
    let profile = Profile::locate(profile)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "selecting by user or group needs a profile: pass --profile FILE, set {PROFILE_ENV}, or put {DEFAULT_PROFILE_FILE} in the current directory"
        ))
    })?;
    if let Some(user) = user {
        check_user_id(user)?;
    }
    let export = ProfileExport {
        profile: Arc::new(profile),
        user: user.cloned(),
        groups: groups.to_vec(),
    };
    export.groups()?;
    Ok(Some(export))
}

fn write_options(args: &WriteArgs) -> Result<WriteOptions, Error> {
    Ok(WriteOptions {
        mode: args.mode.into(),
        ttl: args.ttl.into(),
        remap: Remap::with_rules(&args.rename_prefix, &args.rename_token)?,
        drop_unsupported: args.drop_unsupported,
        // A plan a person reads says what its merges would add.
        count_merges: args.dry_run || !args.yes,
        ..WriteOptions::default()
    })
}

fn endpoint(
    url: Option<&str>,
    db: Option<i64>,
    side: Side,
    connect: &ConnectArgs,
) -> Result<Endpoint, Error> {
    let (url, defaulted) = match url {
        Some(url) => (url.to_string(), false),
        None => match url_from_env(side)? {
            Some(url) => (url, false),
            None => (crate::cli::DEFAULT_URL.to_string(), true),
        },
    };
    let endpoint = Endpoint::resolve(&url, db, env_password(side), side, timeouts(connect)?)?;
    Ok(if defaulted {
        endpoint.defaulted()
    } else {
        endpoint
    })
}

/// The URL that SOURCE_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS (or
/// TARGET_...) make, the variables many teams' `.env` files already set;
/// they default to 127.0.0.1, 6379, the URL's default database, no user
/// name and no TLS (the password comes from _PASSWORD, as for any URL).
/// `None` when none is set.
fn url_from_env(side: Side) -> Result<Option<String>, Error> {
    let prefix = match side {
        Side::Source => "SOURCE_REDIS",
        Side::Target => "TARGET_REDIS",
    };
    let var = |name: &str| {
        std::env::var(format!("{prefix}_{name}"))
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let number = |name: &str, what: &str| -> Result<Option<String>, Error> {
        match var(name) {
            Some(v) if v.trim().parse::<u32>().is_ok() => Ok(Some(v.trim().to_string())),
            Some(v) => Err(Error::InvalidArgument(format!(
                "{prefix}_{name}={v:?} is not a {what}; set it to a number or unset it"
            ))),
            None => Ok(None),
        }
    };
    let (host, port, db, username) = (
        var("HOST"),
        number("PORT", "port")?,
        number("DB", "database index")?,
        var("USERNAME"),
    );
    let tls = match var("TLS").map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Some(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Some(false),
        Some(v) => {
            return Err(Error::InvalidArgument(format!(
                "{prefix}_TLS={v:?} is neither yes nor no; set it to true or false, or unset it"
            )));
        }
    };
    if host.is_none() && port.is_none() && db.is_none() && username.is_none() && tls.is_none() {
        return Ok(None);
    }
    let host = host.map_or_else(|| "127.0.0.1".to_string(), |h| h.trim().to_string());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = if tls == Some(true) { "rediss" } else { "redis" };
    let user = username.map_or_else(String::new, |u| format!("{}@", percent_encode(&u)));
    let mut url = format!(
        "{scheme}://{user}{host}:{}",
        port.as_deref().unwrap_or("6379")
    );
    if let Some(db) = db {
        url.push('/');
        url.push_str(&db);
    }
    Ok(Some(url))
}

/// `text` as a URL's user name may hold it: unreserved characters as they
/// are, every other byte as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Export options from the command line; the destination is `-o`, stdout
/// for `-o -`, or the default name in the current directory.
fn export_options(args: &ExportArgs, cancel: Cancel) -> Result<ExportOptions, Error> {
    let source = endpoint(args.source.as_deref(), args.db, Side::Source, &args.connect)?;
    let selection = selection(&args.selection)?;
    let encryption = secrets::encryption(args)?;
    let destination = match &args.output {
        Some(p) if p.as_os_str() == "-" => Destination::Stdout,
        Some(p) => Destination::File(p.clone()),
        None => Destination::File(redis_archive::export::default_file_name(
            chrono::Utc::now(),
            args.by_profile.user.as_deref(),
            source.db(),
            encryption.is_some(),
        )),
    };
    let mut options = ExportOptions::new(source, destination, selection);
    options.profile = profile_selection(&args.by_profile, &args.selection)?;
    options.redact = secrets::redaction(args)?;
    options.writer = WriterOptions {
        zstd_level: args.level,
        ..WriterOptions::default()
    };
    options.cancel = cancel;
    options.encryption = encryption.map(std::sync::Arc::new);
    options.method = match (&args.from_rdb, args.snapshot) {
        (Some(p), _) if p.as_os_str() == "-" => ExportMethod::RdbFile(RdbInput::Stdin),
        (Some(p), _) => ExportMethod::RdbFile(RdbInput::File(p.clone())),
        (None, true) => ExportMethod::Snapshot,
        (None, false) => ExportMethod::Scan,
    };
    Ok(options)
}

pub(crate) async fn run_export(args: ExportArgs, cancel: Cancel) -> Result<u8, Failure> {
    let options = export_options(&args, cancel)?;
    let to_stdout = matches!(options.destination, Destination::Stdout);
    let bar = Bar::new("exporting");
    let report = export(options, &bar).await?;
    // With the archive on stdout, the summary must not mix into it.
    if to_stdout {
        emit_to(&mut io::stderr().lock(), args.json, &report, render::export)?;
    } else {
        emit(args.json, &report, render::export)?;
    }
    Ok(partial_code(report.errors > 0))
}

pub(crate) async fn run_backup(args: BackupArgs, cancel: Cancel) -> Result<u8, Failure> {
    if args.export.output.is_some() {
        return Err(Error::InvalidArgument(
            "backup names its own file in the backup folder; use `archive export -o FILE` to choose a file".into(),
        )
        .into());
    }
    let dir = args.backup_dir.clone().unwrap_or_else(default_dir);
    let mut options = export_options(&args.export, cancel)?;
    options.label.name = args.name.clone();
    options.label.tags = args.tags.clone();
    let bar = Bar::new("backing up");
    let report = backup(options, &dir, &bar).await?;
    emit(args.export.json, &report, render::export)?;
    Ok(partial_code(report.errors > 0))
}

pub(crate) fn run_list(args: ListArgs) -> Result<u8, Failure> {
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let entries: Vec<Entry> = scan(&dir)?
        .into_iter()
        .filter(|e| match e {
            Entry::Archive { meta, .. } => {
                args.kind.is_none_or(|k| k == meta.kind)
                    && args
                        .user
                        .as_ref()
                        .is_none_or(|u| meta.user.as_ref() == Some(u))
                    && args.tag.as_ref().is_none_or(|t| meta.tags.contains(t))
            }
            Entry::Problem { .. } => true,
        })
        .collect();
    emit(args.json, &entries, |out, e| render::list(out, e))?;
    Ok(exit::OK)
}

pub(crate) fn run_prune(args: PruneArgs) -> Result<u8, Failure> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within.as_deref().map(parse_within).transpose()?,
        tags: args.keep_tag.clone(),
        min: args.keep_min,
    };
    let options = PruneOptions {
        dir: args.dir.clone().unwrap_or_else(default_dir),
        policy,
        kind: args.kind,
        user: args.user.clone(),
        zone: Zone::parse(&args.timezone)?,
        now: chrono::Utc::now(),
    };
    let report = prune(&options, args.yes)?;
    emit(args.json, &report, render::prune)?;
    Ok(exit::OK)
}

pub(crate) fn run_log(args: LogArgs) -> Result<u8, Failure> {
    let dir = args.folder.clone().unwrap_or_else(default_dir);
    let mut entries = redis_archive::folder::audit::read(&dir)?;
    if let Some(last) = args.last {
        entries.drain(..entries.len().saturating_sub(last));
    }
    emit(args.json, &entries, |out, e| render::audit_log(out, e))?;
    Ok(exit::OK)
}

pub(crate) fn run_completions(args: CompletionsArgs) -> Result<u8, Failure> {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "archive",
        &mut io::stdout().lock(),
    );
    Ok(exit::OK)
}

pub(crate) fn run_man() -> Result<u8, Failure> {
    let command = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command).render(&mut io::stdout().lock())?;
    Ok(exit::OK)
}

pub(crate) fn run_inspect(args: InspectArgs) -> Result<u8, Failure> {
    let decryption = secrets::decryption(&args.decrypt)?;
    let verified = read_manifest(&ArchiveSource::from_arg(&args.file), &decryption)?;
    emit(args.json, &verified, |out, v| {
        render::manifest(out, &v.manifest, v.encrypted)
    })?;
    Ok(exit::OK)
}

pub(crate) fn run_validate(args: ValidateArgs) -> Result<u8, Failure> {
    let decryption = secrets::decryption(&args.decrypt)?;
    let source = ArchiveSource::from_arg(&args.file);
    let report = match Profile::locate(args.profile.as_deref())? {
        Some(profile) => validate(
            &source,
            &decryption,
            Some(ProfileCheck {
                profile: Arc::new(profile),
                explicit: args.profile.is_some(),
            }),
        )?,
        None => validate(&source, &decryption, None)?,
    };
    if let Some(path) = &args.output {
        let mut json = serde_json::to_vec_pretty(&report)
            .map_err(|e| Error::Internal(format!("report does not serialize: {e}")))?;
        json.push(b'\n');
        redis_archive::partial::write_atomically(path, &json).map_err(|e| Error::Output {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    emit(args.json, &report, render::validation)?;
    Ok(if report.valid {
        exit::OK
    } else {
        exit::BAD_ARCHIVE
    })
}

pub(crate) async fn run_compare(args: CompareArgs) -> Result<u8, Failure> {
    let target = endpoint(args.target.as_deref(), args.db, Side::Target, &args.connect)?;
    let mut options = CompareOptions::new(ArchiveSource::from_arg(&args.file), target);
    options.remap = Remap::with_rules(&args.rename_prefix, &args.rename_token)?;
    options.mode = args.subset.map_or(CompareMode::Exact, CompareMode::from);
    options.ttl_tolerance_ms = args.ttl_tolerance;
    options.decryption = secrets::decryption(&args.decrypt)?;
    options.profile = Profile::locate(args.profile.as_deref())?.map(Arc::new);
    options.as_user = args.as_user.clone();
    let bar = Bar::new("comparing");
    let comparison = compare(&options, &bar).await?;
    emit(args.json, &comparison, render::comparison)?;
    Ok(if comparison.is_identical() {
        exit::OK
    } else {
        exit::DIFFERENT
    })
}

pub(crate) async fn run_restore(args: RestoreArgs, cancel: Cancel) -> Result<u8, Failure> {
    let target = endpoint(args.target.as_deref(), args.db, Side::Target, &args.connect)?;
    let source = ArchiveSource::from_arg(&args.file);
    let mut options = RestoreOptions::new(source.clone(), target);
    options.write = write_options(&args.write)?;
    options.cancel = cancel;
    options.decryption = secrets::decryption(&args.decrypt)?;
    options.backup_dir = backup_dir(&args.write, args.write.dry_run);
    options.write.profile = Profile::locate(args.profile.as_deref())?.map(Arc::new);
    options.write.as_user = args.as_user.clone();
    options.validate = !args.no_validate;

    let listing = args.write.verbose;
    let verifying =
        Bar::new("verifying").listing(listing && (args.write.dry_run || !args.write.yes));
    let planned = restore::plan(&options, &verifying).await?;
    let text = |out: &mut dyn Write, r: &RestoreReport| render::restore(out, r, "restore");
    if args.write.dry_run {
        emit(args.write.json, &planned.into_dry_run_report(), text)?;
        return Ok(exit::OK);
    }
    if !args.write.yes {
        let ends = Ends {
            from: &planned.source,
            to: &planned.target.describe(),
            selection: &planned.header().selection,
            backup: planned.backup_path(),
            renames: planned.renames.as_ref(),
            names: &planned.names,
            merge_would_add: planned.merge_would_add,
            warning: planned.redaction_warning.as_deref(),
        };
        confirm(&ends, &planned.actions, source == ArchiveSource::Stdin)?;
    }
    let writing = Bar::new("restoring").listing(listing);
    let done = restore::perform(planned, &options, &writing).await?;
    emit(args.write.json, &done, text)?;
    Ok(partial_code(done.is_partial()))
}

pub(crate) async fn run_copy(args: CopyArgs, cancel: Cancel) -> Result<u8, Failure> {
    let source = endpoint(
        args.source.as_deref(),
        args.source_db,
        Side::Source,
        &args.connect,
    )?;
    let target = endpoint(args.target.as_deref(), args.db, Side::Target, &args.connect)?;
    let mut options = CopyOptions::new(source, target, selection(&args.selection)?);
    options.write = write_options(&args.write)?;
    options.cancel = cancel;
    options.backup_dir = backup_dir(&args.write, args.write.dry_run);
    options.snapshot = args.snapshot;
    options.verify = args.verify;
    options.validate = !args.no_validate;
    options.profile = profile_selection(&args.by_profile, &args.selection)?;
    options.write.profile = options.profile.as_ref().map(|p| p.profile.clone());
    if let Some(id) = &args.as_user {
        check_user_id(id)?;
    }
    options.write.as_user = args.as_user.clone();
    let listing = args.write.verbose;
    let planning = Bar::new("reading").listing(listing && (args.write.dry_run || !args.write.yes));
    let planned = copy::plan(&options, &planning).await?;
    if args.write.dry_run {
        emit(
            args.write.json,
            &planned.into_dry_run_report(),
            render::copy,
        )?;
        return Ok(exit::OK);
    }
    if !args.write.yes {
        let ends = Ends {
            from: &planned.source,
            to: &planned.target,
            selection: &planned.selection,
            backup: planned.backup_path(),
            renames: planned.renames(),
            names: planned.names(),
            merge_would_add: planned.merge_would_add(),
            warning: None,
        };
        confirm(&ends, &planned.actions, false)?;
    }
    let copying = Bar::new("copying").listing(listing);
    let done = copy::perform(planned, &copying).await?;
    emit(args.write.json, &done, render::copy)?;
    // Keys that failed are the cause of any difference verification finds.
    Ok(if done.is_partial() {
        exit::PARTIAL
    } else if done.verification_failed() {
        exit::DIFFERENT
    } else {
        exit::OK
    })
}

pub(crate) async fn run_rollback(args: RollbackArgs, cancel: Cancel) -> Result<u8, Failure> {
    let mut options = RollbackOptions::new(args.backup.clone());
    options.password = env_password(Side::Target);
    options.timeouts = timeouts(&args.connect)?;
    options.skip_changed = args.skip_changed;
    options.cancel = cancel;
    if let Some(url) = &args.target {
        options.target = Some(endpoint(Some(url), None, Side::Target, &args.connect)?);
    }
    let checking = Bar::new("checking");
    let planned = rollback::plan(&options, &checking).await?;
    if args.dry_run {
        emit(args.json, &planned, render::rollback)?;
        return Ok(exit::OK);
    }
    if !args.yes {
        ask(&planned.target, false, |err| {
            render::rollback(err, &planned)?;
            write!(err, "roll back {}? [y/N] ", planned.target)
        })?;
    }
    let writing = Bar::new("rolling back");
    let done = rollback::perform(&options, &writing).await?;
    emit(args.json, &done, render::rollback)?;
    Ok(partial_code(done.is_partial()))
}

pub(crate) async fn run_upgrade(args: UpgradeArgs, cancel: Cancel) -> Result<u8, Failure> {
    let target = endpoint(args.target.as_deref(), args.db, Side::Target, &args.connect)?;
    let by = &args.by_profile;
    let profile = Profile::locate(by.profile.as_deref())?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "upgrade needs the profile whose steps apply: pass --profile FILE, set {PROFILE_ENV}, or put {DEFAULT_PROFILE_FILE} in the current directory"
        ))
    })?;
    if let Some(user) = &by.user {
        check_user_id(user)?;
    }
    let mut options = UpgradeOptions::new(target, Arc::new(profile));
    options.user = by.user.clone();
    options.groups = by.groups.clone();
    options.skip_errors = args.skip_errors;
    options.batch_keys = args.batch;
    options.cancel = cancel;
    let text = |out: &mut dyn Write, r: &UpgradeReport| render::upgrade_report(out, r);
    let reading = Bar::new("reading");
    let planned = upgrade::plan(&options, &reading).await?;
    if args.stats {
        emit(args.json, &planned, text)?;
        return Ok(exit::OK);
    }
    let stop = (!args.skip_errors)
        .then(|| planned.first_broken())
        .flatten();
    if args.dry_run {
        emit(args.json, &planned, text)?;
        // The upgrade itself would stop at the first broken record: say so.
        return match stop {
            Some(err) => Err(err.into()),
            None => Ok(exit::OK),
        };
    }
    if let Some(err) = stop {
        return Err(err.into());
    }
    if planned.legacy == 0 {
        // Nothing to write: the statistics are the whole report.
        let mut done = planned;
        done.dry_run = false;
        emit(args.json, &done, text)?;
        return Ok(partial_code(done.is_partial()));
    }
    options.backup_dir =
        (!args.no_backup).then(|| args.backup_dir.clone().unwrap_or_else(default_dir));
    if !args.yes {
        ask(&planned.target, false, |err| {
            render::upgrade_report(err, &planned)?;
            match &options.backup_dir {
                Some(dir) => writeln!(err, "backup:    a pre-upgrade backup in {}", dir.display())?,
                None => writeln!(
                    err,
                    "backup:    none (--no-backup): this cannot be rolled back"
                )?,
            }
            write!(
                err,
                "upgrade {} records in {}? [y/N] ",
                planned.legacy, planned.target
            )
        })?;
    }
    let writing = Bar::new("upgrading");
    let done = upgrade::perform(&options, &writing).await?;
    emit(args.json, &done, text)?;
    Ok(partial_code(done.is_partial()))
}

/// Print `report` as JSON (`--json`) or as text for people.
fn emit<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
) -> Result<(), Failure> {
    emit_to(&mut io::stdout().lock(), json, report, text)
}

fn emit_to<T: serde::Serialize>(
    out: &mut dyn Write,
    json: bool,
    report: &T,
    text: impl FnOnce(&mut dyn Write, &T) -> io::Result<()>,
) -> Result<(), Failure> {
    if json {
        render::json(out, report)?;
    } else {
        text(out, report)?;
    }
    Ok(())
}

/// OK, or PARTIAL when some keys failed.
fn partial_code(partial: bool) -> u8 {
    if partial { exit::PARTIAL } else { exit::OK }
}

/// The folder for the pre-restore backup, or none (`--no-backup`, dry run).
fn backup_dir(args: &WriteArgs, dry_run: bool) -> Option<std::path::PathBuf> {
    if args.no_backup || dry_run {
        return None;
    }
    Some(args.backup_dir.clone().unwrap_or_else(default_dir))
}
