//! Spec projections against tables worked out by hand: visits with repeat
//! scans inside and outside the 10-minute window, late records, voids, a
//! 05:00 day start, ISO weeks and months across the 2026/2027 boundary, and
//! hour buckets. Every batching gives the same bytes.

use checkin_core::record::{CheckIn, Method, RecordBody, Source, Void};
use checkin_core::sites::{Site, SiteRegistry};
use checkin_core::{ChainHash, ChainHead, EventId, Record};
use checkin_projections::runner::{LedgerEntry, Projection};
use checkin_projections::spec::{self, SpecProjection, SpecRow};
use checkin_projections::store::{ModelStore, Overlay};
use chrono::DateTime;

/// Jing'an uses midnight as its day start; Xuhui's business day starts at 05:00.
fn registry() -> SiteRegistry {
    let mut sites = SiteRegistry::default();
    sites.sites.insert("sh-jingan".into(), Site::default());
    sites.sites.insert(
        "sh-xuhui".into(),
        Site {
            day_start_hour: 5,
            ..Site::default()
        },
    );
    sites
}

/// One ledger step: a check-in (id, customer, site, Shanghai local time,
/// method, activity) or a void of an earlier id.
enum Step {
    CheckIn(
        u8,
        &'static str,
        &'static str,
        &'static str,
        Method,
        Option<&'static str>,
    ),
    Void(u8),
}

fn scan(id: u8, customer: &'static str, site: &'static str, local: &'static str) -> Step {
    Step::CheckIn(id, customer, site, local, Method::Qr, None)
}

fn event_id(id: u8) -> EventId {
    EventId([id; 16])
}

fn ledger(steps: &[Step]) -> Vec<LedgerEntry> {
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let seq = index as u64 + 2;
            let body = match step {
                Step::CheckIn(id, customer, site, local, method, activity) => {
                    let at = DateTime::parse_from_rfc3339(&format!("{local}+08:00"))
                        .expect("test time parses");
                    RecordBody::CheckIn(CheckIn {
                        event_id: event_id(*id),
                        customer: (*customer).into(),
                        site: (*site).into(),
                        device: "d".into(),
                        at_us: at.timestamp_micros(),
                        utc_offset_s: 8 * 3600,
                        method: *method,
                        location: None,
                        activity: activity.map(String::from),
                        staff: None,
                        attributes: Vec::new(),
                        source: Source::Live,
                    })
                }
                Step::Void(target) => RecordBody::Void(Void {
                    event_id: EventId([0xff - target; 16]),
                    target: event_id(*target),
                    reason: "test".into(),
                    requested_by: "qa".into(),
                }),
            };
            LedgerEntry {
                seq,
                record: Record {
                    recorded_at_us: 0,
                    body,
                },
            }
        })
        .collect()
}

/// Folds the ledger in batches of `batch_size` into a fresh store.
fn project(
    dir: &tempfile::TempDir,
    spec_text: &str,
    entries: &[LedgerEntry],
    batch_size: usize,
) -> ModelStore {
    let spec = spec::parse(spec_text).expect("test spec is valid");
    let projection = SpecProjection::new(spec, registry(), 600);
    let path = dir.path().join(format!("batch-{batch_size}"));
    let store = ModelStore::open(&path, projection.name()).expect("store opens");
    for batch in entries.chunks(batch_size) {
        let mut model = Overlay::new(&store);
        projection
            .apply_batch(batch, &mut model)
            .expect("fold succeeds");
        let head = ChainHead {
            seq: batch.last().expect("chunks are not empty").seq,
            hash: ChainHash::ZERO,
        };
        store
            .commit(model.into_writes(), head)
            .expect("commit succeeds");
    }
    store
}

/// Turns rows into (group values, measure values) for compact tables.
fn table(rows: &[SpecRow]) -> Vec<(Vec<&str>, Vec<u64>)> {
    rows.iter()
        .map(|row| {
            let group = row.group.iter().map(|(_, value)| value.as_str()).collect();
            let measures = row.measures.iter().map(|(_, value)| *value).collect();
            (group, measures)
        })
        .collect()
}

