//! `checkin query`: reads the read models of a stopped projector.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use checkin_projections::activity::Activity;
use checkin_projections::frequency::Frequency;
use checkin_projections::segments::Segment;
use checkin_server::views;
use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use crate::config::Config;
use crate::project::open_model;

/// Parses `--as-of`, or takes the latest visit in the models so that results
/// for the same ledger are always the same.
fn reference_time(data_dir: &Path, config: &Config, as_of: Option<&str>) -> anyhow::Result<i64> {
    if let Some(text) = as_of {
        let at = DateTime::parse_from_rfc3339(text).with_context(|| {
            format!("invalid --as-of {text:?}: expected an RFC 3339 time such as 2026-05-01T09:30:00+08:00")
        })?;
        return Ok(at.timestamp_micros());
    }
    let store = open_model(data_dir, config, Frequency::NAME)?;
    Ok(views::latest_visit_us(&store)?)
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
    let frequency_store = open_model(data_dir, config, Frequency::NAME)?;
    let activity_store = open_model(data_dir, config, Activity::NAME)?;
    let rules = config.segments.clone();
    let Some(view) = views::customer(&frequency_store, &activity_store, id, &rules, as_of_us)?
    else {
        bail!("customer {id} has no check-in in the read models");
    };

    if json_output {
        println!("{view}");
    } else {
        print_customer(&view);
    }
    Ok(ExitCode::SUCCESS)
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
    if (to - from).num_days() >= views::MAX_DAYS {
        bail!(
            "--from {from} to --to {to} spans {} days or more; ask for a shorter range",
            views::MAX_DAYS
        );
    }

    let store = open_model(data_dir, config, Activity::NAME)?;
    for day in views::site_days(&store, id, from, to)? {
        if json_output {
            println!("{day}");
        } else {
            println!(
                "{id}\t{}\tcheck-ins {}\tvisits {}\tcustomers {}",
                day["date"].as_str().unwrap_or("-"),
                day["check_ins"],
                day["visits"],
                day["unique_customers"]
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
    if limit == 0 || limit > views::MAX_PAGE {
        bail!(
            "--limit must be between 1 and {}, found {limit}",
            views::MAX_PAGE
        );
    }
    let as_of_us = reference_time(data_dir, config, as_of)?;
    let rules = config.segments.clone();

    let store = open_model(data_dir, config, Frequency::NAME)?;
    for member in views::segment_members(&store, wanted, &rules, as_of_us, 0, limit)? {
        if json_output {
            println!("{member}");
        } else {
            println!(
                "{}\tvisits {}\tlast visit {}",
                member["customer"].as_str().unwrap_or("-"),
                member["visits"],
                member["last_visit"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_date(option: &str, text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("invalid {option} {text:?}: expected a date such as 2026-05-01"))
}
