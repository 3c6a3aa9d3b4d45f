//! Durable storage: users, sessions and the refresh-token history, on PostgreSQL or SQLite.
//!
//! [`Store`] is the one handle the rest of the service holds. It implements the actors'
//! [`SessionStore`] port and the account/listing queries the HTTP layer needs, and hides which
//! database is behind it (chosen by URL scheme in [`Store::connect`]) so that no sqlx type leaks
//! past this module: callers see only domain types, [`StoreError`] and [`CreateUserError`].
//!
//! Both backends keep the same contract, checked by `tests/store_conformance.rs`:
//! every session change is fenced on the stored version (zero rows updated means
//! [`WriteOutcome::Conflict`] and nothing written), a rotation records the new generation in the
//! token history in the same transaction, and timestamps round-trip at microsecond precision.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::SessionRecord;
use sessiond_actors::refresh_token::TokenHash;
use sessiond_actors::store::{SessionChange, SessionStore, WriteOutcome};

/// Re-exported so callers of [`Store`] need not depend on the actors crate for its error type.
pub use sessiond_actors::store::StoreError;

pub mod api_keys;
pub mod applications;
pub mod audit;
pub mod authorize;
pub mod breaker;
pub mod change_feed;
mod codec;
mod dialect;
mod direct_connections;
pub mod group_commit;
pub mod media;
pub mod mfa;
mod oauth_origins;
pub mod oidc;
pub mod passkeys;
mod postgres;
pub mod purge;
mod records;
pub mod second_factor;
pub mod seed;
mod session_writes;
mod sqlite;
pub mod users;
pub mod verification;

use codec::corrupt;
pub use purge::spawn_purge;

/// Which database a [`Store`] talks to; for logs, metrics and backend-specific tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL (`postgres://` or `postgresql://`).
    Postgres,
    /// SQLite (`sqlite:`), for single-node deployments and development.
    Sqlite,
}

impl Backend {
    /// A stable lowercase name, usable as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Whether an account may log in; stored so an administrator can lock an account without
/// deleting it (its sessions and audit trail stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May log in.
    Active,
    /// Locked out; logins are refused.
    Disabled,
}

impl UserStatus {
    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// What the API shows of an account: [`User`] without credentials. Served from a cache by
/// [`Store::profile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserProfile {
    /// The account's id.
    pub id: UserId,
    /// Login email (normalised).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Whether the account may log in.
    pub status: UserStatus,
    /// When the email address was proven, if it was.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// The uploaded avatar (`crate::media`), if any.
    pub avatar: Option<crate::media::MediaRef>,
}

impl From<&User> for UserProfile {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            status: u.status,
            email_verified_at: u.email_verified_at,
            created_at: u.created_at,
            avatar: u.avatar,
        }
    }
}

/// An account, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id (UUIDv7).
    pub id: UserId,
    /// Login email, already normalised by the caller; unique.
    pub email: String,
    /// Display name, if the user gave one.
    pub name: Option<String>,
    /// Whether the account may log in.
    pub status: UserStatus,
    /// PHC-format password hash; None for accounts without a password (passkeys, external
    /// logins). Never printed by `Debug`.
    pub password_hash: Option<String>,
    /// When the email address was proven, if it was.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account row last changed.
    pub updated_at: DateTime<Utc>,
    /// The uploaded avatar (`crate::media`), if any.
    pub avatar: Option<crate::media::MediaRef>,
}

impl fmt::Debug for User {
    /// The password hash is left out: it is offline-attackable and has no business in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("status", &self.status)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("email_verified_at", &self.email_verified_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("avatar", &self.avatar)
            .finish()
    }
}

/// What registration supplies to create an account; the store assigns id, status and times.
#[derive(Clone)]
pub struct NewUser {
    /// Login email, already normalised by the caller.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// PHC-format password hash, or None for an account without a password.
    pub password_hash: Option<String>,
}

