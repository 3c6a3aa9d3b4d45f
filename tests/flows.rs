//! The authentication flows (`sessiond::auth`) driven directly, without HTTP — the way kanidm
//! tests its `idm` flows: each test builds the pieces the flows borrow (store, session engine,
//! hasher, limiter, MFA keys, a clock it moves by hand) against a fresh PostgreSQL database or
//! SQLite file. The HTTP suite (`tests/api`) covers the same flows through the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sessiond::auth::login::{LoginOutcome, PasswordLogin, password_login};
use sessiond::auth::mfa_login::{self, Proof};
use sessiond::auth::reauth::{ActionClass, ActionClasses, ReauthPolicy, require_action};
use sessiond::auth::sessions::revoke_all;
use sessiond::auth::{Auth, AuthError};
use sessiond::auth::{current_password, second_factor};
use sessiond::crypto::password::PasswordHasher;
use sessiond::domain::Password;
use sessiond::mfa::{Mfa, TotpSecret};
use sessiond::ratelimit::{Limiter, LockPolicy, RateLimitSettings};
use sessiond::store::audit::{AuditClient, AuditEvent};
use sessiond::store::{NewUser, Store, User};
use sessiond::testing::{TestBackend, TestDatabase};
use sessiond_actors::clock::{Clock, SharedClock};
use sessiond_actors::model::{RevokeReason, SessionStatus};
use sessiond_actors::refresh_token::RefreshKey;
use sessiond_actors::rotation::RotationPolicy;
use sessiond_actors::sessions::{Sessions, SessionsConfig};
use sessiond_actors::store::SessionStore;

#[macro_use]
#[path = "support/backends.rs"]
mod backends;

const PASSWORD: &str = "correct horse battery";

/// A clock the test moves by hand.
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Everything the flows borrow, owned by the test.
struct Ctx {
    store: Store,
    sessions: Sessions,
    passwords: PasswordHasher,
    limiter: Arc<Limiter>,
    mfa: Mfa,
    manual: Arc<ManualClock>,
    clock: SharedClock,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl Ctx {
    async fn new(backend: TestBackend) -> Self {
        Self::with_limits(backend, RateLimitSettings::default()).await
    }

    async fn with_limits(backend: TestBackend, limits: RateLimitSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = backend.fresh_database(dir.path()).await;
        let store = Store::connect(db.url()).await.expect("connect");
        store.migrate().await.expect("migrate");
        let manual = Arc::new(ManualClock(Mutex::new(Utc::now())));
        let clock: SharedClock = manual.clone();
        let refresh_key = RefreshKey::new(vec![7u8; 32]);
        let sessions = Sessions::start(
            Arc::new(store.clone()) as Arc<dyn SessionStore>,
            clock.clone(),
            SessionsConfig {
                policy: RotationPolicy {
                    refresh_idle_ttl: chrono::Duration::days(30),
                    grace_window: chrono::Duration::seconds(10),
                },
                max_ttl: chrono::Duration::days(90),
                passivate_after: Duration::from_secs(60),
                staleness: Duration::from_secs(60),
                call_timeout: Duration::from_secs(10),
                shards: 2,
                refresh_key: refresh_key.clone(),
            },
        )
        .await
        .expect("session engine");
        // Cheap argon2: the real code path without seconds of hashing.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        Self {
            store,
            sessions,
            passwords: PasswordHasher::new(params, 2, 256),
            limiter: Limiter::new(limits, None, None).unwrap(),
            mfa: Mfa::new(&refresh_key, "sessiond".into(), Duration::from_secs(300)),
            manual,
            clock,
            _db: db,
            _dir: dir,
        }
    }

