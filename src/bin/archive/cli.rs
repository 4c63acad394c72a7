//! The command line: one `*Args` struct per subcommand.
//!
//! Passwords are not options: they come from the URL or from the
//! environment (`SOURCE_REDIS_PASSWORD`, `TARGET_REDIS_PASSWORD`), so they
//! never have to appear in a process list or a shell history.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use redis_archive::archive::manifest::ArchiveKind;
use redis_archive::compare::CompareMode;
use redis_archive::load::TtlMode;
use redis_archive::restore::Mode;

pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Parser)]
#[command(
    name = "archive",
    version,
    about = "Export Redis keyspaces into verified .tar.zst archives and restore them exactly",
    after_help = "Exit codes: 0 ok, 1 internal error, 2 usage, 3 Redis unreachable, 4 authentication refused, \
5 database index out of range, 6 Redis command failed, 7 archive not valid (not an archive, corrupt, truncated; \
with --profile: records breaking its rules; upgrade: a record its steps cannot apply to), 8 archive or data schema too new, 9 cannot read input or write output, 10 partial (some keys failed), \
11 confirmation required or cancelled, 12 cannot decrypt (no key given, wrong identity or passphrase), \
13 keys exist in the target (--mode fail), 14 compare (or copy --verify) found differences, 15 backup folder locked, \
16 the target cannot hold what the archive holds (field expiry, DUMP payloads, module types), 17 not a Redis server (the port answers another protocol), 18 no records (a user export, backup or copy found none of the user's keys), 130 interrupted (SIGINT/SIGTERM)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How to show progress on stderr: a bar on a terminal and a line every
    /// 30 seconds otherwise (auto), only the bar (shown on a terminal),
    /// only lines, or nothing.
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// `--progress`: what progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// A bar, on a terminal only.
    Bar,
    /// Lines (`exporting: 120000/1000000 keys, ...`), terminal or not.
    Lines,
    /// Nothing.
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export keys from Redis into an archive file.
    Export(ExportArgs),
    /// Show what an archive holds (its manifest), after verifying it.
    Inspect(InspectArgs),
    /// Check an archive completely and list every problem with where it is.
    Validate(ValidateArgs),
    /// Compare an archive with a live database, key by key (read-only).
    Compare(CompareArgs),
    /// Restore an archive into Redis.
    Restore(RestoreArgs),
    /// Copy keys from one Redis to another (or between databases), no archive to handle.
    Copy(CopyArgs),
    /// Undo a restore, copy or upgrade: put back what its pre-restore backup holds.
    Rollback(RollbackArgs),
    /// Upgrade records in the live database to the profile's data
    /// schema_version, in place: only records a step changes are written.
    Upgrade(UpgradeArgs),
    /// Export into the backup folder, under a name that sorts by time.
    Backup(BackupArgs),
    /// List the archives of a backup folder (no keys needed).
    List(ListArgs),
    /// Delete old archives of a backup folder by a retention policy.
    Prune(PruneArgs),
    /// Show a backup folder's audit log: who ran which backup, restore,
    /// copy, rollback or prune against it, and how it ended.
    Log(LogArgs),
    /// Print the completion script for a shell (e.g. `archive completions
    /// bash > /etc/bash_completion.d/archive`).
    Completions(CompletionsArgs),
    /// Print the manual page as roff (e.g. `archive man > archive.1`).
    Man,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// The backup folder (default as for `backup`).
    #[arg(long, value_name = "DIR", env = "ARCHIVE_BACKUP_DIR")]
    pub folder: Option<PathBuf>,
    /// Only the last N runs.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Print the entries as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Seconds to wait for a connection.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for any one reply; 0 waits as long as it takes
    /// (the default: big values must not be cut off).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub timeout: f64,
}

