//! One actor per live session.
//!
//! The actor is the only writer of its session inside this process: its mailbox serialises
//! refreshes, checks and revocations, so concurrent refreshes of one token see one rotation and
//! grace retries, never two rotations. Across processes the store's version fence does the same
//! job: every write names the version the actor holds, and a lost fence makes the actor reload
//! and re-apply the rules (see [`crate::store`]).
//!
//! Every change is committed to the store *before* memory is updated and before the caller gets
//! an answer: `post_stop` does not run after a panic, so nothing may wait for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::clock::SharedClock;
use crate::config::SessionsConfig;
use crate::error::{SessionError, store_error};
use crate::ids::SessionId;
use crate::model::{RevokeReason, SessionRecord, SessionStatus};
use crate::observe::MessageKind;
use crate::protocol::{Authentication, Presenter, RefreshOutcome, Refreshed, SessionMsg};
use crate::published::Published;
use crate::refresh_token::{RefreshSecret, RefreshToken, TokenHash};
use crate::registry::Registry;
use crate::rotation::{self, Presented, RefreshDecision, Rejection, SecretMatch};
use crate::stats::SessionStats;
use crate::store::{SessionChange, SessionStore, WriteOutcome};

/// How many times one request may re-read the store (after a lost fence, or to confirm a
/// negative answer) before it gives up. Bounded so two writers fighting over one session cannot
/// keep an actor busy forever.
pub const MAX_RELOADS: u32 = 4;

/// What every session actor of one engine shares. One allocation for all actors, so a resident
/// actor pays one pointer for it.
pub struct ActorEnv {
    /// Durable storage: the authority every change is committed to first.
    pub store: Arc<dyn SessionStore>,
    /// Business time for the rotation rules (expiry, grace window, timestamps written).
    pub clock: SharedClock,
    /// Lifetimes, timeouts and the refresh key.
    pub config: SessionsConfig,
    /// Counters the actors bump (passivations, fence conflicts).
    pub stats: Arc<SessionStats>,
    /// Where the actor is found by session id; it binds itself at start and unbinds itself when
    /// it passivates, so lookups stop routing to it before it goes away.
    pub registry: Arc<Registry>,
}

impl std::fmt::Debug for ActorEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorEnv")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a session actor is started with.
pub struct SessionActorArgs {
    /// The session this actor owns.
    pub id: SessionId,
    /// The shared environment.
    pub env: Arc<ActorEnv>,
    /// The record when the caller already has it (a session just created by login), which
    /// spares the store read in `pre_start`; `None` loads it from the store.
    pub preloaded: Option<SessionRecord>,
    /// Where the actor publishes its record for checks (its registry slot's).
    pub published: Arc<Published>,
}

/// The actor. Stateless itself (ractor habit): everything lives in [`SessionState`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionActor;

