//! The notifications module's job: delivering a webhook notification.

use serde_json::{Value, json};

use crate::jobs::consumer::{Job, Step};
use crate::jobs::retry::Failure;
use crate::jobs::webhook;

pub async fn deliver(job: &Job<'_>) -> Result<Step, Failure> {
    let data = &job.envelope.data;
    let field = |name: &str| data.get(name).and_then(Value::as_str);
    let (Some(id), Some(url), Some(subject), Some(body)) = (
        field("notification_id"),
        field("url"),
        field("subject"),
        field("body"),
    ) else {
        return Err(Failure::Invalid);
    };
    let payload = json!({
        "notification_id": id,
        "tenant_id": job.tenant(),
        "subject": subject,
        "body": body,
        "sent_at": job.envelope.time.to_rfc3339(),
    });
    webhook::post_webhook(job, url, &payload, &job.envelope.id).await?;
    Ok(Step::Done(Vec::new()))
}
