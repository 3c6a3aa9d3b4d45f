//! The command line. Deliberately small: every setting lives in the environment or the TOML
//! file (see [`crate::config`]), so one configuration serves every subcommand and no setting
//! can disagree between a flag and a variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const CONFIG_HELP: &str = "\
Configuration:
  Settings come from environment variables, which override an optional TOML file:
  ./sessiond.toml, or the file named by SESSIOND_CONFIG. Each variable SESSIOND_<KEY>
  is the TOML key <key> in lowercase (SESSIOND_ACCESS_TTL = access_ttl), except
  DATABASE_URL and REDIS_URL. Durations use units: 15m, 10s, 250ms, 14d.

  Common settings:
    DATABASE_URL                sqlite://sessiond.db?mode=rwc (default) or postgres://...
    SESSIOND_BIND               listen address, default 127.0.0.1:8080
    SESSIOND_ISSUER             token issuer URL, default http://localhost:8080
    SESSIOND_SIGNING_ALG        EdDSA (default), RS256 or HS256
    SESSIOND_SIGNING_KEY_FILE   PEM key file(s), comma-separated; the first signs
    SESSIOND_REFRESH_KEY        secret for refresh tokens (base64, 32+ bytes)
    SESSIOND_ACCESS_TTL         access-token lifetime, default 15m
    SESSIOND_LOG_FORMAT         pretty (default) or json; filter with RUST_LOG

  With SQLite and no keys configured, development keys are generated and kept next to
  the database (sessiond.keys). PostgreSQL requires SESSIOND_SIGNING_KEY_FILE and
  SESSIOND_REFRESH_KEY: instances must share keys.

  Invalid configuration is reported in full on stderr, naming each variable and TOML
  key, and the process exits with status 2.";

/// `sessiond [serve | migrate | seed | user]`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sessiond",
    version,
    about = "Authentication and session service: one supervised actor per session.",
    long_about = "Authentication and session service: one supervised actor per session.\n\n\
                  Issues short-lived access tokens (JWT) and rotating refresh tokens with \
                  replay detection. Without a subcommand it serves.",
    after_long_help = CONFIG_HELP,
    after_help = "Run `sessiond --help` for the configuration variables."
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default). Applies pending database migrations first.
    #[command(
        long_about = "Serve the HTTP API (the default when no subcommand is given).\n\n\
                      Validates the configuration, loads or (SQLite only) generates keys, \
                      applies pending migrations, then listens on SESSIOND_BIND until \
                      SIGINT/SIGTERM, draining requests for up to SESSIOND_SHUTDOWN_TIMEOUT.",
        after_long_help = CONFIG_HELP
    )]
    Serve,
    /// Apply pending database migrations to DATABASE_URL, then exit.
    #[command(
        long_about = "Apply pending database migrations to DATABASE_URL, then exit.\n\n\
                      Safe to run repeatedly and before every deployment; instances can then \
                      start without racing to migrate.",
        after_long_help = CONFIG_HELP
    )]
    Migrate,
    /// Create load-test accounts (and sessions) directly in the store; write their
    /// credentials to a JSON-lines file for k6.
    #[command(
        long_about = "Create load-test accounts, and optionally live sessions, directly in the \
                      store (DATABASE_URL, migrated first), in bulk.\n\n\
                      Accounts are user<i>@seed.test, all with one password (hashed once). \
                      Each line of the output file is a JSON object {email, password, user_id, \
                      session_id, refresh_token, access_token}: one per session, or one per \
                      account when --sessions-per-user is 0. Access tokens are signed with the \
                      configured keys and expire after SESSIOND_ACCESS_TTL. The file holds \
                      bearer credentials (mode 0600).",
        after_long_help = CONFIG_HELP
    )]
    Seed(SeedArgs),
    /// Disable or enable an account (operator actions, audited).
    #[command(subcommand)]
    User(UserCommand),
}

