//! Tepi's Cloudflare Queues adapter.
//!
//! A batch the runtime hands the Worker's `queue` export becomes the core's
//! [`Delivery`]s; the core's [`Decision`] for each becomes `ack()`, a retry
//! after the decided delay, or a send to the queue's dead-letter queue and
//! `ack()`. Messages of a dead-letter queue are parked by the core
//! (`App::park_dead_letter`) and settled the same way.
//!
//! The consumer runs in the API Worker (docs/adr/0007): `edge/cloudflare`
//! exports `queue`, builds the `App` and its ports and calls [`consume`].
//! Like the edge adapters this crate only converts and wires. Which queue a
//! name stands for is the core's (`JobsConfig::queue_role`); every delay is the
//! core's (its decisions, and `JobsConfig::settle_retry_secs` when a
//! message cannot be settled). What is Cloudflare's own, the binding names
//! of `wrangler.toml`, is in [`bindings`].
//!
//! workers-rs 0.8.7's `Message` has no `attempts()`, so each message's
//! count is read from the runtime's own message object.

pub mod bindings;

use tepi_core::jobs::consumer::Delivery;
use tepi_core::jobs::dead_letters::dead_letter_body;
use tepi_core::jobs::retry::Decision;
use tepi_core::jobs::{JobsConfig, QueueRole};
use tepi_core::{App, Ports, Queue};
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Array, JSON, Reflect};
use worker::{Env, MessageExt, QueueRetryOptionsBuilder, RawMessage};

/// Runs one `MessageBatch` (the runtime's object) through `app` and
/// settles every message. `Err` only when `batch` is not a batch at all.
pub async fn consume(
    batch: &JsValue,
    env: &Env,
    app: &App,
    ports: &Ports<'_>,
) -> Result<(), JsValue> {
    let jobs = &app.config().jobs;
    let name = Reflect::get(batch, &"queue".into())?
        .as_string()
        .unwrap_or_default();
    let messages: Array = Reflect::get(batch, &"messages".into())?.dyn_into()?;
    let received: Vec<Received> = messages.iter().map(|m| received(&m)).collect();
    match jobs.queue_role(&name) {
        Some(QueueRole::Jobs(queue)) => {
            let deliveries: Vec<Delivery> = received.iter().map(|r| r.delivery.clone()).collect();
            let mut decisions = app
                .process_jobs(queue, &deliveries, ports)
                .await
                .into_iter();
            for message in &received {
                // One decision per delivery; a message left without one
                // would count as acknowledged when the handler returns.
                match decisions.next() {
                    Some(decision) => settle(env, jobs, queue, message, decision).await,
                    None => message.retry_after(jobs.settle_retry_secs),
                }
            }
        }
        Some(QueueRole::DeadLetters(queue)) => {
            for message in &received {
                match app.park_dead_letter(queue, &message.delivery, ports).await {
                    Decision::Ack => message.handle.ack(),
                    Decision::Retry { delay_secs, .. } => message.retry_after(delay_secs),
                    // A dead letter has nowhere further to go.
                    Decision::DeadLetter { .. } => message.retry_after(jobs.settle_retry_secs),
                }
            }
        }
        None => {
            tracing::error!(
                target: "tepi::jobs",
                queue = %name,
                "not a Tepi queue; its messages are left to retry"
            );
            for message in &received {
                message.retry_after(jobs.settle_retry_secs);
            }
        }
    }
    Ok(())
}

/// One message: the core's delivery, and the workers-rs handle that
/// acknowledges or retries it.
struct Received {
    delivery: Delivery,
    handle: RawMessage,
}

impl Received {
    fn retry_after(&self, delay_secs: u32) {
        self.handle.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(delay_secs)
                .build(),
        );
    }
}

fn received(value: &JsValue) -> Received {
    let body = Reflect::get(value, &"body".into()).unwrap_or(JsValue::UNDEFINED);
    // JSON messages arrive as objects, text messages as strings.
    let body = match body.as_string() {
        Some(text) => text,
        None => JSON::stringify(&body)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default(),
    };
    let attempt = Reflect::get(value, &"attempts".into())
        .ok()
        .and_then(|a| a.as_f64())
        .map_or(1, attempt);
    Received {
        delivery: Delivery { body, attempt },
        handle: RawMessage::from(
            value
                .clone()
                .unchecked_into::<worker::worker_sys::Message>(),
        ),
    }
}

/// The runtime's `attempts` (a JavaScript number) as the core's count: a
/// small whole number, at least 1.
fn attempt(count: f64) -> u32 {
    if !count.is_finite() || count < 1.0 {
        return 1;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let attempt = count.min(f64::from(u32::MAX)) as u32;
    attempt
}

/// Settles a message of a jobs queue as the core decided.
async fn settle(
    env: &Env,
    jobs: &JobsConfig,
    queue: Queue,
    message: &Received,
    decision: Decision,
) {
    match decision {
        Decision::Ack => message.handle.ack(),
        Decision::Retry { delay_secs, .. } => message.retry_after(delay_secs),
        Decision::DeadLetter { class, reason } => {
            let body = dead_letter_body(
                &message.delivery.body,
                class,
                reason,
                message.delivery.attempt,
            );
            match send_dead_letter(env, queue, &body).await {
                Ok(()) => message.handle.ack(),
                Err(e) => {
                    tracing::error!(
                        target: "tepi::jobs",
                        queue = queue.as_str(),
                        error = %e,
                        "dead-letter queue unavailable; the message is left to retry"
                    );
                    message.retry_after(jobs.settle_retry_secs);
                }
            }
        }
    }
}

/// Sends `body` (JSON) to `queue`'s dead-letter queue.
async fn send_dead_letter(env: &Env, queue: Queue, body: &str) -> worker::Result<()> {
    let binding = bindings::dead_letters(queue);
    let message = JSON::parse(body)
        .map_err(|_| worker::Error::RustError(format!("binding {binding}: not JSON")))?;
    env.queue(&binding)?
        .send_raw(
            worker::RawMessageBuilder::new(message)
                .build_with_content_type(worker::QueueContentType::Json),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_of_wrangler_toml_has_a_role() {
        let config = JobsConfig::default();
        let wrangler = include_str!("../../wrangler.toml");
        for queue in Queue::ALL {
            for (name, want) in [
                (config.queue_name(queue), QueueRole::Jobs(queue)),
                (
                    config.dead_letter_queue_name(queue),
                    QueueRole::DeadLetters(queue),
                ),
            ] {
                assert!(
                    wrangler.contains(&format!("queue = \"{name}\"")),
                    "{name} is not in wrangler.toml"
                );
                assert_eq!(config.queue_role(&name), Some(want));
            }
        }
    }

    #[test]
    fn attempts_are_whole_and_at_least_one() {
        assert_eq!(attempt(1.0), 1);
        assert_eq!(attempt(4.0), 4);
        assert_eq!(attempt(0.0), 1);
        assert_eq!(attempt(-3.0), 1);
        assert_eq!(attempt(f64::NAN), 1);
        assert_eq!(attempt(f64::INFINITY), 1);
        assert_eq!(attempt(2.7), 2);
        assert_eq!(attempt(1e12), u32::MAX);
    }
}
