//! The activity read model: each customer's timeline and, per site, check-ins
//! and unique customers per local business day, and hour-of-day and weekday
//! profiles. A void removes its target from every figure.
//!
//! Key layout in the `activity` tree (text parts are NFC strings without NUL,
//! since validation rejects control characters; integers big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `e` ‖ event id (16) | [`EventFacts`], bincode |
//! | `t` ‖ customer ‖ 0 ‖ !at_us (8) ‖ event id (16) | seq (8): timeline, newest first |
//! | `d` ‖ site ‖ 0 ‖ day (4) | [`SiteDay`], bincode |
//! | `u` ‖ site ‖ 0 ‖ day (4) ‖ customer | check-ins of that customer that day (8) |
//! | `h` ‖ site ‖ 0 ‖ local hour (1) | check-ins (8) |
//! | `w` ‖ site ‖ 0 ‖ ISO weekday 1-7 (1) | check-ins (8) |
//! | `v` ‖ site ‖ 0 ‖ customer ‖ 0 ‖ at_us (8) ‖ event id (16) | empty: the customer's scans at the site |
//! | `l` ‖ site ‖ 0 ‖ customer ‖ 0 | at_us (8) ‖ event id (16) of the latest of those scans |
//!
//! A visit is a business rule, not a ledger fact: a customer's scans at one
//! site belong to one visit while each follows the previous one within the
//! visit window. A visit counts on the business date of its first scan.
//!
//! `day` is the business date as days since 0001-01-01 (chrono's
//! `num_days_from_ce`), stored as u32 with the sign bit flipped so keys sort
//! by date.

use bincode::{Decode, Encode};
use checkin_core::EventId;
use checkin_core::record::{CheckIn, RecordBody, Void};
use checkin_core::sites::SiteRegistry;
use chrono::NaiveDate;
use serde::Serialize;

use crate::codec::{day_key, decode, encode, sortable_i64};
use crate::runner::{LedgerEntry, Projection, ProjectionError};
use crate::store::{ModelStore, Overlay, StoreError};
use crate::visits::{scan_key, start_changes};

/// Facts of one check-in kept so that a later void can be reversed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct EventFacts {
    /// Customer id.
    pub customer: String,
    /// Site id.
    pub site: String,
    /// When it happened, UTC microseconds.
    pub at_us: i64,
    /// Ledger sequence of the check-in.
    pub seq: u64,
    /// Whether a void removed it.
    pub voided: bool,
}

/// Figures of one site on one business day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct SiteDay {
    /// Check-ins that are not voided.
    pub check_ins: u64,
    /// Visits that start that day.
    pub visits: u64,
    /// Distinct customers with at least one such check-in.
    pub unique_customers: u64,
}

/// Default visit window: scans closer than this to the previous one are the same visit.
pub const DEFAULT_VISIT_WINDOW_S: i64 = 10 * 60;

/// The activity projection.
pub struct Activity {
    sites: SiteRegistry,
    visit_window_us: i64,
}

impl Activity {
    /// Name of the model and of its sled tree.
    pub const NAME: &'static str = "activity";

    /// Creates the projection with the sites' calendars and the default visit window.
    pub fn new(sites: SiteRegistry) -> Self {
        Self::with_visit_window(sites, DEFAULT_VISIT_WINDOW_S)
    }

    /// Creates the projection with a visit window in seconds.
    pub fn with_visit_window(sites: SiteRegistry, visit_window_s: i64) -> Self {
        Self {
            sites,
            visit_window_us: visit_window_s * 1_000_000,
        }
    }

    fn add(
        &self,
        entry: &LedgerEntry,
        check_in: &CheckIn,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let facts = EventFacts {
            customer: check_in.customer.clone(),
            site: check_in.site.clone(),
            at_us: check_in.at_us,
            seq: entry.seq,
            voided: false,
        };
        model.put(event_key(&check_in.event_id), encode(&facts));
        model.put(
            timeline_key(&facts.customer, facts.at_us, &check_in.event_id),
            entry.seq.to_be_bytes().to_vec(),
        );
        self.update_visits(&facts, &check_in.event_id, true, model)?;
        self.count(&facts, 1, model)
    }

