-- Security audit trail: one row per security event (registration, logins and failed logins,
-- revocations, logouts, compromised sessions; later password resets, MFA, API keys, ...).
--
-- Open by design: `kind` is free text (a lowercase token, checked by the application) and
-- event-specific facts go in `details` (a JSON object), so a new kind of event needs no
-- migration. Rows are written in the same transaction as the change they record (see
-- src/store/audit.rs). Conventions as in the initial migration: 16-byte BLOB ids, fixed-width
-- TEXT timestamps.
--
-- `user_id` is NULL when the event concerns no known account (a failed login for an unknown
-- email: the email itself is never stored). `session_id` has no foreign key on purpose: the
-- trail outlives purged sessions. Deleting an account deletes its trail.

CREATE TABLE audit_events (
    id         BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    user_id    BLOB REFERENCES users (id) ON DELETE CASCADE CHECK (user_id IS NULL OR length(user_id) = 16),
    session_id BLOB CHECK (session_id IS NULL OR length(session_id) = 16),
    kind       TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64 AND kind NOT GLOB '*[^a-z0-9_.]*'),
    at         TEXT NOT NULL CHECK (at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    ip         TEXT,
    user_agent TEXT,
    details    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details) AND json_type(details) = 'object')
) STRICT;

-- A user's own events, newest first (ids are UUIDv7: id order is time order).
CREATE INDEX audit_events_user_id_id_idx ON audit_events (user_id, id) WHERE user_id IS NOT NULL;
-- Time-range queries and a later retention job.
CREATE INDEX audit_events_at_idx ON audit_events (at);
