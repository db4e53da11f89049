//! The frequency read model: per customer, check-ins and visits, first and
//! last visit, visits per business day, streaks of consecutive visit days,
//! distinct sites and the typical gap between visit days.
//!
//! Key layout in the `frequency` tree:
//!
//! | key | value |
//! | --- | --- |
//! | `e` ‖ event id (16) | customer ‖ 0 ‖ at_us (8): where the check-in's scan key is |
//! | `c` ‖ customer ‖ 0 ‖ at_us (8) ‖ event id (16) | site: one check-in that is not voided |
//! | `s` ‖ customer | [`CustomerSummary`] |
//! | `r` | latest check-in time in the ledger so far, UTC microseconds (8, big-endian) |
//! | `g` ‖ customer | the customer's segment at the last daily evaluation (1) |
//! | `n` ‖ day (4) ‖ customer | empty: judge the customer at the first evaluation on or after that day |
//! | `p` ‖ customer | the day of the customer's `n` key (4) |
//! | `x` | customers whose summary changed since the last evaluation, bincode list |
//! | `y` | the day of the last evaluation (4) |
//! | `h` ‖ customer ‖ 0 ‖ day (4) | the segment the customer entered at that day's evaluation (1) |
//!
//! Segments are evaluated once per day of the reference time: when a
//! check-in moves the latest check-in time into a new calendar day (in the
//! segment rules' zone), every customer is judged as of that day's start,
//! from the ledger before that check-in, and each change is appended to the
//! customer's history. Only customers whose summary changed or whose next
//! threshold passed are judged again; the others cannot have changed. The evaluation points and inputs follow ledger order
//! only, so the history is the same whatever the batching.
//!
//! The summary is a pure function of the customer's scans, so a rebuild
//! gives the same bytes whatever the batching. A check-in later than all of
//! the customer's scans, the common case, updates the summary in place; a
//! late check-in or a void recomputes it from the stored scans.
//! Figures that depend on "now" (current streak, segment) are computed at
//! query time from the summary and a reference time.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};
use checkin_core::record::RecordBody;
use checkin_core::sites::SiteRegistry;
use chrono::{Datelike, NaiveDate};

use crate::activity::DEFAULT_VISIT_WINDOW_S;
use crate::codec::{day_from_key, day_key, decode, encode};
use crate::runner::{LedgerEntry, Projection, ProjectionError};
use crate::segments::{Segment, SegmentRules};
use crate::store::{ModelStore, Overlay};

/// One check-in of a customer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub struct Scan {
    /// When it happened, UTC microseconds.
    pub at_us: i64,
    /// Event id, to order equal times and to find the scan again.
    pub event_id: [u8; 16],
    /// Site id.
    pub site: String,
}

/// Derived figures of one customer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct CustomerSummary {
    /// Check-ins that are not voided.
    pub check_ins: u64,
    /// Visits: runs of scans at one site, each within the visit window of the previous.
    pub visits: u64,
    /// Start of the first visit, UTC microseconds.
    pub first_visit_us: Option<i64>,
    /// Start of the last visit, UTC microseconds.
    pub last_visit_us: Option<i64>,
    /// Distinct sites visited.
    pub distinct_sites: u64,
    /// Visits per business date (days since 0001-01-01, as chrono counts them).
    pub visits_per_day: BTreeMap<i32, u32>,
    /// Maximum run of consecutive visit days.
    pub longest_streak_days: u32,
    /// Length of the run of consecutive visit days that ends on the last visit day.
    pub latest_streak_days: u32,
    /// Median gap in days between consecutive visit days, once there are two.
    pub typical_gap_days: Option<u32>,
    /// Time of the latest scan at each site, UTC microseconds.
    pub last_scan_at_site: BTreeMap<String, i64>,
    /// The latest scan: time and event id.
    pub latest_scan: Option<(i64, [u8; 16])>,
}

