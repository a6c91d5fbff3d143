-- functions: webhooks.sql
-- Webhooks (docs/architecture.md §12): endpoints other systems subscribe with, and the
-- webhook outbox: one row per (event, subscribed endpoint), written by a trigger on
-- `events` in the transaction that writes the event, delivered by the webhooks daemon.
CREATE TABLE webhook_endpoints (
    id          bigserial   PRIMARY KEY,
    url         text        NOT NULL CHECK (length(url) <= 2000),
    -- The signing secret, whsec_ and 24 random bytes in base64 (Standard Webhooks).
    secret      text        NOT NULL,
    event_types text[]      NOT NULL
        CONSTRAINT "webhook event types are known" CHECK (
            cardinality(event_types) > 0 AND event_types <@ ARRAY[
                'lead.sent', 'lead.replied', 'lead.bounced', 'lead.unsubscribed',
                'lead.complained', 'lead.completed', 'lead.failed', 'lead.stopped',
                'sender.paused']::text[]),
    description text        NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A delivered message leaves the outbox; the endpoint keeps the count and the time.
    delivered_total   bigint NOT NULL DEFAULT 0,
    last_delivered_at timestamptz
);

CREATE TABLE webhook_deliveries (
    id              bigserial   PRIMARY KEY,
    endpoint_id     bigint      NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        bigint,     -- the event it tells of (none for a test message)
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    -- pending (to be tried, or being tried), or failed (given up on: listed, replayable);
    -- a delivered one is deleted.
    status          text        NOT NULL DEFAULT 'pending'
        CONSTRAINT "webhook delivery status" CHECK (status IN ('pending', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When it is tried next; while a try runs, the end of its lease (a deliverer that dies
    -- mid-try leaves it to be tried again then, with the same webhook-id).
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    last_code       integer,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, id)
    WHERE status = 'failed';

CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_enqueue();
