//! The HTTP API's shared parts, below every handler: routing, the request
//! context, problem+json errors, body validation, CORS, security headers,
//! caching, idempotency, health and the helpers that build answers.

pub mod caching;
pub mod context;
pub mod cors;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod response;
pub mod router;
pub mod security;
pub mod validate;
