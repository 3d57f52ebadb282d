-- Single sign-on: people who sign in through an identity provider (OpenID Connect, or a proxy
-- that signed them in) are users too, known by the provider's issuer and subject; their roles
-- are recomputed from their groups at every sign-in. Local users keep source 'local'.

ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';  -- local, oidc, proxy
ALTER TABLE users ADD COLUMN issuer TEXT;                           -- the provider (NULL: local)
ALTER TABLE users ADD COLUMN subject TEXT;                          -- its stable id for the person
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '';       -- newline-separated, last sign-in
CREATE UNIQUE INDEX users_identity ON users (issuer, subject);

-- How each login was made: password, oidc or proxy (sign-out goes to the provider for oidc).
ALTER TABLE logins ADD COLUMN method TEXT NOT NULL DEFAULT 'password';

-- The state of every OpenID Connect sign-in that came back, so that a callback is taken once.
CREATE TABLE sso_flows (
    state   TEXT PRIMARY KEY,
    used_at BIGINT NOT NULL
);
