//! Settings of outgoing mail (SMTP) and of mailed one-time codes (email verification and
//! password reset).

use std::time::Duration;

use crate::mail::{
    DEFAULT_QUEUE, DEV_MAIL_FROM, MailSettings, SmtpPassword, SmtpSettings, SmtpTls,
};

use super::sources::{self, Key, Problems, Raw, Sources};
use super::{bounded, duration, field, key, optional, secret_key};

pub(super) const SMTP_HOST: Key = key("SESSIOND_SMTP_HOST", "smtp_host");
pub(super) const SMTP_PORT: Key = key("SESSIOND_SMTP_PORT", "smtp_port");
pub(super) const SMTP_TLS: Key = key("SESSIOND_SMTP_TLS", "smtp_tls");
pub(super) const SMTP_USERNAME: Key = key("SESSIOND_SMTP_USERNAME", "smtp_username");
pub(super) const SMTP_PASSWORD: Key = secret_key("SESSIOND_SMTP_PASSWORD", "smtp_password");
pub(super) const SMTP_TIMEOUT: Key = key("SESSIOND_SMTP_TIMEOUT", "smtp_timeout");
pub(super) const MAIL_FROM: Key = key("SESSIOND_MAIL_FROM", "mail_from");
pub(super) const MAIL_QUEUE: Key = key("SESSIOND_MAIL_QUEUE", "mail_queue");
pub(super) const CODE_TTL: Key = key("SESSIOND_CODE_TTL", "code_ttl");
pub(super) const RESEND_COOLDOWN: Key = key("SESSIOND_RESEND_COOLDOWN", "resend_cooldown");
pub(super) const CODE_DAILY_LIMIT: Key = key("SESSIOND_CODE_DAILY_LIMIT", "code_daily_limit");
pub(super) const REQUIRE_VERIFIED_EMAIL: Key =
    key("SESSIOND_REQUIRE_VERIFIED_EMAIL", "require_verified_email");

/// Mail and code settings.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// Where mail goes (`SESSIOND_SMTP_*`, `SESSIOND_MAIL_FROM`, `SESSIOND_MAIL_QUEUE`);
    /// `smtp: None` = development mail mode (mail is logged, codes included).
    pub mail: MailSettings,
    /// How long a mailed code is valid (`SESSIOND_CODE_TTL`, default 15m, at most 24h).
    pub code_ttl: Duration,
    /// Least time between two codes mailed to one account for one purpose
    /// (`SESSIOND_RESEND_COOLDOWN`, default 60s; 0 = none).
    pub resend_cooldown: Duration,
    /// Codes issued per address and per account, for one purpose, in any 24 hours
    /// (`SESSIOND_CODE_DAILY_LIMIT`, default 10, 1–1000): with 5 checks per code, at most
    /// 50 guesses a day at one account's codes. Past it the newest code's id is answered again.
    pub code_daily_limit: u32,
    /// Login refuses unverified emails with 403 `email_not_verified`
    /// (`SESSIOND_REQUIRE_VERIFIED_EMAIL`, default false).
    pub require_verified_email: bool,
}

fn flag(key: &Key, raw: Raw<'_>) -> Result<bool, String> {
    if let Raw::Toml(figment::value::Value::Bool(_, b)) = raw {
        return Ok(*b);
    }
    match sources::text(key, raw)?.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "{} must be true or false",
            sources::shown(key, raw)
        )),
    }
}

fn host(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    if s.contains("://") || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(format!(
            "{} must be a host name or IP address only (the port and TLS mode have their own \
             settings)",
            sources::shown(key, raw)
        ));
    }
    Ok(s)
}

