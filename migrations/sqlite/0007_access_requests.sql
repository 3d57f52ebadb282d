-- Just-in-time access: a person asks for a node, for a reason and a time; approvers decide.
-- An approved request is a grant until expires_at (while pending, expires_at is when it
-- lapses undecided). approvers is the JSON array of the role names that may decide it and
-- min_approvals how many different people must, both as the policy said when it was asked.
CREATE TABLE access_requests (
    id               TEXT    PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users (id),
    target           TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    duration_seconds INTEGER NOT NULL,
    break_glass      INTEGER NOT NULL DEFAULT 0,  -- 0 or 1
    approvers        TEXT    NOT NULL,
    min_approvals    INTEGER NOT NULL,
    state            TEXT    NOT NULL,       -- pending, approved, denied, expired, revoked
    created_at       INTEGER NOT NULL,
    decided_at       INTEGER,
    expires_at       INTEGER NOT NULL,
    ended_by         TEXT,                   -- who revoked it
    ended_at         INTEGER
);
CREATE INDEX access_requests_user ON access_requests (user_id, target, state);
CREATE INDEX access_requests_due ON access_requests (state, expires_at);

-- Each approval or denial: one per person and request.
CREATE TABLE access_decisions (
    request_id TEXT    NOT NULL REFERENCES access_requests (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    user_name  TEXT    NOT NULL,
    approve    INTEGER NOT NULL,                  -- 1 approve, 0 deny
    comment    TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (request_id, user_id)
);

-- The grant a session was started under, if any (revoking it ends the session).
ALTER TABLE sessions ADD COLUMN request_id TEXT;
