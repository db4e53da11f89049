//! `checkin`: one binary for every role of the check-in ledger.

// First, so that `outln!` and `out!` are in scope in every module below.
#[macro_use]
mod output;

mod archive;
mod audit;
mod bench;
mod commands;
mod config;
mod demo;
mod import;
mod nats_server;
mod project;
mod query;
mod replay;
mod simulate;
mod spec;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Default address of the NATS server.
const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

#[derive(Parser)]
#[command(
    name = "checkin",
    version,
    about = "Hash-chained check-in (打卡) ledger on NATS JetStream"
)]
struct Cli {
    /// NATS server URL; `checkin up` starts a local server when this is not set.
    #[arg(long, env = "CHECKIN_NATS", global = true)]
    nats: Option<String>,

    /// Directory for local state: the dedupe index and a local nats-server's store.
    #[arg(
        long,
        env = "CHECKIN_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    data_dir: PathBuf,

    /// Query API that `checkin query` sends requests to while a running projector has the read models open.
    #[arg(
        long,
        env = "CHECKIN_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api: String,

    /// Archive directory of segment files; overrides `[archive] dir` in the
    /// configuration. The sequencer rebuilds its dedupe index from it after a
    /// purge, and `checkin ledger show` reads archived records from it.
    #[arg(long, env = "CHECKIN_ARCHIVE_DIR", global = true)]
    archive_dir: Option<PathBuf>,

