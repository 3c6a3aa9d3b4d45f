//! A real SMTP server (aiosmtpd, `tests/support/smtp_sink.py`) on a free loopback port, one per
//! test, writing every message it accepts to a directory the test reads. Killed on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");

/// How the sink behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkOptions {
    /// Wait this long before accepting each message (a slow server).
    pub delay: Option<Duration>,
}

/// A running sink. Dropping it kills the server.
pub struct MailSink {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

/// One delivered message.
#[derive(Clone, Debug)]
pub struct Mail {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The whole message as received (headers and body).
    pub raw: String,
}

impl Mail {
    /// The `Subject:` header.
    pub fn subject(&self) -> &str {
        self.raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("no Subject in {}", self.raw))
            .trim()
    }

    /// The 6-digit code after "code is: ".
    pub fn code(&self) -> String {
        let at = self
            .raw
            .find("code is: ")
            .unwrap_or_else(|| panic!("no code in {}", self.raw));
        let code: String = self.raw[at + "code is: ".len()..].chars().take(6).collect();
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "not a code: {code:?}"
        );
        code
    }
}

impl MailSink {
    /// Starts a sink that accepts everything at once.
    pub fn start() -> MailSink {
        Self::start_with(SinkOptions::default())
    }

    /// Starts a sink; panics loudly (never skips) if Python or aiosmtpd is missing.
    pub fn start_with(options: SinkOptions) -> MailSink {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("python3");
        command
            .arg(SCRIPT)
            .arg(dir.path().join("mail"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(delay) = options.delay {
            command.arg("--delay").arg(delay.as_secs_f64().to_string());
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start python3 {SCRIPT}: {e} (scripts/test installs aiosmtpd)")
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the SMTP sink did not report its port within 30 s");
            }
        };
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the SMTP sink did not start (is aiosmtpd installed? `pip install \
                 aiosmtpd==1.4.6`); it said {line:?}"
            )
        });
        MailSink { child, port, dir }
    }

    /// The settings that point sessiond at this sink.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SESSIOND_SMTP_HOST", "127.0.0.1".to_owned()),
            ("SESSIOND_SMTP_PORT", self.port.to_string()),
            ("SESSIOND_SMTP_TLS", "none".to_owned()),
            (
                "SESSIOND_MAIL_FROM",
                "sessiond tests <no-reply@sessiond.test>".to_owned(),
            ),
        ]
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Every message delivered so far, in delivery order.
    pub fn messages(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let raw = std::fs::read_to_string(p).unwrap();
                let to = raw
                    .lines()
                    .filter_map(|l| l.strip_prefix("X-Envelope-To: "))
                    .map(|s| s.trim().to_owned())
                    .collect();
                Mail { to, raw }
            })
            .collect()
    }

    /// Waits (at most 15 s) until `n` messages have arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} mail(s), got {} after 15 s",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for message number `n` (1-based) and returns it.
    pub async fn nth(&self, n: usize) -> Mail {
        self.wait_for(n).await.swap_remove(n - 1)
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings as `spawn_app_with` takes them.
pub fn as_overrides<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
