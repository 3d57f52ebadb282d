-- Search inside recordings without reading every line: an FTS5 index of the lines' trigrams
-- (`recording_lines_fts`), used by `store::search::find` for queries of 3 characters or more
-- (a trigram needs 3); shorter queries still read every line. The index only narrows the
-- candidates: each is checked with the same `LIKE` as the scan, so the answer is the scan's.
--
-- The index refers to lines by rowid. A table without an INTEGER PRIMARY KEY may have its
-- rowids renumbered by VACUUM, so `recording_lines` is rebuilt with one (`id`), keeping
-- (session_id, seq) unique; the rows are copied and the index backfilled here.

CREATE TABLE recording_lines_new (
    id         INTEGER PRIMARY KEY,            -- the index's rowid; stable across VACUUM
    session_id TEXT    NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL,               -- 0, 1, 2, … within the session
    offset_ms  INTEGER NOT NULL,
    line       TEXT    NOT NULL,
    UNIQUE (session_id, seq)
);
INSERT INTO recording_lines_new (session_id, seq, offset_ms, line)
    SELECT session_id, seq, offset_ms, line FROM recording_lines ORDER BY session_id, seq;
DROP TABLE recording_lines;
ALTER TABLE recording_lines_new RENAME TO recording_lines;

-- External content: the text stays in `recording_lines` only; the index holds the trigrams.
-- `trigram` folds case (Unicode) by default; `find` rechecks with the scan's `LIKE`.
CREATE VIRTUAL TABLE recording_lines_fts USING fts5 (
    line,
    content = 'recording_lines',
    content_rowid = 'id',
    tokenize = 'trigram'
);
INSERT INTO recording_lines_fts (recording_lines_fts) VALUES ('rebuild');

-- Kept in step in the statement that writes the line.
CREATE TRIGGER recording_lines_fts_insert AFTER INSERT ON recording_lines BEGIN
    INSERT INTO recording_lines_fts (rowid, line) VALUES (new.id, new.line);
END;
CREATE TRIGGER recording_lines_fts_delete AFTER DELETE ON recording_lines BEGIN
    INSERT INTO recording_lines_fts (recording_lines_fts, rowid, line)
        VALUES ('delete', old.id, old.line);
END;
CREATE TRIGGER recording_lines_fts_update AFTER UPDATE ON recording_lines BEGIN
    INSERT INTO recording_lines_fts (recording_lines_fts, rowid, line)
        VALUES ('delete', old.id, old.line);
    INSERT INTO recording_lines_fts (rowid, line) VALUES (new.id, new.line);
END;