    /// Configuration file [default: ./checkin.toml when present].
    #[arg(long, env = "CHECKIN_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process, starting a local nats-server unless --nats is given.
    Up {
        /// Port of the local nats-server.
        #[arg(long, default_value_t = 4222)]
        port: u16,
        /// Address of the HTTP query API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Also run the traffic simulator: four weeks of history at once, then
        /// 20 check-ins per second, and print URLs and commands to try.
        #[arg(long)]
        demo: bool,
    },
    /// Run the projectors and the HTTP query API over their read models.
    Serve {
        /// Address of the HTTP query API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Run the ledger writer alone.
    Sequencer,
    /// Publish one JSON check-in, or JSON Lines, to intake.
    Publish {
        /// File to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Intake path: live devices, historical imports, or void requests.
        #[arg(long, value_enum, default_value_t = IntakeArg::Live)]
        intake: IntakeArg,
        /// Replace each submission's `at` with the current time before
        /// publishing, for trying out sample files.
        #[arg(long)]
        at_now: bool,
    },
    /// Import a check-in data set through the edge outbox and the historical-import intake.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Send realistic synthetic check-ins from simulated devices through
    /// their outboxes, including double scans, late uploads and invalid ones.
    Simulate {
        /// Number of devices, spread over the demo sites.
        #[arg(long, default_value_t = 6)]
        devices: usize,
        /// Number of customers.
        #[arg(long, default_value_t = 200)]
        customers: usize,
        /// Submissions per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Length of the run, such as 30s, 5m or a number of seconds.
        #[arg(long, default_value = "30s", value_parser = simulate::parse_duration)]
        duration: std::time::Duration,
        /// Seed of every random choice; the same seed and --now give the same submissions.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Reference time (RFC 3339); check-ins fall in the days before it [default: now].
        #[arg(long)]
        now: Option<String>,
        /// Days of history the check-in times span, at most the live horizon.
        #[arg(long, default_value_t = 28)]
        history_days: u32,
        /// Share of submissions that are invalid on purpose, from 0 to 1.
        #[arg(long, default_value_t = 0.02)]
        invalid_share: f64,
        /// Directory of the device outboxes [default: DATA_DIR/outbox/simulate].
        #[arg(long)]
        outbox: Option<PathBuf>,
    },
    /// Read ledger records.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Read refused submissions.
    #[command(subcommand)]
    Rejected(RejectedCommand),
    /// Run the projectors, or inspect their read models.
    Project {
        #[command(subcommand)]
        command: Option<ProjectCommand>,
        /// Stop once the models reach the ledger's current head.
        #[arg(long)]
        until_head: bool,
    },
    /// Read the read models, directly or through the running query API.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Move a sealed range of the ledger into archive segment files, verify
    /// them, then purge it from the stream. The stream's last record always
    /// stays in the stream.
    #[command(group(clap::ArgGroup::new("end").required(true).args(["up_to", "before"])))]
    Archive {
        /// Archive every record up to and including this sequence (capped at
        /// the record before the stream's last one).
        #[arg(long, value_name = "SEQ")]
        up_to: Option<u64>,
        /// Archive every record that JetStream stored before 00:00 UTC on
        /// this date (YYYY-MM-DD), by stored time, not check-in time. Stops at
        /// the first record stored at or after that moment.
        #[arg(long, value_name = "DATE")]
        before: Option<chrono::NaiveDate>,
        /// Archive directory [default: --archive-dir or `[archive] dir`].
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// Records per segment file.
        #[arg(long, default_value_t = archive::DEFAULT_SEGMENT_RECORDS, value_parser = clap::value_parser!(u64).range(1..))]
        segment_records: u64,
    },
    /// Rebuild read models from all of history (archive segments, then the
    /// stream) into a fresh data directory, verifying the chain as it reads.
    Replay {
        /// Data directory to build into; the models land under
        /// models/<ledger>/ there, where `--data-dir DIR query` reads them.
        #[arg(long)]
        into: PathBuf,
        /// Built-in models to build, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "activity,frequency")]
        projections: Vec<String>,
        /// Spec file of a projection to build too (repeatable). Use
        /// `--projections ''` to build only specs.
        #[arg(long = "spec")]
        specs: Vec<PathBuf>,
        /// Stop after this ledger sequence [default: the head at start].
        #[arg(long, conflicts_with = "as_of")]
        to_seq: Option<u64>,
        /// Build the models as they stood at this time (RFC 3339): apply only
        /// records the sequencer recorded by then.
        #[arg(long)]
        as_of: Option<String>,
        /// Directory of archive segments written by `checkin archive`.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Print the digests as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Verify the ledger's hash chain and contents, or record its head.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure throughput beside raw JetStream baselines, on local nats-servers it starts.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import a Foursquare check-in file (TSMC2014 format: 8 tab-separated
    /// columns, plain or gzip); importing the same file again adds nothing.
    Foursquare {
        /// The data file.
        file: PathBuf,
        /// Read at most this many rows.
        #[arg(long)]
        limit: Option<u64>,
        /// IANA time zone of the venues' local days, such as America/New_York.
        #[arg(long, default_value = "Asia/Shanghai")]
        site_tz: chrono_tz::Tz,
        /// Directory of the outbox [default: DATA_DIR/outbox/import].
        #[arg(long)]
        outbox: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every hash of the ledger stream and check every record.
    /// Exits 0 when nothing was found, 1 with findings, 2 when it could not run.
    Verify {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Head recorded earlier, as SEQ:HASH; the ledger must still reach it
        /// with the same hash.
        #[arg(long, value_name = "SEQ:HASH", conflicts_with = "checkpoint")]
        expect_head: Option<String>,
        /// Checkpoint file written by `checkin audit checkpoint`; the ledger
        /// must have the same id and still reach its head with the same hash.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Directory of archive segments to verify before the stream, as
        /// one chain with it.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
    },
    /// Print the current head as a JSON checkpoint, to keep outside the
    /// stream for later `checkin audit verify --checkpoint FILE`. It copies
    /// the head's stored hash without verifying it, so run it right after a
    /// clean `checkin audit verify`.
    Checkpoint {
        /// Write the checkpoint to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Print a digest of each read model and its checkpoint; equal digests
    /// mean byte-identical models. The projector must not be running.
    Digest {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a spec projection defined in a TOML file from the whole ledger,
    /// replacing the model `spec_NAME` once it reaches the ledger's head.
    Spec {
        /// Spec file, such as examples/spec-weekly.toml.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueryCommand {
    /// One customer's visits, streaks, segment and latest check-ins.
    Customer {
        /// Customer id.
        id: String,
        /// Reference time for the segment and current streak (RFC 3339)
        /// [default: the latest visit in the read models].
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A site's check-ins, visits and unique customers per business day.
    Site {
        /// Site id.
        id: String,
        /// First business date, such as 2026-05-01.
        #[arg(long)]
        from: String,
        /// Last business date, inclusive.
        #[arg(long)]
        to: String,
        /// Print one JSON object per day.
        #[arg(long)]
        json: bool,
    },
    /// Customers in a segment: dormant, at_risk, vip, active, new or occasional.
    Segment {
        /// Segment name.
        name: String,
        /// Reference time (RFC 3339) [default: the latest visit in the read models].
        #[arg(long)]
        as_of: Option<String>,
        /// Maximum number of customers to list, up to 500.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print one JSON object per customer.
        #[arg(long)]
        json: bool,
    },
    /// Rows of a spec projection built with `checkin project spec FILE`:
    /// group columns, then measures. Reads the model directly.
    Spec {
        /// Spec name, as in the spec file's `name`.
        name: String,
        /// Print one JSON object per row.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (RFC 4180, CRLF line ends), starting with a UTF-8 byte
        /// order mark so that Excel reads Chinese text correctly.
        #[arg(long)]
        csv: bool,
        /// Leave out the byte order mark, for programs that read the CSV.
        #[arg(long, requires = "csv")]
        no_bom: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Reference time for a segment filter (RFC 3339)
        /// [default: the latest visit in the read models].
        #[arg(long)]
        as_of: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Sequencer records/s from a preloaded intake, in fast and durable modes.
    Sequencer {
        /// Submissions per measurement.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// Device-to-ledger records/s through the edge outbox and publisher with
    /// the sequencer running, in fast and durable modes.
    Ingest {
        /// Check-ins per measurement.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// `checkin audit verify` over the ledger, beside a raw ordered read.
    Audit {
        /// Check-ins to record before verifying; the ledger has one more record, the genesis.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// Rebuild of every read model from the ledger, beside a raw ordered read.
    Project {
        /// Ledger records to rebuild from.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Show the last records.
    Tail {
        /// Number of records.
        #[arg(short = 'n', default_value_t = 10)]
        count: u64,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the record at one sequence.
    Show {
        /// Ledger sequence.
        seq: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RejectedCommand {
    /// Show the last refused submissions with their reasons.
    Tail {
        /// Number of entries.
        #[arg(short = 'n', default_value_t = 10)]
        count: u64,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum IntakeArg {
    Live,
    Import,
    Void,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(
        cli.command,
        Command::Up { .. }
            | Command::Serve { .. }
            | Command::Sequencer
            | Command::Project { command: None, .. }
    ));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error; long-running roles log lifecycle at info, inspection commands only warnings.
fn init_tracing(long_running: bool) {
    let default = if long_running { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only on a terminal: in a log file they hide the text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}
