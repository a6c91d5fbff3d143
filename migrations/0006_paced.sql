-- One definition of "paced": a sender with any limit, gap or jitter. Every query and the
-- worker read this column; nothing restates the rule.
ALTER TABLE senders ADD COLUMN paced boolean GENERATED ALWAYS AS (
    hourly_limit IS NOT NULL OR daily_limit IS NOT NULL OR daily_new_limit IS NOT NULL
    OR min_gap_seconds > 0 OR jitter_seconds > 0) STORED;

-- The deployment's rate row exists from the start, so booking it is always a row lock.
INSERT INTO global_pace (id, next_at) VALUES (true, '1970-01-01T00:00:00Z') ON CONFLICT DO NOTHING;
