-- Follow-ups before first touches, pacing forecasts, and the deployment-wide rate.

-- The scheduler claims due follow-ups before due first touches: one index for each, so
-- either scan touches due leads only ("first touch" = nothing sent yet: last_sent_at NULL).
DROP INDEX leads_due;
CREATE INDEX leads_due_followup ON leads (next_run_at)
    WHERE status = 'active' AND last_sent_at IS NOT NULL;
CREATE INDEX leads_due_first ON leads (next_run_at)
    WHERE status = 'active' AND last_sent_at IS NULL;

-- Messages in flight per sender: they take the sender's next slots before anything new.
CREATE INDEX leads_queued_sender ON leads (sender_id) WHERE status = 'queued';

-- GLOBAL_RATE_PER_SECOND: the next free hand-off slot of the whole deployment (one row).
CREATE TABLE global_pace (
    id      boolean     PRIMARY KEY DEFAULT true CHECK (id),
    next_at timestamptz NOT NULL
);
