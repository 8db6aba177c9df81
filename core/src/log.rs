//! Structured logs: a `tracing` subscriber that writes one JSON object per
//! event, and the access-log event the core emits for every request.
//!
//! The subscriber formats; the adapter decides where a line goes (the
//! Workers console, Spin's stderr). It keeps no span state: every field a
//! line needs is on the event itself.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The target of the per-request access-log event.
pub const ACCESS_TARGET: &str = "tepi::access";

/// Where a finished line goes.
pub type LineSink = fn(&str);

/// Writes events at or above `max_level` as JSON lines to a sink.
pub struct JsonLines {
    sink: LineSink,
    max_level: Level,
    next_span: AtomicU64,
}

impl fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLines")
            .field("max_level", &self.max_level)
            .finish_non_exhaustive()
    }
}

impl JsonLines {
    pub fn new(sink: LineSink, max_level: Level) -> Self {
        Self {
            sink,
            max_level,
            next_span: AtomicU64::new(1),
        }
    }

    /// Installs this subscriber process-wide. A second call is a no-op, so
    /// adapters may call it on every request.
    pub fn install(sink: LineSink, max_level: Level) {
        let _ = tracing::subscriber::set_global_default(Self::new(sink, max_level));
    }

    /// The JSON line for an event (without the trailing newline).
    pub fn format(event: &Event<'_>) -> String {
        let meta = event.metadata();
        let mut fields = Map::new();
        fields.insert(
            "level".to_owned(),
            Value::from(meta.level().as_str().to_ascii_lowercase()),
        );
        fields.insert("target".to_owned(), Value::from(meta.target()));
        event.record(&mut JsonVisitor(&mut fields));
        // Declared fields without a value (`field::Empty`) are written as null
        // so every line of one event kind has the same keys.
        for field in meta.fields() {
            fields.entry(field.name()).or_insert(Value::Null);
        }
        Value::Object(fields).to_string()
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

impl Subscriber for JsonLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max_level
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        (self.sink)(&Self::format(event));
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// One access-log line per request.
#[derive(Debug)]
pub struct AccessLog<'a> {
    pub ts: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub tenant: Option<&'a str>,
}

impl AccessLog<'_> {
    pub fn emit(&self) {
        tracing::info!(
            target: ACCESS_TARGET,
            ts = self.ts,
            method = self.method,
            route = self.route,
            status = self.status,
            duration_ms = self.duration_ms,
            request_id = self.request_id,
            trace_id = self.trace_id,
            span_id = self.span_id,
            tenant = self.tenant,
            "request"
        );
    }
}

#[cfg(test)]
pub(crate) mod capture {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    fn sink(line: &str) {
        LINES.with(|l| l.borrow_mut().push(line.to_owned()));
    }

    /// Runs `f` and returns the JSON lines it logged on this thread.
    ///
    /// One process-wide subscriber writes every thread's lines to that
    /// thread's buffer. (Scoped subscribers per test would race with
    /// `tracing`'s per-callsite interest cache when tests run in parallel.)
    pub fn lines<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| super::JsonLines::install(sink, tracing::Level::INFO));
        LINES.with(|l| l.borrow_mut().clear());
        let out = f();
        (out, LINES.with(|l| l.borrow_mut().drain(..).collect()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn access_log_is_one_json_object_with_every_field() {
        let ((), lines) = capture::lines(|| {
            AccessLog {
                ts: "2026-01-01T00:00:00.000Z",
                method: "GET",
                route: "/v1/uploads/{id}",
                status: 200,
                duration_ms: 1.5,
                request_id: "req-1",
                trace_id: "trace-1",
                span_id: "00f067aa0ba902b7",
                tenant: None,
            }
            .emit();
        });
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\n'), "one line");
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["target"], ACCESS_TARGET);
        assert_eq!(v["level"], "info");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["route"], "/v1/uploads/{id}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], "trace-1");
        assert_eq!(
            v["tenant"],
            Value::Null,
            "absent tenant is null, not missing"
        );
    }

    #[test]
    fn levels_below_the_threshold_are_dropped() {
        let ((), lines) = capture::lines(|| {
            tracing::debug!("hidden");
            tracing::warn!(answer = 42, "shown");
        });
        assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["message"], "shown");
        assert_eq!(v["answer"], 42);
        assert_eq!(v["level"], "warn");
    }
}
