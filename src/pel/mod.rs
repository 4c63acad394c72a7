//! Consumers and pending entries lists (PELs) of stream consumer groups:
//! read on export, written back on restore, compared by `compare`.
//!
//! A group's consumers travel in the stream's first record (`meta.groups`).
//! Its pending entries follow all of the stream's entries, a page at a time,
//! in records of their own (`StreamChunk::pending`), so a PEL of millions is
//! never one reply or one record.
//!
//! **Reading.** `XPENDING key group start end count` pages a PEL by id and
//! gives each entry's idle time, which the server computes from its clock as
//! it runs the command. Each page is sent between two clock reads in one
//! pipeline: when both fall in the same millisecond, XPENDING ran in that
//! millisecond and `delivery time = that millisecond - idle` is exact. When
//! they do not, the page is read again, smaller; after [`CLOCK_TRIES`] reads
//! the first clock read is used, within a millisecond.
//!
//! **Writing.** Once the stream's entries are all in and its groups exist
//! (created with their last-delivered id and entries-read, which nothing
//! below changes), consumers are created with `XGROUP CREATECONSUMER` and
//! pending entries with `XCLAIM key group consumer 0 id... TIME ms
//! RETRYCOUNT n FORCE JUSTID`. XCLAIM FORCE skips an id whose message is not
//! in the stream (deleted or trimmed at the source, or, in a merge, an entry
//! the target had passed): its reply lists the ids it claimed, and the
//! restore counts the others.
//!
//! **Merging** into a stream the target has: a group the target lacks is
//! created with its consumers and pending entries; a group it has is left
//! exactly as it is (consumers, pending entries, last-delivered id). The
//! writes are pipelined, so the claims cannot wait for the reply that says
//! whether the group was created: the script that creates it also creates a
//! marker consumer, the claims run only where the marker is, and the
//! marker is removed at the key's last record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod compare;
mod read;
mod write;

pub(crate) use compare::*;
pub(crate) use read::*;
pub(crate) use write::*;

use redis::{Pipeline, Value as Reply};

use crate::connection::Conn;
use crate::error::Result;
use crate::load::{Role, TargetFeatures};
use crate::record::{
    Bytes, ConsumerGroup, GroupPending, PendingEntry, StreamChunk, StreamId, printable,
};
use crate::reply::{array_of, bytes_of, info_fields, parse_time, stream_id_of, u64_of};

/// Reads of one page whose clock reads fell in different milliseconds,
/// before the delivery times are taken within a millisecond.
pub const CLOCK_TRIES: usize = 20;

/// Ids per XCLAIM.
const CLAIM_IDS: usize = 256;

/// The consumer that marks a group a merge created (see the module docs).
const MARKER: &str = "__archive_restore_tmp__";

/// The server's clock, from the node that holds `key`: in a cluster, TIME
/// would go to another node, whose clock and order say nothing of this one.
const TIME_SCRIPT: &str = "return redis.call('TIME')";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(entries: &[(u64, &str, i64, u64)]) -> GroupPending {
        GroupPending {
            group: "g".into(),
            entries: entries
                .iter()
                .map(|&(ms, consumer, at, count)| PendingEntry {
                    id: StreamId { ms, seq: 0 },
                    consumer: consumer.into(),
                    delivery_count: count,
                    delivered_at_ms: at,
                })
                .collect(),
        }
    }

    #[test]
    fn entries_delivered_together_share_one_claim() {
        let r = run(&[
            (1, "a", 10, 1),
            (2, "a", 10, 1),
            (3, "b", 10, 1),
            (4, "a", 10, 2),
        ]);
        let by = claims(&r);
        assert_eq!(by.len(), 3);
        assert_eq!(
            by[&(&Bytes::from("a"), 10, 1)],
            vec![StreamId { ms: 1, seq: 0 }, StreamId { ms: 2, seq: 0 }]
        );
        let mut pipe = redis::pipe();
        let mut roles = Vec::new();
        add_claims(&mut pipe, b"k", &r, &mut roles);
        assert_eq!(roles, vec![Role::Claim(2), Role::Claim(1), Role::Claim(1)]);
    }

    #[test]
    fn claims_not_made_are_counted() {
        let ids = Reply::Array(vec![Reply::BulkString(b"1-0".to_vec())]);
        assert_eq!(not_claimed(3, &ids), 2);
        assert_eq!(not_claimed(3, &Reply::Int(3)), 0);
        assert_eq!(not_claimed(3, &Reply::Int(-1)), 0, "the target's own group");
    }

    fn xpending(items: &[(u64, &str, i64, u64)]) -> Vec<Reply> {
        items
            .iter()
            .map(|&(ms, consumer, idle, count)| {
                Reply::Array(vec![
                    Reply::BulkString(format!("{ms}-0").into_bytes()),
                    Reply::BulkString(consumer.as_bytes().to_vec()),
                    Reply::Int(idle),
                    Reply::Int(count as i64),
                ])
            })
            .collect()
    }

    #[test]
    fn delivery_times_come_from_the_millisecond_xpending_ran_in() {
        let entries = pending_entries(Reply::Array(xpending(&[(1, "a", 250, 3)])), 1_000).unwrap();
        assert_eq!(entries[0].delivered_at_ms, 750);
        assert_eq!(entries[0].delivery_count, 3);

        let mut state = PelCompare::default();
        let mut notes = Vec::new();
        // The target ran XPENDING between 1000 and 1001 ms: 750 or 751.
        let want = run(&[(1, "a", 751, 3), (2, "a", 700, 1), (4, "b", 10, 1)]);
        let got = xpending(&[(1, "a", 250, 3), (2, "a", 250, 1), (3, "x", 5, 1)]);
        compare_run(&mut state, want, got, 1_000, 1_001, &mut notes);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("2-0"), "{notes:?}");
        assert!(notes[1].contains("3-0") && notes[1].contains("only in the target"));
        assert_eq!(
            state.missing,
            vec![(Bytes::from("g"), StreamId { ms: 4, seq: 0 })]
        );
    }
}
