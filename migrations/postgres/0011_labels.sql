-- Labels on sessions (tags and a note), added by the owner or an auditor after the fact and
-- found by search. `session_labels` holds the note and who last changed the labels;
-- `session_tags` one row per tag (lower case), for exact lookups by tag.
CREATE TABLE session_labels (
    session_id TEXT    PRIMARY KEY REFERENCES sessions (id),
    note       TEXT    NOT NULL,
    updated_by BIGINT  NOT NULL REFERENCES users (id),
    updated_at BIGINT  NOT NULL        -- ms since the epoch
);
CREATE TABLE session_tags (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    tag        TEXT NOT NULL,
    PRIMARY KEY (session_id, tag)
);
CREATE INDEX session_tags_by_tag ON session_tags (tag);
