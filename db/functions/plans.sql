-- What the scheduler reads to plan a lead, defined once: which leads are due (and locks
-- them), and everything planning one of them needs.

-- Due leads of active sequences, locked for the caller's transaction (NO KEY UPDATE: rows
-- that only gain a referencing event or outbox row meanwhile stay claimable): follow-ups
-- first (they take a scarce sender's capacity before new leads do), then first touches,
-- oldest first. Each scan touches due leads only (partial indexes, migration 0002).
-- A sender the reputation guard paused (db/guard.py): its leads wait, none is planned.
CREATE OR REPLACE FUNCTION sender_paused(p_sender_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_sender_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM senders WHERE id = p_sender_id AND status = 'paused')
$$;

-- The senders the guard paused, for statements over many leads: written
-- `NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)` it is read once per
-- statement (an init plan), where sender_paused() per lead costs a call per row (a
-- function holding a subquery is never inlined): 10,000 due leads took 30 ms more a count.
CREATE OR REPLACE FUNCTION paused_senders() RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(id), '{}') FROM senders WHERE status = 'paused'
$$;

CREATE OR REPLACE FUNCTION due_leads(p_now timestamptz, p_limit integer)
RETURNS TABLE (id bigint, next_run_at timestamptz, rank integer)
LANGUAGE sql ROWS 500 AS $$
    WITH followups AS MATERIALIZED (
        SELECT l.id, l.next_run_at FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
        WHERE l.status = 'active' AND l.last_sent_at IS NOT NULL AND l.next_run_at <= p_now
          AND seq.status = 'active' AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)
        ORDER BY l.next_run_at
        LIMIT p_limit
        FOR NO KEY UPDATE OF l SKIP LOCKED
    ), firsts AS MATERIALIZED (
        SELECT l.id, l.next_run_at FROM leads l JOIN sequences seq ON seq.id = l.sequence_id
        WHERE l.status = 'active' AND l.last_sent_at IS NULL AND l.next_run_at <= p_now
          AND seq.status = 'active' AND NOT coalesce(l.sender_id = ANY ((SELECT paused_senders())::bigint[]), false)
        ORDER BY l.next_run_at
        LIMIT greatest(p_limit - (SELECT count(*) FROM followups), 0)
        FOR NO KEY UPDATE OF l SKIP LOCKED
    )
    SELECT id, next_run_at, 0 FROM followups
    UNION ALL
    SELECT id, next_run_at, 1 FROM firsts
$$;

-- A lead with its step, sequence, sender and thread: core.planner.DueLead, column by column.
CREATE OR REPLACE VIEW lead_plans AS
SELECT l.id, l.email, l.first_name, l.last_name, l.company, l.timezone, l.attributes,
       l.current_step, l.attempt, l.enrolled_at, l.sequence_id,
       seq.timezone AS sequence_timezone, seq.send_days, seq.send_from, seq.send_until,
       l.sender_id, snd.email AS sender_email, snd.name AS sender_name,
       st.position AS step_position, st.subject, st.body_text, st.body_html,
       is_suppressed(l.email) AS suppressed,
       coalesce(thread.sent_steps, 0) AS sent_steps, thread.thread_subject,
       coalesce(thread.message_ids, '{}') AS thread_message_ids,
       -- Due later than its step's own wait said (pacing, a window or a retry put it
       -- there): the lead holds a slot of its own already.
       coalesce(l.next_run_at > coalesce(l.last_sent_at, l.enrolled_at)
                                + make_interval(secs => st.wait_seconds), false) AS booked,
       l.reply_references
FROM leads l
JOIN sequences seq ON seq.id = l.sequence_id
LEFT JOIN senders snd ON snd.id = l.sender_id
LEFT JOIN sequence_steps st ON st.sequence_id = l.sequence_id AND st.position = l.current_step
LEFT JOIN LATERAL (
    SELECT count(*) AS sent_steps,
           (array_agg(d.subject ORDER BY d.step))[1] AS thread_subject,
           array_agg(d.message_id ORDER BY d.step) AS message_ids
    FROM deliveries d
    WHERE d.lead_id = l.id AND d.step < l.current_step AND d.status IN ('sent', 'unknown')
) thread ON true;
