//! Settings of the WebAuthn relying party (passkeys): `SESSIOND_WEBAUTHN_RP_ID`,
//! `SESSIOND_WEBAUTHN_ORIGINS` and `SESSIOND_WEBAUTHN_RP_NAME`.
//!
//! A passkey is bound to its RP id for ever, so the id is checked strictly here rather than
//! failing at the first ceremony: a registrable domain name (browsers refuse IP addresses as RP
//! ids), and every origin `https://` (or `http://` for `localhost` only, which browsers treat
//! as a secure context) on that domain or a subdomain of it.

use url::Url;

use super::sources::{self, Key, Problems, Raw, Sources};
use super::{key, optional};

pub(super) const RP_ID: Key = key("SESSIOND_WEBAUTHN_RP_ID", "webauthn_rp_id");
pub(super) const ORIGINS: Key = key("SESSIOND_WEBAUTHN_ORIGINS", "webauthn_origins");
pub(super) const RP_NAME: Key = key("SESSIOND_WEBAUTHN_RP_NAME", "webauthn_rp_name");

/// Whether passkeys are on, and for which relying party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebauthnSetting {
    /// No relying party configured: passkey routes answer 404 `passkeys_disabled`.
    Disabled,
    /// Development keys and nothing configured: RP id `localhost`, origin
    /// `http://localhost:<bound port>` (the port is known only once the listener is bound).
    DevelopmentDefault,
    /// The configured relying party.
    Configured(RelyingParty),
}

/// A checked relying party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelyingParty {
    /// The RP id (a domain name), to which every passkey is bound.
    pub rp_id: String,
    /// The origins ceremonies may come from (at least one).
    pub origins: Vec<Url>,
    /// The name authenticators show (default: the RP id).
    pub rp_name: String,
}

impl RelyingParty {
    /// The development relying party for a server bound to `port` on this machine.
    pub fn development(port: u16) -> Self {
        Self {
            rp_id: "localhost".into(),
            origins: vec![Url::parse(&format!("http://localhost:{port}")).expect("a valid origin")],
            rp_name: "sessiond (development)".into(),
        }
    }
}

fn is_ip(host: &str) -> bool {
    host.trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok()
}

/// A domain name: lowercase labels of letters, digits and hyphens; never an IP address.
fn rp_id(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    let s = s.trim();
    if is_ip(s) || s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "{s:?} is an IP address: WebAuthn needs a domain name as RP id (e.g. localhost)"
        ));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if s.is_empty() || s.len() > 253 || !s.split('.').all(valid_label) {
        return Err(format!(
            "{s:?} is not a domain name (lowercase, no scheme, port or path; e.g. example.com)"
        ));
    }
    Ok(s.to_owned())
}

/// One origin: `https://host[:port]`, or `http://localhost[:port]`; no path; no IP address.
fn origin(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| format!("{s:?} is not an origin"))?;
    let plain = url.host_str().is_some()
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
    let host = url.host_str().unwrap_or_default();
    if is_ip(host) {
        return Err(format!(
            "{s:?}: WebAuthn refuses IP addresses; use a domain name (e.g. http://localhost:8080)"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if host == "localhost" => {}
        "http" => {
            return Err(format!(
                "{s:?} must be https (http is allowed for localhost only)"
            ));
        }
        _ => return Err(format!("{s:?} must be an https origin")),
    }
    Ok(url)
}

fn origins(key: &Key, raw: Raw<'_>) -> Result<Vec<Url>, String> {
    let list = sources::list(key, raw)?;
    if list.is_empty() {
        return Err("must list at least one origin".into());
    }
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for o in &list {
        match origin(o) {
            Ok(u) => out.push(u),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

fn rp_name(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    let s = sources::text(key, raw)?;
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(format!("{s:?} must be 1-64 printable characters"));
    }
    Ok(s.to_owned())
}

/// Parses this module's settings, recording every problem; None if any was found.
/// `development_keys`: sessiond runs on generated development keys (then an unconfigured
/// relying party defaults to `localhost`).
pub(super) fn parse(
    s: &Sources,
    p: &mut Problems,
    development_keys: bool,
) -> Option<WebauthnSetting> {
    let before = p.0.len();
    let id = optional(s, p, &RP_ID, rp_id);
    let origins = optional(s, p, &ORIGINS, origins);
    let name = optional(s, p, &RP_NAME, rp_name);
    if p.0.len() > before {
        return None;
    }
    let (id, origins, name) = (id?, origins?, name?);
    match (id, origins) {
        (None, None) => {
            if name.is_some() {
                p.key(&RP_NAME, format!("needs {RP_ID} and {ORIGINS}"));
                return None;
            }
            Some(if development_keys {
                WebauthnSetting::DevelopmentDefault
            } else {
                WebauthnSetting::Disabled
            })
        }
        (Some(_), None) => {
            p.key(
                &RP_ID,
                format!("needs {ORIGINS} (the origins passkeys are used from)"),
            );
            None
        }
        (None, Some(_)) => {
            p.key(
                &ORIGINS,
                format!("needs {RP_ID} (the domain passkeys are bound to)"),
            );
            None
        }
        (Some(rp_id), Some(origins)) => {
            let mut ok = true;
            for o in &origins {
                let host = o.host_str().unwrap_or_default();
                if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
                    p.key(
                        &ORIGINS,
                        format!(
                            "{:?} is not on {RP_ID} = {rp_id:?} (its host must be that domain \
                             or a subdomain of it)",
                            o.origin().ascii_serialization()
                        ),
                    );
                    ok = false;
                }
            }
            ok.then(|| {
                WebauthnSetting::Configured(RelyingParty {
                    rp_name: name.unwrap_or_else(|| rp_id.clone()),
                    rp_id,
                    origins,
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_https_or_localhost_and_never_ip() {
        assert!(origin("https://example.com").is_ok());
        assert!(origin("http://localhost:8080").is_ok());
        assert!(origin("http://example.com").is_err());
        assert!(origin("https://127.0.0.1:8443").is_err());
        assert!(origin("https://[::1]:8443").is_err());
        assert!(origin("https://example.com/app").is_err());
    }

    #[test]
    fn rp_id_is_a_domain() {
        let k = &RP_ID;
        assert!(rp_id(k, Raw::Env("example.com")).is_ok());
        assert!(rp_id(k, Raw::Env("localhost")).is_ok());
        assert!(rp_id(k, Raw::Env("127.0.0.1")).is_err());
        assert!(rp_id(k, Raw::Env("https://example.com")).is_err());
        assert!(rp_id(k, Raw::Env("Example.com")).is_err());
    }
}
