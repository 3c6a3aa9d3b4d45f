//! Log in with an external OpenID Connect provider (issue #14): the providers, by name.
//!
//! In the file: `[oidc.providers.<name>]` tables (and `[oidc]` `native_redirect_uris`); in the
//! environment: `SESSIOND_OIDC_<NAME>_<FIELD>` (`ISSUER`, `CLIENT_ID`, `CLIENT_SECRET`,
//! `CLIENT_SECRET_FILE`, `SCOPES`, `TRUST_EMAIL`, `HD`, `TRUSTED_ACR`, `EMAIL_CLAIM`,
//! `NAME_CLAIM`), the environment winning field by field. The name `google` is a preset:
//! Google's issuer, `openid email profile`, and `trust_email` on (Google asserts
//! `email_verified` only for addresses it controls or has checked).
//!
//! Provider names are what the routes carry (`/v1/auth/oidc/{name}/…`) and what identities
//! are stored under, so they are short lowercase identifiers that survive both spellings.

use std::collections::BTreeMap;

use figment::value::Value;

use super::sources::{self, Key, Problems, Raw, Sources};

/// The TOML table of this group, and the prefix of its variables.
pub(super) const TOML_TABLE: &str = "oidc";
pub(super) const ENV_PREFIX: &str = "SESSIOND_OIDC_";
const NATIVE_REDIRECTS_ENV: &str = "SESSIOND_OIDC_NATIVE_REDIRECT_URIS";
const NATIVE_REDIRECTS_TOML: &str = "native_redirect_uris";
const REDIRECT_BASE_ENV: &str = "SESSIOND_OIDC_REDIRECT_BASE";
const REDIRECT_BASE_TOML: &str = "redirect_base";

/// Google's issuer, for the `google` preset.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// A provider's fields: environment suffix, TOML key, whether the value is secret.
const FIELDS: &[(&str, &str, bool)] = &[
    ("ISSUER", "issuer", false),
    ("CLIENT_ID", "client_id", false),
    ("CLIENT_SECRET_FILE", "client_secret_file", false),
    ("CLIENT_SECRET", "client_secret", true),
    ("SCOPES", "scopes", false),
    ("TRUST_EMAIL", "trust_email", false),
    ("HD", "hd", false),
    ("TRUSTED_ACR", "trusted_acr", false),
    ("EMAIL_CLAIM", "email_claim", false),
    ("NAME_CLAIM", "name_claim", false),
];

/// Stand-ins for the typed parsers, which only look at a key to hide secret values.
const PLAIN: Key = Key {
    env: "",
    toml: "",
    secret: false,
};
const SECRET: Key = Key {
    env: "",
    toml: "",
    secret: true,
};

/// One configured provider.
#[derive(Clone)]
pub struct OidcProviderSettings {
    /// The name in routes and identities (`[a-z][a-z0-9_]{0,31}`).
    pub name: String,
    /// The issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret (None: a public client, PKCE only).
    pub client_secret: Option<String>,
    /// Scopes asked for; always includes `openid`.
    pub scopes: Vec<String>,
    /// Whether the provider's `email_verified` is believed for linking to an existing account
    /// and for marking a new account's email verified.
    pub trust_email: bool,
    /// Google's hosted-domain restriction: only accounts whose `hd` claim is this domain.
    pub hosted_domain: Option<String>,
    /// `acr` or `amr` values that count as a phishing-resistant second factor: a login that
    /// asserts one is not asked for sessiond's own second factor.
    pub trusted_acr: Vec<String>,
    /// The claim holding the email (default `email`).
    pub email_claim: String,
    /// The claim holding the display name (default `name`).
    pub name_claim: String,
}

impl std::fmt::Debug for OidcProviderSettings {
    /// The client secret is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProviderSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("trust_email", &self.trust_email)
            .field("hosted_domain", &self.hosted_domain)
            .finish_non_exhaustive()
    }
}

/// The group's settings.
#[derive(Clone, Debug, Default)]
pub struct OidcConfig {
    /// The providers, by name order.
    pub providers: Vec<OidcProviderSettings>,
    /// Redirect URIs native apps may ask for (exact match; usually a custom scheme).
    pub native_redirect_uris: Vec<String>,
    /// The public base URL of sessiond that providers redirect back to
    /// (`<base>/v1/auth/oidc/<name>/callback`). None: `SESSIOND_ISSUER`, or the bound address
    /// on a loopback bind.
    pub redirect_base: Option<String>,
}

/// One field as written: its label for messages and its raw value.
struct Found<'a> {
    label: String,
    raw: Raw<'a>,
}