impl CustomerSummary {
    /// Returns the last visit day, if any.
    pub fn last_visit_day(&self) -> Option<NaiveDate> {
        self.visits_per_day
            .keys()
            .next_back()
            .and_then(|days| NaiveDate::from_num_days_from_ce_opt(*days))
    }

    /// Returns the first visit day, if any.
    pub fn first_visit_day(&self) -> Option<NaiveDate> {
        self.visits_per_day
            .keys()
            .next()
            .and_then(|days| NaiveDate::from_num_days_from_ce_opt(*days))
    }

    /// Returns visits on business dates from `from` through `to`.
    pub fn visits_between(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        self.visits_per_day
            .range(from.num_days_from_ce()..=to.num_days_from_ce())
            .map(|(_, visits)| u64::from(*visits))
            .sum()
    }
}

/// The frequency projection.
pub struct Frequency {
    sites: SiteRegistry,
    visit_window_us: i64,
    rules: SegmentRules,
}

impl Frequency {
    /// Name of the model and of its sled tree.
    pub const NAME: &'static str = "frequency";

    /// Creates the projection with the sites' calendars and the default visit window.
    pub fn new(sites: SiteRegistry) -> Self {
        Self::with_visit_window(sites, DEFAULT_VISIT_WINDOW_S)
    }

    /// Creates the projection with a visit window in seconds.
    pub fn with_visit_window(sites: SiteRegistry, visit_window_s: i64) -> Self {
        Self {
            sites,
            visit_window_us: visit_window_s * 1_000_000,
            rules: SegmentRules::default(),
        }
    }

    /// Replaces the segment rules used for the daily history.
    pub fn with_rules(mut self, rules: SegmentRules) -> Self {
        self.rules = rules;
        self
    }

    /// Judges, as of the start of the day `at_us` falls on, every customer
    /// whose segment may have changed since the last evaluation, records each
    /// change and schedules the customer's next evaluation. A customer is due
    /// when a check-in or void changed their summary (`changed`) or when
    /// time crossed one of their thresholds (`n` keys
    /// up to today); every other customer keeps the segment they had, so the
    /// history equals judging everyone every day.
    fn evaluate_segments(
        &self,
        at_us: i64,
        touched: &BTreeMap<String, CustomerSummary>,
        changed: &mut BTreeSet<String>,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let day = self.rules.date_of(at_us);
        let day_start_us = self.rules.start_of(day);

        let mut due = std::mem::take(changed);
        // Keys up to the last evaluated day were consumed then; starting
        // after it skips their deletion markers.
        let lower = match model.get(b"y")? {
            Some(bytes) => {
                let mut key = vec![b'n'];
                key.extend_from_slice(&bytes);
                key.push(0xff);
                key
            }
            None => vec![b'n'],
        };
        let upper = due_key(day + chrono::Duration::days(1), "");
        for (key, _) in model.scan_range(&lower, &upper, b"n")? {
            model.delete(key.clone());
            due.insert(String::from_utf8_lossy(&key[5..]).into_owned());
        }

        for customer in due {
            let summary = match touched.get(&customer) {
                Some(summary) => Some(summary.clone()),
                None => {
                    let key = prefixed(b's', customer.as_bytes());
                    match model.get(&key)? {
                        Some(bytes) => Some(decode::<CustomerSummary>(&key, &bytes)?),
                        None => None,
                    }
                }
            };
            // A customer due because their summary changed may still have a
            // later evaluation scheduled; it is replaced below.
            let schedule_key = prefixed(b'p', customer.as_bytes());
            if let Some(day) = model
                .get(&schedule_key)?
                .and_then(|bytes| <[u8; 4]>::try_from(bytes.as_slice()).ok())
            {
                model.delete(due_key_raw(day, &customer));
            }
            let Some(summary) = summary.filter(|summary| summary.check_ins > 0) else {
                model.delete(schedule_key);
                continue;
            };

            let segment = self.rules.classify(&summary, day_start_us);
            let code = segment_code(segment);
            let current_key = prefixed(b'g', customer.as_bytes());
            if model.get(&current_key)?.as_deref() != Some(&[code][..]) {
                model.put(current_key, vec![code]);
                model.put(history_key(&customer, day), vec![code]);
            }
            match self.rules.next_change_day(&summary, day) {
                Some(next) => {
                    model.put(due_key(next, &customer), Vec::new());
                    model.put(schedule_key, day_key(next).to_vec());
                }
                None => model.delete(schedule_key),
            }
        }
        model.put(b"y".to_vec(), day_key(day).to_vec());
        Ok(())
    }

