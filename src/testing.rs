//! Helpers for the tests of services that use this crate (feature `testing`): real
//! RSA key pairs, `SystemAPIUsers` configs in the `Path` and `KeyData` forms, tokens
//! with knobs, and a ready [`SystemAuth`].
//!
//! ```
//! use zitadel_system_auth::{AuthError, testing::TestSystem};
//!
//! let system = TestSystem::new(); // one user, `system-user-1`, a fresh 2048-bit key
//! let user = system.auth.verify(&system.token().build()).unwrap();
//! assert_eq!(user.user_id(), "system-user-1");
//!
//! let expired = system.token().expired().build();
//! assert_eq!(system.auth.verify(&expired).unwrap_err(), AuthError::Expired);
//! ```
//!
//! Tokens are signed with `jsonwebtoken` (an encoder independent of this crate's
//! verifier), or, for hand-made headers and payloads, with aws-lc-rs directly.
//! Holds test helpers only; nothing in the crate uses them.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    digest,
    encoding::{AsDer, Pkcs8V1Der},
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::KeyPair as _,
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Map, Value, json};

use crate::{Algorithm, SystemAuth, SystemAuthBuilder};

/// The audience [`TestSystem`] uses.
pub const TEST_AUDIENCE: &str = "https://custom-domain.com";
/// The user id [`TestSystem`] uses.
pub const TEST_USER: &str = "system-user-1";

/// An RSA key pair for a test system user.
pub struct TestKey {
    pair: RsaKeyPair,
    private_pem: String,
    public_pem: String,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// A fresh 2048-bit key pair.
    pub fn generate() -> TestKey {
        TestKey::generate_size(KeySize::Rsa2048)
    }

    /// A fresh key pair of the given size (2048, 3072, 4096 or 8192 bits).
    pub fn generate_size(size: KeySize) -> TestKey {
        #[allow(clippy::expect_used)]
        let pair = RsaKeyPair::generate(size).expect("aws-lc-rs generates RSA keys");
        TestKey::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> TestKey {
        let private_der = AsDer::<Pkcs8V1Der>::as_der(&pair).map(|d| d.as_ref().to_vec());
        let public_der = pair.public_key().as_der().map(|d| d.as_ref().to_vec());
        #[allow(clippy::expect_used)]
        let (private_der, public_der) = (
            private_der.expect("a generated key encodes as PKCS#8"),
            public_der.expect("a generated key encodes as SPKI"),
        );
        TestKey {
            private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private_der)),
            public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der)),
            pair,
        }
    }

    /// The private key, PEM `PRIVATE KEY` (PKCS#8).
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// The public key, PEM `PUBLIC KEY` (PKIX), as `openssl rsa -pubout` writes it.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The public key as a `KeyData` value: base64 of the PEM text.
    pub fn key_data(&self) -> String {
        STANDARD.encode(&self.public_pem)
    }

    /// The public key's SubjectPublicKeyInfo DER.
    pub fn public_der(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// Hex SHA-256 of the SubjectPublicKeyInfo, as [`Status`](crate::Status) reports it.
    pub fn fingerprint(&self) -> String {
        digest::digest(&digest::SHA256, &self.public_der())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Writes `NAME.pem` (private) and `NAME.pub` (public) into `dir`; returns the
    /// public key's path.
    pub fn write(&self, dir: &Path, name: &str) -> io::Result<PathBuf> {
        self.write_pair(dir, name).map(|files| files.public)
    }

    /// Writes `NAME.pem` (private, PKCS#8) and `NAME.pub` (public, PKIX) into `dir`,
    /// as `openssl genrsa` and `openssl rsa -pubout` would; returns both paths, for a
    /// config's `Path` and for signing with another tool (`openssl dgst -sign`).
    pub fn write_pair(&self, dir: &Path, name: &str) -> io::Result<KeyFiles> {
        let files = KeyFiles {
            private: dir.join(format!("{name}.pem")),
            public: dir.join(format!("{name}.pub")),
        };
        std::fs::write(&files.private, &self.private_pem)?;
        std::fs::write(&files.public, &self.public_pem)?;
        Ok(files)
    }

    /// A token for `user` with audience `audience`, valid from now for an hour;
    /// change it with the builder's knobs.
    pub fn token(&self, user: &str, audience: &str) -> TokenBuilder<'_> {
        TokenBuilder::new(self, user, audience)
    }

    /// Signs `header.payload` made of exactly these JSON texts, for hostile tokens.
    /// `algorithm` picks the padding and hash; the header is not looked at.
    pub fn sign_raw(&self, algorithm: Algorithm, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header_json),
            URL_SAFE_NO_PAD.encode(payload_json)
        );
        let signature = self.sign_input(algorithm, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The raw signature over exactly `input` (any bytes, e.g. a hand-made
    /// `header.payload` that is not base64url).
    pub fn sign_input(&self, algorithm: Algorithm, input: &[u8]) -> Vec<u8> {
        let padding = crate::mint::encoding(algorithm);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        #[allow(clippy::expect_used)]
        self.pair
            .sign(padding, &SystemRandom::new(), input, &mut signature)
            .expect("aws-lc-rs signs with a generated key");
        signature
    }
}

/// Where [`TestKey::write_pair`] wrote a key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `NAME.pem`: the private key, PEM `PRIVATE KEY` (PKCS#8).
    pub private: PathBuf,
    /// `NAME.pub`: the public key, PEM `PUBLIC KEY` (PKIX).
    pub public: PathBuf,
}

