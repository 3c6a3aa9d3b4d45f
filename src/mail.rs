//! Outgoing mail: verification and password-reset codes.
//!
//! Handlers never wait for a mail server. [`Mailer::send`] puts the mail on a bounded queue and
//! returns at once; one background task sends the queue in order over SMTP (lettre, TLS by
//! rustls), each send bounded by `SESSIOND_SMTP_TIMEOUT`. A full queue drops the mail, a failed
//! or timed-out send is logged (without the code or the address) and counted, and the API answer
//! never depends on either: a client cannot learn from it whether a mail went out (which would
//! also tell whether an account exists).
//!
//! Without `SESSIOND_SMTP_HOST`, sessiond runs in **development mail mode**: every mail,
//! *including its code*, is written to the log instead of being sent, and a warning says so at
//! start-up. That is the point of the mode (a developer reads the code from the log); it must
//! not be used in production.

pub mod templates;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sessiond_actors::ids::UserId;
use tokio::sync::{mpsc, oneshot};

/// How the SMTP connection is protected (`SESSIOND_SMTP_TLS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (`none`): only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (`starttls`, the default;
    /// port 587).
    StartTls,
    /// TLS from the first byte (`tls`, "implicit TLS"/SMTPS; port 465).
    Tls,
}

impl SmtpTls {
    /// Parses `none`, `starttls` or `tls` (case-insensitive).
    pub fn parse(s: &str) -> Result<SmtpTls, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" => Ok(Self::Tls),
            _ => Err(format!(
                "{s:?} is not an SMTP TLS mode (use none, starttls or tls)"
            )),
        }
    }

    /// The usual port for the mode: 25, 587 or 465.
    pub fn default_port(&self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }

    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }
}

/// The SMTP password. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    /// Wraps the secret.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret, for the SMTP client only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmtpPassword(..)")
    }
}

/// Where and how to send over SMTP.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// Server host name (also the name its certificate must carry).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connection protection.
    pub tls: SmtpTls,
    /// Login, if the server wants one (with `password`).
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<SmtpPassword>,
    /// Bound on one send: connect, TLS, dialogue (`SESSIOND_SMTP_TIMEOUT`).
    pub timeout: Duration,
}

/// Everything the mailer needs.
#[derive(Clone, Debug)]
pub struct MailSettings {
    /// SMTP, or None for development mail mode (mail goes to the log).
    pub smtp: Option<SmtpSettings>,
    /// The `From:` mailbox (`SESSIOND_MAIL_FROM`), already validated.
    pub from: String,
    /// Mails that may wait to be sent; beyond that new mails are dropped (and counted).
    pub queue: usize,
}

/// Default `From:` in development mail mode.
pub const DEV_MAIL_FROM: &str = "sessiond <no-reply@localhost>";
/// Default queue length.
pub const DEFAULT_QUEUE: usize = 1024;

/// Checks a `From:` value (`Name <addr@host>` or `addr@host`).
pub fn parse_from(s: &str) -> Result<String, String> {
    s.trim()
        .parse::<Mailbox>()
        .map(|m| m.to_string())
        .map_err(|e| {
            format!("{s:?} is not a mailbox (e.g. \"Example <no-reply@example.com>\"): {e}")
        })
}

/// One mail to send. `Debug` shows neither the address nor the body (which holds a code).
pub struct OutgoingMail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// What it is, for logs and counts (`email_verification`, `password_reset`).
    pub kind: &'static str,
    /// The account it is for, for logs (ids only, never addresses).
    pub user_id: Option<UserId>,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Counts of the mailer's work since start.