    /// Returns the customer's scans as the batch so far left them, by time.
    fn load_scans(
        &self,
        customer: &str,
        model: &Overlay<'_>,
    ) -> Result<Vec<Scan>, ProjectionError> {
        let prefix = scans_prefix(customer);
        let mut scans = Vec::new();
        for (key, site) in model.scan_prefix(&prefix)? {
            let Some((at_us, event_id)) = split_scan_key(&key[prefix.len()..]) else {
                continue;
            };
            scans.push(Scan {
                at_us,
                event_id,
                site: String::from_utf8_lossy(&site).into_owned(),
            });
        }
        Ok(scans)
    }

    /// Computes the summary of a customer's scans, sorted by time.
    pub fn summarize(&self, scans: &[Scan]) -> CustomerSummary {
        let mut summary = CustomerSummary::default();
        for scan in scans {
            self.append(&mut summary, scan);
        }
        summary
    }

    /// Adds a scan later than every scan the summary covers, giving the
    /// same summary as recomputing it with the scan included.
    fn append(&self, summary: &mut CustomerSummary, scan: &Scan) {
        summary.check_ins += 1;
        summary.latest_scan = Some((scan.at_us, scan.event_id));
        let previous = summary
            .last_scan_at_site
            .insert(scan.site.clone(), scan.at_us);
        summary.distinct_sites = summary.last_scan_at_site.len() as u64;
        let starts_visit =
            previous.is_none_or(|previous| scan.at_us - previous > self.visit_window_us);
        if !starts_visit {
            return;
        }
        summary.visits += 1;
        summary.first_visit_us.get_or_insert(scan.at_us);
        summary.last_visit_us = Some(scan.at_us);
        let day = self
            .sites
            .site_or_default(&scan.site)
            .business_date(scan.at_us)
            .num_days_from_ce();
        let visits = summary.visits_per_day.entry(day).or_default();
        *visits += 1;
        if *visits == 1 {
            // A new visit day: streaks and gaps depend on the set of days only.
            let days: Vec<i32> = summary.visits_per_day.keys().copied().collect();
            let (longest, latest) = streaks(&days);
            summary.longest_streak_days = longest;
            summary.latest_streak_days = latest;
            summary.typical_gap_days = median_gap(&days);
        }
    }
}

