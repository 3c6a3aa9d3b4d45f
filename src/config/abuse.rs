//! Settings of the abuse defences: rate limits, the failed-login lock, trusted proxies, the
//! registration-conflict policy and HTTP hardening (headers, CORS, HSTS).

use std::time::Duration;

use crate::ratelimit::client_ip::ClientIpHeader;
use crate::ratelimit::{Cidr, LimitClass, Quota, RateLimitSettings};

use super::sources::{self, Key, Problems, Raw, Sources};
use super::{bounded, duration, field, key};

pub(super) const RATE_LIMITS: Key = key("SESSIOND_RATE_LIMITS", "rate_limits");
pub(super) const RATE_LIMIT_PREFIX: Key = key("SESSIOND_RATE_LIMIT_PREFIX", "rate_limit_prefix");
pub(super) const RATE_LIMIT_TIMEOUT: Key = key("SESSIOND_RATE_LIMIT_TIMEOUT", "rate_limit_timeout");
pub(super) const RATE_LIMIT_GENERAL: Key = key("SESSIOND_RATE_LIMIT_GENERAL", "rate_limit_general");
pub(super) const RATE_LIMIT_LOGIN: Key = key("SESSIOND_RATE_LIMIT_LOGIN", "rate_limit_login");
pub(super) const RATE_LIMIT_LOGIN_ACCOUNT: Key = key(
    "SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT",
    "rate_limit_login_account",
);
pub(super) const RATE_LIMIT_REGISTER: Key =
    key("SESSIOND_RATE_LIMIT_REGISTER", "rate_limit_register");
pub(super) const RATE_LIMIT_REGISTER_ACCOUNT: Key = key(
    "SESSIOND_RATE_LIMIT_REGISTER_ACCOUNT",
    "rate_limit_register_account",
);
pub(super) const RATE_LIMIT_VERIFY: Key = key("SESSIOND_RATE_LIMIT_VERIFY", "rate_limit_verify");
pub(super) const RATE_LIMIT_VERIFY_ACCOUNT: Key = key(
    "SESSIOND_RATE_LIMIT_VERIFY_ACCOUNT",
    "rate_limit_verify_account",
);
pub(super) const RATE_LIMIT_RESET: Key = key("SESSIOND_RATE_LIMIT_RESET", "rate_limit_reset");
pub(super) const RATE_LIMIT_RESET_ACCOUNT: Key = key(
    "SESSIOND_RATE_LIMIT_RESET_ACCOUNT",
    "rate_limit_reset_account",
);
pub(super) const RATE_LIMIT_REFRESH: Key = key("SESSIOND_RATE_LIMIT_REFRESH", "rate_limit_refresh");
pub(super) const RATE_LIMIT_CREDENTIALS: Key =
    key("SESSIOND_RATE_LIMIT_CREDENTIALS", "rate_limit_credentials");
