//! Shard supervisors: the parents of the session actors.
//!
//! Sessions are spread over a fixed number of shards by a hash of their id (see
//! [`crate::registry::shard_of`]), so supervision events of a million actors are not funnelled
//! through one mailbox. Each shard has a [`ShardSupervisor`] (the handle [`crate::sessions`]
//! keeps) and under it a *cohort*, the actor the shard's session actors are linked under
//! ([`activate`]). Together they:
//!
//! - keep the resident gauge exact: an actor counts as resident from when it is linked, and the
//!   cohort counts it gone when it terminates or fails, panics included — the cohort sees every
//!   child's end where the children themselves cannot;
//! - apply the restart policy, which is *lazy*: a failed actor is removed from the registry and
//!   counted as a restart, and the next request for its session re-activates it from the store
//!   (the store, not the dead actor's memory, is the authority, so nothing is lost);
//! - drive passivation: every `sweep_every` the shard supervisor sends each child a
//!   [`SessionMsg::PassivationTick`], and children idle for `passivate_after` stop themselves.
//!   One timer per shard instead of one per actor keeps resident actors small.
//!
//! Why cohorts: ractor keeps a supervisor's children in a map that never shrinks (it is freed
//! only when the supervisor stops), so a supervisor that once had 100 000 children would keep
//! a table for 100 000 after they all passivated. A quarter period after each sweep, when the
//! children it told to passivate have gone, the shard supervisor *compacts*: if the current
//! cohort is down to a quarter of its peak or less, it starts a new cohort, moves the surviving
//! children to it (re-linking leaves them and their sessions untouched) and stops the old
//! cohort, which frees the old table, and counts that in
//! [`SessionStats::cohorts_released`](crate::stats::SessionStats) (the process trims its
//! heap then). Like the registry's shrinking, this is amortised: the survivors moved are at most
//! a quarter of the children that left.
//!
//! The old cohort is stopped at once when it had no child left (then every child's end is
//! already queued to it, ahead of the stop, so the gauges stay exact). Otherwise it keeps the
//! children that could not move — ones already stopping, whose ends it handles — and is stopped
//! at a later compaction, once they are gone: a period after the move, so a child that was
//! ending at that very moment and reported to the old cohort has long been handled too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ractor::concurrency::JoinHandle;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};

use crate::error::{SessionError, shutting_down};
use crate::protocol::SessionMsg;
use crate::registry::{Registry, shard_of};
use crate::session_actor::{ActorEnv, SessionActor, SessionActorArgs};

/// A cohort is replaced only once it has had at least this many children: below that its
/// table costs next to nothing.
const REPLACE_MIN_PEAK: usize = 256;

/// How long a compaction waits for a released cohort to stop (it only has to handle the ends
/// already queued to it).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// How long `Sessions::shutdown` waits for a supervisor (the same rule as there): the
/// supervisor's own shutdown fits in it.
const SHUTDOWN_GRACE_MIN: Duration = Duration::from_secs(5);

/// A shard supervisor. Stateless itself; see [`ShardState`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardSupervisor;

/// What a shard supervisor is started with.
pub struct ShardArgs {
    /// Which shard this is: where to look first in the registry when a child ends.
    pub shard: usize,
    /// The environment shared with the session actors (registry and stats are used here).
    pub env: Arc<ActorEnv>,
    /// How often children are asked whether they have been idle long enough to stop.
    pub sweep_every: Duration,
}

/// A shard supervisor's state.
pub struct ShardState {
    /// Which shard this is.
    shard: usize,
    /// Shared environment (registry, stats).
    env: Arc<ActorEnv>,
    /// Sweep period, kept until `post_start` starts the timer.
    sweep_every: Duration,
    /// The sweep timer task, aborted when the supervisor stops.
    sweeper: Option<JoinHandle<()>>,
    /// The cohort new session actors are linked under (also the registry's parent of the shard).
    current: ActorRef<()>,
    /// The most children `current` had at a sweep.
    peak: usize,
    /// Replaced cohorts, kept until their last child is gone.
    retired: Vec<ActorRef<()>>,
}

