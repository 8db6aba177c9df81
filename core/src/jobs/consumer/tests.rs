//! Job processing on real SQLite: idempotency, classification, backoff
//! decisions, time budgets, what each job does, the outbox drain and the
//! worker metrics it leaves behind.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::api::context::RequestContext;
use crate::auth::store::WEBHOOK_SECRET_BY_TENANT;
use crate::auth::webhook_secret::derive;
use crate::config::Config;
use crate::jobs::dead_letters::{DEAD_ATTEMPTS, DEAD_CLASS, DEAD_REASON, dead_letter_body, park};
use crate::jobs::drain::{Drained, LEASE, drain};
use crate::jobs::events::{NotificationWebhookRequested, UploadReceived, WorkflowRunRequested};
use crate::jobs::metrics as worker_metrics;
use crate::jobs::outbox::{KvBlobs, SqlOutbox};
use crate::ports::{Blobs, Clock, HttpClient, PortError, Rows, Timer};
use crate::secret::Secret;
use crate::storage::migrate;
use crate::testing::{MemoryKv, SeededEntropy, SqliteSql, SteppingClock, block_on};

/// The platform's derivation key (`WEBHOOK_SIGNING_SECRET`).
const SECRET: &str = "webhook-secret-for-tests-0123456789"; // pragma: allowlist secret
const START: u64 = 1_795_582_978_000_000;
/// `acme`'s and `globex`'s webhook secret salts in every world.
const ACME_SALT: &str = "00112233445566778899aabbccddeeff"; // pragma: allowlist secret
const GLOBEX_SALT: &str = "ffeeddccbbaa99887766554433221100"; // pragma: allowlist secret

/// The webhook secret a tenant's admins were shown for `salt`.
fn tenant_secret(tenant: &str, salt: &str) -> Secret {
    derive(&Secret::new(SECRET.to_owned()), tenant, salt)
}

/// What a receiver does (docs/api.md, scripts/webhook-receiver.py), written
/// apart from the signing code: some `v1` of `Tepi-Signature` is the
/// HMAC-SHA256, keyed with `secret`, of `<t>.<X-Tenant-ID>.<Tepi-Event-Id>.<body>`.
fn verifies(request: &http::Request<Bytes>, secret: &Secret) -> bool {
    let header = |name: &str| request.headers()[name].to_str().unwrap();
    let mut parts = header("tepi-signature").split(',');
    let t = parts.next().unwrap().strip_prefix("t=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}.{}.", header("x-tenant-id"), header("tepi-event-id")).as_bytes());
    mac.update(request.body());
    let expected = secret::hex(&mac.finalize().into_bytes());
    parts
        .filter_map(|part| part.strip_prefix("v1="))
        .any(|v1| v1 == expected)
}

/// How many `v1` signatures a delivery carries.
fn v1_count(request: &http::Request<Bytes>) -> usize {
    request.headers()["tepi-signature"]
        .to_str()
        .unwrap()
        .matches(",v1=")
        .count()
}

/// A webhook receiver answering scripted statuses (200 when the script is
/// empty; `None` means no answer at all), keeping every request.
#[derive(Default)]
struct Receiver {
    script: RefCell<VecDeque<Option<u16>>>,
    seen: RefCell<Vec<http::Request<Bytes>>>,
}

impl Receiver {
    fn answering(statuses: &[Option<u16>]) -> Self {
        Self {
            script: RefCell::new(statuses.iter().copied().collect()),
            seen: RefCell::default(),
        }
    }
}

#[async_trait(?Send)]
impl HttpClient for Receiver {
    async fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, PortError> {
        self.seen.borrow_mut().push(request);
        match self.script.borrow_mut().pop_front().unwrap_or(Some(200)) {
            Some(status) => {
                let mut response = http::Response::new(Bytes::new());
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok(response)
            }
            None => Err(PortError("connection refused".into())),
        }
    }
}

/// An endpoint that never answers.
struct Silent;

#[async_trait(?Send)]
impl HttpClient for Silent {
    async fn send(&self, _: http::Request<Bytes>) -> Result<http::Response<Bytes>, PortError> {
        std::future::pending().await
    }
}

/// A timer whose every budget has already run out.
struct Expired;

#[async_trait(?Send)]
impl Timer for Expired {
    async fn sleep(&self, _millis: u32) {}
}

struct World {
    db: SqliteSql,
    kv: MemoryKv,
    entropy: SeededEntropy,
    clock: SteppingClock,
    config: Config,
    table: Vec<JobRoute>,
}

fn world() -> World {
    let db = SqliteSql::open_in_memory();
    block_on(migrate(&db)).unwrap();
    let config = Config::load(|name| {
        (name == crate::config::vars::WEBHOOK_SIGNING_SECRET).then(|| SECRET.to_owned())
    })
    .config;
    assert!(config.jobs.webhook_secret.is_some());
    for (tenant, salt) in [("acme", ACME_SALT), ("globex", GLOBEX_SALT)] {
        block_on(db.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?1, 0)",
            &[tenant.into()],
        ))
        .unwrap();
        block_on(db.execute(
            "INSERT INTO webhook_secrets (tenant_id, salt, created_at) VALUES (?1, ?2, 0)",
            &[tenant.into(), salt.into()],
        ))
        .unwrap();
    }
    World {
        db,
        kv: MemoryKv::default(),
        entropy: SeededEntropy::new(3),
        clock: SteppingClock::new(Timestamp::from_unix_micros(START), 1000),
        config,
        table: crate::app::job_table(),
    }
}

