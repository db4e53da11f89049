//! The subcommands' implementations.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::jetstream;
use checkin_core::validate::MAX_SUBMISSION_BYTES;
use checkin_ledger::reader::StreamReader;
use checkin_ledger::rejected::RejectedEntry;
use checkin_ledger::sequencer::Sequencer;
use checkin_ledger::topology::{
    INTAKE_IMPORT, INTAKE_LIVE, INTAKE_MAX_MESSAGE_BYTES, INTAKE_VOID, LEDGER_STREAM,
    REJECTED_STREAM, intake_message_id,
};
use tracing::{info, warn};

use crate::config::{Config, Durability};
use crate::nats_server::LocalServer;
use crate::view;
use crate::{
    AuditCommand, BenchCommand, Cli, Command, DEFAULT_NATS, ImportCommand, IntakeArg,
    LedgerCommand, ProjectCommand, QueryCommand, RejectedCommand,
};

/// Most publishes awaiting an acknowledgement at once in `checkin publish`.
const PUBLISH_WINDOW: usize = 256;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (mut config, config_path) = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.archive_dir {
        config.archive.dir = Some(dir.clone());
    }
    if let Some(path) = &config_path {
        tracing::debug!(path = %path.display(), "configuration loaded");
    }
    let url = cli.nats.clone();
    let archive_dir = cli
        .archive_dir
        .clone()
        .or_else(|| config.archive.dir.clone());

    match cli.command {
        Command::Up { port, listen, demo } => {
            let prefix = command_prefix(&cli, port, listen);
            up(url, port, listen, &cli.data_dir, config, &prefix, demo).await
        }
        Command::Serve { listen } => {
            let shutdown = shutdown_signal()?;
            let client = connect(url.as_deref()).await?;
            crate::project::run(
                client,
                &cli.data_dir,
                &config,
                false,
                Some(listen),
                shutdown,
            )
            .await
        }
        Command::Sequencer => {
            let shutdown = shutdown_signal()?;
            let client = connect(url.as_deref()).await?;
            run_sequencer(client, &cli.data_dir, config, shutdown).await
        }
        Command::Publish {
            file,
            intake,
            at_now,
        } => publish(url.as_deref(), file.as_deref(), intake, at_now).await,
        Command::Import(ImportCommand::Foursquare {
            file,
            limit,
            site_tz,
            outbox,
        }) => {
            let client = connect_retrying(url.as_deref()).await?;
            let request = crate::import::ImportRequest {
                file: &file,
                limit,
                site_tz,
                outbox_dir: outbox.unwrap_or_else(|| cli.data_dir.join("outbox").join("import")),
                config: &config,
                config_path: config_path.as_deref(),
            };
            crate::import::foursquare(client, request).await
        }
        Command::Simulate {
            devices,
            customers,
            rate,
            duration,
            seed,
            now,
            history_days,
            invalid_share,
            outbox,
        } => {
            crate::simulate::check_sites(&config)?;
            let now = match now {
                Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                    .with_context(|| {
                        format!(
                            "invalid --now {text:?}; use RFC 3339 such as 2026-05-01T12:00:00+08:00"
                        )
                    })?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            if devices == 0 || customers == 0 {
                bail!("--devices and --customers must be at least 1");
            }
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number of submissions per second, found {rate}");
            }
            if !(0.0..=1.0).contains(&invalid_share) {
                bail!("--invalid-share must be between 0 and 1, found {invalid_share}");
            }
            let horizon_days = config.validation.horizon_days;
            if i64::from(history_days) >= horizon_days {
                bail!(
                    "--history-days must be less than the {horizon_days}-day live horizon, found {history_days}"
                );
            }
            let settings = checkin_edge::simulate::SimulationConfig {
                devices,
                customers,
                rate,
                duration,
                seed,
                now,
                history_days,
                invalid_share,
            };
            let client = connect_retrying(url.as_deref()).await?;
            let outbox_dir = outbox.unwrap_or_else(|| cli.data_dir.join("outbox").join("simulate"));
            crate::simulate::run(client, settings, outbox_dir).await
        }
        Command::Ledger(LedgerCommand::Tail { count, json }) => {
            ledger_tail(url.as_deref(), count, json).await
        }
        Command::Ledger(LedgerCommand::Show { seq, json }) => {
            ledger_show(url.as_deref(), archive_dir.as_deref(), seq, json).await
        }
        Command::Rejected(RejectedCommand::Tail { count, json }) => {
            rejected_tail(url.as_deref(), count, json).await
        }
        Command::Project {
            command: None,
            until_head,
        } => {
            let shutdown = shutdown_signal()?;
            let client = connect(url.as_deref()).await?;
            crate::project::run(client, &cli.data_dir, &config, until_head, None, shutdown).await
        }
        Command::Project {
            command: Some(ProjectCommand::Digest { json }),
            ..
        } => crate::project::digest(&cli.data_dir, &config, json),
        Command::Project {
            command: Some(ProjectCommand::Spec { file }),
            ..
        } => {
            let client = connect(url.as_deref()).await?;
            let js = jetstream::new(client);
            let shutdown = shutdown_signal()?;
            let built =
                crate::spec::build_spec(&js, &cli.data_dir, &config, &file, shutdown).await?;
            outln!(
                "{}\tseq {}\t{}\t{}",
                built.model,
                built.seq,
                built.digest,
                built.dir.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            into,
            projections,
            specs,
            to_seq,
            as_of,
            archive,
            json,
        } => {
            let client = connect(url.as_deref()).await?;
            let js = jetstream::new(client);
            let request = crate::replay::ReplayRequest {
                into: &into,
                projections: projections
                    .into_iter()
                    .filter(|name| !name.is_empty())
                    .collect(),
                specs,
                to_seq,
                as_of,
                archive,
                json,
            };
            crate::replay::run(&js, &config, request, shutdown_signal()?).await
        }
        Command::Query(query) => {
            let source = crate::query::Source {
                data_dir: &cli.data_dir,
                config: &config,
                api: &cli.api,
            };
            match query {
                QueryCommand::Customer { id, as_of, json } => {
                    crate::query::customer(&source, &id, as_of.as_deref(), json)
                }
                QueryCommand::Site { id, from, to, json } => {
                    crate::query::site(&source, &id, &from, &to, json)
                }
                QueryCommand::Segment {
                    name,
                    as_of,
                    limit,
                    json,
                } => crate::query::segment(&source, &name, as_of.as_deref(), limit, json),
                QueryCommand::Spec {
                    name,
                    json,
                    csv,
                    no_bom,
                    out,
                    as_of,
                } => {
                    let format = if csv {
                        crate::spec::Format::Csv { bom: !no_bom }
                    } else if json {
                        crate::spec::Format::Json
                    } else {
                        crate::spec::Format::Text
                    };
                    crate::spec::query(
                        &cli.data_dir,
                        &config,
                        &name,
                        format,
                        out.as_deref(),
                        as_of.as_deref(),
                    )
                }
            }
        }
        Command::Archive {
            up_to,
            before,
            to,
            segment_records,
        } => {
            let end = match (up_to, before) {
                (Some(seq), _) => crate::archive::ArchiveEnd::UpTo(seq),
                (None, Some(date)) => {
                    crate::archive::ArchiveEnd::StoredBefore(start_of_day_ns(date)?)
                }
                (None, None) => bail!("give --up-to SEQ or --before DATE"),
            };
            let Some(dir) = to.or(archive_dir) else {
                bail!(
                    "no archive directory: give --to DIR, --archive-dir DIR or `[archive] dir` in checkin.toml"
                );
            };
            let client = connect(url.as_deref()).await?;
            let options = crate::archive::ArchiveOptions {
                end,
                dir,
                segment_records,
            };
            crate::archive::run(client, options).await
        }
        Command::Audit(AuditCommand::Verify {
            json,
            expect_head,
            checkpoint,
            archive,
        }) => {
            let options = crate::audit::VerifyOptions {
                json,
                expect_head,
                checkpoint,
                archive,
            };
            Ok(crate::audit::verify(url.as_deref(), options).await)
        }
        Command::Audit(AuditCommand::Checkpoint { out }) => {
            crate::audit::checkpoint(url.as_deref(), out.as_deref()).await
        }
        Command::Bench(BenchCommand::Audit { events }) => {
            crate::bench::audit(events).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Project { events }) => {
            crate::bench::project(events).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ingest { events }) => {
            crate::bench::ingest(events).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Sequencer { events }) => {
            crate::bench::sequencer(events).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Returns 00:00 UTC on `date` in Unix nanoseconds.
fn start_of_day_ns(date: chrono::NaiveDate) -> anyhow::Result<i64> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|start| start.and_utc().timestamp_nanos_opt())
        .with_context(|| format!("--before {date} is outside the years 1677 to 2262"))
}

async fn connect(url: Option<&str>) -> anyhow::Result<async_nats::Client> {
    let url = url.unwrap_or(DEFAULT_NATS);
    async_nats::ConnectOptions::new()
        .name("checkin")
        .connect(url)
        .await
        .with_context(|| {
            format!(
                "failed to connect to NATS at {url}; start one with `checkin up` or pass --nats URL"
            )
        })
}

/// Connects in the background, so that edge commands can fill their outbox
/// while the server is unreachable; the publisher retries until it answers.
async fn connect_retrying(url: Option<&str>) -> anyhow::Result<async_nats::Client> {
    let url = url.unwrap_or(DEFAULT_NATS);
    async_nats::ConnectOptions::new()
        .name("checkin-edge")
        .retry_on_initial_connect()
        .connect(url)
        .await
        .with_context(|| format!("invalid NATS URL {url}"))
}

/// Returns the `checkin ` command prefix, with the global options that make
/// the commands `checkin up` prints reach this stack's NATS server, models
/// and API.
fn command_prefix(cli: &Cli, port: u16, listen: std::net::SocketAddr) -> String {
    let mut prefix = String::from("checkin ");
    let nats = cli
        .nats
        .clone()
        .unwrap_or_else(|| format!("nats://127.0.0.1:{port}"));
    if nats != DEFAULT_NATS {
        prefix.push_str(&format!("--nats {nats} "));
    }
    if cli.data_dir != Path::new("./data") {
        prefix.push_str(&format!("--data-dir {} ", cli.data_dir.display()));
    }
    if let Some(config) = &cli.config {
        prefix.push_str(&format!("--config {} ", config.display()));
    }
    let api = format!("http://{listen}");
    if cli.api != api {
        prefix.push_str(&format!("--api {api} "));
    }
    prefix
}

/// Runs every role in one process; `prefix` starts the commands it prints,
/// and `demo` turns the traffic simulator and its guide on.
async fn up(
    url: Option<String>,
    port: u16,
    listen: std::net::SocketAddr,
    data_dir: &Path,
    config: Config,
    prefix: &str,
    demo: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_signal()?;
    if demo {
        crate::simulate::check_sites(&config)?;
    }
    let local = match url {
        Some(_) => None,
        None => {
            let sync_always = config.sequencer.durability == Durability::Durable;
            Some(LocalServer::start(data_dir, port, sync_always).await?)
        }
    };
    let url = local.as_ref().map(|server| server.url.clone()).or(url);

    let result = async {
        let client = connect(url.as_deref()).await?;
        outln!(
            "checkin is up: NATS at {}",
            url.as_deref().unwrap_or(DEFAULT_NATS)
        )?;
        outln!("  publish:  {prefix}publish --at-now examples/check-in.json")?;
        outln!("  ledger:   {prefix}ledger tail")?;
        outln!("  refused:  {prefix}rejected tail")?;
        outln!("  query:    http://{listen}/v1/ledger/head  http://{listen}/healthz")?;
        let backfill = if demo {
            let backfill = crate::demo::plan_backfill(chrono::Utc::now())?;
            crate::demo::print_guide(&backfill, listen, prefix)?;
            Some(backfill)
        } else {
            None
        };
        outln!("  stop:     Ctrl-C")?;

        // One signal stops both roles; each finishes its batch in hand.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stop_requested = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        };
        let sequencer = run_sequencer(
            client.clone(),
            data_dir,
            config.clone(),
            stop_requested(stopped.clone()),
        );
        let traffic = {
            let client = client.clone();
            let stopped = stopped.clone();
            async move {
                match backfill {
                    Some(backfill) => crate::demo::run(client, data_dir, backfill, stopped).await,
                    None => Ok(()),
                }
            }
        };
        let projector = crate::project::run(
            client,
            data_dir,
            &config,
            false,
            Some(listen),
            stop_requested(stopped),
        );
        // When one role fails the others are dropped; all are safe to drop mid-batch.
        let (code, _, ()) = tokio::try_join!(sequencer, projector, traffic)?;
        Ok(code)
    }
    .await;

    if let Some(server) = local
        && let Err(err) = server.stop().await
    {
        warn!(error = %err, "failed to stop nats-server cleanly");
    }
    result
}

async fn run_sequencer(
    client: async_nats::Client,
    data_dir: &Path,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let index_dir = data_dir.join("sequencer").join(&config.ledger);
    std::fs::create_dir_all(&index_dir)
        .with_context(|| format!("failed to create {}", index_dir.display()))?;

    let sequencer = Sequencer::start(client, config.sequencer_config(), &index_dir)
        .await
        .context("failed to start the sequencer")?;
    sequencer.run(shutdown).await.context("sequencer stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from the moment it is created, so
/// a signal that arrives while the sequencer starts is not lost and does not
/// kill the process before the local nats-server is stopped.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        info!("shutdown requested");
    })
}

