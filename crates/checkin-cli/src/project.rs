//! `checkin project`: runs the projectors and inspects their read models.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use checkin_ledger::topology::LEDGER_STREAM;
use checkin_projections::activity::Activity;
use checkin_projections::runner::{Runner, Until};
use checkin_projections::store::ModelStore;
use serde_json::json;
use tracing::info;

use crate::config::Config;

/// Names of the read models this build maintains.
const MODELS: [&str; 1] = [Activity::NAME];

/// Returns the directory of a ledger's read models.
fn models_dir(data_dir: &Path, config: &Config) -> PathBuf {
    data_dir.join("models").join(&config.ledger)
}

/// Runs the projectors until shutdown, or until they reach the ledger's head
/// as it was at start when `until_head` is set.
pub async fn run(
    client: async_nats::Client,
    data_dir: &Path,
    config: &Config,
    until_head: bool,
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

    let dir = models_dir(data_dir, config);
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let store = open_store(&dir, Activity::NAME)?;
    let sites = config.sequencer_config().sites;
    let mut runner = Runner::new(&js, store, Activity::new(sites)).await?;

    let until = if until_head {
        Until::Seq(runner.ledger_head().await?)
    } else {
        Until::Forever
    };
    let head = runner
        .run(until, shutdown)
        .await
        .context("projection stopped")?;
    runner.store().flush().await?;
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
        let store = open_store(&dir, name)?;
        let checkpoint = store.checkpoint()?;
        let digest = store.digest()?;
        let seq = checkpoint.map_or(0, |head| head.seq);
        let hash = checkpoint
            .map(|head| head.hash.to_hex())
            .unwrap_or_default();
        if json_output {
            println!(
                "{}",
                json!({"model": name, "digest": digest, "seq": seq, "hash": hash})
            );
        } else {
            println!("{name}\t{digest}\tseq {seq}\t{hash}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_store(dir: &Path, name: &str) -> anyhow::Result<ModelStore> {
    ModelStore::open(dir, name).with_context(|| {
        format!(
            "failed to open the read models in {}; if a projector is running, stop it first",
            dir.display()
        )
    })
}