impl World {
    fn runner<'a>(&'a self, ports: &'a Ports<'a>) -> Runner<'a> {
        Runner {
            config: &self.config.jobs,
            table: &self.table,
            ports,
            blobs_in_kv: true,
        }
    }

    fn ports<'a>(&'a self, http: &'a dyn HttpClient, timer: Option<&'a dyn Timer>) -> Ports<'a> {
        Ports {
            entropy: &self.entropy,
            clock: &self.clock,
            probes: &[],
            sql: Some(&self.db),
            kv: Some(&self.kv),
            limiter: None,
            cache: None,
            blobs: None,
            jobs: None,
            http: Some(http),
            timer,
            aggregator: None,
        }
    }

    fn process(&self, http: &dyn HttpClient, queue: Queue, body: &str, attempt: u32) -> Decision {
        let ports = self.ports(http, None);
        let delivery = Delivery {
            body: body.to_owned(),
            attempt,
        };
        block_on(process_batch(self.runner(&ports), queue, &[delivery]))
            .pop()
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        block_on(self.db.execute(sql, &[])).unwrap().rows[0][0]
            .as_integer()
            .unwrap()
    }

    fn exec(&self, sql: &str, params: &[SqlValue]) {
        block_on(self.db.execute(sql, params)).unwrap();
    }

    fn metrics(&self) -> WorkerMetrics {
        block_on(worker_metrics::load(&self.db)).unwrap()
    }
}

fn context() -> RequestContext {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-request-id", "req-7".parse().unwrap());
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    RequestContext::from_headers(&headers, &SeededEntropy::new(1))
}

/// Every envelope gets its own event id.
static NEXT_SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);

fn envelope_of<E: Event>(event: &E) -> String {
    envelope_for(event, "acme")
}