    fn remove(&self, void: &Void, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        let key = event_key(&void.target);
        let Some(bytes) = model.get(&key)? else {
            return Ok(());
        };
        let mut facts: EventFacts = decode(&key, &bytes)?;
        if facts.voided {
            return Ok(());
        }
        facts.voided = true;
        model.put(key, encode(&facts));
        model.delete(timeline_key(&facts.customer, facts.at_us, &void.target));
        self.update_visits(&facts, &void.target, false, model)?;
        self.count(&facts, -1, model)
    }

    /// Inserts or removes a scan in the customer's scans at the site and
    /// adjusts the visit counts of the days whose visit starts change. Only
    /// the scan itself and the next scan can gain or lose a visit start.
    fn update_visits(
        &self,
        facts: &EventFacts,
        id: &EventId,
        insert: bool,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let prefix = scans_prefix(&facts.site, &facts.customer);
        let key = scan_key(&prefix, facts.at_us, id);
        let changes = start_changes(
            model,
            &prefix,
            &latest_scan_key(&facts.site, &facts.customer),
            &key,
            facts.at_us,
            insert,
            self.visit_window_us,
        )?;
        for change in changes {
            self.add_visits(&facts.site, change.at_us, change.delta, model)?;
        }

        if insert {
            model.put(key, Vec::new());
        } else {
            model.delete(key);
        }
        Ok(())
    }

    fn add_visits(
        &self,
        site: &str,
        at_us: i64,
        delta: i64,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let day = self.sites.site_or_default(site).business_date(at_us);
        let day_key = site_day_key(site, day);
        let mut figures: SiteDay = match model.get(&day_key)? {
            Some(bytes) => decode(&day_key, &bytes)?,
            None => SiteDay::default(),
        };
        figures.visits = add_signed(figures.visits, delta);
        store_site_day(model, day_key, &figures);
        Ok(())
    }

    /// Adds `delta` (1 or -1) to every figure the check-in counts in.
    fn count(
        &self,
        facts: &EventFacts,
        delta: i64,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let placement = self.sites.site_or_default(&facts.site).place(facts.at_us);
        let day = placement.business_date;

        let per_customer_key = unique_key(&facts.site, day, &facts.customer);
        let before = read_counter(model, &per_customer_key)?;
        let after = add_signed(before, delta);
        write_counter(model, per_customer_key, after);

        let day_key = site_day_key(&facts.site, day);
        let mut figures: SiteDay = match model.get(&day_key)? {
            Some(bytes) => decode(&day_key, &bytes)?,
            None => SiteDay::default(),
        };
        figures.check_ins = add_signed(figures.check_ins, delta);
        if before == 0 && after > 0 {
            figures.unique_customers += 1;
        } else if before > 0 && after == 0 {
            figures.unique_customers = figures.unique_customers.saturating_sub(1);
        }
        store_site_day(model, day_key, &figures);

        let hour_key = profile_key(b'h', &facts.site, placement.local_hour as u8);
        let count = add_signed(read_counter(model, &hour_key)?, delta);
        write_counter(model, hour_key, count);
        let weekday_key = profile_key(
            b'w',
            &facts.site,
            placement.weekday.number_from_monday() as u8,
        );
        let count = add_signed(read_counter(model, &weekday_key)?, delta);
        write_counter(model, weekday_key, count);
        Ok(())
    }
}

impl Projection for Activity {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&self, entry: &LedgerEntry, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        match &entry.record.body {
            RecordBody::Genesis(_) => Ok(()),
            RecordBody::CheckIn(check_in) => self.add(entry, check_in, model),
            RecordBody::Void(void) => self.remove(void, model),
        }
    }
}

/// Returns a site's figures per business day from `from` through `to`, days
/// without check-ins included as zeros.
///
/// # Errors
///
/// Fails when storage fails or a stored value does not decode.
pub fn site_days(
    store: &ModelStore,
    site: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, SiteDay)>, ProjectionError> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        let key = site_day_key(site, day);
        let figures = match store.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => SiteDay::default(),
        };
        days.push((day, figures));
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    Ok(days)
}

