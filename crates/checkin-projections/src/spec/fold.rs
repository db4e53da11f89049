//! The fold of a spec into its model, and reading the rows back.
//!
//! Key layout in the `spec_NAME` tree (text parts are NFC strings without
//! NUL, since validation rejects control characters; integers big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `m` | [`StoredSpec`], bincode: the columns the rows were folded with |
//! | `e` ‖ event id (16) | [`ScanFacts`], bincode, for check-ins that pass the filter |
//! | `v` ‖ site ‖ 0 ‖ customer ‖ 0 ‖ at_us (8) ‖ event id (16) | group key of the scan |
//! | `l` ‖ site ‖ 0 ‖ customer ‖ 0 | at_us (8) ‖ event id (16) of the latest of those scans |
//! | `g` ‖ group key | [`Figures`], bincode |
//! | `c` ‖ group key ‖ customer | [`CustomerFigures`], bincode |
//!
//! A group key is the group values in `group.by` order, each followed by a
//! 0 byte, so keys sort like the tuples of values and a key splits back
//! into its values. Figures that fall to zero are deleted.
//!
//! Visits follow the activity model's rule over the check-ins that pass the
//! filter: a customer's scans at one site within the visit window of the
//! previous one are one visit, and the visit counts in the group of its
//! first scan (its site, day, hour and activity).

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use checkin_core::EventId;
use checkin_core::record::{CheckIn, RecordBody, Void};
use checkin_core::sites::{LocalPlacement, SiteRegistry};

use super::{Bound, GroupKey, Spec};
use crate::codec::{decode, encode};
use crate::runner::{LedgerEntry, Projection, ProjectionError};
use crate::store::{ModelStore, Overlay};
use crate::visits::{scan_key, start_changes};

/// Version of the [`StoredSpec`] format.
const STORED_SPEC_VERSION: u8 = 1;

const SPEC_KEY: &[u8] = b"m";

/// The columns a model was folded with, stored so that reading the rows
/// needs only the model.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StoredSpec {
    /// Format version, 1.
    pub version: u8,
    /// Spec name.
    pub name: String,
    /// Spec description.
    pub description: String,
    /// Group column names, in output order.
    pub group_by: Vec<String>,
    /// Measure names, in output order.
    pub measures: Vec<String>,
    /// Segment names of the filter, applied when the rows are read; empty for none.
    pub segments: Vec<String>,
}

/// Facts of one counted check-in, kept so that a later void can be reversed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ScanFacts {
    /// Customer id.
    pub customer: String,
    /// Site id.
    pub site: String,
    /// When it happened, UTC microseconds.
    pub at_us: i64,
    /// Group key of the check-in.
    pub group: Vec<u8>,
    /// Whether a void removed it.
    pub voided: bool,
}

/// Measures of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Figures {
    /// Check-ins that are not voided.
    pub check_ins: u64,
    /// Visits whose first scan is in the group.
    pub visits: u64,
    /// Customers with at least one check-in in the group.
    pub unique_customers: u64,
}

/// Measures of one customer in one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct CustomerFigures {
    /// Check-ins that are not voided.
    pub check_ins: u64,
    /// Visits whose first scan is in the group.
    pub visits: u64,
}

/// One result row: group values and measures, both in the spec's column order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecRow {
    /// (column, value) per group column.
    pub group: Vec<(String, String)>,
    /// (measure, value) per measure.
    pub measures: Vec<(String, u64)>,
}

/// The projection of one spec.
pub struct SpecProjection {
    spec: Spec,
    stored: StoredSpec,
    name: &'static str,
    sites: SiteRegistry,
    visit_window_us: i64,
}