fn envelope_for<E: Event>(event: &E, tenant: &str) -> String {
    let tenant = TenantId::parse(tenant).unwrap();
    events::envelope(
        event,
        &tenant,
        &context(),
        &SeededEntropy::new(NEXT_SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        Timestamp::from_unix_micros(START - 2_000_000),
    )
    .to_string()
}

fn webhook_job(url: &str) -> String {
    webhook_job_for("acme", url)
}

fn webhook_job_for(tenant: &str, url: &str) -> String {
    envelope_for(
        &NotificationWebhookRequested {
            notification_id: "ntf_1".into(),
            url: url.into(),
            subject: "Hello".into(),
            body: "World".into(),
        },
        tenant,
    )
}

#[test]
fn a_webhook_is_delivered_signed_in_the_trace_and_applied_once() {
    let w = world();
    let receiver = Receiver::default();
    let job = webhook_job("https://hooks.example.com/in");
    assert_eq!(
        w.process(&receiver, Queue::Notifications, &job, 1),
        Decision::Ack
    );
    assert_eq!(
        w.process(&receiver, Queue::Notifications, &job, 2),
        Decision::Ack,
        "a redelivery is acknowledged"
    );
    let seen = receiver.seen.borrow();
    assert_eq!(seen.len(), 1, "but not applied twice");
    let request = &seen[0];
    let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(request.uri(), "https://hooks.example.com/in");
    assert_eq!(header("x-request-id"), "req-7");
    assert_eq!(header("x-tenant-id"), "acme");
    let trace = header("traceparent");
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {trace}"
    );
    let parent: Value = serde_json::from_str(&job).unwrap();
    assert_ne!(
        trace,
        parent["traceparent"].as_str().unwrap(),
        "a new span for the job"
    );
    let body: Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(body["notification_id"], "ntf_1");
    assert_eq!(body["subject"], "Hello");
    let event_id = parent["id"].as_str().unwrap();
    assert_eq!(header("tepi-event-id"), event_id);
    let signature = header("tepi-signature");
    let t: i64 = signature[2..signature.find(',').unwrap()].parse().unwrap();
    assert_eq!(
        t,
        i64::try_from(START / 1_000_000).unwrap(),
        "when the attempt started"
    );
    assert_eq!(
        signature,
        crate::jobs::webhook::signature(
            &[tenant_secret("acme", ACME_SALT)],
            crate::jobs::webhook::Signed {
                timestamp: t,
                tenant: "acme",
                event_id,
                body: request.body(),
            },
        ),
        "signed with the tenant's secret over timestamp, tenant, event id and body"
    );
    assert!(verifies(request, &tenant_secret("acme", ACME_SALT)));
    assert!(
        !verifies(request, &Secret::new(SECRET.to_owned())),
        "the platform key is not a receiver's secret"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM processed_jobs"), 1);
}

#[test]
fn one_tenants_delivery_does_not_verify_with_another_tenants_secret() {
    let w = world();
    let receiver = Receiver::default();
    for tenant in ["acme", "globex"] {
        let job = webhook_job_for(tenant, "https://hooks.example.com/in");
        assert_eq!(
            w.process(&receiver, Queue::Notifications, &job, 1),
            Decision::Ack
        );
    }
    let seen = receiver.seen.borrow();
    let (acme, globex) = (&seen[0], &seen[1]);
    assert_eq!(globex.headers()["x-tenant-id"], "globex");
    let (acme_secret, globex_secret) = (
        tenant_secret("acme", ACME_SALT),
        tenant_secret("globex", GLOBEX_SALT),
    );
    assert!(verifies(acme, &acme_secret));
    assert!(verifies(globex, &globex_secret));
    assert!(
        !verifies(globex, &acme_secret),
        "acme's receiver cannot verify globex's delivery"
    );
    assert!(!verifies(acme, &globex_secret), "nor the other way round");

    // Nor can acme's receiver be fooled by a globex body relabelled as acme's.
    let mut relabelled = http::Request::new(globex.body().clone());
    *relabelled.headers_mut() = globex.headers().clone();
    relabelled
        .headers_mut()
        .insert("x-tenant-id", "acme".parse().unwrap());
    assert!(!verifies(&relabelled, &acme_secret));
    assert!(
        !verifies(&relabelled, &globex_secret),
        "the tenant is part of what is signed"
    );
}

#[test]
fn during_a_rotations_overlap_both_secrets_verify_and_then_only_the_new_one() {
    let w = world();
    let start = i64::try_from(START / 1_000_000).unwrap();
    let rotated = "0123456789abcdef0123456789abcdef"; // pragma: allowlist secret
    let rotate_until = |until: i64| {
        w.exec(
            "UPDATE webhook_secrets SET previous_salt = ?2, previous_until = ?3, salt = ?4 \
             WHERE tenant_id = ?1",
            &[
                "acme".into(),
                ACME_SALT.into(),
                until.into(),
                rotated.into(),
            ],
        );
    };
    let (old, new) = (
        tenant_secret("acme", ACME_SALT),
        tenant_secret("acme", rotated),
    );
    let cases = [
        (start + 3600, 2, true, "an hour of overlap left"),
        (start + 1, 2, true, "a second left"),
        (start, 1, false, "the overlap ends as the attempt starts"),
        (start - 60, 1, false, "the overlap ended a minute ago"),
    ];
    for (until, signatures, old_verifies, why) in cases {
        rotate_until(until);
        let receiver = Receiver::default();
        let job = webhook_job("https://hooks.example.com/in");
        assert_eq!(
            w.process(&receiver, Queue::Notifications, &job, 1),
            Decision::Ack,
            "{why}"
        );
        let request = &receiver.seen.borrow()[0];
        assert_eq!(v1_count(request), signatures, "{why}");
        assert!(verifies(request, &new), "{why}: the new secret verifies");
        assert_eq!(
            verifies(request, &old),
            old_verifies,
            "{why}: the old secret"
        );
    }
}

#[test]
fn a_tenant_without_a_secret_fails_for_good_and_unreadable_storage_for_now() {
    let w = world();
    let receiver = Receiver::default();
    w.exec(
        "DELETE FROM webhook_secrets WHERE tenant_id = 'globex'",
        &[],
    );
    let job = webhook_job_for("globex", "https://hooks.example.com/in");
    assert!(
        matches!(
            w.process(&receiver, Queue::Notifications, &job, 1),
            Decision::DeadLetter {
                class: FailureClass::Client,
                reason: "permanent failure",
            }
        ),
        "no retry can make a secret"
    );
    w.exec("DROP TABLE webhook_secrets", &[]);
    let job = webhook_job("https://hooks.example.com/in");
    assert!(
        matches!(
            w.process(&receiver, Queue::Notifications, &job, 1),
            Decision::Retry {
                class: FailureClass::Server,
                ..
            }
        ),
        "storage failing is transient"
    );
    assert!(
        receiver.seen.borrow().is_empty(),
        "nothing unsigned was sent"
    );
}

#[test]
fn failures_are_classified_retried_with_backoff_and_dead_lettered() {
    let w = world();
    let job = webhook_job("https://hooks.example.com/in");
    let cases = [
        (Some(503), 1, "5xx", "retry"),
        (Some(429), 1, "5xx", "retry"),
        (Some(408), 2, "5xx", "retry"),
        (None, 1, "5xx", "retry"),
        (Some(400), 1, "4xx", "dead_letter"),
        (Some(404), 1, "4xx", "dead_letter"),
        (Some(500), 5, "5xx", "dead_letter"),
    ];
    for (answer, attempt, class, outcome) in cases {
        let receiver = Receiver::answering(&[answer]);
        let decision = w.process(&receiver, Queue::Notifications, &job, attempt);
        let (got_class, got_outcome) = match decision {
            Decision::Retry { class, delay_secs } => {
                let ceiling = 2 * (1 << (attempt - 1));
                assert!(
                    delay_secs <= ceiling,
                    "{answer:?}: {delay_secs} > {ceiling}"
                );
                (class, "retry")
            }
            Decision::DeadLetter { class, .. } => (class, "dead_letter"),
            Decision::Ack => panic!("{answer:?} acknowledged"),
        };
        assert_eq!(
            (got_class.as_str(), got_outcome),
            (class, outcome),
            "{answer:?} at attempt {attempt}"
        );
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM processed_jobs"),
        0,
        "never applied"
    );
    let m = w.metrics();
    assert_eq!(m.processed(Queue::Notifications, "retry"), 4);
    assert_eq!(m.processed(Queue::Notifications, "dead_letter"), 3);
    assert_eq!(m.errors(Queue::Notifications, FailureClass::Server), 5);
    assert_eq!(m.errors(Queue::Notifications, FailureClass::Client), 2);
    assert_eq!(m.active(Queue::Notifications), 0);
}

#[test]
fn a_job_over_its_time_budget_times_out_and_is_retried() {
    let w = world();
    let job = webhook_job("https://hooks.example.com/slow");
    let ports = w.ports(&Silent, Some(&Expired));
    let delivery = Delivery {
        body: job,
        attempt: 1,
    };
    let decisions = block_on(process_batch(
        w.runner(&ports),
        Queue::Notifications,
        &[delivery],
    ));
    assert!(
        matches!(
            decisions[..],
            [Decision::Retry {
                class: FailureClass::Timeout,
                ..
            }]
        ),
        "{decisions:?}"
    );
    assert_eq!(
        w.metrics()
            .errors(Queue::Notifications, FailureClass::Timeout),
        1
    );
}

#[test]
fn malformed_misrouted_and_disallowed_jobs_go_to_the_dead_letter_queue() {
    let w = world();
    let receiver = Receiver::default();
    let cases = [
        ("not json".to_owned(), Queue::Notifications, "garbage"),
        (
            json!({"specversion": "1.0", "id": "evt_x", "type": "x"}).to_string(),
            Queue::Notifications,
            "no time, tenant or request id",
        ),
        (
            webhook_job("https://hooks.example.com/in"),
            Queue::Uploads,
            "on the wrong queue",
        ),
        (
            webhook_job("http://hooks.example.com/in"),
            Queue::Notifications,
            "plain http to a host not allowed",
        ),
    ];
    for (body, queue, why) in cases {
        assert!(
            matches!(
                w.process(&receiver, queue, &body, 1),
                Decision::DeadLetter {
                    class: FailureClass::Client,
                    ..
                }
            ),
            "{why}"
        );
    }
    assert!(receiver.seen.borrow().is_empty(), "nothing was sent");
}

#[test]
fn dead_letter_bodies_carry_the_envelope_and_why() {
    let job = webhook_job("https://hooks.example.com/in");
    let body: Value = serde_json::from_str(&dead_letter_body(
        &job,
        FailureClass::Server,
        "retries exhausted",
        5,
    ))
    .unwrap();
    let original: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(body["id"], original["id"]);
    assert_eq!(body["data"], original["data"]);
    assert_eq!(body[DEAD_CLASS], "5xx");
    assert_eq!(body[DEAD_REASON], "retries exhausted");
    assert_eq!(body[DEAD_ATTEMPTS], 5);
    let wrapped: Value =
        serde_json::from_str(&dead_letter_body("<junk>", FailureClass::Client, "x", 1)).unwrap();
    assert_eq!(wrapped["unreadable"], "<junk>", "nothing is lost");
}

#[test]
fn parking_records_each_dead_letter_once_and_counts_only_platform_moves() {
    let w = world();
    let receiver = Receiver::default();
    let ports = w.ports(&receiver, None);
    let job = webhook_job("https://hooks.example.com/in");
    let decided = Delivery {
        body: dead_letter_body(&job, FailureClass::Client, "permanent failure", 1),
        attempt: 1,
    };
    let moved = Delivery {
        body: webhook_job("https://hooks.example.com/other"),
        attempt: 1,
    };
    for delivery in [&decided, &decided, &moved] {
        assert_eq!(
            block_on(park(&ports, &w.config.jobs, Queue::Notifications, delivery)),
            Decision::Ack
        );
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        2,
        "one row per event, however often it arrives"
    );
    assert_eq!(
        w.metrics().processed(Queue::Notifications, "dead_letter"),
        1,
        "only the platform's move is counted here; the core counted its own"
    );
    let tenant = TenantId::parse("acme").unwrap();
    let listed = block_on(crate::jobs::dead_letters::list(
        &w.db,
        &tenant,
        &http::Request::new(Bytes::new()),
    ))
    .unwrap();
    let items = listed["items"].as_array().unwrap();
    let parked = items
        .iter()
        .find(|i| i["class"] == "4xx")
        .expect("the decided one");
    assert_eq!(parked["reason"], "permanent failure");
    assert_eq!(parked["envelope"]["data"]["notification_id"], "ntf_1");
    let moved = items
        .iter()
        .find(|i| i["class"] == "unknown")
        .expect("the moved one");
    assert_eq!(moved["reason"], "the platform gave up after its retries");
}

fn workflow(w: &World, id: &str, trigger: &str, steps: &Value) {
    w.exec(
        "INSERT INTO workflows (id, tenant_id, name, trigger, steps, created_by, created_at, updated_at) \
         VALUES (?1, 'acme', 'wf', ?2, ?3, 'usr_admin', 0, 0)",
        &[id.into(), trigger.into(), steps.to_string().into()],
    );
}

fn requested_run(w: &World, run_id: &str, workflow_id: &str, steps: usize) -> String {
    let pending: Vec<Value> = (0..steps)
        .map(|_| json!({"status": "pending", "result": null}))
        .collect();
    w.exec(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_id, status, cause, input, step_results, requested_by, created_at, updated_at) \
         VALUES (?1, 'acme', ?2, 'requested', '{\"type\":\"manual\"}', '{\"order\":42}', ?3, NULL, 0, 0)",
        &[run_id.into(), workflow_id.into(), Value::Array(pending).to_string().into()],
    );
    envelope_of(&WorkflowRunRequested {
        workflow_id: workflow_id.into(),
        run_id: run_id.into(),
        cause: json!({"type": "manual"}),
        input: json!({"order": 42}),
    })
}

