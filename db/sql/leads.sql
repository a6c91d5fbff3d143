-- Queries over leads, run by the scheduler. $now is always a parameter so tests can move time.

-- name: claim_due_leads
-- Due leads of active sequences, locked for this transaction (NO KEY UPDATE: rows that only
-- gain a referencing event or outbox row meanwhile stay claimable): follow-ups first (they take
-- a scarce sender's capacity before new leads do), then first touches, oldest first.
WITH followups AS MATERIALIZED (
    SELECT l.id, l.next_run_at FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
    WHERE l.status = 'active' AND l.last_sent_at IS NOT NULL AND l.next_run_at <= $1
      AND seq.status = 'active'
    ORDER BY l.next_run_at
    LIMIT $2
    FOR NO KEY UPDATE OF l SKIP LOCKED
), firsts AS MATERIALIZED (
    SELECT l.id, l.next_run_at FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
    WHERE l.status = 'active' AND l.last_sent_at IS NULL AND l.next_run_at <= $1
      AND seq.status = 'active'
    ORDER BY l.next_run_at
    LIMIT greatest($2 - (SELECT count(*) FROM followups), 0)
    FOR NO KEY UPDATE OF l SKIP LOCKED
), picked AS (
    SELECT id, next_run_at, 0 AS rank FROM followups
    UNION ALL
    SELECT id, next_run_at, 1 AS rank FROM firsts
)
SELECT l.id, l.email, l.first_name, l.last_name, l.company, l.timezone, l.attributes,
       l.current_step, l.attempt, l.enrolled_at, l.sequence_id,
       seq.timezone AS sequence_timezone, seq.send_days, seq.send_from, seq.send_until,
       l.sender_id, snd.email AS sender_email, snd.name AS sender_name,
       st.position AS step_position, st.subject, st.body_text, st.body_html,
       is_suppressed(l.email) AS suppressed,
       coalesce(thread.sent_steps, 0) AS sent_steps, thread.thread_subject,
       coalesce(thread.message_ids, '{}') AS thread_message_ids
FROM picked
JOIN leads l ON l.id = picked.id
JOIN sequences seq ON seq.id = l.sequence_id
LEFT JOIN senders snd ON snd.id = l.sender_id
LEFT JOIN sequence_steps st ON st.sequence_id = l.sequence_id AND st.position = l.current_step
LEFT JOIN LATERAL (
    SELECT count(*) AS sent_steps,
           (array_agg(d.subject ORDER BY d.step))[1] AS thread_subject,
           array_agg(d.message_id ORDER BY d.step) AS message_ids
    FROM deliveries d
    WHERE d.lead_id = l.id AND d.step < l.current_step AND d.status IN ('sent', 'unknown')
) thread ON true
ORDER BY picked.rank, picked.next_run_at

-- name: next_due_at
SELECT least(
    (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
     WHERE l.status = 'active' AND l.last_sent_at IS NOT NULL AND seq.status = 'active'),
    (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
     WHERE l.status = 'active' AND l.last_sent_at IS NULL AND seq.status = 'active'))

-- name: pacing_state
-- For the paced senders of a batch: their rules, hand-offs in the last day, and how many
-- of their leads are in flight (those take the next slots before anything planned now). A
-- lead a worker has claimed already booked its slot (in sender_sends and next_send_at):
-- counted there, not again here.
SELECT s.id AS sender_id, s.hourly_limit, s.daily_limit, s.daily_new_limit,
       s.min_gap_seconds, s.jitter_seconds, s.next_send_at,
       coalesce(x.sends, '{}') AS sends, coalesce(x.first_touches, '{}') AS first_touches,
       q.queued_first, q.queued_followups
FROM senders s
LEFT JOIN LATERAL (
    SELECT array_agg(at ORDER BY at) AS sends,
           array_agg(at ORDER BY at) FILTER (WHERE first_touch) AS first_touches
    FROM sender_sends WHERE sender_id = s.id AND at > $2::timestamptz - interval '1 day'
) x ON true
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE last_sent_at IS NULL) AS queued_first,
           count(*) FILTER (WHERE last_sent_at IS NOT NULL) AS queued_followups
    FROM leads l WHERE l.sender_id = s.id AND l.status = 'queued'
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.lead_id = l.id
                      AND d.step = l.current_step AND d.status = 'sending')
) q
WHERE s.id = ANY($1::bigint[])
  AND (s.hourly_limit IS NOT NULL OR s.daily_limit IS NOT NULL OR s.daily_new_limit IS NOT NULL
       OR s.min_gap_seconds > 0 OR s.jitter_seconds > 0)

-- name: global_pace_state
-- GLOBAL_RATE_PER_SECOND: the next free slot and the messages in flight that take it first
-- (a claimed one booked its slot in global_pace already).
SELECT (SELECT next_at FROM global_pace) AS next_at,
       (SELECT count(*) FROM leads l WHERE l.status = 'queued'
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.lead_id = l.id
                          AND d.step = l.current_step AND d.status = 'sending')) AS queued

-- name: sender_candidates
-- The senders of each sequence with their hand-offs in the last day, for lead assignment.
SELECT ss.sequence_id, s.id AS sender_id, s.email, s.name, s.daily_limit,
       (SELECT count(*) FROM sender_sends x
        WHERE x.sender_id = s.id AND x.at > $2::timestamptz - interval '1 day')
           AS sent_last_day,
       (SELECT count(*) FROM leads q WHERE q.sender_id = s.id AND q.status IN ('active', 'queued'))
           AS assigned
FROM sequence_senders ss JOIN senders s ON s.id = ss.sender_id
WHERE ss.sequence_id = ANY($1::bigint[])

-- name: assign_senders
UPDATE leads l SET sender_id = a.sender_id, updated_at = $3
FROM unnest($1::bigint[], $2::bigint[]) AS a(lead_id, sender_id)
WHERE l.id = a.lead_id AND l.id = ANY($1::bigint[])

-- name: apply_decisions
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
WHERE l.id = d.lead_id AND l.id = ANY($1::bigint[])

-- name: insert_outbox
INSERT INTO outbox (lead_id, step, attempt, payload, available_at)
SELECT lead_id, step, attempt, payload::jsonb, $5
FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[]) AS o(lead_id, step, attempt, payload)

-- name: rescue_stuck
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

-- name: backlog
SELECT count(*) FILTER (WHERE l.status = 'active') AS due,
       count(*) FILTER (WHERE l.status = 'queued') AS queued,
       extract(epoch FROM $1::timestamptz - min(l.next_run_at) FILTER (WHERE l.status = 'active'))
           AS lag_s
FROM leads l
WHERE (l.status = 'active' AND l.next_run_at <= $1::timestamptz) OR l.status = 'queued'
