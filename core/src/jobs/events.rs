//! Job and event envelopes: CloudEvents 1.0 in JSON, with the extensions
//! `traceparent`, `tenantid` and `requestid` that carry a request's context
//! across the queue (queues have no headers).
//!
//! Each event type is one Rust type with its wire name as a constant and the
//! queue it travels on; `docs/events.md` lists them with examples.

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::context::{RequestContext, TenantId, TraceParent};
use crate::ports::{Entropy, Queue};
use crate::secret;
use crate::time::Timestamp;

/// The `source` of every event Tepi emits.
pub const SOURCE: &str = "urn:tepi:api";

/// An event type: its wire name, its queue and its subject.
pub trait Event: Serialize {
    /// The CloudEvents `type`, e.g. `upload.received`.
    const TYPE: &'static str;
    const QUEUE: Queue;
    /// The CloudEvents `subject`: what the event is about (an id).
    fn subject(&self) -> String;
}

/// An upload's content was stored and verified against its declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadReceived {
    pub upload_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_by: String,
}

impl Event for UploadReceived {
    const TYPE: &'static str = "upload.received";
    const QUEUE: Queue = Queue::Uploads;
    fn subject(&self) -> String {
        self.upload_id.clone()
    }
}

/// A workflow run was requested (by hand or by a matching event); the
/// workflows consumer executes its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowRunRequested {
    pub workflow_id: String,
    pub run_id: String,
    /// `{"type":"manual"}` or `{"type":"event","event_id":…,"event_type":…}`.
    pub cause: Value,
    pub input: Value,
}

impl Event for WorkflowRunRequested {
    const TYPE: &'static str = "workflow.run.requested";
    const QUEUE: Queue = Queue::Workflows;
    fn subject(&self) -> String {
        self.run_id.clone()
    }
}

/// A notification is to be delivered to a webhook endpoint. The
/// notifications consumer POSTs `{subject, body, notification_id}` to `url`
/// with `Tepi-Signature` (see `jobs::webhook::signature`) and the
/// envelope's `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationWebhookRequested {
    pub notification_id: String,
    pub url: String,
    pub subject: String,
    pub body: String,
}

impl Event for NotificationWebhookRequested {
    const TYPE: &'static str = "notification.webhook.requested";
    const QUEUE: Queue = Queue::Notifications;
    fn subject(&self) -> String {
        self.notification_id.clone()
    }
}

/// One normalised item of a Meta platform webhook: the data of every
/// `meta.*` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaItem {
    /// `whatsapp`, `messenger` or `instagram`.
    pub platform: &'static str,
    /// The platform's id of the item (message id, or a composite for
    /// statuses and receipts), used to deduplicate redeliveries.
    pub item_id: String,
    /// The sender, or the account the item is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Unix seconds, as Meta reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The status of a status change (`sent`, `delivered`, `read`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

macro_rules! meta_event {
    ($name:ident, $wire:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub MetaItem);

        impl Event for $name {
            const TYPE: &'static str = $wire;
            const QUEUE: Queue = Queue::MetaEvents;
            fn subject(&self) -> String {
                self.0.item_id.clone()
            }
        }
    };
}

meta_event!(
    MetaMessageReceived,
    "meta.message.received",
    "A message arrived."
);
meta_event!(
    MetaMessageStatus,
    "meta.message.status",
    "A sent message changed status (WhatsApp)."
);
meta_event!(
    MetaMessageRead,
    "meta.message.read",
    "A conversation was read (Messenger, Instagram)."
);
meta_event!(
    MetaPostbackReceived,
    "meta.postback.received",
    "A button or menu postback arrived."
);

/// Any `meta.*` event, as a webhook delivery yields them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaEvent {
    MessageReceived(MetaMessageReceived),
    MessageStatus(MetaMessageStatus),
    MessageRead(MetaMessageRead),
    PostbackReceived(MetaPostbackReceived),
}

