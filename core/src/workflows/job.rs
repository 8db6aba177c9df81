//! The workflows module's jobs: running a run's steps (`notify`, `webhook`,
//! `wait`), starting the runs an event triggers, and marking a run failed
//! when its job gives up.

use serde_json::{Value, json};

use crate::jobs::consumer::{Envelope, Job, Step, derived_id};
use crate::jobs::events::{Event, WorkflowRunRequested};
use crate::jobs::retry::Failure;
use crate::jobs::webhook;
use crate::notifications;
use crate::ports::{Sql, SqlValue, Statement};
use crate::storage::rows::each;
use crate::time::Timestamp;

pub(super) const FOR_JOB: &str = "SELECT r.status, r.step_results, r.input, r.cause, w.steps FROM workflow_runs r \
     JOIN workflows w ON w.tenant_id = r.tenant_id AND w.id = r.workflow_id \
     WHERE r.tenant_id = ?1 AND r.id = ?2";
const RUN_PROGRESS: &str = "UPDATE workflow_runs SET status = ?3, step_results = ?4, updated_at = ?5 \
     WHERE tenant_id = ?1 AND id = ?2";
const RUN_FAILED: &str = "UPDATE workflow_runs SET status = 'failed', updated_at = ?3 \
     WHERE tenant_id = ?1 AND id = ?2 AND status IN ('requested', 'running')";
const NEW_RUN: &str = "INSERT OR IGNORE INTO workflow_runs \
     (id, tenant_id, workflow_id, status, cause, input, step_results, requested_by, created_at, updated_at) \
     VALUES (?1, ?2, ?3, 'requested', ?4, ?5, ?6, NULL, ?7, ?7)";
const RUN_STATUS: &str = "SELECT status FROM workflow_runs WHERE tenant_id = ?1 AND id = ?2";

/// A job that will not be retried any more leaves its traces: a workflow
/// run is marked failed.
pub async fn fail_run(sql: &dyn Sql, envelope: &Envelope, now: Timestamp) {
    if envelope.event_type != WorkflowRunRequested::TYPE {
        return;
    }
    let run_id = envelope.data["run_id"].as_str().unwrap_or_default();
    let result = sql
        .execute(
            RUN_FAILED,
            &[
                envelope.tenant.as_str().into(),
                run_id.into(),
                now.as_unix_secs().into(),
            ],
        )
        .await;
    if let Err(e) = result {
        tracing::error!(target: "tepi::jobs", error = %e, run_id, "could not mark a run failed");
    }
}

