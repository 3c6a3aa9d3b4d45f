//! Typed configuration, read once at start-up and validated as a whole.
//!
//! Sources, later wins: built-in defaults, then the TOML file (`sessiond.toml` in the working
//! directory if present, or the path in `SESSIOND_CONFIG`, which must then exist), then the
//! environment. Every setting has two spellings: `SESSIOND_<KEY>` in the environment and
//! `<key>` (lowercase) at the top level of the file, except `DATABASE_URL` / `database_url` and
//! `REDIS_URL` / `redis_url`, which keep the names every tool already uses. Durations use
//! humantime syntax (`15m`, `10s`, `250ms`, `1h 30m`). An empty environment variable counts as
//! unset.
//!
//! Validation collects **every** problem before failing, and each message names both
//! spellings, so one restart is enough to fix a broken deployment. Relations between lifetimes
//! (all checked):
//! - `access_ttl ≤ refresh_idle_ttl ≤ session_max_ttl`: a token never outlives the idle window
//!   of its session, and the idle window never outlives the session;
//! - `grace_window < access_ttl`: the grace window only absorbs network retries of a rotation;
//!   a longer one would let a stolen previous refresh token be replayed undetected for as long
//!   as an access token lives;
//! - `staleness < access_ttl`: otherwise a revocation made on another instance could stay unseen
//!   longer than the token it should stop;
//! - `call_timeout < request_timeout`: an actor call must be able to fail (and be answered as
//!   an error) before the HTTP layer cuts the request;
//! - `grace_window` and `staleness` may be 0 (no grace, always re-read); every other duration
//!   must be positive; all are at most 3650 days (beyond that, timestamp arithmetic overflows
//!   long before anyone notices).

mod abuse;
mod mail;
mod oauth;
mod oidc;
mod sources;
mod webauthn;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use sessiond_actors::refresh_token::RefreshKey;

pub use abuse::{AbuseConfig, HardeningSettings, RegisterConflict};
pub use mail::MailConfig;
pub use oauth::OAuthConfig;
pub use oidc::{GOOGLE_ISSUER, OidcConfig, OidcProviderSettings};
use sources::{Key, Problems, Raw, Sources};
pub use webauthn::{RelyingParty, WebauthnSetting};

const fn key(env: &'static str, toml: &'static str) -> Key {
    Key {
        env,
        toml,
        secret: false,
    }
}

const fn secret_key(env: &'static str, toml: &'static str) -> Key {
    Key {
        env,
        toml,
        secret: true,
    }
}

const BIND: Key = key("SESSIOND_BIND", "bind");
// The database and Redis URLs may carry passwords: never repeated in messages.
const DATABASE_URL: Key = secret_key("DATABASE_URL", "database_url");
const REDIS_URL: Key = secret_key("REDIS_URL", "redis_url");
const ISSUER: Key = key("SESSIOND_ISSUER", "issuer");
const AUDIENCE: Key = key("SESSIOND_AUDIENCE", "audience");
const ACCESS_TTL: Key = key("SESSIOND_ACCESS_TTL", "access_ttl");
const REFRESH_IDLE_TTL: Key = key("SESSIOND_REFRESH_IDLE_TTL", "refresh_idle_ttl");
const SESSION_MAX_TTL: Key = key("SESSIOND_SESSION_MAX_TTL", "session_max_ttl");
const GRACE_WINDOW: Key = key("SESSIOND_GRACE_WINDOW", "grace_window");
const PASSIVATE_AFTER: Key = key("SESSIOND_PASSIVATE_AFTER", "passivate_after");
const STALENESS: Key = key("SESSIOND_STALENESS", "staleness");
const CALL_TIMEOUT: Key = key("SESSIOND_CALL_TIMEOUT", "call_timeout");
const SHARDS: Key = key("SESSIOND_SHARDS", "shards");
const SIGNING_ALG: Key = key("SESSIOND_SIGNING_ALG", "signing_alg");
const SIGNING_KEY_FILE: Key = key("SESSIOND_SIGNING_KEY_FILE", "signing_key_file");
const REFRESH_KEY: Key = secret_key("SESSIOND_REFRESH_KEY", "refresh_key");
const KEYS_FILE: Key = key("SESSIOND_KEYS_FILE", "keys_file");
const ARGON2_MEMORY_KIB: Key = key("SESSIOND_ARGON2_MEMORY_KIB", "argon2_memory_kib");
const ARGON2_ITERATIONS: Key = key("SESSIOND_ARGON2_ITERATIONS", "argon2_iterations");
const ARGON2_PARALLELISM: Key = key("SESSIOND_ARGON2_PARALLELISM", "argon2_parallelism");
const HASH_CONCURRENCY: Key = key("SESSIOND_HASH_CONCURRENCY", "hash_concurrency");
const HASH_QUEUE: Key = key("SESSIOND_HASH_QUEUE", "hash_queue");
const HASH_PRIORITY: Key = key("SESSIOND_HASH_PRIORITY", "hash_priority");
const PURGE_INTERVAL: Key = key("SESSIOND_PURGE_INTERVAL", "purge_interval");
const PURGE_RETENTION: Key = key("SESSIOND_PURGE_RETENTION", "purge_retention");
const API_KEY_USAGE_FLUSH: Key = key("SESSIOND_API_KEY_USAGE_FLUSH", "api_key_usage_flush");
const SHUTDOWN_TIMEOUT: Key = key("SESSIOND_SHUTDOWN_TIMEOUT", "shutdown_timeout");
const SHUTDOWN_DELAY: Key = key("SESSIOND_SHUTDOWN_DELAY", "shutdown_delay");
const METRICS_ADDR: Key = key("SESSIOND_METRICS_ADDR", "metrics_addr");
const METRICS_TOKEN: Key = secret_key("SESSIOND_METRICS_TOKEN", "metrics_token");
const MAX_BODY_BYTES: Key = key("SESSIOND_MAX_BODY_BYTES", "max_body_bytes");
const REQUEST_TIMEOUT: Key = key("SESSIOND_REQUEST_TIMEOUT", "request_timeout");
const MFA_CHALLENGE_TTL: Key = key("SESSIOND_MFA_CHALLENGE_TTL", "mfa_challenge_ttl");
const TOTP_ISSUER: Key = key("SESSIOND_TOTP_ISSUER", "totp_issuer");
const LOG_FORMAT: Key = key("SESSIOND_LOG_FORMAT", "log_format");
const DB_MAX_CONNECTIONS: Key = key("SESSIOND_DB_MAX_CONNECTIONS", "db_max_connections");
const DB_ACQUIRE_TIMEOUT: Key = key("SESSIOND_DB_ACQUIRE_TIMEOUT", "db_acquire_timeout");
const COMMIT_MAX_BATCH: Key = key("SESSIOND_COMMIT_MAX_BATCH", "commit_max_batch");
const COMMIT_MAX_WAIT: Key = key("SESSIOND_COMMIT_MAX_WAIT", "commit_max_wait");
const COMMIT_SLOTS: Key = key("SESSIOND_COMMIT_SLOTS", "commit_slots");
const REAUTH_MAX_AGE: Key = key("SESSIOND_REAUTH_MAX_AGE", "reauth_max_age");
const API_KEY_SCOPES: Key = key("SESSIOND_API_KEY_SCOPES", "api_key_scopes");
const DEMO: Key = key("SESSIOND_DEMO", "demo");
const REQUIRE_AAL2_FOR: Key = key("SESSIOND_REQUIRE_AAL2_FOR", "require_aal2_for");
/// The `[oidc]` table; its variables (`SESSIOND_OIDC_*`) are read by `config/oidc.rs`.
const OIDC: Key = key("SESSIOND_OIDC", oidc::TOML_TABLE);

