//! `checkin query`: reads the read models of a stopped projector.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use checkin_projections::activity::{self, Activity};
use checkin_projections::frequency::{self, CustomerSummary, Frequency};
use checkin_projections::segments::{Segment, SegmentRules};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::project::open_model;

/// Most timeline entries and segment members one query returns.
pub const MAX_PAGE: usize = 500;

/// Parses `--as-of`, or takes the latest visit in the models so that answers
/// about the same ledger are always the same.
fn reference_time(data_dir: &Path, config: &Config, as_of: Option<&str>) -> anyhow::Result<i64> {
    if let Some(text) = as_of {
        let at = DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("invalid --as-of {text:?}: expected an RFC 3339 time such as 2026-05-01T09:30:00+08:00"))?;
        return Ok(at.timestamp_micros());
    }
    let store = open_model(data_dir, config, Frequency::NAME)?;
    let mut latest = None;
    frequency::for_each_customer(&store, |_, summary| {
        latest = latest.max(summary.last_visit_us);
    })?;
    Ok(latest.unwrap_or_else(|| Utc::now().timestamp_micros()))
}

/// Prints one customer's figures, segment and latest check-ins.
pub fn customer(
    data_dir: &Path,
    config: &Config,
    id: &str,
    as_of: Option<&str>,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let as_of_us = reference_time(data_dir, config, as_of)?;
    let rules = SegmentRules::default();
    let summary = {
        let store = open_model(data_dir, config, Frequency::NAME)?;
        frequency::customer(&store, id)?
    };
    let Some(summary) = summary else {
        bail!("customer {id} has no check-in in the read models");
    };
    let timeline = {
        let store = open_model(data_dir, config, Activity::NAME)?;
        activity::timeline(&store, id, 0, 20)?
    };

    let view = customer_json(id, &summary, &rules, as_of_us, &timeline);
    if json_output {
        println!("{view}");
    } else {
        print_customer(&view);
    }
    Ok(ExitCode::SUCCESS)
}

fn customer_json(
    id: &str,
    summary: &CustomerSummary,
    rules: &SegmentRules,
    as_of_us: i64,
    timeline: &[activity::TimelineEntry],
) -> Value {
    let mut weeks = std::collections::BTreeMap::<String, u32>::new();
    let mut months = std::collections::BTreeMap::<String, u32>::new();
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
    let recent: Vec<Value> = timeline
        .iter()
        .map(|entry| json!({"seq": entry.seq, "event_id": entry.event_id, "site": entry.site, "at": utc(entry.at_us)}))
        .collect();

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
        "recent_check_ins": recent,
    })
}

fn print_customer(view: &Value) {
    let text = |key: &str| match &view[key] {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("customer {}  (as of {})", text("customer"), text("as_of"));
    for key in [
        "segment",
        "check_ins",
        "visits",
        "first_visit",
        "last_visit",
        "distinct_sites",
        "current_streak_days",
        "longest_streak_days",
        "typical_gap_days",
    ] {
        println!("  {key:<20}{}", text(key));
    }
    println!("  visits per month    {}", view["visits_per_month"]);
    println!("  recent check-ins:");
    for entry in view["recent_check_ins"].as_array().into_iter().flatten() {
        println!(
            "    seq {:<8} {}  {}",
            entry["seq"],
            entry["at"].as_str().unwrap_or("-"),
            entry["site"].as_str().unwrap_or("-")
        );
    }
}

/// Prints a site's figures per business day.
pub fn site(
    data_dir: &Path,
    config: &Config,
    id: &str,
    from: &str,
    to: &str,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let from = parse_date("--from", from)?;
    let to = parse_date("--to", to)?;
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    if (to - from).num_days() > 366 {
        bail!("--from {from} to --to {to} spans more than 366 days; ask for a shorter range");
    }

    let store = open_model(data_dir, config, Activity::NAME)?;
    let days = activity::site_days(&store, id, from, to)?;
    for (date, figures) in days {
        if json_output {
            println!(
                "{}",
                json!({"site": id, "date": date.to_string(), "check_ins": figures.check_ins, "visits": figures.visits, "unique_customers": figures.unique_customers})
            );
        } else {
            println!(
                "{id}\t{date}\tcheck-ins {}\tvisits {}\tcustomers {}",
                figures.check_ins, figures.visits, figures.unique_customers
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the members of a segment as of the reference time.
pub fn segment(
    data_dir: &Path,
    config: &Config,
    name: &str,
    as_of: Option<&str>,
    limit: usize,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let Some(wanted) = Segment::from_name(name) else {
        let names: Vec<&str> = Segment::ALL
            .iter()
            .map(|segment| segment.as_str())
            .collect();
        bail!(
            "unknown segment {name:?}; expected one of {}",
            names.join(", ")
        );
    };
    if limit == 0 || limit > MAX_PAGE {
        bail!("--limit must be between 1 and {MAX_PAGE}, found {limit}");
    }
    let as_of_us = reference_time(data_dir, config, as_of)?;
    let rules = SegmentRules::default();

    let store = open_model(data_dir, config, Frequency::NAME)?;
    let mut members = Vec::new();
    frequency::for_each_customer(&store, |customer, summary| {
        if members.len() < limit && rules.classify(summary, as_of_us) == wanted {
            members.push((customer.to_string(), summary.visits, summary.last_visit_us));
        }
    })?;

    for (customer, visits, last_visit) in members {
        if json_output {
            println!(
                "{}",
                json!({"segment": name, "customer": customer, "visits": visits, "last_visit": last_visit.map(utc)})
            );
        } else {
            println!(
                "{customer}\tvisits {visits}\tlast visit {}",
                last_visit.map(utc).unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_date(option: &str, text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("invalid {option} {text:?}: expected a date such as 2026-05-01"))
}

fn utc(at_us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(at_us)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}
