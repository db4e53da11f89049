//! Domain core of the checkin ledger: what a check-in (打卡) is, how a raw
//! submission is validated, how a ledger record is encoded, and how records
//! are hash-chained. No I/O and no async: everything here is a pure function
//! of its inputs, so the ledger, the auditor and the projections agree.
//!
//! ```
//! use checkin_core::{chain::ChainHead, codec, record::*};
//!
//! let genesis = Record {
//!     recorded_at_us: 1_780_000_000_000_000,
//!     body: RecordBody::Genesis(Genesis {
//!         ledger: "default".into(),
//!         description: "demo".into(),
//!     }),
//! };
//! let bytes = codec::encode(&genesis).unwrap();
//! let head = ChainHead::EMPTY.advance(&bytes);
//! assert_eq!(head.seq, 1);
//! assert_eq!(codec::decode(&bytes).unwrap(), genesis);
//! ```
#![warn(missing_docs)]

pub mod chain;
pub mod codec;
pub mod ids;
pub mod reason;
pub mod record;
pub mod sites;
pub mod validate;

pub use chain::{ChainHash, ChainHead};
pub use ids::EventId;
pub use reason::{Reason, Rejection};
pub use record::{Record, RecordBody};
