//! Reading a stream's consumers and its groups' pending entries, a page
//! at a time, with delivery times exact to the millisecond.

use super::*;

pub(crate) fn add_clock(pipe: &mut Pipeline, key: &[u8], cluster: bool) {
    if cluster {
        pipe.cmd("EVAL").arg(TIME_SCRIPT).arg(1).arg(key);
    } else {
        pipe.cmd("TIME");
    }
}

// ---------------------------------------------------------------- reading

/// Where reading a stream's pending entries goes on from.
#[derive(Debug)]
pub(crate) struct Cursor {
    /// Groups whose pending entries are still to be read, each from an id.
    groups: VecDeque<(Bytes, StreamId)>,
    /// The stream's last id as its first record has it: pending entries
    /// above it are for entries the archive does not hold (a later state).
    last: StreamId,
}

impl Cursor {
    /// Drop groups read to the end; `None` when none is left.
    pub(crate) fn settle(mut self) -> Option<Cursor> {
        while self
            .groups
            .front()
            .is_some_and(|(_, from)| *from > self.last)
        {
            self.groups.pop_front();
        }
        (!self.groups.is_empty()).then_some(self)
    }
}

/// Fill in the consumers of a stream's groups in its first record (one
/// XINFO CONSUMERS per group, in one round trip) and say whose pending
/// entries are to be read after the stream's entries. When the record
/// holds all of the entries (`entries_done`), up to `count` pending entries
/// go in it too, so a small stream stays one record. The inner error is a
/// command the server refused for this key (it changed type meanwhile); a
/// group destroyed since is kept without consumers.
pub(crate) async fn read_groups(
    conn: &mut Conn,
    key: &[u8],
    chunk: &mut StreamChunk,
    entries_done: bool,
    count: usize,
) -> Result<std::result::Result<Option<Cursor>, String>> {
    let Some(meta) = chunk.meta.as_mut().filter(|m| !m.groups.is_empty()) else {
        return Ok(Ok(None));
    };
    let mut pipe = redis::pipe();
    for group in &meta.groups {
        pipe.cmd("XINFO")
            .arg("CONSUMERS")
            .arg(key)
            .arg(&group.name.0[..]);
    }
    let replies = conn.pipeline(&mut pipe, "reading stream consumers").await?;
    let mut groups = VecDeque::new();
    for (group, reply) in meta.groups.iter_mut().zip(replies) {
        if let Reply::ServerError(e) = &reply {
            let text = e.to_string();
            if text.contains("NOGROUP") {
                continue;
            }
            return Ok(Err(text));
        }
        let mut pending = 0;
        for consumer in array_of(reply) {
            let mut name = None;
            for (field, value) in info_fields(consumer) {
                match field.as_str() {
                    "name" => name = Some(Bytes(bytes_of(value))),
                    "pending" => pending += u64_of(&value).unwrap_or(0),
                    _ => {}
                }
            }
            match name {
                Some(name) => group.consumers.push(name),
                None => return Ok(Err("XINFO CONSUMERS gave a consumer without a name".into())),
            }
        }
        if pending > 0 {
            groups.push_back((group.name.clone(), StreamId::default()));
        }
    }
    let mut cursor = Cursor {
        groups,
        last: meta.last_id,
    }
    .settle();
    let mut room = if entries_done { count } else { 0 };
    while room > 0
        && let Some(c) = cursor.take()
    {
        let (runs, next) = match read_page(conn, key, c, room).await {
            Ok(page) => page,
            Err(reason) => return Ok(Err(reason)),
        };
        room = room.saturating_sub(runs.iter().map(|r| r.entries.len()).sum());
        chunk.pending.extend(runs);
        cursor = next;
    }
    Ok(Ok(cursor))
}

/// Read the next page of pending entries (up to `count`), skipping groups
/// that turn out to have none left. Returns the runs read (empty only when
/// nothing is left) and where to go on from.
pub(crate) async fn read_page(
    conn: &mut Conn,
    key: &[u8],
    mut cursor: Cursor,
    count: usize,
) -> std::result::Result<(Vec<GroupPending>, Option<Cursor>), String> {
    let cluster = conn.is_cluster();
    while let Some((group, from)) = cursor.groups.front().cloned() {
        let mut asked = count.max(1);
        let mut page = None;
        for attempt in 0..CLOCK_TRIES {
            let mut pipe = redis::pipe();
            add_clock(&mut pipe, key, cluster);
            pipe.cmd("XPENDING")
                .arg(key)
                .arg(&group.0[..])
                .arg(from.to_string())
                .arg(cursor.last.to_string())
                .arg(asked);
            add_clock(&mut pipe, key, cluster);
            let mut replies = conn
                .pipeline(&mut pipe, "reading pending entries")
                .await
                .map_err(|e| e.to_string())?
                .into_iter();
            let before = parse_time(replies.next())?;
            let reply = replies.next().unwrap_or(Reply::Nil);
            let after = parse_time(replies.next())?;
            if let Reply::ServerError(e) = &reply {
                let text = e.to_string();
                // The group (or the key) is gone: nothing more to read of it.
                if text.contains("NOGROUP") {
                    break;
                }
                return Err(text);
            }
            if before == after || attempt + 1 == CLOCK_TRIES {
                page = Some((pending_entries(reply, before)?, asked));
                break;
            }
            // The clock ticked over: a smaller page runs in less time.
            asked = (asked / 2).max(16).min(asked);
        }
        let Some((entries, asked)) = page else {
            cursor.groups.pop_front();
            continue;
        };
        match entries.last().and_then(|e| e.id.next()) {
            Some(next) if entries.len() >= asked => cursor.groups[0].1 = next,
            _ => {
                cursor.groups.pop_front();
            }
        }
        if !entries.is_empty() {
            return Ok((vec![GroupPending { group, entries }], cursor.settle()));
        }
        cursor = match cursor.settle() {
            Some(c) => c,
            None => break,
        };
    }
    Ok((Vec::new(), None))
}

/// One XPENDING entry: id, consumer, idle ms, deliveries.
pub(crate) fn pending_item(item: Reply) -> Option<(StreamId, Vec<u8>, i64, u64)> {
    let mut f = array_of(item).into_iter();
    let id = stream_id_of(&f.next()?)?;
    let consumer = bytes_of(f.next()?);
    let idle = u64_of(&f.next()?)?;
    let count = u64_of(&f.next()?)?;
    Some((id, consumer, i64::try_from(idle).ok()?, count))
}

/// XPENDING's entries with their delivery times, given the millisecond the
/// command ran in.
pub(crate) fn pending_entries(
    reply: Reply,
    now_ms: i64,
) -> std::result::Result<Vec<PendingEntry>, String> {
    array_of(reply)
        .into_iter()
        .map(|item| {
            let (id, consumer, idle, delivery_count) =
                pending_item(item).ok_or("XPENDING gave an unexpected entry")?;
            Ok(PendingEntry {
                id,
                consumer: Bytes(consumer),
                delivery_count,
                delivered_at_ms: (now_ms - idle).max(0),
            })
        })
        .collect()
}

// ---------------------------------------------------------------- writing
