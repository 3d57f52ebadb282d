-- Porthole's schema (SQLite). Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    roles         TEXT    NOT NULL,            -- comma-separated role names
    disabled      INTEGER NOT NULL DEFAULT 0,  -- 0 or 1 (the Any driver has no SQLite boolean)
    created_at    INTEGER NOT NULL
);

-- Every issued sign-in cookie, so logout and disabling a user take effect at once.
CREATE TABLE logins (
    id          TEXT    PRIMARY KEY,           -- the JWT id
    user_id     INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    client_addr TEXT    NOT NULL DEFAULT '',
    user_agent  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX logins_user ON logins (user_id);

CREATE TABLE sessions (
    id             TEXT    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    target         TEXT    NOT NULL,
    region         TEXT    NOT NULL,
    document       TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    ssm_session_id TEXT,
    state          TEXT    NOT NULL,            -- starting | active | ended | failed
    started_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT,
    bytes_out      INTEGER NOT NULL DEFAULT 0,
    bytes_in       INTEGER NOT NULL DEFAULT 0,
    owner_gateway  TEXT    NOT NULL,
    heartbeat_at   INTEGER NOT NULL
);
CREATE INDEX sessions_user_state ON sessions (user_id, state);

-- Append-only: the code has no UPDATE or DELETE for this table. Each row carries the hash of
-- its canonical content and the previous row's hash.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    target      TEXT,
    session_id  TEXT,
    reason      TEXT,
    detail      TEXT    NOT NULL DEFAULT '{}', -- JSON
    client_addr TEXT    NOT NULL DEFAULT '',
    user_agent  TEXT    NOT NULL DEFAULT '',
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
