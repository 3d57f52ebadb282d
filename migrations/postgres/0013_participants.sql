-- People a session's owner invited into it (sharing, issue 19): each may attach to the live
-- session, typing along (mode 'write') or watching ('read'), until the owner revokes them
-- (the row is deleted) or the session ends. Kept here, not in a gateway's memory, so that
-- every gateway sharing the database honours an invitation and its revocation.
CREATE TABLE session_participants (
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    user_id    BIGINT  NOT NULL REFERENCES users (id),
    mode       TEXT    NOT NULL,           -- write | read
    invited_by BIGINT  NOT NULL REFERENCES users (id),
    invited_at BIGINT  NOT NULL,           -- ms since the epoch
    PRIMARY KEY (session_id, user_id)
);
CREATE INDEX session_participants_by_user ON session_participants (user_id);
