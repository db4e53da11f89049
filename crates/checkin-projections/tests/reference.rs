//! Property tests: the activity and frequency models equal a small
//! in-memory reference model on random ledgers with late records, voids,
//! repeat scans inside and outside the visit window, and sites in
//! Asia/Shanghai and America/New_York (with a 05:00 day start) around New
//! York's 2026 fall-back night. Any batching gives the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use checkin_core::record::{CheckIn, Method, RecordBody, Source, Void};
use checkin_core::sites::{Site, SiteRegistry};
use checkin_core::{ChainHash, ChainHead, EventId, Record};
use checkin_projections::activity::{self, Activity};
use checkin_projections::frequency::{self, Frequency, Scan};
use checkin_projections::runner::{LedgerEntry, Projection};
use checkin_projections::segments::{Segment, SegmentRules};
use checkin_projections::store::{Backend, ModelStore, Overlay};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

const SITES: [(&str, Tz, i64); 2] = [
    ("sh", chrono_tz::Asia::Shanghai, 0),
    ("ny", chrono_tz::America::New_York, 5),
];
const WINDOW_S: i64 = 600;

fn registry() -> SiteRegistry {
    let mut sites = SiteRegistry::default();
    for (id, zone, day_start) in SITES {
        sites.sites.insert(
            id.into(),
            Site {
                name: None,
                time_zone: zone,
                day_start_hour: day_start as u8,
            },
        );
    }
    sites
}

/// 2026-10-30T00:00:00Z; the generated scans fall in the following six days.
const START_S: i64 = 1_793_318_400;