async fn publish(
    url: Option<&str>,
    file: Option<&Path>,
    intake: IntakeArg,
    at_now: bool,
) -> anyhow::Result<ExitCode> {
    let input = read_input(file)?;
    let mut submissions: Vec<Vec<u8>> = split_submissions(&input)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    if at_now {
        submissions = submissions
            .iter()
            .map(|submission| stamp_now(submission))
            .collect();
    }
    if submissions.is_empty() {
        bail!("no submission found in the input: give one JSON object, or one per line");
    }

    let client = connect(url).await?;
    let js = jetstream::new(client);
    let subject = match intake {
        IntakeArg::Live => INTAKE_LIVE,
        IntakeArg::Import => INTAKE_IMPORT,
        IntakeArg::Void => INTAKE_VOID,
    };

    let mut failures = 0usize;
    for window in submissions.chunks(PUBLISH_WINDOW) {
        let mut pending = Vec::with_capacity(window.len());
        for submission in window {
            let id = submission_id(submission);
            if submission.len() > INTAKE_MAX_MESSAGE_BYTES as usize {
                // The server would reject it with a bare size error, and it would
                // never reach the rejected stream, so name the limits here.
                let reason = format!(
                    "submission is {} bytes; intake accepts at most {INTAKE_MAX_MESSAGE_BYTES} bytes \
                     and a valid submission at most {MAX_SUBMISSION_BYTES}",
                    submission.len()
                );
                pending.push((id, Err(reason)));
                continue;
            }
            let mut headers = HeaderMap::new();
            if let Some(id) = &id {
                headers.insert("Nats-Msg-Id", intake_message_id(id, submission).as_str());
            }
            let ack = js
                .publish_with_headers(subject, headers, bytes::Bytes::copy_from_slice(submission))
                .await
                .map_err(|err| err.to_string());
            pending.push((id, ack));
        }
        for (id, ack) in pending {
            let shown = id.unwrap_or_else(|| "-".into());
            let outcome = match ack {
                Ok(future) => future.await.map_err(|err| err.to_string()),
                Err(reason) => Err(reason),
            };
            match outcome {
                Ok(ack) if ack.duplicate => outln!(
                    "{shown}\tduplicate: intake received these exact bytes within its duplicate window"
                )?,
                Ok(ack) => outln!("{shown}\taccepted: intake seq {}", ack.sequence)?,
                Err(reason) => {
                    failures += 1;
                    outln!("{shown}\tfailed: {reason}")?;
                }
            }
        }
    }

    if failures > 0 {
        eprintln!(
            "error: intake did not accept {failures} of {} submissions",
            submissions.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match file {
        None => read_stdin(),
        Some(path) if path == Path::new("-") => read_stdin(),
        Some(path) => {
            std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))
        }
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("failed to read standard input")?;
    Ok(input)
}

/// Splits input into submissions: the whole input when it is one JSON value,
/// else each non-blank line. Bytes are kept as given, so invalid submissions
/// reach the rejected stream unchanged.
fn split_submissions(input: &[u8]) -> Vec<&[u8]> {
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if serde_json::from_slice::<serde_json::Value>(trimmed).is_ok() {
        return vec![trimmed];
    }
    trimmed
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.trim_ascii().is_empty())
        .collect()
}

