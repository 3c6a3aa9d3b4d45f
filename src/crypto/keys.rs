//! The key ring: access-token signing keys and the refresh-token derivation key.
//!
//! Signing keys come from `SESSIOND_SIGNING_KEY_FILE` (one or several files). The first key
//! signs; every key verifies, so rotation is: put the new key first, keep the old one listed
//! until the last token it signed has expired (one access TTL), then remove it. A retired key
//! may be listed as a public key only (EdDSA/RS256), since it no longer signs.
//!
//! Every key has a `kid`: base64url (no padding) of the first 16 bytes of SHA-256 over the
//! public key (Ed25519: the 32 raw bytes; RSA: the PKCS#1 `RSAPublicKey` DER) or, for HS256,
//! over the secret. It is derived, not configured, so every instance names a key the same way.
//!
//! **Development keys.** On SQLite, when keys are not configured, they are generated once
//! (Ed25519 for EdDSA, 32 random bytes for HS256 — never RSA) together with a random refresh
//! key, and kept in the keys file (`Config::keys_file`, mode 0600) so restarts keep issued
//! tokens valid. A loud warning says so at every start. On PostgreSQL several instances share
//! the database and must share keys, so missing keys are an error there.
//!
//! Keys file format (TOML, written by this module; safe to delete, which rotates every key and
//! invalidates every token and session of a development database):
//!
//! ```toml
//! # sessiond DEVELOPMENT keys - NOT FOR PRODUCTION ...
//! format = 1
//! signing_alg = "EdDSA"          # absent when the signing key comes from files
//! signing_key = """
//! -----BEGIN PRIVATE KEY-----
//! ...PKCS#8 Ed25519 key...
//! -----END PRIVATE KEY-----
//! """                            # HS256: the base64 of the secret instead
//! refresh_key = "<base64 of 32 random bytes>"   # absent when SESSIOND_REFRESH_KEY is set
//! ```

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use figment::providers::{Format, Toml};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Deserialize;
use sessiond_actors::refresh_token::RefreshKey;
use sha2::{Digest, Sha256};

use crate::crypto::random_bytes;

const SIGNING_KEY_FILE: &str = "SESSIOND_SIGNING_KEY_FILE (toml: signing_key_file)";
const REFRESH_KEY: &str = "SESSIOND_REFRESH_KEY (toml: refresh_key)";
const KEYS_FILE: &str = "SESSIOND_KEYS_FILE (toml: keys_file)";
/// Shortest HS256 secret accepted: the hash output size (RFC 7518 §3.2).
const MIN_HMAC_SECRET: usize = 32;
const KEYS_FILE_FORMAT: u32 = 1;

/// Why the keys could not be loaded. Messages name the setting and the file, never key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("{SIGNING_KEY_FILE}: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file was read but does not hold a usable key.
    #[error("{SIGNING_KEY_FILE}: {origin}: {reason}")]
    Invalid {
        /// Where the key came from (a path, or `key #n`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Keys are missing and may not be generated (PostgreSQL).
    #[error(
        "{0} is required with PostgreSQL: instances must share keys \
         (keys are generated only for SQLite development setups)"
    )]
    Missing(&'static str),
    /// RS256 was chosen without a key file.
    #[error(
        "{SIGNING_KEY_FILE} is required with RS256: RSA keys are never generated \
         (e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`)"
    )]
    RsaNeedsKeyFile,
    /// The development keys file could not be read, parsed or written.
    #[error("{KEYS_FILE}: {}: {reason}", path.display())]
    KeysFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The random generator or the key generator failed.
    #[error("key generation failed")]
    Generation,
}

/// One signing/verification key.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    /// None for a verification-only (public) key.
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

/// Signing keys (first signs, all verify) and the refresh-token key. `Debug` and
/// [`KeyRing::describe`] show algorithm, key ids and where keys came from — never key material.
#[derive(Clone)]
pub struct KeyRing {
    alg: SigningAlg,
    keys: Vec<SigningKey>,
    refresh_key: RefreshKey,
    source: String,
    /// The loud development-keys warning, logged by the caller right after the "listening"
    /// line so that line stays the first one of the process.
    warning: Option<String>,
    /// The RS256 key of ID tokens; None = OpenID Connect is off.
    id_token: Option<SigningKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("alg", &self.alg)
            .field("kids", &self.kids())
            .field("id_token_kid", &self.id_token_kid())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Access-token signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// Ed25519 (`EdDSA`): small keys, fast, deterministic. The default.
    EdDsa,
    /// RSA PKCS#1 v1.5 with SHA-256 (`RS256`), for consumers that know nothing else.
    Rs256,
    /// HMAC-SHA-256 (`HS256`): only this service can verify; nothing is published in JWKS.
    Hs256,
}

