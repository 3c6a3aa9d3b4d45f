//! The `sessiond` binary: parse the command line, load and validate the configuration, then
//! serve, migrate, seed or act on an account.

use std::process::ExitCode;

use clap::Parser;
use sessiond::accounts::UserAction;
use sessiond::app::{Application, shutdown_signal};
use sessiond::cli::{Cli, Command, UserCommand};
use sessiond::config::Config;
use sessiond::store::Store;
use sessiond::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("sessiond: invalid configuration:\n{errors}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sessiond: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter (when configured) runs its batch task on this runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::init(config.log_format)
    };
    let result = runtime.block_on(async move {
        match cli.command_or_default() {
            Command::Serve => {
                Application::build(config)
                    .await?
                    .run_until_stopped(shutdown_signal())
                    .await
            }
            Command::Migrate => {
                let store = Store::connect(&config.database_url).await?;
                store.migrate().await?;
                tracing::info!(store = store.backend().as_str(), "migrations applied");
                store.close().await;
                Ok(())
            }
            Command::User(command) => {
                let (action, email) = match &command {
                    UserCommand::Disable { email } => (UserAction::Disable, email),
                    UserCommand::Enable { email } => (UserAction::Enable, email),
                };
                let done = sessiond::accounts::run(&config, action, email).await?;
                tracing::info!("{done}");
                println!("{done}");
                Ok(())
            }
            Command::Seed(args) => {
                let report = sessiond::seed::run(
                    &config,
                    &sessiond::seed::SeedOptions {
                        users: args.users,
                        sessions_per_user: args.sessions_per_user,
                        out: args.out.clone(),
                        password: args.password,
                        first: args.first,
                    },
                )
                .await?;
                tracing::info!(
                    users = report.users,
                    sessions = report.sessions,
                    elapsed = ?report.elapsed,
                    out = %args.out.display(),
                    "seeded"
                );
                println!(
                    "seeded {} users and {} sessions in {:.2?}; credentials in {}",
                    report.users,
                    report.sessions,
                    report.elapsed,
                    args.out.display()
                );
                Ok(())
            }
        }
    });
    // Export the last spans while the runtime still runs (from this thread, not a worker).
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("sessiond: {e:#}");
            eprintln!("sessiond: {e:#}");
            ExitCode::FAILURE
        }
    }
}