pub(super) const RATE_LIMIT_UNKNOWN_API_KEY: Key = key(
    "SESSIOND_RATE_LIMIT_UNKNOWN_API_KEY",
    "rate_limit_unknown_api_key",
);
pub(super) const RATE_LIMIT_IPV6_PREFIX: Key =
    key("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "rate_limit_ipv6_prefix");
pub(super) const CLIENT_IP_HEADER: Key = key("SESSIOND_CLIENT_IP_HEADER", "client_ip_header");
pub(super) const LOGIN_LOCK_THRESHOLD: Key =
    key("SESSIOND_LOGIN_LOCK_THRESHOLD", "login_lock_threshold");
pub(super) const LOGIN_LOCK_BASE: Key = key("SESSIOND_LOGIN_LOCK_BASE", "login_lock_base");
pub(super) const LOGIN_LOCK_MAX: Key = key("SESSIOND_LOGIN_LOCK_MAX", "login_lock_max");
pub(super) const LOGIN_LOCK_DECAY: Key = key("SESSIOND_LOGIN_LOCK_DECAY", "login_lock_decay");
pub(super) const TRUSTED_PROXIES: Key = key("SESSIOND_TRUSTED_PROXIES", "trusted_proxies");
pub(super) const REGISTER_CONFLICT: Key = key("SESSIOND_REGISTER_CONFLICT", "register_conflict");
pub(super) const MAX_HEADER_BYTES: Key = key("SESSIOND_MAX_HEADER_BYTES", "max_header_bytes");
pub(super) const MAX_HEADERS: Key = key("SESSIOND_MAX_HEADERS", "max_headers");
pub(super) const CORS_ORIGINS: Key = key("SESSIOND_CORS_ORIGINS", "cors_origins");
pub(super) const SECURE_COOKIES: Key = key("SESSIOND_SECURE_COOKIES", "secure_cookies");

/// The setting of each class's quota.
const CLASS_KEYS: [(LimitClass, Key); 12] = [
    (LimitClass::General, RATE_LIMIT_GENERAL),
    (LimitClass::Login, RATE_LIMIT_LOGIN),
    (LimitClass::LoginAccount, RATE_LIMIT_LOGIN_ACCOUNT),
    (LimitClass::Register, RATE_LIMIT_REGISTER),
    (LimitClass::RegisterAccount, RATE_LIMIT_REGISTER_ACCOUNT),
    (LimitClass::Verify, RATE_LIMIT_VERIFY),
    (LimitClass::VerifyAccount, RATE_LIMIT_VERIFY_ACCOUNT),
    (LimitClass::Reset, RATE_LIMIT_RESET),
    (LimitClass::ResetAccount, RATE_LIMIT_RESET_ACCOUNT),
    (LimitClass::Refresh, RATE_LIMIT_REFRESH),
    (LimitClass::Credentials, RATE_LIMIT_CREDENTIALS),
    (LimitClass::UnknownApiKey, RATE_LIMIT_UNKNOWN_API_KEY),
];

/// What registration answers for an email that already has an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterConflict {
    /// 409 `email_taken` (the default: simplest for clients, reveals that the account exists).
    Reveal,
    /// 202 with the same body whether the account is new or not; nothing reveals existence.
    Conceal,
}

/// HTTP hardening settings.
#[derive(Clone, Debug)]
pub struct HardeningSettings {
    /// Largest total size of the request headers (431 beyond).
    pub max_header_bytes: usize,
    /// Most request header fields (431 beyond).
    pub max_headers: usize,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`); empty =
    /// no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Clients reach sessiond over HTTPS (through the TLS-terminating proxy): send
    /// `Strict-Transport-Security`.
    pub secure: bool,
    /// The browser-session cookie goes without `Secure` (and so without the `__Secure-` name
    /// prefix): only when `SESSIOND_SECURE_COOKIES` is set off explicitly on a loopback bind
    /// (local development over plain HTTP with a browser that refuses `Secure` cookies from
    /// `http://localhost`, e.g. Safari). Explicitly off on any other bind is a configuration
    /// error; the default (off for an `http://` issuer, which only withholds HSTS) keeps
    /// cookies `Secure` everywhere.
    pub insecure_cookies: bool,
    /// Origins the browser (cookie) routes accept (`Origin`, CSRF rule) and answer CORS for
    /// with credentials: `SESSIOND_CORS_ORIGINS` plus the issuer's own origin.
    pub browser_origins: Vec<String>,
}

/// Everything configured by this module.
#[derive(Clone, Debug)]
pub struct AbuseConfig {
    /// Rate limits and the failed-login lock.
    pub rate_limits: RateLimitSettings,
    /// Peers whose forwarding headers are believed (`SESSIOND_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<Cidr>,
    /// The one header those peers set (`SESSIOND_CLIENT_IP_HEADER`).
    pub client_ip_header: ClientIpHeader,
    /// Registration conflicts (`SESSIOND_REGISTER_CONFLICT`).
    pub register_conflict: RegisterConflict,
    /// HTTP hardening.
    pub http: HardeningSettings,
}

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

