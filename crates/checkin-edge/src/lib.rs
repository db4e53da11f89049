//! The device side of the checkin ledger: what an edge device, an importer
//! or the traffic simulator uses to get check-ins into intake.
//!
//! A submission is first written to the local [`Outbox`] (a sled tree,
//! flushed before `enqueue` returns), so it survives restarts and network
//! loss. A [`Publisher`] moves outbox entries to the intake stream and
//! removes each one only after JetStream acknowledged it.
//!
//! ```no_run
//! # async fn example(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use checkin_edge::{IntakeSubject, Outbox, Publisher, PublisherConfig};
//!
//! let outbox = Outbox::open("./outbox")?;
//! let id = "0190f1d2-7c3a-7e21-9c1b-3f4a5b6c7d8e";
//! outbox.enqueue(IntakeSubject::Live, id, br#"{"id": "..."}"#).await?;
//!
//! let js = async_nats::jetstream::new(client);
//! let mut publisher = Publisher::new(js, outbox, PublisherConfig::default());
//! publisher.drain().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod foursquare;
pub mod outbox;
pub mod publisher;
pub mod simulate;

pub use outbox::{IntakeSubject, Outbox, OutboxEntry, OutboxError};
pub use publisher::{MetricsSnapshot, Publisher, PublisherConfig, PublisherMetrics};
