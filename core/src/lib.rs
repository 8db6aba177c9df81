//! Tepi's core: every route, rule and metric of the API, independent of the
//! platform that runs it.
//!
//! The core never reads a clock, never draws randomness itself and imports no
//! runtime (`worker`, `spin_sdk`, tokio, wasm-bindgen): adapters convert
//! their platform's request into an [`http::Request`], call [`App::handle`]
//! with the [`Ports`] they wired, and convert the response back.

pub mod aggregate;
pub mod app;
pub mod auth;
pub mod caching;
pub mod config;
pub mod consumer;
pub mod context;
pub mod cors;
pub mod error;
pub mod events;
pub mod exposition;
pub mod gzip;
pub mod health;
pub mod idempotency;
pub mod jobs;
pub mod log;
pub mod meta_events;
pub mod metrics;
pub mod module;
pub mod notifications;
pub mod ports;
pub mod processing;
pub mod push;
pub mod ratelimit;
pub mod router;
pub mod rum;
pub mod security;
pub mod storage;
pub mod time;
pub mod uploads;
pub mod validate;
pub mod worker_metrics;
pub mod workflows;

#[cfg(test)]
mod testing;

pub use app::App;
pub use config::{Config, LoadedConfig};
pub use health::BuildInfo;
pub use ports::{
    Blob, Blobs, Clock, Entropy, HttpClient, Jobs, KeyValue, PortError, Ports, Probe, Queue, Rows,
    Sql, SqlValue, Statement, Timer,
};
pub use ratelimit::PeerAddr;
pub use time::Timestamp;

/// Re-exported so adapters name the same versions the core uses.
pub use bytes::Bytes;
pub use http;
