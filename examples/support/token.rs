//! Minting a ZITADEL system user token, as ZITADEL's `key2jwt` tool does; shared by
//! the `key2jwt` and `quickstart` examples.
//!
//! Included with `#[path = "support/token.rs"] mod token;`.

use std::{
    error::Error,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;

/// The JOSE header, byte for byte as ZITADEL's tool writes it.
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

/// The claims, in the order of ZITADEL's documentation.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs an RS256 token with `iss = sub = issuer`, `aud = audience`, `iat = now` and
/// `exp = now + lifetime_secs`.
///
/// `private_key_pem` is PEM text holding one RSA private key, PKCS#1
/// (`RSA PRIVATE KEY`, as older `openssl genrsa` writes it) or PKCS#8
/// (`PRIVATE KEY`). Errors say what is wrong with the key without repeating any of it.
pub fn mint(
    private_key_pem: &[u8],
    issuer: &str,
    audience: &str,
    lifetime_secs: u64,
) -> Result<String, Box<dyn Error + Send + Sync>> {
    if lifetime_secs == 0 {
        return Err("the lifetime must be at least 1 second".into());
    }
    let key = encoding_key(private_key_pem)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970")?
        .as_secs();
    let exp = now
        .checked_add(lifetime_secs)
        .ok_or("the lifetime is too long")?;
    let claims = serde_json::to_string(&Claims {
        iss: issuer,
        sub: issuer,
        aud: audience,
        iat: now,
        exp,
    })?;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256)
        .map_err(|e| format!("the key could not sign (is it a valid RSA private key?): {e}"))?;
    Ok(format!("{message}.{signature}"))
}

/// Finds the one RSA private key in PEM text.
fn encoding_key(text: &[u8]) -> Result<EncodingKey, Box<dyn Error + Send + Sync>> {
    // The parser's own message may quote a byte of the file: say less.
    let blocks = pem::parse_many(text)
        .map_err(|_| "the file is not valid PEM text (damaged framing or base64)")?;
    let mut private = Vec::new();
    for block in &blocks {
        match block.tag() {
            "RSA PRIVATE KEY" | "PRIVATE KEY" => private.push(block),
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the private key is encrypted; decrypt it first \
                            (openssl pkey -in KEY -out PLAIN)"
                    .into());
            }
            "EC PRIVATE KEY" | "OPENSSH PRIVATE KEY" | "DSA PRIVATE KEY" => {
                return Err(format!(
                    "the file holds a non-RSA key ({}); system users sign with RSA keys \
                     (openssl genrsa -out KEY 2048)",
                    block.tag()
                )
                .into());
            }
            _ => {}
        }
    }
    match private.as_slice() {
        [block] => EncodingKey::from_rsa_pem(pem::encode(block).as_bytes())
            .map_err(|e| format!("the file does not hold a usable RSA private key: {e}").into()),
        [] if blocks
            .iter()
            .any(|b| matches!(b.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE")) =>
        {
            Err(
                "the file holds a public key or certificate; sign with the private key \
                 (the .pem that openssl genrsa wrote, not the .pub)"
                    .into(),
            )
        }
        [] => Err(
            "the file holds no RSA private key (no `RSA PRIVATE KEY` or \
                   `PRIVATE KEY` PEM block)"
                .into(),
        ),
        _ => Err("the file holds more than one private key; keep exactly one".into()),
    }
}
