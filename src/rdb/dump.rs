//! `DUMP` payloads read back as records.
//!
//! A payload is a value exactly as an RDB file holds it (its type byte,
//! then its encoded bytes), followed by the RDB version (u16) and a CRC-64
//! of everything before it (both little-endian). So a batch of payloads
//! is laid out as one RDB stream, each value behind its key's name, and
//! read by the ordinary [`RdbReader`]: a value from `DUMP` and one from a
//! file are decoded by the same code, into the same records. The stream
//! ends with a zero checksum, which readers take as "not checked" (as for
//! a server saving with `rdbchecksum no`); each payload's own CRC-64 is
//! checked when it is added instead.

use std::io::Cursor;

use super::error::RdbError;
use super::{RdbOptions, RdbReader, VERSIONS, crc64, types};
use crate::record::KeyType;

/// Bytes after a payload's value: the RDB version and the CRC-64.
const TRAILER: usize = 10;

/// Payloads gathered into one RDB stream; see the module docs.
#[derive(Debug, Default)]
pub struct DumpBatch {
    /// The stream, from its header on (written with the first payload,
    /// whose version it carries).
    stream: Vec<u8>,
    version: Option<u16>,
    keys: usize,
}

impl DumpBatch {
    /// An empty batch.
    pub fn new() -> Self {
        DumpBatch::default()
    }

    /// Keys added so far.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether no key was added.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Add `key` with its `DUMP` payload, and say what type it is. Refused
    /// (and not added) when the payload is damaged, of a format version
    /// this reader does not read or other than the batch's, or of an
    /// unknown value type: such a key is for the caller to read another way.
    pub fn push(&mut self, key: &[u8], payload: &[u8]) -> Result<KeyType, RdbError> {
        let corrupt = |what: &str| RdbError::corrupt(0, format!("DUMP payload: {what}"));
        let Some(value_end) = payload.len().checked_sub(TRAILER).filter(|&n| n > 1) else {
            return Err(corrupt("too short"));
        };
        let (value, trailer) = payload.split_at(value_end);
        let version = u16::from_le_bytes([trailer[0], trailer[1]]);
        let stored = u64::from_le_bytes(trailer[2..].try_into().unwrap_or_default());
        let computed = crc64::crc64(&payload[..payload.len() - 8]);
        if stored != computed {
            return Err(RdbError::Checksum { stored, computed });
        }
        if !VERSIONS.contains(&u32::from(version)) || self.version.is_some_and(|v| v != version) {
            return Err(RdbError::Version(u32::from(version)));
        }
        let type_byte = value[0];
        let key_type = types::key_type(type_byte).ok_or(RdbError::UnknownType {
            type_byte,
            offset: 0,
        })?;
        if self.version.is_none() {
            self.stream = header(version);
            self.version = Some(version);
        }
        self.stream.push(type_byte);
        super::payload::len(&mut self.stream, key.len() as u64);
        self.stream.extend_from_slice(key);
        self.stream.extend_from_slice(&value[1..]);
        self.keys += 1;
        Ok(key_type)
    }

    /// A reader of the batch's records, in the order the keys were added.
    pub fn reader(self, options: RdbOptions) -> Result<RdbReader<Cursor<Vec<u8>>>, RdbError> {
        let mut stream = match self.version {
            Some(_) => self.stream,
            None => header(*VERSIONS.end() as u16),
        };
        stream.push(types::OP_EOF);
        stream.extend_from_slice(&[0; 8]);
        RdbReader::new(Cursor::new(stream), options)
    }
}

/// `REDIS` and the 4-digit format version.
fn header(version: u16) -> Vec<u8> {
    format!("REDIS{version:04}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::{RdbItem, dump_payload};
    use super::*;
    use crate::record::{Bytes, Value};

    fn records(batch: DumpBatch) -> Vec<crate::record::Record> {
        let mut reader = batch.reader(RdbOptions::new(0, 1 << 20)).unwrap();
        let mut out = Vec::new();
        while let Some(item) = reader.next_item(&mut |_| true).unwrap() {
            match item {
                RdbItem::Record { record, .. } => out.push(record),
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn payloads_read_back_as_records_under_their_keys() {
        let mut batch = DumpBatch::new();
        // Names of each length encoding's sizes.
        let names: Vec<Vec<u8>> = [1usize, 63, 64, 16_383, 16_384, 70_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        for (i, name) in names.iter().enumerate() {
            let value = [&[types::STRING, 1][..], &[b'a' + i as u8]].concat();
            let t = batch.push(name, &dump_payload(&value, 10)).unwrap();
            assert_eq!(t, KeyType::String);
        }
        // A set of integers (intset: encoding 2, 2 members: 1 and 300).
        let intset = [2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 44, 1];
        let value = [&[types::SET_INTSET, intset.len() as u8][..], &intset].concat();
        assert_eq!(
            batch.push(b"s", &dump_payload(&value, 10)).unwrap(),
            KeyType::Set
        );
        assert_eq!(batch.len(), names.len() + 1);
        let got = records(batch);
        assert_eq!(got.len(), names.len() + 1);
        for (i, (record, name)) in got.iter().zip(&names).enumerate() {
            assert_eq!(record.key.0, *name);
            assert_eq!(
                record.value,
                Value::String(Bytes(vec![b'a' + i as u8])),
                "{i}"
            );
            assert!(record.expiry.is_none() && !record.more);
        }
        assert_eq!(
            got[names.len()].value,
            Value::Set(vec![Bytes(b"1".to_vec()), Bytes(b"300".to_vec())])
        );
    }

    #[test]
    fn damaged_foreign_and_unknown_payloads_are_refused() {
        let good = dump_payload(b"\x00\x01v", 10);
        let mut batch = DumpBatch::new();
        let mut flipped = good.clone();
        flipped[2] ^= 1;
        assert!(matches!(
            batch.push(b"k", &flipped),
            Err(RdbError::Checksum { .. })
        ));
        assert!(batch.push(b"k", &good[..9]).is_err());
        assert!(matches!(
            batch.push(b"k", &dump_payload(b"\x00\x01v", 80)),
            Err(RdbError::Version(80))
        ));
        assert!(matches!(
            batch.push(b"k", &dump_payload(b"\x63\x01v", 10)),
            Err(RdbError::UnknownType {
                type_byte: 0x63,
                ..
            })
        ));
        assert!(batch.is_empty(), "nothing refused was added");
        batch.push(b"k", &good).unwrap();
        // The batch's version is the first payload's.
        assert!(matches!(
            batch.push(b"j", &dump_payload(b"\x00\x01v", 12)),
            Err(RdbError::Version(12))
        ));
        assert_eq!(records(batch).len(), 1);
    }
}
