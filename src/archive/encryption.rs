//! The optional age layer, between zstd and the file.
//!
//! age is the format people already trust and can open without us: an
//! encrypted archive is `age -d -i key.txt FILE | zstd -dc | tar -x`.
//! Recipients are age X25519 (`age1...`) and SSH (`ssh-ed25519`, `ssh-rsa`)
//! public keys, or a passphrase (scrypt). Passphrase archives use work
//! factor 18, the age CLI's own, and a reader accepts up to 22, the age
//! CLI's limit, so files move both ways between `archive` and `age`.
//!
//! age hands out plaintext before it can tell that a file was cut short;
//! that is why the reader only reports a truncated or tampered archive at
//! its end, and why restore verifies the whole archive before writing.
//!
//! No key material, passphrase or identity file content ever goes into a
//! message: errors name files and recipient types, never contents.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use age::stream::StreamWriter;

use crate::error::{Error, Result};

/// The work factor (log2 N) for new passphrase archives: the age CLI's.
pub(crate) const SCRYPT_WORK_FACTOR: u8 = 18;
/// The highest work factor a reader accepts: the age CLI's limit.
pub(crate) const SCRYPT_MAX_WORK_FACTOR: u8 = 22;

const AGE_BINARY_MAGIC: &[u8] = b"age-encryption.org/";
const AGE_ARMOR_MAGIC: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Whether the first bytes of a file are an age header (binary or armored).
pub(crate) fn is_age(head: &[u8]) -> bool {
    head.starts_with(AGE_BINARY_MAGIC) || head.starts_with(AGE_ARMOR_MAGIC)
}

/// Whom a new archive is encrypted to.
#[allow(missing_debug_implementations)] // holds keys and a passphrase
pub enum EncryptTo {
    /// Public keys (age or SSH): any one of the matching identities can
    /// open the archive.
    Recipients(Vec<Box<dyn age::Recipient + Send + Sync>>),
    /// A passphrase, stretched with scrypt; the same passphrase opens the
    /// archive.
    Passphrase(SecretString),
}

/// The age layer of a new archive.
pub struct Encryption {
    /// Who can open the archive.
    pub to: EncryptTo,
    /// ASCII armor (PEM-like text) instead of binary.
    pub armor: bool,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = match &self.to {
            EncryptTo::Recipients(r) => format!("{} recipient(s)", r.len()),
            EncryptTo::Passphrase(_) => "passphrase".into(),
        };
        f.debug_struct("Encryption")
            .field("to", &to)
            .field("armor", &self.armor)
            .finish()
    }
}

impl Encryption {
    /// Recipients from `-r` strings and `-R` files (one per line, `#`
    /// comments and blank lines ignored, as in age).
    pub fn to_recipients(specs: &[String], files: &[PathBuf], armor: bool) -> Result<Self> {
        let mut recipients = Vec::new();
        for spec in specs {
            recipients.push(parse_recipient(spec.trim(), None)?);
        }
        for path in files {
            let text = fs::read_to_string(path).map_err(|e| Error::input(path, e))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                recipients.push(parse_recipient(line, Some((path, n + 1)))?);
            }
        }
        if recipients.is_empty() {
            return Err(Error::InvalidArgument(
                "no recipients: the recipients file is empty".into(),
            ));
        }
        Ok(Encryption {
            to: EncryptTo::Recipients(recipients),
            armor,
        })
    }

    /// Encrypt to one key made by the caller (e.g. an ephemeral one).
    pub fn to_key(recipient: age::x25519::Recipient) -> Self {
        Encryption {
            to: EncryptTo::Recipients(vec![Box::new(recipient)]),
            armor: false,
        }
    }

    /// Encrypt with a passphrase; `armor` writes ASCII armor instead of binary.
    pub fn to_passphrase(passphrase: SecretString, armor: bool) -> Self {
        Encryption {
            to: EncryptTo::Passphrase(passphrase),
            armor,
        }
    }

    /// Start the age layer over `output`.
    pub(crate) fn wrap<W: Write>(&self, output: W) -> io::Result<AgeWriter<W>> {
        let format = if self.armor {
            Format::AsciiArmor
        } else {
            Format::Binary
        };
        let armored = ArmoredWriter::wrap_output(output, format)?;
        let encryptor = match &self.to {
            EncryptTo::Recipients(recipients) => {
                age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as _))
                    .map_err(|e| io::Error::other(e.to_string()))?
            }
            EncryptTo::Passphrase(passphrase) => {
                let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
                recipient.set_work_factor(SCRYPT_WORK_FACTOR);
                age::Encryptor::with_recipients(std::iter::once(&recipient as _))
                    .map_err(|e| io::Error::other(e.to_string()))?
            }
        };
        Ok(AgeWriter(encryptor.wrap_output(armored)?))
    }
}

