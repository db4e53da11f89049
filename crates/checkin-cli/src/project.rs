//! `checkin project`: runs the projectors and inspects their read models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use checkin_ledger::reader::StreamReader;
use checkin_ledger::topology::LEDGER_STREAM;
use checkin_projections::activity::Activity;
use checkin_projections::frequency::Frequency;
use checkin_projections::runner::{Runner, Until};
use checkin_projections::store::{Backend, ModelStore};
use checkin_server::api::{self, AppState};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

use crate::config::Config;

/// Names of the read models this build maintains.
const MODELS: [&str; 2] = [Activity::NAME, Frequency::NAME];

/// Returns the directory of a ledger's read models.
pub fn models_dir(data_dir: &Path, config: &Config) -> PathBuf {
    data_dir.join("models").join(&config.ledger)
}

/// Returns the directory of one read model: `<name>` for sled and
/// `<name>.fjall` for fjall, so switching engines starts a fresh model
/// instead of opening one engine's files with the other.
pub fn model_dir(data_dir: &Path, config: &Config, name: &str) -> PathBuf {
    let dir = models_dir(data_dir, config);
    match config.projections.store {
        Backend::Sled => dir.join(name),
        Backend::Fjall => dir.join(format!("{name}.fjall")),
    }
}

/// Opens one read model of a ledger; each model has its own directory.
pub fn open_model(data_dir: &Path, config: &Config, name: &str) -> anyhow::Result<ModelStore> {
    let dir = model_dir(data_dir, config, name);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    open_store(config.projections.store, &dir, name)
}

/// Runs the projectors until shutdown, or until they reach the ledger's head
/// as it was at start when `until_head` is set. With `listen`, also serves
/// the HTTP query API over the same models: sled lets one process open a
/// model, so the API lives where the projectors run.
pub async fn run(
    client: async_nats::Client,
    data_dir: &Path,
    config: &Config,
    until_head: bool,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let js = jetstream::new(client);
    tokio::pin!(shutdown);
    // The sequencer creates the ledger; a projector started first waits for it.
    while js.get_stream(LEDGER_STREAM).await.is_err() {
        tokio::select! {
            () = &mut shutdown => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }

    let sites = config.sequencer_config().sites;
    let activity_store = open_model(data_dir, config, Activity::NAME)?;
    let frequency_store = open_model(data_dir, config, Frequency::NAME)?;
    let state = Arc::new(AppState {
        activity: activity_store.clone(),
        frequency: frequency_store.clone(),
        ledger: StreamReader::open(&js, LEDGER_STREAM).await?,
        rules: config.segments.clone(),
    });
    let window_s = config.projections.visit_window_s;
    let activity_model = Activity::with_visit_window(sites.clone(), window_s);
    let frequency_model =
        Frequency::with_visit_window(sites, window_s).with_rules(config.segments.clone());
    let mut runner = Runner::new(&js, activity_store, activity_model)
        .await?
        .with(frequency_store, frequency_model);

    let until = if until_head {
        Until::Seq(runner.ledger_head().await?)
    } else {
        Until::Forever
    };
    // One signal stops the runner and the HTTP server; the runner commits the batch in hand first.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_requested = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stopping| *stopping).await;
    };
    let http = match listen {
        Some(address) => Some(serve(address, state, stop_requested(stopped.clone())).await?),
        None => None,
    };
    let head = {
        let projecting = runner.run(until, stop_requested(stopped.clone()));
        tokio::pin!(projecting);
        tokio::select! {
            result = &mut projecting => result,
            () = &mut shutdown => {
                let _ = stop.send(true);
                projecting.await
            }
        }
    };
    let _ = stop.send(true);
    if let Some(http) = http {
        http.await.context("HTTP server task failed")??;
    }
    let head = head.context("projection stopped")?;

    for store in runner.stores() {
        store.flush().await?;
    }
    info!(seq = head.seq, "projections flushed");
    Ok(ExitCode::SUCCESS)
}

/// Prints each model's digest and checkpoint.
pub fn digest(data_dir: &Path, config: &Config, json_output: bool) -> anyhow::Result<ExitCode> {
    let dir = models_dir(data_dir, config);
    if !dir.exists() {
        bail!(
            "no read models under {}; run `checkin project` first",
            dir.display()
        );
    }
    for name in MODELS {
        let store = open_model(data_dir, config, name)?;
        let checkpoint = store.checkpoint()?;
        let digest = store.digest()?;
        let seq = checkpoint.map_or(0, |head| head.seq);
        let hash = checkpoint
            .map(|head| head.hash.to_hex())
            .unwrap_or_default();
        if json_output {
            outln!(
                "{}",
                json!({"model": name, "digest": digest, "seq": seq, "hash": hash})
            )?;
        } else {
            outln!("{name}\t{digest}\tseq {seq}\t{hash}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the HTTP query API on `address`; the task ends after `stopped`.
async fn serve(
    address: SocketAddr,
    state: Arc<AppState>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("failed to listen on {address}; choose another address with --listen")
        })?;
    info!(%address, "HTTP query API listening");
    Ok(tokio::spawn(async move {
        checkin_server::axum::serve(listener, api::router(state))
            .with_graceful_shutdown(stopped)
            .await
            .context("HTTP server failed")
    }))
}

fn open_store(backend: Backend, dir: &Path, name: &str) -> anyhow::Result<ModelStore> {
    ModelStore::open_with(backend, dir, name).with_context(|| {
        format!(
            "failed to open the read models in {}; if a projector is running, stop it first",
            dir.display()
        )
    })
}
