-- Every write of leads.status the daemons make, one statement per move of the lead
-- lifecycle (core/lifecycle.py), each guarded on the statuses its move starts from. Two more
-- live in db/functions/: advance_leads (deliveries.sql: sent, sent_last) and stop_leads
-- (stops.sql: stop). Inserting a lead enrols it as active (migration 0001, leads_enrol).

-- name: apply_decisions
-- Moves queue, wait, complete, stop and fail of leads the scheduler claimed (active).
-- One statement for every lead of a batch: new status, due time and attempt counter.
-- `l.id = ANY($1)` gives the planner the batch's keys, so the cost follows the batch, never
-- the table (a hash join would otherwise scan every lead while the table looks small).
UPDATE leads l
SET status = d.status,
    next_run_at = coalesce(d.next_run_at, l.next_run_at),
    attempt = l.attempt + d.attempt_inc,
    queued_at = CASE WHEN d.status = 'queued' THEN $5::timestamptz ELSE l.queued_at END,
    updated_at = $5::timestamptz
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[])
     AS d(lead_id, status, next_run_at, attempt_inc)
WHERE l.id = d.lead_id AND l.id = ANY($1::bigint[]) AND l.status = 'active'

-- name: rescue_stuck
-- Move requeue of leads whose message was lost.
-- Leads queued too long whose message is gone: no unpublished outbox row, no live claim.
-- The lock and the re-check happen in this one statement, so a lead that moved on is left alone.
WITH stuck AS (
    SELECT l.id FROM leads l
    WHERE l.status = 'queued' AND l.queued_at < $1::timestamptz - make_interval(secs => $2::float8)
      AND NOT EXISTS (SELECT 1 FROM outbox o
                      WHERE o.lead_id = l.id AND o.step = l.current_step
                        AND o.attempt = l.attempt AND o.published_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.lead_id = l.id AND d.step = l.current_step
                        AND d.status = 'sending' AND d.lease_until > $1::timestamptz)
    ORDER BY l.queued_at
    LIMIT $3
    FOR NO KEY UPDATE OF l SKIP LOCKED
)
UPDATE leads l SET status = 'active', next_run_at = $1::timestamptz, updated_at = $1::timestamptz
FROM stuck WHERE l.id = stuck.id AND l.status = 'queued'
RETURNING l.id, l.current_step, l.attempt

-- name: requeue_leads
-- Back to waiting (retry, window missed, pacing): the scheduler plans each again at its time.
UPDATE leads l SET status = 'active', next_run_at = x.at, updated_at = $4::timestamptz
FROM unnest($1::bigint[], $2::int[], $3::timestamptz[]) AS x(lead_id, step, at)
WHERE l.id = x.lead_id AND l.id = ANY($1::bigint[])
  AND l.status = 'queued' AND l.current_step = x.step

-- name: end_lead
-- Moves stop and fail ($3) of a lead the worker holds.
UPDATE leads SET status = $3, updated_at = $4
WHERE id = $1 AND status IN ('queued', 'active') AND current_step = $2

-- name: advance_leads
SELECT id, status, current_step, next_run_at
FROM advance_leads($1::bigint[], $2::int[], $3::timestamptz)

-- name: operator_stop
-- Move stop, by an operator: any live lead.
UPDATE leads SET status = 'stopped', updated_at = $2::timestamptz
WHERE id = ANY($1::bigint[]) AND status IN ('active', 'queued', 'paused')
RETURNING id, current_step

-- name: operator_pause
-- Move pause: a waiting or queued lead (a message in flight for it is then dropped).
UPDATE leads SET status = 'paused', updated_at = $2::timestamptz
WHERE id = ANY($1::bigint[]) AND status IN ('active', 'queued')
RETURNING id, current_step

-- name: operator_resume
-- Move resume: due at once, or when it was due if that is later.
UPDATE leads SET status = 'active', next_run_at = greatest(next_run_at, $2::timestamptz),
                 updated_at = $2::timestamptz
WHERE id = ANY($1::bigint[]) AND status = 'paused'
RETURNING id, current_step

-- name: operator_retry
-- Move retry: a failed lead's current step becomes sendable again, with its attempts anew
-- (a failed delivery goes back to deferred, keeping its Message-ID).
WITH retried AS (
    UPDATE leads SET status = 'active', next_run_at = $2::timestamptz, updated_at = $2::timestamptz
    WHERE id = ANY($1::bigint[]) AND status = 'failed'
    RETURNING id, current_step
), reset AS (
    UPDATE deliveries d SET status = 'deferred', attempts = 0, error = NULL, smtp_code = NULL,
                            updated_at = $2::timestamptz
    FROM retried r WHERE d.lead_id = r.id AND d.step = r.current_step AND d.status = 'failed'
)
SELECT id, current_step FROM retried

-- name: bounce_lead
-- Move bounce: a hard bounce of one of the lead's messages came back (the inbox daemon),
-- whichever step it is at now. A paused lead is stopped by the address's suppression; a
-- completed one stays completed.
UPDATE leads SET status = 'failed', updated_at = $2::timestamptz
WHERE id = $1 AND status IN ('active', 'queued')
RETURNING id, current_step

-- name: suppressed
-- Which of the leads $1 have a suppressed address (the address itself, or its domain), with
-- the suppression that holds it.
SELECT l.id, s.email AS suppression, s.reason, s.created_at
FROM leads l
JOIN suppressions s ON s.email IN (lower(l.email), '*@' || split_part(lower(l.email), '@', 2))
WHERE l.id = ANY($1::bigint[])
ORDER BY l.id, s.email = lower(l.email) DESC