impl fmt::Debug for NewUser {
    /// The password hash is left out, as for [`User`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("name", &self.name)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why an account could not be created; the duplicate email is a business outcome the caller
/// must answer differently from an outage.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account already uses this email.
    #[error("email already registered")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle to the database: cheap to clone (a pool inside), shared by actors, HTTP handlers and
/// the purge task.
#[derive(Clone)]
pub struct Store {
    inner: Inner,
    /// Told the duration and outcome of every call (metrics); see [`Store::with_observer`].
    observer: Option<Arc<dyn StoreObserver>>,
    /// The batching front of `SessionStore::apply`, when enabled (see [`group_commit`]).
    group_commit: Option<Arc<group_commit::GroupCommitter>>,
    /// Account profiles for the hot read paths; see [`Store::profile`].
    profiles: Arc<change_feed::ProfileCache>,
    /// Fails calls at once while the database is known to be unreachable; see [`breaker`].
    breaker: Arc<breaker::CircuitBreaker>,
}

/// Told about every [`Store`] call, for metrics. Implemented outside the store (in
/// `crate::metrics`) so that no metrics type appears here. Called on the caller's task right
/// after the call: must be quick and must not block.
pub trait StoreObserver: Send + Sync {
    /// `operation` (the backend method's name, e.g. `apply`, `load_session`) took `elapsed`
    /// and failed with `error`, or succeeded when `error` is None. A duplicate email is a
    /// success here: it is an answer, not a failure of the store.
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StoreError>);
}

/// One connection pool's occupancy, for gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pool: `main` and `direct` (PostgreSQL: the pool, and the connections the request
    /// path keeps outside it, see `store/direct_connections.rs`), `writer` or `reader` (SQLite).
    pub pool: &'static str,
    /// Connections open now (idle or in use).
    pub size: u32,
    /// Of those, idle ones.
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

/// The store error inside a call's result, if any, and the result of a call the circuit
/// breaker refused; lets [`Store::run_call`] report every call.
trait CallOutcome {
    fn store_error(&self) -> Option<&StoreError>;
    fn refused(error: StoreError) -> Self;
}

impl<T> CallOutcome for Result<T, StoreError> {
    fn store_error(&self) -> Option<&StoreError> {
        self.as_ref().err()
    }

    fn refused(error: StoreError) -> Self {
        Err(error)
    }
}

impl<T> CallOutcome for Result<T, CreateUserError> {
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            Err(CreateUserError::Store(e)) => Some(e),
            _ => None,
        }
    }

    fn refused(error: StoreError) -> Self {
        Err(error.into())
    }
}

#[derive(Clone)]
enum Inner {
    Postgres(postgres::PgStore),
    Sqlite(sqlite::SqliteStore),
}

impl Inner {
    /// The circuit breaker's probe: bypasses the breaker (it must reach the database while
    /// the breaker refuses everyone else).
    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Inner::Postgres(s) => s.ping().await,
            Inner::Sqlite(s) => s.ping().await,
        }
    }

    /// Whether the pools were closed (shutdown): the probe then stops.
    fn is_closed(&self) -> bool {
        match self {
            Inner::Postgres(s) => s.pool.is_closed(),
            Inner::Sqlite(s) => s.reader.is_closed(),
        }
    }
}

impl fmt::Debug for Store {
    /// Only the backend: the URL may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Calls the same method on whichever backend is behind `self` through [`Store::run_call`],
/// named after the method.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        $self
            .run_call(stringify!($method), async {
                match &$self.inner {
                    Inner::Postgres(s) => s.$method($($arg),*).await,
                    Inner::Sqlite(s) => s.$method($($arg),*).await,
                }
            })
            .await
    };
}