/// Messages of a shard supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Timer tick: send every child a passivation tick, and compact a quarter period later.
    Sweep,
    /// After a sweep: replace a cohort most of whose children have gone, stop emptied ones.
    Compact,
    /// How many children are linked under this supervisor's cohorts right now (diagnostics,
    /// tests).
    Children(RpcReplyPort<usize>),
}

impl Actor for ShardSupervisor {
    type Msg = SupervisorMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let current = spawn_cohort(args.shard, &args.env).await?;
        *write_parent(&args.env.registry, args.shard) = Some(current.get_cell());
        Ok(ShardState {
            shard: args.shard,
            env: args.env,
            sweep_every: args.sweep_every,
            sweeper: None,
            current,
            peak: 0,
            retired: Vec::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.sweeper = Some(myself.send_interval(state.sweep_every, || SupervisorMsg::Sweep));
        Ok(())
    }

    /// Stops the cohorts after their children: children are drained (requests already queued
    /// are served) while their cohort still counts their ends, then the cohorts, which kills
    /// any child still running by then. Bounded to fit in the grace `Sessions::shutdown` gives
    /// this supervisor: the cohorts are not linked under it, so if it were killed instead they
    /// would outlive it.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(sweeper) = state.sweeper.take() {
            sweeper.abort();
        }
        // From here on no session actor is linked: activations find no parent and give up.
        write_parent(&state.env.registry, state.shard).take();
        let cohorts: Vec<ActorRef<()>> = std::iter::once(state.current.clone())
            .chain(state.retired.drain(..))
            .collect();
        let grace = state.env.config.call_timeout.max(SHUTDOWN_GRACE_MIN);
        let deadline = Instant::now() + grace * 3 / 4;
        for cohort in &cohorts {
            cohort.drain_children();
        }
        for cohort in &cohorts {
            let left = deadline.saturating_duration_since(Instant::now());
            cohort.drain_children_and_wait(Some(left)).await;
        }
        for cohort in &cohorts {
            if cohort.drain_and_wait(Some(grace / 8)).await.is_err() {
                cohort.kill();
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Sweep => {
                for child in std::iter::once(&state.current)
                    .chain(&state.retired)
                    .flat_map(|cohort| cohort.get_children())
                {
                    // A child that is already stopping rejects the tick; nothing to do then.
                    let _ = child.send_message(SessionMsg::PassivationTick);
                }
                myself.send_after(state.sweep_every / 4, || SupervisorMsg::Compact);
            }
            SupervisorMsg::Compact => {
                // Retired at an earlier compaction and now childless.
                let mut kept = Vec::with_capacity(state.retired.len());
                for cohort in std::mem::take(&mut state.retired) {
                    if cohort.get_children().is_empty() {
                        release(&state.env, cohort).await;
                    } else {
                        kept.push(cohort);
                    }
                }
                state.retired = kept;
                let count = state.current.get_children().len();
                state.peak = state.peak.max(count);
                if state.peak >= REPLACE_MIN_PEAK && count <= state.peak / 4 {
                    replace_cohort(state).await;
                }
            }
            SupervisorMsg::Children(reply) => {
                let count = std::iter::once(&state.current)
                    .chain(&state.retired)
                    .map(|c| c.get_children().len())
                    .sum();
                let _ = reply.send(count);
            }
        }
        Ok(())
    }
}

/// Replaces the current cohort by a new one holding its children (see the module doc).
async fn replace_cohort(state: &mut ShardState) {
    let next = match spawn_cohort(state.shard, &state.env).await {
        Ok(next) => next,
        Err(error) => {
            // Only memory is at stake: keep the current cohort and try again next time.
            tracing::warn!(shard = state.shard, error = %error, "could not start a new cohort");
            return;
        }
    };
    let (moved, had_children) = {
        // Activations link under the read lock, so none joins the old cohort from here on.
        let mut parent = write_parent(&state.env.registry, state.shard);
        if parent.is_none() {
            // Stopping: post_stop owns the cohorts now.
            next.stop(None);
            return;
        }
        let next_cell = next.get_cell();
        let children = state.current.get_children();
        let mut moved = 0;
        for child in &children {
            // A child already stopping refuses the move and stays: its end reaches the old
            // cohort, which is stopped only once it has no child left.
            child.link(next_cell.clone());
            moved += usize::from(is_linked_to(child, &next_cell));
        }
        *parent = Some(next_cell);
        (moved, !children.is_empty())
    };
    let old = std::mem::replace(&mut state.current, next);
    state.peak = moved;
    if had_children {
        state.retired.push(old);
    } else {
        release(&state.env, old).await;
    }
}

