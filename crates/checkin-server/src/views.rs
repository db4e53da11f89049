//! The JSON views of the read models, shared by the HTTP API and the CLI.

use std::collections::BTreeMap;

use checkin_projections::activity::{self, TimelineEntry};
use checkin_projections::frequency::{self, CustomerSummary};
use checkin_projections::runner::ProjectionError;
use checkin_projections::segments::{Segment, SegmentRules};
use checkin_projections::store::ModelStore;
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Most timeline entries, days or segment members one request returns.
pub const MAX_PAGE: usize = 500;

/// Maximum site-day range of one request, in days.
pub const MAX_DAYS: i64 = 366;

/// Returns the reference time for segments: the latest visit in the models,
/// so that results for one ledger do not change with the clock; now when empty.
///
/// # Errors
///
/// Fails when storage fails.
pub fn latest_visit_us(frequency_store: &ModelStore) -> Result<i64, ProjectionError> {
    let mut latest = None;
    frequency::for_each_customer(frequency_store, |_, summary| {
        latest = latest.max(summary.last_visit_us);
    })?;
    Ok(latest.unwrap_or_else(|| Utc::now().timestamp_micros()))
}

/// Builds a customer's view; `None` when the customer has no check-in.
///
/// # Errors
///
/// Fails when storage fails.
pub fn customer(
    frequency_store: &ModelStore,
    activity_store: &ModelStore,
    id: &str,
    rules: &SegmentRules,
    as_of_us: i64,
) -> Result<Option<Value>, ProjectionError> {
    let Some(summary) = frequency::customer(frequency_store, id)? else {
        return Ok(None);
    };
    let recent = activity::timeline(activity_store, id, 0, 20)?;
    let mut view = customer_json(id, &summary, rules, as_of_us, &recent);
    let history: Vec<Value> = frequency::segment_history(frequency_store, id)?
        .into_iter()
        .map(|(date, segment)| json!({"date": date.to_string(), "segment": segment.as_str()}))
        .collect();
    view["segment_history"] = json!(history);
    Ok(Some(view))
}

fn customer_json(
    id: &str,
    summary: &CustomerSummary,
    rules: &SegmentRules,
    as_of_us: i64,
    recent: &[TimelineEntry],
) -> Value {
    let mut weeks = BTreeMap::<String, u32>::new();
    let mut months = BTreeMap::<String, u32>::new();
    let mut days = serde_json::Map::new();
    for (day, visits) in &summary.visits_per_day {
        let Some(date) = NaiveDate::from_num_days_from_ce_opt(*day) else {
            continue;
        };
        let week = date.iso_week();
        *weeks
            .entry(format!("{}-W{:02}", week.year(), week.week()))
            .or_default() += visits;
        *months.entry(date.format("%Y-%m").to_string()).or_default() += visits;
        days.insert(date.to_string(), json!(visits));
    }

    json!({
        "customer": id,
        "as_of": utc(as_of_us),
        "segment": rules.classify(summary, as_of_us).as_str(),
        "check_ins": summary.check_ins,
        "visits": summary.visits,
        "first_visit": summary.first_visit_us.map(utc),
        "last_visit": summary.last_visit_us.map(utc),
        "distinct_sites": summary.distinct_sites,
        "current_streak_days": rules.current_streak_days(summary, as_of_us),
        "longest_streak_days": summary.longest_streak_days,
        "typical_gap_days": summary.typical_gap_days,
        "visits_per_day": days,
        "visits_per_week": weeks,
        "visits_per_month": months,
        "recent_check_ins": recent.iter().map(timeline_json).collect::<Vec<_>>(),
    })
}

/// Builds one timeline entry's view.
pub fn timeline_json(entry: &TimelineEntry) -> Value {
    json!({"seq": entry.seq, "event_id": entry.event_id, "site": entry.site, "at": utc(entry.at_us)})
}

/// Builds a site's view per business day from `from` through `to`.
///
/// # Errors
///
/// Fails when storage fails.
pub fn site_days(
    store: &ModelStore,
    site: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Value>, ProjectionError> {
    Ok(activity::site_days(store, site, from, to)?
        .into_iter()
        .map(|(date, figures)| {
            json!({
                "site": site,
                "date": date.to_string(),
                "check_ins": figures.check_ins,
                "visits": figures.visits,
                "unique_customers": figures.unique_customers,
            })
        })
        .collect())
}

/// Lists a segment's members in customer order, skipping `skip` and
/// returning at most `limit`, as of `as_of_us`.
///
/// # Errors
///
/// Fails when storage fails.
pub fn segment_members(
    store: &ModelStore,
    segment: Segment,
    rules: &SegmentRules,
    as_of_us: i64,
    skip: usize,
    limit: usize,
) -> Result<Vec<Value>, ProjectionError> {
    let mut members = Vec::new();
    let mut matched = 0usize;
    frequency::for_each_customer(store, |customer, summary| {
        if members.len() >= limit || rules.classify(summary, as_of_us) != segment {
            return;
        }
        matched += 1;
        if matched > skip {
            members.push(json!({
                "customer": customer,
                "visits": summary.visits,
                "last_visit": summary.last_visit_us.map(utc),
            }));
        }
    })?;
    Ok(members)
}

/// Formats UTC microseconds as RFC 3339 with a `Z`.
pub fn utc(at_us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(at_us)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}
