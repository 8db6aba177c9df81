-- Notifications: each user's inbox. Times are Unix seconds.
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_by TEXT,
    created_at INTEGER NOT NULL,
    read_at INTEGER
);

-- Serves the inbox, newest first, with a (created_at, id) cursor.
CREATE INDEX IF NOT EXISTS notifications_inbox ON notifications (tenant_id, user_id, created_at, id);