/// Every setting, for unknown-key detection.
const ALL_KEYS: &[Key] = &[
    BIND,
    DATABASE_URL,
    REDIS_URL,
    ISSUER,
    AUDIENCE,
    ACCESS_TTL,
    REFRESH_IDLE_TTL,
    SESSION_MAX_TTL,
    GRACE_WINDOW,
    PASSIVATE_AFTER,
    STALENESS,
    CALL_TIMEOUT,
    SHARDS,
    SIGNING_ALG,
    SIGNING_KEY_FILE,
    REFRESH_KEY,
    KEYS_FILE,
    ARGON2_MEMORY_KIB,
    ARGON2_ITERATIONS,
    ARGON2_PARALLELISM,
    HASH_CONCURRENCY,
    HASH_QUEUE,
    HASH_PRIORITY,
    PURGE_INTERVAL,
    PURGE_RETENTION,
    API_KEY_USAGE_FLUSH,
    SHUTDOWN_TIMEOUT,
    SHUTDOWN_DELAY,
    METRICS_ADDR,
    METRICS_TOKEN,
    MAX_BODY_BYTES,
    REQUEST_TIMEOUT,
    MFA_CHALLENGE_TTL,
    TOTP_ISSUER,
    LOG_FORMAT,
    DB_MAX_CONNECTIONS,
    DB_ACQUIRE_TIMEOUT,
    mail::SMTP_HOST,
    mail::SMTP_PORT,
    mail::SMTP_TLS,
    mail::SMTP_USERNAME,
    mail::SMTP_PASSWORD,
    mail::SMTP_TIMEOUT,
    mail::MAIL_FROM,
    mail::MAIL_QUEUE,
    mail::CODE_TTL,
    mail::RESEND_COOLDOWN,
    mail::CODE_DAILY_LIMIT,
    mail::REQUIRE_VERIFIED_EMAIL,
    abuse::RATE_LIMITS,
    abuse::RATE_LIMIT_PREFIX,
    abuse::RATE_LIMIT_TIMEOUT,
    abuse::RATE_LIMIT_GENERAL,
    abuse::RATE_LIMIT_LOGIN,
    abuse::RATE_LIMIT_LOGIN_ACCOUNT,
    abuse::RATE_LIMIT_REGISTER,
    abuse::RATE_LIMIT_REGISTER_ACCOUNT,
    abuse::RATE_LIMIT_VERIFY,
    abuse::RATE_LIMIT_VERIFY_ACCOUNT,
    abuse::RATE_LIMIT_RESET,
    abuse::RATE_LIMIT_RESET_ACCOUNT,
    abuse::RATE_LIMIT_REFRESH,
    abuse::RATE_LIMIT_CREDENTIALS,
    abuse::RATE_LIMIT_UNKNOWN_API_KEY,
    abuse::RATE_LIMIT_IPV6_PREFIX,
    abuse::CLIENT_IP_HEADER,
    abuse::LOGIN_LOCK_THRESHOLD,
    abuse::LOGIN_LOCK_BASE,
    abuse::LOGIN_LOCK_MAX,
    abuse::LOGIN_LOCK_DECAY,
    abuse::TRUSTED_PROXIES,
    abuse::REGISTER_CONFLICT,
    abuse::MAX_HEADER_BYTES,
    abuse::MAX_HEADERS,
    abuse::CORS_ORIGINS,
    abuse::SECURE_COOKIES,
    COMMIT_MAX_BATCH,
    COMMIT_MAX_WAIT,
    COMMIT_SLOTS,
    REAUTH_MAX_AGE,
    API_KEY_SCOPES,
    oauth::APP_CREATORS,
    oauth::APP_SECRET_OVERLAP,
    oauth::ID_TOKEN_KEY_FILE,
    oauth::OAUTH_AUDIENCE,
    oauth::INTROSPECTION_CLIENTS,
    oauth::OAUTH_CODE_TTL,
    DEMO,
    webauthn::RP_ID,
    webauthn::ORIGINS,
    webauthn::RP_NAME,
    REQUIRE_AAL2_FOR,
    OIDC,
];

/// `SESSIOND_*` variables that are not settings of [`Config`] but are read elsewhere (the file
/// location; the log filter), so they are not reported as unknown.
const OTHER_ENV: [&str; 2] = [CONFIG_ENV, "SESSIOND_LOG"];

/// Environment variable naming the TOML file.
pub const CONFIG_ENV: &str = "SESSIOND_CONFIG";
/// File read when `SESSIOND_CONFIG` is unset, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "sessiond.toml";

/// Longest accepted duration (10 years).
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Largest Argon2 memory cost accepted (4 GiB per hash): beyond argon2's own limits, a sanity
/// bound, since `hash_concurrency` hashes run at once.
const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// OWASP's minimum Argon2id settings (m = 19 MiB, t = 2, p = 1); lower values get a warning.
const OWASP_MEMORY_KIB: u32 = 19 * 1024;
const OWASP_ITERATIONS: u32 = 2;