impl SpecProjection {
    /// Creates the projection with the sites' calendars and a visit window in seconds.
    ///
    /// The model name is leaked once per call, because [`Projection::name`]
    /// returns a `&'static str`; a process builds a handful of specs at most.
    pub fn new(spec: Spec, sites: SiteRegistry, visit_window_s: i64) -> Self {
        let name: &'static str = Box::leak(spec.model_name().into_boxed_str());
        let stored = StoredSpec {
            version: STORED_SPEC_VERSION,
            name: spec.name.clone(),
            description: spec.description.clone(),
            group_by: spec
                .group_by
                .iter()
                .map(|key| key.as_str().into())
                .collect(),
            measures: spec
                .measures
                .iter()
                .map(|measure| measure.as_str().into())
                .collect(),
            segments: spec
                .filter
                .segments
                .iter()
                .flatten()
                .map(|segment| segment.as_str().into())
                .collect(),
        };
        Self {
            spec,
            stored,
            name,
            sites,
            visit_window_us: visit_window_s * 1_000_000,
        }
    }

    /// Returns the spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    fn add(&self, check_in: &CheckIn, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        let placement = self
            .sites
            .site_or_default(&check_in.site)
            .place(check_in.at_us);
        if !self.matches(check_in, &placement) {
            return Ok(());
        }
        let facts = ScanFacts {
            customer: check_in.customer.clone(),
            site: check_in.site.clone(),
            at_us: check_in.at_us,
            group: self.group_of(check_in, &placement),
            voided: false,
        };
        model.put(event_key(&check_in.event_id), encode(&facts));
        self.update_visits(&facts, &check_in.event_id, true, model)?;
        adjust(model, &facts.group, &facts.customer, 1, 0)
    }

    fn remove(&self, void: &Void, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        let key = event_key(&void.target);
        let Some(bytes) = model.get(&key)? else {
            return Ok(());
        };
        let mut facts: ScanFacts = decode(&key, &bytes)?;
        if facts.voided {
            return Ok(());
        }
        facts.voided = true;
        model.put(key, encode(&facts));
        self.update_visits(&facts, &void.target, false, model)?;
        adjust(model, &facts.group, &facts.customer, -1, 0)
    }

    /// Inserts or removes a scan among the customer's scans at the site and
    /// moves the visits of the scans whose visit starts change, each in its
    /// own group.
    fn update_visits(
        &self,
        facts: &ScanFacts,
        id: &EventId,
        insert: bool,
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        let prefix = scans_prefix(&facts.site, &facts.customer);
        let key = scan_key(&prefix, facts.at_us, id);
        let mut latest_key = prefix.clone();
        latest_key[0] = b'l';
        let changes = start_changes(
            model,
            &prefix,
            &latest_key,
            &key,
            facts.at_us,
            insert,
            self.visit_window_us,
        )?;
        for change in changes {
            let group = if change.key == key {
                facts.group.clone()
            } else {
                model
                    .get(&change.key)?
                    .ok_or_else(|| ProjectionError::Corrupt {
                        key: escaped(&change.key),
                        detail: "scan key has no group".into(),
                    })?
            };
            adjust(model, &group, &facts.customer, 0, change.delta)?;
        }

        if insert {
            model.put(key, facts.group.clone());
        } else {
            model.delete(key);
        }
        Ok(())
    }

    fn matches(&self, check_in: &CheckIn, placement: &LocalPlacement) -> bool {
        let filter = &self.spec.filter;
        let after_from = filter.from.is_none_or(|bound| match bound {
            Bound::Date(date) => placement.business_date >= date,
            Bound::Instant(at_us) => check_in.at_us >= at_us,
        });
        let before_to = filter.to.is_none_or(|bound| match bound {
            Bound::Date(date) => placement.business_date <= date,
            Bound::Instant(at_us) => check_in.at_us <= at_us,
        });
        let site = filter
            .sites
            .as_ref()
            .is_none_or(|sites| sites.contains(&check_in.site));
        let activity = filter.activities.as_ref().is_none_or(|activities| {
            check_in
                .activity
                .as_ref()
                .is_some_and(|activity| activities.contains(activity))
        });
        let method = filter
            .methods
            .as_ref()
            .is_none_or(|methods| methods.contains(check_in.method.as_str()));
        after_from && before_to && site && activity && method
    }

    fn group_of(&self, check_in: &CheckIn, placement: &LocalPlacement) -> Vec<u8> {
        let mut key = Vec::new();
        for column in &self.spec.group_by {
            let value = match column {
                GroupKey::Site => check_in.site.clone(),
                GroupKey::Customer => check_in.customer.clone(),
                GroupKey::Activity => check_in.activity.clone().unwrap_or_default(),
                GroupKey::LocalDay => placement.business_date.format("%Y-%m-%d").to_string(),
                GroupKey::IsoWeek => {
                    format!("{:04}-W{:02}", placement.iso_week.0, placement.iso_week.1)
                }
                GroupKey::Month => format!("{:04}-{:02}", placement.month.0, placement.month.1),
                GroupKey::Hour => format!("{:02}", placement.local_hour),
            };
            key.extend_from_slice(value.as_bytes());
            key.push(0);
        }
        key
    }
}

