-- Logo and avatar uploads (issue #12): images stored in the database, content-addressed.
-- See the PostgreSQL twin for the design; conventions as in the initial migration (32-byte BLOB
-- hashes, fixed-width UTC TEXT timestamps, STRICT).
CREATE TABLE media (
    sha256     BLOB    NOT NULL PRIMARY KEY CHECK (length(sha256) = 32),
    format     TEXT    NOT NULL CHECK (format IN ('png', 'jpeg', 'webp')),
    width      INTEGER NOT NULL CHECK (width > 0),
    height     INTEGER NOT NULL CHECK (height > 0),
    data       BLOB    NOT NULL,
    touched_at TEXT    NOT NULL CHECK (touched_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
) STRICT;
CREATE INDEX media_touched_at_idx ON media (touched_at);

ALTER TABLE users ADD COLUMN avatar_sha256 BLOB REFERENCES media (sha256);
ALTER TABLE oauth_applications ADD COLUMN logo_sha256 BLOB REFERENCES media (sha256);
CREATE INDEX users_avatar_sha256_idx ON users (avatar_sha256) WHERE avatar_sha256 IS NOT NULL;
CREATE INDEX oauth_applications_logo_sha256_idx ON oauth_applications (logo_sha256)
    WHERE logo_sha256 IS NOT NULL;
