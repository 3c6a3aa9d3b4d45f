//! The real binary's first log line says where it listens, which store and which keys —
//! before any warning (issue "Session engine core", CLI section). Operators read it first.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn first_log_line_names_address_store_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("SESSIOND_BIND", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
            )
            // An unknown variable makes a configuration warning; it must come after.
            .env("SESSIOND_NOT_A_SETTING", "1")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sessiond starts"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    // Read until the first warning (bounded by count and time).
    while Instant::now() < deadline
        && lines.len() < 20
        && !lines.iter().any(|l: &String| l.contains("WARN"))
    {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if !line.trim().is_empty() => lines.push(line),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let first = lines.first().expect("sessiond logged something");
    assert!(
        first.contains("sessiond listening on http://127.0.0.1:"),
        "first line: {first}\nall: {lines:#?}"
    );
    assert!(first.contains("store: sqlite"), "{first}");
    assert!(first.contains("keys: alg EdDSA"), "{first}");
    assert!(
        lines.iter().any(|l| l.contains("WARN")),
        "the development-keys and configuration warnings follow: {lines:#?}"
    );
}