/// A token under construction; see [`TestKey::token`].
#[derive(Debug)]
#[must_use]
pub struct TokenBuilder<'k> {
    key: &'k TestKey,
    algorithm: Algorithm,
    claims: Map<String, Value>,
    header: Map<String, Value>,
}

fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

impl<'k> TokenBuilder<'k> {
    fn new(key: &'k TestKey, user: &str, audience: &str) -> TokenBuilder<'k> {
        let now = unix(SystemTime::now());
        let claims = json!({
            "iss": user, "sub": user, "aud": audience, "iat": now, "exp": now + 3600,
        });
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        TokenBuilder {
            key,
            algorithm: Algorithm::RS256,
            claims: claims.as_object().cloned().unwrap_or_default(),
            header: header.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Signs with `algorithm` (RS256 by default; PS256 is the other one ZITADEL
    /// allows).
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self.header.insert("alg".into(), algorithm.name().into());
        self
    }

    /// `iat` at `time`.
    pub fn issued_at(self, time: SystemTime) -> Self {
        self.claim("iat", unix(time))
    }

    /// `exp` at `time`.
    pub fn expires_at(self, time: SystemTime) -> Self {
        self.claim("exp", unix(time))
    }

    /// Expired a minute ago.
    pub fn expired(self) -> Self {
        let now = SystemTime::now();
        self.issued_at(now - Duration::from_secs(120))
            .expires_at(now - Duration::from_secs(60))
    }

    /// `iat` an hour in the future.
    pub fn issued_in_future(self) -> Self {
        let now = SystemTime::now();
        self.issued_at(now + Duration::from_secs(3600))
            .expires_at(now + Duration::from_secs(7200))
    }

    /// `iat` two hours ago, `exp` still an hour ahead: refused by the `iat` age.
    pub fn issued_too_long_ago(self) -> Self {
        let now = SystemTime::now();
        self.issued_at(now - Duration::from_secs(7200))
            .expires_at(now + Duration::from_secs(3600))
    }

    /// Another audience.
    pub fn audience(self, audience: &str) -> Self {
        self.claim("aud", audience)
    }

    /// Sets a claim (or replaces one), any JSON value.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets a header member (e.g. `kid`, `typ`, `crit`).
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_owned(), value.into());
        self
    }

    /// Signs with another key than the user's (the token must then be refused).
    pub fn signed_by(mut self, key: &'k TestKey) -> Self {
        self.key = key;
        self
    }

    /// The claims as they will be signed.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The signed token.
    pub fn build(self) -> String {
        let header = Value::Object(self.header).to_string();
        let claims = Value::Object(self.claims).to_string();
        self.key.sign_raw(self.algorithm, &header, &claims)
    }

    /// The signed token, encoded by `jsonwebtoken` with its standard header
    /// (`{"typ":"JWT","alg":...}`); header knobs are not applied.
    pub fn build_with_jsonwebtoken(self) -> String {
        let algorithm = match self.algorithm {
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
        };
        #[allow(clippy::expect_used)]
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.key.private_pem.as_bytes())
            .expect("jsonwebtoken reads a generated PKCS#8 key");
        #[allow(clippy::expect_used)]
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(algorithm),
            &Value::Object(self.claims),
            &key,
        )
        .expect("jsonwebtoken signs claims")
    }
}

