-- The console's inbox (ops/replies.py): replies and automatic answers as the inbox stored
-- them (inbound_messages), with their lead, sequence and sender.

-- name: list
-- Newest first, before id $1; filters: intent $2, sender $3, sequence $4, handled $5 (NULL:
-- any); $6 rows.
SELECT i.id, i.kind, i.intent, i.ooo_until, i.from_address, i.subject, i.body,
       i.received_at, i.handled_at, i.handled_by, i.lead_id, i.sender_id, l.sequence_id,
       l.email AS lead_email, l.status AS lead_status, s.email AS sender_email,
       q.name AS sequence_name
FROM inbound_messages i
LEFT JOIN leads l ON l.id = i.lead_id
LEFT JOIN senders s ON s.id = i.sender_id
LEFT JOIN sequences q ON q.id = l.sequence_id
WHERE i.kind IN ('reply', 'auto_reply') AND i.id < $1
  AND ($2::text IS NULL OR i.intent = $2)
  AND ($3::bigint IS NULL OR i.sender_id = $3)
  AND ($4::bigint IS NULL OR l.sequence_id = $4)
  AND ($5::boolean IS NULL OR (i.handled_at IS NOT NULL) = $5)
ORDER BY i.id DESC LIMIT $6

-- name: get
SELECT i.id, i.kind, i.intent, i.ooo_until, i.from_address, i.subject, i.body, i.message_id,
       i.received_at, i.handled_at, i.handled_by, i.lead_id, i.sender_id, l.sequence_id,
       l.email AS lead_email, l.status AS lead_status, s.email AS sender_email,
       q.name AS sequence_name
FROM inbound_messages i
LEFT JOIN leads l ON l.id = i.lead_id
LEFT JOIN senders s ON s.id = i.sender_id
LEFT JOIN sequences q ON q.id = l.sequence_id
WHERE i.id = $1 AND i.kind IN ('reply', 'auto_reply')

-- name: ours
-- What we sent the lead (its sequence's steps), and the answers sent to its replies (one-off
-- leads threaded under them), in order.
SELECT d.step, d.subject, d.message_id, d.sent_at, d.status, 'step' AS what, NULL::text AS body
FROM deliveries d WHERE d.lead_id = $1 AND d.status IN ('sent', 'unknown')
UNION ALL
SELECT d.step, d.subject, d.message_id, d.sent_at, d.status, 'answer' AS what,
       a.attributes->>'one_off_text' AS body
FROM leads a JOIN deliveries d ON d.lead_id = a.id
WHERE a.reply_references && $2::text[] AND a.id <> $1
ORDER BY 4 NULLS LAST

-- name: theirs
SELECT id, kind, intent, from_address, subject, body, message_id, received_at
FROM inbound_messages WHERE lead_id = $1 AND kind IN ('reply', 'auto_reply')
ORDER BY received_at, id

-- name: handled
UPDATE inbound_messages SET handled_at = $2, handled_by = $3
WHERE id = $1 AND kind IN ('reply', 'auto_reply') AND handled_at IS NULL
RETURNING lead_id