/// Parses this module's settings, recording every problem; None if any was found.
pub(super) fn parse(
    s: &Sources,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<MailConfig> {
    let before = p.0.len();
    let host = optional(s, p, &SMTP_HOST, host);
    let tls = field(
        s,
        p,
        &SMTP_TLS,
        |k, raw| sources::text(k, raw).and_then(|t| SmtpTls::parse(&t)),
        || SmtpTls::StartTls,
    );
    let port = optional(s, p, &SMTP_PORT, |k, raw| {
        let n = sources::integer::<u32>(k, raw)?;
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n} must be between 1 and 65535"))
    });
    let username = optional(s, p, &SMTP_USERNAME, sources::text);
    let password = optional(s, p, &SMTP_PASSWORD, |k, raw| {
        sources::text(k, raw).map(SmtpPassword::new)
    });
    let timeout = duration(s, p, &SMTP_TIMEOUT, Duration::from_secs(10), false);
    let from = optional(s, p, &MAIL_FROM, |k, raw| {
        sources::text(k, raw).and_then(|t| crate::mail::parse_from(&t))
    });
    let queue = bounded::<u64>(s, p, &MAIL_QUEUE, DEFAULT_QUEUE as u64, 1, 1_000_000);
    let code_ttl = duration(s, p, &CODE_TTL, Duration::from_secs(15 * 60), false).and_then(|d| {
        if d <= Duration::from_secs(24 * 3600) {
            Some(d)
        } else {
            p.key(
                &CODE_TTL,
                "must be at most 24h: a mailed code is a short-lived secret",
            );
            None
        }
    });
    let resend_cooldown = duration(s, p, &RESEND_COOLDOWN, Duration::from_secs(60), true);
    let code_daily_limit = bounded::<u32>(s, p, &CODE_DAILY_LIMIT, 10, 1, 1000);
    let require_verified_email = field(s, p, &REQUIRE_VERIFIED_EMAIL, flag, || false);

    let (Some(host), Some(tls), Some(port), Some(username), Some(password), Some(from)) =
        (host, tls, port, username, password, from)
    else {
        return None;
    };
    match (&username, &password) {
        (Some(_), None) => p.key(&SMTP_PASSWORD, format!("is required with {SMTP_USERNAME}")),
        (None, Some(_)) => p.key(&SMTP_USERNAME, format!("is required with {SMTP_PASSWORD}")),
        _ => {}
    }
    let smtp = match host {
        Some(host) => {
            if from.is_none() {
                p.key(
                    &MAIL_FROM,
                    format!(
                        "is required with {SMTP_HOST} (the From: of every mail, e.g. \
                         \"Example <no-reply@example.com>\")"
                    ),
                );
            }
            if tls == SmtpTls::None && username.is_some() {
                warnings.push(format!(
                    "{SMTP_TLS} = none with {SMTP_USERNAME}: the SMTP password travels in \
                     clear text (use starttls or tls unless the relay is on this host)"
                ));
            }
            Some(SmtpSettings {
                port: port.unwrap_or_else(|| tls.default_port()),
                host,
                tls,
                username,
                password,
                timeout: timeout?,
            })
        }
        None => {
            let ignored: Vec<String> = [&SMTP_PORT, &SMTP_TLS, &SMTP_USERNAME, &SMTP_PASSWORD]
                .into_iter()
                .filter(|k| s.get(k).is_some())
                .map(|k| k.env.to_owned())
                .collect();
            if !ignored.is_empty() {
                warnings.push(format!(
                    "{} ignored: no {SMTP_HOST} (development mail mode)",
                    ignored.join(", ")
                ));
            }
            None
        }
    };
    if p.0.len() > before {
        return None;
    }
    Some(MailConfig {
        mail: MailSettings {
            smtp,
            from: from.unwrap_or_else(|| DEV_MAIL_FROM.to_owned()),
            queue: usize::try_from(queue?).unwrap_or(usize::MAX),
        },
        code_ttl: code_ttl?,
        resend_cooldown: resend_cooldown?,
        code_daily_limit: code_daily_limit?,
        require_verified_email: require_verified_email?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::mail::SmtpTls;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_development_mail_mode_and_15_minute_codes() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.mail.mail.smtp.is_none());
        assert_eq!(c.mail.code_ttl.as_secs(), 15 * 60);
        assert_eq!(c.mail.resend_cooldown.as_secs(), 60);
        assert_eq!(c.mail.code_daily_limit, 10);
        assert!(!c.mail.require_verified_email);
    }

    #[test]
    fn smtp_settings_are_read_with_default_ports() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_SMTP_HOST", "smtp.example.com"),
                ("SESSIOND_SMTP_TLS", "tls"),
                ("SESSIOND_SMTP_USERNAME", "mailer"),
                ("SESSIOND_SMTP_PASSWORD", "s3cret-pw"),
                ("SESSIOND_MAIL_FROM", "Example <no-reply@example.com>"),
                ("SESSIOND_REQUIRE_VERIFIED_EMAIL", "true"),
            ]),
        )
        .unwrap();
        let smtp = c.mail.mail.smtp.as_ref().unwrap();
        assert_eq!((smtp.tls, smtp.port), (SmtpTls::Tls, 465));
        assert!(c.mail.require_verified_email);
        assert!(!format!("{c:?}").contains("s3cret-pw"));
    }

    #[test]
    fn bad_mail_settings_are_all_reported_without_the_password() {
        let problems = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_SMTP_HOST", "smtp://smtp.example.com"),
                ("SESSIOND_SMTP_PORT", "70000"),
                ("SESSIOND_SMTP_TLS", "ssl"),
                ("SESSIOND_MAIL_FROM", "nobody"),
                ("SESSIOND_CODE_TTL", "2d"),
                ("SESSIOND_CODE_DAILY_LIMIT", "0"),
                ("SESSIOND_REQUIRE_VERIFIED_EMAIL", "maybe"),
                ("SESSIOND_SMTP_PASSWORD", "s3cret-pw"),
            ]),
        )
        .unwrap_err()
        .problems()
        .to_vec();
        for k in [
            "SESSIOND_SMTP_HOST",
            "SESSIOND_SMTP_PORT",
            "SESSIOND_SMTP_TLS",
            "SESSIOND_MAIL_FROM",
            "SESSIOND_CODE_TTL",
            "SESSIOND_CODE_DAILY_LIMIT",
            "SESSIOND_REQUIRE_VERIFIED_EMAIL",
        ] {
            assert!(
                problems.iter().any(|m| m.starts_with(k)),
                "{k}: {problems:#?}"
            );
        }
        assert!(!problems.iter().any(|m| m.contains("s3cret-pw")));

        let problems = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_SMTP_HOST", "smtp.example.com"),
                ("SESSIOND_SMTP_USERNAME", "mailer"),
            ]),
        )
        .unwrap_err()
        .problems()
        .to_vec();
        assert!(
            problems
                .iter()
                .any(|m| m.starts_with("SESSIOND_SMTP_PASSWORD")),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|m| m.starts_with("SESSIOND_MAIL_FROM")),
            "{problems:#?}"
        );
        let problems = Config::from_sources(None, &env(&[("SESSIOND_SMTP_PASSWORD", "")]));
        assert!(problems.is_ok(), "an empty variable counts as unset");
    }
}
