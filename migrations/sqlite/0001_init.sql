-- The whole schema of the SQLite store. Times are unix milliseconds (UTC);
-- JSON is stored as TEXT; IDs are hyphenated lower-case UUIDs, so text order
-- is creation order for UUIDv7. Tables are STRICT so a wrong type is an error,
-- not a silent conversion.

-- One accepted event each.
CREATE TABLE jobs (
    id              TEXT    NOT NULL PRIMARY KEY,
    -- Queue position: arrival order, renewed when a finished job is re-queued.
    seq             INTEGER NOT NULL UNIQUE,
    tenant          TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    -- JSON array of ordering keys; kept on the row (not only in job_keys) so
    -- finished jobs can still be found by reference.
    keys            TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'skipped', 'failed', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    retry_since     INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    outcome         TEXT,
    idempotency_key TEXT,
    entity          TEXT    NOT NULL,
    body_hash       TEXT    NOT NULL
) STRICT;

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
    job_id TEXT    NOT NULL REFERENCES jobs (id),
    tenant TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (job_id, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX job_keys_key ON job_keys (tenant, key, seq);

-- Idempotency-Key (or event_id) → the job it admitted.
CREATE TABLE idempotency (
    tenant     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) STRICT, WITHOUT ROWID;

-- The newest job of each entity, for SPEC §2's "same body as the newest event" rule.
CREATE TABLE entity_heads (
    tenant    TEXT NOT NULL,
    entity    TEXT NOT NULL,
    job_id    TEXT NOT NULL REFERENCES jobs (id),
    body_hash TEXT NOT NULL,
    PRIMARY KEY (tenant, entity)
) STRICT, WITHOUT ROWID;

-- Append-only attempt history.
CREATE TABLE attempts (
    job_id      TEXT    NOT NULL REFERENCES jobs (id),
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    calls       TEXT    NOT NULL DEFAULT '[]',
    error       TEXT,
    result      TEXT,
    PRIMARY KEY (job_id, number)
) STRICT, WITHOUT ROWID;

-- Cache of accessplanit → Moodle IDs.
CREATE TABLE links (
    tenant     TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('course', 'template', 'user')),
    apit_id    TEXT    NOT NULL,
    moodle_id  INTEGER NOT NULL,
    last_sent  TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, apit_id)
) STRICT, WITHOUT ROWID;

-- Enrolments this service made.
CREATE TABLE enrolments (
    tenant           TEXT    NOT NULL,
    booking_id       TEXT    NOT NULL,
    moodle_course_id INTEGER NOT NULL,
    moodle_user_id   INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('active', 'suspended', 'unenrolled')),
    last_score       TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, booking_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX enrolments_state ON enrolments (tenant, state);

-- The write-back outbox. No foreign key on job_id: a write-back may come from
-- work that is not a stored job, and the outbox must never refuse one.
CREATE TABLE writebacks (
    id              TEXT    NOT NULL PRIMARY KEY,
    -- Insertion order: "newest" for de-duplication, and delivery order.
    seq             INTEGER NOT NULL UNIQUE,
    job_id          TEXT,
    tenant          TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    apit_id         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    payload_hash    TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'delivered', 'superseded', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    retry_since     INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX writebacks_entity ON writebacks (tenant, entity, apit_id, seq);
CREATE INDEX writebacks_claim ON writebacks (seq) WHERE status = 'pending';
CREATE INDEX writebacks_job ON writebacks (job_id, seq);
