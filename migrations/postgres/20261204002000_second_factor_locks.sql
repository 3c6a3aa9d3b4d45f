-- The second-factor lock: wrong TOTP or recovery codes per account, whatever challenge or IP
-- they came through (README "Second-factor lock"). It lives in the database, not in the rate
-- limiter, so it holds across instances and restarts. `version` makes every update a
-- compare-and-set: concurrent failures are each counted once.
CREATE TABLE second_factor_locks (
    user_id         uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures        integer     NOT NULL,
    last_failure_at timestamptz NOT NULL,
    locked_until    timestamptz,
    version         bigint      NOT NULL DEFAULT 0,
    CONSTRAINT second_factor_locks_failures_check CHECK (failures >= 0)
);