/// An age stream being written; must be finished, or the file is truncated.
pub(crate) struct AgeWriter<W: Write>(StreamWriter<ArmoredWriter<W>>);

impl<W: Write> AgeWriter<W> {
    pub(crate) fn finish(self) -> io::Result<W> {
        self.0.finish()?.finish()
    }
}

impl<W: Write> Write for AgeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn parse_recipient(
    spec: &str,
    at: Option<(&Path, usize)>,
) -> Result<Box<dyn age::Recipient + Send + Sync>> {
    let place = match at {
        Some((path, line)) => format!("{} line {line}: ", path.display()),
        None => String::new(),
    };
    let shown: String = spec.chars().take(24).collect();
    let bad = |what: String| Error::InvalidArgument(format!("{place}{what}"));
    if spec.starts_with("age1pq1") {
        return Err(bad(format!(
            "recipient {shown}... is a post-quantum age key, which this build does not support; use an X25519 (age1...) or SSH public key"
        )));
    }
    if spec.starts_with("ssh-") || spec.starts_with("ecdsa-") || spec.starts_with("sk-") {
        return age::ssh::Recipient::from_str(spec)
            .map(|r| Box::new(r) as _)
            .map_err(|e| {
                bad(format!(
                    "recipient {shown}... is not a usable SSH public key ({e:?}); use ssh-ed25519 or ssh-rsa keys"
                ))
            });
    }
    if let Some(rest) = spec.strip_prefix("age1") {
        if let Ok(r) = age::x25519::Recipient::from_str(spec) {
            return Ok(Box::new(r));
        }
        // age1<plugin>1... is a plugin recipient (YubiKey, TPM, ...).
        if let Some((name, _)) = rest.split_once('1')
            && !name.is_empty()
        {
            return Err(bad(format!(
                "recipient {shown}... is an age plugin key (type {name:?}), which this build does not support; use an X25519 (age1...) or SSH public key"
            )));
        }
        return Err(bad(format!(
            "recipient {shown}... is not a valid age X25519 key"
        )));
    }
    Err(bad(format!(
        "recipient {shown}... is not an age (age1...) or SSH (ssh-ed25519, ssh-rsa) public key"
    )))
}

/// Asked for the passphrase when an archive turns out to need one, so a
/// terminal prompt happens only then, and at most once (the caller caches).
pub trait PassphraseSource: Send + Sync {
    /// The passphrase, or `None` when there is none to give (no terminal,
    /// the user gave up): the archive then cannot be opened.
    fn passphrase(&self) -> Option<SecretString>;
}