impl Projection for Frequency {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, entry: &LedgerEntry, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        self.apply_batch(std::slice::from_ref(entry), model)
    }

    /// Loads each customer's summary once per batch, applies the batch's
    /// changes and writes the summary once. The summary depends only on the
    /// final scans, so the bytes equal one-by-one application.
    fn apply_batch(
        &self,
        entries: &[LedgerEntry],
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let mut touched: BTreeMap<String, CustomerSummary> = BTreeMap::new();
        // Customers whose summary changed since the last evaluation, kept
        // under `x` between batches.
        let mut changed: BTreeSet<String> = match model.get(b"x")? {
            Some(bytes) => decode::<Vec<String>>(b"x", &bytes)?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        let mut latest_us = model.get(b"r")?.as_deref().map_or(i64::MIN, read_i64);
        for entry in entries {
            match &entry.record.body {
                RecordBody::Genesis(_) => {}
                RecordBody::CheckIn(check_in) => {
                    let new_day = latest_us == i64::MIN
                        || self.rules.date_of(check_in.at_us) > self.rules.date_of(latest_us);
                    if new_day && latest_us != i64::MIN {
                        self.evaluate_segments(check_in.at_us, &touched, &mut changed, model)?;
                    }
                    latest_us = latest_us.max(check_in.at_us);

                    let customer = &check_in.customer;
                    let mut locator = customer.as_bytes().to_vec();
                    locator.push(0);
                    locator.extend_from_slice(&check_in.at_us.to_be_bytes());
                    model.put(prefixed(b'e', &check_in.event_id.0), locator);
                    let scan = Scan {
                        at_us: check_in.at_us,
                        event_id: check_in.event_id.0,
                        site: check_in.site.clone(),
                    };
                    model.put(
                        scan_key(customer, scan.at_us, &scan.event_id),
                        scan.site.as_bytes().to_vec(),
                    );

                    changed.insert(customer.clone());
                    let summary = self.touch(customer, &mut touched, model)?;
                    if summary
                        .latest_scan
                        .is_none_or(|latest| latest < (scan.at_us, scan.event_id))
                    {
                        self.append(summary, &scan);
                    } else {
                        *summary = self.summarize(&self.load_scans(customer, model)?);
                    }
                }
                RecordBody::Void(void) => {
                    let Some(locator) = model.get(&prefixed(b'e', &void.target.0))? else {
                        continue;
                    };
                    let Some((customer, at_us)) = split_locator(&locator) else {
                        continue;
                    };
                    let key = scan_key(&customer, at_us, &void.target.0);
                    if model.get(&key)?.is_none() {
                        continue;
                    }
                    model.delete(key);
                    let scans = self.load_scans(&customer, model)?;
                    changed.insert(customer.clone());
                    let summary = self.touch(&customer, &mut touched, model)?;
                    *summary = self.summarize(&scans);
                }
            }
        }

        if changed.is_empty() {
            model.delete(b"x".to_vec());
        } else {
            model.put(
                b"x".to_vec(),
                encode(&changed.into_iter().collect::<Vec<String>>()),
            );
        }
        for (customer, summary) in touched {
            let key = prefixed(b's', customer.as_bytes());
            if summary.check_ins == 0 {
                model.delete(key);
            } else {
                model.put(key, encode(&summary));
            }
        }
        if latest_us != i64::MIN {
            model.put(b"r".to_vec(), latest_us.to_be_bytes().to_vec());
        }
        Ok(())
    }
}

impl Frequency {
    /// Returns the customer's summary in this batch, loading it on first use.
    fn touch<'t>(
        &self,
        customer: &str,
        touched: &'t mut BTreeMap<String, CustomerSummary>,
        model: &Overlay<'_>,
    ) -> Result<&'t mut CustomerSummary, ProjectionError> {
        if !touched.contains_key(customer) {
            let key = prefixed(b's', customer.as_bytes());
            let summary = match model.get(&key)? {
                Some(bytes) => decode(&key, &bytes)?,
                None => CustomerSummary::default(),
            };
            touched.insert(customer.to_owned(), summary);
        }
        Ok(touched.get_mut(customer).expect("inserted above"))
    }
}

fn scans_prefix(customer: &str) -> Vec<u8> {
    let mut key = prefixed(b'c', customer.as_bytes());
    key.push(0);
    key
}

fn scan_key(customer: &str, at_us: i64, event_id: &[u8; 16]) -> Vec<u8> {
    let mut key = scans_prefix(customer);
    key.extend_from_slice(&sortable_i64(at_us).to_be_bytes());
    key.extend_from_slice(event_id);
    key
}

/// Splits the part of a scan key after the customer into time and event id.
fn split_scan_key(rest: &[u8]) -> Option<(i64, [u8; 16])> {
    let at = <[u8; 8]>::try_from(rest.get(..8)?).ok()?;
    let event_id = <[u8; 16]>::try_from(rest.get(8..24)?).ok()?;
    Some(((u64::from_be_bytes(at) ^ (1 << 63)) as i64, event_id))
}

