-- Meta platform webhooks (WhatsApp, Messenger, Instagram): each tenant's
-- verify token and app secret, and the message ids already received, so
-- a redelivery is not processed twice. Times are Unix seconds.

CREATE TABLE IF NOT EXISTS meta_config (
    tenant_id TEXT PRIMARY KEY NOT NULL,
    -- Compared with hub.verify_token during the subscription handshake.
    verify_token TEXT NOT NULL,
    -- Keys the HMAC-SHA256 of X-Hub-Signature-256; Meta shares it, so it
    -- must be readable here (D1 and Spin SQLite encrypt at rest only).
    app_secret TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS meta_seen (
    tenant_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    item_id TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, platform, item_id)
) WITHOUT ROWID;
