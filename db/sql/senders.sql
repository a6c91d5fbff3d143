-- Queries over senders, run by the operator use cases.

-- name: lock_by_email
SELECT id FROM senders WHERE lower(email) = lower($1) FOR UPDATE

-- name: set_limits
-- Each limit changes only when its flag says so ($2, $4, ...); a NULL cap is unlimited.
UPDATE senders SET
    hourly_limit = CASE WHEN $2::boolean THEN $3::int ELSE hourly_limit END,
    daily_limit = CASE WHEN $4::boolean THEN $5::int ELSE daily_limit END,
    daily_new_limit = CASE WHEN $6::boolean THEN $7::int ELSE daily_new_limit END,
    min_gap_seconds = CASE WHEN $8::boolean THEN $9::int ELSE min_gap_seconds END,
    jitter_seconds = CASE WHEN $10::boolean THEN $11::int ELSE jitter_seconds END
WHERE id = $1

-- name: list
SELECT id, email, name, hourly_limit, daily_limit, daily_new_limit, min_gap_seconds,
       jitter_seconds, paced, created_at, status, paused_reason, paused_at, guard_probe_at,
       guard_hard_bounce_rate, guard_complaint_rate, guard_block_rate, guard_min_sample,
       warmup_start, warmup_increment, warmup_started_at, provider_caps
FROM senders WHERE id > $1 ORDER BY id LIMIT $2

-- name: get
SELECT id, email, name, hourly_limit, daily_limit, daily_new_limit, min_gap_seconds,
       jitter_seconds, paced, created_at, status, paused_reason, paused_at, guard_probe_at,
       guard_hard_bounce_rate, guard_complaint_rate, guard_block_rate, guard_min_sample,
       warmup_start, warmup_increment, warmup_started_at, provider_caps
FROM senders WHERE id = $1

-- name: create
INSERT INTO senders (email, name, hourly_limit, daily_limit, daily_new_limit, min_gap_seconds,
                     jitter_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id

-- name: rename
UPDATE senders SET name = $2 WHERE id = $1

-- name: set_accounts
-- A sender's accounts: each URL or password changes only when its flag says so.
UPDATE senders SET
    smtp_url = CASE WHEN $2::boolean THEN $3::text ELSE smtp_url END,
    smtp_password = CASE WHEN $4::boolean THEN $5::bytea ELSE smtp_password END,
    imap_url = CASE WHEN $6::boolean THEN $7::text ELSE imap_url END,
    imap_password = CASE WHEN $8::boolean THEN $9::bytea ELSE imap_password END,
    accounts_changed_at = $10
WHERE id = $1

-- name: smtp_accounts
-- The SMTP accounts of the senders among $1 (those without one send through the relay).
SELECT id, smtp_url, smtp_password FROM senders WHERE id = ANY($1::bigint[]) AND smtp_url IS NOT NULL

-- name: accounts_changed
SELECT max(accounts_changed_at) FROM senders

-- name: set_guard
-- The guard's per-sender thresholds and the warm-up; each changes only when its flag says so.
-- A warm-up set without a start time starts now ($18). Provider caps are merged in: a
-- provider given as null loses its cap.
UPDATE senders SET
    guard_hard_bounce_rate = CASE WHEN $2::boolean THEN $3::real ELSE guard_hard_bounce_rate END,
    guard_complaint_rate = CASE WHEN $4::boolean THEN $5::real ELSE guard_complaint_rate END,
    guard_block_rate = CASE WHEN $6::boolean THEN $7::real ELSE guard_block_rate END,
    guard_min_sample = CASE WHEN $8::boolean THEN $9::int ELSE guard_min_sample END,
    warmup_start = CASE WHEN $10::boolean THEN $11::int ELSE warmup_start END,
    warmup_increment = CASE WHEN $12::boolean THEN $13::int ELSE warmup_increment END,
    warmup_started_at = CASE WHEN $14::boolean THEN $15::timestamptz
                             WHEN $10::boolean AND $11::int IS NULL THEN NULL
                             WHEN $10::boolean AND warmup_started_at IS NULL THEN $18::timestamptz
                             ELSE warmup_started_at END,
    provider_caps = CASE WHEN $16::boolean THEN jsonb_strip_nulls(provider_caps || $17::jsonb)
                         ELSE provider_caps END
WHERE id = $1