#[derive(Clone, Debug)]
enum Step {
    /// Customer, site index, minutes after the start.
    CheckIn(u8, usize, i64),
    /// Index into the check-ins so far.
    Void(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let check_in = (0u8..4, 0usize..2, 0i64..(6 * 24 * 60))
        .prop_map(|(customer, site, minute)| Step::CheckIn(customer, site, minute));
    // Repeat scans: many minutes fall close together when the range is small.
    let close = (0u8..2, 0usize..2, 0i64..60)
        .prop_map(|(customer, site, minute)| Step::CheckIn(customer, site, 1440 + minute));
    let void = (0usize..40).prop_map(Step::Void);
    proptest::collection::vec(prop_oneof![4 => check_in, 3 => close, 1 => void], 1..60)
}

/// A live check-in of the reference model.
#[derive(Clone, Debug)]
struct Live {
    id: EventId,
    customer: String,
    site: usize,
    at_s: i64,
}

fn ledger(steps: &[Step]) -> (Vec<LedgerEntry>, Vec<Live>) {
    let mut entries = Vec::new();
    let mut check_ins: Vec<Live> = Vec::new();
    let mut voided: BTreeSet<usize> = BTreeSet::new();
    for (index, step) in steps.iter().enumerate() {
        let seq = index as u64 + 2;
        let body = match step {
            Step::CheckIn(customer, site, minute) => {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&seq.to_be_bytes());
                let live = Live {
                    id: EventId(id),
                    customer: format!("c{customer}"),
                    site: *site,
                    at_s: START_S + minute * 60,
                };
                check_ins.push(live.clone());
                RecordBody::CheckIn(CheckIn {
                    event_id: live.id,
                    customer: live.customer,
                    site: SITES[*site].0.into(),
                    device: "d".into(),
                    at_us: live.at_s * 1_000_000,
                    utc_offset_s: 0,
                    method: Method::Qr,
                    location: None,
                    activity: None,
                    staff: None,
                    attributes: Vec::new(),
                    source: Source::Import,
                })
            }
            Step::Void(target) => {
                // The sequencer only accepts voids of recorded check-ins.
                let Some(target_index) = (!check_ins.is_empty()).then(|| target % check_ins.len())
                else {
                    continue;
                };
                voided.insert(target_index);
                let mut id = [0xffu8; 16];
                id[..8].copy_from_slice(&seq.to_be_bytes());
                RecordBody::Void(Void {
                    event_id: EventId(id),
                    target: check_ins[target_index].id,
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
        .map(|(_, live)| live)
        .collect();
    (entries, live)
}

fn business_date(site: usize, at_s: i64) -> NaiveDate {
    let (_, zone, day_start) = SITES[site];
    let local = DateTime::<Utc>::from_timestamp(at_s, 0)
        .unwrap()
        .with_timezone(&zone)
        .naive_local();
    (local - Duration::hours(day_start)).date()
}

/// Visit starts of the reference model: per customer and site, in time order.
fn visit_starts(live: &[Live]) -> Vec<&Live> {
    let mut by_key: BTreeMap<(&str, usize), Vec<&Live>> = BTreeMap::new();
    for check_in in live {
        by_key
            .entry((&check_in.customer, check_in.site))
            .or_default()
            .push(check_in);
    }
    let mut starts = Vec::new();
    for (_, mut scans) in by_key {
        scans.sort_by_key(|scan| (scan.at_s, scan.id));
        let mut previous: Option<i64> = None;
        for scan in scans {
            if previous.is_none_or(|previous| scan.at_s - previous > WINDOW_S) {
                starts.push(scan);
            }
            previous = Some(scan.at_s);
        }
    }
    starts
}

/// Applies the ledger in batches of the given sizes and returns the stores.
fn project(
    entries: &[LedgerEntry],
    batch_sizes: &[usize],
    backend: Backend,
    dir: &std::path::Path,
) -> (ModelStore, ModelStore) {
    let activity_store =
        ModelStore::open_with(backend, &dir.join("activity"), Activity::NAME).unwrap();
    let frequency_store =
        ModelStore::open_with(backend, &dir.join("frequency"), Frequency::NAME).unwrap();
    let activity = Activity::new(registry());
    let frequency = Frequency::new(registry());

    let mut rest = entries;
    let mut sizes = batch_sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(size);
        let head = ChainHead {
            seq: batch.last().unwrap().seq,
            hash: ChainHash::ZERO,
        };
        for (projection, store) in [
            (&activity as &dyn Projection, &activity_store),
            (&frequency, &frequency_store),
        ] {
            let mut model = Overlay::new(store);
            projection.apply_batch(batch, &mut model).unwrap();
            store.commit(model.into_writes(), head).unwrap();
        }
        rest = tail;
    }
    (activity_store, frequency_store)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Runs against both storage engines, which must also hold byte-identical models.
    #[test]
    fn models_equal_reference(steps in steps(), batch_sizes in proptest::collection::vec(1usize..20, 1..5)) {
        let (entries, live) = ledger(&steps);
        let fjall_dir = tempfile::tempdir().unwrap();
        let (activity_fjall, frequency_fjall) = project(&entries, &batch_sizes, Backend::Fjall, fjall_dir.path());
        let dir = tempfile::tempdir().unwrap();
        let (activity_sled, frequency_sled) = project(&entries, &batch_sizes, Backend::Sled, dir.path());
        prop_assert_eq!(activity_sled.digest().unwrap(), activity_fjall.digest().unwrap());
        prop_assert_eq!(frequency_sled.digest().unwrap(), frequency_fjall.digest().unwrap());

        for (activity_store, frequency_store) in [(&activity_sled, &frequency_sled), (&activity_fjall, &frequency_fjall)] {

        // Site days.
        let mut expected: HashMap<(usize, NaiveDate), (u64, u64, BTreeSet<&str>)> = HashMap::new();
        for check_in in &live {
            let figures = expected.entry((check_in.site, business_date(check_in.site, check_in.at_s))).or_default();
            figures.0 += 1;
            figures.2.insert(&check_in.customer);
        }
        let starts = visit_starts(&live);
        for start in &starts {
            expected.entry((start.site, business_date(start.site, start.at_s))).or_default().1 += 1;
        }
        let from = NaiveDate::from_ymd_opt(2026, 10, 28).unwrap();
        let to = NaiveDate::from_ymd_opt(2026, 11, 6).unwrap();
        for (site, (id, _, _)) in SITES.iter().enumerate() {
            for (date, figures) in activity::site_days(activity_store, id, from, to).unwrap() {
                let (check_ins, visits, customers) = expected.get(&(site, date)).cloned().unwrap_or_default();
                prop_assert_eq!(figures.check_ins, check_ins, "check-ins at {} on {}", id, date);
                prop_assert_eq!(figures.visits, visits, "visits at {} on {}", id, date);
                prop_assert_eq!(figures.unique_customers, customers.len() as u64, "customers at {} on {}", id, date);
            }
        }

        // Customer summaries.
        for customer in ["c0", "c1", "c2", "c3"] {
            let mine: Vec<&Live> = live.iter().filter(|check_in| check_in.customer == customer).collect();
            let summary = frequency::customer(frequency_store, customer).unwrap();
            if mine.is_empty() {
                prop_assert!(summary.is_none(), "{} has no check-in left", customer);
                continue;
            }
            let summary = summary.unwrap();
            let my_starts: Vec<&&Live> = starts.iter().filter(|start| start.customer == customer).collect();
            let days: BTreeSet<NaiveDate> = my_starts.iter().map(|start| business_date(start.site, start.at_s)).collect();
            let sites: BTreeSet<usize> = mine.iter().map(|check_in| check_in.site).collect();

            prop_assert_eq!(summary.check_ins, mine.len() as u64);
            prop_assert_eq!(summary.visits, my_starts.len() as u64);
            prop_assert_eq!(summary.distinct_sites, sites.len() as u64);
            prop_assert_eq!(summary.visits_per_day.len(), days.len());
            prop_assert_eq!(summary.first_visit_us, my_starts.iter().map(|start| start.at_s * 1_000_000).min());
            prop_assert_eq!(summary.last_visit_us, my_starts.iter().map(|start| start.at_s * 1_000_000).max());

            let ordered: Vec<NaiveDate> = days.into_iter().collect();
            let mut runs = vec![1u32];
            for pair in ordered.windows(2) {
                if pair[1] - pair[0] == Duration::days(1) {
                    *runs.last_mut().unwrap() += 1;
                } else {
                    runs.push(1);
                }
            }
            prop_assert_eq!(summary.longest_streak_days, *runs.iter().max().unwrap());
            prop_assert_eq!(summary.latest_streak_days, *runs.last().unwrap());
            let mut gaps: Vec<u32> = ordered.windows(2).map(|pair| (pair[1] - pair[0]).num_days() as u32).collect();
            gaps.sort_unstable();
            prop_assert_eq!(summary.typical_gap_days, (!gaps.is_empty()).then(|| gaps[(gaps.len() - 1) / 2]));
        }

        }

        // Batch independence: one record per batch gives the same bytes.
        let other = tempfile::tempdir().unwrap();
        let (activity_one, frequency_one) = project(&entries, &[1], Backend::Sled, other.path());
        prop_assert_eq!(activity_sled.digest().unwrap(), activity_one.digest().unwrap());
        prop_assert_eq!(frequency_sled.digest().unwrap(), frequency_one.digest().unwrap());
    }
}

/// Segment thresholds short enough for six days of scans to cross each of them.
fn short_rules() -> SegmentRules {
    SegmentRules {
        window_days: 2,
        vip_visits: 3,
        active_visits: 2,
        new_days: 1,
        at_risk_days: 3,
        gap_factor: 1,
        gap_rule_min_visits: 2,
        dormant_days: 4,
        time_zone: chrono_tz::Asia::Shanghai,
    }
}

/// Replays the ledger judging every customer with scans at each daily
/// evaluation, as the frequency model's history is defined, and returns each
/// customer's changes.
fn judge_everyone_daily(
    entries: &[LedgerEntry],
    frequency: &Frequency,
    rules: &SegmentRules,
) -> BTreeMap<String, Vec<(NaiveDate, Segment)>> {
    let mut scans: BTreeMap<String, Vec<Scan>> = BTreeMap::new();
    let mut current: BTreeMap<String, Segment> = BTreeMap::new();
    let mut history: BTreeMap<String, Vec<(NaiveDate, Segment)>> = BTreeMap::new();
    let mut latest_us: Option<i64> = None;
    for entry in entries {
        match &entry.record.body {
            RecordBody::CheckIn(check_in) => {
                if let Some(latest) = latest_us
                    && rules.date_of(check_in.at_us) > rules.date_of(latest)
                {
                    let day = rules.date_of(check_in.at_us);
                    let day_start = rules.start_of(day);
                    for (customer, own) in &scans {
                        if own.is_empty() {
                            continue;
                        }
                        let segment = rules.classify(&frequency.summarize(own), day_start);
                        if current.get(customer) != Some(&segment) {
                            current.insert(customer.clone(), segment);
                            history
                                .entry(customer.clone())
                                .or_default()
                                .push((day, segment));
                        }
                    }
                }
                latest_us =
                    Some(latest_us.map_or(check_in.at_us, |latest| latest.max(check_in.at_us)));
                let own = scans.entry(check_in.customer.clone()).or_default();
                own.push(Scan {
                    at_us: check_in.at_us,
                    event_id: check_in.event_id.0,
                    site: check_in.site.clone(),
                });
                own.sort();
            }
            RecordBody::Void(void) => {
                for own in scans.values_mut() {
                    own.retain(|scan| scan.event_id != void.target.0);
                }
            }
            RecordBody::Genesis(_) => {}
        }
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The model judges only customers whose summary changed or whose next
    /// threshold passed; the history must equal judging everyone every day.
    #[test]
    fn segment_history_equals_daily_judging(steps in steps(), batch_size in 1usize..20) {
        let (entries, _) = ledger(&steps);
        let rules = short_rules();
        let frequency = Frequency::new(registry()).with_rules(rules.clone());
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path(), Frequency::NAME).unwrap();
        for batch in entries.chunks(batch_size) {
            let mut model = Overlay::new(&store);
            frequency.apply_batch(batch, &mut model).unwrap();
            let head = ChainHead { seq: batch.last().unwrap().seq, hash: ChainHash::ZERO };
            store.commit(model.into_writes(), head).unwrap();
        }

        let expected = judge_everyone_daily(&entries, &frequency, &rules);
        for customer in ["c0", "c1", "c2", "c3"] {
            let stored = frequency::segment_history(&store, customer).unwrap();
            let judged = expected.get(customer).cloned().unwrap_or_default();
            prop_assert_eq!(stored, judged, "history of {}", customer);
        }
    }
}
