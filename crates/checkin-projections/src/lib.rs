//! Read models folded from the checkin ledger into sled.
//!
//! A [`runner::Runner`] reads the ledger from a model's checkpoint, checks
//! every chain link, and commits each batch of changes together with the new
//! checkpoint in one atomic sled write, so a crash re-applies at most the
//! batch that was not committed and never applies a record twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use checkin_projections::{activity::Activity, runner::{Runner, Until}, store::ModelStore};
//!
//! let js = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
//! let store = ModelStore::open("data/models".as_ref(), Activity::NAME)?;
//! let mut runner = Runner::new(&js, store, Activity::new(Default::default())).await?;
//! let head = runner.ledger_head().await?;
//! runner.run(Until::Seq(head), std::future::pending()).await?;
//! println!("{}", runner.store().digest()?);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod activity;
mod codec;
pub mod frequency;
pub mod runner;
pub mod segments;
pub mod spec;
pub mod store;
mod visits;
