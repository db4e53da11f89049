//! The write side of the checkin ledger on NATS JetStream: stream topology,
//! the sequencer that chains and appends records, the persistent dedupe
//! index, readers for the ledger and rejected streams, and the archive
//! segment files that keep the ledger records purged from the stream.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use checkin_ledger::sequencer::{Sequencer, SequencerConfig};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let sequencer = Sequencer::start(client, SequencerConfig::default(), "data/index".as_ref()).await?;
//! sequencer.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod archive;
pub mod audit;
pub mod dedupe;
pub mod headers;
pub mod reader;
pub mod rejected;
pub mod sequencer;
pub mod topology;
pub mod writer;
