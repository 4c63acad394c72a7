//! A deterministic mixed keyspace, shared by the large round-trip test and
//! the benchmark loader (examples/load_dataset.rs includes this file).
//!
//! Key `i` has type `i % 6` (string, hash, list, set, zset, stream); every
//! fifth key has a TTL; every seventh has non-UTF-8 bytes in its value and
//! every eleventh in its name. Values are small, like sessions and counters.

use redis::Connection;

const TYPES: [&str; 6] = ["string", "hash", "list", "set", "zset", "stream"];

pub fn key_name(i: u64) -> Vec<u8> {
    let mut k = format!("{}:{i}", TYPES[(i % 6) as usize]).into_bytes();
    if i.is_multiple_of(11) {
        k.extend_from_slice(&[0xff, 0xfe, (i % 251) as u8]);
    }
    k
}

fn value(i: u64, j: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-{j}-{}", i.wrapping_mul(2654435761) % 100_000).into_bytes();
    if i.is_multiple_of(7) {
        v.extend_from_slice(&[0x80, 0x00, 0xc3, (j % 256) as u8]);
    }
    v
}

/// Load `keys` mixed keys, plus `big:set` with `big_members` members when
/// it is not zero. Pipelined in batches; returns the number of keys made.
pub fn load(c: &mut Connection, keys: u64, big_members: u64) -> u64 {
    generate(keys, big_members, &mut |pipe| {
        pipe.query::<()>(c).expect("load dataset")
    })
}

/// Build the dataset as pipelines and hand each to `sink` (which runs it,
/// or writes its commands out for `redis-cli --pipe`).
pub fn generate(keys: u64, big_members: u64, sink: &mut dyn FnMut(&redis::Pipeline)) -> u64 {
    let batch = 2_000;
    let mut i = 0;
    while i < keys {
        let mut pipe = redis::pipe();
        for i in i..(i + batch).min(keys) {
            let k = key_name(i);
            match i % 6 {
                0 => {
                    pipe.cmd("SET").arg(&k).arg(value(i, 0)).ignore();
                }
                1 => {
                    pipe.cmd("HSET").arg(&k);
                    for j in 0..4 {
                        pipe.arg(format!("field{j}")).arg(value(i, j));
                    }
                    pipe.ignore();
                }
                2 => {
                    pipe.cmd("RPUSH").arg(&k);
                    for j in 0..4 {
                        pipe.arg(value(i, j));
                    }
                    pipe.ignore();
                }
                3 => {
                    pipe.cmd("SADD").arg(&k);
                    for j in 0..4 {
                        pipe.arg(value(i, j));
                    }
                    pipe.ignore();
                }
                4 => {
                    pipe.cmd("ZADD").arg(&k);
                    for j in 0..4 {
                        pipe.arg((i * 4 + j) as f64 / 8.0).arg(value(i, j));
                    }
                    pipe.ignore();
                }
                _ => {
                    for j in 0..2 {
                        pipe.cmd("XADD")
                            .arg(&k)
                            .arg(format!("{}-{j}", i + 1))
                            .arg("event")
                            .arg(value(i, j))
                            .ignore();
                    }
                }
            }
            if i.is_multiple_of(5) {
                pipe.cmd("PEXPIRE").arg(&k).arg(3_600_000 + i).ignore();
            }
        }
        sink(&pipe);
        i += batch;
    }
    let mut m = 0;
    while m < big_members {
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg("big:set");
        for j in m..(m + 10_000).min(big_members) {
            pipe.arg(format!("member:{j:08}"));
        }
        sink(pipe.ignore());
        m += 10_000;
    }
    keys + u64::from(big_members > 0)
}
