-- Console sessions, kept server-side: the cookie carries a random token, this table its
-- SHA-256 and who it is for. Signing out ends the row; so does leaving CONSOLE_ALLOWED (at
-- the next request) and an operator ending it from the console.
CREATE TABLE console_sessions (
    id         bytea       PRIMARY KEY,
    email      text        NOT NULL,
    created_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    ended_why  text
);
CREATE INDEX console_sessions_live ON console_sessions (expires_at) WHERE ended_at IS NULL;
