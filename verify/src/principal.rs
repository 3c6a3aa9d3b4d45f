//! Who a request authenticates as.

use uuid::Uuid;

/// The authenticated caller: a user (bearer access token) or a service (API key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user, by a bearer access token of one of their sessions.
    User(UserPrincipal),
    /// A service, by an API key (`x-api-key`).
    Service(ServicePrincipal),
}

/// A user signed in to sessiond, as an access token names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPrincipal {
    /// The user id (`sub`).
    pub user_id: Uuid,
    /// The session id (`sid`): the handle sessiond revokes.
    pub session_id: Uuid,
    /// The session's authenticator assurance level (`aal`): 1 for a password or passkey-less
    /// login, 2 once a second factor was proven.
    pub aal: u8,
    /// Authentication methods (`amr`, RFC 8176), e.g. `["pwd", "otp"]`.
    pub amr: Vec<String>,
    /// The token id (`jti`), for audit trails.
    pub token_id: String,
    /// When the token expires (`exp`, seconds since the Unix epoch).
    pub expires_at: u64,
}

/// A service calling with an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePrincipal {
    /// The API key's id (not the secret).
    pub key_id: String,
    /// The user who owns the key.
    pub owner_id: Uuid,
    /// The key's label, as its owner named it.
    pub name: String,
    /// The key's scopes (only those on sessiond's `SESSIOND_API_KEY_SCOPES` allow-list).
    pub scopes: Vec<String>,
}

impl Principal {
    /// The user id for a user, the owner's id for a service.
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::User(u) => u.user_id,
            Self::Service(s) => s.owner_id,
        }
    }

    /// The session's assurance level; `None` for a service (API keys have none).
    pub fn aal(&self) -> Option<u8> {
        match self {
            Self::User(u) => Some(u.aal),
            Self::Service(_) => None,
        }
    }

    /// The scopes the principal carries. sessiond's access tokens carry none (a user acts with
    /// their whole account), so this is empty for users; an API key's scopes otherwise.
    pub fn scopes(&self) -> &[String] {
        match self {
            Self::User(_) => &[],
            Self::Service(s) => &s.scopes,
        }
    }

    /// Whether the principal carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| s == scope)
    }
}