impl Store {
    /// Opens a connection pool for `url`: `postgres://` / `postgresql://` for PostgreSQL,
    /// `sqlite:` for SQLite (add `?mode=rwc` to create the file). Connects eagerly so a wrong
    /// URL or an unreachable server fails at startup, but does not migrate (see
    /// [`Store::migrate`]), so several instances can start against one database.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, PoolSettings::default()).await
    }

    /// [`Store::connect`] with the pool's settings (`SESSIOND_DB_ACQUIRE_TIMEOUT`,
    /// `SESSIOND_DB_MAX_CONNECTIONS`).
    pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Store, StoreError> {
        let breaker = Arc::<breaker::CircuitBreaker>::default();
        let inner = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Inner::Postgres(postgres::PgStore::connect(url, settings, Arc::clone(&breaker)).await?)
        } else if url.starts_with("sqlite:") {
            Inner::Sqlite(sqlite::SqliteStore::connect(url, settings.acquire_timeout).await?)
        } else {
            // Do not echo the URL: it may contain a password.
            return Err(StoreError::Other(
                "unsupported database URL scheme (expected postgres://, postgresql:// or sqlite:)"
                    .into(),
            ));
        };
        Ok(Store {
            inner,
            observer: None,
            group_commit: None,
            profiles: Arc::new(change_feed::ProfileCache::new(
                change_feed::DEFAULT_PROFILE_MAX_AGE,
                change_feed::DEFAULT_PROFILE_PERIOD,
            )),
            breaker,
        })
    }

    /// Runs one store call, the only way the store reaches its database: consults the circuit
    /// breaker first (refusing at once, without polling `call`, while it is open), then tells
    /// the observer the call's duration and outcome under `operation` (a name from
    /// `metrics::observers`' lists) and the breaker its outcome, so a connection failure in
    /// any call opens it.
    async fn run_call<R: CallOutcome>(
        &self,
        operation: &'static str,
        call: impl Future<Output = R>,
    ) -> R {
        let admission = match self.breaker.admit() {
            Ok(admission) => admission,
            Err(refused) => {
                self.observe_refusal(operation, &refused);
                return R::refused(refused);
            }
        };
        let started = std::time::Instant::now();
        let result = call.await;
        let error = result.store_error();
        if let Some(observer) = &self.observer {
            observer.observe(operation, started.elapsed(), error);
        }
        self.circuit_saw(admission, error);
        result
    }

    /// [`Store::run_call`] for the store modules' own queries (`mfa`, `audit`, ...): `call`
    /// matches on `self.inner` itself.
    async fn observed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.run_call(operation, call).await
    }

    /// Reports an admitted call's outcome to the circuit breaker, and starts the background
    /// probe when this failure opened it.
    fn circuit_saw(&self, admission: breaker::Admission, error: Option<&StoreError>) {
        if !self.breaker.record(admission, error) {
            return;
        }
        let (ping, stopped) = (self.inner.clone(), self.inner.clone());
        tokio::spawn(breaker::probe(
            Arc::clone(&self.breaker),
            breaker::ProbeTiming::DEFAULT,
            move || {
                let inner = ping.clone();
                async move { inner.ping().await }
            },
            move || stopped.is_closed(),
        ));
    }

    /// Counts a call refused by the open circuit as a failed store call, so that store error
    /// rates (and the alerts on them) keep showing an outage for as long as it lasts.
    fn observe_refusal(&self, operation: &'static str, refused: &StoreError) {
        if let Some(observer) = &self.observer {
            observer.observe(operation, Duration::ZERO, Some(refused));
        }
    }

    /// Whether the store circuit is open (calls refused until a probe reaches the database).
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// How many times the store circuit opened since start.
    pub fn circuit_openings(&self) -> u64 {
        self.breaker.openings()
    }

    /// Calls `observer` with the circuit's state now and at every change (`true` = open), for
    /// the gauge and the openings counter.
    pub fn observe_circuit(&self, observer: breaker::CircuitObserver) {
        self.breaker.observe(observer);
    }

    /// This store, reporting every call to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn StoreObserver>) -> Store {
        self.observer = Some(observer);
        self
    }

    /// Occupancy of each connection pool, for gauges.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        fn stats<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                pool,
                size: p.size(),
                max: p.options().get_max_connections(),
                idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
            }
        }
        match &self.inner {
            Inner::Postgres(s) => vec![
                stats("main", &s.pool),
                s.direct_stats(self.pg_batch_slots()),
            ],
            Inner::Sqlite(s) => vec![stats("writer", &s.writer), stats("reader", &s.reader)],
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Postgres(_) => Backend::Postgres,
            Inner::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the embedded migrations for this backend; idempotent, and safe to run from
    /// several instances at once (sqlx takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    /// A cheap round trip (`SELECT 1`) for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Creates an active account with a fresh UUIDv7 id. A duplicate email is
    /// [`CreateUserError::EmailTaken`], decided by the database's unique constraint so two
    /// concurrent registrations cannot both succeed.
    ///
    /// Records a `register` audit event in the same transaction (without client details; see
    /// [`Store::create_user_from`]).
    pub async fn create_user(&self, new: &NewUser) -> Result<User, CreateUserError> {
        self.create_user_from(new, &audit::AuditClient::default())
            .await
    }

    /// [`Store::create_user`], recording where the registration came from in its `register`
    /// audit event.
    pub async fn create_user_from(
        &self,
        new: &NewUser,
        client: &audit::AuditClient,
    ) -> Result<User, CreateUserError> {
        let now = truncate_to_micros(Utc::now());
        let user = User {
            id: UserId::new(),
            email: new.email.clone(),
            name: new.name.clone(),
            status: UserStatus::Active,
            password_hash: new.password_hash.clone(),
            email_verified_at: None,
            created_at: now,
            updated_at: now,
            avatar: None,
        };
        let event = audit::AuditEvent::new(audit::kind::REGISTER, now)
            .user(user.id)
            .client(client)
            .detail(
                "method",
                if user.password_hash.is_some() {
                    "password"
                } else {
                    "passwordless"
                },
            );
        dispatch!(self.insert_user(&user, &event))?;
        event.log();
        Ok(user)
    }

    /// The account with this (normalised) email, if any.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self.find_user_by_email(email))
    }

    /// The account with this id, if any.
    pub async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        dispatch!(self.get_user(id))
    }

    /// What the API shows of account `id`, from a short-lived cache when possible: the hot
    /// paths (`/me`, refresh) then need no database read. Every account change made through
    /// this store invalidates it, here and (PostgreSQL) on every other instance through the
    /// change feed; a lost notification is bounded by the cache's maximum age (the
    /// `staleness` setting). Never use it for decisions that need the password hash or other
    /// credentials: it holds none.
    pub async fn profile(&self, id: UserId) -> Result<Option<Arc<UserProfile>>, StoreError> {
        if let Some(profile) = self.profiles.get(id) {
            return Ok(Some(profile));
        }
        let seen = self.profiles.invalidations();
        let Some(user) = self.get_user(id).await? else {
            return Ok(None);
        };
        let profile = Arc::new(UserProfile::from(&user));
        // Cached only if no invalidation happened while we read, so a change that raced
        // this read cannot leave the older row in the cache.
        self.profiles
            .insert_if_unchanged(id, Arc::clone(&profile), seen);
        Ok(Some(profile))
    }

    /// Sets how old a cached profile may be served (the `staleness` setting) and how soon an
    /// unused one is dropped (one to two `period`s).
    pub fn with_profile_cache(mut self, max_age: Duration, period: Duration) -> Store {
        self.profiles = Arc::new(change_feed::ProfileCache::new(max_age, period));
        self
    }

    /// Active, unexpired sessions of a user, newest first (id DESC), keyset-paginated:
    /// `before` = the last id of the previous page.
    ///
    /// "Unexpired" means `expires_at > now` (absolute lifetime only; the idle lifetime is a
    /// rule of the actors). A `limit` of 0 returns nothing.
    pub async fn list_active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        before: Option<SessionId>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self.list_active_sessions(user, now, before, limit))
    }

    /// Ids of every active, unexpired session of a user, for "revoke all" and password changes.
    pub async fn active_session_ids(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, StoreError> {
        dispatch!(self.active_session_ids(user, now))
    }

    /// Deletes sessions (and their token history) that ended (revoked, compromised or expired)
    /// before `cutoff`; returns how many.
    ///
    /// Works in small batches so it never holds locks (or SQLite's single writer) for long.
    pub async fn purge_ended(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        dispatch!(self.purge_ended(cutoff))
    }

    /// Closes the pool(s), waiting for checked-out connections to be returned; for graceful
    /// shutdown. Later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match &self.inner {
            Inner::Postgres(s) => s.close().await,
            Inner::Sqlite(s) => s.close().await,
        }
    }
}

