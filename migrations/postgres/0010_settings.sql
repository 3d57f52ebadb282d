-- Each person's terminal settings (font size, theme, cursor, scrollback, bell, screen reader):
-- the JSON object they last saved, checked by identity::settings before it is stored. A person
-- without a row has the defaults.
CREATE TABLE user_settings (
    user_id    BIGINT  PRIMARY KEY REFERENCES users (id),
    settings   TEXT    NOT NULL,       -- a JSON object
    updated_at BIGINT  NOT NULL        -- ms since the epoch
);
