//! `checkin import foursquare`: replays a Foursquare check-in file through
//! the edge path (outbox, publisher, historical-import intake).
//!
//! The sequencer and the projectors learn sites from the configuration at
//! start. So the import first makes sure every venue is a configured site
//! with the requested time zone. When some are not, it writes them to a site
//! file in `sites.d/` beside the configuration, publishes nothing and tells
//! the user to restart the roles. Publishing first would turn every check-in
//! of an unknown venue into an `unknown_site` rejection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use checkin_core::sites::Site;
use checkin_edge::foursquare::{self, FileIdentity, RowError};
use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
use chrono_tz::Tz;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, SiteFile};

/// Exit code when the import registered new sites and published nothing.
pub const EXIT_SITES_REGISTERED: u8 = 3;
/// Submissions written to the outbox per flush.
const ENQUEUE_BATCH: usize = 500;
/// Invalid rows listed one by one; the rest are only counted.
const MAX_LISTED_INVALID: u64 = 100;

/// Arguments of `checkin import foursquare`.
pub struct ImportRequest<'a> {
    pub file: &'a Path,
    pub limit: Option<u64>,
    pub site_tz: Tz,
    pub outbox_dir: PathBuf,
    pub config: &'a Config,
    pub config_path: Option<&'a Path>,
}

/// Counts for the closing summary.
#[derive(Default)]
struct Summary {
    rows_read: u64,
    submitted: u64,
    invalid: BTreeMap<&'static str, u64>,
    duplicates_in_file: u64,
}

pub async fn foursquare(
    client: async_nats::Client,
    request: ImportRequest<'_>,
) -> anyhow::Result<ExitCode> {
    let file = request.file.to_path_buf();
    let limit = request.limit;
    let (identity, venues, rows) = tokio::task::spawn_blocking(move || scan(&file, limit))
        .await
        .context("the file scan panicked")??;

    let missing = missing_sites(request.config, &venues, request.site_tz)?;
    if !missing.is_empty() {
        let path = register_sites(&request, &identity, &missing)?;
        outln!(
            "sites_registered: wrote {} new sites to {}; restart the sequencer and projectors (or `checkin up`) so that they load them, then run this import again",
            missing.len(),
            path.display()
        )?;
        outln!(
            "sites_registered: 已将 {} 个新地点写入 {}；请重启 sequencer 和 projector（或 `checkin up`）以加载它们，然后再次运行本导入",
            missing.len(),
            path.display()
        )?;
        return Ok(ExitCode::from(EXIT_SITES_REGISTERED));
    }

    let outbox = Outbox::open(&request.outbox_dir)
        .with_context(|| format!("failed to open the outbox {}", request.outbox_dir.display()))?;
    let publisher = Publisher::new(
        async_nats::jetstream::new(client),
        outbox.clone(),
        PublisherConfig::default(),
    );
    let started = Instant::now();
    let summary = publish_rows(&request, identity, rows, outbox, publisher).await?;
    print_summary(&summary, started.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the file once: its identity, the venues of its valid rows and its row count.
fn scan(path: &Path, limit: Option<u64>) -> anyhow::Result<(FileIdentity, BTreeSet<String>, u64)> {
    let identity =
        foursquare::identify(path).with_context(|| format!("failed to read {}", path.display()))?;
    let mut venues = BTreeSet::new();
    let mut rows = 0;
    let reader =
        foursquare::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    for line in foursquare::lines(reader) {
        if limit.is_some_and(|limit| rows >= limit) {
            break;
        }
        let (_, bytes) = line.with_context(|| format!("failed to read {}", path.display()))?;
        rows += 1;
        if let Ok(row) = foursquare::parse_line(&bytes) {
            venues.insert(row.site());
        }
    }
    Ok((identity, venues, rows))
}

/// Returns the venues that are not configured sites. A venue configured with
/// another time zone is an error, because its days would be counted in a zone
/// the caller did not ask for.
fn missing_sites(
    config: &Config,
    venues: &BTreeSet<String>,
    zone: Tz,
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for venue in venues {
        match config.sites.get(venue) {
            None => missing.push(venue.clone()),
            Some(site) if site.time_zone != zone => bail!(
                "site {venue} is configured with time zone {}, not {zone}; pass --site-tz {} or change its definition",
                site.time_zone,
                site.time_zone
            ),
            Some(_) => {}
        }
    }
    Ok(missing)
}

/// Writes the missing venues to `sites.d/foursquare-<digest>.toml` and returns its path.
fn register_sites(
    request: &ImportRequest<'_>,
    identity: &FileIdentity,
    missing: &[String],
) -> anyhow::Result<PathBuf> {
    let dir = Config::sites_dir(request.config_path);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let path = dir.join(format!("foursquare-{}.toml", &identity.to_hex()[..16]));

    // A venue already listed by an earlier run of the same file keeps its entry.
    let mut file = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str::<SiteFile>(&text)
            .with_context(|| format!("invalid site file {}", path.display()))?,
        Err(_) => SiteFile::default(),
    };
    for venue in missing {
        let site = Site {
            name: None,
            time_zone: request.site_tz,
            day_start_hour: 0,
        };
        file.sites.insert(venue.clone(), site);
    }

    let header = format!(
        "# Venues of {} (BLAKE3 {}), written by `checkin import foursquare`.\n",
        request.file.display(),
        identity.to_hex()
    );
    let text = header + &toml::to_string(&file).context("failed to encode the site file")?;
    std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

async fn publish_rows(
    request: &ImportRequest<'_>,
    identity: FileIdentity,
    rows: u64,
    outbox: Outbox,
    mut publisher: Publisher,
) -> anyhow::Result<Summary> {
    let metrics = publisher.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        publisher
            .run_until_drained(async {
                let _ = stopped.await;
            })
            .await
    });

    let progress = progress_bar(rows);
    let mut summary = Summary::default();
    let mut seen_lines: HashMap<blake3::Hash, u64> = HashMap::new();
    let mut batch: Vec<(String, Vec<u8>)> = Vec::with_capacity(ENQUEUE_BATCH);
    let reader = foursquare::open(request.file)
        .with_context(|| format!("failed to open {}", request.file.display()))?;

    for line in foursquare::lines(reader) {
        if request
            .limit
            .is_some_and(|limit| summary.rows_read >= limit)
        {
            break;
        }
        let (number, bytes) =
            line.with_context(|| format!("failed to read {}", request.file.display()))?;
        summary.rows_read += 1;
        progress.inc(1);

        match foursquare::parse_line(&bytes) {
            Err(error) => report_invalid(&mut summary, &progress, number, &error),
            Ok(row) => {
                if let Some(first) = seen_lines.get(&blake3::hash(&bytes)) {
                    summary.duplicates_in_file += 1;
                    progress.suspend(|| {
                        eprintln!("line {number}: duplicate_row: same bytes as line {first}, skipped / 与第 {first} 行完全相同，已跳过");
                    });
                    continue;
                }
                seen_lines.insert(blake3::hash(&bytes), number);
                let id = identity.event_id(number).hyphenated().to_string();
                batch.push((id, row.submission(identity.event_id(number), number)));
            }
        }

        if batch.len() >= ENQUEUE_BATCH {
            summary.submitted += enqueue(&outbox, &mut batch).await?;
            let acked = metrics.snapshot().acked;
            progress.set_message(format!("{acked} acknowledged"));
        }
    }
    summary.submitted += enqueue(&outbox, &mut batch).await?;

    progress.set_message("waiting for intake to acknowledge the rest");
    let _ = stop.send(());
    running
        .await
        .context("the publisher task panicked")?
        .context("failed to publish from the outbox")?;
    progress.finish_and_clear();

    let snapshot = metrics.snapshot();
    outln!(
        "intake acknowledged {} (duplicates within its window: {}), retries {}",
        snapshot.acked,
        snapshot.duplicates,
        snapshot.retries
    )?;
    Ok(summary)
}