    fn auth(&self) -> Auth<'_> {
        self.auth_requiring(ActionClasses::NONE)
    }

    /// The flows' view with `aal2_for` as `SESSIOND_REQUIRE_AAL2_FOR` (reauthentication window
    /// 5 minutes).
    fn auth_requiring(&self, aal2_for: ActionClasses) -> Auth<'_> {
        Auth {
            store: &self.store,
            sessions: &self.sessions,
            passwords: &self.passwords,
            limiter: &self.limiter,
            mfa: &self.mfa,
            clock: &self.clock,
            require_verified_email: false,
            reauth: ReauthPolicy {
                max_age: Duration::from_secs(300),
                aal2_for,
            },
        }
    }

    async fn user(&self, email: &str) -> User {
        let hash = self
            .passwords
            .hash(&Password::parse(PASSWORD.to_owned()).unwrap())
            .await
            .unwrap();
        self.store
            .create_user(&NewUser {
                email: email.to_owned(),
                name: None,
                password_hash: Some(hash),
            })
            .await
            .unwrap()
    }

    /// Turns TOTP on for `user`; returns the secret (the test's authenticator app).
    async fn enrol(&self, user: &User) -> TotpSecret {
        let secret = TotpSecret::generate();
        let sealed = self.mfa.seal(user.id, &secret);
        let now = self.clock.now();
        assert!(
            self.store
                .begin_totp_enrolment(user.id, &sealed, now)
                .await
                .unwrap()
        );
        let hashes: Vec<[u8; 32]> = self
            .mfa
            .new_recovery_codes()
            .iter()
            .map(|(_, h)| *h)
            .collect();
        let step = sessiond::mfa::step_of(now.timestamp() as u64);
        let event = AuditEvent::new("mfa_enabled", now).user(user.id);
        assert!(
            self.store
                .enable_totp(user.id, &sealed.nonce, step, &hashes, now, &event)
                .await
                .unwrap()
        );
        secret
    }

    /// The code an authenticator shows `steps` TOTP steps after the clock's now.
    fn code(&self, secret: &TotpSecret, steps: i64) -> String {
        let t = self.clock.now() + chrono::Duration::seconds(30 * steps);
        secret.code_at(t.timestamp() as u64)
    }

    async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, AuthError> {
        password_login(
            &self.auth(),
            PasswordLogin {
                email: email.to_owned(),
                password: password.to_owned(),
                device_name: None,
                client: client(),
            },
        )
        .await
    }

    /// Logs in with the right password of an MFA user; returns the challenge id.
    async fn challenge(&self, email: &str) -> uuid::Uuid {
        match self.login(email, PASSWORD).await {
            Ok(LoginOutcome::MfaRequired(c)) => c.challenge_id,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    async fn complete(
        &self,
        challenge: uuid::Uuid,
        code: String,
    ) -> Result<sessiond::auth::sessions::IssuedSession, AuthError> {
        mfa_login::complete(&self.auth(), challenge, &Proof::Totp(code), &client()).await
    }
}

fn client() -> AuditClient {
    AuditClient {
        ip: Some("192.0.2.10".into()),
        user_agent: Some("flows-test".into()),
    }
}

/// A six-digit code no step near now accepts.
fn wrong_code(ctx: &Ctx, secret: &TotpSecret) -> String {
    let valid: Vec<String> = (-2..=2).map(|s| ctx.code(secret, s)).collect();
    (0..1000u32)
        .map(|n| format!("{:06}", (n * 7919 + 123_456) % 1_000_000))
        .find(|c| !valid.contains(c))
        .unwrap()
}

both_backends!(
    password_login_is_a_session_or_a_challenge_never_an_error,
    wrong_passwords_and_unknown_accounts_fail_alike,
    completing_a_challenge_creates_an_aal2_session,
    revoke_all_ends_every_session_but_the_kept_one,
    five_wrong_codes_lock_the_second_factor_until_the_lock_passes,
    parallel_wrong_codes_over_many_challenges_cannot_pass_the_second_factor_lock,
    a_right_password_awaiting_mfa_does_not_clear_the_login_lock,
    a_wrong_current_password_counts_on_the_login_lock,
    require_action_adds_the_level_only_for_listed_classes,
    the_first_second_factor_may_be_enrolled_at_aal1,
    refresh_flow_rotates_and_detects_a_replay_after_the_grace_window,
    ending_by_refresh_token_needs_the_sessions_own_token,
    id_tokens_verify_with_the_published_jwks_and_carry_claims_by_scope,
);

/// Logs `email` in with the password (no MFA): the aal 1 session.
async fn aal1_session(ctx: &Ctx, email: &str) -> sessiond::auth::sessions::IssuedSession {
    match ctx.login(email, PASSWORD).await {
        Ok(LoginOutcome::Session(issued)) => *issued,
        other => panic!("expected a session, got {other:?}"),
    }
}

/// `Some((max_age, acr_values))` of an `insufficient_user_authentication` refusal; `None`
/// when the action is allowed.
type Refusal = Option<(Option<u64>, Option<&'static str>)>;

/// The [`Refusal`] of `class` for `session`; any other failure panics.
async fn refusal(
    auth: &Auth<'_>,
    session: &sessiond_actors::model::SessionRecord,
    class: ActionClass,
) -> Refusal {
    match require_action(auth, session, class).await {
        Ok(()) => None,
        Err(AuthError::InsufficientUserAuthentication {
            max_age,
            acr_values,
            ..
        }) => Some((max_age, acr_values)),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// Asserts [`refusal`] for each class: its expected answer, naming the class on failure.
async fn assert_refusals(
    auth: &Auth<'_>,
    session: &sessiond_actors::model::SessionRecord,
    expected: &[(ActionClass, Refusal)],
) {
    for (class, expected) in expected {
        assert_eq!(refusal(auth, session, *class).await, *expected, "{class:?}");
    }
}

async fn require_action_adds_the_level_only_for_listed_classes(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    ctx.user("ada@example.com").await;
    let listed: ActionClasses = [ActionClass::ApiKeys, ActionClass::Sessions]
        .into_iter()
        .collect();
    let session = aal1_session(&ctx, "ada@example.com").await.session;
    let strict = ctx.auth_requiring(listed);
    let lax = ctx.auth();
    // Fresh aal 1: listed classes need aal 2, the others pass.
    assert_refusals(
        &strict,
        &session,
        &[
            (ActionClass::ApiKeys, Some((None, Some("aal2")))),
            (ActionClass::Sessions, Some((None, Some("aal2")))),
            (ActionClass::Password, None),
        ],
    )
    .await;
    assert_eq!(refusal(&lax, &session, ActionClass::ApiKeys).await, None);
    // Six minutes later the recency rule adds `max_age` (one answer for both), except for
    // revoking other sessions, which needs only the level.
    ctx.manual.advance(chrono::Duration::minutes(6));
    assert_refusals(
        &strict,
        &session,
        &[
            (ActionClass::ApiKeys, Some((Some(300), Some("aal2")))),
            (ActionClass::Password, Some((Some(300), None))),
            (ActionClass::Sessions, Some((None, Some("aal2")))),
        ],
    )
    .await;
    assert_eq!(refusal(&lax, &session, ActionClass::Sessions).await, None);

    // A second-factor login is aal 2: listed classes pass while it is recent.
    let user = ctx.user("mfa@example.com").await;
    let secret = ctx.enrol(&user).await;
    let id = ctx.challenge("mfa@example.com").await;
    let strong = ctx
        .complete(id, ctx.code(&secret, 1))
        .await
        .unwrap()
        .session;
    for class in ActionClass::ALL {
        assert_eq!(refusal(&strict, &strong, class).await, None, "{class:?}");
    }
}

async fn the_first_second_factor_may_be_enrolled_at_aal1(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user("ada@example.com").await;
    let session = aal1_session(&ctx, "ada@example.com").await.session;
    let strict = ctx.auth_requiring(ActionClass::ALL.into_iter().collect());
    // No second factor yet: enrolling one is how the user reaches aal 2.
    assert_refusals(
        &strict,
        &session,
        &[
            (ActionClass::Mfa, None),
            (ActionClass::Passkeys, None),
            (ActionClass::ApiKeys, Some((None, Some("aal2")))),
        ],
    )
    .await;
    // With one, changing factors on the aal 1 session needs aal 2.
    ctx.enrol(&user).await;
    assert_refusals(
        &strict,
        &session,
        &[
            (ActionClass::Mfa, Some((None, Some("aal2")))),
            (ActionClass::Passkeys, Some((None, Some("aal2")))),
        ],
    )
    .await;
}

async fn refresh_flow_rotates_and_detects_a_replay_after_the_grace_window(backend: TestBackend) {
    use sessiond::auth::refresh::refresh;
    use sessiond_actors::sessions::{RefreshOutcome, SessionError};
    let ctx = Ctx::new(backend).await;
    ctx.user("ada@example.com").await;
    let first = aal1_session(&ctx, "ada@example.com")
        .await
        .refresh_token
        .encode();
    let mut seen = Vec::new();
    let rotated = refresh(&ctx.auth(), &first, |r| seen.push(r.is_ok()))
        .await
        .unwrap();
    assert_eq!(rotated.outcome, RefreshOutcome::Rotated);
    assert_eq!(rotated.user.email, "ada@example.com");
    // The old token within the grace window: the same child again.
    let retried = refresh(&ctx.auth(), &first, |r| seen.push(r.is_ok()))
        .await
        .unwrap();
    assert_eq!(retried.outcome, RefreshOutcome::GraceRetry);
    assert_eq!(
        retried.refresh_token.encode(),
        rotated.refresh_token.encode()
    );
    // After it: a replay, the session is compromised.
    ctx.manual.advance(chrono::Duration::seconds(11));
    assert!(matches!(
        refresh(&ctx.auth(), &first, |r| seen.push(r.is_ok())).await,
        Err(AuthError::Refresh(SessionError::Reused(_)))
    ));
    assert!(matches!(
        refresh(&ctx.auth(), &rotated.refresh_token.encode(), |_| {}).await,
        Err(AuthError::Refresh(SessionError::Rejected(_)))
    ));
    // A malformed token is refused before the engine, and observed as invalid.
    assert!(matches!(
        refresh(&ctx.auth(), "rt1_nonsense", |r| seen.push(r.is_ok())).await,
        Err(AuthError::Refresh(SessionError::Rejected(_)))
    ));
    assert_eq!(seen, [true, true, false, false]);
}

async fn ending_by_refresh_token_needs_the_sessions_own_token(backend: TestBackend) {
    use sessiond::auth::refresh::end;
    use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken};
    let ctx = Ctx::new(backend).await;
    ctx.user("ada@example.com").await;
    let issued = aal1_session(&ctx, "ada@example.com").await;
    let id = issued.session.id;
    // The session id with another secret ends nothing; neither does garbage.
    let forged = RefreshToken {
        session_id: id,
        secret: RefreshSecret::random(),
    };
    assert_eq!(end(&ctx.auth(), &forged.encode()).await.unwrap(), None);
    assert_eq!(end(&ctx.auth(), "not a token").await.unwrap(), None);
    assert_eq!(
        ctx.store.load_session(id).await.unwrap().unwrap().status,
        SessionStatus::Active
    );
    // Its own token ends it; a second time there is nothing left to end.
    let token = issued.refresh_token.encode();
    assert_eq!(end(&ctx.auth(), &token).await.unwrap(), Some(id));
    assert_eq!(
        ctx.store.load_session(id).await.unwrap().unwrap().status,
        SessionStatus::Revoked
    );
    assert_eq!(end(&ctx.auth(), &token).await.unwrap(), None);
}

async fn password_login_is_a_session_or_a_challenge_never_an_error(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let plain = ctx.user("plain@example.com").await;
    match ctx.login("plain@example.com", PASSWORD).await {
        Ok(LoginOutcome::Session(issued)) => {
            assert_eq!(issued.user.id, plain.id);
            assert_eq!(issued.session.aal, 1);
            assert_eq!(issued.session.amr, ["pwd"]);
        }
        other => panic!("expected a session, got {other:?}"),
    }
    let mfa_user = ctx.user("mfa@example.com").await;
    ctx.enrol(&mfa_user).await;
    match ctx.login("mfa@example.com", PASSWORD).await {
        Ok(LoginOutcome::MfaRequired(challenge)) => {
            assert_eq!(challenge.methods, ["totp", "recovery_code"]);
            assert!(challenge.expires_at > ctx.clock.now());
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
    let live = ctx
        .store
        .active_session_ids(mfa_user.id, ctx.clock.now())
        .await
        .unwrap();
    assert!(live.is_empty(), "a challenge creates no session");
}

async fn wrong_passwords_and_unknown_accounts_fail_alike(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    ctx.user("ada@example.com").await;
    for (email, password) in [
        ("ada@example.com", "not the password"),
        ("ghost@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("ada@example.com", "short"),
    ] {
        assert!(
            matches!(
                ctx.login(email, password).await,
                Err(AuthError::InvalidCredentials)
            ),
            "{email} / {password}"
        );
    }
    let stats = ctx.passwords.stats();
    assert_eq!(stats.verifications, 4, "one argon2 verification each");
}

async fn completing_a_challenge_creates_an_aal2_session(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user("mfa@example.com").await;
    let secret = ctx.enrol(&user).await;
    let id = ctx.challenge("mfa@example.com").await;
    assert!(matches!(
        ctx.complete(id, wrong_code(&ctx, &secret)).await,
        Err(AuthError::InvalidMfaCode)
    ));
    let issued = ctx.complete(id, ctx.code(&secret, 1)).await.unwrap();
    assert_eq!(issued.session.aal, 2);
    assert_eq!(issued.session.amr, ["pwd", "otp"]);
    assert_eq!(issued.session.ip.as_deref(), Some("192.0.2.10"));
    assert!(
        matches!(
            ctx.complete(id, ctx.code(&secret, 1)).await,
            Err(AuthError::MfaChallengeInvalid)
        ),
        "a challenge is single use"
    );
}

async fn revoke_all_ends_every_session_but_the_kept_one(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user("ada@example.com").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        match ctx.login("ada@example.com", PASSWORD).await.unwrap() {
            LoginOutcome::Session(issued) => ids.push(issued.session.id),
            other => panic!("{other:?}"),
        }
    }
    let revoked = revoke_all(
        &ctx.auth(),
        user.id,
        Some(ids[0]),
        RevokeReason::PasswordChanged,
    )
    .await
    .unwrap();
    assert_eq!(revoked, 2);
    for (i, id) in ids.iter().enumerate() {
        let stored = ctx.store.load_session(*id).await.unwrap().unwrap();
        let expected = if i == 0 {
            SessionStatus::Active
        } else {
            SessionStatus::Revoked
        };
        assert_eq!(stored.status, expected, "session {i}");
    }
}

/// Limits as configured by default, with a small failed-login lock.
fn small_login_lock(threshold: u32) -> RateLimitSettings {
    let mut limits = RateLimitSettings::default();
    limits.lock = LockPolicy {
        threshold,
        base: Duration::from_secs(60),
        ..limits.lock
    };
    limits
}

async fn five_wrong_codes_lock_the_second_factor_until_the_lock_passes(backend: TestBackend) {
    let ctx = Ctx::new(backend).await;
    let user = ctx.user("mfa@example.com").await;
    let secret = ctx.enrol(&user).await;
    let first = ctx.challenge("mfa@example.com").await;
    for _ in 0..5 {
        assert!(matches!(
            ctx.complete(first, wrong_code(&ctx, &secret)).await,
            Err(AuthError::InvalidMfaCode)
        ));
    }
    // A new challenge from a new login (the password is still right) does not reset it, and
    // the right code is refused while locked: 1 minute after the fifth failure.
    let second = ctx.challenge("mfa@example.com").await;
    match ctx.complete(second, ctx.code(&secret, 1)).await {
        Err(AuthError::Limited(l)) => {
            assert!((59_000..=60_000).contains(&l.retry_after_ms), "{l:?}")
        }
        other => panic!("expected the second-factor lock, got {other:?}"),
    }
    assert!(
        matches!(
            second_factor::check_allowed(&ctx.auth(), user.id).await,
            Err(AuthError::Limited(_))
        ),
        "the flow API other flows (reauthentication) call says the same"
    );
    // Once the lock has passed, the right code works, and the failures are forgotten.
    ctx.manual.advance(chrono::Duration::seconds(61));
    let issued = ctx.complete(second, ctx.code(&secret, 0)).await.unwrap();
    assert_eq!(issued.session.aal, 2);
    assert!(
        ctx.store
            .second_factor_lock(user.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_right_password_awaiting_mfa_does_not_clear_the_login_lock(backend: TestBackend) {
    let ctx = Ctx::with_limits(backend, small_login_lock(3)).await;
    let user = ctx.user("mfa@example.com").await;
    ctx.enrol(&user).await;
    for _ in 0..2 {
        assert!(matches!(
            ctx.login("mfa@example.com", "not the password").await,
            Err(AuthError::InvalidCredentials)
        ));
    }
    ctx.challenge("mfa@example.com").await;
    // Still two failures on record: the third locks the account.
    assert!(matches!(
        ctx.login("mfa@example.com", "not the password").await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        ctx.login("mfa@example.com", PASSWORD).await,
        Err(AuthError::Limited(_))
    ));
}

async fn a_wrong_current_password_counts_on_the_login_lock(backend: TestBackend) {
    let ctx = Ctx::with_limits(backend, small_login_lock(2)).await;
    let user = ctx.user("ada@example.com").await;
    let ip = Some("203.0.113.9".parse().unwrap());
    let auth = ctx.auth();
    current_password::verify(&auth, &user, PASSWORD, ip)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            current_password::verify(&auth, &user, "not the password", ip).await,
            Err(AuthError::InvalidCredentials)
        ));
    }
    assert!(matches!(
        current_password::verify(&auth, &user, PASSWORD, ip).await,
        Err(AuthError::Limited(_))
    ));
    assert!(
        matches!(
            ctx.login("ada@example.com", PASSWORD).await,
            Err(AuthError::Limited(_))
        ),
        "the same lock as login"
    );
}

#[tokio::test]
async fn every_password_check_costs_one_verification_whatever_the_input() {
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = PasswordHasher::new(params, 2, 16);
    let stored = hasher
        .hash(&Password::parse(PASSWORD.to_owned()).unwrap())
        .await
        .unwrap();
    let cases: [(&str, Option<&str>, bool); 5] = [
        (PASSWORD, Some(&stored), true),
        ("not the password", Some(&stored), false),
        ("short", Some(&stored), false),
        (&"x".repeat(500), Some(&stored), false),
        (PASSWORD, None, false),
    ];
    for (i, (raw, stored, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            hasher.verify_input(raw, stored).await.unwrap(),
            expected,
            "case {i}"
        );
        assert_eq!(hasher.stats().verifications, i as u64 + 1, "case {i}");
    }
    assert_eq!(
        hasher.stats().dummy_verifications,
        3,
        "malformed input and a missing hash verify against the dummy"
    );
}

async fn parallel_wrong_codes_over_many_challenges_cannot_pass_the_second_factor_lock(
    backend: TestBackend,
) {
    let ctx = Arc::new(Ctx::new(backend).await);
    let user = ctx.user("mfa@example.com").await;
    let secret = ctx.enrol(&user).await;
    let wrong = wrong_code(&ctx, &secret);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let id = ctx.challenge("mfa@example.com").await;
        for _ in 0..5 {
            let ctx = ctx.clone();
            let wrong = wrong.clone();
            tasks.spawn(async move { ctx.complete(id, wrong).await });
        }
    }
    let (mut checked, mut refused) = (0, 0);
    while let Some(answer) = tasks.join_next().await {
        match answer.unwrap() {
            Err(AuthError::InvalidMfaCode) => checked += 1,
            Err(AuthError::Limited(_)) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        checked <= 5,
        "{checked} of 25 parallel guesses were checked; the lock allows 5"
    );
    assert_eq!(checked + refused, 25);
    assert!(matches!(
        second_factor::check_allowed(&ctx.auth(), user.id).await,
        Err(AuthError::Limited(_))
    ));
}

/// An ID token from `id_token::issue` (the function the code exchange calls) verifies with an
/// independent verifier — jsonwebtoken given only the JWKS document sessiond publishes — and
/// carries the contract's claims, the profile/email claims only as the scope allows.
async fn id_tokens_verify_with_the_published_jwks_and_carry_claims_by_scope(backend: TestBackend) {
    use sessiond::auth::oauth::id_token::{IdTokenRequest, issue};
    use sessiond::auth::oauth::scope::Scopes;
    use sessiond::crypto::keys::{KeyRing, KeySources, SigningAlg};
    use sessiond::crypto::oauth_tokens::{OAuthTokens, at_hash};

    let ctx = Ctx::new(backend).await;
    let keys = Arc::new(
        KeyRing::load(&KeySources {
            alg: SigningAlg::EdDsa,
            signing_key_files: Vec::new(),
            refresh_key: None,
            keys_file: Some(ctx._dir.path().join("dev.keys")),
            development: true,
            id_token_key_file: None,
        })
        .unwrap(),
    );
    let issuer = "http://127.0.0.1:8080";
    let tokens = OAuthTokens::new(
        keys.clone(),
        issuer,
        "sessiond-oauth",
        Duration::from_secs(300),
    );
    let user = ctx
        .store
        .create_user(&NewUser {
            email: "oidc@example.com".into(),
            name: Some("Ada Lovelace".into()),
            password_hash: None,
        })
        .await
        .unwrap();
    let auth_time = ctx.clock.now() - chrono::Duration::seconds(30);
    let amr = vec!["pwd".to_owned(), "otp".to_owned()];
    let scope = Scopes::parse(Some("openid profile email")).unwrap();
    let request = IdTokenRequest {
        user: user.id,
        client_id: "client-1",
        nonce: Some("n-0S6_WzA2Mj"),
        auth_time,
        aal: 2,
        amr: &amr,
        access_token: Some("an.access.token"),
        scope: &scope,
    };
    let token = issue(&ctx.auth(), &tokens, &request).await.unwrap();

    // The verifier knows only the published JWKS: the key named by the token's kid.
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let kid = header.kid.expect("kid");
    assert_eq!(Some(kid.as_str()), keys.id_token_kid());
    let jwk = jwks.find(&kid).expect("the ID-token key is in the JWKS");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&["client-1"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Verified with nothing but the JWKS, the issuer and the audience.
    let verified = |token: &str| -> serde_json::Value {
        jsonwebtoken::decode(
            token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap()
        .claims
    };
    let claims = verified(&token);
    let now = ctx.clock.now().timestamp();
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 300);
    assert_eq!(claims["auth_time"], auth_time.timestamp());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["at_hash"], at_hash("an.access.token"));
    assert_eq!(claims["acr"], "aal2");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(claims["email"], "oidc@example.com");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["name"], "Ada Lovelace");

    // `openid` alone: no profile or email claims; no nonce or access token: neither claim.
    let bare = Scopes::parse(Some("openid")).unwrap();
    let token = issue(
        &ctx.auth(),
        &tokens,
        &IdTokenRequest {
            nonce: None,
            access_token: None,
            aal: 1,
            scope: &bare,
            ..request.clone()
        },
    )
    .await
    .unwrap();
    let claims = verified(&token);
    assert_eq!(claims["acr"], "aal1");
    for absent in [
        "nonce",
        "at_hash",
        "email",
        "email_verified",
        "name",
        "picture",
    ] {
        assert!(claims.get(absent).is_none(), "{absent} in {claims}");
    }

    // A user that no longer exists gets no ID token.
    let gone = IdTokenRequest {
        user: sessiond_actors::ids::UserId::new(),
        ..request
    };
    assert!(matches!(
        issue(&ctx.auth(), &tokens, &gone).await,
        Err(sessiond::auth::oauth::token::OAuthError::InvalidGrant(_))
    ));
}
