//! The reads of one key's value: the first read for its type, sent with
//! the batch's others, and the reads that go on from where it stopped
//! (string ranges, SCAN cursors, list offsets, stream ids, pending-entry
//! pages), each turned into the next chunk of records.

use super::*;

/// The first read of one key, sent in the second round trip.
#[derive(Debug, Clone, Copy)]
pub(super) enum FirstRead {
    String,
    Scan(&'static str),
    List,
    Stream,
    Dump,
}

impl FirstRead {
    pub(super) fn for_type(t: KeyType) -> Self {
        match t {
            KeyType::String => FirstRead::String,
            KeyType::Hash => FirstRead::Scan("HSCAN"),
            KeyType::Set => FirstRead::Scan("SSCAN"),
            KeyType::Zset => FirstRead::Scan("ZSCAN"),
            KeyType::List => FirstRead::List,
            KeyType::Stream => FirstRead::Stream,
            KeyType::Dump | KeyType::Absent => FirstRead::Dump,
        }
    }

    /// Replies this read produces, after the PTTL reply.
    pub(super) fn replies(&self) -> usize {
        match self {
            FirstRead::Stream => 3,
            _ => 1,
        }
    }
}

/// Where reading a big key goes on from.
pub(super) enum Resume {
    Done,
    String {
        offset: usize,
    },
    Scan {
        command: &'static str,
        cursor: Vec<u8>,
    },
    List {
        offset: usize,
    },
    Stream {
        from: StreamId,
        last: StreamId,
    },
    /// A stream's consumer groups' pending entries, after its entries.
    Pending(crate::pel::Cursor),
}

impl Fetcher {
    pub(super) fn add_first_read(&self, pipe: &mut redis::Pipeline, key: &[u8], read: &FirstRead) {
        let n = self.chunks.first_elements;
        match read {
            FirstRead::String => {
                pipe.cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(self.chunks.first_string_bytes as i64 - 1);
            }
            FirstRead::Scan(command) => {
                pipe.cmd(command).arg(key).arg(0).arg("COUNT").arg(n);
            }
            FirstRead::List => {
                pipe.cmd("LRANGE").arg(key).arg(0).arg(n as i64 - 1);
            }
            FirstRead::Stream => {
                pipe.cmd("XINFO").arg("STREAM").arg(key);
                pipe.cmd("XINFO").arg("GROUPS").arg(key);
                pipe.cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(n);
            }
            FirstRead::Dump => {
                pipe.cmd("DUMP").arg(key);
            }
        }
    }