/// A resident session's memory. Deliberately small: one per live session.
pub struct SessionState {
    /// The session as last read from or committed to the store. Shared with the published
    /// snapshot (copied on write only while a reader holds it).
    record: Arc<SessionRecord>,
    /// When `record` was last read from or written to the store; `Check` trusts memory only
    /// within `staleness` of this, since another instance may have changed the session
    /// unnoticed.
    synced_at: Instant,
    /// The [`Published::epoch`] read before the store read or write `synced_at` dates. An
    /// invalidation (the change feed) bumps the slot's epoch: memory synced before it is no
    /// longer trusted, and the next check re-reads the store. No message to the actor is needed.
    synced_epoch: u64,
    /// Where checks find the record without a message (see [`crate::published`]).
    published: Arc<Published>,
    /// When the actor last handled a real request; passivation counts idleness from here (and
    /// from the last check answered from `published`).
    last_active: Instant,
    /// Shared environment (store, clock, config, stats, registry).
    env: Arc<ActorEnv>,
    /// Test hook: the next request panics. Absent from builds without test hooks.
    #[cfg(any(test, feature = "test-hooks"))]
    panic_armed: bool,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionActorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SessionActorArgs {
            id,
            env,
            preloaded,
            published,
        } = args;
        let synced_epoch = published.epoch();
        let record = match preloaded {
            Some(record) => record,
            None => match env.store.load_session(id).await {
                Ok(Some(record)) => record,
                // Typed errors so the activation can tell the caller why (downcast there).
                Ok(None) => return Err(Box::new(SessionError::NotFound)),
                Err(e) => return Err(Box::new(store_error(e))),
            },
        };
        if record.id != id {
            return Err(Box::new(SessionError::Internal(
                "store returned another session".to_owned(),
            )));
        }
        // Bound before any supervision event can mention this actor, so the supervisor can
        // always map the actor back to its session.
        env.registry.bind(myself.get_id(), id);
        let now = Instant::now();
        Ok(SessionState {
            record: Arc::new(record),
            synced_at: now,
            synced_epoch,
            published,
            last_active: now,
            env,
            #[cfg(any(test, feature = "test-hooks"))]
            panic_armed: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        #[cfg(any(test, feature = "test-hooks"))]
        if state.panic_armed && !matches!(message, SessionMsg::PassivationTick) {
            panic!("injected panic in session actor (test hook)");
        }
        match message {
            SessionMsg::Refresh(secret, presenter, reply) => {
                state.last_active = Instant::now();
                let result = state.refresh_as(&secret, presenter).await;
                state.handled(MessageKind::Refresh);
                // The caller may have timed out and gone; the work is committed either way.
                let _ = reply.send(result);
            }
            SessionMsg::Check(reply) => {
                state.last_active = Instant::now();
                let result = state.check().await;
                state.handled(MessageKind::Check);
                let _ = reply.send(result);
            }
            SessionMsg::Revoke(reason, reply) => {
                state.last_active = Instant::now();
                let result = state.revoke(reason).await;
                state.handled(MessageKind::Revoke);
                let _ = reply.send(result);
            }
            SessionMsg::Authenticate(proof, reply) => {
                state.last_active = Instant::now();
                let result = state.authenticate(proof).await;
                let _ = reply.send(result);
            }
            SessionMsg::PassivationTick => {
                let last = match state.published.last_read() {
                    Some(read) => read.max(state.last_active),
                    None => state.last_active,
                };
                if last.elapsed() >= state.env.config.passivate_after {
                    // Unbind first so new requests activate a fresh actor instead of racing
                    // the drain; drain (not stop) so requests already queued are still served.
                    state.env.registry.forget(state.record.id, myself.get_id());
                    state.env.stats.passivations.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session = %state.record.id, "session actor passivated");
                    let _ = myself.drain();
                }
            }
            #[cfg(any(test, feature = "test-hooks"))]
            SessionMsg::Panic(reply) => {
                state.panic_armed = true;
                // The armed request must reach the actor.
                state.published.withdraw();
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

impl SessionState {
    /// The session this actor owns.
    fn id(&self) -> SessionId {
        self.record.id
    }

    /// Reports the request that started at `last_active` to the observer, if one is installed.
    fn handled(&self, kind: MessageKind) {
        if let Some(observer) = self.env.stats.observer.get() {
            observer.handled(kind, self.last_active.elapsed());
        }
    }

    /// Re-reads the record from the store; `NotFound` if it is gone.
    ///
    /// The published snapshot is withdrawn first: what the store says may end the session (a
    /// revocation by another instance whose notification has not arrived), and once memory
    /// knows it, no check may pass on what was published before.
    async fn reload(&mut self) -> Result<(), SessionError> {
        self.published.withdraw();
        let epoch = self.published.epoch();
        match self.env.store.load_session(self.id()).await {
            Ok(Some(record)) => {
                self.record = Arc::new(record);
                self.synced_at = Instant::now();
                self.synced_epoch = epoch;
                Ok(())
            }
            Ok(None) => Err(SessionError::NotFound),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Commits `change` fenced on the version in memory; on success applies it to memory.
    /// `Ok(false)` means the fence was lost (counted) and memory was reloaded.
    ///
    /// The published snapshot is withdrawn first: once the change is answered, no check may
    /// see the session as it was before it.
    async fn commit(&mut self, change: &SessionChange) -> Result<bool, SessionError> {
        self.published.withdraw();
        let epoch = self.published.epoch();
        match self.env.store.apply(change).await.map_err(store_error)? {
            WriteOutcome::Committed { version } => {
                rotation::apply(Arc::make_mut(&mut self.record), change, version);
                self.synced_at = Instant::now();
                self.synced_epoch = epoch;
                if let Some(observer) = self.env.stats.observer.get() {
                    observer.committed(change);
                }
                Ok(true)
            }
            WriteOutcome::Conflict => {
                self.env
                    .stats
                    .fence_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    session = %self.id(),
                    change = change.kind(),
                    "fence lost; reloading session"
                );
                self.reload().await?;
                Ok(false)
            }
        }
    }

    /// Spends one reload from the request's budget, or fails if it is exhausted.
    fn spend(budget: &mut u32) -> Result<(), SessionError> {
        if *budget == 0 {
            return Err(store_error(crate::store::StoreError::Unavailable(
                "session changed concurrently too many times".to_owned(),
            )));
        }
        *budget -= 1;
        Ok(())
    }

    /// Where the presented hash stands, asking the token history only when memory cannot tell.
    /// `None` means memory may be behind the store: re-read it, then ask again.
    ///
    /// A secret that is neither current nor previous in memory that was not re-read during this
    /// request is first taken as a sign that memory is behind (the usual cause: another
    /// instance rotated the session, since rotations are fenced, not published). One re-read
    /// then usually finds it current, and the rotation follows: two round trips. Asking the
    /// history first would cost three (look-up, re-read, write), and every other answer
    /// (ancestor, unknown) needs re-read memory anyway before it is given.
    async fn locate(
        &self,
        presented: &TokenHash,
        now: chrono::DateTime<chrono::Utc>,
        fresh: bool,
    ) -> Result<Option<Presented>, SessionError> {
        match rotation::classify(&self.record, presented) {
            SecretMatch::Current => Ok(Some(Presented::Current)),
            SecretMatch::Previous => Ok(Some(Presented::Previous)),
            SecretMatch::Other => {
                if rotation::usable(&self.record, now, &self.env.config.policy).is_err() {
                    // Status and expiry are decided before the secret: no history look-up.
                    return Ok(Some(Presented::Unknown));
                }
                if !fresh {
                    return Ok(None);
                }
                let found = self
                    .env
                    .store
                    .find_generation(self.id(), presented)
                    .await
                    .map_err(store_error)?;
                Ok(match found {
                    None => Some(Presented::Unknown),
                    Some(g) if g.saturating_add(1) < self.record.generation => {
                        Some(Presented::Ancestor)
                    }
                    // Issued, yet neither current nor previous in memory: memory is stale.
                    Some(_) => None,
                })
            }
        }
    }

    /// Whether memory was read or written within `staleness` and not invalidated since (the
    /// epoch also covers an invalidation that came while this actor was activating).
    fn trusted(&self) -> bool {
        self.synced_at.elapsed() < self.env.config.staleness
            && self.synced_epoch == self.published.epoch()
    }

    /// A refresh by `presenter`: a first-party presenter's token of a usable OAuth grant is
    /// refused before anything is spent (the answer the grant check before the refresh gave
    /// when it was a separate actor call); everything else goes to [`Self::refresh`].
    async fn refresh_as(
        &mut self,
        secret: &RefreshSecret,
        presenter: Presenter,
    ) -> Result<Refreshed, SessionError> {
        if presenter == Presenter::FirstParty
            && self.record.grant.is_some()
            && self.check().await.is_ok()
        {
            return Err(Rejection::InvalidToken.into());
        }
        self.refresh(secret).await
    }

    /// The refresh flow: classify, decide, commit, then update memory and answer.
    async fn refresh(&mut self, secret: &RefreshSecret) -> Result<Refreshed, SessionError> {
        let presented_hash = secret.hash();
        let mut budget = MAX_RELOADS;
        // Whether memory was re-read from the store during this request. A negative answer
        // (invalid, expired, reuse) is only given from such memory: another instance may have
        // rotated the session since we last looked.
        let mut fresh = false;
        // Memory known to be behind (invalidated by the change feed after another instance
        // wrote, or older than `staleness`) is re-read first: one read, then the rotation,
        // instead of a history look-up that finds the token newer than memory, a read and the
        // rotation.
        if !self.trusted() {
            self.reload().await?;
            fresh = true;
        }
        loop {
            let now = self.env.clock.now();
            let Some(presented) = self.locate(&presented_hash, now, fresh).await? else {
                Self::spend(&mut budget)?;
                self.reload().await?;
                fresh = true;
                continue;
            };
            let policy = self.env.config.policy;
            match rotation::decide_refresh(&self.record, presented, now, &policy) {
                RefreshDecision::Rotate { new_generation } => {
                    let child =
                        self.env
                            .config
                            .refresh_key
                            .derive_child(self.id(), new_generation, secret);
                    let change = SessionChange::Rotate {
                        id: self.id(),
                        expected_version: self.record.version,
                        new_generation,
                        new_hash: child.hash(),
                        at: now,
                    };
                    if self.commit(&change).await? {
                        return Ok(self.refreshed(child, RefreshOutcome::Rotated));
                    }
                    Self::spend(&mut budget)?;
                    fresh = true;
                }
                RefreshDecision::GraceRetry => {
                    // Never answered from memory alone: another instance may have rotated past
                    // the generation we hold, and then the "previous" secret is an ancestor
                    // whose replay must compromise the session, not mint a child. One read of
                    // the committed row (rare: only retries pay it) decides.
                    if !fresh {
                        Self::spend(&mut budget)?;
                        self.reload().await?;
                        fresh = true;
                        continue;
                    }
                    let child = self.env.config.refresh_key.derive_child(
                        self.id(),
                        self.record.generation,
                        secret,
                    );
                    if child.hash() == self.record.current_hash {
                        return Ok(self.refreshed(child, RefreshOutcome::GraceRetry));
                    }
                    // The previous secret's child is not the current one (the key changed?).
                    return Err(Rejection::InvalidToken.into());
                }
                RefreshDecision::Reuse(class) => {
                    if !fresh {
                        Self::spend(&mut budget)?;
                        self.reload().await?;
                        fresh = true;
                        continue;
                    }
                    let change = SessionChange::Compromise {
                        id: self.id(),
                        expected_version: self.record.version,
                        class,
                        at: now,
                    };
                    if self.commit(&change).await? {
                        tracing::warn!(
                            session = %self.id(),
                            user = %self.record.user_id,
                            class = class.as_str(),
                            "refresh token reuse detected; session compromised"
                        );
                        return Err(SessionError::Reused(class));
                    }
                    Self::spend(&mut budget)?;
                }
                RefreshDecision::Reject(
                    rejection @ (Rejection::InvalidToken | Rejection::Expired),
                ) => {
                    if fresh {
                        return Err(rejection.into());
                    }
                    Self::spend(&mut budget)?;
                    self.reload().await?;
                    fresh = true;
                }
                // Revoked and compromised are final: memory cannot be "too old" to say so.
                RefreshDecision::Reject(rejection) => return Err(rejection.into()),
            }
        }
    }

    fn refreshed(&self, child: RefreshSecret, outcome: RefreshOutcome) -> Refreshed {
        Refreshed {
            session: SessionRecord::clone(&self.record),
            refresh_token: RefreshToken {
                session_id: self.id(),
                secret: child,
            },
            outcome,
        }
    }

    /// Access-token check: memory if recent enough, else the store; then the usability rules.
    async fn check(&mut self) -> Result<SessionRecord, SessionError> {
        let mut fresh = false;
        if !self.trusted() {
            self.reload().await?;
            fresh = true;
        }
        let policy = self.env.config.policy;
        match rotation::usable(&self.record, self.env.clock.now(), &policy) {
            Ok(()) => {}
            // Idle expiry from memory may be wrong if another instance refreshed meanwhile.
            Err(Rejection::Expired) if !fresh => {
                self.reload().await?;
                rotation::usable(&self.record, self.env.clock.now(), &policy)?;
            }
            Err(rejection) => return Err(rejection.into()),
        }
        self.publish();
        Ok(SessionRecord::clone(&self.record))
    }

    /// Publishes the record for the checks that follow (see [`crate::published`]).
    fn publish(&self) {
        self.published
            .publish(Arc::clone(&self.record), self.synced_at, self.synced_epoch);
    }

    /// Records a new authentication, fenced. Only a usable session (read from the store, not
    /// memory: the answer gates sensitive actions) can be authenticated again. The level never
    /// goes down: a password reauthentication of a session opened with two factors keeps
    /// `aal` 2, since the session's level is what its login established.
    async fn authenticate(&mut self, proof: Authentication) -> Result<SessionRecord, SessionError> {
        let mut budget = MAX_RELOADS;
        self.reload().await?;
        loop {
            let policy = self.env.config.policy;
            rotation::usable(&self.record, self.env.clock.now(), &policy)?;
            let change = SessionChange::Authenticate {
                id: self.id(),
                expected_version: self.record.version,
                auth_time: proof.auth_time,
                aal: proof.aal.max(self.record.aal),
                amr: proof.amr.clone(),
            };
            if self.commit(&change).await? {
                return Ok(SessionRecord::clone(&self.record));
            }
            Self::spend(&mut budget)?;
        }
    }

    /// Revokes, fenced; ending an already ended session succeeds without a write.
    async fn revoke(&mut self, reason: RevokeReason) -> Result<(), SessionError> {
        let mut budget = MAX_RELOADS;
        loop {
            if self.record.status != SessionStatus::Active {
                return Ok(());
            }
            let change = SessionChange::Revoke {
                id: self.id(),
                expected_version: self.record.version,
                reason,
                at: self.env.clock.now(),
            };
            if self.commit(&change).await? {
                return Ok(());
            }
            Self::spend(&mut budget)?;
        }
    }
}
