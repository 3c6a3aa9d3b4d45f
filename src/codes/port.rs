//! The storage port of mailed codes: what the code rules ([`crate::codes::Codes`]) need from a
//! store, and the rows they read and write. `crate::store` implements it for PostgreSQL and
//! SQLite; [`super::memory::MemoryCodeStore`] is its in-memory twin for tests of the rules.
//!
//! The dependency points one way, store → codes, as with the session port in
//! `sessiond_actors::store`: the rules never name the database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::{CodeHash, Purpose, Subject};

/// A stored code row (the hash only).
#[derive(Clone, Debug)]
pub struct VerificationCode {
    /// The verification id given to the client.
    pub id: Uuid,
    /// The account, or None for a decoy.
    pub user_id: Option<UserId>,
    /// What the code proves.
    pub purpose: Purpose,
    /// HMAC of the code.
    pub code_hash: CodeHash,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
    /// Checks taken so far.
    pub attempts: u32,
    /// When it was used or superseded.
    pub consumed_at: Option<DateTime<Utc>>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}

/// A row to insert.
#[derive(Clone, Debug)]
pub struct NewVerificationCode {
    /// UUIDv7.
    pub id: Uuid,
    /// The account, or None for a decoy.
    pub user_id: Option<UserId>,
    /// The address it was asked for (keyed hash of purpose and normalised email).
    pub subject: Subject,
    /// What the code proves.
    pub purpose: Purpose,
    /// HMAC of the code.
    pub code_hash: CodeHash,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
    /// Issue time.
    pub created_at: DateTime<Utc>,
}

/// Who asks for a code: an address, and the account behind it if it gets a real code.
#[derive(Clone, Copy, Debug)]
pub struct IssueRequest<'a> {
    /// The address (keyed hash).
    pub subject: &'a Subject,
    /// The account, or None for a decoy.
    pub user_id: Option<UserId>,
    /// What the code is for.
    pub purpose: Purpose,
    /// Start of the counting window of the daily caps.
    pub counted_since: DateTime<Utc>,
}

/// What was issued before to the same requester (the same address, the same account or none,
/// the same purpose): all the rules need to decide.
#[derive(Clone, Debug, Default)]
pub struct IssueHistory {
    /// The newest row of this address for this requester, if any.
    pub newest: Option<VerificationCode>,
    /// Rows of this address for this requester created since `counted_since`.
    pub issued_to_address: u32,
    /// Rows of this account created since `counted_since` (0 for a decoy).
    pub issued_to_account: u32,
}

/// The rules' answer: answer a stored row again, or insert a new one.
#[derive(Clone, Debug)]
pub enum Issue {
    /// Insert this row, superseding the open codes of its address and of its account.
    New(NewVerificationCode),
    /// Answer this stored row again; nothing is written.
    Again(VerificationCode),
}

/// Why no attempt could be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such id for this purpose.
    NotFound,
    /// Already used, or superseded by a newer code.
    Consumed,
    /// The attempts are used up.
    TooManyAttempts,
    /// Past `expires_at`.
    Expired,
}

/// The result of trying to take one attempt at a code.
#[derive(Debug)]
pub enum AttemptOutcome {
    /// An attempt was taken; compare against `code_hash`.
    Taken {
        /// The account (None for a decoy).
        user_id: Option<UserId>,
        /// The stored HMAC.
        code_hash: CodeHash,
        /// Attempts taken, this one included.
        attempts: u32,
    },
    /// Nothing was taken.
    Refused(Refusal),
}

/// Classifies a row no attempt could be taken on (shared by every implementation).
pub fn refusal(
    consumed: bool,
    attempts: u32,
    max: u32,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Refusal {
    if consumed {
        Refusal::Consumed
    } else if attempts >= max {
        Refusal::TooManyAttempts
    } else if expires_at <= now {
        Refusal::Expired
    } else {
        // Changed between the two statements (e.g. consumed meanwhile): not usable now.
        Refusal::Consumed
    }
}

/// The rules' callback: given the history, what to do.
pub type Decide<'a> = dyn Fn(&IssueHistory) -> Issue + Send + Sync + 'a;

/// Storage of mailed codes, as the rules need it.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Reads the requester's [`IssueHistory`], asks `decide`, and applies its answer, as one
    /// step per address: two concurrent requests for one address never both insert on the
    /// strength of the same history. `Issue::New` first marks the open codes of the same
    /// purpose for that address, and for that account, consumed (superseded). Returns what
    /// `decide` answered.
    async fn issue_code(
        &self,
        request: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError>;

    /// Takes one attempt at code `id` of `purpose` if it is open (not consumed, fewer than
    /// `max_attempts` taken, not expired at `now`), atomically; otherwise says why not.
    async fn take_verification_attempt(
        &self,
        id: Uuid,
        purpose: Purpose,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<AttemptOutcome, StoreError>;
}