/// `sessiond user ...`: operator actions on one account, named by its email.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UserCommand {
    /// Disable an account: refuse its logins, revoke every session, refuse its API keys.
    #[command(
        long_about = "Disable an account in DATABASE_URL: its status becomes disabled (audited \
                      as account_disabled), every live session is revoked through the session \
                      engine and the revocation is published to every running instance. Its \
                      access tokens, refresh tokens and API keys then answer 401 \
                      account_disabled; logins answer invalid_credentials. Safe to repeat.",
        after_long_help = CONFIG_HELP
    )]
    Disable {
        /// The account's email address.
        email: String,
    },
    /// Enable a disabled account again: new logins succeed; revoked sessions stay revoked.
    #[command(
        long_about = "Enable a disabled account in DATABASE_URL again (audited as \
                      account_enabled): logins succeed and its API keys work again. Sessions \
                      revoked by the disabling stay revoked. Safe to repeat.",
        after_long_help = CONFIG_HELP
    )]
    Enable {
        /// The account's email address.
        email: String,
    },
}

/// `sessiond seed` options.
#[derive(Clone, PartialEq, Eq, Args)]
pub struct SeedArgs {
    /// How many accounts to create.
    #[arg(long, value_name = "N")]
    pub users: u64,
    /// Live sessions to create per account (0: accounts only).
    #[arg(long, value_name = "M", default_value_t = 0)]
    pub sessions_per_user: u32,
    /// The JSON-lines file to write (overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The password every account shares (8–128 characters).
    #[arg(long, value_name = "P", default_value = "seed-password-0")]
    pub password: String,
    /// Number of the first account (user<first>@seed.test), to add to a seeded database.
    #[arg(long, value_name = "I", default_value_t = 0)]
    pub first: u64,
}

impl std::fmt::Debug for SeedArgs {
    /// The password is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedArgs")
            .field("users", &self.users)
            .field("sessions_per_user", &self.sessions_per_user)
            .field("out", &self.out)
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl Cli {
    /// The subcommand to run: `serve` when none was given.
    pub fn command_or_default(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::try_parse_from(["sessiond"]).unwrap();
        assert_eq!(cli.command_or_default(), Command::Serve);
        let cli = Cli::try_parse_from(["sessiond", "serve"]).unwrap();
        assert_eq!(cli.command_or_default(), Command::Serve);
        let cli = Cli::try_parse_from(["sessiond", "migrate"]).unwrap();
        assert_eq!(cli.command_or_default(), Command::Migrate);
    }

    #[test]
    fn seed_takes_its_flags() {
        let cli = Cli::try_parse_from([
            "sessiond",
            "seed",
            "--users",
            "10",
            "--sessions-per-user",
            "2",
            "--out",
            "seed.jsonl",
        ])
        .unwrap();
        let Command::Seed(args) = cli.command_or_default() else {
            panic!("not seed");
        };
        assert_eq!((args.users, args.sessions_per_user, args.first), (10, 2, 0));
        assert_eq!(args.out, PathBuf::from("seed.jsonl"));
        assert!(!format!("{args:?}").contains(&args.password));
        assert!(Cli::try_parse_from(["sessiond", "seed", "--out", "x"]).is_err());
    }

    #[test]
    fn user_disable_and_enable_take_an_email() {
        let cli = Cli::try_parse_from(["sessiond", "user", "disable", "a@example.com"]).unwrap();
        assert_eq!(
            cli.command_or_default(),
            Command::User(UserCommand::Disable {
                email: "a@example.com".into()
            })
        );
        let cli = Cli::try_parse_from(["sessiond", "user", "enable", "a@example.com"]).unwrap();
        assert_eq!(
            cli.command_or_default(),
            Command::User(UserCommand::Enable {
                email: "a@example.com".into()
            })
        );
        assert!(Cli::try_parse_from(["sessiond", "user", "disable"]).is_err());
        assert!(Cli::try_parse_from(["sessiond", "user", "delete", "a@example.com"]).is_err());
    }

    #[test]
    fn unknown_subcommands_and_flags_are_refused() {
        assert!(Cli::try_parse_from(["sessiond", "launch"]).is_err());
        assert!(Cli::try_parse_from(["sessiond", "--port", "1"]).is_err());
    }

    #[test]
    fn help_points_at_the_configuration() {
        let help = Cli::command().render_long_help().to_string();
        for expected in [
            "serve",
            "migrate",
            "SESSIOND_CONFIG",
            "DATABASE_URL",
            "sessiond.toml",
        ] {
            assert!(help.contains(expected), "missing {expected:?} in:\n{help}");
        }
        let err = Cli::try_parse_from(["sessiond", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
    }
}
