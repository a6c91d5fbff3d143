-- Queries over deliveries and the lead they belong to, run by the worker.

-- name: lock_lead
SELECT l.status, l.current_step, l.attempt, l.email, seq.status AS sequence_status,
       is_suppressed(l.email) AS suppressed
FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
WHERE l.id = $1
FOR NO KEY UPDATE OF l

-- name: get_delivery
SELECT status, attempts, lease_until, outbox_id, claim_token
FROM deliveries WHERE lead_id = $1 AND step = $2

-- name: claim_delivery
-- Claim before the SMTP conversation. A row that exists only moves on from 'deferred'
-- (a retry) or, when the caller says so, from a stale 'sending' (resend policy).
INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status, attempts,
                        outbox_id, claim_token, claimed_at, lease_until, updated_at)
VALUES ($1, $2, $3, $4, $5, 'sending', 1, $6, $7, $8::timestamptz,
        $8::timestamptz + make_interval(secs => $9::float8), $8::timestamptz)
ON CONFLICT (lead_id, step) DO UPDATE
SET status = 'sending', attempts = deliveries.attempts + 1, outbox_id = excluded.outbox_id,
    claim_token = excluded.claim_token, claimed_at = excluded.claimed_at,
    lease_until = excluded.lease_until, subject = excluded.subject,
    sender_id = excluded.sender_id, updated_at = excluded.updated_at
WHERE deliveries.status = 'deferred' OR (deliveries.status = 'sending' AND $10::boolean)
RETURNING attempts

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

-- name: requeue_lead
-- Back to waiting (retry, window missed, pacing): the scheduler plans it again at $3.
UPDATE leads SET status = 'active', next_run_at = $3, updated_at = $4
WHERE id = $1 AND status = 'queued' AND current_step = $2

-- name: end_lead
UPDATE leads SET status = $3, updated_at = $4
WHERE id = $1 AND status IN ('queued', 'active') AND current_step = $2

-- name: suppress
INSERT INTO suppressions (email, reason) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING

-- name: sender_rules
SELECT hourly_limit, daily_limit, daily_new_limit, min_gap_seconds, jitter_seconds
FROM senders WHERE id = $1

-- name: lock_sender
-- Paced senders only: their hand-offs serialise on this row lock across all workers.
SELECT next_send_at FROM senders WHERE id = $1
FOR UPDATE

-- name: recent_sends
SELECT at, first_touch FROM sender_sends
WHERE sender_id = $1 AND at > $2::timestamptz - interval '1 day'
ORDER BY at

-- name: record_send
WITH ins AS (INSERT INTO sender_sends (sender_id, at, first_touch) VALUES ($1, $2, $3))
UPDATE senders SET next_send_at = $4 WHERE id = $1

-- name: reserve_global
-- Book the deployment's next free slot at or after $1 if it is no later than $2; each booking
-- moves the slot on by $3 seconds (1 / GLOBAL_RATE_PER_SECOND). No row: the slot is too far.
INSERT INTO global_pace AS g (id, next_at)
VALUES (true, $1::timestamptz + make_interval(secs => $3::float8))
ON CONFLICT (id) DO UPDATE
SET next_at = greatest(g.next_at, $1::timestamptz) + make_interval(secs => $3::float8)
WHERE greatest(g.next_at, $1::timestamptz) <= $2::timestamptz
RETURNING next_at - make_interval(secs => $3::float8)

-- name: global_next
SELECT next_at FROM global_pace

-- name: prune_sends
DELETE FROM sender_sends WHERE at < $1::timestamptz - interval '1 day'

-- name: lock_leads_for_jobs
-- The batch form of lock_lead, with each job's delivery row and sender rules. Rows lock in
-- lead id order, as every batch does, so two workers never wait on each other in a cycle.
SELECT x.lead_id, l.status, l.current_step, l.attempt, seq.status AS sequence_status,
       is_suppressed(l.email) AS suppressed,
       d.status AS delivery_status, d.lease_until,
       s.hourly_limit, s.daily_limit, s.daily_new_limit, s.min_gap_seconds, s.jitter_seconds
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
-- The batch form of claim_delivery for first claims and retries (never a reclaim).
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
RETURNING lead_id, step, attempts

-- name: lock_leads
SELECT id FROM leads WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE

-- name: advance_leads
SELECT id, status, current_step, next_run_at
FROM advance_leads($1::bigint[], $2::int[], $3::timestamptz)

-- name: record_finished
-- The events written for each item (1-based position); none for an item whose claim was lost.
SELECT item, lead_id, step, type, data
FROM record_finished($1::bigint[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6::text[],
                     $7::text[], $8::timestamptz)

-- name: claim_sends
-- The plain sends of a batch claimed in one call (migration 0004); the leads claimed.
SELECT lead_id, attempts
FROM claim_sends($1::bigint[], $2::int[], $3::int[], $4::bigint[], $5::text[], $6::text[],
                 $7::bigint[], $8::uuid[], $9::timestamptz[], $10::timestamptz, $11::float8)
