-- The reputation guard (docs/architecture.md §11): each sender's recent hand-offs and what
-- became of them, its pause and the reason, per-sender thresholds, and warm-up.
ALTER TABLE senders
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT "sender status is active or paused" CHECK (status IN ('active', 'paused')),
    ADD COLUMN paused_reason text,
    ADD COLUMN paused_at timestamptz,
    -- A pause for blocks resumes by itself at probe_at for a probe: the first hand-offs
    -- after it; a block among them pauses again for twice the cooldown.
    ADD COLUMN guard_probe_at timestamptz,
    ADD COLUMN guard_cooldown_seconds integer,
    ADD COLUMN guard_probation boolean NOT NULL DEFAULT false,
    -- Hand-offs before this outcome id are not judged (a resume starts a new window).
    ADD COLUMN guard_since bigint NOT NULL DEFAULT 0,
    -- Per-sender thresholds; NULL: the GUARD_* settings.
    ADD COLUMN guard_hard_bounce_rate real CHECK (guard_hard_bounce_rate BETWEEN 0 AND 1),
    ADD COLUMN guard_complaint_rate real CHECK (guard_complaint_rate BETWEEN 0 AND 1),
    ADD COLUMN guard_block_rate real CHECK (guard_block_rate BETWEEN 0 AND 1),
    ADD COLUMN guard_min_sample integer CHECK (guard_min_sample BETWEEN 1 AND 100000),
    -- Warm-up: on day d of it the daily cap is min(daily_limit, start + d * increment).
    ADD COLUMN warmup_start integer CHECK (warmup_start > 0),
    ADD COLUMN warmup_increment integer CHECK (warmup_increment >= 0),
    ADD COLUMN warmup_started_at timestamptz,
    ADD CONSTRAINT "a warm-up has a start and an increment"
        CHECK ((warmup_start IS NULL) = (warmup_increment IS NULL));

-- One row per hand-off of a sender to a recipient's server and what became of it: at send
-- time (delivered, hard_bounce, block, soft), later from the inbox (hard_bounce, complaint).
CREATE TABLE sender_outcomes (
    id          bigserial   PRIMARY KEY,
    sender_id   bigint      NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    lead_id     bigint,
    step        integer,
    kind        text        NOT NULL
        CHECK (kind IN ('delivered', 'hard_bounce', 'complaint', 'block', 'soft')),
    at          timestamptz NOT NULL
);
CREATE INDEX sender_outcomes_window ON sender_outcomes (sender_id, id DESC);
CREATE INDEX sender_outcomes_lead ON sender_outcomes (lead_id, step);

ALTER TABLE events DROP CONSTRAINT events_type_registered;
ALTER TABLE events ADD CONSTRAINT events_type_registered CHECK (type IN (
    'queued', 'sent', 'send_ambiguous', 'scheduled', 'deferred', 'retry_scheduled', 'rescued',
    'completed', 'stopped', 'failed', 'message_rejected', 'reply_received', 'reply_unmatched',
    'auto_replied', 'soft_bounced', 'complained', 'inbound_ignored', 'inbound_unreadable',
    'retried', 'paused', 'resumed',
    'suppression_lifted', 'sequence_paused', 'sequence_resumed', 'sender_changed',
    'smtp_circuit_open', 'smtp_circuit_closed', 'sender_paused', 'sender_resumed'
)) NOT VALID;

-- A sender in warm-up is paced (its daily cap grows day by day): "paced" says so too.
ALTER TABLE senders DROP COLUMN paced;
ALTER TABLE senders ADD COLUMN paced boolean GENERATED ALWAYS AS (
    hourly_limit IS NOT NULL OR daily_limit IS NOT NULL OR daily_new_limit IS NOT NULL
    OR min_gap_seconds > 0 OR jitter_seconds > 0 OR warmup_start IS NOT NULL) STORED;
