//! What the servers are filled with: every type in every encoding each
//! uses.

use redis::Connection;

use crate::support::{RedisServer, ServerKind, load_job_queue, load_mixed};

pub const FUNCTION: &str =
    "#!lua name=rdbtest\nredis.register_function('rdbtest_one', function() return 1 end)";

/// A server whose lists have small, compressed nodes and a packed-node
/// threshold of 1 KiB (so big items make "plain" nodes), keeping LRU or
/// LFU data so the file has those opcodes too.
pub fn start(kind: ServerKind) -> RedisServer {
    let policy = match kind {
        ServerKind::Redis70 => "allkeys-lru",
        ServerKind::Redis8 => "noeviction",
        ServerKind::Valkey81 => "allkeys-lfu",
    };
    let server = RedisServer::start_version_with(
        kind,
        &[
            "--enable-debug-command",
            "yes",
            "--list-max-listpack-size",
            "16",
            "--list-compress-depth",
            "1",
            "--maxmemory-policy",
            policy,
        ],
    );
    let _: () = redis::cmd("DEBUG")
        .arg("QUICKLIST-PACKED-THRESHOLD")
        .arg("1K")
        .query(&mut server.conn())
        .unwrap();
    server
}

fn pipe_ok(c: &mut Connection, pipe: &redis::Pipeline) {
    pipe.query::<()>(c).unwrap();
}

