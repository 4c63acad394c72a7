//! The checks of what was read: the header's format and schema version,
//! the parts of split keys, and every entry and count against the manifest.

use super::*;

pub(crate) fn parse_header(name: &str, bytes: &[u8]) -> Result<Header> {
    let not = |reason: String| Error::NotAnArchive {
        path: name.to_string(),
        reason,
    };
    // Look at format and version before the strict parse: a newer version
    // may have fields this program does not know.
    let loose: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| not(format!("header.json does not parse: {e}")))?;
    if loose.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not(format!(
            "header.json does not say format {FORMAT_NAME:?}"
        )));
    }
    let Some(version) = loose.get("schema_version").and_then(|v| v.as_u64()) else {
        return Err(not("header.json has no integer schema_version".into()));
    };
    if version > SCHEMA_VERSION {
        return Err(Error::UnsupportedSchema {
            path: name.to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < OLDEST_SCHEMA_VERSION {
        return Err(not(format!(
            "schema_version {version} is older than any this program reads"
        )));
    }
    serde_json::from_value(loose).map_err(|e| Error::Corrupt {
        path: name.to_string(),
        reason: format!("header.json is malformed: {e}"),
    })
}

pub(crate) fn check_continuity(
    open: &mut Option<OpenKey>,
    record: &Record,
) -> std::result::Result<(), String> {
    let stream = match &record.value {
        crate::record::Value::Stream(chunk) => Some(chunk),
        _ => None,
    };
    let mut pending_seen = false;
    match open.take() {
        Some(o)
            if o.key != record.key.0
                || o.key_type != record.key_type()
                || o.next_part != record.part =>
        {
            return Err(format!(
                "expected part {} of a split {} key, found part {} of another record",
                o.next_part, o.key_type, record.part
            ));
        }
        Some(o) => {
            pending_seen = o.pending_seen;
            if pending_seen && stream.is_some_and(|c| !c.entries.is_empty()) {
                return Err(format!(
                    "part {} of a stream has entries after its pending entries",
                    record.part
                ));
            }
        }
        None if record.part != 0 => {
            return Err(format!(
                "part {} of a key whose first part is missing",
                record.part
            ));
        }
        None => {}
    }
    if record.more {
        *open = Some(OpenKey {
            key: record.key.0.clone(),
            key_type: record.key_type(),
            next_part: record
                .part
                .checked_add(1)
                .ok_or_else(|| "too many parts".to_string())?,
            pending_seen: pending_seen || stream.is_some_and(|c| !c.pending.is_empty()),
        });
    }
    Ok(())
}

pub(crate) fn verify_manifest(
    header: &Header,
    manifest: &Manifest,
    seen: &[SeenEntry],
    counts: &Counts,
    problems: &mut Problems,
) -> Result<()> {
    if manifest.header.schema_version != header.schema_version
        || manifest.header.format != header.format
    {
        problems.report(
            Problem::corrupt("manifest.json and header.json disagree on format or schema_version")
                .at(MANIFEST_ENTRY, None),
        )?;
    }
    for (i, want) in manifest.entries.iter().enumerate() {
        let Some(got) = seen.get(i) else {
            problems.report(Problem::corrupt(format!(
                "missing entry {}: the manifest lists it, the archive does not have it",
                want.name
            )))?;
            continue;
        };
        let EntryInfo {
            name,
            size,
            records,
            sha256,
        } = want;
        let here = |p: Problem| p.at(&got.name, None);
        if name != &got.name {
            problems.report(here(Problem::corrupt(format!(
                "the manifest lists {name} here"
            ))))?;
        }
        if *size != got.size {
            problems.report(here(Problem::corrupt(format!(
                "the entry is {} bytes, the manifest says {size}",
                got.size
            ))))?;
        }
        if *records != got.records {
            problems.report(here(Problem::corrupt(format!(
                "the entry holds {} records, the manifest says {records}",
                got.records
            ))))?;
        }
        if !sha256.eq_ignore_ascii_case(&got.sha256) {
            problems.report(here(Problem::corrupt(
                "sha256 mismatch: the data or the manifest was altered",
            )))?;
        }
    }
    for extra in seen.iter().skip(manifest.entries.len()) {
        problems.report(
            Problem::corrupt("the entry is not listed in the manifest").at(&extra.name, None),
        )?;
    }
    let mut expected = manifest.counts.clone();
    expected.vanished = 0;
    if &expected != counts {
        problems.report(Problem::corrupt(format!(
            "counts differ from the manifest: it says {} keys in {} records, the data has {} keys in {} records",
            manifest.counts.keys, manifest.counts.records, counts.keys, counts.records
        )))?;
    }
    Ok(())
}
