//! The checks on a token, in ZITADEL's order, cheap ones first.
//!
//! 1. Three dot-separated parts of canonical unpadded base64url; the header and
//!    the payload are JSON objects read strictly (see the `jose` module), and the
//!    signature part decodes.
//! 2. `aud` (a string or an array of strings) contains an expected audience, compared
//!    exactly.
//! 3. `exp` is present and the current time plus the clock offset is before it.
//! 4. `iat` is present (and not 0), not after now plus the offset, and not older
//!    than the maximum age; `nbf`, when present, is not after now plus the offset.
//! 5. `iss` equals `sub`.
//! 6. The header: no `crit`, `typ` is `JWT` when present, `alg` is allowed.
//! 7. `iss` names a configured user, whose certificate (if the key came in one) is
//!    within its validity window, and the one RSA operation with that user's key
//!    verifies the signature. These three refusals share one public description,
//!    so that no caller can learn which user ids exist.
//!
//! Nothing before step 7 touches RSA or the user list, so junk costs little.
//!
//! A token found in the cache skips steps 1 to 7 but has its times and its key's
//! validity window checked again (`Verifier::recheck`), against the same clock.
//!
//! Holds only the checks; the token's bytes are read by `jose`, keys by `key`, and
//! users come from the `registry`.

use std::{
    mem::MaybeUninit,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use crate::algorithm::Algorithm;
use crate::{
    algorithm::AlgorithmSet,
    cache::{CacheUse, CachedToken},
    error::{AudienceHint, AuthError, Claim, Malformed},
    jose::{BASE64URL, Claims, Header, Parts, decode_part},
    key::Validity,
    registry::Registry,
    user::SystemUser,
};

const NANOS: i128 = 1_000_000_000;

/// Where the verifier reads the time; replaceable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The settings of the checks, fixed when [`SystemAuth`](crate::SystemAuth) is built
/// (the audiences belong to the registry: they are read again at every reload).
pub(crate) struct Verifier {
    pub algorithms: AlgorithmSet,
    pub clock_offset: Duration,
    pub max_token_age: Duration,
    pub max_token_length: usize,
    /// A clock set with the builder's `clock`; `None` reads the system clock.
    pub clock: Option<Clock>,
}

impl Verifier {
    /// The clock's reading, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> i128 {
        match &self.clock {
            Some(clock) => nanos_since_epoch(clock()),
            None => nanos_since_epoch(SystemTime::now()),
        }
    }

    /// Runs every check on `token` against the users and audiences in
    /// `registry`, at the clock's reading, and says whether the cache answered. A
    /// token found in the registry's cache only has its times and its key's
    /// validity window checked again. The token is bytes: the checks read it as
    /// base64url, so it needs no separate check that it is text.
    pub fn verify(
        &self,
        token: &[u8],
        registry: &Registry,
    ) -> (Result<SystemUser, AuthError>, CacheUse) {
        if token.len() > self.max_token_length {
            let limit = self.max_token_length;
            return (Err(AuthError::TokenTooLong { limit }), CacheUse::Skipped);
        }
        let Some(cache) = registry.cache() else {
            let verdict = self.verify_uncached(token, registry, self.now());
            return (verdict.map(|cached| cached.user), CacheUse::Skipped);
        };
        let hit = cache.get(token, |cached| {
            self.recheck(self.now(), cached)?;
            Ok(cached.user.clone())
        });
        if let Some(verdict) = hit {
            return (verdict, CacheUse::Hit);
        }
        let verdict = self
            .verify_uncached(token, registry, self.now())
            .map(|cached| {
                let user = cached.user.clone();
                cache.insert(token, cached);
                user
            });
        (verdict, CacheUse::Miss)
    }

    /// The checks a cached token must pass again: the times, and the key's window.
    fn recheck(&self, now: i128, cached: &CachedToken) -> Result<(), AuthError> {
        self.check_expiry(now, cached.expires_at)?;
        self.check_issued_at(now, cached.issued_at)?;
        self.check_not_before(now, cached.not_before)?;
        check_validity(now, cached.validity)
    }

    /// Every check on `token` at the clock reading `now`, without the cache.
    pub(crate) fn verify_at(
        &self,
        token: &[u8],
        registry: &Registry,
        now: i128,
    ) -> Result<SystemUser, AuthError> {
        if token.len() > self.max_token_length {
            let limit = self.max_token_length;
            return Err(AuthError::TokenTooLong { limit });
        }
        self.verify_uncached(token, registry, now)
            .map(|cached| cached.user)
    }

    /// Every check, in ZITADEL's order; the result holds what a cache hit must
    /// check again.
    fn verify_uncached(
        &self,
        token: &[u8],
        registry: &Registry,
        now: i128,
    ) -> Result<CachedToken, AuthError> {
        // 1. Shape. Header and payload are decoded into one buffer (on the stack for
        // any usual token), which the claims borrow from.
        let parts = Parts::split(token)?;
        let mut stack = [const { MaybeUninit::<u8>::uninit() }; 2048];
        let mut heap = Vec::new();
        let header_room = BASE64URL.estimated_decoded_length(parts.header.len());
        let room = header_room + BASE64URL.estimated_decoded_length(parts.payload.len());
        let buffer = match stack.get_mut(..room) {
            Some(buffer) => buffer,
            None => {
                heap.resize(room, MaybeUninit::uninit());
                &mut heap[..]
            }
        };
        let (header_buffer, payload_buffer) = buffer.split_at_mut(header_room);
        let header = Header::parse(&decode_part(
            parts.header,
            header_buffer,
            Malformed::HeaderBase64,
        )?)?;
        let payload = decode_part(parts.payload, payload_buffer, Malformed::PayloadBase64)?;
        let claims = Claims::parse(&payload)?;
        // A signature is never longer than an 8192-bit modulus: decode on the stack.
        let mut signature = [const { MaybeUninit::<u8>::uninit() }; 1024];
        let signature_len = BASE64URL
            .decoded_length(parts.signature)
            .map_err(|_| AuthError::Malformed(Malformed::SignatureBase64))?;
        if signature_len > signature.len() {
            return Err(AuthError::InvalidSignature);
        }
        let signature = decode_part(parts.signature, &mut signature, Malformed::SignatureBase64)?;

        // 2. Audience.
        let audience = claims.aud()?;
        let expected = registry.audiences();
        if !audience
            .iter()
            .any(|aud| expected.iter().any(|expected| **expected == **aud))
        {
            let expected = expected.first().cloned().unwrap_or_else(|| "".into());
            let hint = audience
                .first()
                .map_or(AudienceHint::Other, |aud| audience_hint(&expected, aud));
            return Err(AuthError::AudienceMismatch { expected, hint });
        }

        // 3 and 4. Expiry, issued-at (0 is no iat, as in ZITADEL), not-before.
        let expires_at = claims.exp()?.ok_or(AuthError::MissingClaim(Claim::Exp))?;
        self.check_expiry(now, expires_at)?;
        let issued_at = claims
            .iat()?
            .filter(|&iat| iat > 0)
            .ok_or(AuthError::MissingClaim(Claim::Iat))?;
        self.check_issued_at(now, issued_at)?;
        let not_before = claims.nbf()?;
        self.check_not_before(now, not_before)?;

        // 5. The issuer signs for itself.
        let issuer = claims.iss()?;
        if issuer != claims.sub()? {
            return Err(AuthError::IssuerSubjectMismatch);
        }

        // 6. The header.
        if header.crit {
            return Err(AuthError::CriticalHeader);
        }
        if !header.typ_ok {
            return Err(AuthError::UnsupportedType);
        }
        let algorithm = header
            .alg
            .filter(|alg| self.algorithms.contains(*alg))
            .ok_or(AuthError::AlgorithmNotAllowed)?;

        // 7. The user, its key's validity window, the signature.
        let user = registry.get(issuer).ok_or(AuthError::UnknownUser)?;
        let validity = user.key.validity();
        check_validity(now, validity)?;
        if !user.key.verify(algorithm, parts.signing_input, &signature) {
            return Err(AuthError::InvalidSignature);
        }
        Ok(CachedToken {
            user: SystemUser::new(user.identity.clone(), issued_at, expires_at),
            validity,
            not_before,
            issued_at,
            expires_at,
        })
    }

    fn offset(&self) -> i128 {
        self.clock_offset.as_nanos() as i128
    }

    /// `exp`: now + offset must be before it.
    pub(crate) fn check_expiry(&self, now: i128, expires_at: u64) -> Result<(), AuthError> {
        if now + self.offset() >= secs(expires_at) {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// `iat`: not after now + offset, not older than the maximum age, both rounded
    /// to the second as ZITADEL rounds them.
    pub(crate) fn check_issued_at(&self, now: i128, issued_at: u64) -> Result<(), AuthError> {
        if secs(issued_at) > round_to_second(now + self.offset()) {
            return Err(AuthError::IssuedInFuture);
        }
        let max_age = self.max_token_age.as_nanos() as i128;
        if max_age > 0 && secs(issued_at) < round_to_second(now - max_age) {
            return Err(AuthError::IssuedTooLongAgo);
        }
        Ok(())
    }

    /// `nbf`, when present: not after now + offset.
    pub(crate) fn check_not_before(
        &self,
        now: i128,
        not_before: Option<u64>,
    ) -> Result<(), AuthError> {
        match not_before {
            Some(not_before) if secs(not_before) > now + self.offset() => {
                Err(AuthError::NotYetValid)
            }
            _ => Ok(()),
        }
    }
}

/// A certificate's window: NotBefore ≤ now ≤ NotAfter.
pub(crate) fn check_validity(now: i128, validity: Option<Validity>) -> Result<(), AuthError> {
    if let Some(validity) = validity {
        if now < secs(validity.not_before) {
            return Err(AuthError::KeyNotYetValid);
        }
        if now > secs(validity.not_after) {
            return Err(AuthError::KeyExpired);
        }
    }
    Ok(())
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

fn secs(seconds: u64) -> i128 {
    seconds as i128 * NANOS
}

/// Go's `Time.Round(time.Second)`: halfway values round up.
fn round_to_second(nanos: i128) -> i128 {
    (nanos + NANOS / 2).div_euclid(NANOS) * NANOS
}

/// Says how `presented` differs from `expected`, in one fixed word.
pub(crate) fn audience_hint(expected: &str, presented: &str) -> AudienceHint {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rounding_rounds_halfway_up() {
        assert_eq!(round_to_second(1_499_999_999), NANOS);
        assert_eq!(round_to_second(1_500_000_000), 2 * NANOS);
        assert_eq!(round_to_second(-1), 0);
    }

    #[test]
    fn audience_hints_name_the_difference() {
        let expected = "https://custom-domain.com";
        assert_eq!(
            audience_hint(expected, "https://custom-domain.com/"),
            AudienceHint::TrailingSlash
        );
        assert_eq!(
            audience_hint(expected, "http://custom-domain.com"),
            AudienceHint::Scheme
        );
        assert_eq!(
            audience_hint(expected, "https://custom-domain.com:443"),
            AudienceHint::Port
        );
        assert_eq!(
            audience_hint(expected, "https://Custom-Domain.com"),
            AudienceHint::Case
        );
        assert_eq!(
            audience_hint(expected, "https://other.example"),
            AudienceHint::Other
        );
    }
}