impl Projection for SpecProjection {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply(&self, entry: &LedgerEntry, model: &mut Overlay<'_>) -> Result<(), ProjectionError> {
        self.apply_batch(std::slice::from_ref(entry), model)
    }

    /// Writes the stored spec once, when the model has none, then applies
    /// the records one by one.
    fn apply_batch(
        &self,
        entries: &[LedgerEntry],
        model: &mut Overlay<'_>,
    ) -> Result<(), ProjectionError> {
        if model.get(SPEC_KEY)?.is_none() {
            model.put(SPEC_KEY.to_vec(), encode(&self.stored));
        }
        for entry in entries {
            match &entry.record.body {
                RecordBody::Genesis(_) => {}
                RecordBody::CheckIn(check_in) => self.add(check_in, model)?,
                RecordBody::Void(void) => self.remove(void, model)?,
            }
        }
        Ok(())
    }
}

/// Adds signed deltas to one customer's figures in a group and to the
/// group's figures; the customer counts as unique while it has check-ins there.
fn adjust(
    model: &mut Overlay<'_>,
    group: &[u8],
    customer: &str,
    check_ins: i64,
    visits: i64,
) -> Result<(), ProjectionError> {
    let customer_key = customer_key(group, customer);
    let before: CustomerFigures = read(model, &customer_key)?;
    let after = CustomerFigures {
        check_ins: before.check_ins.saturating_add_signed(check_ins),
        visits: before.visits.saturating_add_signed(visits),
    };
    write(model, customer_key, &after);

    let group_key = group_key(group);
    let mut figures: Figures = read(model, &group_key)?;
    figures.check_ins = figures.check_ins.saturating_add_signed(check_ins);
    figures.visits = figures.visits.saturating_add_signed(visits);
    if before.check_ins == 0 && after.check_ins > 0 {
        figures.unique_customers += 1;
    } else if before.check_ins > 0 && after.check_ins == 0 {
        figures.unique_customers = figures.unique_customers.saturating_sub(1);
    }
    write(model, group_key, &figures);
    Ok(())
}

fn read<T: Decode<()> + Default>(model: &Overlay<'_>, key: &[u8]) -> Result<T, ProjectionError> {
    match model.get(key)? {
        Some(bytes) => decode(key, &bytes),
        None => Ok(T::default()),
    }
}

fn write<T: Encode + Default + PartialEq>(model: &mut Overlay<'_>, key: Vec<u8>, value: &T) {
    if *value == T::default() {
        model.delete(key);
    } else {
        model.put(key, encode(value));
    }
}

/// Returns the columns the model was folded with, `None` before its first batch.
///
/// # Errors
///
/// Fails when storage fails or the stored spec does not decode.
pub fn stored_spec(store: &ModelStore) -> Result<Option<StoredSpec>, ProjectionError> {
    match store.get(SPEC_KEY)? {
        Some(bytes) => Ok(Some(decode(SPEC_KEY, &bytes)?)),
        None => Ok(None),
    }
}

