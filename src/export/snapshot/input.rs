//! Where an RDB comes from (a file, stdin, a server's replication link),
//! opened up to its first key; and a spool for RDBs that have to be read
//! twice but cannot be read again (stdin, a replication link).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::Choice;
use crate::archive::SnapshotNode;
use crate::archive::manifest::ServerInfo;
use crate::connection::{Endpoint, Framing, SyncPoint};
use crate::error::{Error, Result};
use crate::rdb::{RdbError, RdbItem, RdbOptions, RdbReader};

/// Bytes of data per record before a key is split into parts.
pub(super) const CHUNK_BYTES: usize = 256 << 10;
/// Buffer for reading an RDB file: large reads keep the parser fed.
const FILE_BUFFER: usize = 1 << 20;

/// An RDB, as a reader takes it.
pub(super) type Input = Box<dyn BufRead + Send>;

/// An RDB file to read.
#[derive(Debug, Clone)]
pub enum RdbInput {
    /// A file on disk.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

impl RdbInput {
    pub(crate) fn display(&self) -> String {
        match self {
            RdbInput::File(p) => p.display().to_string(),
            RdbInput::Stdin => "-".into(),
        }
    }

    pub(super) fn open(&self) -> Result<Input> {
        Ok(match self {
            RdbInput::File(path) => {
                let file = File::open(path).map_err(|e| Error::Input {
                    path: path.clone(),
                    source: e,
                })?;
                Box::new(BufReader::with_capacity(FILE_BUFFER, file))
            }
            RdbInput::Stdin => Box::new(BufReader::with_capacity(FILE_BUFFER, io::stdin())),
        })
    }
}

/// One RDB source, before it is read.
pub(super) struct Source {
    /// The file or server, as messages and the header name it.
    pub name: String,
    pub input: Input,
    /// For a replication link: how the RDB ends, and its instant.
    pub link: Option<(Framing, SyncPoint)>,
}

impl Source {
    pub(super) fn file(input: &RdbInput) -> Result<Source> {
        Ok(Source {
            name: input.display(),
            input: input.open()?,
            link: None,
        })
    }

    /// Ask a server for its snapshot (blocking).
    pub(super) fn replica(endpoint: &Endpoint) -> Result<Source> {
        let link = endpoint.open_replica()?;
        let a = endpoint.address();
        Ok(Source {
            name: format!("{}:{}", a.host, a.port),
            link: Some((link.framing.clone(), link.point.clone())),
            input: Box::new(link.input),
        })
    }
}

/// One RDB being read, its leading aux fields already taken.
pub(super) struct Opened {
    pub reader: RdbReader<Input>,
    /// The first item after the aux fields, read to know they were over.
    pub first: Option<RdbItem>,
    pub aux: BTreeMap<String, String>,
    pub node: SnapshotNode,
    pub framing: Option<Framing>,
    pub name: String,
}

impl Opened {
    /// Start reading `source`: its header and the aux fields that lead it;
    /// `choice` decides on the first key, should it come right after.
    pub(super) fn new(source: Source, now_ms: i64, choice: &Choice) -> Result<Opened> {
        let name = source.name;
        let bad = |e: RdbError| bad_rdb(&name, e);
        let mut reader =
            RdbReader::new(source.input, RdbOptions::new(now_ms, CHUNK_BYTES)).map_err(bad)?;
        let mut aux = BTreeMap::new();
        let first = loop {
            match reader
                .next_item(&mut |info| choice.wants(info))
                .map_err(bad)?
            {
                Some(RdbItem::Aux { key, value }) => {
                    aux.insert(
                        String::from_utf8_lossy(&key).into_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
                other => break other,
            }
        };
        let (framing, point) = source.link.unzip();
        let node = SnapshotNode {
            node: name.clone(),
            rdb_version: reader.version(),
            replid: point.as_ref().map(|p| p.replid.clone()),
            offset: point.as_ref().map(|p| p.offset),
            created_at: aux
                .get("ctime")
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
            server_version: aux
                .get("valkey-ver")
                .or_else(|| aux.get("redis-ver"))
                .cloned(),
        };
        Ok(Opened {
            reader,
            first,
            aux,
            node,
            framing,
            name,
        })
    }

    /// The flavor and version the RDB's aux fields name.
    pub(super) fn server(&self) -> ServerInfo {
        match (self.aux.get("valkey-ver"), self.aux.get("redis-ver")) {
            (Some(v), _) => ServerInfo {
                flavor: "valkey".into(),
                version: v.clone(),
            },
            (None, v) => ServerInfo {
                flavor: "redis".into(),
                version: v.cloned().unwrap_or_else(|| "unknown".into()),
            },
        }
    }

    /// After the last item: the framing of a replication link ends where
    /// the RDB did.
    pub(super) fn check_end(self) -> Result<()> {
        let Some(framing) = self.framing else {
            return Ok(());
        };
        let consumed = self.reader.stats().bytes_read;
        let mut input = self.reader.into_inner();
        framing
            .check_end(&mut input, consumed)
            .map_err(|reason| Error::BadRdb {
                source_name: self.name,
                reason,
            })
    }
}

pub(super) fn bad_rdb(name: &str, e: RdbError) -> Error {
    Error::BadRdb {
        source_name: name.into(),
        reason: e.to_string(),
    }
}

/// A reader that copies every byte its consumer takes into a private temp
/// file, so an RDB that arrives once can be read a second time.
pub(super) struct Tee {
    inner: Input,
    spool: BufWriter<File>,
    failed: Option<io::Error>,
}

impl Tee {
    pub(super) fn new(inner: Input) -> Result<Tee> {
        // tempfile() is unlinked at once and created 0600: the spool holds
        // data, and no crash leaves it behind.
        let spool = tempfile::tempfile().map_err(|e| Error::Output {
            path: std::env::temp_dir(),
            source: e,
        })?;
        Ok(Tee {
            inner,
            spool: BufWriter::with_capacity(FILE_BUFFER, spool),
            failed: None,
        })
    }

    /// The spooled bytes, from their start, as a new input.
    pub(super) fn replay(self) -> Result<Input> {
        let spool_err = |e: io::Error| Error::Output {
            path: std::env::temp_dir(),
            source: e,
        };
        if let Some(e) = self.failed {
            return Err(spool_err(e));
        }
        let mut file = self
            .spool
            .into_inner()
            .map_err(|e| spool_err(e.into_error()))?;
        file.rewind().map_err(spool_err)?;
        Ok(Box::new(BufReader::with_capacity(FILE_BUFFER, file)))
    }
}

impl Read for Tee {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Tee {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        // The bytes consumed are still in the inner buffer: fill_buf gives
        // them again without reading.
        if self.failed.is_none()
            && let Ok(buffer) = self.inner.fill_buf()
            && let Err(e) = self.spool.write_all(&buffer[..amount.min(buffer.len())])
        {
            self.failed = Some(e);
        }
        self.inner.consume(amount);
    }
}
