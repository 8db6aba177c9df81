//! Signed webhook delivery: the one way jobs call out. Bodies are signed
//! with `WEBHOOK_SIGNING_SECRET` (`Tepi-Signature`), carry the trace, the
//! request id and the tenant, and go only where `JobsConfig` allows.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::jobs::consumer::Job;
use crate::jobs::retry::Failure;

/// The header webhook deliveries carry: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "tepi-signature";

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`: receivers
/// recompute it with the shared secret and refuse old timestamps.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex = mac
        .finalize()
        .into_bytes()
        .iter()
        .fold(String::new(), |mut out, b| {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
            out
        });
    format!("t={timestamp},v1={hex}")
}

/// POSTs a signed JSON body to `url`; `Ok` on 2xx. `delivery` is the
/// `Tepi-Event-Id` receivers deduplicate on: the same for every retry
/// of this delivery.
pub async fn post_webhook(
    job: &Job<'_>,
    url: &str,
    body: &Value,
    delivery: &str,
) -> Result<u16, Failure> {
    // Checked again at delivery: the rules or the lists may have changed
    // since the URL was stored.
    if let Err(refused) = crate::jobs::targets::check(job.config, url) {
        tracing::error!(target: "tepi::jobs", url, reason = refused.message(), "webhook URL not allowed");
        return Err(Failure::Invalid);
    }
    let Some(secret) = &job.config.webhook_secret else {
        tracing::error!(target: "tepi::jobs", "WEBHOOK_SIGNING_SECRET is not set");
        return Err(Failure::Unreachable);
    };
    let client = job.ports.http.ok_or(Failure::Unreachable)?;
    let bytes = body.to_string();
    let signature = signature(secret.as_bytes(), job.secs(), bytes.as_bytes());
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "tepi-webhooks/1")
        .header(SIGNATURE_HEADER, signature)
        .header(crate::api::context::TRACEPARENT, job.trace.to_string())
        .header(
            crate::api::context::REQUEST_ID,
            job.envelope.request_id.as_str(),
        )
        .header(crate::api::context::TENANT_ID, job.tenant())
        .header("tepi-event-id", delivery)
        .body(Bytes::from(bytes))
        .map_err(|_| Failure::Invalid)?;
    match client.send(request).await {
        Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
        Ok(response) => Err(Failure::Status(response.status().as_u16())),
        Err(e) => {
            tracing::warn!(target: "tepi::jobs", error = %e, url, "webhook unreachable");
            Err(Failure::Unreachable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures_cover_the_timestamp_and_the_body() {
        let a = signature(b"secret", 1_795_582_978, b"{\"x\":1}");
        assert!(a.starts_with("t=1795582978,v1="), "{a}");
        assert_eq!(a.len(), "t=1795582978,v1=".len() + 64);
        assert_ne!(
            a,
            signature(b"secret", 1_795_582_979, b"{\"x\":1}"),
            "timestamp signed"
        );
        assert_ne!(
            a,
            signature(b"secret", 1_795_582_978, b"{\"x\":2}"),
            "body signed"
        );
        assert_ne!(
            a,
            signature(b"other", 1_795_582_978, b"{\"x\":1}"),
            "key matters"
        );
    }
}