/// Every type in every encoding: small (listpack, ziplist, intset) and big
/// (hashtable, skiplist, quicklist) collections, integer and compressible
/// strings, binary names, expiries, streams with groups; hash field expiry
/// on Redis 8; keys in another database; a function library.
pub fn fill(server: &RedisServer, kind: ServerKind) {
    let mut c = server.conn();
    load_mixed(&mut c);
    load_job_queue(&mut c, "stream:queue");
    let mut p = redis::pipe();
    p.cmd("SET").arg("str:neg").arg(-7).ignore();
    p.cmd("SET").arg("str:int32").arg(-2147483648i64).ignore();
    p.cmd("SET").arg("str:int64").arg(1234567890123i64).ignore();
    p.cmd("SET").arg("str:lzf").arg("abc".repeat(500)).ignore();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    p.cmd("SET").arg("str:big-raw").arg(&noise).ignore();
    p.cmd("SET")
        .arg("str:big-lzf")
        .arg("0123456789".repeat(30_000))
        .ignore();
    p.cmd("SET")
        .arg("str:secs")
        .arg("x")
        .arg("EX")
        .arg(86_400)
        .ignore();
    p.cmd("RPUSH")
        .arg("list:ints")
        .arg(1)
        .arg(-2)
        .arg(300)
        .arg(70000)
        .arg(1i64 << 40)
        .ignore();
    // Longer than a node (16 items), with an item over the packed-node
    // threshold: a quicklist with a "plain" node on every server.
    let mut plain = redis::cmd("RPUSH");
    plain.arg("list:plain-node");
    for i in 0..40 {
        plain.arg(if i == 20 {
            "p".repeat(5000)
        } else {
            format!("small-{i}")
        });
    }
    p.add_command(plain).ignore();
    let mut big = redis::cmd("RPUSH");
    big.arg("list:big");
    for i in 0..3000 {
        big.arg(format!("item-{i:06}-padding-padding"));
    }
    p.add_command(big).ignore();
    p.cmd("SADD")
        .arg("set:intset")
        .arg(-5)
        .arg(1)
        .arg(70000)
        .arg(1i64 << 40)
        .ignore();
    p.cmd("SADD")
        .arg("set:small")
        .arg("a")
        .arg("b")
        .arg(3)
        .ignore();
    let mut big = redis::cmd("SADD");
    big.arg("set:big-ints");
    for i in 0..1000 {
        big.arg(i * 7);
    }
    p.add_command(big).ignore();
    let mut big = redis::cmd("SADD");
    big.arg("set:big");
    for i in 0..2000 {
        big.arg(format!("member-{i}"));
    }
    p.add_command(big).ignore();
    p.cmd("ZADD")
        .arg("zset:small")
        .arg(1.5)
        .arg("a")
        .arg(2)
        .arg("b")
        .arg("-inf")
        .arg("c")
        .ignore();
    let mut big = redis::cmd("ZADD");
    big.arg("zset:big");
    for i in 0..2000 {
        big.arg(f64::from(i) / 3.0).arg(format!("m{i}"));
    }
    big.arg("+inf").arg("top").arg(-1e300).arg("low");
    p.add_command(big).ignore();
    p.cmd("HSET")
        .arg("hash:small")
        .arg("f")
        .arg("v")
        .arg("n")
        .arg(42)
        .ignore();
    p.cmd("HSET")
        .arg("hash:long-value")
        .arg("f")
        .arg("v".repeat(100))
        .ignore();
    let mut big = redis::cmd("HSET");
    big.arg("hash:big");
    for i in 0..2000 {
        big.arg(format!("field-{i}")).arg(i);
    }
    p.add_command(big).ignore();
    let mut huge = redis::cmd("HSET");
    huge.arg("hash:huge");
    for i in 0..50_000 {
        huge.arg(format!("f{i}")).arg(format!("value-{i}"));
    }
    p.add_command(huge).ignore();
    for i in 0..3000 {
        p.cmd("XADD")
            .arg("stream:big")
            .arg(format!("{}-{}", 1000 + i / 3, i % 3));
        if i % 10 == 0 {
            p.arg("other").arg(i);
        } else {
            p.arg("n").arg(i).arg("sq").arg(i * i);
        }
        p.ignore();
    }
    p.cmd("XDEL")
        .arg("stream:big")
        .arg("1000-1")
        .arg("1500-2")
        .ignore();
    p.cmd("XSETID").arg("stream:big").arg("99999-0").ignore();
    p.cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:big")
        .arg("g1")
        .arg("0")
        .ignore();
    p.cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:big")
        .arg("g2")
        .arg("1200-0")
        .ignore();
    p.cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("stream:big")
        .arg("g2")
        .arg("idle")
        .ignore();
    pipe_ok(&mut c, &p);
    // Deliveries: c1 and c2 read from g1, c3 from g2; some are claimed
    // again (counts and times set), some acknowledged, one deleted.
    for (group, consumer, count) in [("g1", "c1", 40), ("g1", "c2", 25), ("g2", "c3", 10)] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg("stream:big")
            .arg(">")
            .query(&mut c)
            .unwrap();
    }
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("stream:big")
        .arg("g1")
        .arg("c2")
        .arg(0)
        .arg("1000-0")
        .arg("1002-1")
        .arg("TIME")
        .arg(1_700_000_000_123i64)
        .arg("RETRYCOUNT")
        .arg(9)
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("XACK")
        .arg("stream:big")
        .arg("g1")
        .arg("1001-0")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("XDEL")
        .arg("stream:big")
        .arg("1003-0")
        .query(&mut c)
        .unwrap();
    if kind == ServerKind::Redis8 {
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg("hfe:small")
            .arg("a")
            .arg(1)
            .arg("b")
            .arg(2)
            .arg("c")
            .arg(3)
            .ignore();
        p.cmd("HPEXPIRE")
            .arg("hfe:small")
            .arg(3_600_000)
            .arg("FIELDS")
            .arg(2)
            .arg("a")
            .arg("c")
            .ignore();
        p.cmd("HSET")
            .arg("hfe:all")
            .arg("x")
            .arg(1)
            .arg("y")
            .arg(2)
            .ignore();
        p.cmd("HPEXPIRE")
            .arg("hfe:all")
            .arg(7_200_000)
            .arg("FIELDS")
            .arg(2)
            .arg("x")
            .arg("y")
            .ignore();
        let mut big = redis::cmd("HSET");
        big.arg("hfe:big");
        for i in 0..1000 {
            big.arg(format!("f{i}")).arg(i);
        }
        p.add_command(big).ignore();
        for i in (0..1000).step_by(7) {
            p.cmd("HPEXPIRE")
                .arg("hfe:big")
                .arg(3_600_000 + i)
                .arg("FIELDS")
                .arg(1)
                .arg(format!("f{i}"))
                .ignore();
        }
        // Vector sets: Redis 8's built-in module type, kept as DUMP payloads.
        p.cmd("VADD")
            .arg("vset:small")
            .arg("VALUES")
            .arg(3)
            .arg(0.1)
            .arg(0.2)
            .arg(0.3)
            .arg("a")
            .ignore();
        p.cmd("VADD")
            .arg("vset:small")
            .arg("VALUES")
            .arg(3)
            .arg(-1)
            .arg(0)
            .arg(2.5)
            .arg("b")
            .arg("SETATTR")
            .arg(r#"{"year":1999}"#)
            .ignore();
        p.cmd("PEXPIRE").arg("vset:small").arg(3_600_000).ignore();
        for i in 0..300 {
            let x = f64::from(i);
            p.cmd("VADD").arg("vset:big").arg("VALUES").arg(4);
            p.arg(x.sin())
                .arg(x.cos())
                .arg(x / 300.0)
                .arg(1.0)
                .arg(format!("e{i}"))
                .ignore();
        }
        pipe_ok(&mut c, &p);
    }
    let mut c2 = server.conn_db(2);
    let _: () = redis::cmd("SET")
        .arg("db2:k")
        .arg("in db 2")
        .query(&mut c2)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("db2:l")
        .arg("a")
        .arg("b")
        .query(&mut c2)
        .unwrap();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(FUNCTION)
        .query(&mut c)
        .unwrap();
}