const SITE_DAY_SPEC: &str = r#"
name = "site_days"
[group]
by = ["site", "local_day"]
[measures]
include = ["check_ins", "visits", "unique_customers"]
"#;

/// Jing'an 2026-05-01:
/// - c1 scans 09:00, 09:05 (same visit), 09:20 (15 min after 09:05: new visit): 3 check-ins, 2 visits.
/// - c2 scans 10:00, then a late record at 09:55 takes over the visit start: 2 check-ins, 1 visit.
/// - c3 scans 11:00, 11:08, 11:16 (one visit), then 11:08 is voided and
///   11:16 is 16 min after 11:00: 2 check-ins, 2 visits.
///
/// Xuhui (day starts 05:00):
/// - c1 at 05-02 03:00 counts on 05-01, at 05-02 06:00 on 05-02.
/// - c4 at 05-02 04:59 (business date 05-01) is voided.
/// - c5 scans 05-02 04:58 and 05:03: one visit on 05-01, one check-in on each date.
fn site_day_steps() -> Vec<Step> {
    vec![
        scan(1, "c1", "sh-jingan", "2026-05-01T09:00:00"),
        scan(2, "c1", "sh-jingan", "2026-05-01T09:05:00"),
        scan(3, "c1", "sh-jingan", "2026-05-01T09:20:00"),
        scan(4, "c2", "sh-jingan", "2026-05-01T10:00:00"),
        scan(5, "c1", "sh-xuhui", "2026-05-02T03:00:00"),
        scan(6, "c1", "sh-xuhui", "2026-05-02T06:00:00"),
        scan(7, "c2", "sh-jingan", "2026-05-01T09:55:00"),
        scan(8, "c3", "sh-jingan", "2026-05-01T11:00:00"),
        scan(9, "c3", "sh-jingan", "2026-05-01T11:08:00"),
        scan(10, "c3", "sh-jingan", "2026-05-01T11:16:00"),
        Step::Void(9),
        scan(11, "c4", "sh-xuhui", "2026-05-02T04:59:00"),
        Step::Void(11),
        scan(13, "c5", "sh-xuhui", "2026-05-02T04:58:00"),
        scan(14, "c5", "sh-xuhui", "2026-05-02T05:03:00"),
    ]
}

#[test]
fn site_days_match_hand_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, SITE_DAY_SPEC, &ledger(&site_day_steps()), 1);
    let rows = spec::rows(&store).unwrap();

    assert_eq!(
        table(&rows),
        vec![
            (vec!["sh-jingan", "2026-05-01"], vec![7, 5, 3]),
            (vec!["sh-xuhui", "2026-05-01"], vec![2, 2, 2]),
            (vec!["sh-xuhui", "2026-05-02"], vec![2, 1, 2]),
        ]
    );
    assert_eq!(
        rows[0].group,
        vec![
            ("site".to_string(), "sh-jingan".to_string()),
            ("local_day".to_string(), "2026-05-01".to_string()),
        ]
    );
    let measure_names: Vec<&str> = rows[0]
        .measures
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(measure_names, ["check_ins", "visits", "unique_customers"]);
}

#[test]
fn rows_before_void_count_target() {
    let steps = site_day_steps();
    // Up to and including c3's three scans, before any void.
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, SITE_DAY_SPEC, &ledger(&steps[..10]), 1);

    assert_eq!(
        table(&spec::rows(&store).unwrap()),
        vec![
            (vec!["sh-jingan", "2026-05-01"], vec![8, 4, 3]),
            (vec!["sh-xuhui", "2026-05-01"], vec![1, 1, 1]),
            (vec!["sh-xuhui", "2026-05-02"], vec![1, 1, 1]),
        ]
    );
}

#[test]
fn any_batching_gives_same_bytes() {
    let entries = ledger(&site_day_steps());
    let dir = tempfile::tempdir().unwrap();
    let one_by_one = project(&dir, SITE_DAY_SPEC, &entries, 1).digest().unwrap();
    for batch_size in [2, 3, 7, 100] {
        let digest = project(&dir, SITE_DAY_SPEC, &entries, batch_size)
            .digest()
            .unwrap();
        assert_eq!(digest, one_by_one, "batch size {batch_size}");
    }
}