/// Stops a cohort that has no child and can gain none, and waits until it has (its table is
/// freed then); counts the release. Draining lets it handle the ends already queued first.
async fn release(env: &ActorEnv, cohort: ActorRef<()>) {
    if cohort.drain_and_wait(Some(RELEASE_WAIT)).await.is_err() {
        cohort.kill();
    }
    env.stats.cohorts_released.fetch_add(1, Ordering::Relaxed);
}

/// Starts a cohort for `shard`, unlinked: it lives until its shard supervisor stops it.
async fn spawn_cohort(
    shard: usize,
    env: &Arc<ActorEnv>,
) -> Result<ActorRef<()>, ActorProcessingErr> {
    let args = CohortState {
        shard,
        env: Arc::clone(env),
    };
    let (cohort, _detached) = Actor::spawn(None, Cohort, args).await?;
    Ok(cohort)
}

fn write_parent(
    registry: &Registry,
    shard: usize,
) -> std::sync::RwLockWriteGuard<'_, Option<ActorCell>> {
    // Every critical section leaves the slot consistent, so a poisoned lock is still usable.
    registry
        .parent(shard)
        .write()
        .unwrap_or_else(|e| e.into_inner())
}

fn is_linked_to(child: &ActorCell, parent: &ActorCell) -> bool {
    child
        .try_get_supervisor()
        .is_some_and(|s| s.get_id() == parent.get_id())
}

/// The actor a shard's session actors are linked under: it only handles their supervision
/// events. See the module doc.
#[derive(Clone, Copy, Debug, Default)]
struct Cohort;

/// A cohort's state and arguments.
struct CohortState {
    /// Which shard this is: where to look first in the registry when a child ends.
    shard: usize,
    /// Shared environment (registry, stats).
    env: Arc<ActorEnv>,
}

