//! Registered OAuth applications: the rules of their fields, and the flows their owners run
//! (create, update, delete, rotate the secret), plus client authentication.
//!
//! **Fields.** Redirect URIs are compared as exact strings at the authorization endpoint (no
//! wildcard, no normalisation), so they are checked here once: absolute, `https`, or `http` on a
//! loopback host only (`127.0.0.1`, `[::1]`, `localhost`, RFC 8252 §7.3), no user info, no
//! fragment. Allowed origins are bare origins (`https://app.example`) under the same scheme
//! rule. Scopes are tokens of `A–Z a–z 0–9 : . _ / -`; `openid`, `profile`, `email` and
//! `offline_access` have their OIDC meaning, any other is a label for a resource server.
//!
//! **Secrets.** A confidential client's secret is `cs_` + 256 random bits (base64url), shown
//! once; only its SHA-256 is stored (a slow hash buys nothing for a random secret). Rotating it
//! keeps the previous hash working until the overlap (`SESSIOND_APP_SECRET_OVERLAP`) ends, so a
//! deployment can roll over without downtime. Public clients have no secret: they are
//! protected by PKCE, which the authorization endpoint requires of every client.
//!
//! **Who may create.** Creating an application or rotating its secret mints a credential, so it
//! is a sensitive action under the reauthentication rule ([`super::super::reauth`]); creating
//! is limited to the operator's list (`SESSIOND_APP_CREATORS`) or, without a list, to accounts
//! whose email is verified.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::model::{RevokeReason, SessionRecord};
use sessiond_actors::sessions::{SessionError, Sessions};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::port::ApplicationStore;
use crate::auth::{Auth, AuthError, reauth};
use crate::crypto::{constant_time_eq, random_bytes};
use crate::domain::{DisplayName, FieldError};
use crate::store::audit::{AuditClient, AuditEvent};

/// Audit kind of a new application (`details.client_id`).
pub const APPLICATION_CREATED: &str = "application_created";
/// Audit kind of an edit of an application (`details.client_id`).
pub const APPLICATION_UPDATED: &str = "application_updated";
/// Audit kind of a secret rotation (`details.client_id`).
pub const APPLICATION_SECRET_ROTATED: &str = "application_secret_rotated";
/// Audit kind of a deletion (`details.client_id`, `details.grants_revoked`).
pub const APPLICATION_DELETED: &str = "application_deleted";

/// Prefix of client secrets, so a leaked one is recognisable by secret scanners.
pub const SECRET_PREFIX: &str = "cs_";
/// Most redirect URIs (and most allowed origins) of one application.
pub const MAX_URIS: usize = 10;
/// Longest redirect URI accepted.
pub const MAX_URI_CHARS: usize = 2000;
/// Most scopes an application may be allowed.
pub const MAX_SCOPES: usize = 32;
/// Longest scope.
pub const MAX_SCOPE_CHARS: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Length of a client id: 24 lowercase hex digits (96 random bits).
const CLIENT_ID_BYTES: usize = 12;

/// Whether a client can keep a secret (RFC 6749 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientType {
    /// A server-side application: authenticates with its secret.
    Confidential,
    /// A browser or native application: no secret, PKCE only.
    Public,
}

impl ClientType {
    /// The stored and API spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    /// Parses the stored and API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(Self::Confidential),
            "public" => Some(Self::Public),
            _ => None,
        }
    }
}

/// SHA-256 of a client secret, as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// The hash of a presented or issued secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// From stored bytes; None unless exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// A short public fingerprint of this hash (base64url of its first 12 bytes' SHA-256):
    /// put in client-credentials tokens so they die with the secret that obtained them.
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(&Sha256::digest(self.0)[..12])
    }

    /// Whether `secret` hashes to this, in constant time.
    fn matches(&self, secret: &str) -> bool {
        constant_time_eq(&Self::of(secret).0, &self.0)
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// A client secret just issued: shown to the owner once, never stored.
pub struct ClientSecret(String);

impl ClientSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        Self(format!(
            "{SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>())
        ))
    }

    /// The secret itself, for the one answer that shows it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// What is stored.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// A registered application, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    /// Row id (UUIDv7): the owner's list is paginated on it.
    pub id: Uuid,
    /// The public identifier clients send (`client_id`).
    pub client_id: String,
    /// The user who registered it and alone manages it.
    pub owner_id: UserId,
    /// Shown on the consent page and the public page.
    pub name: String,
    /// Shown on the consent page and the public page.
    pub description: Option<String>,
    /// Confidential or public.
    pub client_type: ClientType,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Origins allowed to call the token endpoint from a browser (CORS).
    pub allowed_origins: Vec<String>,
    /// Scopes the application may be granted.
    pub allowed_scopes: Vec<String>,
    /// The current secret's hash (None for public clients).
    pub secret_hash: Option<SecretHash>,
    /// The secret before the last rotation, and when it stops working.
    pub previous_secret: Option<(SecretHash, DateTime<Utc>)>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last change (also the fence of concurrent edits).
    pub updated_at: DateTime<Utc>,
    /// The uploaded logo (`crate::media`), if any. Set and removed only through
    /// `crate::media::set_logo`, never by an edit of the other fields.
    pub logo: Option<crate::media::MediaRef>,
}

