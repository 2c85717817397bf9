//! Key material and tokens for the benchmarks: real RSA-2048 keys from aws-lc-rs,
//! PEM text via `pem`, and RS256 tokens from jsonwebtoken (an independent encoder).
//!
//! Shared by `benches/reload.rs` here and by the comparison benchmark in
//! `benches/compare/` (a crate of its own, which includes this file by path).
#![allow(dead_code)]

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der},
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::KeyPair as _,
};

/// The audience every benchmark config expects.
pub const AUD: &str = "https://custom-domain.com";
/// The user id of the one-user configs.
pub const USER: &str = "system-user-1";

/// An RSA-2048 key pair and its PEM and DER forms.
pub struct BenchKey {
    pub private_pem: String,
    pub public_pem: String,
    /// PKCS#1 `RSAPublicKey` DER, what `ParsedPublicKey::new` takes for RSA.
    pub public_pkcs1_der: Vec<u8>,
}

impl BenchKey {
    pub fn generate() -> BenchKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA key");
        let private_der = AsDer::<Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
        let public_der = pair.public_key().as_der().expect("spki");
        BenchKey {
            private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_der.as_ref().to_vec())),
            public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec())),
            public_pkcs1_der: pair.public_key().as_ref().to_vec(),
        }
    }

    /// An RS256 token for `claims`, made by jsonwebtoken.
    pub fn rs256(&self, claims: &serde_json::Value) -> String {
        rs256_with(&self.encoding_key(), claims)
    }

    /// The private key as jsonwebtoken reads it, to sign many tokens with (see
    /// [`rs256_with`]) without reading the PEM text for each.
    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).expect("key")
    }

    /// The public key PEM as ZITADEL's `KeyData` (base64 of the PEM text).
    pub fn key_data(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&self.public_pem)
    }
}

/// An RS256 token for `claims`, signed with `key` (from [`BenchKey::encoding_key`])
/// by jsonwebtoken: the same header as [`BenchKey::rs256`].
pub fn rs256_with(key: &jsonwebtoken::EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        key,
    )
    .expect("encode")
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The claims a system user sends: `iss = sub = user`, `iat = now`, `exp = now + 1 h`.
pub fn claims(user: &str, aud: &str) -> serde_json::Value {
    let now = now();
    serde_json::json!({ "iss": user, "sub": user, "aud": aud, "iat": now, "exp": now + 3600 })
}

/// A config in ZITADEL's documented form (a list of one-key mappings): each user
/// with its key at its path (one path per user, or one shared by all).
pub fn config_with_paths<'a>(users: impl IntoIterator<Item = (String, &'a Path)>) -> String {
    let mut yaml = String::from(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n",
    );
    for (id, path) in users {
        yaml.push_str(&format!("  - {id}:\n      Path: {}\n", path.display()));
    }
    yaml
}

/// The same config with `SystemAPIUsers` as one plain mapping of user ids (the
/// other shape ZITADEL accepts), instead of a list of one-key mappings.
pub fn config_with_paths_map<'a>(users: impl IntoIterator<Item = (String, &'a Path)>) -> String {
    let mut yaml = String::from(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n",
    );
    for (id, path) in users {
        yaml.push_str(&format!("  {id}:\n    Path: {}\n", path.display()));
    }
    yaml
}

/// A config with one user whose key comes inline as `KeyData`.
pub fn config_with_key_data(user: &str, key: &BenchKey) -> String {
    format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n  - {user}:\n      KeyData: {}\n",
        key.key_data()
    )
}

/// Writes `text` to `path` the way editors and `mv` do: a new file beside it,
/// renamed over it (one atomic replace).
pub fn save_by_rename(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}
