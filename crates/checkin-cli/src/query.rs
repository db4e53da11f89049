//! `checkin query`: reads the read models directly, or through the running
//! query API while a projector has them open, because sled lets only one
//! process open a model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use checkin_projections::activity::Activity;
use checkin_projections::frequency::Frequency;
use checkin_projections::segments::Segment;
use checkin_server::views;
use chrono::{DateTime, NaiveDate};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::config::Config;
use crate::project::{model_dir, open_model};

/// Source of the read models: their directory, or the query API.
pub struct Source<'a> {
    /// Data directory of the models.
    pub data_dir: &'a Path,
    /// Configuration of the ledger.
    pub config: &'a Config,
    /// Base URL of the query API, used while a running projector has the models open.
    pub api: &'a str,
}

impl Source<'_> {
    /// Tells whether this process can open the models, which it cannot while a projector runs.
    ///
    /// # Errors
    ///
    /// Fails when the data directory has no read models at all, because
    /// opening them there would create empty ones and print zeros for a
    /// mistyped `--data-dir` or a query run from another directory.
    fn models_free(&self) -> anyhow::Result<bool> {
        let dir = model_dir(self.data_dir, self.config, Frequency::NAME);
        if !dir.exists() {
            bail!(
                "no read models in {}; run `checkin project --until-head` or `checkin up` \
                 there first, or pass the --data-dir that they use",
                self.data_dir.display()
            );
        }
        Ok(open_model(self.data_dir, self.config, Frequency::NAME).is_ok())
    }

    /// Sends a GET to the query API and returns the JSON body, or the API's error message.
    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.api.trim_end_matches('/'));
        let mut response = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| {
                format!(
                    "a running projector holds the read models and its query API at {} did not answer; \
                     pass --api URL, or stop the projector",
                    self.api
                )
            })?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .context("failed to read the query API's response")?;
        let body: Value =
            serde_json::from_str(&text).context("the query API returned invalid JSON")?;
        if !status.is_success() {
            bail!(
                "{} ({})",
                body["message"].as_str().unwrap_or("request failed"),
                body["code"].as_str().unwrap_or("error")
            );
        }
        Ok(body)
    }
}

/// Percent-encodes one URL path segment or query value.
fn encoded(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

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
    source: &Source<'_>,
    id: &str,
    as_of: Option<&str>,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(text) = as_of {
        DateTime::parse_from_rfc3339(text).with_context(|| {
            format!("invalid --as-of {text:?}: expected an RFC 3339 time such as 2026-05-01T09:30:00+08:00")
        })?;
    }
    let view = if source.models_free()? {
        local_customer(source, id, as_of)?
    } else {
        let query = as_of
            .map(|at| format!("?as_of={}", encoded(at)))
            .unwrap_or_default();
        source.get(&format!("/v1/customers/{}{query}", encoded(id)))?
    };

    if json_output {
        outln!("{view}")?;
    } else {
        print_customer(&view)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn local_customer(source: &Source<'_>, id: &str, as_of: Option<&str>) -> anyhow::Result<Value> {
    let as_of_us = reference_time(source.data_dir, source.config, as_of)?;
    let frequency_store = open_model(source.data_dir, source.config, Frequency::NAME)?;
    let activity_store = open_model(source.data_dir, source.config, Activity::NAME)?;
    match views::customer(
        &frequency_store,
        &activity_store,
        id,
        &source.config.segments,
        as_of_us,
    )? {
        Some(view) => Ok(view),
        None => bail!("customer {id} has no check-in in the read models"),
    }
}

fn print_customer(view: &Value) -> std::io::Result<()> {
    let text = |key: &str| match &view[key] {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    outln!("customer {}  (as of {})", text("customer"), text("as_of"))?;
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
        outln!("  {key:<20}{}", text(key))?;
    }
    outln!("  visits per month    {}", view["visits_per_month"])?;
    outln!("  recent check-ins:")?;
    for entry in view["recent_check_ins"].as_array().into_iter().flatten() {
        outln!(
            "    seq {:<8} {}  {}",
            entry["seq"],
            entry["at"].as_str().unwrap_or("-"),
            entry["site"].as_str().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// Prints a site's figures per business day.
pub fn site(
    source: &Source<'_>,
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

    let days = if source.models_free()? {
        let store = open_model(source.data_dir, source.config, Activity::NAME)?;
        views::site_days(&store, id, from, to)?
    } else {
        let body = source.get(&format!(
            "/v1/sites/{}/days?from={from}&to={to}",
            encoded(id)
        ))?;
        body["days"].as_array().cloned().unwrap_or_default()
    };
    for day in days {
        if json_output {
            outln!("{day}")?;
        } else {
            outln!(
                "{id}\t{}\tcheck-ins {}\tvisits {}\tcustomers {}",
                day["date"].as_str().unwrap_or("-"),
                day["check_ins"],
                day["visits"],
                day["unique_customers"]
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the members of a segment as of the reference time.
pub fn segment(
    source: &Source<'_>,
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

    let members = if source.models_free()? {
        let as_of_us = reference_time(source.data_dir, source.config, as_of)?;
        let store = open_model(source.data_dir, source.config, Frequency::NAME)?;
        views::segment_members(&store, wanted, &source.config.segments, as_of_us, 0, limit)?
    } else {
        let as_of = as_of
            .map(|at| format!("&as_of={}", encoded(at)))
            .unwrap_or_default();
        let body = source.get(&format!("/v1/segments/{name}?limit={limit}{as_of}"))?;
        body["items"].as_array().cloned().unwrap_or_default()
    };
    for member in members {
        if json_output {
            outln!("{member}")?;
        } else {
            outln!(
                "{}\tvisits {}\tlast visit {}",
                member["customer"].as_str().unwrap_or("-"),
                member["visits"],
                member["last_visit"].as_str().unwrap_or("-")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_date(option: &str, text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("invalid {option} {text:?}: expected a date such as 2026-05-01"))
}