/// The validated configuration. Secrets (database password, refresh key) are held in types
/// whose `Debug` hides them, so `{:?}` of a `Config` is safe to log.
#[derive(Clone, Debug)]
pub struct Config {
    /// The TOML file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Listen address (`SESSIOND_BIND`, default `127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// Database (`DATABASE_URL`, default `sqlite://sessiond.db?mode=rwc`).
    pub database_url: DatabaseUrl,
    /// Redis for rate limits and login locks shared by every instance (`REDIS_URL`; none by
    /// default: in-memory, per instance).
    pub redis_url: Option<RedisUrl>,
    /// `iss` of access tokens and the OIDC issuer (`SESSIOND_ISSUER`, default
    /// `http://localhost:8080`). Used verbatim: the claim must equal it byte for byte.
    pub issuer: String,
    /// `aud` of access tokens (`SESSIOND_AUDIENCE`, default `sessiond`).
    pub audience: String,
    /// Access-token lifetime (`SESSIOND_ACCESS_TTL`, default 15m).
    pub access_ttl: Duration,
    /// A session whose refresh token goes unused this long expires
    /// (`SESSIOND_REFRESH_IDLE_TTL`, default 14d).
    pub refresh_idle_ttl: Duration,
    /// Absolute session lifetime, fixed at login (`SESSIOND_SESSION_MAX_TTL`, default 30d).
    pub session_max_ttl: Duration,
    /// How long after a rotation the previous refresh token may be retried
    /// (`SESSIOND_GRACE_WINDOW`, default 10s; 0 disables retries).
    pub grace_window: Duration,
    /// An idle session actor stops after this long (`SESSIOND_PASSIVATE_AFTER`, default 5m).
    pub passivate_after: Duration,
    /// How old an actor's view may be before an access-token check re-reads the store
    /// (`SESSIOND_STALENESS`, default 60s; 0 = always re-read). The change feed makes other
    /// instances' revocations visible at once; this only bounds a lost notification.
    pub staleness: Duration,
    /// How long a caller waits for a session actor (`SESSIOND_CALL_TIMEOUT`, default 5s).
    pub call_timeout: Duration,
    /// Supervisor shards (`SESSIOND_SHARDS`, default 0 = chosen from the core count).
    pub shards: usize,
    /// Access-token signature algorithm (`SESSIOND_SIGNING_ALG`, default EdDSA).
    pub signing_alg: SigningAlg,
    /// Signing key files (`SESSIOND_SIGNING_KEY_FILE`): the first signs, all verify, so a new
    /// key can be put first while tokens signed by the old one stay valid until they expire.
    /// PEM for EdDSA/RS256; a raw secret file (≥ 32 bytes) for HS256. Empty = none configured.
    pub signing_key_file: Vec<PathBuf>,
    /// Key refresh tokens are derived with (`SESSIOND_REFRESH_KEY`, base64 or raw, ≥ 32 bytes).
    /// None = none configured (allowed on SQLite only: a development key is generated).
    pub refresh_key: Option<RefreshKey>,
    /// Where generated development keys are kept (`SESSIOND_KEYS_FILE`). Default: next to the
    /// SQLite database, same name with the extension `.keys` (`sessiond.db` → `sessiond.keys`).
    /// None for an in-memory database (keys then live as long as the data). Unused on
    /// PostgreSQL.
    pub keys_file: Option<PathBuf>,
    /// Argon2id memory cost in KiB (`SESSIOND_ARGON2_MEMORY_KIB`, default 19456, OWASP).
    pub argon2_memory_kib: u32,
    /// Argon2id passes (`SESSIOND_ARGON2_ITERATIONS`, default 2).
    pub argon2_iterations: u32,
    /// Argon2id lanes (`SESSIOND_ARGON2_PARALLELISM`, default 1).
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (`SESSIOND_HASH_CONCURRENCY`, default cores − 1, at
    /// least 1): one core stays free for the request path.
    pub hash_concurrency: usize,
    /// Logins allowed to wait for a hashing slot (`SESSIOND_HASH_QUEUE`, default 64); beyond
    /// it logins are refused at once with 503 instead of piling up.
    pub hash_queue: usize,
    /// CPU priority of the hashing threads (`SESSIOND_HASH_PRIORITY`: a nice value 0–19,
    /// default 10, or `idle` for Linux `SCHED_IDLE`), below request handling so that a login
    /// flood does not delay refreshes and reads.
    pub hash_priority: crate::crypto::password::HashPriority,
    /// Period of the expired-session purge (`SESSIOND_PURGE_INTERVAL`, default 1h).
    pub purge_interval: Duration,
    /// Ended sessions are kept this long for audit before purging
    /// (`SESSIOND_PURGE_RETENTION`, default 7d).
    pub purge_retention: Duration,
    /// How often API keys' `last_used_at` is written, in one batch
    /// (`SESSIOND_API_KEY_USAGE_FLUSH`, default 30s).
    pub api_key_usage_flush: Duration,
    /// Graceful-shutdown budget (`SESSIOND_SHUTDOWN_TIMEOUT`, default 30s).
    pub shutdown_timeout: Duration,
    /// After a shutdown signal, how long `/ready` answers 503 while requests are still served,
    /// before the listener closes, so load balancers stop routing first
    /// (`SESSIOND_SHUTDOWN_DELAY`, default 0s).
    pub shutdown_delay: Duration,
    /// Separate listen address for `/metrics` (`SESSIOND_METRICS_ADDR`); None = served on the
    /// main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (`SESSIOND_METRICS_TOKEN`); None = open. Never logged.
    pub metrics_token: Option<String>,
    /// Largest request body (`SESSIOND_MAX_BODY_BYTES`, default 64 KiB; `64KiB` or `65536`).
    pub max_body_bytes: usize,
    /// Whole-request timeout (`SESSIOND_REQUEST_TIMEOUT`, default 10s).
    pub request_timeout: Duration,
    /// How long a login's second-factor challenge stays usable
    /// (`SESSIOND_MFA_CHALLENGE_TTL`, default 5m).
    pub mfa_challenge_ttl: Duration,
    /// The issuer name authenticator apps show for TOTP enrolments (`SESSIOND_TOTP_ISSUER`,
    /// default `sessiond`; no `:`).
    pub totp_issuer: String,
    /// Log output (`SESSIOND_LOG_FORMAT`: `pretty` default, or `json`).
    pub log_format: LogFormat,
    /// Database pool size (`SESSIOND_DB_MAX_CONNECTIONS`, default 16).
    pub db_max_connections: u32,
    /// How long a store call waits for a pooled connection before failing as unavailable
    /// (`SESSIOND_DB_ACQUIRE_TIMEOUT`, default 5s). During an outage only the call that opens
    /// the store's circuit breaker waits this long; later calls fail at once.
    pub db_acquire_timeout: Duration,
    /// Rate limits, failed-login locks, trusted proxies, registration conflicts and HTTP
    /// hardening (`SESSIOND_RATE_LIMIT*`, `SESSIOND_LOGIN_LOCK_*`, `SESSIOND_TRUSTED_PROXIES`,
    /// `SESSIOND_REGISTER_CONFLICT`, `SESSIOND_MAX_HEADER*`, `SESSIOND_CORS_ORIGINS`,
    /// `SESSIOND_SECURE_COOKIES`; see `config/abuse.rs`).
    pub abuse: AbuseConfig,
    /// Outgoing mail (SMTP or development mail mode) and mailed codes (`SESSIOND_SMTP_*`,
    /// `SESSIOND_MAIL_*`, `SESSIOND_CODE_TTL`, `SESSIOND_RESEND_COOLDOWN`,
    /// `SESSIOND_REQUIRE_VERIFIED_EMAIL`; see `config/mail.rs`).
    pub mail: MailConfig,
    /// Most session changes group-committed in one transaction (`SESSIOND_COMMIT_MAX_BATCH`,
    /// default 64; 1 = every change its own transaction).
    pub commit_max_batch: usize,
    /// How long a group-commit batch is held open for more changes
    /// (`SESSIOND_COMMIT_MAX_WAIT`, default 0: batches grow only while another is in flight).
    pub commit_max_wait: Duration,
    /// Group-commit batches in flight at once on PostgreSQL, per process
    /// (`SESSIOND_COMMIT_SLOTS`, default 2; 1 per instance where several share the database).
    pub commit_slots: usize,
    /// Sensitive actions (new factors or credentials) need an authentication of the session
    /// at most this old (`SESSIOND_REAUTH_MAX_AGE`, default 5m).
    pub reauth_max_age: Duration,
    /// The scopes API keys may be created with (`SESSIOND_API_KEY_SCOPES`, a comma list;
    /// default empty: no scopes). Stored keys' scopes no longer listed are not passed on.
    pub api_key_scopes: Vec<String>,
    /// OAuth applications and grants (`SESSIOND_APP_*`; see `config/oauth.rs`).
    pub oauth: OAuthConfig,
    /// Log in with external OpenID Connect providers (`[oidc.providers.<name>]`,
    /// `SESSIOND_OIDC_<NAME>_*`; see `config/oidc.rs`).
    pub oidc: OidcConfig,
    /// Serve the demo web app at `/demo` (`SESSIOND_DEMO`, `on` or `off`). None = unset: on
    /// exactly when sessiond runs on its generated development keys (decided once the keys are
    /// loaded, see [`crate::http::demo::DemoSettings`]), so a production deployment never shows
    /// it unless asked to.
    pub demo: Option<bool>,
    /// Passkeys (WebAuthn): the relying party, development default, or off
    /// (`SESSIOND_WEBAUTHN_RP_ID`, `SESSIOND_WEBAUTHN_ORIGINS`, `SESSIOND_WEBAUTHN_RP_NAME`; see
    /// `config/webauthn.rs`).
    pub webauthn: WebauthnSetting,
    /// Action classes that need a session at `aal` 2 (`SESSIOND_REQUIRE_AAL2_FOR`, a comma list
    /// of `api_keys`, `password`, `mfa`, `passkeys`, `sessions`; default empty). See
    /// `crate::auth::reauth::require_action`.
    pub require_aal2_for: crate::auth::reauth::ActionClasses,
    /// Non-fatal findings (unknown `SESSIOND_*` variables, weak hashing parameters, ignored
    /// settings), to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads the process environment and the TOML file, then validates.
    pub fn load() -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            match (k.into_string(), v.into_string()) {
                (Ok(k), Ok(v)) => env.push((k, v)),
                (Ok(k), Err(_)) if is_our_variable(&k) => {
                    problems.other(format!("{k}: is not valid UTF-8"));
                }
                _ => {}
            }
        }
        let explicit = env
            .iter()
            .rev()
            .find(|(k, v)| k == CONFIG_ENV && !v.trim().is_empty())
            .map(|(_, v)| PathBuf::from(v.trim()));
        let (path, text) = match explicit {
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => (Some(path), Some(text)),
                Err(e) => {
                    problems.other(format!("{CONFIG_ENV}: cannot read {}: {e}", path.display()));
                    (None, None)
                }
            },
            None => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (Some(path), Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
                    Err(e) => {
                        problems.other(format!(
                            "{CONFIG_ENV} ({DEFAULT_CONFIG_FILE}): cannot read: {e}"
                        ));
                        (None, None)
                    }
                }
            }
        };
        let label = path.as_deref().map_or_else(
            || DEFAULT_CONFIG_FILE.to_string(),
            |p| p.display().to_string(),
        );
        let mut config = build(text.as_deref(), &label, &env, problems)?;
        config.config_file = path;
        Ok(config)
    }

    /// Validates explicit sources, without touching the process environment or the disk: the
    /// TOML text (as if read from a file) and environment pairs.
    pub fn from_sources(
        toml: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        build(toml, "toml text", env, Problems::default())
    }

    /// Whether the database is SQLite (single instance; development keys allowed).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.is_sqlite()
    }

    /// Whether the database is PostgreSQL (possibly several instances sharing keys).
    pub fn is_postgres(&self) -> bool {
        self.database_url.is_postgres()
    }

    /// The password hasher's settings (`argon2_*`, `hash_concurrency`, `hash_queue`).
    pub fn hashing(&self) -> crate::crypto::password::HashingSettings {
        crate::crypto::password::HashingSettings {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
            concurrency: self.hash_concurrency,
            queue: self.hash_queue,
            priority: self.hash_priority,
        }
    }

    /// Where the key ring finds its keys (configured files and key, or the development keys
    /// file on SQLite).
    pub fn key_sources(&self) -> crate::crypto::keys::KeySources {
        crate::crypto::keys::KeySources {
            alg: self.signing_alg,
            signing_key_files: self.signing_key_file.clone(),
            refresh_key: self.refresh_key.clone(),
            keys_file: self.keys_file.clone(),
            development: self.is_sqlite(),
            id_token_key_file: self.oauth.id_token_key_file.clone(),
        }
    }

    /// Argon2id parameters, already checked against argon2's limits.
    pub fn argon2_params(&self) -> argon2::Params {
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .expect("validated when the configuration was loaded")
    }
}

fn is_our_variable(name: &str) -> bool {
    name.starts_with("SESSIOND_") || name == DATABASE_URL.env || name == REDIS_URL.env
}

/// Every problem found in the configuration. `Display` prints a count then one problem per
/// line, each naming the environment variable and the TOML key; callers prefix it with their
/// own "invalid configuration" line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// The problems, one message each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} (environment variables override the TOML file):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

pub use crate::crypto::keys::SigningAlg;
pub use crate::telemetry::LogFormat;

/// Parses `pretty` or `json` (case-insensitive).
fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format (use pretty or json)")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DbKind {
    Postgres,
    Sqlite,
}

/// The database URL. May carry a password, so `Debug` shows a redacted form and only
/// [`DatabaseUrl::as_str`] gives the real one (to hand to the driver).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    kind: DbKind,
}

