-- The worker's record of finished sends as one call (advance_leads, finish_deliveries,
-- record_finished): one round trip and one transaction instead of six. The functions are
-- code and live in db/functions/deliveries.sql, applied after the migrations.
SELECT 1;
