//! `sessiond seed`: load-test fixtures written straight into the store, so that seeding never
//! dominates a k6 run.
//!
//! Creates `users` accounts `user{i}@seed.test` (i from `first`), all with one password whose
//! argon2id hash is computed once, and optionally `sessions_per_user` live sessions each, in
//! bulk inserts of [`CHUNK`] accounts per transaction. Every row of credentials goes to a
//! JSON-lines file the k6 scripts read:
//! `{"email", "password", "user_id", "session_id", "refresh_token", "access_token"}` — one line
//! per session, or one per account (session fields null) when no sessions are asked for.
//! Access tokens are signed with the configured keys (the same ones the server uses) and expire
//! after `SESSIOND_ACCESS_TTL`; the refresh tokens are valid until used or the session ends.
//!
//! The file holds bearer credentials: it is created with mode 0600 and must stay on the test
//! machine. Seeded rows get no audit events.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sessiond_actors::ids::{SessionId, UserId};
use sessiond_actors::model::{NewSession, SessionRecord};
use sessiond_actors::refresh_token::{RefreshSecret, RefreshToken};

use crate::config::Config;
use crate::crypto::access_token::AccessTokens;
use crate::crypto::keys::KeyRing;
use crate::crypto::password::PasswordHasher;
use crate::domain::Password;
use crate::store::Store;
use crate::store::seed::{SEED_DEVICE_NAME, SeedSession, SeedUser};

/// Accounts per transaction.
pub const CHUNK: usize = 5_000;
/// Most accounts one run creates.
pub const MAX_USERS: u64 = 10_000_000;
/// Most sessions per account.
pub const MAX_SESSIONS_PER_USER: u32 = 100;

/// What to seed.
#[derive(Clone)]
pub struct SeedOptions {
    /// How many accounts.
    pub users: u64,
    /// Live sessions per account (0: accounts only).
    pub sessions_per_user: u32,
    /// The JSON-lines output file (overwritten).
    pub out: PathBuf,
    /// The shared password (8–128 characters).
    pub password: String,
    /// Index of the first account (`user{first}@seed.test`), to add accounts to an already
    /// seeded database.
    pub first: u64,
}

impl std::fmt::Debug for SeedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedOptions")
            .field("users", &self.users)
            .field("sessions_per_user", &self.sessions_per_user)
            .field("out", &self.out)
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
    /// Accounts created.
    pub users: u64,
    /// Sessions created.
    pub sessions: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// The email of seeded account `i`.
pub fn seed_email(i: u64) -> String {
    format!("user{i}@seed.test")
}

