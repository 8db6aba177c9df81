//! The Queues consumer: the same Worker as the API (docs/adr/0007). Each
//! batch goes to the core; its decisions map to `ack()`,
//! `retry_with_options()`, or a send to the queue's dead-letter queue and
//! `ack()`. Messages on a dead-letter queue are parked in D1.
//!
//! workers-rs 0.8.7 has no `attempts()`: the handler is exported by hand
//! (worker-build wires any export named `queue`) so that it reads each
//! message's `attempts` from the runtime's own message object.

use tepi_core::Queue;
use tepi_core::jobs::consumer::{Delivery, dead_letter_body};
use tepi_core::jobs::retry::Decision;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use worker::js_sys::{JSON, Reflect};
use worker::{Env, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::{Platform, app};

/// What a Cloudflare queue name stands for.
enum Role {
    Jobs(Queue),
    DeadLetters(Queue),
}

/// `tepi-<queue>` and `tepi-<queue>-dlq`, as in wrangler.toml.
fn role(name: &str) -> Option<Role> {
    let rest = name.strip_prefix("tepi-")?;
    let (base, dead) = match rest.strip_suffix("-dlq") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let queue = Queue::ALL.into_iter().find(|q| q.as_str() == base)?;
    Some(if dead {
        Role::DeadLetters(queue)
    } else {
        Role::Jobs(queue)
    })
}

/// One message: the runtime object (for `attempts` and the body) and the
/// workers-rs handle (for ack and retry).
struct Received {
    delivery: Delivery,
    handle: RawMessage,
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
        .filter(|a| a.is_finite() && *a >= 1.0)
        // An attempt count is a small whole number.
        .map_or(1, |a| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let attempt = a.min(f64::from(u32::MAX)) as u32;
            attempt
        });
    Received {
        delivery: Delivery { body, attempt },
        handle: RawMessage::from(
            value
                .clone()
                .unchecked_into::<worker::worker_sys::Message>(),
        ),
    }
}

fn retry_after(handle: &RawMessage, delay_secs: u32) {
    handle.retry_with_options(
        &QueueRetryOptionsBuilder::new()
            .with_delay_seconds(delay_secs)
            .build(),
    );
}

#[wasm_bindgen(
    js_name = queue,
    wasm_bindgen_futures = worker::wasm_bindgen_futures,
    js_sys = worker::js_sys
)]
pub async fn queue(batch: JsValue, env: Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
    let name = Reflect::get(&batch, &"queue".into())?
        .as_string()
        .unwrap_or_default();
    let messages: worker::js_sys::Array =
        Reflect::get(&batch, &"messages".into())?.unchecked_into();
    let received: Vec<Received> = messages.iter().map(|m| received(&m)).collect();
    let app = app(&env);
    let platform = Platform::new(&env);
    let probes = platform.probes.all();
    let ports = platform.ports(&probes);
    match role(&name) {
        Some(Role::Jobs(queue)) => {
            let deliveries: Vec<Delivery> = received.iter().map(|r| r.delivery.clone()).collect();
            let decisions = app.process_jobs(queue, &deliveries, &ports).await;
            for (message, decision) in received.iter().zip(decisions) {
                settle(&env, queue, message, decision).await;
            }
        }
        Some(Role::DeadLetters(queue)) => {
            for message in &received {
                match app.park_dead_letter(queue, &message.delivery, &ports).await {
                    Decision::Ack => message.handle.ack(),
                    Decision::Retry { delay_secs, .. } => retry_after(&message.handle, delay_secs),
                    Decision::DeadLetter { .. } => retry_after(&message.handle, 30),
                }
            }
        }
        None => {
            worker::console_error!("queue {name}: not a Tepi queue; messages left to retry");
            for message in &received {
                retry_after(&message.handle, 60);
            }
        }
    }
    Ok(JsValue::UNDEFINED)
}

async fn settle(env: &Env, queue: Queue, message: &Received, decision: Decision) {
    match decision {
        Decision::Ack => message.handle.ack(),
        Decision::Retry { delay_secs, .. } => retry_after(&message.handle, delay_secs),
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
                    worker::console_error!(
                        "dead-letter queue of {}: {e}; retrying",
                        queue.as_str()
                    );
                    retry_after(&message.handle, 30);
                }
            }
        }
    }
}

async fn send_dead_letter(env: &Env, queue: Queue, body: &str) -> worker::Result<()> {
    let producer = env.queue(crate::bindings::dead_letter_binding(queue))?;
    let message = JSON::parse(body).map_err(|_| worker::Error::RustError("not JSON".into()))?;
    producer
        .send_raw(
            worker::RawMessageBuilder::new(message)
                .build_with_content_type(worker::QueueContentType::Json),
        )
        .await
}