/// How to open encrypted archives: identities and/or a passphrase source.
#[derive(Clone, Default)]
pub struct Decryption {
    identities: Vec<Arc<dyn age::Identity + Send + Sync>>,
    passphrase: Option<Arc<dyn PassphraseSource>>,
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryption")
            .field("identities", &self.identities.len())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl Decryption {
    /// No identities and no passphrase: only unencrypted archives can be read.
    pub fn none() -> Self {
        Self::default()
    }

    /// Load identities from files: age identity files (`AGE-SECRET-KEY-1...`
    /// lines) and unencrypted OpenSSH private keys.
    pub fn with_identity_files(mut self, paths: &[PathBuf]) -> Result<Self> {
        for path in paths {
            let bytes = fs::read(path).map_err(|e| Error::input(path, e))?;
            let unusable = |why: String| {
                Error::InvalidArgument(format!(
                    "cannot use identity file {}: {why}",
                    path.display()
                ))
            };
            let is_ssh = bytes.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
                || bytes.starts_with(b"-----BEGIN RSA PRIVATE KEY-----");
            if is_ssh {
                let identity =
                    age::ssh::Identity::from_buffer(&bytes[..], Some(path.display().to_string()))
                        .map_err(|e| unusable(e.to_string()))?;
                match identity {
                    age::ssh::Identity::Unencrypted(_) => self.identities.push(Arc::new(identity)),
                    age::ssh::Identity::Encrypted(_) => {
                        return Err(unusable(
                            "the SSH key is passphrase-protected, which is not supported; use an unprotected copy (ssh-keygen -p) or an age identity".into(),
                        ));
                    }
                    age::ssh::Identity::Unsupported(_) => {
                        return Err(unusable(
                            "this kind of SSH key is not supported; use ssh-ed25519 or ssh-rsa"
                                .into(),
                        ));
                    }
                }
            } else {
                let file = age::IdentityFile::from_buffer(&bytes[..])
                    .map_err(|e| unusable(e.to_string()))?;
                let identities = file
                    .into_identities()
                    .map_err(|e| unusable(e.to_string()))?;
                if identities.is_empty() {
                    return Err(unusable("it holds no identities".into()));
                }
                self.identities
                    .extend(identities.into_iter().map(Arc::from));
            }
        }
        Ok(self)
    }

    /// Add an identity already in memory (a key the caller loaded or
    /// generated).
    pub fn with_identity(mut self, identity: Arc<dyn age::Identity + Send + Sync>) -> Self {
        self.identities.push(identity);
        self
    }

    /// Ask `source` for the passphrase of a passphrase-encrypted archive,
    /// once it is known to be one.
    pub fn with_passphrase(mut self, source: Arc<dyn PassphraseSource>) -> Self {
        self.passphrase = Some(source);
        self
    }

    /// Open the age layer of `input` (binary or armored).
    pub(crate) fn open<R: Read>(&self, name: &str, input: R) -> Result<impl Read + use<R>> {
        self.open_stream(name, input).map(Authenticated)
    }

    fn open_stream<R: Read>(&self, name: &str, input: R) -> Result<impl Read + use<R>> {
        let failed = |reason: String| Error::Decrypt {
            path: name.to_string(),
            reason,
        };
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(input))
            .map_err(|e| header_error(name, e))?;
        if decryptor.is_scrypt() {
            let Some(passphrase) = self.passphrase.as_ref().and_then(|s| s.passphrase()) else {
                return Err(failed(
                    "archive is encrypted with a passphrase: pass --passphrase, or set ARCHIVE_PASSPHRASE or ARCHIVE_PASSPHRASE_FILE".into(),
                ));
            };
            let mut identity = age::scrypt::Identity::new(passphrase);
            identity.set_max_work_factor(SCRYPT_MAX_WORK_FACTOR);
            return decryptor
                .decrypt(std::iter::once(&identity as _))
                .map_err(|e| match e {
                    age::DecryptError::ExcessiveWork { required, .. } => failed(format!(
                        "the passphrase work factor {required} is above the limit of {SCRYPT_MAX_WORK_FACTOR}"
                    )),
                    age::DecryptError::Io(e) => io_error(name, e),
                    _ => failed("wrong passphrase".into()),
                });
        }
        if self.identities.is_empty() {
            return Err(failed(
                "archive is encrypted: pass --identity or --passphrase (or set ARCHIVE_IDENTITY_FILE)".into(),
            ));
        }
        decryptor
            .decrypt(self.identities.iter().map(|i| i.as_ref() as _))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => {
                    failed("none of the given identities can decrypt this archive".into())
                }
                age::DecryptError::Io(e) => io_error(name, e),
                other => header_error(name, other),
            })
    }
}

/// age's payload reader. A chunk that fails authentication is either
/// altered or, at the end, the sign of a file cut short (the final chunk is
/// marked as such, so a shorter file does not authenticate); age cannot
/// tell which, so the message says both.
struct Authenticated<R>(R);

impl<R: Read> Read for Authenticated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the encrypted data does not authenticate: the file was cut short or altered",
                )
            } else {
                e
            }
        })
    }
}

fn io_error(name: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Truncated {
            path: name.to_string(),
            reason: "the encrypted file ends early".into(),
        }
    } else {
        Error::Corrupt {
            path: name.to_string(),
            reason: format!("the encrypted file is damaged ({e})"),
        }
    }
}

fn header_error(name: &str, e: age::DecryptError) -> Error {
    match e {
        age::DecryptError::Io(e) => io_error(name, e),
        age::DecryptError::UnknownFormat => Error::NotAnArchive {
            path: name.to_string(),
            reason: "it uses an age format version this program does not know".into(),
        },
        other => Error::Corrupt {
            path: name.to_string(),
            reason: format!("the age header is damaged ({other})"),
        },
    }
}

/// Read a passphrase from a file: the first line, without its line ending
/// (as restic's --password-file does).
pub fn passphrase_from_file(path: &Path) -> Result<SecretString> {
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| Error::input(path, e))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_kinds_are_named() {
        let key = age::x25519::Identity::generate().to_public().to_string();
        assert!(parse_recipient(&key, None).is_ok());
        let pq = parse_recipient("age1pq1qqqqqqqqqqqqqqqqqqqqqqqqqqqq", None)
            .err()
            .unwrap();
        assert!(pq.to_string().contains("post-quantum"), "{pq}");
        let plugin = parse_recipient("age1yubikey1qwerty", None).err().unwrap();
        assert!(
            plugin.to_string().contains("plugin key (type \"yubikey\")"),
            "{plugin}"
        );
        let junk = parse_recipient("hello", None).err().unwrap();
        assert!(junk.to_string().contains("not an age"), "{junk}");
    }

    #[test]
    fn age_magic_is_detected() {
        assert!(is_age(b"age-encryption.org/v1\n-> X25519"));
        assert!(is_age(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(!is_age(&[0x28, 0xb5, 0x2f, 0xfd]));
    }
}
