-- upspool's metadata. Ids are lowercase hyphenated UUID text (job ids excepted), timestamps
-- are INTEGER nanoseconds since the Unix epoch (UTC), booleans are 0/1. STRICT tables so that
-- a codec bug fails loudly instead of storing the wrong type.

CREATE TABLE printers (
    id            TEXT    NOT NULL PRIMARY KEY,
    display_name  TEXT    NOT NULL,
    manufacturer  TEXT,
    model         TEXT,
    created       INTEGER NOT NULL
) STRICT;

CREATE TABLE shares (
    id               TEXT    NOT NULL PRIMARY KEY,
    display_name     TEXT    NOT NULL,
    printer_id       TEXT    NOT NULL REFERENCES printers(id) ON DELETE CASCADE,
    allow_all_users  INTEGER NOT NULL,
    created          INTEGER NOT NULL
) STRICT;
CREATE INDEX shares_printer ON shares(printer_id);

-- AUTOINCREMENT: job ids are never reused, even after the newest jobs are deleted.
-- share_id has no foreign key: jobs outlive the share they were created through.
CREATE TABLE jobs (
    id               INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    printer_id       TEXT    NOT NULL REFERENCES printers(id) ON DELETE CASCADE,
    share_id         TEXT,
    created          INTEGER NOT NULL,
    created_by_id    TEXT    NOT NULL,
    created_by_name  TEXT,
    created_by_upn   TEXT,
    state            TEXT    NOT NULL,
    details          TEXT    NOT NULL,   -- JSON array of printJobStateDetail wire names
    is_acquired      INTEGER NOT NULL,
    configuration    TEXT    NOT NULL,   -- JSON printJobConfiguration
    display_name     TEXT,
    is_fetchable     INTEGER NOT NULL,
    error_code       INTEGER NOT NULL,
    acknowledged     INTEGER,
    completed        INTEGER
) STRICT;
CREATE INDEX jobs_printer_created ON jobs(printer_id, created, id);
CREATE INDEX jobs_state ON jobs(state);

CREATE TABLE documents (
    id            TEXT    NOT NULL PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    display_name  TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    uploaded      INTEGER,
    downloaded    INTEGER,
    blob          TEXT
) STRICT;
CREATE INDEX documents_job ON documents(job_id);

-- At most one session per document: replacing one deletes the other in the same transaction.
CREATE TABLE upload_sessions (
    id             TEXT    NOT NULL PRIMARY KEY,
    document_id    TEXT    NOT NULL UNIQUE REFERENCES documents(id) ON DELETE CASCADE,
    job_id         INTEGER NOT NULL,
    document_name  TEXT    NOT NULL,
    content_type   TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    token_hash     BLOB    NOT NULL,
    blob           TEXT    NOT NULL,
    created        INTEGER NOT NULL,
    expires        INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('active', 'completed')),
    completed_at   INTEGER,
    grace_until    INTEGER,
    CHECK ((state = 'active') = (completed_at IS NULL AND grace_until IS NULL))
) STRICT;
CREATE INDEX upload_sessions_expires ON upload_sessions(expires) WHERE state = 'active';
CREATE INDEX upload_sessions_grace ON upload_sessions(grace_until) WHERE state = 'completed';

-- Insert-only: one row per committed segment; readers merge them into a RangeSet.
CREATE TABLE session_ranges (
    session_id  TEXT    NOT NULL REFERENCES upload_sessions(id) ON DELETE CASCADE,
    start       INTEGER NOT NULL,
    end_incl    INTEGER NOT NULL,
    CHECK (start <= end_incl)
) STRICT;
CREATE INDEX session_ranges_session ON session_ranges(session_id);

CREATE TABLE download_grants (
    id           TEXT    NOT NULL PRIMARY KEY,
    document_id  TEXT    NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    token_hash   BLOB    NOT NULL,
    expires      INTEGER NOT NULL
) STRICT;
CREATE INDEX download_grants_document ON download_grants(document_id);
CREATE INDEX download_grants_expires ON download_grants(expires);