/// Runs the seed against the configured database (migrating it first).
pub async fn run(config: &Config, options: &SeedOptions) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    if options.users == 0 || options.users > MAX_USERS {
        bail!("--users must be between 1 and {MAX_USERS}");
    }
    if options.sessions_per_user > MAX_SESSIONS_PER_USER {
        bail!("--sessions-per-user must be at most {MAX_SESSIONS_PER_USER}");
    }
    if options.first.checked_add(options.users).is_none() {
        bail!("--first + --users overflows");
    }
    let password = Password::parse(options.password.clone())
        .map_err(|_| anyhow::anyhow!("--password must be 8 to 128 characters"))?;

    let store = Store::connect(&config.database_url)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    let keys = Arc::new(KeyRing::load(&config.key_sources()).context("loading keys")?);
    let tokens = AccessTokens::new(
        keys,
        config.issuer.clone(),
        config.audience.clone(),
        config.access_ttl,
    );
    let hasher = PasswordHasher::from_settings(&config.hashing()).context("argon2 parameters")?;
    let password_hash = hasher
        .hash(&password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing the seed password: {e}"))?;
    let max_ttl = chrono::Duration::from_std(config.session_max_ttl)?;

    let mut out = open_private(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let mut report = SeedReport {
        users: 0,
        sessions: 0,
        elapsed: Duration::ZERO,
    };
    let end = options.first + options.users;
    let mut next = options.first;
    while next < end {
        let upto = end.min(next + CHUNK as u64);
        let now = chrono::Utc::now();
        let users: Vec<SeedUser> = (next..upto)
            .map(|i| SeedUser {
                id: UserId::new(),
                email: seed_email(i),
            })
            .collect();
        let mut sessions = Vec::with_capacity(users.len() * options.sessions_per_user as usize);
        let mut lines = String::with_capacity(users.len() * 512);
        for user in &users {
            if options.sessions_per_user == 0 {
                push_line(&mut lines, user, &options.password, None)?;
                continue;
            }
            for _ in 0..options.sessions_per_user {
                let secret = RefreshSecret::random();
                let record = seeded_record(user.id, &secret, now, now + max_ttl);
                let access = tokens
                    .issue(user.id, &record, now)
                    .context("signing an access token")?;
                let refresh = RefreshToken {
                    session_id: record.id,
                    secret,
                };
                push_line(
                    &mut lines,
                    user,
                    &options.password,
                    Some((record.id, refresh.encode(), access.token)),
                )?;
                sessions.push(SeedSession {
                    id: record.id,
                    user_id: user.id,
                    token_hash: record.current_hash,
                    expires_at: record.expires_at,
                });
            }
        }
        store
            .seed_users(&users, &password_hash, now)
            .await
            .with_context(|| {
                format!(
                    "inserting accounts {} to {} (already seeded? use a fresh database or --first)",
                    seed_email(next),
                    seed_email(upto - 1)
                )
            })?;
        store
            .seed_sessions(&sessions, now)
            .await
            .context("inserting sessions")?;
        out.write_all(lines.as_bytes())
            .with_context(|| format!("writing {}", options.out.display()))?;
        report.users += users.len() as u64;
        report.sessions += sessions.len() as u64;
        next = upto;
    }
    out.flush()
        .with_context(|| format!("writing {}", options.out.display()))?;
    store.close().await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The record the access token is issued for (what the store holds for a seeded session).
fn seeded_record(
    user: UserId,
    secret: &RefreshSecret,
    now: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> SessionRecord {
    SessionRecord::open(
        NewSession {
            device_name: Some(SEED_DEVICE_NAME.to_owned()),
            ..NewSession::password(user, now)
        },
        secret.hash(),
        now,
        expires_at,
    )
}

fn push_line(
    lines: &mut String,
    user: &SeedUser,
    password: &str,
    session: Option<(SessionId, String, String)>,
) -> anyhow::Result<()> {
    let (session_id, refresh_token, access_token) = match session {
        Some((id, refresh, access)) => (Some(id.to_string()), Some(refresh), Some(access)),
        None => (None, None, None),
    };
    let line = serde_json::json!({
        "email": user.email,
        "password": password,
        "user_id": user.id.to_string(),
        "session_id": session_id,
        "refresh_token": refresh_token,
        "access_token": access_token,
    });
    lines.push_str(&serde_json::to_string(&line)?);
    lines.push('\n');
    Ok(())
}

/// Creates (truncating) a file only its owner can read: it holds bearer credentials.
fn open_private(path: &std::path::Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode on open: tighten it too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(std::io::BufWriter::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_numbered_and_valid() {
        assert_eq!(seed_email(0), "user0@seed.test");
        assert_eq!(seed_email(41), "user41@seed.test");
        let parsed = crate::domain::Email::parse(&seed_email(7)).unwrap();
        assert_eq!(parsed.as_str(), "user7@seed.test");
    }

    #[test]
    fn debug_leaves_the_password_out() {
        let options = SeedOptions {
            users: 1,
            sessions_per_user: 0,
            out: "x".into(),
            password: "very secret words".into(),
            first: 0,
        };
        assert!(!format!("{options:?}").contains("very secret"));
    }
}
