-- Search inside recordings without reading every line: a GIN trigram index (pg_trgm) on the
-- lower-cased line, which the search's `LOWER(line) LIKE LOWER($3) ESCAPE '!'` uses as it is
-- (the same statement; only the plan changes). Built here over the existing rows.
--
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension (PostgreSQL 13+): a role
-- with CREATE on the database may create it without being a superuser. Where it cannot be
-- created (no CREATE privilege, or the contrib package missing), the migration still
-- succeeds with a warning and search keeps scanning; after an administrator runs
-- `CREATE EXTENSION pg_trgm`, create the index by hand with the statement below (see
-- docs/performance.md, "Recording search").

DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
    RAISE WARNING 'pg_trgm could not be created (%): recording search will scan every line', SQLERRM;
END
$$;

DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        -- The operator class named with its schema: the extension may live outside the
        -- search path.
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS recording_lines_line_trgm ON recording_lines '
            'USING gin (LOWER(line) %I.gin_trgm_ops)',
            trgm_schema
        );
    END IF;
END
$$;
