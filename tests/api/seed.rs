//! `sessiond seed`: run the real binary against a fresh database, then start a server on that
//! database and use the credentials it wrote (login with the password, refresh with a seeded
//! refresh token, `/me` with a seeded access token).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app_with, write_keys};

const PASSWORD: &str = "seeded password 1";

/// Runs `sessiond seed` with `args` against `url`, with the given keys; returns the exit status
/// and stderr.
fn run_seed(url: &str, keys: &(String, String), dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .arg("seed")
        .args(args)
        // No sessiond.toml from the working tree.
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("SESSIOND_SIGNING_KEY_FILE", &keys.0)
        .env("SESSIOND_REFRESH_KEY", &keys.1)
        .env("SESSIOND_ARGON2_MEMORY_KIB", "1024")
        .env("SESSIOND_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("sessiond runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn seeded_credentials_work_against_a_server(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database(dir.path()).await;
    let keys = write_keys(dir.path());
    let out = dir.path().join("seed.jsonl");
    // 2 100 accounts: more than one SQLite statement's worth of rows.
    let (ok, stderr) = run_seed(
        db.url(),
        &keys,
        dir.path(),
        &[
            "--users",
            "2100",
            "--sessions-per-user",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--password",
            PASSWORD,
        ],
    );
    assert!(ok, "seed failed: {stderr}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the credentials file is private");
    }
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4200, "one line per session");
    let sessions: HashSet<&str> = lines
        .iter()
        .map(|l| l["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 4200);
    let emails: HashSet<&str> = lines.iter().map(|l| l["email"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 2100);
    assert!(emails.contains("user0@seed.test") && emails.contains("user2099@seed.test"));
    assert!(lines.iter().all(|l| l["password"] == PASSWORD));

    // A server on the same database, with the same keys.
    let app = spawn_app_with(
        backend,
        &[
            ("DATABASE_URL", db.url()),
            ("SESSIOND_SIGNING_KEY_FILE", &keys.0),
            ("SESSIOND_REFRESH_KEY", &keys.1),
        ],
    )
    .await;

    let line = &lines[3001];
    let email = line["email"].as_str().unwrap();

    // The seeded access token authenticates as its account and session.
    let response = app
        .get_authed("/v1/auth/me", line["access_token"].as_str().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["user"]["email"], email);
    assert_eq!(me["user"]["id"], line["user_id"]);
    assert_eq!(me["session"]["id"], line["session_id"]);

    // The seeded refresh token rotates (once: it is single-use like any other).
    let response = app.refresh(line["refresh_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["session"]["id"], line["session_id"]);
    assert_eq!(body["user"]["email"], email);

    // The shared password logs in to any seeded account.
    let response = app.login("user1234@seed.test", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.login("user1234@seed.test", "not the password").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Both sessions of an account are listed for it.
    let response = app
        .get_authed("/v1/auth/sessions", line["access_token"].as_str().unwrap())
        .await;
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 2, "{page}");
    app.stop().await;

    // Seeding the same accounts again fails loudly; --first adds new ones.
    let (ok, stderr) = run_seed(
        db.url(),
        &keys,
        dir.path(),
        &["--users", "3", "--out", out.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(stderr.contains("already seeded"), "{stderr}");
    let (ok, stderr) = run_seed(
        db.url(),
        &keys,
        dir.path(),
        &[
            "--users",
            "3",
            "--first",
            "2100",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "accounts only: one line each");
    assert_eq!(lines[0]["email"], "user2100@seed.test");
    assert!(lines[0]["session_id"].is_null() && lines[0]["refresh_token"].is_null());
}

async fn seed_refuses_bad_arguments(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh_database(dir.path()).await;
    let keys = write_keys(dir.path());
    let out = dir.path().join("seed.jsonl");
    for args in [
        vec!["--users", "0", "--out", out.to_str().unwrap()],
        vec![
            "--users",
            "2",
            "--password",
            "short",
            "--out",
            out.to_str().unwrap(),
        ],
        vec![
            "--users",
            "2",
            "--sessions-per-user",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ],
    ] {
        let (ok, stderr) = run_seed(db.url(), &keys, dir.path(), &args);
        assert!(!ok, "{args:?} accepted");
        assert!(!stderr.is_empty());
        assert!(
            !stderr.contains("short"),
            "the password is not echoed: {stderr}"
        );
    }
}

both_backends!(
    seeded_credentials_work_against_a_server,
    seed_refuses_bad_arguments,
);
