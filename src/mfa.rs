//! TOTP multi-factor authentication (RFC 6238): secrets sealed at rest, code checks, recovery
//! codes. No HTTP and no SQL here: `http::routes::mfa` drives the flows and `store::mfa` keeps
//! the rows.
//!
//! ## Keys
//! Two 256-bit keys are derived from `SESSIOND_REFRESH_KEY` (which never enters the database),
//! each under its own label (see [`derive_key`]):
//! * the **seal key** encrypts TOTP secrets with AES-256-GCM (aws-lc-rs). Each encryption uses
//!   a fresh random 96-bit nonce (stored beside the ciphertext; a few encryptions per user over
//!   the key's life are far below the 2³² random-nonce bound) and binds the user id as
//!   associated data, so a ciphertext moved to another user's row fails to decrypt. A stolen
//!   database alone therefore yields no TOTP secret.
//! * the **recovery key** is the HMAC-SHA256 key recovery codes are hashed with.
//!
//! Trade-off: rotating `SESSIOND_REFRESH_KEY` makes every stored TOTP secret unreadable (those
//! users get `503 unavailable` at the second factor, and the failure is logged) and every
//! recovery code unrecognisable; rotate it only together with re-enrolment.
//!
//! ## Why a fast keyed hash for recovery codes
//! Passwords need argon2 because people choose guessable ones. Recovery codes are 80 bits from
//! the CSPRNG: a search over 2⁸⁰ candidates is out of reach whatever the hash costs, so a slow
//! hash would only spend CPU on every login with a recovery code. The hash is keyed (HMAC with
//! a key that is not in the database), so a leaked table does not even let anyone test guesses
//! offline.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use hmac::{Hmac, KeyInit, Mac};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::random_bytes;

/// Digits per TOTP code (the authenticator apps' default).
pub const TOTP_DIGITS: u8 = 6;
/// Seconds per TOTP time step (RFC 6238's recommendation).
pub const TOTP_STEP_SECS: u64 = 30;
/// Steps accepted either side of "now", for clock drift and typing time (RFC 6238 §5.2: one).
pub const TOTP_SKEW: u16 = 1;
/// Bytes of a TOTP secret: 160 bits, as RFC 4226 §4 recommends.
pub const TOTP_SECRET_LEN: usize = 20;
/// Recovery codes handed out when MFA is enabled.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Symbols per recovery code (5 bits each: 80 bits).
const RECOVERY_CODE_LEN: usize = 16;
/// Crockford's base32: no I, L, O or U, so codes survive being read aloud or copied by hand.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Wrong second factors a login challenge tolerates before it is dead.
pub const MAX_CHALLENGE_ATTEMPTS: u32 = 5;

/// Derivation labels: each key has its own, so no key is ever used for two purposes.
const SEAL_LABEL: &str = "sessiond/mfa/totp-secret-seal/v1";
const RECOVERY_LABEL: &str = "sessiond/mfa/recovery-code-hmac/v1";
/// Associated-data prefix of sealed secrets (the user id follows).
const SEAL_AAD: &[u8] = b"sessiond/mfa/totp/v1";

/// Derives a 256-bit key for `label` from the refresh key.
///
/// It reuses the refresh key's own HMAC-SHA256 (`RefreshKey::derive_child`, whose input is
/// `session id ‖ generation ‖ parent secret`) with the nil session id, generation `u64::MAX`
/// and `SHA-256(label)` as the "parent". Session ids are UUIDv7 and never nil, so these inputs
/// can never equal a refresh-token derivation, and distinct labels give independent keys (HMAC
/// is a PRF).
pub fn derive_key(refresh_key: &RefreshKey, label: &str) -> [u8; 32] {
    let label_hash: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    let derived = refresh_key.derive_child(
        SessionId(Uuid::nil()),
        u64::MAX,
        &RefreshSecret::from_bytes(label_hash),
    );
    *derived.as_bytes()
}

/// Why an MFA operation failed for reasons other than a wrong code.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// A stored secret did not decrypt: the key changed (SESSIOND_REFRESH_KEY rotated) or the
    /// row was altered.
    #[error("stored TOTP secret does not decrypt (refresh key rotated, or the row was altered)")]
    Unseal,
    /// The otpauth URI or QR code could not be built.
    #[error("cannot build the TOTP enrolment: {0}")]
    Enrolment(String),
}

/// A TOTP shared secret in the clear. Never printed.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// 160 fresh bits from the CSPRNG.
    pub fn generate() -> Self {
        Self(random_bytes::<TOTP_SECRET_LEN>().to_vec())
    }

    /// The RFC 4648 base32 spelling (no padding) authenticator apps accept for manual entry.
    pub fn to_base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }

    fn totp(&self) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_secret(self.0.clone())
            .with_digits(TOTP_DIGITS)
            .with_step_duration(TOTP_STEP_SECS)
            .with_skew(TOTP_SKEW)
            .build_noncompliant()
    }

    /// The time step a well-formed `code` matches at `unix_time` (within ±[`TOTP_SKEW`] steps),
    /// if any. Malformed input (not exactly six digits once spaces are removed) matches nothing.
    /// Token comparison inside totp-rs is constant-time.
    pub fn matching_step(&self, code: &str, unix_time: u64) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != usize::from(TOTP_DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.totp().check(&code, unix_time)
    }

    /// The code for `unix_time` (tests and tools).
    pub fn code_at(&self, unix_time: u64) -> String {
        self.totp().generate(unix_time).to_string()
    }
}

