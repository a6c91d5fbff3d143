-- The worker's database calls that do a batch's work in one round trip.
--
-- The statements that reach rows through a batch of keys either are planned on every call
-- (plan_cache_mode) or reach each row through a primary-key probe (LATERAL ... OFFSET 0), so
-- that a plan made while a table was nearly empty never scans it once it has grown.

-- The record of finished sends as one call: one round trip and one transaction
-- instead of six. The statements inside run one after the other, each seeing what the ones
-- before it did and what other transactions committed meanwhile, exactly as the separate
-- statements of a client-side transaction would.
--
-- The statements that reach rows through a batch of keys are planned on every call
-- (plan_cache_mode): a plan cached while `deliveries` was nearly empty would go on scanning
-- the whole table for every row of every batch as it grows. The rest keeps cached plans
-- (foreign-key checks above all, several per email).

-- After a step left: due time of each lead's next step, or completed. Only a lead still
-- queued for that step moves (an operator may have stopped or paused it meanwhile); the
-- caller holds the leads' row locks. Leads are found by primary key only: the state test runs
-- on the fetched rows (OFFSET 0 keeps it out of the scans), so the planner cannot pick the
-- partial index of every queued lead, which its statistics may think is small.
CREATE OR REPLACE FUNCTION advance_leads(p_lead_ids bigint[], p_steps integer[], p_at timestamptz)
RETURNS TABLE (id bigint, status text, current_step integer, next_run_at timestamptz)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH moved AS (
        UPDATE leads l
        SET current_step = coalesce(a.position, l.current_step),
            status = CASE WHEN a.position IS NULL THEN 'completed' ELSE 'active' END,
            next_run_at = CASE WHEN a.position IS NULL THEN l.next_run_at
                               ELSE p_at + make_interval(secs => a.wait_seconds) END,
            attempt = CASE WHEN a.position IS NULL THEN l.attempt ELSE 0 END,
            last_sent_at = p_at,
            updated_at = p_at
        FROM (
            SELECT x.lead_id, x.step, cur.status, cur.current_step, nxt.position, nxt.wait_seconds
            FROM unnest(p_lead_ids, p_steps) AS x(lead_id, step)
            CROSS JOIN LATERAL (
                SELECT status, current_step, sequence_id FROM leads WHERE id = x.lead_id OFFSET 0
            ) cur
            LEFT JOIN LATERAL (
                SELECT position, wait_seconds FROM sequence_steps s
                WHERE s.sequence_id = cur.sequence_id AND s.position > x.step
                ORDER BY position LIMIT 1
            ) nxt ON true
            OFFSET 0
        ) a
        WHERE l.id = a.lead_id AND l.id = ANY(p_lead_ids)
          AND a.status = 'queued' AND a.current_step = a.step
        RETURNING l.id, l.status, l.current_step, l.next_run_at
    )
    SELECT * FROM moved;
END $$;

-- Lock the leads, then finish each claim whose message left if the caller still holds it;
-- returns the items (1-based positions) finished and their attempt counts.
CREATE OR REPLACE FUNCTION finish_deliveries(
    p_lead_ids bigint[], p_steps integer[], p_tokens uuid[], p_statuses text[],
    p_smtp_codes integer[], p_errors text[], p_at timestamptz)
RETURNS TABLE (item integer, attempts integer)
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
BEGIN
    -- Lead rows first and in id order, as claims take them: no lock cycle between workers.
    PERFORM 1 FROM leads l WHERE l.id = ANY(p_lead_ids) ORDER BY l.id FOR NO KEY UPDATE;

    -- Only the holder of each claim may finish it. Rows are found by primary key and tested
    -- once fetched (see advance_leads); every writer of a delivery takes its lead's lock
    -- first, so this statement, which starts after the locks, sees the current rows.
    RETURN QUERY
    WITH fin AS (
        UPDATE deliveries d
        SET status = x.status,
            sent_at = CASE WHEN x.status = 'sent' THEN p_at ELSE d.sent_at END,
            smtp_code = x.smtp_code, error = x.error, updated_at = p_at, lease_until = NULL
        FROM (
            SELECT x.*, cur.status AS current_status, cur.claim_token AS current_token
            FROM unnest(p_lead_ids, p_steps, p_tokens, p_statuses, p_smtp_codes,
                        p_errors) WITH ORDINALITY AS x(lead_id, step, token, status, smtp_code,
                                                       error, item)
            CROSS JOIN LATERAL (
                SELECT status, claim_token FROM deliveries
                WHERE lead_id = x.lead_id AND step = x.step
                OFFSET 0
            ) cur
            OFFSET 0
        ) x
        WHERE d.lead_id = x.lead_id AND d.step = x.step AND d.lead_id = ANY(p_lead_ids)
          AND x.current_status = 'sending' AND x.current_token = x.token
        RETURNING x.item, d.attempts
    )
    SELECT fin.item::integer, fin.attempts FROM fin;
