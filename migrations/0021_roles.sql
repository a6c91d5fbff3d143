-- Roles for API tokens: viewer (reads), operator (lead and sequence actions, imports, the
-- inbox), admin (senders, accounts, tokens, webhooks, erasure, the audit trail). Tokens
-- made before roles could do everything and keep doing so (admin); new ones are operators
-- unless created with another role.
ALTER TABLE api_tokens
    ADD COLUMN role text NOT NULL DEFAULT 'admin'
        CONSTRAINT api_tokens_role CHECK (role IN ('viewer', 'operator', 'admin'));
ALTER TABLE api_tokens ALTER COLUMN role SET DEFAULT 'operator';
