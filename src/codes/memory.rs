//! An in-memory [`CodeStore`] with the same semantics as the SQL stores (one lock makes every
//! call atomic), for tests of the code rules without a database.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::Subject;
use super::port::{
    AttemptOutcome, CodeStore, Decide, Issue, IssueHistory, IssueRequest, VerificationCode, refusal,
};
use crate::codes::Purpose;

/// Rows in a vector behind a mutex: small, and obviously right.
#[derive(Debug, Default)]
pub struct MemoryCodeStore {
    rows: Mutex<Vec<(Subject, VerificationCode)>>,
}

impl MemoryCodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of row `id`, if stored.
    pub fn row(&self, id: Uuid) -> Option<VerificationCode> {
        let rows = self.rows.lock().expect("not poisoned");
        rows.iter()
            .find(|(_, r)| r.id == id)
            .map(|(_, r)| r.clone())
    }

    /// How many rows are stored.
    pub fn len(&self) -> usize {
        self.rows.lock().expect("not poisoned").len()
    }

    /// Whether no row is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl CodeStore for MemoryCodeStore {
    async fn issue_code(
        &self,
        request: &IssueRequest<'_>,
        decide: &Decide<'_>,
    ) -> Result<Issue, StoreError> {
        let mut rows = self.rows.lock().expect("not poisoned");
        let mine = |s: &Subject, r: &VerificationCode| {
            s == request.subject && r.purpose == request.purpose && r.user_id == request.user_id
        };
        let recent = |r: &VerificationCode| r.created_at > request.counted_since;
        let newest = rows
            .iter()
            .filter(|(s, r)| mine(s, r))
            .max_by_key(|(_, r)| (r.created_at, r.id))
            .map(|(_, r)| r.clone());
        let history = IssueHistory {
            newest,
            issued_to_address: count(rows.iter().filter(|(s, r)| mine(s, r) && recent(r))),
            issued_to_account: match request.user_id {
                Some(user) => count(rows.iter().filter(|(_, r)| {
                    r.user_id == Some(user) && r.purpose == request.purpose && recent(r)
                })),
                None => 0,
            },
        };
        let issue = decide(&history);
        if let Issue::New(new) = &issue {
            for (subject, row) in rows.iter_mut() {
                let same_owner = subject == &new.subject
                    || (new.user_id.is_some() && row.user_id == new.user_id);
                if same_owner && row.purpose == new.purpose && row.consumed_at.is_none() {
                    row.consumed_at = Some(new.created_at);
                }
            }
            rows.push((
                new.subject.clone(),
                VerificationCode {
                    id: new.id,
                    user_id: new.user_id,
                    purpose: new.purpose,
                    code_hash: new.code_hash.clone(),
                    expires_at: new.expires_at,
                    attempts: 0,
                    consumed_at: None,
                    created_at: new.created_at,
                },
            ));
        }
        Ok(issue)
    }

    async fn take_verification_attempt(
        &self,
        id: Uuid,
        purpose: Purpose,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<AttemptOutcome, StoreError> {
        let mut rows = self.rows.lock().expect("not poisoned");
        let Some((_, row)) = rows
            .iter_mut()
            .find(|(_, r)| r.id == id && r.purpose == purpose)
        else {
            return Ok(AttemptOutcome::Refused(super::port::Refusal::NotFound));
        };
        if row.consumed_at.is_none() && row.attempts < max_attempts && row.expires_at > now {
            row.attempts += 1;
            return Ok(AttemptOutcome::Taken {
                user_id: row.user_id,
                code_hash: row.code_hash.clone(),
                attempts: row.attempts,
            });
        }
        Ok(AttemptOutcome::Refused(refusal(
            row.consumed_at.is_some(),
            row.attempts,
            max_attempts,
            row.expires_at,
            now,
        )))
    }
}

fn count<'a>(rows: impl Iterator<Item = &'a (Subject, VerificationCode)>) -> u32 {
    u32::try_from(rows.count()).unwrap_or(u32::MAX)
}
