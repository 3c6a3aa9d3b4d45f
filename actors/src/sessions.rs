//! `Sessions`: the typed handle the rest of the process uses to reach session actors.
//!
//! No ractor type crosses this boundary: callers see async methods with timeouts and
//! [`SessionError`]. (CONTRACT — the HTTP layer is written against these signatures.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};

use crate::clock::SharedClock;
use crate::error::{shutting_down, store_error};
use crate::ids::SessionId;
use crate::model::{NewSession, RevokeReason, SessionRecord};
use crate::observe::SessionObserver;
use crate::protocol::SessionMsg;
use crate::refresh_token::{RefreshSecret, RefreshToken};
use crate::registry::{Registry, shard_of};
use crate::rotation;
use crate::session_actor::{ActorEnv, SessionActorArgs};
use crate::store::SessionStore;
use crate::supervisor::{self, ShardArgs, ShardSupervisor, SupervisorMsg};

// The types callers of the handle name, at the paths they have always used.
pub use crate::config::SessionsConfig;
pub use crate::error::SessionError;
pub use crate::protocol::{Authentication, Presenter, RefreshOutcome, Refreshed};
pub use crate::stats::SessionStats;

/// The handle. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    /// Everything the handle needs, shared by all clones.
    inner: Arc<Inner>,
}

/// The shared part of [`Sessions`].
struct Inner {
    /// Store, clock, config, stats and registry, shared with every actor.
    env: Arc<ActorEnv>,
    /// One supervisor per shard; a session's actor lives under `supervisors[shard_of(id)]`.
    supervisors: Vec<ActorRef<SupervisorMsg>>,
    /// Set by `shutdown`: no new activation starts after it.
    closed: AtomicBool,
}

/// How many times a call is sent: once, plus one retry if the actor turned out to be gone
/// (passivated or crashed between the lookup and the send).
const CALL_ATTEMPTS: usize = 2;

/// How long `shutdown` waits for actors to finish their queued work before killing them.
const SHUTDOWN_GRACE_MIN: Duration = Duration::from_secs(5);

