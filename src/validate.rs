//! `validate`: read the whole archive and list every problem with where it
//! is, instead of stopping at the first as restore does; with a profile,
//! also check the records against it (required fields, owners, references).
//!
//! The format layer reads leniently and collects the archive's own
//! problems; the profile's checks are a record visitor on that read, so the
//! format knows nothing of profiles.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::Decryption;
use crate::archive::reader::{ArchiveSource, Discard, Problem, read_leniently};
use crate::error::Result;
use crate::profile::Profile;
use crate::profile::check::{Checker, ProfileValidation};

/// What `validate` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The archive as named.
    pub file: String,
    /// True when no problem was found: the archive can be restored from.
    pub valid: bool,
    /// Whether the archive was age-encrypted.
    pub encrypted: bool,
    /// The header's schema_version, when the header could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u64>,
    /// Keys and records read (whatever the manifest says).
    pub keys: u64,
    /// Records read.
    pub records: u64,
    /// Problems found, including those not listed in `problems`.
    pub problems_total: u64,
    /// The first problems, in the order they were found.
    pub problems: Vec<Problem>,
    /// What the record checks of a profile found (`validate --profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileValidation>,
}

/// The profile to check records against, and whether it was asked for: a
/// profile picked up by default is skipped for an archive not exported
/// through one.
#[derive(Debug, Clone)]
pub struct ProfileCheck {
    /// The profile.
    pub profile: Arc<Profile>,
    /// True when the user named the profile; a default profile is not
    /// applied to an archive exported without one.
    pub explicit: bool,
}

/// Read the whole archive and report every problem found, with where it is;
/// with a profile, the record checks too.
pub fn validate(
    source: &ArchiveSource,
    decryption: &Decryption,
    profile: Option<ProfileCheck>,
) -> Result<ValidationReport> {
    let Some(ProfileCheck { profile, explicit }) = profile else {
        let read = read_leniently(source, decryption, &mut Discard)?;
        return Ok(report(read));
    };
    let name = profile.name.clone();
    let mut checker = Checker::new(profile, source.display());
    checker.required = explicit;
    let mut read = read_leniently(source, decryption, &mut checker)?;
    let checked = checker.finish();
    if !checked.checked {
        return Ok(report(read));
    }
    for f in &checked.findings {
        read.problems
            .add(Problem::record(&f.location, &f.key, f.message.clone()));
    }
    let mut report = report(read);
    report.profile = Some(ProfileValidation {
        name,
        user: checked.user,
        groups: checked.groups,
        findings: checked.findings.len() as u64,
        upgrade: checked.upgrade,
    });
    Ok(report)
}

fn report(read: crate::archive::reader::LenientRead) -> ValidationReport {
    let (problems_total, problems) = read.problems.into_parts();
    ValidationReport {
        file: read.file,
        valid: problems_total == 0,
        encrypted: read.encrypted,
        schema_version: read.schema_version,
        keys: read.keys,
        records: read.records,
        problems_total,
        problems,
        profile: None,
    }
}
