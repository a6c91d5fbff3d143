-- Queries over deliveries and the lead they belong to, run by the worker.

-- name: lock_leads_for_jobs
-- The leads of a claim batch, locked in id order (as every writer takes them, so two workers
-- never wait on each other in a cycle), with each job's delivery row and whether its sender
-- is paced.
SELECT x.lead_id, l.status, l.current_step, l.attempt, seq.status AS sequence_status,
       is_suppressed(l.email) AS suppressed,
       d.status AS delivery_status, d.lease_until, coalesce(s.paced, false) AS paced,
       s.id IS NOT NULL AS sender_exists, coalesce(s.status = 'paused', false) AS sender_paused
FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS x(lead_id, step, sender_id)
JOIN leads l ON l.id = x.lead_id
JOIN sequences seq ON seq.id = l.sequence_id
-- One primary-key probe per job whatever the statistics say (OFFSET 0 keeps the planner from
-- turning it into a join, which it would hash over a scan of the whole table while the
-- table's statistics still say it is small).
LEFT JOIN LATERAL (
    SELECT status, lease_until FROM deliveries
    WHERE lead_id = x.lead_id AND step = x.step
    OFFSET 0
) d ON true
LEFT JOIN senders s ON s.id = x.sender_id
ORDER BY l.id
FOR NO KEY UPDATE OF l

-- name: claim_deliveries
-- Claim before the SMTP conversation (the caller holds the leads' locks). A row that exists
-- moves on only from 'deferred' (a retry) or, for the leads in $10, from a stale 'sending'
-- (the resend policy takes over a claim whose holder died).
INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status, attempts,
                        outbox_id, claim_token, claimed_at, lease_until, updated_at)
SELECT x.lead_id, x.step, x.sender_id, x.message_id, x.subject, 'sending', 1, x.outbox_id,
       x.token, $8::timestamptz, $8::timestamptz + make_interval(secs => $9::float8),
       $8::timestamptz
FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
            $7::uuid[]) AS x(lead_id, step, sender_id, message_id, subject, outbox_id, token)
ON CONFLICT (lead_id, step) DO UPDATE
SET status = 'sending', attempts = deliveries.attempts + 1, outbox_id = excluded.outbox_id,
    claim_token = excluded.claim_token, claimed_at = excluded.claimed_at,
    lease_until = excluded.lease_until, subject = excluded.subject,
    sender_id = excluded.sender_id, updated_at = excluded.updated_at
WHERE deliveries.status = 'deferred'
   OR (deliveries.status = 'sending' AND deliveries.lead_id = ANY($10::bigint[]))
RETURNING lead_id, step, attempts

-- name: finish_delivery
-- Only the holder of the claim may finish it.
UPDATE deliveries
SET status = $3::text, sent_at = CASE WHEN $3::text = 'sent' THEN $4::timestamptz ELSE sent_at END,
    smtp_code = $5::int, error = $6::text, updated_at = $4::timestamptz, lease_until = NULL
WHERE lead_id = $1 AND step = $2 AND status = 'sending' AND claim_token = $7
RETURNING attempts

-- name: mark_unknown
UPDATE deliveries
SET status = 'unknown', error = 'worker lost between SMTP hand-off and commit',
    updated_at = $3, lease_until = NULL
WHERE lead_id = $1 AND step = $2 AND status = 'sending'

-- name: suppress
INSERT INTO suppressions (email, reason) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING

-- name: lock_leads
SELECT id FROM leads WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE


-- name: record_finished
-- The events written for each item (1-based position); none for an item whose claim was lost.
SELECT item, lead_id, step, type, data
FROM record_finished($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6::text[],
                     $7::text[], $8::timestamptz)

-- name: claim_sends
-- The plain sends of a batch claimed in one call (db/functions/deliveries.sql); the leads claimed.
SELECT lead_id, attempts
FROM claim_sends($1::bigint[], $2::int[], $3::int[], $4::bigint[], $5::text[], $6::text[],
                 $7::bigint[], $8::uuid[], $9::timestamptz[], $10::timestamptz, $11::float8)

-- name: release_delivery
-- A claim given back unsent, its attempt not spent (the account's circuit is open): only
-- the holder of the claim may.
UPDATE deliveries
SET status = 'deferred', attempts = greatest(attempts - 1, 0), error = $4::text,
    updated_at = $3::timestamptz, lease_until = NULL
WHERE lead_id = $1 AND step = $2 AND status = 'sending' AND claim_token = $5
RETURNING attempts

-- name: set_circuit
INSERT INTO smtp_circuits (account, state, reason, retry_at, changed_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (account) DO UPDATE
SET state = excluded.state, reason = excluded.reason, retry_at = excluded.retry_at,
    changed_at = excluded.changed_at

-- name: close_circuit
-- An account worked: its circuit is closed (if any worker had it otherwise); true if it
-- changed.
UPDATE smtp_circuits SET state = 'closed', reason = '', retry_at = NULL, changed_at = $2
WHERE account = $1 AND state <> 'closed'
RETURNING true
