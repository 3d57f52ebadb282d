-- Which way files may move through a session: the policy's decision at the start (a role's
-- `file_transfer`; what any of the roles that allowed the session allows): 'none', 'download',
-- 'upload' or 'both'. Sessions from before it move no files.
ALTER TABLE sessions ADD COLUMN file_transfer TEXT NOT NULL DEFAULT 'none';
