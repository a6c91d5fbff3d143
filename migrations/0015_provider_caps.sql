-- Per sender and recipient provider, an optional cap on hand-offs in any 24 hours
-- ({"google": 200, "yahoo": 50}); the worker books them with the sender's own caps, so
-- each hand-off in the ledger names the provider it went to.
ALTER TABLE senders ADD COLUMN provider_caps jsonb NOT NULL DEFAULT '{}'
    CONSTRAINT "provider caps are per known provider" CHECK (
        jsonb_typeof(provider_caps) = 'object'
        AND provider_caps - ARRAY['google', 'microsoft', 'yahoo', 'apple', 'other'] = '{}');
ALTER TABLE sender_sends ADD COLUMN provider text;

-- A sender with a provider cap is paced (its hand-offs are booked): "paced" says so too.
ALTER TABLE senders DROP COLUMN paced;
ALTER TABLE senders ADD COLUMN paced boolean GENERATED ALWAYS AS (
    hourly_limit IS NOT NULL OR daily_limit IS NOT NULL OR daily_new_limit IS NOT NULL
    OR min_gap_seconds > 0 OR jitter_seconds > 0 OR warmup_start IS NOT NULL
    OR provider_caps <> '{}'::jsonb) STORED;
