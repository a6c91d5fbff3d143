-- The inbox daemon (inbox/): what it has read of each mailbox. A mailbox is a sender's IMAP
-- inbox ('sender:<id>') or the bounce inbox ('bounce'). UIDVALIDITY and the last UID acted
-- on are written in the transaction that acts on the message, so each message is acted on
-- once, whatever stops the daemon when.
CREATE TABLE inbox_mailboxes (
    mailbox     text        PRIMARY KEY,
    uidvalidity bigint      NOT NULL,
    last_uid    bigint      NOT NULL DEFAULT 0,
    checked_at  timestamptz NOT NULL DEFAULT now()
);

-- Finding the lead a reply or a bounce is about, by the Message-ID it refers to.
CREATE INDEX deliveries_message_id ON deliveries (message_id);