/// Keys chosen through a profile: one user's records, or whole groups
/// (export, backup, copy).
#[derive(Debug, Args)]
pub struct ProfileSelectArgs {
    /// Only this user's records, found as the profile describes them.
    #[arg(value_name = "USER_ID")]
    pub user: Option<String>,
    /// Profile file describing the application's user records (default:
    /// ARCHIVE_PROFILE, else archive.toml in the current directory). Used
    /// with USER_ID or --types.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Only these record groups of the profile (comma-separated); without
    /// USER_ID, these groups for every user.
    #[arg(
        long = "types",
        visible_alias = "groups",
        value_name = "GROUP,...",
        value_delimiter = ','
    )]
    pub groups: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub by_profile: ProfileSelectArgs,
    /// Output file; `-` writes to stdout. Default:
    /// archive-<UTC time, YYYYMMDDTHHMMSSZ>-db<N>.tar.zst (-user-<ID> for a
    /// user) in the current directory.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Source Redis URL: redis://[user[:password]@]host[:port][/db], rediss:// for TLS;
    /// any node of a Redis Cluster stands for the whole cluster.
    /// The password can come from SOURCE_REDIS_PASSWORD instead. Default:
    /// SOURCE_REDIS_URL, else SOURCE_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS, else
    /// redis://127.0.0.1:6379.
    #[arg(long, env = "SOURCE_REDIS_URL", hide_env_values = true)]
    pub source: Option<String>,
    /// Database index (overrides the URL's).
    #[arg(long)]
    pub db: Option<i64>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Print the summary as JSON on stdout (on stderr when the archive goes to stdout).
    #[arg(long)]
    pub json: bool,
    /// Encrypt to this age (age1...) or SSH (ssh-ed25519, ssh-rsa) public key; repeatable.
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Encrypt to the recipients listed in this file (one per line, as in age); repeatable.
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt with a passphrase, read from ARCHIVE_PASSPHRASE, the file named by
    /// ARCHIVE_PASSPHRASE_FILE, or asked on the terminal (never from the command line).
    #[arg(long, conflicts_with_all = ["recipients", "recipients_files"])]
    pub passphrase: bool,
    /// Write the encrypted archive as ASCII armor (PEM-style text).
    #[arg(long)]
    pub armor: bool,
    /// Take one instant of the database: receive the server's own snapshot
    /// as a replica does (PSYNC) instead of reading keys with SCAN. The
    /// server forks as for BGSAVE; the user needs +psync +replconf.
    #[arg(long, conflicts_with = "from_rdb")]
    pub snapshot: bool,
    /// Read the keys from an RDB file (`-` for stdin) instead of a server:
    /// a dump.rdb from BGSAVE or a cloud backup. --db picks its database.
    #[arg(long, value_name = "FILE")]
    pub from_rdb: Option<PathBuf>,
    /// Replace the values of the fields the profile declares `sensitive`
    /// (with a USER_ID or --types): with a fixed mask, or with a keyed
    /// hash when a key is given (--redact-key, ARCHIVE_REDACT_KEY_FILE).
    #[arg(long)]
    pub redact: bool,
    /// Redact with a keyed hash (HMAC-SHA-256) under the key in this file:
    /// equal values stay equal, across records and exports with the same
    /// key. Implies --redact. The key is never printed or recorded.
    #[arg(long, value_name = "FILE")]
    pub redact_key: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Which keys to take.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only keys matching this glob (Redis MATCH syntax); repeatable.
    #[arg(long = "match", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out keys matching this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Only keys of this type: string, hash, list, set, zset, stream, or
    /// dump (any other type, kept as a DUMP payload); repeatable.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
}

/// How keys are written into the target (restore and copy).
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// List every key on stderr with what is done to it ("created:
    /// user:42"); with --dry-run (or before the confirmation), with what the
    /// plan would do to it.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// What to do with keys that already exist in the target: skip them,
    /// overwrite them, merge into them (add missing fields, members and
    /// stream entries; change nothing), or fail before writing anything.
    #[arg(long, value_enum, default_value_t = ModeArg::Skip)]
    pub mode: ModeArg,
    /// How written keys get their expiry.
    #[arg(long, value_enum, default_value_t = TtlArg::Absolute)]
    pub ttl: TtlArg,
    /// Write keys starting with OLD as NEW + the rest (e.g. tenant_a:=tenant_b:);
    /// repeatable, the first match wins. Literal text: glob characters are refused.
    #[arg(long = "rename-prefix", value_name = "OLD=NEW")]
    pub rename_prefix: Vec<String>,
    /// Replace the token OLD by NEW wherever it stands whole in a key, between
    /// the key's start or end and the separators : _ { } - . / (e.g.
    /// siraya=tenant_7692 renames lightrag:siraya:x, embed:ab12:siraya and
    /// siraya_kv_x, never siraya2_x); repeatable. Applied after the first
    /// matching --rename-prefix, to the rest of the key; no rule sees another
    /// rule's output.
    #[arg(long = "rename-token", value_name = "OLD=NEW")]
    pub rename_token: Vec<String>,
    /// Restore what the target can hold when it cannot hold everything:
    /// hash field expiry it has no feature for is dropped, keys of types it
    /// cannot load (module types, newer DUMP payloads) are not written;
    /// both are counted in the report. Without it, such a restore is
    /// refused before anything is written (exit 16).
    #[arg(long)]
    pub drop_unsupported: bool,
    /// Work out and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Folder for the pre-restore backup (default: ARCHIVE_BACKUP_DIR, else
    /// $XDG_DATA_HOME/archive/backups, else ~/.local/share/archive/backups).
    #[arg(long, value_name = "DIR", env = "ARCHIVE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Write no pre-restore backup (overrides --backup-dir and
    /// ARCHIVE_BACKUP_DIR): the restore cannot be rolled back.
    #[arg(long)]
    pub no_backup: bool,
}