impl SigningAlg {
    /// Parses the JOSE name (`EdDSA`, `RS256`, `HS256`; case-insensitive).
    pub fn parse(s: &str) -> Result<SigningAlg, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "EDDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            "HS256" => Ok(Self::Hs256),
            _ => Err(format!(
                "{s:?} is not supported (use EdDSA, RS256 or HS256)"
            )),
        }
    }

    /// The JOSE name, as in the `alg` header.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Hs256 => "HS256",
        }
    }

    /// The `jsonwebtoken` algorithm.
    pub fn algorithm(&self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the key ring's keys come from: the key ring owns these settings, `Config` composes
/// them (`Config::key_sources`).
#[derive(Clone, Debug)]
pub struct KeySources {
    /// The access-token signature algorithm.
    pub alg: SigningAlg,
    /// Signing key files: the first signs, all verify (rotation without a restart of clients).
    pub signing_key_files: Vec<PathBuf>,
    /// The refresh-token derivation key, if configured.
    pub refresh_key: Option<RefreshKey>,
    /// Where generated development keys are kept; None = in memory only.
    pub keys_file: Option<PathBuf>,
    /// Whether missing keys may be generated (the single-process SQLite default). Several
    /// instances sharing PostgreSQL must share keys, so there a missing key is an error.
    pub development: bool,
    /// The RSA key that signs OpenID Connect ID tokens (`SESSIOND_ID_TOKEN_KEY_FILE`). Without
    /// it, development setups generate one (kept in the keys file, never in the database);
    /// others run without OpenID Connect. Never with HS256 access tokens.
    pub id_token_key_file: Option<PathBuf>,
}

impl KeyRing {
    /// Loads the configured keys; on SQLite, loads or generates development keys for whatever
    /// is not configured (see the module documentation).
    pub fn load(config: &KeySources) -> Result<KeyRing, KeyError> {
        let alg = config.alg;
        let configured_refresh = config.refresh_key.clone();
        let configured_signing = if config.signing_key_files.is_empty() {
            None
        } else {
            let mut material = Vec::new();
            for path in &config.signing_key_files {
                let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
                material.push((path.display().to_string(), bytes));
            }
            Some(parse_keys(alg, &material)?)
        };
        let files = || {
            config
                .signing_key_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };

        let configured_id_token = match &config.id_token_key_file {
            Some(path) => Some(load_id_token_key(path)?),
            None => None,
        };
        if let (Some(keys), Some(refresh_key)) = (&configured_signing, &configured_refresh) {
            return Ok(KeyRing {
                alg,
                keys: keys.clone(),
                refresh_key: refresh_key.clone(),
                source: format!(
                    "signing keys from {}; refresh key from configuration",
                    files()
                ),
                warning: None,
                id_token: configured_id_token,
            });
        }
        if !config.development {
            return Err(KeyError::Missing(if configured_signing.is_none() {
                SIGNING_KEY_FILE
            } else {
                REFRESH_KEY
            }));
        }
        if configured_signing.is_none() && alg == SigningAlg::Rs256 {
            return Err(KeyError::RsaNeedsKeyFile);
        }

        // SQLite development mode: fill the gaps from the keys file, or generate them.
        let path = config.keys_file.as_deref();
        let stored = match path {
            Some(path) => read_keys_file(path)?,
            None => None,
        };
        let mut generated = Vec::new();
        let mut dev = DevKeys::default();

        let (keys, signing_source) = match configured_signing {
            Some(keys) => (keys, format!("signing keys from {}", files())),
            None => {
                let reusable = stored.as_ref().and_then(|s| {
                    s.signing_key
                        .as_ref()
                        .filter(|_| s.signing_alg.as_deref() == Some(alg.as_str()))
                });
                let material = match reusable {
                    Some(text) => {
                        DevSigning::decode(alg, text).map_err(|reason| KeyError::KeysFile {
                            path: path.expect("read from a file").to_path_buf(),
                            reason,
                        })?
                    }
                    None => {
                        generated.push(format!("a {alg} signing key"));
                        DevSigning::generate(alg)?
                    }
                };
                let keys = parse_keys(alg, &[("development key".into(), material.key_bytes())])?;
                dev.signing = Some(material);
                (keys, "development signing key".to_string())
            }
        };

        let (refresh_key, refresh_source) = match configured_refresh {
            Some(key) => (key, "refresh key from configuration"),
            None => {
                let bytes = match stored.as_ref().and_then(|s| s.refresh_key.as_ref()) {
                    Some(b64) => STANDARD
                        .decode(b64.trim())
                        .ok()
                        .filter(|b| b.len() >= 32)
                        .ok_or_else(|| KeyError::KeysFile {
                            path: path.expect("read from a file").to_path_buf(),
                            reason: "refresh_key is not the base64 of 32 or more bytes".into(),
                        })?,
                    None => {
                        generated.push("a refresh key".to_string());
                        random_bytes::<32>().to_vec()
                    }
                };
                dev.refresh = Some(bytes.clone());
                (RefreshKey::new(bytes), "development refresh key")
            }
        };

        let id_token = match configured_id_token {
            Some(key) => Some(key),
            // HS256: no OpenID Connect (the configuration refuses an ID-token key file then).
            None if alg == SigningAlg::Hs256 => None,
            None => {
                let pem = match stored.as_ref().and_then(|s| s.id_token_key.as_ref()) {
                    Some(pem) => pem.clone(),
                    None => {
                        generated.push("an RSA ID-token key".to_string());
                        generate_rsa_pem()?
                    }
                };
                let key = parse_rsa(pem.as_bytes())
                    .ok()
                    .filter(|k| k.encoding.is_some())
                    .ok_or_else(|| KeyError::KeysFile {
                        path: path.map(Path::to_path_buf).unwrap_or_default(),
                        reason: "id_token_key is not an RSA private key".into(),
                    })?;
                dev.id_token = Some(pem);
                Some(key)
            }
        };

        let location = match path {
            Some(path) => {
                if !generated.is_empty() {
                    write_keys_file(path, &dev)?;
                }
                path.display().to_string()
            }
            None => "memory only (in-memory database)".to_string(),
        };
        let warning = if generated.is_empty() {
            format!(
                "USING DEVELOPMENT KEYS from {location}: NOT FOR PRODUCTION. Set \
                 SESSIOND_SIGNING_KEY_FILE and SESSIOND_REFRESH_KEY for real deployments."
            )
        } else {
            format!(
                "!!! GENERATED DEVELOPMENT KEYS ({}) and stored them in {location}. \
                 NOT FOR PRODUCTION: anyone who can read that file can forge tokens. Set \
                 SESSIOND_SIGNING_KEY_FILE and SESSIOND_REFRESH_KEY for real deployments. !!!",
                generated.join(" and ")
            )
        };
        Ok(KeyRing {
            alg,
            keys,
            refresh_key,
            source: format!("{signing_source}; {refresh_source}; development keys: {location}"),
            warning: Some(warning),
            id_token,
        })
    }

    /// The development-keys warning to log once the process has said where it listens, if
    /// development keys are in use.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// Builds a ring from key material already in memory: PEM texts for EdDSA/RS256 (the first
    /// must be a private key; later ones may be public keys), raw secrets for HS256.
    pub fn from_material(
        alg: SigningAlg,
        keys: &[&[u8]],
        refresh_key: RefreshKey,
    ) -> Result<KeyRing, KeyError> {
        let material: Vec<(String, Vec<u8>)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("key #{}", i + 1), k.to_vec()))
            .collect();
        Ok(KeyRing {
            alg,
            keys: parse_keys(alg, &material)?,
            refresh_key,
            source: "keys given in memory".into(),
            warning: None,
            id_token: None,
        })
    }

    /// A ring of fresh random keys kept in memory only (tests, throw-away instances).
    /// EdDSA or HS256; RS256 gives [`KeyError::RsaNeedsKeyFile`].
    pub fn generate(alg: SigningAlg) -> Result<KeyRing, KeyError> {
        let material = DevSigning::generate(alg)?;
        let keys = parse_keys(alg, &[("generated key".into(), material.key_bytes())])?;
        Ok(KeyRing {
            alg,
            keys,
            refresh_key: RefreshKey::new(random_bytes::<32>().to_vec()),
            source: "generated in memory".into(),
            warning: None,
            id_token: None,
        })
    }

    /// The signature algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The key refresh-token secrets are derived with.
    pub fn refresh_key(&self) -> &RefreshKey {
        &self.refresh_key
    }

    /// The `kid` of the key that signs.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Every `kid` that verifies, the signing one first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The signing key and its `kid`.
    pub(crate) fn signer(&self) -> (&str, &EncodingKey) {
        let k = &self.keys[0];
        (
            &k.kid,
            k.encoding
                .as_ref()
                .expect("parse_keys makes the first key a private key"),
        )
    }

    /// The verification key named `kid`, if it is one of ours.
    pub(crate) fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &k.decoding)
    }

    /// The JWKS document (`/.well-known/jwks.json`): every verification key, with `kid`,
    /// `alg` and `use: sig`. HS256 secrets are never published: the set is then empty.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = match self.alg {
            SigningAlg::Hs256 => Vec::new(),
            SigningAlg::EdDsa | SigningAlg::Rs256 => self
                .keys
                .iter()
                .filter_map(|k| {
                    let mut jwk = Jwk::from_decoding_key(&k.decoding, Some(self.alg.algorithm()))
                        .map_err(|e| tracing::error!(kid = %k.kid, "cannot publish key: {e}"))
                        .ok()?;
                    jwk.common.key_id = Some(k.kid.clone());
                    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                    Some(jwk)
                })
                .collect(),
        };
        let mut keys = keys;
        if let Some(k) = &self.id_token {
            match Jwk::from_decoding_key(&k.decoding, Some(jsonwebtoken::Algorithm::RS256)) {
                Ok(mut jwk) => {
                    jwk.common.key_id = Some(k.kid.clone());
                    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                    keys.push(jwk);
                }
                Err(e) => tracing::error!(kid = %k.kid, "cannot publish the ID-token key: {e}"),
            }
        }
        serde_json::to_value(JwkSet { keys }).expect("a JWK set serialises")
    }

    /// One line for the start-up log: algorithm, key ids, where keys came from.
    pub fn describe(&self) -> String {
        format!(
            "alg {}, signing kid {}, verifying kids [{}]; ID-token kid {}; {}",
            self.alg,
            self.signing_kid(),
            self.kids().join(", "),
            self.id_token_kid().unwrap_or("none (OpenID Connect off)"),
            self.source
        )
    }

    /// Whether OpenID Connect is on: an RS256 ID-token key is loaded.
    pub fn oidc_enabled(&self) -> bool {
        self.id_token.is_some()
    }

    /// The ID-token key's `kid`, if OpenID Connect is on.
    pub fn id_token_kid(&self) -> Option<&str> {
        self.id_token.as_ref().map(|k| k.kid.as_str())
    }

    /// The RS256 key that signs ID tokens and its `kid`, if OpenID Connect is on.
    pub fn id_token_signer(&self) -> Option<(&str, &EncodingKey)> {
        let k = self.id_token.as_ref()?;
        Some((&k.kid, k.encoding.as_ref()?))
    }

    /// The ID-token verification key named `kid` (tests and the flows' own checks).
    pub fn id_token_verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.id_token
            .as_ref()
            .filter(|k| k.kid == kid)
            .map(|k| &k.decoding)
    }
}

