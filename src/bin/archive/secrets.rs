//! Passphrases and keys for the binary: from the environment, from files,
//! or asked on the terminal, never from the command line.

use std::io::{self, IsTerminal};
use std::sync::{Arc, Mutex};

use age::secrecy::{ExposeSecret, SecretString};
use redis_archive::archive::encryption::{PassphraseSource, passphrase_from_file};
use redis_archive::archive::{Decryption, Encryption};
use redis_archive::error::Error;
use redis_archive::profile::sensitive::{Redact, RedactKey};

use crate::cli::{DecryptArgs, ExportArgs};

const PASSPHRASE_ENV: &str = "ARCHIVE_PASSPHRASE";
const PASSPHRASE_FILE_ENV: &str = "ARCHIVE_PASSPHRASE_FILE";
const REDACT_KEY_FILE_ENV: &str = "ARCHIVE_REDACT_KEY_FILE";

/// ARCHIVE_PASSPHRASE, else the first line of ARCHIVE_PASSPHRASE_FILE.
fn from_environment() -> Result<Option<SecretString>, Error> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV)
        && !p.is_empty()
    {
        return Ok(Some(SecretString::from(p)));
    }
    match std::env::var_os(PASSPHRASE_FILE_ENV) {
        Some(path) if !path.is_empty() => passphrase_from_file(path.as_ref()).map(Some),
        _ => Ok(None),
    }
}

fn terminal() -> bool {
    io::stderr().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

fn prompt(text: &str) -> Option<SecretString> {
    rpassword::prompt_password(text)
        .ok()
        .filter(|p| !p.is_empty())
        .map(SecretString::from)
}

/// The age layer for `export`, from -r, -R or --passphrase.
pub fn encryption(args: &ExportArgs) -> Result<Option<Encryption>, Error> {
    if args.passphrase {
        let passphrase = match from_environment()? {
            Some(p) => p,
            None if terminal() => {
                let first = prompt("passphrase: ")
                    .ok_or_else(|| Error::InvalidArgument("no passphrase entered".into()))?;
                let again = prompt("passphrase again: ")
                    .unwrap_or_else(|| SecretString::from(String::new()));
                if first.expose_secret() != again.expose_secret() {
                    return Err(Error::InvalidArgument(
                        "the passphrases do not match".into(),
                    ));
                }
                first
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                    "--passphrase needs {PASSPHRASE_ENV}, {PASSPHRASE_FILE_ENV} or a terminal to ask on"
                )));
            }
        };
        return Ok(Some(Encryption::to_passphrase(passphrase, args.armor)));
    }
    if args.recipients.is_empty() && args.recipients_files.is_empty() {
        if args.armor {
            return Err(Error::InvalidArgument(
                "--armor applies to encrypted archives: add -r, -R or --passphrase".into(),
            ));
        }
        return Ok(None);
    }
    Encryption::to_recipients(&args.recipients, &args.recipients_files, args.armor).map(Some)
}

/// How `export --redact` replaces values: keyed with --redact-key FILE
/// (which implies --redact) or, with --redact, the file named by
/// ARCHIVE_REDACT_KEY_FILE; else the mask. The key is read only from a
/// file, so it is on no command line and in no process listing.
pub fn redaction(args: &ExportArgs) -> Result<Option<Redact>, Error> {
    let file = match &args.redact_key {
        Some(path) => Some(path.clone()),
        None if args.redact => std::env::var_os(REDACT_KEY_FILE_ENV)
            .filter(|p| !p.is_empty())
            .map(Into::into),
        None => return Ok(None),
    };
    Ok(Some(match file {
        Some(path) => Redact::Keyed(RedactKey::from_file(&path)?),
        None => Redact::Mask,
    }))
}

/// Asks at most once: the answer (or its absence) is kept for the second
/// read of a restore.
struct Lazy {
    known: Option<SecretString>,
    may_prompt: bool,
    asked: Mutex<Option<Option<SecretString>>>,
}

impl PassphraseSource for Lazy {
    fn passphrase(&self) -> Option<SecretString> {
        if let Some(p) = &self.known {
            return Some(p.clone());
        }
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked
            .get_or_insert_with(|| self.may_prompt.then(|| prompt("passphrase: ")).flatten())
            .clone()
    }
}

/// Identities and passphrase for reading archives.
pub fn decryption(args: &DecryptArgs) -> Result<Decryption, Error> {
    let known = from_environment()?;
    let lazy = Lazy {
        known,
        may_prompt: terminal(),
        asked: Mutex::new(None),
    };
    Ok(Decryption::none()
        .with_identity_files(&args.identities)?
        .with_passphrase(Arc::new(lazy)))
}
