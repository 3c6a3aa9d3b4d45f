-- Every mailed code, real or decoy, is filed under its subject:
-- HMAC-SHA256(code key, purpose ‖ 0x01 ‖ normalised email), computed by sessiond with a key
-- that is never in the database (so the column does not give the addresses away). The resend
-- cooldown and the per-address daily cap read the newest rows of a subject, so an address with
-- an account and one without go through the same query and get the same answers.
-- Rows written before this migration have no subject; they expire within SESSIOND_CODE_TTL.
ALTER TABLE verification_codes ADD COLUMN subject BYTEA;
ALTER TABLE verification_codes ADD CONSTRAINT verification_codes_subject_check
    CHECK (subject IS NULL OR octet_length(subject) = 32);

-- The newest codes of an address for a purpose (cooldown, daily cap, superseding).
CREATE INDEX verification_codes_subject_purpose_idx
    ON verification_codes (subject, purpose, created_at) WHERE subject IS NOT NULL;
