-- Erasing a person on request (ops/people.py): one transaction, every table that can hold
-- what they are. $1 is the address, lower case, and $2 its leads' ids (where a query takes
-- only the ids, they are $1).

-- name: leads
SELECT id FROM leads WHERE lower(email) = $1 FOR UPDATE

-- name: events
-- Their events keep ids and types only; an event of no lead that names the address (what
-- the inbox heard, an operator's change) loses its data too.
UPDATE events SET data = '{}'::jsonb
WHERE (lead_id = ANY($2::bigint[]) AND data <> '{}'::jsonb)
   OR (lead_id IS NULL AND strpos(lower(data::text), $1) > 0)

-- name: deliveries
-- A subject can carry a name, an SMTP answer the address.
UPDATE deliveries SET subject = NULL, error = NULL WHERE lead_id = ANY($1::bigint[])

-- name: outbox
DELETE FROM outbox WHERE lead_id = ANY($1::bigint[])

-- name: inbound
DELETE FROM inbound_messages
WHERE lead_id = ANY($2::bigint[]) OR lower(from_address) = $1

-- name: webhooks
-- Deliveries not yet made keep their type and ids, without the address or the details.
UPDATE webhook_deliveries
SET payload = jsonb_set(payload, '{data}', (payload->'data') - 'email' - 'details')
WHERE (payload->'data'->>'lead_id')::bigint = ANY($2::bigint[])
   OR strpos(lower(payload::text), $1) > 0

-- name: rejects
-- A rejected import row that names them leaves the download kept for its importer.
UPDATE import_rejects SET body = array_to_string(ARRAY(
    SELECT line FROM unnest(string_to_array(body, E'\n')) AS line
    WHERE strpos(lower(line), $1) = 0), E'\n')
WHERE strpos(lower(body), $1) > 0

-- name: answers
-- Their leads ($1; answers sent to their replies, one-off leads, among them): no name, no
-- attributes, an address that is no one's.
UPDATE leads SET email = 'erased-' || id || '@erased.invalid', first_name = NULL,
    last_name = NULL, company = NULL, timezone = NULL, attributes = '{}'::jsonb,
    one_off_key = NULL, reply_references = NULL, updated_at = $2::timestamptz
WHERE id = ANY($1::bigint[])

-- name: suppress
-- Suppressed by the address's SHA-256 only: a lead with it, imported again, never sends.
WITH old AS (
    DELETE FROM suppressions WHERE email = $1 RETURNING reason
)
INSERT INTO suppressions (email, reason)
VALUES ('sha256:' || encode(sha256(convert_to($1, 'UTF8')), 'hex'),
        coalesce((SELECT reason FROM old), 'erased'))
ON CONFLICT (email) DO NOTHING

-- name: audit
INSERT INTO audit_log (at, actor, door, action, target, before, after)
VALUES ($1, $2, $3, 'erased', $4, $5, NULL)
