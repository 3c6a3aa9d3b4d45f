//! The storage port of API keys: what the key rules ([`super::check_key`] and
//! [`super::ApiKeyUsage`]) need from a store, and the rows they read. `crate::store`
//! implements it for PostgreSQL and SQLite; [`super::memory::MemoryApiKeyStore`] is its
//! in-memory twin for tests of the rules.
//!
//! The dependency points one way, store → api_keys, as with the session port in
//! `sessiond_actors::store` and the codes port in `crate::codes`: the rules never name the
//! database.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;

use super::{ApiKeyId, SecretHash};
use crate::store::UserStatus;

/// An API key as stored (never the secret; its hash is redacted from `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's id (UUIDv7), used to list and revoke it.
    pub id: ApiKeyId,
    /// The lookup part of the key (`sk_<public id>_…`).
    pub public_id: String,
    /// The owner: the user who created it.
    pub user_id: UserId,
    /// The owner's label for it.
    pub name: String,
    /// SHA-256 of the secret.
    pub secret_hash: SecretHash,
    /// Labels passed on to gateways; sessiond gives them no meaning.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// After this the key is refused; None = no expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the owner revoked it.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful use as of the last usage flush.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("public_id", &self.public_id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("secret_hash", &self.secret_hash)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// A key found by its public id, with its owner's account status (a disabled owner's keys stop
/// working without being revoked).
#[derive(Clone, Debug)]
pub struct ApiKeyLookup {
    /// The key.
    pub key: ApiKeyRecord,
    /// The owner's status.
    pub owner_status: UserStatus,
}

/// What the API-key rules need from storage.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// The key with this public id and its owner's status, whatever its state (the rules
    /// decide about revocation and expiry).
    async fn find_api_key(&self, public_id: &str) -> Result<Option<ApiKeyLookup>, StoreError>;

    /// Moves `last_used_at` forward for every key in `uses`, all or nothing. A key that no
    /// longer exists is skipped; an older time never overwrites a newer one.
    async fn record_api_key_use(
        &self,
        uses: &[(ApiKeyId, DateTime<Utc>)],
    ) -> Result<(), StoreError>;
}
