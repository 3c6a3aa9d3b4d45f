//! One-time codes sent by mail: generation, hashing at rest, and the checking rules shared by
//! email verification and password reset.
//!
//! A code is 6 decimal digits (20 bits), so a plain hash of it would fall to an offline search
//! of a million candidates. The store therefore keeps only
//! `HMAC-SHA256(code key, purpose ‖ verification id ‖ code)`, where the **code key** is derived
//! from `SESSIOND_REFRESH_KEY` under its own label (see [`CodeKey::derive`]) and is never in the
//! database: a leaked table gives nothing away without the key. Binding the id and the purpose
//! means one code's hash says nothing about another row's.
//!
//! Online guessing is bounded by the attempt limit: every check of a code takes one attempt,
//! claimed atomically in the database *before* the comparison, so even concurrent guesses get
//! at most [`MAX_ATTEMPTS`] comparisons per code (1 in 200 000 odds for a guesser). A newer code
//! for the same user and purpose supersedes the older ones, and a resend waits out a cooldown,
//! so fresh attempts cannot be had faster than one batch per cooldown.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::{constant_time_eq, random_bytes};
use crate::store::verification::{AttemptOutcome, NewVerificationCode, Refusal};
use crate::store::{Store, StoreError};

/// How many checks one code allows (the issue's "5 attempts").
pub const MAX_ATTEMPTS: u32 = 5;

/// Digits in a code.
const DIGITS: usize = 6;

/// What a code proves; part of its hash, so a code of one purpose never passes for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The user controls the address they registered with.
    EmailVerification,
    /// The user controls the address and may set a new password.
    PasswordReset,
}

impl Purpose {
    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email_verification" => Some(Self::EmailVerification),
            "password_reset" => Some(Self::PasswordReset),
            _ => None,
        }
    }
}

/// A code as the user types it: exactly six ASCII digits. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(..)")
    }
}

impl Code {
    /// A fresh code, uniform over 000000–999999, from the OS-seeded CSPRNG.
    pub fn generate() -> Code {
        let n: u32 = rand::rng().random_range(0..1_000_000);
        Code(format!("{n:06}"))
    }

    /// Accepts six ASCII digits, ignoring surrounding white space; anything else is refused
    /// (it could never match, so it is not worth an attempt).
    pub fn parse(input: &str) -> Option<Code> {
        let s = input.trim();
        (s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit())).then(|| Code(s.to_owned()))
    }

    /// The digits, to put in the mail. Never log them.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// The stored form of a code (32 bytes). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash([u8; 32]);

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

impl CodeHash {
    /// Wraps stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A hash no code produces (a random 256-bit value), for decoys.
    pub fn unmatchable() -> Self {
        Self(random_bytes::<32>())
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &CodeHash) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

/// The key codes are hashed with. Derived from the refresh key, never stored. `Debug` hides it.
#[derive(Clone)]
pub struct CodeKey([u8; 32]);

impl fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

/// The derivation label; a new label (e.g. `/v2`) would invalidate every outstanding code and
/// nothing else.
const CODE_KEY_LABEL: &[u8] = b"sessiond/verification-codes/v1";

impl CodeKey {
    /// `HMAC-SHA256(SESSIOND_REFRESH_KEY, nil-uuid ‖ u64::MAX ‖ SHA-256(label))`, computed with
    /// the refresh key's own HMAC derivation. The inputs can never be those of a refresh token
    /// (session ids are UUIDv7, never the nil UUID, and generations never reach `u64::MAX`), so
    /// the derived key is independent of every token secret, and holding codes or their hashes
    /// tells nothing about the refresh key. Rotating the refresh key invalidates codes that are
    /// outstanding at that moment (they are short-lived anyway).
    pub fn derive(refresh_key: &RefreshKey) -> CodeKey {
        let label = RefreshSecret::from_bytes(Sha256::digest(CODE_KEY_LABEL).into());
        let derived = refresh_key.derive_child(SessionId(Uuid::nil()), u64::MAX, &label);
        CodeKey(*derived.as_bytes())
    }

    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> CodeKey {
        CodeKey(bytes)
    }