END $$;

-- Finish each claim whose message left (`sent`, or `unknown` when no reply came after the
-- content), move those leads on, and write the events. Returns the events written, with the
-- position (1-based) of the item each belongs to; an item without events lost its claim.
-- A time as Python's datetime.isoformat() writes it in UTC (six digits of fraction, none
-- when it is zero): JSON's own form drops trailing zeros, and events written by either side
-- must read the same.
CREATE OR REPLACE FUNCTION iso_utc(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') END
$$;

CREATE OR REPLACE FUNCTION record_finished(
    p_lead_ids bigint[], p_steps integer[], p_tokens uuid[], p_statuses text[],
    p_smtp_codes integer[], p_errors text[], p_message_ids text[], p_at timestamptz)
RETURNS TABLE (item integer, lead_id bigint, step integer, type text, data jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    done_items integer[];
    done_attempts integer[];
    moved_ids bigint[];
    moved_status text[];
    moved_steps integer[];
    moved_next timestamptz[];
    ev_items integer[];
    ev_leads bigint[];
    ev_steps integer[];
    ev_types text[];
    ev_data jsonb[];
BEGIN
    SELECT array_agg(f.item ORDER BY f.item), array_agg(f.attempts ORDER BY f.item)
    INTO done_items, done_attempts
    FROM finish_deliveries(p_lead_ids, p_steps, p_tokens, p_statuses, p_smtp_codes, p_errors,
                           p_at) f;
    IF done_items IS NULL THEN
        RETURN;
    END IF;

    SELECT array_agg(m.id), array_agg(m.status), array_agg(m.current_step),
           array_agg(m.next_run_at)
    INTO moved_ids, moved_status, moved_steps, moved_next
    FROM advance_leads(ARRAY(SELECT p_lead_ids[i] FROM unnest(done_items) i),
                       ARRAY(SELECT p_steps[i] FROM unnest(done_items) i), p_at) m;

    SELECT array_agg(e.item ORDER BY e.item, e.k), array_agg(e.lead_id ORDER BY e.item, e.k),
           array_agg(e.step ORDER BY e.item, e.k), array_agg(e.type ORDER BY e.item, e.k),
           array_agg(e.data ORDER BY e.item, e.k)
    INTO ev_items, ev_leads, ev_steps, ev_types, ev_data
    FROM (
        SELECT f.item, 0 AS k, p_lead_ids[f.item] AS lead_id, p_steps[f.item] AS step,
               CASE WHEN p_statuses[f.item] = 'sent' THEN 'sent' ELSE 'send_ambiguous' END
                   AS type,
               CASE WHEN p_statuses[f.item] = 'sent'
                    THEN jsonb_build_object('message_id', p_message_ids[f.item],
                                            'smtp_code', p_smtp_codes[f.item],
                                            'attempts', f.attempts)
                    ELSE jsonb_build_object('message_id', p_message_ids[f.item],
                                            'error', left(coalesce(p_errors[f.item], ''), 500),
                                            'attempts', f.attempts)
               END AS data
        FROM unnest(done_items, done_attempts) AS f(item, attempts)
        UNION ALL
        SELECT f.item, 1, m.id,
               CASE WHEN m.status = 'completed' THEN p_steps[f.item] ELSE m.current_step END,
               CASE WHEN m.status = 'completed' THEN 'completed' ELSE 'scheduled' END,
               CASE WHEN m.status = 'completed' THEN '{}'::jsonb
                    ELSE jsonb_build_object('next_run_at', iso_utc(m.next_run_at)) END
        FROM unnest(done_items) AS f(item)
        JOIN unnest(moved_ids, moved_status, moved_steps, moved_next)
             AS m(id, status, current_step, next_run_at) ON m.id = p_lead_ids[f.item]
    ) e;

    INSERT INTO events (lead_id, step, type, at, data)
    SELECT e.lead_id, e.step, e.type, p_at, e.data
    FROM unnest(ev_leads, ev_steps, ev_types, ev_data) WITH ORDINALITY AS e(lead_id, step, type, data, n)
    ORDER BY e.n;

    RETURN QUERY
    SELECT e.item, e.lead_id, e.step, e.type, e.data
    FROM unnest(ev_items, ev_leads, ev_steps, ev_types, ev_data) AS e(item, lead_id, step, type, data);
END $$;

-- The claim of a batch of plain sends as one call: one round trip and one
-- transaction instead of four (BEGIN, lock and read, claim, COMMIT). Its plans are cached:
-- planning it on every call (as record_finished's batch updates are) cost more than
-- running it.
--
-- A message is claimed here only when the worker's gate (core/gate.py `decide`) would say
-- "send, no reclaim" and its sender exists and is not paced: the lead is queued for
-- exactly this step and attempt, not suppressed, its sequence active; the step has no
-- delivery yet or only a deferred one; the message's window stretch has not ended. All else
-- (paced or missing senders, stale claims, settled steps, stopped or moved-on leads) is left
-- for the worker's general path, which decides it under the same locks.
-- tests/integration/test_claim.py checks that this function and `decide` agree on every
-- combination of those states.
CREATE OR REPLACE FUNCTION claim_sends(
    p_lead_ids bigint[], p_steps integer[], p_attempts integer[], p_sender_ids bigint[],
    p_message_ids text[], p_subjects text[], p_outbox_ids bigint[], p_tokens uuid[],
    p_not_after timestamptz[], p_at timestamptz, p_lease_seconds float8)
RETURNS TABLE (lead_id bigint, attempts integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- Lead rows first and in id order, as every writer takes them.
    PERFORM 1
    FROM (SELECT DISTINCT id FROM unnest(p_lead_ids) AS u(id) ORDER BY id) x
    CROSS JOIN LATERAL (
        SELECT 1 FROM leads l WHERE l.id = x.id OFFSET 0 FOR NO KEY UPDATE
    ) locked;

    -- Every row is reached by a primary-key probe and tested once fetched (OFFSET 0 keeps
    -- the tests out of the scans): the plans are cached, made perhaps while the tables were
    -- nearly empty, and a probe stays a probe however the tables grow.
    RETURN QUERY
    INSERT INTO deliveries AS d (lead_id, step, sender_id, message_id, subject, status,
                                 attempts, outbox_id, claim_token, claimed_at, lease_until,
                                 updated_at)
    SELECT x.lead_id, x.step, x.sender_id, x.message_id, x.subject, 'sending', 1,
           x.outbox_id, x.token, p_at, p_at + make_interval(secs => p_lease_seconds), p_at
    FROM unnest(p_lead_ids, p_steps, p_attempts, p_sender_ids, p_message_ids, p_subjects,
                p_outbox_ids, p_tokens, p_not_after)
         AS x(lead_id, step, attempt, sender_id, message_id, subject, outbox_id, token,
              not_after)
    CROSS JOIN LATERAL (
        SELECT status, current_step, attempt, email, sequence_id FROM leads
        WHERE id = x.lead_id OFFSET 0
    ) l
    CROSS JOIN LATERAL (SELECT status FROM sequences WHERE id = l.sequence_id OFFSET 0) seq
    CROSS JOIN LATERAL (
        SELECT paced, status FROM senders WHERE id = x.sender_id OFFSET 0
    ) s
    WHERE l.status = 'queued' AND l.current_step = x.step AND l.attempt = x.attempt
      AND seq.status = 'active'
      AND NOT is_suppressed(l.email)
      AND (x.not_after IS NULL OR p_at < x.not_after)
      AND NOT s.paced AND s.status = 'active'
    ON CONFLICT (lead_id, step) DO UPDATE
    SET status = 'sending', attempts = d.attempts + 1, outbox_id = excluded.outbox_id,
        claim_token = excluded.claim_token, claimed_at = excluded.claimed_at,
        lease_until = excluded.lease_until, subject = excluded.subject,
        sender_id = excluded.sender_id, updated_at = excluded.updated_at
    WHERE d.status = 'deferred'
    RETURNING d.lead_id, d.attempts;
END $$;
