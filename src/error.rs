//! Errors: why a request was refused ([`AuthError`]), why a configuration could not
//! be loaded ([`ConfigError`]), and why a key was refused ([`KeyError`]).
//!
//! Each variant names exactly what went wrong; [`AuthError`] also knows its HTTP
//! status, gRPC code and a stable reason code. How a refusal is rendered as an HTTP
//! or gRPC response is the [`response`](crate::response) module's. No message ever
//! contains the token, a claim value taken from it, or key material: every
//! description is fixed text, plus the configured audience where that helps.

use std::{fmt, path::PathBuf, sync::Arc};

use axum::http::StatusCode;

/// Why a token or a request was refused.
///
/// Each variant names one check. [`AuthError::status`] gives the HTTP status, and
/// [`AuthError::reason`] a short stable code for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header, or one with another scheme than `Bearer`
    /// (answered with a bare `WWW-Authenticate: Bearer`, RFC 6750 section 3.1).
    MissingToken,
    /// More than one `Authorization` header (400, `invalid_request`).
    MultipleAuthorizationHeaders,
    /// More than one `x-zitadel-orgid` header (400, `invalid_request`): the
    /// organisation a request is about must be one.
    MultipleOrganizationHeaders,
    /// The token is longer than the configured cap; nothing of it was parsed.
    TokenTooLong {
        /// The cap in bytes.
        limit: usize,
    },
    /// The token is not a compact JWS with a JSON header and JSON claims.
    Malformed(Malformed),
    /// A claim the check needs is absent.
    MissingClaim(Claim),
    /// A claim has the wrong JSON type or a value out of range.
    InvalidClaim(Claim),
    /// `aud` does not contain the audience this service expects.
    AudienceMismatch {
        /// The audience this service expects (its external URL).
        expected: Arc<str>,
        /// How the presented audience differs, as far as a fixed word can say it.
        hint: AudienceHint,
    },
    /// `exp` is not after the current time plus the clock offset.
    Expired,
    /// `iat` is after the current time plus the clock offset.
    IssuedInFuture,
    /// `iat` is older than the maximum token age.
    IssuedTooLongAgo,
    /// `nbf` is after the current time plus the clock offset.
    NotYetValid,
    /// `iss` and `sub` differ.
    IssuerSubjectMismatch,
    /// `iss` names no configured system user.
    ///
    /// Answered with the same public description as [`InvalidSignature`],
    /// [`KeyNotYetValid`] and [`KeyExpired`], so that no caller can learn which user
    /// ids exist; [`reason`](Self::reason) tells them apart for logs and metrics.
    ///
    /// [`InvalidSignature`]: Self::InvalidSignature
    /// [`KeyNotYetValid`]: Self::KeyNotYetValid
    /// [`KeyExpired`]: Self::KeyExpired
    UnknownUser,
    /// The user's certificate is not valid yet (its NotBefore is in the future).
    /// Answered like [`UnknownUser`](Self::UnknownUser).
    KeyNotYetValid,
    /// The user's certificate has expired (its NotAfter has passed). Answered like
    /// [`UnknownUser`](Self::UnknownUser).
    KeyExpired,
    /// The header's `alg` is not in the allowed list (`none` and HMAC never are).
    AlgorithmNotAllowed,
    /// The header carries `crit`, which this crate does not support.
    CriticalHeader,
    /// The header carries a key or points at one (`jwk`, `jku`, `x5u`, `x5c`, `x5t`,
    /// `x5t#S256`), has a `b64` member, or a `kid`, `cty` or `nonce` that is not a
    /// string. The key comes from the configuration only.
    RefusedHeaderMember,
    /// The header's `typ` is present and is not `JWT`.
    UnsupportedType,
    /// The signature does not verify with the user's key. Answered like
    /// [`UnknownUser`](Self::UnknownUser).
    InvalidSignature,
    /// The caller is authenticated but holds no membership with the role (403).
    MissingRole {
        /// The role the route requires.
        role: Arc<str>,
    },
    /// The check itself failed (a panic was caught); answered 500, code 13.
    Internal,
}

