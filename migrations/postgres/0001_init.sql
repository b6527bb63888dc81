-- The whole schema of the PostgreSQL store: the same tables as SQLite, with
-- native types (uuid, timestamptz, jsonb). The store binds and reads times
-- at millisecond precision.

-- Queue positions. Assigned under a transaction-scoped advisory lock that is
-- held until commit, so seq order is also commit order (see postgres.rs).
CREATE SEQUENCE job_seq AS bigint;

-- One accepted event each.
CREATE TABLE jobs (
    id              uuid        NOT NULL PRIMARY KEY,
    seq             bigint      NOT NULL UNIQUE,
    tenant          text        NOT NULL,
    kind            text        NOT NULL,
    event           jsonb       NOT NULL,
    -- Ordering keys; kept on the row (not only in job_keys) so finished jobs
    -- can still be found by reference.
    keys            jsonb       NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'skipped', 'failed', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    next_attempt_at timestamptz,
    retry_since     timestamptz NOT NULL,
    lease_until     timestamptz,
    last_error      text,
    outcome         jsonb,
    idempotency_key text,
    entity          text        NOT NULL,
    body_hash       text        NOT NULL
);

-- Claiming walks the active jobs in seq order; finished history is not in this index.
CREATE INDEX jobs_claim ON jobs (seq) WHERE status IN ('queued', 'running');
-- Listing newest first, by tenant or by status.
CREATE INDEX jobs_tenant ON jobs (tenant, id);
CREATE INDEX jobs_status ON jobs (status, id);
-- Listing by tenant and status, newest first; and queue_stats (covering).
CREATE INDEX jobs_tenant_status ON jobs (tenant, status, id, created_at);

-- Ordering keys of ACTIVE (queued or running) jobs only, so "does an earlier
-- active job share a key?" is one index probe that does not grow with history.
-- Keys are per tenant: tenants have separate Moodles, so they never wait
-- for each other even when their accessplanit IDs coincide.
CREATE TABLE job_keys (
    job_id uuid   NOT NULL REFERENCES jobs (id),
    tenant text   NOT NULL,
    key    text   NOT NULL,
    seq    bigint NOT NULL,
    PRIMARY KEY (job_id, key)
);

CREATE INDEX job_keys_key ON job_keys (tenant, key, seq);

-- Idempotency-Key (or event_id) → the job it admitted.
CREATE TABLE idempotency (
    tenant     text        NOT NULL,
    key        text        NOT NULL,
    job_id     uuid        NOT NULL REFERENCES jobs (id),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, key)
);

-- The newest job of each entity, for SPEC §2's "same body as the newest event" rule.
CREATE TABLE entity_heads (
    tenant    text NOT NULL,
    entity    text NOT NULL,
    job_id    uuid NOT NULL REFERENCES jobs (id),
    body_hash text NOT NULL,
    PRIMARY KEY (tenant, entity)
);

-- Append-only attempt history.
CREATE TABLE attempts (
    job_id      uuid        NOT NULL REFERENCES jobs (id),
    number      integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    calls       jsonb       NOT NULL DEFAULT '[]',
    error       text,
    result      text,
    PRIMARY KEY (job_id, number)
);

-- Cache of accessplanit → Moodle IDs.
CREATE TABLE links (
    tenant     text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('course', 'template', 'user')),
    apit_id    text        NOT NULL,
    moodle_id  bigint      NOT NULL,
    last_sent  jsonb,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, kind, apit_id)
);

-- Enrolments this service made.
CREATE TABLE enrolments (
    tenant           text        NOT NULL,
    booking_id       text        NOT NULL,
    moodle_course_id bigint      NOT NULL,
    moodle_user_id   bigint      NOT NULL,
    state            text        NOT NULL CHECK (state IN ('active', 'suspended', 'unenrolled')),
    last_score       jsonb,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, booking_id)
);

CREATE INDEX enrolments_state ON enrolments (tenant, state);

-- The write-back outbox. No foreign key on job_id: a write-back may come from
-- work that is not a stored job, and the outbox must never refuse one.
CREATE TABLE writebacks (
    id              uuid        NOT NULL PRIMARY KEY,
    -- Insertion order: "newest" for de-duplication (inserts for one entity are
    -- serialised by an advisory lock), and delivery order.
    seq             bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    job_id          uuid,
    tenant          text        NOT NULL,
    entity          text        NOT NULL,
    apit_id         text        NOT NULL,
    payload         jsonb       NOT NULL,
    payload_hash    text        NOT NULL,
    status          text        NOT NULL
        CHECK (status IN ('pending', 'delivered', 'superseded', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    retry_since     timestamptz NOT NULL,
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    last_error      text
);

CREATE INDEX writebacks_entity ON writebacks (tenant, entity, apit_id, seq);
CREATE INDEX writebacks_claim ON writebacks (seq) WHERE status = 'pending';
CREATE INDEX writebacks_job ON writebacks (job_id, seq);