/// The time step `unix_time` falls in.
pub fn step_of(unix_time: u64) -> u64 {
    unix_time / TOTP_STEP_SECS
}

/// A TOTP secret encrypted for storage.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// AES-256-GCM ciphertext with its 16-byte tag appended.
    pub ciphertext: Vec<u8>,
    /// The random nonce it was sealed with.
    pub nonce: [u8; NONCE_LEN],
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(..)")
    }
}

/// A recovery code in the clear, as shown to the user once. Never printed by `Debug`.
#[derive(Clone)]
pub struct RecoveryCode(String);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

impl RecoveryCode {
    /// `XXXX-XXXX-XXXX-XXXX`, for display.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Normalises a recovery code as typed: case, dashes and spaces do not matter, and the
/// look-alikes O, I and L read as 0, 1 and 1. None if it cannot be a recovery code.
fn normalise_recovery_code(input: &str) -> Option<String> {
    let mut out = String::with_capacity(RECOVERY_CODE_LEN);
    for c in input.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
        if out.len() > RECOVERY_CODE_LEN {
            return None;
        }
    }
    (out.len() == RECOVERY_CODE_LEN).then_some(out)
}

/// MFA keys and settings; built once at start-up and shared by the handlers.
pub struct Mfa {
    seal_key: LessSafeKey,
    recovery_key: [u8; 32],
    /// The `issuer` of otpauth URIs: the name authenticator apps show (`SESSIOND_TOTP_ISSUER`).
    pub issuer: String,
    /// How long a login challenge stays usable (`SESSIOND_MFA_CHALLENGE_TTL`).
    pub challenge_ttl: Duration,
    /// Wrong answers a challenge tolerates.
    pub max_attempts: u32,
}

