-- The second-factor lock; see the PostgreSQL twin for the design.

CREATE TABLE second_factor_locks (
    user_id         BLOB    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures        INTEGER NOT NULL CHECK (failures >= 0),
    last_failure_at TEXT    NOT NULL CHECK (last_failure_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    locked_until    TEXT    CHECK (locked_until GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    version         INTEGER NOT NULL DEFAULT 0
) STRICT;
