-- Queries over leads, run by the scheduler. $now is always a parameter so tests can move time.

-- name: claim_due_ids
-- Due leads, locked for this transaction (db/functions/plans.sql), by id and step: nothing
-- to decode that could fail.
SELECT d.id, l.current_step FROM due_leads($1::timestamptz, $2::int) d JOIN leads l ON l.id = d.id
ORDER BY d.rank, d.next_run_at

-- name: load_due_leads
-- What planning needs of leads the caller has locked, in the order given. A statement of
-- its own, after the locks: it reads each row as the lock left it (one statement that locked
-- and read would read with a snapshot taken before the lock was granted).
SELECT v.* FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n)
JOIN lead_plans v ON v.id = u.id
ORDER BY u.n

-- name: next_due_at
SELECT least(
    (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
     WHERE l.status = 'active' AND l.last_sent_at IS NOT NULL AND seq.status = 'active'
           AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)),
    (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
     WHERE l.status = 'active' AND l.last_sent_at IS NULL AND seq.status = 'active'
           AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)))

-- name: pacing_state
-- For the paced senders of a batch: their rules, hand-offs in the last day, how many of
-- their leads are in flight (those take the next slots before anything planned now), and
-- when their leads that wait take theirs (a lead deferred to a forecast slot keeps it: the
-- leads planned now go around them, not onto the same slots). A lead a worker has claimed
-- already booked its slot (in sender_sends and next_send_at): counted there, not here.
SELECT s.id AS sender_id, s.hourly_limit, s.daily_limit, s.daily_new_limit,
       s.warmup_start, s.warmup_increment, s.warmup_started_at,
       s.min_gap_seconds, s.jitter_seconds, s.next_send_at,
       coalesce(x.sends, '{}') AS sends, coalesce(x.first_touches, '{}') AS first_touches,
       q.queued_first, q.queued_followups,
       coalesce(w.slots, '{}') AS waiting, coalesce(w.first_slots, '{}') AS waiting_first
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
LEFT JOIN LATERAL (
    SELECT array_agg(y.next_run_at ORDER BY y.next_run_at) AS slots,
           array_agg(y.next_run_at ORDER BY y.next_run_at) FILTER (WHERE y.first) AS first_slots
    FROM (
        SELECT l.next_run_at, l.last_sent_at IS NULL AS first FROM leads l
        WHERE l.sender_id = s.id AND l.status = 'active'
          AND l.next_run_at > $2::timestamptz AND l.next_run_at <= $2::timestamptz + interval '1 day'
        ORDER BY l.next_run_at LIMIT 5000
    ) y
) w ON true
WHERE s.id = ANY($1::bigint[]) AND s.paced

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
       s.warmup_start, s.warmup_increment, s.warmup_started_at,
       (SELECT count(*) FROM sender_sends x
        WHERE x.sender_id = s.id AND x.at > $2::timestamptz - interval '1 day')
           AS sent_last_day,
       (SELECT count(*) FROM leads q WHERE q.sender_id = s.id AND q.status IN ('active', 'queued'))
           AS assigned
FROM sequence_senders ss JOIN senders s ON s.id = ss.sender_id
WHERE ss.sequence_id = ANY($1::bigint[]) AND s.status = 'active'

-- name: assign_senders
UPDATE leads l SET sender_id = a.sender_id, updated_at = $3
FROM unnest($1::bigint[], $2::bigint[]) AS a(lead_id, sender_id)
WHERE l.id = a.lead_id AND l.id = ANY($1::bigint[])


-- name: insert_outbox
INSERT INTO outbox (lead_id, step, attempt, payload, available_at)
SELECT lead_id, step, attempt, payload::jsonb, $5
FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[]) AS o(lead_id, step, attempt, payload)


-- name: backlog
-- Due leads of active sequences and senders (a paused one's are not lag) and leads in the pipeline, each
-- counted up to $2 (a bounded scan, whatever the backlog), and how late the oldest due is.
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
        WHERE l.status = 'active' AND l.next_run_at <= $1::timestamptz AND seq.status = 'active'
           AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)
        LIMIT $2) x) AS due,
    (SELECT count(*) FROM (SELECT 1 FROM leads WHERE status = 'queued' LIMIT $2) x) AS queued,
    extract(epoch FROM $1::timestamptz - least(
        (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
         WHERE l.status = 'active' AND l.last_sent_at IS NOT NULL
           AND l.next_run_at <= $1::timestamptz AND seq.status = 'active'
           AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)),
        (SELECT min(l.next_run_at) FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
         WHERE l.status = 'active' AND l.last_sent_at IS NULL
           AND l.next_run_at <= $1::timestamptz AND seq.status = 'active'
           AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)))) AS lag_s


-- name: replan_sender
-- After a sender's limits changed: its waiting leads are due again when their own wait says
-- (and not before now), so a raised cap takes effect at once and the scheduler plans them
-- against the new limits. A lead's wait counts from enrolment for its first step, from the
-- last send otherwise; a lead waiting out a retry's backoff keeps it.
UPDATE leads l SET next_run_at = greatest($2::timestamptz, w.due), updated_at = $2::timestamptz
FROM (
    SELECT l2.id, coalesce(l2.last_sent_at, l2.enrolled_at)
                  + make_interval(secs => coalesce(st.wait_seconds, 0)) AS due
    FROM leads l2
    LEFT JOIN sequence_steps st ON st.sequence_id = l2.sequence_id AND st.position = l2.current_step
    WHERE l2.sender_id = $1 AND l2.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.lead_id = l2.id
                      AND d.step = l2.current_step AND d.status = 'deferred')
) w
WHERE l.id = w.id AND l.next_run_at > greatest($2::timestamptz, w.due)