/// Parses every key; the first must be able to sign. Duplicates are refused (a key listed
/// twice is a configuration slip that would hide the real rotation state).
fn parse_keys(
    alg: SigningAlg,
    material: &[(String, Vec<u8>)],
) -> Result<Vec<SigningKey>, KeyError> {
    let mut keys: Vec<SigningKey> = Vec::with_capacity(material.len());
    for (i, (origin, bytes)) in material.iter().enumerate() {
        let invalid = |reason: String| KeyError::Invalid {
            origin: origin.clone(),
            reason,
        };
        let key = match alg {
            SigningAlg::EdDsa => parse_ed25519(bytes).map_err(invalid)?,
            SigningAlg::Rs256 => parse_rsa(bytes).map_err(invalid)?,
            SigningAlg::Hs256 => parse_hmac(bytes).map_err(invalid)?,
        };
        if i == 0 && key.encoding.is_none() {
            return Err(invalid(
                "the first key signs, so it must be a private key, not a public one".into(),
            ));
        }
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(invalid(format!(
                "the same key is listed twice (kid {})",
                key.kid
            )));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::Invalid {
            origin: "(none)".into(),
            reason: "no key given".into(),
        });
    }
    Ok(keys)
}

fn kid_of(public: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..16])
}

fn parse_pem(bytes: &[u8]) -> Result<pem::Pem, String> {
    pem::parse(bytes).map_err(|_| "not a PEM file (expected -----BEGIN ...-----)".to_string())
}