impl fmt::Debug for Mfa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mfa")
            .field("issuer", &self.issuer)
            .field("challenge_ttl", &self.challenge_ttl)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Mfa {
    /// Derives the keys from the refresh key.
    pub fn new(refresh_key: &RefreshKey, issuer: String, challenge_ttl: Duration) -> Self {
        let seal = derive_key(refresh_key, SEAL_LABEL);
        Self {
            seal_key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &seal).expect("a 32-byte key is valid for AES-256"),
            ),
            recovery_key: derive_key(refresh_key, RECOVERY_LABEL),
            issuer,
            challenge_ttl,
            max_attempts: MAX_CHALLENGE_ATTEMPTS,
        }
    }

    fn aad(user: UserId) -> Vec<u8> {
        let mut aad = SEAL_AAD.to_vec();
        aad.extend_from_slice(user.as_uuid().as_bytes());
        aad
    }

    /// Encrypts `secret` for `user`'s row.
    pub fn seal(&self, user: UserId, secret: &TotpSecret) -> SealedSecret {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut in_out = secret.0.clone();
        self.seal_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(user)),
                &mut in_out,
            )
            .expect("AES-GCM sealing of a short buffer cannot fail");
        SealedSecret {
            ciphertext: in_out,
            nonce,
        }
    }

    /// Decrypts `user`'s stored secret.
    pub fn open(&self, user: UserId, sealed: &SealedSecret) -> Result<TotpSecret, MfaError> {
        let mut in_out = sealed.ciphertext.clone();
        let plain = self
            .seal_key
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.nonce),
                Aad::from(Self::aad(user)),
                &mut in_out,
            )
            .map_err(|_| MfaError::Unseal)?;
        Ok(TotpSecret(plain.to_vec()))
    }

    /// The `otpauth://totp/...` URI authenticator apps import (Key Uri Format).
    /// `account` is the label under the issuer, normally the email; a `:` (not allowed in the
    /// label) falls back to `fallback`.
    pub fn otpauth_uri(
        &self,
        secret: &TotpSecret,
        account: &str,
        fallback: &str,
    ) -> Result<String, MfaError> {
        let account = if account.contains(':') || account.is_empty() {
            fallback
        } else {
            account
        };
        totp_rs::Builder::new()
            .with_secret(secret.0.clone())
            .with_digits(TOTP_DIGITS)
            .with_step_duration(TOTP_STEP_SECS)
            .with_skew(TOTP_SKEW)
            .with_account_name(account)
            .with_issuer(Some(self.issuer.as_str()))
            .build()
            .and_then(|t| t.to_url())
            .map_err(|e| MfaError::Enrolment(e.to_string()))
    }

    /// A new set of recovery codes and their hashes, in the same order.
    pub fn new_recovery_codes(&self) -> Vec<(RecoveryCode, [u8; 32])> {
        (0..RECOVERY_CODE_COUNT)
            .map(|_| {
                // 256 is a multiple of 32, so masking keeps every symbol equally likely.
                let raw: String = random_bytes::<RECOVERY_CODE_LEN>()
                    .iter()
                    .map(|b| RECOVERY_ALPHABET[usize::from(b & 31)] as char)
                    .collect();
                let hash = self.hash_normalised(&raw);
                let shown = raw
                    .as_bytes()
                    .chunks(4)
                    .map(|c| std::str::from_utf8(c).expect("ASCII"))
                    .collect::<Vec<_>>()
                    .join("-");
                (RecoveryCode(shown), hash)
            })
            .collect()
    }

    /// The stored hash of a recovery code as typed, or None if it cannot be one.
    pub fn recovery_code_hash(&self, input: &str) -> Option<[u8; 32]> {
        normalise_recovery_code(input).map(|n| self.hash_normalised(&n))
    }

    fn hash_normalised(&self, normalised: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.recovery_key)
            .expect("HMAC accepts keys of any length");
        mac.update(normalised.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Renders `data` (the otpauth URI) as a standalone SVG QR code.
pub fn qr_svg(data: &str) -> Result<String, MfaError> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| MfaError::Enrolment(e.to_string()))?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mfa() -> Mfa {
        Mfa::new(
            &RefreshKey::new(vec![7u8; 32]),
            "sessiond".into(),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn derived_keys_depend_on_label_and_key() {
        let key = RefreshKey::new(vec![7u8; 32]);
        assert_ne!(
            derive_key(&key, SEAL_LABEL),
            derive_key(&key, RECOVERY_LABEL)
        );
        assert_eq!(derive_key(&key, SEAL_LABEL), derive_key(&key, SEAL_LABEL));
        assert_ne!(
            derive_key(&key, SEAL_LABEL),
            derive_key(&RefreshKey::new(vec![8u8; 32]), SEAL_LABEL)
        );
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        let m = mfa();
        let user = UserId::new();
        let secret = TotpSecret::generate();
        let sealed = m.seal(user, &secret);
        assert!(
            !sealed
                .ciphertext
                .windows(20)
                .any(|w| w == secret.0.as_slice())
        );
        assert_eq!(m.open(user, &sealed).unwrap().0, secret.0);
        assert!(matches!(
            m.open(UserId::new(), &sealed),
            Err(MfaError::Unseal)
        ));
        let other = Mfa::new(&RefreshKey::new(vec![9u8; 32]), "x".into(), Duration::ZERO);
        assert!(matches!(other.open(user, &sealed), Err(MfaError::Unseal)));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(matches!(m.open(user, &tampered), Err(MfaError::Unseal)));
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(m.seal(user, &secret), sealed);
    }

    #[test]
    fn codes_match_their_step_and_its_neighbours_only() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", T = 59 → 94287082 (8
        // digits); the 6-digit code is the last six.
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        assert_eq!(secret.code_at(59), "287082");
        assert_eq!(secret.matching_step("287082", 59), Some(1));
        assert_eq!(secret.matching_step(" 287 082 ", 59), Some(1));
        // One step either side is accepted, two is not.
        assert_eq!(secret.matching_step("287082", 59 + 30), Some(1));
        assert_eq!(secret.matching_step("287082", 59 + 60), None);
        for bad in ["", "28708", "2870822", "28708a", "２８７０８２"] {
            assert_eq!(secret.matching_step(bad, 59), None, "{bad:?}");
        }
        assert_eq!(step_of(59), 1);
        assert_eq!(step_of(60), 2);
    }

    #[test]
    fn otpauth_uri_names_issuer_and_account_and_carries_the_secret() {
        let m = mfa();
        let secret = TotpSecret::generate();
        let uri = m.otpauth_uri(&secret, "ada@example.com", "id").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/sessiond:ada%40example.com?"),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={}", secret.to_base32())),
            "{uri}"
        );
        assert!(uri.contains("issuer=sessiond"), "{uri}");
        let odd = m
            .otpauth_uri(&secret, "a:b@example.com", "fallback")
            .unwrap();
        assert!(odd.contains(":fallback?"), "{odd}");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_recognised_however_typed() {
        let m = mfa();
        let codes = m.new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let mut hashes: Vec<_> = codes.iter().map(|(_, h)| *h).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
        for (code, hash) in &codes {
            let shown = code.as_str();
            assert_eq!(shown.len(), 19);
            assert_eq!(m.recovery_code_hash(shown), Some(*hash));
            assert_eq!(
                m.recovery_code_hash(&shown.to_lowercase().replace('-', " ")),
                Some(*hash)
            );
            assert_eq!(format!("{code:?}"), "RecoveryCode(..)");
        }
        assert_eq!(
            m.recovery_code_hash("0O1I-L000-0000-0000"),
            m.recovery_code_hash("0011-1000-0000-0000")
        );
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-JKMN-PQRS-T",
            "ABCD-EFGH-JKMN-PQRU",
            "ÄBCD-EFGH-JKMN-PQRS",
        ] {
            assert_eq!(m.recovery_code_hash(bad), None, "{bad:?}");
        }
    }
}