/// Whether `name` is a valid provider name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses the group, recording every problem; None if any was found.
pub(super) fn parse(s: &Sources, p: &mut Problems) -> Option<OidcConfig> {
    let before = p.0.len();
    // name → field → value as found (environment over file).
    let mut found: BTreeMap<String, BTreeMap<&'static str, Found<'_>>> = BTreeMap::new();
    let mut native: Option<Found<'_>> = None;
    let mut redirect_base: Option<Found<'_>> = None;

    if let Some(table) = s.toml_value(TOML_TABLE) {
        match table {
            Value::Dict(_, dict) => {
                for (k, v) in dict {
                    match k.as_str() {
                        NATIVE_REDIRECTS_TOML => {
                            native = Some(Found {
                                label: format!("oidc.{k}"),
                                raw: Raw::Toml(v),
                            })
                        }
                        REDIRECT_BASE_TOML => {
                            redirect_base = Some(Found {
                                label: format!("oidc.{k}"),
                                raw: Raw::Toml(v),
                            })
                        }
                        "providers" => match v {
                            Value::Dict(_, providers) => {
                                for (name, fields) in providers {
                                    let Value::Dict(_, fields) = fields else {
                                        p.other(format!("oidc.providers.{name}: expected a table"));
                                        continue;
                                    };
                                    let entry = found.entry(name.clone()).or_default();
                                    for (field, value) in fields {
                                        match FIELDS.iter().find(|f| f.1 == field) {
                                            Some(f) => {
                                                entry.insert(
                                                    f.1,
                                                    Found {
                                                        label: format!(
                                                            "oidc.providers.{name}.{field}"
                                                        ),
                                                        raw: Raw::Toml(value),
                                                    },
                                                );
                                            }
                                            None => p.other(format!(
                                                "oidc.providers.{name}: unknown key {field:?}"
                                            )),
                                        }
                                    }
                                }
                            }
                            _ => p.other("oidc.providers: expected a table of providers"),
                        },
                        other => p.other(format!("oidc: unknown key {other:?}")),
                    }
                }
            }
            _ => p.other("oidc: expected a table"),
        }
    }
    for (var, value) in s.env_with_prefix(ENV_PREFIX) {
        let raw = Raw::Env(value);
        if var == NATIVE_REDIRECTS_ENV {
            native = Some(Found {
                label: var.to_owned(),
                raw,
            });
            continue;
        }
        if var == REDIRECT_BASE_ENV {
            redirect_base = Some(Found {
                label: var.to_owned(),
                raw,
            });
            continue;
        }
        let rest = &var[ENV_PREFIX.len()..];
        // The longest field suffix wins (`CLIENT_SECRET_FILE` before `CLIENT_SECRET`).
        let field = FIELDS
            .iter()
            .filter(|f| rest.len() > f.0.len() + 1 && rest.ends_with(&format!("_{}", f.0)))
            .max_by_key(|f| f.0.len());
        match field {
            Some(f) => {
                let name = rest[..rest.len() - f.0.len() - 1].to_ascii_lowercase();
                found.entry(name).or_default().insert(
                    f.1,
                    Found {
                        label: var.to_owned(),
                        raw,
                    },
                );
            }
            None => p.other(format!(
                "{var}: not a setting (SESSIOND_OIDC_<NAME>_{{ISSUER,CLIENT_ID,CLIENT_SECRET,\
                 CLIENT_SECRET_FILE,SCOPES,TRUST_EMAIL,HD,TRUSTED_ACR,EMAIL_CLAIM,NAME_CLAIM}})"
            )),
        }
    }

    let mut providers = Vec::new();
    for (name, fields) in &found {
        if let Some(provider) = provider(name, fields, p) {
            providers.push(provider);
        }
    }
    let native_redirect_uris = match native {
        None => Vec::new(),
        Some(f) => match sources::list(&PLAIN, f.raw) {
            Ok(uris) => {
                for uri in &uris {
                    if let Err(e) = native_redirect(uri) {
                        p.other(format!("{}: {e}", f.label));
                    }
                }
                uris
            }
            Err(e) => {
                p.other(format!("{}: {e}", f.label));
                Vec::new()
            }
        },
    };
    let redirect_base = match redirect_base {
        None => None,
        Some(f) => match sources::text(&PLAIN, f.raw).and_then(|t| http_url(&t)) {
            Ok(url) => Some(url.trim_end_matches('/').to_owned()),
            Err(e) => {
                p.other(format!("{}: {e}", f.label));
                None
            }
        },
    };
    (p.0.len() == before).then_some(OidcConfig {
        providers,
        native_redirect_uris,
        redirect_base,
    })
}

