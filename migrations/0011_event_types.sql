-- One registry of event types (core/events.py): the table takes no other type, and the
-- activity counts key a stop or failure by its outcome (replied, unsubscribed, bounced;
-- db/functions/counts.sql `event_key`). Rows written before are left as they are (NOT VALID);
-- the counts of the retained hours are moved from the plain type to the outcome.
ALTER TABLE events ADD CONSTRAINT events_type_registered CHECK (type IN (
    'queued', 'sent', 'send_ambiguous', 'scheduled', 'deferred', 'retry_scheduled', 'rescued',
    'completed', 'stopped', 'failed', 'message_rejected', 'reply_received', 'reply_unmatched',
    'auto_replied', 'soft_bounced', 'complained', 'inbound_ignored', 'inbound_unreadable',
    'retried', 'paused', 'resumed',
    'suppression_lifted', 'sequence_paused', 'sequence_resumed', 'sender_changed',
    'smtp_circuit_open', 'smtp_circuit_closed'
)) NOT VALID;

WITH moved AS (
    SELECT date_trunc('hour', e.at) AS hour, l.sequence_id, l.sender_id, e.step, e.type,
           e.data->>'reason' AS outcome
    FROM events e LEFT JOIN leads l ON l.id = e.lead_id
    WHERE e.type IN ('stopped', 'failed')
      AND e.data->>'reason' IN ('replied', 'unsubscribed', 'bounced')
      AND e.at > now() - interval '90 days'
)
INSERT INTO activity_changes (hour, sequence_id, sender_id, step, type, n)
SELECT hour, sequence_id, sender_id, step, type, -count(*) FROM moved GROUP BY 1, 2, 3, 4, 5
UNION ALL
SELECT hour, sequence_id, sender_id, step, outcome, count(*) FROM moved GROUP BY 1, 2, 3, 4, 5;