    pub(super) fn first_record(
        &self,
        key: &[u8],
        type_name: Option<String>,
        read: &FirstRead,
        pttl: Reply,
        parts: Vec<Reply>,
        now_ms: i64,
    ) -> std::result::Result<(Record, Resume), KeyFault> {
        let expiry = self.expiry_of(pttl, now_ms)?;
        let mut parts = parts.into_iter();
        let mut next = || ok(parts.next().unwrap_or(Reply::Nil));
        let n = self.chunks.first_elements;
        let (value, resume) = match read {
            FirstRead::String => {
                let bytes = bytes_of(next()?);
                let resume = if bytes.len() >= self.chunks.first_string_bytes {
                    Resume::String {
                        offset: bytes.len(),
                    }
                } else {
                    Resume::Done
                };
                (Value::String(Bytes(bytes)), resume)
            }
            FirstRead::Scan(command) => {
                let (cursor, items) = scan_reply(next()?).map_err(KeyFault::Refused)?;
                if items.is_empty() && cursor == b"0" {
                    return Err(KeyFault::Vanished);
                }
                let value = scan_value(command, items).map_err(KeyFault::Refused)?;
                (value, scan_resume(command, cursor))
            }
            FirstRead::List => {
                let items = array_of(next()?);
                if items.is_empty() {
                    return Err(KeyFault::Vanished);
                }
                let resume = if items.len() >= n {
                    Resume::List {
                        offset: items.len(),
                    }
                } else {
                    Resume::Done
                };
                (
                    Value::List(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
                    resume,
                )
            }
            FirstRead::Stream => {
                let info = next()?;
                if matches!(info, Reply::Nil) {
                    return Err(KeyFault::Vanished);
                }
                let mut meta = stream_meta(info).map_err(KeyFault::Refused)?;
                meta.groups = stream_groups(next()?).map_err(KeyFault::Refused)?;
                let mut entries = stream_entries(next()?).map_err(KeyFault::Refused)?;
                // Entries added after XINFO belong to a later state of the stream.
                entries.retain(|e| e.id <= meta.last_id);
                let resume = match entries.last() {
                    Some(last) if entries.len() >= n => match last.id.next() {
                        Some(from) if from <= meta.last_id => Resume::Stream {
                            from,
                            last: meta.last_id,
                        },
                        _ => Resume::Done,
                    },
                    _ => Resume::Done,
                };
                (
                    Value::Stream(StreamChunk {
                        meta: Some(meta),
                        entries,
                        pending: Vec::new(),
                    }),
                    resume,
                )
            }
            FirstRead::Dump => {
                let reply = next()?;
                if matches!(reply, Reply::Nil) {
                    return Err(KeyFault::Vanished);
                }
                let payload = bytes_of(reply);
                let type_name = type_name.unwrap_or_default();
                (Value::Dump(dump_value(&payload, type_name)), Resume::Done)
            }
        };
        Ok((
            Record {
                key: Bytes(key.to_vec()),
                expiry,
                part: 0,
                more: !matches!(resume, Resume::Done),
                field_expiry: Vec::new(),
                void: false,
                value,
            },
            resume,
        ))
    }

    /// A key's expiry from its PEXPIRETIME (or PTTL) reply, at `now_ms`
    /// by the server's clock.
    pub(super) fn expiry_of(
        &self,
        reply: Reply,
        now_ms: i64,
    ) -> std::result::Result<Option<Expiry>, KeyFault> {
        Ok(match ok(reply)? {
            Reply::Int(-2) => return Err(KeyFault::Vanished),
            Reply::Int(at) if at >= 0 && self.exact_expiry => Some(Expiry {
                at_ms: at,
                ttl_ms: (at - now_ms).max(1),
            }),
            Reply::Int(ms) if ms >= 0 => Some(Expiry {
                at_ms: now_ms + ms,
                ttl_ms: ms.max(1),
            }),
            _ => None,
        })
    }

    pub(super) async fn read_more(
        &mut self,
        key: &[u8],
        t: KeyType,
        resume: Resume,
    ) -> std::result::Result<(Value, Vec<FieldExpiry>, Resume), String> {
        let n = self.chunks.elements;
        let action = "reading a big key";
        let query = |conn: &mut Conn, cmd: redis::Cmd| {
            let mut conn = conn.clone();
            async move {
                conn.query::<Reply>(&cmd, action)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        match resume {
            Resume::Done => Ok((empty_value(t), Vec::new(), Resume::Done)),
            Resume::String { offset } => {
                let size = self.chunks.string_bytes;
                let mut cmd = redis::cmd("GETRANGE");
                cmd.arg(key).arg(offset).arg(offset + size - 1);
                let bytes = bytes_of(query(&mut self.conn, cmd).await?);
                let resume = if bytes.len() >= size {
                    Resume::String {
                        offset: offset + bytes.len(),
                    }
                } else {
                    Resume::Done
                };
                Ok((Value::String(Bytes(bytes)), Vec::new(), resume))
            }
            Resume::Scan { command, cursor } => {
                let mut cmd = redis::cmd(command);
                cmd.arg(key).arg(&cursor[..]).arg("COUNT").arg(n);
                let (cursor, items) = scan_reply(query(&mut self.conn, cmd).await?)?;
                let mut value = scan_value(command, items)?;
                let mut field_expiry = Vec::new();
                if self.field_expiry
                    && let Value::Hash(fields) = &mut value
                    && !fields.is_empty()
                {
                    let mut pipe = redis::pipe();
                    pipe.cmd("TIME");
                    add_field_expiry_read(&mut pipe, key, fields);
                    let replies = self
                        .conn
                        .pipeline(&mut pipe, action)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut replies = replies.into_iter();
                    let now_ms = parse_time(replies.next())?;
                    field_expiry =
                        apply_field_expiry(fields, replies.next().unwrap_or(Reply::Nil), now_ms)?;
                }
                Ok((value, field_expiry, scan_resume(command, cursor)))
            }
            Resume::List { offset } => {
                let mut cmd = redis::cmd("LRANGE");
                cmd.arg(key).arg(offset).arg(offset + n - 1);
                let items = array_of(query(&mut self.conn, cmd).await?);
                let resume = if items.len() >= n {
                    Resume::List {
                        offset: offset + items.len(),
                    }
                } else {
                    Resume::Done
                };
                Ok((
                    Value::List(items.into_iter().map(|v| Bytes(bytes_of(v))).collect()),
                    Vec::new(),
                    resume,
                ))
            }
            Resume::Stream { from, last } => {
                let mut cmd = redis::cmd("XRANGE");
                cmd.arg(key)
                    .arg(from.to_string())
                    .arg(last.to_string())
                    .arg("COUNT")
                    .arg(n);
                let entries = stream_entries(query(&mut self.conn, cmd).await?)?;
                let resume = match entries.last().and_then(|e| e.id.next()) {
                    Some(from) if entries.len() >= n && from <= last => {
                        Resume::Stream { from, last }
                    }
                    _ => Resume::Done,
                };
                Ok((
                    Value::Stream(StreamChunk {
                        meta: None,
                        entries,
                        pending: Vec::new(),
                    }),
                    Vec::new(),
                    resume,
                ))
            }
            Resume::Pending(cursor) => {
                let (pending, next) = crate::pel::read_page(&mut self.conn, key, cursor, n).await?;
                Ok((
                    Value::Stream(StreamChunk {
                        meta: None,
                        entries: Vec::new(),
                        pending,
                    }),
                    Vec::new(),
                    next.map_or(Resume::Done, Resume::Pending),
                ))
            }
        }
    }
}

pub(super) fn ok(reply: Reply) -> std::result::Result<Reply, KeyFault> {
    match reply {
        Reply::ServerError(e) => Err(KeyFault::Refused(e.to_string())),
        other => Ok(other),
    }
}

pub(super) fn scan_resume(command: &'static str, cursor: Vec<u8>) -> Resume {
    if cursor == b"0" {
        Resume::Done
    } else {
        Resume::Scan { command, cursor }
    }
}
