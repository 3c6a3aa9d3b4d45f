//! The **storage port** of logins with external providers: flows in progress (`oidc_flows`)
//! and the accounts' links to provider subjects (`identities`). Implemented by
//! `store/oidc.rs` on both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

/// What a stored flow is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    /// A browser login: the callback creates a session (cookie transport).
    Login,
    /// A signed-in user links a provider account to theirs.
    Link,
    /// A native app's login: the callback hands the app a one-time code.
    Native,
    /// The one-time code of a finished native login, until the app exchanges it.
    NativeCode,
}

impl FlowKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Link => "link",
            Self::Native => "native",
            Self::NativeCode => "native_code",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "login" => Self::Login,
            "link" => Self::Link,
            "native" => Self::Native,
            "native_code" => Self::NativeCode,
            _ => return None,
        })
    }
}

/// A flow in progress (or a native result code), keyed by the SHA-256 of its secret (`state`,
/// or the native code). `Debug` leaves the PKCE verifier out.
#[derive(Clone)]
pub struct FlowRecord {
    /// SHA-256 of the `state` (or of the native code).
    pub key_hash: Vec<u8>,
    /// What it is for.
    pub kind: FlowKind,
    /// The provider's name.
    pub provider: String,
    /// SHA-256 of the binding cookie's value (the browser that started it).
    pub browser: Option<Vec<u8>>,
    /// The `nonce` sent to the provider.
    pub nonce: Option<String>,
    /// Our PKCE verifier for the provider's token endpoint.
    pub pkce_verifier: Option<String>,
    /// Where the browser goes at the end (browser flows), or the app's redirect URI (native).
    pub return_to: Option<String>,
    /// The signed-in user (link) or the logged-in user (native code).
    pub user_id: Option<UserId>,
    /// The native app's PKCE challenge (S256).
    pub app_challenge: Option<String>,
    /// The native app's own `state`, handed back with the code.
    pub app_state: Option<String>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it dies.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for FlowRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRecord")
            .field("kind", &self.kind)
            .field("provider", &self.provider)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An account's link to a provider subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The link's id.
    pub id: Uuid,
    /// The account.
    pub user_id: UserId,
    /// The provider's name.
    pub provider: String,
    /// The provider's `sub`.
    pub subject: String,
    /// The email the provider asserted when the link was made.
    pub email: Option<String>,
    /// When it was made.
    pub linked_at: DateTime<Utc>,
}

/// What unlinking did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// The link is gone.
    Removed,
    /// The account has no such link.
    NotLinked,
    /// It is the account's last way to log in (no password, passkey or other link): kept.
    LastLoginMethod,
}

/// Flows and identities.
#[async_trait]
pub trait OidcStore: Send + Sync {
    /// Stores a flow (and drops the expired ones).
    async fn insert_flow(&self, flow: &FlowRecord) -> Result<(), StoreError>;

    /// Takes the live flow with this key: one `DELETE … RETURNING`, so a state or a native
    /// code is used at most once, on whichever instance gets it first.
    async fn take_flow(
        &self,
        key_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<FlowRecord>, StoreError>;

    /// The link of this provider subject, if any.
    async fn find_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Identity>, StoreError>;

    /// Stores a link; false when the provider subject is linked already (to anyone).
    async fn insert_identity(&self, identity: &Identity) -> Result<bool, StoreError>;

    /// The account's links, oldest first.
    async fn list_identities(&self, user: UserId) -> Result<Vec<Identity>, StoreError>;

    /// Removes the account's link to `provider` unless it is its last way to log in, in one
    /// statement (so two concurrent unlinks cannot both remove the last two ways).
    async fn unlink_identity(&self, user: UserId, provider: &str) -> Result<Unlinked, StoreError>;

    /// Marks the account's email verified (kept if it already was).
    async fn mark_email_verified(&self, user: UserId, now: DateTime<Utc>)
    -> Result<(), StoreError>;
}
