//! What can go wrong reading an RDB file, each said in one line.

/// Why an RDB file (or stream) could not be read. Byte offsets count from
/// the first byte of `REDIS`.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum RdbError {
    /// Reading the input failed.
    #[error("reading the RDB file failed: {0}")]
    Io(#[source] std::io::Error),
    /// The input does not start like an RDB file.
    #[error("not an RDB file: it does not start with \"REDIS\" and a 4-digit format version")]
    NotRdb,
    /// The input ended in the middle of the file.
    #[error("the RDB file ends early at byte {offset} (truncated?)")]
    Truncated {
        /// How many bytes there were.
        offset: u64,
    },
    /// Something in the file cannot be what a server wrote.
    #[error("the RDB file is corrupt at byte {offset}: {what}")]
    Corrupt {
        /// Where the bad part starts (or where it was noticed).
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A format version this reader does not read.
    #[error(
        "RDB format version {0} is not supported: this reader reads versions 9 to 12 \
         (Redis 5.0 to 8.x, Valkey 7.2 to 8.x)"
    )]
    Version(u32),
    /// A value type this reader does not know; its length cannot be known
    /// either, so the rest of the file cannot be read.
    #[error(
        "unknown RDB value type {type_byte} at byte {offset} (a newer server's?): \
         a value of an unknown type cannot be skipped"
    )]
    UnknownType {
        /// The type byte.
        type_byte: u8,
        /// Where it is.
        offset: u64,
    },
    /// A format only release candidates of Redis wrote.
    #[error("the RDB file holds {what} at byte {offset}, which this reader does not read")]
    Unsupported {
        /// Where it is.
        offset: u64,
        /// What it is.
        what: &'static str,
    },
    /// The file's stored checksum is not the checksum of its bytes.
    #[error(
        "RDB checksum mismatch: stored 0x{stored:016x}, computed 0x{computed:016x}: the file is corrupt"
    )]
    Checksum {
        /// The checksum at the end of the file.
        stored: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
    /// A big stream could not be spooled to a temporary file.
    #[error("spooling a big stream to a temporary file failed: {0}")]
    Spool(#[source] std::io::Error),
    /// `next_item` was called again after it returned an error.
    #[error("the RDB reader stopped at an earlier error and cannot go on")]
    Stopped,
}

impl RdbError {
    /// A [`RdbError::Corrupt`] at `offset`.
    pub(super) fn corrupt(offset: u64, what: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset,
            what: what.into(),
        }
    }
}
