//! The uploads module's job: checking that the stored object matches what
//! the upload declared. A verified upload goes on to the workflows it
//! triggers (the next step in the job table).

use sha2::{Digest, Sha256};

use crate::jobs::consumer::{Job, Step};
use crate::jobs::retry::Failure;
use crate::ports::{SqlValue, Statement};

pub(super) const FOR_JOB: &str =
    "SELECT size, sha256 FROM uploads WHERE tenant_id = ?1 AND id = ?2";
const CHECKED: &str = "INSERT OR REPLACE INTO upload_checks \
     (upload_id, tenant_id, result, checked_at) VALUES (?1, ?2, ?3, ?4)";

pub async fn check(job: &Job<'_>) -> Result<Step, Failure> {
    let Some(upload_id) = job.envelope.data["upload_id"].as_str() else {
        return Err(Failure::Invalid);
    };
    let rows = job
        .query(FOR_JOB, vec![job.tenant().into(), upload_id.into()])
        .await?;
    let (Some(size), Some(sha256)) = (
        rows.get(0, "size").and_then(SqlValue::as_integer),
        rows.get(0, "sha256").and_then(SqlValue::as_text),
    ) else {
        // Deleted since: nothing to check, nothing to trigger.
        return Ok(Step::Done(Vec::new()));
    };
    let blobs = job.blobs.ok_or(Failure::Unreachable)?;
    let key = super::blob_key(&job.envelope.tenant, upload_id);
    let stored = blobs.get(&key).await.map_err(|_| Failure::Unreachable)?;
    let verdict = stored.is_some_and(|blob| {
        i64::try_from(blob.body.len()).ok() == Some(size)
            && super::hex(&Sha256::digest(&blob.body)) == sha256
    });
    let mark = |result: &str| {
        Statement::new(
            CHECKED,
            vec![
                upload_id.into(),
                job.tenant().into(),
                result.into(),
                job.secs().into(),
            ],
        )
    };
    if verdict {
        Ok(Step::Next(vec![mark("ready")]))
    } else {
        // Missing or different bytes: keep the verdict, dead-letter the job.
        job.sql
            .batch(&[mark("invalid")])
            .await
            .map_err(|_| Failure::Unreachable)?;
        tracing::error!(target: "tepi::jobs", upload_id, "stored object does not match its declaration");
        Err(Failure::Status(422))
    }
}