/// The part of a token that could not be read (see [`AuthError::Malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The `Authorization` value is not visible ASCII.
    HeaderEncoding,
    /// The `Bearer` scheme came with no token.
    EmptyToken,
    /// The token does not have exactly three dot-separated parts.
    Segments,
    /// The JOSE header is not canonical unpadded base64url.
    HeaderBase64,
    /// The JOSE header is not a JSON object with a string `alg`.
    HeaderJson,
    /// The payload is not canonical unpadded base64url.
    PayloadBase64,
    /// The payload is not a JSON object.
    PayloadJson,
    /// A member name appears twice in one object, at any depth of the header or
    /// the payload.
    DuplicateMember,
    /// A payload member's name is not a registered claim's, but Go's
    /// case-insensitive JSON decoder (under ZITADEL) would read it as one (`ISS`,
    /// `ſub`).
    AmbiguousClaimName,
    /// The header or the payload nests arrays and objects deeper than 64 levels.
    NestingTooDeep,
    /// The signature is not canonical unpadded base64url.
    SignatureBase64,
}

/// A registered claim named in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// `iss`
    Iss,
    /// `sub`
    Sub,
    /// `aud`
    Aud,
    /// `exp`
    Exp,
    /// `iat`
    Iat,
    /// `nbf`
    Nbf,
}

/// How a refused audience differs from the expected one, without repeating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudienceHint {
    /// It differs only by a trailing `/`.
    TrailingSlash,
    /// It differs only in the scheme (`http` against `https`).
    Scheme,
    /// It differs only in the port (including an explicit default port).
    Port,
    /// It differs only in letter case.
    Case,
    /// It differs in some other way.
    Other,
}

impl AudienceHint {
    /// Says how `presented` differs from `expected`, in one fixed word.
    pub(crate) fn between(expected: &str, presented: &str) -> AudienceHint {
        fn split(url: &str) -> (&str, &str, &str) {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            let host = authority
                .rsplit_once(':')
                .map_or(authority, |(host, _)| host);
            (scheme, host, path)
        }
        if presented.eq_ignore_ascii_case(expected) {
            return AudienceHint::Case;
        }
        if presented.trim_end_matches('/') == expected.trim_end_matches('/') {
            return AudienceHint::TrailingSlash;
        }
        let (e_scheme, e_host, e_path) = split(expected);
        let (p_scheme, p_host, p_path) = split(presented);
        if e_host == p_host && e_path == p_path {
            if e_scheme != p_scheme {
                return AudienceHint::Scheme;
            }
            return AudienceHint::Port;
        }
        AudienceHint::Other
    }
}

impl Claim {
    /// The claim's name in the token.
    pub fn name(self) -> &'static str {
        match self {
            Claim::Iss => "iss",
            Claim::Sub => "sub",
            Claim::Aud => "aud",
            Claim::Exp => "exp",
            Claim::Iat => "iat",
            Claim::Nbf => "nbf",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::HeaderEncoding => "the Authorization header is not visible ASCII",
            Malformed::EmptyToken => "the bearer token is empty",
            Malformed::Segments => "the token must have three dot-separated parts",
            Malformed::HeaderBase64 => "the token header is not unpadded base64url",
            Malformed::HeaderJson => "the token header is not a JSON object with a string alg",
            Malformed::PayloadBase64 => "the token payload is not unpadded base64url",
            Malformed::PayloadJson => "the token payload is not a JSON object",
            Malformed::DuplicateMember => "a member name appears twice in the token",
            Malformed::AmbiguousClaimName => {
                "a claim name differs from a registered claim only in letter case"
            }
            Malformed::NestingTooDeep => "the token's JSON nests deeper than 64 levels",
            Malformed::SignatureBase64 => "the token signature is not unpadded base64url",
        })
    }
}

