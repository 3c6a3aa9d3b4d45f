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
//! for the same address and purpose supersedes the older ones; no new code is made within the
//! resend cooldown of the previous one (even when the previous one's attempts are used up), and
//! at most [`CodePolicy::daily_limit`] per address and per account a day, so guesses at one
//! account's codes are bounded by `daily_limit × MAX_ATTEMPTS` a day (50 by default).
//!
//! Enumeration: an address without a (usable) account gets a **decoy**, stored and answered by
//! the very same rule as a real code: every row is filed under the address's [`Subject`]
//! (`HMAC(code key, purpose ‖ normalised email)`), the cooldown and the caps read that history,
//! and a decoy's hash matches no code. So repeated requests answer the same id within the
//! cooldown, new ids after it, and the same id again once capped, whether or not the account
//! exists. The rules talk to storage through the [`CodeStore`] port (`port.rs`), which
//! `crate::store` implements and `memory.rs` twins for tests.

mod memory;
mod port;

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret};
use sessiond_actors::store::StoreError;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::{constant_time_eq, random_bytes};
use crate::domain::FieldError;

pub use memory::MemoryCodeStore;
pub use port::{
    AttemptOutcome, CodeStore, Decide, Issue, IssueHistory, IssueRequest, NewVerificationCode,
    Refusal, VerificationCode, refusal,
};

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

/// Parses a confirmation's `{verification_id, code}`, collecting both field errors (so a
/// client fixes them at once, and a malformed request costs no attempt).
pub fn parse_confirmation(
    verification_id: &str,
    code: &str,
    errors: &mut Vec<FieldError>,
) -> Option<(Uuid, Code)> {
    let id = Uuid::parse_str(verification_id.trim())
        .map_err(|_| errors.push(FieldError::new("verification_id", "must be a UUID")))
        .ok();
    let code = Code::parse(code);
    if code.is_none() {
        errors.push(FieldError::new("code", "must be 6 digits"));
    }
    id.zip(code)
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

    /// The subject of requests for `purpose` codes to `email` (the normalised address, as
    /// `crate::domain::Email::as_str` gives it and as accounts store it):
    /// `HMAC-SHA256(code key, purpose ‖ 0x01 ‖ email)`. The separator differs from the code
    /// hash's (0x00), so no subject can equal a code hash.
    pub fn subject(&self, purpose: Purpose, email: &str) -> Subject {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(purpose.as_str().as_bytes());
        mac.update(&[1]);
        mac.update(email.as_bytes());
        Subject(mac.finalize().into_bytes().into())
    }
}

/// Whom codes were asked for: a keyed hash of the purpose and the normalised address, the same
/// for an address with an account and one without, so both share one history (cooldown, caps)
/// and the table does not give the addresses away. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Subject([u8; 32]);

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subject(..)")
    }
}

