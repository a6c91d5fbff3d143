-- The operator surface: API tokens, and the daemon replicas that report their progress.

-- Bearer tokens for the REST API: only a SHA-256 of each is kept (`python -m ops token
-- create NAME` prints the token once). A revoked token stays listed.
CREATE TABLE api_tokens (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL CONSTRAINT "token name must not be empty" CHECK (btrim(name) <> ''),
    token_sha256 bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX "one live token per name" ON api_tokens (name) WHERE revoked_at IS NULL;

-- Each daemon process's heartbeat: what it is, where, and when its loop last made progress.
CREATE TABLE daemon_replicas (
    service       text        NOT NULL,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    version       text        NOT NULL,
    started_at    timestamptz NOT NULL,
    last_progress timestamptz NOT NULL,
    seen_at       timestamptz NOT NULL,
    PRIMARY KEY (service, host, pid)
);

-- One-off emails (POST /api/v1/emails): each is a lead of the deployment's one-off sequence,
-- whose one step sends the lead's own subject and text. A one-off lead carries the request's
-- idempotency key (a random one when the request gave none): the same key again is the
-- same email, and two emails to one address are two leads.
ALTER TABLE sequences ADD COLUMN kind text NOT NULL DEFAULT 'sequence'
    CONSTRAINT "sequence kind is sequence or one_off" CHECK (kind IN ('sequence', 'one_off'));
CREATE UNIQUE INDEX "one one-off sequence" ON sequences (kind) WHERE kind = 'one_off';
ALTER TABLE leads ADD COLUMN one_off_key text;
CREATE UNIQUE INDEX "one email per idempotency key" ON leads (one_off_key)
    WHERE one_off_key IS NOT NULL;
DROP INDEX "one lead per address and sequence";
CREATE UNIQUE INDEX "one lead per address and sequence" ON leads (sequence_id, lower(email))
    WHERE duplicate_of IS NULL AND one_off_key IS NULL;
