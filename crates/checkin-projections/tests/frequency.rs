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

mod history {
    use checkin_core::record::{CheckIn, Method, RecordBody, Source};
    use checkin_core::sites::SiteRegistry;
    use checkin_core::{ChainHash, ChainHead, EventId, Record};
    use checkin_projections::frequency::{self, Frequency};
    use checkin_projections::runner::{LedgerEntry, Projection};
    use checkin_projections::segments::Segment;
    use checkin_projections::store::{ModelStore, Overlay};
    use chrono::NaiveDate;

    use super::us;

    fn entry(seq: u64, customer: &str, at: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            record: Record {
                recorded_at_us: 0,
                body: RecordBody::CheckIn(CheckIn {
                    event_id: EventId([seq as u8; 16]),
                    customer: customer.into(),
                    site: "a".into(),
                    device: "d".into(),
                    at_us: us(at),
                    utc_offset_s: 8 * 3600,
                    method: Method::Qr,
                    location: None,
                    activity: None,
                    staff: None,
                    attributes: Vec::new(),
                    source: Source::Import,
                }),
            },
        }
    }

    fn ledger() -> Vec<LedgerEntry> {
        vec![
            entry(2, "A", "2026-06-01T09:00:00+08:00"),
            entry(3, "B", "2026-06-01T10:00:00+08:00"),
            entry(4, "A", "2026-06-02T09:00:00+08:00"),
            entry(5, "A", "2026-06-03T09:00:00+08:00"),
            entry(6, "A", "2026-06-04T09:00:00+08:00"),
            entry(7, "C", "2026-06-20T09:00:00+08:00"),
            entry(8, "C", "2026-07-25T09:00:00+08:00"),
            entry(9, "C", "2026-09-01T09:00:00+08:00"),
        ]
    }

    fn project(batch_size: usize) -> (tempfile::TempDir, ModelStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path(), Frequency::NAME).unwrap();
        let projection = Frequency::new(SiteRegistry::default());
        for batch in ledger().chunks(batch_size) {
            let mut model = Overlay::new(&store);
            projection.apply_batch(batch, &mut model).unwrap();
            let head = ChainHead {
                seq: batch.last().unwrap().seq,
                hash: ChainHash::ZERO,
            };
            store.commit(model.into_writes(), head).unwrap();
        }
        (dir, store)
    }

    fn date(month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, month, day).unwrap()
    }

    #[test]
    fn daily_evaluations_record_segment_changes() {
        let (_dir, store) = project(100);

        // Worked out by hand from the default rules, evaluated at the start
        // of each day the latest check-in moves into.
        assert_eq!(
            frequency::segment_history(&store, "A").unwrap(),
            vec![(date(6, 2), Segment::New), (date(6, 20), Segment::AtRisk)]
        );
        assert_eq!(
            frequency::segment_history(&store, "B").unwrap(),
            vec![
                (date(6, 2), Segment::New),
                (date(6, 20), Segment::Occasional),
                (date(7, 25), Segment::AtRisk),
                (date(9, 1), Segment::Dormant),
            ]
        );
        assert_eq!(
            frequency::segment_history(&store, "C").unwrap(),
            vec![(date(7, 25), Segment::AtRisk)]
        );
    }

    #[test]
    fn history_same_for_any_batching() {
        let (_whole, whole) = project(100);
        let (_single, single) = project(1);
        let (_pairs, pairs) = project(2);
        assert_eq!(whole.digest().unwrap(), single.digest().unwrap());
        assert_eq!(whole.digest().unwrap(), pairs.digest().unwrap());
    }
}