    /// The stored form of `code` for the row `id` of `purpose`.
    pub fn hash(&self, id: Uuid, purpose: Purpose, code: &Code) -> CodeHash {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(purpose.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        mac.update(code.0.as_bytes());
        CodeHash(mac.finalize().into_bytes().into())
    }
}

/// Lifetimes and limits of codes.
#[derive(Clone, Copy, Debug)]
pub struct CodePolicy {
    /// How long a code is valid (`SESSIOND_CODE_TTL`, default 15 min).
    pub ttl: chrono::Duration,
    /// How soon after a code was sent another may be sent to the same user for the same
    /// purpose (`SESSIOND_RESEND_COOLDOWN`, default 60 s).
    pub resend_cooldown: chrono::Duration,
    /// Checks allowed per code.
    pub max_attempts: u32,
}

/// The answer to "send me a code": the id to confirm with and when it expires. `code` is set
/// only when a new code was made and must be mailed; it is never part of an API answer.
#[derive(Debug)]
pub struct Issued {
    /// The verification id (UUIDv7).
    pub id: Uuid,
    /// When the code stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// The new code to mail, or None (a decoy, or the cooldown has not passed).
    pub code: Option<Code>,
}

/// Why a code was not accepted. Each maps to one documented API error.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Wrong code, unknown id, or a code already used or superseded.
    #[error("invalid code")]
    Invalid,
    /// The code's lifetime has passed.
    #[error("code expired")]
    Expired,
    /// The code's attempts are used up.
    #[error("too many attempts")]
    TooManyAttempts,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A code that matched: for whom. Still to be redeemed (consumed) with its effect.
#[derive(Debug)]
pub struct Checked {
    /// The verification id.
    pub id: Uuid,
    /// The account the code was sent to.
    pub user: UserId,
}

/// Issues and checks codes against the store.
#[derive(Clone, Debug)]
pub struct Codes {
    key: CodeKey,
    policy: CodePolicy,
}

impl Codes {
    /// Codes hashed with `key`, under `policy`.
    pub fn new(key: CodeKey, policy: CodePolicy) -> Self {
        Self { key, policy }
    }

    /// Codes as configured: hashed with a key derived from the refresh key.
    pub fn from_config(
        config: &crate::config::MailConfig,
        refresh_key: &RefreshKey,
    ) -> Result<Self, chrono::OutOfRangeError> {
        Ok(Self::new(
            CodeKey::derive(refresh_key),
            CodePolicy {
                ttl: chrono::Duration::from_std(config.code_ttl)?,
                resend_cooldown: chrono::Duration::from_std(config.resend_cooldown)?,
                max_attempts: MAX_ATTEMPTS,
            },
        ))
    }

    /// The lifetimes and limits in force.
    pub fn policy(&self) -> &CodePolicy {
        &self.policy
    }

