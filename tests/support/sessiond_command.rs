//! The real `sessiond` binary as a child process, set up the same way for every test crate that
//! starts one (`processes`, `otlp`).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// A command running the `sessiond` binary with a clean environment (only `PATH` and `HOME`
/// kept): on 127.0.0.1 with a random port against `database_url`, with cheap argon2, no rate
/// limits (every test client is 127.0.0.1), `RUST_LOG=info` and no colours; then `settings`,
/// which add or override. Stdin and stdout are closed; stderr is piped.
pub fn sessiond_command<K, V>(database_url: &str, settings: &[(K, V)]) -> Command
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("DATABASE_URL", database_url)
        .env("SESSIOND_BIND", "127.0.0.1:0")
        .env("SESSIOND_ARGON2_MEMORY_KIB", "1024")
        .env("SESSIOND_ARGON2_ITERATIONS", "1")
        .env("SESSIOND_ARGON2_PARALLELISM", "1")
        .env("SESSIOND_RATE_LIMITS", "off")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (key, value) in settings {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Reads `stderr` to its end (so the pipe never fills), handing each line, decoded lossily and
/// without trailing white space, to `line`.
pub fn each_line(stderr: impl Read, mut line: impl FnMut(String)) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        line(String::from_utf8_lossy(&buf).trim_end().to_owned());
    }
}

/// `127.0.0.1:PORT` from a line containing `sessiond listening on http://127.0.0.1:PORT` (in
/// either log format).
pub fn listening_address(line: &str) -> Option<String> {
    const MARK: &str = "sessiond listening on http://";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let address: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| format!("{host}:{port}"))
}
