-- The reputation guard's window (core/guard.py has the rules; db/guard.py calls these).

-- Record a batch of hand-offs' outcomes and return, for each sender among them, its
-- window: its last p_window outcomes since its last resume, counted by kind. Outcomes
-- older than the window are let go. One call per recorded batch.
CREATE OR REPLACE FUNCTION guard_note(
    p_sender_ids bigint[], p_lead_ids bigint[], p_steps integer[], p_kinds text[],
    p_at timestamptz, p_window integer
)
RETURNS TABLE (sender_id bigint, status text, guard_probation boolean,
               guard_hard_bounce_rate real, guard_complaint_rate real, guard_block_rate real,
               guard_min_sample integer, handoffs bigint, hard_bounces bigint,
               complaints bigint, blocks bigint, delivered bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sender_outcomes (sender_id, lead_id, step, kind, at)
    SELECT x.s, x.l, x.st, x.k, p_at
    FROM unnest(p_sender_ids, p_lead_ids, p_steps, p_kinds) AS x(s, l, st, k)
    WHERE EXISTS (SELECT 1 FROM senders WHERE id = x.s);
    RETURN QUERY SELECT * FROM guard_window(ARRAY(SELECT DISTINCT unnest(p_sender_ids)), p_window);
END $$;

-- A later verdict on hand-offs (a bounce report, a complaint from the inbox): the outcome
-- of each (lead, step) becomes its kind; the windows of their senders, as guard_note.
CREATE OR REPLACE FUNCTION guard_amend(
    p_lead_ids bigint[], p_steps integer[], p_kinds text[], p_window integer
)
RETURNS TABLE (sender_id bigint, status text, guard_probation boolean,
               guard_hard_bounce_rate real, guard_complaint_rate real, guard_block_rate real,
               guard_min_sample integer, handoffs bigint, hard_bounces bigint,
               complaints bigint, blocks bigint, delivered bigint)
LANGUAGE plpgsql AS $$
DECLARE
    touched bigint[];
BEGIN
    WITH changed AS (
        UPDATE sender_outcomes o SET kind = x.k
        FROM unnest(p_lead_ids, p_steps, p_kinds) AS x(l, st, k)
        WHERE o.lead_id = x.l AND o.step = x.st AND o.kind <> 'complaint'
        RETURNING o.sender_id
    )
    SELECT array_agg(DISTINCT c.sender_id) INTO touched FROM changed c;
    IF touched IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM guard_window(touched, p_window);
END $$;

CREATE OR REPLACE FUNCTION guard_window(p_sender_ids bigint[], p_window integer)
RETURNS TABLE (sender_id bigint, status text, guard_probation boolean,
               guard_hard_bounce_rate real, guard_complaint_rate real, guard_block_rate real,
               guard_min_sample integer, handoffs bigint, hard_bounces bigint,
               complaints bigint, blocks bigint, delivered bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- Outcomes past the window of each sender go (they can no longer change a verdict).
    DELETE FROM sender_outcomes o
    USING unnest(p_sender_ids) AS s(id),
          LATERAL (SELECT x.id FROM sender_outcomes x WHERE x.sender_id = s.id
                   ORDER BY x.id DESC OFFSET p_window LIMIT 1) edge
    WHERE o.sender_id = s.id AND o.id <= edge.id;
    RETURN QUERY
    SELECT s.id, s.status, s.guard_probation, s.guard_hard_bounce_rate,
           s.guard_complaint_rate, s.guard_block_rate, s.guard_min_sample,
           count(w.kind), count(w.kind) FILTER (WHERE w.kind = 'hard_bounce'),
           count(w.kind) FILTER (WHERE w.kind = 'complaint'),
           count(w.kind) FILTER (WHERE w.kind = 'block'),
           count(w.kind) FILTER (WHERE w.kind = 'delivered')
    FROM senders s
    LEFT JOIN LATERAL (
        SELECT o.kind FROM sender_outcomes o
        WHERE o.sender_id = s.id AND o.id > s.guard_since
        ORDER BY o.id DESC LIMIT p_window
    ) w ON true
    WHERE s.id = ANY (p_sender_ids)
    GROUP BY s.id;
END $$;