impl DatabaseUrl {
    /// Accepts `postgres://`, `postgresql://` and `sqlite:` URLs. Error messages never repeat
    /// the URL (it may contain a password), only its scheme.
    pub fn parse(s: &str) -> Result<DatabaseUrl, String> {
        let s = s.trim();
        const HINT: &str = "use postgres://, postgresql:// or sqlite:";
        let kind = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url =
                url::Url::parse(s).map_err(|e| format!("is not a valid PostgreSQL URL ({e})"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("a PostgreSQL URL needs a host (postgres://user:pass@host/db)".into());
            }
            DbKind::Postgres
        } else if s.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if let Some((scheme, _)) = s.split_once("://") {
            let scheme: String = scheme.chars().take(20).collect();
            return Err(format!("scheme {scheme:?} is not supported; {HINT}"));
        } else {
            return Err(format!("is not a database URL; {HINT}"));
        };
        Ok(DatabaseUrl {
            url: s.to_string(),
            kind,
        })
    }

    /// The URL itself, for the driver. Never log it: use `{:?}` (redacted) instead.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// SQLite?
    pub fn is_sqlite(&self) -> bool {
        self.kind == DbKind::Sqlite
    }

    /// PostgreSQL?
    pub fn is_postgres(&self) -> bool {
        self.kind == DbKind::Postgres
    }

    /// The SQLite database file, or None for PostgreSQL and in-memory databases
    /// (`sqlite::memory:`, `sqlite://:memory:`, `mode=memory`).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if !self.is_sqlite() {
            return None;
        }
        let rest = self.url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory =
            path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory");
        (!in_memory).then(|| PathBuf::from(path))
    }
}

/// Lets `&config.database_url` be passed where the driver wants a `&str`.
impl std::ops::Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", redact_url(&self.url))
    }
}

/// The Redis URL; may carry a password, so `Debug` is redacted like [`DatabaseUrl`]'s.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Accepts `redis://`, `rediss://` (TLS) and `unix://`/`redis+unix://` URLs.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let s = s.trim();
        let ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|p| s.starts_with(p));
        if !ok {
            return Err("is not a Redis URL; use redis://, rediss:// or unix://".into());
        }
        url::Url::parse(s).map_err(|e| format!("is not a valid URL ({e})"))?;
        Ok(RedisUrl(s.to_string()))
    }

    /// The URL itself, for the client. Never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", redact_url(&self.0))
    }
}

/// The URL with any password replaced by `***` and the query dropped (drivers accept
/// passwords there too).
fn redact_url(url: &str) -> String {
    let (without_query, had_query) = match url.split_once('?') {
        Some((base, _)) => (base, true),
        None => (url, false),
    };
    let mut out = match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => without_query.to_string(),
    };
    if had_query {
        out.push_str("?…");
    }
    out
}

