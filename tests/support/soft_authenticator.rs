//! The test authenticator for passkey tests (`tests/api/passkeys.rs`,
//! `tests/processes/passkeys_two_instances.rs`): webauthn-authenticator-rs's `SoftPasskey`
//! made to behave like a platform authenticator with resident keys. `SoftPasskey` keeps no
//! resident credentials and sends no user handle, so this wrapper records the credentials it
//! creates (and the `residentKey` the server asked for), answers an empty `allowCredentials`
//! with them and adds the user handle. It can also misbehave on purpose: skip user
//! verification, or sign for another RP id.

use webauthn_authenticator_rs::AuthenticatorBackendHashedClientData;
use webauthn_authenticator_rs::prelude::WebauthnCError;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_proto::{
    AllowCredentials, PublicKeyCredential, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, RegisterPublicKeyCredential, ResidentKeyRequirement,
    UserVerificationPolicy,
};

/// A software passkey that behaves like a platform authenticator with resident keys.
pub struct Authenticator {
    inner: SoftPasskey,
    /// (RP id, user handle, credential id) of every credential created.
    pub resident: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// What the last registration asked for.
    pub asked_resident_key: Option<ResidentKeyRequirement>,
    /// Sign without user verification (a faulty or malicious client).
    pub skip_uv: bool,
    /// Hash this RP id instead of the one asked for.
    pub rp_id_override: Option<String>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    pub fn new() -> Self {
        Self {
            // `true`: claim user verification (SoftPasskey cannot really do it).
            inner: SoftPasskey::new(true),
            resident: Vec::new(),
            asked_resident_key: None,
            skip_uv: false,
            rp_id_override: None,
        }
    }
}

impl AuthenticatorBackendHashedClientData for Authenticator {
    fn perform_register(
        &mut self,
        client_data_hash: Vec<u8>,
        mut options: PublicKeyCredentialCreationOptions,
        timeout_ms: u32,
    ) -> Result<RegisterPublicKeyCredential, WebauthnCError> {
        self.asked_resident_key = options
            .authenticator_selection
            .as_ref()
            .and_then(|s| s.resident_key);
        let rp_id = options.rp.id.clone();
        let user = options.user.id.to_vec();
        // SoftPasskey refuses `requireResidentKey`; residency is kept here instead.
        if let Some(selection) = options.authenticator_selection.as_mut() {
            selection.require_resident_key = false;
        }
        let credential = self
            .inner
            .perform_register(client_data_hash, options, timeout_ms)?;
        self.resident
            .push((rp_id, user, credential.raw_id.to_vec()));
        Ok(credential)
    }

    fn perform_auth(
        &mut self,
        client_data_hash: Vec<u8>,
        mut options: PublicKeyCredentialRequestOptions,
        timeout_ms: u32,
    ) -> Result<PublicKeyCredential, WebauthnCError> {
        let discoverable = options.allow_credentials.is_empty();
        if discoverable {
            options.allow_credentials = self
                .resident
                .iter()
                .filter(|(rp, _, _)| *rp == options.rp_id)
                .map(|(_, _, id)| AllowCredentials {
                    type_: "public-key".into(),
                    id: id.clone(),
                    transports: None,
                })
                .collect();
        }
        if self.skip_uv {
            options.user_verification = UserVerificationPolicy::Preferred;
        }
        if let Some(rp) = &self.rp_id_override {
            options.rp_id = rp.clone();
        }
        let mut credential = self
            .inner
            .perform_auth(client_data_hash, options, timeout_ms)?;
        if discoverable {
            let id = credential.raw_id.to_vec();
            credential.response.user_handle = self
                .resident
                .iter()
                .find(|(_, _, cred)| *cred == id)
                .map(|(_, user, _)| user.clone());
        }
        Ok(credential)
    }
}