#[test]
fn rows_for_kept_customers() {
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, SITE_DAY_SPEC, &ledger(&site_day_steps()), 4);
    let rows =
        spec::rows_for_customers(&store, |customer| customer == "c1" || customer == "c2").unwrap();

    // c1 (3 check-ins, 2 visits) and c2 (2, 1) at Jing'an; c1 alone at Xuhui.
    assert_eq!(
        table(&rows),
        vec![
            (vec!["sh-jingan", "2026-05-01"], vec![5, 3, 2]),
            (vec!["sh-xuhui", "2026-05-01"], vec![1, 1, 1]),
            (vec!["sh-xuhui", "2026-05-02"], vec![1, 1, 1]),
        ]
    );
}

#[test]
fn stored_spec_names_columns() {
    let text = r#"
name = "vip_days"
description = "VIP visits"
[filter]
segments = ["vip"]
[group]
by = ["local_day"]
[measures]
include = ["visits"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, text, &ledger(&site_day_steps()), 5);
    let stored = spec::stored_spec(&store).unwrap().expect("spec is stored");

    assert_eq!(stored.version, 1);
    assert_eq!(stored.name, "vip_days");
    assert_eq!(stored.description, "VIP visits");
    assert_eq!(stored.group_by, ["local_day"]);
    assert_eq!(stored.measures, ["visits"]);
    assert_eq!(stored.segments, ["vip"]);
}

