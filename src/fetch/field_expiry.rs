//! Hash fields with their own expiry (Redis 7.4+): read with `HPEXPIRETIME`
//! for the fields of each chunk, and handed to the records the chunk is
//! split into.

use super::*;

impl Fetcher {
    /// Read the expiry of the fields of each hash record (one pipeline),
    /// and drop fields gone since they were read: they expired or were
    /// deleted in between, and the archive must not bring them back.
    pub(super) async fn add_field_expiry(&mut self, records: &mut [&mut Record]) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let mut asked = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if let Value::Hash(fields) = &record.value
                && !fields.is_empty()
            {
                add_field_expiry_read(&mut pipe, &record.key.0, fields);
                asked.push(i);
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let replies = self
            .conn
            .pipeline(&mut pipe, "reading hash field expiry")
            .await?;
        let mut replies = replies.into_iter();
        let now_ms = parse_time(replies.next()).map_err(|e| self.protocol(e))?;
        for (i, reply) in asked.into_iter().zip(replies) {
            let record = &mut records[i];
            let Value::Hash(fields) = &mut record.value else {
                continue;
            };
            match apply_field_expiry(fields, reply, now_ms) {
                Ok(expiry) => record.field_expiry = expiry,
                Err(reason) => {
                    return Err(self.protocol(format!("HPEXPIRETIME: {reason}")));
                }
            }
        }
        Ok(())
    }
}

/// `HPEXPIRETIME key FIELDS n field...` for the fields of one chunk.
pub(super) fn add_field_expiry_read(
    pipe: &mut redis::Pipeline,
    key: &[u8],
    fields: &[(Bytes, Bytes)],
) {
    let c = pipe
        .cmd("HPEXPIRETIME")
        .arg(key)
        .arg("FIELDS")
        .arg(fields.len());
    for (f, _) in fields {
        c.arg(&f.0[..]);
    }
}

/// Apply an HPEXPIRETIME reply (one integer per field: -2 no such field,
/// -1 no expiry, else the time in ms) to the fields it was asked for:
/// fields gone since are dropped, the others' expiry returned.
pub(super) fn apply_field_expiry(
    fields: &mut Vec<(Bytes, Bytes)>,
    reply: Reply,
    now_ms: i64,
) -> std::result::Result<Vec<FieldExpiry>, String> {
    if let Reply::ServerError(e) = &reply {
        return Err(e.to_string());
    }
    let times = array_of(reply);
    if times.len() != fields.len() {
        return Err(format!(
            "{} replies for {} fields",
            times.len(),
            fields.len()
        ));
    }
    let mut expiry = Vec::new();
    let mut keep = times.iter().map(|t| !matches!(t, Reply::Int(-2)));
    fields.retain(|_| keep.next().unwrap_or(true));
    let times = times.into_iter().filter(|t| !matches!(t, Reply::Int(-2)));
    for ((field, _), at) in fields.iter().zip(times) {
        match at {
            Reply::Int(at) if at >= 0 => expiry.push(FieldExpiry {
                field: field.clone(),
                at_ms: at,
                ttl_ms: (at - now_ms).max(1),
            }),
            Reply::Int(-1) => {}
            other => return Err(format!("unexpected reply {other:?}")),
        }
    }
    Ok(expiry)
}

/// Hands each piece of a split hash chunk the expiry of its own fields.
pub(super) struct FieldExpiries {
    all: Vec<FieldExpiry>,
    by_field: Option<HashMap<Vec<u8>, FieldExpiry>>,
}

impl FieldExpiries {
    pub(super) fn new(all: Vec<FieldExpiry>, split: bool) -> Self {
        let by_field = (split && !all.is_empty())
            .then(|| all.iter().map(|e| (e.field.0.clone(), e.clone())).collect());
        FieldExpiries { all, by_field }
    }

    pub(super) fn take_for(&mut self, piece: &Value) -> Vec<FieldExpiry> {
        match (&mut self.by_field, piece) {
            (None, _) => std::mem::take(&mut self.all),
            (Some(map), Value::Hash(fields)) => fields
                .iter()
                .filter_map(|(f, _)| map.remove(&f.0))
                .collect(),
            (Some(_), _) => Vec::new(),
        }
    }
}
