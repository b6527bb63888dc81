-- Claiming at scale: a queued job knows how many of its ordering keys an
-- earlier active job still holds (`blockers`), so a claim reads only jobs
-- with none, from a partial index, and never walks the blocked ones.
-- Admission counts a job's blockers; a job that becomes final takes one
-- blocker off the next active job of each of its keys.
ALTER TABLE jobs ADD COLUMN blockers INTEGER NOT NULL DEFAULT 0;

-- Recount the jobs already queued (a database upgraded with work in it).
UPDATE jobs SET blockers = (
    SELECT COUNT(*) FROM job_keys mine
    WHERE mine.job_id = jobs.id AND EXISTS (
        SELECT 1 FROM job_keys earlier
        WHERE earlier.tenant = mine.tenant AND earlier.key = mine.key
          AND earlier.seq < mine.seq))
WHERE status IN ('queued', 'running');

DROP INDEX jobs_claim;
-- Due, unblocked jobs per tenant, oldest due first: what a claim reads.
CREATE INDEX jobs_ready ON jobs (tenant, next_attempt_at, seq)
    WHERE status = 'queued' AND blockers = 0;
-- Running jobs per tenant by lease end: a claim also takes expired leases.
CREATE INDEX jobs_leased ON jobs (tenant, lease_until) WHERE status = 'running';