    /// A code for `user`: a new one (superseding any earlier code of this purpose), unless the
    /// newest one was sent less than the cooldown ago and is still usable, in which case that
    /// one's id is answered again and nothing new is sent.
    pub async fn issue(
        &self,
        store: &Store,
        user: UserId,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Issued, StoreError> {
        if let Some(newest) = store.newest_verification_code(user, purpose).await?
            && newest.created_at + self.policy.resend_cooldown > now
            && newest.consumed_at.is_none()
            && newest.attempts < self.policy.max_attempts
            && newest.expires_at > now
        {
            return Ok(Issued {
                id: newest.id,
                expires_at: newest.expires_at,
                code: None,
            });
        }
        let id = Uuid::now_v7();
        let code = Code::generate();
        let row = NewVerificationCode {
            id,
            user_id: Some(user),
            purpose,
            code_hash: self.key.hash(id, purpose, &code),
            expires_at: now + self.policy.ttl,
            created_at: now,
        };
        store.insert_verification_code(&row).await?;
        Ok(Issued {
            id,
            expires_at: row.expires_at,
            code: Some(code),
        })
    }

    /// A decoy for an address with no (usable) account: a stored row no code matches, so the
    /// answer has the same shape and nearly the same cost as a real one, and confirming it later
    /// behaves like a real code with a wrong guess (including running out of attempts).
    pub async fn issue_decoy(
        &self,
        store: &Store,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Issued, StoreError> {
        // The same HMAC work as a real code, so the two paths cost the same.
        let id = Uuid::now_v7();
        let _ = self.key.hash(id, purpose, &Code::generate());
        let row = NewVerificationCode {
            id,
            user_id: None,
            purpose,
            code_hash: CodeHash::unmatchable(),
            expires_at: now + self.policy.ttl,
            created_at: now,
        };
        store.insert_verification_code(&row).await?;
        Ok(Issued {
            id,
            expires_at: row.expires_at,
            code: None,
        })
    }

    /// Checks `code` for verification `id`: takes one attempt (atomically, before comparing),
    /// then compares in constant time. A match still has to be redeemed with
    /// [`Store::redeem_verification_code`], which consumes it exactly once.
    pub async fn check(
        &self,
        store: &Store,
        id: Uuid,
        purpose: Purpose,
        code: &Code,
        now: DateTime<Utc>,
    ) -> Result<Checked, CodeError> {
        let attempt = store
            .take_verification_attempt(id, purpose, self.policy.max_attempts, now)
            .await?;
        let (user, stored, attempts) = match attempt {
            AttemptOutcome::Taken {
                user_id,
                code_hash,
                attempts,
            } => (user_id, code_hash, attempts),
            AttemptOutcome::Refused(Refusal::NotFound | Refusal::Consumed) => {
                return Err(CodeError::Invalid);
            }
            AttemptOutcome::Refused(Refusal::TooManyAttempts) => {
                return Err(CodeError::TooManyAttempts);
            }
            AttemptOutcome::Refused(Refusal::Expired) => return Err(CodeError::Expired),
        };
        let presented = self.key.hash(id, purpose, code);
        match user {
            Some(user) if presented.matches(&stored) => Ok(Checked { id, user }),
            // The last allowed attempt failed: say so now rather than on the next try.
            _ if attempts >= self.policy.max_attempts => Err(CodeError::TooManyAttempts),
            _ => Err(CodeError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_digits_and_vary() {
        let codes: Vec<Code> = (0..50).map(|_| Code::generate()).collect();
        for c in &codes {
            assert_eq!(c.expose_secret().len(), 6);
            assert!(c.expose_secret().bytes().all(|b| b.is_ascii_digit()));
        }
        let distinct: std::collections::HashSet<_> =
            codes.iter().map(|c| c.expose_secret()).collect();
        assert!(distinct.len() > 40, "{} distinct of 50", distinct.len());
    }

    #[test]
    fn parse_accepts_only_six_digits() {
        assert_eq!(Code::parse(" 012345 ").unwrap().expose_secret(), "012345");
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "١٢٣٤٥٦",
            "123 456",
            "-12345",
        ] {
            assert!(Code::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let code = Code::parse("424242").unwrap();
        let key = CodeKey::from_bytes([7; 32]);
        let hash = key.hash(Uuid::now_v7(), Purpose::PasswordReset, &code);
        let printed = format!("{code:?} {hash:?} {key:?}");
        assert!(!printed.contains("424242"), "{printed}");
        assert!(!printed.contains("07"), "{printed}");
    }

    #[test]
    fn hash_binds_key_id_purpose_and_code() {
        let key = CodeKey::from_bytes([1; 32]);
        let id = Uuid::now_v7();
        let code = Code::parse("123456").unwrap();
        let h = key.hash(id, Purpose::EmailVerification, &code);
        assert!(h.matches(&key.hash(id, Purpose::EmailVerification, &code)));
        assert!(!h.matches(&key.hash(id, Purpose::PasswordReset, &code)));
        assert!(!h.matches(&key.hash(Uuid::now_v7(), Purpose::EmailVerification, &code)));
        assert!(!h.matches(&key.hash(
            id,
            Purpose::EmailVerification,
            &Code::parse("123457").unwrap()
        )));
        assert!(!h.matches(&CodeKey::from_bytes([2; 32]).hash(
            id,
            Purpose::EmailVerification,
            &code
        )));
        // Not a plain hash of the code.
        assert_ne!(h.as_bytes()[..], Sha256::digest(b"123456")[..]);
    }

    #[test]
    fn derived_key_depends_on_the_refresh_key_only() {
        let a = CodeKey::derive(&RefreshKey::new(vec![1u8; 32]));
        let a2 = CodeKey::derive(&RefreshKey::new(vec![1u8; 32]));
        let b = CodeKey::derive(&RefreshKey::new(vec![2u8; 32]));
        assert_eq!(a.0, a2.0);
        assert_ne!(a.0, b.0);
        assert_ne!(a.0, [1u8; 32]);
    }

    #[test]
    fn purposes_round_trip() {
        for p in [Purpose::EmailVerification, Purpose::PasswordReset] {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("other"), None);
    }
}