fn quota(key: &Key, raw: Raw<'_>) -> Result<Option<Quota>, String> {
    let text = sources::text(key, raw)?;
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    Quota::parse(&text).map(Some)
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing else.
fn origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Err("\"*\" is not allowed: list the origins".into());
    }
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not an origin"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && !s.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !plain {
        return Err(format!(
            "{s:?} is not an origin (scheme://host[:port], no path)"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Reads and checks every setting of this module.
pub(super) fn parse(
    s: &Sources,
    p: &mut Problems,
    warnings: &mut Vec<String>,
    issuer: Option<&str>,
    bind: Option<std::net::SocketAddr>,
) -> Option<AbuseConfig> {
    let defaults = RateLimitSettings::default();
    let enabled = field(s, p, &RATE_LIMITS, on_off, || true);
    let mut quotas = Vec::new();
    let mut ok = true;
    for (class, k) in CLASS_KEYS {
        match field(s, p, &k, quota, || Some(class.default_quota())) {
            Some(q) => quotas.push((class, q)),
            None => ok = false,
        }
    }
    let prefix = field(s, p, &RATE_LIMIT_PREFIX, sources::text, || {
        defaults.prefix.clone()
    });
    let timeout = duration(s, p, &RATE_LIMIT_TIMEOUT, defaults.redis_timeout, false);
    let threshold = bounded::<u32>(s, p, &LOGIN_LOCK_THRESHOLD, 5, 0, 1000);
    let base = duration(s, p, &LOGIN_LOCK_BASE, defaults.lock.base, false);
    let max = duration(s, p, &LOGIN_LOCK_MAX, defaults.lock.max, false);
    let decay = duration(s, p, &LOGIN_LOCK_DECAY, defaults.lock.decay, false);
    if let (Some(b), Some(m)) = (base, max)
        && b > m
    {
        p.key(
            &LOGIN_LOCK_BASE,
            format!("must not exceed {LOGIN_LOCK_MAX}"),
        );
        ok = false;
    }
    if timeout.is_some_and(|t| t > Duration::from_secs(5)) {
        p.key(
            &RATE_LIMIT_TIMEOUT,
            "must be at most 5s: it bounds how long a request waits for Redis",
        );
        ok = false;
    }
    let trusted_proxies = field(
        s,
        p,
        &TRUSTED_PROXIES,
        |k, raw| {
            sources::list(k, raw)?
                .iter()
                .map(|c| Cidr::parse(c))
                .collect::<Result<Vec<_>, _>>()
        },
        Vec::new,
    );
    let client_ip_header = field(
        s,
        p,
        &CLIENT_IP_HEADER,
        |k, raw| ClientIpHeader::parse(&sources::text(k, raw)?),
        ClientIpHeader::default,
    );
    if client_ip_header == Some(ClientIpHeader::None)
        && trusted_proxies.as_ref().is_some_and(|t| !t.is_empty())
    {
        // Trusting proxies but reading no header from them is a contradiction: the operator
        // believes there is a proxy, and every client would share the proxy's budget.
        p.key(
            &CLIENT_IP_HEADER,
            format!("none contradicts {TRUSTED_PROXIES}: name the header the proxies set, or unset {TRUSTED_PROXIES}"),
        );
        ok = false;
    }
    let ipv6_prefix = bounded::<u32>(s, p, &RATE_LIMIT_IPV6_PREFIX, 64, 1, 128);
    let register_conflict = field(
        s,
        p,
        &REGISTER_CONFLICT,
        |k, raw| match sources::text(k, raw)?.to_ascii_lowercase().as_str() {
            "reveal" => Ok(RegisterConflict::Reveal),
            "conceal" => Ok(RegisterConflict::Conceal),
            _ => Err(format!(
                "{} must be reveal or conceal",
                sources::shown(k, raw)
            )),
        },
        || RegisterConflict::Reveal,
    );
    let max_header_bytes = field(s, p, &MAX_HEADER_BYTES, sources::byte_size, || 16 * 1024)
        .and_then(|n| {
            if (1024..=256 * 1024).contains(&n) {
                Some(n as usize)
            } else {
                p.key(
                    &MAX_HEADER_BYTES,
                    format!("{n} must be between 1KiB and 256KiB"),
                );
                None
            }
        });
    let max_headers = bounded::<u32>(s, p, &MAX_HEADERS, 64, 8, 1000);
    let cors_origins = field(
        s,
        p,
        &CORS_ORIGINS,
        |k, raw| {
            sources::list(k, raw)?
                .iter()
                .map(|o| origin(o))
                .collect::<Result<Vec<_>, _>>()
        },
        Vec::new,
    );
    let https_issuer = issuer.is_some_and(|i| i.starts_with("https://"));
    let secure = field(s, p, &SECURE_COOKIES, on_off, || https_issuer);

    if enabled == Some(false) {
        warnings.push(format!(
            "{RATE_LIMITS} is off: no rate limits and no failed-login locks \
             (for benchmarks only; never in production)"
        ));
    }
    let loopback = bind.is_some_and(|b| b.ip().is_loopback());
    if secure == Some(false) && s.get(&SECURE_COOKIES).is_some() && bind.is_some() && !loopback {
        p.key(
            &SECURE_COOKIES,
            format!(
                "off is accepted only on a loopback bind ({} is {}): a browser would send the \
                 refresh-token cookie over plain HTTP",
                super::BIND.env,
                bind.map(|b| b.to_string()).unwrap_or_default()
            ),
        );
        ok = false;
    }
    if secure == Some(false) && https_issuer {
        warnings.push(format!(
            "{SECURE_COOKIES} is off although the issuer is https://: no \
             Strict-Transport-Security header will be sent"
        ));
    }
    if !ok {
        return None;
    }
    let threshold = threshold?;
    let cors_origins = cors_origins?;
    let mut browser_origins = cors_origins.clone();
    if let Some(own) = issuer.and_then(|i| url::Url::parse(i).ok()) {
        let own = own.origin().ascii_serialization();
        if !browser_origins.contains(&own) {
            browser_origins.push(own);
        }
    }
    Some(AbuseConfig {
        rate_limits: RateLimitSettings {
            enabled: enabled?,
            quotas,
            prefix: prefix?,
            redis_timeout: timeout?,
            lock: crate::ratelimit::LockPolicy {
                threshold: threshold.max(1),
                base: base?,
                max: max?,
                decay: decay?,
            },
            lock_enabled: threshold > 0,
            known_ip_ttl: defaults.known_ip_ttl,
            ipv6_prefix: ipv6_prefix? as u8,
        },
        trusted_proxies: trusted_proxies?,
        client_ip_header: client_ip_header?,
        register_conflict: register_conflict?,
        http: HardeningSettings {
            max_header_bytes: max_header_bytes?,
            max_headers: max_headers? as usize,
            cors_origins,
            secure: secure?,
            // Only an explicit `false` drops `Secure` (issue #11): browsers keep `Secure`
            // cookies from `http://localhost`, so the development default stays `Secure` too.
            insecure_cookies: !secure? && loopback && s.get(&SECURE_COOKIES).is_some(),
            browser_origins,
        },
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::ratelimit::client_ip::ClientIpHeader;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        Config::from_sources(None, &env(pairs))
            .unwrap_err()
            .problems()
            .to_vec()
    }

    #[test]
    fn defaults() {
        let c = Config::from_sources(None, &[]).unwrap();
        let a = &c.abuse;
        assert!(a.rate_limits.enabled && a.rate_limits.lock_enabled);
        assert_eq!(a.rate_limits.quotas.len(), 12);
        assert!(a.trusted_proxies.is_empty());
        assert_eq!(a.client_ip_header, ClientIpHeader::XForwardedFor);
        assert_eq!(a.rate_limits.ipv6_prefix, 64);
        assert_eq!(a.register_conflict, super::RegisterConflict::Reveal);
        assert!(a.http.cors_origins.is_empty());
        assert!(!a.http.secure, "the default issuer is http://");
        let c = Config::from_sources(None, &env(&[("SESSIOND_ISSUER", "https://id.example.com")]))
            .unwrap();
        assert!(c.abuse.http.secure);
    }

    #[test]
    fn values_are_parsed() {
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_RATE_LIMITS", "off"),
                ("SESSIOND_RATE_LIMIT_LOGIN", "3/10s"),
                ("SESSIOND_RATE_LIMIT_GENERAL", "off"),
                ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
                ("SESSIOND_REGISTER_CONFLICT", "conceal"),
                (
                    "SESSIOND_CORS_ORIGINS",
                    "https://app.example.com,http://localhost:3000",
                ),
                ("SESSIOND_LOGIN_LOCK_THRESHOLD", "0"),
            ]),
        )
        .unwrap();
        let a = &c.abuse;
        assert!(!a.rate_limits.enabled && !a.rate_limits.lock_enabled);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("SESSIOND_RATE_LIMITS"))
        );
        let login = a
            .rate_limits
            .quotas
            .iter()
            .find(|(c, _)| *c == crate::ratelimit::LimitClass::Login)
            .unwrap()
            .1
            .unwrap();
        assert_eq!(login.limit, 3);
        assert_eq!(a.trusted_proxies.len(), 2);
        assert_eq!(a.register_conflict, super::RegisterConflict::Conceal);
        assert_eq!(
            a.http.cors_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn bad_values_are_reported_with_both_spellings() {
        let e = errors(&[
            ("SESSIOND_RATE_LIMITS", "maybe"),
            ("SESSIOND_RATE_LIMIT_REFRESH", "lots"),
            ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("SESSIOND_REGISTER_CONFLICT", "hide"),
            ("SESSIOND_CORS_ORIGINS", "*"),
            ("SESSIOND_LOGIN_LOCK_BASE", "1h"),
        ]);
        assert_eq!(e.len(), 6, "{e:#?}");
        for k in [
            "SESSIOND_RATE_LIMITS (toml: rate_limits)",
            "SESSIOND_RATE_LIMIT_REFRESH (toml: rate_limit_refresh)",
            "SESSIOND_TRUSTED_PROXIES (toml: trusted_proxies)",
            "SESSIOND_REGISTER_CONFLICT (toml: register_conflict)",
            "SESSIOND_CORS_ORIGINS (toml: cors_origins)",
            "SESSIOND_LOGIN_LOCK_BASE (toml: login_lock_base)",
        ] {
            assert!(e.iter().any(|m| m.starts_with(k)), "{k}: {e:#?}");
        }
        let e = errors(&[
            ("SESSIOND_CLIENT_IP_HEADER", "none"),
            ("SESSIOND_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "0"),
        ]);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with("SESSIOND_CLIENT_IP_HEADER")
                || e[1].starts_with("SESSIOND_CLIENT_IP_HEADER"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("SESSIOND_RATE_LIMIT_IPV6_PREFIX")),
            "{e:?}"
        );
        let e = errors(&[
            ("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "129"),
            ("SESSIOND_CLIENT_IP_HEADER", "x-client-ip"),
        ]);
        assert_eq!(e.len(), 2, "{e:#?}");
        let c = Config::from_sources(
            None,
            &env(&[
                ("SESSIOND_CLIENT_IP_HEADER", "Forwarded"),
                ("SESSIOND_RATE_LIMIT_IPV6_PREFIX", "56"),
            ]),
        )
        .unwrap();
        assert_eq!(c.abuse.client_ip_header, ClientIpHeader::Forwarded);
        assert_eq!(c.abuse.rate_limits.ipv6_prefix, 56);
        let e = errors(&[("SESSIOND_CORS_ORIGINS", "https://app.example.com/path")]);
        assert!(e[0].contains("not an origin"), "{e:?}");
    }
}