/// Reads one setting: the default when absent, None (with a recorded problem) when invalid.
fn field<T>(
    src: &Sources,
    problems: &mut Problems,
    key: &Key,
    parse: impl FnOnce(&Key, Raw<'_>) -> Result<T, String>,
    default: impl FnOnce() -> T,
) -> Option<T> {
    match src.get(key) {
        None => Some(default()),
        Some(raw) => match parse(key, raw) {
            Ok(v) => Some(v),
            Err(message) => {
                problems.key(key, message);
                None
            }
        },
    }
}

/// Reads an optional setting: None when absent, Some(None) when invalid.
fn optional<T>(
    src: &Sources,
    problems: &mut Problems,
    key: &Key,
    parse: impl FnOnce(&Key, Raw<'_>) -> Result<T, String>,
) -> Option<Option<T>> {
    field(
        src,
        problems,
        key,
        |k, raw| parse(k, raw).map(Some),
        || None,
    )
}

/// Reads a duration and checks it is positive (or zero where `zero_ok`) and not absurd.
fn duration(
    src: &Sources,
    problems: &mut Problems,
    key: &Key,
    default: Duration,
    zero_ok: bool,
) -> Option<Duration> {
    let d = field(src, problems, key, sources::duration, || default)?;
    if d.is_zero() && !zero_ok {
        problems.key(key, "must be a positive duration (e.g. 15m, 10s), not 0");
        return None;
    }
    if d > MAX_DURATION {
        problems.key(
            key,
            format!(
                "{} is too long (at most 3650d)",
                humantime::format_duration(d)
            ),
        );
        return None;
    }
    Some(d)
}

/// Reads an integer within `min..=max`.
fn bounded<T>(
    src: &Sources,
    problems: &mut Problems,
    key: &Key,
    default: T,
    min: T,
    max: T,
) -> Option<T>
where
    T: TryFrom<i128> + Into<u128> + sources::Bounded + PartialOrd + Copy + fmt::Display,
{
    let n = field(src, problems, key, sources::integer::<T>, || default)?;
    if n < min || n > max {
        problems.key(key, format!("{n} must be between {min} and {max}"));
        return None;
    }
    Some(n)
}

/// `a` must stay (strictly, if `strict`) below `b`; records a problem on `a_key` otherwise.
fn ordered(
    problems: &mut Problems,
    (a_key, a): (&Key, Option<Duration>),
    (b_key, b): (&Key, Option<Duration>),
    strict: bool,
    why: &str,
) {
    let (Some(a), Some(b)) = (a, b) else { return };
    let bad = if strict { a >= b } else { a > b };
    if bad {
        let relation = if strict { "be shorter than" } else { "exceed" };
        let verb = if strict { "must" } else { "must not" };
        problems.key(
            a_key,
            format!(
                "{} {verb} {relation} {b_key} = {}: {why}",
                humantime::format_duration(a),
                humantime::format_duration(b)
            ),
        );
    }
}

/// Decodes `SESSIOND_REFRESH_KEY`: base64 (standard or URL-safe, padded or not) decoding to at
/// least 32 bytes is used decoded; otherwise a raw value of at least 32 bytes is used as is.
/// Every instance applies the same rule to the same text, so they agree on the key.
fn refresh_key(key: &Key, raw: Raw<'_>) -> Result<RefreshKey, String> {
    let text = sources::text(key, raw)?;
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(&text)
            && bytes.len() >= 32
        {
            return Ok(RefreshKey::new(bytes));
        }
    }
    if text.len() >= 32 {
        return Ok(RefreshKey::new(text.into_bytes()));
    }
    Err("is too short: it must hold at least 32 bytes \
         (e.g. the output of `openssl rand -base64 32`)"
        .into())
}

fn issuer(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    let url = url::Url::parse(&s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    // RFC 8414 §2: an issuer identifier has no query and no fragment.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    Ok(s)
}

fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Default keys file: the SQLite file with the extension replaced by `keys`.
fn default_keys_file(db: &Path) -> PathBuf {
    if db.extension().is_some_and(|e| e == "keys") {
        let mut s = db.as_os_str().to_owned();
        s.push(".keys");
        PathBuf::from(s)
    } else {
        db.with_extension("keys")
    }
}

fn build(
    toml: Option<&str>,
    label: &str,
    env: &[(String, String)],
    mut p: Problems,
) -> Result<Config, ConfigError> {
    let src = Sources::new(toml, label, env, &mut p);
    let mut warnings = Vec::new();

    for unknown in src.unknown_toml_keys(ALL_KEYS) {
        let hint = sources::suggestion(unknown, ALL_KEYS.iter().map(|k| k.toml))
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        p.other(format!("{label}: unknown key {unknown:?}{hint}"));
    }
    // `SESSIOND_OIDC_*` names carry a provider name: `config/oidc.rs` checks them itself.
    for unknown in src
        .unknown_env_keys(ALL_KEYS, &OTHER_ENV)
        .filter(|k| !k.starts_with(oidc::ENV_PREFIX))
    {
        let hint = sources::suggestion(unknown, ALL_KEYS.iter().map(|k| k.env))
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        warnings.push(format!(
            "unknown environment variable {unknown} ignored{hint}"
        ));
    }

    let s = &src;
    let bind = field(s, &mut p, &BIND, parse_bind, || {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let database_url = field(
        s,
        &mut p,
        &DATABASE_URL,
        |k, raw| sources::text(k, raw).and_then(|t| DatabaseUrl::parse(&t)),
        || DatabaseUrl::parse("sqlite://sessiond.db?mode=rwc").expect("valid default"),
    );
    let redis_url = optional(s, &mut p, &REDIS_URL, |k, raw| {
        sources::text(k, raw).and_then(|t| RedisUrl::parse(&t))
    });
    let issuer = field(s, &mut p, &ISSUER, issuer, || {
        "http://localhost:8080".into()
    });
    let audience = field(s, &mut p, &AUDIENCE, sources::text, || "sessiond".into());

    let minutes = |m: u64| Duration::from_secs(m * 60);
    let days = |d: u64| Duration::from_secs(d * 24 * 3600);
    let access_ttl = duration(s, &mut p, &ACCESS_TTL, minutes(15), false);
    let refresh_idle_ttl = duration(s, &mut p, &REFRESH_IDLE_TTL, days(14), false);
    let session_max_ttl = duration(s, &mut p, &SESSION_MAX_TTL, days(30), false);
    let grace_window = duration(s, &mut p, &GRACE_WINDOW, Duration::from_secs(10), true);
    let passivate_after = duration(s, &mut p, &PASSIVATE_AFTER, minutes(5), false);
    let staleness = duration(s, &mut p, &STALENESS, Duration::from_secs(60), true);
    let call_timeout = duration(s, &mut p, &CALL_TIMEOUT, Duration::from_secs(5), false);
    let purge_interval = duration(s, &mut p, &PURGE_INTERVAL, minutes(60), false);
    let purge_retention = duration(s, &mut p, &PURGE_RETENTION, days(7), false);
    let api_key_usage_flush = duration(
        s,
        &mut p,
        &API_KEY_USAGE_FLUSH,
        Duration::from_secs(30),
        false,
    );
    let shutdown_timeout = duration(s, &mut p, &SHUTDOWN_TIMEOUT, Duration::from_secs(30), false);
    let shutdown_delay = duration(s, &mut p, &SHUTDOWN_DELAY, Duration::ZERO, true);
    let metrics_addr = optional(s, &mut p, &METRICS_ADDR, parse_bind);
    let metrics_token = optional(s, &mut p, &METRICS_TOKEN, metrics_token);
    let request_timeout = duration(s, &mut p, &REQUEST_TIMEOUT, Duration::from_secs(10), false);
    let mfa_challenge_ttl = duration(s, &mut p, &MFA_CHALLENGE_TTL, minutes(5), false);
    let totp_issuer = field(s, &mut p, &TOTP_ISSUER, totp_issuer, || "sessiond".into());

    let shards = bounded::<u64>(s, &mut p, &SHARDS, 0, 0, 1024);
    let signing_alg = field(
        s,
        &mut p,
        &SIGNING_ALG,
        |k, raw| sources::text(k, raw).and_then(|t| SigningAlg::parse(&t)),
        || SigningAlg::EdDsa,
    );
    let signing_key_file = field(
        s,
        &mut p,
        &SIGNING_KEY_FILE,
        |k, raw| sources::list(k, raw).map(|v| v.into_iter().map(PathBuf::from).collect()),
        Vec::new,
    );
    let refresh_key = optional(s, &mut p, &REFRESH_KEY, refresh_key);
    let keys_file = optional(s, &mut p, &KEYS_FILE, |k, raw| {
        sources::text(k, raw).map(PathBuf::from)
    });

    let argon2_memory_kib = bounded::<u32>(
        s,
        &mut p,
        &ARGON2_MEMORY_KIB,
        OWASP_MEMORY_KIB,
        argon2::Params::MIN_M_COST,
        ARGON2_MAX_MEMORY_KIB,
    );
    let argon2_iterations = bounded::<u32>(
        s,
        &mut p,
        &ARGON2_ITERATIONS,
        OWASP_ITERATIONS,
        argon2::Params::MIN_T_COST,
        argon2::Params::MAX_T_COST,
    );
    let argon2_parallelism = bounded::<u32>(
        s,
        &mut p,
        &ARGON2_PARALLELISM,
        1,
        argon2::Params::MIN_P_COST,
        argon2::Params::MAX_P_COST,
    );
    let hash_concurrency = bounded::<u64>(
        s,
        &mut p,
        &HASH_CONCURRENCY,
        default_hash_concurrency() as u64,
        1,
        1024,
    );
    let hash_queue = bounded::<u64>(s, &mut p, &HASH_QUEUE, 64, 0, 1_000_000);
    let hash_priority = field(
        s,
        &mut p,
        &HASH_PRIORITY,
        |k, raw| {
            match raw {
                // A bare TOML number is a nice value.
                Raw::Toml(figment::value::Value::Num(..)) => {
                    sources::integer::<u32>(k, raw).map(|n| n.to_string())
                }
                raw => sources::text(k, raw),
            }
            .and_then(|t| crate::crypto::password::HashPriority::parse(&t))
        },
        || crate::crypto::password::HashPriority::DEFAULT,
    );
    let max_body_bytes = field(s, &mut p, &MAX_BODY_BYTES, sources::byte_size, || 64 * 1024)
        .and_then(|n| {
            if (1024..=16 * 1024 * 1024).contains(&n) {
                Some(n)
            } else {
                p.key(
                    &MAX_BODY_BYTES,
                    format!("{n} must be between 1KiB and 16MiB"),
                );
                None
            }
        });
    let log_format = field(
        s,
        &mut p,
        &LOG_FORMAT,
        |k, raw| sources::text(k, raw).and_then(|t| parse_log_format(&t)),
        || LogFormat::Pretty,
    );
    let db_max_connections = bounded::<u32>(s, &mut p, &DB_MAX_CONNECTIONS, 16, 1, 1000);
    let db_acquire_timeout = duration(
        s,
        &mut p,
        &DB_ACQUIRE_TIMEOUT,
        crate::store::DEFAULT_ACQUIRE_TIMEOUT,
        false,
    );
    let abuse = abuse::parse(s, &mut p, &mut warnings, issuer.as_deref(), bind);
    let mail = mail::parse(s, &mut p, &mut warnings);
    let commit_max_batch = bounded::<u32>(s, &mut p, &COMMIT_MAX_BATCH, 64, 1, 1024);
    let commit_max_wait =
        duration(s, &mut p, &COMMIT_MAX_WAIT, Duration::ZERO, true).and_then(|d| {
            if d <= Duration::from_millis(100) {
                Some(d)
            } else {
                p.key(
                    &COMMIT_MAX_WAIT,
                    "must be at most 100ms: every session write may wait this long",
                );
                None
            }
        });
    let commit_slots = bounded::<u32>(
        s,
        &mut p,
        &COMMIT_SLOTS,
        crate::store::group_commit::PG_SLOTS as u32,
        1,
        crate::store::group_commit::MAX_PG_SLOTS as u32,
    );
    let reauth_max_age = duration(s, &mut p, &REAUTH_MAX_AGE, minutes(5), false);
    let api_key_scopes = field(s, &mut p, &API_KEY_SCOPES, api_key_scopes, Vec::new);
    let oauth = oauth::parse(s, &mut p, signing_alg, audience.as_deref());
    let oidc = oidc::parse(s, &mut p);
    let demo = optional(s, &mut p, &DEMO, on_off);
    let require_aal2_for = field(
        s,
        &mut p,
        &REQUIRE_AAL2_FOR,
        action_classes,
        crate::auth::reauth::ActionClasses::default,
    );

    // Relations between lifetimes (see the module documentation for the reasons).
    ordered(
        &mut p,
        (&ACCESS_TTL, access_ttl),
        (&REFRESH_IDLE_TTL, refresh_idle_ttl),
        false,
        "an access token must not outlive the idle lifetime of its session",
    );
    ordered(
        &mut p,
        (&REFRESH_IDLE_TTL, refresh_idle_ttl),
        (&SESSION_MAX_TTL, session_max_ttl),
        false,
        "the idle lifetime cannot be longer than the whole session",
    );
    ordered(
        &mut p,
        (&GRACE_WINDOW, grace_window),
        (&ACCESS_TTL, access_ttl),
        true,
        "the grace window only absorbs retries; a long one lets a stolen refresh token be \
         replayed undetected",
    );
    ordered(
        &mut p,
        (&STALENESS, staleness),
        (&ACCESS_TTL, access_ttl),
        true,
        "a revocation must be seen before the access tokens it stops expire",
    );
    ordered(
        &mut p,
        (&CALL_TIMEOUT, call_timeout),
        (&REQUEST_TIMEOUT, request_timeout),
        true,
        "an actor call must time out before the request does",
    );

    // Argon2's own rule across parameters: memory ≥ 8 KiB per lane.
    if let (Some(m), Some(t), Some(par)) =
        (argon2_memory_kib, argon2_iterations, argon2_parallelism)
    {
        if let Err(e) = argon2::Params::new(m, t, par, None) {
            p.key(
                &ARGON2_MEMORY_KIB,
                format!(
                    "{m} KiB is not accepted by argon2 with {} = {par} \
                     (at least 8 KiB per lane): {e}",
                    ARGON2_PARALLELISM.env
                ),
            );
        } else if m < OWASP_MEMORY_KIB || t < OWASP_ITERATIONS {
            warnings.push(format!(
                "argon2 parameters (m={m} KiB, t={t}, p={par}) are below OWASP's minimum \
                 (m=19456 KiB, t=2, p=1): fine for tests, weak for production"
            ));
        }
    }

    // Keys: several instances on one PostgreSQL database must sign and derive with the same
    // keys, so generating them per instance is never right there.
    let on_postgres = database_url.as_ref().is_some_and(DatabaseUrl::is_postgres);
    if on_postgres {
        if signing_key_file.as_ref().is_some_and(Vec::is_empty) {
            p.key(
                &SIGNING_KEY_FILE,
                "is required with PostgreSQL: instances must share keys \
                 (keys are generated only for SQLite development setups)",
            );
        }
        if matches!(refresh_key, Some(None)) {
            p.key(
                &REFRESH_KEY,
                "is required with PostgreSQL: instances must share keys \
                 (e.g. the output of `openssl rand -base64 32`)",
            );
        }
        if keys_file.as_ref().is_some_and(Option::is_some) {
            warnings.push(format!(
                "{KEYS_FILE} is ignored with PostgreSQL (keys come from \
                 {SIGNING_KEY_FILE} and {REFRESH_KEY})"
            ));
        }
    } else if signing_alg == Some(SigningAlg::Rs256)
        && signing_key_file.as_ref().is_some_and(Vec::is_empty)
    {
        p.key(
            &SIGNING_KEY_FILE,
            "is required with RS256: RSA keys are never generated \
             (e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`)",
        );
    }

    // Generated development keys (SQLite, no key configured) also mean a development relying
    // party on localhost unless one is configured.
    let development_keys = !on_postgres
        && signing_key_file.as_ref().is_some_and(Vec::is_empty)
        && matches!(refresh_key, Some(None));
    let webauthn = webauthn::parse(s, &mut p, development_keys);

    if !p.0.is_empty() {
        return Err(ConfigError { problems: p.0 });
    }

    // Every None above recorded a problem, so from here every value is present.
    const CHECKED: &str = "an invalid value records a problem";
    let database_url = database_url.expect(CHECKED);
    let keys_file = keys_file
        .expect(CHECKED)
        .or_else(|| database_url.sqlite_path().map(|db| default_keys_file(&db)));
    Ok(Config {
        config_file: None,
        bind: bind.expect(CHECKED),
        database_url,
        redis_url: redis_url.expect(CHECKED),
        issuer: issuer.expect(CHECKED),
        audience: audience.expect(CHECKED),
        access_ttl: access_ttl.expect(CHECKED),
        refresh_idle_ttl: refresh_idle_ttl.expect(CHECKED),
        session_max_ttl: session_max_ttl.expect(CHECKED),
        grace_window: grace_window.expect(CHECKED),
        passivate_after: passivate_after.expect(CHECKED),
        staleness: staleness.expect(CHECKED),
        call_timeout: call_timeout.expect(CHECKED),
        shards: shards.expect(CHECKED) as usize,
        signing_alg: signing_alg.expect(CHECKED),
        signing_key_file: signing_key_file.expect(CHECKED),
        refresh_key: refresh_key.expect(CHECKED),
        keys_file,
        argon2_memory_kib: argon2_memory_kib.expect(CHECKED),
        argon2_iterations: argon2_iterations.expect(CHECKED),
        argon2_parallelism: argon2_parallelism.expect(CHECKED),
        hash_concurrency: hash_concurrency.expect(CHECKED) as usize,
        hash_queue: hash_queue.expect(CHECKED) as usize,
        hash_priority: hash_priority.expect(CHECKED),
        purge_interval: purge_interval.expect(CHECKED),
        purge_retention: purge_retention.expect(CHECKED),
        api_key_usage_flush: api_key_usage_flush.expect(CHECKED),
        shutdown_timeout: shutdown_timeout.expect(CHECKED),
        shutdown_delay: shutdown_delay.expect(CHECKED),
        metrics_addr: metrics_addr.expect(CHECKED),
        metrics_token: metrics_token.expect(CHECKED),
        max_body_bytes: max_body_bytes.expect(CHECKED) as usize,
        request_timeout: request_timeout.expect(CHECKED),
        mfa_challenge_ttl: mfa_challenge_ttl.expect(CHECKED),
        totp_issuer: totp_issuer.expect(CHECKED),
        log_format: log_format.expect(CHECKED),
        db_max_connections: db_max_connections.expect(CHECKED),
        db_acquire_timeout: db_acquire_timeout.expect(CHECKED),
        abuse: abuse.expect(CHECKED),
        mail: mail.expect(CHECKED),
        commit_max_batch: commit_max_batch.expect(CHECKED) as usize,
        commit_max_wait: commit_max_wait.expect(CHECKED),
        commit_slots: commit_slots.expect(CHECKED) as usize,
        reauth_max_age: reauth_max_age.expect(CHECKED),
        api_key_scopes: api_key_scopes.expect(CHECKED),
        oauth: oauth.expect(CHECKED),
        oidc: oidc.expect(CHECKED),
        demo: demo.expect(CHECKED),
        webauthn: webauthn.expect(CHECKED),
        require_aal2_for: require_aal2_for.expect(CHECKED),
        warnings,
    })
}

/// A bearer token for `/metrics`: 16–256 visible ASCII characters (it travels in a header).
/// The value is never echoed.
fn metrics_token(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    if !(16..=256).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 16 to 256 visible ASCII characters (no spaces)".into());
    }
    Ok(s)
}

/// The otpauth issuer: shown by authenticator apps; the Key Uri Format forbids `:` in it.
fn totp_issuer(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    let s = s.trim();
    if s.is_empty() || s.contains(':') || s.chars().count() > 64 {
        return Err(format!("{s:?} must be 1-64 characters without ':'"));
    }
    Ok(s.to_owned())
}

fn parse_bind(key: &Key, raw: Raw<'_>) -> Result<SocketAddr, String> {
    let s = sources::text(key, raw)?;
    s.parse()
        .map_err(|_| format!("{s:?} is not a socket address (e.g. 127.0.0.1:8080 or [::]:8080)"))
}

/// `SESSIOND_DEMO`: `on` or `off` (also true/false, yes/no, 1/0, or a TOML boolean).
fn on_off(key: &Key, raw: Raw<'_>) -> Result<bool, String> {
    if let Raw::Toml(figment::value::Value::Bool(_, b)) = raw {
        return Ok(*b);
    }
    match sources::text(key, raw)?.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{} must be on or off", sources::shown(key, raw))),
    }
}

/// `SESSIOND_API_KEY_SCOPES`: a list of scopes, each valid as an API key's scope.
/// `SESSIOND_REQUIRE_AAL2_FOR`: known class names only; every unknown one is named.
fn action_classes(k: &Key, raw: Raw<'_>) -> Result<crate::auth::reauth::ActionClasses, String> {
    use crate::auth::reauth::ActionClass;
    let names = sources::list(k, raw)?;
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| ActionClass::parse(n).is_none())
        .map(|n| format!("{n:?}"))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = ActionClass::ALL.iter().map(|c| c.as_str()).collect();
        return Err(format!(
            "unknown action class {} (known: {})",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    Ok(names.iter().filter_map(|n| ActionClass::parse(n)).collect())
}

fn api_key_scopes(k: &Key, raw: Raw<'_>) -> Result<Vec<String>, String> {
    let scopes = sources::list(k, raw)?;
    crate::api_keys::parse_scopes(scopes).map_err(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn errors(toml: Option<&str>, pairs: &[(&str, &str)]) -> Vec<String> {
        Config::from_sources(toml, &env(pairs))
            .expect_err("configuration should be rejected")
            .problems()
            .to_vec()
    }

    const PG: (&str, &str) = ("DATABASE_URL", "postgres://app:s3cret@db.internal/sessiond");
    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn oauth_settings_and_their_rules() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.oauth.app_creators.is_empty());
        assert_eq!(c.oauth.secret_overlap, Duration::from_secs(24 * 3600));
        assert_eq!(c.oauth.audience, "sessiond-oauth");
        assert_eq!(c.oauth.id_token_key_file, None);
        let c = Config::from_sources(
            None,
            &env(&[
                (
                    "SESSIOND_APP_CREATORS",
                    " Ada@Example.com , bob@example.com",
                ),
                ("SESSIOND_APP_SECRET_OVERLAP", "0"),
                ("SESSIOND_ID_TOKEN_KEY_FILE", "/run/secrets/id.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(c.oauth.app_creators, ["ada@example.com", "bob@example.com"]);
        assert_eq!(c.oauth.secret_overlap, Duration::ZERO);
        assert_eq!(
            c.key_sources().id_token_key_file.as_deref(),
            Some(std::path::Path::new("/run/secrets/id.pem"))
        );

        let e = errors(
            None,
            &[
                ("SESSIOND_SIGNING_ALG", "HS256"),
                ("SESSIOND_ID_TOKEN_KEY_FILE", "/run/secrets/id.pem"),
                ("SESSIOND_OAUTH_AUDIENCE", "sessiond"),
                ("SESSIOND_APP_CREATORS", "not-an-email"),
                ("SESSIOND_APP_SECRET_OVERLAP", "31d"),
            ],
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_ID_TOKEN_KEY_FILE") && m.contains("HS256"))
        );
        assert!(
            e.iter().any(
                |m| m.starts_with("SESSIOND_OAUTH_AUDIENCE") && m.contains("SESSIOND_AUDIENCE")
            )
        );
        assert!(e.iter().any(|m| m.starts_with("SESSIOND_APP_CREATORS")));
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_APP_SECRET_OVERLAP"))
        );
    }

    #[test]
    fn authorization_code_lifetime_is_one_to_sixty_seconds() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.oauth.code_ttl, Duration::from_secs(60));
        let c = Config::from_sources(None, &env(&[("SESSIOND_OAUTH_CODE_TTL", "1s")])).unwrap();
        assert_eq!(c.oauth.code_ttl, Duration::from_secs(1));
        for bad in ["0", "61s", "soon"] {
            let e = errors(None, &[("SESSIOND_OAUTH_CODE_TTL", bad)]);
            assert!(
                e.iter().any(|m| m.starts_with("SESSIOND_OAUTH_CODE_TTL")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn demo_setting_is_on_off_or_unset() {
        assert_eq!(Config::from_sources(None, &[]).unwrap().demo, None);
        for (value, want) in [("on", true), ("OFF", false), ("true", true), ("0", false)] {
            let c = Config::from_sources(None, &env(&[("SESSIOND_DEMO", value)])).unwrap();
            assert_eq!(c.demo, Some(want), "{value}");
        }
        let c = Config::from_sources(Some("demo = false"), &[]).unwrap();
        assert_eq!(c.demo, Some(false));
        let e = errors(None, &[("SESSIOND_DEMO", "sometimes")]);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].starts_with("SESSIOND_DEMO") && e[0].contains("toml: demo"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn reauthentication_and_api_key_scope_settings() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.reauth_max_age, Duration::from_secs(300));
        assert!(
            c.api_key_scopes.is_empty(),
            "no scopes unless the operator lists them"
        );
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_REAUTH_MAX_AGE", "90s"),
                ("SESSIOND_API_KEY_SCOPES", "invoices:read, billing/write"),
            ]),
        )
        .unwrap();
        assert_eq!(c.reauth_max_age, Duration::from_secs(90));
        assert_eq!(c.api_key_scopes, ["invoices:read", "billing/write"]);
        let e = errors(
            None,
            &[
                ("SESSIOND_REAUTH_MAX_AGE", "0s"),
                ("SESSIOND_API_KEY_SCOPES", "ok,has space"),
            ],
        );
        assert!(
            e.iter().any(|m| m.starts_with("SESSIOND_REAUTH_MAX_AGE")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with("SESSIOND_API_KEY_SCOPES")),
            "{e:?}"
        );
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8080".parse().unwrap());
        assert!(c.is_sqlite());
        assert_eq!(c.database_url.as_str(), "sqlite://sessiond.db?mode=rwc");
        assert!(c.redis_url.is_none());
        assert_eq!(c.issuer, "http://localhost:8080");
        assert_eq!(c.audience, "sessiond");
        assert_eq!(c.access_ttl, Duration::from_secs(15 * 60));
        assert_eq!(c.refresh_idle_ttl, Duration::from_secs(14 * 86400));
        assert_eq!(c.session_max_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(c.grace_window, Duration::from_secs(10));
        assert_eq!(c.passivate_after, Duration::from_secs(300));
        assert_eq!(c.staleness, Duration::from_secs(60));
        assert_eq!(c.call_timeout, Duration::from_secs(5));
        assert_eq!(c.shards, 0);
        assert_eq!(c.signing_alg, SigningAlg::EdDsa);
        assert!(c.signing_key_file.is_empty());
        assert!(c.refresh_key.is_none());
        assert_eq!(c.keys_file, Some(PathBuf::from("sessiond.keys")));
        assert_eq!(
            (
                c.argon2_memory_kib,
                c.argon2_iterations,
                c.argon2_parallelism
            ),
            (19456, 2, 1)
        );
        assert!(c.hash_concurrency >= 1);
        assert_eq!(c.hash_queue, 64);
        assert_eq!(c.purge_interval, Duration::from_secs(3600));
        assert_eq!(c.purge_retention, Duration::from_secs(7 * 86400));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.db_max_connections, 16);
        assert_eq!(c.db_acquire_timeout, Duration::from_secs(5));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let _ = c.argon2_params();
    }

    #[test]
    fn toml_sets_values_and_the_environment_overrides_them() {
        let toml = r#"
            bind = "0.0.0.0:9000"
            access_ttl = "5m"
            grace_window = "2s"
            shards = 8
            signing_key_file = ["new.pem", "old.pem"]
            log_format = "json"
            argon2_memory_kib = 65536
            max_body_bytes = "128KiB"
        "#;
        let c = Config::from_sources(
            Some(toml),
            &env(&[("SESSIOND_ACCESS_TTL", "10m"), ("SESSIOND_SHARDS", "4")]),
        )
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.access_ttl, Duration::from_secs(600));
        assert_eq!(c.grace_window, Duration::from_secs(2));
        assert_eq!(c.shards, 4);
        assert_eq!(
            c.signing_key_file,
            vec![PathBuf::from("new.pem"), PathBuf::from("old.pem")]
        );
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.argon2_memory_kib, 65536);
        assert_eq!(c.max_body_bytes, 128 * 1024);
    }

    #[test]
    fn key_files_are_comma_separated_in_the_environment() {
        let c = Config::from_sources(
            None,
            &env(&[("SESSIOND_SIGNING_KEY_FILE", "/k/a.pem, /k/b.pem")]),
        )
        .unwrap();
        assert_eq!(
            c.signing_key_file,
            vec![PathBuf::from("/k/a.pem"), PathBuf::from("/k/b.pem")]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_both_spellings() {
        let e = errors(
            None,
            &[
                ("SESSIOND_ACCESS_TTL", "abc"),
                ("SESSIOND_BIND", "nowhere"),
                ("SESSIOND_SHARDS", "-3"),
                ("SESSIOND_LOG_FORMAT", "xml"),
            ],
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e.contains(
            &"SESSIOND_ACCESS_TTL (toml: access_ttl): \"abc\" is not a duration (e.g. 15m, 10s)"
                .to_string()
        ));
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_BIND (toml: bind): "))
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_SHARDS (toml: shards): "))
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_LOG_FORMAT (toml: log_format): "))
        );
    }

    #[test]
    fn display_lists_one_problem_per_line() {
        let err = Config::from_sources(
            None,
            &env(&[("SESSIOND_ACCESS_TTL", "abc"), ("SESSIOND_BIND", "x")]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().nth(1).unwrap().contains("SESSIOND_"));
    }

    #[test]
    fn lifetimes_must_be_positive() {
        for (k, v) in [
            ("SESSIOND_ACCESS_TTL", "-5m"),
            ("SESSIOND_ACCESS_TTL", "0s"),
            ("SESSIOND_REQUEST_TIMEOUT", "0ms"),
        ] {
            let e = errors(None, &[(k, v)]);
            assert!(e[0].starts_with(k), "{e:?}");
            assert!(e[0].contains("must be a positive duration"), "{e:?}");
        }
        // Zero is meaningful for these two.
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_GRACE_WINDOW", "0s"),
                ("SESSIOND_STALENESS", "0s"),
            ]),
        )
        .unwrap();
        assert!(c.grace_window.is_zero() && c.staleness.is_zero());
    }

    #[test]
    fn absurd_durations_are_rejected() {
        let e = errors(None, &[("SESSIOND_PURGE_RETENTION", "100000y")]);
        assert!(e[0].contains("too long"), "{e:?}");
    }

    #[test]
    fn lifetime_relations_are_checked() {
        let e = errors(None, &[("SESSIOND_ACCESS_TTL", "15d")]);
        assert!(e[0].starts_with("SESSIOND_ACCESS_TTL (toml: access_ttl): 15days must not exceed SESSIOND_REFRESH_IDLE_TTL (toml: refresh_idle_ttl)"), "{e:?}");
        let e = errors(None, &[("SESSIOND_REFRESH_IDLE_TTL", "31d")]);
        assert!(e[0].contains("SESSIOND_SESSION_MAX_TTL"), "{e:?}");
        let e = errors(None, &[("SESSIOND_GRACE_WINDOW", "15m")]);
        assert!(e[0].starts_with("SESSIOND_GRACE_WINDOW"), "{e:?}");
        let e = errors(None, &[("SESSIOND_STALENESS", "1h")]);
        assert!(e[0].starts_with("SESSIOND_STALENESS"), "{e:?}");
        let e = errors(None, &[("SESSIOND_CALL_TIMEOUT", "10s")]);
        assert!(e[0].contains("SESSIOND_REQUEST_TIMEOUT"), "{e:?}");
        // Equal access and idle lifetimes are allowed.
        Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_ACCESS_TTL", "1h"),
                ("SESSIOND_REFRESH_IDLE_TTL", "1h"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn an_invalid_value_does_not_cause_spurious_relation_errors() {
        // The idle TTL is broken; the access TTL must not be compared to a stand-in default.
        let e = errors(
            None,
            &[
                ("SESSIOND_ACCESS_TTL", "20d"),
                ("SESSIOND_REFRESH_IDLE_TTL", "soon"),
            ],
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("SESSIOND_REFRESH_IDLE_TTL"));
    }

    #[test]
    fn database_url_scheme_is_checked_without_echoing_the_url() {
        let e = errors(None, &[("DATABASE_URL", "mysql://root:hunter2@db/x")]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("DATABASE_URL (toml: database_url): "),
            "{e:?}"
        );
        assert!(e[0].contains("\"mysql\""), "{e:?}");
        assert!(!e[0].contains("hunter2"), "{e:?}");
        assert!(Config::from_sources(None, &env(&[("DATABASE_URL", "sqlite::memory:")])).is_ok());
    }

    #[test]
    fn postgres_requires_shared_keys() {
        let e = errors(None, &[PG]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("SESSIOND_SIGNING_KEY_FILE (toml: signing_key_file)"));
        assert!(e[0].contains("instances must share keys"));
        assert!(e[1].starts_with("SESSIOND_REFRESH_KEY (toml: refresh_key)"));
        let c = Config::from_sources(
            None,
            &env(&[
                PG,
                ("SESSIOND_SIGNING_KEY_FILE", "/run/secrets/jwt.pem"),
                ("SESSIOND_REFRESH_KEY", KEY),
            ]),
        )
        .unwrap();
        assert!(c.is_postgres());
        assert_eq!(c.keys_file, None);
    }

    #[test]
    fn rs256_needs_a_key_file_even_on_sqlite() {
        let e = errors(None, &[("SESSIOND_SIGNING_ALG", "RS256")]);
        assert!(e[0].starts_with("SESSIOND_SIGNING_KEY_FILE"), "{e:?}");
        let e = errors(None, &[("SESSIOND_SIGNING_ALG", "none")]);
        assert!(e[0].starts_with("SESSIOND_SIGNING_ALG"), "{e:?}");
    }

    #[test]
    fn refresh_key_accepts_base64_or_raw_and_hides_its_value() {
        let b64 = STANDARD.encode([7u8; 32]);
        assert!(
            Config::from_sources(None, &env(&[("SESSIOND_REFRESH_KEY", &b64)]))
                .unwrap()
                .refresh_key
                .is_some()
        );
        let raw = "this raw key is longer than 32 bytes!!";
        assert!(
            Config::from_sources(None, &env(&[("SESSIOND_REFRESH_KEY", raw)]))
                .unwrap()
                .refresh_key
                .is_some()
        );
        let e = errors(None, &[("SESSIOND_REFRESH_KEY", "tooshort-secret")]);
        assert!(e[0].starts_with("SESSIOND_REFRESH_KEY (toml: refresh_key)"));
        assert!(!e[0].contains("tooshort-secret"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::from_sources(
            None,
            &env(&[
                PG,
                ("REDIS_URL", "redis://:redispass@cache:6379/0"),
                ("SESSIOND_SIGNING_KEY_FILE", "/k.pem"),
                ("SESSIOND_REFRESH_KEY", KEY),
            ]),
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("redispass"), "{debug}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("db.internal"), "{debug}");
    }

    #[test]
    fn url_redaction() {
        assert_eq!(
            redact_url("postgres://u:p@h:5432/db?sslmode=require&password=x"),
            "postgres://u:***@h:5432/db?…"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
    }

    #[test]
    fn unknown_toml_keys_are_errors_with_suggestions() {
        let e = errors(Some("acess_ttl = \"5m\""), &[]);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("unknown key \"acess_ttl\""), "{e:?}");
        assert!(e[0].contains("did you mean access_ttl"), "{e:?}");
    }

    #[test]
    fn unknown_environment_variables_are_warnings() {
        let c = Config::from_sources(None, &env(&[("SESSIOND_ACESS_TTL", "5m")])).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("SESSIOND_ACCESS_TTL"));
    }

    #[test]
    fn argon2_limits_are_enforced() {
        let e = errors(None, &[("SESSIOND_ARGON2_MEMORY_KIB", "4")]);
        assert!(e[0].starts_with("SESSIOND_ARGON2_MEMORY_KIB"), "{e:?}");
        let e = errors(None, &[("SESSIOND_ARGON2_ITERATIONS", "0")]);
        assert!(e[0].starts_with("SESSIOND_ARGON2_ITERATIONS"), "{e:?}");
        let e = errors(
            None,
            &[
                ("SESSIOND_ARGON2_MEMORY_KIB", "64"),
                ("SESSIOND_ARGON2_PARALLELISM", "16"),
            ],
        );
        assert!(e[0].contains("8 KiB per lane"), "{e:?}");
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_ARGON2_MEMORY_KIB", "64"),
                ("SESSIOND_ARGON2_ITERATIONS", "1"),
            ]),
        )
        .unwrap();
        assert!(c.warnings[0].contains("OWASP"));
    }

    #[test]
    fn numeric_bounds() {
        assert!(!errors(None, &[("SESSIOND_HASH_CONCURRENCY", "0")]).is_empty());
        assert!(!errors(None, &[("SESSIOND_DB_MAX_CONNECTIONS", "0")]).is_empty());
        assert!(!errors(None, &[("SESSIOND_MAX_BODY_BYTES", "12")]).is_empty());
        let c = Config::from_sources(None, &env(&[("SESSIOND_HASH_QUEUE", "0")])).unwrap();
        assert_eq!(c.hash_queue, 0);
        assert!(!errors(None, &[("SESSIOND_HASH_PRIORITY", "20")]).is_empty());
        assert!(!errors(None, &[("SESSIOND_HASH_PRIORITY", "batch")]).is_empty());
    }

    #[test]
    fn hashing_priority_is_a_nice_value_or_idle() {
        use crate::crypto::password::HashPriority;
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.hash_priority, HashPriority::Nice(10));
        let c = Config::from_sources(None, &env(&[("SESSIOND_HASH_PRIORITY", "idle")])).unwrap();
        assert_eq!(c.hashing().priority, HashPriority::Idle);
        let c = Config::from_sources(Some("hash_priority = 19"), &env(&[])).unwrap();
        assert_eq!(c.hash_priority, HashPriority::Nice(19));
    }

    #[test]
    fn issuer_must_be_an_http_url() {
        let e = errors(None, &[("SESSIOND_ISSUER", "not a url")]);
        assert!(e[0].starts_with("SESSIOND_ISSUER (toml: issuer)"));
        let e = errors(None, &[("SESSIOND_ISSUER", "https://id.example.com/?x=1")]);
        assert!(e[0].contains("query"));
        let c = Config::from_sources(None, &env(&[("SESSIOND_ISSUER", "https://id.example.com")]))
            .unwrap();
        assert_eq!(c.issuer, "https://id.example.com");
    }

    #[test]
    fn toml_type_errors_name_the_key() {
        let e = errors(Some("access_ttl = 300\nbind = 5"), &[]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("SESSIOND_BIND (toml: bind): expected a string"));
        assert!(e[1].starts_with("SESSIOND_ACCESS_TTL (toml: access_ttl): a bare number"));
    }

    #[test]
    fn sqlite_paths_and_default_keys_file() {
        let cases = [
            ("sqlite://sessiond.db?mode=rwc", Some("sessiond.keys")),
            ("sqlite:data/app.sqlite", Some("data/app.keys")),
            ("sqlite:///var/lib/s/app.db", Some("/var/lib/s/app.keys")),
            ("sqlite://noext", Some("noext.keys")),
            ("sqlite::memory:", None),
            ("sqlite://:memory:", None),
            ("sqlite://x.db?mode=memory&cache=shared", None),
        ];
        for (url, keys) in cases {
            let c = Config::from_sources(None, &env(&[("DATABASE_URL", url)])).unwrap();
            assert_eq!(c.keys_file, keys.map(PathBuf::from), "{url}");
        }
        let c =
            Config::from_sources(None, &env(&[("SESSIOND_KEYS_FILE", "/tmp/dev.keys")])).unwrap();
        assert_eq!(c.keys_file, Some(PathBuf::from("/tmp/dev.keys")));
    }

    #[test]
    fn signing_alg_and_log_format_parse_case_insensitively() {
        assert_eq!(SigningAlg::parse("eddsa").unwrap(), SigningAlg::EdDsa);
        assert_eq!(SigningAlg::parse("hs256").unwrap(), SigningAlg::Hs256);
        assert_eq!(SigningAlg::Rs256.to_string(), "RS256");
        assert!(SigningAlg::parse("ES256").is_err());
        assert_eq!(parse_log_format("JSON").unwrap(), LogFormat::Json);
    }
}