/// Sets `at` to the current time in the local offset; input that is not a
/// JSON object is returned unchanged so that it still reaches validation.
fn stamp_now(submission: &[u8]) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(submission) else {
        return submission.to_vec();
    };
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    object.insert("at".into(), serde_json::Value::String(now));
    serde_json::to_vec(&object).unwrap_or_else(|_| submission.to_vec())
}

/// Returns the submission's `id` for `Nats-Msg-Id`, when it has a usable one.
fn submission_id(submission: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(submission).ok()?;
    let id = value.get("id")?.as_str()?;
    let usable = !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic());
    usable.then(|| id.to_string())
}

pub(crate) async fn open_stream(url: Option<&str>, name: &str) -> anyhow::Result<StreamReader> {
    let client = connect(url).await?;
    let js = jetstream::new(client);
    StreamReader::open(&js, name)
        .await
        .with_context(|| format!("failed to open {name}; has `checkin up` or `checkin sequencer` run against this server?"))
}

async fn ledger_tail(url: Option<&str>, count: u64, json: bool) -> anyhow::Result<ExitCode> {
    let reader = open_stream(url, LEDGER_STREAM).await?;
    let (first, last) = reader.bounds().await?;
    if last == 0 {
        outln!("the ledger is empty")?;
        return Ok(ExitCode::SUCCESS);
    }
    let from = last.saturating_sub(count.saturating_sub(1)).max(first);
    for seq in from..=last {
        let Some(message) = reader.get(seq).await? else {
            continue;
        };
        print_record(&message, json)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn ledger_show(
    url: Option<&str>,
    archive_dir: Option<&Path>,
    seq: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let reader = open_stream(url, LEDGER_STREAM).await?;
    if let Some(message) = reader.get(seq).await? {
        print_record(&message, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (first, last) = reader.bounds().await?;
    if seq == 0 || seq >= first {
        bail!("no ledger record at seq {seq}; the stream contains seq {first} to {last}");
    }
    let Some(dir) = archive_dir else {
        bail!(
            "seq {seq} was archived: the stream contains seq {first} to {last}; \
             give --archive-dir DIR or set `[archive] dir` to read it from the archive"
        );
    };
    let message = read_archived(dir, seq)?;
    print_record(&message, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one record from the archive, verifying its segment's chain up to it.
fn read_archived(dir: &Path, seq: u64) -> anyhow::Result<checkin_ledger::reader::StoredMessage> {
    let archive = checkin_ledger::archive::ArchiveSet::open(dir)
        .with_context(|| format!("failed to open the archive in {}", dir.display()))?;
    let Some(segment) = archive.segment_for(seq) else {
        bail!(
            "seq {seq} is in neither the stream nor the archive in {}, which ends at seq {}",
            dir.display(),
            archive.last_seq()
        );
    };
    let mut reader = segment.reader()?;
    while let Some(record) = reader.next_record()? {
        if record.seq == seq {
            return Ok(record.to_message());
        }
    }
    bail!(
        "segment {} ended before seq {seq}",
        segment.path().display()
    )
}

fn print_record(
    message: &checkin_ledger::reader::StoredMessage,
    json: bool,
) -> std::io::Result<()> {
    if json {
        outln!("{}", view::record_json(message))?;
    } else {
        outln!("{}", view::record_text(message))?;
    }
    Ok(())
}

async fn rejected_tail(url: Option<&str>, count: u64, json: bool) -> anyhow::Result<ExitCode> {
    let reader = open_stream(url, REJECTED_STREAM).await?;
    let (first, last) = reader.bounds().await?;
    if last == 0 {
        outln!("no submission has been refused")?;
        return Ok(ExitCode::SUCCESS);
    }
    let from = last.saturating_sub(count.saturating_sub(1)).max(first);
    for seq in from..=last {
        let Some(message) = reader.get(seq).await? else {
            continue;
        };
        let entry = RejectedEntry::from_message(&message);
        if json {
            outln!("{}", serde_json::to_string(&entry)?)?;
        } else {
            outln!("{}", view::rejected_text(&entry))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn prefix_of(args: &[&str]) -> String {
        let cli = Cli::parse_from(args);
        let Command::Up { port, listen, .. } = cli.command else {
            panic!("not an up command: {args:?}");
        };
        command_prefix(&cli, port, listen)
    }

    #[test]
    fn prefix_plain_for_defaults() {
        assert_eq!(prefix_of(&["checkin", "up", "--demo"]), "checkin ");
    }

    #[test]
    fn prefix_names_nondefault_port() {
        assert_eq!(
            prefix_of(&["checkin", "up", "--port", "4333"]),
            "checkin --nats nats://127.0.0.1:4333 "
        );
    }

    #[test]
    fn prefix_names_given_server() {
        assert_eq!(
            prefix_of(&["checkin", "--nats", "nats://127.0.0.1:5222", "up"]),
            "checkin --nats nats://127.0.0.1:5222 "
        );
    }
}
