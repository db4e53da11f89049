//! `checkin project spec FILE` builds a spec projection from all of the
//! ledger, and `checkin query spec NAME` prints its rows as text, JSON Lines
//! or CSV.
//!
//! A build folds into a fresh directory next to the model and swaps it in
//! only when the fold has reached the ledger's head, so a failed or stopped
//! build leaves the previous model in place.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use async_nats::jetstream;
use checkin_projections::frequency::{self, Frequency};
use checkin_projections::runner::{Runner, Until};
use checkin_projections::spec::{self, SpecError, SpecProjection, SpecRow};
use checkin_projections::store::ModelStore;
use checkin_server::views;
use chrono::DateTime;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::project::{models_dir, open_model};

/// UTF-8 byte order mark; Excel needs it to read CSV files as UTF-8.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A spec model built up to a ledger sequence.
pub struct BuiltSpec {
    /// Model name, such as `spec_gym_weekly`.
    pub model: String,
    /// Directory of the model.
    pub dir: PathBuf,
    /// Last ledger sequence folded in.
    pub seq: u64,
    /// Digest of the model and its checkpoint, as `checkin project digest` prints it.
    pub digest: String,
}

/// Output format of `checkin query spec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tab-separated text with a header line.
    Text,
    /// One JSON object per row.
    Json,
    /// CSV with CRLF line ends, with or without a UTF-8 byte order mark.
    Csv {
        /// Whether to start with the byte order mark.
        bom: bool,
    },
}

/// Reads and validates a spec file.
///
/// # Errors
///
/// Fails when the file cannot be read or breaks a rule; the message has the
/// rule's code and the English and Chinese text.
pub fn load_spec(path: &Path) -> anyhow::Result<spec::Spec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read spec file {}", path.display()))?;
    spec::parse(&text).map_err(|err| spec_error(path, &err))
}

fn spec_error(path: &Path, err: &SpecError) -> anyhow::Error {
    anyhow::anyhow!(
        "invalid spec file {}: {} [{}]\n{}",
        path.display(),
        err.message(),
        err.code(),
        err.message_zh()
    )
}

/// Builds the spec in `spec_file` from the whole ledger, up to the head as
/// it is when the build starts, into a fresh store that then replaces
/// `<data-dir>/models/<ledger>/spec_NAME`.
///
/// # Errors
///
/// Fails when the spec is invalid, the ledger cannot be read or fails
/// verification, storage fails, or `shutdown` completes before the head is
/// reached. The previous model then stays as it was.
pub async fn build_spec(
    js: &jetstream::Context,
    data_dir: &Path,
    config: &Config,
    spec_file: &Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<BuiltSpec> {
    let spec = load_spec(spec_file)?;
    let model = spec.model_name();
    let models = models_dir(data_dir, config);
    let dir = models.join(&model);
    let building = models.join(format!("{model}.building"));
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .with_context(|| format!("failed to remove {}", building.display()))?;
    }
    std::fs::create_dir_all(&building)
        .with_context(|| format!("failed to create {}", building.display()))?;

    let store = ModelStore::open(&building, &model)
        .with_context(|| format!("failed to open {}", building.display()))?;
    let sites = config.sequencer_config().sites;
    let projection = SpecProjection::new(spec, sites, config.projections.visit_window_s);
    let mut runner = Runner::new(js, store, projection)
        .await
        .context("failed to open the ledger")?;
    let head = runner.ledger_head().await?;
    let reached = runner
        .run(Until::Seq(head), shutdown)
        .await
        .with_context(|| format!("failed to build {model}"))?;
    if reached.seq < head {
        bail!(
            "stopped building {model} at seq {} before the ledger head {head}; the previous model is unchanged",
            reached.seq
        );
    }
    runner.store().flush().await?;
    let digest = runner.store().digest()?;
    drop(runner);

    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("failed to remove the previous {}", dir.display()))?;
    }
    std::fs::rename(&building, &dir)
        .with_context(|| format!("failed to move {} to {}", building.display(), dir.display()))?;
    Ok(BuiltSpec {
        model,
        dir,
        seq: reached.seq,
        digest,
    })
}

