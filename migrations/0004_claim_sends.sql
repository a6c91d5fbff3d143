-- The worker's claim of a batch of plain sends as one call: one round trip and one
-- transaction instead of four (BEGIN, lock and read, claim, COMMIT). Its plans are cached:
-- planning it on every call (as record_finished's batch updates are) cost more than
-- running it.
--
-- A message is claimed here only when the worker's gate (core/gate.py `decide`) would say
-- "send, no reclaim" and its sender exists and has no pacing rules: the lead is queued for
-- exactly this step and attempt, not suppressed, its sequence active; the step has no
-- delivery yet or only a deferred one; the message's window stretch has not ended. All else
-- (paced or missing senders, stale claims, settled steps, stopped or moved-on leads) is left
-- for the worker's general path, which decides it under the same locks.
-- tests/integration/test_claim.py checks that this function and `decide` agree on every
-- combination of those states.
CREATE FUNCTION claim_sends(
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
        SELECT hourly_limit, daily_limit, daily_new_limit, min_gap_seconds, jitter_seconds
        FROM senders WHERE id = x.sender_id OFFSET 0
    ) s
    WHERE l.status = 'queued' AND l.current_step = x.step AND l.attempt = x.attempt
      AND seq.status = 'active'
      AND NOT is_suppressed(l.email)
      AND (x.not_after IS NULL OR p_at < x.not_after)
      AND s.hourly_limit IS NULL AND s.daily_limit IS NULL AND s.daily_new_limit IS NULL
      AND s.min_gap_seconds = 0 AND s.jitter_seconds = 0
    ON CONFLICT (lead_id, step) DO UPDATE
    SET status = 'sending', attempts = d.attempts + 1, outbox_id = excluded.outbox_id,
        claim_token = excluded.claim_token, claimed_at = excluded.claimed_at,
        lease_until = excluded.lease_until, subject = excluded.subject,
        sender_id = excluded.sender_id, updated_at = excluded.updated_at
    WHERE d.status = 'deferred'
    RETURNING d.lead_id, d.attempts;
END $$;
