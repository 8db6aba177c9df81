//! Readiness probes of the bindings in `wrangler.toml`. Each makes one real
//! call through its binding where that is free of side effects, and
//! otherwise checks that the binding exists.

use async_trait::async_trait;
use tepi_core::Probe;
use tepi_core::ratelimit::RouteClass;
use worker::Env;

use crate::bindings::{CACHE, DB, METRICS, UPLOADS, rate_limiter, reason};
use crate::metrics_object::PING;

pub struct Probes<'e> {
    db: D1Probe<'e>,
    cache: KvProbe<'e>,
    uploads: R2Probe<'e>,
    metrics: DurableObjectProbe<'e>,
    present: Vec<Present<'e>>,
}

impl<'e> Probes<'e> {
    pub fn new(env: &'e Env) -> Self {
        let queues = tepi_queue_consumer::bindings::all().map(|name| Present {
            env,
            name,
            kind: Kind::Queue,
        });
        let limiters = RouteClass::ALL.into_iter().map(|class| Present {
            env,
            name: rate_limiter(class.as_str()),
            kind: Kind::RateLimiter,
        });
        Self {
            db: D1Probe(env),
            cache: KvProbe(env),
            uploads: R2Probe(env),
            metrics: DurableObjectProbe(env),
            present: queues.chain(limiters).collect(),
        }
    }

    pub fn all(&self) -> Vec<&dyn Probe> {
        let mut all: Vec<&dyn Probe> = vec![&self.db, &self.cache, &self.uploads, &self.metrics];
        all.extend(self.present.iter().map(|p| p as &dyn Probe));
        all
    }
}

struct D1Probe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for D1Probe<'_> {
    fn name(&self) -> &str {
        DB
    }
    async fn check(&self) -> Result<(), String> {
        let db = self.0.d1(DB).map_err(|e| reason(DB, &e))?;
        db.exec("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| reason(DB, &e))
    }
}

struct KvProbe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for KvProbe<'_> {
    fn name(&self) -> &str {
        CACHE
    }
    async fn check(&self) -> Result<(), String> {
        let kv = self.0.kv(CACHE).map_err(|e| reason(CACHE, &e))?;
        kv.get("readyz")
            .text()
            .await
            .map(|_| ())
            .map_err(|e| reason(CACHE, &e))
    }
}

struct R2Probe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for R2Probe<'_> {
    fn name(&self) -> &str {
        UPLOADS
    }
    async fn check(&self) -> Result<(), String> {
        let bucket = self.0.bucket(UPLOADS).map_err(|e| reason(UPLOADS, &e))?;
        bucket
            .head("readyz")
            .await
            .map(|_| ())
            .map_err(|e| reason(UPLOADS, &e))
    }
}

/// Pings an object of its own (not the aggregate, which stays free for
/// the isolates' writes).
struct DurableObjectProbe<'e>(&'e Env);

#[async_trait(?Send)]
impl Probe for DurableObjectProbe<'_> {
    fn name(&self) -> &str {
        METRICS
    }
    async fn check(&self) -> Result<(), String> {
        let call = async {
            let stub = self
                .0
                .durable_object(METRICS)?
                .id_from_name("readyz")?
                .get_stub()?;
            let response = stub
                .fetch_with_str(&format!(
                    "{}{PING}",
                    tepi_core::metrics::aggregate::remote::ORIGIN
                ))
                .await?;
            Ok::<u16, worker::Error>(response.status_code())
        };
        match call.await {
            Ok(200) => Ok(()),
            Ok(status) => Err(reason(METRICS, &format!("ping answered {status}"))),
            Err(e) => Err(reason(METRICS, &e)),
        }
    }
}

enum Kind {
    Queue,
    RateLimiter,
}

/// Bindings whose only side-effect-free check is that they exist.
struct Present<'e> {
    env: &'e Env,
    name: String,
    kind: Kind,
}

#[async_trait(?Send)]
impl Probe for Present<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self) -> Result<(), String> {
        let found = match self.kind {
            Kind::Queue => self.env.queue(&self.name).map(|_| ()),
            Kind::RateLimiter => self.env.rate_limiter(&self.name).map(|_| ()),
        };
        found.map_err(|e| reason(&self.name, &e))
    }
}