impl MetaEvent {
    pub fn item(&self) -> &MetaItem {
        match self {
            Self::MessageReceived(e) => &e.0,
            Self::MessageStatus(e) => &e.0,
            Self::MessageRead(e) => &e.0,
            Self::PostbackReceived(e) => &e.0,
        }
    }

    /// The wire name of this event's type.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::MessageReceived(_) => MetaMessageReceived::TYPE,
            Self::MessageStatus(_) => MetaMessageStatus::TYPE,
            Self::MessageRead(_) => MetaMessageRead::TYPE,
            Self::PostbackReceived(_) => MetaPostbackReceived::TYPE,
        }
    }

    pub fn envelope(
        &self,
        tenant: &TenantId,
        cx: &RequestContext,
        entropy: &dyn Entropy,
        now: Timestamp,
    ) -> Value {
        match self {
            Self::MessageReceived(e) => envelope(e, tenant, cx, entropy, now),
            Self::MessageStatus(e) => envelope(e, tenant, cx, entropy, now),
            Self::MessageRead(e) => envelope(e, tenant, cx, entropy, now),
            Self::PostbackReceived(e) => envelope(e, tenant, cx, entropy, now),
        }
    }
}

/// The envelope of `event`, continuing the request's trace with a new span
/// (the job is a child of the request that caused it).
pub fn envelope<E: Event>(
    event: &E,
    tenant: &TenantId,
    cx: &RequestContext,
    entropy: &dyn Entropy,
    now: Timestamp,
) -> Value {
    envelope_in_trace(
        event,
        tenant,
        cx.request_id.as_str(),
        &cx.trace,
        entropy,
        now,
    )
}

