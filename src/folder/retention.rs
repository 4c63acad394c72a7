//! Which archives a retention policy keeps: a pure function of the
//! archives, the policy and `now`, returning every decision with its reasons.
//!
//! The rules mean what restic's `forget` rules mean. They are combined with
//! OR, and an archive counts toward every rule it matches. Going from the
//! newest archive to the oldest, `--keep-daily 7` keeps the newest archive
//! of each of the 7 most recent days that have one (days without archives
//! do not count), and likewise for hours, ISO weeks, months and years, in
//! the given timezone. `--keep-last N` keeps the N newest, `--keep-within D`
//! everything within D of the newest archive, `--keep-tag T` everything
//! tagged T. Beyond restic, `--keep-min N` always keeps the N newest, and
//! the newest archive is never removed. Archives dated in the future (a
//! clock gone wrong) are kept and do not move the other rules' windows.

use chrono::{DateTime, Datelike, FixedOffset, Local, Offset, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The timezone calendar periods are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// Coordinated universal time.
    #[default]
    Utc,
    /// The machine's local time, with its daylight saving changes.
    Local,
    /// A fixed offset from UTC, with no daylight saving.
    Fixed(FixedOffset),
}

impl Zone {
    /// `UTC`, `local`, or an offset such as `+02:00` / `-0500`.
    pub fn parse(text: &str) -> Result<Zone> {
        match text.to_ascii_lowercase().as_str() {
            "utc" | "z" => return Ok(Zone::Utc),
            "local" => return Ok(Zone::Local),
            _ => {}
        }
        let bad = || {
            Error::InvalidArgument(format!(
                "unknown --timezone {text:?}; use UTC, local, or an offset like +02:00"
            ))
        };
        let (sign, rest) = match text.as_bytes().first() {
            Some(b'+') => (1, &text[1..]),
            Some(b'-') => (-1, &text[1..]),
            _ => return Err(bad()),
        };
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
        let minutes: i32 = digits[2..].parse().map_err(|_| bad())?;
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
            .map(Zone::Fixed)
            .ok_or_else(bad)
    }

    fn offset(self, t: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Utc => Utc.fix(),
            Zone::Local => Local.offset_from_utc_datetime(&t.naive_utc()).fix(),
            Zone::Fixed(o) => o,
        }
    }
}

/// Which archives of a folder to keep; an archive is kept when any rule
/// keeps it, and an empty policy keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Keep the newest N archives.
    pub last: u32,
    /// Keep the newest archive of each of the last N hours that have one.
    pub hourly: u32,
    /// Keep the newest archive of each of the last N days that have one.
    pub daily: u32,
    /// Keep the newest archive of each of the last N ISO weeks that have one.
    pub weekly: u32,
    /// Keep the newest archive of each of the last N months that have one.
    pub monthly: u32,
    /// Keep the newest archive of each of the last N years that have one.
    pub yearly: u32,
    /// Keep everything created within this long of the newest archive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_secs"
    )]
    pub within: Option<chrono::Duration>,
    /// Keep every archive that has one of these tags.
    pub tags: Vec<String>,
    /// Always keep at least this many of the newest archives.
    pub min: u32,
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<chrono::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_i64(d.num_seconds()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<chrono::Duration>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(chrono::Duration::seconds))
    }
}

impl Policy {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
            && self.min == 0
    }
}

/// What retention needs to know of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) tags: Vec<String>,
    /// Kept whatever the policy, for this reason (e.g. the latest rollback
    /// point of a target).
    pub(crate) protected: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub(crate) id: String,
    pub(crate) keep: bool,
    /// Why it is kept (empty when it is removed).
    pub(crate) reasons: Vec<String>,
}

/// A calendar bucket rule.
struct Bucket {
    name: &'static str,
    left: u32,
    last: Option<(i32, u32, u32, u32)>,
    key: fn(DateTime<FixedOffset>) -> (i32, u32, u32, u32),
}