impl fmt::Display for AudienceHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudienceHint::TrailingSlash => "the token's aud differs only by a trailing slash",
            AudienceHint::Scheme => "the token's aud differs only in the scheme",
            AudienceHint::Port => "the token's aud differs only in the port",
            AudienceHint::Case => "the token's aud differs only in letter case",
            AudienceHint::Other => "the token's aud is another URL",
        })
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingToken => f.write_str("a bearer token is required"),
            AuthError::MultipleAuthorizationHeaders => {
                f.write_str("exactly one Authorization header is allowed")
            }
            AuthError::MultipleOrganizationHeaders => {
                f.write_str("at most one x-zitadel-orgid header is allowed")
            }
            AuthError::TokenTooLong { limit } => {
                write!(f, "the token is longer than {limit} bytes")
            }
            AuthError::Malformed(what) => what.fmt(f),
            AuthError::MissingClaim(claim) => write!(f, "the {} claim is missing", claim.name()),
            AuthError::InvalidClaim(claim) => match claim {
                Claim::Aud => f.write_str("the aud claim must be a string or an array of strings"),
                Claim::Iss | Claim::Sub => write!(f, "the {} claim must be a string", claim.name()),
                Claim::Exp | Claim::Iat | Claim::Nbf => write!(
                    f,
                    "the {} claim must be a number of seconds between 1970 and 9999",
                    claim.name()
                ),
            },
            AuthError::AudienceMismatch { expected, hint } => {
                write!(
                    f,
                    "audience mismatch: expected \"{expected}\" exactly; {hint}"
                )
            }
            AuthError::Expired => f.write_str("the token has expired"),
            AuthError::IssuedInFuture => f.write_str("the token's iat is in the future"),
            AuthError::IssuedTooLongAgo => f.write_str("the token's iat is too old"),
            AuthError::NotYetValid => f.write_str("the token's nbf is in the future"),
            AuthError::IssuerSubjectMismatch => f.write_str("iss and sub must be identical"),
            AuthError::UnknownUser
            | AuthError::KeyNotYetValid
            | AuthError::KeyExpired
            | AuthError::InvalidSignature => f.write_str(NOT_SIGNED_BY_A_SYSTEM_USER),
            AuthError::AlgorithmNotAllowed => f.write_str("the signing algorithm is not allowed"),
            AuthError::CriticalHeader => f.write_str("the crit header is not supported"),
            AuthError::RefusedHeaderMember => {
                f.write_str("the token header names a key or has a member this service refuses")
            }
            AuthError::UnsupportedType => f.write_str("the token typ must be JWT"),
            AuthError::MissingRole { role } => {
                write!(f, "the system user lacks the role {role} here")
            }
            AuthError::Internal => f.write_str("internal error while checking the token"),
        }
    }
}

/// The one public description of an unknown user, a bad signature and a key
/// outside its certificate's validity.
const NOT_SIGNED_BY_A_SYSTEM_USER: &str =
    "the token is not signed by a valid key of a configured system user";

impl std::error::Error for AuthError {}

impl AuthError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MultipleAuthorizationHeaders | AuthError::MultipleOrganizationHeaders => {
                StatusCode::BAD_REQUEST
            }
            AuthError::MissingRole { .. } => StatusCode::FORBIDDEN,
            AuthError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code ZITADEL puts in the body: 16 (UNAUTHENTICATED),
    /// 7 (PERMISSION_DENIED), 3 (INVALID_ARGUMENT) or 13 (INTERNAL).
    pub fn grpc_code(&self) -> u16 {
        match self {
            AuthError::MultipleAuthorizationHeaders | AuthError::MultipleOrganizationHeaders => 3,
            AuthError::MissingRole { .. } => 7,
            AuthError::Internal => 13,
            _ => 16,
        }
    }

    /// A short stable code for the failed check, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MultipleAuthorizationHeaders => "multiple_authorization_headers",
            AuthError::MultipleOrganizationHeaders => "multiple_org_headers",
            AuthError::TokenTooLong { .. } => "token_too_long",
            AuthError::Malformed(_) => "malformed",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::InvalidClaim(_) => "invalid_claim",
            AuthError::AudienceMismatch { .. } => "audience",
            AuthError::Expired => "expired",
            AuthError::IssuedInFuture => "iat_in_future",
            AuthError::IssuedTooLongAgo => "iat_too_old",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuerSubjectMismatch => "iss_sub_mismatch",
            AuthError::UnknownUser => "unknown_user",
            AuthError::KeyNotYetValid => "key_not_yet_valid",
            AuthError::KeyExpired => "key_expired",
            AuthError::AlgorithmNotAllowed => "algorithm",
            AuthError::CriticalHeader => "crit",
            AuthError::RefusedHeaderMember => "header_member",
            AuthError::UnsupportedType => "typ",
            AuthError::InvalidSignature => "signature",
            AuthError::MissingRole { .. } => "missing_role",
            AuthError::Internal => "internal",
        }
    }
}

