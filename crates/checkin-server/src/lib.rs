//! The HTTP query API over the checkin read models (axum): customers, their
//! timelines, site days, segments and the ledger head, as JSON.
//!
//! ```no_run
//! # async fn run(state: std::sync::Arc<checkin_server::api::AppState>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, checkin_server::api::router(state)).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod views;

pub use axum;
