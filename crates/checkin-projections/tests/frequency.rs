//! Customer summaries and segments from hand-built scans, with expected
//! values worked out by hand.

use checkin_core::sites::SiteRegistry;
use checkin_projections::frequency::{Frequency, Scan};
use checkin_projections::segments::{Segment, SegmentRules};
use chrono::{DateTime, NaiveDate};

fn us(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid test time")
        .timestamp_micros()
}

fn scan(at: &str, site: &str, id: u8) -> Scan {
    Scan {
        at_us: us(at),
        event_id: [id; 16],
        site: site.into(),
    }
}

/// Five visits on 2026-06-01, 06-02 and 06-04 (Shanghai dates) at two sites.
fn scans() -> Vec<Scan> {
    vec![
        scan("2026-06-01T09:00:00+08:00", "a", 1),
        // 5 minutes later: the same visit.
        scan("2026-06-01T09:05:00+08:00", "a", 2),
        // 15 minutes after the previous scan: a new visit.
        scan("2026-06-01T09:20:00+08:00", "a", 3),
        scan("2026-06-02T10:00:00+08:00", "a", 4),
        scan("2026-06-04T10:00:00+08:00", "a", 5),
        // Same minute at another site: a visit of its own.
        scan("2026-06-04T10:00:30+08:00", "b", 6),
    ]
}

#[test]
fn summary_counts_visits_days_and_streaks() {
    let summary = Frequency::new(SiteRegistry::default()).summarize(&scans());

    assert_eq!(summary.check_ins, 6);
    assert_eq!(summary.visits, 5);
    assert_eq!(summary.distinct_sites, 2);
    assert_eq!(
        summary.first_visit_us,
        Some(us("2026-06-01T09:00:00+08:00"))
    );
    assert_eq!(summary.last_visit_us, Some(us("2026-06-04T10:00:30+08:00")));
    let june = |day| NaiveDate::from_ymd_opt(2026, 6, day).unwrap();
    assert_eq!(summary.visits_between(june(1), june(1)), 2);
    assert_eq!(summary.visits_between(june(3), june(3)), 0);
    assert_eq!(summary.visits_between(june(1), june(30)), 5);
    // Visit days 1, 2, 4: the longest run is days 1-2, the latest is day 4 alone.
    assert_eq!(summary.longest_streak_days, 2);
    assert_eq!(summary.latest_streak_days, 1);
    // Gaps of 1 and 2 days: the lower median is 1.
    assert_eq!(summary.typical_gap_days, Some(1));
}

#[test]
fn segment_moves_as_time_passes() {
    let summary = Frequency::new(SiteRegistry::default()).summarize(&scans());
    let rules = SegmentRules::default();

    // A day after: 5 visits in 30 days makes the customer active, ahead of new.
    assert_eq!(
        rules.classify(&summary, us("2026-06-05T12:00:00+08:00")),
        Segment::Active
    );
    // Three idle days exceed twice the 1-day typical gap.
    assert_eq!(
        rules.classify(&summary, us("2026-06-07T12:00:00+08:00")),
        Segment::AtRisk
    );
    // 90 idle days make the customer dormant.
    assert_eq!(
        rules.classify(&summary, us("2026-09-03T12:00:00+08:00")),
        Segment::Dormant
    );
}

#[test]
fn new_customer_with_one_visit() {
    let summary = Frequency::new(SiteRegistry::default()).summarize(&scans()[..1]);
    let rules = SegmentRules::default();

    assert_eq!(
        rules.classify(&summary, us("2026-06-10T09:00:00+08:00")),
        Segment::New
    );
    // 29 idle days: not new any more and not yet at risk.
    assert_eq!(
        rules.classify(&summary, us("2026-06-30T09:00:00+08:00")),
        Segment::Occasional
    );
    assert_eq!(
        rules.classify(&summary, us("2026-07-01T09:00:00+08:00")),
        Segment::AtRisk
    );
}

#[test]
fn current_streak_needs_a_visit_today_or_yesterday() {
    let summary = Frequency::new(SiteRegistry::default()).summarize(&scans()[..4]);
    let rules = SegmentRules::default();

    assert_eq!(
        rules.current_streak_days(&summary, us("2026-06-03T08:00:00+08:00")),
        2
    );
    assert_eq!(
        rules.current_streak_days(&summary, us("2026-06-04T08:00:00+08:00")),
        0
    );
}