/// One provider's settings from its fields; None (with problems recorded) when invalid.
fn provider(
    name: &str,
    fields: &BTreeMap<&'static str, Found<'_>>,
    p: &mut Problems,
) -> Option<OidcProviderSettings> {
    let before = p.0.len();
    let label = |field: &str| format!("oidc provider {name:?} ({field})");
    if !valid_name(name) {
        p.other(format!(
            "oidc provider {name:?}: a name is 1-32 characters a-z, 0-9 and _, starting with a letter"
        ));
        return None;
    }
    let google = name == "google";
    let text = |field: &str, p: &mut Problems, secret: bool| -> Option<String> {
        let f = fields.get(field)?;
        let key = if secret { &SECRET } else { &PLAIN };
        match sources::text(key, f.raw) {
            Ok(t) => Some(t),
            Err(e) => {
                p.other(format!("{}: {e}", f.label));
                None
            }
        }
    };
    let issuer = text("issuer", p, false).or_else(|| google.then(|| GOOGLE_ISSUER.to_owned()));
    let issuer = match issuer {
        Some(i) => match http_url(&i) {
            Ok(i) => Some(i),
            Err(e) => {
                p.other(format!("{}: {e}", label("issuer")));
                None
            }
        },
        None => {
            p.other(format!("{}: required", label("issuer")));
            None
        }
    };
    let client_id = text("client_id", p, false);
    if client_id.is_none() && !fields.contains_key("client_id") {
        p.other(format!("{}: required", label("client_id")));
    }
    let inline_secret = text("client_secret", p, true);
    let secret_file = text("client_secret_file", p, false);
    let client_secret = match (inline_secret, secret_file) {
        (Some(_), Some(_)) => {
            p.other(format!(
                "{}: give client_secret or client_secret_file, not both",
                label("client_secret")
            ));
            None
        }
        (Some(s), None) => Some(s),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Ok(_) => {
                p.other(format!("{}: {path} is empty", label("client_secret_file")));
                None
            }
            Err(e) => {
                p.other(format!(
                    "{}: cannot read {path}: {e}",
                    label("client_secret_file")
                ));
                None
            }
        },
        (None, None) => None,
    };
    let list = |field: &str, p: &mut Problems| -> Option<Vec<String>> {
        let f = fields.get(field)?;
        // Scopes are space-separated by OAuth's own convention; commas work too.
        let raw = match f.raw {
            Raw::Env(s) => {
                return Some(
                    s.split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            raw => raw,
        };
        match sources::list(&PLAIN, raw) {
            Ok(items) => Some(
                items
                    .iter()
                    .flat_map(|i| i.split(' '))
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Err(e) => {
                p.other(format!("{}: {e}", f.label));
                None
            }
        }
    };
    let mut scopes = list("scopes", p)
        .unwrap_or_else(|| ["openid", "email", "profile"].map(str::to_owned).to_vec());
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_owned());
    }
    let trust_email = match fields.get("trust_email") {
        None => google,
        Some(f) => match boolean(f.raw) {
            Ok(b) => b,
            Err(e) => {
                p.other(format!("{}: {e}", f.label));
                false
            }
        },
    };
    let hosted_domain = text("hd", p, false).map(|d| d.to_ascii_lowercase());
    let trusted_acr = list("trusted_acr", p).unwrap_or_default();
    let email_claim = text("email_claim", p, false).unwrap_or_else(|| "email".to_owned());
    let name_claim = text("name_claim", p, false).unwrap_or_else(|| "name".to_owned());
    if p.0.len() != before {
        return None;
    }
    Some(OidcProviderSettings {
        name: name.to_owned(),
        issuer: issuer?,
        client_id: client_id?,
        client_secret,
        scopes,
        trust_email,
        hosted_domain,
        trusted_acr,
        email_claim,
        name_claim,
    })
}

/// An `http(s)` URL without query or fragment; a trailing slash is kept (issuers compare
/// byte for byte).
fn http_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{s:?} must not have a query or fragment"));
    }
    Ok(s.to_owned())
}

/// A native app's redirect URI: an absolute URI without fragment (a custom scheme such as
/// `com.example.app:/oauth`, or a loopback `http` one).
fn native_redirect(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("{s:?} must not have a fragment"));
    }
    if url.scheme() == "http"
        && !url
            .host_str()
            .is_some_and(|h| h == "127.0.0.1" || h == "[::1]")
    {
        return Err(format!(
            "{s:?}: plain http is only for loopback redirect URIs (RFC 8252)"
        ));
    }
    Ok(())
}

/// `true`/`false` (also on/off, yes/no, 1/0, or a TOML boolean).
fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    if let Raw::Toml(Value::Bool(_, b)) = raw {
        return Ok(*b);
    }
    let t = sources::text(&PLAIN, raw)?;
    match t.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!("{t:?} is not true or false")),
    }
}
