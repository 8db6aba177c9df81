//! Signed webhook delivery: the one way jobs call out. Bodies are signed
//! with the tenant's own webhook secret (`Tepi-Signature`, derived from
//! `WEBHOOK_SIGNING_SECRET` and the tenant's salt: `auth::webhook_secret`),
//! carry the trace, the request id and the tenant, and go only where
//! `JobsConfig` allows.

use std::cell::RefCell;
use std::task::{Poll, Waker};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::auth::store::{WEBHOOK_SECRET_BY_TENANT, first};
use crate::auth::webhook_secret::Salts;
use crate::jobs::consumer::Job;
use crate::jobs::retry::Failure;
use crate::secret::{self, Secret};
use crate::time::Timestamp;

/// The header webhook deliveries carry: `t=<unix seconds>,v1=<hex>…`.
pub const SIGNATURE_HEADER: &str = "tepi-signature";
/// The header naming the delivery, which receivers deduplicate on; signed.
pub const EVENT_ID_HEADER: &str = "tepi-event-id";

/// What a delivery's signature covers: `<timestamp>.<tenant>.<event
/// id>.<body>`, so a signed body cannot be replayed as another tenant's,
/// another delivery's or at another time.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub timestamp: i64,
    /// The `X-Tenant-ID` value.
    pub tenant: &'a str,
    /// The `Tepi-Event-Id` value.
    pub event_id: &'a str,
    pub body: &'a [u8],
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of the signed content>` with one `v1`
/// per secret, the current secret's first (Stripe's scheme): during a
/// rotation's overlap a receiver holding either secret finds a match.
pub fn signature(secrets: &[Secret], signed: Signed<'_>) -> String {
    let mut header = format!("t={}", signed.timestamp);
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes keys of any length");
        for part in [
            signed.timestamp.to_string().as_bytes(),
            signed.tenant.as_bytes(),
            signed.event_id.as_bytes(),
        ] {
            mac.update(part);
            mac.update(b".");
        }
        mac.update(signed.body);
        header.push_str(",v1=");
        header.push_str(&secret::hex(&mac.finalize().into_bytes()));
    }
    header
}

/// How long a batch goes on using the salts it read for a tenant before it
/// reads them again: about one in-flight delivery's worth of staleness, so
/// a rotation that ends the old secret at once (no overlap, or a second
/// rotation during one) reaches a long batch's later deliveries too.
pub const SALTS_FRESH_MS: f64 = 2_000.0;

/// The webhook salts of the tenants whose jobs a batch is running, read
/// once per tenant and reused for `SALTS_FRESH_MS`: a batch's deliveries
/// share one read of a tenant's `webhook_secrets` row instead of one each.
/// Jobs that ask while the read is under way wait for it rather than read
/// too. One entry per tenant with a delivery in the batch; it lives as
/// long as the batch (or drain).
#[derive(Debug, Default)]
pub struct SaltCache(RefCell<Vec<(String, Slot)>>);

#[derive(Debug)]
enum Slot {
    /// One job is reading the row; the others wait.
    Loading(Vec<Waker>),
    Ready {
        salts: Salts,
        read_at: Timestamp,
    },
}

enum Lookup<'c> {
    Fresh(Salts),
    Wait,
    /// This job reads the row and fills the slot (or, dropped, frees it).
    Load(Loading<'c>),
}

impl SaltCache {
    fn lookup<'c>(&'c self, tenant: &str, now: Timestamp) -> Lookup<'c> {
        let mut slots = self.0.borrow_mut();
        let load = || {
            Lookup::Load(Loading {
                cache: self,
                tenant: tenant.to_owned(),
                filled: false,
            })
        };
        match slots.iter_mut().find(|(t, _)| t == tenant) {
            Some((_, Slot::Ready { salts, read_at }))
                if now.millis_since(*read_at) < SALTS_FRESH_MS =>
            {
                Lookup::Fresh(salts.clone())
            }
            Some((_, Slot::Loading(_))) => Lookup::Wait,
            Some((_, slot)) => {
                *slot = Slot::Loading(Vec::new());
                load()
            }
            None => {
                slots.push((tenant.to_owned(), Slot::Loading(Vec::new())));
                load()
            }
        }
    }

    /// Ready once no job is reading `tenant`'s row.
    async fn loaded(&self, tenant: &str) {
        std::future::poll_fn(|cx| {
            let mut slots = self.0.borrow_mut();
            match slots.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, Slot::Loading(wakers))) => {
                    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        wakers.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        })
        .await;
    }

    /// Replaces `tenant`'s slot (`None`: removes it) and wakes its waiters.
    fn settle(&self, tenant: &str, slot: Option<Slot>) {
        let waiters = {
            let mut slots = self.0.borrow_mut();
            let Some(at) = slots.iter().position(|(t, _)| t == tenant) else {
                return;
            };
            let previous = match slot {
                Some(slot) => std::mem::replace(&mut slots[at].1, slot),
                None => slots.swap_remove(at).1,
            };
            match previous {
                Slot::Loading(wakers) => wakers,
                Slot::Ready { .. } => Vec::new(),
            }
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// A job's claim to read a tenant's row for the batch. Dropped without
/// being filled (the read failed, or the job ran out of time while
/// reading), it frees the slot so that a waiting job reads instead.
struct Loading<'c> {
    cache: &'c SaltCache,
    tenant: String,
    filled: bool,
}

impl Loading<'_> {
    fn fill(mut self, salts: Salts, read_at: Timestamp) {
        self.filled = true;
        self.cache
            .settle(&self.tenant, Some(Slot::Ready { salts, read_at }));
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if !self.filled {
            self.cache.settle(&self.tenant, None);
        }
    }
}

/// The secrets that sign the job's tenant's deliveries now: its salts as
/// the batch read them, or one indexed read of its `webhook_secrets` row.
async fn tenant_secrets(job: &Job<'_>, key: &Secret) -> Result<Vec<Secret>, Failure> {
    let loading = loop {
        match job.salts.lookup(job.tenant(), job.ports.clock.now()) {
            Lookup::Fresh(salts) => return Ok(salts.secrets(key, job.tenant(), job.secs())),
            Lookup::Wait => job.salts.loaded(job.tenant()).await,
            Lookup::Load(loading) => break loading,
        }
    };
    let rows = job
        .query(WEBHOOK_SECRET_BY_TENANT, vec![job.tenant().into()])
        .await?;
    let Some(row) = first(&rows) else {
        // No retry can fix it; an admin's rotation creates the row.
        tracing::error!(target: "tepi::jobs", tenant = job.tenant(),
            "the tenant has no webhook secret; an admin's rotation creates one");
        return Err(Failure::Invalid);
    };
    let salts = Salts::read(&row).map_err(|e| {
        tracing::error!(target: "tepi::jobs", error = %e, "unreadable webhook secret row");
        Failure::Unreachable
    })?;
    let secrets = salts.secrets(key, job.tenant(), job.secs());
    loading.fill(salts, job.ports.clock.now());
    Ok(secrets)
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
    let Some(key) = &job.config.webhook_secret else {
        tracing::error!(target: "tepi::jobs", "WEBHOOK_SIGNING_SECRET is not set");
        return Err(Failure::Unreachable);
    };
    let client = job.ports.http.ok_or(Failure::Unreachable)?;
    let secrets = tenant_secrets(job, key).await?;
    let bytes = body.to_string();
    let signature = signature(
        &secrets,
        Signed {
            timestamp: job.secs(),
            tenant: job.tenant(),
            event_id: delivery,
            body: bytes.as_bytes(),
        },
    );
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
        .header(EVENT_ID_HEADER, delivery)
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

    fn secret(value: &str) -> Secret {
        Secret::new(value.to_owned())
    }

    const BODY: &[u8] = b"{\"x\":1}";

    fn signed() -> Signed<'static> {
        Signed {
            timestamp: 1_795_582_978,
            tenant: "acme",
            event_id: "evt_1",
            body: BODY,
        }
    }

    #[test]
    fn the_signature_is_the_documented_one() {
        // Computed independently: Python's
        // hmac.new(secret, b"1795582978.acme.evt_1." + body, sha256).
        let key = secret("whsec_67d852b9c86c9f690cc2857dd42d1b328eddafbc49cd8e9620153b3811de10d4"); // pragma: allowlist secret
        assert_eq!(
            signature(&[key], signed()),
            "t=1795582978,v1=d46705ea0ff89a6a1abf99a4d28e209519ea08e2826d45c3dabf11c3e08fa932" // pragma: allowlist secret
        );
    }

    #[test]
    fn signatures_cover_timestamp_tenant_event_id_and_body() {
        let key = [secret("whsec_one")];
        let base = signature(&key, signed());
        assert!(base.starts_with("t=1795582978,v1="), "{base}");
        assert_eq!(base.len(), "t=1795582978,v1=".len() + 64);
        let cases = [
            (
                Signed {
                    timestamp: 1_795_582_979,
                    ..signed()
                },
                "timestamp",
            ),
            (
                Signed {
                    tenant: "globex",
                    ..signed()
                },
                "tenant",
            ),
            (
                Signed {
                    event_id: "evt_2",
                    ..signed()
                },
                "event id",
            ),
            (
                Signed {
                    body: b"{\"x\":2}",
                    ..signed()
                },
                "body",
            ),
        ];
        for (other, what) in cases {
            let v1 = |header: &str| header.split_once(",v1=").unwrap().1.to_owned();
            assert_ne!(v1(&signature(&key, other)), v1(&base), "{what} is signed");
        }
        assert_ne!(
            signature(&[secret("whsec_two")], signed()),
            base,
            "the secret matters"
        );
    }

    #[test]
    fn during_an_overlap_both_secrets_sign() {
        let (current, previous) = (secret("whsec_current"), secret("whsec_previous"));
        let both = signature(&[current.clone(), previous.clone()], signed());
        let alone = |s: &Secret| {
            signature(std::slice::from_ref(s), signed())
                .split_once(",v1=")
                .unwrap()
                .1
                .to_owned()
        };
        assert_eq!(
            both,
            format!(
                "t=1795582978,v1={},v1={}",
                alone(&current),
                alone(&previous)
            ),
            "the current secret's v1 first"
        );
    }
}
