//! Tepi's core: every route, rule and metric of the API, independent of the
//! platform that runs it.
//!
//! The core never reads a clock, never draws randomness itself and imports no
//! runtime (`worker`, `spin_sdk`, tokio, wasm-bindgen): adapters convert
//! their platform's request into an [`http::Request`], call [`App::handle`]
//! with the [`Ports`] they wired, and convert the response back.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod jobs;
pub mod log;
pub mod meta_events;
pub mod metrics;
pub mod module;
pub mod notifications;
pub mod ops;
pub mod ports;
pub mod ratelimit;
pub mod secret;
pub mod sort;
pub mod storage;
pub mod time;
pub mod uploads;
pub mod workflows;

#[cfg(test)]
mod testing;

pub use api::context::UnreadableHeaders;
pub use api::health::BuildInfo;
pub use app::App;
pub use config::{Config, LoadedConfig};
pub use ports::{
    Blob, Blobs, Clock, Entropy, HttpClient, Jobs, KeyValue, PortError, Ports, Probe, Queue, Rows,
    Sql, SqlValue, Statement, Timer,
};
pub use ratelimit::PeerAddr;
pub use time::Timestamp;

/// Re-exported so adapters name the same versions the core uses.
pub use bytes::Bytes;
pub use http;