/// Returns one row per group with at least one check-in, sorted by the group
/// values in column order (byte order of the UTF-8 text). Empty before the
/// model's first batch. The rows count every customer: a spec's `segments`
/// filter needs [`rows_for_customers`].
///
/// # Errors
///
/// Fails when storage fails or a stored value does not decode.
pub fn rows(store: &ModelStore) -> Result<Vec<SpecRow>, ProjectionError> {
    let Some(spec) = stored_spec(store)? else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for (key, bytes) in store.scan_prefix(b"g")? {
        let figures: Figures = decode(&key, &bytes)?;
        let (values, _) = split_group(&key, &key[1..], spec.group_by.len())?;
        rows.push(row(&spec, values, figures));
    }
    Ok(rows)
}

/// Returns the rows counting only the customers for which `keep` holds,
/// such as the members of a segment; groups left without check-ins are
/// omitted. Sorted as [`rows`].
///
/// # Errors
///
/// Fails when storage fails or a stored value does not decode.
pub fn rows_for_customers(
    store: &ModelStore,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Vec<SpecRow>, ProjectionError> {
    let Some(spec) = stored_spec(store)? else {
        return Ok(Vec::new());
    };
    let mut groups: BTreeMap<Vec<String>, Figures> = BTreeMap::new();
    for (key, bytes) in store.scan_prefix(b"c")? {
        let (values, customer) = split_group(&key, &key[1..], spec.group_by.len())?;
        if !keep(&String::from_utf8_lossy(customer)) {
            continue;
        }
        let customer_figures: CustomerFigures = decode(&key, &bytes)?;
        let figures = groups.entry(values).or_default();
        figures.check_ins += customer_figures.check_ins;
        figures.visits += customer_figures.visits;
        if customer_figures.check_ins > 0 {
            figures.unique_customers += 1;
        }
    }
    Ok(groups
        .into_iter()
        .filter(|(_, figures)| figures.check_ins > 0)
        .map(|(values, figures)| row(&spec, values, figures))
        .collect())
}

fn row(spec: &StoredSpec, values: Vec<String>, figures: Figures) -> SpecRow {
    let group = spec.group_by.iter().cloned().zip(values).collect();
    let measures = spec
        .measures
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "check_ins" => figures.check_ins,
                "visits" => figures.visits,
                _ => figures.unique_customers,
            };
            (name.clone(), value)
        })
        .collect();
    SpecRow { group, measures }
}

/// Splits `count` NUL-terminated group values off the front of `bytes` and
/// returns them with the rest.
fn split_group<'a>(
    key: &[u8],
    bytes: &'a [u8],
    count: usize,
) -> Result<(Vec<String>, &'a [u8]), ProjectionError> {
    let mut values = Vec::with_capacity(count);
    let mut rest = bytes;
    for _ in 0..count {
        let Some(end) = rest.iter().position(|byte| *byte == 0) else {
            return Err(ProjectionError::Corrupt {
                key: escaped(key),
                detail: format!("group key has fewer than {count} values"),
            });
        };
        values.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end + 1..];
    }
    Ok((values, rest))
}

fn escaped(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_default().to_string()
}

fn event_key(id: &EventId) -> Vec<u8> {
    let mut key = vec![b'e'];
    key.extend_from_slice(&id.0);
    key
}

fn scans_prefix(site: &str, customer: &str) -> Vec<u8> {
    let mut key = vec![b'v'];
    key.extend_from_slice(site.as_bytes());
    key.push(0);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key
}

fn group_key(group: &[u8]) -> Vec<u8> {
    let mut key = vec![b'g'];
    key.extend_from_slice(group);
    key
}

fn customer_key(group: &[u8], customer: &str) -> Vec<u8> {
    let mut key = vec![b'c'];
    key.extend_from_slice(group);
    key.extend_from_slice(customer.as_bytes());
    key
}
