//! Data sets with every type and the awkward cases.

use super::*;

/// Fill a database with every type and the awkward cases: binary and empty
/// keys and values, infinite scores, streams with deleted entries and
/// consumer groups, keys with and without TTLs.
pub fn load_mixed(c: &mut Connection) {
    let bin: &[u8] = &[0xff, 0x00, 0xfe, b'\n', b'"'];
    redis::pipe()
        .cmd("SET")
        .arg("str:plain")
        .arg("hello")
        .cmd("SET")
        .arg("str:empty")
        .arg("")
        .cmd("SET")
        .arg(bin)
        .arg(bin)
        .cmd("SET")
        .arg("")
        .arg("empty key name")
        .cmd("SET")
        .arg("str:int")
        .arg(12345)
        .cmd("SET")
        .arg("str:unicode")
        .arg("héllo wörld ✓")
        .cmd("SET")
        .arg("str:ttl")
        .arg("expiring")
        .arg("PX")
        .arg(600_000)
        .cmd("HSET")
        .arg("hash:1")
        .arg("name")
        .arg("Ann")
        .arg("")
        .arg("empty field")
        .arg(bin)
        .arg("")
        .cmd("PEXPIRE")
        .arg("hash:1")
        .arg(900_000)
        .cmd("RPUSH")
        .arg("list:1")
        .arg("a")
        .arg("")
        .arg(bin)
        .arg("a")
        .cmd("SADD")
        .arg("set:1")
        .arg("x")
        .arg("")
        .arg(bin)
        .cmd("ZADD")
        .arg("zset:1")
        .arg("+inf")
        .arg("top")
        .arg("-inf")
        .arg("bottom")
        .arg(0.1)
        .arg("tenth")
        .arg(-0.0)
        .arg("negzero")
        .arg(1e300)
        .arg("huge")
        .arg("5e-324")
        .arg(bin)
        .cmd("XADD")
        .arg("stream:1")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .cmd("XADD")
        .arg("stream:1")
        .arg("1-2")
        .arg(bin)
        .arg(bin)
        .cmd("XADD")
        .arg("stream:1")
        .arg("5-0")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("d")
        .cmd("XDEL")
        .arg("stream:1")
        .arg("1-2")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:1")
        .arg("readers")
        .arg("1-1")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:1")
        .arg(bin)
        .arg("$")
        .cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:empty")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .cmd("PEXPIRE")
        .arg("stream:1")
        .arg(700_000)
        .query::<()>(c)
        .unwrap();
    // A consumer reads one entry so entries-read is set on the group.
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("readers")
        .arg("alice")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("stream:1")
        .arg(">")
        .query(c)
        .unwrap();
    load_job_queue(c, "stream:jobs");
}

/// A stream used as a job queue: two groups, several consumers (one with a
/// binary name, one without pending entries), entries delivered more than
/// once, one acknowledged, one pending entry whose message was deleted
/// (XDEL leaves it in the PEL), and the last id moved on with XSETID.
pub fn load_job_queue(c: &mut Connection, key: &str) {
    let bin: &[u8] = &[0xff, 0x00, b'c'];
    let mut pipe = redis::pipe();
    for i in 1..=10 {
        pipe.cmd("XADD")
            .arg(key)
            .arg(format!("{i}-0"))
            .arg("job")
            .arg(i);
    }
    let read = |pipe: &mut redis::Pipeline, group: &str, consumer: &[u8], count: usize| {
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(key)
            .arg(">");
    };
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("workers")
        .arg("0");
    pipe.cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("audit")
        .arg("0");
    read(&mut pipe, "workers", b"w1", 3);
    read(&mut pipe, "workers", b"w2", 3);
    read(&mut pipe, "audit", bin, 5);
    // Delivered again, to another consumer: two more deliveries.
    for _ in 0..2 {
        pipe.cmd("XCLAIM")
            .arg(key)
            .arg("workers")
            .arg("w3")
            .arg(0)
            .arg("1-0");
    }
    // Delivered four times, the last a minute ago.
    pipe.cmd("XCLAIM")
        .arg(key)
        .arg("workers")
        .arg("w1")
        .arg(0)
        .arg("2-0")
        .arg("IDLE")
        .arg(60_000)
        .arg("RETRYCOUNT")
        .arg(4);
    pipe.cmd("XACK").arg(key).arg("workers").arg("3-0");
    pipe.cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(key)
        .arg("workers")
        .arg("idle-worker");
    // 6-0 is pending for w2 in workers only.
    pipe.cmd("XDEL").arg(key).arg("6-0");
    pipe.cmd("XSETID").arg(key).arg("100-7");
    let _: Vec<Value> = pipe.query(c).unwrap();
}
