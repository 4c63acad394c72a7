//! Module values and module auxiliary data: walked without the module,
//! thanks to the "module 2" format's opcodes, and kept as `DUMP` payloads.
//!
//! After its 64-bit module id (nine 6-bit characters of the type name and a
//! 10-bit encoding version), a module value is a series of opcodes, each
//! followed by what it announces (an integer, a float, a double or a
//! string), ending with opcode 0. A `DUMP` payload of a value is its type
//! byte and its bytes exactly as they are in the RDB, then the RDB version
//! (u16) and a CRC-64 of everything before it (both little-endian), which
//! is what `RESTORE` reads back.

use std::io::BufRead;

use super::crc64;
use super::error::RdbError;
use super::input::Input;

const OPCODE_EOF: u64 = 0;
const OPCODE_SINT: u64 = 1;
const OPCODE_UINT: u64 = 2;
const OPCODE_FLOAT: u64 = 3;
const OPCODE_DOUBLE: u64 = 4;
const OPCODE_STRING: u64 = 5;

/// The characters of module type names (module.c's `ModuleTypeNameCharSet`).
const CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The 9-character type name in a module id (`ReJSON-RL`, `MBbloom--`).
pub(super) fn type_name(module_id: u64) -> String {
    let mut id = module_id >> 10;
    let mut name = [0u8; 9];
    for slot in name.iter_mut().rev() {
        *slot = CHARSET[(id & 63) as usize];
        id >>= 6;
    }
    name.iter().map(|&b| char::from(b)).collect()
}

/// Read past a module value's opcodes, up to and including its end opcode.
pub(super) fn skip_body<R: BufRead>(input: &mut Input<R>) -> Result<(), RdbError> {
    loop {
        let at = input.offset();
        match input.len()? {
            OPCODE_EOF => return Ok(()),
            OPCODE_SINT | OPCODE_UINT => {
                input.len()?;
            }
            OPCODE_FLOAT => input.skip(4)?,
            OPCODE_DOUBLE => input.skip(8)?,
            OPCODE_STRING => input.skip_string()?,
            op => {
                return Err(RdbError::corrupt(
                    at,
                    format!("unknown module value opcode {op}"),
                ));
            }
        }
    }
}

/// Read past a module's auxiliary data (after its opcode).
pub(super) fn skip_aux<R: BufRead>(input: &mut Input<R>) -> Result<(), RdbError> {
    input.len()?; // module id
    let at = input.offset();
    if input.len()? != OPCODE_UINT {
        return Err(RdbError::corrupt(
            at,
            "module aux data without its 'when' field",
        ));
    }
    input.len()?; // when
    skip_body(input)
}

/// A `DUMP` payload: `value` (a type byte and the value's bytes, as the RDB
/// holds them), then `rdb_version` and the CRC-64 of both, little-endian.
/// This is what `DUMP` returns on a server writing that RDB version (for a
/// value it saves the same way: same encodings, same `rdbcompression`).
pub fn dump_payload(value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 10);
    out.extend_from_slice(value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// module.c's moduleTypeEncodeId, to make ids for the tests.
    fn encode(name: &str, encver: u64) -> u64 {
        let mut id = 0u64;
        for c in name.bytes() {
            id = (id << 6) | CHARSET.iter().position(|&x| x == c).unwrap() as u64;
        }
        (id << 10) | encver
    }

    #[test]
    fn type_names_from_ids() {
        for name in [
            "ReJSON-RL",
            "MBbloom--",
            "TSDB-TYPE",
            "vectorset",
            "A________",
        ] {
            assert_eq!(type_name(encode(name, 3)), name);
        }
    }

    #[test]
    fn walks_every_opcode() {
        let mut v = vec![0x02, 0x05, 0x01, 0x80, 0, 0, 1, 0, 0x03];
        v.extend(1.5f32.to_le_bytes());
        v.push(0x04);
        v.extend(2.5f64.to_le_bytes());
        v.extend([0x05, 0x03, b'a', b'b', b'c', 0x05, 0xc0, 7, 0x00, 0xee]);
        let mut input = Input::new(&v[..]);
        skip_body(&mut input).unwrap();
        assert_eq!(
            input.offset() as usize,
            v.len() - 1,
            "stops after the end opcode"
        );
        let e = skip_body(&mut Input::new(&[0x06][..])).unwrap_err();
        assert!(
            e.to_string().contains("unknown module value opcode 6"),
            "{e}"
        );
    }

    #[test]
    fn dump_payloads_equal_real_servers_dump_output() {
        // DUMP k after SET k v, and DUMP n after SET n 12345 (an integer
        // string: INT16 12345 = c1 39 30), on Redis 7.0 (RDB 10), Redis 8.0
        // (RDB 12) and Valkey 8.1 (RDB 11), as redis-cli --no-raw shows them.
        let cases: [(&[u8], u16, &[u8]); 6] = [
            (
                b"\x00\x01v",
                10,
                b"\x00\x01v\n\x00\x91\x08\xce\xb2\x198\x8a\xce",
            ),
            (
                b"\x00\x01v",
                12,
                b"\x00\x01v\x0c\x00Z~\xfar\xe3\x12\x14\x87",
            ),
            (
                b"\x00\x01v",
                11,
                b"\x00\x01v\x0b\x00\xf8\xd7s\xc1\xe4\xa7cG",
            ),
            (
                b"\x00\xc190",
                10,
                b"\x00\xc190\n\x00\x9d\x94\xea'\x93\xfc\x08\xb9",
            ),
            (
                b"\x00\xc190",
                12,
                b"\x00\xc190\x0c\x00V\xe2\xde\xe7i\xd6\x96\xf0",
            ),
            (b"\x00\xc190", 11, b"\x00\xc190\x0b\x00\xf4KWTnc\xe10"),
        ];
        for (value, version, dump) in cases {
            assert_eq!(dump_payload(value, version), dump, "RDB version {version}");
        }
    }
}
