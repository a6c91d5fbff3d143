-- A sender's backoff at one mailbox provider after it said "try later / rate limited"
-- (core/providers.py): the workers hold that pair's messages until `until`; `ops status`
-- and the console show it. A delivery to the provider ends it.
CREATE TABLE provider_backoffs (
    sender_id  bigint      NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    provider   text        NOT NULL
        CHECK (provider IN ('google', 'microsoft', 'yahoo', 'apple', 'other')),
    until      timestamptz NOT NULL,
    reason     text        NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (sender_id, provider)
);
