-- Webhooks: which event tells which webhook type, and the trigger that writes the webhook
-- outbox in the transaction of the events (migration 0016). Each event is one type or none:
--   sent → lead.sent; reply_received → lead.replied; complained → lead.complained;
--   completed → lead.completed; sender_paused → sender.paused;
--   failed → lead.bounced (reason bounced) or lead.failed;
--   stopped → lead.unsubscribed (reason unsubscribed), lead.bounced (bounced), none (replied:
--   the reply is its own lead.replied, or was reported by the system that would hear it) or
--   lead.stopped.
CREATE OR REPLACE FUNCTION webhook_type(p_type text, p_data jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_type
        WHEN 'sent' THEN 'lead.sent'
        WHEN 'reply_received' THEN 'lead.replied'
        WHEN 'complained' THEN 'lead.complained'
        WHEN 'completed' THEN 'lead.completed'
        WHEN 'sender_paused' THEN 'sender.paused'
        WHEN 'failed' THEN
            CASE WHEN p_data->>'reason' = 'bounced' THEN 'lead.bounced' ELSE 'lead.failed' END
        WHEN 'stopped' THEN
            CASE p_data->>'reason' WHEN 'unsubscribed' THEN 'lead.unsubscribed'
                                   WHEN 'bounced' THEN 'lead.bounced'
                                   WHEN 'replied' THEN NULL
                                   ELSE 'lead.stopped' END
    END
$$;

-- Once per INSERT statement on events: nothing when no endpoint exists (one index probe);
-- else one row per subscribed endpoint and event, and a NOTIFY that wakes the deliverers.
CREATE OR REPLACE FUNCTION webhook_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    WITH typed AS (
        SELECT a.id, a.lead_id, a.step, a.at, a.data, webhook_type(a.type, a.data) AS kind
        FROM added a
    ), queued AS (
        INSERT INTO webhook_deliveries
            (endpoint_id, event_id, event_type, payload, created_at, next_attempt_at)
        SELECT e.id, t.id, t.kind,
               jsonb_build_object(
                   'type', t.kind,
                   'timestamp', t.at,
                   'data', jsonb_strip_nulls(jsonb_build_object(
                       'event_id', t.id, 'lead_id', t.lead_id, 'step', t.step,
                       'email', l.email, 'sequence_id', l.sequence_id,
                       'sender_id', CASE WHEN l.id IS NOT NULL THEN l.sender_id
                                         WHEN jsonb_typeof(t.data->'sender_id') = 'number'
                                         THEN (t.data->>'sender_id')::bigint END,
                       'details', t.data))),
               now(), now()
        FROM typed t
        JOIN webhook_endpoints e ON t.kind = ANY (e.event_types)
        LEFT JOIN leads l ON l.id = t.lead_id
        WHERE t.kind IS NOT NULL
        RETURNING 1
    )
    SELECT count(*) INTO n FROM queued;
    IF n > 0 THEN
        PERFORM pg_notify('email_scheduler_webhooks', '');
    END IF;
    RETURN NULL;
END $$;
