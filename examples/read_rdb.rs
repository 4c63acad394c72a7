//! An RDB file as the records an export would archive, one JSON line each,
//! on stdout; counts on stderr. For looking into a file, and as the
//! reader's benchmark (`read_rdb dump.rdb | zstd -T0`, beside
//! `redis-cli --rdb - | zstd -T0`).
//!
//!     read_rdb FILE [CHUNK_BYTES]    ("-" reads stdin)

use std::io::{BufRead, BufReader, BufWriter, Write};

use redis_archive::rdb::{RdbItem, RdbOptions, RdbReader};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: read_rdb FILE|- [CHUNK_BYTES]");
    let chunk: usize = args
        .next()
        .map_or(1 << 20, |v| v.parse().expect("CHUNK_BYTES"));
    let result = if path == "-" {
        run(
            BufReader::with_capacity(1 << 20, std::io::stdin().lock()),
            chunk,
        )
    } else {
        let file = std::fs::File::open(&path).expect("open the file");
        run(BufReader::with_capacity(1 << 20, file), chunk)
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn run(input: impl BufRead, chunk: usize) -> Result<(), redis_archive::rdb::RdbError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut reader = RdbReader::new(input, RdbOptions::new(now_ms, chunk))?;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut line = Vec::new();
    let encode = std::env::var_os("READ_RDB_NO_JSON").is_none();
    while let Some(item) = reader.next_item(&mut |_| true)? {
        if let (RdbItem::Record { record, .. }, true) = (item, encode) {
            line.clear();
            record.encode_into(&mut line);
            out.write_all(&line).expect("write");
        }
    }
    out.flush().expect("flush");
    let s = reader.stats();
    eprintln!(
        "RDB version {}: {} keys in {} records, {} expired, {} bytes, checksum {}",
        reader.version(),
        s.keys,
        s.records,
        s.expired_keys,
        s.bytes_read,
        if reader.checksum_verified() {
            "verified"
        } else {
            "not stored"
        }
    );
    Ok(())
}