fn run_row(w: &World, run_id: &str) -> (String, Value) {
    let rows = block_on(w.db.execute(
        "SELECT status, step_results FROM workflow_runs WHERE id = ?1",
        &[run_id.into()],
    ))
    .unwrap();
    let status = rows.rows[0][0].as_text().unwrap().to_owned();
    let results = serde_json::from_str(rows.rows[0][1].as_text().unwrap()).unwrap();
    (status, results)
}

#[test]
fn a_run_executes_its_steps_resumes_after_a_failure_and_never_repeats_one() {
    let w = world();
    for user in ["usr_a", "usr_b"] {
        w.exec(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at, updated_at) \
             VALUES (?1, 'acme', ?2, 'x', 'admin', 0, 0)",
            &[user.into(), format!("{user}@example.com").into()],
        );
    }
    let steps = json!([
        {"type": "notify", "role": "admin", "message": "order in"},
        {"type": "webhook", "url": "https://hooks.example.com/run"}
    ]);
    workflow(&w, "wf_1", "manual", &steps);
    let job = requested_run(&w, "run_1", "wf_1", 2);

    let failing = Receiver::answering(&[Some(502)]);
    assert!(matches!(
        w.process(&failing, Queue::Workflows, &job, 1),
        Decision::Retry { .. }
    ));
    let (status, results) = run_row(&w, "run_1");
    assert_eq!(status, "running");
    assert_eq!(results[0]["status"], "succeeded");
    assert_eq!(results[0]["result"]["recipients"], 2);
    assert_eq!(results[1]["status"], "retrying");
    assert_eq!(results[1]["result"]["error"], "5xx");

    let receiver = Receiver::default();
    assert_eq!(
        w.process(&receiver, Queue::Workflows, &job, 2),
        Decision::Ack
    );
    let (status, results) = run_row(&w, "run_1");
    assert_eq!(status, "succeeded");
    assert_eq!(
        results[1],
        json!({"status": "succeeded", "result": {"status": "2xx"}})
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM notifications"),
        2,
        "the notify step ran once for each admin, not again on the retry"
    );
    let sent: Value = serde_json::from_slice(receiver.seen.borrow()[0].body()).unwrap();
    assert_eq!(sent["run_id"], "run_1");
    assert_eq!(sent["input"], json!({"order": 42}));
    let delivered = &receiver.seen.borrow()[0];
    assert_eq!(delivered.headers()["tepi-event-id"], "run_1-1");
    assert!(
        verifies(delivered, &tenant_secret("acme", ACME_SALT)),
        "a step's delivery is signed with its tenant's secret"
    );

    assert_eq!(
        w.process(&receiver, Queue::Workflows, &job, 3),
        Decision::Ack
    );
    assert_eq!(
        receiver.seen.borrow().len(),
        1,
        "a finished run is not run again"
    );
}

