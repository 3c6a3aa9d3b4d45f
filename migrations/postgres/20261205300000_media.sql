-- Logo and avatar uploads (issue #12): images stored in the database, content-addressed.
--
-- One row per distinct image, keyed by the SHA-256 of its bytes as served: every upload is
-- decoded and re-encoded first (src/media/transcode.rs), so these bytes are pixels only — no
-- metadata, nothing appended. Two uploads of the same picture share a row. Users and
-- applications point at rows with plain foreign keys (no cascade): a row something points at
-- cannot be deleted. Rows nothing points at are deleted by the purge task once `touched_at`
-- (set by every upload that stores or reuses the row, in the transaction that points at it)
-- is older than its grace period.
CREATE TABLE media (
    sha256     bytea       PRIMARY KEY CHECK (octet_length(sha256) = 32),
    format     text        NOT NULL CHECK (format IN ('png', 'jpeg', 'webp')),
    width      integer     NOT NULL CHECK (width > 0),
    height     integer     NOT NULL CHECK (height > 0),
    data       bytea       NOT NULL,
    touched_at timestamptz NOT NULL
);
-- Compressed images do not compress again: store them out of line without trying.
ALTER TABLE media ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX media_touched_at_idx ON media (touched_at);

ALTER TABLE users ADD COLUMN avatar_sha256 bytea REFERENCES media (sha256);
ALTER TABLE oauth_applications ADD COLUMN logo_sha256 bytea REFERENCES media (sha256);
-- The purge's "does anything point at it" and the foreign keys' checks on delete.
CREATE INDEX users_avatar_sha256_idx ON users (avatar_sha256) WHERE avatar_sha256 IS NOT NULL;
CREATE INDEX oauth_applications_logo_sha256_idx ON oauth_applications (logo_sha256)
    WHERE logo_sha256 IS NOT NULL;
