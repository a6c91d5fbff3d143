-- The inbox daemon's reads and writes (db/inbox.py).

-- name: mailboxes
-- Every sender's IMAP inbox.
SELECT id, email, imap_url, imap_password FROM senders WHERE imap_url IS NOT NULL ORDER BY id

-- name: state
SELECT uidvalidity, last_uid FROM inbox_mailboxes WHERE mailbox = $1

-- name: advance
INSERT INTO inbox_mailboxes (mailbox, uidvalidity, last_uid, checked_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (mailbox) DO UPDATE
SET uidvalidity = excluded.uidvalidity, checked_at = excluded.checked_at,
    last_uid = CASE WHEN inbox_mailboxes.uidvalidity = excluded.uidvalidity
                    THEN greatest(inbox_mailboxes.last_uid, excluded.last_uid)
                    ELSE excluded.last_uid END

-- name: sent_by_message_id
-- The newest of our messages among the Message-IDs $1, sent (or perhaps sent: `unknown`)
-- from sender $2 (NULL: any sender) at or after $3, with its lead.
SELECT d.lead_id, d.step, d.message_id, l.email, l.status, l.current_step
FROM deliveries d JOIN leads l ON l.id = d.lead_id
WHERE d.message_id = ANY($1::text[]) AND d.status IN ('sent', 'unknown')
  AND ($2::bigint IS NULL OR d.sender_id = $2)
  AND coalesce(d.sent_at, d.claimed_at, '-infinity') >= $3::timestamptz
ORDER BY d.sent_at DESC NULLS LAST
LIMIT 1

-- name: mailed
-- Which of the addresses $1 (lower case) we sent to from sender $2 (NULL: any sender) at or
-- after $3: for each, the lead we last wrote to.
SELECT DISTINCT ON (lower(l.email)) lower(l.email) AS email, l.id, l.current_step,
       d.step AS sent_step
FROM leads l JOIN deliveries d ON d.lead_id = l.id
WHERE lower(l.email) = ANY($1::text[]) AND d.status IN ('sent', 'unknown')
  AND ($2::bigint IS NULL OR d.sender_id = $2)
  AND coalesce(d.sent_at, d.claimed_at, '-infinity') >= $3::timestamptz
ORDER BY lower(l.email), d.sent_at DESC NULLS LAST

-- name: stop_sender_leads
-- The live leads of address $1 from sender $2 (NULL: every sender) stop, reason $3.
WITH stopped AS (
    UPDATE leads SET status = 'stopped', updated_at = $4::timestamptz
    WHERE lower(email) = lower($1) AND status IN ('active', 'queued', 'paused')
      AND ($2::bigint IS NULL OR sender_id = $2)
    RETURNING id, current_step
)
INSERT INTO events (lead_id, step, type, at, data)
SELECT id, current_step, 'stopped', $4::timestamptz, jsonb_build_object('reason', $3::text)
FROM stopped

-- name: soft_bounces
-- Soft bounces of address $1 (lower case) since $2.
SELECT count(*) FROM events e JOIN leads l ON l.id = e.lead_id
WHERE lower(l.email) = $1 AND e.type = 'soft_bounced' AND e.at >= $2::timestamptz

-- name: suppress
INSERT INTO suppressions (email, reason) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING

-- name: store
-- A classified message as the inbox read it (the raw one stays on the IMAP server); read
-- again after a lost position, the first row stands.
INSERT INTO inbound_messages (mailbox, uidvalidity, uid, sender_id, lead_id, step, kind,
                              intent, ooo_until, from_address, subject, message_id,
                              in_reply_to, body, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (mailbox, uidvalidity, uid) DO NOTHING

-- name: defer_lead
-- A waiting lead's next step no earlier than $2 (an out-of-office reply); its due time
-- before, or no row when it was not waiting or already due later.
WITH old AS (
    SELECT id, next_run_at FROM leads
    WHERE id = $1 AND status = 'active' AND next_run_at < $2::timestamptz
    FOR NO KEY UPDATE
)
UPDATE leads l SET next_run_at = $2::timestamptz, updated_at = $3::timestamptz
FROM old WHERE l.id = old.id
RETURNING old.next_run_at AS previous
