//! Loads the deterministic mixed dataset the tests use into a server, for
//! bench/run.sh: `cargo run --release --example load_dataset -- URL KEYS BIG_MEMBERS`.

#[path = "../tests/support/dataset.rs"]
mod dataset;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: load_dataset URL KEYS BIG_MEMBERS");
    let keys: u64 = args.next().map_or(100_000, |v| v.parse().expect("KEYS"));
    let big: u64 = args.next().map_or(0, |v| v.parse().expect("BIG_MEMBERS"));
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let made = dataset::load(&mut conn, keys, big);
    println!("{made}");
}
