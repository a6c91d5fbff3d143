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

-- name: lead_by_message_id
-- The lead one of our messages went to: the newest of the Message-IDs given that is ours.
SELECT l.id, l.email, l.current_step, l.status, d.step
FROM deliveries d JOIN leads l ON l.id = d.lead_id
WHERE d.message_id = ANY($1::text[])
ORDER BY d.sent_at DESC NULLS LAST
LIMIT 1

-- name: lead_by_pair
-- Failing a Message-ID: the lead of that address that this sender wrote to lately.
SELECT l.id, l.email, l.current_step, l.status, d.step
FROM leads l JOIN deliveries d ON d.lead_id = l.id
WHERE lower(l.email) = lower($1) AND l.sender_id = $2
  AND d.sent_at > $3::timestamptz - interval '60 days'
ORDER BY d.sent_at DESC
LIMIT 1

-- name: suppress
INSERT INTO suppressions (email, reason) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING
