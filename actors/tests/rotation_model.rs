//! Property test of the rotation rules: random interleavings of refreshes with the current
//! token, retries with the previous one, replays of older generations, unknown secrets,
//! revocations and time passing, driven through `decide_refresh` + `apply` the way the actor
//! drives them, with real HMAC derivation of every child secret.
//!
//! Invariants checked after every step:
//! - outside the grace window at most one refresh token of the session is live (would be
//!   accepted), and inside it at most two: the current and the previous generation;
//! - compromise and revocation are final: the status never changes again, and no refresh is
//!   served (no rotation, no grace retry) after them, nor after expiry;
//! - a grace retry yields exactly the current generation's secret (the one the rotation issued);
//! - an unknown secret never compromises the session.

#[path = "support/helpers.rs"]
mod helpers;

use chrono::{DateTime, Duration, Utc};
use helpers::{key, policy, record, t0};
use proptest::prelude::*;
use sessiond_actors::model::{ReuseClass, SessionRecord, SessionStatus};
use sessiond_actors::refresh_token::{RefreshKey, RefreshSecret, TokenHash};
use sessiond_actors::rotation::{
    Presented, RefreshDecision, Rejection, RotationPolicy, SecretMatch, apply, classify,
    decide_refresh,
};
use sessiond_actors::store::SessionChange;

#[derive(Clone, Debug)]
enum Op {
    /// The client refreshes with the newest token it holds.
    RefreshCurrent,
    /// The client retries with the token before it (lost answer), or a thief uses it.
    RetryPrevious,
    /// Someone replays a token `1 + n` generations older than the previous one.
    ReplayOlder(usize),
    /// A secret the session never issued.
    Unknown(u64),
    /// The user or an administrator ends the session.
    Revoke,
    /// Time passes.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::RefreshCurrent),
        4 => Just(Op::RetryPrevious),
        2 => (0usize..6).prop_map(Op::ReplayOlder),
        2 => any::<u64>().prop_map(Op::Unknown),
        1 => Just(Op::Revoke),
        // Mostly around the 10 s grace window, sometimes past the 1 h idle lifetime.
        6 => (0i64..=25_000).prop_map(Op::Advance),
        1 => (0i64..=4_000_000).prop_map(Op::Advance),
    ]
}

/// The server side as the actor holds it, plus the store's token history and the secrets the
/// client was given (by generation), so every presented secret is a real derived one.
struct Model {
    key: RefreshKey,
    policy: RotationPolicy,
    session: SessionRecord,
    /// Hash of every generation issued, by generation (the store's history).
    history: Vec<TokenHash>,
    /// The secret of every generation issued, by generation (what clients hold).
    secrets: Vec<RefreshSecret>,
    now: DateTime<Utc>,
    /// The first final status reached, if any.
    ended: Option<SessionStatus>,
}

impl Model {
    fn new(seed: u64) -> Self {
        let first = secret_from(seed, 0x11);
        let session = record(t0(), &first);
        Self {
            key: key(),
            policy: policy(),
            history: vec![first.hash()],
            secrets: vec![first],
            session,
            now: t0(),
            ended: None,
        }
    }

    /// Where a presented secret stands, as the actor finds out (memory, then history).
    fn locate(&self, hash: &TokenHash) -> Presented {
        match classify(&self.session, hash) {
            SecretMatch::Current => Presented::Current,
            SecretMatch::Previous => Presented::Previous,
            SecretMatch::Other => match self.history.iter().position(|h| h == hash) {
                Some(g) => {
                    assert!(
                        (g as u64) + 1 < self.session.generation,
                        "history and record disagree"
                    );
                    Presented::Ancestor
                }
                None => Presented::Unknown,
            },
        }
    }

    /// Would `secret` be accepted now (rotation or grace retry)? Pure: changes nothing.
    fn live(&self, secret: &RefreshSecret) -> bool {
        matches!(
            decide_refresh(
                &self.session,
                self.locate(&secret.hash()),
                self.now,
                &self.policy
            ),
            RefreshDecision::Rotate { .. } | RefreshDecision::GraceRetry
        )
    }

    fn commit(&mut self, change: SessionChange) {
        let version = self.session.version + 1;
        apply(&mut self.session, &change, version);
    }