/// Splits an `e` value into customer and check-in time.
fn split_locator(locator: &[u8]) -> Option<(String, i64)> {
    let split = locator.len().checked_sub(9)?;
    if locator[split] != 0 {
        return None;
    }
    let at = <[u8; 8]>::try_from(&locator[split + 1..]).ok()?;
    Some((
        String::from_utf8_lossy(&locator[..split]).into_owned(),
        i64::from_be_bytes(at),
    ))
}

/// Maps an i64 onto a u64 that sorts the same way as big-endian bytes.
fn sortable_i64(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

/// Returns (longest, latest) runs of consecutive days.
fn streaks(days: &[i32]) -> (u32, u32) {
    let mut longest = 0;
    let mut current = 0;
    let mut previous: Option<i32> = None;
    for day in days {
        current = if previous == Some(day - 1) {
            current + 1
        } else {
            1
        };
        longest = longest.max(current);
        previous = Some(*day);
    }
    (longest, current)
}

/// Returns the median gap between consecutive days, the lower one of the two middle gaps when even.
fn median_gap(days: &[i32]) -> Option<u32> {
    let mut gaps: Vec<u32> = days
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) as u32)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[(gaps.len() - 1) / 2])
}

/// Returns a customer's summary, `None` when the customer has no check-in left.
///
/// # Errors
///
/// Fails when storage fails or the stored summary does not decode.
pub fn customer(
    store: &ModelStore,
    customer: &str,
) -> Result<Option<CustomerSummary>, ProjectionError> {
    let key = prefixed(b's', customer.as_bytes());
    match store.get(&key)? {
        Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
        None => Ok(None),
    }
}

/// Calls `visit` with every customer and summary, in customer order.
///
/// # Errors
///
/// Fails when storage fails or a stored summary does not decode.
pub fn for_each_customer(
    store: &ModelStore,
    mut visit: impl FnMut(&str, &CustomerSummary),
) -> Result<(), ProjectionError> {
    for (key, bytes) in store.scan_prefix(b"s")? {
        let summary: CustomerSummary = decode(&key, &bytes)?;
        visit(&String::from_utf8_lossy(&key[1..]), &summary);
    }
    Ok(())
}

/// Returns a customer's segment changes: the day of each daily evaluation
/// that moved the customer, and the segment entered.
///
/// # Errors
///
/// Fails when storage fails.
pub fn segment_history(
    store: &ModelStore,
    customer: &str,
) -> Result<Vec<(NaiveDate, Segment)>, ProjectionError> {
    let mut prefix = vec![b'h'];
    prefix.extend_from_slice(customer.as_bytes());
    prefix.push(0);
    let mut history = Vec::new();
    for (key, value) in store.scan_prefix(&prefix)? {
        let Ok(day) = <[u8; 4]>::try_from(&key[prefix.len()..]) else {
            continue;
        };
        let segment = value
            .first()
            .and_then(|code| Segment::ALL.get(usize::from(*code)));
        if let (Some(date), Some(segment)) = (day_from_key(day), segment) {
            history.push((date, *segment));
        }
    }
    Ok(history)
}

fn segment_code(segment: Segment) -> u8 {
    Segment::ALL
        .iter()
        .position(|candidate| *candidate == segment)
        .unwrap_or_default() as u8
}

fn due_key(day: NaiveDate, customer: &str) -> Vec<u8> {
    due_key_raw(day_key(day), customer)
}

fn due_key_raw(day: [u8; 4], customer: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + customer.len());
    key.push(b'n');
    key.extend_from_slice(&day);
    key.extend_from_slice(customer.as_bytes());
    key
}

fn history_key(customer: &str, day: NaiveDate) -> Vec<u8> {
    let mut key = vec![b'h'];
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key.extend_from_slice(&day_key(day));
    key
}

fn read_i64(bytes: &[u8]) -> i64 {
    <[u8; 8]>::try_from(bytes).map_or(i64::MIN, i64::from_be_bytes)
}

fn prefixed(kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(rest.len() + 1);
    key.push(kind);
    key.extend_from_slice(rest);
    key
}
