-- Webhook deliveries (gateway::notify): one row per notice and webhook, queued in the
-- transaction of the event it tells of, delivered by a worker of whichever gateway claims it.
-- `body` is the exact bytes POSTed (rendered when queued). `state`: pending | delivered |
-- failed. A worker claims a due row by setting `leased_until` (and counting the attempt) with
-- a conditional update, so that of several gateways one sends it; a lease left by a stopped
-- gateway lapses. Times are milliseconds since the Unix epoch; `leased_until` is 0 when free.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    topic TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    leased_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);

-- The worker's question: pending rows due now, earliest first.
CREATE INDEX notifications_due ON notifications (state, next_at);
-- The admins' listing: newest first.
CREATE INDEX notifications_created ON notifications (created_at);
