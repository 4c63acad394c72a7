//! The deterministic mixed dataset the tests use, for bench/run.sh:
//!
//! - `load_dataset URL KEYS BIG_MEMBERS` loads it into a server;
//! - `load_dataset --resp KEYS BIG_MEMBERS > file` writes it as raw Redis
//!   protocol, for the `redis-cli --pipe` reference.

use std::io::Write;

#[path = "../tests/it/support/dataset.rs"]
mod dataset;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .expect("usage: load_dataset URL|--resp KEYS BIG_MEMBERS");
    let keys: u64 = args.next().map_or(100_000, |v| v.parse().expect("KEYS"));
    let big: u64 = args.next().map_or(0, |v| v.parse().expect("BIG_MEMBERS"));
    if target == "--resp" {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        dataset::generate(keys, big, &mut |pipe| {
            out.write_all(&pipe.get_packed_pipeline()).expect("write");
        });
        out.flush().expect("flush");
        return;
    }
    let mut conn = redis::Client::open(target.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let made = dataset::load(&mut conn, keys, big);
    println!("{made}");
}
