//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), kept here so the normal test suite
//! runs the same checks as property tests (`tests/fuzz_properties.rs`) on every build, without
//! a nightly toolchain.
//!
//! Each function takes arbitrary bytes, must never panic on any input, and asserts the
//! invariants that hold for every input (a panic here is a finding).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sessiond_actors::refresh_token::{MAX_TOKEN_LEN, RefreshToken};

use crate::crypto::access_token::AccessTokens;
use crate::crypto::keys::KeyRing;
use crate::crypto::keys::SigningAlg;

/// Refresh-token decoding: whatever the input, `RefreshToken::parse` answers without
/// panicking; what it accepts is exactly the canonical encoding of what it returns (so two
/// spellings can never name one token), and never longer than the limit.
pub fn refresh_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = RefreshToken::parse(text) {
        assert!(text.len() <= MAX_TOKEN_LEN, "accepted an over-long token");
        assert_eq!(
            token.encode(),
            text,
            "accepted a non-canonical spelling of a token"
        );
    }
}

/// A verifier with a fixed Ed25519 key, built once.
fn verifier() -> &'static AccessTokens {
    static TOKENS: OnceLock<AccessTokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        use aws_lc_rs::signature::Ed25519KeyPair;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .expect("generating the fuzzing key");
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let ring = KeyRing::from_material(
            SigningAlg::EdDsa,
            &[pem.as_bytes()],
            sessiond_actors::refresh_token::RefreshKey::new(vec![7u8; 32]),
        )
        .expect("the fuzzing key loads");
        AccessTokens::new(
            Arc::new(ring),
            "https://fuzz.example",
            "sessiond",
            Duration::from_secs(900),
        )
    })
}

/// Access-token (JWT) header parsing and verification: any input — treated as a whole token,
/// and as a header glued to a real payload and signature — is refused without panicking,
/// unless it is byte for byte a token this key signed.
pub fn access_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = verifier();
    // The header parser alone.
    let _ = jsonwebtoken::decode_header(text);
    // As a whole token: random bytes never verify.
    match tokens.verify(text) {
        Ok(_) => panic!("arbitrary input verified as an access token"),
        Err(e) => {
            let _ = e.reason();
        }
    }
    // As a header (base64url-encoded by us) in front of a real payload and signature: only
    // the real header could verify, and then only if the input was exactly it.
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    let spliced = format!("{header}.{}", signed_tail());
    if let Ok(v) = tokens.verify(&spliced) {
        panic!("a forged header verified: {:?}", v.claims.jti);
    }
    let raw = format!("{text}.{}", signed_tail());
    if tokens.verify(&raw).is_ok() {
        assert_eq!(text, real_header(), "only the real header verifies");
    }
}

/// `payload.signature` of one real token signed by [`verifier`]'s key.
fn signed_tail() -> &'static str {
    real_token()
        .split_once('.')
        .map(|(_, tail)| tail)
        .unwrap_or("")
}

/// The header segment of that token.
fn real_header() -> &'static str {
    real_token().split('.').next().unwrap_or("")
}

fn real_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        use sessiond_actors::ids::UserId;
        use sessiond_actors::model::{NewSession, SessionRecord};
        use sessiond_actors::refresh_token::RefreshSecret;
        let now = chrono::Utc::now();
        let user = UserId::new();
        let session = SessionRecord::open(
            NewSession::password(user, now),
            RefreshSecret::random().hash(),
            now,
            // Long-lived so a long fuzzing run keeps a valid token.
            now + chrono::Duration::days(365),
        );
        verifier()
            .issue(user, &session, now)
            .expect("issuing the reference token")
            .token
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_token_verifies_and_its_header_alone_passes_the_check() {
        assert!(verifier().verify(real_token()).is_ok());
        // The one input for which the spliced token verifies: the real header itself.
        access_token(real_header().as_bytes());
    }

    #[test]
    fn seeds_do_not_panic() {
        for seed in [
            &b""[..],
            b"rt1_",
            b"eyJhbGciOiJub25lIn0",
            b"{\"alg\":\"none\"}",
            b"\xff\xfe",
        ] {
            refresh_token(seed);
            access_token(seed);
        }
    }
}