fn parse_ed25519(bytes: &[u8]) -> Result<SigningKey, String> {
    let pem = parse_pem(bytes)?;
    match pem.tag() {
        "PRIVATE KEY" => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pem.contents())
                .map_err(|_| "not an Ed25519 PKCS#8 private key".to_string())?;
            // jsonwebtoken expects the 48-byte PKCS#8 v1 form; normalise whatever was given.
            let v1 = pair
                .to_pkcs8v1()
                .map_err(|_| "cannot re-encode the Ed25519 key".to_string())?;
            let public = pair.public_key().as_ref();
            Ok(SigningKey {
                kid: kid_of(public),
                encoding: Some(EncodingKey::from_ed_der(v1.as_ref())),
                decoding: DecodingKey::from_ed_der(public),
            })
        }
        "PUBLIC KEY" => {
            let decoding = DecodingKey::from_ed_pem(bytes)
                .map_err(|_| "not an Ed25519 public key".to_string())?;
            let public = decoding
                .try_get_as_bytes()
                .map_err(|_| "not an Ed25519 public key".to_string())?;
            if public.len() != 32 {
                return Err("not an Ed25519 public key".into());
            }
            Ok(SigningKey {
                kid: kid_of(public),
                encoding: None,
                decoding,
            })
        }
        other => Err(format!(
            "PEM block {other:?} is not an Ed25519 key (expected PRIVATE KEY, PKCS#8)"
        )),
    }
}

fn parse_rsa(bytes: &[u8]) -> Result<SigningKey, String> {
    let pem = parse_pem(bytes)?;
    let rsa_public = |public: &aws_lc_rs::rsa::PublicKey| {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(public);
        (
            kid_of(public.as_ref()),
            DecodingKey::from_rsa_raw_components(&c.n, &c.e),
        )
    };
    match pem.tag() {
        "RSA PRIVATE KEY" | "PRIVATE KEY" => {
            // jsonwebtoken wants PKCS#1 DER; it extracts it from PKCS#8 too.
            let encoding = EncodingKey::from_rsa_pem(bytes)
                .map_err(|_| "not an RSA private key (PKCS#1 or PKCS#8 PEM)".to_string())?;
            let pair = RsaKeyPair::from_der(encoding.as_bytes())
                .map_err(|e| format!("RSA key rejected: {e}"))?;
            let (kid, decoding) = rsa_public(pair.public_key());
            Ok(SigningKey {
                kid,
                encoding: Some(encoding),
                decoding,
            })
        }
        "RSA PUBLIC KEY" | "PUBLIC KEY" => {
            let public = aws_lc_rs::rsa::PublicKey::from_der(pem.contents())
                .map_err(|_| "not an RSA public key".to_string())?;
            let (kid, decoding) = rsa_public(&public);
            Ok(SigningKey {
                kid,
                encoding: None,
                decoding,
            })
        }
        other => Err(format!(
            "PEM block {other:?} is not an RSA key (expected RSA PRIVATE KEY or PRIVATE KEY)"
        )),
    }
}