/// ISO week 2026-W53 runs from Monday 2026-12-28 to Sunday 2027-01-03.
#[test]
fn weeks_and_months_cross_year() {
    let text = r#"
name = "weeks"
[filter]
sites = ["sh-jingan"]
methods = ["qr"]
[group]
by = ["iso_week", "month"]
[measures]
include = ["check_ins", "visits"]
"#;
    let steps = vec![
        scan(1, "c1", "sh-jingan", "2026-12-28T10:00:00"),
        scan(2, "c1", "sh-jingan", "2026-12-31T23:30:00"),
        // 35 minutes after the previous scan: a new visit, in January.
        scan(3, "c1", "sh-jingan", "2027-01-01T00:05:00"),
        scan(4, "c2", "sh-jingan", "2027-01-03T12:00:00"),
        scan(5, "c2", "sh-jingan", "2027-01-04T09:00:00"),
        // Filtered out: another method, another site.
        Step::CheckIn(
            6,
            "c3",
            "sh-jingan",
            "2027-01-04T09:00:00",
            Method::Nfc,
            None,
        ),
        scan(7, "c3", "sh-xuhui", "2027-01-04T09:00:00"),
        // One visit across midnight: it counts in December, the second check-in in January.
        scan(8, "c4", "sh-jingan", "2026-12-31T23:58:00"),
        scan(9, "c4", "sh-jingan", "2027-01-01T00:03:00"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, text, &ledger(&steps), 2);

    assert_eq!(
        table(&spec::rows(&store).unwrap()),
        vec![
            (vec!["2026-W53", "2026-12"], vec![3, 3]),
            (vec!["2026-W53", "2027-01"], vec![3, 2]),
            (vec!["2027-W01", "2027-01"], vec![1, 1]),
        ]
    );
}

#[test]
fn hours_with_activity_and_range() {
    let text = r#"
name = "gym_hours"
[filter]
activities = ["gym"]
from = "2026-05-01T08:00:00+08:00"
to = "2026-05-01"
[group]
by = ["hour"]
[measures]
include = ["check_ins", "unique_customers"]
"#;
    let gym = Some("gym");
    let steps = vec![
        // Before the first instant.
        Step::CheckIn(1, "c1", "sh-jingan", "2026-05-01T07:59:59", Method::Qr, gym),
        Step::CheckIn(2, "c1", "sh-jingan", "2026-05-01T08:00:00", Method::Qr, gym),
        Step::CheckIn(
            3,
            "c2",
            "sh-jingan",
            "2026-05-01T08:59:59",
            Method::Nfc,
            gym,
        ),
        Step::CheckIn(4, "c1", "sh-jingan", "2026-05-01T09:10:00", Method::Qr, gym),
        // Another activity, and none.
        Step::CheckIn(
            5,
            "c1",
            "sh-jingan",
            "2026-05-01T09:30:00",
            Method::Qr,
            Some("pool"),
        ),
        Step::CheckIn(
            6,
            "c2",
            "sh-jingan",
            "2026-05-01T09:40:00",
            Method::Qr,
            None,
        ),
        // After the last business date.
        Step::CheckIn(7, "c3", "sh-jingan", "2026-05-02T07:00:00", Method::Qr, gym),
        Step::CheckIn(8, "c3", "sh-jingan", "2026-05-01T23:59:00", Method::Qr, gym),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, text, &ledger(&steps), 3);

    assert_eq!(
        table(&spec::rows(&store).unwrap()),
        vec![
            (vec!["08"], vec![2, 2]),
            (vec!["09"], vec![1, 1]),
            (vec!["23"], vec![1, 1]),
        ]
    );
}

#[test]
fn missing_activity_groups_as_empty() {
    let text = r#"
name = "activities"
[group]
by = ["activity", "customer"]
[measures]
include = ["check_ins"]
"#;
    let steps = vec![
        Step::CheckIn(
            1,
            "c1",
            "sh-jingan",
            "2026-05-01T08:00:00",
            Method::Qr,
            Some("gym"),
        ),
        Step::CheckIn(
            2,
            "c2",
            "sh-jingan",
            "2026-05-01T08:00:00",
            Method::Qr,
            None,
        ),
        Step::CheckIn(
            3,
            "c1",
            "sh-jingan",
            "2026-05-01T09:00:00",
            Method::Qr,
            None,
        ),
        Step::CheckIn(
            4,
            "c1",
            "sh-jingan",
            "2026-05-01T10:00:00",
            Method::Qr,
            Some("gym"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = project(&dir, text, &ledger(&steps), 1);

    assert_eq!(
        table(&spec::rows(&store).unwrap()),
        vec![
            (vec!["", "c1"], vec![1]),
            (vec!["", "c2"], vec![1]),
            (vec!["gym", "c1"], vec![2]),
        ]
    );
}

#[test]
fn empty_model_has_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path(), "spec_empty").unwrap();
    assert!(spec::rows(&store).unwrap().is_empty());
    assert!(spec::stored_spec(&store).unwrap().is_none());
}

#[test]
fn shipped_example_parses() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/spec-weekly.toml");
    let text = std::fs::read_to_string(&path).expect("example exists");
    let spec = spec::parse(&text).expect("example is valid");
    assert_eq!(spec.model_name(), "spec_gym_weekly");
}

mod reference {
    //! Property test: `site` × `local_day` rows equal a plain in-memory count
    //! on random ledgers with repeat scans, late records and voids.

    use std::collections::{BTreeMap, BTreeSet};

    use chrono::{Duration, NaiveDate};
    use proptest::prelude::*;

    use super::*;

    const SITES: [(&str, i64); 2] = [("sh-jingan", 0), ("sh-xuhui", 5)];
    /// 2026-05-01T00:00:00+08:00; scans fall in the following three days.
    const START_S: i64 = 1_777_564_800;

    #[derive(Clone, Debug)]
    enum RandomStep {
        /// Customer, site index, minute after the start.
        CheckIn(u8, usize, i64),
        /// Index into the check-ins so far.
        Void(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<RandomStep>> {
        let spread = (0u8..3, 0usize..2, 0i64..(3 * 1440))
            .prop_map(|(customer, site, minute)| RandomStep::CheckIn(customer, site, minute));
        // Close together around Xuhui's 05:00 day start, inside and outside the window.
        let close = (0u8..2, 0usize..2, 1440 + 270i64..1440 + 330)
            .prop_map(|(customer, site, minute)| RandomStep::CheckIn(customer, site, minute));
        let void = (0usize..30).prop_map(RandomStep::Void);
        proptest::collection::vec(prop_oneof![3 => spread, 3 => close, 1 => void], 1..40)
    }

    /// A check-in of the plain count: customer, site index, time in seconds, ledger sequence.
    type Live = (String, usize, i64, u64);

    /// Returns the ledger and the check-ins left after voids.
    fn build(steps: &[RandomStep]) -> (Vec<LedgerEntry>, Vec<Live>) {
        let mut entries = Vec::new();
        let mut check_ins: Vec<Live> = Vec::new();
        let mut voided = BTreeSet::new();
        for (index, step) in steps.iter().enumerate() {
            let seq = index as u64 + 2;
            let body = match step {
                RandomStep::CheckIn(customer, site, minute) => {
                    let customer = format!("c{customer}");
                    let at_s = START_S + minute * 60;
                    check_ins.push((customer.clone(), *site, at_s, seq));
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&seq.to_be_bytes());
                    RecordBody::CheckIn(CheckIn {
                        event_id: EventId(id),
                        customer,
                        site: SITES[*site].0.into(),
                        device: "d".into(),
                        at_us: at_s * 1_000_000,
                        utc_offset_s: 8 * 3600,
                        method: Method::Qr,
                        location: None,
                        activity: None,
                        staff: None,
                        attributes: Vec::new(),
                        source: Source::Import,
                    })
                }
                RandomStep::Void(target) => {
                    if check_ins.is_empty() {
                        continue;
                    }
                    let target = target % check_ins.len();
                    voided.insert(target);
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&check_ins[target].3.to_be_bytes());
                    RecordBody::Void(Void {
                        event_id: EventId([0xff; 16]),
                        target: EventId(id),
                        reason: "test".into(),
                        requested_by: "qa".into(),
                    })
                }
            };
            entries.push(LedgerEntry {
                seq,
                record: Record {
                    recorded_at_us: 0,
                    body,
                },
            });
        }
        let live = check_ins
            .into_iter()
            .enumerate()
            .filter(|(index, _)| !voided.contains(index))
            .map(|(_, check_in)| check_in)
            .collect();
        (entries, live)
    }

    fn business_date(site: usize, at_s: i64) -> NaiveDate {
        let local = DateTime::from_timestamp(at_s + 8 * 3600, 0)
            .unwrap()
            .naive_utc();
        (local - Duration::hours(SITES[site].1)).date()
    }

    /// Counts (check-ins, visits, unique customers) per (site, business date).
    fn expected(live: &[Live]) -> Vec<(Vec<String>, Vec<u64>)> {
        let mut figures: BTreeMap<(String, String), (u64, u64, BTreeSet<String>)> = BTreeMap::new();
        let mut by_customer_site: BTreeMap<(String, usize), Vec<(i64, u64)>> = BTreeMap::new();
        for (customer, site, at_s, seq) in live {
            let group = (
                SITES[*site].0.to_string(),
                business_date(*site, *at_s).to_string(),
            );
            let entry = figures.entry(group).or_default();
            entry.0 += 1;
            entry.2.insert(customer.clone());
            by_customer_site
                .entry((customer.clone(), *site))
                .or_default()
                .push((*at_s, *seq));
        }
        for ((_, site), mut scans) in by_customer_site {
            scans.sort();
            let mut previous: Option<i64> = None;
            for (at_s, _) in scans {
                if previous.is_none_or(|previous| at_s - previous > 600) {
                    let group = (
                        SITES[site].0.to_string(),
                        business_date(site, at_s).to_string(),
                    );
                    figures.get_mut(&group).expect("visit day has check-ins").1 += 1;
                }
                previous = Some(at_s);
            }
        }
        figures
            .into_iter()
            .map(|((site, day), (check_ins, visits, customers))| {
                (
                    vec![site, day],
                    vec![check_ins, visits, customers.len() as u64],
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn site_days_equal_plain_count(steps in steps(), batch_size in 1usize..8) {
            let (entries, live) = build(&steps);
            let dir = tempfile::tempdir().unwrap();
            let store = project(&dir, SITE_DAY_SPEC, &entries, batch_size);
            let rows = spec::rows(&store).unwrap();
            let actual: Vec<(Vec<String>, Vec<u64>)> = table(&rows)
                .into_iter()
                .map(|(group, measures)| (group.into_iter().map(String::from).collect(), measures))
                .collect();
            prop_assert_eq!(actual, expected(&live));
        }
    }
}