    /// One refresh with `secret`, exactly as the actor would serve it (after a commit).
    fn refresh(&mut self, secret: &RefreshSecret) -> Result<(), TestCaseError> {
        let presented = self.locate(&secret.hash());
        let status_before = self.session.status;
        let decision = decide_refresh(&self.session, presented, self.now, &self.policy);
        if status_before != SessionStatus::Active {
            prop_assert!(
                matches!(decision, RefreshDecision::Reject(_)),
                "{decision:?} on a {status_before:?} session"
            );
        }
        match decision {
            RefreshDecision::Rotate { new_generation } => {
                prop_assert_eq!(presented, Presented::Current);
                prop_assert_eq!(new_generation, self.session.generation + 1);
                let child = self
                    .key
                    .derive_child(self.session.id, new_generation, secret);
                self.commit(SessionChange::Rotate {
                    id: self.session.id,
                    expected_version: self.session.version,
                    new_generation,
                    new_hash: child.hash(),
                    at: self.now,
                });
                self.history.push(child.hash());
                self.secrets.push(child);
                prop_assert_eq!(self.secrets.len() as u64, self.session.generation + 1);
            }
            RefreshDecision::GraceRetry => {
                prop_assert_eq!(presented, Presented::Previous);
                let child = self
                    .key
                    .derive_child(self.session.id, self.session.generation, secret);
                let current = &self.secrets[self.session.generation as usize];
                prop_assert!(
                    &child == current,
                    "grace retry must yield the current secret"
                );
                prop_assert!(child.hash() == self.session.current_hash);
            }
            RefreshDecision::Reuse(class) => {
                match class {
                    ReuseClass::PreviousAfterGrace => {
                        prop_assert_eq!(presented, Presented::Previous)
                    }
                    ReuseClass::Ancestor => prop_assert_eq!(presented, Presented::Ancestor),
                }
                self.commit(SessionChange::Compromise {
                    id: self.session.id,
                    expected_version: self.session.version,
                    class,
                    at: self.now,
                });
            }
            RefreshDecision::Reject(rejection) => {
                if rejection == Rejection::InvalidToken {
                    prop_assert_eq!(presented, Presented::Unknown);
                }
                if presented == Presented::Unknown {
                    prop_assert_eq!(self.session.status, status_before, "unknown secret");
                }
            }
        }
        Ok(())
    }

    fn revoke(&mut self) {
        // The actor's rule: ending an ended session writes nothing.
        if self.session.status == SessionStatus::Active {
            self.commit(SessionChange::Revoke {
                id: self.session.id,
                expected_version: self.session.version,
                reason: sessiond_actors::model::RevokeReason::Logout,
                at: self.now,
            });
        }
    }

    fn check_invariants(&mut self) -> Result<(), TestCaseError> {
        // Finality.
        match self.ended {
            Some(status) => prop_assert_eq!(self.session.status, status, "final status changed"),
            None if self.session.status != SessionStatus::Active => {
                self.ended = Some(self.session.status)
            }
            None => {}
        }

        // Live tokens.
        let live: Vec<u64> = (0..self.secrets.len())
            .filter(|&g| self.live(&self.secrets[g]))
            .map(|g| g as u64)
            .collect();
        let in_grace = self
            .session
            .rotated_at
            .is_some_and(|at| self.now - at <= self.policy.grace_window);
        let limit = if in_grace { 2 } else { 1 };
        prop_assert!(
            live.len() <= limit,
            "live generations {live:?} (in grace: {in_grace})"
        );
        for g in &live {
            prop_assert!(
                *g + 1 >= self.session.generation,
                "generation {g} live at generation {}",
                self.session.generation
            );
        }
        if self.session.status != SessionStatus::Active
            || sessiond_actors::rotation::usable(&self.session, self.now, &self.policy).is_err()
        {
            prop_assert!(live.is_empty(), "live tokens on an unusable session");
        }
        Ok(())
    }
}

fn secret_from(seed: u64, tag: u8) -> RefreshSecret {
    let mut bytes = [tag; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    RefreshSecret::from_bytes(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rotation_keeps_one_live_token_and_final_states_final(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut m = Model::new(seed);
        for op in ops {
            match op {
                Op::RefreshCurrent => {
                    let s = m.secrets.last().unwrap().clone();
                    m.refresh(&s)?;
                }
                Op::RetryPrevious => {
                    if m.secrets.len() >= 2 {
                        let s = m.secrets[m.secrets.len() - 2].clone();
                        m.refresh(&s)?;
                    }
                }
                Op::ReplayOlder(back) => {
                    if m.secrets.len() >= 3 {
                        let newest_ancestor = m.secrets.len() - 3;
                        let s = m.secrets[newest_ancestor.saturating_sub(back)].clone();
                        m.refresh(&s)?;
                    }
                }
                Op::Unknown(n) => m.refresh(&secret_from(n, 0xAA))?,
                Op::Revoke => m.revoke(),
                Op::Advance(ms) => m.now += Duration::milliseconds(ms),
            }
            m.check_invariants()?;
        }
    }
}
