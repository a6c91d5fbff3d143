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
