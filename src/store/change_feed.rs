//! The change feed: how instances sharing one PostgreSQL database tell each other what changed,
//! so each can trust its memory (session actors, cached profiles) between changes instead of
//! re-reading the database on every request.
//!
//! * **Publishing.** After a session ends (revoked, compromised), is authenticated again
//!   (reauthentication: a new `auth_time` and level), or an account's profile changes, the store sends `NOTIFY sessiond_changes, 's:<session id>'` or `'u:<user id>'`.
//!   Rotations are not published: they are fenced (a stale actor loses its fence and reloads),
//!   and a negative answer is always confirmed from the store.
//! * **Listening.** One task per process holds a `LISTEN` connection and hands each change to
//!   a [`ChangeSink`] (the session engine invalidates that session's actor) and to the profile
//!   cache. When the connection drops, notifications may have been missed: the sink is told to
//!   forget everything ([`ChangeSink::all_changed`]) as soon as listening resumes.
//! * **What bounds a miss.** A notification is sent after its commit, so a process that dies in
//!   between sends none; memory is then trusted at most `staleness` (the safety net, 60 s by
//!   default) before it is re-read.
//! * **SQLite** is a single-process store: nothing is published and nothing listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::store::{SessionChange, StoreError, WriteOutcome};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::{Inner, Store, UserProfile};
use crate::cache::GenerationalCache;

/// The PostgreSQL channel.
pub const CHANNEL: &str = "sessiond_changes";

/// How old a cached profile may be served when nothing said it changed (overridden by the
/// `staleness` setting through [`Store::with_profile_cache`]).
pub const DEFAULT_PROFILE_MAX_AGE: Duration = Duration::from_secs(60);

/// Profiles cached at most (per generation; about 250 bytes each).
const PROFILE_CAPACITY: usize = 50_000;

/// A generation's life in the profile cache unless set (see [`Store::with_profile_cache`]):
/// an unused profile is dropped after 30–60 s.
pub const DEFAULT_PROFILE_PERIOD: Duration = Duration::from_secs(30);

/// Pause before listening again after the connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A session ended (or otherwise changed in a way a check must see).
    Session(SessionId),
    /// An account's profile changed.
    User(UserId),
}

impl Change {
    /// The NOTIFY payload.
    pub fn encode(&self) -> String {
        match self {
            Self::Session(id) => format!("s:{}", id.as_uuid()),
            Self::User(id) => format!("u:{}", id.as_uuid()),
        }
    }

    /// Parses a payload; `None` for anything else (from a newer version, say), which is
    /// ignored.
    pub fn decode(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "s" => Some(Self::Session(SessionId(id))),
            "u" => Some(Self::User(UserId(id))),
            _ => None,
        }
    }
}

/// Told what changed. Implemented by the application (it invalidates session actors).
pub trait ChangeSink: Send + Sync {
    /// `change` happened (here or on another instance).
    fn changed(&self, change: Change);
    /// Anything may have changed: the feed was down for a while.
    fn all_changed(&self);
}

/// Account profiles cached by [`Store::profile`].
pub struct ProfileCache {
    cache: GenerationalCache<UserId, Arc<UserProfile>>,
    /// Bumped by every invalidation; see [`ProfileCache::insert_if_unchanged`].
    invalidations: AtomicU64,
}

impl ProfileCache {
    /// An empty cache serving entries at most `max_age` old, dropping unused ones after one
    /// to two `period`s.
    pub fn new(max_age: Duration, period: Duration) -> Self {
        Self {
            cache: GenerationalCache::new(PROFILE_CAPACITY, period, max_age),
            invalidations: AtomicU64::new(0),
        }
    }

    pub(super) fn get(&self, id: UserId) -> Option<Arc<UserProfile>> {
        self.cache.get(&id)
    }

    /// The invalidation count, read before a database read.
    pub(super) fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// Caches `profile` unless an invalidation happened since `seen` was read: the row read
    /// may then predate the change.
    pub(super) fn insert_if_unchanged(&self, id: UserId, profile: Arc<UserProfile>, seen: u64) {
        self.cache.insert(id, profile);
        if self.invalidations() != seen {
            self.cache.invalidate(&id);
        }
    }

    fn invalidate(&self, id: UserId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(&id);
    }

    fn clear(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.cache.clear();
    }
}

impl Store {
    /// Account `id` changed through this store: forget its cached profile here and tell the
    /// other instances.
    pub(super) async fn user_changed(&self, id: UserId) {
        self.profiles.invalidate(id);
        self.publish(Change::User(id)).await;
    }