impl Application {
    /// Whether `uri` is one of the registered redirect URIs, byte for byte.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }
}

/// The fields an owner gives when registering an application (unvalidated).
#[derive(Clone, Debug, Default)]
pub struct ApplicationInput {
    /// 1–100 characters.
    pub name: String,
    /// At most [`MAX_DESCRIPTION_CHARS`].
    pub description: Option<String>,
    /// `confidential` or `public`.
    pub client_type: String,
    /// 1–[`MAX_URIS`].
    pub redirect_uris: Vec<String>,
    /// 0–[`MAX_URIS`].
    pub allowed_origins: Vec<String>,
    /// 1–[`MAX_SCOPES`].
    pub allowed_scopes: Vec<String>,
}

/// An edit: absent fields stay as they are. The client type cannot change (a public client
/// turned confidential would have no secret, and the reverse would keep one).
#[derive(Clone, Debug, Default)]
pub struct ApplicationPatch {
    /// New name.
    pub name: Option<String>,
    /// New description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New redirect URIs.
    pub redirect_uris: Option<Vec<String>>,
    /// New allowed origins.
    pub allowed_origins: Option<Vec<String>>,
    /// New allowed scopes.
    pub allowed_scopes: Option<Vec<String>>,
}

/// Who may register applications (`SESSIOND_APP_CREATORS`) and how long a rotated secret
/// keeps working (`SESSIOND_APP_SECRET_OVERLAP`).
#[derive(Clone, Debug, Default)]
pub struct ApplicationPolicy {
    /// Normalised account emails; empty = any account with a verified email.
    pub creators: Vec<String>,
    /// Overlap of the previous secret after a rotation.
    pub secret_overlap: Duration,
    /// Sensitive actions need an authentication this recent (`SESSIOND_REAUTH_MAX_AGE`).
    pub reauth_max_age: Duration,
}

/// A new application and, for a confidential one, its secret (shown once).
#[derive(Debug)]
pub struct Registered {
    /// As stored.
    pub application: Application,
    /// None for a public client.
    pub secret: Option<ClientSecret>,
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks one redirect URI; the message says what is wrong.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_URI_CHARS {
        return Err(format!("at most {MAX_URI_CHARS} characters"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URI"))?;
    let host = parsed
        .host()
        .ok_or_else(|| format!("{uri:?} has no host"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(format!(
                "{uri:?}: http is allowed for loopback hosts only (127.0.0.1, [::1], localhost)"
            ));
        }
        _ => return Err(format!("{uri:?}: the scheme must be https")),
    }
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(format!("{uri:?} must not have a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{uri:?} must not carry user information"));
    }
    if uri.contains('*') {
        return Err(format!("{uri:?}: wildcards are not allowed"));
    }
    Ok(())
}

/// Checks one allowed origin: `scheme://host[:port]` exactly as browsers send it.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let parsed = url::Url::parse(origin).map_err(|_| format!("{origin:?} is not an origin"))?;
    let host = parsed
        .host()
        .ok_or_else(|| format!("{origin:?} has no host"))?;
    let scheme_ok =
        parsed.scheme() == "https" || (parsed.scheme() == "http" && is_loopback_host(&host));
    if !scheme_ok {
        return Err(format!(
            "{origin:?}: the scheme must be https (http for loopback hosts only)"
        ));
    }
    if parsed.origin().ascii_serialization() != origin {
        return Err(format!(
            "{origin:?} must be a bare origin such as https://app.example (no path, no \
             trailing slash)"
        ));
    }
    Ok(())
}

/// Whether `scope` is a well-formed scope token.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_CHARS
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'/' | b'-'))
}

