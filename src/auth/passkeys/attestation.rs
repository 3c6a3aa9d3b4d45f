//! What webauthn-rs does not expose of a registration: the authenticator's AAGUID, read from
//! the attestation object's authenticator data (WebAuthn §6.5.1: rpIdHash (32) ‖ flags (1) ‖
//! signCount (4) ‖ aaguid (16) ‖ ...).

use serde_cbor_2::Value;
use uuid::Uuid;

/// The AAGUID in a CBOR attestation object; None if it cannot be read (the crate already
/// verified the object, so this only happens for authenticators that send none).
pub fn aaguid(attestation_object: &[u8]) -> Option<Uuid> {
    let value: Value = serde_cbor_2::from_slice(attestation_object).ok()?;
    let Value::Map(map) = value else { return None };
    let auth_data = map.iter().find_map(|(k, v)| match (k, v) {
        (Value::Text(k), Value::Bytes(b)) if k == "authData" => Some(b),
        _ => None,
    })?;
    let bytes: [u8; 16] = auth_data.get(37..53)?.try_into().ok()?;
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_aaguid_after_rp_hash_flags_and_counter() {
        let mut auth_data = vec![0u8; 37];
        auth_data.extend(1u8..=16);
        auth_data.extend([0u8; 4]);
        let mut map = std::collections::BTreeMap::new();
        map.insert(Value::Text("fmt".into()), Value::Text("none".into()));
        map.insert(Value::Text("authData".into()), Value::Bytes(auth_data));
        let bytes = serde_cbor_2::to_vec(&Value::Map(map)).unwrap();
        assert_eq!(
            aaguid(&bytes).unwrap(),
            Uuid::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
        );
        assert_eq!(aaguid(b"not cbor"), None);
    }
}