#[test]
fn a_run_that_is_given_up_on_is_marked_failed() {
    let w = world();
    workflow(
        &w,
        "wf_1",
        "manual",
        &json!([{"type": "webhook", "url": "https://hooks.example.com/run"}]),
    );
    let job = requested_run(&w, "run_1", "wf_1", 1);
    let receiver = Receiver::answering(&[Some(503)]);
    assert!(matches!(
        w.process(&receiver, Queue::Workflows, &job, 5),
        Decision::DeadLetter {
            reason: "retries exhausted",
            ..
        }
    ));
    assert_eq!(run_row(&w, "run_1").0, "failed");
}

#[test]
fn a_wait_step_hands_the_run_to_a_delayed_job() {
    let w = world();
    let steps = json!([{"type": "wait", "seconds": 60}, {"type": "notify", "user_id": "usr_a", "message": "later"}]);
    workflow(&w, "wf_1", "manual", &steps);
    let job = requested_run(&w, "run_1", "wf_1", 2);
    let receiver = Receiver::default();
    assert_eq!(
        w.process(&receiver, Queue::Workflows, &job, 1),
        Decision::Ack
    );
    let (status, results) = run_row(&w, "run_1");
    assert_eq!(status, "running");
    assert_eq!(results[0]["status"], "waiting");
    let rows = block_on(w.db.execute(
        "SELECT envelope, available_at - enqueued_at FROM job_outbox WHERE queue = 'workflows'",
        &[],
    ))
    .unwrap();
    assert_eq!(rows.rows.len(), 1, "one continuation");
    assert_eq!(rows.rows[0][1], SqlValue::Integer(60), "due after the wait");
    let continuation: Value = serde_json::from_str(rows.rows[0][0].as_text().unwrap()).unwrap();
    assert_eq!(continuation["data"]["run_id"], "run_1");
    assert!(
        continuation["traceparent"]
            .as_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the continuation stays in the trace"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM notifications"), 0, "not yet");
}

#[test]
fn a_meta_event_starts_each_matching_workflow_once() {
    let w = world();
    workflow(
        &w,
        "wf_match",
        "meta.*",
        &json!([{"type": "wait", "seconds": 1}]),
    );
    workflow(
        &w,
        "wf_other",
        "upload.received",
        &json!([{"type": "wait", "seconds": 1}]),
    );
    let item = events::MetaItem {
        platform: "whatsapp",
        item_id: "wamid.1".into(),
        from: Some("1555".into()),
        timestamp: None,
        text: Some("hi".into()),
        status: None,
    };
    let job = envelope_of(&events::MetaMessageReceived(item));
    let receiver = Receiver::default();
    assert_eq!(
        w.process(&receiver, Queue::MetaEvents, &job, 1),
        Decision::Ack
    );
    // The same event once more, as if the marker had been lost.
    w.exec("DELETE FROM processed_jobs", &[]);
    assert_eq!(
        w.process(&receiver, Queue::MetaEvents, &job, 2),
        Decision::Ack
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM workflow_runs WHERE workflow_id = 'wf_match'"),
        1
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM workflow_runs WHERE workflow_id = 'wf_other'"),
        0
    );
    let published = w.count("SELECT COUNT(*) FROM job_outbox WHERE queue = 'workflows'");
    assert!(
        (1..=2).contains(&published),
        "published for the requested run ({published})"
    );
    assert_eq!(
        w.metrics().enqueued(Queue::Workflows),
        u64::try_from(published).unwrap(),
        "each publication counted"
    );
}

/// Two stored uploads of acme declared as `hello, world`: `upl_good` holds
/// those bytes, `upl_bad` others. Returns the `upload.received` job of an id.
fn stored_uploads(w: &World) -> impl Fn(&str) -> String {
    let body = b"hello, world".to_vec();
    let sha = crate::uploads::hex(&Sha256::digest(&body));
    let tenant = TenantId::parse("acme").unwrap();
    for (id, stored) in [
        ("upl_good", body.clone()),
        ("upl_bad", b"tampered!!!!".to_vec()),
    ] {
        w.exec(
            "INSERT INTO uploads (id, tenant_id, filename, content_type, size, sha256, status, created_by, created_at, updated_at) \
             VALUES (?1, 'acme', 'a.txt', 'text/plain', ?2, ?3, 'stored', 'usr_a', 0, 0)",
            &[id.into(), i64::try_from(body.len()).unwrap().into(), sha.clone().into()],
        );
        block_on(KvBlobs(&w.kv).put(
            &crate::uploads::blob_key(&tenant, id),
            &stored,
            "text/plain",
        ))
        .unwrap();
    }
    move |id: &str| {
        envelope_of(&UploadReceived {
            upload_id: id.into(),
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            size: body.len() as u64,
            sha256: sha.clone(),
            uploaded_by: "usr_a".into(),
        })
    }
}

