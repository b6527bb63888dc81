-- Retention (src/store/retention.rs) deletes finished jobs. Deleting a job
-- makes the database check that no idempotency key and no entity head still
-- points at it (their foreign keys); without these indexes each check reads
-- the whole table, so a delete batch would hold the writer for a long time.
CREATE INDEX idempotency_job ON idempotency (job_id);
CREATE INDEX entity_heads_job ON entity_heads (job_id);