pub async fn trigger(job: &Job<'_>) -> Result<Step, Failure> {
    let rows = job
        .query(super::EVENT_TRIGGERED, vec![job.tenant().into()])
        .await?;
    let cause = json!({
        "type": "event",
        "event_id": job.envelope.id,
        "event_type": job.envelope.event_type,
    });
    for row in each(&rows) {
        let (Ok(workflow_id), Ok(pattern)) = (row.text("id"), row.text("trigger")) else {
            continue;
        };
        if !super::pattern_matches(&pattern, &job.envelope.event_type) {
            continue;
        }
        let steps = row
            .text("steps")
            .ok()
            .and_then(|s| serde_json::from_str::<Vec<Value>>(&s).ok())
            .map_or(0, |s| s.len());
        let run_id = derived_id("run_", &[&job.envelope.id, &workflow_id]);
        let pending: Vec<Value> = (0..steps)
            .map(|_| json!({"status": "pending", "result": null}))
            .collect();
        job.query(
            NEW_RUN,
            vec![
                run_id.clone().into(),
                job.tenant().into(),
                workflow_id.clone().into(),
                cause.to_string().into(),
                job.envelope.data.to_string().into(),
                Value::Array(pending).to_string().into(),
                job.secs().into(),
            ],
        )
        .await?;
        // A redelivery publishes again only for runs not yet started.
        let status = job
            .query(RUN_STATUS, vec![job.tenant().into(), run_id.clone().into()])
            .await?;
        if status.get(0, "status").and_then(SqlValue::as_text) != Some("requested") {
            continue;
        }
        let event = WorkflowRunRequested {
            workflow_id,
            run_id,
            cause: cause.clone(),
            input: job.envelope.data.clone(),
        };
        job.publish(&event, 0).await?;
    }
    Ok(Step::Next(Vec::new()))
}
#[allow(clippy::too_many_lines)] // one loop over the three step kinds
pub async fn run(job: &Job<'_>) -> Result<Step, Failure> {
    let data = &job.envelope.data;
    let (Some(run_id), Some(workflow_id)) = (data["run_id"].as_str(), data["workflow_id"].as_str())
    else {
        return Err(Failure::Invalid);
    };
    let rows = job
        .query(FOR_JOB, vec![job.tenant().into(), run_id.into()])
        .await?;
    let text = |column: &str| rows.get(0, column).and_then(SqlValue::as_text);
    let Some(status) = text("status") else {
        // The run or its workflow was deleted: nothing to do.
        return Ok(Step::Done(Vec::new()));
    };
    if matches!(status, "succeeded" | "failed") {
        return Ok(Step::Done(Vec::new()));
    }
    let steps: Vec<Value> = text("steps")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut results: Vec<Value> = text("step_results")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    results.resize(steps.len(), json!({"status": "pending", "result": null}));
    let input: Value = text("input")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let progress = |status: &str, results: &[Value]| {
        Statement::new(
            RUN_PROGRESS,
            vec![
                job.tenant().into(),
                run_id.into(),
                status.into(),
                Value::Array(results.to_vec()).to_string().into(),
                job.ports.clock.now().as_unix_secs().into(),
            ],
        )
    };
    for (i, step) in steps.iter().enumerate() {
        if results[i]["status"] == "succeeded" {
            continue;
        }
        let mut writes = Vec::new();
        let outcome = match step["type"].as_str() {
            Some("notify") => notify_step(job, run_id, workflow_id, i, step, &mut writes).await,
            Some("webhook") => {
                let body = json!({
                    "run_id": run_id,
                    "workflow_id": workflow_id,
                    "step": i,
                    "input": input,
                });
                let url = step["url"].as_str().unwrap_or_default();
                // One delivery id per step, the same for every retry; no
                // `.` in it, so the signed message splits one way only.
                webhook::post_webhook(job, url, &body, &format!("{run_id}-{i}"))
                    .await
                    // The class only: a tenant learns nothing more about
                    // what answered.
                    .map(|_| json!({"status": "2xx"}))
            }
            Some("wait") => {
                let seconds = step["seconds"].as_u64().unwrap_or(0);
                let now = job.ports.clock.now().as_unix_secs();
                let until = results[i]["result"]["until"]
                    .as_i64()
                    .unwrap_or_else(|| now + i64::try_from(seconds).unwrap_or(0));
                if now < until {
                    // Continue later: a delayed job takes over the run.
                    results[i] = json!({"status": "waiting", "result": {"until": until}});
                    let event = WorkflowRunRequested {
                        workflow_id: workflow_id.to_owned(),
                        run_id: run_id.to_owned(),
                        cause: data["cause"].clone(),
                        input: data["input"].clone(),
                    };
                    // Queues delay at most 12 hours; a longer wait
                    // re-defers when the continuation arrives early.
                    let delay = u32::try_from(until - now).unwrap_or(u32::MAX).min(43_200);
                    job.publish(&event, delay).await?;
                    return Ok(Step::Done(vec![progress("running", &results)]));
                }
                Ok(json!({"until": until}))
            }
            _ => Err(Failure::Invalid),
        };
        match outcome {
            Ok(result) => {
                results[i] = json!({"status": "succeeded", "result": result});
                writes.push(progress("running", &results));
                job.sql
                    .batch(&writes)
                    .await
                    .map_err(|_| Failure::Unreachable)?;
            }
            Err(failure) => {
                let status = if failure.class().is_transient() && !job.last_attempt {
                    "retrying"
                } else {
                    "failed"
                };
                results[i] = json!({"status": status, "result": {"error": failure_text(failure)}});
                let run_status = if status == "failed" {
                    "failed"
                } else {
                    "running"
                };
                if let Err(e) = job.sql.batch(&[progress(run_status, &results)]).await {
                    tracing::error!(target: "tepi::jobs", error = %e, "could not record a step failure");
                }
                return Err(failure);
            }
        }
    }
    Ok(Step::Done(vec![progress("succeeded", &results)]))
}

/// Inbox entries for a notify step (ids derived from run and step, so
/// a retried step writes each once).
async fn notify_step(
    job: &Job<'_>,
    run_id: &str,
    workflow_id: &str,
    index: usize,
    step: &Value,
    writes: &mut Vec<Statement>,
) -> Result<Value, Failure> {
    let message = step["message"].as_str().unwrap_or_default();
    let recipients: Vec<String> = if let Some(user) = step["user_id"].as_str() {
        vec![user.to_owned()]
    } else {
        let role = step["role"].as_str().unwrap_or_default();
        notifications::role_members(job.sql, job.tenant(), role)
            .await
            .map_err(|e| {
                tracing::error!(target: "tepi::jobs", error = %e, "storage failed during a job");
                Failure::Unreachable
            })?
    };
    let step_key = index.to_string();
    let subject = format!("Workflow {workflow_id}");
    for user in &recipients {
        writes.push(notifications::inbox_entry_once(&notifications::Entry {
            id: &derived_id("ntf_", &[run_id, &step_key, user]),
            tenant: job.tenant(),
            user,
            subject: &subject,
            body: message,
            sent_by: None,
            secs: job.secs(),
        }));
    }
    Ok(json!({"recipients": recipients.len()}))
}

/// What a failed step records: the failure's class (`4xx`, `5xx` —
/// unreachable included — or `timeout`), never the target's own status.
fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Invalid => "invalid step".to_owned(),
        other => other.class().as_str().to_owned(),
    }
}
