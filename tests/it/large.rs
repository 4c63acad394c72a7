//! The acceptance case: a mixed keyspace of 100,000 keys (all six types,
//! 20% with TTLs, non-UTF-8 names and values) plus a set of 1,000,000
//! members, exported from one server and restored into an empty one,
//! compared key by key. Memory is measured by bench/run.sh, not here.

use crate::support::*;

#[test]
fn hundred_thousand_keys_and_a_million_member_set_round_trip() {
    let src = RedisServer::start();
    let dst = RedisServer::start();
    let made = dataset::load(&mut src.conn(), 100_000, 1_000_000);
    assert_eq!(src.dbsize(0), made);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large.tar.zst");
    let exported = export(&src, &file, &["--json"]).ok().json();
    assert_eq!(exported["keys"], made);
    assert_eq!(exported["vanished"], 0);
    let sets = (0..100_000u64).filter(|i| i % 6 == 3).count() as u64 + 1;
    assert_eq!(exported["by_type"]["set"]["exported"], sets);

    let restored = restore(&dst, &file, &["--json"]).ok().json();
    assert_eq!(restored["written"], made, "{restored}");
    let compared = assert_same_db(&mut src.conn(), &mut dst.conn(), 1000);
    assert_eq!(compared, made);
}
