//! Minting a system user token, as ZITADEL's `key2jwt` tool does: the header
//! `{"alg":"RS256","typ":"JWT"}` (or PS256), the claims `iss` and `sub` (the
//! user id), `aud`, `iat` (now) and `exp` (now plus the lifetime), signed with the
//! user's RSA private key.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use zitadel_system_auth::{Algorithm, mint::{Mint, mint}};
//! # let key = zitadel_system_auth::testing::TestKey::generate();
//! # let private_key_pem = key.private_pem().as_bytes();
//!
//! let token = mint(
//!     private_key_pem,
//!     &Mint::new("system-user-1", "https://custom-domain.com"),
//!     SystemTime::now(),
//! )?;
//! assert_eq!(token.split('.').count(), 3);
//! # Ok::<(), zitadel_system_auth::mint::MintError>(())
//! ```
//!
//! Holds the signing side only; it knows nothing of the verifier.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeyPair,
    signature::{self, RsaEncoding},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::algorithm::Algorithm;

/// What a token says: who it is for and from, for how long, signed how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mint {
    /// The system user id (`iss` and `sub`).
    pub issuer: String,
    /// The service's external URL (`aud`), exactly.
    pub audience: String,
    /// From `iat` to `exp` (default one hour, ZITADEL's maximum token age).
    pub lifetime: Duration,
    /// RS256 (the default, as `key2jwt`) or another RSA algorithm.
    pub algorithm: Algorithm,
}

impl Mint {
    /// A one-hour RS256 token from `issuer` for `audience`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Mint {
        Mint {
            issuer: issuer.into(),
            audience: audience.into(),
            lifetime: Duration::from_secs(3600),
            algorithm: Algorithm::RS256,
        }
    }
}

/// Why a token could not be minted. No message repeats any of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MintError {
    /// The key file is not PEM text.
    NotPem,
    /// The private key is encrypted.
    Encrypted,
    /// The key is not an RSA key.
    NotRsa {
        /// The PEM label found.
        label: String,
    },
    /// A public key or certificate was given where the private key belongs.
    PublicKey,
    /// No private key in the text.
    NoPrivateKey,
    /// More than one private key in the text.
    SeveralKeys,
    /// The key could not be read or could not sign.
    Unusable,
    /// The lifetime is zero, or so long that `exp` is past the year 9999.
    Lifetime,
    /// The clock reads before 1970.
    Clock,
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::NotPem => {
                f.write_str("the file is not valid PEM text (damaged framing or base64)")
            }
            MintError::Encrypted => f.write_str(
                "the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)",
            ),
            MintError::NotRsa { label } => write!(
                f,
                "the file holds a non-RSA key ({label}); system users sign with RSA keys (openssl genrsa -out KEY 2048)"
            ),
            MintError::PublicKey => f.write_str(
                "the file holds a public key or certificate; sign with the private key (the .pem that openssl genrsa wrote, not the .pub)",
            ),
            MintError::NoPrivateKey => f.write_str(
                "the file holds no RSA private key (no `RSA PRIVATE KEY` or `PRIVATE KEY` PEM block)",
            ),
            MintError::SeveralKeys => {
                f.write_str("the file holds more than one private key; keep exactly one")
            }
            MintError::Unusable => f.write_str(
                "the file does not hold a usable RSA private key of 2048 to 8192 bits",
            ),
            MintError::Lifetime => {
                f.write_str("the lifetime must be at least 1 second and end before the year 9999")
            }
            MintError::Clock => f.write_str("the system clock reads before 1970"),
        }
    }
}

impl std::error::Error for MintError {}

/// The latest `exp` a token may carry: 9999-12-31T23:59:59Z.
const MAX_TIME: u64 = 253_402_300_799;

/// Signs a token as `what` says, issued at `now`, with the one RSA private key in
/// `private_key_pem` (PKCS#1 `RSA PRIVATE KEY`, as older `openssl genrsa` writes
/// it, or PKCS#8 `PRIVATE KEY`).
pub fn mint(private_key_pem: &[u8], what: &Mint, now: SystemTime) -> Result<String, MintError> {
    let key = key_pair(private_key_pem)?;
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MintError::Clock)?
        .as_secs();
    let lifetime = what.lifetime.as_secs();
    let exp = iat
        .checked_add(lifetime)
        .filter(|&exp| lifetime > 0 && exp <= MAX_TIME)
        .ok_or(MintError::Lifetime)?;
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, what.algorithm);
    let claims = serde_json::json!({
        "iss": what.issuer,
        "sub": what.issuer,
        "aud": what.audience,
        "iat": iat,
        "exp": exp,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        encoding(what.algorithm),
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| MintError::Unusable)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The signing scheme `algorithm` names.
pub(crate) fn encoding(algorithm: Algorithm) -> &'static dyn RsaEncoding {
    match algorithm {
        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
    }
}

/// The one RSA private key in PEM text.
fn key_pair(text: &[u8]) -> Result<KeyPair, MintError> {
    // The parser's own message may quote a byte of the file: say less.
    let blocks = pem::parse_many(text).map_err(|_| MintError::NotPem)?;
    let mut private = Vec::new();
    for block in &blocks {
        match block.tag() {
            "RSA PRIVATE KEY" | "PRIVATE KEY" => private.push(block),
            "ENCRYPTED PRIVATE KEY" => return Err(MintError::Encrypted),
            label @ ("EC PRIVATE KEY" | "OPENSSH PRIVATE KEY" | "DSA PRIVATE KEY") => {
                return Err(MintError::NotRsa {
                    label: label.to_owned(),
                });
            }
            _ => {}
        }
    }
    match private.as_slice() {
        [block] if block.tag() == "PRIVATE KEY" => {
            KeyPair::from_pkcs8(block.contents()).map_err(|_| MintError::Unusable)
        }
        [block] => KeyPair::from_der(block.contents()).map_err(|_| MintError::Unusable),
        [] if blocks
            .iter()
            .any(|b| matches!(b.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE")) =>
        {
            Err(MintError::PublicKey)
        }
        [] => Err(MintError::NoPrivateKey),
        _ => Err(MintError::SeveralKeys),
    }
}
