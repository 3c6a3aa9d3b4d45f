//! The **storage port** of passkeys: what the passkey flows need from a store, and the values
//! they exchange. `crate::store::passkeys` implements it for PostgreSQL and SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sessiond_actors::ids::UserId;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use crate::store::audit::AuditEvent;

/// A registered passkey as stored.
#[derive(Clone, Debug)]
pub struct StoredPasskey {
    /// Row id (what the API calls the passkey's id).
    pub id: Uuid,
    /// Whose it is.
    pub user_id: UserId,
    /// The WebAuthn credential id.
    pub credential_id: Vec<u8>,
    /// webauthn-rs's `Passkey`, serialised as JSON.
    pub passkey_json: String,
    /// The authenticator's signature counter as last seen (0 = it does not count).
    pub sign_count: u32,
    /// The credential may be synced to other devices (BE flag).
    pub backup_eligible: bool,
    /// The credential is currently synced (BS flag).
    pub backup_state: bool,
    /// Transports the browser reported at registration (`internal`, `usb`, `hybrid`, ...).
    pub transports: Vec<String>,
    /// The authenticator model (all zero when not attested).
    pub aaguid: Uuid,
    /// The user's label.
    pub name: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last completed a ceremony.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a ceremony was started for. Checked at the finish together with `bound_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Registering a new passkey for a signed-in user.
    Register,
    /// Raising the current session to `aal` 2.
    StepUp,
    /// Passwordless login with a discoverable credential.
    Login,
    /// The second factor of a password login.
    Mfa,
}

impl CeremonyKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::StepUp => "step_up",
            Self::Login => "login",
            Self::Mfa => "mfa",
        }
    }
}

/// A ceremony in progress.
#[derive(Clone, Debug)]
pub struct Ceremony {
    /// The id handed to the client.
    pub id: Uuid,
    /// What it is for.
    pub kind: CeremonyKind,
    /// Whom it is for: `user:<id>/session:<id>`, `challenge:<id>`, or empty (login).
    pub bound_to: String,
    /// webauthn-rs's ceremony state, serialised as JSON.
    pub state: String,
    /// The name the new passkey gets (registration only).
    pub name: Option<String>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// After this it cannot be finished.
    pub expires_at: DateTime<Utc>,
}

/// The counter and flags an assertion leaves behind.
#[derive(Clone, Debug)]
pub struct PasskeyUse {
    /// The counter the row must still have (compare-and-set).
    pub expected_sign_count: u32,
    /// The new counter.
    pub sign_count: u32,
    /// The crate's `Passkey` after `update_credential`.
    pub passkey_json: String,
    /// BE flag of the assertion.
    pub backup_eligible: bool,
    /// BS flag of the assertion.
    pub backup_state: bool,
    /// Now.
    pub at: DateTime<Utc>,
}

/// What the passkey flows need from a store.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Stores a ceremony (and forgets expired ones).
    async fn insert_ceremony(&self, ceremony: &Ceremony) -> Result<(), StoreError>;
    /// Takes (deletes and returns) ceremony `id` if it is of `kind`, bound to `bound_to` and
    /// unexpired at `now`; None, changing nothing, otherwise. One statement: of two concurrent
    /// finishes one gets it.
    async fn take_ceremony(
        &self,
        id: Uuid,
        kind: CeremonyKind,
        bound_to: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Ceremony>, StoreError>;
    /// Stores a new passkey with `event`, and, for an account's first second factor,
    /// `recovery_code_hashes` (replacing any earlier ones), in one transaction. False, writing
    /// nothing, if the credential id is registered already.
    async fn insert_passkey(
        &self,
        passkey: &StoredPasskey,
        recovery_code_hashes: Option<&[[u8; 32]]>,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// The user's passkeys, oldest first.
    async fn list_passkeys(&self, user: UserId) -> Result<Vec<StoredPasskey>, StoreError>;
    /// The passkey with this credential id, whoever's it is.
    async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<StoredPasskey>, StoreError>;
    /// Renames `user`'s passkey `id`; None if there is no such passkey of theirs.
    async fn rename_passkey(
        &self,
        user: UserId,
        id: Uuid,
        name: &str,
    ) -> Result<Option<StoredPasskey>, StoreError>;
    /// Deletes `user`'s passkey `id` with `event`; false if there is no such passkey of theirs.
    /// With `and_recovery_codes` (it was the account's last second factor) the recovery codes
    /// go too.
    async fn delete_passkey(
        &self,
        user: UserId,
        id: Uuid,
        and_recovery_codes: bool,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;
    /// Records a successful assertion with passkey `id`: counter, flags and last use, if the
    /// counter is still `expected_sign_count`. False, writing nothing, otherwise (a concurrent
    /// assertion won, or the passkey was deleted).
    async fn record_passkey_use(&self, id: Uuid, usage: &PasskeyUse) -> Result<bool, StoreError>;
}
