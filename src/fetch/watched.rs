//! Reading a key that needs several reads as one version of it: under
//! `WATCH`, on a connection of the fetcher's own, with the last chunk held
//! until `EXEC` says nothing touched the key; a changed key's parts are
//! closed by a void record and it is read again.

use redis::Value as Reply;

use super::*;

/// How many times a big key that keeps changing while it is read is read
/// again from the start before it is given up (and reported).
pub(crate) const WATCHED_READ_ATTEMPTS: u32 = 3;

impl Fetcher {
    /// Read a key that needs several reads as one version of it: WATCH it
    /// on a connection of its own, read it from the start, and let EXEC say
    /// whether anything touched it meanwhile (a write, a delete, an expiry:
    /// WATCH sees them all). Its records are sent as they are read, so a
    /// changed key is closed with a void record, which tells every reader
    /// to drop its parts, and read again; a key that is gone by then is
    /// vanished, one that changes on every attempt is reported.
    pub(super) async fn read_watched(
        &mut self,
        key: Vec<u8>,
        t: KeyType,
        type_name: Option<String>,
    ) -> Result<()> {
        for _ in 0..WATCHED_READ_ATTEMPTS {
            let watched = self.watch(&key).await?;
            let typed = [(key.clone(), t, type_name.clone())];
            let (replies, reads) = self.first_reads(&typed).await?;
            let mut replies = replies.into_iter();
            let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;
            let pttl = replies.next().unwrap_or(Reply::Nil);
            let parts: Vec<Reply> = replies.collect();
            let (mut first, resume) =
                match self.first_record(&key, type_name.clone(), &reads[0], pttl, parts, now_ms) {
                    Ok(read) => read,
                    Err(KeyFault::Vanished) => {
                        self.unwatch(&key).await;
                        self.stats.vanish(Some(t));
                        return Ok(());
                    }
                    Err(KeyFault::Refused(reason)) => {
                        self.unwatch(&key).await;
                        self.stats.fail(&key, t, reason);
                        return Ok(());
                    }
                };
            if self.field_expiry {
                self.add_field_expiry(&mut [&mut first]).await?;
            }
            // A stream's consumers go in its first record; its groups'
            // pending entries are read after its entries.
            let mut pending = None;
            if let Value::Stream(chunk) = &mut first.value {
                let n = self.chunks.first_elements;
                let entries_done = matches!(resume, Resume::Done);
                match crate::pel::read_groups(&mut self.conn, &key, chunk, entries_done, n).await? {
                    Ok(cursor) => pending = cursor,
                    Err(_) => {
                        // Changed before anything was sent: read it again.
                        self.unwatch(&key).await;
                        self.stats.changed += 1;
                        continue;
                    }
                }
            }
            let resume = then_pending(resume, &mut pending);
            let key_bytes = Bytes(key.clone());
            let mut resume = resume;
            let mut part = 0;
            // Each chunk is sent once the next one is read: the last is held
            // until EXEC has said the key did not change, so that a changed
            // key's parts always end with the void record (never a last part).
            let mut held = (first.expiry, first.value, first.field_expiry);
            let mut changed = !watched;
            while !changed && !matches!(resume, Resume::Done) {
                let (expiry, value, field_expiry) = held;
                self.send_pieces(&key_bytes, &mut part, expiry, value, field_expiry, true)
                    .await?;
                held = (None, empty_value(t), Vec::new());
                match self
                    .read_more(&key, t, std::mem::replace(&mut resume, Resume::Done))
                    .await
                {
                    Ok((value, field_expiry, next)) => {
                        resume = then_pending(next, &mut pending);
                        held = (None, value, field_expiry);
                    }
                    Err(_) => changed = true,
                }
            }
            if !changed {
                changed = !self.exec_unchanged(&key).await;
            }
            if !changed {
                let (expiry, value, field_expiry) = held;
                self.send_pieces(&key_bytes, &mut part, expiry, value, field_expiry, false)
                    .await?;
                self.stats.by_type.entry(t).or_default().exported += 1;
                return Ok(());
            }
            if part > 0 {
                // Parts were sent: void them.
                self.send(Record {
                    part,
                    void: true,
                    ..Record::new(key_bytes.clone(), empty_value(t))
                })
                .await?;
            }
            self.stats.changed += 1;
            let mut pipe = redis::pipe();
            pipe.cmd("EXISTS").arg(&key[..]);
            let exists = self.conn.pipeline(&mut pipe, "reading keys").await?;
            if matches!(exists.first(), Some(Reply::Int(0))) {
                self.stats.vanish(Some(t));
                return Ok(());
            }
        }
        self.stats.fail(
            &key,
            t,
            format!(
                "changed while being read, {WATCHED_READ_ATTEMPTS} times in a row; not archived (run the export again when it is quieter)"
            ),
        );
        Ok(())
    }

    /// WATCH `key` on a connection of this fetcher's own; false when the
    /// connection dropped (the next attempt opens another). A user not
    /// allowed WATCH cannot export big keys consistently: that is an error.
    pub(super) async fn watch(&mut self, key: &[u8]) -> Result<bool> {
        let address = self.conn.dedicated_address(key);
        let mut conn = match self.watchers.get(&address) {
            Some(c) => c.clone(),
            None => {
                let c = self.conn.dedicated(key).await?;
                self.watchers.insert(address.clone(), c.clone());
                c
            }
        };
        let action =
            "watching a big key (WATCH, MULTI, EXEC), so that it is archived as one version";
        match conn
            .query::<Reply>(redis::cmd("WATCH").arg(key), action)
            .await
        {
            Ok(_) => Ok(true),
            Err(e @ Error::NoPermission { .. }) => Err(e),
            Err(_) => {
                self.watchers.remove(&address);
                Ok(false)
            }
        }
    }

    pub(super) async fn unwatch(&mut self, key: &[u8]) {
        if let Some(c) = self.watchers.get_mut(&self.conn.dedicated_address(key)) {
            let _ = c
                .query::<Reply>(&redis::cmd("UNWATCH"), "watching a big key")
                .await;
        }
    }

    /// End the WATCH on `key` with an empty transaction: true when nothing
    /// touched the key since WATCH. A dropped connection counts as touched
    /// (and is opened anew next time).
    pub(super) async fn exec_unchanged(&mut self, key: &[u8]) -> bool {
        let address = self.conn.dedicated_address(key);
        let Some(c) = self.watchers.get_mut(&address) else {
            return false;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("MULTI").cmd("EXEC");
        match c.pipeline(&mut pipe, "watching a big key").await {
            Ok(replies) => matches!(replies.get(1), Some(Reply::Array(_))),
            Err(_) => {
                self.watchers.remove(&address);
                false
            }
        }
    }
}
