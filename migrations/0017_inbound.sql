-- What the inbox read (docs/architecture.md §7): one row per classified message, the raw
-- message staying on the IMAP server (mailbox, UIDVALIDITY, UID). A reply keeps its own
-- text (above the quote) for the console's inbox; handled_* say a person dealt with it.
CREATE TABLE inbound_messages (
    id           bigserial   PRIMARY KEY,
    mailbox      text        NOT NULL,
    uidvalidity  bigint      NOT NULL,
    uid          bigint      NOT NULL,
    sender_id    bigint      REFERENCES senders (id) ON DELETE SET NULL,
    lead_id      bigint      REFERENCES leads (id) ON DELETE CASCADE,
    step         integer,
    kind         text        NOT NULL
        CHECK (kind IN ('reply', 'auto_reply', 'bounce', 'complaint', 'notice')),
    intent       text CHECK (intent IN ('interested', 'not_interested', 'out_of_office',
                                        'unsubscribe', 'other')),
    ooo_until    date,
    from_address text        NOT NULL DEFAULT '',
    subject      text        NOT NULL DEFAULT '',
    message_id   text,
    in_reply_to  text,
    body         text        NOT NULL DEFAULT '',
    received_at  timestamptz NOT NULL,
    handled_at   timestamptz,
    handled_by   text,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX inbound_replies ON inbound_messages (received_at DESC, id DESC)
    WHERE kind IN ('reply', 'auto_reply');
CREATE INDEX inbound_by_lead ON inbound_messages (lead_id, received_at);

-- An operator's answer to a reply goes out as a one-off lead threaded under the reply:
-- the Message-IDs it refers to (References; the last is In-Reply-To), set by the use case.
ALTER TABLE leads ADD COLUMN reply_references text[];

ALTER TABLE events DROP CONSTRAINT events_type_registered;
ALTER TABLE events ADD CONSTRAINT events_type_registered CHECK (type IN (
    'queued', 'sent', 'send_ambiguous', 'scheduled', 'deferred', 'retry_scheduled', 'rescued',
    'completed', 'stopped', 'failed', 'message_rejected', 'reply_received', 'reply_unmatched',
    'auto_replied', 'soft_bounced', 'complained', 'inbound_ignored', 'inbound_unreadable',
    'retried', 'paused', 'resumed',
    'suppression_lifted', 'sequence_paused', 'sequence_resumed', 'sender_changed',
    'smtp_circuit_open', 'smtp_circuit_closed', 'sender_paused', 'sender_resumed',
    'rescheduled', 'operator_replied', 'reply_handled'
)) NOT VALID;