/// How many RSA signature verifications this thread has started so far: a refusal
/// that needs no RSA work leaves it unchanged. ([`SystemAuth::verify`] runs on the
/// calling thread.)
pub fn rsa_operations_on_this_thread() -> u64 {
    crate::key::RSA_OPERATIONS.with(|count| count.get())
}

/// How a test config names a user's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// `Path:` to a `.pub` file written next to the config.
    Path,
    /// `KeyData:` with base64 of the PEM.
    KeyData,
}

/// Writes a ZITADEL config with these users (documented list form) into `dir` as
/// `config.yaml`, with the keys written next to it for [`KeyForm::Path`]; returns
/// the config's path.
pub fn write_config(
    dir: &Path,
    audience_host: &str,
    users: &[(&str, &TestKey)],
    form: KeyForm,
) -> io::Result<PathBuf> {
    let mut yaml = format!(
        "ExternalDomain: {audience_host}\nExternalPort: 443\nExternalSecure: true\nSystemAPIUsers:\n"
    );
    for (user, key) in users {
        match form {
            KeyForm::Path => {
                let path = key.write(dir, user)?;
                yaml.push_str(&format!("  - {user}:\n      Path: {}\n", path.display()));
            }
            KeyForm::KeyData => {
                yaml.push_str(&format!("  - {user}:\n      KeyData: {}\n", key.key_data()));
            }
        }
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// A ready [`SystemAuth`] with one user ([`TEST_USER`]) and a fresh key, expecting
/// [`TEST_AUDIENCE`]; its files live in a temporary folder that goes with it.
#[derive(Debug)]
pub struct TestSystem {
    /// The verifier, built from the config in [`dir`](Self::dir).
    pub auth: SystemAuth,
    /// The user's key pair.
    pub key: TestKey,
    dir: tempfile::TempDir,
}

impl Default for TestSystem {
    fn default() -> Self {
        TestSystem::new()
    }
}

impl TestSystem {
    /// One user with its key in a `Path` file; panics only if the temporary folder
    /// cannot be written.
    pub fn new() -> TestSystem {
        TestSystem::with(|builder| builder)
    }

    /// Like [`new`](Self::new), with the builder adjusted by `adjust` (a clock, the
    /// cache, ...).
    pub fn with(adjust: impl FnOnce(SystemAuthBuilder) -> SystemAuthBuilder) -> TestSystem {
        #[allow(clippy::expect_used)]
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = TestKey::generate();
        #[allow(clippy::expect_used)]
        let config = write_config(
            dir.path(),
            "custom-domain.com",
            &[(TEST_USER, &key)],
            KeyForm::Path,
        )
        .expect("the config is written");
        #[allow(clippy::expect_used)]
        let auth = adjust(SystemAuth::builder().config_file(config))
            .build()
            .expect("the test config loads");
        TestSystem { auth, key, dir }
    }

    /// A valid token for the user, to adjust with the builder's knobs.
    pub fn token(&self) -> TokenBuilder<'_> {
        self.key.token(TEST_USER, TEST_AUDIENCE)
    }

    /// The folder holding `config.yaml` and the key files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

pub use crate::speedup::Speedup;

/// Turns a hand-written speed-up on or off for the whole process, so that a
/// benchmark can measure it beside the plain code it replaces. Every speed-up is on
/// unless turned off here; the verdicts are the same either way.
pub fn set_speedup(speedup: Speedup, on: bool) {
    crate::speedup::set(speedup, on);
}
