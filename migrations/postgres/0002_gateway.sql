-- Sign-ins carry their CSRF token; failed sign-ins are counted from the audit log per user and
-- per client address, and sessions are listed per state.

ALTER TABLE logins ADD COLUMN csrf_token TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_events_type_actor ON audit_events (type, actor, at);
CREATE INDEX audit_events_type_client ON audit_events (type, client_addr, at);
CREATE INDEX sessions_state ON sessions (state, started_at);
