//! Shard supervisors: the parents of the session actors.
//!
//! Sessions are spread over a fixed number of shard supervisors by a hash of their id (see
//! [`crate::registry::shard_of`]), so supervision events of a million actors are not funnelled
//! through one mailbox. A supervisor:
//!
//! - is the parent every session actor of its shard is spawned linked under ([`activate`]);
//! - keeps the resident gauge exact (started +1, terminated or failed −1), because it sees every
//!   child's start and end, panics included, where the children themselves cannot;
//! - applies the restart policy, which is *lazy*: a failed actor is removed from the registry and
//!   counted as a restart, and the next request for its session re-activates it from the store
//!   (the store, not the dead actor's memory, is the authority, so nothing is lost);
//! - drives passivation: every `sweep_every` it sends each child a
//!   [`SessionMsg::PassivationTick`], and children idle for `passivate_after` stop themselves.
//!   One timer per shard instead of one per actor keeps resident actors small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{
    Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr, SupervisionEvent,
};

use crate::session_actor::{ActorEnv, SessionActor, SessionActorArgs, SessionMsg};
use crate::sessions::{SessionError, shutting_down};

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
}

/// Messages of a shard supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Timer tick: send every child a passivation tick.
    Sweep,
    /// How many children are linked under this supervisor right now (diagnostics, tests).
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
        Ok(ShardState {
            shard: args.shard,
            env: args.env,
            sweep_every: args.sweep_every,
            sweeper: None,
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

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(sweeper) = state.sweeper.take() {
            sweeper.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Sweep => {
                for child in myself.get_children() {
                    // A child that is already stopping rejects the tick; nothing to do then.
                    let _ = child.send_message(SessionMsg::PassivationTick);
                }
            }
            SupervisorMsg::Children(reply) => {
                let _ = reply.send(myself.get_children().len());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let stats = &state.env.stats;
        match event {
            SupervisionEvent::ActorStarted(_) => {
                stats.resident.fetch_add(1, Ordering::Relaxed);
            }
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

/// Spawns the actor for `args.id`, linked under `supervisor`, and counts the activation
/// (new if the record was handed over by login, loaded otherwise).
///
/// The spawn runs in the caller's task (so store reads of different activations overlap), while
/// the link makes the supervisor see the actor's start, end and panics.
pub async fn activate(
    supervisor: &ActorRef<SupervisorMsg>,
    args: SessionActorArgs,
) -> Result<ActorRef<SessionMsg>, SessionError> {
    let stats = Arc::clone(&args.env.stats);
    let counter = if args.preloaded.is_some() {
        &stats.activations_new
    } else {
        &stats.activations_loaded
    };
    if supervisor.get_status() >= ActorStatus::Draining {
        return Err(shutting_down());
    }
    match SessionActor::spawn_linked(None, SessionActor, args, supervisor.get_cell()).await {
        Ok((actor, _detached)) => {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(actor)
        }
        Err(SpawnErr::StartupFailed(error)) => match error.downcast::<SessionError>() {
            Ok(error) => Err(*error),
            Err(_) if supervisor.get_status() >= ActorStatus::Draining => Err(shutting_down()),
            Err(error) => Err(SessionError::Internal(format!(
                "session actor failed to start: {error}"
            ))),
        },
        Err(error) => Err(SessionError::Internal(format!(
            "session actor failed to start: {error}"
        ))),
    }
}