fn uri_list(
    field: &'static str,
    list: Vec<String>,
    min: usize,
    check: fn(&str) -> Result<(), String>,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    if list.len() < min || list.len() > MAX_URIS {
        errors.push(FieldError::new(
            field,
            format!("between {min} and {MAX_URIS} entries"),
        ));
        return list;
    }
    for entry in &list {
        if let Err(message) = check(entry) {
            errors.push(FieldError::new(field, message));
        }
    }
    dedup(list)
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn scope_list(list: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<String> {
    if list.is_empty() || list.len() > MAX_SCOPES {
        errors.push(FieldError::new(
            "allowed_scopes",
            format!("between 1 and {MAX_SCOPES} scopes"),
        ));
    } else if !list.iter().all(|s| is_scope_token(s)) {
        errors.push(FieldError::new(
            "allowed_scopes",
            format!(
                "each scope must be 1 to {MAX_SCOPE_CHARS} characters of letters, digits and \
                 : . _ / -"
            ),
        ));
    }
    dedup(list)
}

fn name(raw: &str, errors: &mut Vec<FieldError>) -> String {
    match DisplayName::parse(raw) {
        Ok(n) => n.as_str().to_owned(),
        Err(e) => {
            errors.push(FieldError::new("name", e.message));
            String::new()
        }
    }
}

fn description(raw: Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    let d = raw.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty())?;
    if d.chars().count() > MAX_DESCRIPTION_CHARS || d.chars().any(|c| c.is_control() && c != '\n') {
        errors.push(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters, no control characters"),
        ));
    }
    Some(d)
}