impl Subject {
    /// Wraps stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Lifetimes and limits of codes.
#[derive(Clone, Copy, Debug)]
pub struct CodePolicy {
    /// How long a code is valid (`SESSIOND_CODE_TTL`, default 15 min).
    pub ttl: chrono::Duration,
    /// How soon after a code was issued for an address another may be issued for it, for the
    /// same purpose (`SESSIOND_RESEND_COOLDOWN`, default 60 s). Holds for every new code, also
    /// once the previous one's attempts are used up.
    pub resend_cooldown: chrono::Duration,
    /// Codes issued per address and per account, for one purpose, in any 24 hours
    /// (`SESSIOND_CODE_DAILY_LIMIT`, default 10). Bounds guesses to `daily_limit ×
    /// max_attempts` a day.
    pub daily_limit: u32,
    /// Checks allowed per code.
    pub max_attempts: u32,
}

/// The window the daily limit counts over.
pub const DAILY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The answer to "send me a code": the id to confirm with and when it expires. `code` is set
/// only when a new code was made and must be mailed; it is never part of an API answer.
#[derive(Debug)]
pub struct Issued {
    /// The verification id (UUIDv7).
    pub id: Uuid,
    /// When the code stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// The new code to mail, or None (a decoy, within the cooldown, or over the daily limit).
    pub code: Option<Code>,
}

/// The issuing rule, the same for real codes and decoys (`candidate.user_id` None):
/// * within the cooldown of the requester's newest code, that code's id is answered again
///   (whatever became of it: used up, consumed);
/// * past the daily limit of the address or the account, the newest code is answered again
///   (when the limit was reached through another address of the account, a decoy is made);
/// * otherwise the candidate is stored.
///
/// Pure, so it is tested without a store; [`Codes::issue`] runs it inside the store's atomic
/// step.
pub fn decide(
    policy: &CodePolicy,
    history: &IssueHistory,
    candidate: &NewVerificationCode,
) -> Issue {
    let now = candidate.created_at;
    if let Some(newest) = &history.newest
        && newest.created_at + policy.resend_cooldown > now
    {
        return Issue::Again(newest.clone());
    }
    let capped = history.issued_to_address >= policy.daily_limit
        || history.issued_to_account >= policy.daily_limit;
    match (&history.newest, capped) {
        (_, false) => Issue::New(candidate.clone()),
        (Some(newest), true) => Issue::Again(newest.clone()),
        (None, true) => Issue::New(NewVerificationCode {
            user_id: None,
            code_hash: CodeHash::unmatchable(),
            ..candidate.clone()
        }),
    }
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
                daily_limit: config.code_daily_limit,
                max_attempts: MAX_ATTEMPTS,
            },
        ))
    }

    /// The lifetimes and limits in force.
    pub fn policy(&self) -> &CodePolicy {
        &self.policy
    }

    /// A code of `purpose` for the address `email` (normalised): a real one for `user`, or,
    /// with `user` None, a decoy (a stored row no code matches). Both go through [`decide`]
    /// with the history of the address, and cost the same (one code generated and hashed, one
    /// store step), so the answers and their timing do not tell whether the account exists.
    /// [`Issued::code`] is set only for a new real code, which the caller mails.
    pub async fn issue<S: CodeStore + ?Sized>(
        &self,
        store: &S,
        email: &str,
        user: Option<UserId>,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Issued, StoreError> {
        // Stores keep microseconds: the answer for a new code must be the one later answers
        // read back.
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        let subject = self.key.subject(purpose, email);
        let id = Uuid::now_v7();
        let code = Code::generate();
        let hash = self.key.hash(id, purpose, &code);
        let candidate = NewVerificationCode {
            id,
            user_id: user,
            subject: subject.clone(),
            purpose,
            code_hash: if user.is_some() {
                hash
            } else {
                CodeHash::unmatchable()
            },
            expires_at: now + self.policy.ttl,
            created_at: now,
        };
        let request = IssueRequest {
            subject: &subject,
            user_id: user,
            purpose,
            counted_since: now - DAILY_WINDOW,
        };
        let policy = self.policy;
        let issue = store
            .issue_code(&request, &|history| decide(&policy, history, &candidate))
            .await?;
        Ok(match issue {
            Issue::New(row) => Issued {
                id: row.id,
                expires_at: row.expires_at,
                code: row.user_id.is_some().then_some(code),
            },
            Issue::Again(row) => Issued {
                id: row.id,
                expires_at: row.expires_at,
                code: None,
            },
        })
    }

    /// Checks `code` for verification `id`: takes one attempt (atomically, before comparing),
    /// then compares in constant time. A match still has to be redeemed with
    /// `Store::redeem_verification_code`, which consumes it exactly once.
    pub async fn check<S: CodeStore + ?Sized>(
        &self,
        store: &S,
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

    fn codes(cooldown_secs: i64, daily_limit: u32) -> Codes {
        Codes::new(
            CodeKey::from_bytes([3; 32]),
            CodePolicy {
                ttl: chrono::Duration::minutes(15),
                resend_cooldown: chrono::Duration::seconds(cooldown_secs),
                daily_limit,
                max_attempts: MAX_ATTEMPTS,
            },
        )
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    const ADA: &str = "ada@example.com";
    const NOBODY: &str = "nobody@example.com";

    /// The rule behind both: the same id within the cooldown, a new one after it, for a real
    /// account and a decoy alike.
    #[tokio::test]
    async fn within_the_cooldown_real_and_decoy_answer_the_same_id_again() {
        let store = MemoryCodeStore::new();
        let codes = codes(60, 10);
        let user = UserId(Uuid::now_v7());
        for (email, who) in [(ADA, Some(user)), (NOBODY, None)] {
            let p = Purpose::PasswordReset;
            let first = codes.issue(&store, email, who, p, at(0)).await.unwrap();
            let again = codes.issue(&store, email, who, p, at(59)).await.unwrap();
            assert_eq!(first.id, again.id, "{email}");
            assert_eq!(first.expires_at, again.expires_at);
            assert_eq!(
                first.code.is_some(),
                who.is_some(),
                "only real codes are mailed"
            );
            assert!(again.code.is_none());
            assert_eq!(first.id.get_version_num(), 7);
            let later = codes.issue(&store, email, who, p, at(60)).await.unwrap();
            assert_ne!(later.id, first.id);
            // The newer one supersedes.
            assert!(store.row(first.id).unwrap().consumed_at.is_some());
        }
        assert_eq!(store.len(), 4);
    }

    #[tokio::test]
    async fn a_used_up_code_gets_no_successor_within_the_cooldown() {
        let store = MemoryCodeStore::new();
        let codes = codes(60, 10);
        let user = UserId(Uuid::now_v7());
        let p = Purpose::EmailVerification;
        let issued = codes
            .issue(&store, ADA, Some(user), p, at(0))
            .await
            .unwrap();
        let code = issued.code.clone().unwrap();
        let wrong = Code::parse(&format!(
            "{:06}",
            (code.expose_secret().parse::<u32>().unwrap() + 1) % 1_000_000
        ))
        .unwrap();
        for _ in 0..MAX_ATTEMPTS {
            assert!(
                codes
                    .check(&store, issued.id, p, &wrong, at(1))
                    .await
                    .is_err()
            );
        }
        let again = codes
            .issue(&store, ADA, Some(user), p, at(2))
            .await
            .unwrap();
        assert_eq!(again.id, issued.id);
        assert!(again.code.is_none());
        assert!(matches!(
            codes.check(&store, issued.id, p, &code, at(3)).await,
            Err(CodeError::TooManyAttempts)
        ));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn past_the_daily_limit_the_newest_id_is_answered_again() {
        let store = MemoryCodeStore::new();
        let codes = codes(0, 3);
        let user = UserId(Uuid::now_v7());
        for (email, who) in [(ADA, Some(user)), (NOBODY, None)] {
            let p = Purpose::PasswordReset;
            let mut ids = Vec::new();
            for i in 0..3 {
                let issued = codes.issue(&store, email, who, p, at(i)).await.unwrap();
                assert_eq!(issued.code.is_some(), who.is_some());
                ids.push(issued.id);
            }
            ids.dedup();
            assert_eq!(ids.len(), 3, "three new codes");
            let capped = codes.issue(&store, email, who, p, at(10)).await.unwrap();
            assert_eq!(capped.id, ids[2]);
            assert!(capped.code.is_none());
            // 24 hours after the first, one more.
            let next = codes
                .issue(&store, email, who, p, at(24 * 3600 + 1))
                .await
                .unwrap();
            assert_ne!(next.id, ids[2]);
            assert_eq!(next.code.is_some(), who.is_some());
        }
    }

    #[tokio::test]
    async fn a_decoy_never_verifies_and_a_new_account_is_not_held_by_decoys() {
        let store = MemoryCodeStore::new();
        let codes = codes(60, 2);
        let p = Purpose::EmailVerification;
        // Someone asks for an address before it has an account, up to the limit...
        let decoy = codes.issue(&store, ADA, None, p, at(0)).await.unwrap();
        codes.issue(&store, ADA, None, p, at(100)).await.unwrap();
        let any = Code::parse("000000").unwrap();
        assert!(matches!(
            codes.check(&store, decoy.id, p, &any, at(1)).await,
            Err(CodeError::Invalid)
        ));
        // ...then the account is registered: it gets its own code at once, which works.
        let user = UserId(Uuid::now_v7());
        let real = codes
            .issue(&store, ADA, Some(user), p, at(101))
            .await
            .unwrap();
        assert_ne!(real.id, decoy.id);
        let code = real.code.unwrap();
        let checked = codes
            .check(&store, real.id, p, &code, at(102))
            .await
            .unwrap();
        assert_eq!(checked.user, user);
    }

    #[tokio::test]
    async fn the_account_limit_holds_across_addresses() {
        let store = MemoryCodeStore::new();
        let codes = codes(0, 2);
        let user = UserId(Uuid::now_v7());
        let p = Purpose::PasswordReset;
        codes
            .issue(&store, ADA, Some(user), p, at(0))
            .await
            .unwrap();
        codes
            .issue(&store, ADA, Some(user), p, at(1))
            .await
            .unwrap();
        // The account changed its address: still capped, answered with a decoy.
        let other = codes
            .issue(&store, "ada@elsewhere.example", Some(user), p, at(2))
            .await
            .unwrap();
        assert!(other.code.is_none());
        assert!(store.row(other.id).unwrap().user_id.is_none());
    }

    #[test]
    fn subjects_bind_key_purpose_and_address() {
        let key = CodeKey::from_bytes([1; 32]);
        let s = key.subject(Purpose::PasswordReset, ADA);
        assert_eq!(s, key.subject(Purpose::PasswordReset, ADA));
        assert_ne!(s, key.subject(Purpose::EmailVerification, ADA));
        assert_ne!(s, key.subject(Purpose::PasswordReset, NOBODY));
        assert_ne!(
            s,
            CodeKey::from_bytes([2; 32]).subject(Purpose::PasswordReset, ADA)
        );
        assert_eq!(format!("{s:?}"), "Subject(..)");
    }

    #[test]
    fn purposes_round_trip() {
        for p in [Purpose::EmailVerification, Purpose::PasswordReset] {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::parse("other"), None);
    }
}