#[derive(Debug, Default)]
pub struct MailStats {
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A copy of [`MailStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailCounts {
    /// Accepted onto the queue.
    pub queued: u64,
    /// Delivered to the SMTP server (or written to the log in development mode).
    pub sent: u64,
    /// Refused by the server, unreachable server, timed out or unbuildable message.
    pub failed: u64,
    /// Not queued: the queue was full or the mailer had stopped.
    pub dropped: u64,
}

impl MailStats {
    fn snapshot(&self) -> MailCounts {
        MailCounts {
            queued: self.queued.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

enum Job {
    Send(Box<OutgoingMail>),
    /// Everything queued before has been handled; stop.
    Stop(oneshot::Sender<()>),
}

enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        timeout: Duration,
    },
    Log,
}

/// Handle to the mail queue. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Job>,
    stats: Arc<MailStats>,
    description: Arc<str>,
    dev_mode: bool,
    /// Development mail mode only: the newest mail per recipient, for the demo page's
    /// dev-only code endpoint (`/demo/dev/last-code`). None whenever mail really goes out.
    outbox: Option<Arc<DevOutbox>>,
}

/// How many recipients the development outbox remembers (oldest forgotten first): enough for
/// a developer and a browser test, bounded so a scripted registration flood cannot grow it.
const DEV_OUTBOX_CAPACITY: usize = 256;

/// The newest mail to each recipient, kept in memory in development mail mode only, where
/// every mail (code included) is written to the log anyway. Never exists with SMTP.
#[derive(Default)]
pub struct DevOutbox {
    mails: std::sync::Mutex<std::collections::VecDeque<DevMail>>,
}

/// One mail the development outbox kept.
#[derive(Clone)]
pub struct DevMail {
    /// Recipient, as the mail was addressed (a normalised email).
    pub to: String,
    /// What it is (`email_verification`, `password_reset`, …).
    pub kind: &'static str,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// When it was queued.
    pub queued_at: chrono::DateTime<chrono::Utc>,
}

impl DevMail {
    /// The 6-digit code after "code is: " in the body, if the mail carries one.
    pub fn code(&self) -> Option<&str> {
        let at = self.body.find("code is: ")? + "code is: ".len();
        let code = self.body.get(at..at + 6)?;
        code.bytes().all(|b| b.is_ascii_digit()).then_some(code)
    }
}

impl DevOutbox {
    fn record(&self, mail: &OutgoingMail) {
        let mut mails = self.mails.lock().unwrap_or_else(|e| e.into_inner());
        mails.retain(|m| m.to != mail.to);
        if mails.len() >= DEV_OUTBOX_CAPACITY {
            mails.pop_front();
        }
        mails.push_back(DevMail {
            to: mail.to.clone(),
            kind: mail.kind,
            subject: mail.subject.clone(),
            body: mail.body.clone(),
            queued_at: chrono::Utc::now(),
        });
    }

    /// The newest mail to `to` (compared as given: pass a normalised email).
    pub fn last(&self, to: &str) -> Option<DevMail> {
        let mails = self.mails.lock().unwrap_or_else(|e| e.into_inner());
        mails.iter().rev().find(|m| m.to == to).cloned()
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.description)
            .finish_non_exhaustive()
    }
}

/// The mailer could not be set up (bad TLS parameters, bad `From:`).
#[derive(Debug, thiserror::Error)]
#[error("mail: {0}")]
pub struct MailError(String);

impl Mailer {
    /// Builds the transport and starts the sending task (needs a Tokio runtime). Nothing is
    /// connected until the first mail.
    pub fn start(settings: &MailSettings) -> Result<Mailer, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError(format!("invalid From: {e}")))?;
        let (transport, description) = match &settings.smtp {
            None => (
                Transport::Log,
                "development mode: mail is logged, not sent".to_owned(),
            ),
            Some(smtp) => (
                Transport::Smtp {
                    transport: smtp_transport(smtp)?,
                    timeout: smtp.timeout,
                },
                format!(
                    "smtp://{}:{} (tls: {}{})",
                    smtp.host,
                    smtp.port,
                    smtp.tls.as_str(),
                    if smtp.username.is_some() {
                        ", with login"
                    } else {
                        ""
                    }
                ),
            ),
        };
        let dev_mode = matches!(transport, Transport::Log);
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let stats = Arc::new(MailStats::default());
        tokio::spawn(run(rx, transport, from, stats.clone()));
        Ok(Mailer {
            queue: tx,
            stats,
            description: description.into(),
            dev_mode,
            outbox: dev_mode.then(Arc::default),
        })
    }

    /// Queues `mail` and returns at once. Never fails: a full queue or a stopped mailer drops
    /// the mail, counts it and logs a warning.
    pub fn send(&self, mail: OutgoingMail) {
        if let Some(outbox) = &self.outbox {
            // Recorded before queueing, so the mail is readable as soon as the request that
            // sent it has been answered.
            outbox.record(&mail);
        }
        let kind = mail.kind;
        let user_id = mail.user_id;
        match self.queue.try_send(Job::Send(Box::new(mail))) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "mailer stopped",
                };
                tracing::warn!(
                    kind,
                    user_id = user_id.map(|u| u.to_string()).unwrap_or_default(),
                    why,
                    "mail dropped"
                );
            }
        }
    }

    /// Counts since start.
    pub fn counts(&self) -> MailCounts {
        self.stats.snapshot()
    }

    /// Whether mail goes to the log instead of a server.
    pub fn is_dev_mode(&self) -> bool {
        self.dev_mode
    }

    /// The newest mail per recipient, in development mail mode only (None with SMTP).
    pub fn dev_outbox(&self) -> Option<&DevOutbox> {
        self.outbox.as_deref()
    }

    /// The start-up warning of development mail mode, if in it.
    pub fn warning(&self) -> Option<&'static str> {
        self.dev_mode.then_some(
            "DEVELOPMENT MAIL MODE: SESSIOND_SMTP_HOST is not set, so no mail is sent; every \
             mail, INCLUDING VERIFICATION AND PASSWORD-RESET CODES, is written to the log \
             instead (target sessiond::mail::dev). NOT FOR PRODUCTION: set SESSIOND_SMTP_HOST \
             and SESSIOND_MAIL_FROM.",
        )
    }

    /// What the mailer sends through, for the start-up log (no secrets).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Sends what is already queued, then stops; bounded by `timeout`. Mails queued later are
    /// dropped.
    pub async fn shutdown(&self, timeout: Duration) {
        let (done, finished) = oneshot::channel();
        let stop = async {
            if self.queue.send(Job::Stop(done)).await.is_ok() {
                let _ = finished.await;
            }
        };
        if tokio::time::timeout(timeout, stop).await.is_err() {
            tracing::warn!(
                timeout = ?timeout,
                "shutdown: mail still queued after the timeout; not sent"
            );
        }
    }
}

fn smtp_transport(smtp: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls_params = || {
        TlsParameters::new_rustls(smtp.host.clone())
            .map_err(|e| MailError(format!("TLS parameters: {e}")))
    };
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(tls_params()?),
        SmtpTls::Tls => Tls::Wrapper(tls_params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(smtp.timeout));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// The sending task: one mail at a time, in queue order.
async fn run(
    mut rx: mpsc::Receiver<Job>,
    transport: Transport,
    from: Mailbox,
    stats: Arc<MailStats>,
) {
    while let Some(job) = rx.recv().await {
        let mail = match job {
            Job::Send(mail) => mail,
            Job::Stop(done) => {
                let _ = done.send(());
                break;
            }
        };
        match deliver(&transport, &from, &mail).await {
            Ok(()) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(kind = mail.kind, "mail sent");
            }
            Err(error) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    kind = mail.kind,
                    user_id = mail.user_id.map(|u| u.to_string()).unwrap_or_default(),
                    %error,
                    failed_total = stats.failed.load(Ordering::Relaxed),
                    "mail not sent"
                );
            }
        }
    }
    // Anything left after a stop is dropped with the receiver.
    rx.close();
    let mut left = 0u64;
    while rx.try_recv().is_ok() {
        left += 1;
    }
    if left > 0 {
        stats.dropped.fetch_add(left, Ordering::Relaxed);
    }
    tracing::debug!("mailer stopped");
}

async fn deliver(transport: &Transport, from: &Mailbox, mail: &OutgoingMail) -> Result<(), String> {
    match transport {
        Transport::Log => {
            // Development mode only (announced at start-up): the code is in this line on
            // purpose, so a developer can use it.
            tracing::info!(
                target: "sessiond::mail::dev",
                kind = mail.kind,
                to = %mail.to,
                subject = %mail.subject,
                body = %mail.body,
                "DEVELOPMENT MAIL (not sent)"
            );
            Ok(())
        }
        Transport::Smtp { transport, timeout } => {
            let message = build_message(from, mail)?;
            // lettre bounds each network step; this bounds the whole dialogue.
            match tokio::time::timeout(*timeout * 2, transport.send(message)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("timed out after {:?}", *timeout * 2)),
            }
        }
    }
}

/// A plain-text UTF-8 message.
fn build_message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, String> {
    let to: Mailbox = mail
        .to
        .parse()
        // The address itself stays out of the message (and so out of the logs).
        .map_err(|_| "the recipient address is not accepted by the mail library".to_owned())?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|e| format!("building the message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: "Your code".into(),
            body: "Your code is 123456.".into(),
            kind: "email_verification",
            user_id: None,
        }
    }

    #[test]
    fn tls_modes_parse_and_have_usual_ports() {
        assert_eq!(SmtpTls::parse("STARTTLS").unwrap(), SmtpTls::StartTls);
        assert_eq!(SmtpTls::parse("tls").unwrap().default_port(), 465);
        assert_eq!(SmtpTls::parse("none").unwrap().default_port(), 25);
        assert_eq!(SmtpTls::StartTls.default_port(), 587);
        assert!(SmtpTls::parse("ssl").is_err());
    }

    #[test]
    fn from_is_validated() {
        assert_eq!(
            parse_from(" Example <no-reply@example.com> ").unwrap(),
            "Example <no-reply@example.com>"
        );
        assert!(parse_from("not an address").is_err());
    }

    #[test]
    fn debug_hides_address_body_and_password() {
        let printed = format!(
            "{:?} {:?}",
            mail("ada@example.com"),
            SmtpPassword::new("hunter2".into())
        );
        assert!(!printed.contains("ada@"), "{printed}");
        assert!(!printed.contains("123456"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn messages_are_plain_text_with_the_code() {
        let from: Mailbox = DEV_MAIL_FROM.parse().unwrap();
        let message = build_message(&from, &mail("ada@example.com")).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("To: ada@example.com"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        assert!(text.contains("123456"), "{text}");
        assert!(build_message(&from, &mail("not an address")).is_err());
    }

    #[tokio::test]
    async fn dev_outbox_keeps_the_newest_mail_per_recipient_and_only_in_dev_mode() {
        let mailer = Mailer::start(&MailSettings {
            smtp: None,
            from: DEV_MAIL_FROM.into(),
            queue: 1024,
        })
        .unwrap();
        let outbox = mailer
            .dev_outbox()
            .expect("development mail mode keeps an outbox");
        assert!(outbox.last("ada@example.com").is_none());
        let coded = |to: &str, code: &str| OutgoingMail {
            body: format!("Your email verification code is: {code}\n\nIt expires."),
            ..mail(to)
        };
        mailer.send(coded("ada@example.com", "111111"));
        mailer.send(coded("bob@example.com", "222222"));
        mailer.send(coded("ada@example.com", "333333"));
        let last = outbox.last("ada@example.com").unwrap();
        assert_eq!(last.code(), Some("333333"));
        assert_eq!(last.kind, "email_verification");
        assert_eq!(
            outbox.last("bob@example.com").unwrap().code(),
            Some("222222")
        );
        // A mail without a code has none to show.
        mailer.send(mail("carol@example.com"));
        assert_eq!(outbox.last("carol@example.com").unwrap().code(), None);
        // Bounded: the oldest recipients are forgotten first.
        for i in 0..DEV_OUTBOX_CAPACITY {
            mailer.send(coded(&format!("u{i}@example.com"), "444444"));
        }
        assert!(outbox.last("ada@example.com").is_none());
        assert!(
            outbox
                .last(&format!("u{}@example.com", DEV_OUTBOX_CAPACITY - 1))
                .is_some()
        );
        mailer.shutdown(Duration::from_secs(5)).await;

        let smtp = Mailer::start(&MailSettings {
            smtp: Some(SmtpSettings {
                host: "127.0.0.1".into(),
                port: 2525,
                tls: SmtpTls::None,
                username: None,
                password: None,
                timeout: Duration::from_secs(1),
            }),
            from: DEV_MAIL_FROM.into(),
            queue: 4,
        })
        .unwrap();
        assert!(
            smtp.dev_outbox().is_none(),
            "no outbox when mail really goes out"
        );
    }

    #[tokio::test]
    async fn every_tls_mode_builds_a_transport() {
        for tls in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
            let settings = MailSettings {
                smtp: Some(SmtpSettings {
                    host: "mail.example.com".into(),
                    port: tls.default_port(),
                    tls,
                    username: Some("user".into()),
                    password: Some(SmtpPassword::new("pw".into())),
                    timeout: Duration::from_secs(1),
                }),
                from: DEV_MAIL_FROM.into(),
                queue: 4,
            };
            let mailer = Mailer::start(&settings).unwrap();
            assert!(!mailer.is_dev_mode());
            assert!(mailer.describe().contains(tls.as_str()));
            assert!(!mailer.describe().contains("pw"));
        }
    }

    #[tokio::test]
    async fn dev_mode_logs_then_stops_and_drops_later_mail() {
        let mailer = Mailer::start(&MailSettings {
            smtp: None,
            from: DEV_MAIL_FROM.into(),
            queue: 4,
        })
        .unwrap();
        assert!(mailer.is_dev_mode());
        mailer.send(mail("ada@example.com"));
        mailer.send(mail("bob@example.com"));
        mailer.shutdown(Duration::from_secs(5)).await;
        assert_eq!(mailer.counts().sent, 2);
        mailer.send(mail("carol@example.com"));
        let counts = mailer.counts();
        assert_eq!((counts.queued, counts.dropped), (2, 1), "{counts:?}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        // An SMTP server that accepts connections and never answers: the one sender is stuck
        // on the first mail, the queue (1) holds the second, the third is dropped at once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let mailer = Mailer::start(&MailSettings {
            smtp: Some(SmtpSettings {
                host: "127.0.0.1".into(),
                port,
                tls: SmtpTls::None,
                username: None,
                password: None,
                timeout: Duration::from_secs(30),
            }),
            from: DEV_MAIL_FROM.into(),
            queue: 1,
        })
        .unwrap();
        mailer.send(mail("a@example.com"));
        // Let the sender take the first mail off the queue.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if mailer.queue.capacity() == 1 {
                break;
            }
        }
        mailer.send(mail("b@example.com"));
        mailer.send(mail("c@example.com"));
        let counts = mailer.counts();
        assert_eq!((counts.queued, counts.dropped, counts.sent), (2, 1, 0));
    }
}