/// Decide for every item; the result is in the items' order.
pub(crate) fn decide(
    items: &[Item],
    policy: &Policy,
    now: DateTime<Utc>,
    zone: Zone,
) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::InvalidArgument(
            "empty retention policy: give at least one --keep-* option (to delete everything, delete the files)"
                .into(),
        ));
    }
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); items.len()];
    // Newest first; ties broken by id so the result does not depend on input order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[b]
            .created
            .cmp(&items[a].created)
            .then_with(|| items[b].id.cmp(&items[a].id))
    });
    let (future, past): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&i| items[i].created > now);
    for &i in &future {
        reasons[i].push("created in the future (clock skew?): kept".into());
    }
    for (i, item) in items.iter().enumerate() {
        if let Some(why) = &item.protected {
            reasons[i].push(why.clone());
        }
    }
    if let Some(&newest) = past.first() {
        reasons[newest].push("newest archive: never removed".into());
    }

    let mut buckets = [
        Bucket {
            name: "hourly",
            left: policy.hourly,
            last: None,
            key: |t| (t.year(), t.ordinal(), t.hour(), 0),
        },
        Bucket {
            name: "daily",
            left: policy.daily,
            last: None,
            key: |t| (t.year(), t.ordinal(), 0, 0),
        },
        Bucket {
            name: "weekly",
            left: policy.weekly,
            last: None,
            key: |t| (t.iso_week().year(), t.iso_week().week(), 0, 0),
        },
        Bucket {
            name: "monthly",
            left: policy.monthly,
            last: None,
            key: |t| (t.year(), t.month(), 0, 0),
        },
        Bucket {
            name: "yearly",
            left: policy.yearly,
            last: None,
            key: |t| (t.year(), 0, 0, 0),
        },
    ];
    let newest_time = past.first().map(|&i| items[i].created);
    for (rank, &i) in past.iter().enumerate() {
        let item = &items[i];
        let r = &mut reasons[i];
        if (rank as u32) < policy.last {
            r.push(format!("last {}", policy.last));
        }
        if (rank as u32) < policy.min {
            r.push(format!("keep-min {}", policy.min));
        }
        if let (Some(within), Some(newest)) = (policy.within, newest_time)
            && newest - item.created <= within
        {
            r.push(format!("within {} of the newest", format_duration(within)));
        }
        for tag in &policy.tags {
            if item.tags.contains(tag) {
                r.push(format!("tag {tag}"));
            }
        }
        let local = item.created.with_timezone(&zone.offset(item.created));
        for bucket in &mut buckets {
            if bucket.left == 0 {
                continue;
            }
            let key = (bucket.key)(local);
            if bucket.last != Some(key) {
                bucket.last = Some(key);
                bucket.left -= 1;
                r.push(format!("{} {}", bucket.name, describe(bucket.name, local)));
            }
        }
    }
    Ok(items
        .iter()
        .zip(reasons)
        .map(|(item, reasons)| Decision {
            id: item.id.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

fn describe(bucket: &str, t: DateTime<FixedOffset>) -> String {
    match bucket {
        "hourly" => t.format("%Y-%m-%d %H:00").to_string(),
        "daily" => t.format("%Y-%m-%d").to_string(),
        "weekly" => format!("{}-W{:02}", t.iso_week().year(), t.iso_week().week()),
        "monthly" => t.format("%Y-%m").to_string(),
        _ => t.format("%Y").to_string(),
    }
}

fn format_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// Parse `--keep-within`: `30d`, `12h`, `90m`, `2w`, `1y`, or combinations
/// such as `1y6m` are not needed: one number and one unit.
pub fn parse_within(text: &str) -> Result<chrono::Duration> {
    let bad = || {
        Error::InvalidArgument(format!(
            "--keep-within {text:?}: use a number and a unit, e.g. 30d, 12h, 2w"
        ))
    };
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let hours = match unit {
        "h" => n,
        "d" => n * 24,
        "w" => n * 24 * 7,
        "m" => n * 24 * 30,
        "y" => n * 24 * 365,
        _ => return Err(bad()),
    };
    Ok(chrono::Duration::hours(hours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn items(times: &[&str]) -> Vec<Item> {
        times
            .iter()
            .enumerate()
            .map(|(i, s)| Item {
                id: format!("a{i:02}"),
                created: t(s),
                tags: vec![],
                protected: None,
            })
            .collect()
    }

    /// The ids kept.
    fn kept(items: &[Item], policy: &Policy, now: &str) -> Vec<String> {
        decide(items, policy, t(now), Zone::Utc)
            .unwrap()
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect()
    }

    const NOW: &str = "2026-11-21T12:00:00Z";

    /// Two archives a day at 01:00 and 13:00 for 20 days up to 2026-11-20.
    fn twice_daily() -> Vec<Item> {
        let mut times = Vec::new();
        for day in 1..=20 {
            times.push(format!("2026-11-{day:02}T01:00:00Z"));
            times.push(format!("2026-11-{day:02}T13:00:00Z"));
        }
        let refs: Vec<&str> = times.iter().map(String::as_str).collect();
        items(&refs)
    }

    #[test]
    fn each_rule_alone() {
        let all = twice_daily(); // a00 = Nov 1 01:00 ... a39 = Nov 20 13:00
        let p = |f: fn(&mut Policy)| {
            let mut p = Policy::default();
            f(&mut p);
            p
        };
        assert_eq!(kept(&all, &p(|p| p.last = 3), NOW), ["a37", "a38", "a39"]);
        // The newest archive of each of the last 3 days that have archives.
        assert_eq!(kept(&all, &p(|p| p.daily = 3), NOW), ["a35", "a37", "a39"]);
        assert_eq!(kept(&all, &p(|p| p.hourly = 2), NOW), ["a38", "a39"]);
        // ISO weeks: Nov 16 (Mon)-20, Nov 9-15, Nov 2-8.
        assert_eq!(kept(&all, &p(|p| p.weekly = 3), NOW), ["a15", "a29", "a39"]);
        assert_eq!(
            kept(&all, &p(|p| p.monthly = 2), NOW),
            ["a39"],
            "one month has archives"
        );
        assert_eq!(kept(&all, &p(|p| p.yearly = 1), NOW), ["a39"]);
        assert_eq!(
            kept(
                &all,
                &p(|p| p.within = Some(chrono::Duration::hours(24))),
                NOW
            ),
            ["a37", "a38", "a39"],
            "within 24 h of the newest (Nov 20 13:00), not of now"
        );
        assert_eq!(kept(&all, &p(|p| p.min = 2), NOW), ["a38", "a39"]);
    }

    #[test]
    fn rules_combine_with_or_and_give_every_reason() {
        let all = twice_daily();
        let policy = Policy {
            last: 1,
            daily: 2,
            weekly: 2,
            ..Policy::default()
        };
        let decisions = decide(&all, &policy, t(NOW), Zone::Utc).unwrap();
        let newest = &decisions[39];
        assert!(newest.keep);
        for r in [
            "newest archive",
            "last 1",
            "daily 2026-11-20",
            "weekly 2026-W47",
        ] {
            assert!(
                newest.reasons.iter().any(|x| x.starts_with(r)),
                "{r} in {:?}",
                newest.reasons
            );
        }
        let kept: Vec<&str> = decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(kept, ["a29", "a37", "a39"]);
        assert!(decisions[0].reasons.is_empty() && !decisions[0].keep);
    }

    #[test]
    fn gaps_in_the_calendar_do_not_count() {
        // Archives on Nov 1, Nov 5 and Nov 20: "3 daily" keeps all three,
        // because days without archives are not periods of the rule.
        let all = items(&[
            "2026-11-01T10:00:00Z",
            "2026-11-05T10:00:00Z",
            "2026-11-20T10:00:00Z",
        ]);
        let p = Policy {
            daily: 3,
            ..Policy::default()
        };
        assert_eq!(kept(&all, &p, NOW), ["a00", "a01", "a02"]);
    }

    #[test]
    fn ties_keep_one_per_period_whatever_the_input_order() {
        let mut all = items(&[
            "2026-11-20T10:00:00Z",
            "2026-11-20T10:00:00Z",
            "2026-11-19T10:00:00Z",
        ]);
        let p = Policy {
            daily: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&all, &p, NOW), ["a01", "a02"]);
        all.reverse();
        assert_eq!(
            kept(&all, &p, NOW),
            ["a02", "a01"],
            "the same archives, listed in input order"
        );
    }

    #[test]
    fn keep_min_with_within_is_keep_at_least_n_and_30_days() {
        let mut times = Vec::new();
        for day in 0..60 {
            times.push((t("2026-08-01T00:00:00Z") + chrono::Duration::days(day * 2)).to_rfc3339());
        }
        let refs: Vec<&str> = times.iter().map(String::as_str).collect();
        let all = items(&refs); // every other day up to 2026-11-27
        let p = Policy {
            within: Some(chrono::Duration::days(30)),
            min: 5,
            ..Policy::default()
        };
        let kept_recent = kept(&all, &p, "2026-12-01T00:00:00Z");
        assert_eq!(
            kept_recent.len(),
            16,
            "30 days every other day: {kept_recent:?}"
        );
        // Long after the last backup, within still counts from the newest.
        assert_eq!(kept(&all, &p, "2027-06-01T00:00:00Z").len(), 16);
        // keep-min rescues a sparse history.
        let sparse = items(&[
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
        ]);
        assert_eq!(kept(&sparse, &p, NOW), ["a00", "a01", "a02"]);
    }

    #[test]
    fn tags_and_protection_keep() {
        let mut all = items(&[
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z",
        ]);
        all[0].tags = vec!["before-upgrade".into()];
        all[1].protected = Some("latest rollback point of 10.0.0.1:6379/0".into());
        let p = Policy {
            tags: vec!["before-upgrade".into()],
            ..Policy::default()
        };
        let d = decide(&all, &p, t(NOW), Zone::Utc).unwrap();
        assert_eq!(d[0].reasons, ["tag before-upgrade"]);
        assert_eq!(d[1].reasons, ["latest rollback point of 10.0.0.1:6379/0"]);
        assert_eq!(d[2].reasons, ["newest archive: never removed"]);
    }

    #[test]
    fn empty_policy_is_an_error() {
        let err = decide(&twice_daily(), &Policy::default(), t(NOW), Zone::Utc).unwrap_err();
        assert!(err.to_string().contains("empty retention policy"), "{err}");
    }

    #[test]
    fn future_dated_archives_are_kept_and_do_not_shift_windows() {
        let all = items(&[
            "2026-11-19T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "2030-01-01T00:00:00Z",
        ]);
        let p = Policy {
            within: Some(chrono::Duration::hours(12)),
            ..Policy::default()
        };
        let d = decide(&all, &p, t(NOW), Zone::Utc).unwrap();
        assert!(d[2].keep && d[2].reasons[0].starts_with("created in the future"));
        assert!(d[1].keep, "the newest past archive is the window's base");
        assert!(!d[0].keep);
    }

    #[test]
    fn days_follow_the_timezone() {
        // 23:30 UTC on Nov 19 and 00:30 UTC on Nov 20 are one day at -02:00.
        let all = items(&["2026-11-19T23:30:00Z", "2026-11-20T00:30:00Z"]);
        let p = Policy {
            daily: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&all, &p, NOW), ["a00", "a01"]);
        let d = decide(&all, &p, t(NOW), Zone::parse("-02:00").unwrap()).unwrap();
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1);
        assert!(Zone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn within_parses_units() {
        assert_eq!(parse_within("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_within("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_within("2w").unwrap(), chrono::Duration::days(14));
        assert!(parse_within("soon").is_err());
    }
}