/// Why a key was refused at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The value is empty.
    Empty,
    /// `KeyData` is neither PEM text nor base64 of PEM text.
    NotBase64,
    /// No PEM block was found.
    NoPemBlock,
    /// The PEM text is damaged.
    BadPem(String),
    /// More than one PEM block; a key file must hold exactly one.
    MultiplePemBlocks {
        /// How many blocks were found.
        count: usize,
    },
    /// A private key was given where the public key belongs.
    PrivateKey,
    /// The PEM label is not `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE`.
    UnsupportedLabel(String),
    /// The key is not an RSA key.
    NotRsa {
        /// The kind of key found.
        found: &'static str,
    },
    /// The RSA modulus is smaller than 2048 bits.
    TooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// The RSA modulus is larger than 8192 bits.
    TooLarge {
        /// The modulus size.
        bits: usize,
    },
    /// The DER inside the PEM block could not be decoded.
    BadDer {
        /// What was being decoded.
        what: &'static str,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty"),
            KeyError::NotBase64 => f.write_str(
                "KeyData is neither PEM text nor base64 of PEM text (encode the .pub file with `base64 -w0`)",
            ),
            KeyError::NoPemBlock => f.write_str(
                "no PEM block found (expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)",
            ),
            KeyError::BadPem(reason) => write!(f, "the PEM text is damaged: {reason}"),
            KeyError::MultiplePemBlocks { count } => write!(
                f,
                "found {count} PEM blocks; a key file must hold exactly one public key or certificate"
            ),
            KeyError::PrivateKey => f.write_str(
                "this is a private key; configure the public half instead \
                 (export it with `openssl rsa -in key.pem -pubout -out key.pub`)",
            ),
            KeyError::UnsupportedLabel(label) => write!(
                f,
                "unsupported PEM block \"{label}\" (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)"
            ),
            KeyError::NotRsa { found } => write!(
                f,
                "the key is {found}, not RSA; system users sign with RSA (make one with `openssl genrsa -out key.pem 2048`)"
            ),
            KeyError::TooSmall { bits } => write!(
                f,
                "the RSA key has {bits} bits; at least 2048 are required (make a new one with `openssl genrsa -out key.pem 2048`)"
            ),
            KeyError::TooLarge { bits } => {
                write!(f, "the RSA key has {bits} bits; at most 8192 are supported")
            }
            KeyError::BadDer { what } => write!(f, "the {what} inside the PEM block is not valid DER"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Where a key came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The file named by `Path`.
    Path(PathBuf),
    /// The inline `KeyData` value.
    KeyData,
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Path(path) => write!(f, "Path {}", path.display()),
            KeyOrigin::KeyData => f.write_str("KeyData"),
        }
    }
}

/// Why a configuration could not be loaded. The message names the file, the user
/// and the field, and for YAML the line.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// No configuration was given to the builder.
    NoConfig,
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The YAML is invalid, or a value in it is (the message carries the line).
    Yaml {
        /// The config file, when there is one.
        path: Option<PathBuf>,
        /// What is wrong and where.
        message: String,
    },
    /// An environment variable holds an invalid value.
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A user's key was refused.
    Key {
        /// The system user.
        user: String,
        /// Where the key came from.
        origin: KeyOrigin,
        /// Why it was refused.
        source: KeyError,
    },
    /// A user's key file could not be read.
    KeyFile {
        /// The system user.
        user: String,
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// An audience given to the builder is not usable.
    InvalidAudience(String),
    /// A builder setting is out of range.
    InvalidSetting(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoConfig => {
                f.write_str("no configuration: call config_file() or config_yaml() on the builder")
            }
            ConfigError::Io { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Yaml {
                path: Some(path),
                message,
            } => write!(f, "{}: {message}", path.display()),
            ConfigError::Yaml {
                path: None,
                message,
            } => write!(f, "config: {message}"),
            ConfigError::Env { var, message } => write!(f, "{var}: {message}"),
            ConfigError::Key {
                user,
                origin,
                source,
            } => write!(f, "system user `{user}`, {origin}: {source}"),
            ConfigError::KeyFile { user, path, source } => write!(
                f,
                "system user `{user}`, Path {}: cannot read the key file: {source}",
                path.display()
            ),
            ConfigError::InvalidAudience(reason) => write!(f, "invalid audience: {reason}"),
            ConfigError::InvalidSetting(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } | ConfigError::KeyFile { source, .. } => Some(source),
            ConfigError::Key { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A name from the config, repeated in a message only when it looks like a name
/// (a value in the wrong place may be key material).
pub(crate) fn shown(name: &str) -> String {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        format!("`{name}`")
    } else {
        format!("({} characters, not shown)", name.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_hints_name_the_difference() {
        let expected = "https://custom-domain.com";
        for (presented, hint) in [
            ("https://custom-domain.com/", AudienceHint::TrailingSlash),
            ("http://custom-domain.com", AudienceHint::Scheme),
            ("https://custom-domain.com:443", AudienceHint::Port),
            ("https://Custom-Domain.com", AudienceHint::Case),
            ("https://other.example", AudienceHint::Other),
        ] {
            assert_eq!(
                AudienceHint::between(expected, presented),
                hint,
                "{presented}"
            );
        }
    }
}
