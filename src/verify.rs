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
//! Holds only the checks and the cached token's time window; the token's bytes are
//! read by `jose`, keys by `key`, and users come from the `registry`. A cached
//! token's time checks are one window of clock readings worked out once (see
//! `Verifier::window`, and a test that it agrees with the checks), which a cache
//! hit compares with the cheap coarse clock while that is enough.

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use crate::algorithm::Algorithm;
use crate::{
    algorithm::AlgorithmSet,
    cache::{CacheUse, CachedToken, local},
    error::{AudienceHint, AuthError, Claim, Malformed},
    jose::{Claims, Header, Parts, decode_part, decoded_length},
    key::Validity,
    registry::{InPlace, Registry},
    speedup::{self, Speedup},
    user::SystemUser,
};

const NANOS: i128 = 1_000_000_000;

/// The longest signature there is: one of an 8192-bit modulus.
const MAX_SIGNATURE_BYTES: usize = 1024;

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

    /// Whether the system's coarse clock shows that the clock reads inside
    /// `window` now. When it does not, [`now`](Self::now) decides.
    ///
    /// The coarse clock is the time at the kernel's last tick, so it is never ahead
    /// of [`now`](Self::now) and at most a tick (a few milliseconds) behind it. A
    /// coarse reading at or after the window's start, and more than
    /// [`COARSE_CLOCK_MARGIN`] before its end, therefore puts the precise reading in
    /// the window too, and a cache hit then costs no precise clock read. Only the
    /// system clock has a coarse twin: with the builder's `clock`, this is `false`.
    fn coarsely_inside(&self, window: &Range<i128>) -> bool {
        speedup::on(Speedup::CoarseClock)
            && self.clock.is_none()
            && coarse_now().is_some_and(|coarse| {
                window.start <= coarse && coarse < window.end - COARSE_CLOCK_MARGIN
            })
    }

    /// Runs every check on `token` against the registry in place, at the clock's
    /// reading, and says whether a cache answered: this thread's own ([`local`]) or
    /// the registry's, after which only the times and the key's window are checked
    /// again. The token is bytes: the checks read it as base64url, not as text.
    pub fn verify(
        &self,
        token: &[u8],
        in_place: &InPlace,
    ) -> (Result<SystemUser, AuthError>, CacheUse) {
        // Only tokens within the length limit are cached, so a hit needs no check.
        if let Some(verdict) = local::get(in_place.cache_id(), token, |cached| self.hit(cached)) {
            return (verdict, CacheUse::Hit);
        }
        let registry = in_place.load();
        if token.len() > self.max_token_length {
            let limit = self.max_token_length;
            return (Err(AuthError::TokenTooLong { limit }), CacheUse::Skipped);
        }
        let Some(cache) = registry.cache() else {
            let verdict = self.verify_uncached(token, &registry, self.now());
            return (verdict.map(|cached| cached.user), CacheUse::Skipped);
        };
        if let Some(verdict) = cache.get(token, |cached| self.hit(cached)) {
            return (verdict, CacheUse::Hit);
        }
        let verdict = self
            .verify_uncached(token, &registry, self.now())
            .map(|cached| {
                let user = cached.user.clone();
                cache.insert(token, cached);
                user
            });
        (verdict, CacheUse::Miss)
    }

    /// A cached token's verdict: its user, unless the clock is outside its window.
    fn hit(&self, cached: &CachedToken) -> Result<SystemUser, AuthError> {
        if !self.coarsely_inside(&cached.window) {
            let now = self.now();
            if !cached.window.contains(&now) {
                // Only to name the check that fails.
                self.recheck(now, cached)?;
            }
        }
        Ok(cached.user.clone())
    }

    /// The checks a cached token must pass again: the times, and the key's window.
    fn recheck(&self, now: i128, cached: &CachedToken) -> Result<(), AuthError> {
        self.check_expiry(now, cached.expires_at)?;
        self.check_issued_at(now, cached.issued_at)?;
        self.check_not_before(now, cached.not_before)?;
        check_validity(now, cached.validity)
    }

    /// The clock readings at which [`recheck`](Self::recheck) passes: each check
    /// below solved for `now`, and the ranges intersected.
    fn window(
        &self,
        issued_at: u64,
        expires_at: u64,
        not_before: Option<u64>,
        validity: Option<Validity>,
    ) -> Range<i128> {
        let offset = self.offset();
        let half = NANOS / 2;
        // `exp`: now + offset < exp.
        let mut until = secs(expires_at) - offset;
        // `iat` not in the future: iat <= round(now + offset), so
        // now >= iat - 1/2 s - offset.
        let mut from = secs(issued_at) - half - offset;
        // `iat` not too old: iat >= round(now - max_age), so
        // now < iat + 1 s + max_age - 1/2 s.
        let max_age = self.max_token_age.as_nanos() as i128;
        if max_age > 0 {
            until = until.min(secs(issued_at) + NANOS + max_age - half);
        }
        // `nbf`: nbf <= now + offset.
        if let Some(not_before) = not_before {
            from = from.max(secs(not_before) - offset);
        }
        // The key's certificate: NotBefore <= now <= NotAfter.
        if let Some(validity) = validity {
            from = from.max(secs(validity.not_before));
            until = until.min(secs(validity.not_after) + 1);
        }
        from..until
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
        // 1. Shape.
        let parts = Parts::split(token)?;
        let header = Header::parse(&decode_part(parts.header, Malformed::HeaderBase64)?)?;
        let payload = decode_part(parts.payload, Malformed::PayloadBase64)?;
        let claims = Claims::parse(&payload)?;
        // A signature is never longer than an 8192-bit modulus.
        let signature_len = decoded_length(parts.signature)
            .ok_or(AuthError::Malformed(Malformed::SignatureBase64))?;
        if signature_len > MAX_SIGNATURE_BYTES {
            return Err(AuthError::InvalidSignature);
        }
        let signature = decode_part(parts.signature, Malformed::SignatureBase64)?;

        // 2. Audience.
        let audience = claims.aud()?;
        let expected = registry.audiences();
        if !audience
            .iter()
            .any(|aud| expected.iter().any(|expected| **expected == **aud))
        {
            let expected = expected.first().cloned().unwrap_or_else(|| "".into());
            let hint = audience.first().map_or(AudienceHint::Other, |aud| {
                AudienceHint::between(&expected, aud)
            });
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
            window: self.window(issued_at, expires_at, not_before, validity),
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

/// How far before a cached token's window ends the coarse clock stops being
/// enough (see `Verifier::coarsely_inside`): far more than a kernel tick, so the
/// coarse clock's lag never matters, and a small part of any token's lifetime.
const COARSE_CLOCK_MARGIN: i128 = NANOS;

/// The system's coarse real-time clock (`CLOCK_REALTIME_COARSE`), in nanoseconds
/// since the Unix epoch.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_now() -> Option<i128> {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    Some(i128::from(time.tv_sec) * NANOS + i128::from(time.tv_nsec))
}

/// No coarse clock here: every check reads the precise one.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_now() -> Option<i128> {
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier with only the time settings the tests below vary.
    fn verifier(clock_offset: Duration, max_token_age: Duration, clock: Option<Clock>) -> Verifier {
        Verifier {
            algorithms: AlgorithmSet::default(),
            clock_offset,
            max_token_age,
            max_token_length: 0,
            clock,
        }
    }

    /// The coarse clock is never ahead of the precise one, and lags it by far less
    /// than the margin a cache hit keeps from the end of its window.
    #[test]
    fn the_coarse_clock_trails_the_precise_one_by_less_than_the_margin() {
        for _ in 0..10_000 {
            let before = nanos_since_epoch(SystemTime::now());
            let Some(coarse) = coarse_now() else {
                return; // no coarse clock on this platform: nothing relies on one
            };
            let after = nanos_since_epoch(SystemTime::now());
            assert!(coarse <= after, "coarse clock {} ns ahead", coarse - after);
            assert!(
                before - coarse < COARSE_CLOCK_MARGIN,
                "coarse clock {} ns behind",
                before - coarse
            );
        }
    }

    /// Only a window the coarse clock is well inside skips the precise clock, and
    /// never with a clock set by the builder.
    #[test]
    fn only_a_window_well_inside_skips_the_precise_clock() {
        let system = verifier(Duration::ZERO, Duration::ZERO, None);
        let fixed = verifier(
            Duration::ZERO,
            Duration::ZERO,
            Some(Arc::new(SystemTime::now)),
        );
        let now = system.now();
        // From `from` to `until` milliseconds from now.
        let around = |from: i128, until: i128| now + from * 1_000_000..now + until * 1_000_000;
        if coarse_now().is_some() {
            assert!(system.coarsely_inside(&around(-60_000, 60_000)));
        }
        let outside = [
            around(-60_000, 500),
            around(-60_000, 0),
            around(2_000, 60_000),
            around(-60_000, -1_000),
        ];
        for window in outside.iter().cloned().chain([around(-60_000, 60_000)]) {
            assert!(
                !fixed.coarsely_inside(&window),
                "{window:?} with a set clock"
            );
        }
        // Ends within the margin, ended, or not begun: the precise clock decides.
        for window in outside {
            assert!(!system.coarsely_inside(&window), "{window:?}");
        }
    }

    /// A cache hit accepts exactly when every check passes: the window worked out at
    /// insert time agrees with the checks, at and around each of their edges.
    #[test]
    fn cache_window_agrees_with_the_checks() {
        let base: u64 = 1_700_000_000;
        let edges = |secs: u64| {
            let at = i128::from(secs) * NANOS;
            [
                -NANOS,
                -NANOS / 2 - 1,
                -NANOS / 2,
                -NANOS / 2 + 1,
                -1,
                0,
                1,
                NANOS / 2,
                NANOS,
            ]
            .map(|d| at + d)
        };
        let mut compared = 0;
        for offset in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(60),
        ] {
            for max_age in [
                Duration::ZERO,
                Duration::from_secs(3600),
                Duration::from_millis(2500),
            ] {
                let verifier = verifier(offset, max_age, None);
                for (iat, exp, nbf, validity) in [
                    (base, base + 3600, None, None),
                    (base, base + 1, Some(base + 1), None),
                    (base + 10, base + 5, None, None),
                    (
                        base,
                        base + 7200,
                        Some(base - 5),
                        Some(Validity {
                            not_before: base + 2,
                            not_after: base + 3,
                        }),
                    ),
                ] {
                    let cached = CachedToken {
                        user: SystemUser::new(
                            Arc::new(crate::user::Identity {
                                id: "u".into(),
                                memberships: Box::new([]),
                            }),
                            iat,
                            exp,
                        ),
                        validity,
                        not_before: nbf,
                        issued_at: iat,
                        expires_at: exp,
                        window: verifier.window(iat, exp, nbf, validity),
                    };
                    let offset_nanos = offset.as_nanos() as i128;
                    let max_age_nanos = max_age.as_nanos() as i128;
                    let mut times: Vec<i128> = Vec::new();
                    for secs in [
                        Some(iat),
                        Some(exp),
                        Some(iat + 1),
                        nbf,
                        validity.map(|v| v.not_before),
                        validity.map(|v| v.not_after),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        for at in edges(secs) {
                            for shift in [0, -offset_nanos, max_age_nanos] {
                                times.push(at + shift);
                            }
                        }
                    }
                    for now in times {
                        assert_eq!(
                            cached.window.contains(&now),
                            verifier.recheck(now, &cached).is_ok(),
                            "now {now}, iat {iat}, exp {exp}, nbf {nbf:?}, {validity:?}, offset {offset:?}, max age {max_age:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 1000, "{compared} times compared");
    }

    #[test]
    fn go_rounding_rounds_halfway_up() {
        assert_eq!(round_to_second(1_499_999_999), NANOS);
        assert_eq!(round_to_second(1_500_000_000), 2 * NANOS);
        assert_eq!(round_to_second(-1), 0);
    }
}