/// Reads the ID-token key file: an RSA private key (a public key cannot sign).
fn load_id_token_key(path: &Path) -> Result<SigningKey, KeyError> {
    let invalid = |reason: String| KeyError::Invalid {
        origin: format!("SESSIOND_ID_TOKEN_KEY_FILE {}", path.display()),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
    let key = parse_rsa(&bytes).map_err(invalid)?;
    if key.encoding.is_none() {
        return Err(invalid("a public key cannot sign ID tokens".into()));
    }
    Ok(key)
}

/// A fresh 2048-bit RSA private key as PKCS#8 PEM (development ID-token key).
fn generate_rsa_pem() -> Result<String, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| KeyError::Generation)?;
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
        .map_err(|_| KeyError::Generation)?;
    Ok(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// An HS256 secret file holds the raw secret; one trailing newline is ignored (editors and
/// `echo` add it, and it must not make two instances disagree).
fn parse_hmac(bytes: &[u8]) -> Result<SigningKey, String> {
    let secret = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    if secret.len() < MIN_HMAC_SECRET {
        return Err(format!(
            "an HS256 secret must be at least {MIN_HMAC_SECRET} bytes (found {})",
            secret.len()
        ));
    }
    Ok(SigningKey {
        kid: kid_of(secret),
        encoding: Some(EncodingKey::from_secret(secret)),
        decoding: DecodingKey::from_secret(secret),
    })
}

/// A development signing key, in the form it is kept in the keys file.
enum DevSigning {
    /// PKCS#8 PEM text.
    Ed25519Pem(String),
    /// Raw secret.
    HmacSecret(Vec<u8>),
}

impl DevSigning {
    fn generate(alg: SigningAlg) -> Result<DevSigning, KeyError> {
        match alg {
            SigningAlg::EdDsa => {
                let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Generation)?;
                let der = pair.to_pkcs8v1().map_err(|_| KeyError::Generation)?;
                let pem = pem::Pem::new("PRIVATE KEY", der.as_ref());
                Ok(DevSigning::Ed25519Pem(pem::encode_config(
                    &pem,
                    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
                )))
            }
            SigningAlg::Hs256 => {
                // A key file's final newline is not part of its secret (`parse_hmac`), so a
                // generated secret never ends with one: otherwise one secret in 256 would lose
                // its last byte when parsed (and be refused as too short).
                let mut secret = random_bytes::<32>();
                while secret[31] == b'\n' {
                    secret = random_bytes::<32>();
                }
                Ok(DevSigning::HmacSecret(secret.to_vec()))
            }
            SigningAlg::Rs256 => Err(KeyError::RsaNeedsKeyFile),
        }
    }

    fn decode(alg: SigningAlg, text: &str) -> Result<DevSigning, String> {
        match alg {
            SigningAlg::EdDsa => Ok(DevSigning::Ed25519Pem(text.to_string())),
            SigningAlg::Hs256 => STANDARD
                .decode(text.trim())
                .map(DevSigning::HmacSecret)
                .map_err(|_| "signing_key is not base64".to_string()),
            SigningAlg::Rs256 => Err("RS256 keys are never kept in the keys file".into()),
        }
    }

    fn key_bytes(&self) -> Vec<u8> {
        match self {
            DevSigning::Ed25519Pem(pem) => pem.as_bytes().to_vec(),
            DevSigning::HmacSecret(secret) => secret.clone(),
        }
    }

    fn alg(&self) -> SigningAlg {
        match self {
            DevSigning::Ed25519Pem(_) => SigningAlg::EdDsa,
            DevSigning::HmacSecret(_) => SigningAlg::Hs256,
        }
    }

    fn file_text(&self) -> String {
        match self {
            DevSigning::Ed25519Pem(pem) => format!("\"\"\"\n{}\n\"\"\"", pem.trim_end()),
            DevSigning::HmacSecret(secret) => format!("\"{}\"", STANDARD.encode(secret)),
        }
    }
}

/// What the keys file holds.
#[derive(Default)]
struct DevKeys {
    signing: Option<DevSigning>,
    refresh: Option<Vec<u8>>,
    /// The development ID-token key, PKCS#8 PEM.
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct StoredKeys {
    format: u32,
    signing_alg: Option<String>,
    signing_key: Option<String>,
    refresh_key: Option<String>,
    #[serde(default)]
    id_token_key: Option<String>,
}

fn read_keys_file(path: &Path) -> Result<Option<StoredKeys>, KeyError> {
    let fail = |reason: String| KeyError::KeysFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(format!("cannot read: {e}"))),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                keys_file = %path.display(),
                "the development keys file is readable by other users; it should be mode 0600"
            );
        }
    }
    let stored: StoredKeys = Toml::from_str(&text).map_err(|e| {
        fail(format!(
            "not a keys file written by sessiond ({e}); delete it to regenerate"
        ))
    })?;
    if stored.format != KEYS_FILE_FORMAT {
        return Err(fail(format!(
            "unknown format {} (expected {KEYS_FILE_FORMAT}); delete it to regenerate",
            stored.format
        )));
    }
    Ok(Some(stored))
}

