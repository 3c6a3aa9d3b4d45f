//! Settings of sessiond as an OAuth 2.1 authorization server and OpenID Connect provider
//! (issue #12): who may register applications and how long a rotated client secret keeps
//! working.

use std::time::Duration;

use super::sources::{self, Key, Problems, Raw, Sources};
use super::{duration, field, key};

pub(super) const APP_CREATORS: Key = key("SESSIOND_APP_CREATORS", "app_creators");
pub(super) const APP_SECRET_OVERLAP: Key = key("SESSIOND_APP_SECRET_OVERLAP", "app_secret_overlap");

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
pub(super) fn parse(s: &Sources, p: &mut Problems) -> Option<OAuthConfig> {
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
    Some(OAuthConfig {
        app_creators: app_creators?,
        secret_overlap: secret_overlap?,
    })
}