#[test]
fn an_upload_job_marks_matching_content_ready_and_other_content_invalid() {
    let w = world();
    let job = stored_uploads(&w);
    let receiver = Receiver::default();
    assert_eq!(
        w.process(&receiver, Queue::Uploads, &job("upl_good"), 1),
        Decision::Ack
    );
    assert!(matches!(
        w.process(&receiver, Queue::Uploads, &job("upl_bad"), 1),
        Decision::DeadLetter {
            class: FailureClass::Client,
            ..
        }
    ));
    let verdict = |id: &str| {
        block_on(w.db.execute(
            "SELECT result FROM upload_checks WHERE upload_id = ?1",
            &[id.into()],
        ))
        .unwrap()
        .rows[0][0]
            .as_text()
            .unwrap()
            .to_owned()
    };
    assert_eq!(verdict("upl_good"), "ready");
    assert_eq!(verdict("upl_bad"), "invalid");
}

#[test]
fn only_a_verified_upload_starts_the_workflows_it_triggers() {
    let w = world();
    workflow(
        &w,
        "wf_upload",
        "upload.received",
        &json!([{"type": "wait", "seconds": 0}]),
    );
    let job = stored_uploads(&w);
    let receiver = Receiver::default();
    let runs = || w.count("SELECT COUNT(*) FROM workflow_runs WHERE workflow_id = 'wf_upload'");
    // Deleted before its check: nothing to verify, nothing to start.
    assert_eq!(
        w.process(&receiver, Queue::Uploads, &job("upl_gone"), 1),
        Decision::Ack
    );
    assert_eq!(runs(), 0, "a deleted upload starts no workflow");
    assert!(matches!(
        w.process(&receiver, Queue::Uploads, &job("upl_bad"), 1),
        Decision::DeadLetter { .. }
    ));
    assert_eq!(runs(), 0, "content that does not match starts no workflow");
    assert_eq!(
        w.process(&receiver, Queue::Uploads, &job("upl_good"), 1),
        Decision::Ack
    );
    assert_eq!(
        runs(),
        1,
        "a verified upload starts the workflow it triggers"
    );
}

#[test]
fn the_drain_leases_processes_and_settles_outbox_jobs() {
    // Answers by URL, whatever the order of processing.
    struct ByUrl<'a>(&'a Receiver);
    #[async_trait(?Send)]
    impl HttpClient for ByUrl<'_> {
        async fn send(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, PortError> {
            let status = match request.uri().path() {
                "/busy" => 503,
                "/gone" => 410,
                _ => 200,
            };
            self.0.seen.borrow_mut().push(request);
            let mut response = http::Response::new(Bytes::new());
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok(response)
        }
    }
    let mut w = world();
    w.config.jobs.lease_secs = 30;
    let outbox = SqlOutbox {
        sql: &w.db,
        entropy: &w.entropy,
        now: Timestamp::from_unix_micros(START - 5_000_000),
    };
    for url in [
        "https://a.example/ok",
        "https://a.example/busy",
        "https://a.example/gone",
    ] {
        let job = webhook_job(url).replace("ntf_1", url);
        block_on(outbox.enqueue(Queue::Notifications, &job)).unwrap();
    }
    let receiver = Receiver::default();
    let client = ByUrl(&receiver);
    let ports = w.ports(&client, None);
    let first = block_on(drain(w.runner(&ports), &w.db, 10)).unwrap();
    assert_eq!(
        first,
        Drained {
            leased: 3,
            acked: 1,
            retried: 1,
            dead_lettered: 1
        }
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM job_outbox"),
        1,
        "the retry stays"
    );
    assert_eq!(w.count("SELECT attempts FROM job_outbox"), 1);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters WHERE class = '4xx'"),
        1
    );
    let again = block_on(drain(w.runner(&ports), &w.db, 10)).unwrap();
    assert!(
        again.leased <= 1,
        "only the retry, and only once due: {again:?}"
    );
    let m = w.metrics();
    assert_eq!(m.processed(Queue::Notifications, "ack"), 1);
    assert_eq!(m.processed(Queue::Notifications, "dead_letter"), 1);
}

#[test]
fn a_leased_job_is_invisible_until_its_lease_ends() {
    let w = world();
    let outbox = SqlOutbox {
        sql: &w.db,
        entropy: &w.entropy,
        now: Timestamp::from_unix_micros(START - 5_000_000),
    };
    block_on(outbox.enqueue(Queue::Notifications, &webhook_job("https://a.example/x"))).unwrap();
    let now = w.clock.now().as_unix_secs();
    let leased =
        block_on(w.db.execute(LEASE, &[now.into(), (now + 60).into(), 10.into()])).unwrap();
    assert_eq!(leased.rows.len(), 1);
    let again = block_on(w.db.execute(LEASE, &[now.into(), (now + 60).into(), 10.into()])).unwrap();
    assert!(again.rows.is_empty(), "a second drain does not see it");
    let later =
        block_on(w.db.execute(LEASE, &[(now + 61).into(), (now + 121).into(), 10.into()])).unwrap();
    assert_eq!(
        later.rows.len(),
        1,
        "visible again after the lease (a crashed drain)"
    );
    assert_eq!(later.get(0, "attempts"), Some(&SqlValue::Integer(2)));
}

#[test]
fn a_batch_runs_at_most_the_configured_number_of_jobs_at_once() {
    struct Yielding<'a> {
        active: &'a Cell<usize>,
        peak: &'a Cell<usize>,
        polls: u8,
    }
    impl Future for Yielding<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            if self.polls == 0 {
                self.active.set(self.active.get() + 1);
                self.peak.set(self.peak.get().max(self.active.get()));
            }
            self.polls += 1;
            if self.polls < 3 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.active.set(self.active.get() - 1);
            Poll::Ready(())
        }
    }
    for limit in [1, 3, 8] {
        let (active, peak) = (Cell::new(0), Cell::new(0));
        let futures: Vec<_> = (0..20)
            .map(|_| Yielding {
                active: &active,
                peak: &peak,
                polls: 0,
            })
            .collect();
        let outputs = block_on(run_bounded(futures, limit));
        assert_eq!(outputs.len(), 20);
        assert_eq!(peak.get(), limit, "limit {limit}");
    }
    let ordered = block_on(run_bounded((0..10).map(|i| async move { i }).collect(), 4));
    assert_eq!(
        ordered,
        (0..10).collect::<Vec<_>>(),
        "outputs in input order"
    );
}