impl Actor for Cohort {
    type Msg = ();
    type State = CohortState;
    type Arguments = CohortState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let stats = &state.env.stats;
        match event {
            // Counted by `activate` (a child may start before it is linked).
            SupervisionEvent::ActorStarted(_) => {}
            SupervisionEvent::ActorTerminated(child, _, _) => {
                decrement(&stats.resident);
                state.env.registry.unbind(state.shard, child.get_id());
            }
            SupervisionEvent::ActorFailed(child, error) => {
                decrement(&stats.resident);
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                let session = state.env.registry.unbind(state.shard, child.get_id());
                // Our own panic messages carry no secrets (messages' Debug prints kinds only).
                tracing::error!(
                    session = ?session,
                    error = %error,
                    "session actor failed; it will be re-activated from the store on next use"
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// Decrements a gauge without wrapping below zero.
fn decrement(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// Spawns the actor for `args.id`, links it under its shard's current cohort, and counts it
/// resident and activated (new if the record was handed over by login, loaded otherwise).
///
/// The spawn runs in the caller's task (so store reads of different activations overlap). The
/// actor is linked right after it started, before anyone else can reach it (it is not in the
/// registry's session slots yet), under the shard's parent lock: a cohort being replaced never
/// gains a child after its children were moved. From then on its cohort sees its end and its
/// panics.
pub async fn activate(
    supervisor: &ActorRef<SupervisorMsg>,
    args: SessionActorArgs,
) -> Result<ActorRef<SessionMsg>, SessionError> {
    let env = Arc::clone(&args.env);
    let id = args.id;
    let counter = if args.preloaded.is_some() {
        &env.stats.activations_new
    } else {
        &env.stats.activations_loaded
    };
    if supervisor.get_status() >= ActorStatus::Draining {
        return Err(shutting_down());
    }
    let actor = match SessionActor::spawn(None, SessionActor, args).await {
        Ok((actor, _detached)) => actor,
        Err(SpawnErr::StartupFailed(error)) => {
            return Err(match error.downcast::<SessionError>() {
                Ok(error) => *error,
                Err(_) if supervisor.get_status() >= ActorStatus::Draining => shutting_down(),
                Err(error) => {
                    SessionError::Internal(format!("session actor failed to start: {error}"))
                }
            });
        }
        Err(error) => {
            return Err(SessionError::Internal(format!(
                "session actor failed to start: {error}"
            )));
        }
    };
    // The registry has as many shards as there are supervisors.
    let shard = shard_of(id, env.registry.shard_count());
    // Counted before it is linked, so before its cohort can count its end (a sweep may stop
    // it as soon as it is linked).
    env.stats.resident.fetch_add(1, Ordering::Relaxed);
    if !adopt(&env.registry, shard, &actor.get_cell()) {
        // Unsupervised, it must not live on: the shard supervisor has stopped (shutdown).
        decrement(&env.stats.resident);
        env.registry.forget(id, actor.get_id());
        actor.stop(None);
        return Err(if supervisor.get_status() >= ActorStatus::Draining {
            shutting_down()
        } else {
            SessionError::Internal("no live cohort to link the session actor under".to_owned())
        });
    }
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(actor)
}

/// Links `child` under the current cohort of `shard`; false if there is none (stopped).
fn adopt(registry: &Registry, shard: usize, child: &ActorCell) -> bool {
    let parent = registry
        .parent(shard)
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let Some(parent) = parent.as_ref() else {
        return false;
    };
    child.link(parent.clone());
    is_linked_to(child, parent)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::SeqCst;

    use ractor::rpc::CallResult;

    use super::*;
    use crate::clock::SystemClock;
    use crate::config::SessionsConfig;
    use crate::ids::SessionId;
    use crate::memory_store::MemoryStore;
    use crate::refresh_token::RefreshKey;
    use crate::rotation::RotationPolicy;
    use crate::stats::SessionStats;

    const PASSIVATE_AFTER: Duration = Duration::from_millis(200);

    /// One shard: a supervisor sweeping every 20 ms over a fresh environment.
    async fn shard() -> (Arc<ActorEnv>, ActorRef<SupervisorMsg>) {
        let env = Arc::new(ActorEnv {
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            config: SessionsConfig {
                policy: RotationPolicy {
                    refresh_idle_ttl: chrono::Duration::days(14),
                    grace_window: chrono::Duration::seconds(10),
                },
                max_ttl: chrono::Duration::days(30),
                passivate_after: PASSIVATE_AFTER,
                staleness: Duration::from_secs(3600),
                call_timeout: Duration::from_secs(5),
                shards: 1,
                refresh_key: RefreshKey::new(vec![1u8; 32]),
            },
            stats: Arc::new(SessionStats::default()),
            registry: Arc::new(Registry::new(1)),
        });
        let args = ShardArgs {
            shard: 0,
            env: Arc::clone(&env),
            sweep_every: Duration::from_millis(20),
        };
        let (supervisor, _) = Actor::spawn(None, ShardSupervisor, args)
            .await
            .expect("supervisor starts");
        (env, supervisor)
    }

    /// Activates a new session (its record handed over, as after login) through the registry.
    async fn activate_one(
        env: &Arc<ActorEnv>,
        supervisor: &ActorRef<SupervisorMsg>,
    ) -> Result<(SessionId, ActorRef<SessionMsg>), SessionError> {
        let record = crate::model::sample_record();
        let id = record.id;
        let actor = env
            .registry
            .get_or_activate(id, |published| {
                let args = SessionActorArgs {
                    id,
                    env: Arc::clone(env),
                    preloaded: Some(record),
                    published,
                };
                activate(supervisor, args)
            })
            .await?;
        Ok((id, actor))
    }

    async fn children(supervisor: &ActorRef<SupervisorMsg>) -> usize {
        match supervisor
            .call(SupervisorMsg::Children, Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(n)) => n,
            other => panic!("no answer: {other:?}"),
        }
    }

    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn parent(env: &ActorEnv) -> Option<ActorCell> {
        env.registry.parent(0).read().unwrap().clone()
    }

    #[tokio::test]
    async fn an_emptied_cohort_is_released_and_the_next_one_takes_new_actors() {
        let (env, supervisor) = shard().await;
        let first = parent(&env).expect("a cohort");
        let n = REPLACE_MIN_PEAK + 44;
        for _ in 0..n {
            activate_one(&env, &supervisor).await.unwrap();
        }
        assert_eq!(env.stats.resident.load(SeqCst), n as u64);
        assert_eq!(children(&supervisor).await, n);

        eventually("every actor passivated and the cohort released", || {
            env.stats.resident.load(SeqCst) == 0 && env.stats.cohorts_released.load(SeqCst) >= 1
        })
        .await;
        assert_eq!(children(&supervisor).await, 0);
        assert_eq!(
            first.get_status(),
            ActorStatus::Stopped,
            "old cohort stopped"
        );
        let second = parent(&env).expect("a new cohort");
        assert_ne!(second.get_id(), first.get_id());
        let (by_session, by_actor) = env.registry.capacity();
        assert!(by_session < 64 && by_actor < 64, "registry shrank");
        assert_eq!(env.stats.passivations.load(SeqCst), n as u64);
        assert_eq!(env.stats.restarts.load(SeqCst), 0);

        let (_, actor) = activate_one(&env, &supervisor).await.unwrap();
        assert!(is_linked_to(&actor.get_cell(), &second));
        assert_eq!(env.stats.resident.load(SeqCst), 1);
        assert_eq!(children(&supervisor).await, 1);

        supervisor.drain_and_wait(None).await.unwrap();
        assert_eq!(actor.get_status(), ActorStatus::Stopped);
        assert_eq!(env.stats.resident.load(SeqCst), 0, "the end was counted");
        assert!(parent(&env).is_none());
        assert!(matches!(
            activate_one(&env, &supervisor).await,
            Err(SessionError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn busy_actors_move_to_the_new_cohort_untouched() {
        let (env, supervisor) = shard().await;
        let first = parent(&env).expect("a cohort");
        let mut busy = Vec::new();
        for i in 0..REPLACE_MIN_PEAK * 2 {
            let (id, actor) = activate_one(&env, &supervisor).await.unwrap();
            if i % 8 == 0 {
                busy.push((id, actor));
            }
        }
        // Keep every eighth session busy while the others passivate.
        let deadline = Instant::now() + Duration::from_secs(20);
        while env.stats.cohorts_released.load(SeqCst) == 0
            || env.stats.resident.load(SeqCst) != busy.len() as u64
        {
            assert!(Instant::now() < deadline, "the idle ones passivate");
            for (_, actor) in &busy {
                let answer = actor
                    .call(SessionMsg::Check, Some(Duration::from_secs(5)))
                    .await;
                assert!(matches!(answer, Ok(CallResult::Success(Ok(_)))));
            }
            tokio::time::sleep(PASSIVATE_AFTER / 8).await;
        }
        let second = parent(&env).expect("a new cohort");
        assert_ne!(second.get_id(), first.get_id());
        assert_eq!(children(&supervisor).await, busy.len());
        for (id, actor) in &busy {
            assert_eq!(
                env.registry.get(*id).map(|a| a.get_id()),
                Some(actor.get_id()),
                "the same actor still serves its session"
            );
            assert!(is_linked_to(&actor.get_cell(), &second));
        }
        assert_eq!(env.stats.restarts.load(SeqCst), 0);

        // The moved actors are supervised by the new cohort: their ends are counted.
        eventually("the busy ones passivate once left alone", || {
            env.stats.resident.load(SeqCst) == 0
        })
        .await;
        assert_eq!(children(&supervisor).await, 0);
        supervisor.drain_and_wait(None).await.unwrap();
    }
}
