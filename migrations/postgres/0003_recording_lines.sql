-- Search inside recordings: what each session printed, escape sequences removed, one row per
-- line with the moment it began (milliseconds from the start of the recording). Written in
-- batches by the gateway as the session runs (server/src/gateway/search.rs).

CREATE TABLE recording_lines (
    session_id TEXT   NOT NULL REFERENCES sessions (id),
    seq        BIGINT NOT NULL,                -- 0, 1, 2, … within the session
    offset_ms  BIGINT NOT NULL,
    line       TEXT   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
