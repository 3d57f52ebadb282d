-- Several accounts: the account ([[aws.accounts]]'s name) each session was started in, so that
-- a session left live by a stopped gateway is terminated with that account's clients. Empty:
-- the gateway's own account (no accounts configured, and every session from before).

ALTER TABLE sessions ADD COLUMN account TEXT NOT NULL DEFAULT '';