/// Writes the file atomically (temporary file in the same directory, then rename) with mode
/// 0600 from the start, so the keys are never briefly readable by others.
fn write_keys_file(path: &Path, keys: &DevKeys) -> Result<(), KeyError> {
    let fail = |reason: String| KeyError::KeysFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut text = String::from(
        "# sessiond DEVELOPMENT keys - NOT FOR PRODUCTION.\n\
         # Generated because SESSIOND_SIGNING_KEY_FILE and/or SESSIOND_REFRESH_KEY are not set.\n\
         # Anyone who can read this file can forge tokens. Deleting it rotates the keys and\n\
         # invalidates every issued token.\n",
    );
    text.push_str(&format!("format = {KEYS_FILE_FORMAT}\n"));
    if let Some(signing) = &keys.signing {
        text.push_str(&format!("signing_alg = \"{}\"\n", signing.alg()));
        text.push_str(&format!("signing_key = {}\n", signing.file_text()));
    }
    if let Some(refresh) = &keys.refresh {
        text.push_str(&format!("refresh_key = \"{}\"\n", STANDARD.encode(refresh)));
    }
    if let Some(pem) = &keys.id_token {
        text.push_str(&format!(
            "id_token_key = \"\"\"\n{}\n\"\"\"\n",
            pem.trim_end()
        ));
    }

    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(format!("cannot write: {e}")));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;

    /// A fresh Ed25519 private key as PKCS#8 PEM.
    pub(crate) fn ed25519_pem() -> String {
        match DevSigning::generate(SigningAlg::EdDsa).unwrap() {
            DevSigning::Ed25519Pem(pem) => pem,
            DevSigning::HmacSecret(_) => unreachable!(),
        }
    }

    /// A fresh 2048-bit RSA private key as PKCS#8 PEM.
    pub(crate) fn rsa_pem() -> String {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref()))
    }

    fn public_pem_of_ed25519(private_pem: &str) -> String {
        let p = pem::parse(private_pem).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(p.contents()).unwrap();
        // SubjectPublicKeyInfo for Ed25519: fixed 12-byte prefix then the raw key.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
    }

    fn refresh() -> RefreshKey {
        RefreshKey::new(vec![9u8; 32])
    }

    fn sqlite_config(dir: &Path, extra: &[(&str, &str)]) -> Config {
        let mut env = vec![(
            "DATABASE_URL".to_string(),
            format!("sqlite://{}?mode=rwc", dir.join("dev.db").display()),
        )];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_sources(None, &env).unwrap()
    }

    #[test]
    fn development_keys_are_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = sqlite_config(dir.path(), &[]);
        let path = dir.path().join("dev.keys");
        assert_eq!(config.keys_file.as_deref(), Some(path.as_path()));

        let first = KeyRing::load(&config.key_sources()).unwrap();
        assert!(path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("NOT FOR PRODUCTION"));
        assert!(text.contains("BEGIN PRIVATE KEY"));

        let second = KeyRing::load(&config.key_sources()).unwrap();
        assert_eq!(first.kids(), second.kids());
        // Same refresh key: same derived child.
        let sid = sessiond_actors::ids::SessionId::new();
        let parent = sessiond_actors::refresh_token::RefreshSecret::from_bytes([1; 32]);
        assert_eq!(
            first.refresh_key().derive_child(sid, 1, &parent),
            second.refresh_key().derive_child(sid, 1, &parent)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "not rewritten"
        );
    }

    /// Signs a token with the ring's ID-token key and verifies it with the key the JWKS names.
    fn id_token_round_trip(ring: &KeyRing) {
        let (kid, key) = ring.id_token_signer().expect("OpenID Connect is on");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": 4102444800u64}),
            key,
        )
        .unwrap();
        let jwks = ring.jwks();
        let published = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .expect("the ID-token key is in the JWKS");
        assert_eq!(published["alg"], "RS256");
        assert_eq!(published["kty"], "RSA");
        assert_eq!(published["use"], "sig");
        assert!(
            published.get("d").is_none(),
            "public parts only: {published}"
        );
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(published.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(
            &token,
            ring.id_token_verifier(kid).unwrap(),
            &validation,
        )
        .unwrap();
    }

    #[test]
    fn development_id_token_key_is_generated_once_kept_and_published_beside_the_access_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = sqlite_config(dir.path(), &[]);
        let first = KeyRing::load(&config.key_sources()).unwrap();
        assert!(first.oidc_enabled());
        let text = std::fs::read_to_string(dir.path().join("dev.keys")).unwrap();
        assert!(
            text.contains("id_token_key"),
            "{}",
            text.lines().next().unwrap()
        );
        let second = KeyRing::load(&config.key_sources()).unwrap();
        assert_eq!(first.id_token_kid(), second.id_token_kid());
        assert_ne!(first.id_token_kid(), Some(first.signing_kid()));
        let jwks = first.jwks();
        let algs: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(
            algs,
            ["EdDSA", "RS256"],
            "access-token key first, then the ID-token key"
        );
        id_token_round_trip(&second);
    }

    #[test]
    fn configured_id_token_key_is_used_and_a_public_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signing = dir.path().join("signing.pem");
        std::fs::write(&signing, ed25519_pem()).unwrap();
        let id = dir.path().join("id.pem");
        std::fs::write(&id, rsa_pem()).unwrap();
        let sources = KeySources {
            alg: SigningAlg::EdDsa,
            signing_key_files: vec![signing.clone()],
            refresh_key: Some(refresh()),
            keys_file: None,
            development: false,
            id_token_key_file: Some(id.clone()),
        };
        let ring = KeyRing::load(&sources).unwrap();
        id_token_round_trip(&ring);
        assert!(ring.describe().contains(ring.id_token_kid().unwrap()));

        // Without the file (PostgreSQL): OpenID Connect is off, nothing is generated.
        let off = KeyRing::load(&KeySources {
            id_token_key_file: None,
            ..sources.clone()
        })
        .unwrap();
        assert!(!off.oidc_enabled());
        assert_eq!(off.jwks()["keys"].as_array().unwrap().len(), 1);

        let public = dir.path().join("id-public.pem");
        let pair = RsaKeyPair::from_pkcs8(pem::parse(rsa_pem()).unwrap().contents()).unwrap();
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            pair.public_key(),
        )
        .unwrap();
        std::fs::write(
            &public,
            pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref())),
        )
        .unwrap();
        let e = KeyRing::load(&KeySources {
            id_token_key_file: Some(public),
            ..sources
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("SESSIOND_ID_TOKEN_KEY_FILE") && e.contains("cannot sign"),
            "{e}"
        );
    }

    /// A generated secret ending in a newline byte (one in 256) used to lose it in
    /// `parse_hmac` and be refused as 31 bytes; 2,000 generations meet one with a probability
    /// of 1 − (255/256)^2000 > 99.9 %.
    #[test]
    fn every_generated_hs256_secret_parses() {
        for _ in 0..2_000 {
            KeyRing::generate(SigningAlg::Hs256).unwrap();
        }
    }

    #[test]
    fn hs256_development_secret_is_kept_too() {
        let dir = tempfile::tempdir().unwrap();
        let config = sqlite_config(dir.path(), &[("SESSIOND_SIGNING_ALG", "HS256")]);
        let a = KeyRing::load(&config.key_sources()).unwrap();
        let b = KeyRing::load(&config.key_sources()).unwrap();
        assert_eq!(a.kids(), b.kids());
        assert_eq!(a.jwks(), serde_json::json!({ "keys": [] }));
        assert!(!a.oidc_enabled(), "no OpenID Connect with HS256");
    }

    #[test]
    fn switching_algorithm_replaces_the_development_signing_key_but_keeps_the_refresh_key() {
        let dir = tempfile::tempdir().unwrap();
        let ed = KeyRing::load(&sqlite_config(dir.path(), &[]).key_sources()).unwrap();
        let hs = KeyRing::load(
            &sqlite_config(dir.path(), &[("SESSIOND_SIGNING_ALG", "HS256")]).key_sources(),
        )
        .unwrap();
        assert_ne!(ed.kids(), hs.kids());
        let sid = sessiond_actors::ids::SessionId::new();
        let parent = sessiond_actors::refresh_token::RefreshSecret::from_bytes([1; 32]);
        assert_eq!(
            ed.refresh_key().derive_child(sid, 1, &parent),
            hs.refresh_key().derive_child(sid, 1, &parent)
        );
    }

    #[test]
    fn configured_files_sign_first_and_all_verify() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.pem");
        let old = dir.path().join("old.pem");
        std::fs::write(&new, ed25519_pem()).unwrap();
        std::fs::write(&old, public_pem_of_ed25519(&ed25519_pem())).unwrap();
        let files = format!("{},{}", new.display(), old.display());
        let config = sqlite_config(
            dir.path(),
            &[
                ("SESSIOND_SIGNING_KEY_FILE", &files),
                ("SESSIOND_REFRESH_KEY", &STANDARD.encode([3u8; 32])),
            ],
        );
        let ring = KeyRing::load(&config.key_sources()).unwrap();
        assert_eq!(ring.kids().len(), 2);
        assert_eq!(ring.signing_kid(), ring.kids()[0]);
        assert!(ring.verifier(ring.kids()[1]).is_some());
        // Nothing was generated, so no keys file.
        assert!(!dir.path().join("dev.keys").exists());
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(ring.describe().contains("new.pem"));
    }

    #[test]
    fn kid_is_the_same_for_private_and_public_forms() {
        let private = ed25519_pem();
        let a =
            KeyRing::from_material(SigningAlg::EdDsa, &[private.as_bytes()], refresh()).unwrap();
        let public = public_pem_of_ed25519(&private);
        let b = KeyRing::from_material(
            SigningAlg::EdDsa,
            &[ed25519_pem().as_bytes(), public.as_bytes()],
            refresh(),
        )
        .unwrap();
        assert_eq!(a.signing_kid(), b.kids()[1]);
        assert!(a.signing_kid().len() >= 11, "at least 8 bytes of hash");
    }

    #[test]
    fn the_first_key_must_be_private_and_keys_unique() {
        let private = ed25519_pem();
        let public = public_pem_of_ed25519(&private);
        let e =
            KeyRing::from_material(SigningAlg::EdDsa, &[public.as_bytes()], refresh()).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        let e = KeyRing::from_material(
            SigningAlg::EdDsa,
            &[private.as_bytes(), public.as_bytes()],
            refresh(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn rsa_keys_load_from_pkcs8_and_publish_n_and_e() {
        let pem = rsa_pem();
        let ring = KeyRing::from_material(SigningAlg::Rs256, &[pem.as_bytes()], refresh()).unwrap();
        let jwk = &ring.jwks()["keys"][0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], ring.signing_kid());
        assert!(jwk["n"].as_str().unwrap().len() > 300);
        assert!(jwk.get("d").is_none(), "private parts never published");
    }

    #[test]
    fn ed25519_jwks_has_the_public_key_only() {
        let ring = KeyRing::generate(SigningAlg::EdDsa).unwrap();
        let jwk = &ring.jwks()["keys"][0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["kid"], ring.signing_kid());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(jwk.get("d").is_none());
    }

    #[test]
    fn wrong_key_types_and_short_secrets_are_rejected_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa-for-ed.pem");
        std::fs::write(&path, rsa_pem()).unwrap();
        let config = sqlite_config(
            dir.path(),
            &[("SESSIOND_SIGNING_KEY_FILE", path.to_str().unwrap())],
        );
        let e = KeyRing::load(&config.key_sources())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rsa-for-ed.pem") && e.contains("SESSIOND_SIGNING_KEY_FILE"),
            "{e}"
        );

        let e = KeyRing::from_material(SigningAlg::Hs256, &[b"short\n"], refresh()).unwrap_err();
        assert!(e.to_string().contains("at least 32 bytes"), "{e}");
        let e = KeyRing::from_material(SigningAlg::EdDsa, &[b"garbage"], refresh()).unwrap_err();
        assert!(e.to_string().contains("PEM"), "{e}");

        let missing = sqlite_config(
            dir.path(),
            &[("SESSIOND_SIGNING_KEY_FILE", "/nonexistent.pem")],
        );
        let e = KeyRing::load(&missing.key_sources())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent.pem"), "{e}");
    }

    #[test]
    fn hmac_trailing_newline_is_ignored() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = KeyRing::from_material(SigningAlg::Hs256, &[secret], refresh()).unwrap();
        let b = KeyRing::from_material(
            SigningAlg::Hs256,
            &[b"0123456789abcdef0123456789abcdef\n"],
            refresh(),
        )
        .unwrap();
        assert_eq!(a.kids(), b.kids());
    }

    #[test]
    fn postgres_never_generates_keys() {
        let mut config = Config::from_sources(
            None,
            &[
                (
                    "DATABASE_URL".into(),
                    "postgres://db.internal/sessiond".into(),
                ),
                ("SESSIOND_SIGNING_KEY_FILE".into(), "/k.pem".into()),
                ("SESSIOND_REFRESH_KEY".into(), STANDARD.encode([1u8; 32])),
            ],
        )
        .unwrap();
        config.signing_key_file.clear();
        let e = KeyRing::load(&config.key_sources())
            .unwrap_err()
            .to_string();
        assert!(e.contains("instances must share keys"), "{e}");
        assert!(e.contains("SESSIOND_SIGNING_KEY_FILE"), "{e}");
    }

    #[test]
    fn rs256_is_never_generated() {
        assert!(matches!(
            KeyRing::generate(SigningAlg::Rs256),
            Err(KeyError::RsaNeedsKeyFile)
        ));
    }

    #[test]
    fn in_memory_database_keeps_keys_in_memory() {
        let config = Config::from_sources(
            None,
            &[("DATABASE_URL".to_string(), "sqlite::memory:".to_string())],
        )
        .unwrap();
        assert!(config.keys_file.is_none());
        let ring = KeyRing::load(&config.key_sources()).unwrap();
        assert!(ring.describe().contains("memory only"));
    }

    #[test]
    fn corrupt_keys_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dev.keys"), "this is = not [ toml").unwrap();
        let e = KeyRing::load(&sqlite_config(dir.path(), &[]).key_sources())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SESSIOND_KEYS_FILE") && e.contains("dev.keys"),
            "{e}"
        );
    }

    #[test]
    fn no_key_material_in_debug_or_describe() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let ring = KeyRing::from_material(SigningAlg::Hs256, &[secret], refresh()).unwrap();
        for text in [format!("{ring:?}"), ring.describe()] {
            assert!(!text.contains("0123456789abcdef"), "{text}");
            assert!(text.contains(ring.signing_kid()));
        }
        let ring = KeyRing::generate(SigningAlg::EdDsa).unwrap();
        assert!(!format!("{ring:?}").contains("PRIVATE"));
    }
}
