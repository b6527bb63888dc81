-- Standard Webhooks deliveries seen, per tenant, kept for the signature
-- tolerance window: a delivery replayed inside it (same webhook-id) answers
-- the job it was first admitted as instead of running again. No foreign key
-- to jobs: the id is remembered just before its job is admitted, and a row
-- whose job never came to exist counts as not seen.
CREATE TABLE deliveries (
    tenant     text        NOT NULL,
    webhook_id text        NOT NULL,
    job_id     uuid        NOT NULL,
    -- After this a replay is refused by the timestamp check anyway.
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, webhook_id)
);

-- Forgetting expired deliveries walks only those.
CREATE INDEX deliveries_expiry ON deliveries (tenant, expires_at);
