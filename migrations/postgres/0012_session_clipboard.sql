-- Whether a session's terminal may copy and paste: the policy's decision at the start (a role's
-- `clipboard`; the most permissive of the roles that allowed the session), 0 or 1. Sessions
-- from before it keep the old behaviour (allowed).
ALTER TABLE sessions ADD COLUMN clipboard BIGINT NOT NULL DEFAULT 1;