fn client_id() -> String {
    random_bytes::<CLIENT_ID_BYTES>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn event(kind: &str, owner: UserId, client: &AuditClient, now: DateTime<Utc>) -> AuditEvent {
    AuditEvent::new(kind, now).user(owner).client(client)
}

/// Checks that the user of `session` may register applications: on the operator's list, or
/// (without one) with a verified email.
async fn check_creator(
    auth: &Auth<'_>,
    session: &SessionRecord,
    policy: &ApplicationPolicy,
) -> Result<(), AuthError> {
    let user = auth
        .store
        .profile(session.user_id)
        .await?
        .ok_or(AuthError::AccountGone)?;
    if policy.creators.is_empty() {
        if user.email_verified_at.is_none() {
            return Err(AuthError::EmailNotVerified);
        }
    } else if !policy.creators.iter().any(|c| c == &user.email) {
        return Err(AuthError::Forbidden(
            "registering applications is limited to the operator's list (SESSIOND_APP_CREATORS)",
        ));
    }
    Ok(())
}

/// Registers an application owned by the user of `session`: a sensitive action (the
/// reauthentication rule), allowed to creators only. A confidential client gets its secret
/// here, once.
pub async fn register(
    auth: &Auth<'_>,
    session: &SessionRecord,
    policy: &ApplicationPolicy,
    input: ApplicationInput,
    client: &AuditClient,
) -> Result<Registered, AuthError> {
    reauth::require_recent(auth, session, policy.reauth_max_age).await?;
    check_creator(auth, session, policy).await?;
    let mut errors = Vec::new();
    let name = name(&input.name, &mut errors);
    let description = description(input.description, &mut errors);
    let client_type = ClientType::parse(&input.client_type).or_else(|| {
        errors.push(FieldError::new(
            "client_type",
            "must be confidential or public",
        ));
        None
    });
    let redirect_uris = uri_list(
        "redirect_uris",
        input.redirect_uris,
        1,
        check_redirect_uri,
        &mut errors,
    );
    let allowed_origins = uri_list(
        "allowed_origins",
        input.allowed_origins,
        0,
        check_origin,
        &mut errors,
    );
    let allowed_scopes = scope_list(input.allowed_scopes, &mut errors);
    let Some(client_type) = client_type.filter(|_| errors.is_empty()) else {
        return Err(AuthError::Invalid(errors));
    };
    let now = crate::store::truncate_to_micros(auth.clock.now());
    let secret = (client_type == ClientType::Confidential).then(ClientSecret::generate);
    let application = Application {
        id: Uuid::now_v7(),
        client_id: client_id(),
        owner_id: session.user_id,
        name,
        description,
        client_type,
        redirect_uris,
        allowed_origins,
        allowed_scopes,
        secret_hash: secret.as_ref().map(ClientSecret::hash),
        previous_secret: None,
        created_at: now,
        updated_at: now,
        logo: None,
    };
    let event = event(APPLICATION_CREATED, session.user_id, client, now)
        .session(session.id)
        .detail("client_id", application.client_id.clone());
    auth.store.insert_application(&application, event).await?;
    Ok(Registered {
        application,
        secret,
    })
}

/// The owner's application `client_id`; another user's is [`AuthError::NotFound`], exactly
/// like one that does not exist.
pub async fn owned(
    store: &dyn ApplicationStore,
    owner: UserId,
    client_id: &str,
) -> Result<Application, AuthError> {
    match store.find_application(client_id).await? {
        Some(app) if app.owner_id == owner => Ok(app),
        _ => Err(AuthError::NotFound),
    }
}

/// Applies an edit to the owner's application. Fenced on `updated_at`: a concurrent edit makes
/// this one re-read and re-apply (at most a few times).
pub async fn update(
    auth: &Auth<'_>,
    owner: UserId,
    client_id: &str,
    patch: ApplicationPatch,
    client: &AuditClient,
) -> Result<Application, AuthError> {
    let mut errors = Vec::new();
    let name = patch.name.map(|n| name(&n, &mut errors));
    let description = patch.description.map(|d| description(d, &mut errors));
    let redirect_uris = patch
        .redirect_uris
        .map(|l| uri_list("redirect_uris", l, 1, check_redirect_uri, &mut errors));
    let allowed_origins = patch
        .allowed_origins
        .map(|l| uri_list("allowed_origins", l, 0, check_origin, &mut errors));
    let allowed_scopes = patch.allowed_scopes.map(|l| scope_list(l, &mut errors));
    if !errors.is_empty() {
        return Err(AuthError::Invalid(errors));
    }
    for _ in 0..3 {
        let current = owned(auth.store, owner, client_id).await?;
        let mut next = current.clone();
        if let Some(n) = &name {
            next.name = n.clone();
        }
        if let Some(d) = &description {
            next.description = d.clone();
        }
        if let Some(l) = &redirect_uris {
            next.redirect_uris = l.clone();
        }
        if let Some(l) = &allowed_origins {
            next.allowed_origins = l.clone();
        }
        if let Some(l) = &allowed_scopes {
            next.allowed_scopes = l.clone();
        }
        next.updated_at = next_update_time(&current, auth.clock.now());
        let event = event(APPLICATION_UPDATED, owner, client, next.updated_at)
            .detail("client_id", client_id.to_owned());
        if auth
            .store
            .update_application(&next, current.updated_at, event)
            .await?
        {
            return Ok(next);
        }
    }
    Err(AuthError::internal(
        "application kept changing while it was being updated",
    ))
}

/// A time after `current.updated_at` (the fence must move even within one microsecond).
fn next_update_time(current: &Application, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = crate::store::truncate_to_micros(now);
    if now > current.updated_at {
        now
    } else {
        current.updated_at + chrono::Duration::microseconds(1)
    }
}

/// Issues a new secret for the owner's confidential application; the previous one keeps
/// working for the policy's overlap (0 = not at all). A sensitive action (the
/// reauthentication rule). A public client has no secret to rotate
/// ([`AuthError::Invalid`] on `client_type`).
pub async fn rotate_secret(
    auth: &Auth<'_>,
    session: &SessionRecord,
    policy: &ApplicationPolicy,
    client_id: &str,
    client: &AuditClient,
) -> Result<(Application, ClientSecret), AuthError> {
    reauth::require_recent(auth, session, policy.reauth_max_age).await?;
    let overlap = chrono::Duration::from_std(policy.secret_overlap).map_err(AuthError::internal)?;
    for _ in 0..3 {
        let current = owned(auth.store, session.user_id, client_id).await?;
        if current.client_type == ClientType::Public {
            return Err(AuthError::Invalid(vec![FieldError::new(
                "client_type",
                "a public client has no secret",
            )]));
        }
        let secret = ClientSecret::generate();
        let mut next = current.clone();
        next.updated_at = next_update_time(&current, auth.clock.now());
        next.previous_secret = match current.secret_hash {
            Some(old) if !overlap.is_zero() => Some((old, next.updated_at + overlap)),
            _ => None,
        };
        next.secret_hash = Some(secret.hash());
        let event = event(
            APPLICATION_SECRET_ROTATED,
            session.user_id,
            client,
            next.updated_at,
        )
        .session(session.id)
        .detail("client_id", client_id.to_owned());
        if auth
            .store
            .update_application(&next, current.updated_at, event)
            .await?
        {
            return Ok((next, secret));
        }
    }
    Err(AuthError::internal(
        "application kept changing while its secret was being rotated",
    ))
}

/// Deletes the owner's application, then revokes every live grant of it through the session
/// engine (reason `application_deleted`), so its refresh and access tokens stop working at
/// once on every instance. Answers how many grants were revoked.
pub async fn delete(
    auth: &Auth<'_>,
    owner: UserId,
    client_id: &str,
    client: &AuditClient,
) -> Result<u32, AuthError> {
    owned(auth.store, owner, client_id).await?;
    let now = auth.clock.now();
    let event =
        event(APPLICATION_DELETED, owner, client, now).detail("client_id", client_id.to_owned());
    if !auth
        .store
        .delete_application(owner, client_id, event)
        .await?
    {
        return Err(AuthError::NotFound);
    }
    revoke_grants(auth, client_id, RevokeReason::ApplicationDeleted).await
}

/// Revokes every live grant of `client_id`, each through its actor, concurrently.
pub async fn revoke_grants(
    auth: &Auth<'_>,
    client_id: &str,
    reason: RevokeReason,
) -> Result<u32, AuthError> {
    let ids = auth
        .store
        .active_grant_ids(client_id, auth.clock.now())
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let sessions: Sessions = auth.sessions.clone();
        tasks.spawn(async move { sessions.revoke(id, reason).await });
    }
    let mut revoked = 0u32;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(AuthError::internal)? {
            Ok(()) | Err(SessionError::NotFound) => revoked += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(revoked)
}

impl Application {
    /// The secrets that work at `now`: the current one and, inside its overlap, the previous.
    pub fn live_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SecretHash> {
        self.secret_hash.iter().chain(
            self.previous_secret
                .iter()
                .filter(move |(_, until)| now < *until)
                .map(|(h, _)| h),
        )
    }
}

/// How a client proved who it is at a protocol endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthentication {
    /// A public client: its `client_id` only (PKCE protects the code).
    None,
    /// A confidential client with its current secret.
    CurrentSecret,
    /// A confidential client with the previous secret, inside the overlap window.
    PreviousSecret,
}