/// The envelope of `event` caused by the hop whose span is `parent` (a
/// request, or a job publishing a follow-up): a new span of that trace.
pub fn envelope_in_trace<E: Event>(
    event: &E,
    tenant: &TenantId,
    request_id: &str,
    parent: &TraceParent,
    entropy: &dyn Entropy,
    now: Timestamp,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": secret::id(entropy, "evt_"),
        "source": SOURCE,
        "type": E::TYPE,
        "subject": event.subject(),
        "time": now.to_rfc3339(),
        "datacontenttype": "application/json",
        "data": serde_json::to_value(event).unwrap_or(Value::Null),
        "traceparent": parent.child(entropy).to_string(),
        "tenantid": tenant.as_str(),
        "requestid": request_id,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::testing::CountingEntropy;

    fn context() -> RequestContext {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "req-1".parse().unwrap());
        RequestContext::from_headers(&headers, &CountingEntropy::default())
    }

    #[test]
    fn workflow_run_requested_envelope_snapshot() {
        let event = WorkflowRunRequested {
            workflow_id: "wf_1".into(),
            run_id: "run_1".into(),
            cause: json!({"type": "manual"}),
            input: json!({"order": 42}),
        };
        let entropy = CountingEntropy::default();
        let tenant = TenantId::parse("acme").unwrap();
        let now = Timestamp::from_unix_micros(1_795_582_978_000_000);
        let mut got = envelope(&event, &tenant, &context(), &entropy, now);
        got["id"] = json!("[id]");
        got["traceparent"] = json!("[traceparent]");
        assert_eq!(
            got,
            json!({
                "specversion": "1.0",
                "id": "[id]",
                "source": "urn:tepi:api",
                "type": "workflow.run.requested",
                "subject": "run_1",
                "time": "2026-11-25T05:02:58.000Z",
                "datacontenttype": "application/json",
                "data": {
                    "workflow_id": "wf_1",
                    "run_id": "run_1",
                    "cause": {"type": "manual"},
                    "input": {"order": 42}
                },
                "traceparent": "[traceparent]",
                "tenantid": "acme",
                "requestid": "req-1"
            })
        );
    }

    #[test]
    fn upload_received_envelope_snapshot() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "req-1".parse().unwrap());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let entropy = CountingEntropy::default();
        let cx = RequestContext::from_headers(&headers, &entropy);
        let event = UploadReceived {
            upload_id: "upl_1".into(),
            filename: "report.pdf".into(),
            content_type: "application/pdf".into(),
            size: 3,
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(), // pragma: allowlist secret
            uploaded_by: "usr_1".into(),
        };
        let tenant = TenantId::parse("acme").unwrap();
        let now = Timestamp::from_unix_micros(1_795_582_978_000_000);
        let mut got = envelope(&event, &tenant, &cx, &entropy, now);
        // Redact what is random: the id and the new span id.
        let traceparent = got["traceparent"].as_str().unwrap().to_owned();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
                && traceparent.ends_with("-01"),
            "same trace, new span: {traceparent}"
        );
        assert_ne!(&traceparent[36..52], "00f067aa0ba902b7");
        got["id"] = json!("[id]");
        got["traceparent"] = json!("[traceparent]");
        assert_eq!(
            got,
            json!({
                "specversion": "1.0",
                "id": "[id]",
                "source": "urn:tepi:api",
                "type": "upload.received",
                "subject": "upl_1",
                "time": "2026-11-25T05:02:58.000Z",
                "datacontenttype": "application/json",
                "data": {
                    "upload_id": "upl_1",
                    "filename": "report.pdf",
                    "content_type": "application/pdf",
                    "size": 3,
                    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", // pragma: allowlist secret
                    "uploaded_by": "usr_1"
                },
                "traceparent": "[traceparent]",
                "tenantid": "acme",
                "requestid": "req-1"
            })
        );
    }

    #[test]
    fn meta_event_envelope_snapshot() {
        let event = MetaEvent::MessageReceived(MetaMessageReceived(MetaItem {
            platform: "whatsapp",
            item_id: "wamid.1".into(),
            from: Some("15550001111".into()),
            timestamp: Some(1_795_582_978),
            text: Some("hi".into()),
            status: None,
        }));
        let entropy = CountingEntropy::default();
        let tenant = TenantId::parse("acme").unwrap();
        let now = Timestamp::from_unix_micros(1_795_582_978_000_000);
        let mut got = event.envelope(&tenant, &context(), &entropy, now);
        got["id"] = json!("[id]");
        got["traceparent"] = json!("[traceparent]");
        assert_eq!(
            got,
            json!({
                "specversion": "1.0",
                "id": "[id]",
                "source": "urn:tepi:api",
                "type": "meta.message.received",
                "subject": "wamid.1",
                "time": "2026-11-25T05:02:58.000Z",
                "datacontenttype": "application/json",
                "data": {
                    "platform": "whatsapp",
                    "item_id": "wamid.1",
                    "from": "15550001111",
                    "timestamp": 1_795_582_978,
                    "text": "hi"
                },
                "traceparent": "[traceparent]",
                "tenantid": "acme",
                "requestid": "req-1"
            }),
            "absent fields (status) are left out"
        );
    }

    #[test]
    fn notification_webhook_requested_envelope_snapshot() {
        let event = NotificationWebhookRequested {
            notification_id: "ntf_1".into(),
            url: "https://hooks.example.com/tepi".into(),
            subject: "Deploy".into(),
            body: "done".into(),
        };
        let entropy = CountingEntropy::default();
        let tenant = TenantId::parse("acme").unwrap();
        let now = Timestamp::from_unix_micros(1_795_582_978_000_000);
        let mut got = envelope(&event, &tenant, &context(), &entropy, now);
        got["id"] = json!("[id]");
        got["traceparent"] = json!("[traceparent]");
        assert_eq!(
            got,
            json!({
                "specversion": "1.0",
                "id": "[id]",
                "source": "urn:tepi:api",
                "type": "notification.webhook.requested",
                "subject": "ntf_1",
                "time": "2026-11-25T05:02:58.000Z",
                "datacontenttype": "application/json",
                "data": {
                    "notification_id": "ntf_1",
                    "url": "https://hooks.example.com/tepi",
                    "subject": "Deploy",
                    "body": "done"
                },
                "traceparent": "[traceparent]",
                "tenantid": "acme",
                "requestid": "req-1"
            })
        );
    }
}
