//! The archive file: a tar stream of JSON entries, compressed with zstd.
//!
//! Layers, outermost last: records -> tar -> zstd -> [age] -> file. Each
//! layer is a standard format, so an archive opens with `zstd -dc FILE |
//! tar -x` (after `age -d` when encrypted) and nothing of ours. See
//! docs/FORMAT.md.

pub mod encryption;
pub mod manifest;
pub mod reader;
pub(crate) mod stream;
pub mod writer;

pub use encryption::{Decryption, Encryption};
pub use manifest::{
    Consistency, Counts, Header, Manifest, Redaction, RedactionMethod, SCHEMA_VERSION,
    SnapshotNode, SnapshotOrigin, SnapshotSource,
};
pub use reader::{ArchiveSource, Location, Verified, Visitor, read_archive, read_manifest};
pub use writer::{ArchiveWriter, Destination, Finished, WriterOptions};