/// How to open an encrypted archive (detected by itself).
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// age identity file or unencrypted SSH private key to decrypt with; repeatable.
    #[arg(
        short = 'i',
        long = "identity",
        value_name = "FILE",
        env = "ARCHIVE_IDENTITY_FILE"
    )]
    pub identities: Vec<PathBuf>,
    /// Decrypt with a passphrase (from ARCHIVE_PASSPHRASE, ARCHIVE_PASSPHRASE_FILE,
    /// or asked on the terminal; a terminal is asked even without this flag).
    #[arg(long)]
    pub passphrase: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Archive file; `-` reads stdin.
    pub file: String,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive file; `-` reads stdin (spooled to a private temp file, since
    /// the archive is verified in full before anything is written).
    pub file: String,
    /// Target Redis URL (a cluster node stands for its cluster); the password
    /// can come from TARGET_REDIS_PASSWORD. Default: TARGET_REDIS_URL, else
    /// TARGET_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS, else redis://127.0.0.1:6379.
    #[arg(long, env = "TARGET_REDIS_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Database to restore into (default: the URL's, else the archive's;
    /// always 0 in a cluster).
    #[arg(long)]
    pub db: Option<i64>,
    /// Profile of a user archive: brings records of an older data
    /// schema_version to the profile's (default: ARCHIVE_PROFILE, else
    /// archive.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Write a user archive's records under this user id instead (key names,
    /// index members and the profile's owner and reference fields).
    #[arg(long, value_name = "NEW_ID")]
    pub as_user: Option<String>,
    /// With a profile: restore (or plan) records that break its rules
    /// (missing required fields, another owner, dangling references)
    /// instead of stopping with exit code 7 before the first write.
    #[arg(long)]
    pub no_validate: bool,
    #[command(flatten)]
    pub write: WriteArgs,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    pub by_profile: ProfileSelectArgs,
    /// Write the user's records under this user id instead (key names,
    /// index members and the profile's owner and reference fields).
    #[arg(long, value_name = "NEW_ID", requires = "user")]
    pub as_user: Option<String>,
    /// Source Redis URL; the password can come from SOURCE_REDIS_PASSWORD.
    /// Default: SOURCE_REDIS_URL, else SOURCE_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS,
    /// else redis://127.0.0.1:6379.
    #[arg(long, env = "SOURCE_REDIS_URL", hide_env_values = true)]
    pub source: Option<String>,
    /// Source database (overrides the source URL's).
    #[arg(long)]
    pub source_db: Option<i64>,
    /// Target Redis URL; the password can come from TARGET_REDIS_PASSWORD.
    /// Default: TARGET_REDIS_URL, else TARGET_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS,
    /// else redis://127.0.0.1:6379.
    #[arg(long, env = "TARGET_REDIS_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Target database (default: the target URL's, else the source's).
    #[arg(long)]
    pub db: Option<i64>,
    /// Copy one instant of the source: its own snapshot, received as a
    /// replica does (PSYNC), instead of reading keys with SCAN.
    #[arg(long)]
    pub snapshot: bool,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// After writing, check the target against what was copied, with the
    /// same renames: every key equal (as `compare --subset`), or with
    /// --mode merge every field, member and entry present (as `compare
    /// --subset=merge`). The result is in the report; a failed check exits 14.
    #[arg(long)]
    pub verify: bool,
    /// With a profile: copy records that break its rules (missing required
    /// fields, another owner, dangling references) instead of stopping
    /// with exit code 7 before the first write.
    #[arg(long)]
    pub no_validate: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Archive file; `-` reads stdin.
    pub file: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file.
    #[arg(short = 'o', long = "output", value_name = "REPORT.json")]
    pub output: Option<PathBuf>,
    /// Also check the records against this profile: required fields,
    /// owners, references (default for a user archive: ARCHIVE_PROFILE,
    /// else archive.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Archive file; `-` reads stdin.
    pub file: String,
    /// Redis URL to compare with; the password can come from TARGET_REDIS_PASSWORD.
    /// Default: TARGET_REDIS_URL, else TARGET_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS,
    /// else redis://127.0.0.1:6379.
    #[arg(long, env = "TARGET_REDIS_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Database to compare with (default: the URL's, else the archive's).
    #[arg(long)]
    pub db: Option<i64>,
    /// Compare as restore with these renames would write (OLD=NEW, repeatable).
    /// With rename rules, a key of the archive that no rule renames is a
    /// difference (not-renamed).
    #[arg(long = "rename-prefix", value_name = "OLD=NEW")]
    pub rename_prefix: Vec<String>,
    /// Compare as restore with these token renames would write (OLD=NEW,
    /// repeatable; see restore --help).
    #[arg(long = "rename-token", value_name = "OLD=NEW")]
    pub rename_token: Vec<String>,
    /// Only check that the archive is in the target: extra target keys are
    /// ignored. `--subset` (or `--subset=equal`): every archive key equals
    /// the target's (type, value, expiry); for after a skip or overwrite
    /// restore into a database with other data. `--subset=merge`: what a
    /// `--mode merge` restore leaves: every field, member, list value and
    /// stream entry id of the archive is in the target, whatever its value
    /// (the target keeps its own); strings only need to exist; expiry is not
    /// compared.
    #[arg(
        long,
        value_enum,
        value_name = "equal|merge",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "equal"
    )]
    pub subset: Option<SubsetArg>,
    /// Profile of a user archive: compare its records as restore writes them
    /// (upgraded to the profile's data schema_version; default:
    /// ARCHIVE_PROFILE, else archive.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Compare a user archive with the clone `restore --as-user NEW_ID` made.
    #[arg(long, value_name = "NEW_ID")]
    pub as_user: Option<String>,
    /// Expiry times closer than this count as equal (e.g. 500ms, 1s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ms)]
    pub ttl_tolerance: i64,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `500ms`, `1s`, `2m`, `1h`, or a number of seconds; in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (use e.g. 500ms, 1s, 2m)"))?;
    let factor = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} must not be negative"));
    }
    Ok((value * factor).round() as i64)
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Whose records: USER_ID, --types and the profile (whose [[upgrade]]
    /// steps apply); without USER_ID, every record of the groups.
    #[command(flatten)]
    pub by_profile: ProfileSelectArgs,
    /// Redis URL to upgrade in; the password can come from TARGET_REDIS_PASSWORD.
    /// Default: TARGET_REDIS_URL, else TARGET_REDIS_HOST, _PORT, _DB, _USERNAME and _TLS,
    /// else redis://127.0.0.1:6379.
    #[arg(long, env = "TARGET_REDIS_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Database (overrides the URL's).
    #[arg(long)]
    pub db: Option<i64>,
    /// Print statistics per group and step (legacy, current, broken) and
    /// write nothing: read-only, fine on a production database.
    #[arg(long, conflicts_with = "dry_run")]
    pub stats: bool,
    /// Work out and print the plan (counts and the first records); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Records the steps cannot apply to are counted, listed and left as
    /// they are (default: stop at the first, before writing it).
    #[arg(long)]
    pub skip_errors: bool,
    /// Records read and written per round trip.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub batch: usize,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Folder for the pre-upgrade backup (default: ARCHIVE_BACKUP_DIR, else
    /// $XDG_DATA_HOME/archive/backups, else ~/.local/share/archive/backups).
    #[arg(long, value_name = "DIR", env = "ARCHIVE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Write no pre-upgrade backup: the upgrade cannot be rolled back.
    #[arg(long)]
    pub no_backup: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The pre-restore backup a restore or copy wrote (it names its journal).
    pub backup: PathBuf,
    /// Redis URL to roll back (default: the server and database the backup
    /// was taken from); the password can come from TARGET_REDIS_PASSWORD.
    #[arg(long, env = "TARGET_REDIS_URL", hide_env_values = true)]
    pub target: Option<String>,
    /// Leave keys that existed before the restore and that someone changed
    /// after it as they are (keys the restore created are deleted whatever
    /// they hold).
    #[arg(long)]
    pub skip_changed: bool,
    /// Print what would be put back; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

// A backup's file name is the folder's to choose: `-o` is not offered.
#[derive(Debug, Args)]
#[command(mut_arg("output", |a| a.hide(true)))]
pub struct BackupArgs {
    /// A name for the backup (in its file name and metadata).
    #[arg(long)]
    pub name: Option<String>,
    /// A tag (repeatable), e.g. for `prune --keep-tag`.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The backup folder (default: ARCHIVE_BACKUP_DIR, else
    /// $XDG_DATA_HOME/archive/backups, else ~/.local/share/archive/backups).
    #[arg(long, value_name = "DIR", env = "ARCHIVE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    #[command(flatten)]
    pub export: ExportArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The backup folder (default as for `backup`).
    #[arg(env = "ARCHIVE_BACKUP_DIR")]
    pub dir: Option<PathBuf>,
    /// Only archives of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only archives of this kind: backup, pre-restore, export.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<ArchiveKind>,
    /// Only archives with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The backup folder (default as for `backup`).
    #[arg(env = "ARCHIVE_BACKUP_DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the N newest archives.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest archive of each of the last N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the newest archive of each of the last N days that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest archive of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest archive of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep the newest archive of each of the last N years that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every archive created within this long of the newest (e.g. 30d, 12h, 2w).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every archive with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Always keep at least the N newest archives.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_min: u32,
    /// Only prune archives of this kind (backup, pre-restore, export).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<ArchiveKind>,
    /// Only prune archives of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Timezone of the calendar periods: UTC (default), local, or an offset like +02:00.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Delete; without it, only print the plan.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Print the plan or result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The values of `--mode`; the library's [`Mode`] has no command-line
/// parsing of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Leave it as it is (running the same restore twice is safe).
    Skip,
    /// Replace it: type, value and expiry become the archive's.
    Overwrite,
    /// Add the fields, members and stream entries it lacks; change nothing
    /// it has. Strings that exist are skipped.
    Merge,
    /// Write nothing at all if any key exists; list the first ones.
    Fail,
}

impl From<ModeArg> for Mode {
    fn from(arg: ModeArg) -> Self {
        match arg {
            ModeArg::Skip => Mode::Skip,
            ModeArg::Overwrite => Mode::Overwrite,
            ModeArg::Merge => Mode::Merge,
            ModeArg::Fail => Mode::Fail,
        }
    }
}

/// The values of `compare --subset`; the library's [`CompareMode`] has no
/// command-line parsing of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubsetArg {
    /// Every key of the archive equals the target's.
    Equal,
    /// Every field, member and entry of the archive is in the target.
    Merge,
}

impl From<SubsetArg> for CompareMode {
    fn from(arg: SubsetArg) -> Self {
        match arg {
            SubsetArg::Equal => CompareMode::Subset,
            SubsetArg::Merge => CompareMode::Merge,
        }
    }
}

/// The values of `--ttl`; the library's [`TtlMode`] has no command-line
/// parsing of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtlArg {
    /// The original expiry time; keys whose time has passed are not written.
    Absolute,
    /// The time to live that was left at export, counted from the restore.
    Relative,
    /// No expiry at all.
    None,
}

impl From<TtlArg> for TtlMode {
    fn from(arg: TtlArg) -> Self {
        match arg {
            TtlArg::Absolute => TtlMode::Absolute,
            TtlArg::Relative => TtlMode::Relative,
            TtlArg::None => TtlMode::None,
        }
    }
}

fn parse_kind(text: &str) -> Result<ArchiveKind, String> {
    match text {
        "backup" => Ok(ArchiveKind::Backup),
        "pre-restore" => Ok(ArchiveKind::PreRestore),
        "export" => Ok(ArchiveKind::Export),
        _ => Err(format!(
            "unknown kind {text:?}: use backup, pre-restore or export"
        )),
    }
}