#[async_trait]
impl SessionStore for Store {
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        dispatch!(self.insert_session(session))
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        dispatch!(self.load_session(id))
    }

    async fn find_generation(
        &self,
        id: SessionId,
        hash: &TokenHash,
    ) -> Result<Option<u64>, StoreError> {
        dispatch!(self.find_generation(id, hash))
    }

    async fn apply(&self, change: &SessionChange) -> Result<WriteOutcome, StoreError> {
        if let Some(group) = &self.group_commit {
            // While the circuit is open a change fails here, before it is queued: nothing is
            // written, so the actor keeps its state and the client its token.
            let result = self.run_call("apply", group.apply(change)).await;
            self.session_changed(change, &result);
            return result;
        }
        // Boxed, so that the backends' large write futures do not inflate this future, which
        // every session actor's commit holds, on the group-commit path above.
        let result = Box::pin(async { dispatch!(self.apply(change)) }).await;
        self.session_changed(change, &result);
        result
    }
}

/// Drops sub-microsecond precision: both backends store microseconds, so values the store
/// creates itself are truncated up front and compare equal after a round trip.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The moment a session ended by revocation or compromise (the earlier if both), for purging.
fn ended_at(s: &SessionRecord) -> Option<DateTime<Utc>> {
    match (s.revoked, s.compromised) {
        (Some((a, _)), Some((b, _))) => Some(a.min(b)),
        (Some((a, _)), None) | (None, Some((a, _))) => Some(a),
        (None, None) => None,
    }
}