async fn enqueue(outbox: &Outbox, batch: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<u64> {
    let entries = batch
        .iter()
        .map(|(id, payload)| (IntakeSubject::Import, id.as_str(), payload.as_slice()));
    let count = outbox
        .enqueue_batch(entries)
        .await
        .context("failed to write to the outbox")?;
    batch.clear();
    Ok(count as u64)
}

fn report_invalid(summary: &mut Summary, progress: &ProgressBar, line: u64, error: &RowError) {
    let invalid: u64 = summary.invalid.values().sum();
    *summary.invalid.entry(error.code()).or_default() += 1;
    if invalid < MAX_LISTED_INVALID {
        progress.suspend(|| {
            eprintln!(
                "line {line}: {}: {} / {}",
                error.code(),
                error.message_en(),
                error.message_zh()
            );
        });
    }
}

fn progress_bar(rows: u64) -> ProgressBar {
    // indicatif draws on standard error and hides the bar when it is not a terminal.
    let progress = ProgressBar::new(rows);
    let style =
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}  {msg}")
            .expect("the progress template is valid");
    progress.set_style(style);
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

fn print_summary(summary: &Summary, elapsed: Duration) -> std::io::Result<()> {
    let invalid: u64 = summary.invalid.values().sum();
    let seconds = elapsed.as_secs_f64().max(0.001);
    outln!("rows read / 读取行数:               {}", summary.rows_read)?;
    outln!("submitted / 已提交:                 {}", summary.submitted)?;
    outln!("invalid rows / 无效行:              {invalid}")?;
    for (code, count) in &summary.invalid {
        outln!("  {code}: {count}")?;
    }
    outln!(
        "duplicates in file / 文件内重复行:  {}",
        summary.duplicates_in_file
    )?;
    outln!(
        "elapsed / 用时:                     {:.2} s ({:.0} rows/s)",
        seconds,
        summary.rows_read as f64 / seconds
    )?;
    Ok(())
}
