//! Settings of sessiond as an OAuth 2.1 authorization server and OpenID Connect provider
//! (issue #12): who may register applications and how long a rotated client secret keeps
//! working.

use std::time::Duration;

use super::sources::{self, Key, Problems, Raw, Sources};
use super::{duration, field, key};
use crate::crypto::keys::SigningAlg;

pub(super) const APP_CREATORS: Key = key("SESSIOND_APP_CREATORS", "app_creators");
pub(super) const APP_SECRET_OVERLAP: Key = key("SESSIOND_APP_SECRET_OVERLAP", "app_secret_overlap");
pub(super) const ID_TOKEN_KEY_FILE: Key = key("SESSIOND_ID_TOKEN_KEY_FILE", "id_token_key_file");
pub(super) const INTROSPECTION_CLIENTS: Key =
    key("SESSIOND_INTROSPECTION_CLIENTS", "introspection_clients");
pub(super) const OAUTH_CODE_TTL: Key = key("SESSIOND_OAUTH_CODE_TTL", "oauth_code_ttl");
pub(super) const OAUTH_AUDIENCE: Key = key("SESSIOND_OAUTH_AUDIENCE", "oauth_audience");

/// Longest overlap of an old and a new client secret: a rollover, not a second credential.
const MAX_SECRET_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// OAuth settings.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// Who may register applications (`SESSIOND_APP_CREATORS`, a comma list of account
    /// emails). Empty (the default) = any account whose email is verified.
    pub app_creators: Vec<String>,
    /// How long the previous client secret keeps working after a rotation
    /// (`SESSIOND_APP_SECRET_OVERLAP`, default 24h, 0 = not at all, at most 30d).
    pub secret_overlap: Duration,
    /// The RSA private key (PKCS#1 or PKCS#8 PEM) that signs ID tokens (RS256)
    /// (`SESSIOND_ID_TOKEN_KEY_FILE`). Without it, on SQLite one is generated into the
    /// development keys file; on PostgreSQL OpenID Connect is off. Refused with HS256 access
    /// tokens (their JWKS is empty, so relying parties could not verify anything).
    pub id_token_key_file: Option<std::path::PathBuf>,
    /// `aud` of OAuth access tokens (RFC 9068) (`SESSIOND_OAUTH_AUDIENCE`, default
    /// `sessiond-oauth`). Must differ from `SESSIOND_AUDIENCE`, so an OAuth access token can
    /// never pass the first-party API's audience check.
    pub audience: String,
    /// Client ids of resource servers that may introspect any token
    /// (`SESSIOND_INTROSPECTION_CLIENTS`, a comma list; default none: a client introspects only
    /// its own tokens).
    pub introspection_clients: Vec<String>,
    /// How long an authorization code lives (`SESSIOND_OAUTH_CODE_TTL`, default and at most
    /// 60s, at least 1s): a code is carried by one redirect and redeemed at once, so a short
    /// life only narrows the window of a stolen one.
    pub code_ttl: Duration,
}

/// `SESSIOND_APP_CREATORS`: account emails, normalised as logins normalise them.
fn creators(k: &Key, raw: Raw<'_>) -> Result<Vec<String>, String> {
    sources::list(k, raw)?
        .iter()
        .map(|e| {
            crate::domain::Email::parse(e)
                .map(|e| e.as_str().to_owned())
                .map_err(|_| format!("{e:?} is not an email address"))
        })
        .collect()
}

/// Parses this module's settings, recording every problem; None if any was found.
/// `signing_alg` and `first_party_audience` (when valid) are checked against: OpenID Connect
/// is refused with HS256 access tokens, and the two audiences must differ.
pub(super) fn parse(
    s: &Sources,
    p: &mut Problems,
    signing_alg: Option<SigningAlg>,
    first_party_audience: Option<&str>,
) -> Option<OAuthConfig> {
    let app_creators = field(s, p, &APP_CREATORS, creators, Vec::new);
    let secret_overlap = duration(
        s,
        p,
        &APP_SECRET_OVERLAP,
        Duration::from_secs(24 * 3600),
        true,
    )
    .and_then(|d| {
        if d <= MAX_SECRET_OVERLAP {
            Some(d)
        } else {
            p.key(
                &APP_SECRET_OVERLAP,
                "must be at most 30d: the old secret is for a rollover only",
            );
            None
        }
    });
    let id_token_key_file = super::optional(s, p, &ID_TOKEN_KEY_FILE, |k, raw| {
        sources::text(k, raw).map(std::path::PathBuf::from)
    });
    let audience = field(s, p, &OAUTH_AUDIENCE, sources::text, || {
        "sessiond-oauth".into()
    });
    let introspection_clients = field(s, p, &INTROSPECTION_CLIENTS, sources::list, Vec::new);
    let code_ttl = duration(s, p, &OAUTH_CODE_TTL, Duration::from_secs(60), false).and_then(|d| {
        if (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&d) {
            Some(d)
        } else {
            p.key(&OAUTH_CODE_TTL, "must be between 1s and 60s");
            None
        }
    });
    // ID tokens are RS256, published in the JWKS beside the access-token key; with HS256
    // access tokens the JWKS is empty, so OpenID Connect is refused outright.
    if matches!(id_token_key_file, Some(Some(_))) && signing_alg == Some(SigningAlg::Hs256) {
        p.key(
            &ID_TOKEN_KEY_FILE,
            "OpenID Connect is refused with SESSIOND_SIGNING_ALG=HS256: its JWKS is empty, so \
             relying parties could verify no token (use EdDSA or RS256)",
        );
    }
    if audience.is_some() && audience.as_deref() == first_party_audience {
        p.key(
            &OAUTH_AUDIENCE,
            "must differ from SESSIOND_AUDIENCE: the audience is what keeps OAuth access tokens \
             off the first-party API",
        );
    }
    Some(OAuthConfig {
        app_creators: app_creators?,
        secret_overlap: secret_overlap?,
        id_token_key_file: id_token_key_file?,
        audience: audience?,
        introspection_clients: introspection_clients?,
        code_ttl: code_ttl?,
    })
}