/// Prints the rows of spec model `spec_NAME` in `format`, to `out` or
/// standard output. A spec with a segment filter counts the customers in
/// those segments as of `as_of` (RFC 3339) or, by default, the latest visit
/// in the frequency model, so that the same ledger gives the same rows.
///
/// # Errors
///
/// Fails when the name is invalid, the model was not built, the frequency
/// model cannot be opened for a segment filter, or the output cannot be written.
pub fn query(
    data_dir: &Path,
    config: &Config,
    name: &str,
    format: Format,
    out: Option<&Path>,
    as_of: Option<&str>,
) -> anyhow::Result<ExitCode> {
    spec::validate_name(name).map_err(|err| spec_error(Path::new("argument NAME"), &err))?;
    let model = format!("{}{name}", spec::MODEL_PREFIX);
    let dir = models_dir(data_dir, config).join(&model);
    if !dir.exists() {
        bail!(
            "spec model {model} not found in {}; build it with `checkin project spec FILE`",
            dir.display()
        );
    }
    let store = open_model(data_dir, config, &model)?;
    let Some(stored) = spec::stored_spec(&store)? else {
        bail!("spec model {model} is empty; build it again with `checkin project spec FILE`");
    };

    let rows = if stored.segments.is_empty() {
        spec::rows(&store)?
    } else {
        let members = segment_members(data_dir, config, &stored.segments, as_of)?;
        spec::rows_for_customers(&store, |customer| members.contains(customer))?
    };
    let mut columns = stored.group_by.clone();
    columns.extend(stored.measures.iter().cloned());
    let bytes = render(&columns, &rows, format)?;

    match out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => std::io::stdout()
            .write_all(&bytes)
            .context("failed to write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the customers whose segment as of the reference time is one of `segments`.
fn segment_members(
    data_dir: &Path,
    config: &Config,
    segments: &[String],
    as_of: Option<&str>,
) -> anyhow::Result<BTreeSet<String>> {
    let store = open_model(data_dir, config, Frequency::NAME)?;
    let as_of_us = match as_of {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| {
                format!("invalid --as-of {text:?}: expected an RFC 3339 time such as 2026-05-01T09:30:00+08:00")
            })?
            .timestamp_micros(),
        None => views::latest_visit_us(&store)?,
    };
    let mut members = BTreeSet::new();
    frequency::for_each_customer(&store, |customer, summary| {
        let segment = config.segments.classify(summary, as_of_us);
        if segments.iter().any(|name| name == segment.as_str()) {
            members.insert(customer.to_string());
        }
    })?;
    Ok(members)
}

/// Renders the rows with a header of `columns`: group columns, then measures.
fn render(columns: &[String], rows: &[SpecRow], format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Text => {
            let mut text = columns.join("\t");
            text.push('\n');
            for row in rows {
                text.push_str(&cells(row).join("\t"));
                text.push('\n');
            }
            Ok(text.into_bytes())
        }
        Format::Json => {
            let mut text = String::new();
            for row in rows {
                let mut object = Map::new();
                for (column, value) in &row.group {
                    object.insert(column.clone(), Value::from(value.as_str()));
                }
                for (measure, value) in &row.measures {
                    object.insert(measure.clone(), Value::from(*value));
                }
                text.push_str(&Value::Object(object).to_string());
                text.push('\n');
            }
            Ok(text.into_bytes())
        }
        Format::Csv { bom } => {
            let mut bytes = if bom { BOM.to_vec() } else { Vec::new() };
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(&mut bytes);
            writer.write_record(columns)?;
            for row in rows {
                writer.write_record(cells(row))?;
            }
            writer.flush()?;
            drop(writer);
            Ok(bytes)
        }
    }
}

/// Returns a row's group values then measure values, as text.
fn cells(row: &SpecRow) -> Vec<String> {
    let group = row.group.iter().map(|(_, value)| value.clone());
    let measures = row.measures.iter().map(|(_, value)| value.to_string());
    group.chain(measures).collect()
}