impl Sessions {
    /// Starts the supervisors.
    pub async fn start(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        config: SessionsConfig,
    ) -> Result<Self, SessionError> {
        let shards = match config.shards {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .max(4),
            n => n,
        };
        // Often enough that an idle actor lives at most ~1.25 × passivate_after, rarely enough
        // that sweeping a shard of many actors stays cheap.
        let sweep_every =
            (config.passivate_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
        let env = Arc::new(ActorEnv {
            store,
            clock,
            config,
            stats: Arc::new(SessionStats::default()),
            registry: Arc::new(Registry::new(shards)),
        });
        let mut supervisors = Vec::with_capacity(shards);
        for shard in 0..shards {
            let args = ShardArgs {
                shard,
                env: Arc::clone(&env),
                sweep_every,
            };
            match ShardSupervisor::spawn(None, ShardSupervisor, args).await {
                Ok((supervisor, _detached)) => supervisors.push(supervisor),
                Err(e) => {
                    for s in &supervisors {
                        s.stop(None);
                    }
                    return Err(SessionError::Internal(format!(
                        "shard supervisor failed to start: {e}"
                    )));
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                env,
                supervisors,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Opens a new session (generation 0, random first secret), commits it, and returns it with
    /// its first refresh token.
    pub async fn create(
        &self,
        new: NewSession,
    ) -> Result<(SessionRecord, RefreshToken), SessionError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        let env = &self.inner.env;
        let now = env.clock.now();
        let secret = RefreshSecret::random();
        let record = SessionRecord::open(new, secret.hash(), now, now + env.config.max_ttl);
        env.store
            .insert_session(&record)
            .await
            .map_err(store_error)?;
        // Warm the actor with the record we already hold: the client's next request (an access
        // token check) then needs no store read. The session exists either way, so a failure
        // here only means the actor is activated on first use instead.
        if let Err(e) = self.actor(record.id, Some(record.clone())).await {
            tracing::debug!(session = %record.id, error = %e, "could not pre-activate session actor");
        }
        let token = RefreshToken {
            session_id: record.id,
            secret,
        };
        Ok((record, token))
    }

    /// Refreshes: rotation, grace retry, reuse detection — see [`crate::rotation`]. For a
    /// caller that checked the session's kind itself; the first-party API uses
    /// [`Self::refresh_first_party`].
    pub async fn refresh(&self, token: &RefreshToken) -> Result<Refreshed, SessionError> {
        self.refresh_as(token, Presenter::Checked).await
    }

    /// [`Self::refresh`] for the first-party API: a token of an OAuth grant whose session is
    /// usable is refused ([`Rejection::InvalidToken`](crate::rotation::Rejection)) without
    /// being spent; see [`Presenter::FirstParty`].
    pub async fn refresh_first_party(
        &self,
        token: &RefreshToken,
    ) -> Result<Refreshed, SessionError> {
        self.refresh_as(token, Presenter::FirstParty).await
    }

    async fn refresh_as(
        &self,
        token: &RefreshToken,
        presenter: Presenter,
    ) -> Result<Refreshed, SessionError> {
        self.call(token.session_id, |reply| {
            SessionMsg::Refresh(token.secret.clone(), presenter, reply)
        })
        .await?
    }

    /// The session behind an access token, if it may still be used. Uses the actor's state if
    /// it was read or written within `staleness`, else re-reads the store.
    ///
    /// A resident actor's published record answers without a message when the actor's own
    /// rules would answer it from memory (usable, synced within `staleness`, not invalidated
    /// since); everything else goes to the actor. See [`crate::published`].
    pub async fn check(&self, id: SessionId) -> Result<SessionRecord, SessionError> {
        if let Some(record) = self.check_published(id) {
            return Ok(record);
        }
        self.call(id, SessionMsg::Check).await?
    }

    /// The fast path of [`Self::check`], if it applies.
    fn check_published(&self, id: SessionId) -> Option<SessionRecord> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return None; // the actor path answers "shutting down"
        }
        let env = &self.inner.env;
        let published = env.registry.published(id)?;
        let now = env.clock.now();
        let policy = &env.config.policy;
        let record = published.check(env.config.staleness, |record| {
            rotation::usable(record, now, policy).is_ok()
        })?;
        env.stats.checks_published.fetch_add(1, Ordering::Relaxed);
        Some(SessionRecord::clone(&record))
    }

    /// Revokes a session through its actor. Revoking an already ended session succeeds.
    pub async fn revoke(&self, id: SessionId, reason: RevokeReason) -> Result<(), SessionError> {
        self.call(id, |reply| SessionMsg::Revoke(reason, reply))
            .await?
    }

    /// Records that the user proved factors again on session `id` (reauthentication): a fenced
    /// [`SessionChange::Authenticate`](crate::store::SessionChange::Authenticate), committed
    /// before the answer, which is the session as committed. A session that is no longer usable
    /// answers its rejection.
    pub async fn authenticate(
        &self,
        id: SessionId,
        proof: Authentication,
    ) -> Result<SessionRecord, SessionError> {
        self.call(id, |reply| SessionMsg::Authenticate(proof.clone(), reply))
            .await?
    }

    /// Tells the session's actor, if any, that the store changed under it (another instance
    /// revoked it, say): the slot's invalidation epoch is bumped, so what the actor published
    /// is refused from now on and its next check re-reads the store. That holds for an actor
    /// still activating from the store whose read began before this call too; a session with no
    /// actor needs nothing, since an activation reads the store anyway. (An actor started with
    /// the record a login just created takes that record as read at its start.)
    pub fn invalidate(&self, id: SessionId) {
        self.inner.env.registry.invalidate(id);
    }

    /// [`Sessions::invalidate`] for every resident session: after the change feed lost its
    /// connection, any notification may have been missed.
    pub fn invalidate_all(&self) {
        self.inner.env.registry.invalidate_all();
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<SessionStats> {
        Arc::clone(&self.inner.env.stats)
    }

    /// Installs the observer told about handling times and committed changes (metrics). Only
    /// the first call has an effect; returns whether this one did.
    pub fn observe(&self, observer: Arc<dyn SessionObserver>) -> bool {
        self.inner.env.stats.observer.set(observer).is_ok()
    }

    /// Stops every actor (after its pending write) and the supervisors.
    ///
    /// Actors are *drained*: requests already in their mailboxes are served (and their writes
    /// committed) before they stop; requests arriving afterwards fail with
    /// [`SessionError::Unavailable`]. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let grace = self.inner.env.config.call_timeout.max(SHUTDOWN_GRACE_MIN);
        let drains = self
            .inner
            .supervisors
            .iter()
            .cloned()
            .map(|supervisor| async move {
                let cell = supervisor.get_cell();
                cell.drain_children_and_wait(Some(grace)).await;
                // Draining the supervisor after its children lets it handle their termination
                // events first (they are queued ahead of the drain marker), so the gauges settle.
                if supervisor.drain_and_wait(Some(grace)).await.is_err() {
                    let _ = supervisor.kill_and_wait(Some(grace)).await;
                }
            });
        futures_join_all(drains).await;
        self.inner.env.registry.clear();
    }

    /// Test hook: makes the session's actor panic on its next message.
    ///
    /// The actor (activated if needed) is armed and acknowledges; the next request it receives
    /// panics before doing anything. That request's caller sees the actor die and is retried on
    /// a fresh actor loaded from the store, and the supervisor counts a restart.
    #[cfg(feature = "test-hooks")]
    pub async fn inject_panic(&self, id: SessionId) -> Result<(), SessionError> {
        self.call(id, SessionMsg::Panic).await
    }

    /// The resident actor of `id`, activated (from `preloaded` or the store) if needed.
    async fn actor(
        &self,
        id: SessionId,
        preloaded: Option<SessionRecord>,
    ) -> Result<ActorRef<SessionMsg>, SessionError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        let env = &self.inner.env;
        let supervisor = &self.inner.supervisors[shard_of(id, self.inner.supervisors.len())];
        env.registry
            .get_or_activate(id, |published| {
                let args = SessionActorArgs {
                    id,
                    env: Arc::clone(env),
                    preloaded,
                    published,
                };
                supervisor::activate(supervisor, args)
            })
            .await
    }

    /// Sends a request to the session's actor and waits for the answer within `call_timeout`.
    /// If the actor is found gone (it passivated or crashed between lookup and send, or died
    /// before answering), it is forgotten and the request is retried once on a fresh actor.
    /// Retrying is safe: every request is idempotent given the derived tokens (a retried
    /// rotation becomes a grace retry returning the same child).
    async fn call<R, F>(&self, id: SessionId, build: F) -> Result<R, SessionError>
    where
        R: Send + 'static,
        F: Fn(RpcReplyPort<R>) -> SessionMsg,
    {
        let timeout = self.inner.env.config.call_timeout;
        for _ in 0..CALL_ATTEMPTS {
            let actor = self.actor(id, None).await?;
            match actor.call(&build, Some(timeout)).await {
                Ok(CallResult::Success(answer)) => return Ok(answer),
                Ok(CallResult::Timeout) => return Err(SessionError::Timeout),
                Ok(CallResult::SenderError) | Err(_) => {
                    self.inner.env.registry.forget(id, actor.get_id());
                }
            }
        }
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        Err(SessionError::Internal(
            "session actor stopped before answering, twice".to_owned(),
        ))
    }
}

/// Awaits every future concurrently (no `futures` dependency for one join).
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}