impl ClientAuthentication {
    /// The secret the client used (None for a public client).
    pub fn secret<'a>(&self, app: &'a Application) -> Option<&'a SecretHash> {
        match self {
            Self::None => None,
            Self::CurrentSecret => app.secret_hash.as_ref(),
            Self::PreviousSecret => app.previous_secret.as_ref().map(|(h, _)| h),
        }
    }
}

/// Authenticates a client by `client_id` and the secret it presented (any of
/// `client_secret_basic`, `client_secret_post`; `None` = method `none`). A confidential client
/// must present its current secret or, until the overlap ends at `now`, the previous one; a
/// public client must present none. Every failure is [`AuthError::InvalidClient`] (RFC 6749
/// `invalid_client`), whatever the reason, and the secret comparison is constant-time.
pub async fn authenticate_client(
    store: &dyn ApplicationStore,
    client_id: &str,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Application, ClientAuthentication), AuthError> {
    let app = store
        .find_application(client_id)
        .await?
        .ok_or(AuthError::InvalidClient)?;
    let how = match (app.client_type, secret) {
        (ClientType::Public, None) => ClientAuthentication::None,
        (ClientType::Confidential, Some(secret)) => {
            let current = app.secret_hash.is_some_and(|h| h.matches(secret));
            let previous = app
                .previous_secret
                .is_some_and(|(h, until)| now < until && h.matches(secret));
            if current {
                ClientAuthentication::CurrentSecret
            } else if previous {
                ClientAuthentication::PreviousSecret
            } else {
                return Err(AuthError::InvalidClient);
            }
        }
        _ => return Err(AuthError::InvalidClient),
    };
    Ok((app, how))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragment_or_wildcard() {
        for ok in [
            "https://app.example/callback",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
            "http://localhost:3000/cb",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://*.app.example/cb",
            "https://user:pw@app.example/cb",
            "/relative",
            "ftp://app.example/cb",
            "myapp://cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_bare() {
        assert_eq!(check_origin("https://app.example"), Ok(()));
        assert_eq!(check_origin("http://127.0.0.1:5173"), Ok(()));
        for bad in [
            "https://app.example/",
            "https://app.example/path",
            "http://app.example",
            "app.example",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_only_their_hash_matches() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert!(a.expose_secret().starts_with(SECRET_PREFIX));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.hash().matches(a.expose_secret()));
        assert!(!a.hash().matches(b.expose_secret()));
        assert!(!format!("{a:?}{:?}", a.hash()).contains(&a.expose_secret()[3..]));
    }
}