#[test]
fn envelopes_written_by_the_api_parse_back() {
    let job = webhook_job("https://hooks.example.com/in");
    let envelope = Envelope::parse(&job).unwrap();
    assert_eq!(envelope.event_type, "notification.webhook.requested");
    assert_eq!(envelope.tenant.as_str(), "acme");
    assert_eq!(envelope.request_id.as_str(), "req-7");
    assert_eq!(
        envelope.time,
        Timestamp::from_unix_micros(START - 2_000_000)
    );
    assert_eq!(
        envelope.trace.unwrap().trace_id_hex(),
        "4bf92f3577b34da6a3ce929d0e0e4736" // pragma: allowlist secret (the W3C example trace id)
    );
}

/// The world's SQLite, watched: counts lookups of applied jobs, reads of
/// webhook salts and batches, and refuses batches as told.
struct Watched<'a> {
    inner: &'a SqliteSql,
    lookups: Cell<usize>,
    salt_reads: Cell<usize>,
    batches: Cell<usize>,
    /// Refuse any batch of more than this many statements.
    max_batch: usize,
    /// Refuse any batch carrying this parameter.
    poison: Option<SqlValue>,
}

impl<'a> Watched<'a> {
    fn new(inner: &'a SqliteSql) -> Self {
        Self {
            inner,
            lookups: Cell::new(0),
            salt_reads: Cell::new(0),
            batches: Cell::new(0),
            max_batch: usize::MAX,
            poison: None,
        }
    }
}

#[async_trait(?Send)]
impl Sql for Watched<'_> {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        if statement.starts_with(ALREADY_PROCESSED_IN) {
            self.lookups.set(self.lookups.get() + 1);
        }
        if statement == WEBHOOK_SECRET_BY_TENANT {
            self.salt_reads.set(self.salt_reads.get() + 1);
        }
        self.inner.execute(statement, params).await
    }

    async fn batch(&self, statements: &[Statement]) -> Result<(), PortError> {
        self.batches.set(self.batches.get() + 1);
        let poisoned = self
            .poison
            .as_ref()
            .is_some_and(|p| statements.iter().any(|s| s.params.contains(p)));
        if statements.len() > self.max_batch || poisoned {
            return Err(PortError("refused by the test".into()));
        }
        self.inner.batch(statements).await
    }
}

impl World {
    /// Processes one batch through `sql` instead of the world's own.
    fn process_batch_with(
        &self,
        sql: &dyn Sql,
        http: &dyn HttpClient,
        bodies: &[String],
    ) -> Vec<Decision> {
        let mut ports = self.ports(http, None);
        ports.sql = Some(sql);
        let deliveries: Vec<Delivery> = bodies
            .iter()
            .map(|body| Delivery {
                body: body.clone(),
                attempt: 1,
            })
            .collect();
        block_on(process_batch(
            self.runner(&ports),
            Queue::Notifications,
            &deliveries,
        ))
    }
}

impl World {
    /// `n` first deliveries of webhook notifications, as one batch through `ports`.
    fn webhook_batch(&self, ports: &Ports<'_>, n: usize) -> Vec<Decision> {
        let deliveries: Vec<Delivery> = (0..n)
            .map(|_| Delivery {
                body: webhook_job("https://hooks.example.com/in"),
                attempt: 1,
            })
            .collect();
        block_on(process_batch(
            self.runner(ports),
            Queue::Notifications,
            &deliveries,
        ))
    }
}