/// Returns a site's check-ins per local hour (index 0-23) and per ISO
/// weekday (index 0 = Monday).
///
/// # Errors
///
/// Fails when storage fails.
pub fn site_profile(store: &ModelStore, site: &str) -> Result<([u64; 24], [u64; 7]), StoreError> {
    let mut hours = [0u64; 24];
    let mut weekdays = [0u64; 7];
    for (index, slot) in hours.iter_mut().enumerate() {
        *slot = stored_counter(store, &profile_key(b'h', site, index as u8))?;
    }
    for (index, slot) in weekdays.iter_mut().enumerate() {
        *slot = stored_counter(store, &profile_key(b'w', site, index as u8 + 1))?;
    }
    Ok((hours, weekdays))
}

fn store_site_day(model: &mut Overlay<'_>, key: Vec<u8>, figures: &SiteDay) {
    if *figures == SiteDay::default() {
        model.delete(key);
    } else {
        model.put(key, encode(figures));
    }
}

fn scans_prefix(site: &str, customer: &str) -> Vec<u8> {
    let mut key = vec![b'v'];
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key
}

fn latest_scan_key(site: &str, customer: &str) -> Vec<u8> {
    let mut key = scans_prefix(site, customer);
    key[0] = b'l';
    key
}

fn stored_counter(store: &ModelStore, key: &[u8]) -> Result<u64, StoreError> {
    Ok(store.get(key)?.as_deref().map_or(0, counter_value))
}

fn read_counter(model: &Overlay<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(model.get(key)?.as_deref().map_or(0, counter_value))
}

fn write_counter(model: &mut Overlay<'_>, key: Vec<u8>, value: u64) {
    if value == 0 {
        model.delete(key);
    } else {
        model.put(key, value.to_be_bytes().to_vec());
    }
}

fn counter_value(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

fn add_signed(value: u64, delta: i64) -> u64 {
    value.saturating_add_signed(delta)
}

fn event_key(id: &EventId) -> Vec<u8> {
    let mut key = vec![b'e'];
    key.extend_from_slice(&id.0);
    key
}

fn timeline_key(customer: &str, at_us: i64, id: &EventId) -> Vec<u8> {
    let mut key = vec![b't'];
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    // Inverted, so that a forward scan lists the newest check-in first.
    key.extend_from_slice(&(!sortable_i64(at_us)).to_be_bytes());
    key.extend_from_slice(&id.0);
    key
}

fn site_day_key(site: &str, day: NaiveDate) -> Vec<u8> {
    let mut key = vec![b'd'];
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.extend_from_slice(&day_key(day));
    key
}

fn unique_key(site: &str, day: NaiveDate, customer: &str) -> Vec<u8> {
    let mut key = vec![b'u'];
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.extend_from_slice(&day_key(day));
    key.extend_from_slice(customer.as_bytes());
    key
}

fn profile_key(kind: u8, site: &str, bucket: u8) -> Vec<u8> {
    let mut key = vec![kind];
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.push(bucket);
    key
}

/// One check-in of a customer's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Ledger sequence.
    pub seq: u64,
    /// Event id.
    pub event_id: String,
    /// Site id.
    pub site: String,
    /// When it happened, UTC microseconds.
    pub at_us: i64,
}

/// Returns up to `limit` of a customer's check-ins, newest first, skipping
/// the first `skip`.
///
/// # Errors
///
/// Fails when storage fails or a stored value does not decode.
pub fn timeline(
    store: &ModelStore,
    customer: &str,
    skip: usize,
    limit: usize,
) -> Result<Vec<TimelineEntry>, ProjectionError> {
    let mut prefix = vec![b't'];
    prefix.extend_from_slice(customer.as_bytes());
    prefix.push(0);

    let mut entries = Vec::new();
    for (key, value) in store
        .scan_prefix(&prefix)?
        .into_iter()
        .skip(skip)
        .take(limit)
    {
        let Ok(id) = <[u8; 16]>::try_from(&key[key.len() - 16..]) else {
            continue;
        };
        let id = EventId(id);
        let event_key = event_key(&id);
        let Some(bytes) = store.get(&event_key)? else {
            continue;
        };
        let facts: EventFacts = decode(&event_key, &bytes)?;
        entries.push(TimelineEntry {
            seq: <[u8; 8]>::try_from(value.as_slice()).map_or(facts.seq, u64::from_be_bytes),
            event_id: id.to_string(),
            site: facts.site,
            at_us: facts.at_us,
        });
    }
    Ok(entries)
}
