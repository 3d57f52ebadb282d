-- Several gateways on one database. Each registers itself: its id (server.gateway_id), where
-- the others reach it (server.internal_url), a random id of the running process (so that a
-- process knows its own row), its state and a heartbeat. A live row whose heartbeat stopped
-- belongs to a dead process.
CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    internal_url TEXT NOT NULL,
    instance TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- A live session being handed from a stopping gateway to another: its data channel's state,
-- terminal model and output ring, sealed with a key derived from cluster.secret. The row
-- lives from the freeze until the receiver has taken it over.
CREATE TABLE handovers (
    session_id TEXT PRIMARY KEY,
    from_gateway TEXT NOT NULL,
    to_gateway TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