/// Stored generations are signed 64-bit; a generation beyond that is a bug, not data.
fn generation_to_db(generation: u64) -> Result<i64, StoreError> {
    i64::try_from(generation)
        .map_err(|_| StoreError::Other("generation out of range for storage".into()))
}

/// Reads back a stored generation; a negative one means a corrupt row.
fn generation_from_db(generation: i64) -> Result<u64, StoreError> {
    u64::try_from(generation).map_err(|_| corrupt("negative generation"))
}

/// How long a call waits for a pooled connection by default (`SESSIOND_DB_ACQUIRE_TIMEOUT`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection pool's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// How long a call may wait for a pooled connection before it fails as unavailable. While
    /// the database is down, only the call that opens the circuit breaker waits this long;
    /// later ones fail at once.
    pub acquire_timeout: Duration,
    /// Most connections of the PostgreSQL pool (the request path keeps up to
    /// group commit's slots + 8 more of its own, see `store/direct_connections.rs`).
    /// SQLite's pools are sized by SQLite's locking: one writer and a few readers.
    pub max_connections: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            max_connections: 16,
        }
    }
}

/// How many sessions one purge statement deletes at most.
const PURGE_BATCH: i64 = 500;

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Remembers the operations it was told about.
    #[derive(Default)]
    struct Seen(Mutex<Vec<&'static str>>);

    impl StoreObserver for Seen {
        fn observe(&self, operation: &'static str, _: Duration, _: Option<&StoreError>) {
            self.0.lock().unwrap().push(operation);
        }
    }

    #[tokio::test]
    async fn the_store_modules_calls_are_observed() {
        let seen = Arc::new(Seen::default());
        let store = Store::connect("sqlite::memory:")
            .await
            .unwrap()
            .with_observer(seen.clone());
        store.migrate().await.unwrap();
        let user = store
            .create_user(&NewUser {
                email: "observed@example.com".into(),
                name: None,
                password_hash: None,
            })
            .await
            .unwrap();
        let now = Utc::now();
        assert!(store.set_user_name(user.id, Some("O"), now).await.unwrap());
        store.mfa_status(user.id).await.unwrap();
        store.second_factor_lock(user.id).await.unwrap();
        store
            .record_event(&audit::AuditEvent::new("test_event", now).user(user.id))
            .await
            .unwrap();
        store
            .find_api_key("000000000000000000000000")
            .await
            .unwrap();
        let seen = seen.0.lock().unwrap().clone();
        for op in [
            "migrate",
            "insert_user",
            "set_user_name",
            "mfa_status",
            "second_factor_lock",
            "record_event",
            "find_api_key",
        ] {
            assert!(seen.contains(&op), "{op} not observed: {seen:?}");
        }
    }
}