fn event_id(envelope: &str) -> String {
    serde_json::from_str::<Value>(envelope).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_batch_looks_up_applied_jobs_once_and_commits_once() {
    let w = world();
    let receiver = Receiver::default();
    let applied = webhook_job("https://hooks.example.com/in");
    assert_eq!(
        w.process(&receiver, Queue::Notifications, &applied, 1),
        Decision::Ack
    );
    let mut bodies: Vec<String> = (0..5)
        .map(|_| webhook_job("https://hooks.example.com/in"))
        .collect();
    bodies.push(applied.clone());
    let sql = Watched::new(&w.db);
    let decisions = w.process_batch_with(&sql, &receiver, &bodies);
    assert_eq!(decisions, vec![Decision::Ack; 6]);
    assert_eq!(
        sql.lookups.get(),
        1,
        "one lookup of applied jobs for the batch"
    );
    assert_eq!(sql.batches.get(), 1, "one commit for the five jobs' writes");
    assert_eq!(
        receiver.seen.borrow().len(),
        6,
        "the applied job was not sent again"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM processed_jobs"), 6);
    // Redelivered together, every one is acknowledged without effect.
    let again = w.process_batch_with(&Watched::new(&w.db), &receiver, &bodies);
    assert_eq!(again, vec![Decision::Ack; 6]);
    assert_eq!(receiver.seen.borrow().len(), 6);
}

/// SQL whose every statement first yields once, as D1's calls do: the jobs
/// of a batch then really are under way together.
struct Yielding<'a>(&'a Watched<'a>);

#[async_trait(?Send)]
impl Sql for Yielding<'_> {
    async fn execute(&self, statement: &str, params: &[SqlValue]) -> Result<Rows, PortError> {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if std::mem::replace(&mut yielded, true) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        self.0.execute(statement, params).await
    }

    async fn batch(&self, statements: &[Statement]) -> Result<(), PortError> {
        self.0.batch(statements).await
    }
}

#[test]
fn a_batch_reads_each_tenants_salts_once_and_signs_each_delivery_as_its_tenant() {
    let w = world();
    assert!(
        w.config.jobs.concurrency >= 6,
        "the jobs below run together"
    );
    let receiver = Receiver::default();
    let tenants = ["acme", "globex", "acme", "acme", "globex", "acme"];
    let bodies: Vec<String> = tenants
        .iter()
        .map(|tenant| webhook_job_for(tenant, "https://hooks.example.com/in"))
        .collect();
    let watched = Watched::new(&w.db);
    assert_eq!(
        w.process_batch_with(&Yielding(&watched), &receiver, &bodies),
        vec![Decision::Ack; 6]
    );
    assert_eq!(
        watched.salt_reads.get(),
        2,
        "one read per tenant, though all six jobs asked at once"
    );
    let secret_of = |tenant: &str| match tenant {
        "acme" => tenant_secret("acme", ACME_SALT),
        _ => tenant_secret("globex", GLOBEX_SALT),
    };
    {
        let seen = receiver.seen.borrow();
        assert_eq!(seen.len(), 6);
        for request in seen.iter() {
            let tenant = request.headers()["x-tenant-id"].to_str().unwrap();
            let other = if tenant == "acme" { "globex" } else { "acme" };
            assert!(verifies(request, &secret_of(tenant)), "{tenant}'s delivery");
            assert!(
                !verifies(request, &secret_of(other)),
                "{tenant}'s delivery is not signed with {other}'s secret"
            );
        }
    }

    // A rotation without overlap reaches the next batch.
    let rotated = "0123456789abcdef0123456789abcdef"; // pragma: allowlist secret
    w.exec(
        "UPDATE webhook_secrets SET salt = ?2, previous_salt = NULL, previous_until = NULL \
         WHERE tenant_id = ?1",
        &["acme".into(), rotated.into()],
    );
    let after = Receiver::default();
    let next = [webhook_job_for("acme", "https://hooks.example.com/in")];
    assert_eq!(
        w.process_batch_with(&Watched::new(&w.db), &after, &next),
        vec![Decision::Ack]
    );
    let request = &after.seen.borrow()[0];
    assert!(verifies(request, &tenant_secret("acme", rotated)));
    assert!(
        !verifies(request, &secret_of("acme")),
        "the replaced salt no longer signs"
    );
}

#[test]
fn a_long_batch_reads_a_tenants_salts_again_once_they_are_two_seconds_old() {
    let w = world();
    // Every reading of this clock is a second after the one before.
    let slow = SteppingClock::new(Timestamp::from_unix_micros(START), 1_000_000);
    let receiver = Receiver::default();
    let watched = Watched::new(&w.db);
    let mut ports = w.ports(&receiver, None);
    ports.sql = Some(&watched);
    ports.clock = &slow;
    let decisions = w.webhook_batch(&ports, 4);
    assert_eq!(decisions, vec![Decision::Ack; 4]);
    assert_eq!(
        watched.salt_reads.get(),
        4,
        "each job starts seconds after the salts were read"
    );
}

#[test]
fn a_job_that_runs_out_of_time_while_reading_the_salts_leaves_the_read_to_the_next() {
    /// The first budget is already spent; every later one lasts 50 polls,
    /// far longer than a job that reads its salts and delivers.
    struct FirstExpired(Cell<u32>);
    #[async_trait(?Send)]
    impl Timer for FirstExpired {
        async fn sleep(&self, _millis: u32) {
            let n = self.0.get();
            self.0.set(n + 1);
            if n == 0 {
                return;
            }
            let mut polls = 0;
            std::future::poll_fn(|cx| {
                polls += 1;
                if polls > 50 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
    }
    let w = world();
    let receiver = Receiver::default();
    let watched = Watched::new(&w.db);
    let yielding = Yielding(&watched);
    let timer = FirstExpired(Cell::new(0));
    let mut ports = w.ports(&receiver, Some(&timer));
    ports.sql = Some(&yielding);
    let decisions = w.webhook_batch(&ports, 4);
    assert!(
        matches!(decisions[0], Decision::Retry { .. }),
        "the first job timed out while reading: {:?}",
        decisions[0]
    );
    assert_eq!(
        decisions[1..],
        [Decision::Ack, Decision::Ack, Decision::Ack],
        "the others did not wait for a read nobody finishes"
    );
    assert_eq!(receiver.seen.borrow().len(), 3);
    assert_eq!(
        watched.salt_reads.get(),
        1,
        "the next job read the salts for the rest"
    );
}

#[test]
fn when_the_joint_commit_fails_each_job_commits_alone() {
    let w = world();
    let receiver = Receiver::default();
    let bodies: Vec<String> = (0..4)
        .map(|_| webhook_job("https://hooks.example.com/in"))
        .collect();
    // Refuse the joint commit only (each job alone writes one marker),
    // and one job's own writes.
    let mut sql = Watched::new(&w.db);
    sql.max_batch = 2;
    let poisoned = event_id(&bodies[2]);
    sql.poison = Some(poisoned.clone().into());
    let decisions = w.process_batch_with(&sql, &receiver, &bodies);
    assert_eq!(decisions[0], Decision::Ack);
    assert_eq!(decisions[1], Decision::Ack);
    assert!(
        matches!(
            decisions[2],
            Decision::Retry {
                class: FailureClass::Server,
                ..
            }
        ),
        "the job whose writes failed is retried: {:?}",
        decisions[2]
    );
    assert_eq!(decisions[3], Decision::Ack);
    let marked: Vec<String> = block_on(w.db.execute("SELECT event_id FROM processed_jobs", &[]))
        .unwrap()
        .rows
        .iter()
        .map(|r| r[0].as_text().unwrap().to_owned())
        .collect();
    assert_eq!(marked.len(), 3, "the three acknowledged jobs are recorded");
    assert!(!marked.contains(&poisoned), "the failed one is not");
    let m = w.metrics();
    assert_eq!(m.processed(Queue::Notifications, "ack"), 3);
    assert_eq!(m.processed(Queue::Notifications, "retry"), 1);
    assert_eq!(m.errors(Queue::Notifications, FailureClass::Server), 1);
}