    /// Publishes a committed change other instances' actors must see at once: the end of a
    /// session, or a new authentication (sensitive actions read its time and level, so an
    /// instance must not answer `insufficient_user_authentication` from memory that predates
    /// a reauthentication made through another one).
    pub(super) fn session_changed(
        &self,
        change: &SessionChange,
        result: &Result<WriteOutcome, StoreError>,
    ) {
        let visible = matches!(
            change,
            SessionChange::Revoke { .. }
                | SessionChange::Compromise { .. }
                | SessionChange::Authenticate { .. }
        );
        if visible && matches!(result, Ok(WriteOutcome::Committed { .. })) {
            // Sent from its own task: the session's actor (and its mailbox) need not wait a
            // further round trip for other instances to be told.
            let store = self.clone();
            let id = change.session_id();
            tokio::spawn(async move { store.publish(Change::Session(id)).await });
        }
    }

    /// Tells every other instance, and waits until told, that these sessions ended. `apply`
    /// already publishes each end from a task of its own; a short-lived process (the
    /// `sessiond user disable` command) calls this too, so it cannot exit before the news has
    /// left. A second notification of one end is harmless: it only invalidates again.
    pub async fn publish_sessions_ended(&self, ids: &[SessionId]) {
        for id in ids {
            self.publish(Change::Session(*id)).await;
        }
    }

    /// Sends `change` to every listening instance (PostgreSQL; nothing on SQLite). A failure
    /// is logged, not returned: the change itself is committed, and other instances re-read
    /// within `staleness` anyway.
    async fn publish(&self, change: Change) {
        let Inner::Postgres(s) = &self.inner else {
            return;
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.encode())
            .execute(&s.pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, ?change, "could not publish a change to other instances");
        }
    }

    /// Forgets every cached profile older than the cache's period; run periodically (see
    /// [`spawn_change_feed`]).
    fn sweep_profiles(&self) {
        self.profiles.cache.sweep();
    }
}

/// What the feed reports, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// A notification arrived (this instance's own included).
    Received,
    /// Listening started again after the connection was lost; cached state was invalidated.
    Reconnected,
}

/// Told about every [`FeedEvent`]; must be quick.
pub type FeedObserver = Arc<dyn Fn(FeedEvent) + Send + Sync>;

/// Starts the background work of the feed: on PostgreSQL, the listener; on both backends, the
/// profile cache's sweep. Ends when `shutdown` flips to true.
pub fn spawn_change_feed(
    store: &Store,
    sink: Arc<dyn ChangeSink>,
    observer: FeedObserver,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(store.profiles.cache.period() / 2);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let listen = listen_forever(&store, sink.as_ref(), observer.as_ref());
        tokio::pin!(listen);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = sweep.tick() => store.sweep_profiles(),
                () = &mut listen => {
                    // SQLite: nothing to listen to; keep sweeping until shutdown.
                    loop {
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            _ = sweep.tick() => store.sweep_profiles(),
                        }
                    }
                }
            }
        }
    })
}

/// Listens on PostgreSQL until the process ends; returns at once on SQLite.
async fn listen_forever(
    store: &Store,
    sink: &dyn ChangeSink,
    observe: &(dyn Fn(FeedEvent) + Send + Sync),
) {
    let Inner::Postgres(s) = &store.inner else {
        return;
    };
    let mut first = true;
    loop {
        let mut listener = match PgListener::connect_with(&s.pool).await {
            Ok(listener) => listener,
            Err(_) if s.pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "change feed: cannot connect; retrying");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "change feed: LISTEN failed; retrying");
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        }
        if !first {
            // Whatever happened while we were not listening is unknown: forget it all.
            observe(FeedEvent::Reconnected);
            store.profiles.clear();
            sink.all_changed();
            tracing::info!("change feed: listening again; cached state invalidated");
        }
        first = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    observe(FeedEvent::Received);
                    match Change::decode(notification.payload()) {
                        Some(change) => {
                            if let Change::User(id) = change {
                                store.profiles.invalidate(id);
                            }
                            sink.changed(change);
                        }
                        None => tracing::debug!("change feed: unknown payload ignored"),
                    }
                }
                Ok(None) => {
                    tracing::warn!("change feed: connection lost; reconnecting");
                    break;
                }
                Err(_) if s.pool.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: receive failed; reconnecting");
                    break;
                }
            }
        }
        // Also covers the window before the next LISTEN: `all_changed` runs once it is up.
        store.profiles.clear();
        sink.all_changed();
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_ignored() {
        let s = Change::Session(SessionId(Uuid::now_v7()));
        let u = Change::User(UserId(Uuid::now_v7()));
        assert_eq!(Change::decode(&s.encode()), Some(s));
        assert_eq!(Change::decode(&u.encode()), Some(u));
        for junk in ["", "s:", "x:0190", "s:not-a-uuid", "no colon"] {
            assert_eq!(Change::decode(junk), None, "{junk:?}");
        }
    }
}
